//! Blobs as files under one directory (the embedded default), written atomically.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{check_id, fan_out, BlobStore, StoreError};
use crate::digest::sha256_hex;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    // Unique per process and call: two writers of the same file never share a temporary.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{}.{}-{n}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("file"), std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all(); // makes the rename durable; not all file systems allow it
    }
    Ok(())
}

/// Content-addressed photo files under one directory.
pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    /// Opens (creating) the store under `root`.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(root).map_err(io_err(root))?;
        Ok(FileStore { root: root.to_path_buf() })
    }

    /// Where the photo with this sha256 lives.
    pub fn path(&self, sha256: &str) -> Result<PathBuf, StoreError> {
        check_id(sha256)?;
        Ok(self.root.join(fan_out(sha256)))
    }
}

impl BlobStore for FileStore {
    fn put(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let sha = sha256_hex(bytes);
        let path = self.path(&sha)?;
        if !path.exists() {
            write_atomic(&path, bytes)?;
        }
        Ok(sha)
    }

    fn get(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path(sha256)?;
        std::fs::read(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => StoreError::Missing(sha256.to_string()),
            _ => StoreError::Io { path: path.clone(), source },
        })
    }

    fn exists(&self, sha256: &str) -> Result<bool, StoreError> {
        Ok(self.path(sha256)?.exists())
    }

    fn remove(&self, sha256: &str) -> Result<bool, StoreError> {
        let path = self.path(sha256)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }
}
