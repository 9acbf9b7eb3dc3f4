//! Photometric sub-pixel refinement of putative matches (Lucas–Kanade).
//!
//! For each match (keypoint `a` in image A, keypoint `b` in image B) the position in A is kept fixed and the
//! position in B is moved so that the `(2r+1)²` patch around `b` best agrees with the patch around `a`:
//! inverse-compositional Gauss–Newton with the photometric difference (gain and bias) removed exactly at
//! every iteration by normalising the B patch to the template's mean and contrast, and the gain/bias
//! directions projected out of the steepest-descent images (otherwise the steps crawl wherever a shift looks
//! like a brightness change). Two warp models ([`WarpModel`]):
//! * translation: one set of four bilinear weights serves the whole patch (a translation keeps every
//!   sample's sub-pixel fraction equal), the cheaper model (`translation.rs`);
//! * affine: six parameters, started where at most four translation steps got to, so the patch may rotate,
//!   scale and shear between the views (wide-baseline pairs); every sample has its own weights (gathered eight
//!   at a time with AVX2 where the CPU has it, `sampling.rs`), which costs several times the translation
//!   model's time (`affine.rs`).
//!
//! The result is the position in B that corresponds to the detector's position in A, so a pair of
//! pixel-quantised or jittery detections becomes a sub-pixel correspondence even though the keypoint in A
//! keeps its own detection error. A match is left unrefined (the detector's `b` is used) when its patch leaves
//! either image, when the template is textureless (small minimum eigenvalue of its gain/bias-projected
//! structure tensor, or a flat B patch), when the iteration moves `b` by more than `max_shift_px`, does not
//! converge, produces a non-finite value, or ends with a zero-normalised cross-correlation below `min_zncc`.
//!
//! What it does not do: search (matches must already be within `max_shift_px`; a coarse-to-fine or ZNCC
//! search would be needed otherwise), model projective deformation or occlusion within the patch, reject
//! outliers (that is the robust pose estimator's job; a refused refinement keeps the match), or move keypoints
//! in A. It is deterministic (fixed summation order) and never panics: any input (NaN keypoints, indices past
//! the keypoints, empty or tiny images) only leaves matches unrefined.
//!
//! Files: this one holds the public API, the options, and the flow of one correspondence (the template patch
//! of A, its gain/bias-projected gradients and the texture check, then the warp model); `translation.rs` and
//! `affine.rs` the two Gauss–Newton loops; `reductions.rs` the fixed-order vectorised sums they share;
//! `sampling.rs` the bilinear sampling (the computation's only `unsafe`: the AVX2 gathers); `tests.rs`.

mod affine;
mod reductions;
mod sampling;
#[cfg(test)]
mod tests;
mod translation;

use image::GrayImage;

use self::affine::iterate_affine;
use self::reductions::dots;
use self::sampling::sample_grid;
use self::translation::{iterate_translation, TranslationStage};
use super::Match;

/// Settings of the refinement (`matcher.refine` in the configuration).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RefineOptions {
    /// Refine matches before the pose is estimated (the pipeline keeps grayscale frames for it).
    pub enabled: bool,
    /// How the patch may deform between the views.
    pub model: WarpModel,
    /// Patch half-size `r`: the patch is `(2r+1) × (2r+1)` pixels.
    pub patch_radius: u32,
    /// Gauss–Newton iterations at most.
    pub max_iterations: u32,
    /// Converged when an update moves `b` by less than this, pixels.
    pub convergence_px: f32,
    /// Leave unrefined when `b` would move farther than this from the detector's position, pixels.
    pub max_shift_px: f32,
    /// Leave unrefined when the smaller eigenvalue of the template's structure tensor, averaged over the
    /// patch, is below this ((gray levels / pixel)², 8-bit scale): too little texture to fix a position.
    pub min_eigenvalue: f32,
    /// Leave unrefined when the zero-normalised cross-correlation of the aligned patches is below this.
    pub min_zncc: f32,
    /// Refine at most this many matches per pair (the inliers of the first pose, evenly spread over them;
    /// 0 = all): bounds the cost, since a few hundred precise matches fix the pose.
    pub max_matches: usize,
}

/// Geometric model of the patch alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WarpModel {
    /// Translation only (2 parameters; one set of bilinear weights per iteration: cheapest).
    Translation,
    /// Affine (6 parameters): follows the rotation, scale and shear of the patch between views.
    Affine,
}

impl Default for RefineOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            model: WarpModel::Affine,
            patch_radius: 7,
            max_iterations: 10,
            convergence_px: 0.01,
            max_shift_px: 3.0,
            min_eigenvalue: 4.0,
            min_zncc: 0.8,
            max_matches: 512,
        }
    }
}

impl RefineOptions {
    /// Checks value ranges; returns the offending key (below `matcher.refine`) and what is allowed.
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if !(1..=16).contains(&self.patch_radius) {
            return Err(("patch_radius", "must be in 1..=16 pixels"));
        }
        if !(1..=100).contains(&self.max_iterations) {
            return Err(("max_iterations", "must be in 1..=100"));
        }
        if !(self.convergence_px.is_finite() && self.convergence_px > 0.0) {
            return Err(("convergence_px", "must be a positive number of pixels"));
        }
        if !(self.max_shift_px.is_finite() && self.max_shift_px > 0.0) {
            return Err(("max_shift_px", "must be a positive number of pixels"));
        }
        if !(self.min_eigenvalue.is_finite() && self.min_eigenvalue >= 0.0) {
            return Err(("min_eigenvalue", "must be a finite number >= 0"));
        }
        if !(-1.0..=1.0).contains(&self.min_zncc) {
            return Err(("min_zncc", "must be in [-1, 1]"));
        }
        Ok(())
    }
}

/// Why a match was left unrefined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// A keypoint index past the keypoints, or a non-finite keypoint.
    Invalid,
    /// The patch leaves image A or image B.
    OutOfBounds,
    /// Too little texture in the template (or a flat patch in B).
    Textureless,
    /// Moved farther than `max_shift_px`, or produced a non-finite value.
    Diverged,
    /// Still moving by more than `convergence_px` after `max_iterations`.
    NotConverged,
    /// The aligned patches correlate less than `min_zncc`.
    LowCorrelation,
}

/// Counts of refined and unrefined matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RefineStats {
    /// Matches whose `b` was moved.
    pub refined: usize,
    /// [`Reject::Invalid`].
    pub invalid: usize,
    /// [`Reject::OutOfBounds`].
    pub out_of_bounds: usize,
    /// [`Reject::Textureless`].
    pub textureless: usize,
    /// [`Reject::Diverged`].
    pub diverged: usize,
    /// [`Reject::NotConverged`].
    pub not_converged: usize,
    /// [`Reject::LowCorrelation`].
    pub low_correlation: usize,
}

impl RefineStats {
    fn count(&mut self, r: Result<[f32; 2], Reject>) {
        match r {
            Ok(_) => self.refined += 1,
            Err(Reject::Invalid) => self.invalid += 1,
            Err(Reject::OutOfBounds) => self.out_of_bounds += 1,
            Err(Reject::Textureless) => self.textureless += 1,
            Err(Reject::Diverged) => self.diverged += 1,
            Err(Reject::NotConverged) => self.not_converged += 1,
            Err(Reject::LowCorrelation) => self.low_correlation += 1,
        }
    }

    /// Matches left unrefined.
    pub fn rejected(&self) -> usize {
        self.invalid
            + self.out_of_bounds
            + self.textureless
            + self.diverged
            + self.not_converged
            + self.low_correlation
    }
}

/// Result of [`refine_matches`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Refinement {
    /// Per match (same order as the input): the refined position of `b` in image B, or `None` when the
    /// match was left unrefined (use the detector's keypoint).
    pub points_b: Vec<Option<[f32; 2]>>,
    /// Counts (of the matches attempted).
    pub stats: RefineStats,
}

/// Refines the B position of every match; see the module documentation.
pub fn refine_matches(
    image_a: &GrayImage,
    keypoints_a: &[[f32; 2]],
    image_b: &GrayImage,
    keypoints_b: &[[f32; 2]],
    matches: &[Match],
    options: &RefineOptions,
) -> Refinement {
    refine_selected_matches(
        image_a,
        keypoints_a,
        image_b,
        keypoints_b,
        matches,
        None,
        options,
    )
}

/// [`refine_matches`] for the matches with `select[i]` true only (all when `None`; the others stay `None`
/// and are not counted in the stats).
pub fn refine_selected_matches(
    image_a: &GrayImage,
    keypoints_a: &[[f32; 2]],
    image_b: &GrayImage,
    keypoints_b: &[[f32; 2]],
    matches: &[Match],
    select: Option<&[bool]>,
    options: &RefineOptions,
) -> Refinement {
    let mut scratch = Scratch::new(options.patch_radius);
    let mut out = Refinement {
        points_b: Vec::with_capacity(matches.len()),
        stats: RefineStats::default(),
    };
    for (i, m) in matches.iter().enumerate() {
        if !select.is_none_or(|s| s.get(i).copied().unwrap_or(false)) {
            out.points_b.push(None);
            continue;
        }
        let r = match (keypoints_a.get(m.a as usize), keypoints_b.get(m.b as usize)) {
            (Some(&pa), Some(&pb)) => refine_with(image_a, pa, image_b, pb, options, &mut scratch),
            _ => Err(Reject::Invalid),
        };
        out.stats.count(r);
        out.points_b.push(r.ok());
    }
    out
}

/// Refines one correspondence: the position in `image_b` that matches `pa` in `image_a`, starting at `pb`.
pub fn refine_point(
    image_a: &GrayImage,
    pa: [f32; 2],
    image_b: &GrayImage,
    pb: [f32; 2],
    options: &RefineOptions,
) -> Result<[f32; 2], Reject> {
    refine_with(
        image_a,
        pa,
        image_b,
        pb,
        options,
        &mut Scratch::new(options.patch_radius),
    )
}

/// Buffers reused across matches.
struct Scratch {
    /// Patch half-size.
    r: usize,
    /// Template with a one-pixel ring, `(2r+3)²`.
    ring: Vec<f32>,
    /// Zero-mean template, `(2r+1)²`.
    t: Vec<f32>,
    /// Template gradients.
    gx: Vec<f32>,
    gy: Vec<f32>,
    /// Current B patch.
    s: Vec<f32>,
    /// All ones (sums through [`dots`]).
    ones: Vec<f32>,
    /// Steepest-descent images of the affine model, `6 × (2r+1)²`.
    sd: Vec<f32>,
}

impl Scratch {
    fn new(radius: u32) -> Self {
        let r = radius.clamp(1, 64) as usize;
        let n = (2 * r + 1) * (2 * r + 1);
        Self {
            r,
            ring: vec![0.0; (2 * r + 3) * (2 * r + 3)],
            t: vec![0.0; n],
            gx: vec![0.0; n],
            gy: vec![0.0; n],
            s: vec![0.0; n],
            ones: vec![1.0; n],
            sd: Vec::new(),
        }
    }
}

fn refine_with(
    image_a: &GrayImage,
    pa: [f32; 2],
    image_b: &GrayImage,
    pb: [f32; 2],
    o: &RefineOptions,
    sc: &mut Scratch,
) -> Result<[f32; 2], Reject> {
    if !(pa.iter().chain(pb.iter()).all(|v| v.is_finite())) {
        return Err(Reject::Invalid);
    }
    let r = sc.r;
    let side = 2 * r + 1;
    let ring_side = side + 2;
    let n = (side * side) as f32;
    if !sample_grid(image_a, pa[0], pa[1], r + 1, &mut sc.ring) {
        return Err(Reject::OutOfBounds);
    }
    // template (inner patch) and its central-difference gradients
    for j in 0..side {
        let c = (j + 1) * ring_side + 1;
        let ring = &sc.ring;
        let rows = (
            &ring[c..c + side],
            &ring[c - 1..c - 1 + side],
            &ring[c + 1..c + 1 + side],
            &ring[c - ring_side..c - ring_side + side],
            &ring[c + ring_side..c + ring_side + side],
        );
        let out = j * side..(j + 1) * side;
        for (k, (t, (gx, gy))) in sc.t[out.clone()]
            .iter_mut()
            .zip(sc.gx[out.clone()].iter_mut().zip(sc.gy[out].iter_mut()))
            .enumerate()
        {
            *t = rows.0[k];
            *gx = 0.5 * (rows.2[k] - rows.1[k]);
            *gy = 0.5 * (rows.4[k] - rows.3[k]);
        }
    }
    let [sum_t, sgx, sgy] = dots(&sc.ones, [&sc.t, &sc.gx, &sc.gy]);
    let mean_t = (sum_t / n as f64) as f32;
    sc.t.iter_mut().for_each(|t| *t -= mean_t);
    let [var_t, tgx, tgy] = dots(&sc.t, [&sc.t, &sc.gx, &sc.gy]);
    let var_t = var_t as f32;
    if !(var_t.is_finite() && var_t > 1e-6 * n) {
        return Err(Reject::Textureless);
    }
    // Gain and bias are normalised away in every iteration, so a shift can only be seen through the part of
    // the gradient that is not itself a bias (constant) or a gain (multiple of the template) change: project
    // those out ("project-out" inverse compositional), else the Gauss–Newton steps are far too short along
    // such directions and the iteration crawls.
    let (mgx, mgy) = ((sgx / n as f64) as f32, (sgy / n as f64) as f32);
    let (cgx, cgy) = (tgx as f32 / var_t, tgy as f32 / var_t);
    for ((gx, gy), t) in sc.gx.iter_mut().zip(sc.gy.iter_mut()).zip(&sc.t) {
        *gx -= mgx + cgx * t;
        *gy -= mgy + cgy * t;
    }
    let [hxx, hxy] = dots(&sc.gx, [&sc.gx, &sc.gy]);
    let [hyy] = dots(&sc.gy, [&sc.gy]);
    let (hxx, hxy, hyy) = (hxx as f32, hxy as f32, hyy as f32);
    let half_trace = 0.5 * (hxx + hyy);
    let lambda_min = half_trace - (0.25 * (hxx - hyy) * (hxx - hyy) + hxy * hxy).sqrt();
    let det = hxx * hyy - hxy * hxy;
    if !(lambda_min.is_finite() && lambda_min / n >= o.min_eigenvalue.max(1e-6) && det > 0.0) {
        return Err(Reject::Textureless);
    }
    let std_t = var_t.sqrt();
    let (ixx, ixy, iyy) = (hyy / det, -hxy / det, hxx / det);
    let inv_h = [ixx, ixy, iyy];
    if o.model == WarpModel::Translation {
        return iterate_translation(image_b, pb, o, sc, std_t, inv_h, TranslationStage::Final);
    }
    // affine: start where a few (cheap) translation steps got to, unless they failed for a reason the
    // deformation cannot explain
    let init = match iterate_translation(
        image_b,
        pb,
        o,
        sc,
        std_t,
        inv_h,
        TranslationStage::AffineStart,
    ) {
        Ok(q) => [q[0] - pb[0], q[1] - pb[1]],
        Err(Reject::LowCorrelation) => [0.0, 0.0],
        Err(e) => return Err(e),
    };
    iterate_affine(image_b, pb, init, o, sc, std_t)
}
