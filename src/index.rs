//! Index: the vectors of active images, searched exactly (SIMD scan) or through an HNSW
//! graph (`hnsw_rs`) with exact re-ranking, with hotel filters applied inside the search.
//!
//! Derived from the catalog: it is persisted with the catalog change it reflects (the
//! watermark), catches up from the change log on start, and is rebuilt when the dump is
//! missing or damaged.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use hnsw_rs::prelude::{Distance, Hnsw, HnswIo};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::{Change, Status};
use crate::store::write_atomic;
use crate::vector;

/// Why the index could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// File system trouble.
    #[error("index {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The dump is missing, damaged or for another model.
    #[error("index dump unusable: {0}")]
    BadDump(String),
    /// A vector of the wrong length.
    #[error("vector of dimension {got}, index has {want}")]
    Dimension { got: usize, want: usize },
}

/// Index settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IndexOptions {
    /// Below this many vectors every search is an exact scan (see README for the measurement).
    pub hnsw_min: usize,
    /// A filtered search scans exactly when the filter leaves at most this many vectors.
    pub exact_max: usize,
    /// HNSW links per node.
    pub m: usize,
    /// HNSW candidate list while building.
    pub ef_construction: usize,
    /// HNSW candidate list while searching.
    pub ef_search: usize,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions { hnsw_min: 20_000, exact_max: 20_000, m: 16, ef_construction: 100, ef_search: 128 }
    }
}

/// Cosine distance of unit vectors, clamped at zero: a photo's duplicate meets it at
/// distance 0, and rounding must not make that negative (hnsw_rs's `DistDot` panics there).
#[derive(Default, Clone, Copy)]
pub struct CosineDistance;

impl Distance<f32> for CosineDistance {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - vector::dot(a, b)).max(0.0)
    }
}

/// One image found: its id, hotel and cosine similarity to the query.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Found {
    pub image_id: i64,
    pub hotel_id: i64,
    pub similarity: f32,
}

/// How a search was answered (for the latency figures and the curious).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Plan {
    /// Exact scan of every live vector.
    Exact,
    /// Exact scan of the vectors the filter allows.
    ExactFiltered,
    /// HNSW walk (filtered inside the walk when a filter is set), re-ranked exactly.
    Graph,
}

/// A searchable set of image vectors, derived from the catalog's change feed: the port the
/// engine searches through.
pub trait VectorIndex: Send + Sync {
    /// Live vectors.
    fn len(&self) -> usize;
    /// The last catalog change applied.
    fn watermark(&self) -> i64;
    /// Applies catalog changes in order (replaying one already applied changes nothing).
    fn apply(&mut self, changes: &[Change]) -> Result<(), IndexError>;
    /// The stored vector of a live image.
    fn vector_of(&self, image_id: i64) -> Option<&[f32]>;
    /// The `k` most similar live images, only from `hotels` when given; and how it was done.
    fn search(&self, q: &[f32], k: usize, hotels: Option<&[i64]>) -> Result<(Vec<Found>, Plan), IndexError>;
    /// Drops deleted vectors for good.
    fn compact(&mut self);
    /// Saves a dump under `dir` that the same kind of index can load.
    fn save(&self, dir: &Path) -> Result<(), IndexError>;
    /// An empty index of the same kind and settings.
    fn fresh(&self) -> Box<dyn VectorIndex>;
}

impl VectorIndex for HnswIndex {
    fn len(&self) -> usize {
        HnswIndex::len(self)
    }
    fn watermark(&self) -> i64 {
        HnswIndex::watermark(self)
    }
    fn apply(&mut self, changes: &[Change]) -> Result<(), IndexError> {
        HnswIndex::apply(self, changes)
    }
    fn vector_of(&self, image_id: i64) -> Option<&[f32]> {
        HnswIndex::vector_of(self, image_id)
    }
    fn search(&self, q: &[f32], k: usize, hotels: Option<&[i64]>) -> Result<(Vec<Found>, Plan), IndexError> {
        HnswIndex::search(self, q, k, hotels)
    }
    fn compact(&mut self) {
        HnswIndex::compact(self)
    }
    fn save(&self, dir: &Path) -> Result<(), IndexError> {
        HnswIndex::save(self, dir)
    }
    fn fresh(&self) -> Box<dyn VectorIndex> {
        Box::new(HnswIndex::new(self.dim, self.opts.clone()))
    }
}

/// The vectors in memory, scanned exactly (SIMD dot products) while small and through an
/// `hnsw_rs` graph once large.
pub struct HnswIndex {
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

    /// Whether no vector is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The last catalog change applied.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Whether searches may walk the HNSW graph.
    pub fn has_graph(&self) -> bool {
        self.graph.is_some()
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
    pub fn search(&self, q: &[f32], k: usize, hotels: Option<&[i64]>) -> Result<(Vec<Found>, Plan), IndexError> {
        if q.len() != self.dim {
            return Err(IndexError::Dimension { got: q.len(), want: self.dim });
        }
        let (slots, plan) = match hotels {
            Some(hs) => {
                let allowed: Vec<usize> = hs.iter().filter_map(|h| self.by_hotel.get(h)).flatten().copied().collect();
                let live_allowed = allowed.iter().filter(|&&s| self.live[s]).count();
                match &self.graph {
                    Some(g) if allowed.len() > self.opts.exact_max => {
                        let set: HashSet<i64> = hs.iter().copied().collect();
                        let filter = |id: &usize| self.live[*id] && set.contains(&self.hotel_ids[*id]);
                        let found = self.walk(g, q, k, Some(&filter));
                        if found.len() >= k.min(live_allowed) {
                            (found, Plan::Graph)
                        } else {
                            // The walk can strand itself in a sparse filter: k exist, so find them.
                            (self.scan(q, k, allowed.into_iter()), Plan::ExactFiltered)
                        }
                    }
                    _ => (self.scan(q, k, allowed.into_iter()), Plan::ExactFiltered),
                }
            }
            None => match &self.graph {
                Some(g) => {
                    let filter = |id: &usize| self.live[*id];
                    (self.walk(g, q, k, Some(&filter)), Plan::Graph)
                }
                None => (self.scan(q, k, 0..self.image_ids.len()), Plan::Exact),
            },
        };
        let found = slots.into_iter().map(|(s, sim)| Found { image_id: self.image_ids[s], hotel_id: self.hotel_ids[s], similarity: sim }).collect();
        Ok((found, plan))
    }

    /// HNSW walk for 4k candidates, re-ranked exactly with the stored vectors.
    fn walk(&self, g: &Hnsw<'static, f32, CosineDistance>, q: &[f32], k: usize, filter: Option<&dyn hnsw_rs::prelude::FilterT>) -> Vec<(usize, f32)> {
        let want = (4 * k).max(32);
        let ef = self.opts.ef_search.max(want);
        let cands = g.search_filter(q, want, ef, filter);
        self.scan(q, k, cands.into_iter().map(|n| n.d_id))
    }

    /// Saves the index under `dir` (a new generation, then `CURRENT` is switched atomically).
    pub fn save(&self, dir: &Path) -> Result<(), IndexError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| IndexError::Io { path, source }
        };
        let generation = format!("gen-{}", self.watermark);
        let gdir = dir.join(&generation);
        let _ = std::fs::remove_dir_all(&gdir);
        std::fs::create_dir_all(&gdir).map_err(io(&gdir))?;
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
            g.file_dump(&gdir, "graph").map_err(|e| IndexError::BadDump(e.to_string()))?;
        }
        let manifest = Manifest { watermark: self.watermark, dim: self.dim, count: self.image_ids.len(), vectors_sha256: hex::encode(Sha256::digest(&blob)), has_graph: self.graph.is_some() };
        write_atomic(&gdir.join("manifest.json"), &serde_json::to_vec(&manifest).unwrap_or_default()).map_err(|e| IndexError::BadDump(e.to_string()))?;
        write_atomic(&dir.join("CURRENT"), generation.as_bytes()).map_err(|e| IndexError::BadDump(e.to_string()))?;
        // Older generations are no longer referenced.
        for e in std::fs::read_dir(dir).map_err(io(dir))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("gen-") && name != generation {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        Ok(())
    }

    /// Loads the index saved under `dir`; any damage is an error (the caller rebuilds).
    pub fn load(dir: &Path, dim: usize, opts: IndexOptions) -> Result<Self, IndexError> {
        let bad = |m: String| IndexError::BadDump(m);
        let generation = std::fs::read_to_string(dir.join("CURRENT")).map_err(|e| bad(format!("no CURRENT: {e}")))?;
        let gdir = dir.join(generation.trim());
        let manifest: Manifest = serde_json::from_slice(&std::fs::read(gdir.join("manifest.json")).map_err(|e| bad(e.to_string()))?).map_err(|e| bad(e.to_string()))?;
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
            let v: Vec<f32> = r[17..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seed: u64, dim: usize) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut v: Vec<f32> = (0..dim)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 2000) as f32 / 1000.0 - 1.0
            })
            .collect();
        crate::pool::l2_normalize(&mut v);
        v
    }

    fn change(seq: i64, image: i64, hotel: i64, status: Status, v: Option<Vec<f32>>) -> Change {
        Change { seq, image_id: image, hotel_id: hotel, status, pdq: Default::default(), pdq_quality: 0, vector: v }
    }

    fn filled(n: i64, opts: IndexOptions) -> HnswIndex {
        let mut idx = HnswIndex::new(32, opts);
        let changes: Vec<Change> = (1..=n).map(|i| change(i, i, i % 10, Status::Active, Some(unit(i as u64, 32)))).collect();
        idx.apply(&changes).unwrap();
        idx
    }

    #[test]
    fn exact_search_filters_and_tombstones() {
        let mut idx = filled(200, IndexOptions::default());
        let q = unit(7, 32);
        let (top, plan) = idx.search(&q, 5, None).unwrap();
        assert_eq!((top[0].image_id, plan), (7, Plan::Exact));
        let (only3, _) = idx.search(&q, 5, Some(&[3])).unwrap();
        assert!(only3.iter().all(|f| f.hotel_id == 3) && only3.len() == 5);
        idx.apply(&[change(201, 7, 7, Status::Deleted, None)]).unwrap();
        assert!(idx.search(&q, 50, None).unwrap().0.iter().all(|f| f.image_id != 7));
        assert_eq!(idx.watermark(), 201);
    }

    #[test]
    fn graph_search_with_filters_returns_k_and_agrees_with_exact() {
        let opts = IndexOptions { hnsw_min: 500, exact_max: 10, ..Default::default() };
        let idx = filled(2000, opts);
        assert!(idx.has_graph());
        let mut agree = 0;
        for s in 0..50u64 {
            let q = unit(10_000 + s, 32);
            let (g, plan) = idx.search(&q, 10, Some(&[2, 5])).unwrap();
            assert_eq!(plan, Plan::Graph);
            assert_eq!(g.len(), 10);
            assert!(g.iter().all(|f| f.hotel_id == 2 || f.hotel_id == 5));
            let exact = idx.scan(&q, 1, (0..idx.image_ids.len()).filter(|&s| matches!(idx.hotel_ids[s], 2 | 5)));
            agree += usize::from(g[0].image_id == idx.image_ids[exact[0].0]);
        }
        assert!(agree >= 45, "top-1 recall {agree}/50");
    }

    #[test]
    fn save_load_round_trip_and_damage_is_detected() {
        let dir = std::env::temp_dir().join(format!("hm-index-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let opts = IndexOptions { hnsw_min: 300, ..Default::default() };
        let idx = filled(400, opts.clone());
        idx.save(&dir).unwrap();
        let back = HnswIndex::load(&dir, 32, opts.clone()).unwrap();
        assert_eq!((back.len(), back.watermark(), back.has_graph()), (400, 400, true));
        let q = unit(33, 32);
        assert_eq!(back.search(&q, 3, None).unwrap().0, idx.search(&q, 3, None).unwrap().0);
        let gen = std::fs::read_to_string(dir.join("CURRENT")).unwrap();
        let vec_file = dir.join(gen.trim()).join("vectors.bin");
        let mut bytes = std::fs::read(&vec_file).unwrap();
        bytes[100] ^= 0xFF;
        std::fs::write(&vec_file, bytes).unwrap();
        assert!(matches!(HnswIndex::load(&dir, 32, opts.clone()), Err(IndexError::BadDump(_))));
        assert!(HnswIndex::load(&dir.join("nowhere"), 32, opts).is_err());
        std::fs::remove_dir_all(dir).ok();
    }
}
