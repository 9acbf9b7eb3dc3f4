//! The relocalization keyframe map: keyframes (keypoints, descriptors, intrinsics) saved to and loaded from
//! disk, with global retrieval.
//!
//! Retrieval is two-stage. A global descriptor per image — the L2-normalised mean of its local descriptors
//! (mean pooling, the simplest aggregation that needs no trained vocabulary) — ranks the keyframes by
//! cosine similarity; only the best `k` are then matched locally with the full pipeline (matching + robust
//! pose), which is what decides. Mean pooling is weak under strong viewpoint change, but it only has to put
//! the right keyframe among the top few, and it costs one `D`-vector per keyframe.
//!
//! The file is JSON (`format`, descriptor name and dimension, keyframes). A map made with another descriptor
//! is refused at load time, since its descriptors cannot be compared.
//!
//! This module knows nothing of r2r.

use std::path::Path;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::features::Features;
use crate::geometry::PinholeCamera;

/// File format version written by this code.
pub const MAP_FORMAT: u32 = 1;

/// Errors reading or writing a map.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// File system error.
    #[error("keyframe map {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
    /// Not a map file, or a corrupt one.
    #[error("keyframe map {path} is not valid: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Made with another descriptor.
    #[error("keyframe map {path} was built with descriptor '{found}' ({found_dim}-D), the node runs '{expected}' ({expected_dim}-D): rebuild the map or change engine.extractor")]
    DescriptorMismatch {
        /// The file.
        path: String,
        /// Descriptor of the map.
        found: String,
        /// Its dimension.
        found_dim: usize,
        /// Descriptor of the node.
        expected: String,
        /// Its dimension.
        expected_dim: usize,
    },
}

/// One stored keyframe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MapKeyframe {
    /// Id, unique in the map (published as `Correspondences.keyframe_id`).
    pub id: u64,
    /// Stamp of the image, nanoseconds.
    pub stamp_ns: i64,
    /// Optical frame id of the image.
    pub frame_id: String,
    /// Intrinsics of the image.
    pub camera: PinholeCamera,
    /// Image width and height.
    pub image_size: [u32; 2],
    /// Keypoints `[x, y]`, original-image pixels.
    pub keypoints: Vec<[f32; 2]>,
    /// Keypoint scores.
    pub scores: Vec<f32>,
    /// Descriptors, row-major `N × dim`.
    pub descriptors: Vec<f32>,
    /// Global descriptor (L2-normalised mean of the local descriptors).
    pub global: Vec<f32>,
}

impl MapKeyframe {
    /// The keyframe's features in the pipeline's type.
    pub fn features(&self, dim: usize) -> Option<Features> {
        let descriptors =
            Array2::from_shape_vec((self.keypoints.len(), dim), self.descriptors.clone()).ok()?;
        Some(Features {
            keypoints: self.keypoints.clone(),
            scores: self.scores.clone(),
            descriptors,
            image_size: self.image_size,
            gray: None,
        })
    }
}

/// A keyframe map.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyframeMap {
    /// [`MAP_FORMAT`].
    pub format: u32,
    /// Descriptor name of every keyframe.
    pub descriptor: String,
    /// Descriptor dimension.
    pub dim: usize,
    /// The keyframes.
    pub keyframes: Vec<MapKeyframe>,
}

/// L2-normalised mean of the rows (zero vector when there are none or they cancel).
pub fn global_descriptor(descriptors: &Array2<f32>) -> Vec<f32> {
    let mut mean = vec![0.0f32; descriptors.ncols()];
    for row in descriptors.rows() {
        for (m, v) in mean.iter_mut().zip(row.iter()) {
            if v.is_finite() {
                *m += *v;
            }
        }
    }
    let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 && norm.is_finite() {
        mean.iter_mut().for_each(|v| *v /= norm);
    }
    mean
}

impl KeyframeMap {
    /// An empty map for a descriptor.
    pub fn new(descriptor: &str, dim: usize) -> Self {
        Self {
            format: MAP_FORMAT,
            descriptor: descriptor.to_string(),
            dim,
            keyframes: Vec::new(),
        }
    }

    /// Loads a map and checks it against the node's descriptor.
    pub fn load(path: &Path, descriptor: &str, dim: usize) -> Result<Self, MapError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| MapError::Io {
            path: p.clone(),
            source,
        })?;
        let map: Self = serde_json::from_str(&text).map_err(|e| MapError::Invalid {
            path: p.clone(),
            reason: e.to_string(),
        })?;
        if map.format != MAP_FORMAT {
            return Err(MapError::Invalid {
                path: p,
                reason: format!("format {} (this node reads {MAP_FORMAT})", map.format),
            });
        }
        if map.descriptor != descriptor || map.dim != dim {
            return Err(MapError::DescriptorMismatch {
                path: p,
                found: map.descriptor,
                found_dim: map.dim,
                expected: descriptor.to_string(),
                expected_dim: dim,
            });
        }
        for kf in &map.keyframes {
            let n = kf.keypoints.len();
            if kf.scores.len() != n || kf.descriptors.len() != n * dim || kf.global.len() != dim {
                return Err(MapError::Invalid {
                    path: p,
                    reason: format!("keyframe {} has inconsistent array lengths", kf.id),
                });
            }
        }
        Ok(map)
    }

    /// Writes the map atomically (temporary file + rename).
    pub fn save(&self, path: &Path) -> Result<(), MapError> {
        let p = path.display().to_string();
        let io = |source| MapError::Io {
            path: p.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let text = serde_json::to_string(self).map_err(|e| MapError::Invalid {
            path: p.clone(),
            reason: e.to_string(),
        })?;
        // crash-safe replace: the new map is written and flushed to disk under a temporary name, then renamed
        // over the old one (atomic on POSIX) and the directory entry flushed; a crash at any point leaves
        // either the old map or the new one, never a mix (a stale temporary file is overwritten next time)
        let tmp = path.with_extension("json.tmp");
        let written = (|| {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()
        })();
        if let Err(e) = written {
            // disk full or read-only: no partial file is left behind
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        std::fs::rename(&tmp, path).map_err(io)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// Adds a keyframe made from features; returns its id.
    pub fn add(
        &mut self,
        features: &Features,
        camera: PinholeCamera,
        stamp_ns: i64,
        frame_id: &str,
    ) -> u64 {
        let id = self
            .keyframes
            .iter()
            .map(|k| k.id)
            .max()
            .map_or(1, |m| m + 1);
        self.keyframes.push(MapKeyframe {
            id,
            stamp_ns,
            frame_id: frame_id.to_string(),
            camera,
            image_size: features.image_size,
            keypoints: features.keypoints.clone(),
            scores: features.scores.clone(),
            descriptors: features.descriptors.iter().copied().collect(),
            global: global_descriptor(&features.descriptors),
        });
        id
    }

    /// Indices of the `k` keyframes most similar to `global` (cosine, best first), at least `min_similarity`.
    pub fn retrieve(&self, global: &[f32], k: usize, min_similarity: f32) -> Vec<(usize, f32)> {
        let mut scored: Vec<(usize, f32)> = self
            .keyframes
            .iter()
            .enumerate()
            .map(|(i, kf)| {
                (
                    i,
                    kf.global
                        .iter()
                        .zip(global)
                        .map(|(a, b)| a * b)
                        .sum::<f32>(),
                )
            })
            .filter(|&(_, s)| s.is_finite() && s >= min_similarity)
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        scored.truncate(k);
        scored
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn feats(rows: Array2<f32>) -> Features {
        let n = rows.nrows();
        Features {
            keypoints: (0..n).map(|i| [i as f32, 2.0 * i as f32]).collect(),
            scores: vec![1.0; n],
            descriptors: rows,
            image_size: [64, 48],
            gray: None,
        }
    }

    #[test]
    fn retrieval_ranks_by_global_similarity_and_roundtrips() {
        let cam = PinholeCamera::new(100.0, 100.0, 32.0, 24.0).unwrap();
        let mut map = KeyframeMap::new("test", 3);
        let a = map.add(
            &feats(array![[1.0, 0.0, 0.0], [0.8, 0.6, 0.0]]),
            cam,
            1,
            "cam",
        );
        let b = map.add(
            &feats(array![[0.0, 0.0, 1.0], [0.0, 0.6, 0.8]]),
            cam,
            2,
            "cam",
        );
        assert_eq!((a, b), (1, 2));
        let q = global_descriptor(&array![[0.0, 0.1, 0.99]]);
        let top = map.retrieve(&q, 1, -1.0);
        assert_eq!(top.len(), 1);
        assert_eq!(map.keyframes[top[0].0].id, b);
        assert!(map.retrieve(&q, 5, 0.99).len() <= 1);

        let dir = std::env::temp_dir().join(format!("matcha-map-test-{}", std::process::id()));
        let path = dir.join("map.json");
        map.save(&path).unwrap();
        let back = KeyframeMap::load(&path, "test", 3).unwrap();
        assert_eq!(back.keyframes.len(), 2);
        let f = back.keyframes[1].features(3).unwrap();
        assert_eq!(f.descriptors, array![[0.0, 0.0, 1.0], [0.0, 0.6, 0.8]]);
        assert!(matches!(
            KeyframeMap::load(&path, "other", 3),
            Err(MapError::DescriptorMismatch { .. })
        ));
        std::fs::write(&path, "{not json").unwrap();
        assert!(matches!(
            KeyframeMap::load(&path, "test", 3),
            Err(MapError::Invalid { .. })
        ));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_crash_between_write_and_rename_leaves_the_old_map() {
        let dir = std::env::temp_dir().join(format!("matcha-map-crash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("map.json");
        let map = KeyframeMap::new("xfeat", 2);
        map.save(&path).unwrap();
        // a crash mid-save leaves a partial temporary file beside the map
        std::fs::write(path.with_extension("json.tmp"), b"{\"format\": 1, \"keyfr").unwrap();
        let loaded = KeyframeMap::load(&path, "xfeat", 2).unwrap();
        assert_eq!(loaded.keyframes.len(), 0);
        // the next save replaces both
        map.save(&path).unwrap();
        assert!(KeyframeMap::load(&path, "xfeat", 2).is_ok());
        assert!(!path.with_extension("json.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            #[test]
            fn any_file_loads_or_errors(
                text in prop_oneof![
                    "\\PC{0,200}",
                    Just(r#"{"format": 1, "descriptor": "xfeat", "dim": 2, "keyframes": [{}]}"#.to_string()),
                    Just(r#"{"format": 1, "descriptor": "xfeat", "dim": 2, "keyframes": []}"#.to_string()),
                    "\\{\"format\": [0-9]{1,3}, \"descriptor\": \"xfeat\", \"dim\": [0-9]{1,3}, \"keyframes\": \\[\\]\\}",
                ],
                dim in 0usize..5,
            ) {
                let path = std::env::temp_dir().join(format!("matcha-map-prop-{}.json", std::process::id()));
                std::fs::write(&path, &text).unwrap();
                let _ = KeyframeMap::load(&path, "xfeat", dim);
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}
