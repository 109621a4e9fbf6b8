//! Cases: an investigator's saved searches, notes, verdicts and reports.

use super::*;
use crate::engine::Viewer;
use dto::{Case, CaseEntry, CaseView, Verdict};

pub(super) fn viewer(key: &KeyInfo) -> Viewer<'_> {
    Viewer { key_id: &key.id, admin: key.role == Role::Admin }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewCase {
    /// What the investigator calls it (1–200 characters).
    title: String,
}

/// Opens a case. Audited.
///
/// Roles: investigator, admin.
#[utoipa::path(post, path = "/api/v1/cases", tag = "cases", request_body = NewCase, security(("api_key" = [])), responses((status = 201, body = Case), (status = 400, body = ErrorBody)))]
pub(super) async fn create_case(
    State(s): State<Shared>,
    Extension(key): Extension<KeyInfo>,
    Checked(Json(c)): Checked<Json<NewCase>>,
) -> Result<Response, ApiError> {
    s.case_writes.take(&key.id)?;
    let engine = s.engine.clone();
    let case = blocking(move || engine.create_case(&c.title, viewer(&key))).await?;
    Ok((StatusCode::CREATED, Json(Case::from(case))).into_response())
}

/// The key's cases (every case for an admin), newest first. Audited.
///
/// Roles: investigator, admin.
#[utoipa::path(get, path = "/api/v1/cases", tag = "cases", security(("api_key" = [])), responses((status = 200, body = Vec<Case>)))]
pub(super) async fn list_cases(State(s): State<Shared>, Extension(key): Extension<KeyInfo>) -> Result<Json<Vec<Case>>, ApiError> {
    let engine = s.engine.clone();
    let cases = blocking(move || engine.cases(viewer(&key))).await?;
    Ok(Json(cases.into_iter().map(Case::from).collect()))
}

/// A case with its journal (saved searches, notes, verdicts), its current verdicts and the
/// hotels it names. Audited; another key's case is 404 to anyone but an admin.
///
/// Roles: investigator, admin.
#[utoipa::path(get, path = "/api/v1/cases/{id}", tag = "cases", security(("api_key" = [])), params(("id" = i64, Path, description = "Case id")),
    responses((status = 200, body = CaseView), (status = 404, body = ErrorBody)))]
pub(super) async fn get_case(
    State(s): State<Shared>,
    Extension(key): Extension<KeyInfo>,
    Checked(Path(id)): Checked<Path<i64>>,
) -> Result<Json<CaseView>, ApiError> {
    let engine = s.engine.clone();
    let view = blocking(move || engine.case(id, viewer(&key))).await?;
    Ok(Json(CaseView::from(view)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewNote {
    /// 1–10,000 characters.
    text: String,
}

/// Adds a note to a case. Audited.
///
/// Roles: investigator, admin.
#[utoipa::path(post, path = "/api/v1/cases/{id}/notes", tag = "cases", request_body = NewNote, security(("api_key" = [])), params(("id" = i64, Path, description = "Case id")),
    responses((status = 201, body = CaseEntry), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn add_note(
    State(s): State<Shared>,
    Extension(key): Extension<KeyInfo>,
    Checked(Path(id)): Checked<Path<i64>>,
    Checked(Json(n)): Checked<Json<NewNote>>,
) -> Result<Response, ApiError> {
    s.case_writes.take(&key.id)?;
    let engine = s.engine.clone();
    let entry = blocking(move || engine.add_case_note(id, &n.text, viewer(&key))).await?;
    Ok((StatusCode::CREATED, Json(CaseEntry::from(entry))).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewVerdict {
    hotel_id: i64,
    verdict: Verdict,
    /// The saved search (case entry id) the verdict is about, if any.
    search_entry: Option<i64>,
}

/// Marks a hotel confirmed or ruled out in a case (or open again). A confirmation is also a
/// labelled search for the next calibration. Audited; the journal keeps every verdict.
///
/// Roles: investigator, admin.
#[utoipa::path(post, path = "/api/v1/cases/{id}/verdicts", tag = "cases", request_body = NewVerdict, security(("api_key" = [])), params(("id" = i64, Path, description = "Case id")),
    responses((status = 201, body = CaseEntry), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn add_verdict(
    State(s): State<Shared>,
    Extension(key): Extension<KeyInfo>,
    Checked(Path(id)): Checked<Path<i64>>,
    Checked(Json(v)): Checked<Json<NewVerdict>>,
) -> Result<Response, ApiError> {
    s.case_writes.take(&key.id)?;
    let engine = s.engine.clone();
    let entry = blocking(move || engine.set_verdict(id, v.hotel_id, v.verdict.into(), v.search_entry, viewer(&key))).await?;
    Ok((StatusCode::CREATED, Json(CaseEntry::from(entry))).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ReportFormat {
    /// `html` (default: one self-contained file that prints to PDF), `csv` or `json`.
    format: Option<String>,
}

/// A case as a report to hand over: self-contained HTML (thumbnails embedded, no external
/// assets), CSV (one row per ranked hotel per search) or JSON. Audited.
///
/// Roles: investigator, admin.
#[utoipa::path(get, path = "/api/v1/cases/{id}/report", tag = "cases", security(("api_key" = [])), params(("id" = i64, Path, description = "Case id"), ReportFormat),
    responses((status = 200, content_type = "text/html", description = "The report, as an attachment"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn case_report(
    State(s): State<Shared>,
    Extension(key): Extension<KeyInfo>,
    Checked(Path(id)): Checked<Path<i64>>,
    Checked(QueryParams(f)): Checked<QueryParams<ReportFormat>>,
) -> Result<Response, ApiError> {
    let format = f.format.unwrap_or_else(|| "html".into());
    let (kind, ext) = match format.as_str() {
        "html" => ("text/html; charset=utf-8", "html"),
        "csv" => ("text/csv; charset=utf-8", "csv"),
        "json" => ("application/json", "json"),
        _ => return Err(ApiError::bad_request("invalid_query", "format: html, csv or json")),
    };
    let engine = s.engine.clone();
    let fmt = format.clone();
    let report = blocking(move || engine.case_report(id, &fmt, viewer(&key))).await?;
    let body = match ext {
        "html" => crate::report::html(&report),
        "csv" => crate::report::csv(&report),
        _ => serde_json::to_string_pretty(&report).unwrap_or_default(),
    };
    let disposition = format!("attachment; filename=\"hotelmatch-case-{id}.{ext}\"");
    Ok((
        [
            (header::CONTENT_TYPE, kind.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "private, no-store".to_string()),
            (header::CONTENT_SECURITY_POLICY, super::pages::REPORT_POLICY.to_string()),
        ],
        body,
    )
        .into_response())
}
