//! Engine sessions: loading the ONNX Runtime shared library, choosing execution providers (TensorRT → CUDA →
//! CPU), thread counts, the TensorRT engine/timing cache, and running a model on `f32` tensors with shape
//! checks.
//!
//! The rest of the crate sees [`Engine`] (named inputs in, named outputs out, as `ndarray` arrays) and
//! [`RuntimeConfig`]; no `ort` type leaks out of this module. The shared library is loaded at run time
//! (`ort`'s `load-dynamic`): from [`RuntimeConfig::onnxruntime_library`], else `ORT_DYLIB_PATH`, else the
//! default install location of `scripts/setup.sh`. GPU providers are compiled in with the cargo features
//! `cuda` / `tensorrt`; when a provider is listed but unavailable at run time, ONNX Runtime falls back to the
//! next one and we log which providers are active.
//!
//! This module knows nothing about features, matching or ROS.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use ort::session::Session;
use ort::value::{Tensor, ValueType};

/// Errors of the runtime layer. Messages name the thing and the fix.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    /// libonnxruntime could not be loaded or has the wrong version.
    #[error("cannot load ONNX Runtime library {path}: {reason}. Run `scripts/setup.sh` (it extracts the library from the PyPI onnxruntime wheel) or set ORT_DYLIB_PATH to libonnxruntime.so >= 1.31")]
    Library {
        /// Library path tried.
        path: String,
        /// Loader message.
        reason: String,
    },
    /// The model file does not exist.
    #[error("model file {path} not found: run `scripts/setup.sh` to export the engines (or set engine.engines_dir)")]
    ModelMissing {
        /// Path tried.
        path: String,
    },
    /// The model file exists but ONNX Runtime refuses it.
    #[error("cannot load model {path}: {reason} (file corrupt or truncated? re-run `scripts/setup.sh`)")]
    ModelInvalid {
        /// Model path.
        path: String,
        /// ONNX Runtime's message.
        reason: String,
    },
    /// Input tensor does not fit the model's declared input.
    #[error("engine {engine}: input '{input}' has shape {given:?}, model expects {expected:?} (-1 = any)")]
    InputShape {
        /// Engine name.
        engine: String,
        /// Input name.
        input: String,
        /// Shape given.
        given: Vec<usize>,
        /// Shape declared by the model.
        expected: Vec<i64>,
    },
    /// An input or output name the model does not have.
    #[error("engine {engine}: no {kind} named '{name}' (model has {available:?})")]
    UnknownName {
        /// Engine name.
        engine: String,
        /// "input" or "output".
        kind: &'static str,
        /// Name asked for.
        name: String,
        /// Names the model declares.
        available: Vec<String>,
    },
    /// Inference failed.
    #[error("engine {engine}: inference failed: {reason}")]
    Inference {
        /// Engine name.
        engine: String,
        /// ONNX Runtime's message.
        reason: String,
    },
    /// Configuration error (unknown provider, ...).
    #[error("runtime configuration: {0}")]
    Config(String),
}

/// An execution provider, in the order they are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// NVIDIA TensorRT (needs the `tensorrt` cargo feature and TensorRT 10 at run time).
    Tensorrt,
    /// NVIDIA CUDA (needs the `cuda` cargo feature and the CUDA provider library at run time).
    Cuda,
    /// ONNX Runtime's CPU provider (always available).
    Cpu,
}

/// TensorRT options.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TensorRtOptions {
    /// Build fp16 engines.
    pub fp16: bool,
    /// Builder workspace limit, MiB.
    pub workspace_mib: usize,
    /// Directory of the engine and timing caches; relative paths are relative to the engines directory.
    pub cache_dir: PathBuf,
    /// Use a DLA core (Jetson), if set.
    pub dla_core: Option<u32>,
}

impl Default for TensorRtOptions {
    fn default() -> Self {
        Self {
            fp16: true,
            workspace_mib: 2048,
            cache_dir: PathBuf::from("trt-cache"),
            dla_core: None,
        }
    }
}

/// How engines are run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Execution providers in order of preference; CPU is always the last resort.
    pub providers: Vec<Provider>,
    /// Intra-op threads for the CPU provider (0 = ONNX Runtime's default: one per core).
    pub threads: usize,
    /// Directory holding the exported `.onnx` engines and `manifest.json`.
    pub engines_dir: PathBuf,
    /// Path of `libonnxruntime.so`; empty = `ORT_DYLIB_PATH` or the setup script's default location.
    pub onnxruntime_library: PathBuf,
    /// TensorRT options.
    pub tensorrt: TensorRtOptions,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            providers: vec![Provider::Tensorrt, Provider::Cuda, Provider::Cpu],
            threads: 2,
            engines_dir: PathBuf::from("engines"),
            onnxruntime_library: PathBuf::new(),
            tensorrt: TensorRtOptions::default(),
        }
    }
}

/// Version of libonnxruntime `scripts/setup.sh` installs.
pub const ONNXRUNTIME_VERSION: &str = "1.32.0";

/// The library path used when neither the config nor `ORT_DYLIB_PATH` names one:
/// `$MATCHA_CACHE/onnxruntime/<version>/libonnxruntime.so.<version>` (`MATCHA_CACHE` defaults to
/// `~/.cache/matcha`), where `scripts/setup.sh` puts it.
pub fn default_library_path() -> PathBuf {
    let cache = std::env::var_os("MATCHA_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/matcha")))
        .unwrap_or_else(|| PathBuf::from(".cache/matcha"));
    cache
        .join("onnxruntime")
        .join(ONNXRUNTIME_VERSION)
        .join(format!("libonnxruntime.so.{ONNXRUNTIME_VERSION}"))
}

fn resolve_library(config: &RuntimeConfig) -> PathBuf {
    if !config.onnxruntime_library.as_os_str().is_empty() {
        return config.onnxruntime_library.clone();
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return PathBuf::from(p);
    }
    default_library_path()
}

static ENVIRONMENT: OnceLock<Result<ort::environment::Environment, RuntimeError>> = OnceLock::new();

/// Loads libonnxruntime once per process and creates the global environment. Later calls return the
/// first result (the library cannot be swapped within a process).
fn environment(config: &RuntimeConfig) -> Result<&'static ort::environment::Environment, RuntimeError> {
    ENVIRONMENT
        .get_or_init(|| {
            let path = resolve_library(config);
            let shown = path.display().to_string();
            if !path.exists() {
                return Err(RuntimeError::Library {
                    path: shown,
                    reason: "file does not exist".into(),
                });
            }
            let builder = ort::init_from(&path).map_err(|e| RuntimeError::Library {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
            builder.with_name("matcha").build().map_err(|e| RuntimeError::Library {
                path: shown,
                reason: e.to_string(),
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn execution_providers(config: &RuntimeConfig) -> Result<Vec<ort::ep::ExecutionProviderDispatch>, RuntimeError> {
    let mut eps = Vec::new();
    for p in &config.providers {
        match p {
            Provider::Tensorrt => {
                #[cfg(feature = "tensorrt")]
                {
                    let trt = &config.tensorrt;
                    let cache = if trt.cache_dir.is_absolute() {
                        trt.cache_dir.clone()
                    } else {
                        config.engines_dir.join(&trt.cache_dir)
                    };
                    if let Err(e) = std::fs::create_dir_all(&cache) {
                        log::warn!("cannot create TensorRT cache dir {}: {e}", cache.display());
                    }
                    let cache_str = cache.display().to_string();
                    let mut ep = ort::ep::TensorRT::default()
                        .with_fp16(trt.fp16)
                        .with_max_workspace_size(trt.workspace_mib.saturating_mul(1 << 20))
                        .with_engine_cache(true)
                        .with_engine_cache_path(&cache_str)
                        .with_timing_cache(true)
                        .with_timing_cache_path(&cache_str);
                    if let Some(core) = trt.dla_core {
                        ep = ep.with_dla(true).with_dla_core(core);
                    }
                    eps.push(ep.build());
                }
                #[cfg(not(feature = "tensorrt"))]
                log::debug!("provider 'tensorrt' listed but this build lacks the `tensorrt` feature; skipped");
            }
            Provider::Cuda => {
                #[cfg(feature = "cuda")]
                eps.push(ort::ep::CUDA::default().build());
                #[cfg(not(feature = "cuda"))]
                log::debug!("provider 'cuda' listed but this build lacks the `cuda` feature; skipped");
            }
            Provider::Cpu => eps.push(ort::ep::CPU::default().build()),
        }
    }
    if eps.is_empty() {
        return Err(RuntimeError::Config(
            "no usable execution provider in `providers` (add \"cpu\")".into(),
        ));
    }
    Ok(eps)
}

/// Declared input or output of an engine.
#[derive(Debug, Clone)]
pub struct TensorSpec {
    /// Name in the graph.
    pub name: String,
    /// Declared shape, -1 for dynamic dimensions (empty if not a tensor).
    pub shape: Vec<i64>,
}

/// One loaded ONNX model ready to run.
pub struct Engine {
    name: String,
    session: Session,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("name", &self.name)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish()
    }
}

fn specs(outlets: &[ort::value::Outlet]) -> Vec<TensorSpec> {
    outlets
        .iter()
        .map(|o| TensorSpec {
            name: o.name().to_string(),
            shape: match o.dtype() {
                ValueType::Tensor { shape, .. } => shape.iter().copied().collect(),
                _ => Vec::new(),
            },
        })
        .collect()
}

impl Engine {
    /// Loads `path` with the providers and threads of `config`.
    pub fn load(path: &Path, config: &RuntimeConfig) -> Result<Self, RuntimeError> {
        let shown = path.display().to_string();
        if !path.is_file() {
            return Err(RuntimeError::ModelMissing { path: shown });
        }
        let env = environment(config)?;
        let invalid = |reason: String| RuntimeError::ModelInvalid {
            path: shown.clone(),
            reason,
        };
        let mut builder = Session::builder(env).map_err(|e| invalid(e.to_string()))?;
        builder = builder
            .with_execution_providers(execution_providers(config)?)
            .map_err(|e| invalid(e.to_string()))?;
        if config.threads > 0 {
            builder = builder
                .with_intra_threads(config.threads)
                .map_err(|e| invalid(e.to_string()))?;
        }
        builder = builder.with_inter_threads(1).map_err(|e| invalid(e.to_string()))?;
        let session = builder.commit_from_file(path).map_err(|e| invalid(e.to_string()))?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| shown.clone());
        let inputs = specs(session.inputs());
        let outputs = specs(session.outputs());
        log::info!(
            "engine {name} loaded from {shown}: inputs {:?}, outputs {:?}",
            inputs.iter().map(|s| (&s.name, &s.shape)).collect::<Vec<_>>(),
            outputs.iter().map(|s| (&s.name, &s.shape)).collect::<Vec<_>>()
        );
        Ok(Self {
            name,
            session,
            inputs,
            outputs,
        })
    }

    /// Engine name (the model file's stem).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Declared inputs.
    pub fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    /// Declared outputs.
    pub fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn check_input(&self, name: &str, shape: &[usize]) -> Result<(), RuntimeError> {
        let spec = self.inputs.iter().find(|s| s.name == name).ok_or_else(|| RuntimeError::UnknownName {
            engine: self.name.clone(),
            kind: "input",
            name: name.to_string(),
            available: self.inputs.iter().map(|s| s.name.clone()).collect(),
        })?;
        let fits = spec.shape.len() == shape.len()
            && spec
                .shape
                .iter()
                .zip(shape)
                .all(|(&want, &have)| want < 0 || want as usize == have);
        if !fits || shape.contains(&0) {
            return Err(RuntimeError::InputShape {
                engine: self.name.clone(),
                input: name.to_string(),
                given: shape.to_vec(),
                expected: spec.shape.clone(),
            });
        }
        Ok(())
    }

    /// Runs the engine on named `f32` inputs and returns the requested outputs (`f32`), in the order asked.
    pub fn run(
        &mut self,
        inputs: &[(&str, ArrayViewD<'_, f32>)],
        output_names: &[&str],
    ) -> Result<Vec<ArrayD<f32>>, RuntimeError> {
        for (name, arr) in inputs {
            self.check_input(name, arr.shape())?;
        }
        for name in output_names {
            if !self.outputs.iter().any(|s| s.name == *name) {
                return Err(RuntimeError::UnknownName {
                    engine: self.name.clone(),
                    kind: "output",
                    name: name.to_string(),
                    available: self.outputs.iter().map(|s| s.name.clone()).collect(),
                });
            }
        }
        let engine = self.name.clone();
        let fail = |reason: String| RuntimeError::Inference {
            engine: engine.clone(),
            reason,
        };
        let mut values = Vec::with_capacity(inputs.len());
        for (name, arr) in inputs {
            let owned = arr.as_standard_layout().into_owned();
            let shape: Vec<usize> = owned.shape().to_vec();
            let data = owned.into_raw_vec_and_offset().0;
            let tensor = Tensor::from_array((shape, data)).map_err(|e| fail(e.to_string()))?;
            values.push((name.to_string(), tensor.into_dyn()));
        }
        let outputs = self.session.run(values).map_err(|e| fail(e.to_string()))?;
        let mut result = Vec::with_capacity(output_names.len());
        for name in output_names {
            let value = outputs
                .get(*name)
                .ok_or_else(|| fail(format!("output '{name}' missing from the results")))?;
            let (shape, data) = value.try_extract_tensor::<f32>().map_err(|e| fail(e.to_string()))?;
            let dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
            let arr = ArrayD::from_shape_vec(IxDyn(&dims), data.to_vec()).map_err(|e| fail(e.to_string()))?;
            result.push(arr);
        }
        Ok(result)
    }
}
