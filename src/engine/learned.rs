//! Learned state: the calibration (and, later, whatever else is learned from the catalog),
//! kept as versioned catalog rows so that every replica uses the same one. A refit through
//! any replica is a new version; the others take it up at their next look at the feed.

use std::path::Path;
use std::sync::Arc;

use super::{Engine, EngineError};
use crate::calibrate::Calibration;
use crate::catalog::Catalog;

/// The kind of the calibration's rows.
const CALIBRATION: &str = "calibration";

/// The calibration an engine starts with, and its catalog version: the catalog's newest, else
/// a `calibration.json` in the data directory (written before calibrations lived in the
/// catalog, or by a `calibrate` run without a catalog; version 0), else the built-in fit.
pub(super) fn initial_calibration(catalog: &dyn Catalog, data_dir: &Path) -> Result<(i64, Calibration), EngineError> {
    if let Some(stored) = stored_calibration(catalog)? {
        return Ok(stored);
    }
    match Calibration::load(data_dir) {
        Ok(Some(c)) => Ok((0, c)),
        Ok(None) => Ok((0, Calibration::default())),
        Err(e) => {
            tracing::warn!("{e}; using the built-in calibration");
            Ok((0, Calibration::default()))
        }
    }
}

/// The catalog's newest calibration; one that does not parse is logged and passed over.
fn stored_calibration(catalog: &dyn Catalog) -> Result<Option<(i64, Calibration)>, EngineError> {
    let Some((version, body)) = catalog.latest_state(CALIBRATION)? else { return Ok(None) };
    match serde_json::from_value::<Calibration>(body) {
        Ok(c) => Ok(Some((version, c))),
        Err(e) => {
            tracing::error!(version, "the catalog's calibration does not parse ({e}); using an older one");
            Ok(None)
        }
    }
}

impl Engine {
    /// The calibration in use.
    pub fn calibration(&self) -> Arc<Calibration> {
        self.calibration.read().1.clone()
    }

    /// The catalog version of the calibration in use (0: from the data directory or built in).
    pub fn calibration_version(&self) -> i64 {
        self.calibration.read().0
    }

    /// Puts `fitted` in force on every replica: a new catalog version, used here from the next
    /// search on and elsewhere from the next look at the feed. Audited as `calibrate`.
    pub fn set_calibration(&self, fitted: Calibration, samples: usize, actor: &str) -> Result<i64, EngineError> {
        let body = serde_json::to_value(&fitted).map_err(|e| EngineError::Internal(format!("calibration: {e}")))?;
        let version = self.catalog.put_state(CALIBRATION, &body, actor)?;
        let detail = serde_json::json!({
            "version": version,
            "source": fitted.source,
            "samples": samples,
            "temperature": fitted.temperature,
            "none_score": fitted.none_score,
        });
        *self.calibration.write() = (version, Arc::new(fitted));
        self.catalog.audit(actor, "calibrate", &detail)?;
        Ok(version)
    }

    /// Takes up a newer calibration from the catalog; returns whether there was one.
    pub(super) fn follow_calibration(&self) -> Result<bool, EngineError> {
        if self.catalog.state_version(CALIBRATION)? <= self.calibration_version() {
            return Ok(false);
        }
        let Some((version, c)) = stored_calibration(self.catalog.as_ref())? else { return Ok(false) };
        *self.calibration.write() = (version, Arc::new(c));
        Ok(true)
    }
}
