//! Index: the vectors of active images, searched exactly (SIMD scan) or through an HNSW
//! graph, with hotel filters applied inside the search.
//!
//! Derived from the catalog: it is persisted with the catalog change it reflects (the
//! watermark), catches up from the change log on start, and is rebuilt when the dump is
//! missing, damaged or made with other settings. Two implementations of [`VectorIndex`]:
//! [`GraphIndex`], the project's own graph over compact vectors (the default), and
//! [`HnswRsIndex`], the `hnsw_rs` crate's graph over f32 vectors.

mod codes;
mod graph;
mod hnswrs;
mod plan;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::catalog::Change;
use crate::store::write_atomic;

pub use codes::Format;
pub use graph::GraphIndex;
pub use hnswrs::{CosineDistance, HnswRsIndex};

/// Why the index could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// File system trouble.
    #[error("index {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The dump is missing, damaged or for another model or settings.
    #[error("index dump unusable: {0}")]
    BadDump(String),
    /// A vector of the wrong length.
    #[error("vector of dimension {got}, index has {want}")]
    Dimension { got: usize, want: usize },
}

/// Which graph implementation holds the vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// [`GraphIndex`]: compact vectors, lock-free searches.
    #[default]
    Hnsw,
    /// [`HnswRsIndex`]: the `hnsw_rs` crate, f32 only; inserts wait for searches.
    HnswRs,
}

/// Index settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IndexOptions {
    /// The graph implementation.
    pub kind: Kind,
    /// How vectors are held in memory (`hnsw` only; `hnsw_rs` is always f32).
    pub format: Format,
    /// Below this many live vectors every search is an exact scan (see docs/ann.md).
    pub hnsw_min: usize,
    /// A filtered search scans exactly when the filter leaves at most this many vectors.
    pub exact_max: usize,
    /// HNSW links per node (twice as many on the bottom layer).
    pub m: usize,
    /// HNSW candidate list while building.
    pub ef_construction: usize,
    /// HNSW candidate list while searching, unless a query sets its own.
    pub ef_search: usize,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            kind: Kind::Hnsw,
            format: Format::Int8,
            hnsw_min: 20_000,
            exact_max: 20_000,
            m: 16,
            ef_construction: 100,
            ef_search: 128,
        }
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
    /// HNSW walk (filtered inside the walk when a filter is set).
    Graph,
}

/// A searchable set of image vectors, derived from the catalog's change feed: the port the
/// engine searches through. Everything a serving engine calls takes `&self`, so changes land
/// while searches run (`compact` works on an index not yet swapped in).
pub trait VectorIndex: Send + Sync {
    /// Live vectors.
    fn len(&self) -> usize;
    /// Whether it holds no live vector.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The last catalog change applied.
    fn watermark(&self) -> i64;
    /// Applies catalog changes in order (replaying one already applied changes nothing).
    fn apply(&self, changes: &[Change]) -> Result<(), IndexError>;
    /// The stored vector of a live image (as the index holds it: compact formats round).
    fn vector_of(&self, image_id: i64) -> Option<Vec<f32>>;
    /// The `k` most similar live images, only from `hotels` when given, with a candidate
    /// list of `ef` (0: the configured one); and how it was done.
    fn search(&self, q: &[f32], k: usize, hotels: Option<&[i64]>, ef: usize) -> Result<(Vec<Found>, Plan), IndexError>;
    /// Drops deleted vectors for good.
    fn compact(&mut self);
    /// Checks that `count` vectors from position `from` on (wrapping) are found by their own
    /// vector, linking in any that are not; the position to go on from, and how many were
    /// linked in. A background audit calls it a slice at a time.
    fn audit(&self, from: usize, count: usize) -> (usize, usize) {
        let _ = count;
        (from, 0)
    }
    /// Saves a dump under `dir` that the same kind of index can load.
    fn save(&self, dir: &Path) -> Result<(), IndexError>;
    /// An empty index of the same kind and settings.
    fn fresh(&self) -> Box<dyn VectorIndex>;
    /// Bytes of memory it holds, roughly.
    fn memory_bytes(&self) -> usize;
    /// Whether the similarities it returns are exact (f32); compact codes round them.
    fn scores_exact(&self) -> bool;
}

/// An empty index of the kind `opts` names.
pub fn new_index(dim: usize, opts: IndexOptions) -> Box<dyn VectorIndex> {
    match opts.kind {
        Kind::Hnsw => Box::new(GraphIndex::new(dim, opts)),
        Kind::HnswRs => Box::new(HnswRsIndex::new(dim, opts)),
    }
}

/// Loads the dump under `dir`, which must have been made by the kind and settings of `opts`.
pub fn load_index(dir: &Path, dim: usize, opts: IndexOptions) -> Result<Box<dyn VectorIndex>, IndexError> {
    Ok(match opts.kind {
        Kind::Hnsw => Box::new(GraphIndex::load(dir, dim, opts)?),
        Kind::HnswRs => Box::new(HnswRsIndex::load(dir, dim, opts)?),
    })
}

/// Writes a dump as a new generation under `dir`: `write` fills the generation's directory
/// and returns the manifest; then `CURRENT` is switched atomically and older generations go.
fn save_generation(dir: &Path, watermark: i64, write: impl FnOnce(&Path) -> Result<Vec<u8>, IndexError>) -> Result<(), IndexError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| IndexError::Io { path, source }
    };
    let generation = format!("gen-{watermark}");
    let gdir = dir.join(&generation);
    let _ = std::fs::remove_dir_all(&gdir);
    std::fs::create_dir_all(&gdir).map_err(io(&gdir))?;
    let manifest = write(&gdir)?;
    write_atomic(&gdir.join("manifest.json"), &manifest).map_err(|e| IndexError::BadDump(e.to_string()))?;
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

/// The current generation's directory under `dir`, and its manifest's bytes.
fn current_generation(dir: &Path) -> Result<(PathBuf, Vec<u8>), IndexError> {
    let bad = IndexError::BadDump;
    let generation = std::fs::read_to_string(dir.join("CURRENT")).map_err(|e| bad(format!("no CURRENT: {e}")))?;
    let gdir = dir.join(generation.trim());
    let manifest = std::fs::read(gdir.join("manifest.json")).map_err(|e| bad(e.to_string()))?;
    Ok((gdir, manifest))
}

#[cfg(test)]
mod tests;
