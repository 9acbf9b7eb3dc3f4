//! The answers made of correspondences and a relative pose: the `odometry` mode's optional ones
//! (`node.odometry_correspondences`: each frame against the last keyframe, see [`crate::node::keyframes`];
//! the mode's odometry itself is [`super::vo_mode`]), the `stereo` mode (the left
//! → right pose of each synchronised pair, metric with the right `P`'s baseline) and the `match` service
//! (an explicit pair; a planar ambiguity there gets the pipeline's denser second try, which the camera
//! modes skip for their latency). They share the [`PairOutput`] they publish; the metric stereo odometry is
//! [`super::vo_mode`].

use std::time::Instant;

use r2r::matcha_msgs::msg::Correspondences;
use r2r::matcha_msgs::srv::Match;

use super::inbox::Frame;
use super::worker::{Decoded, Keyframe, Worker};
use crate::features::Features;
use crate::node::convert::{self, BadInput, ImageMsg, PairOutput};
use crate::node::keyframes::Step;

impl Worker {
    /// The `odometry` mode's correspondences (with `node.odometry_correspondences`): the frame `d` with its
    /// features against the keyframe that [`crate::node::keyframes::KeyframeTracker`] keeps (the first
    /// frame only becomes it). The frame was already counted by its odometry answer.
    pub fn publish_keyframe_correspondences(
        &mut self,
        d: Decoded,
        feats: Features,
    ) -> Result<(), BadInput> {
        let want_debug = self.out.debug_wanted();
        let Some(kf) = self.keyframe.take() else {
            self.tracker.step(None);
            self.keyframe = Some(Keyframe {
                header: d.header,
                features: feats,
                camera: d.camera,
                image: want_debug.then_some(d.image),
            });
            return Ok(());
        };
        let names = self.names();
        let pair = self.match_features((&kf.features, &kf.camera), (&feats, &d.camera));
        let pair = match pair {
            Ok(p) => p,
            Err(e) => {
                self.keyframe = Some(kf);
                return Err(e);
            }
        };
        let out = PairOutput::of_pair(
            d.header.clone(),
            (
                kf.header.stamp.clone(),
                kf.header.frame_id.clone(),
                self.tracker.keyframe_id(),
            ),
            (&kf.features, &feats),
            &pair,
            (&names.0, &names.1),
            None,
        );
        let images = match (&kf.image, want_debug) {
            (Some(a), true) => Some((a, &d.image)),
            _ => None,
        };
        self.publish_pair(&out, d.received, images);
        let step = self.tracker.step(
            pair.pose
                .as_ref()
                .ok()
                .map(|rp| (rp.num_inliers, rp.quality.median_parallax_deg)),
        );
        let replace = match &step {
            Step::Tracked { new_keyframe } => *new_keyframe,
            Step::Failed { reset } => *reset,
            Step::Initialise => true,
        };
        self.keyframe = Some(if replace {
            Keyframe {
                header: d.header,
                features: feats,
                camera: d.camera,
                image: want_debug.then_some(d.image),
            }
        } else {
            kf
        });
        Ok(())
    }

    pub fn stereo(&mut self, l: &Frame, r: &Frame) -> Result<(), BadInput> {
        let a = self.decode(l, 0)?;
        let b = self.decode(r, 1)?;
        let baseline = self
            .shared
            .camera_info
            .lock()
            .ok()
            .and_then(|c| c[1].as_ref().and_then(convert::baseline_from_p));
        let fa = self.extract(&a.image)?;
        let fb = self.extract(&b.image)?;
        let want_debug = self.out.debug_wanted();
        let names = self.names();
        let pair = self.match_features((&fa, &a.camera), (&fb, &b.camera))?;
        let out = PairOutput::of_pair(
            b.header.clone(),
            (a.header.stamp.clone(), a.header.frame_id.clone(), 0),
            (&fa, &fb),
            &pair,
            (&names.0, &names.1),
            baseline,
        );
        let received = a.received.min(b.received);
        let msg = self.publish_pair(&out, received, want_debug.then_some((&a.image, &b.image)));
        self.count_pair(&msg, out.matches.matches.len(), received);
        Ok(())
    }

    pub fn serve(&mut self, req: r2r::ServiceRequest<Match::Service>) {
        let resp = match self.serve_inner(&req.message) {
            Ok(c) => Match::Response {
                success: true,
                message: String::new(),
                correspondences: c,
            },
            Err(b) => {
                self.shared.problem(&b);
                Match::Response {
                    success: false,
                    message: format!("{}: {}", b.cause, b.message),
                    correspondences: Correspondences::default(),
                }
            }
        };
        if let Err(e) = req.respond(resp) {
            log::error!("match service: cannot respond: {e}");
        }
    }

    pub fn serve_inner(&mut self, m: &Match::Request) -> Result<Correspondences, BadInput> {
        let received = Instant::now();
        match m.mode.as_str() {
            "" | "geometric" => {}
            "semantic" => return self.serve_semantic(m, received),
            other => {
                return Err(BadInput::new(
                    "bad_match_mode",
                    format!("mode '{other}': use \"geometric\" (or \"\") or \"semantic\""),
                ))
            }
        }
        if !self.ensure_pipeline() {
            return Err(BadInput::new(
                "pipeline_unavailable",
                "the pipeline could not be created (see diagnostics)",
            ));
        }
        let max = self.node.max_image_pixels;
        let ia = convert::decode_image(&ImageMsg::Raw(m.image_a.clone()), max)?;
        let ib = convert::decode_image(&ImageMsg::Raw(m.image_b.clone()), max)?;
        let ca = convert::camera_from_info(&m.camera_info_a, ia.width(), ia.height())?;
        let cb = convert::camera_from_info(&m.camera_info_b, ib.width(), ib.height())?;
        let first_a = self.extract(&ia)?;
        let first_b = self.extract(&ib)?;
        let names = self.names();
        // a request, not the camera stream: a planar ambiguity gets the denser second try
        let result = self.match_images(
            crate::pipeline::Frame::new(&ia, &first_a, &ca),
            crate::pipeline::Frame::new(&ib, &first_b, &cb),
        )?;
        let (fa, fb) = result.features(&first_a, &first_b);
        let pair = &result.pair;
        let out = PairOutput::of_pair(
            m.image_b.header.clone(),
            (
                m.image_a.header.stamp.clone(),
                m.image_a.header.frame_id.clone(),
                0,
            ),
            (fa, fb),
            pair,
            (&names.0, &names.1),
            None,
        );
        Ok(convert::correspondences_msg(
            &out,
            received.elapsed().as_secs_f32() * 1e3,
        ))
    }
}
