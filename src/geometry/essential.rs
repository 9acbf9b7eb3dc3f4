//! Essential-matrix algebra shared by the estimator: building `E = [t]ₓR`, decomposing `E` into the four
//! `(R, t)` candidates, choosing among them by cheirality, and the Sampson error measured in pixels.
//!
//! The Sampson error is the first-order approximation of the reprojection distance to the epipolar
//! geometry: `s = x_bᵀEx_a / ‖∂(x_bᵀEx_a)/∂(pixels)‖`. Computing the gradient with respect to *pixel*
//! coordinates (normalised coordinates scaled by each camera's focal lengths) makes the threshold a pixel
//! threshold even when the two cameras or the two axes have different focal lengths.
//!
//! This module knows nothing of sampling or robust estimation.

use nalgebra::{Matrix3, Vector3};

/// Cross-product matrix `[v]ₓ`.
#[inline]
pub fn skew(v: &Vector3<f64>) -> Matrix3<f64> {
    Matrix3::new(0.0, -v.z, v.y, v.z, 0.0, -v.x, -v.y, v.x, 0.0)
}

/// `E = [t]ₓ·R` for the point transform `x_b = R·x_a + t`.
#[inline]
pub fn essential_from_pose(r: &Matrix3<f64>, t: &Vector3<f64>) -> Matrix3<f64> {
    skew(t) * r
}

/// Per-axis inverse squared focal lengths `(1/fx_a², 1/fy_a², 1/fx_b², 1/fy_b²)`: the weights that turn the
/// normalised-coordinate gradient of the epipolar residual into a pixel gradient.
#[derive(Debug, Clone, Copy)]
pub struct PixelWeights {
    /// `1/fx_a²`.
    pub wa_x: f64,
    /// `1/fy_a²`.
    pub wa_y: f64,
    /// `1/fx_b²`.
    pub wb_x: f64,
    /// `1/fy_b²`.
    pub wb_y: f64,
}

impl PixelWeights {
    /// From the focal lengths of both cameras.
    pub fn new(fx_a: f64, fy_a: f64, fx_b: f64, fy_b: f64) -> Self {
        Self {
            wa_x: 1.0 / (fx_a * fx_a),
            wa_y: 1.0 / (fy_a * fy_a),
            wb_x: 1.0 / (fx_b * fx_b),
            wb_y: 1.0 / (fy_b * fy_b),
        }
    }
}

/// For one correspondence: `(E·x_a)₀, (E·x_a)₁, (Eᵀ·x_b)₀, (Eᵀ·x_b)₁`, the epipolar residual `r = x_bᵀ E x_a`
/// and the Sampson denominator `den` (pixel-weighted squared gradient norm): `[a, b, d, f, r, den]`.
#[inline(always)]
pub(crate) fn epipolar_terms(
    e: &[f64; 9],
    w: &PixelWeights,
    xa: f64,
    ya: f64,
    xb: f64,
    yb: f64,
) -> [f64; 6] {
    let a = e[0] * xa + e[1] * ya + e[2];
    let b = e[3] * xa + e[4] * ya + e[5];
    let c = e[6] * xa + e[7] * ya + e[8];
    let r = xb * a + yb * b + c;
    let d = e[0] * xb + e[3] * yb + e[6];
    let f = e[1] * xb + e[4] * yb + e[7];
    let den = w.wb_x * a * a + w.wb_y * b * b + w.wa_x * d * d + w.wa_y * f * f;
    [a, b, d, f, r, den]
}

/// Squared Sampson error in pixels² of one correspondence (normalised coordinates) under `E` (row-major).
#[inline(always)]
pub fn sampson_sq(e: &[f64; 9], w: &PixelWeights, xa: f64, ya: f64, xb: f64, yb: f64) -> f64 {
    let [_, _, _, _, r, den] = epipolar_terms(e, w, xa, ya, xb, yb);
    if den > 0.0 {
        r * r / den
    } else {
        f64::INFINITY
    }
}

/// Depths `(λ_a, λ_b)` of the least-squares triangulation of `λ_b·x_b ≈ λ_a·R·x_a + t`; `None` without
/// parallax (parallel rays).
#[inline]
pub fn triangulate_depths(
    r: &Matrix3<f64>,
    t: &Vector3<f64>,
    xa: &Vector3<f64>,
    xb: &Vector3<f64>,
) -> Option<(f64, f64)> {
    let u = r * xa;
    let a = u.dot(&u);
    let b = u.dot(xb);
    let c = xb.dot(xb);
    let det = b * b - a * c;
    if det.abs() <= 1e-12 * a * c {
        return None;
    }
    let ut = u.dot(t);
    let xt = xb.dot(t);
    Some(((c * ut - b * xt) / det, (b * ut - a * xt) / det))
}

/// Number of correspondences (normalised, `z = 1`) triangulated in front of both cameras.
pub fn count_in_front(
    r: &Matrix3<f64>,
    t: &Vector3<f64>,
    pts: impl Iterator<Item = [f64; 4]>,
) -> usize {
    pts.filter(|p| {
        let xa = Vector3::new(p[0], p[1], 1.0);
        let xb = Vector3::new(p[2], p[3], 1.0);
        matches!(triangulate_depths(r, t, &xa, &xb), Some((la, lb)) if la > 0.0 && lb > 0.0)
    })
    .count()
}

/// The four `(R, t)` (unit `t`) with `[t]ₓR ∝ E`: `R ∈ {U·W·Vᵀ, U·Wᵀ·Vᵀ}`, `t = ±u₃`. `None` when `E` has no
/// usable SVD.
pub fn decompose_essential(e: &Matrix3<f64>) -> Option<[(Matrix3<f64>, Vector3<f64>); 4]> {
    let svd = e.svd(true, true);
    let (mut u, mut v_t) = (svd.u?, svd.v_t?);
    // Order singular values descending (nalgebra does not guarantee it for 3×3).
    let s = svd.singular_values;
    let mut idx = [0usize, 1, 2];
    idx.sort_by(|&i, &j| s[j].total_cmp(&s[i]));
    let u_sorted = Matrix3::from_columns(&[u.column(idx[0]), u.column(idx[1]), u.column(idx[2])]);
    let vt_sorted = Matrix3::from_rows(&[v_t.row(idx[0]), v_t.row(idx[1]), v_t.row(idx[2])]);
    u = u_sorted;
    v_t = vt_sorted;
    if u.determinant() < 0.0 {
        u = -u;
    }
    if v_t.determinant() < 0.0 {
        v_t = -v_t;
    }
    let w = Matrix3::new(0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0);
    let r1 = u * w * v_t;
    let r2 = u * w.transpose() * v_t;
    let t: Vector3<f64> = u.column(2).into_owned();
    if !(r1.iter().all(|x| x.is_finite()) && t.iter().all(|x| x.is_finite())) {
        return None;
    }
    Some([(r1, t), (r1, -t), (r2, t), (r2, -t)])
}

/// The decomposition of `E` that puts the most of `pts` (normalised `[xa, ya, xb, yb]`) in front of both
/// cameras, with that count.
pub fn pose_from_essential(
    e: &Matrix3<f64>,
    pts: &[[f64; 4]],
) -> Option<(Matrix3<f64>, Vector3<f64>, usize)> {
    let cands = decompose_essential(e)?;
    cands
        .iter()
        .map(|(r, t)| (*r, *t, count_in_front(r, t, pts.iter().copied())))
        .max_by_key(|c| c.2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::Rotation3;

    #[test]
    fn decomposition_recovers_pose_by_cheirality() {
        let r = Rotation3::from_euler_angles(0.1, -0.2, 0.15).into_inner();
        let t = Vector3::new(0.4, -0.1, 0.9).normalize();
        let pts: Vec<[f64; 4]> = (0..20)
            .map(|i| {
                let p = Vector3::new(
                    (i % 5) as f64 * 0.3 - 0.6,
                    (i / 5) as f64 * 0.25 - 0.4,
                    3.0 + i as f64 * 0.1,
                );
                let q = r * p + t;
                [p.x / p.z, p.y / p.z, q.x / q.z, q.y / q.z]
            })
            .collect();
        let e = essential_from_pose(&r, &t) * -3.0;
        let (re, te, n) = pose_from_essential(&e, &pts).unwrap();
        assert_eq!(n, 20);
        assert!((re - r).norm() < 1e-9 && (te - t).norm() < 1e-9);
        let w = PixelWeights::new(500.0, 500.0, 500.0, 500.0);
        let ev: [f64; 9] = std::array::from_fn(|i| e[(i / 3, i % 3)]);
        for p in &pts {
            assert!(sampson_sq(&ev, &w, p[0], p[1], p[2], p[3]) < 1e-18);
        }
        // A 1-pixel shift of x_b perpendicular to its epipolar line: the Sampson error is the smallest joint
        // displacement of both points that restores the constraint, so it lies in (1/2, 1] px (≈ 1/√2 when
        // both images' epipolar gradients are alike).
        let p = pts[3];
        let xa = Vector3::new(p[0], p[1], 1.0);
        let l = e * xa; // epipolar line in b
        let n = (l.x * l.x + l.y * l.y).sqrt();
        let (xb, yb) = (p[2] + l.x / n / 500.0, p[3] + l.y / n / 500.0);
        let s = sampson_sq(&ev, &w, p[0], p[1], xb, yb).sqrt();
        assert!(s > 0.5 && s <= 1.0 + 1e-9, "{s}");
    }
}
