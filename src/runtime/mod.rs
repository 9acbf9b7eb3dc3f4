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
//!
//! Files: `error.rs` the error type; `config.rs` the `runtime` configuration; `library.rs` finding and loading
//! libonnxruntime; `providers.rs` the execution providers and session creation; `engine.rs` the engine and its
//! host-array runs; `binding.rs` the IO binding.

mod binding;
mod config;
mod engine;
mod error;
mod library;
mod providers;

pub use binding::{BoundInput, BoundTensor, Placement};
pub use config::{RuntimeConfig, TensorRtOptions};
pub use engine::{Engine, TensorSpec};
pub use error::RuntimeError;
pub use library::{default_library_path, ONNXRUNTIME_VERSION};
pub use providers::{Device, Provider, ProviderStatus, CUDA_DEVICE_ID};
