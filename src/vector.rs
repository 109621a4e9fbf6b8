//! Vector math for exact search: dot products and top-k over a flat matrix.

/// Dot product of two equal-length slices.
///
/// Release builds target baseline x86-64 (SSE2), so the AVX2 + FMA kernel is chosen at run
/// time when the CPU has it (every x86 server of the last decade); elsewhere the portable
/// loop runs.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        return unsafe { dot_avx2(a, b) };
    }
    dot_portable(a, b)
}

/// The portable dot product. Eight independent accumulators let the compiler vectorise
/// with whatever the target has (float addition is not associative, so a single
/// accumulator would stay scalar).
pub(crate) fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
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

/// AVX2 + FMA: four 8-wide accumulators (32 floats a step) hide the latency of the fused
/// multiply-adds.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY (all loads): i + 8 ≤ n for every 8-float load, and both slices hold n floats.
    while i + 32 <= n {
        for (j, acc) in acc.iter_mut().enumerate() {
            let (x, y) = unsafe { (_mm256_loadu_ps(pa.add(i + 8 * j)), _mm256_loadu_ps(pb.add(i + 8 * j))) };
            *acc = _mm256_fmadd_ps(x, y, *acc);
        }
        i += 32;
    }
    while i + 8 <= n {
        let (x, y) = unsafe { (_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
        acc[0] = _mm256_fmadd_ps(x, y, acc[0]);
        i += 8;
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
    let pair = _mm_add_ps(half, _mm_movehl_ps(half, half));
    let mut total = _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1)));
    for k in i..n {
        total += a[k] * b[k];
    }
    total
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
        for n in [0, 1, 7, 8, 9, 31, 32, 33, 40, 512, 1280, 1283] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
            assert!((f64::from(dot(&a, &b)) - naive).abs() < 1e-3, "n={n}");
            assert!((f64::from(dot_portable(&a, &b)) - naive).abs() < 1e-3, "portable, n={n}");
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
