use super::*;
use crate::util::rng::SplitMix64;
use nalgebra::{Rotation3, Vector3};

fn cam() -> PinholeCamera {
    PinholeCamera::new(525.0, 525.0, 319.5, 239.5).unwrap()
}

/// Points on the plane z = 3 + 0.2x seen from a and from b = (R, t); `outliers` random matches.
fn planar(n: usize, outliers: usize, noise: f64, seed: u64) -> (Vec<[f64; 2]>, Vec<[f64; 2]>) {
    let mut rng = SplitMix64::new(seed);
    let r = Rotation3::from_euler_angles(0.05, -0.1, 0.02).into_inner();
    let t = Vector3::new(0.4, 0.05, 0.1);
    let c = cam();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    while a.len() < n {
        let x = rng.range(-2.0, 2.0);
        let y = rng.range(-1.5, 1.5);
        let p = Vector3::new(x, y, 3.0 + 0.2 * x);
        let q = r * p + t;
        let (Some(pa), Some(pb)) = (c.project([p.x, p.y, p.z]), c.project([q.x, q.y, q.z])) else {
            continue;
        };
        if !(0.0..640.0).contains(&pa[0]) || !(0.0..480.0).contains(&pa[1]) {
            continue;
        }
        a.push([pa[0] + noise * rng.normal(), pa[1] + noise * rng.normal()]);
        b.push([pb[0] + noise * rng.normal(), pb[1] + noise * rng.normal()]);
    }
    for _ in 0..outliers {
        a.push([rng.range(0.0, 640.0), rng.range(0.0, 480.0)]);
        b.push([rng.range(0.0, 640.0), rng.range(0.0, 480.0)]);
    }
    (a, b)
}

#[test]
fn finds_the_plane_among_outliers() {
    let (a, b) = planar(300, 200, 0.3, 1);
    let h = estimate_homography(&a, &b, &cam(), &cam(), None, &RansacOptions::default()).unwrap();
    let true_in = h.inliers[..300].iter().filter(|&&v| v).count();
    let false_in = h.inliers[300..].iter().filter(|&&v| v).count();
    assert!(true_in > 285, "{true_in}");
    assert!(false_in < 5, "{false_in}");
    // the pixel matrix maps a's points onto b's
    for i in 0..300 {
        let q = h.matrix * Vector3::new(a[i][0], a[i][1], 1.0);
        let d = ((q.x / q.z - b[i][0]).powi(2) + (q.y / q.z - b[i][1]).powi(2)).sqrt();
        assert!(d < 2.5, "{i}: {d}");
    }
    // deterministic
    let again =
        estimate_homography(&a, &b, &cam(), &cam(), None, &RansacOptions::default()).unwrap();
    assert_eq!(again.inliers, h.inliers);
}

#[test]
fn no_plane_no_consensus() {
    let mut rng = SplitMix64::new(5);
    let a: Vec<[f64; 2]> = (0..200)
        .map(|_| [rng.range(0.0, 640.0), rng.range(0.0, 480.0)])
        .collect();
    let b: Vec<[f64; 2]> = (0..200)
        .map(|_| [rng.range(0.0, 640.0), rng.range(0.0, 480.0)])
        .collect();
    let opts = RansacOptions {
        min_inliers: 30,
        ..Default::default()
    };
    assert!(matches!(
        estimate_homography(&a, &b, &cam(), &cam(), None, &opts),
        Err(PoseError::NoPose(NoPose::NoConsensus { .. }))
    ));
}
