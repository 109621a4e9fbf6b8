//! Cost per request under a pixel flood: 16 clients send 81-Mpixel PNGs (a few hundred kB
//! each) to the search API while one investigator searches as usual; the server's peak
//! memory and the ordinary searches' latency, with the server-wide pixel budget on (the
//! default) and, for comparison, off. A real server on 127.0.0.1 over data-sample; each
//! phase is bounded to 40 s and every client to 400 requests.
//! `cargo bench --bench flood`. Prints JSON lines.

use std::io::Cursor;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hotelmatch::catalog::Role;
use hotelmatch::{import, Config};

#[path = "../tests/common/mod.rs"]
mod common;
use common::{multipart, Running};

/// Peak resident memory of this process (server and load generator), in MB.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// Starts the peak-memory count afresh (Linux: writing 5 to clear_refs resets VmHWM).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn pct(v: &[f64], p: f64) -> f64 {
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("hm-flood-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = Config { data_dir: dir.clone(), ..Config::default() };
    cfg.serve.searches_per_minute = 1_000_000;
    let engine = cfg.open_engine().unwrap_or_else(|e| panic!("{e}"));
    import::import_hotels(&engine, &root.join("data-sample/hotels.csv"), "test").unwrap();
    import::import_images(&engine, &root.join("data-sample/images.csv"), "test", &|_, _| {}).unwrap();
    let token = engine.create_key(Role::Investigator, "flood", "bench").unwrap().1;
    drop(engine);
    // 9000 x 9000 pixels of a gradient: 81 Mpixels in a small PNG.
    let big = image::GrayImage::from_fn(9000, 9000, |x, y| image::Luma([((x / 64 + y / 64) % 256) as u8]));
    let mut png = Cursor::new(Vec::new());
    image::DynamicImage::ImageLuma8(big).write_to(&mut png, image::ImageFormat::Png).unwrap();
    let png = png.into_inner();
    let query = std::fs::read(root.join("data-sample/queries/h-maple-query.jpg")).unwrap();
    let mask = std::fs::read(root.join("data-sample/queries/h-maple-query-mask.png")).unwrap();
    println!("{{\"bench\": \"flood-photo\", \"pixels\": 81000000, \"png_bytes\": {}}}", png.len());
    for budget in [true, false] {
        let mut cfg = cfg.clone();
        // Off: a budget far above anything the 16 clients can send at once.
        cfg.serve.pixel_budget_mp = if budget { 0 } else { 1_000_000 };
        let engine = Arc::new(cfg.open_engine().unwrap());
        let server = Running::start(engine, cfg.serve.clone());
        let url = format!("{}/api/v1/search", server.base);
        reset_peak();
        let before = peak_rss_mb();
        let stop = AtomicBool::new(false);
        let start = Instant::now();
        let limit = Duration::from_secs(40);
        let agent = || -> ureq::Agent {
            ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(120))).build().into()
        };
        let post = |a: &ureq::Agent, body: &(String, Vec<u8>)| {
            a.post(&url)
                .header("Authorization", &format!("Bearer {token}"))
                .header("Content-Type", &body.0)
                .send(&body.1[..])
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        };
        let (ordinary, flood): (Vec<f64>, Vec<u16>) = std::thread::scope(|s| {
            let flooders: Vec<_> = (0..16)
                .map(|_| {
                    s.spawn(|| {
                        let (a, body) = (agent(), multipart(&[("photo", &png)], &[]));
                        let mut statuses = Vec::new();
                        while !stop.load(Ordering::Relaxed) && start.elapsed() < limit && statuses.len() < 400 {
                            statuses.push(post(&a, &body));
                        }
                        statuses
                    })
                })
                .collect();
            // The ordinary investigator starts once the flood is under way.
            std::thread::sleep(Duration::from_secs(2));
            let (a, body) = (agent(), multipart(&[("photo", &query), ("mask", &mask)], &[]));
            let mut lat = Vec::new();
            while start.elapsed() < limit - Duration::from_secs(5) && lat.len() < 400 {
                let t = Instant::now();
                assert_eq!(post(&a, &body), 200, "an ordinary search failed");
                lat.push(t.elapsed().as_secs_f64() * 1e3);
            }
            stop.store(true, Ordering::Relaxed);
            (lat, flooders.into_iter().flat_map(|h| h.join().unwrap()).collect())
        });
        let mut lat = ordinary;
        lat.sort_by(|a, b| a.total_cmp(b));
        let count = |st: u16| flood.iter().filter(|&&x| x == st).count();
        println!(
            "{{\"bench\": \"flood\", \"pixel_budget\": {budget}, \"ordinary_searches\": {}, \"ordinary_p50_ms\": {:.0}, \"ordinary_p99_ms\": {:.0}, \"flood_requests\": {}, \"flood_200\": {}, \"flood_503\": {}, \"flood_other\": {}, \"peak_rss_mb\": {:.0}, \"rss_before_mb\": {before:.0}}}",
            lat.len(),
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            flood.len(),
            count(200),
            count(503),
            flood.len() - count(200) - count(503),
            peak_rss_mb()
        );
        drop(server);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
