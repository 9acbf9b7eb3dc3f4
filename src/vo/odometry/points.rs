//! The points a frame gives a new keyframe: which of its keypoints have a depth, their camera-frame
//! positions, and for a monocular keyframe which landmark each carries over and where the frame observes
//! it. Not here: how the depth is found (`landmarks.rs` for a stereo rig, `monocular.rs` for one camera)
//! or the keyframe itself (`landmarks.rs`). One list per field, indexed together, because the keyframe
//! copies them column by column.

use nalgebra::Vector3;

/// The points a frame can give a new keyframe: the left keypoints with a depth and their camera-frame
/// points (stereo: triangulated left ↔ right; monocular: against the previous keyframe).
#[derive(Default)]
pub(super) struct FramePoints {
    pub(super) keypoint: Vec<usize>,
    pub(super) camera: Vec<Vector3<f64>>,
    /// Monocular: the landmark a point carries over from the previous keyframe (`None`: a new one) ...
    pub(super) landmark: Vec<Option<u64>>,
    /// ... and, for a new one, where the previous keyframe saw it (an observation for the bundle).
    pub(super) in_previous: Vec<Option<[f32; 2]>>,
    /// Where the frame observes the point when that is not its detection: a carried landmark is observed
    /// where the previous keyframe's patch of it aligns in this image, so that every keyframe's
    /// observation refers to the physical point that was triangulated (a fresh detection of it is up to
    /// `carry_max_error_px` away, and later frames would follow that other point).
    pub(super) observed_at: Vec<Option<[f32; 2]>>,
}

impl FramePoints {
    pub(super) fn push(
        &mut self,
        keypoint: usize,
        camera: Vector3<f64>,
        landmark: Option<u64>,
        in_previous: Option<[f32; 2]>,
    ) {
        self.keypoint.push(keypoint);
        self.camera.push(camera);
        self.landmark.push(landmark);
        self.in_previous.push(in_previous);
        self.observed_at.push(None);
    }

    /// A landmark carried over from the previous keyframe, observed at `observed_at` in this frame.
    pub(super) fn push_carried(
        &mut self,
        keypoint: usize,
        camera: Vector3<f64>,
        landmark: u64,
        observed_at: [f32; 2],
    ) {
        self.push(keypoint, camera, Some(landmark), None);
        if let Some(last) = self.observed_at.last_mut() {
            *last = Some(observed_at);
        }
    }

    /// Where the frame observes point `k` (`keypoints`: the frame's detections).
    pub(super) fn pixel(&self, k: usize, keypoints: &[[f32; 2]]) -> [f32; 2] {
        self.observed_at[k].unwrap_or(keypoints[self.keypoint[k]])
    }
}
