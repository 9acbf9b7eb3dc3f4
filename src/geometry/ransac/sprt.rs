//! Wald's sequential probability ratio test for hypothesis verification (Matas & Chum 2008, "Optimal
//! randomized RANSAC"): a hypothesis is checked on the correspondences in a fixed random order and rejected
//! as soon as the likelihood ratio of "bad model" to "good model" exceeds `A`. Its parameters — the inlier
//! ratio `ε` of a good model and the consistency `δ` of a bad one — adapt as the run goes: `ε` from the best
//! model, `δ` from the rejected hypotheses.

/// The test's decision threshold and log-likelihood increments, as the verification kernels take them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SprtTest {
    /// `ln A`.
    pub log_a: f64,
    /// Increment for a consistent correspondence.
    pub log_in: f64,
    /// Increment for an inconsistent one.
    pub log_out: f64,
}

/// The adaptive state of the test.
pub(crate) struct SprtState {
    epsilon: f64,
    delta: f64,
    models_per_sample: f64,
    a: f64,
    log_in: f64,
    log_out: f64,
    rejected_tested: f64,
    rejected_inliers: f64,
}

impl SprtState {
    /// Cost of one hypothesis in point verifications (the minimal solve relative to one check).
    const T_M: f64 = 200.0;

    /// Starts with inlier ratio `epsilon` and `δ` = 0.01.
    pub(crate) fn new(epsilon: f64, models_per_sample: f64) -> Self {
        let mut s = Self {
            epsilon,
            delta: 0.01,
            models_per_sample,
            a: 1.0,
            log_in: 0.0,
            log_out: 0.0,
            rejected_tested: 0.0,
            rejected_inliers: 0.0,
        };
        s.update();
        s
    }

    /// Recomputes A from ε and δ (Matas & Chum 2008, eq. 2 with the usual fixed-point iteration).
    fn update(&mut self) {
        let eps = self.epsilon.clamp(1e-3, 0.999);
        let delta = self.delta.clamp(1e-4, eps * 0.9);
        let c = (1.0 - delta) * ((1.0 - delta) / (1.0 - eps)).ln() + delta * (delta / eps).ln();
        let a0 = Self::T_M * c / self.models_per_sample + 1.0;
        let mut a = a0;
        for _ in 0..10 {
            a = a0 + a.ln();
        }
        self.a = a.max(1.5);
        self.log_in = (delta / eps).ln();
        self.log_out = ((1.0 - delta) / (1.0 - eps)).ln();
    }

    /// The current test.
    pub(crate) fn test(&self) -> SprtTest {
        SprtTest {
            log_a: self.a.ln(),
            log_in: self.log_in,
            log_out: self.log_out,
        }
    }

    /// Probability that the test rejects a good model (≤ 1/A).
    pub(crate) fn false_rejection(&self) -> f64 {
        1.0 / self.a
    }

    /// Records a rejected hypothesis (for the estimate of δ).
    pub(crate) fn record_rejection(&mut self, tested: usize, inliers: usize) {
        self.rejected_tested += tested as f64;
        self.rejected_inliers += inliers as f64;
    }

    /// Re-estimates δ from rejected hypotheses (with a weak prior at 0.01).
    pub(crate) fn refresh_delta(&mut self) {
        let d = (self.rejected_inliers + 1.0) / (self.rejected_tested + 100.0);
        if (d - self.delta).abs() > 0.1 * self.delta {
            self.delta = d;
            self.update();
        }
    }

    /// Sets ε (the best model's inlier ratio).
    pub(crate) fn set_epsilon(&mut self, eps: f64) {
        self.epsilon = eps;
        self.update();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grows_with_the_inlier_ratio_and_rejections_lower_delta() {
        let low = SprtState::new(0.1, 4.0);
        let high = SprtState::new(0.6, 4.0);
        // a good model is consistent at each point: the log ratio falls for consistent points
        assert!(low.test().log_in < 0.0 && low.test().log_out > 0.0);
        assert!(high.false_rejection() < low.false_rejection());
        let mut s = SprtState::new(0.5, 4.0);
        let before = s.test();
        s.record_rejection(10_000, 10);
        s.refresh_delta();
        // δ ≈ 0.001 now: a consistent point is stronger evidence for a good model, an inconsistent one
        // stronger evidence against it
        assert!(s.test().log_in < before.log_in && s.test().log_out > before.log_out);
    }
}
