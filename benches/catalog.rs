//! Catalog size and write rate per photo, for docs/scale.md: N photos added the way the
//! engine adds them (image row, 512-d embedding, change entry, one audit entry), into
//! SQLite, and into PostgreSQL when BENCH_PG_URL names an empty database.
//! `BENCH_CATALOG_N=20000 BENCH_PG_URL=postgres://… cargo bench --bench catalog`. Prints JSON lines.

use std::time::Instant;

use hotelmatch::catalog::{self, Catalog, Hotel, NewImage, Source};

const DIM: usize = 512;

fn fill(cat: &dyn Catalog, n: usize) -> f64 {
    let hotels: Vec<i64> = (0..n.div_ceil(50))
        .map(|i| {
            cat.upsert_hotel(&Hotel {
                external_id: Some(format!("h{i}")),
                name: format!("Hotel {i}"),
                city: Some("Denver".into()),
                country: Some("US".into()),
                latitude: Some(39.7),
                longitude: Some(-105.0),
                ..Default::default()
            })
            .unwrap()
        })
        .collect();
    let model = cat.model_id("sscd-distilled", "embedding", DIM, "{}").unwrap();
    let t = Instant::now();
    for i in 0..n {
        let sha = format!("{:064x}", i as u128 * 0x9E37_79B9_7F4A_7C15);
        let pdq = format!("{:064x}", (i as u128).wrapping_mul(0xD6E8_FEB8_6659_FD93)).parse().unwrap_or_default();
        let img = NewImage {
            sha256: sha.clone(),
            hotel_id: hotels[i / 50],
            room: Some(format!("{}", 100 + i % 400)),
            source: Source::Crowd,
            uploader_key_id: Some("0123456789ab".into()),
            width: 4032,
            height: 3024,
            pdq,
            pdq_quality: 90,
        };
        // Pseudo-random, as real embeddings are: compression (PostgreSQL's TOAST) gains nothing.
        let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let v: Vec<f32> = (0..DIM)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        let id = cat.add_image(&img, model, &v).unwrap();
        let detail = serde_json::json!({"outcome": "added", "image_id": id, "pdq": img.pdq.to_string(), "pdq_quality": 90, "hotel_id": img.hotel_id, "source": "crowd"});
        cat.audit("0123456789ab", "upload", &detail).unwrap();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let n: usize = std::env::var("BENCH_CATALOG_N").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let dir = std::env::temp_dir().join(format!("hm-bench-catalog-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("catalog.sqlite");
    let sqlite = catalog::open(&path.display().to_string()).unwrap();
    let rate = fill(sqlite.as_ref(), n);
    drop(sqlite);
    let bytes: u64 = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.metadata().map_or(0, |m| m.len())).sum();
    println!(
        "{}",
        serde_json::json!({"backend": "sqlite", "photos": n, "dim": DIM, "bytes_per_photo": bytes / n as u64, "adds_per_s": rate.round()})
    );
    std::fs::remove_dir_all(&dir).ok();
    if let Ok(url) = std::env::var("BENCH_PG_URL") {
        let pg = catalog::open(&url).unwrap();
        let rate = fill(pg.as_ref(), n);
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.batch_execute("VACUUM ANALYZE").unwrap();
        let bytes: i64 = c.query_one("SELECT pg_database_size(current_database())", &[]).unwrap().get(0);
        let tables: Vec<(String, i64)> = c
            .query("SELECT relname::TEXT, pg_total_relation_size(relid) FROM pg_catalog.pg_statio_user_tables ORDER BY 2 DESC", &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) / n as i64))
            .collect();
        println!(
            "{}",
            serde_json::json!({"backend": "postgres", "photos": n, "dim": DIM, "bytes_per_photo": bytes / n as i64, "bytes_per_photo_by_table": tables, "adds_per_s": rate.round()})
        );
    }
}
