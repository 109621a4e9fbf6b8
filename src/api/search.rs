//! Search: the query form, results, and the case images investigators keep.

use super::*;

/// The search form (multipart/form-data).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the form; the handler reads the fields one by one
pub(super) struct SearchForm {
    /// The query photo. It is written nowhere unless `save_case` is true.
    #[schema(value_type = String, format = Binary)]
    photo: Vec<u8>,
    /// Mask of what to leave out (the victim): light or transparent pixels are ignored.
    #[schema(value_type = Option<String>, format = Binary)]
    mask: Option<Vec<u8>>,
    /// More photos of the same place, `photo2` to `photo8`, each with its optional mask
    /// `mask2` to `mask8`: hotels are ranked on all of them together, and each evidence
    /// photo says which query photo (`query`, 0 for `photo`) it matched.
    #[schema(value_type = Option<String>, format = Binary)]
    photo2: Option<Vec<u8>>,
    #[schema(value_type = Option<String>, format = Binary)]
    mask2: Option<Vec<u8>>,
    /// "LAT,LON", with `radius_km`.
    near: Option<String>,
    radius_km: Option<f64>,
    country: Option<String>,
    city: Option<String>,
    chain: Option<String>,
    /// Comma-separated hotel ids.
    hotel_ids: Option<String>,
    /// Hotels to return (1–100, default 10).
    top: Option<usize>,
    /// "true" keeps the query photo as a case image (audited).
    save_case: Option<bool>,
    /// "false" turns off the automatic mask of a region already painted out (on by default
    /// when no `mask` is sent; the result's `auto_mask` says how much it covered).
    auto_mask: Option<bool>,
    /// The graph search's candidate list, 10–1000 (default: the server's `index.ef_search`):
    /// larger finds more of the nearest photos, slower. Exact scans ignore it.
    ef: Option<usize>,
    /// Save the search into this case (one of the key's own, or any for an admin): the query's
    /// sha256 (the photo itself only with `save_case`), the mask, the filters and the ranked
    /// hotels with probabilities and evidence ids. The result's `case_entry` names the entry.
    case_id: Option<i64>,
}

/// Ranked hotels for a query photo, with the matching photos as evidence.
///
/// Every search is audited (key, time, filters, sha256 of the query, hotels returned).
/// Roles: investigator, admin.
#[utoipa::path(post, path = "/api/v1/search", tag = "search", request_body(content = SearchForm, content_type = "multipart/form-data"), security(("api_key" = [])),
    responses((status = 200, body = SearchResult), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody, description = "Queue full; see Retry-After")))]
pub(super) async fn search(
    State(s): State<Shared>,
    Extension(key): Extension<KeyInfo>,
    Checked(mp): Checked<Multipart>,
) -> Result<Response, ApiError> {
    s.searches.take(&key.id)?;
    let mut form = read_form(mp).await?;
    let photos = query_photos(&mut form)?;
    let near = near_filter(form.text.get("near").map(String::as_str), parse_field::<f64>(&form, "radius_km")?)?;
    let hotel_ids = match form.text.get("hotel_ids").filter(|s| !s.trim().is_empty()) {
        Some(list) => Some(
            list.split(',')
                .map(|x| x.trim().parse::<i64>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| ApiError::bad_request("invalid_field", "hotel_ids: comma-separated ids"))?,
        ),
        None => None,
    };
    let filter = HotelFilter {
        near,
        country: form.text.get("country").cloned(),
        city: form.text.get("city").cloned(),
        chain: form.text.get("chain").cloned(),
        hotel_ids,
    };
    let top = parse_field::<usize>(&form, "top")?.unwrap_or(10);
    if !(1..=100).contains(&top) {
        return Err(ApiError::bad_request("invalid_field", "top: 1 to 100 hotels"));
    }
    let save_case = parse_field::<bool>(&form, "save_case")?.unwrap_or(false);
    let ef = parse_field::<usize>(&form, "ef")?.unwrap_or(0);
    if ef != 0 && !(10..=1000).contains(&ef) {
        return Err(ApiError::bad_request("invalid_field", "ef: 10 to 1000"));
    }
    let skip_auto_mask = !parse_field::<bool>(&form, "auto_mask")?.unwrap_or(true);
    let case_id = parse_field::<i64>(&form, "case_id")?;
    // A kept photo may show a victim: it is kept in a case, whose owner alone may see it.
    if save_case && case_id.is_none() {
        return Err(ApiError::bad_request("invalid_field", "save_case keeps the photo in a case: give case_id"));
    }
    let parts: Vec<&[u8]> = photos.iter().flat_map(|(p, m)| [p.as_slice(), m.as_deref().unwrap_or_default()]).collect();
    let _pixels = pixel_permit(&s, &parts)?;
    let _slot = queue_slot(&s).await?;
    let engine = s.engine.clone();
    let limits = *engine.limits();
    let res = blocking(move || {
        let masks = photos.iter().map(|(_, m)| m.as_ref().map(|m| mask_of(m, &limits)).transpose()).collect::<Result<Vec<_>, _>>()?;
        let more = photos.iter().zip(&masks).skip(1).map(|((b, _), m)| QueryImage { bytes: b, mask: m.as_ref() }).collect();
        let q = Query { bytes: &photos[0].0, mask: masks[0].as_ref(), more, filter, top, save_case, skip_auto_mask, ef };
        match case_id {
            Some(id) => engine.search_into_case(&q, id, cases::viewer(&key)).map(|(r, e)| (r, Some(e.id))),
            None => engine.search(&q, &key.id).map(|r| (r, None)),
        }
    })
    .await?;
    let (res, entry) = res;
    s.metrics.search_stages(&res.stages);
    Ok(Json(SearchResult { case_entry: entry, ..SearchResult::from(res) }).into_response())
}

/// The matched-points form (multipart/form-data).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the form; the handler reads the fields one by one
pub(super) struct PointsForm {
    /// The query photo, as searched (written nowhere).
    #[schema(value_type = String, format = Binary)]
    photo: Vec<u8>,
    /// Its mask, as searched.
    #[schema(value_type = Option<String>, format = Binary)]
    mask: Option<Vec<u8>>,
    /// The evidence photo to match it with.
    image_id: i64,
}

/// The keypoints a query photo and one evidence photo share in one consistent geometry, with
/// the points on marks shared by many hotels (logos, stamps) left out and listed apart.
///
/// A search ranks on its embeddings and reads no stored photo; this is the geometric check
/// an investigator asks for on one candidate. Audited (the query's sha256, never the photo).
/// Roles: investigator, admin.
#[utoipa::path(post, path = "/api/v1/search/points", tag = "search", request_body(content = PointsForm, content_type = "multipart/form-data"), security(("api_key" = [])),
    responses((status = 200, body = Points), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub(super) async fn search_points(
    State(s): State<Shared>,
    Extension(key): Extension<KeyInfo>,
    Checked(mp): Checked<Multipart>,
) -> Result<Response, ApiError> {
    let points =
        about_one_evidence(&s, key, mp, |engine, bytes, mask, image_id, actor| engine.matched_points(bytes, mask, image_id, actor)).await?;
    Ok(Json(Points {
        image_id: points.image_id,
        matched_points: points.matched_points,
        matched_pairs: points.matched_pairs,
        mark_points: points.mark_points,
    })
    .into_response())
}

/// Which regions of the query photo and one evidence photo drove their match, for any
/// model: each cell of a 4 × 3 grid over one photo is left out in turn, and the drop in
/// similarity to the other is its heat. About 26 embeddings: ask for it on demand. Audited.
///
/// Roles: investigator, admin.
#[utoipa::path(post, path = "/api/v1/search/heatmap", tag = "search", request_body(content = PointsForm, content_type = "multipart/form-data"), security(("api_key" = [])),
    responses((status = 200, body = Heat), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub(super) async fn search_heat(
    State(s): State<Shared>,
    Extension(key): Extension<KeyInfo>,
    Checked(mp): Checked<Multipart>,
) -> Result<Response, ApiError> {
    let heat =
        about_one_evidence(&s, key, mp, |engine, bytes, mask, image_id, actor| engine.region_heat(bytes, mask, image_id, actor)).await?;
    Ok(Json(Heat::from(heat)).into_response())
}

/// A question about one evidence photo (`photo`, optional `mask`, `image_id`), admitted as a
/// search is (rate, pixel budget, queue); `work` answers it off the async threads.
async fn about_one_evidence<T: Send + 'static>(
    s: &Shared,
    key: KeyInfo,
    mp: Multipart,
    work: impl FnOnce(&Engine, &[u8], Option<&Mask>, i64, &str) -> Result<T, EngineError> + Send + 'static,
) -> Result<T, ApiError> {
    s.searches.take(&key.id)?;
    let mut form = read_form(mp).await?;
    let bytes = form.files.remove("photo").ok_or_else(|| ApiError::bad_request("missing_photo", "send the query photo as 'photo'"))?;
    let mask_bytes = form.files.remove("mask");
    let image_id = parse_field::<i64>(&form, "image_id")?.ok_or_else(|| ApiError::bad_request("invalid_field", "image_id: required"))?;
    let _pixels = pixel_permit(s, &[&bytes, mask_bytes.as_deref().unwrap_or_default()])?;
    let _slot = queue_slot(s).await?;
    let engine = s.engine.clone();
    let limits = *engine.limits();
    blocking(move || {
        let mask = mask_bytes.map(|m| mask_of(&m, &limits)).transpose()?;
        work(&engine, &bytes, mask.as_ref(), image_id, &key.id)
    })
    .await
}

/// A mask picture as the engine's error when it cannot be read (a `bad_image` 4xx).
fn mask_of(bytes: &[u8], limits: &crate::media::decode::Limits) -> Result<Mask, EngineError> {
    Mask::from_picture(bytes, limits).map_err(|e| EngineError::Embed(EmbedError::Decode(e)))
}

/// A query photo's bytes and its mask's, as sent.
type PhotoPart = (Vec<u8>, Option<Vec<u8>>);

/// The query photos and their masks: `photo` and `mask`, then `photo2`/`mask2` up to
/// `photo8`/`mask8`, in that order; a mask without its photo, or a gap, is refused.
fn query_photos(form: &mut Form) -> Result<Vec<PhotoPart>, ApiError> {
    let name = |base: &str, i: usize| if i == 1 { base.to_string() } else { format!("{base}{i}") };
    let mut photos = Vec::new();
    for i in 1..=MAX_QUERY_PHOTOS {
        match form.files.remove(&name("photo", i)) {
            Some(p) => photos.push((p, form.files.remove(&name("mask", i)))),
            None if i == 1 => return Err(ApiError::bad_request("missing_photo", "send the query photo as the multipart field 'photo'")),
            None => break,
        }
    }
    let stray = form.files.keys().find(|k| k.starts_with("photo") || k.starts_with("mask"));
    if let Some(k) = stray {
        let message = format!(
            "'{k}': a search takes 'photo' and 'photo2' to 'photo{MAX_QUERY_PHOTOS}' in order, each with its optional 'mask', 'mask2', …"
        );
        return Err(ApiError::bad_request("bad_photos", message));
    }
    Ok(photos)
}

/// A case image an investigator kept (`save_case`), byte for byte. The access is audited.
///
/// Roles: investigator, admin.
#[utoipa::path(get, path = "/api/v1/case-images/{sha256}", tag = "search", security(("api_key" = [])),
    params(("sha256" = String, Path, description = "The query's sha256, as in the search result and the audit")),
    responses((status = 200, description = "The query photo as it was sent"), (status = 404, body = ErrorBody)))]
pub(super) async fn case_image(
    State(s): State<Shared>,
    Extension(key): Extension<KeyInfo>,
    Checked(Path(sha256)): Checked<Path<String>>,
) -> Result<Response, ApiError> {
    let engine = s.engine.clone();
    let bytes = blocking(move || engine.case_image(&sha256, super::cases::viewer(&key))).await?;
    Ok(image_response(bytes))
}
