//! Blobs in memory, for tests of the use cases and throw-away evaluation runs.

use parking_lot::RwLock;
use std::collections::HashMap;

use super::{check_id, BlobStore, StoreError};
use crate::digest::sha256_hex;

/// Blobs in a map, gone when dropped.
#[derive(Default)]
pub struct MemoryStore {
    blobs: RwLock<HashMap<String, Vec<u8>>>,
}

impl BlobStore for MemoryStore {
    fn put(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let sha = sha256_hex(bytes);
        self.blobs.write().entry(sha.clone()).or_insert_with(|| bytes.to_vec());
        Ok(sha)
    }

    fn get(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        check_id(sha256)?;
        self.blobs.read().get(sha256).cloned().ok_or_else(|| StoreError::Missing(sha256.to_string()))
    }

    fn exists(&self, sha256: &str) -> Result<bool, StoreError> {
        check_id(sha256)?;
        Ok(self.blobs.read().contains_key(sha256))
    }

    fn remove(&self, sha256: &str) -> Result<bool, StoreError> {
        check_id(sha256)?;
        Ok(self.blobs.write().remove(sha256).is_some())
    }

    fn location(&self) -> String {
        "memory:".into()
    }
}
