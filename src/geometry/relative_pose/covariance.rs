//! The covariance of a refined relative pose: `σ²·(JᵀJ)⁻¹` of the plain (non-robust) Sampson problem at
//! the solution, mapped from the five solver parameters (ω, two tangent steps of `t`) to the published six
//! (ω, δt), with the unobservable variance [`UNOBSERVABLE_VARIANCE`] along `t` itself.

use nalgebra::{Matrix5, Matrix6, Matrix6x5, Vector3};

use super::lm::{tangent_basis, Lm};

/// Variance given to the unobservable component of the translation (along `t`) in the covariance.
pub const UNOBSERVABLE_VARIANCE: f64 = 1.0e6;

/// Covariance (6×6, rotation vector then translation) and the sum of squared residuals of the inliers
/// `idx` at `(r, t)`.
pub(crate) fn pose_covariance(
    lm: &Lm<'_>,
    r: &nalgebra::Matrix3<f64>,
    t: &Vector3<f64>,
    idx: &[u32],
) -> (Matrix6<f64>, f64) {
    let (h, _, sum_sq) = lm.normal_equations(r, t, idx, false);
    let dof = (idx.len() as f64 - 5.0).max(1.0);
    let sigma2 = sum_sq / dof;
    let cov5 = h
        .try_inverse()
        .map(|hi| hi * sigma2)
        .unwrap_or_else(|| Matrix5::identity() * UNOBSERVABLE_VARIANCE);
    let (b1, b2) = tangent_basis(t);
    // Map (ω, β) to (ω, δt) with δt = B·β; add the unobservable variance along t.
    let mut jmap = Matrix6x5::<f64>::zeros();
    for k in 0..3 {
        jmap[(k, k)] = 1.0;
    }
    for k in 0..3 {
        jmap[(3 + k, 3)] = b1[k];
        jmap[(3 + k, 4)] = b2[k];
    }
    let mut covariance: Matrix6<f64> = jmap * cov5 * jmap.transpose();
    let ttt = t * t.transpose() * UNOBSERVABLE_VARIANCE;
    for i in 0..3 {
        for j in 0..3 {
            covariance[(3 + i, 3 + j)] += ttt[(i, j)];
        }
    }
    (covariance, sum_sq)
}
