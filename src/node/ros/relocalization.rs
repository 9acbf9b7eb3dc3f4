//! The `relocalization` mode: each frame against the map at `node.map.path` (retrieval by place, then local
//! matching of the best candidates: [`crate::map::AppearanceMap`]), with the pose published relative to the
//! keyframe that explains the frame best. The map is opened when the pipeline is ready; in a mapping run
//! (`node.relocalization.build_map`) a frame the map does not explain becomes a view, committed to the
//! database before the next frame (a crash or SIGKILL loses at most the view being written).

use std::path::PathBuf;

use r2r::builtin_interfaces::msg::Time;
use r2r::std_msgs::msg::Header;

use super::inbox::Frame;
use super::worker::Worker;
use crate::features::Features;
use crate::geometry::PinholeCamera;
use crate::map::{choose_reference, AppearanceMap, RetrievedKeyframe};
use crate::node::config::Mode;
use crate::node::convert::{self, BadInput, PairOutput};
use crate::pipeline::PairResult;

impl Worker {
    /// Opens the map (relocalization mode, once the pipeline names the descriptor). A missing map is
    /// created at the first frame of a mapping run. A mapping run on a map it cannot write (a read-only
    /// file system or file) relocalizes against it read-only, and counts that as `map_write_failed`; any
    /// other failure is counted as `map_unusable`.
    pub fn open_relocalization_map(&mut self) {
        if self.node.mode != Mode::Relocalization || self.map.is_some() {
            return;
        }
        let Some(p) = &self.pipeline else { return };
        let descriptor = p.descriptor_name().to_string();
        let path = PathBuf::from(&self.node.map.path);
        let build = self.node.relocalization.build_map;
        if path.exists() {
            let opened =
                AppearanceMap::open(&path, &descriptor, &self.cfg.map, build).or_else(|e| {
                    if !build {
                        return Err(e);
                    }
                    let read_only = AppearanceMap::open(&path, &descriptor, &self.cfg.map, false);
                    if read_only.is_ok() {
                        self.shared.problem(&BadInput::new(
                            "map_write_failed",
                            format!(
                                "{e}: relocalizing against it read-only, no view will be added"
                            ),
                        ));
                        return read_only;
                    }
                    Err(e)
                });
            match opened {
                Ok(m) => {
                    log::info!("opened map {} ({} keyframes)", path.display(), m.len());
                    self.map = Some(m);
                }
                Err(e) => self
                    .shared
                    .problem(&BadInput::new("map_unusable", e.to_string())),
            }
        } else if build {
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

    /// With a map of posed keyframes (built by `stereo_odometry`): the frame's pose in `map` by PnP against
    /// their landmarks, published as the base's pose on `localization/pose` (a refusal is logged at debug
    /// level; a map that fails to read is counted as `map_unusable`).
    fn localize_in_map(
        &mut self,
        feats: &Features,
        place: &[f32],
        camera: &PinholeCamera,
        header: &Header,
    ) {
        let Some(map) = self.map.as_ref() else { return };
        let result = map.localize(feats, place, camera);
        if let Ok(Some(loc)) = &result {
            self.count_map(|c| {
                c.attempts += 1;
                if loc.map_from_camera.is_some() {
                    c.fixes += 1;
                } else {
                    c.refusals += 1;
                }
            });
        }
        match result {
            Ok(Some(loc)) => match loc.map_from_camera {
                Some(map_from_camera) => {
                    let base_from_camera = self.mounting(&header.frame_id);
                    self.publish_localization(
                        header.stamp.clone(),
                        &map_from_camera,
                        &loc.covariance,
                        &base_from_camera,
                    );
                }
                None => log::debug!(
                    "relocalization: not localized in map: {}",
                    loc.refused.as_deref().unwrap_or("no candidate")
                ),
            },
            Ok(None) => {}
            Err(e) => self
                .shared
                .problem(&BadInput::new("map_unusable", e.to_string())),
        }
    }

    /// Updates the mode's map counters (`/diagnostics` `map.*`).
    fn count_map(&self, update: impl FnOnce(&mut crate::node::map_session::MapCounters)) {
        if let Ok(mut s) = self.shared.stats.lock() {
            update(s.relocalization_map.get_or_insert_with(Default::default));
        }
    }

    pub fn relocalize(&mut self, f: &Frame) -> Result<(), BadInput> {
        let d = self.decode(f, 0)?;
        let feats = self.extract(&d.image)?;
        let dim = feats.descriptor_dim();
        let names = self.names();
        if self.map.is_none() && self.node.relocalization.build_map {
            let path = PathBuf::from(&self.node.map.path);
            // a map that exists but was not opened (refused at start-up) is not created over
            if !path.exists() {
                match AppearanceMap::create(&path, &names.0, dim, &self.cfg.map) {
                    Ok(m) => self.map = Some(m),
                    Err(e) => return Err(BadInput::new("map_unusable", e.to_string())),
                }
            }
        }
        let Some(map) = self.map.as_ref() else {
            return Err(BadInput::new(
                "map_unusable",
                "no keyframe map loaded: frame skipped",
            ));
        };
        map.check_dim(dim)
            .map_err(|e| BadInput::new("map_unusable", e.to_string()))?;
        let rc = &self.node.relocalization;
        let place = map.place_of(&feats.descriptors);
        let candidates = map
            .retrieve(&place, rc.candidates, rc.min_global_similarity)
            .map_err(|e| BadInput::new("map_unusable", e.to_string()))?;
        let p = self
            .pipeline
            .as_mut()
            .ok_or_else(|| BadInput::new("pipeline_unavailable", "no pipeline"))?;
        let inliers = |r: &PairResult| r.pose.as_ref().map_or(0, |p| p.num_inliers);
        let mut matched: Vec<(RetrievedKeyframe, PairResult)> = Vec::new();
        for kf in candidates {
            let res = p
                .match_pair(&kf.features, &kf.camera, &feats, &d.camera)
                .map_err(|e| BadInput::new("pipeline_error", e.to_string()))?;
            log::debug!(
                "relocalization: keyframe {} (place similarity {:.3}): {} inliers",
                kf.id,
                kf.similarity,
                inliers(&res)
            );
            matched.push((kf, res));
        }
        let evidence: Vec<(usize, Option<f64>)> = matched
            .iter()
            .map(|(_, r)| {
                let parallax = r.pose.as_ref().ok().map(|p| p.quality.median_parallax_deg);
                (inliers(r), parallax)
            })
            .collect();
        // the map explains the frame as well as its best-matched keyframe does
        let best_inliers = evidence.iter().map(|e| e.0).max().unwrap_or(0);
        // without any pose, the best-retrieved candidate is reported (its matches, no pose)
        let chosen = choose_reference(&evidence).or((!matched.is_empty()).then_some(0));
        let best = chosen.map(|i| matched.swap_remove(i));
        if let Some((kf, res)) = &best {
            let stamp = Time {
                sec: (kf.stamp_ns.div_euclid(1_000_000_000)) as i32,
                nanosec: kf.stamp_ns.rem_euclid(1_000_000_000) as u32,
            };
            let out = PairOutput::of_pair(
                d.header.clone(),
                (stamp, format!("matcha_keyframe_{}", kf.id), kf.id),
                (&kf.features, &feats),
                res,
                (&names.0, &names.1),
                None,
            );
            let msg = self.publish_pair(&out, d.received, None);
            self.count_pair(&msg, out.matches.matches.len(), d.received);
            self.localize_in_map(&feats, &place, &d.camera, &d.header);
        } else if let Ok(mut s) = self.shared.stats.lock() {
            s.processed += 1;
        }
        if self.node.relocalization.build_map
            && best_inliers < self.node.relocalization.new_keyframe_max_inliers
        {
            if let Some(map) = self.map.as_mut() {
                let stamp = convert::time_ns(&d.header.stamp);
                match map.add_view(&feats, place, &d.camera, stamp, &d.header.frame_id) {
                    Ok(id) => {
                        log::info!(
                            "map: added view {id} (best match had {best_inliers} inliers; {} keyframes)",
                            map.len()
                        );
                        self.count_map(|c| c.written += 1);
                    }
                    // the node's own failure (disk full, read-only): the frame was answered, the map keeps
                    // every view committed before, the next frame tries again
                    Err(e) => self.shared.problem(&BadInput::new(
                        "map_write_failed",
                        format!("{e} (the map keeps what was committed before)"),
                    )),
                }
            }
        }
        Ok(())
    }
}
