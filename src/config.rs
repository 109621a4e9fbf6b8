//! Config: one settings struct, read from a TOML file, then the environment, then flags.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::api::ServeOptions;
use crate::embed::card::ModelCard;
use crate::embed::{self, Embed};
use crate::embed::{EmbedError, EmbedOptions, Embedder};
use crate::engine::{Engine, EngineError, EngineSettings, SearchOptions};
use crate::index::IndexOptions;
use crate::media::decode::Limits;
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
    /// Connections to a PostgreSQL catalog kept by this process, at most (SQLite uses one):
    /// searches, uploads and the feed follower run side by side up to this many.
    pub catalog_pool: u32,
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
    /// The whitening learned from the catalog's labels (`[whiten]`).
    pub whiten: crate::whiten::WhitenOptions,
    /// The shared marks learned from the catalog's photos (`[marks]`).
    pub marks: crate::marks::MarkOptions,
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
            catalog_pool: crate::catalog::DEFAULT_POOL,
            photos: String::new(),
            store: StoreOptions::default(),
            index: IndexOptions::default(),
            search: SearchOptions::default(),
            duplicate_distance: 16,
            serve: ServeOptions::default(),
            whiten: Default::default(),
            marks: Default::default(),
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
            self.embed.pooling = v.parse().map_err(|e: crate::embed::pool::PoolError| bad("HOTELMATCH_POOLING", &v, e.to_string()))?;
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
            catalog_pool: self.catalog_pool,
            photos: self.photos.clone(),
            store: self.store.clone(),
            limits: self.limits,
            index: self.index.clone(),
            search: self.search.clone(),
            duplicate_distance: self.duplicate_distance,
            whiten: self.whiten.clone(),
            marks: self.marks.clone(),
        }
    }

    /// The embedder these settings name (a model card, or a built-in descriptor).
    pub fn embedder(&self) -> Result<Box<dyn Embed>, EmbedError> {
        embed::open(&self.model, &self.models_dir, &self.ort_library, self.embed.clone(), self.limits)
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

/// Settings the command line may override, each kept as configured when absent: the CLI's
/// global flags (flattened into them), merged by [`Config::apply_overrides`].
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// Model card name in the models directory.
    #[arg(long, global = true)]
    pub model: Option<String>,
    /// Pooling of the feature map: gem, gap or multiscale.
    #[arg(long = "pool", global = true)]
    pub pooling: Option<crate::embed::pool::Pooling>,
    /// How photos are fitted to the network: aspect or stretch.
    #[arg(long, global = true, value_parser = parse_resize)]
    pub resize: Option<crate::embed::Resize>,
    /// Square input side overriding the model card's (multiple of the model stride).
    #[arg(long, global = true)]
    pub input_size: Option<u32>,
    /// Short sides photos are scaled to, comma-separated (several: multi-scale), overriding the card's.
    #[arg(long, global = true, value_delimiter = ',')]
    pub short_side: Option<Vec<u32>>,
    /// How masked pixels are filled before the network: mean, diffuse or none.
    #[arg(long, global = true)]
    pub fill: Option<crate::embed::fill::Fill>,
    /// ONNX Runtime threads (0 = all cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Directory of model cards.
    #[arg(long, global = true)]
    pub models_dir: Option<PathBuf>,
    /// Path of libonnxruntime.so.
    #[arg(long, global = true)]
    pub ort_library: Option<PathBuf>,
    /// How image hits become hotel scores: best, vote, sum2, sum3, ...
    #[arg(long, global = true)]
    pub aggregation: Option<crate::rank::Aggregation>,
    /// α-query expansion with the top N images (0 = off).
    #[arg(long, global = true)]
    pub expansion: Option<usize>,
    /// Geometric verification of the top N photos of a search (0 = off; default 30).
    #[arg(long, global = true)]
    pub verify: Option<usize>,
    /// The learned whitening: its shrinkage (0 to 1; default 0.5), or `off`.
    #[arg(long, global = true, value_parser = parse_whiten)]
    pub whiten: Option<WhitenFlag>,
    /// Data directory (this process's index dumps; the catalog and photos too unless
    /// --catalog / --photos say otherwise).
    #[arg(long, global = true, env = "HOTELMATCH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The catalog: postgres://user@host:port/db, or a SQLite file (default: in the data directory).
    #[arg(long, global = true)]
    pub catalog: Option<String>,
    /// Where photos are kept: a directory or s3://bucket/prefix (default: the data directory).
    #[arg(long, global = true)]
    pub photos: Option<String>,
}

impl Config {
    /// Applies the command line's overrides (after the file and the environment).
    pub fn apply_overrides(&mut self, o: &Overrides) {
        if let Some(m) = &o.model {
            self.model = m.clone();
        }
        if let Some(p) = o.pooling {
            self.embed.pooling = p;
        }
        if let Some(r) = o.resize {
            self.embed.resize = r;
        }
        if let Some(s) = o.input_size {
            self.embed.input_size = s;
        }
        if let Some(s) = &o.short_side {
            self.embed.short_side = s.clone();
        }
        if let Some(f) = o.fill {
            self.embed.fill = f;
        }
        if let Some(t) = o.threads {
            self.embed.threads = t;
        }
        if let Some(d) = &o.models_dir {
            self.models_dir = d.clone();
        }
        if let Some(l) = &o.ort_library {
            self.ort_library = l.clone();
        }
        if let Some(d) = &o.data_dir {
            self.data_dir = d.clone();
        }
        if let Some(v) = &o.catalog {
            self.catalog = v.clone();
        }
        if let Some(v) = &o.photos {
            self.photos = v.clone();
        }
        if let Some(a) = o.aggregation {
            self.search.aggregation = a;
        }
        if let Some(e) = o.expansion {
            self.search.expansion = e;
        }
        if let Some(v) = o.verify {
            self.search.verify = v;
        }
        match o.whiten {
            Some(WhitenFlag(Some(s))) => (self.whiten.enabled, self.whiten.shrinkage) = (true, s),
            Some(WhitenFlag(None)) => self.whiten.enabled = false,
            None => {}
        }
    }
}

/// `--whiten`: a shrinkage, or `off` (`None`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WhitenFlag(pub Option<f32>);

fn parse_whiten(s: &str) -> Result<WhitenFlag, String> {
    if s == "off" {
        return Ok(WhitenFlag(None));
    }
    let shrinkage = s.parse::<f32>().ok().filter(|x| (0.0..=1.0).contains(x));
    shrinkage.map(|x| WhitenFlag(Some(x))).ok_or_else(|| format!("{s}: off, or a shrinkage from 0 to 1"))
}

fn parse_resize(s: &str) -> Result<crate::embed::Resize, String> {
    match s {
        "aspect" => Ok(crate::embed::Resize::Aspect),
        "stretch" => Ok(crate::embed::Resize::Stretch),
        _ => Err(format!("{s}: use aspect or stretch")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::pool::Pooling;

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
