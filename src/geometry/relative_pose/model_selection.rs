//! Scenes dominated by one plane: recognising them, searching their pose by plane and parallax, and telling
//! a determined pose from an ambiguous one.
//!
//! Why this is needed: when most correspondences lie on one plane (a wall, the floor), many essential
//! matrices explain the plane's points equally well, and the stopping rule of LO-RANSAC is satisfied by the
//! plane's large support long before a sample with enough off-plane points has been drawn; the estimate
//! then lands on a wrong pose with hundreds of sub-pixel inliers. Three steps fix it:
//!
//! 1. **The plane** ([`find_plane`]): a homography by LO-RANSAC on the same correspondences (transfer error,
//!    [`H_THRESHOLD_SCALE`] × the pose threshold, since a transfer error has two degrees of freedom against
//!    the Sampson error's one). Its inliers over the essential matrix's give the configuration (planar at
//!    ≥ [`PLANAR_RATIO`], COLMAP's `max_H_inlier_ratio`).
//! 2. **Plane and parallax** (DEGENSAC, Chum, Werner & Matas 2005, here for the calibrated case): when the
//!    plane carries ≥ [`PLANE_PARALLAX_TRIGGER`] of the inliers, two off-plane correspondences fix the
//!    epipole `e' = (x_b,i × H·x_a,i) × (x_b,j × H·x_a,j)` and with it `E = [e']ₓ·H` (since
//!    `[t]ₓ(R + t·nᵀ/d) = [t]ₓR`); these 2-point samples are drawn from the points the homography does not
//!    explain, so the correct pose is found after a few dozen samples however small the off-plane share. The
//!    homography's own physically valid motions ([`decompose_homography`] + cheirality) are candidates too.
//!    Every candidate is locally optimised like a RANSAC hypothesis and the best MSAC score wins.
//! 3. **Ambiguity**: a rival is a candidate that explains the plane with a pose distinct from the
//!    winner's and does not share most of the winner's off-plane inliers (one that does is the same
//!    explanation within noise, as the translation of a small baseline wobbles). Against a rival the winner
//!    needs at least [`MIN_DECISIVE`] off-plane inliers of its own, and three times the rival's own; otherwise
//!    the result is [`crate::geometry::NoPose::PlanarAmbiguity`] — the rule for a truly planar scene with two
//!    valid decompositions — never one of them presented as the pose. Chance agreement is rare: an outlier
//!    falls within a pixel of a wrong epipolar line with probability ≈ 2 px / the image's extent.

use nalgebra::{Matrix3, Vector3};

use super::estimator::{EssentialEstimator, Pose};
use crate::geometry::camera::PinholeCamera;
use crate::geometry::correspondences::Correspondences;
use crate::geometry::essential::{count_in_front, pose_from_essential, skew};
use crate::geometry::homography::{self, decompose_homography, HomographyEstimator};
use crate::geometry::metrics::{rotation_error_deg, translation_error_deg};
use crate::geometry::ransac::{
    self, Candidate, Estimator, Limits, Sampler, SprtTest, Verification,
};
use crate::geometry::RansacOptions;
use crate::util::rng::SplitMix64;

/// Homography inliers / pose inliers at or above which the configuration is planar (COLMAP's default
/// `max_H_inlier_ratio`).
pub const PLANAR_RATIO: f64 = 0.8;

/// Homography inliers / pose inliers at or above which the plane-and-parallax search runs and ambiguity is
/// checked: from here on the plane's support can end the essential-matrix search early.
pub const PLANE_PARALLAX_TRIGGER: f64 = 0.5;

/// Threshold of the homography's transfer error relative to the pose's Sampson threshold.
pub const H_THRESHOLD_SCALE: f64 = 2.0;

/// Off-plane inliers of its own (not shared with a rival) that the winner needs to be the pose.
pub const MIN_DECISIVE: usize = 8;

/// Fraction of the plane's points an alternative must explain to count as an explanation of the plane.
const EXPLAINS_PLANE: f64 = 0.9;

/// The dominant plane of a pair.
pub(crate) struct Plane {
    /// Homography in normalised coordinates.
    pub h: Matrix3<f64>,
    /// Per correspondence (in the estimator's order): on the plane.
    pub on_plane: Vec<bool>,
    /// Number of `true` in `on_plane`.
    pub count: usize,
}

/// The best homography of the correspondences, if one has at least four inliers.
pub(crate) fn find_plane(
    pts: &Correspondences,
    camera_b: &PinholeCamera,
    options: &RansacOptions,
    prosac: bool,
) -> Option<Plane> {
    let est = HomographyEstimator::new(pts, camera_b, options.threshold_px * H_THRESHOLD_SCALE);
    let mut rng = SplitMix64::new(options.seed ^ 0x0070_6C61_6E65);
    let best = homography::fit(&est, prosac, options, &mut rng)?;
    let mut on_plane = vec![false; pts.len()];
    let idx = est.inlier_indices(&best.model, 1.0);
    for &i in &idx {
        on_plane[i as usize] = true;
    }
    Some(Plane {
        h: best.model,
        on_plane,
        count: idx.len(),
    })
}

/// The homography's motions that put at least 90% of the plane's points in front of both cameras, as
/// poses (unit `t`; the rotation-only motion of a homography that is a rotation is left out: that case is
/// the panoramic one).
fn plane_motions(plane: &Plane, pts: &Correspondences) -> Vec<Pose> {
    let plane_pts: Vec<[f64; 4]> = (0..pts.len())
        .filter(|&i| plane.on_plane[i])
        .map(|i| pts.get(i))
        .collect();
    decompose_homography(&plane.h)
        .into_iter()
        .filter(|m| m.translation.norm() > 1e-9)
        .map(|m| Pose {
            r: m.rotation,
            t: m.translation.normalize(),
        })
        .filter(|p| {
            count_in_front(&p.r, &p.t, plane_pts.iter().copied()) as f64
                >= 0.9 * plane_pts.len() as f64
        })
        .collect()
}

/// Candidates for a plane-dominated pair: the best plane-and-parallax model and the homography's valid
/// motions, each locally optimised.
pub(crate) fn plane_candidates(
    est: &EssentialEstimator<'_>,
    plane: &Plane,
    options: &RansacOptions,
    rng: &mut SplitMix64,
) -> Vec<Candidate<Pose>> {
    let mut out = Vec::new();
    for pose in plane_motions(plane, est.pts) {
        let mut cand = est.candidate(pose);
        est.local_optimisation(&mut cand);
        out.push(cand);
    }
    let pp = PlaneParallax::new(est, plane);
    if pp.off.len() >= 2 {
        let mut sampler = Sampler::new(pp.off.len(), 2, false);
        let limits = Limits {
            min_iterations: options.min_iterations.min(100),
            max_iterations: options.max_iterations,
            confidence: options.confidence,
        };
        if let (Some(best), _) = ransac::run(&pp, &mut sampler, rng, limits, 0.1) {
            out.push(best);
        }
    }
    out
}

/// Inliers of `pose` (at the pose threshold) that are not on the plane, ascending.
pub(crate) fn off_plane_inliers(
    est: &EssentialEstimator<'_>,
    plane: &Plane,
    pose: &Pose,
) -> Vec<u32> {
    let mut idx = est.inlier_indices(&pose.essential(), 1.0);
    idx.retain(|&i| !plane.on_plane[i as usize]);
    idx
}

/// Number of values two ascending index lists share.
pub(crate) fn shared(a: &[u32], b: &[u32]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

/// Whether `pose` explains the plane (at least [`EXPLAINS_PLANE`] of its points are inliers).
pub(crate) fn explains_plane(est: &EssentialEstimator<'_>, plane: &Plane, pose: &Pose) -> bool {
    let on = est
        .inlier_indices(&pose.essential(), 1.0)
        .iter()
        .filter(|&&i| plane.on_plane[i as usize])
        .count();
    on as f64 >= EXPLAINS_PLANE * plane.count as f64
}

/// Whether two poses differ by more than estimation noise (1° of rotation or 3° of translation direction).
pub(crate) fn distinct(p: &Pose, q: &Pose) -> bool {
    rotation_error_deg(&p.r, &q.r) > 1.0 || translation_error_deg(&p.t, &q.t) > 3.0
}

/// Plane-and-parallax hypotheses: `E = [e']ₓ·H` from two off-plane correspondences.
struct PlaneParallax<'a> {
    base: &'a EssentialEstimator<'a>,
    h: Matrix3<f64>,
    /// The correspondences the homography does not explain (the sampling pool).
    off: Vec<usize>,
    /// A few plane points that cheirality checks with the sample.
    anchors: Vec<usize>,
    n_plane: usize,
}

impl<'a> PlaneParallax<'a> {
    fn new(base: &'a EssentialEstimator<'a>, plane: &Plane) -> Self {
        let n = base.pts.len();
        let off: Vec<usize> = (0..n).filter(|&i| !plane.on_plane[i]).collect();
        let on: Vec<usize> = (0..n).filter(|&i| plane.on_plane[i]).collect();
        let anchors = (0..3.min(on.len())).map(|k| on[k * on.len() / 3]).collect();
        Self {
            base,
            h: plane.h,
            off,
            anchors,
            n_plane: plane.count,
        }
    }

    /// `x_b × H·x_a`: the line through correspondence `i`'s point in b and its plane transfer.
    fn parallax_line(&self, i: usize) -> Vector3<f64> {
        let p = self.base.pts.get(i);
        let hx = self.h * Vector3::new(p[0], p[1], 1.0);
        Vector3::new(p[2], p[3], 1.0).cross(&hx)
    }
}

impl Estimator for PlaneParallax<'_> {
    type Hypothesis = Matrix3<f64>;
    type Model = Pose;
    const SAMPLE_SIZE: usize = 2;
    const MODELS_PER_SAMPLE: f64 = 1.0;

    fn num_points(&self) -> usize {
        self.base.pts.len()
    }

    fn hypotheses(&self, sample: &[usize], out: &mut Vec<Matrix3<f64>>) {
        let (i, j) = (self.off[sample[0]], self.off[sample[1]]);
        let e = self.parallax_line(i).cross(&self.parallax_line(j));
        let norm = e.norm();
        if norm.is_nan() || norm <= 1e-12 {
            return;
        }
        let ess = skew(&(e / norm)) * self.h;
        let s = ess.norm();
        if s > 1e-12 && ess.iter().all(|v| v.is_finite()) {
            out.push(ess / s);
        }
    }

    fn verify(&self, e: &Matrix3<f64>, test: &SprtTest, bar: f64) -> Verification {
        self.base.verify(e, test, bar)
    }

    /// Cheirality on the two sampled points and the plane anchors.
    fn model(&self, e: &Matrix3<f64>, sample: &[usize]) -> Option<Pose> {
        let pts: Vec<[f64; 4]> = [self.off[sample[0]], self.off[sample[1]]]
            .into_iter()
            .chain(self.anchors.iter().copied())
            .map(|i| self.base.pts.get(i))
            .collect();
        let (r, t, front) = pose_from_essential(e, &pts)?;
        (front == pts.len()).then_some(Pose { r, t })
    }

    /// The hypothesis `[e']ₓ·H` is not on the essential manifold (it explains the plane for any `e'`): the
    /// pose decomposed from it is scored afresh before the refit.
    fn local_optimisation(&self, cand: &mut Candidate<Pose>) {
        *cand = self.base.candidate(cand.model);
        self.base.local_optimisation(cand);
    }

    /// Only the off-plane inliers can be drawn.
    fn sampling_inlier_ratio(&self, inliers: usize) -> f64 {
        inliers.saturating_sub(self.n_plane) as f64 / self.off.len().max(1) as f64
    }
}
