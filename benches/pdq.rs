//! PDQ hashing speed (single thread, decoded pixels in memory to hash) and Hamming search
//! speed (flat SIMD-popcount scan vs multi-index hashing) at several sizes. Run with the
//! Python reference side by side by `scripts/bench/bench_pdq.sh`.
//! Prints JSON lines.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hotelmatch::hamming::HammingIndex;
use hotelmatch::media::decode::{self, Limits};
use hotelmatch::pdq::{self, PdqHash};

fn photos(dir: &str, limit: usize) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    v.sort();
    v.truncate(limit);
    v
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn random_hash(x: &mut u64) -> PdqHash {
    let w: [u64; 4] = std::array::from_fn(|_| splitmix(x));
    PdqHash(std::array::from_fn(|i| (w[i / 4] >> (16 * (i % 4))) as u16))
}

fn main() {
    let seconds: f64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(4.0);
    // 1. Hashing.
    for (set, dir, limit) in [("phone-4032x3024", ".cache/bench-photos", 8), ("indoor-1280x720", "../shared/data/indoor-dev/images", 64)] {
        let imgs: Vec<_> =
            photos(dir, limit).iter().map(|p| decode::decode(&std::fs::read(p).unwrap(), &Limits::default(), None).unwrap().rgb).collect();
        if imgs.is_empty() {
            continue;
        }
        let (mut n, t0) = (0usize, Instant::now());
        while t0.elapsed() < Duration::from_secs_f64(seconds) {
            for img in &imgs {
                std::hint::black_box(pdq::hash(img));
                n += 1;
            }
        }
        println!(
            "{{\"bench\": \"pdq-hash\", \"impl\": \"rust\", \"set\": \"{set}\", \"images_per_s\": {:.2}}}",
            n as f64 / t0.elapsed().as_secs_f64()
        );
    }
    // 2. Hamming search: random hashes plus planted near-duplicates of half the queries.
    let mut seed = 42u64;
    let n_max: usize = std::env::var("BENCH_HASHES").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let all: Vec<PdqHash> = (0..n_max).map(|_| random_hash(&mut seed)).collect();
    let queries: Vec<PdqHash> = (0..200)
        .map(|i| {
            if i % 2 == 0 {
                // A near-copy of a hash that every index size below holds.
                let mut h = all[(splitmix(&mut seed) as usize) % 1000];
                for _ in 0..(i % 30) {
                    let b = (splitmix(&mut seed) % 256) as usize;
                    h.0[b / 16] ^= 1 << (b % 16);
                }
                h
            } else {
                random_hash(&mut seed)
            }
        })
        .collect();
    for size in [1_000usize, 10_000, 30_000, 100_000, 1_000_000].into_iter().filter(|&s| s <= n_max) {
        let t = Instant::now();
        let mut idx = HammingIndex::new();
        for (i, h) in all[..size].iter().enumerate() {
            idx.add(i as u64, h);
        }
        let build_ms = t.elapsed().as_secs_f64() * 1e3;
        for (method, flat) in [("flat", true), ("index", false)] {
            let (mut q, mut found, t0) = (0usize, 0usize, Instant::now());
            while t0.elapsed() < Duration::from_secs_f64(seconds / 4.0) {
                for h in &queries {
                    found += if flat { idx.within_flat(h, 31).len() } else { idx.within(h, 31).len() };
                    q += 1;
                }
            }
            let per = t0.elapsed().as_secs_f64() / q as f64;
            println!(
                "{{\"bench\": \"hamming-within-31\", \"size\": {size}, \"method\": \"{method}\", \"queries_per_s\": {:.0}, \"ms_per_query\": {:.4}, \"hits_per_query\": {:.2}, \"build_ms\": {build_ms:.1}}}",
                1.0 / per,
                per * 1e3,
                found as f64 / q as f64
            );
        }
    }
}
