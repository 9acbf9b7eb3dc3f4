//! Pictures of results for people: two images side by side with their correspondences drawn, inliers green
//! and outliers red, and a legend with the counts. Used by `matcha match --out`.
//!
//! A picture of a thousand lines is a solid band, so at most `max_lines` inliers are drawn, chosen evenly
//! over image a (a grid of cells taken in turn), and a quarter as many outliers; lines are thin and
//! half-transparent. Drawing only; it computes nothing about the matches.

use ::image::{imageops, Rgb, RgbImage};
use imageproc::drawing::draw_hollow_circle_mut;

use crate::features::Features;
use crate::matching::Matches;

const INLIER: Rgb<u8> = Rgb([40, 220, 60]);
const OUTLIER: Rgb<u8> = Rgb([230, 40, 40]);
const KEYPOINT: Rgb<u8> = Rgb([80, 160, 255]);
const TEXT: Rgb<u8> = Rgb([255, 255, 255]);
/// Opacity of the correspondence lines.
const LINE_ALPHA: f32 = 0.65;
/// Cells of the grid over image a that spreads the drawn matches.
const GRID: (u32, u32) = (16, 12);

/// Draws `a` and `b` side by side (b to the right), keypoints as small circles and matches as lines: green
/// where `inliers[i]` is true, red otherwise (all red when `inliers` is `None`). At most `max_lines`
/// inliers (0 = all) spread over image a, and a quarter as many outliers; the legend says how many of each
/// there are and how many are drawn.
pub fn draw_matches(
    image_a: &RgbImage,
    features_a: &Features,
    image_b: &RgbImage,
    features_b: &Features,
    matches: &Matches,
    inliers: Option<&[bool]>,
    max_lines: usize,
) -> RgbImage {
    let (wa, ha) = image_a.dimensions();
    let (wb, hb) = image_b.dimensions();
    let mut canvas = RgbImage::from_pixel(wa + wb, ha.max(hb), Rgb([0, 0, 0]));
    imageops::replace(&mut canvas, image_a, 0, 0);
    imageops::replace(&mut canvas, image_b, wa as i64, 0);
    for k in &features_a.keypoints {
        draw_hollow_circle_mut(&mut canvas, (k[0] as i32, k[1] as i32), 1, KEYPOINT);
    }
    for k in &features_b.keypoints {
        draw_hollow_circle_mut(
            &mut canvas,
            (k[0] as i32 + wa as i32, k[1] as i32),
            1,
            KEYPOINT,
        );
    }
    let valid = |i: usize| {
        let m = &matches.matches[i];
        match (
            features_a.keypoints.get(m.a as usize),
            features_b.keypoints.get(m.b as usize),
        ) {
            (Some(a), Some(b)) => Some((*a, *b)),
            _ => None,
        }
    };
    let is_inlier = |i: usize| inliers.and_then(|f| f.get(i).copied()).unwrap_or(false);
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for i in 0..matches.matches.len() {
        if let Some((a, _)) = valid(i) {
            if is_inlier(i) { &mut good } else { &mut bad }.push((i, a));
        }
    }
    let max_bad = if max_lines == 0 {
        0
    } else {
        max_lines.div_ceil(4)
    };
    let shown_good = spread(&good, max_lines, (wa, ha));
    let shown_bad = spread(&bad, max_bad, (wa, ha));
    // outliers first so inliers are drawn on top
    for (list, color) in [(&shown_bad, OUTLIER), (&shown_good, INLIER)] {
        for &i in list {
            if let Some((ka, kb)) = valid(i) {
                blend_line(
                    &mut canvas,
                    (ka[0], ka[1]),
                    (kb[0] + wa as f32, kb[1]),
                    color,
                );
                draw_hollow_circle_mut(&mut canvas, (ka[0] as i32, ka[1] as i32), 2, color);
                draw_hollow_circle_mut(
                    &mut canvas,
                    ((kb[0] + wa as f32) as i32, kb[1] as i32),
                    2,
                    color,
                );
            }
        }
    }
    let legend = [
        (
            format!("inliers {} (drawn {})", good.len(), shown_good.len()),
            INLIER,
        ),
        (
            format!("outliers {} (drawn {})", bad.len(), shown_bad.len()),
            OUTLIER,
        ),
        (
            format!(
                "keypoints {} / {}",
                features_a.keypoints.len(),
                features_b.keypoints.len()
            ),
            KEYPOINT,
        ),
    ];
    if canvas.width() >= 400 && canvas.height() >= 80 {
        draw_legend(&mut canvas, &legend);
    }
    canvas
}

/// At most `max` (0 = all) of `items` (index, position in image a), evenly over the image: the items are
/// put in grid cells and the cells are taken in turn, one item each round (deterministic).
fn spread(items: &[(usize, [f32; 2])], max: usize, (w, h): (u32, u32)) -> Vec<usize> {
    if max == 0 || items.len() <= max {
        return items.iter().map(|(i, _)| *i).collect();
    }
    let cell = |p: [f32; 2]| {
        let cx = ((p[0].max(0.0) / w.max(1) as f32) * GRID.0 as f32) as u32;
        let cy = ((p[1].max(0.0) / h.max(1) as f32) * GRID.1 as f32) as u32;
        (cy.min(GRID.1 - 1) * GRID.0 + cx.min(GRID.0 - 1)) as usize
    };
    let mut cells = vec![Vec::new(); (GRID.0 * GRID.1) as usize];
    for (i, p) in items {
        cells[cell(*p)].push(*i);
    }
    let mut out = Vec::with_capacity(max);
    let mut round = 0;
    while out.len() < max {
        let mut any = false;
        for c in &cells {
            if round < c.len() && out.len() < max {
                out.push(c[round]);
                any = true;
            }
        }
        if !any {
            break;
        }
        round += 1;
    }
    out.sort_unstable();
    out
}

/// A one-pixel line blended over the canvas at [`LINE_ALPHA`].
fn blend_line(canvas: &mut RgbImage, a: (f32, f32), b: (f32, f32), color: Rgb<u8>) {
    let (w, h) = canvas.dimensions();
    let steps = (b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil().max(1.0) as usize;
    for s in 0..=steps {
        let t = s as f32 / steps as f32;
        let (x, y) = (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
        let (xi, yi) = (x.round(), y.round());
        if xi < 0.0 || yi < 0.0 || xi >= w as f32 || yi >= h as f32 {
            continue;
        }
        let p = canvas.get_pixel_mut(xi as u32, yi as u32);
        for c in 0..3 {
            p.0[c] =
                (p.0[c] as f32 * (1.0 - LINE_ALPHA) + color.0[c] as f32 * LINE_ALPHA).round() as u8;
        }
    }
}

/// Text lines (8×8 bitmap font, twice the size) on a dark box in the top-left corner, each after a swatch
/// of its colour.
fn draw_legend(canvas: &mut RgbImage, lines: &[(String, Rgb<u8>)]) {
    const SCALE: u32 = 2;
    const PAD: u32 = 6;
    let line_h = 8 * SCALE + 4;
    let text_w = lines.iter().map(|(t, _)| t.len() as u32).max().unwrap_or(0) * 8 * SCALE;
    let (bw, bh) = (PAD * 3 + 12 + text_w, PAD * 2 + line_h * lines.len() as u32);
    let (w, h) = canvas.dimensions();
    for y in 0..bh.min(h) {
        for x in 0..bw.min(w) {
            let p = canvas.get_pixel_mut(x, y);
            for c in 0..3 {
                p.0[c] = (p.0[c] as f32 * 0.35) as u8;
            }
        }
    }
    for (k, (text, color)) in lines.iter().enumerate() {
        let y0 = PAD + k as u32 * line_h;
        for y in y0 + 2..y0 + 2 + 12 {
            for x in PAD..PAD + 12 {
                if x < w && y < h {
                    canvas.put_pixel(x, y, *color);
                }
            }
        }
        let x0 = PAD * 2 + 12;
        for (j, ch) in text.chars().enumerate() {
            let glyph = font8x8::legacy::BASIC_LEGACY
                .get(ch as usize)
                .copied()
                .unwrap_or([0; 8]);
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8u32 {
                    if bits >> col & 1 == 0 {
                        continue;
                    }
                    for dy in 0..SCALE {
                        for dx in 0..SCALE {
                            let x = x0 + (j as u32 * 8 + col) * SCALE + dx;
                            let y = y0 + row as u32 * SCALE + dy;
                            if x < w && y < h {
                                canvas.put_pixel(x, y, TEXT);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matching::Match;

    #[test]
    fn draws_inliers_green_and_outliers_red() {
        let a = RgbImage::new(20, 10);
        let b = RgbImage::new(20, 12);
        let mut fa = Features::empty(2, [20, 10]);
        fa.keypoints = vec![[2.0, 2.0], [2.0, 8.0]];
        let mut fb = Features::empty(2, [20, 12]);
        fb.keypoints = vec![[2.0, 2.0], [2.0, 8.0]];
        let m = Matches {
            matches: vec![
                Match {
                    a: 0,
                    b: 0,
                    score: 1.0,
                },
                Match {
                    a: 1,
                    b: 1,
                    score: 1.0,
                },
            ],
        };
        let out = draw_matches(&a, &fa, &b, &fb, &m, Some(&[true, false]), 100);
        assert_eq!(out.dimensions(), (40, 12));
        // half-transparent over black: the line colour scaled by its opacity
        let seen = |c: Rgb<u8>| Rgb(c.0.map(|v| (v as f32 * LINE_ALPHA).round() as u8));
        assert_eq!(*out.get_pixel(11, 2), seen(INLIER));
        assert_eq!(*out.get_pixel(11, 8), seen(OUTLIER));
    }

    #[test]
    fn at_most_max_lines_spread_over_the_image() {
        // 1000 matches, all in the left half except 10 in the right half: the right half still gets drawn
        let items: Vec<(usize, [f32; 2])> = (0..1000)
            .map(|i| {
                let x = if i < 990 {
                    (i % 300) as f32
                } else {
                    500.0 + i as f32 % 100.0
                };
                (i, [x, (i % 400) as f32])
            })
            .collect();
        let shown = spread(&items, 100, (640, 480));
        assert_eq!(shown.len(), 100);
        // the ten in the right half share one grid cell, which gets its turn each round like the others
        // (an even stride over the list would draw one of them)
        assert!(
            shown.iter().filter(|&&i| i >= 990).count() >= 2,
            "{shown:?}"
        );
        assert_eq!(spread(&items, 0, (640, 480)).len(), 1000);
        assert_eq!(spread(&items[..50], 100, (640, 480)).len(), 50);
    }
}
