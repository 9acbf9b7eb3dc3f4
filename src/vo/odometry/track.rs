//! Frames answered without features: the current keyframe's landmarks followed photometrically into the
//! left image ([`super::super::flow`]) and the pose from PnP (before the first monocular keyframe: the
//! reference's keypoints followed, `monocular.rs`); a frame that needs a keyframe either waits for
//! its features ([`VisualOdometry::process`]) or, deferred, is answered now and its features inserted when
//! they arrive ([`VisualOdometry::insert_keyframe`]).

use nalgebra::{Isometry3, Translation3, UnitQuaternion};

use super::super::covariance::{carried, world_from_pnp};
use super::super::flow::{track_landmarks, Pyramid};
use super::super::{TrackingState, VoError, VoEstimate};
use super::{isometry_from_pnp, KeyframeCandidate, Rig, VisualOdometry};
use crate::features::{Features, GrayFrame};
use crate::geometry::estimate_absolute_pose;

impl VisualOdometry {
    /// Tracks the current keyframe's landmarks into the left image `left` without features (see
    /// [`super::flow`]) and answers the frame when that suffices: `Ok(None)` when the caller must extract
    /// the features of both images and call [`Self::process`] for this frame instead (no keyframe or no
    /// keyframe image yet, tracking lost, too few landmarks followed, or the camera moved far enough from
    /// the keyframe that a new one is due).
    pub fn track(&mut self, stamp: f64, left: &GrayFrame) -> Result<Option<VoEstimate>, VoError> {
        self.check_stamp(stamp)?;
        self.pending = None;
        if self.lost || self.failures > 0 {
            return Ok(None);
        }
        let Some(kf) = self.keyframes.back() else {
            // a monocular initialisation: frames without enough parallax need no features either
            return self.follow_reference(stamp, left);
        };
        let Some(kf_pyramid) = &kf.pyramid else {
            return Ok(None);
        };
        if left.0.dimensions() != kf_pyramid.full.dimensions() {
            return Err(VoError::InvalidFrame(format!(
                "image size {:?} differs from the keyframe's {:?}",
                left.0.dimensions(),
                kf_pyramid.full.dimensions()
            )));
        }
        let predicted = self.predict(stamp);
        let current = Pyramid::new(left.0.clone());
        let mut select: Vec<usize> = (0..kf.points.len()).collect();
        crate::util::stats::subsample_evenly(&mut select, self.options.flow_max_points);
        let tracked = track_landmarks(
            kf_pyramid,
            &kf.keypoints,
            &kf.points,
            &select,
            &current,
            self.rig.camera(),
            &predicted,
        );
        if tracked.len() < self.options.pnp.min_inliers {
            return Ok(None);
        }
        let world: Vec<[f64; 3]> = tracked
            .iter()
            .map(|(i, _)| {
                let p = kf.points[*i];
                [p.x, p.y, p.z]
            })
            .collect();
        let pixels: Vec<[f64; 2]> = tracked
            .iter()
            .map(|(_, p)| [p[0] as f64, p[1] as f64])
            .collect();
        let Ok(pnp) = estimate_absolute_pose(&world, &pixels, self.rig.camera(), &self.options.pnp)
        else {
            return Ok(None);
        };
        // the share of the selected landmarks still followed stands for the share of all of them
        let followed = pnp.num_inliers as f64 / select.len().max(1) as f64;
        let pose = isometry_from_pnp(&pnp);
        let relative = kf.world_from_camera.inverse() * pose;
        let far = relative.translation.vector.norm() > self.options.keyframe_max_distance_m
            || relative.rotation.angle().to_degrees() > self.options.keyframe_max_angle_deg;
        let weak = followed < self.options.keyframe_tracked_ratio
            || followed * (kf.points.len() as f64) < self.options.keyframe_min_tracked as f64;
        let mut requested = false;
        if far || weak {
            let lag = self.options.keyframe_max_lag_frames;
            let deferrable = lag > 0
                && self
                    .candidate
                    .as_ref()
                    .is_none_or(|c| self.counters.frames - c.frame < lag);
            if !deferrable {
                self.candidate = None;
                self.pending = Some((stamp, pnp));
                return Ok(None);
            }
            requested = self.candidate.is_none();
        }
        let offset = pose.translation.vector - kf.world_from_camera.translation.vector;
        let frame_covariance = world_from_pnp(&pnp.rotation, &pnp.covariance);
        let covariance = carried(&kf.covariance, &offset) + frame_covariance;
        let (pose, still) = self.hold_if_still(pose, &frame_covariance);
        self.counters.frames += 1;
        let mut est = self.publish(
            stamp,
            pose,
            covariance,
            TrackingState::Tracking,
            0,
            pnp.num_inliers,
            false,
            still,
        );
        est.by_flow = true;
        est.frame_covariance = frame_covariance;
        if requested {
            self.candidate = Some(KeyframeCandidate {
                stamp,
                frame: self.counters.frames,
                pose,
                covariance,
            });
            est.keyframe_requested = true;
        }
        Ok(Some(est))
    }

    /// The features of the frame at `stamp` that [`Self::track`] asked for
    /// ([`VoEstimate::keyframe_requested`]; `right` as in [`Self::process`]): the frame becomes the current
    /// keyframe at the pose published for it. `Ok(false)` when the request is no longer open (a later
    /// frame made a keyframe itself, the run was reset) or the frame gives too few landmarks.
    pub fn insert_keyframe(
        &mut self,
        stamp: f64,
        left: &Features,
        right: Option<&Features>,
    ) -> Result<bool, VoError> {
        if self.candidate.as_ref().is_none_or(|c| c.stamp != stamp) {
            return Ok(false);
        }
        self.check_descriptors(left, right)?;
        let Some(c) = self.candidate.take() else {
            return Ok(false);
        };
        let points = match right {
            Some(r) if matches!(self.rig, Rig::Stereo(_)) => self.stereo_points(left, r),
            _ => Some(self.monocular_points(&c.pose, left)),
        };
        let Some(points) = points.filter(|p| p.camera.len() >= self.options.min_stereo_points)
        else {
            return Ok(false);
        };
        self.add_keyframe(&c.pose, &c.covariance, &points, left);
        self.remember_view(c.pose, left);
        Ok(true)
    }

    /// Withdraws an open keyframe request (the caller cannot compute its features now); the next frame
    /// that needs a keyframe asks again.
    pub fn cancel_keyframe_request(&mut self) {
        self.candidate = None;
    }

    /// The pose at `stamp` by constant velocity from the last two poses (the last pose when there is one).
    pub(super) fn predict(&self, stamp: f64) -> Isometry3<f64> {
        match (self.previous, self.last) {
            (Some((t0, p0)), Some((t1, p1))) if t1 > t0 => {
                let step = p0.inverse() * p1;
                let k = ((stamp - t1) / (t1 - t0)).clamp(0.0, 3.0);
                let scaled = Isometry3::from_parts(
                    Translation3::from(step.translation.vector * k),
                    UnitQuaternion::from_scaled_axis(step.rotation.scaled_axis() * k),
                );
                p1 * scaled
            }
            (_, Some((_, p1))) => p1,
            _ => Isometry3::identity(),
        }
    }
}
