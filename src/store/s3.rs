//! Blobs in an S3-compatible object store (`photos = "s3://bucket/prefix"`), through the
//! `object_store` crate: what several replicas share.

use std::future::Future;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::{check_id, fan_out, BlobStore, StoreError};
use crate::digest::sha256_hex;

/// Endpoint and credentials of an S3-compatible store. Unset fields come from the usual
/// `AWS_*` environment variables (`AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`, …).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct S3Options {
    /// e.g. `http://127.0.0.1:8333` for a local SeaweedFS; AWS itself when unset.
    pub endpoint: Option<String>,
    /// The region (`us-east-1` when neither this nor `AWS_REGION` is set).
    pub region: Option<String>,
    /// The access key (or `AWS_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// The secret key (or `AWS_SECRET_ACCESS_KEY`); keep it out of shared config files.
    pub secret_access_key: Option<String>,
    /// Allow plain HTTP (a store on loopback or a private network).
    pub allow_http: bool,
}

/// Content-addressed objects under `prefix/aa/bb/<sha256>` in one bucket. Every read is
/// checked against its address.
pub struct S3Store {
    // An Option only so that Drop can take it: a runtime dropped from inside another
    // runtime's context would panic, so it is shut down in the background instead.
    rt: Option<tokio::runtime::Runtime>,
    store: AmazonS3,
    prefix: String,
    location: String,
}

fn remote(e: object_store::Error) -> StoreError {
    StoreError::Remote(e.to_string())
}

impl S3Store {
    /// Connects to `bucket` (which must exist) with `opts`; `prefix` may be empty.
    pub fn open(bucket: &str, prefix: &str, opts: &S3Options) -> Result<Self, StoreError> {
        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket).with_allow_http(opts.allow_http);
        if let Some(v) = &opts.endpoint {
            b = b.with_endpoint(v);
        }
        if let Some(v) = &opts.region {
            b = b.with_region(v);
        }
        if let Some(v) = &opts.access_key_id {
            b = b.with_access_key_id(v);
        }
        if let Some(v) = &opts.secret_access_key {
            b = b.with_secret_access_key(v);
        }
        let store = b.build().map_err(remote)?;
        // Two threads: object_store's I/O runs there while callers block on it.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("s3")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Remote(e.to_string()))?;
        let location = format!("s3://{bucket}/{prefix}");
        let s3 = S3Store { rt: Some(rt), store, prefix: prefix.trim_matches('/').to_string(), location };
        // Fail at start, not at the first upload: a wrong endpoint, bucket or key shows here.
        let probe = ObjectPath::from(s3.prefix.as_str());
        s3.block(s3.store.list_with_delimiter(Some(&probe)))
            .map_err(|e| StoreError::Remote(format!("cannot list {}: {e}", s3.location)))?;
        Ok(s3)
    }

    fn key(&self, sha256: &str) -> Result<ObjectPath, StoreError> {
        check_id(sha256)?;
        let key = if self.prefix.is_empty() { fan_out(sha256) } else { format!("{}/{}", self.prefix, fan_out(sha256)) };
        Ok(ObjectPath::from(key))
    }

    /// Runs `f` to completion on the store's runtime. Engine calls come from plain threads
    /// (the CLI, rayon, tokio's blocking pool); a caller inside an async task would stall
    /// its worker, so it is moved to a scoped thread instead.
    fn block<T: Send>(&self, f: impl Future<Output = T> + Send) -> T {
        let Some(rt) = &self.rt else { unreachable!("the runtime lives until drop") };
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| s.spawn(|| rt.block_on(f)).join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        } else {
            rt.block_on(f)
        }
    }
}

impl Drop for S3Store {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl BlobStore for S3Store {
    fn put(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let sha = sha256_hex(bytes);
        if !self.exists(&sha)? {
            let key = self.key(&sha)?;
            self.block(self.store.put(&key, PutPayload::from(bytes.to_vec()))).map_err(remote)?;
        }
        Ok(sha)
    }

    fn get(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        let key = self.key(sha256)?;
        let bytes = self
            .block(async {
                let r = self.store.get(&key).await?;
                r.bytes().await
            })
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => StoreError::Missing(sha256.to_string()),
                e => remote(e),
            })?;
        if sha256_hex(&bytes) != sha256 {
            return Err(StoreError::Corrupt(sha256.to_string()));
        }
        Ok(bytes.to_vec())
    }

    fn exists(&self, sha256: &str) -> Result<bool, StoreError> {
        let key = self.key(sha256)?;
        match self.block(self.store.head(&key)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(remote(e)),
        }
    }

    fn remove(&self, sha256: &str) -> Result<bool, StoreError> {
        // S3 answers a delete of nothing with success: ask first, to say whether it was there.
        if !self.exists(sha256)? {
            return Ok(false);
        }
        let key = self.key(sha256)?;
        self.block(self.store.delete(&key)).map_err(remote)?;
        Ok(true)
    }

    fn location(&self) -> String {
        self.location.clone()
    }
}
