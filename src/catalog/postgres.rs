//! The catalog in PostgreSQL: what several replicas share (`catalog = "postgres://…"`).

use std::time::Duration;

use ::postgres::error::SqlState;
use ::postgres::{Client, GenericClient, NoTls, Row};
use r2d2_postgres::PostgresConnectionManager;

use super::*;
use crate::pdq::PdqHash;

/// Schema migrations, in order; the `schema_migrations` table records how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_catalog.sql"),
    include_str!("../../migrations/postgres/0002_cases_banks.sql"),
    include_str!("../../migrations/postgres/0003_learned_state.sql"),
];

/// Any number below 2^63 that no other program takes an advisory lock on: replicas
/// starting together migrate one at a time.
const MIGRATION_LOCK: i64 = 0x686f_7465_6c6d;

const IMAGE_COLUMNS: &str = "id, sha256, hotel_id, room, source, uploader_key_id, created, width, height, pdq, pdq_quality, status";
const HOTEL_COLUMNS: &str = "id, external_id, name, chain, address, city, country, latitude, longitude";
const JOB_COLUMNS: &str = "id, kind, state, phase, done, total, started, finished, started_by, error";

fn image_from_row(r: &Row) -> Image {
    Image {
        id: r.get(0),
        sha256: r.get(1),
        hotel_id: r.get(2),
        room: r.get(3),
        source: Source::parse(r.get(4)),
        uploader_key_id: r.get(5),
        created: r.get(6),
        width: r.get::<_, i64>(7) as u32,
        height: r.get::<_, i64>(8) as u32,
        pdq: r.get::<_, &str>(9).parse().unwrap_or_default(),
        pdq_quality: r.get::<_, i16>(10) as u8,
        status: Status::parse(r.get(11)),
    }
}

fn hotel_from_row(r: &Row) -> Hotel {
    Hotel {
        id: r.get(0),
        external_id: r.get(1),
        name: r.get(2),
        chain: r.get(3),
        address: r.get(4),
        city: r.get(5),
        country: r.get(6),
        latitude: r.get(7),
        longitude: r.get(8),
    }
}

fn job_from_row(r: &Row) -> Job {
    Job {
        id: r.get(0),
        kind: r.get(1),
        state: JobState::parse(r.get(2)),
        phase: r.get(3),
        done: r.get(4),
        total: r.get(5),
        started: r.get(6),
        finished: r.get(7),
        started_by: r.get(8),
        error: r.get(9),
    }
}

fn is(e: &::postgres::Error, state: &SqlState) -> bool {
    e.code() == Some(state)
}

type Manager = PostgresConnectionManager<NoTls>;

/// How long a catalog call waits for a free (or new) connection before it fails.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(10);

/// The catalog in a PostgreSQL database, through a pool of connections (`r2d2`): searches,
/// uploads and the change-feed follower of one replica no longer queue behind one
/// connection. A connection the server dropped is discarded when it comes back to the pool.
pub struct PgCatalog {
    pool: r2d2::Pool<Manager>,
}

impl PgCatalog {
    /// Connects to `url` (`postgres://user@host:port/db`) with a pool of at most `pool`
    /// connections, and migrates the schema.
    pub fn connect(url: &str, pool: u32) -> Result<Self, CatalogError> {
        let config: ::postgres::Config = url.parse()?;
        let pool = r2d2::Pool::builder()
            .max_size(pool.max(1))
            .min_idle(Some(1))
            .connection_timeout(CHECKOUT_TIMEOUT)
            // A round trip per checkout would cost more than the calls it guards: a broken
            // connection fails its call and is dropped on return (`has_broken`).
            .test_on_check_out(false)
            .build_unchecked(PostgresConnectionManager::new(config, NoTls));
        let cat = PgCatalog { pool };
        cat.migrate()?;
        Ok(cat)
    }

    fn client(&self) -> Result<r2d2::PooledConnection<Manager>, CatalogError> {
        self.pool.get().map_err(|e| CatalogError::Pool(e.to_string()))
    }

    fn migrate(&self) -> Result<(), CatalogError> {
        let mut c = self.client()?;
        let mut tx = c.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT NOT NULL)")?;
        let version: i64 = tx.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])?.get(0);
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(CatalogError::TooNew { found: version, known });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.batch_execute(sql)?;
            tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&(i as i64 + 1)])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Appends to the change feed inside `tx`. The exclusive lock (which readers don't wait
    /// for) makes sequence numbers commit in order, so a follower's watermark skips nothing.
    fn log_change(tx: &mut impl GenericClient, image_id: i64, kind: &str) -> Result<(), CatalogError> {
        tx.batch_execute("LOCK TABLE changes IN EXCLUSIVE MODE")?;
        tx.execute("INSERT INTO changes (seq, image_id, kind) SELECT COALESCE(MAX(seq), 0) + 1, $1, $2 FROM changes", &[&image_id, &kind])?;
        Ok(())
    }

    fn reap_jobs(c: &mut Client) -> Result<(), CatalogError> {
        let running = c.query("SELECT id, host, pid, heartbeat FROM jobs WHERE state = 'running'", &[])?;
        let (me, t) = (this_host(), now());
        for r in running {
            if job_is_dead(r.get(1), r.get(2), r.get(3), &me, t) {
                c.execute(
                    "UPDATE jobs SET state = 'interrupted', finished = $2 WHERE id = $1 AND state = 'running'",
                    &[&r.get::<_, i64>(0), &t],
                )?;
            }
        }
        Ok(())
    }

    fn images_where(&self, filter: &str, params: &[&(dyn ::postgres::types::ToSql + Sync)]) -> Result<Vec<Image>, CatalogError> {
        let rows = self.client()?.query(&format!("SELECT {IMAGE_COLUMNS} FROM images {filter}"), params)?;
        Ok(rows.iter().map(image_from_row).collect())
    }
}

impl Catalog for PgCatalog {
    fn backend(&self) -> &'static str {
        "postgres"
    }
}

impl HotelStore for PgCatalog {
    fn upsert_hotel(&self, h: &Hotel) -> Result<i64, CatalogError> {
        check_hotel(h)?;
        let mut c = self.client()?;
        if h.external_id.is_none() && h.id > 0 {
            let n = c.execute(
                "UPDATE hotels SET name=$2, chain=$3, address=$4, city=$5, country=$6, latitude=$7, longitude=$8 WHERE id=$1",
                &[&h.id, &h.name, &h.chain, &h.address, &h.city, &h.country, &h.latitude, &h.longitude],
            )?;
            return if n == 0 { Err(CatalogError::NoHotel(h.id)) } else { Ok(h.id) };
        }
        // One statement: two replicas importing the same hotel at once both end on one row.
        let row = c.query_one(
            "INSERT INTO hotels (external_id, name, chain, address, city, country, latitude, longitude, created) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)
             ON CONFLICT (external_id) DO UPDATE SET name=EXCLUDED.name, chain=EXCLUDED.chain, address=EXCLUDED.address, city=EXCLUDED.city,
             country=EXCLUDED.country, latitude=EXCLUDED.latitude, longitude=EXCLUDED.longitude RETURNING id",
            &[&h.external_id, &h.name, &h.chain, &h.address, &h.city, &h.country, &h.latitude, &h.longitude, &now()],
        )?;
        Ok(row.get(0))
    }

    fn hotel(&self, id: i64) -> Result<Hotel, CatalogError> {
        let row = self.client()?.query_opt(&format!("SELECT {HOTEL_COLUMNS} FROM hotels WHERE id = $1"), &[&id])?;
        row.map(|r| hotel_from_row(&r)).ok_or(CatalogError::NoHotel(id))
    }

    fn hotels(&self, ids: &[i64]) -> Result<Vec<Hotel>, CatalogError> {
        let rows = self.client()?.query(&format!("SELECT {HOTEL_COLUMNS} FROM hotels WHERE id = ANY($1)"), &[&ids])?;
        Ok(rows.iter().map(hotel_from_row).collect())
    }

    fn hotel_by_external_id(&self, ext: &str) -> Result<Option<Hotel>, CatalogError> {
        Ok(self
            .client()?
            .query_opt(&format!("SELECT {HOTEL_COLUMNS} FROM hotels WHERE external_id = $1"), &[&ext])?
            .map(|r| hotel_from_row(&r)))
    }

    fn find_hotels(&self, text: &str, limit: usize) -> Result<Vec<Hotel>, CatalogError> {
        let rows = self.client()?.query(
            &format!(
                "SELECT {HOTEL_COLUMNS} FROM hotels WHERE name ILIKE $1 ESCAPE '\\' OR city ILIKE $1 ESCAPE '\\' OR address ILIKE $1 ESCAPE '\\' ORDER BY name LIMIT $2"
            ),
            &[&like_literal(text), &i64::try_from(limit).unwrap_or(i64::MAX)],
        )?;
        Ok(rows.iter().map(hotel_from_row).collect())
    }

    fn all_hotels(&self) -> Result<Vec<Hotel>, CatalogError> {
        Ok(self.client()?.query(&format!("SELECT {HOTEL_COLUMNS} FROM hotels ORDER BY id"), &[])?.iter().map(hotel_from_row).collect())
    }
}

impl PhotoCatalog for PgCatalog {
    fn model_id(&self, name: &str, pooling: &str, dim: usize, settings: &str) -> Result<i64, CatalogError> {
        let mut c = self.client()?;
        c.execute(
            "INSERT INTO models (name, pooling, dim, settings, created) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[&name, &pooling, &(dim as i64), &settings, &now()],
        )?;
        Ok(c.query_one("SELECT id FROM models WHERE name=$1 AND pooling=$2 AND settings=$3", &[&name, &pooling, &settings])?.get(0))
    }

    fn add_image(&self, img: &NewImage, model_id: i64, vector: &[f32]) -> Result<i64, CatalogError> {
        if let Some(room) = &img.room {
            check_text("room", room, MAX_ROOM)?;
        }
        let mut c = self.client()?;
        let mut tx = c.transaction()?;
        let row = tx
            .query_one(
                "INSERT INTO images (sha256, hotel_id, room, source, uploader_key_id, created, width, height, pdq, pdq_quality) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) RETURNING id",
                &[&img.sha256, &img.hotel_id, &img.room, &img.source.as_str(), &img.uploader_key_id, &now(), &i64::from(img.width), &i64::from(img.height), &img.pdq.to_string(), &i16::from(img.pdq_quality)],
            )
            .map_err(|e| if is(&e, &SqlState::FOREIGN_KEY_VIOLATION) { CatalogError::NoHotel(img.hotel_id) } else { e.into() })?;
        let id: i64 = row.get(0);
        tx.execute("INSERT INTO embeddings (image_id, model_id, vector) VALUES ($1, $2, $3)", &[&id, &model_id, &vector_to_blob(vector)])?;
        Self::log_change(&mut tx, id, "add")?;
        tx.commit()?;
        Ok(id)
    }

    fn put_embedding(&self, image_id: i64, model_id: i64, vector: &[f32]) -> Result<(), CatalogError> {
        self.client()?.execute(
            "INSERT INTO embeddings (image_id, model_id, vector) VALUES ($1, $2, $3) ON CONFLICT (image_id, model_id) DO UPDATE SET vector = EXCLUDED.vector",
            &[&image_id, &model_id, &vector_to_blob(vector)],
        )?;
        Ok(())
    }

    fn image(&self, id: i64) -> Result<Image, CatalogError> {
        self.images_where("WHERE id = $1", &[&id])?.pop().ok_or(CatalogError::NoImage(id))
    }

    fn images(&self, ids: &[i64]) -> Result<Vec<Image>, CatalogError> {
        self.images_where("WHERE id = ANY($1)", &[&ids])
    }

    fn images_with_sha(&self, sha256: &str) -> Result<Vec<Image>, CatalogError> {
        self.images_where("WHERE sha256 = $1 AND status = 'active'", &[&sha256])
    }

    fn sha_in_use(&self, sha256: &str) -> Result<bool, CatalogError> {
        Ok(self.client()?.query_one("SELECT EXISTS (SELECT 1 FROM images WHERE sha256 = $1 AND status != 'deleted')", &[&sha256])?.get(0))
    }

    fn images_of_hotel(&self, hotel_id: i64) -> Result<Vec<Image>, CatalogError> {
        self.images_where("WHERE hotel_id = $1 AND status = 'active' ORDER BY id DESC LIMIT 200", &[&hotel_id])
    }

    fn deleted_only_sha256(&self) -> Result<Vec<String>, CatalogError> {
        let rows = self.client()?.query(
            "SELECT DISTINCT d.sha256 FROM images d WHERE d.status = 'deleted' \
             AND NOT EXISTS (SELECT 1 FROM images a WHERE a.sha256 = d.sha256 AND a.status != 'deleted')",
            &[],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn set_status(&self, id: i64, status: Status) -> Result<(), CatalogError> {
        let mut c = self.client()?;
        let mut tx = c.transaction()?;
        if tx.execute("UPDATE images SET status = $2 WHERE id = $1", &[&id, &status.as_str()])? == 0 {
            return Err(CatalogError::NoImage(id));
        }
        Self::log_change(&mut tx, id, "status")?;
        tx.commit()?;
        Ok(())
    }

    fn changes_since(&self, since: i64, model_id: i64) -> Result<Vec<Change>, CatalogError> {
        let rows = self.client()?.query(
            "SELECT c.seq, i.id, i.hotel_id, i.status, i.pdq, i.pdq_quality, e.vector
             FROM changes c JOIN images i ON i.id = c.image_id
             LEFT JOIN embeddings e ON e.image_id = i.id AND e.model_id = $2
             WHERE c.seq > $1 ORDER BY c.seq",
            &[&since, &model_id],
        )?;
        Ok(rows
            .iter()
            .map(|r| Change {
                seq: r.get(0),
                image_id: r.get(1),
                hotel_id: r.get(2),
                status: Status::parse(r.get(3)),
                pdq: r.get::<_, &str>(4).parse().unwrap_or_default(),
                pdq_quality: r.get::<_, i16>(5) as u8,
                vector: r.get::<_, Option<&[u8]>>(6).map(blob_to_vector),
            })
            .collect())
    }

    fn active_pdq(&self) -> Result<Vec<ActivePdq>, CatalogError> {
        let rows = self.client()?.query("SELECT id, hotel_id, pdq, pdq_quality FROM images WHERE status = 'active'", &[])?;
        Ok(rows
            .iter()
            .map(|r| ActivePdq {
                image_id: r.get(0),
                hotel_id: r.get(1),
                pdq: r.get::<_, &str>(2).parse().unwrap_or_default(),
                quality: r.get::<_, i16>(3) as u8,
            })
            .collect())
    }

    fn last_change(&self) -> Result<i64, CatalogError> {
        Ok(self.client()?.query_one("SELECT COALESCE(MAX(seq), 0)::BIGINT FROM changes", &[])?.get(0))
    }

    fn images_without_embedding(&self, model_id: i64) -> Result<Vec<Image>, CatalogError> {
        self.images_where(
            "i WHERE status = 'active' AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.image_id = i.id AND e.model_id = $1) ORDER BY id",
            &[&model_id],
        )
    }

    fn image_counts(&self) -> Result<(i64, i64), CatalogError> {
        let r = self.client()?.query_one("SELECT COUNT(*), COUNT(*) FILTER (WHERE status = 'active') FROM images", &[])?;
        Ok((r.get(0), r.get(1)))
    }

    fn embeddings(&self, image_ids: &[i64], model_id: i64) -> Result<Vec<(i64, Vec<f32>)>, CatalogError> {
        let ids = image_ids.to_vec();
        let rows = self
            .client()?
            .query("SELECT image_id, vector FROM embeddings WHERE model_id = $1 AND image_id = ANY($2)", &[&model_id, &ids])?;
        Ok(rows.iter().map(|r| (r.get::<_, i64>(0), blob_to_vector(r.get::<_, &[u8]>(1)))).collect())
    }
}

impl AuditLog for PgCatalog {
    fn audit(&self, actor: &str, action: &str, detail: &serde_json::Value) -> Result<i64, CatalogError> {
        let r = self.client()?.query_one(
            "INSERT INTO audit (at, actor, action, detail) VALUES ($1, $2, $3, $4) RETURNING id",
            &[&now(), &actor, &action, &detail.to_string()],
        )?;
        Ok(r.get(0))
    }

    fn audit_entries_of(&self, action: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>, CatalogError> {
        let rows = self.client()?.query(
            "SELECT id, at, actor, action, detail FROM audit WHERE $1::TEXT IS NULL OR action = $1 ORDER BY id DESC LIMIT $2",
            &[&action, &(limit as i64)],
        )?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                id: r.get(0),
                at: r.get(1),
                actor: r.get(2),
                action: r.get(3),
                detail: serde_json::from_str(r.get(4)).unwrap_or(serde_json::Value::Null),
            })
            .collect())
    }
}

impl KeyStore for PgCatalog {
    fn insert_key(&self, id: &str, secret_sha256: &str, role: Role, label: &str) -> Result<(), CatalogError> {
        self.client()?.execute(
            "INSERT INTO api_keys (id, secret_sha256, role, label, created) VALUES ($1, $2, $3, $4, $5)",
            &[&id, &secret_sha256, &role.as_str(), &label, &now()],
        )?;
        Ok(())
    }

    fn key_secret(&self, id: &str) -> Result<Option<(String, Role)>, CatalogError> {
        let row = self.client()?.query_opt("SELECT secret_sha256, role FROM api_keys WHERE id = $1 AND revoked IS NULL", &[&id])?;
        Ok(row.map(|r| (r.get(0), r.get::<_, &str>(1).parse().unwrap_or(Role::Uploader))))
    }

    fn revoke_key(&self, id: &str) -> Result<bool, CatalogError> {
        Ok(self.client()?.execute("UPDATE api_keys SET revoked = $2 WHERE id = $1 AND revoked IS NULL", &[&id, &now()])? > 0)
    }
}

impl JobStore for PgCatalog {
    fn start_job(&self, kind: &str, started_by: &str) -> Result<Job, CatalogError> {
        let mut c = self.client()?;
        Self::reap_jobs(&mut c)?;
        let t = now();
        let inserted = c.query_one(
            &format!("INSERT INTO jobs (kind, state, started, started_by, pid, host, heartbeat) VALUES ($1, 'running', $2, $3, $4, $5, $2) RETURNING {JOB_COLUMNS}"),
            &[&kind, &t, &started_by, &i64::from(std::process::id()), &this_host()],
        );
        match inserted {
            Ok(r) => Ok(job_from_row(&r)),
            Err(e) if is(&e, &SqlState::UNIQUE_VIOLATION) => {
                let id = c.query_one("SELECT id FROM jobs WHERE kind = $1 AND state = 'running'", &[&kind])?.get(0);
                Err(CatalogError::JobRunning { kind: kind.to_string(), id })
            }
            Err(e) => Err(e.into()),
        }
    }

    fn job_progress(&self, id: i64, phase: &str, done: usize, total: usize) -> Result<(), CatalogError> {
        self.client()?.execute(
            "UPDATE jobs SET phase = $2, done = $3, total = $4, heartbeat = $5 WHERE id = $1 AND state = 'running'",
            &[&id, &phase, &(done as i64), &(total as i64), &now()],
        )?;
        Ok(())
    }

    fn heartbeat(&self, id: i64) -> Result<(), CatalogError> {
        self.client()?.execute("UPDATE jobs SET heartbeat = $2 WHERE id = $1 AND state = 'running'", &[&id, &now()])?;
        Ok(())
    }

    fn finish_job(&self, id: i64, error: Option<&str>) -> Result<(), CatalogError> {
        let state = if error.is_some() { JobState::Failed } else { JobState::Done };
        self.client()?
            .execute("UPDATE jobs SET state = $2, finished = $3, error = $4 WHERE id = $1", &[&id, &state.as_str(), &now(), &error])?;
        Ok(())
    }

    fn job(&self, id: i64) -> Result<Job, CatalogError> {
        let mut c = self.client()?;
        Self::reap_jobs(&mut c)?;
        let row = c.query_opt(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"), &[&id])?;
        row.map(|r| job_from_row(&r)).ok_or(CatalogError::NoJob(id))
    }

    fn jobs(&self, limit: usize) -> Result<Vec<Job>, CatalogError> {
        let mut c = self.client()?;
        Self::reap_jobs(&mut c)?;
        Ok(c.query(&format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY id DESC LIMIT $1"), &[&(limit as i64)])?
            .iter()
            .map(job_from_row)
            .collect())
    }

    fn last_done(&self, kind: &str) -> Result<i64, CatalogError> {
        Ok(self.client()?.query_one("SELECT COALESCE(MAX(id), 0)::BIGINT FROM jobs WHERE kind = $1 AND state = 'done'", &[&kind])?.get(0))
    }
}

impl ImportJournal for PgCatalog {
    fn import_outcome(&self, key: &str) -> Result<Option<(Option<i64>, String)>, CatalogError> {
        Ok(self.client()?.query_opt("SELECT image_id, outcome FROM imports WHERE source_key = $1", &[&key])?.map(|r| (r.get(0), r.get(1))))
    }

    fn record_import(&self, key: &str, image_id: Option<i64>, outcome: &str, detail: &str) -> Result<(), CatalogError> {
        self.client()?.execute(
            "INSERT INTO imports (source_key, image_id, outcome, detail) VALUES ($1, $2, $3, $4)
             ON CONFLICT (source_key) DO UPDATE SET image_id = EXCLUDED.image_id, outcome = EXCLUDED.outcome, detail = EXCLUDED.detail",
            &[&key, &image_id, &outcome, &detail],
        )?;
        Ok(())
    }
}

fn case_from_row(r: &Row) -> Case {
    Case { id: r.get(0), title: r.get(1), owner: r.get(2), created: r.get(3) }
}

fn entry_from_row(r: &Row) -> JournalRow {
    JournalRow {
        id: r.get(0),
        case_id: r.get(1),
        at: r.get(2),
        actor: r.get(3),
        kind: r.get(4),
        body: serde_json::from_str(r.get(5)).unwrap_or(serde_json::Value::Null),
    }
}

impl CaseStore for PgCatalog {
    fn create_case(&self, title: &str, owner: &str) -> Result<Case, CatalogError> {
        let r = self.client()?.query_one(
            "INSERT INTO cases (title, owner, created) VALUES ($1, $2, $3) RETURNING id, title, owner, created",
            &[&title, &owner, &now()],
        )?;
        Ok(case_from_row(&r))
    }

    fn case(&self, id: i64) -> Result<Case, CatalogError> {
        let r = self.client()?.query_opt("SELECT id, title, owner, created FROM cases WHERE id = $1", &[&id])?;
        r.map(|r| case_from_row(&r)).ok_or(CatalogError::NoCase(id))
    }

    fn hand_over_cases(&self, from: &str, to: &str) -> Result<usize, CatalogError> {
        Ok(self.client()?.execute("UPDATE cases SET owner = $2 WHERE owner = $1", &[&from, &to])? as usize)
    }

    fn cases(&self, owner: Option<&str>) -> Result<Vec<Case>, CatalogError> {
        let rows = self
            .client()?
            .query("SELECT id, title, owner, created FROM cases WHERE $1::TEXT IS NULL OR owner = $1 ORDER BY id DESC", &[&owner])?;
        Ok(rows.iter().map(case_from_row).collect())
    }

    fn add_case_entry(&self, case_id: i64, actor: &str, kind: &str, body: &serde_json::Value) -> Result<JournalRow, CatalogError> {
        let r = self.client()?.query_opt(
            "INSERT INTO case_entries (case_id, at, actor, kind, body) SELECT id, $2, $3, $4, $5 FROM cases WHERE id = $1 RETURNING id, case_id, at, actor, kind, body",
            &[&case_id, &now(), &actor, &kind, &body.to_string()],
        )?;
        r.map(|r| entry_from_row(&r)).ok_or(CatalogError::NoCase(case_id))
    }

    fn case_entries(&self, case_id: i64) -> Result<Vec<JournalRow>, CatalogError> {
        let rows = self
            .client()?
            .query("SELECT id, case_id, at, actor, kind, body FROM case_entries WHERE case_id = $1 ORDER BY id", &[&case_id])?;
        Ok(rows.iter().map(entry_from_row).collect())
    }
}

impl LearnedState for PgCatalog {
    fn put_state(&self, kind: &str, body: &serde_json::Value, created_by: &str) -> Result<i64, CatalogError> {
        let r = self.client()?.query_one(
            "INSERT INTO learned_state (kind, body, created, created_by) VALUES ($1, $2, $3, $4) RETURNING version",
            &[&kind, &body.to_string(), &now(), &created_by],
        )?;
        Ok(r.get(0))
    }

    fn latest_state(&self, kind: &str) -> Result<Option<(i64, serde_json::Value)>, CatalogError> {
        let row =
            self.client()?.query_opt("SELECT version, body FROM learned_state WHERE kind = $1 ORDER BY version DESC LIMIT 1", &[&kind])?;
        Ok(row.map(|r| (r.get(0), serde_json::from_str(r.get::<_, &str>(1)).unwrap_or(serde_json::Value::Null))))
    }

    fn state_version(&self, kind: &str) -> Result<i64, CatalogError> {
        Ok(self.client()?.query_one("SELECT COALESCE(MAX(version), 0) FROM learned_state WHERE kind = $1", &[&kind])?.get(0))
    }
}

impl HashBanks for PgCatalog {
    fn create_bank(&self, name: &str, created_by: &str) -> Result<Bank, CatalogError> {
        let created = now();
        match self.client()?.query_one(
            "INSERT INTO hash_banks (name, created, created_by) VALUES ($1, $2, $3) RETURNING id",
            &[&name, &created, &created_by],
        ) {
            Ok(r) => Ok(Bank { id: r.get(0), name: name.into(), created, created_by: created_by.into(), hashes: 0 }),
            Err(e) if is(&e, &SqlState::UNIQUE_VIOLATION) => Err(CatalogError::BankExists(name.into())),
            Err(e) => Err(e.into()),
        }
    }

    fn banks(&self) -> Result<Vec<Bank>, CatalogError> {
        let rows = self.client()?.query("SELECT b.id, b.name, b.created, b.created_by, (SELECT COUNT(*) FROM bank_hashes h WHERE h.bank_id = b.id) FROM hash_banks b ORDER BY b.id", &[])?;
        Ok(rows.iter().map(|r| Bank { id: r.get(0), name: r.get(1), created: r.get(2), created_by: r.get(3), hashes: r.get(4) }).collect())
    }

    fn add_bank_hashes(&self, bank_id: i64, hashes: &[(PdqHash, String)]) -> Result<usize, CatalogError> {
        let mut c = self.client()?;
        let mut tx = c.transaction()?;
        // One adder at a time, so ids become visible in order (readers keep the last id seen).
        tx.batch_execute("LOCK TABLE bank_hashes IN EXCLUSIVE MODE")?;
        let st = tx.prepare("INSERT INTO bank_hashes (bank_id, pdq, label) VALUES ($1, $2, $3) ON CONFLICT (bank_id, pdq) DO NOTHING")?;
        let mut added = 0;
        for (pdq, label) in hashes {
            added += tx.execute(&st, &[&bank_id, &pdq.to_string(), label])? as usize;
        }
        tx.commit()?;
        Ok(added)
    }

    fn bank_hashes_after(&self, after: i64, limit: usize) -> Result<Vec<BankHash>, CatalogError> {
        let rows = self
            .client()?
            .query("SELECT id, bank_id, pdq, label FROM bank_hashes WHERE id > $1 ORDER BY id LIMIT $2", &[&after, &(limit as i64)])?;
        Ok(rows
            .iter()
            .map(|r| BankHash { id: r.get(0), bank_id: r.get(1), pdq: r.get::<_, &str>(2).parse().unwrap_or_default(), label: r.get(3) })
            .collect())
    }
}
