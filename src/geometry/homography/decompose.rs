//! Decomposition of a calibrated homography `H ∝ R + t·nᵀ/d` (plane `nᵀX = d` in camera a's frame,
//! `x_b = R·x_a + t`) into its motions, by Faugeras' SVD method (Faugeras & Lustman 1988): with
//! `H = U·diag(d₁, d₂, d₃)·Vᵀ` there are eight algebraic solutions, four for `d' = d₂` and four for
//! `d' = −d₂`; cheirality on the plane's points leaves at most two physically valid ones. When the singular
//! values are (nearly) equal, `H` is a rotation (pure rotation, or a plane at infinity): one solution with
//! `t = 0`.
//!
//! Why this method: it is closed-form, needs one 3×3 SVD, and its eight candidates are the complete set,
//! so the choice among them is left to the data (cheirality, off-plane points) where it belongs.

use nalgebra::{Matrix3, Vector3};

/// One motion explaining a homography.
#[derive(Debug, Clone, Copy)]
pub struct PlanarMotion {
    /// Rotation of `x_b = R·x_a + t`.
    pub rotation: Matrix3<f64>,
    /// Translation divided by the plane's distance from camera a (`t/d`); zero for a rotation.
    pub translation: Vector3<f64>,
    /// Unit normal of the plane `nᵀX = d` (`d > 0`) in camera a's frame.
    pub normal: Vector3<f64>,
}

/// Relative gap between singular values below which they count as equal.
const EQUAL: f64 = 1e-5;

/// The candidate motions of `h` (up to eight; one with `t = 0` when `h` is a rotation up to scale).
pub fn decompose_homography(h: &Matrix3<f64>) -> Vec<PlanarMotion> {
    let svd = h.svd(true, true);
    let (Some(u), Some(vt)) = (svd.u, svd.v_t) else {
        return Vec::new();
    };
    // descending singular values with their vectors
    let sv = svd.singular_values;
    let mut order = [0usize, 1, 2];
    order.sort_by(|&i, &j| sv[j].total_cmp(&sv[i]));
    let u = Matrix3::from_columns(&[u.column(order[0]), u.column(order[1]), u.column(order[2])]);
    let v = Matrix3::from_columns(&[
        vt.row(order[0]).transpose(),
        vt.row(order[1]).transpose(),
        vt.row(order[2]).transpose(),
    ]);
    let (d1, d2, d3) = (sv[order[0]], sv[order[1]], sv[order[2]]);
    if !(d3 > 0.0 && d1.is_finite()) {
        return Vec::new();
    }
    let s = u.determinant() * v.determinant();
    if d1 / d3 - 1.0 < EQUAL {
        return vec![PlanarMotion {
            rotation: u * v.transpose() * s.signum(),
            translation: Vector3::zeros(),
            normal: Vector3::z(),
        }];
    }
    let (d1s, d2s, d3s) = (d1 * d1, d2 * d2, d3 * d3);
    let aux1 = ((d1s - d2s) / (d1s - d3s)).max(0.0).sqrt();
    let aux3 = ((d2s - d3s) / (d1s - d3s)).max(0.0).sqrt();
    let x1 = [aux1, aux1, -aux1, -aux1];
    let x3 = [aux3, -aux3, aux3, -aux3];
    let mut out = Vec::with_capacity(8);
    // d' = d2
    let aux_st = ((d1s - d2s) * (d2s - d3s)).max(0.0).sqrt() / ((d1 + d3) * d2);
    let ct = (d2s + d1 * d3) / ((d1 + d3) * d2);
    let st = [aux_st, -aux_st, -aux_st, aux_st];
    for i in 0..4 {
        let rp = Matrix3::new(ct, 0.0, -st[i], 0.0, 1.0, 0.0, st[i], 0.0, ct);
        let tp = Vector3::new(x1[i], 0.0, -x3[i]) * (d1 - d3);
        let np = Vector3::new(x1[i], 0.0, x3[i]);
        out.push(motion(s * u * rp * v.transpose(), u * tp / d2, v * np));
    }
    // d' = -d2
    let aux_sp = ((d1s - d2s) * (d2s - d3s)).max(0.0).sqrt() / ((d1 - d3) * d2);
    let cp = (d1 * d3 - d2s) / ((d1 - d3) * d2);
    let sp = [aux_sp, -aux_sp, -aux_sp, aux_sp];
    for i in 0..4 {
        let rp = Matrix3::new(cp, 0.0, sp[i], 0.0, -1.0, 0.0, sp[i], 0.0, -cp);
        let tp = Vector3::new(x1[i], 0.0, x3[i]) * (d1 + d3);
        let np = Vector3::new(x1[i], 0.0, x3[i]);
        // H / d' with d' = −d₂ flips the sign of the translation term
        out.push(motion(s * u * rp * v.transpose(), -u * tp / d2, v * np));
    }
    out
}

/// A candidate in this module's convention `H ∝ R + t·nᵀ` (the formulas above give `R − t·nᵀ`). Each
/// `(t, n)` comes with its mirror `(−t, −n)`, which explains `H` alike; only one of them puts the plane in
/// front of the cameras, which cheirality decides.
fn motion(r: Matrix3<f64>, t: Vector3<f64>, n: Vector3<f64>) -> PlanarMotion {
    PlanarMotion {
        rotation: r,
        translation: -t,
        normal: n.normalize(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::Rotation3;

    #[test]
    fn one_candidate_is_the_true_motion() {
        let cases = [
            (
                Rotation3::from_euler_angles(0.1, -0.2, 0.05).into_inner(),
                Vector3::new(0.3, -0.1, 0.2),
                Vector3::new(0.1, -0.2, 1.0).normalize(),
                3.0,
            ),
            (
                Rotation3::from_euler_angles(-0.02, 0.3, 0.1).into_inner(),
                Vector3::new(-0.5, 0.05, -0.1),
                Vector3::new(0.0, -0.9, 0.4).normalize(),
                1.5,
            ),
        ];
        for (r, t, n, d) in cases {
            let h = (r + t * n.transpose() / d) * -2.7;
            let cands = decompose_homography(&h);
            assert_eq!(cands.len(), 8);
            let hit = cands.iter().any(|c| {
                (c.rotation - r).norm() < 1e-9
                    && (c.translation - t / d).norm() < 1e-9
                    && (c.normal - n).norm() < 1e-9
            });
            assert!(hit, "{cands:#?}");
            // every candidate reproduces H up to scale
            for c in &cands {
                let hc = c.rotation + c.translation * c.normal.transpose();
                let k = hc.norm() / h.norm();
                let same = (hc - h * k).norm() < 1e-9 || (hc + h * k).norm() < 1e-9;
                assert!(same, "{c:?} {hc} {}", h * k);
                assert!((c.rotation.determinant() - 1.0).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn a_rotation_decomposes_into_itself() {
        let r = Rotation3::from_euler_angles(0.2, 0.1, -0.3).into_inner();
        let c = decompose_homography(&(r * 0.5));
        assert_eq!(c.len(), 1);
        assert!((c[0].rotation - r).norm() < 1e-9 && c[0].translation.norm() == 0.0);
    }
}
