//! The P3P minimal solver: the camera poses that put three known world points on three bearing rays.
//!
//! Formulation (Persson & Nordberg 2018, "Lambda Twist", the solver PoseLib uses): the unknown depths
//! `λ = (λ₁, λ₂, λ₃)` along the unit bearings `yᵢ` satisfy three quadrics `λᵢ² + λⱼ² − 2·bᵢⱼ·λᵢλⱼ = aᵢⱼ`
//! (`bᵢⱼ = yᵢ·yⱼ`, `aᵢⱼ = |Xᵢ − Xⱼ|²`). Two homogeneous combinations `D₁ = a₂₃M₁₂ − a₁₂M₂₃` and
//! `D₂ = a₂₃M₁₃ − a₁₃M₂₃` share the solutions; a root `γ` of the cubic `det(D₁ + γD₂) = 0` makes
//! `D₀ = D₁ + γD₂` a degenerate conic, which factors into two lines through the origin. On each line the
//! remaining homogeneous quadric is a quadratic in one ratio, and one original equation fixes the scale. A
//! few Gauss–Newton steps on the three equations polish the depths; the pose follows from the three
//! camera-frame points `λᵢyᵢ` and the world points by aligning two orthonormal frames.
//!
//! Why this solver: it needs no quartic (Grunert, Kneip) — one cubic and two small eigen-problems — and it
//! is numerically the most stable of the published P3P solvers. Up to four poses per sample.
//!
//! Not here: sampling, scoring or refinement ([`super::estimator`], [`super::lm`]).

// `!(x > y)` is deliberate: it is true for NaN, which must take the rejecting branch.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use nalgebra::{Matrix3, SymmetricEigen, Vector3};

/// A camera pose `x_cam = R·X + t`.
pub(crate) type CameraFromWorld = (Matrix3<f64>, Vector3<f64>);

/// Poses that map the world points `x[i]` onto the rays of the unit bearings `y[i]` (in front of the
/// camera), appended to `out` (at most four). Degenerate samples (collinear points, parallel rays) give none.
pub(crate) fn p3p(y: &[Vector3<f64>; 3], x: &[Vector3<f64>; 3], out: &mut Vec<CameraFromWorld>) {
    let b12 = y[0].dot(&y[1]);
    let b13 = y[0].dot(&y[2]);
    let b23 = y[1].dot(&y[2]);
    let a12 = (x[0] - x[1]).norm_squared();
    let a13 = (x[0] - x[2]).norm_squared();
    let a23 = (x[1] - x[2]).norm_squared();
    let scale = a12.max(a13).max(a23);
    if !(scale > 0.0) || !scale.is_finite() {
        return;
    }
    // collinear world points: no unique pose
    let cross = (x[1] - x[0]).cross(&(x[2] - x[0])).norm_squared();
    if cross <= 1e-12 * scale * scale {
        return;
    }
    let m12 = Matrix3::new(1.0, -b12, 0.0, -b12, 1.0, 0.0, 0.0, 0.0, 0.0);
    let m13 = Matrix3::new(1.0, 0.0, -b13, 0.0, 0.0, 0.0, -b13, 0.0, 1.0);
    let m23 = Matrix3::new(0.0, 0.0, 0.0, 0.0, 1.0, -b23, 0.0, -b23, 1.0);
    let d1 = (m12 * a23 - m23 * a12) / scale;
    let d2 = (m13 * a23 - m23 * a13) / scale;
    let Some(d0) = degenerate_member(&d1, &d2) else {
        return;
    };
    let eig = SymmetricEigen::new(d0);
    // order by |σ|: the smallest is the (numerical) zero of the degenerate conic
    let mut order = [0usize, 1, 2];
    order.sort_by(|&i, &j| {
        eig.eigenvalues[j]
            .abs()
            .total_cmp(&eig.eigenvalues[i].abs())
    });
    let (s1, s2) = (eig.eigenvalues[order[0]], eig.eigenvalues[order[1]]);
    let e1: Vector3<f64> = eig.eigenvectors.column(order[0]).into();
    let e2: Vector3<f64> = eig.eigenvectors.column(order[1]).into();
    let e3: Vector3<f64> = eig.eigenvectors.column(order[2]).into();
    let eqs = Equations {
        b: [b12, b13, b23],
        a: [a12, a13, a23],
        m: [m12, m13, m23],
    };
    let mut depths: Vec<Vector3<f64>> = Vec::with_capacity(4);
    if s1 * s2 > 0.0 {
        // a point conic: the only solution direction is e3
        eqs.push_scaled(&e3, &mut depths);
    } else {
        let s = (-s2 / s1).sqrt();
        for p in [e1 - e2 * s, e1 + e2 * s] {
            let v = p.cross(&e3);
            let n = v.norm();
            if !(n > 1e-12) {
                continue;
            }
            line_solutions(&e3, &(v / n), &d1, &d2, &eqs, &mut depths);
        }
    }
    for mut lambda in depths {
        eqs.polish(&mut lambda);
        if lambda.iter().all(|&l| l > 0.0 && l.is_finite()) {
            if let Some(pose) = align(y, x, &lambda) {
                out.push(pose);
            }
        }
    }
}

/// The three depth equations `λᵀ Mₖ λ = aₖ` (k = 12, 13, 23).
struct Equations {
    b: [f64; 3],
    a: [f64; 3],
    m: [Matrix3<f64>; 3],
}

impl Equations {
    /// The depths `±s·w` that satisfy the best-conditioned equation, if positive.
    fn push_scaled(&self, w: &Vector3<f64>, out: &mut Vec<Vector3<f64>>) {
        let (k, den) = (0..3)
            .map(|k| (k, (w.transpose() * self.m[k] * w)[0]))
            .max_by(|p, q| p.1.total_cmp(&q.1))
            .unwrap_or((0, 0.0));
        if !(den > 0.0) {
            return;
        }
        let s = (self.a[k] / den).sqrt();
        let lambda = if w.sum() >= 0.0 { w * s } else { -w * s };
        if lambda.iter().all(|&l| l > 0.0) {
            out.push(lambda);
        }
    }

    /// Gauss–Newton on the three equations (a few steps; stops when the residual stops falling).
    fn polish(&self, lambda: &mut Vector3<f64>) {
        let [b12, b13, b23] = self.b;
        let [a12, a13, a23] = self.a;
        let residual = |l: &Vector3<f64>| {
            Vector3::new(
                l[0] * l[0] + l[1] * l[1] - 2.0 * b12 * l[0] * l[1] - a12,
                l[0] * l[0] + l[2] * l[2] - 2.0 * b13 * l[0] * l[2] - a13,
                l[1] * l[1] + l[2] * l[2] - 2.0 * b23 * l[1] * l[2] - a23,
            )
        };
        let mut r = residual(lambda);
        for _ in 0..5 {
            let l = *lambda;
            let j = Matrix3::new(
                2.0 * (l[0] - b12 * l[1]),
                2.0 * (l[1] - b12 * l[0]),
                0.0,
                2.0 * (l[0] - b13 * l[2]),
                0.0,
                2.0 * (l[2] - b13 * l[0]),
                0.0,
                2.0 * (l[1] - b23 * l[2]),
                2.0 * (l[2] - b23 * l[1]),
            );
            let Some(step) = j.lu().solve(&r) else {
                return;
            };
            let next = l - step;
            let rn = residual(&next);
            if !(rn.norm_squared() < r.norm_squared()) {
                return;
            }
            *lambda = next;
            r = rn;
        }
    }
}

/// A degenerate member `D₁ + γ·D₂` of the pencil (or `D₂` itself when the cubic has no finite root that
/// does better): of the cubic's real roots, the one whose matrix is closest to rank 2.
fn degenerate_member(d1: &Matrix3<f64>, d2: &Matrix3<f64>) -> Option<Matrix3<f64>> {
    let det3 = |c0: &Vector3<f64>, c1: &Vector3<f64>, c2: &Vector3<f64>| c0.dot(&c1.cross(c2));
    let col = |m: &Matrix3<f64>, j: usize| -> Vector3<f64> { m.column(j).into() };
    let (a0, a1, a2) = (col(d1, 0), col(d1, 1), col(d1, 2));
    let (b0, b1, b2) = (col(d2, 0), col(d2, 1), col(d2, 2));
    // det(D1 + γ D2) = c0 + c1 γ + c2 γ² + c3 γ³ (multilinear in the columns)
    let c0 = det3(&a0, &a1, &a2);
    let c1 = det3(&b0, &a1, &a2) + det3(&a0, &b1, &a2) + det3(&a0, &a1, &b2);
    let c2 = det3(&a0, &b1, &b2) + det3(&b0, &a1, &b2) + det3(&b0, &b1, &a2);
    let c3 = det3(&b0, &b1, &b2);
    let rank2_defect = |m: &Matrix3<f64>| {
        let ev = m.symmetric_eigenvalues();
        let mut a = [ev[0].abs(), ev[1].abs(), ev[2].abs()];
        a.sort_by(f64::total_cmp);
        if a[2] > 0.0 {
            a[0] / a[2]
        } else {
            f64::INFINITY
        }
    };
    let mut best: Option<(f64, Matrix3<f64>)> = Some((rank2_defect(d2), *d2));
    for g in real_roots_cubic(c3, c2, c1, c0) {
        let m = d1 + d2 * g;
        let defect = rank2_defect(&m);
        if best.as_ref().is_none_or(|b| defect < b.0) {
            best = Some((defect, m));
        }
    }
    best.filter(|b| b.0 < 1e-3).map(|b| b.1)
}

/// The solutions on the line `λ = α·u + β·v` of the homogeneous quadric `D₁` or `D₂` (whichever is better
/// conditioned on it), scaled by one original equation.
fn line_solutions(
    u: &Vector3<f64>,
    v: &Vector3<f64>,
    d1: &Matrix3<f64>,
    d2: &Matrix3<f64>,
    eqs: &Equations,
    out: &mut Vec<Vector3<f64>>,
) {
    let coeffs = |q: &Matrix3<f64>| {
        let qu = q * u;
        let qv = q * v;
        (u.dot(&qu), u.dot(&qv), v.dot(&qv))
    };
    let c1 = coeffs(d1);
    let c2 = coeffs(d2);
    let norm = |c: &(f64, f64, f64)| c.0.abs() + c.1.abs() + c.2.abs();
    let (qa, qb, qc) = if norm(&c1) >= norm(&c2) { c1 } else { c2 };
    let mut disc = qb * qb - qa * qc;
    let tol = 1e-12 * (qb * qb + (qa * qc).abs());
    if disc < 0.0 {
        if disc > -tol {
            disc = 0.0;
        } else {
            return;
        }
    }
    let sq = disc.sqrt();
    let roots = [-qb + sq, -qb - sq];
    for r in roots {
        let w = if qa.abs() >= qc.abs() {
            if qa == 0.0 {
                continue;
            }
            u * (r / qa) + v
        } else {
            u + v * (r / qc)
        };
        eqs.push_scaled(&w, out);
        if sq == 0.0 {
            break;
        }
    }
}

/// The pose aligning the camera-frame points `λᵢ·yᵢ` with the world points `xᵢ`: two orthonormal frames
/// built the same way from both triangles, `R = F_cam·F_worldᵀ`, `t` from the centroids.
fn align(
    y: &[Vector3<f64>; 3],
    x: &[Vector3<f64>; 3],
    lambda: &Vector3<f64>,
) -> Option<CameraFromWorld> {
    let c = [y[0] * lambda[0], y[1] * lambda[1], y[2] * lambda[2]];
    let frame = |p: &[Vector3<f64>; 3]| -> Option<Matrix3<f64>> {
        let e1 = (p[1] - p[0]).try_normalize(1e-15)?;
        let e3 = (p[1] - p[0]).cross(&(p[2] - p[0])).try_normalize(1e-15)?;
        let e2 = e3.cross(&e1);
        Some(Matrix3::from_columns(&[e1, e2, e3]))
    };
    let fc = frame(&c)?;
    let fw = frame(x)?;
    let r = fc * fw.transpose();
    let mc = (c[0] + c[1] + c[2]) / 3.0;
    let mw = (x[0] + x[1] + x[2]) / 3.0;
    let t = mc - r * mw;
    Some((r, t))
}

/// Real roots of `c3·x³ + c2·x² + c1·x + c0` (degree drops when leading coefficients vanish), each polished
/// by Newton steps.
fn real_roots_cubic(c3: f64, c2: f64, c1: f64, c0: f64) -> Vec<f64> {
    let scale = c3.abs().max(c2.abs()).max(c1.abs()).max(c0.abs());
    if !(scale > 0.0) || !scale.is_finite() {
        return Vec::new();
    }
    let mut roots = Vec::with_capacity(3);
    if c3.abs() <= 1e-12 * scale {
        // quadratic (or linear)
        if c2.abs() <= 1e-12 * scale {
            if c1 != 0.0 {
                roots.push(-c0 / c1);
            }
        } else {
            let disc = c1 * c1 - 4.0 * c2 * c0;
            if disc >= 0.0 {
                let q = -0.5 * (c1 + c1.signum() * disc.sqrt());
                if q != 0.0 {
                    roots.push(q / c2);
                    roots.push(c0 / q);
                } else {
                    roots.push(0.0);
                }
            }
        }
        return roots;
    }
    // monic x³ + a x² + b x + c, depressed t³ + p t + q with x = t − a/3
    let (a, b, c) = (c2 / c3, c1 / c3, c0 / c3);
    let p = b - a * a / 3.0;
    let q = 2.0 * a * a * a / 27.0 - a * b / 3.0 + c;
    let shift = -a / 3.0;
    let disc = q * q / 4.0 + p * p * p / 27.0;
    if disc > 0.0 {
        let s = disc.sqrt();
        let t = (-q / 2.0 + s).cbrt() + (-q / 2.0 - s).cbrt();
        roots.push(t + shift);
    } else if p == 0.0 {
        roots.push(shift);
    } else {
        let m = 2.0 * (-p / 3.0).sqrt();
        let theta = ((3.0 * q) / (p * m)).clamp(-1.0, 1.0).acos() / 3.0;
        for k in 0..3 {
            roots.push(m * (theta - 2.0 * std::f64::consts::PI * k as f64 / 3.0).cos() + shift);
        }
    }
    for x in &mut roots {
        for _ in 0..2 {
            let f = ((c3 * *x + c2) * *x + c1) * *x + c0;
            let df = (3.0 * c3 * *x + 2.0 * c2) * *x + c1;
            if df != 0.0 {
                let next = *x - f / df;
                if next.is_finite() {
                    *x = next;
                }
            }
        }
    }
    roots
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::rng::SplitMix64;
    use nalgebra::Rotation3;

    type Problem = (
        Matrix3<f64>,
        Vector3<f64>,
        [Vector3<f64>; 3],
        [Vector3<f64>; 3],
    );

    fn random_problem(rng: &mut SplitMix64) -> Problem {
        let r = Rotation3::new(rng.unit_vector() * rng.range(0.0, 3.0)).into_inner();
        let t = Vector3::new(
            rng.range(-2.0, 2.0),
            rng.range(-2.0, 2.0),
            rng.range(-2.0, 2.0),
        );
        let mut x = [Vector3::zeros(); 3];
        let mut y = [Vector3::zeros(); 3];
        for i in 0..3 {
            // a camera-frame point in front, mapped back to the world
            let c = Vector3::new(
                rng.range(-1.0, 1.0),
                rng.range(-1.0, 1.0),
                rng.range(1.0, 6.0),
            );
            x[i] = r.transpose() * (c - t);
            y[i] = c.normalize();
        }
        (r, t, x, y)
    }

    #[test]
    fn recovers_the_true_pose_among_its_solutions() {
        let mut rng = SplitMix64::new(7);
        let mut worst: f64 = 0.0;
        for _ in 0..2000 {
            let (r, t, x, y) = random_problem(&mut rng);
            let mut out = Vec::new();
            p3p(&y, &x, &mut out);
            assert!(out.len() <= 4);
            let err = out
                .iter()
                .map(|(rr, tt)| (rr - r).norm() + (tt - t).norm())
                .fold(f64::INFINITY, f64::min);
            worst = worst.max(err);
        }
        assert!(worst < 1e-6, "worst pose error {worst}");
    }

    #[test]
    fn every_solution_reprojects_the_sample() {
        let mut rng = SplitMix64::new(11);
        for _ in 0..500 {
            let (_, _, x, y) = random_problem(&mut rng);
            let mut out = Vec::new();
            p3p(&y, &x, &mut out);
            for (r, t) in &out {
                assert!((r.transpose() * r - Matrix3::identity()).norm() < 1e-9);
                assert!((r.determinant() - 1.0).abs() < 1e-9);
                for i in 0..3 {
                    let c = r * x[i] + t;
                    assert!(c[2] > 0.0);
                    assert!((c.normalize() - y[i]).norm() < 1e-6);
                }
            }
        }
    }

    #[test]
    fn collinear_world_points_give_no_pose() {
        let x = [
            Vector3::new(0.0, 0.0, 3.0),
            Vector3::new(1.0, 0.0, 3.0),
            Vector3::new(2.0, 0.0, 3.0),
        ];
        let y = x.map(|p| p.normalize());
        let mut out = Vec::new();
        p3p(&y, &x, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn cubic_roots() {
        // (x − 1)(x + 2)(x − 3) = x³ − 2x² − 5x + 6
        let mut r = real_roots_cubic(1.0, -2.0, -5.0, 6.0);
        r.sort_by(f64::total_cmp);
        assert!(
            (r[0] + 2.0).abs() < 1e-12 && (r[1] - 1.0).abs() < 1e-12 && (r[2] - 3.0).abs() < 1e-12
        );
        // one real root: x³ + x + 1
        let r = real_roots_cubic(1.0, 0.0, 1.0, 1.0);
        assert_eq!(r.len(), 1);
        assert!((r[0] * r[0] * r[0] + r[0] + 1.0).abs() < 1e-12);
    }
}
