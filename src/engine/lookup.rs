//! Lookups: the catalog read for callers (hotels, photos, keys, the audit trail, the import
//! journal), so that nothing outside the engine reaches the catalog itself.

use super::{Engine, EngineError};
use crate::catalog::{AuditEntry, Hotel, HotelFilter, Image, KeyInfo};

/// Hotels whose name or city match are looked through up to this many when a point narrows them.
const NEAR_SCAN: usize = usize::MAX >> 1;

impl Engine {
    /// Hotels whose name or city contain `text` (all when empty), inside `near` (lat, lon,
    /// radius in km) when given, at most `limit`.
    pub fn find_hotels(&self, text: &str, near: Option<(f64, f64, f64)>, limit: usize) -> Result<Vec<Hotel>, EngineError> {
        // Several words match in any order and any field ("marriott denver" finds "Denver
        // Marriott City Center"): the catalog is asked for the longest, the rest checked here.
        let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
        if words.len() > 1 {
            let longest = words.iter().max_by_key(|w| w.chars().count()).cloned().unwrap_or_default();
            let mut hotels = self.find_hotels(&longest, near, NEAR_SCAN)?;
            hotels.retain(|h| {
                let all = [Some(&h.name), h.city.as_ref(), h.address.as_ref(), h.chain.as_ref()]
                    .into_iter()
                    .flatten()
                    .map(|s| s.to_lowercase())
                    .collect::<Vec<_>>()
                    .join(" ");
                words.iter().all(|w| all.contains(w.as_str()))
            });
            hotels.truncate(limit);
            return Ok(hotels);
        }
        let mut hotels = self.catalog.find_hotels(text, if near.is_some() { NEAR_SCAN } else { limit })?;
        if near.is_some() {
            let inside = self.catalog.hotels_matching(&HotelFilter { near, ..Default::default() })?;
            hotels.retain(|h| inside.contains(&h.id));
            hotels.truncate(limit);
        }
        Ok(hotels)
    }

    /// One hotel.
    pub fn hotel(&self, id: i64) -> Result<Hotel, EngineError> {
        Ok(self.catalog.hotel(id)?)
    }

    /// The hotel with this external id, if any.
    pub fn hotel_by_external_id(&self, external_id: &str) -> Result<Option<Hotel>, EngineError> {
        Ok(self.catalog.hotel_by_external_id(external_id)?)
    }

    /// Every photo of a hotel, whatever its status.
    pub fn images_of_hotel(&self, hotel_id: i64) -> Result<Vec<Image>, EngineError> {
        Ok(self.catalog.images_of_hotel(hotel_id)?)
    }

    /// Photos by status: (active, all).
    pub fn image_counts(&self) -> Result<(i64, i64), EngineError> {
        Ok(self.catalog.image_counts()?)
    }

    /// The exact vectors the catalog keeps for these photos under the model in use.
    pub fn stored_vectors(&self, image_ids: &[i64]) -> Result<Vec<(i64, Vec<f32>)>, EngineError> {
        Ok(self.catalog.embeddings(image_ids, self.model_id)?)
    }

    /// The key a bearer token names, if it is valid and not revoked.
    pub fn verify_key(&self, token: &str) -> Result<Option<KeyInfo>, EngineError> {
        Ok(self.catalog.verify_key(token)?)
    }

    /// The latest audit entries (of one action when given), newest first.
    pub fn audit_entries(&self, action: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>, EngineError> {
        Ok(self.catalog.audit_entries_of(action, limit)?)
    }

    /// Whether an import already handled the source line `key` (imports resume from it).
    pub fn imported(&self, key: &str) -> Result<bool, EngineError> {
        Ok(self.catalog.import_outcome(key)?.is_some())
    }

    /// Records how an import handled the source line `key`.
    pub fn record_import(&self, key: &str, image_id: Option<i64>, outcome: &str, detail: &str) -> Result<(), EngineError> {
        Ok(self.catalog.record_import(key, image_id, outcome, detail)?)
    }

    /// How many catalog changes this process's index has yet to apply (0: caught up).
    pub fn feed_lag(&self) -> Result<i64, EngineError> {
        Ok((self.catalog.last_change()? - self.watermark()).max(0))
    }

    /// The catalog's backend, for operators ("sqlite" or "postgres").
    pub fn catalog_backend(&self) -> &'static str {
        self.catalog.backend()
    }
}
