//! Moderation and administration: hotels, photo status, keys and case images, each audited.

use super::{Engine, EngineError};
use crate::catalog::{CatalogError, Hotel, KeyInfo, Role, Status};
use crate::store::StoreError;

impl Engine {
    /// Sets an image's status; it leaves (or re-enters) search results at once.
    pub fn set_status(&self, image_id: i64, status: Status, actor: &str) -> Result<(), EngineError> {
        if status != Status::Deleted {
            // A deleted photo whose file was purged by a re-index cannot come back.
            let img = self.catalog.image(image_id)?;
            if !self.store.exists(&img.sha256)? {
                return Err(EngineError::Store(StoreError::Missing(img.sha256)));
            }
        }
        self.catalog.set_status(image_id, status)?;
        self.catalog.audit(actor, "image-status", &serde_json::json!({"image_id": image_id, "status": status}))?;
        self.catch_up()?;
        Ok(())
    }

    /// Adds a hotel, or updates the one with the same external id (imports); returns its id.
    pub fn upsert_hotel(&self, h: &Hotel, actor: &str) -> Result<i64, EngineError> {
        let id = self.catalog.upsert_hotel(h)?;
        self.catalog.audit(actor, "hotel-upsert", &serde_json::json!({"hotel_id": id, "external_id": h.external_id}))?;
        Ok(id)
    }

    /// Adds a new hotel; an external id already in the catalog is a conflict (nothing is
    /// overwritten).
    pub fn create_hotel(&self, h: &Hotel, actor: &str) -> Result<Hotel, EngineError> {
        if let Some(ext) = &h.external_id {
            if let Some(existing) = self.catalog.hotel_by_external_id(ext)? {
                return Err(CatalogError::HotelExists { external_id: ext.clone(), id: existing.id }.into());
            }
        }
        let id = self.catalog.upsert_hotel(&Hotel { id: 0, ..h.clone() })?;
        let created = self.catalog.hotel(id)?;
        self.catalog.audit(actor, "hotel-create", &serde_json::json!({"hotel_id": id, "after": created}))?;
        Ok(created)
    }

    /// Changes a hotel with `change` (its external id stays); the audit keeps it before and after.
    pub fn update_hotel(&self, id: i64, change: impl FnOnce(Hotel) -> Hotel, actor: &str) -> Result<Hotel, EngineError> {
        let before = self.catalog.hotel(id)?;
        // By id: the external id is not changed here.
        let changed = Hotel { id, external_id: None, ..change(before.clone()) };
        self.catalog.upsert_hotel(&changed)?;
        let after = self.catalog.hotel(id)?;
        self.catalog.audit(actor, "hotel-update", &serde_json::json!({"hotel_id": id, "before": before, "after": after}))?;
        Ok(after)
    }

    /// Creates an API key; returns it and the token, shown once.
    pub fn create_key(&self, role: Role, label: &str, actor: &str) -> Result<(KeyInfo, String), EngineError> {
        let (info, token) = self.catalog.create_key(role, label)?;
        self.catalog.audit(actor, "key-create", &serde_json::json!({"key_id": info.id, "role": info.role}))?;
        Ok((info, token))
    }

    /// Revokes a key; false when no active key has that id.
    pub fn revoke_key(&self, id: &str, actor: &str) -> Result<bool, EngineError> {
        let revoked = self.catalog.revoke_key(id)?;
        if revoked {
            self.catalog.audit(actor, "key-revoke", &serde_json::json!({"key_id": id}))?;
        }
        Ok(revoked)
    }

    /// Replaces a key: a new one with the same role and label takes over the old key's cases
    /// (and so the photos they kept), then the old one is revoked. Returns the new key, its
    /// token (shown once) and how many cases moved. Audited as `key-rotate`.
    pub fn rotate_key(&self, id: &str, label: &str, actor: &str) -> Result<(KeyInfo, String, usize), EngineError> {
        let Some((_, role)) = self.catalog.key_secret(id)? else {
            return Err(EngineError::Invalid { field: "id", message: format!("no active key with id {id}") });
        };
        let (info, token) = self.catalog.create_key(role, label)?;
        let cases = self.catalog.hand_over_cases(id, &info.id)?;
        self.catalog.revoke_key(id)?;
        self.catalog.audit(
            actor,
            "key-rotate",
            &serde_json::json!({"old_key_id": id, "new_key_id": info.id, "role": role, "cases": cases}),
        )?;
        Ok((info, token, cases))
    }

    /// A case image an investigator kept, by its sha256: to an admin, or to the owner of a
    /// case whose journal kept it; anyone else is told it does not exist (and the attempt
    /// is audited as `case-denied`). The viewing is audited.
    pub fn case_image(&self, sha256: &str, viewer: super::Viewer) -> Result<Vec<u8>, EngineError> {
        crate::store::check_id(sha256)?;
        if !viewer.admin && !self.keeps_case_image(sha256, viewer.key_id)? {
            self.catalog.audit(viewer.key_id, "case-denied", &serde_json::json!({"sha256": sha256, "action": "case-image"}))?;
            return Err(StoreError::Missing(sha256.to_string()).into());
        }
        let bytes = self.cases.get(sha256)?;
        self.catalog.audit(viewer.key_id, "case-image-view", &serde_json::json!({"sha256": sha256}))?;
        Ok(bytes)
    }
}
