//! A generic LO-RANSAC driver: sampling, hypothesis verification with Wald's SPRT, local optimisation of
//! every new best minimal-sample model, and adaptive termination. The estimators plug in through the small
//! [`Estimator`] trait (minimal solutions, verification, model selection from a sample, scoring, local
//! optimisation), so the relative pose (5-point essential matrix), the homography (4-point DLT) and the
//! absolute pose share one loop with one stopping rule.
//!
//! What it does not do: check or normalise input, refine the final model, or compute covariances — those
//! belong to each estimator's module ([`crate::geometry::relative_pose`], [`crate::geometry::homography`]).
//!
//! Why this formulation (PoseLib's `generate_models / score_model / refine_model` split, with SPRT as in
//! USAC): the loop is where subtle choices live (when LO runs, what the termination rule counts), and they
//! must be the same for every model. Two of them are deliberate and explained where they are made:
//! LO runs when a hypothesis beats the best *minimal-sample* score (not the best refined one), and the
//! stopping rule uses the uniform-sampling confidence even under PROSAC ordering.

// `!(x > y)` is deliberate throughout: it is true for NaN, which must take the rejecting branch.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

mod sampler;
mod sprt;

pub(crate) use sampler::Sampler;
pub(crate) use sprt::{SprtState, SprtTest};

use crate::util::rng::SplitMix64;

/// Outcome of verifying one hypothesis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Verification {
    /// Rejected after `tested` correspondences, of which `inliers` were consistent.
    Rejected { tested: usize, inliers: usize },
    /// Fully verified: MSAC score (lower is better) and inlier count.
    Accepted { score: f64, inliers: usize },
}

/// A scored model.
#[derive(Debug, Clone)]
pub(crate) struct Candidate<M> {
    pub model: M,
    /// MSAC score over all correspondences (lower is better).
    pub score: f64,
    pub inliers: usize,
}

/// What the driver needs of an estimator. Indices are into the estimator's own (priority-sorted) order.
pub(crate) trait Estimator {
    /// What a minimal solver returns and verification evaluates (an essential matrix, a homography).
    type Hypothesis;
    /// What is kept and refined (a pose, a homography).
    type Model;
    /// Correspondences in a minimal sample (at most [`MAX_SAMPLE`]).
    const SAMPLE_SIZE: usize;
    /// Average number of hypotheses per minimal sample (SPRT's `m_S`).
    const MODELS_PER_SAMPLE: f64;

    /// Number of correspondences.
    fn num_points(&self) -> usize;
    /// Appends the hypotheses of a minimal sample to `out`.
    fn hypotheses(&self, sample: &[usize], out: &mut Vec<Self::Hypothesis>);
    /// SPRT + MSAC bail-out verification against the score `bar`.
    fn verify(&self, h: &Self::Hypothesis, test: &SprtTest, bar: f64) -> Verification;
    /// The model of an accepted hypothesis (e.g. the pose chosen by cheirality on the sample), or `None`
    /// when the sample rules it out.
    fn model(&self, h: &Self::Hypothesis, sample: &[usize]) -> Option<Self::Model>;
    /// Local optimisation: refit `cand` on its inliers and keep the refit while it scores better.
    fn local_optimisation(&self, cand: &mut Candidate<Self::Model>);
    /// Fraction of the sampled and verified correspondences that the best model (with `inliers` inliers
    /// after local optimisation) explains: SPRT's and the stopping rule's `ε`. Default: inliers over all
    /// correspondences; an estimator that samples and verifies a subset (plane and parallax: the off-plane
    /// points) says how many of the inliers lie in it.
    fn inlier_ratio(&self, inliers: usize) -> f64 {
        inliers as f64 / self.num_points() as f64
    }
}

/// SPRT + MSAC bail-out verification of a hypothesis whose squared error at correspondence `i` (in the
/// stored order, `0..n`) is `error_sq(i)`: the loop of every estimator that checks one point at a time.
pub(crate) fn verify_errors(
    n: usize,
    thr_sq: f64,
    test: &SprtTest,
    bar: f64,
    error_sq: impl Fn(usize) -> f64,
) -> Verification {
    let (mut score, mut inliers, mut log_lambda) = (0.0, 0usize, 0.0);
    for i in 0..n {
        let e = error_sq(i);
        if e < thr_sq {
            score += e;
            inliers += 1;
            log_lambda += test.log_in;
        } else {
            score += thr_sq;
            log_lambda += test.log_out;
            if log_lambda > test.log_a || score > bar {
                return Verification::Rejected {
                    tested: i + 1,
                    inliers,
                };
            }
        }
    }
    Verification::Accepted { score, inliers }
}

/// Largest minimal sample the driver supports.
pub(crate) const MAX_SAMPLE: usize = 8;

/// Iteration limits and confidence of a run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub min_iterations: usize,
    pub max_iterations: usize,
    /// Probability of having drawn at least one all-inlier sample when stopping early.
    pub confidence: f64,
    /// Inliers known to exist before the run (e.g. of a simpler model every hypothesis would also explain):
    /// the stopping rule counts at least these, so a run whose hypotheses all fail ends once a sample of
    /// them has been drawn with the confidence, not at `max_iterations`.
    pub known_inliers: usize,
}

/// Runs LO-RANSAC; returns the best model (if any hypothesis was accepted) and the number of samples drawn.
pub(crate) fn run<E: Estimator>(
    est: &E,
    sampler: &mut Sampler,
    rng: &mut SplitMix64,
    limits: Limits,
    initial_epsilon: f64,
) -> (Option<Candidate<E::Model>>, usize) {
    let m = E::SAMPLE_SIZE;
    debug_assert!(m <= MAX_SAMPLE);
    let mut sprt = SprtState::new(initial_epsilon, E::MODELS_PER_SAMPLE);
    let log_fail = (1.0 - limits.confidence).ln();
    let max_iter = limits.max_iterations.max(1);
    let mut sprt_alpha = sprt.false_rejection();
    let stop_after = |inliers: usize, alpha: f64| {
        required_iterations(
            est.inlier_ratio(inliers.max(limits.known_inliers)),
            m,
            alpha,
            log_fail,
            max_iter,
        )
    };
    let mut required = if limits.known_inliers > 0 {
        stop_after(0, sprt_alpha)
    } else {
        max_iter
    };
    let mut best: Option<Candidate<E::Model>> = None;
    // Best MSAC score of a *minimal-sample* model so far: the bar a new hypothesis must clear to be locally
    // optimised (the LO-refined best scores far lower, and using it as the bar would starve LO of the
    // hypotheses from other basins: on real pairs, more inliers and a worse pose than PoseLib's).
    let mut best_min_score = f64::INFINITY;
    let mut iterations = 0;
    let mut sample_buf = [0usize; MAX_SAMPLE];
    let sample = &mut sample_buf[..m];
    let mut hyps = Vec::new();
    while iterations < max_iter && (iterations < limits.min_iterations || iterations < required) {
        iterations += 1;
        sampler.sample(rng, sample);
        hyps.clear();
        est.hypotheses(sample, &mut hyps);
        let mut improved = false;
        for h in &hyps {
            match est.verify(h, &sprt.test(), best_min_score) {
                Verification::Rejected { tested, inliers } => {
                    sprt.record_rejection(tested, inliers)
                }
                Verification::Accepted { score, inliers } => {
                    if score >= best_min_score {
                        continue;
                    }
                    best_min_score = score;
                    let Some(model) = est.model(h, sample) else {
                        continue;
                    };
                    let mut cand = Candidate {
                        model,
                        score,
                        inliers,
                    };
                    est.local_optimisation(&mut cand);
                    if best.as_ref().is_none_or(|b| cand.score < b.score) {
                        best = Some(cand);
                        improved = true;
                    }
                }
            }
        }
        if improved {
            if let Some(b) = &best {
                sprt.set_epsilon(est.inlier_ratio(b.inliers));
            }
        }
        if iterations % 16 == 0 || improved {
            sprt.refresh_delta();
            sprt_alpha = sprt.false_rejection();
            if let Some(b) = &best {
                required = stop_after(b.inliers, sprt_alpha);
            } else if limits.known_inliers > 0 {
                required = stop_after(0, sprt_alpha);
            }
        }
    }
    (best, iterations)
}

/// Iterations needed for the confidence: the standard rule `k = log(1 − p) / log(1 − εᵐ·(1 − α))` with `ε`
/// the best model's inlier ratio over **all** the correspondences that can be drawn, `m` the sample size and
/// `α` SPRT's false-rejection rate (Matas & Chum 2008: a good sample is only found if the test also accepts
/// it).
///
/// PROSAC's own rule (Chum & Matas 2005: minimise `k` over the prefixes of the priority order where the
/// support is above chance) is deliberately not used. It is only valid when the priority says nothing about
/// *which* wrong model a point supports; with MNN scores on real images it does: repetitive texture and
/// dominant planes put many confidently matched points on one wrong (or partially right) model, so a short
/// prefix shows a high inlier ratio, passes the non-randomness test, and the loop stops after a few dozen
/// samples at a wrong pose. The priority keeps its real benefit — good samples are drawn first — while
/// stopping needs the confidence of uniform sampling, which PROSAC's progressive sampling only improves on.
pub(crate) fn required_iterations(
    eps: f64,
    m: usize,
    alpha: f64,
    log_fail: f64,
    max_iter: usize,
) -> usize {
    if !(eps > 0.0) {
        return max_iter;
    }
    let eps = eps.min(1.0);
    let p_good = eps.powi(m as i32) * (1.0 - alpha);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_iterations_follows_the_standard_rule() {
        // ε = 0.5, m = 5, α = 0, p = 0.99: log(0.01) / log(1 − 1/32) = 145.04 → 146
        let log_fail = 0.01f64.ln();
        assert_eq!(required_iterations(0.5, 5, 0.0, log_fail, 10_000), 146);
        // a false-rejection rate makes good samples rarer: more iterations
        assert!(required_iterations(0.5, 5, 0.1, log_fail, 10_000) > 146);
        // m = 4 needs fewer than m = 5 at the same ε
        assert!(required_iterations(0.5, 4, 0.0, log_fail, 10_000) < 146);
        // no inliers, too few for the cap, or all inliers
        assert_eq!(required_iterations(0.0, 5, 0.0, log_fail, 777), 777);
        assert_eq!(required_iterations(0.02, 5, 0.0, log_fail, 777), 777);
        assert_eq!(required_iterations(1.0, 5, 0.0, log_fail, 777), 0);
    }
}
