//! `matcha bench pose`: the relative-pose solver against PoseLib, OpenCV (USAC_MAGSAC) and COLMAP's two-view
//! geometry (pycolmap), through `tools/pose_reference.py`, on the synthetic cases of
//! [`matcha::geometry::synthetic`]: points in general position, a dominant plane with 5/10/20% of the
//! inliers off it, a small baseline (low parallax) and a pure rotation, each with outliers. For every case
//! it prints time, median error and gross-failure rates (> 10°, > 20°) with ratios to PoseLib.
//!
//! Fairness: the in-process methods and the Python references run in alternating whole passes (A B A B …)
//! so that slow load drift on a shared machine hits both; within a pass the methods are interleaved per
//! instance, on exactly the same correspondences.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use nalgebra::{Matrix3, Vector3};

use matcha::geometry::metrics::pose_error_max_deg;
use matcha::geometry::synthetic::{
    generate_sets, write_sets_json, SceneKind, SyntheticConfig, SyntheticInstance,
};
use matcha::geometry::{estimate_relative_pose, RansacOptions};

/// Timing and accuracy of one method over all instances and repetitions.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct BenchRow {
    /// Method name.
    pub method: String,
    /// Median wall time per call, microseconds.
    pub median_us: f64,
    /// 90th percentile wall time per call, microseconds.
    pub p90_us: f64,
    /// Median pose error (max of rotation and translation-direction error), degrees; failures count as ∞.
    pub median_err_deg: f64,
    /// Calls that returned no pose.
    pub failures: usize,
    /// Calls more than 10° off (failures included).
    pub over_10: usize,
    /// Calls more than 20° off (failures included).
    pub over_20: usize,
    /// Calls timed.
    pub calls: usize,
}

/// A method under test: returns `(R, t)` of `x_b = R·x_a + t` (`t = None`: a rotation without
/// translation) or `None` (no pose).
pub(crate) type Method<'a> =
    Box<dyn FnMut(&SyntheticInstance) -> Option<(Matrix3<f64>, Option<Vector3<f64>>)> + 'a>;

use matcha::util::stats::percentile;

/// Raw measurements of one method, accumulated over passes (see [`run_interleaved`]).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Samples {
    /// Method name.
    pub method: String,
    /// Wall time per call, microseconds.
    pub times_us: Vec<f64>,
    /// Pose error per call (max of rotation and translation-direction error), degrees; ∞ = failure.
    pub errs_deg: Vec<f64>,
}

impl Samples {
    /// Summary row (median/p90 time, median error, failures).
    pub(crate) fn row(&self) -> BenchRow {
        BenchRow {
            method: self.method.clone(),
            median_us: percentile(&self.times_us, 0.5),
            p90_us: percentile(&self.times_us, 0.9),
            median_err_deg: percentile(&self.errs_deg, 0.5),
            failures: self.errs_deg.iter().filter(|e| !e.is_finite()).count(),
            over_10: self.errs_deg.iter().filter(|&&e| e > 10.0).count(),
            over_20: self.errs_deg.iter().filter(|&&e| e > 20.0).count(),
            calls: self.times_us.len(),
        }
    }

    fn merge_into(list: &mut Vec<Samples>, more: Samples) {
        match list.iter_mut().find(|s| s.method == more.method) {
            Some(s) => {
                s.times_us.extend(more.times_us);
                s.errs_deg.extend(more.errs_deg);
            }
            None => list.push(more),
        }
    }
}

/// Errors of the benchmark's external reference pass.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BenchError {
    /// Writing the sets or reading the reference's output failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The reference script failed or wrote something unreadable.
    #[error("reference script: {0}")]
    Reference(String),
}

/// An external reference: `tools/pose_reference.py bench` run by `python` (PoseLib, OpenCV).
#[derive(Debug, Clone)]
pub(crate) struct PythonReference {
    /// A Python with poselib and opencv.
    pub python: std::path::PathBuf,
    /// Path of `tools/pose_reference.py`.
    pub script: std::path::PathBuf,
}

impl PythonReference {
    /// One pass of every reference method over `sets` (one call per instance, interleaved per instance
    /// inside the script).
    pub(crate) fn pass(
        &self,
        sets: &[SyntheticInstance],
        threshold_px: f64,
    ) -> Result<Vec<Samples>, BenchError> {
        let dir = std::env::temp_dir().join(format!(
            "matcha_pose_bench_{}_{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        std::fs::create_dir_all(&dir)?;
        let sets_path = dir.join("sets.json");
        let out_path = dir.join("out.json");
        let result = (|| {
            write_sets_json(&sets_path, sets, threshold_px, 1)?;
            let status = std::process::Command::new(&self.python)
                .arg(&self.script)
                .arg("bench")
                .arg(&sets_path)
                .arg(&out_path)
                .status()?;
            if !status.success() {
                return Err(BenchError::Reference(format!("exit status {status}")));
            }
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out_path)?)
                .map_err(|e| BenchError::Reference(e.to_string()))?;
            let mut samples: Vec<Samples> = serde_json::from_value(v["samples"].clone())
                .map_err(|e| BenchError::Reference(e.to_string()))?;
            // JSON has no ∞: the script writes failures as 1e300.
            for s in &mut samples {
                for e in &mut s.errs_deg {
                    if *e >= 1e299 {
                        *e = f64::INFINITY;
                    }
                }
            }
            Ok(samples)
        })();
        let _ = std::fs::remove_dir_all(&dir);
        result
    }
}

/// One pass: every method once per instance, methods interleaved per instance.
pub(crate) fn run_pass(
    sets: &[SyntheticInstance],
    methods: &mut [(String, Method<'_>)],
) -> Vec<Samples> {
    let mut out: Vec<Samples> = methods
        .iter()
        .map(|(name, _)| Samples {
            method: name.clone(),
            ..Default::default()
        })
        .collect();
    for inst in sets {
        let (rg, tg) = inst.ground_truth();
        for (m, (_, f)) in methods.iter_mut().enumerate() {
            let t0 = Instant::now();
            let res = f(inst);
            out[m].times_us.push(t0.elapsed().as_secs_f64() * 1e6);
            out[m].errs_deg.push(res.map_or(f64::INFINITY, |(r, t)| {
                pose_error_max_deg(&r, t.as_ref(), &rg, &tg)
            }));
        }
    }
    out
}

/// The fair benchmark: `passes` alternating passes A (the in-process `methods`) and B (the external
/// reference, if any) — A B A B … — so slow drifts of the machine's load hit both sides alike; within a pass
/// the methods are interleaved per instance. Returns one row per method (ours first) and, when the reference
/// failed, why (its rows are then missing).
pub(crate) fn run_interleaved(
    sets: &[SyntheticInstance],
    passes: usize,
    threshold_px: f64,
    methods: &mut [(String, Method<'_>)],
    reference: Option<&PythonReference>,
) -> (Vec<BenchRow>, Option<BenchError>) {
    let mut all: Vec<Samples> = Vec::new();
    let mut error = None;
    for _ in 0..passes.max(1) {
        for s in run_pass(sets, methods) {
            Samples::merge_into(&mut all, s);
        }
        if let (Some(r), None) = (reference, &error) {
            match r.pass(sets, threshold_px) {
                Ok(v) => v.into_iter().for_each(|s| Samples::merge_into(&mut all, s)),
                Err(e) => error = Some(e),
            }
        }
    }
    (all.iter().map(Samples::row).collect(), error)
}

/// kornia-3d's `ransac_essential_5pt` (Nistér 5-point, plain RANSAC with adaptive stopping, Sampson error in
/// pixels, no local optimisation or refinement) as a benchmark method; the pose is decomposed from its `E`
/// with cheirality on its inliers. Only with the cargo feature `kornia-bench`.
#[cfg(feature = "kornia-bench")]
pub(crate) fn kornia(threshold_px: f64, seed: u64) -> Method<'static> {
    use kornia_algebra::{Mat3F64, Vec2F64};
    Box::new(move |inst: &SyntheticInstance| {
        let c = &inst.camera;
        let k = Mat3F64::from_cols_array(&[c.fx, 0.0, 0.0, 0.0, c.fy, 0.0, c.cx, c.cy, 1.0]);
        let x1: Vec<Vec2F64> = inst
            .points_a
            .iter()
            .map(|p| Vec2F64::new(p[0], p[1]))
            .collect();
        let x2: Vec<Vec2F64> = inst
            .points_b
            .iter()
            .map(|p| Vec2F64::new(p[0], p[1]))
            .collect();
        let params = kornia_3d::pose::RansacParams {
            max_iterations: 10_000,
            threshold: threshold_px,
            min_inliers: 15,
            random_seed: Some(seed),
            ..Default::default()
        };
        let res = kornia_3d::pose::ransac_essential_5pt(&x1, &x2, &k, &k, &params).ok()?;
        let e = Matrix3::from_column_slice(&res.model.0.to_cols_array());
        let pts: Vec<[f64; 4]> = (0..inst.points_a.len())
            .filter(|&i| res.inliers.get(i).copied().unwrap_or(false))
            .map(|i| {
                let a = c.normalize(inst.points_a[i]);
                let b = c.normalize(inst.points_b[i]);
                [a[0], a[1], b[0], b[1]]
            })
            .collect();
        matcha::geometry::essential::pose_from_essential(&e, &pts).map(|(r, t, _)| (r, Some(t)))
    })
}

/// Our estimator as a benchmark method.
pub(crate) fn ours(options: RansacOptions) -> Method<'static> {
    Box::new(move |inst: &SyntheticInstance| {
        estimate_relative_pose(
            &inst.points_a,
            &inst.points_b,
            &inst.camera,
            &inst.camera,
            None,
            &options,
        )
        .ok()
        .map(|p| (p.rotation, p.translation))
    })
}

/// A Markdown table of the rows with time, error and failure ratios against the row named `reference`.
pub(crate) fn format_table(rows: &[BenchRow], reference: &str) -> String {
    let refrow = rows.iter().find(|r| r.method == reference);
    let mut s = String::from(
        "| method | median µs | p90 µs | median error ° | > 10° | > 20° | no pose | time / ref | error / ref |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let (tr, er) = refrow.map_or((f64::NAN, f64::NAN), |x| {
            (
                r.median_us / x.median_us,
                r.median_err_deg / x.median_err_deg,
            )
        });
        let pct = |k: usize| 100.0 * k as f64 / r.calls.max(1) as f64;
        s += &format!(
            "| {} | {:.0} | {:.0} | {:.4} | {:.1}% | {:.1}% | {} | {:.2} | {:.2} |\n",
            r.method,
            r.median_us,
            r.p90_us,
            r.median_err_deg,
            pct(r.over_10),
            pct(r.over_20),
            r.failures,
            tr,
            er
        );
    }
    s
}

/// The benchmark's cases: name and problem parameters.
pub(crate) fn cases(instances: usize) -> Vec<(&'static str, SyntheticConfig)> {
    let base = SyntheticConfig {
        instances,
        ..Default::default()
    };
    let plane = |off_plane: f64| SyntheticConfig {
        scene: SceneKind::DominantPlane { off_plane },
        outlier_ratio: 0.4,
        ..base.clone()
    };
    vec![
        ("general position, 50% outliers", base.clone()),
        (
            "dominant plane, 5% of inliers off it, 40% outliers",
            plane(0.05),
        ),
        ("dominant plane, 10% off it, 40% outliers", plane(0.10)),
        ("dominant plane, 20% off it, 40% outliers", plane(0.20)),
        (
            "low parallax: baseline 0.05 at 2-10 m, 50% outliers",
            SyntheticConfig {
                baseline: 0.05,
                ..base.clone()
            },
        ),
        (
            "pure rotation, 50% outliers",
            SyntheticConfig {
                baseline: 0.0,
                ..base
            },
        ),
    ]
}

/// Runs every case and prints one table per case.
pub(crate) fn run(instances: usize, passes: usize, python: PathBuf) -> Result<()> {
    let opts = RansacOptions::default();
    let reference = PythonReference {
        python: python.clone(),
        script: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/pose_reference.py"),
    };
    let reference = python.exists().then_some(&reference);
    if reference.is_none() {
        eprintln!(
            "no Python at {} (run scripts/setup.sh): the PoseLib/OpenCV/COLMAP rows are missing",
            python.display()
        );
    }
    for (name, cfg) in cases(instances) {
        let sets = generate_sets(&cfg);
        #[allow(unused_mut)]
        let mut methods: Vec<(String, Method<'_>)> =
            vec![("matcha (ours)".into(), ours(opts.clone()))];
        #[cfg(feature = "kornia-bench")]
        methods.push((
            "kornia-3d ransac_essential_5pt".into(),
            kornia(opts.threshold_px, 0),
        ));
        let (rows, err) =
            run_interleaved(&sets, passes, opts.threshold_px, &mut methods, reference);
        if let Some(e) = err {
            eprintln!("reference rows missing: {e}");
        }
        println!(
            "### {name}\n\n{instances} instances × {passes} alternating passes, N = {}, noise {} px, threshold {} px\n",
            cfg.num_points, cfg.noise_px, opts.threshold_px
        );
        println!("{}", format_table(&rows, "PoseLib (defaults)"));
    }
    Ok(())
}
