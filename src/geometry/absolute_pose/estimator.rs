//! The absolute-pose estimator that [`crate::geometry::ransac::run`] drives: P3P minimal solutions, SPRT
//! verification and MSAC scoring of the reprojection error in pixels, and local optimisation by a few
//! robust Levenberg–Marquardt steps on the inliers at a shrinking multiple of the threshold (as the
//! relative pose's LO does).

use nalgebra::{Matrix3, Vector3};

use super::lm::Observations;
use super::p3p::{p3p, CameraFromWorld};
use crate::geometry::ransac::{verify_errors, Candidate, Estimator, SprtTest, Verification};
use crate::util::stats::subsample_evenly;

/// Most inliers a local-optimisation refit uses (an even spread of them).
pub(crate) const LO_MAX_POINTS: usize = 256;

/// Scoring and refitting of camera poses on one set of 3-D ↔ 2-D correspondences (in verification order).
pub(crate) struct PnpEstimator<'a> {
    pub obs: Observations<'a>,
    pub bearings: Vec<Vector3<f64>>,
    pub thr_px: f64,
}

impl PnpEstimator<'_> {
    fn thr_sq(&self) -> f64 {
        self.thr_px * self.thr_px
    }

    /// Full MSAC score and inlier count.
    pub fn score(&self, r: &Matrix3<f64>, t: &Vector3<f64>) -> (f64, usize) {
        let thr_sq = self.thr_sq();
        let mut score = 0.0;
        let mut inliers = 0;
        for i in 0..self.obs.world.len() {
            let e = self.obs.error_sq(r, t, i);
            if e < thr_sq {
                score += e;
                inliers += 1;
            } else {
                score += thr_sq;
            }
        }
        (score, inliers)
    }

    /// Indices of the correspondences within `scale` × the threshold.
    pub fn inlier_indices(&self, r: &Matrix3<f64>, t: &Vector3<f64>, scale: f64) -> Vec<u32> {
        let thr_sq = self.thr_sq() * scale * scale;
        (0..self.obs.world.len())
            .filter(|&i| self.obs.error_sq(r, t, i) < thr_sq)
            .map(|i| i as u32)
            .collect()
    }
}

impl Estimator for PnpEstimator<'_> {
    type Hypothesis = CameraFromWorld;
    type Model = CameraFromWorld;
    const SAMPLE_SIZE: usize = 3;
    const MODELS_PER_SAMPLE: f64 = 2.0;

    fn num_points(&self) -> usize {
        self.obs.world.len()
    }

    fn hypotheses(&self, sample: &[usize], out: &mut Vec<CameraFromWorld>) {
        let y = [
            self.bearings[sample[0]],
            self.bearings[sample[1]],
            self.bearings[sample[2]],
        ];
        let x = [
            self.obs.world[sample[0]],
            self.obs.world[sample[1]],
            self.obs.world[sample[2]],
        ];
        p3p(&y, &x, out);
    }

    fn verify(&self, h: &CameraFromWorld, test: &SprtTest, bar: f64) -> Verification {
        verify_errors(self.obs.world.len(), self.thr_sq(), test, bar, |i| {
            self.obs.error_sq(&h.0, &h.1, i)
        })
    }

    fn model(&self, h: &CameraFromWorld, _sample: &[usize]) -> Option<CameraFromWorld> {
        Some(*h)
    }

    fn local_optimisation(&self, cand: &mut Candidate<CameraFromWorld>) {
        for scale in [2.0, 1.5, 1.0] {
            let mut idx = self.inlier_indices(&cand.model.0, &cand.model.1, scale);
            if idx.len() < 6 {
                return;
            }
            subsample_evenly(&mut idx, LO_MAX_POINTS);
            let (r, t) = self
                .obs
                .refine(cand.model.0, cand.model.1, &idx, Some(self.thr_px), 10);
            let (score, inliers) = self.score(&r, &t);
            if score < cand.score {
                *cand = Candidate {
                    model: (r, t),
                    score,
                    inliers,
                };
            } else {
                return;
            }
        }
    }
}
