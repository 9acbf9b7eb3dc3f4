//! Absolute pose on synthetic scenes with noise and outliers, refinement from a prior, and input errors.

use nalgebra::{Matrix3, Rotation3, Vector3};

use super::*;
use crate::geometry::camera::{Distortion, PinholeCamera};
use crate::geometry::RansacOptions;
use crate::util::rng::SplitMix64;

struct Scene {
    r: Matrix3<f64>,
    t: Vector3<f64>,
    world: Vec<[f64; 3]>,
    pixels: Vec<[f64; 2]>,
    outlier: Vec<bool>,
}

fn camera() -> PinholeCamera {
    PinholeCamera::new(500.0, 500.0, 319.5, 239.5).unwrap()
}

/// `n` points 1–8 m in front of a random camera, pixel noise `sigma`, a share `outliers` moved anywhere.
fn scene(rng: &mut SplitMix64, cam: &PinholeCamera, n: usize, sigma: f64, outliers: f64) -> Scene {
    let r = Rotation3::new(rng.unit_vector() * rng.range(0.0, 3.0)).into_inner();
    let t = Vector3::new(
        rng.range(-3.0, 3.0),
        rng.range(-3.0, 3.0),
        rng.range(-3.0, 3.0),
    );
    let mut s = Scene {
        r,
        t,
        world: Vec::new(),
        pixels: Vec::new(),
        outlier: Vec::new(),
    };
    while s.world.len() < n {
        let u = rng.range(0.0, 639.0);
        let v = rng.range(0.0, 479.0);
        let z = rng.range(1.0, 8.0);
        let n = cam.normalize([u, v]);
        let c = Vector3::new(n[0] * z, n[1] * z, z);
        let x = r.transpose() * (c - t);
        let bad = rng.uniform() < outliers;
        let px = if bad {
            [rng.range(0.0, 639.0), rng.range(0.0, 479.0)]
        } else {
            [u + sigma * rng.normal(), v + sigma * rng.normal()]
        };
        s.world.push([x.x, x.y, x.z]);
        s.pixels.push(px);
        s.outlier.push(bad);
    }
    s
}

fn errors(p: &AbsolutePose, s: &Scene) -> (f64, f64) {
    let dr = crate::geometry::metrics::rotation_error_deg(&p.rotation, &s.r);
    let dc = (p.centre() - (-(s.r.transpose() * s.t))).norm();
    (dr, dc)
}

#[test]
fn recovers_the_pose_with_noise_and_half_outliers() {
    let cam = camera();
    let mut rng = SplitMix64::new(1);
    let opts = RansacOptions {
        threshold_px: 2.0,
        ..Default::default()
    };
    for k in 0..20 {
        let s = scene(&mut rng, &cam, 300, 0.5, 0.5);
        let p = estimate_absolute_pose(&s.world, &s.pixels, &cam, &opts).unwrap();
        let (dr, dc) = errors(&p, &s);
        assert!(dr < 0.2 && dc < 0.02, "case {k}: {dr:.3}° {dc:.4} m");
        // the inliers are the clean points (a moved point may land near its true pixel by chance)
        let wrong = p
            .inliers
            .iter()
            .zip(&s.outlier)
            .filter(|(i, o)| **i && **o)
            .count();
        let clean = s.outlier.iter().filter(|o| !**o).count();
        assert!(wrong <= 3, "case {k}: {wrong} outliers accepted");
        assert!(p.num_inliers >= clean * 95 / 100);
        assert!(p.quality.rms_error_px < 1.0);
    }
}

#[test]
fn exact_data_gives_an_exact_pose_and_a_tiny_covariance() {
    let cam = camera();
    let mut rng = SplitMix64::new(2);
    let s = scene(&mut rng, &cam, 100, 0.0, 0.0);
    let p = estimate_absolute_pose(&s.world, &s.pixels, &cam, &RansacOptions::default()).unwrap();
    let (dr, dc) = errors(&p, &s);
    assert!(dr < 1e-6 && dc < 1e-7, "{dr} {dc}");
    assert_eq!(p.num_inliers, 100);
    let d = p.covariance.diagonal();
    assert!(d.iter().all(|v| v.abs() < 1e-12), "{d}");
}

#[test]
fn covariance_matches_the_scatter_of_repeated_estimates() {
    // the standard deviation the covariance predicts for the rotation about the optical axis, against the
    // scatter over noise draws of one scene
    let cam = camera();
    let mut rng = SplitMix64::new(3);
    let base = scene(&mut rng, &cam, 200, 0.0, 0.0);
    // σ = 1 px: a 3 px threshold keeps nearly all the points (1 px would truncate the noise)
    let opts = RansacOptions {
        threshold_px: 3.5,
        ..Default::default()
    };
    let mut samples = Vec::new();
    let mut predicted = Vec::new();
    for _ in 0..60 {
        let pixels: Vec<[f64; 2]> = base
            .pixels
            .iter()
            .map(|p| [p[0] + rng.normal(), p[1] + rng.normal()])
            .collect();
        let p = estimate_absolute_pose(&base.world, &pixels, &cam, &opts).unwrap();
        let dw = Rotation3::from_matrix_unchecked(p.rotation * base.r.transpose()).scaled_axis();
        samples.push(dw);
        predicted.push(p.covariance[(2, 2)].sqrt());
    }
    let var = samples.iter().map(|w| w.z * w.z).sum::<f64>() / samples.len() as f64;
    let pred = crate::util::stats::median(&predicted);
    let ratio = var.sqrt() / pred;
    assert!(
        (0.6..1.6).contains(&ratio),
        "observed/predicted σ = {ratio:.2}"
    );
}

#[test]
fn refinement_from_a_perturbed_prior_converges() {
    let cam = camera();
    let mut rng = SplitMix64::new(4);
    let s = scene(&mut rng, &cam, 200, 0.5, 0.2);
    let r0 = Rotation3::new(Vector3::new(0.01, -0.008, 0.005)).into_inner() * s.r;
    let t0 = s.t + Vector3::new(0.02, -0.01, 0.03);
    let opts = RansacOptions {
        threshold_px: 2.0,
        ..Default::default()
    };
    let p = refine_absolute_pose(&s.world, &s.pixels, &cam, (r0, t0), &opts).unwrap();
    let (dr, dc) = errors(&p, &s);
    assert!(dr < 0.1 && dc < 0.01, "{dr} {dc}");
    assert_eq!(p.quality.iterations, 0);
}

#[test]
fn distorted_pixels_are_undistorted() {
    let d = Distortion::from_slice(&[-0.2, 0.05, 0.0, 0.0]).unwrap();
    let cam = camera().with_distortion(d).unwrap();
    let mut rng = SplitMix64::new(5);
    let mut s = scene(&mut rng, &camera(), 200, 0.0, 0.0);
    for p in &mut s.pixels {
        let n = camera().normalize(*p);
        *p = camera().denormalize(d.distort(n));
    }
    let p = estimate_absolute_pose(&s.world, &s.pixels, &cam, &RansacOptions::default()).unwrap();
    let (dr, dc) = errors(&p, &s);
    assert!(dr < 1e-4 && dc < 1e-4, "{dr} {dc}");
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let cam = camera();
    let opts = RansacOptions::default();
    let e = estimate_absolute_pose(&[[0.0, 0.0, 1.0]], &[], &cam, &opts).unwrap_err();
    assert!(matches!(e, AbsolutePoseError::LengthMismatch { .. }) && !e.is_outcome());
    let e =
        estimate_absolute_pose(&[[f64::NAN, 0.0, 1.0]], &[[1.0, 1.0]], &cam, &opts).unwrap_err();
    assert!(matches!(e, AbsolutePoseError::NonFinite(_)));
    let e =
        estimate_absolute_pose(&[[0.0, 0.0, 1.0]; 3], &[[1.0, 1.0]; 3], &cam, &opts).unwrap_err();
    assert!(matches!(e, AbsolutePoseError::TooFewCorrespondences { .. }) && e.is_outcome());
    // all points identical: no consensus, no panic
    let e = estimate_absolute_pose(&[[0.0, 0.0, 1.0]; 50], &[[10.0, 10.0]; 50], &cam, &opts)
        .unwrap_err();
    assert!(e.is_outcome(), "{e}");
    // random garbage: no consensus
    let mut rng = SplitMix64::new(6);
    let world: Vec<[f64; 3]> = (0..100)
        .map(|_| {
            [
                rng.range(-5.0, 5.0),
                rng.range(-5.0, 5.0),
                rng.range(-5.0, 5.0),
            ]
        })
        .collect();
    let pixels: Vec<[f64; 2]> = (0..100)
        .map(|_| [rng.range(0.0, 640.0), rng.range(0.0, 480.0)])
        .collect();
    let e = estimate_absolute_pose(&world, &pixels, &cam, &opts).unwrap_err();
    assert!(e.is_outcome(), "{e}");
    let bad = RansacOptions {
        threshold_px: -1.0,
        ..Default::default()
    };
    let e = estimate_absolute_pose(&world, &pixels, &cam, &bad).unwrap_err();
    assert!(matches!(e, AbsolutePoseError::InvalidOptions(_)));
}
