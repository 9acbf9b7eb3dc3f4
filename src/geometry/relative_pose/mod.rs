//! Robust relative pose from pixel correspondences: LO-RANSAC around the 5-point solver.
//!
//! The pipeline of [`estimate_relative_pose`]:
//!
//! 1. **Checks and normalisation.** Lengths, finiteness, camera validity; pixels are undistorted into
//!    normalised coordinates (points whose undistortion fails are excluded and never inliers). Fewer than five
//!    distinct correspondences, or all points on one line in either image, is a degenerate configuration and
//!    an `Err`, never a pose.
//! 2. **Sampling (PROSAC).** With a `priority` (match score, higher first) samples are drawn from a growing
//!    set of the best-ranked correspondences (Chum & Matas 2005), so good matches are tried first; without
//!    one, sampling is uniform. The priority only orders the samples: it never shortens the run (step 6). Sampling uses a seeded SplitMix64 generator, so
//!    results are deterministic for a fixed seed and input.
//! 3. **Hypotheses.** Each sample gives up to ten essential matrices ([`crate::geometry::five_point`]).
//! 4. **Fast scoring.** Hypotheses are verified on the points in a fixed random order with Wald's sequential
//!    probability ratio test (SPRT, Matas & Chum 2008) and an exact MSAC bail-out (stop once the truncated
//!    score exceeds the best one): a wrong hypothesis is typically dropped after a dozen points instead of
//!    all of them. The test's parameters (inlier ratio ε, bad-model consistency δ) adapt as the run goes,
//!    and the stopping rule accounts for the rare good model the test rejects.
//! 5. **Local optimisation.** Whenever a minimal-sample hypothesis scores better than every earlier
//!    *minimal-sample* hypothesis, its pose (decomposed with cheirality) is refit on its inliers with a few
//!    robust Gauss-Newton/Levenberg-Marquardt steps over `(R, t)` on the Sampson error (a non-minimal
//!    estimate, LO-RANSAC), re-scored, and replaces the best model if it scores better. Comparing against
//!    the best *minimal* score rather than the best refined one matters: a refined model scores far below
//!    any minimal one, so with the refined score as the bar LO would run once or twice and the run would stay
//!    in the first basin it found (on real pairs: more inliers, a worse pose than PoseLib's). A refit uses at
//!    most 256 of the inliers, evenly spread: LO only has to reach the right basin, and with every inlier it
//!    was a third of the solver's time.
//! 6. **Adaptive termination** once `min_iterations` are done and the probability of having missed an
//!    all-inlier sample drops below `1 − confidence`, with the inlier ratio over all correspondences and
//!    SPRT's false-rejection rate in the rule (see `required_iterations` for why not PROSAC's prefix rule).
//! 7. **Final refinement.** Levenberg-Marquardt on all inliers with a Cauchy loss (scale = threshold) over
//!    `R ∈ SO(3)` (left perturbation `R ← Exp(ω)·R`) and the unit translation (2-D tangent step), then the
//!    inlier mask is recomputed and the refit repeated (at most 5 rounds) while the MSAC score improves. The covariance is `σ²·(JᵀJ)⁻¹` of the refined problem.
//! 8. **Degeneracy of the result.** When nearly all inliers are explained by the rotation alone (zero motion
//!    or pure rotation), the translation direction is unobservable: that is reported as
//!    [`NoPose::NoParallax`], not as a pose with an arbitrary `t`.
//!
//! Why this formulation: the 5-point solver is the only minimal solver that does not fail on planar scenes
//! and needs the fewest samples (1/ε⁵); the Sampson error is a first-order reprojection error that is cheap
//! enough for the scoring loop and accurate at pixel-level noise; optimising `(R, t)` directly (rather than
//! `E`) keeps the estimate on the essential manifold so no projection step loses accuracy.
//!
//! This module does not match features or decide which frames to pair.

// `!(x > y)` is deliberate throughout: it is true for NaN, which must take the rejecting branch.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use nalgebra::{Matrix3, Matrix5, Matrix6, Rotation3, Vector3, Vector5};

use super::camera::PinholeCamera;
use super::essential::{essential_from_pose, pose_from_essential, PixelWeights};
use super::five_point::solve_five_point;
use super::sampson_kernels::{self, Soa, Sprt, Verification};
use super::{NoPose, PoseQuality, RansacOptions, RelativePose};

/// Variance given to the unobservable component of the translation (along `t`) in the covariance.
pub const UNOBSERVABLE_VARIANCE: f64 = 1.0e6;

/// Minimal sample size.
const SAMPLE: usize = 5;

/// A seeded SplitMix64 generator: tiny, fast and with a fixed, documented output sequence (so a seed
/// reproduces a run across crate versions).
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    #[inline]
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`), by multiply-shift (bias < n/2⁶⁴).
    #[inline]
    fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

/// Correspondences in normalised coordinates, structure-of-arrays for the scoring loop.
struct Points {
    xa: Vec<f64>,
    ya: Vec<f64>,
    xb: Vec<f64>,
    yb: Vec<f64>,
    /// Index into the caller's arrays.
    orig: Vec<usize>,
    /// Square roots of the per-correspondence weights (empty: all 1). They whiten the Sampson residuals of
    /// the non-linear refinements (LO and final); inlier sets ignore them.
    sqrt_w: Vec<f64>,
    /// The weights themselves (empty: all 1): they weight the MSAC score.
    weight: Vec<f64>,
}

impl Points {
    fn len(&self) -> usize {
        self.xa.len()
    }
    #[inline(always)]
    fn get(&self, i: usize) -> [f64; 4] {
        [self.xa[i], self.ya[i], self.xb[i], self.yb[i]]
    }
    /// The arrays as the scoring kernels take them.
    fn soa(&self) -> Soa<'_> {
        Soa {
            xa: &self.xa,
            ya: &self.ya,
            xb: &self.xb,
            yb: &self.yb,
            weight: &self.weight,
        }
    }
    /// Copy in the order `order` (coordinates and weights; `orig` and `sqrt_w` are not needed there).
    fn permuted(&self, order: &[u32]) -> Points {
        let pick = |v: &[f64]| -> Vec<f64> {
            if v.is_empty() {
                Vec::new()
            } else {
                order.iter().map(|&i| v[i as usize]).collect()
            }
        };
        Points {
            xa: pick(&self.xa),
            ya: pick(&self.ya),
            xb: pick(&self.xb),
            yb: pick(&self.yb),
            orig: Vec::new(),
            sqrt_w: Vec::new(),
            weight: pick(&self.weight),
        }
    }
}

fn to_array(e: &Matrix3<f64>) -> [f64; 9] {
    std::array::from_fn(|i| e[(i / 3, i % 3)])
}

/// Scoring state: SPRT parameters and the best score.
struct Scorer<'a> {
    pts: &'a Points,
    w: PixelWeights,
    thr_sq: f64,
    /// The points in verification order (a fixed random permutation), contiguous for the kernel.
    ordered: Points,
    epsilon: f64,
    delta: f64,
    /// SPRT decision threshold A.
    a: f64,
    /// Log-likelihood increments for a consistent / inconsistent point.
    log_in: f64,
    log_out: f64,
    rejected_tested: f64,
    rejected_inliers: f64,
}

impl<'a> Scorer<'a> {
    fn new(pts: &'a Points, w: PixelWeights, thr_px: f64, order: Vec<u32>, epsilon: f64) -> Self {
        let mut s = Self {
            pts,
            w,
            thr_sq: thr_px * thr_px,
            ordered: pts.permuted(&order),
            epsilon,
            delta: 0.01,
            a: 1.0,
            log_in: 0.0,
            log_out: 0.0,
            rejected_tested: 0.0,
            rejected_inliers: 0.0,
        };
        s.update_sprt();
        s
    }

    /// Recomputes A from ε and δ (Matas & Chum 2008, eq. 2 with the usual fixed-point iteration).
    fn update_sprt(&mut self) {
        let eps = self.epsilon.clamp(1e-3, 0.999);
        let delta = self.delta.clamp(1e-4, eps * 0.9);
        // Cost of one hypothesis in point verifications, and hypotheses per sample (5-point solver).
        const T_M: f64 = 200.0;
        const M_S: f64 = 4.0;
        let c = (1.0 - delta) * ((1.0 - delta) / (1.0 - eps)).ln() + delta * (delta / eps).ln();
        let a0 = T_M * c / M_S + 1.0;
        let mut a = a0;
        for _ in 0..10 {
            a = a0 + a.ln();
        }
        self.a = a.max(1.5);
        self.log_in = (delta / eps).ln();
        self.log_out = ((1.0 - delta) / (1.0 - eps)).ln();
    }

    /// Probability that the test rejects a good model (≤ 1/A).
    fn false_rejection(&self) -> f64 {
        1.0 / self.a
    }

    /// Verifies `e` with SPRT and MSAC bail-out against `best_score`.
    fn verify(&self, e: &[f64; 9], best_score: f64) -> Verification {
        let sprt = Sprt {
            log_a: self.a.ln(),
            log_in: self.log_in,
            log_out: self.log_out,
        };
        sampson_kernels::verify(
            e,
            &self.w,
            &self.ordered.soa(),
            self.thr_sq,
            &sprt,
            best_score,
        )
    }

    fn record_rejection(&mut self, tested: usize, inliers: usize) {
        self.rejected_tested += tested as f64;
        self.rejected_inliers += inliers as f64;
    }

    /// Re-estimates δ from rejected hypotheses (with a weak prior at 0.01).
    fn refresh_delta(&mut self) {
        let d = (self.rejected_inliers + 1.0) / (self.rejected_tested + 100.0);
        if (d - self.delta).abs() > 0.1 * self.delta {
            self.delta = d;
            self.update_sprt();
        }
    }

    fn set_epsilon(&mut self, eps: f64) {
        self.epsilon = eps;
        self.update_sprt();
    }

    /// Full MSAC score and inlier count (no early exit).
    fn score_full(&self, e: &[f64; 9]) -> (f64, usize) {
        sampson_kernels::score(e, &self.w, &self.pts.soa(), self.thr_sq)
    }

    /// Indices of the points within `scale` × the threshold.
    fn inlier_indices(&self, e: &[f64; 9], scale: f64) -> Vec<u32> {
        sampson_kernels::inliers(e, &self.w, &self.pts.soa(), self.thr_sq * scale * scale)
    }
}

/// PROSAC sampler (Chum & Matas 2005) over points sorted by decreasing priority, or uniform sampling.
struct Sampler {
    n_total: usize,
    prosac: bool,
    /// Current size of the sampling pool (`n`), growth schedule `T_n` and `T'_n`.
    n: usize,
    t_n: f64,
    t_n_prime: usize,
    iteration: usize,
}

impl Sampler {
    const T_N: f64 = 200_000.0;

    fn new(n_total: usize, prosac: bool) -> Self {
        let mut t_n = Self::T_N;
        for i in 0..SAMPLE {
            t_n *= (SAMPLE - i) as f64 / (n_total - i) as f64;
        }
        Self {
            n_total,
            prosac,
            n: SAMPLE,
            t_n,
            t_n_prime: 1,
            iteration: 0,
        }
    }

    /// Draws 5 distinct indices into `out` (indices into the priority-sorted order when PROSAC is on).
    fn sample(&mut self, rng: &mut SplitMix64, out: &mut [usize; SAMPLE]) {
        self.iteration += 1;
        if !self.prosac || self.n >= self.n_total {
            draw_distinct(rng, self.n_total, out, 0);
            return;
        }
        if self.iteration >= self.t_n_prime && self.n < self.n_total {
            let t_next = self.t_n * (self.n + 1) as f64 / (self.n + 1 - SAMPLE) as f64;
            self.t_n_prime += (t_next - self.t_n).ceil().max(1.0) as usize;
            self.t_n = t_next;
            self.n += 1;
        }
        if self.t_n_prime < self.iteration {
            draw_distinct(rng, self.n, out, 0);
        } else {
            out[0] = self.n - 1;
            draw_distinct(rng, self.n - 1, out, 1);
        }
    }
}

/// Fills `out[from..]` with distinct values in `0..n` (also distinct from `out[..from]`).
fn draw_distinct(rng: &mut SplitMix64, n: usize, out: &mut [usize; SAMPLE], from: usize) {
    let mut k = from;
    while k < SAMPLE {
        let v = rng.below(n);
        if !out[..k].contains(&v) {
            out[k] = v;
            k += 1;
        }
    }
}

/// Robust Levenberg-Marquardt over `(R, t)` on the Sampson error of the points `idx`.
struct Refiner<'a> {
    pts: &'a Points,
    w: PixelWeights,
    /// Cauchy scale in pixels (`None`: plain least squares).
    cauchy: Option<f64>,
}

/// Orthonormal basis of the plane orthogonal to a unit vector.
fn tangent_basis(t: &Vector3<f64>) -> (Vector3<f64>, Vector3<f64>) {
    let helper = if t.x.abs() < 0.9 {
        Vector3::x()
    } else {
        Vector3::y()
    };
    let b1 = t.cross(&helper).normalize();
    let b2 = t.cross(&b1);
    (b1, b2)
}

impl Refiner<'_> {
    fn derivatives(r: &Matrix3<f64>, t: &Vector3<f64>) -> [[f64; 9]; 5] {
        let tx = super::essential::skew(t);
        let (b1, b2) = tangent_basis(t);
        let mut de = [[0.0; 9]; 5];
        for k in 0..3 {
            let mut ek = Vector3::zeros();
            ek[k] = 1.0;
            de[k] = to_array(&(tx * super::essential::skew(&ek) * r));
        }
        de[3] = to_array(&(super::essential::skew(&b1) * r));
        de[4] = to_array(&(super::essential::skew(&b2) * r));
        de
    }

    fn cost(&self, r: &Matrix3<f64>, t: &Vector3<f64>, idx: &[u32]) -> f64 {
        let e = to_array(&essential_from_pose(r, t));
        let c2 = self.cauchy.map(|c| c * c);
        sampson_kernels::cost(&e, &self.w, &self.pts.soa(), &self.pts.sqrt_w, idx, c2)
    }

    /// Normal equations at `(r, t)`: (Σ w·J·Jᵀ, Σ w·J·s, robust cost).
    fn normal_equations(
        &self,
        r: &Matrix3<f64>,
        t: &Vector3<f64>,
        idx: &[u32],
        robust: bool,
    ) -> (Matrix5<f64>, Vector5<f64>, f64) {
        let e = to_array(&essential_from_pose(r, t));
        let de = Self::derivatives(r, t);
        let c2 = if robust {
            self.cauchy.map(|c| c * c)
        } else {
            None
        };
        let (upper, g, cost) = sampson_kernels::normal_equations(
            &e,
            &de,
            &self.w,
            &self.pts.soa(),
            &self.pts.sqrt_w,
            idx,
            c2,
        );
        // upper triangle of H, row-major: (0,0) (0,1) .. (0,4) (1,1) .. (4,4)
        let mut h = Matrix5::zeros();
        let mut k = 0;
        for a in 0..5 {
            for b in a..5 {
                h[(a, b)] = upper[k];
                h[(b, a)] = upper[k];
                k += 1;
            }
        }
        (h, Vector5::from(g), cost)
    }

    fn apply(
        r: &Matrix3<f64>,
        t: &Vector3<f64>,
        step: &Vector5<f64>,
    ) -> (Matrix3<f64>, Vector3<f64>) {
        let (b1, b2) = tangent_basis(t);
        let omega = Vector3::new(step[0], step[1], step[2]);
        let r_new = Rotation3::new(omega).into_inner() * r;
        let t_new = (t + b1 * step[3] + b2 * step[4]).normalize();
        (r_new, t_new)
    }

    /// Levenberg-Marquardt; returns the refined pose. Stops after `max_iter` steps, or once a step's
    /// decrease of the cost, predicted by the normal equations or achieved, is below `rel_tol` × the cost
    /// (converged: further steps cannot change the pose meaningfully).
    fn refine(
        &self,
        mut r: Matrix3<f64>,
        mut t: Vector3<f64>,
        idx: &[u32],
        max_iter: usize,
        rel_tol: f64,
    ) -> (Matrix3<f64>, Vector3<f64>) {
        if idx.len() < SAMPLE {
            return (r, t);
        }
        let mut lambda = 1e-4;
        let (mut h, mut g, mut cost) = self.normal_equations(&r, &t, idx, true);
        for _ in 0..max_iter {
            let mut a = h;
            for k in 0..5 {
                a[(k, k)] += lambda * h[(k, k)].max(1e-12);
            }
            let Some(chol) = a.cholesky() else {
                lambda *= 10.0;
                if lambda > 1e8 {
                    break;
                }
                continue;
            };
            let step = -chol.solve(&g);
            if !step.iter().all(|v| v.is_finite()) {
                break;
            }
            // the quadratic model of Σ s² predicts a decrease of −2gᵀδ − δᵀHδ for this step
            let predicted = -2.0 * g.dot(&step) - (h * step).dot(&step);
            if predicted <= rel_tol * cost {
                break;
            }
            let (r_new, t_new) = Self::apply(&r, &t, &step);
            let new_cost = self.cost(&r_new, &t_new, idx);
            if new_cost < cost {
                let rel = (cost - new_cost) / cost.max(1e-300);
                r = r_new;
                t = t_new;
                lambda = (lambda * 0.1).max(1e-10);
                if rel < rel_tol || step.norm() < 1e-12 {
                    break;
                }
                let ne = self.normal_equations(&r, &t, idx, true);
                h = ne.0;
                g = ne.1;
                cost = ne.2;
            } else {
                lambda *= 10.0;
                if lambda > 1e8 {
                    break;
                }
            }
        }
        // Re-orthonormalise R against drift.
        let r = Rotation3::from_matrix_unchecked(r).renormalize_copy();
        (r, t)
    }
}

trait Renormalize {
    fn renormalize_copy(self) -> Matrix3<f64>;
}

impl Renormalize for Rotation3<f64> {
    fn renormalize_copy(mut self) -> Matrix3<f64> {
        self.renormalize();
        self.into_inner()
    }
}

/// Estimates the relative pose `x_b = R·x_a + t` (unit `t`) from pixel correspondences
/// `points_a[i] ↔ points_b[i]`.
///
/// `priority` (same length, higher = better, e.g. match scores) switches on PROSAC ordering. The threshold
/// is [`RansacOptions::threshold_px`] on the Sampson error in pixels. Degenerate or invalid input returns an
/// [`NoPose`] with the reason; the function never panics on input data. Deterministic for a fixed
/// [`RansacOptions::seed`].
pub fn estimate_relative_pose(
    points_a: &[[f64; 2]],
    points_b: &[[f64; 2]],
    camera_a: &PinholeCamera,
    camera_b: &PinholeCamera,
    priority: Option<&[f32]>,
    options: &RansacOptions,
) -> Result<RelativePose, NoPose> {
    estimate_relative_pose_weighted(
        points_a, points_b, camera_a, camera_b, priority, None, options,
    )
}

/// [`estimate_relative_pose`] with a weight per correspondence: its relative inverse variance (e.g. 1 for a
/// photometrically refined match, less for a detector-only one). The weights whiten the residuals of the
/// local optimisation, the final refinement and the covariance; which points are inliers (Sampson error
/// below the threshold) does not depend on them. `None` = all 1. Weights must be finite and > 0.
pub fn estimate_relative_pose_weighted(
    points_a: &[[f64; 2]],
    points_b: &[[f64; 2]],
    camera_a: &PinholeCamera,
    camera_b: &PinholeCamera,
    priority: Option<&[f32]>,
    weights: Option<&[f64]>,
    options: &RansacOptions,
) -> Result<RelativePose, NoPose> {
    estimate(
        points_a, points_b, camera_a, camera_b, priority, weights, None, options,
    )
}

/// Re-estimates a pose from `initial` (`x_b = R·x_a + t`, e.g. an earlier estimate from less precise
/// positions of the same matches) without sampling: local optimisation and the final refinement of
/// [`estimate_relative_pose_weighted`] start from it, with the same checks, inlier rule and result
/// (`quality.iterations` = 0). About one millisecond instead of a full LO-RANSAC. `initial` must be a
/// rotation and a non-zero finite translation.
pub fn refine_relative_pose_weighted(
    points_a: &[[f64; 2]],
    points_b: &[[f64; 2]],
    camera_a: &PinholeCamera,
    camera_b: &PinholeCamera,
    weights: Option<&[f64]>,
    initial: (&Matrix3<f64>, &Vector3<f64>),
    options: &RansacOptions,
) -> Result<RelativePose, NoPose> {
    let (r, t) = initial;
    let orthonormal =
        (r.transpose() * r - Matrix3::identity()).norm() < 1e-6 && r.determinant() > 0.0;
    let tn = t.norm();
    if !(r.iter().chain(t.iter()).all(|v| v.is_finite()) && orthonormal && tn > 1e-12) {
        return Err(NoPose::InvalidOptions(
            "initial pose: R must be a rotation and t finite and non-zero".into(),
        ));
    }
    estimate(
        points_a,
        points_b,
        camera_a,
        camera_b,
        None,
        weights,
        Some((*r, t / tn)),
        options,
    )
}

/// The estimator behind the public functions: LO-RANSAC, or (with `initial`) LO from that pose.
#[allow(clippy::too_many_arguments)]
fn estimate(
    points_a: &[[f64; 2]],
    points_b: &[[f64; 2]],
    camera_a: &PinholeCamera,
    camera_b: &PinholeCamera,
    priority: Option<&[f32]>,
    weights: Option<&[f64]>,
    initial: Option<(Matrix3<f64>, Vector3<f64>)>,
    options: &RansacOptions,
) -> Result<RelativePose, NoPose> {
    // --- checks ---------------------------------------------------------------------------------------
    if points_a.len() != points_b.len() {
        return Err(NoPose::LengthMismatch {
            a: points_a.len(),
            b: points_b.len(),
        });
    }
    if let Some(p) = priority {
        if p.len() != points_a.len() {
            return Err(NoPose::LengthMismatch {
                a: points_a.len(),
                b: p.len(),
            });
        }
    }
    if let Some(w) = weights {
        if w.len() != points_a.len() {
            return Err(NoPose::LengthMismatch {
                a: points_a.len(),
                b: w.len(),
            });
        }
        if let Some(i) = w.iter().position(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(NoPose::InvalidOptions(format!(
                "weight {i} must be finite and > 0, got {}",
                w[i]
            )));
        }
    }
    for (name, cam) in [("a", camera_a), ("b", camera_b)] {
        cam.validate()
            .map_err(|e| NoPose::InvalidCamera(format!("camera {name}: {e}")))?;
    }
    let thr = options.threshold_px;
    if !(thr.is_finite() && thr > 0.0) {
        return Err(NoPose::InvalidOptions(format!(
            "threshold_px must be finite and > 0, got {thr}"
        )));
    }
    if !(options.confidence > 0.0 && options.confidence < 1.0) {
        return Err(NoPose::InvalidOptions(format!(
            "confidence must be in (0, 1), got {}",
            options.confidence
        )));
    }
    let n_in = points_a.len();
    let need = SAMPLE.max(options.min_inliers);
    if n_in < need {
        return Err(NoPose::TooFewCorrespondences { have: n_in, need });
    }
    if let Some(i) = (0..n_in).find(|&i| {
        !points_a[i]
            .iter()
            .chain(points_b[i].iter())
            .all(|v| v.is_finite())
    }) {
        return Err(NoPose::NonFinite(format!(
            "correspondence {i}: {:?} ↔ {:?}",
            points_a[i], points_b[i]
        )));
    }
    check_spread(points_a, "a", thr)?;
    check_spread(points_b, "b", thr)?;
    let distinct = count_distinct(points_a, points_b);
    if distinct < SAMPLE {
        return Err(NoPose::Degenerate(format!(
            "only {distinct} distinct correspondences among {n_in} (need at least {SAMPLE})"
        )));
    }

    // --- normalise, order by priority ------------------------------------------------------------------
    let mut order: Vec<usize> = (0..n_in).collect();
    if let Some(p) = priority {
        let key = |i: usize| {
            let v = p[i];
            if v.is_nan() {
                f32::NEG_INFINITY
            } else {
                v
            }
        };
        order.sort_by(|&i, &j| key(j).total_cmp(&key(i)).then(i.cmp(&j)));
    }
    let mut pts = Points {
        xa: Vec::with_capacity(n_in),
        ya: Vec::with_capacity(n_in),
        xb: Vec::with_capacity(n_in),
        yb: Vec::with_capacity(n_in),
        orig: Vec::with_capacity(n_in),
        sqrt_w: Vec::with_capacity(if weights.is_some() { n_in } else { 0 }),
        weight: Vec::with_capacity(if weights.is_some() { n_in } else { 0 }),
    };
    for &i in &order {
        if let (Ok(a), Ok(b)) = (
            camera_a.try_normalize(points_a[i]),
            camera_b.try_normalize(points_b[i]),
        ) {
            pts.xa.push(a[0]);
            pts.ya.push(a[1]);
            pts.xb.push(b[0]);
            pts.yb.push(b[1]);
            pts.orig.push(i);
            if let Some(w) = weights {
                pts.sqrt_w.push(w[i].sqrt());
                pts.weight.push(w[i]);
            }
        }
    }
    let n = pts.len();
    if n < need {
        return Err(NoPose::TooFewCorrespondences { have: n, need });
    }
    let w = PixelWeights::new(camera_a.fx, camera_a.fy, camera_b.fx, camera_b.fy);

    // --- LO-RANSAC -------------------------------------------------------------------------------------
    let mut rng = SplitMix64(options.seed ^ 0x6D61_7463_6861_u64);
    let mut verify_order: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let j = rng.below(i + 1);
        verify_order.swap(i, j);
    }
    let mut scorer = Scorer::new(&pts, w, thr, verify_order, 0.1);
    let refiner_lo = Refiner {
        pts: &pts,
        w,
        cauchy: Some(thr),
    };
    let mut sampler = Sampler::new(n, priority.is_some());
    let log_fail = (1.0 - options.confidence).ln();
    let max_iter = options.max_iterations.max(1);
    let mut required = max_iter;

    let mut best: Option<Best> = initial.map(|(r, t)| {
        let (score, inliers) = scorer.score_full(&to_array(&essential_from_pose(&r, &t)));
        let mut cand = Best {
            r,
            t,
            score,
            inliers,
        };
        local_optimisation(&scorer, &refiner_lo, &mut cand);
        cand
    });
    let max_iter = if initial.is_some() { 0 } else { max_iter };
    // Best MSAC score of a *minimal-sample* model so far: the bar a new hypothesis must clear to be locally
    // optimised (the LO-refined best scores far lower, and using it as the bar would starve LO of the
    // hypotheses from other basins).
    let mut best_min_score = f64::INFINITY;
    let mut iterations = 0;
    let mut sample = [0usize; SAMPLE];
    let mut sample_pts = [[0.0; 4]; SAMPLE];
    while iterations < max_iter && (iterations < options.min_iterations || iterations < required) {
        iterations += 1;
        sampler.sample(&mut rng, &mut sample);
        let mut xa = [[0.0; 2]; SAMPLE];
        let mut xb = [[0.0; 2]; SAMPLE];
        for k in 0..SAMPLE {
            let p = pts.get(sample[k]);
            sample_pts[k] = p;
            xa[k] = [p[0], p[1]];
            xb[k] = [p[2], p[3]];
        }
        let sols = solve_five_point(&xa, &xb);
        let mut improved = false;
        for e in sols.as_slice() {
            let ea = to_array(e);
            match scorer.verify(&ea, best_min_score) {
                Verification::Rejected { tested, inliers } => {
                    scorer.record_rejection(tested, inliers)
                }
                Verification::Accepted { score, inliers } => {
                    if score >= best_min_score {
                        continue;
                    }
                    best_min_score = score;
                    // Cheirality on the sample picks (R, t); all five must be in front.
                    let Some((r, t, front)) = pose_from_essential(e, &sample_pts) else {
                        continue;
                    };
                    if front < SAMPLE {
                        continue;
                    }
                    let mut cand = Best {
                        r,
                        t,
                        score,
                        inliers,
                    };
                    local_optimisation(&scorer, &refiner_lo, &mut cand);
                    if best.as_ref().is_none_or(|b| cand.score < b.score) {
                        best = Some(cand);
                        improved = true;
                    }
                }
            }
        }
        if improved {
            if let Some(b) = &best {
                scorer.set_epsilon(b.inliers as f64 / n as f64);
            }
        }
        if iterations % 16 == 0 || improved {
            scorer.refresh_delta();
            if let Some(b) = &best {
                required =
                    required_iterations(b.inliers, n, scorer.false_rejection(), log_fail, max_iter);
            }
        }
    }

    let Some(best) = best else {
        return Err(no_consensus_or_no_motion(
            &pts,
            camera_b,
            thr,
            0,
            options.min_inliers.max(SAMPLE),
        ));
    };

    // --- final refinement ------------------------------------------------------------------------------
    let refiner = Refiner {
        pts: &pts,
        w,
        cauchy: Some(thr),
    };
    let (mut r, mut t) = (best.r, best.t);
    let mut idx = scorer.inlier_indices(&to_array(&essential_from_pose(&r, &t)), 1.0);
    let mut score = scorer.score_full(&to_array(&essential_from_pose(&r, &t))).0;
    for _ in 0..5 {
        let (r2, t2) = refiner.refine(r, t, &idx, 30, LM_REL_TOL);
        let e2 = to_array(&essential_from_pose(&r2, &t2));
        let idx2 = scorer.inlier_indices(&e2, 1.0);
        let score2 = scorer.score_full(&e2).0;
        if score2 > score {
            // the refit scores worse (MSAC) on all points: keep the previous pose (monotone in score). Judging by
            // the inlier count instead stopped here whenever one borderline point dropped out, which kept the
            // coarser LO pose (+6% median error in the benchmark above).
            break;
        }
        score = score2;
        r = r2;
        t = t2;
        let same = idx2 == idx;
        idx = idx2;
        if same {
            break;
        }
    }
    if idx.len() < options.min_inliers.max(SAMPLE) {
        return Err(no_consensus_or_no_motion(
            &pts,
            camera_b,
            thr,
            idx.len(),
            options.min_inliers.max(SAMPLE),
        ));
    }
    // Cheirality of the refined pose on all inliers (guards against a flipped twisted pair).
    let inlier_pts: Vec<[f64; 4]> = idx.iter().map(|&i| pts.get(i as usize)).collect();
    if let Some((r2, t2, front2)) = pose_from_essential(&essential_from_pose(&r, &t), &inlier_pts) {
        let front = super::essential::count_in_front(&r, &t, inlier_pts.iter().copied());
        if front2 > front {
            r = r2;
            t = t2;
        }
    }
    if !(r.iter().all(|v| v.is_finite()) && t.iter().all(|v| v.is_finite())) {
        return Err(NoPose::Degenerate("refinement diverged".into()));
    }

    // --- parallax / degeneracy of the result ----------------------------------------------------------
    let mut rot_only_ok = 0usize;
    let mut parallax: Vec<f64> = Vec::with_capacity(idx.len());
    for p in &inlier_pts {
        let ra = r * Vector3::new(p[0], p[1], 1.0);
        let xb = Vector3::new(p[2], p[3], 1.0);
        parallax.push(ra.angle(&xb).to_degrees());
        if ra.z > 0.0 {
            let du = (ra.x / ra.z - p[2]) * camera_b.fx;
            let dv = (ra.y / ra.z - p[3]) * camera_b.fy;
            if du * du + dv * dv < 4.0 * thr * thr {
                rot_only_ok += 1;
            }
        }
    }
    parallax.sort_by(f64::total_cmp);
    let median_parallax_deg = parallax[parallax.len() / 2];
    if rot_only_ok as f64 >= 0.8 * idx.len() as f64 {
        return Err(NoPose::NoParallax {
            rotation_only_fraction: rot_only_ok as f64 / idx.len() as f64,
            median_parallax_deg,
        });
    }

    // --- covariance, quality ---------------------------------------------------------------------------
    let plain = Refiner {
        pts: &pts,
        w,
        cauchy: None,
    };
    let (h, _, sum_sq) = plain.normal_equations(&r, &t, &idx, false);
    let dof = (idx.len() as f64 - 5.0).max(1.0);
    let sigma2 = sum_sq / dof;
    let cov5 = h
        .try_inverse()
        .map(|hi| hi * sigma2)
        .unwrap_or_else(|| Matrix5::identity() * UNOBSERVABLE_VARIANCE);
    let (b1, b2) = tangent_basis(&t);
    // Map (ω, β) to (ω, δt) with δt = B·β; add the unobservable variance along t.
    let mut jmap = nalgebra::Matrix6x5::<f64>::zeros();
    for k in 0..3 {
        jmap[(k, k)] = 1.0;
    }
    for k in 0..3 {
        jmap[(3 + k, 3)] = b1[k];
        jmap[(3 + k, 4)] = b2[k];
    }
    let mut covariance: Matrix6<f64> = jmap * cov5 * jmap.transpose();
    let ttt = t * t.transpose() * UNOBSERVABLE_VARIANCE;
    for i in 0..3 {
        for j in 0..3 {
            covariance[(3 + i, 3 + j)] += ttt[(i, j)];
        }
    }

    let mut inliers = vec![false; n_in];
    for &i in &idx {
        inliers[pts.orig[i as usize]] = true;
    }
    let num_inliers = idx.len();
    Ok(RelativePose {
        rotation: r,
        translation: t,
        inliers,
        num_inliers,
        covariance,
        quality: PoseQuality {
            inlier_ratio: num_inliers as f64 / n_in as f64,
            rms_error_px: (sum_sq / num_inliers as f64).sqrt(),
            median_parallax_deg,
            iterations,
        },
    })
}

/// Iterations needed for the confidence: the standard rule `k = log(1 − p) / log(1 − ε⁵·(1 − α))` with `ε` the
/// best model's inlier ratio over **all** `n` correspondences and `α` SPRT's false-rejection rate (Matas & Chum
/// 2008: a good sample is only found if the test also accepts it).
///
/// PROSAC's own rule (Chum & Matas 2005: minimise `k` over the prefixes of the priority order where the
/// support is above chance) is deliberately not used. It is only valid when the priority says nothing about
/// *which* wrong model a point supports; with MNN scores on real images it does: repetitive texture and
/// dominant planes put many confidently matched points on one wrong (or partially right) model, so a short
/// prefix shows a high inlier ratio, passes the non-randomness test, and the loop stops after a few dozen
/// samples at a wrong pose (rendered room: every pair stopped at `min_iterations`, 5 of 24 pairs 12–83° off).
/// The priority keeps its real benefit — good samples are drawn first — while stopping needs the confidence
/// of uniform sampling, which PROSAC's progressive sampling only improves on.
fn required_iterations(
    best_inliers: usize,
    n: usize,
    alpha: f64,
    log_fail: f64,
    max_iter: usize,
) -> usize {
    if n < SAMPLE || best_inliers < SAMPLE {
        return max_iter;
    }
    let eps = (best_inliers as f64 / n as f64).min(1.0);
    let p_good = eps.powi(SAMPLE as i32) * (1.0 - alpha);
    if p_good >= 1.0 {
        return 0;
    }
    let k = log_fail / (-p_good).ln_1p();
    if k.is_finite() && k < max_iter as f64 {
        k.ceil() as usize
    } else {
        max_iter
    }
}

/// Failure report: when most correspondences fit a pure rotation (zero motion included), the failure is a
/// lack of parallax, which is more useful to a caller than "no consensus". The rotation is found by a small
/// 2-point RANSAC on bearing vectors (Kabsch alignment).
fn no_consensus_or_no_motion(
    pts: &Points,
    cam_b: &PinholeCamera,
    thr: f64,
    best_inliers: usize,
    need: usize,
) -> NoPose {
    let n = pts.len();
    if n < 2 {
        return NoPose::NoConsensus { best_inliers, need };
    }
    let bearing = |x: f64, y: f64| Vector3::new(x, y, 1.0).normalize();
    let fits = |r: &Matrix3<f64>, i: usize| {
        let p = pts.get(i);
        let q = r * Vector3::new(p[0], p[1], 1.0);
        if q.z <= 0.0 {
            return false;
        }
        let du = (q.x / q.z - p[2]) * cam_b.fx;
        let dv = (q.y / q.z - p[3]) * cam_b.fy;
        du * du + dv * dv < 4.0 * thr * thr
    };
    let mut rng = SplitMix64(0x5EED);
    let mut best_r = Matrix3::identity();
    let mut best_count = (0..n).filter(|&i| fits(&best_r, i)).count();
    for _ in 0..64 {
        let i = rng.below(n);
        let j = rng.below(n);
        if i == j {
            continue;
        }
        let (pi, pj) = (pts.get(i), pts.get(j));
        let h = bearing(pi[2], pi[3]) * bearing(pi[0], pi[1]).transpose()
            + bearing(pj[2], pj[3]) * bearing(pj[0], pj[1]).transpose();
        let svd = h.svd(true, true);
        let (Some(u), Some(vt)) = (svd.u, svd.v_t) else {
            continue;
        };
        let mut d = Matrix3::identity();
        if (u * vt).determinant() < 0.0 {
            d[(2, 2)] = -1.0;
        }
        let r = u * d * vt;
        let count = (0..n).filter(|&k| fits(&r, k)).count();
        if count > best_count {
            best_count = count;
            best_r = r;
        }
    }
    if best_count as f64 >= 0.5 * n as f64 {
        let mut parallax: Vec<f64> = (0..n)
            .filter(|&k| fits(&best_r, k))
            .map(|k| {
                let p = pts.get(k);
                (best_r * Vector3::new(p[0], p[1], 1.0))
                    .angle(&Vector3::new(p[2], p[3], 1.0))
                    .to_degrees()
            })
            .collect();
        parallax.sort_by(f64::total_cmp);
        return NoPose::NoParallax {
            rotation_only_fraction: best_count as f64 / n as f64,
            median_parallax_deg: parallax[parallax.len() / 2],
        };
    }
    NoPose::NoConsensus { best_inliers, need }
}

/// The best hypothesis so far.
struct Best {
    r: Matrix3<f64>,
    t: Vector3<f64>,
    /// MSAC score (lower is better).
    score: f64,
    inliers: usize,
}

/// LO step: refit the candidate's pose on its inliers and keep the refit while it scores better.
fn local_optimisation(scorer: &Scorer<'_>, refiner: &Refiner<'_>, cand: &mut Best) {
    // Inlier sets taken at a shrinking multiple of the threshold (Lebeda et al. 2012): the looser first set
    // pulls in the true inliers the minimal-sample model missed.
    let mut failures = 0;
    for scale in [2.0, 1.5, 1.0, 1.0, 1.0, 1.0] {
        let (r, t) = (cand.r, cand.t);
        let mut idx = scorer.inlier_indices(&to_array(&essential_from_pose(&r, &t)), scale);
        if idx.len() < SAMPLE {
            return;
        }
        subsample_evenly(&mut idx, LO_MAX_POINTS);
        let (r2, t2) = refiner.refine(r, t, &idx, 10, LM_REL_TOL);
        let (score, inliers) = scorer.score_full(&to_array(&essential_from_pose(&r2, &t2)));
        if score < cand.score {
            *cand = Best {
                r: r2,
                t: t2,
                score,
                inliers,
            };
        } else if scale <= 1.0 {
            failures += 1;
            if failures >= 1 {
                return;
            }
        }
    }
}

/// Most inliers a local-optimisation refit uses (an even spread of them). LO only has to pull a minimal-sample
/// model into the right basin; the final refinement (step 7) uses every inlier. `matcha bench pose`, 100
/// instances × 2 passes, N = 2000, 50% outliers: all inliers 7.6 ms / 0.0785° median error; 256 points
/// 5.0 ms / 0.0772°; 128 points 4.5 ms / 0.0804°.
const LO_MAX_POINTS: usize = 256;

/// Relative cost decrease below which a Levenberg–Marquardt refit stops. Tight for LO too: LO refits
/// stopped at 1e-6 raised the median error of `matcha bench pose` from 0.93× to 1.00× PoseLib's.
const LM_REL_TOL: f64 = 1e-10;

/// Keeps at most `max` of `idx`, evenly spread over it (deterministic).
fn subsample_evenly(idx: &mut Vec<u32>, max: usize) {
    let n = idx.len();
    if n <= max || max == 0 {
        return;
    }
    for k in 0..max {
        idx[k] = idx[k * n / max];
    }
    idx.truncate(max);
}

/// Rejects point sets that lie within about a threshold of one line (or one point): no essential matrix
/// is determined by them.
fn check_spread(p: &[[f64; 2]], which: &str, thr: f64) -> Result<(), NoPose> {
    let n = p.len() as f64;
    let (mut mx, mut my) = (0.0, 0.0);
    for q in p {
        mx += q[0];
        my += q[1];
    }
    mx /= n;
    my /= n;
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for q in p {
        let (dx, dy) = (q[0] - mx, q[1] - my);
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    sxx /= n;
    sxy /= n;
    syy /= n;
    // Smallest eigenvalue of the 2×2 covariance: variance across the best-fitting line.
    let tr = sxx + syy;
    let det = sxx * syy - sxy * sxy;
    let disc = (tr * tr / 4.0 - det).max(0.0).sqrt();
    let lambda_min = (tr / 2.0 - disc).max(0.0);
    if lambda_min.sqrt() < 0.5 * thr {
        return Err(NoPose::Degenerate(format!(
            "the points of image {which} lie on one line (spread across it {:.3} px)",
            lambda_min.sqrt()
        )));
    }
    Ok(())
}

fn count_distinct(a: &[[f64; 2]], b: &[[f64; 2]]) -> usize {
    let mut keys: Vec<[u64; 4]> = a
        .iter()
        .zip(b)
        .map(|(p, q)| {
            [
                p[0].to_bits(),
                p[1].to_bits(),
                q[0].to_bits(),
                q[1].to_bits(),
            ]
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsample_evenly_keeps_an_even_spread() {
        let mut idx: Vec<u32> = (0..10).collect();
        subsample_evenly(&mut idx, 4);
        assert_eq!(idx, vec![0, 2, 5, 7]);
        let mut short: Vec<u32> = vec![3, 9];
        subsample_evenly(&mut short, 4);
        assert_eq!(short, vec![3, 9]);
        let mut big: Vec<u32> = (0..1000).map(|i| 2 * i).collect();
        subsample_evenly(&mut big, LO_MAX_POINTS);
        assert_eq!(big.len(), LO_MAX_POINTS);
        assert!(big.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(big[0], 0);
        assert!(*big.last().unwrap() >= 1990);
    }

    #[test]
    fn cost_sum_equals_the_sum_of_logarithms() {
        let c2 = 2.25;
        let values: Vec<f64> = (0..5000)
            .map(|i| match i % 5 {
                0 => 0.0,
                1 => 1e-12 * i as f64,
                2 => 0.37 * i as f64,
                3 => 1e150, // an outlier too large for the product
                _ => 1e40 * i as f64,
            })
            .collect();
        use super::sampson_kernels::CostSum;
        let mut sum = CostSum::new(Some(c2));
        let mut plain = CostSum::new(None);
        for &v in &values {
            sum.push(v);
            plain.push(v);
        }
        let want: f64 = values.iter().map(|v| c2 * (v / c2).ln_1p()).sum();
        assert!(
            (sum.total() - want).abs() <= 1e-12 * want,
            "{} vs {want}",
            sum.total()
        );
        assert_eq!(plain.total(), values.iter().sum::<f64>());
        let mut nan = CostSum::new(Some(c2));
        nan.push(f64::NAN);
        assert!(nan.total().is_nan());
    }
    use crate::geometry::bench::{generate_sets, SyntheticConfig};
    use crate::geometry::metrics::pose_error_deg;

    fn cam() -> PinholeCamera {
        PinholeCamera::new(525.0, 525.0, 320.0, 240.0).unwrap()
    }

    #[test]
    fn recovers_synthetic_poses() {
        let cfg = SyntheticConfig {
            instances: 6,
            num_points: 600,
            ..Default::default()
        };
        for (k, inst) in generate_sets(&cfg).iter().enumerate() {
            let opts = RansacOptions::default();
            let pose = estimate_relative_pose(
                &inst.points_a,
                &inst.points_b,
                &inst.camera,
                &inst.camera,
                None,
                &opts,
            )
            .unwrap();
            let (rg, tg) = inst.ground_truth();
            let (re, te) = pose_error_deg(&pose.rotation, &pose.translation, &rg, &tg);
            // Loose bounds (300 inliers, 0.5 px noise); the comparison with PoseLib is in tests/.
            assert!(re < 0.3 && te < 1.5, "instance {k}: errors {re}° {te}°");
            // Cheirality: the sign of t is right, not just its direction.
            assert!(pose.translation.dot(&tg) > 0.9, "instance {k}: t flipped");
            let true_in = inst.is_inlier.iter().filter(|&&x| x).count();
            let found_true = (0..inst.is_inlier.len())
                .filter(|&i| inst.is_inlier[i] && pose.inliers[i])
                .count();
            assert!(
                found_true as f64 > 0.9 * true_in as f64,
                "instance {k}: recall {found_true}/{true_in}"
            );
            assert!(
                pose.num_inliers < true_in + true_in / 20,
                "instance {k}: too many inliers"
            );
            assert!((pose.translation.norm() - 1.0).abs() < 1e-12);
            assert!(
                (pose.rotation.transpose() * pose.rotation - Matrix3::identity()).norm() < 1e-10
            );
            assert!(pose.quality.rms_error_px > 0.2 && pose.quality.rms_error_px < 1.0);
            assert!(pose.covariance.iter().all(|v| v.is_finite()));
            // Rotation standard deviation is small but positive.
            let sd = pose.covariance[(0, 0)].sqrt().to_degrees();
            assert!(sd > 1e-5 && sd < 0.1, "rotation sd {sd}°");
            // Same seed, same result.
            let again = estimate_relative_pose(
                &inst.points_a,
                &inst.points_b,
                &inst.camera,
                &inst.camera,
                None,
                &opts,
            )
            .unwrap();
            assert_eq!(again.rotation, pose.rotation);
            assert_eq!(again.inliers, pose.inliers);
        }
    }

    #[test]
    fn weights_follow_the_precision_of_each_correspondence() {
        use crate::geometry::bench::Rng;
        // Inliers with 0.1 px noise; every second correspondence gets another 0.8 px in image b.
        let cfg = SyntheticConfig {
            instances: 16,
            num_points: 600,
            noise_px: 0.1,
            outlier_ratio: 0.3,
            ..Default::default()
        };
        let opts = RansacOptions::default();
        let (mut err_equal, mut err_weighted) = (Vec::new(), Vec::new());
        let mut rng = Rng::new(7);
        for inst in generate_sets(&cfg) {
            let mut pb = inst.points_b.clone();
            let mut weights = vec![1.0; pb.len()];
            for (i, p) in pb.iter_mut().enumerate() {
                if i % 2 == 1 {
                    p[0] += 0.8 * rng.normal();
                    p[1] += 0.8 * rng.normal();
                    weights[i] = (0.1f64 / 0.8).powi(2);
                }
            }
            let (rg, tg) = inst.ground_truth();
            let run = |w: Option<&[f64]>| {
                let p = estimate_relative_pose_weighted(
                    &inst.points_a,
                    &pb,
                    &inst.camera,
                    &inst.camera,
                    None,
                    w,
                    &opts,
                )
                .unwrap();
                let (re, te) = pose_error_deg(&p.rotation, &p.translation, &rg, &tg);
                (re.max(te), p)
            };
            let (e_equal, p_equal) = run(None);
            let (e_weighted, _) = run(Some(&weights));
            err_equal.push(e_equal);
            err_weighted.push(e_weighted);
            // all-one weights are the unweighted estimator
            let (_, p_ones) = run(Some(&vec![1.0; pb.len()]));
            assert_eq!(p_ones.rotation, p_equal.rotation);
            assert_eq!(p_ones.inliers, p_equal.inliers);
        }
        // Geometric mean of the per-instance error ratios: some instances are limited by their geometry
        // (the translation direction), not by the noisy half, so single instances can go either way.
        let log_ratio = err_weighted
            .iter()
            .zip(&err_equal)
            .map(|(w, e)| (w / e).ln())
            .sum::<f64>()
            / err_equal.len() as f64;
        let ratio = log_ratio.exp();
        assert!(
            ratio < 0.75,
            "weighted / equal-weight error, geometric mean {ratio:.3} (weighted {err_weighted:?}, equal {err_equal:?})"
        );
    }

    #[test]
    fn refinement_from_an_initial_pose_matches_ransac() {
        let cfg = SyntheticConfig {
            instances: 4,
            num_points: 600,
            ..Default::default()
        };
        let opts = RansacOptions::default();
        for inst in generate_sets(&cfg) {
            let (rg, tg) = inst.ground_truth();
            let full = estimate_relative_pose(
                &inst.points_a,
                &inst.points_b,
                &inst.camera,
                &inst.camera,
                None,
                &opts,
            )
            .unwrap();
            // start ~0.1° and ~0.3° off the truth (the size of a detector-keypoint pose's error; farther
            // than the LO threshold reaches, there is no consensus to start from): LO and the final
            // refinement pull it in, with no sampling
            let r0 = Rotation3::from_euler_angles(0.001, -0.001, 0.0005).into_inner() * rg;
            let t0 = (tg + Vector3::new(0.005, -0.003, 0.002)).normalize() * 3.0;
            let seeded = refine_relative_pose_weighted(
                &inst.points_a,
                &inst.points_b,
                &inst.camera,
                &inst.camera,
                None,
                (&r0, &t0),
                &opts,
            )
            .unwrap();
            assert_eq!(seeded.quality.iterations, 0);
            assert!((seeded.translation.norm() - 1.0).abs() < 1e-12);
            let (re, te) = pose_error_deg(&seeded.rotation, &seeded.translation, &rg, &tg);
            let (rf, tf) = pose_error_deg(&full.rotation, &full.translation, &rg, &tg);
            assert!(
                re.max(te) < rf.max(tf) + 0.05,
                "seeded {re}°/{te}° vs LO-RANSAC {rf}°/{tf}°"
            );
            let common = (0..full.inliers.len())
                .filter(|&i| full.inliers[i] == seeded.inliers[i])
                .count();
            assert!(common as f64 > 0.98 * full.inliers.len() as f64);
        }
        // invalid initial poses
        let inst = &generate_sets(&cfg)[0];
        let bad_r = Matrix3::identity() * 2.0;
        let t = Vector3::new(1.0, 0.0, 0.0);
        for (r, t) in [
            (bad_r, t),
            (Matrix3::identity(), Vector3::zeros()),
            (Matrix3::identity(), Vector3::new(f64::NAN, 0.0, 1.0)),
            (-Matrix3::identity(), t),
        ] {
            assert!(matches!(
                refine_relative_pose_weighted(
                    &inst.points_a,
                    &inst.points_b,
                    &inst.camera,
                    &inst.camera,
                    None,
                    (&r, &t),
                    &opts
                ),
                Err(NoPose::InvalidOptions(_))
            ));
        }
    }

    #[test]
    fn invalid_weights_are_errors() {
        let cfg = SyntheticConfig {
            instances: 1,
            num_points: 100,
            ..Default::default()
        };
        let inst = &generate_sets(&cfg)[0];
        let run = |w: &[f64]| {
            estimate_relative_pose_weighted(
                &inst.points_a,
                &inst.points_b,
                &inst.camera,
                &inst.camera,
                None,
                Some(w),
                &RansacOptions::default(),
            )
        };
        assert!(matches!(
            run(&[1.0; 99]),
            Err(NoPose::LengthMismatch { a: 100, b: 99 })
        ));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let mut w = vec![1.0; 100];
            w[42] = bad;
            assert!(
                matches!(run(&w), Err(NoPose::InvalidOptions(ref m)) if m.contains("weight 42")),
                "{bad}"
            );
        }
    }

    #[test]
    fn prosac_uses_priority() {
        let cfg = SyntheticConfig {
            instances: 2,
            num_points: 1000,
            outlier_ratio: 0.8,
            ..Default::default()
        };
        for inst in generate_sets(&cfg) {
            // Scores that rank true matches first (with some noise).
            let prio: Vec<f32> = inst
                .is_inlier
                .iter()
                .enumerate()
                .map(|(i, &t)| (t as u8 as f32) + (i % 7) as f32 * 0.1)
                .collect();
            // The priority orders the samples; it does not shorten the run (the stopping rule is the
            // uniform one), so its benefit shows under a small budget: 200 samples at 20% inliers find an
            // all-inlier sample with probability ~6% uniformly, and at once from the top of the order.
            let opts = RansacOptions {
                max_iterations: 200,
                min_iterations: 200,
                ..Default::default()
            };
            let with = estimate_relative_pose(
                &inst.points_a,
                &inst.points_b,
                &inst.camera,
                &inst.camera,
                Some(&prio),
                &opts,
            )
            .unwrap();
            let without_inliers = estimate_relative_pose(
                &inst.points_a,
                &inst.points_b,
                &inst.camera,
                &inst.camera,
                None,
                &opts,
            )
            .map_or(0, |p| p.num_inliers);
            assert!(
                with.num_inliers > without_inliers,
                "{} vs {without_inliers} inliers",
                with.num_inliers
            );
            let (rg, tg) = inst.ground_truth();
            let (re, te) = pose_error_deg(&with.rotation, &with.translation, &rg, &tg);
            assert!(
                re < 0.3 && te < 1.5,
                "{re} {te} {} inliers, {} iterations",
                with.num_inliers,
                with.quality.iterations
            );
        }
    }

    #[test]
    fn degenerate_inputs_are_errors() {
        let c = cfg_small();
        let inst = &generate_sets(&c)[0];
        let (a, b) = (&inst.points_a, &inst.points_b);
        let o = RansacOptions::default();
        let cam = cam();
        assert!(matches!(
            estimate_relative_pose(&a[..3], &b[..3], &cam, &cam, None, &o),
            Err(NoPose::TooFewCorrespondences { have: 3, .. })
        ));
        assert!(matches!(
            estimate_relative_pose(a, &b[..10], &cam, &cam, None, &o),
            Err(NoPose::LengthMismatch { .. })
        ));
        assert!(matches!(
            estimate_relative_pose(a, b, &cam, &cam, Some(&[1.0; 3]), &o),
            Err(NoPose::LengthMismatch { .. })
        ));
        let mut bad = a.clone();
        bad[7][1] = f64::NAN;
        assert!(matches!(
            estimate_relative_pose(&bad, b, &cam, &cam, None, &o),
            Err(NoPose::NonFinite(_))
        ));
        bad[7][1] = f64::INFINITY;
        assert!(matches!(
            estimate_relative_pose(&bad, b, &cam, &cam, None, &o),
            Err(NoPose::NonFinite(_))
        ));
        let mut badcam = cam;
        badcam.fx = 0.0;
        assert!(matches!(
            estimate_relative_pose(a, b, &badcam, &cam, None, &o),
            Err(NoPose::InvalidCamera(_))
        ));
        // All points on a line.
        let line_a: Vec<[f64; 2]> = (0..100)
            .map(|i| [3.0 * i as f64, 2.0 * i as f64 + 1.0])
            .collect();
        let line_b: Vec<[f64; 2]> = (0..100)
            .map(|i| [3.0 * i as f64 + 5.0, 2.0 * i as f64])
            .collect();
        assert!(matches!(
            estimate_relative_pose(&line_a, &line_b, &cam, &cam, None, &o),
            Err(NoPose::Degenerate(_))
        ));
        // The same correspondence repeated.
        let same_a = vec![[100.0, 200.0]; 50];
        let same_b = vec![[110.0, 190.0]; 50];
        assert!(matches!(
            estimate_relative_pose(&same_a, &same_b, &cam, &cam, None, &o),
            Err(NoPose::Degenerate(_))
        ));
        // Four distinct correspondences repeated many times (plus spread, so the line test passes).
        let four_a: Vec<[f64; 2]> = (0..60)
            .map(|i| [[10.0, 10.0], [600.0, 20.0], [30.0, 400.0], [500.0, 450.0]][i % 4])
            .collect();
        let four_b: Vec<[f64; 2]> = four_a.iter().map(|p| [p[0] + 3.0, p[1] - 2.0]).collect();
        assert!(matches!(
            estimate_relative_pose(&four_a, &four_b, &cam, &cam, None, &o),
            Err(NoPose::Degenerate(_))
        ));
        // Zero motion: identical images.
        let r = estimate_relative_pose(a, a, &cam, &cam, None, &o);
        assert!(matches!(r, Err(NoPose::NoParallax { .. })), "{r:?}");
        // Pure rotation: b is a rotated view of a (no translation).
        let rot = Rotation3::from_euler_angles(0.02, -0.05, 0.03).into_inner();
        let rotated: Vec<[f64; 2]> = a
            .iter()
            .map(|p| {
                let x = cam.normalize(*p);
                let q = rot * Vector3::new(x[0], x[1], 1.0);
                cam.denormalize([q.x / q.z, q.y / q.z])
            })
            .collect();
        let r = estimate_relative_pose(a, &rotated, &cam, &cam, None, &o);
        assert!(matches!(r, Err(NoPose::NoParallax { .. })), "{r:?}");
        // Pure noise: no consensus, or at least not a pose claiming many inliers.
        let mut rng = crate::geometry::bench::Rng::new(3);
        let na: Vec<[f64; 2]> = (0..300)
            .map(|_| [rng.range(0.0, 639.0), rng.range(0.0, 479.0)])
            .collect();
        let nb: Vec<[f64; 2]> = (0..300)
            .map(|_| [rng.range(0.0, 639.0), rng.range(0.0, 479.0)])
            .collect();
        let strict = RansacOptions {
            min_inliers: 50,
            ..Default::default()
        };
        assert!(matches!(
            estimate_relative_pose(&na, &nb, &cam, &cam, None, &strict),
            Err(NoPose::NoConsensus { .. })
        ));
        // Bad options.
        let bad_o = RansacOptions {
            threshold_px: -1.0,
            ..Default::default()
        };
        assert!(matches!(
            estimate_relative_pose(a, b, &cam, &cam, None, &bad_o),
            Err(NoPose::InvalidOptions(_))
        ));
    }

    fn cfg_small() -> SyntheticConfig {
        SyntheticConfig {
            instances: 1,
            num_points: 300,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod jac_tests {
    use super::*;

    #[test]
    fn jacobian_matches_finite_differences() {
        let pts = Points {
            xa: vec![0.1, -0.3],
            ya: vec![0.2, 0.25],
            xb: vec![0.12, -0.28],
            yb: vec![0.18, 0.3],
            orig: vec![0, 1],
            sqrt_w: Vec::new(),
            weight: Vec::new(),
        };
        let w = PixelWeights::new(500.0, 520.0, 480.0, 510.0);
        let refiner = Refiner {
            pts: &pts,
            w,
            cauchy: None,
        };
        let r = Rotation3::from_euler_angles(0.1, -0.05, 0.2).into_inner();
        let t = Vector3::new(0.3, 0.1, 0.9).normalize();
        let e = to_array(&essential_from_pose(&r, &t));
        // the signed Sampson error in pixels, written out independently of the kernels
        let sampson = |e: &[f64; 9], i: usize| {
            let [xa, ya, xb, yb] = pts.get(i);
            let a = e[0] * xa + e[1] * ya + e[2];
            let b = e[3] * xa + e[4] * ya + e[5];
            let c = e[6] * xa + e[7] * ya + e[8];
            let d = e[0] * xb + e[3] * yb + e[6];
            let f = e[1] * xb + e[4] * yb + e[7];
            (xb * a + yb * b + c)
                / (w.wb_x * a * a + w.wb_y * b * b + w.wa_x * d * d + w.wa_y * f * f).sqrt()
        };
        for i in 0..2 {
            // one point: H = J·Jᵀ, g = J·s, cost = s²
            let (h, g, cost) = refiner.normal_equations(&r, &t, &[i as u32], false);
            let s = sampson(&e, i);
            assert!(
                (cost - s * s).abs() < 1e-9 * (1.0 + s * s),
                "{cost} vs {}",
                s * s
            );
            let j = g / s;
            assert!((h - j * j.transpose()).norm() < 1e-6 * (1.0 + h.norm()));
            for k in 0..5 {
                let hstep = 1e-7;
                let mut step = Vector5::zeros();
                step[k] = hstep;
                let (r2, t2) = Refiner::apply(&r, &t, &step);
                let e2 = to_array(&essential_from_pose(&r2, &t2));
                let num = (sampson(&e2, i) - s) / hstep;
                assert!(
                    (num - j[k]).abs() < 1e-4 * (1.0 + num.abs()),
                    "point {i} param {k}: {num} vs {}",
                    j[k]
                );
            }
        }
    }
}
