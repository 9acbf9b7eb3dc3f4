//! Tests of the match refinement on synthetic images: sub-pixel shifts under gain and bias, rotation and
//! scale (affine model), noise, textureless and wrong matches, borders and bad input, determinism, selection
//! and option checks. Real photos are in `tests/integration/refine_photos.rs`.

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
        let edge = GrayImage::from_fn(64, 64, |x, _| image::Luma([if x < 32 { 40 } else { 200 }]));
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
