//! Index maintenance: loading, following the catalog's change feed, re-indexing, purging.

use std::path::PathBuf;
use std::time::Duration;

use rayon::prelude::*;

use super::learned::{Projection, Searchable};
use super::{Engine, EngineError, Step};
use crate::catalog::{Change, Job, Status, JOB_LEASE_SECS};
use crate::index::VectorIndex;
use crate::store::StoreError;

/// The kind name of re-index jobs.
pub const REINDEX: &str = "reindex";

/// What one look at the change feed did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Followed {
    /// Changes applied to the indexes.
    pub changes: usize,
    /// Whether the index was rebuilt because a re-index job finished (here or on another replica).
    pub rebuilt: bool,
}

impl Engine {
    /// Where the dump of an index made with whitening `version` goes (one directory per
    /// version: a dump is never loaded with another projection than its vectors were made with).
    fn index_dir(&self, version: i64) -> PathBuf {
        let dir = self.settings.data_dir.join("index");
        match version {
            0 => dir.join(format!("model-{}", self.model_id)),
            v => dir.join(format!("model-{}-whitening-{v}", self.model_id)),
        }
    }

    /// Loads the dump (or starts empty if it is unusable) and replays the change feed since it.
    pub(super) fn load_index(&self) -> Result<(), EngineError> {
        let (dim, opts) = (self.embedder.dim(), self.settings.index.clone());
        let last = self.catalog.last_change()?;
        let projection = self.index().projection.clone();
        let dir = self.index_dir(projection.version);
        let loaded: Box<dyn VectorIndex> = match crate::index::load_index(&dir, dim, opts.clone()) {
            // A dump ahead of the catalog was made against another catalog: not ours.
            Ok(idx) if idx.watermark() <= last => idx,
            Ok(idx) => {
                tracing::warn!("index dump is at change {} but the catalog at {last}: rebuilding from the catalog", idx.watermark());
                crate::index::new_index(dim, opts)
            }
            Err(e) => {
                if dir.exists() {
                    tracing::warn!("rebuilding the index from the catalog: {e}");
                }
                crate::index::new_index(dim, opts)
            }
        };
        let from_dump = loaded.watermark() > 0;
        self.swap_index(Searchable { vectors: loaded, projection });
        // The PDQ index is not dumped. Next to a dump it starts from the active photos
        // (cheap) and the feed since the dump brings both up to date; without one, the
        // whole feed builds both (starting from the photos too would add each hash twice).
        if from_dump {
            let active = self.catalog.active_pdq()?;
            let mut hashes = self.hashes_mut();
            for a in active {
                hashes.add(a.image_id as u64, &a.pdq);
            }
        }
        self.catch_up()?;
        Ok(())
    }

    /// Applies the catalog changes made after the index's watermark, to both indexes.
    pub(super) fn catch_up(&self) -> Result<usize, EngineError> {
        let _one_at_a_time = self.generation.lock();
        self.apply_feed()
    }

    // The caller holds `generation`.
    fn apply_feed(&self) -> Result<usize, EngineError> {
        let since = self.index().vectors.watermark();
        let changes = self.catalog.changes_since(since, self.model_id)?;
        if changes.is_empty() {
            return Ok(0);
        }
        // No lock over the index: searches go on while the changes land.
        self.index().apply(&changes)?;
        let mut hashes = self.hashes_mut();
        for c in &changes {
            if c.status == Status::Active {
                hashes.add(c.image_id as u64, &c.pdq);
            } else {
                hashes.remove(c.image_id as u64);
            }
        }
        Ok(changes.len())
    }

    /// Follows the catalog: applies new changes (uploads and status changes made through any
    /// replica), or rebuilds the index from the catalog when a re-index job finished since
    /// the last look. A replica calls this every `serve.follow_ms`.
    pub fn follow(&self) -> Result<Followed, EngineError> {
        self.follow_banks()?;
        // Photos embedded again without their marks are taken up by a rebuild.
        let remasked = self.follow_marks()?;
        if remasked {
            tracing::info!(version = self.marks_version(), "newer shared marks from the catalog are in use");
        }
        if self.follow_calibration()? {
            tracing::info!(version = self.calibration_version(), "a newer calibration from the catalog is in use");
        }
        let done = self.catalog.last_done(REINDEX)?;
        let seen = *self.generation.lock();
        if let Some(projection) = self.newer_whitening()? {
            tracing::info!(version = projection.version, "a newer whitening from the catalog: rebuilding the index with it");
            self.rebuild_projected(projection)?;
            let mut g = self.generation.lock();
            *g = (*g).max(done);
            return Ok(Followed { changes: 0, rebuilt: true });
        }
        if done > seen || remasked {
            self.rebuild_from_catalog()?;
            let mut g = self.generation.lock();
            *g = (*g).max(done);
            return Ok(Followed { changes: 0, rebuilt: true });
        }
        Ok(Followed { changes: self.catch_up()?, rebuilt: false })
    }

    /// Audits the next `count` photos of the index: each must be found by its own vector, and
    /// one that is not is linked in; how many were. The follower calls it at every look.
    pub fn audit_index(&self, count: usize) -> usize {
        let index = self.index();
        let mut from = self.audit_from.lock();
        let (next, relinked) = index.vectors.audit(*from, count);
        *from = next;
        if relinked > 0 {
            tracing::info!(relinked, "index audit: photos a search missed were linked in");
        }
        relinked
    }

    /// The last finished re-index job this process's index reflects (0: none).
    pub fn generation(&self) -> i64 {
        *self.generation.lock()
    }

    /// Records that the index reflects re-index job `job_id` (the replica that ran it).
    fn mark_reindexed(&self, job_id: i64) {
        let mut g = self.generation.lock();
        *g = (*g).max(job_id);
    }

    /// Builds a fresh, compacted index from the whole feed and swaps it in; searches go on
    /// against the old one meanwhile. Returns how many changes it was built from.
    pub(super) fn rebuild_from_catalog(&self) -> Result<usize, EngineError> {
        self.rebuild_projected(self.index().projection.clone())
    }

    /// Builds a fresh index from the whole feed, its vectors made with `projection`, and swaps
    /// both in together. Returns how many changes it was built from.
    pub(super) fn rebuild_projected(&self, projection: Projection) -> Result<usize, EngineError> {
        self.rebuild_with(projection, self.catalog.changes_since(0, self.model_id)?)
    }

    /// `rebuild_projected` from the whole feed already read, `changes`.
    pub(super) fn rebuild_with(&self, projection: Projection, changes: Vec<Change>) -> Result<usize, EngineError> {
        let fresh = Searchable { vectors: self.index().vectors.fresh(), projection };
        // Built once, in parallel, off the serving path. Each change carries its photo's
        // current status, so deleted photos are never inserted and compacting is a no-op.
        fresh.apply(&changes)?;
        let Searchable { mut vectors, projection } = fresh;
        vectors.compact();
        let _g = self.generation.lock();
        self.swap_index(Searchable { vectors, projection });
        // What was added or deleted while the new index was being built.
        self.apply_feed()?;
        Ok(changes.len())
    }

    /// Writes the index dump (with its watermark).
    pub fn save_index(&self) -> Result<(), EngineError> {
        let index = self.index();
        let dir = self.index_dir(index.projection.version);
        index.vectors.save(&dir)?;
        // Dumps made with another whitening can never be loaded again: they go.
        let (ours, plain) = (format!("model-{}-whitening-", self.model_id), format!("model-{}", self.model_id));
        if let Ok(entries) = std::fs::read_dir(self.settings.data_dir.join("index")) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if (name == plain || name.starts_with(&ours)) && e.path() != dir {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(())
    }

    /// Rebuilds the index from the catalog, purging deleted images, and saves it. Active
    /// photos without an embedding for the current model (the model or its settings changed)
    /// are re-embedded first from their stored copies; returns how many. Searches go on
    /// meanwhile against the old index, which is swapped for the new one when it is complete.
    pub fn rebuild_index(&self, progress: &(dyn Fn(Step, usize, usize) + Sync)) -> Result<usize, EngineError> {
        let missing = self.catalog.images_without_embedding(self.model_id)?;
        let total = missing.len();
        progress(Step::Embedding, 0, total);
        for (done, chunk) in missing.chunks(32).enumerate() {
            let vectors: Vec<Result<Vec<f32>, EngineError>> = chunk
                .par_iter()
                .map(|img| {
                    let bytes = self.store.get(&img.sha256)?;
                    let marks = self.stored_mark_rects(&bytes)?;
                    Ok(self.embedder.embed(crate::Input { marks: &marks, ..crate::Input::photo(&bytes) })?.vector)
                })
                .collect();
            for (img, v) in chunk.iter().zip(vectors) {
                match v {
                    Ok(v) => self.catalog.put_embedding(img.id, self.model_id, &v)?,
                    Err(e) => tracing::warn!(image = img.id, "cannot re-embed: {e}"),
                }
            }
            progress(Step::Embedding, (done * 32 + chunk.len()).min(total), total);
        }
        if self.settings.marks.enabled {
            self.learn_marks_only("reindex")?;
        }
        progress(Step::Indexing, 0, 1);
        // The whitening is learned again from the labels as they are now, from the same read
        // of the feed that the index is built from.
        let n = match self.settings.whiten.enabled {
            true => {
                let changes = self.catalog.changes_since(0, self.model_id)?;
                let projection = self.fit_whitening(&changes, "reindex")?.0;
                self.rebuild_with(projection, changes)?
            }
            false => self.rebuild_from_catalog()?,
        };
        self.save_index()?;
        progress(Step::Indexing, n, n);
        let purged = self.purge_deleted_files()?;
        if purged > 0 {
            tracing::info!(files = purged, "deleted photos' files removed from the store");
        }
        Ok(total)
    }

    /// Records a new re-index job, the lease on the rebuild: refused with `job_running`
    /// while one runs on any replica sharing the catalog.
    pub fn start_reindex(&self, started_by: &str) -> Result<Job, EngineError> {
        Ok(self.catalog.start_job(REINDEX, started_by)?)
    }

    /// Runs the recorded re-index job `id` to its end in this thread, keeping its record up
    /// to date (lease heartbeat, progress, outcome) and auditing it. Returns the finished
    /// record and how many photos were re-embedded.
    pub fn run_reindex(
        &self,
        id: i64,
        started_by: &str,
        progress: &(dyn Fn(Step, usize, usize) + Sync),
    ) -> Result<(Job, usize), EngineError> {
        // Dropped when the rebuild ends, which ends the heartbeat at once.
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let outcome = std::thread::scope(|s| {
            // The lease is renewed well within its term even while a long step reports nothing.
            s.spawn(move || {
                let beat = Duration::from_secs((JOB_LEASE_SECS / 4).max(1) as u64);
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(beat) {
                    if let Err(e) = self.catalog.heartbeat(id) {
                        tracing::warn!(job = id, "cannot renew the job's lease: {e}");
                    }
                }
            });
            let outcome = self.rebuild_index(&|step, done, total| {
                // Progress is advisory: a failed write must not stop the job.
                if let Err(e) = self.catalog.job_progress(id, step.as_str(), done, total) {
                    tracing::warn!(job = id, "cannot record progress: {e}");
                }
                progress(step, done, total);
            });
            drop(done_tx);
            outcome
        });
        let error = outcome.as_ref().err().map(|e| e.to_string());
        self.catalog.finish_job(id, error.as_deref())?;
        if error.is_none() {
            self.mark_reindexed(id);
        }
        let detail = serde_json::json!({"job_id": id, "reembedded": outcome.as_ref().ok(), "error": error});
        self.catalog.audit(started_by, "reindex", &detail)?;
        let reembedded = outcome?;
        Ok((self.catalog.job(id)?, reembedded))
    }

    /// Ends a recorded job that could not run, with the reason.
    pub fn abandon_job(&self, id: i64, reason: &str) -> Result<(), EngineError> {
        Ok(self.catalog.finish_job(id, Some(reason))?)
    }

    /// The most recent jobs, newest first.
    pub fn jobs(&self, limit: usize) -> Result<Vec<Job>, EngineError> {
        Ok(self.catalog.jobs(limit)?)
    }

    /// One job's record.
    pub fn job(&self, id: i64) -> Result<Job, EngineError> {
        Ok(self.catalog.job(id)?)
    }

    /// Removes from the store the files of deleted photos whose bytes no other photo (active
    /// or quarantined) shares; returns how many. Their catalog rows stay, as the record, and
    /// can no longer be restored.
    pub fn purge_deleted_files(&self) -> Result<usize, EngineError> {
        let orphans = self.catalog.deleted_only_sha256()?;
        let mut removed = 0;
        for sha in orphans {
            let bytes = match self.store.get(&sha) {
                Ok(b) => b,
                Err(StoreError::Missing(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            if !self.store.remove(&sha)? {
                continue;
            }
            // The same bytes may have been uploaded again (through any replica) since the
            // list was read: then they go back. See `add` for the other half.
            if self.catalog.sha_in_use(&sha)? {
                self.store.put(&bytes)?;
                continue;
            }
            removed += 1;
        }
        Ok(removed)
    }
}
