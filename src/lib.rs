//! hotelmatch: tells an investigator which hotel a room photo was taken in.
//!
//! The modules follow the pipeline, each using only the ones before it:
//! `decode` → `pdq` / `embed` (with `model` cards, `pool`ing and `erased` regions; `embedders`
//! is the port) → `store` (blobs) and `catalog` (each a port with its adapters) → `index`
//! (and `hamming` for PDQ) → `rank` → `engine`, which `import`, `jobs`, `eval`, `api` (HTTP)
//! and the CLI drive. `config` assembles settings for the binary. docs/ARCHITECTURE.md
//! draws it.

pub mod api;
pub mod calibrate;
pub mod catalog;
pub mod config;
pub mod decode;
pub mod embed;
pub mod embedders;
pub mod engine;
pub mod erased;
pub mod eval;
pub mod hamming;
pub mod import;
pub mod index;
pub mod jobs;
pub mod model;
pub mod pdq;
pub mod pool;
pub mod rank;
pub mod report;
pub mod store;
pub mod vector;
pub mod verify;

pub use config::Config;
pub use embed::{EmbedError, EmbedOptions, Embedder, Embedding, Input};
pub use model::ModelCard;
pub use pool::{Mask, Pooling};
