//! Two-view geometry, the product's own core: the pinhole camera model, the 5-point minimal solver for the
//! essential matrix, LO-RANSAC with PROSAC ordering, non-linear refinement, pose covariance and accuracy
//! metrics.
//!
//! Conventions: a relative pose maps points from camera *a* to camera *b*, `x_b = R·x_a + t` (OpenCV /
//! PoseLib), with `t` of unit length (monocular scale is unobservable). Pixel centres are at integer
//! coordinates (OpenCV). This module knows nothing of images, ONNX or ROS.

pub mod absolute_pose;
pub mod camera;
pub(crate) mod correspondences;
pub mod essential;
pub mod five_point;
pub mod homography;
pub mod metrics;
pub(crate) mod ransac;
pub mod relative_pose;
mod sturm;
pub mod synthetic;
pub mod triangulation;

pub use absolute_pose::{
    estimate_absolute_pose, refine_absolute_pose, AbsolutePose, AbsolutePoseError,
};
pub use camera::{CameraError, Distortion, PinholeCamera};
pub use homography::{estimate_homography, Homography};
pub use relative_pose::{
    estimate_relative_pose, estimate_relative_pose_weighted, refine_relative_pose_weighted,
};

use nalgebra::{Matrix3, Matrix6, Vector3};

/// Options of the robust relative-pose estimator.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RansacOptions {
    /// Inlier threshold in pixels (Sampson error, measured in the image of camera a/b via the focal lengths).
    pub threshold_px: f64,
    /// Probability of having drawn at least one all-inlier sample when stopping early.
    pub confidence: f64,
    /// Hard cap on the number of hypotheses sampled.
    pub max_iterations: usize,
    /// Minimum number of hypotheses before early termination may stop the loop.
    pub min_iterations: usize,
    /// Minimum number of inliers for a pose to be reported.
    pub min_inliers: usize,
    /// Seed of the sampler (results are deterministic for a given seed and input).
    pub seed: u64,
}

impl Default for RansacOptions {
    fn default() -> Self {
        Self {
            threshold_px: 1.0,
            confidence: 0.9999,
            max_iterations: 10_000,
            min_iterations: 50,
            min_inliers: 15,
            seed: 0,
        }
    }
}

/// What kind of two-view configuration explains the correspondences (after COLMAP's two-view geometry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TwoViewConfiguration {
    /// Points in general position: the essential matrix explains clearly more than one homography.
    General,
    /// One plane carries most inliers (a homography explains ≥ [`relative_pose::PLANAR_RATIO`] of the
    /// essential matrix's inliers); the pose is determined (off-plane points or cheirality decide).
    Planar,
    /// Pure rotation (or no motion): a rotation alone explains the inliers; the translation is unobservable.
    Panoramic,
}

impl TwoViewConfiguration {
    /// The lower-case name used in JSON and messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::General => "general",
            Self::Planar => "planar",
            Self::Panoramic => "panoramic",
        }
    }
}

/// The pose to report for an estimate: the pose itself, or the best guess a planar ambiguity carries
/// (reported with the ambiguity stated; see [`NoPose::PlanarAmbiguity`]); `None` for every other failure.
pub fn reported_pose(pose: &Result<RelativePose, NoPose>) -> Option<&RelativePose> {
    match pose {
        Ok(p) => Some(p),
        Err(NoPose::PlanarAmbiguity { best, .. }) => Some(best),
        Err(_) => None,
    }
}

/// A relative pose estimate between two calibrated views.
#[derive(Debug, Clone, PartialEq)]
pub struct RelativePose {
    /// Rotation `R` of the point transform `x_b = R·x_a + t`.
    pub rotation: Matrix3<f64>,
    /// Unit-length translation `t` of the point transform `x_b = R·x_a + t`; `None` when the configuration
    /// is [`TwoViewConfiguration::Panoramic`] (the translation is zero or unobservable).
    pub translation: Option<Vector3<f64>>,
    /// The configuration that explains the correspondences.
    pub configuration: TwoViewConfiguration,
    /// Per-correspondence inlier flag (same order as the input).
    pub inliers: Vec<bool>,
    /// Number of `true` entries in [`Self::inliers`].
    pub num_inliers: usize,
    /// 6×6 covariance of the pose, tangent-space order: rotation vector `ω` (rad, 3; left perturbation
    /// `R ← Exp(ω)·R`) then translation (3, unit vector; its component along `t` is unobservable and given the
    /// variance [`relative_pose::UNOBSERVABLE_VARIANCE`]; for a panoramic pose the whole translation block
    /// is). Derived from the Gauss-Newton normal equations of the refined inlier problem, scaled by the
    /// residual variance.
    pub covariance: Matrix6<f64>,
    /// Quality measures of the estimate.
    pub quality: PoseQuality,
}

/// Scalar quality measures that consumers use to gate a pose.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct PoseQuality {
    /// Inliers / correspondences.
    pub inlier_ratio: f64,
    /// Root mean square Sampson error of the inliers, in pixels.
    pub rms_error_px: f64,
    /// Median triangulation angle of the inliers, degrees (parallax; near 0 means pure rotation).
    pub median_parallax_deg: f64,
    /// Number of RANSAC hypotheses drawn.
    pub iterations: usize,
    /// Inliers of the best homography / inliers of the pose (0 when no homography was found): near 1 for a
    /// scene dominated by one plane or a rotation.
    pub homography_inlier_ratio: f64,
    /// Inliers of the pose that the homography does not explain: the off-plane points that determine a
    /// pose when one plane dominates.
    pub off_plane_inliers: usize,
}

/// The input of a two-view estimate is unusable: a caller's mistake (lists of different lengths, an option
/// out of range) or data to be fixed where it comes from (a non-finite coordinate, an invalid camera). Never
/// a property of the scene: those are [`NoPose`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PoseInputError {
    /// The two point lists (or a point list and its priorities / weights) differ in length.
    #[error("point lists differ in length: {a} vs {b}")]
    LengthMismatch {
        /// Length of the first list.
        a: usize,
        /// Length of the second list.
        b: usize,
    },
    /// A coordinate is NaN or infinite.
    #[error("non-finite input: {0}")]
    NonFinite(String),
    /// A camera's parameters are invalid (non-finite or non-positive focal length, ...).
    #[error("invalid camera: {0}")]
    InvalidCamera(String),
    /// An option or a weight is out of range (threshold, confidence, weights).
    #[error("invalid RANSAC options: {0}")]
    InvalidOptions(String),
    /// A match names a keypoint that does not exist (a matcher's bug).
    #[error("match out of range: {0}")]
    MatchOutOfRange(String),
}

/// Why a two-view estimate has no pose: an outcome of the scene and the correspondences, not an error of
/// the program or of its caller (those are [`PoseInputError`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NoPose {
    /// Fewer correspondences than the solver (or `min_inliers`) needs.
    #[error("too few correspondences: {have} (need at least {need})")]
    TooFewCorrespondences {
        /// How many were given.
        have: usize,
        /// How many are needed.
        need: usize,
    },
    /// The configuration cannot determine a pose (collinear points, zero motion, duplicates, ...).
    #[error("degenerate configuration: {0}")]
    Degenerate(String),
    /// One plane explains the correspondences and two of its motions fit them equally: the off-plane points
    /// (if any) do not decide between them, and the homography has two physically valid decompositions.
    #[error(
        "planar scene: {} poses explain the {plane_inliers} points of the plane alike (off-plane inliers \
         {off_plane_inliers:?}); the pose is ambiguous",
        candidates.len()
    )]
    PlanarAmbiguity {
        /// The candidate with the best MSAC score, refined like any pose (inliers, covariance and quality
        /// included): a guess — right on about two in three of the ambiguous pairs of the `rooms` evaluation
        /// set — for a caller that can check it against a prior (odometry, IMU) or that reports it with the
        /// ambiguity stated (`matcha match`); not a pose to act on alone.
        best: Box<RelativePose>,
        /// The candidate poses `(R, t)` (unit `t`), best supported first (the first is `best`'s).
        candidates: Vec<(Matrix3<f64>, Vector3<f64>)>,
        /// Correspondences on the plane (homography inliers).
        plane_inliers: usize,
        /// Off-plane inliers of each candidate.
        off_plane_inliers: Vec<usize>,
    },
    /// No hypothesis reached `min_inliers` inliers.
    #[error("no consensus: best hypothesis had {best_inliers} inliers (need {need})")]
    NoConsensus {
        /// Inlier count of the best hypothesis.
        best_inliers: usize,
        /// Required inlier count.
        need: usize,
    },
}

/// What a two-view estimate returns instead of a pose: an outcome ([`NoPose`]) or unusable input
/// ([`PoseInputError`]). [`PoseError::into_outcome`] separates the two for callers that handle them apart
/// (the pipeline reports an outcome with the pair and fails on bad input).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PoseError {
    /// No pose, for a reason of the scene or the correspondences.
    #[error(transparent)]
    NoPose(#[from] NoPose),
    /// The input cannot be used.
    #[error(transparent)]
    Input(#[from] PoseInputError),
}

impl PoseError {
    /// The outcome, or the input error as `Err`.
    pub fn into_outcome(self) -> Result<NoPose, PoseInputError> {
        match self {
            PoseError::NoPose(n) => Ok(n),
            PoseError::Input(e) => Err(e),
        }
    }
}

/// A pose or its outcome, with unusable input as the outer `Err` (`?`-friendly for callers that fail on it).
pub fn pose_outcome(
    estimate: Result<RelativePose, PoseError>,
) -> Result<Result<RelativePose, NoPose>, PoseInputError> {
    match estimate {
        Ok(pose) => Ok(Ok(pose)),
        Err(e) => e.into_outcome().map(Err),
    }
}
