//! Hash banks: PDQ hash lists matched against uploads and searches, and the gallery's own
//! hashes for sharing.

use super::*;
use crate::engine::HashFormat;
use dto::{Bank, BankImport};

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
