//! Keypoint selection on dense score maps: non-maximum suppression in a square window, a score threshold and
//! top-k, in the two flavours the reference extractors use.
//!
//! * [`NmsRule::EqualsMax`] (XFeat): a pixel is kept when it equals the maximum of its window, so plateaus
//!   keep every tied pixel.
//! * [`NmsRule::FirstArgmax`]: a pixel is kept when it is the *first* (row-major) position of the maximum in
//!   its window, which is what `max_pool2d(return_indices=True) == index` computes; ties keep one pixel.
//! * [`NmsRule::StrictMaxInterior`] (DISK via kornia 0.9): a pixel is kept when it is strictly greater than
//!   every other value of its full window; pixels closer than `window/2` to the border never survive.
//!
//! Windows are clipped at the border (padding never wins). Only pixels above the threshold are compared with
//! their window. Candidates are returned in row-major order, which is the order of PyTorch's `nonzero`.
//!
//! Sorting by score and truncating to top-k is [`top_k`]; the extractor decides how scores are computed.
//! [`spread_top_k`] keeps a share of the budget as per-cell quotas on a grid over the image before the
//! global top-k fills the rest: detectors that keep the strongest responses crowd them on one high-contrast
//! poster, and a pose needs points on the floor, the ceiling edges and the furniture too (a scene dominated
//! by one textured plane is otherwise a planar scene to the estimator). Per-cell quotas rather than
//! adaptive non-maximal suppression: one pass, no radius search, and the strongest points stay.

use ndarray::ArrayView2;

/// Which pixels of a window survive non-maximum suppression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NmsRule {
    /// Keep every pixel equal to its window maximum (XFeat).
    EqualsMax,
    /// Keep only the first row-major argmax of each pixel's window.
    FirstArgmax,
    /// Keep pixels strictly greater than all others in their window, never within `window/2` of the border
    /// (kornia's DISK `heatmap_to_keypoints`).
    StrictMaxInterior,
}

/// Non-maximum suppression: positions `[x, y]` (row-major order) of pixels that survive `rule` in a window of
/// `window` pixels (odd) and whose score is `> threshold`. NaN scores never survive.
///
/// Only pixels above the threshold are examined (a small fraction of a detection heatmap), each against its
/// clipped window, so the cost is proportional to the number of candidates times the window area.
pub fn nms(
    map: ArrayView2<'_, f32>,
    window: usize,
    threshold: f32,
    rule: NmsRule,
) -> Vec<[u32; 2]> {
    let (h, w) = map.dim();
    let r = window / 2;
    let contiguous = map.as_slice();
    let owned;
    let data: &[f32] = match contiguous {
        Some(d) => d,
        None => {
            owned = map.iter().copied().collect::<Vec<f32>>();
            &owned
        }
    };
    let mut out = Vec::new();
    for y in 0..h {
        let row = &data[y * w..(y + 1) * w];
        for (x, &v) in row.iter().enumerate() {
            // `v > threshold` is false for NaN as well: NaN never survives.
            if v.partial_cmp(&threshold) != Some(std::cmp::Ordering::Greater) {
                continue;
            }
            if rule == NmsRule::StrictMaxInterior && (x < r || y < r || x + r >= w || y + r >= h) {
                continue;
            }
            if survives(data, w, h, x, y, r, v, rule) {
                out.push([x as u32, y as u32]);
            }
        }
    }
    out
}

/// Does `(x, y)` with value `v` survive `rule` against its clipped window?
#[allow(clippy::too_many_arguments)]
#[inline]
fn survives(
    data: &[f32],
    w: usize,
    h: usize,
    x: usize,
    y: usize,
    r: usize,
    v: f32,
    rule: NmsRule,
) -> bool {
    let (x0, x1) = (x.saturating_sub(r), (x + r + 1).min(w));
    for yy in y.saturating_sub(r)..(y + r + 1).min(h) {
        let row = &data[yy * w + x0..yy * w + x1];
        for (i, &q) in row.iter().enumerate() {
            let xx = x0 + i;
            if q > v {
                return false;
            }
            if q == v && (xx, yy) != (x, y) {
                match rule {
                    NmsRule::EqualsMax => {}
                    // A tie earlier in row-major order owns the window.
                    NmsRule::FirstArgmax => {
                        if (yy, xx) < (y, x) {
                            return false;
                        }
                    }
                    NmsRule::StrictMaxInterior => return false,
                }
            }
        }
    }
    true
}

/// Indices of the `k` highest scores, highest first (stable for ties: earlier index first). NaN scores
/// sort last.
pub fn top_k(scores: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    let key = |i: &usize| {
        let s = scores[*i];
        if s.is_nan() {
            f32::NEG_INFINITY
        } else {
            s
        }
    };
    if k < idx.len() {
        idx.select_nth_unstable_by(k, |a, b| key(b).total_cmp(&key(a)).then(a.cmp(b)));
        idx.truncate(k);
    }
    idx.sort_by(|a, b| key(b).total_cmp(&key(a)).then(a.cmp(b)));
    idx
}

/// How [`spread_top_k`] spreads the keypoint budget.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpreadOptions {
    /// Grid cells across and down the image.
    pub cells: [u32; 2],
    /// Share of the budget given out as equal per-cell quotas (each cell's best first); the rest goes to
    /// the best remaining keypoints anywhere. 0 = plain top-k.
    pub share: f32,
}

/// Off by default: measured on the `rooms` evaluation set, the quotas did not improve the pose (they move
/// keypoints onto weak, textureless responses whose matches are worse); figures in `docs/benchmarks.md`.
impl Default for SpreadOptions {
    fn default() -> Self {
        Self {
            cells: [8, 6],
            share: 0.0,
        }
    }
}

impl SpreadOptions {
    /// No spreading: plain top-k (the reference extractors' selection).
    pub const OFF: SpreadOptions = SpreadOptions {
        cells: [1, 1],
        share: 0.0,
    };
}

/// At most `k` indices into `points`/`scores`: each cell of a `cells` grid over `[0, size)` first keeps
/// its `⌊share·k / cells⌋` highest-scoring points, then the highest-scoring remaining points fill the
/// budget; sorted by decreasing score like [`top_k`] (which this equals when `share` is 0). NaN scores
/// rank last; points outside `size` count in the nearest cell.
pub fn spread_top_k(
    points: &[[f32; 2]],
    scores: &[f32],
    k: usize,
    size: [f32; 2],
    spread: &SpreadOptions,
) -> Vec<usize> {
    let [cx, cy] = [
        spread.cells[0].max(1) as usize,
        spread.cells[1].max(1) as usize,
    ];
    let n_cells = cx * cy;
    let quota = ((spread.share.clamp(0.0, 1.0) * k as f32) as usize) / n_cells;
    if quota == 0 || k >= scores.len() {
        return top_k(scores, k);
    }
    let order = top_k(scores, scores.len());
    let cell = |p: [f32; 2]| {
        let fx = (p[0] / size[0].max(1.0) * cx as f32).floor();
        let fy = (p[1] / size[1].max(1.0) * cy as f32).floor();
        let ix = if fx.is_nan() {
            0
        } else {
            (fx.max(0.0) as usize).min(cx - 1)
        };
        let iy = if fy.is_nan() {
            0
        } else {
            (fy.max(0.0) as usize).min(cy - 1)
        };
        iy * cx + ix
    };
    let mut taken = vec![0usize; n_cells];
    let mut chosen = vec![false; scores.len()];
    let mut kept = 0;
    for &i in &order {
        let c = cell(points[i]);
        if taken[c] < quota {
            taken[c] += 1;
            chosen[i] = true;
            kept += 1;
        }
    }
    for &i in &order {
        if kept >= k {
            break;
        }
        if !chosen[i] {
            chosen[i] = true;
            kept += 1;
        }
    }
    order.into_iter().filter(|&i| chosen[i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn spread_keeps_quotas_in_weak_cells_and_the_strongest_elsewhere() {
        // 100 strong points crowded in the top-left cell, one weak point in each other cell of a 2×2 grid
        let mut pts: Vec<[f32; 2]> = (0..100)
            .map(|i| [(i % 10) as f32, (i / 10) as f32])
            .collect();
        let mut scores: Vec<f32> = (0..100).map(|i| 10.0 + i as f32).collect();
        for p in [[150.0, 10.0], [10.0, 150.0], [150.0, 150.0]] {
            pts.push(p);
            scores.push(1.0);
        }
        let spread = SpreadOptions {
            cells: [2, 2],
            share: 0.5,
        };
        assert_eq!(
            SpreadOptions::default().share,
            0.0,
            "off by default (measured)"
        );
        let kept = spread_top_k(&pts, &scores, 20, [200.0, 200.0], &spread);
        assert_eq!(kept.len(), 20);
        // every weak cell got its point (quota ⌊0.5·20/4⌋ = 2 ≥ 1), and the rest are the strongest
        for w in 100..103 {
            assert!(kept.contains(&w), "{kept:?}");
        }
        assert!(
            kept[..17].iter().all(|&i| (83..100).contains(&i)),
            "{kept:?}"
        );
        // decreasing score
        assert!(kept.windows(2).all(|w| scores[w[0]] >= scores[w[1]]));
        // share 0 is top-k
        assert_eq!(
            spread_top_k(&pts, &scores, 20, [200.0, 200.0], &SpreadOptions::OFF),
            top_k(&scores, 20)
        );
        // a budget above the candidates keeps everything
        assert_eq!(
            spread_top_k(&pts, &scores, 500, [200.0, 200.0], &spread).len(),
            103
        );
    }

    fn brute(map: &Array2<f32>, window: usize, thr: f32, rule: NmsRule) -> Vec<[u32; 2]> {
        let (h, w) = map.dim();
        let r = window as i64 / 2;
        let mut out = vec![];
        for y in 0..h as i64 {
            for x in 0..w as i64 {
                let v = map[[y as usize, x as usize]];
                // PyTorch max_pool2d argmax: first maximum in row-major window order.
                let mut best = f32::NEG_INFINITY;
                let mut arg = (0, 0);
                for yy in (y - r).max(0)..(y + r + 1).min(h as i64) {
                    for xx in (x - r).max(0)..(x + r + 1).min(w as i64) {
                        let q = map[[yy as usize, xx as usize]];
                        if q > best {
                            best = q;
                            arg = (xx, yy);
                        }
                    }
                }
                let r_ = r as usize;
                let interior = x as usize >= r_
                    && y as usize >= r_
                    && (x as usize) + r_ < w
                    && (y as usize) + r_ < h;
                let mut ties = 0;
                for yy in (y - r).max(0)..(y + r + 1).min(h as i64) {
                    for xx in (x - r).max(0)..(x + r + 1).min(w as i64) {
                        ties += (map[[yy as usize, xx as usize]] == v) as usize;
                    }
                }
                let keep = match rule {
                    NmsRule::EqualsMax => v == best,
                    NmsRule::FirstArgmax => arg == (x, y),
                    NmsRule::StrictMaxInterior => v == best && ties == 1 && interior,
                };
                if keep && v > thr {
                    out.push([x as u32, y as u32]);
                }
            }
        }
        out
    }

    #[test]
    fn matches_brute_force_on_random_maps_with_ties() {
        let mut state = 12345u64;
        for _ in 0..20 {
            let map = Array2::from_shape_fn((17, 23), |_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 33) % 7) as f32 / 7.0 // few levels → many ties
            });
            for rule in [
                NmsRule::EqualsMax,
                NmsRule::FirstArgmax,
                NmsRule::StrictMaxInterior,
            ] {
                for window in [3, 5] {
                    assert_eq!(
                        nms(map.view(), window, 0.1, rule),
                        brute(&map, window, 0.1, rule)
                    );
                }
            }
        }
    }

    #[test]
    fn nan_never_survives() {
        let mut map = Array2::<f32>::zeros((5, 5));
        map[[2, 2]] = f32::NAN;
        map[[0, 0]] = 1.0;
        assert_eq!(nms(map.view(), 3, 0.0, NmsRule::EqualsMax), vec![[0, 0]]);
    }

    #[test]
    fn top_k_orders_and_truncates() {
        let s = [0.1, 0.9, f32::NAN, 0.5, 0.9];
        assert_eq!(top_k(&s, 3), vec![1, 4, 3]);
        assert_eq!(top_k(&s, 10), vec![1, 4, 3, 0, 2]);
        assert!(top_k(&[], 3).is_empty());
    }
}
