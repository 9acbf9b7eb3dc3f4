//! Relative-pose benchmark: ours vs PoseLib and OpenCV (through `tools/pose_reference.py`) on the same
//! synthetic sets (see `matcha::geometry::bench`), and kornia-3d with `--features kornia-bench`.
//!
//! Fairness: the in-process methods (ours, kornia-3d) and the Python references run in alternating whole
//! passes (A B A B …, `POSE_BENCH_REPS` passes each), so slow load drift on a shared machine hits both; within
//! a pass the methods are interleaved per instance. The table gives each method's time and error as a ratio to
//! PoseLib (defaults) from the same run.
//!
//! `cargo bench --bench pose_solver` — environment: `MATCHA_PYTHON` (a Python with poselib + opencv; default
//! `${MATCHA_CACHE:-$HOME/.cache/matcha}/venv/bin/python`; the reference rows are skipped when it is missing),
//! `POSE_BENCH_INSTANCES`, `POSE_BENCH_REPS` (defaults 20 and 5). Also `matcha bench pose`.

use std::path::PathBuf;

use matcha::geometry::bench::{
    format_table, generate_sets, ours, run_interleaved, Method, PythonReference, SyntheticConfig,
};
use matcha::geometry::RansacOptions;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("MATCHA_PYTHON") {
        return PathBuf::from(p);
    }
    let cache = std::env::var("MATCHA_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/matcha")
        });
    cache.join("venv/bin/python")
}

fn main() {
    let cfg = SyntheticConfig {
        instances: env_usize("POSE_BENCH_INSTANCES", 20),
        ..Default::default()
    };
    let passes = env_usize("POSE_BENCH_REPS", 5);
    let sets = generate_sets(&cfg);
    let threshold_px = 1.0;
    let opts = RansacOptions {
        threshold_px,
        ..Default::default()
    };

    #[allow(unused_mut)]
    let mut methods: Vec<(String, Method<'_>)> = vec![("matcha (ours)".into(), ours(opts))];
    #[cfg(feature = "kornia-bench")]
    methods.push((
        "kornia-3d 0.1.14 ransac_essential_5pt".into(),
        matcha::geometry::bench::kornia(threshold_px, 0),
    ));

    let py = python();
    let reference = PythonReference {
        python: py.clone(),
        script: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/pose_reference.py"),
    };
    if !py.exists() {
        eprintln!(
            "no Python at {} (set MATCHA_PYTHON): reference rows skipped",
            py.display()
        );
    }
    let (rows, err) = run_interleaved(
        &sets,
        passes,
        threshold_px,
        &mut methods,
        py.exists().then_some(&reference),
    );
    if let Some(e) = err {
        eprintln!("reference rows missing: {e}");
    }
    println!(
        "{} instances × {} alternating passes (ours | Python), N = {}, outliers {:.0}%, noise {} px, threshold 1 px\n",
        cfg.instances,
        passes,
        cfg.num_points,
        cfg.outlier_ratio * 100.0,
        cfg.noise_px
    );
    println!("{}", format_table(&rows, "PoseLib (defaults)"));
}
