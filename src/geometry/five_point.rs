//! The 5-point minimal solver for the essential matrix (Nistér 2004, in Stewénius' Gröbner formulation of the
//! elimination step), written for speed: it runs thousands of times per frame inside RANSAC.
//!
//! Five correspondences `x_b ↔ x_a` (normalised, undistorted coordinates) give five linear epipolar
//! constraints `x_bᵀ E x_a = 0` on the nine entries of `E`, so `E = x·X + y·Y + z·Z + W` for a 4-dimensional
//! null space `X, Y, Z, W`. An essential matrix additionally satisfies the cubic constraints `det E = 0` and
//! `2·E·Eᵀ·E − tr(E·Eᵀ)·E = 0`: ten cubic equations in `(x, y, z)` over twenty monomials. Gauss-Jordan
//! elimination of that 10×20 system (monomials in Nistér's order) leaves six rows whose pairwise
//! combinations `⟨e⟩ − z⟨f⟩`, `⟨g⟩ − z⟨h⟩`, `⟨i⟩ − z⟨j⟩` are linear in `(x, y, 1)` with coefficients that are
//! polynomials in `z` of degree 3, 3 and 4. A common solution requires the 3×3 determinant of those
//! coefficients — a degree-10 polynomial in `z` — to vanish. Its real roots are isolated with a Sturm
//! sequence and polished by safeguarded Newton iterations; each root gives `(x, y)` as the null vector of the
//! 3×3 matrix and hence one `E`. At most ten real solutions exist.
//!
//! Why this formulation: it needs no eigen-decomposition (a 10×10 non-symmetric eigenproblem costs several
//! times more than the whole solve here), no heap allocation, and only fixed-size arrays, so it is both fast
//! and predictable. The null space is taken by Gauss-Jordan elimination of the 5×9 system with partial
//! pivoting rather than an SVD; a near-zero pivot marks a degenerate sample, which then yields no solution.
//!
//! This module solves one minimal problem; it knows nothing of RANSAC, pixels or cheirality (see
//! [`crate::geometry::essential`]).

// `!(x > y)` is deliberate throughout: it is true for NaN, which must take the rejecting branch.
#![allow(clippy::neg_cmp_op_on_partial_ord)]
// Fixed-size numeric kernels read best with explicit indices.
#![allow(clippy::needless_range_loop)]

use nalgebra::Matrix3;

/// Monomials of the cubic constraints, in Nistér's order:
/// `x³ y³ x²y xy² x²z x² y²z y² xyz xy | xz² xz x yz² yz y z³ z² z 1`.
const NUM_MONOMIALS: usize = 20;

/// Quadratic monomials: `xx xy xz yy yz zz x y z 1`. Linear: `x y z 1`.
/// `QUAD_TIMES_LIN[q][l]` is the cubic monomial index of quadratic `q` times linear `l`.
const QUAD_TIMES_LIN: [[usize; 4]; 10] = [
    [0, 2, 4, 5],     // xx
    [2, 3, 8, 9],     // xy
    [4, 8, 10, 11],   // xz
    [3, 1, 6, 7],     // yy
    [8, 6, 13, 14],   // yz
    [10, 13, 16, 17], // zz
    [5, 9, 11, 12],   // x
    [9, 7, 14, 15],   // y
    [11, 14, 17, 18], // z
    [12, 15, 18, 19], // 1
];

type Lin = [f64; 4];
type Quad = [f64; 10];
type Cubic = [f64; NUM_MONOMIALS];

#[inline(always)]
fn lin_mul(a: &Lin, b: &Lin) -> Quad {
    [
        a[0] * b[0],
        a[0] * b[1] + a[1] * b[0],
        a[0] * b[2] + a[2] * b[0],
        a[1] * b[1],
        a[1] * b[2] + a[2] * b[1],
        a[2] * b[2],
        a[0] * b[3] + a[3] * b[0],
        a[1] * b[3] + a[3] * b[1],
        a[2] * b[3] + a[3] * b[2],
        a[3] * b[3],
    ]
}

#[inline(always)]
fn quad_add(a: &Quad, b: &Quad, sb: f64) -> Quad {
    let mut r = *a;
    for i in 0..10 {
        r[i] += sb * b[i];
    }
    r
}

/// `acc += q · l`.
#[inline(always)]
fn cubic_acc(acc: &mut Cubic, q: &Quad, l: &Lin) {
    for (qi, row) in QUAD_TIMES_LIN.iter().enumerate() {
        let c = q[qi];
        for li in 0..4 {
            acc[row[li]] += c * l[li];
        }
    }
}

/// Solutions of one minimal problem (at most ten).
#[derive(Debug, Clone, Copy)]
pub struct EssentialSolutions {
    /// The essential matrices (Frobenius-normalised); only the first [`Self::len`] are valid.
    pub e: [Matrix3<f64>; 10],
    /// How many are valid.
    pub len: usize,
}

impl EssentialSolutions {
    /// The valid solutions.
    pub fn as_slice(&self) -> &[Matrix3<f64>] {
        &self.e[..self.len]
    }
}

/// Essential matrices consistent with five correspondences `x_b[i]ᵀ E x_a[i] = 0` (normalised image
/// coordinates, third coordinate 1). Returns no solution for a degenerate sample.
pub fn solve_five_point(x_a: &[[f64; 2]; 5], x_b: &[[f64; 2]; 5]) -> EssentialSolutions {
    let mut out = EssentialSolutions {
        e: [Matrix3::zeros(); 10],
        len: 0,
    };
    let Some(basis) = null_space(x_a, x_b) else {
        return out;
    };
    let Some(m) = constraint_matrix(&basis) else {
        return out;
    };
    // Rows e..j (indices 4..9) of the reduced system: each row r reads
    //   mono_r + Σ_{c≥10} m[r][c-10]·mono_c = 0.
    // Coefficients of x, y, 1 as polynomials in z (ascending powers).
    let split = |r: usize| -> ([f64; 3], [f64; 3], [f64; 4]) {
        let b = &m[r];
        (
            [b[2], b[1], b[0]],       // x, xz, xz²
            [b[5], b[4], b[3]],       // y, yz, yz²
            [b[9], b[8], b[7], b[6]], // 1, z, z², z³
        )
    };
    // ⟨p⟩ − z⟨q⟩ for a row p with leading monomial m·z and row q with leading monomial m.
    let combine = |p: usize, q: usize| -> ([f64; 4], [f64; 4], [f64; 5]) {
        let (px, py, pc) = split(p);
        let (qx, qy, qc) = split(q);
        let mut x = [0.0; 4];
        let mut y = [0.0; 4];
        let mut c = [0.0; 5];
        for i in 0..3 {
            x[i] += px[i];
            x[i + 1] -= qx[i];
            y[i] += py[i];
            y[i + 1] -= qy[i];
        }
        for i in 0..4 {
            c[i] += pc[i];
            c[i + 1] -= qc[i];
        }
        (x, y, c)
    };
    let k = combine(4, 5);
    let l = combine(6, 7);
    let n = combine(8, 9);

    // det [[kx ky kc],[lx ly lc],[nx ny nc]] as a degree-10 polynomial in z.
    let a = poly_sub(
        &poly_mul::<4, 5, 8>(&l.1, &n.2),
        &poly_mul::<5, 4, 8>(&l.2, &n.1),
    );
    let b = poly_sub(
        &poly_mul::<4, 5, 8>(&l.0, &n.2),
        &poly_mul::<5, 4, 8>(&l.2, &n.0),
    );
    let c = poly_sub(
        &poly_mul::<4, 4, 7>(&l.0, &n.1),
        &poly_mul::<4, 4, 7>(&l.1, &n.0),
    );
    let t1 = poly_mul::<4, 8, 11>(&k.0, &a);
    let t2 = poly_mul::<4, 8, 11>(&k.1, &b);
    let t3 = poly_mul::<5, 7, 11>(&k.2, &c);
    let mut det = [0.0; 11];
    for i in 0..11 {
        det[i] = t1[i] - t2[i] + t3[i];
    }

    let mut roots = [0.0; 10];
    let nroots = crate::geometry::sturm::real_roots(&det, &mut roots);
    let eval = |p: &[f64], z: f64| p.iter().rev().fold(0.0, |acc, &c| acc * z + c);
    for &z in &roots[..nroots] {
        let rk = [eval(&k.0, z), eval(&k.1, z), eval(&k.2, z)];
        let rl = [eval(&l.0, z), eval(&l.1, z), eval(&l.2, z)];
        let rn = [eval(&n.0, z), eval(&n.1, z), eval(&n.2, z)];
        // Null vector of the rank-2 matrix: the best-conditioned cross product of two rows.
        let cands = [cross(&rk, &rl), cross(&rk, &rn), cross(&rl, &rn)];
        let mut best = cands[0];
        let mut best_n = norm2(&best);
        for cnd in &cands[1..] {
            let nn = norm2(cnd);
            if nn > best_n {
                best = *cnd;
                best_n = nn;
            }
        }
        if !(best[2].abs() > 1e-14 * best_n.sqrt()) {
            continue;
        }
        let x = best[0] / best[2];
        let y = best[1] / best[2];
        let mut e = [0.0; 9];
        for i in 0..9 {
            e[i] = x * basis[0][i] + y * basis[1][i] + z * basis[2][i] + basis[3][i];
        }
        let norm = e.iter().map(|v| v * v).sum::<f64>().sqrt();
        if !(norm.is_finite() && norm > 0.0) {
            continue;
        }
        let em = Matrix3::from_row_slice(&e) / norm;
        out.e[out.len] = em;
        out.len += 1;
        if out.len == 10 {
            break;
        }
    }
    out
}

#[inline(always)]
fn cross(a: &[f64; 3], b: &[f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

#[inline(always)]
fn norm2(a: &[f64; 3]) -> f64 {
    a[0] * a[0] + a[1] * a[1] + a[2] * a[2]
}

#[inline(always)]
fn poly_mul<const A: usize, const B: usize, const C: usize>(
    a: &[f64; A],
    b: &[f64; B],
) -> [f64; C] {
    debug_assert_eq!(A + B - 1, C);
    let mut r = [0.0; C];
    for i in 0..A {
        for j in 0..B {
            r[i + j] += a[i] * b[j];
        }
    }
    r
}

#[inline(always)]
fn poly_sub<const N: usize>(a: &[f64; N], b: &[f64; N]) -> [f64; N] {
    let mut r = *a;
    for i in 0..N {
        r[i] -= b[i];
    }
    r
}

/// Four 9-vectors spanning the null space of the 5×9 epipolar constraint matrix (row-major `E`), by
/// Gauss-Jordan elimination with partial pivoting. `None` for a rank-deficient sample.
fn null_space(x_a: &[[f64; 2]; 5], x_b: &[[f64; 2]; 5]) -> Option<[[f64; 9]; 4]> {
    let mut q = [[0.0f64; 9]; 5];
    for i in 0..5 {
        let [u1, v1] = x_a[i];
        let [u2, v2] = x_b[i];
        q[i] = [u2 * u1, u2 * v1, u2, v2 * u1, v2 * v1, v2, u1, v1, 1.0];
    }
    let scale = q.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
    if !(scale.is_finite() && scale > 0.0) {
        return None;
    }
    for col in 0..5 {
        let mut piv = col;
        for r in col + 1..5 {
            if q[r][col].abs() > q[piv][col].abs() {
                piv = r;
            }
        }
        if !(q[piv][col].abs() > 1e-10 * scale) {
            return None;
        }
        q.swap(col, piv);
        let inv = 1.0 / q[col][col];
        for c in col..9 {
            q[col][c] *= inv;
        }
        for r in 0..5 {
            if r != col {
                let f = q[r][col];
                if f != 0.0 {
                    for c in col..9 {
                        q[r][c] -= f * q[col][c];
                    }
                }
            }
        }
    }
    // E[0..5] = −A·E[5..9] with A = q[:, 5..9]; free variables E[5..9].
    let mut basis = [[0.0; 9]; 4];
    for (k, b) in basis.iter_mut().enumerate() {
        for r in 0..5 {
            b[r] = -q[r][5 + k];
        }
        b[5 + k] = 1.0;
    }
    // Orthonormalise (modified Gram-Schmidt): the elimination basis is skewed, and a skewed basis makes the
    // degree-10 polynomial below badly conditioned (clustered, shifted roots).
    for k in 0..4 {
        for j in 0..k {
            let d: f64 = (0..9).map(|i| basis[k][i] * basis[j][i]).sum();
            for i in 0..9 {
                basis[k][i] -= d * basis[j][i];
            }
        }
        let n = basis[k].iter().map(|v| v * v).sum::<f64>().sqrt();
        if !(n > 1e-12) {
            return None;
        }
        for v in basis[k].iter_mut() {
            *v /= n;
        }
    }
    Some(basis)
}

/// The ten cubic constraints, reduced by Gauss-Jordan elimination: row `r` (0..10) is
/// `mono_r + Σ_c out[r][c]·mono_{10+c}`. `None` when the elimination breaks down.
fn constraint_matrix(basis: &[[f64; 9]; 4]) -> Option<[[f64; 10]; 10]> {
    // Entries of E as linear polynomials in (x, y, z, 1).
    let mut e: [Lin; 9] = [[0.0; 4]; 9];
    for (i, ei) in e.iter_mut().enumerate() {
        *ei = [basis[0][i], basis[1][i], basis[2][i], basis[3][i]];
    }
    let at = |r: usize, c: usize| &e[3 * r + c];

    let mut rows = [[0.0f64; NUM_MONOMIALS]; 10];
    // det(E) = e00(e11 e22 − e12 e21) − e01(e10 e22 − e12 e20) + e02(e10 e21 − e11 e20).
    {
        let m0 = quad_add(
            &lin_mul(at(1, 1), at(2, 2)),
            &lin_mul(at(1, 2), at(2, 1)),
            -1.0,
        );
        let m1 = quad_add(
            &lin_mul(at(1, 0), at(2, 2)),
            &lin_mul(at(1, 2), at(2, 0)),
            -1.0,
        );
        let m2 = quad_add(
            &lin_mul(at(1, 0), at(2, 1)),
            &lin_mul(at(1, 1), at(2, 0)),
            -1.0,
        );
        let r = &mut rows[9];
        cubic_acc(r, &m0, at(0, 0));
        let neg_m1 = m1.map(|v| -v);
        cubic_acc(r, &neg_m1, at(0, 1));
        cubic_acc(r, &m2, at(0, 2));
    }
    // N = 2·E·Eᵀ − tr(E·Eᵀ)·I (symmetric, quadratic entries); constraint (i, j) = Σ_k N_ik E_kj.
    let mut eet = [[0.0; 10]; 6]; // (0,0) (0,1) (0,2) (1,1) (1,2) (2,2)
    let pairs = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)];
    for (p, &(i, j)) in pairs.iter().enumerate() {
        let mut acc = [0.0; 10];
        for k in 0..3 {
            let prod = lin_mul(at(i, k), at(j, k));
            for t in 0..10 {
                acc[t] += prod[t];
            }
        }
        eet[p] = acc;
    }
    let mut trace = [0.0; 10];
    for t in 0..10 {
        trace[t] = eet[0][t] + eet[3][t] + eet[5][t];
    }
    let sym = |i: usize, j: usize| -> usize {
        let (a, b) = if i <= j { (i, j) } else { (j, i) };
        match (a, b) {
            (0, 0) => 0,
            (0, 1) => 1,
            (0, 2) => 2,
            (1, 1) => 3,
            (1, 2) => 4,
            _ => 5,
        }
    };
    let mut n = [[0.0; 10]; 9];
    for i in 0..3 {
        for k in 0..3 {
            let mut v = eet[sym(i, k)];
            for t in 0..10 {
                v[t] *= 2.0;
                if i == k {
                    v[t] -= trace[t];
                }
            }
            n[3 * i + k] = v;
        }
    }
    for i in 0..3 {
        for j in 0..3 {
            let r = &mut rows[3 * i + j];
            for k in 0..3 {
                cubic_acc(r, &n[3 * i + k], at(k, j));
            }
        }
    }

    // Gauss-Jordan on the first ten columns with partial pivoting.
    for col in 0..10 {
        let mut piv = col;
        let mut best = rows[col][col].abs();
        for (r, row) in rows.iter().enumerate().skip(col + 1) {
            if row[col].abs() > best {
                best = row[col].abs();
                piv = r;
            }
        }
        if !(best > 1e-300) || !best.is_finite() {
            return None;
        }
        rows.swap(col, piv);
        let inv = 1.0 / rows[col][col];
        for c in col..NUM_MONOMIALS {
            rows[col][c] *= inv;
        }
        let pivot_row = rows[col];
        for (r, row) in rows.iter_mut().enumerate() {
            if r != col {
                let f = row[col];
                if f != 0.0 {
                    for c in col..NUM_MONOMIALS {
                        row[c] -= f * pivot_row[c];
                    }
                }
            }
        }
    }
    let mut out = [[0.0; 10]; 10];
    for r in 0..10 {
        out[r].copy_from_slice(&rows[r][10..]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::{Rotation3, Vector3};

    fn skew(t: &Vector3<f64>) -> Matrix3<f64> {
        Matrix3::new(0.0, -t.z, t.y, t.z, 0.0, -t.x, -t.y, t.x, 0.0)
    }

    /// Deterministic pseudo-random numbers in [0, 1).
    fn lcg(state: &mut u64) -> f64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*state >> 11) as f64 / (1u64 << 53) as f64
    }

    #[test]
    fn recovers_exact_poses() {
        let mut s = 7u64;
        for case in 0..200 {
            let axis =
                Vector3::new(lcg(&mut s) - 0.5, lcg(&mut s) - 0.5, lcg(&mut s) - 0.5).normalize();
            let angle = (5.0 + 25.0 * lcg(&mut s)).to_radians();
            let r = Rotation3::from_axis_angle(&nalgebra::Unit::new_normalize(axis), angle)
                .into_inner();
            let t =
                Vector3::new(lcg(&mut s) - 0.5, lcg(&mut s) - 0.5, lcg(&mut s) - 0.5).normalize();
            let e_true = skew(&t) * r;
            let e_true = e_true / e_true.norm();
            let mut xa = [[0.0; 2]; 5];
            let mut xb = [[0.0; 2]; 5];
            for i in 0..5 {
                let p = Vector3::new(
                    2.0 * lcg(&mut s) - 1.0,
                    2.0 * lcg(&mut s) - 1.0,
                    2.0 + 6.0 * lcg(&mut s),
                );
                let q = r * p + t;
                xa[i] = [p.x / p.z, p.y / p.z];
                xb[i] = [q.x / q.z, q.y / q.z];
            }
            let sols = solve_five_point(&xa, &xb);
            assert!(sols.len >= 1, "case {case}: no solution");
            let best = sols
                .as_slice()
                .iter()
                .map(|e| (e - e_true).norm().min((e + e_true).norm()))
                .fold(f64::INFINITY, f64::min);
            assert!(best < 1e-8, "case {case}: closest solution off by {best}");
            // Every solution satisfies the epipolar and essential constraints.
            for e in sols.as_slice() {
                for i in 0..5 {
                    let r = Vector3::new(xb[i][0], xb[i][1], 1.0)
                        .dot(&(e * Vector3::new(xa[i][0], xa[i][1], 1.0)));
                    assert!(r.abs() < 1e-9, "case {case}: epipolar residual {r}");
                }
                let sv = e.svd(false, false).singular_values;
                let mut v = [sv[0], sv[1], sv[2]];
                v.sort_by(|a, b| b.total_cmp(a));
                assert!(
                    (v[0] - v[1]).abs() < 1e-6 && v[2] < 1e-6,
                    "case {case}: not essential {v:?}"
                );
            }
        }
    }

    #[test]
    fn degenerate_sample_has_no_solution() {
        let xa = [[0.1, 0.2]; 5];
        let xb = [[0.1, 0.2]; 5];
        assert_eq!(solve_five_point(&xa, &xb).len, 0);
    }
}
