//! Shared helpers of the integration tests: where the engines, the ONNX Runtime library, the real test
//! photos and the Python references are. All of them are produced by `scripts/setup.sh` into
//! `$MATCHA_CACHE` (default `~/.cache/matcha`); a test that needs one and cannot find it FAILS with a message
//! saying so (tests are never skipped silently).
// The GPU binary uses a few of these helpers only.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use matcha::image::RgbImage;
use matcha::runtime::{Provider, RuntimeConfig};
use ndarray::Array3;
use ndarray_npy::read_npy;

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

/// The tiny random-initialised MATCHA fixture of `mode` (`tools/export_matcha.py --fixtures`).
pub fn matcha_fixture(mode: &str) -> PathBuf {
    let dir = cache_dir().join(format!("matcha-fixtures/tiny-{mode}"));
    assert!(
        dir.join("manifest.json").exists(),
        "{} is missing: run `$MATCHA_CACHE/venv/bin/python tools/export_matcha.py --random-init --config tiny \
         --mode {mode} --height 96 --width 160 --fixtures`",
        dir.display()
    );
    dir
}

/// The photo a MATCHA fixture was computed on (`ref/image_u8.npy`, H × W × 3).
pub fn matcha_reference_image(dir: &Path) -> RgbImage {
    let px: Array3<u8> = read_npy(dir.join("ref/image_u8.npy")).unwrap();
    let (h, w, _) = px.dim();
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let (x, y) = (x as usize, y as usize);
        image::Rgb([px[[y, x, 0]], px[[y, x, 1]], px[[y, x, 2]]])
    })
}

/// Runs the `matcha` binary with the test engines and one engine thread, then `args`.
pub fn run_matcha(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_matcha"))
        .args([
            "--engines",
            engines_dir().to_str().unwrap(),
            "--threads",
            "1",
        ])
        .args(args)
        .output()
        .expect("matcha runs")
}
