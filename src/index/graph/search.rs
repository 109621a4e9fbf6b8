//! Searching the graph: the greedy descent, the beam search of one layer, and exact scans
//! of a set of nodes.

use super::*;

/// A score with a total order, for the heaps.
#[derive(Clone, Copy, PartialEq)]
pub(super) struct Scored(pub(super) f32, pub(super) u32);
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scored {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0).then(o.1.cmp(&self.1))
    }
}

/// Per-thread visited marks, reused across searches (an epoch instead of clearing).
pub(super) struct Visited {
    marks: Vec<u16>,
    epoch: u16,
}

impl Visited {
    pub(super) fn start(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n.next_power_of_two(), 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.fill(0);
            self.epoch = 1;
        }
    }

    /// Marks `i`; whether it was marked already.
    #[inline]
    pub(super) fn seen(&mut self, i: u32) -> bool {
        let i = i as usize;
        if i >= self.marks.len() {
            // A node inserted since the search started.
            self.marks.resize((i + 1).next_power_of_two(), 0);
        }
        std::mem::replace(&mut self.marks[i], self.epoch) == self.epoch
    }
}

thread_local! {
    pub(super) static VISITED: RefCell<Visited> = const { RefCell::new(Visited { marks: Vec::new(), epoch: 0 }) };
}

impl GraphIndex {
    /// Walks greedily to the best neighbour on `layer` until none is better.
    pub(super) fn greedy(&self, q: &Code, mut cur: u32, mut cur_s: f32, layer: usize) -> (u32, f32) {
        loop {
            let mut moved = false;
            self.for_each_link(cur, layer, |n| {
                let s = self.score_to(q, n);
                if s > cur_s {
                    (cur, cur_s, moved) = (n, s, true);
                }
            });
            if !moved {
                return (cur, cur_s);
            }
        }
    }

    /// Best-first search of one layer for the `ef` nearest (best first). With a filter, only
    /// nodes it accepts are returned, while the walk goes through all.
    pub(super) fn search_layer(
        &self,
        q: &Code,
        eps: &[Scored],
        ef: usize,
        layer: usize,
        filter: Option<&dyn Fn(u32) -> bool>,
        visited: &mut Visited,
    ) -> Vec<Scored> {
        visited.start(self.reserved.load(Acquire));
        let mut cands: BinaryHeap<Scored> = BinaryHeap::with_capacity(ef * 2);
        let mut best: BinaryHeap<std::cmp::Reverse<Scored>> = BinaryHeap::with_capacity(ef + 1);
        for &e in eps {
            visited.seen(e.1);
            cands.push(e);
            if filter.is_none_or(|f| f(e.1)) {
                best.push(std::cmp::Reverse(e));
            }
        }
        while best.len() > ef {
            best.pop();
        }
        let mut floor = if best.len() >= ef { best.peek().map_or(f32::NEG_INFINITY, |b| b.0 .0) } else { f32::NEG_INFINITY };
        while let Some(c) = cands.pop() {
            if c.0 < floor {
                break;
            }
            let links = filled(self.list(c.1, layer));
            for (i, l) in links.iter().enumerate() {
                let nb = l.load(Acquire);
                if let Some(next) = links.get(i + 1) {
                    self.prefetch(next.load(Relaxed));
                }
                if visited.seen(nb) {
                    continue;
                }
                let s = self.score_to(q, nb);
                if best.len() < ef || s > floor {
                    cands.push(Scored(s, nb));
                    if filter.is_none_or(|f| f(nb)) {
                        best.push(std::cmp::Reverse(Scored(s, nb)));
                        if best.len() > ef {
                            best.pop();
                        }
                        if best.len() >= ef {
                            floor = best.peek().map_or(f32::NEG_INFINITY, |b| b.0 .0);
                        }
                    }
                }
            }
        }
        let mut out: Vec<Scored> = best.into_iter().map(|r| r.0).collect();
        out.sort_by(|a, b| b.cmp(a));
        out
    }

    // Asks for a neighbour's record ahead of its scoring, as hnswlib does: the graph walk
    // is bound by memory latency, not arithmetic.
    #[inline]
    pub(super) fn prefetch(&self, node: u32) {
        #[cfg(target_arch = "x86_64")]
        if let Some(rec) = self.nodes.get(node as usize) {
            // SAFETY: a prefetch is only a hint; the address is inside a live allocation.
            unsafe { std::arch::x86_64::_mm_prefetch(rec.as_ptr().cast::<i8>(), std::arch::x86_64::_MM_HINT_T0) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = node;
    }

    /// Exact top-k over `nodes` (live ones only).
    pub(super) fn scan(&self, q: &Code, k: usize, nodes: impl Iterator<Item = u32>) -> Vec<Scored> {
        let scored: Vec<(usize, f32)> = nodes.filter(|&n| self.is_live(n)).map(|n| (n as usize, self.score_to(q, n))).collect();
        vector::best_k(scored, k).into_iter().map(|(n, s)| Scored(s, n as u32)).collect()
    }

    /// The graph walk: greedy through the upper layers, then `ef`-wide on layer 0.
    pub(super) fn walk(&self, q: &Code, k: usize, ef: usize, filter: Option<&dyn Fn(u32) -> bool>) -> Vec<Scored> {
        let Some((mut cur, top)) = self.entry_point() else { return Vec::new() };
        let mut cur_s = self.score_to(q, cur);
        for layer in (1..=top).rev() {
            (cur, cur_s) = self.greedy(q, cur, cur_s, layer);
        }
        let mut found = VISITED.with(|v| self.search_layer(q, &[Scored(cur_s, cur)], ef.max(k), 0, filter, &mut v.borrow_mut()));
        found.truncate(k);
        found
    }

    pub(super) fn found(&self, hits: Vec<Scored>) -> Vec<Found> {
        hits.into_iter()
            .map(|Scored(s, n)| {
                let rec = self.nodes.at(n as usize);
                Found { image_id: rec[0].load(Relaxed) as i64, hotel_id: rec[1].load(Relaxed) as i64, similarity: s }
            })
            .collect()
    }
}
