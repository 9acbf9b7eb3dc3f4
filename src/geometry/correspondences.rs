//! The two-view estimators' input: checks of the caller's correspondences, cameras, weights and options, and their
//! normalisation into camera coordinates in priority order ([`Correspondences`]). Degenerate point sets
//! (fewer than five distinct correspondences, all points within about a threshold of one line) are
//! rejected here, before any sampling.
//!
//! Which errors are outcomes and which are misuse: a length mismatch, a non-finite coordinate, an invalid
//! camera or option is unusable input ([`PoseInputError`]); too few or degenerate correspondences are
//! outcomes of the scene ([`NoPose`]). Nothing here panics on input data.

// `!(x > y)` is deliberate: it is true for NaN, which must take the rejecting branch.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use crate::geometry::camera::PinholeCamera;
use crate::geometry::{NoPose, PoseError, PoseInputError, RansacOptions};

/// Correspondences in normalised coordinates, structure of arrays (all the same length).
#[derive(Clone, Copy)]
pub(crate) struct Soa<'a> {
    pub xa: &'a [f64],
    pub ya: &'a [f64],
    pub xb: &'a [f64],
    pub yb: &'a [f64],
    /// Per-correspondence weights of the MSAC score (empty: all 1).
    pub weight: &'a [f64],
}

impl Soa<'_> {
    pub(crate) fn len(&self) -> usize {
        self.xa.len()
    }
}

/// Correspondences in normalised coordinates, structure-of-arrays for the scoring loop, sorted by
/// decreasing priority when one was given.
pub(crate) struct Correspondences {
    pub xa: Vec<f64>,
    pub ya: Vec<f64>,
    pub xb: Vec<f64>,
    pub yb: Vec<f64>,
    /// Index into the caller's arrays.
    pub orig: Vec<usize>,
    /// Square roots of the per-correspondence weights (empty: all 1). They whiten the Sampson residuals of
    /// the non-linear refinements (LO and final); inlier sets ignore them.
    pub sqrt_w: Vec<f64>,
    /// The weights themselves (empty: all 1): they weight the MSAC score.
    pub weight: Vec<f64>,
}

impl Correspondences {
    pub fn len(&self) -> usize {
        self.xa.len()
    }
    #[inline(always)]
    pub fn get(&self, i: usize) -> [f64; 4] {
        [self.xa[i], self.ya[i], self.xb[i], self.yb[i]]
    }
    /// The arrays as the scoring kernels take them.
    pub fn soa(&self) -> Soa<'_> {
        Soa {
            xa: &self.xa,
            ya: &self.ya,
            xb: &self.xb,
            yb: &self.yb,
            weight: &self.weight,
        }
    }
    /// Copy in the order `order` (coordinates and weights; `orig` and `sqrt_w` are not needed there).
    pub fn permuted(&self, order: &[u32]) -> Correspondences {
        let pick = |v: &[f64]| -> Vec<f64> {
            if v.is_empty() {
                Vec::new()
            } else {
                order.iter().map(|&i| v[i as usize]).collect()
            }
        };
        Correspondences {
            xa: pick(&self.xa),
            ya: pick(&self.ya),
            xb: pick(&self.xb),
            yb: pick(&self.yb),
            orig: Vec::new(),
            sqrt_w: Vec::new(),
            weight: pick(&self.weight),
        }
    }
}

/// A checked problem: the normalised correspondences and the number the caller gave.
pub(crate) struct Problem {
    pub pts: Correspondences,
    /// Number of correspondences the caller gave (some may have been excluded by undistortion).
    pub n_input: usize,
}

/// Fewest correspondences any two-view estimate needs (the relative pose's minimal sample).
pub(crate) const SAMPLE: usize = 5;

/// Checks the input and normalises it (see the module doc).
pub(crate) fn prepare(
    points_a: &[[f64; 2]],
    points_b: &[[f64; 2]],
    camera_a: &PinholeCamera,
    camera_b: &PinholeCamera,
    priority: Option<&[f32]>,
    weights: Option<&[f64]>,
    options: &RansacOptions,
) -> Result<Problem, PoseError> {
    let n_in = points_a.len();
    for (len, _) in [
        (points_b.len(), "points_b"),
        (priority.map_or(n_in, <[f32]>::len), "priority"),
        (weights.map_or(n_in, <[f64]>::len), "weights"),
    ] {
        if len != n_in {
            return Err(PoseInputError::LengthMismatch { a: n_in, b: len }.into());
        }
    }
    if let Some(w) = weights {
        if let Some(i) = w.iter().position(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(PoseInputError::InvalidOptions(format!(
                "weight {i} must be finite and > 0, got {}",
                w[i]
            ))
            .into());
        }
    }
    for (name, cam) in [("a", camera_a), ("b", camera_b)] {
        cam.validate()
            .map_err(|e| PoseInputError::InvalidCamera(format!("camera {name}: {e}")))?;
    }
    validate_options(options)?;
    let thr = options.threshold_px;
    let need = SAMPLE.max(options.min_inliers);
    if n_in < need {
        return Err(NoPose::TooFewCorrespondences { have: n_in, need }.into());
    }
    if let Some(i) = (0..n_in).find(|&i| {
        !points_a[i]
            .iter()
            .chain(points_b[i].iter())
            .all(|v| v.is_finite())
    }) {
        return Err(PoseInputError::NonFinite(format!(
            "correspondence {i}: {:?} ↔ {:?}",
            points_a[i], points_b[i]
        ))
        .into());
    }
    check_spread(points_a, "a", thr)?;
    check_spread(points_b, "b", thr)?;
    let distinct = count_distinct(points_a, points_b);
    if distinct < SAMPLE {
        return Err(NoPose::Degenerate(format!(
            "only {distinct} distinct correspondences among {n_in} (need at least {SAMPLE})"
        ))
        .into());
    }

    let mut order: Vec<usize> = (0..n_in).collect();
    if let Some(p) = priority {
        let key = |i: usize| {
            let v = p[i];
            if v.is_nan() {
                f32::NEG_INFINITY
            } else {
                v
            }
        };
        order.sort_by(|&i, &j| key(j).total_cmp(&key(i)).then(i.cmp(&j)));
    }
    let with_w = if weights.is_some() { n_in } else { 0 };
    let mut pts = Correspondences {
        xa: Vec::with_capacity(n_in),
        ya: Vec::with_capacity(n_in),
        xb: Vec::with_capacity(n_in),
        yb: Vec::with_capacity(n_in),
        orig: Vec::with_capacity(n_in),
        sqrt_w: Vec::with_capacity(with_w),
        weight: Vec::with_capacity(with_w),
    };
    for &i in &order {
        if let (Ok(a), Ok(b)) = (
            camera_a.try_normalize(points_a[i]),
            camera_b.try_normalize(points_b[i]),
        ) {
            pts.xa.push(a[0]);
            pts.ya.push(a[1]);
            pts.xb.push(b[0]);
            pts.yb.push(b[1]);
            pts.orig.push(i);
            if let Some(w) = weights {
                pts.sqrt_w.push(w[i].sqrt());
                pts.weight.push(w[i]);
            }
        }
    }
    if pts.len() < need {
        return Err(NoPose::TooFewCorrespondences {
            have: pts.len(),
            need,
        }
        .into());
    }
    Ok(Problem { pts, n_input: n_in })
}

/// Range checks of the options the estimator reads.
pub(crate) fn validate_options(options: &RansacOptions) -> Result<(), PoseInputError> {
    let thr = options.threshold_px;
    if !(thr.is_finite() && thr > 0.0) {
        return Err(PoseInputError::InvalidOptions(format!(
            "threshold_px must be finite and > 0, got {thr}"
        )));
    }
    if !(options.confidence > 0.0 && options.confidence < 1.0) {
        return Err(PoseInputError::InvalidOptions(format!(
            "confidence must be in (0, 1), got {}",
            options.confidence
        )));
    }
    Ok(())
}

/// Rejects point sets that lie within about a threshold of one line (or one point): no essential matrix
/// is determined by them.
fn check_spread(p: &[[f64; 2]], which: &str, thr: f64) -> Result<(), NoPose> {
    let n = p.len() as f64;
    let (mut mx, mut my) = (0.0, 0.0);
    for q in p {
        mx += q[0];
        my += q[1];
    }
    mx /= n;
    my /= n;
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for q in p {
        let (dx, dy) = (q[0] - mx, q[1] - my);
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    sxx /= n;
    sxy /= n;
    syy /= n;
    // Smallest eigenvalue of the 2×2 covariance: variance across the best-fitting line.
    let tr = sxx + syy;
    let det = sxx * syy - sxy * sxy;
    let disc = (tr * tr / 4.0 - det).max(0.0).sqrt();
    let lambda_min = (tr / 2.0 - disc).max(0.0);
    if lambda_min.sqrt() < 0.5 * thr {
        return Err(NoPose::Degenerate(format!(
            "the points of image {which} lie on one line (spread across it {:.3} px)",
            lambda_min.sqrt()
        )));
    }
    Ok(())
}

fn count_distinct(a: &[[f64; 2]], b: &[[f64; 2]]) -> usize {
    let mut keys: Vec<[u64; 4]> = a
        .iter()
        .zip(b)
        .map(|(p, q)| {
            [
                p[0].to_bits(),
                p[1].to_bits(),
                q[0].to_bits(),
                q[1].to_bits(),
            ]
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys.len()
}
