//! Node health counters for `/diagnostics` and rate-limited logging of bad input.
//!
//! Every problem the node meets at run time (a bad image, missing calibration, time going backwards, a
//! pipeline error) has a short cause name. [`Stats::problem`] counts it and says whether to log it now: the
//! first occurrence of a cause is always logged, repeats at most once per throttle period, with the count
//! since the last log line. Latencies are kept in a fixed-size ring (bounded memory on long runs).
//!
//! This module knows nothing of r2r.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::admission::Drops;

/// Whether a cause is a failure of the node itself (engines, pipeline, map file), not of the input it was
/// given: diagnostics report the two apart (an operator fixes the first on the robot, the second upstream).
pub fn is_node_failure(cause: &str) -> bool {
    cause.starts_with("pipeline_") || cause.starts_with("map_")
}

/// Number of latency samples kept for percentiles.
pub const LATENCY_WINDOW: usize = 512;

#[derive(Debug, Clone)]
struct Cause {
    count: u64,
    since_log: u64,
    last_log: Option<Instant>,
    last_message: String,
}

/// What `/diagnostics` reports of the odometry (stereo or monocular).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OdometryHealth {
    /// Tracking state after the last frame (`initializing`, `tracking`, `lost`, `recovered`).
    pub state: &'static str,
    /// Landmarks that gave the last pose.
    pub tracked_landmarks: usize,
    /// Frames answered by photometric tracking alone (no features extracted; see `VoEstimate::by_flow`).
    pub by_flow: u64,
    /// Keyframes, losses, recoveries and restarts of the run.
    pub counters: crate::vo::VoCounters,
    /// `reset` service calls served.
    pub resets: u64,
    /// Where the camera's mounting came from (`tf_static` or `parameter`).
    pub mounting_source: &'static str,
    /// The map session's counters (`node.map.mode` build or localize) and whether a fix is held.
    pub map: Option<(crate::node::map_session::MapCounters, bool)>,
}

/// Counters of one node.
#[derive(Debug, Clone)]
pub struct Stats {
    throttle: Duration,
    started: Instant,
    /// Frames received (all inputs).
    pub received: u64,
    /// Frames processed to a result.
    pub processed: u64,
    /// Frames not processed: by the frame admission (each reason in `admission`) or unpaired in stereo.
    pub dropped: u64,
    /// Frames the admission policy did not process, by reason (also counted in `dropped`).
    pub admission: Drops,
    /// Results with a valid pose.
    pub poses: u64,
    /// Inliers of the last result.
    pub last_inliers: usize,
    /// Correspondences of the last result.
    pub last_matches: usize,
    /// The odometry's state after its last frame (`None` in the other modes).
    pub odometry: Option<OdometryHealth>,
    /// The relocalization mode's map: views written, localizations in `map` tried, accepted and refused
    /// (`None` in the other modes, and before its first frame).
    pub relocalization_map: Option<crate::node::map_session::MapCounters>,
    causes: BTreeMap<String, Cause>,
    latencies_ms: Vec<f64>,
    next_latency: usize,
    processed_at_last_report: u64,
    last_report: Instant,
}

impl Stats {
    /// Fresh counters; repeated causes are logged at most once per `throttle`.
    pub fn new(throttle: Duration) -> Self {
        let now = Instant::now();
        Self {
            throttle,
            started: now,
            received: 0,
            processed: 0,
            dropped: 0,
            admission: Drops::default(),
            poses: 0,
            last_inliers: 0,
            last_matches: 0,
            odometry: None,
            relocalization_map: None,
            causes: BTreeMap::new(),
            latencies_ms: Vec::with_capacity(LATENCY_WINDOW),
            next_latency: 0,
            processed_at_last_report: 0,
            last_report: now,
        }
    }

    /// Counts a problem; returns `Some(text to log)` when it should be logged now.
    pub fn problem(&mut self, cause: &str, message: &str) -> Option<String> {
        self.problem_at(cause, message, Instant::now())
    }

    fn problem_at(&mut self, cause: &str, message: &str, now: Instant) -> Option<String> {
        let c = self.causes.entry(cause.to_string()).or_insert(Cause {
            count: 0,
            since_log: 0,
            last_log: None,
            last_message: String::new(),
        });
        c.count += 1;
        c.since_log += 1;
        c.last_message = message.to_string();
        let due = match c.last_log {
            None => true,
            Some(t) => now.duration_since(t) >= self.throttle,
        };
        if !due {
            return None;
        }
        let text = if c.last_log.is_none() {
            format!("{cause}: {message} (the node keeps running; repeats are logged at most every {:.0} s)", self.throttle.as_secs_f64())
        } else {
            format!(
                "{cause}: {message} ({} times since the last report, {} in total)",
                c.since_log, c.count
            )
        };
        c.last_log = Some(now);
        c.since_log = 0;
        Some(text)
    }

    /// Count of one cause.
    pub fn count(&self, cause: &str) -> u64 {
        self.causes.get(cause).map_or(0, |c| c.count)
    }

    /// `(cause, count, last message)` of every cause seen.
    pub fn causes(&self) -> impl Iterator<Item = (&str, u64, &str)> {
        self.causes
            .iter()
            .map(|(k, c)| (k.as_str(), c.count, c.last_message.as_str()))
    }

    /// Counts of the causes that are the node's own failures (the pipeline, the map: see
    /// [`is_node_failure`]) and of those that are the input's fault.
    pub fn failures_and_rejections(&self) -> (u64, u64) {
        self.causes().fold((0, 0), |(f, r), (cause, n, _)| {
            if is_node_failure(cause) {
                (f + n, r)
            } else {
                (f, r + n)
            }
        })
    }

    /// Records one image-in → result-out latency.
    pub fn latency(&mut self, ms: f64) {
        if self.latencies_ms.len() < LATENCY_WINDOW {
            self.latencies_ms.push(ms);
        } else {
            self.latencies_ms[self.next_latency] = ms;
        }
        self.next_latency = (self.next_latency + 1) % LATENCY_WINDOW;
    }

    /// Latency samples in the window.
    pub fn latency_samples(&self) -> usize {
        self.latencies_ms.len()
    }

    /// Median and 99th percentile of the recent latencies (ms), if any.
    pub fn latency_percentiles(&self) -> Option<(f64, f64)> {
        if self.latencies_ms.is_empty() {
            return None;
        }
        let mut v = self.latencies_ms.clone();
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Some((at(0.5), at(0.99)))
    }

    /// Processed frames per second since the previous call (and resets that window).
    pub fn take_rate(&mut self) -> f64 {
        let now = Instant::now();
        let dt = now.duration_since(self.last_report).as_secs_f64();
        let n = self.processed - self.processed_at_last_report;
        self.processed_at_last_report = self.processed;
        self.last_report = now;
        if dt > 0.0 {
            n as f64 / dt
        } else {
            0.0
        }
    }

    /// Seconds since start.
    pub fn uptime_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_logged_once_then_throttled_with_counts() {
        let mut s = Stats::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(s.problem_at("bad_encoding", "yuv422", t0).is_some());
        assert!(s
            .problem_at("bad_encoding", "yuv422", t0 + Duration::from_secs(1))
            .is_none());
        assert!(s
            .problem_at("no_camera_info", "x", t0 + Duration::from_secs(1))
            .is_some());
        let again = s
            .problem_at("bad_encoding", "yuv422", t0 + Duration::from_secs(11))
            .unwrap();
        assert!(
            again.contains("2 times since the last report, 3 in total"),
            "{again}"
        );
        assert_eq!(s.count("bad_encoding"), 3);
        assert_eq!(s.causes().count(), 2);
    }

    #[test]
    fn latency_ring_is_bounded() {
        let mut s = Stats::new(Duration::from_secs(1));
        assert!(s.latency_percentiles().is_none());
        for i in 0..(3 * LATENCY_WINDOW) {
            s.latency(i as f64);
        }
        assert_eq!(s.latencies_ms.len(), LATENCY_WINDOW);
        let (p50, p99) = s.latency_percentiles().unwrap();
        assert!(p50 >= (2 * LATENCY_WINDOW) as f64 && p99 > p50);
    }
}
