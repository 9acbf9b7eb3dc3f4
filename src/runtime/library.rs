//! Finding and loading the ONNX Runtime shared library (`ort`'s `load-dynamic`): from
//! [`RuntimeConfig::onnxruntime_library`], else `ORT_DYLIB_PATH`, else [`default_library_path`] (where
//! `scripts/setup.sh` installs it), once per process, with the global `ort` environment.
//!
//! What it does not do: download or check the library's providers (`providers.rs` asks it per provider).
//! Why once per process: a loaded libonnxruntime cannot be swapped, so later calls get the first result.

use std::path::PathBuf;
use std::sync::OnceLock;

use super::{RuntimeConfig, RuntimeError};

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

pub(super) fn resolve_library(config: &RuntimeConfig) -> PathBuf {
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
pub(super) fn environment(
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
