//! Levenberg–Marquardt over a camera pose `x_cam = R·X + t` on the reprojection error in pixels, with the
//! left perturbation `(R, t) ← (Exp(ω)·R, Exp(ω)·t + v)`, an optional Cauchy loss (IRLS weights) and the
//! covariance `σ²·(JᵀJ)⁻¹` of the plain problem at the solution.
//!
//! Why the reprojection error (not an algebraic or object-space error): it is the maximum-likelihood cost
//! for pixel noise, what OpenCV's `solvePnPRefineLM` and PoseLib's `refine_absolute` minimise, and with six
//! parameters a dense 6×6 solve per step is cheap. Used by local optimisation (≤ 256 inliers, a few
//! steps), the final refinement (all inliers) and the VO's motion-only tracking.

// `!(x > y)` is deliberate: it is true for NaN, which must take the rejecting branch.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use nalgebra::{Matrix2x3, Matrix3, Matrix6, Rotation3, Vector3, Vector6};

use crate::geometry::essential::skew;

/// A set of 3-D ↔ 2-D correspondences in the form the refinement uses: world points and normalised image
/// points (undistorted, on the `z = 1` plane), with the focal lengths that turn normalised errors into
/// pixels.
pub(crate) struct Observations<'a> {
    pub world: &'a [Vector3<f64>],
    pub normalized: &'a [[f64; 2]],
    pub focal: [f64; 2],
}

/// Relative cost decrease below which refinement stops.
pub(crate) const LM_REL_TOL: f64 = 1e-10;

impl Observations<'_> {
    /// Pixel residual of correspondence `i` and the camera-frame point, or `None` behind the camera.
    #[inline]
    pub fn residual(
        &self,
        r: &Matrix3<f64>,
        t: &Vector3<f64>,
        i: usize,
    ) -> Option<([f64; 2], Vector3<f64>)> {
        let c = r * self.world[i] + t;
        if !(c.z > 1e-9) {
            return None;
        }
        let iz = 1.0 / c.z;
        let p = self.normalized[i];
        Some((
            [
                self.focal[0] * (c.x * iz - p[0]),
                self.focal[1] * (c.y * iz - p[1]),
            ],
            c,
        ))
    }

    /// Squared pixel error of correspondence `i` (infinite behind the camera).
    #[inline]
    pub fn error_sq(&self, r: &Matrix3<f64>, t: &Vector3<f64>, i: usize) -> f64 {
        match self.residual(r, t, i) {
            Some((e, _)) => e[0] * e[0] + e[1] * e[1],
            None => f64::INFINITY,
        }
    }

    /// Robust cost over `idx` (Cauchy with squared scale `c2`, or plain squares; a point behind the camera
    /// costs as much as the loss allows at 100 scales).
    fn cost(&self, r: &Matrix3<f64>, t: &Vector3<f64>, idx: &[u32], c2: Option<f64>) -> f64 {
        idx.iter()
            .map(|&i| {
                let e2 = self.error_sq(r, t, i as usize);
                match c2 {
                    Some(c2) => c2 * (1.0 + e2.min(1e4 * c2) / c2).ln(),
                    None => e2.min(1e12),
                }
            })
            .sum()
    }

    /// Normal equations (JᵀWJ, JᵀWr, robust cost) at `(r, t)` over `idx`.
    pub fn normal_equations(
        &self,
        r: &Matrix3<f64>,
        t: &Vector3<f64>,
        idx: &[u32],
        c2: Option<f64>,
    ) -> (Matrix6<f64>, Vector6<f64>, f64) {
        let mut h = Matrix6::zeros();
        let mut g = Vector6::zeros();
        let mut cost = 0.0;
        for &i in idx {
            let Some((e, c)) = self.residual(r, t, i as usize) else {
                cost += c2.map_or(1e12, |c2| c2 * (1.0 + 1e4f64).ln());
                continue;
            };
            let e2 = e[0] * e[0] + e[1] * e[1];
            let w = match c2 {
                Some(c2) => {
                    cost += c2 * (1.0 + e2 / c2).ln();
                    1.0 / (1.0 + e2 / c2)
                }
                None => {
                    cost += e2;
                    1.0
                }
            };
            let iz = 1.0 / c.z;
            // ∂pixel/∂c
            let dp = Matrix2x3::new(
                self.focal[0] * iz,
                0.0,
                -self.focal[0] * c.x * iz * iz,
                0.0,
                self.focal[1] * iz,
                -self.focal[1] * c.y * iz * iz,
            );
            // ∂c/∂(ω, v) = [−[c]×, I]
            let cx = skew(&c);
            let jw = dp * (-cx);
            let mut j = nalgebra::Matrix2x6::zeros();
            j.fixed_view_mut::<2, 3>(0, 0).copy_from(&jw);
            j.fixed_view_mut::<2, 3>(0, 3).copy_from(&dp);
            let ev = nalgebra::Vector2::new(e[0], e[1]);
            h += j.transpose() * j * w;
            g += j.transpose() * ev * w;
        }
        (h, g, cost)
    }

    /// Levenberg–Marquardt from `(r, t)` over `idx`; `cauchy`: the loss scale in pixels.
    pub fn refine(
        &self,
        mut r: Matrix3<f64>,
        mut t: Vector3<f64>,
        idx: &[u32],
        cauchy: Option<f64>,
        max_iter: usize,
    ) -> (Matrix3<f64>, Vector3<f64>) {
        if idx.len() < 3 {
            return (r, t);
        }
        let c2 = cauchy.map(|c| c * c);
        let mut lambda = 1e-4;
        let (mut h, mut g, mut cost) = self.normal_equations(&r, &t, idx, c2);
        for _ in 0..max_iter {
            let mut a = h;
            for k in 0..6 {
                a[(k, k)] += lambda * h[(k, k)].max(1e-9);
            }
            let Some(step) = a.cholesky().map(|ch| ch.solve(&(-g))) else {
                lambda *= 10.0;
                continue;
            };
            let (rn, tn) = apply(&r, &t, &step);
            let cn = self.cost(&rn, &tn, idx, c2);
            if cn < cost {
                let gain = cost - cn;
                r = rn;
                t = tn;
                lambda = (lambda * 0.1).max(1e-9);
                if gain <= LM_REL_TOL * cost {
                    break;
                }
                (h, g, cost) = self.normal_equations(&r, &t, idx, c2);
            } else {
                lambda *= 10.0;
                if lambda > 1e8 {
                    break;
                }
            }
        }
        (r, t)
    }

    /// Covariance (rotation vector then translation, the perturbation of [`apply`]) of the pose over the
    /// inliers `idx`: `σ²·(JᵀJ)⁻¹` of the plain problem, `σ²` the residual variance per pixel coordinate.
    pub fn covariance(
        &self,
        r: &Matrix3<f64>,
        t: &Vector3<f64>,
        idx: &[u32],
    ) -> (Matrix6<f64>, f64) {
        let (h, _, sum_sq) = self.normal_equations(r, t, idx, None);
        let dof = (2.0 * idx.len() as f64 - 6.0).max(1.0);
        let sigma2 = sum_sq / dof;
        let cov = h
            .try_inverse()
            .map(|hi| hi * sigma2)
            .unwrap_or_else(|| Matrix6::identity() * 1e6);
        (cov, sum_sq)
    }
}

/// The pose moved by `step = (ω, v)`: `R ← Exp(ω)·R`, `t ← Exp(ω)·t + v`.
pub(crate) fn apply(
    r: &Matrix3<f64>,
    t: &Vector3<f64>,
    step: &Vector6<f64>,
) -> (Matrix3<f64>, Vector3<f64>) {
    let dr = Rotation3::new(Vector3::new(step[0], step[1], step[2])).into_inner();
    (dr * r, dr * t + Vector3::new(step[3], step[4], step[5]))
}
