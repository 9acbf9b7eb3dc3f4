//! The `runtime` section of the configuration: [`RuntimeConfig`] (providers in order of preference, threads,
//! engines directory, library path) and [`TensorRtOptions`].
//!
//! What it does not do: check that a provider can run (that happens when an engine is loaded, `providers.rs`)
//! or find the library (`library.rs`). Plain serde structs, so the defaults live in one place.

use std::path::PathBuf;

use super::Provider;

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
