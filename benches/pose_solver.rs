//! Relative-pose benchmark: ours vs PoseLib and OpenCV (through `tools/pose_reference.py`) on the same
//! synthetic sets (see `matcha::geometry::bench`).
//!
//! `cargo bench --bench pose_solver` — environment: `MATCHA_PYTHON` (a Python with poselib + opencv; default
//! `${MATCHA_CACHE:-$HOME/.cache/matcha}/venv/bin/python`; the reference rows are skipped when it is missing),
//! `POSE_BENCH_INSTANCES`, `POSE_BENCH_REPS` (defaults 20 and 5).

use std::path::PathBuf;
use std::process::Command;

use matcha::geometry::bench::{
    format_table, generate_sets, ours, run_benchmark, write_sets_json, BenchRow, SyntheticConfig,
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
    let reps = env_usize("POSE_BENCH_REPS", 5);
    let sets = generate_sets(&cfg);
    let opts = RansacOptions {
        threshold_px: 1.0,
        ..Default::default()
    };

    let mut methods: Vec<(String, matcha::geometry::bench::Method<'_>)> =
        vec![("matcha (ours)".into(), ours(opts))];
    let mut rows = run_benchmark(&sets, reps, &mut methods);

    let py = python();
    if py.exists() {
        let dir = std::env::temp_dir().join(format!("matcha_pose_bench_{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let sets_path = dir.join("sets.json");
        let out_path = dir.join("out.json");
        write_sets_json(&sets_path, &sets, 1.0, reps).expect("write sets");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/pose_reference.py");
        let status = Command::new(&py)
            .arg(script)
            .arg("bench")
            .arg(&sets_path)
            .arg(&out_path)
            .status();
        match status {
            Ok(s) if s.success() => {
                let v: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&out_path).expect("read")).expect("json");
                let ext: Vec<BenchRow> = serde_json::from_value(v["rows"].clone()).expect("rows");
                rows.extend(ext);
            }
            other => eprintln!("reference script failed: {other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!(
            "no Python at {} (set MATCHA_PYTHON): reference rows skipped",
            py.display()
        );
    }
    println!(
        "{} instances × {} repetitions, N = {}, outliers {:.0}%, noise {} px, threshold 1 px\n",
        cfg.instances,
        reps,
        cfg.num_points,
        cfg.outlier_ratio * 100.0,
        cfg.noise_px
    );
    println!("{}", format_table(&rows, "PoseLib (defaults)"));
}
