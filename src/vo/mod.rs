//! Visual odometry: the camera's motion through a run, from features of consecutive frames.
//!
//! [`VisualOdometry`] (metric): each frame's left and right features are matched and triangulated with the
//! rig's calibration; the left features are matched to the landmarks of the current keyframe (and, after a
//! failure, of the recent keyframes) and the pose comes from P3P + LO-RANSAC + LM
//! ([`crate::geometry::absolute_pose`]). A keyframe is made when too few of its landmarks are still tracked
//! or the camera moved far from it; its landmarks are the frame's stereo points placed in the world by the
//! frame's pose. Poses are frame-to-keyframe, so a camera that stands still adds no drift; a motion that the
//! pose's own uncertainty cannot tell from zero is reported as no motion ([`VoEstimate::still`]).
//!
//! Conventions: the world is the odometry frame, the first left camera frame (optical axes: x right, y
//! down, z forward); poses are `world_from_camera`; covariances are 6×6 over (x, y, z, rotation about x, y,
//! z) in the world frame — the order of ROS `nav_msgs/Odometry` — and grow with every keyframe (each
//! adds its own estimate's uncertainty). While tracking is lost the last pose is held with
//! [`LOST_VARIANCE`] on the diagonal and the state says so.
//!
//! A single camera ([`Rig::Monocular`]) runs the same tracker; its keyframes' landmarks come from the
//! motion between keyframes instead of a baseline, after a two-view initialisation, and the run has one
//! unknown scale (the median depth of the first landmarks is 1; the covariances are in that unit).
//!
//! What it does not do (yet): windowed bundle adjustment, loop closure (between keyframes the landmarks
//! are followed photometrically: [`VisualOdometry::track`]). Not here: images, engines, ROS — features come in, poses go
//! out; [`sequence`] reads the on-disk sequences the `matcha vo` subcommand and the evaluation use.

// `!(x > y)` is deliberate: it is true for NaN, which must take the rejecting branch.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod background;
pub mod bundle;
mod covariance;
mod flow;
mod odometry;
pub mod sequence;
#[cfg(test)]
mod tests;
pub mod trajectory;

pub use odometry::{KeyframeView, Rig, VisualOdometry};

use nalgebra::{Isometry3, Matrix3, Matrix6, Vector3};

use crate::geometry::{PinholeCamera, RansacOptions};
use crate::matching::mnn::MnnOptions;

/// Variance put on the covariance diagonal while tracking is lost (RTAB-Map's convention: a consumer that
/// fuses the pose gives it no weight).
pub const LOST_VARIANCE: f64 = 9999.0;

/// Errors of the caller (not outcomes of the scene: those are [`TrackingState`]s).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VoError {
    /// The rig's calibration is unusable.
    #[error("invalid stereo rig: {0}")]
    InvalidRig(String),
    /// An option is out of range.
    #[error("invalid VO options: {0}")]
    InvalidOptions(String),
    /// The features of a frame do not fit the run (descriptor dimension, image size).
    #[error("invalid frame: {0}")]
    InvalidFrame(String),
}

/// A calibrated stereo pair: the two cameras and the transform from the left camera's frame to the
/// right's, `x_right = R·x_left + t` (metres). Rectified rigs have `R = I`, `t = (−baseline, 0, 0)`.
#[derive(Debug, Clone)]
pub struct StereoRig {
    /// Left camera.
    pub left: PinholeCamera,
    /// Right camera.
    pub right: PinholeCamera,
    /// Rotation of `x_right = R·x_left + t`.
    pub rotation: Matrix3<f64>,
    /// Translation of `x_right = R·x_left + t`, metres.
    pub translation: Vector3<f64>,
}

impl StereoRig {
    /// Checks the cameras and the extrinsic (a rotation, a baseline of at least a millimetre).
    pub fn validate(&self) -> Result<(), VoError> {
        self.left
            .validate()
            .and(self.right.validate())
            .map_err(|e| VoError::InvalidRig(e.to_string()))?;
        let r = &self.rotation;
        let rotation =
            (r.transpose() * r - Matrix3::identity()).norm() < 1e-6 && r.determinant() > 0.0;
        if !rotation || !r.iter().all(|v| v.is_finite()) {
            return Err(VoError::InvalidRig(
                "the extrinsic rotation is not a rotation".into(),
            ));
        }
        if !(self.baseline() >= 1e-3) {
            return Err(VoError::InvalidRig(format!(
                "baseline {:.4} m: the cameras must be at least 1 mm apart",
                self.baseline()
            )));
        }
        Ok(())
    }

    /// Distance between the camera centres, metres.
    pub fn baseline(&self) -> f64 {
        self.translation.norm()
    }
}

/// Options of the visual odometry (the `vo` section of the configuration).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VoOptions {
    /// Stereo triangulation: largest reprojection error in either image, pixels.
    pub stereo_max_error_px: f64,
    /// Stereo points nearer than this are dropped, metres.
    pub min_depth_m: f64,
    /// Stereo points farther than this many baselines are dropped (their depth is too uncertain).
    pub max_depth_baselines: f64,
    /// Descriptor matching (left ↔ right, frame ↔ keyframe).
    pub mnn: MnnOptions,
    /// Photometric sub-pixel refinement of the right match of each left keypoint and of each keyframe
    /// detection in later frames (needs the grayscale frames in the features: `matcher.refine.enabled`).
    pub refine: bool,
    /// Robust PnP against the keyframe's landmarks (threshold on the reprojection error in pixels).
    pub pnp: RansacOptions,
    /// A new keyframe when fewer than this share of the keyframe's landmarks are PnP inliers. Every
    /// keyframe adds its pose error to all later poses, so keyframes are made as late as tracking allows
    /// (docs/vo.md has the measurement).
    pub keyframe_tracked_ratio: f64,
    /// A new keyframe when fewer than this many landmarks are PnP inliers.
    pub keyframe_min_tracked: usize,
    /// A new keyframe when the camera is this far from the keyframe, metres.
    pub keyframe_max_distance_m: f64,
    /// A new keyframe when the camera turned this much from the keyframe, degrees.
    pub keyframe_max_angle_deg: f64,
    /// Landmarks of the keyframe followed by [`VisualOdometry::track`] at most (an even spread of them).
    pub flow_max_points: usize,
    /// Points with a depth (stereo; monocular: carried or triangulated against the previous keyframe) a
    /// frame needs to become a keyframe.
    pub min_stereo_points: usize,
    /// A motion smaller than this many standard deviations of the pose (position and rotation) is
    /// reported as none: the pose is held and the twist is zero.
    pub still_sigmas: f64,
    /// The still test applies only when this frame's position σ is at most this (metres) ...
    pub still_max_sigma_m: f64,
    /// ... and its rotation σ at most this (degrees): a poorly determined pose cannot tell a still camera.
    pub still_max_sigma_deg: f64,
    /// Keyframes kept for recovery after a failed frame.
    pub recent_keyframes: usize,
    /// After this many failed frames in a row the run restarts from the held pose with a new keyframe.
    pub restart_after_failures: usize,
    /// Deferred keyframes: when [`VisualOdometry::track`] finds a keyframe due while the landmarks are
    /// still followed, it answers the frame and asks for its features ([`VoEstimate::keyframe_requested`]),
    /// which the caller computes elsewhere (another thread) and hands to
    /// [`VisualOdometry::insert_keyframe`]; tracking goes on against the old keyframe meanwhile, for at most
    /// this many frames (then the frame waits for its features as without deferral). 0 = never defer.
    pub keyframe_max_lag_frames: usize,
    /// What only a single camera needs.
    pub monocular: MonocularOptions,
}

/// Options of the monocular odometry (`vo.monocular`): its initialisation and new landmarks.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonocularOptions {
    /// The first keyframe needs this median parallax between the reference frame and the current one,
    /// degrees (the depth of the first landmarks, and so the scale of the run, is no better than it).
    pub init_min_parallax_deg: f64,
    /// A new landmark needs this angle between its two rays, degrees.
    pub min_parallax_deg: f64,
    /// A landmark of the previous keyframe is carried to the new one when it reprojects within this many
    /// pixels of the new detection.
    pub carry_max_error_px: f64,
    /// A carried landmark is observed in the new keyframe where the previous keyframe's patch of it aligns
    /// (`true`), or at the new keyframe's detection of it (`false`, up to `carry_max_error_px` from the
    /// point that was triangulated). Off by default: on `vo_loop` it cuts the error by about 3× (docs/vo.md),
    /// but tracking then keeps more inliers, keyframes are asked for later, and a keyframe deferred by 4
    /// or more frames (a busy CPU) came too late on `vo_short`, which the node then measured at 2° where
    /// the default gives 0.5°.
    pub observe_carried_at_patch: bool,
    /// Keyframes in the bundle adjustment run at every new keyframe (the two oldest are held fixed); 0
    /// switches it off. Off by default: measured on three sequences it did not improve the trajectory
    /// (docs/vo.md), because a keyframe observes a carried landmark at a fresh detection, not at the
    /// sub-pixel position tracking aligns to.
    pub window_keyframes: usize,
    /// Scale of the bundle adjustment's Cauchy loss, pixels.
    pub bundle_loss_px: f64,
    /// Levenberg–Marquardt iterations of the bundle adjustment at most.
    pub bundle_iterations: usize,
}

impl Default for MonocularOptions {
    fn default() -> Self {
        Self {
            init_min_parallax_deg: 2.0,
            min_parallax_deg: 1.0,
            carry_max_error_px: 2.0,
            observe_carried_at_patch: false,
            window_keyframes: 0,
            bundle_loss_px: 1.0,
            bundle_iterations: 10,
        }
    }
}

impl Default for VoOptions {
    fn default() -> Self {
        Self {
            stereo_max_error_px: 1.5,
            min_depth_m: 0.1,
            max_depth_baselines: 150.0,
            mnn: MnnOptions::default(),
            refine: true,
            pnp: RansacOptions {
                // the observations are photometrically refined to the keyframe's detections: sub-pixel
                threshold_px: 1.0,
                confidence: 0.9999,
                max_iterations: 2000,
                min_iterations: 20,
                min_inliers: 25,
                seed: 0,
            },
            keyframe_tracked_ratio: 0.2,
            keyframe_min_tracked: 80,
            keyframe_max_distance_m: 0.5,
            keyframe_max_angle_deg: 20.0,
            flow_max_points: 500,
            min_stereo_points: 40,
            still_sigmas: 3.0,
            still_max_sigma_m: 0.005,
            still_max_sigma_deg: 0.1,
            recent_keyframes: 8,
            restart_after_failures: 15,
            keyframe_max_lag_frames: 10,
            monocular: MonocularOptions::default(),
        }
    }
}

impl VoOptions {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), VoError> {
        let bad = |what: &str| Err(VoError::InvalidOptions(what.to_string()));
        if !(self.stereo_max_error_px > 0.0) {
            return bad("stereo_max_error_px must be > 0");
        }
        if !(self.min_depth_m >= 0.0 && self.max_depth_baselines > 1.0) {
            return bad("min_depth_m must be ≥ 0 and max_depth_baselines > 1");
        }
        if !(self.keyframe_tracked_ratio > 0.0 && self.keyframe_tracked_ratio < 1.0) {
            return bad("keyframe_tracked_ratio must be in (0, 1)");
        }
        if !(self.keyframe_max_distance_m > 0.0 && self.keyframe_max_angle_deg > 0.0) {
            return bad("keyframe_max_distance_m and keyframe_max_angle_deg must be > 0");
        }
        if !(self.still_sigmas >= 0.0) {
            return bad("still_sigmas must be ≥ 0");
        }
        if self.recent_keyframes == 0 || self.min_stereo_points < 6 {
            return bad("recent_keyframes must be ≥ 1 and min_stereo_points ≥ 6");
        }
        let m = &self.monocular;
        if !(m.init_min_parallax_deg > 0.0
            && m.min_parallax_deg >= 0.0
            && m.carry_max_error_px > 0.0)
        {
            return bad("monocular: init_min_parallax_deg, carry_max_error_px and bundle_loss_px must be > 0, min_parallax_deg ≥ 0");
        }
        Ok(())
    }
}

/// Where the tracker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackingState {
    /// No keyframe yet (too few stereo points so far).
    Initializing,
    /// The pose comes from the current keyframe's landmarks.
    Tracking,
    /// This frame failed: the last pose is held with [`LOST_VARIANCE`].
    Lost,
    /// Tracking came back after a loss (from a recent keyframe, or restarted from the held pose).
    Recovered,
}

impl TrackingState {
    /// The lower-case name used in messages and diagnostics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Initializing => "initializing",
            Self::Tracking => "tracking",
            Self::Lost => "lost",
            Self::Recovered => "recovered",
        }
    }
}

/// The odometry's answer for one frame.
#[derive(Debug, Clone)]
pub struct VoEstimate {
    /// The frame's time stamp, seconds.
    pub stamp: f64,
    /// Tracking state after this frame.
    pub state: TrackingState,
    /// Pose of the left camera in the odometry frame; `None` only while initializing.
    pub world_from_camera: Option<Isometry3<f64>>,
    /// Covariance over (x, y, z, rotation about x, y, z) in the odometry frame.
    pub covariance: Matrix6<f64>,
    /// This frame's own share of [`Self::covariance`] (its pose against the keyframe, same frame and
    /// order, without the keyframe's accumulated uncertainty): what the motion since the previous frame
    /// is known to.
    pub frame_covariance: Matrix6<f64>,
    /// Linear velocity (m/s) of the camera in its own frame since the previous frame.
    pub linear_velocity: Vector3<f64>,
    /// Angular velocity (rad/s) of the camera in its own frame since the previous frame.
    pub angular_velocity: Vector3<f64>,
    /// The motion since the last moving frame was below [`VoOptions::still_sigmas`]: the pose is held.
    pub still: bool,
    /// This frame became a keyframe.
    pub keyframe: bool,
    /// Triangulated stereo points of the frame (0 when it needed none: tracked by flow, or localized or
    /// lost without making a keyframe or restarting; see [`VisualOdometry::process_lazily`]).
    pub stereo_points: usize,
    /// PnP inliers against the keyframe (0 when the frame failed).
    pub tracked: usize,
    /// Answered without features by photometric tracking ([`VisualOdometry::track`]): the keyframe's
    /// landmarks followed, or, before the first monocular keyframe, the reference's keypoints.
    pub by_flow: bool,
    /// This frame should become a keyframe: compute the features of both its images and pass them to
    /// [`VisualOdometry::insert_keyframe`] (see [`VoOptions::keyframe_max_lag_frames`]).
    pub keyframe_requested: bool,
    /// Counters of the run so far.
    pub counters: VoCounters,
}

/// Counters of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct VoCounters {
    /// Frames processed.
    pub frames: usize,
    /// Keyframes made.
    pub keyframes: usize,
    /// Times tracking was lost (a run of failed frames counts once).
    pub losses: usize,
    /// Recoveries from a recent keyframe.
    pub recoveries: usize,
    /// Restarts from the held pose after [`VoOptions::restart_after_failures`] failed frames.
    pub restarts: usize,
}
