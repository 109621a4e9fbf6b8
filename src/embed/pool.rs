//! Pooling: a feature map (and an optional mask) to one L2-normalised vector.

use image::GrayImage;
use serde::{Deserialize, Serialize};

/// Why pooling could not produce a vector.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The mask leaves no feature-map cell to pool.
    #[error("the mask covers the whole image: nothing is left to match (mask less of it)")]
    MaskCoversEverything,
    /// The mask image does not have the photo's shape.
    #[error("the mask is {mask_w}x{mask_h} but the photo is {image_w}x{image_h}: it must have the same aspect ratio")]
    MaskShape { mask_w: u32, mask_h: u32, image_w: u32, image_h: u32 },
    /// A rectangle is empty or outside the photo.
    #[error("mask rectangle {0:?} is empty or outside the photo")]
    BadRect([u32; 4]),
    /// Unknown pooling name.
    #[error("unknown pooling '{0}' (use gap, gem or multiscale)")]
    UnknownPooling(String),
}

/// How the feature map is reduced to a vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Global average pooling (the default: best hotel@1 on indoor-dev, see README).
    #[default]
    Gap,
    /// Generalised mean pooling with exponent `gem_p` (Radenović et al.).
    Gem,
    /// GeM at three input scales (1/√2, 1, √2), averaged.
    Multiscale,
}

impl std::str::FromStr for Pooling {
    type Err = PoolError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "gap" | "avg" | "mean" => Ok(Pooling::Gap),
            "gem" => Ok(Pooling::Gem),
            "multiscale" | "ms" => Ok(Pooling::Multiscale),
            _ => Err(PoolError::UnknownPooling(s.into())),
        }
    }
}

impl std::fmt::Display for Pooling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pooling::Gap => "gap",
            Pooling::Gem => "gem",
            Pooling::Multiscale => "multiscale",
        })
    }
}

/// One image's feature map, cell-major: `data[(y * width + x) * channels + c]`.
#[derive(Debug, Clone)]
pub struct FeatureMap {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: Vec<f32>,
}

impl FeatureMap {
    /// The feature vector of cell (x, y).
    pub fn cell(&self, x: usize, y: usize) -> &[f32] {
        let i = (y * self.width + x) * self.channels;
        &self.data[i..i + self.channels]
    }
}

/// Parts of a photo to leave out of matching, in the upright full-resolution photo's pixels.
#[derive(Debug, Clone)]
pub enum Mask {
    /// A picture of the mask: non-black pixels (luma ≥ 128) are masked. Any size with the photo's aspect ratio.
    Bitmap(GrayImage),
    /// Rectangles `[x, y, width, height]`.
    Rects(Vec<[u32; 4]>),
}

/// Cells covered by at least this fraction of masked pixels are left out: the receptive
/// field of a cell is wider than the cell, so even a partly covered cell carries the object.
pub const MASK_CELL_THRESHOLD: f32 = 0.1;

impl Mask {
    /// A mask from an encoded mask picture: light (luma ≥ 128), opaque pixels are masked.
    pub fn from_picture(bytes: &[u8], limits: &crate::media::decode::Limits) -> Result<Mask, crate::media::decode::DecodeError> {
        let d = crate::media::decode::decode(bytes, limits, None)?;
        let grey = image::DynamicImage::ImageRgb8(d.rgb).into_luma8();
        Ok(Mask::Bitmap(GrayImage::from_fn(grey.width(), grey.height(), |x, y| {
            let transparent = d.transparent.as_ref().is_some_and(|t| t.get_pixel(x, y)[0] != 0);
            image::Luma([if !transparent && grey.get_pixel(x, y)[0] >= 128 { 255 } else { 0 }])
        })))
    }

    /// Fraction of each cell of a `cols` x `rows` grid that the mask covers, row-major,
    /// for a photo of `width` x `height` pixels.
    pub fn coverage(&self, width: u32, height: u32, cols: usize, rows: usize) -> Result<Vec<f32>, PoolError> {
        let mut cover = vec![0f32; cols * rows];
        match self {
            Mask::Bitmap(m) => {
                check_shape(m, width, height)?;
                let (mw, mh) = m.dimensions();
                let mut counts = vec![0u32; cols * rows];
                for (x, y, p) in m.enumerate_pixels() {
                    let cx = (x as usize * cols) / mw as usize;
                    let cy = (y as usize * rows) / mh as usize;
                    let i = cy * cols + cx;
                    counts[i] += 1;
                    if p[0] >= 128 {
                        cover[i] += 1.0;
                    }
                }
                for (c, n) in cover.iter_mut().zip(counts) {
                    *c /= n.max(1) as f32;
                }
            }
            Mask::Rects(rects) => {
                for &r in rects {
                    let [x, y, w, h] = r;
                    if w == 0 || h == 0 || x >= width || y >= height {
                        return Err(PoolError::BadRect(r));
                    }
                    // Overlap of the rectangle with each cell, in fractions of the photo.
                    let (x0, x1) =
                        (f64::from(x) / f64::from(width), (f64::from(x) + f64::from(w)).min(f64::from(width)) / f64::from(width));
                    let (y0, y1) =
                        (f64::from(y) / f64::from(height), (f64::from(y) + f64::from(h)).min(f64::from(height)) / f64::from(height));
                    for cy in 0..rows {
                        let (a0, a1) = (cy as f64 / rows as f64, (cy + 1) as f64 / rows as f64);
                        let oy = (y1.min(a1) - y0.max(a0)).max(0.0) * rows as f64;
                        for cx in 0..cols {
                            let (b0, b1) = (cx as f64 / cols as f64, (cx + 1) as f64 / cols as f64);
                            let ox = (x1.min(b1) - x0.max(b0)).max(0.0) * cols as f64;
                            let c = &mut cover[cy * cols + cx];
                            *c = (*c + (ox * oy) as f32).min(1.0);
                        }
                    }
                }
            }
        }
        Ok(cover)
    }

    /// Which pixels of the photo resized to `cols` x `rows` are masked, row-major.
    pub fn pixels(&self, width: u32, height: u32, cols: u32, rows: u32) -> Result<Vec<bool>, PoolError> {
        match self {
            Mask::Bitmap(m) => {
                // Resampled rather than counted: a mask smaller than the input would leave gaps.
                check_shape(m, width, height)?;
                let r = image::imageops::resize(m, cols.max(1), rows.max(1), image::imageops::FilterType::Triangle);
                Ok(r.pixels().map(|p| p[0] >= 128).collect())
            }
            Mask::Rects(_) => Ok(self.coverage(width, height, cols as usize, rows as usize)?.into_iter().map(|c| c >= 0.5).collect()),
        }
    }

    /// `base` (if any) with the rectangles `rects` (`[x, y, width, height]` in the photo's
    /// `width` x `height` pixels) masked as well; `base` unchanged when there are none.
    pub fn with_rects(base: Option<Mask>, rects: &[[u32; 4]], width: u32, height: u32) -> Option<Mask> {
        if rects.is_empty() {
            return base;
        }
        match base {
            None => Some(Mask::Rects(rects.to_vec())),
            Some(Mask::Rects(mut own)) => {
                own.extend_from_slice(rects);
                Some(Mask::Rects(own))
            }
            Some(Mask::Bitmap(mut m)) => {
                // The bitmap may be smaller or larger than the photo: rectangles are scaled to it.
                let (sx, sy) = (m.width() as f32 / width.max(1) as f32, m.height() as f32 / height.max(1) as f32);
                for &[x, y, w, h] in rects {
                    let (x0, y0) = ((x as f32 * sx) as u32, (y as f32 * sy) as u32);
                    let (x1, y1) =
                        ((((x + w) as f32 * sx).ceil() as u32).min(m.width()), (((y + h) as f32 * sy).ceil() as u32).min(m.height()));
                    for py in y0..y1 {
                        for px in x0..x1 {
                            m.put_pixel(px, py, image::Luma([255]));
                        }
                    }
                }
                Some(Mask::Bitmap(m))
            }
        }
    }

    /// Which cells to keep, or an error if none are left.
    pub fn keep(&self, width: u32, height: u32, cols: usize, rows: usize) -> Result<Vec<bool>, PoolError> {
        let keep: Vec<bool> = self.coverage(width, height, cols, rows)?.into_iter().map(|c| c < MASK_CELL_THRESHOLD).collect();
        if keep.iter().any(|&k| k) {
            Ok(keep)
        } else {
            Err(PoolError::MaskCoversEverything)
        }
    }
}

/// A mask picture must have the photo's aspect ratio (within 2 %).
fn check_shape(m: &GrayImage, width: u32, height: u32) -> Result<(), PoolError> {
    let (mw, mh) = m.dimensions();
    let ratio = |a: u32, b: u32| f64::from(a) / f64::from(b.max(1));
    if mw == 0 || mh == 0 || (ratio(mw, mh) / ratio(width, height) - 1.0).abs() > 0.02 {
        return Err(PoolError::MaskShape { mask_w: mw, mask_h: mh, image_w: width, image_h: height });
    }
    Ok(())
}

/// Pools the kept cells of `fm` (all cells if `keep` is `None`); not normalised.
///
/// `p == 1` is average pooling; larger `p` moves GeM towards max pooling.
pub fn gem(fm: &FeatureMap, keep: Option<&[bool]>, p: f32) -> Vec<f32> {
    let mut acc = vec![0f32; fm.channels];
    let mut n = 0usize;
    for (i, cell) in fm.data.chunks_exact(fm.channels).enumerate() {
        if keep.is_some_and(|k| !k[i]) {
            continue;
        }
        n += 1;
        if p == 1.0 {
            acc.iter_mut().zip(cell).for_each(|(a, &x)| *a += x);
        } else if p == 3.0 {
            acc.iter_mut().zip(cell).for_each(|(a, &x)| {
                let x = x.max(1e-6);
                *a += x * x * x;
            });
        } else {
            acc.iter_mut().zip(cell).for_each(|(a, &x)| *a += x.max(1e-6).powf(p));
        }
    }
    let n = n.max(1) as f32;
    acc.iter_mut().for_each(|a| *a = if p == 1.0 { *a / n } else { (*a / n).powf(1.0 / p) });
    acc
}

/// Scales `v` to unit length (leaves a zero vector alone).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fm(values: &[[f32; 2]], width: usize) -> FeatureMap {
        FeatureMap { width, height: values.len() / width, channels: 2, data: values.iter().flatten().copied().collect() }
    }

    #[test]
    fn rectangles_are_added_to_a_bitmap_mask_at_its_own_scale() {
        // A 400 x 200 photo whose painted mask is drawn at half size, its left half masked;
        // a rectangle over the top-right quarter of the photo.
        let bitmap = GrayImage::from_fn(200, 100, |x, _| image::Luma([if x < 100 { 255 } else { 0 }]));
        let both = Mask::with_rects(Some(Mask::Bitmap(bitmap)), &[[200, 0, 200, 100]], 400, 200).unwrap();
        assert_eq!(both.pixels(400, 200, 2, 2).unwrap(), vec![true, true, true, false]);
        // No rectangles: the mask is unchanged; no mask: the rectangles alone.
        assert!(Mask::with_rects(None, &[], 400, 200).is_none());
        let rects = Mask::with_rects(None, &[[0, 0, 200, 200]], 400, 200).unwrap();
        assert_eq!(rects.pixels(400, 200, 2, 1).unwrap(), vec![true, false]);
    }

    #[test]
    fn gap_and_gem_pool_only_kept_cells() {
        let f = fm(&[[1.0, 0.0], [3.0, 0.0], [100.0, 50.0], [5.0, 2.0]], 2);
        assert_eq!(gem(&f, None, 1.0), vec![27.25, 13.0]);
        let keep = [true, true, false, true];
        assert_eq!(gem(&f, Some(&keep), 1.0), vec![3.0, 2.0 / 3.0]);
        let g = gem(&f, Some(&keep), 3.0);
        assert!((g[0] - ((1.0f32 + 27.0 + 125.0) / 3.0).cbrt()).abs() < 1e-4);
        assert!(g[0] > 3.0, "GeM with p > 1 exceeds the mean");
    }

    #[test]
    fn rect_coverage_is_area_fraction() {
        let m = Mask::Rects(vec![[0, 0, 50, 100]]);
        let c = m.coverage(200, 100, 4, 2).unwrap();
        assert_eq!(c, vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
        let half = Mask::Rects(vec![[25, 0, 50, 50]]).coverage(200, 100, 4, 2).unwrap();
        assert_eq!(half, vec![0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert!(matches!(Mask::Rects(vec![[0, 0, 0, 5]]).coverage(10, 10, 2, 2), Err(PoolError::BadRect(_))));
    }

    #[test]
    fn bitmap_mask_any_scale_same_aspect() {
        let mut m = GrayImage::new(40, 20);
        for y in 0..20 {
            for x in 0..10 {
                m.put_pixel(x, y, image::Luma([255]));
            }
        }
        let keep = Mask::Bitmap(m.clone()).keep(400, 200, 4, 2).unwrap();
        assert_eq!(keep, vec![false, true, true, true, false, true, true, true]);
        assert!(matches!(Mask::Bitmap(m).coverage(400, 400, 4, 2), Err(PoolError::MaskShape { .. })));
        let all = Mask::Bitmap(GrayImage::from_pixel(8, 8, image::Luma([255])));
        assert!(matches!(all.keep(8, 8, 2, 2), Err(PoolError::MaskCoversEverything)));
    }

    #[test]
    fn pixel_masks_follow_the_mask_at_any_size() {
        let mut m = GrayImage::new(20, 10);
        for y in 0..10 {
            for x in 0..5 {
                m.put_pixel(x, y, image::Luma([255]));
            }
        }
        let px = Mask::Bitmap(m).pixels(400, 200, 40, 20).unwrap();
        assert!(px[0] && px[5] && !px[15] && !px[39], "left quarter masked");
        assert_eq!(px.iter().filter(|&&p| p).count(), 200);
        let rect = Mask::Rects(vec![[0, 0, 200, 100]]).pixels(400, 200, 4, 2).unwrap();
        assert_eq!(rect, vec![true, true, false, false, false, false, false, false]);
    }

    #[test]
    fn pooling_names_round_trip() {
        for p in [Pooling::Gap, Pooling::Gem, Pooling::Multiscale] {
            assert_eq!(p.to_string().parse::<Pooling>().unwrap(), p);
        }
        assert!("max".parse::<Pooling>().is_err());
    }
}
