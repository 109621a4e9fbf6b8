//! PDQ: Meta's 256-bit perceptual hash (ThreatExchange), computed bit for bit as the reference does.
//!
//! Steps, as in the reference: luma, two passes of X and Y box filters sized to the
//! 64x64 target (a tent filter, after Jarosz), decimation to 64x64 at cell centres, a
//! quality score from the gradients of that 64x64 image, the 16x16 low-frequency block of
//! its DCT, and one bit per coefficient: above the median or not. Every float operation
//! runs in the reference's order, so results are identical, not merely close; the speed
//! comes from doing the column passes row-wise (cache-friendly, vectorised across columns)
//! and from computing the last pass only where the decimation samples it.

use std::fmt;

use image::RgbImage;

/// Images smaller than this on either side get the zero hash and quality 0, as in the reference.
pub const MIN_HASHABLE_DIM: usize = 5;
/// Below this quality a hash should not be used alone to call two images the same (PDQ's advice).
pub const MIN_TRUSTED_QUALITY: u8 = 50;
/// Below this quality a photo is near-uniform (one colour, a blur, a sliver of pixels): too
/// little to match a room on. Refused as a gallery photo; a query like it is never "strong".
pub const MIN_INFORMATIVE_QUALITY: u8 = 5;
/// Gallery photos smaller than this on either side are refused: nothing of a room fits.
pub const MIN_GALLERY_SIDE: u32 = 32;
/// PDQ's recommended distance for calling two hashes a match.
pub const MATCH_DISTANCE: u32 = 31;

/// A 256-bit PDQ hash; bit `k` is bit `k % 16` of word `k / 16`, as in the reference.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct PdqHash(pub [u16; 16]);

/// Why a hash could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PdqError {
    /// Not 64 hexadecimal characters.
    #[error("a PDQ hash is 64 hexadecimal characters, got {0:?}")]
    BadHex(String),
}

impl PdqHash {
    /// The hash as four 64-bit words (for XOR + popcount).
    pub fn to_u64s(&self) -> [u64; 4] {
        std::array::from_fn(|i| (0..4).fold(0u64, |acc, j| acc | (u64::from(self.0[i * 4 + j]) << (16 * j))))
    }

    /// Number of differing bits.
    pub fn distance(&self, other: &PdqHash) -> u32 {
        crate::digest::hamming256(&self.to_u64s(), &other.to_u64s())
    }

    /// Parses ThreatExchange's text form: 64 hex digits, word 15 first.
    pub fn from_hex(s: &str) -> Result<Self, PdqError> {
        let bad = || PdqError::BadHex(s.chars().take(80).collect());
        if s.len() != 64 || !s.is_ascii() {
            return Err(bad());
        }
        let mut w = [0u16; 16];
        for (i, chunk) in s.as_bytes().chunks(4).enumerate() {
            let text = std::str::from_utf8(chunk).map_err(|_| bad())?;
            w[15 - i] = u16::from_str_radix(text, 16).map_err(|_| bad())?;
        }
        Ok(PdqHash(w))
    }

    fn set_bit(&mut self, k: usize) {
        self.0[k >> 4] |= 1 << (k & 15);
    }
}

impl fmt::Display for PdqHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().rev().try_for_each(|w| write!(f, "{w:04x}"))
    }
}

impl fmt::Debug for PdqHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PdqHash({self})")
    }
}

impl serde::Serialize for PdqHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::str::FromStr for PdqHash {
    type Err = PdqError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PdqHash::from_hex(s)
    }
}

/// A hash with its quality (0-100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pdq {
    pub hash: PdqHash,
    pub quality: u8,
}

impl Pdq {
    /// Whether the quality is high enough to trust a match on this hash alone.
    pub fn trusted(&self) -> bool {
        self.quality >= MIN_TRUSTED_QUALITY
    }
}

/// The eight dihedral variants of one image's hash, from one DCT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dihedral {
    pub original: PdqHash,
    pub rotate90: PdqHash,
    pub rotate180: PdqHash,
    pub rotate270: PdqHash,
    pub flip_x: PdqHash,
    pub flip_y: PdqHash,
    pub flip_plus1: PdqHash,
    pub flip_minus1: PdqHash,
    pub quality: u8,
}

impl Dihedral {
    /// The variants with their ThreatExchange names.
    pub fn named(&self) -> [(&'static str, PdqHash); 8] {
        [
            ("original", self.original),
            ("rotate90", self.rotate90),
            ("rotate180", self.rotate180),
            ("rotate270", self.rotate270),
            ("flipx", self.flip_x),
            ("flipy", self.flip_y),
            ("flipplus1", self.flip_plus1),
            ("flipminus1", self.flip_minus1),
        ]
    }
}

/// Hash of an RGB image.
pub fn hash(img: &RgbImage) -> Pdq {
    match dct16(img) {
        Some((dct, quality)) => Pdq { hash: bits(&dct), quality },
        None => Pdq { hash: PdqHash::default(), quality: 0 },
    }
}

/// Hash of an RGB image and of its seven rotations and flips.
pub fn hash_dihedral(img: &RgbImage) -> Dihedral {
    let Some((a, quality)) = dct16(img) else {
        let z = PdqHash::default();
        return Dihedral {
            original: z,
            rotate90: z,
            rotate180: z,
            rotate270: z,
            flip_x: z,
            flip_y: z,
            flip_plus1: z,
            flip_minus1: z,
            quality: 0,
        };
    };
    // A rotation or flip of the image only transposes and/or flips the signs of DCT
    // coefficients: odd frequencies change sign under a flip of their axis.
    let variant = |transpose: bool, sign: &dyn Fn(usize, usize) -> bool| {
        let mut b = [[0f32; 16]; 16];
        for i in 0..16 {
            for j in 0..16 {
                let v = if sign(i, j) { -a[i][j] } else { a[i][j] };
                if transpose {
                    b[j][i] = v;
                } else {
                    b[i][j] = v;
                }
            }
        }
        bits(&b)
    };
    Dihedral {
        original: bits(&a),
        rotate90: variant(true, &|_, j| j & 1 == 0),
        rotate180: variant(false, &|i, j| (i + j) & 1 == 1),
        rotate270: variant(true, &|i, _| i & 1 == 0),
        flip_x: variant(false, &|i, _| i & 1 == 0),
        flip_y: variant(false, &|_, j| j & 1 == 0),
        flip_plus1: variant(true, &|_, _| false),
        flip_minus1: variant(true, &|i, j| (i + j) & 1 == 1),
        quality,
    }
}

/// Luma as the PyPI `pdqhash` reference computes it: in double precision, then rounded to float.
fn luma(img: &RgbImage) -> Vec<f32> {
    img.as_raw().chunks_exact(3).map(|p| (f64::from(p[0]) * 0.299 + f64::from(p[1]) * 0.587 + f64::from(p[2]) * 0.114) as f32).collect()
}

/// The 16x16 DCT block and the quality, or `None` for images too small to hash.
fn dct16(img: &RgbImage) -> Option<([[f32; 16]; 16], u8)> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w < MIN_HASHABLE_DIM || h < MIN_HASHABLE_DIM {
        return None;
    }
    let mut a = luma(img);
    let small = if (w, h) == (64, 64) { a } else { downsample(&mut a, w, h) };
    let quality = quality(&small);
    Some((dct64_to_16(&small), quality))
}

/// Box-filter window per pass: two passes of half a 64th of the side make a full tent.
fn window(old: usize) -> usize {
    old.div_ceil(2 * 64)
}

/// Source row/column sampled for each of the 64 output cells (cell centres).
fn sample_points(len: usize) -> [usize; 64] {
    std::array::from_fn(|o| (((o as f64 + 0.5) * len as f64) / 64.0) as usize)
}

/// Tent-filters the luma (X, Y, X, Y box passes) and decimates it to 64x64, row-major.
fn downsample(a: &mut [f32], w: usize, h: usize) -> Vec<f32> {
    let (wr, wc) = (window(w), window(h));
    let mut b = vec![0f32; w * h];
    box_rows(a, &mut b, w, wr);
    box_cols(&b, a, w, h, wc);
    box_rows(a, &mut b, w, wr);
    // The last pass is only ever read at the 64 sampled columns.
    let cols = sample_points(w);
    let rows = sample_points(h);
    let mut out = vec![0f32; 64 * 64];
    let mut column = vec![0f32; h];
    let mut filtered = vec![0f32; h];
    for (oj, &j) in cols.iter().enumerate() {
        column.iter_mut().enumerate().for_each(|(i, c)| *c = b[i * w + j]);
        box_1d(&column, &mut filtered, wc);
        for (oi, &i) in rows.iter().enumerate() {
            out[oi * 64 + oj] = filtered[i];
        }
    }
    out
}

/// Running-mean box filter of one vector, as the reference computes it: the window is
/// centred, shrinks at both ends, and the running sum is updated add-then-subtract.
fn box_1d(input: &[f32], out: &mut [f32], window: usize) {
    let n = input.len();
    let half = (window + 2) / 2;
    let (mut sum, mut count) = (0f32, 0usize);
    let (mut left, mut right, mut o) = (0usize, 0usize, 0usize);
    for _ in 0..half - 1 {
        sum += input[right];
        count += 1;
        right += 1;
    }
    for _ in 0..(window + 1 - half) {
        sum += input[right];
        count += 1;
        out[o] = sum / count as f32;
        right += 1;
        o += 1;
    }
    for _ in 0..n.saturating_sub(window) {
        sum += input[right];
        sum -= input[left];
        out[o] = sum / count as f32;
        left += 1;
        right += 1;
        o += 1;
    }
    for _ in 0..half - 1 {
        sum -= input[left];
        count -= 1;
        out[o] = sum / count as f32;
        left += 1;
        o += 1;
    }
}

fn box_rows(input: &[f32], out: &mut [f32], w: usize, window: usize) {
    for (src, dst) in input.chunks_exact(w).zip(out.chunks_exact_mut(w)) {
        box_1d(src, dst, window);
    }
}

/// The column pass, done a row at a time for every column at once: each column sees the
/// same sequence of float operations as `box_1d`, but memory is read in order.
fn box_cols(input: &[f32], out: &mut [f32], w: usize, h: usize, window: usize) {
    let half = (window + 2) / 2;
    let mut sum = vec![0f32; w];
    let row = |i: usize| &input[i * w..(i + 1) * w];
    let add = |sum: &mut [f32], r: &[f32]| sum.iter_mut().zip(r).for_each(|(s, &x)| *s += x);
    let (mut left, mut right, mut o, mut count) = (0usize, 0usize, 0usize, 0usize);
    let write = |out: &mut [f32], o: usize, sum: &[f32], count: usize| {
        let c = count as f32;
        out[o * w..(o + 1) * w].iter_mut().zip(sum).for_each(|(d, &s)| *d = s / c);
    };
    for _ in 0..half - 1 {
        add(&mut sum, row(right));
        count += 1;
        right += 1;
    }
    for _ in 0..(window + 1 - half) {
        add(&mut sum, row(right));
        count += 1;
        write(out, o, &sum, count);
        right += 1;
        o += 1;
    }
    for _ in 0..h.saturating_sub(window) {
        let (r, l) = (row(right), row(left));
        sum.iter_mut().zip(r).zip(l).for_each(|((s, &x), &y)| {
            *s += x;
            *s -= y;
        });
        write(out, o, &sum, count);
        left += 1;
        right += 1;
        o += 1;
    }
    for _ in 0..half - 1 {
        sum.iter_mut().zip(row(left)).for_each(|(s, &y)| *s -= y);
        count -= 1;
        write(out, o, &sum, count);
        left += 1;
        o += 1;
    }
}

/// PDQ's quality: the sum of quantised vertical and horizontal gradients, scaled to 0-100.
fn quality(a: &[f32]) -> u8 {
    let step = |u: f32, v: f32| (((u - v) * 100.0) / 255.0) as i32;
    let mut sum = 0i32;
    for i in 0..63 {
        for j in 0..64 {
            sum += step(a[i * 64 + j], a[(i + 1) * 64 + j]).abs();
        }
    }
    for i in 0..64 {
        for j in 0..63 {
            sum += step(a[i * 64 + j], a[i * 64 + j + 1]).abs();
        }
    }
    (sum / 90).min(100) as u8
}

/// Rows 1-16 of the 64-point DCT-II basis, rounded to float as the reference does.
fn dct_matrix() -> &'static [[f32; 64]; 16] {
    static D: std::sync::OnceLock<[[f32; 64]; 16]> = std::sync::OnceLock::new();
    D.get_or_init(|| {
        // The scale is a float, the product is taken in double, as in the reference.
        let scale = f64::from((2.0f64 / 64.0).sqrt() as f32);
        std::array::from_fn(|i| {
            std::array::from_fn(|j| {
                (scale * ((std::f64::consts::PI / 2.0 / 64.0) * (i as f64 + 1.0) * (2.0 * j as f64 + 1.0)).cos()) as f32
            })
        })
    })
}

/// B = D A Dᵀ for the 16 lowest non-DC frequencies, summed in the reference's order.
fn dct64_to_16(a: &[f32]) -> [[f32; 16]; 16] {
    let d = dct_matrix();
    let mut t = [[0f32; 64]; 16];
    for (i, drow) in d.iter().enumerate() {
        // Accumulate over k for all 64 columns j at once (same per-element order: k ascending).
        let ti = &mut t[i];
        for (k, &dk) in drow.iter().enumerate() {
            let arow = &a[k * 64..(k + 1) * 64];
            ti.iter_mut().zip(arow).for_each(|(s, &x)| *s += dk * x);
        }
    }
    let mut b = [[0f32; 16]; 16];
    for i in 0..16 {
        for j in 0..16 {
            b[i][j] = t[i].iter().zip(&d[j]).fold(0f32, |s, (&x, &y)| s + x * y);
        }
    }
    b
}

/// One bit per coefficient: set where it exceeds the (lower) median of the 256.
fn bits(b: &[[f32; 16]; 16]) -> PdqHash {
    let mut sorted: Vec<f32> = b.iter().flatten().copied().collect();
    // The reference's Torben median of 256 values is the 128th smallest.
    let (_, median, _) = sorted.select_nth_unstable_by(127, |x, y| x.total_cmp(y));
    let median = *median;
    let mut h = PdqHash::default();
    for (k, &v) in b.iter().flatten().enumerate() {
        if v > median {
            h.set_bit(k);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_word_order() {
        let mut h = PdqHash::default();
        h.set_bit(0);
        h.set_bit(255);
        let s = h.to_string();
        assert_eq!(s, format!("8000{}0001", "0".repeat(56)));
        assert_eq!(PdqHash::from_hex(&s).unwrap(), h);
        assert!(PdqHash::from_hex("xyz").is_err());
        assert!(PdqHash::from_hex(&"g".repeat(64)).is_err());
    }

    #[test]
    fn distance_counts_bits() {
        let a = PdqHash([0xFFFF; 16]);
        let mut b = a;
        b.0[3] = 0x00FF;
        assert_eq!(a.distance(&b), 8);
        assert_eq!(a.distance(&PdqHash::default()), 256);
    }

    #[test]
    fn box_filter_matches_the_worked_example() {
        // The reference's comment: window 7 over 0..16 gives these sums (divided by the counts).
        let input: Vec<f32> = (0..16).map(|x| x as f32).collect();
        let mut out = vec![0f32; 16];
        box_1d(&input, &mut out, 7);
        let sums = [6, 10, 15, 21, 28, 35, 42, 49, 56, 63, 70, 77, 84, 75, 65, 54];
        let counts = [4, 5, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 5, 4];
        for i in 0..16 {
            assert_eq!(out[i], sums[i] as f32 / counts[i] as f32, "at {i}");
        }
    }

    #[test]
    fn column_pass_equals_box_1d_per_column() {
        let (w, h) = (7, 23);
        let a: Vec<f32> = (0..w * h).map(|i| ((i * 37) % 101) as f32 * 0.7).collect();
        let mut out = vec![0f32; w * h];
        box_cols(&a, &mut out, w, h, 3);
        for j in 0..w {
            let col: Vec<f32> = (0..h).map(|i| a[i * w + j]).collect();
            let mut expect = vec![0f32; h];
            box_1d(&col, &mut expect, 3);
            for i in 0..h {
                assert_eq!(out[i * w + j].to_bits(), expect[i].to_bits());
            }
        }
    }

    #[test]
    fn tiny_and_flat_images() {
        let tiny = hash(&RgbImage::new(4, 100));
        assert_eq!((tiny.hash, tiny.quality), (PdqHash::default(), 0));
        let flat = hash(&RgbImage::from_pixel(300, 200, image::Rgb([90, 120, 200])));
        assert_eq!(flat.quality, 0);
        assert!(!flat.trusted());
    }

    #[test]
    fn dihedral_variants_match_hashing_the_transformed_image() {
        // Smooth, asymmetric content, so that the cell-centre sampling barely matters.
        let img = RgbImage::from_fn(256, 192, |x, y| {
            let (u, v) = (x as f32 / 256.0, y as f32 / 192.0);
            let l = 128.0 + 60.0 * (5.0 * u + 2.0 * v * v).sin() + 50.0 * (7.0 * v * u + 3.0 * v).cos() + 30.0 * (11.0 * u).sin();
            let l = l.clamp(0.0, 255.0) as u8;
            image::Rgb([l, l, l])
        });
        let d = hash_dihedral(&img);
        let im = image::DynamicImage::ImageRgb8(img.clone());
        // PDQ names rotations counter-clockwise; `image` rotates clockwise.
        let cases = [
            ("rotate90", d.rotate90, im.rotate270()),
            ("rotate180", d.rotate180, im.rotate180()),
            ("rotate270", d.rotate270, im.rotate90()),
            ("flipx", d.flip_x, im.flipv()),
            ("flipy", d.flip_y, im.fliph()),
            ("flipplus1", d.flip_plus1, im.rotate90().fliph()),
            ("flipminus1", d.flip_minus1, im.rotate270().fliph()),
        ];
        for (name, variant, transformed) in cases {
            let direct = hash(&transformed.to_rgb8()).hash;
            // Not identical: the reference's sampling is not symmetric under flips. Close
            // enough to match, which is what the variants are for.
            assert!(variant.distance(&direct) <= MATCH_DISTANCE, "{name}: {}", variant.distance(&direct));
            assert!(d.original.distance(&direct) > 64, "{name} differs from the original");
        }
        assert_eq!(d.original, hash(&img).hash);
    }
}
