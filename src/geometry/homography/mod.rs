//! Robust homography between two calibrated views: LO-RANSAC ([`crate::geometry::ransac`]) around the
//! 4-point DLT, scored by the transfer error in camera b's pixels, and the decomposition of a homography
//! into motions ([`decompose_homography`]).
//!
//! The relative-pose estimator uses it to recognise planar and panoramic (rotation-only) configurations and
//! to search for the pose of a scene dominated by one plane by plane and parallax
//! ([`crate::geometry::relative_pose`]); it is public for callers that want the homography itself.
//!
//! Scoring: the one-sided squared transfer error `‖x_b − π(H·x_a)‖²` in pixels of camera b, truncated at
//! the threshold (MSAC), verified with SPRT. Local optimisation refits the DLT on the inliers at a shrinking
//! multiple of the threshold. There is no non-linear refinement of `H`: its consumers only need its inlier
//! set and, for the pose, a starting point that the essential-matrix refinement then polishes.
//!
//! What it does not do: rectify images or estimate uncalibrated homographies with distortion.

// `!(x > y)` is deliberate: it is true for NaN, which must take the rejecting branch.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

mod decompose;
mod dlt;

pub use decompose::{decompose_homography, PlanarMotion};

use nalgebra::Matrix3;

use self::dlt::{homography_4pt, homography_dlt, oriented_sample, transfer};
use super::camera::PinholeCamera;
use super::correspondences::{prepare, Correspondences};
use super::ransac::{
    self, verify_errors, Candidate, Estimator, Limits, Sampler, SprtTest, Verification,
};
use super::{NoPose, PoseError, RansacOptions};
use crate::util::rng::SplitMix64;
use crate::util::stats::subsample_evenly;

/// A homography between two views.
#[derive(Debug, Clone)]
pub struct Homography {
    /// `x_b ∝ H·x_a` in pixels (for distortion-free cameras; with distortion it maps undistorted pixels).
    pub matrix: Matrix3<f64>,
    /// The same map in normalised camera coordinates (`K_b⁻¹·H·K_a`), `‖·‖ = 1`.
    pub normalised: Matrix3<f64>,
    /// Per-correspondence inlier flag (same order as the input).
    pub inliers: Vec<bool>,
    /// Number of `true` entries in [`Self::inliers`].
    pub num_inliers: usize,
}

/// Estimates the homography `x_b ∝ H·x_a` from pixel correspondences; the threshold is
/// [`RansacOptions::threshold_px`] on the transfer error in image b. Same checks and errors as the relative
/// pose; deterministic for a fixed seed.
pub fn estimate_homography(
    points_a: &[[f64; 2]],
    points_b: &[[f64; 2]],
    camera_a: &PinholeCamera,
    camera_b: &PinholeCamera,
    priority: Option<&[f32]>,
    options: &RansacOptions,
) -> Result<Homography, PoseError> {
    let problem = prepare(
        points_a, points_b, camera_a, camera_b, priority, None, options,
    )?;
    let pts = &problem.pts;
    let est = HomographyEstimator::new(pts, camera_b, options.threshold_px);
    let mut rng = SplitMix64::new(options.seed ^ 0x686F_6D6F);
    let best = fit(&est, priority.is_some(), options, &mut rng);
    let need = options.min_inliers.max(4);
    let best = match best {
        Some(b) if b.inliers >= need => b,
        other => {
            return Err(NoPose::NoConsensus {
                best_inliers: other.map_or(0, |b| b.inliers),
                need,
            }
            .into())
        }
    };
    let mut inliers = vec![false; problem.n_input];
    for i in est.inlier_indices(&best.model, 1.0) {
        inliers[pts.orig[i as usize]] = true;
    }
    let ka = camera_matrix(camera_a);
    let kb = camera_matrix(camera_b);
    let matrix = kb * best.model * ka.try_inverse().unwrap_or_else(Matrix3::identity);
    Ok(Homography {
        matrix: matrix / matrix[(2, 2)],
        normalised: best.model,
        num_inliers: inliers.iter().filter(|&&v| v).count(),
        inliers,
    })
}

fn camera_matrix(c: &PinholeCamera) -> Matrix3<f64> {
    Matrix3::new(c.fx, 0.0, c.cx, 0.0, c.fy, c.cy, 0.0, 0.0, 1.0)
}

/// LO-RANSAC for a homography on prepared correspondences (`prosac`: they are sorted by priority).
pub(crate) fn fit(
    est: &HomographyEstimator<'_>,
    prosac: bool,
    options: &RansacOptions,
    rng: &mut SplitMix64,
) -> Option<Candidate<Matrix3<f64>>> {
    let n = est.num_points();
    if n < 4 {
        return None;
    }
    let mut sampler = Sampler::new(n, 4, prosac);
    let limits = Limits {
        min_iterations: options.min_iterations,
        max_iterations: options.max_iterations,
        confidence: options.confidence,
        known_inliers: 0,
    };
    ransac::run(est, &mut sampler, rng, limits, 0.1).0
}

/// Scoring and refitting of homographies on one set of correspondences (normalised coordinates).
pub(crate) struct HomographyEstimator<'a> {
    pts: &'a Correspondences,
    fx: f64,
    fy: f64,
    thr_sq: f64,
}

/// Most inliers a local-optimisation refit uses (an even spread of them).
const LO_MAX_POINTS: usize = 256;

impl<'a> HomographyEstimator<'a> {
    /// Errors in pixels of `camera_b`, threshold `thr_px`.
    pub fn new(pts: &'a Correspondences, camera_b: &PinholeCamera, thr_px: f64) -> Self {
        Self {
            pts,
            fx: camera_b.fx,
            fy: camera_b.fy,
            thr_sq: thr_px * thr_px,
        }
    }

    /// Squared transfer error of correspondence `i` in pixels² (infinite at infinity).
    #[inline]
    fn error_sq(&self, h: &Matrix3<f64>, i: usize) -> f64 {
        let p = self.pts.get(i);
        match transfer(h, [p[0], p[1]]) {
            Some(q) => ((q[0] - p[2]) * self.fx).powi(2) + ((q[1] - p[3]) * self.fy).powi(2),
            None => f64::INFINITY,
        }
    }

    /// Full MSAC score and inlier count.
    pub fn score(&self, h: &Matrix3<f64>) -> (f64, usize) {
        let (mut score, mut inliers) = (0.0, 0);
        for i in 0..self.pts.len() {
            let e = self.error_sq(h, i);
            if e < self.thr_sq {
                score += e;
                inliers += 1;
            } else {
                score += self.thr_sq;
            }
        }
        (score, inliers)
    }

    /// Indices of the correspondences within `scale` × the threshold.
    pub fn inlier_indices(&self, h: &Matrix3<f64>, scale: f64) -> Vec<u32> {
        let t = self.thr_sq * scale * scale;
        (0..self.pts.len() as u32)
            .filter(|&i| self.error_sq(h, i as usize) < t)
            .collect()
    }

    fn sample_points(&self, sample: &[usize]) -> ([[f64; 2]; 4], [[f64; 2]; 4]) {
        let a = std::array::from_fn(|k| {
            let p = self.pts.get(sample[k]);
            [p[0], p[1]]
        });
        let b = std::array::from_fn(|k| {
            let p = self.pts.get(sample[k]);
            [p[2], p[3]]
        });
        (a, b)
    }
}

impl Estimator for HomographyEstimator<'_> {
    type Hypothesis = Matrix3<f64>;
    type Model = Matrix3<f64>;
    const SAMPLE_SIZE: usize = 4;
    const MODELS_PER_SAMPLE: f64 = 1.0;

    fn num_points(&self) -> usize {
        self.pts.len()
    }

    fn hypotheses(&self, sample: &[usize], out: &mut Vec<Matrix3<f64>>) {
        let (a, b) = self.sample_points(sample);
        if oriented_sample(&a, &b) {
            out.extend(homography_4pt(&a, &b));
        }
    }

    /// Verification in the stored (priority) order: the points are not reordered for SPRT here, which is
    /// conservative only when the priority correlates with consistency (it never accepts a model early).
    fn verify(&self, h: &Matrix3<f64>, test: &SprtTest, bar: f64) -> Verification {
        verify_errors(self.pts.len(), self.thr_sq, test, bar, |i| {
            self.error_sq(h, i)
        })
    }

    fn model(&self, h: &Matrix3<f64>, _sample: &[usize]) -> Option<Matrix3<f64>> {
        Some(*h)
    }

    fn local_optimisation(&self, cand: &mut Candidate<Matrix3<f64>>) {
        for scale in [2.0, 1.5, 1.0, 1.0] {
            let mut idx = self.inlier_indices(&cand.model, scale);
            if idx.len() < 8 {
                return;
            }
            subsample_evenly(&mut idx, LO_MAX_POINTS);
            let a: Vec<[f64; 2]> = idx
                .iter()
                .map(|&i| {
                    let p = self.pts.get(i as usize);
                    [p[0], p[1]]
                })
                .collect();
            let b: Vec<[f64; 2]> = idx
                .iter()
                .map(|&i| {
                    let p = self.pts.get(i as usize);
                    [p[2], p[3]]
                })
                .collect();
            let Some(h) = homography_dlt(&a, &b) else {
                return;
            };
            let (score, inliers) = self.score(&h);
            if score < cand.score {
                *cand = Candidate {
                    model: h,
                    score,
                    inliers,
                };
            } else if scale <= 1.0 {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
