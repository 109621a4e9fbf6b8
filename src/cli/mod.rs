//! The `hotelmatch` command line: the flags, parsed in one place (global flags are
//! `config::Overrides`), and one file per subcommand, each a `run` over the library.

mod banks;
mod calibrate;
mod classify;
mod embed;
mod eval;
mod hash;
mod import;
mod keys;
mod learn;
mod models;
mod reindex;
mod search;
mod serve;
mod status;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use hotelmatch::catalog::{HotelFilter, Status};
use hotelmatch::config::Overrides;
use hotelmatch::engine::{Engine, Query, QueryImage};
use hotelmatch::import::ImportReport;
use hotelmatch::media::decode;
use hotelmatch::{pdq, Config, Input, Mask, ModelCard};
use sha2::{Digest, Sha256};

#[derive(Parser)]
#[command(name = "hotelmatch", version, about = "Which hotel was this room photo taken in?")]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args)]
struct Global {
    /// TOML config file (every setting of src/config.rs: model, data_dir, catalog, photos, [store.s3], [search], [serve], ...).
    #[arg(long, global = true, env = "HOTELMATCH_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: Overrides,
    /// Start an empty catalog when the data directory has none (import and serve always may).
    #[arg(long, global = true)]
    init: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Embed photos and print one JSON line per photo.
    Embed(embed::EmbedArgs),
    /// Measure retrieval quality: imports the gallery into a fresh data directory once and
    /// sends every query through the search path; one row per query file with hotel@1/5/10
    /// (and a 95 % interval of hotel@1), MRR, room@1/5 and latency.
    Eval(self::eval::EvalArgs),
    /// Fit the probabilities of search results: runs a labelled evaluation through the
    /// engine (as `eval` does) or reads the confirmed searches of cases (`--from-cases`),
    /// fits, prints reliability tables and stores the fit in the catalog (every replica takes
    /// it up), or in `calibration.json` in the data directory when there is no catalog yet.
    Calibrate(self::calibrate::CalibrateArgs),
    /// Hash banks: lists of PDQ hashes (ThreatExchange formats) matched against uploads and searches.
    Banks {
        #[command(subcommand)]
        cmd: banks::BanksCmd,
    },
    /// Import hotels and photos from CSV files (resumable; reports duplicates and rejects).
    Import(self::import::ImportArgs),
    /// Which hotel was this photo taken in? Ranked hotels with the matching photos.
    Search(search::SearchArgs),
    /// Set a photo's status: active, quarantined or deleted (leaves search at once).
    Status(status::StatusArgs),
    /// Re-embed photos the current model has not seen (after a model change), rebuild the
    /// vector index from the catalog (purging deleted photos) and save it.
    Reindex,
    /// Learn from the catalog: the marks shared by many hotels (left out of matched points)
    /// and a whitening of the embeddings from the hotel labels (photos of one hotel are
    /// pairs); both go in force on every replica. `reindex` learns them too.
    Learn,
    /// ImageNet top-5 of a photo, for models with a classifier (a conversion check).
    Classify(classify::ClassifyArgs),
    /// PDQ hashes (ThreatExchange hex) and quality of photos, one JSON line each.
    Hash(hash::HashArgs),
    /// List model cards and whether their weights are present.
    Models,
    /// Serve the HTTP API on --bind (default 127.0.0.1:8080) until Ctrl-C.
    Serve(serve::ServeArgs),
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        cmd: keys::KeysCmd,
    },
}

pub(super) fn parse_rect(s: &str) -> Result<[u32; 4], String> {
    let v: Vec<u32> = s.split(',').map(|p| p.trim().parse::<u32>()).collect::<Result<_, _>>().map_err(|e| format!("{s}: {e}"))?;
    <[u32; 4]>::try_from(v).map_err(|_| format!("{s}: expected x,y,width,height"))
}

pub(super) fn parse_point(s: &str) -> Result<(f64, f64), String> {
    hotelmatch::catalog::parse_lat_lon(s).ok_or_else(|| format!("{s}: expected LAT,LON with -90 ≤ LAT ≤ 90 and -180 ≤ LON ≤ 180"))
}

pub(super) fn parse_radius(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .and_then(hotelmatch::catalog::valid_radius_km)
        .ok_or_else(|| format!("{s}: a number of km above 0, at most 20038"))
}

pub(super) fn parse_top(s: &str) -> Result<usize, String> {
    s.parse::<usize>().ok().filter(|n| (1..=100).contains(n)).ok_or_else(|| format!("{s}: 1 to 100"))
}

/// Opens the engine on the configured data directory. Without a catalog there (the embedded
/// default), only commands that fill one (`create`) start it, and say so: a mistyped
/// `--data-dir` must not answer "0 hotels" as if the catalog were empty.
pub(super) fn open_engine(cfg: &Config, create: bool) -> Result<Engine> {
    let settings = cfg.engine_settings();
    let catalog = settings.catalog_location();
    if !catalog_exists(&catalog) {
        if !create {
            bail!("no catalog at {catalog}: check --data-dir (or HOTELMATCH_DATA_DIR), run `hotelmatch import` first, or pass --init to start an empty one");
        }
        eprintln!("hotelmatch: starting a new catalog in {}", cfg.data_dir.display());
    }
    Ok(Engine::open(settings, cfg.embedder()?)?)
}

/// Whether the catalog at `location` is there (a PostgreSQL one is taken to be).
pub(super) fn catalog_exists(location: &str) -> bool {
    hotelmatch::catalog::is_postgres(location) || Path::new(location).exists()
}

pub(super) fn read(path: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Evaluates through the engine in a fresh data directory, removed afterwards: evaluation
/// never touches real data.
pub(super) fn evaluate_in_scratch(
    cfg: &Config,
    gallery: &Path,
    sets: &[hotelmatch::eval::QuerySet],
) -> Result<Vec<hotelmatch::eval::Report>> {
    let dir = std::env::temp_dir().join(format!("hotelmatch-eval-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let scratch = Config { data_dir: dir.clone(), catalog: String::new(), photos: String::new(), ..cfg.clone() };
    let r = hotelmatch::eval::evaluate_engine(&scratch, gallery, sets);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(r?)
}

pub(super) fn load_mask(path: &PathBuf, cfg: &Config) -> Result<Mask> {
    Mask::from_picture(&read(path)?, &cfg.limits).with_context(|| format!("mask {}", path.display()))
}

/// The configuration: the file, the environment, then the flags.
fn config(g: &Global) -> Result<Config> {
    let mut c = Config::load(g.config.as_deref())?;
    c.apply_overrides(&g.overrides);
    Ok(c)
}

/// Runs the command the flags name.
pub fn run(cli: Cli) -> Result<()> {
    let cfg = config(&cli.global)?;
    let mut out = std::io::stdout().lock();
    match cli.cmd {
        Cmd::Serve(a) => serve::run(&cfg, a),
        Cmd::Keys { cmd } => keys::run(&cfg, cli.global.init, cmd, &mut out),
        Cmd::Models => models::run(&cfg, &mut out),
        Cmd::Embed(a) => embed::run(&cfg, a, &mut out),
        Cmd::Eval(a) => self::eval::run(&cfg, a, &mut out),
        Cmd::Calibrate(a) => self::calibrate::run(&cfg, cli.global.init, a, &mut out),
        Cmd::Banks { cmd } => banks::run(&cfg, cli.global.init, cmd, &mut out),
        Cmd::Import(a) => self::import::run(&cfg, a, &mut out),
        Cmd::Search(a) => search::run(&cfg, cli.global.init, a, &mut out),
        Cmd::Status(a) => status::run(&cfg, cli.global.init, a, &mut out),
        Cmd::Reindex => reindex::run(&cfg, cli.global.init, &mut out),
        Cmd::Learn => learn::run(&cfg, cli.global.init, &mut out),
        Cmd::Hash(a) => hash::run(&cfg, a, &mut out),
        Cmd::Classify(a) => classify::run(&cfg, a, &mut out),
    }
}
