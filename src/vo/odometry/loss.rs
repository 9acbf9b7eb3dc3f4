//! A frame that cannot be localized: the pose held with the lost variance, the orientation following the
//! camera's turn where it can be measured (`turn.rs`), and the restart of the run (at once when a stereo
//! frame's turn is measured from a localized view, else after `restart_after_failures` failed frames).
//! `odom` stays continuous through all of it.

use nalgebra::{Isometry3, Matrix6, Vector3};

use super::super::{TrackingState, VoEstimate, LOST_VARIANCE};
use super::{FramePoints, Reference, VisualOdometry};
use crate::features::Features;

impl VisualOdometry {
    /// A frame that could not be tracked: hold the last pose with the lost variance, its orientation
    /// following the camera's turn where the rotation from the last localized view is measured
    /// (`turn.rs`). A stereo frame whose rotation is measured restarts the run at once, from that
    /// orientation and the held position, with this frame as the keyframe; after `restart_after_failures`
    /// failures the run restarts in any case: stereo from the held pose, monocular with this frame as the
    /// reference of a new initialisation (the scale of the new run is its own).
    pub(super) fn failed(
        &mut self,
        stamp: f64,
        stereo: &mut dyn FnMut(&Self) -> Option<FramePoints>,
        left: &Features,
    ) -> VoEstimate {
        self.failures += 1;
        if !self.lost {
            self.lost = true;
            self.counters.losses += 1;
        }
        let last = self.last.map_or(Isometry3::identity(), |(_, p)| p);
        // where the rotation cannot be measured on the frame that loses track, the camera is taken to go on
        // turning as it did (it was tracked until the frame before); later, to hold still. The position is
        // held (predicting it too was measured: slightly worse on `vo_hard` and `vo_forward_turns`)
        let fallback = if self.failures == 1 {
            Isometry3::from_parts(last.translation, self.predict(stamp).rotation)
        } else {
            last
        };
        let (held, measured) = self.follow_turn(&last, fallback, left);
        let restart = self.failures >= self.options.restart_after_failures || measured;
        if restart {
            // odom stays continuous: the new keyframe sits at the held pose; its covariance says the
            // pose is unknown relative to the earlier run
            let cov = self.last_covariance + Matrix6::identity() * LOST_VARIANCE;
            let points = if self.is_stereo() { stereo(self) } else { None };
            match (self.is_stereo(), points) {
                (true, Some(points)) if points.camera.len() >= self.options.min_stereo_points => {
                    self.keyframes.clear();
                    self.add_keyframe(&held, &cov, &points, left);
                    self.counters.restarts += 1;
                    self.lost = false;
                    self.failures = 0;
                    self.anchor = Some(held);
                    let n = points.camera.len();
                    return self.publish(
                        stamp,
                        held,
                        cov,
                        TrackingState::Recovered,
                        n,
                        0,
                        true,
                        false,
                    );
                }
                (true, _) => {}
                (false, _) if self.failures >= self.options.restart_after_failures => {
                    // stays lost until the new initialisation succeeds (then `recovered`)
                    self.keyframes.clear();
                    self.reference = Some(Reference::new(
                        left.clone(),
                        held,
                        cov,
                        self.options.flow_max_points,
                    ));
                    self.counters.restarts += 1;
                    self.failures = 0;
                    self.anchor = Some(held);
                }
                (false, _) => {}
            }
        }
        self.held(stamp, held)
    }

    /// The held pose with the lost variance and no motion.
    pub(super) fn held(&mut self, stamp: f64, held: Isometry3<f64>) -> VoEstimate {
        let cov = Matrix6::identity() * LOST_VARIANCE;
        let mut est = self.publish(stamp, held, cov, TrackingState::Lost, 0, 0, false, false);
        // a failed frame says nothing about the motion
        est.linear_velocity = Vector3::zeros();
        est.angular_velocity = Vector3::zeros();
        est
    }
}
