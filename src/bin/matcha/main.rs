//! `matcha` command line: match two images and estimate their relative pose, evaluate accuracy on data sets
//! with ground truth, and run the benchmarks.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use matcha::config::{ExtractorKind, MatchaConfig, MatcherKind};
use matcha::geometry::{Distortion, PinholeCamera};
use matcha::pipeline::{Frame, Pipeline};

mod bench;
mod map;
mod map_eval;
mod semantic;
mod track;
mod vo;

#[derive(Parser, Debug)]
#[command(
    name = "matcha",
    version,
    about = "Keypoint correspondences and relative pose between images"
)]
struct Cli {
    /// Configuration file (ROS 2 parameter YAML, e.g. config/matcha.yaml); built-in defaults otherwise.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Feature extractor (overrides the config).
    #[arg(long, global = true)]
    extractor: Option<ExtractorKind>,
    /// Matcher (overrides the config).
    #[arg(long, global = true)]
    matcher: Option<MatcherKind>,
    /// Maximum keypoints per image (overrides the config).
    #[arg(long, global = true)]
    max_keypoints: Option<usize>,
    /// Directory of the exported engines (overrides the config).
    #[arg(long, global = true)]
    engines: Option<PathBuf>,
    /// CPU threads for the engines (overrides the config).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

/// What `matcha match` matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum MatchMode {
    /// The same scene: correspondences and the relative pose.
    Geometric,
    /// Instances of one category: semantic correspondences (MATCHA semantic configuration).
    Semantic,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Match two images and estimate the pose of camera b relative to camera a.
    ///
    /// JSON output (`--json`) uses the point transform x_b = R·x_a + t (OpenCV convention), |t| = 1;
    /// "R" and "t" are null when no pose could be estimated (exit code 0: that is a result).
    Match {
        /// First image (a).
        image_a: PathBuf,
        /// Second image (b).
        image_b: PathBuf,
        /// Intrinsics of image a (and b unless --intrinsics-b): fx,fy,cx,cy in pixels (geometric mode).
        #[arg(long, value_parser = parse_intrinsics)]
        intrinsics: Option<[f64; 4]>,
        /// geometric: correspondences and the relative pose; semantic: each point of A to its most similar
        /// place in B with the MATCHA semantic configuration (no pose; docs/tracking.md).
        #[arg(long, value_enum, default_value_t = MatchMode::Geometric)]
        mode: MatchMode,
        /// Semantic mode: the points of A to match, a JSON list of [x, y] (default: A's keypoints).
        #[arg(long)]
        points: Option<PathBuf>,
        /// Intrinsics of image b: fx,fy,cx,cy.
        #[arg(long, value_parser = parse_intrinsics)]
        intrinsics_b: Option<[f64; 4]>,
        /// plumb_bob distortion of image a (and b unless --distortion-b): k1,k2,p1,p2[,k3] (negative
        /// values need no `=`: `--distortion -0.2,0.1,0,0`).
        #[arg(long, value_parser = parse_distortion, allow_hyphen_values = true)]
        distortion: Option<Distortion>,
        /// plumb_bob distortion of image b.
        #[arg(long, value_parser = parse_distortion, allow_hyphen_values = true)]
        distortion_b: Option<Distortion>,
        /// Print one JSON object on stdout.
        #[arg(long)]
        json: bool,
        /// Write a picture of the matches (inliers green, outliers red).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Relative-pose accuracy (AUC@5/10/20°) on data sets with ground truth, with baselines side by side.
    Eval {
        /// Data-set manifests (written by tools/eval_sets.py).
        #[arg(long = "manifest", required = true)]
        manifests: Vec<PathBuf>,
        /// Baseline result files (tools/eval_baselines.py), assigned to the set whose pair ids they carry.
        #[arg(long = "baseline")]
        baselines: Vec<PathBuf>,
        /// Our methods to run: extractor+matcher pairs.
        #[arg(long = "method", default_values_t = ["xfeat+mnn".to_string(), "disk+mnn".to_string()])]
        methods: Vec<String>,
        /// Output folder for the tables (markdown, JSON) and recall-curve plots (SVG).
        #[arg(long, default_value = "out/eval")]
        out: PathBuf,
    },
    /// Visual odometry over a sequence folder (sequence.json + left/right images, as
    /// tools/vo_sequences.py writes them): the left camera's trajectory in TUM format (stamp tx ty tz qx qy
    /// qz qw, camera-to-odom, odom = the first left camera frame). Metric stereo, or with --monocular the
    /// left images alone (one unknown scale: score it with --align sim3).
    Vo {
        /// The sequence folder.
        sequence: PathBuf,
        /// Trajectory output (TUM).
        #[arg(long, default_value = "out/vo/trajectory.tum")]
        out: PathBuf,
        /// One JSON line per frame: state, keyframe, still, tracked landmarks, σ of the pose, latency.
        #[arg(long)]
        states: Option<PathBuf>,
        /// Process only the first N frames.
        #[arg(long)]
        frames: Option<usize>,
        /// Deferred keyframes as the node makes them (a second thread extracts a keyframe's features while
        /// the next frames are answered by landmark tracking): insert each keyframe this many frames after
        /// it was asked for, deterministically. 0 = in the same frame. The latency figures then count the
        /// answer only (the extraction is reported apart), as in the node. Up to `vo.keyframe_max_lag_frames`.
        #[arg(long, default_value_t = 0)]
        keyframe_lag: usize,
        /// The left images alone (monocular odometry: up to one scale for the run).
        #[arg(long)]
        monocular: bool,
    },
    /// Follow query points through a folder of frames (name order): TRACKS.json with, per query and frame,
    /// [x, y, visible, confidence] (null before the query frame).
    Track {
        /// The frames folder (png, jpg, ppm, pgm, bmp, tif; name order).
        #[arg(long)]
        frames: PathBuf,
        /// QUERIES.json: a list of {"frame": k, "x": u, "y": v} (pixels, OpenCV convention).
        #[arg(long)]
        queries: PathBuf,
        /// TRACKS.json output.
        #[arg(long, default_value = "out/track/tracks.json")]
        out: PathBuf,
        /// Also write the frames with the tracks drawn into this folder.
        #[arg(long)]
        viz: Option<PathBuf>,
        /// The tracker, or the nearest-neighbour baseline.
        #[arg(long, value_enum, default_value_t = track::Method::Tracker)]
        method: track::Method,
    },
    /// TAP-Vid metrics of the tracker, the nearest-neighbour baseline and baseline files on clips with ground
    /// truth (tools/track_clips.py; baselines from tools/track_baselines.py).
    TrackEval {
        /// Clip folders (frames/, queries.json, groundtruth.json).
        #[arg(long = "clip", required = true)]
        clips: Vec<PathBuf>,
        /// Baseline names: each clip's <name>.json is scored too (e.g. lk).
        #[arg(long = "baseline")]
        baselines: Vec<String>,
        /// Markdown table output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Localization maps: build one from a sequence, localize an image, evaluate on revisit queries.
    #[command(subcommand)]
    Map(map::MapCommand),
    /// Benchmarks (figures printed side by side with their anchors).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn parse_numbers(s: &str, what: &str, lens: &[usize]) -> Result<Vec<f64>, String> {
    let v: Vec<f64> = s
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what} must be comma-separated numbers ({e})"))?;
    if !lens.contains(&v.len()) {
        return Err(format!("{what} needs {lens:?} numbers, got {}", v.len()));
    }
    if v.iter().any(|x| !x.is_finite()) {
        return Err(format!("{what} must be finite numbers"));
    }
    Ok(v)
}

fn parse_intrinsics(s: &str) -> Result<[f64; 4], String> {
    let v = parse_numbers(s, "intrinsics fx,fy,cx,cy", &[4])?;
    PinholeCamera::new(v[0], v[1], v[2], v[3]).map_err(|e| e.to_string())?;
    Ok([v[0], v[1], v[2], v[3]])
}

fn parse_distortion(s: &str) -> Result<Distortion, String> {
    let v = parse_numbers(s, "distortion k1,k2,p1,p2[,k3]", &[4, 5])?;
    Distortion::from_slice(&v).map_err(|e| e.to_string())
}

fn camera(k: [f64; 4], d: Option<Distortion>) -> Result<PinholeCamera> {
    let cam = PinholeCamera::new(k[0], k[1], k[2], k[3]).context("bad intrinsics")?;
    Ok(match d {
        Some(d) => cam.with_distortion(d).context("bad distortion")?,
        None => cam,
    })
}

fn load_config(cli: &Cli) -> Result<MatchaConfig> {
    let mut cfg = match &cli.config {
        Some(p) => MatchaConfig::load(p)?,
        None => MatchaConfig::default(),
    };
    if let Some(e) = cli.extractor {
        cfg.engine.extractor = e;
    }
    if let Some(m) = cli.matcher {
        cfg.matcher.matcher = m;
    }
    if let Some(k) = cli.max_keypoints {
        cfg.engine.max_keypoints = k;
    }
    // the node resolves a relative engines directory the same way (working directory, $MATCHA_CACHE,
    // installed package share)
    let engines = cli.engines.as_ref().unwrap_or(&cfg.runtime.engines_dir);
    cfg.runtime.engines_dir = matcha::util::paths::resolve_engines_dir(engines);
    if let Some(t) = cli.threads {
        cfg.runtime.threads = t;
    }
    cfg.validate()?;
    Ok(cfg)
}

fn load_image(path: &Path) -> Result<matcha::image::RgbImage> {
    Ok(matcha::image::load(path)?)
}

#[allow(clippy::too_many_arguments)]
fn run_match(
    cfg: &MatchaConfig,
    image_a: &Path,
    image_b: &Path,
    cam_a: PinholeCamera,
    cam_b: PinholeCamera,
    json: bool,
    out: Option<&Path>,
) -> Result<()> {
    let img_a = load_image(image_a)?;
    let img_b = load_image(image_b)?;
    let t_load = Instant::now();
    let mut pipeline = Pipeline::new(cfg)?;
    let load_ms = t_load.elapsed().as_secs_f64() * 1e3;
    let t0 = Instant::now();
    let fa = pipeline
        .extract(&img_a)
        .with_context(|| format!("extracting features of {}", image_a.display()))?;
    let t1 = Instant::now();
    let fb = pipeline
        .extract(&img_b)
        .with_context(|| format!("extracting features of {}", image_b.display()))?;
    let t2 = Instant::now();
    let both = pipeline.match_images(
        Frame::new(&img_a, &fa, &cam_a),
        Frame::new(&img_b, &fb, &cam_b),
    )?;
    let (fa, fb) = both.features(&fa, &fb);
    let retry_ms = both.retried.as_ref().map(|r| r.2);
    let res = &both.pair;
    let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
    if let Some(path) = out {
        let inliers = matcha::geometry::reported_pose(&res.pose).map(|p| p.inliers.as_slice());
        let pic = matcha::viz::draw_matches(&img_a, fa, &img_b, fb, &res.matches, inliers, 150);
        pic.save(path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let rotation_json = |r: &nalgebra::Matrix3<f64>| {
        serde_json::json!([0, 1, 2].map(|i| [0, 1, 2].map(|j| r[(i, j)])))
    };
    let translation_json = |t: Option<nalgebra::Vector3<f64>>| {
        t.map_or(serde_json::Value::Null, |t| {
            serde_json::json!([t.x, t.y, t.z])
        })
    };
    let (r, t, inliers, configuration) = match matcha::geometry::reported_pose(&res.pose) {
        Some(p) => (
            rotation_json(&p.rotation),
            translation_json(p.translation),
            p.num_inliers,
            serde_json::json!(p.configuration.name()),
        ),
        None => (
            serde_json::Value::Null,
            serde_json::Value::Null,
            0,
            serde_json::Value::Null,
        ),
    };
    if json {
        let mut obj = serde_json::json!({
            "keypoints": [fa.len(), fb.len()],
            "matches": res.matches.matches.len(),
            "inliers": inliers,
            "R": r,
            "t": t,
            "configuration": configuration,
            "descriptor": pipeline.descriptor_name(),
            "matcher": pipeline.matcher_name(),
            "time_ms": {
                "load_engines": load_ms,
                "extract_a": ms(t0, t1),
                "extract_b": ms(t1, t2),
                "match": res.match_ms,
                "refine": res.refine_ms,
                "pose": res.pose_ms,
            },
        });
        if let Some(ms) = retry_ms {
            // the second, denser extraction of both images (engine.ambiguity_max_keypoints)
            obj["time_ms"]["extract_retry"] = serde_json::json!(ms);
        }
        if let Some(r) = &res.refinement {
            obj["refinement"] = serde_json::to_value(r.stats)?;
        }
        if let Some(p) = matcha::geometry::reported_pose(&res.pose) {
            obj["quality"] = serde_json::to_value(p.quality)?;
        }
        obj["ambiguous"] = serde_json::json!(false);
        match &res.pose {
            Ok(_) => {}
            Err(
                e @ matcha::geometry::NoPose::PlanarAmbiguity {
                    candidates,
                    off_plane_inliers,
                    plane_inliers,
                    ..
                },
            ) => {
                // R and t above are the best guess; the other explanations of the plane follow
                obj["ambiguous"] = serde_json::json!(true);
                obj["ambiguity"] = serde_json::json!(e.to_string());
                obj["plane_inliers"] = serde_json::json!(plane_inliers);
                obj["candidates"] = candidates
                    .iter()
                    .zip(off_plane_inliers)
                    .map(|((r, t), off)| {
                        serde_json::json!({
                            "R": rotation_json(r),
                            "t": translation_json(Some(*t)),
                            "off_plane_inliers": off,
                        })
                    })
                    .collect();
            }
            Err(e) => obj["no_pose_reason"] = serde_json::json!(e.to_string()),
        }
        println!("{}", serde_json::to_string(&obj)?);
    } else {
        println!(
            "{} keypoints in a, {} in b ({}), {} matches ({})",
            fa.len(),
            fb.len(),
            pipeline.descriptor_name(),
            res.matches.matches.len(),
            pipeline.matcher_name()
        );
        if let Some(ms) = retry_ms {
            println!(
                "the first try ({} keypoints) was a planar ambiguity: these are the second try's, extracted again in {ms:.1} ms",
                cfg.engine.max_keypoints
            );
        }
        if let Err(e @ matcha::geometry::NoPose::PlanarAmbiguity { .. }) = &res.pose {
            println!(
                "AMBIGUOUS: {e}; the best-scoring candidate follows (a guess, not a measured pose)"
            );
        }
        match matcha::geometry::reported_pose(&res.pose) {
            Some(p) => {
                println!(
                    "pose (x_b = R·x_a + t, |t| = 1): {} inliers, {} configuration",
                    p.num_inliers,
                    p.configuration.name()
                );
                for i in 0..3 {
                    let t = p.translation.map_or_else(
                        || "(none: pure rotation)".into(),
                        |t| format!("{:+.6}", t[i]),
                    );
                    println!(
                        "  R[{i}] = [{:+.6}, {:+.6}, {:+.6}]   t[{i}] = {t}",
                        p.rotation[(i, 0)],
                        p.rotation[(i, 1)],
                        p.rotation[(i, 2)],
                    );
                }
            }
            None => {
                if let Err(e) = &res.pose {
                    println!("no pose: {e}");
                }
            }
        }
        println!(
            "time: extract {:.1} + {:.1} ms, match {:.1} ms, refine {:.1} ms, pose {:.1} ms",
            ms(t0, t1),
            ms(t1, t2),
            res.match_ms,
            res.refine_ms,
            res.pose_ms
        );
        if let Some(r) = &res.refinement {
            println!(
                "refinement: {} matches refined, {} left unrefined ({:?})",
                r.stats.refined,
                r.stats.rejected(),
                r.stats
            );
        }
        if let Some(p) = out {
            println!("matches drawn to {}", p.display());
        }
    }
    Ok(())
}

fn method_config(base: &MatchaConfig, method: &str) -> Result<MatchaConfig> {
    let (e, m) = method
        .split_once('+')
        .with_context(|| format!("method '{method}' must be extractor+matcher, e.g. xfeat+mnn"))?;
    let mut cfg = base.clone();
    cfg.engine.extractor = e.parse().with_context(|| format!("in method '{method}'"))?;
    cfg.matcher.matcher = m.parse().with_context(|| format!("in method '{method}'"))?;
    Ok(cfg)
}

fn run_eval(
    cfg: &MatchaConfig,
    manifests: &[PathBuf],
    baselines: &[PathBuf],
    methods: &[String],
    out: &Path,
) -> Result<()> {
    use matcha::eval::{plot_recall_curves, run_pipeline, score, table, Manifest, MethodResults};
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let baseline_results: Vec<MethodResults> = baselines
        .iter()
        .map(|p| MethodResults::load(p))
        .collect::<Result<_, _>>()?;
    let mut report = String::from("# Relative pose accuracy (pose error = max(rotation, translation direction); failures = ∞)\n\n");
    let mut all = serde_json::Map::new();
    for mpath in manifests {
        let manifest = Manifest::load(mpath)?;
        let ids: std::collections::HashSet<&str> =
            manifest.pairs.iter().map(|p| p.id.as_str()).collect();
        let mut scores = Vec::new();
        for method in methods {
            let mcfg = method_config(cfg, method)?;
            let mut pipeline =
                Pipeline::new(&mcfg).with_context(|| format!("building method {method}"))?;
            eprintln!(
                "[eval] {}: running {method} on {} pairs",
                manifest.name,
                manifest.pairs.len()
            );
            let res = run_pipeline(&manifest, &mut pipeline, &format!("matcha {method}"))?;
            std::fs::write(
                out.join(format!(
                    "{}.{}.json",
                    manifest.name,
                    method.replace('+', "_")
                )),
                serde_json::to_string_pretty(&res)?,
            )?;
            scores.push(score(&manifest, &res));
        }
        for b in &baseline_results {
            // A baseline file belongs to this set when its pair ids are this set's.
            if !b.pairs.is_empty() && b.pairs.iter().all(|p| ids.contains(p.id.as_str())) {
                scores.push(score(&manifest, b));
            }
        }
        let t = table(&manifest.name, manifest.pairs.len(), &scores);
        println!("{t}");
        report += &t;
        report += "\n";
        plot_recall_curves(
            &out.join(format!("{}.svg", manifest.name)),
            &manifest.name,
            &scores,
        )?;
        all.insert(manifest.name.clone(), serde_json::to_value(&scores)?);
    }
    std::fs::write(out.join("eval.md"), &report)?;
    std::fs::write(out.join("eval.json"), serde_json::to_string_pretty(&all)?)?;
    eprintln!("[eval] tables and plots written to {}", out.display());
    Ok(())
}

fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole cause chain on one line, no backtrace: messages name the problem and the fix.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<()> {
    let cfg = load_config(cli)?;
    match &cli.command {
        Command::Match {
            image_a,
            image_b,
            intrinsics,
            intrinsics_b,
            distortion,
            distortion_b,
            json,
            out,
            mode,
            points,
        } => {
            if *mode == MatchMode::Semantic {
                return semantic::run(
                    &cfg,
                    image_a,
                    image_b,
                    points.as_deref(),
                    *json,
                    out.as_deref(),
                );
            }
            if points.is_some() {
                anyhow::bail!("--points belongs to --mode semantic");
            }
            let intrinsics = intrinsics.ok_or_else(|| {
                anyhow::anyhow!("--intrinsics fx,fy,cx,cy is required (geometric mode)")
            })?;
            let cam_a = camera(intrinsics, *distortion)?;
            // Camera b inherits a's distortion only when it also inherits a's intrinsics.
            let inherited = if intrinsics_b.is_some() {
                None
            } else {
                *distortion
            };
            let cam_b = camera(
                intrinsics_b.unwrap_or(intrinsics),
                distortion_b.or(inherited),
            )?;
            run_match(&cfg, image_a, image_b, cam_a, cam_b, *json, out.as_deref())
        }
        Command::Eval {
            manifests,
            baselines,
            methods,
            out,
        } => run_eval(&cfg, manifests, baselines, methods, out),
        Command::Vo {
            sequence,
            out,
            states,
            frames,
            keyframe_lag,
            monocular,
        } => vo::run(
            &cfg,
            &vo::VoRun {
                sequence,
                out,
                states: states.as_deref(),
                max_frames: *frames,
                keyframe_lag: *keyframe_lag,
                monocular: *monocular,
            },
        ),
        Command::Track {
            frames,
            queries,
            out,
            viz,
            method,
        } => track::run_track(&cfg, frames, queries, out, viz.as_deref(), *method),
        Command::TrackEval {
            clips,
            baselines,
            out,
        } => track::run_eval(&cfg, clips, baselines, out.as_deref()),
        Command::Map(m) => map::run(&cfg, m),
        Command::Bench(b) => bench::run(&cfg, b),
    }
}
