//! Helpers shared by every test file and the load benchmarks (`#[path]`-included there):
//! the repository root, an engine over in-memory adapters, a real server on a free
//! 127.0.0.1 port, and multipart bodies.

// Each test file is its own crate and uses only some of these.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hotelmatch::api::ServeOptions;
use hotelmatch::catalog::sqlite::SqliteCatalog;
use hotelmatch::embed::ColourLayout;
use hotelmatch::engine::{Engine, EngineSettings, SearchOptions};
use hotelmatch::media::decode::Limits;
use hotelmatch::store::{MemoryStore, StoreOptions};

/// The repository's root (data-sample/, scripts/, tests/fixtures/).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Engine settings over a fresh temporary data directory named after `name` (index dumps go there).
pub fn settings(name: &str) -> EngineSettings {
    let data_dir = std::env::temp_dir().join(format!("hm-usecase-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    EngineSettings {
        data_dir,
        catalog: String::new(),
        catalog_pool: 1,
        photos: String::new(),
        store: StoreOptions::default(),
        limits: Limits::default(),
        index: Default::default(),
        search: SearchOptions { verify: 5, ..Default::default() },
        duplicate_distance: 16,
        whiten: Default::default(),
        marks: Default::default(),
    }
}

/// An engine over an in-memory SQLite catalog, in-memory stores and the built-in
/// colour-layout embedder: no ONNX Runtime, no files but the index dumps.
pub fn in_memory(name: &str) -> Engine {
    in_memory_with(settings(name))
}

/// An engine with `s` over an in-memory catalog and stores, with the colour-layout embedder.
pub fn in_memory_with(s: EngineSettings) -> Engine {
    let limits = s.limits;
    Engine::from_parts(
        s,
        Box::new(SqliteCatalog::in_memory().unwrap()),
        Box::new(MemoryStore::default()),
        Box::new(MemoryStore::default()),
        Box::new(ColourLayout::new(limits)),
    )
    .unwrap()
}

/// `hotelmatch::api::serve` on a free 127.0.0.1 port, on a thread with its own runtime;
/// stopped (in-flight requests finished) when dropped.
pub struct Running {
    pub base: String,
    /// The engine served (a test may make it follow the catalog, as `serve`'s follower does).
    pub engine: Arc<Engine>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Starts serving `engine`; returns once the port is bound.
    pub fn start(engine: Arc<Engine>, opts: ServeOptions) -> Running {
        let served = engine.clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            tokio::runtime::Runtime::new().unwrap().block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                hotelmatch::api::serve(engine, &opts, listener, async {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        Running { base: format!("http://{addr}"), engine: served, stop: Some(stop_tx), thread: Some(thread) }
    }

    /// Asks the server to stop; requests in flight finish first.
    pub fn signal_stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// Stops the server and waits until it has; Err if its thread panicked.
    pub fn shutdown(&mut self) -> std::thread::Result<()> {
        self.signal_stop();
        self.thread.take().map_or(Ok(()), |t| t.join())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// A multipart body with file parts (name, bytes) and text parts (name, value).
pub fn multipart(files: &[(&str, &[u8])], text: &[(&str, &str)]) -> (String, Vec<u8>) {
    let boundary = "hotelmatch-test-boundary-7d1f";
    let mut body = Vec::new();
    for (name, bytes) in files {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    for (name, value) in text {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes());
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
