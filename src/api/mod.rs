//! API: the engine over HTTP (axum), with API keys and roles. Typed engine errors become
//! HTTP responses here, and only here: a JSON body `{"error": {"code", "message"}}`.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Multipart, Path, Query as QueryParams, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
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
use crate::engine::{Engine, EngineError, NewPhoto, Query, QueryImage, MAX_QUERY_PHOTOS};
use crate::jobs;

mod admin;
mod banks;
mod cases;
pub mod dto;
mod error;
mod hotels;
mod limits;
mod ops;
mod pages;
mod photos;
mod search;

use crate::embed::pool::Mask;
use admin::*;
use banks::*;
use cases::*;
use dto::{AuditEntry, Heat, Hotel, Image, Ingested, Job, Points, SearchResult, Status};
pub use error::ApiError;
use error::{Checked, ErrorBody};
use hotels::*;
use limits::{pixel_permit, queue_slot, RateLimiter};
use ops::*;
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
    /// Case writes (new cases, notes, verdicts) each key may make per minute, likewise.
    pub case_writes_per_minute: u32,
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
            case_writes_per_minute: 120,
            pixel_budget_mp: 0,
            follow_ms: 200,
            map_tiles: String::new(),
        }
    }
}

struct AppState {
    engine: Arc<Engine>,
    queue: Arc<Semaphore>,
    queue_size: usize,
    workers: Arc<Semaphore>,
    uploads: RateLimiter,
    searches: RateLimiter,
    case_writes: RateLimiter,
    pixels: Arc<Semaphore>,
    pixel_budget: u32,
    metrics: Metrics,
    map_tiles: String,
}

type Shared = Arc<AppState>;

/// Verifies the bearer key and its role: 401 without a valid key, 403 with the wrong role.
async fn authorize(state: &Shared, headers: &HeaderMap, allowed: &[Role]) -> Result<KeyInfo, ApiError> {
    // Two keys in one request: a proxy and a client disagreeing; neither is guessed at.
    if headers.get_all(header::AUTHORIZATION).iter().count() > 1 {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "two_keys", "one Authorization header per request"));
    }
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
        uploads: RateLimiter::per_minute(opts.uploads_per_minute, "uploads"),
        searches: RateLimiter::per_minute(opts.searches_per_minute, "searches"),
        case_writes: RateLimiter::per_minute(opts.case_writes_per_minute, "case writes"),
        pixels: Arc::new(Semaphore::new(pixel_budget as usize)),
        pixel_budget,
        metrics: Metrics::new(),
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
                .routes(routes!(search_points))
                .routes(routes!(search_heat))
                .routes(routes!(photo))
                .routes(routes!(hotel_photos))
                .routes(routes!(case_image))
                .merge(
                    // Case writes carry a little JSON: a small body limit.
                    OpenApiRouter::new()
                        .routes(routes!(create_case, list_cases))
                        .routes(routes!(add_note))
                        .routes(routes!(add_verdict))
                        .layer(DefaultBodyLimit::max(CASE_BODY_LIMIT)),
                )
                .routes(routes!(get_case))
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
    let tiles: Arc<str> = opts.map_tiles.as_str().into();
    let router = api
        .route("/openapi.json", get(move || async move { ([(header::CONTENT_TYPE, "application/json")], doc) }))
        .route("/", pages::route("index", &tiles))
        .route("/contribute", pages::route("contribute", &tiles))
        .route("/investigate", pages::route("investigate", &tiles))
        .route("/docs", pages::route("docs", &tiles))
        .route("/static/common.js", pages::route("common.js", &tiles))
        .route("/static/style.css", pages::route("style.css", &tiles))
        .route("/static/map.js", pages::route("map.js", &tiles))
        .route("/static/world.json", pages::route("world.json", &tiles))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no_such_route", "no such route; see /docs") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take that method; see /docs")
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(pages::security_headers))
        .layer(middleware::from_fn(move |req: Request, next: Next| limits::declared_length(body_limit, req, next)))
        .layer(middleware::from_fn_with_state(state.clone(), ops::track))
        .with_state(state);
    (router, openapi)
}

/// The largest JSON body of a case write (a 10,000-character note, escaped, fits).
const CASE_BODY_LIMIT: usize = 64 << 10;

/// The HTTP routes over an opened engine.
pub fn router(engine: Arc<Engine>, opts: &ServeOptions) -> Router {
    router_and_openapi(engine, opts).0
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
