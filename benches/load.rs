//! Load figures for the HTTP API: a real server on 127.0.0.1, data-sample grown to N photos
//! (random crops and exposures of the 48 sample photos, embedded), optionally plus M more
//! catalog rows whose vectors are noisy copies of the real ones (sharing the sample files, so
//! verification still reads real photos) to reach index sizes that embedding every photo
//! on this machine would take hours to; then searches with 1, 8 and 32 concurrent clients
//! (with and without the PDQ reuse check of queries, with and without verification),
//! uploads with 8, and upload → searchable: 4 clients upload photos unlike any other, and
//! after each 201 a fifth to eighth client searches with it until it comes back. Each
//! bounded in count and time.
//! `BENCH_PHOTOS_N=2000 BENCH_VECTORS_N=98000 cargo bench --bench load`
//! (`BENCH_LOAD_ONLY=searchable`: that measurement alone). Prints JSON lines.

use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hotelmatch::catalog::{NewImage, Role, Source};
use hotelmatch::engine::NewPhoto;
use hotelmatch::{import, Config};
use rayon::prelude::*;

#[path = "../tests/common/mod.rs"]
mod common;
use common::{multipart, Running};

fn variant(bytes: &[u8], seed: u64) -> Vec<u8> {
    let img = image::load_from_memory(bytes).unwrap();
    let (w, h) = (img.width(), img.height());
    let f = 0.8 + (seed % 17) as f32 / 100.0;
    let (cw, ch) = ((w as f32 * f) as u32, (h as f32 * f) as u32);
    let (x, y) = ((seed * 7 % u64::from(w - cw + 1)) as u32, (seed * 13 % u64::from(h - ch + 1)) as u32);
    let mut out = img.crop_imm(x, y, cw, ch).brighten((seed % 21) as i32 - 10).to_rgb8();
    out.pixels_mut().take(1).for_each(|p| p.0[0] ^= (seed & 0xFF) as u8); // never two equal files
    let mut buf = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(out).write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 85)).unwrap();
    buf.into_inner()
}

/// One HTTP client: statuses are answers, not errors; no request waits over a minute.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(60))).build().into()
}

/// Runs `clients` threads posting bodies from `make` until `total` requests or `limit` time.
fn load(
    url: &str,
    token: &str,
    clients: usize,
    total: usize,
    limit: Duration,
    make: &(dyn Fn(usize) -> (String, Vec<u8>) + Sync),
) -> (f64, Vec<f64>, usize) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let start = Instant::now();
    let results: Vec<(Vec<f64>, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                s.spawn(|| {
                    let agent = agent();
                    let (mut lat, mut errors) = (Vec::new(), 0);
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= total || start.elapsed() > limit {
                            break;
                        }
                        let (ct, body) = make(i);
                        let t = Instant::now();
                        let ok = agent
                            .post(url)
                            .header("Authorization", &format!("Bearer {token}"))
                            .header("Content-Type", &ct)
                            .send(&body[..])
                            .map(|r| r.status().as_u16() < 300)
                            .unwrap_or(false);
                        lat.push(t.elapsed().as_secs_f64() * 1e3);
                        errors += usize::from(!ok);
                    }
                    (lat, errors)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let secs = start.elapsed().as_secs_f64();
    let errors = results.iter().map(|r| r.1).sum();
    let mut lat: Vec<f64> = results.into_iter().flat_map(|r| r.0).collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    (lat.len() as f64 / secs, lat, errors)
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

/// A photo like no other: seeded random coloured rectangles, as a JPEG.
fn distinct_photo(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut rnd = move |m: u32| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % u64::from(m)) as u32
    };
    let mut img = image::RgbImage::new(480, 360);
    for _ in 0..24 {
        let (x0, y0) = (rnd(480), rnd(360));
        let (w, h) = (20 + rnd(200), 20 + rnd(160));
        let c = image::Rgb([rnd(256) as u8, rnd(256) as u8, rnd(256) as u8]);
        for y in y0..(y0 + h).min(360) {
            for x in x0..(x0 + w).min(480) {
                img.put_pixel(x, y, c);
            }
        }
    }
    let mut buf = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img).write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 90)).unwrap();
    buf.into_inner()
}

/// Upload → searchable, with 8 clients: 4 pairs, each uploading a photo unlike any other
/// through one client and, as soon as the 201 is in, searching with it through another
/// until it is among the evidence (at most 20 searches). Returns the delays from the 201 to
/// the answer of the search that found it (ms), and the photos never found.
fn searchable(base: &str, uploader: &str, investigator: &str, per_pair: usize, hotel: i64) -> (Vec<f64>, usize) {
    let json = |r: Result<ureq::http::Response<ureq::Body>, ureq::Error>| -> Option<(u16, serde_json::Value)> {
        let mut r = r.ok()?;
        let status = r.status().as_u16();
        Some((status, r.body_mut().read_to_string().ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default()))
    };
    let pairs: Vec<(Vec<f64>, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4u64)
            .map(|pair| {
                s.spawn(move || {
                    let (up, inv) = (agent(), agent());
                    let (mut lat, mut missed) = (Vec::new(), 0);
                    for i in 0..per_pair as u64 {
                        let bytes = distinct_photo(pair * 1_000_000 + i + 1);
                        let (ct, body) = multipart(&[("photo", &bytes)], &[("hotel_id", &hotel.to_string())]);
                        let Some((201, v)) = json(
                            up.post(format!("{base}/api/v1/photos"))
                                .header("Authorization", &format!("Bearer {uploader}"))
                                .header("Content-Type", &ct)
                                .send(&body[..]),
                        ) else {
                            continue;
                        };
                        let at = Instant::now();
                        let Some(id) = v["image_id"].as_i64() else { continue };
                        let found = (0..20).any(|_| {
                            let (ct, body) = multipart(&[("photo", &bytes)], &[("top", "3"), ("auto_mask", "false")]);
                            let Some((200, v)) = json(
                                inv.post(format!("{base}/api/v1/search"))
                                    .header("Authorization", &format!("Bearer {investigator}"))
                                    .header("Content-Type", &ct)
                                    .send(&body[..]),
                            ) else {
                                return false;
                            };
                            v["hotels"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .flat_map(|h| h["evidence"].as_array().into_iter().flatten())
                                .any(|e| e["image_id"].as_i64() == Some(id))
                        });
                        if found {
                            lat.push(at.elapsed().as_secs_f64() * 1e3);
                        } else {
                            missed += 1;
                        }
                    }
                    (lat, missed)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let missed = pairs.iter().map(|p| p.1).sum();
    let mut lat: Vec<f64> = pairs.into_iter().flat_map(|p| p.0).collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    (lat, missed)
}

fn main() {
    let n: usize = std::env::var("BENCH_PHOTOS_N").ok().and_then(|s| s.parse().ok()).unwrap_or(2_000);
    let extra: usize = std::env::var("BENCH_VECTORS_N").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("hm-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = Config { data_dir: dir.clone(), duplicate_distance: 0, ..Config::default() };
    cfg.serve.uploads_per_minute = 1_000_000;
    cfg.serve.searches_per_minute = 1_000_000;
    let engine = cfg.open_engine().unwrap_or_else(|e| panic!("{e}"));
    // The bench's own handle on the same catalog, for the vector copies below (the engine
    // takes them up from the change feed like any other replica's writes).
    let catalog = hotelmatch::catalog::open(&cfg.engine_settings().catalog_location()).unwrap();
    import::import_hotels(&engine, &root.join("data-sample/hotels.csv"), "test").unwrap();
    import::import_images(&engine, &root.join("data-sample/images.csv"), "test", &|_, _| {}).unwrap();
    let mut rdr = csv::Reader::from_path(root.join("data-sample/images.csv")).unwrap();
    let sample: Vec<(Vec<u8>, i64)> = rdr
        .records()
        .map(|r| {
            let r = r.unwrap();
            let hotel = engine.hotel_by_external_id(&r[1]).unwrap().unwrap().id;
            (std::fs::read(root.join("data-sample").join(&r[0])).unwrap(), hotel)
        })
        .collect();
    let t = Instant::now();
    for chunk in (0..n.saturating_sub(sample.len())).collect::<Vec<_>>().chunks(256) {
        let prepared: Vec<_> =
            chunk.par_iter().map(|&i| (i, engine.prepare(&variant(&sample[i % sample.len()].0, i as u64 + 1)).unwrap())).collect();
        for (i, p) in prepared {
            engine
                .add(
                    &NewPhoto { hotel_id: sample[i % sample.len()].1, room: None, source: Source::Import, uploader_key_id: None },
                    p,
                    "bench",
                )
                .unwrap();
        }
    }
    let embedded = engine.indexed();
    if extra > 0 {
        // Noisy copies of the real photos' vectors, each a catalog row pointing at the
        // real photo's stored file.
        let e = engine.embedder();
        let model = catalog.model_id(e.model(), &e.pooling(), e.dim(), &e.settings()).unwrap();
        let real = catalog.changes_since(0, model).unwrap();
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for i in 0..extra {
            let c = &real[i % real.len()];
            let img = catalog.image(c.image_id).unwrap();
            let mut v: Vec<f32> = c
                .vector
                .as_ref()
                .unwrap()
                .iter()
                .map(|x| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    x + 0.02 * ((seed % 2001) as f32 / 1000.0 - 1.0)
                })
                .collect();
            hotelmatch::embed::pool::l2_normalize(&mut v);
            let row = NewImage {
                sha256: img.sha256.clone(),
                hotel_id: img.hotel_id,
                room: None,
                source: Source::Import,
                uploader_key_id: None,
                width: img.width,
                height: img.height,
                pdq: c.pdq,
                pdq_quality: c.pdq_quality,
            };
            catalog.add_image(&row, model, &v).unwrap();
        }
    }
    let t_index = Instant::now();
    drop(engine);
    let engine = cfg.open_engine().unwrap();
    engine.save_index().unwrap();
    println!(
        "{{\"bench\": \"grow\", \"photos\": {}, \"embedded\": {embedded}, \"vector_copies\": {extra}, \"seconds\": {:.1}, \"index_build_s\": {:.1}}}",
        engine.indexed(),
        t.elapsed().as_secs_f64(),
        t_index.elapsed().as_secs_f64()
    );
    let investigator = engine.create_key(Role::Investigator, "load", "bench").unwrap().1;
    let uploader = engine.create_key(Role::Uploader, "load", "bench").unwrap().1;
    drop(engine);
    let queries: Vec<(Vec<u8>, Vec<u8>)> = ["h-aurora", "h-harbor", "h-desert", "h-maple", "h-lonestar", "h-pinecrest"]
        .iter()
        .map(|h| {
            (
                std::fs::read(root.join(format!("data-sample/queries/{h}-query.jpg"))).unwrap(),
                std::fs::read(root.join(format!("data-sample/queries/{h}-query-mask.png"))).unwrap(),
            )
        })
        .collect();
    let search = |i: usize| {
        let (q, m) = &queries[i % queries.len()];
        multipart(&[("photo", q), ("mask", m)], &[("top", "10")])
    };
    // The same data served at the defaults (PDQ reuse check of queries; no geometric
    // verification since issue 19), without the reuse check, and with the verification of
    // the top 30 photos (`BENCH_VERIFY=1`: slow, about 4 searches a second).
    let cfg_default_verify = cfg.search.verify;
    let mut configs = vec![(true, cfg_default_verify), (false, cfg_default_verify)];
    if std::env::var("BENCH_VERIFY").is_ok_and(|v| v == "1") {
        configs.push((true, 30));
    }
    for (reuse, verify) in configs {
        let mut cfg = cfg.clone();
        cfg.search.reuse = reuse;
        cfg.search.verify = verify;
        let engine = Arc::new(cfg.open_engine().unwrap());
        let server = Running::start(engine.clone(), cfg.serve.clone());
        let base = server.base.clone();
        let only_searchable = std::env::var("BENCH_LOAD_ONLY").as_deref() == Ok("searchable");
        for clients in [1usize, 8, 32].into_iter().filter(|_| !only_searchable) {
            let (rate, lat, errors) = load(&format!("{base}/api/v1/search"), &investigator, clients, 400, Duration::from_secs(40), &search);
            println!(
                "{{\"bench\": \"search\", \"reuse_check\": {reuse}, \"verify\": {verify}, \"photos\": {}, \"clients\": {clients}, \"requests\": {}, \"per_s\": {rate:.1}, \"p50_ms\": {:.1}, \"p99_ms\": {:.1}, \"errors\": {errors}}}",
                engine.indexed(),
                lat.len(),
                pct(&lat, 0.5),
                pct(&lat, 0.99)
            );
        }
        if verify == 0 && reuse {
            // A hotel of its own, so its evidence is these photos.
            let hotel =
                engine.create_hotel(&hotelmatch::catalog::Hotel { name: "searchable".into(), ..Default::default() }, "bench").unwrap().id;
            let (lat, missed) = searchable(&base, &uploader, &investigator, 25, hotel);
            println!(
                "{{\"bench\": \"searchable\", \"verify\": {verify}, \"photos\": {}, \"clients\": 8, \"found\": {}, \"missed\": {missed}, \"p50_ms\": {:.1}, \"p99_ms\": {:.1}, \"max_ms\": {:.1}}}",
                engine.indexed(),
                lat.len(),
                pct(&lat, 0.5),
                pct(&lat, 0.99),
                lat.last().copied().unwrap_or(f64::NAN)
            );
        }
        if std::env::var("BENCH_LOAD_ONLY").as_deref() == Ok("searchable") {
            continue;
        }
        // Uploads once, with the first (default) configuration.
        if reuse && verify == cfg_default_verify {
            let upload = |i: usize| {
                let (bytes, hotel) = &sample[i % sample.len()];
                multipart(&[("photo", &variant(bytes, 1_000_000 + i as u64))], &[("hotel_id", &hotel.to_string())])
            };
            let (rate, lat, errors) = load(&format!("{base}/api/v1/photos"), &uploader, 8, 200, Duration::from_secs(40), &upload);
            println!("{{\"bench\": \"upload\", \"clients\": 8, \"requests\": {}, \"per_s\": {rate:.1}, \"p50_ms\": {:.1}, \"p99_ms\": {:.1}, \"errors\": {errors}}}", lat.len(), pct(&lat, 0.5), pct(&lat, 0.99));
        }
        drop(server);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
