//! The tracker: per point, the flow of one frame (predict, correlate, align, check, re-acquire); see the
//! module documentation of [`crate::track`] for the method and why.

use image::GrayImage;

use super::motion::MotionField;
use super::patch::{patch_std, pyramidal_lk, zncc, Crop, LkSettings};
use super::state::{PointState, TrackFrame};
use super::{Query, TrackError, TrackOptions, TrackPoint};
use crate::features::dense::Peak;
use crate::features::DenseDescriptors;
use crate::matching::refine::WarpModel;

/// The descriptor-only fallback needs at least this much contrast (standard deviation of the patch, gray
/// levels) where it places the point: in a blank or black view nothing is seen, whatever the descriptors say.
const FALLBACK_MIN_STD: f32 = 1.0;

/// Tracks query points through frames given one at a time; see [`crate::track`].
#[derive(Debug)]
pub struct Tracker {
    pub(super) options: TrackOptions,
    pub(super) points: Vec<PointState>,
    pub(super) frames_seen: usize,
    pub(super) previous: Option<TrackFrame>,
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn dist(a: [f32; 2], b: [f32; 2]) -> f32 {
    (a[0] - b[0]).hypot(a[1] - b[1])
}

fn add(a: [f32; 2], b: [f32; 2]) -> [f32; 2] {
    [a[0] + b[0], a[1] + b[1]]
}

fn sub(a: [f32; 2], b: [f32; 2]) -> [f32; 2] {
    [a[0] - b[0], a[1] - b[1]]
}

impl Tracker {
    /// A tracker with no queries yet.
    pub fn new(options: TrackOptions) -> Result<Self, TrackError> {
        options
            .check()
            .map_err(|(key, reason)| TrackError::Options { key, reason })?;
        Ok(Self {
            options,
            points: Vec::new(),
            frames_seen: 0,
            previous: None,
        })
    }

    /// The settings.
    pub fn options(&self) -> &TrackOptions {
        &self.options
    }

    /// Frames processed so far (the index the next frame gets).
    pub fn frames_seen(&self) -> usize {
        self.frames_seen
    }

    /// Number of queries.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// True when there are no queries.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Adds a query; returns its index (the order of [`Tracker::step`]'s output). Its frame must not have been
    /// processed yet and its position must be finite (whether it lies in the image is checked on its frame).
    pub fn add_query(&mut self, query: Query) -> Result<usize, TrackError> {
        let index = self.points.len();
        if query.frame < self.frames_seen {
            return Err(TrackError::BadQuery {
                index,
                reason: format!(
                    "its frame {} has already been processed ({} frames so far)",
                    query.frame, self.frames_seen
                ),
            });
        }
        if !(query.x.is_finite() && query.y.is_finite()) {
            return Err(TrackError::BadQuery {
                index,
                reason: format!("position ({}, {}) is not finite", query.x, query.y),
            });
        }
        self.points.push(PointState::new(query));
        Ok(index)
    }

    fn lk(&self, model: WarpModel, max_shift: f32, min_zncc: f32) -> LkSettings {
        LkSettings {
            patch_radius: self.options.patch_radius,
            max_shift_per_level: max_shift,
            model,
            min_zncc,
        }
    }

    fn crop_radius(&self) -> u32 {
        self.options.patch_radius + 4
    }

    /// Starts point `i` on the frame whose gray image is `base`, with its descriptor `descriptor` there.
    pub(super) fn start_point(&mut self, i: usize, base: &GrayImage, descriptor: Vec<f32>) {
        let crop_radius = self.crop_radius();
        let p = &mut self.points[i];
        let q = [p.query.x, p.query.y];
        p.started = true;
        p.reference = descriptor.clone();
        p.recent = descriptor;
        p.anchor = Crop::new(base, q, crop_radius);
        p.last_seen = p.anchor.clone();
        p.position = q;
        p.velocity = [0.0, 0.0];
        p.visible = true;
        p.confidence = 1.0;
    }

    /// Processes the next frame: starts the queries of this frame and moves every started one. Returns, per
    /// query in the order they were added, its point on this frame (`None` before its query frame). A frame of
    /// another size than the first, or a query of this frame outside the image, is refused before anything
    /// changes.
    pub fn step(&mut self, frame: TrackFrame) -> Result<Vec<Option<TrackPoint>>, TrackError> {
        let index = self.frames_seen;
        let [w, h] = frame.size();
        if let Some(prev) = &self.previous {
            if prev.size() != [w, h] {
                return Err(TrackError::BadFrame {
                    index,
                    reason: format!(
                        "{w}×{h}, but the frames before it are {}×{}",
                        prev.size()[0],
                        prev.size()[1]
                    ),
                });
            }
        }
        if frame.dense.dim() == 0 {
            return Err(TrackError::BadFrame {
                index,
                reason: "empty descriptor map".into(),
            });
        }
        let mut starting = Vec::new();
        for (i, p) in self.points.iter().enumerate() {
            if !p.started && p.query.frame == index {
                let q = [p.query.x, p.query.y];
                let inside =
                    q[0] >= -0.5 && q[1] >= -0.5 && q[0] < w as f32 - 0.5 && q[1] < h as f32 - 0.5;
                let descriptor = if inside { frame.dense.sample(q) } else { None };
                match descriptor {
                    Some(d) => starting.push((i, d)),
                    None => {
                        return Err(TrackError::BadQuery {
                            index: i,
                            reason: format!(
                                "({}, {}) is outside the {w}×{h} frame {index}",
                                q[0], q[1]
                            ),
                        })
                    }
                }
            }
        }
        for (i, d) in starting {
            self.start_point(i, frame.pyramid.base(), d);
        }
        let crop_radius = self.crop_radius();
        if let Some(prev) = self.previous.take() {
            let any_moving = self
                .points
                .iter()
                .any(|p| p.started && p.query.frame != index);
            let field = if any_moving {
                MotionField::estimate(&prev.dense, &frame.dense, self.options.search_radius_px)
            } else {
                MotionField::default()
            };
            // each point's decision reads only the frames, the field and its own state: decided in
            // parallel over `track.threads`, applied in order
            let decisions = self.decide_all(index, &field, &prev, &frame);
            for (i, decision) in decisions.into_iter().enumerate() {
                let Some(Decision { flow, seen: next }) = decision else {
                    continue;
                };
                let p = &mut self.points[i];
                match next {
                    Some(seen) => {
                        let step = sub(seen.position, p.position);
                        p.velocity = if p.visible {
                            [
                                0.7 * step[0] + 0.3 * p.velocity[0],
                                0.7 * step[1] + 0.3 * p.velocity[1],
                            ]
                        } else {
                            [0.0, 0.0]
                        };
                        p.position = seen.position;
                        p.visible = true;
                        p.confidence = seen.confidence;
                        if let Some(d) = frame.dense.sample(seen.position) {
                            p.recent = d;
                        }
                        if let Some(c) = Crop::new(frame.pyramid.base(), seen.position, crop_radius)
                        {
                            p.last_seen = Some(c);
                        }
                    }
                    None => {
                        // unseen: moved with its neighbours when they are known, else along its own
                        // (damped) velocity
                        let damping = self.options.velocity_damping;
                        p.velocity = [p.velocity[0] * damping, p.velocity[1] * damping];
                        p.position = add(p.position, flow.unwrap_or(p.velocity));
                        p.visible = false;
                        p.confidence = 0.0;
                    }
                }
            }
        }
        let out = self
            .points
            .iter()
            .map(|p| {
                p.started.then_some(TrackPoint {
                    position: p.position,
                    visible: p.visible,
                    confidence: p.confidence,
                })
            })
            .collect();
        self.previous = Some(frame);
        self.frames_seen += 1;
        Ok(out)
    }

    /// [`Tracker::decide`] for every point, over `track.threads` threads.
    fn decide_all(
        &self,
        index: usize,
        field: &MotionField,
        prev: &TrackFrame,
        cur: &TrackFrame,
    ) -> Vec<Option<Decision>> {
        let n = self.points.len();
        let threads = self.options.threads.clamp(1, 64);
        if threads == 1 || n < 8 {
            return (0..n)
                .map(|i| self.decide(i, index, field, prev, cur))
                .collect();
        }
        let chunk = n.div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..n)
                .step_by(chunk)
                .map(|start| {
                    scope.spawn(move || {
                        (start..(start + chunk).min(n))
                            .map(|i| self.decide(i, index, field, prev, cur))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| match h.join() {
                    Ok(v) => v,
                    Err(e) => std::panic::resume_unwind(e),
                })
                .collect()
        })
    }

    /// Point `i` on frame `index`: `None` when it does not move on this frame (not started, or started
    /// here); else its motion-field prediction and where it is seen (`None`: not seen).
    fn decide(
        &self,
        i: usize,
        index: usize,
        field: &MotionField,
        prev: &TrackFrame,
        cur: &TrackFrame,
    ) -> Option<Decision> {
        let p = &self.points[i];
        if !p.started || p.query.frame == index {
            return None;
        }
        let moving = p.visible && p.query.frame + 1 < index;
        let flow = field.predict(
            p.position,
            &p.recent,
            (moving || !p.visible).then_some(p.velocity),
            2.0 * self.options.search_radius_px,
        );
        log::trace!(
            "track: point {i} at {:?} (visible {}): flow {flow:?} from {} cells",
            p.position,
            p.visible,
            field.len()
        );
        let next = if p.visible {
            self.follow(p, flow, prev, cur)
        } else {
            None
        };
        Some(Decision {
            flow,
            seen: next.or_else(|| self.reacquire(p, flow, cur)),
        })
    }

    /// Best similarity of the descriptor at `p` to the point's query or last-seen descriptor.
    fn similarity(p: &PointState, dense: &DenseDescriptors, at: [f32; 2]) -> f32 {
        dense
            .sample(at)
            .map(|d| dot(&d, &p.reference).max(dot(&d, &p.recent)))
            .unwrap_or(-1.0)
    }

    /// The most similar cell to the point's query or last-seen descriptor within `radius` of `centre`.
    fn peak(
        p: &PointState,
        dense: &DenseDescriptors,
        centre: [f32; 2],
        radius: f32,
    ) -> Option<Peak> {
        [&p.reference, &p.recent]
            .into_iter()
            .filter_map(|d| dense.search(d, centre, radius))
            .max_by(|a, b| a.similarity.total_cmp(&b.similarity))
    }

    /// A visible point moved from the previous frame into this one: `Some` when it is still seen. `flow`
    /// is the motion field's prediction of its displacement.
    fn follow(
        &self,
        p: &PointState,
        flow: Option<[f32; 2]>,
        prev: &TrackFrame,
        cur: &TrackFrame,
    ) -> Option<Seen> {
        let o = &self.options;
        // predictions: the neighbours' motion, the point's own velocity
        let mut predictions = vec![add(p.position, p.velocity)];
        if let Some(f) = flow {
            predictions.insert(0, add(p.position, f));
        }
        let cell = cur.dense.pixels_per_cell();
        let near_radius = 3.0 * cell[0].max(cell[1]) as f32;
        let lk = self.lk(WarpModel::Translation, 4.0, o.min_zncc);
        // starts: each prediction through the whole pyramid, and the descriptor peak near each prediction
        // refined locally (two levels: it is within a cell or so)
        let mut starts: Vec<([f32; 2], usize)> = Vec::new();
        for &q in &predictions {
            if starts.iter().all(|(s, _)| dist(*s, q) > 1.0) {
                starts.push((q, o.pyramid_levels as usize));
            }
            if let Some(k) = Self::peak(p, &cur.dense, q, near_radius) {
                if k.similarity >= o.min_similarity
                    && starts.iter().all(|(s, _)| dist(*s, k.pixel) > 1.0)
                {
                    starts.push((k.pixel, 2));
                }
            }
        }
        // of the candidates that pass every check, the best-looking one, with a small price on the distance
        // from the nearest prediction (a repeated texture's neighbouring copy looks as good)
        let max_deviation = 2.0 * cell[0].max(cell[1]) as f32;
        let mut best: Option<(f32, Seen)> = None;
        for (start, levels) in starts {
            if let Some((seen, appearance)) = self.try_start(p, prev, cur, start, levels, &lk) {
                let d = predictions
                    .iter()
                    .map(|&q| dist(q, seen.position))
                    .fold(f32::INFINITY, f32::min);
                if d > max_deviation {
                    log::trace!(
                        "track: {:?} is {d:.1} px from every prediction",
                        seen.position
                    );
                    continue;
                }
                let score = appearance - 0.01 * d;
                if best.as_ref().is_none_or(|(b, _)| score > *b) {
                    best = Some((score, seen));
                }
            }
        }
        if let Some((_, seen)) = best {
            return Some(seen);
        }
        // Lucas–Kanade could not decide (a textureless patch, the image border, a strong deformation) or
        // refused: keep the descriptor peak when the descriptors are sure of it: close to the first
        // prediction (within 1.5 cells), similar, and its own descriptor leads back to where the point was
        // (cycle-consistent in the maps)
        let k = Self::peak(
            p,
            &cur.dense,
            predictions[0],
            1.5 * cell[0].max(cell[1]) as f32,
        )?;
        if k.similarity < o.reacquire_similarity
            || patch_std(cur.pyramid.base(), k.pixel, o.patch_radius)
                .is_none_or(|sd| sd < FALLBACK_MIN_STD)
        {
            return None;
        }
        let back_descriptor = cur.dense.sample(k.pixel)?;
        let back = prev
            .dense
            .search(&back_descriptor, p.position, o.search_radius_px)?;
        let cell = prev.dense.pixels_per_cell();
        if dist(back.pixel, p.position) > 0.75 * cell[0].max(cell[1]) as f32 {
            log::trace!(
                "track: peak {k:?} leads back to {back:?}, not {:?}",
                p.position
            );
            return None;
        }
        Some(Seen {
            position: k.pixel,
            confidence: 0.5 * k.similarity.clamp(0.0, 1.0),
        })
    }

    /// The forward alignment from `start`, kept when it passes every check: photometric correlation,
    /// descriptor similarity, and forward–backward consistency.
    fn try_start(
        &self,
        p: &PointState,
        prev: &TrackFrame,
        cur: &TrackFrame,
        start: [f32; 2],
        levels: usize,
        lk: &LkSettings,
    ) -> Option<(Seen, f32)> {
        let o = &self.options;
        let Some(q) = pyramidal_lk(&prev.pyramid, p.position, &cur.pyramid, start, levels, lk)
        else {
            log::trace!("track: lk failed from {start:?}");
            return None;
        };
        let similarity = Self::similarity(p, &cur.dense, q);
        let z = zncc(
            prev.pyramid.base(),
            p.position,
            cur.pyramid.base(),
            q,
            o.patch_radius,
        )
        .unwrap_or(-1.0);
        if similarity < o.min_similarity || z < o.min_zncc {
            log::trace!("track: from {start:?} to {q:?}: similarity {similarity:.2}, zncc {z:.2}");
            return None;
        }
        // back from the result, started as far from the old position as the forward pass was started from
        // the result (no head start)
        let back_start = sub(q, sub(start, p.position));
        let back = pyramidal_lk(&cur.pyramid, q, &prev.pyramid, back_start, levels, lk);
        if back.is_none_or(|b| dist(b, p.position) > o.max_cycle_px) {
            log::trace!(
                "track: from {start:?} to {q:?}: back to {back:?}, not {:?}",
                p.position
            );
            return None;
        }
        let seen = Seen {
            position: self.anchored(p, cur, q),
            confidence: (similarity.max(0.0) * z.max(0.0)).clamp(0.0, 1.0),
        };
        Some((seen, similarity + z))
    }

    /// `at`, pulled to where the query's own patch aligns when that correlates at least `anchor_zncc`.
    fn anchored(&self, p: &PointState, cur: &TrackFrame, at: [f32; 2]) -> [f32; 2] {
        let lk = self.lk(WarpModel::Affine, 2.0, self.options.anchor_zncc);
        p.anchor
            .as_ref()
            .and_then(|a| a.align(cur.pyramid.base(), at, &lk))
            .unwrap_or(at)
    }

    /// An occluded (or just lost) point searched for in this frame: `Some` when re-acquired.
    fn reacquire(&self, p: &PointState, flow: Option<[f32; 2]>, cur: &TrackFrame) -> Option<Seen> {
        let o = &self.options;
        let radius = if o.reacquire_radius_px > 0.0 {
            o.reacquire_radius_px
        } else {
            f32::INFINITY
        };
        let cell = cur.dense.pixels_per_cell();
        let cell = cell[0].max(cell[1]) as f32;
        let centre = add(p.position, flow.unwrap_or([0.0, 0.0]));
        // near where the point should be (its neighbours' motion carried it while unseen): the peak needs no
        // margin over other peaks, the prior has already placed it; anywhere else: a distinct peak only
        let near = Self::peak(p, &cur.dense, centre, 2.0 * cell)
            .filter(|k| k.similarity >= o.reacquire_similarity);
        let far = || {
            Self::peak(p, &cur.dense, centre, radius).filter(|k| {
                k.similarity >= o.reacquire_similarity
                    && k.similarity - k.runner_up >= o.reacquire_margin
            })
        };
        near.and_then(|k| self.confirm(p, cur, k.pixel))
            .or_else(|| far().and_then(|k| self.confirm(p, cur, k.pixel)))
    }

    /// A re-acquisition candidate confirmed photometrically: the point's last-seen or query patch aligns there
    /// and the descriptor agrees.
    fn confirm(&self, p: &PointState, cur: &TrackFrame, at: [f32; 2]) -> Option<Seen> {
        let o = &self.options;
        let lk = self.lk(WarpModel::Affine, 6.0, o.min_zncc);
        let base = cur.pyramid.base();
        for crop in [&p.last_seen, &p.anchor].into_iter().flatten() {
            let Some(q) = crop.align(base, at, &lk) else {
                continue;
            };
            let similarity = Self::similarity(p, &cur.dense, q);
            let z = crop.zncc(base, q, o.patch_radius).unwrap_or(-1.0);
            if similarity >= o.reacquire_similarity && z >= o.min_zncc {
                return Some(Seen {
                    position: self.anchored(p, cur, q),
                    confidence: (similarity * z).clamp(0.0, 1.0),
                });
            }
        }
        None
    }
}

/// A moving point's outcome on one frame: the motion field's prediction of its displacement, and where it is
/// seen (`None`: not seen).
struct Decision {
    flow: Option<[f32; 2]>,
    seen: Option<Seen>,
}

/// A point seen on a frame.
struct Seen {
    position: [f32; 2],
    confidence: f32,
}
