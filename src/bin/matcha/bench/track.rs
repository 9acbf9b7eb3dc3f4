//! `matcha bench track`: point tracking speed per frame for 16, 64 and 256 points on a clip (the dense
//! descriptor map and the tracking apart), beside OpenCV's pyramidal Lucas–Kanade on the same points
//! (`tools/track_baselines.py`, the anchor: what a robotics engineer would run instead), in one run.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use matcha::config::MatchaConfig;
use matcha::track::Query;

use crate::track::{frame_paths, run_tracker, Method};

/// `n` queries on frame 0: a jittered grid over the image (deterministic).
fn grid_queries(n: usize, size: [u32; 2]) -> Vec<Query> {
    let side = (n as f64).sqrt().ceil() as usize;
    let (w, h) = (size[0] as f32, size[1] as f32);
    (0..n)
        .map(|i| {
            let (c, r) = (i % side, i / side);
            Query {
                frame: 0,
                x: 24.0 + (w - 48.0) * (c as f32 + 0.5) / side as f32,
                y: 24.0 + (h - 48.0) * (r as f32 + 0.5) / side as f32,
            }
        })
        .collect()
}

/// Seconds per frame of OpenCV's LK alone, as the Python baseline records it in its output
/// (`seconds_per_frame_lk`).
fn lk_seconds_per_frame(python: &Path, frames: &Path, queries: &Path, out: &Path) -> Result<f64> {
    let o = Command::new(python)
        .args(["tools/track_baselines.py", "--frames"])
        .arg(frames)
        .arg("--queries")
        .arg(queries)
        .arg("--out")
        .arg(out)
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !o.status.success() {
        bail!(
            "tools/track_baselines.py failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out)?)?;
    v.get("seconds_per_frame_lk")
        .and_then(serde_json::Value::as_f64)
        .ok_or_else(|| anyhow::anyhow!("{}: no seconds_per_frame_lk", out.display()))
}

pub fn run(cfg: &MatchaConfig, clip: &Path, points: &[usize], python: PathBuf) -> Result<()> {
    let frames_dir = clip.join("frames");
    let frames = frame_paths(&frames_dir)?;
    let d = image::image_dimensions(&frames[0]).with_context(|| frames[0].display().to_string())?;
    let mut extractor = matcha::pipeline::build_extractor(cfg)?;
    let tmp = std::env::temp_dir().join(format!("matcha-bench-track-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    println!(
        "point tracking, {} frames of {} ({}x{}), {} threads; ms per frame",
        frames.len(),
        clip.display(),
        d.0,
        d.1,
        cfg.runtime.threads
    );
    println!(
        "| points | dense map ({}) | tracking | ours total | OpenCV LK (anchor) |",
        extractor.name()
    );
    println!("|---|---|---|---|---|");
    for &n in points {
        let queries = grid_queries(n, [d.0, d.1]);
        let qpath = tmp.join(format!("queries-{n}.json"));
        std::fs::write(&qpath, serde_json::to_string(&queries)?)?;
        let (_, t) = run_tracker(cfg, extractor.as_mut(), &frames, &queries, Method::Tracker)?;
        let per = |s: f64| 1e3 * s / t.frames.max(1) as f64;
        let lk = lk_seconds_per_frame(&python, &frames_dir, &qpath, &tmp.join("lk.json"))
            .map(|s| format!("{:.1}", 1e3 * s))
            .unwrap_or_else(|e| format!("n/a ({e:#})"));
        println!(
            "| {n} | {:.1} | {:.1} | {:.1} | {lk} |",
            per(t.dense_s),
            per(t.track_s),
            per(t.dense_s + t.track_s)
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
