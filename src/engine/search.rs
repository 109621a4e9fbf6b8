//! Search: which hotels a query photo may show, with the matching photos as evidence.

use std::collections::HashMap;
use std::time::Instant;

use rayon::prelude::*;

use super::{CalibrationInfo, Cell, Engine, EngineError, Evidence, HotelHit, Query, Reuse, SearchResult};
use crate::calibrate;
use crate::catalog::Status;
use crate::decode;
use crate::index::{Found, VectorIndex};
use crate::pdq;
use crate::pool::{FeatureMap, Mask};
use crate::rank;
use crate::store;
use crate::vector;
use crate::verify;

impl Engine {
    /// Searches: ranked hotels with evidence. Writes an audit entry for `actor`.
    pub fn search(&self, q: &Query, actor: &str) -> Result<SearchResult, EngineError> {
        let t = Instant::now();
        let opts = &self.settings.search;
        let auto_mask = opts.auto_mask && !q.skip_auto_mask;
        let emb = self.embedder.embed(crate::Input { bytes: q.bytes, mask: q.mask, auto_mask })?;
        // After the embedding, not beside it: ONNX Runtime already uses every core.
        let banked = !self.banks.read().is_empty();
        let hashes = if opts.reuse || banked { Some(query_hashes(q.bytes, &self.settings.limits)?) } else { None };
        let bank_matches = match &hashes {
            Some(h) if h.quality >= pdq::MIN_TRUSTED_QUALITY => self.bank_matches(&h.named().map(|(_, x)| x)),
            _ => Vec::new(),
        };
        let hotels = if q.filter.is_empty() { None } else { Some(self.catalog.hotels_matching(&q.filter)?) };
        let reuse = match hashes {
            Some(h) if opts.reuse => self.reuse_of(&h, hotels.as_deref())?,
            _ => Vec::new(),
        };
        let index = self.index();
        let (mut found, mut plan) = index.search(&emb.vector, opts.top_images, hotels.as_deref(), q.ef)?;
        let mut exact = self.rerank(index.as_ref(), &emb.vector, &mut found)?;
        // A hit's vector: the catalog's exact one where the re-rank fetched it.
        let vector_of = |exact: &HashMap<i64, Vec<f32>>, id: i64| exact.get(&id).cloned().or_else(|| index.vector_of(id));
        if opts.expansion > 0 && !found.is_empty() {
            let mut expanded = emb.vector.clone();
            for f in found.iter().take(opts.expansion) {
                if let Some(v) = vector_of(&exact, f.image_id) {
                    let w = f.similarity.max(0.0).powf(opts.alpha);
                    expanded.iter_mut().zip(&v).for_each(|(e, x)| *e += w * x);
                }
            }
            crate::pool::l2_normalize(&mut expanded);
            (found, plan) = index.search(&expanded, opts.top_images, hotels.as_deref(), q.ef)?;
            exact = self.rerank(index.as_ref(), &expanded, &mut found)?;
        }
        let verified = self.verify(q.bytes, emb.mask.as_ref(), &mut found)?;
        let top = if q.top == 0 { opts.top_hotels } else { q.top };
        // Probabilities are spread over the same number of candidates whatever `top` shows.
        let mut ranked = rank::rank_hotels(&found, opts.aggregation, top.max(calibrate::CANDIDATES));
        let calibration = self.calibration();
        let candidates: Vec<(i64, f32)> = ranked.iter().take(calibrate::CANDIDATES).map(|r| (r.hotel_id, r.score)).collect();
        let probabilities = calibration.probabilities(&candidates.iter().map(|c| c.1).collect::<Vec<_>>());
        let gaps: Vec<Option<f32>> = (0..ranked.len()).map(|i| ranked.get(i + 1).map(|n| ranked[i].score - n.score)).collect();
        ranked.truncate(top);
        let grid = emb.cells.as_ref().map_or((0, 0), |(fm, _)| (fm.width, fm.height));
        let cat = &self.catalog;
        let mut hits = Vec::with_capacity(ranked.len());
        for r in ranked {
            let hotel = cat.hotel(r.hotel_id)?;
            let mut evidence = Vec::new();
            for f in r.images.iter().take(opts.evidence) {
                let img = cat.image(f.image_id)?;
                let query_cells = match (&emb.cells, vector_of(&exact, f.image_id)) {
                    (Some((fm, keep)), Some(v)) => best_cells(fm, keep.as_deref(), &v, 3),
                    _ => Vec::new(),
                };
                let (similarity, matched) = match verified.get(&f.image_id) {
                    Some((cos, m)) => (*cos, Some(m)),
                    None => (f.similarity, None),
                };
                let matched_points = matched.map(|m| m.inliers);
                let matched_pairs = matched.map(|m| m.pairs.clone()).unwrap_or_default();
                evidence.push(Evidence {
                    image_id: img.id,
                    sha256: img.sha256,
                    room: img.room,
                    similarity,
                    matched_points,
                    matched_pairs,
                    query_cells,
                });
            }
            let probability = probabilities.get(r.rank - 1).copied().unwrap_or(0.0);
            let confidence = calibration.confidence(probability);
            hits.push(HotelHit { rank: r.rank, score: r.score, probability, confidence, gap: gaps[r.rank - 1], hotel, evidence });
        }
        let query_sha256 = store::sha256_hex(q.bytes);
        if q.save_case {
            self.cases.put(q.bytes)?;
        }
        let detail = serde_json::json!({
            "query_sha256": query_sha256,
            "filters": q.filter,
            "masked": q.mask.is_some(),
            "auto_mask": emb.auto_mask,
            "saved_case_image": q.save_case,
            "hotel_ids": hits.iter().map(|h| h.hotel.id).collect::<Vec<_>>(),
            "probabilities": hits.iter().map(|h| h.probability).collect::<Vec<_>>(),
            "image_ids": hits.iter().flat_map(|h| h.evidence.iter().map(|e| e.image_id)).collect::<Vec<_>>(),
            "reuse_image_ids": reuse.iter().map(|r| r.image_id).collect::<Vec<_>>(),
            "bank_matches": bank_matches,
        });
        cat.audit(actor, "search", &detail)?;
        let calibration = CalibrationInfo {
            source: calibration.source.clone(),
            samples: calibration.samples,
            strong: calibration.strong,
            possible: calibration.possible,
        };
        Ok(SearchResult {
            hotels: hits,
            reuse,
            images: found,
            grid,
            plan,
            query_sha256,
            saved_case_image: q.save_case,
            auto_mask: emb.auto_mask,
            calibration,
            bank_matches,
            candidates,
            millis: t.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// Re-scores what a compact index found with the exact f32 vectors the catalog keeps,
    /// best first; returns those vectors. The index holds int8 or f16 codes, whose rounding
    /// may swap near ties; the catalog is the source of truth. A no-op where the index's
    /// scores are exact already.
    fn rerank(&self, index: &dyn VectorIndex, q: &[f32], found: &mut [Found]) -> Result<HashMap<i64, Vec<f32>>, EngineError> {
        if found.is_empty() || index.scores_exact() {
            return Ok(HashMap::new());
        }
        let ids: Vec<i64> = found.iter().map(|f| f.image_id).collect();
        let exact: HashMap<i64, Vec<f32>> = self.catalog.embeddings(&ids, self.model_id)?.into_iter().collect();
        for f in found.iter_mut() {
            if let Some(v) = exact.get(&f.image_id) {
                f.similarity = vector::dot(q, v);
            }
        }
        found.sort_by(|a, b| b.similarity.total_cmp(&a.similarity).then(a.image_id.cmp(&b.image_id)));
        Ok(exact)
    }

    /// Geometric verification of the top `verify` photos of `found`: each gets a bonus for
    /// the keypoint matches it shares with the query in one consistent geometry, and `found`
    /// is re-sorted. Returns, per verified image, its cosine similarity and the matches.
    fn verify(&self, query: &[u8], mask: Option<&Mask>, found: &mut [Found]) -> Result<HashMap<i64, (f32, verify::Matched)>, EngineError> {
        let opts = &self.settings.search;
        let k = opts.verify.min(found.len());
        if k == 0 {
            return Ok(Default::default());
        }
        let side = verify::MAX_SIDE;
        let decoded = decode::decode(query, &self.settings.limits, Some((side, side)))?;
        let (fw, fh) = (decoded.full_width, decoded.full_height);
        // The mask as a picture at a quarter of the verification size is precise enough.
        let mask = match mask {
            Some(m) => {
                let (cols, rows) = ((fw * side / 4 / fw.max(fh)).max(1), (fh * side / 4 / fw.max(fh)).max(1));
                let px = m.pixels(fw, fh, cols, rows).map_err(|e| EngineError::Embed(e.into()))?;
                Some(image::GrayImage::from_fn(cols, rows, |x, y| image::Luma([if px[(y * cols + x) as usize] { 255 } else { 0 }])))
            }
            None => None,
        };
        let query_points = verify::keypoints(&decoded.rgb, mask.as_ref());
        let shas: Vec<String> = {
            let cat = &self.catalog;
            found[..k].iter().map(|f| cat.image(f.image_id).map(|i| i.sha256)).collect::<Result<_, _>>()?
        };
        let matched: Vec<verify::Matched> = shas
            .par_iter()
            .map(|sha| {
                // A stored photo that cannot be read again is not verified (and logged): the
                // search still answers from the vectors.
                let points = self
                    .store
                    .get(sha)
                    .map_err(EngineError::from)
                    .and_then(|b| Ok(decode::decode(&b, &self.settings.limits, Some((side, side)))?));
                match points {
                    Ok(d) => verify::matched(&query_points, &verify::keypoints(&d.rgb, None)),
                    Err(e) => {
                        tracing::warn!(photo = %sha, "geometric verification skipped: {e}");
                        verify::Matched::default()
                    }
                }
            })
            .collect();
        let cap = opts.verify_cap.max(1);
        let mut verified = HashMap::with_capacity(k);
        for (f, m) in found[..k].iter_mut().zip(matched) {
            let cosine = f.similarity;
            f.similarity += opts.verify_weight * m.inliers.min(cap) as f32 / cap as f32;
            verified.insert(f.image_id, (cosine, m));
        }
        found.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
        Ok(verified)
    }

    /// Active stored photos (of `hotels`, when given) that the query is a copy of, in any of
    /// its eight rotations and mirrors. Nothing when the query's hash is not trustworthy.
    fn reuse_of(&self, hashes: &pdq::Dihedral, hotels: Option<&[i64]>) -> Result<Vec<Reuse>, EngineError> {
        if hashes.quality < pdq::MIN_TRUSTED_QUALITY {
            return Ok(Vec::new());
        }
        let mut best: std::collections::BTreeMap<u64, (u32, &'static str)> = Default::default();
        let known = self.hashes();
        for (variant, hash) in hashes.named() {
            for hit in known.within(&hash, pdq::MATCH_DISTANCE) {
                let e = best.entry(hit.id).or_insert((hit.distance, variant));
                if hit.distance < e.0 {
                    *e = (hit.distance, variant);
                }
            }
        }
        drop(known);
        let cat = &self.catalog;
        let mut out = Vec::new();
        for (id, (distance, variant)) in best {
            let img = cat.image(id as i64)?;
            let allowed = hotels.is_none_or(|h| h.contains(&img.hotel_id));
            if allowed && img.status == Status::Active && img.pdq_quality >= pdq::MIN_TRUSTED_QUALITY {
                out.push(Reuse { image_id: img.id, hotel_id: img.hotel_id, distance, variant: variant.to_string() });
            }
        }
        out.sort_by_key(|r| (r.distance, r.image_id));
        Ok(out)
    }
}

/// PDQ hashes of a query in its eight rotations and mirrors. PDQ reduces the picture to
/// 64x64 first, so a DCT-scaled decode of at least 512 pixels a side suffices (Meta's PHP
/// reference downsamples before hashing too): photos under 1024 pixels on the short side
/// are decoded whole and hash identically; 12-Mpixel photos land 5 bits from their
/// full-resolution hash on average, 10 at most (`tests/pdq.rs`, `README`).
/// Formats without a reduced-scale decode (PNG, WebP, …) are shrunk to 1024 pixels on the
/// short side the same way before hashing, so an 80-Mpixel PNG does not also need a
/// full-size luma plane.
fn query_hashes(bytes: &[u8], limits: &decode::Limits) -> Result<pdq::Dihedral, EngineError> {
    let decoded = decode::decode(bytes, limits, Some((512, 512)))?;
    let (w, h) = decoded.rgb.dimensions();
    if w.min(h) > 2048 {
        let s = 1024.0 / f64::from(w.min(h));
        let small = image::imageops::thumbnail(
            &decoded.rgb,
            ((f64::from(w) * s).round() as u32).max(1),
            ((f64::from(h) * s).round() as u32).max(1),
        );
        drop(decoded);
        return Ok(pdq::hash_dihedral(&small));
    }
    Ok(pdq::hash_dihedral(&decoded.rgb))
}

/// The `n` kept cells of the query whose features point most towards `v`.
fn best_cells(fm: &FeatureMap, keep: Option<&[bool]>, v: &[f32], n: usize) -> Vec<Cell> {
    let mut cells: Vec<Cell> = (0..fm.height)
        .flat_map(|y| (0..fm.width).map(move |x| (x, y)))
        .filter(|&(x, y)| keep.is_none_or(|k| k[y * fm.width + x]))
        .map(|(x, y)| {
            let c = fm.cell(x, y);
            let norm = vector::dot(c, c).sqrt().max(1e-6);
            Cell { x, y, score: vector::dot(c, v) / norm }
        })
        .collect();
    cells.sort_by(|a, b| b.score.total_cmp(&a.score));
    cells.truncate(n);
    cells
}
