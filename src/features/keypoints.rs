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

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

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
