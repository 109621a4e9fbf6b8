//! Vector math for exact search: dot products and top-k over a flat matrix.

/// Dot product of two equal-length slices.
///
/// Eight independent accumulators let the compiler vectorise without `-C target-cpu`
/// (float addition is not associative, so a single accumulator would stay scalar).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The `k` rows of `matrix` (row-major, `dim` wide) most similar to `query`, best first, as (row, score).
pub fn top_k(matrix: &[f32], dim: usize, query: &[f32], k: usize) -> Vec<(usize, f32)> {
    best_k(matrix.chunks_exact(dim).map(|row| dot(row, query)).enumerate().collect(), k)
}

/// The `k` highest-scored (item, score) pairs, best first (ties by item).
pub fn best_k(mut scored: Vec<(usize, f32)>, k: usize) -> Vec<(usize, f32)> {
    let k = k.min(scored.len());
    if k == 0 {
        return Vec::new();
    }
    scored.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
    scored.truncate(k);
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_naive_for_odd_lengths() {
        for n in [0, 1, 7, 8, 9, 1280, 1283] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
            assert!((f64::from(dot(&a, &b)) - naive).abs() < 1e-3, "n={n}");
        }
    }

    #[test]
    fn top_k_orders_best_first() {
        let m = [1.0, 0.0, 0.0, 1.0, 0.7, 0.7, -1.0, 0.0];
        assert_eq!(top_k(&m, 2, &[1.0, 0.0], 2), vec![(0, 1.0), (2, 0.7)]);
        assert_eq!(top_k(&m, 2, &[1.0, 0.0], 10).len(), 4);
        assert!(top_k(&m, 2, &[1.0, 0.0], 0).is_empty());
    }
}
