//! Point tracking, the paper's temporal matching: query points given on one frame are followed through the
//! frames after it, with a visibility flag and a confidence per frame (the TAP-Vid task).
//!
//! How ([`Tracker`], `tracker.rs`): each frame brings the configured extractor's dense descriptor map
//! ([`crate::features::DenseDescriptors`]: XFeat's 1/8 map on the CPU, MATCHA's F_m when selected) and a gray
//! pyramid. A visible point is predicted with its velocity, located coarsely by correlating its descriptor
//! over a window of the map around the prediction, and refined to sub-pixel by pyramidal Lucas–Kanade from
//! its position in the previous frame (the match refinement's Gauss–Newton, `patch.rs`). It stays visible
//! while the photometric alignment correlates, its descriptor still resembles the query's, and tracking it
//! back lands where it came from (forward–backward consistency). A point that fails is occluded: each
//! following frame searches a wide window of the map for its descriptor and re-acquires it when the peak is
//! similar, distinct and aligns photometrically with the point's own appearance (a crop from the query frame
//! and one from the last frame it was seen in). Once visible, it is pulled back to the query's appearance
//! whenever that still aligns, so that frame-to-frame steps do not drift.
//!
//! Why this formulation: descriptors give what Lucas–Kanade lacks (large motions, a notion of "this is no
//! longer the point", re-acquisition after occlusion); Lucas–Kanade gives what a 1/8 map lacks (sub-pixel
//! positions). Memory is bounded for any video length: the tracker keeps the previous frame and, per point,
//! two descriptors and two small crops.
//!
//! Not here: reading frames or running engines (the CLI and the node do), the TAP-Vid metrics (`metrics.rs`),
//! the nearest-neighbour baseline (`baseline.rs`).

mod baseline;
pub mod io;
mod live;
pub mod metrics;
mod motion;
mod patch;
mod state;
#[cfg(test)]
mod tests;
mod tracker;

pub use baseline::NearestNeighbourTracker;
pub use motion::MotionField;
pub use patch::{pyramidal_lk, zncc, Crop, LkSettings, Pyramid};
pub use state::TrackFrame;
pub use tracker::Tracker;

/// A point to track: pixel `[x, y]` (OpenCV convention) on frame `frame` (0-based, in the order frames are
/// given to the tracker).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Query {
    /// Frame index.
    pub frame: usize,
    /// Pixel column.
    pub x: f32,
    /// Pixel row.
    pub y: f32,
}

/// A tracked point on one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackPoint {
    /// Position in pixels (the last estimate, or the prediction, while occluded).
    pub position: [f32; 2],
    /// Whether the point is seen on this frame.
    pub visible: bool,
    /// How sure the tracker is of the position, in [0, 1] (0 while occluded).
    pub confidence: f32,
}

/// Tracking settings (`track` in the configuration).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackOptions {
    /// Window (half-side, pixels) around the predicted position in which a visible point's descriptor is
    /// correlated.
    pub search_radius_px: f32,
    /// Window (half-side, pixels) around the last position in which an occluded point is searched for
    /// (0 = the whole frame).
    pub reacquire_radius_px: f32,
    /// A visible point's descriptor must keep at least this cosine similarity to the query's (or to the one
    /// it had when last seen).
    pub min_similarity: f32,
    /// An occluded point is re-acquired only at a peak of at least this similarity...
    pub reacquire_similarity: f32,
    /// ...that beats every other peak of the window (two cells or more away) by this margin.
    pub reacquire_margin: f32,
    /// Photometric alignment must correlate (ZNCC) at least this well.
    pub min_zncc: f32,
    /// Tracking a point back to the previous frame must land within this many pixels of where it was.
    pub max_cycle_px: f32,
    /// Lucas–Kanade patch half-size, pixels.
    pub patch_radius: u32,
    /// Pyramid levels (1 = full resolution only).
    pub pyramid_levels: u32,
    /// A visible point is pulled to where the query's own patch aligns when that correlates at least this
    /// well (removes frame-to-frame drift).
    pub anchor_zncc: f32,
    /// Occluded points continue along their last velocity, damped by this factor per frame (when the motion
    /// field has no prediction for them).
    pub velocity_damping: f32,
    /// Threads the points are split over (the result does not depend on it).
    pub threads: usize,
}

impl Default for TrackOptions {
    fn default() -> Self {
        Self {
            search_radius_px: 64.0,
            reacquire_radius_px: 0.0,
            min_similarity: 0.5,
            reacquire_similarity: 0.7,
            reacquire_margin: 0.05,
            min_zncc: 0.7,
            max_cycle_px: 1.5,
            patch_radius: 7,
            pyramid_levels: 4,
            anchor_zncc: 0.9,
            velocity_damping: 0.8,
            threads: 2,
        }
    }
}

impl TrackOptions {
    /// Checks value ranges; returns the offending key (below `track`) and what is allowed.
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        let pos = |v: f32| v.is_finite() && v > 0.0;
        let unit = |v: f32| (-1.0..=1.0).contains(&v);
        if !pos(self.search_radius_px) {
            return Err(("search_radius_px", "must be a positive number of pixels"));
        }
        if !(self.reacquire_radius_px.is_finite() && self.reacquire_radius_px >= 0.0) {
            return Err((
                "reacquire_radius_px",
                "must be >= 0 pixels (0 = whole frame)",
            ));
        }
        for (k, v) in [
            ("min_similarity", self.min_similarity),
            ("reacquire_similarity", self.reacquire_similarity),
            ("min_zncc", self.min_zncc),
            ("anchor_zncc", self.anchor_zncc),
        ] {
            if !unit(v) {
                return Err((k, "must be in [-1, 1]"));
            }
        }
        if !(0.0..=1.0).contains(&self.reacquire_margin) {
            return Err(("reacquire_margin", "must be in [0, 1]"));
        }
        if !pos(self.max_cycle_px) {
            return Err(("max_cycle_px", "must be a positive number of pixels"));
        }
        if !(2..=16).contains(&self.patch_radius) {
            return Err(("patch_radius", "must be in 2..=16 pixels"));
        }
        if !(1..=6).contains(&self.pyramid_levels) {
            return Err(("pyramid_levels", "must be in 1..=6"));
        }
        if !(0.0..=1.0).contains(&self.velocity_damping) {
            return Err(("velocity_damping", "must be in [0, 1]"));
        }
        if !(1..=64).contains(&self.threads) {
            return Err(("threads", "must be in 1..=64"));
        }
        Ok(())
    }
}

/// Errors of point tracking (bad input; the tracker's state is unchanged by a refused call).
#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    /// A query cannot be tracked as given.
    #[error("query {index}: {reason}")]
    BadQuery {
        /// Index of the query.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A frame does not fit the ones before it or the descriptor map.
    #[error("frame {index}: {reason}")]
    BadFrame {
        /// Index the frame would have had.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// Invalid options.
    #[error("invalid track.{key}: {reason}")]
    Options {
        /// Key below `track`.
        key: &'static str,
        /// What is allowed.
        reason: &'static str,
    },
}
