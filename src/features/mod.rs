//! Local features: keypoints, scores and L2-normalised descriptors, and the [`FeatureExtractor`] trait that
//! every engine-backed extractor (XFeat, DISK, ALIKED, MATCHA) implements.
//!
//! Coordinates convention (used everywhere in the crate): keypoints are in pixels of the *original* image
//! given to [`FeatureExtractor::extract`], with the OpenCV convention that the centre of the top-left pixel is
//! at (0, 0). Extractors that resize internally map their keypoints back to these coordinates.
//!
//! This module does not match features (see [`crate::matching`]) and knows nothing of ONNX types.

use std::sync::Arc;

use ndarray::Array2;

pub use dense::DenseDescriptors;

/// Keypoints, their detection scores and their descriptors for one image.
#[derive(Debug, Clone)]
pub struct Features {
    /// Keypoint positions `[x, y]` in original-image pixels (pixel centres at integer coordinates).
    pub keypoints: Vec<[f32; 2]>,
    /// Detection score of each keypoint (higher is better; scale is extractor-specific).
    pub scores: Vec<f32>,
    /// Descriptors, one row per keypoint, L2-normalised (`N × D`).
    pub descriptors: Array2<f32>,
    /// Width and height of the image the keypoints refer to.
    pub image_size: [u32; 2],
    /// The 8-bit grayscale image (original size), kept by the pipeline only when match refinement
    /// (`matcher.refine.enabled`) needs it; `None` otherwise (and always for map keyframes read from disk).
    /// Shared, so cloning features does not copy it.
    pub gray: Option<GrayFrame>,
}

/// A shared 8-bit grayscale frame (its `Debug` prints the size, not the pixels).
#[derive(Clone, PartialEq)]
pub struct GrayFrame(pub Arc<::image::GrayImage>);

impl GrayFrame {
    /// Grayscale (Rec. 709 luma, the `image` crate's conversion) of an RGB image.
    pub fn from_rgb(image: &::image::RgbImage) -> Self {
        Self(Arc::new(::image::imageops::grayscale(image)))
    }
}

impl std::fmt::Debug for GrayFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GrayFrame({}×{})", self.0.width(), self.0.height())
    }
}

impl Features {
    /// An empty set of features with descriptor dimension `dim`.
    pub fn empty(dim: usize, image_size: [u32; 2]) -> Self {
        Self {
            keypoints: Vec::new(),
            scores: Vec::new(),
            descriptors: Array2::zeros((0, dim)),
            image_size,
            gray: None,
        }
    }

    /// Number of keypoints.
    pub fn len(&self) -> usize {
        self.keypoints.len()
    }

    /// True when there are no keypoints.
    pub fn is_empty(&self) -> bool {
        self.keypoints.is_empty()
    }

    /// Descriptor dimension.
    pub fn descriptor_dim(&self) -> usize {
        self.descriptors.ncols()
    }

    /// The `k` keypoints with the highest scores (all when there are fewer), strongest first, with the same
    /// image.
    pub fn strongest(&self, k: usize) -> Self {
        let keep = keypoints::top_k(&self.scores, k);
        Self {
            keypoints: keep.iter().map(|&i| self.keypoints[i]).collect(),
            scores: keep.iter().map(|&i| self.scores[i]).collect(),
            descriptors: self.descriptors.select(ndarray::Axis(0), &keep),
            image_size: self.image_size,
            gray: self.gray.clone(),
        }
    }
}

/// Errors of the feature layer.
#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    /// The image cannot be processed by this extractor (too small, empty, ...).
    #[error("image rejected by {extractor}: {reason}")]
    BadImage {
        /// Extractor name.
        extractor: &'static str,
        /// What is wrong and what would be accepted.
        reason: String,
    },
    /// The engine failed.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    /// The engines are missing, stale or do not fit each other (manifest, sizes, hashes).
    #[error("{extractor}: {reason}")]
    EngineSetup {
        /// Extractor name.
        extractor: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The extractor does not offer what was asked of it (e.g. a dense descriptor map).
    #[error("{extractor} does not provide {what}")]
    Unsupported {
        /// Extractor name.
        extractor: &'static str,
        /// What was asked.
        what: &'static str,
    },
    /// The engine's outputs did not have the expected layout.
    #[error("{extractor}: unexpected engine output: {reason}")]
    BadOutput {
        /// Extractor name.
        extractor: &'static str,
        /// What was expected.
        reason: String,
    },
}

/// Anything that turns an RGB image into [`Features`].
pub trait FeatureExtractor: Send {
    /// Short name of the descriptor (`"xfeat"`, `"disk"`, `"matcha"`, ...), published with correspondences.
    fn name(&self) -> &'static str;
    /// Descriptor dimension this extractor produces.
    fn descriptor_dim(&self) -> usize;
    /// Smallest image side (pixels) the extractor accepts.
    fn min_image_side(&self) -> u32;
    /// Extracts features from an 8-bit RGB image.
    fn extract(&mut self, image: &::image::RgbImage) -> Result<Features, FeatureError>;
    /// The most keypoints one extraction keeps (`engine.max_keypoints`).
    fn max_keypoints(&self) -> usize;
    /// Sets the most keypoints the following extractions keep (the pipeline's denser second try on a
    /// pair whose pose is ambiguous; see [`crate::pipeline::Pipeline::match_images`]).
    fn set_max_keypoints(&mut self, max_keypoints: usize);
    /// The dense descriptor map of the whole image (point tracking, [`crate::track`]); extractors without one
    /// answer [`FeatureError::Unsupported`].
    fn dense_descriptors(
        &mut self,
        _image: &::image::RgbImage,
    ) -> Result<DenseDescriptors, FeatureError> {
        Err(FeatureError::Unsupported {
            extractor: self.name(),
            what: "a dense descriptor map",
        })
    }
}

pub mod aliked;
pub mod dense;
pub mod disk;
pub mod keypoints;
pub mod matcha;
pub mod preprocess;
pub mod sampling;
pub mod xfeat;
