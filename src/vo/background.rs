//! Keyframe features computed on another thread: what lets the stereo odometry answer every frame at camera
//! rate while the network runs only for keyframes ([`super::VoOptions::keyframe_max_lag_frames`]).
//!
//! [`BackgroundExtractor`] owns one thread with its own extractor (made on that thread by the factory it is
//! given, so the extractor need not be `Send`). It takes one request at a time (a frame's left image, and
//! its right image on a stereo rig), and hands back the features, or the error, when they are ready; the caller polls
//! between frames and passes them to [`super::VisualOdometry::insert_keyframe`]. Not here: which frames
//! become keyframes (the odometry decides), image decoding.

use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;

use crate::features::Features;
use crate::image::RgbImage;

/// The features of one requested frame.
pub struct Extracted {
    /// The frame's stamp, seconds (as requested).
    pub stamp: f64,
    /// Left features and the right image's (when one was given), or why they could not be computed.
    pub features: Result<(Features, Option<Features>), String>,
    /// Seconds the extraction took.
    pub seconds: f64,
}

struct Request {
    stamp: f64,
    left: RgbImage,
    right: Option<RgbImage>,
}

/// A thread that computes the features of keyframe candidates, one at a time.
pub struct BackgroundExtractor {
    requests: Option<Sender<Request>>,
    results: Receiver<Extracted>,
    busy: bool,
    thread: Option<JoinHandle<()>>,
}

impl BackgroundExtractor {
    /// Starts the thread; `make` builds the extractor there (an error is reported for every request).
    pub fn spawn<M, E>(make: M) -> std::io::Result<Self>
    where
        M: FnOnce() -> Result<E, String> + Send + 'static,
        E: FnMut(&RgbImage) -> Result<Features, String>,
    {
        let (req_tx, req_rx) = mpsc::channel::<Request>();
        let (res_tx, res_rx) = mpsc::channel::<Extracted>();
        let thread = std::thread::Builder::new()
            .name("matcha-keyframes".into())
            .spawn(move || {
                let mut extractor = make();
                for r in req_rx {
                    let t0 = std::time::Instant::now();
                    let features = match extractor.as_mut() {
                        Ok(extract) => extract(&r.left).and_then(|l| {
                            let right = r.right.as_ref().map(&mut *extract).transpose()?;
                            Ok((l, right))
                        }),
                        Err(e) => Err(format!("keyframe extractor unavailable: {e}")),
                    };
                    let done = Extracted {
                        stamp: r.stamp,
                        features,
                        seconds: t0.elapsed().as_secs_f64(),
                    };
                    if res_tx.send(done).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Self {
            requests: Some(req_tx),
            results: res_rx,
            busy: false,
            thread: Some(thread),
        })
    }

    /// Whether a request is being worked on.
    pub fn is_busy(&self) -> bool {
        self.busy
    }

    /// Asks for the features of a frame (`right`: a stereo rig's right image); `false` (nothing queued) while
    /// the previous request is open or the thread has stopped.
    pub fn submit(&mut self, stamp: f64, left: RgbImage, right: Option<RgbImage>) -> bool {
        if self.busy {
            return false;
        }
        let sent = self
            .requests
            .as_ref()
            .is_some_and(|tx| tx.send(Request { stamp, left, right }).is_ok());
        self.busy = sent;
        sent
    }

    /// The finished request, if any (never blocks).
    pub fn poll(&mut self) -> Option<Extracted> {
        match self.results.try_recv() {
            Ok(x) => {
                self.busy = false;
                Some(x)
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.busy = false;
                None
            }
        }
    }

    /// Waits for the open request (`None` when there is none or the thread has stopped).
    pub fn wait(&mut self) -> Option<Extracted> {
        if !self.busy {
            return None;
        }
        self.busy = false;
        self.results.recv().ok()
    }
}

impl Drop for BackgroundExtractor {
    fn drop(&mut self) {
        self.requests = None; // ends the thread's loop
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn features(width: u32) -> Features {
        Features {
            keypoints: vec![[1.0, 2.0]],
            scores: vec![1.0],
            descriptors: Array2::zeros((1, 4)),
            image_size: [width, 8],
            gray: None,
        }
    }

    #[test]
    fn one_request_at_a_time_and_results_in_order() {
        let mut bg = BackgroundExtractor::spawn(|| {
            Ok(|img: &RgbImage| -> Result<Features, String> { Ok(features(img.width())) })
        })
        .unwrap();
        assert!(bg.poll().is_none());
        assert!(bg.submit(1.0, RgbImage::new(16, 8), Some(RgbImage::new(12, 8))));
        assert!(bg.is_busy());
        assert!(!bg.submit(2.0, RgbImage::new(16, 8), Some(RgbImage::new(16, 8))));
        let x = bg.wait().unwrap();
        assert_eq!(x.stamp, 1.0);
        let (l, r) = x.features.unwrap();
        assert_eq!(
            (l.image_size[0], r.map(|r| r.image_size[0])),
            (16, Some(12))
        );
        assert!(!bg.is_busy());
        // a monocular request: the left image alone
        assert!(bg.submit(3.0, RgbImage::new(16, 8), None));
        let x = loop {
            if let Some(x) = bg.poll() {
                break x;
            }
            std::thread::yield_now();
        };
        assert_eq!(x.stamp, 3.0);
        let (l, r) = x.features.unwrap();
        assert_eq!(l.image_size[0], 16);
        assert!(r.is_none());
    }

    #[test]
    fn a_failing_factory_is_reported_per_request() {
        let mut bg = BackgroundExtractor::spawn(|| {
            Err::<fn(&RgbImage) -> Result<Features, String>, _>("no engine".to_string())
        })
        .unwrap();
        assert!(bg.submit(1.0, RgbImage::new(4, 4), Some(RgbImage::new(4, 4))));
        let e = bg.wait().unwrap().features.unwrap_err();
        assert!(e.contains("no engine"), "{e}");
    }
}
