//! Robust absolute pose (PnP) from 3-D ↔ 2-D correspondences: LO-RANSAC around the P3P solver, then a
//! Levenberg–Marquardt refinement of the reprojection error and the pose covariance.
//!
//! The flow of [`estimate_absolute_pose`]:
//!
//! 1. **Checks and normalisation**: lengths, finiteness, camera and options; pixels are undistorted into
//!    normalised coordinates (a pixel whose undistortion fails is excluded and never an inlier).
//! 2. **LO-RANSAC** ([`crate::geometry::ransac`] driving [`estimator`]): uniform 3-point samples in a
//!    seeded random verification order, up to four P3P poses per sample ([`p3p`]), SPRT verification
//!    with an MSAC bail-out on the pixel reprojection error (a point behind the camera is an outlier), local
//!    optimisation of each new best minimal-sample pose, adaptive termination.
//! 3. **Final refinement** ([`lm`]): LM on all inliers with a Cauchy loss (scale = threshold), the inlier
//!    set recomputed and the refit repeated while it changes (at most 4 rounds).
//! 4. **Covariance**: `σ²·(JᵀJ)⁻¹` of the plain problem at the solution, rotation vector then translation
//!    (left perturbation `R ← Exp(ω)·R`, `t ← Exp(ω)·t + v`).
//!
//! [`refine_absolute_pose`] runs steps 3–4 from a given pose (a tracker's motion prediction) without
//! sampling.
//!
//! Convention: the pose maps world points into the camera, `x_cam = R·X + t` (OpenCV's `rvec/tvec`,
//! PoseLib's `CameraPose`); the camera centre is `−Rᵀt`. Pixel centres are at integer coordinates.
//!
//! Why this formulation: P3P is the minimal calibrated solver (1/ε³ samples); the reprojection error is the
//! maximum-likelihood cost for pixel noise; the RANSAC loop is the one the two-view estimators use, so the
//! stopping rule and SPRT are the same everywhere. Not here: matching, landmarks, or which frame to
//! localise against (that is the VO's job).

// `!(x > y)` is deliberate: it is true for NaN, which must take the rejecting branch.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

mod estimator;
pub(crate) mod lm;
mod p3p;
#[cfg(test)]
mod tests;

use nalgebra::{Matrix3, Matrix6, Vector3};

use self::estimator::PnpEstimator;
use self::lm::Observations;
use super::camera::PinholeCamera;
use super::ransac::{self, Limits, Sampler};
use super::RansacOptions;
use crate::util::rng::SplitMix64;

/// A camera pose estimated from 3-D ↔ 2-D correspondences.
#[derive(Debug, Clone)]
pub struct AbsolutePose {
    /// Rotation `R` of `x_cam = R·X + t`.
    pub rotation: Matrix3<f64>,
    /// Translation `t` of `x_cam = R·X + t` (the units of the world points).
    pub translation: Vector3<f64>,
    /// Per-correspondence inlier flag (same order as the input).
    pub inliers: Vec<bool>,
    /// Number of `true` entries in [`Self::inliers`].
    pub num_inliers: usize,
    /// 6×6 covariance, rotation vector (rad) then translation, of the left perturbation
    /// `R ← Exp(ω)·R`, `t ← Exp(ω)·t + v`.
    pub covariance: Matrix6<f64>,
    /// Quality measures.
    pub quality: AbsolutePoseQuality,
}

impl AbsolutePose {
    /// The camera centre in the world, `−Rᵀt`.
    pub fn centre(&self) -> Vector3<f64> {
        -(self.rotation.transpose() * self.translation)
    }
}

/// Scalar quality measures of an absolute pose.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct AbsolutePoseQuality {
    /// Inliers / correspondences.
    pub inlier_ratio: f64,
    /// Root mean square reprojection error of the inliers, pixels.
    pub rms_error_px: f64,
    /// RANSAC hypotheses drawn (0 for [`refine_absolute_pose`]).
    pub iterations: usize,
}

/// Why no absolute pose was reported. [`Self::is_outcome`] tells results of the data (too few points, no
/// consensus) from the caller's mistakes (mismatched lengths, NaN, invalid camera or options).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AbsolutePoseError {
    /// Fewer usable correspondences than the solver or `min_inliers` needs.
    #[error("too few correspondences: {have} (need at least {need})")]
    TooFewCorrespondences {
        /// Usable correspondences.
        have: usize,
        /// Needed.
        need: usize,
    },
    /// No pose reached `min_inliers` inliers.
    #[error("no consensus: best pose had {best_inliers} inliers (need {need})")]
    NoConsensus {
        /// Inliers of the best pose.
        best_inliers: usize,
        /// Needed.
        need: usize,
    },
    /// The point lists differ in length.
    #[error("point lists differ in length: {world} world points vs {pixels} pixels")]
    LengthMismatch {
        /// World points given.
        world: usize,
        /// Pixels given.
        pixels: usize,
    },
    /// A coordinate is NaN or infinite.
    #[error("non-finite input: {0}")]
    NonFinite(String),
    /// The camera's parameters are invalid.
    #[error("invalid camera: {0}")]
    InvalidCamera(String),
    /// An option (or the initial pose of a refinement) is out of range.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
}

impl AbsolutePoseError {
    /// True for results of the data (too few correspondences, no consensus), false for misuse.
    pub fn is_outcome(&self) -> bool {
        matches!(
            self,
            Self::TooFewCorrespondences { .. } | Self::NoConsensus { .. }
        )
    }
}

/// Estimates the camera pose `x_cam = R·X + t` from world points `world[i]` seen at pixels `pixels[i]`.
/// The threshold is [`RansacOptions::threshold_px`] on the reprojection error; deterministic for a fixed
/// [`RansacOptions::seed`]; never panics on input data.
pub fn estimate_absolute_pose(
    world: &[[f64; 3]],
    pixels: &[[f64; 2]],
    camera: &PinholeCamera,
    options: &RansacOptions,
) -> Result<AbsolutePose, AbsolutePoseError> {
    let (problem, need) = Problem::prepare(world, pixels, camera, options)?;
    let mut rng = SplitMix64::new(options.seed);
    // verification order: a fixed random permutation (SPRT assumes the points come in random order)
    let mut order: Vec<usize> = (0..problem.world.len()).collect();
    rng.shuffle(&mut order);
    let world_o: Vec<Vector3<f64>> = order.iter().map(|&i| problem.world[i]).collect();
    let norm_o: Vec<[f64; 2]> = order.iter().map(|&i| problem.normalized[i]).collect();
    let bearings = norm_o
        .iter()
        .map(|p| Vector3::new(p[0], p[1], 1.0).normalize())
        .collect();
    let est = PnpEstimator {
        obs: Observations {
            world: &world_o,
            normalized: &norm_o,
            focal: problem.focal,
        },
        bearings,
        thr_px: options.threshold_px,
    };
    let limits = Limits {
        min_iterations: options.min_iterations,
        max_iterations: options.max_iterations,
        confidence: options.confidence,
        known_inliers: 0,
    };
    let mut sampler = Sampler::new(world_o.len(), 3, false);
    let (best, iterations) = ransac::run(&est, &mut sampler, &mut rng, limits, 0.1);
    let Some(best) = best else {
        return Err(AbsolutePoseError::NoConsensus {
            best_inliers: 0,
            need,
        });
    };
    problem.finish(best.model.0, best.model.1, options, iterations, need)
}

/// Refines `initial = (R, t)` (e.g. a tracker's prediction) on the correspondences without sampling: the
/// final refinement and covariance of [`estimate_absolute_pose`], with its inlier rule
/// (`quality.iterations` = 0). `initial.0` must be a rotation and `initial.1` finite.
pub fn refine_absolute_pose(
    world: &[[f64; 3]],
    pixels: &[[f64; 2]],
    camera: &PinholeCamera,
    initial: (Matrix3<f64>, Vector3<f64>),
    options: &RansacOptions,
) -> Result<AbsolutePose, AbsolutePoseError> {
    let (r, t) = initial;
    let orthonormal =
        (r.transpose() * r - Matrix3::identity()).norm() < 1e-6 && r.determinant() > 0.0;
    if !(r.iter().chain(t.iter()).all(|v| v.is_finite()) && orthonormal) {
        return Err(AbsolutePoseError::InvalidOptions(
            "initial pose: R must be a rotation and t finite".into(),
        ));
    }
    let (problem, need) = Problem::prepare(world, pixels, camera, options)?;
    // a prediction may be a few thresholds off: take the inliers of a loose threshold first
    let obs = problem.observations();
    let loose: Vec<u32> = (0..problem.world.len())
        .filter(|&i| obs.error_sq(&r, &t, i) < (4.0 * options.threshold_px).powi(2))
        .map(|i| i as u32)
        .collect();
    let (r, t) = obs.refine(r, t, &loose, Some(2.0 * options.threshold_px), 10);
    problem.finish(r, t, options, 0, need)
}

/// Checked and normalised input: the usable correspondences and their index in the caller's arrays.
struct Problem {
    world: Vec<Vector3<f64>>,
    normalized: Vec<[f64; 2]>,
    orig: Vec<usize>,
    n_input: usize,
    focal: [f64; 2],
}

impl Problem {
    fn prepare(
        world: &[[f64; 3]],
        pixels: &[[f64; 2]],
        camera: &PinholeCamera,
        options: &RansacOptions,
    ) -> Result<(Self, usize), AbsolutePoseError> {
        if world.len() != pixels.len() {
            return Err(AbsolutePoseError::LengthMismatch {
                world: world.len(),
                pixels: pixels.len(),
            });
        }
        camera
            .validate()
            .map_err(|e| AbsolutePoseError::InvalidCamera(e.to_string()))?;
        if !(options.threshold_px > 0.0 && options.threshold_px.is_finite()) {
            return Err(AbsolutePoseError::InvalidOptions(format!(
                "threshold_px must be > 0 (got {})",
                options.threshold_px
            )));
        }
        if !(options.confidence > 0.0 && options.confidence < 1.0) {
            return Err(AbsolutePoseError::InvalidOptions(format!(
                "confidence must be in (0, 1) (got {})",
                options.confidence
            )));
        }
        if let Some(i) = world.iter().position(|p| !p.iter().all(|v| v.is_finite())) {
            return Err(AbsolutePoseError::NonFinite(format!("world point {i}")));
        }
        if let Some(i) = pixels.iter().position(|p| !p.iter().all(|v| v.is_finite())) {
            return Err(AbsolutePoseError::NonFinite(format!("pixel {i}")));
        }
        let mut out = Self {
            world: Vec::with_capacity(world.len()),
            normalized: Vec::with_capacity(world.len()),
            orig: Vec::with_capacity(world.len()),
            n_input: world.len(),
            focal: [camera.fx, camera.fy],
        };
        for (i, (w, p)) in world.iter().zip(pixels).enumerate() {
            if let Ok(n) = camera.try_normalize(*p) {
                out.world.push(Vector3::from(*w));
                out.normalized.push(n);
                out.orig.push(i);
            }
        }
        // P3P needs 3 points and a fourth to tell its solutions apart
        let need = options.min_inliers.max(4);
        if out.world.len() < need {
            return Err(AbsolutePoseError::TooFewCorrespondences {
                have: out.world.len(),
                need,
            });
        }
        Ok((out, need))
    }

    fn observations(&self) -> Observations<'_> {
        Observations {
            world: &self.world,
            normalized: &self.normalized,
            focal: self.focal,
        }
    }

    /// Final refinement, inliers, covariance and quality from a pose.
    fn finish(
        &self,
        mut r: Matrix3<f64>,
        mut t: Vector3<f64>,
        options: &RansacOptions,
        iterations: usize,
        need: usize,
    ) -> Result<AbsolutePose, AbsolutePoseError> {
        let obs = self.observations();
        let thr_sq = options.threshold_px * options.threshold_px;
        let inliers_of = |r: &Matrix3<f64>, t: &Vector3<f64>| -> Vec<u32> {
            (0..self.world.len())
                .filter(|&i| obs.error_sq(r, t, i) < thr_sq)
                .map(|i| i as u32)
                .collect()
        };
        let mut idx = inliers_of(&r, &t);
        for _ in 0..4 {
            if idx.len() < need {
                break;
            }
            (r, t) = obs.refine(r, t, &idx, Some(options.threshold_px), 30);
            let next = inliers_of(&r, &t);
            let same = next == idx;
            idx = next;
            if same {
                break;
            }
        }
        if idx.len() < need {
            return Err(AbsolutePoseError::NoConsensus {
                best_inliers: idx.len(),
                need,
            });
        }
        let (covariance, sum_sq) = obs.covariance(&r, &t, &idx);
        let mut inliers = vec![false; self.n_input];
        for &i in &idx {
            inliers[self.orig[i as usize]] = true;
        }
        Ok(AbsolutePose {
            rotation: r,
            translation: t,
            inliers,
            num_inliers: idx.len(),
            covariance,
            quality: AbsolutePoseQuality {
                inlier_ratio: idx.len() as f64 / self.n_input.max(1) as f64,
                rms_error_px: (sum_sq / idx.len() as f64).sqrt(),
                iterations,
            },
        })
    }
}
