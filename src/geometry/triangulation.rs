//! Two-view triangulation with a known relative pose: the linear (DLT) point of two normalised image points,
//! accepted only when it lies in front of both cameras, reprojects within a threshold in both images and
//! is seen under enough parallax.
//!
//! Why DLT with checks (and not the midpoint): the DLT minimises an algebraic error that is close to the
//! reprojection error for the short baselines of a stereo rig and of VO keyframes, and the checks reject
//! exactly the points that would poison PnP later (behind a camera, at infinity, mismatched). Not here:
//! which correspondences to triangulate, or refining points over many views (bundle adjustment).

// `!(x > y)` is deliberate: it is true for NaN, which must take the rejecting branch.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use nalgebra::{Matrix3, Matrix4, Vector3, Vector4};

/// Acceptance limits of a triangulated point.
#[derive(Debug, Clone, Copy)]
pub struct TriangulationLimits {
    /// Largest reprojection error in either image, in pixels.
    pub max_error_px: f64,
    /// Smallest angle between the two rays at the point, degrees (points at infinity carry no depth).
    pub min_parallax_deg: f64,
    /// Smallest depth in either camera (same units as `t`).
    pub min_depth: f64,
}

/// A point `X` in camera a's frame seen at the normalised coordinates `na` (camera a) and `nb` (camera b,
/// with `x_b = R·x_a + t`); `focal` turns normalised errors into pixels. `None` when a check fails.
pub fn triangulate(
    na: [f64; 2],
    nb: [f64; 2],
    r: &Matrix3<f64>,
    t: &Vector3<f64>,
    focal: [f64; 2],
    limits: &TriangulationLimits,
) -> Option<Vector3<f64>> {
    // rows of the projection matrices P_a = [I | 0], P_b = [R | t]
    let pa = [
        Vector4::new(1.0, 0.0, 0.0, 0.0),
        Vector4::new(0.0, 1.0, 0.0, 0.0),
        Vector4::new(0.0, 0.0, 1.0, 0.0),
    ];
    let pb = [
        Vector4::new(r[(0, 0)], r[(0, 1)], r[(0, 2)], t[0]),
        Vector4::new(r[(1, 0)], r[(1, 1)], r[(1, 2)], t[1]),
        Vector4::new(r[(2, 0)], r[(2, 1)], r[(2, 2)], t[2]),
    ];
    let rows = [
        pa[2] * na[0] - pa[0],
        pa[2] * na[1] - pa[1],
        pb[2] * nb[0] - pb[0],
        pb[2] * nb[1] - pb[1],
    ];
    let a = Matrix4::from_rows(&[
        rows[0].transpose(),
        rows[1].transpose(),
        rows[2].transpose(),
        rows[3].transpose(),
    ]);
    // the null vector of A: the eigenvector of AᵀA with the smallest eigenvalue
    let eig = (a.transpose() * a).symmetric_eigen();
    let k = eig.eigenvalues.imin();
    let h: Vector4<f64> = eig.eigenvectors.column(k).into();
    if !(h[3].abs() > 1e-12) {
        return None;
    }
    let x = Vector3::new(h[0], h[1], h[2]) / h[3];
    check(&x, na, nb, r, t, focal, limits).then_some(x)
}

/// The checks of [`triangulate`] on a given point `x` (camera a's frame).
pub fn check(
    x: &Vector3<f64>,
    na: [f64; 2],
    nb: [f64; 2],
    r: &Matrix3<f64>,
    t: &Vector3<f64>,
    focal: [f64; 2],
    limits: &TriangulationLimits,
) -> bool {
    let xb = r * x + t;
    if !(x.z > limits.min_depth && xb.z > limits.min_depth && x.iter().all(|v| v.is_finite())) {
        return false;
    }
    let err = |c: &Vector3<f64>, n: [f64; 2]| {
        let ex = focal[0] * (c.x / c.z - n[0]);
        let ey = focal[1] * (c.y / c.z - n[1]);
        ex * ex + ey * ey
    };
    let thr = limits.max_error_px * limits.max_error_px;
    if !(err(x, na) < thr && err(&xb, nb) < thr) {
        return false;
    }
    // parallax: angle between the rays from both centres (centre of b in a's frame: −Rᵀt)
    let cb = -(r.transpose() * t);
    let ra = x.normalize();
    let rb = (x - cb).normalize();
    let cos = ra.dot(&rb).clamp(-1.0, 1.0);
    cos.acos().to_degrees() >= limits.min_parallax_deg
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::Rotation3;

    const LIMITS: TriangulationLimits = TriangulationLimits {
        max_error_px: 1.0,
        min_parallax_deg: 0.1,
        min_depth: 0.05,
    };

    #[test]
    fn recovers_points_of_a_stereo_rig_and_a_general_pair() {
        let rigs = [
            (Matrix3::identity(), Vector3::new(-0.12, 0.0, 0.0)),
            (
                Rotation3::new(Vector3::new(0.05, -0.2, 0.03)).into_inner(),
                Vector3::new(-0.3, 0.05, 0.1),
            ),
        ];
        for (r, t) in rigs {
            for x in [Vector3::new(0.3, -0.2, 2.0), Vector3::new(-1.0, 0.5, 6.0)] {
                let xb = r * x + t;
                let na = [x.x / x.z, x.y / x.z];
                let nb = [xb.x / xb.z, xb.y / xb.z];
                let p = triangulate(na, nb, &r, &t, [500.0, 500.0], &LIMITS).unwrap();
                assert!((p - x).norm() < 1e-9, "{p} vs {x}");
            }
        }
    }

    #[test]
    fn rejects_points_behind_mismatched_or_at_infinity() {
        let (r, t) = (Matrix3::identity(), Vector3::new(-0.12, 0.0, 0.0));
        // negative disparity: behind
        assert!(triangulate([0.0, 0.0], [0.01, 0.0], &r, &t, [500.0, 500.0], &LIMITS).is_none());
        // rows 10 px apart: mismatched
        assert!(triangulate([0.0, 0.0], [-0.02, 0.02], &r, &t, [500.0, 500.0], &LIMITS).is_none());
        // zero disparity: at infinity
        assert!(triangulate([0.1, 0.0], [0.1, 0.0], &r, &t, [500.0, 500.0], &LIMITS).is_none());
    }
}
