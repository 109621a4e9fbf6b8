//! Operations: liveness, readiness, Prometheus metrics, and who a key is.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use serde::Serialize;

use super::{blocking, ErrorBody, Shared};
use crate::catalog::KeyInfo;

/// Latency buckets, in seconds: from a cached page to a verified search under load.
const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// This server's metrics: its own recorder (no process-wide one), so that servers sharing a
/// process (tests, benchmarks) count apart.
pub(super) struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl Metrics {
    /// An empty set of metrics.
    pub(super) fn new() -> Self {
        let builder = PrometheusBuilder::new();
        let recorder = match builder.set_buckets(LATENCY_BUCKETS) {
            Ok(b) => b.build_recorder(),
            // Only an empty bucket list is refused; summaries are the exporter's fallback.
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        Metrics { recorder, handle }
    }

    /// One answered request: counted by route pattern and status, timed by route pattern.
    fn request(&self, route: String, status: u16, seconds: f64) {
        metrics::with_local_recorder(&self.recorder, || {
            metrics::counter!("hotelmatch_requests_total", "route" => route.clone(), "status" => status.to_string()).increment(1);
            metrics::histogram!("hotelmatch_request_seconds", "route" => route).record(seconds);
        });
    }

    /// The stages of one search, each timed (`retrieve`, `verify`, `rank`, `explain`, `record`).
    pub(super) fn search_stages(&self, stages: &[(&'static str, f64)]) {
        metrics::with_local_recorder(&self.recorder, || {
            for &(stage, seconds) in stages {
                metrics::histogram!("hotelmatch_search_stage_seconds", "stage" => stage).record(seconds);
            }
        });
    }

    /// The Prometheus text, with the gauges read now.
    fn render(&self, gauges: &[(&'static str, f64)]) -> String {
        metrics::with_local_recorder(&self.recorder, || {
            for &(name, value) in gauges {
                metrics::gauge!(name).set(value);
            }
        });
        self.handle.render()
    }
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, content_type = "text/plain", body = String)))]
pub(super) async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the model and the index are loaded.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, body = Object)))]
pub(super) async fn ready(State(s): State<Shared>) -> Response {
    let e = &s.engine;
    // An unusable calibration in the catalog is loud: the replica says why and is not ready.
    let problem = e.calibration_problem();
    let status = if problem.is_some() { axum::http::StatusCode::SERVICE_UNAVAILABLE } else { axum::http::StatusCode::OK };
    let body = Json(serde_json::json!({
        "ready": problem.is_none(),
        "model": e.embedder().model(),
        "catalog": e.catalog_backend(),
        "watermark": e.watermark(),
        "reindex_generation": e.generation(),
        "indexed_photos": e.indexed(),
        "calibration": {"version": e.calibration_version(), "source": e.calibration().source, "problem": problem},
    }));
    (status, body).into_response()
}

/// Prometheus metrics: requests by route and status, latency histograms by route and by
/// search stage, queue depth, index size, and how far this replica's index lags the
/// catalog's change feed.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "text/plain", description = "Prometheus text format")))]
pub(super) async fn metrics(State(s): State<Shared>) -> impl IntoResponse {
    let engine = s.engine.clone();
    // A catalog that cannot answer leaves the lag out rather than failing the scrape.
    let lag = blocking(move || engine.feed_lag()).await.ok();
    let mut gauges = vec![
        ("hotelmatch_queue_depth", (s.queue_size - s.queue.available_permits()) as f64),
        ("hotelmatch_queue_capacity", s.queue_size as f64),
        ("hotelmatch_indexed_photos", s.engine.indexed() as f64),
    ];
    if let Some(lag) = lag {
        gauges.push(("hotelmatch_feed_lag_changes", lag as f64));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render(&gauges))
}

/// Counts and times every request by its route pattern (never the concrete path: ids stay
/// out of metrics).
pub(super) async fn track(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched".to_string(), |p| format!("{} {}", req.method(), p.as_str()));
    let t = std::time::Instant::now();
    let resp = next.run(req).await;
    s.metrics.request(route, resp.status().as_u16(), t.elapsed().as_secs_f64());
    resp
}

/// Who this key is, and what the pages need to know.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct WhoAmI {
    key_id: String,
    /// uploader, investigator or admin.
    role: String,
    /// A map tile URL template (`{z}/{x}/{y}`) when the operator configured one; the pages
    /// draw the built-in outlines otherwise.
    map_tiles: Option<String>,
}

/// The key's id and role: pages check a key when it is entered.
///
/// Roles: any.
#[utoipa::path(get, path = "/api/v1/whoami", tag = "operations", security(("api_key" = [])), responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)))]
pub(super) async fn whoami(State(s): State<Shared>, Extension(key): Extension<KeyInfo>) -> Json<WhoAmI> {
    Json(WhoAmI { role: key.role.as_str().to_string(), key_id: key.id, map_tiles: Some(s.map_tiles.clone()).filter(|t| !t.is_empty()) })
}
