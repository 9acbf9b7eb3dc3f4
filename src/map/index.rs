//! Retrieval: the map's keyframes nearest to a query's place vector (cosine of unit vectors).
//!
//! Below `hnsw_min_keyframes` a linear scan answers exactly (at a few thousand keyframes it costs well
//! under a millisecond and needs no build); above it an HNSW graph (`hnsw_rs`, Malkov & Yashunin 2018;
//! cargo feature `hnsw`, on by default) answers approximately in logarithmic time. Without the feature
//! the scan answers at every size. `matcha bench place-index` prints where the two cross, the
//! recall of the graph against the scan, build time, memory and query time at 10^5 keyframes. Not here: the
//! place vectors themselves ([`super::place`]), storage ([`super::store`]).

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

enum Backend {
    /// Row-major `n × dim`.
    Scan(Vec<f32>),
    #[cfg(feature = "hnsw")]
    Graph(Box<Hnsw<'static, f32, UnitCosine>>),
}

/// The place vectors of a map's keyframes, searchable by cosine.
pub struct PlaceIndex {
    dim: usize,
    ids: Vec<u64>,
    backend: Backend,
    #[cfg_attr(not(feature = "hnsw"), allow(dead_code))]
    options: IndexOptions,
}

impl PlaceIndex {
    /// An index of `entries` (keyframe id, unit place vector of length `dim`; others are skipped).
    pub fn build(entries: Vec<(u64, Vec<f32>)>, dim: usize, options: IndexOptions) -> Self {
        let entries: Vec<(u64, Vec<f32>)> = entries
            .into_iter()
            .filter(|(_, v)| v.len() == dim && v.iter().all(|x| x.is_finite()))
            .collect();
        let ids = entries.iter().map(|e| e.0).collect::<Vec<_>>();
        #[cfg(feature = "hnsw")]
        let backend = if entries.len() >= options.hnsw_min_keyframes {
            let g = Self::new_graph(entries.len(), &options);
            let data: Vec<(&[f32], usize)> = entries
                .iter()
                .enumerate()
                .map(|(i, (_, v))| (v.as_slice(), i))
                .collect();
            g.parallel_insert_slice(&data);
            Backend::Graph(Box::new(g))
        } else {
            Backend::Scan(entries.into_iter().flat_map(|(_, v)| v).collect())
        };
        #[cfg(not(feature = "hnsw"))]
        let backend = Backend::Scan(entries.into_iter().flat_map(|(_, v)| v).collect());
        Self {
            dim,
            ids,
            backend,
            options,
        }
    }

    #[cfg(feature = "hnsw")]
    fn new_graph(capacity: usize, o: &IndexOptions) -> Hnsw<'static, f32, UnitCosine> {
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

    /// Adds one keyframe (a map being built); the scan becomes a graph when it reaches the threshold.
    pub fn add(&mut self, id: u64, place: &[f32]) {
        if place.len() != self.dim || !place.iter().all(|x| x.is_finite()) {
            return;
        }
        self.ids.push(id);
        match &mut self.backend {
            #[cfg(feature = "hnsw")]
            Backend::Graph(g) => g.insert_slice((place, self.ids.len() - 1)),
            Backend::Scan(v) => {
                v.extend_from_slice(place);
                #[cfg(feature = "hnsw")]
                if self.ids.len() >= self.options.hnsw_min_keyframes {
                    let g = Self::new_graph(self.ids.len(), &self.options);
                    let data: Vec<(&[f32], usize)> = v.chunks_exact(self.dim).zip(0..).collect();
                    g.parallel_insert_slice(&data);
                    self.backend = Backend::Graph(Box::new(g));
                }
            }
        }
    }

    /// An index answering through a graph built elsewhere (`super::saved_index`), whose data ids are the
    /// positions in `ids`.
    #[cfg(feature = "hnsw")]
    pub(super) fn from_graph(
        ids: Vec<u64>,
        dim: usize,
        mut graph: Hnsw<'static, f32, UnitCosine>,
        options: IndexOptions,
    ) -> Self {
        graph.set_searching_mode(true);
        Self {
            dim,
            ids,
            backend: Backend::Graph(Box::new(graph)),
            options,
        }
    }

    /// The graph, when the index has one.
    #[cfg(feature = "hnsw")]
    pub(super) fn graph(&self) -> Option<&Hnsw<'static, f32, UnitCosine>> {
        match &self.backend {
            Backend::Graph(g) => Some(g),
            Backend::Scan(_) => None,
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

    /// True when answering through the HNSW graph.
    pub fn is_graph(&self) -> bool {
        !matches!(self.backend, Backend::Scan(_))
    }

    /// The `k` keyframes most similar to `query` (id, cosine), best first.
    pub fn search(&self, query: &[f32], k: usize) -> Vec<(u64, f32)> {
        if query.len() != self.dim || k == 0 || self.ids.is_empty() {
            return Vec::new();
        }
        match &self.backend {
            Backend::Scan(v) => scan(v, self.dim, query, k)
                .into_iter()
                .map(|(i, s)| (self.ids[i], s))
                .collect(),
            #[cfg(feature = "hnsw")]
            Backend::Graph(g) => g
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
