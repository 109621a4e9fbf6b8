//! PDQ against Meta's C++ reference: tests/fixtures/pdq_reference.csv holds the hashes and
//! qualities that the PyPI `pdqhash` bindings computed (scripts/pdq_fixture.py).

use std::path::PathBuf;

use hotelmatch::decode::{self, Limits};
use hotelmatch::pdq::{self, PdqHash};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

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
        assert!((i32::from(h.quality) - i32::from(row.quality)).abs() <= 1, "{}: quality {} vs reference {}", row.path.display(), h.quality, row.quality);
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
