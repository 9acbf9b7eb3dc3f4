//! Synthetic two-view problems with exact ground truth, for the solver's tests and benchmarks.
//!
//! The problem sets follow the project's reference protocol: a 640×480 pinhole camera with f = 525 px,
//! points 2–10 m deep, a rotation of 5–20° about a random axis, a unit baseline in a random direction,
//! N correspondences of which a fraction are uniform outliers, Gaussian pixel noise on the inliers, and a
//! 1 px threshold. Beside points in general position ([`SceneKind::General`]) the sets model what indoor
//! views look like: one plane carrying most points with a few in front of it
//! ([`SceneKind::DominantPlane`]), small baselines (low parallax) and pure rotations (`baseline` 0). Everything is generated from a seed with a fixed generator, so the same seed gives the
//! same sets on every machine and in every language that reads them back ([`write_sets_json`]).
//!
//! [`write_sets_json`] writes them for the Python references (PoseLib, OpenCV, COLMAP) of `matcha bench
//! pose`, which times every method on exactly the same correspondences.
//!
//! This module generates problems; it does not time or judge anything.

use nalgebra::{Matrix3, Rotation3, Unit, Vector3};

use super::camera::PinholeCamera;

/// Parameters of the synthetic problem sets.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SyntheticConfig {
    /// Image width, pixels.
    pub width: f64,
    /// Image height, pixels.
    pub height: f64,
    /// Focal length, pixels.
    pub focal: f64,
    /// Depth range of the points, metres.
    pub depth: (f64, f64),
    /// Rotation angle range, degrees.
    pub rotation_deg: (f64, f64),
    /// Baseline length (monocular scale: any positive value).
    pub baseline: f64,
    /// Correspondences per instance.
    pub num_points: usize,
    /// Fraction of outliers.
    pub outlier_ratio: f64,
    /// Standard deviation of the pixel noise on inliers (both images).
    pub noise_px: f64,
    /// Number of instances.
    pub instances: usize,
    /// Seed.
    pub seed: u64,
    /// Where the inlier points lie.
    pub scene: SceneKind,
}

/// Where the inlier points of a synthetic instance lie.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum SceneKind {
    /// Uniform in the image at depths in [`SyntheticConfig::depth`].
    General,
    /// On one plane (2–5 m from camera a, its normal within 60° of the optical axis), except a fraction
    /// `off_plane` of the inliers, which lie in front of the plane (at 40–90% of the plane's depth along their
    /// ray): a wall with objects before it.
    DominantPlane {
        /// Fraction of the inliers off the plane.
        off_plane: f64,
    },
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            width: 640.0,
            height: 480.0,
            focal: 525.0,
            depth: (2.0, 10.0),
            rotation_deg: (5.0, 20.0),
            baseline: 1.0,
            num_points: 2000,
            outlier_ratio: 0.5,
            noise_px: 0.5,
            instances: 20,
            seed: 2025,
            scene: SceneKind::General,
        }
    }
}

/// One synthetic problem: correspondences and the ground truth `x_b = R·x_a + t` (unit `t`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SyntheticInstance {
    /// Camera of both views.
    pub camera: PinholeCamera,
    /// Pixels in image a.
    pub points_a: Vec<[f64; 2]>,
    /// Pixels in image b.
    pub points_b: Vec<[f64; 2]>,
    /// Which correspondences are true (before noise).
    pub is_inlier: Vec<bool>,
    /// Ground-truth rotation (row-major).
    pub r_gt: [[f64; 3]; 3],
    /// Ground-truth unit translation.
    pub t_gt: [f64; 3],
}

impl SyntheticInstance {
    /// Ground truth as nalgebra types.
    pub fn ground_truth(&self) -> (Matrix3<f64>, Vector3<f64>) {
        let r = Matrix3::from_fn(|i, j| self.r_gt[i][j]);
        (r, Vector3::from(self.t_gt))
    }
}

use crate::util::rng::SplitMix64 as Rng;

/// Generates the synthetic sets of `cfg` (deterministic).
pub fn generate_sets(cfg: &SyntheticConfig) -> Vec<SyntheticInstance> {
    let mut rng = Rng::new(cfg.seed);
    let camera = PinholeCamera {
        fx: cfg.focal,
        fy: cfg.focal,
        cx: cfg.width / 2.0,
        cy: cfg.height / 2.0,
        distortion: super::camera::Distortion::none(),
    };
    let inside = |p: [f64; 2]| {
        p[0] >= 0.0 && p[0] <= cfg.width - 1.0 && p[1] >= 0.0 && p[1] <= cfg.height - 1.0
    };
    (0..cfg.instances)
        .map(|_| {
            let axis = Unit::new_normalize(rng.unit_vector());
            let angle = rng
                .range(cfg.rotation_deg.0, cfg.rotation_deg.1)
                .to_radians();
            let r = Rotation3::from_axis_angle(&axis, angle).into_inner();
            // Mostly sideways/forward motion, random direction.
            let t = rng.unit_vector() * cfg.baseline;
            let plane = match cfg.scene {
                SceneKind::General => None,
                SceneKind::DominantPlane { off_plane } => {
                    let n = loop {
                        let v = rng.unit_vector();
                        if v.z > 0.5 {
                            break v;
                        }
                    };
                    Some((n, rng.range(2.0, 5.0), off_plane))
                }
            };
            let n_out = (cfg.num_points as f64 * cfg.outlier_ratio).round() as usize;
            let n_in = cfg.num_points - n_out;
            let mut pa = Vec::with_capacity(cfg.num_points);
            let mut pb = Vec::with_capacity(cfg.num_points);
            let mut is_in = Vec::with_capacity(cfg.num_points);
            let mut tries = 0usize;
            while pa.len() < n_in && tries < 1_000_000 {
                tries += 1;
                let u = [
                    rng.range(0.0, cfg.width - 1.0),
                    rng.range(0.0, cfg.height - 1.0),
                ];
                let xa = camera.normalize(u);
                let z = match plane {
                    None => rng.range(cfg.depth.0, cfg.depth.1),
                    Some((n, d, off)) => {
                        let cos = n.dot(&Vector3::new(xa[0], xa[1], 1.0));
                        if cos.is_nan() || cos <= 0.05 {
                            continue;
                        }
                        let on_plane = d / cos;
                        if rng.uniform() < off {
                            on_plane * rng.range(0.4, 0.9)
                        } else {
                            on_plane
                        }
                    }
                };
                let pa3 = Vector3::new(xa[0] * z, xa[1] * z, z);
                let pb3 = r * pa3 + t;
                let Some(v) = camera.project([pb3.x, pb3.y, pb3.z]) else {
                    continue;
                };
                if !inside(v) {
                    continue;
                }
                let na = [
                    u[0] + cfg.noise_px * rng.normal(),
                    u[1] + cfg.noise_px * rng.normal(),
                ];
                let nb = [
                    v[0] + cfg.noise_px * rng.normal(),
                    v[1] + cfg.noise_px * rng.normal(),
                ];
                pa.push(na);
                pb.push(nb);
                is_in.push(true);
            }
            for _ in 0..n_out {
                pa.push([
                    rng.range(0.0, cfg.width - 1.0),
                    rng.range(0.0, cfg.height - 1.0),
                ]);
                pb.push([
                    rng.range(0.0, cfg.width - 1.0),
                    rng.range(0.0, cfg.height - 1.0),
                ]);
                is_in.push(false);
            }
            // Shuffle so that inliers and outliers are interleaved.
            for i in (1..pa.len()).rev() {
                let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                pa.swap(i, j);
                pb.swap(i, j);
                is_in.swap(i, j);
            }
            // a pure rotation (baseline 0) has no translation direction: t_gt = 0
            let tn = if t.norm() > 0.0 { t.normalize() } else { t };
            SyntheticInstance {
                camera,
                points_a: pa,
                points_b: pb,
                is_inlier: is_in,
                r_gt: std::array::from_fn(|i| std::array::from_fn(|j| r[(i, j)])),
                t_gt: [tn.x, tn.y, tn.z],
            }
        })
        .collect()
}

/// Writes the sets as JSON (`{"threshold_px", "instances": [...]}`) for `tools/pose_reference.py`.
pub fn write_sets_json(
    path: &std::path::Path,
    sets: &[SyntheticInstance],
    threshold_px: f64,
    repetitions: usize,
) -> std::io::Result<()> {
    let v = serde_json::json!({
        "threshold_px": threshold_px,
        "repetitions": repetitions,
        "instances": sets,
    });
    std::fs::write(path, serde_json::to_vec(&v).map_err(std::io::Error::other)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_are_deterministic_and_consistent() {
        let cfg = SyntheticConfig {
            num_points: 200,
            instances: 3,
            noise_px: 0.0,
            ..Default::default()
        };
        let a = generate_sets(&cfg);
        let b = generate_sets(&cfg);
        assert_eq!(a[2].points_b, b[2].points_b);
        let plane = generate_sets(&SyntheticConfig {
            scene: SceneKind::DominantPlane { off_plane: 0.1 },
            ..cfg.clone()
        });
        for inst in a.iter().chain(&plane) {
            assert_eq!(inst.points_a.len(), 200);
            assert_eq!(inst.is_inlier.iter().filter(|&&x| x).count(), 100);
            let (r, t) = inst.ground_truth();
            let e = super::super::essential::essential_from_pose(&r, &t);
            for i in (0..200).filter(|&i| inst.is_inlier[i]) {
                let xa = inst.camera.normalize(inst.points_a[i]);
                let xb = inst.camera.normalize(inst.points_b[i]);
                let res =
                    Vector3::new(xb[0], xb[1], 1.0).dot(&(e * Vector3::new(xa[0], xa[1], 1.0)));
                assert!(res.abs() < 1e-12);
            }
        }
        // the dominant plane: ~90% of the inliers fit one homography exactly
        for inst in &plane {
            let inl: Vec<usize> = (0..200).filter(|&i| inst.is_inlier[i]).collect();
            let a: Vec<[f64; 2]> = inl.iter().map(|&i| inst.points_a[i]).collect();
            let b: Vec<[f64; 2]> = inl.iter().map(|&i| inst.points_b[i]).collect();
            let h = crate::geometry::estimate_homography(
                &a,
                &b,
                &inst.camera,
                &inst.camera,
                None,
                &crate::geometry::RansacOptions::default(),
            )
            .unwrap();
            let frac = h.num_inliers as f64 / inl.len() as f64;
            assert!(frac > 0.8 && frac < 0.97, "{frac}");
        }
        // a pure rotation: t_gt = 0
        let rot = generate_sets(&SyntheticConfig {
            baseline: 0.0,
            ..cfg
        });
        assert!(rot.iter().all(|i| i.t_gt == [0.0; 3]));
    }
}
