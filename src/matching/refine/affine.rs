//! The affine model's Gauss–Newton loop: `x_b = b + d + M·u` for template offsets `u`, six parameters, with
//! the gain/bias directions projected out of the steepest-descent images; every sample has its own bilinear
//! weights ([`super::sampling::sample_affine_grid`]).
//!
//! What it does not do: prepare the template or find the starting shift (the caller, [`super`], runs a few
//! translation steps first), or model projective deformation. Why this formulation: inverse compositional,
//! so the 6×6 Hessian is factorised once per match; a wrong match is stopped early on its correlation.

use image::GrayImage;

use super::reductions::{affine_sums, dot8, dots};
use super::sampling::sample_affine_grid;
use super::{RefineOptions, Reject, Scratch};

/// The affine model: `x_b = b + d + M·u` for template offsets `u`, inverse-compositional Gauss–Newton on
/// the six parameters with the gain/bias directions projected out of the steepest-descent images.
/// `sc.gx`/`sc.gy` hold the template's projected gradients and `sc.t` the zero-mean template.
pub(super) fn iterate_affine(
    image_b: &GrayImage,
    pb: [f32; 2],
    init: [f32; 2],
    o: &RefineOptions,
    sc: &mut Scratch,
    std_t: f32,
) -> Result<[f32; 2], Reject> {
    use nalgebra::{Matrix3, Matrix6, Vector6};
    let r = sc.r;
    let side = 2 * r + 1;
    let np = side * side;
    let n = np as f32;
    // steepest-descent images [gx·u, gx·v, gx, gy·u, gy·v, gy], then made orthogonal to 1 and t
    sc.sd.clear();
    sc.sd.resize(6 * np, 0.0);
    let [var_t, sum_t] = dots(&sc.t, [&sc.t, &sc.ones]);
    let var_t = var_t as f32;
    for (c, sd) in sc.sd.chunks_exact_mut(np).enumerate() {
        let g = if c < 3 { &sc.gx } else { &sc.gy };
        for (j, row) in sd.chunks_exact_mut(side).enumerate() {
            let v = j as f32 - r as f32;
            let grow = &g[j * side..(j + 1) * side];
            match c % 3 {
                0 => {
                    for (i, (o, g)) in row.iter_mut().zip(grow).enumerate() {
                        *o = g * (i as f32 - r as f32);
                    }
                }
                1 => row.iter_mut().zip(grow).for_each(|(o, g)| *o = g * v),
                _ => row.copy_from_slice(grow),
            }
        }
        let [sum, dot] = dots(sd, [&sc.ones, &sc.t]);
        let (mean, proj) = ((sum / n as f64) as f32, dot as f32 / var_t);
        for (o, t) in sd.iter_mut().zip(&sc.t) {
            *o -= mean + proj * t;
        }
    }
    // what is left of Σ sd_c and Σ sd_c·t after the projection (rounding only): kept so that the gradient
    // taken from the raw samples below is exact
    let mut sd_sum = [0.0f64; 6];
    let mut sd_t = [0.0f64; 6];
    for (c, sd) in sc.sd.chunks_exact(np).enumerate() {
        [sd_sum[c], sd_t[c]] = dots(sd, [&sc.ones, &sc.t]);
    }
    let mut h = Matrix6::<f64>::zeros();
    for a in 0..6 {
        for b in a..6 {
            let v = dot8(&sc.sd[a * np..(a + 1) * np], &sc.sd[b * np..(b + 1) * np]);
            h[(a, b)] = v as f64;
            h[(b, a)] = v as f64;
        }
    }
    let Some(chol) = h.cholesky() else {
        return Err(Reject::Textureless);
    };
    // current warp: x_b = pb + d + M·u
    let mut warp = Matrix3::<f64>::identity();
    warp[(0, 2)] = init[0] as f64;
    warp[(1, 2)] = init[1] as f64;
    let mut prev = [warp[(0, 2)], warp[(1, 2)]];
    let max_shift2 = (o.max_shift_px * o.max_shift_px) as f64;
    for it in 0..o.max_iterations {
        let (m00, m01, m10, m11) = (
            warp[(0, 0)] as f32,
            warp[(0, 1)] as f32,
            warp[(1, 0)] as f32,
            warp[(1, 1)] as f32,
        );
        let centre = [pb[0] + warp[(0, 2)] as f32, pb[1] + warp[(1, 2)] as f32];
        if !sample_affine_grid(image_b, centre, [m00, m01, m10, m11], r, &mut sc.s) {
            return Err(Reject::OutOfBounds);
        }
        // one pass over the samples: e = scale·(s − mean_s) − t never needs to be formed, since
        // Σ sd_c·e = scale·(Σ sd_c·s − mean_s·Σ sd_c) − Σ sd_c·t
        let sums = affine_sums(&sc.s, &sc.t, &sc.sd);
        let mean_s = sums[0] / n as f64;
        let var_s = (sums[1] - sums[0] * mean_s) as f32;
        let cross = (sums[2] - mean_s * sum_t) as f32;
        if !(var_s.is_finite() && var_s > 1e-6 * n) {
            return Err(Reject::Textureless);
        }
        // a wrong match shows no sign of agreeing after a few steps: stop early (most of the cost otherwise)
        if it >= 2 && cross < 0.5 * o.min_zncc * std_t * var_s.sqrt() {
            return Err(Reject::LowCorrelation);
        }
        let scale = (std_t / var_s.sqrt()) as f64;
        let g =
            Vector6::<f64>::from_fn(|c, _| scale * (sums[3 + c] - mean_s * sd_sum[c]) - sd_t[c]);
        let dp = chol.solve(&g);
        let inc = Matrix3::new(
            1.0 + dp[0],
            dp[1],
            dp[2],
            dp[3],
            1.0 + dp[4],
            dp[5],
            0.0,
            0.0,
            1.0,
        );
        let Some(inc_inv) = inc.try_inverse() else {
            return Err(Reject::Diverged);
        };
        warp *= inc_inv;
        let (tx, ty) = (warp[(0, 2)], warp[(1, 2)]);
        let det = warp[(0, 0)] * warp[(1, 1)] - warp[(0, 1)] * warp[(1, 0)];
        if !(tx.is_finite()
            && ty.is_finite()
            && tx * tx + ty * ty <= max_shift2
            && (0.25..=4.0).contains(&det))
            || warp
                .iter()
                .any(|v| !v.is_finite() || v.abs() > 4.0 + max_shift2)
        {
            return Err(Reject::Diverged);
        }
        // converged when the patch centre (the refined point) stops moving
        let step = (tx - prev[0]).hypot(ty - prev[1]);
        prev = [tx, ty];
        if step < o.convergence_px as f64 {
            let zncc = cross / (std_t * var_s.sqrt());
            if zncc.is_nan() || zncc < o.min_zncc {
                return Err(Reject::LowCorrelation);
            }
            return Ok([pb[0] + tx as f32, pb[1] + ty as f32]);
        }
    }
    Err(Reject::NotConverged)
}
