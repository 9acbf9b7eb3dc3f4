//! Direct linear transformation for the homography `x_b ∝ H·x_a` in normalised camera coordinates: the
//! minimal 4-point solve (`h₃₃ = 1`, an 8×8 linear system) for sampling, and the least-squares fit on many
//! points (Hartley normalisation, smallest eigenvector of `AᵀA`) for local optimisation. Also the oriented
//! sample test: a homography induced by a plane in front of both cameras preserves the orientation of
//! every triangle of the sample, so samples whose orientations flip are rejected before solving.

use nalgebra::{Matrix3, SMatrix, SVector, SymmetricEigen, Vector3};

/// Sign of the triangle `(p, q, r)`'s orientation.
fn orientation(p: [f64; 2], q: [f64; 2], r: [f64; 2]) -> f64 {
    (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])
}

/// Whether the four correspondences can come from a plane in front of both cameras: no three points
/// (nearly) collinear in either image, and every triangle keeps its orientation from a to b.
pub(crate) fn oriented_sample(a: &[[f64; 2]; 4], b: &[[f64; 2]; 4]) -> bool {
    const TRIPLES: [[usize; 3]; 4] = [[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]];
    TRIPLES.iter().all(|&[i, j, k]| {
        let oa = orientation(a[i], a[j], a[k]);
        let ob = orientation(b[i], b[j], b[k]);
        oa * ob > 1e-12
    })
}

/// The homography through four correspondences, `None` when the system is singular.
pub(crate) fn homography_4pt(a: &[[f64; 2]; 4], b: &[[f64; 2]; 4]) -> Option<Matrix3<f64>> {
    let mut m = SMatrix::<f64, 8, 8>::zeros();
    let mut rhs = SVector::<f64, 8>::zeros();
    for k in 0..4 {
        let [x, y] = a[k];
        let [u, v] = b[k];
        let r0 = 2 * k;
        let r1 = r0 + 1;
        m[(r0, 0)] = x;
        m[(r0, 1)] = y;
        m[(r0, 2)] = 1.0;
        m[(r0, 6)] = -u * x;
        m[(r0, 7)] = -u * y;
        rhs[r0] = u;
        m[(r1, 3)] = x;
        m[(r1, 4)] = y;
        m[(r1, 5)] = 1.0;
        m[(r1, 6)] = -v * x;
        m[(r1, 7)] = -v * y;
        rhs[r1] = v;
    }
    let h = m.lu().solve(&rhs)?;
    let out = Matrix3::new(h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], 1.0);
    out.iter().all(|v| v.is_finite()).then_some(out)
}

/// Similarity that moves the points' centroid to the origin and their mean distance to √2 (Hartley).
fn normalising_transform(p: impl Iterator<Item = [f64; 2]> + Clone) -> Matrix3<f64> {
    let (mut cx, mut cy, mut n) = (0.0, 0.0, 0.0);
    for q in p.clone() {
        cx += q[0];
        cy += q[1];
        n += 1.0;
    }
    cx /= n;
    cy /= n;
    let mean_d = p
        .map(|q| ((q[0] - cx).powi(2) + (q[1] - cy).powi(2)).sqrt())
        .sum::<f64>()
        / n;
    let s = if mean_d > 1e-12 {
        std::f64::consts::SQRT_2 / mean_d
    } else {
        1.0
    };
    Matrix3::new(s, 0.0, -s * cx, 0.0, s, -s * cy, 0.0, 0.0, 1.0)
}

/// Least-squares homography on ≥ 4 correspondences (algebraic error after Hartley normalisation),
/// normalised to `‖H‖ = 1` with `h₃₃ ≥ 0`; `None` when degenerate.
pub(crate) fn homography_dlt(a: &[[f64; 2]], b: &[[f64; 2]]) -> Option<Matrix3<f64>> {
    if a.len() < 4 || a.len() != b.len() {
        return None;
    }
    let ta = normalising_transform(a.iter().copied());
    let tb = normalising_transform(b.iter().copied());
    let apply = |t: &Matrix3<f64>, p: [f64; 2]| {
        [t[(0, 0)] * p[0] + t[(0, 2)], t[(1, 1)] * p[1] + t[(1, 2)]]
    };
    let mut ata = SMatrix::<f64, 9, 9>::zeros();
    for (pa, pb) in a.iter().zip(b) {
        let [x, y] = apply(&ta, *pa);
        let [u, v] = apply(&tb, *pb);
        let r0 = SVector::<f64, 9>::from([x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y, -u]);
        let r1 = SVector::<f64, 9>::from([0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y, -v]);
        ata += r0 * r0.transpose() + r1 * r1.transpose();
    }
    let eig = SymmetricEigen::new(ata);
    let k = eig.eigenvalues.imin();
    let h = eig.eigenvectors.column(k);
    let hn = Matrix3::new(h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8]);
    let h = tb.try_inverse()? * hn * ta;
    let norm = h.norm();
    if !(norm.is_finite() && norm > 0.0) {
        return None;
    }
    let h = h / norm;
    Some(if h[(2, 2)] < 0.0 { -h } else { h })
}

/// `π(H·x)`: the point `x` mapped by `H`, `None` at infinity.
#[inline]
pub(crate) fn transfer(h: &Matrix3<f64>, x: [f64; 2]) -> Option<[f64; 2]> {
    let q = h * Vector3::new(x[0], x[1], 1.0);
    (q.z.abs() > 1e-12).then(|| [q.x / q.z, q.y / q.z])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn truth() -> Matrix3<f64> {
        Matrix3::new(1.02, 0.05, 0.1, -0.03, 0.98, -0.05, 0.08, -0.04, 1.0)
    }

    #[test]
    fn minimal_and_least_squares_fits_recover_a_homography() {
        let h = truth();
        let a = [[-0.3, -0.2], [0.4, -0.25], [0.35, 0.3], [-0.25, 0.28]];
        let b = a.map(|p| transfer(&h, p).unwrap());
        assert!(oriented_sample(&a, &b));
        let h4 = homography_4pt(&a, &b).unwrap();
        assert!((h4 - h).norm() < 1e-10, "{h4}");
        let many: Vec<[f64; 2]> = (0..30)
            .map(|i| [(i % 6) as f64 * 0.1 - 0.3, (i / 6) as f64 * 0.12 - 0.25])
            .collect();
        let mb: Vec<[f64; 2]> = many.iter().map(|p| transfer(&h, *p).unwrap()).collect();
        let hn = homography_dlt(&many, &mb).unwrap();
        let hs = hn / hn[(2, 2)];
        assert!((hs - h).norm() < 1e-9, "{hs}");
    }

    #[test]
    fn degenerate_and_folded_samples_are_rejected() {
        let a = [[0.0, 0.0], [0.1, 0.0], [0.2, 0.0], [0.0, 0.3]]; // three collinear
        assert!(!oriented_sample(&a, &a));
        let a = [[-0.3, -0.2], [0.4, -0.25], [0.35, 0.3], [-0.25, 0.28]];
        let mut b = a;
        b.swap(0, 1); // a fold: two triangles change orientation
        assert!(!oriented_sample(&a, &b));
        assert!(homography_dlt(&a[..3], &b[..3]).is_none());
    }
}
