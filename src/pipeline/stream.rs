//! The camera stream in two overlapping stages: extraction of frame `k + 1` on a worker thread while the
//! calling thread matches frame `k` to frame `k − 1` ([`Pipeline::process_stream`]).

use std::time::Instant;

use super::pair::match_refine_pose;
use super::resize::extract_with;
use super::{PairResult, Pipeline, PipelineError};
use crate::features::Features;
use crate::geometry::PinholeCamera;
use crate::image::RgbImage;

/// One frame's result in [`Pipeline::process_stream`].
#[derive(Debug)]
pub struct StreamStep {
    /// Index of the frame in the input sequence.
    pub index: usize,
    /// Features of this frame (or why extraction failed; the stream goes on).
    pub features: Result<Features, PipelineError>,
    /// Extraction time of this frame, milliseconds (on the extraction thread).
    pub extract_ms: f64,
    /// Match and pose against the previous successfully extracted frame (`None` for the first one).
    pub pair: Option<Result<PairResult, PipelineError>>,
}

impl Pipeline {
    /// Processes a camera stream in two overlapping stages: a worker thread extracts frame `k + 1` while the
    /// calling thread matches frame `k` to frame `k − 1` and estimates their pose. On two cores this nearly
    /// doubles the throughput of the sequential loop (the extractor and the matcher/pose solver each keep
    /// one core busy); latency per frame stays extract + match + pose. The hand-over channel holds one frame,
    /// so memory stays bounded. Each frame is extracted exactly once; `on_step` sees frames in order.
    pub fn process_stream<I, F>(&mut self, frames: I, camera: &PinholeCamera, mut on_step: F)
    where
        I: IntoIterator<Item = RgbImage> + Send,
        I::IntoIter: Send,
        F: FnMut(StreamStep),
    {
        let max_side = self.max_image_side;
        let keep_gray = self.refine.enabled;
        // the extraction thread keeps one core busy: the matcher gets the other one alone
        let matcher_threads = self.matcher.set_threads(1);
        let (tx, rx) =
            std::sync::mpsc::sync_channel::<(usize, Result<Features, PipelineError>, f64)>(1);
        let extractor = &mut self.extractor;
        let matcher = &mut self.matcher;
        let ransac = &self.ransac;
        let refine = &self.refine;
        std::thread::scope(|scope| {
            scope.spawn(move || {
                for (index, image) in frames.into_iter().enumerate() {
                    let t0 = Instant::now();
                    let f = extract_with(extractor.as_mut(), max_side, keep_gray, &image);
                    let ms = t0.elapsed().as_secs_f64() * 1e3;
                    if tx.send((index, f, ms)).is_err() {
                        break;
                    }
                }
            });
            let mut previous: Option<Features> = None;
            for (index, features, extract_ms) in rx {
                let pair = match (&previous, &features) {
                    (Some(prev), Ok(cur)) => Some(match_refine_pose(
                        matcher.as_mut(),
                        refine,
                        ransac,
                        (prev, camera),
                        (cur, camera),
                    )),
                    _ => None,
                };
                if let Ok(f) = &features {
                    previous = Some(f.clone());
                }
                on_step(StreamStep {
                    index,
                    features,
                    extract_ms,
                    pair,
                });
            }
        });
        self.matcher.set_threads(matcher_threads);
    }
}
