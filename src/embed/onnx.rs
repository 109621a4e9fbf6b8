//! Embed: photos to L2-normalised vectors with an ONNX vision model.
//!
//! Decode and resize run in parallel on rayon; inference runs in batches of equal-sized
//! inputs on ONNX Runtime with a configured number of threads; pooling is ours (see `pool`).

use parking_lot::Mutex;
use std::path::{Path, PathBuf};

use fast_image_resize as fr;
use image::RgbImage;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::fill::{self, Fill};
use crate::embed::card::{ColorOrder, InputLayout, InputType, Layout, ModelCard, ModelError};
use crate::embed::pool::{self, FeatureMap, Mask, PoolError, Pooling};
use crate::media::decode::{self, DecodeError, Decoded, Limits};

/// Why an embedding could not be made.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The ONNX Runtime library is not where the configuration says.
    #[error("ONNX Runtime library not found at {0}: run scripts/setup.sh, or set ORT_DYLIB_PATH / ort_library in the config")]
    RuntimeMissing(PathBuf),
    /// The ONNX Runtime library could not be loaded.
    #[error("cannot load ONNX Runtime from {path}: {message}")]
    RuntimeLoad { path: PathBuf, message: String },
    /// ONNX Runtime failed while creating a session or running the model.
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    /// The model output does not match its card.
    #[error("model output does not match its card: {0}")]
    BadOutput(String),
    /// The request asks for something the model cannot do.
    #[error("{0}")]
    Unsupported(String),
    /// The model card or file is unusable.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The photo or mask could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The mask could not be applied.
    #[error(transparent)]
    Pool(#[from] PoolError),
}

/// How an input photo is fitted to the network input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Resize {
    /// Squash to the card's size: nothing is cropped, shapes are distorted.
    Stretch,
    /// Keep the aspect ratio with about the card's pixel count, sides rounded to the model's
    /// stride: nothing cropped, nothing distorted (needs a dynamic model; batches group by shape).
    #[default]
    Aspect,
}

/// Settings of the embedding engine.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmbedOptions {
    /// How the feature map is pooled.
    pub pooling: Pooling,
    /// GeM exponent.
    pub gem_p: f32,
    /// How photos are fitted to the network input.
    pub resize: Resize,
    /// Side of a square base input size overriding the card's; 0 = the card's.
    pub input_size: u32,
    /// Short sides overriding the card's `short_side` (empty = the card's).
    pub short_side: Vec<u32>,
    /// How masked pixels are filled before the network sees the photo.
    pub fill: Fill,
    /// Images per inference call.
    pub batch: usize,
    /// ONNX Runtime intra-op threads; 0 = all cores.
    pub threads: usize,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        EmbedOptions {
            pooling: Pooling::Gap,
            gem_p: 3.0,
            resize: Resize::Aspect,
            input_size: 0,
            short_side: Vec::new(),
            fill: Fill::default(),
            batch: 16,
            threads: 0,
        }
    }
}

/// One photo to embed: its encoded bytes and an optional mask of what to ignore.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub bytes: &'a [u8],
    pub mask: Option<&'a Mask>,
    /// With no mask given, look for a region a censor already painted out or blurred, and
    /// mask it (queries only: a gallery photo is never second-guessed).
    pub auto_mask: bool,
    /// The same photo already decoded (a search decodes its query once for every stage);
    /// used when it is at least as large as the network needs, else the bytes are decoded.
    pub decoded: Option<&'a Decoded>,
    /// Regions of shared marks (`[x, y, width, height]` in full-resolution pixels), masked on
    /// top of whatever else is: a broker's logo is never part of the room.
    pub marks: &'a [[u32; 4]],
}

impl<'a> Input<'a> {
    /// A photo with nothing masked and no automatic mask.
    pub fn photo(bytes: &'a [u8]) -> Self {
        Input { bytes, mask: None, auto_mask: false, decoded: None, marks: &[] }
    }
}

/// The vector of one photo.
#[derive(Debug, Clone)]
pub struct Embedding {
    /// L2-normalised, `dim` long.
    pub vector: Vec<f32>,
    /// Feature-map cells pooled (at the base scale).
    pub cells_used: usize,
    /// Feature-map cells in total (at the base scale).
    pub cells_total: usize,
    /// Full-resolution width and height of the upright photo.
    pub photo_size: (u32, u32),
    /// The base-scale feature map and the cells pooled (for explaining matches).
    pub cells: Option<(FeatureMap, Option<Vec<bool>>)>,
    /// Fraction of the photo masked automatically (an already-erased region), if any.
    pub auto_mask: Option<f32>,
    /// The mask in effect: given, from transparency, or found automatically.
    pub mask: Option<Mask>,
}

/// ONNX Runtime allows one environment per process, ever (a dropped one cannot be
/// rebuilt), so the loaded environment lives as long as the process.
static RUNTIME: Mutex<Option<(PathBuf, ort::environment::Environment)>> = Mutex::new(None);

/// Loads ONNX Runtime from `library` once per process; later calls reuse it.
fn load_runtime(library: &Path) -> Result<ort::environment::Environment, EmbedError> {
    if !library.is_file() {
        return Err(EmbedError::RuntimeMissing(library.into()));
    }
    let mut rt = RUNTIME.lock();
    if let Some((loaded, env)) = rt.as_ref() {
        if std::fs::canonicalize(loaded).ok() == std::fs::canonicalize(library).ok() {
            return Ok(env.clone());
        }
        let message = format!("ONNX Runtime is already loaded from {}", loaded.display());
        return Err(EmbedError::RuntimeLoad { path: library.into(), message });
    }
    let load_err = |message: String| EmbedError::RuntimeLoad { path: library.into(), message };
    let env = ort::init_from(library)
        .map_err(|e| load_err(e.to_string()))?
        .with_name("hotelmatch")
        .build()
        .map_err(|e| load_err(e.to_string()))?;
    *rt = Some((library.into(), env.clone()));
    Ok(env)
}

/// A network input tensor's elements.
enum Pixels {
    F32(Vec<f32>),
    U8(Vec<u8>),
}

/// A preprocessed input at one scale.
struct Prepared {
    width: usize,
    height: usize,
    pixels: Pixels,
    keep: Option<Vec<bool>>,
}

/// A photo prepared at every scale, with what the embedding reports about it.
struct PreparedPhoto {
    scales: Vec<Prepared>,
    photo_size: (u32, u32),
    auto_mask: Option<f32>,
    mask: Option<Mask>,
}

/// What one inference call gives for one image.
struct Output {
    embedding: Option<Vec<f32>>,
    feature_map: Option<FeatureMap>,
    logits: Option<Vec<f32>>,
}

/// An ONNX model ready to embed photos.
pub struct Embedder {
    card: ModelCard,
    opts: EmbedOptions,
    limits: Limits,
    session: Mutex<ort::session::Session>,
    /// Per-channel lookup from a 0..255 pixel to the normalised network input.
    lut: [[f32; 256]; 3],
}

/// An embedding and, when asked for, the classifier's logits.
type WithLogits = (Embedding, Option<Vec<f32>>);

impl Embedder {
    /// Loads the runtime and the model described by `card`.
    // ort's builder errors carry the builder back (hundreds of bytes); they are turned into
    // our small error at once, so their size costs nothing here.
    #[allow(clippy::result_large_err)]
    pub fn new(card: ModelCard, ort_library: &Path, opts: EmbedOptions, limits: Limits) -> Result<Self, EmbedError> {
        let onnx = card.onnx_path()?;
        let resizes =
            opts.pooling == Pooling::Multiscale || opts.resize == Resize::Aspect || opts.input_size != 0 || !opts.short_side.is_empty();
        if resizes && !card.dynamic {
            return Err(EmbedError::Unsupported(format!(
                "model '{}' has a fixed input size: use --pool gem|gap, resize = \"stretch\" and input_size = 0",
                card.name
            )));
        }
        let env = load_runtime(ort_library)?;
        let rt = |e: ort::Error| EmbedError::Runtime(e.to_string());
        let threads = if opts.threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { opts.threads };
        let session = ort::session::Session::builder(&env)
            .map_err(rt)?
            .with_intra_threads(threads)
            .and_then(|b| b.with_inter_threads(1))
            .and_then(|b| b.with_intra_op_spinning(false))
            .and_then(|b| b.with_optimization_level(ort::session::builder::GraphOptimizationLevel::Level3))
            .map_err(|e| EmbedError::Runtime(e.to_string()))?
            .commit_from_file(&onnx)
            .map_err(rt)?;
        for name in card.feature_map.iter().chain(&card.embedding).chain(&card.logits) {
            if !session.outputs().iter().any(|o| o.name() == name) {
                return Err(EmbedError::BadOutput(format!("{} has no output named '{name}'", onnx.display())));
            }
        }
        tracing::info!(model = %card.name, file = %onnx.display(), threads, "model loaded");
        let mut lut = [[0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                *out = (v as f32 - card.mean[c]) / card.std[c];
            }
        }
        Ok(Embedder { card, opts, limits, session: Mutex::new(session), lut })
    }

    /// The model card in use.
    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// The options in use.
    pub fn options(&self) -> &EmbedOptions {
        &self.opts
    }

    /// Dimension of the vectors produced.
    pub fn dim(&self) -> usize {
        self.card.dim
    }

    fn base_size(&self) -> (u32, u32) {
        match self.opts.input_size {
            0 => (self.card.size[0], self.card.size[1]),
            s => (s, s),
        }
    }

    /// Short sides photos are scaled to (the options', else the card's); empty when unused.
    fn short_sides(&self) -> &[u32] {
        if self.opts.short_side.is_empty() {
            &self.card.short_side
        } else {
            &self.opts.short_side
        }
    }

    /// Relative scales of the inputs of one photo (one entry per inference).
    fn scales(&self) -> Vec<f32> {
        let sides = self.short_sides();
        if let Some(&first) = sides.first() {
            return sides.iter().map(|&s| s as f32 / first as f32).collect();
        }
        match self.opts.pooling {
            Pooling::Multiscale => vec![std::f32::consts::FRAC_1_SQRT_2, 1.0, std::f32::consts::SQRT_2],
            _ => vec![1.0],
        }
    }

    /// Network input size for a photo of `w` x `h` at `scale`.
    fn target_size(&self, w: u32, h: u32, scale: f32) -> (u32, u32) {
        let (bw, bh) = self.base_size();
        let stride = self.card.stride as f32;
        let round = |v: f32| ((v / stride).round().max(1.0) * stride) as u32;
        if let Some(&first) = self.short_sides().first() {
            // Short side at the asked size, aspect ratio kept (clamped to 3:1).
            let aspect = (w as f32 / h as f32).clamp(1.0 / 3.0, 3.0);
            let short = first as f32 * scale;
            return if aspect >= 1.0 { (round(short * aspect), round(short)) } else { (round(short), round(short / aspect)) };
        }
        match self.opts.resize {
            Resize::Stretch if scale == 1.0 && !self.card.dynamic => (bw, bh),
            Resize::Stretch => (round(bw as f32 * scale), round(bh as f32 * scale)),
            Resize::Aspect => {
                // Same pixel count as the base size; aspect ratio clamped to 3:1.
                let aspect = (w as f32 / h as f32).clamp(1.0 / 3.0, 3.0);
                let area = bw as f32 * bh as f32 * scale * scale;
                (round((area * aspect).sqrt()), round((area / aspect).sqrt()))
            }
        }
    }

    /// Decodes and preprocesses one input at every scale.
    fn prepare(&self, input: &Input) -> Result<PreparedPhoto, EmbedError> {
        let scales = self.scales();
        // Decode just large enough that every input size is reached by shrinking.
        let need = |w: u32, h: u32| {
            let sizes = scales.iter().map(|&s| self.target_size(w, h, s));
            Some(sizes.fold((1, 1), |(a, b), (tw, th)| (a.max(tw), b.max(th))))
        };
        let d = match input.decoded {
            Some(d) if need(d.full_width, d.full_height).is_some_and(|(w, h)| d.rgb.width() >= w && d.rgb.height() >= h) => {
                std::borrow::Cow::Borrowed(d)
            }
            _ => std::borrow::Cow::Owned(decode::decode_sized(input.bytes, &self.limits, &need)?),
        };
        let (fw, fh) = (d.full_width, d.full_height);
        let mut auto_mask = None;
        let mask = match (input.mask, &d.transparent) {
            (Some(m), _) => Some(m.clone()),
            (None, Some(t)) => Some(Mask::Bitmap(t.clone())),
            (None, None) if input.auto_mask => fill::find_erased(&d.rgb).map(|(m, area)| {
                auto_mask = Some(area);
                Mask::Bitmap(m)
            }),
            (None, None) => None,
        };
        let mask = Mask::with_rects(mask, input.marks, fw, fh);
        let mut out = Vec::with_capacity(scales.len());
        for &scale in &scales {
            let (tw, th) = self.target_size(fw, fh, scale);
            let mut rgb = self.resize(&d.rgb, tw, th)?;
            let keep = match &mask {
                Some(m) => {
                    if self.opts.fill != Fill::None || !self.card.pools_feature_map() {
                        let mut masked = m.pixels(fw, fh, tw, th)?;
                        // Resizing blends the masked object into the pixels along its edge.
                        fill::grow(&mut masked, tw as usize, 1);
                        if masked.iter().all(|&x| x) {
                            return Err(PoolError::MaskCoversEverything.into());
                        }
                        fill::fill(&mut rgb, &masked, self.opts.fill);
                    }
                    let (cols, rows) = ((tw / self.card.stride) as usize, (th / self.card.stride) as usize);
                    match self.card.pools_feature_map() {
                        true => Some(m.keep(fw, fh, cols.max(1), rows.max(1))?),
                        false => None,
                    }
                }
                None => None,
            };
            out.push(Prepared { width: tw as usize, height: th as usize, pixels: self.to_tensor(&rgb), keep });
        }
        Ok(PreparedPhoto { scales: out, photo_size: (fw, fh), auto_mask, mask })
    }

    /// The photo resized to `w` x `h` (bilinear convolution), as interleaved RGB.
    fn resize(&self, rgb: &RgbImage, w: u32, h: u32) -> Result<RgbImage, EmbedError> {
        if rgb.dimensions() == (w, h) {
            return Ok(rgb.clone());
        }
        let src = fr::images::ImageRef::new(rgb.width(), rgb.height(), rgb.as_raw(), fr::PixelType::U8x3)
            .map_err(|e| EmbedError::Unsupported(format!("resize: {e}")))?;
        let mut dst = fr::images::Image::new(w, h, fr::PixelType::U8x3);
        let opts = fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear));
        fr::Resizer::new().resize(&src, &mut dst, &opts).map_err(|e| EmbedError::Unsupported(format!("resize: {e}")))?;
        RgbImage::from_raw(w, h, dst.into_vec()).ok_or_else(|| EmbedError::Unsupported("resize: bad buffer".into()))
    }

    /// The network's input elements for resized pixels: raw bytes, or floats normalised by
    /// the card, in the card's channel order and layout.
    fn to_tensor(&self, rgb: &RgbImage) -> Pixels {
        let order = match self.card.color {
            ColorOrder::Rgb => [0, 1, 2],
            ColorOrder::Bgr => [2, 1, 0],
        };
        let pixels = rgb.as_raw();
        match (self.card.input_type, self.card.input_layout) {
            (InputType::Uint8, InputLayout::Nhwc) if order == [0, 1, 2] => Pixels::U8(pixels.clone()),
            (InputType::Uint8, InputLayout::Nhwc) => Pixels::U8(pixels.chunks_exact(3).flat_map(|px| order.map(|c| px[c])).collect()),
            (InputType::Uint8, InputLayout::Nchw) => {
                Pixels::U8((0..3).flat_map(|c| pixels.chunks_exact(3).map(move |px| px[order[c]])).collect())
            }
            (InputType::Float32, InputLayout::Nhwc) => {
                Pixels::F32(pixels.chunks_exact(3).flat_map(|px| [0, 1, 2].map(|c| self.lut[order[c]][px[order[c]] as usize])).collect())
            }
            (InputType::Float32, InputLayout::Nchw) => {
                let plane = pixels.len() / 3;
                let mut chw = vec![0f32; 3 * plane];
                let (p0, rest) = chw.split_at_mut(plane);
                let (p1, p2) = rest.split_at_mut(plane);
                for (i, px) in pixels.chunks_exact(3).enumerate() {
                    p0[i] = self.lut[order[0]][px[order[0]] as usize];
                    p1[i] = self.lut[order[1]][px[order[1]] as usize];
                    p2[i] = self.lut[order[2]][px[order[2]] as usize];
                }
                Pixels::F32(chw)
            }
        }
    }

    /// Runs the network on same-sized inputs and returns what the card names of its outputs.
    fn infer(&self, batch: &[&Prepared]) -> Result<Vec<Output>, EmbedError> {
        let (w, h, n) = (batch[0].width, batch[0].height, batch.len());
        let shape = match self.card.input_layout {
            InputLayout::Nchw => (n, 3, h, w),
            InputLayout::Nhwc => (n, h, w, 3),
        };
        let rt = |e: &dyn std::fmt::Display| EmbedError::Runtime(e.to_string());
        let tensor: ort::value::DynValue = match &batch[0].pixels {
            Pixels::F32(_) => {
                let data: Vec<f32> =
                    batch.iter().flat_map(|p| if let Pixels::F32(v) = &p.pixels { v.as_slice() } else { &[] }).copied().collect();
                let array = ndarray::Array4::from_shape_vec(shape, data).map_err(|e| rt(&e))?;
                ort::value::Tensor::from_array(array).map_err(|e| rt(&e))?.into_dyn()
            }
            Pixels::U8(_) => {
                let data: Vec<u8> =
                    batch.iter().flat_map(|p| if let Pixels::U8(v) = &p.pixels { v.as_slice() } else { &[] }).copied().collect();
                let array = ndarray::Array4::from_shape_vec(shape, data).map_err(|e| rt(&e))?;
                ort::value::Tensor::from_array(array).map_err(|e| rt(&e))?.into_dyn()
            }
        };
        let mut session = self.session.lock();
        let outputs = session.run(ort::inputs![self.card.input.as_str() => tensor]).map_err(|e| rt(&e))?;
        // Each named output, split per image.
        let per_image = |name: &str| -> Result<Vec<Vec<f32>>, EmbedError> {
            let (_, v) = outputs[name].try_extract_tensor::<f32>().map_err(|e| EmbedError::BadOutput(e.to_string()))?;
            if v.is_empty() || v.len() % n != 0 {
                return Err(EmbedError::BadOutput(format!("output '{name}' has {} values for {n} images", v.len())));
            }
            Ok(v.chunks_exact(v.len() / n).map(<[f32]>::to_vec).collect())
        };
        let mut maps: Vec<Option<FeatureMap>> = match &self.card.feature_map {
            Some(name) => {
                let (shape, values) =
                    outputs[name.as_str()].try_extract_tensor::<f32>().map_err(|e| EmbedError::BadOutput(e.to_string()))?;
                let stride = self.card.stride as usize;
                split_feature_maps(&self.card, shape, values, n, w / stride, h / stride)?.into_iter().map(Some).collect()
            }
            None => (0..n).map(|_| None).collect(),
        };
        let mut embeddings: Vec<Option<Vec<f32>>> = match &self.card.embedding {
            Some(name) => per_image(name)?.into_iter().map(Some).collect(),
            None => vec![None; n],
        };
        if let Some(e) = embeddings.iter().flatten().find(|e| e.len() != self.card.dim) {
            return Err(EmbedError::BadOutput(format!("embedding has {} values, card says dim {}", e.len(), self.card.dim)));
        }
        let mut logits: Vec<Option<Vec<f32>>> = match &self.card.logits {
            Some(name) => per_image(name)?.into_iter().map(Some).collect(),
            None => vec![None; n],
        };
        Ok((0..n).map(|i| Output { embedding: embeddings[i].take(), feature_map: maps[i].take(), logits: logits[i].take() }).collect())
    }

    /// Embeds each input; one bad photo does not fail the others.
    pub fn embed(&self, inputs: &[Input]) -> Vec<Result<Embedding, EmbedError>> {
        self.run(inputs, false).into_iter().map(|r| r.map(|(e, _)| e)).collect()
    }

    /// Embeds one photo.
    pub fn embed_one(&self, bytes: &[u8], mask: Option<&Mask>) -> Result<Embedding, EmbedError> {
        self.embed_input(Input { bytes, mask, auto_mask: false, decoded: None, marks: &[] })
    }

    /// Embeds one input.
    pub fn embed_input(&self, input: Input) -> Result<Embedding, EmbedError> {
        self.embed(&[input]).pop().unwrap_or_else(|| Err(EmbedError::Unsupported("no input".into())))
    }

    /// ImageNet-1k probabilities of one photo, for models whose card names `logits`.
    pub fn classify(&self, bytes: &[u8]) -> Result<Vec<f32>, EmbedError> {
        if self.card.logits.is_none() {
            return Err(EmbedError::Unsupported(format!("model '{}' has no classifier output", self.card.name)));
        }
        let (_, logits) =
            self.run(&[Input::photo(bytes)], true).pop().unwrap_or_else(|| Err(EmbedError::Unsupported("no input".into())))?;
        let logits = logits.ok_or_else(|| EmbedError::BadOutput("no logits".into()))?;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
        let sum: f32 = exp.iter().sum();
        Ok(exp.into_iter().map(|e| e / sum).collect())
    }

    fn run(&self, inputs: &[Input], want_logits: bool) -> Vec<Result<WithLogits, EmbedError>> {
        // One photo is prepared on this thread: waking the pool would cost more than it saves.
        let prepared: Vec<Result<PreparedPhoto, EmbedError>> = if inputs.len() == 1 {
            inputs.iter().map(|i| self.prepare(i)).collect()
        } else {
            inputs.par_iter().map(|i| self.prepare(i)).collect()
        };
        // Group every (input, scale) by tensor shape, so each inference call is one batch.
        let mut groups: std::collections::BTreeMap<(usize, usize), Vec<(usize, usize)>> = Default::default();
        for (i, p) in prepared.iter().enumerate() {
            if let Ok(photo) = p {
                for (s, prep) in photo.scales.iter().enumerate() {
                    groups.entry((prep.width, prep.height)).or_default().push((i, s));
                }
            }
        }
        let n_scales = self.scales().len();
        let mut outputs: Vec<Vec<Option<Output>>> = (0..inputs.len()).map(|_| (0..n_scales).map(|_| None).collect()).collect();
        let mut failed: Vec<Option<String>> = vec![None; inputs.len()];
        for members in groups.values() {
            for chunk in members.chunks(self.opts.batch.max(1)) {
                // Only inputs that prepared fine were grouped, so this keeps every member.
                let batch: Vec<&Prepared> = chunk.iter().filter_map(|&(i, s)| prepared[i].as_ref().ok().map(|p| &p.scales[s])).collect();
                match self.infer(&batch) {
                    Ok(out) => {
                        for (&(i, s), o) in chunk.iter().zip(out) {
                            outputs[i][s] = Some(o);
                        }
                    }
                    Err(e) => chunk.iter().for_each(|&(i, _)| failed[i] = Some(e.to_string())),
                }
            }
        }
        let scales = self.scales();
        let base = scales.iter().position(|&s| s == 1.0).unwrap_or(0);
        prepared
            .into_iter()
            .zip(outputs)
            .zip(failed)
            .map(|((prep, outs), fail)| {
                let photo = prep?;
                if let Some(msg) = fail {
                    return Err(EmbedError::Runtime(msg));
                }
                // Multi-scale: the sum of each scale's unit vector.
                let mut vector = vec![0f32; self.card.dim];
                let (mut logits, mut cells, mut base_map) = (None, (0, 0), None);
                for (s, (prep, out)) in photo.scales.iter().zip(outs).enumerate() {
                    let out = out.ok_or_else(|| EmbedError::Runtime("missing inference output".into()))?;
                    let mut v = match (out.embedding, &out.feature_map) {
                        (Some(e), _) => e,
                        (None, Some(fm)) => {
                            pool::gem(fm, prep.keep.as_deref(), if self.opts.pooling == Pooling::Gap { 1.0 } else { self.opts.gem_p })
                        }
                        (None, None) => return Err(EmbedError::BadOutput("neither an embedding nor a feature map".into())),
                    };
                    pool::l2_normalize(&mut v);
                    vector.iter_mut().zip(&v).for_each(|(a, b)| *a += b);
                    if s == base {
                        if want_logits {
                            logits = out.logits;
                        }
                        if let Some(fm) = out.feature_map {
                            let total = fm.width * fm.height;
                            cells = (prep.keep.as_ref().map_or(total, |k| k.iter().filter(|&&k| k).count()), total);
                            base_map = Some((fm, prep.keep.clone()));
                        }
                    }
                }
                pool::l2_normalize(&mut vector);
                let embedding = Embedding {
                    vector,
                    cells_used: cells.0,
                    cells_total: cells.1,
                    photo_size: photo.photo_size,
                    cells: base_map,
                    auto_mask: photo.auto_mask,
                    mask: photo.mask,
                };
                Ok((embedding, logits))
            })
            .collect()
    }
}

/// Splits a batched feature-map tensor into per-image cell-major maps.
fn split_feature_maps(
    card: &ModelCard,
    shape: &[i64],
    values: &[f32],
    n: usize,
    cols: usize,
    rows: usize,
) -> Result<Vec<FeatureMap>, EmbedError> {
    let dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
    let bad = || EmbedError::BadOutput(format!("feature map has shape {shape:?}, card says {:?} with dim {}", card.layout, card.dim));
    let (c, h, w, prefix) = match (card.layout, dims.as_slice()) {
        (Layout::Nchw, &[b, c, h, w]) if b == n => (c, h, w, 0),
        (Layout::Nhwc, &[b, h, w, c]) if b == n => (c, h, w, 0),
        (Layout::Nlc, &[b, l, c]) if b == n && l == card.prefix_tokens + rows * cols => (c, rows, cols, card.prefix_tokens),
        _ => return Err(bad()),
    };
    if c != card.dim {
        return Err(bad());
    }
    let per = values.len() / n;
    Ok(values
        .chunks_exact(per)
        .map(|img| {
            let data = match card.layout {
                Layout::Nchw => {
                    let mut out = vec![0f32; c * h * w];
                    for ch in 0..c {
                        for cell in 0..h * w {
                            out[cell * c + ch] = img[ch * h * w + cell];
                        }
                    }
                    out
                }
                Layout::Nhwc => img.to_vec(),
                Layout::Nlc => img[prefix * c..].to_vec(),
            };
            FeatureMap { width: w, height: h, channels: c, data }
        })
        .collect())
}
