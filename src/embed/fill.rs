//! Erased regions: filling masked pixels before the network sees them, and finding regions
//! that a censor already painted out in solid colour.
//!
//! Works on pixels only; knows nothing of models, masks files or the catalog.

use image::{GrayImage, RgbImage};
use serde::{Deserialize, Serialize};

/// How masked pixels are filled before the network sees the photo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Fill {
    /// Left as they are (feature-map models still drop the masked cells).
    None,
    /// The mean colour of the unmasked pixels (best on listings-dev masked queries, README).
    #[default]
    Mean,
    /// Diffused from the surrounding pixels (push-pull over an image pyramid).
    Diffuse,
    /// Patches of the surroundings mirrored in, row by row: texture, not a smear.
    Patch,
}

impl std::str::FromStr for Fill {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(Fill::None),
            "mean" => Ok(Fill::Mean),
            "diffuse" => Ok(Fill::Diffuse),
            "patch" => Ok(Fill::Patch),
            _ => Err(format!("unknown fill '{s}' (use none, mean, diffuse or patch)")),
        }
    }
}

/// Overwrites the pixels where `masked` is true (row-major, one flag per pixel).
pub fn fill(rgb: &mut RgbImage, masked: &[bool], how: Fill) {
    debug_assert_eq!(masked.len(), (rgb.width() * rgb.height()) as usize);
    match how {
        Fill::None => {}
        Fill::Mean => {
            let (mut sum, mut n) = ([0f64; 3], 0f64);
            for (px, _) in rgb.pixels().zip(masked).filter(|(_, &m)| !m) {
                (0..3).for_each(|c| sum[c] += f64::from(px[c]));
                n += 1.0;
            }
            if n == 0.0 {
                return;
            }
            let mean = image::Rgb(sum.map(|s| (s / n).round() as u8));
            for (px, _) in rgb.pixels_mut().zip(masked).filter(|(_, &m)| m) {
                *px = mean;
            }
        }
        Fill::Diffuse => diffuse(rgb, masked),
        Fill::Patch => mirror_rows(rgb, masked),
    }
}

/// Fills each masked run of a row with the unmasked pixels beside it, mirrored: its left
/// half from the left, its right half from the right (one side alone at the photo's edge).
/// Rows that are masked from edge to edge are filled afterwards from the row above or below.
fn mirror_rows(rgb: &mut RgbImage, masked: &[bool]) {
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let mut filled_rows = vec![false; h];
    for y in 0..h {
        let row = &masked[y * w..(y + 1) * w];
        if row.iter().all(|&m| m) {
            continue;
        }
        filled_rows[y] = true;
        let mut x = 0;
        while x < w {
            if !row[x] {
                x += 1;
                continue;
            }
            let start = x;
            while x < w && row[x] {
                x += 1;
            }
            let end = x; // masked run [start, end)
            for i in start..end {
                let from_left = start > 0 && (end == w || i - start < (end - start).div_ceil(2));
                // Mirror across the run's edge, staying inside the row and on known pixels.
                let src =
                    if from_left { start.saturating_sub(1 + (i - start) % start) } else { (end + (end - 1 - i) % (w - end)).min(w - 1) };
                let p = *rgb.get_pixel(src as u32, y as u32);
                rgb.put_pixel(i as u32, y as u32, p);
            }
        }
    }
    // Fully masked rows: copy the nearest filled row.
    for y in 0..h {
        if filled_rows[y] {
            continue;
        }
        let near = (1..h).flat_map(|d| [y.checked_sub(d), (y + d < h).then_some(y + d)]).flatten().find(|&r| filled_rows[r]);
        if let Some(r) = near {
            for x in 0..w as u32 {
                let p = *rgb.get_pixel(x, r as u32);
                rgb.put_pixel(x, y as u32, p);
            }
        }
    }
}

/// One level of the push-pull pyramid: per block, the colour sum and count of known pixels.
struct Level {
    width: usize,
    height: usize,
    sums: Vec<[f32; 3]>,
    known: Vec<f32>,
}

impl Level {
    /// The next coarser level: 2x2 blocks summed.
    fn coarser(&self) -> Level {
        let (width, height) = (self.width.div_ceil(2), self.height.div_ceil(2));
        let mut sums = vec![[0f32; 3]; width * height];
        let mut known = vec![0f32; width * height];
        for y in 0..self.height {
            for x in 0..self.width {
                let (i, j) = (y * self.width + x, (y / 2) * width + x / 2);
                (0..3).for_each(|c| sums[j][c] += self.sums[i][c]);
                known[j] += self.known[i];
            }
        }
        Level { width, height, sums, known }
    }
}

/// Push-pull fill: averages the known pixels over a pyramid of 2x2 blocks, then fills each
/// unknown pixel from the finest level that has known pixels around it.
fn diffuse(rgb: &mut RgbImage, masked: &[bool]) {
    let sums = rgb.pixels().zip(masked).map(|(p, &m)| if m { [0.0; 3] } else { p.0.map(f32::from) }).collect();
    let known = masked.iter().map(|&m| if m { 0.0 } else { 1.0 }).collect();
    let mut levels = vec![Level { width: rgb.width() as usize, height: rgb.height() as usize, sums, known }];
    while let Some(last) = levels.last().filter(|l| l.width > 1 || l.height > 1) {
        levels.push(last.coarser());
    }
    // Pull: from the coarsest level down, a block with known pixels keeps their mean,
    // one without takes its parent's estimate.
    let mut est: Vec<[f32; 3]> = Vec::new();
    let mut est_width = 0;
    for level in levels.iter().rev() {
        let w = level.width;
        est = (0..w * level.height)
            .map(|i| match level.known[i] {
                k if k > 0.0 => level.sums[i].map(|v| v / k),
                _ if est.is_empty() => [0.0; 3],
                _ => est[(i / w / 2) * est_width + (i % w) / 2],
            })
            .collect();
        est_width = w;
    }
    for ((px, &m), e) in rgb.pixels_mut().zip(masked).zip(&est) {
        if m {
            *px = image::Rgb(e.map(|v| v.round().clamp(0.0, 255.0) as u8));
        }
    }
}

/// Grows the true pixels of a row-major `width`-wide mask by `steps` pixels (4-neighbours).
pub fn grow(mask: &mut [bool], width: usize, steps: usize) {
    let height = mask.len() / width.max(1);
    for _ in 0..steps {
        let prev = mask.to_vec();
        for (i, m) in mask.iter_mut().enumerate() {
            let (x, y) = (i % width, i / width);
            if !prev[i]
                && ((x > 0 && prev[i - 1])
                    || (x + 1 < width && prev[i + 1])
                    || (y > 0 && prev[i - width])
                    || (y + 1 < height && prev[i + width]))
            {
                *m = true;
            }
        }
    }
}

/// Smallest painted region worth masking, as a fraction of the photo: censors cover a
/// person, and smaller solid patches in real rooms (a black screen, a sign) are common.
pub const MIN_ERASED_AREA: f32 = 0.03;

/// Largest region taken for paint: a photo mostly of one flat colour (a blank wall, a
/// placeholder image) is not a censored person, and masking it would leave nothing to match.
pub const MAX_ERASED_AREA: f32 = 0.6;

/// A pixel is flat when every channel varies by at most this much over its 3x3 neighbours.
const FLAT_RANGE: i16 = 2;

/// A flat region is paint when at least this fraction of its pixels lie within
/// `PAINT_TOLERANCE` of its median colour: walls and skies drift, paint does not.
const PAINT_FRACTION: f32 = 0.9;
const PAINT_TOLERANCE: i16 = 3;

/// Finds regions painted out in one solid colour (the usual way a victim is erased before a
/// photo is shared). Returns the mask at the photo's size (255 = erased) and the fraction of
/// the photo it covers, or `None` when nothing looks painted. Blown-out white (a window
/// against the sky) is never taken for paint.
pub fn find_erased(rgb: &RgbImage) -> Option<(GrayImage, f32)> {
    // Work at about 400 pixels on the short side: enough for a person-sized region.
    let (fw, fh) = rgb.dimensions();
    let scale = (400.0 / f64::from(fw.min(fh))).min(1.0);
    let small;
    let img = if scale < 1.0 {
        small = image::imageops::resize(
            rgb,
            ((f64::from(fw) * scale).round() as u32).max(1),
            ((f64::from(fh) * scale).round() as u32).max(1),
            image::imageops::FilterType::Triangle,
        );
        &small
    } else {
        rgb
    };
    let (w, h) = (img.width() as usize, img.height() as usize);
    let px = |x: usize, y: usize| img.get_pixel(x as u32, y as u32).0.map(i16::from);
    let flat: Vec<bool> = (0..w * h)
        .map(|i| {
            let (x, y) = (i % w, i / w);
            let (mut lo, mut hi) = ([i16::MAX; 3], [i16::MIN; 3]);
            for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                    let p = px(nx, ny);
                    (0..3).for_each(|c| {
                        lo[c] = lo[c].min(p[c]);
                        hi[c] = hi[c].max(p[c]);
                    });
                }
            }
            (0..3).all(|c| hi[c] - lo[c] <= FLAT_RANGE)
        })
        .collect();
    // Connected flat regions (4-neighbours), each judged on its own.
    let mut label = vec![u32::MAX; w * h];
    let mut erased = vec![false; w * h];
    let mut found = false;
    let mut stack = Vec::new();
    for start in 0..w * h {
        if !flat[start] || label[start] != u32::MAX {
            continue;
        }
        let mut members = Vec::new();
        label[start] = start as u32;
        stack.push(start);
        while let Some(i) = stack.pop() {
            members.push(i);
            let (x, y) = (i % w, i / w);
            let neighbours = [(x > 0).then(|| i - 1), (x + 1 < w).then(|| i + 1), (y > 0).then(|| i - w), (y + 1 < h).then(|| i + w)];
            for j in neighbours.into_iter().flatten() {
                if flat[j] && label[j] == u32::MAX {
                    label[j] = start as u32;
                    stack.push(j);
                }
            }
        }
        let share = members.len() as f32 / (w * h) as f32;
        if !(MIN_ERASED_AREA..=MAX_ERASED_AREA).contains(&share) {
            continue;
        }
        let median: [i16; 3] = [0, 1, 2].map(|c| {
            let mut v: Vec<i16> = members.iter().map(|&i| px(i % w, i / w)[c]).collect();
            let mid = v.len() / 2;
            *v.select_nth_unstable(mid).1
        });
        if median.iter().all(|&c| c >= 250) {
            continue; // clipped highlights
        }
        let close = members.iter().filter(|&&i| (0..3).all(|c| (px(i % w, i / w)[c] - median[c]).abs() <= PAINT_TOLERANCE)).count();
        if (close as f32) < PAINT_FRACTION * members.len() as f32 {
            continue;
        }
        members.iter().for_each(|&i| erased[i] = true);
        found = true;
    }
    if !found {
        return None;
    }
    // The painted edge is soft (anti-aliasing, JPEG ringing): grow the region by 2 pixels.
    let mut grown = erased;
    grow(&mut grown, w, 2);
    let area = grown.iter().filter(|&&m| m).count() as f32 / (w * h) as f32;
    if area > MAX_ERASED_AREA {
        return None;
    }
    let mask = GrayImage::from_fn(w as u32, h as u32, |x, y| image::Luma([if grown[y as usize * w + x as usize] { 255 } else { 0 }]));
    Some((mask, area))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A textured "room": smooth gradients plus per-pixel noise, as a camera makes.
    fn room(w: u32, h: u32) -> RgbImage {
        let mut state = 12345u32;
        RgbImage::from_fn(w, h, |x, y| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let n = ((state >> 16) % 9) as i32 - 4;
            let v = |base: i32| (base + n).clamp(0, 255) as u8;
            image::Rgb([v(120 + (x * 60 / w) as i32), v(100 + (y * 80 / h) as i32), v(90 + ((x + y) * 30 / (w + h)) as i32)])
        })
    }

    #[test]
    fn a_painted_rectangle_is_found_and_a_plain_photo_left_alone() {
        let plain = room(640, 480);
        assert!(find_erased(&plain).is_none());
        let mut painted = plain.clone();
        for y in 100..400 {
            for x in 200..360 {
                painted.put_pixel(x, y, image::Rgb([220, 20, 20]));
            }
        }
        let (mask, area) = find_erased(&painted).expect("the painted rectangle");
        let truth = (160.0 * 300.0) / (640.0 * 480.0);
        assert!((area - truth).abs() < 0.03, "area {area} vs {truth}");
        // Inside the rectangle is masked, well outside is not (mask is at 400 px on the short side).
        let s = mask.height() as f32 / 480.0;
        let at = |x: f32, y: f32| mask.get_pixel((x * s) as u32, (y * s) as u32)[0];
        assert_eq!((at(280.0, 250.0), at(50.0, 50.0), at(600.0, 450.0)), (255, 0, 0));
    }

    #[test]
    fn a_photo_of_one_flat_colour_is_not_taken_for_paint() {
        assert!(find_erased(&RgbImage::from_pixel(1, 1, image::Rgb([9, 9, 9]))).is_none());
        assert!(find_erased(&RgbImage::from_pixel(300, 200, image::Rgb([120, 30, 30]))).is_none());
    }

    #[test]
    fn blown_out_white_is_not_paint() {
        let mut img = room(400, 400);
        for y in 0..200 {
            for x in 0..200 {
                img.put_pixel(x, y, image::Rgb([255, 255, 255]));
            }
        }
        assert!(find_erased(&img).is_none());
    }

    #[test]
    fn fills_leave_known_pixels_and_cover_masked_ones() {
        let mut img = RgbImage::from_fn(8, 4, |x, _| if x < 4 { image::Rgb([200, 0, 0]) } else { image::Rgb([0, 0, 200]) });
        let masked: Vec<bool> = (0..32).map(|i| (i % 8) == 3 || (i % 8) == 4).collect();
        let mut mean = img.clone();
        fill(&mut mean, &masked, Fill::Mean);
        assert_eq!(mean.get_pixel(3, 0).0, [100, 0, 100]);
        assert_eq!(mean.get_pixel(0, 0).0, [200, 0, 0]);
        let mut patched = img.clone();
        fill(&mut patched, &masked, Fill::Patch);
        // Mirrored: column 3 takes column 2 (left side), column 4 takes column 5 (right side).
        assert_eq!((patched.get_pixel(3, 2).0, patched.get_pixel(4, 2).0), ([200, 0, 0], [0, 0, 200]));
        fill(&mut img, &masked, Fill::Diffuse);
        // Diffusion takes the colour of the nearest known side.
        assert_eq!(img.get_pixel(0, 1).0, [200, 0, 0]);
        assert!(img.get_pixel(3, 1)[0] >= 100 && img.get_pixel(4, 1)[2] >= 100, "{:?} {:?}", img.get_pixel(3, 1), img.get_pixel(4, 1));
    }
}
