//! The translation model's Gauss–Newton loop: the B patch moves by `d`, so one set of four bilinear weights
//! serves every sample ([`super::sampling::sample_grid`]) and the update is a 2×2 solve with the template's
//! inverse Hessian. It also gives the affine model its starting point ([`TranslationStage::AffineStart`]).
//!
//! What it does not do: prepare the template (the caller, [`super`], hands over the zero-mean template and its
//! projected gradients in [`Scratch`]) or follow rotation, scale or shear (that is [`super::affine`]).
//! Why this formulation: inverse compositional, so the Hessian is the template's and is inverted once per
//! match; gain and bias are normalised away each iteration, so only the raw-sample sums are needed.

use image::GrayImage;

use super::reductions::sums5;
use super::sampling::sample_grid;
use super::{RefineOptions, Reject, Scratch};

/// What the translation iterations are for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum TranslationStage {
    /// The result of the translation model: converged to `convergence_px` within `max_iterations`.
    Final,
    /// The affine model's starting point: at most [`AFFINE_START_ITERATIONS`] steps to within
    /// [`AFFINE_START_CONVERGENCE_PX`]; where they stop is the start even when not converged (under rotation
    /// or scale change the translation model often cannot converge, and its last position is still closer).
    AffineStart,
}

/// Translation steps before the affine model takes over.
const AFFINE_START_ITERATIONS: u32 = 4;

/// Convergence of the translation steps before the affine model, pixels.
const AFFINE_START_CONVERGENCE_PX: f32 = 0.05;

/// The translation model's Gauss–Newton iterations (`inv_h`: the inverse Hessian `[xx, xy, yy]`).
pub(super) fn iterate_translation(
    image_b: &GrayImage,
    pb: [f32; 2],
    o: &RefineOptions,
    sc: &mut Scratch,
    std_t: f32,
    [ixx, ixy, iyy]: [f32; 3],
    stage: TranslationStage,
) -> Result<[f32; 2], Reject> {
    let r = sc.r;
    let n = sc.t.len() as f32;

    let (mut dx, mut dy) = (0.0f32, 0.0f32);
    let max_shift2 = o.max_shift_px * o.max_shift_px;
    let (iterations, convergence_px) = match stage {
        TranslationStage::Final => (o.max_iterations, o.convergence_px),
        TranslationStage::AffineStart => (
            o.max_iterations.min(AFFINE_START_ITERATIONS),
            o.convergence_px.max(AFFINE_START_CONVERGENCE_PX),
        ),
    };
    let eps2 = convergence_px * convergence_px;
    for _ in 0..iterations {
        if !sample_grid(image_b, pb[0] + dx, pb[1] + dy, r, &mut sc.s) {
            return Err(Reject::OutOfBounds);
        }
        // The projected gradients are orthogonal to 1 and t, so with e = scale·(s − mean_s) − t the
        // steepest-descent sums need only the raw samples: Σ g·e = scale · Σ g·s (one fused pass).
        let [sum_s, sum_ss, cross, gs_x, gs_y] = sums5(&sc.s, &sc.t, &sc.gx, &sc.gy);
        let var_s = (sum_ss - sum_s * sum_s / n as f64) as f32;
        if !(var_s.is_finite() && var_s > 1e-6 * n) {
            return Err(Reject::Textureless);
        }
        // B patch brought to the template's mean (0) and contrast: gain and bias drop out
        let scale = std_t / var_s.sqrt();
        let (cross, bx, by) = (cross as f32, scale * gs_x as f32, scale * gs_y as f32);
        let (ux, uy) = (ixx * bx + ixy * by, ixy * bx + iyy * by);
        // inverse composition of a translation: d ← d − Δ
        dx -= ux;
        dy -= uy;
        if !(dx.is_finite() && dy.is_finite()) || dx * dx + dy * dy > max_shift2 {
            return Err(Reject::Diverged);
        }
        if ux * ux + uy * uy < eps2 {
            // correlation at the last sampled position (within `convergence_px` of the result)
            let zncc = cross / (std_t * var_s.sqrt());
            if zncc.is_nan() || zncc < o.min_zncc {
                return Err(Reject::LowCorrelation);
            }
            return Ok([pb[0] + dx, pb[1] + dy]);
        }
    }
    if stage == TranslationStage::AffineStart {
        return Ok([pb[0] + dx, pb[1] + dy]);
    }
    Err(Reject::NotConverged)
}
