//! The node's point tracking without ROS (the r2r glue is `node::ros::point_tracks`): a client picks pixels on
//! the newest image the node processed (`track` service), and the node follows them through every later frame
//! with [`crate::track::Tracker`] and publishes where they are (`point_tracks`).
//!
//! The dense descriptor map (the extractor's network) runs only while points are followed. While none is, the
//! newest image is kept, so that a request can start on it: the map of that image is computed then. Points get
//! ids that are never reused within a run (a `clear` moves the next id on), so a client can tell a restarted
//! point from an old one. At most `max_points` are followed at once, which bounds the cost per frame and the
//! memory (the tracker keeps the previous frame and a few hundred bytes per point, whatever the run's length).
//!
//! Not here: the messages, the engines (the caller passes a function that computes a dense map), which modes
//! offer it (the odometry modes, on the (left) image).

use image::imageops::grayscale;

use crate::features::DenseDescriptors;
use crate::image::RgbImage;
use crate::track::{TrackError, TrackFrame, TrackOptions, TrackPoint, Tracker};

/// Why a `track` request started nothing.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TrackRequestError {
    /// No frame has been processed yet.
    #[error("no image has been processed yet: nothing to place the points on")]
    NoFrame,
    /// The request names another image than the newest processed one.
    #[error("the points must be on the newest processed image (stamp {latest_ns} ns), not {asked_ns} ns")]
    NotLatest {
        /// The stamp asked for, nanoseconds.
        asked_ns: i64,
        /// The newest processed image's stamp, nanoseconds.
        latest_ns: i64,
    },
    /// More points than `node.point_tracking.max_points`.
    #[error("{total} points would be followed; at most {max} (node.point_tracking.max_points)")]
    TooMany {
        /// Points followed after the request.
        total: usize,
        /// The limit.
        max: usize,
    },
    /// `points` does not hold x, y pairs.
    #[error("points must hold x, y pairs: {0} values given")]
    OddLength(usize),
    /// A point the tracker refuses (outside the image, not finite).
    #[error("{0}")]
    Point(String),
    /// The dense map of the image could not be computed.
    #[error("the descriptor map could not be computed: {0}")]
    Dense(String),
}

/// Where each followed point is on one frame: `(id, point)`, in the order the points were started.
pub type PointsOnFrame = Vec<(u32, TrackPoint)>;

/// Point tracking over the node's stream.
#[derive(Debug)]
pub struct PointTracking {
    tracker: Tracker,
    levels: u32,
    max_points: usize,
    /// Id of the tracker's point 0.
    first_id: u32,
    /// Stamp (ns) of the newest processed frame.
    latest_ns: Option<i64>,
    /// That frame's image while no point is followed (a request starts on it).
    latest_image: Option<RgbImage>,
    /// Stamp of the frame the tracker processed last.
    tracked_ns: Option<i64>,
}

/// A frame as the tracker needs it.
fn track_frame(
    image: &RgbImage,
    dense: DenseDescriptors,
    levels: u32,
) -> Result<TrackFrame, String> {
    TrackFrame::new(grayscale(image), dense, levels)
}

impl PointTracking {
    /// No points yet; `options` is the configuration's `track:` section.
    pub fn new(options: TrackOptions, max_points: usize) -> Result<Self, TrackError> {
        let levels = options.pyramid_levels;
        Ok(Self {
            tracker: Tracker::new(options)?,
            levels,
            max_points,
            first_id: 0,
            latest_ns: None,
            latest_image: None,
            tracked_ns: None,
        })
    }

    /// Points followed now.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    /// True when no point is followed.
    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Forgets every point; their ids are not given again.
    fn forget_points(&mut self) {
        self.first_id = self.first_id.wrapping_add(self.tracker.len() as u32);
        self.tracker.clear();
    }

    /// A frame the node processed (stamps increasing). Returns where the points are on it (`Ok(None)` while
    /// none is followed: `dense` is not called then). A frame the tracker refuses (another size) ends the
    /// points followed so far: the error says why, and the next request starts afresh.
    pub fn on_frame<F>(
        &mut self,
        stamp_ns: i64,
        image: &RgbImage,
        dense: F,
    ) -> Result<Option<PointsOnFrame>, String>
    where
        F: FnOnce(&RgbImage) -> Result<DenseDescriptors, String>,
    {
        self.latest_ns = Some(stamp_ns);
        if self.tracker.is_empty() {
            self.latest_image = Some(image.clone());
            return Ok(None);
        }
        self.latest_image = None;
        let stepped = dense(image)
            .and_then(|d| track_frame(image, d, self.levels))
            .and_then(|f| self.tracker.step(f).map_err(|e| e.to_string()));
        match stepped {
            Ok(points) => {
                self.tracked_ns = Some(stamp_ns);
                let first = self.first_id;
                Ok(Some(
                    points
                        .into_iter()
                        .enumerate()
                        .filter_map(|(i, p)| p.map(|p| (first.wrapping_add(i as u32), p)))
                        .collect(),
                ))
            }
            Err(e) => {
                let n = self.tracker.len();
                self.forget_points();
                self.latest_image = Some(image.clone());
                Err(format!("{e}: the {n} points followed so far are dropped"))
            }
        }
    }

    /// Starts `points` (x, y pairs, pixels) on the newest processed frame, whose stamp must be `stamp_ns`
    /// (`None`: whatever it is); with `clear`, the points followed so far are forgotten first. Returns the new
    /// points' ids. All or none: a refused request changes nothing (but for a `clear` with no points, which is
    /// a request to stop).
    pub fn request<F>(
        &mut self,
        stamp_ns: Option<i64>,
        points: &[f32],
        clear: bool,
        dense: F,
    ) -> Result<Vec<u32>, TrackRequestError>
    where
        F: FnOnce(&RgbImage) -> Result<DenseDescriptors, String>,
    {
        let latest_ns = self.latest_ns.ok_or(TrackRequestError::NoFrame)?;
        if let Some(asked_ns) = stamp_ns.filter(|s| *s != latest_ns) {
            return Err(TrackRequestError::NotLatest {
                asked_ns,
                latest_ns,
            });
        }
        if !points.len().is_multiple_of(2) {
            return Err(TrackRequestError::OddLength(points.len()));
        }
        let pairs: Vec<[f32; 2]> = points.chunks_exact(2).map(|p| [p[0], p[1]]).collect();
        let total = pairs.len() + if clear { 0 } else { self.tracker.len() };
        if total > self.max_points {
            return Err(TrackRequestError::TooMany {
                total,
                max: self.max_points,
            });
        }
        if pairs.is_empty() {
            if clear {
                self.forget_points();
            }
            return Ok(Vec::new());
        }
        if self.tracked_ns != Some(latest_ns) || self.tracker.is_empty() {
            // the tracker has not seen the newest frame (no points were followed on it): make it its latest
            let image = self
                .latest_image
                .as_ref()
                .ok_or(TrackRequestError::NoFrame)?;
            let frame = dense(image)
                .and_then(|d| track_frame(image, d, self.levels))
                .map_err(TrackRequestError::Dense)?;
            // the points followed so far are on an older frame: they cannot be kept with this one
            self.forget_points();
            self.tracker.restart_on(frame);
            self.tracked_ns = Some(latest_ns);
        } else if clear {
            self.forget_points();
        }
        let started = self
            .tracker
            .start_on_latest(&pairs)
            .map_err(|e| TrackRequestError::Point(e.to_string()))?;
        self.latest_image = None;
        Ok(started
            .into_iter()
            .map(|i| self.first_id.wrapping_add(i as u32))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    /// A textured image shifted by `dx` pixels.
    fn image(dx: f32) -> RgbImage {
        RgbImage::from_fn(96, 64, |x, y| {
            let (u, v) = (x as f32 - dx, y as f32);
            let g = 128.0
                + 60.0 * (0.31 * u).sin() * (0.23 * v).cos()
                + 40.0 * (0.07 * u + 0.11 * v).sin();
            let g = g.clamp(0.0, 255.0) as u8;
            image::Rgb([g, g, g])
        })
    }

    /// A stand-in for the network: each 8×8 cell's 64 pixels, zero-mean and normalised.
    fn dense(img: &RgbImage) -> Result<DenseDescriptors, String> {
        let g = grayscale(img);
        let (cw, ch) = (g.width() as usize / 8, g.height() as usize / 8);
        let mut m = Array3::<f32>::zeros((64, ch, cw));
        for cy in 0..ch {
            for cx in 0..cw {
                let v: Vec<f32> = (0..64)
                    .map(|k| {
                        g.get_pixel((8 * cx + k % 8) as u32, (8 * cy + k / 8) as u32)
                            .0[0] as f32
                    })
                    .collect();
                let mean = v.iter().sum::<f32>() / 64.0;
                for (k, e) in v.iter().enumerate() {
                    m[[k, cy, cx]] = e - mean;
                }
            }
        }
        Ok(DenseDescriptors::from_chw(
            m.view(),
            [g.width(), g.height()],
            [0.125, 0.125],
            [-3.5 / 8.0, -3.5 / 8.0],
        ))
    }

    fn never(_: &RgbImage) -> Result<DenseDescriptors, String> {
        panic!("the network must not run while no point is followed")
    }

    #[test]
    fn idle_frames_cost_nothing_and_a_request_starts_on_the_newest() {
        let mut t = PointTracking::new(TrackOptions::default(), 4).unwrap();
        assert_eq!(
            t.request(None, &[10.0, 10.0], false, dense),
            Err(TrackRequestError::NoFrame)
        );
        for k in 0..3 {
            assert_eq!(t.on_frame(k, &image(k as f32), never).unwrap(), None);
        }
        let e = t.request(Some(1), &[40.0, 30.0], false, dense).unwrap_err();
        assert_eq!(
            e,
            TrackRequestError::NotLatest {
                asked_ns: 1,
                latest_ns: 2
            }
        );
        assert_eq!(
            t.request(Some(2), &[40.0, 30.0, 50.0, 20.0], false, dense)
                .unwrap(),
            vec![0, 1]
        );
        // the next frame moved 1.5 px: both points follow
        let out = t.on_frame(3, &image(3.5), dense).unwrap().unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].0, out[1].0), (0, 1));
        assert!((out[0].1.position[0] - 41.5).abs() < 0.5, "{:?}", out[0].1);
        // more points on the newest frame keep the old ones
        assert_eq!(
            t.request(None, &[60.0, 40.0], false, dense).unwrap(),
            vec![2]
        );
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn requests_are_checked_and_ids_never_reused() {
        let mut t = PointTracking::new(TrackOptions::default(), 2).unwrap();
        t.on_frame(0, &image(0.0), never).unwrap();
        assert_eq!(
            t.request(None, &[1.0, 2.0, 3.0], false, dense),
            Err(TrackRequestError::OddLength(3))
        );
        assert!(matches!(
            t.request(None, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], false, dense),
            Err(TrackRequestError::TooMany { total: 3, max: 2 })
        ));
        let e = t
            .request(None, &[10.0, 10.0, 500.0, 10.0], false, dense)
            .unwrap_err();
        assert!(
            matches!(e, TrackRequestError::Point(ref m) if m.contains("outside")),
            "{e}"
        );
        assert!(t.is_empty());
        assert_eq!(
            t.request(None, &[10.0, 10.0, 20.0, 20.0], false, dense)
                .unwrap(),
            vec![0, 1]
        );
        // full: a third is refused, unless the old ones are cleared first
        assert!(t.request(None, &[30.0, 30.0], false, dense).is_err());
        assert_eq!(
            t.request(None, &[30.0, 30.0], true, dense).unwrap(),
            vec![2]
        );
        // clear alone stops tracking; the network stops running
        assert_eq!(
            t.request(None, &[], true, dense).unwrap(),
            Vec::<u32>::new()
        );
        assert!(t.is_empty());
        assert_eq!(t.on_frame(1, &image(0.0), never).unwrap(), None);
        assert_eq!(
            t.request(None, &[30.0, 30.0], false, dense).unwrap(),
            vec![3]
        );
    }

    #[test]
    fn a_frame_of_another_size_drops_the_points_and_the_node_goes_on() {
        let mut t = PointTracking::new(TrackOptions::default(), 8).unwrap();
        t.on_frame(0, &image(0.0), never).unwrap();
        t.request(None, &[40.0, 30.0], false, dense).unwrap();
        let small = image::imageops::crop_imm(&image(0.0), 0, 0, 48, 32).to_image();
        let e = t.on_frame(1, &small, dense).unwrap_err();
        assert!(e.contains("dropped"), "{e}");
        assert!(t.is_empty());
        // a request on that newest frame starts afresh, with a new id
        assert_eq!(
            t.request(Some(1), &[20.0, 10.0], false, dense).unwrap(),
            vec![1]
        );
        // a failing network is an error, not a panic; nothing is started
        let mut u = PointTracking::new(TrackOptions::default(), 8).unwrap();
        u.on_frame(0, &image(0.0), never).unwrap();
        let e = u
            .request(None, &[40.0, 30.0], false, |_| Err("engine gone".into()))
            .unwrap_err();
        assert_eq!(e, TrackRequestError::Dense("engine gone".into()));
        assert!(u.is_empty());
    }
}
