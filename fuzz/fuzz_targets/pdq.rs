//! PDQ on arbitrary pixels (any size from 1x1) and on arbitrary encoded images.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 2 {
        let (w, h) = (u32::from(data[0] % 64) + 1, u32::from(data[1] % 64) + 1);
        let pixels: Vec<u8> = data[2..].iter().copied().cycle().take((w * h * 3) as usize).collect();
        if let Some(img) =
            image::RgbImage::from_raw(w, h, if pixels.len() == (w * h * 3) as usize { pixels } else { vec![0; (w * h * 3) as usize] })
        {
            let d = hotelmatch::pdq::hash_dihedral(&img);
            assert!(d.quality <= 100);
        }
    }
    let limits = hotelmatch::media::decode::Limits { max_bytes: 1 << 20, max_pixels: 4_000_000 };
    if let Ok(d) = hotelmatch::media::decode::decode(data, &limits, None) {
        let _ = hotelmatch::pdq::hash(&d.rgb);
    }
});
