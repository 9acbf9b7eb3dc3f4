//! The essential-matrix estimator that [`crate::geometry::ransac::run`] drives: 5-point minimal solutions,
//! SPRT verification and MSAC scoring of the Sampson error (the vectorised [`super::kernels`]), the pose
//! chosen by cheirality on the sample, and local optimisation (LO-RANSAC) by a few robust
//! Levenberg–Marquardt steps on the inliers.
//!
//! Local optimisation takes inlier sets at a shrinking multiple of the threshold (Lebeda et al. 2012: the
//! looser first set pulls in the true inliers the minimal-sample model missed) and refits on at most
//! [`LO_MAX_POINTS`] of them, evenly spread: LO only has to reach the right basin; the final refinement uses
//! every inlier.

use nalgebra::{Matrix3, Vector3};

use super::degeneracy::fits_rotation;
use super::kernels::{self};
use super::lm::{to_array, Lm, LM_REL_TOL};
use crate::geometry::camera::PinholeCamera;
use crate::geometry::correspondences::{Correspondences, SAMPLE};
use crate::geometry::essential::{essential_from_pose, pose_from_essential, PixelWeights};
use crate::geometry::five_point::solve_five_point;
use crate::geometry::ransac::{Candidate, Estimator, SprtTest, Verification};
use crate::util::stats::subsample_evenly;

/// Most inliers a local-optimisation refit uses (an even spread of them). With every inlier LO was a third
/// of the solver's time, with no gain in accuracy on the synthetic benchmark; 128 lost a little.
pub(crate) const LO_MAX_POINTS: usize = 256;

/// A relative pose `x_b = R·x_a + t`, `|t| = 1`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pose {
    pub r: Matrix3<f64>,
    pub t: Vector3<f64>,
}

impl Pose {
    pub fn essential(&self) -> [f64; 9] {
        to_array(&essential_from_pose(&self.r, &self.t))
    }
}

/// Scoring and refitting of essential matrices on one set of correspondences.
pub(crate) struct EssentialEstimator<'a> {
    pub pts: &'a Correspondences,
    pub w: PixelWeights,
    thr_sq: f64,
    /// A rotation-only model of the pair with camera b and the threshold: samples it explains entirely
    /// are skipped (see [`Estimator::hypotheses`]).
    rotation: Option<(Matrix3<f64>, PinholeCamera, f64)>,
    /// The points in verification order (a fixed random permutation), contiguous for the kernel.
    ordered: Correspondences,
    lo: Lm<'a>,
}

impl<'a> EssentialEstimator<'a> {
    /// `verify_order`: the random permutation in which hypotheses are verified.
    pub fn new(
        pts: &'a Correspondences,
        w: PixelWeights,
        thr_px: f64,
        verify_order: &[u32],
    ) -> Self {
        Self {
            pts,
            w,
            thr_sq: thr_px * thr_px,
            rotation: None,
            ordered: pts.permuted(verify_order),
            lo: Lm {
                pts,
                w,
                cauchy: Some(thr_px),
            },
        }
    }

    /// Skip samples that the rotation `r` explains entirely (their essential matrices have an arbitrary
    /// translation: a clean sample of a rotation-only scene, or of its distant background, determines
    /// nothing, yet every such hypothesis verifies well and costs a full pass over the points).
    pub fn skip_samples_explained_by(
        &mut self,
        r: Matrix3<f64>,
        camera_b: &PinholeCamera,
        thr: f64,
    ) {
        self.rotation = Some((r, *camera_b, thr));
    }

    /// Full MSAC score and inlier count (no early exit).
    pub fn score(&self, e: &[f64; 9]) -> (f64, usize) {
        kernels::score(e, &self.w, &self.pts.soa(), self.thr_sq)
    }

    /// Indices of the points within `scale` × the threshold.
    pub fn inlier_indices(&self, e: &[f64; 9], scale: f64) -> Vec<u32> {
        kernels::inliers(e, &self.w, &self.pts.soa(), self.thr_sq * scale * scale)
    }

    /// Verification of `e` on `pts` (in their stored order) with this estimator's threshold and weights.
    pub fn verify_on(
        &self,
        pts: &Correspondences,
        e: &Matrix3<f64>,
        test: &SprtTest,
        bar: f64,
    ) -> Verification {
        kernels::verify(&to_array(e), &self.w, &pts.soa(), self.thr_sq, test, bar)
    }

    /// Number of the pairs `(xa[k], xb[k])` (normalised) within the threshold of `e`.
    pub fn count_inliers_of(&self, e: &[f64; 9], xa: &[[f64; 2]], xb: &[[f64; 2]]) -> usize {
        xa.iter()
            .zip(xb)
            .filter(|(a, b)| {
                crate::geometry::essential::sampson_sq(e, &self.w, a[0], a[1], b[0], b[1])
                    < self.thr_sq
            })
            .count()
    }

    /// A scored candidate for `pose`.
    pub fn candidate(&self, pose: Pose) -> Candidate<Pose> {
        let (score, inliers) = self.score(&pose.essential());
        Candidate {
            model: pose,
            score,
            inliers,
        }
    }
}

impl Estimator for EssentialEstimator<'_> {
    type Hypothesis = Matrix3<f64>;
    type Model = Pose;
    const SAMPLE_SIZE: usize = SAMPLE;
    const MODELS_PER_SAMPLE: f64 = 4.0;

    fn num_points(&self) -> usize {
        self.pts.len()
    }

    fn hypotheses(&self, sample: &[usize], out: &mut Vec<Matrix3<f64>>) {
        if let Some((r, cam, thr)) = &self.rotation {
            if sample
                .iter()
                .all(|&i| fits_rotation(r, self.pts.get(i), cam, *thr))
            {
                return;
            }
        }
        let mut xa = [[0.0; 2]; SAMPLE];
        let mut xb = [[0.0; 2]; SAMPLE];
        for (k, &i) in sample.iter().enumerate() {
            let p = self.pts.get(i);
            xa[k] = [p[0], p[1]];
            xb[k] = [p[2], p[3]];
        }
        out.extend_from_slice(solve_five_point(&xa, &xb).as_slice());
    }

    fn verify(&self, e: &Matrix3<f64>, test: &SprtTest, bar: f64) -> Verification {
        self.verify_on(&self.ordered, e, test, bar)
    }

    /// Cheirality on the sample picks `(R, t)`: the decomposition with the most of the five points in
    /// front of both cameras, if that is a majority. Not all five: at low parallax the depth of a noisy
    /// point changes sign easily, and requiring all five rejected every correct hypothesis of some
    /// small-baseline pairs (no consensus after 10 000 samples); PoseLib checks a single point. The final
    /// refinement re-decides on all inliers.
    fn model(&self, e: &Matrix3<f64>, sample: &[usize]) -> Option<Pose> {
        let pts: [[f64; 4]; SAMPLE] = std::array::from_fn(|k| self.pts.get(sample[k]));
        let (r, t, front) = pose_from_essential(e, &pts)?;
        (2 * front > SAMPLE).then_some(Pose { r, t })
    }

    fn local_optimisation(&self, cand: &mut Candidate<Pose>) {
        for scale in [2.0, 1.5, 1.0, 1.0, 1.0, 1.0] {
            let Pose { r, t } = cand.model;
            let mut idx = self.inlier_indices(&cand.model.essential(), scale);
            if idx.len() < SAMPLE {
                return;
            }
            subsample_evenly(&mut idx, LO_MAX_POINTS);
            let (r2, t2) = self.lo.refine(r, t, &idx, 10, LM_REL_TOL);
            let refit = self.candidate(Pose { r: r2, t: t2 });
            if refit.score < cand.score {
                *cand = refit;
            } else if scale <= 1.0 {
                // the first failed refit at the final threshold ends LO
                return;
            }
        }
    }
}
