//! Where a frame enters the node: the subscription callbacks hand each image to [`Shared::on_image`], which
//! checks its stamp, pairs left and right images in the stereo modes ([`StereoSync`]) and queues the frame
//! (or pair) under the one frame-admission policy ([`FrameAdmission`]); the worker thread takes jobs from
//! the same [`Inbox`] (odometry control calls first, then `match` service calls, then frames). Everything
//! the subscription side and the worker share lives in [`Shared`], each part behind its own lock, held
//! only for a few statements.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use r2r::matcha_msgs::srv::{Match, SetPose, Track};
use r2r::sensor_msgs::msg::CameraInfo;
use r2r::std_srvs::srv::Trigger;

use crate::node::admission::{AdmissionSettings, Drops, FrameAdmission};
use crate::node::config::{Mode, NodeConfig};
use crate::node::convert::{self, BadInput, ImageMsg};
use crate::node::stats::Stats;
use crate::node::sync::{Side, StereoSync};
use crate::node::tf_tree::TransformBuffer;

/// Service requests the inbox holds at most (further ones are answered "busy").
pub const SERVICE_QUEUE: usize = 4;

/// One received image.
pub struct Frame {
    /// The message as received (decoded by the worker).
    pub msg: ImageMsg,
    /// When it was received.
    pub received: Instant,
}

/// Work for the worker thread.
pub enum Job {
    /// One image (odometry, relocalization).
    Mono(Frame),
    /// A left/right pair with matching stamps (stereo, stereo_odometry).
    Stereo(Frame, Frame),
}

impl Job {
    /// When the job became ready for the worker (a stereo pair: when its second image arrived).
    pub fn ready_at(&self) -> Instant {
        match self {
            Job::Mono(f) => f.received,
            Job::Stereo(l, r) => l.received.max(r.received),
        }
    }

    /// Images in the job (for the drop counters).
    pub fn images(&self) -> u64 {
        match self {
            Job::Mono(_) => 1,
            Job::Stereo(..) => 2,
        }
    }
}

/// A call to the odometry's services (answered by the worker between frames, so that it applies exactly
/// from the next frame on).
pub enum Control {
    /// `reset` (`std_srvs/Trigger`).
    Reset(r2r::ServiceRequest<Trigger::Service>),
    /// `set_pose` (`matcha_msgs/SetPose`).
    SetPose(r2r::ServiceRequest<SetPose::Service>),
    /// `/initialpose`: where the robot is believed to be in `map` (a hint for the map localization).
    InitialPose(Box<r2r::geometry_msgs::msg::PoseWithCovarianceStamped>),
    /// `track` (`matcha_msgs/Track`): points to follow from the newest processed image on.
    Track(r2r::ServiceRequest<Track::Service>),
}

/// What waits for the worker.
pub struct Inbox {
    /// Frames under the admission policy.
    pub frames: FrameAdmission<Job>,
    /// `match` service requests (answered before frames).
    pub service: VecDeque<r2r::ServiceRequest<Match::Service>>,
    /// Odometry service calls (answered first).
    pub control: VecDeque<Control>,
    /// The node is stopping.
    pub shutdown: bool,
}

impl Inbox {
    /// An empty inbox with the admission settings of `cfg`.
    pub fn new(cfg: &NodeConfig) -> Self {
        Self {
            frames: FrameAdmission::new(AdmissionSettings {
                max_queued_frames: cfg.max_queued_frames,
                max_frame_wait_ms: cfg.max_frame_wait_ms,
                decimation: cfg.decimation,
                max_rate_hz: cfg.max_rate_hz,
            }),
            service: VecDeque::new(),
            control: VecDeque::new(),
            shutdown: false,
        }
    }
}

/// State shared by the subscription tasks, the worker and the diagnostics timer.
pub struct Shared {
    /// Frames and requests for the worker.
    pub inbox: Mutex<Inbox>,
    /// Wakes the worker.
    pub wake: Condvar,
    /// Counters.
    pub stats: Mutex<Stats>,
    /// The latest CameraInfo of the left (0) and right (1) camera.
    pub camera_info: Mutex<[Option<CameraInfo>; 2]>,
    /// Notified when a CameraInfo arrives (a frame that came first waits on it).
    pub camera_info_arrived: Condvar,
    /// The static transforms received on `/tf_static` (the camera's mounting, a two-frame stereo rig).
    pub tf_static: Mutex<TransformBuffer>,
    sync: Mutex<StereoSync<Frame>>,
    last_stamp: Mutex<[Option<i64>; 2]>,
    /// A stamp went backwards: the worker restarts its tracking before the next frame.
    pub reset_requested: AtomicBool,
    /// Level (0 ok, 1 warn, 2 error) and message of the node's own health, for `/diagnostics`.
    pub status: Mutex<(u8, String)>,
}

impl Shared {
    /// The shared state for a node configured by `cfg`.
    pub fn new(cfg: &NodeConfig) -> Self {
        Self {
            inbox: Mutex::new(Inbox::new(cfg)),
            wake: Condvar::new(),
            stats: Mutex::new(Stats::new(std::time::Duration::from_secs_f64(
                cfg.log_throttle_s,
            ))),
            camera_info: Mutex::new([None, None]),
            camera_info_arrived: Condvar::new(),
            tf_static: Mutex::new(TransformBuffer::new()),
            sync: Mutex::new(StereoSync::new(
                (cfg.stereo.sync_tolerance_s * 1e9) as i64,
                cfg.stereo.max_pending,
            )),
            last_stamp: Mutex::new([None, None]),
            reset_requested: AtomicBool::new(false),
            status: Mutex::new((1, "starting: pipeline not created yet".into())),
        }
    }

    /// Counts a problem and logs it (rate-limited).
    pub fn problem(&self, b: &BadInput) {
        let log = self
            .stats
            .lock()
            .ok()
            .and_then(|mut s| s.problem(b.cause, &b.message));
        if let Some(text) = log {
            log::warn!("{text}");
        }
    }

    /// Counts frames that the admission policy did not process.
    pub fn count_drops(&self, drops: &Drops) {
        if drops.total() == 0 {
            return;
        }
        if let Ok(mut s) = self.stats.lock() {
            s.dropped += drops.total();
            s.admission.add(drops);
        }
    }

    fn put(&self, job: Job) {
        let drops = match self.inbox.lock() {
            Ok(mut inbox) => {
                let ready = job.ready_at();
                let images = job.images();
                inbox.frames.push(ready, images, job)
            }
            Err(_) => return,
        };
        self.count_drops(&drops);
        self.wake.notify_one();
    }

    /// Checks that stamps of `side` do not go backwards; on a jump back, drops what is queued and asks the
    /// worker to reset.
    fn check_stamp(&self, side: usize, stamp: i64) {
        let mut jumped = None;
        if let Ok(mut last) = self.last_stamp.lock() {
            if let Some(prev) = last[side] {
                if stamp < prev {
                    jumped = Some(prev - stamp);
                }
            }
            last[side] = Some(stamp);
        }
        let Some(back) = jumped else { return };
        self.problem(&BadInput::new(
            "stamp_backwards",
            format!(
                "stamp went backwards by {:.3} s (bag restarted?): tracking and queues reset",
                back as f64 * 1e-9
            ),
        ));
        self.reset_requested.store(true, Ordering::SeqCst);
        if let Ok(mut sync) = self.sync.lock() {
            sync.clear();
        }
        // the queued frames belong to the old run: dropped, like unpaired stereo images (no admission reason)
        let cleared = self.inbox.lock().map_or(0, |mut i| i.frames.clear());
        if cleared > 0 {
            if let Ok(mut s) = self.stats.lock() {
                s.dropped += cleared;
            }
        }
    }

    /// A received image of `side`.
    pub fn on_image(&self, side: Side, mode: Mode, msg: ImageMsg) {
        let frame = Frame {
            received: Instant::now(),
            msg,
        };
        if let Ok(mut s) = self.stats.lock() {
            s.received += 1;
        }
        let stamp = convert::time_ns(&frame.msg.header().stamp);
        let idx = if side == Side::Left { 0 } else { 1 };
        self.check_stamp(idx, stamp);
        if !mode.stereo_input() {
            self.put(Job::Mono(frame));
            return;
        }
        let pair = match self.sync.lock() {
            Ok(mut sync) => {
                let before = sync.dropped();
                let pair = sync.push(side, stamp, frame);
                let lost = sync.dropped() - before;
                if lost > 0 {
                    if let Ok(mut s) = self.stats.lock() {
                        s.dropped += lost;
                    }
                }
                pair
            }
            Err(_) => None,
        };
        if let Some(((_, l), (_, r))) = pair {
            self.put(Job::Stereo(l, r));
        }
    }
}
