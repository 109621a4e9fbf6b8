//! Decode → preprocess on arbitrary bytes: decoding with limits, the clean stored copy,
//! painted-region detection and keypoints. None may panic; errors are typed.
#![no_main]
use hotelmatch::media::decode::{self, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Small limits keep each run fast; the code paths are the same.
    let limits = Limits { max_bytes: 1 << 20, max_pixels: 4_000_000 };
    if let Ok(d) = decode::decode(data, &limits, Some((64, 64))) {
        let _ = hotelmatch::crate::media::clean::clean_copy(data, &d);
        let _ = hotelmatch::embed::fill::find_erased(&d.rgb);
        let _ = hotelmatch::verify::keypoints(&d.rgb, None);
    }
});
