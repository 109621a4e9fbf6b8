//! Vector math: dot products of f32, f16 and int8 vectors, with run-time SIMD dispatch, and
//! top-k selection.
//!
//! Release builds target baseline x86-64 (SSE2), so each kernel exists for AVX-512, for
//! AVX2 (+ FMA, F16C) and portably, and the best one the CPU has is chosen once, at the first
//! call. `HOTELMATCH_SIMD=portable|avx2|avx512` caps the choice (to measure, or to rule a
//! kernel out); tests call each level directly through the `*_at` functions.

use std::sync::OnceLock;

/// A family of kernels, by the instructions it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Plain Rust, vectorised by the compiler for the build target.
    Portable,
    /// AVX2 with FMA and F16C.
    Avx2,
    /// AVX-512 F and BW.
    Avx512,
}

impl Level {
    /// The levels this CPU can run, lowest first.
    pub fn available() -> Vec<Level> {
        let mut v = vec![Level::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") && has!("f16c") {
                v.push(Level::Avx2);
                if has!("avx512f") && has!("avx512bw") {
                    v.push(Level::Avx512);
                }
            }
        }
        v
    }

    /// The level in use: the best available, capped by `HOTELMATCH_SIMD`.
    pub fn current() -> Level {
        static LEVEL: OnceLock<Level> = OnceLock::new();
        *LEVEL.get_or_init(|| {
            let best = Level::available().into_iter().max().unwrap_or(Level::Portable);
            let cap = match std::env::var("HOTELMATCH_SIMD").as_deref() {
                Ok("portable") => Level::Portable,
                Ok("avx2") => Level::Avx2,
                _ => Level::Avx512,
            };
            best.min(cap)
        })
    }

    /// Its name, as `HOTELMATCH_SIMD` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Level::Portable => "portable",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }
}

/// The kernels of one level, resolved once: the hot loops call through these pointers
/// instead of checking CPU features on every call.
#[derive(Clone, Copy)]
pub struct Kernels {
    /// The level they belong to.
    pub level: Level,
    /// f32 · f32.
    pub f32: fn(&[f32], &[f32]) -> f32,
    /// int8 · int8, exact.
    pub i8: fn(&[i8], &[i8]) -> i32,
    /// f16 · f16 (IEEE half floats as bits).
    pub f16: fn(&[u16], &[u16]) -> f32,
}

impl Kernels {
    /// The kernels of [`Level::current`].
    pub fn best() -> Kernels {
        static BEST: OnceLock<Kernels> = OnceLock::new();
        *BEST.get_or_init(|| Kernels::at(Level::current()))
    }

    /// The kernels of `level`, or the portable ones where this CPU lacks it (so a test can
    /// force the fallback, and no caller can pick an instruction the CPU does not have).
    pub fn at(level: Level) -> Kernels {
        #[cfg(target_arch = "x86_64")]
        if Level::available().contains(&level) {
            match level {
                Level::Avx512 => return Kernels { level, f32: x86::dot_f32_avx512, i8: x86::dot_i8_avx512, f16: x86::dot_f16_avx512 },
                Level::Avx2 => return Kernels { level, f32: x86::dot_f32_avx2, i8: x86::dot_i8_avx2, f16: x86::dot_f16_avx2 },
                Level::Portable => {}
            }
        }
        let _ = level;
        Kernels { level: Level::Portable, f32: portable::dot_f32, i8: portable::dot_i8, f16: portable::dot_f16 }
    }
}

/// Dot product of two f32 slices (over the shorter length).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    (Kernels::best().f32)(a, b)
}

/// Dot product of two int8 slices, exactly.
#[inline]
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    (Kernels::best().i8)(a, b)
}

/// Dot product of two slices of IEEE half floats (as bits).
#[inline]
pub fn dot_f16(a: &[u16], b: &[u16]) -> f32 {
    (Kernels::best().f16)(a, b)
}

mod portable {
    // Eight independent accumulators let the compiler vectorise with whatever the target
    // has (float addition is not associative, so one accumulator would stay scalar).
    pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
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

    pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
        a.iter().zip(b).map(|(&x, &y)| i32::from(x) * i32::from(y)).sum()
    }

    pub fn dot_f16(a: &[u16], b: &[u16]) -> f32 {
        let f = |x: u16| half::f16::from_bits(x).to_f32();
        a.iter().zip(b).map(|(&x, &y)| f(x) * f(y)).sum()
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The SIMD kernels. Every load reads inside both slices: the loops stop a full register
    //! short of the end and the tails are scalar (or masked, on AVX-512).
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    fn hsum256(v: __m256) -> f32 {
        let half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let pair = _mm_add_ps(half, _mm_movehl_ps(half, half));
        _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1)))
    }

    // The pub fns below are safe to call only where `Kernels::at` hands them out: on a CPU
    // that has the features (checked there, once).
    macro_rules! entry {
        ($name:ident, $inner:ident, $t:ty, $r:ty) => {
            pub fn $name(a: &[$t], b: &[$t]) -> $r {
                let n = a.len().min(b.len());
                // SAFETY: handed out by `Kernels::at` only after the CPU check; both slices
                // hold at least n elements.
                unsafe { $inner(&a[..n], &b[..n]) }
            }
        };
    }
    entry!(dot_f32_avx2, f32_avx2, f32, f32);
    entry!(dot_f32_avx512, f32_avx512, f32, f32);
    entry!(dot_i8_avx2, i8_avx2, i8, i32);
    entry!(dot_i8_avx512, i8_avx512, i8, i32);
    entry!(dot_f16_avx2, f16_avx2, u16, f32);
    entry!(dot_f16_avx512, f16_avx512, u16, f32);

    /// # Safety
    /// The CPU must have AVX2 and FMA; `a` and `b` have the same length.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn f32_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        // Four accumulators hide the latency of the fused multiply-adds.
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                // SAFETY: i + 8j + 8 ≤ n.
                let (x, y) = unsafe { (_mm256_loadu_ps(pa.add(i + 8 * j)), _mm256_loadu_ps(pb.add(i + 8 * j))) };
                *acc = _mm256_fmadd_ps(x, y, *acc);
            }
            i += 32;
        }
        while i + 8 <= n {
            // SAFETY: i + 8 ≤ n.
            let (x, y) = unsafe { (_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
            acc[0] = _mm256_fmadd_ps(x, y, acc[0]);
            i += 8;
        }
        let mut total = hsum256(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
        for k in i..n {
            total += a[k] * b[k];
        }
        total
    }

    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    unsafe fn f32_avx512(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut s0, mut s1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let mut i = 0;
        while i + 32 <= n {
            // SAFETY: i + 32 ≤ n.
            unsafe {
                s0 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), s0);
                s1 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i + 16)), _mm512_loadu_ps(pb.add(i + 16)), s1);
            }
            i += 32;
        }
        while i < n {
            let m: __mmask16 = if n - i >= 16 { 0xFFFF } else { (1u16 << (n - i)) - 1 };
            // SAFETY: the mask only reads the n - i floats left.
            unsafe {
                s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, pa.add(i)), _mm512_maskz_loadu_ps(m, pb.add(i)), s0);
            }
            i += 16;
        }
        _mm512_reduce_add_ps(_mm512_add_ps(s0, s1))
    }

    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    unsafe fn i8_avx2(a: &[i8], b: &[i8]) -> i32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut s0, mut s1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        let mut i = 0;
        // Sign-extended to 16 bits, multiplied and summed in pairs into 32 bits: exact, as
        // 2 · 127² fits easily.
        while i + 32 <= n {
            // SAFETY: i + 32 ≤ n.
            unsafe {
                let x0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(pa.add(i).cast()));
                let y0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(pb.add(i).cast()));
                let x1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(pa.add(i + 16).cast()));
                let y1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(pb.add(i + 16).cast()));
                s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(x0, y0));
                s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(x1, y1));
            }
            i += 32;
        }
        let s = _mm256_add_epi32(s0, s1);
        let q = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        let q = _mm_add_epi32(q, _mm_shuffle_epi32(q, 0b01_00_11_10));
        let q = _mm_add_epi32(q, _mm_shuffle_epi32(q, 0b10_11_00_01));
        let mut total = _mm_cvtsi128_si32(q);
        for k in i..n {
            total += i32::from(a[k]) * i32::from(b[k]);
        }
        total
    }

    /// # Safety
    /// The CPU must have AVX-512F and BW.
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn i8_avx512(a: &[i8], b: &[i8]) -> i32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut s0, mut s1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
        let mut i = 0;
        while i + 64 <= n {
            // SAFETY: i + 64 ≤ n.
            unsafe {
                let x0 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(pa.add(i).cast()));
                let y0 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(pb.add(i).cast()));
                let x1 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(pa.add(i + 32).cast()));
                let y1 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(pb.add(i + 32).cast()));
                s0 = _mm512_add_epi32(s0, _mm512_madd_epi16(x0, y0));
                s1 = _mm512_add_epi32(s1, _mm512_madd_epi16(x1, y1));
            }
            i += 64;
        }
        while i < n {
            let m: __mmask32 = if n - i >= 32 { u32::MAX } else { (1u32 << (n - i)) - 1 };
            // SAFETY: the mask only reads the n - i bytes left.
            unsafe {
                let x = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(m, pa.add(i)));
                let y = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(m, pb.add(i)));
                s0 = _mm512_add_epi32(s0, _mm512_madd_epi16(x, y));
            }
            i += 32;
        }
        _mm512_reduce_add_epi32(_mm512_add_epi32(s0, s1))
    }

    /// # Safety
    /// The CPU must have AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn f16_avx2(a: &[u16], b: &[u16]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: i + 16 ≤ n.
            unsafe {
                let x0 = _mm256_cvtph_ps(_mm_loadu_si128(pa.add(i).cast()));
                let y0 = _mm256_cvtph_ps(_mm_loadu_si128(pb.add(i).cast()));
                let x1 = _mm256_cvtph_ps(_mm_loadu_si128(pa.add(i + 8).cast()));
                let y1 = _mm256_cvtph_ps(_mm_loadu_si128(pb.add(i + 8).cast()));
                s0 = _mm256_fmadd_ps(x0, y0, s0);
                s1 = _mm256_fmadd_ps(x1, y1, s1);
            }
            i += 16;
        }
        let mut total = hsum256(_mm256_add_ps(s0, s1));
        let f = |x: u16| half::f16::from_bits(x).to_f32();
        for k in i..n {
            total += f(a[k]) * f(b[k]);
        }
        total
    }

    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    unsafe fn f16_avx512(a: &[u16], b: &[u16]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut s0, mut s1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let mut i = 0;
        while i + 32 <= n {
            // SAFETY: i + 32 ≤ n.
            unsafe {
                let x0 = _mm512_cvtph_ps(_mm256_loadu_si256(pa.add(i).cast()));
                let y0 = _mm512_cvtph_ps(_mm256_loadu_si256(pb.add(i).cast()));
                let x1 = _mm512_cvtph_ps(_mm256_loadu_si256(pa.add(i + 16).cast()));
                let y1 = _mm512_cvtph_ps(_mm256_loadu_si256(pb.add(i + 16).cast()));
                s0 = _mm512_fmadd_ps(x0, y0, s0);
                s1 = _mm512_fmadd_ps(x1, y1, s1);
            }
            i += 32;
        }
        while i < n {
            let m: __mmask16 = if n - i >= 16 { 0xFFFF } else { (1u16 << (n - i)) - 1 };
            // SAFETY: the mask only reads the n - i halves left.
            unsafe {
                let x = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, pa.add(i).cast()));
                let y = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, pb.add(i).cast()));
                s0 = _mm512_fmadd_ps(x, y, s0);
            }
            i += 16;
        }
        _mm512_reduce_add_ps(_mm512_add_ps(s0, s1))
    }
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

    const LENGTHS: [usize; 16] = [0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 512, 1283];

    #[test]
    fn every_f32_kernel_matches_a_scalar_reference() {
        for level in Level::available() {
            for n in LENGTHS {
                let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
                let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
                let naive: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
                assert!((f64::from((Kernels::at(level).f32)(&a, &b)) - naive).abs() < 1e-3, "{level:?} n={n}");
            }
        }
    }

    #[test]
    fn every_int8_kernel_is_exact() {
        for level in Level::available() {
            for n in LENGTHS {
                // The extremes, -128 included, where a wrong sign extension would show.
                let a: Vec<i8> = (0..n).map(|i| [127, -128, 5, -77, 0, 33][i % 6]).collect();
                let b: Vec<i8> = (0..n).map(|i| [-128, -128, 127, 9, -1, 64, 2][i % 7]).collect();
                let naive: i32 = a.iter().zip(&b).map(|(&x, &y)| i32::from(x) * i32::from(y)).sum();
                assert_eq!((Kernels::at(level).i8)(&a, &b), naive, "{level:?} n={n}");
            }
        }
    }

    #[test]
    fn every_f16_kernel_matches_a_scalar_reference() {
        for level in Level::available() {
            for n in LENGTHS {
                let a: Vec<u16> = (0..n).map(|i| half::f16::from_f32((i as f32 * 0.37).sin()).to_bits()).collect();
                let b: Vec<u16> = (0..n).map(|i| half::f16::from_f32((i as f32 * 0.11).cos()).to_bits()).collect();
                let f = |x: u16| f64::from(half::f16::from_bits(x).to_f32());
                let naive: f64 = a.iter().zip(&b).map(|(&x, &y)| f(x) * f(y)).sum();
                assert!((f64::from((Kernels::at(level).f16)(&a, &b)) - naive).abs() < 1e-3, "{level:?} n={n}");
            }
        }
    }

    #[test]
    fn the_portable_fallback_can_be_forced() {
        // A level the CPU lacks is never run: asking for it falls back to the portable loop.
        let a = [1.0f32, 2.0, 3.0];
        for level in [Level::Portable, Level::Avx2, Level::Avx512] {
            let k = Kernels::at(level);
            assert!(Level::available().contains(&k.level));
            assert_eq!((k.f32)(&a, &a), 14.0);
        }
        assert_eq!(Kernels::at(Level::Portable).level, Level::Portable);
        assert!(Level::available().contains(&Level::current()));
    }

    #[test]
    fn top_k_orders_best_first() {
        let m = [1.0, 0.0, 0.0, 1.0, 0.7, 0.7, -1.0, 0.0];
        assert_eq!(top_k(&m, 2, &[1.0, 0.0], 2), vec![(0, 1.0), (2, 0.7)]);
        assert_eq!(top_k(&m, 2, &[1.0, 0.0], 10).len(), 4);
        assert!(top_k(&m, 2, &[1.0, 0.0], 0).is_empty());
    }
}
