//! The `matcha` command line end to end: a real pair gives a pose in the documented JSON, identical images give
//! `"R": null` with exit code 0, and every kind of bad input exits non-zero with a message naming the problem.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn matcha(args: &[&str]) -> Output {
    common::run_matcha(args)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("matcha-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn data(name: &str) -> String {
    common::need(&format!("data/{name}")).display().to_string()
}

const K: &str = "994.97775,994.97775,310.818,254.50175";
const K_B: &str = "994.97775,994.97775,341.90375,254.50175";

#[test]
fn match_json_on_a_real_stereo_pair() {
    let viz = tmp("viz.png");
    let o = matcha(&[
        "match",
        &data("motorcycle_left.png"),
        &data("motorcycle_right.png"),
        "--intrinsics",
        K,
        "--intrinsics-b",
        K_B,
        "--json",
        "--out",
        viz.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).expect("one JSON object on stdout");
    assert!(v["matches"].as_u64().unwrap() > 100);
    assert!(v["inliers"].as_u64().unwrap() > 50);
    let t: Vec<f64> = v["t"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    // Rectified stereo, b to the right of a: x_b = x_a − baseline·e_x → t ≈ (−1, 0, 0).
    assert!(
        t[0] < -0.99 && t[1].abs() < 0.1 && t[2].abs() < 0.1,
        "t = {t:?}"
    );
    let r = &v["R"];
    for i in 0..3 {
        assert!((r[i][i].as_f64().unwrap() - 1.0).abs() < 1e-3);
    }
    for key in ["extract_a", "extract_b", "match", "pose"] {
        assert!(v["time_ms"][key].as_f64().is_some(), "time_ms.{key}");
    }
    let pic = image::open(&viz).expect("match picture written");
    assert_eq!(pic.width(), 741 * 2);
}

#[test]
fn negative_distortion_needs_no_equals_sign() {
    let img = data("left01.png");
    let o = matcha(&[
        "match",
        &img,
        &img,
        "--intrinsics",
        "534,534,320,240",
        "--distortion",
        "-0.28,0.07,0.001,0.0",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn identical_images_are_a_rotation_without_translation() {
    let img = data("left01.png");
    let o = matcha(&[
        "match",
        &img,
        &img,
        "--intrinsics",
        "534,534,320,240",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // no motion: the identity rotation, no translation (unobservable), labelled panoramic
    assert_eq!(v["configuration"], "panoramic", "{v}");
    assert!(v["t"].is_null(), "{v}");
    for i in 0..3 {
        for j in 0..3 {
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((v["R"][i][j].as_f64().unwrap() - want).abs() < 1e-6, "{v}");
        }
    }
}

/// A picture on a plane seen from two poses where both of the homography's motions are physically valid:
/// `matcha match` tries again with `engine.ambiguity_max_keypoints` (the plane stays ambiguous however
/// many keypoints), states the ambiguity, reports the best-scoring motion as `R`, `t`, and lists every
/// candidate (the true motion among them). With the second try off, the first try's answer stands.
#[test]
fn a_planar_ambiguity_reports_its_best_guess_and_its_candidates() {
    use nalgebra::{Matrix3, Rotation3, Vector3};
    let img = image::open(data("motorcycle_left.png")).unwrap().to_rgb8();
    let (w, h) = img.dimensions();
    let (f, cx, cy) = (700.0, 370.5, 250.0);
    let k = Matrix3::new(f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0);
    // x_b = R·x_a + t, plane n·x_a = d in camera a
    let r = Rotation3::from_scaled_axis(Vector3::new(0.0, 0.1, 0.0)).into_inner();
    let t = Vector3::new(-0.3, 0.0, 0.2);
    let n = Vector3::new(0.4, 0.0, 1.0).normalize();
    let hm = k * (r + t * n.transpose() / 3.0) * k.try_inverse().unwrap();
    let hm = hm / hm[(2, 2)];
    let proj = imageproc::geometric_transformations::Projection::from_matrix(
        [0, 1, 2, 3, 4, 5, 6, 7, 8].map(|i| hm[(i / 3, i % 3)] as f32),
    )
    .unwrap();
    let warped = imageproc::geometric_transformations::warp(
        &img,
        proj,
        imageproc::geometric_transformations::Interpolation::Bilinear,
        imageproc::geometric_transformations::Border::Constant(image::Rgb([0, 0, 0])),
    );
    assert_eq!(warped.dimensions(), (w, h));
    let (a, b) = (tmp("plane_a.png"), tmp("plane_b.png"));
    img.save(&a).unwrap();
    warped.save(&b).unwrap();
    let intrinsics = format!("{f},{f},{cx},{cy}");
    // `matcha [global options] match a b --json`, its answer as JSON
    let match_json = |global: &[&str]| -> serde_json::Value {
        let mut args = global.to_vec();
        args.extend(["match", a.to_str().unwrap(), b.to_str().unwrap()]);
        args.extend(["--intrinsics", &intrinsics, "--json"]);
        let o = matcha(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let v = match_json(&[]);
    assert_eq!(v["ambiguous"], true, "{v}");
    assert!(v["ambiguity"].as_str().unwrap().contains("planar"), "{v}");
    // the second try ran: its extraction is timed and its keypoints are the ones reported
    assert!(v["time_ms"]["extract_retry"].as_f64().unwrap() > 0.0, "{v}");
    let kp = |v: &serde_json::Value, i: usize| v["keypoints"][i].as_u64().unwrap();
    assert!(kp(&v, 0) > 2048 && kp(&v, 0) <= 4096, "{v}");
    let cands = v["candidates"].as_array().unwrap();
    assert!(cands.len() >= 2, "{v}");
    assert_eq!(cands[0]["R"], v["R"]);
    assert_eq!(cands[0]["t"], v["t"]);
    let t_true = t.normalize();
    let best_t = cands
        .iter()
        .map(|c| {
            let e = Vector3::from_iterator((0..3).map(|i| c["t"][i].as_f64().unwrap()));
            e.dot(&t_true).clamp(-1.0, 1.0).acos().to_degrees()
        })
        .fold(f64::INFINITY, f64::min);
    assert!(
        best_t < 3.0,
        "the true motion is not among the candidates ({best_t}°): {v}"
    );
    let cfg = tmp("no_retry.yaml");
    std::fs::write(
        &cfg,
        "/**:\n  ros__parameters:\n    engine:\n      ambiguity_max_keypoints: 0\n",
    )
    .unwrap();
    let v = match_json(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(v["ambiguous"], true, "{v}");
    assert!(v["time_ms"].get("extract_retry").is_none(), "{v}");
    assert_eq!(kp(&v, 0), 2048, "{v}");
}

fn assert_fails(args: &[&str], needle: &str) {
    let o = matcha(args);
    assert!(!o.status.success(), "expected failure for {args:?}");
    let e = stderr(&o);
    assert!(
        e.contains(needle),
        "stderr for {args:?} lacks '{needle}': {e}"
    );
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn bad_inputs_exit_non_zero_with_a_message() {
    let good = data("left01.png");
    let empty = tmp("empty.png");
    std::fs::write(&empty, b"").unwrap();
    let garbage = tmp("garbage.png");
    std::fs::write(&garbage, b"\x89PNG\r\n\x1a\nthis is not really a png").unwrap();
    let tiny = tmp("tiny.png");
    image::RgbImage::new(20, 20).save(&tiny).unwrap();
    let (empty, garbage, tiny) = (
        empty.to_str().unwrap(),
        garbage.to_str().unwrap(),
        tiny.to_str().unwrap(),
    );
    let k = "534,534,320,240";
    assert_fails(
        &["match", "/nonexistent.png", &good, "--intrinsics", k],
        "cannot read image file",
    );
    assert_fails(&["match", empty, &good, "--intrinsics", k], "empty");
    assert_fails(
        &["match", garbage, &good, "--intrinsics", k],
        "cannot decode",
    );
    assert_fails(
        &["match", tiny, &good, "--intrinsics", k],
        "smaller than the network stride",
    );
    assert_fails(
        &["match", &good, &good, "--intrinsics", "534,-534,320,240"],
        "focal length",
    );
    assert_fails(
        &["match", &good, &good, "--intrinsics", "534,534,320"],
        "needs",
    );
    assert_fails(
        &["match", &good, &good, "--intrinsics", "a,b,c,d"],
        "numbers",
    );
    assert_fails(
        &["match", &good, &good, "--intrinsics", "534,534,NaN,240"],
        "finite",
    );
}

#[test]
fn gray_rgba_and_16_bit_images_are_accepted() {
    let src = image::open(Path::new(&data("left01.png"))).unwrap();
    let g16 = tmp("g16.png");
    image::DynamicImage::ImageLuma16(src.to_luma16())
        .save(&g16)
        .unwrap();
    let rgba = tmp("rgba.png");
    image::DynamicImage::ImageRgba8(src.to_rgba8())
        .save(&rgba)
        .unwrap();
    let o = matcha(&[
        "match",
        g16.to_str().unwrap(),
        rgba.to_str().unwrap(),
        "--intrinsics",
        "534,534,320,240",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn missing_or_corrupt_engines_are_reported() {
    let dir = tmp("engines");
    std::fs::create_dir_all(&dir).unwrap();
    let good = data("left01.png");
    let run = |dir: &Path| {
        Command::new(env!("CARGO_BIN_EXE_matcha"))
            .args([
                "--engines",
                dir.to_str().unwrap(),
                "match",
                &good,
                &good,
                "--intrinsics",
                "534,534,320,240",
            ])
            .output()
            .unwrap()
    };
    let o = run(&dir);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));
    std::fs::write(dir.join("xfeat.onnx"), b"definitely not an onnx model").unwrap();
    let o = run(&dir);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot load model"), "{}", stderr(&o));
}

#[test]
fn missing_or_invalid_onnxruntime_library_is_reported() {
    let good = data("left01.png");
    let not_a_library = tmp("libonnxruntime.so.txt");
    std::fs::write(&not_a_library, b"not a shared library").unwrap();
    for (lib, needle) in [
        ("/nonexistent/libonnxruntime.so", "file does not exist"),
        (
            not_a_library.to_str().unwrap(),
            "cannot load ONNX Runtime library",
        ),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_matcha"))
            .env("ORT_DYLIB_PATH", lib)
            .args(["--engines", common::engines_dir().to_str().unwrap()])
            .args(["match", &good, &good, "--intrinsics", "534,534,320,240"])
            .output()
            .unwrap();
        assert!(!o.status.success());
        let e = stderr(&o);
        assert!(e.contains(needle) && e.contains("ORT_DYLIB_PATH"), "{e}");
        assert!(!e.contains("panicked"), "{e}");
    }
}

/// `matcha match --mode semantic` on the random-initialised semantic engines: the plumbing (points in, one
/// answer per point, cycle flags, JSON) and the refusals (another configuration's engines, another
/// extractor). The numbers mean nothing without the real weights.
#[test]
fn semantic_mode_runs_the_semantic_configuration() {
    let dir = tmp("semantic");
    std::fs::create_dir_all(&dir).unwrap();
    let config = |engines: &Path| {
        let p = dir.join(format!(
            "{}.yaml",
            engines.file_name().unwrap().to_string_lossy()
        ));
        std::fs::write(
            &p,
            format!(
                "engine:\n  extractor: matcha\n  matcha:\n    engines_dir: {}\n",
                engines.display()
            ),
        )
        .unwrap();
        p
    };
    let semantic = config(&common::matcha_fixture("semantic"));
    let points = dir.join("points.json");
    std::fs::write(&points, "[[100, 120], [400.5, 300], [-40, 10]]").unwrap();
    let (a, b) = (data("graf1.png"), data("graf3.png"));
    let o = matcha(&[
        "--config",
        semantic.to_str().unwrap(),
        "match",
        &a,
        &b,
        "--mode",
        "semantic",
        "--points",
        points.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["mode"], "semantic");
    assert_eq!(v["configuration"], "semantic");
    let m = v["matches"].as_array().unwrap();
    assert_eq!(m.len(), 3);
    assert!(m[0]["b"].as_array().is_some() && m[0]["mutual"].is_boolean());
    assert!(m[2].is_null(), "a point outside A has no match: {}", m[2]);
    // the geometric configuration's engines, or another extractor: refused with what to change
    let geometric = config(&common::matcha_fixture("geometric"));
    let o = matcha(&[
        "--config",
        geometric.to_str().unwrap(),
        "match",
        &a,
        &b,
        "--mode",
        "semantic",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("--mode semantic"),
        "{}",
        stderr(&o)
    );
    let o = matcha(&["match", &a, &b, "--mode", "semantic"]);
    assert!(
        !o.status.success() && stderr(&o).contains("engine.extractor: matcha"),
        "{}",
        stderr(&o)
    );
    // geometric mode still needs intrinsics
    let o = matcha(&["match", &a, &b]);
    assert!(
        !o.status.success() && stderr(&o).contains("--intrinsics"),
        "{}",
        stderr(&o)
    );
}
