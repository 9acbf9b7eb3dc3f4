//! The TAP-Vid metrics (Doersch et al., NeurIPS 2022) of point tracks against ground truth, query-first
//! protocol: for every query, the frames strictly after its query frame are scored; positions are compared
//! after scaling both to 256 × 256.
//!
//! * occlusion accuracy: the share of scored (point, frame) pairs whose predicted visibility equals the truth;
//! * `< δ^x`: among the pairs visible in the truth, the share predicted within `x` pixels (strictly less),
//!   for `x` ∈ {1, 2, 4, 8, 16}; `< δ_avg` their mean;
//! * Jaccard at `x`: true positives (visible in both, within `x`) over true positives + false positives
//!   (predicted visible but occluded in the truth, or predicted visible and not within `x`) + false negatives
//!   (visible in the truth, predicted occluded); average Jaccard their mean over `x`.
//!
//! Formulated as in the benchmark's reference code (`compute_tapvid_metrics`), so numbers are comparable in
//! kind with the paper's table; they are computed per video and averaged over videos by the caller. Not here:
//! reading tracks (the CLI), other protocols (strided queries).

use super::TrackPoint;

/// Thresholds, pixels at 256 × 256.
pub const THRESHOLDS: [f32; 5] = [1.0, 2.0, 4.0, 8.0, 16.0];
/// The resolution positions are scaled to.
pub const EVAL_SIZE: f32 = 256.0;

/// TAP-Vid metrics of one video (fractions in [0, 1]).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TapVidMetrics {
    /// Predicted visibility equals the truth.
    pub occlusion_accuracy: f64,
    /// `< δ^x` per threshold of [`THRESHOLDS`].
    pub within: [f64; 5],
    /// Jaccard per threshold.
    pub jaccard: [f64; 5],
    /// Mean of `within`.
    pub average_within: f64,
    /// Mean of `jaccard`.
    pub average_jaccard: f64,
    /// Scored (point, frame) pairs.
    pub scored: usize,
    /// Of those, visible in the truth.
    pub visible: usize,
}

/// What is wrong with a pair of track sets.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct MetricsError(pub String);

/// Scores `predicted` against `truth` (per query, one entry per frame; `None` before the query frame, also
/// allowed in the truth where a position is unknown and the point is occluded). `query_frames[i]` is query i's
/// frame and `image_size` the frames' `[width, height]`. A predicted `None` on a scored frame counts as
/// predicted occluded.
pub fn tapvid_metrics(
    truth: &[Vec<Option<TrackPoint>>],
    predicted: &[Vec<Option<TrackPoint>>],
    query_frames: &[usize],
    image_size: [u32; 2],
) -> Result<TapVidMetrics, MetricsError> {
    if truth.len() != predicted.len() || truth.len() != query_frames.len() {
        return Err(MetricsError(format!(
            "{} true tracks, {} predicted, {} queries: they must be equal",
            truth.len(),
            predicted.len(),
            query_frames.len()
        )));
    }
    if image_size[0] == 0 || image_size[1] == 0 {
        return Err(MetricsError("empty image size".into()));
    }
    let sx = EVAL_SIZE / image_size[0] as f32;
    let sy = EVAL_SIZE / image_size[1] as f32;
    let (mut scored, mut agree, mut visible) = (0usize, 0usize, 0usize);
    let mut within = [0usize; 5];
    let mut true_pos = [0usize; 5];
    let mut false_pos = [0usize; 5];
    for (i, (t, p)) in truth.iter().zip(predicted).enumerate() {
        if t.len() != p.len() {
            return Err(MetricsError(format!(
                "query {i}: {} true frames, {} predicted",
                t.len(),
                p.len()
            )));
        }
        for f in query_frames[i] + 1..t.len() {
            let gt_visible = t[f].is_some_and(|g| g.visible);
            let pred = p[f];
            let pred_visible = pred.is_some_and(|q| q.visible);
            scored += 1;
            agree += (gt_visible == pred_visible) as usize;
            let close = |x: f32| -> bool {
                match (t[f], pred) {
                    (Some(g), Some(q)) if gt_visible => {
                        let dx = (g.position[0] - q.position[0]) * sx;
                        let dy = (g.position[1] - q.position[1]) * sy;
                        dx * dx + dy * dy < x * x
                    }
                    _ => false,
                }
            };
            if gt_visible {
                visible += 1;
            }
            for (k, &x) in THRESHOLDS.iter().enumerate() {
                let correct = close(x);
                within[k] += correct as usize;
                if correct && pred_visible {
                    true_pos[k] += 1;
                }
                if pred_visible && !correct {
                    false_pos[k] += 1;
                }
            }
        }
    }
    if scored == 0 {
        return Err(MetricsError(
            "nothing to score: no frame follows any query frame".into(),
        ));
    }
    let frac = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let within_f = within.map(|c| frac(c, visible));
    // Jaccard = TP / (TP + FP + FN) with FN = visible − TP, i.e. TP / (visible + FP)
    let mut jaccard = [0.0; 5];
    for k in 0..5 {
        jaccard[k] = frac(true_pos[k], visible + false_pos[k]);
    }
    Ok(TapVidMetrics {
        occlusion_accuracy: frac(agree, scored),
        within: within_f,
        jaccard,
        average_within: within_f.iter().sum::<f64>() / 5.0,
        average_jaccard: jaccard.iter().sum::<f64>() / 5.0,
        scored,
        visible,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(x: f32, y: f32, visible: bool) -> Option<TrackPoint> {
        Some(TrackPoint {
            position: [x, y],
            visible,
            confidence: 1.0,
        })
    }

    #[test]
    fn perfect_tracks_score_one() {
        let t = vec![vec![
            pt(10.0, 10.0, true),
            pt(12.0, 10.0, true),
            pt(0.0, 0.0, false),
        ]];
        let m = tapvid_metrics(&t, &t, &[0], [256, 256]).unwrap();
        assert_eq!(m.scored, 2);
        assert_eq!(m.visible, 1);
        assert_eq!(m.occlusion_accuracy, 1.0);
        assert_eq!(m.average_within, 1.0);
        assert_eq!(m.average_jaccard, 1.0);
    }

    #[test]
    fn hand_computed_case() {
        // 512 x 256 image: x distances are halved at 256 x 256.
        // frame 1: visible, predicted 3 px right (1.5 at 256): within 2, 4, 8, 16 not 1
        // frame 2: visible, predicted occluded (near): a false negative at every threshold, visibility wrong
        // frame 3: occluded, predicted visible: a false positive everywhere, visibility wrong
        // frame 0 is the query frame: not scored even though it is wrong.
        let t = vec![vec![
            pt(100.0, 50.0, true),
            pt(100.0, 50.0, true),
            pt(100.0, 50.0, true),
            pt(100.0, 50.0, false),
        ]];
        let p = vec![vec![
            pt(0.0, 0.0, false),
            pt(103.0, 50.0, true),
            pt(100.0, 50.0, false),
            pt(100.0, 50.0, true),
        ]];
        let m = tapvid_metrics(&t, &p, &[0], [512, 256]).unwrap();
        assert_eq!(m.scored, 3);
        assert_eq!(m.visible, 2);
        assert!((m.occlusion_accuracy - 1.0 / 3.0).abs() < 1e-12);
        // within: frame 2's position is exact even though predicted occluded (TAP-Vid scores positions of
        // visible truth regardless of the predicted flag)
        assert_eq!(m.within, [0.5, 1.0, 1.0, 1.0, 1.0]);
        // jaccard at 1: TP 0, FP: frame 1 (not within) + frame 3 = 2, visible 2 -> 0/4
        // at >= 2: TP 1 (frame 1), FP 1 (frame 3) -> 1 / (2 + 1)
        assert_eq!(m.jaccard[0], 0.0);
        for k in 1..5 {
            assert!((m.jaccard[k] - 1.0 / 3.0).abs() < 1e-12);
        }
        // a missing prediction counts as occluded
        let none = vec![vec![None, None, None, None]];
        let m = tapvid_metrics(&t, &none, &[0], [512, 256]).unwrap();
        assert_eq!(m.average_within, 0.0);
        assert!((m.occlusion_accuracy - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn mismatched_inputs_are_errors() {
        let t = vec![vec![pt(1.0, 1.0, true), pt(1.0, 1.0, true)]];
        let short = vec![vec![pt(1.0, 1.0, true)]];
        assert!(tapvid_metrics(&t, &short, &[0], [10, 10]).is_err());
        assert!(tapvid_metrics(&t, &t, &[0, 1], [10, 10]).is_err());
        assert!(tapvid_metrics(&t, &t, &[1], [10, 10]).is_err()); // nothing after the query frame
        assert!(tapvid_metrics(&t, &t, &[0], [0, 10]).is_err());
    }
}
