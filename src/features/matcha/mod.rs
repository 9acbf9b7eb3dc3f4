//! MATCHA (Xue et al., CVPR 2025, "MATCHA: Towards Matching Anything"): DISK keypoints described by one
//! dense descriptor map F_m that fuses diffusion (DIFT / Stable Diffusion 2.1) and DINOv2 features.
//!
//! # Method
//! The image, resized to the engine's fixed input size (sides multiples of 32, RGB in `[0, 1]`, no mean/std),
//! goes through three ONNX engines exported by `tools/export_matcha.py`:
//! 1. `dift`: the VAE encodes the image once; a posterior latent is drawn per ensemble member, DDIM noise is
//!    added at t = 261 and t = 1, the SD 2.1 UNet runs (null-prompt text embedding) up to up block 1 resp. 2,
//!    and the members are averaged: F_h (1/16) and F_l (1/8).
//! 2. `dinov2`: DINOv2 ViT-L/14 patch tokens, L2-normalised (absent in MATCHA-Light).
//! 3. `fusion`: the attention fusion network turns F_h/F_l into F_s (semantic) and F_g (geometric), which are
//!    merged with DINOv2 into F_m (1024-d geometric mode, 1280-d semantic, 512-d light) at 1/8 resolution.
//!
//! The stages are chained through ONNX Runtime IO bindings ([`Engine::run_bound`]): on a GPU provider the
//! intermediate F_h, F_l and DINOv2 tokens never leave device memory; only the image goes in and F_m comes out.
//!
//! Descriptors are F_m sampled at the keypoints with bilinear `grid_sample(align_corners=True)` as the
//! official `sample_descriptor`, then L2-normalised. The official pipeline rounds the image up to a multiple
//! of 32 and runs DISK on that resized image; we run DISK on the original image (keypoints stay in original
//! pixels, as [`Features`] requires) and map them into the engine input with the resize's own mapping
//! `x_in = (x + 0.5)·W_in/W − 0.5` before sampling. For images whose size equals the engine size (the
//! official setting) both are identical.
//!
//! # Randomness
//! DIFT's noise (`noise` and `posterior_noise`, `2E × 4 × H/8 × W/8`, rows `0..E` for t = 261) is an INPUT of
//! the exported graph. We draw it once per extractor from [`MatchaOptions::seed`] (standard normal via
//! Box–Muller on `StdRng`) and reuse it for every image: descriptors are then a deterministic function of
//! the image, and two images of a pair see the same noise (the official code draws fresh noise per call;
//! with E = 8 the ensemble average makes the difference small).
//!
//! # Engines and manifest
//! The engines directory holds `manifest.json` (format 1), which names every stage file with its sha256,
//! input/output names and shapes, the input size and the descriptor dimension. [`MatchaEngines::load`]
//! validates all of it against what ONNX Runtime reports for each loaded engine (and, if asked, the
//! hashes), so a stale or mismatched export fails at start-up with a message instead of producing garbage.
//!
//! This module does not detect keypoints itself (DISK does, see [`super::disk`]) and does not match.

use std::path::{Path, PathBuf};

use ndarray::{Array2, Array3, ArrayD, ArrayView2, Ix4, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::disk::{Disk, DiskOptions};
use super::preprocess::{resize_bilinear, rgb_tensor};
use super::sampling::{l2_normalize_rows, sample_map, GridConvention, Interpolation};
use super::{DenseDescriptors, FeatureError, FeatureExtractor, Features};
use crate::image::RgbImage;
use crate::runtime::{BoundInput, Engine, Placement, RuntimeConfig};

mod manifest;

use self::manifest::{check_engine, check_hash, invalid, read_f32_file};
pub use self::manifest::{Manifest, MANIFEST_FILE, MANIFEST_FORMAT};

const NAME: &str = "matcha";

/// MATCHA settings (the `engine.matcha` section of the config).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatchaOptions {
    /// Directory with `manifest.json` and the stage engines; relative paths are relative to the runtime's
    /// engines directory.
    pub engines_dir: PathBuf,
    /// Seed of the DIFT noise (drawn once, reused for every image).
    pub seed: u64,
    /// Check the sha256 of every engine file against the manifest at load (reads each file once: a few
    /// seconds for the 3.5 GB fp32 SD 2.1 graph).
    pub verify_hashes: bool,
}

impl Default for MatchaOptions {
    fn default() -> Self {
        Self {
            engines_dir: PathBuf::from("matcha"),
            seed: 0,
            verify_hashes: true,
        }
    }
}

/// `n` standard-normal samples from `seed` (Box–Muller on `StdRng`; deterministic for a given rand version).
pub fn standard_normal(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        // u1 in (0, 1] so ln(u1) is finite
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let a = std::f64::consts::TAU * u2;
        out.push((r * a.cos()) as f32);
        out.push((r * a.sin()) as f32);
    }
    out.truncate(n);
    out
}

/// The MATCHA engines (dense part): image → F_m, and F_m sampled at keypoints.
pub struct MatchaEngines {
    manifest: Manifest,
    dift: Engine,
    dino: Option<Engine>,
    fusion: Engine,
    prompt: ArrayD<f32>,
    noise: ArrayD<f32>,
    posterior_noise: ArrayD<f32>,
}

impl std::fmt::Debug for MatchaEngines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatchaEngines")
            .field("mode", &self.manifest.mode)
            .field("input", &self.manifest.input_size())
            .field("descriptor_dim", &self.manifest.descriptor_dim)
            .finish()
    }
}

impl MatchaEngines {
    /// Loads and validates the engines in `dir` (see the module doc).
    pub fn load(
        dir: &Path,
        runtime: &RuntimeConfig,
        seed: u64,
        verify_hashes: bool,
    ) -> Result<Self, FeatureError> {
        let mpath = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&mpath)
            .map_err(|e| invalid(dir, format!("cannot read {}: {e}", mpath.display())))?;
        let manifest = Manifest::parse(&text, dir)?;
        if verify_hashes {
            for st in manifest.stages.values() {
                check_hash(dir, &st.file, &st.sha256)?;
                for x in &st.external_data {
                    check_hash(dir, &x.file, &x.sha256)?;
                }
            }
            check_hash(
                dir,
                &manifest.dift.prompt_embeds.file,
                &manifest.dift.prompt_embeds.sha256,
            )?;
        }
        let load = |stage: &str| -> Result<Engine, FeatureError> {
            let info = &manifest.stages[stage];
            let engine = Engine::load(&dir.join(&info.file), runtime)?;
            check_engine(dir, &engine, info)?;
            Ok(engine)
        };
        let dift = load("dift")?;
        let fusion = load("fusion")?;
        let dino = if manifest.stages.contains_key("dinov2") {
            Some(load("dinov2")?)
        } else {
            None
        };
        let pshape = manifest.dift.prompt_embeds.shape.clone();
        let pvals = read_f32_file(
            &dir.join(&manifest.dift.prompt_embeds.file),
            pshape.iter().product(),
        )
        .map_err(|e| invalid(dir, format!("{}: {e}", manifest.dift.prompt_embeds.file)))?;
        let prompt = ArrayD::from_shape_vec(IxDyn(&pshape), pvals)
            .map_err(|e| invalid(dir, e.to_string()))?;
        let (h, w) = manifest.input_size();
        let nshape = [2 * manifest.dift.ensemble_size, 4, h / 8, w / 8];
        let n: usize = nshape.iter().product();
        let all = standard_normal(seed, 2 * n);
        let noise = ArrayD::from_shape_vec(IxDyn(&nshape), all[..n].to_vec())
            .map_err(|e| invalid(dir, e.to_string()))?;
        let posterior_noise = ArrayD::from_shape_vec(IxDyn(&nshape), all[n..].to_vec())
            .map_err(|e| invalid(dir, e.to_string()))?;
        log::info!(
            "MATCHA engines from {}: mode {}, input {h}x{w}, ensemble {}, descriptor {}-d; dift {}",
            dir.display(),
            manifest.mode,
            manifest.dift.ensemble_size,
            manifest.descriptor_dim,
            dift.provider_summary()
        );
        let mut engines = Self {
            manifest,
            dift,
            dino,
            fusion,
            prompt,
            noise,
            posterior_noise,
        };
        engines.bind_dift_constants()?;
        Ok(engines)
    }

    /// Binds the prompt embedding and the noise to the DIFT engine once (on the GPU they stay on the device).
    fn bind_dift_constants(&mut self) -> Result<(), FeatureError> {
        self.dift
            .bind_constant("prompt_embeds", self.prompt.view())?;
        self.dift.bind_constant("noise", self.noise.view())?;
        self.dift
            .bind_constant("posterior_noise", self.posterior_noise.view())?;
        Ok(())
    }

    /// Providers of the engines, one line per stage (for start-up logs and diagnostics).
    pub fn provider_summary(&self) -> String {
        let mut lines = vec![format!("dift: {}", self.dift.provider_summary())];
        if let Some(d) = &self.dino {
            lines.push(format!("dinov2: {}", d.provider_summary()));
        }
        lines.push(format!("fusion: {}", self.fusion.provider_summary()));
        lines.join("; ")
    }

    /// The validated manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Replaces the DIFT noise (e.g. with a reference's); shapes must equal the current ones.
    pub fn set_noise(
        &mut self,
        noise: ArrayD<f32>,
        posterior_noise: ArrayD<f32>,
    ) -> Result<(), FeatureError> {
        if noise.shape() != self.noise.shape()
            || posterior_noise.shape() != self.posterior_noise.shape()
        {
            return Err(FeatureError::BadImage {
                extractor: NAME,
                reason: format!(
                    "noise shapes {:?}/{:?}, expected {:?}",
                    noise.shape(),
                    posterior_noise.shape(),
                    self.noise.shape()
                ),
            });
        }
        self.noise = noise;
        self.posterior_noise = posterior_noise;
        self.bind_dift_constants()
    }

    /// F_m (`D × H/8 × W/8` of the engine input) for an image of any size (resized bilinearly to the input).
    ///
    /// The stages are chained through IO bindings: DIFT's F_h/F_l and DINOv2's tokens stay on the engines'
    /// device (GPU memory with TensorRT/CUDA) and feed the fusion engine there; only the image goes in and F_m
    /// comes out. The prompt embedding and the noise were bound once at load.
    pub fn descriptor_map(&mut self, image: &RgbImage) -> Result<Array3<f32>, FeatureError> {
        let (h, w) = self.manifest.input_size();
        let tensor = resize_bilinear(&rgb_tensor(image, 1.0 / 255.0), h, w).into_dyn();
        let bad = |reason: String| FeatureError::BadOutput {
            extractor: NAME,
            reason,
        };
        let mut o = self.dift.run_bound(
            &[("image", BoundInput::Host(tensor.view()))],
            &[("feat_c", Placement::Device), ("feat_f", Placement::Device)],
        )?;
        let feat_f = o
            .pop()
            .ok_or_else(|| bad("dift returned no feat_f".into()))?;
        let feat_c = o
            .pop()
            .ok_or_else(|| bad("dift returned no feat_c".into()))?;
        let dino = match self.dino.as_mut() {
            Some(engine) => engine
                .run_bound(
                    &[("image", BoundInput::Host(tensor.view()))],
                    &[("dino", Placement::Device)],
                )?
                .pop(),
            None => None,
        };
        let mut inputs = vec![
            ("feat_c", BoundInput::Tensor(&feat_c)),
            ("feat_f", BoundInput::Tensor(&feat_f)),
        ];
        if let Some(d) = dino.as_ref() {
            inputs.push(("dino", BoundInput::Tensor(d)));
        }
        let fm = self
            .fusion
            .run_bound(&inputs, &[("descriptors", Placement::Host)])?
            .pop()
            .ok_or_else(|| bad("fusion returned no descriptors".into()))?
            .to_host()?;
        let fm = fm
            .into_dimensionality::<Ix4>()
            .map_err(|e| bad(e.to_string()))?;
        let want = (1, self.manifest.descriptor_dim, h / 8, w / 8);
        if fm.dim() != want {
            return Err(bad(format!(
                "descriptors {:?}, expected {want:?}",
                fm.shape()
            )));
        }
        Ok(fm.index_axis_move(ndarray::Axis(0), 0))
    }

    /// Samples F_m at `keypoints` given in pixels of an image of `image_size` `[width, height]` (mapped
    /// into the engine input as its bilinear resize does), then L2-normalises: `N × D`.
    pub fn sample(
        &self,
        fmap: &Array3<f32>,
        keypoints: &[[f32; 2]],
        image_size: [u32; 2],
    ) -> Array2<f32> {
        let (h, w) = self.manifest.input_size();
        let sx = w as f32 / image_size[0].max(1) as f32;
        let sy = h as f32 / image_size[1].max(1) as f32;
        let pts: Vec<[f32; 2]> = keypoints
            .iter()
            .map(|p| [(p[0] + 0.5) * sx - 0.5, (p[1] + 0.5) * sy - 0.5])
            .collect();
        let conv = GridConvention {
            image_size: [w as f64, h as f64],
            align_corners: true,
        };
        let mut d = sample_map(fmap.view(), &pts, &conv, Interpolation::Bilinear);
        l2_normalize_rows(&mut d);
        d
    }
}

/// The MATCHA extractor: DISK keypoints + F_m descriptors.
pub struct Matcha {
    disk: Disk,
    engines: MatchaEngines,
}

impl Matcha {
    /// Loads DISK (`disk.onnx` in the runtime's engines directory) and the MATCHA engines.
    pub fn new(
        runtime: &RuntimeConfig,
        options: &MatchaOptions,
        disk: DiskOptions,
    ) -> Result<Self, FeatureError> {
        let dir = if options.engines_dir.is_absolute() {
            options.engines_dir.clone()
        } else {
            runtime.engines_dir.join(&options.engines_dir)
        };
        let engines = MatchaEngines::load(&dir, runtime, options.seed, options.verify_hashes)?;
        Ok(Self {
            disk: Disk::new(runtime, disk)?,
            engines,
        })
    }

    /// The configuration the engines were exported in: `geometric`, `semantic` or `light`.
    pub fn mode(&self) -> &str {
        &self.engines.manifest.mode
    }

    /// The dense part (for callers that bring their own keypoints).
    pub fn engines_mut(&mut self) -> &mut MatchaEngines {
        &mut self.engines
    }

    /// Describes given keypoints (original-image pixels).
    pub fn describe(
        &mut self,
        image: &RgbImage,
        keypoints: ArrayView2<'_, f32>,
    ) -> Result<Array2<f32>, FeatureError> {
        if keypoints.ncols() != 2 {
            return Err(FeatureError::BadImage {
                extractor: NAME,
                reason: format!("keypoints must be N x 2, got {:?}", keypoints.shape()),
            });
        }
        let pts: Vec<[f32; 2]> = keypoints.rows().into_iter().map(|r| [r[0], r[1]]).collect();
        let fmap = self.engines.descriptor_map(image)?;
        Ok(self
            .engines
            .sample(&fmap, &pts, [image.width(), image.height()]))
    }
}

impl FeatureExtractor for Matcha {
    fn name(&self) -> &'static str {
        NAME
    }

    fn descriptor_dim(&self) -> usize {
        self.engines.manifest.descriptor_dim
    }

    fn min_image_side(&self) -> u32 {
        self.disk.min_image_side()
    }

    /// MATCHA describes DISK's keypoints: DISK's budget.
    fn max_keypoints(&self) -> usize {
        self.disk.max_keypoints()
    }

    fn set_max_keypoints(&mut self, max_keypoints: usize) {
        self.disk.set_max_keypoints(max_keypoints);
    }

    /// F_m of the whole image, mapped like [`MatchaEngines::sample`] (bilinear resize to the engine input,
    /// `grid_sample` with `align_corners = true`).
    fn dense_descriptors(&mut self, image: &RgbImage) -> Result<DenseDescriptors, FeatureError> {
        let fmap = self.engines.descriptor_map(image)?;
        let (h, w) = self.engines.manifest.input_size();
        let (_, mh, mw) = fmap.dim();
        let (scale, offset) = DenseDescriptors::grid_sample_mapping(
            [image.width(), image.height()],
            [w, h],
            [mw, mh],
            true,
        );
        Ok(DenseDescriptors::from_chw(
            fmap.view(),
            [image.width(), image.height()],
            scale,
            offset,
        ))
    }

    fn extract(&mut self, image: &RgbImage) -> Result<Features, FeatureError> {
        let kp = self.disk.extract(image)?;
        let fmap = self.engines.descriptor_map(image)?;
        let descriptors = self.engines.sample(&fmap, &kp.keypoints, kp.image_size);
        Ok(Features {
            keypoints: kp.keypoints,
            scores: kp.scores,
            descriptors,
            image_size: kp.image_size,
            gray: None,
        })
    }
}

#[cfg(test)]
mod tests;
