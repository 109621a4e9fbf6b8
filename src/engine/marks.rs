//! Shared marks in the engine: the stop-list learned from the catalog's photos (kept as
//! versioned catalog rows, followed by every replica), and the matched points of one
//! evidence photo, shown on demand with the points on marks left out.

use std::sync::Arc;

use super::search::QueryPhoto;
use super::{Engine, EngineError};
use crate::catalog::{Catalog, Status};
use crate::embed::pool::Mask;
use crate::marks::StopList;
use crate::media::decode::{self, Decoded};
use crate::verify::{self, Keypoints};

/// The kind of the stop-list's rows.
const MARKS: &str = "marks";

/// The stop-list in use and its catalog version (0: none).
#[derive(Default)]
pub(super) struct MarksInForce {
    pub(super) version: i64,
    pub(super) seen: i64,
    pub(super) list: Arc<StopList>,
    /// Whether photos were embedded with this list's marks masked (`marks.mask_embedding`).
    pub(super) masked: bool,
}

/// The catalog's newest stop-list (none when it has none or it does not parse, logged), and
/// whether its learning embedded photos again.
pub(super) fn stored_marks(catalog: &dyn Catalog) -> Result<(MarksInForce, bool), EngineError> {
    let Some((version, body)) = catalog.latest_state(MARKS)? else { return Ok((MarksInForce::default(), false)) };
    let remasked = body.get("remasked").and_then(|r| r.as_u64()).is_some_and(|r| r > 0);
    let masked = body.get("masked").and_then(|m| m.as_bool()).unwrap_or(false);
    match StopList::from_json(body) {
        Ok(list) => Ok((MarksInForce { version, seen: version, list: Arc::new(list), masked }, remasked)),
        Err(e) => {
            tracing::error!(version, "the catalog's marks do not parse ({e}); none are left out");
            Ok((MarksInForce { version: 0, seen: version, list: Arc::default(), masked }, remasked))
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

/// What `learn_marks` did.
#[derive(Debug, Clone, Copy, serde::Serialize, PartialEq)]
pub struct MarksLearned {
    /// The catalog version now in force.
    pub version: i64,
    /// Keypoints the stop-list holds.
    pub marks: usize,
    /// Active photos embedded again because they carry a mark (now or under the list before).
    pub remasked: usize,
}

/// `regions` (fractions `[x0, y0, x1, y1]`) as rectangles in a `width` x `height` photo.
fn rects(regions: &[[f32; 4]], width: u32, height: u32) -> Vec<[u32; 4]> {
    let (w, h) = (width as f32, height as f32);
    regions
        .iter()
        .map(|r| {
            let (x, y) = ((r[0] * w) as u32, (r[1] * h) as u32);
            [
                x.min(width.saturating_sub(1)),
                y.min(height.saturating_sub(1)),
                ((r[2] * w).ceil() as u32).saturating_sub(x).max(1),
                ((r[3] * h).ceil() as u32).saturating_sub(y).max(1),
            ]
        })
        .collect()
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
    /// catalog and puts it in force here and, as a new catalog version, on every replica.
    /// With `marks.mask_embedding` (or when the list before was masked), every active photo
    /// that carries a mark under it or the list before is embedded again, its marks masked
    /// as a victim is, and the index rebuilt. Audited as `learn-marks`.
    pub fn learn_marks(&self, actor: &str) -> Result<MarksLearned, EngineError> {
        let learned = self.learn_marks_only(actor)?;
        if learned.remasked > 0 {
            self.rebuild_from_catalog()?;
        }
        Ok(learned)
    }

    /// `learn_marks` without the rebuild (for a caller that rebuilds next).
    pub(super) fn learn_marks_only(&self, actor: &str) -> Result<MarksLearned, EngineError> {
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
        let list = Arc::new(StopList::learn(&photos, opts));
        let (before, was_masked) = {
            let m = self.marks.read();
            (m.list.clone(), m.masked)
        };
        let masked = opts.mask_embedding;
        // Photos embedded with the list before's marks masked are embedded again too.
        let none = StopList::default();
        let remasked = match (was_masked, masked) {
            (false, false) => 0,
            (false, true) => self.remask(&active, &none, &list)?,
            (true, true) => self.remask(&active, &before, &list)?,
            (true, false) => self.remask(&active, &before, &none)?,
        };
        let mut body = list.to_json();
        body["remasked"] = serde_json::json!(remasked);
        body["masked"] = serde_json::json!(masked);
        let version = self.catalog.put_state(MARKS, &body, actor)?;
        let learned = MarksLearned { version, marks: list.len(), remasked };
        let detail = serde_json::json!({"version": version, "marks": learned.marks, "photos": list.photos, "hotels": list.hotels, "remasked": remasked});
        *self.marks.write() = MarksInForce { version, seen: version, list, masked };
        self.catalog.audit(actor, "learn-marks", &detail)?;
        Ok(learned)
    }

    /// Embeds again, with the marks of `now` masked (`now` empty: none), every photo of `active` (id, hotel) that
    /// carries a mark under `now` or `before`; returns how many. Reads every photo once: the
    /// cost of a re-embedding pass, paid when the marks are learned, not per search.
    fn remask(&self, active: &[(i64, i64)], before: &StopList, now: &StopList) -> Result<usize, EngineError> {
        if before.is_empty() && now.is_empty() {
            return Ok(0);
        }
        use rayon::prelude::*;
        let distance = self.settings.marks.distance;
        let mut remasked = 0;
        for chunk in active.chunks(256) {
            let ids: Vec<i64> = chunk.iter().map(|a| a.0).collect();
            let images = self.catalog.images(&ids)?;
            let vectors: Vec<(i64, Vec<f32>)> = images
                .par_iter()
                .filter_map(|img| {
                    let embed = || -> Result<Option<Vec<f32>>, EngineError> {
                        let bytes = self.store.get(&img.sha256)?;
                        let side = verify::MAX_SIDE;
                        let d = decode::decode(&bytes, &self.settings.limits, Some((side, side)))?;
                        let k = verify::keypoints(&d.rgb, None);
                        let regions = now.regions(&k, distance);
                        if regions.is_empty() && before.regions(&k, distance).is_empty() {
                            return Ok(None);
                        }
                        let marks = rects(&regions, d.full_width, d.full_height);
                        let input = crate::Input { bytes: &bytes, mask: None, auto_mask: false, decoded: None, marks: &marks };
                        Ok(Some(self.embedder.embed(input)?.vector))
                    };
                    match embed() {
                        Ok(v) => v.map(|v| (img.id, v)),
                        Err(e) => {
                            tracing::warn!(image = img.id, "cannot embed again without its marks: {e}");
                            None
                        }
                    }
                })
                .collect();
            for (id, v) in &vectors {
                self.catalog.put_embedding(*id, self.model_id, v)?;
            }
            remasked += vectors.len();
        }
        Ok(remasked)
    }

    /// `mark_rects` of stored bytes, decoded (at the keypoints' size) only when marks are
    /// masked at all.
    pub(super) fn stored_mark_rects(&self, bytes: &[u8]) -> Result<Vec<[u32; 4]>, EngineError> {
        if !self.marks.read().masked {
            return Ok(Vec::new());
        }
        let side = verify::MAX_SIDE;
        Ok(self.mark_rects(&decode::decode(bytes, &self.settings.limits, Some((side, side)))?))
    }

    /// Where `decoded`'s shared marks are, as rectangles in its full-resolution pixels, when
    /// the list in force was learned with `marks.mask_embedding` (none otherwise): masked
    /// before it is embedded, query or gallery photo.
    pub(super) fn mark_rects(&self, decoded: &Decoded) -> Vec<[u32; 4]> {
        let marks = {
            let m = self.marks.read();
            if !m.masked || m.list.is_empty() {
                return Vec::new();
            }
            m.list.clone()
        };
        let k = verify::keypoints(&decoded.rgb, None);
        rects(&marks.regions(&k, self.settings.marks.distance), decoded.full_width, decoded.full_height)
    }

    /// Takes up a newer stop-list from the catalog; returns whether there was one whose
    /// learning embedded photos again (the index must then be rebuilt).
    pub(super) fn follow_marks(&self) -> Result<bool, EngineError> {
        if self.catalog.state_version(MARKS)? <= self.marks.read().seen {
            return Ok(false);
        }
        let (fresh, remasked) = stored_marks(self.catalog.as_ref())?;
        let taken = fresh.version != 0;
        let mut m = self.marks.write();
        if taken {
            *m = fresh;
        } else {
            m.seen = fresh.seen;
        }
        Ok(taken && remasked)
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
