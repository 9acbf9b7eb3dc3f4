//! The odometry modes' r2r glue. `stereo_odometry`: the two CameraInfos (and `/tf_static`) become the
//! [`StereoRig`]; `odometry` (monocular): the image's CameraInfo becomes the camera. Either way the camera's
//! mounting comes from `/tf_static` or a parameter, each frame goes to
//! [`crate::node::visual_odometry::RobotVo`] (the (left) image tracked alone when that suffices, features
//! only when the VO asks), the answer is published, and `reset` and `set_pose` are served between frames.
//! The conventions (REP-105 base pose, covariances, twist, continuity) live in the pure module.

use nalgebra::{Isometry3, Matrix3, Quaternion, Translation3, UnitQuaternion};
use r2r::builtin_interfaces::msg::Time;
use r2r::geometry_msgs::msg::{PoseWithCovariance, PoseWithCovarianceStamped};
use r2r::sensor_msgs::msg::CameraInfo;
use r2r::std_msgs::msg::Header;

use super::inbox::{Control, Frame};
use super::worker::Worker;
use crate::features::GrayFrame;
use crate::geometry::PinholeCamera;
use crate::node::convert::{self, BadInput};
use crate::node::map_session::{MapEvent, MapMode};
use crate::node::stereo_rig::extrinsic_from_projections;
use crate::node::visual_odometry::isometry_from_xyz_rpy;
use crate::vo::{StereoRig, VoError};

/// The camera of a rectified image: the left 3×3 of `P`, no distortion.
fn camera_from_p(info: &CameraInfo, width: u32, height: u32) -> Result<PinholeCamera, BadInput> {
    let p = &info.p;
    if p.len() != 12 || !p.iter().all(|v| v.is_finite()) || p[0] <= 0.0 || p[5] <= 0.0 {
        return Err(BadInput::new(
            "bad_camera_info",
            "P is missing or invalid, and node.stereo.rectified says the images are rectified \
             (cameras from P); set it to false for raw images",
        ));
    }
    let mut rect = info.clone();
    rect.k = vec![p[0], p[1], p[2], p[4], p[5], p[6], p[8], p[9], p[10]];
    rect.d.clear();
    convert::camera_from_info(&rect, width, height)
}

pub(super) fn vo_problem(e: VoError) -> BadInput {
    match e {
        VoError::InvalidRig(m) => BadInput::new("bad_camera_info", m),
        VoError::InvalidFrame(m) => BadInput::new("bad_frame", m),
        VoError::InvalidOptions(m) => BadInput::new("pipeline_error", m),
    }
}

/// An isometry from a ROS pose; `None` unless finite with a non-zero quaternion (which is normalised).
fn isometry_from_pose(p: &r2r::geometry_msgs::msg::Pose) -> Option<Isometry3<f64>> {
    let (t, q) = (&p.position, &p.orientation);
    let q = Quaternion::new(q.w, q.x, q.y, q.z);
    let finite = [t.x, t.y, t.z, q.w, q.i, q.j, q.k]
        .iter()
        .all(|v| v.is_finite());
    if !finite || q.norm() < 1e-6 {
        return None;
    }
    Some(Isometry3::from_parts(
        Translation3::new(t.x, t.y, t.z),
        UnitQuaternion::from_quaternion(q),
    ))
}

impl Worker {
    /// The rig from the latest CameraInfos: cameras from `P` (rectified input) or `K`, `D` (raw), the
    /// extrinsic from `R` and `P`, else from `/tf_static` between the two images' frames.
    fn stereo_rig(
        &self,
        left: (&CameraInfo, &str, (u32, u32)),
        right: (&CameraInfo, &str),
    ) -> Result<StereoRig, BadInput> {
        let rectified = self.node.stereo.rectified;
        let (li, lframe, (w, h)) = left;
        let (ri, rframe) = right;
        // the right image is decoded only for keyframes: its size is the CameraInfo's (else the left's)
        let (rw, rh) = if ri.width > 0 && ri.height > 0 {
            (ri.width, ri.height)
        } else {
            (w, h)
        };
        let (lc, rc) = if rectified {
            (camera_from_p(li, w, h)?, camera_from_p(ri, rw, rh)?)
        } else {
            (
                convert::camera_from_info(li, w, h)?,
                convert::camera_from_info(ri, rw, rh)?,
            )
        };
        let from_p = extrinsic_from_projections(&li.r, &li.p, &ri.r, &ri.p, rectified);
        let (rotation, translation) = match from_p {
            Some(e) => e,
            None => {
                let tf = self
                    .shared
                    .tf_static
                    .lock()
                    .ok()
                    .and_then(|t| t.lookup(rframe, lframe))
                    .filter(|_| lframe.trim_start_matches('/') != rframe.trim_start_matches('/'));
                let Some(right_from_left) = tf else {
                    return Err(BadInput::new(
                        "no_stereo_baseline",
                        format!(
                            "the right CameraInfo's P has no baseline (Tx = 0) and /tf_static has no \
                             transform between '{lframe}' and '{rframe}': frame skipped"
                        ),
                    ));
                };
                let r: Matrix3<f64> = right_from_left.rotation.to_rotation_matrix().into_inner();
                (r, right_from_left.translation.vector)
            }
        };
        let rig = StereoRig {
            left: lc,
            right: rc,
            rotation,
            translation,
        };
        rig.validate().map_err(vo_problem)?;
        Ok(rig)
    }

    /// `base_from_camera` of the left camera: `/tf_static` when it connects the base to the image's frame,
    /// else the `camera_mounting` parameter.
    pub(super) fn mounting(&mut self, camera_frame: &str) -> Isometry3<f64> {
        let base = &self.node.base_frame_id;
        let from_tf = self
            .shared
            .tf_static
            .lock()
            .ok()
            .and_then(|t| t.lookup(base, camera_frame));
        let (source, m) = match from_tf {
            Some(m) => ("tf_static", m),
            None => {
                let p = &self.node.camera_mounting;
                ("parameter", isometry_from_xyz_rpy(p.xyz, p.rpy))
            }
        };
        if source != self.mounting_source {
            log::info!(
                "odometry: camera mounting {base} → '{camera_frame}' from {source}: xyz {:?}",
                m.translation.vector.as_slice()
            );
            self.mounting_source = source;
        }
        m
    }

    /// One synchronised pair of the `stereo_odometry` mode.
    pub fn stereo_odometry(&mut self, l: &Frame, r: &Frame) -> Result<(), BadInput> {
        let (li, ri) = (self.camera_info(0)?, self.camera_info(1)?);
        let left = convert::decode_image(&l.msg, self.node.max_image_pixels)?;
        let header = l.msg.header().clone();
        let rig = self.stereo_rig(
            (&li, &header.frame_id, (left.width(), left.height())),
            (&ri, &r.msg.header().frame_id),
        )?;
        let mounting = self.mounting(&header.frame_id);
        let baseline = rig.baseline();
        let vo = self.vo_mut()?;
        if vo
            .configure(crate::vo::Rig::Stereo(rig), mounting)
            .map_err(vo_problem)?
        {
            log::info!(
                "stereo odometry: started with a {baseline:.3} m baseline (pose continues from the last)"
            );
        }
        self.insert_finished_keyframe(&header.frame_id);
        let stamp = convert::time_ns(&header.stamp) as f64 * 1e-9;
        let gray = GrayFrame::from_rgb(&left);
        // the left image for the point tracker (it may go to the keyframe thread below)
        let for_points = self.point_tracking.is_some().then(|| left.clone());
        let vo = self.vo_mut()?;
        let tracked = vo.track(stamp, &gray).map_err(vo_problem)?;
        let frame = match tracked {
            Some(f) => {
                self.by_flow += 1;
                if f.estimate.keyframe_requested {
                    let right = convert::decode_image(&r.msg, self.node.max_image_pixels);
                    match right {
                        Ok(right) => self.request_keyframe(stamp, left, Some(right)),
                        Err(e) => {
                            // counted; the next frame that needs a keyframe asks again
                            self.shared.problem(&e);
                            self.vo_mut()?.cancel_keyframe_request();
                        }
                    }
                }
                f
            }
            None => {
                let fl = self.extract(&left)?;
                // the right image is decoded and its features computed only when the frame needs its
                // stereo points (a lost frame that does not restart never does: half its cost)
                let max_pixels = self.node.max_image_pixels;
                let mut right_problem = None;
                let (Some(pipeline), Some(vo)) = (self.pipeline.as_mut(), self.vo.as_mut()) else {
                    return Err(BadInput::new("pipeline_unavailable", "no pipeline"));
                };
                let mut right_features = || {
                    let features = convert::decode_image(&r.msg, max_pixels).and_then(|right| {
                        pipeline
                            .extract(&right)
                            .map_err(|e| BadInput::new("pipeline_error", e.to_string()))
                    });
                    features.map_err(|e| right_problem = Some(e)).ok()
                };
                let f = vo
                    .process_lazily(stamp, &fl, &mut right_features)
                    .map_err(vo_problem)?;
                if let Some(problem) = right_problem {
                    // counted; the frame is answered without stereo points (no keyframe, no restart)
                    self.shared.problem(&problem);
                }
                if f.estimate.keyframe {
                    self.map_keyframe(&fl, stamp, &header.frame_id);
                }
                f
            }
        };
        self.poll_map();
        let received = l.received.min(r.received);
        self.publish_odometry(&frame, &header, received);
        if let Some(image) = for_points {
            self.follow_points(&header, &image, received);
        }
        Ok(())
    }

    /// One frame of the monocular `odometry` mode: the landmarks followed in the image alone when that
    /// suffices (the network then runs only for the keyframes it asks for, on the extractor thread), the
    /// features otherwise. With `node.odometry_correspondences` every frame's features are computed here
    /// (they serve the keyframe at once) and its correspondences are published after the odometry.
    pub fn monocular_odometry(&mut self, f: &Frame) -> Result<(), BadInput> {
        let d = self.decode(f, 0)?;
        // one unknown scale for the run: a lever arm in metres cannot be applied, the rotation can
        let mounting = Isometry3::from_parts(
            Translation3::identity(),
            self.mounting(&d.header.frame_id).rotation,
        );
        let vo = self.vo_mut()?;
        if vo
            .configure(crate::vo::Rig::Monocular(d.camera), mounting)
            .map_err(vo_problem)?
        {
            log::info!("monocular odometry: started (pose continues from the last)");
        }
        self.insert_finished_keyframe(&d.header.frame_id);
        let stamp = convert::time_ns(&d.header.stamp) as f64 * 1e-9;
        let features = if self.node.odometry_correspondences {
            Some(self.extract(&d.image)?)
        } else {
            None
        };
        let gray = features
            .as_ref()
            .and_then(|x| x.gray.clone())
            .unwrap_or_else(|| GrayFrame::from_rgb(&d.image));
        let vo = self.vo_mut()?;
        let frame = match vo.track(stamp, &gray).map_err(vo_problem)? {
            Some(frame) => {
                self.by_flow += 1;
                if frame.estimate.keyframe_requested {
                    match &features {
                        // the frame is answered either way; a keyframe that cannot be made is counted
                        Some(x) => {
                            if let Err(e) = self.vo_mut()?.insert_keyframe(stamp, x, None) {
                                self.shared.problem(&vo_problem(e));
                            }
                        }
                        None => self.request_keyframe(stamp, d.image.clone(), None),
                    }
                }
                frame
            }
            None => {
                let extracted;
                let x = match &features {
                    Some(x) => x,
                    None => {
                        extracted = self.extract(&d.image)?;
                        &extracted
                    }
                };
                self.vo_mut()?.process(stamp, x, None).map_err(vo_problem)?
            }
        };
        self.publish_odometry(&frame, &d.header, d.received);
        self.follow_points(&d.header, &d.image, d.received);
        if let Some(x) = features {
            self.publish_keyframe_correspondences(d, x)?;
        }
        Ok(())
    }

    fn vo_mut(&mut self) -> Result<&mut crate::node::visual_odometry::RobotVo, BadInput> {
        self.vo
            .as_mut()
            .ok_or_else(|| BadInput::new("pipeline_unavailable", "no odometry in this mode"))
    }

    /// Hands the keyframe features the extractor thread finished (if any) to the odometry. A failed
    /// extraction is counted and its request withdrawn; the current frame is processed either way.
    fn insert_finished_keyframe(&mut self, frame_id: &str) {
        let Some(done) = self.keyframe_extractor.as_mut().and_then(|x| x.poll()) else {
            return;
        };
        let Some(vo) = self.vo.as_mut() else { return };
        let mut made_from = None;
        let problem = match done.features {
            Ok((l, r)) => match vo.insert_keyframe(done.stamp, &l, r.as_ref()) {
                Ok(made) => {
                    log::debug!(
                        "odometry: keyframe features of {:.3} s ready after {:.0} ms ({})",
                        done.stamp,
                        done.seconds * 1e3,
                        if made { "inserted" } else { "no longer wanted" }
                    );
                    if made {
                        made_from = Some(l);
                    }
                    None
                }
                Err(e) => Some(vo_problem(e)),
            },
            Err(e) => {
                vo.cancel_keyframe_request();
                Some(BadInput::new("pipeline_error", e))
            }
        };
        if let Some(p) = problem {
            self.shared.problem(&p);
        }
        if let Some(l) = made_from {
            self.map_keyframe(&l, done.stamp, frame_id);
        }
    }

    /// A keyframe the odometry just made from an image with features `left`: written to the map
    /// (`node.map.mode: build`) or handed to the localization thread (`localize`).
    fn map_keyframe(&mut self, left: &crate::features::Features, stamp: f64, frame_id: &str) {
        let (Some(session), Some(vo), Some(p)) = (
            self.map_session.as_mut(),
            self.vo.as_ref(),
            self.pipeline.as_ref(),
        ) else {
            return;
        };
        let (Some(odometry), Some(rig)) = (vo.visual_odometry(), vo.rig()) else {
            return;
        };
        let cause = match session.mode() {
            MapMode::Build => "map_write_failed",
            _ => "map_unusable",
        };
        if let Err(e) = session.on_keyframe(
            odometry,
            vo.odom_from_world(),
            left,
            rig.camera(),
            stamp,
            p.descriptor_name(),
            frame_id,
        ) {
            self.shared.problem(&BadInput::new(cause, e));
        }
    }

    /// Publishes a localization as the base's pose in `map` on `localization/pose`: the camera's pose
    /// `map_from_camera` with its covariance (position first, `map` axes) moved to the base through the
    /// camera's mounting.
    pub(super) fn publish_localization(
        &self,
        stamp: Time,
        map_from_camera: &Isometry3<f64>,
        covariance: &nalgebra::Matrix6<f64>,
        base_from_camera: &Isometry3<f64>,
    ) {
        let Some(p) = &self.out.localization_pose else {
            return;
        };
        let map_from_base = map_from_camera * base_from_camera.inverse();
        let lever = map_from_camera.rotation * base_from_camera.inverse().translation.vector;
        let cov =
            crate::node::visual_odometry::moved(covariance, &lever, &nalgebra::Matrix3::identity());
        let msg = PoseWithCovarianceStamped {
            header: Header {
                stamp,
                frame_id: self.node.map.frame_id.clone(),
            },
            pose: PoseWithCovariance {
                pose: convert::pose_msg(&map_from_base),
                covariance: cov.transpose().iter().copied().collect(),
            },
        };
        if let Err(e) = p.publish(&msg) {
            log::error!("publish localization pose: {e}");
        }
    }

    /// The localization thread's reports: each accepted fix is published as the base's pose in `map`
    /// (its `map → odom` goes out with every odometry answer); a map that cannot be used is counted.
    fn poll_map(&mut self) {
        let (Some(session), Some(vo)) = (self.map_session.as_mut(), self.vo.as_ref()) else {
            return;
        };
        let first = session.fix.is_none();
        for event in session.poll() {
            match event {
                MapEvent::Fix(fix) => {
                    if first {
                        log::info!(
                            "map: localized against keyframe {} ({} inliers): map -> odom xyz {:?}",
                            fix.keyframe,
                            fix.inliers,
                            fix.map_from_odom.translation.vector.as_slice()
                        );
                    }
                    let ns = (fix.stamp * 1e9).round() as i64;
                    let stamp = Time {
                        sec: ns.div_euclid(1_000_000_000) as i32,
                        nanosec: ns.rem_euclid(1_000_000_000) as u32,
                    };
                    let base_from_camera = vo.base_from_camera();
                    self.publish_localization(
                        stamp,
                        &fix.map_from_camera,
                        &fix.covariance,
                        base_from_camera,
                    );
                }
                MapEvent::Refused(why) => log::debug!("map: keyframe not localized: {why}"),
                MapEvent::Failed(why) => self.shared.problem(&BadInput::new("map_unusable", why)),
            }
        }
    }

    /// Starts the extraction of a requested keyframe's image(s) on the extractor thread; without one, or
    /// while it is busy, the request is withdrawn and the next frame that needs a keyframe asks again. The
    /// frame itself is answered either way.
    fn request_keyframe(
        &mut self,
        stamp: f64,
        left: crate::image::RgbImage,
        right: Option<crate::image::RgbImage>,
    ) {
        let submitted = match self.keyframe_extractor.as_mut() {
            Some(x) if !x.is_busy() => x.submit(stamp, left, right),
            _ => false,
        };
        if !submitted {
            if let Some(vo) = self.vo.as_mut() {
                vo.cancel_keyframe_request();
            }
        }
    }

    /// Serves an odometry service call (between frames).
    pub fn control(&mut self, c: Control) {
        use r2r::matcha_msgs::srv::SetPose;
        use r2r::std_srvs::srv::Trigger;
        let not_here = || {
            format!(
                "the node runs in {} mode; reset and set_pose serve odometry and stereo_odometry",
                self.node.mode.name()
            )
        };
        match c {
            Control::Reset(req) => {
                let (success, message) = match self.vo.as_mut() {
                    Some(vo) if self.node.mode.odometry() => {
                        vo.reset();
                        self.resets += 1;
                        log::info!("odometry: reset (the next frame's pose is the identity)");
                        (
                            true,
                            "reset: the next frame's base pose is the identity".to_string(),
                        )
                    }
                    _ => (false, not_here()),
                };
                if let Err(e) = req.respond(Trigger::Response { success, message }) {
                    log::error!("reset service: cannot respond: {e}");
                }
            }
            Control::Track(req) => self.serve_track(req),
            Control::InitialPose(m) => {
                let pose = isometry_from_pose(&m.pose.pose);
                let c = &m.pose.covariance;
                let sigma = if c.len() == 36 {
                    c[0].max(c[7]).max(0.0).sqrt()
                } else {
                    0.0
                };
                let frame_ok =
                    m.header.frame_id.is_empty() || m.header.frame_id == self.node.map.frame_id;
                match (self.map_session.as_mut(), pose) {
                    (Some(s), Some(p)) if frame_ok && sigma.is_finite() => {
                        // the base's position; the camera is within a metre of it on any robot this serves
                        let radius = 3.0 * sigma + 1.0;
                        s.set_hint(p.translation.vector, radius);
                        log::info!(
                            "map: /initialpose hint at xyz {:?}, radius {radius:.1} m",
                            p.translation.vector.as_slice()
                        );
                    }
                    _ => self.shared.problem(&BadInput::new(
                        "bad_initial_pose",
                        format!(
                            "/initialpose ignored: not finite, not in frame '{}', or the node is not localizing",
                            self.node.map.frame_id
                        ),
                    )),
                }
            }
            Control::SetPose(req) => {
                let pose = isometry_from_pose(&req.message.pose);
                let (success, message) = match (self.vo.as_mut(), pose) {
                    (Some(vo), Some(p)) if self.node.mode.odometry() => {
                        vo.set_pose(p);
                        log::info!(
                            "odometry: pose set to xyz {:?}",
                            p.translation.vector.as_slice()
                        );
                        (true, String::new())
                    }
                    (Some(_), None) if self.node.mode.odometry() => (
                        false,
                        "the pose is not finite or its quaternion is zero: nothing changed".into(),
                    ),
                    _ => (false, not_here()),
                };
                if !success {
                    self.shared
                        .problem(&BadInput::new("bad_set_pose", message.clone()));
                }
                if let Err(e) = req.respond(SetPose::Response { success, message }) {
                    log::error!("set_pose service: cannot respond: {e}");
                }
            }
        }
    }
}
