//! Synthetic relative-pose problems and a timing/accuracy benchmark of the estimator.
//!
//! The problem sets follow the project's reference protocol: a 640×480 pinhole camera with f = 525 px,
//! points 2–10 m deep, a rotation of 5–20° about a random axis, a unit baseline in a random direction,
//! N correspondences of which a fraction are uniform outliers, Gaussian pixel noise on the inliers, and a
//! 1 px threshold. Beside points in general position ([`SceneKind::General`]) the sets model what indoor
//! views look like: one plane carrying most points with a few in front of it
//! ([`SceneKind::DominantPlane`]), small baselines (low parallax) and pure rotations (`baseline` 0). Everything is generated from a seed with a fixed generator, so the same seed gives the
//! same sets on every machine and in every language that reads them back ([`write_sets_json`]).
//!
//! [`run_benchmark`] times [`estimate_relative_pose`] and any number of other methods given as closures on
//! the same sets, and returns one [`BenchRow`] per method (median/p90 time, median pose error, failures);
//! [`format_table`] prints them side by side with ratios against a reference method. External methods
//! (PoseLib, OpenCV via `tools/pose_reference.py`) can be merged in as rows measured elsewhere.
//!
//! This module measures; it does not decide what is fast enough.

use std::time::Instant;

use nalgebra::{Matrix3, Rotation3, Unit, Vector3};

use super::camera::PinholeCamera;
use super::metrics::pose_error_max_deg;
use super::relative_pose::estimate_relative_pose;
use super::RansacOptions;

/// Parameters of the synthetic problem sets.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SyntheticConfig {
    /// Image width, pixels.
    pub width: f64,
    /// Image height, pixels.
    pub height: f64,
    /// Focal length, pixels.
    pub focal: f64,
    /// Depth range of the points, metres.
    pub depth: (f64, f64),
    /// Rotation angle range, degrees.
    pub rotation_deg: (f64, f64),
    /// Baseline length (monocular scale: any positive value).
    pub baseline: f64,
    /// Correspondences per instance.
    pub num_points: usize,
    /// Fraction of outliers.
    pub outlier_ratio: f64,
    /// Standard deviation of the pixel noise on inliers (both images).
    pub noise_px: f64,
    /// Number of instances.
    pub instances: usize,
    /// Seed.
    pub seed: u64,
    /// Where the inlier points lie.
    pub scene: SceneKind,
}

/// Where the inlier points of a synthetic instance lie.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum SceneKind {
    /// Uniform in the image at depths in [`SyntheticConfig::depth`].
    General,
    /// On one plane (2–5 m from camera a, its normal within 60° of the optical axis), except a fraction
    /// `off_plane` of the inliers, which lie in front of the plane (at 40–90% of the plane's depth along their
    /// ray): a wall with objects before it.
    DominantPlane {
        /// Fraction of the inliers off the plane.
        off_plane: f64,
    },
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            width: 640.0,
            height: 480.0,
            focal: 525.0,
            depth: (2.0, 10.0),
            rotation_deg: (5.0, 20.0),
            baseline: 1.0,
            num_points: 2000,
            outlier_ratio: 0.5,
            noise_px: 0.5,
            instances: 20,
            seed: 2025,
            scene: SceneKind::General,
        }
    }
}

/// One synthetic problem: correspondences and the ground truth `x_b = R·x_a + t` (unit `t`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SyntheticInstance {
    /// Camera of both views.
    pub camera: PinholeCamera,
    /// Pixels in image a.
    pub points_a: Vec<[f64; 2]>,
    /// Pixels in image b.
    pub points_b: Vec<[f64; 2]>,
    /// Which correspondences are true (before noise).
    pub is_inlier: Vec<bool>,
    /// Ground-truth rotation (row-major).
    pub r_gt: [[f64; 3]; 3],
    /// Ground-truth unit translation.
    pub t_gt: [f64; 3],
}

impl SyntheticInstance {
    /// Ground truth as nalgebra types.
    pub fn ground_truth(&self) -> (Matrix3<f64>, Vector3<f64>) {
        let r = Matrix3::from_fn(|i, j| self.r_gt[i][j]);
        (r, Vector3::from(self.t_gt))
    }
}

/// The synthetic sets' generator (the crate's one seeded generator).
pub use crate::util::rng::SplitMix64 as Rng;

/// Generates the synthetic sets of `cfg` (deterministic).
pub fn generate_sets(cfg: &SyntheticConfig) -> Vec<SyntheticInstance> {
    let mut rng = Rng::new(cfg.seed);
    let camera = PinholeCamera {
        fx: cfg.focal,
        fy: cfg.focal,
        cx: cfg.width / 2.0,
        cy: cfg.height / 2.0,
        distortion: super::camera::Distortion::none(),
    };
    let inside = |p: [f64; 2]| {
        p[0] >= 0.0 && p[0] <= cfg.width - 1.0 && p[1] >= 0.0 && p[1] <= cfg.height - 1.0
    };
    (0..cfg.instances)
        .map(|_| {
            let axis = Unit::new_normalize(rng.unit_vector());
            let angle = rng
                .range(cfg.rotation_deg.0, cfg.rotation_deg.1)
                .to_radians();
            let r = Rotation3::from_axis_angle(&axis, angle).into_inner();
            // Mostly sideways/forward motion, random direction.
            let t = rng.unit_vector() * cfg.baseline;
            let plane = match cfg.scene {
                SceneKind::General => None,
                SceneKind::DominantPlane { off_plane } => {
                    let n = loop {
                        let v = rng.unit_vector();
                        if v.z > 0.5 {
                            break v;
                        }
                    };
                    Some((n, rng.range(2.0, 5.0), off_plane))
                }
            };
            let n_out = (cfg.num_points as f64 * cfg.outlier_ratio).round() as usize;
            let n_in = cfg.num_points - n_out;
            let mut pa = Vec::with_capacity(cfg.num_points);
            let mut pb = Vec::with_capacity(cfg.num_points);
            let mut is_in = Vec::with_capacity(cfg.num_points);
            let mut tries = 0usize;
            while pa.len() < n_in && tries < 1_000_000 {
                tries += 1;
                let u = [
                    rng.range(0.0, cfg.width - 1.0),
                    rng.range(0.0, cfg.height - 1.0),
                ];
                let xa = camera.normalize(u);
                let z = match plane {
                    None => rng.range(cfg.depth.0, cfg.depth.1),
                    Some((n, d, off)) => {
                        let cos = n.dot(&Vector3::new(xa[0], xa[1], 1.0));
                        if cos.is_nan() || cos <= 0.05 {
                            continue;
                        }
                        let on_plane = d / cos;
                        if rng.uniform() < off {
                            on_plane * rng.range(0.4, 0.9)
                        } else {
                            on_plane
                        }
                    }
                };
                let pa3 = Vector3::new(xa[0] * z, xa[1] * z, z);
                let pb3 = r * pa3 + t;
                let Some(v) = camera.project([pb3.x, pb3.y, pb3.z]) else {
                    continue;
                };
                if !inside(v) {
                    continue;
                }
                let na = [
                    u[0] + cfg.noise_px * rng.normal(),
                    u[1] + cfg.noise_px * rng.normal(),
                ];
                let nb = [
                    v[0] + cfg.noise_px * rng.normal(),
                    v[1] + cfg.noise_px * rng.normal(),
                ];
                pa.push(na);
                pb.push(nb);
                is_in.push(true);
            }
            for _ in 0..n_out {
                pa.push([
                    rng.range(0.0, cfg.width - 1.0),
                    rng.range(0.0, cfg.height - 1.0),
                ]);
                pb.push([
                    rng.range(0.0, cfg.width - 1.0),
                    rng.range(0.0, cfg.height - 1.0),
                ]);
                is_in.push(false);
            }
            // Shuffle so that inliers and outliers are interleaved.
            for i in (1..pa.len()).rev() {
                let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                pa.swap(i, j);
                pb.swap(i, j);
                is_in.swap(i, j);
            }
            // a pure rotation (baseline 0) has no translation direction: t_gt = 0
            let tn = if t.norm() > 0.0 { t.normalize() } else { t };
            SyntheticInstance {
                camera,
                points_a: pa,
                points_b: pb,
                is_inlier: is_in,
                r_gt: std::array::from_fn(|i| std::array::from_fn(|j| r[(i, j)])),
                t_gt: [tn.x, tn.y, tn.z],
            }
        })
        .collect()
}

/// Writes the sets as JSON (`{"threshold_px", "instances": [...]}`) for `tools/pose_reference.py`.
pub fn write_sets_json(
    path: &std::path::Path,
    sets: &[SyntheticInstance],
    threshold_px: f64,
    repetitions: usize,
) -> std::io::Result<()> {
    let v = serde_json::json!({
        "threshold_px": threshold_px,
        "repetitions": repetitions,
        "instances": sets,
    });
    std::fs::write(path, serde_json::to_vec(&v).map_err(std::io::Error::other)?)
}

/// Timing and accuracy of one method over all instances and repetitions.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BenchRow {
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
    /// Calls timed.
    pub calls: usize,
}

/// A method under test: returns `(R, t)` of `x_b = R·x_a + t` (`t = None`: a rotation without
/// translation) or `None` (no pose).
pub type Method<'a> =
    Box<dyn FnMut(&SyntheticInstance) -> Option<(Matrix3<f64>, Option<Vector3<f64>>)> + 'a>;

pub use crate::util::stats::percentile;

/// Times each method on every instance `repetitions` times, interleaved (instance-major, then method) so
/// that machine-load drift affects all methods alike.
pub fn run_benchmark(
    sets: &[SyntheticInstance],
    repetitions: usize,
    methods: &mut [(String, Method<'_>)],
) -> Vec<BenchRow> {
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); methods.len()];
    let mut errs: Vec<Vec<f64>> = vec![Vec::new(); methods.len()];
    let mut fails = vec![0usize; methods.len()];
    for inst in sets {
        let (rg, tg) = inst.ground_truth();
        for _ in 0..repetitions {
            for (m, (_, f)) in methods.iter_mut().enumerate() {
                let t0 = Instant::now();
                let out = f(inst);
                times[m].push(t0.elapsed().as_secs_f64() * 1e6);
                match out {
                    Some((r, t)) => errs[m].push(pose_error_max_deg(&r, t.as_ref(), &rg, &tg)),
                    None => {
                        fails[m] += 1;
                        errs[m].push(f64::INFINITY);
                    }
                }
            }
        }
    }
    methods
        .iter()
        .enumerate()
        .map(|(m, (name, _))| BenchRow {
            method: name.clone(),
            median_us: percentile(&times[m], 0.5),
            p90_us: percentile(&times[m], 0.9),
            median_err_deg: percentile(&errs[m], 0.5),
            failures: fails[m],
            calls: times[m].len(),
        })
        .collect()
}

/// Raw measurements of one method, accumulated over passes (see [`run_interleaved`]).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Samples {
    /// Method name.
    pub method: String,
    /// Wall time per call, microseconds.
    pub times_us: Vec<f64>,
    /// Pose error per call (max of rotation and translation-direction error), degrees; ∞ = failure.
    pub errs_deg: Vec<f64>,
}

impl Samples {
    /// Summary row (median/p90 time, median error, failures).
    pub fn row(&self) -> BenchRow {
        BenchRow {
            method: self.method.clone(),
            median_us: percentile(&self.times_us, 0.5),
            p90_us: percentile(&self.times_us, 0.9),
            median_err_deg: percentile(&self.errs_deg, 0.5),
            failures: self.errs_deg.iter().filter(|e| !e.is_finite()).count(),
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
pub enum BenchError {
    /// Writing the sets or reading the reference's output failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The reference script failed or wrote something unreadable.
    #[error("reference script: {0}")]
    Reference(String),
}

/// An external reference: `tools/pose_reference.py bench` run by `python` (PoseLib, OpenCV).
#[derive(Debug, Clone)]
pub struct PythonReference {
    /// A Python with poselib and opencv.
    pub python: std::path::PathBuf,
    /// Path of `tools/pose_reference.py`.
    pub script: std::path::PathBuf,
}

impl PythonReference {
    /// One pass of every reference method over `sets` (one call per instance, interleaved per instance
    /// inside the script).
    pub fn pass(
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
pub fn run_pass(sets: &[SyntheticInstance], methods: &mut [(String, Method<'_>)]) -> Vec<Samples> {
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
pub fn run_interleaved(
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
pub fn kornia(threshold_px: f64, seed: u64) -> Method<'static> {
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
        super::essential::pose_from_essential(&e, &pts).map(|(r, t, _)| (r, Some(t)))
    })
}

/// Our estimator as a benchmark method.
pub fn ours(options: RansacOptions) -> Method<'static> {
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

/// A Markdown table of the rows with time and error ratios against the row named `reference` (if present).
pub fn format_table(rows: &[BenchRow], reference: &str) -> String {
    let refrow = rows.iter().find(|r| r.method == reference);
    let mut s = String::from(
        "| method | median µs | p90 µs | median error ° | failures | time / ref | error / ref |\n|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let (tr, er) = match refrow {
            Some(b) => (
                format!("{:.2}", r.median_us / b.median_us),
                format!("{:.2}", r.median_err_deg / b.median_err_deg),
            ),
            None => ("–".into(), "–".into()),
        };
        s += &format!(
            "| {} | {:.0} | {:.0} | {:.4} | {}/{} | {} | {} |\n",
            r.method, r.median_us, r.p90_us, r.median_err_deg, r.failures, r.calls, tr, er
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_are_deterministic_and_consistent() {
        let cfg = SyntheticConfig {
            num_points: 200,
            instances: 3,
            noise_px: 0.0,
            ..Default::default()
        };
        let a = generate_sets(&cfg);
        let b = generate_sets(&cfg);
        assert_eq!(a[2].points_b, b[2].points_b);
        let plane = generate_sets(&SyntheticConfig {
            scene: SceneKind::DominantPlane { off_plane: 0.1 },
            ..cfg.clone()
        });
        for inst in a.iter().chain(&plane) {
            assert_eq!(inst.points_a.len(), 200);
            assert_eq!(inst.is_inlier.iter().filter(|&&x| x).count(), 100);
            let (r, t) = inst.ground_truth();
            let e = super::super::essential::essential_from_pose(&r, &t);
            for i in (0..200).filter(|&i| inst.is_inlier[i]) {
                let xa = inst.camera.normalize(inst.points_a[i]);
                let xb = inst.camera.normalize(inst.points_b[i]);
                let res =
                    Vector3::new(xb[0], xb[1], 1.0).dot(&(e * Vector3::new(xa[0], xa[1], 1.0)));
                assert!(res.abs() < 1e-12);
            }
        }
        // the dominant plane: ~90% of the inliers fit one homography exactly
        for inst in &plane {
            let inl: Vec<usize> = (0..200).filter(|&i| inst.is_inlier[i]).collect();
            let a: Vec<[f64; 2]> = inl.iter().map(|&i| inst.points_a[i]).collect();
            let b: Vec<[f64; 2]> = inl.iter().map(|&i| inst.points_b[i]).collect();
            let h = crate::geometry::estimate_homography(
                &a,
                &b,
                &inst.camera,
                &inst.camera,
                None,
                &RansacOptions::default(),
            )
            .unwrap();
            let frac = h.num_inliers as f64 / inl.len() as f64;
            assert!(frac > 0.8 && frac < 0.97, "{frac}");
        }
        // a pure rotation: t_gt = 0
        let rot = generate_sets(&SyntheticConfig {
            baseline: 0.0,
            ..cfg
        });
        assert!(rot.iter().all(|i| i.t_gt == [0.0; 3]));
    }
}
