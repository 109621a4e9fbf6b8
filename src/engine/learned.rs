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

/// The calibration in use, and the catalog versions behind it.
pub(super) struct InForce {
    /// The catalog version in use (0: from the data directory or built in).
    version: i64,
    /// The newest catalog version looked at, taken up or (not parsing) passed over: a
    /// follower reads a version once, not at every look.
    seen: i64,
    calibration: Arc<Calibration>,
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
    if let Some(c) = stored {
        return Ok(InForce { version: seen, seen, calibration: Arc::new(c) });
    }
    let calibration = match Calibration::load(data_dir) {
        Ok(Some(c)) => c,
        Ok(None) => Calibration::default(),
        Err(e) => {
            tracing::warn!("{e}; using the built-in calibration");
            Calibration::default()
        }
    };
    Ok(InForce { version: 0, seen, calibration: Arc::new(calibration) })
}

/// The catalog's newest calibration version (0: none) and the calibration, unless it does
/// not parse (logged, and the one in use is kept).
fn stored_calibration(catalog: &dyn Catalog) -> Result<(i64, Option<Calibration>), EngineError> {
    let Some((version, body)) = catalog.latest_state(CALIBRATION)? else { return Ok((0, None)) };
    match serde_json::from_value::<Calibration>(body) {
        Ok(c) => Ok((version, Some(c))),
        Err(e) => {
            tracing::error!(version, "the catalog's calibration does not parse ({e}); keeping the one in use");
            Ok((version, None))
        }
    }
}

impl Engine {
    /// The calibration in use.
    pub fn calibration(&self) -> Arc<Calibration> {
        self.calibration.read().calibration.clone()
    }

    /// The catalog version of the calibration in use (0: from the data directory or built in).
    pub fn calibration_version(&self) -> i64 {
        self.calibration.read().version
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
        *self.calibration.write() = InForce { version, seen: version, calibration: Arc::new(fitted) };
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
        let Some(c) = stored else { return Ok(false) };
        *in_force = InForce { version: seen, seen, calibration: Arc::new(c) };
        Ok(true)
    }
}
