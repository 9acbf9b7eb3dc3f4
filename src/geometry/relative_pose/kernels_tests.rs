//! Tests of the scoring kernels: the batched verification, normal equations and cost sums against the
//! one-at-a-time loops and sums they replace.

use super::*;
use crate::util::rng::SplitMix64;

/// Random correspondences (normalised coordinates) and an essential-like matrix; about half of the
/// points lie near the epipolar geometry of `e`, so verification sees both kinds.
fn data(n: usize, seed: u64) -> ([f64; 9], [Vec<f64>; 5]) {
    let mut g = SplitMix64::new(seed);
    // E = [t]x with t = (0.3, 0.1, 1): x_bᵀ E x_a = 0 for x_b on the line through x_a and the epipole
    let e = [0.0, -1.0, 0.1, 1.0, 0.0, -0.3, -0.1, 0.3, 0.0];
    let mut cols: [Vec<f64>; 5] = Default::default();
    for _ in 0..n {
        let (xa, ya) = (g.uniform() - 0.5, g.uniform() - 0.5);
        let (xb, yb) = if g.uniform() < 0.5 {
            // on the epipolar line of (xa, ya) (a point between it and the epipole), plus noise
            let s = g.uniform();
            (
                xa + s * (0.3 - xa) + 1e-3 * (g.uniform() - 0.5),
                ya + s * (0.1 - ya) + 1e-3 * (g.uniform() - 0.5),
            )
        } else {
            (g.uniform() - 0.5, g.uniform() - 0.5)
        };
        for (c, v) in cols
            .iter_mut()
            .zip([xa, ya, xb, yb, 0.2 + 2.0 * g.uniform()])
        {
            c.push(v);
        }
    }
    (e, cols)
}

fn weights() -> PixelWeights {
    PixelWeights::new(500.0, 520.0, 480.0, 510.0)
}

/// The one-at-a-time loops the kernels replace.
fn reference_sampson_sq(e: &[f64; 9], w: &PixelWeights, p: [f64; 4]) -> (f64, f64) {
    let [xa, ya, xb, yb] = p;
    let a = e[0] * xa + e[1] * ya + e[2];
    let b = e[3] * xa + e[4] * ya + e[5];
    let c = e[6] * xa + e[7] * ya + e[8];
    let r = xb * a + yb * b + c;
    let d = e[0] * xb + e[3] * yb + e[6];
    let f = e[1] * xb + e[4] * yb + e[7];
    (
        r * r,
        w.wb_x * a * a + w.wb_y * b * b + w.wa_x * d * d + w.wa_y * f * f,
    )
}

#[test]
fn verification_scoring_and_inliers_equal_the_one_at_a_time_loops() {
    let w = weights();
    for (n, seed, weighted) in [
        (1, 1, false),
        (7, 2, true),
        (8, 3, false),
        (203, 4, true),
        (1000, 5, false),
    ] {
        let (e, [xa, ya, xb, yb, wt]) = data(n, seed);
        let weight = if weighted { wt.clone() } else { Vec::new() };
        let p = Soa {
            xa: &xa,
            ya: &ya,
            xb: &xb,
            yb: &yb,
            weight: &weight,
        };
        let wi = |i: usize| if weighted { wt[i] } else { 1.0 };
        let thr_sq = 1.0;
        // score and inliers
        let mut score = 0.0;
        let mut inl = Vec::new();
        for i in 0..n {
            let (r2, den) = reference_sampson_sq(&e, &w, [xa[i], ya[i], xb[i], yb[i]]);
            let s2 = if den > 0.0 { r2 / den } else { f64::INFINITY };
            if s2 < thr_sq {
                inl.push(i as u32);
                score += wi(i) * s2;
            } else {
                score += wi(i) * thr_sq;
            }
        }
        assert_eq!(
            super::score(&e, &w, &p, thr_sq),
            (score, inl.len()),
            "n {n}"
        );
        assert_eq!(super::inliers(&e, &w, &p, thr_sq), inl, "n {n}");
        // verification with several SPRT thresholds and score bars
        for (log_a, best) in [
            (2.0, f64::INFINITY),
            (50.0, f64::INFINITY),
            (1e9, 0.3 * n as f64),
            (1e9, f64::INFINITY),
        ] {
            let sprt = SprtTest {
                log_a,
                log_in: -0.5,
                log_out: 0.4,
            };
            let mut expected = None;
            let (mut ll, mut sc, mut k_in) = (0.0, 0.0, 0);
            for i in 0..n {
                let (r2, den) = reference_sampson_sq(&e, &w, [xa[i], ya[i], xb[i], yb[i]]);
                if r2 < thr_sq * den {
                    k_in += 1;
                    sc += wi(i) * r2 / den;
                    ll += sprt.log_in;
                } else {
                    sc += wi(i) * thr_sq;
                    ll += sprt.log_out;
                    if ll > sprt.log_a || sc > best {
                        expected = Some(Verification::Rejected {
                            tested: i + 1,
                            inliers: k_in,
                        });
                        break;
                    }
                }
            }
            let expected = expected.unwrap_or(Verification::Accepted {
                score: sc,
                inliers: k_in,
            });
            assert_eq!(
                super::verify(&e, &w, &p, thr_sq, &sprt, best),
                expected,
                "n {n} log_a {log_a}"
            );
        }
    }
}

#[test]
fn normal_equations_and_cost_sum_the_points_they_are_given() {
    let w = weights();
    let (e, [xa, ya, xb, yb, wt]) = data(61, 9);
    let sqrt_w: Vec<f64> = wt.iter().map(|v| v.sqrt()).collect();
    let p = Soa {
        xa: &xa,
        ya: &ya,
        xb: &xb,
        yb: &yb,
        weight: &[],
    };
    let de: [[f64; 9]; 5] =
        std::array::from_fn(|k| std::array::from_fn(|m| ((k * 9 + m) as f64 * 0.37).sin()));
    // every other point, then sum of single-point systems: the batched sums agree to rounding
    let idx: Vec<u32> = (0..61).step_by(2).collect();
    for c2 in [None, Some(2.0)] {
        let (h, g, cost) = normal_equations(&e, &de, &w, &p, &sqrt_w, &idx, c2);
        let (mut h1, mut g1) = ([0.0; 15], [0.0; 5]);
        let mut cost1 = CostSum::new(c2);
        for &i in &idx {
            let (hi, gi, ci) = normal_equations(&e, &de, &w, &p, &sqrt_w, &[i], None);
            // ρ' of this point from its plain squared residual
            let rho = c2.map_or(1.0, |c2| 1.0 / (1.0 + ci / c2));
            h1.iter_mut().zip(hi).for_each(|(a, b)| *a += rho * b);
            g1.iter_mut().zip(gi).for_each(|(a, b)| *a += rho * b);
            cost1.push(ci);
        }
        for (a, b) in h.iter().zip(&h1).chain(g.iter().zip(&g1)) {
            assert!((a - b).abs() <= 1e-9 * (1.0 + b.abs()), "{a} vs {b}");
        }
        assert!((cost - cost1.total()).abs() <= 1e-9 * (1.0 + cost.abs()));
        assert!(
            (super::cost(&e, &w, &p, &sqrt_w, &idx, c2) - cost).abs() <= 1e-9 * (1.0 + cost.abs())
        );
    }
    // a point with a zero Sampson denominator contributes nothing (and no NaN)
    let zero = [0.0; 9];
    let (h, g, cost) = normal_equations(&zero, &de, &w, &p, &sqrt_w, &idx, Some(1.0));
    assert!(h.iter().chain(&g).all(|v| *v == 0.0) && cost == 0.0);
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
