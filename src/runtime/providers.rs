//! Execution providers (TensorRT → CUDA → CPU): [`Provider`], what became of each at load
//! ([`ProviderStatus`]), where the engine's tensors live ([`Device`]), and the session creation that registers
//! the configured providers one by one, records which took and retries on the CPU when a GPU provider makes
//! session creation fail (the module documentation of [`crate::runtime`] lists the reasons a provider is
//! skipped).
//!
//! What it does not do: run a session ([`Engine`](super::Engine)) or load the library (`library.rs`). Why
//! registered by hand rather than through `ort`'s provider list: so we know which provider took and why
//! the others did not, and can say so to the user.

use std::path::Path;

use ort::session::Session;

use super::library::{environment, resolve_library};
use super::{RuntimeConfig, RuntimeError};

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
pub(super) fn build_session(
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
pub(super) fn summarize(statuses: &[ProviderStatus]) -> String {
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
pub(super) fn active_of(statuses: &[ProviderStatus]) -> Vec<Provider> {
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

pub(super) fn device_of(statuses: &[ProviderStatus]) -> Device {
    if statuses.iter().any(|s| s.active && s.provider.is_gpu()) {
        Device::Cuda {
            device_id: CUDA_DEVICE_ID,
        }
    } else {
        Device::Cpu
    }
}
