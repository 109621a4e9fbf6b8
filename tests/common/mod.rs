//! Helpers shared by the API tests and the load benchmark (`#[path]`-included there): a real
//! server on a free 127.0.0.1 port, and multipart bodies.

use std::sync::Arc;
use std::time::Duration;

use hotelmatch::api::ServeOptions;
use hotelmatch::engine::Engine;

/// `hotelmatch::api::serve` on a free 127.0.0.1 port, on a thread with its own runtime;
/// stopped (in-flight requests finished) when dropped.
pub struct Running {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Starts serving `engine`; returns once the port is bound.
    pub fn start(engine: Arc<Engine>, opts: ServeOptions) -> Running {
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
        Running { base: format!("http://{addr}"), stop: Some(stop_tx), thread: Some(thread) }
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
