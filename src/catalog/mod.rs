//! Catalog: hotels, images, embeddings, the change feed, the audit trail, keys, jobs and
//! the import journal. The catalog is the source of truth; the vector and hash indexes are
//! derived from it.
//!
//! The engine sees it through the traits of `ports`, one per concern, over the `rows` they
//! store; `rules` are what every adapter enforces alike. `sqlite` (the embedded default) and
//! `postgres` (several replicas) implement them all.

mod ports;
pub mod postgres;
mod rows;
mod rules;
pub mod sqlite;

use std::path::Path;

pub use ports::*;
pub use rows::*;
pub use rules::*;

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
