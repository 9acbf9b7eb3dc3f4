//! Minimal samples: PROSAC (Chum & Matas 2005) over correspondences sorted by decreasing priority (match
//! score), or uniform sampling. PROSAC draws from a growing pool of the best-ranked correspondences, so good
//! matches are tried first; after `T_N` samples it is uniform. It only orders the samples: the stopping
//! rule stays the uniform one (see [`super::required_iterations`]).

use crate::util::rng::SplitMix64;

/// PROSAC or uniform sampler of `m`-point samples from `n_total` correspondences.
pub(crate) struct Sampler {
    n_total: usize,
    m: usize,
    prosac: bool,
    /// Current size of the sampling pool (`n`), growth schedule `T_n` and `T'_n`.
    n: usize,
    t_n: f64,
    t_n_prime: usize,
    iteration: usize,
}

impl Sampler {
    /// Samples after which PROSAC has grown its pool to every correspondence.
    const T_N: f64 = 200_000.0;

    /// A sampler of `m`-point samples; `prosac`: the correspondences are sorted by decreasing priority.
    /// Needs `n_total ≥ m`.
    pub(crate) fn new(n_total: usize, m: usize, prosac: bool) -> Self {
        let mut t_n = Self::T_N;
        for i in 0..m {
            t_n *= (m - i) as f64 / (n_total - i) as f64;
        }
        Self {
            n_total,
            m,
            prosac,
            n: m,
            t_n,
            t_n_prime: 1,
            iteration: 0,
        }
    }

    /// Draws `out.len()` (= `m`) distinct indices.
    pub(crate) fn sample(&mut self, rng: &mut SplitMix64, out: &mut [usize]) {
        debug_assert_eq!(out.len(), self.m);
        self.iteration += 1;
        if !self.prosac || self.n >= self.n_total {
            draw_distinct(rng, self.n_total, out, 0);
            return;
        }
        if self.iteration >= self.t_n_prime && self.n < self.n_total {
            let t_next = self.t_n * (self.n + 1) as f64 / (self.n + 1 - self.m) as f64;
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
pub(crate) fn draw_distinct(rng: &mut SplitMix64, n: usize, out: &mut [usize], from: usize) {
    let mut k = from;
    while k < out.len() {
        let v = rng.below(n);
        if !out[..k].contains(&v) {
            out[k] = v;
            k += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_distinct_and_in_range() {
        let mut rng = SplitMix64::new(1);
        for prosac in [false, true] {
            let mut s = Sampler::new(50, 5, prosac);
            let mut out = [0usize; 5];
            for _ in 0..2000 {
                s.sample(&mut rng, &mut out);
                assert!(out.iter().all(|&v| v < 50));
                let mut sorted = out;
                sorted.sort_unstable();
                assert!(sorted.windows(2).all(|w| w[0] < w[1]), "{out:?}");
            }
        }
    }

    #[test]
    fn prosac_starts_from_the_best_ranked() {
        let mut rng = SplitMix64::new(2);
        let mut s = Sampler::new(1000, 4, true);
        let mut out = [0usize; 4];
        for _ in 0..20 {
            s.sample(&mut rng, &mut out);
            assert!(out.iter().all(|&v| v < 40), "{out:?}");
        }
    }
}
