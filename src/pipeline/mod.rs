//! The pipeline: one extractor, one matcher and the robust pose estimator wired together for an image pair
//! or a stream, with timings. The CLI, the ROS node, the benchmarks and the tests all go through here.
//!
//! Inputs are 8-bit RGB images and pinhole cameras in the pixels of those images; outputs are
//! [`Features`], [`Matches`] and a pose result. Images larger than `engine.max_image_side` are downscaled
//! for extraction and their keypoints mapped back, so callers never deal with engine sizes.
//!
//! With `matcher.refine.enabled`, extraction also keeps each frame's grayscale image in [`Features::gray`],
//! and for each pair a first pose from the detector's keypoints picks the matches to refine photometrically
//! (its inliers; [`crate::matching::refine`]); the pose is then re-estimated from that pose without new
//! sampling, from the detector's keypoints in a and the refined positions in b, with the unrefined matches
//! weighted by their measured precision ([`reestimate_refined`]). [`Features::keypoints`] and [`Matches`]
//! stay the detector's and matcher's; [`PairResult::refinement`] has the refined positions.
//! This module knows nothing of ROS or ONNX types.
//!
//! Files: `mod.rs` the [`Pipeline`] and its errors; `build.rs` the extractor and matcher named by the
//! configuration; `pair.rs` matching, refinement and the pose for one pair; `images.rs` a pair of images
//! with the denser second try when the pose is a planar ambiguity; `stream.rs` the two-stage camera
//! stream; `resize.rs` extraction with the large-image downscale. The weighting of unrefined matches is
//! geometry ([`crate::geometry::relative_pose::unrefined_weight`]).

use crate::config::MatchaConfig;
use crate::features::{FeatureError, FeatureExtractor, Features};
use crate::geometry::{NoPose, PinholeCamera, RansacOptions, RelativePose};
use crate::image::RgbImage;
use crate::matching::refine::{RefineOptions, Refinement};
use crate::matching::{MatchError, Matcher, Matches};

mod build;
mod images;
mod pair;
mod resize;
mod stream;

pub use crate::geometry::relative_pose::{unrefined_weight, MIN_GROUP_INLIERS};
pub use build::{build_extractor, build_matcher, build_semantic_extractor};
pub use images::{Frame, ImagePairResult};
pub use pair::{estimate_pose_from_matches, estimate_pose_refined, reestimate_refined};
pub use stream::StreamStep;

use pair::match_refine_pose;
use resize::extract_with;

/// Errors of the pipeline (all layers).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Configuration problem.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Extraction failed or the image was rejected.
    #[error(transparent)]
    Feature(#[from] FeatureError),
    /// Matching failed.
    #[error(transparent)]
    Match(#[from] MatchError),
    /// The pose estimator was given unusable input (a program error upstream of it, not a property of the
    /// scene: those are the pair's [`crate::geometry::NoPose`]).
    #[error("pose estimation: {0}")]
    PoseInput(#[from] crate::geometry::PoseInputError),
    /// Something the configuration asks for is not available in this build.
    #[error("{0}")]
    Unsupported(String),
}

/// Result of matching two feature sets and estimating their relative pose.
#[derive(Debug, Clone)]
pub struct PairResult {
    /// Putative correspondences (before geometric verification).
    pub matches: Matches,
    /// The pose (with its inlier mask over `matches`), or why there is none.
    pub pose: Result<RelativePose, NoPose>,
    /// Sub-pixel positions in image b used for the pose, per match (`None` entries: detector's keypoint);
    /// `None` when refinement is off or a frame has no grayscale image (e.g. a map keyframe).
    pub refinement: Option<Refinement>,
    /// Matching time, milliseconds.
    pub match_ms: f64,
    /// Refinement time, milliseconds (0 when off).
    pub refine_ms: f64,
    /// Pose estimation time, milliseconds.
    pub pose_ms: f64,
}

impl PairResult {
    /// Position in image b of match `i` as used for the pose: refined, else the detector's keypoint.
    pub fn point_b(&self, i: usize, b: &Features) -> Option<[f32; 2]> {
        let m = self.matches.matches.get(i)?;
        self.refinement
            .as_ref()
            .and_then(|r| r.points_b.get(i).copied().flatten())
            .or_else(|| b.keypoints.get(m.b as usize).copied())
    }
}

/// Extractor + matcher + pose estimator.
pub struct Pipeline {
    extractor: Box<dyn FeatureExtractor>,
    matcher: Box<dyn Matcher>,
    ransac: RansacOptions,
    max_image_side: u32,
    refine: RefineOptions,
    /// Keypoint budget of the second try on an ambiguous pair (`engine.ambiguity_max_keypoints`).
    ambiguity_max_keypoints: usize,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("extractor", &self.extractor.name())
            .field("matcher", &self.matcher.name())
            .field("ransac", &self.ransac)
            .field("refine", &self.refine)
            .finish()
    }
}

/// DISK settings from the configuration (DISK itself, and MATCHA's keypoint detector).
impl Pipeline {
    /// Builds the pipeline: loads the engines named by `config` (validated first).
    pub fn new(config: &MatchaConfig) -> Result<Self, PipelineError> {
        config.validate()?;
        Ok(Self {
            extractor: build_extractor(config)?,
            matcher: build_matcher(config)?,
            ransac: config.pose.clone(),
            max_image_side: config.engine.max_image_side,
            refine: config.matcher.refine.clone(),
            ambiguity_max_keypoints: config.engine.ambiguity_max_keypoints,
        })
    }

    /// Builds a pipeline from parts (tests, benchmarks, custom engines); match refinement off
    /// (see [`Pipeline::with_refinement`]), no second try on ambiguous pairs (see
    /// [`Pipeline::with_ambiguity_max_keypoints`]).
    pub fn from_parts(
        extractor: Box<dyn FeatureExtractor>,
        matcher: Box<dyn Matcher>,
        ransac: RansacOptions,
        max_image_side: u32,
    ) -> Self {
        Self {
            extractor,
            matcher,
            ransac,
            max_image_side,
            refine: RefineOptions::default(),
            ambiguity_max_keypoints: 0,
        }
    }

    /// Sets the keypoint budget of the second try on an ambiguous pair ([`Pipeline::match_images`];
    /// 0 = never).
    pub fn with_ambiguity_max_keypoints(mut self, max_keypoints: usize) -> Self {
        self.ambiguity_max_keypoints = max_keypoints;
        self
    }

    /// Sets the match refinement (`enabled` decides whether frames keep their grayscale image).
    pub fn with_refinement(mut self, refine: RefineOptions) -> Self {
        self.refine = refine;
        self
    }

    /// The match refinement options.
    pub fn refine_options(&self) -> &RefineOptions {
        &self.refine
    }

    /// Name of the descriptor (published with correspondences).
    pub fn descriptor_name(&self) -> &str {
        self.extractor.name()
    }

    /// Name of the matcher.
    pub fn matcher_name(&self) -> &str {
        self.matcher.name()
    }

    /// The pose estimator options.
    pub fn ransac_options(&self) -> &RansacOptions {
        &self.ransac
    }

    /// Extracts features; keypoints are in the pixels of `image` whatever resizing happens inside.
    pub fn extract(&mut self, image: &RgbImage) -> Result<Features, PipelineError> {
        extract_with(
            self.extractor.as_mut(),
            self.max_image_side,
            self.refine.enabled,
            image,
        )
    }

    /// The extractor's dense descriptor map of `image` (point tracking; see
    /// [`FeatureExtractor::dense_descriptors`]).
    pub fn dense_descriptors(
        &mut self,
        image: &RgbImage,
    ) -> Result<crate::features::DenseDescriptors, PipelineError> {
        Ok(self.extractor.dense_descriptors(image)?)
    }

    /// Matches `a` to `b` and estimates the pose of b relative to a (`x_b = R·x_a + t`).
    pub fn match_pair(
        &mut self,
        a: &Features,
        camera_a: &PinholeCamera,
        b: &Features,
        camera_b: &PinholeCamera,
    ) -> Result<PairResult, PipelineError> {
        match_refine_pose(
            self.matcher.as_mut(),
            &self.refine,
            &self.ransac,
            (a, camera_a),
            (b, camera_b),
        )
    }
}
