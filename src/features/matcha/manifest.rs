//! The `manifest.json` of a MATCHA engines directory (written by `tools/export_matcha.py`, format 1): what it
//! says (stages, their files and sha256, tensor names and shapes, the input size, the descriptor dimension),
//! its internal consistency, and the checks of the loaded engines and files against it.
//!
//! Not here: loading the engines or running them (see the parent module).

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::NAME;
use crate::features::FeatureError;
use crate::runtime::Engine;

/// Manifest file name inside a MATCHA engines directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Manifest format this code understands.
pub const MANIFEST_FORMAT: u32 = 1;

#[derive(Debug, Clone, serde::Deserialize)]
pub(super) struct FileRef {
    pub(super) file: String,
    pub(super) sha256: String,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct TensorInfo {
    name: String,
    /// Integers, or the string "N" for a dynamic dimension.
    shape: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub(super) struct StageInfo {
    pub(super) file: String,
    pub(super) sha256: String,
    #[serde(default)]
    pub(super) external_data: Vec<FileRef>,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct InputSize {
    height: usize,
    width: usize,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub(super) struct PromptInfo {
    pub(super) file: String,
    pub(super) sha256: String,
    pub(super) shape: Vec<usize>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub(super) struct DiftInfo {
    pub(super) ensemble_size: usize,
    pub(super) prompt_embeds: PromptInfo,
}

/// The parts of `manifest.json` the runtime uses (written by `tools/export_matcha.py`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Manifest {
    format: u32,
    model: String,
    /// `geometric`, `semantic` or `light`.
    pub mode: String,
    /// Channels of F_m.
    pub descriptor_dim: usize,
    /// F_m is at 1/`descriptor_stride` of the input.
    pub descriptor_stride: usize,
    input: InputSize,
    pub(super) dift: DiftInfo,
    pub(super) stages: BTreeMap<String, StageInfo>,
}

pub(super) fn invalid(dir: &Path, reason: impl Into<String>) -> FeatureError {
    FeatureError::EngineSetup {
        extractor: NAME,
        reason: format!(
            "engines in {}: {} (re-export with tools/export_matcha.py)",
            dir.display(),
            reason.into()
        ),
    }
}

impl Manifest {
    /// Parses and checks the manifest's internal consistency (not the engine files).
    pub fn parse(text: &str, dir: &Path) -> Result<Self, FeatureError> {
        let m: Manifest = serde_json::from_str(text)
            .map_err(|e| invalid(dir, format!("bad manifest.json: {e}")))?;
        if m.format != MANIFEST_FORMAT || m.model != NAME {
            return Err(invalid(
                dir,
                format!(
                    "manifest is model '{}' format {}, expected '{NAME}' format {MANIFEST_FORMAT}",
                    m.model, m.format
                ),
            ));
        }
        let (h, w) = (m.input.height, m.input.width);
        if h == 0 || w == 0 || h % 32 != 0 || w % 32 != 0 {
            return Err(invalid(
                dir,
                format!("input size {h}x{w} is not a multiple of 32"),
            ));
        }
        if m.descriptor_stride != 8 || m.dift.ensemble_size == 0 || m.descriptor_dim == 0 {
            return Err(invalid(
                dir,
                "descriptor_stride must be 8, ensemble_size and descriptor_dim > 0",
            ));
        }
        let needs_dino = match m.mode.as_str() {
            "geometric" | "semantic" => true,
            "light" => false,
            other => return Err(invalid(dir, format!("unknown mode '{other}'"))),
        };
        for stage in ["dift", "fusion"] {
            if !m.stages.contains_key(stage) {
                return Err(invalid(dir, format!("stage '{stage}' missing")));
            }
        }
        if m.stages.contains_key("dinov2") != needs_dino {
            return Err(invalid(
                dir,
                format!("mode '{}' and the dinov2 stage disagree", m.mode),
            ));
        }
        let want_desc = [1, m.descriptor_dim, h / 8, w / 8];
        let desc = m.stages["fusion"]
            .outputs
            .iter()
            .find(|t| t.name == "descriptors");
        if desc.map(|t| dims(&t.shape)) != Some(Some(want_desc.to_vec())) {
            return Err(invalid(
                dir,
                format!("fusion output 'descriptors' is not {want_desc:?}"),
            ));
        }
        if m.dift.prompt_embeds.shape.len() != 3 || m.dift.prompt_embeds.shape[0] != 1 {
            return Err(invalid(dir, "prompt_embeds shape must be [1, L, C]"));
        }
        // every file the manifest names lives in the engines directory itself: no path from a manifest
        // reaches outside it
        let files = m
            .stages
            .values()
            .flat_map(|st| {
                std::iter::once(&st.file).chain(st.external_data.iter().map(|x| &x.file))
            })
            .chain(std::iter::once(&m.dift.prompt_embeds.file));
        for f in files {
            if !is_plain_file_name(f) {
                return Err(invalid(
                    dir,
                    format!("file name {f:?} is not a plain file name in the engines directory"),
                ));
            }
        }
        Ok(m)
    }

    /// Engine input size `(height, width)`.
    pub fn input_size(&self) -> (usize, usize) {
        (self.input.height, self.input.width)
    }

    /// DIFT ensemble size E.
    pub fn ensemble_size(&self) -> usize {
        self.dift.ensemble_size
    }
}

/// A single normal path component (`dift.onnx`), not empty, absolute, `.`/`..` or with a separator.
pub(super) fn is_plain_file_name(name: &str) -> bool {
    let mut parts = Path::new(name).components();
    matches!(
        (parts.next(), parts.next()),
        (Some(std::path::Component::Normal(_)), None)
    ) && !name.contains(['/', '\\'])
}

/// Fixed dimensions of a manifest shape (`None` if one is dynamic).
pub(super) fn dims(shape: &[serde_json::Value]) -> Option<Vec<usize>> {
    shape
        .iter()
        .map(|v| v.as_u64().map(|d| d as usize))
        .collect()
}

pub(super) fn sha256_file(path: &Path) -> Result<String, std::io::Error> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

pub(super) fn check_hash(dir: &Path, file: &str, want: &str) -> Result<(), FeatureError> {
    let path = dir.join(file);
    let got = sha256_file(&path).map_err(|e| invalid(dir, format!("cannot read {file}: {e}")))?;
    if got != want {
        return Err(invalid(
            dir,
            format!("{file} has sha256 {got}, manifest says {want}"),
        ));
    }
    Ok(())
}

/// Reads raw little-endian `f32` values and checks their count.
pub(super) fn read_f32_file(path: &Path, count: usize) -> Result<Vec<f32>, std::io::Error> {
    let bytes = std::fs::read(path)?;
    if bytes.len() != count * 4 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} bytes, expected {} ({count} float32)",
                bytes.len(),
                count * 4
            ),
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

pub(super) fn check_engine(
    dir: &Path,
    engine: &Engine,
    stage: &StageInfo,
) -> Result<(), FeatureError> {
    let compare = |kind: &str, specs: &[crate::runtime::TensorSpec], want: &[TensorInfo]| {
        for t in want {
            let spec = specs.iter().find(|s| s.name == t.name).ok_or_else(|| {
                invalid(
                    dir,
                    format!("{}: {kind} '{}' not in the engine", stage.file, t.name),
                )
            })?;
            let ok = spec.shape.len() == t.shape.len()
                && spec
                    .shape
                    .iter()
                    .zip(&t.shape)
                    .all(|(&have, want)| match want.as_u64() {
                        Some(d) => have == d as i64,
                        None => have < 0,
                    });
            if !ok {
                return Err(invalid(
                    dir,
                    format!(
                        "{}: {kind} '{}' is {:?}, manifest says {:?}",
                        stage.file, t.name, spec.shape, t.shape
                    ),
                ));
            }
        }
        Ok(())
    };
    compare("input", engine.inputs(), &stage.inputs)?;
    compare("output", engine.outputs(), &stage.outputs)
}
