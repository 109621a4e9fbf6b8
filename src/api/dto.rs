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
        Job {
            id: j.id,
            kind: j.kind,
            state,
            phase: j.phase,
            done: j.done,
            total: j.total,
            started: j.started,
            finished: j.finished,
            started_by: j.started_by,
            error: j.error,
        }
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
    /// Stored and indexed; `bank_matches` lists the hash-bank entries it matches (flagged
    /// in the audit too).
    Added { image_id: i64, pdq: String, pdq_quality: u8, bank_matches: Vec<BankMatch> },
    /// A near-copy of a photo of the same hotel already stored; not stored again.
    Duplicate { of_image_id: i64, distance: u32, pdq: String },
    /// The very same photo is stored for another hotel: nothing is added and an admin
    /// decides (listed under `GET /api/v1/audit?action=upload-conflict`).
    CrossHotelDuplicate { of_image_id: i64, of_hotel_id: i64, pdq: String },
}

impl From<engine::Ingested> for Ingested {
    fn from(i: engine::Ingested) -> Self {
        match i {
            engine::Ingested::Added { image_id, pdq, pdq_quality, bank_matches } => {
                Ingested::Added { image_id, pdq, pdq_quality, bank_matches: bank_matches.into_iter().map(BankMatch::from).collect() }
            }
            engine::Ingested::Duplicate { of_image_id, distance, pdq } => Ingested::Duplicate { of_image_id, distance, pdq },
            engine::Ingested::CrossHotelDuplicate { of_image_id, of_hotel_id, pdq } => {
                Ingested::CrossHotelDuplicate { of_image_id, of_hotel_id, pdq }
            }
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
    /// Which query photo it matched (0: `photo`, 1: `photo2`, …).
    pub query: usize,
    pub image_id: i64,
    pub sha256: String,
    pub room: Option<String>,
    /// Cosine similarity of the query's and the photo's vectors.
    pub similarity: f32,
    /// Keypoint matches consistent with one scene seen from two positions (RANSAC inliers),
    /// when the photo was among those geometrically verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched_points: Option<usize>,
    /// Some of those matches as `[x, y]` on the query then `[x, y]` on this photo, in
    /// fractions of each picture's width and height: the matched regions, on both sides.
    pub matched_pairs: Vec<[f32; 4]>,
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

/// How far a probability can be trusted, in words.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// At or above the calibration's `strong` probability: worth acting on, after checking the evidence.
    Strong,
    /// A lead to check.
    Possible,
    /// Below the cut-off: shown folded under "weak matches".
    Weak,
}

impl From<engine::Confidence> for Confidence {
    fn from(c: engine::Confidence) -> Self {
        match c {
            engine::Confidence::Strong => Confidence::Strong,
            engine::Confidence::Possible => Confidence::Possible,
            engine::Confidence::Weak => Confidence::Weak,
        }
    }
}

/// A candidate hotel.
#[derive(Debug, Serialize, ToSchema)]
pub struct HotelHit {
    pub rank: usize,
    /// The raw score (the best photo's similarity, plus the geometric verification bonus).
    pub score: f32,
    /// Calibrated probability that this is the right hotel (`calibration` says on what).
    pub probability: f32,
    pub confidence: Confidence,
    /// Its score minus the next hotel's; absent for the last one.
    pub gap: Option<f32>,
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
    /// Each query photo in the order sent: sha256, whether masked (or how much automatically),
    /// and the cell grid its evidence's `query_cells` refer to.
    pub queries: Vec<QueryPhotoInfo>,
    /// Whether the query was kept as a case image (under its sha256), as asked.
    pub saved_case_image: bool,
    /// Fraction of the query masked automatically because it looked painted out (no mask
    /// was given); absent when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_mask: Option<f32>,
    /// Every query photo is near-uniform (one colour, very dark): no candidate is strong.
    pub low_information: bool,
    /// How many hotels the filters leave (absent without filters): 0 means the filters, not
    /// the photo, left nothing to find.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hotels_allowed: Option<usize>,
    /// What the probabilities are calibrated on, and where the labels change.
    pub calibration: CalibrationInfo,
    /// Entries of the imported hash banks the query matches (also in the audit).
    pub bank_matches: Vec<BankMatch>,
    /// How many bank hashes matched in all (only the closest 20 are listed).
    pub bank_matches_total: usize,
    /// The saved case entry, when the search was saved into a case (`case_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case_entry: Option<i64>,
    pub millis: f64,
}

/// The matched points of a query photo and one evidence photo.
#[derive(Debug, Serialize, ToSchema)]
pub struct Points {
    pub image_id: i64,
    /// Matches consistent with one scene seen from two positions, none on a shared mark.
    pub matched_points: usize,
    /// Some of them as `[x, y]` on the query then `[x, y]` on the photo, in fractions.
    pub matched_pairs: Vec<[f32; 4]>,
    /// Query keypoints left out as a mark shared by many hotels, `[x, y]` in fractions.
    pub mark_points: Vec<[f32; 2]>,
}

/// Which regions of a query photo and an evidence photo drove their match.
#[derive(Debug, Serialize, ToSchema)]
pub struct Heat {
    pub image_id: i64,
    /// Columns and rows of the grid over each photo.
    pub grid: (u32, u32),
    /// Cosine similarity of the two photos whole.
    pub similarity: f32,
    /// Per query cell, row by row: how much the similarity drops without it (masked cells 0).
    pub query: Vec<f32>,
    /// Per evidence-photo cell, likewise.
    pub stored: Vec<f32>,
    /// Milliseconds it took (two photos embedded once whole and once per cell).
    pub millis: f64,
}

impl From<crate::engine::Heat> for Heat {
    fn from(h: crate::engine::Heat) -> Self {
        Heat { image_id: h.image_id, grid: h.grid, similarity: h.similarity, query: h.query, stored: h.stored, millis: h.millis }
    }
}

/// One photo of a search.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueryPhotoInfo {
    pub sha256: String,
    pub masked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_mask: Option<f32>,
    /// Feature-map size (columns, rows) of this photo.
    #[schema(value_type = Vec<usize>)]
    pub grid: (usize, usize),
    /// Shared marks masked before it was embedded (`[marks] mask_embedding`), `[x, y, width,
    /// height]` in its pixels.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<[u32; 4]>,
}

/// Where a search's probabilities come from.
#[derive(Debug, Serialize, ToSchema)]
pub struct CalibrationInfo {
    /// What it was fitted on.
    pub source: String,
    /// Labelled searches it was fitted on.
    pub samples: usize,
    /// At or above this probability a candidate is strong.
    pub strong: f32,
    /// Below this it is weak (the cut-off under which candidates fold).
    pub possible: f32,
}

/// A hash-bank entry that an upload or query matched.
#[derive(Debug, Serialize, ToSchema)]
pub struct BankMatch {
    pub bank: String,
    /// The label the hash came with.
    pub label: String,
    pub pdq: String,
    pub distance: u32,
}

impl From<engine::BankMatch> for BankMatch {
    fn from(m: engine::BankMatch) -> Self {
        let engine::BankMatch { bank, label, pdq, distance } = m;
        BankMatch { bank, label, pdq, distance }
    }
}

impl From<engine::SearchResult> for SearchResult {
    fn from(r: engine::SearchResult) -> Self {
        let hotels = r
            .hotels
            .into_iter()
            .map(|h| HotelHit {
                rank: h.rank,
                score: h.score,
                probability: h.probability,
                confidence: h.confidence.into(),
                gap: h.gap,
                hotel: h.hotel.into(),
                evidence: h
                    .evidence
                    .into_iter()
                    .map(|e| Evidence {
                        query: e.query,
                        image_id: e.image_id,
                        sha256: e.sha256,
                        room: e.room,
                        similarity: e.similarity,
                        matched_points: e.matched_points,
                        matched_pairs: e.matched_pairs,
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
            reuse: r
                .reuse
                .into_iter()
                .map(|u| Reuse { image_id: u.image_id, hotel_id: u.hotel_id, distance: u.distance, variant: u.variant })
                .collect(),
            grid: r.grid,
            plan,
            query_sha256: r.query_sha256,
            queries: r
                .queries
                .into_iter()
                .map(|q| QueryPhotoInfo { sha256: q.sha256, masked: q.masked, auto_mask: q.auto_mask, grid: q.grid, marks: q.marks })
                .collect(),
            saved_case_image: r.saved_case_image,
            auto_mask: r.auto_mask,
            low_information: r.low_information,
            hotels_allowed: r.hotels_allowed,
            calibration: CalibrationInfo {
                source: r.calibration.source,
                samples: r.calibration.samples,
                strong: r.calibration.strong,
                possible: r.calibration.possible,
            },
            bank_matches: r.bank_matches.into_iter().map(BankMatch::from).collect(),
            bank_matches_total: r.bank_matches_total,
            case_entry: None,
            millis: r.millis,
        }
    }
}

/// A case: an investigation that searches, notes and verdicts are saved into.
#[derive(Debug, Serialize, ToSchema)]
pub struct Case {
    pub id: i64,
    pub title: String,
    /// The key id that opened it: with admins, the only one that may read it.
    pub owner: String,
    /// Unix seconds.
    pub created: i64,
}

impl From<catalog::Case> for Case {
    fn from(c: catalog::Case) -> Self {
        let catalog::Case { id, title, owner, created } = c;
        Case { id, title, owner, created }
    }
}

/// One entry of a case's journal: a saved search, a note or a verdict.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseEntry {
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    /// The key id that wrote it.
    pub actor: String,
    /// "search", "note" or "verdict".
    pub kind: String,
    /// A search: `query_sha256`, `query_kept`, `mask`, `filters`, `model`, `index`,
    /// `calibration`, `hotels` (rank, hotel_id, name, score, probability, confidence, gap,
    /// evidence), `candidates`, `reuse`, `bank_matches`. A note: `text`. A verdict:
    /// `hotel_id`, `verdict`, `search_entry`.
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
}

impl From<engine::JournalEntry> for CaseEntry {
    fn from(e: engine::JournalEntry) -> Self {
        let (kind, body) = e.entry.to_row().unwrap_or_default();
        CaseEntry { id: e.id, at: e.at, actor: e.actor, kind, body }
    }
}

/// What an investigator concluded about a hotel.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Confirmed,
    RuledOut,
    /// Withdraws an earlier verdict (the journal keeps both).
    Open,
}

impl From<Verdict> for engine::Verdict {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Confirmed => engine::Verdict::Confirmed,
            Verdict::RuledOut => engine::Verdict::RuledOut,
            Verdict::Open => engine::Verdict::Open,
        }
    }
}

impl From<engine::Verdict> for Verdict {
    fn from(v: engine::Verdict) -> Self {
        match v {
            engine::Verdict::Confirmed => Verdict::Confirmed,
            engine::Verdict::RuledOut => Verdict::RuledOut,
            engine::Verdict::Open => Verdict::Open,
        }
    }
}

/// A hotel's current verdict in a case (the latest recorded).
#[derive(Debug, Serialize, ToSchema)]
pub struct HotelVerdict {
    pub hotel_id: i64,
    pub verdict: Verdict,
    pub by: String,
    pub at: i64,
    pub search_entry: Option<i64>,
}

/// A case with its journal, its current verdicts and the hotels it names.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseView {
    pub case: Case,
    pub entries: Vec<CaseEntry>,
    pub verdicts: Vec<HotelVerdict>,
    pub hotels: Vec<Hotel>,
}

impl From<engine::CaseView> for CaseView {
    fn from(v: engine::CaseView) -> Self {
        CaseView {
            case: v.case.into(),
            entries: v.entries.into_iter().map(CaseEntry::from).collect(),
            verdicts: v
                .verdicts
                .into_iter()
                .map(|x| HotelVerdict { hotel_id: x.hotel_id, verdict: x.verdict.into(), by: x.by, at: x.at, search_entry: x.search_entry })
                .collect(),
            hotels: v.hotels.into_values().map(Hotel::from).collect(),
        }
    }
}

/// A hash bank.
#[derive(Debug, Serialize, ToSchema)]
pub struct Bank {
    pub id: i64,
    pub name: String,
    pub created: i64,
    pub created_by: String,
    pub hashes: i64,
}

impl From<catalog::Bank> for Bank {
    fn from(b: catalog::Bank) -> Self {
        let catalog::Bank { id, name, created, created_by, hashes } = b;
        Bank { id, name, created, created_by, hashes }
    }
}

/// How a hash list import went.
#[derive(Debug, Serialize, ToSchema)]
pub struct BankImport {
    pub bank: Bank,
    /// PDQ hashes read.
    pub read: usize,
    /// Of those, new to the bank.
    pub added: usize,
    /// Lines of other signal types, left out.
    pub other_signal_types: usize,
    /// (line number, line) of lines without a valid hash (the first 20).
    #[schema(value_type = Vec<Object>)]
    pub rejected: Vec<(usize, String)>,
}

impl From<engine::BankImport> for BankImport {
    fn from(b: engine::BankImport) -> Self {
        BankImport { bank: b.bank.into(), read: b.read, added: b.added, other_signal_types: b.other_signal_types, rejected: b.rejected }
    }
}
