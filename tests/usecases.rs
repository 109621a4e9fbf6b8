//! The engine's use cases over in-memory and embedded adapters: an in-memory SQLite
//! catalog, in-memory blob stores and the built-in colour-layout embedder. No ONNX Runtime,
//! no server: what the engine decides, audits and shares between replicas.

use std::path::PathBuf;

use hotelmatch::catalog::sqlite::SqliteCatalog;
use hotelmatch::catalog::{self, Hotel, Source, Status};
use hotelmatch::decode::Limits;
use hotelmatch::embedders::ColourLayout;
use hotelmatch::engine::{Engine, EngineSettings, ErrorKind, Ingested, NewPhoto, Query, SearchOptions};
use hotelmatch::store::{self, MemoryStore, StoreOptions};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn settings(name: &str) -> EngineSettings {
    let data_dir = std::env::temp_dir().join(format!("hm-usecase-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    EngineSettings {
        data_dir,
        catalog: String::new(),
        photos: String::new(),
        store: StoreOptions::default(),
        limits: Limits::default(),
        index: Default::default(),
        search: SearchOptions { verify: 5, ..Default::default() },
        duplicate_distance: 16,
    }
}

fn in_memory(name: &str) -> Engine {
    let s = settings(name);
    let limits = s.limits;
    Engine::from_parts(s, Box::new(SqliteCatalog::in_memory().unwrap()), Box::new(MemoryStore::default()), Box::new(MemoryStore::default()), Box::new(ColourLayout::new(limits))).unwrap()
}

fn photo(name: &str) -> Vec<u8> {
    std::fs::read(root().join("data-sample/images").join(name)).unwrap()
}

fn new_photo(hotel_id: i64) -> NewPhoto {
    NewPhoto { hotel_id, room: Some("101".into()), source: Source::Crowd, uploader_key_id: Some("k1".into()) }
}

#[test]
fn every_use_case_audits_whoever_calls_it() {
    let engine = in_memory("audit");
    let h = engine.create_hotel(&Hotel { external_id: Some("h-a".into()), name: "A".into(), ..Default::default() }, "admin-1").unwrap();
    let dup = engine.create_hotel(&Hotel { external_id: Some("h-a".into()), name: "again".into(), ..Default::default() }, "admin-1").unwrap_err();
    assert_eq!(dup.kind(), (ErrorKind::Conflict, "hotel_exists"));
    let renamed = engine.update_hotel(h.id, |h| Hotel { name: "A2".into(), ..h }, "admin-2").unwrap();
    assert_eq!((renamed.name.as_str(), renamed.external_id.as_deref()), ("A2", Some("h-a")));
    let bytes = photo("h-aurora-101-0.jpg");
    let Ingested::Added { image_id, .. } = engine.ingest(&bytes, &new_photo(h.id), "uploader-1").unwrap() else { panic!("not added") };
    assert!(matches!(engine.ingest(&bytes, &new_photo(h.id), "uploader-1").unwrap(), Ingested::Duplicate { of_image_id, .. } if of_image_id == image_id));
    let res = engine.search(&Query { bytes: &bytes, ..Default::default() }, "inv-1").unwrap();
    assert_eq!(res.hotels[0].hotel.id, h.id);
    assert_eq!(res.hotels[0].evidence[0].image_id, image_id);
    engine.set_status(image_id, Status::Quarantined, "admin-3").unwrap();
    let (_, token) = engine.create_key(hotelmatch::catalog::Role::Investigator, "x", "admin-4").unwrap();
    assert!(engine.catalog().verify_key(&token).unwrap().is_some());
    let audit: Vec<(String, String)> = engine.catalog().audit_entries(20).unwrap().into_iter().rev().map(|e| (e.actor, e.action)).collect();
    let want = [("admin-1", "hotel-create"), ("admin-2", "hotel-update"), ("uploader-1", "upload"), ("uploader-1", "upload"), ("inv-1", "search"), ("admin-3", "image-status"), ("admin-4", "key-create")];
    assert_eq!(audit, want.map(|(a, b)| (a.to_string(), b.to_string())));
}

#[test]
fn a_csv_import_is_audited_photo_by_photo() {
    let engine = in_memory("import");
    hotelmatch::import::import_hotels(&engine, &root().join("data-sample/hotels.csv"), "importer").unwrap();
    let report = hotelmatch::import::import_images(&engine, &root().join("data-sample/images.csv"), "importer", &|_, _| {}).unwrap();
    let uploads = engine.catalog().audit_entries_of(Some("upload"), 1000).unwrap();
    assert_eq!(uploads.len(), report.added + report.duplicates);
    assert!(uploads.iter().all(|e| e.actor == "importer" && e.detail["source"] == "import"));
    assert_eq!(engine.indexed(), report.added);
}

#[test]
fn failures_carry_their_kind() {
    let engine = in_memory("errors");
    let missing = engine.ingest(&photo("h-aurora-101-0.jpg"), &new_photo(4242), "u").unwrap_err();
    assert_eq!(missing.kind(), (ErrorKind::NotFound, "no_such_hotel"));
    let garbage = engine.search(&Query { bytes: b"not a photo at all", ..Default::default() }, "u").unwrap_err();
    assert!(matches!(garbage.kind().0, ErrorKind::Unsupported | ErrorKind::Unprocessable), "{:?}", garbage.kind());
    assert_eq!(engine.case_image(&"0".repeat(64), "u").unwrap_err().kind(), (ErrorKind::NotFound, "not_found"));
    assert_eq!(engine.case_image("../x", "u").unwrap_err().kind(), (ErrorKind::Invalid, "invalid_field"));
}

#[test]
fn a_deleted_photo_is_purged_and_cannot_come_back() {
    let engine = in_memory("purge");
    let h = engine.upsert_hotel(&Hotel { external_id: Some("h".into()), name: "H".into(), ..Default::default() }, "a").unwrap();
    let bytes = photo("h-maple-151-0.jpg");
    let Ingested::Added { image_id, .. } = engine.ingest(&bytes, &new_photo(h), "u").unwrap() else { panic!() };
    let sha = engine.image(image_id).unwrap().sha256;
    engine.set_status(image_id, Status::Deleted, "a").unwrap();
    assert_eq!(engine.indexed(), 0);
    assert_eq!(engine.purge_deleted_files().unwrap(), 1);
    assert!(!engine.store().exists(&sha).unwrap());
    assert_eq!(engine.set_status(image_id, Status::Active, "a").unwrap_err().kind().0, ErrorKind::NotFound);
}

#[test]
fn two_engines_on_one_catalog_follow_each_other() {
    // Two "replicas" in one process: one SQLite catalog file and one photo directory shared,
    // each with its own index, kept current by `follow`.
    let (sa, sb) = (settings("replica-a"), settings("replica-b"));
    let shared = sa.data_dir.with_extension("shared");
    let _ = std::fs::remove_dir_all(&shared);
    std::fs::create_dir_all(&shared).unwrap();
    let open = |mut s: EngineSettings| {
        s.catalog = shared.join("catalog.sqlite").display().to_string();
        s.photos = shared.display().to_string();
        let limits = s.limits;
        Engine::open(s, Box::new(ColourLayout::new(limits))).unwrap()
    };
    let (a, b) = (open(sa), open(sb));
    let h = a.upsert_hotel(&Hotel { external_id: Some("h".into()), name: "H".into(), ..Default::default() }, "x").unwrap();
    let bytes = photo("h-harbor-121-0.jpg");
    let Ingested::Added { image_id, .. } = a.ingest(&bytes, &new_photo(h), "u").unwrap() else { panic!() };
    assert_eq!(b.indexed(), 0, "not followed yet");
    assert_eq!(b.follow().unwrap().changes, 1);
    assert_eq!(b.search(&Query { bytes: &bytes, ..Default::default() }, "inv").unwrap().hotels[0].evidence[0].image_id, image_id);
    // A deletion through B leaves A's results at A's next look.
    b.set_status(image_id, Status::Deleted, "mod").unwrap();
    a.follow().unwrap();
    assert_eq!(a.indexed(), 0);
    // A re-index through A: B sees the job finished and rebuilds.
    let (job, _) = hotelmatch::jobs::run_reindex(&a, "ops", &|_, _, _| {}).unwrap();
    assert_eq!(a.generation(), job.id);
    assert_eq!(b.follow().unwrap(), hotelmatch::engine::Followed { changes: 0, rebuilt: true });
    assert_eq!((b.generation(), b.follow().unwrap().rebuilt), (job.id, false));
    // The shared store is what both read: the purge by A's re-index removed the file.
    assert!(!store::open(&shared.display().to_string(), "photos", &StoreOptions::default()).unwrap().exists(&a.image(image_id).unwrap().sha256).unwrap());
    drop((a, b));
    assert_eq!(catalog::open(&shared.join("catalog.sqlite").display().to_string()).unwrap().image_counts().unwrap(), (1, 0));
    std::fs::remove_dir_all(&shared).ok();
}

#[test]
fn hits_from_the_compact_index_carry_exact_similarities() {
    // The index holds int8 codes (the default); the search re-scores its hits with the f32
    // vectors the catalog keeps, so a similarity is the exact cosine, best first.
    let s = EngineSettings { search: SearchOptions { verify: 0, ..Default::default() }, ..settings("rerank") };
    assert_eq!(s.index.format, hotelmatch::index::Format::Int8);
    let limits = s.limits;
    let engine = Engine::from_parts(s, Box::new(SqliteCatalog::in_memory().unwrap()), Box::new(MemoryStore::default()), Box::new(MemoryStore::default()), Box::new(ColourLayout::new(limits))).unwrap();
    let names = ["h-aurora-101-0.jpg", "h-aurora-101-1.jpg", "h-harbor-121-0.jpg", "h-harbor-121-1.jpg", "h-desert-141-0.jpg", "h-maple-151-0.jpg"];
    let mut ids = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let h = engine.create_hotel(&Hotel { name: format!("H{i}"), ..Default::default() }, "a").unwrap();
        let Ingested::Added { image_id, .. } = engine.ingest(&photo(name), &new_photo(h.id), "u").unwrap() else { panic!("{name} not added") };
        ids.push(image_id);
    }
    let query = photo("h-harbor-121-2.jpg");
    let q = engine.embedder().embed(hotelmatch::Input::photo(&query)).unwrap().vector;
    let model = engine.catalog().model_id(engine.embedder().model(), &engine.embedder().pooling(), engine.embedder().dim(), &engine.embedder().settings()).unwrap();
    let stored: std::collections::HashMap<i64, Vec<f32>> = engine.catalog().embeddings(&ids, model).unwrap().into_iter().collect();
    let res = engine.search(&Query { bytes: &query, skip_auto_mask: true, ..Default::default() }, "inv").unwrap();
    let sims: Vec<f32> = res.hotels.iter().map(|h| h.evidence[0].similarity).collect();
    assert_eq!(sims.len(), names.len());
    assert!(sims.windows(2).all(|w| w[0] >= w[1]), "{sims:?}");
    for h in &res.hotels {
        let e = &h.evidence[0];
        let exact = hotelmatch::vector::dot(&q, &stored[&e.image_id]);
        assert!((e.similarity - exact).abs() < 1e-5, "image {}: {} vs exact {exact}", e.image_id, e.similarity);
    }
}
