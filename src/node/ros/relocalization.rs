//! The `relocalization` mode: each frame against a keyframe map (global descriptor retrieval, then local
//! matching of the best candidates), with the map loaded at start-up and, in a mapping run, extended by the
//! frames it does not explain and saved every ten new keyframes and at shutdown.

use std::path::PathBuf;

use r2r::builtin_interfaces::msg::Time;

use super::inbox::Frame;
use super::worker::Worker;
use crate::features::Features;
use crate::node::config::Mode;
use crate::node::convert::{self, BadInput, PairOutput};
use crate::node::keyframes::published_pose;
use crate::node::map::{global_descriptor, KeyframeMap};

impl Worker {
    pub fn load_map(&mut self) {
        if self.node.mode != Mode::Relocalization || self.map.is_some() {
            return;
        }
        let Some(p) = &self.pipeline else { return };
        let name = p.descriptor_name().to_string();
        let path = PathBuf::from(&self.node.relocalization.map_path);
        if path.exists() {
            // dimension is checked against the first extraction (unknown before); load lazily by name
            match std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v.get("dim").and_then(|d| d.as_u64()))
            {
                Some(dim) => match KeyframeMap::load(&path, &name, dim as usize) {
                    Ok(m) => {
                        log::info!(
                            "loaded keyframe map {} ({} keyframes)",
                            path.display(),
                            m.keyframes.len()
                        );
                        self.map = Some(m);
                    }
                    Err(e) => self
                        .shared
                        .problem(&BadInput::new("map_unusable", e.to_string())),
                },
                None => self.shared.problem(&BadInput::new(
                    "map_unusable",
                    format!("{} is not a keyframe map", path.display()),
                )),
            }
        } else if self.node.relocalization.build_map {
            log::info!("no map at {}: building a new one", path.display());
        } else {
            self.shared.problem(&BadInput::new(
                "map_unusable",
                format!(
                    "{} does not exist (set node.relocalization.build_map to make one)",
                    path.display()
                ),
            ));
        }
    }

    pub fn save_map(&mut self) {
        if !self.node.relocalization.build_map || self.map_dirty == 0 {
            return;
        }
        if let Some(m) = &self.map {
            let path = PathBuf::from(&self.node.relocalization.map_path);
            match m.save(&path) {
                Ok(()) => {
                    log::info!(
                        "saved keyframe map {} ({} keyframes)",
                        path.display(),
                        m.keyframes.len()
                    );
                    self.map_dirty = 0;
                }
                // counted as the node's own failure (disk full, read-only): the previous map stays intact,
                // the keyframes stay in memory and the next save tries again
                Err(e) => self.shared.problem(&BadInput::new(
                    "map_save_failed",
                    format!("{e} (the previous map file is unchanged; retried at the next save)"),
                )),
            }
        }
    }

    pub fn relocalize(&mut self, f: &Frame) -> Result<(), BadInput> {
        let d = self.decode(f, 0)?;
        let feats = self.extract(&d.image)?;
        let p = self
            .pipeline
            .as_mut()
            .ok_or_else(|| BadInput::new("pipeline_unavailable", "no pipeline"))?;
        let names = (p.descriptor_name().to_string(), self.matcher_name.clone());
        if self.map.is_none() && self.node.relocalization.build_map {
            self.map = Some(KeyframeMap::new(&names.0, feats.descriptor_dim()));
        }
        let Some(map) = self.map.as_ref() else {
            return Err(BadInput::new(
                "map_unusable",
                "no keyframe map loaded: frame skipped",
            ));
        };
        if map.dim != feats.descriptor_dim() {
            return Err(BadInput::new(
                "map_unusable",
                format!(
                    "map descriptors are {}-D, extractor gives {}-D",
                    map.dim,
                    feats.descriptor_dim()
                ),
            ));
        }
        let rc = &self.node.relocalization;
        let global = global_descriptor(&feats.descriptors);
        let candidates = map.retrieve(&global, rc.candidates, rc.min_global_similarity);
        let mut best: Option<(usize, crate::pipeline::PairResult, Features)> = None;
        for (idx, _) in candidates {
            let kf = &map.keyframes[idx];
            let Some(kf_feats) = kf.features(map.dim) else {
                continue;
            };
            let res = match p.match_pair(&kf_feats, &kf.camera, &feats, &d.camera) {
                Ok(r) => r,
                Err(e) => return Err(BadInput::new("pipeline_error", e.to_string())),
            };
            let inl =
                |r: &crate::pipeline::PairResult| r.pose.as_ref().map_or(0, |p| p.num_inliers);
            if best.as_ref().is_none_or(|(_, b, _)| inl(&res) > inl(b)) {
                best = Some((idx, res, kf_feats));
            }
        }
        let best_inliers = best
            .as_ref()
            .map_or(0, |(_, r, _)| r.pose.as_ref().map_or(0, |p| p.num_inliers));
        if let Some((idx, res, kf_feats)) = &best {
            let kf = &map.keyframes[*idx];
            let (iso, cov) = published_pose(&res.pose);
            let out = PairOutput {
                header: d.header.clone(),
                reference_stamp: Time {
                    sec: (kf.stamp_ns.div_euclid(1_000_000_000)) as i32,
                    nanosec: kf.stamp_ns.rem_euclid(1_000_000_000) as u32,
                },
                reference_frame_id: format!("matcha_keyframe_{}", kf.id),
                keyframe_id: kf.id,
                features: (kf_feats, &feats),
                matches: &res.matches,
                pose: res.pose.as_ref().map_err(|e| e.to_string()),
                pose_b_in_a: iso,
                covariance: cov,
                metric: false,
                names: (&names.0, &names.1),
            };
            let msg = self.publish_pair(&out, d.received, None);
            self.count_pair(&msg, out.matches.matches.len(), d.received);
        } else if let Ok(mut s) = self.shared.stats.lock() {
            s.processed += 1;
        }
        if self.node.relocalization.build_map
            && best_inliers < self.node.relocalization.new_keyframe_max_inliers
        {
            if let Some(map) = self.map.as_mut() {
                let id = map.add(
                    &feats,
                    d.camera,
                    convert::time_ns(&d.header.stamp),
                    &d.header.frame_id,
                );
                log::info!("map: added keyframe {id} (best match had {best_inliers} inliers)");
                self.map_dirty += 1;
                // every 10 new keyframes (after a failed save, 10 more: no retry per frame on a full disk)
                if self.map_dirty.is_multiple_of(10) {
                    self.save_map();
                }
            }
        }
        Ok(())
    }
}
