//! Rotation-only explanations of a pair: when nearly all inliers fit `x_b ∝ R·x_a` (zero motion or pure
//! rotation), the translation direction is unobservable. Two uses: judging a finished estimate (how many of
//! its inliers the rotation alone explains, and the median parallax), and explaining a failure (when no
//! essential matrix reached a consensus but most correspondences fit one rotation, the caller learns "no
//! parallax" rather than "no consensus").
//!
//! The rotation of a failure is found by a small 2-point RANSAC on bearing vectors (Kabsch alignment).

// `!(x > y)` is deliberate: it is true for NaN, which must take the rejecting branch.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use nalgebra::{Matrix3, Vector3};

use super::problem::Correspondences;
use crate::geometry::camera::PinholeCamera;
use crate::geometry::NoPose;
use crate::util::rng::SplitMix64;
use crate::util::stats::median;

/// Whether correspondence `p` (normalised) fits the rotation `r` alone within twice the threshold (pixels
/// of camera b).
fn fits_rotation(r: &Matrix3<f64>, p: [f64; 4], cam_b: &PinholeCamera, thr: f64) -> bool {
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

/// Failure report: [`NoPose::NoParallax`] when at least half of the correspondences fit one rotation,
/// otherwise [`NoPose::NoConsensus`].
pub(crate) fn no_consensus_or_no_motion(
    pts: &Correspondences,
    cam_b: &PinholeCamera,
    thr: f64,
    best_inliers: usize,
    need: usize,
) -> NoPose {
    let n = pts.len();
    if n < 2 {
        return NoPose::NoConsensus { best_inliers, need };
    }
    let bearing = |x: f64, y: f64| Vector3::new(x, y, 1.0).normalize();
    let count = |r: &Matrix3<f64>| {
        (0..n)
            .filter(|&k| fits_rotation(r, pts.get(k), cam_b, thr))
            .count()
    };
    let mut rng = SplitMix64::new(0x5EED);
    let mut best_r = Matrix3::identity();
    let mut best_count = count(&best_r);
    for _ in 0..64 {
        let i = rng.below(n);
        let j = rng.below(n);
        if i == j {
            continue;
        }
        let (pi, pj) = (pts.get(i), pts.get(j));
        let h = bearing(pi[2], pi[3]) * bearing(pi[0], pi[1]).transpose()
            + bearing(pj[2], pj[3]) * bearing(pj[0], pj[1]).transpose();
        let Some(r) = kabsch(&h) else {
            continue;
        };
        let c = count(&r);
        if c > best_count {
            best_count = c;
            best_r = r;
        }
    }
    if best_count as f64 >= 0.5 * n as f64 {
        let idx: Vec<u32> = (0..n as u32)
            .filter(|&k| fits_rotation(&best_r, pts.get(k as usize), cam_b, thr))
            .collect();
        let fit = rotation_fit(pts, &idx, &best_r, cam_b, thr);
        return NoPose::NoParallax {
            rotation_only_fraction: best_count as f64 / n as f64,
            median_parallax_deg: fit.median_parallax_deg,
        };
    }
    NoPose::NoConsensus { best_inliers, need }
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
