//! [`RuntimeError`], the one error type of the runtime layer: every message names the thing that failed and
//! the fix (run `scripts/setup.sh`, set `ORT_DYLIB_PATH`, ...).
//!
//! What it does not do: wrap `ort`'s error types (their messages are kept as strings, so no `ort` type leaks
//! out of the layer and the error stays `Clone`, which the once-per-process library load needs).

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
