//! Eval: retrieval quality of an embedder on a labelled gallery and query set.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::embed::{EmbedOptions, Embedder, Input};
use crate::vector;

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The CSV could not be read or lacks the `path,hotel,room` columns.
    #[error("{path}: {message}")]
    Csv { path: PathBuf, message: String },
    /// A listed photo could not be read.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A photo could not be embedded.
    #[error("{path}: {message}")]
    Embed { path: PathBuf, message: String },
    /// There is nothing to evaluate.
    #[error("{0} lists no photos")]
    Empty(PathBuf),
}

/// One labelled photo.
#[derive(Debug, Clone, Deserialize)]
pub struct Labelled {
    /// Photo path, relative to the CSV (absolute after `read_csv`).
    pub path: PathBuf,
    /// Hotel id.
    pub hotel: String,
    /// Room label (unique within its hotel).
    #[serde(default)]
    pub room: String,
    /// Optional mask for a query photo (light = masked), relative to the CSV.
    #[serde(default)]
    pub mask: Option<PathBuf>,
    /// Query photos with the same group are searched together (one search, several photos).
    #[serde(default)]
    pub group: Option<String>,
}

/// Which query photos `eval` searches together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum GroupBy {
    /// The CSV's `group` column where it has one; each photo alone otherwise.
    #[default]
    Column,
    /// All query photos of one hotel (up to the most a search takes, in CSV order).
    Hotel,
    /// Each photo alone.
    None,
}

/// Reads a `path,hotel,room` CSV, resolving paths against the CSV's folder.
pub fn read_csv(csv_path: &Path) -> Result<Vec<Labelled>, EvalError> {
    let err = |message: String| EvalError::Csv { path: csv_path.into(), message };
    let mut rdr = csv::Reader::from_path(csv_path).map_err(|e| err(e.to_string()))?;
    let base = csv_path.parent().unwrap_or(Path::new("."));
    let mut rows = Vec::new();
    for r in rdr.deserialize::<Labelled>() {
        let mut r = r.map_err(|e| err(e.to_string()))?;
        r.path = base.join(&r.path);
        r.mask = r.mask.filter(|m| !m.as_os_str().is_empty()).map(|m| base.join(m));
        rows.push(r);
    }
    if rows.is_empty() {
        return Err(EvalError::Empty(csv_path.into()));
    }
    Ok(rows)
}

/// Retrieval quality and cost of one configuration on one query file.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The query CSV this row is about.
    pub queries_file: PathBuf,
    pub model: String,
    pub pooling: String,
    pub resize: String,
    pub gallery: usize,
    pub queries: usize,
    /// Fraction of queries whose hotel is among the top 1, 5, 10 hotels.
    pub hotel_at_1: f64,
    /// 95 % Wilson score interval of `hotel_at_1`.
    pub hotel_at_1_ci95: [f64; 2],
    /// Mean reciprocal rank of the right hotel (0 when it is not returned).
    pub mrr: f64,
    /// Queries masked automatically (no mask given, a painted region found).
    pub auto_masked: usize,
    /// Searches whose first hotel was labelled "strong" and was the wrong one (engine path).
    pub wrong_strong: Vec<WrongStrong>,
    pub hotel_at_5: f64,
    pub hotel_at_10: f64,
    /// Fraction of queries whose room is among the top 1, 5 rooms.
    pub room_at_1: f64,
    pub room_at_5: f64,
    /// Mean embedding time per photo, in milliseconds (batched, all cores; exact path only).
    pub embed_ms_per_photo: f64,
    /// Query latency through the engine (embed + search + rank), mean, p50 and p95, in ms.
    pub query_ms_mean: f64,
    pub query_ms_p50: f64,
    pub query_ms_p95: f64,
    /// "engine" (import + search path) or "exact" (embeddings + exact cosine only).
    pub path: String,
    /// Per query: its candidates' scores and which was right (engine path only), for `calibrate`.
    #[serde(skip)]
    pub samples: Vec<crate::calibrate::Sample>,
}

/// The mask a labelled query names, if any.
pub fn read_mask(row: &Labelled, limits: &crate::media::decode::Limits) -> Result<Option<crate::Mask>, EvalError> {
    let Some(m) = &row.mask else { return Ok(None) };
    let bytes = std::fs::read(m).map_err(|source| EvalError::Io { path: m.clone(), source })?;
    crate::Mask::from_picture(&bytes, limits).map(Some).map_err(|e| EvalError::Embed { path: m.clone(), message: e.to_string() })
}

/// Embeds every labelled photo, in order; fails on the first photo that cannot be embedded.
/// Queries (`as_queries`) are embedded as a search embeds them: with their mask, or with an
/// automatic mask of a painted-out region when they have none; gallery photos as imported.
/// Returns the vectors and how many photos were masked automatically.
pub fn embed_all(
    embedder: &Embedder,
    rows: &[Labelled],
    as_queries: bool,
    limits: &crate::media::decode::Limits,
) -> Result<(Vec<f32>, usize), EvalError> {
    let mut out = Vec::with_capacity(rows.len() * embedder.dim());
    let mut auto = 0;
    for chunk in rows.chunks(64) {
        let bytes: Vec<Vec<u8>> = chunk
            .par_iter()
            .map(|r| std::fs::read(&r.path).map_err(|source| EvalError::Io { path: r.path.clone(), source }))
            .collect::<Result<_, _>>()?;
        let masks: Vec<Option<crate::Mask>> =
            chunk.iter().map(|r| if as_queries { read_mask(r, limits) } else { Ok(None) }).collect::<Result<_, _>>()?;
        let inputs: Vec<Input> = bytes
            .iter()
            .zip(&masks)
            .map(|(b, m)| Input { bytes: b, mask: m.as_ref(), auto_mask: as_queries && m.is_none(), decoded: None, marks: &[] })
            .collect();
        for (r, e) in chunk.iter().zip(embedder.embed(&inputs)) {
            let e = e.map_err(|e| EvalError::Embed { path: r.path.clone(), message: e.to_string() })?;
            auto += usize::from(e.auto_mask.is_some());
            out.extend_from_slice(&e.vector);
        }
    }
    Ok((out, auto))
}

/// The 95 % Wilson score interval of `hits` successes in `n` trials.
pub fn wilson95(hits: usize, n: usize) -> [f64; 2] {
    if n == 0 {
        return [0.0, 0.0];
    }
    let (z, n, p) = (1.96f64, n as f64, hits as f64 / n as f64);
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    [(centre - half).max(0.0), (centre + half).min(1.0)]
}

/// Rank (0-based) of `want` among labels ordered by their best-scoring row.
fn rank_of_best<'a>(scored: &[(usize, f32)], label: impl Fn(usize) -> &'a str, want: &str) -> Option<usize> {
    let mut seen: Vec<&str> = Vec::new();
    for &(row, _) in scored {
        let l = label(row);
        if !seen.contains(&l) {
            if l == want {
                return Some(seen.len());
            }
            seen.push(l);
        }
    }
    None
}

/// A search whose first hotel was labelled "strong" and was the wrong one.
#[derive(Debug, Clone, Serialize)]
pub struct WrongStrong {
    /// The search's (first) query photo.
    pub query: PathBuf,
    /// Its hotel, and the one answered first (external ids).
    pub truth: String,
    pub answered: String,
    /// The probability shown for the wrong hotel.
    pub probability: f32,
    /// Where the right hotel came (1-based), if within the candidates shown.
    pub right_rank: Option<usize>,
    /// Matched points behind the wrong answer (0 unless the verification is on).
    pub matched_points: usize,
}

/// Counts of queries whose hotel / room came within the top k.
#[derive(Default)]
struct Tally {
    queries: usize,
    hits: HashMap<&'static str, usize>,
    reciprocal_ranks: f64,
    auto_masked: usize,
    wrong_strong: Vec<WrongStrong>,
}

impl Tally {
    /// Records one query's (0-based) hotel and room ranks.
    fn add(&mut self, hotel_rank: Option<usize>, room_rank: Option<usize>) {
        self.queries += 1;
        self.reciprocal_ranks += hotel_rank.map_or(0.0, |r| 1.0 / (r + 1) as f64);
        for (name, rank, k) in
            [("h1", hotel_rank, 1), ("h5", hotel_rank, 5), ("h10", hotel_rank, 10), ("r1", room_rank, 1), ("r5", room_rank, 5)]
        {
            if rank.is_some_and(|r| r < k) {
                *self.hits.entry(name).or_default() += 1;
            }
        }
    }

    fn frac(&self, k: &str) -> f64 {
        self.hits.get(k).copied().unwrap_or(0) as f64 / self.queries.max(1) as f64
    }

    /// The report for `embedder`, with per-photo embedding time and query latencies (ms).
    fn report(
        &self,
        file: &Path,
        model: (&str, &EmbedOptions),
        gallery: usize,
        embed_ms_per_photo: f64,
        mut latencies: Vec<f64>,
        path: &str,
    ) -> Report {
        latencies.sort_by(|a, b| a.total_cmp(b));
        let (model, opts) = model;
        Report {
            queries_file: file.into(),
            hotel_at_1_ci95: wilson95(self.hits.get("h1").copied().unwrap_or(0), self.queries),
            mrr: self.reciprocal_ranks / self.queries.max(1) as f64,
            auto_masked: self.auto_masked,
            wrong_strong: self.wrong_strong.clone(),
            model: model.to_string(),
            pooling: opts.pooling.to_string(),
            resize: format!("{:?}", opts.resize).to_lowercase(),
            gallery,
            queries: self.queries,
            hotel_at_1: self.frac("h1"),
            hotel_at_5: self.frac("h5"),
            hotel_at_10: self.frac("h10"),
            room_at_1: self.frac("r1"),
            room_at_5: self.frac("r5"),
            embed_ms_per_photo,
            query_ms_mean: latencies.iter().fold(0.0, |a, b| a + b) / latencies.len().max(1) as f64,
            query_ms_p50: latencies.get(latencies.len().saturating_sub(1) / 2).copied().unwrap_or(0.0),
            query_ms_p95: latencies.get(((latencies.len() as f64 * 0.95).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0.0),
            path: path.into(),
            samples: Vec::new(),
        }
    }
}

/// A labelled query file.
pub struct QuerySet {
    pub file: PathBuf,
    pub rows: Vec<Labelled>,
    pub group_by: GroupBy,
}

impl QuerySet {
    /// Reads a query CSV, whose photos are searched alone or together as `group_by` says.
    pub fn read(file: &Path, group_by: GroupBy) -> Result<Self, EvalError> {
        Ok(QuerySet { file: file.into(), rows: read_csv(file)?, group_by })
    }

    /// The searches: each a list of photos (of one hotel), in the CSV's order of first
    /// appearance; a group naming two hotels is refused.
    pub fn searches(&self) -> Result<Vec<Vec<&Labelled>>, EvalError> {
        let key = |r: &Labelled| match self.group_by {
            GroupBy::Column => r.group.clone().filter(|g| !g.is_empty()),
            GroupBy::Hotel => Some(r.hotel.clone()),
            GroupBy::None => None,
        };
        let mut searches: Vec<Vec<&Labelled>> = Vec::new();
        let mut open: HashMap<String, usize> = HashMap::new();
        for r in &self.rows {
            let Some(k) = key(r) else {
                searches.push(vec![r]);
                continue;
            };
            match open.get(&k) {
                Some(&i) if searches[i].len() < crate::engine::MAX_QUERY_PHOTOS => {
                    if searches[i][0].hotel != r.hotel {
                        let message = format!("group {k:?} has photos of {} and of {}", searches[i][0].hotel, r.hotel);
                        return Err(EvalError::Csv { path: self.file.clone(), message });
                    }
                    searches[i].push(r);
                }
                _ => {
                    open.insert(k, searches.len());
                    searches.push(vec![r]);
                }
            }
        }
        Ok(searches)
    }
}

/// Evaluates hotel and room retrieval by exact cosine search, hotels ranked by their best
/// photo: one report per query set, the gallery embedded once.
pub fn evaluate_exact(
    embedder: &Embedder,
    gallery: &[Labelled],
    sets: &[QuerySet],
    limits: &crate::media::decode::Limits,
) -> Result<Vec<Report>, EvalError> {
    let t = Instant::now();
    let (g, _) = embed_all(embedder, gallery, false, limits)?;
    let gallery_ms = t.elapsed().as_secs_f64() * 1e3;
    let dim = embedder.dim();
    let rooms: Vec<String> = gallery.iter().map(|r| format!("{}\u{1f}{}", r.hotel, r.room)).collect();
    let mut reports = Vec::new();
    for set in sets {
        let t = Instant::now();
        let (q, auto_masked) = embed_all(embedder, &set.rows, true, limits)?;
        let embed_ms_per_photo = (gallery_ms + t.elapsed().as_secs_f64() * 1e3) / (gallery.len() + set.rows.len()) as f64;
        let mut tally = Tally { auto_masked, ..Tally::default() };
        for (qi, qv) in q.chunks_exact(dim).enumerate() {
            let scored = vector::top_k(&g, dim, qv, gallery.len());
            let want = &set.rows[qi];
            let hr = rank_of_best(&scored, |r| gallery[r].hotel.as_str(), &want.hotel);
            let rr = rank_of_best(&scored, |r| rooms[r].as_str(), &format!("{}\u{1f}{}", want.hotel, want.room));
            tally.add(hr, rr);
        }
        reports.push(tally.report(
            &set.file,
            (&embedder.card().name, embedder.options()),
            gallery.len(),
            embed_ms_per_photo,
            Vec::new(),
            "exact",
        ));
    }
    Ok(reports)
}

/// Why an engine evaluation failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineEvalError {
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error(transparent)]
    Import(#[from] crate::import::ImportError),
}

/// Imports the gallery into the (fresh) data directory of `cfg` once and sends every query
/// of every set through the engine's search, as the server does: one report per set.
pub fn evaluate_engine(cfg: &crate::Config, gallery_csv: &Path, sets: &[QuerySet]) -> Result<Vec<Report>, EngineEvalError> {
    use crate::catalog::Hotel;
    let engine = cfg.open_engine()?;
    let gallery = read_csv(gallery_csv)?;
    let mut labels: Vec<&str> = gallery.iter().map(|r| r.hotel.as_str()).collect();
    labels.sort_unstable();
    labels.dedup();
    for l in &labels {
        engine.upsert_hotel(&Hotel { external_id: Some(l.to_string()), name: l.to_string(), ..Default::default() }, "eval")?;
    }
    let t = Instant::now();
    crate::import::import_images(&engine, gallery_csv, "eval", &|_, _| {})?;
    let embed_ms_per_photo = t.elapsed().as_secs_f64() * 1e3 / gallery.len() as f64;
    // What the catalog teaches is learned from the gallery alone, never the queries.
    if cfg.marks.enabled {
        let learned = engine.learn_marks("eval")?;
        tracing::info!(?learned, "shared marks learned from the gallery");
    }
    if cfg.whiten.enabled {
        let learned = engine.learn_whitening("eval")?;
        tracing::info!(?learned, "whitening learned from the gallery");
    }
    let mut reports = Vec::new();
    for set in sets {
        let mut tally = Tally::default();
        let mut latencies = Vec::with_capacity(set.rows.len());
        let mut samples = Vec::with_capacity(set.rows.len());
        for group in set.searches()? {
            let q = group[0];
            let bytes = group
                .iter()
                .map(|r| std::fs::read(&r.path).map_err(|source| EvalError::Io { path: r.path.clone(), source }))
                .collect::<Result<Vec<_>, _>>()?;
            let masks = group.iter().map(|r| read_mask(r, &cfg.limits)).collect::<Result<Vec<_>, _>>()?;
            let more = bytes.iter().zip(&masks).skip(1).map(|(b, m)| crate::engine::QueryImage { bytes: b, mask: m.as_ref() }).collect();
            let query = crate::engine::Query { bytes: &bytes[0], mask: masks[0].as_ref(), more, top: 10, ..Default::default() };
            let res = engine.search(&query, "eval").map_err(|e| EvalError::Embed { path: q.path.clone(), message: e.to_string() })?;
            latencies.push(res.millis);
            let right_id = engine.hotel_by_external_id(&q.hotel)?.map(|h| h.id);
            samples.push(crate::calibrate::Sample {
                scores: res.candidates.iter().map(|c| c.1).collect(),
                right: res.candidates.iter().position(|c| Some(c.0) == right_id),
                photos: group.len(),
            });
            tally.auto_masked += res.queries.iter().filter(|i| i.auto_mask.is_some()).count();
            let want_hotel = res.hotels.iter().find(|h| h.hotel.external_id.as_deref() == Some(q.hotel.as_str())).map(|h| h.hotel.id);
            let hotel_rank = res.hotels.iter().position(|h| Some(h.hotel.id) == want_hotel);
            if let Some(first) = res.hotels.first().filter(|h| h.confidence == crate::engine::Confidence::Strong && hotel_rank != Some(0)) {
                tally.wrong_strong.push(WrongStrong {
                    query: q.path.clone(),
                    truth: q.hotel.clone(),
                    answered: first.hotel.external_id.clone().unwrap_or_else(|| first.hotel.name.clone()),
                    probability: first.probability,
                    right_rank: hotel_rank.map(|r| r + 1),
                    matched_points: first.evidence.iter().filter_map(|e| e.matched_points).max().unwrap_or(0),
                });
            }
            let mut rooms: Vec<(i64, Option<String>)> = Vec::new();
            for f in &res.images {
                let img = engine.image(f.image_id)?;
                let key = (img.hotel_id, img.room);
                if !rooms.contains(&key) {
                    rooms.push(key);
                }
                if rooms.len() >= 5 {
                    break;
                }
            }
            let room_rank = rooms.iter().position(|(h, r)| Some(*h) == want_hotel && r.as_deref() == Some(q.room.as_str()));
            tally.add(hotel_rank, room_rank);
        }
        let mut report =
            tally.report(&set.file, (engine.embedder().model(), &cfg.embed), gallery.len(), embed_ms_per_photo, latencies, "engine");
        report.samples = samples;
        reports.push(report);
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_counts_distinct_labels_in_order() {
        let labels = ["a", "a", "b", "c", "b"];
        let scored: Vec<(usize, f32)> = (0..5).map(|i| (i, 1.0 - i as f32 * 0.1)).collect();
        assert_eq!(rank_of_best(&scored, |r| labels[r], "a"), Some(0));
        assert_eq!(rank_of_best(&scored, |r| labels[r], "b"), Some(1));
        assert_eq!(rank_of_best(&scored, |r| labels[r], "c"), Some(2));
        assert_eq!(rank_of_best(&scored, |r| labels[r], "z"), None);
    }

    #[test]
    fn wilson_interval_brackets_the_rate() {
        let [lo, hi] = wilson95(20, 53);
        assert!(lo < 20.0 / 53.0 && 20.0 / 53.0 < hi);
        // Known value: 20/53 gives about 0.259..0.514.
        assert!((lo - 0.259).abs() < 0.005 && (hi - 0.514).abs() < 0.005, "{lo} {hi}");
        assert_eq!(wilson95(0, 10)[0], 0.0);
        assert!(wilson95(10, 10)[1] > 0.999);
    }

    #[test]
    fn csv_paths_resolve_against_the_csv() {
        let dir = std::env::temp_dir().join(format!("hm-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("g.csv");
        std::fs::write(&p, "path,hotel,room\nimages/a.jpg,h1,101\n").unwrap();
        let rows = read_csv(&p).unwrap();
        assert_eq!(rows[0].path, dir.join("images/a.jpg"));
        std::fs::write(&p, "file,label\nx,y\n").unwrap();
        assert!(matches!(read_csv(&p), Err(EvalError::Csv { .. })));
        std::fs::remove_dir_all(&dir).ok();
    }
}
