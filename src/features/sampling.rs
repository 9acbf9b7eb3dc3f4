//! Sampling dense maps at sparse keypoints, with exactly the semantics of PyTorch's
//! `F.grid_sample(..., padding_mode="zeros")` that the reference extractors use.
//!
//! Extractors sample a coarse map (e.g. 64 × H/8 × W/8 descriptors) at keypoints given in the pixels of a
//! larger image. The reference code maps a pixel `x` in an image of width `W` to the normalised grid
//! coordinate `g = 2·x/(W−1) − 1` and then lets `grid_sample` map `g` onto the coarse map. We reproduce both
//! steps with [`GridConvention`] so that parity with PyTorch is exact (not merely close): taps outside the map
//! contribute zero, bicubic uses PyTorch's `A = −0.75` kernel, nearest rounds half to even.
//!
//! This module only samples; it does not choose keypoints (see `keypoints`) or normalise descriptors.

use ndarray::{Array2, ArrayView3};

/// Interpolation mode (PyTorch `grid_sample` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpolation {
    /// Nearest neighbour, rounding half to even.
    Nearest,
    /// Bilinear.
    Bilinear,
    /// Bicubic, `A = −0.75`.
    Bicubic,
}

/// How keypoint pixel coordinates become sampling positions on the map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridConvention {
    /// Width and height of the image the keypoints are in (the `W`, `H` of `2·x/(W−1) − 1`).
    pub image_size: [f64; 2],
    /// `align_corners` of `grid_sample`.
    pub align_corners: bool,
}

impl GridConvention {
    /// Continuous map coordinate (in map pixels, pixel centres at integers) of image coordinate `v` along an
    /// axis where the image has `image_len` pixels and the map `map_len`.
    #[inline]
    fn map_coord(&self, v: f64, image_len: f64, map_len: f64) -> f64 {
        let g = 2.0 * v / (image_len - 1.0).max(1.0) - 1.0;
        if self.align_corners {
            (g + 1.0) / 2.0 * (map_len - 1.0)
        } else {
            ((g + 1.0) * map_len - 1.0) / 2.0
        }
    }
}

fn cubic_weights(t: f64) -> [f64; 4] {
    const A: f64 = -0.75;
    let w = |x: f64| -> f64 {
        let x = x.abs();
        if x <= 1.0 {
            ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
        } else if x < 2.0 {
            ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
        } else {
            0.0
        }
    };
    [w(t + 1.0), w(t), w(1.0 - t), w(2.0 - t)]
}

/// Samples a `C × h × w` map at `points` (pixels of the image described by `conv`); returns `N × C`.
///
/// The map is first laid out channel-last (one contiguous `C`-vector per map pixel) so that every tap of
/// the interpolation kernel is one contiguous multiply-add over the channels.
pub fn sample_map(
    map: ArrayView3<'_, f32>,
    points: &[[f32; 2]],
    conv: &GridConvention,
    mode: Interpolation,
) -> Array2<f32> {
    let (c, h, w) = map.dim();
    let hwc = map
        .permuted_axes([1, 2, 0])
        .as_standard_layout()
        .into_owned();
    let hwc = hwc.as_slice().unwrap_or(&[]);
    let mut out = Array2::<f32>::zeros((points.len(), c));
    let (hi, wi) = (h as i64, w as i64);
    let mut acc = vec![0f32; c];
    for (n, p) in points.iter().enumerate() {
        let ix = conv.map_coord(p[0] as f64, conv.image_size[0], w as f64);
        let iy = conv.map_coord(p[1] as f64, conv.image_size[1], h as f64);
        acc.iter_mut().for_each(|a| *a = 0.0);
        let tap = |x: i64, y: i64, wt: f64, acc: &mut [f32]| {
            if x >= 0 && y >= 0 && x < wi && y < hi && wt != 0.0 {
                let base = (y as usize * w + x as usize) * c;
                let wt = wt as f32;
                for (a, v) in acc.iter_mut().zip(&hwc[base..base + c]) {
                    *a += wt * v;
                }
            }
        };
        match mode {
            Interpolation::Nearest => {
                let x = ix.round_ties_even() as i64;
                let y = iy.round_ties_even() as i64;
                tap(x, y, 1.0, &mut acc);
            }
            Interpolation::Bilinear => {
                let (x0, y0) = (ix.floor(), iy.floor());
                let (tx, ty) = (ix - x0, iy - y0);
                let (x0, y0) = (x0 as i64, y0 as i64);
                tap(x0, y0, (1.0 - tx) * (1.0 - ty), &mut acc);
                tap(x0 + 1, y0, tx * (1.0 - ty), &mut acc);
                tap(x0, y0 + 1, (1.0 - tx) * ty, &mut acc);
                tap(x0 + 1, y0 + 1, tx * ty, &mut acc);
            }
            Interpolation::Bicubic => {
                let (x0, y0) = (ix.floor(), iy.floor());
                let wx = cubic_weights(ix - x0);
                let wy = cubic_weights(iy - y0);
                let (x0, y0) = (x0 as i64, y0 as i64);
                for (j, wyj) in wy.iter().enumerate() {
                    for (i, wxi) in wx.iter().enumerate() {
                        tap(x0 - 1 + i as i64, y0 - 1 + j as i64, wxi * wyj, &mut acc);
                    }
                }
            }
        }
        out.row_mut(n).assign(&ndarray::ArrayView1::from(&acc[..]));
    }
    out
}

/// L2-normalises each row in place (rows of zero norm stay zero).
pub fn l2_normalize_rows(x: &mut Array2<f32>) {
    for mut row in x.rows_mut() {
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if n > 1e-12 {
            row.mapv_inplace(|v| v / n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    fn ramp(h: usize, w: usize) -> Array3<f32> {
        Array3::from_shape_fn((1, h, w), |(_, y, x)| (10 * y + x) as f32)
    }

    #[test]
    fn align_corners_true_hits_pixel_centres() {
        let map = ramp(4, 5);
        let conv = GridConvention {
            image_size: [5.0, 4.0],
            align_corners: true,
        };
        for mode in [
            Interpolation::Nearest,
            Interpolation::Bilinear,
            Interpolation::Bicubic,
        ] {
            let s = sample_map(
                map.view(),
                &[[2.0, 1.0], [4.0, 3.0], [0.0, 0.0]],
                &conv,
                mode,
            );
            assert!((s[[0, 0]] - 12.0).abs() < 1e-5, "{mode:?}: {}", s[[0, 0]]);
            assert!((s[[1, 0]] - 34.0).abs() < 1e-5, "{mode:?}: {}", s[[1, 0]]);
            assert!((s[[2, 0]] - 0.0).abs() < 1e-5, "{mode:?}: {}", s[[2, 0]]);
        }
    }

    #[test]
    fn bilinear_is_linear_inside_and_zero_padded_outside() {
        let map = ramp(4, 5);
        let conv = GridConvention {
            image_size: [5.0, 4.0],
            align_corners: true,
        };
        let s = sample_map(map.view(), &[[1.5, 2.25]], &conv, Interpolation::Bilinear);
        assert!((s[[0, 0]] - 24.0).abs() < 1e-5);
        // align_corners=false: image corner pixel maps half a map pixel outside → half weight on zeros.
        let conv = GridConvention {
            image_size: [5.0, 4.0],
            align_corners: false,
        };
        let s = sample_map(map.view(), &[[0.0, 0.0]], &conv, Interpolation::Bilinear);
        // ix = iy = -0.5 → 0.25 × map[0,0] (= 0) → 0; use a constant map to see the padding.
        assert_eq!(s[[0, 0]], 0.0);
        let ones = Array3::<f32>::ones((1, 4, 5));
        let s = sample_map(ones.view(), &[[0.0, 0.0]], &conv, Interpolation::Bilinear);
        assert!((s[[0, 0]] - 0.25).abs() < 1e-6);
    }

    #[test]
    fn bicubic_uses_pytorch_kernel() {
        // PyTorch's A = -0.75 kernel does not reproduce linear ramps exactly (A = -0.5 would): along x at
        // t = 0.3 the weights' first moment is 0.342, along y at t = 0.6 it is 0.576 (hand-computed from
        // the kernel), so the ramp 10·y + x sampled at (3.3, 4.6) gives 45.76 + 3.342.
        let map = ramp(8, 8);
        let conv = GridConvention {
            image_size: [8.0, 8.0],
            align_corners: true,
        };
        let s = sample_map(map.view(), &[[3.3, 4.6]], &conv, Interpolation::Bicubic);
        assert!((s[[0, 0]] - 49.102).abs() < 1e-4, "{}", s[[0, 0]]);
    }

    #[test]
    fn normalises_rows() {
        let mut x = Array2::from_shape_vec((2, 2), vec![3.0, 4.0, 0.0, 0.0]).unwrap();
        l2_normalize_rows(&mut x);
        assert_eq!(x.row(0).to_vec(), vec![0.6, 0.8]);
        assert_eq!(x.row(1).to_vec(), vec![0.0, 0.0]);
    }
}
