//! The frame-to-frame motion prior of point tracking: a sparse coarse flow field from the dense descriptor
//! maps, and from it a predicted displacement anywhere in the image.
//!
//! A grid of cells of the previous map (every `stride`-th cell) is searched for in a window of the current
//! map; a cell is kept when the match is similar and mutual (the found cell's own best match in the previous
//! map is within a cell of where it came from). A point's prediction is the component-wise median of the
//! displacements of its nearest kept cells. Why: the camera moves every static point coherently (and a
//! moving object its own cells), so neighbours predict a point's motion far better than its own velocity on
//! the first frames or when the camera starts to turn; a local median (not a global homography) follows the
//! parallax of a 3D scene and objects that move by themselves. This is what keeps repeated textures (brick,
//! tiles) from pulling a point onto a neighbouring copy of itself.
//!
//! Not here: per-point alignment (`tracker.rs`).

use crate::features::DenseDescriptors;

/// Displacements of grid cells between two frames.
#[derive(Debug, Clone, Default)]
pub struct MotionField {
    from: Vec<[f32; 2]>,
    displacement: Vec<[f32; 2]>,
    /// The kept cells' descriptors in the previous map, `dim` values each.
    descriptors: Vec<f32>,
    dim: usize,
}

/// Grid stride in cells.
const STRIDE: usize = 4;
/// Minimum similarity of a kept cell match.
const MIN_SIMILARITY: f32 = 0.8;
/// Neighbours whose median is a prediction.
const NEIGHBOURS: usize = 7;

impl MotionField {
    /// The field from `prev` to `cur` for motions up to `radius_px`.
    pub fn estimate(prev: &DenseDescriptors, cur: &DenseDescriptors, radius_px: f32) -> Self {
        let [w, h] = prev.map_size();
        let cell = prev.pixels_per_cell();
        let cell_px = cell[0].max(cell[1]) as f32;
        let mut field = Self {
            dim: prev.dim(),
            ..Self::default()
        };
        let offset = STRIDE / 2;
        for cy in (offset..h).step_by(STRIDE) {
            for cx in (offset..w).step_by(STRIDE) {
                let p = prev.cell_pixel(cx, cy);
                let d = prev.cell_descriptor(cx, cy);
                if d.iter().all(|v| *v == 0.0) {
                    continue;
                }
                let Some(fwd) = cur.search(d, p, radius_px) else {
                    continue;
                };
                if fwd.similarity < MIN_SIMILARITY || fwd.similarity - fwd.runner_up < 0.02 {
                    continue;
                }
                let Some(back_d) = cur.sample(fwd.pixel) else {
                    continue;
                };
                let Some(back) = prev.search(&back_d, fwd.pixel, radius_px) else {
                    continue;
                };
                if (back.pixel[0] - p[0]).hypot(back.pixel[1] - p[1]) > cell_px {
                    continue;
                }
                field.from.push(p);
                field.descriptors.extend_from_slice(d);
                field
                    .displacement
                    .push([fwd.pixel[0] - p[0], fwd.pixel[1] - p[1]]);
            }
        }
        field
    }

    /// Number of cells kept.
    pub fn len(&self) -> usize {
        self.from.len()
    }

    /// True when no cell was kept.
    pub fn is_empty(&self) -> bool {
        self.from.is_empty()
    }

    /// The predicted displacement of a point at `p` whose descriptor is `descriptor`: the median over the
    /// kept cells within `max_distance_px` that look most like the point (the [`NEIGHBOURS`] most similar;
    /// `None` when fewer than three are that close). Weighting by appearance, not by distance alone, keeps a
    /// point on the floor from moving with the object sliding past it: cells on the same surface look alike.
    ///
    /// With `velocity` (the point's own recent displacement per frame), only the neighbours that moved within
    /// `max(8 px, |velocity| / 2)` of it are used when there are at least two: a point keeps moving with
    /// the surface it was seen moving with.
    pub fn predict(
        &self,
        p: [f32; 2],
        descriptor: &[f32],
        velocity: Option<[f32; 2]>,
        max_distance_px: f32,
    ) -> Option<[f32; 2]> {
        let mut near: Vec<(f32, usize)> = self
            .from
            .iter()
            .enumerate()
            .filter(|(_, q)| (q[0] - p[0]).hypot(q[1] - p[1]) <= max_distance_px)
            .map(|(i, _)| {
                let d = &self.descriptors[i * self.dim..(i + 1) * self.dim];
                let similarity: f32 = if descriptor.len() == self.dim {
                    d.iter().zip(descriptor).map(|(a, b)| a * b).sum()
                } else {
                    0.0
                };
                (similarity, i)
            })
            .collect();
        if near.len() < 3 {
            return None;
        }
        near.sort_by(|a, b| b.0.total_cmp(&a.0));
        near.truncate(NEIGHBOURS);
        if let Some(v) = velocity {
            let tolerance = (0.5 * v[0].hypot(v[1])).max(8.0);
            let agreeing: Vec<(f32, usize)> = near
                .iter()
                .copied()
                .filter(|&(_, i)| {
                    let d = self.displacement[i];
                    (d[0] - v[0]).hypot(d[1] - v[1]) <= tolerance
                })
                .collect();
            if agreeing.len() >= 2 {
                near = agreeing;
            }
        }
        let median = |k: usize| {
            let mut v: Vec<f32> = near.iter().map(|&(_, i)| self.displacement[i][k]).collect();
            v.sort_by(f32::total_cmp);
            v[v.len() / 2]
        };
        Some([median(0), median(1)])
    }
}
