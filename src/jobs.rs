//! Jobs: the threads that drive the engine's batch work. A re-index runs on a thread of its
//! own (its record, lease, heartbeat, progress and audit are the engine's: see
//! `engine/maintenance.rs`), and a follower thread keeps a replica's indexes caught up with
//! the catalog's change feed. Knows nothing of HTTP.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::catalog::Job;
use crate::engine::{Engine, EngineError, Step};

/// Runs a re-index job in this thread: records it, runs it, and returns the finished record
/// and how many photos were re-embedded. `progress` hears each step.
pub fn run_reindex(engine: &Engine, started_by: &str, progress: &(dyn Fn(Step, usize, usize) + Sync)) -> Result<(Job, usize), EngineError> {
    let job = engine.start_reindex(started_by)?;
    engine.run_reindex(job.id, started_by, progress)
}

/// Starts a re-index job on a thread of its own; returns its record at once (state running).
/// Refused with `job_running` while another one runs on any replica.
pub fn spawn_reindex(engine: Arc<Engine>, started_by: &str) -> Result<Job, EngineError> {
    let job = engine.start_reindex(started_by)?;
    let (id, who, runner) = (job.id, started_by.to_string(), engine.clone());
    let spawned = std::thread::Builder::new().name(format!("reindex-{id}")).spawn(move || {
        if let Err(e) = runner.run_reindex(id, &who, &|_, _, _| {}) {
            tracing::error!(job = id, "re-index job failed: {e}");
        }
    });
    if let Err(e) = spawned {
        let message = format!("cannot start a thread: {e}");
        engine.abandon_job(id, &message)?;
        return Err(EngineError::Internal(message));
    }
    Ok(job)
}

/// Photos the index audit checks at each look: at the default look every 200 ms, about a
/// million photos an hour, for under a tenth of one core.
const AUDIT_PER_LOOK: usize = 50;

/// A thread following the catalog's change feed for an engine; it stops when dropped.
pub struct Follower {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Starts following the change feed every `every` (see `Engine::follow`). A failed look
/// (the database restarting, say) is logged and retried at the next tick.
pub fn follow(engine: Arc<Engine>, every: Duration) -> Follower {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("follow".into())
        .spawn(move || {
            let mut failing = false;
            while !flag.load(Ordering::Relaxed) {
                match engine.follow() {
                    Ok(f) if f.rebuilt => tracing::info!("a re-index finished: index rebuilt from the catalog"),
                    Ok(_) => failing = false,
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!("cannot follow the catalog's change feed (retrying): {e}");
                    }
                    Err(_) => {}
                }
                engine.audit_index(AUDIT_PER_LOOK);
                std::thread::sleep(every);
            }
        })
        .ok();
    Follower { stop, thread }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
