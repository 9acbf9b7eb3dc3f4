//! Photometric sub-pixel refinement of putative matches (Lucas–Kanade).
//!
//! For each match (keypoint `a` in image A, keypoint `b` in image B) the position in A is kept fixed and the
//! position in B is moved so that the `(2r+1)²` patch around `b` best agrees with the patch around `a`:
//! inverse-compositional Gauss–Newton with the photometric difference (gain and bias) removed exactly at
//! every iteration by normalising the B patch to the template's mean and contrast, and the gain/bias
//! directions projected out of the steepest-descent images (otherwise the steps crawl wherever a shift looks
//! like a brightness change). Two warp models ([`WarpModel`]):
//! * translation: one set of four bilinear weights serves the whole patch (a translation keeps every
//!   sample's sub-pixel fraction equal), about 1.5 µs per match with `r = 5` on this project's machine;
//! * affine: six parameters, started where at most four translation steps got to, so the patch may rotate,
//!   scale and shear between the views (wide-baseline pairs); every sample has its own weights (gathered eight
//!   at a time with AVX2 where the CPU has it, `affine_sampling.rs`), about 5× the time.
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

use image::GrayImage;

use super::affine_sampling::sample_affine_grid;
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

/// Samples the `(2e+1)²` grid centred on `(cx, cy)` (unit spacing) bilinearly into `out`, row-major.
/// Returns false (leaving `out` unspecified) when a sample would need a pixel outside the image.
fn sample_grid(img: &GrayImage, cx: f32, cy: f32, e: usize, out: &mut [f32]) -> bool {
    if !(cx.is_finite() && cy.is_finite()) {
        return false;
    }
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (x0f, y0f) = (cx.floor(), cy.floor());
    // the top-left sample's integer pixel; all samples need [x0, x0 + 2e + 1] × [y0, y0 + 2e + 1]
    // (compared as floats first: huge coordinates must not wrap when cast)
    let side = 2 * e + 1;
    let (left, top) = (x0f - e as f32, y0f - e as f32);
    if !(left >= 0.0
        && top >= 0.0
        && left + (side as f32) < w as f32
        && top + (side as f32) < h as f32)
    {
        return false;
    }
    let (left, top) = (left as usize, top as usize);
    if left + side >= w || top + side >= h || out.len() < side * side {
        return false;
    }
    let (fx, fy) = (cx - x0f, cy - y0f);
    let (w00, w01, w10, w11) = (
        (1.0 - fx) * (1.0 - fy),
        fx * (1.0 - fy),
        (1.0 - fx) * fy,
        fx * fy,
    );
    let data = img.as_raw();
    for (j, row_out) in out.chunks_exact_mut(side).take(side).enumerate() {
        let base = (top + j) * w + left;
        let (r0, r1) = (
            &data[base..base + side + 1],
            &data[base + w..base + w + side + 1],
        );
        for ((o, (&a0, &a1)), (&b0, &b1)) in row_out
            .iter_mut()
            .zip(r0[..side].iter().zip(&r0[1..]))
            .zip(r1[..side].iter().zip(&r1[1..]))
        {
            *o = w00 * a0 as f32 + w01 * a1 as f32 + w10 * b0 as f32 + w11 * b1 as f32;
        }
    }
    true
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

/// What the translation iterations are for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TranslationStage {
    /// The result of the translation model: converged to `convergence_px` within `max_iterations`.
    Final,
    /// The affine model's starting point: at most [`AFFINE_START_ITERATIONS`] steps to within
    /// [`AFFINE_START_CONVERGENCE_PX`]; where they stop is the start even when not converged (under rotation
    /// or scale change the translation model often cannot converge, and its last position is still closer).
    AffineStart,
}

/// Translation steps before the affine model takes over.
const AFFINE_START_ITERATIONS: u32 = 4;

/// Convergence of the translation steps before the affine model, pixels.
const AFFINE_START_CONVERGENCE_PX: f32 = 0.05;

/// The translation model's Gauss–Newton iterations (`inv_h`: the inverse Hessian `[xx, xy, yy]`).
fn iterate_translation(
    image_b: &GrayImage,
    pb: [f32; 2],
    o: &RefineOptions,
    sc: &mut Scratch,
    std_t: f32,
    [ixx, ixy, iyy]: [f32; 3],
    stage: TranslationStage,
) -> Result<[f32; 2], Reject> {
    let r = sc.r;
    let n = sc.t.len() as f32;

    let (mut dx, mut dy) = (0.0f32, 0.0f32);
    let max_shift2 = o.max_shift_px * o.max_shift_px;
    let (iterations, convergence_px) = match stage {
        TranslationStage::Final => (o.max_iterations, o.convergence_px),
        TranslationStage::AffineStart => (
            o.max_iterations.min(AFFINE_START_ITERATIONS),
            o.convergence_px.max(AFFINE_START_CONVERGENCE_PX),
        ),
    };
    let eps2 = convergence_px * convergence_px;
    for _ in 0..iterations {
        if !sample_grid(image_b, pb[0] + dx, pb[1] + dy, r, &mut sc.s) {
            return Err(Reject::OutOfBounds);
        }
        // The projected gradients are orthogonal to 1 and t, so with e = scale·(s − mean_s) − t the
        // steepest-descent sums need only the raw samples: Σ g·e = scale · Σ g·s (one fused pass).
        let [sum_s, sum_ss, cross, gs_x, gs_y] = sums5(&sc.s, &sc.t, &sc.gx, &sc.gy);
        let var_s = (sum_ss - sum_s * sum_s / n as f64) as f32;
        if !(var_s.is_finite() && var_s > 1e-6 * n) {
            return Err(Reject::Textureless);
        }
        // B patch brought to the template's mean (0) and contrast: gain and bias drop out
        let scale = std_t / var_s.sqrt();
        let (cross, bx, by) = (cross as f32, scale * gs_x as f32, scale * gs_y as f32);
        let (ux, uy) = (ixx * bx + ixy * by, ixy * bx + iyy * by);
        // inverse composition of a translation: d ← d − Δ
        dx -= ux;
        dy -= uy;
        if !(dx.is_finite() && dy.is_finite()) || dx * dx + dy * dy > max_shift2 {
            return Err(Reject::Diverged);
        }
        if ux * ux + uy * uy < eps2 {
            // correlation at the last sampled position (within `convergence_px` of the result)
            let zncc = cross / (std_t * var_s.sqrt());
            if zncc.is_nan() || zncc < o.min_zncc {
                return Err(Reject::LowCorrelation);
            }
            return Ok([pb[0] + dx, pb[1] + dy]);
        }
    }
    if stage == TranslationStage::AffineStart {
        return Ok([pb[0] + dx, pb[1] + dy]);
    }
    Err(Reject::NotConverged)
}

/// `[Σ a·b_0, …, Σ a·b_{K-1}]` in one pass with eight lanes per sum (vectorises; fixed order:
/// deterministic), combined in f64. Slices are cut to the shortest.
fn dots<const K: usize>(a: &[f32], b: [&[f32]; K]) -> [f64; K] {
    let n = b.iter().fold(a.len(), |n, x| n.min(x.len()));
    let full = n - n % 8;
    let mut acc = [[0.0f32; 8]; K];
    for (c, ca) in a[..full].chunks_exact(8).enumerate() {
        for (acc, bk) in acc.iter_mut().zip(&b) {
            let cb = &bk[c * 8..c * 8 + 8];
            for l in 0..8 {
                acc[l] += ca[l] * cb[l];
            }
        }
    }
    let mut out = [0.0f64; K];
    for ((o, acc), bk) in out.iter_mut().zip(&acc).zip(&b) {
        *o = acc.iter().map(|&v| v as f64).sum::<f64>()
            + (full..n).map(|k| (a[k] * bk[k]) as f64).sum::<f64>();
    }
    out
}

/// `[Σ s, Σ s², Σ s·t, Σ s·gx, Σ s·gy]` in one pass with eight lanes per sum (vectorises; fixed order:
/// deterministic), combined in f64.
fn sums5(s: &[f32], t: &[f32], gx: &[f32], gy: &[f32]) -> [f64; 5] {
    let mut acc = [[0.0f32; 8]; 5];
    let mut out = [0.0f64; 5];
    let n = s.len().min(t.len()).min(gx.len()).min(gy.len());
    let full = n - n % 8;
    for (((cs, ct), cx), cy) in s[..full]
        .chunks_exact(8)
        .zip(t[..full].chunks_exact(8))
        .zip(gx[..full].chunks_exact(8))
        .zip(gy[..full].chunks_exact(8))
    {
        for k in 0..8 {
            acc[0][k] += cs[k];
            acc[1][k] += cs[k] * cs[k];
            acc[2][k] += cs[k] * ct[k];
            acc[3][k] += cs[k] * cx[k];
            acc[4][k] += cs[k] * cy[k];
        }
    }
    for k in full..n {
        out[0] += s[k] as f64;
        out[1] += (s[k] * s[k]) as f64;
        out[2] += (s[k] * t[k]) as f64;
        out[3] += (s[k] * gx[k]) as f64;
        out[4] += (s[k] * gy[k]) as f64;
    }
    for (o, a) in out.iter_mut().zip(&acc) {
        *o += a.iter().map(|&v| v as f64).sum::<f64>();
    }
    out
}

/// `[Σ s, Σ s², Σ s·t, Σ s·sd_0, …, Σ s·sd_5]` (`sd`: six planes of `s.len()` values) in one pass with eight
/// lanes per sum (fixed order: deterministic), combined in f64. Compiled for the wider vector units too and
/// chosen at run time: nine sums of eight lanes fill the registers of AVX2/AVX-512 exactly.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn affine_sums(s: &[f32], t: &[f32], sd: &[f32]) -> [f64; 9] {
    let n = s.len().min(t.len()).min(sd.len() / 6);
    let planes: [&[f32]; 6] = std::array::from_fn(|c| &sd[c * n..(c + 1) * n]);
    let full = n - n % 8;
    let mut acc = [[0.0f32; 8]; 9];
    for base in (0..full).step_by(8) {
        let cs: &[f32; 8] = s[base..base + 8].try_into().expect("8 lanes");
        let ct: &[f32; 8] = t[base..base + 8].try_into().expect("8 lanes");
        for k in 0..8 {
            acc[0][k] += cs[k];
            acc[1][k] += cs[k] * cs[k];
            acc[2][k] += cs[k] * ct[k];
        }
        for (a, p) in acc[3..].iter_mut().zip(&planes) {
            let cp: &[f32; 8] = p[base..base + 8].try_into().expect("8 lanes");
            for k in 0..8 {
                a[k] += cs[k] * cp[k];
            }
        }
    }
    let mut out = [0.0f64; 9];
    for k in full..n {
        let v = s[k] as f64;
        out[0] += v;
        out[1] += v * v;
        out[2] += v * t[k] as f64;
        for (o, p) in out[3..].iter_mut().zip(&planes) {
            *o += v * p[k] as f64;
        }
    }
    for (o, a) in out.iter_mut().zip(&acc) {
        *o += a.iter().map(|&v| v as f64).sum::<f64>();
    }
    out
}

/// Dot product with eight independent accumulators (vectorises; the order is fixed: deterministic).
fn dot8(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The affine model: `x_b = b + d + M·u` for template offsets `u`, inverse-compositional Gauss–Newton on
/// the six parameters with the gain/bias directions projected out of the steepest-descent images.
/// `sc.gx`/`sc.gy` hold the template's projected gradients and `sc.t` the zero-mean template.
fn iterate_affine(
    image_b: &GrayImage,
    pb: [f32; 2],
    init: [f32; 2],
    o: &RefineOptions,
    sc: &mut Scratch,
    std_t: f32,
) -> Result<[f32; 2], Reject> {
    use nalgebra::{Matrix3, Matrix6, Vector6};
    let r = sc.r;
    let side = 2 * r + 1;
    let np = side * side;
    let n = np as f32;
    // steepest-descent images [gx·u, gx·v, gx, gy·u, gy·v, gy], then made orthogonal to 1 and t
    sc.sd.clear();
    sc.sd.resize(6 * np, 0.0);
    let [var_t, sum_t] = dots(&sc.t, [&sc.t, &sc.ones]);
    let var_t = var_t as f32;
    for (c, sd) in sc.sd.chunks_exact_mut(np).enumerate() {
        let g = if c < 3 { &sc.gx } else { &sc.gy };
        for (j, row) in sd.chunks_exact_mut(side).enumerate() {
            let v = j as f32 - r as f32;
            let grow = &g[j * side..(j + 1) * side];
            match c % 3 {
                0 => {
                    for (i, (o, g)) in row.iter_mut().zip(grow).enumerate() {
                        *o = g * (i as f32 - r as f32);
                    }
                }
                1 => row.iter_mut().zip(grow).for_each(|(o, g)| *o = g * v),
                _ => row.copy_from_slice(grow),
            }
        }
        let [sum, dot] = dots(sd, [&sc.ones, &sc.t]);
        let (mean, proj) = ((sum / n as f64) as f32, dot as f32 / var_t);
        for (o, t) in sd.iter_mut().zip(&sc.t) {
            *o -= mean + proj * t;
        }
    }
    // what is left of Σ sd_c and Σ sd_c·t after the projection (rounding only): kept so that the gradient
    // taken from the raw samples below is exact
    let mut sd_sum = [0.0f64; 6];
    let mut sd_t = [0.0f64; 6];
    for (c, sd) in sc.sd.chunks_exact(np).enumerate() {
        [sd_sum[c], sd_t[c]] = dots(sd, [&sc.ones, &sc.t]);
    }
    let mut h = Matrix6::<f64>::zeros();
    for a in 0..6 {
        for b in a..6 {
            let v = dot8(&sc.sd[a * np..(a + 1) * np], &sc.sd[b * np..(b + 1) * np]);
            h[(a, b)] = v as f64;
            h[(b, a)] = v as f64;
        }
    }
    let Some(chol) = h.cholesky() else {
        return Err(Reject::Textureless);
    };
    // current warp: x_b = pb + d + M·u
    let mut warp = Matrix3::<f64>::identity();
    warp[(0, 2)] = init[0] as f64;
    warp[(1, 2)] = init[1] as f64;
    let mut prev = [warp[(0, 2)], warp[(1, 2)]];
    let max_shift2 = (o.max_shift_px * o.max_shift_px) as f64;
    for it in 0..o.max_iterations {
        let (m00, m01, m10, m11) = (
            warp[(0, 0)] as f32,
            warp[(0, 1)] as f32,
            warp[(1, 0)] as f32,
            warp[(1, 1)] as f32,
        );
        let centre = [pb[0] + warp[(0, 2)] as f32, pb[1] + warp[(1, 2)] as f32];
        if !sample_affine_grid(image_b, centre, [m00, m01, m10, m11], r, &mut sc.s) {
            return Err(Reject::OutOfBounds);
        }
        // one pass over the samples: e = scale·(s − mean_s) − t never needs to be formed, since
        // Σ sd_c·e = scale·(Σ sd_c·s − mean_s·Σ sd_c) − Σ sd_c·t
        let sums = affine_sums(&sc.s, &sc.t, &sc.sd);
        let mean_s = sums[0] / n as f64;
        let var_s = (sums[1] - sums[0] * mean_s) as f32;
        let cross = (sums[2] - mean_s * sum_t) as f32;
        if !(var_s.is_finite() && var_s > 1e-6 * n) {
            return Err(Reject::Textureless);
        }
        // a wrong match shows no sign of agreeing after a few steps: stop early (most of the cost otherwise)
        if it >= 2 && cross < 0.5 * o.min_zncc * std_t * var_s.sqrt() {
            return Err(Reject::LowCorrelation);
        }
        let scale = (std_t / var_s.sqrt()) as f64;
        let g =
            Vector6::<f64>::from_fn(|c, _| scale * (sums[3 + c] - mean_s * sd_sum[c]) - sd_t[c]);
        let dp = chol.solve(&g);
        let inc = Matrix3::new(
            1.0 + dp[0],
            dp[1],
            dp[2],
            dp[3],
            1.0 + dp[4],
            dp[5],
            0.0,
            0.0,
            1.0,
        );
        let Some(inc_inv) = inc.try_inverse() else {
            return Err(Reject::Diverged);
        };
        warp *= inc_inv;
        let (tx, ty) = (warp[(0, 2)], warp[(1, 2)]);
        let det = warp[(0, 0)] * warp[(1, 1)] - warp[(0, 1)] * warp[(1, 0)];
        if !(tx.is_finite()
            && ty.is_finite()
            && tx * tx + ty * ty <= max_shift2
            && (0.25..=4.0).contains(&det))
            || warp
                .iter()
                .any(|v| !v.is_finite() || v.abs() > 4.0 + max_shift2)
        {
            return Err(Reject::Diverged);
        }
        // converged when the patch centre (the refined point) stops moving
        let step = (tx - prev[0]).hypot(ty - prev[1]);
        prev = [tx, ty];
        if step < o.convergence_px as f64 {
            let zncc = cross / (std_t * var_s.sqrt());
            if zncc.is_nan() || zncc < o.min_zncc {
                return Err(Reject::LowCorrelation);
            }
            return Ok([pb[0] + tx as f32, pb[1] + ty as f32]);
        }
    }
    Err(Reject::NotConverged)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth random texture: sum of a few dozen seeded sinusoids (band-limited, so bilinear
    /// interpolation of the shifted rendering is accurate), values within 8-bit range.
    fn texture(x: f64, y: f64, seed: u64) -> f64 {
        let mut st = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
        let mut next = || {
            st ^= st << 13;
            st ^= st >> 7;
            st ^= st << 17;
            (st >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut v = 0.0;
        for _ in 0..24 {
            let (f, a, p) = (
                0.15 + 0.75 * next(),
                std::f64::consts::TAU * next(),
                6.3 * next(),
            );
            v += (f * (x * a.cos() + y * a.sin()) + p).sin();
        }
        128.0 + 60.0 * v / 24f64.sqrt() / 1.5
    }

    /// Renders `gain · texture(x − shift) + bias` (plus seeded uniform noise of ± `noise`) as 8-bit gray.
    fn render(w: u32, h: u32, shift: [f64; 2], gain: f64, bias: f64, noise: f64) -> GrayImage {
        let mut st: u64 = 12345;
        GrayImage::from_fn(w, h, |x, y| {
            st = st
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (st >> 40) as f64 / (1u64 << 24) as f64 - 0.5;
            let v = gain * texture(x as f64 - shift[0], y as f64 - shift[1], 7) + bias;
            image::Luma([(v + 2.0 * noise * u).round().clamp(0.0, 255.0) as u8])
        })
    }

    /// Options for the small synthetic images: `r = 5`, 1.5 px reach.
    fn small(model: WarpModel) -> RefineOptions {
        RefineOptions {
            enabled: true,
            model,
            patch_radius: 5,
            max_shift_px: 1.5,
            ..RefineOptions::default()
        }
    }

    const MODELS: [WarpModel; 2] = [WarpModel::Translation, WarpModel::Affine];

    /// Matches `i ↔ i` for `n` keypoints, all with `score`.
    fn identity_matches(n: usize, score: f32) -> Vec<Match> {
        (0..n as u32).map(|i| Match { a: i, b: i, score }).collect()
    }

    fn grid_points(w: u32, h: u32, step: usize) -> Vec<[f32; 2]> {
        let mut p = Vec::new();
        for y in (12..h as usize - 12).step_by(step) {
            for x in (12..w as usize - 12).step_by(step) {
                // sub-pixel detector positions, like XFeat's
                p.push([x as f32 + 0.3, y as f32 - 0.2]);
            }
        }
        p
    }

    #[test]
    fn recovers_subpixel_shift_under_gain_and_bias() {
        let shift = [0.37, -0.61];
        let a = render(160, 120, [0.0, 0.0], 1.0, 0.0, 0.0);
        let b = render(160, 120, shift, 0.7, 25.0, 0.0);
        let pa = grid_points(160, 120, 9);
        // the detector in B is off by up to a pixel (rounded to integers)
        let pb: Vec<[f32; 2]> = pa
            .iter()
            .map(|p| {
                [
                    (p[0] + shift[0] as f32).round(),
                    (p[1] + shift[1] as f32).round(),
                ]
            })
            .collect();
        let matches = identity_matches(pa.len(), 1.0);
        for opts in MODELS.map(small) {
            let res = refine_matches(&a, &pa, &b, &pb, &matches, &opts);
            assert_eq!(res.points_b.len(), matches.len());
            assert!(
                res.stats.refined as f64 >= 0.9 * matches.len() as f64,
                "{:?}",
                res.stats
            );
            let mut worst = 0.0f64;
            let mut sum_before = 0.0f64;
            for ((q, p), b0) in res.points_b.iter().zip(&pa).zip(&pb) {
                let Some(q) = q else { continue };
                let ex = q[0] as f64 - (p[0] as f64 + shift[0]);
                let ey = q[1] as f64 - (p[1] as f64 + shift[1]);
                worst = worst.max(ex.hypot(ey));
                sum_before += (b0[0] as f64 - (p[0] as f64 + shift[0]))
                    .hypot(b0[1] as f64 - (p[1] as f64 + shift[1]));
            }
            assert!(
                worst < 0.05,
                "{:?}: worst refined error {worst} px",
                opts.model
            );
            assert!(sum_before / res.stats.refined as f64 > 0.2);
        }
    }

    #[test]
    fn affine_model_follows_rotation_and_scale() {
        // B = A rotated by 12°, scaled by 1.1 and shifted: x_b = M·x_a + s
        let (ang, sc, s) = (12f64.to_radians(), 1.1, [0.4, -0.3]);
        let m = [
            [sc * ang.cos(), -sc * ang.sin()],
            [sc * ang.sin(), sc * ang.cos()],
        ];
        let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
        let a = GrayImage::from_fn(200, 160, |x, y| {
            image::Luma([texture(x as f64, y as f64, 7).round().clamp(0.0, 255.0) as u8])
        });
        let b = GrayImage::from_fn(200, 160, |x, y| {
            let (u, v) = (x as f64 - s[0], y as f64 - s[1]);
            let xa = (m[1][1] * u - m[0][1] * v) / det;
            let ya = (-m[1][0] * u + m[0][0] * v) / det;
            image::Luma([(0.8 * texture(xa, ya, 7) + 20.0).round().clamp(0.0, 255.0) as u8])
        });
        let affine = RefineOptions {
            model: WarpModel::Affine,
            patch_radius: 7,
            max_shift_px: 3.0,
            ..RefineOptions::default()
        };
        let translation = RefineOptions {
            model: WarpModel::Translation,
            ..affine.clone()
        };
        let (mut err_aff, mut err_tr, mut n) = (Vec::new(), Vec::new(), 0);
        for p in grid_points(90, 70, 8) {
            let p = [p[0] + 50.0, p[1] + 40.0];
            let q = [
                m[0][0] * p[0] as f64 + m[0][1] * p[1] as f64 + s[0],
                m[1][0] * p[0] as f64 + m[1][1] * p[1] as f64 + s[1],
            ];
            let init = [q[0].round() as f32, q[1].round() as f32];
            let err = |r: [f32; 2]| (r[0] as f64 - q[0]).hypot(r[1] as f64 - q[1]);
            n += 1;
            if let Ok(r) = refine_point(&a, p, &b, init, &affine) {
                err_aff.push(err(r));
            }
            if let Ok(r) = refine_point(&a, p, &b, init, &translation) {
                err_tr.push(err(r));
            }
        }
        assert!(err_aff.len() * 10 >= n * 9, "{} of {n}", err_aff.len());
        let mean = |e: &[f64]| e.iter().sum::<f64>() / e.len().max(1) as f64;
        let worst = err_aff.iter().cloned().fold(0.0, f64::max);
        assert!(worst < 0.05, "affine worst {worst} px");
        // the translation model cannot follow the deformation: clearly worse where it converges at all
        assert!(
            err_tr.len() < err_aff.len() || mean(&err_tr) > 2.0 * mean(&err_aff),
            "translation {} of {n}, mean {}; affine mean {}",
            err_tr.len(),
            mean(&err_tr),
            mean(&err_aff)
        );
    }

    #[test]
    fn noisy_images_still_improve() {
        let shift = [-0.45, 0.8];
        let a = render(160, 120, [0.0, 0.0], 1.0, 0.0, 3.0);
        let b = render(160, 120, shift, 1.2, -10.0, 3.0);
        let pa = grid_points(160, 120, 9);
        let pb: Vec<[f32; 2]> = pa
            .iter()
            .map(|p| [p[0] - 0.45 + 0.5, p[1] + 0.8 - 0.5])
            .collect();
        for opts in MODELS.map(small) {
            let (mut before, mut after, mut n) = (0.0f64, 0.0f64, 0);
            for (p, q0) in pa.iter().zip(&pb) {
                let truth = [p[0] as f64 + shift[0], p[1] as f64 + shift[1]];
                if let Ok(q) = refine_point(&a, *p, &b, *q0, &opts) {
                    after += (q[0] as f64 - truth[0]).hypot(q[1] as f64 - truth[1]);
                    before += (q0[0] as f64 - truth[0]).hypot(q0[1] as f64 - truth[1]);
                    n += 1;
                }
            }
            assert!(n > pa.len() / 2, "{n} of {}", pa.len());
            let (before, after) = (before / n as f64, after / n as f64);
            assert!(
                after < 0.1 && after < 0.2 * before,
                "{:?}: {before} → {after}",
                opts.model
            );
        }
    }

    #[test]
    fn textureless_patch_is_rejected() {
        let flat = GrayImage::from_pixel(64, 64, image::Luma([90]));
        for opts in MODELS.map(small) {
            assert_eq!(
                refine_point(&flat, [32.0, 32.0], &flat, [32.3, 31.8], &opts),
                Err(Reject::Textureless)
            );
            // a straight edge: texture in one direction only (aperture problem)
            let edge =
                GrayImage::from_fn(64, 64, |x, _| image::Luma([if x < 32 { 40 } else { 200 }]));
            assert_eq!(
                refine_point(&edge, [31.5, 30.0], &edge, [31.5, 30.5], &opts),
                Err(Reject::Textureless)
            );
        }
    }

    #[test]
    fn wrong_match_is_not_refined() {
        let a = render(160, 120, [0.0, 0.0], 1.0, 0.0, 0.0);
        // B shows a different texture: no alignment exists within reach
        let b = GrayImage::from_fn(160, 120, |x, y| {
            image::Luma([texture(x as f64, y as f64, 99).clamp(0.0, 255.0) as u8])
        });
        let mut refined = 0;
        for opts in MODELS.map(small) {
            for p in grid_points(160, 120, 9) {
                if refine_point(&a, p, &b, p, &opts).is_ok() {
                    refined += 1;
                }
            }
        }
        assert!(refined <= 2, "{refined} unrelated patches accepted");
    }

    #[test]
    fn borders_bad_input_and_tiny_images_never_panic() {
        let a = render(40, 30, [0.0, 0.0], 1.0, 0.0, 0.0);
        let tiny = GrayImage::new(1, 1);
        let empty = GrayImage::new(0, 0);
        let opts = small(WarpModel::Translation);
        let odd = [
            [0.0, 0.0],
            [-3.0, 5.0],
            [39.0, 29.0],
            [39.9, 29.9],
            [40.0, 30.0],
            [1e30, 1e30],
            [-1e30, 3.0],
            [f32::NAN, 4.0],
            [4.0, f32::INFINITY],
            [5.0, 6.0],
            [20.0, 15.0],
        ];
        for model in [WarpModel::Translation, WarpModel::Affine] {
            let o = RefineOptions {
                model,
                ..opts.clone()
            };
            for img_b in [&a, &tiny, &empty] {
                for &pa in &odd {
                    for &pb in &odd {
                        if let Ok(q) = refine_point(&a, pa, img_b, pb, &o) {
                            assert!(q[0].is_finite() && q[1].is_finite());
                        }
                    }
                }
            }
        }
        // the patch reaches the border exactly: in bounds; one more pixel: out of bounds
        let r = opts.patch_radius as f32;
        assert_ne!(
            refine_point(&a, [r + 1.0, r + 1.0], &a, [r + 1.0, r + 1.0], &opts),
            Err(Reject::OutOfBounds)
        );
        assert_eq!(
            refine_point(&a, [r, r + 1.0], &a, [r + 1.0, r + 1.0], &opts),
            Err(Reject::OutOfBounds)
        );
        // indices past the keypoints
        let res = refine_matches(
            &a,
            &[[20.0, 15.0]],
            &a,
            &[[20.0, 15.0]],
            &[
                Match {
                    a: 0,
                    b: 3,
                    score: 0.5,
                },
                Match {
                    a: 0,
                    b: 0,
                    score: 0.5,
                },
            ],
            &opts,
        );
        assert_eq!(res.points_b.len(), 2);
        assert_eq!(res.points_b[0], None);
        assert_eq!(res.stats.invalid, 1);
        // identical images, same point: refined in place
        let q = res.points_b[1].expect("identical patches refine");
        assert!(
            (q[0] - 20.0).abs() < 1e-3 && (q[1] - 15.0).abs() < 1e-3,
            "{q:?}"
        );
        assert_eq!(res.stats.refined + res.stats.rejected(), 2);
    }

    #[test]
    fn deterministic() {
        let a = render(120, 90, [0.0, 0.0], 1.0, 0.0, 2.0);
        let b = render(120, 90, [0.3, 0.2], 0.9, 5.0, 2.0);
        let pa = grid_points(120, 90, 7);
        let m = identity_matches(pa.len(), 0.0);
        let o = RefineOptions::default();
        assert_eq!(
            refine_matches(&a, &pa, &b, &pa, &m, &o),
            refine_matches(&a, &pa, &b, &pa, &m, &o)
        );
    }

    #[test]
    fn selection() {
        let a = render(160, 120, [0.0, 0.0], 1.0, 0.0, 2.0);
        let b = render(160, 120, [0.3, 0.2], 0.9, 5.0, 2.0);
        let pa = grid_points(160, 120, 5);
        let m = identity_matches(pa.len(), 0.0);
        let o = RefineOptions::default();
        let all = refine_matches(&a, &pa, &b, &pa, &m, &o);
        let every = vec![true; m.len()];
        let selected_all = refine_selected_matches(&a, &pa, &b, &pa, &m, Some(&every), &o);
        assert_eq!(all, selected_all, "a full selection = all matches");
        // every third selected (a short mask counts as unselected past its end)
        let select: Vec<bool> = (0..pa.len() - 7).map(|i| i % 3 == 0).collect();
        let some = refine_selected_matches(&a, &pa, &b, &pa, &m, Some(&select), &o);
        assert_eq!(some.points_b.len(), m.len());
        let attempted = select.iter().filter(|&&s| s).count();
        assert_eq!(some.stats.refined + some.stats.rejected(), attempted);
        for (i, q) in some.points_b.iter().enumerate() {
            if select.get(i).copied().unwrap_or(false) {
                assert_eq!(*q, all.points_b[i], "match {i}");
            } else {
                assert_eq!(*q, None, "match {i} not selected");
            }
        }
    }

    #[test]
    fn options_are_checked() {
        assert!(RefineOptions::default().check().is_ok());
        let bad = RefineOptions {
            patch_radius: 0,
            ..RefineOptions::default()
        };
        assert_eq!(bad.check().map_err(|e| e.0), Err("patch_radius"));
        let bad = RefineOptions {
            min_zncc: f32::NAN,
            ..RefineOptions::default()
        };
        assert_eq!(bad.check().map_err(|e| e.0), Err("min_zncc"));
    }
}
