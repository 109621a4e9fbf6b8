//! Engine: photos in (decode → hash → embed → store → index), queries out (search → rank),
//! over one data directory. Knows nothing of HTTP.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, CatalogError, Hotel, HotelFilter, Image, NewImage, Source, Status};
use crate::config::Config;
use crate::decode::{self, DecodeError};
use crate::embed::{EmbedError, Embedder};
use crate::hamming::HammingIndex;
use crate::index::{Found, IndexError, Plan, VectorIndex};
use crate::pdq;
use crate::pool::{FeatureMap, Mask};
use crate::rank::{self, Aggregation};
use crate::store::{self, PhotoStore, StoreError};
use crate::vector;
use crate::verify;

/// Why an engine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The data directory could not be prepared.
    #[error("data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
}

/// Search settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SearchOptions {
    /// Images retrieved before aggregation into hotels.
    pub top_images: usize,
    /// Hotels returned.
    pub top_hotels: usize,
    /// Evidence photos returned per hotel.
    pub evidence: usize,
    /// How image hits become hotel scores.
    pub aggregation: Aggregation,
    /// α-query expansion: re-query with the top `expansion` images added (0 = off).
    pub expansion: usize,
    /// α of the expansion weights (similarity^α).
    pub alpha: f32,
    /// Look for stored photos the query is a copy of (PDQ in 8 rotations and mirrors). It
    /// costs a second decode and a hash per query: about 14 % of the search throughput
    /// under load (README, load figures).
    pub reuse: bool,
    /// When a query comes without a mask, look for a region already painted out and mask it.
    pub auto_mask: bool,
    /// Geometric verification of this many top photos (0 = off): keypoints of the query and
    /// of each photo matched, and a fundamental matrix fitted by RANSAC (`verify`).
    pub verify: usize,
    /// A verified photo's score is its similarity + `verify_weight` × min(inliers, `verify_cap`) / `verify_cap`.
    pub verify_weight: f32,
    pub verify_cap: usize,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            top_images: 100,
            top_hotels: 10,
            evidence: 3,
            aggregation: Aggregation::Best,
            expansion: 0,
            alpha: 3.0,
            reuse: true,
            auto_mask: true,
            verify: 30,
            verify_weight: 0.1,
            verify_cap: 30,
        }
    }
}

/// A query: a photo, what to ignore in it, and which hotels may answer.
#[derive(Debug, Clone, Default)]
pub struct Query<'a> {
    pub bytes: &'a [u8],
    pub mask: Option<&'a Mask>,
    pub filter: HotelFilter,
    /// Hotels to return (0 = the configured default).
    pub top: usize,
    /// Keep the query photo as a case image. Off by default: a query may show a victim, and
    /// is written nowhere unless the investigator asks.
    pub save_case: bool,
    /// Don't look for an already-erased region to mask (the investigator turned it off).
    pub skip_auto_mask: bool,
}

/// A feature-map cell of the query that resembles a matched photo.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Cell {
    pub x: usize,
    pub y: usize,
    pub score: f32,
}

/// One matched photo shown as evidence.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Evidence {
    pub image_id: i64,
    pub sha256: String,
    pub room: Option<String>,
    /// Cosine similarity of the query's and the photo's vectors.
    pub similarity: f32,
    /// Keypoint matches consistent with one scene seen from two positions (RANSAC inliers),
    /// when the photo was among those geometrically verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched_points: Option<usize>,
    /// The query's cells most similar to this photo, best first (grid in `SearchResult::grid`).
    pub query_cells: Vec<Cell>,
}

/// A stored photo that the query is a copy of: the same picture, perhaps resized,
/// recompressed, rotated or mirrored (PDQ within its match distance).
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Reuse {
    pub image_id: i64,
    pub hotel_id: i64,
    pub distance: u32,
    /// Which rotation or mirror of the query matched ("original", "flip_x", …).
    #[schema(value_type = String)]
    pub variant: &'static str,
}

/// A candidate hotel.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HotelHit {
    pub rank: usize,
    pub score: f32,
    pub hotel: Hotel,
    pub evidence: Vec<Evidence>,
}

/// The answer to a query.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SearchResult {
    pub hotels: Vec<HotelHit>,
    /// Stored photos the query is a copy of (exact reuse of a crowd photo), closest first.
    pub reuse: Vec<Reuse>,
    /// Every image hit, best first (image id, hotel id, similarity), for rooms and evaluation.
    #[serde(skip)]
    #[schema(ignore)]
    pub images: Vec<Found>,
    /// Query feature-map size (columns, rows) that `query_cells` refer to.
    #[schema(value_type = Vec<usize>)]
    pub grid: (usize, usize),
    /// How the index answered.
    pub plan: Plan,
    /// sha256 of the query bytes (what the audit keeps instead of the photo).
    pub query_sha256: String,
    /// Whether the query was kept as a case image (under its sha256), as asked.
    pub saved_case_image: bool,
    /// Fraction of the query masked automatically because it looked painted out (no mask
    /// was given); absent when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_mask: Option<f32>,
    pub millis: f64,
}

/// Outcome of adding one photo.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Ingested {
    /// Stored and indexed.
    Added { image_id: i64, pdq: String, pdq_quality: u8 },
    /// A near-copy of a photo of the same hotel already stored; not stored again.
    Duplicate { of_image_id: i64, distance: u32, pdq: String },
    /// The very same photo is stored for another hotel: one of the two is wrong, so nothing
    /// is added and an admin decides (the upload is audited as `upload-conflict`).
    CrossHotelDuplicate { of_image_id: i64, of_hotel_id: i64, pdq: String },
}

/// A step of a rebuild, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Embedding photos that have no vector for the current model.
    Embedding,
    /// Building the index from the catalog.
    Indexing,
}

impl Step {
    /// Its name in job records.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Embedding => "embedding",
            Step::Indexing => "indexing",
        }
    }
}

/// Where a photo to add belongs and who sent it.
#[derive(Debug, Clone)]
pub struct NewPhoto {
    pub hotel_id: i64,
    pub room: Option<String>,
    pub source: Source,
    pub uploader_key_id: Option<String>,
}

/// A photo made ready to add (the parallel part of ingestion).
pub struct Prepared {
    clean: Vec<u8>,
    width: u32,
    height: u32,
    pdq: pdq::Pdq,
    vector: Vec<f32>,
}

/// The engine over one data directory.
pub struct Engine {
    cfg: Config,
    catalog: Mutex<Catalog>,
    store: PhotoStore,
    /// Query photos investigators asked to keep, byte for byte (evidence: the audit holds their sha256).
    cases: PhotoStore,
    embedder: Embedder,
    model_id: i64,
    index: RwLock<VectorIndex>,
    hashes: RwLock<HammingIndex>,
}

impl Engine {
    /// Opens the data directory: catalog, photo store, model, and the index (loaded from its
    /// dump and caught up from the catalog, or rebuilt from the catalog).
    pub fn open(cfg: &Config) -> Result<Self, EngineError> {
        let dir = &cfg.data_dir;
        std::fs::create_dir_all(dir).map_err(|source| EngineError::DataDir { path: dir.clone(), source })?;
        let catalog = Catalog::open(&dir.join("catalog.sqlite"))?;
        let store = PhotoStore::open(&dir.join("photos"))?;
        let cases = PhotoStore::open(&dir.join("cases"))?;
        let embedder = crate::open_embedder(cfg)?;
        let settings = serde_json::to_string(&embedder.options()).unwrap_or_default();
        let model_id = catalog.model_id(&embedder.card().name, &embedder.options().pooling.to_string(), embedder.dim(), &settings)?;
        let engine = Engine {
            cfg: cfg.clone(),
            catalog: Mutex::new(catalog),
            store,
            cases,
            model_id,
            index: RwLock::new(VectorIndex::new(embedder.dim(), cfg.index.clone())),
            hashes: RwLock::new(HammingIndex::new()),
            embedder,
        };
        engine.load_index()?;
        let missing = engine.catalog().images_without_embedding(model_id)?.len();
        if missing > 0 {
            tracing::warn!("{missing} photos have no embedding for model {} yet: run `hotelmatch reindex`", engine.embedder.card().name);
        }
        Ok(engine)
    }

    fn index_dir(&self) -> PathBuf {
        self.cfg.data_dir.join("index").join(format!("model-{}", self.model_id))
    }

    fn catalog(&self) -> std::sync::MutexGuard<'_, Catalog> {
        self.catalog.lock().unwrap_or_else(|e| e.into_inner())
    }

    // As with the catalog, a lock poisoned by a panic is taken over rather than failing
    // every later request: the catalog stays the source of truth, and `reindex` restores
    // the indexes from it.
    fn index(&self) -> RwLockReadGuard<'_, VectorIndex> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn index_mut(&self) -> RwLockWriteGuard<'_, VectorIndex> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    fn hashes(&self) -> RwLockReadGuard<'_, HammingIndex> {
        self.hashes.read().unwrap_or_else(|e| e.into_inner())
    }

    fn hashes_mut(&self) -> RwLockWriteGuard<'_, HammingIndex> {
        self.hashes.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Loads the dump (or starts empty if it is unusable) and replays the change log since it.
    fn load_index(&self) -> Result<(), EngineError> {
        let loaded = match VectorIndex::load(&self.index_dir(), self.embedder.dim(), self.cfg.index.clone()) {
            Ok(idx) => idx,
            Err(e) => {
                if self.index_dir().exists() {
                    tracing::warn!("rebuilding the index from the catalog: {e}");
                }
                VectorIndex::new(self.embedder.dim(), self.cfg.index.clone())
            }
        };
        *self.index_mut() = loaded;
        self.catch_up()?;
        // The PDQ index is cheap to rebuild; it is always made from the catalog.
        let active = self.catalog().active_pdq()?;
        let mut hashes = self.hashes_mut();
        for (image_id, pdq) in active {
            hashes.add(image_id as u64, &pdq);
        }
        Ok(())
    }

    /// Applies the catalog changes made after the index's watermark.
    fn catch_up(&self) -> Result<(), EngineError> {
        let since = self.index().watermark();
        let changes = self.catalog().changes_since(since, self.model_id)?;
        self.index_mut().apply(&changes)?;
        Ok(())
    }

    /// Writes the index dump (with its watermark).
    pub fn save_index(&self) -> Result<(), EngineError> {
        self.index().save(&self.index_dir())?;
        Ok(())
    }

    /// Rebuilds the index from the catalog, purging deleted images, and saves it. Active
    /// photos without an embedding for the current model (the model or its settings changed)
    /// are re-embedded first from their stored copies; returns how many. Searches go on
    /// meanwhile against the old index, which is swapped for the new one when it is complete.
    pub fn rebuild_index(&self, progress: &(dyn Fn(Step, usize, usize) + Sync)) -> Result<usize, EngineError> {
        let missing = self.catalog().images_without_embedding(self.model_id)?;
        let total = missing.len();
        progress(Step::Embedding, 0, total);
        for (done, chunk) in missing.chunks(32).enumerate() {
            let vectors: Vec<Result<Vec<f32>, EngineError>> = chunk
                .par_iter()
                .map(|img| {
                    let bytes = self.store.get(&img.sha256)?;
                    Ok(self.embedder.embed_one(&bytes, None)?.vector)
                })
                .collect();
            let cat = self.catalog();
            for (img, v) in chunk.iter().zip(vectors) {
                match v {
                    Ok(v) => cat.put_embedding(img.id, self.model_id, &v)?,
                    Err(e) => tracing::warn!(image = img.id, "cannot re-embed: {e}"),
                }
            }
            drop(cat);
            progress(Step::Embedding, (done * 32 + chunk.len()).min(total), total);
        }
        let changes = self.catalog().changes_since(0, self.model_id)?;
        progress(Step::Indexing, 0, changes.len());
        let mut fresh = VectorIndex::new(self.embedder.dim(), self.cfg.index.clone());
        fresh.apply(&changes)?;
        fresh.compact();
        *self.index_mut() = fresh;
        // What was added or deleted while the new index was being built.
        self.catch_up()?;
        self.save_index()?;
        progress(Step::Indexing, changes.len(), changes.len());
        let purged = self.purge_deleted_files()?;
        if purged > 0 {
            tracing::info!(files = purged, "deleted photos' files removed from the store");
        }
        Ok(total)
    }

    /// Removes from the store the files of deleted photos whose bytes no other photo (active
    /// or quarantined) shares; returns how many. Their catalog rows stay, as the record, and
    /// can no longer be restored.
    pub fn purge_deleted_files(&self) -> Result<usize, EngineError> {
        let orphans = self.catalog().deleted_only_sha256()?;
        let mut removed = 0;
        for sha in orphans {
            removed += usize::from(self.store.remove(&sha)?);
        }
        Ok(removed)
    }

    /// The embedder in use.
    pub fn embedder(&self) -> &Embedder {
        &self.embedder
    }

    /// The photo store.
    pub fn store(&self) -> &PhotoStore {
        &self.store
    }

    /// Runs `f` on the catalog.
    pub fn with_catalog<T>(&self, f: impl FnOnce(&mut Catalog) -> T) -> T {
        f(&mut self.catalog())
    }

    /// Adds or updates a hotel.
    pub fn upsert_hotel(&self, h: &Hotel) -> Result<i64, EngineError> {
        Ok(self.catalog().upsert_hotel(h)?)
    }

    /// Decodes, hashes, embeds and cleans a photo: the part that can run in parallel.
    pub fn prepare(&self, bytes: &[u8]) -> Result<Prepared, EngineError> {
        let decoded = decode::decode(bytes, &self.cfg.limits, None)?;
        let pdq = pdq::hash(&decoded.rgb);
        let vector = self.embedder.embed_one(bytes, None)?.vector;
        let clean = store::clean_copy(bytes, &decoded)?;
        Ok(Prepared { clean, width: decoded.full_width, height: decoded.full_height, pdq, vector })
    }

    /// Adds a prepared photo: duplicate check, store, catalog, index. Durable when it returns.
    pub fn add(&self, photo: &NewPhoto, p: Prepared) -> Result<Ingested, EngineError> {
        let hotel = self.catalog().hotel(photo.hotel_id)?;
        // The very same stored bytes for this hotel: also what makes a re-run import idempotent
        // when it was killed between the catalog commit and recording the line.
        let sha256 = store::sha256_hex(&p.clean);
        if let Some(same) = self.catalog().images_with_sha(&sha256)?.into_iter().find(|i| i.hotel_id == hotel.id) {
            return Ok(Ingested::Duplicate { of_image_id: same.id, distance: 0, pdq: p.pdq.hash.to_string() });
        }
        let elsewhere = self.catalog().images_with_sha(&sha256)?.into_iter().find(|i| i.status != Status::Deleted);
        if let Some(other) = elsewhere {
            return Ok(Ingested::CrossHotelDuplicate { of_image_id: other.id, of_hotel_id: other.hotel_id, pdq: p.pdq.hash.to_string() });
        }
        if let Some((of, distance)) = self.duplicate_of(&p.pdq, hotel.id)? {
            return Ok(Ingested::Duplicate { of_image_id: of, distance, pdq: p.pdq.hash.to_string() });
        }
        self.store.put(&p.clean)?;
        let new = NewImage {
            sha256,
            hotel_id: hotel.id,
            room: photo.room.clone(),
            source: photo.source,
            uploader_key_id: photo.uploader_key_id.clone(),
            width: p.width,
            height: p.height,
            pdq: p.pdq.hash,
            pdq_quality: p.pdq.quality,
        };
        let image_id = self.catalog().add_image(&new, self.model_id, &p.vector)?;
        self.catch_up()?;
        self.hashes_mut().add(image_id as u64, &p.pdq.hash);
        Ok(Ingested::Added { image_id, pdq: p.pdq.hash.to_string(), pdq_quality: p.pdq.quality })
    }

    /// Adds one photo (prepare + add).
    pub fn ingest(&self, bytes: &[u8], photo: &NewPhoto) -> Result<Ingested, EngineError> {
        let p = self.prepare(bytes)?;
        self.add(photo, p)
    }

    /// An active photo of the same hotel within the duplicate distance, when both hashes are
    /// trustworthy (low-quality hashes never decide alone).
    fn duplicate_of(&self, p: &pdq::Pdq, hotel_id: i64) -> Result<Option<(i64, u32)>, EngineError> {
        if !p.trusted() || self.cfg.duplicate_distance == 0 {
            return Ok(None);
        }
        let hits = self.hashes().within(&p.hash, self.cfg.duplicate_distance);
        let cat = self.catalog();
        for h in hits {
            let img = cat.image(h.id as i64)?;
            if img.hotel_id == hotel_id && img.status == Status::Active && img.pdq_quality >= pdq::MIN_TRUSTED_QUALITY {
                return Ok(Some((img.id, h.distance)));
            }
        }
        Ok(None)
    }

    /// Sets an image's status; it leaves (or re-enters) search results at once.
    pub fn set_status(&self, image_id: i64, status: Status, actor: &str) -> Result<(), EngineError> {
        if status != Status::Deleted {
            // A deleted photo whose file was purged by a re-index cannot come back.
            let img = self.catalog().image(image_id)?;
            if !self.store.path(&img.sha256)?.exists() {
                return Err(EngineError::Store(StoreError::Missing(img.sha256)));
            }
        }
        let mut cat = self.catalog();
        cat.set_status(image_id, status)?;
        cat.audit(actor, "image-status", &serde_json::json!({"image_id": image_id, "status": status}))?;
        drop(cat);
        self.catch_up()?;
        let mut hashes = self.hashes_mut();
        if status == Status::Active {
            let img = self.catalog().image(image_id)?;
            hashes.add(image_id as u64, &img.pdq);
        } else {
            hashes.remove(image_id as u64);
        }
        Ok(())
    }

    /// One image's catalog row.
    pub fn image(&self, id: i64) -> Result<Image, EngineError> {
        Ok(self.catalog().image(id)?)
    }

    /// Searches: ranked hotels with evidence. Writes an audit entry for `actor`.
    pub fn search(&self, q: &Query, actor: &str) -> Result<SearchResult, EngineError> {
        let t = Instant::now();
        let opts = &self.cfg.search;
        let auto_mask = opts.auto_mask && !q.skip_auto_mask;
        let emb = self.embedder.embed_input(crate::Input { bytes: q.bytes, mask: q.mask, auto_mask })?;
        // After the embedding, not beside it: ONNX Runtime already uses every core.
        let hashes = if opts.reuse { Some(query_hashes(q.bytes, &self.cfg.limits)?) } else { None };
        let hotels = if q.filter.is_empty() { None } else { Some(self.catalog().hotels_matching(&q.filter)?) };
        let reuse = match hashes {
            Some(h) => self.reuse_of(&h, hotels.as_deref())?,
            None => Vec::new(),
        };
        let index = self.index();
        let (mut found, mut plan) = index.search(&emb.vector, opts.top_images, hotels.as_deref())?;
        if opts.expansion > 0 && !found.is_empty() {
            let mut expanded = emb.vector.clone();
            for f in found.iter().take(opts.expansion) {
                if let Some(v) = index.vector_of(f.image_id) {
                    let w = f.similarity.max(0.0).powf(opts.alpha);
                    expanded.iter_mut().zip(v).for_each(|(e, x)| *e += w * x);
                }
            }
            crate::pool::l2_normalize(&mut expanded);
            (found, plan) = index.search(&expanded, opts.top_images, hotels.as_deref())?;
        }
        // The verification decodes photos for a good while: not under the index's lock, which
        // uploads need.
        drop(index);
        let verified = self.verify(q.bytes, emb.mask.as_ref(), &mut found)?;
        let index = self.index();
        let top = if q.top == 0 { opts.top_hotels } else { q.top };
        let ranked = rank::rank_hotels(&found, opts.aggregation, top);
        let grid = emb.cells.as_ref().map_or((0, 0), |(fm, _)| (fm.width, fm.height));
        let cat = self.catalog();
        let mut hits = Vec::with_capacity(ranked.len());
        for r in ranked {
            let hotel = cat.hotel(r.hotel_id)?;
            let mut evidence = Vec::new();
            for f in r.images.iter().take(opts.evidence) {
                let img = cat.image(f.image_id)?;
                let query_cells = match (&emb.cells, index.vector_of(f.image_id)) {
                    (Some((fm, keep)), Some(v)) => best_cells(fm, keep.as_deref(), v, 3),
                    _ => Vec::new(),
                };
                let (similarity, matched_points) = verified.get(&f.image_id).map_or((f.similarity, None), |&(cos, n)| (cos, Some(n)));
                evidence.push(Evidence { image_id: img.id, sha256: img.sha256, room: img.room, similarity, matched_points, query_cells });
            }
            hits.push(HotelHit { rank: r.rank, score: r.score, hotel, evidence });
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
            "image_ids": hits.iter().flat_map(|h| h.evidence.iter().map(|e| e.image_id)).collect::<Vec<_>>(),
            "reuse_image_ids": reuse.iter().map(|r| r.image_id).collect::<Vec<_>>(),
        });
        cat.audit(actor, "search", &detail)?;
        Ok(SearchResult { hotels: hits, reuse, images: found, grid, plan, query_sha256, saved_case_image: q.save_case, auto_mask: emb.auto_mask, millis: t.elapsed().as_secs_f64() * 1e3 })
    }

    /// Geometric verification of the top `verify` photos of `found`: each gets a bonus for
    /// the keypoint matches it shares with the query in one consistent geometry, and `found`
    /// is re-sorted. Returns, per verified image, its cosine similarity and inlier count.
    fn verify(&self, query: &[u8], mask: Option<&Mask>, found: &mut [Found]) -> Result<std::collections::HashMap<i64, (f32, usize)>, EngineError> {
        let opts = &self.cfg.search;
        let k = opts.verify.min(found.len());
        if k == 0 {
            return Ok(Default::default());
        }
        let side = verify::MAX_SIDE;
        let decoded = decode::decode(query, &self.cfg.limits, Some((side, side)))?;
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
            let cat = self.catalog();
            found[..k].iter().map(|f| cat.image(f.image_id).map(|i| i.sha256)).collect::<Result<_, _>>()?
        };
        let inliers: Vec<usize> = shas
            .par_iter()
            .map(|sha| {
                // A stored photo that cannot be read again is not verified (and logged): the
                // search still answers from the vectors.
                let points = self.store.get(sha).map_err(EngineError::from).and_then(|b| Ok(decode::decode(&b, &self.cfg.limits, Some((side, side)))?));
                match points {
                    Ok(d) => verify::inliers(&query_points, &verify::keypoints(&d.rgb, None)),
                    Err(e) => {
                        tracing::warn!(photo = %sha, "geometric verification skipped: {e}");
                        0
                    }
                }
            })
            .collect();
        let cap = opts.verify_cap.max(1);
        let mut verified = std::collections::HashMap::with_capacity(k);
        for (f, n) in found[..k].iter_mut().zip(inliers) {
            verified.insert(f.image_id, (f.similarity, n));
            f.similarity += opts.verify_weight * n.min(cap) as f32 / cap as f32;
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
        let cat = self.catalog();
        let mut out = Vec::new();
        for (id, (distance, variant)) in best {
            let img = cat.image(id as i64)?;
            let allowed = hotels.is_none_or(|h| h.contains(&img.hotel_id));
            if allowed && img.status == Status::Active && img.pdq_quality >= pdq::MIN_TRUSTED_QUALITY {
                out.push(Reuse { image_id: img.id, hotel_id: img.hotel_id, distance, variant });
            }
        }
        out.sort_by_key(|r| (r.distance, r.image_id));
        Ok(out)
    }

    /// A case image an investigator kept, by its sha256.
    pub fn case_image(&self, sha256: &str) -> Result<Vec<u8>, EngineError> {
        Ok(self.cases.get(sha256)?)
    }

    /// Number of active images indexed.
    pub fn indexed(&self) -> usize {
        self.index().len()
    }

    /// The limits on input photos.
    pub fn limits(&self) -> &crate::decode::Limits {
        &self.cfg.limits
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.cfg.data_dir
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
        let small = image::imageops::thumbnail(&decoded.rgb, ((f64::from(w) * s).round() as u32).max(1), ((f64::from(h) * s).round() as u32).max(1));
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
