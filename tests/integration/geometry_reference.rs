//! The geometry layer against independent references written by `tools/pose_reference.py reference`
//! (PoseLib 2.0.5 `estimate_relative_pose`, OpenCV `undistortPoints`), stored in `tests/data/geometry/`.

use matcha::geometry::metrics::{pose_error_deg, rotation_error_deg, translation_error_deg};
use matcha::geometry::{estimate_relative_pose, Distortion, PinholeCamera, RansacOptions};
use nalgebra::{Matrix3, Vector3};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/geometry")
        .join(name);
    serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn pts(v: &Value) -> Vec<[f64; 2]> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| [p[0].as_f64().unwrap(), p[1].as_f64().unwrap()])
        .collect()
}

fn mat(v: &Value) -> Matrix3<f64> {
    Matrix3::from_fn(|i, j| v[i][j].as_f64().unwrap())
}

fn vec3(v: &Value) -> Vector3<f64> {
    Vector3::new(
        v[0].as_f64().unwrap(),
        v[1].as_f64().unwrap(),
        v[2].as_f64().unwrap(),
    )
    .normalize()
}

#[test]
fn relative_pose_matches_poselib() {
    let data = load("pose_poselib.json");
    let (mut ours_err, mut poselib_err) = (Vec::new(), Vec::new());
    for (k, c) in data["cases"].as_array().unwrap().iter().enumerate() {
        let cam = &c["camera"];
        let f = |s: &str| cam[s].as_f64().unwrap();
        let camera = PinholeCamera::new(f("fx"), f("fy"), f("cx"), f("cy")).unwrap();
        let (pa, pb) = (pts(&c["points_a"]), pts(&c["points_b"]));
        let opts = RansacOptions {
            threshold_px: c["threshold_px"].as_f64().unwrap(),
            ..Default::default()
        };
        let pose = estimate_relative_pose(&pa, &pb, &camera, &camera, None, &opts)
            .unwrap_or_else(|e| panic!("case {k}: {e}"));
        let (rg, tg) = (mat(&c["r_gt"]), vec3(&c["t_gt"]));
        let (rp, tp) = (mat(&c["r_poselib"]), vec3(&c["t_poselib"]));
        let (our_r, our_t) = pose_error_deg(&pose.rotation, &pose.translation.unwrap(), &rg, &tg);
        let (pl_r, pl_t) = pose_error_deg(&rp, &tp, &rg, &tg);
        let d_r = rotation_error_deg(&pose.rotation, &rp);
        let d_t = translation_error_deg(&pose.translation.unwrap(), &tp);
        println!(
            "case {k}: ours {our_r:.4}°/{our_t:.4}° ({} inliers), PoseLib {pl_r:.4}°/{pl_t:.4}° ({} inliers), \
             difference {d_r:.4}°/{d_t:.4}°",
            pose.num_inliers, c["inliers_poselib"]
        );
        // Same data, same kind of estimator: the two estimates agree to within their errors to ground truth,
        // and ours is never much worse than PoseLib's (aggregate check below).
        assert!(
            d_r < 0.05 + 2.0 * pl_r.max(our_r),
            "case {k}: rotation differs from PoseLib by {d_r}°"
        );
        assert!(
            d_t < 0.3 + 2.0 * pl_t.max(our_t),
            "case {k}: translation differs from PoseLib by {d_t}°"
        );
        assert!(
            our_r.max(our_t) <= 2.0 * pl_r.max(pl_t) + 0.05,
            "case {k}: much worse than PoseLib"
        );
        assert!(
            pose.translation.unwrap().dot(&tp) > 0.0,
            "case {k}: translation sign differs from PoseLib's"
        );
        // The aggregate uses our mean over several seeds: single runs land anywhere in the flat optimum of
        // the MSAC cost (PoseLib's single run included), and one case can swing the mean of six by 10%.
        let seeds = 8;
        let mut sum = our_r.max(our_t);
        for seed in 1..seeds {
            let o = RansacOptions {
                seed,
                ..opts.clone()
            };
            let p = estimate_relative_pose(&pa, &pb, &camera, &camera, None, &o)
                .unwrap_or_else(|e| panic!("case {k} seed {seed}: {e}"));
            let (r, t) = pose_error_deg(&p.rotation, &p.translation.unwrap(), &rg, &tg);
            sum += r.max(t);
            println!(
                "case {k} seed {seed}: {:.3} ({} inliers, {} it)",
                r.max(t),
                p.num_inliers,
                p.quality.iterations
            );
        }
        ours_err.push(sum / seeds as f64);
        let pl_seeds: Vec<f64> = c["poselib_err_seeds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        poselib_err.push(pl_seeds.iter().sum::<f64>() / pl_seeds.len() as f64);
        let pl_in = c["inliers_poselib"].as_u64().unwrap() as f64;
        assert!(
            (pose.num_inliers as f64 - pl_in).abs() <= 0.05 * pl_in + 3.0,
            "case {k}: inlier count"
        );
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "mean pose error: ours {:.4}°, PoseLib {:.4}°",
        mean(&ours_err),
        mean(&poselib_err)
    );
    // Both means are over seeds (ours 8 runs per case here, PoseLib's 8 stored by the generator). Known gap:
    // on case 2 (60% outliers, 1 px noise) 2 of 8 of our runs stop in a basin with ~5% fewer inliers
    // (1.4°, 2.1°) where PoseLib's runs all stay within 0.31°; measured 0.267° vs 0.181° (the estimator
    // before the LO/termination fix: 0.314°).
    assert!(
        mean(&ours_err) <= 1.5 * mean(&poselib_err),
        "less accurate than PoseLib on average"
    );
}

#[test]
fn undistortion_matches_opencv() {
    let data = load("undistort_opencv.json");
    let k: Vec<f64> = data["k"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let d: Vec<f64> = data["d"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let cam = PinholeCamera::new(k[0], k[1], k[2], k[3])
        .unwrap()
        .with_distortion(Distortion::from_slice(&d).unwrap())
        .unwrap();
    let px = pts(&data["pixels"]);
    let want = pts(&data["normalized"]);
    let mut worst: f64 = 0.0;
    for (p, w) in px.iter().zip(&want) {
        let n = cam.try_normalize(*p).unwrap();
        worst = worst.max((n[0] - w[0]).abs()).max((n[1] - w[1]).abs());
    }
    // OpenCV iterates a fixed-point scheme; both are converged far below a micro-pixel (1e-9 × f).
    assert!(
        worst < 1e-9,
        "max difference to cv2.undistortPoints: {worst}"
    );
}

/// Real matched points (XFeat + MNN on the rendered room, `tools/pose_reference.py real-fixture`), with the MNN
/// scores as PROSAC priority exactly as the pipeline passes them. These pairs have dominant planes and
/// repetitive texture; the estimator used to stop after `min_iterations` with a wrong pose (view12: 473
/// inliers and 60° off where PoseLib keeps 825 and is within 1°). Checked over several seeds: ours keeps
/// about as many inliers as PoseLib and is as accurate.
#[test]
fn real_pairs_with_priority_match_poselib() {
    let data = load("real_pairs.json");
    for p in data["pairs"].as_array().unwrap() {
        let id = p["id"].as_str().unwrap();
        let cam = |c: &Value| {
            let f = |s: &str| c[s].as_f64().unwrap();
            PinholeCamera::new(f("fx"), f("fy"), f("cx"), f("cy")).unwrap()
        };
        let (ca, cb) = (cam(&p["camera_a"]), cam(&p["camera_b"]));
        let (pa, pb) = (pts(&p["points_a"]), pts(&p["points_b"]));
        let score: Vec<f32> = p["score"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let (rg, tg) = (mat(&p["R"]), vec3(&p["t"]));
        let runs = p["poselib"].as_array().unwrap();
        let pl_inliers = runs
            .iter()
            .map(|r| r["inliers"].as_u64().unwrap())
            .min()
            .unwrap() as f64;
        let pl_err = runs
            .iter()
            .map(|r| r["err_deg"].as_f64().unwrap())
            .fold(0.0, f64::max);
        for seed in 0..4 {
            let opts = RansacOptions {
                seed,
                ..Default::default()
            };
            let pose = estimate_relative_pose(&pa, &pb, &ca, &cb, Some(&score), &opts)
                .unwrap_or_else(|e| panic!("{id} seed {seed}: {e}"));
            let (er, et) = pose_error_deg(&pose.rotation, &pose.translation.unwrap(), &rg, &tg);
            let err = er.max(et);
            println!(
                "{id} seed {seed}: {} inliers, {err:.3}° ({} iterations); PoseLib ≥ {pl_inliers} inliers, ≤ {pl_err:.3}°",
                pose.num_inliers, pose.quality.iterations
            );
            assert!(
                pose.num_inliers as f64 >= 0.98 * pl_inliers,
                "{id} seed {seed}: {} inliers, PoseLib {pl_inliers}",
                pose.num_inliers
            );
            assert!(
                err < 1.0 + 2.0 * pl_err,
                "{id} seed {seed}: pose error {err}°, PoseLib ≤ {pl_err}°"
            );
        }
    }
}

/// Developer helper, not a check: extracts XFeat features (4096 keypoints) on the evaluation sets, matches
/// them with MNN and writes the matched pixels, match scores, cameras and ground truth of every pair, so the
/// pose estimator can be studied without the engines (`MATCHA_DUMP_MANIFESTS`: manifest paths separated by
/// `:`; `MATCHA_DUMP_OUT`: output folder, one `<set>.json` per manifest; `MATCHA_ENGINES`: engines folder).
#[test]
#[ignore = "developer helper: needs the exported engines and the evaluation sets"]
fn dump_real_matches() {
    use matcha::eval::Manifest;
    use matcha::pipeline::Pipeline;
    let manifests = std::env::var("MATCHA_DUMP_MANIFESTS").expect("MATCHA_DUMP_MANIFESTS");
    let out = std::path::PathBuf::from(std::env::var("MATCHA_DUMP_OUT").expect("MATCHA_DUMP_OUT"));
    std::fs::create_dir_all(&out).unwrap();
    let mut cfg = matcha::config::MatchaConfig::default();
    cfg.engine.max_keypoints = 4096;
    cfg.runtime.engines_dir = std::env::var("MATCHA_ENGINES")
        .expect("MATCHA_ENGINES")
        .into();
    let mut pipeline = Pipeline::new(&cfg).unwrap();
    for m in manifests.split(':') {
        let manifest = Manifest::load(std::path::Path::new(m)).unwrap();
        let mut pairs = Vec::new();
        for pair in &manifest.pairs {
            let fa = pipeline
                .extract(&matcha::image::load(&manifest.root.join(&pair.image_a)).unwrap())
                .unwrap();
            let fb = pipeline
                .extract(&matcha::image::load(&manifest.root.join(&pair.image_b)).unwrap())
                .unwrap();
            let res = pipeline
                .match_pair(
                    &fa,
                    &pair.camera_a.camera().unwrap(),
                    &fb,
                    &pair.camera_b.camera().unwrap(),
                )
                .unwrap();
            let ms = &res.matches.matches;
            let pa: Vec<[f32; 2]> = ms.iter().map(|m| fa.keypoints[m.a as usize]).collect();
            let pb: Vec<[f32; 2]> = ms.iter().map(|m| fb.keypoints[m.b as usize]).collect();
            let score: Vec<f32> = ms.iter().map(|m| m.score).collect();
            println!("{} {}: {} matches", manifest.name, pair.id, ms.len());
            pairs.push(serde_json::json!({
                "id": pair.id, "camera_a": pair.camera_a, "camera_b": pair.camera_b,
                "R": pair.r, "t": pair.t, "points_a": pa, "points_b": pb, "score": score,
            }));
        }
        let path = out.join(format!("{}.json", manifest.name));
        std::fs::write(
            &path,
            serde_json::to_vec(&serde_json::json!({"pairs": pairs})).unwrap(),
        )
        .unwrap();
    }
}

/// Developer helper, not a check: runs the estimator on the pairs written by [`dump_real_matches`] and prints
/// per-pair inliers and pose errors next to PoseLib's on the same matches (`MATCHA_DUMP_OUT`: the dump
/// folder; `MATCHA_BASELINES`: folder of `<set>-xfeat.json` result files; `POSE_MIN_ITER`, `POSE_NO_PRIO`:
/// option overrides).
#[test]
#[ignore = "developer helper: needs the dumps of dump_real_matches"]
fn report_real_matches() {
    use matcha::geometry::metrics::pose_auc;
    let dir = std::path::PathBuf::from(std::env::var("MATCHA_DUMP_OUT").expect("MATCHA_DUMP_OUT"));
    let base = std::env::var("MATCHA_BASELINES").ok();
    let mut opts = RansacOptions::default();
    if let Some(v) = std::env::var("POSE_MIN_ITER")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        opts.min_iterations = v;
    }
    let seeds: u64 = std::env::var("POSE_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let no_prio = std::env::var("POSE_NO_PRIO").is_ok();
    let verbose = std::env::var("POSE_VERBOSE").is_ok();
    for set in ["chessboard", "motorcycle", "rendered"] {
        let Ok(bytes) = std::fs::read(dir.join(format!("{set}.json"))) else {
            continue;
        };
        let data: Value = serde_json::from_slice(&bytes).unwrap();
        // Several baseline folders (separated by `:`) are used in turn, one per seed.
        let baselines: Vec<Value> = base
            .iter()
            .flat_map(|b| b.split(':'))
            .map(|b| {
                serde_json::from_slice(
                    &std::fs::read(std::path::Path::new(b).join(format!("{set}-xfeat.json")))
                        .unwrap(),
                )
                .unwrap()
            })
            .collect();
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let t0 = std::time::Instant::now();
        let mut inl_sum = 0usize;
        let mut est = Vec::new();
        for seed in 0..seeds {
            opts.seed = seed;
            for p in data["pairs"].as_array().unwrap() {
                let cam = |c: &Value| {
                    let f = |s: &str| c[s].as_f64().unwrap();
                    let d: Vec<f64> = c["dist"]
                        .as_array()
                        .map(|a| a.iter().map(|v| v.as_f64().unwrap()).collect())
                        .unwrap_or_default();
                    let k = PinholeCamera::new(f("fx"), f("fy"), f("cx"), f("cy")).unwrap();
                    if d.iter().all(|&x| x == 0.0) {
                        k
                    } else {
                        k.with_distortion(Distortion::from_slice(&d).unwrap())
                            .unwrap()
                    }
                };
                let (ca, cb) = (cam(&p["camera_a"]), cam(&p["camera_b"]));
                let (pa, pb) = (pts(&p["points_a"]), pts(&p["points_b"]));
                let score: Vec<f32> = p["score"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
                    .collect();
                let rg = mat(&p["R"]);
                let tg = vec3(&p["t"]);
                let prio = if no_prio { None } else { Some(&score[..]) };
                let (err, inl, it) = match estimate_relative_pose(&pa, &pb, &ca, &cb, prio, &opts) {
                    Ok(pose) => {
                        if seed == 0 {
                            est.push(serde_json::json!({"id": p["id"], "R": [[pose.rotation[(0,0)], pose.rotation[(0,1)], pose.rotation[(0,2)]], [pose.rotation[(1,0)], pose.rotation[(1,1)], pose.rotation[(1,2)]], [pose.rotation[(2,0)], pose.rotation[(2,1)], pose.rotation[(2,2)]]], "t": pose.translation.map(|t| [t.x, t.y, t.z]), "num_inliers": pose.num_inliers}));
                        }
                        let (r, t) =
                            pose_error_deg(&pose.rotation, &pose.translation.unwrap(), &rg, &tg);
                        (r.max(t), pose.num_inliers, pose.quality.iterations)
                    }
                    Err(_) => (f64::INFINITY, 0, 0),
                };
                ours.push(err);
                let id = p["id"].as_str().unwrap();
                let (perr, pinl) = baselines
                    .get(seed as usize % baselines.len().max(1))
                    .and_then(|b| {
                        b["pairs"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .find(|q| q["id"].as_str() == Some(id))
                            .cloned()
                    })
                    .and_then(|q| {
                        q["R"].as_array()?;
                        let (r, t) = (mat(&q["R"]), vec3(&q["t"]));
                        let (er, et) = pose_error_deg(&r, &t, &rg, &tg);
                        Some((er.max(et), q["num_inliers"].as_u64().unwrap_or(0)))
                    })
                    .unwrap_or((f64::INFINITY, 0));
                theirs.push(perr);
                inl_sum += inl;
                if verbose {
                    println!(
                    "{set} {id}: {} matches, ours {inl} inliers {err:.3}° ({it} it), PoseLib {pinl} inliers {perr:.3}°",
                    pa.len()
                );
                }
            }
        }
        let auc = |e: &[f64]| {
            pose_auc(e, &[5.0, 10.0, 20.0])
                .iter()
                .map(|a| format!("{:.1}", 100.0 * a))
                .collect::<Vec<_>>()
                .join("/")
        };
        if let Ok(d) = std::env::var("POSE_OUT") {
            std::fs::write(
                format!("{d}/{set}.json"),
                serde_json::to_vec(&serde_json::json!({"pairs": est})).unwrap(),
            )
            .unwrap();
        }
        println!(
            "{set}: ours {} PoseLib {} ({:.0} ms, {seeds} seeds, {inl_sum} inliers)",
            auc(&ours),
            auc(&theirs),
            t0.elapsed().as_secs_f64() * 1e3
        );
    }
}
