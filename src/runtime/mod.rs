//! Engine sessions: loading the ONNX Runtime shared library, choosing execution providers (TensorRT → CUDA →
//! CPU), thread counts, the TensorRT engine/timing cache, and running a model on `f32` tensors with shape
//! checks.
//!
//! The rest of the crate sees [`Engine`] (named inputs in, named outputs out, as `ndarray` arrays),
//! [`BoundTensor`] (an engine output left where the engine's provider put it) and [`RuntimeConfig`]; no `ort`
//! type leaks out of this module. The shared library is loaded at run time (`ort`'s `load-dynamic`): from
//! [`RuntimeConfig::onnxruntime_library`], else `ORT_DYLIB_PATH`, else the default install location of
//! `scripts/setup.sh`.
//!
//! # Providers
//! GPU providers are compiled in with the cargo features `cuda` / `tensorrt`. At load, each provider listed in
//! [`RuntimeConfig::providers`] is registered by hand, in order, so we know which ones took: a provider is
//! skipped (with the reason kept in [`Engine::provider_report`] and logged) when the build lacks its feature,
//! when the loaded libonnxruntime was built without it (the CPU-only PyPI wheel), when ONNX Runtime cannot load
//! its provider library (`libonnxruntime_providers_cuda.so`, or TensorRT's `libnvinfer.so.10`, not found), or
//! when creating the session with it fails (no CUDA device, driver too old): then the session is created
//! again on the CPU. [`Engine::active_providers`] and [`Engine::provider_summary`] say what runs.
//!
//! # IO binding
//! [`Engine::run`] copies its inputs in and its outputs out as host arrays. [`Engine::run_bound`] goes
//! through an ONNX Runtime IO binding instead: each output is bound either to the engine's device
//! ([`Placement::Device`]: CUDA device 0 when TensorRT or CUDA is active, host memory otherwise) or to host
//! memory ([`Placement::Host`]), and inputs may be [`BoundTensor`]s from another engine, which stay on the
//! device. Inputs that do not change between runs (a prompt embedding, a fixed noise draw) are bound once with
//! [`Engine::bind_constant`], which copies them to the device once. A chain of engines then moves only its
//! first inputs to the device and its last outputs back. On the CPU provider both paths run the same
//! kernels on the same data and give bit-identical results (tested).
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
    #[error("model file {path} not found: run `scripts/setup.sh` to export the engines (or set runtime.engines_dir / --engines)")]
    ModelMissing {
        /// Path tried.
        path: String,
    },
    /// The model file exists but ONNX Runtime refuses it.
    #[error(
        "cannot load model {path}: {reason} (file corrupt or truncated? re-run `scripts/setup.sh`)"
    )]
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
    /// Misuse of the IO binding API (missing input, constant given again, ...) or a binding ONNX Runtime
    /// refused.
    #[error("engine {engine}: IO binding: {reason}")]
    Binding {
        /// Engine name.
        engine: String,
        /// What went wrong.
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
    /// Let ONNX Runtime's intra-op worker threads spin-wait for work between runs. Off by default: the
    /// engines share the CPU with matching and the pose solver, which a spinning worker would slow down.
    pub spin_wait: bool,
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
            spin_wait: false,
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
    crate::util::paths::cache_dir()
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
fn environment(
    config: &RuntimeConfig,
) -> Result<&'static ort::environment::Environment, RuntimeError> {
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
            builder
                .with_name("matcha")
                .build()
                .map_err(|e| RuntimeError::Library {
                    path: shown,
                    reason: e.to_string(),
                })
        })
        .as_ref()
        .map_err(Clone::clone)
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Provider::Tensorrt => "TensorRT",
            Provider::Cuda => "CUDA",
            Provider::Cpu => "CPU",
        })
    }
}

impl Provider {
    /// Whether this is a GPU provider (TensorRT or CUDA).
    pub fn is_gpu(self) -> bool {
        matches!(self, Provider::Tensorrt | Provider::Cuda)
    }

    /// Whether this build can register the provider (cargo features `tensorrt` / `cuda`).
    pub fn compiled_in(self) -> bool {
        match self {
            Provider::Tensorrt => cfg!(feature = "tensorrt"),
            Provider::Cuda => cfg!(feature = "cuda"),
            Provider::Cpu => true,
        }
    }
}

/// What happened to one provider of [`RuntimeConfig::providers`] when an engine was loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderStatus {
    /// The provider.
    pub provider: Provider,
    /// Registered with the session (ONNX Runtime assigns it the graph nodes it supports).
    pub active: bool,
    /// Why it is not active (empty when active).
    pub reason: String,
}

/// Where an engine's device-resident tensors live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// Host memory (CPU provider).
    Cpu,
    /// CUDA device memory (TensorRT or CUDA provider active).
    Cuda {
        /// CUDA device ordinal.
        device_id: i32,
    },
}

/// CUDA device the GPU providers and the bound tensors use.
pub const CUDA_DEVICE_ID: i32 = 0;

/// The `ort` execution provider for `p`, or why it cannot be used in this build / with this library.
fn provider_dispatch(
    p: Provider,
    config: &RuntimeConfig,
    library: &str,
) -> Result<ort::ep::ExecutionProviderDispatch, String> {
    // `library` is only used by the GPU arms, which exist only with their features
    let _ = library;
    match p {
        Provider::Tensorrt => {
            #[cfg(feature = "tensorrt")]
            {
                use ort::ep::ExecutionProvider as _;
                match ort::ep::TensorRT::is_available() {
                    Ok(true) => {}
                    Ok(false) => {
                        return Err(format!(
                            "{library} was built without TensorrtExecutionProvider (CPU-only onnxruntime? use \
                             the library of onnxruntime-gpu, see docs/gpu.md)"
                        ))
                    }
                    Err(e) => return Err(format!("cannot query ONNX Runtime's providers: {e}")),
                }
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
                    .with_device_id(CUDA_DEVICE_ID)
                    .with_fp16(trt.fp16)
                    .with_max_workspace_size(trt.workspace_mib.saturating_mul(1 << 20))
                    .with_engine_cache(true)
                    .with_engine_cache_path(&cache_str)
                    .with_timing_cache(true)
                    .with_timing_cache_path(&cache_str);
                if let Some(core) = trt.dla_core {
                    ep = ep.with_dla(true).with_dla_core(core);
                }
                Ok(ep.build())
            }
            #[cfg(not(feature = "tensorrt"))]
            {
                let _ = config;
                Err("this build lacks the `tensorrt` cargo feature (cargo build --release --features cuda,tensorrt)".into())
            }
        }
        Provider::Cuda => {
            #[cfg(feature = "cuda")]
            {
                use ort::ep::ExecutionProvider as _;
                match ort::ep::CUDA::is_available() {
                    Ok(true) => Ok(ort::ep::CUDA::default().with_device_id(CUDA_DEVICE_ID).build()),
                    Ok(false) => Err(format!(
                        "{library} was built without CUDAExecutionProvider (CPU-only onnxruntime? use the \
                         library of onnxruntime-gpu, see docs/gpu.md)"
                    )),
                    Err(e) => Err(format!("cannot query ONNX Runtime's providers: {e}")),
                }
            }
            #[cfg(not(feature = "cuda"))]
            Err("this build lacks the `cuda` cargo feature (cargo build --release --features cuda,tensorrt)".into())
        }
        Provider::Cpu => Ok(ort::ep::CPU::default().build()),
    }
}

/// A session builder with the thread settings of `config` (no providers yet).
fn session_builder(
    env: &ort::environment::Environment,
    config: &RuntimeConfig,
) -> Result<ort::session::builder::SessionBuilder, String> {
    let mut builder = Session::builder(env).map_err(|e| e.to_string())?;
    if config.threads > 0 {
        builder = builder
            .with_intra_threads(config.threads)
            .map_err(|e| e.to_string())?;
    }
    let builder = builder.with_inter_threads(1).map_err(|e| e.to_string())?;
    builder
        .with_intra_op_spinning(config.spin_wait)
        .map_err(|e| e.to_string())
}

/// Creates the session of `path`, registering the providers of `config` one by one and recording which took
/// (see the module doc). When the session cannot be created with a GPU provider registered, it is created
/// again on the CPU.
fn build_session(
    path: &Path,
    config: &RuntimeConfig,
) -> Result<(Session, Vec<ProviderStatus>), RuntimeError> {
    let shown = path.display().to_string();
    let invalid = |reason: String| RuntimeError::ModelInvalid {
        path: shown.clone(),
        reason,
    };
    if config.providers.is_empty() {
        return Err(RuntimeError::Config(
            "no usable execution provider in `providers` (add \"cpu\")".into(),
        ));
    }
    let env = environment(config)?;
    let library = resolve_library(config).display().to_string();
    let mut statuses: Vec<ProviderStatus> = Vec::new();
    let mut dispatches = Vec::new();
    for &p in &config.providers {
        if statuses.iter().any(|s| s.provider == p) {
            continue; // listed twice: registering twice is an error in ONNX Runtime
        }
        match provider_dispatch(p, config, &library) {
            Ok(d) => {
                dispatches.push((p, d));
                statuses.push(ProviderStatus {
                    provider: p,
                    active: false,
                    reason: String::new(),
                });
            }
            Err(reason) => statuses.push(ProviderStatus {
                provider: p,
                active: false,
                reason,
            }),
        }
    }
    let mut builder = session_builder(env, config).map_err(invalid)?;
    for (p, d) in &dispatches {
        let result = d.register(&mut builder);
        if let Some(s) = statuses.iter_mut().find(|s| s.provider == *p) {
            match result {
                Ok(()) => s.active = true,
                Err(e) => {
                    let msg = e.to_string();
                    let hint = if msg.contains("cannot open shared object file") {
                        " (the provider libraries must sit next to libonnxruntime and their CUDA / cuDNN / \
                         TensorRT libraries must be found by the loader: see docs/gpu.md)"
                    } else {
                        ""
                    };
                    s.reason = format!("ONNX Runtime could not register it: {}{hint}", msg.trim());
                }
            }
        }
    }
    let first = builder.commit_from_file(path).map_err(|e| e.to_string());
    let session = match first {
        Ok(session) => session,
        Err(reason) if statuses.iter().any(|s| s.active && s.provider.is_gpu()) => {
            log::warn!("{shown}: session creation with the GPU providers failed ({reason}); retrying on the CPU");
            for s in statuses
                .iter_mut()
                .filter(|s| s.active && s.provider.is_gpu())
            {
                s.active = false;
                s.reason = format!("session creation failed with it: {reason}");
            }
            let mut builder = session_builder(env, config).map_err(invalid)?;
            if let Some((_, cpu)) = dispatches.iter().find(|(p, _)| *p == Provider::Cpu) {
                cpu.register(&mut builder)
                    .map_err(|e| invalid(e.to_string()))?;
            }
            builder
                .commit_from_file(path)
                .map_err(|e| invalid(e.to_string()))?
        }
        Err(reason) => return Err(invalid(reason)),
    };
    Ok((session, statuses))
}

/// "running on TensorRT, CUDA, CPU" / "running on CPU (CUDA requested but ...)" for `statuses`.
fn summarize(statuses: &[ProviderStatus]) -> String {
    let active = active_of(statuses);
    let names: Vec<String> = active.iter().map(|p| p.to_string()).collect();
    let mut text = format!("running on {}", names.join(", "));
    let missing: Vec<String> = statuses
        .iter()
        .filter(|s| !s.active)
        .map(|s| format!("{} requested but {}", s.provider, s.reason))
        .collect();
    if !missing.is_empty() {
        text.push_str(&format!(" ({})", missing.join("; ")));
    }
    text
}

/// Active providers in order; ONNX Runtime's CPU provider always runs what the others do not take.
fn active_of(statuses: &[ProviderStatus]) -> Vec<Provider> {
    let mut active: Vec<Provider> = statuses
        .iter()
        .filter(|s| s.active)
        .map(|s| s.provider)
        .collect();
    if !active.contains(&Provider::Cpu) {
        active.push(Provider::Cpu);
    }
    active
}

fn device_of(statuses: &[ProviderStatus]) -> Device {
    if statuses.iter().any(|s| s.active && s.provider.is_gpu()) {
        Device::Cuda {
            device_id: CUDA_DEVICE_ID,
        }
    } else {
        Device::Cpu
    }
}

/// Declared input or output of an engine.
#[derive(Debug, Clone)]
pub struct TensorSpec {
    /// Name in the graph.
    pub name: String,
    /// Declared shape, -1 for dynamic dimensions (empty if not a tensor).
    pub shape: Vec<i64>,
}

/// A tensor produced by [`Engine::run_bound`]: on the producing engine's device ([`Placement::Device`]) or
/// in host memory ([`Placement::Host`]). Pass it to another engine's [`Engine::run_bound`] as
/// [`BoundInput::Tensor`] without a copy, or bring it to the host with [`BoundTensor::to_host`].
pub struct BoundTensor {
    value: Tensor<f32>,
    shape: Vec<usize>,
}

impl std::fmt::Debug for BoundTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundTensor")
            .field("shape", &self.shape)
            .field("on_host", &self.on_host())
            .finish()
    }
}

impl BoundTensor {
    fn from_value(
        value: ort::value::DynValue,
        engine: &str,
        output: &str,
    ) -> Result<Self, RuntimeError> {
        let value = value
            .downcast::<ort::value::TensorValueType<f32>>()
            .map_err(|e| RuntimeError::Inference {
                engine: engine.to_string(),
                reason: format!("output '{output}' is not a float32 tensor: {e}"),
            })?;
        let shape = value.shape().iter().map(|&d| d.max(0) as usize).collect();
        Ok(Self { value, shape })
    }

    /// Shape of the tensor.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Whether the data is in host memory (then [`BoundTensor::to_host`] is a plain copy).
    pub fn on_host(&self) -> bool {
        self.value.memory_info().is_cpu_accessible()
    }

    /// Copies the tensor into a host array. For a tensor in device memory this is a device → host copy
    /// (through ONNX Runtime, which needs the `cuda` cargo feature); prefer asking [`Engine::run_bound`] for
    /// [`Placement::Host`] outputs, which the producing session copies itself.
    pub fn to_host(&self) -> Result<ArrayD<f32>, RuntimeError> {
        let fail = |reason: String| RuntimeError::Inference {
            engine: "device to host copy".into(),
            reason,
        };
        if self.on_host() {
            let (_, data) = self.value.extract_tensor();
            return ArrayD::from_shape_vec(IxDyn(&self.shape), data.to_vec())
                .map_err(|e| fail(e.to_string()));
        }
        let host = self
            .value
            .to(ort::memory::AllocationDevice::CPU, 0)
            .map_err(|e| fail(e.to_string()))?;
        let (_, data) = host.extract_tensor();
        ArrayD::from_shape_vec(IxDyn(&self.shape), data.to_vec()).map_err(|e| fail(e.to_string()))
    }
}

/// An input of [`Engine::run_bound`].
#[derive(Debug, Clone)]
pub enum BoundInput<'a> {
    /// A host array (copied to the engine's device when the binding is made).
    Host(ArrayViewD<'a, f32>),
    /// A tensor from an earlier [`Engine::run_bound`] (stays where it is when it is on this engine's device).
    Tensor(&'a BoundTensor),
}

/// Where [`Engine::run_bound`] leaves an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On the engine's device ([`Engine::device`]): for the next engine of a chain.
    Device,
    /// In host memory: for the caller.
    Host,
}

/// One loaded ONNX model ready to run.
pub struct Engine {
    name: String,
    session: Session,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    providers: Vec<ProviderStatus>,
    device: Device,
    /// IO binding of [`Engine::run_bound`], made at first use; holds the constants between runs.
    binding: Option<ort::session::IoBinding>,
    /// Inputs bound once by [`Engine::bind_constant`].
    constants: Vec<String>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("name", &self.name)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("providers", &self.providers)
            .field("device", &self.device)
            .field("constants", &self.constants)
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

fn memory_info(device: Device) -> ort::Result<ort::memory::MemoryInfo<'static>> {
    use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
    match device {
        Device::Cpu => MemoryInfo::new(
            AllocationDevice::CPU,
            0,
            AllocatorType::Device,
            MemoryType::CPUOutput,
        ),
        Device::Cuda { device_id } => MemoryInfo::new(
            AllocationDevice::CUDA,
            device_id,
            AllocatorType::Device,
            MemoryType::Default,
        ),
    }
}

fn host_tensor(arr: &ArrayViewD<'_, f32>) -> ort::Result<Tensor<f32>> {
    let owned = arr.as_standard_layout().into_owned();
    let shape: Vec<usize> = owned.shape().to_vec();
    let data = owned.into_raw_vec_and_offset().0;
    Tensor::from_array((shape, data))
}

impl Engine {
    /// Loads `path` with the providers and threads of `config`, and logs which providers took.
    pub fn load(path: &Path, config: &RuntimeConfig) -> Result<Self, RuntimeError> {
        let shown = path.display().to_string();
        if !path.is_file() {
            return Err(RuntimeError::ModelMissing { path: shown });
        }
        let (session, providers) = build_session(path, config)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| shown.clone());
        let inputs = specs(session.inputs());
        let outputs = specs(session.outputs());
        log::info!(
            "engine {name} loaded from {shown}: inputs {:?}, outputs {:?}",
            inputs
                .iter()
                .map(|s| (&s.name, &s.shape))
                .collect::<Vec<_>>(),
            outputs
                .iter()
                .map(|s| (&s.name, &s.shape))
                .collect::<Vec<_>>()
        );
        let summary = summarize(&providers);
        // a GPU provider this build has but that did not take is worth a warning; one the build lacks is a
        // deliberate CPU build (the default config lists TensorRT and CUDA first)
        if providers
            .iter()
            .any(|s| !s.active && s.provider.is_gpu() && s.provider.compiled_in())
        {
            log::warn!("engine {name}: {summary}");
        } else {
            log::info!("engine {name}: {summary}");
        }
        let device = device_of(&providers);
        Ok(Self {
            name,
            session,
            inputs,
            outputs,
            providers,
            device,
            binding: None,
            constants: Vec::new(),
        })
    }

    /// Providers that run this engine, in order of preference; ends with the CPU, which ONNX Runtime always
    /// keeps for the nodes the others do not take.
    pub fn active_providers(&self) -> Vec<Provider> {
        active_of(&self.providers)
    }

    /// Each provider of the configuration with whether it took, and why not.
    pub fn provider_report(&self) -> &[ProviderStatus] {
        &self.providers
    }

    /// One line for users: `running on TensorRT, CUDA, CPU` or `running on CPU (CUDA requested but ...)`.
    pub fn provider_summary(&self) -> String {
        summarize(&self.providers)
    }

    /// Where [`Placement::Device`] outputs of [`Engine::run_bound`] live.
    pub fn device(&self) -> Device {
        self.device
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
        let spec = self.inputs.iter().find(|s| s.name == name).ok_or_else(|| {
            RuntimeError::UnknownName {
                engine: self.name.clone(),
                kind: "input",
                name: name.to_string(),
                available: self.inputs.iter().map(|s| s.name.clone()).collect(),
            }
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

    fn check_output(&self, name: &str) -> Result<(), RuntimeError> {
        if self.outputs.iter().any(|s| s.name == name) {
            return Ok(());
        }
        Err(RuntimeError::UnknownName {
            engine: self.name.clone(),
            kind: "output",
            name: name.to_string(),
            available: self.outputs.iter().map(|s| s.name.clone()).collect(),
        })
    }

    fn binding_error(&self, reason: String) -> RuntimeError {
        RuntimeError::Binding {
            engine: self.name.clone(),
            reason,
        }
    }

    fn binding(&mut self) -> Result<&mut ort::session::IoBinding, RuntimeError> {
        if self.binding.is_none() {
            let b = self
                .session
                .create_binding()
                .map_err(|e| self.binding_error(format!("cannot create the IO binding: {e}")))?;
            self.binding = Some(b);
        }
        self.binding
            .as_mut()
            .ok_or_else(|| RuntimeError::Config("IO binding missing after creation".into()))
    }

    /// Binds `value` to input `name` for every later [`Engine::run_bound`] (copied to the engine's device
    /// now, once). Binding the same name again replaces the value.
    pub fn bind_constant(
        &mut self,
        name: &str,
        value: ArrayViewD<'_, f32>,
    ) -> Result<(), RuntimeError> {
        self.check_input(name, value.shape())?;
        let tensor = host_tensor(&value).map_err(|e| self.binding_error(e.to_string()))?;
        let engine = self.name.clone();
        self.binding()?
            .bind_input(name, &tensor)
            .map_err(|e| RuntimeError::Binding {
                engine,
                reason: format!("cannot bind constant '{name}': {e}"),
            })?;
        if !self.constants.iter().any(|c| c == name) {
            self.constants.push(name.to_string());
        }
        Ok(())
    }

    /// Inputs bound with [`Engine::bind_constant`].
    pub fn constants(&self) -> &[String] {
        &self.constants
    }

    /// Runs the engine through its IO binding: `inputs` (with the constants of [`Engine::bind_constant`]
    /// must cover every declared input), and each output of `outputs` left where its [`Placement`] says.
    /// Results come in the order asked. On the CPU provider the values are bit-identical to
    /// [`Engine::run`]'s.
    pub fn run_bound(
        &mut self,
        inputs: &[(&str, BoundInput<'_>)],
        outputs: &[(&str, Placement)],
    ) -> Result<Vec<BoundTensor>, RuntimeError> {
        for (name, input) in inputs {
            if self.constants.iter().any(|c| c == name) {
                return Err(self.binding_error(format!(
                    "input '{name}' is bound as a constant; rebind it with bind_constant"
                )));
            }
            let shape = match input {
                BoundInput::Host(a) => a.shape(),
                BoundInput::Tensor(t) => t.shape(),
            };
            self.check_input(name, shape)?;
        }
        let missing: Vec<String> = self
            .inputs
            .iter()
            .map(|s| s.name.clone())
            .filter(|n| !self.constants.contains(n) && !inputs.iter().any(|(given, _)| given == n))
            .collect();
        if !missing.is_empty() {
            return Err(self.binding_error(format!("inputs {missing:?} not given")));
        }
        if outputs.is_empty() {
            return Err(self.binding_error("no output asked for".into()));
        }
        for (name, _) in outputs {
            self.check_output(name)?;
        }
        let engine = self.name.clone();
        let fail = |reason: String| RuntimeError::Binding {
            engine: engine.clone(),
            reason,
        };
        let device = self.device;
        // Tensors from a GPU engine given to an engine that ended up on the CPU come to the host first.
        let mut staged: Vec<(String, Tensor<f32>)> = Vec::with_capacity(inputs.len());
        for (name, input) in inputs {
            match input {
                BoundInput::Host(a) => staged.push((
                    name.to_string(),
                    host_tensor(a).map_err(|e| fail(e.to_string()))?,
                )),
                BoundInput::Tensor(t) if device == Device::Cpu && !t.on_host() => {
                    let host = t.to_host()?;
                    staged.push((
                        name.to_string(),
                        host_tensor(&host.view()).map_err(|e| fail(e.to_string()))?,
                    ));
                }
                BoundInput::Tensor(_) => {}
            }
        }
        let device_info = memory_info(device).map_err(|e| fail(e.to_string()))?;
        let host_info = memory_info(Device::Cpu).map_err(|e| fail(e.to_string()))?;
        self.binding()?;
        let Self {
            session, binding, ..
        } = self;
        let binding = binding
            .as_mut()
            .ok_or_else(|| fail("IO binding missing".into()))?;
        for (name, input) in inputs {
            let value = match (staged.iter().find(|(n, _)| n == name), input) {
                (Some((_, t)), _) => t,
                (None, BoundInput::Tensor(t)) => &t.value,
                (None, BoundInput::Host(_)) => {
                    return Err(fail(format!("input '{name}' was not staged")));
                }
            };
            binding
                .bind_input(*name, value)
                .map_err(|e| fail(format!("cannot bind input '{name}': {e}")))?;
        }
        // fresh output buffers every run: earlier results handed out stay valid
        binding.clear_outputs();
        for (name, placement) in outputs {
            let info = match placement {
                Placement::Device => &device_info,
                Placement::Host => &host_info,
            };
            binding
                .bind_output_to_device(*name, info)
                .map_err(|e| fail(format!("cannot bind output '{name}': {e}")))?;
        }
        let mut results = session
            .run_binding(binding)
            .map_err(|e| RuntimeError::Inference {
                engine: engine.clone(),
                reason: e.to_string(),
            })?;
        let mut out = Vec::with_capacity(outputs.len());
        for (name, _) in outputs {
            let value = results
                .remove(*name)
                .ok_or_else(|| fail(format!("output '{name}' missing from the results")))?;
            out.push(BoundTensor::from_value(value, &engine, name)?);
        }
        Ok(out)
    }

    /// Runs the engine on named `f32` inputs and returns the requested outputs (`f32`), in the order asked.
    pub fn run(
        &mut self,
        inputs: &[(&str, ArrayViewD<'_, f32>)],
        output_names: &[&str],
    ) -> Result<Vec<ArrayD<f32>>, RuntimeError> {
        self.run_with(inputs, output_names, |outputs| {
            outputs.into_iter().map(|v| v.to_owned()).collect()
        })
    }

    /// Like [`Engine::run`], but hands `consume` views of the outputs where ONNX Runtime left them (no copy;
    /// the views live until `consume` returns) and returns what it returns.
    pub fn run_with<R>(
        &mut self,
        inputs: &[(&str, ArrayViewD<'_, f32>)],
        output_names: &[&str],
        consume: impl FnOnce(Vec<ArrayViewD<'_, f32>>) -> R,
    ) -> Result<R, RuntimeError> {
        for (name, arr) in inputs {
            self.check_input(name, arr.shape())?;
        }
        for name in output_names {
            self.check_output(name)?;
        }
        let engine = self.name.clone();
        let fail = |reason: String| RuntimeError::Inference {
            engine: engine.clone(),
            reason,
        };
        let mut values: Vec<(String, ort::session::SessionInputValue<'_>)> =
            Vec::with_capacity(inputs.len());
        for (name, arr) in inputs {
            // contiguous inputs are handed to ONNX Runtime in place (no copy, as onnxruntime-python does
            // with a C-contiguous numpy array); others are copied into a standard-layout tensor
            let value = if arr.is_standard_layout() {
                ort::value::TensorRef::from_array_view(arr.view())
                    .map_err(|e| fail(e.to_string()))?
                    .into()
            } else {
                host_tensor(arr).map_err(|e| fail(e.to_string()))?.into()
            };
            values.push((name.to_string(), value));
        }
        let outputs = self.session.run(values).map_err(|e| fail(e.to_string()))?;
        let mut views = Vec::with_capacity(output_names.len());
        for name in output_names {
            let value = outputs
                .get(*name)
                .ok_or_else(|| fail(format!("output '{name}' missing from the results")))?;
            views.push(
                value
                    .try_extract_array::<f32>()
                    .map_err(|e| fail(e.to_string()))?,
            );
        }
        Ok(consume(views))
    }
}
