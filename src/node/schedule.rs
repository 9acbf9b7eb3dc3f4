//! Frame decimation for the node's worker (`node.decimation`): which fresh camera frames to process so
//! that each result is out before the next one is due.
//!
//! The worker processes fresh frames only (see `node.max_frame_wait_ms`); when its processing time
//! straddles the camera period (some frames faster than it, some slower), results come out at irregular
//! one- and two-period intervals and the slowest ones arrive after the next was due. [`FrameScheduler`]
//! processes every k-th camera period instead: a frame is admitted when it became ready at least
//! `k − ½` camera periods after the last admitted one, so results are evenly spaced at k periods.
//! With `decimation: 0` (auto) k is the smallest factor whose interval covers the receipt → publish
//! latency p99 with [`GROW_HEADROOM`] to spare, re-evaluated every [`EVALUATE_EVERY`] results over the
//! last [`LATENCY_WINDOW`] latencies (the first [`WARMUP_RESULTS`] are ignored: engine warm-up); it drops
//! back only when one period fewer still leaves [`SHRINK_HEADROOM`] (hysteresis). A fixed `decimation:
//! k ≥ 1` keeps k; 1 admits every fresh frame (the behaviour before this scheduler).
//!
//! The camera period is the median of the last [`ARRIVAL_WINDOW`] inter-arrival intervals of frames (or
//! stereo pairs). This module knows nothing of r2r; the node feeds it arrival times and latencies.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Inter-arrival intervals kept for the camera period.
pub const ARRIVAL_WINDOW: usize = 32;
/// Results between two automatic evaluations of the factor.
pub const EVALUATE_EVERY: u64 = 16;
/// Latency samples needed before the automatic factor moves off 1.
pub const MIN_LATENCY_SAMPLES: usize = 64;
/// Latencies the automatic factor looks at (the p99 of 256 is the third largest).
pub const LATENCY_WINDOW: usize = 256;
/// Results whose latency is not recorded at start-up (first inferences allocate and are slow).
pub const WARMUP_RESULTS: u64 = 20;
/// The automatic factor grows when `k · period < GROW_HEADROOM · p99`.
pub const GROW_HEADROOM: f64 = 1.05;
/// ... and shrinks when `(k − 1) · period ≥ SHRINK_HEADROOM · p99`.
pub const SHRINK_HEADROOM: f64 = 1.15;
/// Largest automatic factor (at 30 Hz: 3.75 results per second).
pub const MAX_AUTO_FACTOR: u32 = 8;
/// Largest fixed factor accepted by the configuration.
pub const MAX_FACTOR: u32 = 16;

/// Decides which fresh frames the worker processes.
#[derive(Debug, Clone)]
pub struct FrameScheduler {
    /// 0 = automatic, k ≥ 1 fixed.
    setting: u32,
    factor: u32,
    last_arrival: Option<Instant>,
    intervals: VecDeque<Duration>,
    last_admitted: Option<Instant>,
    results: u64,
    latencies_ms: VecDeque<f64>,
}

impl FrameScheduler {
    /// A scheduler for `node.decimation` (0 = automatic; values above [`MAX_FACTOR`] are clamped).
    pub fn new(setting: u32) -> Self {
        let setting = setting.min(MAX_FACTOR);
        Self {
            setting,
            factor: setting.max(1),
            last_arrival: None,
            intervals: VecDeque::with_capacity(ARRIVAL_WINDOW),
            last_admitted: None,
            results: 0,
            latencies_ms: VecDeque::with_capacity(LATENCY_WINDOW),
        }
    }

    /// Records that a frame (or stereo pair) became ready at `t`.
    pub fn record_arrival(&mut self, t: Instant) {
        if let Some(prev) = self.last_arrival {
            if t > prev {
                if self.intervals.len() == ARRIVAL_WINDOW {
                    self.intervals.pop_front();
                }
                self.intervals.push_back(t - prev);
            }
        }
        if self.last_arrival.is_none_or(|prev| t > prev) {
            self.last_arrival = Some(t);
        }
    }

    /// Median inter-arrival interval (`None` before three arrivals).
    pub fn camera_period(&self) -> Option<Duration> {
        if self.intervals.len() < 2 {
            return None;
        }
        let mut v: Vec<Duration> = self.intervals.iter().copied().collect();
        let k = v.len() / 2;
        Some(*v.select_nth_unstable(k).1)
    }

    /// Current factor k (results every k camera periods).
    pub fn factor(&self) -> u32 {
        self.factor
    }

    /// Whether to process a fresh frame that became ready at `ready`; remembers it when admitted.
    pub fn admit(&mut self, ready: Instant) -> bool {
        let due = match (self.factor, self.last_admitted) {
            (k, Some(last)) if k > 1 => self.camera_period().is_none_or(|period| {
                let min_gap = period.mul_f64(f64::from(k) - 0.5);
                ready
                    .checked_duration_since(last)
                    .is_none_or(|gap| gap >= min_gap)
            }),
            _ => true,
        };
        if due {
            self.last_admitted = Some(ready);
        }
        due
    }

    /// Records a result and its receipt → publish latency (milliseconds); with the automatic setting,
    /// every [`EVALUATE_EVERY`] results, adjusts the factor to the p99 of the recent latencies.
    pub fn on_result(&mut self, latency_ms: f64) {
        self.results += 1;
        if self.setting != 0 {
            return;
        }
        if self.results > WARMUP_RESULTS && latency_ms.is_finite() {
            if self.latencies_ms.len() == LATENCY_WINDOW {
                self.latencies_ms.pop_front();
            }
            self.latencies_ms.push_back(latency_ms);
        }
        if self.results.is_multiple_of(EVALUATE_EVERY)
            && self.latencies_ms.len() >= MIN_LATENCY_SAMPLES
        {
            self.evaluate();
        }
    }

    /// p99 of the recent latencies (milliseconds).
    pub fn latency_p99_ms(&self) -> Option<f64> {
        if self.latencies_ms.is_empty() {
            return None;
        }
        let mut v: Vec<f64> = self.latencies_ms.iter().copied().collect();
        let k = ((v.len() - 1) as f64 * 0.99).round() as usize;
        Some(*v.select_nth_unstable_by(k, f64::total_cmp).1)
    }

    fn evaluate(&mut self) {
        let (Some(p99), Some(period)) = (self.latency_p99_ms(), self.camera_period()) else {
            return;
        };
        let period_ms = period.as_secs_f64() * 1e3;
        if !(p99.is_finite() && p99 > 0.0 && period_ms > 0.0) {
            return;
        }
        let k = f64::from(self.factor);
        if k * period_ms < GROW_HEADROOM * p99 {
            let needed = (GROW_HEADROOM * p99 / period_ms).ceil();
            self.factor = (needed as u32).clamp(1, MAX_AUTO_FACTOR);
        } else if self.factor > 1 && (k - 1.0) * period_ms >= SHRINK_HEADROOM * p99 {
            self.factor -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAMERA: Duration = Duration::from_micros(33_333);

    /// Feeds `n` arrivals at the camera period from `t0`; returns the time of the last one.
    fn arrivals(s: &mut FrameScheduler, t0: Instant, n: u32) -> Instant {
        for i in 0..n {
            s.record_arrival(t0 + CAMERA * i);
        }
        t0 + CAMERA * (n - 1)
    }

    /// `n` results at a latency of `ms`.
    fn feed(s: &mut FrameScheduler, ms: f64, n: usize) {
        for _ in 0..n {
            s.on_result(ms);
        }
    }

    #[test]
    fn camera_period_is_the_median_interval() {
        let mut s = FrameScheduler::new(0);
        let t0 = Instant::now();
        assert_eq!(s.camera_period(), None);
        let last = arrivals(&mut s, t0, 10);
        // a transport hiccup (one long gap) and a duplicate time do not move the median
        s.record_arrival(last + CAMERA * 5);
        s.record_arrival(last + CAMERA * 5);
        assert_eq!(s.camera_period(), Some(CAMERA));
        // the window is bounded
        arrivals(&mut s, last + CAMERA * 6, 3 * ARRIVAL_WINDOW as u32);
        assert!(s.intervals.len() <= ARRIVAL_WINDOW);
    }

    #[test]
    fn fixed_factor_admits_every_kth_frame() {
        let t0 = Instant::now();
        for k in [1u32, 2, 3] {
            let mut s = FrameScheduler::new(k);
            // three earlier arrivals (not offered to the worker) give the camera period
            arrivals(&mut s, t0 - CAMERA * 3, 3);
            let mut admitted = Vec::new();
            for i in 0..30u32 {
                let t = t0 + CAMERA * i;
                s.record_arrival(t);
                if s.admit(t) {
                    admitted.push(i);
                }
            }
            let expected: Vec<u32> = (0..30).filter(|i| i % k == 0).collect();
            assert_eq!(admitted, expected, "k = {k}");
            assert_eq!(s.factor(), k);
        }
    }

    #[test]
    fn a_late_frame_restarts_the_grid() {
        let mut s = FrameScheduler::new(2);
        let t0 = Instant::now();
        arrivals(&mut s, t0, 5);
        assert!(s.admit(t0));
        // the worker was busy for frames 1-2 (not offered); frame 3 is due (3 ≥ 1.5 periods)
        assert!(s.admit(t0 + CAMERA * 3));
        assert!(!s.admit(t0 + CAMERA * 4));
        assert!(s.admit(t0 + CAMERA * 5));
    }

    #[test]
    fn automatic_factor_covers_the_latency_p99() {
        let mut s = FrameScheduler::new(0);
        let t0 = Instant::now();
        arrivals(&mut s, t0, 40);
        assert_eq!(s.factor(), 1);
        // warm-up results (slow first inferences) are not counted, and too few samples change nothing
        feed(&mut s, 500.0, WARMUP_RESULTS as usize);
        feed(&mut s, 20.0, MIN_LATENCY_SAMPLES - 1);
        assert_eq!(s.factor(), 1);
        assert_eq!(s.latency_p99_ms(), Some(20.0));
        // p99 58 ms against a 33.3 ms camera: every second frame (66.7 ≥ 1.05 · 58)
        feed(&mut s, 58.0, LATENCY_WINDOW);
        assert_eq!(s.factor(), 2);
        // p99 65 ms: 66.7 < 1.05 · 65, so every third
        feed(&mut s, 65.0, LATENCY_WINDOW);
        assert_eq!(s.factor(), 3);
        // back to 55 ms: two periods leave 1.15 · 55 = 63.3 ≤ 66.7: down to 2, and no further
        feed(&mut s, 55.0, 4 * LATENCY_WINDOW);
        assert_eq!(s.factor(), 2, "no oscillation at a steady latency");
        // p99 is the tail, not the maximum: one slow result in the window does not count
        let mut mixed = FrameScheduler::new(0);
        arrivals(&mut mixed, t0, 40);
        feed(&mut mixed, 20.0, WARMUP_RESULTS as usize);
        for i in 0..LATENCY_WINDOW {
            mixed.on_result(if i == 128 { 90.0 } else { 20.0 });
        }
        assert_eq!(mixed.factor(), 1);
        // a fast machine (GPU): back to every frame
        feed(&mut s, 20.0, LATENCY_WINDOW);
        assert_eq!(s.factor(), 1);
        // bounded however slow
        feed(&mut s, 10_000.0, LATENCY_WINDOW);
        assert_eq!(s.factor(), MAX_AUTO_FACTOR);
        // non-finite latencies are ignored
        feed(&mut s, f64::NAN, LATENCY_WINDOW);
        assert_eq!(s.factor(), MAX_AUTO_FACTOR);
    }

    #[test]
    fn a_fixed_factor_never_adapts() {
        let mut s = FrameScheduler::new(1);
        arrivals(&mut s, Instant::now(), 40);
        feed(&mut s, 90.0, 4 * LATENCY_WINDOW);
        assert_eq!(s.factor(), 1);
        assert_eq!(s.latency_p99_ms(), None);
        assert_eq!(FrameScheduler::new(1000).factor(), MAX_FACTOR);
    }
}
