//! MATCHA engines from Rust vs the PyTorch reference, on the tiny random-initialised fixtures written by
//! `tools/export_matcha.py --random-init --config tiny --mode {geometric,semantic,light} --height 96
//! --width 160 --fixtures` into `$MATCHA_CACHE/matcha-fixtures/tiny-<mode>/` (scripts or by hand; the test
//! fails with that instruction when they are missing).
//!
//! Stated tolerances: F_m and the keypoint descriptors within 1e-5 (max abs) of PyTorch; the Python side
//! measured ONNX Runtime vs PyTorch at ≤ 2e-6 for every stage of these fixtures.

use crate::common;

use std::path::Path;

use matcha::features::disk::DiskOptions;
use matcha::features::keypoints::SpreadOptions;
use matcha::features::matcha::{Matcha, MatchaEngines, MatchaOptions};
use matcha::features::FeatureExtractor;
use matcha::image::RgbImage;
use ndarray::{Array3, Array4, ArrayD};
use ndarray_npy::read_npy;

fn load_with_reference_noise(dir: &Path) -> MatchaEngines {
    let mut eng = MatchaEngines::load(dir, &common::cpu_runtime(), 0, true).unwrap();
    let noise: ArrayD<f32> = read_npy(dir.join("ref/noise.npy")).unwrap();
    let posterior: ArrayD<f32> = read_npy(dir.join("ref/posterior_noise.npy")).unwrap();
    eng.set_noise(noise, posterior).unwrap();
    eng
}

fn max_abs_diff<'a>(a: impl Iterator<Item = &'a f32>, b: impl Iterator<Item = &'a f32>) -> f32 {
    a.zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn parity(mode: &str, dim: usize) {
    let dir = common::matcha_fixture(mode);
    let mut eng = load_with_reference_noise(&dir);
    assert_eq!(eng.manifest().descriptor_dim, dim);
    let image = common::matcha_reference_image(&dir);
    let fm = eng.descriptor_map(&image).unwrap();
    let want: Array4<f32> = read_npy(dir.join("ref/descriptors.npy")).unwrap();
    assert_eq!(fm.shape(), &want.shape()[1..]);
    let d = max_abs_diff(fm.iter(), want.iter());
    eprintln!("{mode}: F_m max |Rust - PyTorch| = {d:e}");
    assert!(d <= 1e-5, "{mode}: F_m differs from PyTorch by {d}");

    let kp: Array3<f32> = read_npy(dir.join("ref/keypoints.npy")).unwrap();
    let pts: Vec<[f32; 2]> = kp
        .outer_iter()
        .next()
        .unwrap()
        .rows()
        .into_iter()
        .map(|r| [r[0], r[1]])
        .collect();
    let desc = eng.sample(&fm, &pts, [image.width(), image.height()]);
    let want: Array3<f32> = read_npy(dir.join("ref/keypoint_descriptors.npy")).unwrap();
    assert_eq!(desc.shape(), &want.shape()[1..]);
    let d = max_abs_diff(desc.iter(), want.iter());
    eprintln!("{mode}: keypoint descriptors max |Rust - PyTorch| = {d:e}");
    assert!(
        d <= 1e-5,
        "{mode}: keypoint descriptors differ from PyTorch by {d}"
    );
    for row in desc.rows() {
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-5);
    }
}

#[test]
fn tiny_geometric_matches_pytorch() {
    parity("geometric", 64);
}

#[test]
fn tiny_semantic_matches_pytorch() {
    parity("semantic", 80);
}

#[test]
fn tiny_light_matches_pytorch() {
    parity("light", 32);
}

#[test]
fn noise_is_seeded_and_matters() {
    let dir = common::matcha_fixture("light");
    let image = common::matcha_reference_image(&dir);
    let rt = common::cpu_runtime();
    let a = MatchaEngines::load(&dir, &rt, 1, false)
        .unwrap()
        .descriptor_map(&image)
        .unwrap();
    let b = MatchaEngines::load(&dir, &rt, 1, false)
        .unwrap()
        .descriptor_map(&image)
        .unwrap();
    let c = MatchaEngines::load(&dir, &rt, 2, false)
        .unwrap()
        .descriptor_map(&image)
        .unwrap();
    assert_eq!(a, b);
    assert!(max_abs_diff(a.iter(), c.iter()) > 1e-4);
}

#[test]
fn keypoints_of_a_resized_image_map_to_the_same_descriptors() {
    let dir = common::matcha_fixture("light");
    let mut eng = load_with_reference_noise(&dir);
    let image = common::matcha_reference_image(&dir);
    let (w, h) = image.dimensions();
    // nearest-neighbour 2x enlargement resized back by the bilinear resize gives the same input tensor
    let big = RgbImage::from_fn(2 * w, 2 * h, |x, y| *image.get_pixel(x / 2, y / 2));
    let fm_small = eng.descriptor_map(&image).unwrap();
    let fm_big = eng.descriptor_map(&big).unwrap();
    assert!(max_abs_diff(fm_small.iter(), fm_big.iter()) < 1e-5);
    let pts = [[10.0f32, 20.0], [77.5, 41.25], [159.0, 95.0]];
    let big_pts: Vec<[f32; 2]> = pts
        .iter()
        .map(|p| [2.0 * p[0] + 0.5, 2.0 * p[1] + 0.5])
        .collect();
    let a = eng.sample(&fm_small, &pts, [w, h]);
    let b = eng.sample(&fm_big, &big_pts, [2 * w, 2 * h]);
    assert!(max_abs_diff(a.iter(), b.iter()) < 1e-5);
}

#[test]
fn tampered_manifest_is_rejected() {
    let src = common::matcha_fixture("light");
    let dst = std::env::temp_dir().join(format!("matcha-tamper-{}", std::process::id()));
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
        }
    }
    let rt = common::cpu_runtime();
    assert!(MatchaEngines::load(&dst, &rt, 0, true).is_ok());
    let mut bytes = std::fs::read(dst.join("null_prompt_embeds.f32")).unwrap();
    bytes[0] ^= 1;
    std::fs::write(dst.join("null_prompt_embeds.f32"), &bytes).unwrap();
    let err = MatchaEngines::load(&dst, &rt, 0, true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("sha256"), "{err}");
    let m = std::fs::read_to_string(dst.join("manifest.json")).unwrap();
    std::fs::write(
        dst.join("manifest.json"),
        m.replace("\"mode\": \"light\"", "\"mode\": \"geometric\""),
    )
    .unwrap();
    assert!(MatchaEngines::load(&dst, &rt, 0, false).is_err());
    std::fs::remove_dir_all(&dst).unwrap();
}

#[test]
fn matcha_extractor_describes_disk_keypoints() {
    let rt = common::cpu_runtime();
    let opts = MatchaOptions {
        engines_dir: common::matcha_fixture("geometric"),
        ..MatchaOptions::default()
    };
    let disk = DiskOptions {
        max_keypoints: 256,
        detection_threshold: 0.0,
        nms_window: 5,
        resize_long_side: None,
        spread: SpreadOptions::OFF,
    };
    let mut m = Matcha::new(&rt, &opts, disk).unwrap();
    assert_eq!(m.name(), "matcha");
    assert_eq!(m.descriptor_dim(), 64);
    let image = common::photo("graf1.png");
    let f = m.extract(&image).unwrap();
    assert!(f.len() > 50, "only {} keypoints", f.len());
    assert_eq!(f.descriptors.dim(), (f.len(), 64));
    assert_eq!(f.image_size, [image.width(), image.height()]);
    for row in f.descriptors.rows() {
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-4);
    }
    // same keypoints through `describe` give the same descriptors
    let kp = ndarray::Array2::from_shape_fn((f.len(), 2), |(i, j)| f.keypoints[i][j]);
    let d = m.describe(&image, kp.view()).unwrap();
    assert!(max_abs_diff(d.iter(), f.descriptors.iter()) < 1e-6);
}
