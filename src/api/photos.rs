//! Photos: uploads, serving stored copies, moderation.

use super::*;

/// The upload form (multipart/form-data).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the form; the handler reads the fields one by one
pub(super) struct UploadForm {
    /// The room photo (JPEG, PNG, WebP, …).
    #[schema(value_type = String, format = Binary)]
    photo: Vec<u8>,
    hotel_id: i64,
    /// Room number, if known.
    room: Option<String>,
}

/// Adds a room photo to a hotel.
///
/// Answers 201 once the photo is durable in the catalog and the store, or 200 when it is a
/// near-copy of a photo of that hotel already stored (nothing is created). Stored copies
/// carry no EXIF/GPS. Roles: uploader, admin.
#[utoipa::path(post, path = "/api/v1/photos", tag = "photos", request_body(content = UploadForm, content_type = "multipart/form-data"), security(("api_key" = [])),
    responses((status = 201, body = Ingested, description = "Stored"), (status = 200, body = Ingested, description = "A duplicate; not stored again"),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "Too many uploads from this key"), (status = 503, body = ErrorBody, description = "Queue full; see Retry-After")))]
pub(super) async fn upload(
    State(s): State<Shared>,
    Extension(key): Extension<KeyInfo>,
    Checked(mp): Checked<Multipart>,
) -> Result<Response, ApiError> {
    s.uploads.take(&key.id)?;
    let mut form = read_form(mp).await?;
    let bytes = form
        .files
        .remove("photo")
        .ok_or_else(|| ApiError::bad_request("missing_photo", "send the photo as the multipart field 'photo'"))?;
    let hotel_id: i64 = parse_field(&form, "hotel_id")?.ok_or_else(|| ApiError::bad_request("missing_hotel", "send hotel_id"))?;
    let room = form.text.get("room").map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
    let _pixels = pixel_permit(&s, &[&bytes])?;
    let _slot = queue_slot(&s).await?;
    let engine = s.engine.clone();
    let outcome = blocking(move || {
        let photo = NewPhoto { hotel_id, room, source: Source::Crowd, uploader_key_id: Some(key.id.clone()) };
        engine.ingest(&bytes, &photo, &key.id)
    })
    .await?;
    // 201 only now, when the photo is in the store and the catalog; a duplicate creates nothing.
    let status = if matches!(outcome, crate::engine::Ingested::Added { .. }) { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(Ingested::from(outcome))).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PhotoSize {
    /// Longest side of a JPEG thumbnail in pixels (16–2048); the stored photo when absent.
    size: Option<u32>,
}

/// A stored photo (without metadata), or a thumbnail of it.
///
/// Roles: investigator, admin.
#[utoipa::path(get, path = "/api/v1/photos/{id}", tag = "photos", security(("api_key" = [])),
    params(("id" = i64, Path, description = "Image id"), PhotoSize),
    responses((status = 200, content_type = "image/jpeg", description = "The photo (JPEG, or PNG for photos that came as lossless)"), (status = 404, body = ErrorBody)))]
pub(super) async fn photo(
    State(s): State<Shared>,
    Extension(key): Extension<KeyInfo>,
    Checked(Path(id)): Checked<Path<i64>>,
    Checked(QueryParams(p)): Checked<QueryParams<PhotoSize>>,
) -> Result<Response, ApiError> {
    let engine = s.engine.clone();
    let size = match p.size {
        Some(n) if !(16..=2048).contains(&n) => return Err(ApiError::bad_request("invalid_field", "size: 16 to 2048 pixels")),
        other => other,
    };
    let bytes = blocking(move || {
        let img = engine.image(id)?;
        if !img.status.shown_to(key.role == Role::Admin) {
            return Err(EngineError::Catalog(CatalogError::NoImage(id)));
        }
        let bytes = engine.store().get(&img.sha256)?;
        Ok(match size {
            Some(n) => crate::media::clean::thumbnail(&bytes, engine.limits(), n)?,
            None => bytes,
        })
    })
    .await?;
    Ok(image_response(bytes))
}

pub(super) fn image_response(bytes: Vec<u8>) -> Response {
    let kind = if bytes.starts_with(&[0xFF, 0xD8]) {
        "image/jpeg"
    } else if bytes.starts_with(b"\x89PNG") {
        "image/png"
    } else {
        "application/octet-stream"
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "private, no-store")], bytes).into_response()
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct StatusChange {
    status: Status,
}

/// Quarantines, deletes or restores a photo; it leaves (or re-enters) search results at once.
///
/// Roles: admin.
#[utoipa::path(post, path = "/api/v1/photos/{id}/status", tag = "photos", request_body = StatusChange, security(("api_key" = [])),
    params(("id" = i64, Path, description = "Image id")),
    responses((status = 200, description = "Changed"), (status = 404, body = ErrorBody)))]
pub(super) async fn set_status(
    State(s): State<Shared>,
    Extension(key): Extension<KeyInfo>,
    Checked(Path(id)): Checked<Path<i64>>,
    Checked(Json(c)): Checked<Json<StatusChange>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let engine = s.engine.clone();
    blocking(move || engine.set_status(id, c.status.into(), &key.id)).await?;
    Ok(Json(serde_json::json!({"image_id": id, "status": c.status})))
}
