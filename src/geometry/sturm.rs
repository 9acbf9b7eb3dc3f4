//! Real roots of a polynomial of degree ≤ 10 by Sturm sequences, for the 5-point solver.
//!
//! A Sturm sequence `p₀ = p, p₁ = p′, p_{k+1} = −rem(p_{k−1}, p_k)` counts the distinct real roots of `p` in
//! an interval `(a, b]` as the difference of sign changes of the sequence evaluated at `a` and `b`. Bisecting
//! from a Cauchy root bound isolates every root in its own interval; each is then polished by Newton steps
//! kept inside the bracket (bisection when Newton would leave it). Compared with the eigenvalues of the
//! companion matrix this needs no allocation and only a few hundred flops for the degree-10 polynomials of
//! the 5-point problem, and it returns only real roots, which is all that problem needs.
//!
//! Everything is fixed-size; the only failure mode is losing a root that is (numerically) a multiple root,
//! which for the 5-point problem means a degenerate configuration anyway.

// Fixed-size numeric kernels read best with explicit indices.
#![allow(clippy::needless_range_loop)]

const MAX_DEG: usize = 10;

/// Real roots of `Σ coeffs[i]·zⁱ` (ascending powers, degree ≤ 10) written to `out`, ascending; returns their
/// number.
pub fn real_roots(coeffs: &[f64; MAX_DEG + 1], out: &mut [f64; MAX_DEG]) -> usize {
    let scale = coeffs.iter().fold(0.0f64, |m, c| m.max(c.abs()));
    if !(scale.is_finite() && scale > 0.0) {
        return 0;
    }
    // Effective degree: drop negligible leading coefficients.
    let mut deg = MAX_DEG;
    while deg > 0 && coeffs[deg].abs() <= 1e-13 * scale {
        deg -= 1;
    }
    if deg == 0 {
        return 0;
    }
    // Monic copy.
    let mut p = [0.0; MAX_DEG + 1];
    let lead = coeffs[deg];
    for i in 0..=deg {
        p[i] = coeffs[i] / lead;
    }
    // Fujiwara's bound: every root lies in [−B, B] (much tighter than Cauchy's for unbalanced coefficients).
    let mut bound = 0.0f64;
    for k in 1..=deg {
        let c = if k == deg {
            p[0].abs() / 2.0
        } else {
            p[deg - k].abs()
        };
        bound = bound.max(c.powf(1.0 / k as f64));
    }
    let bound = 2.0 * bound * (1.0 + 1e-12) + 1e-300;

    let seq = SturmSeq::new(&p, deg);
    let mut n = 0;
    // Stack of intervals (lo, hi, changes(lo), changes(hi)).
    let mut stack = [(0.0, 0.0, 0u32, 0u32); 64];
    let mut sp = 0;
    let (lo, hi) = (-bound, bound);
    stack[sp] = (lo, hi, seq.sign_changes(lo), seq.sign_changes(hi));
    sp += 1;
    while sp > 0 {
        sp -= 1;
        let (a, b, ca, cb) = stack[sp];
        let count = ca.saturating_sub(cb);
        if count == 0 {
            continue;
        }
        let tiny = (b - a) <= 1e-12 * (1.0 + a.abs().max(b.abs()));
        if count == 1 || tiny {
            // A single root brackets a sign change of p; when rounding in the Sturm sequence says "one root"
            // without one, keep bisecting (the count there is not trustworthy).
            let (fa, fb) = (horner(&p, deg, a), horner(&p, deg, b));
            if tiny || fa == 0.0 || fb == 0.0 || (fa > 0.0) != (fb > 0.0) {
                if n < MAX_DEG {
                    out[n] = polish(&p, deg, a, b);
                    n += 1;
                }
                continue;
            }
        }
        let m = 0.5 * (a + b);
        let cm = seq.sign_changes(m);
        if sp + 2 > stack.len() {
            break;
        }
        // Push the right half first so roots come out ascending.
        stack[sp] = (m, b, cm, cb);
        stack[sp + 1] = (a, m, ca, cm);
        sp += 2;
    }
    out[..n].sort_by(f64::total_cmp);
    n
}

#[inline(always)]
fn horner(p: &[f64], deg: usize, x: f64) -> f64 {
    let mut v = p[deg];
    for i in (0..deg).rev() {
        v = v * x + p[i];
    }
    v
}

/// Value and derivative.
#[inline(always)]
fn horner_d(p: &[f64], deg: usize, x: f64) -> (f64, f64) {
    let mut v = p[deg];
    let mut d = 0.0;
    for i in (0..deg).rev() {
        d = d * x + v;
        v = v * x + p[i];
    }
    (v, d)
}

/// The root of `p` in `(a, b]`, known to be the only one there.
fn polish(p: &[f64; MAX_DEG + 1], deg: usize, mut a: f64, mut b: f64) -> f64 {
    let mut fa = horner(p, deg, a);
    let fb = horner(p, deg, b);
    if fa == 0.0 {
        return a;
    }
    if fb == 0.0 {
        return b;
    }
    if fa.signum() == fb.signum() {
        // No sign change: an (almost) double root; its best estimate is the midpoint.
        return 0.5 * (a + b);
    }
    let mut x = 0.5 * (a + b);
    for _ in 0..100 {
        let (f, d) = horner_d(p, deg, x);
        if f == 0.0 {
            return x;
        }
        if f.signum() == fa.signum() {
            a = x;
            fa = f;
        } else {
            b = x;
        }
        let newton = x - f / d;
        let next = if d != 0.0 && newton > a && newton < b {
            newton
        } else {
            0.5 * (a + b)
        };
        if (next - x).abs() <= 1e-15 * (1.0 + x.abs()) || (b - a) <= 1e-15 * (1.0 + x.abs()) {
            return next;
        }
        x = next;
    }
    x
}

/// A Sturm sequence stored as fixed arrays (ascending coefficients).
struct SturmSeq {
    polys: [[f64; MAX_DEG + 1]; MAX_DEG + 1],
    degs: [usize; MAX_DEG + 1],
    len: usize,
}

impl SturmSeq {
    fn new(p: &[f64; MAX_DEG + 1], deg: usize) -> Self {
        let mut s = SturmSeq {
            polys: [[0.0; MAX_DEG + 1]; MAX_DEG + 1],
            degs: [0; MAX_DEG + 1],
            len: 2,
        };
        s.polys[0] = *p;
        s.degs[0] = deg;
        for i in 1..=deg {
            s.polys[1][i - 1] = i as f64 * p[i];
        }
        s.degs[1] = deg - 1;
        while s.len <= MAX_DEG {
            let (da, db) = (s.degs[s.len - 2], s.degs[s.len - 1]);
            if db == 0 {
                break;
            }
            // Remainder of a / b.
            let mut r = s.polys[s.len - 2];
            let b = s.polys[s.len - 1];
            let lb = b[db];
            for k in (db..=da).rev() {
                let f = r[k] / lb;
                if f != 0.0 {
                    for j in 0..=db {
                        r[k - db + j] -= f * b[j];
                    }
                }
                r[k] = 0.0;
            }
            // Degree of the remainder (relative tolerance against the dividend's size).
            let size = s.polys[s.len - 2][..=da]
                .iter()
                .fold(0.0f64, |m, c| m.max(c.abs()));
            let mut dr = db - 1;
            while dr > 0 && r[dr].abs() <= 1e-14 * size {
                dr -= 1;
            }
            if r[dr].abs() <= 1e-14 * size {
                break; // zero remainder: p had a multiple root; the sequence ends here.
            }
            let mut next = [0.0; MAX_DEG + 1];
            for k in 0..=dr {
                next[k] = -r[k];
            }
            s.polys[s.len] = next;
            s.degs[s.len] = dr;
            s.len += 1;
            if dr == 0 {
                break;
            }
        }
        s
    }

    fn sign_changes(&self, x: f64) -> u32 {
        let mut changes = 0;
        let mut last = 0.0f64;
        for k in 0..self.len {
            let v = horner(&self.polys[k], self.degs[k], x);
            if v != 0.0 {
                if last != 0.0 && (v > 0.0) != (last > 0.0) {
                    changes += 1;
                }
                last = v;
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_roots(roots: &[f64]) -> [f64; 11] {
        let mut p = [0.0; 11];
        p[0] = 1.0;
        for (k, &r) in roots.iter().enumerate() {
            for i in (1..=k + 1).rev() {
                p[i] = p[i - 1] - r * p[i];
            }
            p[0] *= -r;
        }
        p
    }

    #[test]
    fn finds_all_real_roots() {
        let roots = [-7.5, -2.0, -0.3, 0.01, 0.5, 1.0, 3.0, 40.0];
        let mut p = from_roots(&roots);
        // Multiply by (z² + 1): two complex roots that must not be reported.
        let mut q = [0.0; 11];
        for i in 0..11 {
            q[i] += p[i];
            if i >= 2 {
                q[i] += p[i - 2];
            }
        }
        p = q;
        let mut out = [0.0; 10];
        let n = real_roots(&p, &mut out);
        assert_eq!(n, roots.len(), "{:?}", &out[..n]);
        for (a, b) in out[..n].iter().zip(roots) {
            assert!((a - b).abs() < 1e-9 * (1.0 + b.abs()), "{a} vs {b}");
        }
        // Constant and all-zero polynomials have no roots.
        let mut c = [0.0; 11];
        assert_eq!(real_roots(&c, &mut out), 0);
        c[0] = 3.0;
        assert_eq!(real_roots(&c, &mut out), 0);
    }
}
