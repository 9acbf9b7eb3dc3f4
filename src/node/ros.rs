//! The r2r node (feature `ros`): the worker that runs the pipeline for each mode, publishers, the `match`
//! service, diagnostics and `run`, which wires them together. Frames enter in [`inbox`]; the parameters
//! are read in [`params`]; logging goes to ROS through [`logging`].
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

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use nalgebra::Isometry3;
use r2r::builtin_interfaces::msg::Time;
use r2r::diagnostic_msgs::msg::{DiagnosticArray, DiagnosticStatus, KeyValue};
use r2r::geometry_msgs::msg::{
    PoseWithCovariance, PoseWithCovarianceStamped, Twist, TwistWithCovariance,
};
use r2r::matcha_msgs::msg::Correspondences;
use r2r::matcha_msgs::srv::Match;
use r2r::nav_msgs::msg::Odometry;
use r2r::sensor_msgs::msg::{CameraInfo, CompressedImage, Image};
use r2r::std_msgs::msg::Header;
use r2r::{ParameterValue, QosProfile};

use super::config::{Mode, NodeConfig, Reliability, Transport};
use super::convert::{self, BadInput, ImageMsg, PairOutput};
use super::keyframes::{covariance_b_in_a, pose_b_in_a, published_pose, OdometryTracker, Step};
use super::map::{global_descriptor, KeyframeMap};
use super::sync::Side;
use crate::config::MatchaConfig;
use crate::features::Features;
use crate::geometry::PinholeCamera;
use crate::image::RgbImage;
use crate::pipeline::Pipeline;

/// Errors that stop the node at start-up.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// rcl / r2r failure.
    #[error("ROS: {0}")]
    Ros(#[from] r2r::Error),
    /// Invalid parameters.
    #[error("{0}")]
    Parameters(String),
    /// The keyframe map cannot be used.
    #[error(transparent)]
    Map(#[from] super::map::MapError),
    /// Runtime (threads, signals).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

const NODE_NAME: &str = "matcha_node";

mod inbox;
mod logging;
mod params;

use inbox::{Frame, Job, Shared, SERVICE_QUEUE};
pub use logging::init_logging;
pub use params::config_from_params;

// ------------------------------------------------------------------------------------------------ publishers

struct Outputs {
    correspondences: r2r::Publisher<Correspondences>,
    relative_pose: r2r::Publisher<PoseWithCovarianceStamped>,
    odometry: r2r::Publisher<Odometry>,
    debug: Option<r2r::Publisher<Image>>,
}

impl Outputs {
    fn debug_wanted(&self) -> bool {
        self.debug
            .as_ref()
            .and_then(|p| p.get_inter_process_subscription_count().ok())
            .is_some_and(|n| n > 0)
    }
}

// ------------------------------------------------------------------------------------------------ worker

struct Decoded {
    header: Header,
    image: RgbImage,
    camera: PinholeCamera,
    received: Instant,
}

struct Keyframe {
    header: Header,
    features: Features,
    camera: PinholeCamera,
    image: Option<RgbImage>,
}

struct Worker {
    shared: Arc<Shared>,
    cfg: MatchaConfig,
    node: NodeConfig,
    out: Outputs,
    pipeline: Option<Pipeline>,
    last_pipeline_try: Option<Instant>,
    matcher_name: String,
    tracker: OdometryTracker,
    keyframe: Option<Keyframe>,
    map: Option<KeyframeMap>,
    map_dirty: usize,
    /// Receipt → publication latency of the frame just answered (set by [`Self::publish_pair`]).
    last_latency_ms: std::cell::Cell<Option<f64>>,
}

/// What the worker takes from the inbox.
enum Work {
    Frame(Box<Job>),
    Service(Box<r2r::ServiceRequest<Match::Service>>),
}

fn zero_time() -> Time {
    Time { sec: 0, nanosec: 0 }
}

impl Worker {
    fn ensure_pipeline(&mut self) -> bool {
        if self.pipeline.is_some() {
            return true;
        }
        let due = self
            .last_pipeline_try
            .is_none_or(|t| t.elapsed().as_secs_f64() >= self.node.pipeline_retry_s);
        if !due {
            return false;
        }
        self.last_pipeline_try = Some(Instant::now());
        match Pipeline::new(&self.cfg) {
            Ok(p) => {
                log::info!(
                    "pipeline ready: descriptor '{}', matcher '{}'",
                    p.descriptor_name(),
                    self.matcher_name
                );
                if let Ok(mut st) = self.shared.status.lock() {
                    *st = (0, "ok".into());
                }
                self.pipeline = Some(p);
                self.load_map();
                true
            }
            Err(e) => {
                let msg = format!("{e} (retrying every {} s)", self.node.pipeline_retry_s);
                self.shared
                    .problem(&BadInput::new("pipeline_unavailable", msg.clone()));
                if let Ok(mut st) = self.shared.status.lock() {
                    *st = (2, msg);
                }
                false
            }
        }
    }

    fn load_map(&mut self) {
        if self.node.mode != Mode::Relocalization || self.map.is_some() {
            return;
        }
        let Some(p) = &self.pipeline else { return };
        let name = p.descriptor_name().to_string();
        let path = PathBuf::from(&self.node.relocalization.map_path);
        if path.exists() {
            // dimension is checked against the first extraction (unknown before); load lazily by name
            match std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v.get("dim").and_then(|d| d.as_u64()))
            {
                Some(dim) => match KeyframeMap::load(&path, &name, dim as usize) {
                    Ok(m) => {
                        log::info!(
                            "loaded keyframe map {} ({} keyframes)",
                            path.display(),
                            m.keyframes.len()
                        );
                        self.map = Some(m);
                    }
                    Err(e) => self
                        .shared
                        .problem(&BadInput::new("map_unusable", e.to_string())),
                },
                None => self.shared.problem(&BadInput::new(
                    "map_unusable",
                    format!("{} is not a keyframe map", path.display()),
                )),
            }
        } else if self.node.relocalization.build_map {
            log::info!("no map at {}: building a new one", path.display());
        } else {
            self.shared.problem(&BadInput::new(
                "map_unusable",
                format!(
                    "{} does not exist (set node.relocalization.build_map to make one)",
                    path.display()
                ),
            ));
        }
    }

    fn save_map(&mut self) {
        if !self.node.relocalization.build_map || self.map_dirty == 0 {
            return;
        }
        if let Some(m) = &self.map {
            let path = PathBuf::from(&self.node.relocalization.map_path);
            match m.save(&path) {
                Ok(()) => {
                    log::info!(
                        "saved keyframe map {} ({} keyframes)",
                        path.display(),
                        m.keyframes.len()
                    );
                    self.map_dirty = 0;
                }
                Err(e) => log::error!("{e}"),
            }
        }
    }

    fn decode(&self, f: &Frame, cam_idx: usize) -> Result<Decoded, BadInput> {
        let image = convert::decode_image(&f.msg, self.node.max_image_pixels)?;
        let info = self
            .shared
            .camera_info
            .lock()
            .ok()
            .and_then(|c| c[cam_idx].clone())
            .ok_or_else(|| {
                let topic = if cam_idx == 0 {
                    &self.node.topics.camera_info
                } else {
                    &self.node.topics.right_camera_info
                };
                BadInput::new(
                    "no_camera_info",
                    format!("no CameraInfo received yet on '{topic}': frame skipped"),
                )
            })?;
        let camera = convert::camera_from_info(&info, image.width(), image.height())?;
        Ok(Decoded {
            header: f.msg.header().clone(),
            image,
            camera,
            received: f.received,
        })
    }

    fn run(mut self) {
        let mut free_since = Instant::now();
        loop {
            let (job, drops) = {
                let Ok(mut inbox) = self.shared.inbox.lock() else {
                    return;
                };
                loop {
                    if inbox.shutdown {
                        drop(inbox);
                        self.save_map();
                        return;
                    }
                    if let Some(req) = inbox.service.pop_front() {
                        break (Some(Work::Service(Box::new(req))), Default::default());
                    }
                    if !inbox.frames.is_empty() {
                        let (job, drops) = inbox.frames.take(free_since, Instant::now());
                        if job.is_some() || drops.total() > 0 {
                            break (job.map(|j| Work::Frame(Box::new(j))), drops);
                        }
                    }
                    inbox = match self
                        .shared
                        .wake
                        .wait_timeout(inbox, Duration::from_millis(500))
                    {
                        Ok((g, _)) => g,
                        Err(_) => return,
                    };
                }
            };
            self.shared.count_drops(&drops);
            let Some(work) = job else { continue };
            if self.shared.reset_requested.swap(false, Ordering::SeqCst) {
                self.tracker.reset();
                self.keyframe = None;
            }
            let started = Instant::now();
            let job = match work {
                Work::Service(req) => {
                    self.serve(*req);
                    free_since = Instant::now();
                    continue;
                }
                Work::Frame(job) => *job,
            };
            if !self.ensure_pipeline() {
                continue;
            }
            let r = match job {
                Job::Mono(f) if self.node.mode == Mode::Relocalization => self.relocalize(&f),
                Job::Mono(f) => self.odometry(&f),
                Job::Stereo(l, r) => self.stereo(&l, &r),
            };
            self.finish(r);
            free_since = Instant::now();
            self.update_admission(free_since - started);
        }
    }

    /// After a result: the admission policy learns the processing time and the latency.
    fn update_admission(&mut self, processing: Duration) {
        // frames without a result (the first keyframe, no relocalization candidate) count as cost only
        let latency_ms = self.last_latency_ms.take().unwrap_or(f64::NAN);
        if let Ok(mut inbox) = self.shared.inbox.lock() {
            if let Some((before, after)) = inbox.frames.processed(processing, latency_ms) {
                log::info!(
                    "decimation: a result every {after} camera period(s), was {before} (latency p99 {:.1} ms)",
                    inbox.frames.latency_p99_ms().unwrap_or(f64::NAN)
                );
            }
        }
    }

    fn finish(&mut self, r: Result<(), BadInput>) {
        if let Err(b) = r {
            self.shared.problem(&b);
        }
    }

    fn publish_pair(
        &self,
        o: &PairOutput<'_>,
        received: Instant,
        images: Option<(&RgbImage, &RgbImage)>,
    ) -> Correspondences {
        let ms = received.elapsed().as_secs_f32() * 1e3;
        let msg = convert::correspondences_msg(o, ms);
        if let Err(e) = self.out.correspondences.publish(&msg) {
            log::error!("publish correspondences: {e}");
        }
        if msg.pose_valid {
            let pose = PoseWithCovarianceStamped {
                header: Header {
                    stamp: o.header.stamp.clone(),
                    frame_id: o.reference_frame_id.clone(),
                },
                pose: msg.relative_pose.clone(),
            };
            if let Err(e) = self.out.relative_pose.publish(&pose) {
                log::error!("publish relative_pose: {e}");
            }
        }
        if let Some((a, b)) = images {
            if let Some(p) = &self.out.debug {
                if let Err(e) = p.publish(&convert::debug_image(a, b, &msg)) {
                    log::error!("publish debug image: {e}");
                }
            }
        }
        let latency_ms = f64::from(received.elapsed().as_secs_f32() * 1e3);
        if let Ok(mut s) = self.shared.stats.lock() {
            s.processed += 1;
            s.latency(latency_ms);
            s.last_matches = o.matches.matches.len();
            s.last_inliers = msg.num_inliers as usize;
            if msg.pose_valid {
                s.poses += 1;
            }
        }
        self.last_latency_ms.set(Some(latency_ms));
        msg
    }

    fn extract(&mut self, img: &RgbImage) -> Result<Features, BadInput> {
        let p = self
            .pipeline
            .as_mut()
            .ok_or_else(|| BadInput::new("pipeline_unavailable", "no pipeline"))?;
        p.extract(img)
            .map_err(|e| BadInput::new("pipeline_error", e.to_string()))
    }

    fn odometry(&mut self, f: &Frame) -> Result<(), BadInput> {
        let d = self.decode(f, 0)?;
        let feats = self.extract(&d.image)?;
        let want_debug = self.out.debug_wanted();
        let Some(kf) = self.keyframe.take() else {
            self.tracker.step(None);
            self.publish_odometry(&d.header, &self.tracker.odom_from_keyframe(), None);
            if let Ok(mut s) = self.shared.stats.lock() {
                s.processed += 1;
            }
            self.keyframe = Some(Keyframe {
                header: d.header,
                features: feats,
                camera: d.camera,
                image: want_debug.then_some(d.image),
            });
            return Ok(());
        };
        let p = self
            .pipeline
            .as_mut()
            .ok_or_else(|| BadInput::new("pipeline_unavailable", "no pipeline"))?;
        let names = (p.descriptor_name().to_string(), self.matcher_name.clone());
        let pair = p
            .match_pair(&kf.features, &kf.camera, &feats, &d.camera)
            .map_err(|e| BadInput::new("pipeline_error", e.to_string()));
        let pair = match pair {
            Ok(p) => p,
            Err(e) => {
                self.keyframe = Some(kf);
                return Err(e);
            }
        };
        let (iso, cov) = published_pose(&pair.pose);
        let out = PairOutput {
            header: d.header.clone(),
            reference_stamp: kf.header.stamp.clone(),
            reference_frame_id: kf.header.frame_id.clone(),
            keyframe_id: self.tracker.keyframe_id(),
            features: (&kf.features, &feats),
            matches: &pair.matches,
            pose: pair.pose.as_ref().map_err(|e| e.to_string()),
            pose_b_in_a: iso,
            covariance: cov,
            metric: false,
            names: (&names.0, &names.1),
        };
        let images = match (&kf.image, want_debug) {
            (Some(a), true) => Some((a, &d.image)),
            _ => None,
        };
        self.publish_pair(&out, d.received, images);
        let step = self.tracker.step(match (&pair.pose, iso) {
            (Ok(rp), Some(iso)) => Some((iso, rp.num_inliers, rp.quality.median_parallax_deg)),
            _ => None,
        });
        let replace = match &step {
            Step::Tracked {
                odom_from_current,
                new_keyframe,
            } => {
                self.publish_odometry(&d.header, odom_from_current, Some(&cov));
                *new_keyframe
            }
            Step::Failed { reset } => *reset,
            Step::Initialise => true,
        };
        self.keyframe = Some(if replace {
            Keyframe {
                header: d.header,
                features: feats,
                camera: d.camera,
                image: want_debug.then_some(d.image),
            }
        } else {
            kf
        });
        Ok(())
    }

    fn publish_odometry(
        &self,
        header: &Header,
        odom_from_current: &Isometry3<f64>,
        cov: Option<&[f64; 36]>,
    ) {
        let mut twist_cov = vec![0.0; 36];
        for i in 0..6 {
            twist_cov[i * 6 + i] = 1e6; // not estimated
        }
        let msg = Odometry {
            header: Header {
                stamp: header.stamp.clone(),
                frame_id: self.node.odom_frame_id.clone(),
            },
            child_frame_id: header.frame_id.clone(),
            pose: PoseWithCovariance {
                pose: convert::pose_msg(odom_from_current),
                covariance: cov.map_or(vec![0.0; 36], |c| c.to_vec()),
            },
            twist: TwistWithCovariance {
                twist: Twist::default(),
                covariance: twist_cov,
            },
        };
        if let Err(e) = self.out.odometry.publish(&msg) {
            log::error!("publish odometry: {e}");
        }
    }

    fn stereo(&mut self, l: &Frame, r: &Frame) -> Result<(), BadInput> {
        let a = self.decode(l, 0)?;
        let b = self.decode(r, 1)?;
        let baseline = self
            .shared
            .camera_info
            .lock()
            .ok()
            .and_then(|c| c[1].as_ref().and_then(convert::baseline_from_p));
        let fa = self.extract(&a.image)?;
        let fb = self.extract(&b.image)?;
        let want_debug = self.out.debug_wanted();
        let p = self
            .pipeline
            .as_mut()
            .ok_or_else(|| BadInput::new("pipeline_unavailable", "no pipeline"))?;
        let names = (p.descriptor_name().to_string(), self.matcher_name.clone());
        let pair = p
            .match_pair(&fa, &a.camera, &fb, &b.camera)
            .map_err(|e| BadInput::new("pipeline_error", e.to_string()))?;
        let (iso, cov) = match &pair.pose {
            Ok(rp) => {
                let t = rp.translation.unwrap_or_else(nalgebra::Vector3::zeros);
                let mut iso = pose_b_in_a(&rp.rotation, &t);
                let mut cov = covariance_b_in_a(rp);
                if let Some(bl) = baseline {
                    // Unit translation → metres: scale the translation block of the covariance, S·C·S.
                    iso.translation.vector *= bl;
                    let s = |i: usize| if i < 3 { bl } else { 1.0 };
                    for (i, v) in cov.iter_mut().enumerate() {
                        *v *= s(i / 6) * s(i % 6);
                    }
                }
                (Some(iso), cov)
            }
            Err(_) => (None, [0.0; 36]),
        };
        let out = PairOutput {
            header: b.header.clone(),
            reference_stamp: a.header.stamp.clone(),
            reference_frame_id: a.header.frame_id.clone(),
            keyframe_id: 0,
            features: (&fa, &fb),
            matches: &pair.matches,
            pose: pair.pose.as_ref().map_err(|e| e.to_string()),
            pose_b_in_a: iso,
            covariance: cov,
            metric: baseline.is_some(),
            names: (&names.0, &names.1),
        };
        let received = a.received.min(b.received);
        self.publish_pair(&out, received, want_debug.then_some((&a.image, &b.image)));
        Ok(())
    }

    fn relocalize(&mut self, f: &Frame) -> Result<(), BadInput> {
        let d = self.decode(f, 0)?;
        let feats = self.extract(&d.image)?;
        let p = self
            .pipeline
            .as_mut()
            .ok_or_else(|| BadInput::new("pipeline_unavailable", "no pipeline"))?;
        let names = (p.descriptor_name().to_string(), self.matcher_name.clone());
        if self.map.is_none() && self.node.relocalization.build_map {
            self.map = Some(KeyframeMap::new(&names.0, feats.descriptor_dim()));
        }
        let Some(map) = self.map.as_ref() else {
            return Err(BadInput::new(
                "map_unusable",
                "no keyframe map loaded: frame skipped",
            ));
        };
        if map.dim != feats.descriptor_dim() {
            return Err(BadInput::new(
                "map_unusable",
                format!(
                    "map descriptors are {}-D, extractor gives {}-D",
                    map.dim,
                    feats.descriptor_dim()
                ),
            ));
        }
        let rc = &self.node.relocalization;
        let global = global_descriptor(&feats.descriptors);
        let candidates = map.retrieve(&global, rc.candidates, rc.min_global_similarity);
        let mut best: Option<(usize, crate::pipeline::PairResult, Features)> = None;
        for (idx, _) in candidates {
            let kf = &map.keyframes[idx];
            let Some(kf_feats) = kf.features(map.dim) else {
                continue;
            };
            let res = match p.match_pair(&kf_feats, &kf.camera, &feats, &d.camera) {
                Ok(r) => r,
                Err(e) => return Err(BadInput::new("pipeline_error", e.to_string())),
            };
            let inl =
                |r: &crate::pipeline::PairResult| r.pose.as_ref().map_or(0, |p| p.num_inliers);
            if best.as_ref().is_none_or(|(_, b, _)| inl(&res) > inl(b)) {
                best = Some((idx, res, kf_feats));
            }
        }
        let best_inliers = best
            .as_ref()
            .map_or(0, |(_, r, _)| r.pose.as_ref().map_or(0, |p| p.num_inliers));
        if let Some((idx, res, kf_feats)) = &best {
            let kf = &map.keyframes[*idx];
            let (iso, cov) = published_pose(&res.pose);
            let out = PairOutput {
                header: d.header.clone(),
                reference_stamp: Time {
                    sec: (kf.stamp_ns.div_euclid(1_000_000_000)) as i32,
                    nanosec: kf.stamp_ns.rem_euclid(1_000_000_000) as u32,
                },
                reference_frame_id: format!("matcha_keyframe_{}", kf.id),
                keyframe_id: kf.id,
                features: (kf_feats, &feats),
                matches: &res.matches,
                pose: res.pose.as_ref().map_err(|e| e.to_string()),
                pose_b_in_a: iso,
                covariance: cov,
                metric: false,
                names: (&names.0, &names.1),
            };
            self.publish_pair(&out, d.received, None);
        } else if let Ok(mut s) = self.shared.stats.lock() {
            s.processed += 1;
        }
        if self.node.relocalization.build_map
            && best_inliers < self.node.relocalization.new_keyframe_max_inliers
        {
            if let Some(map) = self.map.as_mut() {
                let id = map.add(
                    &feats,
                    d.camera,
                    convert::time_ns(&d.header.stamp),
                    &d.header.frame_id,
                );
                log::info!("map: added keyframe {id} (best match had {best_inliers} inliers)");
                self.map_dirty += 1;
                if self.map_dirty >= 10 {
                    self.save_map();
                }
            }
        }
        Ok(())
    }

    fn serve(&mut self, req: r2r::ServiceRequest<Match::Service>) {
        let resp = match self.serve_inner(&req.message) {
            Ok(c) => Match::Response {
                success: true,
                message: String::new(),
                correspondences: c,
            },
            Err(b) => {
                self.shared.problem(&b);
                Match::Response {
                    success: false,
                    message: format!("{}: {}", b.cause, b.message),
                    correspondences: Correspondences::default(),
                }
            }
        };
        if let Err(e) = req.respond(resp) {
            log::error!("match service: cannot respond: {e}");
        }
    }

    fn serve_inner(&mut self, m: &Match::Request) -> Result<Correspondences, BadInput> {
        let received = Instant::now();
        if !self.ensure_pipeline() {
            return Err(BadInput::new(
                "pipeline_unavailable",
                "the pipeline could not be created (see diagnostics)",
            ));
        }
        let max = self.node.max_image_pixels;
        let ia = convert::decode_image(&ImageMsg::Raw(m.image_a.clone()), max)?;
        let ib = convert::decode_image(&ImageMsg::Raw(m.image_b.clone()), max)?;
        let ca = convert::camera_from_info(&m.camera_info_a, ia.width(), ia.height())?;
        let cb = convert::camera_from_info(&m.camera_info_b, ib.width(), ib.height())?;
        let fa = self.extract(&ia)?;
        let fb = self.extract(&ib)?;
        let p = self
            .pipeline
            .as_mut()
            .ok_or_else(|| BadInput::new("pipeline_unavailable", "no pipeline"))?;
        let names = (p.descriptor_name().to_string(), self.matcher_name.clone());
        let pair = p
            .match_pair(&fa, &ca, &fb, &cb)
            .map_err(|e| BadInput::new("pipeline_error", e.to_string()))?;
        let (iso, cov) = published_pose(&pair.pose);
        let out = PairOutput {
            header: m.image_b.header.clone(),
            reference_stamp: m.image_a.header.stamp.clone(),
            reference_frame_id: m.image_a.header.frame_id.clone(),
            keyframe_id: 0,
            features: (&fa, &fb),
            matches: &pair.matches,
            pose: pair.pose.as_ref().map_err(|e| e.to_string()),
            pose_b_in_a: iso,
            covariance: cov,
            metric: false,
            names: (&names.0, &names.1),
        };
        Ok(convert::correspondences_msg(
            &out,
            received.elapsed().as_secs_f32() * 1e3,
        ))
    }
}

// ------------------------------------------------------------------------------------------------ run

fn qos(node: &NodeConfig) -> QosProfile {
    let base = match node.qos.reliability {
        Reliability::BestEffort => QosProfile::sensor_data(),
        Reliability::Reliable => QosProfile::default(),
    };
    base.keep_last(node.qos.depth as usize)
}

fn subscribe_images(
    node: &mut r2r::Node,
    shared: &Arc<Shared>,
    cfg: &NodeConfig,
    topic: &str,
    side: Side,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<(), NodeError> {
    let mode = cfg.mode;
    match cfg.transport {
        Transport::Raw => {
            let mut s = node.subscribe::<Image>(topic, qos(cfg))?;
            let sh = shared.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(m) = s.next().await {
                    sh.on_image(side, mode, ImageMsg::Raw(m));
                }
            }));
        }
        Transport::Compressed => {
            let topic = format!("{topic}/compressed");
            let mut s = node.subscribe::<CompressedImage>(&topic, qos(cfg))?;
            let sh = shared.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(m) = s.next().await {
                    sh.on_image(side, mode, ImageMsg::Compressed(m));
                }
            }));
        }
    }
    Ok(())
}

fn diagnostics(shared: &Shared, node_name: &str, cfg: &NodeConfig, stamp: Time) -> DiagnosticArray {
    let kv = |k: &str, v: String| KeyValue {
        key: k.into(),
        value: v,
    };
    let (level, message) = shared
        .status
        .lock()
        .map(|s| s.clone())
        .unwrap_or((2, "poisoned".into()));
    let mut values = Vec::new();
    let mut level = level;
    let mut message = message;
    if let Ok(mut s) = shared.stats.lock() {
        let rate = s.take_rate();
        values.push(kv("mode", format!("{:?}", cfg.mode).to_lowercase()));
        values.push(kv("rate_hz", format!("{rate:.2}")));
        values.push(kv("received", s.received.to_string()));
        values.push(kv("processed", s.processed.to_string()));
        values.push(kv("dropped", s.dropped.to_string()));
        values.push(kv("skipped_stale", s.admission.stale.to_string()));
        values.push(kv("skipped_decimation", s.admission.decimated.to_string()));
        values.push(kv("skipped_rate", s.admission.rate.to_string()));
        values.push(kv("dropped_behind", s.admission.behind.to_string()));
        values.push(kv("dropped_queue_full", s.admission.queue_full.to_string()));
        values.push(kv("poses", s.poses.to_string()));
        values.push(kv("last_matches", s.last_matches.to_string()));
        values.push(kv("last_inliers", s.last_inliers.to_string()));
        if let Some((p50, p99)) = s.latency_percentiles() {
            values.push(kv("latency_median_ms", format!("{p50:.1}")));
            values.push(kv("latency_p99_ms", format!("{p99:.1}")));
        }
        values.push(kv("uptime_s", format!("{:.0}", s.uptime_s())));
        for (cause, count, last) in s.causes() {
            values.push(kv(&format!("errors.{cause}"), count.to_string()));
            values.push(kv(&format!("errors.{cause}.last"), last.to_string()));
        }
        let (failures, rejected) = s.failures_and_rejections();
        values.push(kv("node_failures", failures.to_string()));
        values.push(kv("inputs_rejected", rejected.to_string()));
        if level == 0 && failures + rejected > 0 {
            level = 1;
            message = match (failures, rejected) {
                (0, r) => format!("{r} inputs rejected (see errors.*)"),
                (f, 0) => format!("{f} node failures (see errors.*)"),
                (f, r) => format!("{f} node failures, {r} inputs rejected (see errors.*)"),
            };
        }
    }
    DiagnosticArray {
        header: Header {
            stamp,
            frame_id: String::new(),
        },
        status: vec![DiagnosticStatus {
            level,
            name: format!("{node_name}: matcha"),
            message,
            hardware_id: String::new(),
            values,
        }],
    }
}

/// Runs the node until SIGINT/SIGTERM. Reads the parameters (`--ros-args`), creates subscriptions,
/// publishers and the `match` service, and processes frames.
pub fn run() -> Result<(), NodeError> {
    init_logging(NODE_NAME);
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
    let node_name = node
        .fully_qualified_name()
        .unwrap_or_else(|_| NODE_NAME.into());
    log::info!(
        "{node_name}: mode {:?}, extractor {:?}, matcher {:?}, input '{}' ({:?}, {:?} QoS depth {})",
        ncfg.mode,
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
    subscribe_images(&mut node, &shared, &ncfg, &t.image, Side::Left, &mut tasks)?;
    let infos: Vec<(&str, usize)> = if ncfg.mode.stereo_input() {
        subscribe_images(
            &mut node,
            &shared,
            &ncfg,
            &t.right_image,
            Side::Right,
            &mut tasks,
        )?;
        vec![(&t.camera_info, 0), (&t.right_camera_info, 1)]
    } else {
        vec![(&t.camera_info, 0)]
    };
    for (topic, idx) in infos {
        let mut s = node.subscribe::<CameraInfo>(topic, qos(&ncfg))?;
        let sh = shared.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(m) = s.next().await {
                if let Ok(mut c) = sh.camera_info.lock() {
                    c[idx] = Some(m);
                }
            }
        }));
    }
    let out_qos = QosProfile::default().keep_last(ncfg.qos.depth as usize);
    let out = Outputs {
        correspondences: node
            .create_publisher::<Correspondences>(&t.correspondences, out_qos.clone())?,
        relative_pose: node
            .create_publisher::<PoseWithCovarianceStamped>(&t.relative_pose, out_qos.clone())?,
        odometry: node.create_publisher::<Odometry>(&t.odometry, out_qos.clone())?,
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
    let mut service =
        node.create_service::<Match::Service>(&t.match_service, QosProfile::services_default())?;
    {
        let sh = shared.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(req) = service.next().await {
                let rejected = match sh.inbox.lock() {
                    Ok(mut inbox) if inbox.service.len() < SERVICE_QUEUE => {
                        inbox.service.push_back(req);
                        None
                    }
                    _ => Some(req),
                };
                if let Some(req) = rejected {
                    let resp = Match::Response {
                        success: false,
                        message: format!("busy: {SERVICE_QUEUE} requests already queued"),
                        correspondences: Correspondences::default(),
                    };
                    if let Err(e) = req.respond(resp) {
                        log::error!("match service: cannot respond: {e}");
                    }
                } else {
                    sh.wake.notify_one();
                }
            }
        }));
    }
    {
        let sh = shared.clone();
        let ncfg2 = ncfg.clone();
        let name = node_name.clone();
        let period = Duration::from_secs_f64(ncfg.diagnostics_period_s);
        tasks.push(tokio::spawn(async move {
            let mut clock = r2r::Clock::create(r2r::ClockType::SystemTime).ok();
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let now = clock
                    .as_mut()
                    .and_then(|c| c.get_now().ok())
                    .map(|d| r2r::Clock::to_builtin_time(&d))
                    .unwrap_or_else(zero_time);
                if let Err(e) = diag_pub.publish(&diagnostics(&sh, &name, &ncfg2, now)) {
                    log::debug!("publish diagnostics: {e}");
                }
            }
        }));
    }

    let worker = Worker {
        shared: shared.clone(),
        tracker: OdometryTracker::new(ncfg.keyframe.clone()),
        cfg,
        node: ncfg,
        out,
        pipeline: None,
        last_pipeline_try: None,
        matcher_name,
        keyframe: None,
        map: None,
        map_dirty: 0,
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
