//! Learned whitening: a projection of the embeddings fitted on the catalog's own labels
//! (photos of one hotel are positive pairs), after Radenović, Tolias and Chum (ECCV 2016).
//! What varies between photos of the same place (viewpoint, light, a masked person) is
//! scaled down; what tells places apart is kept. Knows nothing of catalogs or engines.

use base64::Engine as _;
use nalgebra::{DMatrix, SymmetricEigen};
use serde::{Deserialize, Serialize};

/// How a whitening is fitted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WhitenOptions {
    /// Learn a whitening from the catalog's labels (at `reindex`, `hotelmatch learn`, `eval`).
    pub enabled: bool,
    /// Weight of the identity in the pair covariance (0: pure whitening, 1: none): few pairs
    /// estimate the small eigenvalues badly, and shrinking keeps them from blowing up.
    pub shrinkage: f32,
    /// Below this many positive pairs no whitening is learned (the search goes without).
    pub min_pairs: usize,
    /// Photos of one hotel taken into pairs, at most (the first by id): a hotel with 500
    /// photos must not decide alone what "the same place" looks like.
    pub max_per_hotel: usize,
    /// Pairs used, at most, spread evenly over all of them (the fit's cost is bounded).
    pub max_pairs: usize,
}

impl Default for WhitenOptions {
    fn default() -> Self {
        WhitenOptions { enabled: true, shrinkage: 0.5, min_pairs: 200, max_per_hotel: 12, max_pairs: 200_000 }
    }
}

/// Why no whitening could be fitted.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WhitenError {
    /// Too few photos share a hotel.
    #[error("{pairs} pairs of photos of the same hotel, fewer than the {min} a whitening needs")]
    TooFew { pairs: usize, min: usize },
    /// The vectors are not all of one dimension.
    #[error("vectors of {got} dimensions among vectors of {want}")]
    Dimension { want: usize, got: usize },
    /// A stored whitening does not parse.
    #[error("stored whitening: {0}")]
    Format(String),
}

/// A fitted projection: `x ↦ normalize(P (x − mean))`.
#[derive(Debug, Clone, PartialEq)]
pub struct Whitening {
    dim: usize,
    mean: Vec<f32>,
    /// `dim × dim`, row-major.
    matrix: Vec<f32>,
    /// What it was fitted on.
    pub fitted: Fitted,
}

/// What a whitening was fitted on, for the record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Fitted {
    pub pairs: usize,
    pub hotels: usize,
    pub photos: usize,
    pub shrinkage: f32,
}

/// The stored form: the arrays as base64 of little-endian f32 (a third of the JSON numbers).
#[derive(Serialize, Deserialize)]
struct Stored {
    dim: usize,
    mean: String,
    matrix: String,
    #[serde(flatten)]
    fitted: Fitted,
}

fn encode(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn decode(s: &str, len: usize) -> Result<Vec<f32>, WhitenError> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).map_err(|e| WhitenError::Format(e.to_string()))?;
    if bytes.len() != len * 4 {
        return Err(WhitenError::Format(format!("{} bytes where {} were expected", bytes.len(), len * 4)));
    }
    Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

impl Whitening {
    /// Fits on `photos` (hotel id, vector): every pair of photos of one hotel is a positive
    /// pair; the projection is the inverse square root of their (shrunk) difference covariance.
    pub fn fit(photos: &[(i64, &[f32])], opts: &WhitenOptions) -> Result<Self, WhitenError> {
        let Some(&(_, first)) = photos.first() else { return Err(WhitenError::TooFew { pairs: 0, min: opts.min_pairs.max(1) }) };
        let dim = first.len();
        if let Some(&(_, v)) = photos.iter().find(|(_, v)| v.len() != dim) {
            return Err(WhitenError::Dimension { want: dim, got: v.len() });
        }
        let mut by_hotel: std::collections::BTreeMap<i64, Vec<usize>> = Default::default();
        for (i, (h, _)) in photos.iter().enumerate() {
            let members = by_hotel.entry(*h).or_default();
            if members.len() < opts.max_per_hotel.max(2) {
                members.push(i);
            }
        }
        let mut pairs: Vec<(usize, usize)> = Vec::new();
        for members in by_hotel.values() {
            for (a, &i) in members.iter().enumerate() {
                pairs.extend(members[a + 1..].iter().map(|&j| (i, j)));
            }
        }
        if pairs.len() < opts.min_pairs.max(1) {
            return Err(WhitenError::TooFew { pairs: pairs.len(), min: opts.min_pairs.max(1) });
        }
        if pairs.len() > opts.max_pairs.max(1) {
            let step = pairs.len() as f64 / opts.max_pairs.max(1) as f64;
            pairs = (0..opts.max_pairs.max(1)).map(|k| pairs[(k as f64 * step) as usize]).collect();
        }
        let hotels = by_hotel.values().filter(|m| m.len() >= 2).count();
        let mut members: Vec<usize> = pairs.iter().flat_map(|&(i, j)| [i, j]).collect();
        members.sort_unstable();
        members.dedup();
        let mut mean = vec![0f64; dim];
        for &i in &members {
            mean.iter_mut().zip(photos[i].1).for_each(|(m, x)| *m += f64::from(*x));
        }
        mean.iter_mut().for_each(|m| *m /= members.len() as f64);
        // The covariance of pair differences, a chunk of pairs at a time (bounded memory).
        let mut cov = DMatrix::<f64>::zeros(dim, dim);
        for chunk in pairs.chunks(4096) {
            let diffs = DMatrix::<f64>::from_fn(chunk.len(), dim, |r, c| {
                let (i, j) = chunk[r];
                f64::from(photos[i].1[c]) - f64::from(photos[j].1[c])
            });
            cov += diffs.transpose() * &diffs;
        }
        cov /= pairs.len() as f64;
        let lambda = f64::from(opts.shrinkage.clamp(0.0, 1.0));
        let scale = cov.trace() / dim as f64;
        cov *= 1.0 - lambda;
        for d in 0..dim {
            cov[(d, d)] += lambda * scale;
        }
        let eig = SymmetricEigen::new(cov);
        let floor = scale.max(f64::MIN_POSITIVE) * 1e-6;
        let inv_sqrt = DMatrix::from_diagonal(&eig.eigenvalues.map(|l| 1.0 / l.max(floor).sqrt()));
        let p = &eig.eigenvectors * inv_sqrt * eig.eigenvectors.transpose();
        Ok(Whitening {
            dim,
            mean: mean.iter().map(|&m| m as f32).collect(),
            matrix: (0..dim * dim).map(|k| p[(k / dim, k % dim)] as f32).collect(),
            fitted: Fitted { pairs: pairs.len(), hotels, photos: members.len(), shrinkage: opts.shrinkage },
        })
    }

    /// The dimension it projects.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// `v` projected and L2-normalised (unchanged if it has another dimension).
    pub fn apply(&self, v: &[f32]) -> Vec<f32> {
        if v.len() != self.dim {
            return v.to_vec();
        }
        let centred: Vec<f32> = v.iter().zip(&self.mean).map(|(x, m)| x - m).collect();
        let mut out: Vec<f32> = self.matrix.chunks_exact(self.dim).map(|row| crate::vector::dot(row, &centred)).collect();
        crate::embed::pool::l2_normalize(&mut out);
        out
    }

    /// The stored form.
    pub fn to_json(&self) -> serde_json::Value {
        let stored = Stored { dim: self.dim, mean: encode(&self.mean), matrix: encode(&self.matrix), fitted: self.fitted.clone() };
        serde_json::to_value(stored).unwrap_or_default()
    }

    /// Reads the stored form.
    pub fn from_json(body: serde_json::Value) -> Result<Self, WhitenError> {
        let s: Stored = serde_json::from_value(body).map_err(|e| WhitenError::Format(e.to_string()))?;
        Ok(Whitening { dim: s.dim, mean: decode(&s.mean, s.dim)?, matrix: decode(&s.matrix, s.dim * s.dim)?, fitted: s.fitted })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random number in [-1, 1) (splitmix64 of the seed).
    fn noise(seed: u64) -> f32 {
        let mut x = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn unit(mut v: Vec<f32>) -> Vec<f32> {
        crate::embed::pool::l2_normalize(&mut v);
        v
    }

    /// Photos of 40 hotels in 8 dimensions: each hotel a small signal in dims 0-3, and a
    /// large nuisance (the same for every hotel's photos, say the light) in dims 4-7.
    fn photos() -> Vec<(i64, Vec<f32>)> {
        let mut out = Vec::new();
        for h in 0..40u64 {
            for p in 0..4u64 {
                let v =
                    (0..8u64)
                        .map(|d| {
                            if d < 4 {
                                0.3 * noise(h * 97 + d) + 0.02 * noise(h * 1000 + p * 10 + d)
                            } else {
                                noise(h * 7919 + p * 31 + d)
                            }
                        })
                        .collect();
                out.push((h as i64, unit(v)));
            }
        }
        out
    }

    #[test]
    fn whitening_brings_photos_of_one_hotel_together() {
        let photos = photos();
        let refs: Vec<(i64, &[f32])> = photos.iter().map(|(h, v)| (*h, v.as_slice())).collect();
        let w = Whitening::fit(&refs, &WhitenOptions { shrinkage: 0.1, min_pairs: 10, ..Default::default() }).unwrap();
        assert_eq!((w.fitted.pairs, w.fitted.hotels), (40 * 6, 40));
        // Nearest neighbour of each photo among the others: right hotel how often, before and after.
        let right = |vs: &[Vec<f32>]| {
            (0..vs.len())
                .filter(|&i| {
                    let best = (0..vs.len())
                        .filter(|&j| j != i)
                        .max_by(|&a, &b| crate::vector::dot(&vs[i], &vs[a]).total_cmp(&crate::vector::dot(&vs[i], &vs[b])));
                    best.is_some_and(|j| photos[j].0 == photos[i].0)
                })
                .count()
        };
        let raw: Vec<Vec<f32>> = photos.iter().map(|(_, v)| v.clone()).collect();
        let white: Vec<Vec<f32>> = photos.iter().map(|(_, v)| w.apply(v)).collect();
        let (before, after) = (right(&raw), right(&white));
        assert!(after >= before + 50, "right neighbours {before} → {after} of 160");
        assert!(white.iter().all(|v| (crate::vector::dot(v, v) - 1.0).abs() < 1e-4));
    }

    #[test]
    fn stored_form_round_trips_and_too_few_pairs_are_refused() {
        let photos = photos();
        let refs: Vec<(i64, &[f32])> = photos.iter().map(|(h, v)| (*h, v.as_slice())).collect();
        let w = Whitening::fit(&refs, &WhitenOptions { min_pairs: 10, ..Default::default() }).unwrap();
        let back = Whitening::from_json(w.to_json()).unwrap();
        assert_eq!(back, w);
        let err = Whitening::fit(&refs[..4], &WhitenOptions { min_pairs: 10, ..Default::default() }).unwrap_err();
        assert_eq!(err, WhitenError::TooFew { pairs: 6, min: 10 });
        let mut bad = w.to_json();
        bad["matrix"] = serde_json::json!("AAAA");
        assert!(matches!(Whitening::from_json(bad), Err(WhitenError::Format(_))));
        // Capped per hotel: 2 photos of each hotel make one pair each.
        let capped = Whitening::fit(&refs, &WhitenOptions { min_pairs: 10, max_per_hotel: 2, ..Default::default() }).unwrap();
        assert_eq!(capped.fitted.pairs, 40);
    }
}
