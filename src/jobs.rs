//! Jobs: batch work over the engine (re-embedding and re-indexing after a model change),
//! recorded in the catalog so that any process can inspect it. Knows nothing of HTTP.

use std::sync::Arc;

use crate::catalog::{CatalogError, Job};
use crate::engine::{Engine, EngineError, Step};

/// The kind name of re-index jobs.
pub const REINDEX: &str = "reindex";

/// Runs a re-index job in this thread: records it, reports progress to the catalog and to
/// `progress`, and records how it ended. Returns the finished record and how many photos
/// were re-embedded.
pub fn run_reindex(engine: &Engine, started_by: &str, progress: &(dyn Fn(Step, usize, usize) + Sync)) -> Result<(Job, usize), EngineError> {
    let job = engine.with_catalog(|c| c.start_job(REINDEX, started_by))?;
    finish(engine, job.id, started_by, progress)
}

/// Starts a re-index job on a thread of its own; returns its record at once (state running).
/// Refuses with [`CatalogError::JobRunning`] while another one runs.
pub fn spawn_reindex(engine: Arc<Engine>, started_by: &str) -> Result<Job, EngineError> {
    let job = engine.with_catalog(|c| c.start_job(REINDEX, started_by))?;
    let (id, who, runner) = (job.id, started_by.to_string(), engine.clone());
    let spawned = std::thread::Builder::new().name(format!("reindex-{id}")).spawn(move || {
        if let Err(e) = finish(&runner, id, &who, &|_, _, _| {}) {
            tracing::error!(job = id, "re-index job failed: {e}");
        }
    });
    if let Err(e) = spawned {
        let message = format!("cannot start a thread: {e}");
        engine.with_catalog(|c| c.finish_job(id, Some(&message)))?;
        return Err(EngineError::Catalog(CatalogError::Invalid { field: "job", message }));
    }
    Ok(job)
}

/// The rebuild itself, with the job's record kept up to date.
fn finish(engine: &Engine, id: i64, started_by: &str, progress: &(dyn Fn(Step, usize, usize) + Sync)) -> Result<(Job, usize), EngineError> {
    let outcome = engine.rebuild_index(&|step, done, total| {
        // Progress is advisory: a failed write must not stop the job.
        if let Err(e) = engine.with_catalog(|c| c.job_progress(id, step.as_str(), done, total)) {
            tracing::warn!(job = id, "cannot record progress: {e}");
        }
        progress(step, done, total);
    });
    let error = outcome.as_ref().err().map(|e| e.to_string());
    engine.with_catalog(|c| {
        c.finish_job(id, error.as_deref())?;
        c.audit(started_by, "reindex", &serde_json::json!({"job_id": id, "reembedded": outcome.as_ref().ok(), "error": error}))
    })?;
    let reembedded = outcome?;
    Ok((engine.with_catalog(|c| c.job(id))?, reembedded))
}
