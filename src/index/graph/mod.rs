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
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::OnceLock;

use parking_lot::{Mutex, RwLock};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::codes::{Code, Coder, Format, Slab};
use super::{Found, IndexError, IndexOptions, Plan, VectorIndex};
use crate::catalog::{Change, Status};
use crate::vector;

mod build;
mod dump;
mod repair;
mod search;

use build::Pending;
use search::{Scored, VISITED};

const READY: u64 = 1;
const LIVE: u64 = 2;
/// Words before the code in a node record: image id, hotel id, meta (flags, level, scale).
const HEAD: usize = 3;
const MAX_LEVEL: usize = 15;
const LOCK_STRIPES: usize = 4096;
/// Batches of at most this many inserts have each new node searched by its own vector.
const CHECK_MAX: usize = 256;
/// Below this many inserts in one batch they run one after another (no pool overhead).
const PARALLEL_MIN: usize = 64;

/// Which image each node is, and the nodes of each hotel (for filters).
#[derive(Default)]
struct Maps {
    node_of: HashMap<i64, u32>,
    by_hotel: HashMap<i64, Vec<u32>>,
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
    /// Whether `apply` repairs after inserting (off only to measure what repairs do).
    repairs: AtomicBool,
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
            repairs: AtomicBool::new(true),
            opts,
        }
    }

    /// Turns the repair after each batch of inserts off or on (benchmarks measure without).
    pub fn set_repairs(&self, on: bool) {
        self.repairs.store(on, Relaxed);
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
        if !fresh.is_empty() && self.repairs.load(Relaxed) {
            // Uploads as the follower brings them are checked one by one; a rebuild's batch
            // is not (a search per node more than doubled the build), the audit covers it.
            let check: Vec<u32> = if fresh.len() <= CHECK_MAX { fresh.iter().map(|p| p.node).collect() } else { Vec::new() };
            self.repair_with(&check);
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
        let query = GraphQuery { index: self, code: &code, k, ef };
        let (hits, plan) = crate::index::plan::search(&query, k, hotels, self.opts.exact_max);
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
        fresh.repair();
        fresh.watermark.store(self.watermark(), Release);
        *self = fresh;
    }

    fn audit(&self, from: usize, count: usize) -> (usize, usize) {
        GraphIndex::audit(self, from, count)
    }

    fn save(&self, dir: &Path) -> Result<(), IndexError> {
        self.dump(dir)
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

/// The filled part of a link list (its first slot holds the count).
#[inline]
fn filled(list: &[AtomicU32]) -> &[AtomicU32] {
    let n = (list[0].load(Acquire) as usize).min(list.len() - 1);
    &list[1..=n]
}

/// One query against the graph, as the planner sees it.
struct GraphQuery<'a> {
    index: &'a GraphIndex,
    code: &'a Code,
    k: usize,
    ef: usize,
}

impl crate::index::plan::Searcher for GraphQuery<'_> {
    type Slot = u32;
    type Hit = Scored;

    fn has_graph(&self) -> bool {
        self.index.len() >= self.index.opts.hnsw_min
    }
    fn slots_of(&self, hotels: &[i64]) -> Vec<u32> {
        let maps = self.index.maps();
        hotels.iter().filter_map(|h| maps.by_hotel.get(h)).flatten().copied().collect()
    }
    fn is_live(&self, node: u32) -> bool {
        self.index.is_live(node)
    }
    fn scan(&self, nodes: Vec<u32>) -> Vec<Scored> {
        self.index.scan(self.code, self.k, nodes.into_iter())
    }
    fn scan_all(&self) -> Vec<Scored> {
        self.index.scan(self.code, self.k, 0..self.index.reserved.load(Acquire) as u32)
    }
    fn walk(&self, hotels: Option<&HashSet<i64>>) -> Vec<Scored> {
        let g = self.index;
        match hotels {
            Some(set) => {
                let ok = |n: u32| g.is_live(n) && set.contains(&(g.nodes.at(n as usize)[1].load(Relaxed) as i64));
                g.walk(self.code, self.k, self.ef, Some(&ok))
            }
            // Nothing deleted: no filter to call for every node visited.
            None if g.dead.load(Relaxed) == 0 => g.walk(self.code, self.k, self.ef, None),
            None => g.walk(self.code, self.k, self.ef, Some(&|n: u32| g.is_live(n))),
        }
    }
}
