//! Pairing bookkeeping of the `odometry` mode: converting the core's point transform into the pose published on
//! ROS topics, its covariance, and the keyframe policy that decides which earlier frame a frame is matched to
//! (the mode's odometry is the monocular VO, [`crate::vo`]).
//!
//! The core estimates `x_b = R·x_a + t` (camera a = keyframe, camera b = current frame). ROS consumers want
//! the pose of camera b in camera a's optical frame, `T_ab = (Rᵀ, −Rᵀ·t)`. Its covariance is propagated to
//! first order from the core's 6×6 covariance over `(δθ, δt)` (left rotation perturbation `R = exp(δθ)·R̂`):
//! with `p = −Rᵀt` and `φ` the left perturbation of `Rᵀ`,
//! `∂p/∂δθ = −Rᵀ[t]ₓ`, `∂p/∂δt = −Rᵀ`, `∂φ/∂δθ = −Rᵀ`, `∂φ/∂δt = 0`, and ROS orders the result
//! `(x, y, z, rot_x, rot_y, rot_z)`.
//!
//! A frame becomes the new keyframe when the inliers thin out (`min_inliers`), when the parallax is large
//! enough for a well-conditioned next step (`max_parallax_deg`), or after `max_frames`; after `max_failures`
//! consecutive frames without a pose the current frame restarts tracking.
//!
//! This module knows nothing of r2r.

use nalgebra::{Isometry3, Matrix3, Matrix6, Translation3, UnitQuaternion, Vector3};

use super::config::KeyframePolicy;
use crate::geometry::{NoPose, RelativePose};

/// Pose of camera b in camera a's frame, from the core's point transform `x_b = R·x_a + t`.
pub fn pose_b_in_a(rotation: &Matrix3<f64>, translation: &Vector3<f64>) -> Isometry3<f64> {
    let rt = rotation.transpose();
    let q = UnitQuaternion::from_matrix(&rt);
    Isometry3::from_parts(Translation3::from(-(rt * translation)), q)
}

/// Row-major 6×6 covariance of [`pose_b_in_a`] in ROS order `(x, y, z, rot_x, rot_y, rot_z)`.
pub fn covariance_b_in_a(pose: &RelativePose) -> [f64; 36] {
    let rt = pose.rotation.transpose();
    let tx = pose
        .translation
        .unwrap_or_else(Vector3::zeros)
        .cross_matrix();
    let mut j = Matrix6::<f64>::zeros();
    j.fixed_view_mut::<3, 3>(0, 0).copy_from(&(-rt * tx));
    j.fixed_view_mut::<3, 3>(0, 3).copy_from(&(-rt));
    j.fixed_view_mut::<3, 3>(3, 0).copy_from(&(-rt));
    let c = j * pose.covariance * j.transpose();
    let mut out = [0.0; 36];
    for r in 0..6 {
        for k in 0..6 {
            let v = 0.5 * (c[(r, k)] + c[(k, r)]);
            out[r * 6 + k] = if v.is_finite() { v } else { 1e6 };
        }
    }
    out
}

/// The published form of a pose result: pose of b in a and its 6×6 covariance, or `(None, zeros)` without a
/// pose. With `baseline_m` (a calibrated stereo pair) the unit translation is scaled to metres and the
/// covariance's translation block with it (`S·C·S`).
pub fn published_pose(
    pose: &Result<RelativePose, NoPose>,
    baseline_m: Option<f64>,
) -> (Option<Isometry3<f64>>, [f64; 36]) {
    let Ok(rp) = pose else {
        return (None, [0.0; 36]);
    };
    let mut iso = pose_b_in_a(&rp.rotation, &rp.translation.unwrap_or_else(Vector3::zeros));
    let mut cov = covariance_b_in_a(rp);
    if let Some(b) = baseline_m {
        iso.translation.vector *= b;
        let s = |i: usize| if i < 3 { b } else { 1.0 };
        for (i, v) in cov.iter_mut().enumerate() {
            *v *= s(i / 6) * s(i % 6);
        }
    }
    (Some(iso), cov)
}

/// What the tracker decided for one frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// No keyframe yet (first frame or after a reset): the frame becomes the keyframe.
    Initialise,
    /// Tracked against the keyframe; `new_keyframe` says whether this frame replaces it.
    Tracked {
        /// The frame becomes the new keyframe.
        new_keyframe: bool,
    },
    /// No pose for this frame; `reset` when tracking is declared lost and the frame becomes the keyframe.
    Failed {
        /// Restart from this frame.
        reset: bool,
    },
}

/// The keyframe policy: which earlier frame the next frame is matched to.
#[derive(Debug, Clone)]
pub struct KeyframeTracker {
    policy: KeyframePolicy,
    has_keyframe: bool,
    keyframe_id: u64,
    frames_since_keyframe: u32,
    failures: u32,
}

impl KeyframeTracker {
    /// A tracker with no keyframe.
    pub fn new(policy: KeyframePolicy) -> Self {
        Self {
            policy,
            has_keyframe: false,
            keyframe_id: 0,
            frames_since_keyframe: 0,
            failures: 0,
        }
    }

    /// Id of the current keyframe (increments with every new keyframe; 0 before the first).
    pub fn keyframe_id(&self) -> u64 {
        self.keyframe_id
    }

    /// True when a keyframe exists to match against.
    pub fn has_keyframe(&self) -> bool {
        self.has_keyframe
    }

    /// Forgets the keyframe (e.g. time went backwards).
    pub fn reset(&mut self) {
        self.has_keyframe = false;
    }

    /// Feeds the outcome of matching the current frame against the keyframe (`None` = no keyframe or no
    /// pose): `(inliers, median parallax in degrees)`.
    pub fn step(&mut self, result: Option<(usize, f64)>) -> Step {
        if !self.has_keyframe {
            self.make_keyframe();
            return Step::Initialise;
        }
        match result {
            Some((inliers, parallax_deg)) => {
                self.failures = 0;
                self.frames_since_keyframe += 1;
                let p = &self.policy;
                let new_keyframe = inliers < p.min_inliers
                    || parallax_deg >= p.max_parallax_deg
                    || (p.max_frames > 0 && self.frames_since_keyframe >= p.max_frames);
                if new_keyframe {
                    self.make_keyframe();
                }
                Step::Tracked { new_keyframe }
            }
            None => {
                self.failures += 1;
                let reset = self.failures >= self.policy.max_failures;
                if reset {
                    self.make_keyframe();
                }
                Step::Failed { reset }
            }
        }
    }

    fn make_keyframe(&mut self) {
        self.has_keyframe = true;
        self.keyframe_id += 1;
        self.frames_since_keyframe = 0;
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::PoseQuality;
    use nalgebra::Rotation3;

    fn rel(r: Matrix3<f64>, t: Vector3<f64>) -> RelativePose {
        RelativePose {
            rotation: r,
            translation: Some(t),
            configuration: crate::geometry::TwoViewConfiguration::General,
            inliers: vec![],
            num_inliers: 0,
            covariance: Matrix6::identity() * 1e-4,
            quality: PoseQuality::default(),
        }
    }

    #[test]
    fn pose_is_the_inverse_point_transform() {
        let r = *Rotation3::from_euler_angles(0.1, -0.2, 0.3).matrix();
        let t = Vector3::new(0.6, 0.0, 0.8);
        let iso = pose_b_in_a(&r, &t);
        // A point in a's frame maps to b's frame with (R, t); iso maps b's frame back to a's.
        let xa = Vector3::new(0.3, -1.0, 4.0);
        let xb = r * xa + t;
        let back = iso.transform_point(&xb.into());
        assert!((back.coords - xa).norm() < 1e-12);
        // Camera b's centre in a's frame is -Rᵀt.
        assert!((iso.translation.vector + r.transpose() * t).norm() < 1e-12);
    }

    #[test]
    fn a_baseline_scales_the_translation_and_its_covariance_to_metres() {
        let r = *Rotation3::from_euler_angles(0.1, 0.2, -0.1).matrix();
        let pose = Ok(rel(r, Vector3::new(0.6, 0.0, 0.8)));
        let (unit, cu) = published_pose(&pose, None);
        let (metric, cm) = published_pose(&pose, Some(0.12));
        let (unit, metric) = (unit.unwrap(), metric.unwrap());
        assert!((metric.translation.vector - unit.translation.vector * 0.12).norm() < 1e-15);
        assert!(metric.rotation.angle_to(&unit.rotation) < 1e-15);
        for i in 0..6 {
            for k in 0..6 {
                let s = [i, k]
                    .iter()
                    .map(|&x| if x < 3 { 0.12 } else { 1.0 })
                    .product::<f64>();
                assert!((cm[i * 6 + k] - cu[i * 6 + k] * s).abs() < 1e-18);
            }
        }
        let none: Result<RelativePose, NoPose> =
            Err(NoPose::TooFewCorrespondences { have: 3, need: 5 });
        assert_eq!(published_pose(&none, Some(0.12)), (None, [0.0; 36]));
    }

    #[test]
    fn covariance_is_symmetric_psd_and_rotated() {
        let r = *Rotation3::from_euler_angles(0.0, 0.5, 0.0).matrix();
        let c = covariance_b_in_a(&rel(r, Vector3::new(0.0, 0.0, 1.0)));
        let m = Matrix6::from_row_slice(&c);
        assert!((m - m.transpose()).norm() < 1e-15);
        assert!(m.symmetric_eigenvalues().iter().all(|&e| e > -1e-12));
        // Rotation part: Rᵀ Σθ R with Σθ isotropic stays isotropic.
        assert!((m[(3, 3)] - 1e-4).abs() < 1e-12);
    }

    /// The propagated covariance equals J·C·Jᵀ with J taken by finite differences of [`pose_b_in_a`] under
    /// the core's convention (left perturbation `R ← Exp(ω)·R`, then `t ← t + δt`; ω first), with the
    /// published pose perturbed as ROS reads it: position first, then a rotation vector in the reference
    /// frame (left perturbation of `R_ab`).
    #[test]
    fn covariance_matches_finite_differences_of_the_core_convention() {
        let r = *Rotation3::from_euler_angles(0.2, -0.4, 0.7).matrix();
        let t = Vector3::new(0.3, -0.5, 0.81).normalize();
        let base = pose_b_in_a(&r, &t);
        let h = 1e-6;
        let mut j = Matrix6::<f64>::zeros();
        for k in 0..6 {
            let mut w = Vector3::zeros();
            let mut dt = Vector3::zeros();
            if k < 3 {
                w[k] = h;
            } else {
                dt[k - 3] = h;
            }
            let rk = Rotation3::new(w).matrix() * r;
            let p = pose_b_in_a(&rk, &(t + dt));
            let dp = (p.translation.vector - base.translation.vector) / h;
            let dphi = (p.rotation * base.rotation.inverse()).scaled_axis() / h;
            for i in 0..3 {
                j[(i, k)] = dp[i];
                j[(3 + i, k)] = dphi[i];
            }
        }
        // A full SPD covariance over (ω, t): every block of J matters.
        let a = Matrix6::from_fn(|i, k| {
            ((i * 7 + k * 3) % 5) as f64 * 1e-3 + if i == k { 1e-2 } else { 0.0 }
        });
        let mut pose = rel(r, t);
        pose.covariance = a * a.transpose();
        let got = Matrix6::from_row_slice(&covariance_b_in_a(&pose));
        let want = j * pose.covariance * j.transpose();
        let err = (got - want).abs().max() / want.abs().max();
        assert!(err < 1e-5, "relative error {err}\n{got}\n{want}");
        // With the core's variance 1e6 along t (scale unobservable), it ends up along the published position
        // (= −Rᵀt), not on the rotation.
        let tt = t * t.transpose() * 1e6;
        for i in 0..3 {
            for k in 0..3 {
                pose.covariance[(3 + i, 3 + k)] += tt[(i, k)];
            }
        }
        let got = Matrix6::from_row_slice(&covariance_b_in_a(&pose));
        let dir = base.translation.vector.normalize();
        let pos = got.fixed_view::<3, 3>(0, 0).into_owned();
        assert!((dir.transpose() * pos * dir)[(0, 0)] > 0.99e6);
        assert!(got.fixed_view::<3, 3>(3, 3).max() < 1.0);
    }

    #[test]
    fn keyframe_policy() {
        let policy = KeyframePolicy {
            min_inliers: 50,
            max_parallax_deg: 5.0,
            max_frames: 0,
            max_failures: 2,
        };
        let mut tr = KeyframeTracker::new(policy);
        assert_eq!(tr.step(None), Step::Initialise);
        assert_eq!(tr.keyframe_id(), 1);
        // Good frame, small parallax: keep the keyframe.
        assert_eq!(
            tr.step(Some((200, 1.0))),
            Step::Tracked {
                new_keyframe: false
            }
        );
        // Large parallax: new keyframe.
        assert_eq!(
            tr.step(Some((200, 6.0))),
            Step::Tracked { new_keyframe: true }
        );
        assert_eq!(tr.keyframe_id(), 2);
        // Few inliers: new keyframe.
        assert_eq!(
            tr.step(Some((10, 1.0))),
            Step::Tracked { new_keyframe: true }
        );
        // Two failures: reset (the frame becomes the keyframe).
        assert_eq!(tr.step(None), Step::Failed { reset: false });
        assert_eq!(tr.step(None), Step::Failed { reset: true });
        assert_eq!(tr.keyframe_id(), 4);
    }
}
