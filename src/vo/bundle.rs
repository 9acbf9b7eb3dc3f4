//! Windowed bundle adjustment: the poses of the recent keyframes and the landmarks they share, refined
//! together by Levenberg–Marquardt on the reprojection error with a Cauchy loss.
//!
//! Formulation: each keyframe pose is `camera_from_world` perturbed on the left, `x_c ← x_c + ω × x_c + v`;
//! each landmark is a world point. The normal equations are solved by the Schur complement on the points
//! (3×3 blocks, inverted in place), leaving a dense system over the free poses (6 per pose, a few dozen
//! unknowns for a window of keyframes), solved by Cholesky. The robust loss is applied by iteratively
//! reweighted least squares (weights from the residuals at the start of each iteration). Which poses are
//! fixed is the caller's choice: they fix the gauge (a monocular window fixes two, which fixes the scale).
//!
//! Why hand-written: it is the product's own geometry and small (a window of keyframes, a few thousand
//! observations); it needs no sparse solver. Not here: which keyframes and landmarks make the window, or
//! writing the result back (the odometry does both), stereo observations, marginalisation priors.

// `!(x > y)` is deliberate: it is true for NaN, which must take the rejecting branch.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use nalgebra::{
    DMatrix, DVector, Isometry3, Matrix3, Matrix3x6, Matrix6, Point3, Vector3, Vector6,
};

use crate::geometry::essential::skew;
use crate::geometry::PinholeCamera;

/// One observation: landmark `point` seen by keyframe `pose` at `pixel`.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    /// Index into [`Bundle::poses`].
    pub pose: usize,
    /// Index into [`Bundle::points`].
    pub point: usize,
    /// Where the keyframe saw it, pixels.
    pub pixel: [f64; 2],
}

/// A bundle-adjustment problem.
pub struct Bundle {
    /// The camera of every keyframe.
    pub camera: PinholeCamera,
    /// `camera_from_world` of each keyframe.
    pub poses: Vec<Isometry3<f64>>,
    /// Which poses stay as they are (the gauge).
    pub fixed: Vec<bool>,
    /// World points.
    pub points: Vec<Vector3<f64>>,
    /// The reprojection terms.
    pub observations: Vec<Observation>,
}

/// How the adjustment went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BundleReport {
    /// Levenberg–Marquardt iterations run.
    pub iterations: usize,
    /// Robust cost (px²) before.
    pub initial_cost: f64,
    /// Robust cost (px²) after.
    pub final_cost: f64,
}

/// The Cauchy loss of a squared residual `s` (px²) at scale `c` (px), and its weight `ρ'(s)`.
fn cauchy(s: f64, c: f64) -> (f64, f64) {
    let c2 = c * c;
    (c2 * (s / c2).ln_1p(), 1.0 / (1.0 + s / c2))
}

/// Residual (projection − observation, px) and the Jacobians with respect to the pose's left perturbation
/// `(ω, v)` and the world point; `None` when the point is behind the camera.
fn linearize(
    camera: &PinholeCamera,
    pose: &Isometry3<f64>,
    point: &Vector3<f64>,
    pixel: [f64; 2],
) -> Option<([f64; 2], nalgebra::Matrix2x6<f64>, nalgebra::Matrix2x3<f64>)> {
    let x = pose.transform_point(&Point3::from(*point)).coords;
    if !(x.z > 1e-9) {
        return None;
    }
    let (fx, fy) = (camera.fx, camera.fy);
    let iz = 1.0 / x.z;
    let u = fx * x.x * iz + camera.cx;
    let v = fy * x.y * iz + camera.cy;
    let dproj = nalgebra::Matrix2x3::new(
        fx * iz,
        0.0,
        -fx * x.x * iz * iz,
        0.0,
        fy * iz,
        -fy * x.y * iz * iz,
    );
    // d x_c / d(ω, v) = [−[x_c]× | I]
    let mut dx = Matrix3x6::zeros();
    dx.fixed_view_mut::<3, 3>(0, 0).copy_from(&(-skew(&x)));
    dx.fixed_view_mut::<3, 3>(0, 3)
        .copy_from(&Matrix3::identity());
    let r: Matrix3<f64> = pose.rotation.to_rotation_matrix().into_inner();
    Some(([u - pixel[0], v - pixel[1]], dproj * dx, dproj * r))
}

impl Bundle {
    /// Total robust cost at the current estimate. A point behind a camera costs as a residual of `1000·c`:
    /// more than any outlier in front, so a step never gains by pushing a point behind a camera.
    fn cost(&self, c: f64) -> f64 {
        self.observations
            .iter()
            .map(|o| {
                let x = self.poses[o.pose].transform_point(&Point3::from(self.points[o.point]));
                let s = match self.camera.project([x.x, x.y, x.z]) {
                    Some(p) => (p[0] - o.pixel[0]).powi(2) + (p[1] - o.pixel[1]).powi(2),
                    None => 1e6 * c * c,
                };
                cauchy(s, c).0
            })
            .sum()
    }

    /// Levenberg–Marquardt with the Cauchy loss at `loss_px`, at most `max_iterations`.
    pub fn adjust(&mut self, loss_px: f64, max_iterations: usize) -> BundleReport {
        // the free poses' columns in the reduced system
        let mut column = vec![usize::MAX; self.poses.len()];
        let mut n_free = 0;
        for (i, f) in self.fixed.iter().enumerate() {
            if !f {
                column[i] = n_free;
                n_free += 1;
            }
        }
        let initial_cost = self.cost(loss_px);
        let mut cost = initial_cost;
        let mut lambda = 1e-4;
        let mut iterations = 0;
        if n_free == 0 && self.points.is_empty() {
            return BundleReport {
                iterations,
                initial_cost,
                final_cost: cost,
            };
        }
        while iterations < max_iterations {
            iterations += 1;
            let system = self.normal_equations(&column, n_free, loss_px);
            // try increasing damping until the cost goes down
            let mut improved = false;
            for _ in 0..8 {
                let Some((dp, dl)) = system.solve(lambda) else {
                    lambda *= 10.0;
                    continue;
                };
                let saved = (self.poses.clone(), self.points.clone());
                self.apply(&column, &dp, &dl);
                let new_cost = self.cost(loss_px);
                if new_cost < cost {
                    let relative = (cost - new_cost) / cost.max(1e-12);
                    cost = new_cost;
                    lambda = (lambda * 0.3).max(1e-9);
                    improved = relative > 1e-6;
                    break;
                }
                (self.poses, self.points) = saved;
                lambda *= 10.0;
            }
            if !improved {
                break;
            }
        }
        BundleReport {
            iterations,
            initial_cost,
            final_cost: cost,
        }
    }

    fn apply(&mut self, column: &[usize], dp: &DVector<f64>, dl: &[Vector3<f64>]) {
        for (i, pose) in self.poses.iter_mut().enumerate() {
            let c = column[i];
            if c == usize::MAX {
                continue;
            }
            let d = dp.fixed_rows::<6>(6 * c);
            let delta = Isometry3::new(
                Vector3::new(d[3], d[4], d[5]),
                Vector3::new(d[0], d[1], d[2]),
            );
            *pose = delta * *pose;
        }
        for (p, d) in self.points.iter_mut().zip(dl) {
            *p += d;
        }
    }

    /// The reweighted normal equations at the current estimate.
    fn normal_equations(&self, column: &[usize], n_free: usize, c: f64) -> Normal {
        let mut n = Normal {
            hpp: vec![Matrix6::zeros(); n_free],
            bp: vec![Vector6::zeros(); n_free],
            hll: vec![Matrix3::zeros(); self.points.len()],
            bl: vec![Vector3::zeros(); self.points.len()],
            hpl: Vec::with_capacity(self.observations.len()),
            n_free,
        };
        for o in &self.observations {
            let Some((r, jp, jl)) = linearize(
                &self.camera,
                &self.poses[o.pose],
                &self.points[o.point],
                o.pixel,
            ) else {
                continue;
            };
            let r = nalgebra::Vector2::new(r[0], r[1]);
            let w = cauchy(r.norm_squared(), c).1;
            n.hll[o.point] += w * jl.transpose() * jl;
            n.bl[o.point] -= w * jl.transpose() * r;
            let col = column[o.pose];
            if col != usize::MAX {
                n.hpp[col] += w * jp.transpose() * jp;
                n.bp[col] -= w * jp.transpose() * r;
                n.hpl.push((col, o.point, w * jp.transpose() * jl));
            }
        }
        n
    }
}

/// Block normal equations: pose blocks, point blocks and their couplings `(pose column, point, H_pl)`.
struct Normal {
    hpp: Vec<Matrix6<f64>>,
    bp: Vec<Vector6<f64>>,
    hll: Vec<Matrix3<f64>>,
    bl: Vec<Vector3<f64>>,
    hpl: Vec<(usize, usize, nalgebra::Matrix6x3<f64>)>,
    n_free: usize,
}

impl Normal {
    /// The step for damping `lambda` (Marquardt's: the diagonal scaled by 1 + λ): Schur complement on the
    /// points, Cholesky on the poses. `None` when a block is singular.
    fn solve(&self, lambda: f64) -> Option<(DVector<f64>, Vec<Vector3<f64>>)> {
        let damp3 = |m: &Matrix3<f64>| {
            let mut d = *m;
            for k in 0..3 {
                d[(k, k)] += lambda * m[(k, k)].max(1e-9);
            }
            d
        };
        // a point observed by no valid projection has a zero block: it stays where it is
        let hll_inv: Vec<Option<Matrix3<f64>>> =
            self.hll.iter().map(|m| damp3(m).try_inverse()).collect();
        let n = 6 * self.n_free;
        let mut s = DMatrix::<f64>::zeros(n, n);
        let mut b = DVector::<f64>::zeros(n);
        for (c, (h, r)) in self.hpp.iter().zip(&self.bp).enumerate() {
            let mut d = *h;
            for k in 0..6 {
                d[(k, k)] += lambda * h[(k, k)].max(1e-9);
            }
            s.view_mut((6 * c, 6 * c), (6, 6)).add_assign(&d);
            b.rows_mut(6 * c, 6).add_assign(r);
        }
        // S −= H_pl H_ll⁻¹ H_lp over pairs of poses sharing a point; b −= H_pl H_ll⁻¹ b_l
        let mut by_point: Vec<Vec<usize>> = vec![Vec::new(); self.hll.len()];
        for (k, (_, l, _)) in self.hpl.iter().enumerate() {
            by_point[*l].push(k);
        }
        for (l, obs) in by_point.iter().enumerate() {
            let Some(inv) = hll_inv[l] else { continue };
            for &i in obs {
                let (ci, _, hi) = &self.hpl[i];
                let t = hi * inv;
                b.rows_mut(6 * ci, 6).sub_assign(&(t * self.bl[l]));
                for &j in obs {
                    let (cj, _, hj) = &self.hpl[j];
                    s.view_mut((6 * ci, 6 * cj), (6, 6))
                        .sub_assign(&(t * hj.transpose()));
                }
            }
        }
        let dp = if n > 0 {
            s.cholesky()?.solve(&b)
        } else {
            DVector::zeros(0)
        };
        if !dp.iter().all(|v| v.is_finite()) {
            return None;
        }
        // back-substitution: δl = H_ll⁻¹ (b_l − H_lp δp)
        let mut rhs = self.bl.clone();
        for (c, l, h) in &self.hpl {
            rhs[*l] -= h.transpose() * dp.fixed_rows::<6>(6 * c);
        }
        let dl = rhs
            .iter()
            .zip(&hll_inv)
            .map(|(r, inv)| inv.map_or(Vector3::zeros(), |m| m * r))
            .collect();
        Some((dp, dl))
    }
}

use std::ops::{AddAssign, SubAssign};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::rng::SplitMix64;
    use nalgebra::UnitQuaternion;

    /// Five cameras walking past 300 points, observed with 0.5 px noise and 5% gross outliers; the poses
    /// (except two) and the points start perturbed.
    fn problem(rng: &mut SplitMix64) -> (Bundle, Vec<Isometry3<f64>>, Vec<Vector3<f64>>) {
        let camera = PinholeCamera::new(500.0, 500.0, 320.0, 240.0).unwrap();
        let truth_poses: Vec<Isometry3<f64>> = (0..5)
            .map(|k| {
                let world_from_camera = Isometry3::from_parts(
                    Vector3::new(0.3 * k as f64, 0.02 * k as f64, 0.1 * k as f64).into(),
                    UnitQuaternion::from_scaled_axis(Vector3::y() * (-0.03 * k as f64)),
                );
                world_from_camera.inverse()
            })
            .collect();
        let truth_points: Vec<Vector3<f64>> = (0..300)
            .map(|_| {
                Vector3::new(
                    rng.range(-2.0, 3.0),
                    rng.range(-1.5, 1.5),
                    rng.range(3.0, 8.0),
                )
            })
            .collect();
        let mut observations = Vec::new();
        for (i, p) in truth_poses.iter().enumerate() {
            for (j, x) in truth_points.iter().enumerate() {
                let c = p.transform_point(&Point3::from(*x));
                let Some(px) = camera.project([c.x, c.y, c.z]) else {
                    continue;
                };
                let outlier = rng.range(0.0, 1.0) < 0.05;
                let noise = if outlier { 30.0 } else { 0.5 };
                observations.push(Observation {
                    pose: i,
                    point: j,
                    pixel: [px[0] + noise * rng.normal(), px[1] + noise * rng.normal()],
                });
            }
        }
        let poses = truth_poses
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if i < 2 {
                    *p
                } else {
                    Isometry3::new(
                        Vector3::new(rng.normal(), rng.normal(), rng.normal()) * 0.03,
                        Vector3::new(rng.normal(), rng.normal(), rng.normal()) * 0.01,
                    ) * p
                }
            })
            .collect();
        let points = truth_points
            .iter()
            .map(|x| x + Vector3::new(rng.normal(), rng.normal(), rng.normal()) * 0.1)
            .collect();
        let fixed = (0..5).map(|i| i < 2).collect();
        (
            Bundle {
                camera,
                poses,
                fixed,
                points,
                observations,
            },
            truth_poses,
            truth_points,
        )
    }

    fn centre_error(a: &Isometry3<f64>, b: &Isometry3<f64>) -> f64 {
        (a.inverse().translation.vector - b.inverse().translation.vector).norm()
    }

    #[test]
    fn recovers_perturbed_poses_and_points_despite_outliers() {
        let mut rng = SplitMix64::new(11);
        let (mut bundle, truth_poses, truth_points) = problem(&mut rng);
        let mean_point_error = |b: &Bundle| {
            b.points
                .iter()
                .zip(&truth_points)
                .map(|(a, b)| (a - b).norm())
                .sum::<f64>()
                / truth_points.len() as f64
        };
        let points_before = mean_point_error(&bundle);
        let before: f64 = (2..5)
            .map(|i| centre_error(&bundle.poses[i], &truth_poses[i]))
            .sum();
        let report = bundle.adjust(2.0, 30);
        assert!(report.final_cost < 0.1 * report.initial_cost, "{report:?}");
        let after: f64 = (2..5)
            .map(|i| centre_error(&bundle.poses[i], &truth_poses[i]))
            .sum();
        assert!(after < 0.01 && after < before / 10.0, "{before} -> {after}");
        // 0.5 px at 3–8 m over a 1.2 m walk: a few centimetres of depth noise remain
        let points_after = mean_point_error(&bundle);
        assert!(
            points_after < 0.05 && points_after < points_before / 4.0,
            "mean point error {points_before} -> {points_after}"
        );
        // the fixed poses did not move
        assert_eq!(bundle.poses[0], truth_poses[0]);
        assert_eq!(bundle.poses[1], truth_poses[1]);
    }

    #[test]
    fn a_converged_problem_stays_put() {
        let mut rng = SplitMix64::new(12);
        let (mut bundle, _, _) = problem(&mut rng);
        bundle.adjust(2.0, 50);
        let poses = bundle.poses.clone();
        let report = bundle.adjust(2.0, 50);
        assert!(report.final_cost <= report.initial_cost);
        for (a, b) in poses.iter().zip(&bundle.poses) {
            assert!(centre_error(a, b) < 1e-6);
        }
    }
}
