//! The `node:` section of `config/matcha.yaml`: everything the ROS 2 node needs beyond the core pipeline
//! (mode, topics, QoS, keyframe policy, stereo sync, relocalization map, debug image, rate limits).
//!
//! Defaults live here, in the `Default` impls, and nowhere else: the YAML file, `--ros-args -p` overrides
//! and the tests all deserialise into these structs. ROS parameters arrive as a flat map of dotted names
//! (`node.mode`, `engine.extractor`, ...); [`params_to_tree`] rebuilds the nested tree that serde reads, so
//! a parameter and a YAML key are the same thing. Unknown keys and out-of-range values are errors, reported
//! at start-up with the key name.
//!
//! This module knows nothing of r2r; it is compiled (and tested) without the `ros` feature.

use serde::{Deserialize, Serialize};

mod sections;
pub use sections::{
    KeyframePolicy, Mounting, PointTrackingConfig, QosConfig, RelocalizationConfig, StereoConfig,
};

/// Errors in the node configuration.
#[derive(Debug, thiserror::Error)]
pub enum NodeConfigError {
    /// Schema error (unknown key, wrong type).
    #[error("invalid node parameters: {0}")]
    Parse(String),
    /// A value is out of range.
    #[error("invalid parameter node.{key}: {reason}")]
    Invalid {
        /// Dotted key below `node.`.
        key: String,
        /// What is allowed.
        reason: String,
    },
    /// Two parameters collide (e.g. `a` set as a value and `a.b` as a subtree).
    #[error("parameter {0} is given both as a value and as a group")]
    Conflict(String),
}

/// What the node pairs images with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Monocular visual odometry (one unknown scale for the run): `nav_msgs/Odometry` of the base frame
    /// in `odom`, TF, the tracking state, as `stereo_odometry`; with `odometry_correspondences` also each
    /// frame's correspondences and relative pose against its keyframe.
    Odometry,
    /// Metric stereo visual odometry (left + right images): `nav_msgs/Odometry` of the base frame in
    /// `odom`, TF `odom → base`, the tracking state; see [`crate::node::stereo_odometry`].
    #[serde(rename = "stereo_odometry")]
    StereoOdometry,
    /// Left and right images synchronised by stamp; the left → right pose of each pair (metric baseline
    /// from the right CameraInfo's P): a calibration check, not odometry.
    Stereo,
    /// Each frame against a keyframe map loaded from (and saved to) disk.
    Relocalization,
}

impl Mode {
    /// Whether the mode takes left + right images (synchronised by stamp).
    pub fn stereo_input(self) -> bool {
        matches!(self, Mode::Stereo | Mode::StereoOdometry)
    }

    /// Whether the mode runs the visual odometry (publishes `nav_msgs/Odometry`, TF and the tracking state,
    /// serves `reset` and `set_pose`).
    pub fn odometry(self) -> bool {
        matches!(self, Mode::Odometry | Mode::StereoOdometry)
    }

    /// The name used in the configuration and in `/diagnostics`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Odometry => "odometry",
            Mode::StereoOdometry => "stereo_odometry",
            Mode::Stereo => "stereo",
            Mode::Relocalization => "relocalization",
        }
    }
}

/// Which image message type the node subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// `sensor_msgs/Image` on `topics.image`.
    Raw,
    /// `sensor_msgs/CompressedImage` (jpeg/png) on `topics.image` + `/compressed`.
    Compressed,
}

/// Reliability of the input subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reliability {
    /// Best effort (the sensor-data profile; never stalls on lost samples).
    BestEffort,
    /// Reliable (use when the camera driver publishes reliable only and loss is not acceptable).
    Reliable,
}

/// Topic names (relative names are resolved in the node's namespace; all remappable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Topics {
    /// Input image (left image in stereo mode). With `transport: compressed`, `<image>/compressed`.
    pub image: String,
    /// CameraInfo of `image`.
    pub camera_info: String,
    /// Right image (stereo mode).
    pub right_image: String,
    /// CameraInfo of `right_image` (its P gives the baseline).
    pub right_camera_info: String,
    /// Output `matcha_msgs/Correspondences`.
    pub correspondences: String,
    /// Output `geometry_msgs/PoseWithCovarianceStamped` (pose of the newer camera in the older one's frame).
    pub relative_pose: String,
    /// Output `nav_msgs/Odometry` (odometry and stereo_odometry modes).
    pub odometry: String,
    /// Output `nav_msgs/Odometry` of the (left) camera's optical frame in `odom` (odometry modes): the same
    /// answer as `odometry` without the mounting (for consumers of the camera pose, and scoring).
    pub camera_odometry: String,
    /// Output `matcha_msgs/OdometryStatus` (odometry modes): tracking state and counters per frame.
    pub odometry_status: String,
    /// The `std_srvs/Trigger` service that restarts the odometry at the identity (odometry modes).
    pub reset_service: String,
    /// The `matcha_msgs/SetPose` service that sets the current base pose in `odom` (odometry modes).
    pub set_pose_service: String,
    /// Output `matcha_msgs/PointTracks` (odometry modes with `point_tracking.enabled`).
    pub point_tracks: String,
    /// The `matcha_msgs/Track` service that starts following points (with `point_tracking.enabled`).
    pub track_service: String,
    /// Output `geometry_msgs/PoseWithCovarianceStamped` of the base in `map` (stereo_odometry with
    /// `map.mode: localize`), one per accepted localization.
    pub localization_pose: String,
    /// Input `geometry_msgs/PoseWithCovarianceStamped`: a hint where the robot is in `map` (stereo_odometry
    /// with `map.mode: localize`).
    pub initial_pose: String,
    /// Output `tf2_msgs/TFMessage` (`odom → base`, when `publish_tf`; `map → odom` when localizing).
    pub tf: String,
    /// Input `tf2_msgs/TFMessage` with the static transforms (the camera's mounting on the base).
    pub tf_static: String,
    /// Output debug image (matches drawn); computed only while someone subscribes.
    pub debug_image: String,
    /// Output `diagnostic_msgs/DiagnosticArray`.
    pub diagnostics: String,
    /// The `matcha_msgs/Match` service.
    pub match_service: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            image: "image".into(),
            camera_info: "camera_info".into(),
            right_image: "right/image".into(),
            right_camera_info: "right/camera_info".into(),
            correspondences: "correspondences".into(),
            relative_pose: "relative_pose".into(),
            odometry: "odometry".into(),
            camera_odometry: "odometry/camera".into(),
            odometry_status: "odometry/status".into(),
            reset_service: "odometry/reset".into(),
            set_pose_service: "odometry/set_pose".into(),
            point_tracks: "point_tracks".into(),
            track_service: "track".into(),
            localization_pose: "localization/pose".into(),
            initial_pose: "/initialpose".into(),
            tf: "/tf".into(),
            tf_static: "/tf_static".into(),
            debug_image: "debug/matches".into(),
            diagnostics: "/diagnostics".into(),
            match_service: "match".into(),
        }
    }
}

/// All node settings (the `node:` section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Pairing mode.
    pub mode: Mode,
    /// Input message type.
    pub transport: Transport,
    /// Topic names.
    pub topics: Topics,
    /// Subscription QoS.
    pub qos: QosConfig,
    /// Odometry keyframe policy.
    pub keyframe: KeyframePolicy,
    /// Stereo sync.
    pub stereo: StereoConfig,
    /// Relocalization map.
    pub relocalization: RelocalizationConfig,
    /// The stereo odometry's map: build one from the run, or localize in one (`map → odom`).
    pub map: crate::node::map_session::NodeMapConfig,
    /// Odometry: `header.frame_id` of `nav_msgs/Odometry` and the parent of the published TF.
    pub odom_frame_id: String,
    /// The odometry modes: the robot's base frame, `child_frame_id` of `nav_msgs/Odometry` and of the TF
    /// (REP-105).
    pub base_frame_id: String,
    /// The odometry modes: publish TF `odom → base_frame_id` with every pose.
    pub publish_tf: bool,
    /// The odometry modes: the (left) camera's optical frame on the base, used while `/tf_static` has no
    /// transform from `base_frame_id` to the image's `frame_id` (robots without a URDF). The monocular
    /// `odometry` mode uses its rotation only: its positions have the run's unknown scale, in which a
    /// lever arm in metres has no meaning.
    pub camera_mounting: Mounting,
    /// `odometry` mode: also publish `correspondences` and `relative_pose` of every frame against the
    /// keyframe chosen by `keyframe` (and the debug image). The network then runs on every frame, which
    /// costs the camera rate on a CPU; without it the network runs only for the odometry's keyframes.
    pub odometry_correspondences: bool,
    /// Point tracking (odometry modes).
    pub point_tracking: PointTrackingConfig,
    /// Publish the debug image (still only computed while someone subscribes).
    pub debug_image: bool,
    /// Process at most this many frames per second (0 = as fast as they come; extra frames are dropped).
    pub max_rate_hz: f64,
    /// Frames (or stereo pairs) that may wait for the worker; a burst beyond this drops the oldest (see
    /// [`crate::node::admission`]).
    pub max_queued_frames: usize,
    /// Freshness bound while the worker is behind on average (see [`crate::node::admission`]),
    /// milliseconds: the newest waiting frame is processed only if it arrived at most this long before the
    /// worker became free; an older one is skipped (`skipped_stale`) for the next arrival. 0 = fresh frames
    /// only (latency ≈ processing time); negative = no bound. While the worker keeps up on average, every
    /// frame is processed in arrival order whatever its wait.
    pub max_frame_wait_ms: f64,
    /// Frame decimation: results every k-th camera period (see [`crate::node::schedule`]). 0 = automatic
    /// while the worker is behind on average (the smallest k whose interval covers the latency p99), every
    /// frame while it keeps up; 1 = every frame; k = every k-th, up to
    /// [`crate::node::schedule::MAX_FACTOR`].
    pub decimation: u32,
    /// Reject images with more pixels than this (width × height).
    pub max_image_pixels: u64,
    /// A frame that arrives before any CameraInfo of its camera waits up to this many seconds for one
    /// (drivers publish the image and its CameraInfo on two topics whose arrival order is not fixed); after
    /// that it is refused as `no_camera_info`. 0 = refuse at once.
    pub camera_info_wait_s: f64,
    /// Period of `/diagnostics` messages, seconds.
    pub diagnostics_period_s: f64,
    /// A repeated bad-input cause is logged at most once per this many seconds (with its count).
    pub log_throttle_s: f64,
    /// While the pipeline cannot be created (e.g. model missing), retry every this many seconds.
    pub pipeline_retry_s: f64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Odometry,
            transport: Transport::Raw,
            topics: Topics::default(),
            qos: QosConfig::default(),
            keyframe: KeyframePolicy::default(),
            stereo: StereoConfig::default(),
            relocalization: RelocalizationConfig::default(),
            map: Default::default(),
            odom_frame_id: "odom".into(),
            base_frame_id: "base_link".into(),
            publish_tf: true,
            camera_mounting: Mounting::default(),
            odometry_correspondences: false,
            point_tracking: PointTrackingConfig::default(),
            debug_image: true,
            max_rate_hz: 0.0,
            max_queued_frames: 16,
            max_frame_wait_ms: 0.0,
            decimation: 0,
            max_image_pixels: 4096 * 4096,
            camera_info_wait_s: 1.0,
            diagnostics_period_s: 1.0,
            log_throttle_s: 10.0,
            pipeline_retry_s: 10.0,
        }
    }
}

impl NodeConfig {
    /// Deserialises and validates the `node:` section (`null` = all defaults).
    pub fn from_value(value: &serde_json::Value) -> Result<Self, NodeConfigError> {
        let cfg: Self = if value.is_null() {
            Self::default()
        } else {
            serde_json::from_value(value.clone())
                .map_err(|e| NodeConfigError::Parse(e.to_string()))?
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks value ranges.
    pub fn validate(&self) -> Result<(), NodeConfigError> {
        let bad = |key: &str, reason: &str| {
            Err(NodeConfigError::Invalid {
                key: key.into(),
                reason: reason.into(),
            })
        };
        let t = &self.topics;
        for (key, name) in [
            ("topics.image", &t.image),
            ("topics.camera_info", &t.camera_info),
            ("topics.right_image", &t.right_image),
            ("topics.right_camera_info", &t.right_camera_info),
            ("topics.correspondences", &t.correspondences),
            ("topics.relative_pose", &t.relative_pose),
            ("topics.odometry", &t.odometry),
            ("topics.camera_odometry", &t.camera_odometry),
            ("topics.odometry_status", &t.odometry_status),
            ("topics.localization_pose", &t.localization_pose),
            ("topics.initial_pose", &t.initial_pose),
            ("topics.reset_service", &t.reset_service),
            ("topics.set_pose_service", &t.set_pose_service),
            ("topics.tf", &t.tf),
            ("topics.tf_static", &t.tf_static),
            ("topics.debug_image", &t.debug_image),
            ("topics.diagnostics", &t.diagnostics),
            ("topics.match_service", &t.match_service),
            ("topics.point_tracks", &t.point_tracks),
            ("topics.track_service", &t.track_service),
        ] {
            if !valid_topic_name(name) {
                return bad(
                    key,
                    "must be a ROS name: letters, digits, '_', '/', '~', not empty",
                );
            }
        }
        if self.qos.depth == 0 || self.qos.depth > 100 {
            return bad("qos.depth", "must be in 1..=100");
        }
        let k = &self.keyframe;
        if !(k.max_parallax_deg.is_finite() && k.max_parallax_deg > 0.0) {
            return bad(
                "keyframe.max_parallax_deg",
                "must be a positive number of degrees",
            );
        }
        if k.max_failures == 0 {
            return bad("keyframe.max_failures", "must be >= 1");
        }
        let s = &self.stereo;
        if !(s.sync_tolerance_s.is_finite()
            && s.sync_tolerance_s >= 0.0
            && s.sync_tolerance_s < 1.0)
        {
            return bad("stereo.sync_tolerance_s", "must be in [0, 1) seconds");
        }
        if s.max_pending == 0 || s.max_pending > 64 {
            return bad("stereo.max_pending", "must be in 1..=64");
        }
        if let Err(e) = self.map.validate() {
            return bad("map", &e);
        }
        let pt = &self.point_tracking;
        if pt.enabled && !self.mode.odometry() {
            return bad(
                "point_tracking.enabled",
                "point tracking works with node.mode odometry and stereo_odometry",
            );
        }
        if pt.max_points == 0 || pt.max_points > 4096 {
            return bad("point_tracking.max_points", "must be in 1..=4096");
        }
        if self.map.mode != crate::node::map_session::MapMode::Off
            && self.mode != Mode::StereoOdometry
        {
            return bad(
                "map.mode",
                "build and localize work with node.mode stereo_odometry",
            );
        }
        let r = &self.relocalization;
        if !r.map_path.is_empty() {
            return bad(
                "relocalization.map_path",
                "was replaced by node.map.path (maps are SQLite databases now; a JSON map of an earlier \
                 version is not read: rebuild it with node.relocalization.build_map)",
            );
        }
        if self.mode == Mode::Relocalization && self.map.path.is_empty() {
            return bad("map.path", "must name a file in relocalization mode");
        }
        if r.candidates == 0 {
            return bad("relocalization.candidates", "must be >= 1");
        }
        if !(-1.0..=1.0).contains(&r.min_global_similarity) {
            return bad("relocalization.min_global_similarity", "must be in [-1, 1]");
        }
        for (key, frame) in [
            ("odom_frame_id", &self.odom_frame_id),
            ("base_frame_id", &self.base_frame_id),
        ] {
            if frame.trim_start_matches('/').is_empty() {
                return bad(key, "must name a frame");
            }
        }
        if self.odom_frame_id.trim_start_matches('/') == self.base_frame_id.trim_start_matches('/')
        {
            return bad("base_frame_id", "must differ from odom_frame_id");
        }
        let m = &self.camera_mounting;
        if !m.xyz.iter().chain(m.rpy.iter()).all(|v| v.is_finite()) {
            return bad("camera_mounting", "xyz and rpy must be finite numbers");
        }
        if self.max_queued_frames == 0 || self.max_queued_frames > 256 {
            return bad("max_queued_frames", "must be in 1..=256");
        }
        if !(self.max_rate_hz.is_finite() && self.max_rate_hz >= 0.0) {
            return bad("max_rate_hz", "must be >= 0 (0 = unlimited)");
        }
        if !self.max_frame_wait_ms.is_finite() {
            return bad(
                "max_frame_wait_ms",
                "must be a number of milliseconds (negative = no bound)",
            );
        }
        if self.decimation > crate::node::schedule::MAX_FACTOR {
            return bad(
                "decimation",
                "must be 0 (automatic), 1 (every frame) or a factor up to 16",
            );
        }
        if self.max_image_pixels == 0 {
            return bad("max_image_pixels", "must be > 0");
        }
        if !(self.camera_info_wait_s.is_finite() && self.camera_info_wait_s >= 0.0) {
            return bad("camera_info_wait_s", "must be a number of seconds >= 0");
        }
        for (key, v) in [
            ("diagnostics_period_s", self.diagnostics_period_s),
            ("log_throttle_s", self.log_throttle_s),
            ("pipeline_retry_s", self.pipeline_retry_s),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(key, "must be a positive number of seconds");
            }
        }
        Ok(())
    }
}

fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && !name.ends_with('/')
        && !name.contains("//")
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '/' | '~'))
}

/// Rebuilds the nested parameter tree from flat dotted names (`node.keyframe.min_inliers` → `{node:
/// {keyframe: {min_inliers: ..}}}`), as ROS 2 flattens a parameter YAML file.
pub fn params_to_tree<'a, I>(params: I) -> Result<serde_json::Value, NodeConfigError>
where
    I: IntoIterator<Item = (&'a str, serde_json::Value)>,
{
    let mut root = serde_json::Map::new();
    for (name, value) in params {
        let parts: Vec<&str> = name.split('.').collect();
        let (last, groups) = match parts.split_last() {
            Some(x) => x,
            None => continue,
        };
        let mut map = &mut root;
        for (i, g) in groups.iter().enumerate() {
            let entry = map
                .entry((*g).to_string())
                .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
            map = match entry {
                serde_json::Value::Object(m) => m,
                _ => return Err(NodeConfigError::Conflict(parts[..=i].join("."))),
            };
        }
        if let Some(serde_json::Value::Object(_)) = map.get(*last) {
            return Err(NodeConfigError::Conflict(name.to_string()));
        }
        map.insert((*last).to_string(), value);
    }
    Ok(serde_json::Value::Object(root))
}

#[cfg(test)]
mod tests;
