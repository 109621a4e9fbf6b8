//! The embedded catalog: one SQLite file in the data directory (the default).

use parking_lot::{Mutex, MutexGuard};
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use super::*;
use crate::pdq::PdqHash;

/// Schema migrations, in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_catalog.sql"),
    include_str!("../../migrations/0002_api_keys.sql"),
    include_str!("../../migrations/0003_jobs.sql"),
    include_str!("../../migrations/0004_job_lease.sql"),
    include_str!("../../migrations/0005_cases_banks.sql"),
    include_str!("../../migrations/0006_learned_state.sql"),
];

const IMAGE_COLUMNS: &str = "id, sha256, hotel_id, room, source, uploader_key_id, created, width, height, pdq, pdq_quality, status";

fn image_from_row(r: &rusqlite::Row) -> rusqlite::Result<Image> {
    let pdq: String = r.get(9)?;
    Ok(Image {
        id: r.get(0)?,
        sha256: r.get(1)?,
        hotel_id: r.get(2)?,
        room: r.get(3)?,
        source: Source::parse(&r.get::<_, String>(4)?),
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

/// The catalog in one SQLite file. One connection, behind a lock: SQLite takes one writer
/// at a time anyway, and reads are short.
pub struct SqliteCatalog {
    conn: Mutex<Connection>,
}

impl SqliteCatalog {
    /// Opens (creating and migrating) the catalog at `path`.
    pub fn open(path: &Path) -> Result<Self, CatalogError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let cat = SqliteCatalog { conn: Mutex::new(conn) };
        cat.migrate()?;
        Ok(cat)
    }

    /// A catalog in memory, gone when dropped (for tests of the use cases).
    pub fn in_memory() -> Result<Self, CatalogError> {
        let conn = Connection::open_in_memory()?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let cat = SqliteCatalog { conn: Mutex::new(conn) };
        cat.migrate()?;
        Ok(cat)
    }

    // parking_lot's lock does not poison; nor would a panic while it was held leave SQLite
    // half-written (transactions roll back).
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock()
    }

    /// The rows of `select` (a query without WHERE) whose `id` is one of `ids`, read in
    /// slices under SQLite's default limit of bound parameters.
    fn rows_by_id<T>(&self, select: &str, ids: &[i64], row: fn(&rusqlite::Row) -> rusqlite::Result<T>) -> Result<Vec<T>, CatalogError> {
        let conn = self.conn();
        let mut out = Vec::with_capacity(ids.len());
        for slice in ids.chunks(500) {
            let marks = vec!["?"; slice.len()].join(",");
            let mut st = conn.prepare_cached(&format!("{select} WHERE id IN ({marks})"))?;
            for r in st.query_map(rusqlite::params_from_iter(slice), row)? {
                out.push(r?);
            }
        }
        Ok(out)
    }

    fn migrate(&self) -> Result<(), CatalogError> {
        let mut conn = self.conn();
        // IMMEDIATE: two processes opening a new catalog at once must not both migrate it.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
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

    fn job_row(conn: &Connection, id: i64) -> Result<Job, CatalogError> {
        conn.query_row(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"), [id], job_from_row)
            .optional()?
            .ok_or(CatalogError::NoJob(id))
    }

    /// Marks running jobs that stopped (see [`job_is_dead`]) as interrupted.
    fn reap_jobs(conn: &Connection) -> Result<(), CatalogError> {
        let mut st = conn.prepare("SELECT id, host, pid, heartbeat FROM jobs WHERE state = 'running'")?;
        let running: Vec<(i64, String, i64, i64)> =
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect::<Result<_, _>>()?;
        let (me, t) = (this_host(), now());
        for (id, host, pid, beat) in running {
            if job_is_dead(&host, pid, beat, &me, t) {
                conn.execute("UPDATE jobs SET state = 'interrupted', finished = ?2 WHERE id = ?1", params![id, t])?;
            }
        }
        Ok(())
    }
}

impl Catalog for SqliteCatalog {
    fn backend(&self) -> &'static str {
        "sqlite"
    }
}

impl HotelStore for SqliteCatalog {
    fn upsert_hotel(&self, h: &Hotel) -> Result<i64, CatalogError> {
        check_hotel(h)?;
        let conn = self.conn();
        let existing: Option<i64> = match &h.external_id {
            Some(ext) => conn.query_row("SELECT id FROM hotels WHERE external_id = ?1", [ext], |r| r.get(0)).optional()?,
            None if h.id > 0 => Some(h.id),
            None => None,
        };
        match existing {
            Some(id) => {
                let n = conn.execute(
                    "UPDATE hotels SET name=?2, chain=?3, address=?4, city=?5, country=?6, latitude=?7, longitude=?8 WHERE id=?1",
                    params![id, h.name, h.chain, h.address, h.city, h.country, h.latitude, h.longitude],
                )?;
                if n == 0 {
                    return Err(CatalogError::NoHotel(id));
                }
                Ok(id)
            }
            None => {
                conn.execute(
                    "INSERT INTO hotels (external_id, name, chain, address, city, country, latitude, longitude, created) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
                    params![h.external_id, h.name, h.chain, h.address, h.city, h.country, h.latitude, h.longitude, now()],
                )?;
                Ok(conn.last_insert_rowid())
            }
        }
    }

    fn hotel(&self, id: i64) -> Result<Hotel, CatalogError> {
        self.conn()
            .query_row(&format!("SELECT {HOTEL_COLUMNS} FROM hotels WHERE id = ?1"), [id], hotel_from_row)
            .optional()?
            .ok_or(CatalogError::NoHotel(id))
    }

    fn hotels(&self, ids: &[i64]) -> Result<Vec<Hotel>, CatalogError> {
        self.rows_by_id(&format!("SELECT {HOTEL_COLUMNS} FROM hotels"), ids, hotel_from_row)
    }

    fn hotel_by_external_id(&self, ext: &str) -> Result<Option<Hotel>, CatalogError> {
        Ok(self
            .conn()
            .query_row(&format!("SELECT {HOTEL_COLUMNS} FROM hotels WHERE external_id = ?1"), [ext], hotel_from_row)
            .optional()?)
    }

    fn find_hotels(&self, text: &str, limit: usize) -> Result<Vec<Hotel>, CatalogError> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!(
            "SELECT {HOTEL_COLUMNS} FROM hotels WHERE name LIKE ?1 ESCAPE '\\' OR city LIKE ?1 ESCAPE '\\' OR address LIKE ?1 ESCAPE '\\' ORDER BY name LIMIT ?2"
        ))?;
        let rows = st.query_map(params![like_literal(text), i64::try_from(limit).unwrap_or(i64::MAX)], hotel_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn all_hotels(&self) -> Result<Vec<Hotel>, CatalogError> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!("SELECT {HOTEL_COLUMNS} FROM hotels ORDER BY id"))?;
        let rows = st.query_map([], hotel_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl PhotoCatalog for SqliteCatalog {
    fn model_id(&self, name: &str, pooling: &str, dim: usize, settings: &str) -> Result<i64, CatalogError> {
        let conn = self.conn();
        conn.execute(
            "INSERT OR IGNORE INTO models (name, pooling, dim, settings, created) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![name, pooling, dim as i64, settings, now()],
        )?;
        Ok(conn.query_row("SELECT id FROM models WHERE name=?1 AND pooling=?2 AND settings=?3", params![name, pooling, settings], |r| {
            r.get(0)
        })?)
    }

    fn add_image(&self, img: &NewImage, model_id: i64, vector: &[f32]) -> Result<i64, CatalogError> {
        if let Some(room) = &img.room {
            check_text("room", room, MAX_ROOM)?;
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO images (sha256, hotel_id, room, source, uploader_key_id, created, width, height, pdq, pdq_quality) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
            params![img.sha256, img.hotel_id, img.room, img.source.as_str(), img.uploader_key_id, now(), img.width, img.height, img.pdq.to_string(), img.pdq_quality],
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => CatalogError::NoHotel(img.hotel_id),
            e => CatalogError::Sql(e),
        })?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO embeddings (image_id, model_id, vector) VALUES (?1, ?2, ?3)",
            params![id, model_id, vector_to_blob(vector)],
        )?;
        tx.execute("INSERT INTO changes (image_id, kind) VALUES (?1, 'add')", [id])?;
        tx.commit()?;
        Ok(id)
    }

    fn put_embedding(&self, image_id: i64, model_id: i64, vector: &[f32]) -> Result<(), CatalogError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO embeddings (image_id, model_id, vector) VALUES (?1, ?2, ?3)",
            params![image_id, model_id, vector_to_blob(vector)],
        )?;
        Ok(())
    }

    fn image(&self, id: i64) -> Result<Image, CatalogError> {
        self.conn()
            .query_row(&format!("SELECT {IMAGE_COLUMNS} FROM images WHERE id = ?1"), [id], image_from_row)
            .optional()?
            .ok_or(CatalogError::NoImage(id))
    }

    fn images(&self, ids: &[i64]) -> Result<Vec<Image>, CatalogError> {
        self.rows_by_id(&format!("SELECT {IMAGE_COLUMNS} FROM images"), ids, image_from_row)
    }

    fn images_with_sha(&self, sha256: &str) -> Result<Vec<Image>, CatalogError> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!("SELECT {IMAGE_COLUMNS} FROM images WHERE sha256 = ?1 AND status = 'active'"))?;
        let rows = st.query_map([sha256], image_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn sha_in_use(&self, sha256: &str) -> Result<bool, CatalogError> {
        Ok(self
            .conn()
            .query_row("SELECT EXISTS (SELECT 1 FROM images WHERE sha256 = ?1 AND status != 'deleted')", [sha256], |r| r.get(0))?)
    }

    fn images_of_hotel(&self, hotel_id: i64) -> Result<Vec<Image>, CatalogError> {
        let conn = self.conn();
        let mut st = conn
            .prepare(&format!("SELECT {IMAGE_COLUMNS} FROM images WHERE hotel_id = ?1 AND status = 'active' ORDER BY id DESC LIMIT 200"))?;
        let rows = st.query_map([hotel_id], image_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn deleted_only_sha256(&self) -> Result<Vec<String>, CatalogError> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT DISTINCT d.sha256 FROM images d WHERE d.status = 'deleted' \
             AND NOT EXISTS (SELECT 1 FROM images a WHERE a.sha256 = d.sha256 AND a.status != 'deleted')",
        )?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn set_status(&self, id: i64, status: Status) -> Result<(), CatalogError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute("UPDATE images SET status = ?2 WHERE id = ?1", params![id, status.as_str()])?;
        if n == 0 {
            return Err(CatalogError::NoImage(id));
        }
        tx.execute("INSERT INTO changes (image_id, kind) VALUES (?1, 'status')", [id])?;
        tx.commit()?;
        Ok(())
    }

    fn changes_since(&self, since: i64, model_id: i64) -> Result<Vec<Change>, CatalogError> {
        let conn = self.conn();
        let mut st = conn.prepare(
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

    fn active_pdq(&self) -> Result<Vec<ActivePdq>, CatalogError> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT id, hotel_id, pdq, pdq_quality FROM images WHERE status = 'active'")?;
        let rows = st.query_map([], |r| {
            Ok(ActivePdq {
                image_id: r.get(0)?,
                hotel_id: r.get(1)?,
                pdq: r.get::<_, String>(2)?.parse().unwrap_or_default(),
                quality: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn last_change(&self) -> Result<i64, CatalogError> {
        Ok(self.conn().query_row("SELECT COALESCE(MAX(seq), 0) FROM changes", [], |r| r.get(0))?)
    }

    fn images_without_embedding(&self, model_id: i64) -> Result<Vec<Image>, CatalogError> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!(
            "SELECT {IMAGE_COLUMNS} FROM images i WHERE status = 'active' AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.image_id = i.id AND e.model_id = ?1) ORDER BY id"
        ))?;
        let rows = st.query_map([model_id], image_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn image_counts(&self) -> Result<(i64, i64), CatalogError> {
        Ok(self.conn().query_row("SELECT COUNT(*), COALESCE(SUM(status = 'active'), 0) FROM images", [], |r| Ok((r.get(0)?, r.get(1)?)))?)
    }

    fn embeddings(&self, image_ids: &[i64], model_id: i64) -> Result<Vec<(i64, Vec<f32>)>, CatalogError> {
        let conn = self.conn();
        let mut out = Vec::with_capacity(image_ids.len());
        // In slices, under SQLite's default limit of bound parameters.
        for ids in image_ids.chunks(500) {
            let marks = vec!["?"; ids.len()].join(",");
            let mut st =
                conn.prepare_cached(&format!("SELECT image_id, vector FROM embeddings WHERE model_id = ? AND image_id IN ({marks})"))?;
            let args = std::iter::once(model_id).chain(ids.iter().copied());
            let rows =
                st.query_map(rusqlite::params_from_iter(args), |r| Ok((r.get::<_, i64>(0)?, blob_to_vector(&r.get::<_, Vec<u8>>(1)?))))?;
            for row in rows {
                out.push(row?);
            }
        }
        Ok(out)
    }
}

impl AuditLog for SqliteCatalog {
    fn audit(&self, actor: &str, action: &str, detail: &serde_json::Value) -> Result<i64, CatalogError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO audit (at, actor, action, detail) VALUES (?1, ?2, ?3, ?4)",
            params![now(), actor, action, detail.to_string()],
        )?;
        Ok(conn.last_insert_rowid())
    }

    fn audit_entries_of(&self, action: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>, CatalogError> {
        let conn = self.conn();
        let mut st =
            conn.prepare("SELECT id, at, actor, action, detail FROM audit WHERE ?1 IS NULL OR action = ?1 ORDER BY id DESC LIMIT ?2")?;
        let rows = st.query_map(params![action, limit as i64], |r| {
            let detail: String = r.get(4)?;
            Ok(AuditEntry {
                id: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl KeyStore for SqliteCatalog {
    fn insert_key(&self, id: &str, secret_sha256: &str, role: Role, label: &str) -> Result<(), CatalogError> {
        self.conn().execute(
            "INSERT INTO api_keys (id, secret_sha256, role, label, created) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, secret_sha256, role.as_str(), label, now()],
        )?;
        Ok(())
    }

    fn key_secret(&self, id: &str) -> Result<Option<(String, Role)>, CatalogError> {
        let row: Option<(String, String)> = self
            .conn()
            .query_row("SELECT secret_sha256, role FROM api_keys WHERE id = ?1 AND revoked IS NULL", [id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(row.map(|(sha, role)| (sha, role.parse().unwrap_or(Role::Uploader))))
    }

    fn revoke_key(&self, id: &str) -> Result<bool, CatalogError> {
        Ok(self.conn().execute("UPDATE api_keys SET revoked = ?2 WHERE id = ?1 AND revoked IS NULL", params![id, now()])? > 0)
    }
}

impl JobStore for SqliteCatalog {
    fn start_job(&self, kind: &str, started_by: &str) -> Result<Job, CatalogError> {
        let conn = self.conn();
        Self::reap_jobs(&conn)?;
        let t = now();
        let inserted = conn.execute(
            "INSERT INTO jobs (kind, state, started, started_by, pid, host, heartbeat) VALUES (?1, 'running', ?2, ?3, ?4, ?5, ?2)",
            params![kind, t, started_by, std::process::id(), this_host()],
        );
        match inserted {
            Ok(_) => Self::job_row(&conn, conn.last_insert_rowid()),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                let id = conn.query_row("SELECT id FROM jobs WHERE kind = ?1 AND state = 'running'", [kind], |r| r.get(0))?;
                Err(CatalogError::JobRunning { kind: kind.to_string(), id })
            }
            Err(e) => Err(e.into()),
        }
    }

    fn job_progress(&self, id: i64, phase: &str, done: usize, total: usize) -> Result<(), CatalogError> {
        self.conn().execute(
            "UPDATE jobs SET phase = ?2, done = ?3, total = ?4, heartbeat = ?5 WHERE id = ?1 AND state = 'running'",
            params![id, phase, done as i64, total as i64, now()],
        )?;
        Ok(())
    }

    fn heartbeat(&self, id: i64) -> Result<(), CatalogError> {
        self.conn().execute("UPDATE jobs SET heartbeat = ?2 WHERE id = ?1 AND state = 'running'", params![id, now()])?;
        Ok(())
    }

    fn finish_job(&self, id: i64, error: Option<&str>) -> Result<(), CatalogError> {
        let state = if error.is_some() { JobState::Failed } else { JobState::Done };
        self.conn()
            .execute("UPDATE jobs SET state = ?2, finished = ?3, error = ?4 WHERE id = ?1", params![id, state.as_str(), now(), error])?;
        Ok(())
    }

    fn job(&self, id: i64) -> Result<Job, CatalogError> {
        let conn = self.conn();
        Self::reap_jobs(&conn)?;
        Self::job_row(&conn, id)
    }

    fn jobs(&self, limit: usize) -> Result<Vec<Job>, CatalogError> {
        let conn = self.conn();
        Self::reap_jobs(&conn)?;
        let mut st = conn.prepare(&format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY id DESC LIMIT ?1"))?;
        let rows = st.query_map([limit as i64], job_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn last_done(&self, kind: &str) -> Result<i64, CatalogError> {
        Ok(self.conn().query_row("SELECT COALESCE(MAX(id), 0) FROM jobs WHERE kind = ?1 AND state = 'done'", [kind], |r| r.get(0))?)
    }
}

impl ImportJournal for SqliteCatalog {
    fn import_outcome(&self, key: &str) -> Result<Option<(Option<i64>, String)>, CatalogError> {
        Ok(self
            .conn()
            .query_row("SELECT image_id, outcome FROM imports WHERE source_key = ?1", [key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    fn record_import(&self, key: &str, image_id: Option<i64>, outcome: &str, detail: &str) -> Result<(), CatalogError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO imports (source_key, image_id, outcome, detail) VALUES (?1, ?2, ?3, ?4)",
            params![key, image_id, outcome, detail],
        )?;
        Ok(())
    }
}

fn case_from_row(r: &rusqlite::Row) -> rusqlite::Result<Case> {
    Ok(Case { id: r.get(0)?, title: r.get(1)?, owner: r.get(2)?, created: r.get(3)? })
}

impl CaseStore for SqliteCatalog {
    fn create_case(&self, title: &str, owner: &str) -> Result<Case, CatalogError> {
        let conn = self.conn();
        let created = now();
        conn.execute("INSERT INTO cases (title, owner, created) VALUES (?1, ?2, ?3)", params![title, owner, created])?;
        Ok(Case { id: conn.last_insert_rowid(), title: title.into(), owner: owner.into(), created })
    }

    fn case(&self, id: i64) -> Result<Case, CatalogError> {
        self.conn()
            .query_row("SELECT id, title, owner, created FROM cases WHERE id = ?1", [id], case_from_row)
            .optional()?
            .ok_or(CatalogError::NoCase(id))
    }

    fn hand_over_cases(&self, from: &str, to: &str) -> Result<usize, CatalogError> {
        Ok(self.conn().execute("UPDATE cases SET owner = ?2 WHERE owner = ?1", params![from, to])?)
    }

    fn cases(&self, owner: Option<&str>) -> Result<Vec<Case>, CatalogError> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT id, title, owner, created FROM cases WHERE ?1 IS NULL OR owner = ?1 ORDER BY id DESC")?;
        let rows = st.query_map([owner], case_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn add_case_entry(&self, case_id: i64, actor: &str, kind: &str, body: &serde_json::Value) -> Result<JournalRow, CatalogError> {
        let conn = self.conn();
        let at = now();
        conn.execute(
            "INSERT INTO case_entries (case_id, at, actor, kind, body) SELECT id, ?2, ?3, ?4, ?5 FROM cases WHERE id = ?1",
            params![case_id, at, actor, kind, body.to_string()],
        )?;
        if conn.changes() == 0 {
            return Err(CatalogError::NoCase(case_id));
        }
        Ok(JournalRow { id: conn.last_insert_rowid(), case_id, at, actor: actor.into(), kind: kind.into(), body: body.clone() })
    }

    fn case_entries(&self, case_id: i64) -> Result<Vec<JournalRow>, CatalogError> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT id, case_id, at, actor, kind, body FROM case_entries WHERE case_id = ?1 ORDER BY id")?;
        let rows = st.query_map([case_id], |r| {
            let body: String = r.get(5)?;
            Ok(JournalRow {
                id: r.get(0)?,
                case_id: r.get(1)?,
                at: r.get(2)?,
                actor: r.get(3)?,
                kind: r.get(4)?,
                body: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl LearnedState for SqliteCatalog {
    fn put_state(&self, kind: &str, body: &serde_json::Value, created_by: &str) -> Result<i64, CatalogError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO learned_state (kind, body, created, created_by) VALUES (?1, ?2, ?3, ?4)",
            params![kind, body.to_string(), now(), created_by],
        )?;
        Ok(conn.last_insert_rowid())
    }

    fn latest_state(&self, kind: &str) -> Result<Option<(i64, serde_json::Value)>, CatalogError> {
        let row = self
            .conn()
            .query_row("SELECT version, body FROM learned_state WHERE kind = ?1 ORDER BY version DESC LIMIT 1", [kind], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .optional()?;
        Ok(row.map(|(v, body)| (v, serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))))
    }

    fn state_version(&self, kind: &str) -> Result<i64, CatalogError> {
        Ok(self.conn().query_row("SELECT COALESCE(MAX(version), 0) FROM learned_state WHERE kind = ?1", [kind], |r| r.get(0))?)
    }
}

impl HashBanks for SqliteCatalog {
    fn create_bank(&self, name: &str, created_by: &str) -> Result<Bank, CatalogError> {
        let conn = self.conn();
        let created = now();
        match conn.execute("INSERT INTO hash_banks (name, created, created_by) VALUES (?1, ?2, ?3)", params![name, created, created_by]) {
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(CatalogError::BankExists(name.into()))
            }
            r => {
                r?;
                Ok(Bank { id: conn.last_insert_rowid(), name: name.into(), created, created_by: created_by.into(), hashes: 0 })
            }
        }
    }

    fn banks(&self) -> Result<Vec<Bank>, CatalogError> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT b.id, b.name, b.created, b.created_by, (SELECT COUNT(*) FROM bank_hashes h WHERE h.bank_id = b.id) FROM hash_banks b ORDER BY b.id")?;
        let rows = st
            .query_map([], |r| Ok(Bank { id: r.get(0)?, name: r.get(1)?, created: r.get(2)?, created_by: r.get(3)?, hashes: r.get(4)? }))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn add_bank_hashes(&self, bank_id: i64, hashes: &[(PdqHash, String)]) -> Result<usize, CatalogError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut added = 0;
        {
            let mut st = tx.prepare("INSERT OR IGNORE INTO bank_hashes (bank_id, pdq, label) VALUES (?1, ?2, ?3)")?;
            for (pdq, label) in hashes {
                added += st.execute(params![bank_id, pdq.to_string(), label])?;
            }
        }
        tx.commit()?;
        Ok(added)
    }

    fn bank_hashes_after(&self, after: i64, limit: usize) -> Result<Vec<BankHash>, CatalogError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached("SELECT id, bank_id, pdq, label FROM bank_hashes WHERE id > ?1 ORDER BY id LIMIT ?2")?;
        let rows = st.query_map(params![after, limit as i64], |r| {
            let pdq: String = r.get(2)?;
            Ok(BankHash { id: r.get(0)?, bank_id: r.get(1)?, pdq: pdq.parse().unwrap_or_default(), label: r.get(3)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_whose_local_process_died_is_interrupted() {
        let cat = SqliteCatalog::in_memory().unwrap();
        let dead = cat.start_job("reindex", "admin1").unwrap();
        // A pid above Linux's pid_max: that process cannot exist.
        cat.conn().execute("UPDATE jobs SET pid = 99999999 WHERE id = ?1", [dead.id]).unwrap();
        let next = cat.start_job("reindex", "admin1").unwrap();
        assert_eq!(cat.job(dead.id).unwrap().state, JobState::Interrupted);
        // Another machine's job is judged by its lease alone.
        cat.conn().execute("UPDATE jobs SET pid = 99999999, host = 'elsewhere' WHERE id = ?1", [next.id]).unwrap();
        assert!(matches!(cat.start_job("reindex", "x"), Err(CatalogError::JobRunning { .. })));
        cat.conn().execute("UPDATE jobs SET heartbeat = heartbeat - ?2 WHERE id = ?1", params![next.id, JOB_LEASE_SECS + 1]).unwrap();
        assert!(cat.start_job("reindex", "x").is_ok(), "a job whose lease ran out no longer blocks");
        assert_eq!(cat.job(next.id).unwrap().state, JobState::Interrupted);
    }
}
