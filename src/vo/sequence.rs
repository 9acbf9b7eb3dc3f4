//! Stereo image sequences on disk, as `tools/vo_sequences.py` writes them and `matcha vo` reads them: a
//! folder with `sequence.json` (rig calibration, frames with time stamps and image paths, segments) and,
//! when known, `groundtruth.txt` (TUM poses of the left camera).
//!
//! Only the description is read here; images are loaded by the caller, one frame at a time.

// `!(x > y)` is deliberate: it is true for NaN, which must take the rejecting branch.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use std::path::{Path, PathBuf};

use nalgebra::{Matrix3, Vector3};

use super::StereoRig;
use crate::geometry::PinholeCamera;

/// Errors reading a sequence description.
#[derive(Debug, thiserror::Error)]
pub enum SequenceError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The JSON does not describe a sequence.
    #[error("invalid sequence description {path}: {reason}")]
    Invalid {
        /// File.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

#[derive(serde::Deserialize)]
struct Intrinsics {
    fx: f64,
    fy: f64,
    cx: f64,
    cy: f64,
}

#[derive(serde::Deserialize)]
struct Extrinsic {
    #[serde(rename = "R")]
    r: [[f64; 3]; 3],
    t: [f64; 3],
}

/// One frame of a sequence.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SequenceFrame {
    /// Index in the sequence.
    pub index: usize,
    /// Time stamp, seconds.
    pub stamp: f64,
    /// Left image, relative to the sequence folder.
    pub left: PathBuf,
    /// Right image, relative to the sequence folder.
    pub right: PathBuf,
}

#[derive(serde::Deserialize)]
struct Description {
    name: String,
    #[serde(default)]
    description: String,
    rate_hz: f64,
    left: Intrinsics,
    right: Intrinsics,
    right_from_left: Extrinsic,
    frames: Vec<SequenceFrame>,
    #[serde(default)]
    path_length_m: Option<f64>,
}

/// A stereo sequence: its rig, frames and where it lives.
#[derive(Debug, Clone)]
pub struct StereoSequence {
    /// The folder.
    pub root: PathBuf,
    /// Its name.
    pub name: String,
    /// One line about it.
    pub description: String,
    /// Camera rate, Hz.
    pub rate_hz: f64,
    /// The calibrated rig.
    pub rig: StereoRig,
    /// Frames in time order.
    pub frames: Vec<SequenceFrame>,
    /// Length of the ground-truth path, metres, when known.
    pub path_length_m: Option<f64>,
}

impl StereoSequence {
    /// Reads `root/sequence.json` and checks it (a valid rig, increasing time stamps, at least one frame).
    pub fn open(root: &Path) -> Result<Self, SequenceError> {
        let path = root.join("sequence.json");
        let text = std::fs::read_to_string(&path).map_err(|source| SequenceError::Io {
            path: path.clone(),
            source,
        })?;
        let invalid = |reason: String| SequenceError::Invalid {
            path: path.clone(),
            reason,
        };
        let d: Description = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let camera = |i: &Intrinsics| {
            PinholeCamera::new(i.fx, i.fy, i.cx, i.cy).map_err(|e| invalid(e.to_string()))
        };
        let rig = StereoRig {
            left: camera(&d.left)?,
            right: camera(&d.right)?,
            rotation: Matrix3::from_fn(|i, j| d.right_from_left.r[i][j]),
            translation: Vector3::from(d.right_from_left.t),
        };
        rig.validate().map_err(|e| invalid(e.to_string()))?;
        if d.frames.is_empty() {
            return Err(invalid("no frames".into()));
        }
        if let Some(w) = d.frames.windows(2).find(|w| !(w[1].stamp > w[0].stamp)) {
            return Err(invalid(format!(
                "time stamps must increase (frame {} at {} s after frame {} at {} s)",
                w[1].index, w[1].stamp, w[0].index, w[0].stamp
            )));
        }
        if !(d.rate_hz > 0.0) {
            return Err(invalid(format!("rate_hz must be > 0 (got {})", d.rate_hz)));
        }
        Ok(Self {
            root: root.to_path_buf(),
            name: d.name,
            description: d.description,
            rate_hz: d.rate_hz,
            rig,
            frames: d.frames,
            path_length_m: d.path_length_m,
        })
    }

    /// The ground-truth file, if the sequence has one.
    pub fn groundtruth(&self) -> Option<PathBuf> {
        let p = self.root.join("groundtruth.txt");
        p.is_file().then_some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, json: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("sequence.json"), json).unwrap();
    }

    const GOOD: &str = r#"{"name":"t","rate_hz":15,"width":64,"height":48,
        "left":{"fx":50,"fy":50,"cx":31.5,"cy":23.5},"right":{"fx":50,"fy":50,"cx":31.5,"cy":23.5},
        "right_from_left":{"R":[[1,0,0],[0,1,0],[0,0,1]],"t":[-0.12,0,0]},
        "frames":[{"index":0,"stamp":0.0,"left":"left/0.png","right":"right/0.png"},
                  {"index":1,"stamp":0.1,"left":"left/1.png","right":"right/1.png"}]}"#;

    #[test]
    fn reads_a_description_and_rejects_broken_ones() {
        let dir = std::env::temp_dir().join(format!("matcha-seq-{}", std::process::id()));
        write(&dir, GOOD);
        let s = StereoSequence::open(&dir).unwrap();
        assert_eq!(s.frames.len(), 2);
        assert!((s.rig.baseline() - 0.12).abs() < 1e-12);
        write(&dir, &GOOD.replace("\"stamp\":0.1", "\"stamp\":0.0"));
        assert!(StereoSequence::open(&dir)
            .unwrap_err()
            .to_string()
            .contains("increase"));
        write(&dir, &GOOD.replace("[-0.12,0,0]", "[0,0,0]"));
        assert!(StereoSequence::open(&dir)
            .unwrap_err()
            .to_string()
            .contains("baseline"));
        write(&dir, "{");
        assert!(matches!(
            StereoSequence::open(&dir),
            Err(SequenceError::Invalid { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(
            StereoSequence::open(&dir),
            Err(SequenceError::Io { .. })
        ));
    }
}
