//! XFeat (Potje et al., CVPR 2024): the CPU default extractor. 64-d descriptors at 1/8 resolution, a
//! full-resolution keypoint heatmap and a 1/8 reliability map from one small CNN.
//!
//! The engine (`engines/xfeat.onnx`, exported by `tools/export_models.py`) holds the network up to the dense
//! maps: channel-normalised descriptors `64 × H/8 × W/8`, the keypoint probability heatmap `1 × H × W`
//! (softmax over the 65 logits, dustbin dropped, 8×8 pixel-shuffle) and the reliability `1 × H/8 × W/8`.
//! Everything after that is here and copies the reference `XFeat.detectAndCompute` step by step, so that the
//! parity test can demand the same keypoints:
//!
//! 1. resize to the largest multiple of 32 not above the input size (bilinear, `align_corners=False`);
//! 2. NMS 5×5, keep heatmap values `> detection_threshold` (every pixel equal to its window max);
//! 3. score = heatmap at the keypoint (nearest) × reliability (bilinear), both sampled through
//!    `InterpolateSparse2d`'s grid `2·x/(W−1) − 1` with `align_corners=False`;
//! 4. top-k by score; descriptors sampled bicubically the same way and L2-normalised;
//! 5. keypoints scaled back by the resize ratios.

use ndarray::{s, Array2, ArrayD, Ix4};

use super::keypoints::{nms, top_k, NmsRule};
use super::preprocess::{resize_bilinear, rgb_tensor};
use super::sampling::{l2_normalize_rows, sample_map, GridConvention, Interpolation};
use super::{FeatureError, FeatureExtractor, Features};
use crate::image::RgbImage;
use crate::runtime::{Engine, RuntimeConfig};

/// Engine file name inside the engines directory.
pub const ENGINE_FILE: &str = "xfeat.onnx";
const INPUT: &str = "image";
const OUT_DESCRIPTORS: &str = "descriptors";
const OUT_HEATMAP: &str = "heatmap";
const OUT_RELIABILITY: &str = "reliability";
/// Descriptor dimension.
pub const DIM: usize = 64;
/// Network stride: input sides are rounded down to a multiple of this.
pub const STRIDE: u32 = 32;

/// XFeat settings.
#[derive(Debug, Clone, PartialEq)]
pub struct XFeatOptions {
    /// Keep at most this many keypoints (highest scores).
    pub max_keypoints: usize,
    /// Minimum heatmap value of a keypoint (reference default 0.05).
    pub detection_threshold: f32,
}

/// The XFeat extractor.
pub struct XFeat {
    engine: Engine,
    options: XFeatOptions,
}

impl XFeat {
    /// Loads `xfeat.onnx` from the engines directory.
    pub fn new(runtime: &RuntimeConfig, options: XFeatOptions) -> Result<Self, FeatureError> {
        let engine = Engine::load(&runtime.engines_dir.join(ENGINE_FILE), runtime)?;
        Ok(Self { engine, options })
    }

    fn bad_output(reason: String) -> FeatureError {
        FeatureError::BadOutput {
            extractor: "xfeat".into(),
            reason,
        }
    }
}

fn as4(a: ArrayD<f32>, what: &str) -> Result<ndarray::Array4<f32>, FeatureError> {
    a.into_dimensionality::<Ix4>()
        .map_err(|e| XFeat::bad_output(format!("{what}: {e}")))
}

impl FeatureExtractor for XFeat {
    fn name(&self) -> &str {
        "xfeat"
    }

    fn descriptor_dim(&self) -> usize {
        DIM
    }

    fn min_image_side(&self) -> u32 {
        STRIDE
    }

    fn extract(&mut self, image: &RgbImage) -> Result<Features, FeatureError> {
        let (w, h) = image.dimensions();
        if w < STRIDE || h < STRIDE {
            return Err(FeatureError::BadImage {
                extractor: "xfeat".into(),
                reason: format!("{w}×{h} is smaller than the network stride ({STRIDE} px per side)"),
            });
        }
        let (rw, rh) = ((w / STRIDE * STRIDE) as usize, (h / STRIDE * STRIDE) as usize);
        let ratio = [w as f32 / rw as f32, h as f32 / rh as f32];
        let input = resize_bilinear(&rgb_tensor(image, 1.0 / 255.0), rh, rw);
        let mut out = self.engine.run(
            &[(INPUT, input.view().into_dyn())],
            &[OUT_DESCRIPTORS, OUT_HEATMAP, OUT_RELIABILITY],
        )?;
        let reliability = as4(out.pop().unwrap_or_default(), OUT_RELIABILITY)?;
        let heatmap = as4(out.pop().unwrap_or_default(), OUT_HEATMAP)?;
        let descriptors = as4(out.pop().unwrap_or_default(), OUT_DESCRIPTORS)?;
        if heatmap.dim() != (1, 1, rh, rw) || descriptors.dim().1 != DIM {
            return Err(Self::bad_output(format!(
                "heatmap {:?} (expected [1, 1, {rh}, {rw}]), descriptors {:?} (expected [1, {DIM}, h, w])",
                heatmap.shape(),
                descriptors.shape()
            )));
        }
        let heat = heatmap.slice(s![0, .., .., ..]);
        let candidates = nms(
            heat.index_axis(ndarray::Axis(0), 0),
            5,
            self.options.detection_threshold,
            NmsRule::EqualsMax,
        );
        let pts: Vec<[f32; 2]> = candidates.iter().map(|p| [p[0] as f32, p[1] as f32]).collect();
        let grid = GridConvention {
            image_size: [rw as f64, rh as f64],
            align_corners: false,
        };
        let near = sample_map(heat, &pts, &grid, Interpolation::Nearest);
        let rel = sample_map(reliability.slice(s![0, .., .., ..]), &pts, &grid, Interpolation::Bilinear);
        // The reference marks (0, 0) as batch padding (score −1), which drops a real keypoint there too.
        let scores: Vec<f32> = (0..pts.len())
            .map(|i| if pts[i] == [0.0, 0.0] { -1.0 } else { near[[i, 0]] * rel[[i, 0]] })
            .collect();
        let keep: Vec<usize> = top_k(&scores, self.options.max_keypoints)
            .into_iter()
            .filter(|&i| scores[i] > 0.0)
            .collect();
        let kept_pts: Vec<[f32; 2]> = keep.iter().map(|&i| pts[i]).collect();
        let mut desc: Array2<f32> = sample_map(
            descriptors.slice(s![0, .., .., ..]),
            &kept_pts,
            &grid,
            Interpolation::Bicubic,
        );
        l2_normalize_rows(&mut desc);
        Ok(Features {
            keypoints: kept_pts.iter().map(|p| [p[0] * ratio[0], p[1] * ratio[1]]).collect(),
            scores: keep.iter().map(|&i| scores[i]).collect(),
            descriptors: desc,
            image_size: [w, h],
        })
    }
}
