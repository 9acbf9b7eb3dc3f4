//! The tracker fed by a live stream (the ROS node): points are asked for on the frame the tracker processed
//! last (a client saw that image and picked pixels on it), and a tracker without points need not process
//! every frame, so the stream can jump it to the newest one.
//!
//! Why a separate entry point: [`Tracker::add_query`] takes queries on frames still to come, which suits a
//! folder of frames known in advance; a live client only knows frames that have already arrived. Not here:
//! which frame is the latest in the node, ids, message conversion (`node::point_tracking`).

use super::state::PointState;
use super::{Query, TrackError, TrackFrame, Tracker};

impl Tracker {
    /// Starts `points` (pixels) on the frame processed last and returns their indices (the order of
    /// [`Tracker::step`]'s output). All or none: a point that is not finite or lies outside that frame refuses
    /// the whole request, and so does a tracker that has processed no frame yet.
    pub fn start_on_latest(&mut self, points: &[[f32; 2]]) -> Result<Vec<usize>, TrackError> {
        let first = self.points.len();
        let Some(latest) = self.previous.as_ref() else {
            return Err(TrackError::BadQuery {
                index: first,
                reason: "no frame has been processed yet".into(),
            });
        };
        let [w, h] = latest.size();
        let frame = self.frames_seen - 1;
        let mut descriptors = Vec::with_capacity(points.len());
        for (k, &[x, y]) in points.iter().enumerate() {
            let inside = x.is_finite()
                && y.is_finite()
                && x >= -0.5
                && y >= -0.5
                && x < w as f32 - 0.5
                && y < h as f32 - 0.5;
            let reason = if !inside {
                format!("({x}, {y}) is outside the {w}×{h} frame {frame}")
            } else if let Some(d) = latest.dense.sample([x, y]) {
                descriptors.push(d);
                continue;
            } else {
                format!("({x}, {y}) has no descriptor on frame {frame} (a featureless image?)")
            };
            return Err(TrackError::BadQuery {
                index: first + k,
                reason,
            });
        }
        let base = latest.pyramid.base().clone();
        let mut started = Vec::with_capacity(points.len());
        for (&[x, y], d) in points.iter().zip(descriptors) {
            let i = self.points.len();
            self.points.push(PointState::new(Query { frame, x, y }));
            self.start_point(i, &base, d);
            started.push(i);
        }
        Ok(started)
    }

    /// Forgets every point and makes `frame` the frame processed last (the next [`Tracker::start_on_latest`]
    /// starts on it). Frame indices go on counting.
    pub fn restart_on(&mut self, frame: TrackFrame) {
        self.points.clear();
        self.previous = Some(frame);
        self.frames_seen += 1;
    }

    /// Forgets every point; the frame processed last stays.
    pub fn clear(&mut self) {
        self.points.clear();
    }
}
