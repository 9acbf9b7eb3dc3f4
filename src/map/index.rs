//! Retrieval: the map's keyframes nearest to a query's place vector (cosine of unit vectors).
//!
//! Below `hnsw_min_keyframes` a linear scan answers exactly (at a few thousand keyframes it costs well
//! under a millisecond and needs no build); above it an HNSW graph (`hnsw_rs`, Malkov & Yashunin 2018;
//! cargo feature `hnsw`, on by default) answers approximately in logarithmic time. Without the feature
//! the scan answers at every size. A graph made on another thread (loaded or built when a large map is
//! opened) takes over from the scan when it arrives. `matcha bench place-index` prints where the two cross, the
//! recall of the graph against the scan, build time, memory and query time at 10^5 keyframes. Not here: the
//! place vectors themselves ([`super::place`]), storage ([`super::store`]).

use std::sync::RwLock;
#[cfg(feature = "hnsw")]
use std::sync::{
    mpsc::{Receiver, TryRecvError},
    Mutex,
};

#[cfg(feature = "hnsw")]
use hnsw_rs::anndists::dist::Distance;
#[cfg(feature = "hnsw")]
use hnsw_rs::hnsw::Hnsw;

/// `1 − a·b` for unit vectors, clamped at 0. Not `anndists`' `DistDot`: that one asserts `a·b ≤ 1`, which
/// rounding breaks (a panic reachable from data).
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitCosine;

#[cfg(feature = "hnsw")]
impl Distance<f32> for UnitCosine {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        if dot.is_finite() {
            (1.0 - dot).max(0.0)
        } else {
            2.0
        }
    }
}

/// Options of the retrieval index (`map.index`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexOptions {
    /// From this many keyframes on, an HNSW graph instead of the exact linear scan.
    pub hnsw_min_keyframes: usize,
    /// HNSW links per node (M).
    pub hnsw_links: usize,
    /// HNSW candidate list while building (ef_construction).
    pub hnsw_ef_construction: usize,
    /// HNSW candidate list while searching (ef; at least the number of results asked for).
    pub hnsw_ef_search: usize,
}

impl Default for IndexOptions {
    fn default() -> Self {
        Self {
            hnsw_min_keyframes: 20_000,
            hnsw_links: 24,
            hnsw_ef_construction: 100,
            hnsw_ef_search: 64,
        }
    }
}

impl IndexOptions {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), String> {
        if !(2..=256).contains(&self.hnsw_links) {
            return Err("map.index.hnsw_links must be in 2..=256".into());
        }
        if self.hnsw_ef_construction == 0 || self.hnsw_ef_search == 0 {
            return Err("map.index.hnsw_ef_construction and hnsw_ef_search must be > 0".into());
        }
        Ok(())
    }
}

/// Where the graph that answers came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphSource {
    /// Built from the place vectors.
    Built,
    /// Loaded from the copy saved beside the map ([`super::saved_index`]).
    Loaded,
}

/// The HNSW graph of an index (data id = position in the index's ids).
#[cfg(feature = "hnsw")]
pub(super) type Graph = Hnsw<'static, f32, UnitCosine>;

/// What a graph thread sends: the graph and its source, or `None` when it could make none.
#[cfg(feature = "hnsw")]
pub(super) type Arrival = Option<(Box<Graph>, GraphSource)>;

enum Backend {
    /// Row-major `n × dim`.
    Scan(Vec<f32>),
    #[cfg(feature = "hnsw")]
    Graph(Box<Graph>, GraphSource),
}

/// The place vectors of a map's keyframes, searchable by cosine.
///
/// A graph may be arriving from another thread ([`super::saved_index::open`]): until it does, the exact
/// scan answers, so a large map answers its first query as soon as its vectors are read; the graph takes
/// over (and the scan's copy of the vectors is freed) at the first call after it arrived.
pub struct PlaceIndex {
    dim: usize,
    ids: Vec<u64>,
    backend: RwLock<Backend>,
    #[cfg(feature = "hnsw")]
    arriving: Mutex<Option<Receiver<Arrival>>>,
    #[cfg_attr(not(feature = "hnsw"), allow(dead_code))]
    options: IndexOptions,
}

/// `entries` without the vectors that are not of length `dim` or not finite.
pub(super) fn usable(entries: Vec<(u64, Vec<f32>)>, dim: usize) -> Vec<(u64, Vec<f32>)> {
    entries
        .into_iter()
        .filter(|(_, v)| v.len() == dim && v.iter().all(|x| x.is_finite()))
        .collect()
}

/// A graph of `entries` (already [`usable`]; data id = position).
#[cfg(feature = "hnsw")]
pub(super) fn build_graph(entries: &[(u64, Vec<f32>)], o: &IndexOptions) -> Graph {
    let g = new_graph(entries.len(), o);
    let data: Vec<(&[f32], usize)> = entries
        .iter()
        .enumerate()
        .map(|(i, (_, v))| (v.as_slice(), i))
        .collect();
    g.parallel_insert_slice(&data);
    g
}

#[cfg(feature = "hnsw")]
fn new_graph(capacity: usize, o: &IndexOptions) -> Graph {
    let mut g = Hnsw::new(
        o.hnsw_links,
        capacity.max(1024),
        16,
        o.hnsw_ef_construction,
        UnitCosine,
    );
    g.set_searching_mode(true);
    g
}

impl PlaceIndex {
    /// An index of `entries` (keyframe id, unit place vector of length `dim`; others are skipped), its
    /// graph (at `hnsw_min_keyframes` and more) built here.
    pub fn build(entries: Vec<(u64, Vec<f32>)>, dim: usize, options: IndexOptions) -> Self {
        let entries = usable(entries, dim);
        let ids = entries.iter().map(|e| e.0).collect::<Vec<_>>();
        #[cfg(feature = "hnsw")]
        let backend = if entries.len() >= options.hnsw_min_keyframes {
            Backend::Graph(
                Box::new(build_graph(&entries, &options)),
                GraphSource::Built,
            )
        } else {
            Backend::Scan(entries.into_iter().flat_map(|(_, v)| v).collect())
        };
        #[cfg(not(feature = "hnsw"))]
        let backend = Backend::Scan(entries.into_iter().flat_map(|(_, v)| v).collect());
        Self::with(dim, ids, backend, options)
    }

    /// The exact scan over `ids` and their row-major vectors `rows` (already [`usable`]) while the graph
    /// arrives through `graph` (data id = position in `ids`).
    #[cfg(feature = "hnsw")]
    pub(super) fn scan_until_graph(
        ids: Vec<u64>,
        rows: Vec<f32>,
        dim: usize,
        options: IndexOptions,
        graph: Receiver<Arrival>,
    ) -> Self {
        let mut index = Self::with(dim, ids, Backend::Scan(rows), options);
        index.arriving = Mutex::new(Some(graph));
        index
    }

    fn with(dim: usize, ids: Vec<u64>, backend: Backend, options: IndexOptions) -> Self {
        Self {
            dim,
            ids,
            backend: RwLock::new(backend),
            #[cfg(feature = "hnsw")]
            arriving: Mutex::new(None),
            options,
        }
    }

    /// Takes over an arrived graph (waiting for it with `block`). A graph thread that failed leaves the
    /// scan answering.
    #[cfg(feature = "hnsw")]
    fn adopt(&self, block: bool) {
        let mut slot = self.arriving.lock().unwrap_or_else(|e| e.into_inner());
        let Some(rx) = slot.as_ref() else {
            return;
        };
        let arrival = if block {
            rx.recv().ok()
        } else {
            match rx.try_recv() {
                Ok(a) => Some(a),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => None,
            }
        };
        *slot = None;
        match arrival.flatten() {
            Some((g, source)) if g.get_nb_point() == self.ids.len() => {
                *self.backend.write().unwrap_or_else(|e| e.into_inner()) =
                    Backend::Graph(g, source);
            }
            _ => log::warn!(
                "map index: no graph arrived for {} keyframes; the exact scan answers",
                self.ids.len()
            ),
        }
    }

    #[cfg(not(feature = "hnsw"))]
    fn adopt(&self, _block: bool) {}

    /// Waits for a graph that is arriving; returns where the graph that answers now came from (`None`:
    /// the exact scan answers).
    pub fn wait_for_graph(&self) -> Option<GraphSource> {
        self.adopt(true);
        match &*self.backend.read().unwrap_or_else(|e| e.into_inner()) {
            #[cfg(feature = "hnsw")]
            Backend::Graph(_, source) => Some(*source),
            Backend::Scan(_) => None,
        }
    }

    /// Adds one keyframe (a map being built); the scan becomes a graph when it reaches the threshold. A
    /// graph still arriving is waited for first.
    pub fn add(&mut self, id: u64, place: &[f32]) {
        if place.len() != self.dim || !place.iter().all(|x| x.is_finite()) {
            return;
        }
        self.adopt(true);
        self.ids.push(id);
        let backend = self.backend.get_mut().unwrap_or_else(|e| e.into_inner());
        match backend {
            #[cfg(feature = "hnsw")]
            Backend::Graph(g, _) => g.insert_slice((place, self.ids.len() - 1)),
            Backend::Scan(v) => {
                v.extend_from_slice(place);
                #[cfg(feature = "hnsw")]
                if self.ids.len() >= self.options.hnsw_min_keyframes {
                    let g = new_graph(self.ids.len(), &self.options);
                    let data: Vec<(&[f32], usize)> = v.chunks_exact(self.dim).zip(0..).collect();
                    g.parallel_insert_slice(&data);
                    *backend = Backend::Graph(Box::new(g), GraphSource::Built);
                }
            }
        }
    }

    /// Number of keyframes.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// True when answering through the HNSW graph (now: a graph still arriving is not waited for).
    pub fn is_graph(&self) -> bool {
        self.adopt(false);
        !matches!(
            *self.backend.read().unwrap_or_else(|e| e.into_inner()),
            Backend::Scan(_)
        )
    }

    /// The `k` keyframes most similar to `query` (id, cosine), best first.
    pub fn search(&self, query: &[f32], k: usize) -> Vec<(u64, f32)> {
        if query.len() != self.dim || k == 0 || self.ids.is_empty() {
            return Vec::new();
        }
        self.adopt(false);
        match &*self.backend.read().unwrap_or_else(|e| e.into_inner()) {
            Backend::Scan(v) => scan(v, self.dim, query, k)
                .into_iter()
                .map(|(i, s)| (self.ids[i], s))
                .collect(),
            #[cfg(feature = "hnsw")]
            Backend::Graph(g, _) => g
                .search(query, k, self.options.hnsw_ef_search.max(k))
                .into_iter()
                .filter_map(|n| self.ids.get(n.d_id).map(|&id| (id, 1.0 - n.distance)))
                .collect(),
        }
    }
}

/// The exact top `k` of a row-major `n × dim` array by dot product with `query` (row index, dot).
pub fn scan(rows: &[f32], dim: usize, query: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut best: Vec<(usize, f32)> = Vec::with_capacity(k + 1);
    for (i, row) in rows.chunks_exact(dim).enumerate() {
        let s: f32 = row.iter().zip(query).map(|(a, b)| a * b).sum();
        if !s.is_finite() || (best.len() == k && s <= best[k - 1].1) {
            continue;
        }
        let at = best.partition_point(|b| b.1 >= s);
        best.insert(at, (i, s));
        best.truncate(k);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::rng::SplitMix64;

    fn unit(rng: &mut SplitMix64, dim: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..dim).map(|_| rng.uniform() as f32 - 0.5).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        v
    }

    #[cfg(feature = "hnsw")]
    #[test]
    fn scan_and_graph_find_the_same_nearest_keyframes() {
        let mut rng = SplitMix64::new(7);
        let dim = 32;
        let entries: Vec<(u64, Vec<f32>)> =
            (0..3000).map(|i| (100 + i, unit(&mut rng, dim))).collect();
        let scan_idx = PlaceIndex::build(entries.clone(), dim, IndexOptions::default());
        assert!(!scan_idx.is_graph());
        let graph_idx = PlaceIndex::build(
            entries.clone(),
            dim,
            IndexOptions {
                hnsw_min_keyframes: 1000,
                ..Default::default()
            },
        );
        assert!(graph_idx.is_graph());
        let mut agree = 0;
        for q in 0..100 {
            // a query near keyframe q: both must rank it first
            let mut v = entries[q * 7].1.clone();
            v.iter_mut()
                .zip(unit(&mut rng, dim))
                .for_each(|(a, b)| *a += 0.05 * b);
            let s = scan_idx.search(&v, 5);
            assert_eq!(s[0].0, 100 + (q * 7) as u64);
            assert!(s.windows(2).all(|w| w[0].1 >= w[1].1));
            agree += (graph_idx.search(&v, 5)[0].0 == s[0].0) as usize;
        }
        assert!(agree >= 98, "graph agreed on {agree} of 100");
    }

    #[test]
    fn bad_vectors_are_skipped_and_queries_of_another_length_return_nothing() {
        let mut idx = PlaceIndex::build(
            vec![
                (1, vec![1.0, 0.0]),
                (2, vec![f32::NAN, 0.0]),
                (3, vec![1.0]),
            ],
            2,
            IndexOptions::default(),
        );
        assert_eq!(idx.len(), 1);
        idx.add(4, &[0.0, 1.0]);
        idx.add(5, &[0.0]);
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.search(&[0.1, 0.9], 1)[0].0, 4);
        assert!(idx.search(&[1.0, 0.0, 0.0], 3).is_empty());
        assert!(idx.search(&[1.0, 0.0], 0).is_empty());
    }

    #[cfg(feature = "hnsw")]
    #[test]
    fn the_scan_answers_until_the_graph_arrives_and_after_a_graph_thread_fails() {
        let mut rng = SplitMix64::new(9);
        let dim = 8;
        let entries: Vec<(u64, Vec<f32>)> =
            (0..300).map(|i| (10 + i, unit(&mut rng, dim))).collect();
        let ids: Vec<u64> = entries.iter().map(|e| e.0).collect();
        let rows: Vec<f32> = entries.iter().flat_map(|e| e.1.clone()).collect();
        let o = IndexOptions::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let idx = PlaceIndex::scan_until_graph(ids.clone(), rows.clone(), dim, o.clone(), rx);
        assert!(!idx.is_graph());
        assert_eq!(idx.search(&entries[42].1, 1)[0].0, 52);
        tx.send(Some((
            Box::new(build_graph(&entries, &o)),
            GraphSource::Loaded,
        )))
        .unwrap();
        // taken over at the next call
        assert!(idx.is_graph());
        assert_eq!(idx.wait_for_graph(), Some(GraphSource::Loaded));
        assert_eq!(idx.search(&entries[42].1, 1)[0].0, 52);
        // a thread that ends without a graph (or one of another size): the scan stays
        let (tx, rx) = std::sync::mpsc::channel();
        let idx = PlaceIndex::scan_until_graph(ids.clone(), rows.clone(), dim, o.clone(), rx);
        drop(tx);
        assert_eq!(idx.wait_for_graph(), None);
        assert_eq!(idx.search(&entries[7].1, 1)[0].0, 17);
        let (tx, rx) = std::sync::mpsc::channel();
        let mut idx = PlaceIndex::scan_until_graph(ids, rows, dim, o.clone(), rx);
        tx.send(Some((
            Box::new(build_graph(&entries[..100], &o)),
            GraphSource::Built,
        )))
        .unwrap();
        assert_eq!(idx.wait_for_graph(), None);
        // adding works on either
        idx.add(1000, &entries[3].1);
        assert_eq!(idx.len(), 301);
    }

    #[cfg(feature = "hnsw")]
    #[test]
    fn adding_past_the_threshold_switches_to_the_graph() {
        let mut rng = SplitMix64::new(3);
        let o = IndexOptions {
            hnsw_min_keyframes: 50,
            ..Default::default()
        };
        let mut idx = PlaceIndex::build(Vec::new(), 8, o);
        let vs: Vec<Vec<f32>> = (0..80).map(|_| unit(&mut rng, 8)).collect();
        for (i, v) in vs.iter().enumerate() {
            idx.add(i as u64, v);
        }
        assert!(idx.is_graph());
        assert_eq!(idx.search(&vs[60], 1)[0].0, 60);
        assert_eq!(idx.search(&vs[10], 1)[0].0, 10);
    }
}
