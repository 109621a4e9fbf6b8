//! What the HTTP API sends: response bodies and their OpenAPI schemas, made from the
//! engine's types at the edge, so that the engine and the catalog know nothing of HTTP or
//! OpenAPI and the wire format changes only here.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{catalog, engine, index};

/// A hotel.
#[derive(Debug, Serialize, ToSchema)]
pub struct Hotel {
    pub id: i64,
    /// The importer's own id for the hotel (unique), if any.
    pub external_id: Option<String>,
    pub name: String,
    pub chain: Option<String>,
    pub address: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

impl From<catalog::Hotel> for Hotel {
    fn from(h: catalog::Hotel) -> Self {
        let catalog::Hotel { id, external_id, name, chain, address, city, country, latitude, longitude } = h;
        Hotel { id, external_id, name, chain, address, city, country, latitude, longitude }
    }
}

/// Whether a photo takes part in search.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Quarantined,
    Deleted,
}

impl From<catalog::Status> for Status {
    fn from(s: catalog::Status) -> Self {
        match s {
            catalog::Status::Active => Status::Active,
            catalog::Status::Quarantined => Status::Quarantined,
            catalog::Status::Deleted => Status::Deleted,
        }
    }
}

impl From<Status> for catalog::Status {
    fn from(s: Status) -> Self {
        match s {
            Status::Active => catalog::Status::Active,
            Status::Quarantined => catalog::Status::Quarantined,
            Status::Deleted => catalog::Status::Deleted,
        }
    }
}

/// Where a photo came from: `crowd` (an uploader) or `import` (an operator's bulk import).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Crowd,
    Import,
}

/// A stored photo's record.
#[derive(Debug, Serialize, ToSchema)]
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
    pub pdq: String,
    pub pdq_quality: u8,
    pub status: Status,
}

impl From<catalog::Image> for Image {
    fn from(i: catalog::Image) -> Self {
        let source = match i.source {
            catalog::Source::Crowd => Source::Crowd,
            catalog::Source::Import => Source::Import,
        };
        Image {
            id: i.id,
            sha256: i.sha256,
            hotel_id: i.hotel_id,
            room: i.room,
            source,
            uploader_key_id: i.uploader_key_id,
            created: i.created,
            width: i.width,
            height: i.height,
            pdq: i.pdq.to_string(),
            pdq_quality: i.pdq_quality,
            status: i.status.into(),
        }
    }
}

/// Where a batch job stands (`interrupted`: its process ended before the job did).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    Done,
    Failed,
    Interrupted,
}

/// A batch job's record.
#[derive(Debug, Serialize, ToSchema)]
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

impl From<catalog::Job> for Job {
    fn from(j: catalog::Job) -> Self {
        let state = match j.state {
            catalog::JobState::Running => JobState::Running,
            catalog::JobState::Done => JobState::Done,
            catalog::JobState::Failed => JobState::Failed,
            catalog::JobState::Interrupted => JobState::Interrupted,
        };
        Job { id: j.id, kind: j.kind, state, phase: j.phase, done: j.done, total: j.total, started: j.started, finished: j.finished, started_by: j.started_by, error: j.error }
    }
}

/// An audit entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl From<catalog::AuditEntry> for AuditEntry {
    fn from(e: catalog::AuditEntry) -> Self {
        AuditEntry { id: e.id, at: e.at, actor: e.actor, action: e.action, detail: e.detail }
    }
}

/// The outcome of an upload.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Ingested {
    /// Stored and indexed.
    Added { image_id: i64, pdq: String, pdq_quality: u8 },
    /// A near-copy of a photo of the same hotel already stored; not stored again.
    Duplicate { of_image_id: i64, distance: u32, pdq: String },
    /// The very same photo is stored for another hotel: nothing is added and an admin
    /// decides (listed under `GET /api/v1/audit?action=upload-conflict`).
    CrossHotelDuplicate { of_image_id: i64, of_hotel_id: i64, pdq: String },
}

impl From<engine::Ingested> for Ingested {
    fn from(i: engine::Ingested) -> Self {
        match i {
            engine::Ingested::Added { image_id, pdq, pdq_quality } => Ingested::Added { image_id, pdq, pdq_quality },
            engine::Ingested::Duplicate { of_image_id, distance, pdq } => Ingested::Duplicate { of_image_id, distance, pdq },
            engine::Ingested::CrossHotelDuplicate { of_image_id, of_hotel_id, pdq } => Ingested::CrossHotelDuplicate { of_image_id, of_hotel_id, pdq },
        }
    }
}

/// A feature-map cell of the query that resembles a matched photo.
#[derive(Debug, Serialize, ToSchema)]
pub struct Cell {
    pub x: usize,
    pub y: usize,
    pub score: f32,
}

/// One matched photo shown as evidence.
#[derive(Debug, Serialize, ToSchema)]
pub struct Evidence {
    pub image_id: i64,
    pub sha256: String,
    pub room: Option<String>,
    /// Cosine similarity of the query's and the photo's vectors.
    pub similarity: f32,
    /// Keypoint matches consistent with one scene seen from two positions (RANSAC inliers),
    /// when the photo was among those geometrically verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched_points: Option<usize>,
    /// The query's cells most similar to this photo, best first (grid in `grid`).
    pub query_cells: Vec<Cell>,
}

/// A stored photo that the query is a copy of (PDQ within its match distance).
#[derive(Debug, Serialize, ToSchema)]
pub struct Reuse {
    pub image_id: i64,
    pub hotel_id: i64,
    pub distance: u32,
    /// Which rotation or mirror of the query matched ("original", "flip_x", …).
    pub variant: String,
}

/// A candidate hotel.
#[derive(Debug, Serialize, ToSchema)]
pub struct HotelHit {
    pub rank: usize,
    pub score: f32,
    pub hotel: Hotel,
    pub evidence: Vec<Evidence>,
}

/// How the index answered.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Plan {
    /// Exact scan of every live vector.
    Exact,
    /// Exact scan of the vectors the filter allows.
    ExactFiltered,
    /// HNSW walk (filtered inside the walk when a filter is set), re-ranked exactly.
    Graph,
}

/// The answer to a search.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResult {
    pub hotels: Vec<HotelHit>,
    /// Stored photos the query is a copy of (exact reuse of a crowd photo), closest first.
    pub reuse: Vec<Reuse>,
    /// Query feature-map size (columns, rows) that `query_cells` refer to.
    #[schema(value_type = Vec<usize>)]
    pub grid: (usize, usize),
    pub plan: Plan,
    /// sha256 of the query bytes (what the audit keeps instead of the photo).
    pub query_sha256: String,
    /// Whether the query was kept as a case image (under its sha256), as asked.
    pub saved_case_image: bool,
    /// Fraction of the query masked automatically because it looked painted out (no mask
    /// was given); absent when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_mask: Option<f32>,
    pub millis: f64,
}

impl From<engine::SearchResult> for SearchResult {
    fn from(r: engine::SearchResult) -> Self {
        let hotels = r
            .hotels
            .into_iter()
            .map(|h| HotelHit {
                rank: h.rank,
                score: h.score,
                hotel: h.hotel.into(),
                evidence: h
                    .evidence
                    .into_iter()
                    .map(|e| Evidence {
                        image_id: e.image_id,
                        sha256: e.sha256,
                        room: e.room,
                        similarity: e.similarity,
                        matched_points: e.matched_points,
                        query_cells: e.query_cells.into_iter().map(|c| Cell { x: c.x, y: c.y, score: c.score }).collect(),
                    })
                    .collect(),
            })
            .collect();
        let plan = match r.plan {
            index::Plan::Exact => Plan::Exact,
            index::Plan::ExactFiltered => Plan::ExactFiltered,
            index::Plan::Graph => Plan::Graph,
        };
        SearchResult {
            hotels,
            reuse: r.reuse.into_iter().map(|u| Reuse { image_id: u.image_id, hotel_id: u.hotel_id, distance: u.distance, variant: u.variant.to_string() }).collect(),
            grid: r.grid,
            plan,
            query_sha256: r.query_sha256,
            saved_case_image: r.saved_case_image,
            auto_mask: r.auto_mask,
            millis: r.millis,
        }
    }
}
