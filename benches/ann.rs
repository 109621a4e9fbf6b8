//! hotelmatch's side of the ANN benchmark (`scripts/bench/bench_ann.sh` runs it beside hnswlib,
//! faiss and usearch on the same files): build on all cores, an `ef` sweep with queries one
//! at a time on one thread, recall@10 against the given ground truth, exact-scan speed,
//! memory per vector, dump size and reload time. One JSON object per line on stdout.
//! With `--refine R` each search over-fetches `10 × R` and re-scores them with the exact f32
//! vectors read from a real SQLite catalog, as the engine's search does.
//!
//! `cargo bench --bench ann -- --base B.fvecs --queries Q.fvecs --truth T.ivecs [--format int8] [--kind hnsw] [--refine 4]`

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use hotelmatch::catalog::sqlite::SqliteCatalog;
use hotelmatch::catalog::{Change, Hotel, HotelStore, NewImage, PhotoCatalog, Source, Status};
use hotelmatch::index::{load_index, new_index, Format, Found, IndexOptions, Kind, VectorIndex};

#[derive(Parser)]
struct Args {
    /// Vectors to index (.fvecs).
    #[arg(long)]
    base: PathBuf,
    /// Queries (.fvecs).
    #[arg(long)]
    queries: PathBuf,
    /// The true 10 (or more) nearest base rows of each query (.ivecs).
    #[arg(long)]
    truth: PathBuf,
    /// int8, f16 or f32.
    #[arg(long, default_value = "int8")]
    format: String,
    /// hnsw (the project's graph) or hnsw_rs.
    #[arg(long, default_value = "hnsw")]
    kind: String,
    #[arg(long, default_value_t = 16)]
    m: usize,
    #[arg(long, default_value_t = 100)]
    ef_construction: usize,
    /// The ef values to sweep.
    #[arg(long, value_delimiter = ',', default_value = "10,16,24,32,48,64,96,128,192,256,384,512")]
    ef: Vec<usize>,
    /// Queries for the exact scans (they are slow).
    #[arg(long, default_value_t = 200)]
    exact_queries: usize,
    /// Over-fetch factor of the exact re-rank from the catalog (0: none).
    #[arg(long, default_value_t = 0)]
    refine: usize,
    /// Where to write the dump (a temporary directory by default).
    #[arg(long)]
    dump: Option<PathBuf>,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

fn read_vecs(path: &Path) -> Vec<Vec<u32>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let d = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 4;
        out.push(bytes[at..at + 4 * d].chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect());
        at += 4 * d;
    }
    out
}

fn fvecs(path: &Path) -> Vec<Vec<f32>> {
    read_vecs(path).into_iter().map(|v| v.into_iter().map(f32::from_bits).collect()).collect()
}

fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<usize>().ok()))
        .map_or(0, |p| p * 4096)
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |rd| {
        rd.flatten().map(|e| if e.path().is_dir() { dir_bytes(&e.path()) } else { e.metadata().map_or(0, |m| m.len()) }).sum()
    })
}

/// The exact re-rank: the catalog that holds the f32 vectors, its model id, the over-fetch.
struct Refine {
    catalog: SqliteCatalog,
    model: i64,
    factor: usize,
}

impl Refine {
    /// A SQLite catalog under `dir` holding `base` as images 1..=n, added as the engine adds them.
    fn fill(dir: &Path, base: &[Vec<f32>], factor: usize) -> Refine {
        let catalog = SqliteCatalog::open(&dir.join("catalog.db")).unwrap();
        let hotel = catalog.upsert_hotel(&Hotel { name: "Bench".into(), ..Default::default() }).unwrap();
        let model = catalog.model_id("bench", "embedding", base[0].len(), "{}").unwrap();
        for (i, v) in base.iter().enumerate() {
            let img = NewImage {
                sha256: format!("{:064x}", i as u128 + 1),
                hotel_id: hotel,
                room: None,
                source: Source::Crowd,
                uploader_key_id: None,
                width: 640,
                height: 480,
                pdq: Default::default(),
                pdq_quality: 90,
            };
            let id = catalog.add_image(&img, model, v).unwrap();
            assert_eq!(id, i as i64 + 1, "image ids follow the base rows");
        }
        Refine { catalog, model, factor }
    }

    /// The 10 best of what the index found, by exact f32 similarity from the catalog.
    fn top10(&self, q: &[f32], found: &[Found]) -> Vec<i64> {
        let ids: Vec<i64> = found.iter().map(|f| f.image_id).collect();
        let mut scored: Vec<(i64, f32)> =
            self.catalog.embeddings(&ids, self.model).unwrap().into_iter().map(|(id, v)| (id, hotelmatch::vector::dot(q, &v))).collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        scored.into_iter().take(10).map(|(id, _)| id).collect()
    }
}

/// Queries/s and recall@10 for one setting, one query at a time on this thread.
fn sweep_point(idx: &dyn VectorIndex, queries: &[Vec<f32>], truth: &[Vec<u32>], ef: usize, refine: Option<&Refine>) -> (f64, f64) {
    let t = Instant::now();
    let mut hits = 0;
    for (q, tr) in queries.iter().zip(truth) {
        let ids: Vec<i64> = match refine {
            None => idx.search(q, 10, None, ef).unwrap().0.iter().map(|f| f.image_id).collect(),
            Some(r) => r.top10(q, &idx.search(q, 10 * r.factor, None, ef.max(10 * r.factor)).unwrap().0),
        };
        hits += ids.iter().filter(|&&id| tr[..10].contains(&((id - 1) as u32))).count();
    }
    (queries.len() as f64 / t.elapsed().as_secs_f64(), hits as f64 / (10 * queries.len()) as f64)
}

fn main() {
    let a = Args::parse();
    let format = Format::parse(&a.format).unwrap_or_else(|| panic!("format: int8, f16 or f32"));
    let kind = match a.kind.as_str() {
        "hnsw" => Kind::Hnsw,
        "hnsw_rs" => Kind::HnswRs,
        other => panic!("kind {other}: hnsw or hnsw_rs"),
    };
    let base = fvecs(&a.base);
    let queries = fvecs(&a.queries);
    let truth = read_vecs(&a.truth);
    let (n, dim) = (base.len(), base[0].len());
    let name = if kind == Kind::Hnsw { format!("hotelmatch-{}", format.name()) } else { "hnsw_rs".to_string() };
    let simd = hotelmatch::vector::Level::current().name();
    let tmp = std::env::temp_dir().join(format!("hm-ann-{}", std::process::id()));
    let refine = (a.refine > 0).then(|| {
        std::fs::create_dir_all(&tmp).unwrap();
        Refine::fill(&tmp, &base, a.refine)
    });
    let name = if a.refine > 0 { format!("{name}+refine{}", a.refine) } else { name };
    let changes: Vec<Change> = base
        .into_iter()
        .enumerate()
        .map(|(i, v)| Change {
            seq: i as i64 + 1,
            image_id: i as i64 + 1,
            hotel_id: 0,
            status: Status::Active,
            pdq: Default::default(),
            pdq_quality: 0,
            vector: Some(v),
        })
        .collect();
    let opts = IndexOptions { kind, format, hnsw_min: 0, exact_max: 0, m: a.m, ef_construction: a.ef_construction, ..Default::default() };

    let before = rss_bytes();
    let t = Instant::now();
    let idx = new_index(dim, opts.clone());
    idx.apply(&changes).unwrap();
    let build_s = t.elapsed().as_secs_f64();
    let rss_per_vector = rss_bytes().saturating_sub(before) as f64 / n as f64;
    let held_per_vector = idx.memory_bytes() as f64 / n as f64;

    // Warm-up, so the first point does not pay for page faults.
    sweep_point(idx.as_ref(), &queries[..queries.len().min(100)], &truth, a.ef[0], refine.as_ref());
    let mut sweep = Vec::new();
    for &ef in &a.ef {
        let (qps, recall) = sweep_point(idx.as_ref(), &queries, &truth, ef, refine.as_ref());
        sweep.push(serde_json::json!({"ef": ef, "qps": qps, "recall": recall}));
    }

    // Exact scans: of the compact vectors (the index's own scan), and of f32.
    let nq = a.exact_queries.min(queries.len());
    let exact_idx = new_index(dim, IndexOptions { hnsw_min: usize::MAX, exact_max: usize::MAX, ..opts.clone() });
    exact_idx.apply(&changes).unwrap();
    let (exact_qps, exact_recall) = sweep_point(exact_idx.as_ref(), &queries[..nq], &truth, 0, None);
    drop(exact_idx);
    let flat: Vec<f32> = changes.iter().flat_map(|c| c.vector.clone().unwrap()).collect();
    let t = Instant::now();
    for q in &queries[..nq] {
        std::hint::black_box(hotelmatch::vector::top_k(&flat, dim, q, 10));
    }
    let exact_f32_qps = nq as f64 / t.elapsed().as_secs_f64();
    drop(flat);

    let dump = a.dump.clone().unwrap_or(tmp.join("dump"));
    let _ = std::fs::remove_dir_all(&dump);
    let t = Instant::now();
    idx.save(&dump).unwrap();
    let save_s = t.elapsed().as_secs_f64();
    let dump_bytes = dir_bytes(&dump);
    let t = Instant::now();
    let back = load_index(&dump, dim, opts).unwrap();
    let reload_s = t.elapsed().as_secs_f64();
    assert_eq!(back.len(), n);
    drop(refine);
    let _ = std::fs::remove_dir_all(&tmp);
    println!(
        "{}",
        serde_json::json!({
            "system": name, "n": n, "dim": dim, "simd": simd, "m": a.m, "ef_construction": a.ef_construction,
            "build_s": build_s, "rss_bytes_per_vector": rss_per_vector, "held_bytes_per_vector": held_per_vector,
            "sweep": sweep, "exact_qps": exact_qps, "exact_recall": exact_recall, "exact_f32_qps": exact_f32_qps,
            "save_s": save_s, "dump_bytes": dump_bytes, "reload_s": reload_s,
        })
    );
}
