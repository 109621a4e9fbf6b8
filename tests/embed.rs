//! The embedding engine with the real converted models (run `scripts/setup.sh` first;
//! `scripts/test.sh` does).

mod common;
use common::root;

use std::io::Cursor;
use std::path::Path;
use std::sync::OnceLock;

use hotelmatch::embed::{EmbedError, EmbedOptions, Embedder, Input, Resize};
use hotelmatch::media::decode::{self, DecodeError, Limits};
use hotelmatch::{Config, Mask, ModelCard, Pooling};
use image::{DynamicImage, RgbImage};

fn photo(name: &str) -> Vec<u8> {
    std::fs::read(root().join("data-sample/imagenet").join(name)).unwrap()
}

fn embedder(model: &str, opts: EmbedOptions) -> Embedder {
    let cfg = Config::default();
    let card = ModelCard::find(&cfg.models_dir, model).unwrap();
    Embedder::new(card, &cfg.ort_library, opts, Limits::default()).unwrap_or_else(|e| panic!("{e} (run scripts/setup.sh)"))
}

/// MobileNetV2 at a small input size keeps the tests fast.
fn small() -> &'static Embedder {
    static E: OnceLock<Embedder> = OnceLock::new();
    E.get_or_init(|| embedder("mobilenetv2", EmbedOptions { input_size: 160, threads: 1, ..Default::default() }))
}

fn jpeg(img: &RgbImage) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(img.clone()).write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    hotelmatch::vector::dot(a, b)
}

fn vec_of(e: &Embedder, bytes: &[u8], mask: Option<&Mask>) -> Vec<f32> {
    e.embed_one(bytes, mask).unwrap().vector
}

#[test]
fn vectors_are_unit_length_with_the_card_dimension() {
    let v = vec_of(small(), &photo("cat.jpg"), None);
    assert_eq!(v.len(), 1280);
    assert!((cos(&v, &v) - 1.0).abs() < 1e-4);
}

#[test]
fn a_photo_is_closer_to_its_edited_copy_than_to_another_photo() {
    let cat = image::load_from_memory(&photo("cat.jpg")).unwrap().to_rgb8();
    let (w, h) = cat.dimensions();
    // Crop 8% off the edges and brighten by 20%.
    let mut edited = DynamicImage::ImageRgb8(cat.clone()).crop_imm(w / 25, h / 25, w * 23 / 25, h * 23 / 25).to_rgb8();
    edited.pixels_mut().for_each(|p| p.0 = p.0.map(|c| (f32::from(c) * 1.2).min(255.0) as u8));
    let e = small();
    let (a, b, other) = (vec_of(e, &jpeg(&cat), None), vec_of(e, &jpeg(&edited), None), vec_of(e, &photo("espresso.jpg"), None));
    let (same, diff) = (cos(&a, &b), cos(&a, &other));
    assert!(same > diff + 0.1, "copy {same:.3} vs other photo {diff:.3}");
}

#[test]
fn masking_a_pasted_object_brings_the_vector_back() {
    let room = image::load_from_memory(&photo("espresso.jpg")).unwrap().to_rgb8();
    let cat = image::load_from_memory(&photo("cat.jpg")).unwrap().to_rgb8();
    // Paste a 40%-wide piece of the cat into the right of the scene, as a person would stand in a room.
    let (w, h) = room.dimensions();
    let (pw, ph) = (w * 2 / 5, h * 3 / 5);
    let piece = image::imageops::resize(&cat, pw, ph, image::imageops::FilterType::Triangle);
    let mut pasted = room.clone();
    image::imageops::replace(&mut pasted, &piece, i64::from(w - pw - 10), i64::from(h - ph - 10));
    let rect = Mask::Rects(vec![[w - pw - 10, h - ph - 10, pw, ph]]);
    let e = small();
    let original = vec_of(e, &jpeg(&room), None);
    let plain = vec_of(e, &jpeg(&pasted), None);
    let masked = vec_of(e, &jpeg(&pasted), Some(&rect));
    let (before, after) = (cos(&original, &plain), cos(&original, &masked));
    assert!(after > before + 0.05, "masked {after:.3} should beat unmasked {before:.3}");

    // The same mask drawn as a picture, at a quarter of the photo's size, works alike.
    let mut bitmap = image::GrayImage::new(w / 4, h / 4);
    for (x, y, p) in bitmap.enumerate_pixels_mut() {
        if x * 4 >= w - pw - 10 && y * 4 >= h - ph - 10 && x * 4 < w - 10 && y * 4 < h - 10 {
            p.0 = [255];
        }
    }
    let by_picture = vec_of(e, &jpeg(&pasted), Some(&Mask::Bitmap(bitmap)));
    assert!(cos(&original, &by_picture) > before + 0.05);
    let used = e.embed_one(&jpeg(&pasted), Some(&rect)).unwrap();
    assert!(used.cells_used < used.cells_total && used.cells_used > 0);
}

#[test]
fn transparent_pixels_are_masked_without_a_mask() {
    let room = image::load_from_memory(&photo("espresso.jpg")).unwrap().to_rgba8();
    let (w, h) = room.dimensions();
    let mut erased = room.clone();
    for (x, _, p) in erased.enumerate_pixels_mut() {
        if x > w / 2 {
            p.0 = [255, 0, 255, 0]; // erased to transparency, colour left behind
        }
    }
    let mut png = Cursor::new(Vec::new());
    DynamicImage::ImageRgba8(erased).write_to(&mut png, image::ImageFormat::Png).unwrap();
    let e = small();
    let auto = e.embed_one(png.get_ref(), None).unwrap();
    let explicit = e.embed_one(png.get_ref(), Some(&Mask::Rects(vec![[w / 2 + 1, 0, w / 2, h]]))).unwrap();
    assert!(auto.cells_used < auto.cells_total);
    assert!(cos(&auto.vector, &explicit.vector) > 0.99);
}

#[test]
fn batches_give_the_same_vectors_as_single_photos() {
    let e = small();
    let (a, b) = (photo("cat.jpg"), photo("espresso.jpg"));
    let batch = e.embed(&[Input::photo(&a), Input::photo(&b), Input::photo(&a)]);
    let batch: Vec<Vec<f32>> = batch.into_iter().map(|r| r.unwrap().vector).collect();
    assert!(cos(&batch[0], &vec_of(e, &a, None)) > 0.9999);
    assert!(cos(&batch[1], &vec_of(e, &b, None)) > 0.9999);
    assert!(cos(&batch[0], &batch[2]) > 0.9999);
}

#[test]
fn bad_inputs_give_typed_errors_and_do_not_spoil_the_batch() {
    let good = photo("cat.jpg");
    let truncated = &good[..good.len() / 3];
    // A valid JPEG whose header claims 65000 x 65000 pixels.
    let mut huge = jpeg(&RgbImage::new(8, 8));
    let sof = huge.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    huge[sof + 5..sof + 9].copy_from_slice(&[0xFD, 0xE8, 0xFD, 0xE8]);
    let e = small();
    let out = e.embed(&[
        Input::photo(&[]),
        Input::photo(truncated),
        Input::photo(&huge),
        Input::photo(b"GIF89a\x02\x00\x02\x00"),
        Input::photo(&good),
    ]);
    assert!(matches!(out[0], Err(EmbedError::Decode(DecodeError::Empty))));
    assert!(matches!(out[1], Err(EmbedError::Decode(DecodeError::Corrupt(_)))), "{:?}", out[1].as_ref().err());
    assert!(matches!(out[2], Err(EmbedError::Decode(DecodeError::TooManyPixels { width: 65000, height: 65000, .. }))));
    assert!(
        matches!(out[3], Err(EmbedError::Decode(DecodeError::Corrupt(_) | DecodeError::UnsupportedFormat))),
        "{:?}",
        out[3].as_ref().err()
    );
    assert!(out[4].is_ok());
    let all = Mask::Rects(vec![[0, 0, 10_000, 10_000]]);
    assert!(matches!(e.embed_one(&good, Some(&all)), Err(EmbedError::Pool(hotelmatch::embed::pool::PoolError::MaskCoversEverything))));
}

/// Inserts an EXIF APP1 segment with the given orientation right after SOI.
fn with_exif_orientation(jpg: &[u8], orientation: u8) -> Vec<u8> {
    let mut tiff = b"II*\0\x08\0\0\0\x01\0".to_vec(); // little-endian, IFD at 8, one entry
    tiff.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, orientation, 0, 0, 0]); // Orientation, SHORT, 1
    tiff.extend_from_slice(&[0, 0, 0, 0]); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let len = (app1.len() + 2) as u16;
    let mut out = jpg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpg[2..]);
    out
}

#[test]
fn exif_orientation_is_applied() {
    let img = RgbImage::from_fn(64, 32, |x, _| if x < 32 { image::Rgb([250, 0, 0]) } else { image::Rgb([0, 0, 250]) });
    let rotated = with_exif_orientation(&jpeg(&img), 6); // camera held on its side: rotate 90° clockwise
    let d = decode::decode(&rotated, &Limits::default(), None).unwrap();
    assert_eq!(d.rgb.dimensions(), (32, 64));
    assert!(d.rgb.get_pixel(16, 5)[0] > 200, "red half on top after rotation");
    assert!(d.rgb.get_pixel(16, 60)[2] > 200, "blue half at the bottom");
    // The upright photo and its sideways-stored twin embed alike.
    let upright = image::load_from_memory(&photo("cat.jpg")).unwrap();
    let stored = jpeg(&upright.rotate270().to_rgb8());
    let e = small();
    let a = vec_of(e, &jpeg(&upright.to_rgb8()), None);
    let b = vec_of(e, &with_exif_orientation(&stored, 6), None);
    assert!(cos(&a, &b) > 0.97, "{}", cos(&a, &b));
}

#[test]
fn cmyk_jpeg_decodes_to_the_right_colour() {
    let bytes = std::fs::read(root().join("tests/fixtures/red-cmyk.jpg")).unwrap();
    let d = decode::decode(&bytes, &Limits::default(), None).unwrap();
    let p = d.rgb.get_pixel(8, 8).0;
    assert!(p[0] > 220 && p[1] < 40 && p[2] < 40, "{p:?}");
}

#[test]
fn efficientnet_lite2_classifies_known_photos() {
    let e = embedder("efficientnet-lite2", EmbedOptions { resize: Resize::Stretch, threads: 1, ..Default::default() });
    for (name, classes) in [("cat.jpg", &[281usize, 282, 285][..]), ("espresso.jpg", &[967, 968][..])] {
        let p = e.classify(&photo(name)).unwrap();
        let top = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
        assert!(classes.contains(&top), "{name}: top-1 class {top} (p={:.3})", p[top]);
        assert!(p[top] > 0.5, "{name}: confident top-1");
    }
    assert!(matches!(small().classify(&photo("cat.jpg")), Err(EmbedError::Unsupported(_))));
}

#[test]
fn multiscale_and_gem_differ_from_gap_but_agree_on_similarity() {
    let gem = embedder("mobilenetv2", EmbedOptions { pooling: Pooling::Multiscale, input_size: 128, threads: 1, ..Default::default() });
    let (a, b) = (photo("cat.jpg"), photo("espresso.jpg"));
    let (ga, gb) = (vec_of(&gem, &a, None), vec_of(&gem, &b, None));
    let (sa, sb) = (vec_of(small(), &a, None), vec_of(small(), &b, None));
    assert!(cos(&ga, &sa) < 0.9999, "multiscale GeM is a different descriptor");
    assert!(cos(&ga, &gb) < 0.9 && cos(&sa, &sb) < 0.9);
}

#[test]
fn missing_runtime_or_weights_say_how_to_fix_it() {
    let cfg = Config::default();
    let card = ModelCard::find(&cfg.models_dir, "mobilenetv2").unwrap();
    let err =
        Embedder::new(card.clone(), Path::new("/nonexistent/libonnxruntime.so"), EmbedOptions::default(), Limits::default()).err().unwrap();
    assert!(matches!(err, EmbedError::RuntimeMissing(_)));
    assert!(err.to_string().contains("scripts/setup.sh"));
    let mut gone = card;
    gone.file = "nope.onnx".into();
    let err = Embedder::new(gone, &cfg.ort_library, EmbedOptions::default(), Limits::default()).err().unwrap();
    assert!(err.to_string().contains("scripts/setup.sh"), "{err}");
}

/// The SSCD card's embedder, or `None` (saying why) when setup ran with `--open-only`.
fn sscd() -> Option<Embedder> {
    let cfg = Config::default();
    let card = ModelCard::find(&cfg.models_dir, "sscd-distilled").unwrap();
    if card.onnx_path().is_err() {
        eprintln!("skipped: the SSCD model is not installed (scripts/setup.sh ran with --open-only)");
        return None;
    }
    Some(Embedder::new(card, &cfg.ort_library, EmbedOptions { threads: 1, ..Default::default() }, Limits::default()).unwrap())
}

#[test]
fn sscd_card_matches_python_onnxruntime() {
    let Some(e) = sscd() else { return };
    assert_eq!(e.dim(), 512);
    let dir = std::env::temp_dir().join(format!("hm-sscd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["cat.jpg", "espresso.jpg"] {
        // At 320 pixels on the short side already, so both sides see the very same pixels.
        let img = image::load_from_memory(&photo(name)).unwrap().to_rgb8();
        let (w, h) = img.dimensions();
        let (tw, th) = if w >= h { ((w * 320).div_ceil(h), 320) } else { (320, (h * 320).div_ceil(w)) };
        let img = image::imageops::resize(&img, tw, th, image::imageops::FilterType::Triangle);
        let png = dir.join(format!("{name}.png"));
        img.save(&png).unwrap();
        let ours = vec_of(&e, &std::fs::read(&png).unwrap(), None);
        let script = "import json, sys, numpy as np, onnxruntime as ort\nfrom PIL import Image\n\
                      s = ort.InferenceSession(sys.argv[1])\n\
                      x = np.asarray(Image.open(sys.argv[2]).convert('RGB'), np.uint8)[None]\n\
                      print(json.dumps(s.run(['embedding'], {'image': x})[0][0].tolist()))";
        let out = std::process::Command::new(root().join(".cache/venv/bin/python"))
            .args(["-c", script])
            .arg(e.card().onnx_path().unwrap())
            .arg(&png)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let theirs: Vec<f32> = serde_json::from_slice(&out.stdout).unwrap();
        let worst = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert_eq!(theirs.len(), 512);
        assert!(worst < 1e-4, "{name}: largest difference {worst}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sscd_fills_the_mask_and_finds_painted_regions() {
    let Some(e) = sscd() else { return };
    let cat = image::load_from_memory(&photo("cat.jpg")).unwrap().to_rgb8();
    let (w, h) = cat.dimensions();
    let mut painted = cat.clone();
    let rect = [w / 3, h / 4, w / 4, h / 2];
    for y in rect[1]..rect[1] + rect[3] {
        for x in rect[0]..rect[0] + rect[2] {
            painted.put_pixel(x, y, image::Rgb([220, 20, 20]));
        }
    }
    let png = |img: &RgbImage| {
        let mut out = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(img.clone()).write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    };
    let (plain, painted) = (png(&cat), png(&painted));
    let auto = |bytes: &[u8]| e.embed_input(Input { bytes, mask: None, auto_mask: true, decoded: None, marks: &[] }).unwrap();
    assert_eq!(auto(&plain).auto_mask, None, "an unpainted photo is left alone");
    let found = auto(&painted);
    let area = found.auto_mask.expect("the painted rectangle is found");
    assert!((area - 1.0 / 8.0).abs() < 0.04, "area {area}");
    // Filled, the paint no longer counts: the painted photo with the mask (given or found)
    // embeds as the clean photo with the same mask does, and far closer than unmasked.
    let rect = Mask::Rects(vec![rect]);
    let clean_masked = vec_of(&e, &plain, Some(&rect));
    let raw = cos(&vec_of(&e, &painted, None), &vec_of(&e, &plain, None));
    let given = cos(&vec_of(&e, &painted, Some(&rect)), &clean_masked);
    let by_auto = cos(&found.vector, &clean_masked);
    assert!(given > 0.99 && by_auto > 0.98 && given > raw && by_auto > raw, "raw {raw}, given {given}, found {by_auto}");
}
