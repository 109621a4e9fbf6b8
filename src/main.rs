//! The `hotelmatch` command: a thin shell over the library.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use hotelmatch::catalog::{HotelFilter, Status};
use hotelmatch::embed::Resize;
use hotelmatch::engine::{Engine, Query};
use hotelmatch::import::{self, ImportReport};
use hotelmatch::{calibrate, decode, eval, pdq, Config, Input, Mask, ModelCard, Pooling};
use sha2::{Digest, Sha256};

#[derive(Parser)]
#[command(name = "hotelmatch", version, about = "Which hotel was this room photo taken in?")]
struct Cli {
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
    /// Model card name in the models directory.
    #[arg(long, global = true)]
    model: Option<String>,
    /// Pooling of the feature map: gem, gap or multiscale.
    #[arg(long = "pool", global = true)]
    pooling: Option<Pooling>,
    /// How photos are fitted to the network: aspect or stretch.
    #[arg(long, global = true, value_parser = parse_resize)]
    resize: Option<Resize>,
    /// Square input side overriding the model card's (multiple of the model stride).
    #[arg(long, global = true)]
    input_size: Option<u32>,
    /// Short sides photos are scaled to, comma-separated (several: multi-scale), overriding the card's.
    #[arg(long, global = true, value_delimiter = ',')]
    short_side: Option<Vec<u32>>,
    /// How masked pixels are filled before the network: mean, diffuse or none.
    #[arg(long, global = true)]
    fill: Option<hotelmatch::erased::Fill>,
    /// ONNX Runtime threads (0 = all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Directory of model cards.
    #[arg(long, global = true)]
    models_dir: Option<PathBuf>,
    /// Path of libonnxruntime.so.
    #[arg(long, global = true)]
    ort_library: Option<PathBuf>,
    /// How image hits become hotel scores: best, vote, sum2, sum3, ...
    #[arg(long, global = true)]
    aggregation: Option<hotelmatch::rank::Aggregation>,
    /// α-query expansion with the top N images (0 = off).
    #[arg(long, global = true)]
    expansion: Option<usize>,
    /// Geometric verification of the top N photos of a search (0 = off; default 30).
    #[arg(long, global = true)]
    verify: Option<usize>,
    /// Data directory (this process's index dumps; the catalog and photos too unless
    /// --catalog / --photos say otherwise).
    #[arg(long, global = true, env = "HOTELMATCH_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The catalog: postgres://user@host:port/db, or a SQLite file (default: in the data directory).
    #[arg(long, global = true)]
    catalog: Option<String>,
    /// Where photos are kept: a directory or s3://bucket/prefix (default: the data directory).
    #[arg(long, global = true)]
    photos: Option<String>,
    /// Start an empty catalog when the data directory has none (import and serve always may).
    #[arg(long, global = true)]
    init: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Embed photos and print one JSON line per photo.
    Embed(EmbedArgs),
    /// Measure retrieval quality: imports the gallery into a fresh data directory once and
    /// sends every query through the search path; one row per query file with hotel@1/5/10
    /// (and a 95 % interval of hotel@1), MRR, room@1/5 and latency.
    Eval(EvalArgs),
    /// Fit the probabilities of search results: runs a labelled evaluation through the
    /// engine (as `eval` does) or reads the confirmed searches of cases (`--from-cases`),
    /// fits, prints reliability tables and writes `calibration.json` into the data directory.
    Calibrate(CalibrateArgs),
    /// Hash banks: lists of PDQ hashes (ThreatExchange formats) matched against uploads and searches.
    Banks {
        #[command(subcommand)]
        cmd: BanksCmd,
    },
    /// Import hotels and photos from CSV files (resumable; reports duplicates and rejects).
    Import(ImportArgs),
    /// Which hotel was this photo taken in? Ranked hotels with the matching photos.
    Search(SearchArgs),
    /// Set a photo's status: active, quarantined or deleted (leaves search at once).
    Status(StatusArgs),
    /// Re-embed photos the current model has not seen (after a model change), rebuild the
    /// vector index from the catalog (purging deleted photos) and save it.
    Reindex,
    /// ImageNet top-5 of a photo, for models with a classifier (a conversion check).
    Classify(ClassifyArgs),
    /// PDQ hashes (ThreatExchange hex) and quality of photos, one JSON line each.
    Hash(HashArgs),
    /// List model cards and whether their weights are present.
    Models,
    /// Serve the HTTP API on --bind (default 127.0.0.1:8080) until Ctrl-C.
    Serve(ServeArgs),
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
    },
}

#[derive(Args)]
struct EmbedArgs {
    /// Photos (JPEG, PNG, WebP, ...).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Mask image (same aspect ratio as the photo; light pixels are left out of matching).
    #[arg(long, conflicts_with = "rect")]
    mask: Option<PathBuf>,
    /// Rectangle to leave out, x,y,width,height in photo pixels (repeatable).
    #[arg(long, value_parser = parse_rect)]
    rect: Vec<[u32; 4]>,
    /// Print the whole vector, not only its hash.
    #[arg(long)]
    vector: bool,
    /// With no mask, look for a region already painted out and mask it (as searches do).
    #[arg(long)]
    auto_mask: bool,
}

#[derive(Args)]
struct EvalArgs {
    /// CSV of gallery photos: path,hotel,room (paths relative to the CSV).
    #[arg(long)]
    gallery: PathBuf,
    /// CSV of query photos: path,hotel,room[,mask] (repeatable: one row each).
    #[arg(long, required = true)]
    queries: Vec<PathBuf>,
    /// Print one JSON object per query file instead of a table.
    #[arg(long)]
    json: bool,
    /// Skip the engine: embeddings and exact cosine search only (quick model comparison).
    #[arg(long)]
    exact: bool,
}

#[derive(Args)]
struct CalibrateArgs {
    /// CSV of gallery photos: path,hotel,room.
    #[arg(long, required_unless_present_any = ["from_cases", "samples"], conflicts_with = "from_cases")]
    gallery: Option<PathBuf>,
    /// CSV of labelled queries: path,hotel,room[,mask] (repeatable).
    #[arg(long, requires = "gallery")]
    queries: Vec<PathBuf>,
    /// Fit on the saved searches of cases that confirmed a hotel instead.
    #[arg(long)]
    from_cases: bool,
    /// Folds of the cross-validated reliability table.
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Print the tables but write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also write the labelled searches (scores and which was right) to this JSON file.
    #[arg(long)]
    samples_out: Option<PathBuf>,
    /// Fit on labelled searches saved by `--samples-out` instead of running them again.
    #[arg(long, conflicts_with_all = ["gallery", "from_cases"])]
    samples: Option<PathBuf>,
}

#[derive(Subcommand)]
enum BanksCmd {
    /// Import a hash list file into the bank NAME (created when new).
    Import { name: String, file: PathBuf },
    /// List the banks.
    List,
    /// Print the gallery's hashes for sharing: `tx` (python-threatexchange) or `csv`.
    Export {
        #[arg(long, default_value = "tx")]
        format: String,
    },
}

#[derive(Args)]
struct ImportArgs {
    /// CSV: id,name,chain,address,city,country,latitude,longitude.
    #[arg(long)]
    hotels: Option<PathBuf>,
    /// CSV: path,hotel,room (paths relative to the CSV; hotel = the id in hotels.csv).
    #[arg(long)]
    images: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct SearchArgs {
    /// The query photo (JPEG, PNG, WebP, ...).
    image: PathBuf,
    /// Mask image: light pixels are left out (paint over the victim).
    #[arg(long, conflicts_with = "rect")]
    mask: Option<PathBuf>,
    /// Rectangle to leave out, x,y,width,height (repeatable).
    #[arg(long, value_parser = parse_rect)]
    rect: Vec<[u32; 4]>,
    /// Only hotels within --radius-km of LAT,LON.
    #[arg(long, value_parser = parse_point, requires = "radius_km")]
    near: Option<(f64, f64)>,
    /// Radius around --near, in km.
    #[arg(long, value_parser = parse_radius, requires = "near")]
    radius_km: Option<f64>,
    /// Only hotels in this country (as the catalog writes it, e.g. US; any case).
    #[arg(long)]
    country: Option<String>,
    /// Only hotels in this city (any case).
    #[arg(long)]
    city: Option<String>,
    /// Only hotels of this chain (any case).
    #[arg(long)]
    chain: Option<String>,
    /// Only these hotels (catalog ids; repeatable).
    #[arg(long = "hotel")]
    hotels: Vec<i64>,
    /// Hotels to return, 1 to 100.
    #[arg(long, default_value_t = 10, value_parser = parse_top)]
    top: usize,
    /// Keep the query photo in the data directory as a case image (by default it is
    /// written nowhere); the audit records its sha256.
    #[arg(long)]
    save_case: bool,
    /// Don't mask a region that looks already painted out (done by default without a mask).
    #[arg(long)]
    no_auto_mask: bool,
    /// The graph search's candidate list (default: the config's `index.ef_search`): larger
    /// finds more of the nearest photos, slower.
    #[arg(long, value_parser = clap::value_parser!(u64).range(10..=1000))]
    ef: Option<u64>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct StatusArgs {
    /// The image id (as in search results and `GET /api/v1/hotels/{id}/photos`).
    image_id: i64,
    /// active, quarantined or deleted.
    status: Status,
}

#[derive(Args)]
struct ClassifyArgs {
    /// The photo to classify.
    image: PathBuf,
}

#[derive(Args)]
struct HashArgs {
    /// Photos to hash.
    #[arg(required_unless_present = "compare")]
    images: Vec<PathBuf>,
    /// Also print the 8 rotation/flip variants.
    #[arg(long)]
    variants: bool,
    /// Print the Hamming distance between two photos (or 64-hex-digit hashes).
    #[arg(long, num_args = 2, value_names = ["A", "B"], conflicts_with = "images")]
    compare: Option<Vec<String>>,
}

#[derive(Args)]
struct ServeArgs {
    /// Address and port to listen on (default from the config: 127.0.0.1:8080).
    #[arg(long)]
    bind: Option<String>,
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Create a key; the token is printed once and stored only as a hash.
    Create {
        /// uploader, investigator or admin.
        #[arg(long)]
        role: hotelmatch::catalog::Role,
        /// A note on whose key it is (shown in listings, never secret).
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Revoke a key by its id (fails when no active key has that id).
    Revoke {
        /// The key id (the part of the token after `hm_`, before the next `_`).
        id: String,
    },
}

fn parse_rect(s: &str) -> Result<[u32; 4], String> {
    let v: Vec<u32> = s.split(',').map(|p| p.trim().parse::<u32>()).collect::<Result<_, _>>().map_err(|e| format!("{s}: {e}"))?;
    <[u32; 4]>::try_from(v).map_err(|_| format!("{s}: expected x,y,width,height"))
}

fn parse_point(s: &str) -> Result<(f64, f64), String> {
    hotelmatch::catalog::parse_lat_lon(s).ok_or_else(|| format!("{s}: expected LAT,LON with -90 ≤ LAT ≤ 90 and -180 ≤ LON ≤ 180"))
}

fn parse_radius(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .and_then(hotelmatch::catalog::valid_radius_km)
        .ok_or_else(|| format!("{s}: a number of km above 0, at most 20038"))
}

fn parse_top(s: &str) -> Result<usize, String> {
    s.parse::<usize>().ok().filter(|n| (1..=100).contains(n)).ok_or_else(|| format!("{s}: 1 to 100"))
}

fn parse_resize(s: &str) -> Result<Resize, String> {
    match s {
        "aspect" => Ok(Resize::Aspect),
        "stretch" => Ok(Resize::Stretch),
        _ => Err(format!("{s}: use aspect or stretch")),
    }
}

fn config(g: &Global) -> Result<Config> {
    let mut c = Config::load(g.config.as_deref())?;
    if let Some(m) = &g.model {
        c.model = m.clone();
    }
    if let Some(p) = g.pooling {
        c.embed.pooling = p;
    }
    if let Some(r) = g.resize {
        c.embed.resize = r;
    }
    if let Some(s) = g.input_size {
        c.embed.input_size = s;
    }
    if let Some(s) = &g.short_side {
        c.embed.short_side = s.clone();
    }
    if let Some(f) = g.fill {
        c.embed.fill = f;
    }
    if let Some(t) = g.threads {
        c.embed.threads = t;
    }
    if let Some(d) = &g.models_dir {
        c.models_dir = d.clone();
    }
    if let Some(l) = &g.ort_library {
        c.ort_library = l.clone();
    }
    if let Some(d) = &g.data_dir {
        c.data_dir = d.clone();
    }
    if let Some(v) = &g.catalog {
        c.catalog = v.clone();
    }
    if let Some(v) = &g.photos {
        c.photos = v.clone();
    }
    if let Some(a) = g.aggregation {
        c.search.aggregation = a;
    }
    if let Some(e) = g.expansion {
        c.search.expansion = e;
    }
    if let Some(v) = g.verify {
        c.search.verify = v;
    }
    Ok(c)
}

/// Opens the engine on the configured data directory. Without a catalog there (the embedded
/// default), only commands that fill one (`create`) start it, and say so: a mistyped
/// `--data-dir` must not answer "0 hotels" as if the catalog were empty.
fn open_engine(cfg: &Config, create: bool) -> Result<Engine> {
    let settings = cfg.engine_settings();
    let catalog = settings.catalog_location();
    if !hotelmatch::catalog::is_postgres(&catalog) && !std::path::Path::new(&catalog).exists() {
        if !create {
            bail!("no catalog at {catalog}: check --data-dir (or HOTELMATCH_DATA_DIR), run `hotelmatch import` first, or pass --init to start an empty one");
        }
        eprintln!("hotelmatch: starting a new catalog in {}", cfg.data_dir.display());
    }
    Ok(Engine::open(settings, cfg.embedder()?)?)
}

fn read(path: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn run(cli: Cli) -> Result<()> {
    let cfg = config(&cli.global)?;
    let mut out = std::io::stdout().lock();
    match cli.cmd {
        Cmd::Serve(a) => cmd_serve(&cfg, a),
        Cmd::Keys { cmd } => cmd_keys(&cfg, cli.global.init, cmd, &mut out),
        Cmd::Models => cmd_models(&cfg, &mut out),
        Cmd::Embed(a) => cmd_embed(&cfg, a, &mut out),
        Cmd::Eval(a) => cmd_eval(&cfg, a, &mut out),
        Cmd::Calibrate(a) => cmd_calibrate(&cfg, cli.global.init, a, &mut out),
        Cmd::Banks { cmd } => cmd_banks(&cfg, cli.global.init, cmd, &mut out),
        Cmd::Import(a) => cmd_import(&cfg, a, &mut out),
        Cmd::Search(a) => cmd_search(&cfg, cli.global.init, a, &mut out),
        Cmd::Status(a) => cmd_status(&cfg, cli.global.init, a, &mut out),
        Cmd::Reindex => cmd_reindex(&cfg, cli.global.init, &mut out),
        Cmd::Hash(a) => cmd_hash(&cfg, a, &mut out),
        Cmd::Classify(a) => cmd_classify(&cfg, a, &mut out),
    }
}

fn cmd_serve(cfg: &Config, args: ServeArgs) -> Result<()> {
    let mut opts = cfg.serve.clone();
    if let Some(b) = args.bind {
        opts.bind = b;
    }
    // Opened before the async runtime starts: the catalog and store adapters block.
    let engine = std::sync::Arc::new(open_engine(cfg, true)?);
    // Uploads and status changes made through other replicas reach this one's indexes.
    let follower = hotelmatch::jobs::follow(engine.clone(), std::time::Duration::from_millis(opts.follow_ms.max(10)));
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&opts.bind).await.with_context(|| format!("cannot listen on {}", opts.bind))?;
        eprintln!(
            "hotelmatch: serving on http://{} ({} photos indexed, catalog {})",
            listener.local_addr()?,
            engine.indexed(),
            engine.catalog_backend()
        );
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        hotelmatch::api::serve(engine.clone(), &opts, listener, shutdown).await?;
        anyhow::Ok(())
    })?;
    drop(follower);
    engine.save_index()?;
    Ok(())
}

fn cmd_keys(cfg: &Config, init: bool, cmd: KeysCmd, out: &mut impl Write) -> Result<()> {
    let engine = open_engine(cfg, init)?;
    match cmd {
        KeysCmd::Create { role, label } => {
            let (info, token) = engine.create_key(role, &label, "cli")?;
            writeln!(out, "{}", serde_json::json!({"id": info.id, "role": info.role, "token": token}))?;
        }
        KeysCmd::Revoke { id } => {
            if !engine.revoke_key(&id, "cli")? {
                bail!("no active key with id {id}");
            }
            writeln!(out, "revoked")?;
        }
    }
    Ok(())
}

fn cmd_models(cfg: &Config, out: &mut impl Write) -> Result<()> {
    let in_use = ModelCard::find(&cfg.models_dir, &cfg.model).map(|c| c.name).unwrap_or_default();
    for card in ModelCard::list(&cfg.models_dir) {
        let state = if card.onnx_path().is_ok() { "ready" } else { "missing weights (scripts/setup.sh)" };
        let input = match card.short_side.as_slice() {
            [] => format!("{}x{}", card.size[0], card.size[1]),
            sides => format!("short side {}", sides.iter().map(u32::to_string).collect::<Vec<_>>().join("+")),
        };
        let default = if card.name == in_use { " (in use)" } else { "" };
        writeln!(out, "{:16} {:18} dim {:5} {}{default}\n  licence: {}", card.name, input, card.dim, state, card.licence)?;
    }
    Ok(())
}

fn cmd_embed(cfg: &Config, args: EmbedArgs, out: &mut impl Write) -> Result<()> {
    let EmbedArgs { images, mask, rect, vector, auto_mask } = args;
    let embedder = cfg.onnx_embedder()?;
    let mask = match (mask, rect.is_empty()) {
        (Some(path), _) => Some(load_mask(&path, cfg)?),
        (None, false) => Some(Mask::Rects(rect)),
        (None, true) => None,
    };
    let mut failed = 0;
    for path in &images {
        let t = Instant::now();
        let bytes = read(path)?;
        let res = embedder.embed_input(Input { bytes: &bytes, mask: mask.as_ref(), auto_mask: auto_mask && mask.is_none() });
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let line = match res {
            Ok(e) => {
                let mut h = Sha256::new();
                e.vector.iter().for_each(|x| h.update(x.to_le_bytes()));
                let mut j = serde_json::json!({
                    "file": path, "model": embedder.card().name, "pooling": cfg.embed.pooling.to_string(),
                    "dim": e.vector.len(), "vector_sha256": hex::encode(h.finalize()),
                    "cells_used": e.cells_used, "cells_total": e.cells_total, "ms": (ms * 100.0).round() / 100.0,
                });
                if let Some(area) = e.auto_mask {
                    j["auto_mask"] = serde_json::json!(area);
                }
                if vector {
                    j["vector"] = serde_json::json!(e.vector);
                }
                j
            }
            Err(e) => {
                failed += 1;
                serde_json::json!({ "file": path, "error": e.to_string() })
            }
        };
        writeln!(out, "{line}")?;
    }
    if failed > 0 {
        bail!("{failed} of {} photos could not be embedded", images.len());
    }
    Ok(())
}

fn cmd_eval(cfg: &Config, args: EvalArgs, out: &mut impl Write) -> Result<()> {
    let EvalArgs { gallery, queries, json, exact } = args;
    let sets = queries.iter().map(|q| eval::QuerySet::read(q)).collect::<Result<Vec<_>, _>>()?;
    let reports = if exact {
        let embedder = cfg.onnx_embedder()?;
        eval::evaluate_exact(&embedder, &eval::read_csv(&gallery)?, &sets, &cfg.limits)?
    } else {
        evaluate_in_scratch(cfg, &gallery, &sets)?
    };
    if !json {
        writeln!(
            out,
            "| queries | model | path | n | hotel@1 (95 % CI) | hotel@5 | hotel@10 | MRR | room@1 | auto-masked | query ms p50 | p95 |"
        )?;
        writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|")?;
    }
    for r in &reports {
        if json {
            writeln!(out, "{}", serde_json::to_string(r)?)?;
            continue;
        }
        let [lo, hi] = r.hotel_at_1_ci95;
        writeln!(
            out,
            "| {} | {} | {} | {} | {:.3} ({lo:.2}–{hi:.2}) | {:.3} | {:.3} | {:.3} | {:.3} | {} | {:.1} | {:.1} |",
            r.queries_file.display(),
            r.model,
            r.path,
            r.queries,
            r.hotel_at_1,
            r.hotel_at_5,
            r.hotel_at_10,
            r.mrr,
            r.room_at_1,
            r.auto_masked,
            r.query_ms_p50,
            r.query_ms_p95
        )?;
    }
    Ok(())
}

/// Evaluates through the engine in a fresh data directory, removed afterwards: evaluation
/// never touches real data.
fn evaluate_in_scratch(cfg: &Config, gallery: &Path, sets: &[eval::QuerySet]) -> Result<Vec<eval::Report>> {
    let dir = std::env::temp_dir().join(format!("hotelmatch-eval-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let scratch = Config { data_dir: dir.clone(), catalog: String::new(), photos: String::new(), ..cfg.clone() };
    let r = eval::evaluate_engine(&scratch, gallery, sets);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(r?)
}

fn cmd_calibrate(cfg: &Config, init: bool, args: CalibrateArgs, out: &mut impl Write) -> Result<()> {
    let CalibrateArgs { gallery, queries, from_cases, folds, dry_run, samples_out, samples } = args;
    // (label, searches) of each query file, in order, for a table per file.
    let mut files: Vec<(String, usize)> = Vec::new();
    let (samples, source, engine) = if let Some(path) = samples {
        let s: Vec<calibrate::Sample> =
            serde_json::from_slice(&std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?)?;
        (s, format!("samples: {}", path.display()), None)
    } else if from_cases {
        let engine = open_engine(cfg, init)?;
        (engine.confirmed_samples()?, "cases".to_string(), Some(engine))
    } else {
        let gallery = gallery.context("--gallery is required")?;
        let sets = queries.iter().map(|q| eval::QuerySet::read(q)).collect::<Result<Vec<_>, _>>()?;
        let reports = evaluate_in_scratch(cfg, &gallery, &sets)?;
        let names: Vec<String> = queries.iter().map(|q| q.display().to_string()).collect();
        files = names.iter().cloned().zip(reports.iter().map(|r| r.samples.len())).collect();
        (reports.into_iter().flat_map(|r| r.samples).collect(), format!("eval: {}", names.join(", ")), None)
    };
    if let Some(path) = samples_out {
        std::fs::write(&path, serde_json::to_vec(&samples)?).with_context(|| format!("writing {}", path.display()))?;
    }
    let model = cfg.embedder()?.model().to_string();
    let base = calibrate::Calibration { model, scoring: cfg.search.scoring(), ..Default::default() };
    let fitted = base.fit(&samples, &source)?;
    write!(out, "{}", calibrate::Summary::new(&fitted, &samples, &files, folds))?;
    if dry_run {
        return Ok(());
    }
    match engine {
        Some(engine) => {
            engine.recalibrate(&samples, &source, "cli")?;
            writeln!(out, "\nwrote {}", cfg.data_dir.join(calibrate::FILE).display())?;
        }
        None => {
            std::fs::create_dir_all(&cfg.data_dir)?;
            writeln!(out, "\nwrote {}", fitted.save(&cfg.data_dir)?.display())?;
        }
    }
    Ok(())
}

fn cmd_banks(cfg: &Config, init: bool, cmd: BanksCmd, out: &mut impl Write) -> Result<()> {
    let engine = open_engine(cfg, init)?;
    match cmd {
        BanksCmd::Import { name, file } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let r = engine.import_bank(&name, &text, "cli")?;
            writeln!(out, "{}", serde_json::to_string(&r)?)?;
        }
        BanksCmd::List => {
            for b in engine.banks()? {
                writeln!(out, "{}", serde_json::to_string(&b)?)?;
            }
        }
        BanksCmd::Export { format } => {
            let format: hotelmatch::engine::HashFormat = format.parse().map_err(anyhow::Error::msg)?;
            write!(out, "{}", engine.export_hashes(format, "cli")?)?;
        }
    }
    Ok(())
}

fn cmd_import(cfg: &Config, args: ImportArgs, out: &mut impl Write) -> Result<()> {
    let ImportArgs { hotels, images, json } = args;
    let engine = open_engine(cfg, true)?;
    let mut report = ImportReport::default();
    if let Some(h) = hotels {
        report.hotels = import::import_hotels(&engine, &h, "cli")?;
    }
    if let Some(i) = images {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} photos {elapsed} (eta {eta})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let r = import::import_images(&engine, &i, "cli", &|done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })?;
        bar.finish_and_clear();
        report = ImportReport { hotels: report.hotels, ..r };
    }
    if json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        writeln!(
            out,
            "hotels: {}  added: {}  duplicates: {}  already imported: {}  rejected: {}",
            report.hotels,
            report.added,
            report.duplicates,
            report.skipped_already_imported,
            report.rejected.len()
        )?;
        for (p, of, d) in &report.duplicate_of {
            writeln!(out, "  duplicate: {} (of image {of}, PDQ distance {d})", p.display())?;
        }
        for r in &report.rejected {
            writeln!(out, "  rejected line {}: {}: {}", r.line, r.path.display(), r.reason)?;
        }
    }
    Ok(())
}

fn cmd_search(cfg: &Config, init: bool, args: SearchArgs, out: &mut impl Write) -> Result<()> {
    let SearchArgs { image, mask, rect, near, radius_km, country, city, chain, hotels, top, save_case, no_auto_mask, ef, json } = args;
    let engine = open_engine(cfg, init)?;
    let mask = match (mask, rect.is_empty()) {
        (Some(path), _) => Some(load_mask(&path, cfg)?),
        (None, false) => Some(Mask::Rects(rect)),
        (None, true) => None,
    };
    let filter = HotelFilter {
        near: near.zip(radius_km).map(|((lat, lon), r)| (lat, lon, r)),
        country,
        city,
        chain,
        hotel_ids: (!hotels.is_empty()).then_some(hotels),
    };
    let bytes = read(&image)?;
    let res = engine.search(
        &Query { bytes: &bytes, mask: mask.as_ref(), filter, top, save_case, skip_auto_mask: no_auto_mask, ef: ef.unwrap_or(0) as usize },
        "cli",
    )?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&res)?)?;
    } else {
        writeln!(out, "{} hotels ({:.0} ms, {:?})", res.hotels.len(), res.millis, res.plan)?;
        for r in &res.reuse {
            writeln!(
                out,
                "  the query is a copy of image {} (hotel {}; PDQ distance {}, {})",
                r.image_id, r.hotel_id, r.distance, r.variant
            )?;
        }
        for b in &res.bank_matches {
            writeln!(out, "  the query matches hash bank {:?} ({}; PDQ distance {})", b.bank, b.label, b.distance)?;
        }
        if res.saved_case_image {
            writeln!(out, "  kept as case image {}", res.query_sha256)?;
        }
        if let Some(area) = res.auto_mask {
            writeln!(out, "  {:.0} % of the photo looked painted out and was masked (--no-auto-mask to keep it)", area * 100.0)?;
        }
        for h in &res.hotels {
            let place = [h.hotel.city.as_deref(), h.hotel.country.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(", ");
            writeln!(
                out,
                "{:>2}. {:>3.0} % {:<8} score {:.3}  {} ({place})",
                h.rank,
                h.probability * 100.0,
                format!("{:?}", h.confidence).to_lowercase(),
                h.score,
                h.hotel.name
            )?;
            for e in &h.evidence {
                writeln!(out, "      image {} room {} similarity {:.3}", e.image_id, e.room.as_deref().unwrap_or("?"), e.similarity)?;
            }
        }
    }
    Ok(())
}

fn cmd_status(cfg: &Config, init: bool, args: StatusArgs, out: &mut impl Write) -> Result<()> {
    let StatusArgs { image_id, status } = args;
    let engine = open_engine(cfg, init)?;
    engine.set_status(image_id, status, "cli")?;
    engine.save_index()?;
    writeln!(out, "image {image_id}: {status:?}")?;
    Ok(())
}

fn cmd_reindex(cfg: &Config, init: bool, out: &mut impl Write) -> Result<()> {
    let engine = open_engine(cfg, init)?;
    let bar = indicatif::ProgressBar::new(0);
    let (job, reembedded) = hotelmatch::jobs::run_reindex(&engine, "cli", &|step, done, total| {
        bar.set_message(step.as_str());
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    writeln!(
        out,
        "job {}: re-embedded {reembedded} photos with {}; indexed {} photos",
        job.id,
        engine.embedder().model(),
        engine.indexed()
    )?;
    Ok(())
}

fn cmd_hash(cfg: &Config, args: HashArgs, out: &mut impl Write) -> Result<()> {
    let HashArgs { images, variants, compare } = args;
    if let Some(pair) = compare {
        let a = hash_of(&pair[0], cfg)?;
        let b = hash_of(&pair[1], cfg)?;
        let d = a.hash.distance(&b.hash);
        let verdict = if d > pdq::MATCH_DISTANCE {
            "different"
        } else if a.trusted() && b.trusted() {
            "match"
        } else {
            "low-quality: a lead, not a match"
        };
        writeln!(out, "{}", serde_json::json!({"distance": d, "a_quality": a.quality, "b_quality": b.quality, "verdict": verdict}))?;
        return Ok(());
    }
    for path in &images {
        let d = decode::decode(&read(path)?, &cfg.limits, None).with_context(|| format!("{}", path.display()))?;
        let h = pdq::hash_dihedral(&d.rgb);
        let mut j = serde_json::json!({"file": path, "pdq": h.original.to_string(), "quality": h.quality, "trusted": h.quality >= pdq::MIN_TRUSTED_QUALITY});
        if variants {
            j["variants"] = h
                .named()
                .iter()
                .map(|(n, v)| (n.to_string(), serde_json::Value::from(v.to_string())))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        writeln!(out, "{j}")?;
    }
    Ok(())
}

fn cmd_classify(cfg: &Config, args: ClassifyArgs, out: &mut impl Write) -> Result<()> {
    let ClassifyArgs { image } = args;
    let embedder = cfg.onnx_embedder()?;
    let probs = embedder.classify(&read(&image)?)?;
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    for &i in idx.iter().take(5) {
        writeln!(out, "{{\"class\": {i}, \"p\": {:.4}}}", probs[i])?;
    }
    Ok(())
}

/// A photo's PDQ, or a hash given as 64 hex digits (quality unknown: taken as 100).
fn hash_of(arg: &str, cfg: &Config) -> Result<pdq::Pdq> {
    if let Ok(hash) = arg.parse::<pdq::PdqHash>() {
        return Ok(pdq::Pdq { hash, quality: 100 });
    }
    let path = PathBuf::from(arg);
    let d = decode::decode(&read(&path)?, &cfg.limits, None).with_context(|| arg.to_string())?;
    Ok(pdq::hash(&d.rgb))
}

fn load_mask(path: &PathBuf, cfg: &Config) -> Result<Mask> {
    Mask::from_picture(&read(path)?, &cfg.limits).with_context(|| format!("mask {}", path.display()))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("HOTELMATCH_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line a person can act on, with its causes.
            eprintln!("error: {}", e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": "));
            ExitCode::FAILURE
        }
    }
}
