//! Cases (an investigator's saved searches, notes, verdicts and reports), hash banks, the
//! calibration, and who a key is.

use super::*;
use crate::engine::{HashFormat, Viewer};
use dto::{Bank, BankImport, Case, CaseEntry, CaseView, Verdict};

fn viewer(key: &KeyInfo) -> Viewer<'_> {
    Viewer { key_id: &key.id, admin: key.role == Role::Admin }
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

#[derive(Deserialize, utoipa::ToSchema)]
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
    let engine = s.engine.clone();
    let entry = blocking(move || engine.add_case_note(id, &n.text, viewer(&key))).await?;
    Ok((StatusCode::CREATED, Json(CaseEntry::from(entry))).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
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
        ],
        body,
    )
        .into_response())
}

/// The hash banks, with their sizes.
///
/// Roles: admin.
#[utoipa::path(get, path = "/api/v1/banks", tag = "banks", security(("api_key" = [])), responses((status = 200, body = Vec<Bank>)))]
pub(super) async fn list_banks(State(s): State<Shared>) -> Result<Json<Vec<Bank>>, ApiError> {
    let engine = s.engine.clone();
    Ok(Json(blocking(move || engine.banks()).await?.into_iter().map(Bank::from).collect()))
}

/// Imports a hash list into the bank `name` (created when new): ThreatExchange's formats —
/// python-threatexchange signal files (`pdq <hash>` per line), CSV/TSV with a hash column
/// (`hash`, `signal`, `pdq`, `indicator`), or pdq-photo-hasher's `hash,quality,name`.
/// Uploads and searches that match a bank are flagged in their results and the audit.
///
/// Roles: admin.
#[utoipa::path(post, path = "/api/v1/banks/{name}/hashes", tag = "banks", request_body(content = String, content_type = "text/plain"), security(("api_key" = [])),
    params(("name" = String, Path, description = "Bank name")),
    responses((status = 200, body = BankImport), (status = 400, body = ErrorBody)))]
pub(super) async fn import_bank(
    State(s): State<Shared>,
    Extension(key): Extension<KeyInfo>,
    Checked(Path(name)): Checked<Path<String>>,
    body: axum::body::Bytes,
) -> Result<Json<BankImport>, ApiError> {
    let text = String::from_utf8(body.to_vec()).map_err(|_| ApiError::bad_request("invalid_body", "a hash list is UTF-8 text"))?;
    let engine = s.engine.clone();
    Ok(Json(BankImport::from(blocking(move || engine.import_bank(&name, &text, &key.id)).await?)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ExportFormat {
    /// `tx` (default: python-threatexchange's `pdq <hash>` lines) or `csv`
    /// (`pdq,quality,image_id,hotel_id`).
    format: Option<String>,
}

/// The gallery's PDQ hashes (active photos with trustworthy hashes), for sharing. Audited.
///
/// Roles: admin.
#[utoipa::path(get, path = "/api/v1/hashes", tag = "banks", security(("api_key" = [])), params(ExportFormat),
    responses((status = 200, content_type = "text/plain", body = String), (status = 400, body = ErrorBody)))]
pub(super) async fn export_hashes(
    State(s): State<Shared>,
    Extension(key): Extension<KeyInfo>,
    Checked(QueryParams(f)): Checked<QueryParams<ExportFormat>>,
) -> Result<Response, ApiError> {
    let format: HashFormat = f.format.as_deref().unwrap_or("tx").parse().map_err(|e: String| ApiError::bad_request("invalid_query", e))?;
    let engine = s.engine.clone();
    let text = blocking(move || engine.export_hashes(format, &key.id)).await?;
    let kind = if format == HashFormat::Csv { "text/csv; charset=utf-8" } else { "text/plain; charset=utf-8" };
    Ok(([(header::CONTENT_TYPE, kind)], text).into_response())
}

/// Refits the calibration on the saved searches of every case that confirmed a hotel, writes
/// it into the data directory and uses it from the next search on. Audited.
///
/// Roles: admin.
#[utoipa::path(post, path = "/api/v1/calibration/from-cases", tag = "cases", security(("api_key" = [])),
    responses((status = 200, body = Object, description = "The new calibration"), (status = 400, body = ErrorBody, description = "Too few confirmed searches")))]
pub(super) async fn recalibrate(State(s): State<Shared>, Extension(key): Extension<KeyInfo>) -> Result<Json<serde_json::Value>, ApiError> {
    let engine = s.engine.clone();
    let c = blocking(move || {
        let samples = engine.confirmed_samples()?;
        engine.recalibrate(&samples, "cases", &key.id)
    })
    .await?;
    Ok(Json(serde_json::to_value(c).unwrap_or_default()))
}
