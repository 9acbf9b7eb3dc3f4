//! Rotation-only explanations of a pair: when nearly all inliers fit `x_b ∝ R·x_a` (zero motion or pure
//! rotation), the translation direction is unobservable. Two uses: judging a finished estimate (how many of
//! its inliers the rotation alone explains, and the median parallax), and recognising a rotation-only scene
//! before the essential-matrix search (see [`find_rotation`]).
//!
//! The rotation is found by a small 2-point RANSAC on bearing vectors (Kabsch alignment). A
//! rotation-only result is refined by Gauss–Newton on the reprojection error in image b ([`refine_rotation`])
//! and reported as a panoramic pose: `R` valid, no translation.

// `!(x > y)` is deliberate: it is true for NaN, which must take the rejecting branch.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use nalgebra::{Matrix3, Vector3};

use crate::geometry::camera::PinholeCamera;
use crate::geometry::correspondences::Correspondences;
use crate::util::rng::SplitMix64;
use crate::util::stats::median;

/// Whether correspondence `p` (normalised) fits the rotation `r` alone within twice the threshold (pixels
/// of camera b).
pub(crate) fn fits_rotation(
    r: &Matrix3<f64>,
    p: [f64; 4],
    cam_b: &PinholeCamera,
    thr: f64,
) -> bool {
    let q = r * Vector3::new(p[0], p[1], 1.0);
    if !(q.z > 0.0) {
        return false;
    }
    let du = (q.x / q.z - p[2]) * cam_b.fx;
    let dv = (q.y / q.z - p[3]) * cam_b.fy;
    du * du + dv * dv < 4.0 * thr * thr
}

/// Angle between the rotated ray of a and the ray of b, degrees (the parallax of the correspondence).
fn parallax_deg(r: &Matrix3<f64>, p: [f64; 4]) -> f64 {
    (r * Vector3::new(p[0], p[1], 1.0))
        .angle(&Vector3::new(p[2], p[3], 1.0))
        .to_degrees()
}

/// Rotation-only statistics of an estimate with rotation `r` over the inliers `idx`.
pub(crate) struct RotationFit {
    /// Fraction of the inliers that the rotation alone explains.
    pub fraction: f64,
    /// Median parallax of the inliers, degrees.
    pub median_parallax_deg: f64,
}

/// How well `r` alone explains the correspondences `idx` (see [`RotationFit`]).
pub(crate) fn rotation_fit(
    pts: &Correspondences,
    idx: &[u32],
    r: &Matrix3<f64>,
    cam_b: &PinholeCamera,
    thr: f64,
) -> RotationFit {
    let mut ok = 0usize;
    let mut parallax = Vec::with_capacity(idx.len());
    for &i in idx {
        let p = pts.get(i as usize);
        parallax.push(parallax_deg(r, p));
        ok += fits_rotation(r, p, cam_b, thr) as usize;
    }
    RotationFit {
        fraction: ok as f64 / idx.len().max(1) as f64,
        median_parallax_deg: median(&parallax),
    }
}

/// Fraction of the inliers a pure rotation must explain for the translation to count as unobservable.
pub(crate) const ROTATION_ONLY_FRACTION: f64 = 0.8;

/// The rotation that explains the most correspondences (within twice the threshold), by a 2-point RANSAC
/// on bearing vectors (Kabsch alignment) with adaptive termination, at most [`ROTATION_SAMPLES`] samples;
/// each hypothesis is pre-tested on 64 points and counted in full only with at least 4 of them. The best
/// is refit on all its inliers. `None` below `need` inliers.
///
/// It runs before the essential-matrix search because a rotation-only scene starves that search: its
/// samples triangulate nothing (parallel rays), so no hypothesis passes cheirality and the search would
/// run to its iteration cap. Any essential matrix with the rotation explains the rotation's inliers, so
/// their count bounds the search's stopping rule ([`crate::geometry::ransac::Limits::known_inliers`]).
pub(crate) fn find_rotation(
    pts: &Correspondences,
    cam_b: &PinholeCamera,
    thr: f64,
    need: usize,
    seed: u64,
) -> Option<(Matrix3<f64>, Vec<u32>)> {
    let n = pts.len();
    if n < 2 {
        return None;
    }
    let mut rng = SplitMix64::new(seed ^ 0x5EED);
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let pre: Vec<usize> = order.iter().copied().take(64).collect();
    let pre_need = if pre.len() == 64 { 4 } else { 0 };
    let count = |r: &Matrix3<f64>| {
        (0..n)
            .filter(|&k| fits_rotation(r, pts.get(k), cam_b, thr))
            .count()
    };
    let (mut best_r, mut best_count) = (Matrix3::identity(), count(&Matrix3::identity()));
    let log_fail = (1e-4f64).ln();
    let mut required = ROTATION_SAMPLES;
    let mut k = 0;
    while k < required {
        k += 1;
        let (i, j) = (rng.below(n), rng.below(n));
        if i == j {
            continue;
        }
        let Some(r) = kabsch(&correlation(pts, [i, j].into_iter())) else {
            continue;
        };
        if pre
            .iter()
            .filter(|&&q| fits_rotation(&r, pts.get(q), cam_b, thr))
            .count()
            < pre_need
        {
            continue;
        }
        let c = count(&r);
        if c > best_count {
            best_count = c;
            best_r = r;
            required = crate::geometry::ransac::required_iterations(
                c as f64 / n as f64,
                2,
                0.0,
                log_fail,
                ROTATION_SAMPLES,
            );
        }
    }
    if best_count < need.max(2) {
        return None;
    }
    let idx = rotation_inliers(pts, &best_r, cam_b, thr);
    let refit = kabsch(&correlation(pts, idx.iter().map(|&i| i as usize)))?;
    let refit_idx = rotation_inliers(pts, &refit, cam_b, thr);
    Some(if refit_idx.len() >= idx.len() {
        (refit, refit_idx)
    } else {
        (best_r, idx)
    })
}

/// Most samples [`find_rotation`] draws.
pub(crate) const ROTATION_SAMPLES: usize = 200;

/// `Σ b·aᵀ` of the bearing vectors of the correspondences `idx`.
fn correlation(pts: &Correspondences, idx: impl Iterator<Item = usize>) -> Matrix3<f64> {
    let bearing = |x: f64, y: f64| Vector3::new(x, y, 1.0).normalize();
    let mut h = Matrix3::zeros();
    for i in idx {
        let p = pts.get(i);
        h += bearing(p[2], p[3]) * bearing(p[0], p[1]).transpose();
    }
    h
}

/// Indices of the correspondences that `r` alone explains (within twice the threshold).
pub(crate) fn rotation_inliers(
    pts: &Correspondences,
    r: &Matrix3<f64>,
    cam_b: &PinholeCamera,
    thr: f64,
) -> Vec<u32> {
    (0..pts.len() as u32)
        .filter(|&k| fits_rotation(r, pts.get(k as usize), cam_b, thr))
        .collect()
}

/// A refined rotation: `R`, the 3×3 covariance of its rotation vector (left perturbation), and the sum of
/// squared (whitened) reprojection residuals in pixels².
pub(crate) struct RefinedRotation {
    pub r: Matrix3<f64>,
    pub covariance: Matrix3<f64>,
    pub sum_sq: f64,
}

/// Gauss–Newton with Levenberg damping and a Cauchy loss (scale `thr`) on the reprojection error
/// `π(R·x_a) − x_b` in pixels of camera b over the correspondences `idx`, weighted by the
/// correspondences' weights; the covariance is `σ²·(JᵀJ)⁻¹` of the plain problem at the solution.
pub(crate) fn refine_rotation(
    pts: &Correspondences,
    idx: &[u32],
    r0: Matrix3<f64>,
    cam_b: &PinholeCamera,
    thr: f64,
) -> RefinedRotation {
    let c2 = thr * thr;
    // normal equations (JᵀWJ, JᵀWr, cost) at r; `robust`: Cauchy IRLS weights
    let system = |r: &Matrix3<f64>, robust: bool| {
        let mut h = Matrix3::zeros();
        let mut g = Vector3::zeros();
        let mut cost = 0.0;
        for &i in idx {
            let i = i as usize;
            let p = pts.get(i);
            let q = r * Vector3::new(p[0], p[1], 1.0);
            if !(q.z > 1e-12) {
                continue;
            }
            let w = pts.sqrt_w.get(i).map_or(1.0, |s| s * s);
            let res = [(q.x / q.z - p[2]) * cam_b.fx, (q.y / q.z - p[3]) * cam_b.fy];
            let s2 = w * (res[0] * res[0] + res[1] * res[1]);
            let rho = if robust { 1.0 / (1.0 + s2 / c2) } else { 1.0 };
            cost += if robust { c2 * (s2 / c2).ln_1p() } else { s2 };
            // d(u, v)/dq · dq/dω with dq/dω = −[q]ₓ
            let du = Vector3::new(cam_b.fx / q.z, 0.0, -cam_b.fx * q.x / (q.z * q.z));
            let dv = Vector3::new(0.0, cam_b.fy / q.z, -cam_b.fy * q.y / (q.z * q.z));
            let qx = crate::geometry::essential::skew(&q);
            let ju = -(qx.transpose() * du);
            let jv = -(qx.transpose() * dv);
            h += (ju * ju.transpose() + jv * jv.transpose()) * (w * rho);
            g += (ju * res[0] + jv * res[1]) * (w * rho);
        }
        (h, g, cost)
    };
    let mut r = r0;
    let mut lambda = 1e-4;
    let (mut h, mut g, mut cost) = system(&r, true);
    for _ in 0..20 {
        let mut a = h;
        for k in 0..3 {
            a[(k, k)] += lambda * h[(k, k)].max(1e-12);
        }
        let Some(step) = a.cholesky().map(|c| -c.solve(&g)) else {
            break;
        };
        let r_new = nalgebra::Rotation3::new(step).into_inner() * r;
        let (h2, g2, cost2) = system(&r_new, true);
        if cost2 < cost {
            let done = cost - cost2 < 1e-10 * cost;
            (r, h, g, cost) = (r_new, h2, g2, cost2);
            lambda = (lambda * 0.1).max(1e-10);
            if done {
                break;
            }
        } else {
            lambda *= 10.0;
            if lambda > 1e8 {
                break;
            }
        }
    }
    let r = super::lm::orthonormalised(r);
    let (h, _, sum_sq) = system(&r, false);
    let dof = (2.0 * idx.len() as f64 - 3.0).max(1.0);
    let covariance = h
        .try_inverse()
        .map(|hi| hi * (sum_sq / dof))
        .unwrap_or_else(|| Matrix3::identity() * super::UNOBSERVABLE_VARIANCE);
    RefinedRotation {
        r,
        covariance,
        sum_sq,
    }
}

/// The rotation `R` maximising `tr(Rᵀ·H)` for the correlation `H = Σ b·aᵀ` (Kabsch / orthogonal Procrustes).
pub(crate) fn kabsch(h: &Matrix3<f64>) -> Option<Matrix3<f64>> {
    let svd = h.svd(true, true);
    let (u, vt) = (svd.u?, svd.v_t?);
    let mut d = Matrix3::identity();
    if (u * vt).determinant() < 0.0 {
        d[(2, 2)] = -1.0;
    }
    Some(u * d * vt)
}
