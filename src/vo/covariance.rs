//! Pose covariances of the odometry in the world frame, ROS order (x, y, z, rotation about x, y, z).
//!
//! A PnP pose `x_cam = R·X + t` with covariance over its left perturbation `(ω, v)` has the camera centre
//! `p = −Rᵀt` and the orientation `Rᵀ`; to first order `δp = −Rᵀv` and the world-frame rotation error is
//! `δθ = −Rᵀω`. The landmarks the PnP used were placed by the keyframe's pose, whose own error moves the
//! whole local map: its position error shifts the camera one-to-one and its rotation error `δθ_kf` shifts
//! it by `δθ_kf × (p − p_kf)`. The two are independent, so the covariances add. This is the uncertainty
//! growth of chained keyframes; it ignores the landmarks' own depth noise beyond what the PnP residuals
//! show, which makes it optimistic by a factor the evaluation reports.

use nalgebra::{Matrix3, Matrix6, Vector3};

use crate::geometry::essential::skew;

/// World covariance (p, θ) of a PnP pose with rotation `r` (`x_cam = R·X + t`) and covariance `pnp` over
/// `(ω, v)`.
pub(crate) fn world_from_pnp(r: &Matrix3<f64>, pnp: &Matrix6<f64>) -> Matrix6<f64> {
    let mut j = Matrix6::zeros();
    let rt = -r.transpose();
    j.fixed_view_mut::<3, 3>(0, 3).copy_from(&rt);
    j.fixed_view_mut::<3, 3>(3, 0).copy_from(&rt);
    j * pnp * j.transpose()
}

/// The keyframe's covariance (p, θ) carried to a camera at `offset = p − p_kf` from it.
pub(crate) fn carried(keyframe: &Matrix6<f64>, offset: &Vector3<f64>) -> Matrix6<f64> {
    let mut j = Matrix6::identity();
    j.fixed_view_mut::<3, 3>(0, 3).copy_from(&(-skew(offset)));
    j * keyframe * j.transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::Rotation3;

    #[test]
    fn pnp_covariance_maps_to_the_camera_centre_and_orientation() {
        // a pose perturbed along v moves the centre by −Rᵀv: compare with finite differences
        let r = Rotation3::new(Vector3::new(0.3, -0.5, 0.2)).into_inner();
        let t = Vector3::new(1.0, 2.0, -0.5);
        let centre = |r: &Matrix3<f64>, t: &Vector3<f64>| -(r.transpose() * t);
        let mut pnp = Matrix6::zeros();
        pnp[(4, 4)] = 1e-4; // variance of v_y only
        let w = world_from_pnp(&r, &pnp);
        let dv = Vector3::new(0.0, 1e-6, 0.0);
        let dp = (centre(&r, &(t + dv)) - centre(&r, &t)) / 1e-6;
        let expected = dp * dp.transpose() * 1e-4;
        assert!((w.fixed_view::<3, 3>(0, 0) - expected).norm() < 1e-10);
        // a rotation perturbation ω does not move the centre to first order
        let mut pnp = Matrix6::zeros();
        pnp[(0, 0)] = 1e-4;
        let w = world_from_pnp(&r, &pnp);
        assert!(w.fixed_view::<3, 3>(0, 0).norm() < 1e-15);
        assert!((w[(3, 3)] + w[(4, 4)] + w[(5, 5)] - 1e-4).abs() < 1e-12);
    }

    #[test]
    fn a_keyframe_rotation_error_grows_with_the_lever_arm() {
        let mut kf = Matrix6::zeros();
        kf[(4, 4)] = 1e-4; // yaw about y
        let near = carried(&kf, &Vector3::new(0.0, 0.0, 0.1));
        let far = carried(&kf, &Vector3::new(0.0, 0.0, 1.0));
        assert!((near[(0, 0)] - 1e-6).abs() < 1e-12);
        assert!((far[(0, 0)] - 1e-4).abs() < 1e-12);
        assert_eq!(far[(4, 4)], 1e-4);
    }
}
