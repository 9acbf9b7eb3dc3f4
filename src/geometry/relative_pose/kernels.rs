//! The relative-pose solver's inner loops over correspondences, eight at a time: hypothesis verification
//! (SPRT + MSAC), full scoring, inlier selection, and the Sampson residuals with their pose Jacobians for the
//! Levenberg–Marquardt refits ([`super`]).
//!
//! Each loop computes the Sampson terms of a block of eight correspondences in straight-line lane loops that
//! the compiler turns into vector code (compiled for AVX-512, AVX2 + FMA and NEON as well as the baseline,
//! chosen at run time), then does the sequential part (SPRT decisions, the order-dependent sums) per
//! correspondence in the original order. Verification, scoring and inlier selection therefore give exactly
//! the results of the one-at-a-time loops they replace; the normal equations sum in eight lanes (a different
//! but fixed order: deterministic).
//!
//! What it does not do: sample, solve, or decide anything about the pose; it only evaluates.

// `!(x > y)` is deliberate: it is true for NaN, which must take the rejecting branch.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub(crate) use crate::geometry::correspondences::Soa;
use crate::geometry::essential::{epipolar_terms, PixelWeights};
use crate::geometry::ransac::{SprtTest, Verification};

/// Correspondences per block.
const LANES: usize = 8;

/// Sampson numerator `r` (the epipolar residual `x_bᵀ E x_a`) and denominator `den` (pixel-weighted squared
/// gradient norm) of the block of eight correspondences starting at `k`; lanes past the end are zero.
#[inline(always)]
fn block_terms(e: &[f64; 9], w: &PixelWeights, p: &Soa, k: usize) -> ([f64; LANES], [f64; LANES]) {
    let mut xa = [0.0; LANES];
    let mut ya = [0.0; LANES];
    let mut xb = [0.0; LANES];
    let mut yb = [0.0; LANES];
    let m = (p.len() - k).min(LANES);
    xa[..m].copy_from_slice(&p.xa[k..k + m]);
    ya[..m].copy_from_slice(&p.ya[k..k + m]);
    xb[..m].copy_from_slice(&p.xb[k..k + m]);
    yb[..m].copy_from_slice(&p.yb[k..k + m]);
    let mut r = [0.0; LANES];
    let mut den = [0.0; LANES];
    for l in 0..LANES {
        [_, _, _, _, r[l], den[l]] = epipolar_terms(e, w, xa[l], ya[l], xb[l], yb[l]);
    }
    (r, den)
}

/// Verifies `e` on the correspondences in their stored order: SPRT, and the MSAC bail-out once the
/// truncated score exceeds `best_score` (both checked at each inconsistent correspondence).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
pub(crate) fn verify(
    e: &[f64; 9],
    w: &PixelWeights,
    p: &Soa,
    thr_sq: f64,
    sprt: &SprtTest,
    best_score: f64,
) -> Verification {
    let mut log_lambda = 0.0;
    let mut score = 0.0;
    let mut inliers = 0usize;
    for k in (0..p.len()).step_by(LANES) {
        let (r, den) = block_terms(e, w, p, k);
        // per lane (vectorised): consistent or not, and the score term (same expression as one at a time)
        let mut weight = [1.0; LANES];
        if !p.weight.is_empty() {
            let m = (p.len() - k).min(LANES);
            weight[..m].copy_from_slice(&p.weight[k..k + m]);
        }
        let mut consistent = [false; LANES];
        let mut term = [0.0; LANES];
        for l in 0..LANES {
            let r2 = r[l] * r[l];
            consistent[l] = r2 < thr_sq * den[l];
            term[l] = if consistent[l] {
                weight[l] * r2 / den[l]
            } else {
                weight[l] * thr_sq
            };
        }
        // sequential decisions in the stored order; the exit test only after an inconsistent point, as
        // the one-at-a-time loop did (`&` / `|`: one rarely taken branch)
        for l in 0..(p.len() - k).min(LANES) {
            score += term[l];
            inliers += consistent[l] as usize;
            log_lambda += if consistent[l] {
                sprt.log_in
            } else {
                sprt.log_out
            };
            if !consistent[l] & ((log_lambda > sprt.log_a) | (score > best_score)) {
                return Verification::Rejected {
                    tested: k + l + 1,
                    inliers,
                };
            }
        }
    }
    Verification::Accepted { score, inliers }
}

/// Squared Sampson errors (pixels²) of a block; infinite where the denominator is not positive.
#[inline(always)]
fn block_sampson_sq(e: &[f64; 9], w: &PixelWeights, p: &Soa, k: usize) -> [f64; LANES] {
    let (r, den) = block_terms(e, w, p, k);
    std::array::from_fn(|l| {
        if den[l] > 0.0 {
            r[l] * r[l] / den[l]
        } else {
            f64::INFINITY
        }
    })
}

/// Full MSAC score (weighted, truncated at `thr_sq`) and the inlier count (no early exit).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
pub(crate) fn score(e: &[f64; 9], w: &PixelWeights, p: &Soa, thr_sq: f64) -> (f64, usize) {
    let mut score = 0.0;
    let mut inliers = 0;
    for k in (0..p.len()).step_by(LANES) {
        let s2 = block_sampson_sq(e, w, p, k);
        for (l, &s2) in s2.iter().enumerate().take(p.len() - k) {
            let wi = p.weight.get(k + l).copied().unwrap_or(1.0);
            if s2 < thr_sq {
                inliers += 1;
                score += wi * s2;
            } else {
                score += wi * thr_sq;
            }
        }
    }
    (score, inliers)
}

/// Indices of the correspondences with a squared Sampson error below `t_sq`, ascending.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
pub(crate) fn inliers(e: &[f64; 9], w: &PixelWeights, p: &Soa, t_sq: f64) -> Vec<u32> {
    let mut out = Vec::with_capacity(p.len());
    for k in (0..p.len()).step_by(LANES) {
        let s2 = block_sampson_sq(e, w, p, k);
        for (l, &s2) in s2.iter().enumerate().take(p.len() - k) {
            if s2 < t_sq {
                out.push((k + l) as u32);
            }
        }
    }
    out
}

/// Sum of robust costs `c²·ln(1 + s²/c²)` (or of `s²` without a scale), multiplying the factors and taking
/// one logarithm per run of them (a logarithm per correspondence dominated the refinement's time); factors
/// too large to multiply safely get their own logarithm.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CostSum {
    /// `c²` of the Cauchy loss; `None` = plain squares.
    c2: Option<f64>,
    product: f64,
    logs: f64,
    plain: f64,
}

impl CostSum {
    pub(crate) fn new(c2: Option<f64>) -> Self {
        Self {
            c2,
            product: 1.0,
            logs: 0.0,
            plain: 0.0,
        }
    }

    #[inline(always)]
    pub(crate) fn push(&mut self, s2: f64) {
        let Some(c2) = self.c2 else {
            self.plain += s2;
            return;
        };
        let factor = 1.0 + s2 / c2;
        if factor < 1e100 {
            self.product *= factor;
            if self.product > 1e200 {
                self.logs += self.product.ln();
                self.product = 1.0;
            }
        } else {
            self.logs += factor.ln(); // also NaN, which then poisons the total as before
        }
    }

    pub(crate) fn total(&self) -> f64 {
        match self.c2 {
            Some(c2) => c2 * (self.logs + self.product.ln()),
            None => self.plain,
        }
    }
}

/// The correspondences `idx[k..k + 8]` gathered into lanes (unused lanes zero, with weight 0).
#[inline(always)]
fn gather(p: &Soa, sqrt_w: &[f64], idx: &[u32], k: usize) -> [[f64; LANES]; 5] {
    let mut out = [[0.0; LANES]; 5];
    for (l, &i) in idx[k..].iter().take(LANES).enumerate() {
        let i = i as usize;
        out[0][l] = p.xa[i];
        out[1][l] = p.ya[i];
        out[2][l] = p.xb[i];
        out[3][l] = p.yb[i];
        out[4][l] = sqrt_w.get(i).copied().unwrap_or(1.0);
    }
    out
}

/// Robust cost (see [`CostSum`]; `c2 = None`: plain squares) of the whitened Sampson errors of the
/// correspondences `idx` (`sqrt_w`: square roots of their weights, empty = 1).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
pub(crate) fn cost(
    e: &[f64; 9],
    w: &PixelWeights,
    p: &Soa,
    sqrt_w: &[f64],
    idx: &[u32],
    c2: Option<f64>,
) -> f64 {
    let mut sum = CostSum::new(c2);
    for k in (0..idx.len()).step_by(LANES) {
        let [xa, ya, xb, yb, sw] = gather(p, sqrt_w, idx, k);
        let lanes = Soa {
            xa: &xa,
            ya: &ya,
            xb: &xb,
            yb: &yb,
            weight: &[],
        };
        let s2 = block_sampson_sq(e, w, &lanes, 0);
        for l in 0..(idx.len() - k).min(LANES) {
            sum.push(sw[l] * sw[l] * s2[l]);
        }
    }
    sum.total()
}

/// Normal equations of the pose refit at the essential matrix `e` with `de[k] = ∂E/∂θ_k` (five pose
/// parameters): the upper triangle of `Σ ρ'·J·Jᵀ` (row-major, 15 values), `Σ ρ'·J·s` and the robust cost,
/// over the whitened Sampson residuals `s` of the correspondences `idx`. `c2`: Cauchy scale², whose IRLS
/// weight `ρ' = 1/(1 + s²/c²)` is applied (`None`: least squares). Correspondences with a non-positive
/// Sampson denominator are left out.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
pub(crate) fn normal_equations(
    e: &[f64; 9],
    de: &[[f64; 9]; 5],
    w: &PixelWeights,
    p: &Soa,
    sqrt_w: &[f64],
    idx: &[u32],
    c2: Option<f64>,
) -> ([f64; 15], [f64; 5], f64) {
    let mut upper = [[0.0; LANES]; 15];
    let mut grad = [[0.0; LANES]; 5];
    let mut cost = CostSum::new(c2);
    for k in (0..idx.len()).step_by(LANES) {
        let [xa, ya, xb, yb, sw] = gather(p, sqrt_w, idx, k);
        let mut s = [0.0; LANES];
        let mut jac = [[0.0; LANES]; 5];
        for l in 0..LANES {
            let [a, b, d, f, r, den] = epipolar_terms(e, w, xa[l], ya[l], xb[l], yb[l]);
            // a correspondence without a valid denominator (and an unused lane) contributes nothing
            let valid = den > 0.0;
            let den = if valid { den } else { 1.0 };
            let inv_sqrt = if valid { sw[l] / den.sqrt() } else { 0.0 };
            let kk = r / den;
            // ∂s/∂E (row-major), before the common factor inv_sqrt
            let (wa, wb, wd, wf) = (w.wb_x * a, w.wb_y * b, w.wa_x * d, w.wa_y * f);
            let g = [
                xb[l] * xa[l] - kk * (wa * xa[l] + wd * xb[l]),
                xb[l] * ya[l] - kk * (wa * ya[l] + wf * xb[l]),
                xb[l] - kk * wa,
                yb[l] * xa[l] - kk * (wb * xa[l] + wd * yb[l]),
                yb[l] * ya[l] - kk * (wb * ya[l] + wf * yb[l]),
                yb[l] - kk * wb,
                xa[l] - kk * wd,
                ya[l] - kk * wf,
                1.0,
            ];
            for (jk, dek) in jac.iter_mut().zip(de) {
                let mut acc = 0.0;
                for m in 0..9 {
                    acc += g[m] * dek[m];
                }
                jk[l] = acc * inv_sqrt;
            }
            s[l] = r * inv_sqrt;
        }
        let mut rho = [1.0; LANES];
        for l in 0..(idx.len() - k).min(LANES) {
            let s2 = s[l] * s[l];
            cost.push(s2);
            if let Some(c2) = c2 {
                rho[l] = 1.0 / (1.0 + s2 / c2);
            }
        }
        let mut q = 0;
        for a in 0..5 {
            for b in a..5 {
                for l in 0..LANES {
                    upper[q][l] += rho[l] * jac[a][l] * jac[b][l];
                }
                q += 1;
            }
            for l in 0..LANES {
                grad[a][l] += rho[l] * jac[a][l] * s[l];
            }
        }
    }
    (
        upper.map(|v| v.iter().sum()),
        grad.map(|v| v.iter().sum()),
        cost.total(),
    )
}

#[cfg(test)]
#[path = "kernels_tests.rs"]
mod tests;
