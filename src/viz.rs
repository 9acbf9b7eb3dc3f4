//! Pictures of results for people: two images side by side with their correspondences drawn, inliers green
//! and outliers red. Used by `matcha match --out` and the node's debug image.
//!
//! Drawing only; it computes nothing about the matches.

use ::image::{imageops, Rgb, RgbImage};
use imageproc::drawing::{draw_hollow_circle_mut, draw_line_segment_mut};

use crate::features::Features;
use crate::matching::Matches;

const INLIER: Rgb<u8> = Rgb([40, 220, 60]);
const OUTLIER: Rgb<u8> = Rgb([230, 40, 40]);
const KEYPOINT: Rgb<u8> = Rgb([80, 160, 255]);

/// Draws `a` and `b` side by side (b to the right), keypoints as small circles and matches as lines: green
/// where `inliers[i]` is true, red otherwise (all red when `inliers` is `None`). At most `max_lines` matches
/// are drawn (evenly subsampled) to keep the picture readable.
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
        draw_hollow_circle_mut(&mut canvas, (k[0] as i32, k[1] as i32), 2, KEYPOINT);
    }
    for k in &features_b.keypoints {
        draw_hollow_circle_mut(
            &mut canvas,
            (k[0] as i32 + wa as i32, k[1] as i32),
            2,
            KEYPOINT,
        );
    }
    let n = matches.matches.len();
    let step = if max_lines == 0 {
        usize::MAX
    } else {
        n.div_ceil(max_lines).max(1)
    };
    // Outliers first so inliers are drawn on top.
    for pass_inliers in [false, true] {
        for (i, m) in matches.matches.iter().enumerate().step_by(step) {
            let is_inlier = inliers.and_then(|f| f.get(i).copied()).unwrap_or(false);
            if is_inlier != pass_inliers {
                continue;
            }
            let (Some(ka), Some(kb)) = (
                features_a.keypoints.get(m.a as usize),
                features_b.keypoints.get(m.b as usize),
            ) else {
                continue;
            };
            let color = if is_inlier { INLIER } else { OUTLIER };
            draw_line_segment_mut(
                &mut canvas,
                (ka[0], ka[1]),
                (kb[0] + wa as f32, kb[1]),
                color,
            );
        }
    }
    canvas
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
        assert_eq!(*out.get_pixel(11, 2), INLIER);
        assert_eq!(*out.get_pixel(11, 8), OUTLIER);
    }
}
