//! The `hnsw_rs` crate's graph over f32 vectors, as a [`VectorIndex`]: exact scans while
//! small, the graph (built at `hnsw_min`) with exact re-ranking once large. Kept beside
//! [`super::GraphIndex`] as the reference the benchmark compares with; its inserts take a
//! write lock, so searches wait for them.

use parking_lot::RwLock;
use std::collections::{HashMap, HashSet};
use std::path::Path;

use hnsw_rs::prelude::{Distance, Hnsw, HnswIo};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Found, IndexError, IndexOptions, Plan, VectorIndex};
use crate::catalog::{Change, Status};
use crate::store::write_atomic;
use crate::vector;

/// Cosine distance of unit vectors, clamped at zero: a photo's duplicate meets it at
/// distance 0, and rounding must not make that negative (hnsw_rs's `DistDot` panics there).
#[derive(Default, Clone, Copy)]
pub struct CosineDistance;

impl Distance<f32> for CosineDistance {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - vector::dot(a, b)).max(0.0)
    }
}

/// [`HnswIndex`] behind a lock, as a [`VectorIndex`].
pub struct HnswRsIndex(RwLock<HnswIndex>);

impl HnswRsIndex {
    /// An empty index.
    pub fn new(dim: usize, opts: IndexOptions) -> Self {
        HnswRsIndex(RwLock::new(HnswIndex::new(dim, opts)))
    }

    /// Loads a dump made by `save`.
    pub fn load(dir: &Path, dim: usize, opts: IndexOptions) -> Result<Self, IndexError> {
        Ok(HnswRsIndex(RwLock::new(HnswIndex::load(dir, dim, opts)?)))
    }

    fn read(&self) -> parking_lot::RwLockReadGuard<'_, HnswIndex> {
        self.0.read()
    }
}

impl VectorIndex for HnswRsIndex {
    fn len(&self) -> usize {
        self.read().len()
    }
    fn watermark(&self) -> i64 {
        self.read().watermark()
    }
    fn apply(&self, changes: &[Change]) -> Result<(), IndexError> {
        self.0.write().apply(changes)
    }
    fn vector_of(&self, image_id: i64) -> Option<Vec<f32>> {
        self.read().vector_of(image_id).map(<[f32]>::to_vec)
    }
    fn search(&self, q: &[f32], k: usize, hotels: Option<&[i64]>, ef: usize) -> Result<(Vec<Found>, Plan), IndexError> {
        self.read().search(q, k, hotels, ef)
    }
    fn compact(&mut self) {
        self.0.get_mut().compact()
    }
    fn save(&self, dir: &Path) -> Result<(), IndexError> {
        self.read().save(dir)
    }
    fn fresh(&self) -> Box<dyn VectorIndex> {
        let inner = self.read();
        Box::new(HnswRsIndex::new(inner.dim, inner.opts.clone()))
    }
    fn memory_bytes(&self) -> usize {
        let inner = self.read();
        // Our flat copy and maps, plus hnsw_rs's own copy of each vector and its links
        // (a pointer-sized reference and a distance per link, in Arc'd nodes).
        let n = inner.image_ids.len();
        let graph = if inner.graph.is_some() { n * (inner.dim * 4 + 64 + 2 * inner.opts.m * 40) } else { 0 };
        n * inner.bytes_per_vector() + graph
    }
    fn scores_exact(&self) -> bool {
        // f32 throughout, and graph hits are re-ranked from the flat copy.
        true
    }
}

/// The vectors in memory, scanned exactly (SIMD dot products) while small and through an
/// `hnsw_rs` graph once large.
struct HnswIndex {
    dim: usize,
    opts: IndexOptions,
    vectors: Vec<f32>,
    image_ids: Vec<i64>,
    hotel_ids: Vec<i64>,
    live: Vec<bool>,
    slot_of: HashMap<i64, usize>,
    by_hotel: HashMap<i64, Vec<usize>>,
    graph: Option<Hnsw<'static, f32, CosineDistance>>,
    watermark: i64,
}

/// What a dump directory's manifest says.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    watermark: i64,
    dim: usize,
    count: usize,
    vectors_sha256: String,
    has_graph: bool,
}

impl HnswIndex {
    /// An empty index for `dim`-dimensional unit vectors.
    pub fn new(dim: usize, opts: IndexOptions) -> Self {
        HnswIndex {
            dim,
            opts,
            vectors: Vec::new(),
            image_ids: Vec::new(),
            hotel_ids: Vec::new(),
            live: Vec::new(),
            slot_of: HashMap::new(),
            by_hotel: HashMap::new(),
            graph: None,
            watermark: 0,
        }
    }

    /// Live vectors.
    pub fn len(&self) -> usize {
        self.live.iter().filter(|&&l| l).count()
    }

    /// The last catalog change applied.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Bytes held per stored vector slot, roughly (vectors, ids, maps; the graph is extra).
    pub fn bytes_per_vector(&self) -> usize {
        self.dim * 4 + 8 + 8 + 1 + 24
    }

    /// Applies catalog changes in order.
    pub fn apply(&mut self, changes: &[Change]) -> Result<(), IndexError> {
        for c in changes {
            let active = c.status == Status::Active;
            match self.slot_of.get(&c.image_id) {
                Some(&slot) => self.live[slot] = active,
                None => {
                    if let (true, Some(v)) = (active, &c.vector) {
                        self.insert(c.image_id, c.hotel_id, v)?;
                    }
                }
            }
            self.watermark = self.watermark.max(c.seq);
        }
        if self.graph.is_none() && self.len() >= self.opts.hnsw_min {
            self.build_graph();
        }
        Ok(())
    }

    fn insert(&mut self, image_id: i64, hotel_id: i64, v: &[f32]) -> Result<(), IndexError> {
        if v.len() != self.dim {
            return Err(IndexError::Dimension { got: v.len(), want: self.dim });
        }
        let slot = self.image_ids.len();
        self.vectors.extend_from_slice(v);
        self.image_ids.push(image_id);
        self.hotel_ids.push(hotel_id);
        self.live.push(true);
        self.slot_of.insert(image_id, slot);
        self.by_hotel.entry(hotel_id).or_default().push(slot);
        if let Some(g) = &self.graph {
            g.insert_slice((&self.vectors[slot * self.dim..(slot + 1) * self.dim], slot));
        }
        Ok(())
    }

    /// The stored vector of a live image.
    pub fn vector_of(&self, image_id: i64) -> Option<&[f32]> {
        self.slot_of.get(&image_id).filter(|&&s| self.live[s]).map(|&s| self.vector(s))
    }

    fn vector(&self, slot: usize) -> &[f32] {
        &self.vectors[slot * self.dim..(slot + 1) * self.dim]
    }

    /// Builds the graph over every slot (tombstones included: they are filtered in the walk).
    fn build_graph(&mut self) {
        let n = self.image_ids.len();
        // hnsw_rs only dumps graphs made with its maximum number of layers.
        let mut g = Hnsw::new(self.opts.m, n.max(1024), 16, self.opts.ef_construction, CosineDistance);
        let data: Vec<(&[f32], usize)> = (0..n).map(|s| (self.vector(s), s)).collect();
        g.parallel_insert_slice(&data);
        g.set_searching_mode(true);
        self.graph = Some(g);
    }

    /// Drops tombstones and rebuilds the graph: deleted vectors are purged here.
    pub fn compact(&mut self) {
        // Nothing deleted: the graph already holds exactly the live vectors (a rebuild from
        // the feed lands here, and would otherwise build its graph a second time).
        if self.live.iter().all(|&l| l) {
            return;
        }
        let keep: Vec<usize> = (0..self.image_ids.len()).filter(|&s| self.live[s]).collect();
        let mut fresh = HnswIndex::new(self.dim, self.opts.clone());
        for &s in &keep {
            let _ = fresh.insert(self.image_ids[s], self.hotel_ids[s], self.vector(s));
        }
        fresh.watermark = self.watermark;
        if fresh.len() >= fresh.opts.hnsw_min {
            fresh.build_graph();
        }
        *self = fresh;
    }

    /// Exact top-k over the given slots.
    fn scan<'a>(&self, q: &[f32], k: usize, slots: impl Iterator<Item = usize> + 'a) -> Vec<(usize, f32)> {
        vector::best_k(slots.filter(|&s| self.live[s]).map(|s| (s, vector::dot(self.vector(s), q))).collect(), k)
    }

    /// The `k` most similar live images, only from `hotels` when given; and how it was done.
    pub fn search(&self, q: &[f32], k: usize, hotels: Option<&[i64]>, ef: usize) -> Result<(Vec<Found>, Plan), IndexError> {
        if q.len() != self.dim {
            return Err(IndexError::Dimension { got: q.len(), want: self.dim });
        }
        let query = HnswQuery { index: self, q, k, ef };
        let (slots, plan) = super::plan::search(&query, k, hotels, self.opts.exact_max);
        let found =
            slots.into_iter().map(|(s, sim)| Found { image_id: self.image_ids[s], hotel_id: self.hotel_ids[s], similarity: sim }).collect();
        Ok((found, plan))
    }

    /// HNSW walk for 4k candidates, re-ranked exactly with the stored vectors.
    fn walk(
        &self,
        g: &Hnsw<'static, f32, CosineDistance>,
        q: &[f32],
        k: usize,
        ef: usize,
        filter: Option<&dyn hnsw_rs::prelude::FilterT>,
    ) -> Vec<(usize, f32)> {
        let want = (4 * k).max(32);
        let ef = if ef == 0 { self.opts.ef_search } else { ef }.max(want);
        let cands = g.search_filter(q, want, ef, filter);
        self.scan(q, k, cands.into_iter().map(|n| n.d_id))
    }

    /// Saves the index under `dir` (a new generation, then `CURRENT` is switched atomically).
    pub fn save(&self, dir: &Path) -> Result<(), IndexError> {
        super::save_generation(dir, self.watermark, |gdir| {
            let mut blob = Vec::with_capacity(self.image_ids.len() * (self.dim * 4 + 17));
            for s in 0..self.image_ids.len() {
                blob.extend_from_slice(&self.image_ids[s].to_le_bytes());
                blob.extend_from_slice(&self.hotel_ids[s].to_le_bytes());
                blob.push(u8::from(self.live[s]));
                self.vector(s).iter().for_each(|x| blob.extend_from_slice(&x.to_le_bytes()));
            }
            write_atomic(&gdir.join("vectors.bin"), &blob).map_err(|e| IndexError::BadDump(e.to_string()))?;
            if let Some(g) = &self.graph {
                use hnsw_rs::prelude::AnnT;
                g.file_dump(gdir, "graph").map_err(|e| IndexError::BadDump(e.to_string()))?;
            }
            let manifest = Manifest {
                watermark: self.watermark,
                dim: self.dim,
                count: self.image_ids.len(),
                vectors_sha256: hex::encode(Sha256::digest(&blob)),
                has_graph: self.graph.is_some(),
            };
            Ok(serde_json::to_vec(&manifest).unwrap_or_default())
        })
    }

    /// Loads the index saved under `dir`; any damage is an error (the caller rebuilds).
    pub fn load(dir: &Path, dim: usize, opts: IndexOptions) -> Result<Self, IndexError> {
        let bad = |m: String| IndexError::BadDump(m);
        let (gdir, manifest) = super::current_generation(dir)?;
        let manifest: Manifest = serde_json::from_slice(&manifest).map_err(|e| bad(e.to_string()))?;
        if manifest.dim != dim {
            return Err(bad(format!("dimension {} but the model gives {dim}", manifest.dim)));
        }
        let blob = std::fs::read(gdir.join("vectors.bin")).map_err(|e| bad(e.to_string()))?;
        if hex::encode(Sha256::digest(&blob)) != manifest.vectors_sha256 {
            return Err(bad("vectors.bin checksum mismatch".into()));
        }
        let rec = 17 + dim * 4;
        if blob.len() != rec * manifest.count {
            return Err(bad("vectors.bin has the wrong size".into()));
        }
        let mut idx = HnswIndex::new(dim, opts);
        for r in blob.chunks_exact(rec) {
            let image_id = i64::from_le_bytes(r[0..8].try_into().unwrap_or_default());
            let hotel_id = i64::from_le_bytes(r[8..16].try_into().unwrap_or_default());
            let v: Vec<f32> = crate::digest::bytes_to_f32(&r[17..]);
            idx.insert(image_id, hotel_id, &v)?;
            let slot = idx.image_ids.len() - 1;
            idx.live[slot] = r[16] == 1;
        }
        if manifest.has_graph {
            // hnsw_rs's reloaded graph borrows its loader; the loader is small and lives as long as the graph.
            let graph_dir = gdir.clone();
            let g = std::panic::catch_unwind(move || {
                let loader: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(&graph_dir, "graph")));
                loader.load_hnsw::<f32, CosineDistance>()
            })
            .map_err(|_| bad("graph files are damaged".into()))?
            .map_err(|e| bad(format!("graph: {e}")))?;
            if g.get_nb_point() != manifest.count {
                return Err(bad("graph and vectors disagree".into()));
            }
            let mut g = g;
            g.set_searching_mode(true);
            idx.graph = Some(g);
        }
        idx.watermark = manifest.watermark;
        Ok(idx)
    }
}

/// One query against the `hnsw_rs` index, as the planner sees it.
struct HnswQuery<'a> {
    index: &'a HnswIndex,
    q: &'a [f32],
    k: usize,
    ef: usize,
}

impl super::plan::Searcher for HnswQuery<'_> {
    type Slot = usize;
    type Hit = (usize, f32);

    fn has_graph(&self) -> bool {
        self.index.graph.is_some()
    }
    fn slots_of(&self, hotels: &[i64]) -> Vec<usize> {
        hotels.iter().filter_map(|h| self.index.by_hotel.get(h)).flatten().copied().collect()
    }
    fn is_live(&self, slot: usize) -> bool {
        self.index.live[slot]
    }
    fn scan(&self, slots: Vec<usize>) -> Vec<(usize, f32)> {
        self.index.scan(self.q, self.k, slots.into_iter())
    }
    fn scan_all(&self) -> Vec<(usize, f32)> {
        self.index.scan(self.q, self.k, 0..self.index.image_ids.len())
    }
    fn walk(&self, hotels: Option<&HashSet<i64>>) -> Vec<(usize, f32)> {
        let (idx, Some(g)) = (self.index, &self.index.graph) else { return self.scan_all() };
        match hotels {
            Some(set) => {
                let filter = |id: &usize| idx.live[*id] && set.contains(&idx.hotel_ids[*id]);
                idx.walk(g, self.q, self.k, self.ef, Some(&filter))
            }
            None => idx.walk(g, self.q, self.k, self.ef, Some(&|id: &usize| idx.live[*id])),
        }
    }
}
