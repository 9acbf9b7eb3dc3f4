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
#[derive(Debug, Clone, Default)]
pub struct MutualNearestNeighbor {
    /// Options.
    pub options: MnnOptions,
}

/// Rows of the similarity matrix computed per GEMM call.
const BLOCK_ROWS: usize = 1024;

/// Mutual nearest neighbours between row-normalised descriptor matrices `a` (`N × D`) and `b` (`M × D`).
pub fn mutual_nearest_neighbors(
    a: &Array2<f32>,
    b: &Array2<f32>,
    options: &MnnOptions,
) -> Vec<Match> {
    let (n, m) = (a.nrows(), b.nrows());
    if n == 0 || m == 0 {
        return Vec::new();
    }
    let bt = b.t();
    let mut row_best = vec![(0u32, f32::NEG_INFINITY, f32::NEG_INFINITY); n];
    let mut col_best = vec![(0u32, f32::NEG_INFINITY); m];
    let mut sim = Array2::<f32>::zeros((BLOCK_ROWS.min(n), m));
    for start in (0..n).step_by(BLOCK_ROWS) {
        let end = (start + BLOCK_ROWS).min(n);
        let mut block = sim.slice_mut(s![..end - start, ..]);
        ndarray::linalg::general_mat_mul(1.0, &a.slice(s![start..end, ..]), &bt, 0.0, &mut block);
        for (r, row) in block.rows().into_iter().enumerate() {
            let i = start + r;
            let (mut best_j, mut best, mut second) = (0u32, f32::NEG_INFINITY, f32::NEG_INFINITY);
            for (j, &v) in row.iter().enumerate() {
                if v > best {
                    second = best;
                    best = v;
                    best_j = j as u32;
                } else if v > second {
                    second = v;
                }
                let c = &mut col_best[j];
                if v > c.1 {
                    *c = (i as u32, v);
                }
            }
            row_best[i] = (best_j, best, second);
        }
    }
    let dist = |s: f32| (2.0 - 2.0 * s).max(0.0).sqrt();
    row_best
        .iter()
        .enumerate()
        .filter_map(|(i, &(j, best, second))| {
            if !best.is_finite()
                || col_best[j as usize].0 != i as u32
                || best < options.min_similarity
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

    fn match_features(&mut self, a: &Features, b: &Features) -> Result<Matches, MatchError> {
        super::check_same_dimension(a, b)?;
        Ok(Matches {
            matches: mutual_nearest_neighbors(&a.descriptors, &b.descriptors, &self.options),
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
