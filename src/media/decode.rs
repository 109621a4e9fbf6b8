//! Decode: image bytes to upright 8-bit RGB pixels, within size limits.
//!
//! JPEG goes through libjpeg-turbo (the `mozjpeg` crate, built from source) so that it can
//! be decoded at 1/2, 1/4 or 1/8 scale straight from the DCT when the caller only needs a
//! small image (the embedder needs ~224 px, phone photos are 4000 px): that is most of the
//! preprocessing time, and how Pillow's `draft` does it. Everything else goes through `image`.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, GrayImage, ImageDecoder, ImageReader, RgbImage};
use serde::{Deserialize, Serialize};

/// Limits applied before any pixel is decoded.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted encoded file, in bytes.
    pub max_bytes: usize,
    /// Largest accepted width x height of the full-resolution image.
    pub max_pixels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_bytes: 40 << 20, max_pixels: 100_000_000 }
    }
}

/// Why an image could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Zero bytes were given.
    #[error("the image is empty (0 bytes)")]
    Empty,
    /// The encoded file is over `Limits::max_bytes`.
    #[error("the image is {bytes} bytes, over the limit of {max} bytes")]
    TooLarge { bytes: usize, max: usize },
    /// The image has more pixels than `Limits::max_pixels`.
    #[error("the image is {width}x{height} pixels, over the limit of {max} pixels")]
    TooManyPixels { width: u64, height: u64, max: u64 },
    /// The bytes are not in a format we decode.
    #[error("unsupported or unrecognised image format (JPEG, PNG, WebP, HEIC, AVIF, GIF, BMP and TIFF are accepted)")]
    UnsupportedFormat,
    /// The format was recognised but the data is broken.
    #[error("the image data is corrupt: {0}")]
    Corrupt(String),
    /// The format was recognised but its decoder is not installed (libheif for HEIC/AVIF).
    #[error("{0}")]
    Unavailable(String),
}

/// A decoded, upright RGB image.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Pixels after EXIF orientation, possibly reduced in scale (see `decode`).
    pub rgb: RgbImage,
    /// Width of the upright image at full resolution.
    pub full_width: u32,
    /// Height of the upright image at full resolution.
    pub full_height: u32,
    /// Pixels that were transparent (alpha < 50%), same size as `rgb`; `None` if there were none.
    /// An investigator who erased a victim to transparency has made a mask already.
    pub transparent: Option<GrayImage>,
}

/// Decodes `bytes` into an upright RGB image.
///
/// `min_size` (width, height) lets the decoder return a smaller image, as long as both
/// sides are at least that large (or the full image, if it is smaller); `None` decodes at
/// full resolution.
pub fn decode(bytes: &[u8], limits: &Limits, min_size: Option<(u32, u32)>) -> Result<Decoded, DecodeError> {
    decode_sized(bytes, limits, &|_, _| min_size)
}

/// Like `decode`, with the minimum size chosen from the upright full size once the header is read.
pub fn decode_sized(bytes: &[u8], limits: &Limits, min_size: &dyn Fn(u32, u32) -> Option<(u32, u32)>) -> Result<Decoded, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    if bytes.len() > limits.max_bytes {
        return Err(DecodeError::TooLarge { bytes: bytes.len(), max: limits.max_bytes });
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        decode_jpeg(bytes, limits, min_size)
    } else if super::heif::is_heif(bytes) {
        let rgb = super::heif::decode(bytes, limits)?;
        Ok(Decoded { full_width: rgb.width(), full_height: rgb.height(), rgb, transparent: None })
    } else {
        decode_other(bytes, limits)
    }
}

/// Width x height of an encoded image, read from its header alone (nothing is decoded);
/// `None` when the header cannot be read (decoding will then say why).
pub fn pixel_count(bytes: &[u8]) -> Option<u64> {
    if super::heif::is_heif(bytes) {
        return super::heif::dimensions(bytes).ok().map(|(w, h)| u64::from(w) * u64::from(h));
    }
    let (w, h) = ImageReader::new(Cursor::new(bytes)).with_guessed_format().ok()?.into_dimensions().ok()?;
    Some(u64::from(w) * u64::from(h))
}

pub(super) fn check_pixels(width: u64, height: u64, limits: &Limits) -> Result<(), DecodeError> {
    if width == 0 || height == 0 {
        return Err(DecodeError::Corrupt(format!("image has zero size {width}x{height}")));
    }
    if width.saturating_mul(height) > limits.max_pixels {
        return Err(DecodeError::TooManyPixels { width, height, max: limits.max_pixels });
    }
    Ok(())
}

fn swaps_axes(o: Orientation) -> bool {
    matches!(o, Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH)
}

/// A libjpeg error, carried out of the C decoder by unwinding. `resume_unwind` skips the
/// panic hook, so a corrupt upload does not print a panic message.
struct JpegFailure(String);

/// libjpeg's message for its current error code.
unsafe fn jpeg_message(cinfo: &mut mozjpeg_sys::jpeg_common_struct) -> String {
    type Format = unsafe extern "C-unwind" fn(&mut mozjpeg_sys::jpeg_common_struct, &mut [u8; 80]);
    let mut buf = [0u8; 80];
    if let Some(f) = cinfo.err.as_ref().and_then(|e| e.format_message) {
        // mozjpeg-sys declares the buffer immutable; libjpeg writes the message into it.
        let f: Format = std::mem::transmute(f);
        f(cinfo, &mut buf);
    }
    String::from_utf8_lossy(buf.split(|&c| c == 0).next().unwrap_or_default()).into_owned()
}

unsafe extern "C-unwind" fn jpeg_error_exit(cinfo: &mut mozjpeg_sys::jpeg_common_struct) {
    let msg = jpeg_message(cinfo);
    std::panic::resume_unwind(Box::new(JpegFailure(msg)));
}

unsafe extern "C-unwind" fn jpeg_emit_message(cinfo: &mut mozjpeg_sys::jpeg_common_struct, level: std::os::raw::c_int) {
    // Warnings (level -1) are mostly harmless quirks of cameras; a truncated file is not: libjpeg
    // would fill the missing part with grey, and we would index a broken photo.
    let truncated = cinfo.err.as_ref().is_some_and(|e| e.msg_code == mozjpeg_sys::JWRN_JPEG_EOF as std::os::raw::c_int);
    if level < 0 && truncated {
        jpeg_error_exit(cinfo);
    }
}

/// JPEG through libjpeg-turbo (mozjpeg), which can decode at 1/8, 1/4 or 1/2 scale from the DCT.
fn decode_jpeg(bytes: &[u8], limits: &Limits, min_size: &dyn Fn(u32, u32) -> Option<(u32, u32)>) -> Result<Decoded, DecodeError> {
    // Unwind-safe in fact: the only state the decoder touches is its own, dropped on the way out.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode_jpeg_unguarded(bytes, limits, min_size))) {
        Ok(result) => result,
        Err(payload) => match payload.downcast::<JpegFailure>() {
            Ok(failure) => Err(DecodeError::Corrupt(failure.0)),
            Err(other) => std::panic::resume_unwind(other),
        },
    }
}

fn decode_jpeg_unguarded(bytes: &[u8], limits: &Limits, min_size: &dyn Fn(u32, u32) -> Option<(u32, u32)>) -> Result<Decoded, DecodeError> {
    let io = |e: std::io::Error| DecodeError::Corrupt(e.to_string());
    // SAFETY: a zeroed jpeg_error_mgr is what jpeg_std_error expects to fill in.
    let mut err: mozjpeg_sys::jpeg_error_mgr = unsafe { std::mem::zeroed() };
    unsafe { mozjpeg_sys::jpeg_std_error(&mut err) };
    err.error_exit = Some(jpeg_error_exit);
    err.emit_message = Some(jpeg_emit_message);
    let markers = [mozjpeg::Marker::APP(1), mozjpeg::Marker::APP(14)];
    let mut dec = mozjpeg::Decompress::builder().with_err(err).with_markers(&markers).from_mem(bytes).map_err(io)?;
    let (w, h) = (dec.width() as u32, dec.height() as u32);
    check_pixels(w.into(), h.into(), limits)?;
    let mut orientation = Orientation::NoTransforms;
    let mut adobe = false;
    for m in dec.markers() {
        match m.marker {
            mozjpeg::Marker::APP(1) => {
                if let Some(o) = m.data.strip_prefix(b"Exif\0\0").and_then(exif_orientation).and_then(Orientation::from_exif) {
                    orientation = o;
                }
            }
            mozjpeg::Marker::APP(14) => adobe |= m.data.starts_with(b"Adobe"),
            _ => {}
        }
    }
    let (full_width, full_height) = if swaps_axes(orientation) { (h, w) } else { (w, h) };
    if let Some((mut need_w, mut need_h)) = min_size(full_width, full_height) {
        if swaps_axes(orientation) {
            std::mem::swap(&mut need_w, &mut need_h);
        }
        let scaled = |len: u32, eighths: u32| (len * eighths).div_ceil(8);
        let eighths = [1u32, 2, 4, 8].into_iter().find(|&e| scaled(w, e) >= need_w && scaled(h, e) >= need_h).unwrap_or(8);
        dec.scale(eighths as u8);
        if eighths < 8 {
            // The result is resized down anyway: smooth chroma upsampling is wasted work.
            dec.do_fancy_upsampling(false);
        }
    }
    let (rgb, ow, oh) = match dec.image().map_err(io)? {
        mozjpeg::Format::CMYK(mut s) => {
            let (ow, oh) = (s.width() as u32, s.height() as u32);
            let px: Vec<u8> = s.read_scanlines().map_err(io)?;
            s.finish().map_err(io)?;
            (cmyk_to_rgb(&px, adobe), ow, oh)
        }
        mozjpeg::Format::RGB(mut s) | mozjpeg::Format::Gray(mut s) => {
            let grey = s.color_space() == mozjpeg::ColorSpace::JCS_GRAYSCALE;
            let (ow, oh) = (s.width() as u32, s.height() as u32);
            let px: Vec<u8> = s.read_scanlines().map_err(io)?;
            s.finish().map_err(io)?;
            (if grey { px.iter().flat_map(|&l| [l, l, l]).collect() } else { px }, ow, oh)
        }
    };
    let rgb = RgbImage::from_raw(ow, oh, rgb).ok_or_else(|| DecodeError::Corrupt("decoded size does not match the header".into()))?;
    let mut img = DynamicImage::ImageRgb8(rgb);
    img.apply_orientation(orientation);
    Ok(Decoded { rgb: img.into_rgb8(), full_width, full_height, transparent: None })
}

/// CMYK to RGB, uncalibrated. Adobe's writers (most CMYK JPEGs) store the ink values inverted.
fn cmyk_to_rgb(cmyk: &[u8], adobe_inverted: bool) -> Vec<u8> {
    cmyk.chunks_exact(4)
        .flat_map(|p| {
            let ink = |v: u8| u16::from(if adobe_inverted { 255 - v } else { v });
            let k = 255 - ink(p[3]);
            [p[0], p[1], p[2]].map(|c| (((255 - ink(c)) * k + 127) / 255) as u8)
        })
        .collect()
}

/// The orientation tag (1-8) of a TIFF-structured EXIF block.
pub fn exif_orientation(exif: &[u8]) -> Option<u8> {
    // Phones and editors write slightly broken EXIF (an offset past the end, a bad later
    // IFD): keep what was read before the damage rather than losing the orientation.
    let data = exif::Reader::new()
        .continue_on_error(true)
        .read_raw(exif.to_vec())
        .or_else(|e| e.distill_partial_result(|errors| tracing::debug!("EXIF read with {} errors", errors.len())))
        .ok()?;
    let field = data.get_field(exif::Tag::Orientation, exif::In::PRIMARY)?;
    field.value.get_uint(0).and_then(|v| u8::try_from(v).ok())
}

fn decode_other(bytes: &[u8], limits: &Limits) -> Result<Decoded, DecodeError> {
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    if reader.format().is_none() {
        return Err(DecodeError::UnsupportedFormat);
    }
    let mut decoder = reader.into_decoder().map_err(map_image_error)?;
    let (w, h) = decoder.dimensions();
    check_pixels(w.into(), h.into(), limits)?;
    let mut image_limits = image::Limits::default();
    // Allow what max_pixels allows at 16 bits x 4 channels, plus room for the decoder itself.
    image_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    decoder.set_limits(image_limits).map_err(map_image_error)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(map_image_error)?;
    img.apply_orientation(orientation);
    let transparent = if img.color().has_alpha() { transparent_pixels(&img) } else { None };
    let rgb = flatten_alpha(img);
    Ok(Decoded { full_width: rgb.width(), full_height: rgb.height(), rgb, transparent })
}

fn map_image_error(e: image::ImageError) -> DecodeError {
    match e {
        image::ImageError::Unsupported(_) => DecodeError::UnsupportedFormat,
        image::ImageError::Limits(l) => DecodeError::Corrupt(format!("decoder limit: {l}")),
        other => DecodeError::Corrupt(other.to_string()),
    }
}

fn transparent_pixels(img: &DynamicImage) -> Option<GrayImage> {
    let rgba = img.to_rgba8();
    let mask = GrayImage::from_fn(rgba.width(), rgba.height(), |x, y| image::Luma([if rgba.get_pixel(x, y)[3] < 128 { 255 } else { 0 }]));
    mask.pixels().any(|p| p[0] != 0).then_some(mask)
}

/// Composites onto mid-grey: white or black would add edges that are not in the room.
fn flatten_alpha(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y);
        let a = u16::from(p[3]);
        image::Rgb([0, 1, 2].map(|c| ((u16::from(p[c]) * a + 128 * (255 - a) + 127) / 255) as u8))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orientation_survives_slightly_broken_exif() {
        // IFD0: Orientation 6, then an ImageDescription whose data lies past the end.
        let mut tiff = b"II*\0\x08\0\0\0\x02\0".to_vec();
        tiff.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0]);
        tiff.extend_from_slice(&[0x0E, 0x01, 2, 0, 100, 0, 0, 0, 0xFF, 0xFF, 0, 0]);
        tiff.extend_from_slice(&[0, 0, 0, 0]);
        assert!(exif::Reader::new().read_raw(tiff.clone()).is_err(), "a strict reader refuses it");
        assert_eq!(exif_orientation(&tiff), Some(6));
    }

    fn encode(img: &DynamicImage, fmt: image::ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, fmt).unwrap();
        out.into_inner()
    }

    #[test]
    fn rejects_empty_and_garbage() {
        let l = Limits::default();
        assert!(matches!(decode(&[], &l, None), Err(DecodeError::Empty)));
        assert!(matches!(decode(b"definitely not an image", &l, None), Err(DecodeError::UnsupportedFormat)));
        assert!(matches!(decode(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0], &l, None), Err(DecodeError::Corrupt(_))));
    }

    #[test]
    fn byte_and_pixel_limits_apply_before_decoding() {
        let img = DynamicImage::ImageRgb8(RgbImage::new(100, 80));
        let png = encode(&img, image::ImageFormat::Png);
        let small = Limits { max_bytes: 10, max_pixels: 1_000_000 };
        assert!(matches!(decode(&png, &small, None), Err(DecodeError::TooLarge { .. })));
        let few = Limits { max_bytes: 1 << 20, max_pixels: 100 * 79 };
        assert!(matches!(decode(&png, &few, None), Err(DecodeError::TooManyPixels { width: 100, height: 80, .. })));
    }

    #[test]
    fn jpeg_reduced_scale_keeps_both_sides_large_enough() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_fn(1600, 900, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])));
        let jpg = encode(&img, image::ImageFormat::Jpeg);
        let d = decode(&jpg, &Limits::default(), Some((224, 224))).unwrap();
        assert_eq!((d.full_width, d.full_height), (1600, 900));
        assert!(d.rgb.width() >= 224 && d.rgb.height() >= 224, "{}x{}", d.rgb.width(), d.rgb.height());
        assert!(d.rgb.width() < 1600, "should have decoded at reduced scale");
        let full = decode(&jpg, &Limits::default(), None).unwrap();
        assert_eq!(full.rgb.dimensions(), (1600, 900));
    }

    #[test]
    fn alpha_becomes_a_transparency_mask() {
        let img =
            DynamicImage::ImageRgba8(image::RgbaImage::from_fn(40, 30, |x, _| image::Rgba([200, 10, 10, if x < 10 { 0 } else { 255 }])));
        let d = decode(&encode(&img, image::ImageFormat::Png), &Limits::default(), None).unwrap();
        let t = d.transparent.expect("transparent pixels reported");
        assert_eq!(t.get_pixel(5, 5)[0], 255);
        assert_eq!(t.get_pixel(20, 5)[0], 0);
        assert_eq!(d.rgb.get_pixel(20, 5).0, [200, 10, 10]);
    }

    #[test]
    fn sixteen_bit_and_grey_decode_to_rgb() {
        let img16 = DynamicImage::ImageRgb16(image::ImageBuffer::from_pixel(8, 8, image::Rgb([65535u16, 0, 32768])));
        let d = decode(&encode(&img16, image::ImageFormat::Png), &Limits::default(), None).unwrap();
        assert_eq!(d.rgb.get_pixel(0, 0).0, [255, 0, 128]);
        let grey = DynamicImage::ImageLuma8(GrayImage::from_pixel(8, 8, image::Luma([77])));
        let d = decode(&encode(&grey, image::ImageFormat::Jpeg), &Limits::default(), None).unwrap();
        let p = d.rgb.get_pixel(3, 3).0;
        assert!(p.iter().all(|&c| (c as i32 - 77).abs() <= 2), "{p:?}");
    }
}
