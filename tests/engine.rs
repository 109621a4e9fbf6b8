//! The engine end to end on data-sample/: a real SQLite catalog, real photo files, the
//! real model and index (run `scripts/setup.sh` first; `scripts/test.sh` does).

mod common;
use common::root;

use std::io::Cursor;
use std::path::{Path, PathBuf};

use hotelmatch::catalog::{HotelFilter, Source, Status};
use hotelmatch::engine::{Engine, Ingested, NewPhoto, Query};
use hotelmatch::media::decode;
use hotelmatch::{import, Config, Mask};

fn fresh(name: &str) -> Config {
    let dir = std::env::temp_dir().join(format!("hm-engine-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Config { data_dir: dir, ..Config::default() }
}

fn imported(name: &str) -> (Engine, Config) {
    let cfg = fresh(name);
    let engine = cfg.open_engine().unwrap_or_else(|e| panic!("{e} (run scripts/setup.sh)"));
    import::import_hotels(&engine, &root().join("data-sample/hotels.csv"), "test").unwrap();
    let report = import::import_images(&engine, &root().join("data-sample/images.csv"), "test", &|_, _| {}).unwrap();
    assert_eq!((report.added, report.rejected.len()), (48, 0), "{report:?}");
    (engine, cfg)
}

/// (query bytes, mask, expected hotel external id) for the sample queries.
fn queries() -> Vec<(Vec<u8>, Mask, String)> {
    let mut rdr = csv::Reader::from_path(root().join("data-sample/queries.csv")).unwrap();
    rdr.records()
        .map(|r| {
            let r = r.unwrap();
            let bytes = std::fs::read(root().join("data-sample").join(&r[0])).unwrap();
            let m = Mask::from_picture(&std::fs::read(root().join("data-sample").join(&r[3])).unwrap(), &Default::default()).unwrap();
            (bytes, m, r[1].to_string())
        })
        .collect()
}

fn top_hotel(engine: &Engine, q: &Query) -> Option<String> {
    engine.search(q, "test").unwrap().hotels.first().and_then(|h| h.hotel.external_id.clone())
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn import_then_search_finds_the_right_hotel_and_keeps_no_query() {
    let (engine, cfg) = imported("search");
    for (bytes, mask, want) in queries() {
        let q = Query { bytes: &bytes, mask: Some(&mask), ..Default::default() };
        let res = engine.search(&q, "investigator-7").unwrap();
        assert_eq!(res.hotels[0].hotel.external_id.as_deref(), Some(want.as_str()), "query for {want}");
        let e = &res.hotels[0].evidence[0];
        assert!(e.similarity > 0.5 && e.room.is_some(), "{e:?}");
        // The matching cells are explained where the model has a feature map (not SSCD's embedding).
        assert_eq!(
            e.query_cells.is_empty(),
            !hotelmatch::ModelCard::find(&cfg.models_dir, engine.embedder().model()).unwrap().pools_feature_map()
        );
        // The search verifies nothing (no stored photo read); asked for, the best photo and
        // the query share keypoints in one geometry.
        assert!(e.matched_points.is_none(), "{e:?}");
        let points = engine.matched_points(&bytes, Some(&mask), e.image_id, "investigator-7").unwrap();
        assert!(points.matched_points > 0 && !points.matched_pairs.is_empty(), "{points:?}");
        // Nothing of the query is written anywhere in the data directory.
        for f in files_under(&cfg.data_dir) {
            let stored = std::fs::read(&f).unwrap();
            assert!(stored != bytes, "query stored at {}", f.display());
        }
    }
    let audit = engine.audit_entries(None, 100).unwrap();
    let searches: Vec<_> = audit.iter().filter(|a| a.action == "search").collect();
    assert_eq!(searches.len(), 6);
    assert_eq!(searches[0].actor, "investigator-7");
    assert!(searches[0].detail["query_sha256"].as_str().is_some_and(|s| s.len() == 64));
    assert!(searches[0].detail["hotel_ids"].as_array().is_some_and(|a| !a.is_empty()));
    std::fs::remove_dir_all(&cfg.data_dir).ok();
}

#[test]
fn filtered_search_never_leaves_the_filter() {
    let (engine, cfg) = imported("filter");
    let ext = |id: i64| engine.hotel(id).unwrap().external_id.unwrap();
    let harbor = engine.hotel_by_external_id("h-harbor").unwrap().unwrap().id;
    let filters: Vec<(HotelFilter, Vec<&str>)> = vec![
        (HotelFilter { near: Some((39.74, -104.99, 60.0)), ..Default::default() }, vec!["h-aurora", "h-pinecrest"]),
        (HotelFilter { country: Some("CA".into()), ..Default::default() }, vec!["h-maple"]),
        (HotelFilter { chain: Some("Seaside".into()), ..Default::default() }, vec!["h-harbor", "h-lonestar"]),
        (HotelFilter { hotel_ids: Some(vec![harbor]), ..Default::default() }, vec!["h-harbor"]),
    ];
    for (bytes, mask, _) in queries() {
        for (filter, allowed) in &filters {
            let q = Query { bytes: &bytes, mask: Some(&mask), filter: filter.clone(), top: 10, ..Default::default() };
            let res = engine.search(&q, "test").unwrap();
            let got: Vec<String> = res.hotels.iter().map(|h| ext(h.hotel.id)).collect();
            assert!(!got.is_empty() && got.iter().all(|g| allowed.contains(&g.as_str())), "{filter:?} gave {got:?}");
            assert_eq!(got.len(), allowed.len(), "every allowed hotel has photos, so each comes back");
        }
    }
    std::fs::remove_dir_all(&cfg.data_dir).ok();
}

#[test]
fn deleted_and_quarantined_photos_leave_results_at_once() {
    let (engine, cfg) = imported("delete");
    let (bytes, mask, _) = queries().remove(0);
    let q = Query { bytes: &bytes, mask: Some(&mask), ..Default::default() };
    let first = engine.search(&q, "test").unwrap();
    let best = first.hotels[0].evidence[0].image_id;
    let second = first.hotels[0].evidence[1].image_id;
    engine.set_status(best, Status::Deleted, "admin").unwrap();
    engine.set_status(second, Status::Quarantined, "admin").unwrap();
    let after = engine.search(&q, "test").unwrap();
    assert!(after.images.iter().all(|f| f.image_id != best && f.image_id != second));
    engine.set_status(second, Status::Active, "admin").unwrap();
    assert!(engine.search(&q, "test").unwrap().images.iter().any(|f| f.image_id == second));
    // A re-index removes the deleted photo's file (no other photo has its bytes), keeps the
    // others', and the deleted photo can no longer be restored.
    let (gone, kept) = (engine.image(best).unwrap().sha256, engine.image(second).unwrap().sha256);
    assert!(engine.store().exists(&gone).unwrap());
    engine.rebuild_index(&|_, _, _| {}).unwrap();
    assert!(!engine.store().exists(&gone).unwrap() && engine.store().exists(&kept).unwrap());
    assert!(engine.set_status(best, Status::Active, "admin").is_err());
    assert_eq!(engine.image(best).unwrap().status, Status::Deleted);
    std::fs::remove_dir_all(&cfg.data_dir).ok();
}

fn mirrored_jpeg(path: &Path) -> Vec<u8> {
    let img = image::open(path).unwrap().fliph();
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

#[test]
fn restart_after_a_commit_without_index_dump_loses_nothing_and_damage_is_rebuilt() {
    let (engine, cfg) = imported("restart");
    engine.save_index().unwrap();
    let harbor = engine.hotel_by_external_id("h-harbor").unwrap().unwrap().id;
    let extra = mirrored_jpeg(&root().join("data-sample/images/h-aurora-101-0.jpg"));
    let photo = NewPhoto { hotel_id: harbor, room: Some("999".into()), source: Source::Crowd, uploader_key_id: Some("k1".into()) };
    let Ingested::Added { image_id, .. } = engine.ingest(&extra, &photo, "test").unwrap() else { panic!("not added") };
    // The process dies here: the catalog has the photo, the index dump does not.
    std::mem::forget(engine);
    let engine = cfg.open_engine().unwrap();
    assert_eq!(engine.indexed(), 49);
    let q = Query { bytes: &extra, ..Default::default() };
    assert_eq!(engine.search(&q, "test").unwrap().images[0].image_id, image_id);
    engine.save_index().unwrap();
    drop(engine);
    // Damage every file of the dump: start-up rebuilds from the catalog.
    for f in files_under(&cfg.data_dir.join("index")) {
        std::fs::write(&f, b"garbage").unwrap();
    }
    let engine = cfg.open_engine().unwrap();
    assert_eq!(engine.indexed(), 49);
    assert_eq!(engine.search(&q, "test").unwrap().images[0].image_id, image_id);
    assert_eq!(top_hotel(&engine, &q).as_deref(), Some("h-harbor"));
    std::fs::remove_dir_all(&cfg.data_dir).ok();
}

/// A JPEG with an EXIF block holding orientation and a GPS IFD (latitude 39°N).
fn with_gps_exif(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut t: Vec<u8> = b"II*\0\x08\0\0\0".to_vec();
    // IFD0: 2 entries: Orientation, GPS IFD pointer (to offset 38).
    t.extend_from_slice(&2u16.to_le_bytes());
    t.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0]);
    t.extend_from_slice(&orientation.to_le_bytes());
    t.extend_from_slice(&[0, 0]);
    t.extend_from_slice(&[0x25, 0x88, 4, 0, 1, 0, 0, 0, 38, 0, 0, 0]);
    t.extend_from_slice(&[0, 0, 0, 0]);
    // GPS IFD at 38: GPSLatitudeRef "N".
    t.extend_from_slice(&1u16.to_le_bytes());
    t.extend_from_slice(&[0x01, 0x00, 2, 0, 2, 0, 0, 0, b'N', 0, 0, 0]);
    t.extend_from_slice(&[0, 0, 0, 0]);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&t);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn stored_copies_carry_no_metadata_and_duplicates_are_caught() {
    let (engine, cfg) = imported("privacy");
    let aurora = engine.hotel_by_external_id("h-aurora").unwrap().unwrap().id;
    let maple = engine.hotel_by_external_id("h-maple").unwrap().unwrap().id;
    let base = mirrored_jpeg(&root().join("data-sample/images/h-pinecrest-111-2.jpg"));
    for orientation in [1u16, 6] {
        let bytes = with_gps_exif(&base, orientation);
        assert!(bytes.windows(4).any(|w| w == b"Exif"));
        let photo =
            NewPhoto { hotel_id: if orientation == 1 { aurora } else { maple }, room: None, source: Source::Crowd, uploader_key_id: None };
        let Ingested::Added { image_id, .. } = engine.ingest(&bytes, &photo, "test").unwrap() else { panic!("not added") };
        let img = engine.image(image_id).unwrap();
        let stored = engine.store().get(&img.sha256).unwrap();
        assert!(!stored.windows(4).any(|w| w == b"Exif"), "EXIF left in the stored copy");
        let d = decode::decode(&stored, &Default::default(), None).unwrap();
        let expect = if orientation == 6 { (480, 640) } else { (640, 480) };
        assert_eq!(d.rgb.dimensions(), expect, "orientation applied before stripping");
    }
    // The same photo again, recompressed, for the same hotel: a duplicate, not stored twice.
    let again = {
        let img = image::load_from_memory(&base).unwrap().resize(500, 400, image::imageops::FilterType::Triangle);
        let mut out = Cursor::new(Vec::new());
        img.write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 70)).unwrap();
        out.into_inner()
    };
    let photo = NewPhoto { hotel_id: aurora, room: None, source: Source::Crowd, uploader_key_id: None };
    assert!(matches!(engine.ingest(&again, &photo, "test").unwrap(), Ingested::Duplicate { .. }));
    std::fs::remove_dir_all(&cfg.data_dir).ok();
}

#[test]
fn killing_an_import_midway_loses_nothing_and_the_rerun_finishes_it() {
    let cfg = fresh("kill");
    let bin = env!("CARGO_BIN_EXE_hotelmatch");
    let args = |cmd: &mut std::process::Command| {
        cmd.arg("--data-dir")
            .arg(&cfg.data_dir)
            .args(["import", "--json", "--hotels"])
            .arg(root().join("data-sample/hotels.csv"))
            .arg("--images")
            .arg(root().join("data-sample/images.csv"));
    };
    let mut cmd = std::process::Command::new(bin);
    args(&mut cmd);
    let mut child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    // Kill it once some photos are in the catalog (bounded wait), before the index is dumped.
    let catalog = cfg.data_dir.join("catalog.sqlite");
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(60) {
        let n = rusqlite_count(&catalog);
        if n > 0 || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let mut cmd = std::process::Command::new(bin);
    args(&mut cmd);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let added =
        report["added"].as_u64().unwrap() + report["skipped_already_imported"].as_u64().unwrap() + report["duplicates"].as_u64().unwrap();
    assert_eq!(added, 48, "{report}");
    let engine = cfg.open_engine().unwrap();
    assert_eq!(engine.indexed(), 48, "every photo searchable exactly once");
    let (active, _) = engine.image_counts().unwrap();
    assert_eq!(active, 48);
    std::fs::remove_dir_all(&cfg.data_dir).ok();
}

/// Images in a catalog file, read through the library (0 while it does not exist yet).
fn rusqlite_count(path: &Path) -> i64 {
    if !path.exists() {
        return 0;
    }
    hotelmatch::catalog::open(&path.display().to_string()).and_then(|c| c.image_counts()).map_or(0, |(n, _)| n)
}

#[test]
fn a_model_change_is_caught_up_by_reindex() {
    let (engine, cfg) = imported("reindex");
    drop(engine);
    let other = Config { embed: hotelmatch::EmbedOptions { pooling: hotelmatch::Pooling::Gem, ..Default::default() }, ..cfg.clone() };
    let engine = other.open_engine().unwrap();
    assert_eq!(engine.indexed(), 0, "no embeddings for the new model configuration yet");
    assert_eq!(engine.rebuild_index(&|_, _, _| {}).unwrap(), 48);
    assert_eq!(engine.indexed(), 48);
    let (bytes, mask, want) = queries().remove(2);
    let q = Query { bytes: &bytes, mask: Some(&mask), ..Default::default() };
    assert_eq!(top_hotel(&engine, &q).as_deref(), Some(want.as_str()));
    drop(engine);
    // The old configuration's index and embeddings are untouched.
    assert_eq!(cfg.open_engine().unwrap().indexed(), 48);
    std::fs::remove_dir_all(&cfg.data_dir).ok();
}

#[test]
fn a_reused_photo_is_recognised_even_mirrored_and_case_images_are_kept_only_when_asked() {
    let (engine, cfg) = imported("reuse");
    let aurora = engine.hotel_by_external_id("h-aurora").unwrap().unwrap();
    let stored = std::fs::read(root().join("data-sample/images/h-aurora-101-0.jpg")).unwrap();
    // The advertised photo is one of the crowd's photos, recompressed and mirrored.
    let img = image::load_from_memory(&stored).unwrap().fliph();
    let mut mirrored = Cursor::new(Vec::new());
    img.write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(&mut mirrored, 70)).unwrap();
    let mirrored = mirrored.into_inner();
    for (bytes, mirror) in [(&stored, false), (&mirrored, true)] {
        let res = engine.search(&Query { bytes, ..Default::default() }, "t").unwrap();
        let first = res.reuse.first().unwrap_or_else(|| panic!("reuse not found (mirrored: {mirror})"));
        assert_eq!(engine.image(first.image_id).unwrap().hotel_id, aurora.id);
        assert_eq!(first.variant != "original", mirror, "{first:?}");
        assert!(first.distance <= 31);
        // A filter that leaves the hotel out leaves the reuse out too.
        let other = HotelFilter { country: Some("CA".into()), ..Default::default() };
        assert!(engine.search(&Query { bytes, filter: other, ..Default::default() }, "t").unwrap().reuse.is_empty());
    }
    // A different photo of a room is not a copy of anything.
    let (query, mask, _) = queries().remove(0);
    let res = engine.search(&Query { bytes: &query, mask: Some(&mask), ..Default::default() }, "t").unwrap();
    assert!(res.reuse.is_empty(), "{:?}", res.reuse);
    assert!(!res.saved_case_image && files_under(&cfg.data_dir.join("cases")).is_empty());
    // Kept, byte for byte, only when asked; the audit says so.
    let res = engine.search(&Query { bytes: &query, save_case: true, ..Default::default() }, "inv-3").unwrap();
    assert!(res.saved_case_image);
    let kept = files_under(&cfg.data_dir.join("cases"));
    assert_eq!(kept.len(), 1);
    assert_eq!(std::fs::read(&kept[0]).unwrap(), query);
    let audit = engine.audit_entries(None, 1).unwrap();
    assert_eq!((audit[0].actor.as_str(), &audit[0].detail["saved_case_image"]), ("inv-3", &serde_json::json!(true)));
    // Kept outside any case, it is an admin's to read only; an investigator is told it is not there.
    let investigator = hotelmatch::engine::Viewer { key_id: "inv-3", admin: false };
    assert_eq!(engine.case_image(&res.query_sha256, investigator).unwrap_err().kind().1, "not_found");
    assert_eq!(engine.case_image(&res.query_sha256, hotelmatch::engine::Viewer { key_id: "inv-4", admin: true }).unwrap(), query);
    let audit = engine.audit_entries(None, 1).unwrap();
    assert_eq!((audit[0].actor.as_str(), audit[0].action.as_str()), ("inv-4", "case-image-view"), "viewing a case image is audited");
    std::fs::remove_dir_all(&cfg.data_dir).ok();
}
