//! Frame admission: the one place that decides which camera frames (or stereo pairs) the node's worker
//! processes, in which order, and which it drops and why.
//!
//! The rule: **a frame is dropped only when the node is really behind, or when the user asked for fewer
//! frames.** Arrivals wait in a bounded first-in-first-out queue. While the worker keeps up on average —
//! its mean processing time over the frames it finished in the last [`PROCESSING_HORIZON`] (at least
//! [`MIN_RECENT`]) is at most the mean inter-arrival interval of the last [`ARRIVAL_WINDOW`] arrivals —
//! every frame is processed in arrival order: a burst
//! (a player faster than real time, a triggered camera, a slow keyframe in the VO followed by cheap tracked
//! frames) is absorbed by the queue and drained. Only the queue bound (`node.max_queued_frames`) drops, and
//! then the oldest frame. When the worker is behind on average, queuing would only add latency: the newest
//! frame is taken and the older ones are dropped (`dropped_behind`), frames that had to wait longer than
//! `node.max_frame_wait_ms` are skipped for the next arrival (`skipped_stale`), and the automatic
//! decimation of [`super::schedule`] spaces the results evenly (`skipped_decimation`). A fixed
//! `node.decimation` k ≥ 2 and `node.max_rate_hz` are the user's own thinning and apply always
//! (`skipped_decimation`, `skipped_rate`).
//!
//! Why means and not medians: "keeps up on average" is a statement about throughput; a median of the
//! intervals of a bursty source (two frames 0.1 s apart, then a pause) is the burst spacing and would call
//! an idle node overloaded. This module knows nothing of r2r (the jobs are a type parameter) and is
//! unit-tested without ROS.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::schedule::FrameScheduler;

/// Arrivals whose mean interval is the camera's average period.
pub const ARRIVAL_WINDOW: usize = 32;
/// Processed frames whose mean processing time is the worker's average cost ...
pub const PROCESSING_WINDOW: usize = 32;
/// ... of those, the ones finished within this time of the newest (a cost that changes, as when a lost
/// camera is tracked again, is seen within it even while decimation makes results rare) ...
pub const PROCESSING_HORIZON: Duration = Duration::from_secs(2);
/// ... and at least this many of the newest.
pub const MIN_RECENT: usize = 4;
/// Samples of both needed before the node can be judged behind (until then it is not).
pub const MIN_SAMPLES: usize = 16;

/// Why frames were not processed, counted in images (a stereo pair counts two).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drops {
    /// The queue was full: the oldest waiting frame made room.
    pub queue_full: u64,
    /// The worker is behind on average: an older frame was superseded by a newer one.
    pub behind: u64,
    /// Behind, and the newest frame had waited longer than `node.max_frame_wait_ms`.
    pub stale: u64,
    /// Not admitted by the decimation (fixed, or automatic while behind).
    pub decimated: u64,
    /// Over `node.max_rate_hz`.
    pub rate: u64,
}

impl Drops {
    /// All drops.
    pub fn total(&self) -> u64 {
        self.queue_full + self.behind + self.stale + self.decimated + self.rate
    }

    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &Drops) {
        self.queue_full += other.queue_full;
        self.behind += other.behind;
        self.stale += other.stale;
        self.decimated += other.decimated;
        self.rate += other.rate;
    }
}

/// The settings of the policy (from the `node:` section).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdmissionSettings {
    /// Frames that may wait (≥ 1).
    pub max_queued_frames: usize,
    /// While behind: skip a frame that waited longer than this for the busy worker (< 0: no bound).
    pub max_frame_wait_ms: f64,
    /// `node.decimation`: 0 automatic (only while behind), 1 every frame, k fixed.
    pub decimation: u32,
    /// At most this many frames per second (≤ 0: no limit).
    pub max_rate_hz: f64,
}

struct Waiting<J> {
    ready: Instant,
    images: u64,
    job: J,
}

/// The queue of waiting frames and the policy that empties it.
pub struct FrameAdmission<J> {
    settings: AdmissionSettings,
    queue: VecDeque<Waiting<J>>,
    scheduler: FrameScheduler,
    arrivals: VecDeque<Instant>,
    /// When each processed frame was finished (taken + its processing time), and that time.
    processing: VecDeque<(Instant, Duration)>,
    /// Processed frames so far (the judgement waits for [`MIN_SAMPLES`]).
    processed_frames: usize,
    last_taken: Option<Instant>,
}

impl<J> FrameAdmission<J> {
    /// An empty queue under `settings`.
    pub fn new(settings: AdmissionSettings) -> Self {
        Self {
            settings: AdmissionSettings {
                max_queued_frames: settings.max_queued_frames.max(1),
                ..settings
            },
            queue: VecDeque::new(),
            scheduler: FrameScheduler::new(settings.decimation),
            arrivals: VecDeque::with_capacity(ARRIVAL_WINDOW),
            processing: VecDeque::with_capacity(PROCESSING_WINDOW),
            processed_frames: 0,
            last_taken: None,
        }
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no frame waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Drops every waiting frame (a stamp jump backwards: the queued frames belong to the old run).
    pub fn clear(&mut self) -> u64 {
        let n = self.queue.iter().map(|w| w.images).sum();
        self.queue.clear();
        n
    }

    /// The p99 of the recent receipt → result latencies the automatic decimation looks at.
    pub fn latency_p99_ms(&self) -> Option<f64> {
        self.scheduler.latency_p99_ms()
    }

    /// A frame of `images` images became ready at `ready`; returns the frames this pushed out.
    pub fn push(&mut self, ready: Instant, images: u64, job: J) -> Drops {
        self.scheduler.record_arrival(ready);
        if self.arrivals.len() == ARRIVAL_WINDOW {
            self.arrivals.pop_front();
        }
        self.arrivals.push_back(ready);
        self.queue.push_back(Waiting { ready, images, job });
        let mut drops = Drops::default();
        while self.queue.len() > self.settings.max_queued_frames {
            if let Some(w) = self.queue.pop_front() {
                drops.queue_full += w.images;
            }
        }
        drops
    }

    /// Whether the worker's recent mean processing time (the frames finished in the last
    /// [`PROCESSING_HORIZON`], at least [`MIN_RECENT`]) exceeds the mean inter-arrival interval.
    pub fn behind(&self) -> bool {
        if self.arrivals.len() < MIN_SAMPLES || self.processed_frames < MIN_SAMPLES {
            return false;
        }
        let (Some(first), Some(last)) = (self.arrivals.front(), self.arrivals.back()) else {
            return false;
        };
        let interval =
            last.saturating_duration_since(*first).as_secs_f64() / (self.arrivals.len() - 1) as f64;
        let Some(&(newest, _)) = self.processing.back() else {
            return false;
        };
        let (sum, count) = self
            .processing
            .iter()
            .rev()
            .enumerate()
            .take_while(|(k, (done, _))| {
                *k < MIN_RECENT || newest.saturating_duration_since(*done) <= PROCESSING_HORIZON
            })
            .fold((0.0, 0usize), |(sum, n), (_, (_, d))| {
                (sum + d.as_secs_f64(), n + 1)
            });
        let cost = sum / count as f64;
        cost > interval
    }

    /// The next frame to process for a worker free since `free_since`, at `now`, and the frames dropped on
    /// the way. `None` when nothing is admissible now (wait for the next arrival).
    pub fn take(&mut self, free_since: Instant, now: Instant) -> (Option<J>, Drops) {
        let mut drops = Drops::default();
        let behind = self.behind();
        while let Some(w) = self.queue.pop_front() {
            if behind {
                if !self.queue.is_empty() {
                    drops.behind += w.images;
                    continue;
                }
                if is_stale(w.ready, free_since, self.settings.max_frame_wait_ms) {
                    drops.stale += w.images;
                    continue;
                }
            }
            // the automatic factor only while behind; a fixed factor always
            let decimating = self.settings.decimation >= 2 || behind;
            if decimating && !self.scheduler.admit(w.ready) {
                drops.decimated += w.images;
                continue;
            }
            if self.settings.max_rate_hz > 0.0 {
                let period = 1.0 / self.settings.max_rate_hz;
                if self
                    .last_taken
                    .is_some_and(|t| now.saturating_duration_since(t).as_secs_f64() < period * 0.95)
                {
                    drops.rate += w.images;
                    continue;
                }
            }
            self.last_taken = Some(now);
            return (Some(w.job), drops);
        }
        (None, drops)
    }

    /// Records that a taken frame was processed in `processing` and answered `latency_ms` after receipt;
    /// returns `(before, after)` when the automatic decimation factor changed.
    pub fn processed(&mut self, processing: Duration, latency_ms: f64) -> Option<(u32, u32)> {
        if self.processing.len() == PROCESSING_WINDOW {
            self.processing.pop_front();
        }
        let started = self
            .last_taken
            .or_else(|| self.processing.back().map(|(done, _)| *done));
        let done = started.map_or_else(Instant::now, |t| t + processing);
        self.processing.push_back((done, processing));
        self.processed_frames += 1;
        let before = self.scheduler.factor();
        self.scheduler.on_result(latency_ms);
        let after = self.scheduler.factor();
        (before != after).then_some((before, after))
    }
}

/// The freshness rule of `node.max_frame_wait_ms`: whether a frame that became ready at `ready` is too old
/// for a worker that has been free since `free_since` (frames that arrived while it was idle never are).
pub fn is_stale(ready: Instant, free_since: Instant, max_wait_ms: f64) -> bool {
    max_wait_ms >= 0.0
        && ready < free_since
        && (free_since - ready).as_secs_f64() * 1e3 > max_wait_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAMERA: Duration = Duration::from_micros(33_333);

    fn settings() -> AdmissionSettings {
        AdmissionSettings {
            max_queued_frames: 16,
            max_frame_wait_ms: 0.0,
            decimation: 0,
            max_rate_hz: 0.0,
        }
    }

    /// Plays `arrivals` (offsets from t0) against a worker that needs `cost` per frame; returns the indices
    /// processed and the drops.
    fn simulate(
        s: AdmissionSettings,
        arrivals: &[Duration],
        cost: Duration,
    ) -> (Vec<usize>, Drops) {
        let t0 = Instant::now();
        let mut a = FrameAdmission::new(s);
        let mut done = Vec::new();
        let mut drops = Drops::default();
        let mut clock = t0;
        let mut next = 0;
        loop {
            // everything that arrived by `clock` is queued
            while next < arrivals.len() && t0 + arrivals[next] <= clock {
                drops.add(&a.push(t0 + arrivals[next], 1, next));
                next += 1;
            }
            let free_since = clock;
            let (job, d) = a.take(free_since, clock);
            drops.add(&d);
            match job {
                Some(i) => {
                    clock += cost;
                    done.push(i);
                    let latency = (clock - (t0 + arrivals[i])).as_secs_f64() * 1e3;
                    a.processed(cost, latency);
                }
                None if next < arrivals.len() => clock = clock.max(t0 + arrivals[next]),
                None => break,
            }
        }
        (done, drops)
    }

    #[test]
    fn freshness_rule() {
        let t0 = Instant::now();
        let ms = |v: u64| t0 + Duration::from_millis(v);
        // arrived 12 ms before the worker became free
        assert!(is_stale(ms(0), ms(12), 10.0));
        assert!(!is_stale(ms(0), ms(12), 15.0));
        // a negative bound is no bound
        assert!(!is_stale(ms(0), ms(12), -1.0));
        // arrived while the worker was idle: never stale, even with a 0 ms bound
        assert!(!is_stale(ms(20), ms(12), 0.0));
        assert!(is_stale(ms(11), ms(12), 0.0));
    }

    #[test]
    fn bursts_are_absorbed_when_the_node_keeps_up_on_average() {
        // pairs of frames 100 ms apart, then 1.9 s of silence; 150 ms per frame: idle on average, so
        // the second frame of each burst waits in the queue and is processed
        let arrivals: Vec<Duration> = (0..50u64)
            .map(|i| Duration::from_millis((i / 2) * 2000 + (i % 2) * 100))
            .collect();
        let (done, drops) = simulate(settings(), &arrivals, Duration::from_millis(150));
        assert_eq!(done, (0..50).collect::<Vec<_>>());
        assert_eq!(drops, Drops::default());
    }

    #[test]
    fn cheap_frames_drain_the_backlog_of_a_slow_one() {
        // the VO at 30 Hz: every 10th frame a 150 ms keyframe, the others 12 ms: mean 25.8 ms < 33.3 ms
        let t0 = Instant::now();
        let mut a = FrameAdmission::new(settings());
        let (mut clock, mut next, mut done) = (t0, 0usize, Vec::new());
        let n = 300;
        let mut steps = 0;
        while done.len() < n {
            steps += 1;
            assert!(
                steps < 10 * n,
                "stuck: {} of {n} done, {next} arrived",
                done.len()
            );
            while next < n && t0 + CAMERA * next as u32 <= clock {
                assert_eq!(a.push(t0 + CAMERA * next as u32, 1, next), Drops::default());
                next += 1;
            }
            match a.take(clock, clock) {
                (Some(i), d) => {
                    assert_eq!(d, Drops::default(), "frame {i}");
                    let cost = Duration::from_millis(if i % 10 == 0 { 150 } else { 12 });
                    clock += cost;
                    a.processed(cost, 0.0);
                    done.push(i);
                }
                (None, d) => {
                    assert_eq!(d, Drops::default());
                    clock = t0 + CAMERA * next as u32;
                }
            }
        }
        assert_eq!(done, (0..n).collect::<Vec<_>>());
        assert!(!a.behind());
    }

    #[test]
    fn a_node_behind_takes_the_newest_frame() {
        // 30 Hz against 80 ms per frame: behind; after the first samples, older frames are superseded
        let arrivals: Vec<Duration> = (0..120u32).map(|i| CAMERA * i).collect();
        let (done, drops) = simulate(settings(), &arrivals, Duration::from_millis(80));
        assert!(done.len() < 60, "{} processed", done.len());
        assert!(
            drops.behind + drops.stale + drops.decimated > 50,
            "{drops:?}"
        );
        // before MIN_SAMPLES results the node is not judged behind: the queue fills once
        assert!(drops.queue_full < 16, "{drops:?}");
        // every processed frame is newer than the one before
        assert!(done.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(done.len() as u64 + drops.total(), 120);
    }

    #[test]
    fn a_node_that_was_behind_takes_every_frame_again_soon_after() {
        // 15 Hz: 10 s of cheap frames (tracked), 10 s of 90 ms frames (a lost stereo camera: features of
        // both images every frame), then cheap ones again. The automatic decimation must end within a
        // second of the costly stretch: measured on `vo_hard` through the node, a window of 32 slow samples
        // taken at the decimated rate kept it on for ~6 s after the loss (88 frames skipped)
        let period = Duration::from_micros(66_667);
        let n = 450;
        let cost = |i: usize| Duration::from_millis(if (150..300).contains(&i) { 90 } else { 10 });
        let t0 = Instant::now();
        let mut a = FrameAdmission::new(settings());
        let (mut clock, mut next, mut done) = (t0, 0usize, Vec::new());
        while next < n || !a.is_empty() {
            while next < n && t0 + period * next as u32 <= clock {
                a.push(t0 + period * next as u32, 1, next);
                next += 1;
            }
            match a.take(clock, clock) {
                (Some(i), _) => {
                    clock += cost(i);
                    let latency = (clock - (t0 + period * i as u32)).as_secs_f64() * 1e3;
                    a.processed(cost(i), latency);
                    done.push(i);
                }
                (None, _) if next < n => clock = t0 + period * next as u32,
                (None, _) => break,
            }
        }
        let slow = (150..300).filter(|i| done.contains(i)).count();
        assert!(
            slow < 140,
            "the costly stretch must put the node behind ({slow} of 150 processed)"
        );
        let missed: Vec<usize> = (315..n).filter(|i| !done.contains(i)).collect();
        assert!(
            missed.is_empty(),
            "frames after the first second of cheap ones not processed: {missed:?}"
        );
    }

    #[test]
    fn the_queue_bound_drops_the_oldest() {
        let t0 = Instant::now();
        let mut a = FrameAdmission::new(AdmissionSettings {
            max_queued_frames: 3,
            ..settings()
        });
        let mut drops = Drops::default();
        for i in 0..5u32 {
            drops.add(&a.push(t0 + CAMERA * i, 2, i));
        }
        assert_eq!(drops.queue_full, 4);
        assert_eq!(a.len(), 3);
        assert_eq!(a.take(t0, t0).0, Some(2));
        assert_eq!(a.clear(), 4);
        assert!(a.is_empty());
    }

    #[test]
    fn a_fixed_decimation_and_a_rate_limit_always_apply() {
        let arrivals: Vec<Duration> = (0..30u32).map(|i| CAMERA * i).collect();
        let (done, drops) = simulate(
            AdmissionSettings {
                decimation: 3,
                ..settings()
            },
            &arrivals,
            Duration::from_millis(5),
        );
        // every third once the camera period is known (from the third arrival on)
        assert!(done[2..].windows(2).all(|w| w[1] - w[0] == 3), "{done:?}");
        assert_eq!(drops.decimated as usize, 30 - done.len());
        let (done, drops) = simulate(
            AdmissionSettings {
                max_rate_hz: 10.0,
                ..settings()
            },
            &arrivals,
            Duration::from_millis(5),
        );
        assert!((9..=11).contains(&done.len()), "{done:?}");
        assert_eq!(drops.rate as usize, 30 - done.len());
    }
}
