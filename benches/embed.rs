//! End-to-end embedding throughput, JPEG bytes in memory to L2-normalised vector, with the
//! default model: batch 1 and batch 16. Run side by side with the Python pipeline by
//! `scripts/bench/bench_embed.sh`, which also makes the phone-sized photos.
//! Prints JSON lines: {"impl": "rust", "batch": B, "images_per_s": X}.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hotelmatch::{Config, Input};

fn main() {
    let dir = std::env::var("BENCH_PHOTOS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/bench-photos"));
    let seconds: f64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(8.0);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/bench/bench_embed.sh)", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    files.sort();
    let data: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let cfg = Config::load(None).expect("config");
    let embedder = cfg.onnx_embedder().unwrap_or_else(|e| panic!("{e}"));
    for batch in [1usize, 16] {
        let run = |chunk: &[Vec<u8>]| {
            let inputs: Vec<Input> = chunk.iter().map(|b| Input::photo(b)).collect();
            for r in embedder.embed(&inputs) {
                std::hint::black_box(r.expect("embedding"));
            }
        };
        run(&data[..batch]); // warm-up
        let (mut n, t0) = (0usize, Instant::now());
        while t0.elapsed() < Duration::from_secs_f64(seconds) {
            for chunk in data.chunks(batch) {
                run(chunk);
                n += chunk.len();
            }
        }
        let rate = n as f64 / t0.elapsed().as_secs_f64();
        println!("{{\"impl\": \"rust\", \"batch\": {batch}, \"images_per_s\": {rate:.2}}}");
    }
}
