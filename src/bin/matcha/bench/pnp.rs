//! `matcha bench pnp`: the absolute-pose (PnP) solver, [`matcha::geometry::estimate_absolute_pose`], against
//! PoseLib `estimate_absolute_pose` (its defaults, 12 px, and with `max_reproj_error` at our threshold) and
//! OpenCV `solvePnPRansac` (P3P or SQPNP flag) + `solvePnPRefineLM`, through `tools/pose_reference.py pnp`,
//! on exactly the same synthetic 3-D ↔ 2-D correspondences.
//!
//! What: the generator of the synthetic cases (general, heavy outliers, few points, far and narrow, planar;
//! 640×480, f = 500, pixel noise σ drawn per instance in 0.5–1 px), the JSON the Python side reads, the
//! alternating passes and the scoring (time per call, rotation error, camera-centre error, no pose, gross
//! failures) with ratios to PoseLib at the same threshold, printed as one Markdown table.
//!
//! What not: no solver code (the library's `geometry::absolute_pose` is what is measured) and no part of
//! the library — benchmark-only generators stay out of `src/geometry/`.
//!
//! Why this shape: the in-process method and the Python references run in alternating whole passes
//! (A B A B …, as `bench pose`) so slow load drift on the shared machine hits both sides; every method is
//! scored by the same Rust code from the poses it returns, so the metrics cannot differ between sides.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use nalgebra::{Matrix3, Rotation3, Vector3};
use serde_json::{json, Value};

use matcha::geometry::metrics::rotation_error_deg;
use matcha::geometry::{estimate_absolute_pose, PinholeCamera, RansacOptions};
use matcha::util::rng::SplitMix64;
use matcha::util::stats::{median, percentile};

/// Inlier threshold of every method, pixels (the VO's PnP threshold).
pub(crate) const THRESHOLD_PX: f64 = 2.0;
/// Image size of the synthetic camera.
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 480.0;
/// Row the ratios are taken against.
const REFERENCE: &str = "PoseLib (2 px)";
/// Gross failure: rotation error above this (degrees) …
const GROSS_ROT_DEG: f64 = 1.0;
/// … or camera-centre error above this share of the instance's median depth.
const GROSS_CENTRE_SHARE: f64 = 0.1;

/// Where the points of a case lie.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Layout {
    /// Pixels anywhere in the image, depth uniform in the case's range.
    Wide,
    /// Pixels in a 120×90 px window around the principal point (a ≈ 14°×10° cone), depth in the range.
    Narrow,
    /// Every point on one plane (normal tilted 0–60° from the optical axis, 3 m along it), depth clipped
    /// to the case's range.
    Plane,
}

/// One benchmark case.
#[derive(Debug, Clone)]
pub(crate) struct PnpCase {
    /// Printed name.
    pub name: &'static str,
    /// Correspondences per instance.
    pub points: usize,
    /// Share of correspondences whose pixel is replaced by a random one in the same region.
    pub outliers: f64,
    /// Depth range in the ground-truth camera, metres.
    pub depth: (f64, f64),
    /// Point layout.
    pub layout: Layout,
}

/// The cases of `matcha bench pnp`.
pub(crate) fn cases() -> Vec<PnpCase> {
    let c = |name, points, outliers, depth, layout| PnpCase {
        name,
        points,
        outliers,
        depth,
        layout,
    };
    vec![
        c(
            "general: 300 points, 1–8 m, 30% outliers",
            300,
            0.3,
            (1.0, 8.0),
            Layout::Wide,
        ),
        c(
            "heavy outliers: 300 points, 70% outliers",
            300,
            0.7,
            (1.0, 8.0),
            Layout::Wide,
        ),
        c(
            "few points: 30 points, 20% outliers",
            30,
            0.2,
            (1.0, 8.0),
            Layout::Wide,
        ),
        c(
            "far/narrow: 300 points, 10–40 m, 14°×10° cone, 30% outliers",
            300,
            0.3,
            (10.0, 40.0),
            Layout::Narrow,
        ),
        c(
            "planar: 300 points on one plane, 30% outliers",
            300,
            0.3,
            (1.0, 8.0),
            Layout::Plane,
        ),
    ]
}

/// One synthetic problem: `pixels[i]` is `world[i]` seen by the camera `x_cam = R·X + t`, plus noise, or
/// a random pixel (an outlier).
#[derive(Debug, Clone)]
pub(crate) struct PnpInstance {
    pub camera: PinholeCamera,
    pub world: Vec<[f64; 3]>,
    pub pixels: Vec<[f64; 2]>,
    /// Which correspondences are clean (read by the generator's test).
    #[cfg_attr(not(test), allow(dead_code))]
    pub is_inlier: Vec<bool>,
    pub r_gt: Matrix3<f64>,
    pub t_gt: Vector3<f64>,
    /// Pixel noise σ of this instance.
    pub noise_px: f64,
    /// Median depth of the inliers in the ground-truth camera, metres.
    pub median_depth: f64,
}

impl PnpInstance {
    fn centre_gt(&self) -> Vector3<f64> {
        -(self.r_gt.transpose() * self.t_gt)
    }
}

/// `instances` problems of `case`, deterministic for `seed`.
pub(crate) fn generate(case: &PnpCase, instances: usize, seed: u64) -> Vec<PnpInstance> {
    let camera = PinholeCamera::new(500.0, 500.0, 319.5, 239.5).expect("valid camera");
    let mut rng = SplitMix64::new(seed);
    (0..instances)
        .map(|_| instance(case, &camera, &mut rng))
        .collect()
}

fn instance(case: &PnpCase, camera: &PinholeCamera, rng: &mut SplitMix64) -> PnpInstance {
    let r = Rotation3::new(rng.unit_vector() * rng.range(0.0, std::f64::consts::PI)).into_inner();
    let centre = Vector3::new(
        rng.range(-5.0, 5.0),
        rng.range(-5.0, 5.0),
        rng.range(-5.0, 5.0),
    );
    let t = -(r * centre);
    let noise = rng.range(0.5, 1.0);
    // the pixel region of the points (and of the outliers' random pixels)
    let (u0, u1, v0, v1) = match case.layout {
        Layout::Narrow => (
            camera.cx - 60.0,
            camera.cx + 60.0,
            camera.cy - 45.0,
            camera.cy + 45.0,
        ),
        _ => (0.0, WIDTH - 1.0, 0.0, HEIGHT - 1.0),
    };
    let plane_normal = {
        let tilt = rng.range(0.0, 60f64.to_radians());
        let az = rng.range(0.0, 2.0 * std::f64::consts::PI);
        Vector3::new(tilt.sin() * az.cos(), tilt.sin() * az.sin(), tilt.cos())
    };
    let n_out = (case.points as f64 * case.outliers).round() as usize;
    let mut pts: Vec<([f64; 3], [f64; 2], bool, f64)> = Vec::with_capacity(case.points);
    while pts.len() < case.points {
        let (u, v) = (rng.range(u0, u1), rng.range(v0, v1));
        let n = camera.normalize([u, v]);
        let ray = Vector3::new(n[0], n[1], 1.0);
        let z = match case.layout {
            Layout::Plane => 3.0 / plane_normal.dot(&ray),
            _ => rng.range(case.depth.0, case.depth.1),
        };
        if !(z >= case.depth.0 && z <= case.depth.1) {
            continue;
        }
        let x = r.transpose() * (ray * z - t);
        let inlier = pts.len() >= n_out;
        let px = if inlier {
            [u + noise * rng.normal(), v + noise * rng.normal()]
        } else {
            [rng.range(u0, u1), rng.range(v0, v1)]
        };
        pts.push(([x.x, x.y, x.z], px, inlier, z));
    }
    rng.shuffle(&mut pts);
    let depths: Vec<f64> = pts.iter().filter(|p| p.2).map(|p| p.3).collect();
    PnpInstance {
        camera: *camera,
        world: pts.iter().map(|p| p.0).collect(),
        pixels: pts.iter().map(|p| p.1).collect(),
        is_inlier: pts.iter().map(|p| p.2).collect(),
        r_gt: r,
        t_gt: t,
        noise_px: noise,
        median_depth: median(&depths),
    }
}

/// Writes `sets` for `tools/pose_reference.py pnp` (cameras, correspondences and the RANSAC settings; no
/// ground truth: the script returns poses and this side scores them).
pub(crate) fn write_sets_json(
    path: &std::path::Path,
    sets: &[PnpInstance],
    opts: &RansacOptions,
) -> std::io::Result<()> {
    let instances: Vec<Value> = sets
        .iter()
        .map(|s| {
            let c = &s.camera;
            json!({
                "camera": {"fx": c.fx, "fy": c.fy, "cx": c.cx, "cy": c.cy, "width": WIDTH, "height": HEIGHT},
                "world": s.world,
                "pixels": s.pixels,
            })
        })
        .collect();
    let v = json!({
        "threshold_px": opts.threshold_px,
        "confidence": opts.confidence,
        "max_iterations": opts.max_iterations,
        "instances": instances,
    });
    std::fs::write(path, serde_json::to_vec(&v).map_err(std::io::Error::other)?)
}

/// A method's answer: `(R, t)` of `x_cam = R·X + t`, or none.
type Pose = Option<(Matrix3<f64>, Vector3<f64>)>;

/// Raw measurements of one method over all passes.
#[derive(Debug, Clone, Default)]
struct Samples {
    method: String,
    times_us: Vec<f64>,
    /// Rotation error, degrees (∞: no pose).
    rot_deg: Vec<f64>,
    /// Camera-centre error, metres (∞: no pose).
    centre_m: Vec<f64>,
    failures: usize,
    gross: usize,
}

impl Samples {
    fn push(&mut self, inst: &PnpInstance, time_us: f64, pose: Pose) {
        self.times_us.push(time_us);
        let Some((r, t)) = pose else {
            self.rot_deg.push(f64::INFINITY);
            self.centre_m.push(f64::INFINITY);
            self.failures += 1;
            self.gross += 1;
            return;
        };
        let dr = rotation_error_deg(&r, &inst.r_gt);
        let dc = (-(r.transpose() * t) - inst.centre_gt()).norm();
        // NaN in a returned pose counts as gross
        let ok = dr <= GROSS_ROT_DEG && dc <= GROSS_CENTRE_SHARE * inst.median_depth;
        self.gross += !ok as usize;
        self.rot_deg
            .push(if dr.is_nan() { f64::INFINITY } else { dr });
        self.centre_m
            .push(if dc.is_nan() { f64::INFINITY } else { dc });
    }

    fn merge_into(list: &mut Vec<Samples>, more: Samples) {
        match list.iter_mut().find(|s| s.method == more.method) {
            Some(s) => {
                s.times_us.extend(more.times_us);
                s.rot_deg.extend(more.rot_deg);
                s.centre_m.extend(more.centre_m);
                s.failures += more.failures;
                s.gross += more.gross;
            }
            None => list.push(more),
        }
    }
}

/// Our estimator, one pass over `sets` (after one untimed warm-up call).
fn ours_pass(sets: &[PnpInstance], opts: &RansacOptions) -> Samples {
    let mut s = Samples {
        method: "matcha (ours)".into(),
        ..Default::default()
    };
    let call = |inst: &PnpInstance| -> Pose {
        estimate_absolute_pose(&inst.world, &inst.pixels, &inst.camera, opts)
            .ok()
            .map(|p| (p.rotation, p.translation))
    };
    if let Some(first) = sets.first() {
        std::hint::black_box(call(first));
    }
    for inst in sets {
        let t0 = Instant::now();
        let pose = call(inst);
        let us = t0.elapsed().as_secs_f64() * 1e6;
        s.push(inst, us, std::hint::black_box(pose));
    }
    s
}

fn parse_pose(v: &Value) -> Pose {
    if v.is_null() {
        return None;
    }
    let r = Matrix3::from_fn(|i, j| v["R"][i][j].as_f64().unwrap_or(f64::NAN));
    let t = Vector3::from_fn(|i, _| v["t"][i].as_f64().unwrap_or(f64::NAN));
    Some((r, t))
}

/// One pass of the Python references (`tools/pose_reference.py pnp`), methods interleaved per instance.
fn python_pass(
    python: &PathBuf,
    sets: &[PnpInstance],
    opts: &RansacOptions,
) -> Result<Vec<Samples>> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/pose_reference.py");
    let dir = std::env::temp_dir().join(format!(
        "matcha_pnp_bench_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir)?;
    let (sets_path, out_path) = (dir.join("sets.json"), dir.join("out.json"));
    let result = (|| -> Result<Vec<Samples>> {
        write_sets_json(&sets_path, sets, opts)?;
        let status = std::process::Command::new(python)
            .arg(&script)
            .arg("pnp")
            .arg(&sets_path)
            .arg(&out_path)
            .status()
            .with_context(|| format!("running {} {}", python.display(), script.display()))?;
        if !status.success() {
            bail!("reference script: exit status {status}");
        }
        let v: Value = serde_json::from_slice(&std::fs::read(&out_path)?)
            .context("reference script output")?;
        let mut out = Vec::new();
        for m in v["samples"].as_array().context("samples")? {
            let mut s = Samples {
                method: m["method"].as_str().context("method")?.to_string(),
                ..Default::default()
            };
            let times = m["times_us"].as_array().context("times_us")?;
            let poses = m["poses"].as_array().context("poses")?;
            if times.len() != sets.len() || poses.len() != sets.len() {
                bail!(
                    "reference script: {} answered {} calls",
                    s.method,
                    times.len()
                );
            }
            for ((inst, t), p) in sets.iter().zip(times).zip(poses) {
                s.push(inst, t.as_f64().context("time")?, parse_pose(p));
            }
            out.push(s);
        }
        Ok(out)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Summary of one method on one case.
struct Row {
    method: String,
    median_us: f64,
    p90_us: f64,
    rot_deg: f64,
    centre_m: f64,
    failures: usize,
    gross: usize,
    calls: usize,
}

impl From<&Samples> for Row {
    fn from(s: &Samples) -> Self {
        Row {
            method: s.method.clone(),
            median_us: percentile(&s.times_us, 0.5),
            p90_us: percentile(&s.times_us, 0.9),
            rot_deg: percentile(&s.rot_deg, 0.5),
            centre_m: percentile(&s.centre_m, 0.5),
            failures: s.failures,
            gross: s.gross,
            calls: s.times_us.len(),
        }
    }
}

fn table_header() -> &'static str {
    "| case | method | median µs | p90 µs | median rot. ° | median centre m | no pose | gross | time / PoseLib | rot. / PoseLib | centre / PoseLib |\n\
     |---|---|---|---|---|---|---|---|---|---|---|"
}

/// Table lines of one case (ratios against [`REFERENCE`]).
fn table_rows(case: &str, rows: &[Row]) -> String {
    let reference = rows.iter().find(|r| r.method == REFERENCE);
    let ratio = |a: f64, f: fn(&Row) -> f64| reference.map_or(f64::NAN, |x| a / f(x));
    let mut s = String::new();
    for r in rows {
        s += &format!(
            "| {case} | {} | {:.0} | {:.0} | {:.4} | {:.4} | {} | {} of {} | {:.2} | {:.2} | {:.2} |\n",
            r.method,
            r.median_us,
            r.p90_us,
            r.rot_deg,
            r.centre_m,
            r.failures,
            r.gross,
            r.calls,
            ratio(r.median_us, |x| x.median_us),
            ratio(r.rot_deg, |x| x.rot_deg),
            ratio(r.centre_m, |x| x.centre_m),
        );
    }
    s
}

/// Runs every case: `passes` alternating passes (ours, then the Python references) over `instances`
/// problems, and prints one table.
pub(crate) fn run(instances: usize, passes: usize, python: PathBuf) -> Result<()> {
    if instances == 0 {
        bail!("--instances must be at least 1");
    }
    let opts = RansacOptions {
        threshold_px: THRESHOLD_PX,
        ..Default::default()
    };
    let have_python = python.exists();
    if !have_python {
        eprintln!(
            "no Python at {} (run scripts/setup.sh): the PoseLib/OpenCV rows are missing",
            python.display()
        );
    }
    let mut table = String::new();
    let mut noise = (f64::INFINITY, 0.0f64);
    for (k, case) in cases().iter().enumerate() {
        let sets = generate(case, instances, 1000 + k as u64);
        for s in &sets {
            noise = (noise.0.min(s.noise_px), noise.1.max(s.noise_px));
        }
        let mut all: Vec<Samples> = Vec::new();
        let mut python_ok = have_python;
        for _ in 0..passes.max(1) {
            Samples::merge_into(&mut all, ours_pass(&sets, &opts));
            if python_ok {
                match python_pass(&python, &sets, &opts) {
                    Ok(v) => v.into_iter().for_each(|s| Samples::merge_into(&mut all, s)),
                    Err(e) => {
                        eprintln!("{}: reference rows missing: {e:#}", case.name);
                        python_ok = false;
                    }
                }
            }
        }
        let rows: Vec<Row> = all.iter().map(Row::from).collect();
        table += &table_rows(case.name, &rows);
        eprintln!("{} done", case.name);
    }
    println!(
        "PnP, {instances} instances × {} alternating passes per case; 640×480, f = 500, pixel noise σ drawn per \
         instance in 0.5–1 px (here {:.2}–{:.2}); threshold {THRESHOLD_PX} px, confidence {}, at most {} iterations \
         (OpenCV: the same; PoseLib: its defaults otherwise); gross = rotation > {GROSS_ROT_DEG}° or centre > {:.0}% \
         of the median depth, no pose included\n",
        passes.max(1),
        noise.0,
        noise.1,
        opts.confidence,
        opts.max_iterations,
        100.0 * GROSS_CENTRE_SHARE
    );
    println!("{}", table_header());
    print!("{table}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_are_consistent() {
        for case in cases() {
            let sets = generate(&case, 3, 7);
            assert_eq!(sets.len(), 3);
            for s in &sets {
                assert_eq!(s.world.len(), case.points);
                let n_in = s.is_inlier.iter().filter(|&&b| b).count();
                let n_out = (case.points as f64 * case.outliers).round() as usize;
                assert_eq!(n_in, case.points - n_out, "{}", case.name);
                for i in (0..s.world.len()).filter(|&i| s.is_inlier[i]) {
                    let x = s.r_gt * Vector3::from(s.world[i]) + s.t_gt;
                    assert!(x.z >= case.depth.0 - 1e-9 && x.z <= case.depth.1 + 1e-9);
                    let p = s.camera.project([x.x, x.y, x.z]).unwrap();
                    let d =
                        ((p[0] - s.pixels[i][0]).powi(2) + (p[1] - s.pixels[i][1]).powi(2)).sqrt();
                    assert!(d < 8.0 * s.noise_px, "{}: {d} px", case.name);
                }
                assert!(s.median_depth >= case.depth.0 && s.median_depth <= case.depth.1);
            }
            // deterministic for a seed
            assert_eq!(generate(&case, 3, 7)[2].pixels, sets[2].pixels);
        }
    }
}
