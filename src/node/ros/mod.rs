//! The r2r node (feature `ros`): `run` reads the parameters, creates the publishers, subscriptions and
//! services and starts the threads; everything else is in the submodules, one concern each:
//!
//! | file | what |
//! |---|---|
//! | [`inbox`] | where a frame enters: stamps, stereo sync, the frame queue under the admission policy |
//! | [`subscriptions`] | image, CameraInfo and `/tf_static` subscriptions, service servers → inbox |
//! | [`worker`] | the worker thread: pipeline, decoding, the loop that hands work to the modes |
//! | [`pair_modes`] | `odometry` (monocular), `stereo` (left → right pose), the `match` service |
//! | [`vo_mode`] | `stereo_odometry`: rig and mounting from CameraInfo / TF, `reset` and `set_pose` |
//! | [`relocalization`] | `relocalization` against a keyframe map |
//! | [`publish`] | the published messages (correspondences, odometry, TF, status) |
//! | [`diagnostics`] | the `/diagnostics` status |
//! | [`params`], [`logging`] | `--ros-args` parameters → configuration; `log` → ROS logging |
//!
//! Threads: rcl is spun on one thread (`spin_once` loop); small tokio tasks drain each subscription stream
//! into the [`inbox::Inbox`], whose frame queue is governed by the one frame-admission policy
//! ([`crate::node::admission`]: every frame while the worker keeps up on average, the newest when it is
//! behind); one worker thread owns the pipeline and answers service calls first, then frames. The r2r
//! subscription channels themselves hold at most 10 messages and are drained immediately.
//!
//! Bad input never stops the node: each cause is counted, logged once and then rate-limited (see
//! [`super::stats`]), and the next good frame is processed normally. Diagnostics report the node's own
//! failures (pipeline, map) apart from rejected inputs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use r2r::builtin_interfaces::msg::Time;
use r2r::diagnostic_msgs::msg::DiagnosticArray;
use r2r::geometry_msgs::msg::PoseWithCovarianceStamped;
use r2r::matcha_msgs::msg::{Correspondences, OdometryStatus, PointTracks};
use r2r::nav_msgs::msg::Odometry;
use r2r::sensor_msgs::msg::Image;
use r2r::tf2_msgs::msg::TFMessage;
use r2r::{ParameterValue, QosProfile};

use super::config::Mode;
use super::keyframes::KeyframeTracker;
use super::sync::Side;
use super::visual_odometry::RobotVo;

/// Errors that stop the node at start-up.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// rcl / r2r failure.
    #[error("ROS: {0}")]
    Ros(#[from] r2r::Error),
    /// Invalid parameters.
    #[error("{0}")]
    Parameters(String),
    /// Runtime (threads, signals).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

const NODE_NAME: &str = "matcha_node";

mod diagnostics;
mod inbox;
mod logging;
mod pair_modes;
mod params;
mod point_tracks;
mod publish;
mod relocalization;
mod semantic;
mod subscriptions;
mod vo_mode;
mod worker;

use inbox::Shared;
pub use logging::init_logging;
pub use params::config_from_params;
use publish::Outputs;
use worker::Worker;

fn zero_time() -> Time {
    Time { sec: 0, nanosec: 0 }
}

/// Runs the node until SIGINT/SIGTERM. Reads the parameters (`--ros-args`), creates subscriptions,
/// publishers and services, and processes frames.
pub fn run() -> Result<(), NodeError> {
    init_logging(NODE_NAME);
    // before DDS's and ONNX Runtime's threads allocate
    match crate::node::heap::settle_c_malloc() {
        Some(bytes) => log::debug!("C allocator: mmap threshold fixed at {} KiB", bytes / 1024),
        None => log::debug!("C allocator: left as the environment sets it"),
    }
    let ctx = r2r::Context::create()?;
    let mut node = r2r::Node::create(ctx, NODE_NAME, "")?;
    let params: Vec<(String, ParameterValue)> = node
        .params
        .lock()
        .map(|p| {
            p.iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect()
        })
        .unwrap_or_default();
    let (cfg, ncfg) = config_from_params(&params)?;
    if params::use_sim_time(&params)? {
        // the node's ROS clock follows `/clock`: what `/diagnostics` is stamped with (every other message
        // carries its image's stamp)
        node.get_time_source().enable_sim_time(&mut node)?;
        log::info!("use_sim_time: the node's clock follows /clock");
    }
    let node_name = node
        .fully_qualified_name()
        .unwrap_or_else(|_| NODE_NAME.into());
    log::info!(
        "{node_name}: mode {}, extractor {:?}, matcher {:?}, input '{}' ({:?}, {:?} QoS depth {})",
        ncfg.mode.name(),
        cfg.engine.extractor,
        cfg.matcher.matcher,
        ncfg.topics.image,
        ncfg.transport,
        ncfg.qos.reliability,
        ncfg.qos.depth
    );
    let matcher_name = serde_json::to_value(cfg.matcher.matcher)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let _guard = rt.enter();

    let shared = Arc::new(Shared::new(&ncfg));

    let mut tasks = Vec::new();
    let t = &ncfg.topics;
    subscriptions::images(&mut node, &shared, &ncfg, &t.image, Side::Left, &mut tasks)?;
    subscriptions::camera_info(&mut node, &shared, &ncfg, &t.camera_info, 0, &mut tasks)?;
    if ncfg.mode.stereo_input() {
        subscriptions::images(
            &mut node,
            &shared,
            &ncfg,
            &t.right_image,
            Side::Right,
            &mut tasks,
        )?;
        subscriptions::camera_info(
            &mut node,
            &shared,
            &ncfg,
            &t.right_camera_info,
            1,
            &mut tasks,
        )?;
    }
    let stereo_odometry = ncfg.mode == Mode::StereoOdometry;
    let odometry = ncfg.mode.odometry();
    // the camera's mounting on the base: the odometry modes, and the relocalization mode's poses in `map`
    if odometry || ncfg.mode == Mode::Relocalization {
        subscriptions::tf_static(&mut node, &shared, &t.tf_static, &mut tasks)?;
    }
    let vo = if odometry {
        subscriptions::odometry_services(&mut node, &shared, &ncfg, &mut tasks)?;
        if stereo_odometry && ncfg.map.mode == crate::node::map_session::MapMode::Localize {
            subscriptions::initial_pose(&mut node, &shared, &ncfg, &mut tasks)?;
        }
        Some(RobotVo::new(cfg.vo.clone()).map_err(|e| NodeError::Parameters(e.to_string()))?)
    } else {
        None
    };
    // deferred keyframes: a second pipeline on its own thread extracts keyframe features while the worker
    // answers the next frames by landmark tracking; its engines get half the threads, so that tracking
    // keeps a core (not with the monocular mode's per-frame correspondences: every frame has features then)
    let extracts_every_frame = ncfg.mode == Mode::Odometry && ncfg.odometry_correspondences;
    let keyframe_extractor = if odometry
        && !extracts_every_frame
        && cfg.vo.keyframe_max_lag_frames > 0
    {
        let mut c = cfg.clone();
        c.runtime.threads = (c.runtime.threads / 2).max(1);
        Some(crate::vo::background::BackgroundExtractor::spawn(
            move || {
                let mut p = crate::pipeline::Pipeline::new(&c).map_err(|e| e.to_string())?;
                worker::warm_up(&mut p);
                Ok(move |img: &crate::image::RgbImage| p.extract(img).map_err(|e| e.to_string()))
            },
        )?)
    } else {
        None
    };
    subscriptions::match_service(&mut node, &shared, &t.match_service, &mut tasks)?;
    let out_qos = QosProfile::default().keep_last(ncfg.qos.depth as usize);
    let out = Outputs {
        correspondences: node
            .create_publisher::<Correspondences>(&t.correspondences, out_qos.clone())?,
        relative_pose: node
            .create_publisher::<PoseWithCovarianceStamped>(&t.relative_pose, out_qos.clone())?,
        odometry: node.create_publisher::<Odometry>(&t.odometry, out_qos.clone())?,
        camera_odometry: if odometry {
            Some(node.create_publisher::<Odometry>(&t.camera_odometry, out_qos.clone())?)
        } else {
            None
        },
        point_tracks: if odometry && ncfg.point_tracking.enabled {
            Some(node.create_publisher::<PointTracks>(&t.point_tracks, out_qos.clone())?)
        } else {
            None
        },
        odometry_status: if odometry {
            Some(node.create_publisher::<OdometryStatus>(&t.odometry_status, out_qos.clone())?)
        } else {
            None
        },
        localization_pose: if (stereo_odometry
            && ncfg.map.mode == crate::node::map_session::MapMode::Localize)
            || ncfg.mode == Mode::Relocalization
        {
            Some(node.create_publisher::<PoseWithCovarianceStamped>(
                &t.localization_pose,
                out_qos.clone(),
            )?)
        } else {
            None
        },
        tf: if odometry
            && (ncfg.publish_tf
                || (stereo_odometry
                    && ncfg.map.mode == crate::node::map_session::MapMode::Localize))
        {
            Some(node.create_publisher::<TFMessage>(&t.tf, QosProfile::default().keep_last(100))?)
        } else {
            None
        },
        debug: if ncfg.debug_image {
            Some(node.create_publisher::<Image>(
                &t.debug_image,
                QosProfile::sensor_data().keep_last(1),
            )?)
        } else {
            None
        },
    };
    let diag_pub = node
        .create_publisher::<DiagnosticArray>(&t.diagnostics, QosProfile::default().keep_last(10))?;
    {
        let sh = shared.clone();
        let ncfg2 = ncfg.clone();
        let name = node_name.clone();
        let period = Duration::from_secs_f64(ncfg.diagnostics_period_s);
        // the ROS clock: the system time, or the simulated time under `use_sim_time` (0 until `/clock`)
        let clock = node.get_ros_clock();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let now = clock
                    .lock()
                    .ok()
                    .and_then(|mut c| c.get_now().ok())
                    .map(|d| r2r::Clock::to_builtin_time(&d))
                    .unwrap_or_else(zero_time);
                let msg = diagnostics::diagnostics(&sh, &name, &ncfg2, now);
                if let Err(e) = diag_pub.publish(&msg) {
                    log::debug!("publish diagnostics: {e}");
                }
            }
        }));
    }

    let point_tracking = if odometry && ncfg.point_tracking.enabled {
        subscriptions::track_service(&mut node, &shared, &ncfg, &mut tasks)?;
        Some(
            crate::node::point_tracking::PointTracking::new(
                cfg.track.clone(),
                ncfg.point_tracking.max_points,
            )
            .map_err(|e| NodeError::Parameters(e.to_string()))?,
        )
    } else {
        None
    };
    let map_session = (stereo_odometry && ncfg.map.mode != crate::node::map_session::MapMode::Off)
        .then(|| crate::node::map_session::MapSession::new(ncfg.map.clone(), cfg.map.clone()));
    let worker = Worker {
        shared: shared.clone(),
        tracker: KeyframeTracker::new(ncfg.keyframe.clone()),
        cfg,
        node: ncfg,
        out,
        pipeline: None,
        last_pipeline_try: None,
        matcher_name,
        keyframe: None,
        vo,
        keyframe_extractor,
        resets: 0,
        by_flow: 0,
        mounting_source: "none",
        map: None,
        map_session,
        point_tracking,
        semantic: None,
        last_latency_ms: std::cell::Cell::new(None),
    };
    // Create the pipeline before the first frame (a failure is logged, counted and retried).
    let worker_thread = std::thread::Builder::new()
        .name("matcha-worker".into())
        .spawn(move || {
            let mut w = worker;
            w.ensure_pipeline();
            w.run()
        })?;

    let stop = Arc::new(AtomicBool::new(false));
    let spin_stop = stop.clone();
    let spinner = std::thread::Builder::new()
        .name("matcha-spin".into())
        .spawn(move || {
            while !spin_stop.load(Ordering::SeqCst) {
                node.spin_once(Duration::from_millis(20));
            }
        })?;

    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        Ok::<(), std::io::Error>(())
    })?;
    log::info!("shutting down");
    if let Ok(mut inbox) = shared.inbox.lock() {
        inbox.shutdown = true;
    }
    shared.wake.notify_all();
    let _ = worker_thread.join();
    stop.store(true, Ordering::SeqCst);
    let _ = spinner.join();
    for t in tasks {
        t.abort();
    }
    Ok(())
}
