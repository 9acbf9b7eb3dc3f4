//! `matcha bench …`: speed benchmarks that print our figures side by side with their anchors and ratios.
//!
//! * `extract`: the XFeat engine at 640×480 through our `ort` runtime vs onnxruntime-python on the same
//!   model and input, 1 and 2 threads, plus our full extraction (engine + keypoint selection + sampling).
//! * `stream`: end to end on a moving camera (each frame extracted once, matched to the previous frame,
//!   pose estimated), frames/s against the 30 Hz goal, per-stage times and peak memory.
//! * `pose`: the robust pose solver against PoseLib, OpenCV and COLMAP on general, planar, low-parallax and
//!   pure-rotation cases ([`pose`]).
//! * `pnp`: the absolute-pose (PnP) solver against PoseLib and OpenCV `solvePnPRansac` on general, heavy-outlier,
//!   few-point, far/narrow and planar cases ([`pnp`]).
//! * `bundle`: the windowed bundle adjustment (hand-written Schur-complement LM) against tiny-solver's
//!   Levenberg–Marquardt on the same synthetic monocular windows ([`bundle`]; the tiny-solver rows need the
//!   `solver-bench` feature).

mod bundle;
mod place_index;
mod pnp;
mod pose;
mod track;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use ndarray::Array4;

use matcha::config::MatchaConfig;
use matcha::features::xfeat::{Precision, XFeat, XFeatOptions};
use matcha::features::FeatureExtractor;
use matcha::geometry::PinholeCamera;
use matcha::pipeline::Pipeline;
use matcha::runtime::{Engine, RuntimeConfig};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// XFeat at 640×480: our runtime vs onnxruntime-python, 1 and 2 threads.
    Extract {
        /// Timed runs per configuration (after 20 warm-up runs).
        #[arg(long, default_value_t = 30)]
        runs: usize,
        /// Python interpreter with onnxruntime (default: $MATCHA_VENV/bin/python).
        #[arg(long)]
        python: Option<PathBuf>,
        /// Photo to use (resized to 640×480); default $MATCHA_CACHE/data/graf1.png.
        #[arg(long)]
        photo: Option<PathBuf>,
    },
    /// End-to-end stream at 640×480 with the configured pipeline.
    Stream {
        /// Number of frames.
        #[arg(long, default_value_t = 300)]
        frames: usize,
        /// Photo the moving camera looks at; default $MATCHA_CACHE/data/graf1.png.
        #[arg(long)]
        photo: Option<PathBuf>,
    },
    /// The pose solver on synthetic cases (general, dominant plane, low parallax, pure rotation) vs
    /// PoseLib, OpenCV and COLMAP (alternating passes; kornia-3d with the `kornia-bench` feature).
    Pose {
        /// Synthetic instances.
        #[arg(long, default_value_t = 20)]
        instances: usize,
        /// Alternating passes (ours | Python).
        #[arg(long, default_value_t = 5)]
        passes: usize,
        /// Python interpreter with poselib and opencv (default: $MATCHA_VENV/bin/python).
        #[arg(long)]
        python: Option<PathBuf>,
    },
    /// The absolute-pose (PnP) solver on synthetic cases vs PoseLib and OpenCV solvePnPRansac (alternating
    /// passes).
    Pnp {
        /// Synthetic instances per case.
        #[arg(long, default_value_t = 20)]
        instances: usize,
        /// Alternating passes (ours | Python).
        #[arg(long, default_value_t = 3)]
        passes: usize,
        /// Python interpreter with poselib and opencv (default: $MATCHA_VENV/bin/python).
        #[arg(long)]
        python: Option<PathBuf>,
    },
    /// The windowed bundle adjustment on synthetic monocular windows vs tiny-solver's Levenberg–Marquardt
    /// (the tiny-solver rows with the `solver-bench` feature).
    Bundle {
        /// Synthetic windows (6 keyframes, 1500 points each).
        #[arg(long, default_value_t = 10)]
        problems: usize,
        /// Seed of the first window (window i uses seed + i).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Iteration caps, each run on every window by both solvers.
        #[arg(long, value_delimiter = ',', default_values_t = [10, 50])]
        caps: Vec<usize>,
        /// Threads of tiny-solver's rayon pool (the hand-written solver is sequential).
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Point tracking per frame for 16/64/256 points (dense map and tracking apart) beside OpenCV's pyramidal
    /// Lucas–Kanade on the same points.
    Track {
        /// A clip folder with frames/ (tools/track_clips.py); default $MATCHA_CACHE/tracks/track_short.
        #[arg(long)]
        clip: Option<PathBuf>,
        /// Point counts.
        #[arg(long, value_delimiter = ',', default_values_t = [16usize, 64, 256])]
        points: Vec<usize>,
        /// Python interpreter with OpenCV (default: $MATCHA_VENV/bin/python).
        #[arg(long)]
        python: Option<PathBuf>,
    },
    /// Place retrieval at map scale: HNSW vs the exact scan (query time, recall, build, memory, load).
    PlaceIndex {
        /// Keyframes in the synthetic map.
        #[arg(long, default_value_t = 100_000)]
        keyframes: usize,
        /// Place vector dimension (4096: VLAD with the shipped 64-word vocabulary of 64-D descriptors).
        #[arg(long, default_value_t = 4096)]
        dim: usize,
        /// Queries timed.
        #[arg(long, default_value_t = 200)]
        queries: usize,
    },
}

fn cache_dir() -> PathBuf {
    std::env::var_os("MATCHA_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/matcha")))
        .unwrap_or_else(|| PathBuf::from(".cache/matcha"))
}

fn default_photo(p: &Option<PathBuf>) -> PathBuf {
    p.clone()
        .unwrap_or_else(|| cache_dir().join("data/graf1.png"))
}

fn median_p90(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let q = |f: f64| v[((v.len() - 1) as f64 * f).round() as usize];
    (q(0.5), q(0.9))
}

pub fn run(cfg: &MatchaConfig, cmd: &BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Extract {
            runs,
            python,
            photo,
        } => bench_extract(cfg, *runs, python.clone(), &default_photo(photo)),
        BenchCommand::Stream { frames, photo } => bench_stream(cfg, *frames, &default_photo(photo)),
        BenchCommand::Pose {
            instances,
            passes,
            python,
        } => pose::run(*instances, *passes, venv_python(python.clone())),
        BenchCommand::Pnp {
            instances,
            passes,
            python,
        } => pnp::run(*instances, *passes, venv_python(python.clone())),
        BenchCommand::Bundle {
            problems,
            seed,
            caps,
            threads,
        } => bundle::run(*problems, *seed, caps, *threads),
        BenchCommand::PlaceIndex {
            keyframes,
            dim,
            queries,
        } => place_index::run(*keyframes, *dim, *queries, &cfg.map.index),
        BenchCommand::Track {
            clip,
            points,
            python,
        } => track::run(
            cfg,
            &clip
                .clone()
                .unwrap_or_else(|| cache_dir().join("tracks/track_short")),
            points,
            venv_python(python.clone()),
        ),
    }
}

/// The given interpreter, or `$MATCHA_VENV/bin/python` (default: the cache's venv).
fn venv_python(python: Option<PathBuf>) -> PathBuf {
    python.unwrap_or_else(|| {
        std::env::var_os("MATCHA_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| cache_dir().join("venv"))
            .join("bin/python")
    })
}

fn photo_640x480(path: &Path) -> Result<matcha::image::RgbImage> {
    let img =
        matcha::image::load(path).with_context(|| format!("bench photo {}", path.display()))?;
    Ok(::image::imageops::resize(
        &img,
        640,
        480,
        ::image::imageops::FilterType::Triangle,
    ))
}

/// Timed runs of onnxruntime-python on the same model and input (after its own 20 warm-ups), milliseconds.
fn python_anchor(
    python: &Path,
    model: &Path,
    input: &Path,
    threads: usize,
    spin_wait: bool,
    runs: usize,
) -> Result<Vec<f64>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/bench_ort_python.py");
    let out = Command::new(python)
        .arg(&script)
        .args(["--model".as_ref(), model.as_os_str()])
        .args(["--input".as_ref(), input.as_os_str()])
        .args([
            "--threads",
            &threads.to_string(),
            "--runs",
            &runs.to_string(),
            "--spin",
            if spin_wait { "1" } else { "0" },
            "--warmup",
            &WARMUP.to_string(),
        ])
        .output()
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    if !out.status.success() {
        bail!(
            "python anchor failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("python anchor output")?;
    v["times_ms"]
        .as_array()
        .context("times_ms")?
        .iter()
        .map(|t| t.as_f64().context("times_ms entry"))
        .collect()
}

/// Untimed runs before timing, ours and Python's alike (the INT8 graph needed more than 5 to settle: the
/// first timed runs came out up to 1.6× slower than later ones).
const WARMUP: usize = 20;

fn bench_extract(
    cfg: &MatchaConfig,
    runs: usize,
    python: Option<PathBuf>,
    photo: &Path,
) -> Result<()> {
    let image = photo_640x480(photo)?;
    let input: Array4<f32> = matcha::features::preprocess::rgb_tensor(&image, 1.0 / 255.0);
    let tmp = std::env::temp_dir().join(format!("matcha-bench-input-{}.f32", std::process::id()));
    let bytes: Vec<u8> = input.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&tmp, bytes)?;
    let python = python.unwrap_or_else(|| {
        std::env::var_os("MATCHA_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| cache_dir().join("venv"))
            .join("bin/python")
    });
    println!(
        "XFeat engine, 1×3×480×640, median of {runs} runs in 3 alternating rounds (ours, Python), after warm-ups (ms); photo {}; both with worker spin-wait {}",
        photo.display(),
        if cfg.runtime.spin_wait { "on" } else { "off (runtime.spin_wait)" }
    );
    println!("| engine | threads | ort-rs engine | onnxruntime-python | ratio (ours/python) | ort-rs full extraction (engine + NMS + sampling) |");
    println!("|---|---|---|---|---|---|");
    let mut variants = vec![(matcha::features::xfeat::ENGINE_FILE, Precision::Fp32)];
    let int8 = matcha::features::xfeat::ENGINE_FILE_INT8;
    if cfg.runtime.engines_dir.join(int8).is_file() {
        variants.push((int8, Precision::Int8));
    } else {
        println!("({int8} not exported: INT8 rows skipped; run scripts/setup.sh)");
    }
    for ((file, precision), threads) in variants.iter().flat_map(|v| [1usize, 2].map(|t| (*v, t))) {
        let model = cfg.runtime.engines_dir.join(file);
        let rt = RuntimeConfig {
            threads,
            ..cfg.runtime.clone()
        };
        let mut engine = Engine::load(&model, &rt)?;
        for _ in 0..WARMUP {
            engine.run_with(
                &[("image", input.view().into_dyn())],
                &["descriptors", "heatmap", "reliability"],
                |_| (),
            )?;
        }
        // Alternating rounds (ours, Python, ours, ...) so that load drift hits both runtimes alike.
        const ROUNDS: usize = 3;
        let per_round = runs.div_ceil(ROUNDS).max(1);
        let (mut times, mut py_times) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
        for _ in 0..ROUNDS {
            for _ in 0..per_round {
                let t = Instant::now();
                // outputs read in place, as onnxruntime-python returns them (no copy)
                engine.run_with(
                    &[("image", input.view().into_dyn())],
                    &["descriptors", "heatmap", "reliability"],
                    |_| (),
                )?;
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
            py_times.extend(python_anchor(
                &python,
                &model,
                &tmp,
                threads,
                cfg.runtime.spin_wait,
                per_round,
            )?);
        }
        let (ours, ours90) = median_p90(times);
        let (py, py90) = median_p90(py_times);
        let mut xfeat = XFeat::new(
            &rt,
            XFeatOptions {
                max_keypoints: cfg.engine.max_keypoints,
                detection_threshold: 0.05,
                subpixel: cfg.engine.subpixel,
                precision,
                spread: cfg.engine.spread,
            },
        )?;
        let mut full = Vec::with_capacity(runs);
        for i in 0..runs + WARMUP {
            let t = Instant::now();
            xfeat.extract(&image)?;
            if i >= WARMUP {
                full.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        let (f50, f90) = median_p90(full);
        println!(
            "| {file} | {threads} | {ours:.2} (p90 {ours90:.2}) | {py:.2} (p90 {py90:.2}) | {:.3} | {f50:.2} (p90 {f90:.2}) |",
            ours / py
        );
    }
    let _ = std::fs::remove_file(&tmp);
    Ok(())
}

/// Peak resident memory of this process (VmHWM), MiB.
fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

struct StreamRun {
    label: String,
    fps: f64,
    extract: (f64, f64),
    matching: (f64, f64),
    pose: (f64, f64),
    latency: (f64, f64),
    poses: usize,
}

fn bench_stream(cfg: &MatchaConfig, frames: usize, photo: &Path) -> Result<()> {
    if frames < 2 {
        bail!("--frames must be at least 2");
    }
    let base =
        matcha::image::load(photo).with_context(|| format!("bench photo {}", photo.display()))?;
    let base = ::image::imageops::resize(&base, 960, 720, ::image::imageops::FilterType::Triangle);
    // A camera panning over the photo: 640×480 windows moving on a smooth closed path (decoded beforehand,
    // as a camera driver would hand over raw frames).
    let seq: Vec<_> = (0..frames)
        .map(|k| {
            let a = k as f64 * 0.02;
            let x = (160.0 + 150.0 * a.sin()).round() as u32;
            let y = (120.0 + 110.0 * (1.3 * a).cos()).round() as u32;
            ::image::imageops::crop_imm(&base, x.min(320), y.min(240), 640, 480).to_image()
        })
        .collect();
    let cam = PinholeCamera::new(525.0, 525.0, 319.5, 239.5)?;
    let rss_before = peak_rss_mib().unwrap_or(0.0);
    let mut runs = Vec::new();

    // 1. Sequential: extract, match, pose one after the other with the configured threads.
    let mut pipeline = Pipeline::new(cfg)?;
    let (mut ext, mut mat, mut pose, mut total) = (vec![], vec![], vec![], vec![]);
    let mut poses = 0usize;
    let t_all = Instant::now();
    let mut prev = None;
    for frame in &seq {
        let t0 = Instant::now();
        let f = pipeline.extract(frame)?;
        ext.push(t0.elapsed().as_secs_f64() * 1e3);
        if let Some(p) = &prev {
            let r = pipeline.match_pair(p, &cam, &f, &cam)?;
            mat.push(r.match_ms);
            pose.push(r.pose_ms);
            poses += r.pose.is_ok() as usize;
        }
        total.push(t0.elapsed().as_secs_f64() * 1e3);
        prev = Some(f);
    }
    runs.push(StreamRun {
        label: format!("sequential, {} engine threads", cfg.runtime.threads),
        fps: frames as f64 / t_all.elapsed().as_secs_f64(),
        extract: median_p90(ext),
        matching: median_p90(mat),
        pose: median_p90(pose),
        latency: median_p90(total),
        poses,
    });
    drop(pipeline);

    // 2. Two-stage (Pipeline::process_stream): extraction of frame k+1 overlaps matching and pose of frame k
    //    (the matcher gets one thread); with one engine thread the stages split the two cores, with two the
    //    engine also takes the time the match+pose stage leaves idle.
    for engine_threads in [1usize, 2] {
        let mut cfg1 = cfg.clone();
        cfg1.runtime.threads = engine_threads;
        let mut pipeline = Pipeline::new(&cfg1)?;
        let (mut ext, mut mat, mut pose, mut lat) = (vec![], vec![], vec![], vec![]);
        let mut poses = 0usize;
        let mut failure = None;
        let t_all = Instant::now();
        pipeline.process_stream(seq.iter().cloned(), &cam, |step| {
            ext.push(step.extract_ms);
            match step.pair {
                Some(Ok(r)) => {
                    mat.push(r.match_ms);
                    pose.push(r.pose_ms);
                    lat.push(step.extract_ms + r.match_ms + r.pose_ms);
                    poses += r.pose.is_ok() as usize;
                }
                Some(Err(e)) => failure = Some(e.to_string()),
                None => {}
            }
            if let Err(e) = step.features {
                failure = Some(e.to_string());
            }
        });
        if let Some(e) = failure {
            bail!("stream failed: {e}");
        }
        runs.push(StreamRun {
            label: format!("two-stage (extract ∥ match+pose), {engine_threads} engine thread(s)"),
            fps: frames as f64 / t_all.elapsed().as_secs_f64(),
            extract: median_p90(ext),
            matching: median_p90(mat),
            pose: median_p90(pose),
            latency: median_p90(lat),
            poses,
        });
    }

    println!(
        "End-to-end stream, {frames} frames 640×480 (camera panning over {}), {} + {}, at most {} keypoints",
        photo.display(),
        cfg.engine.extractor_name(),
        cfg.matcher.matcher_name(),
        cfg.engine.max_keypoints
    );
    println!("| mode | frames/s | goal | ratio | extract ms (p50/p90) | match ms | pose ms | latency ms | poses |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &runs {
        println!(
            "| {} | {:.1} | 30.0 | {:.2} | {:.1}/{:.1} | {:.1}/{:.1} | {:.1}/{:.1} | {:.1}/{:.1} | {}/{} |",
            r.label,
            r.fps,
            r.fps / 30.0,
            r.extract.0,
            r.extract.1,
            r.matching.0,
            r.matching.1,
            r.pose.0,
            r.pose.1,
            r.latency.0,
            r.latency.1,
            r.poses,
            frames - 1
        );
    }
    println!(
        "peak RSS: {:.0} MiB (before the runs: {:.0} MiB)",
        peak_rss_mib().unwrap_or(0.0),
        rss_before
    );
    Ok(())
}
