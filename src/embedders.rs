//! Embedders: the port the engine embeds photos through, and the registry that opens one
//! by model id — an ONNX model card, or `colour-layout`, a small built-in descriptor that
//! needs no ONNX Runtime (tests of the use cases, and a smoke check of a deployment).

use std::path::Path;

use crate::decode::{self, Limits};
use crate::embed::{EmbedError, EmbedOptions, Embedder, Embedding, Input};
use crate::model::ModelCard;

/// Turns a photo (and what to leave out of it) into a unit vector.
pub trait Embed: Send + Sync {
    /// The model's id, as the catalog records it with each vector.
    fn model(&self) -> &str;
    /// How the feature map is pooled (part of what makes two vectors comparable).
    fn pooling(&self) -> String;
    /// Every other setting that changes the vectors, as text (recorded with the model).
    fn settings(&self) -> String;
    /// Length of the vectors.
    fn dim(&self) -> usize;
    /// Embeds one photo.
    fn embed(&self, input: Input) -> Result<Embedding, EmbedError>;
}

impl Embed for Embedder {
    fn model(&self) -> &str {
        &self.card().name
    }
    fn pooling(&self) -> String {
        self.options().pooling.to_string()
    }
    fn settings(&self) -> String {
        serde_json::to_string(self.options()).unwrap_or_default()
    }
    fn dim(&self) -> usize {
        Embedder::dim(self)
    }
    fn embed(&self, input: Input) -> Result<Embedding, EmbedError> {
        self.embed_input(input)
    }
}

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
        let keep = match input.mask {
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
            return Err(crate::pool::PoolError::MaskCoversEverything.into());
        }
        let mean = kept.iter().sum::<f32>() / kept.len() as f32;
        v.iter_mut().for_each(|x| *x = if x.is_nan() { 0.0 } else { *x - mean });
        crate::pool::l2_normalize(&mut v);
        let used = keep.as_ref().map_or((g * g) as usize, |k| k.iter().filter(|m| !**m).count());
        Ok(Embedding {
            vector: v,
            cells_used: used,
            cells_total: (g * g) as usize,
            photo_size: (d.full_width, d.full_height),
            cells: None,
            auto_mask: None,
            mask: input.mask.cloned(),
        })
    }
}

/// Opens the embedder with this id: `colour-layout`, or a model card in `models_dir`
/// (`auto` picks the best one installed) run by the ONNX Runtime at `ort_library`.
pub fn open(id: &str, models_dir: &Path, ort_library: &Path, opts: EmbedOptions, limits: Limits) -> Result<Box<dyn Embed>, EmbedError> {
    if id == COLOUR_LAYOUT {
        return Ok(Box::new(ColourLayout::new(limits)));
    }
    let card = ModelCard::find(models_dir, id)?;
    Ok(Box::new(Embedder::new(card, ort_library, opts, limits)?))
}
