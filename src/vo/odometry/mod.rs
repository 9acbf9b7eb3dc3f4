//! The tracker behind both odometries: PnP against the current keyframe's landmarks, keyframes,
//! still-camera detection and recovery after a failed frame (see the module doc of [`crate::vo`]). The two
//! differ only in where a keyframe's landmarks get their depth ([`Rig`]): a stereo rig triangulates each
//! frame's left ↔ right matches (metric); a single camera triangulates a new keyframe's matches with the
//! previous keyframe at the poses PnP found, and carries the landmarks both see, so one scale holds for
//! the whole run (`monocular.rs`, also the two-view initialisation).
//!
//! `mod.rs`: the state and [`VisualOdometry::process`] (a frame with features); `track.rs`: frames
//! answered by following the landmarks photometrically, and deferred keyframes; `landmarks.rs`: stereo
//! points, localization against a keyframe, new keyframes; `points.rs`: the points a frame gives a new
//! keyframe; `loss.rs`: a frame that cannot be localized
//! and the restart; `turn.rs`: the orientation through a loss.

// `!(x > y)` is deliberate: it is true for NaN, which must take the rejecting branch.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use std::collections::VecDeque;

use nalgebra::{Isometry3, Matrix3, Matrix6, Rotation3, Translation3, UnitQuaternion, Vector3};
use ndarray::Array2;

use super::covariance::{carried, world_from_pnp};
use super::flow::Pyramid;
use super::{StereoRig, TrackingState, VoCounters, VoError, VoEstimate, VoOptions, LOST_VARIANCE};
use crate::features::Features;
use crate::geometry::{AbsolutePose, PinholeCamera};
use monocular::Reference;
use points::FramePoints;
use turn::RememberedView;

/// Where a keyframe's landmarks get their depth.
#[derive(Debug, Clone)]
pub enum Rig {
    /// A calibrated stereo pair: metric depth from every keyframe's left ↔ right matches.
    Stereo(StereoRig),
    /// One camera: depth from the motion between keyframes, up to one unknown scale for the whole run
    /// (set at initialisation: the median depth of the first landmarks is 1).
    Monocular(PinholeCamera),
}

impl Rig {
    /// The camera whose pose the odometry reports (the left one of a stereo pair).
    pub fn camera(&self) -> &PinholeCamera {
        match self {
            Self::Stereo(r) => &r.left,
            Self::Monocular(c) => c,
        }
    }

    fn validate(&self) -> Result<(), VoError> {
        match self {
            Self::Stereo(r) => r.validate(),
            Self::Monocular(c) => c.validate().map_err(|e| VoError::InvalidRig(e.to_string())),
        }
    }
}

/// A keyframe: its pose, the covariance of that pose, and its landmarks (world points with the left
/// descriptors that saw them).
struct Keyframe {
    world_from_camera: Isometry3<f64>,
    covariance: Matrix6<f64>,
    points: Vec<Vector3<f64>>,
    descriptors: Array2<f32>,
    /// Left keypoint of each landmark (where it was triangulated) and the left image, for the photometric
    /// refinement of later observations.
    keypoints: Vec<[f32; 2]>,
    pyramid: Option<Pyramid>,
    /// The identity of each landmark (shared by the keyframes that see the same point).
    ids: Vec<u64>,
    /// Observations of later keyframes' landmarks in this keyframe's image (monocular: a new landmark is
    /// triangulated from the new keyframe and this one), for the bundle adjustment.
    extra: Vec<(u64, [f32; 2])>,
    /// All the keyframe's left features (monocular only: the next keyframe triangulates against them).
    features: Option<KeyframeFeatures>,
}

/// A keyframe as the odometry holds it, for a map ([`VisualOdometry::newest_keyframe`]).
#[derive(Debug, Clone, Copy)]
pub struct KeyframeView<'a> {
    /// The keyframe's pose in the odometry frame.
    pub world_from_camera: &'a Isometry3<f64>,
    /// Its landmarks, in the odometry frame.
    pub points: &'a [Vector3<f64>],
    /// The left keypoint that saw each landmark.
    pub keypoints: &'a [[f32; 2]],
    /// Its descriptor (rows).
    pub descriptors: &'a Array2<f32>,
    /// Each landmark's identity.
    pub ids: &'a [u64],
}

/// Every feature of a monocular keyframe and which of them are landmarks.
struct KeyframeFeatures {
    keypoints: Vec<[f32; 2]>,
    descriptors: Array2<f32>,
    /// The landmark (index into [`Keyframe::points`]) of each feature, if any.
    landmark_of: Vec<Option<u32>>,
}

/// The right image's features of the frame being processed: given, or computed on first use.
enum RightFeatures<'a> {
    Given(Option<&'a Features>),
    Lazy(
        &'a mut dyn FnMut() -> Option<Features>,
        Option<Option<Features>>,
    ),
}

impl RightFeatures<'_> {
    fn get(&mut self) -> Option<&Features> {
        match self {
            Self::Given(f) => *f,
            Self::Lazy(compute, done) => done.get_or_insert_with(compute).as_ref(),
        }
    }
}

/// A frame that is to become a keyframe once its features are computed.
struct KeyframeCandidate {
    stamp: f64,
    /// [`VoCounters::frames`] when it was asked for (its age in frames bounds the deferral).
    frame: usize,
    pose: Isometry3<f64>,
    covariance: Matrix6<f64>,
}

/// Visual odometry over a stream of frames (features of the left image, and of the right one for a
/// stereo [`Rig`]).
pub struct VisualOdometry {
    rig: Rig,
    options: VoOptions,
    /// Monocular: the frame the initialisation measures parallax from.
    reference: Option<Reference>,
    keyframes: VecDeque<Keyframe>,
    /// The last published pose and its time (the still-camera anchor is `anchor`), and the one before.
    last: Option<(f64, Isometry3<f64>)>,
    previous: Option<(f64, Isometry3<f64>)>,
    /// A pose [`Self::track`] found for a frame that needs a keyframe: [`Self::process`] of the same frame
    /// uses it instead of localizing by descriptors (the patches followed the landmarks better than the
    /// descriptors match them in low texture and blur).
    pending: Option<(f64, AbsolutePose)>,
    /// A frame answered by [`Self::track`] whose features were asked for, to become a keyframe when they
    /// arrive ([`Self::insert_keyframe`]).
    candidate: Option<KeyframeCandidate>,
    /// The pose held while the motion is below the still threshold.
    anchor: Option<Isometry3<f64>>,
    last_covariance: Matrix6<f64>,
    failures: usize,
    lost: bool,
    descriptor_dim: Option<usize>,
    counters: VoCounters,
    /// The identity the next new landmark gets.
    next_landmark: u64,
    /// The latest view with a known pose, which a lost frame's orientation turns from (`turn.rs`).
    turn: Option<RememberedView>,
}

impl VisualOdometry {
    /// The newest keyframe: its pose in the odometry frame and its landmarks (world points, the left
    /// keypoints and descriptors that saw them, their identities), what a map keeps of it.
    pub fn newest_keyframe(&self) -> Option<KeyframeView<'_>> {
        self.keyframes.back().map(|k| KeyframeView {
            world_from_camera: &k.world_from_camera,
            points: &k.points,
            keypoints: &k.keypoints,
            descriptors: &k.descriptors,
            ids: &k.ids,
        })
    }

    fn is_stereo(&self) -> bool {
        matches!(self.rig, Rig::Stereo(_))
    }

    /// The stereo points of a frame of a stereo rig (`None` without right features, or with right features
    /// of another descriptor dimension).
    fn stereo_from(&self, left: &Features, right: &mut RightFeatures<'_>) -> Option<FramePoints> {
        let right = right.get()?;
        if right.descriptor_dim() != left.descriptor_dim() {
            log::warn!(
                "vo: right features of dimension {} for left features of {}: no stereo points",
                right.descriptor_dim(),
                left.descriptor_dim()
            );
            return None;
        }
        self.stereo_points(left, right)
    }

    /// Metric odometry of the left camera of `rig` (checked) with `options` (checked).
    pub fn stereo(rig: StereoRig, options: VoOptions) -> Result<Self, VoError> {
        Self::new(Rig::Stereo(rig), options)
    }

    /// Odometry of one `camera` (checked), up to one scale for the run, with `options` (checked).
    pub fn monocular(camera: PinholeCamera, options: VoOptions) -> Result<Self, VoError> {
        Self::new(Rig::Monocular(camera), options)
    }

    /// A tracker for `rig` (checked) with `options` (checked).
    pub fn new(rig: Rig, options: VoOptions) -> Result<Self, VoError> {
        rig.validate()?;
        options.validate()?;
        Ok(Self {
            rig,
            options,
            reference: None,
            keyframes: VecDeque::new(),
            last: None,
            previous: None,
            pending: None,
            candidate: None,
            anchor: None,
            last_covariance: Matrix6::zeros(),
            failures: 0,
            lost: false,
            descriptor_dim: None,
            counters: VoCounters::default(),
            next_landmark: 0,
            turn: None,
        })
    }

    /// Forgets the run: the next frame starts a new odometry frame at identity.
    pub fn reset(&mut self) {
        let counters = self.counters;
        *self = Self::new(self.rig.clone(), self.options.clone()).expect("checked at construction");
        self.counters = VoCounters {
            frames: counters.frames,
            ..Default::default()
        };
    }

    /// The counters so far.
    pub fn counters(&self) -> VoCounters {
        self.counters
    }

    /// Processes one frame taken at `stamp` (seconds, increasing): `left` holds the features of the
    /// (left) image, `right` those of the right image (required for a stereo rig, unused by a monocular
    /// one); the same extractor for the whole run.
    pub fn process(
        &mut self,
        stamp: f64,
        left: &Features,
        right: Option<&Features>,
    ) -> Result<VoEstimate, VoError> {
        self.check(stamp, left, right)?;
        self.process_frame(stamp, left, RightFeatures::Given(right))
    }

    /// [`Self::process`] for a stereo rig whose right image's features are computed only when the frame
    /// needs its stereo points (`right_features` is called at most once): the first keyframe, a new
    /// keyframe, a restart after a loss. A lost frame that does not restart, or a localized one that makes
    /// no keyframe, never calls it, which saves the right image's extraction (half a lost frame's cost).
    /// `None` from it (the extraction failed) leaves the frame without stereo points: it makes no keyframe
    /// and no restart. The right features' descriptors are checked when they arrive.
    pub fn process_lazily(
        &mut self,
        stamp: f64,
        left: &Features,
        right_features: &mut dyn FnMut() -> Option<Features>,
    ) -> Result<VoEstimate, VoError> {
        self.check_stamp(stamp)?;
        self.check_dimensions(left, None)?;
        self.process_frame(stamp, left, RightFeatures::Lazy(right_features, None))
    }

    fn process_frame(
        &mut self,
        stamp: f64,
        left: &Features,
        mut right: RightFeatures<'_>,
    ) -> Result<VoEstimate, VoError> {
        self.counters.frames += 1;
        // this frame's own features make any keyframe that is still asked for obsolete
        self.candidate = None;
        // a stereo frame's points, when it needs them
        let mut stereo_cache: Option<Option<FramePoints>> = None;
        let mut stereo = |vo: &Self| -> Option<FramePoints> {
            stereo_cache
                .get_or_insert_with(|| vo.stereo_from(left, &mut right))
                .take()
        };
        let mut initialized = false;
        if self.keyframes.is_empty() {
            let first = if self.is_stereo() { stereo(self) } else { None };
            match &first {
                Some(points) if points.camera.len() >= self.options.min_stereo_points => {
                    let pose = Isometry3::identity();
                    self.add_keyframe(&pose, &Matrix6::zeros(), points, left);
                    let n = points.camera.len();
                    return Ok(self.publish(
                        stamp,
                        pose,
                        Matrix6::zeros(),
                        TrackingState::Tracking,
                        n,
                        0,
                        true,
                        false,
                    ));
                }
                Some(points) => return Ok(self.initializing(stamp, points.camera.len())),
                // a stereo frame whose right features could not be computed
                None if self.is_stereo() => return Ok(self.initializing(stamp, 0)),
                // monocular: the first keyframe comes from two views with enough parallax; this frame is
                // then localized against it like any other
                None => {
                    // a monocular restart waiting for parallax: the orientation follows the camera
                    let turned = match (self.lost, self.last) {
                        (true, Some((_, last))) => Some(self.follow_turn(&last, last, left).0),
                        _ => None,
                    };
                    if let (Some(p), Some((t, _))) = (turned, self.last) {
                        self.last = Some((t, p));
                    }
                    if !self.initialize_monocular(left, turned) {
                        return Ok(self.initializing(stamp, 0));
                    }
                    initialized = true;
                }
            }
        }
        // the pose [`Self::track`] found for this frame (it asked for a keyframe), else the descriptors':
        // the current keyframe first, then the recent ones (newest first) after a failure
        let pending = self
            .pending
            .take()
            .filter(|(t, _)| *t == stamp)
            .map(|(_, p)| (self.keyframes.len() - 1, p));
        let found = pending.or_else(|| {
            self.localization_order()
                .into_iter()
                .find_map(|k| self.localize(k, left).map(|hit| (k, hit)))
        });
        let Some((k, pnp)) = found else {
            return Ok(self.failed(stamp, &mut stereo, left));
        };
        self.remember_view(isometry_from_pnp(&pnp), left);
        let recovered = self.lost || k + 1 != self.keyframes.len();
        let kf = &self.keyframes[k];
        let pose = isometry_from_pnp(&pnp);
        let offset = pose.translation.vector - kf.world_from_camera.translation.vector;
        let frame_covariance = world_from_pnp(&pnp.rotation, &pnp.covariance);
        let covariance = carried(&kf.covariance, &offset) + frame_covariance;
        let tracked = pnp.num_inliers;
        let kf_landmarks = kf.points.len();
        let relative = kf.world_from_camera.inverse() * pose;
        let far = relative.translation.vector.norm() > self.options.keyframe_max_distance_m
            || relative.rotation.angle().to_degrees() > self.options.keyframe_max_angle_deg;
        let weak = (tracked as f64) < self.options.keyframe_tracked_ratio * kf_landmarks as f64
            || tracked < self.options.keyframe_min_tracked;
        if k + 1 != self.keyframes.len() {
            // recovered from an older keyframe: it becomes the current one again
            if let Some(kf) = self.keyframes.remove(k) {
                self.keyframes.push_back(kf);
            }
        }
        // still camera: hold the anchor when the motion since it is within the pose's own uncertainty
        let (pose, still) = self.hold_if_still(pose, &frame_covariance);
        // a weak keyframe is replaced even when the camera holds still (an occluder, a light change); a
        // monocular run makes its second keyframe right after the first
        let due = initialized || weak || ((far || recovered) && !still);
        let points = match due {
            true if self.is_stereo() => stereo(self),
            true => Some(self.monocular_points(&pose, left)),
            false => None,
        };
        let n_points = points.as_ref().map_or(0, |p| p.camera.len());
        let keyframe = due && n_points >= self.options.min_stereo_points;
        if let (true, Some(points)) = (keyframe, &points) {
            self.add_keyframe(&pose, &covariance, points, left);
        }
        let state = if recovered {
            self.counters.recoveries += 1;
            TrackingState::Recovered
        } else {
            TrackingState::Tracking
        };
        self.lost = false;
        self.failures = 0;
        let mut est = self.publish(
            stamp, pose, covariance, state, n_points, tracked, keyframe, still,
        );
        est.frame_covariance = frame_covariance;
        Ok(est)
    }

    /// The keyframes to localize a frame against, in order: all of them newest first while tracking;
    /// while lost, the newest and one older keyframe in turn (each failed frame tries the next), so that a
    /// lost frame costs two localizations instead of [`VoOptions::recent_keyframes`] and the camera rate
    /// holds while the camera is lost.
    fn localization_order(&self) -> Vec<usize> {
        let n = self.keyframes.len();
        if !self.lost || n <= 2 {
            return (0..n).rev().collect();
        }
        let older = (n - 2) - self.failures % (n - 1);
        vec![n - 1, older]
    }

    fn check_stamp(&self, stamp: f64) -> Result<(), VoError> {
        if !stamp.is_finite() {
            return Err(VoError::InvalidFrame("time stamp is not finite".into()));
        }
        if let Some((t, _)) = self.last {
            if !(stamp > t) {
                return Err(VoError::InvalidFrame(format!(
                    "time stamp {stamp:.6} s is not after the previous frame's {t:.6} s"
                )));
            }
        }
        Ok(())
    }

    fn check(
        &mut self,
        stamp: f64,
        left: &Features,
        right: Option<&Features>,
    ) -> Result<(), VoError> {
        self.check_stamp(stamp)?;
        self.check_descriptors(left, right)
    }

    /// The images the rig needs are there, and their descriptors have the run's dimension (the first
    /// frame's sets it).
    fn check_descriptors(
        &mut self,
        left: &Features,
        right: Option<&Features>,
    ) -> Result<(), VoError> {
        if matches!(self.rig, Rig::Stereo(_)) && right.is_none() {
            return Err(VoError::InvalidFrame(
                "stereo odometry needs the right image's features for this frame".into(),
            ));
        }
        self.check_dimensions(left, right)
    }

    /// The descriptors have the run's dimension (the first frame's sets it).
    fn check_dimensions(
        &mut self,
        left: &Features,
        right: Option<&Features>,
    ) -> Result<(), VoError> {
        let dim = left.descriptor_dim();
        let right_dim = right.map_or(dim, |r| r.descriptor_dim());
        if right_dim != dim || self.descriptor_dim.is_some_and(|d| d != dim) {
            return Err(VoError::InvalidFrame(format!(
                "descriptor dimensions differ (left {dim}, right {right_dim}, run {:?}): one extractor for the whole run",
                self.descriptor_dim
            )));
        }
        self.descriptor_dim = Some(dim);
        Ok(())
    }

    /// The anchor pose when `pose` is within `still_sigmas` of it (position and rotation, each against the
    /// standard deviation of this frame's own estimate, `frame_covariance`: the keyframe's uncertainty is
    /// common to the anchor and the pose and cancels), else `pose` (which becomes the anchor).
    fn hold_if_still(
        &mut self,
        pose: Isometry3<f64>,
        frame_covariance: &Matrix6<f64>,
    ) -> (Isometry3<f64>, bool) {
        if let Some(anchor) = self.anchor {
            let rel = anchor.inverse() * pose;
            let sigma_p = frame_covariance
                .fixed_view::<3, 3>(0, 0)
                .trace()
                .max(0.0)
                .sqrt();
            let sigma_r = frame_covariance
                .fixed_view::<3, 3>(3, 3)
                .trace()
                .max(0.0)
                .sqrt();
            let k = self.options.still_sigmas;
            // only a well-determined pose can say "no motion": with few landmarks σ is large, and a
            // moving camera would be held
            let determined = sigma_p <= self.options.still_max_sigma_m
                && sigma_r.to_degrees() <= self.options.still_max_sigma_deg;
            if determined
                && rel.translation.vector.norm() <= k * sigma_p
                && rel.rotation.angle() <= k * sigma_r
            {
                return (anchor, true);
            }
        }
        self.anchor = Some(pose);
        (pose, false)
    }

    /// No keyframe yet: no pose (stereo), or the reference's pose with the lost variance (monocular,
    /// waiting for parallax: a camera that stands still from the start gets an answer for every frame).
    fn initializing(&mut self, stamp: f64, stereo_points: usize) -> VoEstimate {
        if self.lost {
            // a monocular restart waiting for parallax
            let held = self.last.map_or(Isometry3::identity(), |(_, p)| p);
            return self.held(stamp, held);
        }
        let reference = self.reference.as_ref().map(|r| r.pose);
        self.last = Some((stamp, reference.unwrap_or_else(Isometry3::identity)));
        VoEstimate {
            stamp,
            state: TrackingState::Initializing,
            world_from_camera: reference,
            covariance: Matrix6::identity() * LOST_VARIANCE,
            frame_covariance: Matrix6::identity() * LOST_VARIANCE,
            linear_velocity: Vector3::zeros(),
            angular_velocity: Vector3::zeros(),
            still: false,
            keyframe: false,
            stereo_points,
            tracked: 0,
            by_flow: false,
            keyframe_requested: false,
            counters: self.counters,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn publish(
        &mut self,
        stamp: f64,
        pose: Isometry3<f64>,
        covariance: Matrix6<f64>,
        state: TrackingState,
        stereo_points: usize,
        tracked: usize,
        keyframe: bool,
        still: bool,
    ) -> VoEstimate {
        let (linear, angular) = match self.last {
            Some((t0, p0)) if !still && stamp > t0 => {
                let dt = stamp - t0;
                let rel = p0.inverse() * pose;
                (rel.translation.vector / dt, rel.rotation.scaled_axis() / dt)
            }
            _ => (Vector3::zeros(), Vector3::zeros()),
        };
        self.previous = self.last;
        self.last = Some((stamp, pose));
        if state != TrackingState::Lost {
            self.last_covariance = covariance;
        }
        VoEstimate {
            stamp,
            state,
            world_from_camera: Some(pose),
            covariance,
            frame_covariance: covariance,
            linear_velocity: linear,
            angular_velocity: angular,
            still,
            keyframe,
            stereo_points,
            tracked,
            by_flow: false,
            keyframe_requested: false,
            counters: self.counters,
        }
    }
}

/// `world_from_camera` of a PnP pose `x_cam = R·X + t`.
fn isometry_from_pnp(p: &AbsolutePose) -> Isometry3<f64> {
    let r: Matrix3<f64> = p.rotation.transpose();
    let q = UnitQuaternion::from_rotation_matrix(&Rotation3::from_matrix_unchecked(r));
    Isometry3::from_parts(Translation3::from(p.centre()), q)
}

mod landmarks;
mod loss;
mod monocular;
mod points;
mod track;
mod turn;
mod window;
