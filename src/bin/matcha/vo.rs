//! `matcha vo`: the stereo (or, `--monocular`, the single-camera) visual odometry over a sequence folder (`sequence.json` + left/right images),
//! writing the trajectory in TUM format and one JSON line per frame (state, tracked landmarks, covariance),
//! with the processing rate and per-frame latency printed at the end.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};

use matcha::config::MatchaConfig;
use matcha::pipeline::Pipeline;
use matcha::util::stats::percentile;
use matcha::vo::sequence::StereoSequence;
use matcha::vo::trajectory::tum_line;
use matcha::vo::{TrackingState, VisualOdometry};

/// Options of one run.
pub struct VoRun<'a> {
    pub sequence: &'a Path,
    pub out: &'a Path,
    pub states: Option<&'a Path>,
    pub max_frames: Option<usize>,
    pub keyframe_lag: usize,
    /// The left images alone.
    pub monocular: bool,
}

/// Called with each new keyframe: the odometry (its newest keyframe is the new one), the keyframe
/// image's left features, its stamp and the camera (`matcha map build` writes it to the map).
pub type KeyframeSink<'a> = dyn FnMut(
        &VisualOdometry,
        &matcha::features::Features,
        f64,
        &matcha::geometry::PinholeCamera,
    ) -> Result<()>
    + 'a;

/// The features of a frame's left image, and of its right image for a stereo run.
type FrameFeatures = (
    matcha::features::Features,
    Option<matcha::features::Features>,
);

pub fn run(cfg: &MatchaConfig, args: &VoRun) -> Result<()> {
    run_with(cfg, args, None)
}

/// [`run`], handing each new keyframe to `sink`.
pub fn run_with(
    cfg: &MatchaConfig,
    args: &VoRun,
    mut sink: Option<&mut KeyframeSink<'_>>,
) -> Result<()> {
    let seq = StereoSequence::open(args.sequence)?;
    if args.keyframe_lag > cfg.vo.keyframe_max_lag_frames {
        anyhow::bail!(
            "--keyframe-lag {} exceeds vo.keyframe_max_lag_frames {} (the odometry stops waiting then)",
            args.keyframe_lag,
            cfg.vo.keyframe_max_lag_frames
        );
    }
    let mut pipeline = Pipeline::new(cfg).context("building the feature pipeline")?;
    let mut vo = if args.monocular {
        VisualOdometry::monocular(seq.rig.left, cfg.vo.clone())
    } else {
        VisualOdometry::stereo(seq.rig.clone(), cfg.vo.clone())
    }
    .context("starting the odometry")?;
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut tum = std::io::BufWriter::new(
        std::fs::File::create(args.out)
            .with_context(|| format!("creating {}", args.out.display()))?,
    );
    let mut states = match args.states {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    let frames = &seq.frames[..args.max_frames.unwrap_or(usize::MAX).min(seq.frames.len())];
    eprintln!(
        "[vo] {}: {} frames at {} Hz, {}, {} + PnP",
        seq.name,
        frames.len(),
        seq.rate_hz,
        if args.monocular {
            "monocular (left images)".to_string()
        } else {
            format!("stereo, baseline {:.3} m", seq.rig.baseline())
        },
        pipeline.descriptor_name(),
    );
    // the features of frame `f` (the right image's only for a stereo run)
    let extract = |pipeline: &mut Pipeline,
                   f: &matcha::vo::sequence::SequenceFrame,
                   left: &matcha::image::RgbImage|
     -> Result<FrameFeatures> {
        let fl = pipeline
            .extract(left)
            .with_context(|| format!("frame {}: left features", f.index))?;
        if args.monocular {
            return Ok((fl, None));
        }
        let right = matcha::image::load(&seq.root.join(&f.right))
            .with_context(|| format!("frame {}: right image", f.index))?;
        let fr = pipeline
            .extract(&right)
            .with_context(|| format!("frame {}: right features", f.index))?;
        Ok((fl, Some(fr)))
    };
    let mut latency_ms = Vec::with_capacity(frames.len());
    let mut by_state = [0usize; 4];
    let mut flow_frames = 0usize;
    let mut extraction_ms = Vec::new();
    // requested keyframes: (frame index at which to insert, stamp, left and right features)
    let mut deferred: std::collections::VecDeque<(usize, f64, FrameFeatures)> =
        std::collections::VecDeque::new();
    let start = Instant::now();
    for (i, f) in frames.iter().enumerate() {
        while deferred.front().is_some_and(|(due, ..)| *due <= i) {
            if let Some((_, stamp, (fl, fr))) = deferred.pop_front() {
                let before = vo.counters().keyframes;
                vo.insert_keyframe(stamp, &fl, fr.as_ref())
                    .with_context(|| format!("frame {}: deferred keyframe", f.index))?;
                if let Some(s) = sink.as_mut().filter(|_| vo.counters().keyframes > before) {
                    s(&vo, &fl, stamp, &seq.rig.left)?;
                }
            }
        }
        let left = matcha::image::load(&seq.root.join(&f.left))
            .with_context(|| format!("frame {}: left image", f.index))?;
        let t0 = Instant::now();
        // the landmarks followed photometrically when that suffices; the network only when it does not
        let gray = matcha::features::GrayFrame::from_rgb(&left);
        let est = match vo
            .track(f.stamp, &gray)
            .with_context(|| format!("frame {}", f.index))?
        {
            Some(est) => est,
            None => {
                // the right image's features only when the frame needs its stereo points (as the node)
                let fl = pipeline
                    .extract(&left)
                    .with_context(|| format!("frame {}: left features", f.index))?;
                let before = vo.counters().keyframes;
                let est = if args.monocular {
                    vo.process(f.stamp, &fl, None)
                } else {
                    let mut right_error = None;
                    let mut right = || {
                        let r = matcha::image::load(&seq.root.join(&f.right))
                            .with_context(|| format!("frame {}: right image", f.index))
                            .and_then(|img| {
                                pipeline
                                    .extract(&img)
                                    .with_context(|| format!("frame {}: right features", f.index))
                            });
                        r.map_err(|e| right_error = Some(e)).ok()
                    };
                    let est = vo.process_lazily(f.stamp, &fl, &mut right);
                    if let Some(e) = right_error {
                        return Err(e);
                    }
                    est
                }
                .with_context(|| format!("frame {}", f.index))?;
                if let Some(s) = sink.as_mut().filter(|_| vo.counters().keyframes > before) {
                    s(&vo, &fl, f.stamp, &seq.rig.left)?;
                }
                est
            }
        };
        flow_frames += est.by_flow as usize;
        latency_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        if est.keyframe_requested {
            // what the node's keyframe thread does, timed apart from the answer
            let t1 = Instant::now();
            let features = extract(&mut pipeline, f, &left)?;
            extraction_ms.push(t1.elapsed().as_secs_f64() * 1e3);
            if args.keyframe_lag == 0 {
                let before = vo.counters().keyframes;
                vo.insert_keyframe(est.stamp, &features.0, features.1.as_ref())?;
                if let Some(s) = sink.as_mut().filter(|_| vo.counters().keyframes > before) {
                    s(&vo, &features.0, est.stamp, &seq.rig.left)?;
                }
            } else {
                deferred.push_back((i + args.keyframe_lag, est.stamp, features));
            }
        }
        by_state[est.state as usize] += 1;
        // an initializing monocular run holds the reference's pose without knowing the motion: not a
        // trajectory point (the coverage the evaluation prints says how many frames are missing)
        if let (Some(pose), false) = (
            &est.world_from_camera,
            est.state == TrackingState::Initializing,
        ) {
            writeln!(tum, "{}", tum_line(est.stamp, pose))?;
        }
        if let Some(s) = states.as_mut() {
            let line = serde_json::json!({
                "index": f.index,
                "stamp": est.stamp,
                "state": est.state.name(),
                "keyframe": est.keyframe,
                "keyframe_requested": est.keyframe_requested,
                "still": est.still,
                "stereo_points": est.stereo_points,
                "tracked": est.tracked,
                "by_flow": est.by_flow,
                "sigma_position_m": (est.covariance[(0, 0)] + est.covariance[(1, 1)] + est.covariance[(2, 2)]).sqrt(),
                "sigma_rotation_deg": (est.covariance[(3, 3)] + est.covariance[(4, 4)] + est.covariance[(5, 5)]).sqrt().to_degrees(),
                "latency_ms": latency_ms.last(),
            });
            writeln!(s, "{line}")?;
        }
        if est.state == TrackingState::Lost {
            log::info!(
                "frame {}: tracking lost ({} stereo points)",
                f.index,
                est.stereo_points
            );
        }
    }
    tum.flush()?;
    if let Some(s) = states.as_mut() {
        s.flush()?;
    }
    let wall = start.elapsed().as_secs_f64();
    if !extraction_ms.is_empty() {
        eprintln!(
            "[vo] {} deferred keyframes (inserted {} frame(s) after the request): extraction of both images p50 {:.1} ms, max {:.1} ms, not in the latency below",
            extraction_ms.len(),
            args.keyframe_lag,
            percentile(&extraction_ms, 0.5),
            percentile(&extraction_ms, 1.0)
        );
    }
    let c = vo.counters();
    eprintln!(
        "[vo] states: tracking {}, recovered {}, lost {}, initializing {}; keyframes {}, losses {}, recoveries {}, restarts {}",
        by_state[TrackingState::Tracking as usize],
        by_state[TrackingState::Recovered as usize],
        by_state[TrackingState::Lost as usize],
        by_state[TrackingState::Initializing as usize],
        c.keyframes,
        c.losses,
        c.recoveries,
        c.restarts
    );
    eprintln!(
        "[vo] {} of {} frames answered by landmark tracking alone (features extracted for the others)",
        flow_frames,
        frames.len()
    );
    eprintln!(
        "[vo] rate: {:.1} frames/s processed (camera {:.1} Hz); latency per frame p50 {:.1} ms, p99 {:.1} ms (decoded images in; tracking, or extraction of both images + odometry)",
        frames.len() as f64 / wall,
        seq.rate_hz,
        percentile(&latency_ms, 0.5),
        percentile(&latency_ms, 0.99)
    );
    eprintln!("[vo] trajectory (TUM) written to {}", args.out.display());
    if seq.groundtruth().is_some() {
        eprintln!(
            "[vo] score it: python tools/eval_vo.py --sequence {} --trajectory {} --align {}",
            seq.root.display(),
            args.out.display(),
            if args.monocular { "sim3" } else { "se3" }
        );
    }
    Ok(())
}
