//! The metric stereo tracker: stereo points per frame, PnP against the current keyframe's landmarks,
//! keyframes, still-camera detection and recovery after a failed frame (see the module doc of
//! [`crate::vo`]). `mod.rs`: the state and [`StereoOdometry::process`] (a frame with features);
//! `track.rs`: frames answered by following the landmarks photometrically, and deferred keyframes;
//! `landmarks.rs`: stereo points, localization against a keyframe, new keyframes.

// `!(x > y)` is deliberate: it is true for NaN, which must take the rejecting branch.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use std::collections::VecDeque;

use nalgebra::{Isometry3, Matrix3, Matrix6, Rotation3, Translation3, UnitQuaternion, Vector3};
use ndarray::Array2;

use super::covariance::{carried, world_from_pnp};
use super::flow::Pyramid;
use super::{StereoRig, TrackingState, VoCounters, VoError, VoEstimate, VoOptions, LOST_VARIANCE};
use crate::features::Features;
use crate::geometry::AbsolutePose;

/// A keyframe: its pose, the covariance of that pose, and its landmarks (world points with the left
/// descriptors that saw them).
struct Keyframe {
    world_from_camera: Isometry3<f64>,
    covariance: Matrix6<f64>,
    points: Vec<Vector3<f64>>,
    descriptors: Array2<f32>,
    /// Left keypoint of each landmark (where it was triangulated) and the left image, for the photometric
    /// refinement of later observations.
    keypoints: Vec<[f32; 2]>,
    pyramid: Option<Pyramid>,
}

/// A frame that is to become a keyframe once its features are computed.
struct KeyframeCandidate {
    stamp: f64,
    /// [`VoCounters::frames`] when it was asked for (its age in frames bounds the deferral).
    frame: usize,
    pose: Isometry3<f64>,
    covariance: Matrix6<f64>,
}

/// A frame's stereo points: the left keypoints that triangulated and their camera-frame points.
struct StereoPoints {
    keypoint: Vec<usize>,
    camera: Vec<Vector3<f64>>,
}

/// Metric stereo visual odometry over a stream of left/right feature pairs.
pub struct StereoOdometry {
    rig: StereoRig,
    options: VoOptions,
    keyframes: VecDeque<Keyframe>,
    /// The last published pose and its time (the still-camera anchor is `anchor`), and the one before.
    last: Option<(f64, Isometry3<f64>)>,
    previous: Option<(f64, Isometry3<f64>)>,
    /// A pose [`Self::track`] found for a frame that needs a keyframe: [`Self::process`] of the same frame
    /// uses it instead of localizing by descriptors (the patches followed the landmarks better than the
    /// descriptors match them in low texture and blur).
    pending: Option<(f64, AbsolutePose)>,
    /// A frame answered by [`Self::track`] whose features were asked for, to become a keyframe when they
    /// arrive ([`Self::insert_keyframe`]).
    candidate: Option<KeyframeCandidate>,
    /// The pose held while the motion is below the still threshold.
    anchor: Option<Isometry3<f64>>,
    last_covariance: Matrix6<f64>,
    failures: usize,
    lost: bool,
    descriptor_dim: Option<usize>,
    counters: VoCounters,
}

impl StereoOdometry {
    /// A tracker for `rig` (checked) with `options` (checked).
    pub fn new(rig: StereoRig, options: VoOptions) -> Result<Self, VoError> {
        rig.validate()?;
        options.validate()?;
        Ok(Self {
            rig,
            options,
            keyframes: VecDeque::new(),
            last: None,
            previous: None,
            pending: None,
            candidate: None,
            anchor: None,
            last_covariance: Matrix6::zeros(),
            failures: 0,
            lost: false,
            descriptor_dim: None,
            counters: VoCounters::default(),
        })
    }

    /// Forgets the run: the next frame starts a new odometry frame at identity.
    pub fn reset(&mut self) {
        let counters = self.counters;
        *self = Self::new(self.rig.clone(), self.options.clone()).expect("checked at construction");
        self.counters = VoCounters {
            frames: counters.frames,
            ..Default::default()
        };
    }

    /// The counters so far.
    pub fn counters(&self) -> VoCounters {
        self.counters
    }

    /// Processes one stereo frame taken at `stamp` (seconds, increasing): `left` and `right` are the
    /// features of the two images (same extractor).
    pub fn process(
        &mut self,
        stamp: f64,
        left: &Features,
        right: &Features,
    ) -> Result<VoEstimate, VoError> {
        self.check(stamp, left, right)?;
        self.counters.frames += 1;
        // this frame's own features make any keyframe that is still asked for obsolete
        self.candidate = None;
        let stereo = self.stereo_points(left, right);
        if self.keyframes.is_empty() {
            if stereo.camera.len() < self.options.min_stereo_points {
                return Ok(self.initializing(stamp, stereo.camera.len()));
            }
            let pose = Isometry3::identity();
            self.add_keyframe(&pose, &Matrix6::zeros(), &stereo, left);
            return Ok(self.publish(
                stamp,
                pose,
                Matrix6::zeros(),
                TrackingState::Tracking,
                &stereo,
                0,
                true,
                false,
            ));
        }
        // the current keyframe first, then the recent ones (newest first) after a failure
        // the pose [`Self::track`] found for this frame (it asked for a keyframe), else the descriptors'
        let pending = self
            .pending
            .take()
            .filter(|(t, _)| *t == stamp)
            .map(|(_, p)| (self.keyframes.len() - 1, p));
        let found = pending.or_else(|| {
            self.localization_order()
                .into_iter()
                .find_map(|k| self.localize(k, left).map(|hit| (k, hit)))
        });
        let Some((k, pnp)) = found else {
            return Ok(self.failed(stamp, &stereo, left));
        };
        let recovered = self.lost || k + 1 != self.keyframes.len();
        let kf = &self.keyframes[k];
        let pose = isometry_from_pnp(&pnp);
        let offset = pose.translation.vector - kf.world_from_camera.translation.vector;
        let frame_covariance = world_from_pnp(&pnp.rotation, &pnp.covariance);
        let covariance = carried(&kf.covariance, &offset) + frame_covariance;
        let tracked = pnp.num_inliers;
        let kf_landmarks = kf.points.len();
        let relative = kf.world_from_camera.inverse() * pose;
        let far = relative.translation.vector.norm() > self.options.keyframe_max_distance_m
            || relative.rotation.angle().to_degrees() > self.options.keyframe_max_angle_deg;
        let weak = (tracked as f64) < self.options.keyframe_tracked_ratio * kf_landmarks as f64
            || tracked < self.options.keyframe_min_tracked;
        if k + 1 != self.keyframes.len() {
            // recovered from an older keyframe: it becomes the current one again
            if let Some(kf) = self.keyframes.remove(k) {
                self.keyframes.push_back(kf);
            }
        }
        // still camera: hold the anchor when the motion since it is within the pose's own uncertainty
        let (pose, still) = self.hold_if_still(pose, &frame_covariance);
        // a weak keyframe is replaced even when the camera holds still (an occluder, a light change)
        let keyframe = (weak || ((far || recovered) && !still))
            && stereo.camera.len() >= self.options.min_stereo_points;
        if keyframe {
            self.add_keyframe(&pose, &covariance, &stereo, left);
        }
        let state = if recovered {
            self.counters.recoveries += 1;
            TrackingState::Recovered
        } else {
            TrackingState::Tracking
        };
        self.lost = false;
        self.failures = 0;
        let mut est = self.publish(
            stamp, pose, covariance, state, &stereo, tracked, keyframe, still,
        );
        est.frame_covariance = frame_covariance;
        Ok(est)
    }

    /// The keyframes to localize a frame against, in order: all of them newest first while tracking;
    /// while lost, the newest and one older keyframe in turn (each failed frame tries the next), so that a
    /// lost frame costs two localizations instead of [`VoOptions::recent_keyframes`] and the camera rate
    /// holds while the camera is lost.
    fn localization_order(&self) -> Vec<usize> {
        let n = self.keyframes.len();
        if !self.lost || n <= 2 {
            return (0..n).rev().collect();
        }
        let older = (n - 2) - self.failures % (n - 1);
        vec![n - 1, older]
    }

    fn check_stamp(&self, stamp: f64) -> Result<(), VoError> {
        if !stamp.is_finite() {
            return Err(VoError::InvalidFrame("time stamp is not finite".into()));
        }
        if let Some((t, _)) = self.last {
            if !(stamp > t) {
                return Err(VoError::InvalidFrame(format!(
                    "time stamp {stamp:.6} s is not after the previous frame's {t:.6} s"
                )));
            }
        }
        Ok(())
    }

    fn check(&mut self, stamp: f64, left: &Features, right: &Features) -> Result<(), VoError> {
        self.check_stamp(stamp)?;
        self.check_descriptors(left, right)
    }

    /// Both images' descriptors have the run's dimension (the first frame's sets it).
    fn check_descriptors(&mut self, left: &Features, right: &Features) -> Result<(), VoError> {
        let dim = left.descriptor_dim();
        if right.descriptor_dim() != dim || self.descriptor_dim.is_some_and(|d| d != dim) {
            return Err(VoError::InvalidFrame(format!(
                "descriptor dimensions differ (left {dim}, right {}, run {:?}): one extractor for the whole run",
                right.descriptor_dim(),
                self.descriptor_dim
            )));
        }
        self.descriptor_dim = Some(dim);
        Ok(())
    }

    /// The anchor pose when `pose` is within `still_sigmas` of it (position and rotation, each against the
    /// standard deviation of this frame's own estimate, `frame_covariance`: the keyframe's uncertainty is
    /// common to the anchor and the pose and cancels), else `pose` (which becomes the anchor).
    fn hold_if_still(
        &mut self,
        pose: Isometry3<f64>,
        frame_covariance: &Matrix6<f64>,
    ) -> (Isometry3<f64>, bool) {
        if let Some(anchor) = self.anchor {
            let rel = anchor.inverse() * pose;
            let sigma_p = frame_covariance
                .fixed_view::<3, 3>(0, 0)
                .trace()
                .max(0.0)
                .sqrt();
            let sigma_r = frame_covariance
                .fixed_view::<3, 3>(3, 3)
                .trace()
                .max(0.0)
                .sqrt();
            let k = self.options.still_sigmas;
            // only a well-determined pose can say "no motion": with few landmarks σ is large, and a
            // moving camera would be held
            let determined = sigma_p <= self.options.still_max_sigma_m
                && sigma_r.to_degrees() <= self.options.still_max_sigma_deg;
            if determined
                && rel.translation.vector.norm() <= k * sigma_p
                && rel.rotation.angle() <= k * sigma_r
            {
                return (anchor, true);
            }
        }
        self.anchor = Some(pose);
        (pose, false)
    }

    /// A frame that could not be tracked: hold the last pose with the lost variance; after
    /// `restart_after_failures` failures restart from the held pose with this frame as the keyframe.
    fn failed(&mut self, stamp: f64, stereo: &StereoPoints, left: &Features) -> VoEstimate {
        self.failures += 1;
        if !self.lost {
            self.lost = true;
            self.counters.losses += 1;
        }
        let held = self.last.map_or(Isometry3::identity(), |(_, p)| p);
        if self.failures >= self.options.restart_after_failures
            && stereo.camera.len() >= self.options.min_stereo_points
        {
            // odom stays continuous: the new keyframe sits at the held pose; its covariance says the
            // pose is unknown relative to the earlier run
            let cov = self.last_covariance + Matrix6::identity() * LOST_VARIANCE;
            self.keyframes.clear();
            self.add_keyframe(&held, &cov, stereo, left);
            self.counters.restarts += 1;
            self.lost = false;
            self.failures = 0;
            self.anchor = Some(held);
            return self.publish(
                stamp,
                held,
                cov,
                TrackingState::Recovered,
                stereo,
                0,
                true,
                false,
            );
        }
        let cov = Matrix6::identity() * LOST_VARIANCE;
        let mut est = self.publish(
            stamp,
            held,
            cov,
            TrackingState::Lost,
            stereo,
            0,
            false,
            false,
        );
        // a failed frame says nothing about the motion
        est.linear_velocity = Vector3::zeros();
        est.angular_velocity = Vector3::zeros();
        est
    }

    fn initializing(&mut self, stamp: f64, stereo_points: usize) -> VoEstimate {
        self.last = Some((stamp, Isometry3::identity()));
        VoEstimate {
            stamp,
            state: TrackingState::Initializing,
            world_from_camera: None,
            covariance: Matrix6::identity() * LOST_VARIANCE,
            frame_covariance: Matrix6::identity() * LOST_VARIANCE,
            linear_velocity: Vector3::zeros(),
            angular_velocity: Vector3::zeros(),
            still: false,
            keyframe: false,
            stereo_points,
            tracked: 0,
            by_flow: false,
            keyframe_requested: false,
            counters: self.counters,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn publish(
        &mut self,
        stamp: f64,
        pose: Isometry3<f64>,
        covariance: Matrix6<f64>,
        state: TrackingState,
        stereo: &StereoPoints,
        tracked: usize,
        keyframe: bool,
        still: bool,
    ) -> VoEstimate {
        let (linear, angular) = match self.last {
            Some((t0, p0)) if !still && stamp > t0 => {
                let dt = stamp - t0;
                let rel = p0.inverse() * pose;
                (rel.translation.vector / dt, rel.rotation.scaled_axis() / dt)
            }
            _ => (Vector3::zeros(), Vector3::zeros()),
        };
        self.previous = self.last;
        self.last = Some((stamp, pose));
        if state != TrackingState::Lost {
            self.last_covariance = covariance;
        }
        VoEstimate {
            stamp,
            state,
            world_from_camera: Some(pose),
            covariance,
            frame_covariance: covariance,
            linear_velocity: linear,
            angular_velocity: angular,
            still,
            keyframe,
            stereo_points: stereo.camera.len(),
            tracked,
            by_flow: false,
            keyframe_requested: false,
            counters: self.counters,
        }
    }
}

/// `world_from_camera` of a PnP pose `x_cam = R·X + t`.
fn isometry_from_pnp(p: &AbsolutePose) -> Isometry3<f64> {
    let r: Matrix3<f64> = p.rotation.transpose();
    let q = UnitQuaternion::from_rotation_matrix(&Rotation3::from_matrix_unchecked(r));
    Isometry3::from_parts(Translation3::from(p.centre()), q)
}

mod landmarks;
mod track;
