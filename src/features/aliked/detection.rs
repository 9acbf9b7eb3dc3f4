//! ALIKED's keypoint detection on its score map (the reference's `DKD` at inference): SuperPoint-style
//! max-pool suppression, a border of `radius` pixels removed, the best candidates kept, and each kept
//! maximum moved to the soft-argmax of its `(2r+1)²` window (temperature 0.1) — the sub-pixel position the
//! descriptor head and the matcher were trained on. The score of a keypoint is the score map sampled
//! bilinearly at that position.
//!
//! Dense suppression (whole map, separable max filters) rather than the candidate-only window test of
//! [`crate::features::keypoints::nms`]: the reference's rule suppresses in two extra rounds around the maxima
//! already found, which only a dense pass reproduces exactly.
//!
//! Not here: the network, the descriptor head, the mapping back to photo pixels (see the parent module).

use ndarray::{Array2, ArrayView2, Zip};

use crate::features::keypoints::{spread_top_k, SpreadOptions};

/// Soft-argmax temperature of the reference detector (tuned by ALIKED's authors; not a setting).
const TEMPERATURE: f32 = 0.1;

/// One detected keypoint at the score map's resolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Sub-pixel position `[x, y]` in score-map pixels (pixel centres at integers).
    pub xy: [f32; 2],
    /// The score map sampled bilinearly at `xy`.
    pub score: f32,
}

/// What the detector keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectionOptions {
    /// Suppression and soft-argmax radius (ALIKED: 2, a 5 × 5 window).
    pub radius: usize,
    /// At most this many keypoints.
    pub max_keypoints: usize,
    /// Keep only maxima above this score; `None` keeps the best `max_keypoints` maxima whatever their score
    /// (the reference's top-k mode).
    pub threshold: Option<f32>,
    /// How the budget is spread over the map ([`SpreadOptions::OFF`]: the reference's top-k).
    pub spread: SpreadOptions,
}

/// Maximum of each pixel's `(2r+1)²` window, the window clipped at the border (PyTorch's `max_pool2d`
/// with stride 1 and `-inf` padding). Separable: a row pass, then a column pass.
fn max_filter(a: ArrayView2<'_, f32>, r: usize) -> Array2<f32> {
    let (h, w) = a.dim();
    let mut rows = Array2::<f32>::zeros((h, w));
    for y in 0..h {
        for x in 0..w {
            let (x0, x1) = (x.saturating_sub(r), (x + r).min(w - 1));
            rows[[y, x]] = (x0..=x1)
                .map(|i| a[[y, i]])
                .fold(f32::NEG_INFINITY, f32::max);
        }
    }
    let mut out = Array2::<f32>::zeros((h, w));
    for y in 0..h {
        let (y0, y1) = (y.saturating_sub(r), (y + r).min(h - 1));
        for x in 0..w {
            out[[y, x]] = (y0..=y1)
                .map(|j| rows[[j, x]])
                .fold(f32::NEG_INFINITY, f32::max);
        }
    }
    out
}

/// SuperPoint's `simple_nms` as ALIKED uses it: the window maxima, then twice more the maxima of what is
/// left once everything within `radius` of a maximum is zeroed. Returns the scores of the survivors and
/// zero elsewhere.
pub fn max_pool_nms(scores: ArrayView2<'_, f32>, radius: usize) -> Array2<f32> {
    if scores.is_empty() {
        return Array2::zeros(scores.dim());
    }
    let pooled = max_filter(scores, radius);
    let mut is_max = Zip::from(&scores).and(&pooled).map_collect(|&s, &p| s == p);
    for _ in 0..2 {
        let near_max = max_filter(is_max.mapv(|m| m as u8 as f32).view(), radius);
        let left = Zip::from(&scores)
            .and(&near_max)
            .map_collect(|&s, &n| if n > 0.0 { 0.0 } else { s });
        let pooled = max_filter(left.view(), radius);
        Zip::from(&mut is_max)
            .and(&left)
            .and(&pooled)
            .and(&near_max)
            .for_each(|m, &s, &p, &n| *m |= n <= 0.0 && s == p);
    }
    Zip::from(&scores)
        .and(&is_max)
        .map_collect(|&s, &m| if m { s } else { 0.0 })
}

/// Bilinear sample of `map` at `[x, y]` (zero outside), PyTorch's `grid_sample(align_corners=True)` at
/// pixel coordinates.
fn bilinear(map: ArrayView2<'_, f32>, [x, y]: [f32; 2]) -> f32 {
    let (h, w) = map.dim();
    let (x0, y0) = (x.floor(), y.floor());
    let (tx, ty) = (x - x0, y - y0);
    let tap = |xi: f32, yi: f32| {
        if xi >= 0.0 && yi >= 0.0 && (xi as usize) < w && (yi as usize) < h {
            map[[yi as usize, xi as usize]]
        } else {
            0.0
        }
    };
    (1.0 - tx) * (1.0 - ty) * tap(x0, y0)
        + tx * (1.0 - ty) * tap(x0 + 1.0, y0)
        + (1.0 - tx) * ty * tap(x0, y0 + 1.0)
        + tx * ty * tap(x0 + 1.0, y0 + 1.0)
}

/// Soft-argmax offset `[dx, dy]` of the window of radius `r` around `(x, y)`: the window's positions
/// weighted by `exp((s − max)/T)`. Taps outside the map count as zero scores (the reference's zero-padded
/// unfold); the detector never asks for a window that leaves the map.
fn soft_argmax(scores: ArrayView2<'_, f32>, x: usize, y: usize, r: usize) -> [f32; 2] {
    let (h, w) = scores.dim();
    let ri = r as i64;
    let at = |dx: i64, dy: i64| {
        let (xx, yy) = (x as i64 + dx, y as i64 + dy);
        if xx >= 0 && yy >= 0 && (xx as usize) < w && (yy as usize) < h {
            scores[[yy as usize, xx as usize]]
        } else {
            0.0
        }
    };
    let mut max_v = f32::NEG_INFINITY;
    for dy in -ri..=ri {
        for dx in -ri..=ri {
            max_v = max_v.max(at(dx, dy));
        }
    }
    let (mut sum, mut sx, mut sy) = (0f32, 0f32, 0f32);
    for dy in -ri..=ri {
        for dx in -ri..=ri {
            let e = ((at(dx, dy) - max_v) / TEMPERATURE).exp();
            sum += e;
            sx += e * dx as f32;
            sy += e * dy as f32;
        }
    }
    if sum > 0.0 && sum.is_finite() {
        [sx / sum, sy / sum]
    } else {
        [0.0, 0.0]
    }
}

/// Keypoints of a score map (`h × w`, values in `[0, 1]`), best first.
pub fn detect(scores: ArrayView2<'_, f32>, options: &DetectionOptions) -> Vec<Detection> {
    let (h, w) = scores.dim();
    let r = options.radius;
    if h <= 2 * r || w <= 2 * r || options.max_keypoints == 0 {
        return Vec::new();
    }
    let suppressed = max_pool_nms(scores, r);
    let floor = options.threshold.unwrap_or(0.0);
    let mut positions = Vec::new();
    let mut values = Vec::new();
    for y in r..h - r {
        for x in r..w - r {
            let v = suppressed[[y, x]];
            if v > floor {
                positions.push([x as f32, y as f32]);
                values.push(v);
            }
        }
    }
    let keep = spread_top_k(
        &positions,
        &values,
        options.max_keypoints,
        [w as f32, h as f32],
        &options.spread,
    );
    keep.into_iter()
        .map(|i| {
            let [x, y] = positions[i];
            let [dx, dy] = soft_argmax(scores, x as usize, y as usize, r);
            let xy = [x + dx, y + dy];
            Detection {
                xy,
                score: bilinear(scores, xy),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(max_keypoints: usize) -> DetectionOptions {
        DetectionOptions {
            radius: 2,
            max_keypoints,
            threshold: None,
            spread: SpreadOptions::OFF,
        }
    }

    #[test]
    fn max_filter_clips_at_the_border() {
        let a = Array2::from_shape_fn((3, 4), |(y, x)| (y * 4 + x) as f32);
        let m = max_filter(a.view(), 1);
        assert_eq!(m[[0, 0]], 5.0);
        assert_eq!(m[[2, 3]], 11.0);
        assert_eq!(m[[1, 1]], 10.0);
    }

    #[test]
    fn suppression_finds_maxima_hidden_behind_a_suppressed_neighbour() {
        // One row: 0.9 at x = 2, 0.8 at x = 4, 0.7 at x = 6 (radius 2). Round one keeps only 0.9 (0.8 and 0.7
        // each see a higher value within 2 px). Once everything within 2 px of 0.9 is zeroed, 0.7 is the
        // maximum of what is left around it and survives; 0.8 stays suppressed.
        let mut s = Array2::<f32>::zeros((5, 12));
        s[[2, 2]] = 0.9;
        s[[2, 4]] = 0.8;
        s[[2, 6]] = 0.7;
        let n = max_pool_nms(s.view(), 2);
        assert_eq!(n[[2, 2]], 0.9);
        assert_eq!(n[[2, 4]], 0.0);
        assert_eq!(n[[2, 6]], 0.7);
        assert_eq!(n.iter().filter(|&&v| v > 0.0).count(), 2);
    }

    #[test]
    fn a_symmetric_peak_stays_at_its_pixel_and_a_skewed_one_moves_toward_its_heavier_side() {
        let mut s = Array2::<f32>::zeros((11, 11));
        s[[5, 5]] = 0.9;
        for (dx, dy) in [(1, 0), (-1, 0), (0, 1), (0, -1)] {
            s[[(5 + dy) as usize, (5 + dx) as usize]] = 0.6;
        }
        let d = detect(s.view(), &options(10));
        assert_eq!(d.len(), 1);
        assert!((d[0].xy[0] - 5.0).abs() < 1e-5 && (d[0].xy[1] - 5.0).abs() < 1e-5);
        assert!((d[0].score - 0.9).abs() < 1e-6);
        s[[5, 6]] = 0.85;
        let d = detect(s.view(), &options(10));
        assert!(d[0].xy[0] > 5.2 && d[0].xy[0] < 5.5, "{:?}", d[0]);
        assert!((d[0].xy[1] - 5.0).abs() < 1e-5);
        assert!(d[0].score < 0.9 && d[0].score > 0.85);
    }

    #[test]
    fn keeps_the_best_within_the_budget_and_never_the_border() {
        let mut s = Array2::<f32>::zeros((20, 20));
        s[[1, 10]] = 0.99; // inside the 2-px border: never a keypoint
        s[[5, 5]] = 0.3;
        s[[10, 12]] = 0.7;
        s[[15, 5]] = 0.5;
        let d = detect(s.view(), &options(2));
        let px: Vec<[f32; 2]> = d.iter().map(|k| k.xy).collect();
        assert_eq!(px, vec![[12.0, 10.0], [5.0, 15.0]]);
        let mut o = options(10);
        o.threshold = Some(0.4);
        assert_eq!(detect(s.view(), &o).len(), 2);
        assert!(detect(Array2::<f32>::zeros((4, 40)).view(), &options(10)).is_empty());
    }
}
