//! Relative-pose accuracy metrics, as used by SuperGlue, LoFTR and the MATCHA paper.
//!
//! The pose error of an estimate is the larger of the rotation error (angle of `R_estᵀ·R_gt`) and the
//! translation-direction error (angle between `t_est` and `t_gt`, folded to ≤ 90° because the sign of a
//! monocular translation is only fixed by cheirality, which the benchmarks do not credit). The AUC at a
//! threshold τ is the area under the recall-vs-error curve on `[0, τ]`, divided by τ, integrated with the
//! trapezoid rule on the sorted errors exactly as SuperGlue's `pose_auc`. A failed estimate counts with
//! error `+∞` (it lowers recall, never helps it).
//!
//! This module does not estimate anything; it only compares.

// `!(x > y)` is deliberate throughout: it is true for NaN, which must take the rejecting branch.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use nalgebra::{Matrix3, Vector3};

/// Rotation and translation-direction errors in degrees: `(rotation, translation)`. The translation angle is
/// folded to `min(θ, 180° − θ)`. A zero-length translation gives a translation error of 90°.
pub fn pose_error_deg(
    r_est: &Matrix3<f64>,
    t_est: &Vector3<f64>,
    r_gt: &Matrix3<f64>,
    t_gt: &Vector3<f64>,
) -> (f64, f64) {
    (
        rotation_error_deg(r_est, r_gt),
        translation_error_deg(t_est, t_gt),
    )
}

/// `max(rotation error, translation error)` in degrees: the single number the AUC is computed on. The
/// translation error counts only where the truth has a translation (a pure rotation has `t_gt = 0`: any
/// estimated direction is ignored); an estimate without translation (a panoramic result) on a pair that
/// does have one counts as 90° off.
pub fn pose_error_max_deg(
    r_est: &Matrix3<f64>,
    t_est: Option<&Vector3<f64>>,
    r_gt: &Matrix3<f64>,
    t_gt: &Vector3<f64>,
) -> f64 {
    let r = rotation_error_deg(r_est, r_gt);
    if t_gt.norm() == 0.0 {
        return r;
    }
    let t = t_est.map_or(90.0, |t| translation_error_deg(t, t_gt));
    r.max(t)
}

/// Angle of `r_estᵀ·r_gt` in degrees (0–180).
pub fn rotation_error_deg(r_est: &Matrix3<f64>, r_gt: &Matrix3<f64>) -> f64 {
    let cos = (((r_est.transpose() * r_gt).trace() - 1.0) / 2.0).clamp(-1.0, 1.0);
    cos.acos().to_degrees()
}

/// Angle between two translation directions in degrees, folded to 0–90°.
pub fn translation_error_deg(t_est: &Vector3<f64>, t_gt: &Vector3<f64>) -> f64 {
    let n = t_est.norm() * t_gt.norm();
    if !(n > 0.0 && n.is_finite()) {
        return 90.0;
    }
    let a = (t_est.dot(t_gt) / n).clamp(-1.0, 1.0).acos().to_degrees();
    a.min(180.0 - a)
}

/// Area under the cumulative recall curve of `errors` up to each threshold, normalised to `[0, 1]`
/// (SuperGlue's `pose_auc`). Failures should be passed as `f64::INFINITY`; NaN counts as a failure.
/// Non-positive thresholds give 0.
pub fn pose_auc(errors: &[f64], thresholds: &[f64]) -> Vec<f64> {
    let n = errors.len();
    if n == 0 {
        return vec![0.0; thresholds.len()];
    }
    let mut e: Vec<f64> = errors
        .iter()
        .map(|&x| {
            if x.is_nan() {
                f64::INFINITY
            } else {
                x.max(0.0)
            }
        })
        .collect();
    e.sort_by(f64::total_cmp);
    thresholds
        .iter()
        .map(|&t| {
            if !(t > 0.0) {
                return 0.0;
            }
            // Curve points (0, 0), (e_i, (i+1)/n) for e_i < t, closed by a flat segment to (t, last recall).
            let mut area = 0.0;
            let (mut prev_e, mut prev_r) = (0.0, 0.0);
            for (i, &ei) in e.iter().enumerate() {
                if ei >= t {
                    break;
                }
                let r = (i + 1) as f64 / n as f64;
                area += (ei - prev_e) * (r + prev_r) / 2.0;
                prev_e = ei;
                prev_r = r;
            }
            area += (t - prev_e) * prev_r;
            area / t
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::{Rotation3, Vector3};

    #[test]
    fn errors_by_hand() {
        let r_gt = Rotation3::from_axis_angle(&Vector3::z_axis(), 0.3).into_inner();
        let r_est =
            Rotation3::from_axis_angle(&Vector3::x_axis(), 2f64.to_radians()).into_inner() * r_gt;
        let t_gt = Vector3::new(1.0, 0.0, 0.0);
        // 30° off, sign flipped: folded error 30°.
        let t_est = -Vector3::new(30f64.to_radians().cos(), 30f64.to_radians().sin(), 0.0);
        let (re, te) = pose_error_deg(&r_est, &t_est, &r_gt, &t_gt);
        assert!((re - 2.0).abs() < 1e-9, "{re}");
        assert!((te - 30.0).abs() < 1e-9, "{te}");
        assert!((pose_error_max_deg(&r_est, Some(&t_est), &r_gt, &t_gt) - 30.0).abs() < 1e-9);
        // no estimated translation: 90° where the truth has one; a pure rotation scores the rotation only
        assert_eq!(pose_error_max_deg(&r_gt, None, &r_gt, &t_gt), 90.0);
        let e = pose_error_max_deg(&r_est, Some(&t_est), &r_gt, &Vector3::zeros());
        assert!((e - rotation_error_deg(&r_est, &r_gt)).abs() < 1e-12);
        // 120° becomes 60°.
        let t120 = Vector3::new(120f64.to_radians().cos(), 120f64.to_radians().sin(), 0.0);
        assert!((translation_error_deg(&t120, &t_gt) - 60.0).abs() < 1e-9);
        assert_eq!(translation_error_deg(&Vector3::zeros(), &t_gt), 90.0);
    }

    #[test]
    fn auc_by_hand() {
        // errors 1, 2, inf, inf (n = 4). Curve: (0,0) (1,.25) (2,.5).
        // τ = 5: area = 0.5·1·0.25 + 1·(0.25+0.5)/2 + 3·0.5 = 0.125 + 0.375 + 1.5 = 2.0 → 0.4.
        // τ = 1.5: area = 0.125 + 0.5·0.25 = 0.25 → 1/6.  τ = 1: the error 1 is not < τ, so area 0 (as
        // SuperGlue's searchsorted-left).
        let a = pose_auc(&[2.0, f64::INFINITY, 1.0, f64::NAN], &[5.0, 1.5, 1.0, 0.0]);
        let want = [0.4, 0.25 / 1.5, 0.0, 0.0];
        for (x, w) in a.iter().zip(want) {
            assert!((x - w).abs() < 1e-12, "{a:?}");
        }
        // All perfect: AUC 1. All failed: AUC 0.
        assert_eq!(pose_auc(&[0.0, 0.0], &[10.0]), vec![1.0]);
        assert_eq!(pose_auc(&[f64::INFINITY], &[10.0]), vec![0.0]);
        assert_eq!(pose_auc(&[], &[10.0]), vec![0.0]);
    }
}
