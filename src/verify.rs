//! Geometric verification: do two photos show the same room, seen from other positions?
//!
//! Keypoints (FAST corners over a three-level pyramid, 256-bit BRIEF descriptors) are
//! matched with Lowe's ratio test, and a fundamental matrix fitted by RANSAC counts the
//! matches consistent with one rigid scene seen by two cameras. A look-alike room of
//! another hotel shares few such matches; the same room shares many. Rooms are upright,
//! so the descriptors are not rotated. Knows nothing of models, catalogs or HTTP.

use crate::digest::hamming256 as hamming;
use image::{GrayImage, RgbImage};
use nalgebra::{Matrix3, SMatrix, Vector3};

/// Photos are verified at this many pixels on their long side.
pub const MAX_SIDE: u32 = 640;
/// Pyramid levels, relative to `MAX_SIDE`.
const LEVELS: [f32; 3] = [1.0, std::f32::consts::FRAC_1_SQRT_2, 0.5];
/// Keypoints kept per level, strongest first.
const PER_LEVEL: usize = 500;
/// FAST-9 intensity threshold.
const FAST_THRESHOLD: u8 = 20;
/// Half the side of the BRIEF patch.
const PATCH: i32 = 15;
/// Best match must be this much closer than the second best.
const RATIO: f32 = 0.8;
/// An inlier lies within this many pixels (at `MAX_SIDE`) of its epipolar lines.
const EPIPOLAR_PX: f64 = 3.0;
/// RANSAC draws at most this many samples.
const MAX_ITERATIONS: usize = 400;

/// Keypoints of one photo: positions (at `MAX_SIDE` scale) and binary descriptors.
#[derive(Debug, Clone, Default)]
pub struct Keypoints {
    pub xy: Vec<[f32; 2]>,
    pub descriptors: Vec<[u64; 4]>,
    /// Width and height of the picture the positions are in.
    pub size: [f32; 2],
}

/// The matches two photos share in one consistent geometry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matched {
    /// How many (RANSAC inliers).
    pub inliers: usize,
    /// Up to `MAX_PAIRS` of them, as `[x_a, y_a, x_b, y_b]` in fractions of each photo's
    /// width and height, for drawing the matched regions on both.
    pub pairs: Vec<[f32; 4]>,
}

/// Matched pairs kept for display.
pub const MAX_PAIRS: usize = 60;

/// A deterministic generator (the same test pairs and samples on every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() % (1 << 24)) as f32 / (1 << 24) as f32
    }
}

/// BRIEF's 256 point pairs: Gaussian around the keypoint (σ = patch / 2.5), as in the paper.
fn test_pairs() -> &'static [[i32; 4]; 256] {
    static PAIRS: std::sync::OnceLock<[[i32; 4]; 256]> = std::sync::OnceLock::new();
    PAIRS.get_or_init(|| {
        let mut rng = Lcg(0x5eed);
        let mut gauss = || {
            // Box-Muller.
            let (u, v) = (rng.unit().max(1e-7), rng.unit());
            let g = (-2.0 * u.ln()).sqrt() * (2.0 * std::f32::consts::PI * v).cos() * PATCH as f32 / 2.5;
            (g.round() as i32).clamp(-PATCH, PATCH)
        };
        std::array::from_fn(|_| [gauss(), gauss(), gauss(), gauss()])
    })
}

/// Keypoints of a photo; those under `masked` (a mask picture of the photo's aspect
/// ratio, light = masked) are left out.
pub fn keypoints(rgb: &RgbImage, masked: Option<&GrayImage>) -> Keypoints {
    let (w, h) = rgb.dimensions();
    let scale = (MAX_SIDE as f32 / w.max(h) as f32).min(1.0);
    let (bw, bh) = (((w as f32 * scale).round() as u32).max(1), ((h as f32 * scale).round() as u32).max(1));
    let grey = image::imageops::grayscale(rgb);
    let base = if (bw, bh) == (w, h) { grey } else { image::imageops::resize(&grey, bw, bh, image::imageops::FilterType::Triangle) };
    let is_masked = |x: f32, y: f32| {
        masked.is_some_and(|m| {
            let (mx, my) = ((x / bw as f32 * m.width() as f32) as u32, (y / bh as f32 * m.height() as f32) as u32);
            m.get_pixel(mx.min(m.width() - 1), my.min(m.height() - 1))[0] >= 128
        })
    };
    let mut out = Keypoints { size: [bw as f32, bh as f32], ..Default::default() };
    for &level in &LEVELS {
        let (lw, lh) = (((bw as f32 * level).round() as u32).max(1), ((bh as f32 * level).round() as u32).max(1));
        if lw <= 2 * PATCH as u32 + 2 || lh <= 2 * PATCH as u32 + 2 {
            continue;
        }
        let img = if level == 1.0 { base.clone() } else { image::imageops::resize(&base, lw, lh, image::imageops::FilterType::Triangle) };
        let smooth = imageproc::filter::gaussian_blur_f32(&img, 2.0);
        let mut corners: Vec<_> = imageproc::corners::corners_fast9(&img, FAST_THRESHOLD)
            .into_iter()
            .filter(|c| {
                (c.x as i32) > PATCH && (c.y as i32) > PATCH && (c.x as i32) < lw as i32 - PATCH - 1 && (c.y as i32) < lh as i32 - PATCH - 1
            })
            .collect();
        corners.sort_by(|a, b| b.score.total_cmp(&a.score));
        // One keypoint per 4x4 block: clusters of corners describe the same spot.
        let mut taken = std::collections::HashSet::new();
        let mut kept = 0;
        for c in corners {
            if kept == PER_LEVEL {
                break;
            }
            let (x, y) = (c.x as f32 / level, c.y as f32 / level);
            // A descriptor whose patch reaches into the mask describes the mask's edge.
            let r = PATCH as f32 / level;
            let touches_mask = [(0.0, 0.0), (-r, -r), (r, -r), (-r, r), (r, r)].iter().any(|&(dx, dy)| is_masked(x + dx, y + dy));
            if touches_mask || !taken.insert((c.x / 4, c.y / 4)) {
                continue;
            }
            let at = |dx: i32, dy: i32| smooth.get_pixel((c.x as i32 + dx) as u32, (c.y as i32 + dy) as u32)[0];
            let mut d = [0u64; 4];
            for (i, p) in test_pairs().iter().enumerate() {
                if at(p[0], p[1]) < at(p[2], p[3]) {
                    d[i / 64] |= 1 << (i % 64);
                }
            }
            out.xy.push([x, y]);
            out.descriptors.push(d);
            kept += 1;
        }
    }
    out
}

/// Matches from `a` to `b` that pass the ratio test: (index in a, index in b).
fn matches(a: &Keypoints, b: &Keypoints) -> Vec<(usize, usize)> {
    if b.descriptors.len() < 2 {
        return Vec::new();
    }
    a.descriptors
        .iter()
        .enumerate()
        .filter_map(|(i, da)| {
            let (mut best, mut second, mut at) = (u32::MAX, u32::MAX, 0);
            for (j, db) in b.descriptors.iter().enumerate() {
                let d = hamming(da, db);
                if d < best {
                    (second, best, at) = (best, d, j);
                } else if d < second {
                    second = d;
                }
            }
            ((best as f32) < RATIO * second as f32).then_some((i, at))
        })
        .collect()
}

/// Hartley normalisation: centroid to the origin, mean distance √2.
fn normaliser(points: &[[f64; 2]]) -> Matrix3<f64> {
    let n = points.len() as f64;
    let (cx, cy) = points.iter().fold((0.0, 0.0), |(x, y), p| (x + p[0] / n, y + p[1] / n));
    let mean = points.iter().map(|p| ((p[0] - cx).powi(2) + (p[1] - cy).powi(2)).sqrt()).sum::<f64>() / n;
    let s = if mean > 0.0 { std::f64::consts::SQRT_2 / mean } else { 1.0 };
    Matrix3::new(s, 0.0, -s * cx, 0.0, s, -s * cy, 0.0, 0.0, 1.0)
}

/// The fundamental matrix through eight (or more) correspondences (normalised 8-point).
fn fundamental(a: &[[f64; 2]], b: &[[f64; 2]]) -> Option<Matrix3<f64>> {
    let (ta, tb) = (normaliser(a), normaliser(b));
    let mut ata = SMatrix::<f64, 9, 9>::zeros();
    for (p, q) in a.iter().zip(b) {
        let x = ta * Vector3::new(p[0], p[1], 1.0);
        let y = tb * Vector3::new(q[0], q[1], 1.0);
        let row = SMatrix::<f64, 1, 9>::from_row_slice(&[y.x * x.x, y.x * x.y, y.x, y.y * x.x, y.y * x.y, y.y, x.x, x.y, 1.0]);
        ata += row.transpose() * row;
    }
    let eig = ata.symmetric_eigen();
    let smallest = eig.eigenvalues.imin();
    let f = eig.eigenvectors.column(smallest);
    let f = Matrix3::new(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]);
    // A fundamental matrix has rank 2.
    let mut svd = f.svd(true, true);
    svd.singular_values[2] = 0.0;
    let f = svd.recompose().ok()?;
    Some(tb.transpose() * f * ta)
}

/// Distance (pixels) of a correspondence from its two epipolar lines, the larger.
fn epipolar_error(f: &Matrix3<f64>, p: &[f64; 2], q: &[f64; 2]) -> f64 {
    let (x, y) = (Vector3::new(p[0], p[1], 1.0), Vector3::new(q[0], q[1], 1.0));
    let (l, m) = (f * x, f.transpose() * y);
    let e = y.dot(&l).abs();
    (e / (l.x * l.x + l.y * l.y).sqrt().max(1e-12)).max(e / (m.x * m.x + m.y * m.y).sqrt().max(1e-12))
}

/// The matches two photos share consistent with one scene seen by two cameras.
pub fn matched(a: &Keypoints, b: &Keypoints) -> Matched {
    let m = matches(a, b);
    if m.len() < 8 {
        return Matched::default();
    }
    let pa: Vec<[f64; 2]> = m.iter().map(|&(i, _)| a.xy[i].map(f64::from)).collect();
    let pb: Vec<[f64; 2]> = m.iter().map(|&(_, j)| b.xy[j].map(f64::from)).collect();
    let mut rng = Lcg(m.len() as u64);
    let (mut best, mut best_f, mut iterations, mut i) = (0, None, MAX_ITERATIONS, 0);
    while i < iterations {
        i += 1;
        let mut sample = Vec::with_capacity(8);
        while sample.len() < 8 {
            let k = (rng.next() % m.len() as u64) as usize;
            if !sample.contains(&k) {
                sample.push(k);
            }
        }
        let (sa, sb): (Vec<_>, Vec<_>) = sample.iter().map(|&k| (pa[k], pb[k])).unzip();
        let Some(f) = fundamental(&sa, &sb) else { continue };
        let count = pa.iter().zip(&pb).filter(|(p, q)| epipolar_error(&f, p, q) <= EPIPOLAR_PX).count();
        if count > best {
            best = count;
            best_f = Some(f);
            // Enough samples to draw one all-inlier sample with 99 % confidence.
            let w = (best as f64 / m.len() as f64).powi(8);
            if w > 0.0 {
                iterations = iterations.min(((0.01f64).ln() / (1.0 - w).max(1e-12).ln()).ceil().max(1.0) as usize);
            }
        }
    }
    let Some(f) = best_f else { return Matched::default() };
    let norm = |p: [f64; 2], size: [f32; 2]| [p[0] as f32 / size[0].max(1.0), p[1] as f32 / size[1].max(1.0)];
    let pairs = pa
        .iter()
        .zip(&pb)
        .filter(|(p, q)| epipolar_error(&f, p, q) <= EPIPOLAR_PX)
        .take(MAX_PAIRS)
        .map(|(p, q)| {
            let (x, y) = (norm(*p, a.size), norm(*q, b.size));
            [x[0], x[1], y[0], y[1]]
        })
        .collect();
    Matched { inliers: best, pairs }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A textured scene: random blobs of grey on a gradient.
    fn scene(w: u32, h: u32, seed: u64) -> RgbImage {
        let mut rng = Lcg(seed);
        let blobs: Vec<(f32, f32, f32, u8)> =
            (0..400).map(|_| (rng.unit() * w as f32, rng.unit() * h as f32, 3.0 + rng.unit() * 12.0, (rng.next() % 256) as u8)).collect();
        RgbImage::from_fn(w, h, |x, y| {
            let mut v = ((x + y) % 256) as u8 / 2;
            for &(bx, by, r, c) in &blobs {
                if (x as f32 - bx).powi(2) + (y as f32 - by).powi(2) < r * r {
                    v = c;
                }
            }
            image::Rgb([v, v, v])
        })
    }

    #[test]
    fn the_same_scene_shifted_has_many_inliers_another_scene_few() {
        let big = scene(900, 700, 7);
        let a = image::imageops::crop_imm(&big, 0, 0, 800, 600).to_image();
        let b = image::imageops::crop_imm(&big, 60, 40, 800, 600).to_image();
        let other = scene(800, 600, 99);
        let (ka, kb, ko) = (keypoints(&a, None), keypoints(&b, None), keypoints(&other, None));
        assert!(ka.xy.len() > 200, "{} keypoints", ka.xy.len());
        let same = matched(&ka, &kb).inliers;
        let different = matched(&ka, &ko).inliers;
        assert!(same >= 50 && different <= 15, "same {same}, different {different}");
        // The matched pairs say where: b is a shifted by (60, 40) pixels of 800 x 600.
        let m = matched(&ka, &kb);
        assert_eq!((m.inliers, m.pairs.len()), (same, same.min(MAX_PAIRS)));
        let off: Vec<(f32, f32)> = m.pairs.iter().map(|p| ((p[0] - p[2]) * 800.0, (p[1] - p[3]) * 600.0)).collect();
        let near = off.iter().filter(|(dx, dy)| (dx - 60.0).abs() < 4.0 && (dy - 40.0).abs() < 4.0).count();
        assert!(near * 10 >= off.len() * 9, "{near} of {} pairs at the shift: {off:?}", off.len());
    }

    #[test]
    fn masked_keypoints_are_left_out() {
        let img = scene(800, 600, 3);
        let mut mask = GrayImage::new(80, 60);
        for y in 0..60 {
            for x in 0..40 {
                mask.put_pixel(x, y, image::Luma([255]));
            }
        }
        let k = keypoints(&img, Some(&mask));
        let scale = MAX_SIDE as f32 / 800.0;
        assert!(!k.xy.is_empty() && k.xy.iter().all(|p| p[0] >= 400.0 * scale - 1.0), "a keypoint in the masked half");
    }
}
