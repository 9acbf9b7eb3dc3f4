//! Tests of the monocular depth: the viewing-ray parallax and where a carried landmark is observed.

use super::super::{Keyframe, KeyframeFeatures};
use super::*;
use crate::vo::flow::tests::tex;
use crate::vo::VoOptions;
use image::GrayImage;
use nalgebra::{Matrix6, Translation3};
use ndarray::Array2;
use std::sync::Arc;

fn features(keypoints: Vec<[f32; 2]>, image: GrayImage) -> Features {
    let n = keypoints.len();
    // descriptor k is the unit vector k: each keypoint matches its namesake only
    let descriptors = Array2::from_shape_fn((n, n), |(r, c)| f32::from(r == c));
    Features {
        keypoints,
        scores: vec![1.0; n],
        descriptors,
        image_size: [image.width(), image.height()],
        gray: Some(GrayFrame(Arc::new(image))),
    }
}

#[test]
fn a_carried_landmark_is_observed_where_the_keyframe_saw_it_not_at_the_fresh_detection() {
    // a wall at depth 2 in front of the keyframe (identity); the frame moved 0.03 to the right, so
    // the wall's texture moves 500 · 0.03 / 2 = 7.5 px to the left
    let camera = crate::geometry::PinholeCamera::new(500.0, 500.0, 159.5, 119.5).unwrap();
    let shift = 7.5;
    let a = GrayImage::from_fn(320, 240, |x, y| image::Luma([tex(x as f64, y as f64)]));
    let b = GrayImage::from_fn(320, 240, |x, y| {
        image::Luma([tex(x as f64 + shift, y as f64)])
    });
    let mut keypoints = Vec::new();
    for gy in 0..4 {
        for gx in 0..6 {
            keypoints.push([50.0 + 45.0 * gx as f32, 50.0 + 45.0 * gy as f32]);
        }
    }
    let points: Vec<Vector3<f64>> = keypoints
        .iter()
        .map(|k| {
            let n = camera.normalize([k[0] as f64, k[1] as f64]);
            Vector3::new(2.0 * n[0], 2.0 * n[1], 2.0)
        })
        .collect();
    let keyframe_features = features(keypoints.clone(), a.clone());
    let mut vo = VisualOdometry::monocular(camera, VoOptions::default()).unwrap();
    // no new landmark is asked of this frame (it sees only the keyframe's)
    vo.options.min_stereo_points = 0;
    let n = keypoints.len();
    vo.keyframes.push_back(Keyframe {
        world_from_camera: Isometry3::identity(),
        covariance: Matrix6::zeros(),
        points,
        descriptors: keyframe_features.descriptors.clone(),
        keypoints: keypoints.clone(),
        pyramid: Some(super::super::super::flow::Pyramid::new(Arc::new(a))),
        ids: (0..n as u64).collect(),
        extra: Vec::new(),
        features: Some(KeyframeFeatures {
            keypoints: keypoints.clone(),
            descriptors: keyframe_features.descriptors.clone(),
            landmark_of: (0..n as u32).map(Some).collect(),
        }),
    });
    // the frame detects each point 0.8 px right and 0.6 px up of where it is
    let truth: Vec<[f32; 2]> = keypoints
        .iter()
        .map(|k| [k[0] - shift as f32, k[1]])
        .collect();
    let detected: Vec<[f32; 2]> = truth.iter().map(|k| [k[0] + 0.8, k[1] - 0.6]).collect();
    let frame = features(detected.clone(), b);
    let pose = Isometry3::from_parts(Translation3::new(0.03, 0.0, 0.0), Default::default());
    // off (the default), the new keyframe observes the detections
    vo.options.monocular.observe_carried_at_patch = false;
    let off = vo.monocular_points(&pose, &frame);
    assert!(off.camera.len() >= n - 2);
    for k in 0..off.camera.len() {
        assert_eq!(off.pixel(k, &frame.keypoints), detected[off.keypoint[k]]);
    }
    vo.options.monocular.observe_carried_at_patch = true;
    let out = vo.monocular_points(&pose, &frame);
    // every landmark is carried, at the point the keyframe observed, not at the detection
    let carried: Vec<usize> = (0..out.camera.len())
        .filter(|&k| out.landmark[k].is_some())
        .collect();
    assert!(carried.len() >= n - 2, "{} of {n} carried", carried.len());
    let errors: Vec<f32> = carried
        .iter()
        .map(|&k| {
            let (i, at) = (out.keypoint[k], out.pixel(k, &frame.keypoints));
            (at[0] - truth[i][0]).hypot(at[1] - truth[i][1])
        })
        .collect();
    // the detections are 1 px off; where the patch alignment refuses (a weak texture), the detection
    let aligned = errors.iter().filter(|e| **e < 0.1).count();
    assert!(aligned >= n - 2, "{errors:?}");
    assert!(errors.iter().all(|e| *e < 1.01), "{errors:?}");
    // the new keyframe observes its carried landmarks there (the points later frames follow), and
    // keeps the same positions among all its features (which the next keyframe matches against)
    vo.add_keyframe(&pose, &Matrix6::zeros(), &out, &frame);
    let kf = vo.keyframes.back().unwrap();
    let all = kf.features.as_ref().unwrap();
    for k in 0..out.camera.len() {
        assert_eq!(kf.keypoints[k], out.pixel(k, &frame.keypoints));
        assert_eq!(all.keypoints[out.keypoint[k]], kf.keypoints[k]);
    }
}

#[test]
fn the_median_ray_angle_is_the_image_motion_as_an_angle() {
    let camera = crate::geometry::PinholeCamera::new(500.0, 500.0, 320.0, 240.0).unwrap();
    let a = [[320.0, 240.0], [100.0, 50.0], [600.0, 400.0]];
    assert_eq!(median_ray_angle_deg(&camera, &a, &a), 0.0);
    // the centre moved by 500·tan(2°) px: 2° between its rays; the others move as far in pixels,
    // which is a smaller angle off the axis, so the median is below 2°
    let d = 500.0 * 2f64.to_radians().tan();
    let b: Vec<[f64; 2]> = a.iter().map(|p| [p[0] + d, p[1]]).collect();
    let m = median_ray_angle_deg(&camera, &a, &b);
    assert!(m > 1.5 && m < 2.0, "{m}");
    let centre = median_ray_angle_deg(&camera, &a[..1], &b[..1]);
    assert!((centre - 2.0).abs() < 1e-9, "{centre}");
    // nothing to measure
    assert_eq!(median_ray_angle_deg(&camera, &[], &[]), 0.0);
}
