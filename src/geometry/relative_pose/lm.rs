//! Levenberg–Marquardt over the relative pose `(R, t)` on the Sampson error: `R ∈ SO(3)` with the left
//! perturbation `R ← Exp(ω)·R`, the unit translation with a 2-D step in its tangent plane, an optional
//! Cauchy loss (IRLS weights), per-correspondence whitening weights. Used by local optimisation (a few
//! steps on ≤ 256 inliers), the final refinement (all inliers) and the covariance (the normal equations at
//! the solution).
//!
//! Why `(R, t)` and not `E`: optimising on the pose keeps the estimate on the essential manifold, so no
//! projection step loses accuracy, and the five parameters are exactly the pose's degrees of freedom.

use nalgebra::{Matrix3, Matrix5, Rotation3, Vector3, Vector5};

use super::kernels;
use crate::geometry::correspondences::{Correspondences, SAMPLE};
use crate::geometry::essential::{essential_from_pose, skew, PixelWeights};

/// Relative cost decrease below which a refit stops. Tight for LO too: a looser LO tolerance raised the
/// solver's median error on the synthetic benchmark (`matcha bench pose`).
pub(crate) const LM_REL_TOL: f64 = 1e-10;

/// Row-major copy of a 3×3 matrix, as the kernels take it.
pub(crate) fn to_array(e: &Matrix3<f64>) -> [f64; 9] {
    std::array::from_fn(|i| e[(i / 3, i % 3)])
}

/// Robust Levenberg-Marquardt over `(R, t)` on the Sampson error of the correspondences `idx`.
pub(crate) struct Lm<'a> {
    pub pts: &'a Correspondences,
    pub w: PixelWeights,
    /// Cauchy scale in pixels (`None`: plain least squares).
    pub cauchy: Option<f64>,
}

/// Orthonormal basis of the plane orthogonal to a unit vector.
pub(crate) fn tangent_basis(t: &Vector3<f64>) -> (Vector3<f64>, Vector3<f64>) {
    let helper = if t.x.abs() < 0.9 {
        Vector3::x()
    } else {
        Vector3::y()
    };
    let b1 = t.cross(&helper).normalize();
    let b2 = t.cross(&b1);
    (b1, b2)
}

impl Lm<'_> {
    /// `∂E/∂θ_k` for the five pose parameters (ω, then the two tangent steps of t).
    fn derivatives(r: &Matrix3<f64>, t: &Vector3<f64>) -> [[f64; 9]; 5] {
        let tx = skew(t);
        let (b1, b2) = tangent_basis(t);
        let mut de = [[0.0; 9]; 5];
        for k in 0..3 {
            let mut ek = Vector3::zeros();
            ek[k] = 1.0;
            de[k] = to_array(&(tx * skew(&ek) * r));
        }
        de[3] = to_array(&(skew(&b1) * r));
        de[4] = to_array(&(skew(&b2) * r));
        de
    }

    fn cost(&self, r: &Matrix3<f64>, t: &Vector3<f64>, idx: &[u32]) -> f64 {
        let e = to_array(&essential_from_pose(r, t));
        let c2 = self.cauchy.map(|c| c * c);
        kernels::cost(&e, &self.w, &self.pts.soa(), &self.pts.sqrt_w, idx, c2)
    }

    /// Normal equations at `(r, t)`: (Σ w·J·Jᵀ, Σ w·J·s, robust cost); `robust: false` ignores the loss.
    pub(crate) fn normal_equations(
        &self,
        r: &Matrix3<f64>,
        t: &Vector3<f64>,
        idx: &[u32],
        robust: bool,
    ) -> (Matrix5<f64>, Vector5<f64>, f64) {
        let e = to_array(&essential_from_pose(r, t));
        let de = Self::derivatives(r, t);
        let c2 = if robust {
            self.cauchy.map(|c| c * c)
        } else {
            None
        };
        let (upper, g, cost) =
            kernels::normal_equations(&e, &de, &self.w, &self.pts.soa(), &self.pts.sqrt_w, idx, c2);
        // upper triangle of H, row-major: (0,0) (0,1) .. (0,4) (1,1) .. (4,4)
        let mut h = Matrix5::zeros();
        let mut k = 0;
        for a in 0..5 {
            for b in a..5 {
                h[(a, b)] = upper[k];
                h[(b, a)] = upper[k];
                k += 1;
            }
        }
        (h, Vector5::from(g), cost)
    }

    /// The pose moved by `step` (ω, tangent step of t).
    pub(crate) fn apply(
        r: &Matrix3<f64>,
        t: &Vector3<f64>,
        step: &Vector5<f64>,
    ) -> (Matrix3<f64>, Vector3<f64>) {
        let (b1, b2) = tangent_basis(t);
        let omega = Vector3::new(step[0], step[1], step[2]);
        let r_new = Rotation3::new(omega).into_inner() * r;
        let t_new = (t + b1 * step[3] + b2 * step[4]).normalize();
        (r_new, t_new)
    }

    /// Levenberg-Marquardt; returns the refined pose. Stops after `max_iter` steps, or once a step's
    /// decrease of the cost, predicted by the normal equations or achieved, is below `rel_tol` × the cost
    /// (converged: further steps cannot change the pose meaningfully).
    pub(crate) fn refine(
        &self,
        mut r: Matrix3<f64>,
        mut t: Vector3<f64>,
        idx: &[u32],
        max_iter: usize,
        rel_tol: f64,
    ) -> (Matrix3<f64>, Vector3<f64>) {
        if idx.len() < SAMPLE {
            return (r, t);
        }
        let mut lambda = 1e-4;
        let (mut h, mut g, mut cost) = self.normal_equations(&r, &t, idx, true);
        for _ in 0..max_iter {
            let mut a = h;
            for k in 0..5 {
                a[(k, k)] += lambda * h[(k, k)].max(1e-12);
            }
            let Some(chol) = a.cholesky() else {
                lambda *= 10.0;
                if lambda > 1e8 {
                    break;
                }
                continue;
            };
            let step = -chol.solve(&g);
            if !step.iter().all(|v| v.is_finite()) {
                break;
            }
            // the quadratic model of Σ s² predicts a decrease of −2gᵀδ − δᵀHδ for this step
            let predicted = -2.0 * g.dot(&step) - (h * step).dot(&step);
            if predicted <= rel_tol * cost {
                break;
            }
            let (r_new, t_new) = Self::apply(&r, &t, &step);
            let new_cost = self.cost(&r_new, &t_new, idx);
            if new_cost < cost {
                let rel = (cost - new_cost) / cost.max(1e-300);
                r = r_new;
                t = t_new;
                lambda = (lambda * 0.1).max(1e-10);
                if rel < rel_tol || step.norm() < 1e-12 {
                    break;
                }
                let ne = self.normal_equations(&r, &t, idx, true);
                h = ne.0;
                g = ne.1;
                cost = ne.2;
            } else {
                lambda *= 10.0;
                if lambda > 1e8 {
                    break;
                }
            }
        }
        (orthonormalised(r), t)
    }
}

/// The nearest rotation to `r` (re-orthonormalises against drift).
pub(crate) fn orthonormalised(r: Matrix3<f64>) -> Matrix3<f64> {
    let mut rot = Rotation3::from_matrix_unchecked(r);
    rot.renormalize();
    rot.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobian_matches_finite_differences() {
        let pts = Correspondences {
            xa: vec![0.1, -0.3],
            ya: vec![0.2, 0.25],
            xb: vec![0.12, -0.28],
            yb: vec![0.18, 0.3],
            orig: vec![0, 1],
            sqrt_w: Vec::new(),
            weight: Vec::new(),
        };
        let w = PixelWeights::new(500.0, 520.0, 480.0, 510.0);
        let lm = Lm {
            pts: &pts,
            w,
            cauchy: None,
        };
        let r = Rotation3::from_euler_angles(0.1, -0.05, 0.2).into_inner();
        let t = Vector3::new(0.3, 0.1, 0.9).normalize();
        let e = to_array(&essential_from_pose(&r, &t));
        // the signed Sampson error in pixels, written out independently of the kernels
        let sampson = |e: &[f64; 9], i: usize| {
            let [xa, ya, xb, yb] = pts.get(i);
            let a = e[0] * xa + e[1] * ya + e[2];
            let b = e[3] * xa + e[4] * ya + e[5];
            let c = e[6] * xa + e[7] * ya + e[8];
            let d = e[0] * xb + e[3] * yb + e[6];
            let f = e[1] * xb + e[4] * yb + e[7];
            (xb * a + yb * b + c)
                / (w.wb_x * a * a + w.wb_y * b * b + w.wa_x * d * d + w.wa_y * f * f).sqrt()
        };
        for i in 0..2 {
            // one point: H = J·Jᵀ, g = J·s, cost = s²
            let (h, g, cost) = lm.normal_equations(&r, &t, &[i as u32], false);
            let s = sampson(&e, i);
            assert!(
                (cost - s * s).abs() < 1e-9 * (1.0 + s * s),
                "{cost} vs {}",
                s * s
            );
            let j = g / s;
            assert!((h - j * j.transpose()).norm() < 1e-6 * (1.0 + h.norm()));
            for k in 0..5 {
                let hstep = 1e-7;
                let mut step = Vector5::zeros();
                step[k] = hstep;
                let (r2, t2) = Lm::apply(&r, &t, &step);
                let e2 = to_array(&essential_from_pose(&r2, &t2));
                let num = (sampson(&e2, i) - s) / hstep;
                assert!(
                    (num - j[k]).abs() < 1e-4 * (1.0 + num.abs()),
                    "point {i} param {k}: {num} vs {}",
                    j[k]
                );
            }
        }
    }
}
