//! DISK (Tyszkiewicz et al., NeurIPS 2020), kornia's U-Net with the "depth" weights: dense 128-d
//! descriptors and a detection heatmap at full resolution. Slower than XFeat on CPU (a GPU/accuracy option)
//! and the keypoint detector of the MATCHA pipeline.
//!
//! The engine (`engines/disk.onnx`) maps an RGB image in `[0, 1]` (sides multiples of 16; we zero-pad at the
//! bottom/right as kornia's `pad_if_not_divisible` does and crop the outputs back) to `heatmap` `1 × H × W`
//! (detection logits) and `descriptors` `128 × H × W`. Keypoint selection copies kornia's
//! `heatmap_to_keypoints`: NMS 5×5 keeping the first argmax of each window, score `> threshold`, the `n`
//! highest scores; descriptors are read at the integer keypoint positions (no interpolation) and
//! L2-normalised.

use ndarray::{s, Array2, ArrayD, Ix4};

use super::keypoints::{nms, top_k, NmsRule};
use super::preprocess::{pad_to_multiple, rgb_tensor};
use super::sampling::l2_normalize_rows;
use super::{FeatureError, FeatureExtractor, Features};
use crate::image::RgbImage;
use crate::runtime::{Engine, RuntimeConfig};

/// Engine file name inside the engines directory.
pub const ENGINE_FILE: &str = "disk.onnx";
const INPUT: &str = "image";
const OUT_HEATMAP: &str = "heatmap";
const OUT_DESCRIPTORS: &str = "descriptors";
/// Descriptor dimension.
pub const DIM: usize = 128;
/// The U-Net needs sides that are multiples of this.
pub const STRIDE: usize = 16;

/// DISK settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskOptions {
    /// Keep at most this many keypoints (highest scores).
    pub max_keypoints: usize,
    /// Minimum heatmap logit of a keypoint (reference default 0.0).
    pub detection_threshold: f32,
    /// NMS window (odd).
    pub nms_window: usize,
}

/// The DISK extractor.
pub struct Disk {
    engine: Engine,
    options: DiskOptions,
}

impl Disk {
    /// Loads `disk.onnx` from the engines directory.
    pub fn new(runtime: &RuntimeConfig, options: DiskOptions) -> Result<Self, FeatureError> {
        let engine = Engine::load(&runtime.engines_dir.join(ENGINE_FILE), runtime)?;
        Ok(Self { engine, options })
    }

    /// Runs the network and returns the cropped heatmap (`H × W`) and descriptor map (`128 × H × W`).
    pub fn dense(&mut self, image: &RgbImage) -> Result<(Array2<f32>, ndarray::Array3<f32>), FeatureError> {
        let (w, h) = image.dimensions();
        let (w, h) = (w as usize, h as usize);
        let input = pad_to_multiple(&rgb_tensor(image, 1.0 / 255.0), STRIDE);
        let mut out = self
            .engine
            .run(&[(INPUT, input.view().into_dyn())], &[OUT_HEATMAP, OUT_DESCRIPTORS])?;
        let bad = |reason: String| FeatureError::BadOutput {
            extractor: "disk".into(),
            reason,
        };
        let as4 = |a: ArrayD<f32>| a.into_dimensionality::<Ix4>().map_err(|e| bad(e.to_string()));
        let desc = as4(out.pop().unwrap_or_default())?;
        let heat = as4(out.pop().unwrap_or_default())?;
        let (ph, pw) = (input.dim().2, input.dim().3);
        if heat.dim() != (1, 1, ph, pw) || desc.dim() != (1, DIM, ph, pw) {
            return Err(bad(format!(
                "heatmap {:?}, descriptors {:?}; expected [1, 1, {ph}, {pw}] and [1, {DIM}, {ph}, {pw}]",
                heat.shape(),
                desc.shape()
            )));
        }
        Ok((
            heat.slice(s![0, 0, ..h, ..w]).to_owned(),
            desc.slice(s![0, .., ..h, ..w]).to_owned(),
        ))
    }
}

impl FeatureExtractor for Disk {
    fn name(&self) -> &str {
        "disk"
    }

    fn descriptor_dim(&self) -> usize {
        DIM
    }

    fn min_image_side(&self) -> u32 {
        STRIDE as u32
    }

    fn extract(&mut self, image: &RgbImage) -> Result<Features, FeatureError> {
        let (w, h) = image.dimensions();
        if (w as usize) < STRIDE || (h as usize) < STRIDE {
            return Err(FeatureError::BadImage {
                extractor: "disk".into(),
                reason: format!("{w}×{h} is smaller than the network stride ({STRIDE} px per side)"),
            });
        }
        let (heat, desc) = self.dense(image)?;
        let cand = nms(
            heat.view(),
            self.options.nms_window,
            self.options.detection_threshold,
            NmsRule::FirstArgmax,
        );
        let scores: Vec<f32> = cand.iter().map(|p| heat[[p[1] as usize, p[0] as usize]]).collect();
        let keep = top_k(&scores, self.options.max_keypoints);
        let mut descriptors = Array2::<f32>::zeros((keep.len(), DIM));
        for (row, &i) in keep.iter().enumerate() {
            let [x, y] = cand[i];
            descriptors
                .row_mut(row)
                .assign(&desc.slice(s![.., y as usize, x as usize]));
        }
        l2_normalize_rows(&mut descriptors);
        Ok(Features {
            keypoints: keep.iter().map(|&i| [cand[i][0] as f32, cand[i][1] as f32]).collect(),
            scores: keep.iter().map(|&i| scores[i]).collect(),
            descriptors,
            image_size: [w, h],
        })
    }
}
