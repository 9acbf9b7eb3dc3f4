//! The photometric pieces of point tracking: image pyramids, pyramidal Lucas–Kanade on top of the match
//! refinement's Gauss–Newton ([`crate::matching::refine::refine_point`]), zero-normalised cross-correlation
//! of two patches, and small image crops that keep a point's appearance without keeping its frame.
//!
//! Why on top of `refine_point`: it already aligns a patch with gain and bias projected out, translation or
//! affine, refuses textureless or diverging patches and never panics; tracking adds the coarse-to-fine
//! pyramid (motions of tens of pixels between frames) and a template that lives in a crop.
//!
//! Not here: the descriptor search, visibility decisions (`tracker.rs`).

use image::GrayImage;

use crate::matching::refine::{refine_point, RefineOptions, WarpModel};

/// A Gaussian-free image pyramid: level 0 is the frame, each next level the 2×2 mean of the one before.
/// Pixel `i` of level `l` is centred at level-0 coordinate `(i + 0.5)·2^l − 0.5`.
#[derive(Debug, Clone)]
pub struct Pyramid {
    levels: Vec<GrayImage>,
}

impl Pyramid {
    /// Builds up to `levels` levels (at least one; a level is added only while both sides stay ≥ 16 px).
    pub fn new(frame: GrayImage, levels: u32) -> Self {
        let mut out = vec![frame];
        while out.len() < levels.max(1) as usize {
            let last = out.last().expect("at least one level");
            let (w, h) = (last.width() / 2, last.height() / 2);
            if w < 16 || h < 16 {
                break;
            }
            let next = GrayImage::from_fn(w, h, |x, y| {
                let s = [(0, 0), (1, 0), (0, 1), (1, 1)]
                    .iter()
                    .map(|&(dx, dy)| last.get_pixel(2 * x + dx, 2 * y + dy).0[0] as u32)
                    .sum::<u32>();
                image::Luma([((s + 2) / 4) as u8])
            });
            out.push(next);
        }
        Self { levels: out }
    }

    /// The full-resolution frame.
    pub fn base(&self) -> &GrayImage {
        &self.levels[0]
    }

    /// Number of levels.
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    /// Never true (a pyramid has its base).
    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }
}

/// Lucas–Kanade settings of one alignment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LkSettings {
    /// Patch half-size.
    pub patch_radius: u32,
    /// Most pixels one pyramid level may move the estimate (in that level's pixels).
    pub max_shift_per_level: f32,
    /// Warp model at level 0 (coarser levels use translation).
    pub model: WarpModel,
    /// Zero-normalised cross-correlation the level-0 alignment must reach.
    pub min_zncc: f32,
}

fn level_options(s: &LkSettings, level: usize) -> RefineOptions {
    RefineOptions {
        enabled: true,
        model: if level == 0 {
            s.model
        } else {
            WarpModel::Translation
        },
        patch_radius: s.patch_radius,
        max_iterations: if level == 0 { 20 } else { 30 },
        convergence_px: if level == 0 { 0.01 } else { 0.05 },
        max_shift_px: s.max_shift_per_level,
        min_eigenvalue: 1.0,
        min_zncc: if level == 0 { s.min_zncc } else { -1.0 },
        max_matches: 0,
    }
}

fn to_level(p: [f32; 2], level: usize) -> [f32; 2] {
    let f = (1u32 << level) as f32;
    [(p[0] + 0.5) / f - 0.5, (p[1] + 0.5) / f - 0.5]
}

fn from_level(p: [f32; 2], level: usize) -> [f32; 2] {
    let f = (1u32 << level) as f32;
    [(p[0] + 0.5) * f - 0.5, (p[1] + 0.5) * f - 0.5]
}

/// Where `pa` of pyramid `a` lies in pyramid `b`, searched coarse to fine from `start` over at most
/// `max_levels` levels. A coarse level that fails keeps the estimate; `None` when level 0 fails (out of
/// bounds, textureless, diverged, not converged or below `min_zncc`).
pub fn pyramidal_lk(
    a: &Pyramid,
    pa: [f32; 2],
    b: &Pyramid,
    start: [f32; 2],
    max_levels: usize,
    settings: &LkSettings,
) -> Option<[f32; 2]> {
    let levels = a.len().min(b.len()).min(max_levels.max(1));
    let mut guess = start;
    for level in (0..levels).rev() {
        let options = level_options(settings, level);
        let r = refine_point(
            &a.levels[level],
            to_level(pa, level),
            &b.levels[level],
            to_level(guess, level),
            &options,
        );
        match r {
            Ok(q) => guess = from_level(q, level),
            Err(_) if level > 0 => {}
            Err(e) => {
                log::trace!("track: level 0 from {guess:?}: {e:?}");
                return None;
            }
        }
    }
    Some(guess)
}

/// A square crop of a frame around a point: a template that outlives its frame.
#[derive(Debug, Clone)]
pub struct Crop {
    image: GrayImage,
    /// The point's position inside the crop.
    centre: [f32; 2],
}

impl Crop {
    /// The `(2·radius + 1)²` crop of `frame` around the pixel nearest `p` (`None` when it leaves the frame or
    /// `p` is not finite).
    pub fn new(frame: &GrayImage, p: [f32; 2], radius: u32) -> Option<Self> {
        if !(p[0].is_finite() && p[1].is_finite()) {
            return None;
        }
        let (cx, cy) = (p[0].round(), p[1].round());
        let r = radius as f32;
        if cx - r < 0.0
            || cy - r < 0.0
            || cx + r > frame.width() as f32 - 1.0
            || cy + r > frame.height() as f32 - 1.0
        {
            return None;
        }
        let (x0, y0) = ((cx - r) as u32, (cy - r) as u32);
        let side = 2 * radius + 1;
        let image = image::imageops::crop_imm(frame, x0, y0, side, side).to_image();
        Some(Self {
            image,
            centre: [p[0] - x0 as f32, p[1] - y0 as f32],
        })
    }

    /// Where the crop's point lies in `frame`, aligned from `start` at level 0 only (the template has no
    /// pyramid): `None` when the alignment fails.
    pub fn align(
        &self,
        frame: &GrayImage,
        start: [f32; 2],
        settings: &LkSettings,
    ) -> Option<[f32; 2]> {
        refine_point(
            &self.image,
            self.centre,
            frame,
            start,
            &level_options(settings, 0),
        )
        .ok()
    }

    /// ZNCC of the crop's patch with the patch of `frame` at `p` (translation only).
    pub fn zncc(&self, frame: &GrayImage, p: [f32; 2], radius: u32) -> Option<f32> {
        zncc(&self.image, self.centre, frame, p, radius)
    }
}

/// Bilinear sample of an 8-bit image (`None` outside the pixel centres' span).
fn sample(img: &GrayImage, x: f32, y: f32) -> Option<f32> {
    let (w, h) = (img.width() as f32, img.height() as f32);
    if !(x >= 0.0 && y >= 0.0 && x <= w - 1.0 && y <= h - 1.0) {
        return None;
    }
    let (x0, y0) = (x.floor() as u32, y.floor() as u32);
    let (x1, y1) = (
        (x0 + 1).min(img.width() - 1),
        (y0 + 1).min(img.height() - 1),
    );
    let (tx, ty) = (x - x0 as f32, y - y0 as f32);
    let g = |x, y| img.get_pixel(x, y).0[0] as f32;
    Some(
        (1.0 - ty) * ((1.0 - tx) * g(x0, y0) + tx * g(x1, y0))
            + ty * ((1.0 - tx) * g(x0, y1) + tx * g(x1, y1)),
    )
}

/// Standard deviation of the gray levels of the `(2r+1)²` patch at `p` (bilinear); `None` when it leaves the
/// image.
pub fn patch_std(img: &GrayImage, p: [f32; 2], radius: u32) -> Option<f32> {
    let r = radius as i32;
    let n = ((2 * r + 1) * (2 * r + 1)) as f32;
    let (mut s, mut ss) = (0f32, 0f32);
    for dy in -r..=r {
        for dx in -r..=r {
            let v = sample(img, p[0] + dx as f32, p[1] + dy as f32)?;
            s += v;
            ss += v * v;
        }
    }
    Some(((ss - s * s / n) / n).max(0.0).sqrt())
}

/// Zero-normalised cross-correlation of the `(2r+1)²` patches at `pa` in `a` and `pb` in `b` (bilinear);
/// `None` when a patch leaves its image or is flat.
pub fn zncc(a: &GrayImage, pa: [f32; 2], b: &GrayImage, pb: [f32; 2], radius: u32) -> Option<f32> {
    let r = radius as i32;
    let n = ((2 * r + 1) * (2 * r + 1)) as f32;
    let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0f32, 0f32, 0f32, 0f32, 0f32);
    for dy in -r..=r {
        for dx in -r..=r {
            let va = sample(a, pa[0] + dx as f32, pa[1] + dy as f32)?;
            let vb = sample(b, pb[0] + dx as f32, pb[1] + dy as f32)?;
            sa += va;
            sb += vb;
            saa += va * va;
            sbb += vb * vb;
            sab += va * vb;
        }
    }
    let va = saa - sa * sa / n;
    let vb = sbb - sb * sb / n;
    if va <= 1e-3 * n || vb <= 1e-3 * n {
        return None;
    }
    Some((sab - sa * sb / n) / (va * vb).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth random-ish texture shifted by `(sx, sy)` pixels.
    fn texture(w: u32, h: u32, sx: f32, sy: f32) -> GrayImage {
        GrayImage::from_fn(w, h, |x, y| {
            let (x, y) = (x as f32 - sx, y as f32 - sy);
            let v = 128.0
                + 50.0 * (0.21 * x + 0.05 * y).sin()
                + 40.0 * (0.13 * y - 0.07 * x).cos()
                + 25.0 * (0.37 * x * 0.5 + 0.29 * y).sin();
            image::Luma([v.clamp(0.0, 255.0) as u8])
        })
    }

    const LK: LkSettings = LkSettings {
        patch_radius: 7,
        max_shift_per_level: 4.0,
        model: WarpModel::Translation,
        min_zncc: 0.8,
    };

    #[test]
    fn pyramid_finds_a_large_shift() {
        let a = Pyramid::new(texture(320, 240, 0.0, 0.0), 4);
        let b = Pyramid::new(texture(320, 240, 17.3, -9.6), 4);
        assert_eq!(a.len(), 4);
        let p = [150.0, 120.0];
        let q = pyramidal_lk(&a, p, &b, p, 4, &LK).expect("tracked");
        assert!(
            (q[0] - 167.3).abs() < 0.3 && (q[1] - 110.4).abs() < 0.3,
            "{q:?}"
        );
        // one level cannot move that far
        let a1 = Pyramid::new(texture(320, 240, 0.0, 0.0), 1);
        let b1 = Pyramid::new(texture(320, 240, 17.3, -9.6), 1);
        let far = pyramidal_lk(&a1, p, &b1, p, 4, &LK);
        assert!(far.is_none_or(|q| (q[0] - 167.3).abs() > 1.0));
    }

    #[test]
    fn crop_keeps_the_template() {
        let a = texture(200, 150, 0.0, 0.0);
        let b = texture(200, 150, 2.4, 1.1);
        let crop = Crop::new(&a, [100.2, 70.7], 12).unwrap();
        let q = crop.align(&b, [101.0, 71.0], &LK).unwrap();
        assert!(
            (q[0] - 102.6).abs() < 0.1 && (q[1] - 71.8).abs() < 0.1,
            "{q:?}"
        );
        assert!(crop.zncc(&b, q, 7).unwrap() > 0.99);
        assert!(Crop::new(&a, [3.0, 70.0], 12).is_none());
        assert!(Crop::new(&a, [f32::NAN, 70.0], 12).is_none());
    }

    #[test]
    fn zncc_is_gain_and_bias_invariant() {
        let a = texture(100, 100, 0.0, 0.0);
        let b = GrayImage::from_fn(100, 100, |x, y| {
            image::Luma([(0.5 * a.get_pixel(x, y).0[0] as f32 + 40.0) as u8])
        });
        let z = zncc(&a, [50.0, 50.0], &b, [50.0, 50.0], 7).unwrap();
        assert!(z > 0.99, "{z}");
        let off = zncc(&a, [50.0, 50.0], &b, [60.0, 43.0], 7).unwrap();
        assert!(off < 0.8, "{off}");
        let flat = GrayImage::from_pixel(100, 100, image::Luma([9]));
        assert!(zncc(&a, [50.0, 50.0], &flat, [50.0, 50.0], 7).is_none());
        assert_eq!(patch_std(&flat, [50.0, 50.0], 7), Some(0.0));
        assert!(patch_std(&a, [50.0, 50.0], 7).unwrap() > 10.0);
        assert!(patch_std(&a, [1.0, 50.0], 7).is_none());
        assert!(zncc(&a, [2.0, 50.0], &b, [50.0, 50.0], 7).is_none());
    }
}
