//! Landmark tracking without the network: each keyframe landmark is projected into the new image with the
//! predicted pose and its keyframe patch is aligned there photometrically (Lucas–Kanade, affine, from
//! [`crate::matching::refine`]) on a two-level pyramid — half resolution first, which doubles the basin,
//! then full resolution.
//!
//! Why against the keyframe and not frame to frame: every observation then refers to the detection the
//! landmark was triangulated from, so tracking adds no drift between keyframes (a frame-to-frame chain of
//! flows accumulates a random walk of the patch position). Why projection as the start: the landmarks are
//! 3-D, so a constant-velocity prediction puts them within a few pixels even in turns, where image-space
//! flow would need a deep pyramid. What it does not do: detect new points (keyframes do, with the network),
//! or decide the pose (the robust PnP does, and rejects a patch that locked onto the wrong place).
//!
//! The monocular initialisation has no 3-D points yet: [`follow_points`] aligns the reference frame's
//! patches from their last found positions instead (the motion between two frames is what the basin must
//! cover), so that frames without enough parallax are answered without the network.

use std::sync::Arc;

use image::GrayImage;
use nalgebra::{Isometry3, Point3, Vector3};

use crate::geometry::PinholeCamera;
use crate::matching::refine::{refine_point, RefineOptions, WarpModel};

/// A grayscale image and its half-resolution copy.
#[derive(Clone)]
pub(crate) struct Pyramid {
    pub full: Arc<GrayImage>,
    pub half: GrayImage,
}

impl Pyramid {
    pub fn new(full: Arc<GrayImage>) -> Self {
        let (w, h) = full.dimensions();
        let half = image::imageops::resize(
            full.as_ref(),
            (w / 2).max(1),
            (h / 2).max(1),
            image::imageops::FilterType::Triangle,
        );
        Self { full, half }
    }
}

/// Pixel `p` at full resolution in half-resolution coordinates (pixel centres at integers in both).
fn to_half(p: [f32; 2]) -> [f32; 2] {
    [(p[0] + 0.5) * 0.5 - 0.5, (p[1] + 0.5) * 0.5 - 0.5]
}

fn from_half(p: [f32; 2]) -> [f32; 2] {
    [(p[0] + 0.5) * 2.0 - 0.5, (p[1] + 0.5) * 2.0 - 0.5]
}

fn coarse() -> RefineOptions {
    RefineOptions {
        enabled: true,
        model: WarpModel::Affine,
        patch_radius: 5,
        max_shift_px: 6.0,
        min_zncc: 0.7,
        ..RefineOptions::default()
    }
}

fn fine() -> RefineOptions {
    RefineOptions {
        enabled: true,
        model: WarpModel::Affine,
        max_shift_px: 3.0,
        ..RefineOptions::default()
    }
}

/// Tracks the keyframe detections `keypoints` (with world points `points`, seen in `keyframe`) into
/// `current`, starting at their projection with `predicted` (`world_from_camera`); `None` where the
/// projection leaves the image or the alignment fails. `select`: which landmarks to try.
pub(crate) fn track_landmarks(
    keyframe: &Pyramid,
    keypoints: &[[f32; 2]],
    points: &[Vector3<f64>],
    select: &[usize],
    current: &Pyramid,
    camera: &PinholeCamera,
    predicted: &Isometry3<f64>,
) -> Vec<(usize, [f32; 2])> {
    let (w, h) = current.full.dimensions();
    let (coarse, fine) = (coarse(), fine());
    let mut out = Vec::with_capacity(select.len());
    for &i in select {
        let c = predicted.inverse_transform_point(&Point3::from(points[i]));
        let Some(px) = camera.project([c.x, c.y, c.z]) else {
            continue;
        };
        if !(px[0] >= 0.0 && px[1] >= 0.0 && px[0] <= (w - 1) as f64 && px[1] <= (h - 1) as f64) {
            continue;
        }
        let start = [px[0] as f32, px[1] as f32];
        if let Some(p) = align(keyframe, keypoints[i], current, start, &coarse, &fine) {
            out.push((i, p));
        }
    }
    out
}

/// Follows the detections `keypoints` of `reference` into `current` without 3-D points: each
/// `(index, start)` of `followed` is the keypoint's last known position (in the previous frame), where its
/// reference patch is aligned from. The template is always the reference's patch, so following adds no
/// drift from frame to frame; the start only has to lie in the two-level basin (≈ 12 px). Returns the
/// points found, `(index, position)`; the others are dropped.
pub(crate) fn follow_points(
    reference: &Pyramid,
    keypoints: &[[f32; 2]],
    followed: &[(usize, [f32; 2])],
    current: &Pyramid,
) -> Vec<(usize, [f32; 2])> {
    let (coarse, fine) = (coarse(), fine());
    followed
        .iter()
        .filter_map(|&(i, start)| {
            let kp = *keypoints.get(i)?;
            align(reference, kp, current, start, &coarse, &fine).map(|p| (i, p))
        })
        .collect()
}

/// The patch of `keyframe` at `kp` aligned in `current` from `start`: half resolution, then full.
fn align(
    keyframe: &Pyramid,
    kp: [f32; 2],
    current: &Pyramid,
    start: [f32; 2],
    coarse: &RefineOptions,
    fine: &RefineOptions,
) -> Option<[f32; 2]> {
    let mid = refine_point(
        &keyframe.half,
        to_half(kp),
        &current.half,
        to_half(start),
        coarse,
    )
    .map(from_half)
    .unwrap_or(start);
    refine_point(&keyframe.full, kp, &current.full, mid, fine).ok()
}

#[cfg(test)]
pub(in crate::vo) mod tests {
    use super::*;

    /// A smooth random texture.
    /// A smooth texture (a few sinusoids), 8-bit; also the monocular keyframe tests' scene.
    pub(in crate::vo) fn tex(x: f64, y: f64) -> u8 {
        let v = 128.0
            + 50.0 * (x * 0.21).sin() * (y * 0.17).cos()
            + 40.0 * (x * 0.053 + y * 0.071).sin()
            + 30.0 * ((x * 0.37).cos() * (y * 0.29).sin());
        v.clamp(0.0, 255.0) as u8
    }

    #[test]
    fn a_shifted_texture_is_found_from_a_prediction_several_pixels_off() {
        // the texture shifted by (7.3, -4.6) px
        let (dx, dy) = (7.3, -4.6);
        let a = GrayImage::from_fn(160, 120, |x, y| image::Luma([tex(x as f64, y as f64)]));
        let b = GrayImage::from_fn(160, 120, |x, y| {
            image::Luma([tex(x as f64 - dx, y as f64 - dy)])
        });
        let (pa, pb) = (Pyramid::new(Arc::new(a)), Pyramid::new(Arc::new(b)));
        let cam = PinholeCamera::new(100.0, 100.0, 79.5, 59.5).unwrap();
        // a landmark straight ahead of the keyframe at the pixel (60, 50); the prediction is the identity,
        // so the start is 8.6 px from the truth
        let kp = [60.0f32, 50.0];
        let n = cam.normalize([60.0, 50.0]);
        let points = vec![Vector3::new(n[0] * 2.0, n[1] * 2.0, 2.0)];
        let got = track_landmarks(&pa, &[kp], &points, &[0], &pb, &cam, &Isometry3::identity());
        assert_eq!(got.len(), 1);
        let p = got[0].1;
        assert!(
            (p[0] - 67.3).abs() < 0.1 && (p[1] - 45.4).abs() < 0.1,
            "{p:?}"
        );
    }

    #[test]
    fn reference_points_are_followed_from_their_last_position_and_lost_ones_dropped() {
        let shifted = |dx: f64, dy: f64| {
            let img = GrayImage::from_fn(160, 120, |x, y| {
                image::Luma([tex(x as f64 - dx, y as f64 - dy)])
            });
            Pyramid::new(Arc::new(img))
        };
        let reference = shifted(0.0, 0.0);
        let keypoints = [[60.0f32, 50.0], [90.0, 70.0], [158.5, 60.0]];
        // frame 1: 6 px right, 3 px up; every point starts at its keypoint
        let starts: Vec<(usize, [f32; 2])> = keypoints.iter().copied().enumerate().collect();
        let one = follow_points(&reference, &keypoints, &starts, &shifted(6.0, -3.0));
        // the point at the right border leaves the image (its patch does not fit)
        assert_eq!(one.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![0, 1]);
        // frame 2: another 9 px right, 5 px down, 11 px from the frame-1 positions but 15 px from the
        // keypoints: found from the last positions
        let two = follow_points(&reference, &keypoints, &one, &shifted(15.0, 2.0));
        assert_eq!(two.len(), 2);
        for (i, p) in two {
            let want = [keypoints[i][0] + 15.0, keypoints[i][1] + 2.0];
            assert!(
                (p[0] - want[0]).abs() < 0.1 && (p[1] - want[1]).abs() < 0.1,
                "{i}: {p:?} vs {want:?}"
            );
        }
        // an index outside the keypoints is dropped, not a panic
        assert!(follow_points(&reference, &keypoints, &[(7, [1.0, 1.0])], &reference).is_empty());
    }
}
