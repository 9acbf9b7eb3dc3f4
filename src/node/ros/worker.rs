//! The worker thread: it owns the pipeline and the state of the configured mode, takes work from the
//! [`super::inbox::Inbox`] (odometry service calls first, then `match` calls, then frames under the
//! admission policy) and hands each frame to its mode ([`super::pair_modes`], [`super::relocalization`],
//! [`super::vo_mode`]). A frame that fails is counted under its cause and the next one is processed
//! normally; the pipeline is created lazily and retried while it cannot be (a missing engine file).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use r2r::std_msgs::msg::Header;

use super::inbox::{Control, Frame, Job, Shared};
use super::publish::Outputs;
use crate::config::MatchaConfig;
use crate::features::Features;
use crate::geometry::PinholeCamera;
use crate::image::RgbImage;
use crate::node::config::{Mode, NodeConfig};
use crate::node::convert::{self, BadInput};
use crate::node::keyframes::KeyframeTracker;
use crate::node::visual_odometry::RobotVo;
use crate::pipeline::Pipeline;

/// A decoded image with its calibration.
pub(super) struct Decoded {
    pub header: Header,
    pub image: RgbImage,
    pub camera: PinholeCamera,
    pub received: Instant,
}

/// The keyframe of the `odometry` mode's correspondences.
pub(super) struct Keyframe {
    pub header: Header,
    pub features: Features,
    pub camera: PinholeCamera,
    pub image: Option<RgbImage>,
}

/// The worker's state (one per node).
pub(super) struct Worker {
    pub shared: Arc<Shared>,
    pub cfg: MatchaConfig,
    pub node: NodeConfig,
    pub out: Outputs,
    pub pipeline: Option<Pipeline>,
    pub last_pipeline_try: Option<Instant>,
    pub matcher_name: String,
    /// `odometry` mode with `node.odometry_correspondences`: which frame the correspondences refer to.
    pub tracker: KeyframeTracker,
    pub keyframe: Option<Keyframe>,
    /// The odometry modes' visual odometry (stereo or monocular; `None` in the other modes).
    pub vo: Option<RobotVo>,
    /// Keyframe features computed on their own thread (odometry with deferred keyframes).
    pub keyframe_extractor: Option<crate::vo::background::BackgroundExtractor>,
    /// `reset` calls served (odometry modes).
    pub resets: u64,
    /// Frames answered by landmark tracking alone (odometry modes).
    pub by_flow: u64,
    /// Where the mounting in use came from (odometry modes; logged when it changes).
    pub mounting_source: &'static str,
    /// The `relocalization` mode's map (opened once the pipeline names the descriptor).
    pub map: Option<crate::map::AppearanceMap>,
    /// The `match` service's semantic extractor, built on its first semantic request.
    pub semantic: Option<crate::features::matcha::Matcha>,
    /// Point tracking (odometry modes with `node.point_tracking.enabled`).
    pub point_tracking: Option<crate::node::point_tracking::PointTracking>,
    /// Stereo odometry with `node.map.mode` build or localize.
    pub map_session: Option<crate::node::map_session::MapSession>,
    /// Receipt → publication latency of the frame just answered (set by the publishing functions, which
    /// borrow the worker shared).
    pub last_latency_ms: std::cell::Cell<Option<f64>>,
}

/// What the worker takes from the inbox.
enum Work {
    Frame(Box<Job>),
    Service(Box<r2r::ServiceRequest<r2r::matcha_msgs::srv::Match::Service>>),
    Control(Box<Control>),
}

impl Worker {
    /// Creates the pipeline if it is missing and a retry is due; `false` while there is none.
    pub fn ensure_pipeline(&mut self) -> bool {
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
            Ok(mut p) => {
                log::info!(
                    "pipeline ready: descriptor '{}', matcher '{}'",
                    p.descriptor_name(),
                    self.matcher_name
                );
                warm_up(&mut p);
                if let Ok(mut st) = self.shared.status.lock() {
                    *st = (0, "ok".into());
                }
                self.pipeline = Some(p);
                self.open_relocalization_map();
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

    /// The pipeline, or the cause to count when there is none.
    pub fn pipeline(&mut self) -> Result<&mut Pipeline, BadInput> {
        self.pipeline
            .as_mut()
            .ok_or_else(|| BadInput::new("pipeline_unavailable", "no pipeline"))
    }

    /// The descriptor's and the matcher's names (for the messages).
    pub fn names(&self) -> (String, String) {
        let d = self
            .pipeline
            .as_ref()
            .map(|p| p.descriptor_name().to_string())
            .unwrap_or_default();
        (d, self.matcher_name.clone())
    }

    /// Matches two feature sets and estimates their relative pose.
    pub fn match_features(
        &mut self,
        (a, camera_a): (&Features, &PinholeCamera),
        (b, camera_b): (&Features, &PinholeCamera),
    ) -> Result<crate::pipeline::PairResult, BadInput> {
        self.pipeline()?
            .match_pair(a, camera_a, b, camera_b)
            .map_err(|e| BadInput::new("pipeline_error", e.to_string()))
    }

    /// [`Self::match_features`] with the pipeline's denser second try on a planar ambiguity
    /// ([`crate::pipeline::Pipeline::match_images`]): for requests (the `match` service), not for the camera
    /// stream, whose latency it would double.
    pub fn match_images(
        &mut self,
        a: crate::pipeline::Frame<'_>,
        b: crate::pipeline::Frame<'_>,
    ) -> Result<crate::pipeline::ImagePairResult, BadInput> {
        self.pipeline()?
            .match_images(a, b)
            .map_err(|e| BadInput::new("pipeline_error", e.to_string()))
    }

    /// The features of one image.
    pub fn extract(&mut self, img: &RgbImage) -> Result<Features, BadInput> {
        self.pipeline()?
            .extract(img)
            .map_err(|e| BadInput::new("pipeline_error", e.to_string()))
    }

    /// The latest CameraInfo of camera `cam_idx` (0 left, 1 right), or why there is none. A frame that
    /// arrived before its camera's first CameraInfo waits up to `node.camera_info_wait_s` for it: the two
    /// topics' arrival order is not fixed, and the first frame is not to be lost to that race.
    pub fn camera_info(
        &self,
        cam_idx: usize,
    ) -> Result<r2r::sensor_msgs::msg::CameraInfo, BadInput> {
        let deadline =
            Instant::now() + Duration::from_secs_f64(self.node.camera_info_wait_s.max(0.0));
        let mut infos = self.shared.camera_info.lock().ok();
        loop {
            let Some(guard) = infos else { break };
            if let Some(info) = guard[cam_idx].clone() {
                return Ok(info);
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            infos = self
                .shared
                .camera_info_arrived
                .wait_timeout(guard, deadline - now)
                .ok()
                .map(|(g, _)| g);
        }
        let topic = if cam_idx == 0 {
            &self.node.topics.camera_info
        } else {
            &self.node.topics.right_camera_info
        };
        Err(BadInput::new(
            "no_camera_info",
            format!(
                "no CameraInfo received on '{topic}' (waited {:.1} s): frame skipped",
                self.node.camera_info_wait_s
            ),
        ))
    }

    /// Decodes a frame and makes its camera from the latest CameraInfo of camera `cam_idx`.
    pub fn decode(&self, f: &Frame, cam_idx: usize) -> Result<Decoded, BadInput> {
        let image = convert::decode_image(&f.msg, self.node.max_image_pixels)?;
        let info = self.camera_info(cam_idx)?;
        let camera = convert::camera_from_info(&info, image.width(), image.height())?;
        Ok(Decoded {
            header: f.msg.header().clone(),
            image,
            camera,
            received: f.received,
        })
    }

    /// The next piece of work, with the frames the admission policy dropped on the way; `None`: stop.
    fn next_work(
        &mut self,
        free_since: Instant,
    ) -> Option<(Option<Work>, crate::node::admission::Drops)> {
        let mut inbox = self.shared.inbox.lock().ok()?;
        loop {
            if inbox.shutdown {
                return None;
            }
            if let Some(c) = inbox.control.pop_front() {
                return Some((Some(Work::Control(Box::new(c))), Default::default()));
            }
            if let Some(req) = inbox.service.pop_front() {
                return Some((Some(Work::Service(Box::new(req))), Default::default()));
            }
            if !inbox.frames.is_empty() {
                let (job, drops) = inbox.frames.take(free_since, Instant::now());
                if job.is_some() || drops.total() > 0 {
                    return Some((job.map(|j| Work::Frame(Box::new(j))), drops));
                }
            }
            inbox = self
                .shared
                .wake
                .wait_timeout(inbox, Duration::from_millis(500))
                .ok()?
                .0;
        }
    }

    /// The worker loop: until the inbox says shutdown (the frame in hand is finished first).
    pub fn run(mut self) {
        let mut free_since = Instant::now();
        loop {
            let Some((work, drops)) = self.next_work(free_since) else {
                return;
            };
            self.shared.count_drops(&drops);
            let Some(work) = work else { continue };
            if self.shared.reset_requested.swap(false, Ordering::SeqCst) {
                self.restart_tracking();
            }
            let started = Instant::now();
            let job = match work {
                Work::Service(req) => {
                    self.serve(*req);
                    free_since = Instant::now();
                    continue;
                }
                Work::Control(c) => {
                    self.control(*c);
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
                Job::Mono(f) => self.monocular_odometry(&f),
                Job::Stereo(l, r) if self.node.mode == Mode::StereoOdometry => {
                    self.stereo_odometry(&l, &r)
                }
                Job::Stereo(l, r) => self.stereo(&l, &r),
            };
            if let Err(b) = r {
                self.shared.problem(&b);
            }
            free_since = Instant::now();
            self.update_admission(free_since - started);
        }
    }

    /// The input's stamps went back (a bag restarted): tracking starts again, `odom` continuous.
    fn restart_tracking(&mut self) {
        self.tracker.reset();
        self.keyframe = None;
        if let Some(vo) = self.vo.as_mut() {
            if let Err(e) = vo.restart() {
                log::error!("odometry: cannot restart: {e}");
            }
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
}

/// Runs the engines once on a blank VGA image, so that the first camera frame does not pay for the
/// runtime's first-run allocations (a failure here shows again, counted, on the first frame).
pub(super) fn warm_up(p: &mut Pipeline) {
    let t0 = Instant::now();
    match p.extract(&RgbImage::new(640, 480)) {
        Ok(_) => log::info!(
            "engines warmed up in {:.0} ms",
            t0.elapsed().as_secs_f64() * 1e3
        ),
        Err(e) => log::warn!("engine warm-up failed: {e}"),
    }
}
