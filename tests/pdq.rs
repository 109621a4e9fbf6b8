//! PDQ against Meta's C++ reference: tests/fixtures/pdq_reference.csv holds the hashes and
//! qualities that the PyPI `pdqhash` bindings computed (scripts/data/pdq_fixture.py).

mod common;
use common::root;

use std::path::PathBuf;

use hotelmatch::media::decode::{self, Limits};
use hotelmatch::pdq::{self, PdqHash};

struct Row {
    path: PathBuf,
    quality: u8,
    hashes: Vec<PdqHash>,
}

fn reference() -> Vec<Row> {
    let shared = root().join("../shared/data/indoor-dev");
    let mut rdr = csv::Reader::from_path(root().join("tests/fixtures/pdq_reference.csv")).unwrap();
    rdr.records()
        .map(|r| {
            let r = r.unwrap();
            let base = if &r[0] == "shared" { shared.clone() } else { root() };
            Row { path: base.join(&r[1]), quality: r[2].parse().unwrap(), hashes: (3..11).map(|i| r[i].parse().unwrap()).collect() }
        })
        .collect()
}

#[test]
fn hashes_match_the_cpp_reference() {
    let rows = reference();
    let (mut compared, mut exact, mut exact_all8, mut worst) = (0, 0, 0, 0u32);
    let mut report = Vec::new();
    for row in &rows {
        let Ok(bytes) = std::fs::read(&row.path) else {
            // ../shared is beside the checkout in CI and on developer machines; the repo images must be there.
            assert!(!row.path.starts_with(root().join("tests")), "missing {}", row.path.display());
            continue;
        };
        let d = decode::decode(&bytes, &Limits::default(), None).unwrap_or_else(|e| panic!("{}: {e}", row.path.display()));
        let h = pdq::hash_dihedral(&d.rgb);
        let ours = [h.original, h.rotate90, h.rotate180, h.rotate270, h.flip_x, h.flip_y, h.flip_plus1, h.flip_minus1];
        let dists: Vec<u32> = ours.iter().zip(&row.hashes).map(|(a, b)| a.distance(b)).collect();
        let max = *dists.iter().max().unwrap();
        compared += 1;
        exact += usize::from(dists[0] == 0);
        exact_all8 += usize::from(max == 0);
        if row.quality >= 80 {
            worst = worst.max(max);
            assert!(max <= 10, "{}: distance {max} at quality {}", row.path.display(), row.quality);
        }
        assert!(
            (i32::from(h.quality) - i32::from(row.quality)).abs() <= 1,
            "{}: quality {} vs reference {}",
            row.path.display(),
            h.quality,
            row.quality
        );
        if max > 0 {
            report.push(format!("{} d={dists:?} q={}", row.path.display(), row.quality));
        }
    }
    eprintln!("PDQ vs reference: {exact}/{compared} identical (all 8 variants: {exact_all8}); worst distance at quality >= 80: {worst}");
    for line in &report {
        eprintln!("  differs: {line}");
    }
    assert!(compared >= 25, "compared only {compared}");
    // Measured: every image identical, all 8 variants. Allow a little for decoder drift.
    assert!(exact * 100 >= compared * 98, "only {exact}/{compared} identical");
}

/// Search hashes a query decoded at no less than 512 pixels a side (DCT-scaled for large
/// JPEGs, as Meta's PHP reference downsamples before hashing): that hash must stay close to
/// the full-resolution one stored photos have. Photos up to 1024 pixels on the short side
/// are decoded whole and must hash identically.
#[test]
fn a_query_decoded_at_512_pixels_hashes_close_to_full_resolution() {
    let hashes = |bytes: &[u8]| {
        let full = decode::decode(bytes, &Limits::default(), None).unwrap();
        let small = decode::decode(bytes, &Limits::default(), Some((512, 512))).unwrap();
        (pdq::hash(&full.rgb).hash.distance(&pdq::hash_dihedral(&small.rgb).original), small.rgb.dimensions() != full.rgb.dimensions())
    };
    let mut whole = 0;
    for row in reference().iter().filter(|r| r.quality >= 80) {
        let Ok(bytes) = std::fs::read(&row.path) else { continue };
        let (d, reduced) = hashes(&bytes);
        if !reduced {
            assert_eq!(d, 0, "{}", row.path.display());
            whole += 1;
        }
    }
    assert!(whole >= 10);
    // 12-Mpixel phone-sized photos (decoded at 1/8 scale). The one synthetic fixture that is
    // also reduced, a periodic tiling, aliases under any downsampling and is left out.
    let mut worst = 0;
    for name in ["cat.jpg", "espresso.jpg"] {
        let img = image::open(root().join("data-sample/imagenet").join(name)).unwrap();
        let big = img.resize_exact(4032, 3024, image::imageops::FilterType::Lanczos3);
        let mut jpeg = std::io::Cursor::new(Vec::new());
        big.write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)).unwrap();
        let (d, reduced) = hashes(&jpeg.into_inner());
        assert!(reduced);
        worst = worst.max(d);
    }
    // PDQ calls 31 bits a match; the reduction must leave most of that margin to real edits.
    assert!(worst <= 12, "worst {worst}");
}
