//! The odometry node modes' logic without ROS (the r2r glue is `node::ros::vo_mode`): the VO of
//! [`crate::vo`] — metric stereo, or monocular up to one scale (its mounting then a rotation only: a lever
//! arm in metres has no meaning in the run's unknown unit) — turned into what a robot stack consumes
//! (REP-105 / REP-103): the pose of the *base* frame in `odom`, its covariance in the `odom` frame, the
//! twist in the base frame, and the services' semantics (`reset`, `set_pose`).
//!
//! The VO estimates `world_from_camera`, where the world is the first left camera's optical frame. With the
//! camera's mounting `M = base_from_camera` (from `/tf_static`, else a parameter) and an offset `A =
//! odom_from_world`, the published pose is `odom_from_base = A · world_from_camera · M⁻¹`. At the start `A =
//! M`, so the first pose is the identity; `set_pose(P)` chooses `A` so that the latest frame reads `P`;
//! `reset` restarts tracking with the pose back at the identity (an explicit jump the caller asked for).
//! Everything else keeps `odom` continuous: the VO's own restarts after a loss hold the pose, and a changed
//! calibration (new CameraInfo) restarts the VO at the last published pose.
//!
//! Covariances: the VO's (position, rotation) covariance of the camera is moved to the base origin (the
//! lever arm of the rotation uncertainty) and rotated into `odom`. The twist covariance is the frame's own
//! pose uncertainty against its keyframe, doubled (two such poses make one motion) and divided by the frame
//! interval squared: a conservative figure, not a filter's. While lost or initializing the twist is zero
//! with [`LOST_VARIANCE`] on the diagonal, so a fusing filter ignores it.
//!
//! Not here: images, CameraInfo or TF messages (the r2r layer turns them into a [`Rig`] and a
//! mounting), feature extraction (the caller runs the pipeline when [`RobotVo::track`] asks for it).

use nalgebra::{Isometry3, Matrix3, Matrix6, Translation3, UnitQuaternion, Vector3};

use crate::features::{Features, GrayFrame};
use crate::geometry::essential::skew;
use crate::vo::{
    Rig, TrackingState, VisualOdometry, VoCounters, VoError, VoEstimate, VoOptions, LOST_VARIANCE,
};

/// A rigid transform from URDF-style `xyz` (metres) and fixed-axis `rpy` (radians: roll about x, then pitch
/// about y, then yaw about z, `R = Rz·Ry·Rx`), as in a `<joint><origin xyz rpy/>`.
pub fn isometry_from_xyz_rpy(xyz: [f64; 3], rpy: [f64; 3]) -> Isometry3<f64> {
    Isometry3::from_parts(
        Translation3::new(xyz[0], xyz[1], xyz[2]),
        UnitQuaternion::from_euler_angles(rpy[0], rpy[1], rpy[2]),
    )
}

/// What the node publishes for one frame.
#[derive(Debug, Clone)]
pub struct OdometryFrame {
    /// The frame's stamp, seconds.
    pub stamp: f64,
    /// Tracking state after this frame.
    pub state: TrackingState,
    /// Pose of the base frame in `odom`.
    pub odom_from_base: Isometry3<f64>,
    /// Row-major 6×6 covariance over (x, y, z, rotation about x, y, z) in `odom` (ROS order).
    pub pose_covariance: [f64; 36],
    /// Linear velocity of the base origin in the base frame, m/s.
    pub linear_velocity: Vector3<f64>,
    /// Angular velocity in the base frame, rad/s.
    pub angular_velocity: Vector3<f64>,
    /// Row-major 6×6 covariance of (linear, angular) velocity in the base frame.
    pub twist_covariance: [f64; 36],
    /// The same answer for the left camera's optical frame.
    pub camera: CameraOdometry,
    /// The VO's answer this was made from (keyframe, still, tracked landmarks, counters).
    pub estimate: VoEstimate,
}

/// The answer for the left camera's optical frame instead of the base (`odom_from_base · base_from_camera`):
/// for consumers that want the camera itself, and for scoring against a camera's ground truth.
#[derive(Debug, Clone)]
pub struct CameraOdometry {
    /// Pose of the left camera in `odom`.
    pub odom_from_camera: Isometry3<f64>,
    /// Row-major 6×6 covariance over (x, y, z, rotation about x, y, z) in `odom`.
    pub pose_covariance: [f64; 36],
    /// Linear velocity in the camera frame, m/s.
    pub linear_velocity: Vector3<f64>,
    /// Angular velocity in the camera frame, rad/s.
    pub angular_velocity: Vector3<f64>,
    /// Row-major 6×6 covariance of (linear, angular) velocity in the camera frame.
    pub twist_covariance: [f64; 36],
}

/// The VO with the robot's conventions.
pub struct RobotVo {
    options: VoOptions,
    vo: Option<VisualOdometry>,
    rig: Option<Rig>,
    base_from_camera: Isometry3<f64>,
    odom_from_world: Isometry3<f64>,
    last: Option<(f64, Isometry3<f64>)>,
    last_odom_from_base: Isometry3<f64>,
    /// Counters of the odometries replaced by a calibration change, so that the totals never go back.
    earlier: VoCounters,
}

impl RobotVo {
    /// Checks `options`; the VO starts at the first [`Self::configure`].
    pub fn new(options: VoOptions) -> Result<Self, VoError> {
        options.validate()?;
        Ok(Self {
            options,
            vo: None,
            rig: None,
            base_from_camera: Isometry3::identity(),
            odom_from_world: Isometry3::identity(),
            last: None,
            last_odom_from_base: Isometry3::identity(),
            earlier: VoCounters::default(),
        })
    }

    /// Sets the calibration and the mounting before a frame; returns `true` when this (re)started the VO:
    /// the first call, or a different rig or mounting (the pose then carries on from the last one, and the
    /// restart is counted).
    pub fn configure(
        &mut self,
        rig: Rig,
        base_from_camera: Isometry3<f64>,
    ) -> Result<bool, VoError> {
        let same = self.rig.as_ref().is_some_and(|r| same_rig(r, &rig))
            && (self.base_from_camera.to_homogeneous() - base_from_camera.to_homogeneous()).norm()
                < 1e-9;
        if same && self.vo.is_some() {
            return Ok(false);
        }
        let vo = VisualOdometry::new(rig.clone(), self.options.clone())?;
        if let Some(old) = &self.vo {
            add_counters(&mut self.earlier, &old.counters());
            // a calibration change restarts tracking (with the pose held): counted as a restart
            self.earlier.restarts += 1;
        }
        // the new VO's world is its first camera; that camera is where the base was last published
        self.odom_from_world = self.last_odom_from_base * base_from_camera;
        self.base_from_camera = base_from_camera;
        self.vo = Some(vo);
        self.rig = Some(rig);
        self.last = None;
        Ok(true)
    }

    /// Whether [`Self::configure`] has been called.
    pub fn is_configured(&self) -> bool {
        self.vo.is_some()
    }

    /// The odometry itself (its keyframes), once configured.
    pub fn visual_odometry(&self) -> Option<&VisualOdometry> {
        self.vo.as_ref()
    }

    /// Where the odometry's world (its first camera) is in `odom`.
    pub fn odom_from_world(&self) -> &Isometry3<f64> {
        &self.odom_from_world
    }

    /// The rig in use, once configured.
    pub fn rig(&self) -> Option<&Rig> {
        self.rig.as_ref()
    }

    /// The mounting in use.
    pub fn base_from_camera(&self) -> &Isometry3<f64> {
        &self.base_from_camera
    }

    /// Counters of the whole run (losses, recoveries, restarts, keyframes).
    pub fn counters(&self) -> VoCounters {
        let mut c = self.earlier;
        if let Some(vo) = &self.vo {
            add_counters(&mut c, &vo.counters());
        }
        c
    }

    /// Answers the frame by tracking the landmarks in the left image alone; `Ok(None)`: extract the
    /// features of both images and call [`Self::process`].
    pub fn track(
        &mut self,
        stamp: f64,
        left: &GrayFrame,
    ) -> Result<Option<OdometryFrame>, VoError> {
        let vo = self.vo.as_mut().ok_or_else(not_configured)?;
        Ok(vo.track(stamp, left)?.map(|est| self.output(est)))
    }

    /// Processes the frame from the features of its image(s) (`right`: a stereo rig's right image).
    pub fn process(
        &mut self,
        stamp: f64,
        left: &Features,
        right: Option<&Features>,
    ) -> Result<OdometryFrame, VoError> {
        let vo = self.vo.as_mut().ok_or_else(not_configured)?;
        let est = vo.process(stamp, left, right)?;
        Ok(self.output(est))
    }

    /// [`Self::process`] with the right image's features computed only when the frame needs them (see
    /// [`VisualOdometry::process_lazily`]).
    pub fn process_lazily(
        &mut self,
        stamp: f64,
        left: &Features,
        right_features: &mut dyn FnMut() -> Option<Features>,
    ) -> Result<OdometryFrame, VoError> {
        let vo = self.vo.as_mut().ok_or_else(not_configured)?;
        let est = vo.process_lazily(stamp, left, right_features)?;
        Ok(self.output(est))
    }

    /// The features of a frame whose estimate asked for them ([`VoEstimate::keyframe_requested`]); see
    /// [`VisualOdometry::insert_keyframe`].
    pub fn insert_keyframe(
        &mut self,
        stamp: f64,
        left: &Features,
        right: Option<&Features>,
    ) -> Result<bool, VoError> {
        let vo = self.vo.as_mut().ok_or_else(not_configured)?;
        vo.insert_keyframe(stamp, left, right)
    }

    /// Withdraws an open keyframe request (see [`VisualOdometry::cancel_keyframe_request`]).
    pub fn cancel_keyframe_request(&mut self) {
        if let Some(vo) = self.vo.as_mut() {
            vo.cancel_keyframe_request();
        }
    }

    /// Forgets the run: tracking starts again from the next frame, whose pose is the identity.
    pub fn reset(&mut self) {
        if let Some(vo) = self.vo.as_mut() {
            vo.reset();
        }
        self.odom_from_world = self.base_from_camera;
        self.last = None;
        self.last_odom_from_base = Isometry3::identity();
    }

    /// Starts the VO again from the next frame with the pose held where it was (`odom` stays continuous),
    /// e.g. after the input's stamps jumped back (a bag restarted). Counted as a restart.
    pub fn restart(&mut self) -> Result<(), VoError> {
        let Some(rig) = self.rig.clone() else {
            return Ok(());
        };
        let vo = VisualOdometry::new(rig, self.options.clone())?;
        if let Some(old) = &self.vo {
            add_counters(&mut self.earlier, &old.counters());
        }
        self.earlier.restarts += 1;
        self.odom_from_world = self.last_odom_from_base * self.base_from_camera;
        self.vo = Some(vo);
        self.last = None;
        Ok(())
    }

    /// Makes the latest frame's base pose `odom_from_base`; later poses follow from it.
    pub fn set_pose(&mut self, odom_from_base: Isometry3<f64>) {
        let world_from_camera = self.last.map_or(Isometry3::identity(), |(_, p)| p);
        self.odom_from_world = odom_from_base * self.base_from_camera * world_from_camera.inverse();
        self.last_odom_from_base = odom_from_base;
    }

    fn output(&mut self, est: VoEstimate) -> OdometryFrame {
        let world_from_camera = est
            .world_from_camera
            .or(self.last.map(|(_, p)| p))
            .unwrap_or_else(Isometry3::identity);
        let m = self.base_from_camera;
        let odom_from_base = self.odom_from_world * world_from_camera * m.inverse();
        // base origin in the camera frame, and in the world frame relative to the camera centre
        let c = m.inverse().translation.vector;
        let lever = world_from_camera.rotation * c;
        let r_odom = self
            .odom_from_world
            .rotation
            .to_rotation_matrix()
            .into_inner();
        let pose_cov = moved(&est.covariance, &lever, &r_odom);
        let moving = matches!(
            est.state,
            TrackingState::Tracking | TrackingState::Recovered
        ) && est.world_from_camera.is_some();
        let dt = self.last.map_or(0.0, |(t, _)| est.stamp - t);
        let r_bc = m.rotation.to_rotation_matrix().into_inner();
        let lost_twist = Matrix6::identity() * LOST_VARIANCE;
        let (camera_twist, base_twist) = if moving {
            let w_c = est.angular_velocity;
            let v_c = est.linear_velocity;
            let linear = r_bc * (v_c + w_c.cross(&c));
            let angular = r_bc * w_c;
            let (camera_cov, base_cov) = if dt > 0.0 {
                // the frame's pose covariance in its own camera frame, as a velocity covariance
                let r_cw = world_from_camera
                    .rotation
                    .inverse()
                    .to_rotation_matrix()
                    .into_inner();
                let in_camera = rotated(&est.frame_covariance, &r_cw) * (2.0 / (dt * dt));
                let mut j = Matrix6::zeros();
                j.fixed_view_mut::<3, 3>(0, 0).copy_from(&r_bc);
                j.fixed_view_mut::<3, 3>(0, 3)
                    .copy_from(&(-r_bc * skew(&c)));
                j.fixed_view_mut::<3, 3>(3, 3).copy_from(&r_bc);
                (in_camera, j * in_camera * j.transpose())
            } else {
                (lost_twist, lost_twist)
            };
            ((v_c, w_c, camera_cov), (linear, angular, base_cov))
        } else {
            let zero = (Vector3::zeros(), Vector3::zeros(), lost_twist);
            (zero, zero)
        };
        let (linear, angular, twist_cov) = base_twist;
        let camera = CameraOdometry {
            odom_from_camera: self.odom_from_world * world_from_camera,
            pose_covariance: row_major(&rotated(&est.covariance, &r_odom)),
            linear_velocity: camera_twist.0,
            angular_velocity: camera_twist.1,
            twist_covariance: row_major(&camera_twist.2),
        };
        if est.world_from_camera.is_some() {
            self.last = Some((est.stamp, world_from_camera));
        }
        self.last_odom_from_base = odom_from_base;
        OdometryFrame {
            stamp: est.stamp,
            state: est.state,
            odom_from_base,
            pose_covariance: row_major(&pose_cov),
            linear_velocity: linear,
            angular_velocity: angular,
            twist_covariance: row_major(&twist_cov),
            camera,
            estimate: est,
        }
    }
}

fn not_configured() -> VoError {
    VoError::InvalidRig("no calibration yet (configure the rig before the first frame)".into())
}

fn same_rig(a: &Rig, b: &Rig) -> bool {
    match (a, b) {
        (Rig::Stereo(a), Rig::Stereo(b)) => {
            a.left == b.left
                && a.right == b.right
                && (a.rotation - b.rotation).norm() < 1e-12
                && (a.translation - b.translation).norm() < 1e-12
        }
        (Rig::Monocular(a), Rig::Monocular(b)) => a == b,
        _ => false,
    }
}

fn add_counters(total: &mut VoCounters, c: &VoCounters) {
    total.frames += c.frames;
    total.keyframes += c.keyframes;
    total.losses += c.losses;
    total.recoveries += c.recoveries;
    total.restarts += c.restarts;
}

/// A (position, rotation) covariance of a camera in the world frame, for the point `lever` away from the
/// camera centre (world frame), rotated by `r` into the parent frame.
pub(crate) fn moved(cov: &Matrix6<f64>, lever: &Vector3<f64>, r: &Matrix3<f64>) -> Matrix6<f64> {
    // δp_point = δp − [lever]× δθ for a rotation error δθ of the world frame
    let mut j = Matrix6::identity();
    j.fixed_view_mut::<3, 3>(0, 3).copy_from(&(-skew(lever)));
    rotated(&(j * cov * j.transpose()), r)
}

/// `cov` with both blocks rotated by `r`.
fn rotated(cov: &Matrix6<f64>, r: &Matrix3<f64>) -> Matrix6<f64> {
    let mut b = Matrix6::zeros();
    b.fixed_view_mut::<3, 3>(0, 0).copy_from(r);
    b.fixed_view_mut::<3, 3>(3, 3).copy_from(r);
    b * cov * b.transpose()
}

fn row_major(m: &Matrix6<f64>) -> [f64; 36] {
    let mut out = [0.0; 36];
    for r in 0..6 {
        for c in 0..6 {
            out[r * 6 + c] = m[(r, c)];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::FRAC_PI_2;

    /// The usual optical mounting of a forward-looking camera, 0.2 m ahead of and 0.5 m above the base.
    fn mounting() -> Isometry3<f64> {
        isometry_from_xyz_rpy([0.2, 0.0, 0.5], [-FRAC_PI_2, 0.0, -FRAC_PI_2])
    }

    fn estimate(stamp: f64, world_from_camera: Isometry3<f64>, v_c: Vector3<f64>) -> VoEstimate {
        VoEstimate {
            stamp,
            state: TrackingState::Tracking,
            world_from_camera: Some(world_from_camera),
            covariance: Matrix6::identity() * 1e-4,
            frame_covariance: Matrix6::identity() * 1e-6,
            linear_velocity: v_c,
            angular_velocity: Vector3::zeros(),
            still: false,
            keyframe: false,
            stereo_points: 0,
            tracked: 100,
            by_flow: true,
            keyframe_requested: false,
            counters: VoCounters::default(),
        }
    }

    fn vo_with(m: Isometry3<f64>) -> RobotVo {
        let mut vo = RobotVo::new(VoOptions::default()).unwrap();
        vo.base_from_camera = m;
        vo.odom_from_world = m;
        vo
    }

    #[test]
    fn the_optical_mounting_maps_camera_forward_onto_base_forward() {
        let m = mounting();
        // optical z (forward) is base x, optical x (right) is base −y, optical y (down) is base −z
        let r = m.rotation;
        assert!((r * Vector3::z() - Vector3::x()).norm() < 1e-12);
        assert!((r * Vector3::x() + Vector3::y()).norm() < 1e-12);
        assert!((r * Vector3::y() + Vector3::z()).norm() < 1e-12);
    }

    #[test]
    fn camera_motion_becomes_base_motion_in_rep_105_axes() {
        let m = mounting();
        let mut vo = vo_with(m);
        let first = vo.output(estimate(0.0, Isometry3::identity(), Vector3::zeros()));
        assert!(first.odom_from_base.translation.vector.norm() < 1e-12);
        // the camera moves 1 m forward along its optical axis in 1 s
        let ahead = Isometry3::translation(0.0, 0.0, 1.0);
        let out = vo.output(estimate(1.0, ahead, Vector3::new(0.0, 0.0, 1.0)));
        assert!((out.odom_from_base.translation.vector - Vector3::x()).norm() < 1e-12);
        assert!((out.linear_velocity - Vector3::x()).norm() < 1e-12);
        assert!(out.angular_velocity.norm() < 1e-12);
        // twist covariance: 2 · 1e-6 / 1 s² for the rotation rates; the linear ones add the lever arm's share
        assert!((out.twist_covariance[21] - 2e-6).abs() < 1e-15);
        assert!(out.twist_covariance[0] >= 2e-6 - 1e-15);
        assert!(out.pose_covariance[0] >= 1e-4 - 1e-12);
    }

    #[test]
    fn a_turning_camera_moves_the_base_origin_with_the_lever_arm() {
        // the camera yaws in place (about its own y axis, optical down): the base origin 0.2 m behind it
        // swings around it
        let m = mounting();
        let mut vo = vo_with(m);
        vo.output(estimate(0.0, Isometry3::identity(), Vector3::zeros()));
        let yaw = UnitQuaternion::from_axis_angle(&Vector3::y_axis(), 0.3);
        let turned = Isometry3::from_parts(Translation3::identity(), yaw);
        let mut est = estimate(1.0, turned, Vector3::zeros());
        est.angular_velocity = Vector3::new(0.0, 0.3, 0.0);
        let out = vo.output(est);
        // the base turned by −0.3 rad about its z (camera +y is base −z)
        let angle = out.odom_from_base.rotation.scaled_axis();
        assert!(
            (angle - Vector3::new(0.0, 0.0, -0.3)).norm() < 1e-12,
            "{angle}"
        );
        // the base origin moved (the camera centre stayed): on a circle of radius |lever| about it
        let p = out.odom_from_base.translation.vector;
        let cam_in_odom = Vector3::new(0.2, 0.0, 0.5);
        let r0 = (Vector3::zeros() - cam_in_odom).norm();
        assert!(((p - cam_in_odom).norm() - r0).abs() < 1e-12);
        assert!(p.norm() > 0.05);
        // the base's linear velocity is ω × r, not zero
        assert!(out.linear_velocity.norm() > 0.05);
        // the lever arm adds position variance from the rotation variance
        assert!(out.pose_covariance[7] > 1e-4);
    }

    #[test]
    fn set_pose_and_reset() {
        let m = mounting();
        let mut vo = vo_with(m);
        let step = Isometry3::translation(0.0, 0.0, 0.5);
        vo.output(estimate(0.0, step, Vector3::zeros()));
        let target = isometry_from_xyz_rpy([3.0, -1.0, 0.0], [0.0, 0.0, 1.0]);
        vo.set_pose(target);
        // the next frame with no motion reads the set pose; a step forward moves along the new heading
        let same = vo.output(estimate(0.1, step, Vector3::zeros()));
        assert!((same.odom_from_base.to_homogeneous() - target.to_homogeneous()).norm() < 1e-9);
        let further = vo.output(estimate(
            0.2,
            Isometry3::translation(0.0, 0.0, 1.5),
            Vector3::zeros(),
        ));
        let expected = target * Isometry3::translation(1.0, 0.0, 0.0);
        assert!(
            (further.odom_from_base.to_homogeneous() - expected.to_homogeneous()).norm() < 1e-9
        );
        vo.reset();
        let again = vo.output(estimate(0.3, Isometry3::identity(), Vector3::zeros()));
        assert!(again.odom_from_base.translation.vector.norm() < 1e-12);
        assert!(again.odom_from_base.rotation.angle() < 1e-12);
    }

    #[test]
    fn the_camera_answer_is_the_base_answer_through_the_mounting() {
        let m = mounting();
        let mut vo = vo_with(m);
        vo.output(estimate(0.0, Isometry3::identity(), Vector3::zeros()));
        let turn = Isometry3::from_parts(
            Translation3::new(0.3, 0.0, 1.0),
            UnitQuaternion::from_euler_angles(0.0, 0.2, 0.0),
        );
        let v_c = Vector3::new(0.0, 0.0, 3.0);
        let out = vo.output(estimate(0.1, turn, v_c));
        let via_base = out.odom_from_base * m;
        let d = via_base.to_homogeneous() - out.camera.odom_from_camera.to_homogeneous();
        assert!(d.norm() < 1e-12, "{d}");
        assert_eq!(out.camera.linear_velocity, v_c);
        // the camera's own position uncertainty has no lever arm: the VO's, rotated into odom
        let pos_var: f64 = (0..3).map(|i| out.camera.pose_covariance[i * 7]).sum();
        assert!((pos_var - 3e-4).abs() < 1e-12, "{pos_var}");
    }

    #[test]
    fn another_kind_of_rig_restarts_the_odometry() {
        let cam = crate::geometry::PinholeCamera::new(500.0, 500.0, 319.5, 239.5).unwrap();
        let mut vo = RobotVo::new(VoOptions::default()).unwrap();
        assert!(vo.configure(Rig::Monocular(cam), mounting()).unwrap());
        assert!(!vo.configure(Rig::Monocular(cam), mounting()).unwrap());
        let other = crate::geometry::PinholeCamera::new(400.0, 400.0, 319.5, 239.5).unwrap();
        assert!(vo.configure(Rig::Monocular(other), mounting()).unwrap());
        assert_eq!(vo.counters().restarts, 1);
    }

    #[test]
    fn a_restart_holds_the_pose_and_is_counted() {
        let cam = crate::geometry::PinholeCamera::new(500.0, 500.0, 319.5, 239.5).unwrap();
        let rig = Rig::Stereo(crate::vo::StereoRig {
            left: cam,
            right: cam,
            rotation: Matrix3::identity(),
            translation: Vector3::new(-0.12, 0.0, 0.0),
        });
        let mut vo = RobotVo::new(VoOptions::default()).unwrap();
        assert!(vo.configure(rig.clone(), mounting()).unwrap());
        assert!(
            !vo.configure(rig, mounting()).unwrap(),
            "same rig: no restart"
        );

        let moved = vo.output(estimate(
            0.0,
            Isometry3::translation(0.0, 0.0, 2.0),
            Vector3::zeros(),
        ));
        vo.restart().unwrap();
        assert_eq!(vo.counters().restarts, 1);
        // the new run's world is the camera where the base was: its first (initializing) frame holds the pose
        let mut first = estimate(0.1, Isometry3::identity(), Vector3::zeros());
        first.state = TrackingState::Initializing;
        first.world_from_camera = None;
        let held = vo.output(first);
        let d = held.odom_from_base.to_homogeneous() - moved.odom_from_base.to_homogeneous();
        assert!(d.norm() < 1e-9, "{d}");
        assert!(
            (moved.odom_from_base.translation.vector - Vector3::new(2.0, 0.0, 0.0)).norm() < 1e-9
        );
    }

    #[test]
    fn lost_frames_hold_the_pose_with_no_twist() {
        let mut vo = vo_with(mounting());
        vo.output(estimate(
            0.0,
            Isometry3::translation(0.0, 0.0, 1.0),
            Vector3::zeros(),
        ));
        let mut lost = estimate(0.1, Isometry3::translation(0.0, 0.0, 1.0), Vector3::zeros());
        lost.state = TrackingState::Lost;
        lost.covariance = Matrix6::identity() * LOST_VARIANCE;
        let out = vo.output(lost);
        assert!(out.linear_velocity.norm() == 0.0);
        assert_eq!(out.twist_covariance[0], LOST_VARIANCE);
        assert!(out.pose_covariance[0] >= LOST_VARIANCE);
        assert!((out.odom_from_base.translation.vector - Vector3::x()).norm() < 1e-12);
    }
}
