//! HEIF: HEIC photos (what iPhones save by default) and AVIF, decoded through libheif, the
//! reference library (Debian's `libheif1`), loaded when first needed as ONNX Runtime is:
//! without it the rest of the program works, and a HEIC photo gets a typed error that says
//! what to install. libheif applies the file's rotation and mirroring, so the pixels come
//! out upright; nothing of the file's metadata (EXIF, GPS, XMP) is read or kept.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

use image::RgbImage;

use super::decode::{DecodeError, Limits};

/// libheif's `struct heif_error`, returned by value.
#[repr(C)]
struct HeifError {
    code: c_int,
    subcode: c_int,
    message: *const c_char,
}

type Ptr = *mut c_void;

/// The few libheif functions used, resolved once.
struct Lib {
    _lib: libloading::Library,
    context_alloc: unsafe extern "C" fn() -> Ptr,
    context_free: unsafe extern "C" fn(Ptr),
    read_from_memory: unsafe extern "C" fn(Ptr, *const c_void, usize, *const c_void) -> HeifError,
    primary_handle: unsafe extern "C" fn(Ptr, *mut Ptr) -> HeifError,
    handle_width: unsafe extern "C" fn(Ptr) -> c_int,
    handle_height: unsafe extern "C" fn(Ptr) -> c_int,
    handle_release: unsafe extern "C" fn(Ptr),
    decode_image: unsafe extern "C" fn(Ptr, *mut Ptr, c_int, c_int, *const c_void) -> HeifError,
    image_width: unsafe extern "C" fn(Ptr, c_int) -> c_int,
    image_height: unsafe extern "C" fn(Ptr, c_int) -> c_int,
    plane: unsafe extern "C" fn(Ptr, c_int, *mut c_int) -> *const u8,
    image_release: unsafe extern "C" fn(Ptr),
}

const COLORSPACE_RGB: c_int = 1;
const CHROMA_INTERLEAVED_RGB: c_int = 10;
const CHANNEL_INTERLEAVED: c_int = 10;

/// Where libheif is looked for: `HOTELMATCH_LIBHEIF`, else the system's.
fn load() -> Result<Lib, String> {
    let names: Vec<String> = std::env::var("HOTELMATCH_LIBHEIF").into_iter().chain(["libheif.so.1".into(), "libheif.so".into()]).collect();
    let mut last = String::new();
    for name in &names {
        // SAFETY: loading libheif runs its initialisers, which only register its codecs.
        match unsafe { libloading::Library::new(name) } {
            Ok(lib) => return resolve(lib),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

fn resolve(lib: libloading::Library) -> Result<Lib, String> {
    // SAFETY: each symbol is declared with libheif's C signature (libheif ≥ 1.1).
    unsafe {
        macro_rules! f {
            ($name:literal) => {
                *lib.get(concat!($name, "\0").as_bytes()).map_err(|e| e.to_string())?
            };
        }
        Ok(Lib {
            context_alloc: f!("heif_context_alloc"),
            context_free: f!("heif_context_free"),
            read_from_memory: f!("heif_context_read_from_memory_without_copy"),
            primary_handle: f!("heif_context_get_primary_image_handle"),
            handle_width: f!("heif_image_handle_get_width"),
            handle_height: f!("heif_image_handle_get_height"),
            handle_release: f!("heif_image_handle_release"),
            decode_image: f!("heif_decode_image"),
            image_width: f!("heif_image_get_width"),
            image_height: f!("heif_image_get_height"),
            plane: f!("heif_image_get_plane_readonly"),
            image_release: f!("heif_image_release"),
            _lib: lib,
        })
    }
}

fn lib() -> Result<&'static Lib, DecodeError> {
    static LIB: OnceLock<Result<Lib, String>> = OnceLock::new();
    LIB.get_or_init(load)
        .as_ref()
        .map_err(|e| DecodeError::Unavailable(format!("HEIC/AVIF photos need libheif (Debian: apt-get install libheif1): {e}")))
}

/// Whether libheif could be loaded (HEIC and AVIF photos are then accepted).
pub fn available() -> bool {
    lib().is_ok()
}

/// Whether `bytes` look like a HEIF file (HEIC, HEIF or AVIF): an ISO-BMFF `ftyp` box with
/// one of their brands.
pub fn is_heif(bytes: &[u8]) -> bool {
    if bytes.len() < 12 || &bytes[4..8] != b"ftyp" {
        return false;
    }
    let size = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let end = size.clamp(12, bytes.len().min(256));
    const BRANDS: [&[u8; 4]; 12] =
        [b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1", b"avif", b"avis"];
    // The major brand, then the compatible ones (the minor version sits between).
    std::iter::once(&bytes[8..12]).chain(bytes[16.min(end)..end].chunks_exact(4)).any(|b| BRANDS.iter().any(|x| &x[..] == b))
}

/// Frees what it holds when dropped (a libheif object and its release function).
struct Owned(Ptr, unsafe extern "C" fn(Ptr));

impl Drop for Owned {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from libheif and is released once, with its own function.
            unsafe { (self.1)(self.0) }
        }
    }
}

fn check(e: HeifError) -> Result<(), DecodeError> {
    if e.code == 0 {
        return Ok(());
    }
    let message = if e.message.is_null() {
        format!("libheif error {}.{}", e.code, e.subcode)
    } else {
        // SAFETY: libheif's messages are static NUL-terminated strings.
        unsafe { CStr::from_ptr(e.message) }.to_string_lossy().into_owned()
    };
    Err(DecodeError::Corrupt(format!("HEIF: {message}")))
}

/// The full size of a HEIF image, from its header (nothing is decoded).
pub fn dimensions(bytes: &[u8]) -> Result<(u32, u32), DecodeError> {
    let lib = lib()?;
    let (_ctx, handle) = open(lib, bytes)?;
    // SAFETY: `handle` is a live image handle.
    let (w, h) = unsafe { ((lib.handle_width)(handle.0), (lib.handle_height)(handle.0)) };
    Ok((w.max(0) as u32, h.max(0) as u32))
}

fn open(lib: &Lib, bytes: &[u8]) -> Result<(Owned, Owned), DecodeError> {
    // SAFETY: the context outlives the handle (dropped after it: tuple order is reversed at
    // the call sites' bindings, and the handle holds its own reference in libheif anyway);
    // `bytes` outlives both, as read_from_memory_without_copy requires.
    unsafe {
        let ctx = Owned((lib.context_alloc)(), lib.context_free);
        if ctx.0.is_null() {
            return Err(DecodeError::Corrupt("HEIF: no context".into()));
        }
        check((lib.read_from_memory)(ctx.0, bytes.as_ptr().cast(), bytes.len(), std::ptr::null()))?;
        let mut handle: Ptr = std::ptr::null_mut();
        check((lib.primary_handle)(ctx.0, &mut handle))?;
        Ok((ctx, Owned(handle, lib.handle_release)))
    }
}

/// Decodes a HEIF image to upright RGB, refusing before decoding one over the pixel limit.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<RgbImage, DecodeError> {
    let lib = lib()?;
    let (_ctx, handle) = open(lib, bytes)?;
    // SAFETY: `handle` is a live image handle; the decoded image is released by `Owned`,
    // and its plane is copied out before that.
    unsafe {
        let (w, h) = ((lib.handle_width)(handle.0) as u64, (lib.handle_height)(handle.0) as u64);
        super::decode::check_pixels(w, h, limits)?;
        let mut img: Ptr = std::ptr::null_mut();
        check((lib.decode_image)(handle.0, &mut img, COLORSPACE_RGB, CHROMA_INTERLEAVED_RGB, std::ptr::null()))?;
        let img = Owned(img, lib.image_release);
        let (w, h) = ((lib.image_width)(img.0, CHANNEL_INTERLEAVED), (lib.image_height)(img.0, CHANNEL_INTERLEAVED));
        let mut stride: c_int = 0;
        let plane = (lib.plane)(img.0, CHANNEL_INTERLEAVED, &mut stride);
        if plane.is_null() || w <= 0 || h <= 0 || (stride as i64) < 3 * i64::from(w) {
            return Err(DecodeError::Corrupt("HEIF: no RGB plane".into()));
        }
        let (w, h, stride) = (w as usize, h as usize, stride as usize);
        let mut rgb = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            rgb.extend_from_slice(std::slice::from_raw_parts(plane.add(y * stride), w * 3));
        }
        RgbImage::from_raw(w as u32, h as u32, rgb).ok_or_else(|| DecodeError::Corrupt("HEIF: plane size".into()))
    }
}
