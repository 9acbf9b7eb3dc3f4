//! What the tracker keeps: a frame (gray pyramid and dense descriptor map) and, per query, its state (the
//! descriptors and patches it is recognised by, where it is, how it moves, whether it is seen).

use image::GrayImage;

use super::patch::{Crop, Pyramid};
use super::Query;
use crate::features::DenseDescriptors;

/// One frame as the tracker needs it: its gray pyramid and its dense descriptor map.
#[derive(Debug, Clone)]
pub struct TrackFrame {
    pub(super) pyramid: Pyramid,
    pub(super) dense: DenseDescriptors,
}

impl TrackFrame {
    /// A frame from its 8-bit gray image and the dense descriptors of the same image; `levels` pyramid levels
    /// (`track.pyramid_levels`). The map must describe an image of the gray image's size.
    pub fn new(gray: GrayImage, dense: DenseDescriptors, levels: u32) -> Result<Self, String> {
        if dense.image_size() != [gray.width(), gray.height()] {
            return Err(format!(
                "the descriptor map describes a {:?} image, the frame is {}×{}",
                dense.image_size(),
                gray.width(),
                gray.height()
            ));
        }
        Ok(Self {
            pyramid: Pyramid::new(gray, levels),
            dense,
        })
    }

    pub(super) fn size(&self) -> [u32; 2] {
        self.dense.image_size()
    }
}

/// What the tracker keeps of one query.
#[derive(Debug, Clone)]
pub(super) struct PointState {
    pub(super) query: Query,
    /// Set on the query frame.
    pub(super) started: bool,
    /// Descriptor at the query.
    pub(super) reference: Vec<f32>,
    /// Descriptor where the point was last seen.
    pub(super) recent: Vec<f32>,
    /// The query's patch (`None` when the query is too close to the border for a crop).
    pub(super) anchor: Option<Crop>,
    /// The patch where the point was last seen.
    pub(super) last_seen: Option<Crop>,
    pub(super) position: [f32; 2],
    pub(super) velocity: [f32; 2],
    pub(super) visible: bool,
    pub(super) confidence: f32,
}

impl PointState {
    /// A query not started yet.
    pub(super) fn new(query: Query) -> Self {
        Self {
            query,
            started: false,
            reference: Vec::new(),
            recent: Vec::new(),
            anchor: None,
            last_seen: None,
            position: [query.x, query.y],
            velocity: [0.0, 0.0],
            visible: false,
            confidence: 0.0,
        }
    }
}
