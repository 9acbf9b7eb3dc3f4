//! The bundle adjustment of the recent keyframes ([`crate::vo::bundle`]) run when a monocular keyframe is
//! made: the window's poses (the two oldest fixed: they hold the gauge, the scale included) and every
//! landmark seen by at least two of its keyframes, written back to every keyframe that holds them.

use std::collections::HashMap;

use nalgebra::Vector3;

use super::super::bundle::{Bundle, Observation};
use super::VisualOdometry;

impl VisualOdometry {
    /// Adjusts the last [`crate::vo::MonocularOptions::window_keyframes`] keyframes and their shared
    /// landmarks (nothing while fewer than three keyframes exist).
    pub(super) fn adjust_window(&mut self) {
        let size = self.options.monocular.window_keyframes;
        let n = self.keyframes.len();
        if size < 3 || n < 3 {
            return;
        }
        let first = n - size.min(n);
        // every observation of the window, by landmark identity
        let mut seen: HashMap<u64, Vec<(usize, [f32; 2])>> = HashMap::new();
        let mut position: HashMap<u64, Vector3<f64>> = HashMap::new();
        for (w, kf) in self.keyframes.iter().skip(first).enumerate() {
            for (row, id) in kf.ids.iter().enumerate() {
                seen.entry(*id).or_default().push((w, kf.keypoints[row]));
                position.insert(*id, kf.points[row]);
            }
            for (id, px) in &kf.extra {
                seen.entry(*id).or_default().push((w, *px));
            }
        }
        let mut index: HashMap<u64, usize> = HashMap::new();
        let mut points = Vec::new();
        let mut observations = Vec::new();
        let mut ids: Vec<u64> = seen.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let obs = &seen[&id];
            let Some(p) = position.get(&id) else { continue };
            if obs.len() < 2 {
                continue;
            }
            index.insert(id, points.len());
            for (w, px) in obs {
                observations.push(Observation {
                    pose: *w,
                    point: points.len(),
                    pixel: [px[0] as f64, px[1] as f64],
                });
            }
            points.push(*p);
        }
        let window = n - first;
        let mut bundle = Bundle {
            camera: *self.rig.camera(),
            poses: self
                .keyframes
                .iter()
                .skip(first)
                .map(|kf| kf.world_from_camera.inverse())
                .collect(),
            fixed: (0..window).map(|w| w < 2).collect(),
            points,
            observations,
        };
        let report = bundle.adjust(
            self.options.monocular.bundle_loss_px,
            self.options.monocular.bundle_iterations,
        );
        log::debug!(
            "vo: window of {window} keyframes, {} landmarks, {} observations: cost {:.1} → {:.1} px² in {} iterations",
            bundle.points.len(),
            bundle.observations.len(),
            report.initial_cost,
            report.final_cost,
            report.iterations
        );
        if !(report.final_cost < report.initial_cost) {
            return;
        }
        for (kf, pose) in self.keyframes.iter_mut().skip(first).zip(&bundle.poses) {
            kf.world_from_camera = pose.inverse();
        }
        for kf in self.keyframes.iter_mut() {
            for (row, id) in kf.ids.iter().enumerate() {
                if let Some(&i) = index.get(id) {
                    kf.points[row] = bundle.points[i];
                }
            }
        }
    }
}
