//! Catalog: hotels, images, embeddings, the change feed, the audit trail, keys, jobs and
//! the import journal. The catalog is the source of truth; the vector and hash indexes are
//! derived from it.
//!
//! The engine sees it through the traits below, one per concern; `sqlite` (the embedded
//! default) and `postgres` (several replicas) implement them all.

pub mod postgres;
pub mod sqlite;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::pdq::PdqHash;

/// Why a catalog operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// SQLite failed.
    #[error("catalog: {0}")]
    Sql(#[from] rusqlite::Error),
    /// PostgreSQL failed.
    #[error("catalog (postgres): {0}")]
    Postgres(#[from] ::postgres::Error),
    /// No PostgreSQL connection could be had in time.
    #[error("catalog (postgres): no connection: {0}")]
    Pool(String),
    /// The database is newer than this program.
    #[error("catalog schema version {found} is newer than this program's {known}")]
    TooNew { found: i64, known: i64 },
    /// No such hotel.
    #[error("no hotel with id {0}")]
    NoHotel(i64),
    /// No such image.
    #[error("no image with id {0}")]
    NoImage(i64),
    /// A field is invalid.
    #[error("invalid {field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// No such job.
    #[error("no job with id {0}")]
    NoJob(i64),
    /// No such case.
    #[error("no case with id {0}")]
    NoCase(i64),
    /// A hash bank of this name exists already.
    #[error("a hash bank named {0:?} exists already")]
    BankExists(String),
    /// A job of this kind is already running.
    #[error("a {kind} job is already running (job {id})")]
    JobRunning { kind: String, id: i64 },
    /// A hotel with this external id exists already.
    #[error("hotel {id} has the external id {external_id:?} already: change it with PATCH /api/v1/hotels/{id}")]
    HotelExists { external_id: String, id: i64 },
}

/// A hotel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Hotel {
    #[serde(default)]
    pub id: i64,
    /// The importer's own id for the hotel (unique), if any.
    #[serde(default)]
    pub external_id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub chain: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub latitude: Option<f64>,
    #[serde(default)]
    pub longitude: Option<f64>,
}

/// Whether an image takes part in search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Quarantined,
    Deleted,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Quarantined => "quarantined",
            Status::Deleted => "deleted",
        }
    }
    /// A stored status; anything unknown reads as deleted, so it never reaches results.
    pub(crate) fn parse(s: &str) -> Status {
        s.parse().unwrap_or(Status::Deleted)
    }
}

impl std::str::FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(Status::Active),
            "quarantined" => Ok(Status::Quarantined),
            "deleted" => Ok(Status::Deleted),
            _ => Err(format!("{s}: use active, quarantined or deleted")),
        }
    }
}

/// Where an image came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Uploaded by a member of the public.
    Crowd,
    /// Bulk-imported by an operator.
    Import,
}

impl Source {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Source::Crowd => "crowd",
            Source::Import => "import",
        }
    }
    pub(crate) fn parse(s: &str) -> Source {
        if s == "crowd" {
            Source::Crowd
        } else {
            Source::Import
        }
    }
}

/// An image row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Image {
    pub id: i64,
    pub sha256: String,
    pub hotel_id: i64,
    pub room: Option<String>,
    pub source: Source,
    pub uploader_key_id: Option<String>,
    pub created: i64,
    pub width: u32,
    pub height: u32,
    /// PDQ hash, 64 hex digits.
    pub pdq: PdqHash,
    pub pdq_quality: u8,
    pub status: Status,
}

/// A new image, before it has an id.
#[derive(Debug, Clone)]
pub struct NewImage {
    pub sha256: String,
    pub hotel_id: i64,
    pub room: Option<String>,
    pub source: Source,
    pub uploader_key_id: Option<String>,
    pub width: u32,
    pub height: u32,
    pub pdq: PdqHash,
    pub pdq_quality: u8,
}

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub seq: i64,
    pub image_id: i64,
    pub hotel_id: i64,
    pub status: Status,
    pub pdq: PdqHash,
    pub pdq_quality: u8,
    /// The embedding for the model asked about, if it exists.
    pub vector: Option<Vec<f32>>,
}

/// Where a batch job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    Done,
    Failed,
    /// Its process ended before the job did (a crash or a kill); run it again.
    Interrupted,
}

impl JobState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Interrupted => "interrupted",
        }
    }
    pub(crate) fn parse(s: &str) -> JobState {
        match s {
            "running" => JobState::Running,
            "done" => JobState::Done,
            "failed" => JobState::Failed,
            _ => JobState::Interrupted,
        }
    }
}

/// A batch job's record (re-embedding and re-indexing).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub state: JobState,
    /// The step it is in, e.g. "embedding" or "indexing".
    pub phase: String,
    /// Items done of `total` in this phase.
    pub done: i64,
    pub total: i64,
    pub started: i64,
    pub finished: Option<i64>,
    /// Key id or "cli".
    pub started_by: String,
    pub error: Option<String>,
}

/// An audit entry.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub detail: serde_json::Value,
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Adds photos and lists hotels (the public).
    Uploader,
    /// Searches and views photos.
    Investigator,
    /// Everything, including hotels, photo status, audit and keys.
    Admin,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "uploader" => Ok(Role::Uploader),
            "investigator" => Ok(Role::Investigator),
            "admin" => Ok(Role::Admin),
            _ => Err(format!("unknown role {s:?} (uploader, investigator, admin)")),
        }
    }
}

impl Role {
    /// Its name in keys, the audit and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Uploader => "uploader",
            Role::Investigator => "investigator",
            Role::Admin => "admin",
        }
    }
}

/// A verified API key: its public id (what the audit records) and role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub role: Role,
}

/// Which hotels a search may return.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HotelFilter {
    /// (latitude, longitude, radius in km).
    pub near: Option<(f64, f64, f64)>,
    pub country: Option<String>,
    pub city: Option<String>,
    pub chain: Option<String>,
    pub hotel_ids: Option<Vec<i64>>,
}

impl HotelFilter {
    /// Whether the filter restricts anything.
    pub fn is_empty(&self) -> bool {
        *self == HotelFilter::default()
    }
}

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

/// Refuses text that is too long or carries control characters (they break logs, CSV
/// exports and pages, and no name needs them).
pub fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), CatalogError> {
    if value.chars().count() > max {
        return Err(CatalogError::Invalid { field, message: format!("at most {max} characters") });
    }
    if value.chars().any(char::is_control) {
        return Err(CatalogError::Invalid { field, message: "control characters are not allowed".into() });
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
pub(crate) fn vector_to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A vector from its stored bytes.
pub(crate) fn blob_to_vector(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

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
        near_ok && ids_ok && eq(&h.country, &self.country) && eq(&h.city, &self.city) && eq(&h.chain, &self.chain)
    }
}

/// Escapes LIKE's wildcards and its escape character, so that user text matches literally.
pub(crate) fn like_literal(text: &str) -> String {
    let literal: String = text.chars().flat_map(|c| if matches!(c, '%' | '_' | '\\') { vec!['\\', c] } else { vec![c] }).collect();
    format!("%{literal}%")
}

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
    /// Hotels whose name or city contains `text` (case-insensitive), at most `limit`.
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
        self.insert_key(&id, &crate::store::sha256_hex(secret.as_bytes()), role, label)?;
        Ok((KeyInfo { id: id.clone(), role }, format!("hm_{id}_{secret}")))
    }

    /// The key a token belongs to, if it is valid and not revoked.
    fn verify_key(&self, token: &str) -> Result<Option<KeyInfo>, CatalogError> {
        let Some((id, secret)) = token.strip_prefix("hm_").and_then(|t| t.split_once('_')) else { return Ok(None) };
        let Some((want, role)) = self.key_secret(id)? else { return Ok(None) };
        let got = crate::store::sha256_hex(secret.as_bytes());
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

/// An active image's PDQ hash, where it belongs and how trustworthy it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActivePdq {
    pub image_id: i64,
    pub hotel_id: i64,
    pub pdq: PdqHash,
    pub quality: u8,
}

/// A case: an investigation that searches, notes and verdicts are saved into.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Case {
    pub id: i64,
    pub title: String,
    /// The key that created it: with admins, the only one that may read it.
    pub owner: String,
    pub created: i64,
}

/// One stored entry of a case's journal (append-only: a later verdict supersedes, never erases); the engine reads it typed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JournalRow {
    pub id: i64,
    pub case_id: i64,
    pub at: i64,
    pub actor: String,
    /// "search", "note" or "verdict".
    pub kind: String,
    pub body: serde_json::Value,
}

/// Cases and their journals.
pub trait CaseStore {
    /// Opens a case owned by `owner`.
    fn create_case(&self, title: &str, owner: &str) -> Result<Case, CatalogError>;
    /// One case.
    fn case(&self, id: i64) -> Result<Case, CatalogError>;
    /// The cases of `owner` (every case when `None`), newest first.
    fn cases(&self, owner: Option<&str>) -> Result<Vec<Case>, CatalogError>;
    /// Appends to a case's journal.
    fn add_case_entry(&self, case_id: i64, actor: &str, kind: &str, body: &serde_json::Value) -> Result<JournalRow, CatalogError>;
    /// A case's journal, oldest first.
    fn case_entries(&self, case_id: i64) -> Result<Vec<JournalRow>, CatalogError>;
}

/// A named list of PDQ hashes (known advertisement photos, a partner's list).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bank {
    pub id: i64,
    pub name: String,
    pub created: i64,
    pub created_by: String,
    pub hashes: i64,
}

/// One hash of a bank, with the label it came with (an id or tag of the sharing party).
#[derive(Debug, Clone, PartialEq)]
pub struct BankHash {
    pub id: i64,
    pub bank_id: i64,
    pub pdq: PdqHash,
    pub label: String,
}

/// Hash banks (ThreatExchange / Hasher-Matcher-Actioner lists).
pub trait HashBanks {
    /// Creates an empty bank; refuses a name in use.
    fn create_bank(&self, name: &str, created_by: &str) -> Result<Bank, CatalogError>;
    /// Every bank, with its number of hashes.
    fn banks(&self) -> Result<Vec<Bank>, CatalogError>;
    /// Adds hashes to a bank (a hash it holds already is skipped); returns how many were new.
    fn add_bank_hashes(&self, bank_id: i64, hashes: &[(PdqHash, String)]) -> Result<usize, CatalogError>;
    /// Every hash of every bank.
    fn bank_hashes(&self) -> Result<Vec<BankHash>, CatalogError>;
}

/// The whole catalog: every concern, behind one handle shared by threads.
pub trait Catalog:
    HotelStore + PhotoCatalog + AuditLog + KeyStore + JobStore + ImportJournal + CaseStore + HashBanks + Send + Sync
{
    /// Which database holds it ("sqlite", "postgres"), for logs and `/ready`.
    fn backend(&self) -> &'static str;
}

/// Whether `location` names a PostgreSQL database (a `postgres://` URL) rather than a
/// SQLite file.
pub fn is_postgres(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// Connections a PostgreSQL catalog keeps when no setting says otherwise.
pub const DEFAULT_POOL: u32 = 8;

/// Opens the catalog at `location`: a `postgres://` URL, or a path to a SQLite file
/// (created and migrated when missing).
pub fn open(location: &str) -> Result<Box<dyn Catalog>, CatalogError> {
    open_pooled(location, DEFAULT_POOL)
}

/// Like `open`, with at most `pool` connections to a PostgreSQL catalog (SQLite has one).
pub fn open_pooled(location: &str, pool: u32) -> Result<Box<dyn Catalog>, CatalogError> {
    if is_postgres(location) {
        Ok(Box::new(postgres::PgCatalog::connect(location, pool)?))
    } else {
        Ok(Box::new(sqlite::SqliteCatalog::open(Path::new(location))?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haversine_is_sane() {
        let d = haversine_km(39.7392, -104.9903, 40.015, -105.2705);
        assert!((d - 39.0).abs() < 2.0, "{d}");
    }

    #[test]
    fn a_job_is_dead_when_its_lease_ran_out_or_its_local_process_is_gone() {
        let me = this_host();
        let t = now();
        assert!(!job_is_dead(&me, i64::from(std::process::id()), t, &me, t));
        assert!(job_is_dead(&me, 99_999_999, t, &me, t), "a local pid that cannot exist");
        assert!(!job_is_dead("elsewhere", 99_999_999, t, &me, t), "another host's pid says nothing here");
        assert!(job_is_dead("elsewhere", 1, t - JOB_LEASE_SECS - 1, &me, t));
    }
}
