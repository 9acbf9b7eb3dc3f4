//! The point-tracking file formats, the contract between `matcha track`, `tools/track_clips.py` (ground
//! truth) and `tools/track_baselines.py`:
//!
//! * QUERIES.json: a list of `{"frame": k, "x": u, "y": v}` (pixels, OpenCV convention);
//! * TRACKS.json: `{"tracks": [{"query": i, "points": [null | [x, y, visible, confidence], ...]}]}`, one entry
//!   per frame, `null` before the query frame (the ground truth has the same shape; other top-level keys are
//!   ignored).
//!
//! Not here: running the tracker or scoring.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{Query, TrackPoint};

/// Per query, per frame.
pub type Tracks = Vec<Vec<Option<TrackPoint>>>;

/// A file that cannot be read as the format says.
#[derive(Debug, thiserror::Error)]
pub enum TrackIoError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The content does not follow the format.
    #[error("{path}: {reason}")]
    Format {
        /// File.
        path: PathBuf,
        /// What is wrong, and what is expected.
        reason: String,
    },
}

fn read(path: &Path) -> Result<String, TrackIoError> {
    std::fs::read_to_string(path).map_err(|source| TrackIoError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn format_error(path: &Path, reason: String) -> TrackIoError {
    TrackIoError::Format {
        path: path.to_path_buf(),
        reason,
    }
}

/// Reads QUERIES.json (at least one query).
pub fn read_queries(path: &Path) -> Result<Vec<Query>, TrackIoError> {
    let queries: Vec<Query> = serde_json::from_str(&read(path)?).map_err(|e| {
        format_error(
            path,
            format!("expected a JSON list of {{\"frame\": k, \"x\": u, \"y\": v}} ({e})"),
        )
    })?;
    if queries.is_empty() {
        return Err(format_error(path, "no queries".into()));
    }
    Ok(queries)
}

/// Reads a TRACKS.json (ours, a baseline's, or a ground truth).
pub fn read_tracks(path: &Path) -> Result<Tracks, TrackIoError> {
    let v: Value = serde_json::from_str(&read(path)?)
        .map_err(|e| format_error(path, format!("not JSON ({e})")))?;
    let tracks = v
        .get("tracks")
        .and_then(Value::as_array)
        .ok_or_else(|| format_error(path, "no \"tracks\" list".into()))?;
    let mut out = Vec::with_capacity(tracks.len());
    for (i, t) in tracks.iter().enumerate() {
        if t.get("query").and_then(Value::as_u64) != Some(i as u64) {
            return Err(format_error(
                path,
                format!("track {i} does not have \"query\": {i}"),
            ));
        }
        let points = t
            .get("points")
            .and_then(Value::as_array)
            .ok_or_else(|| format_error(path, format!("track {i} has no \"points\" list")))?;
        let mut series = Vec::with_capacity(points.len());
        for (f, p) in points.iter().enumerate() {
            if p.is_null() {
                series.push(None);
                continue;
            }
            let parsed = p.as_array().filter(|a| a.len() == 4).and_then(|a| {
                Some(TrackPoint {
                    position: [a[0].as_f64()? as f32, a[1].as_f64()? as f32],
                    visible: a[2].as_bool()?,
                    confidence: a[3].as_f64()? as f32,
                })
            });
            series.push(Some(parsed.ok_or_else(|| {
                format_error(
                    path,
                    format!("track {i}, frame {f}: expected null or [x, y, visible, confidence]"),
                )
            })?));
        }
        out.push(series);
    }
    Ok(out)
}

/// TRACKS.json of `tracks`.
pub fn tracks_json(tracks: &Tracks) -> Value {
    let list: Vec<Value> = tracks
        .iter()
        .enumerate()
        .map(|(i, series)| {
            let points: Vec<Value> = series
                .iter()
                .map(|p| match p {
                    Some(p) => json!([p.position[0], p.position[1], p.visible, p.confidence]),
                    None => Value::Null,
                })
                .collect();
            json!({"query": i, "points": points})
        })
        .collect();
    json!({ "tracks": list })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("matcha-track-io-{}-{name}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn tracks_round_trip_and_bad_files_are_errors() {
        let tracks: Tracks = vec![
            vec![
                None,
                Some(TrackPoint {
                    position: [1.5, 2.25],
                    visible: true,
                    confidence: 0.5,
                }),
            ],
            vec![
                Some(TrackPoint {
                    position: [-1.0, 3.0],
                    visible: false,
                    confidence: 0.0,
                }),
                None,
            ],
        ];
        let p = temp("ok.json", &tracks_json(&tracks).to_string());
        assert_eq!(read_tracks(&p).unwrap(), tracks);
        for (name, text) in [
            ("notjson", "{"),
            ("nolist", "{\"x\": 1}"),
            ("order", "{\"tracks\": [{\"query\": 1, \"points\": []}]}"),
            (
                "short",
                "{\"tracks\": [{\"query\": 0, \"points\": [[1, 2, true]]}]}",
            ),
            (
                "type",
                "{\"tracks\": [{\"query\": 0, \"points\": [[1, 2, 1, 0.5]]}]}",
            ),
        ] {
            let p = temp(name, text);
            let e = read_tracks(&p).unwrap_err();
            assert!(matches!(e, TrackIoError::Format { .. }), "{name}: {e}");
        }
        assert!(matches!(
            read_tracks(Path::new("/nonexistent/tracks.json")),
            Err(TrackIoError::Io { .. })
        ));
    }

    #[test]
    fn queries_are_read_and_checked() {
        let p = temp("q.json", "[{\"frame\": 2, \"x\": 10.5, \"y\": 3}]");
        assert_eq!(
            read_queries(&p).unwrap(),
            vec![Query {
                frame: 2,
                x: 10.5,
                y: 3.0
            }]
        );
        for (name, text) in [
            ("empty", "[]"),
            ("neg", "[{\"frame\": -1, \"x\": 1, \"y\": 1}]"),
            ("missing", "[{\"frame\": 0, \"x\": 1}]"),
        ] {
            assert!(read_queries(&temp(name, text)).is_err(), "{name}");
        }
    }
}
