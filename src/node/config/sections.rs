//! The smaller groups of the `node:` section (QoS, the correspondences' keyframe policy, stereo sync, the
//! relocalization map, the camera mounting, point tracking), each with its defaults. Validation of their
//! values is [`super::NodeConfig::validate`]'s, beside the rules that relate them to the mode.

use serde::{Deserialize, Serialize};

use super::Reliability;

/// QoS of the input subscriptions (outputs use the default reliable profile, depth `depth`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QosConfig {
    /// Reliability of the image and camera-info subscriptions.
    pub reliability: Reliability,
    /// History depth (keep-last) of subscriptions and publishers.
    pub depth: u32,
}

impl Default for QosConfig {
    fn default() -> Self {
        // The rclcpp sensor-data profile: best effort, keep last 5.
        Self {
            reliability: Reliability::BestEffort,
            depth: 5,
        }
    }
}

/// When the odometry mode makes the current frame the new keyframe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyframePolicy {
    /// New keyframe when the inlier count against the keyframe falls below this (tracking is thinning out).
    pub min_inliers: usize,
    /// New keyframe when the median parallax reaches this many degrees (enough baseline for the next step).
    pub max_parallax_deg: f64,
    /// New keyframe after this many frames regardless (0 = never).
    pub max_frames: u32,
    /// After this many consecutive frames without a pose, restart from the current frame (tracking lost).
    pub max_failures: u32,
}

impl Default for KeyframePolicy {
    fn default() -> Self {
        Self {
            min_inliers: 100,
            max_parallax_deg: 3.0,
            max_frames: 0,
            max_failures: 5,
        }
    }
}

/// Stereo pairing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StereoConfig {
    /// Two images form a pair when their stamps differ by at most this (seconds).
    pub sync_tolerance_s: f64,
    /// Unpaired images kept per side while waiting for the other side (oldest dropped, counted).
    pub max_pending: usize,
    /// The images are rectified (`image_rect`): each camera is the left 3×3 of its CameraInfo `P`, without
    /// distortion, and the rig is `P`'s baseline. `false`: raw images, cameras from `K` and `D`, the rig
    /// from the rectification rotations `R` and `P`'s baseline (stereo_odometry mode).
    pub rectified: bool,
}

impl Default for StereoConfig {
    fn default() -> Self {
        Self {
            sync_tolerance_s: 0.005,
            max_pending: 4,
            rectified: true,
        }
    }
}

/// Relocalization against the map at `node.map.path`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelocalizationConfig {
    /// Retired: the map is `node.map.path` (an SQLite map). Kept only so that a parameter file that still
    /// sets it gets a message saying so rather than an unknown-key error; must stay empty.
    pub map_path: String,
    /// Add frames that the map does not explain well as views (mapping run; each committed at once).
    pub build_map: bool,
    /// A frame becomes a new map keyframe when its best match has fewer inliers than this.
    pub new_keyframe_max_inliers: usize,
    /// Number of map keyframes retrieved by the global descriptor and matched locally.
    pub candidates: usize,
    /// Minimum cosine similarity of the place vectors (`map.place`) for a keyframe to be a candidate.
    pub min_global_similarity: f32,
}

impl Default for RelocalizationConfig {
    fn default() -> Self {
        Self {
            map_path: String::new(),
            build_map: false,
            new_keyframe_max_inliers: 50,
            candidates: 3,
            min_global_similarity: 0.0,
        }
    }
}

/// A mounting as in a URDF joint's `<origin xyz rpy/>`: `base_from_camera`, translation in metres and
/// fixed-axis roll, pitch, yaw in radians.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mounting {
    /// Camera origin in the base frame, metres.
    pub xyz: [f64; 3],
    /// Orientation: roll about x, then pitch about y, then yaw about z (radians).
    pub rpy: [f64; 3],
}

impl Default for Mounting {
    /// At the base origin, looking along the base's x axis: the optical frame (z forward, x right, y down)
    /// of a camera facing forward on a REP-103 base (x forward, y left, z up).
    fn default() -> Self {
        Self {
            xyz: [0.0; 3],
            rpy: [
                -std::f64::consts::FRAC_PI_2,
                0.0,
                -std::f64::consts::FRAC_PI_2,
            ],
        }
    }
}

/// Point tracking in the odometry modes (the `track` service and the `point_tracks` topic); the tracker's
/// own settings are the configuration's `track:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PointTrackingConfig {
    /// Offer the `track` service and publish `point_tracks`. The extractor's dense map then runs on every
    /// frame while points are followed (about 20 ms per 640×480 frame for XFeat on 2 cores).
    pub enabled: bool,
    /// At most this many points are followed at once (a request beyond it is refused).
    pub max_points: usize,
}

impl Default for PointTrackingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_points: 256,
        }
    }
}
