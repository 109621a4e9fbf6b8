//! Mask parsing: an arbitrary mask picture, then its pixels and cells for a photo whose
//! size comes from the input too. Shape mismatches must be errors, never panics.
#![no_main]
use hotelmatch::Mask;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (w, h) =
        (u32::from(u16::from_le_bytes([data[0], data[1]]) % 4000) + 1, u32::from(u16::from_le_bytes([data[2], data[3]]) % 4000) + 1);
    let limits = hotelmatch::media::decode::Limits { max_bytes: 1 << 20, max_pixels: 4_000_000 };
    let masks = [
        Mask::from_picture(&data[4..], &limits).ok(),
        Some(Mask::Rects(data[4..].chunks_exact(8).map(|c| [c[0], c[1], c[2], c[3]].map(|v| u32::from(v) * 16)).take(8).collect())),
    ];
    for m in masks.into_iter().flatten() {
        let _ = m.pixels(w, h, (w / 16).max(1), (h / 16).max(1));
        let _ = m.keep(w, h, 7, 5);
    }
});
