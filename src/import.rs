//! Import: bulk-loads hotels and photos from CSV files into the engine, in parallel,
//! resumably (each handled line is recorded in the catalog), reporting duplicates and rejects.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::catalog::{Hotel, Source};
use crate::engine::{Engine, EngineError, Ingested, NewPhoto};

/// Why an import could not run at all (single bad lines are rejects, not errors).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A CSV file is unreadable or malformed.
    #[error("{path}: {message}")]
    Csv { path: PathBuf, message: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// A line of hotels.csv.
#[derive(Debug, Deserialize)]
struct HotelRow {
    id: String,
    name: String,
    #[serde(default)]
    chain: Option<String>,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    city: Option<String>,
    #[serde(default)]
    country: Option<String>,
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
}

/// A line of images.csv.
#[derive(Debug, Deserialize)]
struct ImageRow {
    path: PathBuf,
    hotel: String,
    #[serde(default)]
    room: Option<String>,
}

/// A line that was not imported, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Reject {
    pub line: usize,
    pub path: PathBuf,
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    pub hotels: usize,
    pub added: usize,
    pub duplicates: usize,
    pub skipped_already_imported: usize,
    pub rejected: Vec<Reject>,
    pub duplicate_of: Vec<(PathBuf, i64, u32)>,
}

fn empty_to_none(s: Option<String>) -> Option<String> {
    s.map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// Imports hotels (upserted by their `id` column), audited as `actor`.
pub fn import_hotels(engine: &Engine, csv_path: &Path, actor: &str) -> Result<usize, ImportError> {
    let err = |message: String| ImportError::Csv { path: csv_path.into(), message };
    let mut rdr = csv::Reader::from_path(csv_path).map_err(|e| err(e.to_string()))?;
    let mut n = 0;
    for (i, row) in rdr.deserialize::<HotelRow>().enumerate() {
        let r = row.map_err(|e| err(format!("line {}: {e}", i + 2)))?;
        let h = Hotel {
            id: 0,
            external_id: Some(r.id),
            name: r.name,
            chain: empty_to_none(r.chain),
            address: empty_to_none(r.address),
            city: empty_to_none(r.city),
            country: empty_to_none(r.country),
            latitude: r.latitude,
            longitude: r.longitude,
        };
        engine.upsert_hotel(&h, actor).map_err(|e| err(format!("line {}: {e}", i + 2)))?;
        n += 1;
    }
    Ok(n)
}

/// Imports photos listed as `path,hotel,room` (paths relative to the CSV; `hotel` is the
/// hotel's external id), each audited as `actor`. `progress` is called with (done, total).
pub fn import_images(
    engine: &Engine,
    csv_path: &Path,
    actor: &str,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<ImportReport, ImportError> {
    let err = |message: String| ImportError::Csv { path: csv_path.into(), message };
    let base = csv_path.parent().unwrap_or(Path::new("."));
    let mut rdr = csv::Reader::from_path(csv_path).map_err(|e| err(e.to_string()))?;
    let rows: Vec<(usize, ImageRow)> = rdr
        .deserialize::<ImageRow>()
        .enumerate()
        .map(|(i, r)| r.map(|r| (i + 2, r)).map_err(|e| err(format!("line {}: {e}", i + 2))))
        .collect::<Result<_, _>>()?;
    let total = rows.len();
    let mut report = ImportReport::default();
    let mut done = 0;
    // Chunks: prepare in parallel (decode, PDQ, embed, clean copy), then add in order.
    for chunk in rows.chunks(32) {
        let todo: Vec<&(usize, ImageRow)> = chunk
            .iter()
            .filter(|(_, r)| {
                let key = source_key(base, r);
                let seen = engine.imported(&key).unwrap_or(false);
                if seen {
                    report.skipped_already_imported += 1;
                }
                !seen
            })
            .collect();
        let prepared: Vec<_> = todo
            .par_iter()
            .map(|(_, r)| {
                let path = base.join(&r.path);
                let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
                let p = engine.prepare(&bytes).map_err(|e| e.to_string())?;
                Ok::<_, String>(p)
            })
            .collect();
        for ((line, r), p) in todo.into_iter().zip(prepared) {
            let key = source_key(base, r);
            let outcome = p.and_then(|p| {
                let hotel = engine
                    .hotel_by_external_id(&r.hotel)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("unknown hotel {:?}", r.hotel))?;
                let photo =
                    NewPhoto { hotel_id: hotel.id, room: empty_to_none(r.room.clone()), source: Source::Import, uploader_key_id: None };
                engine.add(&photo, p, actor).map_err(|e| e.to_string())
            });
            let record = match &outcome {
                Ok(Ingested::Added { image_id, .. }) => {
                    report.added += 1;
                    (Some(*image_id), "added", String::new())
                }
                Ok(Ingested::Duplicate { of_image_id, distance, .. }) => {
                    report.duplicates += 1;
                    report.duplicate_of.push((r.path.clone(), *of_image_id, *distance));
                    (Some(*of_image_id), "duplicate", format!("PDQ distance {distance}"))
                }
                Ok(Ingested::CrossHotelDuplicate { of_image_id, of_hotel_id, .. }) => {
                    report.duplicates += 1;
                    report.duplicate_of.push((r.path.clone(), *of_image_id, 0));
                    (Some(*of_image_id), "duplicate", format!("the same photo is stored for hotel {of_hotel_id}"))
                }
                Err(reason) => {
                    report.rejected.push(Reject { line: *line, path: r.path.clone(), reason: reason.clone() });
                    (None, "rejected", reason.clone())
                }
            };
            // A rejected line is retried by the next run (the file may be fixed); the others are final.
            if record.1 != "rejected" {
                engine.record_import(&key, record.0, record.1, &record.2)?;
            }
        }
        done += chunk.len();
        progress(done, total);
    }
    engine.save_index()?;
    Ok(report)
}

fn source_key(base: &Path, r: &ImageRow) -> String {
    let path = base.join(&r.path);
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    format!("{}|{}|{}", path.display(), r.hotel, r.room.clone().unwrap_or_default())
}
