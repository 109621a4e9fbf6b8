//! The engine's use cases over in-memory and embedded adapters: an in-memory SQLite
//! catalog, in-memory blob stores and the built-in colour-layout embedder. No ONNX Runtime,
//! no server: what the engine decides, audits and shares between replicas.

mod common;
use common::{in_memory, root, settings};

use hotelmatch::catalog::sqlite::SqliteCatalog;
use hotelmatch::catalog::{self, Hotel, Source, Status};
use hotelmatch::embed::ColourLayout;
use hotelmatch::engine::{Engine, EngineSettings, ErrorKind, Ingested, NewPhoto, Query, QueryPhoto, SearchOptions};
use hotelmatch::store::{self, MemoryStore, StoreOptions};

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
    let dup =
        engine.create_hotel(&Hotel { external_id: Some("h-a".into()), name: "again".into(), ..Default::default() }, "admin-1").unwrap_err();
    assert_eq!(dup.kind(), (ErrorKind::Conflict, "hotel_exists"));
    let renamed = engine.update_hotel(h.id, |h| Hotel { name: "A2".into(), ..h }, "admin-2").unwrap();
    assert_eq!((renamed.name.as_str(), renamed.external_id.as_deref()), ("A2", Some("h-a")));
    let bytes = photo("h-aurora-101-0.jpg");
    let Ingested::Added { image_id, .. } = engine.ingest(&bytes, &new_photo(h.id), "uploader-1").unwrap() else { panic!("not added") };
    assert!(
        matches!(engine.ingest(&bytes, &new_photo(h.id), "uploader-1").unwrap(), Ingested::Duplicate { of_image_id, .. } if of_image_id == image_id)
    );
    let res = engine.search(&Query { bytes: &bytes, ..Default::default() }, "inv-1").unwrap();
    assert_eq!(res.hotels[0].hotel.id, h.id);
    assert_eq!(res.hotels[0].evidence[0].image_id, image_id);
    engine.set_status(image_id, Status::Quarantined, "admin-3").unwrap();
    let (_, token) = engine.create_key(hotelmatch::catalog::Role::Investigator, "x", "admin-4").unwrap();
    assert!(engine.verify_key(&token).unwrap().is_some());
    let audit: Vec<(String, String)> = engine.audit_entries(None, 20).unwrap().into_iter().rev().map(|e| (e.actor, e.action)).collect();
    let want = [
        ("admin-1", "hotel-create"),
        ("admin-2", "hotel-update"),
        ("uploader-1", "upload"),
        ("uploader-1", "upload"),
        ("inv-1", "search"),
        ("admin-3", "image-status"),
        ("admin-4", "key-create"),
    ];
    assert_eq!(audit, want.map(|(a, b)| (a.to_string(), b.to_string())));
}

#[test]
fn a_csv_import_is_audited_photo_by_photo() {
    let engine = in_memory("import");
    hotelmatch::import::import_hotels(&engine, &root().join("data-sample/hotels.csv"), "importer").unwrap();
    let report = hotelmatch::import::import_images(&engine, &root().join("data-sample/images.csv"), "importer", &|_, _| {}).unwrap();
    let uploads = engine.audit_entries(Some("upload"), 1000).unwrap();
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
    assert_eq!(
        engine.case_image(&"0".repeat(64), hotelmatch::engine::Viewer { key_id: "u", admin: true }).unwrap_err().kind(),
        (ErrorKind::NotFound, "not_found")
    );
    assert_eq!(
        engine.case_image("../x", hotelmatch::engine::Viewer { key_id: "u", admin: false }).unwrap_err().kind(),
        (ErrorKind::Invalid, "invalid_field")
    );
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
    let (sa, sb, shared) = one_catalog("replica-a", "replica-b", |_| {});
    let (catalog, photos) = (sa.catalog.clone(), sa.photos.clone());
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
    // A hash bank imported through A flags B's searches once B looks again (every 5 s).
    let photo2 = photo("h-maple-151-0.jpg");
    let hash = hotelmatch::pdq::hash(&image::load_from_memory(&photo2).unwrap().to_rgb8()).hash;
    a.import_bank("ads", &format!("pdq {hash}\n"), "adm").unwrap();
    assert!(b.search(&Query { bytes: &photo2, ..Default::default() }, "inv").unwrap().bank_matches.is_empty(), "not followed yet");
    std::thread::sleep(std::time::Duration::from_millis(5100));
    b.follow().unwrap();
    assert_eq!(b.search(&Query { bytes: &photo2, ..Default::default() }, "inv").unwrap().bank_matches.len(), 1);
    // The shared store is what both read: the purge by A's re-index removed the file.
    assert!(!store::open(&shared.display().to_string(), "photos", &StoreOptions::default())
        .unwrap()
        .exists(&a.image(image_id).unwrap().sha256)
        .unwrap());
    // A calibration set through A is a catalog version that B takes up at its next look,
    // and that a replica starting later starts with.
    let fitted = hotelmatch::calibrate::Calibration { temperature: 0.05, source: "test".into(), ..Default::default() };
    let v = a.set_calibration(fitted, 12, "adm").unwrap();
    assert_ne!(b.calibration_version(), v, "not followed yet");
    b.follow().unwrap();
    assert_eq!((b.calibration_version(), b.calibration().source.as_str(), b.calibration().temperature), (v, "test", 0.05));
    assert_eq!(open(settings("replica-c").tap(|s| (s.catalog, s.photos) = (catalog.clone(), photos.clone()))).calibration_version(), v);
    // A version that does not parse is passed over: the one in use stays.
    let shared_catalog = catalog::open(&shared.join("catalog.sqlite").display().to_string()).unwrap();
    shared_catalog.put_state("calibration", &serde_json::json!({"not": "a calibration"}), "x").unwrap();
    assert!(!b.follow().unwrap().rebuilt);
    assert_eq!((b.calibration_version(), b.calibration().source.as_str()), (v, "test"));
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
    let engine = Engine::from_parts(
        s,
        Box::new(SqliteCatalog::in_memory().unwrap()),
        Box::new(MemoryStore::default()),
        Box::new(MemoryStore::default()),
        Box::new(ColourLayout::new(limits)),
    )
    .unwrap();
    let names =
        ["h-aurora-101-0.jpg", "h-aurora-101-1.jpg", "h-harbor-121-0.jpg", "h-harbor-121-1.jpg", "h-desert-141-0.jpg", "h-maple-151-0.jpg"];
    let mut ids = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let h = engine.create_hotel(&Hotel { name: format!("H{i}"), ..Default::default() }, "a").unwrap();
        let Ingested::Added { image_id, .. } = engine.ingest(&photo(name), &new_photo(h.id), "u").unwrap() else {
            panic!("{name} not added")
        };
        ids.push(image_id);
    }
    let query = photo("h-harbor-121-2.jpg");
    // Embedded as the search embeds it: from the query's one decode.
    let decoded = QueryPhoto::decode(&query, engine.limits()).unwrap();
    let q = engine.embedder().embed(decoded.input()).unwrap().vector;
    let stored: std::collections::HashMap<i64, Vec<f32>> = engine.stored_vectors(&ids).unwrap().into_iter().collect();
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

/// A hotel per external id, with the given photos, in a fresh in-memory engine.
fn with_hotels(engine: &Engine, hotels: &[(&str, &[&str])]) -> Vec<i64> {
    hotels
        .iter()
        .map(|(ext, photos)| {
            let h = engine
                .create_hotel(
                    &Hotel { external_id: Some(ext.to_string()), name: ext.to_string(), city: Some("Reno".into()), ..Default::default() },
                    "admin",
                )
                .unwrap();
            for p in *photos {
                assert!(matches!(engine.ingest(&photo(p), &new_photo(h.id), "up").unwrap(), Ingested::Added { .. }));
            }
            h.id
        })
        .collect()
}

#[test]
fn a_case_keeps_searches_notes_and_verdicts_for_its_owner_and_confirmations_recalibrate() {
    use hotelmatch::engine::{Verdict, Viewer};
    let engine = in_memory("cases");
    let ids = with_hotels(
        &engine,
        &[("h-a", &["h-aurora-101-0.jpg", "h-aurora-101-1.jpg"]), ("h-b", &["h-desert-141-0.jpg"]), ("h-c", &["h-maple-151-0.jpg"])],
    );
    let (me, other, admin) =
        (Viewer { key_id: "inv-1", admin: false }, Viewer { key_id: "inv-2", admin: false }, Viewer { key_id: "adm", admin: true });
    let case = engine.create_case("  Ad 7 ", me).unwrap();
    assert_eq!((case.title.as_str(), case.owner.as_str()), ("Ad 7", "inv-1"));
    assert_eq!(engine.create_case(" ", me).unwrap_err().kind(), (ErrorKind::Invalid, "invalid_field"));
    // Twelve searches with photos of hotel A saved into the case.
    let queries = ["h-aurora-101-2.jpg", "h-aurora-101-3.jpg", "h-aurora-204-0.jpg", "h-aurora-204-1.jpg"];
    let mut entries = Vec::new();
    for i in 0..12 {
        let bytes = photo(queries[i % queries.len()]);
        let (res, entry) = engine.search_into_case(&Query { bytes: &bytes, save_case: i == 0, ..Default::default() }, case.id, me).unwrap();
        assert_eq!(res.hotels[0].hotel.id, ids[0]);
        let p: f32 = res.hotels.iter().map(|h| h.probability).sum();
        assert!(p <= 1.0 + 1e-5 && res.hotels.windows(2).all(|w| w[0].probability >= w[1].probability), "probabilities sum to {p}");
        let saved = entry.entry.search().expect("a saved search");
        assert_eq!(saved.hotels[0].hotel_id, ids[0]);
        assert_eq!(saved.query_kept, i == 0);
        entries.push(entry.id);
    }
    // Another investigator sees nothing of it, an admin sees all.
    assert_eq!(engine.case(case.id, other).unwrap_err().kind(), (ErrorKind::NotFound, "no_such_case"));
    let bytes = photo(queries[0]);
    assert_eq!(
        engine.search_into_case(&Query { bytes: &bytes, ..Default::default() }, case.id, other).unwrap_err().kind().1,
        "no_such_case"
    );
    assert!(engine.cases(other).unwrap().is_empty());
    assert_eq!(engine.cases(admin).unwrap().len(), 1);
    engine.add_case_note(case.id, "seen on site X", me).unwrap();
    assert_eq!(engine.add_case_note(case.id, "", me).unwrap_err().kind().0, ErrorKind::Invalid);
    engine.set_verdict(case.id, ids[0], Verdict::Confirmed, Some(entries[0]), me).unwrap();
    engine.set_verdict(case.id, ids[1], Verdict::RuledOut, None, me).unwrap();
    engine.set_verdict(case.id, ids[2], Verdict::RuledOut, None, me).unwrap();
    engine.set_verdict(case.id, ids[2], Verdict::Open, None, admin).unwrap();
    assert_eq!(engine.set_verdict(case.id, 999, Verdict::Confirmed, None, me).unwrap_err().kind().1, "no_such_hotel");
    assert_eq!(engine.set_verdict(case.id, ids[0], Verdict::Confirmed, Some(9999), me).unwrap_err().kind().0, ErrorKind::Invalid);
    let view = engine.case(case.id, admin).unwrap();
    let verdicts: Vec<(i64, Verdict)> = view.verdicts.iter().map(|v| (v.hotel_id, v.verdict)).collect();
    assert_eq!(verdicts, vec![(ids[0], Verdict::Confirmed), (ids[1], Verdict::RuledOut)], "the latest verdict per hotel; 'open' withdraws");
    assert_eq!(view.entries.len(), 12 + 1 + 4, "the journal keeps every entry");
    // The confirmations are labelled searches for the next calibration: each query once.
    let samples = engine.confirmed_samples().unwrap();
    assert_eq!(samples.len(), queries.len());
    assert!(samples.iter().all(|s| s.sample.right == Some(0) && s.sample.scores.len() == 3 && s.case_id == case.id && s.key_id == "inv-1"));
    // Four searches of one key are far too few to refit everyone's probabilities.
    assert_eq!(engine.recalibrate_from_cases(false, "adm").unwrap_err().kind().1, "too_few_samples");
    // The report holds the searches, thumbnails of the evidence and the kept query.
    let report = engine.case_report(case.id, "html", me).unwrap();
    assert!(!report.thumbnails.is_empty() && report.queries.len() == 1);
    let html = hotelmatch::report::html(&report);
    assert!(
        html.contains("Ad 7")
            && html.contains("seen on site X")
            && html.contains("data:image/jpeg;base64,")
            && !html.contains("src=\"http")
    );
    let csv = hotelmatch::report::csv(&report);
    assert_eq!(csv.lines().count(), 1 + 12 * 3, "a header and a row per ranked hotel per search");
    // The confirmation stands on the row of the search it was given on, and on no other.
    assert!(csv.lines().nth(1).unwrap().ends_with(&format!(",confirmed,{}", entries[0])), "{csv}");
    assert_eq!(csv.lines().filter(|l| l.contains(",confirmed,")).count(), 1, "{csv}");
    let audit: Vec<String> = engine.audit_entries(None, 200).unwrap().into_iter().map(|e| e.action).collect();
    for action in ["case-create", "case-search", "case-read", "case-list", "case-note", "case-verdict", "case-export"] {
        assert!(audit.iter().any(|a| a == action), "{action} not audited: {audit:?}");
    }
}

#[test]
fn hash_banks_read_threatexchange_lists_and_flag_uploads_and_searches() {
    let engine = in_memory("banks");
    let te = std::fs::read_to_string(root().join("tests/fixtures/threatexchange-pdq-examples.txt")).unwrap();
    let r = engine.import_bank("te-samples", &te, "adm").unwrap();
    assert_eq!((r.read, r.added, r.other_signal_types, r.rejected.len(), r.bank.hashes), (16, 16, 1, 1, 16), "{r:?}");
    assert_eq!(engine.import_bank("te-samples", &te, "adm").unwrap().added, 0, "a hash a bank holds is not added twice");
    assert_eq!(engine.import_bank("bad", "foo,bar\n1,2\n", "adm").unwrap_err().kind().0, ErrorKind::Invalid);
    // A gallery photo: no bank holds it.
    let ids = with_hotels(&engine, &[("h-a", &["h-aurora-101-0.jpg"])]);
    let shared = engine.export_hashes(hotelmatch::engine::HashFormat::Tx, "adm").unwrap();
    assert_eq!(shared.lines().count(), 1);
    let csv = engine.export_hashes(hotelmatch::engine::HashFormat::Csv, "adm").unwrap();
    assert!(csv.starts_with("pdq,quality,image_id,hotel_id\n") && csv.lines().nth(1).unwrap().ends_with(&format!(",{}", ids[0])));
    let bytes = photo("h-aurora-101-0.jpg");
    assert!(engine.search(&Query { bytes: &bytes, ..Default::default() }, "inv").unwrap().bank_matches.is_empty());
    // Another deployment imports the shared list; the same photo is flagged there, on upload and in search.
    let partner = in_memory("banks-partner");
    let r = partner.import_bank("partner", &shared, "adm").unwrap();
    assert_eq!((r.read, r.added), (1, 1));
    let h = partner.create_hotel(&Hotel { name: "P".into(), ..Default::default() }, "adm").unwrap();
    let Ingested::Added { bank_matches, pdq, .. } = partner.ingest(&bytes, &new_photo(h.id), "up").unwrap() else { panic!("not added") };
    assert_eq!((bank_matches.len(), bank_matches[0].bank.as_str(), bank_matches[0].distance), (1, "partner", 0));
    let res = partner.search(&Query { bytes: &bytes, ..Default::default() }, "inv").unwrap();
    assert_eq!(res.bank_matches.len(), 1);
    let audit = partner.audit_entries(Some("search"), 1).unwrap();
    assert_eq!(audit[0].detail["bank_matches"][0]["bank"], "partner");
    let upload = partner.audit_entries(Some("upload"), 1).unwrap();
    assert_eq!(upload[0].detail["bank_matches"][0]["bank"], "partner");
    // Near-copies match within PDQ's distance of 31; far ones do not.
    let flip = |n: usize| {
        pdq.chars()
            .enumerate()
            .map(|(i, c)| if i < n { format!("{:x}", c.to_digit(16).unwrap() ^ 0xf) } else { c.to_string() })
            .collect::<String>()
    };
    let third = in_memory("banks-near");
    third.import_bank("near", &format!("{},12 bits\n{},40 bits\n", flip(3), flip(10)), "adm").unwrap();
    let m = third.bank_matches(&[pdq.parse().unwrap()]);
    assert_eq!(m.iter().map(|x| (x.label.as_str(), x.distance)).collect::<Vec<_>>(), vec![("12 bits", 12)]);
    // 100 near-identical bank hashes with a 1 MB label: labels are capped at import, a search
    // lists the closest 20 and counts the rest, and its audit row stays small.
    let one_bit = |k: usize| {
        let mut v: Vec<u8> = (0..64).map(|i| u8::from_str_radix(&pdq[i..i + 1], 16).unwrap()).collect();
        v[k % 64] ^= 1 << (k / 64);
        v.iter().map(|d| format!("{d:x}")).collect::<String>()
    };
    let huge = "x".repeat(1 << 20);
    let list: String = (0..100).map(|k| format!("{},{huge}\n", one_bit(k))).collect();
    let r = third.import_bank("many", &list, "adm").unwrap();
    assert_eq!(r.added, 100);
    assert!(third.bank_matches(&[pdq.parse().unwrap()]).iter().all(|m| m.label.chars().count() <= hotelmatch::engine::MAX_LABEL));
    let res = third.search(&Query { bytes: &bytes, ..Default::default() }, "inv").unwrap();
    assert_eq!((res.bank_matches.len(), res.bank_matches_total), (hotelmatch::engine::MAX_BANK_MATCHES, 101));
    assert!(res.bank_matches.windows(2).all(|w| w[0].distance <= w[1].distance));
    let row = third.audit_entries(Some("search"), 1).unwrap().remove(0).detail;
    assert_eq!(row["bank_matches_total"], 101);
    assert!(row.to_string().len() < 8_000, "{} bytes of audit", row.to_string().len());
}

/// A blob store that counts its reads, around an in-memory one.
#[derive(Default, Clone)]
struct CountingStore {
    inner: std::sync::Arc<MemoryStore>,
    reads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl store::BlobStore for CountingStore {
    fn put(&self, bytes: &[u8]) -> Result<String, store::StoreError> {
        self.inner.put(bytes)
    }
    fn get(&self, sha256: &str) -> Result<Vec<u8>, store::StoreError> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.get(sha256)
    }
    fn exists(&self, sha256: &str) -> Result<bool, store::StoreError> {
        self.inner.exists(sha256)
    }
    fn remove(&self, sha256: &str) -> Result<bool, store::StoreError> {
        self.inner.remove(sha256)
    }
    fn location(&self) -> String {
        "counting".into()
    }
}

/// The sample's first photo of hotel `name` in a room whose number starts with `room`.
fn first_sample_photo(name: &str, room: &str) -> String {
    std::fs::read_dir(root().join("data-sample/images"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with(&format!("h-{name}-{room}")) && f.ends_with("-0.jpg"))
        .min()
        .unwrap()
}

/// Hotels of the sample with their photos, added to `engine`; returns (hotel id, photo names).
fn add_sample_hotels(engine: &Engine, names: &[&str]) -> Vec<(i64, Vec<String>)> {
    let mut out = Vec::new();
    for name in names {
        let h =
            engine.upsert_hotel(&Hotel { external_id: Some(name.to_string()), name: name.to_string(), ..Default::default() }, "x").unwrap();
        let mut photos = Vec::new();
        for room in ["1", "2"] {
            let file = first_sample_photo(name, room);
            engine.ingest(&photo(&file), &new_photo(h), "u").unwrap();
            photos.push(file);
        }
        out.push((h, photos));
    }
    out
}

#[test]
fn several_photos_search_together_and_no_stored_photo_is_read() {
    // The default search settings (the shared test settings verify a few photos).
    let s = EngineSettings { search: SearchOptions::default(), ..settings("several") };
    let limits = s.limits;
    let photos = CountingStore::default();
    let engine = Engine::from_parts(
        s,
        Box::new(SqliteCatalog::in_memory().unwrap()),
        Box::new(photos.clone()),
        Box::new(MemoryStore::default()),
        Box::new(ColourLayout::new(limits)),
    )
    .unwrap();
    let hotels = add_sample_hotels(&engine, &["aurora", "harbor", "maple"]);
    let (harbor, _) = &hotels[1];
    let (a, b) = (photo("h-harbor-121-1.jpg"), photo("h-harbor-224-2.jpg"));
    let mask = hotelmatch::Mask::Rects(vec![[0, 0, 20, 20]]);
    let reads = photos.reads.load(std::sync::atomic::Ordering::SeqCst);
    let q = Query { bytes: &a, more: vec![hotelmatch::engine::QueryImage { bytes: &b, mask: Some(&mask) }], ..Default::default() };
    let res = engine.search(&q, "inv").unwrap();
    // The default search (no geometric verification) reads no stored photo.
    assert_eq!(photos.reads.load(std::sync::atomic::Ordering::SeqCst), reads, "a search read stored photos");
    assert_eq!(res.hotels[0].hotel.id, *harbor);
    assert_eq!(res.queries.len(), 2);
    assert_eq!((res.queries[0].masked, res.queries[1].masked), (false, true));
    assert_ne!(res.queries[0].sha256, res.queries[1].sha256);
    // Each evidence photo says which query photo found it; both photos found some.
    let by: std::collections::BTreeSet<usize> = res.hotels.iter().flat_map(|h| h.evidence.iter().map(|e| e.query)).collect();
    assert_eq!(by, [0, 1].into());
    // The audit records both photos' hashes.
    let audit = engine.audit_entries(Some("search"), 10).unwrap();
    let detail = &audit[0].detail;
    assert_eq!(detail["query_sha256s"].as_array().unwrap().len(), 2);
    // Kept in a case, both photos (and the second's mask) are in its report.
    let me = hotelmatch::engine::Viewer { key_id: "inv", admin: false };
    let case = engine.create_case("two photos", me).unwrap();
    engine.search_into_case(&Query { save_case: true, ..q.clone() }, case.id, me).unwrap();
    let report = engine.case_report(case.id, "html", me).unwrap();
    let html = hotelmatch::report::html(&report);
    assert!(html.contains("Query photo 1 (kept)") && html.contains("Query photo 2 (kept)"), "both photos kept");
    assert!(html.contains(&res.queries[1].sha256) && html.contains("Mask 2: rectangles"), "the second photo's hash and mask");
    let csv = hotelmatch::report::csv(&report);
    assert!(csv.lines().next().unwrap().contains(",query_kept,more_query_sha256,"));
    assert!(csv.lines().nth(1).unwrap().contains(&format!(",true,{},", res.queries[1].sha256)), "{csv}");
    // Nine photos are one too many: a typed error, not a partial search.
    let nine = Query { bytes: &a, more: vec![hotelmatch::engine::QueryImage { bytes: &b, mask: None }; 8], ..Default::default() };
    assert_eq!(engine.search(&nine, "inv").unwrap_err().kind().1, "invalid_field");
}

/// Settings of two replicas, `a` and `b`, that share one SQLite catalog and photo store in a
/// fresh directory (returned), each changed by `tweak`.
fn one_catalog(a: &str, b: &str, tweak: impl Fn(&mut EngineSettings)) -> (EngineSettings, EngineSettings, std::path::PathBuf) {
    let (mut sa, mut sb) = (settings(a), settings(b));
    let shared = sa.data_dir.with_extension("shared");
    let _ = std::fs::remove_dir_all(&shared);
    std::fs::create_dir_all(&shared).unwrap();
    for s in [&mut sa, &mut sb] {
        tweak(s);
        s.catalog = shared.join("catalog.sqlite").display().to_string();
        s.photos = shared.display().to_string();
    }
    (sa, sb, shared)
}

/// An engine over `s`'s catalog and stores, with the colour-layout embedder.
fn open(s: EngineSettings) -> Engine {
    let limits = s.limits;
    Engine::open(s, Box::new(ColourLayout::new(limits))).unwrap()
}

#[test]
fn a_learned_whitening_is_kept_in_the_catalog_and_used_by_every_replica() {
    let (sa, sb, shared) = one_catalog("white-a", "white-b", |s| s.whiten.min_pairs = 3);
    let (a, b) = (open(sa.clone()), open(sb));
    let hotels = add_sample_hotels(&a, &["aurora", "desert", "harbor", "lonestar"]);
    b.follow().unwrap();
    let query = photo("h-desert-244-1.jpg");
    let before = b.search(&Query { bytes: &query, ..Default::default() }, "inv").unwrap();
    a.save_index().unwrap();
    let plain_dump = sa.data_dir.join("index").join("model-1");
    assert!(plain_dump.exists());
    let learned = a.learn_whitening("ops").unwrap();
    // The dump of unwhitened vectors can never be loaded again: the new one replaces it.
    assert!(!plain_dump.exists() && sa.data_dir.join("index").join(format!("model-1-whitening-{}", learned.version)).exists());
    let fitted = learned.fitted.clone().expect("4 hotels of 2 photos make 4 pairs");
    assert_eq!((fitted.pairs, fitted.hotels), (4, 4));
    assert_eq!(a.whitening_version(), learned.version);
    // B takes the new version up at its next look: its index is rebuilt with it, and its
    // searches score as A's do.
    assert_eq!(b.whitening_version(), 0, "not followed yet");
    assert!(b.follow().unwrap().rebuilt);
    assert_eq!(b.whitening_version(), learned.version);
    let (ra, rb) = (
        a.search(&Query { bytes: &query, ..Default::default() }, "inv").unwrap(),
        b.search(&Query { bytes: &query, ..Default::default() }, "inv").unwrap(),
    );
    let scores =
        |r: &hotelmatch::engine::SearchResult| r.hotels.iter().map(|h| (h.hotel.id, (h.score * 1e4).round() as i64)).collect::<Vec<_>>();
    assert_eq!(scores(&ra), scores(&rb));
    assert_ne!(scores(&rb), scores(&before), "the projection changes the scores");
    assert_eq!(ra.hotels[0].hotel.id, hotels[1].0);
    // A replica starting later starts with it; its dump is kept apart from unwhitened ones.
    a.save_index().unwrap();
    let c = open(settings("white-c").tap(|s| {
        s.catalog = sa.catalog.clone();
        s.photos = sa.photos.clone();
    }));
    assert_eq!(c.whitening_version(), learned.version);
    assert!(sa.data_dir.join("index").join(format!("model-1-whitening-{}", learned.version)).exists());
    // Too few pairs for a new fit: the new version is "none", and B follows it to none.
    let none = open(EngineSettings { whiten: hotelmatch::whiten::WhitenOptions { min_pairs: 1000, ..Default::default() }, ..sa.clone() })
        .learn_whitening("ops")
        .unwrap();
    assert!(none.fitted.is_none() && none.skipped.is_some());
    b.follow().unwrap();
    assert_eq!(b.whitening_version(), none.version);
    assert_eq!(scores(&b.search(&Query { bytes: &query, ..Default::default() }, "inv").unwrap()), scores(&before));
    std::fs::remove_dir_all(&shared).ok();
}

/// `tap` for settings: changes a value in place and returns it.
trait Tap: Sized {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}
impl Tap for EngineSettings {}

/// `name` with the same broker's mark (a high-contrast block pattern, like lettering) pasted
/// into its top-right corner, as JPEG.
fn with_mark(name: &str) -> Vec<u8> {
    let mut img = image::load_from_memory(&photo(name)).unwrap().to_rgb8();
    let (w, h) = img.dimensions();
    let (mw, mh) = (w / 4, h / 8);
    let (x0, y0) = (w - mw - w / 40, h / 30);
    for y in 0..mh {
        for x in 0..mw {
            // Letters: 6 × 3 blocks a glyph, on and off by a fixed pattern.
            let (gx, gy) = (x * 24 / mw, y * 3 / mh);
            let on = (gx * 7 + gy * 3 + gx / 3) % 5 < 2;
            img.put_pixel(x0 + x, y0 + y, image::Rgb(if on { [250, 250, 250] } else { [20, 30, 120] }));
        }
    }
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95).encode_image(&img).unwrap();
    out
}

#[test]
fn a_mark_shared_by_several_hotels_is_learned_and_never_counted_as_evidence() {
    let engine = in_memory("marks");
    let mut ids = Vec::new();
    for name in ["aurora", "desert", "harbor", "lonestar"] {
        let h = engine.upsert_hotel(&Hotel { external_id: Some(name.into()), name: name.into(), ..Default::default() }, "x").unwrap();
        for room in ["1", "2"] {
            let file = first_sample_photo(name, room);
            let Ingested::Added { image_id, .. } = engine.ingest(&with_mark(&file), &new_photo(h), "u").unwrap() else { panic!() };
            ids.push((name, image_id));
        }
    }
    // Before the marks are learned, a marked photo of one hotel "matches" another's on the mark.
    let query = with_mark("h-maple-151-0.jpg");
    let other = ids.iter().find(|(n, _)| *n == "desert").unwrap().1;
    let before = engine.matched_points(&query, None, other, "inv").unwrap();
    assert!(before.matched_points >= 8 && before.mark_points.is_empty(), "{before:?}");
    let learned = engine.learn_marks("ops").unwrap();
    let (version, n) = (learned.version, learned.marks);
    assert!(version > 0 && n > 20, "{n} marks learned");
    // By default the marks are left out of the evidence only: no photo is embedded again.
    assert_eq!(learned.remasked, 0);
    assert_eq!(engine.marks_version(), version);
    let after = engine.matched_points(&query, None, other, "inv").unwrap();
    assert!(after.matched_points < before.matched_points / 2, "{} → {} matched points", before.matched_points, after.matched_points);
    // What was left out lies mostly on the mark (top-right; the sample's rendered rooms also
    // share some furniture at one place), and no matched pair is on it.
    let on_mark = after.mark_points.iter().filter(|p| p[0] > 0.7 && p[1] < 0.18).count();
    assert!(
        on_mark * 10 >= after.mark_points.len() * 7 && on_mark > 50,
        "{on_mark} of {} left-out points on the mark",
        after.mark_points.len()
    );
    assert!(after.matched_pairs.iter().all(|p| !(p[0] > 0.7 && p[1] < 0.18)), "{:?}", after.matched_pairs);
    // A photo that is not active is not shown as evidence.
    engine.set_status(other, Status::Quarantined, "mod").unwrap();
    assert_eq!(engine.matched_points(&query, None, other, "inv").unwrap_err().kind().1, "no_such_photo");
}

#[test]
fn with_mask_embedding_the_learned_marks_are_masked_before_gallery_and_query_photos_are_embedded() {
    // Two replicas on one catalog: A learns, B follows.
    let (sa, sb, shared) = one_catalog("masked-a", "masked-b", |s| s.marks.mask_embedding = true);
    let (marked, replica) = (open(sa), open(sb));
    let mut ids = Vec::new();
    for name in ["aurora", "desert", "harbor", "lonestar"] {
        for room in ["1", "2"] {
            let file = first_sample_photo(name, room);
            let hotel = Hotel { external_id: Some(name.into()), name: name.into(), ..Default::default() };
            let h = marked.upsert_hotel(&hotel, "x").unwrap();
            let Ingested::Added { image_id, .. } = marked.ingest(&with_mark(&file), &new_photo(h), "u").unwrap() else { panic!() };
            ids.push(image_id);
        }
    }
    let similarities = |engine: &Engine, bytes: &[u8]| -> Vec<f32> {
        let res = engine.search(&Query { bytes, top: 10, ..Default::default() }, "inv").unwrap();
        ids.iter().map(|id| res.images.iter().find(|f| f.image_id == *id).map_or(0.0, |f| f.similarity)).collect()
    };
    let query = with_mark("h-maple-151-0.jpg");
    let search = |engine: &Engine| engine.search(&Query { bytes: &query, top: 10, ..Default::default() }, "inv").unwrap();
    let before = similarities(&marked, &query);
    assert!(search(&marked).queries[0].marks.is_empty());
    let learned = marked.learn_marks("ops").unwrap();
    assert!(learned.remasked >= 6, "{learned:?}: photos embedded again without their marks");
    // The query's mark is found and masked: one region holds the box it was pasted in (the
    // sample's rendered rooms share some furniture too), and little else of the room goes.
    let (w, h) = image::load_from_memory(&query).unwrap().to_rgb8().dimensions();
    let pasted = [w - w / 4 - w / 40, h / 30, w / 4, h / 8];
    let marks = search(&marked).queries[0].marks.clone();
    let holds = |r: &[u32; 4]| {
        r[0] <= pasted[0] + 4
            && r[1] <= pasted[1] + 4
            && r[0] + r[2] + 4 >= pasted[0] + pasted[2]
            && r[1] + r[3] + 4 >= pasted[1] + pasted[3]
    };
    assert!(marks.iter().any(holds), "{marks:?} in {w}x{h}: none holds the mark at {pasted:?}");
    assert!(marks.iter().map(|r| r[2] * r[3]).sum::<u32>() < w * h / 6, "{marks:?} mask too much of {w}x{h}");
    // Gallery photos were embedded again: the query's likeness to every marked photo changed.
    let after = similarities(&marked, &query);
    assert!(before.iter().zip(&after).filter(|(a, b)| (*a - *b).abs() > 1e-4).count() >= 6, "{before:?} → {after:?}");
    let audit = marked.audit_entries(Some("learn-marks"), 5).unwrap();
    assert_eq!(audit[0].detail["remasked"], serde_json::json!(learned.remasked));
    // A replica takes the new vectors up (a rebuild) and masks its queries' marks the same way.
    assert!(replica.follow().unwrap().rebuilt);
    let (on_a, on_b) = (similarities(&marked, &query), similarities(&replica, &query));
    assert!(on_a.iter().zip(&on_b).all(|(a, b)| (a - b).abs() < 1e-4), "{on_a:?} on A, {on_b:?} on B");
    std::fs::remove_dir_all(&shared).ok();
}

#[test]
fn a_calibration_refit_from_cases_cannot_be_broken_or_poisoned() {
    use hotelmatch::calibrate::Calibration;
    use hotelmatch::engine::{Verdict, Viewer};
    let engine = in_memory("refit");
    let names = ["aurora", "desert", "harbor", "lonestar", "maple", "pinecrest"];
    let gallery: Vec<(String, Vec<String>)> =
        names.iter().map(|n| (format!("h-{n}"), vec![first_sample_photo(n, "1"), first_sample_photo(n, "2")])).collect();
    let spec: Vec<(&str, Vec<&str>)> = gallery.iter().map(|(h, p)| (h.as_str(), p.iter().map(|x| x.as_str()).collect())).collect();
    let spec: Vec<(&str, &[&str])> = spec.iter().map(|(h, p)| (*h, p.as_slice())).collect();
    let ids = with_hotels(&engine, &spec);
    let queries_of = |n: &str| -> Vec<Vec<u8>> {
        let mut files: Vec<String> = std::fs::read_dir(root().join("data-sample/images"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|f| f.starts_with(&format!("h-{n}-")) && !f.ends_with("-0.jpg"))
            .collect();
        files.sort();
        files.iter().map(|f| photo(f)).collect()
    };
    let before = engine.calibration();
    // 1. Searches that found nothing (a filter no hotel passes) count for nothing.
    let lone = Viewer { key_id: "inv-x", admin: false };
    let case = engine.create_case("nothing", lone).unwrap();
    let nowhere = hotelmatch::catalog::HotelFilter { hotel_ids: Some(vec![999_999]), ..Default::default() };
    for q in queries_of("aurora").iter().take(10) {
        let (res, _) = engine.search_into_case(&Query { bytes: q, filter: nowhere.clone(), ..Default::default() }, case.id, lone).unwrap();
        assert!(res.hotels.is_empty());
    }
    engine.set_verdict(case.id, ids[0], Verdict::Confirmed, None, lone).unwrap();
    assert!(engine.confirmed_samples().unwrap().is_empty());
    assert_eq!(engine.recalibrate_from_cases(false, "adm").unwrap_err().kind().1, "too_few_samples");
    // 2. One key confirming its own top answer in twelve cases cannot refit anything.
    for (k, q) in queries_of("desert").iter().chain(&queries_of("harbor")).take(12).enumerate() {
        let case = engine.create_case(&format!("self {k}"), lone).unwrap();
        let (res, _) = engine.search_into_case(&Query { bytes: q, ..Default::default() }, case.id, lone).unwrap();
        engine.set_verdict(case.id, res.hotels[0].hotel.id, Verdict::Confirmed, None, lone).unwrap();
    }
    let e = engine.recalibrate_from_cases(false, "adm").unwrap_err();
    assert_eq!(e.kind().1, "too_few_samples", "{e}");
    assert!(e.to_string().contains("1 keys"), "{e}");
    // 3. Parameters out of band are refused however they come.
    for bad in [Calibration { temperature: 0.00024, ..Default::default() }, Calibration { none_score: f32::NAN, ..Default::default() }] {
        assert_eq!(engine.set_calibration(bad, 12, "adm").unwrap_err().kind().1, "calibration_out_of_band");
    }
    assert_eq!(*engine.calibration(), *before);
    // 4. Three investigators' cases, each confirming the hotel the photos were taken in (one
    // search of each filtered too narrowly to hold it: "none of these" happens too).
    for (k, n) in names.iter().enumerate() {
        let who = Viewer { key_id: ["inv-1", "inv-2", "inv-3"][k % 3], admin: false };
        let case = engine.create_case(n, who).unwrap();
        let others: Vec<i64> = ids.iter().copied().filter(|&h| h != ids[k]).collect();
        for (j, q) in queries_of(n).iter().enumerate() {
            let filter = hotelmatch::catalog::HotelFilter { hotel_ids: (j == 0).then(|| others.clone()), ..Default::default() };
            engine.search_into_case(&Query { bytes: q, filter, ..Default::default() }, case.id, who).unwrap();
        }
        engine.set_verdict(case.id, ids[k], Verdict::Confirmed, None, who).unwrap();
    }
    let version = engine.calibration_version();
    let preview = engine.recalibrate_from_cases(true, "adm").unwrap();
    assert!(!preview.applied && preview.held_out > 0 && preview.log_loss[1] <= preview.log_loss[0], "{preview:?}");
    assert_eq!(engine.calibration_version(), version, "a preview changes nothing");
    // The audit names every case and key whose searches were used: the lone key's searches
    // repeat the investigators' photos, and each query counts once.
    let audit = engine.audit_entries(Some("calibrate-from-cases"), 1).unwrap();
    let detail = &audit[0].detail;
    assert_eq!(detail["keys"], serde_json::json!(["inv-1", "inv-2", "inv-3"]), "{detail}");
    assert_eq!(detail["cases"].as_array().unwrap().len(), 6, "{detail}");
    assert_eq!(detail["preview"], true);
    let applied = engine.recalibrate_from_cases(false, "adm").unwrap();
    assert!(applied.applied && engine.calibration_version() > version);
    assert_eq!(*engine.calibration(), applied.calibration);
    assert!(engine.calibration().check().is_ok());
}

#[test]
fn a_flat_or_tiny_photo_is_refused_for_the_gallery_and_never_strong_as_a_query() {
    let engine = in_memory("flat");
    let ids = with_hotels(&engine, &[("h-a", &["h-aurora-101-0.jpg"])]);
    let jpeg = |img: image::RgbImage| {
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).encode_image(&img).unwrap();
        out
    };
    let flat = |rgb: [u8; 3]| jpeg(image::RgbImage::from_pixel(400, 300, image::Rgb(rgb)));
    let room = image::load_from_memory(&photo("h-aurora-101-1.jpg")).unwrap().to_rgb8();
    let sliver = jpeg(image::imageops::crop_imm(&room, 100, 100, 20, 200).to_image());
    let before = engine.indexed();
    for bytes in [flat([0, 0, 0]), flat([200, 30, 30]), sliver] {
        let e = engine.ingest(&bytes, &new_photo(ids[0]), "u").unwrap_err();
        assert_eq!(e.kind().1, "invalid_field", "{e}");
    }
    assert_eq!(engine.indexed(), before, "nothing was added");
    // A dark, flat query is searched, said to hold little, and no hotel is strong.
    let res = engine.search(&Query { bytes: &flat([6, 6, 6]), ..Default::default() }, "inv").unwrap();
    assert!(res.low_information && !res.hotels.is_empty());
    assert!(res.hotels.iter().all(|h| h.confidence != hotelmatch::engine::Confidence::Strong));
    // A real photo is not.
    assert!(!engine.search(&Query { bytes: &photo("h-aurora-101-1.jpg"), ..Default::default() }, "inv").unwrap().low_information);
}

/// `n` distinct PDQ hashes as a bank list, one per line, labelled by their line.
fn hash_list(n: usize, seed: u64) -> (String, Vec<String>) {
    let mut x = seed | 1;
    let hashes: Vec<String> = (0..n)
        .map(|_| {
            (0..4)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    format!("{x:016x}")
                })
                .collect()
        })
        .collect();
    let text = hashes.iter().enumerate().map(|(i, h)| format!("{h},line-{i}\n")).collect();
    (text, hashes)
}

#[test]
fn bank_imports_are_taken_up_step_by_step_by_every_replica_and_one_new_bank_is_made_once() {
    let (sa, sb, shared) = one_catalog("banks-a", "banks-b", |_| {});
    let (a, b) = (std::sync::Arc::new(open(sa)), open(sb));
    let n = 40_000;
    let (text, hashes) = hash_list(n, 7);
    let last: hotelmatch::pdq::PdqHash = hashes[n - 1].parse().unwrap();
    // A reader on the importing replica sees the bank grow while the import runs.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (a, done) = (a.clone(), done.clone());
        std::thread::spawn(move || {
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..200_000 {
                seen.insert(a.bank_hashes_held());
                if done.load(std::sync::atomic::Ordering::Acquire) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            seen
        })
    };
    let imported = a.import_bank("partner", &text, "adm").unwrap();
    done.store(true, std::sync::atomic::Ordering::Release);
    let seen = reader.join().unwrap();
    assert_eq!((imported.read, imported.added, imported.bank.hashes), (n, n, n as i64));
    assert!(seen.iter().any(|&h| h > 0 && h < n), "the bank grew in steps while imported: saw only {seen:?}");
    assert_eq!(a.bank_hashes_held(), n);
    assert_eq!(a.bank_matches(&[last])[0].label, format!("line-{}", n - 1));
    // The other replica takes the new hashes up at its next look.
    assert!(b.bank_matches(&[last]).is_empty());
    b.follow().unwrap();
    assert_eq!((b.bank_hashes_held(), b.bank_matches(&[last])[0].bank.as_str()), (n, "partner"));
    // Importing the same list again adds nothing.
    assert_eq!(a.import_bank("partner", &text, "adm").unwrap().added, 0);

    // Two imports into one new bank at once: one bank, both imports land.
    let (one, _) = hash_list(50, 11);
    let (two, _) = hash_list(50, 13);
    let racers: Vec<_> = [one, two]
        .into_iter()
        .map(|t| {
            let a = a.clone();
            std::thread::spawn(move || a.import_bank("race", &t, "adm").map(|r| r.bank.id))
        })
        .collect();
    let ids: Vec<i64> = racers.into_iter().map(|r| r.join().unwrap().unwrap()).collect();
    assert_eq!(ids[0], ids[1]);
    let race = a.banks().unwrap().into_iter().filter(|x| x.name == "race").collect::<Vec<_>>();
    assert_eq!((race.len(), race[0].hashes), (1, 100));
    drop((a, b));
    let _ = std::fs::remove_dir_all(shared);
}

#[test]
fn places_by_name_countries_by_code_or_name_and_filters_that_leave_nothing_say_so() {
    let engine = in_memory("places");
    hotelmatch::import::import_hotels(&engine, &root().join("data-sample/hotels.csv"), "importer").unwrap();
    hotelmatch::import::import_images(&engine, &root().join("data-sample/images.csv"), "importer", &|_, _| {}).unwrap();
    let query = std::fs::read(root().join("data-sample/queries/h-harbor-query.jpg")).unwrap();
    let search = |country: &str| {
        let filter = hotelmatch::catalog::HotelFilter { country: Some(country.into()), ..Default::default() };
        engine.search(&Query { bytes: &query, filter, ..Default::default() }, "inv")
    };
    // "USA", "United States" and "us" all mean the sample's hotels (stored as "US").
    let by_code = search("US").unwrap();
    for name in ["USA", "united states", "U.S.A.", "United States of America"] {
        let r = search(name).unwrap();
        assert_eq!(
            r.hotels.iter().map(|h| h.hotel.id).collect::<Vec<_>>(),
            by_code.hotels.iter().map(|h| h.hotel.id).collect::<Vec<_>>(),
            "{name}"
        );
        assert_eq!(r.hotels_allowed, by_code.hotels_allowed);
    }
    assert!(by_code.hotels_allowed.unwrap() >= 5 && !by_code.hotels.is_empty());
    // A country the catalog has no hotel in: nothing to search, and the result says so.
    let france = search("France").unwrap();
    assert_eq!((france.hotels.len(), france.hotels_allowed), (0, Some(0)));
    // A name that is no country: a typed error, not an empty result.
    assert_eq!(search("Narnia").unwrap_err().kind().1, "invalid_field");
    assert_eq!(engine.search(&Query { bytes: &query, ..Default::default() }, "inv").unwrap().hotels_allowed, None);
    // Suggestions match every word in any field and order, the street address included.
    let found = engine.find_hotels("denver aurora", None, 20).unwrap();
    assert_eq!(found.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(), ["Aurora Suites Denver"]);
    assert_eq!(engine.find_hotels("glenarm", None, 20).unwrap().len(), 1, "by the street address");
    assert!(engine.find_hotels("denver nowhere", None, 20).unwrap().is_empty());
}
