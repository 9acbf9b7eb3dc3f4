//! The stereo odometry's map (`node.map`): build a map from the run (`mode: build`: every odometry
//! keyframe, with `map` = this run's `odom`), or localize the run in a saved map (`mode: localize`) and
//! give the transform `map → odom` that a localizer publishes beside the odometry (REP-105: never
//! `map → base_link`, so `odom` stays continuous and `map` may jump).
//!
//! Localization runs on its own thread ([`crate::map::Localizer`]: retrieval, matching, PnP,
//! verification; tens of milliseconds), fed with odometry keyframes at most every `min_interval_s` and
//! never queued: the camera-rate answer is never held up by it. A fix `map_from_camera` of a keyframe
//! whose odometry pose was `odom_from_camera` gives `map_from_odom = map_from_camera · odom_from_camera⁻¹`,
//! which holds until the next fix (the odometry's drift in between is what it is). Global localization
//! needs no prior: the first accepted fix anywhere in the map sets `map → odom`. Once localized, the next
//! attempts look only near where the odometry predicts the camera (`track_radius_m`), which keeps a
//! look-alike place elsewhere in the map from taking over; an `/initialpose` hint does the same before the
//! first fix. After `max_prior_refusals` refused attempts in a row near a prior, the search is global again
//! until the next fix (a wrong hint, or a robot that was carried away).
//!
//! Not here: ROS messages (the r2r layer publishes [`MapFix`]), the map itself ([`crate::map`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use nalgebra::{Isometry3, Matrix6};

use crate::features::Features;
use crate::geometry::PinholeCamera;
use crate::map::{MapBuilder, MapOptions, Prior};
use crate::vo::VisualOdometry;

/// What the odometry does with a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapMode {
    /// No map.
    #[default]
    Off,
    /// Write every keyframe to `path` (created, or extended when it is a map of the same descriptors).
    Build,
    /// Localize in the map at `path` and publish `map → odom`.
    Localize,
}

/// The `node.map` section.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeMapConfig {
    /// `off`, `build` or `localize`.
    pub mode: MapMode,
    /// The map database.
    pub path: String,
    /// Frame id of the map.
    pub frame_id: String,
    /// At most one localization attempt per this many seconds of stamps (keyframes in between are not
    /// localized).
    pub min_interval_s: f64,
    /// Once localized, candidates within this distance of the predicted camera position only, metres.
    pub track_radius_m: f64,
    /// After this many refused attempts in a row near a prior (tracking or a hint), search globally.
    pub max_prior_refusals: u32,
}

impl Default for NodeMapConfig {
    fn default() -> Self {
        Self {
            mode: MapMode::Off,
            path: "matcha_map.db".into(),
            frame_id: "map".into(),
            min_interval_s: 0.5,
            track_radius_m: 2.0,
            max_prior_refusals: 5,
        }
    }
}

impl NodeMapConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), String> {
        if self.mode != MapMode::Off && self.path.is_empty() {
            return Err("node.map.path must name a file when node.map.mode is not off".into());
        }
        if !(self.min_interval_s.is_finite() && self.min_interval_s >= 0.0) {
            return Err("node.map.min_interval_s must be >= 0 seconds".into());
        }
        if !(self.track_radius_m.is_finite() && self.track_radius_m > 0.0) {
            return Err("node.map.track_radius_m must be > 0 metres".into());
        }
        if self.frame_id.is_empty() {
            return Err("node.map.frame_id must not be empty".into());
        }
        Ok(())
    }
}

/// An accepted localization.
#[derive(Debug, Clone)]
pub struct MapFix {
    /// Stamp of the keyframe it was found for, seconds.
    pub stamp: f64,
    /// The transform the node publishes as `map → odom`.
    pub map_from_odom: Isometry3<f64>,
    /// The camera's pose in `map` at `stamp`.
    pub map_from_camera: Isometry3<f64>,
    /// Its covariance (x, y, z, rotation about x, y, z in `map`).
    pub covariance: Matrix6<f64>,
    /// The map keyframe it was found against, and the PnP inliers.
    pub keyframe: u64,
    /// See `keyframe`.
    pub inliers: usize,
}

/// What the localization thread reports.
#[derive(Debug, Clone)]
pub enum MapEvent {
    /// A new accepted localization.
    Fix(Box<MapFix>),
    /// A keyframe that was not localized, and why (not in the map, or not trusted).
    Refused(String),
    /// The map cannot be used (missing, another descriptor, corrupt): every attempt fails the same way.
    Failed(String),
}

struct Job {
    stamp: f64,
    prior: Option<Prior>,
    features: Features,
    camera: PinholeCamera,
    odom_from_camera: Isometry3<f64>,
}

/// The map side of the odometry.
pub struct MapSession {
    config: NodeMapConfig,
    options: MapOptions,
    builder: Option<MapBuilder>,
    jobs: Option<SyncSender<Box<Job>>>,
    events: Option<Receiver<MapEvent>>,
    busy: Arc<AtomicBool>,
    last_attempt: Option<f64>,
    /// An `/initialpose` hint, kept until a fix or `max_prior_refusals` refusals near it.
    hint: Option<Prior>,
    /// Whether the attempt in flight had a prior, and refusals near a prior in a row.
    in_flight_prior: bool,
    prior_refusals: u32,
    /// Too many refusals near the prior: global until the next fix.
    global: bool,
    /// The latest accepted fix.
    pub fix: Option<MapFix>,
    /// Keyframes written (build) or localization attempts and fixes (localize).
    pub counters: MapCounters,
}

/// Counters for `/diagnostics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MapCounters {
    /// Keyframes written to the map.
    pub written: u64,
    /// Localization attempts.
    pub attempts: u64,
    /// Accepted fixes.
    pub fixes: u64,
    /// Refused attempts.
    pub refusals: u64,
}

impl MapSession {
    /// A session for `config` (nothing is opened before the first keyframe).
    pub fn new(config: NodeMapConfig, options: MapOptions) -> Self {
        Self {
            config,
            options,
            builder: None,
            jobs: None,
            events: None,
            busy: Arc::new(AtomicBool::new(false)),
            last_attempt: None,
            hint: None,
            in_flight_prior: false,
            prior_refusals: 0,
            global: false,
            fix: None,
            counters: MapCounters::default(),
        }
    }

    /// The configured mode.
    pub fn mode(&self) -> MapMode {
        self.config.mode
    }

    /// An `/initialpose`: the camera is near `position` (in `map`), within `radius_m`. Used by the next
    /// attempts until a fix (then tracking takes over) or `max_prior_refusals` refusals.
    pub fn set_hint(&mut self, position: nalgebra::Vector3<f64>, radius_m: f64) {
        self.hint = Some(Prior { position, radius_m });
        self.prior_refusals = 0;
        self.global = false;
    }

    /// The odometry made a keyframe (its newest) from an image with `features`, seen by `camera` at
    /// `stamp`; `odom_from_world` places the odometry's world in `odom`. Build: the keyframe is written
    /// (an `Err` says why not: the run goes on). Localize: it is handed to the localization thread unless
    /// that is busy or the last attempt is too recent.
    #[allow(clippy::too_many_arguments)]
    pub fn on_keyframe(
        &mut self,
        vo: &VisualOdometry,
        odom_from_world: &Isometry3<f64>,
        features: &Features,
        camera: &PinholeCamera,
        stamp: f64,
        descriptor: &str,
        frame_id: &str,
    ) -> Result<(), String> {
        let Some(kf) = vo.newest_keyframe() else {
            return Ok(());
        };
        match self.config.mode {
            MapMode::Off => Ok(()),
            MapMode::Build => {
                if self.builder.is_none() {
                    self.builder = Some(
                        MapBuilder::create_or_open(
                            &PathBuf::from(&self.config.path),
                            descriptor,
                            features.descriptor_dim(),
                            &self.options,
                        )
                        .map_err(|e| e.to_string())?,
                    );
                }
                let b = self.builder.as_mut().ok_or("no map")?;
                b.add(
                    kf,
                    features,
                    camera,
                    (stamp * 1e9).round() as i64,
                    frame_id,
                    odom_from_world,
                )
                .map_err(|e| e.to_string())?;
                self.counters.written += 1;
                Ok(())
            }
            MapMode::Localize => {
                if self
                    .last_attempt
                    .is_some_and(|t| (stamp - t).abs() < self.config.min_interval_s)
                    || self.busy.load(Ordering::SeqCst)
                {
                    return Ok(());
                }
                if self.jobs.is_none() {
                    self.spawn(descriptor.to_string(), features.descriptor_dim())?;
                }
                let odom_from_camera = odom_from_world * kf.world_from_camera;
                let prior = if self.global {
                    None
                } else if let Some(h) = self.hint {
                    Some(h)
                } else {
                    self.fix.as_ref().map(|f| Prior {
                        position: (f.map_from_odom * odom_from_camera).translation.vector,
                        radius_m: self.config.track_radius_m,
                    })
                };
                let job = Box::new(Job {
                    stamp,
                    prior,
                    features: Features {
                        gray: None,
                        ..features.clone()
                    },
                    camera: *camera,
                    odom_from_camera,
                });
                match self.jobs.as_ref().map(|tx| tx.try_send(job)) {
                    Some(Ok(())) => {
                        self.in_flight_prior = prior.is_some();
                        self.busy.store(true, Ordering::SeqCst);
                        self.last_attempt = Some(stamp);
                        self.counters.attempts += 1;
                        Ok(())
                    }
                    Some(Err(TrySendError::Full(_))) => Ok(()),
                    _ => Err("the localization thread is gone".into()),
                }
            }
        }
    }

    fn spawn(&mut self, descriptor: String, dim: usize) -> Result<(), String> {
        let (job_tx, job_rx) = mpsc::sync_channel::<Box<Job>>(1);
        let (ev_tx, ev_rx) = mpsc::channel::<MapEvent>();
        let (path, options, busy) = (
            PathBuf::from(&self.config.path),
            self.options.clone(),
            self.busy.clone(),
        );
        std::thread::Builder::new()
            .name("matcha-localize".into())
            .spawn(move || {
                let localizer = options.open_localizer(&path, &descriptor, dim);
                if let Ok(l) = &localizer {
                    log::info!(
                        "map: localizing in {} ({} keyframes)",
                        path.display(),
                        l.store().keyframe_count().unwrap_or(0)
                    );
                }
                while let Ok(job) = job_rx.recv() {
                    let event = match &localizer {
                        Err(e) => MapEvent::Failed(e.to_string()),
                        Ok(l) => match l.localize(&job.features, &job.camera, job.prior.as_ref()) {
                            Err(e) => MapEvent::Failed(e.to_string()),
                            Ok(loc) => match (loc.map_from_camera, loc.keyframe) {
                                (Some(map_from_camera), Some(keyframe)) => {
                                    MapEvent::Fix(Box::new(MapFix {
                                        stamp: job.stamp,
                                        map_from_odom: map_from_camera
                                            * job.odom_from_camera.inverse(),
                                        map_from_camera,
                                        covariance: loc.covariance,
                                        keyframe,
                                        inliers: loc.inliers,
                                    }))
                                }
                                _ => MapEvent::Refused(
                                    loc.refused.unwrap_or_else(|| "no pose".into()),
                                ),
                            },
                        },
                    };
                    busy.store(false, Ordering::SeqCst);
                    if ev_tx.send(event).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| format!("cannot start the localization thread: {e}"))?;
        self.jobs = Some(job_tx);
        self.events = Some(ev_rx);
        Ok(())
    }

    /// The localization thread's reports since the last call (the latest fix is also kept in
    /// [`Self::fix`]).
    pub fn poll(&mut self) -> Vec<MapEvent> {
        let events: Vec<MapEvent> = self
            .events
            .as_ref()
            .map(|rx| rx.try_iter().collect())
            .unwrap_or_default();
        for e in &events {
            match e {
                MapEvent::Fix(f) => {
                    self.counters.fixes += 1;
                    self.fix = Some((**f).clone());
                    self.hint = None;
                    self.prior_refusals = 0;
                    self.global = false;
                }
                MapEvent::Refused(_) | MapEvent::Failed(_) => {
                    self.counters.refusals += 1;
                    if self.in_flight_prior {
                        self.prior_refusals += 1;
                        if self.prior_refusals >= self.config.max_prior_refusals {
                            log::info!(
                                "map: {} attempts in a row refused near the prior: searching the whole map",
                                self.prior_refusals
                            );
                            self.hint = None;
                            self.global = true;
                            self.prior_refusals = 0;
                        }
                    }
                }
            }
        }
        events
    }

    /// Waits until the localization thread is idle (tests and the offline replay), at most `timeout`.
    pub fn wait_idle(&self, timeout: std::time::Duration) {
        let start = std::time::Instant::now();
        while self.busy.load(Ordering::SeqCst) && start.elapsed() < timeout {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
}
