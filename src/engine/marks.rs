//! Shared marks in the engine: the stop-list learned from the catalog's photos (kept as
//! versioned catalog rows, followed by every replica), and the matched points of one
//! evidence photo, shown on demand with the points on marks left out.

use std::sync::Arc;

use super::search::QueryPhoto;
use super::{Engine, EngineError};
use crate::catalog::{Catalog, Status};
use crate::embed::pool::Mask;
use crate::marks::StopList;
use crate::verify::{self, Keypoints};

/// The kind of the stop-list's rows.
const MARKS: &str = "marks";

/// The stop-list in use and its catalog version (0: none).
#[derive(Default)]
pub(super) struct MarksInForce {
    pub(super) version: i64,
    pub(super) seen: i64,
    pub(super) list: Arc<StopList>,
}

/// The catalog's newest stop-list (none when it has none or it does not parse, logged).
pub(super) fn stored_marks(catalog: &dyn Catalog) -> Result<MarksInForce, EngineError> {
    let Some((version, body)) = catalog.latest_state(MARKS)? else { return Ok(MarksInForce::default()) };
    match StopList::from_json(body) {
        Ok(list) => Ok(MarksInForce { version, seen: version, list: Arc::new(list) }),
        Err(e) => {
            tracing::error!(version, "the catalog's marks do not parse ({e}); none are left out");
            Ok(MarksInForce { version: 0, seen: version, list: Arc::default() })
        }
    }
}

/// The matched points of a query photo and one stored photo.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct Points {
    pub image_id: i64,
    /// Matches consistent with one scene seen from two positions, none on a shared mark.
    pub matched_points: usize,
    /// Some of them, `[x, y]` on the query then on the stored photo, in fractions.
    pub matched_pairs: Vec<[f32; 4]>,
    /// Query keypoints left out as a shared mark, `[x, y]` in fractions of the query.
    pub mark_points: Vec<[f32; 2]>,
}

/// `k` split into the keypoints off the marks and the positions (fractions) of those on them.
fn off_marks(k: Keypoints, marks: &StopList, distance: u32) -> (Keypoints, Vec<[f32; 2]>) {
    if marks.is_empty() {
        return (k, Vec::new());
    }
    let on = marks.on_marks(&k, distance);
    let mut kept = Keypoints { size: k.size, ..Default::default() };
    let mut left = Vec::new();
    for ((xy, d), on) in k.xy.into_iter().zip(k.descriptors).zip(on) {
        if on {
            left.push([xy[0] / k.size[0].max(1.0), xy[1] / k.size[1].max(1.0)]);
        } else {
            kept.xy.push(xy);
            kept.descriptors.push(d);
        }
    }
    (kept, left)
}

impl Engine {
    /// The stop-list in use.
    pub fn marks(&self) -> Arc<StopList> {
        self.marks.read().list.clone()
    }

    /// The catalog version of the stop-list in use (0: none).
    pub fn marks_version(&self) -> i64 {
        self.marks.read().version
    }

    /// Learns the stop-list from up to `marks.max_photos` active photos spread over the
    /// catalog, and puts it in force here and (a new catalog version) on every replica.
    /// Audited as `learn-marks`; returns the version and how many marks it holds.
    pub fn learn_marks(&self, actor: &str) -> Result<(i64, usize), EngineError> {
        let opts = &self.settings.marks;
        // Ids and hotels only: the catalog's list of active photos, not the feed's vectors.
        let mut active: Vec<(i64, i64)> = self.catalog.active_pdq()?.into_iter().map(|a| (a.image_id, a.hotel_id)).collect();
        active.sort_unstable();
        let step = (active.len() as f64 / opts.max_photos.max(1) as f64).max(1.0);
        let picked: Vec<(i64, i64)> =
            (0..active.len().min(opts.max_photos)).map(|k| active[((k as f64 * step) as usize).min(active.len() - 1)]).collect();
        let ids: Vec<i64> = picked.iter().map(|p| p.0).collect();
        let shas: std::collections::HashMap<i64, String> = self.catalog.images(&ids)?.into_iter().map(|i| (i.id, i.sha256)).collect();
        use rayon::prelude::*;
        let photos: Vec<(i64, Keypoints)> =
            picked.par_iter().filter_map(|(id, hotel)| Some((*hotel, self.stored_keypoints(shas.get(id)?)?))).collect();
        let list = StopList::learn(&photos, opts);
        let version = self.catalog.put_state(MARKS, &list.to_json(), actor)?;
        let n = list.len();
        let detail = serde_json::json!({"version": version, "marks": n, "photos": list.photos, "hotels": list.hotels});
        *self.marks.write() = MarksInForce { version, seen: version, list: Arc::new(list) };
        self.catalog.audit(actor, "learn-marks", &detail)?;
        Ok((version, n))
    }

    /// Takes up a newer stop-list from the catalog; returns whether there was one.
    pub(super) fn follow_marks(&self) -> Result<bool, EngineError> {
        if self.catalog.state_version(MARKS)? <= self.marks.read().seen {
            return Ok(false);
        }
        let fresh = stored_marks(self.catalog.as_ref())?;
        let taken = fresh.version != 0;
        let mut m = self.marks.write();
        if taken {
            *m = fresh;
        } else {
            m.seen = fresh.seen;
        }
        Ok(taken)
    }

    /// `k` without its keypoints on shared marks, and the positions (fractions) of those left out.
    pub(super) fn without_marks(&self, k: Keypoints) -> (Keypoints, Vec<[f32; 2]>) {
        off_marks(k, &self.marks(), self.settings.marks.distance)
    }

    /// The matched points of a query photo (outside `mask`) and the active stored photo
    /// `image_id`, points on shared marks left out: the evidence an investigator asks for
    /// on one candidate. Audited as `search-points` (the query's sha256, never the photo).
    pub fn matched_points(&self, bytes: &[u8], mask: Option<&Mask>, image_id: i64, actor: &str) -> Result<Points, EngineError> {
        let img = self.catalog.image(image_id)?;
        if img.status != Status::Active {
            return Err(crate::catalog::CatalogError::NoImage(image_id).into());
        }
        let photo = QueryPhoto::decode(bytes, &self.settings.limits)?;
        let query = super::search::query_keypoints(photo.decoded(), mask)?;
        let stored =
            self.stored_keypoints(&img.sha256).ok_or_else(|| EngineError::Internal(format!("photo {image_id} could not be read again")))?;
        let (query, mark_points) = self.without_marks(query);
        let m = verify::matched(&query, &self.without_marks(stored).0);
        let detail =
            serde_json::json!({"query_sha256": crate::digest::sha256_hex(bytes), "image_id": image_id, "matched_points": m.inliers});
        self.catalog.audit(actor, "search-points", &detail)?;
        Ok(Points { image_id, matched_points: m.inliers, matched_pairs: m.pairs, mark_points })
    }
}
