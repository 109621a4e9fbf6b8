//! The project's own HNSW graph over compact vectors: one copy of each vector, flat link
//! arrays, and inserts that run beside searches without either waiting for the other.
//!
//! The layout follows hnswlib: each node's record (ids, flags, code) and its layer-0 links
//! are fixed-size rows in chunked slabs that never move, so a search reads them without a
//! lock. Writers take one node's lock at a time (striped) to change its links, as hnswlib
//! does; a link is published with release ordering after the node's code is written, so a
//! reader that follows it sees a complete node. Upper layers hold few nodes and live in a
//! per-node list made once.

use std::cell::RefCell;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::OnceLock;

use parking_lot::{Mutex, RwLock};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::codes::{Code, Coder, Format, Slab};
use super::{Found, IndexError, IndexOptions, Plan, VectorIndex};
use crate::catalog::{Change, Status};
use crate::vector;

const READY: u64 = 1;
const LIVE: u64 = 2;
/// Words before the code in a node record: image id, hotel id, meta (flags, level, scale).
const HEAD: usize = 3;
const MAX_LEVEL: usize = 15;
const LOCK_STRIPES: usize = 4096;
/// Below this many inserts in one batch they run one after another (no pool overhead).
const PARALLEL_MIN: usize = 64;

/// A score with a total order, for the heaps.
#[derive(Clone, Copy, PartialEq)]
struct Scored(f32, u32);
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
struct Visited {
    marks: Vec<u16>,
    epoch: u16,
}

impl Visited {
    fn start(&mut self, n: usize) {
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
    fn seen(&mut self, i: u32) -> bool {
        let i = i as usize;
        if i >= self.marks.len() {
            // A node inserted since the search started.
            self.marks.resize((i + 1).next_power_of_two(), 0);
        }
        std::mem::replace(&mut self.marks[i], self.epoch) == self.epoch
    }
}

thread_local! {
    static VISITED: RefCell<Visited> = const { RefCell::new(Visited { marks: Vec::new(), epoch: 0 }) };
}

/// Which image each node is, and the nodes of each hotel (for filters).
#[derive(Default)]
struct Maps {
    node_of: HashMap<i64, u32>,
    by_hotel: HashMap<i64, Vec<u32>>,
}

/// A new node waiting to be linked.
struct Pending<'a> {
    node: u32,
    image_id: i64,
    hotel_id: i64,
    vector: &'a [f32],
    live: bool,
}

/// HNSW over compact vectors, searched and extended concurrently (see the module doc).
pub struct GraphIndex {
    opts: IndexOptions,
    coder: Coder,
    /// Links per node on the upper layers, and on layer 0 (twice as many, as in hnswlib).
    m: usize,
    m0: usize,
    level_mult: f64,
    nodes: Slab<AtomicU64>,
    links: Slab<AtomicU32>,
    upper: Slab<OnceLock<Box<[AtomicU32]>>>,
    locks: Box<[Mutex<()>]>,
    /// Node ids handed out.
    reserved: AtomicUsize,
    live: AtomicUsize,
    /// Nodes linked but not live (deleted or quarantined): while zero, searches need no filter.
    dead: AtomicUsize,
    /// The entry point: node | level << 32 | 1 << 40 once there is one.
    entry: AtomicU64,
    /// Held by an insert that may raise the top level.
    entry_lock: Mutex<()>,
    maps: RwLock<Maps>,
    watermark: AtomicI64,
    /// One `apply` (or save) at a time; searches never take it.
    writer: Mutex<()>,
}

/// What a dump's manifest says.
#[derive(Serialize, Deserialize)]
struct Manifest {
    kind: String,
    format: Format,
    dim: usize,
    m: usize,
    count: usize,
    entry: u64,
    watermark: i64,
    sha256: String,
}

impl GraphIndex {
    /// An empty index for `dim`-dimensional unit vectors.
    pub fn new(dim: usize, opts: IndexOptions) -> Self {
        let coder = Coder::new(opts.format, dim);
        let m = opts.m.clamp(2, 128);
        GraphIndex {
            coder,
            m,
            m0: 2 * m,
            level_mult: 1.0 / (m as f64).ln(),
            nodes: Slab::new(HEAD + coder.words()),
            links: Slab::new(1 + 2 * m),
            upper: Slab::new(1),
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            reserved: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            dead: AtomicUsize::new(0),
            entry: AtomicU64::new(0),
            entry_lock: Mutex::new(()),
            maps: RwLock::new(Maps::default()),
            watermark: AtomicI64::new(0),
            writer: Mutex::new(()),
            opts,
        }
    }

    fn maps(&self) -> parking_lot::RwLockReadGuard<'_, Maps> {
        self.maps.read()
    }

    fn lock(&self, node: u32) -> parking_lot::MutexGuard<'_, ()> {
        self.locks[node as usize % LOCK_STRIPES].lock()
    }

    #[inline]
    fn meta(&self, node: u32) -> u64 {
        self.nodes.at(node as usize)[2].load(Acquire)
    }

    #[inline]
    fn is_live(&self, node: u32) -> bool {
        self.nodes.get(node as usize).is_some_and(|r| r[2].load(Acquire) & (READY | LIVE) == READY | LIVE)
    }

    /// The code of a node that is ready (its words are never written again).
    #[inline]
    fn code(&self, node: u32) -> (&[u64], f32) {
        let rec = self.nodes.at(node as usize);
        let scale = f32::from_bits((rec[2].load(Relaxed) >> 32) as u32);
        let words = &rec[HEAD..];
        // SAFETY: AtomicU64 has u64's layout; a ready node's code words were written before
        // its READY flag (release) and are never written again, so plain reads cannot race.
        (unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u64>(), words.len()) }, scale)
    }

    #[inline]
    fn score_to(&self, q: &Code, node: u32) -> f32 {
        let (w, s) = self.code(node);
        self.coder.score(&q.words, q.scale, w, s)
    }

    #[inline]
    fn score_nodes(&self, a: u32, b: u32) -> f32 {
        let ((wa, sa), (wb, sb)) = (self.code(a), self.code(b));
        self.coder.score(wa, sa, wb, sb)
    }

    /// The link list of `node` on `layer` (count first).
    #[inline]
    fn list(&self, node: u32, layer: usize) -> &[AtomicU32] {
        if layer == 0 {
            self.links.at(node as usize)
        } else {
            let up = self.upper.at(node as usize)[0].get().expect("upper links of a node below that layer");
            let w = 1 + self.m;
            &up[(layer - 1) * w..layer * w]
        }
    }

    #[inline]
    fn for_each_link(&self, node: u32, layer: usize, mut f: impl FnMut(u32)) {
        for l in filled(self.list(node, layer)) {
            f(l.load(Acquire));
        }
    }

    fn entry_point(&self) -> Option<(u32, usize)> {
        let e = self.entry.load(Acquire);
        (e >> 40 == 1).then_some((e as u32, ((e >> 32) & 0xFF) as usize))
    }

    fn random_level(&self, node: u32) -> usize {
        // Drawn from the node id, so a rebuild of the same feed gives the same graph.
        let mut x = u64::from(node).wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        let u = ((x >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        ((-u.ln() * self.level_mult) as usize).min(MAX_LEVEL)
    }

    /// Hands out a node id for an image and makes room for it.
    fn reserve(&self) -> u32 {
        let node = self.reserved.fetch_add(1, AcqRel);
        assert!(node < Slab::<AtomicU64>::CAPACITY, "index full");
        self.nodes.ensure(node);
        self.links.ensure(node);
        self.upper.ensure(node);
        node as u32
    }

    /// Writes a reserved node's record and links it into the graph.
    fn insert(&self, node: u32, image_id: i64, hotel_id: i64, code: &Code, live: bool) {
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

    fn link(&self, node: u32, level: usize, q: &Code) {
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

    /// Walks greedily to the best neighbour on `layer` until none is better.
    fn greedy(&self, q: &Code, mut cur: u32, mut cur_s: f32, layer: usize) -> (u32, f32) {
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
    fn search_layer(
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
    fn prefetch(&self, node: u32) {
        #[cfg(target_arch = "x86_64")]
        if let Some(rec) = self.nodes.get(node as usize) {
            // SAFETY: a prefetch is only a hint; the address is inside a live allocation.
            unsafe { std::arch::x86_64::_mm_prefetch(rec.as_ptr().cast::<i8>(), std::arch::x86_64::_MM_HINT_T0) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = node;
    }

    /// hnswlib's neighbour heuristic: keep a candidate only if it is nearer the query than
    /// to every one kept, so links spread in all directions.
    fn select(&self, cands: &[Scored], m: usize) -> Vec<Scored> {
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
    fn connect(&self, node: u32, layer: usize, chosen: &[Scored]) {
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
    fn set_live(&self, node: u32, live: bool) {
        let meta = &self.nodes.at(node as usize)[2];
        let was = if live { meta.fetch_or(LIVE, AcqRel) } else { meta.fetch_and(!LIVE, AcqRel) } & LIVE != 0;
        if was != live && meta.load(Acquire) & READY != 0 {
            let (up, down) = if live { (&self.live, &self.dead) } else { (&self.dead, &self.live) };
            up.fetch_add(1, Relaxed);
            down.fetch_sub(1, Relaxed);
        }
    }

    /// Exact top-k over `nodes` (live ones only).
    fn scan(&self, q: &Code, k: usize, nodes: impl Iterator<Item = u32>) -> Vec<Scored> {
        let scored: Vec<(usize, f32)> = nodes.filter(|&n| self.is_live(n)).map(|n| (n as usize, self.score_to(q, n))).collect();
        vector::best_k(scored, k).into_iter().map(|(n, s)| Scored(s, n as u32)).collect()
    }

    /// The graph walk: greedy through the upper layers, then `ef`-wide on layer 0.
    fn walk(&self, q: &Code, k: usize, ef: usize, filter: Option<&dyn Fn(u32) -> bool>) -> Vec<Scored> {
        let Some((mut cur, top)) = self.entry_point() else { return Vec::new() };
        let mut cur_s = self.score_to(q, cur);
        for layer in (1..=top).rev() {
            (cur, cur_s) = self.greedy(q, cur, cur_s, layer);
        }
        let mut found = VISITED.with(|v| self.search_layer(q, &[Scored(cur_s, cur)], ef.max(k), 0, filter, &mut v.borrow_mut()));
        found.truncate(k);
        found
    }

    fn found(&self, hits: Vec<Scored>) -> Vec<Found> {
        hits.into_iter()
            .map(|Scored(s, n)| {
                let rec = self.nodes.at(n as usize);
                Found { image_id: rec[0].load(Relaxed) as i64, hotel_id: rec[1].load(Relaxed) as i64, similarity: s }
            })
            .collect()
    }

    /// Bytes held for the vectors and the graph (slabs made, maps estimated).
    pub fn bytes(&self) -> usize {
        let upper: usize = (0..self.reserved.load(Acquire)).filter_map(|n| self.upper.at(n)[0].get()).map(|l| l.len() * 4 + 16).sum();
        let maps = self.maps();
        self.nodes.bytes()
            + self.links.bytes()
            + self.upper.bytes()
            + upper
            + maps.node_of.capacity() * 24
            + maps.node_of.len() * 4
            + maps.by_hotel.len() * 48
    }
}

impl VectorIndex for GraphIndex {
    fn len(&self) -> usize {
        self.live.load(Relaxed)
    }

    fn watermark(&self) -> i64 {
        self.watermark.load(Acquire)
    }

    fn apply(&self, changes: &[Change]) -> Result<(), IndexError> {
        let _one = self.writer.lock();
        let mut fresh: Vec<Pending> = Vec::new();
        let mut pending_of: HashMap<i64, usize> = HashMap::new();
        for c in changes {
            let active = c.status == Status::Active;
            if let Some(&i) = pending_of.get(&c.image_id) {
                fresh[i].live = active;
                continue;
            }
            let known = self.maps().node_of.get(&c.image_id).copied();
            match known {
                Some(node) => self.set_live(node, active),
                None => {
                    if let (true, Some(v)) = (active, &c.vector) {
                        if v.len() != self.coder.dim {
                            return Err(IndexError::Dimension { got: v.len(), want: self.coder.dim });
                        }
                        let node = self.reserve();
                        {
                            let mut maps = self.maps.write();
                            maps.node_of.insert(c.image_id, node);
                            maps.by_hotel.entry(c.hotel_id).or_default().push(node);
                        }
                        pending_of.insert(c.image_id, fresh.len());
                        fresh.push(Pending { node, image_id: c.image_id, hotel_id: c.hotel_id, vector: v, live: true });
                    }
                }
            }
        }
        let add = |p: &Pending| self.insert(p.node, p.image_id, p.hotel_id, &self.coder.encode(p.vector), p.live);
        if fresh.len() >= PARALLEL_MIN {
            fresh.par_iter().for_each(add);
        } else {
            fresh.iter().for_each(add);
        }
        if let Some(last) = changes.iter().map(|c| c.seq).max() {
            self.watermark.fetch_max(last, AcqRel);
        }
        Ok(())
    }

    fn vector_of(&self, image_id: i64) -> Option<Vec<f32>> {
        let node = *self.maps().node_of.get(&image_id)?;
        self.is_live(node).then(|| {
            let (w, s) = self.code(node);
            self.coder.decode(w, s)
        })
    }

    fn search(&self, q: &[f32], k: usize, hotels: Option<&[i64]>, ef: usize) -> Result<(Vec<Found>, Plan), IndexError> {
        if q.len() != self.coder.dim {
            return Err(IndexError::Dimension { got: q.len(), want: self.coder.dim });
        }
        let code = self.coder.encode(q);
        let ef = if ef == 0 { self.opts.ef_search } else { ef }.max(k);
        let small = self.len() < self.opts.hnsw_min;
        let (hits, plan) = match hotels {
            Some(hs) => {
                let allowed: Vec<u32> = {
                    let maps = self.maps();
                    hs.iter().filter_map(|h| maps.by_hotel.get(h)).flatten().copied().collect()
                };
                if small || allowed.len() <= self.opts.exact_max {
                    (self.scan(&code, k, allowed.into_iter()), Plan::ExactFiltered)
                } else {
                    let set: HashSet<i64> = hs.iter().copied().collect();
                    let ok = |n: u32| self.is_live(n) && set.contains(&(self.nodes.at(n as usize)[1].load(Relaxed) as i64));
                    let found = self.walk(&code, k, ef, Some(&ok));
                    let live_allowed = allowed.iter().filter(|&&n| self.is_live(n)).count();
                    if found.len() >= k.min(live_allowed) {
                        (found, Plan::Graph)
                    } else {
                        // The walk can strand itself in a sparse filter: k exist, so find them.
                        (self.scan(&code, k, allowed.into_iter()), Plan::ExactFiltered)
                    }
                }
            }
            None if small => (self.scan(&code, k, 0..self.reserved.load(Acquire) as u32), Plan::Exact),
            None => {
                let live = |n: u32| self.is_live(n);
                // Nothing deleted: no filter to call for every node visited.
                let filter: Option<&dyn Fn(u32) -> bool> = if self.dead.load(Relaxed) == 0 { None } else { Some(&live) };
                (self.walk(&code, k, ef, filter), Plan::Graph)
            }
        };
        Ok((self.found(hits), plan))
    }

    fn compact(&mut self) {
        if self.dead.load(Relaxed) == 0 {
            return;
        }
        let fresh = GraphIndex::new(self.coder.dim, self.opts.clone());
        let keep: Vec<(u32, u32)> =
            (0..self.reserved.load(Acquire) as u32).filter(|&n| self.is_live(n)).map(|n| (n, fresh.reserve())).collect();
        {
            let mut maps = fresh.maps.write();
            for &(old, new) in &keep {
                let rec = self.nodes.at(old as usize);
                let (image, hotel) = (rec[0].load(Relaxed) as i64, rec[1].load(Relaxed) as i64);
                maps.node_of.insert(image, new);
                maps.by_hotel.entry(hotel).or_default().push(new);
            }
        }
        keep.par_iter().for_each(|&(old, new)| {
            let rec = self.nodes.at(old as usize);
            let (w, s) = self.code(old);
            fresh.insert(new, rec[0].load(Relaxed) as i64, rec[1].load(Relaxed) as i64, &Code { words: w.to_vec(), scale: s }, true);
        });
        fresh.watermark.store(self.watermark(), Release);
        *self = fresh;
    }

    fn save(&self, dir: &Path) -> Result<(), IndexError> {
        let _one = self.writer.lock();
        let count = self.reserved.load(Acquire);
        let watermark = self.watermark();
        super::save_generation(dir, watermark, |gdir| {
            let path = gdir.join("graph.bin");
            let file = std::fs::File::create(&path).map_err(|source| IndexError::Io { path: path.clone(), source })?;
            let mut out = HashingWriter { inner: BufWriter::with_capacity(1 << 20, file), hash: Sha256::new() };
            let io = |source| IndexError::Io { path: path.clone(), source };
            for n in 0..count {
                for w in self.nodes.at(n) {
                    out.write_all(&w.load(Acquire).to_le_bytes()).map_err(io)?;
                }
                for l in self.links.at(n) {
                    out.write_all(&l.load(Acquire).to_le_bytes()).map_err(io)?;
                }
                let upper = self.upper.at(n)[0].get().map_or(&[][..], |u| &u[..]);
                out.write_all(&(upper.len() as u32).to_le_bytes()).map_err(io)?;
                for l in upper {
                    out.write_all(&l.load(Acquire).to_le_bytes()).map_err(io)?;
                }
            }
            out.inner.flush().map_err(io)?;
            out.inner.get_ref().sync_all().map_err(io)?;
            let manifest = Manifest {
                kind: "hnsw".into(),
                format: self.coder.format,
                dim: self.coder.dim,
                m: self.m,
                count,
                entry: self.entry.load(Acquire),
                watermark,
                sha256: hex::encode(out.hash.finalize()),
            };
            Ok(serde_json::to_vec(&manifest).unwrap_or_default())
        })
    }

    fn fresh(&self) -> Box<dyn VectorIndex> {
        Box::new(GraphIndex::new(self.coder.dim, self.opts.clone()))
    }

    fn memory_bytes(&self) -> usize {
        self.bytes()
    }

    fn scores_exact(&self) -> bool {
        self.coder.format == Format::F32
    }
}

struct HashingWriter<W: Write> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl GraphIndex {
    /// Loads a dump written by `save`; any damage, or other settings, is an error (the
    /// caller rebuilds from the catalog).
    pub fn load(dir: &Path, dim: usize, opts: IndexOptions) -> Result<Self, IndexError> {
        let bad = |m: String| IndexError::BadDump(m);
        let (gdir, manifest) = super::current_generation(dir)?;
        let manifest: Manifest = serde_json::from_slice(&manifest).map_err(|e| bad(e.to_string()))?;
        if manifest.kind != "hnsw" || manifest.dim != dim || manifest.format != opts.format || manifest.m != opts.m.clamp(2, 128) {
            return Err(bad(format!(
                "dump is {} {}-d {} m={}; settings want hnsw {dim}-d {} m={}",
                manifest.kind,
                manifest.dim,
                manifest.format.name(),
                manifest.m,
                opts.format.name(),
                opts.m
            )));
        }
        let mut bytes = Vec::new();
        std::fs::File::open(gdir.join("graph.bin")).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(|e| bad(e.to_string()))?;
        if hex::encode(Sha256::digest(&bytes)) != manifest.sha256 {
            return Err(bad("graph.bin checksum mismatch".into()));
        }
        let idx = GraphIndex::new(dim, opts);
        let mut r = Reader { bytes: &bytes, at: 0 };
        let mut maps = Maps::default();
        for _ in 0..manifest.count {
            let n = idx.reserve();
            let rec = idx.nodes.at(n as usize);
            for w in rec {
                w.store(r.u64()?, Relaxed);
            }
            for l in idx.links.at(n as usize) {
                l.store(r.u32()?, Relaxed);
            }
            let up = r.u32()? as usize;
            if up > MAX_LEVEL * (1 + idx.m) {
                return Err(bad("graph.bin: impossible level".into()));
            }
            if up > 0 {
                let list: Box<[AtomicU32]> = (0..up).map(|_| r.u32().map(AtomicU32::new)).collect::<Result<_, _>>()?;
                let _ = idx.upper.at(n as usize)[0].set(list);
            }
            let meta = rec[2].load(Relaxed);
            let level = ((meta >> 8) & 0xFF) as usize;
            if meta & READY == 0 || up != level * (1 + idx.m) {
                return Err(bad("graph.bin: a node is incomplete".into()));
            }
            if meta & LIVE != 0 {
                idx.live.fetch_add(1, Relaxed);
            } else {
                idx.dead.fetch_add(1, Relaxed);
            }
            maps.node_of.insert(rec[0].load(Relaxed) as i64, n);
            maps.by_hotel.entry(rec[1].load(Relaxed) as i64).or_default().push(n);
        }
        if r.at != bytes.len() {
            return Err(bad("graph.bin has trailing bytes".into()));
        }
        // Every link must name a node of this dump.
        let count = manifest.count as u32;
        for n in 0..count {
            let levels = ((idx.meta(n) >> 8) & 0xFF) as usize;
            for layer in 0..=levels {
                let list = idx.list(n, layer);
                let len = list[0].load(Relaxed) as usize;
                if len >= list.len() || list[1..=len].iter().any(|l| l.load(Relaxed) >= count) {
                    return Err(bad("graph.bin: a link points nowhere".into()));
                }
            }
        }
        if manifest.count > 0 && (manifest.entry >> 40 != 1 || (manifest.entry as u32) >= count) {
            return Err(bad("graph.bin: no entry point".into()));
        }
        idx.entry.store(manifest.entry, Release);
        *idx.maps.write() = maps;
        idx.watermark.store(manifest.watermark, Release);
        Ok(idx)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], IndexError> {
        let s = self.bytes.get(self.at..self.at + N).ok_or_else(|| IndexError::BadDump("graph.bin is truncated".into()))?;
        self.at += N;
        Ok(s.try_into().unwrap_or([0; N]))
    }
    fn u64(&mut self) -> Result<u64, IndexError> {
        self.take::<8>().map(u64::from_le_bytes)
    }
    fn u32(&mut self) -> Result<u32, IndexError> {
        self.take::<4>().map(u32::from_le_bytes)
    }
}

/// The filled part of a link list (its first slot holds the count).
#[inline]
fn filled(list: &[AtomicU32]) -> &[AtomicU32] {
    let n = (list[0].load(Acquire) as usize).min(list.len() - 1);
    &list[1..=n]
}
