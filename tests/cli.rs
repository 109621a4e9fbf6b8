//! The `hotelmatch` binary as a user runs it (the real model; run `scripts/setup.sh` first).

mod common;
use common::root;

use std::process::Command;

#[test]
fn eval_prints_one_row_per_query_file_from_one_gallery() {
    // A second query file: the sample queries without their masks, painted over in red.
    let dir = std::env::temp_dir().join(format!("hm-cli-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut painted = String::from("path,hotel,room\n");
    for (i, line) in std::fs::read_to_string(root().join("data-sample/queries.csv")).unwrap().lines().skip(1).enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        let mut img = image::open(root().join("data-sample").join(f[0])).unwrap().to_rgb8();
        let (w, h) = img.dimensions();
        for y in h / 3..h * 2 / 3 {
            for x in w / 3..w / 2 {
                img.put_pixel(x, y, image::Rgb([220, 20, 20]));
            }
        }
        let name = format!("painted-{i}.png");
        img.save(dir.join(&name)).unwrap();
        painted.push_str(&format!("{name},{},{}\n", f[1], f[2]));
    }
    std::fs::write(dir.join("painted.csv"), painted).unwrap();
    let run = |json: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hotelmatch"));
        c.args(["eval", "--exact", "--gallery"]).arg(root().join("data-sample/images.csv"));
        c.arg("--queries").arg(root().join("data-sample/queries.csv")).arg("--queries").arg(dir.join("painted.csv"));
        if json {
            c.arg("--json");
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let table = run(false);
    let rows: Vec<&str> = table.lines().filter(|l| l.contains("data-sample") || l.contains("painted.csv")).collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(rows[0].contains("queries.csv") && rows[1].contains("painted.csv"), "{table}");
    let reports: Vec<serde_json::Value> = run(true).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(reports.len(), 2);
    for r in &reports {
        assert_eq!(r["queries"], 6);
        let (h1, [lo, hi]) =
            (r["hotel_at_1"].as_f64().unwrap(), [r["hotel_at_1_ci95"][0].as_f64().unwrap(), r["hotel_at_1_ci95"][1].as_f64().unwrap()]);
        assert!(lo <= h1 && h1 <= hi && r["mrr"].as_f64().unwrap() >= h1, "{r}");
    }
    // The painted queries came without masks: the paint is found and masked automatically.
    assert_eq!(reports[1]["auto_masked"], 6, "{}", reports[1]);
    assert_eq!(reports[0]["auto_masked"], 0);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_missing_data_directory_is_refused_and_unknown_keys_fail() {
    let dir = std::env::temp_dir().join(format!("hm-cli-nodata-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let hm = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_hotelmatch")).arg("--data-dir").arg(&dir).args(args).output().unwrap();
    let query = root().join("data-sample/queries/h-maple-query.jpg");
    let out = hm(&["search", query.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no catalog at"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.exists(), "a mistyped --data-dir must not be created");
    // With --init an empty catalog is started, and said so.
    let out = hm(&["--init", "keys", "create", "--role", "admin"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stderr).contains("starting a new catalog"));
    let out = hm(&["keys", "revoke", "nosuchkey"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no active key"));
    std::fs::remove_dir_all(&dir).ok();
}

/// `hotelmatch --data-dir DIR ARGS…`: whether it succeeded, its stdout and its stderr.
fn run_in(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hotelmatch")).arg("--data-dir").arg(dir).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn calibrate_writes_a_calibration_and_banks_import_threatexchange_lists() {
    let dir = std::env::temp_dir().join(format!("hm-cli-calibrate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = |args: &[&str]| run_in(&dir, args);
    let gallery = root().join("data-sample/images.csv").display().to_string();
    let queries = root().join("data-sample/queries.csv").display().to_string();
    // The sample's queries twice over: enough labelled searches to fit two parameters.
    let samples = dir.with_extension("samples.json");
    let (ok, _, err) = run(&[
        "calibrate",
        "--gallery",
        &gallery,
        "--queries",
        &queries,
        "--queries",
        &queries,
        "--samples-out",
        &samples.display().to_string(),
    ]);
    // Every sample query finds its hotel first by a wide margin: the fit is degenerate (every
    // top candidate would read 100 %) and is refused, not written.
    assert!(!ok && err.contains("temperature") && err.contains("refused"), "{err}");
    assert!(!dir.join("calibration.json").exists());
    // The same searches with some answers wrong or missing, as real searches have: fitted.
    let mut saved: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&samples).unwrap()).unwrap();
    for (i, s) in saved.iter_mut().enumerate() {
        s["right"] = match i % 3 {
            0 => serde_json::Value::Null,
            1 => serde_json::json!(1),
            _ => s["right"].clone(),
        };
    }
    std::fs::write(&samples, serde_json::to_vec(&saved).unwrap()).unwrap();
    let (ok, out, err) = run(&["calibrate", "--samples", &samples.display().to_string()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("held out")
            && out.contains("in sample")
            && out.contains("| probability | searches |")
            && out.contains("expected calibration error"),
        "{out}"
    );
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("calibration.json")).unwrap()).unwrap();
    assert!(written["source"].as_str().unwrap().starts_with("samples: ") && written["temperature"].as_f64().unwrap() >= 0.002, "{written}");
    assert_eq!(saved.len() as u64, written["samples"].as_u64().unwrap());
    // Refitting from the saved searches gives the same fit; too few searches are refused.
    let (ok, again, _) = run(&["calibrate", "--samples", &samples.display().to_string(), "--dry-run"]);
    assert!(ok && again.lines().nth(1) == out.lines().nth(1), "{again}");
    std::fs::write(&samples, serde_json::to_vec(&saved[..3]).unwrap()).unwrap();
    let (ok, _, err) = run(&["calibrate", "--samples", &samples.display().to_string()]);
    assert!(!ok && err.contains("at least 10"), "{err}");

    let te = root().join("tests/fixtures/threatexchange-pdq-examples.txt").display().to_string();
    let (ok, out, err) = run(&["--init", "banks", "import", "te-samples", &te]);
    assert!(ok, "{err}");
    let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!((r["read"].as_u64(), r["added"].as_u64(), r["bank"]["hashes"].as_i64()), (Some(16), Some(16), Some(16)));
    let (_, list, _) = run(&["banks", "list"]);
    assert!(list.contains("\"te-samples\""));
    let (ok, export, _) = run(&["banks", "export", "--format", "csv"]);
    assert!(ok && export.starts_with("pdq,quality,image_id,hotel_id"));
    let (ok, _, err) = run(&["banks", "export", "--format", "xml"]);
    assert!(!ok && err.contains("unknown hash list format"));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&samples);
}

#[test]
fn several_photos_search_together_from_the_command_line_and_learn_learns() {
    let dir = std::env::temp_dir().join(format!("hm-cli-several-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = |args: &[&str]| run_in(&dir, args);
    let s = |p: &str| root().join("data-sample").join(p).display().to_string();
    let (ok, _, err) = run(&["import", "--hotels", &s("hotels.csv"), "--images", &s("images.csv")]);
    assert!(ok, "{err}");
    // Learning: the marks and the whitening (the sample has enough pairs of photos of one hotel).
    let (ok, out, err) = run(&["learn"]);
    assert!(ok && out.contains("shared marks version") && out.contains("whitening version"), "{out}{err}");
    // Two photos, the first with its mask, the second without (`none`).
    let (q, m, second) = (s("queries/h-maple-query.jpg"), s("queries/h-maple-query-mask.png"), s("images/h-maple-254-2.jpg"));
    let (ok, out, err) = run(&["search", &q, &second, "--mask", &m, "--mask", "none", "--json"]);
    assert!(ok, "{err}");
    let res: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(res["queries"].as_array().unwrap().len(), 2, "{res}");
    assert_eq!((res["queries"][0]["masked"].as_bool(), res["queries"][1]["masked"].as_bool()), (Some(true), Some(false)));
    assert_eq!(res["hotels"][0]["hotel"]["external_id"], "h-maple");
    // The text output says which photo each evidence photo matches.
    let (ok, out, _) = run(&["search", &q, &second]);
    assert!(ok && out.contains("(matches "), "{out}");
    // More masks than photos is a mistake, said before anything runs.
    let (ok, _, err) = run(&["search", &q, "--mask", &m, "--mask", &m]);
    assert!(!ok && err.contains("2 masks for 1 photos"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
