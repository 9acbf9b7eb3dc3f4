//! The orientation while tracking is lost. A single camera that turns in place sees its landmarks leave the
//! view and cannot triangulate new ones (no parallax), so it loses track; a stereo camera loses track when
//! blur or plain walls leave too few landmarks matched to its keyframes. The orientation need not be lost
//! with it: the rotation between two views is determined whatever the baseline (the geometry's model
//! selection gives it for a pure rotation as for a general motion) and needs only image matches, no
//! landmarks. So each frame that cannot be localized is matched to the latest view whose pose is known, and
//! its orientation follows; the position is held (it is not measured then). A restart (monocular: its
//! reference; stereo: its keyframe) starts from that orientation, so the heading survives the loss.
//!
//! Not here: the position through the loss (unknown to one camera; held by the stereo one until it
//! restarts), the scale after a monocular restart (a new one).

use nalgebra::{Isometry3, Rotation3, UnitQuaternion};

use super::VisualOdometry;
use crate::features::Features;
use crate::geometry::{estimate_relative_pose, NoPose, PoseError, RansacOptions};
use crate::matching::mnn::{mutual_nearest_neighbors, MnnOptions};

/// The view a lost frame's orientation turns from.
pub(super) struct RememberedView {
    pub(super) pose: Isometry3<f64>,
    pub(super) features: Features,
    /// Its orientation follows from a localized frame by measured rotations alone (`false` once a frame
    /// whose rotation could not be measured took its place: the orientation is then a guess).
    pub(super) measured: bool,
}

/// The share of the matches that must agree with the rotation between a lost frame and the remembered view.
const MIN_INLIER_RATIO: f64 = 0.4;

/// When fewer than this share of the remembered view's keypoints agree with a frame's rotation, the frame
/// becomes the view the next ones turn from.
const REANCHOR_SHARE: f64 = 0.3;

/// A lost frame and the remembered view are matched by their strongest keypoints only, so that a lost
/// camera is still answered near the camera rate (measured on `vo_hard`, 2048 keypoints: following the
/// turn with all of them added 21 ms to every lost stereo frame, 62 -> 83 ms median, and the node at 15 Hz
/// fell behind; with 1024, the ratio test and the bounded consensus below: 67 ms).
const TURN_KEYPOINTS: usize = 1024;

/// Lowe's ratio (best / second-best descriptor distance) a match between a lost frame and the remembered
/// view must pass.
const TURN_RATIO: f32 = 0.9;

/// An ambiguous plane's explanations must agree on the rotation within this many degrees to give one.
const MAX_RIVAL_DEG: f64 = 0.5;

/// The samples of five matches that find an all-inlier one with probability `confidence` when a share
/// `ratio` of the matches are inliers.
fn iterations_for(ratio: f64, confidence: f64) -> usize {
    let clean = ratio.powi(5);
    ((1.0 - confidence).ln() / (1.0 - clean).ln()).ceil() as usize
}

fn rotation_deg(r: &nalgebra::Matrix3<f64>) -> f64 {
    Rotation3::from_matrix_unchecked(*r).angle().to_degrees()
}

impl VisualOdometry {
    /// Remembers `left` at `pose` (a localized frame's) as the view later lost frames turn from.
    pub(super) fn remember_view(&mut self, pose: Isometry3<f64>, left: &Features) {
        self.remember(pose, left.strongest(TURN_KEYPOINTS), true);
    }

    /// Remembers `features` (already the strongest [`TURN_KEYPOINTS`]) at `pose`.
    fn remember(&mut self, pose: Isometry3<f64>, features: Features, measured: bool) {
        self.turn = Some(RememberedView {
            pose,
            features,
            measured,
        });
    }

    /// A frame that cannot be localized: its pose with the orientation turned from the remembered view by
    /// the rotation between the two and the position of `held` (the last pose), and whether that
    /// orientation is measured all the way from a localized frame. When the rotation is not determined
    /// (too few matches, no consensus), the frame is taken to be at `fallback` (not measured). The
    /// remembered view stays while it overlaps the frame well (each new view adds the error of one
    /// rotation), else the frame becomes the view the next one turns from.
    pub(super) fn follow_turn(
        &mut self,
        held: &Isometry3<f64>,
        fallback: Isometry3<f64>,
        left: &Features,
    ) -> (Isometry3<f64>, bool) {
        // both views by their strongest keypoints; the frame's may become the remembered view below
        let left = left.strongest(TURN_KEYPOINTS);
        match self.turned(held, &left) {
            Some((pose, inliers)) => {
                let (view, measured) = self
                    .turn
                    .as_ref()
                    .map_or((0, false), |v| (v.features.keypoints.len(), v.measured));
                if (inliers as f64) < REANCHOR_SHARE * view as f64 {
                    self.remember(pose, left, measured);
                }
                (pose, measured)
            }
            None => {
                self.remember(fallback, left, false);
                (fallback, false)
            }
        }
    }

    /// The pose and the number of agreeing matches.
    fn turned(&self, held: &Isometry3<f64>, left: &Features) -> Option<(Isometry3<f64>, usize)> {
        let view = self.turn.as_ref()?;
        let (from_pose, from) = (&view.pose, &view.features);
        let camera = self.rig.camera();
        // with a ratio test: the keypoints of a plain wall (noise, shading) give hundreds of chance mutual
        // matches, and a few dozen of them can agree on a wrong rotation (measured on `vo_hard`'s plain
        // walls: 10-60° of false turn while the camera walked straight, none with the test)
        let mnn = MnnOptions {
            ratio: self.options.mnn.ratio.min(TURN_RATIO),
            ..self.options.mnn
        };
        let matches = mutual_nearest_neighbors(&from.descriptors, &left.descriptors, &mnn);
        // a view that barely overlaps gives a rotation from a handful of coincidences: most matches must
        // agree
        let enough = |n: usize| {
            n >= 2 * self.options.min_stereo_points
                && n as f64 >= MIN_INLIER_RATIO * matches.len() as f64
        };
        if !enough(matches.len()) {
            log::debug!("vo: turn not followed: {} matches", matches.len());
            return None;
        }
        let point = |f: &Features, i: u32| {
            let p = f.keypoints[i as usize];
            [p[0] as f64, p[1] as f64]
        };
        let a: Vec<[f64; 2]> = matches.iter().map(|m| point(from, m.a)).collect();
        let b: Vec<[f64; 2]> = matches.iter().map(|m| point(left, m.b)).collect();
        // a consensus below MIN_INLIER_RATIO is refused anyway: sample no longer than it takes to find
        // one at that ratio (a blank wall gives hundreds of chance matches, and the full budget of the
        // PnP options cost ~10 ms per lost frame)
        let ransac = RansacOptions {
            max_iterations: self
                .options
                .pnp
                .max_iterations
                .min(iterations_for(
                    MIN_INLIER_RATIO,
                    self.options.pnp.confidence,
                ))
                .max(self.options.pnp.min_iterations.max(1)),
            ..self.options.pnp.clone()
        };
        let estimate = estimate_relative_pose(&a, &b, camera, camera, None, &ransac);
        let pose = match estimate {
            Ok(p) if enough(p.num_inliers) => p,
            // a plane explained by several motions: their translations differ, but when their rotations
            // agree, the rotation is known all the same
            Err(PoseError::NoPose(NoPose::PlanarAmbiguity {
                best, candidates, ..
            })) if enough(best.num_inliers)
                && candidates.iter().all(|(r, _)| {
                    rotation_deg(&(r.transpose() * best.rotation)) <= MAX_RIVAL_DEG
                }) =>
            {
                *best
            }
            Ok(p) => {
                log::debug!(
                    "vo: turn not followed: {} inliers of {} matches",
                    p.num_inliers,
                    matches.len()
                );
                return None;
            }
            Err(e) => {
                log::debug!("vo: turn not followed: {e}");
                return None;
            }
        };
        let rotation = Rotation3::from_matrix_unchecked(pose.rotation);
        log::debug!(
            "vo: turn followed: {:.2}° from the remembered view, {} inliers of {} matches, {}",
            rotation.angle().to_degrees(),
            pose.num_inliers,
            matches.len(),
            pose.configuration.name()
        );
        // x_b = R·x_a + t: the new camera's orientation in the world is the old one's times Rᵀ
        let b_from_a = UnitQuaternion::from_rotation_matrix(&rotation);
        Some((
            Isometry3::from_parts(held.translation, from_pose.rotation * b_from_a.inverse()),
            pose.num_inliers,
        ))
    }
}
