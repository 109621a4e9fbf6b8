//! Photo store: content-addressed files, written atomically, without metadata.
//!
//! A stored copy carries no EXIF, XMP, IPTC or comments: an uploader's phone writes GPS
//! coordinates and the device into EXIF, and they must not leak. Orientation is applied first.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::decode::{self, Decoded};

/// Why a photo could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file system failed.
    #[error("photo store {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The photo could not be re-encoded.
    #[error("cannot encode the stored copy: {0}")]
    Encode(String),
    /// Not a valid content address.
    #[error("not a photo id: {0:?}")]
    BadId(String),
    /// Nothing is stored under this address.
    #[error("no stored photo {0}")]
    Missing(String),
}

/// Content-addressed photo files under one directory.
pub struct PhotoStore {
    root: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// Hex sha256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    // Unique per process and call: two writers of the same file never share a temporary.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{}.{}-{n}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("file"), std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all(); // makes the rename durable; not all file systems allow it
    }
    Ok(())
}

impl PhotoStore {
    /// Opens (creating) the store under `root`.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(root).map_err(io_err(root))?;
        Ok(PhotoStore { root: root.to_path_buf() })
    }

    /// Where the photo with this sha256 lives.
    pub fn path(&self, sha256: &str) -> Result<PathBuf, StoreError> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            return Err(StoreError::BadId(sha256.chars().take(80).collect()));
        }
        Ok(self.root.join(&sha256[..2]).join(&sha256[2..4]).join(sha256))
    }

    /// Stores already-cleaned bytes; returns their sha256. Storing the same bytes twice is a no-op.
    pub fn put(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let sha = sha256_hex(bytes);
        let path = self.path(&sha)?;
        if !path.exists() {
            write_atomic(&path, bytes)?;
        }
        Ok(sha)
    }

    /// The stored bytes of a photo.
    pub fn get(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path(sha256)?;
        std::fs::read(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => StoreError::Missing(sha256.to_string()),
            _ => StoreError::Io { path: path.clone(), source },
        })
    }
}

/// JPEG segments before the scan: (marker, start of the marker, end of the segment).
fn jpeg_segments(b: &[u8]) -> Option<(Vec<(u8, usize, usize)>, usize)> {
    let mut segs = Vec::new();
    let mut i = 2;
    loop {
        if i + 4 > b.len() || b[i] != 0xFF {
            return None;
        }
        let marker = b[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        let len = usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]]));
        let end = i + 2 + len;
        if len < 2 || end > b.len() {
            return None;
        }
        if marker == 0xDA {
            return Some((segs, i)); // start of scan: the rest is image data
        }
        segs.push((marker, i, end));
        i = end;
    }
}

/// A copy of the photo safe to keep: JPEGs that need no rotation lose their metadata
/// segments losslessly (EXIF/XMP in APP1, IPTC in APP13, comments, other APPn; JFIF,
/// ICC and Adobe's colour marker stay); everything else is re-encoded from the upright
/// pixels (JPEG quality 92, or PNG for lossless sources).
pub fn clean_copy(bytes: &[u8], decoded: &Decoded) -> Result<Vec<u8>, StoreError> {
    if bytes.starts_with(&[0xFF, 0xD8]) {
        if let Some((segs, scan)) = jpeg_segments(bytes) {
            let rotated = segs.iter().any(|&(m, s, e)| {
                m == 0xE1 && bytes[s + 4..e].strip_prefix(b"Exif\0\0").and_then(decode::exif_orientation).is_some_and(|o| o != 1)
            });
            if !rotated {
                let mut out = bytes[..2].to_vec();
                for &(m, s, e) in &segs {
                    let keep = !(0xE0..=0xEF).contains(&m) || matches!(m, 0xE0 | 0xE2 | 0xEE);
                    if keep && m != 0xFE {
                        out.extend_from_slice(&bytes[s..e]);
                    }
                }
                out.extend_from_slice(&bytes[scan..]);
                return Ok(out);
            }
            return encode(decoded, image::ImageFormat::Jpeg);
        }
    }
    encode(decoded, image::ImageFormat::Png)
}

/// A JPEG of the photo no larger than `max_side` on either side (never enlarged).
pub fn thumbnail(bytes: &[u8], limits: &decode::Limits, max_side: u32) -> Result<Vec<u8>, StoreError> {
    let max_side = max_side.max(1);
    // The stored copy passed these limits when it came in; a failure here is a damaged store.
    let mut d = decode::decode(bytes, limits, Some((max_side, max_side))).map_err(|e| StoreError::Encode(e.to_string()))?;
    let (w, h) = d.rgb.dimensions();
    if w.max(h) > max_side {
        let scale = f64::from(max_side) / f64::from(w.max(h));
        let (tw, th) = (((f64::from(w) * scale).round() as u32).max(1), ((f64::from(h) * scale).round() as u32).max(1));
        d.rgb = image::imageops::thumbnail(&d.rgb, tw, th);
    }
    encode(&d, image::ImageFormat::Jpeg)
}

fn encode(d: &Decoded, format: image::ImageFormat) -> Result<Vec<u8>, StoreError> {
    let mut out = std::io::Cursor::new(Vec::new());
    let img = image::DynamicImage::ImageRgb8(d.rgb.clone());
    match format {
        image::ImageFormat::Jpeg => img.write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 92)),
        f => img.write_to(&mut out, f),
    }
    .map_err(|e| StoreError::Encode(e.to_string()))?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_ids_are_refused() {
        let dir = std::env::temp_dir().join(format!("hm-store-{}", std::process::id()));
        let s = PhotoStore::open(&dir).unwrap();
        assert!(s.path("../../etc/passwd").is_err());
        assert!(s.path(&"A".repeat(64)).is_err());
        let sha = s.put(b"hello").unwrap();
        assert_eq!(s.get(&sha).unwrap(), b"hello");
        assert_eq!(s.put(b"hello").unwrap(), sha);
        std::fs::remove_dir_all(dir).ok();
    }
}
