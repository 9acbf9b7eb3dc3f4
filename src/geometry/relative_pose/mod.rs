//! Robust relative pose from pixel correspondences: LO-RANSAC around the 5-point solver.
//!
//! The pipeline of [`estimate_relative_pose`]:
//!
//! 1. **Checks and normalisation** ([`problem`]). Lengths, finiteness, camera validity; pixels are
//!    undistorted into normalised coordinates (points whose undistortion fails are excluded and never
//!    inliers). Fewer than five distinct correspondences, or all points on one line in either image, is a
//!    degenerate configuration and an `Err`, never a pose.
//! 2. **LO-RANSAC** ([`crate::geometry::ransac`] driving [`estimator`]): PROSAC-ordered samples when a
//!    priority (match score) is given, up to ten essential matrices per sample, SPRT verification with an
//!    exact MSAC bail-out in the vectorised [`kernels`], local optimisation of every new best minimal-sample
//!    model by a few robust Levenberg–Marquardt steps on its inliers, adaptive termination. Sampling is
//!    seeded ([`RansacOptions::seed`]): results are deterministic for a fixed seed and input.
//! 3. **Final refinement** ([`lm`]). Levenberg–Marquardt on all inliers with a Cauchy loss (scale =
//!    threshold) over `R ∈ SO(3)` and the unit translation, then the inlier mask is recomputed and the refit
//!    repeated (at most 5 rounds) while the MSAC score improves; cheirality is re-checked on all inliers.
//! 4. **Degeneracy of the result** ([`degeneracy`]). When nearly all inliers are explained by the rotation
//!    alone (zero motion or pure rotation), the translation direction is unobservable: that is reported as
//!    [`NoPose::NoParallax`], not as a pose with an arbitrary `t`.
//! 5. **Covariance** ([`covariance`]): `σ²·(JᵀJ)⁻¹` of the refined problem.
//!
//! Optional per-correspondence weights (relative inverse variances) whiten the residuals of LO, the final
//! refinement and the covariance and weight the MSAC score; which points are inliers does not depend on
//! them. [`refine_relative_pose_weighted`] runs steps 3–5 (after LO) from a given pose without sampling.
//!
//! Why this formulation: the 5-point solver needs the fewest samples (1/ε⁵) of the calibrated solvers; the
//! Sampson error is a first-order reprojection error that is cheap enough for the scoring loop and accurate
//! at pixel-level noise; optimising `(R, t)` directly (rather than `E`) keeps the estimate on the essential
//! manifold.
//!
//! This module does not match features or decide which frames to pair.

mod covariance;
mod degeneracy;
mod estimator;
mod kernels;
mod lm;
mod problem;
#[cfg(test)]
mod tests;

pub use covariance::UNOBSERVABLE_VARIANCE;

use nalgebra::{Matrix3, Vector3};

use self::covariance::pose_covariance;
use self::degeneracy::{no_consensus_or_no_motion, rotation_fit, ROTATION_ONLY_FRACTION};
use self::estimator::{EssentialEstimator, Pose};
use self::lm::{Lm, LM_REL_TOL};
use self::problem::{prepare, Problem, SAMPLE};
use super::camera::PinholeCamera;
use super::essential::{count_in_front, essential_from_pose, pose_from_essential, PixelWeights};
use super::ransac::{self, Candidate, Estimator, Limits, Sampler};
use super::{NoPose, PoseQuality, RansacOptions, RelativePose};
use crate::util::rng::SplitMix64;

/// Estimates the relative pose `x_b = R·x_a + t` (unit `t`) from pixel correspondences
/// `points_a[i] ↔ points_b[i]`.
///
/// `priority` (same length, higher = better, e.g. match scores) switches on PROSAC ordering. The threshold
/// is [`RansacOptions::threshold_px`] on the Sampson error in pixels. Degenerate or invalid input returns an
/// [`NoPose`] with the reason; the function never panics on input data. Deterministic for a fixed
/// [`RansacOptions::seed`].
pub fn estimate_relative_pose(
    points_a: &[[f64; 2]],
    points_b: &[[f64; 2]],
    camera_a: &PinholeCamera,
    camera_b: &PinholeCamera,
    priority: Option<&[f32]>,
    options: &RansacOptions,
) -> Result<RelativePose, NoPose> {
    estimate_relative_pose_weighted(
        points_a, points_b, camera_a, camera_b, priority, None, options,
    )
}

/// [`estimate_relative_pose`] with a weight per correspondence: its relative inverse variance (e.g. 1 for a
/// photometrically refined match, less for a detector-only one). The weights whiten the residuals of the
/// local optimisation, the final refinement and the covariance; which points are inliers (Sampson error
/// below the threshold) does not depend on them. `None` = all 1. Weights must be finite and > 0.
pub fn estimate_relative_pose_weighted(
    points_a: &[[f64; 2]],
    points_b: &[[f64; 2]],
    camera_a: &PinholeCamera,
    camera_b: &PinholeCamera,
    priority: Option<&[f32]>,
    weights: Option<&[f64]>,
    options: &RansacOptions,
) -> Result<RelativePose, NoPose> {
    let problem = prepare(
        points_a, points_b, camera_a, camera_b, priority, weights, options,
    )?;
    let (ctx, mut rng) = Context::new(&problem, camera_a, camera_b, options);
    let (best, iterations) = ctx.ransac(priority.is_some(), &mut rng);
    ctx.finish(best, iterations)
}

/// Re-estimates a pose from `initial` (`x_b = R·x_a + t`, e.g. an earlier estimate from less precise
/// positions of the same matches) without sampling: local optimisation and the final refinement of
/// [`estimate_relative_pose_weighted`] start from it, with the same checks, inlier rule and result
/// (`quality.iterations` = 0). About one millisecond instead of a full LO-RANSAC. `initial` must be a
/// rotation and a non-zero finite translation.
pub fn refine_relative_pose_weighted(
    points_a: &[[f64; 2]],
    points_b: &[[f64; 2]],
    camera_a: &PinholeCamera,
    camera_b: &PinholeCamera,
    weights: Option<&[f64]>,
    initial: (&Matrix3<f64>, &Vector3<f64>),
    options: &RansacOptions,
) -> Result<RelativePose, NoPose> {
    let (r, t) = initial;
    let orthonormal =
        (r.transpose() * r - Matrix3::identity()).norm() < 1e-6 && r.determinant() > 0.0;
    let tn = t.norm();
    if !(r.iter().chain(t.iter()).all(|v| v.is_finite()) && orthonormal && tn > 1e-12) {
        return Err(NoPose::InvalidOptions(
            "initial pose: R must be a rotation and t finite and non-zero".into(),
        ));
    }
    let problem = prepare(
        points_a, points_b, camera_a, camera_b, None, weights, options,
    )?;
    let (ctx, _) = Context::new(&problem, camera_a, camera_b, options);
    let mut cand = ctx.estimator.candidate(Pose { r: *r, t: t / tn });
    ctx.estimator.local_optimisation(&mut cand);
    ctx.finish(Some(cand), 0)
}

/// One estimation: the checked problem, its estimator and the options. [`Context::new`] also returns the
/// run's random generator, after it drew the verification order.
struct Context<'a> {
    problem: &'a Problem,
    camera_b: &'a PinholeCamera,
    options: &'a RansacOptions,
    estimator: EssentialEstimator<'a>,
}

impl<'a> Context<'a> {
    fn new(
        problem: &'a Problem,
        camera_a: &PinholeCamera,
        camera_b: &'a PinholeCamera,
        options: &'a RansacOptions,
    ) -> (Self, SplitMix64) {
        let pts = &problem.pts;
        let w = PixelWeights::new(camera_a.fx, camera_a.fy, camera_b.fx, camera_b.fy);
        let mut rng = SplitMix64::new(options.seed ^ 0x6D61_7463_6861_u64);
        let mut verify_order: Vec<u32> = (0..pts.len() as u32).collect();
        rng.shuffle(&mut verify_order);
        let ctx = Self {
            problem,
            camera_b,
            options,
            estimator: EssentialEstimator::new(pts, w, options.threshold_px, &verify_order),
        };
        (ctx, rng)
    }

    fn need(&self) -> usize {
        self.options.min_inliers.max(SAMPLE)
    }

    /// LO-RANSAC over the essential matrix.
    fn ransac(&self, prosac: bool, rng: &mut SplitMix64) -> (Option<Candidate<Pose>>, usize) {
        let n = self.problem.pts.len();
        let mut sampler = Sampler::new(n, SAMPLE, prosac);
        let limits = Limits {
            min_iterations: self.options.min_iterations,
            max_iterations: self.options.max_iterations,
            confidence: self.options.confidence,
        };
        ransac::run(&self.estimator, &mut sampler, rng, limits, 0.1)
    }

    /// Final refinement, cheirality, degeneracy and covariance of the best candidate.
    fn finish(
        &self,
        best: Option<Candidate<Pose>>,
        iterations: usize,
    ) -> Result<RelativePose, NoPose> {
        let pts = &self.problem.pts;
        let thr = self.options.threshold_px;
        let est = &self.estimator;
        let Some(best) = best else {
            return Err(no_consensus_or_no_motion(
                pts,
                self.camera_b,
                thr,
                0,
                self.need(),
            ));
        };
        let lm = Lm {
            pts,
            w: est.w,
            cauchy: Some(thr),
        };
        let Pose { mut r, mut t } = best.model;
        let mut idx = est.inlier_indices(&best.model.essential(), 1.0);
        let mut score = est.score(&best.model.essential()).0;
        for _ in 0..5 {
            let (r2, t2) = lm.refine(r, t, &idx, 30, LM_REL_TOL);
            let e2 = Pose { r: r2, t: t2 }.essential();
            let idx2 = est.inlier_indices(&e2, 1.0);
            let score2 = est.score(&e2).0;
            if score2 > score {
                // the refit scores worse (MSAC) on all points: keep the previous pose (monotone in score).
                // Judging by the inlier count instead stopped whenever one borderline point dropped out,
                // which kept the coarser LO pose.
                break;
            }
            score = score2;
            r = r2;
            t = t2;
            let same = idx2 == idx;
            idx = idx2;
            if same {
                break;
            }
        }
        if idx.len() < self.need() {
            return Err(no_consensus_or_no_motion(
                pts,
                self.camera_b,
                thr,
                idx.len(),
                self.need(),
            ));
        }
        // Cheirality of the refined pose on all inliers (guards against a flipped twisted pair).
        let inlier_pts: Vec<[f64; 4]> = idx.iter().map(|&i| pts.get(i as usize)).collect();
        if let Some((r2, t2, front2)) =
            pose_from_essential(&essential_from_pose(&r, &t), &inlier_pts)
        {
            let front = count_in_front(&r, &t, inlier_pts.iter().copied());
            if front2 > front {
                r = r2;
                t = t2;
            }
        }
        if !(r.iter().all(|v| v.is_finite()) && t.iter().all(|v| v.is_finite())) {
            return Err(NoPose::Degenerate("refinement diverged".into()));
        }

        let fit = rotation_fit(pts, &idx, &r, self.camera_b, thr);
        if fit.fraction >= ROTATION_ONLY_FRACTION {
            return Err(NoPose::NoParallax {
                rotation_only_fraction: fit.fraction,
                median_parallax_deg: fit.median_parallax_deg,
            });
        }

        let plain = Lm {
            pts,
            w: est.w,
            cauchy: None,
        };
        let (covariance, sum_sq) = pose_covariance(&plain, &r, &t, &idx);
        let n_in = self.problem.n_input;
        let mut inliers = vec![false; n_in];
        for &i in &idx {
            inliers[pts.orig[i as usize]] = true;
        }
        let num_inliers = idx.len();
        Ok(RelativePose {
            rotation: r,
            translation: t,
            inliers,
            num_inliers,
            covariance,
            quality: PoseQuality {
                inlier_ratio: num_inliers as f64 / n_in as f64,
                rms_error_px: (sum_sq / num_inliers as f64).sqrt(),
                median_parallax_deg: fit.median_parallax_deg,
                iterations,
            },
        })
    }
}
