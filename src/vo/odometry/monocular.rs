//! Depth for a single camera: the two-view initialisation and the landmarks of a new monocular keyframe.
//!
//! Initialisation: the first frame is the reference; each later frame is matched to it (mutual nearest
//! neighbours, the current position refined photometrically to the reference detection), and the
//! relative pose is estimated with the geometry's model selection. The map starts only from a general or
//! determined planar configuration with a median parallax of at least
//! [`super::super::MonocularOptions::init_min_parallax_deg`]: a pure rotation, an ambiguous plane or a
//! short baseline waits for a later frame. The triangulated points are scaled so that their median depth
//! is 1: the one scale of the run.
//!
//! Frames before the first keyframe need no features while the parallax is short: the reference's
//! keypoints are followed photometrically ([`crate::vo::flow`], up to `vo.flow_max_points`, each from its
//! last position) and the geometry's model selection runs on those correspondences. A frame is passed to
//! the features, which then decide as above, when its followed points show half the needed parallax, or
//! give no pose and move by half of it in the image (median viewing-ray angle), or are too few. The margin
//! is wide because the followed set reads lower than the matched one (it loses the near points first); on
//! the four rendered sequences the map starts at the same frame, with the same trajectory to the byte, as
//! when every frame had features. The frames answered from the followed points cost what landmark
//! tracking costs (a few milliseconds instead of an extraction), so that a camera at 15–30 Hz is less
//! likely to be behind in its first second.
//!
//! A new keyframe: its features are matched to all the previous keyframe's features. A match whose
//! keyframe feature is a landmark that reprojects onto the new detection carries the landmark over (its
//! world point unchanged: this is what keeps the scale from one keyframe to the next); the others are
//! triangulated between the two keyframes at the poses PnP gave them, with enough parallax. Not here:
//! refining the points over more than two views (no bundle adjustment yet), or the global scale (unknown
//! to a single camera; the messages and docs say so).

// `!(x > y)` is deliberate: it is true for NaN, which must take the rejecting branch.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use nalgebra::{Isometry3, Matrix6, Point3, Vector3};

use super::super::flow::{follow_points, Pyramid};
use super::super::{VoError, VoEstimate};
use super::landmarks::{aligned_in_b, tracking_refine};
use super::{FramePoints, VisualOdometry};
use crate::features::{Features, GrayFrame};
use crate::geometry::triangulation::{triangulate, TriangulationLimits};
use crate::geometry::{estimate_relative_pose, TwoViewConfiguration};
use crate::matching::mnn::mutual_nearest_neighbors;
use crate::matching::refine::refine_matches;
use crate::matching::Match;

/// From this share of `monocular.init_min_parallax_deg` in the followed points on, the features decide.
/// The followed set reads lower than the matched one (the alignment loses the near points first, which
/// deform most, and a wall's points may then dominate it): measured at the same frames of the first 45 of
/// the four rendered sequences, with the features above 0.5°, the followed parallax was 0.55–1.57 times the
/// features' (medians 0.84–1.03). At half, the features were asked before they said yes on all four;
/// a frame asked too early only waits again.
const FOLLOWED_PARALLAX_SHARE: f64 = 0.5;

/// The first frame of a monocular run (or of a restart), waiting for a later frame with enough parallax.
pub(super) struct Reference {
    pub(super) features: Features,
    pub(super) pose: Isometry3<f64>,
    pub(super) covariance: Matrix6<f64>,
    /// Its keypoints followed into the latest frame without features; `None` without a grayscale image.
    followed: Option<FollowedReference>,
}

/// The reference's keypoints as last found in a frame, and its image to align them from.
pub(super) struct FollowedReference {
    pyramid: Pyramid,
    /// (reference keypoint, its position in the latest frame)
    points: Vec<(usize, [f32; 2])>,
}

impl Reference {
    /// `features` as the reference at `pose`; up to `max_points` of its keypoints (evenly spread over the
    /// detection order) will be followed.
    pub(super) fn new(
        features: Features,
        pose: Isometry3<f64>,
        covariance: Matrix6<f64>,
        max_points: usize,
    ) -> Self {
        let followed = features.gray.as_ref().map(|g| {
            let mut points: Vec<(usize, [f32; 2])> =
                features.keypoints.iter().copied().enumerate().collect();
            crate::util::stats::subsample_evenly(&mut points, max_points);
            FollowedReference {
                pyramid: Pyramid::new(g.0.clone()),
                points,
            }
        });
        Self {
            features,
            pose,
            covariance,
            followed,
        }
    }
}

/// What one frame says about the initialisation.
enum TwoView {
    /// The first keyframe's points (in the reference camera's frame, median depth 1).
    Ready(FramePoints),
    /// Not yet (too little parallax, a rotation, an ambiguous plane): keep the reference. Where this
    /// frame's matches located the reference's keypoints: `(keypoint, position)`, to follow them from.
    Wait(Vec<(usize, [f32; 2])>),
    /// The reference no longer overlaps the view: this frame becomes the reference.
    Replace,
}

impl VisualOdometry {
    /// Monocular: tries to make the first keyframe from the reference and `left`; `true` when it is made
    /// (at the reference's pose). The first call only keeps `left` as the reference. `pose`: where `left` is
    /// known to be (a restart that followed the camera's turn), the pose it gets if it replaces the
    /// reference.
    pub(super) fn initialize_monocular(
        &mut self,
        left: &Features,
        pose: Option<Isometry3<f64>>,
    ) -> bool {
        let max_points = self.options.flow_max_points;
        let Some(mut reference) = self.reference.take() else {
            self.reference = Some(Reference::new(
                left.clone(),
                Isometry3::identity(),
                Matrix6::zeros(),
                max_points,
            ));
            return false;
        };
        match self.two_view(&reference.features, left) {
            TwoView::Ready(points) => {
                self.add_keyframe(
                    &reference.pose,
                    &reference.covariance,
                    &points,
                    &reference.features,
                );
                true
            }
            TwoView::Wait(mut seen) => {
                // the next frames follow the keypoints from where this frame's features found them
                if let (Some(f), false) = (reference.followed.as_mut(), seen.is_empty()) {
                    crate::util::stats::subsample_evenly(&mut seen, max_points);
                    f.points = seen;
                }
                self.reference = Some(reference);
                false
            }
            TwoView::Replace => {
                self.reference = Some(Reference::new(
                    left.clone(),
                    pose.unwrap_or(reference.pose),
                    reference.covariance,
                    max_points,
                ));
                false
            }
        }
    }

    /// Monocular, before the first keyframe ([`Self::track`]): follows the reference's keypoints into
    /// `left` and answers the frame as initializing when they show too little parallax for the first
    /// keyframe; `Ok(None)` when the features must decide (enough parallax, too few points followed, no
    /// reference image, a stereo rig).
    pub(super) fn follow_reference(
        &mut self,
        stamp: f64,
        left: &GrayFrame,
    ) -> Result<Option<VoEstimate>, VoError> {
        let Some(reference) = self.reference.as_ref() else {
            return Ok(None);
        };
        let Some(followed) = reference.followed.as_ref() else {
            return Ok(None);
        };
        if left.0.dimensions() != followed.pyramid.full.dimensions() {
            return Err(VoError::InvalidFrame(format!(
                "image size {:?} differs from the first frame's {:?}",
                left.0.dimensions(),
                followed.pyramid.full.dimensions()
            )));
        }
        let keypoints = &reference.features.keypoints;
        let points = follow_points(
            &followed.pyramid,
            keypoints,
            &followed.points,
            &Pyramid::new(left.0.clone()),
        );
        if points.len() < 2 * self.options.min_stereo_points {
            return Ok(None);
        }
        let points_a: Vec<[f64; 2]> = points
            .iter()
            .map(|(i, _)| [keypoints[*i][0] as f64, keypoints[*i][1] as f64])
            .collect();
        let points_b: Vec<[f64; 2]> = points
            .iter()
            .map(|(_, p)| [p[0] as f64, p[1] as f64])
            .collect();
        let enough = FOLLOWED_PARALLAX_SHARE * self.options.monocular.init_min_parallax_deg;
        let features_decide = match self.pose_to_reference(&points_a, &points_b) {
            Ok(pose) => {
                pose.translation.is_some() && self.parallax_suffices(&pose, FOLLOWED_PARALLAX_SHARE)
            }
            // no pose from the followed points (a plane's two explanations, too few inliers): they may
            // lack the off-plane points the features have, so the motion in the image decides whether
            // to ask them (the viewing rays' median angle bounds the parallax but for a camera orbiting
            // its view's centre)
            Err(_) => median_ray_angle_deg(self.rig.camera(), &points_a, &points_b) >= enough,
        };
        if features_decide {
            return Ok(None);
        }
        if let Some(f) = self.reference.as_mut().and_then(|r| r.followed.as_mut()) {
            f.points = points;
        }
        self.counters.frames += 1;
        let mut est = self.initializing(stamp, 0);
        est.by_flow = true;
        Ok(Some(est))
    }

    /// The pose of the current view relative to the reference from the same points in both (pixels).
    fn pose_to_reference(
        &self,
        reference: &[[f64; 2]],
        current: &[[f64; 2]],
    ) -> Result<crate::geometry::RelativePose, crate::geometry::PoseError> {
        let camera = self.rig.camera();
        estimate_relative_pose(reference, current, camera, camera, None, &self.options.pnp)
    }

    /// The relative pose to the reference is a configuration to start the map from, with at least `share`
    /// of the parallax the first keyframe needs.
    fn parallax_suffices(&self, pose: &crate::geometry::RelativePose, share: f64) -> bool {
        pose.configuration != TwoViewConfiguration::Panoramic
            && pose.quality.median_parallax_deg
                >= share * self.options.monocular.init_min_parallax_deg
    }

    fn two_view(&self, reference: &Features, left: &Features) -> TwoView {
        let camera = self.rig.camera();
        let min_points = self.options.min_stereo_points;
        let matches =
            mutual_nearest_neighbors(&reference.descriptors, &left.descriptors, &self.options.mnn);
        if matches.len() < 2 * min_points {
            return TwoView::Replace;
        }
        // the current detections moved onto the reference's patches (the same points in both views)
        let current = aligned_in_b(
            reference.gray.as_ref().map(|g| g.0.as_ref()),
            &reference.keypoints,
            left.gray.as_ref().map(|g| g.0.as_ref()),
            &left.keypoints,
            &matches,
            self.options.refine,
        );
        let points_a: Vec<[f64; 2]> = matches
            .iter()
            .map(|m| {
                let p = reference.keypoints[m.a as usize];
                [p[0] as f64, p[1] as f64]
            })
            .collect();
        let points_b: Vec<[f64; 2]> = current.iter().map(|p| [p[0] as f64, p[1] as f64]).collect();
        // where this frame's matches put the reference's keypoints (all of them, or the pose's inliers)
        let seen = |inliers: Option<&[bool]>| -> Vec<(usize, [f32; 2])> {
            matches
                .iter()
                .zip(&current)
                .enumerate()
                .filter(|(k, _)| inliers.is_none_or(|i| i[*k]))
                .map(|(_, (m, p))| (m.a as usize, *p))
                .collect()
        };
        let pose = match self.pose_to_reference(&points_a, &points_b) {
            Ok(p) => p,
            Err(e) => {
                log::debug!("vo: initialisation waits: {e}");
                return TwoView::Wait(seen(None));
            }
        };
        let Some(t) = pose
            .translation
            .filter(|_| self.parallax_suffices(&pose, 1.0))
        else {
            return TwoView::Wait(seen(Some(&pose.inliers)));
        };
        let limits = TriangulationLimits {
            max_error_px: self.options.stereo_max_error_px,
            min_parallax_deg: self.options.monocular.min_parallax_deg,
            min_depth: 1e-9,
        };
        let focal = [camera.fx, camera.fy];
        let mut keypoint = Vec::new();
        let mut points = Vec::new();

        for (k, m) in matches.iter().enumerate() {
            if !pose.inliers[k] {
                continue;
            }
            let (Ok(na), Ok(nb)) = (
                camera.try_normalize(points_a[k]),
                camera.try_normalize(points_b[k]),
            ) else {
                continue;
            };
            if let Some(x) = triangulate(na, nb, &pose.rotation, &t, focal, &limits) {
                keypoint.push(m.a as usize);
                points.push(x);
            }
        }
        if points.len() < min_points {
            return TwoView::Wait(seen(Some(&pose.inliers)));
        }
        let depths: Vec<f64> = points.iter().map(|x| x.z).collect();
        let median = crate::util::stats::median(&depths);
        if !(median > 0.0 && median.is_finite()) {
            return TwoView::Wait(seen(Some(&pose.inliers)));
        }
        log::info!(
            "vo: monocular initialisation: {} points, median parallax {:.1}°, {}",
            points.len(),
            pose.quality.median_parallax_deg,
            pose.configuration.name()
        );
        let mut out = FramePoints::default();
        for (k, x) in keypoint.into_iter().zip(points) {
            out.push(k, x / median, None, None);
        }
        TwoView::Ready(out)
    }

    /// Monocular: the landmarks `left` (at `pose`) gives a new keyframe, from its matches with the current
    /// keyframe's features: carried landmarks and new points triangulated between the two.
    pub(super) fn monocular_points(&self, pose: &Isometry3<f64>, left: &Features) -> FramePoints {
        let mut out = FramePoints::default();
        let Some(kf) = self.keyframes.back() else {
            return out;
        };
        let Some(all) = &kf.features else {
            return out;
        };
        let camera = self.rig.camera();
        let matches =
            mutual_nearest_neighbors(&left.descriptors, &all.descriptors, &self.options.mnn);
        // each match is refined at most once (the refinement is most of a keyframe's cost):
        // - a new point: the keyframe's position moved onto this frame's detection (which the new keyframe
        //   keeps), so that both observations are of the same point;
        // - a carried landmark: its detection as it is, or with `monocular.observe_carried_at_patch` the
        //   detection moved onto the point the keyframe observed (a fresh detection of it may be a pixel or
        //   two away), which the new keyframe keeps instead
        let (carried_k, new_k): (Vec<usize>, Vec<usize>) =
            (0..matches.len()).partition(|&k| all.landmark_of[matches[k].b as usize].is_some());
        let new_matches: Vec<Match> = new_k.iter().map(|&k| matches[k]).collect();
        let refined_new: Vec<Option<[f32; 2]>> = match (&left.gray, &kf.pyramid) {
            (Some(gl), Some(gk)) if self.options.refine => {
                let r = refine_matches(
                    &gl.0,
                    &left.keypoints,
                    &gk.full,
                    &all.keypoints,
                    &new_matches,
                    &tracking_refine(),
                );
                log::debug!("vo: keyframe refinement {:?}", r.stats);
                r.points_b
            }
            _ => new_matches
                .iter()
                .map(|m| Some(all.keypoints[m.b as usize]))
                .collect(),
        };
        let mut carried_at: Vec<Option<[f32; 2]>> = vec![None; matches.len()];
        if self.options.monocular.observe_carried_at_patch {
            let swapped: Vec<Match> = carried_k
                .iter()
                .map(|&k| Match {
                    a: matches[k].b,
                    b: matches[k].a,
                    score: matches[k].score,
                })
                .collect();
            let aligned = aligned_in_b(
                kf.pyramid.as_ref().map(|p| p.full.as_ref()),
                &all.keypoints,
                left.gray.as_ref().map(|g| g.0.as_ref()),
                &left.keypoints,
                &swapped,
                self.options.refine,
            );
            for (&k, p) in carried_k.iter().zip(aligned) {
                carried_at[k] = Some(p);
            }
        }
        let mut in_keyframe: Vec<Option<[f32; 2]>> = vec![None; matches.len()];
        for (&k, p) in new_k.iter().zip(refined_new) {
            in_keyframe[k] = p;
        }
        // x_frame = R·x_keyframe + t
        let frame_from_keyframe = pose.inverse() * kf.world_from_camera;
        let r = frame_from_keyframe
            .rotation
            .to_rotation_matrix()
            .into_inner();
        let t = frame_from_keyframe.translation.vector;
        let limits = TriangulationLimits {
            max_error_px: self.options.stereo_max_error_px,
            min_parallax_deg: self.options.monocular.min_parallax_deg,
            min_depth: 1e-9,
        };
        let focal = [camera.fx, camera.fy];
        let carry_max = self.options.monocular.carry_max_error_px;
        let mut carried = 0usize;
        let (mut not_refined, mut not_carried, mut not_triangulated) = (0usize, 0usize, 0usize);
        for (k, m) in matches.iter().enumerate() {
            let a = m.a as usize;
            let kp = left.keypoints[a];
            let here = [kp[0] as f64, kp[1] as f64];
            if let Some(l) = all.landmark_of[m.b as usize] {
                let world = kf.points[l as usize];
                let x = pose.inverse_transform_point(&Point3::from(world)).coords;
                let at = carried_at[k].unwrap_or(kp);
                if reprojects(camera, &x, [at[0] as f64, at[1] as f64], carry_max) {
                    out.push_carried(a, x, kf.ids[l as usize], at);
                    carried += 1;
                } else {
                    not_carried += 1;
                }
                continue;
            }
            let Some(there) = in_keyframe[k] else {
                not_refined += 1;
                continue;
            };
            let (Ok(nk), Ok(nf)) = (
                camera.try_normalize([there[0] as f64, there[1] as f64]),
                camera.try_normalize(here),
            ) else {
                continue;
            };
            if let Some(x) = triangulate(nk, nf, &r, &t, focal, &limits) {
                out.push(a, r * x + t, None, Some(there));
            } else {
                not_triangulated += 1;
            }
        }
        // a keyframe that adds no structure (too short a baseline for new points) would only thin out the
        // landmarks it carries: none then, tracking stays with the current keyframe
        if out.camera.len() - carried < self.options.min_stereo_points {
            log::debug!(
                "vo: no monocular keyframe: {} new landmarks (baseline {:.3})",
                out.camera.len() - carried,
                t.norm()
            );
            return FramePoints::default();
        }
        log::debug!(
            "vo: monocular keyframe: {} matches with the keyframe, {carried} landmarks carried ({not_carried} not), {} new ({not_refined} not refined, {not_triangulated} not triangulated; baseline {:.3})",
            matches.len(),
            out.camera.len() - carried,
            t.norm()
        );
        out
    }
}

/// The median angle between the viewing rays of `a[i]` and `b[i]` (pixels of `camera`; rotation included).
fn median_ray_angle_deg(
    camera: &crate::geometry::PinholeCamera,
    a: &[[f64; 2]],
    b: &[[f64; 2]],
) -> f64 {
    let ray = |p: [f64; 2]| {
        camera
            .try_normalize(p)
            .ok()
            .map(|n| Vector3::new(n[0], n[1], 1.0).normalize())
    };
    let angles: Vec<f64> = a
        .iter()
        .zip(b)
        .filter_map(|(pa, pb)| Some(ray(*pa)?.angle(&ray(*pb)?).to_degrees()))
        .collect();
    if angles.is_empty() {
        return 0.0;
    }
    crate::util::stats::median(&angles)
}

/// `x` (camera frame) projects within `max_px` of `pixel`.
fn reprojects(
    camera: &crate::geometry::PinholeCamera,
    x: &Vector3<f64>,
    pixel: [f64; 2],
    max_px: f64,
) -> bool {
    camera
        .project([x.x, x.y, x.z])
        .is_some_and(|p| (p[0] - pixel[0]).hypot(p[1] - pixel[1]) <= max_px)
}

#[cfg(test)]
mod tests;
