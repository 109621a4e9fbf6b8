//! Search latency and index cost at scale: real embeddings of the data-sample photos, grown
//! to N images with realistic synthetic neighbours (each a noisy copy of a real vector, so the
//! set stays clustered like rooms of a hotel). Exact scan vs HNSW (the default index: int8),
//! with and without hotel filters; HNSW recall@10 against an exact f32 scan; build time;
//! memory per image. The side-by-side comparison with other ANN libraries is `benches/ann.rs`.
//! `BENCH_SIZES=10000,100000 cargo bench --bench search`. Prints JSON lines.

use std::time::Instant;

use hotelmatch::catalog::{Change, Status};
use hotelmatch::index::{new_index, Format, IndexOptions};
use hotelmatch::{Config, Input};

fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<usize>().ok()))
        .map_or(0, |p| p * 4096)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

fn main() {
    let sizes: Vec<usize> =
        std::env::var("BENCH_SIZES").unwrap_or_else(|_| "10000,100000".into()).split(',').filter_map(|s| s.trim().parse().ok()).collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(root.join("data-sample/images")).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    let bytes: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let embedder = Config::default().onnx_embedder().unwrap_or_else(|e| panic!("{e}"));
    let inputs: Vec<Input> = bytes.iter().map(|b| Input::photo(b)).collect();
    let real: Vec<Vec<f32>> = embedder.embed(&inputs).into_iter().map(|r| r.unwrap().vector).collect();
    let dim = real[0].len();
    let mut seed = 7u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 1_000_000) as f32 / 1_000_000.0 - 0.5
    };
    for &n in &sizes {
        // Hotels of 10 photos. A hotel's look is a random blend of two real photos plus noise
        // (so there are as many distinct hotels as hotels); its photos are noisy copies of it.
        let centres: Vec<Vec<f32>> = (0..n / 10 + 1)
            .map(|_| {
                let (a, b) =
                    (((rnd() + 0.5) * real.len() as f32) as usize % real.len(), ((rnd() + 0.5) * real.len() as f32) as usize % real.len());
                let w = rnd() + 0.5;
                let mut c: Vec<f32> = real[a].iter().zip(&real[b]).map(|(x, y)| w * x + (1.0 - w) * y + 0.01 * rnd()).collect();
                hotelmatch::embed::pool::l2_normalize(&mut c);
                c
            })
            .collect();
        let noise = 0.004f32;
        let changes: Vec<Change> = (0..n)
            .map(|i| {
                let base = &centres[i / 10];
                let mut v: Vec<f32> = base.iter().map(|x| x + noise * rnd()).collect();
                hotelmatch::embed::pool::l2_normalize(&mut v);
                Change {
                    seq: i as i64 + 1,
                    image_id: i as i64 + 1,
                    hotel_id: (i / 10) as i64,
                    status: Status::Active,
                    pdq: Default::default(),
                    pdq_quality: 0,
                    vector: Some(v),
                }
            })
            .collect();
        let queries: Vec<Vec<f32>> = (0..200)
            .map(|i| {
                let mut v: Vec<f32> = changes[(i * 7919) % n].vector.as_ref().unwrap().iter().map(|x| x + 0.006 * rnd()).collect();
                hotelmatch::embed::pool::l2_normalize(&mut v);
                v
            })
            .collect();
        let hotels = n / 10;
        let ten_percent: Vec<i64> = (0..hotels as i64).filter(|h| h % 10 == 3).collect();
        let one_percent: Vec<i64> = (0..hotels as i64).filter(|h| h % 100 == 3).collect();
        let half: Vec<i64> = (0..hotels as i64).filter(|h| h % 2 == 1).collect();
        for (name, hnsw_min) in [("exact", usize::MAX), ("hnsw", 0)] {
            let before = rss_bytes();
            let t = Instant::now();
            let idx =
                new_index(dim, IndexOptions { hnsw_min, exact_max: if hnsw_min == 0 { 5_000 } else { usize::MAX }, ..Default::default() });
            idx.apply(&changes).unwrap();
            let build_s = t.elapsed().as_secs_f64();
            let bytes_per_image = rss_bytes().saturating_sub(before) / n;
            for (filter_name, filter) in
                [("none", None), ("50%", Some(&half[..])), ("10%", Some(&ten_percent[..])), ("1%", Some(&one_percent[..]))]
            {
                let mut lat = Vec::new();
                let mut plan = None;
                for q in &queries {
                    let t = Instant::now();
                    let (found, p) = idx.search(q, 100, filter, 0).unwrap();
                    lat.push(t.elapsed().as_secs_f64() * 1e3);
                    assert!(!found.is_empty());
                    plan = Some(p);
                }
                let mean = lat.iter().sum::<f64>() / lat.len() as f64;
                println!(
                    "{{\"bench\": \"search\", \"n\": {n}, \"index\": \"{name}\", \"filter\": \"{filter_name}\", \"plan\": \"{:?}\", \"p50_ms\": {:.3}, \"p95_ms\": {:.3}, \"mean_ms\": {mean:.3}, \"build_s\": {build_s:.2}, \"bytes_per_image\": {bytes_per_image}}}",
                    plan.unwrap(),
                    percentile(&mut lat.clone(), 0.5),
                    percentile(&mut lat, 0.95)
                );
            }
            if name == "hnsw" {
                // recall@10 of the graph against an exact scan of the same vectors
                let exact =
                    new_index(dim, IndexOptions { format: Format::F32, hnsw_min: usize::MAX, exact_max: usize::MAX, ..Default::default() });
                exact.apply(&changes).unwrap();
                let mut hit = 0;
                for q in &queries {
                    let a: Vec<i64> = idx.search(q, 10, None, 0).unwrap().0.iter().map(|f| f.image_id).collect();
                    let b: Vec<i64> = exact.search(q, 10, None, 0).unwrap().0.iter().map(|f| f.image_id).collect();
                    hit += a.iter().filter(|x| b.contains(x)).count();
                }
                println!("{{\"bench\": \"recall\", \"n\": {n}, \"recall_at_10\": {:.3}}}", hit as f64 / (10 * queries.len()) as f64);
            }
        }
    }
}
