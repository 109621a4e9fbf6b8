//! Cases: an investigator's searches, notes and verdicts on hotels, kept on record, read back
//! (audited), exported, and turned into labelled searches for the next calibration.

use std::collections::BTreeMap;

use serde::Serialize;

use super::journal::{Candidate, CaseEntry, FurtherQuery, JournalEntry, MaskRecord, SavedEvidence, SavedHotel, SavedSearch, Verdict};
use super::{Engine, EngineError, Query, SearchResult};
use crate::calibrate::{Calibration, CalibrationError, Sample};
use crate::catalog::{Case, CatalogError, Hotel};
use crate::store::BlobStore;

/// Who is asking: a key, and whether it is an admin's (admins see every case).
#[derive(Debug, Clone, Copy)]
pub struct Viewer<'a> {
    pub key_id: &'a str,
    pub admin: bool,
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
    pub entries: Vec<JournalEntry>,
    pub verdicts: Vec<HotelVerdict>,
    /// Every hotel a saved search or verdict names, by id.
    pub hotels: BTreeMap<i64, Hotel>,
}

/// A case with everything its report shows.
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    #[serde(flatten)]
    pub view: CaseView,
    /// Unix seconds.
    pub generated_at: i64,
    /// The key id that exported it.
    pub generated_by: String,
    /// The model and index serving when it was exported (each search records its own).
    pub model: String,
    pub index: serde_json::Value,
    /// JPEG thumbnails of the evidence photos, as data URIs, by image id.
    pub thumbnails: BTreeMap<i64, String>,
    /// Evidence photos withdrawn since (deleted, or quarantined for a key that is not an
    /// admin's): shown as "(photo withdrawn)", never as pixels.
    pub withdrawn: Vec<i64>,
    /// The query photos kept with consent, as data URIs, by sha256.
    pub queries: BTreeMap<String, String>,
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
        if title.is_empty() || title.chars().count() > MAX_TITLE || title.chars().any(crate::catalog::unsafe_char) {
            return Err(EngineError::Invalid {
                field: "title",
                message: format!("1 to {MAX_TITLE} characters, without control or bidirectional-override characters"),
            });
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
        let view = self.case_view(id, viewer, "read")?;
        self.catalog.audit(viewer.key_id, "case-read", &serde_json::json!({"case_id": id}))?;
        Ok(view)
    }

    /// The case, if the viewer may see it (not audited: callers audit what they do with it).
    pub(super) fn case_view(&self, id: i64, viewer: Viewer, action: &str) -> Result<CaseView, EngineError> {
        let case = self.owned_case(id, viewer, action)?;
        let entries = self.journal(id)?;
        let verdicts = current_verdicts(&entries);
        let mut hotels = BTreeMap::new();
        let named = entries
            .iter()
            .filter_map(|e| e.entry.search())
            .flat_map(|s| s.hotels.iter().map(|h| h.hotel_id))
            .chain(verdicts.iter().map(|v| v.hotel_id));
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

    /// A case's journal, oldest first, typed.
    fn journal(&self, id: i64) -> Result<Vec<JournalEntry>, EngineError> {
        self.catalog.case_entries(id)?.into_iter().map(JournalEntry::try_from).collect()
    }

    /// Appends an entry to a case's journal.
    fn append(&self, case_id: i64, actor: &str, entry: CaseEntry) -> Result<JournalEntry, EngineError> {
        let (kind, body) = entry.to_row()?;
        let row = self.catalog.add_case_entry(case_id, actor, &kind, &body)?;
        Ok(JournalEntry { id: row.id, case_id, at: row.at, actor: row.actor, entry })
    }

    /// The case `id` if the viewer may `action` it. A refusal (another key's case, or one
    /// that does not exist) is audited as `case-denied`; the caller is told "not found"
    /// either way, so that a case's existence says nothing.
    fn owned_case(&self, id: i64, viewer: Viewer, action: &str) -> Result<Case, EngineError> {
        let case = match self.catalog.case(id) {
            Ok(case) if case.owner == viewer.key_id || viewer.admin => return Ok(case),
            Ok(_) | Err(CatalogError::NoCase(_)) => CatalogError::NoCase(id),
            Err(e) => return Err(e.into()),
        };
        self.catalog.audit(viewer.key_id, "case-denied", &serde_json::json!({"case_id": id, "action": action}))?;
        Err(case.into())
    }

    /// Whether a case of `key_id` kept the query photo `sha256` (any photo of a search saved
    /// with `save_case`).
    pub(super) fn keeps_case_image(&self, sha256: &str, key_id: &str) -> Result<bool, EngineError> {
        for case in self.catalog.cases(Some(key_id))? {
            let kept = self
                .journal(case.id)?
                .iter()
                .filter_map(|e| e.entry.search())
                .filter(|s| s.query_kept)
                .any(|s| s.query_sha256 == sha256 || s.further.iter().any(|f| f.sha256 == sha256));
            if kept {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Adds a note to a case.
    pub fn add_case_note(&self, id: i64, text: &str, viewer: Viewer) -> Result<JournalEntry, EngineError> {
        let text = text.trim();
        if text.is_empty() || text.chars().count() > MAX_NOTE {
            return Err(EngineError::Invalid { field: "text", message: format!("1 to {MAX_NOTE} characters") });
        }
        self.owned_case(id, viewer, "note")?;
        let entry = self.append(id, viewer.key_id, CaseEntry::Note { text: text.to_string() })?;
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
    ) -> Result<JournalEntry, EngineError> {
        self.owned_case(id, viewer, "verdict")?;
        self.catalog.hotel(hotel_id)?;
        if let Some(e) = search_entry {
            let known = self.journal(id)?.iter().any(|x| x.id == e && x.entry.search().is_some());
            if !known {
                return Err(EngineError::Invalid { field: "search_entry", message: format!("case {id} has no saved search {e}") });
            }
        }
        let entry = self.append(id, viewer.key_id, CaseEntry::Verdict { hotel_id, verdict, search_entry })?;
        self.catalog.audit(viewer.key_id, "case-verdict", &serde_json::json!({"case_id": id, "hotel_id": hotel_id, "verdict": verdict}))?;
        Ok(entry)
    }

    /// Searches and saves the search into a case: what was asked (query sha256, the query
    /// itself only when `q.save_case`, the mask, the filters) and what came back (ranked
    /// hotels with probabilities and evidence ids), with the model, index and calibration.
    pub fn search_into_case(&self, q: &Query, case_id: i64, viewer: Viewer) -> Result<(SearchResult, JournalEntry), EngineError> {
        self.owned_case(case_id, viewer, "search")?;
        let res = self.search(q, viewer.key_id)?;
        let saved = SavedSearch {
            query_sha256: res.query_sha256.clone(),
            query_kept: res.saved_case_image,
            mask: q.mask.map(|m| MaskRecord::of(m, q.save_case)),
            masked_thumbnail: match (q.save_case, q.mask) {
                (false, Some(m)) => masked_thumbnail(q.bytes, m, &self.settings.limits),
                _ => None,
            },
            further: q
                .more
                .iter()
                .zip(res.queries.iter().skip(1))
                .map(|(m, info)| FurtherQuery { sha256: info.sha256.clone(), mask: m.mask.map(|m| MaskRecord::of(m, q.save_case)) })
                .collect(),
            filters: q.filter.clone(),
            model: self.embedder.model().to_string(),
            index: serde_json::json!({"plan": res.plan, "watermark": self.watermark(), "indexed": self.indexed()}),
            calibration: res.calibration.clone(),
            auto_mask: res.auto_mask,
            hotels: res
                .hotels
                .iter()
                .map(|h| SavedHotel {
                    rank: h.rank,
                    hotel_id: h.hotel.id,
                    name: h.hotel.name.clone(),
                    score: h.score,
                    probability: h.probability,
                    confidence: h.confidence,
                    gap: h.gap,
                    evidence: h
                        .evidence
                        .iter()
                        .map(|e| SavedEvidence {
                            image_id: e.image_id,
                            room: e.room.clone(),
                            similarity: e.similarity,
                            matched_points: e.matched_points,
                        })
                        .collect(),
                })
                .collect(),
            candidates: res.candidates.iter().map(|&(hotel_id, score)| Candidate { hotel_id, score }).collect(),
            reuse: res.reuse.clone(),
            bank_matches: res.bank_matches.clone(),
        };
        let entry = self.append(case_id, viewer.key_id, CaseEntry::Search(Box::new(saved)))?;
        self.catalog.audit(
            viewer.key_id,
            "case-search",
            &serde_json::json!({"case_id": case_id, "entry": entry.id, "query_sha256s": res.queries.iter().map(|q| &q.sha256).collect::<Vec<_>>()}),
        )?;
        Ok((res, entry))
    }

    /// A case with everything its report shows: evidence thumbnails and kept query photos
    /// embedded. Audited as an export.
    pub fn case_report(&self, id: i64, format: &str, viewer: Viewer) -> Result<CaseReport, EngineError> {
        let view = self.case_view(id, viewer, "export")?;
        // A JPEG thumbnail of a stored blob as a data URI; none when it cannot be read.
        let thumbnail = |store: &dyn BlobStore, sha: &str, side: u32| {
            let t = store.get(sha).ok().and_then(|b| crate::media::clean::thumbnail(&b, &self.settings.limits, side).ok())?;
            Some(format!("data:image/jpeg;base64,{}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, t)))
        };
        let searches: Vec<&SavedSearch> = view.entries.iter().filter_map(|e| e.entry.search()).collect();
        let ids: std::collections::BTreeSet<i64> =
            searches.iter().flat_map(|s| s.hotels.iter().flat_map(|h| h.evidence.iter().map(|e| e.image_id))).collect();
        let ids: Vec<i64> = ids.into_iter().collect();
        // One read for every evidence photo. A photo withdrawn since (the photo route's rule
        // for this key) is named as withdrawn; one the catalog cannot read now is left out,
        // and the report says it is no longer available.
        let images = self.catalog.images(&ids)?;
        let (shown, withdrawn): (Vec<_>, Vec<_>) = images.iter().partition(|img| img.status.shown_to(viewer.admin));
        let thumbnails: BTreeMap<i64, String> =
            shown.iter().filter_map(|img| Some((img.id, thumbnail(self.store.as_ref(), &img.sha256, REPORT_THUMBNAIL)?))).collect();
        let withdrawn: Vec<i64> = withdrawn.iter().map(|img| img.id).collect();
        let kept: std::collections::BTreeSet<&str> = searches
            .iter()
            .filter(|s| s.query_kept)
            .flat_map(|s| std::iter::once(s.query_sha256.as_str()).chain(s.further.iter().map(|f| f.sha256.as_str())))
            .collect();
        let queries: BTreeMap<String, String> =
            kept.into_iter().filter_map(|sha| Some((sha.to_string(), thumbnail(self.cases.as_ref(), sha, REPORT_QUERY)?))).collect();
        let index = self.index();
        let report = CaseReport {
            view,
            generated_at: crate::catalog::now(),
            generated_by: viewer.key_id.to_string(),
            model: self.embedder.model().to_string(),
            index: serde_json::json!({"kind": format!("{:?}", self.settings.index.kind).to_lowercase(), "format": format!("{:?}", self.settings.index.format).to_lowercase(), "watermark": index.vectors.watermark(), "indexed": index.vectors.len()}),
            thumbnails,
            withdrawn,
            queries,
        };
        self.catalog.audit(viewer.key_id, "case-export", &serde_json::json!({"case_id": id, "format": format}))?;
        Ok(report)
    }

    /// Labelled searches from every case, with the case and key each came from: each saved
    /// search whose case confirmed a hotel. The confirmed hotel is the right one; a search
    /// where it was not among the candidates counts as "none of these". Only informative
    /// searches count (at least one candidate), each query (its photos' hashes) once.
    pub fn confirmed_samples(&self) -> Result<Vec<CaseSample>, EngineError> {
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for case in self.catalog.cases(None)? {
            let entries = self.journal(case.id)?;
            let confirmed: Vec<i64> =
                current_verdicts(&entries).iter().filter(|v| v.verdict == Verdict::Confirmed).map(|v| v.hotel_id).collect();
            // A case confirms one place; two confirmed hotels is a conflict nobody resolved.
            let [right] = confirmed[..] else { continue };
            for (e, search) in entries.iter().filter_map(|e| e.entry.search().map(|s| (e, s))) {
                let query: Vec<&str> =
                    std::iter::once(search.query_sha256.as_str()).chain(search.further.iter().map(|f| f.sha256.as_str())).collect();
                if search.candidates.is_empty() || !seen.insert(query.join(" ")) {
                    continue;
                }
                let (ids, scores): (Vec<i64>, Vec<f32>) = search.candidates.iter().map(|c| (c.hotel_id, c.score)).unzip();
                out.push(CaseSample {
                    sample: Sample { right: ids.iter().position(|&h| h == right), scores, photos: query.len() },
                    case_id: case.id,
                    key_id: e.actor.clone(),
                });
            }
        }
        Ok(out)
    }

    /// Refits the calibration on the confirmed searches of cases and, unless `preview`, puts
    /// it in force on every replica (a new catalog version). Refused with too few searches,
    /// cases (`MIN_CASES`) or keys (`MIN_KEYS`), with a parameter out of band, or when the
    /// refit explains the searches of held-out cases (every fourth) worse than the one in
    /// use. Audited with the cases and keys used, applied or not.
    pub fn recalibrate_from_cases(&self, preview: bool, actor: &str) -> Result<Refit, EngineError> {
        let all = self.confirmed_samples()?;
        let cases: std::collections::BTreeSet<i64> = all.iter().map(|s| s.case_id).collect();
        let keys: std::collections::BTreeSet<&str> = all.iter().map(|s| s.key_id.as_str()).collect();
        if all.len() < 10 {
            return Err(CalibrationError::TooFew(all.len()).into());
        }
        if cases.len() < MIN_CASES || keys.len() < MIN_KEYS {
            return Err(
                CalibrationError::TooFewSources { cases: cases.len(), keys: keys.len(), min_cases: MIN_CASES, min_keys: MIN_KEYS }.into()
            );
        }
        let held: std::collections::BTreeSet<i64> = cases.iter().copied().skip(3).step_by(4).collect();
        let (test, train): (Vec<&CaseSample>, Vec<&CaseSample>) = all.iter().partition(|s| held.contains(&s.case_id));
        let train: Vec<Sample> = train.into_iter().map(|s| s.sample.clone()).collect();
        let test: Vec<Sample> = test.into_iter().map(|s| s.sample.clone()).collect();
        let current = self.calibration();
        let base = Calibration { model: self.embedder.model().to_string(), scoring: self.settings.scoring(), ..(*current).clone() };
        let loss_current = current.log_loss(&test);
        // Checked on the held-out cases' searches; refused or not, the attempt is audited.
        let fitted = base.fit_apart(&train, "cases").and_then(|f| {
            let loss = f.log_loss(&test);
            match loss > loss_current {
                true => Err(CalibrationError::Worse { held_out: test.len(), fitted: loss, current: loss_current }),
                false => Ok((f, loss)),
            }
        });
        let detail = serde_json::json!({
            "preview": preview,
            "refused": fitted.as_ref().err().map(|e| e.to_string()),
            "cases": cases,
            "keys": keys,
            "samples": train.len(),
            "held_out": test.len(),
            "log_loss": {"current": loss_current, "refit": fitted.as_ref().ok().map(|f| f.1)},
        });
        self.catalog.audit(actor, "calibrate-from-cases", &detail)?;
        let (fitted, loss_fitted) = fitted?;
        let refit = Refit {
            calibration: fitted,
            samples: train.len(),
            held_out: test.len(),
            log_loss: [loss_current, loss_fitted],
            cases: cases.iter().copied().collect(),
            keys: keys.iter().map(|k| k.to_string()).collect(),
            applied: false,
        };
        if preview {
            return Ok(refit);
        }
        self.set_calibration(refit.calibration.clone(), refit.samples, actor)?;
        Ok(Refit { applied: true, ..refit })
    }
}

/// Distinct cases, and keys, a refit from cases needs: one investigator's own verdicts cannot
/// set everyone's probabilities.
pub const MIN_CASES: usize = 5;
pub const MIN_KEYS: usize = 3;

/// A labelled search from a case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseSample {
    pub sample: Sample,
    pub case_id: i64,
    /// The key that made the search.
    pub key_id: String,
}

/// A refit of the calibration from cases.
#[derive(Debug, Clone, Serialize)]
pub struct Refit {
    pub calibration: Calibration,
    /// Searches it was fitted on, and searches of held-out cases it was checked on.
    pub samples: usize,
    pub held_out: usize,
    /// Mean log-loss on the held-out searches: the calibration in use, then the refit.
    pub log_loss: [f64; 2],
    /// The cases and keys whose searches were used.
    pub cases: Vec<i64>,
    pub keys: Vec<String>,
    /// Whether it was put in force (not a preview).
    pub applied: bool,
}

/// The latest verdict per hotel, in hotel id order; "open" withdraws.
/// The side of a masked query thumbnail kept in a case.
const THUMB_SIDE: u32 = 240;

/// A small JPEG (base64) of a query photo with every pixel its mask touches filled grey;
/// `None` when it cannot be made (the search is saved without it).
fn masked_thumbnail(bytes: &[u8], mask: &crate::embed::pool::Mask, limits: &crate::media::decode::Limits) -> Option<String> {
    let d = crate::media::decode::decode(bytes, limits, Some((THUMB_SIDE, THUMB_SIDE))).ok()?;
    let (w, h) = d.rgb.dimensions();
    let scale = f64::from(THUMB_SIDE) / f64::from(w.max(h));
    let (tw, th) = if scale < 1.0 { (((f64::from(w) * scale) as u32).max(1), ((f64::from(h) * scale) as u32).max(1)) } else { (w, h) };
    let mut small = image::imageops::thumbnail(&d.rgb, tw, th);
    // Coverage per thumbnail pixel; any part of a pixel painted is enough to grey it.
    let cover = mask.coverage(d.full_width, d.full_height, tw as usize, th as usize).ok()?;
    for (i, p) in small.pixels_mut().enumerate() {
        if cover[i] > 0.0 {
            *p = image::Rgb([128, 128, 128]);
        }
    }
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(small).write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)).ok()?;
    Some(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, out.into_inner()))
}

fn current_verdicts(entries: &[JournalEntry]) -> Vec<HotelVerdict> {
    let mut latest: BTreeMap<i64, HotelVerdict> = BTreeMap::new();
    for e in entries {
        if let CaseEntry::Verdict { hotel_id, verdict, search_entry } = e.entry {
            latest.insert(hotel_id, HotelVerdict { hotel_id, verdict, by: e.actor.clone(), at: e.at, search_entry });
        }
    }
    latest.into_values().filter(|v| v.verdict != Verdict::Open).collect()
}
