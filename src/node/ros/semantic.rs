//! The `match` service's semantic mode (`mode: "semantic"`): MATCHA's semantic configuration on an explicit
//! pair, as `matcha match --mode semantic` runs it ([`crate::matching::semantic`]). Each keypoint of image a
//! goes to the most similar place of image b's F_m; a cycle-consistent correspondence is marked as an
//! inlier. There is no pose. The semantic extractor is built on the first such request (it needs
//! `engine.extractor: matcha` with engines exported with `--mode semantic`; otherwise the request is refused
//! with the setting to change) and kept.

use std::time::Instant;

use r2r::matcha_msgs::msg::Correspondences;
use r2r::matcha_msgs::srv::Match;

use super::worker::Worker;
use crate::features::FeatureExtractor;
use crate::matching::semantic::{as_pair, semantic_matches};
use crate::node::convert::{self, BadInput, ImageMsg, PairOutput};

/// The matcher name the semantic answer carries.
const SEMANTIC_MATCHER: &str = "semantic-argmax";

impl Worker {
    /// A `match` request in semantic mode.
    pub(super) fn serve_semantic(
        &mut self,
        m: &Match::Request,
        received: Instant,
    ) -> Result<Correspondences, BadInput> {
        let max = self.node.max_image_pixels;
        let ia = convert::decode_image(&ImageMsg::Raw(m.image_a.clone()), max)?;
        let ib = convert::decode_image(&ImageMsg::Raw(m.image_b.clone()), max)?;
        convert::camera_from_info(&m.camera_info_a, ia.width(), ia.height())?;
        convert::camera_from_info(&m.camera_info_b, ib.width(), ib.height())?;
        if self.semantic.is_none() {
            let built = crate::pipeline::build_semantic_extractor(&self.cfg)
                .map_err(|e| BadInput::new("semantic_unavailable", e.to_string()))?;
            self.semantic = Some(built);
        }
        let Some(extractor) = self.semantic.as_mut() else {
            return Err(BadInput::new(
                "semantic_unavailable",
                "no semantic extractor",
            ));
        };
        let failed =
            |e: crate::features::FeatureError| BadInput::new("pipeline_error", e.to_string());
        let points_a = extractor.extract(&ia).map_err(failed)?.keypoints;
        let dense_a = extractor.dense_descriptors(&ia).map_err(failed)?;
        let dense_b = extractor.dense_descriptors(&ib).map_err(failed)?;
        let name = extractor.name().to_string();
        let found: Vec<_> = semantic_matches(&dense_a, &dense_b, &points_a)
            .into_iter()
            .flatten()
            .collect();
        let (fa, fb, matches) =
            as_pair(&found, [ia.width(), ia.height()], [ib.width(), ib.height()]);
        let out = PairOutput {
            header: m.image_b.header.clone(),
            reference_stamp: m.image_a.header.stamp.clone(),
            reference_frame_id: m.image_a.header.frame_id.clone(),
            keyframe_id: 0,
            features: (&fa, &fb),
            matches: &matches,
            pose: Err(
                "semantic matching: no pose (instances of a category share no geometry)".into(),
            ),
            pose_b_in_a: None,
            covariance: [0.0; 36],
            metric: false,
            names: (&name, SEMANTIC_MATCHER),
        };
        let mut msg = convert::correspondences_msg(&out, received.elapsed().as_secs_f32() * 1e3);
        // the cycle-consistent correspondences are the inliers
        msg.inliers = found.iter().map(|s| s.mutual).collect();
        msg.num_inliers = found.iter().filter(|s| s.mutual).count() as u32;
        msg.num_keypoints_a = points_a.len() as u32;
        Ok(msg)
    }
}
