//! Jobs: batch work over the engine (re-embedding and re-indexing after a model change),
//! recorded in the catalog so that any process can inspect it. The record is a lease: one
//! re-index runs at a time across every replica sharing the catalog, and the others swap to
//! the new index when they see it finished (`Engine::follow`). Knows nothing of HTTP.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::catalog::{CatalogError, Job, JOB_LEASE_SECS};
use crate::engine::{Engine, EngineError, Step};

/// The kind name of re-index jobs.
pub const REINDEX: &str = "reindex";

/// Runs a re-index job in this thread: records it, reports progress to the catalog and to
/// `progress`, and records how it ended. Returns the finished record and how many photos
/// were re-embedded.
pub fn run_reindex(engine: &Engine, started_by: &str, progress: &(dyn Fn(Step, usize, usize) + Sync)) -> Result<(Job, usize), EngineError> {
    let job = engine.catalog().start_job(REINDEX, started_by)?;
    finish(engine, job.id, started_by, progress)
}

/// Starts a re-index job on a thread of its own; returns its record at once (state running).
/// Refuses with [`CatalogError::JobRunning`] while another one runs on any replica.
pub fn spawn_reindex(engine: Arc<Engine>, started_by: &str) -> Result<Job, EngineError> {
    let job = engine.catalog().start_job(REINDEX, started_by)?;
    let (id, who, runner) = (job.id, started_by.to_string(), engine.clone());
    let spawned = std::thread::Builder::new().name(format!("reindex-{id}")).spawn(move || {
        if let Err(e) = finish(&runner, id, &who, &|_, _, _| {}) {
            tracing::error!(job = id, "re-index job failed: {e}");
        }
    });
    if let Err(e) = spawned {
        let message = format!("cannot start a thread: {e}");
        engine.catalog().finish_job(id, Some(&message))?;
        return Err(EngineError::Catalog(CatalogError::Invalid { field: "job", message }));
    }
    Ok(job)
}

/// The rebuild itself, with the job's record and lease kept up to date.
fn finish(engine: &Engine, id: i64, started_by: &str, progress: &(dyn Fn(Step, usize, usize) + Sync)) -> Result<(Job, usize), EngineError> {
    // Dropped when the rebuild ends, which ends the heartbeat at once.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let outcome = std::thread::scope(|s| {
        // The lease is renewed well within its term even while a long step reports nothing.
        s.spawn(move || {
            let beat = Duration::from_secs((JOB_LEASE_SECS / 4).max(1) as u64);
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(beat) {
                if let Err(e) = engine.catalog().heartbeat(id) {
                    tracing::warn!(job = id, "cannot renew the job's lease: {e}");
                }
            }
        });
        let outcome = engine.rebuild_index(&|step, done, total| {
            // Progress is advisory: a failed write must not stop the job.
            if let Err(e) = engine.catalog().job_progress(id, step.as_str(), done, total) {
                tracing::warn!(job = id, "cannot record progress: {e}");
            }
            progress(step, done, total);
        });
        drop(done_tx);
        outcome
    });
    let error = outcome.as_ref().err().map(|e| e.to_string());
    engine.catalog().finish_job(id, error.as_deref())?;
    if error.is_none() {
        engine.mark_reindexed(id);
    }
    engine.catalog().audit(
        started_by,
        "reindex",
        &serde_json::json!({"job_id": id, "reembedded": outcome.as_ref().ok(), "error": error}),
    )?;
    let reembedded = outcome?;
    Ok((engine.catalog().job(id)?, reembedded))
}

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
