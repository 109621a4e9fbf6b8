//! Catalog: hotels, images, embeddings, the change log and the audit trail, in SQLite.
//!
//! The catalog is the source of truth; the vector and hash indexes are derived from it.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::pdq::PdqHash;

/// Schema migrations, in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_catalog.sql"),
    include_str!("../migrations/0002_api_keys.sql"),
    include_str!("../migrations/0003_jobs.sql"),
];

/// Why a catalog operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// SQLite failed.
    #[error("catalog: {0}")]
    Sql(#[from] rusqlite::Error),
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
    /// A job of this kind is already running.
    #[error("a {kind} job is already running (job {id})")]
    JobRunning { kind: String, id: i64 },
    /// A hotel with this external id exists already.
    #[error("hotel {id} has the external id {external_id:?} already: change it with PATCH /api/v1/hotels/{id}")]
    HotelExists { external_id: String, id: i64 },
}

/// A hotel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Quarantined,
    Deleted,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Quarantined => "quarantined",
            Status::Deleted => "deleted",
        }
    }
    /// A stored status; anything unknown reads as deleted, so it never reaches results.
    fn parse(s: &str) -> Status {
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Uploaded by a member of the public.
    Crowd,
    /// Bulk-imported by an operator.
    Import,
}

/// An image row.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
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
    #[schema(value_type = String)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    Done,
    Failed,
    /// Its process ended before the job did (a crash or a kill); run it again.
    Interrupted,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Interrupted => "interrupted",
        }
    }
    fn parse(s: &str) -> JobState {
        match s {
            "running" => JobState::Running,
            "done" => JobState::Done,
            "failed" => JobState::Failed,
            _ => JobState::Interrupted,
        }
    }
}

/// A batch job's record (re-embedding and re-indexing).
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct HotelFilter {
    /// (latitude, longitude, radius in km).
    #[schema(value_type = Option<Vec<f64>>)]
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

fn vector_to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn blob_to_vector(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// The catalog database.
pub struct Catalog {
    conn: Connection,
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
fn check_hotel(h: &Hotel) -> Result<(), CatalogError> {
    if h.name.trim().is_empty() {
        return Err(CatalogError::Invalid { field: "name", message: "a hotel needs a name".into() });
    }
    check_text("name", &h.name, MAX_HOTEL_TEXT)?;
    for (field, value) in [("external_id", &h.external_id), ("chain", &h.chain), ("address", &h.address), ("city", &h.city), ("country", &h.country)] {
        if let Some(v) = value {
            check_text(field, v, MAX_HOTEL_TEXT)?;
        }
    }
    if h.latitude.is_some_and(|v| !(-90.0..=90.0).contains(&v)) || h.longitude.is_some_and(|v| !(-180.0..=180.0).contains(&v)) {
        return Err(CatalogError::Invalid { field: "latitude/longitude", message: "out of range".into() });
    }
    Ok(())
}

const IMAGE_COLUMNS: &str = "id, sha256, hotel_id, room, source, uploader_key_id, created, width, height, pdq, pdq_quality, status";

fn image_from_row(r: &rusqlite::Row) -> rusqlite::Result<Image> {
    let pdq: String = r.get(9)?;
    Ok(Image {
        id: r.get(0)?,
        sha256: r.get(1)?,
        hotel_id: r.get(2)?,
        room: r.get(3)?,
        source: if r.get::<_, String>(4)? == "crowd" { Source::Crowd } else { Source::Import },
        uploader_key_id: r.get(5)?,
        created: r.get(6)?,
        width: r.get(7)?,
        height: r.get(8)?,
        pdq: pdq.parse().unwrap_or_default(),
        pdq_quality: r.get(10)?,
        status: Status::parse(&r.get::<_, String>(11)?),
    })
}

fn hotel_from_row(r: &rusqlite::Row) -> rusqlite::Result<Hotel> {
    Ok(Hotel {
        id: r.get(0)?,
        external_id: r.get(1)?,
        name: r.get(2)?,
        chain: r.get(3)?,
        address: r.get(4)?,
        city: r.get(5)?,
        country: r.get(6)?,
        latitude: r.get(7)?,
        longitude: r.get(8)?,
    })
}

const JOB_COLUMNS: &str = "id, kind, state, phase, done, total, started, finished, started_by, error";

fn job_from_row(r: &rusqlite::Row) -> rusqlite::Result<Job> {
    Ok(Job {
        id: r.get(0)?,
        kind: r.get(1)?,
        state: JobState::parse(&r.get::<_, String>(2)?),
        phase: r.get(3)?,
        done: r.get(4)?,
        total: r.get(5)?,
        started: r.get(6)?,
        finished: r.get(7)?,
        started_by: r.get(8)?,
        error: r.get(9)?,
    })
}

const HOTEL_COLUMNS: &str = "id, external_id, name, chain, address, city, country, latitude, longitude";

impl Catalog {
    /// Opens (creating and migrating) the catalog at `path`.
    pub fn open(path: &Path) -> Result<Self, CatalogError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let mut cat = Catalog { conn };
        cat.migrate()?;
        Ok(cat)
    }

    fn migrate(&mut self) -> Result<(), CatalogError> {
        // IMMEDIATE: two processes opening a new catalog at once must not both migrate it.
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(CatalogError::TooNew { found: version, known });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Adds a hotel, or updates the one with the same `external_id`; returns its id.
    pub fn upsert_hotel(&self, h: &Hotel) -> Result<i64, CatalogError> {
        check_hotel(h)?;
        let existing: Option<i64> = match &h.external_id {
            Some(ext) => self.conn.query_row("SELECT id FROM hotels WHERE external_id = ?1", [ext], |r| r.get(0)).optional()?,
            None if h.id > 0 => Some(h.id),
            None => None,
        };
        match existing {
            Some(id) => {
                let n = self.conn.execute(
                    "UPDATE hotels SET name=?2, chain=?3, address=?4, city=?5, country=?6, latitude=?7, longitude=?8 WHERE id=?1",
                    params![id, h.name, h.chain, h.address, h.city, h.country, h.latitude, h.longitude],
                )?;
                if n == 0 {
                    return Err(CatalogError::NoHotel(id));
                }
                Ok(id)
            }
            None => {
                self.conn.execute(
                    "INSERT INTO hotels (external_id, name, chain, address, city, country, latitude, longitude, created) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
                    params![h.external_id, h.name, h.chain, h.address, h.city, h.country, h.latitude, h.longitude, now()],
                )?;
                Ok(self.conn.last_insert_rowid())
            }
        }
    }

    /// One hotel.
    pub fn hotel(&self, id: i64) -> Result<Hotel, CatalogError> {
        self.conn
            .query_row(&format!("SELECT {HOTEL_COLUMNS} FROM hotels WHERE id = ?1"), [id], hotel_from_row)
            .optional()?
            .ok_or(CatalogError::NoHotel(id))
    }

    /// The hotel with this external id.
    pub fn hotel_by_external_id(&self, ext: &str) -> Result<Option<Hotel>, CatalogError> {
        Ok(self.conn.query_row(&format!("SELECT {HOTEL_COLUMNS} FROM hotels WHERE external_id = ?1"), [ext], hotel_from_row).optional()?)
    }

    /// Hotels whose name or city contains `text` (case-insensitive), at most `limit`.
    pub fn find_hotels(&self, text: &str, limit: usize) -> Result<Vec<Hotel>, CatalogError> {
        // The user's text is matched literally: LIKE's wildcards and the escape are escaped.
        let literal: String = text.chars().flat_map(|c| if matches!(c, '%' | '_' | '\\') { vec!['\\', c] } else { vec![c] }).collect();
        let pattern = format!("%{literal}%");
        let mut st = self.conn.prepare(&format!("SELECT {HOTEL_COLUMNS} FROM hotels WHERE name LIKE ?1 ESCAPE '\\' OR city LIKE ?1 ESCAPE '\\' ORDER BY name LIMIT ?2"))?;
        let rows = st.query_map(params![pattern, i64::try_from(limit).unwrap_or(i64::MAX)], hotel_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Ids of the hotels that pass `filter`.
    pub fn hotels_matching(&self, f: &HotelFilter) -> Result<Vec<i64>, CatalogError> {
        let mut st = self.conn.prepare(&format!("SELECT {HOTEL_COLUMNS} FROM hotels"))?;
        let hotels = st.query_map([], hotel_from_row)?;
        let eq = |a: &Option<String>, b: &Option<String>| b.as_ref().is_none_or(|b| a.as_ref().is_some_and(|a| a.eq_ignore_ascii_case(b)));
        let mut out = Vec::new();
        for h in hotels {
            let h = h?;
            let near_ok = f.near.is_none_or(|(lat, lon, km)| match (h.latitude, h.longitude) {
                (Some(a), Some(b)) => haversine_km(lat, lon, a, b) <= km,
                _ => false,
            });
            let ids_ok = f.hotel_ids.as_ref().is_none_or(|ids| ids.contains(&h.id));
            if near_ok && ids_ok && eq(&h.country, &f.country) && eq(&h.city, &f.city) && eq(&h.chain, &f.chain) {
                out.push(h.id);
            }
        }
        Ok(out)
    }

    /// Registers a model configuration (name, pooling, settings); returns its id.
    pub fn model_id(&self, name: &str, pooling: &str, dim: usize, settings: &str) -> Result<i64, CatalogError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO models (name, pooling, dim, settings, created) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![name, pooling, dim as i64, settings, now()],
        )?;
        Ok(self.conn.query_row("SELECT id FROM models WHERE name=?1 AND pooling=?2 AND settings=?3", params![name, pooling, settings], |r| r.get(0))?)
    }

    /// Adds an image with its embedding, atomically; returns its id.
    pub fn add_image(&mut self, img: &NewImage, model_id: i64, vector: &[f32]) -> Result<i64, CatalogError> {
        if let Some(room) = &img.room {
            check_text("room", room, MAX_ROOM)?;
        }
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO images (sha256, hotel_id, room, source, uploader_key_id, created, width, height, pdq, pdq_quality) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
            params![
                img.sha256,
                img.hotel_id,
                img.room,
                if img.source == Source::Crowd { "crowd" } else { "import" },
                img.uploader_key_id,
                now(),
                img.width,
                img.height,
                img.pdq.to_string(),
                img.pdq_quality
            ],
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => CatalogError::NoHotel(img.hotel_id),
            e => CatalogError::Sql(e),
        })?;
        let id = tx.last_insert_rowid();
        tx.execute("INSERT INTO embeddings (image_id, model_id, vector) VALUES (?1, ?2, ?3)", params![id, model_id, vector_to_blob(vector)])?;
        tx.execute("INSERT INTO changes (image_id, kind) VALUES (?1, 'add')", [id])?;
        tx.commit()?;
        Ok(id)
    }

    /// Stores (or replaces) the embedding of an image for a model.
    pub fn put_embedding(&self, image_id: i64, model_id: i64, vector: &[f32]) -> Result<(), CatalogError> {
        self.conn.execute("INSERT OR REPLACE INTO embeddings (image_id, model_id, vector) VALUES (?1, ?2, ?3)", params![image_id, model_id, vector_to_blob(vector)])?;
        Ok(())
    }

    /// One image.
    pub fn image(&self, id: i64) -> Result<Image, CatalogError> {
        self.conn
            .query_row(&format!("SELECT {IMAGE_COLUMNS} FROM images WHERE id = ?1"), [id], image_from_row)
            .optional()?
            .ok_or(CatalogError::NoImage(id))
    }

    /// Active images with these stored bytes.
    pub fn images_with_sha(&self, sha256: &str) -> Result<Vec<Image>, CatalogError> {
        let mut st = self.conn.prepare(&format!("SELECT {IMAGE_COLUMNS} FROM images WHERE sha256 = ?1 AND status = 'active'"))?;
        let rows = st.query_map([sha256], image_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Active images of a hotel, newest first (at most 200).
    pub fn images_of_hotel(&self, hotel_id: i64) -> Result<Vec<Image>, CatalogError> {
        let mut st = self.conn.prepare(&format!("SELECT {IMAGE_COLUMNS} FROM images WHERE hotel_id = ?1 AND status = 'active' ORDER BY id DESC LIMIT 200"))?;
        let rows = st.query_map([hotel_id], image_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Content addresses held only by deleted images (no active or quarantined image shares them).
    pub fn deleted_only_sha256(&self) -> Result<Vec<String>, CatalogError> {
        let mut st = self.conn.prepare(
            "SELECT DISTINCT d.sha256 FROM images d WHERE d.status = 'deleted' \
             AND NOT EXISTS (SELECT 1 FROM images a WHERE a.sha256 = d.sha256 AND a.status != 'deleted')",
        )?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Sets an image's status (and logs the change).
    pub fn set_status(&mut self, id: i64, status: Status) -> Result<(), CatalogError> {
        let tx = self.conn.transaction()?;
        let n = tx.execute("UPDATE images SET status = ?2 WHERE id = ?1", params![id, status.as_str()])?;
        if n == 0 {
            return Err(CatalogError::NoImage(id));
        }
        tx.execute("INSERT INTO changes (image_id, kind) VALUES (?1, 'status')", [id])?;
        tx.commit()?;
        Ok(())
    }

    /// Changes after `since`, in order, with each image's current state and its vector for `model_id`.
    pub fn changes_since(&self, since: i64, model_id: i64) -> Result<Vec<Change>, CatalogError> {
        let mut st = self.conn.prepare(
            "SELECT c.seq, i.id, i.hotel_id, i.status, i.pdq, i.pdq_quality, e.vector
             FROM changes c JOIN images i ON i.id = c.image_id
             LEFT JOIN embeddings e ON e.image_id = i.id AND e.model_id = ?2
             WHERE c.seq > ?1 ORDER BY c.seq",
        )?;
        let rows = st.query_map(params![since, model_id], |r| {
            let pdq: String = r.get(4)?;
            Ok(Change {
                seq: r.get(0)?,
                image_id: r.get(1)?,
                hotel_id: r.get(2)?,
                status: Status::parse(&r.get::<_, String>(3)?),
                pdq: pdq.parse().unwrap_or_default(),
                pdq_quality: r.get(5)?,
                vector: r.get::<_, Option<Vec<u8>>>(6)?.map(|b| blob_to_vector(&b)),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// (image id, PDQ) of every active image.
    pub fn active_pdq(&self) -> Result<Vec<(i64, PdqHash)>, CatalogError> {
        let mut st = self.conn.prepare("SELECT id, pdq FROM images WHERE status = 'active'")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?.parse().unwrap_or_default())))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The last change's sequence number (0 if none).
    pub fn last_change(&self) -> Result<i64, CatalogError> {
        Ok(self.conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM changes", [], |r| r.get(0))?)
    }

    /// Active image ids that lack an embedding for `model_id` (for re-embedding).
    pub fn images_without_embedding(&self, model_id: i64) -> Result<Vec<Image>, CatalogError> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {IMAGE_COLUMNS} FROM images i WHERE status = 'active' AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.image_id = i.id AND e.model_id = ?1) ORDER BY id"
        ))?;
        let rows = st.query_map([model_id], image_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Counts of images by status.
    pub fn image_counts(&self) -> Result<(i64, i64), CatalogError> {
        Ok(self.conn.query_row("SELECT COUNT(*), COALESCE(SUM(status = 'active'), 0) FROM images", [], |r| Ok((r.get(0)?, r.get(1)?)))?)
    }

    /// Writes an audit entry.
    pub fn audit(&self, actor: &str, action: &str, detail: &serde_json::Value) -> Result<i64, CatalogError> {
        self.conn.execute("INSERT INTO audit (at, actor, action, detail) VALUES (?1, ?2, ?3, ?4)", params![now(), actor, action, detail.to_string()])?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The latest audit entries, newest first.
    pub fn audit_entries(&self, limit: usize) -> Result<Vec<AuditEntry>, CatalogError> {
        self.audit_entries_of(None, limit)
    }

    /// The latest audit entries of one action (all when `None`), newest first.
    pub fn audit_entries_of(&self, action: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>, CatalogError> {
        let mut st = self.conn.prepare("SELECT id, at, actor, action, detail FROM audit WHERE ?1 IS NULL OR action = ?1 ORDER BY id DESC LIMIT ?2")?;
        let rows = st.query_map(params![action, limit as i64], |r| {
            let detail: String = r.get(4)?;
            Ok(AuditEntry { id: r.get(0)?, at: r.get(1)?, actor: r.get(2)?, action: r.get(3)?, detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null) })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Creates an API key; returns the token to hand out (`hm_<id>_<secret>`), shown only once.
    pub fn create_key(&self, role: Role, label: &str) -> Result<(KeyInfo, String), CatalogError> {
        let mut raw = [0u8; 24];
        use std::io::Read;
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut raw))
            .map_err(|e| CatalogError::Invalid { field: "key", message: format!("no randomness: {e}") })?;
        let id = hex::encode(&raw[..6]);
        let secret = hex::encode(&raw[6..]);
        self.conn.execute(
            "INSERT INTO api_keys (id, secret_sha256, role, label, created) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, crate::store::sha256_hex(secret.as_bytes()), role.as_str(), label, now()],
        )?;
        Ok((KeyInfo { id: id.clone(), role }, format!("hm_{id}_{secret}")))
    }

    /// The key a token belongs to, if it is valid and not revoked.
    pub fn verify_key(&self, token: &str) -> Result<Option<KeyInfo>, CatalogError> {
        let Some((id, secret)) = token.strip_prefix("hm_").and_then(|t| t.split_once('_')) else { return Ok(None) };
        let row: Option<(String, String)> = self
            .conn
            .query_row("SELECT secret_sha256, role FROM api_keys WHERE id = ?1 AND revoked IS NULL", [id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((want, role)) = row else { return Ok(None) };
        let got = crate::store::sha256_hex(secret.as_bytes());
        // Constant-time comparison: the time taken says nothing about how much matched.
        let same = want.len() == got.len() && want.bytes().zip(got.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        Ok(same.then(|| KeyInfo { id: id.to_string(), role: role.parse().unwrap_or(Role::Uploader) }))
    }

    /// Revokes a key; returns whether it existed.
    pub fn revoke_key(&self, id: &str) -> Result<bool, CatalogError> {
        Ok(self.conn.execute("UPDATE api_keys SET revoked = ?2 WHERE id = ?1 AND revoked IS NULL", params![id, now()])? > 0)
    }

    /// Records a new running job of `kind`; refuses while another of that kind runs.
    pub fn start_job(&self, kind: &str, started_by: &str) -> Result<Job, CatalogError> {
        self.reap_jobs()?;
        let inserted = self.conn.execute(
            "INSERT INTO jobs (kind, state, started, started_by, pid) VALUES (?1, 'running', ?2, ?3, ?4)",
            params![kind, now(), started_by, std::process::id()],
        );
        match inserted {
            Ok(_) => self.job_row(self.conn.last_insert_rowid()),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                let id = self.conn.query_row("SELECT id FROM jobs WHERE kind = ?1 AND state = 'running'", [kind], |r| r.get(0))?;
                Err(CatalogError::JobRunning { kind: kind.to_string(), id })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Records a running job's progress.
    pub fn job_progress(&self, id: i64, phase: &str, done: usize, total: usize) -> Result<(), CatalogError> {
        self.conn.execute("UPDATE jobs SET phase = ?2, done = ?3, total = ?4 WHERE id = ?1 AND state = 'running'", params![id, phase, done as i64, total as i64])?;
        Ok(())
    }

    /// Records how a job ended: done, or failed with `error`.
    pub fn finish_job(&self, id: i64, error: Option<&str>) -> Result<(), CatalogError> {
        let state = if error.is_some() { JobState::Failed } else { JobState::Done };
        self.conn.execute("UPDATE jobs SET state = ?2, finished = ?3, error = ?4 WHERE id = ?1", params![id, state.as_str(), now(), error])?;
        Ok(())
    }

    /// One job.
    pub fn job(&self, id: i64) -> Result<Job, CatalogError> {
        self.reap_jobs()?;
        self.job_row(id)
    }

    fn job_row(&self, id: i64) -> Result<Job, CatalogError> {
        self.conn.query_row(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"), [id], job_from_row).optional()?.ok_or(CatalogError::NoJob(id))
    }

    /// The latest jobs, newest first.
    pub fn jobs(&self, limit: usize) -> Result<Vec<Job>, CatalogError> {
        self.reap_jobs()?;
        let mut st = self.conn.prepare(&format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY id DESC LIMIT ?1"))?;
        let rows = st.query_map([limit as i64], job_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Marks running jobs whose process is gone as interrupted. The pid is checked on this
    /// machine only: a catalog lives in one data directory on one machine.
    fn reap_jobs(&self) -> Result<(), CatalogError> {
        let mut st = self.conn.prepare("SELECT id, pid FROM jobs WHERE state = 'running'")?;
        let running: Vec<(i64, i64)> = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
        for (id, pid) in running {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                self.conn.execute("UPDATE jobs SET state = 'interrupted', finished = ?2 WHERE id = ?1", params![id, now()])?;
            }
        }
        Ok(())
    }

    /// The outcome recorded for an import line, if it was handled already.
    pub fn import_outcome(&self, key: &str) -> Result<Option<(Option<i64>, String)>, CatalogError> {
        Ok(self.conn.query_row("SELECT image_id, outcome FROM imports WHERE source_key = ?1", [key], |r| Ok((r.get(0)?, r.get(1)?))).optional()?)
    }

    /// Records how an import line was handled.
    pub fn record_import(&self, key: &str, image_id: Option<i64>, outcome: &str, detail: &str) -> Result<(), CatalogError> {
        self.conn.execute("INSERT OR REPLACE INTO imports (source_key, image_id, outcome, detail) VALUES (?1, ?2, ?3, ?4)", params![key, image_id, outcome, detail])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_catalog(name: &str) -> (Catalog, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("hm-cat-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        (Catalog::open(&dir.join("catalog.sqlite")).unwrap(), dir)
    }

    fn hotel(ext: &str, city: &str, lat: f64, lon: f64) -> Hotel {
        Hotel { external_id: Some(ext.into()), name: format!("Hotel {ext}"), city: Some(city.into()), country: Some("US".into()), latitude: Some(lat), longitude: Some(lon), ..Default::default() }
    }

    #[test]
    fn one_running_job_per_kind_and_dead_ones_are_interrupted() {
        let (cat, dir) = temp_catalog("jobs");
        let job = cat.start_job("reindex", "admin1").unwrap();
        assert_eq!((job.state, job.started_by.as_str()), (JobState::Running, "admin1"));
        match cat.start_job("reindex", "admin2") {
            Err(CatalogError::JobRunning { id, .. }) => assert_eq!(id, job.id),
            other => panic!("second running job allowed: {other:?}"),
        }
        cat.job_progress(job.id, "embedding", 3, 10).unwrap();
        let j = cat.job(job.id).unwrap();
        assert_eq!((j.phase.as_str(), j.done, j.total), ("embedding", 3, 10));
        cat.finish_job(job.id, None).unwrap();
        assert_eq!(cat.job(job.id).unwrap().state, JobState::Done);
        // A job whose process died (a pid above Linux's pid_max) shows as interrupted, and
        // does not block the next one.
        let dead = cat.start_job("reindex", "admin1").unwrap();
        cat.conn.execute("UPDATE jobs SET pid = 99999999 WHERE id = ?1", [dead.id]).unwrap();
        let next = cat.start_job("reindex", "admin1").unwrap();
        assert_eq!(cat.job(dead.id).unwrap().state, JobState::Interrupted);
        assert_eq!(cat.jobs(10).unwrap().iter().map(|j| j.id).collect::<Vec<_>>(), vec![next.id, dead.id, job.id]);
        assert!(matches!(cat.job(12345), Err(CatalogError::NoJob(12345))));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn hotels_upsert_and_filter() {
        let (cat, dir) = temp_catalog("hotels");
        let a = cat.upsert_hotel(&hotel("a", "Denver", 39.74, -104.99)).unwrap();
        let b = cat.upsert_hotel(&hotel("b", "Boulder", 40.01, -105.27)).unwrap();
        let c = cat.upsert_hotel(&hotel("c", "Miami", 25.76, -80.19)).unwrap();
        assert_eq!(cat.upsert_hotel(&hotel("a", "Denver", 39.7, -105.0)).unwrap(), a, "same external id updates");
        let near_denver = HotelFilter { near: Some((39.74, -104.99, 50.0)), ..Default::default() };
        assert_eq!(cat.hotels_matching(&near_denver).unwrap(), vec![a, b]);
        let miami = HotelFilter { city: Some("miami".into()), ..Default::default() };
        assert_eq!(cat.hotels_matching(&miami).unwrap(), vec![c]);
        assert_eq!(cat.find_hotels("boul", 10).unwrap()[0].id, b);
        assert!(cat.upsert_hotel(&Hotel { name: " ".into(), ..Default::default() }).is_err());
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn images_changes_and_reopen() {
        let (mut cat, dir) = temp_catalog("images");
        let h = cat.upsert_hotel(&hotel("a", "Denver", 39.74, -104.99)).unwrap();
        let m = cat.model_id("mobilenetv2", "gap", 3, "{}").unwrap();
        let new = NewImage { sha256: "ab".repeat(32), hotel_id: h, room: Some("101".into()), source: Source::Import, uploader_key_id: None, width: 10, height: 8, pdq: PdqHash::default(), pdq_quality: 70 };
        let id = cat.add_image(&new, m, &[0.5, 0.25, -1.0]).unwrap();
        assert!(matches!(cat.add_image(&NewImage { hotel_id: 999, ..new.clone() }, m, &[0.0; 3]), Err(CatalogError::NoHotel(999))));
        cat.set_status(id, Status::Deleted).unwrap();
        let changes = cat.changes_since(0, m).unwrap();
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[1].status, Status::Deleted);
        assert_eq!(changes[0].vector.as_deref(), Some(&[0.5, 0.25, -1.0][..]));
        drop(cat);
        let cat = Catalog::open(&dir.join("catalog.sqlite")).unwrap();
        assert_eq!(cat.image(id).unwrap().status, Status::Deleted);
        assert_eq!(cat.last_change().unwrap(), 2);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn keys_verify_only_with_their_secret() {
        let (cat, dir) = temp_catalog("keys");
        let (info, token) = cat.create_key(Role::Investigator, "case 12").unwrap();
        assert_eq!(cat.verify_key(&token).unwrap(), Some(info.clone()));
        let last = if token.ends_with('0') { '1' } else { '0' };
        let forged = format!("{}{last}", &token[..token.len() - 1]);
        assert_eq!(cat.verify_key(&forged).unwrap(), None);
        assert_eq!(cat.verify_key("Bearer nonsense").unwrap(), None);
        assert!(cat.revoke_key(&info.id).unwrap());
        assert_eq!(cat.verify_key(&token).unwrap(), None);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn haversine_is_sane() {
        let d = haversine_km(39.7392, -104.9903, 40.015, -105.2705);
        assert!((d - 39.0).abs() < 2.0, "{d}");
    }
}
