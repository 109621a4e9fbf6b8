//! The catalog's rules, the same for every adapter: what a valid hotel is, distances and
//! filters, the job lease, and the helpers both SQL dialects share.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{CatalogError, Hotel, HotelFilter};

/// "LAT,LON" as two numbers (the form the CLI and the API take a point in).
pub fn parse_lat_lon(s: &str) -> Option<(f64, f64)> {
    let (a, b) = s.split_once(',')?;
    let (lat, lon): (f64, f64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    // NaN and infinities fail the ranges too.
    ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)).then_some((lat, lon))
}

/// Half the Earth's circumference: no radius needs to be larger.
pub const MAX_RADIUS_KM: f64 = 20_038.0;

/// A search radius: finite, positive, at most half the Earth's circumference.
pub fn valid_radius_km(r: f64) -> Option<f64> {
    (r > 0.0 && r <= MAX_RADIUS_KM).then_some(r)
}

/// Great-circle distance in km.
pub fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let (dp, dl) = ((lat2 - lat1).to_radians(), (lon2 - lon1).to_radians());
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0088 * a.sqrt().asin()
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Longest hotel name, address, city, chain or external id accepted, in characters.
pub const MAX_HOTEL_TEXT: usize = 200;
/// Longest room label accepted, in characters.
pub const MAX_ROOM: usize = 64;

/// Whether `c` has no place in a name: a control character (NUL among them), or a
/// bidirectional override or isolate (U+202A–E, U+2066–9) that makes text read otherwise
/// than it is stored.
pub fn unsafe_char(c: char) -> bool {
    c.is_control() || ('\u{202A}'..='\u{202E}').contains(&c) || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// Refuses text that is too long or carries control or bidirectional-override characters
/// (they break logs, CSV exports and pages, and no name needs them).
pub fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), CatalogError> {
    if value.chars().count() > max {
        return Err(CatalogError::Invalid { field, message: format!("at most {max} characters") });
    }
    if value.chars().any(unsafe_char) {
        return Err(CatalogError::Invalid { field, message: "control and bidirectional-override characters are not allowed".into() });
    }
    Ok(())
}

/// Checks every field of a hotel before it is written.
pub(crate) fn check_hotel(h: &Hotel) -> Result<(), CatalogError> {
    if h.name.trim().is_empty() {
        return Err(CatalogError::Invalid { field: "name", message: "a hotel needs a name".into() });
    }
    check_text("name", &h.name, MAX_HOTEL_TEXT)?;
    for (field, value) in
        [("external_id", &h.external_id), ("chain", &h.chain), ("address", &h.address), ("city", &h.city), ("country", &h.country)]
    {
        if let Some(v) = value {
            check_text(field, v, MAX_HOTEL_TEXT)?;
        }
    }
    if h.latitude.is_some_and(|v| !(-90.0..=90.0).contains(&v)) || h.longitude.is_some_and(|v| !(-180.0..=180.0).contains(&v)) {
        return Err(CatalogError::Invalid { field: "latitude/longitude", message: "out of range".into() });
    }
    Ok(())
}

/// Little-endian bytes of a vector, as both catalogs store it.
pub(crate) use crate::digest::bytes_to_f32 as blob_to_vector;
pub(crate) use crate::digest::f32_to_bytes as vector_to_blob;

/// A job whose heartbeat is older than this many seconds is taken as dead: its process or
/// its machine stopped, and another replica may run the job again.
pub const JOB_LEASE_SECS: i64 = 60;

/// This machine's name, recorded with a job so that a dead local process is seen at once.
pub fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// Whether a running job recorded as (`host`, `pid`, `heartbeat`) has stopped: its local
/// process is gone, or its lease ran out.
pub(crate) fn job_is_dead(host: &str, pid: i64, heartbeat: i64, me: &str, now: i64) -> bool {
    (host == me && !Path::new(&format!("/proc/{pid}")).exists()) || heartbeat + JOB_LEASE_SECS < now
}

impl HotelFilter {
    /// Whether `h` passes the filter.
    pub fn matches(&self, h: &Hotel) -> bool {
        let eq = |a: &Option<String>, b: &Option<String>| b.as_ref().is_none_or(|b| a.as_ref().is_some_and(|a| a.eq_ignore_ascii_case(b)));
        let near_ok = self.near.is_none_or(|(lat, lon, km)| match (h.latitude, h.longitude) {
            (Some(a), Some(b)) => haversine_km(lat, lon, a, b) <= km,
            _ => false,
        });
        let ids_ok = self.hotel_ids.as_ref().is_none_or(|ids| ids.contains(&h.id));
        // A country given as a code or a name matches a hotel's in either form ("USA", "US").
        let country_ok =
            self.country.as_deref().is_none_or(|want| h.country.as_deref().is_some_and(|c| crate::places::same_country(c, want)));
        near_ok && ids_ok && country_ok && eq(&h.city, &self.city) && eq(&h.chain, &self.chain)
    }
}

/// Escapes LIKE's wildcards and its escape character, so that user text matches literally.
pub(crate) fn like_literal(text: &str) -> String {
    let literal: String = text.chars().flat_map(|c| if matches!(c, '%' | '_' | '\\') { vec!['\\', c] } else { vec![c] }).collect();
    format!("%{literal}%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_control_and_bidirectional_override_characters() {
        for bad in ["a\u{0}b", "a\u{202e}gpj.exe", "a\u{2066}b", "tab\there"] {
            assert!(check_text("name", bad, 100).is_err(), "{bad:?}");
        }
        assert!(check_text("name", "Hôtel Ünïcode — 東京", 100).is_ok());
        assert!(check_text("name", &"é".repeat(100), 100).is_ok(), "characters are counted, not bytes");
        assert!(check_text("name", &"é".repeat(101), 100).is_err());
    }
}
