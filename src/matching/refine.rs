//! Photometric sub-pixel refinement of putative matches (Lucas–Kanade).
//!
//! For each match (keypoint `a` in image A, keypoint `b` in image B) the position in A is kept fixed and the
//! position in B is moved so that the `(2r+1)²` patch around `b` best agrees with the patch around `a`:
//! inverse-compositional Gauss–Newton on a translation, with the photometric difference (gain and bias)
//! removed exactly at every iteration by normalising the B patch to the template's mean and contrast. Both
//! patches are sampled bilinearly; since a translation keeps the sub-pixel fraction of every sample equal,
//! one set of four bilinear weights serves the whole patch, which keeps a match to a few hundred
//! multiply-adds per iteration (about 1 µs).
//!
//! The result is the position in B that corresponds to the detector's position in A, so a pair of
//! pixel-quantised or jittery detections becomes a sub-pixel correspondence even though the keypoint in A
//! keeps its own detection error. A match is left unrefined (the detector's `b` is used) when its patch leaves
//! either image, when the template is textureless (small minimum eigenvalue of its structure tensor, or a
//! flat B patch), when the iteration moves `b` by more than `max_shift_px`, does not converge, produces a
//! non-finite value, or ends with a zero-normalised cross-correlation below `min_zncc`.
//!
//! What it does not do: search (matches must already be within about a pixel or two; a coarse-to-fine or
//! ZNCC search would be needed otherwise), model the affine or projective deformation of the patch between
//! the views (fine for the small patches and moderate viewpoint changes it is meant for), reject outliers
//! (that is the robust pose estimator's job; a refused refinement keeps the match), or move keypoints in A.
//! It is deterministic and never panics: any input (NaN keypoints, indices past the keypoints, empty or tiny
//! images) only leaves matches unrefined.

use image::GrayImage;

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
            enabled: false,
            model: WarpModel::Translation,
            patch_radius: 5,
            max_iterations: 10,
            convergence_px: 0.01,
            max_shift_px: 1.5,
            min_eigenvalue: 4.0,
            min_zncc: 0.8,
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
    /// Counts.
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
    let mut scratch = Scratch::new(options.patch_radius);
    let mut out = Refinement {
        points_b: Vec::with_capacity(matches.len()),
        stats: RefineStats::default(),
    };
    for m in matches {
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
        for (i, o) in row_out.iter_mut().enumerate() {
            *o = w00 * r0[i] as f32
                + w01 * r0[i + 1] as f32
                + w10 * r1[i] as f32
                + w11 * r1[i + 1] as f32;
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
    // template (inner patch), its mean and its central-difference gradients
    let mut sum = 0.0f32;
    for j in 0..side {
        for i in 0..side {
            let v = sc.ring[(j + 1) * ring_side + i + 1];
            sc.t[j * side + i] = v;
            sum += v;
        }
    }
    let mean_t = sum / n;
    // template gradients; zero-mean template
    let (mut sgx, mut sgy, mut var_t, mut tgx, mut tgy) = (0.0f32, 0.0f32, 0.0f32, 0.0f32, 0.0f32);
    for j in 0..side {
        for i in 0..side {
            let k = j * side + i;
            let c = (j + 1) * ring_side + i + 1;
            let gx = 0.5 * (sc.ring[c + 1] - sc.ring[c - 1]);
            let gy = 0.5 * (sc.ring[c + ring_side] - sc.ring[c - ring_side]);
            let t = sc.t[k] - mean_t;
            sc.gx[k] = gx;
            sc.gy[k] = gy;
            sc.t[k] = t;
            sgx += gx;
            sgy += gy;
            var_t += t * t;
            tgx += t * gx;
            tgy += t * gy;
        }
    }
    if !(var_t.is_finite() && var_t > 1e-6 * n) {
        return Err(Reject::Textureless);
    }
    // Gain and bias are normalised away in every iteration, so a shift can only be seen through the part of
    // the gradient that is not itself a bias (constant) or a gain (multiple of the template) change: project
    // those out ("project-out" inverse compositional), else the Gauss–Newton steps are far too short along
    // such directions and the iteration crawls.
    let (mgx, mgy, cgx, cgy) = (sgx / n, sgy / n, tgx / var_t, tgy / var_t);
    let (mut hxx, mut hxy, mut hyy) = (0.0f32, 0.0f32, 0.0f32);
    for k in 0..sc.t.len() {
        let gx = sc.gx[k] - mgx - cgx * sc.t[k];
        let gy = sc.gy[k] - mgy - cgy * sc.t[k];
        sc.gx[k] = gx;
        sc.gy[k] = gy;
        hxx += gx * gx;
        hxy += gx * gy;
        hyy += gy * gy;
    }
    let half_trace = 0.5 * (hxx + hyy);
    let lambda_min = half_trace - (0.25 * (hxx - hyy) * (hxx - hyy) + hxy * hxy).sqrt();
    let det = hxx * hyy - hxy * hxy;
    if !(lambda_min.is_finite() && lambda_min / n >= o.min_eigenvalue.max(1e-6) && det > 0.0) {
        return Err(Reject::Textureless);
    }
    let std_t = var_t.sqrt();
    if o.model == WarpModel::Affine {
        return iterate_affine(image_b, pb, o, sc, std_t);
    }
    let (ixx, ixy, iyy) = (hyy / det, -hxy / det, hxx / det);

    let (mut dx, mut dy) = (0.0f32, 0.0f32);
    let max_shift2 = o.max_shift_px * o.max_shift_px;
    let eps2 = o.convergence_px * o.convergence_px;
    for _ in 0..o.max_iterations {
        if !sample_grid(image_b, pb[0] + dx, pb[1] + dy, r, &mut sc.s) {
            return Err(Reject::OutOfBounds);
        }
        let mean_s = sc.s.iter().sum::<f32>() / n;
        let (mut var_s, mut cross) = (0.0f32, 0.0f32);
        for (s, t) in sc.s.iter_mut().zip(&sc.t) {
            *s -= mean_s;
            var_s += *s * *s;
            cross += *s * t;
        }
        if !(var_s.is_finite() && var_s > 1e-6 * n) {
            return Err(Reject::Textureless);
        }
        // B patch brought to the template's mean (0) and contrast: gain and bias drop out
        let scale = std_t / var_s.sqrt();
        let (mut bx, mut by) = (0.0f32, 0.0f32);
        for k in 0..sc.s.len() {
            let e = sc.s[k] * scale - sc.t[k];
            bx += sc.gx[k] * e;
            by += sc.gy[k] * e;
        }
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
    Err(Reject::NotConverged)
}

/// Bilinear value at `(x, y)`; the caller guarantees `0 <= x < w - 1`, `0 <= y < h - 1`.
#[inline]
fn bilinear(data: &[u8], w: usize, x: f32, y: f32) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let i = y0 as usize * w + x0 as usize;
    let (p00, p01, p10, p11) = (
        data[i] as f32,
        data[i + 1] as f32,
        data[i + w] as f32,
        data[i + w + 1] as f32,
    );
    let top = p00 + fx * (p01 - p00);
    let bottom = p10 + fx * (p11 - p10);
    top + fy * (bottom - top)
}

/// The affine model: `x_b = b + d + M·u` for template offsets `u`, inverse-compositional Gauss–Newton on
/// the six parameters with the gain/bias directions projected out of the steepest-descent images.
/// `sc.gx`/`sc.gy` hold the template's projected gradients and `sc.t` the zero-mean template.
fn iterate_affine(
    image_b: &GrayImage,
    pb: [f32; 2],
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
    let var_t: f32 = sc.t.iter().map(|t| t * t).sum();
    for c in 0..6 {
        let (mut sum, mut dot) = (0.0f32, 0.0f32);
        for k in 0..np {
            let (u, v) = ((k % side) as f32 - r as f32, (k / side) as f32 - r as f32);
            let g = if c < 3 { sc.gx[k] } else { sc.gy[k] };
            let val = g * [u, v, 1.0][c % 3];
            sc.sd[c * np + k] = val;
            sum += val;
            dot += val * sc.t[k];
        }
        let (mean, proj) = (sum / n, dot / var_t);
        for k in 0..np {
            sc.sd[c * np + k] -= mean + proj * sc.t[k];
        }
    }
    let mut h = Matrix6::<f64>::zeros();
    for a in 0..6 {
        for b in a..6 {
            let v: f32 = (0..np).map(|k| sc.sd[a * np + k] * sc.sd[b * np + k]).sum();
            h[(a, b)] = v as f64;
            h[(b, a)] = v as f64;
        }
    }
    let Some(chol) = h.cholesky() else {
        return Err(Reject::Textureless);
    };
    let (w, hgt) = (image_b.width() as f32, image_b.height() as f32);
    let data = image_b.as_raw();
    let wu = image_b.width() as usize;
    // current warp: x_b = pb + d + M·u
    let mut warp = Matrix3::<f64>::identity();
    let max_shift2 = (o.max_shift_px * o.max_shift_px) as f64;
    let rf = r as f64;
    for _ in 0..o.max_iterations {
        let (m00, m01, m10, m11) = (
            warp[(0, 0)] as f32,
            warp[(0, 1)] as f32,
            warp[(1, 0)] as f32,
            warp[(1, 1)] as f32,
        );
        let (cx, cy) = (pb[0] + warp[(0, 2)] as f32, pb[1] + warp[(1, 2)] as f32);
        // all samples lie in the parallelogram spanned by the patch corners
        let (ex, ey) = (
            r as f32 * (m00.abs() + m01.abs()),
            r as f32 * (m10.abs() + m11.abs()),
        );
        if !(cx - ex >= 0.0 && cy - ey >= 0.0 && cx + ex < w - 1.0 && cy + ey < hgt - 1.0) {
            return Err(Reject::OutOfBounds);
        }
        for k in 0..np {
            let (u, v) = ((k % side) as f32 - r as f32, (k / side) as f32 - r as f32);
            sc.s[k] = bilinear(data, wu, cx + m00 * u + m01 * v, cy + m10 * u + m11 * v);
        }
        let mean_s = sc.s.iter().sum::<f32>() / n;
        let (mut var_s, mut cross) = (0.0f32, 0.0f32);
        for (s, t) in sc.s.iter_mut().zip(&sc.t) {
            *s -= mean_s;
            var_s += *s * *s;
            cross += *s * t;
        }
        if !(var_s.is_finite() && var_s > 1e-6 * n) {
            return Err(Reject::Textureless);
        }
        let scale = std_t / var_s.sqrt();
        let mut g = Vector6::<f64>::zeros();
        for c in 0..6 {
            let sd = &sc.sd[c * np..(c + 1) * np];
            let v: f32 = sd
                .iter()
                .zip(sc.s.iter().zip(&sc.t))
                .map(|(j, (s, t))| j * (s * scale - t))
                .sum();
            g[c] = v as f64;
        }
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
        // largest move of a patch point by this increment
        let step = dp[2].abs().max(dp[5].abs())
            + rf * dp[0]
                .abs()
                .max(dp[1].abs())
                .max(dp[3].abs())
                .max(dp[4].abs());
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
        let matches: Vec<Match> = (0..pa.len() as u32)
            .map(|i| Match {
                a: i,
                b: i,
                score: 1.0,
            })
            .collect();
        let opts = RefineOptions {
            enabled: true,
            ..RefineOptions::default()
        };
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
        assert!(worst < 0.05, "worst refined error {worst} px");
        assert!(sum_before / res.stats.refined as f64 > 0.2);
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
        let opts = RefineOptions::default();
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
        assert!(after < 0.1 && after < 0.2 * before, "{before} → {after}");
    }

    #[test]
    fn textureless_patch_is_rejected() {
        let flat = GrayImage::from_pixel(64, 64, image::Luma([90]));
        let opts = RefineOptions::default();
        assert_eq!(
            refine_point(&flat, [32.0, 32.0], &flat, [32.3, 31.8], &opts),
            Err(Reject::Textureless)
        );
        // a straight edge: texture in one direction only (aperture problem)
        let edge = GrayImage::from_fn(64, 64, |x, _| image::Luma([if x < 32 { 40 } else { 200 }]));
        assert_eq!(
            refine_point(&edge, [31.5, 30.0], &edge, [31.5, 30.5], &opts),
            Err(Reject::Textureless)
        );
    }

    #[test]
    fn wrong_match_is_not_refined() {
        let a = render(160, 120, [0.0, 0.0], 1.0, 0.0, 0.0);
        // B shows a different texture: no alignment exists within reach
        let b = GrayImage::from_fn(160, 120, |x, y| {
            image::Luma([texture(x as f64, y as f64, 99).clamp(0.0, 255.0) as u8])
        });
        let opts = RefineOptions::default();
        let mut refined = 0;
        for p in grid_points(160, 120, 9) {
            if refine_point(&a, p, &b, p, &opts).is_ok() {
                refined += 1;
            }
        }
        assert!(refined <= 2, "{refined} unrelated patches accepted");
    }

    #[test]
    fn borders_bad_input_and_tiny_images_never_panic() {
        let a = render(40, 30, [0.0, 0.0], 1.0, 0.0, 0.0);
        let tiny = GrayImage::new(1, 1);
        let empty = GrayImage::new(0, 0);
        let opts = RefineOptions::default();
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
        let m: Vec<Match> = (0..pa.len() as u32)
            .map(|i| Match {
                a: i,
                b: i,
                score: 0.0,
            })
            .collect();
        let o = RefineOptions::default();
        assert_eq!(
            refine_matches(&a, &pa, &b, &pa, &m, &o),
            refine_matches(&a, &pa, &b, &pa, &m, &o)
        );
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
