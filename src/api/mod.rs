//! API: the engine over HTTP (axum), with API keys and roles. Typed engine errors become
//! HTTP responses here, and only here: a JSON body `{"error": {"code", "message"}}`.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Multipart, Path, Query as QueryParams, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Extension;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::catalog::{self, CatalogError, HotelFilter, KeyInfo, Role, Source};
use crate::embed::EmbedError;
use crate::engine::{Engine, EngineError, ErrorKind, NewPhoto, Query};
use crate::jobs;

mod admin;
mod cases;
pub mod dto;
mod hotels;
mod photos;
mod search;

use crate::pool::Mask;
use admin::*;
use cases::*;
use dto::{AuditEntry, Hotel, Image, Ingested, Job, SearchResult, Status};
use hotels::*;
use photos::*;
use search::*;

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
    /// Searches each key may make per minute, likewise.
    pub searches_per_minute: u32,
    /// Megapixels of photos being decoded at once, across the server (0 = the largest photo
    /// allowed, `limits.max_pixels`): a request that would go over is answered 503 with
    /// Retry-After, so a flood of small files of huge pixel counts cannot exhaust memory.
    pub pixel_budget_mp: u32,
    /// How often, in milliseconds, the catalog's change feed is read (uploads and status
    /// changes made through other replicas show up in searches within about this long).
    pub follow_ms: u64,
    /// A map tile server's URL template (`https://…/{z}/{x}/{y}.png`) for the investigate
    /// page's map. Empty (the default): the map is drawn offline from the country outlines
    /// built into the binary, and the page contacts no one.
    pub map_tiles: String,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            bind: "127.0.0.1:8080".into(),
            workers: 0,
            queue: 64,
            uploads_per_minute: 30,
            searches_per_minute: 120,
            pixel_budget_mp: 0,
            follow_ms: 200,
            map_tiles: String::new(),
        }
    }
}

/// Per-key token buckets (uploads, searches).
struct RateLimiter {
    per_minute: f64,
    buckets: parking_lot::Mutex<std::collections::HashMap<String, (f64, std::time::Instant)>>,
}

impl RateLimiter {
    /// Takes one token for `key`, or says how many seconds until one is free.
    fn take(&self, key: &str) -> Result<(), u64> {
        let now = std::time::Instant::now();
        let mut b = self.buckets.lock();
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
    requests: parking_lot::Mutex<std::collections::BTreeMap<(String, u16), (u64, f64)>>,
}

impl Metrics {
    fn record(&self, route: &str, status: u16, seconds: f64) {
        let mut m = self.requests.lock();
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

/// The one place where engine failures become HTTP statuses.
impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        use StatusCode as S;
        let (kind, code) = e.kind();
        let status = match kind {
            ErrorKind::Invalid => S::BAD_REQUEST,
            ErrorKind::NotFound => S::NOT_FOUND,
            ErrorKind::Conflict => S::CONFLICT,
            ErrorKind::TooLarge => S::PAYLOAD_TOO_LARGE,
            ErrorKind::Unsupported => S::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::Unprocessable => S::UNPROCESSABLE_ENTITY,
            ErrorKind::Unavailable => S::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => S::INTERNAL_SERVER_ERROR,
        };
        if matches!(kind, ErrorKind::Internal | ErrorKind::Unavailable) {
            // Details go to the operator's log, not to the client.
            tracing::error!("{code}: {e}");
            return ApiError::new(status, code, "the server could not complete this; see its log");
        }
        ApiError::new(status, code, e.to_string())
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        let code = match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "not_json",
            _ => "invalid_json",
        };
        ApiError::new(e.status(), code, e.body_text())
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(e: axum::extract::rejection::PathRejection) -> Self {
        ApiError::bad_request("invalid_path", e.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::bad_request("invalid_query", e.body_text())
    }
}

impl From<axum::extract::multipart::MultipartRejection> for ApiError {
    fn from(e: axum::extract::multipart::MultipartRejection) -> Self {
        ApiError::new(e.status(), "invalid_multipart", e.body_text())
    }
}

/// An axum extractor whose rejection is answered with the JSON error body (axum's own
/// rejections are plain text), so that every error has the same shape.
struct Checked<E>(E);

impl<S: Send + Sync, E: axum::extract::FromRequest<S>> axum::extract::FromRequest<S> for Checked<E>
where
    ApiError: From<E::Rejection>,
{
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Ok(Checked(E::from_request(req, state).await?))
    }
}

impl<S: Send + Sync, E: axum::extract::FromRequestParts<S>> axum::extract::FromRequestParts<S> for Checked<E>
where
    ApiError: From<E::Rejection>,
{
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        Ok(Checked(E::from_request_parts(parts, state).await?))
    }
}

struct AppState {
    engine: Arc<Engine>,
    queue: Arc<Semaphore>,
    queue_size: usize,
    workers: Arc<Semaphore>,
    uploads: RateLimiter,
    searches: RateLimiter,
    pixels: Arc<Semaphore>,
    pixel_budget: u32,
    metrics: Metrics,
    map_tiles: String,
}

type Shared = Arc<AppState>;

/// Verifies the bearer key and its role: 401 without a valid key, 403 with the wrong role.
async fn authorize(state: &Shared, headers: &HeaderMap, allowed: &[Role]) -> Result<KeyInfo, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")).map(|(_, token)| token.trim()))
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "missing_key", "send an API key: Authorization: Bearer hm_…"))?
        .to_string();
    let engine = state.engine.clone();
    let key = blocking(move || engine.verify_key(&token)).await?;
    let key = key.ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "invalid_key", "unknown or revoked API key"))?;
    if !allowed.contains(&key.role) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("an API key with the role {} may not do this", key.role.as_str()),
        ));
    }
    Ok(key)
}

/// Runs engine work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, EngineError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(ApiError::from)
}

/// A place in the embedding queue (503 when it is full), then a worker (waiting for one).
async fn queue_slot(state: &Shared) -> Result<(tokio::sync::OwnedSemaphorePermit, tokio::sync::OwnedSemaphorePermit), ApiError> {
    let place = state
        .queue
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "too many photos waiting; retry shortly").retry(1))?;
    let worker =
        state.workers.clone().acquire_owned().await.map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "shutting down"))?;
    Ok((place, worker))
}

/// Takes the photos' pixels out of the server-wide budget before they are decoded (held
/// until the returned permit drops), or answers 503: decoding memory grows with pixels, not
/// with file size (an 80-Mpixel PNG of one colour is a few hundred kB).
fn pixel_permit(state: &Shared, photos: &[&[u8]]) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    let pixels: u64 = photos.iter().map(|b| crate::decode::pixel_count(b).unwrap_or(0)).sum();
    let mp = (pixels.div_ceil(1_000_000)).clamp(1, u64::from(state.pixel_budget)) as u32;
    state.pixels.clone().try_acquire_many_owned(mp).map_err(|_| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "too many pixels are being decoded right now; retry shortly").retry(1)
    })
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
        // A field sent twice is refused rather than letting one copy win silently.
        if form.files.contains_key(&name) || form.text.contains_key(&name) {
            return Err(ApiError::bad_request("duplicate_field", format!("the field '{name}' was sent more than once")));
        }
        if is_file {
            form.files.insert(name, data.to_vec());
        } else {
            let text =
                String::from_utf8(data.to_vec()).map_err(|_| ApiError::bad_request("invalid_field", format!("{name}: not UTF-8 text")))?;
            form.text.insert(name, text);
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

/// The body of every error response.
#[derive(Serialize, utoipa::ToSchema)]
struct ErrorBody {
    error: ErrorDetail,
}

/// A stable machine-readable code and a message for people.
#[derive(Serialize, utoipa::ToSchema)]
struct ErrorDetail {
    /// Stable code, e.g. `missing_key`, `forbidden`, `bad_image`, `busy`, `rate_limited`.
    code: String,
    message: String,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, content_type = "text/plain", body = String)))]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the model and the index are loaded.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, body = Object)))]
async fn ready(State(s): State<Shared>) -> Json<serde_json::Value> {
    Json(
        serde_json::json!({"ready": true, "model": s.engine.embedder().model(), "catalog": s.engine.catalog_backend(), "watermark": s.engine.watermark(), "reindex_generation": s.engine.generation(), "indexed_photos": s.engine.indexed()}),
    )
}

/// The web pages and their assets, built into the binary (no CDN: works offline).
fn page(name: &'static str) -> Response {
    let (kind, body) = match name {
        "index" => ("text/html; charset=utf-8", include_str!("../../web/index.html")),
        "contribute" => ("text/html; charset=utf-8", include_str!("../../web/contribute.html")),
        "investigate" => ("text/html; charset=utf-8", include_str!("../../web/investigate.html")),
        "docs" => ("text/html; charset=utf-8", include_str!("../../web/docs.html")),
        "common.js" => ("text/javascript; charset=utf-8", include_str!("../../web/common.js")),
        "map.js" => ("text/javascript; charset=utf-8", include_str!("../../web/map.js")),
        "world.json" => ("application/json", include_str!("../../web/world.json")),
        _ => ("text/css; charset=utf-8", include_str!("../../web/style.css")),
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// Routes that need a key with one of `roles`: checked before the body is read, so a
/// caller without the right key gets 401/403 whatever it sent. The key goes to the handler.
fn guarded(state: &Shared, roles: &'static [Role], routes: OpenApiRouter<Shared>) -> OpenApiRouter<Shared> {
    routes.route_layer(middleware::from_fn_with_state(
        state.clone(),
        move |State(s): State<Shared>, mut req: Request, next: Next| async move {
            let key = authorize(&s, req.headers(), roles).await?;
            req.extensions_mut().insert(key);
            Ok::<_, ApiError>(next.run(req).await)
        },
    ))
}

const EVERYONE: &[Role] = &[Role::Uploader, Role::Investigator, Role::Admin];
const UPLOADERS: &[Role] = &[Role::Uploader, Role::Admin];
const INVESTIGATORS: &[Role] = &[Role::Investigator, Role::Admin];
const ADMINS: &[Role] = &[Role::Admin];

/// Declares the bearer API keys in the OpenAPI document.
struct ApiKeys;

impl utoipa::Modify for ApiKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("hm_<id>_<secret>")
            .description(Some("An API key from `hotelmatch keys create --role uploader|investigator|admin`"))
            .build();
        openapi.components.get_or_insert_with(Default::default).add_security_scheme("api_key", SecurityScheme::Http(scheme));
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "hotelmatch", description = "Which hotel was this room photo taken in? Upload crowdsourced room photos; search with a (masked) case photo; ranked hotels with the matching photos as evidence."),
    modifiers(&ApiKeys),
    tags((name = "hotels"), (name = "photos"), (name = "search"), (name = "cases"), (name = "banks"), (name = "admin"), (name = "operations"))
)]
struct ApiDoc;

/// The HTTP routes over an opened engine, and their OpenAPI description (from the same code).
pub fn router_and_openapi(engine: Arc<Engine>, opts: &ServeOptions) -> (Router, utoipa::openapi::OpenApi) {
    // Room for the largest accepted photo, a mask of the same size, and the form itself.
    let body_limit = engine.limits().max_bytes.saturating_mul(2).saturating_add(64 << 10);
    // Every photo the limits accept must fit in the budget on its own.
    let max_mp = (engine.limits().max_pixels.div_ceil(1_000_000)).min(u64::from(u32::MAX)) as u32;
    let pixel_budget = if opts.pixel_budget_mp == 0 { max_mp } else { opts.pixel_budget_mp.max(max_mp) };
    let queue_size = opts.queue.max(1);
    let workers = if opts.workers == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { opts.workers };
    let state = Arc::new(AppState {
        engine,
        queue: Arc::new(Semaphore::new(queue_size)),
        queue_size,
        workers: Arc::new(Semaphore::new(workers)),
        uploads: RateLimiter { per_minute: f64::from(opts.uploads_per_minute.max(1)), buckets: Default::default() },
        searches: RateLimiter { per_minute: f64::from(opts.searches_per_minute.max(1)), buckets: Default::default() },
        pixels: Arc::new(Semaphore::new(pixel_budget as usize)),
        pixel_budget,
        metrics: Metrics::default(),
        map_tiles: opts.map_tiles.clone(),
    });
    let (api, openapi) = OpenApiRouter::with_openapi(<ApiDoc as utoipa::OpenApi>::openapi())
        .routes(routes!(healthz))
        .routes(routes!(ready))
        .routes(routes!(metrics))
        .merge(guarded(&state, EVERYONE, OpenApiRouter::new().routes(routes!(list_hotels)).routes(routes!(whoami))))
        .merge(guarded(&state, UPLOADERS, OpenApiRouter::new().routes(routes!(upload))))
        .merge(guarded(
            &state,
            INVESTIGATORS,
            OpenApiRouter::new()
                .routes(routes!(search))
                .routes(routes!(photo))
                .routes(routes!(hotel_photos))
                .routes(routes!(case_image))
                .routes(routes!(create_case, list_cases))
                .routes(routes!(get_case))
                .routes(routes!(add_note))
                .routes(routes!(add_verdict))
                .routes(routes!(case_report)),
        ))
        .merge(guarded(
            &state,
            ADMINS,
            OpenApiRouter::new()
                .routes(routes!(create_hotel))
                .routes(routes!(update_hotel))
                .routes(routes!(set_status))
                .routes(routes!(audit))
                .routes(routes!(start_reindex))
                .routes(routes!(list_jobs))
                .routes(routes!(get_job))
                .routes(routes!(list_banks))
                .routes(routes!(import_bank))
                .routes(routes!(export_hashes))
                .routes(routes!(recalibrate)),
        ))
        .split_for_parts();
    let doc = openapi.to_json().unwrap_or_default();
    let router = api
        .route("/openapi.json", get(move || async move { ([(header::CONTENT_TYPE, "application/json")], doc) }))
        .route("/", get(|| async { page("index") }))
        .route("/contribute", get(|| async { page("contribute") }))
        .route("/investigate", get(|| async { page("investigate") }))
        .route("/docs", get(|| async { page("docs") }))
        .route("/static/common.js", get(|| async { page("common.js") }))
        .route("/static/style.css", get(|| async { page("style.css") }))
        .route("/static/map.js", get(|| async { page("map.js") }))
        .route("/static/world.json", get(|| async { page("world.json") }))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no_such_route", "no such route; see /docs") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take that method; see /docs")
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(move |req: Request, next: Next| declared_length(body_limit, req, next)))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state);
    (router, openapi)
}

/// The HTTP routes over an opened engine.
pub fn router(engine: Arc<Engine>, opts: &ServeOptions) -> Router {
    router_and_openapi(engine, opts).0
}

/// Answers 413 at once when the declared `Content-Length` is over the body limit, instead
/// of waiting for a body that will be refused anyway.
async fn declared_length(limit: usize, req: Request, next: Next) -> Response {
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", format!("the body may be at most {limit} bytes"))
            .into_response();
    }
    next.run(req).await
}

/// Counts every request by its route pattern (never the concrete path: ids stay out of metrics).
async fn track(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched".to_string(), |p| format!("{} {}", req.method(), p.as_str()));
    let t = std::time::Instant::now();
    let resp = next.run(req).await;
    s.metrics.record(&route, resp.status().as_u16(), t.elapsed().as_secs_f64());
    resp
}

/// Serves until `shutdown` resolves; in-flight requests finish first.
pub async fn serve(
    engine: Arc<Engine>,
    opts: &ServeOptions,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(engine, opts)).with_graceful_shutdown(shutdown).await
}
