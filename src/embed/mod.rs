//! Embedding: a photo (and what to leave out of it) becomes a unit vector. The `Embed` port
//! the engine embeds through and the registry that opens one by model id; its adapters, an
//! ONNX model run by ONNX Runtime (`onnx`, described by a model `card`) and `colour-layout`,
//! a small built-in descriptor that needs no ONNX Runtime (`colour`: tests of the use cases,
//! a smoke check of a deployment); and what they share: `pool`ing feature maps under masks,
//! and the `fill` of masked or already painted-out regions.

pub mod card;
pub mod colour;
pub mod fill;
pub mod onnx;
pub mod pool;

use std::path::Path;

pub use colour::{ColourLayout, COLOUR_LAYOUT};
pub use onnx::{EmbedError, EmbedOptions, Embedder, Embedding, Input, Resize};

use crate::media::decode::Limits;
use card::ModelCard;

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

/// Opens the embedder with this id: `colour-layout`, or a model card in `models_dir`
/// (`auto` picks the best one installed) run by the ONNX Runtime at `ort_library`.
pub fn open(id: &str, models_dir: &Path, ort_library: &Path, opts: EmbedOptions, limits: Limits) -> Result<Box<dyn Embed>, EmbedError> {
    if id == COLOUR_LAYOUT {
        return Ok(Box::new(ColourLayout::new(limits)));
    }
    let card = ModelCard::find(models_dir, id)?;
    Ok(Box::new(Embedder::new(card, ort_library, opts, limits)?))
}
