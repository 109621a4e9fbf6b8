//! `colour-layout`: the built-in descriptor, an adapter of the `Embed` port that needs no
//! ONNX Runtime.

use super::{Embed, EmbedError, Embedding, Input};
use crate::media::decode::{self, Limits};

/// The id of the built-in descriptor.
pub const COLOUR_LAYOUT: &str = "colour-layout";

/// The photo's colours on an 8×8 grid, centred and normalised (192 numbers): it tells
/// photos apart, finds copies and resizes, and knows nothing of rooms. Masked cells are
/// left out.
pub struct ColourLayout {
    limits: Limits,
}

impl ColourLayout {
    const GRID: u32 = 8;

    /// The descriptor, decoding within `limits`.
    pub fn new(limits: Limits) -> Self {
        ColourLayout { limits }
    }
}

impl Embed for ColourLayout {
    fn model(&self) -> &str {
        COLOUR_LAYOUT
    }
    fn pooling(&self) -> String {
        "grid".into()
    }
    fn settings(&self) -> String {
        format!("{{\"grid\":{}}}", Self::GRID)
    }
    fn dim(&self) -> usize {
        (Self::GRID * Self::GRID * 3) as usize
    }
    fn embed(&self, input: Input) -> Result<Embedding, EmbedError> {
        let d = match input.decoded {
            Some(d) => std::borrow::Cow::Borrowed(d),
            None => std::borrow::Cow::Owned(decode::decode(input.bytes, &self.limits, Some((64, 64)))?),
        };
        let g = Self::GRID;
        let small = image::imageops::resize(&d.rgb, g, g, image::imageops::FilterType::Triangle);
        let mask = crate::embed::pool::Mask::with_rects(input.mask.cloned(), input.marks, d.full_width, d.full_height);
        let keep = match &mask {
            Some(m) => Some(m.pixels(d.full_width, d.full_height, g, g)?),
            None => None,
        };
        let mut v: Vec<f32> = small
            .pixels()
            .enumerate()
            .flat_map(|(i, p)| {
                let on = keep.as_ref().is_none_or(|k| !k[i]);
                p.0.map(|c| if on { f32::from(c) / 255.0 } else { f32::NAN })
            })
            .collect();
        let kept: Vec<f32> = v.iter().copied().filter(|x| !x.is_nan()).collect();
        if kept.is_empty() {
            return Err(crate::embed::pool::PoolError::MaskCoversEverything.into());
        }
        let mean = kept.iter().sum::<f32>() / kept.len() as f32;
        v.iter_mut().for_each(|x| *x = if x.is_nan() { 0.0 } else { *x - mean });
        crate::embed::pool::l2_normalize(&mut v);
        let used = keep.as_ref().map_or((g * g) as usize, |k| k.iter().filter(|m| !**m).count());
        Ok(Embedding {
            vector: v,
            cells_used: used,
            cells_total: (g * g) as usize,
            photo_size: (d.full_width, d.full_height),
            cells: None,
            auto_mask: None,
            mask,
        })
    }
}
