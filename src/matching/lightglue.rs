//! LightGlue (Lindenberger et al., ICCV 2023) and XFeat's LighterGlue as matcher engines: a transformer
//! over both keypoint sets that outputs a log-assignment matrix, filtered here exactly like LightGlue's
//! `filter_matches` (mutual argmax, probability above a threshold).
//!
//! The graphs are exported with adaptive depth/width disabled (static graphs; all layers on all points).
//! Inputs: keypoints in the pixels of their image plus that image's size (the graph normalises them), and
//! the L2-normalised descriptors. Output `scores` is `(M+1) × (N+1)`, the last row/column being the log
//! probability of "unmatched". The engine is tied to the extractor whose descriptors it was trained on.

use ndarray::{Array2, Array3, Ix3};

use super::{Match, MatchError, Matcher, Matches};
use crate::features::Features;
use crate::runtime::{Engine, RuntimeConfig};

/// Engine file for the descriptors of `extractor` (`xfeat` → LighterGlue, `disk` / `aliked` → their
/// LightGlue).
pub fn engine_file(extractor: &str) -> String {
    match extractor {
        "xfeat" => "xfeat_lighterglue.onnx".into(),
        other => format!("{other}_lightglue.onnx"),
    }
}

/// The LightGlue matcher.
pub struct LightGlue {
    engine: Engine,
    threshold: f32,
}

impl LightGlue {
    /// Loads the LightGlue engine that fits `extractor`'s descriptors.
    pub fn new(
        runtime: &RuntimeConfig,
        extractor: &str,
        threshold: f32,
    ) -> Result<Self, MatchError> {
        let engine = Engine::load(&runtime.engines_dir.join(engine_file(extractor)), runtime)?;
        Ok(Self { engine, threshold })
    }
}

/// LightGlue's `filter_matches` on a log-assignment matrix `(M+1) × (N+1)`.
pub fn filter_log_assignment(scores: &Array2<f32>, threshold: f32) -> Vec<Match> {
    let (m1, n1) = scores.dim();
    if m1 < 2 || n1 < 2 {
        return Vec::new();
    }
    let (m, n) = (m1 - 1, n1 - 1);
    let argmax = |it: &mut dyn Iterator<Item = (usize, f32)>| {
        it.fold((0usize, f32::NEG_INFINITY), |best, (i, v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
    };
    let col_best: Vec<usize> = (0..n)
        .map(|j| argmax(&mut (0..m).map(|i| (i, scores[[i, j]]))).0)
        .collect();
    (0..m)
        .filter_map(|i| {
            let (j, v) = argmax(&mut (0..n).map(|j| (j, scores[[i, j]])));
            let p = v.exp();
            (col_best[j] == i && p > threshold).then_some(Match {
                a: i as u32,
                b: j as u32,
                score: p,
            })
        })
        .collect()
}

fn keypoint_tensor(f: &Features) -> Array3<f32> {
    Array3::from_shape_fn((1, f.len(), 2), |(_, i, c)| f.keypoints[i][c])
}

impl Matcher for LightGlue {
    fn name(&self) -> &str {
        "lightglue"
    }

    fn match_features(&mut self, a: &Features, b: &Features) -> Result<Matches, MatchError> {
        super::check_same_dimension(a, b)?;
        // The exported graph needs at least two keypoints per image.
        if a.len() < 2 || b.len() < 2 {
            return Ok(Matches::default());
        }
        let (ka, kb) = (keypoint_tensor(a), keypoint_tensor(b));
        let da = a.descriptors.clone().insert_axis(ndarray::Axis(0));
        let db = b.descriptors.clone().insert_axis(ndarray::Axis(0));
        let size = |f: &Features| {
            Array2::from_shape_vec((1, 2), vec![f.image_size[0] as f32, f.image_size[1] as f32])
        };
        let (sa, sb) = (
            size(a).map_err(|e| bad(e.to_string()))?,
            size(b).map_err(|e| bad(e.to_string()))?,
        );
        let mut out = self.engine.run(
            &[
                ("kpts0", ka.view().into_dyn()),
                ("kpts1", kb.view().into_dyn()),
                ("desc0", da.view().into_dyn()),
                ("desc1", db.view().into_dyn()),
                ("size0", sa.view().into_dyn()),
                ("size1", sb.view().into_dyn()),
            ],
            &["scores"],
        )?;
        let scores = out
            .pop()
            .unwrap_or_default()
            .into_dimensionality::<Ix3>()
            .map_err(|e| bad(e.to_string()))?;
        if scores.dim() != (1, a.len() + 1, b.len() + 1) {
            return Err(bad(format!(
                "scores {:?}, expected [1, {}, {}]",
                scores.shape(),
                a.len() + 1,
                b.len() + 1
            )));
        }
        let s2 = scores.index_axis_move(ndarray::Axis(0), 0);
        Ok(Matches {
            matches: filter_log_assignment(&s2, self.threshold),
        })
    }
}

fn bad(reason: String) -> MatchError {
    MatchError::BadOutput {
        matcher: "lightglue".into(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_keeps_mutual_confident_pairs() {
        let ln = |p: f32| p.ln();
        // 3 × 2 keypoints (+ dustbins).
        let s = Array2::from_shape_vec(
            (4, 3),
            vec![
                ln(0.8),
                ln(0.01),
                ln(0.1), //
                ln(0.6),
                ln(0.02),
                ln(0.1), // row 1's best is col 0, but col 0's best is row 0
                ln(0.01),
                ln(0.05),
                ln(0.9), // row 2's best is col 1 with p = 0.05 < threshold
                ln(0.1),
                ln(0.1),
                0.0,
            ],
        )
        .unwrap();
        let m = filter_log_assignment(&s, 0.1);
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].a, m[0].b), (0, 0));
        assert!((m[0].score - 0.8).abs() < 1e-6);
        let lax = filter_log_assignment(&s, 0.01);
        assert_eq!(
            lax.iter().map(|m| (m.a, m.b)).collect::<Vec<_>>(),
            vec![(0, 0), (2, 1)]
        );
        assert!(filter_log_assignment(&Array2::zeros((1, 5)), 0.1).is_empty());
    }

    #[test]
    fn engine_names() {
        assert_eq!(engine_file("xfeat"), "xfeat_lighterglue.onnx");
        assert_eq!(engine_file("disk"), "disk_lightglue.onnx");
        assert_eq!(engine_file("aliked"), "aliked_lightglue.onnx");
    }
}
