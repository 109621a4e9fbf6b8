//! Engine: photos in (decode → hash → embed → store → index), queries out (search → rank).
//! Knows nothing of HTTP: it talks to ports (the catalog, the blob stores, the embedder, the
//! vector index) and its use cases live one per file: `ingest`, `search`, `moderation`,
//! `maintenance`, `cases` and `banks`. Every use case writes its own audit entry, whoever calls it (the
//! API, the CLI or an import).

mod banks;
mod cases;
mod heat;
mod ingest;
mod journal;
mod learned;
mod lookup;
mod maintenance;
mod marks;
mod moderation;
mod search;

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};

use crate::catalog::{self, Catalog, CatalogError, Hotel, HotelFilter, Image, Source};
use crate::embed::pool::{Mask, PoolError};
use crate::embed::Embed;
use crate::embed::EmbedError;
use crate::hamming::HammingIndex;
use crate::index::{Found, IndexError, IndexOptions, Plan};
use crate::media::decode::{DecodeError, Limits};
use crate::pdq;
use crate::rank::{Aggregation, Fusion};
use crate::store::{self, BlobStore, StoreError, StoreOptions};
use crate::whiten::WhitenOptions;

pub use banks::{parse_hash_list, BankImport, BankMatch, HashFormat, MAX_BANK_MATCHES, MAX_LABEL};
pub use cases::{CaseReport, CaseSample, CaseView, HotelVerdict, Refit, Viewer, MIN_CASES, MIN_KEYS};
pub use heat::{Heat, HEAT_GRID};
pub use journal::{Candidate, CaseEntry, FurtherQuery, JournalEntry, MaskRecord, SavedEvidence, SavedHotel, SavedSearch, Verdict};
pub use learned::Learned;
pub use maintenance::{Followed, REINDEX};
pub use marks::{MarksLearned, Points};
pub use search::QueryPhoto;

/// Why an engine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A photo could not be encoded again (a clean copy, a thumbnail).
    #[error(transparent)]
    Encode(#[from] crate::media::clean::EncodeError),
    #[error(transparent)]
    Calibration(#[from] crate::calibrate::CalibrationError),
    /// A field of the request is invalid (the engine's own validation).
    #[error("invalid {field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// A fault of this program or its host (a thread that could not start, say).
    #[error("{0}")]
    Internal(String),
    /// The data directory could not be prepared.
    #[error("data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
}

/// What kind of failure an error is, for whoever reports it (HTTP maps each to a status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or a field is invalid.
    Invalid,
    /// What it names does not exist.
    NotFound,
    /// It clashes with the current state (a running job, an existing hotel).
    Conflict,
    /// The photo is larger than the limits.
    TooLarge,
    /// The photo's format is not supported.
    Unsupported,
    /// The photo is damaged or empty.
    Unprocessable,
    /// A backing service (database, object store) failed or is unreachable.
    Unavailable,
    /// A fault of this program or its installation.
    Internal,
}

impl EngineError {
    /// Its kind and a stable code clients can act on.
    pub fn kind(&self) -> (ErrorKind, &'static str) {
        use ErrorKind as K;
        let decode = |d: &DecodeError| match d {
            DecodeError::TooLarge { .. } | DecodeError::TooManyPixels { .. } => (K::TooLarge, "image_too_large"),
            DecodeError::UnsupportedFormat => (K::Unsupported, "unsupported_image"),
            DecodeError::Unavailable(_) => (K::Unsupported, "decoder_unavailable"),
            DecodeError::Empty | DecodeError::Corrupt(_) => (K::Unprocessable, "bad_image"),
        };
        match self {
            EngineError::Decode(d) => decode(d),
            EngineError::Embed(e) => match e {
                EmbedError::Decode(d) => decode(d),
                EmbedError::Pool(PoolError::UnknownPooling(_)) => (K::Invalid, "invalid_field"),
                EmbedError::Pool(PoolError::MaskCoversEverything | PoolError::MaskShape { .. } | PoolError::BadRect(_)) => {
                    (K::Invalid, "bad_mask")
                }
                EmbedError::RuntimeMissing(_)
                | EmbedError::RuntimeLoad { .. }
                | EmbedError::Runtime(_)
                | EmbedError::BadOutput(_)
                | EmbedError::Unsupported(_)
                | EmbedError::Model(_) => (K::Internal, "internal"),
            },
            EngineError::Catalog(c) => match c {
                CatalogError::NoHotel(_) => (K::NotFound, "no_such_hotel"),
                CatalogError::NoImage(_) => (K::NotFound, "no_such_photo"),
                CatalogError::NoJob(_) => (K::NotFound, "no_such_job"),
                CatalogError::NoCase(_) => (K::NotFound, "no_such_case"),
                CatalogError::BankExists(_) => (K::Conflict, "bank_exists"),
                CatalogError::Invalid { .. } => (K::Invalid, "invalid_field"),
                CatalogError::JobRunning { .. } => (K::Conflict, "job_running"),
                CatalogError::HotelExists { .. } => (K::Conflict, "hotel_exists"),
                CatalogError::Sql(_) | CatalogError::Postgres(_) | CatalogError::Pool(_) => (K::Unavailable, "catalog_unavailable"),
                CatalogError::TooNew { .. } => (K::Internal, "internal"),
            },
            EngineError::Store(s) => match s {
                StoreError::Missing(_) => (K::NotFound, "not_found"),
                StoreError::BadId(_) => (K::Invalid, "invalid_field"),
                StoreError::Remote(_) | StoreError::Io { .. } => (K::Unavailable, "store_unavailable"),
                StoreError::Corrupt(_) => (K::Internal, "internal"),
            },
            EngineError::Index(IndexError::Io { .. } | IndexError::BadDump(_) | IndexError::Dimension { .. }) => (K::Internal, "internal"),
            EngineError::Invalid { .. } => (K::Invalid, "invalid_field"),
            EngineError::Encode(_) => (K::Internal, "internal"),
            EngineError::DataDir { .. } | EngineError::Internal(_) => (K::Internal, "internal"),
            EngineError::Calibration(c) => match c {
                crate::calibrate::CalibrationError::TooFew(_) | crate::calibrate::CalibrationError::TooFewSources { .. } => {
                    (K::Invalid, "too_few_samples")
                }
                crate::calibrate::CalibrationError::OutOfBand { .. } => (K::Invalid, "calibration_out_of_band"),
                crate::calibrate::CalibrationError::Worse { .. } => (K::Invalid, "refit_worse"),
                crate::calibrate::CalibrationError::Io { .. } | crate::calibrate::CalibrationError::Format { .. } => {
                    (K::Internal, "internal")
                }
            },
        }
    }
}

/// Where the engine keeps things and how it searches: assembled by the caller (the binary
/// builds it from `Config`).
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// This process's own state: index dumps (and, by default, the catalog and photos).
    pub data_dir: PathBuf,
    /// The catalog: a `postgres://` URL or a SQLite path (empty: `catalog.sqlite` in `data_dir`).
    pub catalog: String,
    /// Connections to a PostgreSQL catalog this process keeps at most.
    pub catalog_pool: u32,
    /// Where photos and case images go: a directory, `memory:` or `s3://bucket/prefix`
    /// (empty: `data_dir`).
    pub photos: String,
    /// Object store settings, for `s3://` photos.
    pub store: StoreOptions,
    /// Limits on input photos.
    pub limits: Limits,
    /// Vector index settings.
    pub index: IndexOptions,
    /// Search settings.
    pub search: SearchOptions,
    /// PDQ distance at or below which an upload of the same hotel is a duplicate (0 = off).
    pub duplicate_distance: u32,
    /// The whitening learned from the catalog's labels.
    pub whiten: WhitenOptions,
    /// The shared marks learned from the catalog's photos.
    pub marks: crate::marks::MarkOptions,
}

impl EngineSettings {
    /// The catalog location in effect.
    pub fn catalog_location(&self) -> String {
        if self.catalog.is_empty() {
            self.data_dir.join("catalog.sqlite").display().to_string()
        } else {
            self.catalog.clone()
        }
    }
    /// What makes a hotel score, in short (a calibration holds for one scoring only): the
    /// search's, and whether the vectors are whitened.
    pub fn scoring(&self) -> String {
        let search = self.search.scoring();
        if self.whiten.enabled {
            format!("{search}+whiten")
        } else {
            search
        }
    }

    /// The photo store location in effect.
    pub fn photos_location(&self) -> String {
        if self.photos.is_empty() {
            self.data_dir.display().to_string()
        } else {
            self.photos.clone()
        }
    }
}

/// Search settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SearchOptions {
    /// Images retrieved before aggregation into hotels.
    pub top_images: usize,
    /// Hotels returned.
    pub top_hotels: usize,
    /// Evidence photos returned per hotel.
    pub evidence: usize,
    /// How image hits become hotel scores.
    pub aggregation: Aggregation,
    /// How the hotel scores of several query photos become one.
    pub fusion: Fusion,
    /// α-query expansion: re-query with the top `expansion` images added (0 = off).
    pub expansion: usize,
    /// α of the expansion weights (similarity^α).
    pub alpha: f32,
    /// Look for stored photos the query is a copy of (PDQ in 8 rotations and mirrors). It
    /// costs a second decode and a hash per query: about 14 % of the search throughput
    /// under load (README, load figures).
    pub reuse: bool,
    /// When a query comes without a mask, look for a region already painted out and mask it.
    pub auto_mask: bool,
    /// Geometric verification of this many top photos (0 = off): keypoints of the query and
    /// of each photo matched, and a fundamental matrix fitted by RANSAC (`verify`).
    pub verify: usize,
    /// A verified photo's score is its similarity + `verify_weight` × min(inliers, `verify_cap`) / `verify_cap`.
    pub verify_weight: f32,
    pub verify_cap: usize,
}

impl SearchOptions {
    /// What makes a hotel score, in short: a calibration holds for one scoring only.
    pub fn scoring(&self) -> String {
        let agg = match self.aggregation {
            Aggregation::Best => "best".to_string(),
            Aggregation::Vote => "vote".to_string(),
            Aggregation::SumTop { n } => format!("sum{n}"),
        };
        if self.verify == 0 {
            agg
        } else {
            format!("{agg}+verify{}", self.verify)
        }
    }
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            top_images: 100,
            top_hotels: 10,
            evidence: 3,
            aggregation: Aggregation::Best,
            fusion: Fusion::Mean,
            expansion: 0,
            alpha: 3.0,
            reuse: true,
            auto_mask: true,
            verify: 0,
            verify_weight: 0.1,
            verify_cap: 30,
        }
    }
}

/// Photos a search takes at most (an ad's photos of one room).
pub const MAX_QUERY_PHOTOS: usize = 8;

/// One photo of a query, and what to ignore in it.
#[derive(Debug, Clone, Copy)]
pub struct QueryImage<'a> {
    pub bytes: &'a [u8],
    pub mask: Option<&'a Mask>,
}

/// A query: a photo (and perhaps more of the same place), what to ignore in each, and which
/// hotels may answer.
#[derive(Debug, Clone, Default)]
pub struct Query<'a> {
    pub bytes: &'a [u8],
    pub mask: Option<&'a Mask>,
    /// Further photos of the same place (`MAX_QUERY_PHOTOS` in all), each with its own mask:
    /// hotels are ranked on the evidence of all of them.
    pub more: Vec<QueryImage<'a>>,
    pub filter: HotelFilter,
    /// Hotels to return (0 = the configured default).
    pub top: usize,
    /// Keep the query photo as a case image. Off by default: a query may show a victim, and
    /// is written nowhere unless the investigator asks.
    pub save_case: bool,
    /// Don't look for an already-erased region to mask (the investigator turned it off).
    pub skip_auto_mask: bool,
    /// The graph search's candidate list (0 = the configured `index.ef_search`): larger is
    /// slower and finds more of the true nearest photos.
    pub ef: usize,
}

impl<'a> Query<'a> {
    /// Every photo of the query, the first one first.
    pub fn photos(&self) -> Vec<QueryImage<'a>> {
        std::iter::once(QueryImage { bytes: self.bytes, mask: self.mask }).chain(self.more.iter().copied()).collect()
    }
}

/// What a search result says of one of its query photos.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueryInfo {
    /// Its sha256 (what the audit keeps instead of the photo).
    pub sha256: String,
    /// Whether a mask came with it.
    pub masked: bool,
    /// Fraction masked automatically (no mask given, a painted region found).
    pub auto_mask: Option<f32>,
    /// Its feature-map size (columns, rows), that evidence `query_cells` refer to.
    pub grid: (usize, usize),
    /// Shared marks masked before it was embedded (`marks.mask_embedding`), `[x, y, width,
    /// height]` in its full-resolution pixels.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<[u32; 4]>,
}

pub use crate::calibrate::Confidence;

/// A feature-map cell of the query that resembles a matched photo.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Cell {
    pub x: usize,
    pub y: usize,
    pub score: f32,
}

/// One matched photo shown as evidence.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    /// Which query photo found it (0: the first).
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
    /// Some of those matches, `[x, y]` on the query then on this photo, in fractions of each
    /// picture's width and height: the matched regions, drawn on both.
    pub matched_pairs: Vec<[f32; 4]>,
    /// The query's cells most similar to this photo, best first (grid in `SearchResult::grid`).
    pub query_cells: Vec<Cell>,
}

/// A stored photo that the query is a copy of: the same picture, perhaps resized,
/// recompressed, rotated or mirrored (PDQ within its match distance).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reuse {
    pub image_id: i64,
    pub hotel_id: i64,
    pub distance: u32,
    /// Which rotation or mirror of the query matched ("original", "flip_x", …).
    pub variant: String,
}

/// A candidate hotel.
#[derive(Debug, Clone, Serialize)]
pub struct HotelHit {
    pub rank: usize,
    pub score: f32,
    /// Calibrated probability that this is the right hotel.
    pub probability: f32,
    /// The probability in words: strong, possible or weak (folded under "weak matches").
    pub confidence: Confidence,
    /// Its score minus the next hotel's (`None` for the last one ranked).
    pub gap: Option<f32>,
    pub hotel: Hotel,
    pub evidence: Vec<Evidence>,
}

/// The answer to a query.
#[derive(Debug, Clone, Serialize)]
pub struct SearchResult {
    pub hotels: Vec<HotelHit>,
    /// Stored photos the query is a copy of (exact reuse of a crowd photo), closest first.
    pub reuse: Vec<Reuse>,
    /// Every image hit, best first (image id, hotel id, similarity), for rooms and evaluation.
    #[serde(skip)]
    pub images: Vec<Found>,
    /// Query feature-map size (columns, rows) that `query_cells` refer to.
    pub grid: (usize, usize),
    /// How the index answered.
    pub plan: Plan,
    /// sha256 of the (first) query photo's bytes (what the audit keeps instead of the photo).
    pub query_sha256: String,
    /// Each query photo, in the order sent.
    pub queries: Vec<QueryInfo>,
    /// Whether the query was kept as a case image (under its sha256), as asked.
    pub saved_case_image: bool,
    /// Fraction of the query masked automatically because it looked painted out (no mask
    /// was given); absent when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_mask: Option<f32>,
    /// Whether every query photo is near-uniform (PDQ quality under
    /// `pdq::MIN_INFORMATIVE_QUALITY`): no candidate is then labelled strong.
    pub low_information: bool,
    /// How many hotels the filters leave (absent without filters): 0 says the filters, not
    /// the photo, left nothing to find.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hotels_allowed: Option<usize>,
    /// The calibration the probabilities come from.
    pub calibration: CalibrationInfo,
    /// Hashes of the imported banks (hash lists) that the query matches.
    pub bank_matches: Vec<BankMatch>,
    /// How many bank hashes matched (a photo's matches each; only the closest are listed).
    pub bank_matches_total: usize,
    /// (hotel id, score) of the candidates the probabilities are spread over, best first:
    /// what a saved search keeps for the next calibration.
    #[serde(skip)]
    pub candidates: Vec<(i64, f32)>,
    /// Seconds each stage took (retrieve, verify, rank, explain, record), for metrics.
    #[serde(skip)]
    pub stages: Vec<(&'static str, f64)>,
    pub millis: f64,
}

/// Where a search's probabilities come from and where its labels change.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CalibrationInfo {
    pub source: String,
    /// Labelled searches it was fitted on.
    pub samples: usize,
    /// Probabilities at or above this are `strong`.
    pub strong: f32,
    /// Below this a candidate is `weak` and folded (the cut-off).
    pub possible: f32,
}

/// Outcome of adding one photo.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Ingested {
    /// Stored and indexed; `bank_matches` lists the hash-bank entries it matches (flagged).
    Added { image_id: i64, pdq: String, pdq_quality: u8, bank_matches: Vec<BankMatch> },
    /// A near-copy of a photo of the same hotel already stored; not stored again.
    Duplicate { of_image_id: i64, distance: u32, pdq: String },
    /// The very same photo is stored for another hotel: one of the two is wrong, so nothing
    /// is added and an admin decides (the upload is audited as `upload-conflict`).
    CrossHotelDuplicate { of_image_id: i64, of_hotel_id: i64, pdq: String },
}

/// A step of a rebuild, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Embedding photos that have no vector for the current model.
    Embedding,
    /// Building the index from the catalog.
    Indexing,
}

impl Step {
    /// Its name in job records.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Embedding => "embedding",
            Step::Indexing => "indexing",
        }
    }
}

/// Where a photo to add belongs and who sent it.
#[derive(Debug, Clone)]
pub struct NewPhoto {
    pub hotel_id: i64,
    pub room: Option<String>,
    pub source: Source,
    pub uploader_key_id: Option<String>,
}

/// A photo made ready to add (the parallel part of ingestion).
pub struct Prepared {
    clean: Vec<u8>,
    width: u32,
    height: u32,
    pdq: pdq::Pdq,
    vector: Vec<f32>,
}

/// The engine: a catalog, blob stores, an embedder and the indexes derived from the catalog.
pub struct Engine {
    settings: EngineSettings,
    catalog: Box<dyn Catalog>,
    store: Box<dyn BlobStore>,
    /// Query photos investigators asked to keep, byte for byte (evidence: the audit holds their sha256).
    cases: Box<dyn BlobStore>,
    embedder: Box<dyn Embed>,
    model_id: i64,
    /// The vector index and its projection, swapped whole on a rebuild; searches hold their
    /// own `Arc`, so a swap waits for none.
    index: RwLock<Arc<learned::Searchable>>,
    /// The newest whitening version looked at (taken up or, not parsing, passed over).
    whitening_seen: Mutex<i64>,
    hashes: RwLock<HammingIndex>,
    /// The imported hash banks, matched against uploads and queries.
    banks: RwLock<banks::BankIndex>,
    /// Held while bank hashes are taken up from the catalog.
    banks_taking: Mutex<()>,
    /// The last finished re-index this process's index reflects; held while catching up, so
    /// that one thread at a time applies the feed.
    generation: Mutex<i64>,
    /// Where the background index audit goes on from.
    audit_from: Mutex<usize>,
    /// Turns hotel scores into probabilities, with its catalog version (0: not from the
    /// catalog); replaced whole when a newer version appears.
    calibration: RwLock<learned::InForce>,
    /// The shared marks left out of matched points, with their catalog version.
    marks: RwLock<marks::MarksInForce>,
}

impl Engine {
    /// Opens the catalog and the stores that `settings` name, with `embedder`, and the index
    /// (loaded from its dump and caught up from the catalog's change feed, or rebuilt from it).
    pub fn open(settings: EngineSettings, embedder: Box<dyn Embed>) -> Result<Self, EngineError> {
        let dir = &settings.data_dir;
        std::fs::create_dir_all(dir).map_err(|source| EngineError::DataDir { path: dir.clone(), source })?;
        let catalog = catalog::open_pooled(&settings.catalog_location(), settings.catalog_pool)?;
        let photos = settings.photos_location();
        let store = store::open(&photos, "photos", &settings.store)?;
        let cases = store::open(&photos, "cases", &settings.store)?;
        Self::from_parts(settings, catalog, store, cases, embedder)
    }

    /// The engine over adapters the caller made: any catalog, photo store, case store and
    /// embedder (tests put in-memory ones together; `settings` then only names `data_dir`
    /// for index dumps, and the limits and search settings).
    pub fn from_parts(
        settings: EngineSettings,
        catalog: Box<dyn Catalog>,
        store: Box<dyn BlobStore>,
        cases: Box<dyn BlobStore>,
        embedder: Box<dyn Embed>,
    ) -> Result<Self, EngineError> {
        let model_id = catalog.model_id(embedder.model(), &embedder.pooling(), embedder.dim(), &embedder.settings())?;
        let generation = catalog.last_done(maintenance::REINDEX)?;
        let projection = learned::stored_whitening(catalog.as_ref(), model_id)?;
        let whitening_seen = Mutex::new(projection.version);
        let index = learned::Searchable { vectors: crate::index::new_index(embedder.dim(), settings.index.clone()), projection };
        let in_force = learned::initial_calibration(catalog.as_ref(), &settings.data_dir)?;
        let calibration = in_force.calibration();
        let scoring = settings.scoring();
        if calibration.model != embedder.model() || calibration.scoring != scoring {
            tracing::warn!(
                "calibration {:?} was fitted for {} / {}, not {} / {scoring}: run `hotelmatch calibrate` for trustworthy probabilities",
                calibration.source,
                calibration.model,
                calibration.scoring,
                embedder.model()
            );
        }
        let engine = Engine {
            calibration: RwLock::new(in_force),
            marks: RwLock::new(marks::stored_marks(catalog.as_ref())?.0),
            catalog,
            store,
            cases,
            model_id,
            index: RwLock::new(Arc::new(index)),
            whitening_seen,
            hashes: RwLock::new(HammingIndex::new()),
            banks: RwLock::new(Default::default()),
            banks_taking: Mutex::new(()),
            generation: Mutex::new(generation),
            audit_from: Mutex::new(0),
            embedder,
            settings,
        };
        engine.load_index()?;
        engine.follow_banks()?;
        let missing = engine.catalog.images_without_embedding(model_id)?.len();
        if missing > 0 {
            tracing::warn!("{missing} photos have no embedding for model {} yet: run `hotelmatch reindex`", engine.embedder.model());
        }
        Ok(engine)
    }

    // parking_lot's locks do not poison: a panic elsewhere does not fail every later request,
    // and the catalog stays the source of truth (`reindex` restores the indexes from it).
    fn index(&self) -> Arc<learned::Searchable> {
        self.index.read().clone()
    }

    fn swap_index(&self, index: learned::Searchable) {
        *self.index.write() = Arc::new(index);
    }

    fn hashes(&self) -> RwLockReadGuard<'_, HammingIndex> {
        self.hashes.read()
    }

    fn hashes_mut(&self) -> RwLockWriteGuard<'_, HammingIndex> {
        self.hashes.write()
    }

    /// The embedder in use.
    pub fn embedder(&self) -> &dyn Embed {
        self.embedder.as_ref()
    }

    /// The photo store.
    pub fn store(&self) -> &dyn BlobStore {
        self.store.as_ref()
    }

    /// One image's catalog row.
    pub fn image(&self, id: i64) -> Result<Image, EngineError> {
        Ok(self.catalog.image(id)?)
    }

    /// Number of active images indexed.
    pub fn indexed(&self) -> usize {
        self.index().vectors.len()
    }

    /// The index's watermark: the last change of the catalog's feed it reflects.
    pub fn watermark(&self) -> i64 {
        self.index().vectors.watermark()
    }

    /// The limits on input photos.
    pub fn limits(&self) -> &Limits {
        &self.settings.limits
    }

    /// The settings it was opened with.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }
}
