//! hotelmatch: tells an investigator which hotel a room photo was taken in.
//!
//! The modules follow the pipeline, each using only the ones before it:
//! `media` (decode, clean copies) and `digest` → `pdq` / `embed` (the port, its ONNX and
//! built-in adapters, model cards, pooling, fills) → `store` (blobs) and `catalog` (each a
//! port with its adapters) → `index` (and `hamming` for PDQ) → `verify`, `rank`,
//! `calibrate` → `engine`, which `import`, `jobs`, `eval`, `report`, `api` (HTTP) and the
//! CLI drive. `config` assembles settings for the binary. docs/ARCHITECTURE.md draws it.

pub mod api;
pub mod calibrate;
pub mod catalog;
pub mod config;
pub mod digest;
pub mod embed;
pub mod engine;
pub mod eval;
pub mod hamming;
pub mod import;
pub mod index;
pub mod jobs;
pub mod marks;
pub mod media;
pub mod pdq;
pub mod places;
pub mod rank;
pub mod report;
pub mod store;
pub mod vector;
pub mod verify;
pub mod whiten;

pub use config::Config;
pub use embed::card::ModelCard;
pub use embed::pool::{Mask, Pooling};
pub use embed::{EmbedError, EmbedOptions, Embedder, Embedding, Input};
