//! Ingest: a photo in, checked for copies, stored clean, catalogued and indexed.

use super::{Engine, EngineError, Ingested, NewPhoto, Prepared};
use crate::catalog::{NewImage, Status};
use crate::media::{clean, decode};
use crate::pdq;

impl Engine {
    /// Decodes, hashes, embeds and cleans a photo: the part that can run in parallel.
    pub fn prepare(&self, bytes: &[u8]) -> Result<Prepared, EngineError> {
        let decoded = decode::decode(bytes, &self.settings.limits, None)?;
        let pdq = pdq::hash(&decoded.rgb);
        // A flat or tiny photo would match every dark or blank query as "strong".
        let side = decoded.full_width.min(decoded.full_height);
        if side < pdq::MIN_GALLERY_SIDE || pdq.quality < pdq::MIN_INFORMATIVE_QUALITY {
            return Err(EngineError::Invalid {
                field: "photo",
                message: format!(
                    "{}x{} pixels, PDQ quality {}: too little of a room to match on (at least {} pixels a side and quality {})",
                    decoded.full_width,
                    decoded.full_height,
                    pdq.quality,
                    pdq::MIN_GALLERY_SIDE,
                    pdq::MIN_INFORMATIVE_QUALITY
                ),
            });
        }
        let marks = self.mark_rects(&decoded);
        // Not `decoded`: the embedder decodes at the size it needs (a JPEG's reduced-size
        // decoding), as for every photo already in the index; the vectors stay comparable.
        let vector = self.embedder.embed(crate::Input { marks: &marks, ..crate::Input::photo(bytes) })?.vector;
        let clean = clean::clean_copy(bytes, &decoded)?;
        Ok(Prepared { clean, width: decoded.full_width, height: decoded.full_height, pdq, vector })
    }

    /// Adds a prepared photo: duplicate check, store, catalog, index, audit (as `actor`).
    /// Durable when it returns.
    pub fn add(&self, photo: &NewPhoto, p: Prepared, actor: &str) -> Result<Ingested, EngineError> {
        let out = self.add_unaudited(photo, p)?;
        // A photo claimed for two hotels is listed for an admin: GET /api/v1/audit?action=upload-conflict.
        let action = if matches!(out, Ingested::CrossHotelDuplicate { .. }) { "upload-conflict" } else { "upload" };
        let mut detail = serde_json::to_value(&out).unwrap_or_default();
        detail["hotel_id"] = serde_json::json!(photo.hotel_id);
        detail["source"] = serde_json::json!(photo.source);
        self.catalog.audit(actor, action, &detail)?;
        Ok(out)
    }

    fn add_unaudited(&self, photo: &NewPhoto, p: Prepared) -> Result<Ingested, EngineError> {
        let hotel = self.catalog.hotel(photo.hotel_id)?;
        // The very same stored bytes for this hotel: also what makes a re-run import idempotent
        // when it was killed between the catalog commit and recording the line.
        let sha256 = crate::digest::sha256_hex(&p.clean);
        let same_bytes = self.catalog.images_with_sha(&sha256)?;
        if let Some(same) = same_bytes.iter().find(|i| i.hotel_id == hotel.id) {
            return Ok(Ingested::Duplicate { of_image_id: same.id, distance: 0, pdq: p.pdq.hash.to_string() });
        }
        if let Some(other) = same_bytes.iter().find(|i| i.status != Status::Deleted) {
            return Ok(Ingested::CrossHotelDuplicate { of_image_id: other.id, of_hotel_id: other.hotel_id, pdq: p.pdq.hash.to_string() });
        }
        if let Some((of, distance)) = self.duplicate_of(&p.pdq, hotel.id)? {
            return Ok(Ingested::Duplicate { of_image_id: of, distance, pdq: p.pdq.hash.to_string() });
        }
        // The blob first, then the row: a row never points at a missing blob.
        self.store.put(&p.clean)?;
        let new = NewImage {
            sha256: sha256.clone(),
            hotel_id: hotel.id,
            room: photo.room.clone(),
            source: photo.source,
            uploader_key_id: photo.uploader_key_id.clone(),
            width: p.width,
            height: p.height,
            pdq: p.pdq.hash,
            pdq_quality: p.pdq.quality,
        };
        let image_id = self.catalog.add_image(&new, self.model_id, &p.vector)?;
        // Another replica's purge may have removed these very bytes (held before only by
        // deleted photos) between our write and our commit; it checks the catalog after
        // removing, and we check the store after committing, so one of us puts them back.
        if !self.store.exists(&sha256)? {
            self.store.put(&p.clean)?;
        }
        self.catch_up()?;
        let bank_matches = if p.pdq.trusted() { super::banks::closest(self.bank_matches(&[p.pdq.hash])).0 } else { Vec::new() };
        Ok(Ingested::Added { image_id, pdq: p.pdq.hash.to_string(), pdq_quality: p.pdq.quality, bank_matches })
    }

    /// Adds one photo (prepare + add), audited as `actor`.
    pub fn ingest(&self, bytes: &[u8], photo: &NewPhoto, actor: &str) -> Result<Ingested, EngineError> {
        let p = self.prepare(bytes)?;
        self.add(photo, p, actor)
    }

    /// An active photo of the same hotel within the duplicate distance, when both hashes are
    /// trustworthy (low-quality hashes never decide alone).
    fn duplicate_of(&self, p: &pdq::Pdq, hotel_id: i64) -> Result<Option<(i64, u32)>, EngineError> {
        if !p.trusted() || self.settings.duplicate_distance == 0 {
            return Ok(None);
        }
        let hits = self.hashes().within(&p.hash, self.settings.duplicate_distance);
        for h in hits {
            let img = self.catalog.image(h.id as i64)?;
            if img.hotel_id == hotel_id && img.status == Status::Active && img.pdq_quality >= pdq::MIN_TRUSTED_QUALITY {
                return Ok(Some((img.id, h.distance)));
            }
        }
        Ok(None)
    }
}
