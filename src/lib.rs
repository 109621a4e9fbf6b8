//! hotelmatch: tells an investigator which hotel a room photo was taken in.
//!
//! The modules follow the pipeline, each using only the ones before it:
//! `decode` → `pdq` / `embed` (with `model` cards, `pool`ing and `erased` regions) → `store` and `catalog` →
//! `index` (and `hamming` for PDQ) → `rank` → `engine`, which `import`, `jobs`, `eval`,
//! `api` (HTTP) and the CLI drive.

pub mod api;
pub mod catalog;
pub mod config;
pub mod decode;
pub mod embed;
pub mod erased;
pub mod engine;
pub mod eval;
pub mod hamming;
pub mod import;
pub mod index;
pub mod jobs;
pub mod model;
pub mod pdq;
pub mod pool;
pub mod rank;
pub mod store;
pub mod vector;
pub mod verify;

pub use config::Config;
pub use embed::{EmbedError, EmbedOptions, Embedder, Embedding, Input};
pub use model::ModelCard;
pub use pool::{Mask, Pooling};

/// Opens the embedder that `config` describes.
pub fn open_embedder(config: &Config) -> Result<Embedder, EmbedError> {
    let card = ModelCard::find(&config.models_dir, &config.model)?;
    Embedder::new(card, &config.ort_library, config.embed.clone(), config.limits)
}
