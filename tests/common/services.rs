//! Real PostgreSQL and SeaweedFS servers on 127.0.0.1 for a test, started and stopped by
//! `scripts/services.sh`. When one cannot be started the test says so and is skipped,
//! unless HOTELMATCH_REQUIRE_SERVICES is set (CI sets it): then it fails.

use std::path::PathBuf;
use std::process::Command;

/// A running service; stopped, and its directory removed, when dropped.
pub struct Service {
    kind: &'static str,
    dir: PathBuf,
    /// The PostgreSQL URL, or the S3 endpoint.
    pub url: String,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/services.sh")
}

impl Service {
    /// Starts `kind` ("postgres", or "s3" with the bucket to create in `extra`).
    pub fn start(kind: &'static str, name: &str, extra: &[&str]) -> Option<Service> {
        let dir = std::env::temp_dir().join(format!("hm-{kind}-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new("bash").arg(script()).args([kind, "start"]).arg(&dir).args(extra).output();
        match out {
            Ok(o) if o.status.success() => Some(Service { kind, dir, url: String::from_utf8_lossy(&o.stdout).trim().to_string() }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                    Err(e) => e.to_string(),
                };
                if std::env::var_os("HOTELMATCH_REQUIRE_SERVICES").is_some() {
                    panic!("cannot start {kind} (HOTELMATCH_REQUIRE_SERVICES is set): {why}");
                }
                eprintln!("SKIPPED: cannot start {kind} on this machine: {why}");
                None
            }
        }
    }

    /// A new, empty database on this PostgreSQL server; its URL.
    pub fn database(&self, name: &str) -> String {
        let mut c = postgres::Client::connect(&self.url, postgres::NoTls).unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        self.url.replace("/postgres", &format!("/{name}"))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script()).args([self.kind, "stop"]).arg(&self.dir).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
