//! `matcha map`: build a localization map from a sequence (the odometry's keyframes, its odometry frame
//! becoming `map`), localize one image in it, and evaluate place recognition and localization on a set of
//! revisit queries with ground truth (`tools/revisit_queries.py`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use nalgebra::{Isometry3, Quaternion, Translation3, UnitQuaternion};

use matcha::config::MatchaConfig;
use matcha::geometry::PinholeCamera;
use matcha::map::{Aggregation, MapBuilder, MapOptions};
use matcha::pipeline::Pipeline;

#[derive(Subcommand, Debug)]
pub enum MapCommand {
    /// Build (or extend) a map from the odometry over a sequence folder (as `matcha vo` reads it).
    Build {
        /// The sequence folder.
        sequence: PathBuf,
        /// The map database (created, or extended when it exists with the same descriptors).
        #[arg(long, default_value = "out/map/map.db")]
        out: PathBuf,
        /// The left images alone (monocular odometry: the map has the run's unknown scale).
        #[arg(long)]
        monocular: bool,
        /// Process only the first N frames.
        #[arg(long)]
        frames: Option<usize>,
    },
    /// Localize one image in a map: the camera's pose in `map` (or why none is given).
    Localize {
        /// The map database.
        map: PathBuf,
        /// The image.
        image: PathBuf,
        /// Its intrinsics: fx,fy,cx,cy in pixels.
        #[arg(long, value_parser = crate::parse_intrinsics)]
        intrinsics: [f64; 4],
        /// Print one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Place recognition (recall@1/5 of VLAD, bag of words, mean pooling) and localization accuracy on
    /// revisit queries of the map's sequence.
    Eval {
        /// The map database, built from `--sequence`.
        map: PathBuf,
        /// The sequence the map was built from (its keyframe images, for the other place descriptors).
        #[arg(long)]
        sequence: PathBuf,
        /// The query folder (queries.json + images).
        #[arg(long)]
        queries: PathBuf,
        /// Markdown report.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub fn run(cfg: &MatchaConfig, cmd: &MapCommand) -> Result<()> {
    match cmd {
        MapCommand::Build {
            sequence,
            out,
            monocular,
            frames,
        } => build(cfg, sequence, out, *monocular, *frames),
        MapCommand::Localize {
            map,
            image,
            intrinsics,
            json,
        } => localize_one(cfg, map, image, *intrinsics, *json),
        MapCommand::Eval {
            map,
            sequence,
            queries,
            out,
        } => crate::map_eval::run(cfg, map, sequence, queries, out.as_deref()),
    }
}

fn build(
    cfg: &MatchaConfig,
    sequence: &Path,
    out: &Path,
    monocular: bool,
    frames: Option<usize>,
) -> Result<()> {
    let name = Pipeline::new(cfg)
        .context("building the feature pipeline")?
        .descriptor_name()
        .to_string();
    let mut builder: Option<MapBuilder> = None;
    let t0 = Instant::now();
    let mut sink = |vo: &matcha::vo::VisualOdometry,
                    features: &matcha::features::Features,
                    stamp: f64,
                    camera: &PinholeCamera|
     -> Result<()> {
        let Some(kf) = vo.newest_keyframe() else {
            return Ok(());
        };
        if builder.is_none() {
            builder = Some(
                MapBuilder::create_or_open(out, &name, features.descriptor_dim(), &cfg.map)
                    .with_context(|| format!("opening the map {}", out.display()))?,
            );
        }
        if let Some(b) = builder.as_mut() {
            let id = b.add(
                kf,
                features,
                camera,
                (stamp * 1e9).round() as i64,
                "left_optical",
                &Isometry3::identity(),
            )?;
            log::debug!(
                "map: keyframe {id} at {stamp:.3} s, {} landmarks",
                kf.ids.len()
            );
        }
        Ok(())
    };
    let trajectory = out.with_extension("tum");
    crate::vo::run_with(
        cfg,
        &crate::vo::VoRun {
            sequence,
            out: &trajectory,
            states: None,
            max_frames: frames,
            keyframe_lag: 0,
            monocular,
        },
        Some(&mut sink),
    )?;
    let Some(b) = builder else {
        bail!("the odometry made no keyframe: no map written");
    };
    b.store().integrity_check()?;
    let n = b.store().keyframe_count()?;
    let (_, landmarks) = b.store().max_ids()?;
    eprintln!(
        "[map] {}: {n} keyframes, landmark ids up to {landmarks}, place descriptor {} ({} s, {:.0} kB on disk)",
        out.display(),
        b.store().identity().place,
        t0.elapsed().as_secs(),
        std::fs::metadata(out).map(|m| m.len() as f64 / 1e3).unwrap_or(0.0)
    );
    Ok(())
}

fn localize_one(
    cfg: &MatchaConfig,
    map: &Path,
    image: &Path,
    k: [f64; 4],
    json: bool,
) -> Result<()> {
    let camera = PinholeCamera::new(k[0], k[1], k[2], k[3]).context("--intrinsics")?;
    let mut pipeline = Pipeline::new(cfg).context("building the feature pipeline")?;
    let img = matcha::image::load(image).with_context(|| format!("reading {}", image.display()))?;
    let t0 = Instant::now();
    let features = pipeline.extract(&img)?;
    let extract_ms = t0.elapsed().as_secs_f64() * 1e3;
    let localizer = cfg
        .map
        .open_localizer(map, pipeline.descriptor_name(), features.descriptor_dim())
        .with_context(|| format!("opening the map {}", map.display()))?;
    let loc = localizer.localize(&features, &camera, None)?;
    let pose = loc.map_from_camera.map(|p| {
        let q = p.rotation.quaternion();
        let t = p.translation.vector;
        serde_json::json!({"t": [t.x, t.y, t.z], "q_xyzw": [q.i, q.j, q.k, q.w]})
    });
    if json {
        let out = serde_json::json!({
            "localized": loc.map_from_camera.is_some(),
            "map_from_camera": pose,
            "covariance": loc.covariance.iter().collect::<Vec<_>>(),
            "keyframe": loc.keyframe,
            "inliers": loc.inliers,
            "spread": loc.spread,
            "refused": loc.refused,
            "candidates": loc.candidates,
            "extract_ms": extract_ms,
            "localize_ms": loc.total_ms,
        });
        println!("{out}");
    } else {
        match (&pose, &loc.refused) {
            (Some(p), _) => println!(
                "localized against keyframe {:?} with {} inliers (spread {:.0}%): map_from_camera {p}",
                loc.keyframe,
                loc.inliers,
                loc.spread * 100.0
            ),
            (None, r) => println!(
                "not localized: {}",
                r.as_deref().unwrap_or("no candidate")
            ),
        }
    }
    Ok(())
}

/// `[tx, ty, tz, qx, qy, qz, qw]` as an isometry.
pub fn pose_from_tum(v: &[f64]) -> Option<Isometry3<f64>> {
    if v.len() != 7 || !v.iter().all(|x| x.is_finite()) {
        return None;
    }
    let q = Quaternion::new(v[6], v[3], v[4], v[5]);
    (q.norm() > 1e-9).then(|| {
        Isometry3::from_parts(
            Translation3::new(v[0], v[1], v[2]),
            UnitQuaternion::from_quaternion(q),
        )
    })
}

/// The map options with another place descriptor (the evaluation compares them on one map).
pub fn with_place(options: &MapOptions, place: Aggregation) -> MapOptions {
    MapOptions {
        place,
        ..options.clone()
    }
}
