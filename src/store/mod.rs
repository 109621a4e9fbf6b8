//! Photo store: content-addressed blobs (stored photos and case images), written once and
//! never changed, behind one trait with a local-directory, an in-memory and an S3 adapter.

pub mod fs;
pub mod memory;
pub mod s3;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use fs::{write_atomic, FileStore};
pub use memory::MemoryStore;
pub use s3::{S3Options, S3Store};

/// Why a photo could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file system failed.
    #[error("photo store {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// Not a valid content address.
    #[error("not a photo id: {0:?}")]
    BadId(String),
    /// Nothing is stored under this address.
    #[error("no stored photo {0}")]
    Missing(String),
    /// The bytes read back do not hash to their address.
    #[error("stored photo {0} is damaged: its bytes no longer match their sha256")]
    Corrupt(String),
    /// The object store failed or could not be reached.
    #[error("object store: {0}")]
    Remote(String),
}

/// Refuses anything but 64 lowercase hex digits: an address never names a path.
pub fn check_id(sha256: &str) -> Result<(), StoreError> {
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return Err(StoreError::BadId(sha256.chars().take(80).collect()));
    }
    Ok(())
}

/// Where a blob lives under a root: two levels of fan-out, then the address.
pub fn fan_out(sha256: &str) -> String {
    format!("{}/{}/{sha256}", &sha256[..2], &sha256[2..4])
}

/// Content-addressed blobs: the address of bytes is their sha256.
pub trait BlobStore: Send + Sync {
    /// Stores bytes (a no-op when they are there already); returns their sha256. Durable
    /// when it returns.
    fn put(&self, bytes: &[u8]) -> Result<String, StoreError>;
    /// The bytes stored under `sha256`.
    fn get(&self, sha256: &str) -> Result<Vec<u8>, StoreError>;
    /// Whether something is stored under `sha256`.
    fn exists(&self, sha256: &str) -> Result<bool, StoreError>;
    /// Removes a blob; false when there was none.
    fn remove(&self, sha256: &str) -> Result<bool, StoreError>;
    /// Where the store is, for messages (a directory or a URL).
    fn location(&self) -> String;
}

/// Where blobs go: `location` is a directory, `memory:`, or `s3://bucket/prefix`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreOptions {
    /// S3 settings, used by `s3://` locations.
    pub s3: S3Options,
}

/// Opens the blob store at `location`, under `sub` (e.g. "photos", "cases"): a directory
/// (`sub` below it), `memory:`, or `s3://bucket/prefix` (`prefix/sub`).
pub fn open(location: &str, sub: &str, opts: &StoreOptions) -> Result<Box<dyn BlobStore>, StoreError> {
    if let Some(rest) = location.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = [prefix.trim_matches('/'), sub].iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join("/");
        return Ok(Box::new(S3Store::open(bucket, &prefix, &opts.s3)?));
    }
    if location == "memory:" {
        return Ok(Box::new(MemoryStore::default()));
    }
    Ok(Box::new(FileStore::open(&Path::new(location).join(sub))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What every adapter must do; the S3 adapter runs it against SeaweedFS in `tests/scale.rs`.
    pub fn contract(s: &dyn BlobStore) {
        assert!(matches!(s.get("../../etc/passwd"), Err(StoreError::BadId(_))));
        assert!(matches!(s.put(b"x").map(|_| s.get(&"A".repeat(64))), Ok(Err(StoreError::BadId(_)))));
        let sha = s.put(b"hello").unwrap();
        assert_eq!(sha, crate::digest::sha256_hex(b"hello"));
        assert_eq!(s.get(&sha).unwrap(), b"hello");
        assert_eq!(s.put(b"hello").unwrap(), sha, "same bytes, same address");
        assert!(s.exists(&sha).unwrap());
        assert!(s.remove(&sha).unwrap());
        assert!(!s.exists(&sha).unwrap() && !s.remove(&sha).unwrap());
        assert!(matches!(s.get(&sha), Err(StoreError::Missing(_))));
    }

    #[test]
    fn file_and_memory_stores_keep_the_contract() {
        let dir = std::env::temp_dir().join(format!("hm-store-{}", std::process::id()));
        contract(&FileStore::open(&dir).unwrap());
        contract(&MemoryStore::default());
        std::fs::remove_dir_all(dir).ok();
    }
}
