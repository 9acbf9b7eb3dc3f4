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
//!
//! One addition, off in the parity test and on by default ([`XFeatOptions::subpixel`]): the reference
//! reports keypoints on the integer pixel grid, which caps the precision of the relative pose at small
//! baselines. We refine each kept maximum with the vertex of a 1-D parabola through the heatmap along x and
//! along y (offset clamped to ±0.5 px), the usual sub-pixel step of detectors (SIFT, ALIKED's soft-argmax).

use ndarray::{s, Array2, ArrayView4, ArrayViewD, Ix4};

use super::keypoints::{nms, spread_top_k, NmsRule, SpreadOptions};
use super::preprocess::{resize_bilinear, rgb_tensor};
use super::sampling::{l2_normalize_rows, sample_map, GridConvention, Interpolation};
use super::{DenseDescriptors, FeatureError, FeatureExtractor, Features};
use crate::image::RgbImage;
use crate::runtime::{Engine, RuntimeConfig};

/// Engine file name inside the engines directory (float32).
pub const ENGINE_FILE: &str = "xfeat.onnx";
/// The INT8 engine (static quantization of [`ENGINE_FILE`], detection heads in float32; see
/// `tools/export_models.py`).
pub const ENGINE_FILE_INT8: &str = "xfeat_int8.onnx";
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
    /// Refine keypoints to sub-pixel positions on the heatmap (off = the reference's integer grid).
    pub subpixel: bool,
    /// Which engine runs: float32 or INT8.
    pub precision: Precision,
    /// How the keypoint budget is spread over the image ([`SpreadOptions::OFF`]: the reference's top-k).
    pub spread: SpreadOptions,
}

/// Numeric precision of the XFeat engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// INT8 when the engine runs on the CPU and `xfeat_int8.onnx` exists, float32 otherwise (GPU providers
    /// run the float32 engine, TensorRT in fp16 when `runtime.tensorrt.fp16`).
    #[default]
    Auto,
    /// Always the float32 engine.
    Fp32,
    /// Always the INT8 engine (an error when it is missing).
    Int8,
}

/// The XFeat extractor.
pub struct XFeat {
    engine: Engine,
    options: XFeatOptions,
    int8: bool,
}

impl XFeat {
    /// Loads the engine that `options.precision` selects from the engines directory: `xfeat.onnx` or
    /// `xfeat_int8.onnx` (see [`Precision`]).
    pub fn new(runtime: &RuntimeConfig, options: XFeatOptions) -> Result<Self, FeatureError> {
        let fp32_path = runtime.engines_dir.join(ENGINE_FILE);
        let int8_path = runtime.engines_dir.join(ENGINE_FILE_INT8);
        let (engine, int8) = match options.precision {
            Precision::Fp32 => (Engine::load(&fp32_path, runtime)?, false),
            Precision::Int8 => (Engine::load(&int8_path, runtime)?, true),
            Precision::Auto if !int8_path.is_file() => {
                log::warn!(
                    "xfeat: {} not found, running the float32 engine (re-run scripts/setup.sh to export it)",
                    int8_path.display()
                );
                (Engine::load(&fp32_path, runtime)?, false)
            }
            Precision::Auto => {
                let may_use_gpu = runtime
                    .providers
                    .iter()
                    .any(|p| p.is_gpu() && p.compiled_in());
                if may_use_gpu {
                    let engine = Engine::load(&fp32_path, runtime)?;
                    if engine.active_providers().iter().any(|p| p.is_gpu()) {
                        (engine, false)
                    } else {
                        log::info!(
                            "xfeat: no GPU provider took; running the INT8 engine on the CPU"
                        );
                        drop(engine);
                        (Engine::load(&int8_path, runtime)?, true)
                    }
                } else {
                    (Engine::load(&int8_path, runtime)?, true)
                }
            }
        };
        log::info!(
            "xfeat: {} engine ({})",
            if int8 { "INT8" } else { "float32" },
            engine.provider_summary()
        );
        Ok(Self {
            engine,
            options,
            int8,
        })
    }

    /// Whether the INT8 engine runs.
    pub fn is_int8(&self) -> bool {
        self.int8
    }

    fn bad_output(reason: String) -> FeatureError {
        FeatureError::BadOutput {
            extractor: "xfeat",
            reason,
        }
    }
}

fn as4<'a>(a: ArrayViewD<'a, f32>, what: &str) -> Result<ArrayView4<'a, f32>, FeatureError> {
    a.into_dimensionality::<Ix4>()
        .map_err(|e| XFeat::bad_output(format!("{what}: {e}")))
}

/// Vertex of the parabola through three samples `(−1, a), (0, b), (1, c)`, clamped to ±0.5.
fn parabola_offset(a: f32, b: f32, c: f32) -> f32 {
    let denom = a - 2.0 * b + c;
    if denom < -1e-12 {
        (0.5 * (a - c) / denom).clamp(-0.5, 0.5)
    } else {
        0.0
    }
}

/// Sub-pixel position of a heatmap maximum at integer `p` (unchanged at the border).
fn refine_subpixel(heat: ndarray::ArrayView2<'_, f32>, p: [f32; 2]) -> [f32; 2] {
    let (h, w) = heat.dim();
    let (x, y) = (p[0] as usize, p[1] as usize);
    if x == 0 || y == 0 || x + 1 >= w || y + 1 >= h {
        return p;
    }
    let v = heat[[y, x]];
    let dx = parabola_offset(heat[[y, x - 1]], v, heat[[y, x + 1]]);
    let dy = parabola_offset(heat[[y - 1, x]], v, heat[[y + 1, x]]);
    [p[0] + dx, p[1] + dy]
}

impl FeatureExtractor for XFeat {
    fn name(&self) -> &'static str {
        "xfeat"
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
        STRIDE
    }

    fn extract(&mut self, image: &RgbImage) -> Result<Features, FeatureError> {
        let (w, h) = image.dimensions();
        let (input, [rw, rh]) = network_input(image)?;
        let ratio = [w as f32 / rw as f32, h as f32 / rh as f32];
        let options = &self.options;
        // post-processing reads the outputs where ONNX Runtime left them (no copy)
        self.engine.run_with(
            &[(INPUT, input.view().into_dyn())],
            &[OUT_DESCRIPTORS, OUT_HEATMAP, OUT_RELIABILITY],
            |out| {
                let mut out = out.into_iter();
                let mut next = |what: &str| {
                    out.next()
                        .ok_or_else(|| Self::bad_output(format!("{what}: missing")))
                        .and_then(|a| as4(a, what))
                };
                let descriptors = next(OUT_DESCRIPTORS)?;
                let heatmap = next(OUT_HEATMAP)?;
                let reliability = next(OUT_RELIABILITY)?;
                postprocess(
                    options,
                    Maps {
                        descriptors,
                        heatmap,
                        reliability,
                    },
                    [rw, rh],
                    ratio,
                    [w, h],
                )
            },
        )?
    }

    /// The `64 × H/8 × W/8` descriptor map. Pixel `p` of the photo is `p·rw/w` in the network input (the
    /// inverse of the keypoints' scaling in [`XFeat::extract`]), sampled with `align_corners = false` through
    /// `2·q/(rw−1) − 1` like the keypoint descriptors.
    fn dense_descriptors(&mut self, image: &RgbImage) -> Result<DenseDescriptors, FeatureError> {
        let (w, h) = image.dimensions();
        let (input, [rw, rh]) = network_input(image)?;
        self.engine.run_with(
            &[(INPUT, input.view().into_dyn())],
            &[OUT_DESCRIPTORS],
            |out| {
                let d = out
                    .into_iter()
                    .next()
                    .ok_or_else(|| Self::bad_output("descriptors: missing".into()))
                    .and_then(|a| as4(a, OUT_DESCRIPTORS))?;
                let (_, c, mh, mw) = d.dim();
                if c != DIM || mh == 0 || mw == 0 {
                    return Err(Self::bad_output(format!(
                        "descriptors {:?} (expected [1, {DIM}, h, w])",
                        d.shape()
                    )));
                }
                let mut scale = [0.0; 2];
                let mut offset = [0.0; 2];
                for (k, (map_len, input_len, photo_len)) in
                    [(mw, rw, w), (mh, rh, h)].into_iter().enumerate()
                {
                    let a = map_len as f64 / (input_len as f64 - 1.0).max(1.0);
                    scale[k] = a * input_len as f64 / photo_len as f64;
                    offset[k] = -0.5;
                }
                Ok(DenseDescriptors::from_chw(
                    d.slice(s![0, .., .., ..]),
                    [w, h],
                    scale,
                    offset,
                ))
            },
        )?
    }
}

/// The network input (step 1 of the module doc): the image resized to the largest multiple of the stride
/// per side, and that size `[rw, rh]`; images smaller than the stride are refused.
fn network_input(image: &RgbImage) -> Result<(ndarray::Array4<f32>, [usize; 2]), FeatureError> {
    let (w, h) = image.dimensions();
    if w < STRIDE || h < STRIDE {
        return Err(FeatureError::BadImage {
            extractor: "xfeat",
            reason: format!("{w}×{h} is smaller than the network stride ({STRIDE} px per side)"),
        });
    }
    let (rw, rh) = (
        (w / STRIDE * STRIDE) as usize,
        (h / STRIDE * STRIDE) as usize,
    );
    Ok((
        resize_bilinear(&rgb_tensor(image, 1.0 / 255.0), rh, rw),
        [rw, rh],
    ))
}

/// The engine's three output maps.
struct Maps<'a> {
    descriptors: ArrayView4<'a, f32>,
    heatmap: ArrayView4<'a, f32>,
    reliability: ArrayView4<'a, f32>,
}

/// Keypoints, scores and descriptors from the dense maps (steps 2–5 of the module doc). `[rw, rh]` is the
/// network input size, `ratio` the photo/network scale and `[w, h]` the photo size.
fn postprocess(
    options: &XFeatOptions,
    maps: Maps<'_>,
    [rw, rh]: [usize; 2],
    ratio: [f32; 2],
    [w, h]: [u32; 2],
) -> Result<Features, FeatureError> {
    let Maps {
        descriptors,
        heatmap,
        reliability,
    } = maps;
    if heatmap.dim() != (1, 1, rh, rw) || descriptors.dim().1 != DIM {
        return Err(XFeat::bad_output(format!(
            "heatmap {:?} (expected [1, 1, {rh}, {rw}]), descriptors {:?} (expected [1, {DIM}, h, w])",
            heatmap.shape(),
            descriptors.shape()
        )));
    }
    let heat = heatmap.slice(s![0, .., .., ..]);
    let candidates = nms(
        heat.index_axis(ndarray::Axis(0), 0),
        5,
        options.detection_threshold,
        NmsRule::EqualsMax,
    );
    let pts: Vec<[f32; 2]> = candidates
        .iter()
        .map(|p| [p[0] as f32, p[1] as f32])
        .collect();
    let grid = GridConvention {
        image_size: [rw as f64, rh as f64],
        align_corners: false,
    };
    let near = sample_map(heat, &pts, &grid, Interpolation::Nearest);
    let rel = sample_map(
        reliability.slice(s![0, .., .., ..]),
        &pts,
        &grid,
        Interpolation::Bilinear,
    );
    // The reference marks (0, 0) as batch padding (score −1), which drops a real keypoint there too.
    let scores: Vec<f32> = (0..pts.len())
        .map(|i| {
            if pts[i] == [0.0, 0.0] {
                -1.0
            } else {
                near[[i, 0]] * rel[[i, 0]]
            }
        })
        .collect();
    let keep: Vec<usize> = spread_top_k(
        &pts,
        &scores,
        options.max_keypoints,
        [rw as f32, rh as f32],
        &options.spread,
    )
    .into_iter()
    .filter(|&i| scores[i] > 0.0)
    .collect();
    let heat2 = heat.index_axis(ndarray::Axis(0), 0);
    let kept_pts: Vec<[f32; 2]> = keep
        .iter()
        .map(|&i| {
            if options.subpixel {
                refine_subpixel(heat2, pts[i])
            } else {
                pts[i]
            }
        })
        .collect();
    let mut desc: Array2<f32> = sample_map(
        descriptors.slice(s![0, .., .., ..]),
        &kept_pts,
        &grid,
        Interpolation::Bicubic,
    );
    l2_normalize_rows(&mut desc);
    Ok(Features {
        keypoints: kept_pts
            .iter()
            .map(|p| [p[0] * ratio[0], p[1] * ratio[1]])
            .collect(),
        scores: keep.iter().map(|&i| scores[i]).collect(),
        descriptors: desc,
        image_size: [w, h],
        gray: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subpixel_recovers_parabola_vertex() {
        // Samples of 1 − (x − 0.3)² at −1, 0, 1 → vertex at +0.3.
        let f = |x: f32| 1.0 - (x - 0.3) * (x - 0.3);
        assert!((parabola_offset(f(-1.0), f(0.0), f(1.0)) - 0.3).abs() < 1e-6);
        assert_eq!(parabola_offset(1.0, 1.0, 1.0), 0.0); // flat: no move
        assert_eq!(parabola_offset(0.0, 1.0, 1.2), 0.5); // vertex beyond the neighbour: clamped
        assert_eq!(parabola_offset(0.0, 1.0, 5.0), 0.0); // not a maximum: no move
        let heat = ndarray::Array2::from_shape_fn((5, 5), |(y, x)| {
            let (dx, dy) = (x as f32 - 2.2, y as f32 - 1.9);
            1.0 - dx * dx - dy * dy
        });
        let r = refine_subpixel(heat.view(), [2.0, 2.0]);
        assert!(
            (r[0] - 2.2).abs() < 1e-5 && (r[1] - 1.9).abs() < 1e-5,
            "{r:?}"
        );
        assert_eq!(refine_subpixel(heat.view(), [0.0, 2.0]), [0.0, 2.0]);
    }
}
