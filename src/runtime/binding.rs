//! IO binding: [`Engine::run_bound`] binds each output to the engine's device or to host memory
//! ([`Placement`]) and takes inputs as host arrays or as [`BoundTensor`]s from another engine
//! ([`BoundInput`]), which stay on the device; [`Engine::bind_constant`] binds an unchanging input once.
//!
//! What it does not do: decide the device (the active providers do, `providers.rs`) or copy between devices
//! itself (ONNX Runtime does, when a tensor must come to the host). Why: a chain of engines then moves only its
//! first inputs to the device and its last outputs back.

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use ort::value::Tensor;

use super::engine::host_tensor;
use super::{Device, Engine, RuntimeError};

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

impl Engine {
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
}
