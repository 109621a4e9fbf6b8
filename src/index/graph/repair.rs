//! Repair: every node a walk can reach. Pruning a full link list (hnswlib's heuristic) can
//! take away a node's last in-link, and concurrent inserts make that likelier; such a node
//! is never found again, even by its own vector. On clustered data a layer can also split
//! into islands, and a walk that descends into the wrong one finds nothing of the other.
//! After each batch of inserts every layer is walked from the entry point, and each node it
//! does not reach is linked in from its nearest reached neighbours on that layer. Reached is
//! not yet found: in high dimensions a walk at the default `ef` can still miss a node, so the
//! batch's new nodes are also searched by their own vectors, and an audit does the same for
//! older ones; a node missed is linked in from the nodes that search did find.

use super::*;

/// How many of a lost node's nearest reached nodes may take a link to it.
const LINKS_IN: usize = 2;
/// A node counts as found when a search by its own vector returns it among this many.
const FOUND_K: usize = 10;

impl GraphIndex {
    /// Links in every node some layer does not reach from the entry point; how many there
    /// were (done after every batch of inserts, on load and after compaction; an audit may
    /// call it any time). A replaced link can, rarely, cut off another node, so it looks
    /// again (a few rounds at most).
    pub fn repair(&self) -> usize {
        self.repair_with(&[])
    }

    /// [`Self::repair`], and also links in each of `check` that a search by its own vector
    /// at the default `ef` does not return.
    pub fn repair_with(&self, check: &[u32]) -> usize {
        let first = self.repair_pass() + self.relink_missed(check);
        let mut left = first;
        for _ in 0..3 {
            if left == 0 {
                break;
            }
            left = self.repair_pass();
        }
        if left > 0 {
            tracing::warn!(left, "index: nodes still unreachable after repair");
        }
        first
    }

    /// Nodes some layer does not reach from the entry point (counted once per layer).
    pub fn unreachable(&self) -> usize {
        let Some((entry, top)) = self.entry_point() else { return 0 };
        (0..=top)
            .map(|layer| {
                let mut reached = self.reached(entry, layer);
                self.on_layer(layer).filter(|&u| !std::mem::replace(&mut reached[u as usize], true)).count()
            })
            .sum()
    }

    /// Links in each of `nodes` (live ones) that a search by its own vector misses; how many.
    fn relink_missed(&self, nodes: &[u32]) -> usize {
        let missed: Vec<u32> = nodes.par_iter().copied().filter(|&u| self.is_live(u) && !self.finds(u)).collect();
        if missed.is_empty() {
            return 0;
        }
        let mut in_links = self.in_links(0);
        for &u in &missed {
            self.link_from_nearest(u, 0, &mut in_links, |_| true);
        }
        missed.len()
    }

    /// Whether a search by `u`'s own vector, as a query makes it, returns `u`.
    fn finds(&self, u: u32) -> bool {
        let q = self.own_code(u);
        let filter = |n: u32| self.is_live(n);
        let filter: Option<&dyn Fn(u32) -> bool> = if self.dead.load(Relaxed) == 0 { None } else { Some(&filter) };
        self.walk(&q, FOUND_K, self.opts.ef_search.max(FOUND_K), filter).iter().any(|c| c.1 == u)
    }

    /// Checks `count` live nodes from node `from` on (wrapping), as [`Self::repair_with`]
    /// does for new ones; the node to start from next time, and how many were linked in.
    pub fn audit(&self, from: usize, count: usize) -> (usize, usize) {
        let _one = self.writer.lock();
        let n = self.reserved.load(Acquire);
        if n == 0 {
            return (0, 0);
        }
        let from = from % n;
        let nodes: Vec<u32> = (from..from + count.min(n)).map(|i| (i % n) as u32).collect();
        let fixed = self.repair_with(&nodes);
        ((from + count.min(n)) % n, fixed)
    }

    fn repair_pass(&self) -> usize {
        let Some((entry, top)) = self.entry_point() else { return 0 };
        let mut lost_total = 0;
        // Top-down: a layer's islands are joined before the walks that link the layer below
        // descend through it.
        for layer in (0..=top).rev() {
            let mut reached = self.reached(entry, layer);
            let lost: Vec<u32> = self.on_layer(layer).filter(|&u| !reached[u as usize]).collect();
            if lost.is_empty() {
                continue;
            }
            lost_total += lost.len();
            let mut in_links = self.in_links(layer);
            for &u in &lost {
                if reached[u as usize] {
                    // Reached through a node linked in before it.
                    continue;
                }
                if self.link_from_nearest(u, layer, &mut in_links, |c| reached[c as usize]) > 0 {
                    self.reach(u, layer, &mut reached);
                }
            }
        }
        lost_total
    }

    /// How many links on `layer` point at each node.
    fn in_links(&self, layer: usize) -> Vec<u32> {
        let mut in_links = vec![0u32; self.reserved.load(Acquire)];
        for node in self.on_layer(layer) {
            self.for_each_link(node, layer, |l| in_links[l as usize] += 1);
        }
        in_links
    }

    /// Links `u` in on `layer` from up to `LINKS_IN` of its nearest nodes that `ok` accepts;
    /// how many took a link.
    fn link_from_nearest(&self, u: u32, layer: usize, in_links: &mut [u32], ok: impl Fn(u32) -> bool) -> usize {
        let mut linked = 0;
        for c in self.nearest_on(u, layer) {
            if linked == LINKS_IN {
                break;
            }
            if c.1 != u && ok(c.1) && self.link_in(c.1, u, layer, in_links) {
                linked += 1;
            }
        }
        linked
    }

    /// A node's own code, as a query's.
    fn own_code(&self, u: u32) -> Code {
        let (w, s) = self.code(u);
        Code { words: w.to_vec(), scale: s }
    }

    /// The ready nodes that have `layer`.
    fn on_layer(&self, layer: usize) -> impl Iterator<Item = u32> + '_ {
        (0..self.reserved.load(Acquire) as u32).filter(move |&n| {
            let meta = self.meta(n);
            meta & READY != 0 && ((meta >> 8) & 0xFF) as usize >= layer
        })
    }

    /// Which nodes `layer` reaches from `from`.
    fn reached(&self, from: u32, layer: usize) -> Vec<bool> {
        let mut reached = vec![false; self.reserved.load(Acquire)];
        self.reach(from, layer, &mut reached);
        reached
    }

    /// Marks every node reached from `from` on `layer`.
    fn reach(&self, from: u32, layer: usize, reached: &mut [bool]) {
        if std::mem::replace(&mut reached[from as usize], true) {
            return;
        }
        let mut stack = vec![from];
        while let Some(x) = stack.pop() {
            self.for_each_link(x, layer, |l| {
                if !std::mem::replace(&mut reached[l as usize], true) {
                    stack.push(l);
                }
            });
        }
    }

    /// The nodes nearest `u` that a walk finds on `layer` (best first).
    fn nearest_on(&self, u: u32, layer: usize) -> Vec<Scored> {
        let q = self.own_code(u);
        let Some((mut cur, top)) = self.entry_point() else { return Vec::new() };
        let mut cur_s = self.score_to(&q, cur);
        for l in (layer + 1..=top).rev() {
            (cur, cur_s) = self.greedy(&q, cur, cur_s, l);
        }
        let ef = self.opts.ef_construction.max(self.m);
        VISITED.with(|v| self.search_layer(&q, &[Scored(cur_s, cur)], ef, layer, None, &mut v.borrow_mut()))
    }

    /// Adds a link from `c` to `u` on `layer`: in a free slot, or in place of `c`'s least
    /// similar link whose node has another in-link (so no node is lost to save this one).
    fn link_in(&self, c: u32, u: u32, layer: usize, in_links: &mut [u32]) -> bool {
        let cap = if layer == 0 { self.m0 } else { self.m };
        let _g = self.lock(c);
        let list = self.list(c, layer);
        let links = filled(list);
        let n = links.len();
        if links.iter().any(|l| l.load(Relaxed) == u) {
            return false;
        }
        if n < cap {
            list[1 + n].store(u, Release);
            list[0].store(n as u32 + 1, Release);
            in_links[u as usize] += 1;
            return true;
        }
        let worst = links
            .iter()
            .enumerate()
            .map(|(i, l)| (i, l.load(Relaxed)))
            .filter(|&(_, x)| in_links[x as usize] > 1)
            .min_by(|a, b| self.score_nodes(c, a.1).total_cmp(&self.score_nodes(c, b.1)));
        let Some((i, x)) = worst else { return false };
        links[i].store(u, Release);
        in_links[x as usize] -= 1;
        in_links[u as usize] += 1;
        true
    }
}
