//! `/diagnostics`: one status for the node, with the pipeline's health as its level and message, the
//! frame counters (received, processed, dropped by admission reason), latency percentiles, the heap and
//! resident memory (`node::heap`), every problem cause with its count and last message, the node's own
//! failures apart from rejected inputs, and in the odometry modes the tracking state and its counters.

use r2r::builtin_interfaces::msg::Time;
use r2r::diagnostic_msgs::msg::{DiagnosticArray, DiagnosticStatus, KeyValue};
use r2r::std_msgs::msg::Header;

use super::inbox::Shared;
use crate::node::config::NodeConfig;
use crate::node::heap::{heap_use, resident_bytes};

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

/// The node's one `DiagnosticStatus`: level and message (the pipeline's health, warnings for failures,
/// rejected inputs and lost tracking) and the counters as key/value pairs.
pub(super) fn diagnostics(
    shared: &Shared,
    node_name: &str,
    cfg: &NodeConfig,
    stamp: Time,
) -> DiagnosticArray {
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
        values.push(kv("mode", cfg.mode.name().to_string()));
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
        let heap = heap_use();
        values.push(kv(
            "heap_live_mib",
            format!("{:.2}", mib(heap.live_bytes as f64)),
        ));
        values.push(kv(
            "heap_peak_mib",
            format!("{:.2}", mib(heap.peak_bytes as f64)),
        ));
        if let Some(rss) = resident_bytes() {
            values.push(kv("rss_mib", format!("{:.2}", mib(rss as f64))));
        }
        for (cause, count, last) in s.causes() {
            values.push(kv(&format!("errors.{cause}"), count.to_string()));
            values.push(kv(&format!("errors.{cause}.last"), last.to_string()));
        }
        if let Some(m) = &s.relocalization_map {
            map_values(&mut values, m);
        }
        if let Some(o) = &s.odometry {
            values.push(kv("tracking_state", o.state.to_string()));
            values.push(kv("tracked_landmarks", o.tracked_landmarks.to_string()));
            values.push(kv("frames_by_flow", o.by_flow.to_string()));
            values.push(kv("keyframes", o.counters.keyframes.to_string()));
            values.push(kv("tracking_losses", o.counters.losses.to_string()));
            values.push(kv("tracking_recoveries", o.counters.recoveries.to_string()));
            values.push(kv("tracking_restarts", o.counters.restarts.to_string()));
            values.push(kv("resets", o.resets.to_string()));
            values.push(kv("mounting_source", o.mounting_source.to_string()));
            if let Some((m, localized)) = &o.map {
                map_values(&mut values, m);
                values.push(kv("map.localized", localized.to_string()));
            }
            if level == 0 && o.state == "lost" {
                level = 1;
                message = "tracking lost: pose held, covariance inflated".into();
            }
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

/// The map counters' `/diagnostics` values (stereo odometry's map session, relocalization mode).
fn map_values(values: &mut Vec<KeyValue>, m: &crate::node::map_session::MapCounters) {
    for (key, count) in [
        ("map.keyframes_written", m.written),
        ("map.localization_attempts", m.attempts),
        ("map.localizations", m.fixes),
        ("map.refused", m.refusals),
    ] {
        values.push(KeyValue {
            key: key.into(),
            value: count.to_string(),
        });
    }
}
