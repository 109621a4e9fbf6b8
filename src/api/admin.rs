//! Administration: the audit trail, batch jobs, the calibration refit.

use super::*;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct Limit {
    /// At most this many entries.
    limit: Option<usize>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// At most this many entries (default 100, at most 1000).
    limit: Option<usize>,
    /// Only entries of this action, e.g. `search`, `upload`, `hotel-update`, or
    /// `upload-conflict` (a photo uploaded for a hotel while the same photo is stored for another).
    action: Option<String>,
}

/// The latest audit entries, newest first.
///
/// Roles: admin.
#[utoipa::path(get, path = "/api/v1/audit", tag = "admin", params(AuditQuery), security(("api_key" = [])),
    responses((status = 200, body = Vec<AuditEntry>), (status = 403, body = ErrorBody)))]
pub(super) async fn audit(
    State(s): State<Shared>,
    Checked(QueryParams(p)): Checked<QueryParams<AuditQuery>>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let engine = s.engine.clone();
    let limit = p.limit.unwrap_or(100).min(1000);
    let entries = blocking(move || engine.audit_entries(p.action.as_deref(), limit)).await?;
    Ok(Json(entries.into_iter().map(AuditEntry::from).collect()))
}

/// Starts a re-index job in the background.
///
/// It re-embeds the photos that have no vector for the current model, then rebuilds the
/// index from the catalog (purging deleted photos). Searches go on against the old index
/// until the new one is ready. Roles: admin.
#[utoipa::path(post, path = "/api/v1/jobs/reindex", tag = "admin", security(("api_key" = [])),
    responses((status = 202, body = Job, description = "Started; follow it at /api/v1/jobs/{id}"), (status = 409, body = ErrorBody, description = "One is already running")))]
pub(super) async fn start_reindex(
    State(s): State<Shared>,
    Extension(key): Extension<KeyInfo>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    let engine = s.engine.clone();
    let job = blocking(move || jobs::spawn_reindex(engine, &key.id)).await?;
    Ok((StatusCode::ACCEPTED, Json(job.into())))
}

/// The latest batch jobs, newest first.
///
/// Roles: admin.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "admin", params(Limit), security(("api_key" = [])), responses((status = 200, body = Vec<Job>)))]
pub(super) async fn list_jobs(
    State(s): State<Shared>,
    Checked(QueryParams(p)): Checked<QueryParams<Limit>>,
) -> Result<Json<Vec<Job>>, ApiError> {
    let engine = s.engine.clone();
    let limit = p.limit.unwrap_or(20).min(1000);
    let jobs = blocking(move || engine.jobs(limit)).await?;
    Ok(Json(jobs.into_iter().map(Job::from).collect()))
}

/// One batch job: state, phase and progress.
///
/// Roles: admin.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "admin", security(("api_key" = [])),
    params(("id" = i64, Path, description = "Job id")), responses((status = 200, body = Job), (status = 404, body = ErrorBody)))]
pub(super) async fn get_job(State(s): State<Shared>, Checked(Path(id)): Checked<Path<i64>>) -> Result<Json<Job>, ApiError> {
    let engine = s.engine.clone();
    Ok(Json(blocking(move || engine.job(id)).await?.into()))
}

/// The refit's options.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct RefitParams {
    /// Fit and check, but do not put it in force.
    #[serde(default)]
    preview: bool,
}

/// Refits the calibration on the saved searches of cases that confirmed a hotel (searches
/// with candidates, each query once, from at least 5 cases and 3 keys) and, unless
/// `preview`, puts it in force: a new version in the catalog, used by every replica from its
/// next look at the feed. Refused (400) when a parameter is out of band or when it explains
/// the searches of held-out cases worse than the calibration in use. Audited with the cases
/// and keys used.
///
/// Roles: admin.
#[utoipa::path(post, path = "/api/v1/calibration/from-cases", tag = "cases", security(("api_key" = [])), params(RefitParams),
    responses((status = 200, body = Object, description = "The refit, its held-out check and the cases and keys used"), (status = 400, body = ErrorBody, description = "Too few searches, cases or keys; out of band; or worse than the calibration in use")))]
pub(super) async fn recalibrate(
    State(s): State<Shared>,
    Extension(key): Extension<KeyInfo>,
    Checked(QueryParams(p)): Checked<QueryParams<RefitParams>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let engine = s.engine.clone();
    let refit = blocking(move || engine.recalibrate_from_cases(p.preview, &key.id)).await?;
    Ok(Json(serde_json::to_value(refit).unwrap_or_default()))
}
