//! Building the graph: a node reserved, inserted, and linked on each of its layers
//! (neighbour selection as in hnswlib), beside searches that never wait.

use super::*;

/// A new node waiting to be linked.
pub(super) struct Pending<'a> {
    pub(super) node: u32,
    pub(super) image_id: i64,
    pub(super) hotel_id: i64,
    pub(super) vector: &'a [f32],
    pub(super) live: bool,
}

impl GraphIndex {
    pub(super) fn random_level(&self, node: u32) -> usize {
        // Drawn from the node id, so a rebuild of the same feed gives the same graph.
        let mut x = u64::from(node).wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        let u = ((x >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        ((-u.ln() * self.level_mult) as usize).min(MAX_LEVEL)
    }

    /// Hands out a node id for an image and makes room for it.
    pub(super) fn reserve(&self) -> u32 {
        let node = self.reserved.fetch_add(1, AcqRel);
        assert!(node < Slab::<AtomicU64>::CAPACITY, "index full");
        self.nodes.ensure(node);
        self.links.ensure(node);
        self.upper.ensure(node);
        node as u32
    }

    /// Writes a reserved node's record and links it into the graph.
    pub(super) fn insert(&self, node: u32, image_id: i64, hotel_id: i64, code: &Code, live: bool) {
        let level = self.random_level(node);
        let rec = self.nodes.at(node as usize);
        rec[0].store(image_id as u64, Relaxed);
        rec[1].store(hotel_id as u64, Relaxed);
        for (w, &v) in rec[HEAD..].iter().zip(&code.words) {
            w.store(v, Relaxed);
        }
        if level > 0 {
            let _ = self.upper.at(node as usize)[0].set((0..level * (1 + self.m)).map(|_| AtomicU32::new(0)).collect());
        }
        let flags = READY | if live { LIVE } else { 0 };
        rec[2].store(flags | (level as u64) << 8 | u64::from(code.scale.to_bits()) << 32, Release);
        if live {
            self.live.fetch_add(1, Relaxed);
        } else {
            self.dead.fetch_add(1, Relaxed);
        }
        self.link(node, level, code);
    }

    pub(super) fn link(&self, node: u32, level: usize, q: &Code) {
        let mut guard = None;
        let mut ep = self.entry_point();
        if ep.is_none_or(|(_, top)| level > top) {
            // This node may become the entry point: one such insert at a time (as hnswlib).
            guard = Some(self.entry_lock.lock());
            ep = self.entry_point();
        }
        let Some((mut cur, top)) = ep else {
            self.entry.store(u64::from(node) | (level as u64) << 32 | 1 << 40, Release);
            return;
        };
        let mut cur_s = self.score_to(q, cur);
        for layer in (level + 1..=top).rev() {
            (cur, cur_s) = self.greedy(q, cur, cur_s, layer);
        }
        let mut eps = vec![Scored(cur_s, cur)];
        let low = level.min(top);
        let mut chosen = vec![Vec::new(); low + 1];
        VISITED.with(|v| {
            let mut visited = v.borrow_mut();
            for layer in (0..=low).rev() {
                let mut cands = self.search_layer(q, &eps, self.opts.ef_construction.max(self.m), layer, None, &mut visited);
                cands.retain(|c| c.1 != node);
                chosen[layer] = self.select(&cands, self.m);
                if !cands.is_empty() {
                    eps = cands;
                }
            }
        });
        // Linked bottom-up: a search that reaches the node on some layer finds its links on
        // every layer below already there (top-down, it could land on a node with no
        // layer-0 links yet, and return just that node).
        for (layer, chosen) in chosen.iter().enumerate() {
            self.connect(node, layer, chosen);
        }
        if level > top {
            self.entry.store(u64::from(node) | (level as u64) << 32 | 1 << 40, Release);
        }
        drop(guard);
    }

    /// hnswlib's neighbour heuristic: keep a candidate only if it is nearer the query than
    /// to every one kept, so links spread in all directions.
    pub(super) fn select(&self, cands: &[Scored], m: usize) -> Vec<Scored> {
        let mut kept: Vec<Scored> = Vec::with_capacity(m);
        for &c in cands {
            if kept.len() >= m {
                break;
            }
            if kept.iter().all(|k| self.score_nodes(c.1, k.1) < c.0) {
                kept.push(c);
            }
        }
        kept
    }

    /// Links `node` to `chosen` on `layer`, and each of them back (pruning full lists).
    pub(super) fn connect(&self, node: u32, layer: usize, chosen: &[Scored]) {
        let cap = if layer == 0 { self.m0 } else { self.m };
        {
            let _g = self.lock(node);
            let list = self.list(node, layer);
            for (slot, c) in list[1..].iter().zip(chosen) {
                slot.store(c.1, Release);
            }
            list[0].store(chosen.len().min(cap) as u32, Release);
        }
        for c in chosen {
            let _g = self.lock(c.1);
            let list = self.list(c.1, layer);
            let links = filled(list);
            let n = links.len();
            if links.iter().any(|l| l.load(Relaxed) == node) {
                continue;
            }
            if n < cap {
                list[1 + n].store(node, Release);
                list[0].store(n as u32 + 1, Release);
                continue;
            }
            let mut cands: Vec<Scored> =
                links.iter().map(|l| l.load(Relaxed)).chain([node]).map(|x| Scored(self.score_nodes(c.1, x), x)).collect();
            cands.sort_by(|a, b| b.cmp(a));
            let kept = self.select(&cands, cap);
            for (slot, k) in list[1..].iter().zip(&kept) {
                slot.store(k.1, Release);
            }
            list[0].store(kept.len() as u32, Release);
        }
    }

    /// Sets a node's liveness; keeps the counts.
    pub(super) fn set_live(&self, node: u32, live: bool) {
        let meta = &self.nodes.at(node as usize)[2];
        let was = if live { meta.fetch_or(LIVE, AcqRel) } else { meta.fetch_and(!LIVE, AcqRel) } & LIVE != 0;
        if was != live && meta.load(Acquire) & READY != 0 {
            let (up, down) = if live { (&self.live, &self.dead) } else { (&self.dead, &self.live) };
            up.fetch_add(1, Relaxed);
            down.fetch_sub(1, Relaxed);
        }
    }
}
