//! Hotels: listing, creating and changing them, and their photos.

use super::*;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct HotelSearch {
    /// Words found in the name, city or street address, in any order (type-ahead).
    q: Option<String>,
    /// "LAT,LON"; with `radius_km`.
    near: Option<String>,
    /// Radius around `near`, in km.
    radius_km: Option<f64>,
    /// At most this many hotels (default 20, at most 10,000: a map of every hotel).
    limit: Option<usize>,
}

/// The most hotels one listing returns.
const MAX_LIST: usize = 10_000;

/// Hotels by name or city, or near a point.
///
/// Roles: uploader, investigator, admin.
#[utoipa::path(get, path = "/api/v1/hotels", tag = "hotels", params(HotelSearch), security(("api_key" = [])),
    responses((status = 200, body = Vec<Hotel>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn list_hotels(
    State(s): State<Shared>,
    Checked(QueryParams(p)): Checked<QueryParams<HotelSearch>>,
) -> Result<Json<Vec<Hotel>>, ApiError> {
    let engine = s.engine.clone();
    let limit = p.limit.unwrap_or(20).min(MAX_LIST);
    let text = p.q.unwrap_or_default();
    let near = near_filter(p.near.as_deref(), p.radius_km)?;
    let hotels = blocking(move || engine.find_hotels(&text, near, limit)).await?;
    Ok(Json(hotels.into_iter().map(Hotel::from).collect()))
}

/// The "near" filter from its two fields, "LAT,LON" and `radius_km`, which go together.
pub(super) fn near_filter(point: Option<&str>, radius_km: Option<f64>) -> Result<Option<(f64, f64, f64)>, ApiError> {
    match (point, radius_km) {
        (Some(p), Some(r)) => {
            let (lat, lon) = crate::catalog::parse_lat_lon(p)
                .ok_or_else(|| ApiError::bad_request("invalid_field", "near: expected LAT,LON with -90 ≤ LAT ≤ 90, -180 ≤ LON ≤ 180"))?;
            let r = crate::catalog::valid_radius_km(r)
                .ok_or_else(|| ApiError::bad_request("invalid_field", "radius_km: a number of km above 0, at most 20038"))?;
            Ok(Some((lat, lon, r)))
        }
        (None, None) => Ok(None),
        _ => Err(ApiError::bad_request("invalid_field", "near and radius_km go together")),
    }
}

/// A new hotel: every field but the id, which the catalog assigns.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewHotel {
    /// Your own id for the hotel (unique), if any.
    external_id: Option<String>,
    name: String,
    chain: Option<String>,
    address: Option<String>,
    city: Option<String>,
    country: Option<String>,
    latitude: Option<f64>,
    longitude: Option<f64>,
}

/// Reads a JSON field that may be absent (unchanged) but not null.
fn not_null<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<T>::deserialize(d)?.map(Some).ok_or_else(|| serde::de::Error::custom("cannot be null"))
}

/// Reads a JSON field that may be absent (unchanged) or null (cleared).
fn present<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Changes to a hotel: fields left out stay as they are; `null` clears an optional field.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct HotelPatch {
    /// A new name; a hotel always has one, so `null` is refused.
    #[serde(default, deserialize_with = "not_null")]
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    chain: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    address: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    city: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    country: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<f64>)]
    latitude: Option<Option<f64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<f64>)]
    longitude: Option<Option<f64>>,
}

impl HotelPatch {
    /// The hotel with these changes applied.
    fn apply(self, mut h: catalog::Hotel) -> catalog::Hotel {
        if let Some(v) = self.name {
            h.name = v;
        }
        for (field, value) in
            [(&mut h.chain, self.chain), (&mut h.address, self.address), (&mut h.city, self.city), (&mut h.country, self.country)]
        {
            if let Some(v) = value {
                *field = v;
            }
        }
        for (field, value) in [(&mut h.latitude, self.latitude), (&mut h.longitude, self.longitude)] {
            if let Some(v) = value {
                *field = v;
            }
        }
        h
    }
}

/// Adds a hotel. An `external_id` already in the catalog is a conflict (409): change that
/// hotel with `PATCH /api/v1/hotels/{id}`; nothing is overwritten here.
///
/// Roles: admin.
#[utoipa::path(post, path = "/api/v1/hotels", tag = "hotels", request_body = NewHotel, security(("api_key" = [])),
    responses((status = 201, body = Hotel), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody, description = "A hotel with this external_id exists")))]
pub(super) async fn create_hotel(
    State(s): State<Shared>,
    Extension(key): Extension<KeyInfo>,
    Checked(Json(n)): Checked<Json<NewHotel>>,
) -> Result<(StatusCode, Json<Hotel>), ApiError> {
    let engine = s.engine.clone();
    let hotel = blocking(move || {
        let h = catalog::Hotel {
            id: 0,
            external_id: n.external_id,
            name: n.name,
            chain: n.chain,
            address: n.address,
            city: n.city,
            country: n.country,
            latitude: n.latitude,
            longitude: n.longitude,
        };
        engine.create_hotel(&h, &key.id)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(hotel.into())))
}

/// Changes some fields of a hotel (absent fields are kept; `null` clears one). The audit
/// keeps the hotel before and after.
///
/// Roles: admin.
#[utoipa::path(patch, path = "/api/v1/hotels/{id}", tag = "hotels", request_body = HotelPatch, security(("api_key" = [])),
    params(("id" = i64, Path, description = "Hotel id")),
    responses((status = 200, body = Hotel), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn update_hotel(
    State(s): State<Shared>,
    Extension(key): Extension<KeyInfo>,
    Checked(Path(id)): Checked<Path<i64>>,
    Checked(Json(patch)): Checked<Json<HotelPatch>>,
) -> Result<Json<Hotel>, ApiError> {
    let engine = s.engine.clone();
    let hotel = blocking(move || engine.update_hotel(id, |h| patch.apply(h), &key.id)).await?;
    Ok(Json(hotel.into()))
}

/// All photos of a hotel, for the investigator's side-by-side view.
///
/// Roles: investigator, admin.
#[utoipa::path(get, path = "/api/v1/hotels/{id}/photos", tag = "hotels", security(("api_key" = [])),
    params(("id" = i64, Path, description = "Hotel id")), responses((status = 200, body = Vec<Image>)))]
pub(super) async fn hotel_photos(State(s): State<Shared>, Checked(Path(id)): Checked<Path<i64>>) -> Result<Json<Vec<Image>>, ApiError> {
    let engine = s.engine.clone();
    let images = blocking(move || engine.images_of_hotel(id)).await?;
    Ok(Json(images.into_iter().map(Image::from).collect()))
}
