//! Point tracking's r2r glue: the `track` service's requests go to [`PointTracking::request`], each
//! processed frame of an odometry mode to [`PointTracking::on_frame`], and the points' positions out on
//! `point_tracks`. The logic (ids, which frame a request starts on, when the network runs) is the pure
//! [`crate::node::point_tracking`].

use std::time::Instant;

use r2r::matcha_msgs::msg::PointTracks;
use r2r::matcha_msgs::srv::Track;
use r2r::std_msgs::msg::Header;

use super::worker::Worker;
use crate::image::RgbImage;
use crate::node::convert::{self, BadInput};
use crate::node::point_tracking::PointTracking;

impl Worker {
    /// After a frame's odometry answer: moves the followed points onto `image` and publishes them (nothing
    /// while no point is followed). A failure is counted; the points are dropped then (the pure module says
    /// why) and the node goes on.
    pub(super) fn follow_points(&mut self, header: &Header, image: &RgbImage, received: Instant) {
        let (Some(tracking), Some(pipeline)) =
            (self.point_tracking.as_mut(), self.pipeline.as_mut())
        else {
            return;
        };
        let stamp_ns = convert::time_ns(&header.stamp);
        let dense = |img: &RgbImage| pipeline.dense_descriptors(img).map_err(|e| e.to_string());
        let points = match tracking.on_frame(stamp_ns, image, dense) {
            Ok(Some(points)) => points,
            Ok(None) => return,
            Err(e) => {
                self.shared
                    .problem(&BadInput::new("point_tracking_failed", e));
                return;
            }
        };
        let mut msg = PointTracks {
            header: header.clone(),
            ..Default::default()
        };
        for (id, p) in points {
            msg.ids.push(id);
            msg.points.extend_from_slice(&p.position);
            msg.visible.push(p.visible);
            msg.confidence.push(p.confidence);
        }
        msg.latency_ms = received.elapsed().as_secs_f32() * 1e3;
        if let Some(out) = &self.out.point_tracks {
            if let Err(e) = out.publish(&msg) {
                log::error!("publish point_tracks: {e}");
            }
        }
    }

    /// Serves a `track` call (between frames): the points start on the newest processed image.
    pub(super) fn serve_track(&mut self, req: r2r::ServiceRequest<Track::Service>) {
        let m = &req.message;
        let stamp_ns = convert::time_ns(&m.stamp);
        let result = match (self.point_tracking.as_mut(), self.pipeline.as_mut()) {
            (Some(tracking), Some(pipeline)) => {
                let dense =
                    |img: &RgbImage| pipeline.dense_descriptors(img).map_err(|e| e.to_string());
                request(tracking, stamp_ns, &m.points, m.clear, dense)
            }
            (None, _) => Err("point tracking is off (node.point_tracking.enabled)".to_string()),
            (_, None) => Err("the pipeline is not available (see diagnostics)".to_string()),
        };
        let resp = match result {
            Ok(ids) => {
                log::info!("track: {} point(s) started, ids {ids:?}", ids.len());
                Track::Response {
                    success: true,
                    message: String::new(),
                    ids,
                }
            }
            Err(message) => {
                self.shared
                    .problem(&BadInput::new("bad_track_request", message.clone()));
                Track::Response {
                    success: false,
                    message,
                    ids: Vec::new(),
                }
            }
        };
        if let Err(e) = req.respond(resp) {
            log::error!("track service: cannot respond: {e}");
        }
    }
}

/// A request with a zero stamp means "the newest processed image".
fn request<F>(
    tracking: &mut PointTracking,
    stamp_ns: i64,
    points: &[f32],
    clear: bool,
    dense: F,
) -> Result<Vec<u32>, String>
where
    F: FnOnce(&RgbImage) -> Result<crate::features::DenseDescriptors, String>,
{
    let stamp = (stamp_ns != 0).then_some(stamp_ns);
    tracking
        .request(stamp, points, clear, dense)
        .map_err(|e| e.to_string())
}
