//! Shared helpers of the integration tests: where the engines, the ONNX Runtime library, the real test
//! photos and the Python references are. All of them are produced by `scripts/setup.sh` into
//! `$MATCHA_CACHE` (default `~/.cache/matcha`); a test that needs one and cannot find it FAILS with a message
//! saying so (tests are never skipped silently).
#![allow(dead_code)]

use std::path::PathBuf;

use matcha::runtime::{Provider, RuntimeConfig};

/// `$MATCHA_CACHE` or `~/.cache/matcha`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("MATCHA_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").expect("HOME must be set")).join(".cache/matcha")
        })
}

/// A file or folder under the cache that the test needs; panics with the fix when absent.
pub fn need(rel: &str) -> PathBuf {
    let p = cache_dir().join(rel);
    assert!(
        p.exists(),
        "{} is missing: run `scripts/setup.sh` first (it exports the engines and writes the references)",
        p.display()
    );
    p
}

/// Engines directory: `$MATCHA_ENGINES`, else `$MATCHA_CACHE/engines`.
pub fn engines_dir() -> PathBuf {
    std::env::var_os("MATCHA_ENGINES")
        .map(PathBuf::from)
        .unwrap_or_else(|| need("engines"))
}

/// CPU runtime with one intra-op thread (tests run in parallel on 2 cores).
pub fn cpu_runtime() -> RuntimeConfig {
    RuntimeConfig {
        providers: vec![Provider::Cpu],
        threads: 1,
        engines_dir: engines_dir(),
        ..RuntimeConfig::default()
    }
}

/// A real photo from `$MATCHA_CACHE/data`.
pub fn photo(name: &str) -> matcha::image::RgbImage {
    matcha::image::load(&need(&format!("data/{name}"))).expect("test photo decodes")
}
