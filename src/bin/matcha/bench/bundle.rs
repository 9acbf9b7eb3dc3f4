//! `matcha bench bundle`: the windowed bundle adjustment, [`matcha::vo::bundle::Bundle::adjust`]
//! (hand-written Levenberg–Marquardt, Schur complement on the points, Cauchy loss by reweighting), against
//! tiny-solver's `LevenbergMarquardtOptimizer` (sparse Cholesky on the full normal equations, Jacobians by
//! dual numbers, Ceres' robust-loss correction), the anchor row (cargo feature `solver-bench`; without it
//! only the hand-written rows are printed).
//!
//! Why: the issue asks whether a kept optimiser crate should replace the hand-written solver; this prints
//! both on the same windows in one run, so the choice rests on ratios taken under the same load.
//!
//! Problems: monocular windows like the VO makes: 6 keyframes walking 1.6 m (0.3 m sideways, 0.1 m forward
//! and 1.7° of yaw per keyframe) past 1500 points at 2–8 m depth, pinhole 640×480 with f = 500, each point
//! seen by 2–6 consecutive keyframes, 0.5 px Gaussian noise per axis and 5% gross outliers (uniform ±30 px
//! per axis). The two oldest poses are fixed at the truth (the gauge, scale included); the others start
//! 0.03 rad and 3 cm off, the points 5% of their depth off. Drawn from `--seed` by `util::rng::SplitMix64`.
//! Scores: point errors are given as the median and as the mean over the points with no outlier, because a
//! point seen twice with one outlier has no right answer and runs off (to ∞ and beyond) in both solvers.
//!
//! Fairness: the same start and observations; Cauchy at 1 px (the same cost Σ c²·ln(1 + r²/c²)); the same
//! cap on linearisations (tiny-solver spends one on a rejected step, the hand-written solver retries up to
//! 8 dampings inside one) and the same stop (relative cost decrease under 1e-6); one thread each by
//! default (tiny-solver in a rayon pool of `--threads`); the order alternates per problem. tiny-solver's
//! time includes building its problem and reading the result back, as the VO would have to. Its poses are
//! 6 parameters (rotation vector and translation of `camera_from_world`, updated additively): with its SE3
//! manifold, `fix_variable` would leave a fixed pose's columns in the system and the gauge free.

use std::time::Instant;

use anyhow::{bail, Result};
use nalgebra::{Isometry3, Point3, Translation3, UnitQuaternion, Vector3};

use matcha::geometry::PinholeCamera;
use matcha::util::rng::SplitMix64;
use matcha::util::stats::{median, percentile};
use matcha::vo::bundle::{Bundle, Observation};

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 480.0;
const KEYFRAMES: usize = 6;
const POINTS: usize = 1500;
/// The oldest poses held fixed.
const FIXED: usize = 2;
/// Cauchy scale, pixels (both solvers).
const LOSS_PX: f64 = 1.0;
const NOISE_PX: f64 = 0.5;
const OUTLIER_SHARE: f64 = 0.05;
const OUTLIER_PX: f64 = 30.0;

/// One window: the starting estimate both solvers get, and the truth it is scored against.
struct Window {
    camera: PinholeCamera,
    poses: Vec<Isometry3<f64>>,
    points: Vec<Vector3<f64>>,
    observations: Vec<Observation>,
    /// Per observation: not a gross outlier.
    inlier: Vec<bool>,
    truth_poses: Vec<Isometry3<f64>>,
    truth_points: Vec<Vector3<f64>>,
}

impl Window {
    fn generate(seed: u64) -> Result<Self> {
        let mut rng = SplitMix64::new(seed);
        let camera = PinholeCamera::new(500.0, 500.0, 319.5, 239.5)?;
        let truth_poses: Vec<Isometry3<f64>> = (0..KEYFRAMES)
            .map(|k| {
                let k = k as f64;
                Isometry3::from_parts(
                    Translation3::new(0.3 * k, 0.02 * k, 0.1 * k),
                    UnitQuaternion::from_scaled_axis(Vector3::y() * (-0.03 * k)),
                )
                .inverse()
            })
            .collect();
        let (mut truth_points, mut points) = (Vec::new(), Vec::new());
        let (mut observations, mut inlier) = (Vec::new(), Vec::new());
        for attempt in 0.. {
            if truth_points.len() == POINTS {
                break;
            } else if attempt > 100 * POINTS {
                bail!("could not place {POINTS} points seen twice");
            }
            // a pixel and depth in one keyframe, then a run of 2–6 consecutive keyframes around it
            let anchor = rng.below(KEYFRAMES);
            let n = camera.normalize([rng.range(0.0, WIDTH), rng.range(0.0, HEIGHT)]);
            let depth = rng.range(2.0, 8.0);
            let x = Point3::new(n[0] * depth, n[1] * depth, depth);
            let world = truth_poses[anchor].inverse_transform_point(&x).coords;
            let span = 2 + rng.below(5);
            let first = anchor.saturating_sub(rng.below(span)).min(KEYFRAMES - span);
            let seen: Vec<(usize, [f64; 2])> = (first..first + span)
                .filter_map(|k| {
                    let c = truth_poses[k].transform_point(&Point3::from(world));
                    let p = camera.project([c.x, c.y, c.z])?;
                    (p[0] >= 0.0 && p[0] < WIDTH && p[1] >= 0.0 && p[1] < HEIGHT).then_some((k, p))
                })
                .collect();
            if seen.len() < 2 {
                continue;
            }
            let point = truth_points.len();
            for (k, p) in seen {
                let outlier = rng.uniform() < OUTLIER_SHARE;
                let mut d = || match outlier {
                    true => rng.range(-OUTLIER_PX, OUTLIER_PX),
                    false => NOISE_PX * rng.normal(),
                };
                let pixel = [p[0] + d(), p[1] + d()];
                observations.push(Observation {
                    pose: k,
                    point,
                    pixel,
                });
                inlier.push(!outlier);
            }
            truth_points.push(world);
            points.push(world + rng.unit_vector() * (0.05 * depth));
        }
        let mut poses = truth_poses.clone();
        for p in &mut poses[FIXED..] {
            *p = Isometry3::new(rng.unit_vector() * 0.03, rng.unit_vector() * 0.03) * *p;
        }
        Ok(Self {
            camera,
            poses,
            points,
            observations,
            inlier,
            truth_poses,
            truth_points,
        })
    }

    /// Scores an estimate against the truth.
    fn score(&self, poses: &[Isometry3<f64>], points: &[Vector3<f64>]) -> Score {
        let c2 = LOSS_PX * LOSS_PX;
        let (mut behind, mut cost) = (0usize, 0.0);
        // [all inliers, inliers of outlier-free points]: squared residual sum, count
        let mut sq = [(0.0, 0usize); 2];
        // points with an outlier among their observations (two-view ones are not recoverable)
        let mut tainted = vec![false; points.len()];
        for (o, &inlier) in self.observations.iter().zip(&self.inlier) {
            tainted[o.point] |= !inlier;
        }
        for (o, &inlier) in self.observations.iter().zip(&self.inlier) {
            let c = poses[o.pose].transform_point(&Point3::from(points[o.point]));
            let s = self
                .camera
                .project([c.x, c.y, c.z])
                .map(|p| (p[0] - o.pixel[0]).powi(2) + (p[1] - o.pixel[1]).powi(2));
            // behind the camera: costs as in `Bundle` (a residual of 10 c), counted apart from the RMS
            cost += c2 * (s.unwrap_or(100.0 * c2) / c2).ln_1p();
            match s {
                Some(s) if inlier => {
                    for acc in sq.iter_mut().take(1 + !tainted[o.point] as usize) {
                        *acc = (acc.0 + s, acc.1 + 1);
                    }
                }
                Some(_) => {}
                None => behind += 1,
            }
        }
        let centre = |p: &Isometry3<f64>| p.inverse().translation.vector;
        let free: Vec<f64> = (FIXED..poses.len())
            .map(|k| (centre(&poses[k]) - centre(&self.truth_poses[k])).norm())
            .collect();
        let pairs = points.iter().zip(&self.truth_points);
        let errors: Vec<f64> = pairs.map(|(a, b)| (a - b).norm()).collect();
        let clean: Vec<f64> = (errors.iter().zip(&tainted))
            .filter_map(|(e, t)| (!t).then_some(*e))
            .collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        Score {
            rms_px: sq.map(|(s, n)| (s / n.max(1) as f64).sqrt()),
            centre_mm: 1e3 * mean(&free),
            point_median_mm: 1e3 * median(&errors),
            point_clean_mm: 1e3 * mean(&clean),
            far_points: errors.iter().filter(|&&e| e > 1.0 || e.is_nan()).count() as f64,
            behind: behind as f64,
            cost,
        }
    }
}

/// The figures of one estimate of one window: RMS of the 2-D reprojection error of the inlier observations
/// in front of their camera, all and those of outlier-free points (px), mean camera-centre error of the free poses (mm), median point error (mm), mean
/// error of the points whose observations are all inliers (mm), points more than 1 m off, observations
/// behind their camera, robust (Cauchy) cost (px²).
struct Score {
    rms_px: [f64; 2],
    centre_mm: f64,
    point_median_mm: f64,
    point_clean_mm: f64,
    far_points: f64,
    behind: f64,
    cost: f64,
}

/// What a solver returned: poses, points, linearisations, wall time (ms).
struct Outcome {
    poses: Vec<Isometry3<f64>>,
    points: Vec<Vector3<f64>>,
    iterations: usize,
    ms: f64,
}

fn hand_written(w: &Window, cap: usize) -> Outcome {
    let mut bundle = Bundle {
        camera: w.camera,
        poses: w.poses.clone(),
        fixed: (0..w.poses.len()).map(|k| k < FIXED).collect(),
        points: w.points.clone(),
        observations: w.observations.clone(),
    };
    let t = Instant::now();
    let report = bundle.adjust(LOSS_PX, cap);
    let ms = t.elapsed().as_secs_f64() * 1e3;
    Outcome {
        poses: bundle.poses,
        points: bundle.points,
        iterations: report.iterations,
        ms,
    }
}

/// tiny-solver on the window; `None` when its optimiser gives up (NaN cost).
#[cfg(feature = "solver-bench")]
mod anchor {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    use tiny_solver::factors::Factor;
    use tiny_solver::loss_functions::CauchyLoss;
    use tiny_solver::{na, LevenbergMarquardtOptimizer, Optimizer, OptimizerOptions};

    use super::{Outcome, Window, FIXED, LOSS_PX};

    /// Reprojection residual (projection − observation, px) of point `[x, y, z]` through pose
    /// `[ω, t]` (`x_c = exp([ω]×)·x_w + t`).
    struct Reprojection {
        pixel: [f64; 2],
        /// fx, fy, cx, cy.
        k: [f64; 4],
        /// Counts linearisations (dual-number evaluations); set on one residual block only.
        counter: Option<Arc<AtomicUsize>>,
    }

    impl<T: na::RealField> Factor<T> for Reprojection {
        fn residual_func(&self, params: &[na::DVector<T>]) -> na::DVector<T> {
            if let Some(c) = &self.counter {
                if std::any::TypeId::of::<T>() != std::any::TypeId::of::<f64>() {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
            let f = |v: f64| na::convert::<f64, T>(v);
            let (pose, x) = (&params[0], &params[1]);
            let w = na::Vector3::new(pose[0].clone(), pose[1].clone(), pose[2].clone());
            let t = na::Vector3::new(pose[3].clone(), pose[4].clone(), pose[5].clone());
            let p = na::Vector3::new(x[0].clone(), x[1].clone(), x[2].clone());
            // Rodrigues, R·p = p + a·ω×p + b·ω×(ω×p), with the series near 0 (finite dual parts at ω = 0)
            let theta2 = w.norm_squared();
            let (a, b) = if theta2 < f(1e-8) {
                (
                    T::one() - theta2.clone() / f(6.0),
                    f(0.5) - theta2 / f(24.0),
                )
            } else {
                let theta = theta2.clone().sqrt();
                (
                    theta.clone().sin() / theta.clone(),
                    (T::one() - theta.cos()) / theta2,
                )
            };
            let wp = w.cross(&p);
            let c = p + wp.clone() * a + w.cross(&wp) * b + t;
            let [fx, fy, cx, cy] = self.k;
            // (`na::dvector!` would name the crate's own nalgebra, a different version)
            na::DVector::from_vec(vec![
                f(fx) * c.x.clone() / c.z.clone() + f(cx - self.pixel[0]),
                f(fy) * c.y.clone() / c.z.clone() + f(cy - self.pixel[1]),
            ])
        }
    }

    pub(super) fn solve(w: &Window, cap: usize) -> Option<Outcome> {
        use nalgebra::{Isometry3, Vector3};
        let t0 = Instant::now();
        let pose_names: Vec<String> = (0..w.poses.len()).map(|i| format!("x{i}")).collect();
        let point_names: Vec<String> = (0..w.points.len()).map(|j| format!("p{j}")).collect();
        let counter = Arc::new(AtomicUsize::new(0));
        let c = &w.camera;
        let mut problem = tiny_solver::Problem::new();
        for (i, o) in w.observations.iter().enumerate() {
            let factor = Reprojection {
                pixel: o.pixel,
                k: [c.fx, c.fy, c.cx, c.cy],
                counter: (i == 0).then(|| counter.clone()),
            };
            problem.add_residual_block(
                2,
                &[&pose_names[o.pose], &point_names[o.point]],
                Box::new(factor),
                Some(Box::new(CauchyLoss::new(LOSS_PX))),
            );
        }
        for name in pose_names.iter().take(FIXED) {
            (0..6).for_each(|k| problem.fix_variable(name, k));
        }
        let mut initial = HashMap::new();
        for (name, p) in pose_names.iter().zip(&w.poses) {
            let (r, t) = (p.rotation.scaled_axis(), p.translation.vector);
            let v = vec![r.x, r.y, r.z, t.x, t.y, t.z];
            initial.insert(name.clone(), na::DVector::from_vec(v));
        }
        for (name, x) in point_names.iter().zip(&w.points) {
            initial.insert(name.clone(), na::DVector::from_vec(vec![x.x, x.y, x.z]));
        }
        let options = OptimizerOptions {
            max_iteration: cap,
            min_rel_error_decrease_threshold: 1e-6,
            min_abs_error_decrease_threshold: 0.0,
            ..Default::default()
        };
        let result =
            LevenbergMarquardtOptimizer::default().optimize(&problem, &initial, Some(options))?;
        let get = |name: &String, n: usize| result.get(name).filter(|v| v.len() == n);
        let v3 = |v: &na::DVector<f64>, i: usize| Vector3::new(v[i], v[i + 1], v[i + 2]);
        let poses = (pose_names.iter())
            .map(|name| get(name, 6).map(|v| Isometry3::new(v3(v, 3), v3(v, 0))))
            .collect::<Option<Vec<_>>>()?;
        let points = (point_names.iter())
            .map(|name| get(name, 3).map(|v| v3(v, 0)))
            .collect::<Option<Vec<_>>>()?;
        Some(Outcome {
            poses,
            points,
            iterations: counter.load(Ordering::Relaxed),
            ms: t0.elapsed().as_secs_f64() * 1e3,
        })
    }
}

/// One solver at one cap, over all problems.
#[derive(Default)]
struct Row {
    times: Vec<f64>,
    scores: Vec<Score>,
    iterations: Vec<f64>,
    failures: usize,
}

impl Row {
    fn add(&mut self, w: &Window, o: Option<Outcome>) {
        match o {
            Some(o) => {
                self.times.push(o.ms);
                self.scores.push(w.score(&o.poses, &o.points));
                self.iterations.push(o.iterations as f64);
            }
            None => self.failures += 1,
        }
    }
    /// Mean over the problems of one figure.
    fn mean(&self, f: impl Fn(&Score) -> f64) -> f64 {
        self.scores.iter().map(f).sum::<f64>() / self.scores.len() as f64
    }
    /// Accuracy cells: RMS, centre, point median / clean mean, far points, behind, robust cost.
    fn accuracy(&self) -> String {
        format!(
            "{:.3} / {:.3} | {:.2} | {:.1} / {:.1} | {:.1} | {:.1} | {:.1}",
            self.mean(|s| s.rms_px[0]),
            self.mean(|s| s.rms_px[1]),
            self.mean(|s| s.centre_mm),
            self.mean(|s| s.point_median_mm),
            self.mean(|s| s.point_clean_mm),
            self.mean(|s| s.far_points),
            self.mean(|s| s.behind),
            self.mean(|s| s.cost)
        )
    }
    fn print(&self, name: &str, cap: usize, anchor: Option<&Row>) {
        let ratio = anchor.map_or("–".into(), |a| {
            format!("{:.3}", median(&self.times) / median(&a.times))
        });
        println!(
            "| {name} | {cap} | {:.1} | {:.1} | {} | {:.1} | {ratio} |",
            median(&self.times),
            percentile(&self.times, 1.0),
            self.accuracy(),
            median(&self.iterations),
        );
        if self.failures > 0 {
            println!(
                "({name}, cap {cap}: no result on {} problems)",
                self.failures
            );
        }
    }
}

pub(crate) fn run(problems: usize, seed: u64, caps: &[usize], threads: usize) -> Result<()> {
    if problems == 0 || caps.is_empty() {
        bail!("--problems and --caps must not be empty");
    }
    let windows = (0..problems as u64)
        .map(|i| Window::generate(seed.wrapping_add(i)))
        .collect::<Result<Vec<_>>>()?;
    #[cfg(feature = "solver-bench")]
    let anchor = {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .build()?;
        move |w: &Window, cap: usize| pool.install(|| anchor::solve(w, cap))
    };
    #[cfg(not(feature = "solver-bench"))]
    let anchor = |_: &Window, _: usize| -> Option<Outcome> { None };
    // warm-up (untimed): first touches of the allocator and caches
    hand_written(&windows[0], 2);
    let with_anchor = anchor(&windows[0], 2).is_some();

    let mut start = Row::default();
    for w in &windows {
        start.scores.push(w.score(&w.poses, &w.points));
    }
    let obs: usize = windows.iter().map(|w| w.observations.len()).sum();
    println!(
        "Windowed bundle adjustment, {problems} problems (seed {seed}): {KEYFRAMES} keyframes ({FIXED} fixed), \
         {POINTS} points, {:.0} observations per problem, {NOISE_PX} px noise, {:.0}% outliers (±{OUTLIER_PX} px), \
         Cauchy {LOSS_PX} px; tiny-solver in a rayon pool of {} thread(s), the hand-written solver sequential\n",
        obs as f64 / problems as f64,
        100.0 * OUTLIER_SHARE,
        threads.max(1)
    );
    println!(
        "| solver | iteration cap | median ms | max ms | inlier RMS px (all / outlier-free points) | centre error mm | point error mm \
         (median / mean of outlier-free points) | points > 1 m off | observations behind camera | robust cost px² | \
         iterations (median) | time / tiny-solver |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    println!("| start | – | – | – | {} | – | – |", start.accuracy());
    for &cap in caps {
        let (mut ours, mut theirs) = (Row::default(), Row::default());
        for (i, w) in windows.iter().enumerate() {
            // alternate which runs first, so load drift and cache state hit both alike
            for first in [i % 2 == 0, i % 2 == 1] {
                if first {
                    ours.add(w, Some(hand_written(w, cap)));
                } else if with_anchor {
                    theirs.add(w, anchor(w, cap));
                }
            }
        }
        let anchor_row = with_anchor.then_some(&theirs);
        ours.print("hand-written (Schur LM)", cap, anchor_row);
        if with_anchor {
            theirs.print("tiny-solver 0.18 LM", cap, Some(&theirs));
        }
    }
    if !with_anchor {
        if cfg!(feature = "solver-bench") {
            println!("\ntiny-solver failed on the warm-up problem: its rows are missing");
        } else {
            println!("\ntiny-solver rows: build with `--features solver-bench`");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_as_described_and_deterministic() {
        let w = Window::generate(3).unwrap();
        assert_eq!(w.points.len(), POINTS);
        let mut seen = vec![0usize; POINTS];
        w.observations.iter().for_each(|o| seen[o.point] += 1);
        assert!(seen.iter().all(|n| (2..=6).contains(n)));
        let outliers = w.inlier.iter().filter(|&&i| !i).count() as f64 / w.inlier.len() as f64;
        assert!((outliers - OUTLIER_SHARE).abs() < 0.01, "{outliers}");
        let truth = w.score(&w.truth_poses, &w.truth_points);
        // 0.5 px on each axis: the 2-D residual's RMS is 0.5·√2 at the truth
        assert!(
            (truth.rms_px[1] - 0.5 * 2f64.sqrt()).abs() < 0.03,
            "{:?}",
            truth.rms_px
        );
        assert!(truth.centre_mm < 1e-9 && truth.far_points == 0.0);
        let again = Window::generate(3).unwrap();
        assert_eq!(again.observations[100].pixel, w.observations[100].pixel);
        assert_eq!(again.poses[4], w.poses[4]);
    }

    /// Both solvers reach the same optimum from the same start (so the factor's pose convention matches).
    #[cfg(feature = "solver-bench")]
    #[test]
    fn both_solvers_agree() {
        let w = Window::generate(5).unwrap();
        let (a, b) = (hand_written(&w, 30), anchor::solve(&w, 30).unwrap());
        let (sa, sb) = (w.score(&a.poses, &a.points), w.score(&b.poses, &b.points));
        assert!(sa.centre_mm < 5.0 && (sb.centre_mm - sa.centre_mm).abs() < 0.5);
        assert!(
            (sa.cost - sb.cost).abs() < 0.01 * sa.cost,
            "{} {}",
            sa.cost,
            sb.cost
        );
    }
}
