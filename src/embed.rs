//! Embed: photos to L2-normalised vectors with an ONNX vision model.
//!
//! Decode and resize run in parallel on rayon; inference runs in batches of equal-sized
//! inputs on ONNX Runtime with a configured number of threads; pooling is ours (see `pool`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use fast_image_resize as fr;
use image::RgbImage;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::decode::{self, DecodeError, Limits};
use crate::model::{ColorOrder, Layout, ModelCard, ModelError};
use crate::pool::{self, FeatureMap, Mask, PoolError, Pooling};

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
    /// Images per inference call.
    pub batch: usize,
    /// ONNX Runtime intra-op threads; 0 = all cores.
    pub threads: usize,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        EmbedOptions { pooling: Pooling::Gap, gem_p: 3.0, resize: Resize::Aspect, input_size: 0, batch: 16, threads: 0 }
    }
}

/// One photo to embed: its encoded bytes and an optional mask of what to ignore.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub bytes: &'a [u8],
    pub mask: Option<&'a Mask>,
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
}

/// ONNX Runtime allows one environment per process, ever (a dropped one cannot be
/// rebuilt), so the loaded environment lives as long as the process.
static RUNTIME: Mutex<Option<(PathBuf, ort::environment::Environment)>> = Mutex::new(None);

/// Loads ONNX Runtime from `library` once per process; later calls reuse it.
fn load_runtime(library: &Path) -> Result<ort::environment::Environment, EmbedError> {
    if !library.is_file() {
        return Err(EmbedError::RuntimeMissing(library.into()));
    }
    let mut rt = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((loaded, env)) = rt.as_ref() {
        if std::fs::canonicalize(loaded).ok() == std::fs::canonicalize(library).ok() {
            return Ok(env.clone());
        }
        let message = format!("ONNX Runtime is already loaded from {}", loaded.display());
        return Err(EmbedError::RuntimeLoad { path: library.into(), message });
    }
    let load_err = |message: String| EmbedError::RuntimeLoad { path: library.into(), message };
    let env = ort::init_from(library).map_err(|e| load_err(e.to_string()))?.with_name("hotelmatch").build().map_err(|e| load_err(e.to_string()))?;
    *rt = Some((library.into(), env.clone()));
    Ok(env)
}

/// A preprocessed input at one scale.
struct Prepared {
    width: usize,
    height: usize,
    chw: Vec<f32>,
    keep: Option<Vec<bool>>,
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

impl Embedder {
    /// Loads the runtime and the model described by `card`.
    pub fn new(card: ModelCard, ort_library: &Path, opts: EmbedOptions, limits: Limits) -> Result<Self, EmbedError> {
        let onnx = card.onnx_path()?;
        if (opts.pooling == Pooling::Multiscale || opts.resize == Resize::Aspect || opts.input_size != 0) && !card.dynamic {
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
        for name in std::iter::once(&card.feature_map).chain(card.logits.as_ref()) {
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

    fn scales(&self) -> &'static [f32] {
        match self.opts.pooling {
            Pooling::Multiscale => &[std::f32::consts::FRAC_1_SQRT_2, 1.0, std::f32::consts::SQRT_2],
            _ => &[1.0],
        }
    }

    /// Network input size for a photo of `w` x `h` at `scale`.
    fn target_size(&self, w: u32, h: u32, scale: f32) -> (u32, u32) {
        let (bw, bh) = self.base_size();
        let stride = self.card.stride as f32;
        let round = |v: f32| ((v / stride).round().max(1.0) * stride) as u32;
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
    fn prepare(&self, input: &Input) -> Result<(Vec<Prepared>, (u32, u32)), EmbedError> {
        // Decode just large enough that every input size is reached by shrinking.
        let need = |w: u32, h: u32| {
            let sizes = self.scales().iter().map(|&s| self.target_size(w, h, s));
            Some(sizes.fold((1, 1), |(a, b), (tw, th)| (a.max(tw), b.max(th))))
        };
        let d = decode::decode_sized(input.bytes, &self.limits, &need)?;
        let (fw, fh) = (d.full_width, d.full_height);
        let mask = match (input.mask, &d.transparent) {
            (Some(m), _) => Some(m.clone()),
            (None, Some(t)) => Some(Mask::Bitmap(t.clone())),
            (None, None) => None,
        };
        let mut out = Vec::with_capacity(self.scales().len());
        for &scale in self.scales() {
            let (tw, th) = self.target_size(fw, fh, scale);
            let chw = self.to_tensor(&d.rgb, tw, th)?;
            let (cols, rows) = ((tw / self.card.stride) as usize, (th / self.card.stride) as usize);
            let keep = match &mask {
                Some(m) => Some(m.keep(fw, fh, cols.max(1), rows.max(1))?),
                None => None,
            };
            out.push(Prepared { width: tw as usize, height: th as usize, chw, keep });
        }
        Ok((out, (fw, fh)))
    }

    /// Resizes to `w` x `h` and normalises into a CHW float tensor.
    fn to_tensor(&self, rgb: &RgbImage, w: u32, h: u32) -> Result<Vec<f32>, EmbedError> {
        let resized;
        let pixels: &[u8] = if rgb.dimensions() == (w, h) {
            rgb.as_raw()
        } else {
            let src = fr::images::ImageRef::new(rgb.width(), rgb.height(), rgb.as_raw(), fr::PixelType::U8x3)
                .map_err(|e| EmbedError::Unsupported(format!("resize: {e}")))?;
            let mut dst = fr::images::Image::new(w, h, fr::PixelType::U8x3);
            let opts = fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear));
            fr::Resizer::new().resize(&src, &mut dst, &opts).map_err(|e| EmbedError::Unsupported(format!("resize: {e}")))?;
            resized = dst.into_vec();
            &resized
        };
        let plane = (w * h) as usize;
        let mut chw = vec![0f32; 3 * plane];
        let order = match self.card.color {
            ColorOrder::Rgb => [0, 1, 2],
            ColorOrder::Bgr => [2, 1, 0],
        };
        let (p0, rest) = chw.split_at_mut(plane);
        let (p1, p2) = rest.split_at_mut(plane);
        for (i, px) in pixels.chunks_exact(3).enumerate() {
            p0[i] = self.lut[order[0]][px[order[0]] as usize];
            p1[i] = self.lut[order[1]][px[order[1]] as usize];
            p2[i] = self.lut[order[2]][px[order[2]] as usize];
        }
        Ok(chw)
    }

    /// Runs the network on same-sized inputs and returns their feature maps (and logits).
    fn infer(&self, batch: &[&Prepared]) -> Result<Vec<(FeatureMap, Option<Vec<f32>>)>, EmbedError> {
        let (w, h) = (batch[0].width, batch[0].height);
        let mut data = Vec::with_capacity(batch.len() * 3 * w * h);
        for p in batch {
            data.extend_from_slice(&p.chw);
        }
        let array = ndarray::Array4::from_shape_vec((batch.len(), 3, h, w), data).map_err(|e| EmbedError::Runtime(e.to_string()))?;
        let tensor = ort::value::Tensor::from_array(array).map_err(|e| EmbedError::Runtime(e.to_string()))?;
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let outputs = session
            .run(ort::inputs![self.card.input.as_str() => tensor])
            .map_err(|e| EmbedError::Runtime(e.to_string()))?;
        let (shape, values) = outputs[self.card.feature_map.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| EmbedError::BadOutput(e.to_string()))?;
        let maps = split_feature_maps(&self.card, shape, values, batch.len(), w / self.card.stride as usize, h / self.card.stride as usize)?;
        let logits: Vec<Option<Vec<f32>>> = match &self.card.logits {
            Some(name) => {
                let (_, l) = outputs[name.as_str()].try_extract_tensor::<f32>().map_err(|e| EmbedError::BadOutput(e.to_string()))?;
                let per = l.len() / batch.len();
                l.chunks_exact(per).map(|c| Some(c.to_vec())).collect()
            }
            None => vec![None; batch.len()],
        };
        Ok(maps.into_iter().zip(logits).collect())
    }

    /// Embeds each input; one bad photo does not fail the others.
    pub fn embed(&self, inputs: &[Input]) -> Vec<Result<Embedding, EmbedError>> {
        self.run(inputs, false).into_iter().map(|r| r.map(|(e, _)| e)).collect()
    }

    /// Embeds one photo.
    pub fn embed_one(&self, bytes: &[u8], mask: Option<&Mask>) -> Result<Embedding, EmbedError> {
        self.embed(&[Input { bytes, mask }]).pop().unwrap_or_else(|| Err(EmbedError::Unsupported("no input".into())))
    }

    /// ImageNet-1k probabilities of one photo, for models whose card names `logits`.
    pub fn classify(&self, bytes: &[u8]) -> Result<Vec<f32>, EmbedError> {
        if self.card.logits.is_none() {
            return Err(EmbedError::Unsupported(format!("model '{}' has no classifier output", self.card.name)));
        }
        let (_, logits) = self.run(&[Input { bytes, mask: None }], true).pop().unwrap_or_else(|| Err(EmbedError::Unsupported("no input".into())))?;
        let logits = logits.ok_or_else(|| EmbedError::BadOutput("no logits".into()))?;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
        let sum: f32 = exp.iter().sum();
        Ok(exp.into_iter().map(|e| e / sum).collect())
    }

    fn run(&self, inputs: &[Input], want_logits: bool) -> Vec<Result<(Embedding, Option<Vec<f32>>), EmbedError>> {
        // One photo is prepared on this thread: waking the pool would cost more than it saves.
        let prepared: Vec<Result<(Vec<Prepared>, (u32, u32)), EmbedError>> = if inputs.len() == 1 {
            inputs.iter().map(|i| self.prepare(i)).collect()
        } else {
            inputs.par_iter().map(|i| self.prepare(i)).collect()
        };
        // Group every (input, scale) by tensor shape, so each inference call is one batch.
        let mut groups: std::collections::BTreeMap<(usize, usize), Vec<(usize, usize)>> = Default::default();
        for (i, p) in prepared.iter().enumerate() {
            if let Ok((scales, _)) = p {
                for (s, prep) in scales.iter().enumerate() {
                    groups.entry((prep.width, prep.height)).or_default().push((i, s));
                }
            }
        }
        let n_scales = self.scales().len();
        let mut maps: Vec<Vec<Option<(FeatureMap, Option<Vec<f32>>)>>> = (0..inputs.len()).map(|_| (0..n_scales).map(|_| None).collect()).collect();
        let mut failed: Vec<Option<String>> = vec![None; inputs.len()];
        for members in groups.values() {
            for chunk in members.chunks(self.opts.batch.max(1)) {
                // Only inputs that prepared fine were grouped, so this keeps every member.
                let batch: Vec<&Prepared> = chunk.iter().filter_map(|&(i, s)| prepared[i].as_ref().ok().map(|(p, _)| &p[s])).collect();
                match self.infer(&batch) {
                    Ok(out) => {
                        for (&(i, s), fm) in chunk.iter().zip(out) {
                            maps[i][s] = Some(fm);
                        }
                    }
                    Err(e) => chunk.iter().for_each(|&(i, _)| failed[i] = Some(e.to_string())),
                }
            }
        }
        prepared
            .into_iter()
            .zip(maps)
            .zip(failed)
            .map(|((prep, fms), fail)| {
                let (scales, photo_size) = prep?;
                if let Some(msg) = fail {
                    return Err(EmbedError::Runtime(msg));
                }
                let mut vector = vec![0f32; self.card.dim];
                let mut logits = None;
                let base = self.scales().iter().position(|&s| s == 1.0).unwrap_or(0);
                let mut cells = (0, 0);
                let mut base_map = None;
                for (s, (prep, fm)) in scales.iter().zip(fms).enumerate() {
                    let (fm, l) = fm.ok_or_else(|| EmbedError::Runtime("missing inference output".into()))?;
                    let p = if self.opts.pooling == Pooling::Gap { 1.0 } else { self.opts.gem_p };
                    let mut v = pool::gem(&fm, prep.keep.as_deref(), p);
                    pool::l2_normalize(&mut v);
                    vector.iter_mut().zip(&v).for_each(|(a, b)| *a += b);
                    if s == base {
                        let total = fm.width * fm.height;
                        cells = (prep.keep.as_ref().map_or(total, |k| k.iter().filter(|&&k| k).count()), total);
                        if want_logits {
                            logits = l;
                        }
                        base_map = Some((fm, prep.keep.clone()));
                    }
                }
                pool::l2_normalize(&mut vector);
                Ok((Embedding { vector, cells_used: cells.0, cells_total: cells.1, photo_size, cells: base_map }, logits))
            })
            .collect()
    }
}

/// Splits a batched feature-map tensor into per-image cell-major maps.
fn split_feature_maps(card: &ModelCard, shape: &[i64], values: &[f32], n: usize, cols: usize, rows: usize) -> Result<Vec<FeatureMap>, EmbedError> {
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
