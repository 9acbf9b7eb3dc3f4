//! A pair of images, with a denser second try when the pose is a planar ambiguity.
//!
//! When one plane carries nearly all matches, only the correspondences off the plane can tell its motions
//! apart ([`NoPose::PlanarAmbiguity`]); a keypoint budget that the plane's texture fills leaves too few of
//! them. [`Pipeline::match_images`] then extracts both images again with `engine.ambiguity_max_keypoints`
//! and matches anew: the result is the denser try's, whether it decides the pose or is ambiguous again.
//! Retrying only the ambiguous pairs rather than raising the budget for every pair keeps the common case
//! (and a camera stream) at its cost; the measurement is in docs/two-view-geometry.md.
//!
//! This needs the images, so it serves callers that have a pair at hand (`matcha match`, `matcha eval`);
//! a camera stream does not retry (it keeps its latency and reports the ambiguity).

use std::time::Instant;

use super::{PairResult, Pipeline, PipelineError};
use crate::features::Features;
use crate::geometry::{NoPose, PinholeCamera};
use crate::image::RgbImage;

/// One image of a pair, its features from [`Pipeline::extract`] and its camera.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// The image the features were extracted from.
    pub image: &'a RgbImage,
    /// Its features.
    pub features: &'a Features,
    /// Its camera, in the image's pixels.
    pub camera: &'a PinholeCamera,
}

impl<'a> Frame<'a> {
    /// An image with its features and camera.
    pub fn new(image: &'a RgbImage, features: &'a Features, camera: &'a PinholeCamera) -> Self {
        Self {
            image,
            features,
            camera,
        }
    }
}

/// The result of [`Pipeline::match_images`].
#[derive(Debug, Clone)]
pub struct ImagePairResult {
    /// Matches and pose; its indices refer to [`Self::retried`]'s features when there was a second try
    /// (its times are both tries' together).
    pub pair: PairResult,
    /// The features of the denser second try (a, b) and its extraction time of both, milliseconds; `None`
    /// when the first try stands.
    pub retried: Option<(Features, Features, f64)>,
}

impl ImagePairResult {
    /// The features the result's matches refer to: the second try's, else the given ones.
    pub fn features<'a>(
        &'a self,
        a: &'a Features,
        b: &'a Features,
    ) -> (&'a Features, &'a Features) {
        match &self.retried {
            Some((ra, rb, _)) => (ra, rb),
            None => (a, b),
        }
    }
}

impl Pipeline {
    /// Matches two extracted images and estimates the pose of b relative to a, like
    /// [`Pipeline::match_pair`]; when the pose is a [`NoPose::PlanarAmbiguity`] and
    /// `engine.ambiguity_max_keypoints` exceeds the extractor's budget, both images are extracted again
    /// with that budget and matched anew, and that second try is the result (the budget is restored
    /// afterwards, also on error).
    pub fn match_images(
        &mut self,
        a: Frame<'_>,
        b: Frame<'_>,
    ) -> Result<ImagePairResult, PipelineError> {
        let first = self.match_pair(a.features, a.camera, b.features, b.camera)?;
        let budget = self.extractor.max_keypoints();
        let denser = self.ambiguity_max_keypoints;
        if !matches!(first.pose, Err(NoPose::PlanarAmbiguity { .. })) || denser <= budget {
            return Ok(ImagePairResult {
                pair: first,
                retried: None,
            });
        }
        log::debug!("planar ambiguity at {budget} keypoints: second try with {denser}");
        let t0 = Instant::now();
        self.extractor.set_max_keypoints(denser);
        let extracted = self
            .extract(a.image)
            .and_then(|fa| Ok((fa, self.extract(b.image)?)));
        self.extractor.set_max_keypoints(budget);
        let (fa, fb) = extracted?;
        let extract_ms = t0.elapsed().as_secs_f64() * 1e3;
        let mut pair = self.match_pair(&fa, a.camera, &fb, b.camera)?;
        // the time spent is both tries'
        pair.match_ms += first.match_ms;
        pair.refine_ms += first.refine_ms;
        pair.pose_ms += first.pose_ms;
        Ok(ImagePairResult {
            pair,
            retried: Some((fa, fb, extract_ms)),
        })
    }
}
