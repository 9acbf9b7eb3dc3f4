//! Descriptor matching: the [`Matcher`] trait, its result [`Matches`], and the implementations
//! (mutual nearest neighbour on cosine similarity; LightGlue / LighterGlue engines).
//!
//! [`refine`] moves matched keypoints of the second image to sub-pixel agreement with the first (photometric
//! Lucas–Kanade on the grayscale frames), when enabled.
//!
//! Matching knows nothing of geometry: outlier rejection happens in [`crate::geometry`].

use crate::features::Features;

/// One correspondence: keypoint `a` of the first image with keypoint `b` of the second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Match {
    /// Index into the first image's keypoints.
    pub a: u32,
    /// Index into the second image's keypoints.
    pub b: u32,
    /// Match confidence in `[0, 1]` for learned matchers, cosine similarity for MNN (higher is better).
    pub score: f32,
}

/// All correspondences between two feature sets.
#[derive(Debug, Clone, Default)]
pub struct Matches {
    /// The matches, in no particular order.
    pub matches: Vec<Match>,
}

/// Errors of the matching layer.
#[derive(Debug, thiserror::Error)]
pub enum MatchError {
    /// Descriptors of different dimension (e.g. from two different extractors).
    #[error("descriptor dimensions differ: {a} vs {b} (both images must use the same extractor)")]
    DimensionMismatch {
        /// Dimension of the first set.
        a: usize,
        /// Dimension of the second set.
        b: usize,
    },
    /// The matcher engine failed.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    /// The engine's outputs did not have the expected layout.
    #[error("{matcher}: unexpected engine output: {reason}")]
    BadOutput {
        /// Matcher name.
        matcher: String,
        /// What was expected.
        reason: String,
    },
}

/// Both feature sets must come from the same descriptor: equal dimensions.
pub fn check_same_dimension(a: &Features, b: &Features) -> Result<(), MatchError> {
    if a.descriptor_dim() != b.descriptor_dim() {
        return Err(MatchError::DimensionMismatch {
            a: a.descriptor_dim(),
            b: b.descriptor_dim(),
        });
    }
    Ok(())
}

/// Anything that pairs up two feature sets.
pub trait Matcher: Send {
    /// Short name (`"mnn"`, `"lightglue"`, ...).
    fn name(&self) -> &str;
    /// Sets the CPU threads one call may use and returns the previous setting (matchers on the CPU;
    /// engine-backed matchers fix theirs at load, ignore this and return `threads`).
    /// [`crate::pipeline::Pipeline::process_stream`] sets 1 while extraction runs beside the matcher.
    fn set_threads(&mut self, threads: usize) -> usize {
        threads
    }
    /// Matches `a` against `b`.
    fn match_features(&mut self, a: &Features, b: &Features) -> Result<Matches, MatchError>;
}

pub mod lightglue;
pub mod mnn;
pub mod refine;
pub mod semantic;
