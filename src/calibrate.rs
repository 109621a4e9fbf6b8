//! Calibrate: hotel scores turned into the probability that each candidate is the right hotel.
//!
//! Hotels-50K turns neighbour similarities into per-hotel probabilities with a softmax
//! (`convert_knn_to_probabilities`). Raw softmax is not calibrated, so here it has two
//! parameters fitted by maximum likelihood on labelled searches: a temperature `T`, and a
//! "none of these" score `b` for the chance that the right hotel is not among the
//! candidates at all:
//!
//! `P(hotel i) = exp(s_i / T) / (exp(b / T) + Σ_j exp(s_j / T))`
//!
//! over the top `CANDIDATES` hotels of a search. A candidate far ahead of the next gets most
//! of the mass; two close ones share it; low scores leave most of it to "none of these".
//! Knows nothing of the engine or HTTP: it sees lists of scores and which one was right.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The hotels of a search the probabilities are spread over (the engine ranks at least this many).
pub const CANDIDATES: usize = 10;
/// Where `calibrate` writes the fitted calibration, in the data directory.
pub const FILE: &str = "calibration.json";

/// Why a calibration could not be read, written or fitted.
#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a calibration: {message}")]
    Format { path: PathBuf, message: String },
    /// Too few labelled searches to fit two parameters.
    #[error("{0} labelled searches: at least 10 are needed to calibrate")]
    TooFew(usize),
    /// Labelled searches from too few cases or keys: one investigator cannot set everyone's
    /// probabilities.
    #[error("labelled searches from {cases} cases and {keys} keys: at least {min_cases} cases and {min_keys} keys are needed")]
    TooFewSources { cases: usize, keys: usize, min_cases: usize, min_keys: usize },
    /// A fitted parameter outside what a usable calibration can have.
    #[error("{what} {value} is outside {lo}..={hi}: refused")]
    OutOfBand { what: &'static str, value: f32, lo: f32, hi: f32 },
    /// The refit explains searches it was not fitted on worse than the calibration in use.
    #[error("the refit is worse than the calibration in use on {held_out} held-out searches (log-loss {fitted:.4} against {current:.4}): refused")]
    Worse { held_out: usize, fitted: f64, current: f64 },
}

/// The range a usable temperature keeps to: below it every top candidate reads 100 %, above
/// it none reads more than its share (the built-in fits are 0.0157 and 0.0264).
pub const TEMPERATURE_BAND: (f32, f32) = (0.002, 1.0);
/// The range of a usable "none of these" score (similarities lie in -1..=1).
pub const NONE_BAND: (f32, f32) = (-1.0, 2.0);

/// One labelled search: its candidates' scores, best first, and which one was right
/// (`None`: the right hotel was not among them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub scores: Vec<f32>,
    pub right: Option<usize>,
    /// Query photos of the search (fused scores of several photos are spread otherwise).
    #[serde(default = "one")]
    pub photos: usize,
}

fn one() -> usize {
    1
}

/// The fit for searches of several photos: their fused scores are spread differently from
/// one photo's, so they get their own temperature and "none of these" score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Several {
    pub temperature: f32,
    pub none_score: f32,
    pub samples: usize,
}

/// A plain-language reading of a probability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// Right most of the time at this probability: worth acting on, after checking the evidence.
    Strong,
    /// Often right: a lead to check.
    Possible,
    /// Rarely right: shown folded under "weak matches".
    Weak,
}

impl Confidence {
    /// Its word, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Strong => "strong",
            Confidence::Possible => "possible",
            Confidence::Weak => "weak",
        }
    }
}

/// Fitted parameters, the thresholds of the labels, and where they come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Softmax temperature.
    pub temperature: f32,
    /// Score of "none of these candidates".
    pub none_score: f32,
    /// At or above this probability a candidate is `strong`.
    pub strong: f32,
    /// At or above this (and below `strong`) it is `possible`; below, `weak` and folded.
    pub possible: f32,
    /// What it was fitted on ("listings-dev", "eval: FILE…", "cases").
    pub source: String,
    /// Labelled searches it was fitted on.
    pub samples: usize,
    /// The model and scoring the scores came from: another model or scoring needs its own.
    pub model: String,
    pub scoring: String,
    /// The fit for searches of several photos (none: they use the one-photo fit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub several: Option<Several>,
}

impl Default for Calibration {
    /// Fitted with `hotelmatch calibrate` on listings-dev-nowm (159 one-photo searches: plain,
    /// masked and painted queries; 90 `--group-by hotel` searches for `several`) with the
    /// default model and scoring (docs/workflow.md).
    fn default() -> Self {
        Calibration {
            temperature: 0.0264,
            none_score: 0.1975,
            strong: 0.7,
            possible: 0.3,
            source: "built-in (listings-dev-nowm)".into(),
            samples: 159,
            model: "sscd-distilled".into(),
            scoring: "best+whiten".into(),
            several: Some(Several { temperature: 0.0157, none_score: 0.1464, samples: 90 }),
        }
    }
}

impl Calibration {
    /// The probability of each candidate (scores best first) of a search of `photos` query
    /// photos; they sum to less than 1, the rest being "none of these".
    pub fn probabilities(&self, scores: &[f32], photos: usize) -> Vec<f32> {
        match &self.several {
            Some(s) if photos > 1 => softmax(scores, s.temperature, s.none_score),
            _ => softmax(scores, self.temperature, self.none_score),
        }
    }

    /// The label a probability earns.
    pub fn confidence(&self, p: f32) -> Confidence {
        if p >= self.strong {
            Confidence::Strong
        } else if p >= self.possible {
            Confidence::Possible
        } else {
            Confidence::Weak
        }
    }

    /// Whether every parameter is finite and within its band, and the labels are ordered.
    pub fn check(&self) -> Result<(), CalibrationError> {
        let band = |what: &'static str, value: f32, (lo, hi): (f32, f32)| match value.is_finite() && (lo..=hi).contains(&value) {
            true => Ok(()),
            false => Err(CalibrationError::OutOfBand { what, value, lo, hi }),
        };
        band("temperature", self.temperature, TEMPERATURE_BAND)?;
        band("none_score", self.none_score, NONE_BAND)?;
        band("strong", self.strong, (0.01, 1.0))?;
        band("possible", self.possible, (0.0, self.strong))?;
        if let Some(s) = &self.several {
            band("several.temperature", s.temperature, TEMPERATURE_BAND)?;
            band("several.none_score", s.none_score, NONE_BAND)?;
        }
        Ok(())
    }

    /// Mean negative log-likelihood of `samples` (what a better calibration lowers).
    pub fn log_loss(&self, samples: &[Sample]) -> f64 {
        let total: f64 = samples
            .iter()
            .map(|s| match &self.several {
                Some(x) if s.photos > 1 => nll(std::slice::from_ref(s), x.temperature, x.none_score),
                _ => nll(std::slice::from_ref(s), self.temperature, self.none_score),
            })
            .sum();
        total / samples.len().max(1) as f64
    }

    /// The calibration in `dir`, if one was written there.
    pub fn load(dir: &Path) -> Result<Option<Calibration>, CalibrationError> {
        let path = dir.join(FILE);
        match std::fs::read(&path) {
            Ok(b) => {
                let c: Calibration =
                    serde_json::from_slice(&b).map_err(|e| CalibrationError::Format { path: path.clone(), message: e.to_string() })?;
                c.check().map_err(|e| CalibrationError::Format { path, message: e.to_string() })?;
                Ok(Some(c))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CalibrationError::Io { path, source }),
        }
    }

    /// Writes it into `dir` (atomically: a reader sees the old file or the new one).
    pub fn save(&self, dir: &Path) -> Result<PathBuf, CalibrationError> {
        let path = dir.join(FILE);
        let tmp = dir.join(format!("{FILE}.tmp"));
        let io = |source| CalibrationError::Io { path: path.clone(), source };
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).expect("a calibration serializes")).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(path)
    }

    /// Fits the temperature and the "none" score to `samples` by maximum likelihood; the
    /// label thresholds are kept from `self`.
    pub fn fit(&self, samples: &[Sample], source: &str) -> Result<Calibration, CalibrationError> {
        if samples.len() < 10 {
            return Err(CalibrationError::TooFew(samples.len()));
        }
        let (temperature, none_score) = fit(samples);
        let fitted = Calibration { temperature, none_score, source: source.into(), samples: samples.len(), ..self.clone() };
        fitted.check()?;
        Ok(fitted)
    }

    /// Fits one-photo and several-photo searches apart: the one-photo fit from `samples` of
    /// one photo, and, where there are enough of them, a fit of their own for the others.
    pub fn fit_apart(&self, samples: &[Sample], source: &str) -> Result<Calibration, CalibrationError> {
        let (several, one): (Vec<Sample>, Vec<Sample>) = samples.iter().cloned().partition(|s| s.photos > 1);
        let mut fitted = self.fit(if one.is_empty() { &several } else { &one }, source)?;
        fitted.several = match (one.is_empty(), several.len() >= 10) {
            (false, true) => {
                let (temperature, none_score) = fit(&several);
                Some(Several { temperature, none_score, samples: several.len() })
            }
            _ => None,
        };
        fitted.check()?;
        Ok(fitted)
    }
}

fn softmax(scores: &[f32], t: f32, none: f32) -> Vec<f32> {
    let top = scores.iter().copied().fold(none, f32::max);
    let e: Vec<f64> = scores.iter().map(|&s| (f64::from(s - top) / f64::from(t)).exp()).collect();
    let z = (f64::from(none - top) / f64::from(t)).exp() + e.iter().sum::<f64>();
    e.iter().map(|x| (x / z) as f32).collect()
}

/// Negative log-likelihood of the samples under (t, none).
fn nll(samples: &[Sample], t: f32, none: f32) -> f64 {
    samples
        .iter()
        .map(|s| {
            let p = softmax(&s.scores, t, none);
            let right = match s.right {
                Some(i) => p.get(i).copied().unwrap_or(0.0),
                None => 1.0 - p.iter().sum::<f32>(),
            };
            -f64::from(right.max(1e-9)).ln()
        })
        .sum()
}

/// Coarse-to-fine grid search over log-temperature and the "none" score: two parameters and
/// a smooth likelihood, so a grid is exact enough and cannot diverge.
fn fit(samples: &[Sample]) -> (f32, f32) {
    let all: Vec<f32> = samples.iter().flat_map(|s| s.scores.iter().copied()).collect();
    let lo = all.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = all.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let (mut lt, mut b) = ((0.05f32).ln(), (lo + hi) / 2.0);
    let (mut lt_span, mut b_span) = (4.0f32, (hi - lo).max(0.1));
    for _ in 0..6 {
        let mut best = (f64::INFINITY, lt, b);
        for i in 0..=20 {
            for j in 0..=20 {
                let cand_lt = lt + lt_span * (i as f32 / 10.0 - 1.0);
                let cand_b = b + b_span * (j as f32 / 10.0 - 1.0);
                let v = nll(samples, cand_lt.exp(), cand_b);
                if v < best.0 {
                    best = (v, cand_lt, cand_b);
                }
            }
        }
        (lt, b) = (best.1, best.2);
        lt_span /= 4.0;
        b_span /= 4.0;
    }
    (lt.exp(), b)
}

/// One row of a reliability table: searches whose top candidate's probability fell in
/// `[from, to)`, and how often that candidate was right.
#[derive(Debug, Clone, Serialize)]
pub struct Bin {
    pub from: f32,
    pub to: f32,
    pub searches: usize,
    pub mean_probability: f64,
    pub right: usize,
}

/// The expected calibration error of reading the top candidate's raw score as its
/// probability: the baseline a fit must beat.
pub fn raw_score_ece(samples: &[Sample], edges: &[f32]) -> f64 {
    reliability(samples, edges, |_, s| s.scores.iter().take(1).map(|&x| x.clamp(0.0, 1.0)).collect()).1
}

/// Reliability of the top candidate's probability over `samples`, in `edges` bins, with the
/// expected calibration error (the searches-weighted mean gap between probability and
/// accuracy). `probability` gives each sample's probabilities (in-sample or held out).
pub fn reliability(samples: &[Sample], edges: &[f32], probability: impl Fn(usize, &Sample) -> Vec<f32>) -> (Vec<Bin>, f64) {
    let mut bins: Vec<Bin> = edges.windows(2).map(|w| Bin { from: w[0], to: w[1], searches: 0, mean_probability: 0.0, right: 0 }).collect();
    for (i, s) in samples.iter().enumerate() {
        let Some(&p) = probability(i, s).first() else { continue };
        let last = bins.len() - 1;
        let b = bins.iter().position(|b| p < b.to).unwrap_or(last);
        bins[b].searches += 1;
        bins[b].mean_probability += f64::from(p);
        bins[b].right += usize::from(s.right == Some(0));
    }
    let n = samples.len().max(1) as f64;
    let mut ece = 0.0;
    for b in &mut bins {
        if b.searches > 0 {
            b.mean_probability /= b.searches as f64;
            ece += b.searches as f64 / n * (b.mean_probability - b.right as f64 / b.searches as f64).abs();
        }
    }
    (bins, ece)
}

/// Held-out probabilities: each sample scored by a calibration fitted on the other folds
/// (`folds` interleaved folds) of its own kind (one photo or several, fitted apart), so the
/// table does not grade the fit on its own data.
pub fn cross_validated(base: &Calibration, samples: &[Sample], folds: usize) -> Vec<Vec<f32>> {
    let folds = folds.clamp(2, samples.len().max(2));
    let fitted: Vec<[(f32, f32); 2]> = (0..folds)
        .map(|f| {
            [false, true].map(|several| {
                let train: Vec<Sample> = samples
                    .iter()
                    .enumerate()
                    .filter(|(i, s)| i % folds != f && (s.photos > 1) == several)
                    .map(|(_, s)| s.clone())
                    .collect();
                if train.is_empty() {
                    (base.temperature, base.none_score)
                } else {
                    fit(&train)
                }
            })
        })
        .collect();
    samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (t, none) = fitted[i % folds][usize::from(s.photos > 1)];
            softmax(&s.scores, t, none)
        })
        .collect()
}

/// What `hotelmatch calibrate` prints about a fit: reliability held out and in sample, the
/// labels, each query file, and the raw-score baseline, as Markdown tables.
pub struct Summary<'a> {
    fitted: &'a Calibration,
    samples: &'a [Sample],
    /// (name, searches) of each query file, in the order of `samples`.
    files: &'a [(String, usize)],
    folds: usize,
    held: Vec<Vec<f32>>,
}

/// The bins of the reliability tables.
const EDGES: [f32; 7] = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0001];

impl<'a> Summary<'a> {
    /// The summary of `fitted` over `samples`, held out with `folds` folds.
    pub fn new(fitted: &'a Calibration, samples: &'a [Sample], files: &'a [(String, usize)], folds: usize) -> Self {
        Summary { fitted, samples, files, folds, held: cross_validated(fitted, samples, folds) }
    }

    /// Of the searches whose held-out top probability passes `keep`: how many, and how many
    /// had the right hotel first.
    fn count(samples: &[Sample], held: &[Vec<f32>], keep: impl Fn(f32) -> bool) -> (usize, usize) {
        let of: Vec<bool> =
            samples.iter().zip(held).filter(|(_, p)| keep(p.first().copied().unwrap_or(0.0))).map(|(s, _)| s.right == Some(0)).collect();
        (of.len(), of.iter().filter(|&&r| r).count())
    }
}

impl std::fmt::Display for Summary<'_> {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (c, samples, held) = (self.fitted, self.samples, &self.held);
        let right_first = samples.iter().filter(|s| s.right == Some(0)).count();
        writeln!(out, "{} labelled searches ({}); the top candidate was right in {right_first}.", samples.len(), c.source)?;
        writeln!(out, "fit: temperature {:.4}, none-of-these score {:.4}", c.temperature, c.none_score)?;
        let tables = [
            (format!("held out ({}-fold cross-validation)", self.folds), reliability(samples, &EDGES, |i, _| held[i].clone())),
            ("in sample (the fit written)".to_string(), reliability(samples, &EDGES, |_, s| c.probabilities(&s.scores, s.photos))),
        ];
        for (name, (bins, ece)) in &tables {
            writeln!(out, "\nReliability of the top candidate's probability, {name}:\n")?;
            writeln!(out, "| probability | searches | mean probability | right | accuracy |\n|---|---|---|---|---|")?;
            for b in bins {
                let (mean, acc) = if b.searches == 0 {
                    ("—".into(), "—".into())
                } else {
                    (format!("{:.2}", b.mean_probability), format!("{:.2}", b.right as f64 / b.searches as f64))
                };
                writeln!(out, "| {:.1}–{:.1} | {} | {mean} | {} | {acc} |", b.from, b.to.min(1.0), b.searches, b.right)?;
            }
            writeln!(out, "\nexpected calibration error: {ece:.3}")?;
        }
        writeln!(out, "\nThe labels, held out:\n\n| label | searches | top candidate right |\n|---|---|---|")?;
        for label in [Confidence::Strong, Confidence::Possible, Confidence::Weak] {
            let (n, right) = Self::count(samples, held, |p| c.confidence(p) == label);
            let share = if n == 0 { "—".to_string() } else { format!("{:.2}", right as f64 / n as f64) };
            writeln!(out, "| {label:?} | {n} | {right} ({share}) |")?;
        }
        if self.files.len() > 1 {
            writeln!(out, "\nBy query file, held out:\n\n| queries | searches | top candidate right | mean probability | strong (right) | weak (right) |\n|---|---|---|---|---|---|")?;
            let mut at = 0;
            for (name, n) in self.files {
                let (s, p) = (&samples[at..at + n], &held[at..at + n]);
                at += n;
                let mean = p.iter().map(|x| f64::from(x.first().copied().unwrap_or(0.0))).sum::<f64>() / (*n).max(1) as f64;
                let strong = Self::count(s, p, |q| c.confidence(q) == Confidence::Strong);
                let weak = Self::count(s, p, |q| c.confidence(q) == Confidence::Weak);
                let right = s.iter().filter(|x| x.right == Some(0)).count();
                writeln!(out, "| {name} | {n} | {right} | {mean:.2} | {} ({}) | {} ({}) |", strong.0, strong.1, weak.0, weak.1)?;
            }
        }
        writeln!(
            out,
            "\n(baseline: the raw score read as a probability has an expected calibration error of {:.3})",
            raw_score_ece(samples, &EDGES)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Searches drawn from a known model: the right hotel scores `gap` above the others
    /// with probability `p_right`, and is missing otherwise.
    fn synthetic(n: usize, seed: u64) -> Vec<Sample> {
        let mut x = seed;
        let mut unit = move || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 40) as f32 / (1u64 << 24) as f32
        };
        (0..n)
            .map(|_| {
                let mut scores: Vec<f32> = (0..CANDIDATES).map(|_| 0.80 + 0.5 * unit()).collect();
                let strength = unit();
                let right = (strength > 0.4).then(|| {
                    scores[3] += 1.2 * strength;
                    3
                });
                let mut order: Vec<usize> = (0..CANDIDATES).collect();
                order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
                let sorted = order.iter().map(|&i| scores[i]).collect();
                Sample { scores: sorted, right: right.map(|r| order.iter().position(|&i| i == r).unwrap()), photos: 1 }
            })
            .collect()
    }

    #[test]
    fn a_fit_is_better_calibrated_than_the_raw_softmax_and_held_out_stays_close() {
        let train = synthetic(400, 1);
        let test = synthetic(400, 2);
        let raw = Calibration { temperature: 1.0, none_score: 0.0, ..Default::default() };
        let fitted = raw.fit(&train, "synthetic").unwrap();
        let edges = [0.0, 0.2, 0.4, 0.6, 0.8, 1.01];
        let (_, ece_raw) = reliability(&test, &edges, |_, s| raw.probabilities(&s.scores, 1));
        let (bins, ece_fit) = reliability(&test, &edges, |_, s| fitted.probabilities(&s.scores, 1));
        assert!(ece_fit < 0.08 && ece_fit < ece_raw / 2.0, "ECE fitted {ece_fit:.3}, raw {ece_raw:.3}, {bins:?}");
        assert!(nll(&test, fitted.temperature, fitted.none_score) < nll(&test, 1.0, 0.0));
        let held = cross_validated(&fitted, &train, 5);
        let (_, ece_cv) = reliability(&train, &edges, |i, _| held[i].clone());
        assert!(ece_cv < 0.1, "cross-validated ECE {ece_cv:.3}");
    }

    #[test]
    fn the_summary_has_every_table_and_a_row_per_query_file() {
        let samples = synthetic(60, 5);
        let fitted = Calibration::default().fit(&samples, "synthetic").unwrap();
        let files = [("a.csv".to_string(), 20), ("b.csv".to_string(), 40)];
        let text = Summary::new(&fitted, &samples, &files, 5).to_string();
        for part in [
            "60 labelled searches (synthetic)",
            "held out (5-fold",
            "in sample",
            "| Strong |",
            "| a.csv | 20 |",
            "| b.csv | 40 |",
            "baseline",
        ] {
            assert!(text.contains(part), "{part:?} missing from\n{text}");
        }
        let rows = text.lines().filter(|l| l.starts_with("| 0.") && l.contains('–')).count();
        assert_eq!(rows, 12, "six bins in each of two reliability tables");
    }

    #[test]
    fn probabilities_follow_the_gap_and_leave_room_for_none() {
        let c = Calibration::default();
        // Whitened cosines: a clear first place and a near tie.
        let clear = c.probabilities(&[0.55, 0.44, 0.43], 1);
        let close = c.probabilities(&[0.50, 0.499, 0.43], 1);
        assert!(clear[0] > 0.8 && close[0] < 0.5, "{clear:?} {close:?}");
        assert!(clear.iter().sum::<f32>() < 1.0 && clear.windows(2).all(|w| w[0] >= w[1]));
        let low = c.probabilities(&[0.17, 0.16, 0.15, 0.15], 1);
        assert_eq!(c.confidence(low[0]), Confidence::Weak);
        assert_eq!(c.confidence(clear[0]), Confidence::Strong);
        assert!(Calibration::default().fit(&synthetic(5, 3), "x").is_err());
    }

    #[test]
    fn saved_and_loaded_round_trip_and_garbage_is_refused() {
        let dir = std::env::temp_dir().join(format!("hm-calibration-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _ = std::fs::remove_file(dir.join(FILE));
        assert_eq!(Calibration::load(&dir).unwrap(), None);
        let c = Calibration { temperature: 0.03, source: "test".into(), ..Default::default() };
        c.save(&dir).unwrap();
        assert_eq!(Calibration::load(&dir).unwrap(), Some(c));
        std::fs::write(dir.join(FILE), b"{not json").unwrap();
        assert!(matches!(Calibration::load(&dir), Err(CalibrationError::Format { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
