//! What the node publishes, and the messages made for it: correspondences with their relative pose (and the
//! debug image while someone looks), the monocular odometry's chained pose, and the stereo odometry's
//! `nav_msgs/Odometry` of the base in `odom` with its TF and `matcha_msgs/OdometryStatus`. Each publication
//! counts the result in the node's statistics; a failed publish is logged, never fatal.

use std::time::Instant;

use nalgebra::Isometry3;
use r2r::geometry_msgs::msg::{
    PoseWithCovariance, PoseWithCovarianceStamped, Quaternion, Transform, TransformStamped, Twist,
    TwistWithCovariance, Vector3,
};
use r2r::matcha_msgs::msg::{Correspondences, OdometryStatus, PointTracks};
use r2r::nav_msgs::msg::Odometry;
use r2r::sensor_msgs::msg::Image;
use r2r::std_msgs::msg::Header;
use r2r::tf2_msgs::msg::TFMessage;

use super::worker::Worker;
use crate::image::RgbImage;
use crate::node::convert::{self, PairOutput};
use crate::node::visual_odometry::OdometryFrame;

/// The node's publishers.
pub(super) struct Outputs {
    pub correspondences: r2r::Publisher<Correspondences>,
    pub relative_pose: r2r::Publisher<PoseWithCovarianceStamped>,
    pub odometry: r2r::Publisher<Odometry>,
    /// Odometry modes only.
    pub odometry_status: Option<r2r::Publisher<OdometryStatus>>,
    /// Odometry modes only: the (left) camera's optical frame in `odom`.
    pub camera_odometry: Option<r2r::Publisher<Odometry>>,
    /// Odometry modes with `point_tracking.enabled`.
    pub point_tracks: Option<r2r::Publisher<PointTracks>>,
    /// stereo_odometry with `map.mode: localize` only: the base in `map` at each accepted localization.
    pub localization_pose: Option<r2r::Publisher<PoseWithCovarianceStamped>>,
    /// Odometry modes with `publish_tf` (`odom → base`), stereo_odometry with `map.mode: localize`
    /// (`map → odom`).
    pub tf: Option<r2r::Publisher<TFMessage>>,
    pub debug: Option<r2r::Publisher<Image>>,
}

impl Outputs {
    /// Whether someone subscribes to the debug image (it is only drawn then).
    pub fn debug_wanted(&self) -> bool {
        self.debug
            .as_ref()
            .and_then(|p| p.get_inter_process_subscription_count().ok())
            .is_some_and(|n| n > 0)
    }
}

/// `nav_msgs/Odometry` of the base in `odom` (REP-105) from the stereo odometry's frame.
pub(super) fn odometry_msg(f: &OdometryFrame, header: &Header, odom: &str, base: &str) -> Odometry {
    odometry(
        header,
        (odom, base),
        (&f.odom_from_base, &f.pose_covariance),
        (&f.linear_velocity, &f.angular_velocity, &f.twist_covariance),
    )
}

/// The same frame's `nav_msgs/Odometry` of the left camera (child = the image's optical frame).
pub(super) fn camera_odometry_msg(f: &OdometryFrame, header: &Header, odom: &str) -> Odometry {
    let c = &f.camera;
    odometry(
        header,
        (odom, &header.frame_id),
        (&c.odom_from_camera, &c.pose_covariance),
        (&c.linear_velocity, &c.angular_velocity, &c.twist_covariance),
    )
}

fn odometry(
    header: &Header,
    (parent, child): (&str, &str),
    (pose, pose_cov): (&Isometry3<f64>, &[f64; 36]),
    (linear, angular, twist_cov): (&nalgebra::Vector3<f64>, &nalgebra::Vector3<f64>, &[f64; 36]),
) -> Odometry {
    let v = |x: &nalgebra::Vector3<f64>| Vector3 {
        x: x.x,
        y: x.y,
        z: x.z,
    };
    Odometry {
        header: Header {
            stamp: header.stamp.clone(),
            frame_id: parent.to_string(),
        },
        child_frame_id: child.to_string(),
        pose: PoseWithCovariance {
            pose: convert::pose_msg(pose),
            covariance: pose_cov.to_vec(),
        },
        twist: TwistWithCovariance {
            twist: Twist {
                linear: v(linear),
                angular: v(angular),
            },
            covariance: twist_cov.to_vec(),
        },
    }
}

/// The TF `parent → child` for `parent_from_child`.
pub(super) fn transform_msg(
    header: &Header,
    parent: &str,
    child: &str,
    parent_from_child: &Isometry3<f64>,
) -> TransformStamped {
    let t = parent_from_child.translation.vector;
    let q = parent_from_child.rotation.quaternion();
    TransformStamped {
        header: Header {
            stamp: header.stamp.clone(),
            frame_id: parent.to_string(),
        },
        child_frame_id: child.to_string(),
        transform: Transform {
            translation: Vector3 {
                x: t.x,
                y: t.y,
                z: t.z,
            },
            rotation: Quaternion {
                x: q.i,
                y: q.j,
                z: q.k,
                w: q.w,
            },
        },
    }
}

impl Worker {
    /// Publishes correspondences (and the relative pose when there is one, and the debug image when
    /// `images` are given); returns the message. Counting is the caller's ([`Self::count_pair`] when the
    /// pair is the frame's answer).
    pub fn publish_pair(
        &self,
        o: &PairOutput<'_>,
        received: Instant,
        images: Option<(&RgbImage, &RgbImage)>,
    ) -> Correspondences {
        let msg = convert::correspondences_msg(o, received.elapsed().as_secs_f32() * 1e3);
        if let Err(e) = self.out.correspondences.publish(&msg) {
            log::error!("publish correspondences: {e}");
        }
        if msg.pose_valid {
            let pose = PoseWithCovarianceStamped {
                header: Header {
                    stamp: o.header.stamp.clone(),
                    frame_id: o.reference_frame_id.clone(),
                },
                pose: msg.relative_pose.clone(),
            };
            if let Err(e) = self.out.relative_pose.publish(&pose) {
                log::error!("publish relative_pose: {e}");
            }
        }
        if let Some((a, b)) = images {
            if let Some(p) = &self.out.debug {
                if let Err(e) = p.publish(&convert::debug_image(a, b, &msg)) {
                    log::error!("publish debug image: {e}");
                }
            }
        }
        msg
    }

    /// Counts a published pair as the answer to a frame received at `received`.
    pub fn count_pair(&self, msg: &Correspondences, matches: usize, received: Instant) {
        let latency_ms = received.elapsed().as_secs_f64() * 1e3;
        if let Ok(mut s) = self.shared.stats.lock() {
            s.processed += 1;
            s.latency(latency_ms);
            s.last_matches = matches;
            s.last_inliers = msg.num_inliers as usize;
            if msg.pose_valid {
                s.poses += 1;
            }
        }
        self.last_latency_ms.set(Some(latency_ms));
    }

    /// The odometry's answer for one frame: Odometry (base and camera), TF `odom → base` and the status,
    /// all with the (left) image's stamp; counted as processed (and as a pose unless tracking is lost or
    /// initializing).
    pub fn publish_odometry(&self, f: &OdometryFrame, header: &Header, received: Instant) {
        let (odom, base) = (&self.node.odom_frame_id, &self.node.base_frame_id);
        if let Err(e) = self
            .out
            .odometry
            .publish(&odometry_msg(f, header, odom, base))
        {
            log::error!("publish odometry: {e}");
        }
        if let Some(p) = &self.out.camera_odometry {
            if let Err(e) = p.publish(&camera_odometry_msg(f, header, odom)) {
                log::error!("publish camera odometry: {e}");
            }
        }
        if let Some(tf) = &self.out.tf {
            let mut transforms = Vec::new();
            if self.node.publish_tf {
                transforms.push(transform_msg(header, odom, base, &f.odom_from_base));
            }
            // the localizer's `map → odom` (REP-105), the latest fix, with every odometry answer
            if let Some(fix) = self.map_session.as_ref().and_then(|s| s.fix.as_ref()) {
                transforms.push(transform_msg(
                    header,
                    &self.node.map.frame_id,
                    odom,
                    &fix.map_from_odom,
                ));
            }
            let msg = TFMessage { transforms };
            if msg.transforms.is_empty() {
                // localizing without publish_tf, and no fix yet
            } else if let Err(e) = tf.publish(&msg) {
                log::error!("publish tf: {e}");
            }
        }
        let latency_ms = received.elapsed().as_secs_f64() * 1e3;
        let e = &f.estimate;
        let c = self.vo.as_ref().map(|v| v.counters()).unwrap_or_default();
        if let Some(p) = &self.out.odometry_status {
            let msg = OdometryStatus {
                header: Header {
                    stamp: header.stamp.clone(),
                    frame_id: odom.clone(),
                },
                state: f.state.name().to_string(),
                by_flow: e.by_flow,
                keyframe: e.keyframe,
                still: e.still,
                stereo_points: e.stereo_points as u32,
                tracked_landmarks: e.tracked as u32,
                latency_ms: latency_ms as f32,
                frames: c.frames as u64,
                keyframes: c.keyframes as u64,
                losses: c.losses as u64,
                recoveries: c.recoveries as u64,
                restarts: c.restarts as u64,
                resets: self.resets,
            };
            if let Err(e) = p.publish(&msg) {
                log::error!("publish odometry status: {e}");
            }
        }
        let valid = matches!(
            f.state,
            crate::vo::TrackingState::Tracking | crate::vo::TrackingState::Recovered
        );
        if let Ok(mut s) = self.shared.stats.lock() {
            s.processed += 1;
            s.latency(latency_ms);
            s.last_inliers = e.tracked;
            s.last_matches = e.stereo_points;
            if valid {
                s.poses += 1;
            }
            s.odometry = Some(crate::node::stats::OdometryHealth {
                state: f.state.name(),
                tracked_landmarks: e.tracked,
                by_flow: self.by_flow,
                counters: c,
                resets: self.resets,
                mounting_source: self.mounting_source,
                map: self
                    .map_session
                    .as_ref()
                    .map(|m| (m.counters, m.fix.is_some())),
            });
        }
        self.last_latency_ms.set(Some(latency_ms));
    }
}
