//! The catalog's ports: one trait per concern, and `Catalog`, all of them together. SQLite
//! and PostgreSQL implement each.

use super::*;
use crate::pdq::PdqHash;

/// Hotels: the places photos belong to.
pub trait HotelStore {
    /// Adds a hotel, or updates the one with the same `external_id` (or, without one, the
    /// same `id`); returns its id.
    fn upsert_hotel(&self, h: &Hotel) -> Result<i64, CatalogError>;
    /// One hotel.
    fn hotel(&self, id: i64) -> Result<Hotel, CatalogError>;
    /// The hotels with these ids, in one read (ids that name none are left out; any order).
    fn hotels(&self, ids: &[i64]) -> Result<Vec<Hotel>, CatalogError>;
    /// The hotel with this external id.
    fn hotel_by_external_id(&self, ext: &str) -> Result<Option<Hotel>, CatalogError>;
    /// Hotels whose name, city or address contains `text` (case-insensitive), at most `limit`.
    fn find_hotels(&self, text: &str, limit: usize) -> Result<Vec<Hotel>, CatalogError>;
    /// Every hotel.
    fn all_hotels(&self) -> Result<Vec<Hotel>, CatalogError>;
    /// Ids of the hotels that pass `filter`, in id order.
    fn hotels_matching(&self, filter: &HotelFilter) -> Result<Vec<i64>, CatalogError> {
        Ok(self.all_hotels()?.into_iter().filter(|h| filter.matches(h)).map(|h| h.id).collect())
    }
}

/// Photos, their embeddings, and the change feed that derived indexes follow.
pub trait PhotoCatalog {
    /// Registers a model configuration (name, pooling, settings); returns its id.
    fn model_id(&self, name: &str, pooling: &str, dim: usize, settings: &str) -> Result<i64, CatalogError>;
    /// Adds an image with its embedding and a change entry, in one transaction; returns its id.
    fn add_image(&self, img: &NewImage, model_id: i64, vector: &[f32]) -> Result<i64, CatalogError>;
    /// Stores (or replaces) the embedding of an image for a model.
    fn put_embedding(&self, image_id: i64, model_id: i64, vector: &[f32]) -> Result<(), CatalogError>;
    /// One image.
    fn image(&self, id: i64) -> Result<Image, CatalogError>;
    /// The images with these ids, in one read (ids that name none are left out; any order).
    fn images(&self, ids: &[i64]) -> Result<Vec<Image>, CatalogError>;
    /// Active images with these stored bytes.
    fn images_with_sha(&self, sha256: &str) -> Result<Vec<Image>, CatalogError>;
    /// Whether an image that is not deleted holds these bytes (its blob must stay).
    fn sha_in_use(&self, sha256: &str) -> Result<bool, CatalogError>;
    /// Active images of a hotel, newest first (at most 200).
    fn images_of_hotel(&self, hotel_id: i64) -> Result<Vec<Image>, CatalogError>;
    /// Content addresses held only by deleted images.
    fn deleted_only_sha256(&self) -> Result<Vec<String>, CatalogError>;
    /// Sets an image's status and logs the change, in one transaction.
    fn set_status(&self, id: i64, status: Status) -> Result<(), CatalogError>;
    /// Changes after `since`, in order, with each image's current state and its vector for `model_id`.
    fn changes_since(&self, since: i64, model_id: i64) -> Result<Vec<Change>, CatalogError>;
    /// The PDQ hash of every active image, with its hotel and quality.
    fn active_pdq(&self) -> Result<Vec<ActivePdq>, CatalogError>;
    /// The last change's sequence number (0 if none).
    fn last_change(&self) -> Result<i64, CatalogError>;
    /// Active images that lack an embedding for `model_id` (for re-embedding).
    fn images_without_embedding(&self, model_id: i64) -> Result<Vec<Image>, CatalogError>;
    /// (all images, active images).
    fn image_counts(&self) -> Result<(i64, i64), CatalogError>;
    /// The stored f32 vectors of these images for `model_id` (those that have one).
    fn embeddings(&self, image_ids: &[i64], model_id: i64) -> Result<Vec<(i64, Vec<f32>)>, CatalogError>;
}

/// The audit trail: who did what, append-only.
pub trait AuditLog {
    /// Writes an audit entry; returns its id.
    fn audit(&self, actor: &str, action: &str, detail: &serde_json::Value) -> Result<i64, CatalogError>;
    /// The latest audit entries of one action (all when `None`), newest first.
    fn audit_entries_of(&self, action: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>, CatalogError>;
    /// The latest audit entries, newest first.
    fn audit_entries(&self, limit: usize) -> Result<Vec<AuditEntry>, CatalogError> {
        self.audit_entries_of(None, limit)
    }
}

/// API keys: stored as the sha256 of their secret, never the secret.
pub trait KeyStore {
    /// Records a key.
    fn insert_key(&self, id: &str, secret_sha256: &str, role: Role, label: &str) -> Result<(), CatalogError>;
    /// The secret's sha256 and the role of an unrevoked key.
    fn key_secret(&self, id: &str) -> Result<Option<(String, Role)>, CatalogError>;
    /// Revokes a key; returns whether an unrevoked one existed.
    fn revoke_key(&self, id: &str) -> Result<bool, CatalogError>;

    /// Creates an API key; returns the token to hand out (`hm_<id>_<secret>`), shown only once.
    fn create_key(&self, role: Role, label: &str) -> Result<(KeyInfo, String), CatalogError> {
        let mut raw = [0u8; 24];
        use std::io::Read;
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut raw))
            .map_err(|e| CatalogError::Invalid { field: "key", message: format!("no randomness: {e}") })?;
        let id = hex::encode(&raw[..6]);
        let secret = hex::encode(&raw[6..]);
        self.insert_key(&id, &crate::digest::sha256_hex(secret.as_bytes()), role, label)?;
        Ok((KeyInfo { id: id.clone(), role }, format!("hm_{id}_{secret}")))
    }

    /// The key a token belongs to, if it is valid and not revoked.
    fn verify_key(&self, token: &str) -> Result<Option<KeyInfo>, CatalogError> {
        let Some((id, secret)) = token.strip_prefix("hm_").and_then(|t| t.split_once('_')) else { return Ok(None) };
        let Some((want, role)) = self.key_secret(id)? else { return Ok(None) };
        let got = crate::digest::sha256_hex(secret.as_bytes());
        // Constant-time comparison: the time taken says nothing about how much matched.
        let same = want.len() == got.len() && want.bytes().zip(got.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        Ok(same.then(|| KeyInfo { id: id.to_string(), role }))
    }
}

/// Batch jobs, with a lease so that one runs at a time across every replica.
pub trait JobStore {
    /// Records a new running job of `kind` held by this process; refuses while another one
    /// of that kind runs anywhere (a job whose lease ran out is marked interrupted first).
    fn start_job(&self, kind: &str, started_by: &str) -> Result<Job, CatalogError>;
    /// Records a running job's progress (and renews its lease).
    fn job_progress(&self, id: i64, phase: &str, done: usize, total: usize) -> Result<(), CatalogError>;
    /// Renews a running job's lease.
    fn heartbeat(&self, id: i64) -> Result<(), CatalogError>;
    /// Records how a job ended: done, or failed with `error`.
    fn finish_job(&self, id: i64, error: Option<&str>) -> Result<(), CatalogError>;
    /// One job.
    fn job(&self, id: i64) -> Result<Job, CatalogError>;
    /// The latest jobs, newest first.
    fn jobs(&self, limit: usize) -> Result<Vec<Job>, CatalogError>;
    /// The id of the last job of `kind` that finished well (0 if none).
    fn last_done(&self, kind: &str) -> Result<i64, CatalogError>;
}

/// Which import lines were handled already, so that an import can resume.
pub trait ImportJournal {
    /// The outcome recorded for an import line, if it was handled already.
    fn import_outcome(&self, key: &str) -> Result<Option<(Option<i64>, String)>, CatalogError>;
    /// Records how an import line was handled.
    fn record_import(&self, key: &str, image_id: Option<i64>, outcome: &str, detail: &str) -> Result<(), CatalogError>;
}

/// Cases and their journals.
pub trait CaseStore {
    /// Opens a case owned by `owner`.
    fn create_case(&self, title: &str, owner: &str) -> Result<Case, CatalogError>;
    /// One case.
    fn case(&self, id: i64) -> Result<Case, CatalogError>;
    /// The cases of `owner` (every case when `None`), newest first.
    fn cases(&self, owner: Option<&str>) -> Result<Vec<Case>, CatalogError>;
    /// Gives every case of key `from` to key `to`; how many.
    fn hand_over_cases(&self, from: &str, to: &str) -> Result<usize, CatalogError>;
    /// Appends to a case's journal.
    fn add_case_entry(&self, case_id: i64, actor: &str, kind: &str, body: &serde_json::Value) -> Result<JournalRow, CatalogError>;
    /// A case's journal, oldest first.
    fn case_entries(&self, case_id: i64) -> Result<Vec<JournalRow>, CatalogError>;
}

/// Hash banks (ThreatExchange / Hasher-Matcher-Actioner lists).
pub trait HashBanks {
    /// Creates an empty bank; refuses a name in use.
    fn create_bank(&self, name: &str, created_by: &str) -> Result<Bank, CatalogError>;
    /// Every bank, with its number of hashes.
    fn banks(&self) -> Result<Vec<Bank>, CatalogError>;
    /// Adds hashes to a bank (a hash it holds already is skipped); returns how many were new.
    fn add_bank_hashes(&self, bank_id: i64, hashes: &[(PdqHash, String)]) -> Result<usize, CatalogError>;
    /// Up to `limit` bank hashes with ids above `after`, in id order. Ids only grow, in the
    /// order hashes become visible (adds are serialised), so a reader that keeps the last id
    /// it saw misses none.
    fn bank_hashes_after(&self, after: i64, limit: usize) -> Result<Vec<BankHash>, CatalogError>;
}

/// Learned state (the calibration, …) as versioned rows: the newest version of a kind is in
/// force on every replica sharing the catalog.
pub trait LearnedState {
    /// Stores a new version of `kind`; returns its version (greater than every earlier one).
    fn put_state(&self, kind: &str, body: &serde_json::Value, created_by: &str) -> Result<i64, CatalogError>;
    /// The newest version of `kind` and its body, if any.
    fn latest_state(&self, kind: &str) -> Result<Option<(i64, serde_json::Value)>, CatalogError>;
    /// The newest version of `kind` (0: none): a cheap look for followers.
    fn state_version(&self, kind: &str) -> Result<i64, CatalogError>;
}

/// The whole catalog: every concern, behind one handle shared by threads.
pub trait Catalog:
    HotelStore + PhotoCatalog + AuditLog + KeyStore + JobStore + ImportJournal + CaseStore + HashBanks + LearnedState + Send + Sync
{
    /// Which database holds it ("sqlite", "postgres"), for logs and `/ready`.
    fn backend(&self) -> &'static str;
}
