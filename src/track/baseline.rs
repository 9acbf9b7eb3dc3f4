//! The nearest-neighbour-on-descriptors baseline of point tracking: on every frame, a query's descriptor is
//! looked up over the whole dense map and the most similar cell (with its sub-cell parabola fit) is the
//! answer, visible when its similarity reaches a threshold. No motion model, no photometric refinement, no
//! memory beyond the query descriptor: what descriptors alone give, the reference point the tracker must
//! beat (the paper's Table 4 scores its descriptors this way).
//!
//! Not here: anything the real tracker does (`tracker.rs`).

use super::{Query, TrackError, TrackPoint};
use crate::features::DenseDescriptors;

/// See the module documentation.
#[derive(Debug)]
pub struct NearestNeighbourTracker {
    min_similarity: f32,
    queries: Vec<(Query, Option<Vec<f32>>)>,
    frames_seen: usize,
}

impl NearestNeighbourTracker {
    /// A baseline that calls a point visible at similarity `min_similarity` or more.
    pub fn new(min_similarity: f32) -> Self {
        Self {
            min_similarity,
            queries: Vec::new(),
            frames_seen: 0,
        }
    }

    /// Adds a query (its frame must be ahead).
    pub fn add_query(&mut self, query: Query) -> Result<usize, TrackError> {
        let index = self.queries.len();
        if query.frame < self.frames_seen || !(query.x.is_finite() && query.y.is_finite()) {
            return Err(TrackError::BadQuery {
                index,
                reason: "its frame has been processed, or its position is not finite".into(),
            });
        }
        self.queries.push((query, None));
        Ok(index)
    }

    /// One frame's dense map: the points of every started query (`None` before the query frame).
    pub fn step(
        &mut self,
        dense: &DenseDescriptors,
    ) -> Result<Vec<Option<TrackPoint>>, TrackError> {
        let index = self.frames_seen;
        for (i, (q, d)) in self.queries.iter().enumerate() {
            if q.frame == index && d.is_none() && dense.sample([q.x, q.y]).is_none() {
                return Err(TrackError::BadQuery {
                    index: i,
                    reason: format!("({}, {}) is outside frame {index}", q.x, q.y),
                });
            }
        }
        let mut out = Vec::with_capacity(self.queries.len());
        for (q, d) in &mut self.queries {
            if q.frame == index {
                *d = dense.sample([q.x, q.y]);
                out.push(Some(TrackPoint {
                    position: [q.x, q.y],
                    visible: true,
                    confidence: 1.0,
                }));
                continue;
            }
            let Some(desc) = d.as_ref() else {
                out.push(None);
                continue;
            };
            out.push(Some(match dense.search(desc, [0.0, 0.0], f32::INFINITY) {
                Some(peak) => TrackPoint {
                    position: peak.pixel,
                    visible: peak.similarity >= self.min_similarity,
                    confidence: peak.similarity.clamp(0.0, 1.0),
                },
                None => TrackPoint {
                    position: [q.x, q.y],
                    visible: false,
                    confidence: 0.0,
                },
            }));
        }
        self.frames_seen += 1;
        Ok(out)
    }
}
