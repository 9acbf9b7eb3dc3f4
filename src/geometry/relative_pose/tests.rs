use super::*;
use crate::geometry::RelativePose;
use nalgebra::{Rotation3, Vector3};

use crate::geometry::metrics::{pose_error_deg, pose_error_max_deg, rotation_error_deg};
use crate::geometry::synthetic::{generate_sets, SyntheticConfig, SyntheticInstance};
use crate::geometry::TwoViewConfiguration;

/// Our estimator on a synthetic instance (no priority).
fn estimate_on(inst: &SyntheticInstance, opts: &RansacOptions) -> Result<RelativePose, PoseError> {
    estimate_relative_pose(
        &inst.points_a,
        &inst.points_b,
        &inst.camera,
        &inst.camera,
        None,
        opts,
    )
}

fn cam() -> PinholeCamera {
    PinholeCamera::new(525.0, 525.0, 320.0, 240.0).unwrap()
}

#[test]
fn recovers_synthetic_poses() {
    let cfg = SyntheticConfig {
        instances: 6,
        num_points: 600,
        ..Default::default()
    };
    for (k, inst) in generate_sets(&cfg).iter().enumerate() {
        let opts = RansacOptions::default();
        let pose = estimate_on(inst, &opts).unwrap();
        let (rg, tg) = inst.ground_truth();
        let (re, te) = pose_error_deg(&pose.rotation, &pose.translation.unwrap(), &rg, &tg);
        // Loose bounds (300 inliers, 0.5 px noise); the comparison with PoseLib is in tests/.
        assert!(re < 0.3 && te < 1.5, "instance {k}: errors {re}° {te}°");
        // Cheirality: the sign of t is right, not just its direction.
        assert!(
            pose.translation.unwrap().dot(&tg) > 0.9,
            "instance {k}: t flipped"
        );
        let true_in = inst.is_inlier.iter().filter(|&&x| x).count();
        let found_true = (0..inst.is_inlier.len())
            .filter(|&i| inst.is_inlier[i] && pose.inliers[i])
            .count();
        assert!(
            found_true as f64 > 0.9 * true_in as f64,
            "instance {k}: recall {found_true}/{true_in}"
        );
        assert!(
            pose.num_inliers < true_in + true_in / 20,
            "instance {k}: too many inliers"
        );
        assert!((pose.translation.unwrap().norm() - 1.0).abs() < 1e-12);
        assert!((pose.rotation.transpose() * pose.rotation - Matrix3::identity()).norm() < 1e-10);
        assert!(pose.quality.rms_error_px > 0.2 && pose.quality.rms_error_px < 1.0);
        assert!(pose.covariance.iter().all(|v| v.is_finite()));
        // Rotation standard deviation is small but positive.
        let sd = pose.covariance[(0, 0)].sqrt().to_degrees();
        assert!(sd > 1e-5 && sd < 0.1, "rotation sd {sd}°");
        // Same seed, same result.
        let again = estimate_on(inst, &opts).unwrap();
        assert_eq!(again.rotation, pose.rotation);
        assert_eq!(again.inliers, pose.inliers);
    }
}

#[test]
fn weights_follow_the_precision_of_each_correspondence() {
    use crate::util::rng::SplitMix64 as Rng;
    // Inliers with 0.1 px noise; every second correspondence gets another 0.8 px in image b.
    let cfg = SyntheticConfig {
        instances: 16,
        num_points: 600,
        noise_px: 0.1,
        outlier_ratio: 0.3,
        ..Default::default()
    };
    let opts = RansacOptions::default();
    let (mut err_equal, mut err_weighted) = (Vec::new(), Vec::new());
    let mut rng = Rng::new(7);
    for inst in generate_sets(&cfg) {
        let mut pb = inst.points_b.clone();
        let mut weights = vec![1.0; pb.len()];
        for (i, p) in pb.iter_mut().enumerate() {
            if i % 2 == 1 {
                p[0] += 0.8 * rng.normal();
                p[1] += 0.8 * rng.normal();
                weights[i] = (0.1f64 / 0.8).powi(2);
            }
        }
        let (rg, tg) = inst.ground_truth();
        let run = |w: Option<&[f64]>| {
            let p = estimate_relative_pose_weighted(
                &inst.points_a,
                &pb,
                &inst.camera,
                &inst.camera,
                None,
                w,
                &opts,
            )
            .unwrap();
            let (re, te) = pose_error_deg(&p.rotation, &p.translation.unwrap(), &rg, &tg);
            (re.max(te), p)
        };
        let (e_equal, p_equal) = run(None);
        let (e_weighted, _) = run(Some(&weights));
        err_equal.push(e_equal);
        err_weighted.push(e_weighted);
        // all-one weights are the unweighted estimator
        let (_, p_ones) = run(Some(&vec![1.0; pb.len()]));
        assert_eq!(p_ones.rotation, p_equal.rotation);
        assert_eq!(p_ones.inliers, p_equal.inliers);
    }
    // Geometric mean of the per-instance error ratios: some instances are limited by their geometry
    // (the translation direction), not by the noisy half, so single instances can go either way.
    let log_ratio = err_weighted
        .iter()
        .zip(&err_equal)
        .map(|(w, e)| (w / e).ln())
        .sum::<f64>()
        / err_equal.len() as f64;
    let ratio = log_ratio.exp();
    assert!(
        ratio < 0.75,
        "weighted / equal-weight error, geometric mean {ratio:.3} (weighted {err_weighted:?}, equal {err_equal:?})"
    );
}

#[test]
fn refinement_from_an_initial_pose_matches_ransac() {
    let cfg = SyntheticConfig {
        instances: 4,
        num_points: 600,
        ..Default::default()
    };
    let opts = RansacOptions::default();
    for inst in generate_sets(&cfg) {
        let (rg, tg) = inst.ground_truth();
        let full = estimate_on(&inst, &opts).unwrap();
        // start ~0.1° and ~0.3° off the truth (the size of a detector-keypoint pose's error; farther
        // than the LO threshold reaches, there is no consensus to start from): LO and the final
        // refinement pull it in, with no sampling
        let r0 = Rotation3::from_euler_angles(0.001, -0.001, 0.0005).into_inner() * rg;
        let t0 = (tg + Vector3::new(0.005, -0.003, 0.002)).normalize() * 3.0;
        let seeded = refine_relative_pose_weighted(
            &inst.points_a,
            &inst.points_b,
            &inst.camera,
            &inst.camera,
            None,
            &RelativePose {
                rotation: r0,
                translation: Some(t0),
                ..full.clone()
            },
            &opts,
        )
        .unwrap();
        assert_eq!(seeded.quality.iterations, 0);
        assert!((seeded.translation.unwrap().norm() - 1.0).abs() < 1e-12);
        let (re, te) = pose_error_deg(&seeded.rotation, &seeded.translation.unwrap(), &rg, &tg);
        let (rf, tf) = pose_error_deg(&full.rotation, &full.translation.unwrap(), &rg, &tg);
        assert!(
            re.max(te) < rf.max(tf) + 0.05,
            "seeded {re}°/{te}° vs LO-RANSAC {rf}°/{tf}°"
        );
        let common = (0..full.inliers.len())
            .filter(|&i| full.inliers[i] == seeded.inliers[i])
            .count();
        assert!(common as f64 > 0.98 * full.inliers.len() as f64);
    }
    // invalid initial poses
    let inst = &generate_sets(&cfg)[0];
    let good = estimate_on(inst, &opts).unwrap();
    let bad_r = Matrix3::identity() * 2.0;
    let t = Vector3::new(1.0, 0.0, 0.0);
    for (r, t) in [
        (bad_r, t),
        (Matrix3::identity(), Vector3::zeros()),
        (Matrix3::identity(), Vector3::new(f64::NAN, 0.0, 1.0)),
        (-Matrix3::identity(), t),
    ] {
        assert!(matches!(
            refine_relative_pose_weighted(
                &inst.points_a,
                &inst.points_b,
                &inst.camera,
                &inst.camera,
                None,
                &RelativePose {
                    rotation: r,
                    translation: Some(t),
                    ..good.clone()
                },
                &opts
            ),
            Err(PoseError::Input(PoseInputError::InvalidOptions(_)))
        ));
    }
}

#[test]
fn invalid_weights_are_errors() {
    let cfg = SyntheticConfig {
        instances: 1,
        num_points: 100,
        ..Default::default()
    };
    let inst = &generate_sets(&cfg)[0];
    let run = |w: &[f64]| {
        estimate_relative_pose_weighted(
            &inst.points_a,
            &inst.points_b,
            &inst.camera,
            &inst.camera,
            None,
            Some(w),
            &RansacOptions::default(),
        )
    };
    assert!(matches!(
        run(&[1.0; 99]),
        Err(PoseError::Input(PoseInputError::LengthMismatch {
            a: 100,
            b: 99
        }))
    ));
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let mut w = vec![1.0; 100];
        w[42] = bad;
        assert!(
            matches!(run(&w), Err(PoseError::Input(PoseInputError::InvalidOptions(ref m))) if m.contains("weight 42")),
            "{bad}"
        );
    }
}

#[test]
fn prosac_uses_priority() {
    let cfg = SyntheticConfig {
        instances: 2,
        num_points: 1000,
        outlier_ratio: 0.8,
        ..Default::default()
    };
    for inst in generate_sets(&cfg) {
        // Scores that rank true matches first (with some noise).
        let prio: Vec<f32> = inst
            .is_inlier
            .iter()
            .enumerate()
            .map(|(i, &t)| (t as u8 as f32) + (i % 7) as f32 * 0.1)
            .collect();
        // The priority orders the samples; it does not shorten the run (the stopping rule is the
        // uniform one), so its benefit shows under a small budget: 200 samples at 20% inliers find an
        // all-inlier sample with probability ~6% uniformly, and at once from the top of the order.
        let opts = RansacOptions {
            max_iterations: 200,
            min_iterations: 200,
            ..Default::default()
        };
        let with = estimate_relative_pose(
            &inst.points_a,
            &inst.points_b,
            &inst.camera,
            &inst.camera,
            Some(&prio),
            &opts,
        )
        .unwrap();
        let without_inliers = estimate_on(&inst, &opts).map_or(0, |p| p.num_inliers);
        assert!(
            with.num_inliers > without_inliers,
            "{} vs {without_inliers} inliers",
            with.num_inliers
        );
        let (rg, tg) = inst.ground_truth();
        let (re, te) = pose_error_deg(&with.rotation, &with.translation.unwrap(), &rg, &tg);
        assert!(
            re < 0.3 && te < 1.5,
            "{re} {te} {} inliers, {} iterations",
            with.num_inliers,
            with.quality.iterations
        );
    }
}

#[test]
fn degenerate_inputs_are_errors() {
    let c = cfg_small();
    let inst = &generate_sets(&c)[0];
    let (a, b) = (&inst.points_a, &inst.points_b);
    let o = RansacOptions::default();
    let cam = cam();
    assert!(matches!(
        estimate_relative_pose(&a[..3], &b[..3], &cam, &cam, None, &o),
        Err(PoseError::NoPose(NoPose::TooFewCorrespondences {
            have: 3,
            ..
        }))
    ));
    assert!(matches!(
        estimate_relative_pose(a, &b[..10], &cam, &cam, None, &o),
        Err(PoseError::Input(PoseInputError::LengthMismatch { .. }))
    ));
    assert!(matches!(
        estimate_relative_pose(a, b, &cam, &cam, Some(&[1.0; 3]), &o),
        Err(PoseError::Input(PoseInputError::LengthMismatch { .. }))
    ));
    let mut bad = a.clone();
    bad[7][1] = f64::NAN;
    assert!(matches!(
        estimate_relative_pose(&bad, b, &cam, &cam, None, &o),
        Err(PoseError::Input(PoseInputError::NonFinite(_)))
    ));
    bad[7][1] = f64::INFINITY;
    assert!(matches!(
        estimate_relative_pose(&bad, b, &cam, &cam, None, &o),
        Err(PoseError::Input(PoseInputError::NonFinite(_)))
    ));
    let mut badcam = cam;
    badcam.fx = 0.0;
    assert!(matches!(
        estimate_relative_pose(a, b, &badcam, &cam, None, &o),
        Err(PoseError::Input(PoseInputError::InvalidCamera(_)))
    ));
    // All points on a line.
    let line_a: Vec<[f64; 2]> = (0..100)
        .map(|i| [3.0 * i as f64, 2.0 * i as f64 + 1.0])
        .collect();
    let line_b: Vec<[f64; 2]> = (0..100)
        .map(|i| [3.0 * i as f64 + 5.0, 2.0 * i as f64])
        .collect();
    assert!(matches!(
        estimate_relative_pose(&line_a, &line_b, &cam, &cam, None, &o),
        Err(PoseError::NoPose(NoPose::Degenerate(_)))
    ));
    // The same correspondence repeated.
    let same_a = vec![[100.0, 200.0]; 50];
    let same_b = vec![[110.0, 190.0]; 50];
    assert!(matches!(
        estimate_relative_pose(&same_a, &same_b, &cam, &cam, None, &o),
        Err(PoseError::NoPose(NoPose::Degenerate(_)))
    ));
    // Four distinct correspondences repeated many times (plus spread, so the line test passes).
    let four_a: Vec<[f64; 2]> = (0..60)
        .map(|i| [[10.0, 10.0], [600.0, 20.0], [30.0, 400.0], [500.0, 450.0]][i % 4])
        .collect();
    let four_b: Vec<[f64; 2]> = four_a.iter().map(|p| [p[0] + 3.0, p[1] - 2.0]).collect();
    assert!(matches!(
        estimate_relative_pose(&four_a, &four_b, &cam, &cam, None, &o),
        Err(PoseError::NoPose(NoPose::Degenerate(_)))
    ));
    // Zero motion: identical images are a rotation (the identity) without translation.
    let r = estimate_relative_pose(a, a, &cam, &cam, None, &o).unwrap();
    assert_eq!(r.configuration, TwoViewConfiguration::Panoramic);
    assert!(r.translation.is_none());
    assert!((r.rotation - Matrix3::identity()).norm() < 1e-9);
    // Pure rotation: b is a rotated view of a (no translation).
    let rot = Rotation3::from_euler_angles(0.02, -0.05, 0.03).into_inner();
    let rotated: Vec<[f64; 2]> = a
        .iter()
        .map(|p| {
            let x = cam.normalize(*p);
            let q = rot * Vector3::new(x[0], x[1], 1.0);
            cam.denormalize([q.x / q.z, q.y / q.z])
        })
        .collect();
    let r = estimate_relative_pose(a, &rotated, &cam, &cam, None, &o).unwrap();
    assert_eq!(r.configuration, TwoViewConfiguration::Panoramic);
    assert!(r.translation.is_none());
    assert!(rotation_error_deg(&r.rotation, &rot) < 1e-6);
    // Pure noise: no consensus, or at least not a pose claiming many inliers.
    let mut rng = crate::util::rng::SplitMix64::new(3);
    let na: Vec<[f64; 2]> = (0..300)
        .map(|_| [rng.range(0.0, 639.0), rng.range(0.0, 479.0)])
        .collect();
    let nb: Vec<[f64; 2]> = (0..300)
        .map(|_| [rng.range(0.0, 639.0), rng.range(0.0, 479.0)])
        .collect();
    let strict = RansacOptions {
        min_inliers: 50,
        ..Default::default()
    };
    assert!(matches!(
        estimate_relative_pose(&na, &nb, &cam, &cam, None, &strict),
        Err(PoseError::NoPose(NoPose::NoConsensus { .. }))
    ));
    // Bad options.
    let bad_o = RansacOptions {
        threshold_px: -1.0,
        ..Default::default()
    };
    assert!(matches!(
        estimate_relative_pose(a, b, &cam, &cam, None, &bad_o),
        Err(PoseError::Input(PoseInputError::InvalidOptions(_)))
    ));
}

fn cfg_small() -> SyntheticConfig {
    SyntheticConfig {
        instances: 1,
        num_points: 300,
        ..Default::default()
    }
}

/// Dominant-plane instances: `off_plane` of the inliers in front of the plane, 40% outliers.
fn plane_sets(off_plane: f64, instances: usize, seed: u64) -> Vec<SyntheticInstance> {
    generate_sets(&SyntheticConfig {
        instances,
        num_points: 800,
        outlier_ratio: 0.4,
        noise_px: 0.3,
        seed,
        scene: crate::geometry::synthetic::SceneKind::DominantPlane { off_plane },
        ..Default::default()
    })
}

#[test]
fn a_dominant_plane_with_few_off_plane_points_gives_the_true_pose() {
    // 5-10% of the inliers off the plane: the case where LO-RANSAC stops on a wrong pose that explains
    // the plane. Every instance must come out within 2°, labelled planar.
    let opts = RansacOptions::default();
    for (k, inst) in plane_sets(0.05, 8, 11)
        .iter()
        .chain(&plane_sets(0.1, 8, 12))
        .enumerate()
    {
        let p = estimate_on(inst, &opts).unwrap_or_else(|e| panic!("instance {k}: {e}"));
        let (rg, tg) = inst.ground_truth();
        let err = pose_error_max_deg(&p.rotation, p.translation.as_ref(), &rg, &tg);
        assert!(err < 2.0, "instance {k}: {err}° ({:?})", p.quality);
        assert_eq!(
            p.configuration,
            TwoViewConfiguration::Planar,
            "instance {k}"
        );
        assert!(p.quality.off_plane_inliers >= 10, "{:?}", p.quality);
    }
}

#[test]
fn a_truly_planar_scene_is_the_true_pose_or_a_stated_ambiguity() {
    let opts = RansacOptions::default();
    let mut ambiguous = 0;
    for (k, inst) in plane_sets(0.0, 12, 13).iter().enumerate() {
        let (rg, tg) = inst.ground_truth();
        match estimate_on(inst, &opts) {
            Ok(p) => {
                let err = pose_error_max_deg(&p.rotation, p.translation.as_ref(), &rg, &tg);
                assert!(
                    err < 2.0,
                    "instance {k}: a wrong pose {err}° presented as the pose"
                );
                assert_eq!(p.configuration, TwoViewConfiguration::Planar);
            }
            Err(PoseError::NoPose(NoPose::PlanarAmbiguity {
                best, candidates, ..
            })) => {
                ambiguous += 1;
                // the best guess is the first candidate, refined like any pose
                assert_eq!(
                    (best.rotation, best.translation),
                    (candidates[0].0, Some(candidates[0].1))
                );
                assert_eq!(
                    best.num_inliers,
                    best.inliers.iter().filter(|&&b| b).count()
                );
                assert!(best.num_inliers > 0 && best.quality.rms_error_px.is_finite());
                let best = candidates
                    .iter()
                    .map(|(r, t)| pose_error_max_deg(r, Some(t), &rg, &tg))
                    .fold(f64::INFINITY, f64::min);
                assert!(
                    best < 2.0,
                    "instance {k}: the truth is not among the candidates ({best}°)"
                );
            }
            Err(e) => panic!("instance {k}: {e}"),
        }
    }
    // two valid decompositions are the rule for a plane in front of both cameras
    assert!(ambiguous >= 6, "{ambiguous} of 12 ambiguous");
}

#[test]
fn a_pure_rotation_is_panoramic_with_the_true_rotation() {
    let opts = RansacOptions::default();
    let sets = generate_sets(&SyntheticConfig {
        instances: 6,
        num_points: 600,
        baseline: 0.0,
        noise_px: 0.5,
        outlier_ratio: 0.3,
        ..Default::default()
    });
    for (k, inst) in sets.iter().enumerate() {
        let p = estimate_on(inst, &opts).unwrap();
        assert_eq!(
            p.configuration,
            TwoViewConfiguration::Panoramic,
            "instance {k}"
        );
        assert!(p.translation.is_none());
        let (rg, _) = inst.ground_truth();
        let err = rotation_error_deg(&p.rotation, &rg);
        assert!(err < 0.05, "instance {k}: {err}°");
        let sd = p.covariance[(0, 0)].sqrt().to_degrees();
        assert!(sd > 1e-5 && sd < 0.05, "rotation sd {sd}°");
        let true_in = inst.is_inlier.iter().filter(|&&v| v).count();
        assert!(p.num_inliers as f64 > 0.95 * true_in as f64);
    }
}

#[test]
fn a_small_baseline_keeps_its_translation() {
    // 5 cm at 2-10 m: ~1-7 px of parallax; the translation is observable and must be reported
    let opts = RansacOptions::default();
    let sets = generate_sets(&SyntheticConfig {
        instances: 6,
        num_points: 1000,
        baseline: 0.05,
        noise_px: 0.3,
        outlier_ratio: 0.3,
        ..Default::default()
    });
    for (k, inst) in sets.iter().enumerate() {
        let p = estimate_on(inst, &opts).unwrap();
        assert_ne!(
            p.configuration,
            TwoViewConfiguration::Panoramic,
            "instance {k}"
        );
        let (rg, tg) = inst.ground_truth();
        let err = pose_error_max_deg(&p.rotation, p.translation.as_ref(), &rg, &tg);
        assert!(err < 10.0, "instance {k}: {err}°");
    }
}
