//! The case journal, typed: every entry is a saved search, a note or a verdict. The catalog
//! keeps an entry as its kind and a JSON body (the tag and content of [`CaseEntry`]), and
//! the API shows it the same way.

use serde::{Deserialize, Serialize};

use super::{BankMatch, CalibrationInfo, EngineError, Reuse};
use crate::calibrate::Confidence;
use crate::catalog::{HotelFilter, JournalRow};
use crate::embed::pool::Mask;

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

/// What one journal entry says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "body", rename_all = "kebab-case")]
pub enum CaseEntry {
    /// A search saved into the case (boxed: it is far larger than a note or a verdict).
    Search(Box<SavedSearch>),
    /// An investigator's note.
    Note { text: String },
    /// A verdict on a hotel, optionally given on one saved search.
    Verdict { hotel_id: i64, verdict: Verdict, search_entry: Option<i64> },
}

/// A journal entry with who wrote it and when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JournalEntry {
    pub id: i64,
    pub case_id: i64,
    /// Unix seconds.
    pub at: i64,
    /// The key id that wrote it.
    pub actor: String,
    #[serde(flatten)]
    pub entry: CaseEntry,
}

/// A saved search: what was asked and what came back, with the model, index and
/// calibration that answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedSearch {
    /// sha256 of the query photo (the photo itself is kept only when `query_kept`).
    pub query_sha256: String,
    pub query_kept: bool,
    pub mask: Option<MaskRecord>,
    /// A small JPEG of the query with its painted parts filled grey (base64), kept when the
    /// photo itself is not but was painted: a report shows the question beside the evidence
    /// while the person stays painted out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masked_thumbnail: Option<String>,
    /// The search's further photos of the same place (kept, too, when `query_kept`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub further: Vec<FurtherQuery>,
    pub filters: HotelFilter,
    pub model: String,
    /// The index that answered (plan, watermark, photos indexed): technical detail.
    pub index: serde_json::Value,
    pub calibration: CalibrationInfo,
    pub auto_mask: Option<f32>,
    /// The hotels shown, in rank order.
    pub hotels: Vec<SavedHotel>,
    /// The candidates the probabilities were spread over (what a calibration refits on).
    pub candidates: Vec<Candidate>,
    pub reuse: Vec<Reuse>,
    pub bank_matches: Vec<BankMatch>,
}

/// A further photo of a saved search: its sha256 and mask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FurtherQuery {
    pub sha256: String,
    pub mask: Option<MaskRecord>,
}

/// A ranked hotel of a saved search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedHotel {
    pub rank: usize,
    pub hotel_id: i64,
    /// Its name when searched (the hotel may be renamed later).
    pub name: String,
    pub score: f32,
    pub probability: f32,
    pub confidence: Confidence,
    pub gap: Option<f32>,
    pub evidence: Vec<SavedEvidence>,
}

/// An evidence photo of a saved search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedEvidence {
    pub image_id: i64,
    pub room: Option<String>,
    pub similarity: f32,
    pub matched_points: Option<usize>,
}

/// A candidate hotel and its score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub hotel_id: i64,
    pub score: f32,
}

/// A search's mask as the case keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MaskRecord {
    /// A painted mask as a PNG (base64).
    Painted { png_base64: String, width: u32, height: u32 },
    /// Rectangles `[x, y, width, height]`.
    Rects { rects: Vec<[u32; 4]> },
    /// What is kept of a painted mask when the photo is not: the share painted and the box
    /// around it, not the shape (a silhouette can identify the person painted out).
    Extent { width: u32, height: u32, painted: f32, bbox: Option<[u32; 4]> },
    /// The mask could not be encoded (recorded rather than losing the search).
    Unreadable { error: String },
}

impl MaskRecord {
    /// The record of a mask: a painted one whole only when the investigator keeps the photo
    /// (`kept`), else its extent.
    pub fn of(m: &Mask, kept: bool) -> Self {
        match m {
            Mask::Bitmap(g) if !kept => {
                let (mut n, mut x0, mut y0, mut x1, mut y1) = (0u64, u32::MAX, u32::MAX, 0, 0);
                for (x, y, p) in g.enumerate_pixels() {
                    if p.0[0] >= 128 {
                        n += 1;
                        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
                    }
                }
                let area = (u64::from(g.width()) * u64::from(g.height())).max(1);
                MaskRecord::Extent {
                    width: g.width(),
                    height: g.height(),
                    painted: (n as f64 / area as f64) as f32,
                    bbox: (n > 0).then(|| [x0, y0, x1 - x0 + 1, y1 - y0 + 1]),
                }
            }
            Mask::Bitmap(g) => {
                let mut png = Vec::new();
                match image::DynamicImage::ImageLuma8(g.clone()).write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png) {
                    Ok(()) => MaskRecord::Painted {
                        png_base64: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &png),
                        width: g.width(),
                        height: g.height(),
                    },
                    Err(e) => MaskRecord::Unreadable { error: e.to_string() },
                }
            }
            Mask::Rects(r) => MaskRecord::Rects { rects: r.clone() },
        }
    }
}

impl CaseEntry {
    /// Its kind and body, as the catalog stores them.
    pub fn to_row(&self) -> Result<(String, serde_json::Value), EngineError> {
        let v = serde_json::to_value(self).map_err(|e| EngineError::Internal(format!("case entry: {e}")))?;
        let kind = v["kind"].as_str().unwrap_or_default().to_string();
        Ok((kind, v["body"].clone()))
    }

    /// The saved search, if it is one.
    pub fn search(&self) -> Option<&SavedSearch> {
        match self {
            CaseEntry::Search(s) => Some(s),
            _ => None,
        }
    }
}

impl TryFrom<JournalRow> for JournalEntry {
    type Error = EngineError;
    /// A stored row read back; a body that does not parse is an error, not a silent gap in the record.
    fn try_from(r: JournalRow) -> Result<Self, EngineError> {
        let entry = serde_json::from_value(serde_json::json!({"kind": r.kind, "body": r.body}))
            .map_err(|e| EngineError::Internal(format!("case {} entry {}: {e}", r.case_id, r.id)))?;
        Ok(JournalEntry { id: r.id, case_id: r.case_id, at: r.at, actor: r.actor, entry })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_keeps_its_kind_and_body_shape() {
        let v = CaseEntry::Verdict { hotel_id: 7, verdict: Verdict::RuledOut, search_entry: None };
        let (kind, body) = v.to_row().unwrap();
        assert_eq!(kind, "verdict");
        assert_eq!(body, serde_json::json!({"hotel_id": 7, "verdict": "ruled-out", "search_entry": null}));
        let row = JournalRow { id: 1, case_id: 2, at: 3, actor: "k".into(), kind, body };
        assert_eq!(JournalEntry::try_from(row).unwrap().entry, v);
        let bad = JournalRow { id: 1, case_id: 2, at: 3, actor: "k".into(), kind: "note".into(), body: serde_json::json!({"txt": 1}) };
        assert!(JournalEntry::try_from(bad).is_err());
    }
}
