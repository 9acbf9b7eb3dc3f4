//! The stereo rig's extrinsic from what two `sensor_msgs/CameraInfo` carry: the rectification rotations `R`
//! and the projection matrices `P` (ROS's convention, as `stereo_image_proc` and `camera_calibration`
//! write them), as plain arrays so that it is tested without ROS.
//!
//! In ROS, `P = [fx' 0 cx' Tx; 0 fy' cy' Ty; 0 0 1 0]` projects points of the *rectified left* frame into
//! each rectified image, with `Tx = −fx'·B` for the right camera: the rectified right frame is the
//! rectified left frame moved by `(Tx/fx', Ty/fy', 0)`. `R` turns a raw camera frame into its rectified
//! one. So for raw images `x_right = R_rᵀ·(R_l·x_left + t_rect)`; for rectified images (`image_rect`) both
//! `R` are the identity. Separate camera drivers often publish `P` without `Tx`; then there is no baseline
//! here and the caller takes the left → right transform from `/tf_static` instead.
//!
//! Not here: the intrinsics and distortion (the r2r layer makes the cameras), the VO itself.

use nalgebra::{Matrix3, Vector3};

/// Shortest baseline taken from `P`, metres (below it `P` is taken to carry none).
pub const MIN_BASELINE_M: f64 = 1e-3;

/// `R` of a CameraInfo as a matrix; an all-zero or missing `R` (not set by the driver) is the identity.
pub fn rectification(r: &[f64]) -> Option<Matrix3<f64>> {
    if r.is_empty() || r.iter().all(|&v| v == 0.0) {
        return Some(Matrix3::identity());
    }
    if r.len() != 9 || !r.iter().all(|v| v.is_finite()) {
        return None;
    }
    let m = Matrix3::from_row_slice(r);
    let orthonormal = (m.transpose() * m - Matrix3::identity()).norm() < 1e-6;
    (orthonormal && m.determinant() > 0.0).then_some(m)
}

/// Offset of a camera's rectified frame from the rectified left frame, from its `P` (`(Tx/fx', Ty/fy', 0)`).
fn rectified_offset(p: &[f64]) -> Option<Vector3<f64>> {
    if p.len() != 12 || !p.iter().all(|v| v.is_finite()) || p[0] <= 0.0 || p[5] <= 0.0 {
        return None;
    }
    Some(Vector3::new(p[3] / p[0], p[7] / p[5], 0.0))
}

/// The extrinsic `x_right = R·x_left + t` (metres) of a rig from both cameras' `R` and `P`; `rectified`:
/// the images are already rectified (the rotations are then the identity). `None` when a matrix is
/// malformed or `P` carries no baseline of at least [`MIN_BASELINE_M`].
pub fn extrinsic_from_projections(
    left_r: &[f64],
    left_p: &[f64],
    right_r: &[f64],
    right_p: &[f64],
    rectified: bool,
) -> Option<(Matrix3<f64>, Vector3<f64>)> {
    let t_rect = rectified_offset(right_p)? - rectified_offset(left_p)?;
    if t_rect.norm() < MIN_BASELINE_M {
        return None;
    }
    if rectified {
        return Some((Matrix3::identity(), t_rect));
    }
    let (rl, rr) = (rectification(left_r)?, rectification(right_r)?);
    Some((rr.transpose() * rl, rr.transpose() * t_rect))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::{Rotation3, Vector3};

    fn p(fx: f64, tx: f64) -> Vec<f64> {
        vec![fx, 0.0, 320.0, tx, 0.0, fx, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    }

    #[test]
    fn a_rectified_rig_is_the_baseline_along_minus_x() {
        let (r, t) =
            extrinsic_from_projections(&[], &p(500.0, 0.0), &[], &p(500.0, -60.0), true).unwrap();
        assert_eq!(r, Matrix3::identity());
        assert!((t - Vector3::new(-0.12, 0.0, 0.0)).norm() < 1e-12);
        // the left P may carry an offset too (some calibrations): only the difference counts
        let (_, t) =
            extrinsic_from_projections(&[], &p(500.0, 5.0), &[], &p(500.0, -55.0), true).unwrap();
        assert!((t - Vector3::new(-0.12, 0.0, 0.0)).norm() < 1e-12);
    }

    #[test]
    fn raw_cameras_get_the_rectification_rotations_back() {
        // a raw right camera rotated 2° about y against the rectified frame, a raw left 1° about x
        let rl = Rotation3::from_euler_angles(0.0175, 0.0, 0.0).into_inner();
        let rr = Rotation3::from_euler_angles(0.0, 0.035, 0.0).into_inner();
        let row = |m: &Matrix3<f64>| m.transpose().as_slice().to_vec();
        let (r, t) = extrinsic_from_projections(
            &row(&rl),
            &p(500.0, 0.0),
            &row(&rr),
            &p(500.0, -60.0),
            false,
        )
        .unwrap();
        // a point in the raw left frame, through the rectified frames, into the raw right frame
        let x = Vector3::new(0.3, -0.2, 2.5);
        let via_rect = rr.transpose() * (rl * x + Vector3::new(-0.12, 0.0, 0.0));
        assert!((r * x + t - via_rect).norm() < 1e-12);
        assert!((t.norm() - 0.12).abs() < 1e-12);
    }

    #[test]
    fn no_baseline_or_bad_matrices_give_none() {
        assert!(
            extrinsic_from_projections(&[], &p(500.0, 0.0), &[], &p(500.0, 0.0), true).is_none()
        );
        assert!(extrinsic_from_projections(&[], &p(500.0, 0.0), &[], &[1.0; 3], true).is_none());
        let mut nan = p(500.0, -60.0);
        nan[3] = f64::NAN;
        assert!(extrinsic_from_projections(&[], &p(500.0, 0.0), &[], &nan, true).is_none());
        // a reflection is not a rectification
        let mut flip = vec![0.0; 9];
        flip[0] = -1.0;
        flip[4] = 1.0;
        flip[8] = 1.0;
        assert!(rectification(&flip).is_none());
        assert!(
            extrinsic_from_projections(&flip, &p(500.0, 0.0), &[], &p(500.0, -60.0), false)
                .is_none()
        );
        // rectified input ignores R altogether
        assert!(
            extrinsic_from_projections(&flip, &p(500.0, 0.0), &[], &p(500.0, -60.0), true)
                .is_some()
        );
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        fn value() -> impl Strategy<Value = f64> {
            prop_oneof![
                -1e3f64..1e3,
                Just(0.0),
                Just(f64::NAN),
                Just(f64::INFINITY),
                Just(1e300)
            ]
        }

        proptest! {
            #[test]
            fn any_matrices_give_a_rigid_extrinsic_or_none(
                lr in prop::collection::vec(value(), 0..10),
                lp in prop::collection::vec(value(), 0..13),
                rr in prop::collection::vec(value(), 0..10),
                rp in prop::collection::vec(value(), 0..13),
                rectified in any::<bool>(),
            ) {
                if let Some((r, t)) = extrinsic_from_projections(&lr, &lp, &rr, &rp, rectified) {
                    prop_assert!((r.transpose() * r - Matrix3::identity()).norm() < 1e-5);
                    prop_assert!(t.iter().all(|v| v.is_finite()) && t.norm() >= MIN_BASELINE_M);
                }
            }
        }
    }
}
