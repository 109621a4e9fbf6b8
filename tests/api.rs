//! The HTTP API on a real server on 127.0.0.1 (a free port), with real keys, a real catalog
//! and the real model. Every request has a timeout; the server stops with the test.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hotelmatch::catalog::Role;
use hotelmatch::{import, Config};

mod common;
use common::{multipart, root, Running};

struct Server {
    base: String,
    tokens: Vec<(Role, String)>,
    data_dir: PathBuf,
    server: Running,
}

impl Drop for Server {
    fn drop(&mut self) {
        // The server goes first: it must not be writing into the directory being removed.
        let _ = self.server.shutdown();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn start(name: &str) -> Server {
    start_with(name, hotelmatch::api::ServeOptions::default())
}

fn start_with(name: &str, serve: hotelmatch::api::ServeOptions) -> Server {
    let data_dir = std::env::temp_dir().join(format!("hm-api-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let cfg = Config { data_dir: data_dir.clone(), serve, ..Config::default() };
    let engine = cfg.open_engine().unwrap_or_else(|e| panic!("{e} (run scripts/setup.sh)"));
    serve_sample(engine, data_dir, cfg.serve)
}

/// The server over in-memory adapters and the colour-layout embedder: no ONNX Runtime and no
/// model, for what does not depend on the model (roles, routes, errors).
fn start_in_memory(name: &str) -> Server {
    let engine = common::in_memory(name);
    let data_dir = engine.settings().data_dir.clone();
    serve_sample(engine, data_dir, hotelmatch::api::ServeOptions::default())
}

/// Imports data-sample/ into `engine`, makes a key per role and serves it.
fn serve_sample(engine: hotelmatch::engine::Engine, data_dir: PathBuf, serve: hotelmatch::api::ServeOptions) -> Server {
    import::import_hotels(&engine, &root().join("data-sample/hotels.csv"), "test").unwrap();
    import::import_images(&engine, &root().join("data-sample/images.csv"), "test", &|_, _| {}).unwrap();
    let tokens = [Role::Uploader, Role::Investigator, Role::Admin]
        .into_iter()
        .map(|r| (r, engine.create_key(r, "test", "test").unwrap().1))
        .collect();
    let server = Running::start(Arc::new(engine), serve);
    Server { base: server.base.clone(), tokens, data_dir, server }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(60))).build().into()
}

/// Sends raw bytes to the server (for requests no HTTP client would make); returns the
/// status and the JSON body (Null when not JSON). Reads for at most 10 seconds.
fn raw(s: &Server, request: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(s.base.trim_start_matches("http://")).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    conn.write_all(request.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // Until the headers and a complete JSON body have arrived (the server may keep the
    // connection open), or the time is up.
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if text.split_once("\r\n\r\n").is_some_and(|(_, b)| serde_json::from_str::<serde_json::Value>(b).is_ok()) {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body =
        text.split_once("\r\n\r\n").map_or(serde_json::Value::Null, |(_, b)| serde_json::from_str(b).unwrap_or(serde_json::Value::Null));
    (status, body)
}

/// Sends a request; returns status and JSON body (Null when not JSON).
fn call(s: &Server, method: &str, path: &str, token: Option<&str>, body: Option<(String, Vec<u8>)>) -> (u16, serde_json::Value) {
    let url = format!("{}{path}", s.base);
    let a = agent();
    let resp = match (method, body) {
        ("GET", _) => {
            let mut r = a.get(&url);
            if let Some(t) = token {
                r = r.header("Authorization", &format!("Bearer {t}"));
            }
            r.call()
        }
        (m, b) => {
            let mut r = match m {
                "PATCH" => a.patch(&url),
                "PUT" => a.put(&url),
                "DELETE" => {
                    return raw(
                        s,
                        &format!(
                            "DELETE {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\n\r\n",
                            token.unwrap_or_default()
                        ),
                    )
                }
                _ => a.post(&url),
            };
            if let Some(t) = token {
                r = r.header("Authorization", &format!("Bearer {t}"));
            }
            let (ct, bytes) = b.unwrap_or_else(|| ("application/json".into(), b"{}".to_vec()));
            r.header("Content-Type", &ct).send(&bytes[..])
        }
    }
    .unwrap();
    let status = resp.status().as_u16();
    let text = resp.into_body().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

/// A route, the roles it admits, and a body that it accepts.
type RouteCase<'a> = (&'a str, &'a str, Vec<Role>, Option<(String, Vec<u8>)>);

#[test]
fn every_route_refuses_every_role_that_should_not_reach_it() {
    let s = start_in_memory("roles");
    let photo = std::fs::read(root().join("data-sample/queries/h-harbor-query.jpg")).unwrap();
    let routes: Vec<RouteCase> = vec![
        ("GET", "/api/v1/hotels?q=harbor", vec![Role::Uploader, Role::Investigator, Role::Admin], None),
        (
            "POST",
            "/api/v1/hotels",
            vec![Role::Admin],
            Some(("application/json".into(), br#"{"name": "New Inn", "city": "Reno"}"#.to_vec())),
        ),
        (
            "POST",
            "/api/v1/photos",
            vec![Role::Uploader, Role::Admin],
            Some(multipart(&[("photo", &photo)], &[("hotel_id", "3"), ("room", "7")])),
        ),
        ("GET", "/api/v1/photos/1", vec![Role::Investigator, Role::Admin], None),
        ("POST", "/api/v1/search", vec![Role::Investigator, Role::Admin], Some(multipart(&[("photo", &photo)], &[("top", "2")]))),
        ("POST", "/api/v1/photos/2/status", vec![Role::Admin], Some(("application/json".into(), br#"{"status": "quarantined"}"#.to_vec()))),
        ("GET", "/api/v1/audit", vec![Role::Admin], None),
        (
            "PATCH",
            "/api/v1/hotels/1",
            vec![Role::Admin],
            Some(("application/json".into(), br#"{"name": "Harbor Hotel", "city": "Seattle", "country": "US"}"#.to_vec())),
        ),
        ("GET", "/api/v1/hotels/1/photos", vec![Role::Investigator, Role::Admin], None),
        ("GET", "/api/v1/photos/1?size=64", vec![Role::Investigator, Role::Admin], None),
        ("POST", "/api/v1/jobs/reindex", vec![Role::Admin], None),
        ("GET", "/api/v1/jobs", vec![Role::Admin], None),
        ("GET", "/api/v1/jobs/1", vec![Role::Admin], None),
        ("GET", "/api/v1/whoami", vec![Role::Uploader, Role::Investigator, Role::Admin], None),
        (
            "POST",
            "/api/v1/cases",
            vec![Role::Investigator, Role::Admin],
            Some(("application/json".into(), br#"{"title": "Ad 1"}"#.to_vec())),
        ),
        ("GET", "/api/v1/cases", vec![Role::Investigator, Role::Admin], None),
        ("GET", "/api/v1/banks", vec![Role::Admin], None),
        (
            "POST",
            "/api/v1/banks/roles/hashes",
            vec![Role::Admin],
            Some(("text/plain".into(), b"pdq f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22\n".to_vec())),
        ),
        ("GET", "/api/v1/hashes", vec![Role::Admin], None),
    ];
    for (method, path, allowed, body) in &routes {
        let (st, j) = call(&s, method, path, None, body.clone());
        assert_eq!(st, 401, "{method} {path} without a key: {j}");
        assert_eq!(j["error"]["code"], "missing_key");
        let (st, _) = call(&s, method, path, Some("hm_0000_forged"), body.clone());
        assert_eq!(st, 401, "{method} {path} with a forged key");
        for (role, token) in &s.tokens {
            let (st, j) = call(&s, method, path, Some(token), body.clone());
            if allowed.contains(role) {
                assert!(st < 300, "{method} {path} as {role:?}: {st} {j}");
            } else {
                assert_eq!(st, 403, "{method} {path} as {role:?}: {j}");
                assert_eq!(j["error"]["code"], "forbidden");
            }
        }
    }
}

#[test]
fn upload_search_and_audit_through_http() {
    let s = start("flow");
    let token = |r: Role| s.tokens.iter().find(|(x, _)| *x == r).unwrap().1.clone();
    let query = std::fs::read(root().join("data-sample/queries/h-maple-query.jpg")).unwrap();
    let mask = std::fs::read(root().join("data-sample/queries/h-maple-query-mask.png")).unwrap();
    let (st, res) = call(
        &s,
        "POST",
        "/api/v1/search",
        Some(&token(Role::Investigator)),
        Some(multipart(&[("photo", &query), ("mask", &mask)], &[("country", "CA")])),
    );
    assert_eq!(st, 200, "{res}");
    assert_eq!(res["hotels"][0]["hotel"]["external_id"], "h-maple");
    assert!(res["hotels"].as_array().unwrap().iter().all(|h| h["hotel"]["country"] == "CA"));
    let image_id = res["hotels"][0]["evidence"][0]["image_id"].as_i64().unwrap();
    // Hotels by name, and near a point.
    let (st, near) = call(&s, "GET", "/api/v1/hotels?near=39.74,-104.99&radius_km=60", Some(&token(Role::Uploader)), None);
    assert_eq!(st, 200);
    let mut names: Vec<&str> = near.as_array().unwrap().iter().map(|h| h["external_id"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, vec!["h-aurora", "h-pinecrest"]);
    let (st, e) = call(&s, "GET", "/api/v1/hotels?near=nowhere&radius_km=5", Some(&token(Role::Uploader)), None);
    assert_eq!((st, e["error"]["code"].as_str()), (400, Some("invalid_field")));
    // The evidence photo can be fetched, and has no EXIF.
    let resp = agent()
        .get(&format!("{}/api/v1/photos/{image_id}", s.base))
        .header("Authorization", &format!("Bearer {}", token(Role::Investigator)))
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let bytes = resp.into_body().read_to_vec().unwrap();
    assert!(bytes.starts_with(&[0xFF, 0xD8]) && !bytes.windows(4).any(|w| w == b"Exif"));
    // A new photo from the public: 201 with its id and PDQ.
    let new = std::fs::read(root().join("data-sample/imagenet/espresso.jpg")).unwrap();
    let (st, up) = call(
        &s,
        "POST",
        "/api/v1/photos",
        Some(&token(Role::Uploader)),
        Some(multipart(&[("photo", &new)], &[("hotel_id", "1"), ("room", "12")])),
    );
    assert_eq!((st, up["outcome"].as_str()), (201, Some("added")), "{up}");
    assert_eq!(up["pdq"].as_str().map(str::len), Some(64));
    // The same again: a duplicate, 200, nothing created.
    let (st, dup) =
        call(&s, "POST", "/api/v1/photos", Some(&token(Role::Uploader)), Some(multipart(&[("photo", &new)], &[("hotel_id", "1")])));
    assert_eq!((st, dup["outcome"].as_str()), (200, Some("duplicate")));
    // The same photo for another hotel: one of the two claims is wrong. Nothing is added,
    // and the conflict is listed for an admin.
    let (st, conflict) =
        call(&s, "POST", "/api/v1/photos", Some(&token(Role::Uploader)), Some(multipart(&[("photo", &new)], &[("hotel_id", "2")])));
    assert_eq!(
        (st, conflict["outcome"].as_str(), conflict["of_image_id"].as_i64()),
        (200, Some("cross-hotel-duplicate"), up["image_id"].as_i64()),
        "{conflict}"
    );
    assert_eq!(conflict["of_hotel_id"], 1);
    let (_, photos) = call(&s, "GET", "/api/v1/hotels/2/photos", Some(&token(Role::Investigator)), None);
    assert!(photos.as_array().unwrap().iter().all(|p| p["id"].as_i64() != up["image_id"].as_i64()));
    let (st, conflicts) = call(&s, "GET", "/api/v1/audit?action=upload-conflict", Some(&token(Role::Admin)), None);
    assert_eq!(st, 200);
    let listed = conflicts.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{conflicts}");
    assert_eq!((listed[0]["detail"]["hotel_id"].as_i64(), listed[0]["detail"]["of_hotel_id"].as_i64()), (Some(2), Some(1)));
    // Bad input: clear 4xx with a code.
    let (st, e) = call(
        &s,
        "POST",
        "/api/v1/photos",
        Some(&token(Role::Uploader)),
        Some(multipart(&[("photo", b"not an image")], &[("hotel_id", "1")])),
    );
    assert_eq!((st, e["error"]["code"].as_str()), (415, Some("unsupported_image")));
    let (st, e) =
        call(&s, "POST", "/api/v1/photos", Some(&token(Role::Uploader)), Some(multipart(&[("photo", &new)], &[("hotel_id", "999")])));
    assert_eq!((st, e["error"]["code"].as_str()), (404, Some("no_such_hotel")));
    let (st, e) = call(&s, "POST", "/api/v1/search", Some(&token(Role::Investigator)), Some(multipart(&[], &[("top", "3")])));
    assert_eq!((st, e["error"]["code"].as_str()), (400, Some("missing_photo")));
    // The audit names the investigator's key and the query's hash, never the photo.
    let (st, audit) = call(&s, "GET", "/api/v1/audit?limit=50", Some(&token(Role::Admin)), None);
    assert_eq!(st, 200);
    let search = audit.as_array().unwrap().iter().find(|a| a["action"] == "search").unwrap();
    let key_id = token(Role::Investigator).split('_').nth(1).unwrap().to_string();
    assert_eq!(search["actor"], key_id);
    assert_eq!(search["detail"]["filters"]["country"], "CA");
    assert_eq!(search["detail"]["query_sha256"].as_str().map(str::len), Some(64));
}

#[test]
fn uploads_and_searches_are_rate_limited_per_key_and_metrics_count_requests() {
    let tiles = "http://127.0.0.1:9/{z}/{x}/{y}.png".to_string();
    let s = start_with(
        "limits",
        hotelmatch::api::ServeOptions { uploads_per_minute: 2, searches_per_minute: 1, map_tiles: tiles.clone(), ..Default::default() },
    );
    let up = s.tokens.iter().find(|(r, _)| *r == Role::Uploader).unwrap().1.clone();
    // A configured tile server is handed to the pages (the default is none: tested above).
    assert_eq!(call(&s, "GET", "/api/v1/whoami", Some(&up), None).1["map_tiles"].as_str(), Some(tiles.as_str()));
    let admin = s.tokens.iter().find(|(r, _)| *r == Role::Admin).unwrap().1.clone();
    let photos = ["data-sample/imagenet/cat.jpg", "data-sample/imagenet/espresso.jpg", "tests/fixtures/pdq/noise.png"];
    let statuses: Vec<u16> = photos
        .iter()
        .map(|p| {
            let bytes = std::fs::read(root().join(p)).unwrap();
            call(&s, "POST", "/api/v1/photos", Some(&up), Some(multipart(&[("photo", &bytes)], &[("hotel_id", "2")]))).0
        })
        .collect();
    assert_eq!(statuses, vec![201, 201, 429]);
    // Another key is not held back by the first one's limit.
    let bytes = std::fs::read(root().join("tests/fixtures/pdq/noise.png")).unwrap();
    assert_eq!(call(&s, "POST", "/api/v1/photos", Some(&admin), Some(multipart(&[("photo", &bytes)], &[("hotel_id", "2")]))).0, 201);
    // Searches are limited per key too (one a minute here).
    let inv = s.tokens.iter().find(|(r, _)| *r == Role::Investigator).unwrap().1.clone();
    let query = std::fs::read(root().join("data-sample/queries/h-maple-query.jpg")).unwrap();
    let search = || call(&s, "POST", "/api/v1/search", Some(&inv), Some(multipart(&[("photo", &query)], &[])));
    assert_eq!(search().0, 200);
    let (st, j) = search();
    assert_eq!((st, j["error"]["code"].as_str()), (429, Some("rate_limited")));
    let resp = agent().get(&format!("{}/metrics", s.base)).call().unwrap();
    let text = resp.into_body().read_to_string().unwrap();
    assert!(text.contains("hotelmatch_requests_total{route=\"POST /api/v1/photos\",status=\"201\"} 3"), "{text}");
    assert!(text.contains("hotelmatch_requests_total{route=\"POST /api/v1/photos\",status=\"429\"} 1"));
    assert!(text.contains("hotelmatch_indexed_photos 51"));
    // Latency histograms per route and per search stage, and the replica's lag behind the feed.
    assert!(text.contains("hotelmatch_request_seconds_bucket{route=\"POST /api/v1/search\",le=\"+Inf\"} 2"), "{text}");
    for stage in ["retrieve", "verify", "rank", "explain", "record"] {
        assert!(text.contains(&format!("hotelmatch_search_stage_seconds_count{{stage=\"{stage}\"}} 1")), "{stage}: {text}");
    }
    assert!(text.contains("hotelmatch_feed_lag_changes 0"), "{text}");
    let (st, ready) = call(&s, "GET", "/readyz", None, None);
    assert_eq!((st, ready["ready"].as_bool()), (200, Some(true)));
}

#[test]
fn the_openapi_document_describes_exactly_the_routes_served() {
    let s = start("openapi");
    let (st, doc) = call(&s, "GET", "/openapi.json", None, None);
    assert_eq!(st, 200);
    assert_eq!(doc["components"]["securitySchemes"]["api_key"]["scheme"], "bearer");
    for schema in [
        "SearchResult",
        "HotelHit",
        "Evidence",
        "Reuse",
        "Hotel",
        "Image",
        "Ingested",
        "Job",
        "AuditEntry",
        "ErrorBody",
        "SearchForm",
        "UploadForm",
        "Case",
        "CaseView",
        "CaseEntry",
        "Bank",
        "BankImport",
        "BankMatch",
        "Confidence",
        "CalibrationInfo",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "schema {schema} missing");
    }
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            documented.push(format!("{} {path}", method.to_uppercase()));
            // Every documented operation is really served: without a key a guarded one
            // answers 401 (so it is not a 404), an open one answers 200.
            let concrete = path.replace("{id}", "1").replace("{sha256}", &"0".repeat(64)).replace("{name}", "bank");
            let guarded = op["security"].as_array().is_some_and(|a| !a.is_empty());
            let (st, body) = call(&s, &method.to_uppercase(), &concrete, None, None);
            assert_eq!(st, if guarded { 401 } else { 200 }, "{method} {path}: {body}");
            if guarded {
                let roles = op["description"].as_str().unwrap_or_default();
                assert!(roles.contains("Roles:"), "{method} {path} does not say who may call it");
            }
        }
    }
    documented.sort();
    let mut want = vec![
        "GET /api/v1/audit",
        "GET /api/v1/case-images/{sha256}",
        "GET /api/v1/hotels",
        "GET /api/v1/hotels/{id}/photos",
        "GET /api/v1/jobs",
        "GET /api/v1/jobs/{id}",
        "GET /api/v1/photos/{id}",
        "GET /healthz",
        "GET /metrics",
        "GET /readyz",
        "POST /api/v1/hotels",
        "POST /api/v1/jobs/reindex",
        "POST /api/v1/photos",
        "POST /api/v1/photos/{id}/status",
        "POST /api/v1/search",
        "POST /api/v1/search/points",
        "POST /api/v1/search/heatmap",
        "PATCH /api/v1/hotels/{id}",
        "GET /api/v1/whoami",
        "GET /api/v1/cases",
        "POST /api/v1/cases",
        "GET /api/v1/cases/{id}",
        "POST /api/v1/cases/{id}/notes",
        "POST /api/v1/cases/{id}/verdicts",
        "GET /api/v1/cases/{id}/report",
        "GET /api/v1/banks",
        "POST /api/v1/banks/{name}/hashes",
        "GET /api/v1/hashes",
        "POST /api/v1/calibration/from-cases",
    ];
    want.sort();
    assert_eq!(documented, want);
    let page = agent().get(&format!("{}/docs", s.base)).call().unwrap().into_body().read_to_string().unwrap();
    assert!(page.contains("/openapi.json"));
}

#[test]
fn a_reindex_job_runs_in_the_background_and_can_be_followed() {
    let s = start("jobs");
    let admin = s.tokens.iter().find(|(r, _)| *r == Role::Admin).unwrap().1.clone();
    let inv = s.tokens.iter().find(|(r, _)| *r == Role::Investigator).unwrap().1.clone();
    let (st, job) = call(&s, "POST", "/api/v1/jobs/reindex", Some(&admin), None);
    assert_eq!((st, job["kind"].as_str()), (202, Some("reindex")), "{job}");
    let id = job["id"].as_i64().unwrap();
    // Bounded wait: 48 photos re-index in well under a second.
    let mut last = serde_json::Value::Null;
    for _ in 0..240 {
        let (st, j) = call(&s, "GET", &format!("/api/v1/jobs/{id}"), Some(&admin), None);
        assert_eq!(st, 200);
        last = j;
        if last["state"] != "running" {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(last["state"], "done", "{last}");
    assert_eq!((last["phase"].as_str(), last["done"].as_i64(), last["total"].as_i64()), (Some("indexing"), Some(48), Some(48)), "{last}");
    let (_, list) = call(&s, "GET", "/api/v1/jobs", Some(&admin), None);
    assert_eq!(list[0]["id"].as_i64(), Some(id));
    let (st, e) = call(&s, "GET", "/api/v1/jobs/999", Some(&admin), None);
    assert_eq!((st, e["error"]["code"].as_str()), (404, Some("no_such_job")));
    // The rebuilt index answers as before.
    let query = std::fs::read(root().join("data-sample/queries/h-maple-query.jpg")).unwrap();
    let (st, res) = call(&s, "POST", "/api/v1/search", Some(&inv), Some(multipart(&[("photo", &query)], &[])));
    assert_eq!((st, res["hotels"][0]["hotel"]["external_id"].as_str()), (200, Some("h-maple")));
    let (_, ready) = call(&s, "GET", "/readyz", None, None);
    assert_eq!(ready["indexed_photos"], 48);
}

#[test]
fn a_case_image_is_kept_only_when_the_investigator_asks() {
    let s = start("cases");
    let inv = s.tokens.iter().find(|(r, _)| *r == Role::Investigator).unwrap().1.clone();
    let up = s.tokens.iter().find(|(r, _)| *r == Role::Uploader).unwrap().1.clone();
    let query = std::fs::read(root().join("data-sample/queries/h-harbor-query.jpg")).unwrap();
    let (st, res) = call(&s, "POST", "/api/v1/search", Some(&inv), Some(multipart(&[("photo", &query)], &[])));
    assert_eq!((st, res["saved_case_image"].as_bool()), (200, Some(false)));
    let sha = res["query_sha256"].as_str().unwrap().to_string();
    let (st, e) = call(&s, "GET", &format!("/api/v1/case-images/{sha}"), Some(&inv), None);
    assert_eq!((st, e["error"]["code"].as_str()), (404, Some("not_found")), "not kept unless asked");
    // Kept only in a case: a photo kept outside one would be nobody's to see.
    let (st, e) = call(&s, "POST", "/api/v1/search", Some(&inv), Some(multipart(&[("photo", &query)], &[("save_case", "true")])));
    assert_eq!((st, e["error"]["code"].as_str()), (400, Some("invalid_field")));
    let (_, case) = call(&s, "POST", "/api/v1/cases", Some(&inv), Some(("application/json".to_string(), br#"{"title": "kept"}"#.to_vec())));
    let case_id = case["id"].as_i64().unwrap().to_string();
    let (st, res) = call(
        &s,
        "POST",
        "/api/v1/search",
        Some(&inv),
        Some(multipart(&[("photo", &query)], &[("save_case", "true"), ("case_id", &case_id)])),
    );
    assert_eq!((st, res["saved_case_image"].as_bool()), (200, Some(true)));
    let resp =
        agent().get(&format!("{}/api/v1/case-images/{sha}", s.base)).header("Authorization", &format!("Bearer {inv}")).call().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.into_body().read_to_vec().unwrap(), query, "kept byte for byte");
    assert_eq!(call(&s, "GET", &format!("/api/v1/case-images/{sha}"), Some(&up), None).0, 403);
    // Another investigator gets the same 404 as for a photo never kept, and the attempt is
    // audited; an admin may read it.
    let other = hotelmatch::catalog::open(&s.data_dir.join("catalog.sqlite").display().to_string())
        .unwrap()
        .create_key(Role::Investigator, "other")
        .unwrap()
        .1;
    let missing = "0".repeat(64);
    let (st_b, e_b) = call(&s, "GET", &format!("/api/v1/case-images/{sha}"), Some(&other), None);
    let (st_m, e_m) = call(&s, "GET", &format!("/api/v1/case-images/{missing}"), Some(&inv), None);
    assert_eq!((st_b, &e_b["error"]["code"]), (st_m, &e_m["error"]["code"]));
    assert_eq!(st_b, 404);
    let admin = s.tokens.iter().find(|(r, _)| *r == Role::Admin).unwrap().1.clone();
    assert_eq!(call(&s, "GET", &format!("/api/v1/case-images/{sha}"), Some(&admin), None).0, 200);
    let (_, denied) = call(&s, "GET", "/api/v1/audit?action=case-denied", Some(&admin), None);
    assert!(denied.as_array().unwrap().iter().any(|a| a["detail"]["sha256"] == sha.as_str()), "{denied}");
    // An unusable calibration reaching the catalog is loud: /readyz says why, with 503, and
    // the one in use stays.
    let (_, ready) = call(&s, "GET", "/readyz", None, None);
    assert_eq!(ready["ready"], true);
    let bad = serde_json::json!({"temperature": 0.00024, "none_score": 0.2, "strong": 0.7, "possible": 0.3, "source": "x", "samples": 12, "model": "x", "scoring": "x"});
    hotelmatch::catalog::open(&s.data_dir.join("catalog.sqlite").display().to_string())
        .unwrap()
        .put_state("calibration", &bad, "someone")
        .unwrap();
    let in_use = s.server.engine.calibration();
    s.server.engine.follow().unwrap();
    let (st, said) = call(&s, "GET", "/readyz", None, None);
    assert_eq!(st, 503, "{said}");
    assert!(said["ready"] == false && said["calibration"]["problem"].as_str().unwrap().contains("temperature"), "{said}");
    assert_eq!(*s.server.engine.calibration(), *in_use);
    let (st, e) = call(&s, "GET", "/api/v1/case-images/..%2F..%2Fcatalog.sqlite", Some(&inv), None);
    assert_eq!((st, e["error"]["code"].as_str()), (400, Some("invalid_field")));
    let (st, e) = call(&s, "POST", "/api/v1/search", Some(&inv), Some(multipart(&[("photo", &query)], &[("save_case", "maybe")])));
    assert_eq!((st, e["error"]["code"].as_str()), (400, Some("invalid_field")));
    // A thumbnail is a JPEG no larger than asked.
    let resp =
        agent().get(&format!("{}/api/v1/photos/1?size=100", s.base)).header("Authorization", &format!("Bearer {inv}")).call().unwrap();
    let thumb = image::load_from_memory(&resp.into_body().read_to_vec().unwrap()).unwrap();
    assert!(thumb.width().max(thumb.height()) == 100, "{}x{}", thumb.width(), thumb.height());
}

#[test]
fn shutdown_finishes_an_upload_in_flight() {
    let mut s = start("shutdown");
    let up = s.tokens.iter().find(|(r, _)| *r == Role::Uploader).unwrap().1.clone();
    // 27 Mpixels: full decode and PDQ take long enough to stop the server in the middle.
    let big = std::fs::read(root().join("tests/fixtures/pdq/huge-6000x4500.jpg")).unwrap();
    let url = format!("{}/api/v1/photos", s.base);
    let client = std::thread::spawn(move || {
        let (ct, body) = multipart(&[("photo", &big)], &[("hotel_id", "2"), ("room", "9")]);
        let resp = agent().post(&url).header("Authorization", &format!("Bearer {up}")).header("Content-Type", &ct).send(&body[..]).unwrap();
        let status = resp.status().as_u16();
        (status, serde_json::from_str::<serde_json::Value>(&resp.into_body().read_to_string().unwrap()).unwrap())
    });
    // Bounded wait until the upload holds its place in the embedding queue.
    let mut in_flight = false;
    for _ in 0..5000 {
        let text = agent().get(&format!("{}/metrics", s.base)).call().unwrap().into_body().read_to_string().unwrap();
        if text.contains("hotelmatch_queue_depth 1") {
            in_flight = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(in_flight, "the upload never showed in the queue");
    s.server.signal_stop();
    let (status, body) = client.join().unwrap();
    assert_eq!((status, body["outcome"].as_str()), (201, Some("added")), "{body}");
    s.server.shutdown().unwrap();
    // Durable: the server is gone and a fresh engine over the same directory has the photo.
    let engine = (Config { data_dir: s.data_dir.clone(), ..Config::default() }).open_engine().unwrap();
    let img = engine.image(body["image_id"].as_i64().unwrap()).unwrap();
    assert_eq!((img.hotel_id, img.room.as_deref(), img.width), (2, Some("9"), 6000));
}

/// A JPEG segment: marker, big-endian length, payload.
fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
    let mut s = vec![0xFF, marker];
    s.extend_from_slice(&(payload.len() as u16 + 2).to_be_bytes());
    s.extend_from_slice(payload);
    s
}

/// EXIF (little-endian TIFF) with an orientation and an ImageDescription holding `secret`.
fn exif_segment(orientation: u16, secret: &str) -> Vec<u8> {
    let text = format!("{secret}\0");
    let mut t = b"Exif\0\0II*\0\x08\0\0\0".to_vec();
    t.extend_from_slice(&2u16.to_le_bytes()); // two entries
    let text_at = 8 + 2 + 2 * 12 + 4;
    t.extend_from_slice(&[0x0E, 0x01, 2, 0]); // ImageDescription, ASCII
    t.extend_from_slice(&(text.len() as u32).to_le_bytes());
    t.extend_from_slice(&(text_at as u32).to_le_bytes());
    t.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0]); // Orientation, SHORT, 1
    t.extend_from_slice(&orientation.to_le_bytes());
    t.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // no next IFD
    t.extend_from_slice(text.as_bytes());
    segment(0xE1, &t)
}

/// PNG chunk with its CRC.
fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let crc = |bytes: &[u8]| {
        let mut c = 0xFFFF_FFFFu32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    };
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    let body = [&kind[..], data].concat();
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc(&body).to_be_bytes());
    out
}

/// Photos carrying metadata wherever phones and editors put it, each holding the text
/// "HM-SECRET": every APPn kind, comments, JFXX thumbnails, MPF, a second JPEG or a video
/// appended after the end of the image, PNG text and EXIF chunks, WebP EXIF and XMP chunks.
fn metadata_laden_photos() -> Vec<(&'static str, Vec<u8>)> {
    let read = |p: &str| std::fs::read(root().join(p)).unwrap();
    let jpeg = |p: &str, orientation: u16| {
        let base = read(p);
        let mut out = base[..2].to_vec();
        out.extend(segment(0xE0, b"JFXX\0\x13HM-SECRET-JFXX-thumbnail"));
        out.extend(exif_segment(orientation, "HM-SECRET-GPS 40.7128N 74.0060W"));
        out.extend(segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>HM-SECRET-XMP</x:xmpmeta>"));
        out.extend(segment(0xE2, b"MPF\0HM-SECRET-MPF"));
        out.extend(segment(0xED, b"Photoshop 3.0\0HM-SECRET-IPTC"));
        out.extend(segment(0xFE, b"HM-SECRET-COMMENT"));
        out.extend_from_slice(&base[2..]);
        out
    };
    let mut all_segments = jpeg("data-sample/queries/h-harbor-query.jpg", 1);
    // A second JPEG after the end of the image, with its own EXIF (as MPF and editors append).
    let second = read("data-sample/imagenet/cat.jpg");
    all_segments.extend_from_slice(&second[..2]);
    all_segments.extend(exif_segment(1, "HM-SECRET-SECOND-JPEG-GPS"));
    all_segments.extend_from_slice(&second[2..]);
    let mut motion = jpeg("data-sample/queries/h-maple-query.jpg", 1);
    motion.extend_from_slice(b"\0\0\0\x18ftypmp42HM-SECRET-MOTION-PHOTO-VIDEO");
    let rotated = jpeg("data-sample/queries/h-lonestar-query.jpg", 6);
    let decoded = |p: &str| image::load_from_memory(&read(p)).unwrap();
    let mut png_plain = Vec::new();
    decoded("data-sample/queries/h-aurora-query.jpg").write_to(&mut std::io::Cursor::new(&mut png_plain), image::ImageFormat::Png).unwrap();
    // Text and EXIF chunks go before the image data (after IHDR: 8 + 25 bytes).
    let mut png = png_plain[..33].to_vec();
    png.extend(png_chunk(b"tEXt", b"Comment\0HM-SECRET-PNG-TEXT"));
    png.extend(png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0<x:xmpmeta>HM-SECRET-PNG-XMP</x:xmpmeta>"));
    png.extend(png_chunk(b"eXIf", &exif_segment(1, "HM-SECRET-PNG-EXIF")[10..]));
    png.extend_from_slice(&png_plain[33..]);
    let img = decoded("data-sample/queries/h-desert-query.jpg");
    let mut webp_plain = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut webp_plain), image::ImageFormat::WebP).unwrap();
    // Extended WebP: VP8X (EXIF and XMP flags), the image chunk, then EXIF and XMP chunks.
    let riff_chunk = |kind: &[u8; 4], data: &[u8]| {
        let mut c = kind.to_vec();
        c.extend_from_slice(&(data.len() as u32).to_le_bytes());
        c.extend_from_slice(data);
        if data.len() % 2 == 1 {
            c.push(0);
        }
        c
    };
    let mut vp8x = vec![0x08 | 0x04, 0, 0, 0];
    vp8x.extend_from_slice(&(img.width() - 1).to_le_bytes()[..3]);
    vp8x.extend_from_slice(&(img.height() - 1).to_le_bytes()[..3]);
    let mut body = b"WEBP".to_vec();
    body.extend(riff_chunk(b"VP8X", &vp8x));
    body.extend_from_slice(&webp_plain[12..]);
    body.extend(riff_chunk(b"EXIF", &exif_segment(1, "HM-SECRET-WEBP-EXIF")[10..]));
    body.extend(riff_chunk(b"XMP ", b"<x:xmpmeta>HM-SECRET-WEBP-XMP</x:xmpmeta>"));
    let mut webp = b"RIFF".to_vec();
    webp.extend_from_slice(&(body.len() as u32).to_le_bytes());
    webp.extend(body);
    vec![
        ("jpeg-every-segment-and-a-second-jpeg", all_segments),
        ("jpeg-motion-photo", motion),
        ("jpeg-rotated", rotated),
        ("png-text-and-exif", png),
        ("webp-exif-and-xmp", webp),
    ]
}

/// Every file in the server's photo store.
fn stored_files(s: &Server) -> Vec<PathBuf> {
    let (mut out, mut stack) = (Vec::new(), vec![s.data_dir.join("photos")]);
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// What Pillow (an independent parser) still finds in each file, by the project's checker.
fn metadata_found_by_pillow(files: &[PathBuf]) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(root().join(".cache/venv/bin/python"))
        .arg(root().join("scripts/dev/check_metadata.py"))
        .args(files)
        .output()
        .expect("the project venv (run scripts/setup.sh)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn stored_and_served_copies_carry_pixels_only() {
    let s = start("privacy");
    let up = s.tokens.iter().find(|(r, _)| *r == Role::Uploader).unwrap().1.clone();
    let inv = s.tokens.iter().find(|(r, _)| *r == Role::Investigator).unwrap().1.clone();
    let work = s.data_dir.join("privacy-check");
    std::fs::create_dir_all(&work).unwrap();
    let mut files = Vec::new();
    let laden = metadata_laden_photos();
    // The checker does see what was planted: the test could fail.
    let original = work.join("original.jpg");
    std::fs::write(&original, &laden[0].1).unwrap();
    let found = &metadata_found_by_pillow(std::slice::from_ref(&original))[0]["found"];
    assert!(found.as_array().unwrap().len() >= 4, "the checker misses planted metadata: {found}");
    for (name, bytes) in &laden {
        assert!(bytes.windows(9).any(|w| w == b"HM-SECRET"));
        let (st, res) =
            call(&s, "POST", "/api/v1/photos", Some(&up), Some(multipart(&[("photo", bytes)], &[("hotel_id", "2"), ("room", "9")])));
        assert_eq!((st, res["outcome"].as_str()), (201, Some("added")), "{name}: {res}");
        let id = res["image_id"].as_i64().unwrap();
        for (suffix, query) in [("served", ""), ("thumbnail", "?size=200")] {
            let resp = agent()
                .get(&format!("{}/api/v1/photos/{id}{query}", s.base))
                .header("Authorization", &format!("Bearer {inv}"))
                .call()
                .unwrap();
            assert_eq!(resp.status().as_u16(), 200, "{name}");
            let got = resp.into_body().read_to_vec().unwrap();
            assert!(!got.windows(9).any(|w| w == b"HM-SECRET"), "{name} {suffix} still carries planted metadata");
            let decoded = image::load_from_memory(&got).unwrap();
            if suffix == "served" {
                // Pixels kept: the upright size (the rotated JPEG is turned by its orientation 6).
                let src = image::load_from_memory(bytes).unwrap();
                let want = if *name == "jpeg-rotated" { (src.height(), src.width()) } else { (src.width(), src.height()) };
                assert_eq!((decoded.width(), decoded.height()), want, "{name}");
                if name.starts_with("jpeg") && *name != "jpeg-rotated" {
                    // Upright JPEGs are rebuilt losslessly: the very same pixels.
                    assert!(decoded.to_rgb8() == src.to_rgb8(), "{name}: pixels changed");
                }
            }
            let path = work.join(format!("{name}-{suffix}"));
            std::fs::write(&path, &got).unwrap();
            files.push(path);
        }
    }
    // The files in the store itself, every one of them.
    for path in stored_files(&s) {
        assert!(!std::fs::read(&path).unwrap().windows(9).any(|w| w == b"HM-SECRET"), "{}", path.display());
        files.push(path);
    }
    assert!(files.len() >= 2 * laden.len() + laden.len());
    for report in metadata_found_by_pillow(&files) {
        assert_eq!(report["found"], serde_json::json!([]), "{report}");
    }
}

#[test]
fn malformed_requests_get_json_errors_and_hotels_are_never_overwritten_silently() {
    let s = start("hardening");
    let token = |r: Role| s.tokens.iter().find(|(x, _)| *x == r).unwrap().1.clone();
    let (admin, inv, up) = (token(Role::Admin), token(Role::Investigator), token(Role::Uploader));
    let json = |body: &str| Some(("application/json".to_string(), body.as_bytes().to_vec()));
    let is_error = |st: u16, j: &serde_json::Value, code: &str| {
        (400..500).contains(&st) && j["error"]["code"] == code && j["error"]["message"].is_string()
    };
    let (_, before) = call(&s, "GET", "/api/v1/hotels?q=Harbor", Some(&admin), None);
    let harbor = before[0].clone();
    let id = harbor["id"].as_i64().unwrap();

    // A client-supplied id is refused, and nothing changes.
    let (st, j) = call(&s, "POST", "/api/v1/hotels", Some(&admin), json(&format!(r#"{{"id": {id}, "name": "Overwritten"}}"#)));
    assert!(is_error(st, &j, "invalid_json") && st == 422, "{st} {j}");
    // An existing external id is a conflict, not an overwrite.
    let (st, j) = call(&s, "POST", "/api/v1/hotels", Some(&admin), json(r#"{"external_id": "h-harbor", "name": "Overwritten"}"#));
    assert!(is_error(st, &j, "hotel_exists") && st == 409, "{st} {j}");
    let (_, after) = call(&s, "GET", "/api/v1/hotels?q=Harbor", Some(&admin), None);
    assert_eq!(after[0], harbor);
    // PATCH changes only what it names; null clears an optional field.
    // A hotel always has a name: null is refused, and so is a name that reads otherwise than stored.
    // (422 invalid_json, as for every body of the wrong shape here.)
    let (st, j) = call(&s, "PATCH", &format!("/api/v1/hotels/{id}"), Some(&admin), json(r#"{"name": null}"#));
    assert!(st == 422 && j["error"]["code"] == "invalid_json" && j["error"]["message"].as_str().unwrap().contains("null"), "{st} {j}");
    let (st, j) = call(&s, "PATCH", &format!("/api/v1/hotels/{id}"), Some(&admin), json("{\"name\": \"Inn \u{202e}gpj.exe\"}"));
    assert_eq!((st, j["error"]["code"].as_str()), (400, Some("invalid_field")), "{j}");
    let (st, j) = call(&s, "PATCH", &format!("/api/v1/hotels/{id}"), Some(&admin), json(r#"{"city": "Key Biscayne", "chain": null}"#));
    assert_eq!(st, 200, "{j}");
    assert_eq!((j["city"].as_str(), j["chain"].is_null()), (Some("Key Biscayne"), true));
    for kept in ["name", "address", "country", "latitude", "longitude", "external_id"] {
        assert_eq!(j[kept], harbor[kept], "{kept}");
    }
    let (_, audit) = call(&s, "GET", "/api/v1/audit?limit=20", Some(&admin), None);
    let change = audit.as_array().unwrap().iter().find(|a| a["action"] == "hotel-update").unwrap();
    assert_eq!(
        (change["detail"]["before"]["city"].as_str(), change["detail"]["after"]["city"].as_str()),
        (harbor["city"].as_str(), Some("Key Biscayne"))
    );

    // Malformed bodies, paths and queries: JSON errors with stable codes.
    let (st, j) = call(&s, "POST", "/api/v1/hotels", Some(&admin), json("{"));
    assert!(is_error(st, &j, "invalid_json"), "{st} {j}");
    let (st, j) = call(&s, "POST", "/api/v1/hotels", Some(&admin), json(r#"{"name": 5}"#));
    assert!(is_error(st, &j, "invalid_json"), "{st} {j}");
    let (st, j) = call(&s, "POST", "/api/v1/hotels", Some(&admin), Some(("text/plain".into(), br#"{"name": "x"}"#.to_vec())));
    assert!(is_error(st, &j, "not_json") && st == 415, "{st} {j}");
    let (st, j) = call(&s, "POST", "/api/v1/photos/2/status", Some(&admin), json(r#"{"status": "gone"}"#));
    assert!(is_error(st, &j, "invalid_json"), "{st} {j}");
    let (st, j) = call(&s, "GET", "/api/v1/photos/abc", Some(&inv), None);
    assert!(is_error(st, &j, "invalid_path"), "{st} {j}");
    let (st, j) = call(&s, "GET", "/api/v1/photos/1?size=big", Some(&inv), None);
    assert!(is_error(st, &j, "invalid_query"), "{st} {j}");
    let (st, j) = call(&s, "POST", "/api/v1/search", Some(&inv), Some(("multipart/form-data".into(), b"--x\r\n".to_vec())));
    assert!(is_error(st, &j, "invalid_multipart"), "{st} {j}");
    let (st, j) = call(&s, "GET", "/api/v1/nothing", Some(&inv), None);
    assert!(is_error(st, &j, "no_such_route") && st == 404, "{st} {j}");
    let (st, j) = call(&s, "DELETE", "/api/v1/audit", Some(&admin), None);
    assert!(is_error(st, &j, "method_not_allowed") && st == 405, "{st} {j}");

    // Validation of search fields and of text.
    let photo = std::fs::read(root().join("data-sample/queries/h-maple-query.jpg")).unwrap();
    for (near, radius) in [("nan,inf", "10"), ("91,200", "10"), ("1e400,0", "10"), ("40,-70", "-5"), ("40,-70", "NaN")] {
        let (st, j) =
            call(&s, "POST", "/api/v1/search", Some(&inv), Some(multipart(&[("photo", &photo)], &[("near", near), ("radius_km", radius)])));
        assert!(is_error(st, &j, "invalid_field") && st == 400, "near={near} radius={radius}: {st} {j}");
    }
    for top in ["0", "101"] {
        let (st, j) = call(&s, "POST", "/api/v1/search", Some(&inv), Some(multipart(&[("photo", &photo)], &[("top", top)])));
        assert!(is_error(st, &j, "invalid_field"), "top={top}: {st} {j}");
    }
    for ef in ["5", "1001", "-3", "many"] {
        let (st, j) = call(&s, "POST", "/api/v1/search", Some(&inv), Some(multipart(&[("photo", &photo)], &[("ef", ef)])));
        assert!(is_error(st, &j, "invalid_field") && st == 400, "ef={ef}: {st} {j}");
    }
    let (st, j) = call(&s, "POST", "/api/v1/search", Some(&inv), Some(multipart(&[("photo", &photo)], &[("ef", "400"), ("top", "3")])));
    assert_eq!(st, 200, "{j}");
    let (st, j) = call(&s, "POST", "/api/v1/search", Some(&inv), Some(multipart(&[("photo", &photo)], &[("top", "3"), ("top", "50")])));
    assert!(is_error(st, &j, "duplicate_field"), "{st} {j}");
    let (st, j) =
        call(&s, "POST", "/api/v1/photos", Some(&up), Some(multipart(&[("photo", &photo)], &[("hotel_id", "2"), ("room", "7\u{7}")])));
    assert!(is_error(st, &j, "invalid_field"), "{st} {j}");
    let long = "x".repeat(300);
    let (st, j) = call(&s, "PATCH", &format!("/api/v1/hotels/{id}"), Some(&admin), json(&format!(r#"{{"name": "{long}"}}"#)));
    assert!(is_error(st, &j, "invalid_field"), "{st} {j}");
    for wildcard in ["_", "%25"] {
        let (st, j) = call(&s, "GET", &format!("/api/v1/hotels?q={wildcard}"), Some(&up), None);
        assert_eq!((st, j.as_array().map(Vec::len)), (200, Some(0)), "q={wildcard} must match literally");
    }
    // The scheme is case-insensitive.
    let (st, _) =
        raw(&s, &format!("GET /api/v1/hotels?q=Maple HTTP/1.1\r\nHost: x\r\nAuthorization: bearer {up}\r\nConnection: close\r\n\r\n"));
    assert_eq!(st, 200);
    // A declared body over the limit is refused at once, without waiting for it.
    let t = std::time::Instant::now();
    let (st, j) = raw(&s, &format!("POST /api/v1/search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {inv}\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 10000000000\r\n\r\n--b\r\n"));
    assert!(is_error(st, &j, "body_too_large") && st == 413 && t.elapsed() < Duration::from_secs(5), "{st} {j} after {:?}", t.elapsed());

    // A quarantined photo is served to admins only.
    let (st, _) = call(&s, "POST", "/api/v1/photos/3/status", Some(&admin), json(r#"{"status": "quarantined"}"#));
    assert_eq!(st, 200);
    let (st, j) = call(&s, "GET", "/api/v1/photos/3", Some(&inv), None);
    assert!(is_error(st, &j, "no_such_photo") && st == 404, "{st} {j}");
    let resp = agent().get(&format!("{}/api/v1/photos/3", s.base)).header("Authorization", &format!("Bearer {admin}")).call().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[test]
fn a_flood_of_large_pixel_counts_is_turned_away_by_the_pixel_budget() {
    // Photos of at most 2 Mpixels, so the server-wide budget is 2 Mpixels: one such photo
    // decodes at a time, and the others are answered 503 at once instead of all decoding.
    let data_dir = std::env::temp_dir().join(format!("hm-api-budget-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let mut cfg = Config { data_dir: data_dir.clone(), ..Config::default() };
    cfg.limits.max_pixels = 2_000_000;
    let engine = cfg.open_engine().unwrap();
    import::import_hotels(&engine, &root().join("data-sample/hotels.csv"), "test").unwrap();
    let token = engine.create_key(Role::Investigator, "t", "test").unwrap().1;
    let mut server = Running::start(Arc::new(engine), cfg.serve.clone());
    let big = image::RgbImage::from_fn(1600, 1200, |x, y| image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x + y) % 239) as u8]));
    let mut png = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(big).write_to(&mut png, image::ImageFormat::Png).unwrap();
    let body = multipart(&[("photo", png.get_ref())], &[]);
    let url = format!("{}/api/v1/search", server.base);
    let answers: Vec<(u16, Option<String>, serde_json::Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let resp = agent()
                        .post(&url)
                        .header("Authorization", &format!("Bearer {token}"))
                        .header("Content-Type", &body.0)
                        .send(&body.1[..])
                        .unwrap();
                    let retry = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(String::from);
                    let status = resp.status().as_u16();
                    (status, retry, serde_json::from_str(&resp.into_body().read_to_string().unwrap_or_default()).unwrap_or_default())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = answers.iter().filter(|a| a.0 == 200).count();
    let busy: Vec<_> = answers.iter().filter(|a| a.0 == 503).collect();
    assert_eq!(ok + busy.len(), answers.len(), "only 200 or 503: {answers:?}");
    assert!(ok >= 1 && !busy.is_empty(), "{ok} answered, {} turned away", busy.len());
    assert!(busy.iter().all(|a| a.1.as_deref() == Some("1") && a.2["error"]["code"] == "busy"));
    let _ = server.shutdown();
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[test]
fn every_file_of_the_bad_input_corpus_is_refused_cleanly_or_handled() {
    // tests/fixtures/bad/ is made by scripts/data/make_bad_fixtures.py; expected.csv says what each must get.
    let s =
        start_with("bad", hotelmatch::api::ServeOptions { uploads_per_minute: 10_000, searches_per_minute: 10_000, ..Default::default() });
    let token = |r: Role| s.tokens.iter().find(|(x, _)| *x == r).unwrap().1.clone();
    let (up, inv) = (token(Role::Uploader), token(Role::Investigator));
    let dir = root().join("tests/fixtures/bad");
    let query = std::fs::read(root().join("data-sample/queries/h-harbor-query.jpg")).unwrap();
    let stored = || stored_files(&s).len();
    let manifest = std::fs::read_to_string(dir.join("expected.csv")).unwrap();
    let mut checked = 0;
    for line in manifest.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (file, field, expect) = (f[0], f[1], f[2]);
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let before = stored();
        let answers: Vec<(u16, serde_json::Value)> = match field {
            "photo" => vec![
                call(&s, "POST", "/api/v1/photos", Some(&up), Some(multipart(&[("photo", &bytes)], &[("hotel_id", "2")]))),
                call(&s, "POST", "/api/v1/search", Some(&inv), Some(multipart(&[("photo", &bytes)], &[]))),
            ],
            "mask" => vec![call(&s, "POST", "/api/v1/search", Some(&inv), Some(multipart(&[("photo", &query), ("mask", &bytes)], &[])))],
            "room" => {
                // A text part carrying raw bytes, which the multipart helper cannot express.
                let (ct, mut body) = multipart(&[("photo", &query)], &[("hotel_id", "2")]);
                let end = body.len() - "--hotelmatch-test-boundary-7d1f--\r\n".len();
                let mut part = b"--hotelmatch-test-boundary-7d1f\r\nContent-Disposition: form-data; name=\"room\"\r\n\r\n".to_vec();
                part.extend_from_slice(&bytes);
                part.extend_from_slice(b"\r\n");
                body.splice(end..end, part);
                vec![call(&s, "POST", "/api/v1/photos", Some(&up), Some((ct, body)))]
            }
            other => panic!("unknown field {other}"),
        };
        for (k, (st, j)) in answers.iter().enumerate() {
            match expect {
                "reject" => {
                    assert!((400..500).contains(st) && j["error"]["code"].is_string(), "{file}: {st} {j}");
                }
                // Too little of a room: refused as a gallery photo (the first answer), searched
                // as a query but never "strong".
                "flat" if k == 0 => assert!(*st == 400 && j["error"]["code"] == "invalid_field", "{file}: {st} {j}"),
                "flat" => {
                    let strong = j["hotels"].as_array().unwrap().iter().any(|h| h["confidence"] == "strong");
                    assert!(*st == 200 && j["low_information"] == true && !strong, "{file}: {st} {j}");
                }
                _ => assert!(*st == 200 || *st == 201, "{file}: {st} {j}"),
            }
        }
        if expect == "reject" || expect == "flat" {
            assert_eq!(stored(), before, "{file}: something was stored");
        }
        // The server keeps serving.
        assert_eq!(call(&s, "GET", "/healthz", None, None).0, 200, "after {file}");
        checked += 1;
    }
    assert!(checked >= 20, "{checked} files checked");
}

#[test]
fn cases_reports_banks_and_keys_through_http() {
    let s = start("workflow");
    let token = |r: Role| s.tokens.iter().find(|(x, _)| *x == r).unwrap().1.clone();
    let (inv, admin, up) = (token(Role::Investigator), token(Role::Admin), token(Role::Uploader));
    let json = |v: serde_json::Value| Some(("application/json".to_string(), v.to_string().into_bytes()));
    // Whoami: the key's id and role, for the pages to check a key when it is entered.
    let (st, who) = call(&s, "GET", "/api/v1/whoami", Some(&up), None);
    assert_eq!((st, who["role"].as_str(), who["map_tiles"].is_null()), (200, Some("uploader"), true));
    assert!(up.contains(who["key_id"].as_str().unwrap()));
    // Another investigator's key, straight in the catalog the server uses.
    let other = hotelmatch::catalog::open(&s.data_dir.join("catalog.sqlite").display().to_string())
        .unwrap()
        .create_key(Role::Investigator, "other")
        .unwrap()
        .1;

    let (st, case) = call(&s, "POST", "/api/v1/cases", Some(&inv), json(serde_json::json!({"title": "Ad 2026-114"})));
    assert_eq!(st, 201, "{case}");
    let id = case["id"].as_i64().unwrap();
    assert_eq!(call(&s, "POST", "/api/v1/cases", Some(&inv), json(serde_json::json!({"title": ""}))).1["error"]["code"], "invalid_field");
    let query = std::fs::read(root().join("data-sample/queries/h-lonestar-query.jpg")).unwrap();
    let mask = std::fs::read(root().join("data-sample/queries/h-lonestar-query-mask.png")).unwrap();
    let (st, res) = call(
        &s,
        "POST",
        "/api/v1/search",
        Some(&inv),
        Some(multipart(&[("photo", &query), ("mask", &mask)], &[("case_id", &id.to_string())])),
    );
    assert_eq!(st, 200, "{res}");
    let entry = res["case_entry"].as_i64().expect("saved into the case");
    let top = &res["hotels"][0];
    assert_eq!((top["hotel"]["external_id"].as_str(), top["confidence"].as_str()), (Some("h-lonestar"), Some("strong")), "{top}");
    assert!(top["probability"].as_f64().unwrap() > 0.7 && top["gap"].as_f64().unwrap() > 0.0);
    assert!(res["hotels"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .all(|h| h["probability"].as_f64().unwrap() < top["probability"].as_f64().unwrap()));
    // The search reads no stored photo: the matched points of an evidence photo are asked for.
    assert!(top["evidence"][0]["matched_pairs"].as_array().unwrap().is_empty());
    let evidence_id = top["evidence"][0]["image_id"].as_i64().unwrap().to_string();
    let points_form = |id: &str| Some(multipart(&[("photo", &query), ("mask", &mask)], &[("image_id", id)]));
    let (st, points) = call(&s, "POST", "/api/v1/search/points", Some(&inv), points_form(&evidence_id));
    assert_eq!(st, 200, "{points}");
    assert!(points["matched_points"].as_u64().unwrap() > 0 && !points["matched_pairs"].as_array().unwrap().is_empty(), "{points}");
    assert!(points["mark_points"].as_array().unwrap().is_empty(), "no marks learned: {points}");
    let (st, missing) = call(&s, "POST", "/api/v1/search/points", Some(&inv), points_form("999999"));
    assert_eq!((st, missing["error"]["code"].as_str()), (404, Some("no_such_photo")));
    let (st, no_id) = call(&s, "POST", "/api/v1/search/points", Some(&inv), Some(multipart(&[("photo", &query)], &[])));
    assert_eq!((st, no_id["error"]["code"].as_str()), (400, Some("invalid_field")));
    assert_eq!(call(&s, "POST", "/api/v1/search/points", Some(&up), points_form(&evidence_id)).0, 403);
    // Which regions drove the match, on demand: a 4 × 3 grid over each photo, each cell left
    // out in turn. The cell the person was painted over carries little of it.
    let (st, heat) = call(&s, "POST", "/api/v1/search/heatmap", Some(&inv), points_form(&evidence_id));
    assert_eq!(st, 200, "{heat}");
    let cells = |k: &str| heat[k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect::<Vec<_>>();
    let (q, st_cells) = (cells("query"), cells("stored"));
    assert_eq!((heat["grid"].clone(), q.len(), st_cells.len()), (serde_json::json!([4, 3]), 12, 12));
    let hottest = q.iter().copied().fold(f64::MIN, f64::max);
    assert!(hottest > 0.005 && st_cells.iter().any(|&v| v > 0.005), "some regions drive the match: {heat}");
    let m = image::load_from_memory(&mask).unwrap().to_luma8();
    let mut cover = [0u32; 12];
    for (x, y, p) in m.enumerate_pixels() {
        if p[0] >= 128 {
            cover[(y * 3 / m.height() * 4 + x * 4 / m.width()) as usize] += 1;
        }
    }
    let painted = (0..12).max_by_key(|&i| cover[i]).unwrap();
    assert!(q[painted] < hottest / 2.0, "the painted cell {painted} is not what matched: {heat}");
    eprintln!("heat map in {:.0} ms: query {q:?}", heat["millis"].as_f64().unwrap());
    assert_eq!(call(&s, "POST", "/api/v1/search/heatmap", Some(&inv), points_form("999999")).0, 404);
    // Two photos of the place in one search: each evidence photo says which one it matched.
    let second = std::fs::read(root().join("data-sample/images/h-lonestar-131-1.jpg")).unwrap();
    let (st, two) =
        call(&s, "POST", "/api/v1/search", Some(&inv), Some(multipart(&[("photo", &query), ("mask", &mask), ("photo2", &second)], &[])));
    assert_eq!(st, 200, "{two}");
    assert_eq!(two["queries"].as_array().unwrap().len(), 2);
    assert_eq!((two["queries"][0]["masked"].as_bool(), two["queries"][1]["masked"].as_bool()), (Some(true), Some(false)));
    assert_eq!(two["hotels"][0]["hotel"]["external_id"], "h-lonestar");
    assert!(two["hotels"][0]["evidence"].as_array().unwrap().iter().all(|e| e["query"].as_u64().unwrap() < 2));
    // A mask without its photo, or a gap in the numbering, is refused.
    let (st, stray) = call(&s, "POST", "/api/v1/search", Some(&inv), Some(multipart(&[("photo", &query), ("mask3", &mask)], &[])));
    assert_eq!((st, stray["error"]["code"].as_str()), (400, Some("bad_photos")));
    assert_eq!(res["calibration"]["samples"], 159);
    // The case is its owner's (and admins'): anyone else gets 404, even to search into it.
    assert_eq!(call(&s, "GET", &format!("/api/v1/cases/{id}"), Some(&other), None).0, 404);
    let (st, e) = call(&s, "POST", "/api/v1/search", Some(&other), Some(multipart(&[("photo", &query)], &[("case_id", &id.to_string())])));
    assert_eq!((st, e["error"]["code"].as_str()), (404, Some("no_such_case")));
    assert_eq!(call(&s, "GET", "/api/v1/cases", Some(&other), None).1.as_array().unwrap().len(), 0);
    // Each refused access leaves an audit row (a guessed id too); the answers stay 404.
    let note = json(serde_json::json!({"text": "x"}));
    assert_eq!(call(&s, "POST", &format!("/api/v1/cases/{id}/notes"), Some(&other), note).0, 404);
    assert_eq!(call(&s, "GET", &format!("/api/v1/cases/{id}/report?format=csv"), Some(&other), None).0, 404);
    assert_eq!(call(&s, "GET", "/api/v1/cases/987654", Some(&other), None).0, 404);
    let (_, denied) = call(&s, "GET", "/api/v1/audit?action=case-denied&limit=20", Some(&admin), None);
    let seen: std::collections::BTreeSet<(i64, &str)> = denied
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| Some((a["detail"]["case_id"].as_i64()?, a["detail"]["action"].as_str()?)))
        .collect();
    for want in [(id, "read"), (id, "search"), (id, "note"), (id, "export"), (987654, "read")] {
        assert!(seen.contains(&want), "{want:?} not audited: {seen:?}");
    }
    assert_eq!(call(&s, "GET", &format!("/api/v1/cases/{id}"), Some(&admin), None).0, 200);
    let (st, _) = call(
        &s,
        "POST",
        &format!("/api/v1/cases/{id}/notes"),
        Some(&inv),
        json(serde_json::json!({"text": "posted 2026-11-02 <b>site X</b>"})),
    );
    assert_eq!(st, 201);
    let hotel = top["hotel"]["id"].as_i64().unwrap();
    let (st, v) = call(
        &s,
        "POST",
        &format!("/api/v1/cases/{id}/verdicts"),
        Some(&inv),
        json(serde_json::json!({"hotel_id": hotel, "verdict": "confirmed", "search_entry": entry})),
    );
    assert_eq!(st, 201, "{v}");
    assert!(
        call(
            &s,
            "POST",
            &format!("/api/v1/cases/{id}/verdicts"),
            Some(&inv),
            json(serde_json::json!({"hotel_id": hotel, "verdict": "maybe"}))
        )
        .0 / 100
            == 4
    );
    assert_eq!(
        call(
            &s,
            "POST",
            &format!("/api/v1/cases/{id}/verdicts"),
            Some(&inv),
            json(serde_json::json!({"hotel_id": 999, "verdict": "confirmed"}))
        )
        .0,
        404
    );
    let (_, view) = call(&s, "GET", &format!("/api/v1/cases/{id}"), Some(&inv), None);
    assert_eq!(view["verdicts"][0]["verdict"], "confirmed");
    assert_eq!(
        view["entries"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect::<Vec<_>>(),
        ["search", "note", "verdict"]
    );
    let mask = &view["entries"][0]["body"]["mask"];
    assert!(mask["png_base64"].is_null() && mask["painted"].as_f64().unwrap() > 0.0, "without the photo, only the mask's extent: {mask}");
    assert_eq!(view["entries"][0]["body"]["query_kept"], false, "the query itself only with consent");

    // The report, in three formats.
    let get = |path: &str| {
        let r = agent().get(&format!("{}{path}", s.base)).header("Authorization", &format!("Bearer {inv}")).call().unwrap();
        let kind = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        let disposition = r.headers().get("content-disposition").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        (r.status().as_u16(), kind, disposition, r.into_body().read_to_string().unwrap())
    };
    let (st, kind, disposition, html) = get(&format!("/api/v1/cases/{id}/report"));
    assert_eq!((st, kind.as_str()), (200, "text/html; charset=utf-8"));
    assert!(disposition.contains(&format!("hotelmatch-case-{id}.html")));
    assert!(html.contains("Ad 2026-114") && html.contains("Lone Star Lodge") && html.contains("confirmed") && html.contains("sscd"));
    assert!(html.contains("&lt;b&gt;site X&lt;/b&gt;"), "notes are escaped");
    assert!(html.contains("data:image/jpeg;base64,") && html.contains("% painted, within ["), "evidence embedded, the mask's extent said");
    // Each photo is embedded once however often it is shown.
    let defs = html.matches("<image id=").count();
    assert!(defs >= 3 && defs == html.matches("data:image/jpeg;base64,").count() && html.matches("<use href=").count() >= defs);
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http") && !html.contains("<script"), "no external assets, no script");
    let (_, _, _, csv) = get(&format!("/api/v1/cases/{id}/report?format=csv"));
    let rows: Vec<&str> = csv.lines().collect();
    assert!(rows[0].starts_with("case_id,search_entry,") && rows.len() == 1 + res["hotels"].as_array().unwrap().len());
    assert!(rows[1].contains("Lone Star Lodge") && rows[1].ends_with(&format!(",confirmed,{entry}")), "{}", rows[1]);
    let (_, _, _, body) = get(&format!("/api/v1/cases/{id}/report?format=json"));
    let j: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (j["case"]["id"].as_i64(), j["generated_by"].as_str().is_some(), j["thumbnails"].as_object().unwrap().len() >= 3),
        (Some(id), true, true)
    );
    assert_eq!(call(&s, "GET", &format!("/api/v1/cases/{id}/report?format=pdf"), Some(&inv), None).1["error"]["code"], "invalid_query");
    // Evidence an admin withdraws (quarantined) is withdrawn from the investigator's reports
    // too, in every format; an admin still sees it. A hotel text that a spreadsheet would run
    // as a formula goes out neutralised.
    let withdrawn = res["hotels"][0]["evidence"][0]["image_id"].as_i64().unwrap();
    let top_hotel = res["hotels"][0]["hotel"]["id"].as_i64().unwrap();
    assert_eq!(
        call(&s, "POST", &format!("/api/v1/photos/{withdrawn}/status"), Some(&admin), json(serde_json::json!({"status": "quarantined"}))).0,
        200
    );
    let formula = serde_json::json!({"city": "=HYPERLINK(\"http://evil.example\",\"x\")"});
    assert_eq!(call(&s, "PATCH", &format!("/api/v1/hotels/{top_hotel}"), Some(&admin), json(formula)).0, 200);
    let (_, _, _, html) = get(&format!("/api/v1/cases/{id}/report"));
    assert!(html.contains("(photo withdrawn)") && !html.contains(&format!("alt=\"Stored photo {withdrawn},")), "withdrawn in HTML");
    let (_, _, _, body) = get(&format!("/api/v1/cases/{id}/report?format=json"));
    let j: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(j["thumbnails"].get(withdrawn.to_string()).is_none() && j["withdrawn"] == serde_json::json!([withdrawn]), "withdrawn in JSON");
    let (_, _, _, csv) = get(&format!("/api/v1/cases/{id}/report?format=csv"));
    assert!(csv.contains(&format!("{withdrawn} (photo withdrawn)")), "withdrawn in CSV: {csv}");
    assert!(csv.contains("'=HYPERLINK") && !csv.contains(",=HYPERLINK") && !csv.contains(",\"=HYPERLINK"), "formula neutralised: {csv}");
    let (_, admin_view) = call(&s, "GET", &format!("/api/v1/cases/{id}/report?format=json"), Some(&admin), None);
    assert!(admin_view["thumbnails"].get(withdrawn.to_string()).is_some() && admin_view["withdrawn"] == serde_json::json!([]));
    assert_eq!(
        call(&s, "POST", &format!("/api/v1/photos/{withdrawn}/status"), Some(&admin), json(serde_json::json!({"status": "active"}))).0,
        200
    );
    // Recalibration from cases: admins only, and one confirmed search is too few.
    assert_eq!(call(&s, "POST", "/api/v1/calibration/from-cases", Some(&inv), None).0, 403);
    assert_eq!(call(&s, "POST", "/api/v1/calibration/from-cases", Some(&admin), None).1["error"]["code"], "too_few_samples");

    // Hash banks: the gallery's hashes shared, imported as a bank, and a query that matches is flagged.
    let r = agent().get(&format!("{}/api/v1/hashes?format=tx", s.base)).header("Authorization", &format!("Bearer {admin}")).call().unwrap();
    let shared = r.into_body().read_to_string().unwrap();
    assert!(shared.lines().count() >= 40 && shared.lines().all(|l| l.starts_with("pdq ") && l.len() == 68), "{shared}");
    let (st, imported) =
        call(&s, "POST", "/api/v1/banks/known-ads/hashes", Some(&admin), Some(("text/plain".into(), shared.clone().into_bytes())));
    assert_eq!(
        (st, imported["read"].as_u64(), imported["added"].as_u64()),
        (200, Some(shared.lines().count() as u64), Some(shared.lines().count() as u64)),
        "{imported}"
    );
    let te = std::fs::read(root().join("tests/fixtures/threatexchange-pdq-examples.txt")).unwrap();
    let (_, r) = call(&s, "POST", "/api/v1/banks/te-samples/hashes", Some(&admin), Some(("text/plain".into(), te)));
    assert_eq!((r["read"].as_u64(), r["other_signal_types"].as_u64()), (Some(16), Some(1)));
    let (_, banks) = call(&s, "GET", "/api/v1/banks", Some(&admin), None);
    assert_eq!(banks.as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect::<Vec<_>>(), ["known-ads", "te-samples"]);
    let copy = std::fs::read(root().join("data-sample/images/h-maple-151-0.jpg")).unwrap();
    let (_, res) = call(&s, "POST", "/api/v1/search", Some(&inv), Some(multipart(&[("photo", &copy)], &[])));
    assert_eq!(res["bank_matches"][0]["bank"], "known-ads", "{}", res["bank_matches"]);
    assert_eq!(
        call(&s, "POST", "/api/v1/banks/x/hashes", Some(&admin), Some(("text/plain".into(), b"foo,bar\n1,2\n".to_vec()))).1["error"]
            ["code"],
        "invalid_field"
    );

    // Every read and write above is in the audit.
    let (_, audit) = call(&s, "GET", "/api/v1/audit?limit=200", Some(&admin), None);
    let actions: Vec<&str> = audit.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for a in
        ["case-create", "case-search", "case-read", "case-list", "case-note", "case-verdict", "case-export", "bank-import", "hash-export"]
    {
        assert!(actions.contains(&a), "{a} not audited: {actions:?}");
    }
    let search = audit.as_array().unwrap().iter().find(|e| e["action"] == "search").unwrap();
    assert_eq!(search["detail"]["bank_matches"][0]["bank"], "known-ads");
}

#[test]
fn small_holes_stay_closed_headers_bodies_rates_rotation_and_masks() {
    let engine = common::in_memory("hardening");
    let data_dir = engine.settings().data_dir.clone();
    let s = serve_sample(engine, data_dir, hotelmatch::api::ServeOptions { case_writes_per_minute: 4, ..Default::default() });
    let inv = s.tokens.iter().find(|(r, _)| *r == Role::Investigator).unwrap().1.clone();
    let json = |v: serde_json::Value| Some(("application/json".to_string(), v.to_string().into_bytes()));
    let header = |path: &str, name: &str| {
        let r = agent().get(&format!("{}{path}", s.base)).header("Authorization", &format!("Bearer {inv}")).call().unwrap();
        r.headers().get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
    };

    // Two keys in one request: refused, not guessed at.
    let (st, e) =
        raw(&s, &format!("GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {inv}\r\nAuthorization: Bearer hm_x_y\r\n\r\n"));
    assert_eq!((st, e["error"]["code"].as_str()), (400, Some("two_keys")));

    // Pages run only their own scripts and cannot be framed; every answer says nosniff.
    let csp = header("/investigate", "content-security-policy");
    assert!(csp.contains("script-src 'self' 'sha256-") && csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe"), "{csp}");
    assert_eq!(header("/investigate", "x-frame-options"), "DENY");
    assert_eq!(header("/api/v1/whoami", "x-content-type-options"), "nosniff");
    assert_eq!(header("/api/v1/nothing", "x-content-type-options"), "nosniff", "errors too");

    // A case body: known fields only, and small.
    let (st, e) = call(&s, "POST", "/api/v1/cases", Some(&inv), json(serde_json::json!({"title": "x", "owner": "someone-else"})));
    assert!((400..500).contains(&st) && e["error"]["code"].is_string(), "{st} {e}");
    let big = serde_json::json!({"title": "x".repeat(100_000)});
    let (st, _) = call(&s, "POST", "/api/v1/cases", Some(&inv), json(big));
    assert_eq!(st, 413);

    // The report is a document that runs nothing and loads nothing.
    let (st, case) = call(&s, "POST", "/api/v1/cases", Some(&inv), json(serde_json::json!({"title": "masks"})));
    assert_eq!(st, 201);
    let id = case["id"].as_i64().unwrap();
    assert!(header(&format!("/api/v1/cases/{id}/report"), "content-security-policy").starts_with("default-src 'none'; img-src data:;"));

    // A painted mask is kept whole only with the photo; otherwise only how much and where.
    let query = std::fs::read(root().join("data-sample/queries/h-lonestar-query.jpg")).unwrap();
    let mask = std::fs::read(root().join("data-sample/queries/h-lonestar-query-mask.png")).unwrap();
    // (The kept one is another photo: a photo kept once shows in every search of it.)
    let other = std::fs::read(root().join("data-sample/queries/h-harbor-query.jpg")).unwrap();
    let other_mask = std::fs::read(root().join("data-sample/queries/h-harbor-query-mask.png")).unwrap();
    for (keep, photo, m) in [("false", &query, &mask), ("true", &other, &other_mask)] {
        let form = multipart(&[("photo", photo), ("mask", m)], &[("case_id", &id.to_string()), ("save_case", keep)]);
        assert_eq!(call(&s, "POST", "/api/v1/search", Some(&inv), Some(form)).0, 200);
    }
    let (_, view) = call(&s, "GET", &format!("/api/v1/cases/{id}"), Some(&inv), None);
    let masks: Vec<&serde_json::Value> = view["entries"].as_array().unwrap().iter().map(|e| &e["body"]["mask"]).collect();
    assert!(masks[0]["png_base64"].is_null() && masks[0]["painted"].as_f64().unwrap() > 0.0 && masks[0]["bbox"].is_array(), "{}", masks[0]);
    assert!(masks[1]["png_base64"].is_string(), "kept with the photo");
    // Not kept, the photo still leaves a small thumbnail with its painted parts greyed out.
    let bodies: Vec<&serde_json::Value> = view["entries"].as_array().unwrap().iter().map(|e| &e["body"]).collect();
    assert!(bodies[1]["masked_thumbnail"].is_null(), "the kept photo needs no thumbnail");
    let thumb =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, bodies[0]["masked_thumbnail"].as_str().unwrap()).unwrap();
    let thumb = image::load_from_memory_with_format(&thumb, image::ImageFormat::Jpeg).unwrap().to_rgb8();
    assert!(thumb.width().max(thumb.height()) == 240, "{}x{}", thumb.width(), thumb.height());
    let m = image::load_from_memory(&mask).unwrap().to_luma8();
    let (mut grey, mut painted) = (0, 0);
    for (x, y, p) in m.enumerate_pixels() {
        if p[0] >= 128 {
            painted += 1;
            let t = thumb.get_pixel(x * thumb.width() / m.width(), y * thumb.height() / m.height());
            grey += usize::from(t.0.iter().all(|&c| (118..=138).contains(&c)));
        }
    }
    assert!(grey as f64 > 0.97 * painted as f64, "every painted pixel is grey in the thumbnail: {grey} of {painted}");
    let html = {
        let r =
            agent().get(&format!("{}/api/v1/cases/{id}/report", s.base)).header("Authorization", &format!("Bearer {inv}")).call().unwrap();
        r.into_body().read_to_string().unwrap()
    };
    assert!(html.contains("painted parts greyed out (the photo itself was not kept)"), "{}", &html[..html.len().min(3000)]);

    // Case writes are rate-limited per key (4 a minute here; searches have their own budget,
    // and bodies refused before the handler are not counted): the case, then three notes.
    let mut statuses = Vec::new();
    for i in 0..4 {
        statuses
            .push(call(&s, "POST", &format!("/api/v1/cases/{id}/notes"), Some(&inv), json(serde_json::json!({"text": format!("n{i}")}))).0);
    }
    assert_eq!(statuses, [201, 201, 201, 429]);
    let (_, e) = call(&s, "POST", "/api/v1/cases", Some(&inv), json(serde_json::json!({"title": "one more"})));
    assert_eq!(e["error"]["code"], "rate_limited");

    // A key rotation hands the cases to the new key, revokes the old one, and is audited.
    let old_id = inv.split('_').nth(1).unwrap().to_string();
    let (new, token, moved) = s.server.engine.rotate_key(&old_id, "rotated", "adm").unwrap();
    assert_eq!((moved, new.role), (1, Role::Investigator));
    assert_eq!(call(&s, "GET", "/api/v1/cases", Some(&inv), None).0, 401);
    let (_, mine) = call(&s, "GET", "/api/v1/cases", Some(&token), None);
    assert_eq!(mine.as_array().unwrap().iter().map(|c| c["id"].as_i64().unwrap()).collect::<Vec<_>>(), [id]);
    let audit = s.server.engine.audit_entries(Some("key-rotate"), 5).unwrap();
    assert_eq!((audit[0].detail["old_key_id"].as_str(), audit[0].detail["cases"].as_u64()), (Some(old_id.as_str()), Some(1)));
}

#[test]
fn a_heic_photo_from_a_phone_is_searched_and_stored_without_its_gps() {
    if !hotelmatch::media::heif::available() {
        assert!(std::env::var_os("HOTELMATCH_REQUIRE_SERVICES").is_none(), "libheif is required here (apt-get install libheif1)");
        eprintln!("SKIPPED: libheif is not installed");
        return;
    }
    let s = start("heic");
    let up = s.tokens.iter().find(|(r, _)| *r == Role::Uploader).unwrap().1.clone();
    let inv = s.tokens.iter().find(|(r, _)| *r == Role::Investigator).unwrap().1.clone();
    let heic = std::fs::read(root().join("tests/fixtures/heic/lonestar-gps.heic")).unwrap();
    assert!(heic.windows(13).any(|w| w == b"iPhone 15 Pro"), "the fixture carries its camera and GPS");
    // Searched as the JPEG it was made from is: the same hotel first.
    let (st, res) = call(&s, "POST", "/api/v1/search", Some(&inv), Some(multipart(&[("photo", &heic)], &[])));
    assert_eq!(st, 200, "{res}");
    assert_eq!(res["hotels"][0]["hotel"]["external_id"], "h-lonestar", "{}", res["hotels"][0]);
    // Uploaded: kept as a JPEG of its pixels, upright, with no EXIF, GPS or camera.
    let (st, res) =
        call(&s, "POST", "/api/v1/photos", Some(&up), Some(multipart(&[("photo", &heic)], &[("hotel_id", "2"), ("room", "9")])));
    assert_eq!((st, res["outcome"].as_str()), (201, Some("added")), "{res}");
    let id = res["image_id"].as_i64().unwrap();
    let served = agent().get(&format!("{}/api/v1/photos/{id}", s.base)).header("Authorization", &format!("Bearer {inv}")).call().unwrap();
    let served = served.into_body().read_to_vec().unwrap();
    let img = image::load_from_memory_with_format(&served, image::ImageFormat::Jpeg).expect("stored as JPEG");
    assert_eq!((img.width(), img.height()), (640, 480));
    let work = s.data_dir.join("heic-check");
    std::fs::create_dir_all(&work).unwrap();
    let path = work.join("served.jpg");
    std::fs::write(&path, &served).unwrap();
    let mut files = vec![path];
    files.extend(stored_files(&s).into_iter().filter(|p| std::fs::read(p).unwrap().windows(13).any(|w| w == b"iPhone 15 Pro")));
    assert_eq!(files.len(), 1, "no stored file carries the camera's name");
    assert_eq!(metadata_found_by_pillow(&files)[0]["found"], serde_json::json!([]));
    // A broken HEIC is a typed 4xx, not a crash.
    let (st, e) = call(&s, "POST", "/api/v1/search", Some(&inv), Some(multipart(&[("photo", &heic[..heic.len() / 3])], &[])));
    assert!((400..500).contains(&st) && e["error"]["code"].is_string(), "{st} {e}");
}
