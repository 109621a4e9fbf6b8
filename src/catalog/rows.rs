//! The catalog's rows: what it stores and hands back (hotels, photos, the change feed, jobs,
//! keys, audit entries, cases, hash banks).

use serde::{Deserialize, Serialize};

use crate::pdq::PdqHash;

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
    /// Whether a photo with this status may be shown: deleted ones to nobody, quarantined
    /// ones (under review) to admins only. The one rule for the photo route and reports.
    pub fn shown_to(self, admin: bool) -> bool {
        match self {
            Status::Active => true,
            Status::Quarantined => admin,
            Status::Deleted => false,
        }
    }

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
