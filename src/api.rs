//! API: the engine over HTTP (axum), with API keys and roles. Typed engine errors become
//! HTTP responses here, and only here: a JSON body `{"error": {"code", "message"}}`.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Multipart, Path, Query as QueryParams, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::catalog::{CatalogError, Hotel, HotelFilter, KeyInfo, Role, Source, Status};
use crate::decode::DecodeError;
use crate::embed::EmbedError;
use crate::engine::{Engine, EngineError, Ingested, NewPhoto, Query};
use crate::pool::Mask;

/// Server settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServeOptions {
    /// Address to listen on.
    pub bind: String,
    /// Photos embedded at once (uploads + searches); 0 = one per core.
    pub workers: usize,
    /// Photos waiting or being embedded; beyond this the API answers 503 with Retry-After
    /// instead of queueing without end.
    pub queue: usize,
    /// Uploads each key may make per minute (a burst of this many, refilled evenly); 429 beyond.
    pub uploads_per_minute: u32,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions { bind: "127.0.0.1:8080".into(), workers: 0, queue: 64, uploads_per_minute: 30 }
    }
}

/// Per-key token buckets for uploads.
struct RateLimiter {
    per_minute: f64,
    buckets: std::sync::Mutex<std::collections::HashMap<String, (f64, std::time::Instant)>>,
}

impl RateLimiter {
    /// Takes one token for `key`, or says how many seconds until one is free.
    fn take(&self, key: &str) -> Result<(), u64> {
        let now = std::time::Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = b.entry(key.to_string()).or_insert((self.per_minute, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.per_minute / 60.0).min(self.per_minute);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err((((1.0 - *tokens) * 60.0 / self.per_minute).ceil() as u64).max(1))
        }
    }
}

/// Request counts and latencies per route and status, for /metrics.
#[derive(Default)]
struct Metrics {
    requests: std::sync::Mutex<std::collections::BTreeMap<(String, u16), (u64, f64)>>,
}

impl Metrics {
    fn record(&self, route: &str, status: u16, seconds: f64) {
        let mut m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let e = m.entry((route.to_string(), status)).or_insert((0, 0.0));
        e.0 += 1;
        e.1 += seconds;
    }
}

/// An API failure, with its HTTP status and stable code.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after: None }
    }
    fn retry(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({"error": {"code": self.code, "message": self.message}}));
        let mut resp = (self.status, body).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        use StatusCode as S;
        let decode = |d: &DecodeError| match d {
            DecodeError::TooLarge { .. } | DecodeError::TooManyPixels { .. } => (S::PAYLOAD_TOO_LARGE, "image_too_large"),
            DecodeError::UnsupportedFormat => (S::UNSUPPORTED_MEDIA_TYPE, "unsupported_image"),
            DecodeError::Empty | DecodeError::Corrupt(_) => (S::UNPROCESSABLE_ENTITY, "bad_image"),
        };
        let (status, code) = match &e {
            EngineError::Decode(d) | EngineError::Embed(EmbedError::Decode(d)) => decode(d),
            EngineError::Embed(EmbedError::Pool(_)) => (S::BAD_REQUEST, "bad_mask"),
            EngineError::Catalog(CatalogError::NoHotel(_)) => (S::NOT_FOUND, "no_such_hotel"),
            EngineError::Catalog(CatalogError::NoImage(_)) => (S::NOT_FOUND, "no_such_photo"),
            EngineError::Catalog(CatalogError::Invalid { .. }) => (S::BAD_REQUEST, "invalid_field"),
            _ => (S::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status == S::INTERNAL_SERVER_ERROR {
            // Details go to the operator's log, not to the client.
            tracing::error!("internal error: {e}");
            return ApiError::new(status, code, "internal error; see the server log");
        }
        ApiError::new(status, code, e.to_string())
    }
}

struct AppState {
    engine: Arc<Engine>,
    queue: Arc<Semaphore>,
    queue_size: usize,
    workers: Arc<Semaphore>,
    uploads: RateLimiter,
    metrics: Metrics,
}

type Shared = Arc<AppState>;

/// Verifies the bearer key and its role: 401 without a valid key, 403 with the wrong role.
async fn authorize(state: &Shared, headers: &HeaderMap, allowed: &[Role]) -> Result<KeyInfo, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "missing_key", "send an API key: Authorization: Bearer hm_…"))?
        .to_string();
    let engine = state.engine.clone();
    let key = blocking(move || engine.with_catalog(|c| c.verify_key(&token)).map_err(EngineError::from)).await?;
    let key = key.ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "invalid_key", "unknown or revoked API key"))?;
    if !allowed.contains(&key.role) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", format!("a {:?} key may not do this", key.role).to_lowercase()));
    }
    Ok(key)
}

/// Runs engine work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, EngineError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?.map_err(ApiError::from)
}

/// A place in the embedding queue (503 when it is full), then a worker (waiting for one).
async fn queue_slot(state: &Shared) -> Result<(tokio::sync::OwnedSemaphorePermit, tokio::sync::OwnedSemaphorePermit), ApiError> {
    let place = state.queue.clone().try_acquire_owned().map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "too many photos waiting; retry shortly").retry(1))?;
    let worker = state.workers.clone().acquire_owned().await.map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "shutting down"))?;
    Ok((place, worker))
}

/// The fields of a multipart form: file parts as bytes, text parts as strings.
#[derive(Default)]
struct Form {
    files: std::collections::HashMap<String, Vec<u8>>,
    text: std::collections::HashMap<String, String>,
}

async fn read_form(mut mp: Multipart) -> Result<Form, ApiError> {
    let mut form = Form::default();
    while let Some(field) = mp.next_field().await.map_err(|e| ApiError::bad_request("bad_form", e.to_string()))? {
        let name = field.name().unwrap_or_default().to_string();
        let is_file = field.file_name().is_some() || matches!(name.as_str(), "photo" | "mask");
        let data = field.bytes().await.map_err(|e| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", e.to_string()))?;
        if is_file {
            form.files.insert(name, data.to_vec());
        } else {
            form.text.insert(name, String::from_utf8_lossy(&data).into_owned());
        }
    }
    Ok(form)
}

fn parse_field<T: std::str::FromStr>(form: &Form, name: &str) -> Result<Option<T>, ApiError> {
    match form.text.get(name).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        Some(s) => s.parse().map(Some).map_err(|_| ApiError::bad_request("invalid_field", format!("{name}: cannot parse {s:?}"))),
        None => Ok(None),
    }
}

#[derive(Deserialize)]
struct HotelSearch {
    q: Option<String>,
    /// "LAT,LON", with `radius_km`.
    near: Option<String>,
    radius_km: Option<f64>,
    limit: Option<usize>,
}

async fn list_hotels(State(s): State<Shared>, QueryParams(p): QueryParams<HotelSearch>) -> Result<Json<Vec<Hotel>>, ApiError> {
    let engine = s.engine.clone();
    let limit = p.limit.unwrap_or(20).min(200);
    let text = p.q.unwrap_or_default();
    let near = match (p.near, p.radius_km) {
        (Some(n), Some(r)) => {
            let parsed = n.split_once(',').and_then(|(a, b)| Some((a.trim().parse::<f64>().ok()?, b.trim().parse::<f64>().ok()?)));
            let (lat, lon) = parsed.ok_or_else(|| ApiError::bad_request("invalid_field", "near: expected LAT,LON"))?;
            Some((lat, lon, r))
        }
        (None, None) => None,
        _ => return Err(ApiError::bad_request("invalid_field", "near and radius_km go together")),
    };
    let hotels = blocking(move || {
        engine.with_catalog(|c| {
            let mut hotels = c.find_hotels(&text, if near.is_some() { usize::MAX >> 1 } else { limit })?;
            if near.is_some() {
                let inside = c.hotels_matching(&HotelFilter { near, ..Default::default() })?;
                hotels.retain(|h| inside.contains(&h.id));
                hotels.truncate(limit);
            }
            Ok(hotels)
        })
    })
    .await?;
    Ok(Json(hotels))
}

async fn create_hotel(State(s): State<Shared>, Extension(key): Extension<KeyInfo>, Json(h): Json<Hotel>) -> Result<(StatusCode, Json<Hotel>), ApiError> {
    let engine = s.engine.clone();
    let hotel = blocking(move || {
        let id = engine.upsert_hotel(&h)?;
        engine.with_catalog(|c| c.audit(&key.id, "hotel-upsert", &serde_json::json!({"hotel_id": id})))?;
        Ok(engine.with_catalog(|c| c.hotel(id))?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(hotel)))
}

async fn upload(State(s): State<Shared>, Extension(key): Extension<KeyInfo>, mp: Multipart) -> Result<Response, ApiError> {
    s.uploads.take(&key.id).map_err(|secs| ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many uploads from this key; slow down").retry(secs))?;
    let mut form = read_form(mp).await?;
    let bytes = form.files.remove("photo").ok_or_else(|| ApiError::bad_request("missing_photo", "send the photo as the multipart field 'photo'"))?;
    let hotel_id: i64 = parse_field(&form, "hotel_id")?.ok_or_else(|| ApiError::bad_request("missing_hotel", "send hotel_id"))?;
    let room = form.text.get("room").map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
    let _slot = queue_slot(&s).await?;
    let engine = s.engine.clone();
    let outcome = blocking(move || {
        let photo = NewPhoto { hotel_id, room, source: Source::Crowd, uploader_key_id: Some(key.id.clone()) };
        let out = engine.ingest(&bytes, &photo)?;
        engine.with_catalog(|c| c.audit(&key.id, "upload", &serde_json::to_value(&out).unwrap_or_default()))?;
        Ok(out)
    })
    .await?;
    // 201 only now, when the photo is in the store and the catalog; a duplicate creates nothing.
    let status = if matches!(outcome, Ingested::Added { .. }) { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(outcome)).into_response())
}

async fn search(State(s): State<Shared>, Extension(key): Extension<KeyInfo>, mp: Multipart) -> Result<Response, ApiError> {
    let mut form = read_form(mp).await?;
    let bytes = form.files.remove("photo").ok_or_else(|| ApiError::bad_request("missing_photo", "send the query photo as the multipart field 'photo'"))?;
    let mask_bytes = form.files.remove("mask");
    let near = match (form.text.get("near"), parse_field::<f64>(&form, "radius_km")?) {
        (Some(p), Some(r)) => {
            let (a, b) = p.split_once(',').ok_or_else(|| ApiError::bad_request("invalid_field", "near: expected LAT,LON"))?;
            let lat: f64 = a.trim().parse().map_err(|_| ApiError::bad_request("invalid_field", "near: bad latitude"))?;
            let lon: f64 = b.trim().parse().map_err(|_| ApiError::bad_request("invalid_field", "near: bad longitude"))?;
            Some((lat, lon, r))
        }
        (None, None) => None,
        _ => return Err(ApiError::bad_request("invalid_field", "near and radius_km go together")),
    };
    let hotel_ids = match form.text.get("hotel_ids").filter(|s| !s.trim().is_empty()) {
        Some(list) => Some(list.split(',').map(|x| x.trim().parse::<i64>()).collect::<Result<Vec<_>, _>>().map_err(|_| ApiError::bad_request("invalid_field", "hotel_ids: comma-separated ids"))?),
        None => None,
    };
    let filter = HotelFilter { near, country: form.text.get("country").cloned(), city: form.text.get("city").cloned(), chain: form.text.get("chain").cloned(), hotel_ids };
    let top = parse_field::<usize>(&form, "top")?.unwrap_or(10).clamp(1, 100);
    let _slot = queue_slot(&s).await?;
    let engine = s.engine.clone();
    let limits = *engine.limits();
    let res = blocking(move || {
        let mask = match mask_bytes {
            Some(m) => Some(Mask::from_picture(&m, &limits).map_err(|e| EngineError::Embed(EmbedError::Decode(e)))?),
            None => None,
        };
        engine.search(&Query { bytes: &bytes, mask: mask.as_ref(), filter, top }, &key.id)
    })
    .await?;
    Ok(Json(res).into_response())
}

async fn photo(State(s): State<Shared>, Path(id): Path<i64>) -> Result<Response, ApiError> {
    let engine = s.engine.clone();
    let bytes = blocking(move || {
        let img = engine.image(id)?;
        if img.status == Status::Deleted {
            return Err(EngineError::Catalog(CatalogError::NoImage(id)));
        }
        Ok(engine.store().get(&img.sha256)?)
    })
    .await?;
    let kind = if bytes.starts_with(&[0xFF, 0xD8]) { "image/jpeg" } else { "image/png" };
    Ok(([(header::CONTENT_TYPE, kind)], bytes).into_response())
}

#[derive(Deserialize)]
struct StatusChange {
    status: Status,
}

async fn set_status(State(s): State<Shared>, Extension(key): Extension<KeyInfo>, Path(id): Path<i64>, Json(c): Json<StatusChange>) -> Result<Json<serde_json::Value>, ApiError> {
    let engine = s.engine.clone();
    blocking(move || engine.set_status(id, c.status, &key.id)).await?;
    Ok(Json(serde_json::json!({"image_id": id, "status": c.status})))
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<usize>,
}

async fn audit(State(s): State<Shared>, QueryParams(p): QueryParams<Limit>) -> Result<Json<Vec<crate::catalog::AuditEntry>>, ApiError> {
    let engine = s.engine.clone();
    let limit = p.limit.unwrap_or(100).min(1000);
    Ok(Json(blocking(move || engine.with_catalog(|c| c.audit_entries(limit)).map_err(EngineError::from)).await?))
}

async fn metrics(State(s): State<Shared>) -> impl IntoResponse {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "# TYPE hotelmatch_requests_total counter");
    let _ = writeln!(out, "# TYPE hotelmatch_request_seconds_sum counter");
    for ((route, status), (n, secs)) in s.metrics.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = writeln!(out, "hotelmatch_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        let _ = writeln!(out, "hotelmatch_request_seconds_sum{{route=\"{route}\",status=\"{status}\"}} {secs:.6}");
    }
    let busy = s.queue_size - s.queue.available_permits();
    let _ = writeln!(out, "# TYPE hotelmatch_queue_depth gauge\nhotelmatch_queue_depth {busy}");
    let _ = writeln!(out, "# TYPE hotelmatch_queue_capacity gauge\nhotelmatch_queue_capacity {}", s.queue_size);
    let _ = writeln!(out, "# TYPE hotelmatch_indexed_photos gauge\nhotelmatch_indexed_photos {}", s.engine.indexed());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

async fn hotel_photos(State(s): State<Shared>, Path(id): Path<i64>) -> Result<Json<Vec<crate::catalog::Image>>, ApiError> {
    let engine = s.engine.clone();
    Ok(Json(blocking(move || Ok(engine.with_catalog(|c| c.images_of_hotel(id))?)).await?))
}

/// The web pages and their assets, built into the binary (no CDN: works offline).
fn page(name: &'static str) -> Response {
    let (kind, body) = match name {
        "index" => ("text/html; charset=utf-8", include_str!("../web/index.html")),
        "contribute" => ("text/html; charset=utf-8", include_str!("../web/contribute.html")),
        "investigate" => ("text/html; charset=utf-8", include_str!("../web/investigate.html")),
        "common.js" => ("text/javascript; charset=utf-8", include_str!("../web/common.js")),
        _ => ("text/css; charset=utf-8", include_str!("../web/style.css")),
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

async fn ready(State(s): State<Shared>) -> Json<serde_json::Value> {
    Json(serde_json::json!({"ready": true, "model": s.engine.embedder().card().name, "indexed_photos": s.engine.indexed()}))
}

/// Routes that need a key with one of `roles`: checked before the body is read, so a
/// caller without the right key gets 401/403 whatever it sent. The key goes to the handler.
fn guarded(state: &Shared, roles: &'static [Role], routes: Router<Shared>) -> Router<Shared> {
    routes.route_layer(middleware::from_fn_with_state(state.clone(), move |State(s): State<Shared>, mut req: Request, next: Next| async move {
        let key = authorize(&s, req.headers(), roles).await?;
        req.extensions_mut().insert(key);
        Ok::<_, ApiError>(next.run(req).await)
    }))
}

const EVERYONE: &[Role] = &[Role::Uploader, Role::Investigator, Role::Admin];
const UPLOADERS: &[Role] = &[Role::Uploader, Role::Admin];
const INVESTIGATORS: &[Role] = &[Role::Investigator, Role::Admin];
const ADMINS: &[Role] = &[Role::Admin];

/// The HTTP routes over an opened engine.
pub fn router(engine: Arc<Engine>, opts: &ServeOptions) -> Router {
    // Room for the largest accepted photo, a mask of the same size, and the form itself.
    let body_limit = engine.limits().max_bytes.saturating_mul(2).saturating_add(64 << 10);
    let queue_size = opts.queue.max(1);
    let workers = if opts.workers == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { opts.workers };
    let state = Arc::new(AppState {
        engine,
        queue: Arc::new(Semaphore::new(queue_size)),
        queue_size,
        workers: Arc::new(Semaphore::new(workers)),
        uploads: RateLimiter { per_minute: f64::from(opts.uploads_per_minute.max(1)), buckets: Default::default() },
        metrics: Metrics::default(),
    });
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/", get(|| async { page("index") }))
        .route("/contribute", get(|| async { page("contribute") }))
        .route("/investigate", get(|| async { page("investigate") }))
        .route("/static/common.js", get(|| async { page("common.js") }))
        .route("/static/style.css", get(|| async { page("style.css") }))
        .merge(guarded(&state, EVERYONE, Router::new().route("/api/v1/hotels", get(list_hotels))))
        .merge(guarded(&state, ADMINS, Router::new().route("/api/v1/hotels", post(create_hotel))))
        .merge(guarded(&state, UPLOADERS, Router::new().route("/api/v1/photos", post(upload))))
        .merge(guarded(&state, INVESTIGATORS, Router::new().route("/api/v1/photos/{id}", get(photo)).route("/api/v1/hotels/{id}/photos", get(hotel_photos)).route("/api/v1/search", post(search))))
        .merge(guarded(&state, ADMINS, Router::new().route("/api/v1/photos/{id}/status", post(set_status)).route("/api/v1/audit", get(audit))))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no_such_route", "no such route; see /api/v1/…") })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Counts every request by its route pattern (never the concrete path: ids stay out of metrics).
async fn track(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<axum::extract::MatchedPath>().map_or("unmatched".to_string(), |p| format!("{} {}", req.method(), p.as_str()));
    let t = std::time::Instant::now();
    let resp = next.run(req).await;
    s.metrics.record(&route, resp.status().as_u16(), t.elapsed().as_secs_f64());
    resp
}

/// Serves until `shutdown` resolves; in-flight requests finish first.
pub async fn serve(engine: Arc<Engine>, opts: &ServeOptions, listener: tokio::net::TcpListener, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    axum::serve(listener, router(engine, opts)).with_graceful_shutdown(shutdown).await
}
