//! Model cards: the TOML file in `models/` that tells hotelmatch how to run an ONNX vision model.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why a model card could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// No card of that name in the models directory.
    #[error("no model card named '{name}' in {dir} (available: {available}); add models/{name}.toml or run scripts/setup.sh")]
    UnknownModel { name: String, dir: PathBuf, available: String },
    /// The card could not be read.
    #[error("cannot read model card {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The card is not valid TOML or misses fields.
    #[error("invalid model card {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    /// The card names an ONNX file that is not there.
    #[error("model file {0} is missing: run scripts/setup.sh (the SSCD models need it without --open-only), or export the model and place it there")]
    MissingWeights(PathBuf),
}

/// Channel order the network expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorOrder {
    Rgb,
    Bgr,
}

/// Memory layout of the feature-map output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Batch, channels, height, width (CNNs).
    Nchw,
    /// Batch, height, width, channels.
    Nhwc,
    /// Batch, tokens, channels (ViTs); the grid is input size / stride.
    Nlc,
}

/// Element type of the input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    /// Normalised floats: `(pixel - mean) / std`.
    #[default]
    Float32,
    /// Raw 0..255 pixels; the graph normalises them itself.
    Uint8,
}

/// Memory layout of the input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InputLayout {
    /// Batch, channels, height, width.
    #[default]
    Nchw,
    /// Batch, height, width, channels (interleaved pixels).
    Nhwc,
}

/// A model card as written in `models/NAME.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    /// Short name, used on the command line and stored with every embedding.
    pub name: String,
    /// ONNX file, relative to the card (it may point into the project's Python venv, where
    /// a model installed from a wheel stays untouched).
    pub file: PathBuf,
    /// Input tensor name.
    #[serde(default = "default_input")]
    pub input: String,
    /// Input element type.
    #[serde(default)]
    pub input_type: InputType,
    /// Input layout.
    #[serde(default)]
    pub input_layout: InputLayout,
    /// Default input width and height.
    pub size: [u32; 2],
    /// Short sides to scale photos to, aspect ratio kept; several sizes sum their
    /// embeddings (multi-scale). Empty: `size` and the pooling's scales decide.
    #[serde(default)]
    pub short_side: Vec<u32>,
    /// Whether the model accepts other input sizes (multiples of `stride`).
    #[serde(default)]
    pub dynamic: bool,
    /// Input pixels per feature-map cell.
    pub stride: u32,
    /// Channel order.
    #[serde(default = "default_color")]
    pub color: ColorOrder,
    /// Per-channel mean, in 0..255 pixel units (float inputs).
    #[serde(default)]
    pub mean: [f32; 3],
    /// Per-channel standard deviation, in 0..255 pixel units (float inputs).
    #[serde(default = "default_std")]
    pub std: [f32; 3],
    /// Output name of the last feature map (pooled by hotelmatch, masks drop its cells).
    #[serde(default)]
    pub feature_map: Option<String>,
    /// Output name of a ready-made image embedding (N x dim); used instead of pooling.
    #[serde(default)]
    pub embedding: Option<String>,
    /// Output name of ImageNet logits, when the model has a classifier.
    #[serde(default)]
    pub logits: Option<String>,
    /// Layout of the feature map.
    #[serde(default = "default_layout")]
    pub layout: Layout,
    /// Leading tokens to skip in an `nlc` output (class and register tokens).
    #[serde(default)]
    pub prefix_tokens: usize,
    /// Dimension of the embedding (channels of the feature map).
    pub dim: usize,
    /// Licence of the weights.
    pub licence: String,
    /// Where the weights came from.
    pub source: String,
    /// Directory the card was read from (not in the file).
    #[serde(skip)]
    pub dir: PathBuf,
}

fn default_input() -> String {
    "input".into()
}
fn default_color() -> ColorOrder {
    ColorOrder::Rgb
}
fn default_std() -> [f32; 3] {
    [1.0; 3]
}
fn default_layout() -> Layout {
    Layout::Nchw
}

/// The models `auto` chooses from, best first on listings-dev (README, retrieval quality).
pub const AUTO_PREFERENCE: [&str; 3] = ["sscd-distilled", "mobilenetv2", "efficientnet-lite2"];

impl ModelCard {
    /// Reads and validates a card file.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io { path: path.into(), source })?;
        let invalid = |message: String| ModelError::Invalid { path: path.into(), message };
        let mut card: ModelCard = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        card.dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        if card.size.iter().any(|&s| s == 0 || s > 4096) || card.stride == 0 {
            return Err(invalid("size must be 1..=4096 and stride > 0".into()));
        }
        if card.std.iter().any(|&s| s <= 0.0) || card.dim == 0 {
            return Err(invalid("std must be positive and dim > 0".into()));
        }
        if card.feature_map.is_none() && card.embedding.is_none() {
            return Err(invalid("name a `feature_map` or an `embedding` output".into()));
        }
        if card.short_side.iter().any(|&s| s == 0 || s > 4096) {
            return Err(invalid("short_side sizes must be 1..=4096".into()));
        }
        Ok(card)
    }

    /// Finds the card `name` in `dir`; `auto` is the first of `AUTO_PREFERENCE` whose weights
    /// are installed (SSCD unless setup ran with `--open-only`).
    pub fn find(dir: &Path, name: &str) -> Result<Self, ModelError> {
        if name == "auto" {
            let ready = AUTO_PREFERENCE.iter().filter_map(|n| Self::find(dir, n).ok()).find(|c| c.onnx_path().is_ok());
            return ready.map_or_else(|| Self::find(dir, AUTO_PREFERENCE[AUTO_PREFERENCE.len() - 1]), Ok);
        }
        let path = dir.join(format!("{name}.toml"));
        if !path.is_file() || name.contains(['/', '\\']) {
            let available = Self::list(dir).iter().map(|c| c.name.clone()).collect::<Vec<_>>().join(", ");
            return Err(ModelError::UnknownModel { name: name.into(), dir: dir.into(), available });
        }
        Self::load(&path)
    }

    /// Every valid card in `dir`, sorted by name.
    pub fn list(dir: &Path) -> Vec<Self> {
        let mut cards: Vec<Self> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
            .filter_map(|e| Self::load(&e.path()).ok())
            .collect();
        cards.sort_by(|a, b| a.name.cmp(&b.name));
        cards
    }

    /// Whether the model pools a feature map (and so can drop masked cells).
    pub fn pools_feature_map(&self) -> bool {
        self.embedding.is_none()
    }

    /// Path of the ONNX file, checked to exist.
    pub fn onnx_path(&self) -> Result<PathBuf, ModelError> {
        let p = self.dir.join(&self.file);
        if p.is_file() {
            Ok(p)
        } else {
            Err(ModelError::MissingWeights(p))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_cards_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let names: Vec<_> = ModelCard::list(&dir).into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["efficientnet-lite0", "efficientnet-lite2", "mobilenetv2", "sscd", "sscd-distilled"]);
        let m = ModelCard::find(&dir, "mobilenetv2").unwrap();
        assert_eq!((m.size, m.stride, m.dim, m.layout), ([224, 224], 32, 1280, Layout::Nchw));
    }

    #[test]
    fn unknown_model_names_the_alternatives() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let err = ModelCard::find(&dir, "clip").unwrap_err().to_string();
        assert!(err.contains("mobilenetv2") && err.contains("clip"), "{err}");
    }

    #[test]
    fn invalid_card_is_reported_with_its_path() {
        let dir = std::env::temp_dir().join(format!("hm-card-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad.toml");
        std::fs::write(&p, "name = 'bad'\nfile = 'x.onnx'\n").unwrap();
        let err = ModelCard::load(&p).unwrap_err().to_string();
        assert!(err.contains("bad.toml") && err.contains("missing field"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
