//! [`Engine`]: one loaded ONNX model with its declared inputs and outputs ([`TensorSpec`]), shape-checked,
//! run on host `f32` arrays ([`Engine::run`], [`Engine::run_with`] without copying the outputs).
//!
//! What it does not do: choose providers (`providers.rs`) or keep tensors on the device between engines (the
//! IO binding methods of the same type are in `binding.rs`). Why shape checks here: a wrong input shape is
//! reported with the engine's and input's names instead of ONNX Runtime's kernel message.

use std::path::Path;

use ndarray::{ArrayD, ArrayViewD};
use ort::session::Session;
use ort::value::{Tensor, ValueType};

use super::providers::{active_of, build_session, device_of, summarize};
use super::{Device, Provider, ProviderStatus, RuntimeConfig, RuntimeError};

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
    pub(super) name: String,
    pub(super) session: Session,
    pub(super) inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    providers: Vec<ProviderStatus>,
    pub(super) device: Device,
    /// IO binding of [`Engine::run_bound`], made at first use; holds the constants between runs.
    pub(super) binding: Option<ort::session::IoBinding>,
    /// Inputs bound once by [`Engine::bind_constant`].
    pub(super) constants: Vec<String>,
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

pub(super) fn host_tensor(arr: &ArrayViewD<'_, f32>) -> ort::Result<Tensor<f32>> {
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

    pub(super) fn check_input(&self, name: &str, shape: &[usize]) -> Result<(), RuntimeError> {
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

    pub(super) fn check_output(&self, name: &str) -> Result<(), RuntimeError> {
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
