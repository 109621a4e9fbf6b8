//! Compact vectors (f32, f16, or int8 with a per-vector scale) and the append-only storage
//! that holds them where searches read without locks.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::vector::Kernels;

/// How the index holds each vector in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// 4 bytes a dimension: exact.
    F32,
    /// IEEE half floats, 2 bytes a dimension.
    F16,
    /// One signed byte a dimension plus one f32 scale per vector.
    #[default]
    Int8,
}

impl Format {
    /// Its name in the config.
    pub fn name(self) -> &'static str {
        match self {
            Format::F32 => "f32",
            Format::F16 => "f16",
            Format::Int8 => "int8",
        }
    }

    /// Parses a config name.
    pub fn parse(s: &str) -> Option<Format> {
        [Format::F32, Format::F16, Format::Int8].into_iter().find(|f| f.name() == s)
    }
}

/// One vector in its compact form: 8-byte words (so every view is aligned) and a scale.
#[derive(Debug, Clone)]
pub struct Code {
    /// The packed components.
    pub words: Vec<u64>,
    /// The int8 scale (1 for the float formats).
    pub scale: f32,
}

/// Encodes, decodes and scores vectors of one format and dimension.
#[derive(Clone, Copy)]
pub struct Coder {
    /// The format.
    pub format: Format,
    /// The dimension.
    pub dim: usize,
    kernels: Kernels,
}

impl Coder {
    /// A coder with the CPU's best kernels.
    pub fn new(format: Format, dim: usize) -> Coder {
        Coder { format, dim, kernels: Kernels::best() }
    }

    /// 8-byte words per vector.
    pub fn words(&self) -> usize {
        let bytes = match self.format {
            Format::F32 => 4 * self.dim,
            Format::F16 => 2 * self.dim,
            Format::Int8 => self.dim,
        };
        bytes.div_ceil(8)
    }

    /// The compact form of `v`.
    pub fn encode(&self, v: &[f32]) -> Code {
        let mut words = vec![0u64; self.words()];
        let bytes: &mut [u8] = bytemuck_mut(&mut words);
        let mut scale = 1.0;
        match self.format {
            Format::F32 => v.iter().zip(bytes.chunks_exact_mut(4)).for_each(|(x, b)| b.copy_from_slice(&x.to_le_bytes())),
            Format::F16 => v
                .iter()
                .zip(bytes.chunks_exact_mut(2))
                .for_each(|(x, b)| b.copy_from_slice(&half::f16::from_f32(*x).to_bits().to_le_bytes())),
            Format::Int8 => {
                // Symmetric, per vector: the largest component maps to ±127, so decoding and
                // encoding again gives the same code.
                let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
                if max > 0.0 {
                    scale = max / 127.0;
                    v.iter().zip(bytes.iter_mut()).for_each(|(x, b)| *b = ((x / scale).round().clamp(-127.0, 127.0) as i8) as u8);
                }
            }
        }
        Code { words, scale }
    }

    /// The vector a code stands for.
    pub fn decode(&self, words: &[u64], scale: f32) -> Vec<f32> {
        match self.format {
            Format::F32 => as_f32(words, self.dim).to_vec(),
            Format::F16 => as_u16(words, self.dim).iter().map(|&h| half::f16::from_bits(h).to_f32()).collect(),
            Format::Int8 => as_i8(words, self.dim).iter().map(|&q| f32::from(q) * scale).collect(),
        }
    }

    /// Approximate dot product of two codes (exact for f32).
    #[inline]
    pub fn score(&self, a: &[u64], sa: f32, b: &[u64], sb: f32) -> f32 {
        let k = &self.kernels;
        match self.format {
            Format::F32 => (k.f32)(as_f32(a, self.dim), as_f32(b, self.dim)),
            Format::F16 => (k.f16)(as_u16(a, self.dim), as_u16(b, self.dim)),
            Format::Int8 => sa * sb * (k.i8)(as_i8(a, self.dim), as_i8(b, self.dim)) as f32,
        }
    }
}

fn bytemuck_mut(words: &mut [u64]) -> &mut [u8] {
    // SAFETY: u8 has no alignment or validity requirement, and the length is exact.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 8) }
}

fn as_f32(words: &[u64], dim: usize) -> &[f32] {
    assert!(dim * 4 <= words.len() * 8);
    // SAFETY: in bounds (checked), u64 alignment covers f32's, and every bit pattern is an f32.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<f32>(), dim) }
}

fn as_u16(words: &[u64], dim: usize) -> &[u16] {
    assert!(dim * 2 <= words.len() * 8);
    // SAFETY: as in `as_f32`.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u16>(), dim) }
}

fn as_i8(words: &[u64], dim: usize) -> &[i8] {
    assert!(dim <= words.len() * 8);
    // SAFETY: as in `as_f32`.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<i8>(), dim) }
}

/// Nodes per chunk: large enough that the chunk table stays small, small enough that a
/// near-empty index does not hold much.
const CHUNK: usize = 4096;
/// Chunks at most: 2²⁸ (268 million) nodes.
const MAX_CHUNKS: usize = 1 << 16;

/// Fixed-size records (`stride` values of `T` each) in chunks that never move once made:
/// writers append, readers index without a lock.
pub struct Slab<T> {
    stride: usize,
    chunks: Box<[OnceLock<Box<[T]>>]>,
}

impl<T: Default> Slab<T> {
    /// An empty slab of `stride`-long records.
    pub fn new(stride: usize) -> Self {
        Slab { stride, chunks: (0..MAX_CHUNKS).map(|_| OnceLock::new()).collect() }
    }

    /// Records per slab at most.
    pub const CAPACITY: usize = CHUNK * MAX_CHUNKS;

    /// Makes sure record `i` exists (all zero/default until written).
    pub fn ensure(&self, i: usize) {
        self.chunks[i / CHUNK].get_or_init(|| (0..CHUNK * self.stride).map(|_| T::default()).collect());
    }

    /// Record `i`, if its chunk exists.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&[T]> {
        let chunk = self.chunks.get(i / CHUNK)?.get()?;
        let at = (i % CHUNK) * self.stride;
        Some(&chunk[at..at + self.stride])
    }

    /// Record `i`, which must have been ensured.
    #[inline]
    pub fn at(&self, i: usize) -> &[T] {
        self.get(i).expect("slab record read before it was made")
    }

    /// Bytes held by the chunks made so far.
    pub fn bytes(&self) -> usize {
        self.chunks.iter().filter(|c| c.get().is_some()).count() * CHUNK * self.stride * std::mem::size_of::<T>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_score_close_to_f32() {
        let dim = 37;
        let a: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.7).sin()).collect();
        let b: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.3).cos()).collect();
        let exact = crate::vector::dot(&a, &b);
        for (format, tol) in [(Format::F32, 1e-6), (Format::F16, 1e-2), (Format::Int8, 5e-2)] {
            let c = Coder::new(format, dim);
            let (ca, cb) = (c.encode(&a), c.encode(&b));
            let s = c.score(&ca.words, ca.scale, &cb.words, cb.scale);
            assert!((s - exact).abs() < tol, "{format:?}: {s} vs {exact}");
            let back = c.decode(&ca.words, ca.scale);
            assert!(back.iter().zip(&a).all(|(x, y)| (x - y).abs() < 0.02), "{format:?}");
            // Encoding the decoded vector again gives the same code (compaction relies on it).
            let again = c.encode(&back);
            assert_eq!(again.words, ca.words, "{format:?}");
        }
        let zero = Coder::new(Format::Int8, 4).encode(&[0.0; 4]);
        assert_eq!(zero.words, vec![0]);
    }

    #[test]
    fn slab_records_are_separate_and_stay_put() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let s: Slab<AtomicU32> = Slab::new(3);
        assert!(s.get(0).is_none());
        s.ensure(CHUNK + 1);
        s.at(CHUNK + 1)[2].store(7, Ordering::Relaxed);
        let p = s.at(CHUNK + 1).as_ptr();
        s.ensure(5 * CHUNK);
        assert_eq!(s.at(CHUNK + 1).as_ptr(), p);
        assert_eq!(s.at(CHUNK + 1)[2].load(Ordering::Relaxed), 7);
        assert_eq!(s.at(CHUNK)[2].load(Ordering::Relaxed), 0);
        assert!(s.get(0).is_none());
    }
}
