//! Cases: an investigator's searches, notes and verdicts on hotels, kept on record, read back
//! (audited), exported, and turned into labelled searches for the next calibration.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Engine, EngineError, Query, SearchResult};
use crate::calibrate::{Calibration, Sample};
use crate::catalog::{Case, CaseEntry, CatalogError, Hotel};
use crate::pool::Mask;
use crate::report::CaseReport;
use crate::store;

/// Who is asking: a key, and whether it is an admin's (admins see every case).
#[derive(Debug, Clone, Copy)]
pub struct Viewer<'a> {
    pub key_id: &'a str,
    pub admin: bool,
}

/// What an investigator concluded about a candidate hotel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The photo was taken here (also a labelled search for calibration).
    Confirmed,
    /// It was not.
    RuledOut,
    /// Undecided again (withdraws an earlier verdict; the record keeps both).
    Open,
}

/// A hotel's current verdict in a case: the latest one recorded.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HotelVerdict {
    pub hotel_id: i64,
    pub verdict: Verdict,
    pub by: String,
    pub at: i64,
    /// The saved search it was given on, if any.
    pub search_entry: Option<i64>,
}

/// A case with its whole journal, the current verdicts, and the hotels it mentions.
#[derive(Debug, Clone, Serialize)]
pub struct CaseView {
    pub case: Case,
    pub entries: Vec<CaseEntry>,
    pub verdicts: Vec<HotelVerdict>,
    /// Every hotel a saved search or verdict names, by id.
    pub hotels: BTreeMap<i64, Hotel>,
}

/// Longest side of an evidence thumbnail in a report: enough to recognise a room in print.
const REPORT_THUMBNAIL: u32 = 320;
/// Longest side of a kept query photo in a report.
const REPORT_QUERY: u32 = 640;
/// A case's title: what an investigator recognises it by.
const MAX_TITLE: usize = 200;
/// A note: a paragraph or a few, not a document.
const MAX_NOTE: usize = 10_000;

impl Engine {
    /// Opens a case owned by the viewer.
    pub fn create_case(&self, title: &str, viewer: Viewer) -> Result<Case, EngineError> {
        let title = title.trim();
        if title.is_empty() || title.chars().count() > MAX_TITLE {
            return Err(CatalogError::Invalid { field: "title", message: format!("1 to {MAX_TITLE} characters") }.into());
        }
        let case = self.catalog.create_case(title, viewer.key_id)?;
        self.catalog.audit(viewer.key_id, "case-create", &serde_json::json!({"case_id": case.id}))?;
        Ok(case)
    }

    /// The cases the viewer may read: their own, or every case for an admin. Audited.
    pub fn cases(&self, viewer: Viewer) -> Result<Vec<Case>, EngineError> {
        let cases = self.catalog.cases(if viewer.admin { None } else { Some(viewer.key_id) })?;
        self.catalog.audit(viewer.key_id, "case-list", &serde_json::json!({"cases": cases.len()}))?;
        Ok(cases)
    }

    /// One case with its journal. Audited; another key's case is "not found" to a non-admin,
    /// so that its existence says nothing.
    pub fn case(&self, id: i64, viewer: Viewer) -> Result<CaseView, EngineError> {
        let view = self.case_view(id, viewer)?;
        self.catalog.audit(viewer.key_id, "case-read", &serde_json::json!({"case_id": id}))?;
        Ok(view)
    }

    /// The case, if the viewer may see it (not audited: callers audit what they do with it).
    pub(super) fn case_view(&self, id: i64, viewer: Viewer) -> Result<CaseView, EngineError> {
        let case = self.owned_case(id, viewer)?;
        let entries = self.catalog.case_entries(id)?;
        let verdicts = current_verdicts(&entries);
        let mut hotels = BTreeMap::new();
        let named =
            entries.iter().filter(|e| e.kind == "search").flat_map(|e| hotel_ids(&e.body)).chain(verdicts.iter().map(|v| v.hotel_id));
        for hotel_id in named {
            if let std::collections::btree_map::Entry::Vacant(slot) = hotels.entry(hotel_id) {
                match self.catalog.hotel(hotel_id) {
                    Ok(h) => {
                        slot.insert(h);
                    }
                    Err(CatalogError::NoHotel(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(CaseView { case, entries, verdicts, hotels })
    }

    fn owned_case(&self, id: i64, viewer: Viewer) -> Result<Case, EngineError> {
        let case = self.catalog.case(id)?;
        if case.owner != viewer.key_id && !viewer.admin {
            return Err(CatalogError::NoCase(id).into());
        }
        Ok(case)
    }

    /// Adds a note to a case.
    pub fn add_case_note(&self, id: i64, text: &str, viewer: Viewer) -> Result<CaseEntry, EngineError> {
        let text = text.trim();
        if text.is_empty() || text.chars().count() > MAX_NOTE {
            return Err(CatalogError::Invalid { field: "text", message: format!("1 to {MAX_NOTE} characters") }.into());
        }
        self.owned_case(id, viewer)?;
        let entry = self.catalog.add_case_entry(id, viewer.key_id, "note", &serde_json::json!({"text": text}))?;
        self.catalog.audit(viewer.key_id, "case-note", &serde_json::json!({"case_id": id, "entry": entry.id}))?;
        Ok(entry)
    }

    /// Records a verdict on a hotel in a case, optionally on one of its saved searches.
    pub fn set_verdict(
        &self,
        id: i64,
        hotel_id: i64,
        verdict: Verdict,
        search_entry: Option<i64>,
        viewer: Viewer,
    ) -> Result<CaseEntry, EngineError> {
        self.owned_case(id, viewer)?;
        self.catalog.hotel(hotel_id)?;
        if let Some(e) = search_entry {
            let known = self.catalog.case_entries(id)?.iter().any(|x| x.id == e && x.kind == "search");
            if !known {
                return Err(CatalogError::Invalid { field: "search_entry", message: format!("case {id} has no saved search {e}") }.into());
            }
        }
        let body = serde_json::json!({"hotel_id": hotel_id, "verdict": verdict, "search_entry": search_entry});
        let entry = self.catalog.add_case_entry(id, viewer.key_id, "verdict", &body)?;
        self.catalog.audit(viewer.key_id, "case-verdict", &serde_json::json!({"case_id": id, "hotel_id": hotel_id, "verdict": verdict}))?;
        Ok(entry)
    }

    /// Searches and saves the search into a case: what was asked (query sha256, the query
    /// itself only when `q.save_case`, the mask, the filters) and what came back (ranked
    /// hotels with probabilities and evidence ids), with the model, index and calibration.
    pub fn search_into_case(&self, q: &Query, case_id: i64, viewer: Viewer) -> Result<(SearchResult, CaseEntry), EngineError> {
        self.owned_case(case_id, viewer)?;
        let res = self.search(q, viewer.key_id)?;
        let body = serde_json::json!({
            "query_sha256": res.query_sha256,
            "query_kept": res.saved_case_image,
            "mask": q.mask.map(mask_record),
            "filters": q.filter,
            "model": self.embedder.model(),
            "index": {"plan": res.plan, "watermark": self.watermark(), "indexed": self.indexed()},
            "calibration": res.calibration,
            "auto_mask": res.auto_mask,
            "hotels": res.hotels.iter().map(|h| serde_json::json!({
                "rank": h.rank,
                "hotel_id": h.hotel.id,
                "name": h.hotel.name,
                "score": h.score,
                "probability": h.probability,
                "confidence": h.confidence,
                "gap": h.gap,
                "evidence": h.evidence.iter().map(|e| serde_json::json!({"image_id": e.image_id, "room": e.room, "similarity": e.similarity, "matched_points": e.matched_points})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "candidates": res.candidates.iter().map(|&(hotel_id, score)| serde_json::json!({"hotel_id": hotel_id, "score": score})).collect::<Vec<_>>(),
            "reuse": res.reuse,
            "bank_matches": res.bank_matches,
        });
        let entry = self.catalog.add_case_entry(case_id, viewer.key_id, "search", &body)?;
        self.catalog.audit(
            viewer.key_id,
            "case-search",
            &serde_json::json!({"case_id": case_id, "entry": entry.id, "query_sha256": res.query_sha256}),
        )?;
        Ok((res, entry))
    }

    /// A case with everything its report shows: evidence thumbnails and kept query photos
    /// embedded. Audited as an export.
    pub fn case_report(&self, id: i64, format: &str, viewer: Viewer) -> Result<CaseReport, EngineError> {
        let view = self.case_view(id, viewer)?;
        let mut thumbnails = BTreeMap::new();
        let mut queries = BTreeMap::new();
        let data_uri =
            |bytes: &[u8]| format!("data:image/jpeg;base64,{}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes));
        for e in view.entries.iter().filter(|e| e.kind == "search") {
            for h in e.body["hotels"].as_array().into_iter().flatten() {
                for ev in h["evidence"].as_array().into_iter().flatten() {
                    let Some(image_id) = ev["image_id"].as_i64() else { continue };
                    if thumbnails.contains_key(&image_id) {
                        continue;
                    }
                    // A photo deleted since is left out of the report, which says so.
                    let Ok(img) = self.catalog.image(image_id) else { continue };
                    if img.status == crate::catalog::Status::Deleted {
                        continue;
                    }
                    if let Ok(t) = self
                        .store
                        .get(&img.sha256)
                        .map_err(EngineError::from)
                        .and_then(|b| Ok(store::thumbnail(&b, &self.settings.limits, REPORT_THUMBNAIL)?))
                    {
                        thumbnails.insert(image_id, data_uri(&t));
                    }
                }
            }
            if let (Some(sha), true) = (e.body["query_sha256"].as_str(), e.body["query_kept"].as_bool() == Some(true)) {
                if let Ok(t) = self
                    .cases
                    .get(sha)
                    .map_err(EngineError::from)
                    .and_then(|b| Ok(store::thumbnail(&b, &self.settings.limits, REPORT_QUERY)?))
                {
                    queries.insert(sha.to_string(), data_uri(&t));
                }
            }
        }
        let index = self.index();
        let report = CaseReport {
            view,
            generated_at: crate::catalog::now(),
            generated_by: viewer.key_id.to_string(),
            model: self.embedder.model().to_string(),
            index: serde_json::json!({"kind": format!("{:?}", self.settings.index.kind).to_lowercase(), "format": format!("{:?}", self.settings.index.format).to_lowercase(), "watermark": index.watermark(), "indexed": index.len()}),
            thumbnails,
            queries,
        };
        self.catalog.audit(viewer.key_id, "case-export", &serde_json::json!({"case_id": id, "format": format}))?;
        Ok(report)
    }

    /// Labelled searches from every case: each saved search whose case confirmed a hotel.
    /// The confirmed hotel is the right one; a search where it was not among the
    /// candidates counts as "none of these".
    pub fn confirmed_samples(&self) -> Result<Vec<Sample>, EngineError> {
        let mut out = Vec::new();
        for case in self.catalog.cases(None)? {
            let entries = self.catalog.case_entries(case.id)?;
            let confirmed: Vec<i64> =
                current_verdicts(&entries).iter().filter(|v| v.verdict == Verdict::Confirmed).map(|v| v.hotel_id).collect();
            // A case confirms one place; two confirmed hotels is a conflict nobody resolved.
            let [right] = confirmed[..] else { continue };
            for e in entries.iter().filter(|e| e.kind == "search") {
                let Some(candidates) = e.body["candidates"].as_array() else { continue };
                let (ids, scores): (Vec<i64>, Vec<f32>) =
                    candidates.iter().filter_map(|c| Some((c["hotel_id"].as_i64()?, c["score"].as_f64()? as f32))).unzip();
                out.push(Sample { right: ids.iter().position(|&h| h == right), scores });
            }
        }
        Ok(out)
    }

    /// Refits the calibration on `samples`, writes it into the data directory and uses it
    /// from the next search on. Audited.
    pub fn recalibrate(&self, samples: &[Sample], source: &str, actor: &str) -> Result<Calibration, EngineError> {
        let base = Calibration {
            model: self.embedder.model().to_string(),
            scoring: self.settings.search.scoring(),
            ..(*self.calibration()).clone()
        };
        let fitted = base.fit(samples, source)?;
        let dir = &self.settings.data_dir;
        std::fs::create_dir_all(dir).map_err(|source| EngineError::DataDir { path: dir.clone(), source })?;
        fitted.save(dir)?;
        *self.calibration.write().unwrap_or_else(|e| e.into_inner()) = std::sync::Arc::new(fitted.clone());
        self.catalog.audit(actor, "calibrate", &serde_json::json!({"source": source, "samples": samples.len(), "temperature": fitted.temperature, "none_score": fitted.none_score}))?;
        Ok(fitted)
    }
}

/// The hotels a saved search ranked, in rank order.
fn hotel_ids(body: &serde_json::Value) -> Vec<i64> {
    body["hotels"].as_array().map(|hs| hs.iter().filter_map(|h| h["hotel_id"].as_i64()).collect()).unwrap_or_default()
}

/// The latest verdict per hotel, in hotel id order; "open" withdraws.
fn current_verdicts(entries: &[CaseEntry]) -> Vec<HotelVerdict> {
    let mut latest: BTreeMap<i64, HotelVerdict> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.kind == "verdict") {
        let (Some(hotel_id), Ok(verdict)) = (e.body["hotel_id"].as_i64(), serde_json::from_value::<Verdict>(e.body["verdict"].clone()))
        else {
            continue;
        };
        latest.insert(
            hotel_id,
            HotelVerdict { hotel_id, verdict, by: e.actor.clone(), at: e.at, search_entry: e.body["search_entry"].as_i64() },
        );
    }
    latest.into_values().filter(|v| v.verdict != Verdict::Open).collect()
}

/// A mask as the case keeps it: a PNG (base64) of a painted mask, or its rectangles.
fn mask_record(m: &Mask) -> serde_json::Value {
    match m {
        Mask::Bitmap(g) => {
            let mut png = Vec::new();
            match image::DynamicImage::ImageLuma8(g.clone()).write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png) {
                Ok(()) => {
                    serde_json::json!({"png_base64": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &png), "width": g.width(), "height": g.height()})
                }
                Err(e) => serde_json::json!({"error": e.to_string()}),
            }
        }
        Mask::Rects(r) => serde_json::json!({"rects": r}),
    }
}
