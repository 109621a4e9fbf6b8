//! Clean copies: what is stored of a photo is its pixels, without metadata.
//!
//! A stored copy carries no EXIF, XMP, IPTC or comments: an uploader's phone writes GPS
//! coordinates and the device into EXIF, and they must not leak. Orientation is applied first.

use crate::media::decode::{self, Decoded};

/// A photo could not be encoded (or, for a thumbnail, decoded again).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode the photo: {0}")]
pub struct EncodeError(pub String);

/// What a JPEG's segments are worth to a stored copy.
enum Keep {
    /// Needed to decode the pixels (tables, frame, scans, restart interval, Adobe colour transform).
    Verbatim,
    /// JFIF: kept, rewritten without its optional thumbnail.
    Jfif,
    /// Metadata, thumbnails, secondary images: dropped.
    Drop,
}

/// Sorts a JPEG segment; `None` for markers this code does not know (the photo is then re-encoded).
fn keep_segment(marker: u8, payload: &[u8]) -> Option<Keep> {
    Some(match marker {
        // SOF0..SOF15 (C4 DHT and CC DAC are tables), DQT, DNL, DRI.
        0xC0..=0xCF | 0xDB..=0xDD => Keep::Verbatim,
        0xE0 if payload.starts_with(b"JFIF\0") => Keep::Jfif,
        // The ICC profile is kept on purpose: it fixes the colours of the evidence and names a
        // colour space, not a person or a place.
        0xE2 if payload.starts_with(b"ICC_PROFILE\0") => Keep::Verbatim,
        0xEE if payload.starts_with(b"Adobe") => Keep::Verbatim,
        // Every other APPn (EXIF, XMP, MPF, JFXX thumbnails, IPTC, maker data) and comments.
        0xE0..=0xEF | 0xFE => Keep::Drop,
        _ => return None,
    })
}

/// A JFIF APP0 segment with the original version and density but no thumbnail.
fn jfif_without_thumbnail(payload: &[u8]) -> Vec<u8> {
    let mut p = payload.get(..12).map_or_else(|| b"JFIF\0\x01\x01\0\0\x01\0\x01".to_vec(), <[u8]>::to_vec);
    p.extend_from_slice(&[0, 0]); // thumbnail 0 x 0
    let mut seg = vec![0xFF, 0xE0];
    seg.extend_from_slice(&(p.len() as u16 + 2).to_be_bytes());
    seg.extend_from_slice(&p);
    seg
}

/// The JPEG rebuilt from the segments that decoding needs, losslessly (the entropy-coded
/// scans are copied as they are), ending at the first end-of-image marker: no APPn but JFIF,
/// ICC and Adobe, no comments, nothing appended (motion photos, MPF secondary images).
/// `None` when the stream is not plain enough to rebuild with confidence.
fn jpeg_pixels_only(b: &[u8]) -> Option<Vec<u8>> {
    let mut out = b.get(..2)?.to_vec();
    let mut i = 2;
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        while b.get(i) == Some(&0xFF) && b.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        if b.get(i) != Some(&0xFF) {
            return None;
        }
        let marker = *b.get(i + 1)?;
        if marker == 0xD9 {
            out.extend_from_slice(&[0xFF, 0xD9]);
            return Some(out);
        }
        let len = usize::from(u16::from_be_bytes([*b.get(i + 2)?, *b.get(i + 3)?]));
        let end = i + 2 + len;
        if len < 2 || end > b.len() {
            return None;
        }
        let payload = &b[i + 4..end];
        if marker == 0xDA {
            // Start of scan: copy the header and the entropy-coded data up to the next marker
            // (0xFF00 is a stuffed byte, 0xFFD0..D7 restart markers belong to the scan).
            let mut j = end;
            loop {
                match (b.get(j), b.get(j + 1)) {
                    (Some(0xFF), Some(0x00 | 0xD0..=0xD7 | 0xFF)) => j += if b[j + 1] == 0xFF { 1 } else { 2 },
                    (Some(0xFF), Some(_)) => break,
                    (Some(_), _) => j += 1,
                    (None, _) => return None, // no end-of-image: truncated
                }
            }
            out.extend_from_slice(&b[i..j]);
            i = j;
            continue;
        }
        match keep_segment(marker, payload)? {
            Keep::Verbatim => out.extend_from_slice(&b[i..end]),
            Keep::Jfif => out.extend(jfif_without_thumbnail(payload)),
            Keep::Drop => {}
        }
        i = end;
    }
}

/// Whether a JPEG's EXIF asks for a rotation or a mirror (its pixels are then re-encoded upright).
fn jpeg_needs_rotation(b: &[u8]) -> bool {
    let mut i = 2;
    while i + 4 <= b.len() && b[i] == 0xFF && b[i + 1] != 0xDA {
        let end = i + 2 + usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]]));
        let Some(payload) = b.get(i + 4..end) else { return false };
        if b[i + 1] == 0xE1 && payload.strip_prefix(b"Exif\0\0").and_then(decode::exif_orientation).is_some_and(|o| o != 1) {
            return true;
        }
        i = end;
    }
    false
}

/// A copy of the photo that carries its pixels only. Upright JPEGs are rebuilt losslessly
/// (`jpeg_pixels_only`); everything else, and any JPEG that cannot be rebuilt with
/// confidence, is re-encoded from the upright pixels (JPEG quality 92 for JPEG sources, PNG
/// for the others), which writes no metadata at all.
pub fn clean_copy(bytes: &[u8], decoded: &Decoded) -> Result<Vec<u8>, EncodeError> {
    if bytes.starts_with(&[0xFF, 0xD8]) {
        if !jpeg_needs_rotation(bytes) {
            if let Some(clean) = jpeg_pixels_only(bytes) {
                return Ok(clean);
            }
        }
        return encode(decoded, image::ImageFormat::Jpeg);
    }
    // A phone's HEIC is a photo: JPEG, as for JPEG sources (its metadata never left libheif).
    if crate::media::heif::is_heif(bytes) {
        return encode(decoded, image::ImageFormat::Jpeg);
    }
    encode(decoded, image::ImageFormat::Png)
}

/// A JPEG of the photo no larger than `max_side` on either side (never enlarged).
pub fn thumbnail(bytes: &[u8], limits: &decode::Limits, max_side: u32) -> Result<Vec<u8>, EncodeError> {
    let max_side = max_side.max(1);
    // The stored copy passed these limits when it came in; a failure here is a damaged store.
    let mut d = decode::decode(bytes, limits, Some((max_side, max_side))).map_err(|e| EncodeError(e.to_string()))?;
    let (w, h) = d.rgb.dimensions();
    if w.max(h) > max_side {
        let scale = f64::from(max_side) / f64::from(w.max(h));
        let (tw, th) = (((f64::from(w) * scale).round() as u32).max(1), ((f64::from(h) * scale).round() as u32).max(1));
        d.rgb = image::imageops::thumbnail(&d.rgb, tw, th);
    }
    encode(&d, image::ImageFormat::Jpeg)
}

fn encode(d: &Decoded, format: image::ImageFormat) -> Result<Vec<u8>, EncodeError> {
    let mut out = std::io::Cursor::new(Vec::new());
    let img = image::DynamicImage::ImageRgb8(d.rgb.clone());
    match format {
        image::ImageFormat::Jpeg => img.write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 92)),
        f => img.write_to(&mut out, f),
    }
    .map_err(|e| EncodeError(e.to_string()))?;
    Ok(out.into_inner())
}
