//! Search: which hotels a query photo may show, with the matching photos as evidence. A
//! search is a pipeline, each stage taking what the one before made:
//! retrieve → verify → rank → explain → record (and, beside retrieval, the hash checks).

use std::collections::HashMap;
use std::time::Instant;

use rayon::prelude::*;

use super::learned::Searchable;
use super::{
    BankMatch, CalibrationInfo, Cell, Engine, EngineError, Evidence, HotelHit, Query, QueryImage, QueryInfo, Reuse, SearchResult,
    MAX_QUERY_PHOTOS,
};
use crate::calibrate::{self, Calibration};
use crate::catalog::{Hotel, Image, Status};
use crate::embed::pool::{FeatureMap, Mask};
use crate::embed::Embedding;
use crate::index::{Found, Plan};
use crate::media::decode::{self, Decoded, Limits};
use crate::pdq;
use crate::rank::{self, RankedHotel};
use crate::vector;
use crate::verify;

/// A query photo decoded once, for every stage that reads its pixels: the embedding, PDQ and
/// the geometric verification.
pub struct QueryPhoto<'a> {
    bytes: &'a [u8],
    decoded: Decoded,
}

impl<'a> QueryPhoto<'a> {
    /// Decodes `bytes` as large as the verification's keypoints need (which covers PDQ and,
    /// for most photos, the network; the embedder decodes again only when it needs more).
    pub fn decode(bytes: &'a [u8], limits: &Limits) -> Result<Self, EngineError> {
        let side = verify::MAX_SIDE;
        Ok(QueryPhoto { bytes, decoded: decode::decode(bytes, limits, Some((side, side)))? })
    }

    /// The decoded pixels.
    pub fn decoded(&self) -> &Decoded {
        &self.decoded
    }

    /// The photo to embed, as a search embeds it (nothing masked).
    pub fn input(&self) -> crate::Input<'_> {
        crate::Input { bytes: self.bytes, mask: None, auto_mask: false, decoded: Some(&self.decoded), marks: &[] }
    }
}

/// What retrieval found: the query's embedding and the stored photos nearest to it, best first.
struct Retrieved {
    /// The index that answered: later stages read vectors from the same snapshot, even if
    /// a rebuild swaps it meanwhile.
    index: std::sync::Arc<Searchable>,
    emb: Embedding,
    found: Vec<Found>,
    /// The catalog's vectors of the hits (as embedded, not projected), where the re-rank
    /// fetched them.
    exact: HashMap<i64, Vec<f32>>,
    plan: Plan,
    /// Shared marks masked before the embedding, `[x, y, width, height]` in its pixels.
    marks: Vec<[u32; 4]>,
}

/// What the query's hashes matched: stored photos it is a copy of, and hash-bank entries.
struct Copies {
    reuse: Vec<Reuse>,
    /// The closest bank matches (`banks::MAX_BANK_MATCHES`), and how many there were.
    bank_matches: Vec<BankMatch>,
    bank_total: usize,
}

impl Copies {
    /// Adds what another photo of the query matched (a stored photo or bank entry once, at
    /// its closest).
    fn add(&mut self, other: Copies) {
        for r in other.reuse {
            match self.reuse.iter_mut().find(|x| x.image_id == r.image_id) {
                Some(x) if r.distance < x.distance => *x = r,
                Some(_) => {}
                None => self.reuse.push(r),
            }
        }
        self.reuse.sort_by_key(|r| (r.distance, r.image_id));
        for b in other.bank_matches {
            if !self.bank_matches.iter().any(|x| x.bank == b.bank && x.pdq == b.pdq) {
                self.bank_matches.push(b);
            }
        }
        self.bank_matches.sort_by(|a, b| a.distance.cmp(&b.distance).then_with(|| a.bank.cmp(&b.bank)).then_with(|| a.pdq.cmp(&b.pdq)));
        self.bank_matches.truncate(super::banks::MAX_BANK_MATCHES);
        self.bank_total = self.bank_total.max(other.bank_total);
    }
}

/// Every photo's hits in one list, best first, each stored photo once (at its best).
fn merged_hits(retrieved: &[Retrieved]) -> Vec<Found> {
    let mut all: Vec<Found> = retrieved.iter().flat_map(|r| r.found.iter().copied()).collect();
    all.sort_by(|a, b| b.similarity.total_cmp(&a.similarity).then(a.image_id.cmp(&b.image_id)));
    let mut seen = std::collections::HashSet::new();
    all.retain(|f| seen.insert(f.image_id));
    all
}

/// Per verified photo: its cosine similarity before the bonus, and the matched keypoints.
type Verified = HashMap<i64, (f32, verify::Matched)>;

/// Hotels ranked, with the calibration's reading of their scores.
struct Ranked {
    hotels: Vec<RankedHotel>,
    /// (hotel id, score) of the candidates the probabilities are spread over, best first.
    candidates: Vec<(i64, f32)>,
    probabilities: Vec<f32>,
    /// Each ranked hotel's score minus the next one's.
    gaps: Vec<Option<f32>>,
    calibration: std::sync::Arc<Calibration>,
}

/// How long each stage of a search took, in seconds.
struct Laps {
    last: Instant,
    laps: Vec<(&'static str, f64)>,
}

impl Laps {
    fn start() -> Self {
        Laps { last: Instant::now(), laps: Vec::new() }
    }

    /// Ends `stage`, begun when the previous one ended.
    fn lap(&mut self, stage: &'static str) {
        let now = Instant::now();
        self.laps.push((stage, now.duration_since(self.last).as_secs_f64()));
        self.last = now;
    }
}

impl Engine {
    /// Searches: ranked hotels with evidence, from every photo of the query together.
    /// Writes an audit entry for `actor`.
    pub fn search(&self, q: &Query, actor: &str) -> Result<SearchResult, EngineError> {
        let t = Instant::now();
        let mut laps = Laps::start();
        let images = q.photos();
        if images.len() > MAX_QUERY_PHOTOS {
            return Err(EngineError::Invalid {
                field: "photo",
                message: format!("{} photos; a search takes {MAX_QUERY_PHOTOS} at most", images.len()),
            });
        }
        if let Some(c) = q.filter.country.as_deref().filter(|c| crate::places::country(c).is_none()) {
            return Err(EngineError::Invalid {
                field: "country",
                message: format!("no country is called {c:?}: give an ISO code or an English name (US, USA, United States)"),
            });
        }
        let photos = images.iter().map(|i| QueryPhoto::decode(i.bytes, &self.settings.limits)).collect::<Result<Vec<_>, _>>()?;
        let allowed = if q.filter.is_empty() { None } else { Some(self.catalog.hotels_matching(&q.filter)?) };
        let mut retrieved = Vec::with_capacity(photos.len());
        let mut copies = Copies { reuse: Vec::new(), bank_matches: Vec::new(), bank_total: 0 };
        // A blank or flat query (a dark photo) resembles every dark photo: never "strong".
        let mut low_information = true;
        for (photo, image) in photos.iter().zip(&images) {
            retrieved.push(self.retrieve(q, photo, image.mask, allowed.as_deref())?);
            // Hashing waits for the embedding: ONNX Runtime already uses every core.
            let hashes = query_hashes(&photo.decoded);
            low_information &= hashes.quality < pdq::MIN_INFORMATIVE_QUALITY;
            copies.add(self.copies(&hashes, allowed.as_deref())?);
        }
        laps.lap("retrieve");
        let verified = photos
            .iter()
            .zip(retrieved.iter_mut())
            .map(|(photo, r)| self.verify(photo, r.emb.mask.as_ref(), &mut r.found))
            .collect::<Result<Vec<_>, _>>()?;
        laps.lap("verify");
        let ranked = self.rank(&retrieved, if q.top == 0 { self.settings.search.top_hotels } else { q.top });
        laps.lap("rank");
        let hotels = self.explain(&ranked, &retrieved, &verified, low_information)?;
        laps.lap("explain");
        let queries = self.record(q, &images, &retrieved, &copies, &hotels, actor)?;
        laps.lap("record");
        let c = &ranked.calibration;
        let first = &retrieved[0];
        Ok(SearchResult {
            grid: first.emb.cells.as_ref().map_or((0, 0), |(fm, _)| (fm.width, fm.height)),
            auto_mask: first.emb.auto_mask,
            query_sha256: queries[0].sha256.clone(),
            queries,
            hotels,
            reuse: copies.reuse,
            images: merged_hits(&retrieved),
            plan: first.plan,
            saved_case_image: q.save_case,
            low_information,
            hotels_allowed: allowed.as_ref().map(Vec::len),
            calibration: CalibrationInfo { source: c.source.clone(), samples: c.samples, strong: c.strong, possible: c.possible },
            bank_matches: copies.bank_matches,
            bank_matches_total: copies.bank_total,
            candidates: ranked.candidates,
            stages: laps.laps,
            millis: t.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// Embeds one query photo and finds the stored photos nearest to it (re-ranked exactly,
    /// and expanded with the top hits when `search.expansion` is set), within `allowed` hotels.
    fn retrieve(&self, q: &Query, photo: &QueryPhoto, mask: Option<&Mask>, allowed: Option<&[i64]>) -> Result<Retrieved, EngineError> {
        let opts = &self.settings.search;
        let auto_mask = opts.auto_mask && !q.skip_auto_mask;
        let marks = self.mark_rects(&photo.decoded);
        let emb =
            self.embedder.embed(crate::Input { bytes: photo.bytes, mask, auto_mask, decoded: Some(&photo.decoded), marks: &marks })?;
        let index = self.index();
        let query = index.project(&emb.vector);
        let (mut found, mut plan) = index.vectors.search(&query, opts.top_images, allowed, q.ef)?;
        let mut exact = self.rerank(&index, &query, &mut found)?;
        if opts.expansion > 0 && !found.is_empty() {
            let mut expanded = query.clone();
            for f in found.iter().take(opts.expansion) {
                if let Some(v) = exact.get(&f.image_id).map(|v| index.project(v)).or_else(|| index.vectors.vector_of(f.image_id)) {
                    let w = f.similarity.max(0.0).powf(opts.alpha);
                    expanded.iter_mut().zip(&v).for_each(|(e, x)| *e += w * x);
                }
            }
            crate::embed::pool::l2_normalize(&mut expanded);
            (found, plan) = index.vectors.search(&expanded, opts.top_images, allowed, q.ef)?;
            exact = self.rerank(&index, &expanded, &mut found)?;
        }
        Ok(Retrieved { index, emb, found, exact, plan, marks })
    }

    /// The query's PDQ hashes matched against the gallery (reuse of a crowd photo, when
    /// `search.reuse`) and the hash banks.
    fn copies(&self, hashes: &pdq::Dihedral, allowed: Option<&[i64]>) -> Result<Copies, EngineError> {
        let reuse = self.settings.search.reuse;
        let (bank_matches, bank_total) = match hashes.quality >= pdq::MIN_TRUSTED_QUALITY {
            true => super::banks::closest(self.bank_matches(&hashes.named().map(|(_, x)| x))),
            false => (Vec::new(), 0),
        };
        let reuse = if reuse { self.reuse_of(hashes, allowed)? } else { Vec::new() };
        Ok(Copies { reuse, bank_matches, bank_total })
    }

    /// Groups each query photo's hits by hotel, ranks the hotels and fuses the rankings of
    /// several photos; probabilities are spread over the same number of candidates whatever
    /// `top` shows.
    fn rank(&self, retrieved: &[Retrieved], top: usize) -> Ranked {
        let opts = &self.settings.search;
        let per_photo: Vec<Vec<RankedHotel>> =
            retrieved.iter().map(|r| rank::rank_hotels(&r.found, opts.aggregation, usize::MAX)).collect();
        let mut hotels = rank::fuse(per_photo, opts.fusion, top.max(calibrate::CANDIDATES));
        let calibration = self.calibration();
        let candidates: Vec<(i64, f32)> = hotels.iter().take(calibrate::CANDIDATES).map(|r| (r.hotel_id, r.score)).collect();
        let probabilities = calibration.probabilities(&candidates.iter().map(|c| c.1).collect::<Vec<_>>(), retrieved.len());
        let gaps = (0..hotels.len()).map(|i| hotels.get(i + 1).map(|n| hotels[i].score - n.score)).collect();
        hotels.truncate(top);
        Ranked { hotels, candidates, probabilities, gaps, calibration }
    }

    /// The ranked hotels as the investigator sees them: each with its probability, label and
    /// evidence photos (similarity, matched keypoints, the query cells that point at it).
    /// The catalog is read once for all hotels and once for all evidence photos.
    /// No hotel is labelled strong on a `low_information` query, or on evidence photos that are
    /// all near-uniform (stored before such photos were refused).
    fn explain(
        &self,
        ranked: &Ranked,
        retrieved: &[Retrieved],
        verified: &[Verified],
        low_information: bool,
    ) -> Result<Vec<HotelHit>, EngineError> {
        let evidence_n = self.settings.search.evidence;
        let hotel_ids: Vec<i64> = ranked.hotels.iter().map(|r| r.hotel_id).collect();
        let image_ids: Vec<i64> = ranked.hotels.iter().flat_map(|r| r.images.iter().take(evidence_n).map(|f| f.image_id)).collect();
        let hotels: HashMap<i64, Hotel> = self.catalog.hotels(&hotel_ids)?.into_iter().map(|h| (h.id, h)).collect();
        let images: HashMap<i64, Image> = self.catalog.images(&image_ids)?.into_iter().map(|i| (i.id, i)).collect();
        let mut hits = Vec::with_capacity(ranked.hotels.len());
        for r in &ranked.hotels {
            let hotel = hotels.get(&r.hotel_id).cloned().ok_or(crate::catalog::CatalogError::NoHotel(r.hotel_id))?;
            let evidence = r.images.iter().zip(&r.photos).take(evidence_n).map(|(f, &p)| {
                let img = images.get(&f.image_id).ok_or(crate::catalog::CatalogError::NoImage(f.image_id))?;
                Ok(self.evidence(f, img, p, &retrieved[p], verified[p].get(&f.image_id)))
            });
            let evidence = evidence.collect::<Result<Vec<_>, EngineError>>()?;
            let probability = ranked.probabilities.get(r.rank - 1).copied().unwrap_or(0.0);
            let flat_evidence = r
                .images
                .iter()
                .take(evidence_n)
                .all(|f| images.get(&f.image_id).is_none_or(|i| i.pdq_quality < pdq::MIN_INFORMATIVE_QUALITY));
            let confidence = match ranked.calibration.confidence(probability) {
                calibrate::Confidence::Strong if low_information || flat_evidence => calibrate::Confidence::Possible,
                c => c,
            };
            hits.push(HotelHit { rank: r.rank, score: r.score, probability, confidence, gap: ranked.gaps[r.rank - 1], hotel, evidence });
        }
        Ok(hits)
    }

    /// One evidence photo, found by query photo `query`: its similarity (before any
    /// verification bonus), matched keypoints, and the query cells most like it.
    fn evidence(&self, f: &Found, img: &Image, query: usize, retrieved: &Retrieved, verified: Option<&(f32, verify::Matched)>) -> Evidence {
        // The cells are the network's, before any projection: compared with the photo's
        // vector as embedded (the index's copy only when it holds them unprojected).
        let unprojected =
            || retrieved.index.projection.whitening.is_none().then(|| retrieved.index.vectors.vector_of(f.image_id)).flatten();
        let vector = retrieved.exact.get(&f.image_id).cloned().or_else(unprojected);
        let query_cells = match (&retrieved.emb.cells, vector) {
            (Some((fm, keep)), Some(v)) => best_cells(fm, keep.as_deref(), &v, 3),
            _ => Vec::new(),
        };
        let (similarity, matched) = match verified {
            Some((cos, m)) => (*cos, Some(m)),
            None => (f.similarity, None),
        };
        Evidence {
            query,
            image_id: img.id,
            sha256: img.sha256.clone(),
            room: img.room.clone(),
            similarity,
            matched_points: matched.map(|m| m.inliers),
            matched_pairs: matched.map(|m| m.pairs.clone()).unwrap_or_default(),
            query_cells,
        }
    }

    /// Keeps the query photos as case images when asked, and audits the search (each photo's
    /// sha256, never the photo); returns what the result says of each photo.
    fn record(
        &self,
        q: &Query,
        images: &[QueryImage],
        retrieved: &[Retrieved],
        copies: &Copies,
        hits: &[HotelHit],
        actor: &str,
    ) -> Result<Vec<QueryInfo>, EngineError> {
        let queries: Vec<QueryInfo> = images
            .iter()
            .zip(retrieved)
            .map(|(i, r)| QueryInfo {
                sha256: crate::digest::sha256_hex(i.bytes),
                masked: i.mask.is_some(),
                auto_mask: r.emb.auto_mask,
                grid: r.emb.cells.as_ref().map_or((0, 0), |(fm, _)| (fm.width, fm.height)),
                marks: r.marks.clone(),
            })
            .collect();
        if q.save_case {
            for i in images {
                self.cases.put(i.bytes)?;
            }
        }
        let detail = serde_json::json!({
            "query_sha256": queries[0].sha256,
            "query_sha256s": queries.iter().map(|i| &i.sha256).collect::<Vec<_>>(),
            "filters": q.filter,
            "masked": queries.iter().map(|i| i.masked).collect::<Vec<_>>(),
            "auto_mask": queries.iter().map(|i| i.auto_mask).collect::<Vec<_>>(),
            "saved_case_image": q.save_case,
            "hotel_ids": hits.iter().map(|h| h.hotel.id).collect::<Vec<_>>(),
            "probabilities": hits.iter().map(|h| h.probability).collect::<Vec<_>>(),
            "image_ids": hits.iter().flat_map(|h| h.evidence.iter().map(|e| e.image_id)).collect::<Vec<_>>(),
            "reuse_image_ids": copies.reuse.iter().map(|r| r.image_id).collect::<Vec<_>>(),
            // Which bank hashes, how close, and how many: the labels are in the banks.
            "bank_matches": copies.bank_matches.iter().map(|b| serde_json::json!({"bank": b.bank, "pdq": b.pdq, "distance": b.distance})).collect::<Vec<_>>(),
            "bank_matches_total": copies.bank_total,
        });
        self.catalog.audit(actor, "search", &detail)?;
        Ok(queries)
    }

    /// Re-scores what a compact index found with the exact f32 vectors the catalog keeps
    /// (projected as the index's are), best first; returns those vectors as embedded. The
    /// index holds int8 or f16 codes, whose rounding may swap near ties; the catalog is the
    /// source of truth. A no-op where the index's scores are exact already.
    fn rerank(&self, index: &Searchable, q: &[f32], found: &mut [Found]) -> Result<HashMap<i64, Vec<f32>>, EngineError> {
        if found.is_empty() || index.vectors.scores_exact() {
            return Ok(HashMap::new());
        }
        let ids: Vec<i64> = found.iter().map(|f| f.image_id).collect();
        let exact: HashMap<i64, Vec<f32>> = self.catalog.embeddings(&ids, self.model_id)?.into_iter().collect();
        for f in found.iter_mut() {
            if let Some(v) = exact.get(&f.image_id) {
                f.similarity = vector::dot(q, &index.project(v));
            }
        }
        found.sort_by(|a, b| b.similarity.total_cmp(&a.similarity).then(a.image_id.cmp(&b.image_id)));
        Ok(exact)
    }

    /// Geometric verification of the top `search.verify` photos of `found`: each gets a bonus
    /// for the keypoint matches it shares with the query in one consistent geometry, and
    /// `found` is re-sorted.
    fn verify(&self, photo: &QueryPhoto, mask: Option<&Mask>, found: &mut [Found]) -> Result<Verified, EngineError> {
        let opts = &self.settings.search;
        let k = opts.verify.min(found.len());
        if k == 0 {
            return Ok(Default::default());
        }
        // The query's points on shared marks are left out once, not per stored photo.
        let (query_points, _) = self.without_marks(query_keypoints(&photo.decoded, mask)?);
        let ids: Vec<i64> = found[..k].iter().map(|f| f.image_id).collect();
        let shas: HashMap<i64, String> = self.catalog.images(&ids)?.into_iter().map(|i| (i.id, i.sha256)).collect();
        let matched: Vec<verify::Matched> = ids
            .par_iter()
            .map(|id| match shas.get(id).and_then(|sha| self.stored_keypoints(sha)) {
                Some(points) => verify::matched(&query_points, &self.without_marks(points).0),
                None => verify::Matched::default(),
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

    /// The keypoints of a stored photo, or `None` (logged) when it cannot be read again: the
    /// search still answers from the vectors.
    pub(super) fn stored_keypoints(&self, sha: &str) -> Option<verify::Keypoints> {
        let side = verify::MAX_SIDE;
        let decoded =
            self.store.get(sha).map_err(EngineError::from).and_then(|b| Ok(decode::decode(&b, &self.settings.limits, Some((side, side)))?));
        match decoded {
            Ok(d) => Some(verify::keypoints(&d.rgb, None)),
            Err(e) => {
                tracing::warn!(photo = %sha, "geometric verification skipped: {e}");
                None
            }
        }
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
        let ids: Vec<i64> = best.keys().map(|&id| id as i64).collect();
        let mut out = Vec::new();
        for img in self.catalog.images(&ids)? {
            let (distance, variant) = best[&(img.id as u64)];
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
/// reference downsamples before hashing too; the query's one decode is at least
/// `verify::MAX_SIDE`, 640): photos under 1024 pixels on the short side
/// are decoded whole and hash identically; 12-Mpixel photos land 5 bits from their
/// full-resolution hash on average, 10 at most (`tests/pdq.rs`, `README`).
/// Formats without a reduced-scale decode (PNG, WebP, …) are shrunk to 1024 pixels on the
/// short side the same way before hashing, so an 80-Mpixel PNG does not also need a
/// full-size luma plane.
fn query_hashes(decoded: &Decoded) -> pdq::Dihedral {
    let (w, h) = decoded.rgb.dimensions();
    if w.min(h) > 2048 {
        let s = 1024.0 / f64::from(w.min(h));
        let small = image::imageops::thumbnail(
            &decoded.rgb,
            ((f64::from(w) * s).round() as u32).max(1),
            ((f64::from(h) * s).round() as u32).max(1),
        );
        return pdq::hash_dihedral(&small);
    }
    pdq::hash_dihedral(&decoded.rgb)
}

/// The query's keypoints, outside its mask (drawn at a quarter of the verification size,
/// which is precise enough).
pub(super) fn query_keypoints(decoded: &Decoded, mask: Option<&Mask>) -> Result<verify::Keypoints, EngineError> {
    let side = verify::MAX_SIDE;
    let (fw, fh) = (decoded.full_width, decoded.full_height);
    let mask = match mask {
        Some(m) => {
            let (cols, rows) = ((fw * side / 4 / fw.max(fh)).max(1), (fh * side / 4 / fw.max(fh)).max(1));
            let px = m.pixels(fw, fh, cols, rows).map_err(|e| EngineError::Embed(e.into()))?;
            Some(image::GrayImage::from_fn(cols, rows, |x, y| image::Luma([if px[(y * cols + x) as usize] { 255 } else { 0 }])))
        }
        None => None,
    };
    Ok(verify::keypoints(&decoded.rgb, mask.as_ref()))
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
