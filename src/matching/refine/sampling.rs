//! Bilinear sampling of an 8-bit grayscale image on the square grids of the match refinement ([`super`]):
//! a unit-spaced grid ([`sample_grid`], the translation model and the template: one set of four weights
//! serves every sample) and an affinely warped grid ([`sample_affine_grid`], the affine model's inner loop,
//! where every sample has its own sub-pixel weights).
//!
//! Affine grid: sample `(i, j)` (`0 <= i, j < 2r+1`, row-major output) lies at `c + M·(i − r, j − r)`. Two
//! implementations give bit-identical results: a portable scalar loop and, on x86-64 CPUs with AVX2 (checked
//! at run time), eight samples at a time with gathered pixel pairs. Both compute every position directly from
//! the formula above (no accumulated increments) with the same operations in the same order.
//!
//! What it does not do: interpolate beyond bilinear, or sample partly outside the image (the whole grid must
//! lie inside, else nothing is sampled). It is the only `unsafe` code of the crate's computation (the other is
//! the allocator glue in `node::heap`): the AVX2 intrinsics; every gathered address is clamped into the image
//! buffer first, so even a position rounding past the checked bound cannot read outside it.

use image::GrayImage;

/// Samples the `(2e+1)²` grid centred on `(cx, cy)` (unit spacing) bilinearly into `out`, row-major.
/// Returns false (leaving `out` unspecified) when a sample would need a pixel outside the image.
pub(super) fn sample_grid(img: &GrayImage, cx: f32, cy: f32, e: usize, out: &mut [f32]) -> bool {
    if !(cx.is_finite() && cy.is_finite()) {
        return false;
    }
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (x0f, y0f) = (cx.floor(), cy.floor());
    // the top-left sample's integer pixel; all samples need [x0, x0 + 2e + 1] × [y0, y0 + 2e + 1]
    // (compared as floats first: huge coordinates must not wrap when cast)
    let side = 2 * e + 1;
    let (left, top) = (x0f - e as f32, y0f - e as f32);
    if !(left >= 0.0
        && top >= 0.0
        && left + (side as f32) < w as f32
        && top + (side as f32) < h as f32)
    {
        return false;
    }
    let (left, top) = (left as usize, top as usize);
    if left + side >= w || top + side >= h || out.len() < side * side {
        return false;
    }
    let (fx, fy) = (cx - x0f, cy - y0f);
    let (w00, w01, w10, w11) = (
        (1.0 - fx) * (1.0 - fy),
        fx * (1.0 - fy),
        (1.0 - fx) * fy,
        fx * fy,
    );
    let data = img.as_raw();
    for (j, row_out) in out.chunks_exact_mut(side).take(side).enumerate() {
        let base = (top + j) * w + left;
        let (r0, r1) = (
            &data[base..base + side + 1],
            &data[base + w..base + w + side + 1],
        );
        for ((o, (&a0, &a1)), (&b0, &b1)) in row_out
            .iter_mut()
            .zip(r0[..side].iter().zip(&r0[1..]))
            .zip(r1[..side].iter().zip(&r1[1..]))
        {
            *o = w00 * a0 as f32 + w01 * a1 as f32 + w10 * b0 as f32 + w11 * b1 as f32;
        }
    }
    true
}

/// Samples the `(2r+1)²` grid at `centre + M·(i − r, j − r)` (`m = [m00, m01, m10, m11]`) bilinearly into
/// `out` (row-major, at least `(2r+1)²` long). Returns false, sampling nothing, when a sample could need a
/// pixel outside the image, when the input is not finite, or when `out` is too short.
pub(super) fn sample_affine_grid(
    img: &GrayImage,
    centre: [f32; 2],
    m: [f32; 4],
    r: usize,
    out: &mut [f32],
) -> bool {
    let side = 2 * r + 1;
    let (w, h) = (img.width() as usize, img.height() as usize);
    if out.len() < side * side || w < 2 || h < 2 {
        return false;
    }
    let [cx, cy] = centre;
    let rf = r as f32;
    // every sample lies in the parallelogram spanned by the grid's corners
    let (ex, ey) = (
        rf * (m[0].abs() + m[1].abs()),
        rf * (m[2].abs() + m[3].abs()),
    );
    if !(cx - ex >= 0.0 && cy - ey >= 0.0 && cx + ex < (w - 1) as f32 && cy + ey < (h - 1) as f32) {
        return false; // also false for any NaN
    }
    let grid = Grid {
        data: img.as_raw(),
        w,
        h,
        centre,
        m,
        r,
    };
    #[cfg(target_arch = "x86_64")]
    {
        // the vector path reads four bytes per pixel pair: the grid must keep a row clear of the image's end
        // (and offsets must fit in i32)
        if cy + ey < (h - 2) as f32
            && grid.data.len() < i32::MAX as usize
            && std::is_x86_feature_detected!("avx2")
        {
            // SAFETY: AVX2 is available (checked just above).
            unsafe { avx2::sample(&grid, out) };
            return true;
        }
    }
    grid.sample_scalar(out);
    true
}

/// One sampling request (bounds already checked).
struct Grid<'a> {
    data: &'a [u8],
    w: usize,
    h: usize,
    centre: [f32; 2],
    m: [f32; 4],
    r: usize,
}

impl Grid<'_> {
    /// Position of sample `(i, j)`.
    #[inline(always)]
    fn position(&self, i: usize, j: usize) -> (f32, f32) {
        let (u, v) = (i as f32 - self.r as f32, j as f32 - self.r as f32);
        let [m00, m01, m10, m11] = self.m;
        (
            self.centre[0] + (m00 * u + m01 * v),
            self.centre[1] + (m10 * u + m11 * v),
        )
    }

    /// Bilinear value at `(x, y)`; positions are clamped to the image so that rounding at the checked bound
    /// cannot index past it.
    #[inline(always)]
    fn bilinear(&self, x: f32, y: f32) -> f32 {
        // truncation is the floor for x, y >= 0 (negative or NaN saturate to 0)
        let x0 = (x as usize).min(self.w - 2);
        let y0 = (y as usize).min(self.h - 2);
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let i = y0 * self.w + x0;
        let d = self.data;
        let (p00, p01, p10, p11) = (
            d[i] as f32,
            d[i + 1] as f32,
            d[i + self.w] as f32,
            d[i + self.w + 1] as f32,
        );
        let top = p00 + fx * (p01 - p00);
        let bottom = p10 + fx * (p11 - p10);
        top + fy * (bottom - top)
    }

    fn sample_scalar(&self, out: &mut [f32]) {
        let side = 2 * self.r + 1;
        for (j, row) in out.chunks_exact_mut(side).take(side).enumerate() {
            for (i, o) in row.iter_mut().enumerate() {
                let (x, y) = self.position(i, j);
                *o = self.bilinear(x, y);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::Grid;
    use std::arch::x86_64::*;

    /// [`Grid::sample_scalar`] eight samples at a time (same operations, same order: bit-identical).
    ///
    /// # Safety
    /// The CPU must support AVX2; `grid.data.len() < i32::MAX`, `grid.w, grid.h >= 2`, and the image must
    /// have at least one row below the lower pixel row of every sample (the caller's bound check): the
    /// gathers read four bytes from each pixel pair's left pixel.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn sample(grid: &Grid, out: &mut [f32]) {
        let side = 2 * grid.r + 1;
        let w = grid.w as i32;
        let [m00, m01, m10, m11] = grid.m;
        let lane = _mm256_setr_ps(0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0);
        let zero = _mm256_setzero_si256();
        // the last byte offset a four-byte read may start at
        let max_offset = _mm256_set1_epi32(grid.data.len() as i32 - 4);
        let max_x0 = _mm256_set1_epi32(w - 2);
        let max_y0 = _mm256_set1_epi32(grid.h as i32 - 2);
        let vw = _mm256_set1_epi32(w);
        let byte = _mm256_set1_epi32(0xff);
        let base = grid.data.as_ptr() as *const i32;
        let rf = grid.r as f32;
        let mut block = [0.0f32; 8];
        for (j, row) in out.chunks_exact_mut(side).take(side).enumerate() {
            let v = j as f32 - rf;
            let (vx, vy) = (_mm256_set1_ps(m01 * v), _mm256_set1_ps(m11 * v));
            for start in (0..side).step_by(8) {
                // u = i − r for the eight lanes
                let u = _mm256_add_ps(_mm256_set1_ps(start as f32 - rf), lane);
                let x = _mm256_add_ps(
                    _mm256_set1_ps(grid.centre[0]),
                    _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(m00), u), vx),
                );
                let y = _mm256_add_ps(
                    _mm256_set1_ps(grid.centre[1]),
                    _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(m10), u), vy),
                );
                // truncation (= floor for the in-bounds lanes), clamped like the scalar path
                let x0 = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvttps_epi32(x), zero), max_x0);
                let y0 = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvttps_epi32(y), zero), max_y0);
                let fx = _mm256_sub_ps(x, _mm256_cvtepi32_ps(x0));
                let fy = _mm256_sub_ps(y, _mm256_cvtepi32_ps(y0));
                let top_offset = _mm256_add_epi32(_mm256_mullo_epi32(y0, vw), x0);
                let bottom_offset = _mm256_add_epi32(top_offset, vw);
                let top_offset = _mm256_min_epi32(top_offset, max_offset);
                let bottom_offset = _mm256_min_epi32(bottom_offset, max_offset);
                // SAFETY: offsets are clamped to [0, len − 4], so each four-byte read is inside the buffer.
                let top = _mm256_i32gather_epi32::<1>(base, top_offset);
                let bottom = _mm256_i32gather_epi32::<1>(base, bottom_offset);
                let p00 = _mm256_cvtepi32_ps(_mm256_and_si256(top, byte));
                let p01 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32::<8>(top), byte));
                let p10 = _mm256_cvtepi32_ps(_mm256_and_si256(bottom, byte));
                let p11 =
                    _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32::<8>(bottom), byte));
                let t = _mm256_add_ps(p00, _mm256_mul_ps(fx, _mm256_sub_ps(p01, p00)));
                let b = _mm256_add_ps(p10, _mm256_mul_ps(fx, _mm256_sub_ps(p11, p10)));
                let value = _mm256_add_ps(t, _mm256_mul_ps(fy, _mm256_sub_ps(b, t)));
                let n = (side - start).min(8);
                if n == 8 {
                    _mm256_storeu_ps(row[start..start + 8].as_mut_ptr(), value);
                } else {
                    _mm256_storeu_ps(block.as_mut_ptr(), value);
                    row[start..start + n].copy_from_slice(&block[..n]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise_image(w: u32, h: u32, seed: u32) -> GrayImage {
        let mut s = seed.wrapping_mul(2_654_435_761) | 1;
        GrayImage::from_fn(w, h, |_, _| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            image::Luma([(s >> 24) as u8])
        })
    }

    #[test]
    fn vector_path_equals_scalar_bit_for_bit() {
        let img = noise_image(97, 61, 7);
        let mut st = 12345u32;
        let mut next = || {
            st = st.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (st >> 8) as f32 / (1u32 << 24) as f32
        };
        let mut compared = 0;
        for _ in 0..2000 {
            let r = 1 + (next() * 9.0) as usize;
            let side = 2 * r + 1;
            let c = [next() * 97.0, next() * 61.0];
            let a = 0.6 * (next() - 0.5);
            let s = 0.8 + 0.4 * next();
            let m = [
                s * a.cos(),
                -s * a.sin() + 0.1 * next(),
                s * a.sin(),
                s * a.cos(),
            ];
            let mut fast = vec![f32::NAN; side * side];
            if !sample_affine_grid(&img, c, m, r, &mut fast) {
                continue;
            }
            let grid = Grid {
                data: img.as_raw(),
                w: 97,
                h: 61,
                centre: c,
                m,
                r,
            };
            let mut slow = vec![f32::NAN; side * side];
            grid.sample_scalar(&mut slow);
            assert_eq!(
                fast.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                slow.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "r {r} centre {c:?} m {m:?}"
            );
            compared += 1;
        }
        assert!(compared > 300, "only {compared} grids inside the image");
    }

    #[test]
    fn identity_grid_on_integer_centre_reads_pixels() {
        let img = noise_image(40, 30, 3);
        let mut out = vec![0.0; 25];
        assert!(sample_affine_grid(
            &img,
            [10.0, 12.0],
            [1.0, 0.0, 0.0, 1.0],
            2,
            &mut out
        ));
        for j in 0..5 {
            for i in 0..5 {
                let p = img.get_pixel(8 + i as u32, 10 + j as u32)[0] as f32;
                assert_eq!(out[j * 5 + i], p);
            }
        }
        // a half-pixel shift averages neighbours
        assert!(sample_affine_grid(
            &img,
            [10.5, 12.0],
            [1.0, 0.0, 0.0, 1.0],
            2,
            &mut out
        ));
        let (a, b) = (
            img.get_pixel(8, 10)[0] as f32,
            img.get_pixel(9, 10)[0] as f32,
        );
        assert_eq!(out[0], a + 0.5 * (b - a));
    }

    #[test]
    fn grids_touching_the_border_or_not_finite_sample_nothing() {
        let img = noise_image(20, 20, 5);
        let id = [1.0, 0.0, 0.0, 1.0];
        let mut out = vec![-1.0; 9];
        for c in [
            [0.5, 10.0],
            [10.0, 0.9],
            [18.0, 10.0],
            [10.0, 18.0],
            [f32::NAN, 10.0],
            [10.0, f32::INFINITY],
        ] {
            assert!(!sample_affine_grid(&img, c, id, 1, &mut out), "{c:?}");
        }
        assert!(!sample_affine_grid(
            &img,
            [10.0, 10.0],
            [f32::NAN, 0.0, 0.0, 1.0],
            1,
            &mut out
        ));
        assert!(
            !sample_affine_grid(&img, [10.0, 10.0], id, 2, &mut out),
            "out too short"
        );
        assert!(out.iter().all(|&v| v == -1.0));
        // the largest grids that fit, on the last rows and columns (the scalar fallback near the bottom)
        assert!(sample_affine_grid(&img, [17.9, 17.9], id, 1, &mut out));
        assert!(sample_affine_grid(&img, [1.0, 1.0], id, 1, &mut out));
        let tiny = GrayImage::new(1, 1);
        assert!(!sample_affine_grid(&tiny, [0.0, 0.0], id, 0, &mut out));
    }
}
