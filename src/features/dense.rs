//! Dense descriptor maps: an extractor's coarse descriptor grid (XFeat's `64 × H/8 × W/8`, MATCHA's F_m) kept
//! whole, with the exact mapping between image pixels and map cells, for the consumers that need descriptors
//! anywhere rather than at detected keypoints (point tracking, [`crate::track`]).
//!
//! The map is stored channel-last with every cell L2-normalised, so a dot product is the cosine similarity
//! the keypoint descriptors use. Pixel ↔ map is one affine map per axis (`m = scale·p + offset`, map cells at
//! integer coordinates), derived by each extractor from the same `grid_sample` convention its keypoint
//! descriptors use, so that [`DenseDescriptors::sample`] at a keypoint equals (up to interpolation: bilinear
//! here, XFeat's keypoints use bicubic) that keypoint's descriptor.
//!
//! Not here: choosing points, matching, or tracking. Samples outside the map are refused (`None`), not
//! zero-padded: a track leaving the image must be seen as such.

use ndarray::ArrayView3;

/// A dense, cell-normalised descriptor map of one image.
#[derive(Debug, Clone)]
pub struct DenseDescriptors {
    /// `height × width × dim`, channel-last, each cell of unit norm (or zero where the network gave zero).
    data: Vec<f32>,
    dim: usize,
    width: usize,
    height: usize,
    image_size: [u32; 2],
    /// map coordinate = `scale · pixel + offset`, per axis (x, y).
    scale: [f64; 2],
    offset: [f64; 2],
}

/// The best cell of a correlation search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Peak {
    /// Position in image pixels (the best cell, moved by a parabola fit over its neighbours).
    pub pixel: [f32; 2],
    /// Cosine similarity at the best cell.
    pub similarity: f32,
    /// Best similarity among the cells at least two cells away from the peak (−1 when there are none): how
    /// distinctive the peak is.
    pub runner_up: f32,
}

impl DenseDescriptors {
    /// From a `dim × h × w` map of an image of `image_size` pixels, where map coordinate
    /// `m = scale·p + offset` per axis; each cell is L2-normalised here.
    pub fn from_chw(
        map: ArrayView3<'_, f32>,
        image_size: [u32; 2],
        scale: [f64; 2],
        offset: [f64; 2],
    ) -> Self {
        let (dim, height, width) = map.dim();
        let mut data: Vec<f32> = map.permuted_axes([1, 2, 0]).iter().copied().collect();
        if dim > 0 {
            for cell in data.chunks_exact_mut(dim) {
                let n = cell.iter().map(|v| v * v).sum::<f32>().sqrt();
                if n > 0.0 && n.is_finite() {
                    cell.iter_mut().for_each(|v| *v /= n);
                } else {
                    cell.iter_mut().for_each(|v| *v = 0.0);
                }
            }
        }
        Self {
            data,
            dim,
            width,
            height,
            image_size,
            scale,
            offset,
        }
    }

    /// The mapping of a map sampled with `grid_sample` through the normalised coordinate `2·x/(L−1) − 1` of an
    /// engine input of `input_size` (width, height) that is a bilinear resize (`align_corners = false`) of an
    /// image of `image_size`: returns `(scale, offset)` for [`DenseDescriptors::from_chw`].
    pub fn grid_sample_mapping(
        image_size: [u32; 2],
        input_size: [usize; 2],
        map_size: [usize; 2],
        align_corners: bool,
    ) -> ([f64; 2], [f64; 2]) {
        let mut scale = [0.0; 2];
        let mut offset = [0.0; 2];
        for k in 0..2 {
            let ratio = input_size[k] as f64 / image_size[k].max(1) as f64; // input px per image px
            let denom = (input_size[k] as f64 - 1.0).max(1.0);
            let m = map_size[k] as f64;
            // input coordinate q = ratio·(p + 0.5) − 0.5; g = 2q/denom − 1
            let (a, b) = if align_corners {
                ((m - 1.0) / denom, 0.0)
            } else {
                (m / denom, -0.5)
            };
            scale[k] = a * ratio;
            offset[k] = a * (0.5 * ratio - 0.5) + b;
        }
        (scale, offset)
    }

    /// Descriptor dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Map size in cells `[width, height]`.
    pub fn map_size(&self) -> [usize; 2] {
        [self.width, self.height]
    }

    /// Size of the image the map describes.
    pub fn image_size(&self) -> [u32; 2] {
        self.image_size
    }

    /// Image pixels per map cell (x, y).
    pub fn pixels_per_cell(&self) -> [f64; 2] {
        [1.0 / self.scale[0], 1.0 / self.scale[1]]
    }

    fn to_map(&self, p: [f32; 2]) -> [f64; 2] {
        [
            self.scale[0] * p[0] as f64 + self.offset[0],
            self.scale[1] * p[1] as f64 + self.offset[1],
        ]
    }

    fn to_pixel(&self, m: [f64; 2]) -> [f32; 2] {
        [
            ((m[0] - self.offset[0]) / self.scale[0]) as f32,
            ((m[1] - self.offset[1]) / self.scale[1]) as f32,
        ]
    }

    fn cell(&self, x: usize, y: usize) -> &[f32] {
        let base = (y * self.width + x) * self.dim;
        &self.data[base..base + self.dim]
    }

    /// The descriptor of cell `(x, y)` (`x < width`, `y < height` of [`Self::map_size`]; panics otherwise).
    pub fn cell_descriptor(&self, x: usize, y: usize) -> &[f32] {
        self.cell(x, y)
    }

    /// The image pixel at the centre of cell `(x, y)`.
    pub fn cell_pixel(&self, x: usize, y: usize) -> [f32; 2] {
        self.to_pixel([x as f64, y as f64])
    }

    /// The descriptor at pixel `p` (bilinear between the four nearest cells, L2-normalised; clamped to the
    /// border cells within one cell outside the span of the cell centres, which covers every pixel of the
    /// image); `None` when `p` is not finite or farther out.
    pub fn sample(&self, p: [f32; 2]) -> Option<Vec<f32>> {
        if !(p[0].is_finite() && p[1].is_finite()) || self.width == 0 || self.height == 0 {
            return None;
        }
        let m = self.to_map(p);
        let (w, h) = (self.width as f64, self.height as f64);
        if m[0] < -1.0 || m[1] < -1.0 || m[0] > w || m[1] > h {
            return None;
        }
        let x = m[0].clamp(0.0, w - 1.0);
        let y = m[1].clamp(0.0, h - 1.0);
        let (x0, y0) = (x.floor() as usize, y.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(self.width - 1), (y0 + 1).min(self.height - 1));
        let (tx, ty) = ((x - x0 as f64) as f32, (y - y0 as f64) as f32);
        let mut out = vec![0.0f32; self.dim];
        for (cx, cy, wt) in [
            (x0, y0, (1.0 - tx) * (1.0 - ty)),
            (x1, y0, tx * (1.0 - ty)),
            (x0, y1, (1.0 - tx) * ty),
            (x1, y1, tx * ty),
        ] {
            if wt != 0.0 {
                for (o, v) in out.iter_mut().zip(self.cell(cx, cy)) {
                    *o += wt * v;
                }
            }
        }
        let n = out.iter().map(|v| v * v).sum::<f32>().sqrt();
        if n > 0.0 {
            out.iter_mut().for_each(|v| *v /= n);
            Some(out)
        } else {
            None
        }
    }

    /// The cell most similar to `descriptor` (unit norm, `dim` values) among those whose centre lies within
    /// `radius_px` of `centre` (Chebyshev distance in pixels; `f32::INFINITY`: the whole map), with a parabola
    /// fit over its neighbours for a sub-cell position. `None` when no cell is in range or the lengths differ.
    pub fn search(&self, descriptor: &[f32], centre: [f32; 2], radius_px: f32) -> Option<Peak> {
        if descriptor.len() != self.dim || self.dim == 0 || radius_px.is_nan() || radius_px < 0.0 {
            return None;
        }
        let (lo, hi) = if radius_px.is_finite() && centre[0].is_finite() && centre[1].is_finite() {
            let a = self.to_map([centre[0] - radius_px, centre[1] - radius_px]);
            let b = self.to_map([centre[0] + radius_px, centre[1] + radius_px]);
            let clamp = |v: f64, n: usize| v.clamp(0.0, n as f64 - 1.0);
            (
                [
                    clamp(a[0].ceil(), self.width) as usize,
                    clamp(a[1].ceil(), self.height) as usize,
                ],
                [
                    b[0].floor().min(self.width as f64 - 1.0),
                    b[1].floor().min(self.height as f64 - 1.0),
                ],
            )
        } else if radius_px.is_infinite() {
            ([0, 0], [self.width as f64 - 1.0, self.height as f64 - 1.0])
        } else {
            return None;
        };
        if hi[0] < lo[0] as f64 || hi[1] < lo[1] as f64 {
            return None;
        }
        let (x1, y1) = (hi[0] as usize, hi[1] as usize);
        let (nx, ny) = (x1 - lo[0] + 1, y1 - lo[1] + 1);
        let mut sims = vec![f32::NEG_INFINITY; nx * ny];
        let mut best = (0usize, 0usize, f32::NEG_INFINITY);
        for y in lo[1]..=y1 {
            for x in lo[0]..=x1 {
                let s: f32 = self
                    .cell(x, y)
                    .iter()
                    .zip(descriptor)
                    .map(|(a, b)| a * b)
                    .sum();
                sims[(y - lo[1]) * nx + (x - lo[0])] = s;
                if s > best.2 {
                    best = (x, y, s);
                }
            }
        }
        let (bx, by, bs) = best;
        if !bs.is_finite() {
            return None;
        }
        let mut runner_up = -1.0f32;
        for y in lo[1]..=y1 {
            for x in lo[0]..=x1 {
                if x.abs_diff(bx) >= 2 || y.abs_diff(by) >= 2 {
                    runner_up = runner_up.max(sims[(y - lo[1]) * nx + (x - lo[0])]);
                }
            }
        }
        // sub-cell: a parabola through the neighbours along each axis (the full-map similarity, not only the
        // window's, so a peak on the window's edge is still fitted)
        let sim_at = |x: usize, y: usize| -> f32 {
            self.cell(x, y)
                .iter()
                .zip(descriptor)
                .map(|(a, b)| a * b)
                .sum()
        };
        let parabola = |a: f32, b: f32, c: f32| -> f64 {
            let d = a - 2.0 * b + c;
            if d < -1e-9 {
                (0.5 * (a - c) / d).clamp(-0.5, 0.5) as f64
            } else {
                0.0
            }
        };
        let dx = if bx > 0 && bx + 1 < self.width {
            parabola(sim_at(bx - 1, by), bs, sim_at(bx + 1, by))
        } else {
            0.0
        };
        let dy = if by > 0 && by + 1 < self.height {
            parabola(sim_at(bx, by - 1), bs, sim_at(bx, by + 1))
        } else {
            0.0
        };
        Some(Peak {
            pixel: self.to_pixel([bx as f64 + dx, by as f64 + dy]),
            similarity: bs,
            runner_up,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    /// A map whose cell (x, y) holds a distinct one-hot-like unit vector.
    fn map(w: usize, h: usize) -> DenseDescriptors {
        let dim = w * h;
        let mut m = Array3::<f32>::zeros((dim, h, w));
        for y in 0..h {
            for x in 0..w {
                m[[y * w + x, y, x]] = 2.0; // normalised to 1
            }
        }
        let (scale, offset) = DenseDescriptors::grid_sample_mapping(
            [8 * w as u32, 8 * h as u32],
            [8 * w, 8 * h],
            [w, h],
            false,
        );
        DenseDescriptors::from_chw(m.view(), [8 * w as u32, 8 * h as u32], scale, offset)
    }

    #[test]
    fn mapping_matches_grid_sample_conventions() {
        // align_corners = false over an 8x-downsampled map of an image at its input size: the arithmetic of
        // GridConvention in sampling.rs, g = 2p/(W-1) - 1 then ((g + 1) w - 1) / 2
        let (s, o) = DenseDescriptors::grid_sample_mapping([640, 480], [640, 480], [80, 60], false);
        for p in [0.0f32, 3.5, 100.25, 639.0] {
            let g = 2.0 * p as f64 / 639.0 - 1.0;
            let want = ((g + 1.0) * 80.0 - 1.0) / 2.0;
            assert!((s[0] * p as f64 + o[0] - want).abs() < 1e-9);
        }
        // align_corners = true with a resize 640 -> 320: pixel 639.5 (the right edge) is input 319.5
        let (s, o) = DenseDescriptors::grid_sample_mapping([640, 480], [320, 240], [40, 30], true);
        let q = 0.5 * (100.0 + 0.5) - 0.5;
        let want = q / 319.0 * 39.0;
        assert!((s[0] * 100.0 + o[0] - want).abs() < 1e-9);
    }

    #[test]
    fn sample_and_search_find_the_cell() {
        let d = map(10, 8);
        // the descriptor of cell (6, 3) found from afar, at that cell's pixel centre
        let target = d.sample(d.to_pixel([6.0, 3.0])).unwrap();
        let peak = d.search(&target, [20.0, 20.0], f32::INFINITY).unwrap();
        let want = d.to_pixel([6.0, 3.0]);
        assert!((peak.pixel[0] - want[0]).abs() < 1e-3 && (peak.pixel[1] - want[1]).abs() < 1e-3);
        assert!((peak.similarity - 1.0).abs() < 1e-5);
        assert!(peak.runner_up < 0.01);
        // a window that does not contain it finds something else, less similar
        let far = d.search(&target, [8.0, 8.0], 10.0).unwrap();
        assert!(far.similarity < 0.5);
        // every pixel of the image has a descriptor (the border ones clamp to the border cells)
        for p in [[-0.5f32, -0.5], [79.4, 63.4], [0.0, 63.0]] {
            assert!(d.sample(p).is_some(), "{p:?}");
        }
        // outside the map, non-finite, wrong length: refused
        assert!(d.sample([-20.0, 5.0]).is_none());
        assert!(d.sample([f32::NAN, 5.0]).is_none());
        assert!(d.search(&target[..3], [8.0, 8.0], 10.0).is_none());
        assert!(d.search(&target, [f32::NAN, 8.0], 10.0).is_none());
        assert!(d.search(&target, [-500.0, -500.0], 10.0).is_none());
    }

    #[test]
    fn sample_interpolates_between_cells() {
        let d = map(4, 4);
        let a = d.to_pixel([1.0, 1.0]);
        let b = d.to_pixel([2.0, 1.0]);
        let mid = d.sample([(a[0] + b[0]) / 2.0, a[1]]).unwrap();
        // equal weights on the two cells, renormalised
        let s = std::f32::consts::FRAC_1_SQRT_2;
        assert!((mid[5] - s).abs() < 1e-5 && (mid[6] - s).abs() < 1e-5);
    }
}
