//! Mutual nearest neighbour matching on cosine similarity, the matcher of the MATCHA paper's sparse
//! evaluation and our default.
//!
//! Descriptors are L2-normalised, so cosine similarity is a dot product and the full similarity matrix is
//! one GEMM (`A·Bᵀ`, via `ndarray`'s `matrixmultiply` backend), processed in row blocks so memory stays
//! bounded (`block × M` floats) for any number of keypoints. One pass over each block keeps, per row, the
//! best and second-best column and, per column, the best row; a pair is kept when each is the other's best.
//! Optional filters: a minimum similarity and Lowe's ratio test on descriptor distances
//! (`d = √(2 − 2s)` for unit vectors), both off by default as in the paper.

use ndarray::{s, Array2};

use super::{Match, MatchError, Matcher, Matches};
use crate::features::Features;

/// Options of [`MutualNearestNeighbor`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MnnOptions {
    /// Minimum cosine similarity of a match (−1 disables).
    pub min_similarity: f32,
    /// Lowe ratio on distances, best/second-best (1 disables).
    pub ratio: f32,
}

impl Default for MnnOptions {
    fn default() -> Self {
        Self {
            min_similarity: -1.0,
            ratio: 1.0,
        }
    }
}

/// The MNN matcher.
#[derive(Debug, Clone)]
pub struct MutualNearestNeighbor {
    /// Options.
    pub options: MnnOptions,
    threads: usize,
    /// Worker threads when `threads > 1` (kept: creating threads per call made the node's RSS step up as
    /// each new thread got a fresh malloc arena).
    pool: Option<std::sync::Arc<rayon::ThreadPool>>,
}

impl Default for MutualNearestNeighbor {
    fn default() -> Self {
        Self::new(MnnOptions::default(), 1)
    }
}

impl MutualNearestNeighbor {
    /// A matcher using `threads` CPU threads per call (the similarity rows are split among them).
    pub fn new(options: MnnOptions, threads: usize) -> Self {
        let mut m = Self {
            options,
            threads: 1,
            pool: None,
        };
        m.set_threads(threads);
        m
    }

    /// CPU threads per call.
    pub fn threads(&self) -> usize {
        self.threads
    }
}

/// Size of one block of the similarity matrix (rows × M floats), bytes: small enough to stay in L2 and to
/// come from the allocator's small-chunk pools (an 8 MB block per call made the node's RSS step up when a
/// fresh thread's malloc arena grew), large enough that each GEMM call is efficient.
const BLOCK_BYTES: usize = 1024 * 1024;

/// Rows of the similarity matrix computed per GEMM call when matching against `m` descriptors.
fn block_rows(m: usize) -> usize {
    (BLOCK_BYTES / (4 * m.max(1))).clamp(16, 1024)
}

/// Lanes of the vectorised scans (one AVX-512 register of `f32`, two AVX2 registers).
const LANES: usize = 16;

/// Best value, its first index, and the second-best value of `row` (ties: the second equals the best).
///
/// Written lane-parallel (each lane keeps its own best and second over a strided subset, branch-free), so
/// the compiler vectorises it; the lanes are merged at the end.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn best_two(row: &[f32]) -> (u32, f32, f32) {
    let mut best = [f32::NEG_INFINITY; LANES];
    let mut second = [f32::NEG_INFINITY; LANES];
    let mut index = [0u32; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for (c, chunk) in chunks.enumerate() {
        let base = (c * LANES) as u32;
        for l in 0..LANES {
            let v = chunk[l];
            let better = v > best[l];
            second[l] = second[l].max(v.min(best[l]));
            index[l] = if better { base + l as u32 } else { index[l] };
            best[l] = if better { v } else { best[l] };
        }
    }
    // merge: the best lane (smallest index among equal values), then the second best over all the rest
    let mut top = (0u32, f32::NEG_INFINITY);
    for l in 0..LANES {
        if best[l] > top.1 || (best[l] == top.1 && index[l] < top.0) {
            top = (index[l], best[l]);
        }
    }
    let mut sec = f32::NEG_INFINITY;
    for l in 0..LANES {
        sec = sec.max(second[l]);
        if index[l] != top.0 || best[l] != top.1 {
            sec = sec.max(best[l]);
        }
    }
    let base = (row.len() - tail.len()) as u32;
    for (k, &v) in tail.iter().enumerate() {
        if v > top.1 {
            sec = top.1;
            top = (base + k as u32, v);
        } else {
            sec = sec.max(v);
        }
    }
    (top.0, top.1, sec)
}

/// Column maxima over the rows seen so far: where `row` beats the column's best, row `i` becomes it (rows
/// come in increasing order, so ties keep the first). Branch-free, vectorised by the compiler.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn update_column_best(row: &[f32], i: u32, col_val: &mut [f32], col_row: &mut [u32]) {
    for ((&v, cv), cr) in row.iter().zip(col_val.iter_mut()).zip(col_row.iter_mut()) {
        let better = v > *cv;
        *cv = if better { v } else { *cv };
        *cr = if better { i } else { *cr };
    }
}

/// Per-row best/second-best and per-column best of the similarity rows `rows` of `a` against `b`.
struct PartialScan {
    /// `(best column, best, second best)` for each row of the range.
    row_best: Vec<(u32, f32, f32)>,
    /// Best similarity of each column over the range's rows, and that row (global index).
    col_val: Vec<f32>,
    col_row: Vec<u32>,
}

/// Scans rows `rows` of `A·Bᵀ` in blocks of [`block_rows`] (one single-threaded GEMM per block).
fn scan_rows(a: &Array2<f32>, b: &Array2<f32>, rows: std::ops::Range<usize>) -> PartialScan {
    let m = b.nrows();
    let bt = b.t();
    let mut out = PartialScan {
        row_best: Vec::with_capacity(rows.len()),
        col_val: vec![f32::NEG_INFINITY; m],
        col_row: vec![0u32; m],
    };
    let block = block_rows(m);
    let mut sim = Array2::<f32>::zeros((block.min(rows.len()), m));
    for start in rows.clone().step_by(block) {
        let end = (start + block).min(rows.end);
        let mut block = sim.slice_mut(s![..end - start, ..]);
        ndarray::linalg::general_mat_mul(1.0, &a.slice(s![start..end, ..]), &bt, 0.0, &mut block);
        for (r, row) in block.rows().into_iter().enumerate() {
            let row = row
                .to_slice()
                .expect("rows of a standard-layout block are contiguous");
            out.row_best.push(best_two(row));
            update_column_best(row, (start + r) as u32, &mut out.col_val, &mut out.col_row);
        }
    }
    out
}

/// Mutual nearest neighbours between row-normalised descriptor matrices `a` (`N × D`) and `b` (`M × D`),
/// on the calling thread.
pub fn mutual_nearest_neighbors(
    a: &Array2<f32>,
    b: &Array2<f32>,
    options: &MnnOptions,
) -> Vec<Match> {
    mutual_nearest_neighbors_threaded(a, b, options, None)
}

/// [`mutual_nearest_neighbors`] with the rows of `a` split over the threads of `pool` (each runs its own
/// single-threaded GEMMs; the column maxima are merged in row order, so the result is identical for any
/// thread count). The pool's threads live as long as the pool: no thread is created per call.
pub fn mutual_nearest_neighbors_threaded(
    a: &Array2<f32>,
    b: &Array2<f32>,
    options: &MnnOptions,
    pool: Option<&rayon::ThreadPool>,
) -> Vec<Match> {
    use rayon::prelude::*;
    let (n, m) = (a.nrows(), b.nrows());
    if n == 0 || m == 0 {
        return Vec::new();
    }
    // below ~256 rows per thread the hand-over costs more than it saves
    let threads = pool
        .map_or(1, rayon::ThreadPool::current_num_threads)
        .clamp(1, n.div_ceil(256));
    let chunk = n.div_ceil(threads);
    let parts: Vec<PartialScan> = match pool {
        Some(pool) if threads > 1 => pool.install(|| {
            (0..threads)
                .into_par_iter()
                .map(|t| scan_rows(a, b, t * chunk..((t + 1) * chunk).min(n)))
                .collect()
        }),
        _ => vec![scan_rows(a, b, 0..n)],
    };
    let mut parts = parts.into_iter();
    let first = parts.next().expect("at least one part");
    let (mut row_best, mut col_val, mut col_row) = (first.row_best, first.col_val, first.col_row);
    for p in parts {
        row_best.extend(p.row_best);
        // later parts hold later rows: strictly greater wins, so ties keep the first row
        for j in 0..m {
            if p.col_val[j] > col_val[j] {
                col_val[j] = p.col_val[j];
                col_row[j] = p.col_row[j];
            }
        }
    }
    let dist = |s: f32| (2.0 - 2.0 * s).max(0.0).sqrt();
    row_best
        .iter()
        .enumerate()
        .filter_map(|(i, &(j, best, second))| {
            if !best.is_finite() || col_row[j as usize] != i as u32 || best < options.min_similarity
            {
                return None;
            }
            if options.ratio < 1.0
                && second.is_finite()
                && dist(best) > options.ratio * dist(second)
            {
                return None;
            }
            Some(Match {
                a: i as u32,
                b: j,
                score: best,
            })
        })
        .collect()
}

impl Matcher for MutualNearestNeighbor {
    fn name(&self) -> &str {
        "mnn"
    }

    fn set_threads(&mut self, threads: usize) -> usize {
        let threads = threads.max(1);
        let previous = std::mem::replace(&mut self.threads, threads);
        let pool_size = self.pool.as_ref().map(|p| p.current_num_threads());
        if threads > 1 && pool_size != Some(threads) {
            self.pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("matcha-mnn-{i}"))
                .build()
                .map_err(|e| {
                    log::warn!("mnn: cannot start {threads} threads ({e}); matching on one")
                })
                .ok()
                .map(std::sync::Arc::new);
        }
        previous
    }

    fn match_features(&mut self, a: &Features, b: &Features) -> Result<Matches, MatchError> {
        super::check_same_dimension(a, b)?;
        Ok(Matches {
            matches: mutual_nearest_neighbors_threaded(
                &a.descriptors,
                &b.descriptors,
                &self.options,
                if self.threads > 1 {
                    self.pool.as_deref()
                } else {
                    None
                },
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(a: &Array2<f32>, b: &Array2<f32>) -> Vec<(u32, u32)> {
        let s = a.dot(&b.t());
        let mut out = vec![];
        for i in 0..a.nrows() {
            let j = (0..b.nrows())
                .max_by(|&x, &y| s[[i, x]].total_cmp(&s[[i, y]]))
                .unwrap();
            let ii = (0..a.nrows())
                .max_by(|&x, &y| s[[x, j]].total_cmp(&s[[y, j]]))
                .unwrap();
            if ii == i {
                out.push((i as u32, j as u32));
            }
        }
        out
    }

    fn random_unit(n: usize, d: usize, seed: u64) -> Array2<f32> {
        let mut st = seed;
        let mut x = Array2::from_shape_fn((n, d), |_| {
            st = st
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((st >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        });
        crate::features::sampling::l2_normalize_rows(&mut x);
        x
    }

    #[test]
    fn agrees_with_brute_force_across_blocks() {
        let a = random_unit(2500, 16, 1);
        let b = random_unit(1900, 16, 2);
        let got: Vec<(u32, u32)> = mutual_nearest_neighbors(&a, &b, &MnnOptions::default())
            .iter()
            .map(|m| (m.a, m.b))
            .collect();
        assert_eq!(got, brute(&a, &b));
        assert!(!got.is_empty());
        for threads in [2, 3, 7] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let split =
                mutual_nearest_neighbors_threaded(&a, &b, &MnnOptions::default(), Some(&pool));
            assert_eq!(
                split,
                mutual_nearest_neighbors(&a, &b, &MnnOptions::default())
            );
        }
        let mut matcher = MutualNearestNeighbor::new(MnnOptions::default(), 2);
        assert_eq!(matcher.threads(), 2);
        assert_eq!(matcher.set_threads(1), 2);
        assert_eq!(matcher.set_threads(2), 1);
    }

    #[test]
    fn recovers_a_permutation_and_filters() {
        let a = random_unit(300, 32, 3);
        let perm: Vec<usize> = (0..300).map(|i| (i * 7) % 300).collect();
        let b = a.select(ndarray::Axis(0), &perm);
        let m = mutual_nearest_neighbors(&a, &b, &MnnOptions::default());
        assert_eq!(m.len(), 300);
        for x in &m {
            assert_eq!(perm[x.b as usize], x.a as usize);
            assert!((x.score - 1.0).abs() < 1e-5);
        }
        let strict = MnnOptions {
            min_similarity: 1.01,
            ratio: 1.0,
        };
        assert!(mutual_nearest_neighbors(&a, &b, &strict).is_empty());
    }

    #[test]
    fn best_two_matches_a_sequential_scan() {
        let sequential = |row: &[f32]| {
            let (mut j, mut b, mut s) = (0u32, f32::NEG_INFINITY, f32::NEG_INFINITY);
            for (k, &v) in row.iter().enumerate() {
                if v > b {
                    s = b;
                    b = v;
                    j = k as u32;
                } else if v > s {
                    s = v;
                }
            }
            (j, b, s)
        };
        let mut st = 7u64;
        for len in [1usize, 2, 15, 16, 17, 33, 100, 1000] {
            for trial in 0..20 {
                // few distinct values so ties (within and across lanes) are common
                let row: Vec<f32> = (0..len)
                    .map(|_| {
                        st = st
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        ((st >> 33) % if trial % 2 == 0 { 5 } else { 1000 }) as f32
                    })
                    .collect();
                assert_eq!(best_two(&row), sequential(&row), "{row:?}");
            }
        }
    }

    #[test]
    fn empty_and_mismatched_inputs() {
        let a = random_unit(0, 8, 1);
        let b = random_unit(5, 8, 2);
        assert!(mutual_nearest_neighbors(&a, &b, &MnnOptions::default()).is_empty());
        let fa = Features::empty(8, [10, 10]);
        let fb = Features::empty(16, [10, 10]);
        let err = MutualNearestNeighbor::default().match_features(&fa, &fb);
        assert!(matches!(
            err,
            Err(MatchError::DimensionMismatch { a: 8, b: 16 })
        ));
    }
}
