//! Learned state: the calibration and the whitening learned from the catalog's labels, kept
//! as versioned catalog rows so that every replica uses the same ones. A refit through any
//! replica is a new version; the others take it up at their next look at the feed.

use std::path::Path;
use std::sync::Arc;

use super::{Engine, EngineError};
use crate::calibrate::Calibration;
use crate::catalog::{Catalog, Change};
use crate::index::VectorIndex;
use crate::whiten::{WhitenError, Whitening};

/// The kind of the calibration's rows.
const CALIBRATION: &str = "calibration";

/// The calibration in use, and the catalog versions behind it.
pub(super) struct InForce {
    /// The catalog version in use (0: from the data directory or built in).
    version: i64,
    /// The newest catalog version looked at, taken up or (not parsing) passed over: a
    /// follower reads a version once, not at every look.
    seen: i64,
    calibration: Arc<Calibration>,
    /// Why the catalog's newest calibration is not in use (it does not parse, or a parameter
    /// is out of band): said by `/readyz`, which then answers "not ready".
    problem: Option<String>,
}

impl InForce {
    /// The calibration itself.
    pub(super) fn calibration(&self) -> Arc<Calibration> {
        self.calibration.clone()
    }
}

/// The calibration an engine starts with, and its catalog version: the catalog's newest, else
/// a `calibration.json` in the data directory (written before calibrations lived in the
/// catalog, or by a `calibrate` run without a catalog; version 0), else the built-in fit.
pub(super) fn initial_calibration(catalog: &dyn Catalog, data_dir: &Path) -> Result<InForce, EngineError> {
    let (seen, stored) = stored_calibration(catalog)?;
    let mut problem = match stored {
        Some(Ok(c)) => return Ok(InForce { version: seen, seen, calibration: Arc::new(c), problem: None }),
        Some(Err(p)) => Some(p),
        None => None,
    };
    let calibration = match Calibration::load(data_dir) {
        Ok(Some(c)) => c,
        Ok(None) => Calibration::default(),
        Err(e) => {
            tracing::error!("{e}; using the built-in calibration");
            problem = problem.or(Some(e.to_string()));
            Calibration::default()
        }
    };
    Ok(InForce { version: 0, seen, calibration: Arc::new(calibration), problem })
}

/// The catalog's newest calibration version (0: none) and the calibration, or why it is
/// unusable (it does not parse, or a parameter is out of band; logged).
fn stored_calibration(catalog: &dyn Catalog) -> Result<(i64, Option<Result<Calibration, String>>), EngineError> {
    let Some((version, body)) = catalog.latest_state(CALIBRATION)? else { return Ok((0, None)) };
    let parsed = serde_json::from_value::<Calibration>(body)
        .map_err(|e| e.to_string())
        .and_then(|c| c.check().map(|_| c).map_err(|e| e.to_string()));
    if let Err(e) = &parsed {
        tracing::error!(version, "the catalog's calibration {version} is unusable ({e}); keeping the one in use");
    }
    Ok((version, Some(parsed.map_err(|e| format!("calibration version {version}: {e}")))))
}

impl Engine {
    /// The calibration in use.
    pub fn calibration(&self) -> Arc<Calibration> {
        self.calibration.read().calibration.clone()
    }

    /// Why the catalog's newest calibration is not the one in use, if it is unusable.
    pub fn calibration_problem(&self) -> Option<String> {
        self.calibration.read().problem.clone()
    }

    /// The catalog version of the calibration in use (0: from the data directory or built in).
    pub fn calibration_version(&self) -> i64 {
        self.calibration.read().version
    }

    /// Puts `fitted` in force on every replica: a new catalog version, used here from the next
    /// search on and elsewhere from the next look at the feed. Audited as `calibrate`.
    pub fn set_calibration(&self, fitted: Calibration, samples: usize, actor: &str) -> Result<i64, EngineError> {
        fitted.check()?;
        let body = serde_json::to_value(&fitted).map_err(|e| EngineError::Internal(format!("calibration: {e}")))?;
        let version = self.catalog.put_state(CALIBRATION, &body, actor)?;
        let detail = serde_json::json!({
            "version": version,
            "source": fitted.source,
            "samples": samples,
            "temperature": fitted.temperature,
            "none_score": fitted.none_score,
        });
        *self.calibration.write() = InForce { version, seen: version, calibration: Arc::new(fitted), problem: None };
        self.catalog.audit(actor, "calibrate", &detail)?;
        Ok(version)
    }

    /// Takes up a newer calibration from the catalog; returns whether there was one.
    pub(super) fn follow_calibration(&self) -> Result<bool, EngineError> {
        if self.catalog.state_version(CALIBRATION)? <= self.calibration.read().seen {
            return Ok(false);
        }
        let (seen, stored) = stored_calibration(self.catalog.as_ref())?;
        let mut in_force = self.calibration.write();
        in_force.seen = seen;
        match stored {
            Some(Ok(c)) => {
                *in_force = InForce { version: seen, seen, calibration: Arc::new(c), problem: None };
                Ok(true)
            }
            Some(Err(p)) => {
                in_force.problem = Some(p);
                Ok(false)
            }
            None => Ok(false),
        }
    }
}

/// The projection an index's vectors were made with, and its catalog version (0: none).
#[derive(Clone, Default)]
pub(super) struct Projection {
    pub(super) version: i64,
    pub(super) whitening: Option<Arc<Whitening>>,
}

impl Projection {
    /// `v` as the index holds it.
    pub(super) fn apply(&self, v: &[f32]) -> Vec<f32> {
        match &self.whitening {
            Some(w) => w.apply(v),
            None => v.to_vec(),
        }
    }
}

/// A vector index and the projection its vectors were made with, swapped together: a search
/// projects its query with the projection of the very index that answers it.
pub(super) struct Searchable {
    pub(super) vectors: Box<dyn VectorIndex>,
    pub(super) projection: Projection,
}

impl Searchable {
    /// Applies catalog changes, their vectors projected.
    pub(super) fn apply(&self, changes: &[Change]) -> Result<(), EngineError> {
        if self.projection.whitening.is_none() {
            return Ok(self.vectors.apply(changes)?);
        }
        let projected: Vec<Change> =
            changes.iter().map(|c| Change { vector: c.vector.as_deref().map(|v| self.projection.apply(v)), ..c.clone() }).collect();
        Ok(self.vectors.apply(&projected)?)
    }

    /// The query as the index's vectors are.
    pub(super) fn project(&self, v: &[f32]) -> Vec<f32> {
        self.projection.apply(v)
    }
}

/// The kind of a model's whitening rows.
fn whitening_kind(model_id: i64) -> String {
    format!("whitening/model-{model_id}")
}

/// The catalog's newest whitening for `model_id` (version 0 and none: there is none; a
/// version that does not parse is logged and gives none).
pub(super) fn stored_whitening(catalog: &dyn Catalog, model_id: i64) -> Result<Projection, EngineError> {
    let Some((version, body)) = catalog.latest_state(&whitening_kind(model_id))? else { return Ok(Projection::default()) };
    if body.is_null() {
        return Ok(Projection { version, whitening: None });
    }
    match Whitening::from_json(body) {
        Ok(w) => Ok(Projection { version, whitening: Some(Arc::new(w)) }),
        Err(e) => {
            tracing::error!(version, "the catalog's whitening does not parse ({e}); searching without one");
            Ok(Projection { version, whitening: None })
        }
    }
}

/// What `learn_whitening` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Learned {
    /// The catalog version now in force.
    pub version: i64,
    /// What it was fitted on; `None` when too few labelled pairs left the search without one.
    pub fitted: Option<crate::whiten::Fitted>,
    /// Why none was fitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl Engine {
    /// The catalog version of the whitening the index is made with (0: none).
    pub fn whitening_version(&self) -> i64 {
        self.index().projection.version
    }

    /// Fits a whitening on the catalog's active photos and their hotels, puts it in force
    /// here (the index rebuilt and saved) and, through a new catalog version, on every
    /// replica. Below `whiten.min_pairs` the new version is "none". Audited as `learn`.
    pub fn learn_whitening(&self, actor: &str) -> Result<Learned, EngineError> {
        let changes = self.catalog.changes_since(0, self.model_id)?;
        let (projection, skipped) = self.fit_whitening(&changes, actor)?;
        let learned = Learned { version: projection.version, fitted: projection.whitening.as_ref().map(|w| w.fitted.clone()), skipped };
        self.rebuild_with(projection, changes)?;
        self.save_index()?;
        Ok(learned)
    }

    /// Fits a new whitening version on the active photos of the whole feed, `changes` (or
    /// "none" when too few pairs, and why), and stores it; audited.
    pub(super) fn fit_whitening(&self, changes: &[Change], actor: &str) -> Result<(Projection, Option<String>), EngineError> {
        let photos: Vec<(i64, &[f32])> = changes
            .iter()
            .filter(|c| c.status == crate::catalog::Status::Active)
            .filter_map(|c| Some((c.hotel_id, c.vector.as_deref()?)))
            .collect();
        let (body, whitening, skipped) = match Whitening::fit(&photos, &self.settings.whiten) {
            Ok(w) => (w.to_json(), Some(Arc::new(w)), None),
            Err(e @ WhitenError::TooFew { .. }) => {
                tracing::warn!("no whitening learned: {e}");
                (serde_json::Value::Null, None, Some(e.to_string()))
            }
            Err(e) => return Err(EngineError::Invalid { field: "whitening", message: e.to_string() }),
        };
        let version = self.catalog.put_state(&whitening_kind(self.model_id), &body, actor)?;
        *self.whitening_seen.lock() = version;
        let detail = serde_json::json!({
            "version": version,
            "fitted": whitening.as_ref().map(|w| &w.fitted),
            "skipped": skipped,
        });
        self.catalog.audit(actor, "learn", &detail)?;
        Ok((Projection { version, whitening }, skipped))
    }

    /// A newer whitening in the catalog, if there is one (each version is read once).
    pub(super) fn newer_whitening(&self) -> Result<Option<Projection>, EngineError> {
        let kind = whitening_kind(self.model_id);
        let mut seen = self.whitening_seen.lock();
        if self.catalog.state_version(&kind)? <= *seen {
            return Ok(None);
        }
        let p = stored_whitening(self.catalog.as_ref(), self.model_id)?;
        *seen = p.version;
        Ok(Some(p))
    }
}
