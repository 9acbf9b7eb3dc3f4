//! Robust relative pose from pixel correspondences: LO-RANSAC around the 5-point solver.
//!
//! The pipeline of [`estimate_relative_pose`]:
//!
//! 1. **Checks and normalisation** ([`crate::geometry::correspondences`]). Lengths, finiteness, camera validity; pixels are
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
//! 4. **Configuration** ([`model_selection`], [`degeneracy`]). A homography is estimated beside the
//!    essential matrix. When it carries at least half of the inliers, the pose is searched again by plane
//!    and parallax and among the homography's own motions, and a pose that the off-plane points do not
//!    clearly prefer over another explanation of the plane is reported as [`NoPose::PlanarAmbiguity`]
//!    (which carries the best-scoring one, fully refined, as a best guess for callers with a prior);
//!    otherwise the result is [`TwoViewConfiguration::General`] or [`TwoViewConfiguration::Planar`]. When
//!    nearly all inliers are explained by a rotation alone (zero motion or pure rotation), the translation
//!    is unobservable: the result is [`TwoViewConfiguration::Panoramic`], with a rotation refined on the
//!    reprojection error and no translation — never a pose with an arbitrary `t`.
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
mod model_selection;
#[cfg(test)]
mod tests;
mod weights;

pub use covariance::UNOBSERVABLE_VARIANCE;
pub use model_selection::{
    DISTINCT_SIGMAS, FRONT_SLACK, H_THRESHOLD_SCALE, MIN_DECISIVE, OFF_PLANE_SCALE, PLANAR_RATIO,
    PLANE_MIN_TRANSLATION, PLANE_PARALLAX_SAMPLES, PLANE_PARALLAX_TRIGGER, SIGN_TEST_Z,
};
pub use weights::{unrefined_weight, MIN_GROUP_INLIERS};

use nalgebra::{Matrix3, Matrix6};

use self::covariance::pose_covariance;
use self::degeneracy::{
    find_rotation, refine_rotation, rotation_fit, rotation_inliers, ROTATION_ONLY_FRACTION,
};
use self::estimator::{EssentialEstimator, Pose};
use self::lm::{Lm, LM_REL_TOL};
use self::model_selection::{
    chance_off_plane_inliers, distinct, explains_plane_like, find_plane,
    keep_in_front_of_the_plane, off_plane_inliers, plane_candidates, pose_sigmas_deg, shared,
    Plane,
};
use super::camera::PinholeCamera;
use super::correspondences::{prepare, Problem, SAMPLE};
use super::essential::{count_in_front, essential_from_pose, pose_from_essential, PixelWeights};
use super::ransac::{self, Candidate, Estimator, Limits, Sampler};
use super::{
    NoPose, PoseError, PoseInputError, PoseQuality, RansacOptions, RelativePose,
    TwoViewConfiguration,
};
use crate::util::rng::SplitMix64;

/// Estimates the relative pose `x_b = R·x_a + t` (unit `t`) from pixel correspondences
/// `points_a[i] ↔ points_b[i]`.
///
/// `priority` (same length, higher = better, e.g. match scores) switches on PROSAC ordering. The threshold
/// is [`RansacOptions::threshold_px`] on the Sampson error in pixels. A scene or correspondences that
/// determine no pose return [`NoPose`] with the reason, unusable input [`PoseInputError`] (both in
/// [`PoseError`]); the function never panics on input data. Deterministic for a fixed
/// [`RansacOptions::seed`].
pub fn estimate_relative_pose(
    points_a: &[[f64; 2]],
    points_b: &[[f64; 2]],
    camera_a: &PinholeCamera,
    camera_b: &PinholeCamera,
    priority: Option<&[f32]>,
    options: &RansacOptions,
) -> Result<RelativePose, PoseError> {
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
) -> Result<RelativePose, PoseError> {
    let problem = prepare(
        points_a, points_b, camera_a, camera_b, priority, weights, options,
    )?;
    let prosac = priority.is_some();
    let (mut ctx, mut rng) = Context::new(&problem, camera_a, camera_b, options);
    let rotation = find_rotation(
        &problem.pts,
        camera_b,
        options.threshold_px,
        ctx.need(),
        options.seed,
    );
    let known = rotation.as_ref().map_or(0, |(_, idx)| idx.len());
    if let Some((r, _)) = &rotation {
        ctx.estimator
            .skip_samples_explained_by(*r, camera_b, options.threshold_px);
    }
    let (best, iterations) = ctx.ransac(prosac, known, &mut rng);
    let plane = find_plane(&problem.pts, camera_b, options, prosac);
    let mut candidates: Vec<Candidate<Pose>> = best.into_iter().collect();
    // a rotation-only scene is a homography (H = R) too, but not a plane: no plane analysis
    let rotation_only = |inliers: usize| known as f64 >= ROTATION_ONLY_FRACTION * inliers as f64;
    if let Some(pl) = &plane {
        log::debug!(
            "plane: {} points, {} valid motions, t/d up to {:.3}",
            pl.count,
            pl.motions.len(),
            pl.translation
        );
    }
    if let (Some(b), Some(pl)) = (candidates.first(), &plane) {
        if !rotation_only(b.inliers)
            && pl.is_a_plane()
            && pl.count as f64 >= PLANE_PARALLAX_TRIGGER * b.inliers as f64
        {
            candidates.extend(plane_candidates(&ctx.estimator, pl, options, &mut rng));
            keep_in_front_of_the_plane(&problem.pts, pl, &mut candidates);
        }
    }
    // the best-scoring candidate wins; the others are its alternatives
    let winner = (0..candidates.len()).min_by(|&i, &j| {
        candidates[i]
            .score
            .total_cmp(&candidates[j].score)
            .then(i.cmp(&j))
    });
    if log::log_enabled!(log::Level::Debug) {
        for (k, c) in candidates.iter().enumerate() {
            log::debug!(
                "candidate {k}: score {:.1}, {} inliers, R {:?} t {:?}",
                c.score,
                c.inliers,
                nalgebra::Rotation3::from_matrix_unchecked(c.model.r)
                    .scaled_axis()
                    .as_slice(),
                c.model.t.as_slice()
            );
        }
    }
    let best = winner.map(|k| candidates.swap_remove(k));
    let plane_info = PlaneInfo::Analyse {
        plane: plane.as_ref(),
        alternatives: &candidates,
    };
    Ok(ctx.finish(best, iterations, plane_info, rotation.map(|(r, _)| r))?)
}

/// Re-estimates a pose from `initial` (e.g. an earlier estimate from less precise positions of the same
/// matches) without sampling: local optimisation and the final refinement of
/// [`estimate_relative_pose_weighted`] start from it, with the same checks, inlier rule and result
/// (`quality.iterations` = 0). About one millisecond instead of a full LO-RANSAC. The configuration and
/// the plane statistics are the initial estimate's (the homography is not re-estimated); a panoramic
/// `initial` has its rotation refined. `initial.rotation` must be a rotation and its translation (if any)
/// finite and non-zero.
pub fn refine_relative_pose_weighted(
    points_a: &[[f64; 2]],
    points_b: &[[f64; 2]],
    camera_a: &PinholeCamera,
    camera_b: &PinholeCamera,
    weights: Option<&[f64]>,
    initial: &RelativePose,
    options: &RansacOptions,
) -> Result<RelativePose, PoseError> {
    let r = &initial.rotation;
    let orthonormal =
        (r.transpose() * r - Matrix3::identity()).norm() < 1e-6 && r.determinant() > 0.0;
    let t_ok = initial
        .translation
        .is_none_or(|t| t.iter().all(|v| v.is_finite()) && t.norm() > 1e-12);
    if !(r.iter().all(|v| v.is_finite()) && orthonormal && t_ok) {
        return Err(PoseInputError::InvalidOptions(
            "initial pose: R must be a rotation and t finite and non-zero".into(),
        )
        .into());
    }
    let problem = prepare(
        points_a, points_b, camera_a, camera_b, None, weights, options,
    )?;
    let (ctx, _) = Context::new(&problem, camera_a, camera_b, options);
    let carried = PlaneInfo::Carry(initial.quality);
    let Some(t) = initial.translation else {
        return Ok(ctx.panoramic(*r, 0, &carried)?);
    };
    let mut cand = ctx.estimator.candidate(Pose {
        r: *r,
        t: t / t.norm(),
    });
    ctx.estimator.local_optimisation(&mut cand);
    Ok(ctx.finish(Some(cand), 0, carried, None)?)
}

/// The explanations of a plane that the off-plane points do not decide between (winner first), as
/// [`NoPose::PlanarAmbiguity`] reports them.
struct Rivals {
    candidates: Vec<(Matrix3<f64>, nalgebra::Vector3<f64>)>,
    plane_inliers: usize,
    off_plane_inliers: Vec<usize>,
}

/// What [`Context::finish`] knows of the plane: a homography and the other candidates to analyse, or the
/// statistics of an earlier estimate to carry over.
enum PlaneInfo<'p> {
    Analyse {
        plane: Option<&'p Plane>,
        alternatives: &'p [Candidate<Pose>],
    },
    Carry(PoseQuality),
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

    /// LO-RANSAC over the essential matrix (`known_inliers`: see [`Limits::known_inliers`]).
    fn ransac(
        &self,
        prosac: bool,
        known_inliers: usize,
        rng: &mut SplitMix64,
    ) -> (Option<Candidate<Pose>>, usize) {
        let n = self.problem.pts.len();
        let mut sampler = Sampler::new(n, SAMPLE, prosac);
        let limits = Limits {
            min_iterations: self.options.min_iterations,
            max_iterations: self.options.max_iterations,
            confidence: self.options.confidence,
            known_inliers,
        };
        ransac::run(&self.estimator, &mut sampler, rng, limits, 0.1)
    }

    /// The final refinement of `(r, t)` on all inliers: refits while the MSAC score improves (at most five
    /// rounds); returns the pose and its inliers.
    fn final_refinement(&self, pose: Pose) -> (Pose, Vec<u32>) {
        let est = &self.estimator;
        let lm = Lm {
            pts: &self.problem.pts,
            w: est.w,
            cauchy: Some(self.options.threshold_px),
        };
        let Pose { mut r, mut t } = pose;
        let mut idx = est.inlier_indices(&pose.essential(), 1.0);
        let mut score = est.score(&pose.essential()).0;
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
        (Pose { r, t }, idx)
    }

    /// Final refinement, cheirality, configuration and covariance of the best candidate; `rotation`: the
    /// rotation-only model found before the search, the answer when no essential matrix is supported.
    fn finish(
        &self,
        best: Option<Candidate<Pose>>,
        iterations: usize,
        plane: PlaneInfo<'_>,
        rotation: Option<Matrix3<f64>>,
    ) -> Result<RelativePose, NoPose> {
        let pts = &self.problem.pts;
        let thr = self.options.threshold_px;
        let unsupported = |best_inliers: usize| match rotation {
            Some(r) => self.panoramic(r, iterations, &plane),
            None => Err(NoPose::NoConsensus {
                best_inliers,
                need: self.need(),
            }),
        };
        let Some(best) = best else {
            return unsupported(0);
        };
        let (Pose { mut r, mut t }, idx) = self.final_refinement(best.model);
        if idx.len() < self.need() {
            return unsupported(idx.len());
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
            return self.panoramic(r, iterations, &plane);
        }
        let pose = Pose { r, t };
        let plain = Lm {
            pts,
            w: self.estimator.w,
            cauchy: None,
        };
        let (covariance, sum_sq) = pose_covariance(&plain, &r, &t, &idx);
        let mut rivals = None;
        let (configuration, homography_inlier_ratio, off_plane) = match plane {
            PlaneInfo::Carry(q) => (
                if q.homography_inlier_ratio >= PLANAR_RATIO {
                    TwoViewConfiguration::Planar
                } else {
                    TwoViewConfiguration::General
                },
                q.homography_inlier_ratio,
                q.off_plane_inliers,
            ),
            PlaneInfo::Analyse { plane: None, .. } => {
                (TwoViewConfiguration::General, 0.0, idx.len())
            }
            PlaneInfo::Analyse {
                plane: Some(pl),
                alternatives,
            } => {
                let ratio = pl.count as f64 / idx.len() as f64;
                let off = off_plane_inliers(&self.estimator, pl, &pose);
                if ratio >= PLANE_PARALLAX_TRIGGER && pl.is_a_plane() {
                    let sigmas = pose_sigmas_deg(&covariance, &t);
                    log::debug!("pose sigmas {sigmas:?}, plane ratio {ratio:.2}");
                    rivals = self.check_ambiguity(pl, &pose, &off, alternatives, sigmas);
                }
                let off = off.len();
                let config = if ratio >= PLANAR_RATIO {
                    TwoViewConfiguration::Planar
                } else {
                    TwoViewConfiguration::General
                };
                (config, ratio, off)
            }
        };
        let num_inliers = idx.len();
        let best = RelativePose {
            rotation: r,
            translation: Some(t),
            configuration,
            inliers: self.caller_mask(&idx),
            num_inliers,
            covariance,
            quality: PoseQuality {
                inlier_ratio: num_inliers as f64 / self.problem.n_input as f64,
                rms_error_px: (sum_sq / num_inliers as f64).sqrt(),
                median_parallax_deg: fit.median_parallax_deg,
                iterations,
                homography_inlier_ratio,
                off_plane_inliers: off_plane,
            },
        };
        match rivals {
            None => Ok(best),
            Some(r) => Err(NoPose::PlanarAmbiguity {
                best: Box::new(best),
                candidates: r.candidates,
                plane_inliers: r.plane_inliers,
                off_plane_inliers: r.off_plane_inliers,
            }),
        }
    }

    /// The rivals (see [`model_selection`]) that the winner's off-plane inliers `off` do not clearly beat,
    /// with the winner first: `None` when there is none. The caller turns `Some` into
    /// [`NoPose::PlanarAmbiguity`].
    fn check_ambiguity(
        &self,
        plane: &Plane,
        pose: &Pose,
        off: &[u32],
        alternatives: &[Candidate<Pose>],
        sigma_deg: (f64, f64),
    ) -> Option<Rivals> {
        let est = &self.estimator;
        // off-plane inliers the winner could have by chance: twice the rate of random pairings (the winner
        // is the best of several refitted candidates, and a refit leans towards the outliers it can
        // absorb), Poisson upper tail at ~1e-4
        let mut rng = SplitMix64::new(self.options.seed ^ 0x6368_616E_6365);
        let lambda = 2.0 * chance_off_plane_inliers(est, plane, pose, &mut rng);
        let chance_bound = (lambda + 4.0 * lambda.sqrt()).ceil() as usize + 1;
        let mut rivals: Vec<(Pose, usize)> = Vec::new();
        for p in alternatives.iter().map(|c| c.model) {
            if !(distinct(pose, &p, sigma_deg) && explains_plane_like(est, plane, &p, pose)) {
                continue;
            }
            // a distinct explanation is a distinct minimum of the cost: refined like the winner, a
            // candidate that was only short of converging (as at low parallax, where refits wobble by
            // degrees) joins the winner
            let (p, _) = self.final_refinement(p);
            if !distinct(pose, &p, sigma_deg) {
                continue;
            }
            let theirs = off_plane_inliers(est, plane, &p);
            let common = shared(off, &theirs);
            log::debug!(
                "planar check: winner {} off-plane inliers (chance {lambda:.1}), alternative {} ({common} shared), scores {:.1} vs {:.1}, {:.1}° / {:.1}° apart",
                off.len(),
                theirs.len(),
                est.score(&pose.essential()).0,
                est.score(&p.essential()).0,
                crate::geometry::metrics::rotation_error_deg(&p.r, &pose.r),
                crate::geometry::metrics::translation_error_deg(&p.t, &pose.t)
            );
            let (own, their_own) = (off.len() - common, theirs.len() - common);
            // sign test: were both explanations equally good, the points only one of them explains would
            // split evenly between them; the winner's excess must exceed SIGN_TEST_Z standard deviations
            let excess = own as f64 - their_own as f64;
            let significant = excess > SIGN_TEST_Z * ((own + their_own) as f64).sqrt();
            if own < MIN_DECISIVE.max(chance_bound) || !significant {
                rivals.push((p, theirs.len()));
            }
        }
        if rivals.is_empty() {
            return None;
        }
        rivals.sort_by_key(|&(_, o)| std::cmp::Reverse(o));
        rivals.dedup_by(|a, b| !distinct(&b.0, &a.0, sigma_deg));
        let mut candidates = vec![(pose.r, pose.t)];
        let mut support = vec![off.len()];
        for (p, o) in rivals {
            candidates.push((p.r, p.t));
            support.push(o);
        }
        Some(Rivals {
            candidates,
            plane_inliers: plane.count,
            off_plane_inliers: support,
        })
    }

    /// The rotation-only result from `r0`: refined on the correspondences it explains.
    fn panoramic(
        &self,
        r0: Matrix3<f64>,
        iterations: usize,
        plane: &PlaneInfo<'_>,
    ) -> Result<RelativePose, NoPose> {
        let pts = &self.problem.pts;
        let thr = self.options.threshold_px;
        let idx = rotation_inliers(pts, &r0, self.camera_b, thr);
        if idx.len() < self.need() {
            return Err(NoPose::NoConsensus {
                best_inliers: idx.len(),
                need: self.need(),
            });
        }
        let refined = refine_rotation(pts, &idx, r0, self.camera_b, thr);
        let idx = rotation_inliers(pts, &refined.r, self.camera_b, thr);
        let fit = rotation_fit(pts, &idx, &refined.r, self.camera_b, thr);
        let mut covariance = Matrix6::identity() * UNOBSERVABLE_VARIANCE;
        covariance
            .fixed_view_mut::<3, 3>(0, 0)
            .copy_from(&refined.covariance);
        let homography_inlier_ratio = match plane {
            PlaneInfo::Carry(q) => q.homography_inlier_ratio,
            PlaneInfo::Analyse { plane, .. } => {
                plane.map_or(0.0, |p| p.count as f64 / idx.len().max(1) as f64)
            }
        };
        let num_inliers = idx.len();
        Ok(RelativePose {
            rotation: refined.r,
            translation: None,
            configuration: TwoViewConfiguration::Panoramic,
            inliers: self.caller_mask(&idx),
            num_inliers,
            covariance,
            quality: PoseQuality {
                inlier_ratio: num_inliers as f64 / self.problem.n_input as f64,
                rms_error_px: (refined.sum_sq / num_inliers as f64).sqrt(),
                median_parallax_deg: fit.median_parallax_deg,
                iterations,
                homography_inlier_ratio,
                off_plane_inliers: 0,
            },
        })
    }

    /// Inlier flags in the caller's order.
    fn caller_mask(&self, idx: &[u32]) -> Vec<bool> {
        let mut inliers = vec![false; self.problem.n_input];
        for &i in idx {
            inliers[self.problem.pts.orig[i as usize]] = true;
        }
        inliers
    }
}
