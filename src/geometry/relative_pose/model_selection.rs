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
//!    Every candidate is locally optimised like a RANSAC hypothesis; candidates that put clearly fewer of
//!    the plane's points in front of both cameras than the best one does are dropped
//!    ([`keep_in_front_of_the_plane`]), and the best MSAC score among the rest wins.
//! 3. **Ambiguity**: a rival is a candidate that explains the plane with a pose distinct from the
//!    winner's beyond the winner's estimation noise ([`distinct`]: at low parallax the translation of
//!    equally good refits wobbles by degrees, which is one explanation, not two). Against a rival the winner
//!    needs off-plane inliers of its own (not shared with the rival): at least [`MIN_DECISIVE`], more than
//!    the rival's own by [`SIGN_TEST_Z`] standard deviations of a sign test, and more than chance explains
//!    (the inlier rate of the winner on random
//!    pairings of the off-plane points, doubled for the selection of the best refit, at a Poisson tail of
//!    ~10⁻⁴: [`chance_off_plane_inliers`]); otherwise
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

/// Transfer error, relative to the homography threshold, beyond which a point counts as off the plane
/// (with pixel noise σ the plane's points exceed 3 × 2σ·√2 with probability ≈ e⁻¹⁸).
pub const OFF_PLANE_SCALE: f64 = 3.0;

/// Most plane-and-parallax samples: enough to draw two off-plane inliers with confidence 0.9999 when they
/// are ≥ 7% of the points off the plane.
pub const PLANE_PARALLAX_SAMPLES: usize = 2000;

/// Standard deviations by which the winner's own off-plane inliers must exceed a rival's (a sign test on
/// the points only one of the two explains).
pub const SIGN_TEST_Z: f64 = 2.0;

/// Off-plane inliers of its own (not shared with a rival) that the winner needs to be the pose.
pub const MIN_DECISIVE: usize = 8;

/// Share of the winner's plane inliers an alternative must have to count as an explanation of the plane.
const EXPLAINS_PLANE: f64 = 0.9;

/// The dominant plane of a pair.
pub(crate) struct Plane {
    /// Homography in normalised coordinates.
    pub h: Matrix3<f64>,
    /// Per correspondence (in the estimator's order): on the plane.
    pub on_plane: Vec<bool>,
    /// Per correspondence: clearly off the plane (transfer error above [`OFF_PLANE_SCALE`] × the
    /// homography threshold): the points whose support is evidence about the pose. The band between holds
    /// plane points with a larger error, which every explanation of the plane shares.
    pub off_plane: Vec<bool>,
    /// Number of `true` in `on_plane`.
    pub count: usize,
    /// Largest translation over plane distance (`‖t‖/d`) of the homography's valid motions.
    pub translation: f64,
    /// The valid motions as poses (unit `t`).
    pub motions: Vec<Pose>,
}

impl Plane {
    /// Whether the homography is induced by a plane rather than (nearly) by the rotation alone: one of
    /// its physically valid motions translates by at least [`PLANE_MIN_TRANSLATION`] of the plane's
    /// distance.
    /// At smaller baselines every point fits a homography to within a few pixels whatever its depth, and
    /// the pose is the general case's (the parallax of all points decides), not a choice between the
    /// motions of a plane.
    pub fn is_a_plane(&self) -> bool {
        self.translation >= PLANE_MIN_TRANSLATION
    }
}

/// Translation over plane distance below which a homography counts as a rotation, not a plane.
pub const PLANE_MIN_TRANSLATION: f64 = 0.05;

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
    let mut off_plane = vec![true; pts.len()];
    for i in est.inlier_indices(&best.model, OFF_PLANE_SCALE) {
        off_plane[i as usize] = false;
    }
    let mut plane = Plane {
        h: best.model,
        on_plane,
        off_plane,
        count: idx.len(),
        translation: 0.0,
        motions: Vec::new(),
    };
    let valid = plane_motions(&plane, pts);
    plane.translation = valid.iter().map(|(_, d)| *d).fold(0.0, f64::max);
    plane.motions = valid.into_iter().map(|(p, _)| p).collect();
    Some(plane)
}

/// The homography's motions that put at least 90% of the plane's points in front of both cameras, as
/// poses (unit `t`) with their `‖t‖/d` (the rotation-only motion of a homography that is a rotation is
/// left out: that case is the panoramic one).
fn plane_motions(plane: &Plane, pts: &Correspondences) -> Vec<(Pose, f64)> {
    let plane_pts: Vec<[f64; 4]> = (0..pts.len())
        .filter(|&i| plane.on_plane[i])
        .map(|i| pts.get(i))
        .collect();
    decompose_homography(&plane.h)
        .into_iter()
        .filter(|m| m.translation.norm() > 1e-9)
        .map(|m| {
            let pose = Pose {
                r: m.rotation,
                t: m.translation.normalize(),
            };
            (pose, m.translation.norm())
        })
        .filter(|(p, _)| {
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
    for &pose in &plane.motions {
        let mut cand = est.candidate(pose);
        est.local_optimisation(&mut cand);
        out.push(cand);
    }
    let pp = PlaneParallax::new(est, plane, rng);
    if pp.off.len() >= 2 {
        let mut sampler = Sampler::new(pp.off.len(), 2, false);
        let limits = Limits {
            min_iterations: options.min_iterations.min(100),
            max_iterations: options.max_iterations.min(PLANE_PARALLAX_SAMPLES),
            confidence: options.confidence,
            known_inliers: 0,
        };
        if let (Some(best), _) = ransac::run(&pp, &mut sampler, rng, limits, 0.1) {
            out.push(best);
        }
    }
    out
}

/// Cheirality on the plane decides between motions where it can: of two explanations of a plane seen
/// across a wide field of view, the wrong one usually puts part of the plane behind a camera. Keeps the
/// candidates whose share of plane points in front of both cameras is within [`FRONT_SLACK`] of the best
/// candidate's.
pub(crate) fn keep_in_front_of_the_plane(
    pts: &Correspondences,
    plane: &Plane,
    candidates: &mut Vec<Candidate<Pose>>,
) {
    let plane_pts: Vec<[f64; 4]> = (0..pts.len())
        .filter(|&i| plane.on_plane[i])
        .map(|i| pts.get(i))
        .collect();
    if plane_pts.is_empty() {
        return;
    }
    let front: Vec<f64> = candidates
        .iter()
        .map(|c| {
            count_in_front(&c.model.r, &c.model.t, plane_pts.iter().copied()) as f64
                / plane_pts.len() as f64
        })
        .collect();
    let best = front.iter().copied().fold(0.0, f64::max);
    let mut k = 0;
    candidates.retain(|_| {
        k += 1;
        front[k - 1] >= best - FRONT_SLACK
    });
}

/// How much lower a candidate's share of plane points in front of both cameras may be than the best's.
pub const FRONT_SLACK: f64 = 0.03;

/// Inliers of `pose` (at the pose threshold) that are not on the plane, ascending.
pub(crate) fn off_plane_inliers(
    est: &EssentialEstimator<'_>,
    plane: &Plane,
    pose: &Pose,
) -> Vec<u32> {
    let mut idx = est.inlier_indices(&pose.essential(), 1.0);
    idx.retain(|&i| plane.off_plane[i as usize]);
    idx
}

/// How many off-plane points `pose` would count as inliers by chance: the inlier rate of `pose` on random
/// pairings of the off-plane points' positions in a with their positions in b (which destroys any true
/// correspondence but keeps where the points lie in each image), times the number of off-plane points.
pub(crate) fn chance_off_plane_inliers(
    est: &EssentialEstimator<'_>,
    plane: &Plane,
    pose: &Pose,
    rng: &mut SplitMix64,
) -> f64 {
    let off: Vec<usize> = (0..est.pts.len()).filter(|&i| plane.off_plane[i]).collect();
    if off.len() < 2 {
        return 0.0;
    }
    let pairs = CHANCE_PAIRS.min(off.len() * (off.len() - 1));
    let mut xa = Vec::with_capacity(pairs);
    let mut xb = Vec::with_capacity(pairs);
    while xa.len() < pairs {
        let (i, j) = (off[rng.below(off.len())], off[rng.below(off.len())]);
        if i != j {
            let (p, q) = (est.pts.get(i), est.pts.get(j));
            xa.push([p[0], p[1]]);
            xb.push([q[2], q[3]]);
        }
    }
    let hits = est.count_inliers_of(&pose.essential(), &xa, &xb);
    hits as f64 / pairs as f64 * off.len() as f64
}

/// Random pairings [`chance_off_plane_inliers`] evaluates.
const CHANCE_PAIRS: usize = 4000;

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

/// Number of the plane's points that are inliers of `pose`.
pub(crate) fn plane_inliers(est: &EssentialEstimator<'_>, plane: &Plane, pose: &Pose) -> usize {
    est.inlier_indices(&pose.essential(), 1.0)
        .iter()
        .filter(|&&i| plane.on_plane[i as usize])
        .count()
}

/// Whether `alternative` explains the plane about as well as `winner` does (at least [`EXPLAINS_PLANE`]
/// of the winner's count of plane points among its inliers): two motions of one homography explain its
/// points equally in theory, and noise or an imperfect lens model decide which gets a few more.
pub(crate) fn explains_plane_like(
    est: &EssentialEstimator<'_>,
    plane: &Plane,
    alternative: &Pose,
    winner: &Pose,
) -> bool {
    plane_inliers(est, plane, alternative) as f64
        >= EXPLAINS_PLANE * plane_inliers(est, plane, winner) as f64
}

/// Whether `q` differs from `p` by more than `p`'s estimation noise: more than
/// max(1°, [`DISTINCT_SIGMAS`] σ) of rotation or max(3°, [`DISTINCT_SIGMAS`] σ) of translation direction,
/// with `sigma_deg = (σ_rotation, σ_translation)` from `p`'s covariance. At low parallax the translation
/// direction wobbles by degrees between equally good refits, which are one explanation, not two.
pub(crate) fn distinct(p: &Pose, q: &Pose, sigma_deg: (f64, f64)) -> bool {
    rotation_error_deg(&p.r, &q.r) > (DISTINCT_SIGMAS * sigma_deg.0).max(1.0)
        || translation_error_deg(&p.t, &q.t) > (DISTINCT_SIGMAS * sigma_deg.1).max(3.0)
}

/// Standard deviations beyond which two poses are distinct explanations.
pub const DISTINCT_SIGMAS: f64 = 5.0;

/// Largest standard deviations (degrees) of the rotation and of the translation direction in a pose
/// covariance (rotation vector block; translation block without its unobservable part along `t`).
pub(crate) fn pose_sigmas_deg(cov: &nalgebra::Matrix6<f64>, t: &Vector3<f64>) -> (f64, f64) {
    let rot = cov.fixed_view::<3, 3>(0, 0).into_owned();
    let rot_sd = rot
        .symmetric_eigenvalues()
        .max()
        .max(0.0)
        .sqrt()
        .to_degrees();
    let (b1, b2) = super::lm::tangent_basis(t);
    let ct = cov.fixed_view::<3, 3>(3, 3).into_owned();
    let b = nalgebra::Matrix3x2::from_columns(&[b1, b2]);
    let tangent = b.transpose() * ct * b;
    let t_sd = tangent
        .symmetric_eigenvalues()
        .max()
        .max(0.0)
        .sqrt()
        .to_degrees();
    (rot_sd, t_sd)
}

/// Plane-and-parallax hypotheses: `E = [e']ₓ·H` from two off-plane correspondences. Every such hypothesis
/// explains the plane, so only the off-plane points tell them apart: they are sampled and verified (in a
/// random order) on those alone; a model's score over all points is computed before its refit.
struct PlaneParallax<'a> {
    base: &'a EssentialEstimator<'a>,
    h: Matrix3<f64>,
    /// The correspondences the homography does not explain (the sampling pool), as indices of `base`.
    off: Vec<usize>,
    /// The same points, shuffled, as the verification kernel takes them.
    off_ordered: Correspondences,
    /// A few plane points that cheirality checks with the sample.
    anchors: Vec<usize>,
    /// Plane points among a good model's inliers (to count its off-plane inliers).
    n_plane: usize,
}

impl<'a> PlaneParallax<'a> {
    fn new(base: &'a EssentialEstimator<'a>, plane: &Plane, rng: &mut SplitMix64) -> Self {
        let n = base.pts.len();
        let off: Vec<usize> = (0..n).filter(|&i| plane.off_plane[i]).collect();
        let on: Vec<usize> = (0..n).filter(|&i| plane.on_plane[i]).collect();
        let anchors = (0..3.min(on.len())).map(|k| on[k * on.len() / 3]).collect();
        let mut order: Vec<u32> = off.iter().map(|&i| i as u32).collect();
        rng.shuffle(&mut order);
        Self {
            base,
            h: plane.h,
            off_ordered: base.pts.permuted(&order),
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
        self.off.len()
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
        self.base.verify_on(&self.off_ordered, e, test, bar)
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

    /// `inliers` counts all points (after the refit): its off-plane part over the pool.
    fn inlier_ratio(&self, inliers: usize) -> f64 {
        inliers.saturating_sub(self.n_plane) as f64 / self.off.len().max(1) as f64
    }
}
