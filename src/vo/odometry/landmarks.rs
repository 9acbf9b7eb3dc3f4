//! Landmarks: a frame's stereo points (left ↔ right mutual nearest neighbours, refined along the row and
//! triangulated), the PnP of a frame's left features against a keyframe's landmarks (each observation
//! refined to the keyframe's detection), and new keyframes from a frame's points.

use nalgebra::{Isometry3, Matrix6};
use ndarray::Array2;

use super::super::flow::Pyramid;
use super::{FramePoints, Keyframe, KeyframeFeatures, Rig, VisualOdometry};
use crate::features::Features;
use crate::geometry::triangulation::{triangulate, TriangulationLimits};
use crate::geometry::{estimate_absolute_pose, AbsolutePose};
use crate::matching::mnn::mutual_nearest_neighbors;
use crate::matching::refine::{refine_matches, RefineOptions, WarpModel};
use crate::matching::Match;
use image::GrayImage;

impl VisualOdometry {
    /// Left ↔ right mutual nearest neighbours, triangulated with the rig and checked (`None` for a
    /// monocular rig).
    pub(super) fn stereo_points(&self, left: &Features, right: &Features) -> Option<FramePoints> {
        let Rig::Stereo(rig) = &self.rig else {
            return None;
        };
        let matches =
            mutual_nearest_neighbors(&left.descriptors, &right.descriptors, &self.options.mnn);
        let limits = TriangulationLimits {
            max_error_px: self.options.stereo_max_error_px,
            min_parallax_deg: 0.0,
            min_depth: self.options.min_depth_m,
        };
        let max_depth = self.options.max_depth_baselines * rig.baseline();
        let focal = [rig.left.fx, rig.left.fy];
        let mut out = FramePoints::default();
        // the right position that matches the left detection photometrically (a rectified pair differs by
        // a shift along the row; a translation is enough for small patches of any calibrated pair)
        let refined = match (&left.gray, &right.gray) {
            (Some(gl), Some(gr)) if self.options.refine => Some(
                refine_matches(
                    &gl.0,
                    &left.keypoints,
                    &gr.0,
                    &right.keypoints,
                    &matches,
                    &stereo_refine(),
                )
                .points_b,
            ),
            _ => None,
        };
        for (k, m) in matches.iter().enumerate() {
            let kl = left.keypoints[m.a as usize];
            let kr = refined
                .as_ref()
                .and_then(|r| r[k])
                .unwrap_or(right.keypoints[m.b as usize]);
            let (Ok(nl), Ok(nr)) = (
                rig.left.try_normalize([kl[0] as f64, kl[1] as f64]),
                rig.right.try_normalize([kr[0] as f64, kr[1] as f64]),
            ) else {
                continue;
            };
            if let Some(x) = triangulate(nl, nr, &rig.rotation, &rig.translation, focal, &limits) {
                if x.z <= max_depth {
                    out.push(m.a as usize, x, None, None);
                }
            }
        }
        Some(out)
    }

    /// PnP of the left features against keyframe `k`'s landmarks.
    pub(super) fn localize(&self, k: usize, left: &Features) -> Option<AbsolutePose> {
        let kf = &self.keyframes[k];
        let matches =
            mutual_nearest_neighbors(&left.descriptors, &kf.descriptors, &self.options.mnn);
        if matches.len() < self.options.pnp.min_inliers {
            return None;
        }
        let world: Vec<[f64; 3]> = matches
            .iter()
            .map(|m| {
                let p = kf.points[m.b as usize];
                [p.x, p.y, p.z]
            })
            .collect();
        // the current position of each landmark's keyframe detection (so every observation refers to the
        // point that was triangulated), where the photometric refinement succeeds
        let swapped: Vec<Match> = matches
            .iter()
            .map(|m| Match {
                a: m.b,
                b: m.a,
                score: m.score,
            })
            .collect();
        let pixels: Vec<[f64; 2]> = aligned_in_b(
            kf.pyramid.as_ref().map(|p| p.full.as_ref()),
            &kf.keypoints,
            left.gray.as_ref().map(|g| g.0.as_ref()),
            &left.keypoints,
            &swapped,
            self.options.refine,
        )
        .into_iter()
        .map(|p| [p[0] as f64, p[1] as f64])
        .collect();
        match estimate_absolute_pose(&world, &pixels, self.rig.camera(), &self.options.pnp) {
            Ok(p) => Some(p),
            Err(e) => {
                log::debug!("vo: PnP against keyframe {k} failed: {e}");
                None
            }
        }
    }

    pub(super) fn add_keyframe(
        &mut self,
        pose: &Isometry3<f64>,
        covariance: &Matrix6<f64>,
        stereo: &FramePoints,
        left: &Features,
    ) {
        let points = stereo
            .camera
            .iter()
            .map(|x| pose * nalgebra::Point3::from(*x))
            .map(|p| p.coords)
            .collect();
        let dim = left.descriptor_dim();
        let mut descriptors = Array2::zeros((stereo.keypoint.len(), dim));
        for (row, &i) in stereo.keypoint.iter().enumerate() {
            descriptors.row_mut(row).assign(&left.descriptors.row(i));
        }
        // a monocular keyframe keeps all its features: the next keyframe triangulates against them
        let features = matches!(self.rig, Rig::Monocular(_)).then(|| {
            let mut landmark_of = vec![None; left.keypoints.len()];
            let mut keypoints = left.keypoints.clone();
            for (row, &i) in stereo.keypoint.iter().enumerate() {
                landmark_of[i] = Some(row as u32);
                keypoints[i] = stereo.pixel(row, &left.keypoints);
            }
            KeyframeFeatures {
                keypoints,
                descriptors: left.descriptors.clone(),
                landmark_of,
            }
        });
        // identities: a carried landmark keeps its own; a new one gets the next, and the previous keyframe
        // records where it saw it
        let mut ids = Vec::with_capacity(stereo.camera.len());
        for (k, landmark) in stereo.landmark.iter().enumerate() {
            let id = landmark.unwrap_or_else(|| {
                self.next_landmark += 1;
                self.next_landmark - 1
            });
            ids.push(id);
            if let (Some(px), Some(previous)) = (
                stereo.in_previous.get(k).copied().flatten(),
                self.keyframes.back_mut(),
            ) {
                previous.extra.push((id, px));
            }
        }
        self.keyframes.push_back(Keyframe {
            world_from_camera: *pose,
            covariance: *covariance,
            points,
            descriptors,
            keypoints: (0..stereo.keypoint.len())
                .map(|row| stereo.pixel(row, &left.keypoints))
                .collect(),
            pyramid: left.gray.as_ref().map(|g| Pyramid::new(g.0.clone())),
            ids,
            extra: Vec::new(),
            features,
        });
        while self.keyframes.len() > self.options.recent_keyframes {
            self.keyframes.pop_front();
        }
        self.counters.keyframes += 1;
        if matches!(self.rig, Rig::Monocular(_)) {
            self.adjust_window();
        }
    }
}

/// Where image B sees each match's `a` detection: B's `b` keypoint moved photometrically onto the patch at
/// `a` (affine), or the `b` keypoint itself where that fails, `refine` is off or an image is missing.
pub(super) fn aligned_in_b(
    image_a: Option<&GrayImage>,
    keypoints_a: &[[f32; 2]],
    image_b: Option<&GrayImage>,
    keypoints_b: &[[f32; 2]],
    matches: &[Match],
    refine: bool,
) -> Vec<[f32; 2]> {
    let refined = match (image_a, image_b) {
        (Some(ia), Some(ib)) if refine => Some(
            refine_matches(
                ia,
                keypoints_a,
                ib,
                keypoints_b,
                matches,
                &tracking_refine(),
            )
            .points_b,
        ),
        _ => None,
    };
    matches
        .iter()
        .enumerate()
        .map(|(k, m)| {
            refined
                .as_ref()
                .and_then(|r| r[k])
                .unwrap_or(keypoints_b[m.b as usize])
        })
        .collect()
}

/// Refinement of the right image's match of a left keypoint: a translation on 11×11 patches, every match.
fn stereo_refine() -> RefineOptions {
    RefineOptions {
        enabled: true,
        model: WarpModel::Translation,
        patch_radius: 5,
        max_matches: 0,
        ..RefineOptions::default()
    }
}

/// Refinement of a keyframe detection in a later frame: affine (the view turns and moves), every match.
pub(super) fn tracking_refine() -> RefineOptions {
    RefineOptions {
        enabled: true,
        model: WarpModel::Affine,
        max_matches: 0,
        ..RefineOptions::default()
    }
}
