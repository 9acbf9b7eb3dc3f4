//! The crate's one seeded random generator: SplitMix64 from `rand_xoshiro` (a fixed, documented output
//! sequence, so a seed reproduces a run across versions of this crate and of `rand`), with the few draws the
//! solvers and synthetic benchmarks need. Solvers sample with [`SplitMix64::below`] (multiply-shift, no
//! rejection loop); Gaussian draws use Box–Muller on two uniforms.

use nalgebra::Vector3;
use rand::{RngCore, SeedableRng};

/// Seeded SplitMix64 generator.
#[derive(Debug, Clone)]
pub struct SplitMix64(rand_xoshiro::SplitMix64);

impl SplitMix64 {
    /// A generator whose state is `seed`.
    pub fn new(seed: u64) -> Self {
        Self(rand_xoshiro::SplitMix64::seed_from_u64(seed))
    }
    /// Next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in `0..n` (`n > 0`), by multiply-shift (bias < n/2⁶⁴).
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    /// Uniform unit vector (rejection from the cube).
    pub fn unit_vector(&mut self) -> Vector3<f64> {
        loop {
            let v = Vector3::new(
                self.range(-1.0, 1.0),
                self.range(-1.0, 1.0),
                self.range(-1.0, 1.0),
            );
            let n = v.norm();
            if n > 1e-3 && n <= 1.0 {
                return v / n;
            }
        }
    }
    /// Shuffles `v` in place (Fisher–Yates with [`Self::below`]).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproduces_the_reference_splitmix64_sequence() {
        // Vigna's splitmix64.c with state 0: the first outputs
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        let mut r = SplitMix64::new(7);
        let v: Vec<usize> = (0..1000).map(|_| r.below(10)).collect();
        assert!(v.iter().all(|&x| x < 10));
        assert!((0..10).all(|k| v.contains(&k)));
    }

    #[test]
    fn normal_draws_have_unit_variance() {
        let mut r = SplitMix64::new(3);
        let x: Vec<f64> = (0..20_000).map(|_| r.normal()).collect();
        let mean = x.iter().sum::<f64>() / x.len() as f64;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / x.len() as f64;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }
}
