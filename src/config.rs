//! Config: one settings struct, read from a TOML file, then the environment, then flags.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::api::ServeOptions;
use crate::decode::Limits;
use crate::embed::{EmbedError, EmbedOptions, Embedder};
use crate::embedders::{self, Embed};
use crate::engine::{Engine, EngineError, EngineSettings, SearchOptions};
use crate::index::IndexOptions;
use crate::model::ModelCard;
use crate::store::StoreOptions;

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The config file is not valid.
    #[error("invalid config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    /// An environment variable has a bad value.
    #[error("environment variable {name}={value}: {message}")]
    Env { name: String, value: String, message: String },
}

/// Every setting of hotelmatch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory holding model cards (`NAME.toml`) and their ONNX files.
    pub models_dir: PathBuf,
    /// The ONNX Runtime shared library.
    pub ort_library: PathBuf,
    /// Name of the model card to use; `auto` picks the best one installed.
    pub model: String,
    /// Embedding engine settings.
    pub embed: EmbedOptions,
    /// Limits on input photos.
    pub limits: Limits,
    /// This process's own directory: index dumps, and by default the catalog and photos.
    pub data_dir: PathBuf,
    /// The catalog: `postgres://user@host:port/db`, or a SQLite file (empty: in `data_dir`).
    pub catalog: String,
    /// Where photos and case images are kept: a directory or `s3://bucket/prefix` (empty: `data_dir`).
    pub photos: String,
    /// Object store settings (`[store.s3]`: endpoint, region, credentials).
    pub store: StoreOptions,
    /// Vector index settings.
    pub index: IndexOptions,
    /// Search settings.
    pub search: SearchOptions,
    /// PDQ distance at or below which an upload of the same hotel is a duplicate (0 = off).
    pub duplicate_distance: u32,
    /// HTTP server settings.
    pub serve: ServeOptions,
}

/// Where `scripts/setup.sh` puts things, relative to the checkout.
fn checkout() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The ONNX Runtime library that `scripts/setup.sh` extracts.
pub fn default_ort_library() -> PathBuf {
    checkout().join(".cache/onnxruntime/libonnxruntime.so")
}

impl Default for Config {
    fn default() -> Self {
        Config {
            models_dir: checkout().join("models"),
            ort_library: default_ort_library(),
            model: "auto".into(),
            embed: EmbedOptions::default(),
            limits: Limits::default(),
            data_dir: PathBuf::from("data"),
            catalog: String::new(),
            photos: String::new(),
            store: StoreOptions::default(),
            index: IndexOptions::default(),
            search: SearchOptions::default(),
            duplicate_distance: 16,
            serve: ServeOptions::default(),
        }
    }
}

impl Config {
    /// Defaults, overridden by `file` (if given), then by `HOTELMATCH_*` / `ORT_DYLIB_PATH` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut cfg = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.into(), source })?;
                toml::from_str(&text).map_err(|e| ConfigError::Invalid { path: path.into(), message: e.to_string() })?
            }
            None => Config::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        Ok(cfg)
    }

    /// Applies environment overrides read through `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let bad = |name: &str, value: &str, message: String| ConfigError::Env { name: name.into(), value: value.into(), message };
        if let Some(v) = get("ORT_DYLIB_PATH") {
            self.ort_library = v.into();
        }
        if let Some(v) = get("HOTELMATCH_MODELS_DIR") {
            self.models_dir = v.into();
        }
        if let Some(v) = get("HOTELMATCH_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = get("HOTELMATCH_CATALOG") {
            self.catalog = v;
        }
        if let Some(v) = get("HOTELMATCH_PHOTOS") {
            self.photos = v;
        }
        if let Some(v) = get("HOTELMATCH_MODEL") {
            self.model = v;
        }
        if let Some(v) = get("HOTELMATCH_POOLING") {
            self.embed.pooling = v.parse().map_err(|e: crate::pool::PoolError| bad("HOTELMATCH_POOLING", &v, e.to_string()))?;
        }
        if let Some(v) = get("HOTELMATCH_THREADS") {
            self.embed.threads = v.parse().map_err(|e: std::num::ParseIntError| bad("HOTELMATCH_THREADS", &v, e.to_string()))?;
        }
        Ok(())
    }
}

impl Config {
    /// What the engine needs of these settings.
    pub fn engine_settings(&self) -> EngineSettings {
        EngineSettings {
            data_dir: self.data_dir.clone(),
            catalog: self.catalog.clone(),
            photos: self.photos.clone(),
            store: self.store.clone(),
            limits: self.limits,
            index: self.index.clone(),
            search: self.search.clone(),
            duplicate_distance: self.duplicate_distance,
        }
    }

    /// The embedder these settings name (a model card, or a built-in descriptor).
    pub fn embedder(&self) -> Result<Box<dyn Embed>, EmbedError> {
        embedders::open(&self.model, &self.models_dir, &self.ort_library, self.embed.clone(), self.limits)
    }

    /// The ONNX embedder of the configured model card (embedding, classifying, evaluating).
    pub fn onnx_embedder(&self) -> Result<Embedder, EmbedError> {
        let card = ModelCard::find(&self.models_dir, &self.model)?;
        Embedder::new(card, &self.ort_library, self.embed.clone(), self.limits)
    }

    /// The engine these settings describe.
    pub fn open_engine(&self) -> Result<Engine, EngineError> {
        Engine::open(self.engine_settings(), self.embedder()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::Pooling;

    #[test]
    fn file_then_env_override_defaults() {
        let dir = std::env::temp_dir().join(format!("hm-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.toml");
        std::fs::write(&p, "model = 'efficientnet-lite2'\n[embed]\npooling = 'gap'\nbatch = 4\n").unwrap();
        let mut c = Config::load(Some(&p)).unwrap();
        assert_eq!((c.model.as_str(), c.embed.pooling, c.embed.batch), ("efficientnet-lite2", Pooling::Gap, 4));
        c.apply_env(|k| (k == "HOTELMATCH_POOLING").then(|| "multiscale".to_string())).unwrap();
        assert_eq!(c.embed.pooling, Pooling::Multiscale);
        let err = c.apply_env(|k| (k == "HOTELMATCH_THREADS").then(|| "lots".to_string())).unwrap_err();
        assert!(err.to_string().contains("HOTELMATCH_THREADS=lots"));
        std::fs::write(&p, "[index]\nkind = 'hnsw_rs'\nformat = 'f16'\nef_search = 200\n").unwrap();
        let c = Config::load(Some(&p)).unwrap();
        assert_eq!(
            (c.index.kind, c.index.format, c.index.ef_search, c.index.m),
            (crate::index::Kind::HnswRs, crate::index::Format::F16, 200, 16)
        );
        std::fs::write(&p, "[index]\nformat = 'int4'\n").unwrap();
        assert!(Config::load(Some(&p)).unwrap_err().to_string().contains("int4"));
        std::fs::write(&p, "modle = 'x'\n").unwrap();
        assert!(Config::load(Some(&p)).unwrap_err().to_string().contains("unknown field"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
