//! Semantic correspondences: for points of image A, the most similar place of image B's dense descriptor map
//! (MATCHA's semantic F_m), with a cycle check — the found place's own best match in A must come back within
//! a cell of the point. This is how the paper (and DIFT before it) scores semantic matching: instances of
//! one category (two cats, two chairs) share no geometry, so there is no pose to verify against and the
//! answer per point is an arg-max over the other image.
//!
//! Not here: the engines (`features::matcha`), geometric matching (`mnn`, `lightglue`).

use crate::features::{DenseDescriptors, Features};
use crate::matching::{Match, Matches};

/// One semantic correspondence.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SemanticMatch {
    /// The point in A (pixels).
    pub a: [f32; 2],
    /// Its most similar place in B (pixels, sub-cell).
    pub b: [f32; 2],
    /// Cosine similarity of the two.
    pub similarity: f32,
    /// Whether B's place leads back to within a cell of `a` (cycle-consistent).
    pub mutual: bool,
}

/// For each point of A, its semantic correspondence in B (`None` where the point lies outside A's map).
pub fn semantic_matches(
    a: &DenseDescriptors,
    b: &DenseDescriptors,
    points_a: &[[f32; 2]],
) -> Vec<Option<SemanticMatch>> {
    let cell = a.pixels_per_cell();
    let cell = cell[0].max(cell[1]) as f32;
    points_a
        .iter()
        .map(|&p| {
            let d = a.sample(p)?;
            let fwd = b.search(&d, [0.0, 0.0], f32::INFINITY)?;
            let mutual = b
                .sample(fwd.pixel)
                .and_then(|back| a.search(&back, [0.0, 0.0], f32::INFINITY))
                .is_some_and(|k| (k.pixel[0] - p[0]).hypot(k.pixel[1] - p[1]) <= cell);
            Some(SemanticMatch {
                a: p,
                b: fwd.pixel,
                similarity: fwd.similarity,
                mutual,
            })
        })
        .collect()
}

/// Semantic correspondences as a pair of feature sets (the points of A and their places in B, in order) and
/// the matches between them (`i ↔ i`, scored by similarity), for the code that draws or publishes matches;
/// `size_a`, `size_b`: the images' sizes.
pub fn as_pair(
    found: &[SemanticMatch],
    size_a: [u32; 2],
    size_b: [u32; 2],
) -> (Features, Features, Matches) {
    let mut fa = Features::empty(0, size_a);
    let mut fb = Features::empty(0, size_b);
    let mut matches = Matches::default();
    for (i, m) in found.iter().enumerate() {
        fa.keypoints.push(m.a);
        fb.keypoints.push(m.b);
        matches.matches.push(Match {
            a: i as u32,
            b: i as u32,
            score: m.similarity,
        });
    }
    (fa, fb, matches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    /// A map whose cells hold a smooth function of position, shifted by `shift` cells.
    fn map(shift: usize) -> DenseDescriptors {
        let (w, h, dim) = (12usize, 9usize, 16usize);
        let mut m = Array3::<f32>::zeros((dim, h, w));
        for y in 0..h {
            for x in 0..w {
                let (sx, sy) = ((x + 20 - shift) as f32, y as f32);
                for k in 0..dim {
                    m[[k, y, x]] =
                        ((k as f32 + 1.0) * 0.37 * sx + (k as f32 * 0.61 + 0.3) * sy).sin();
                }
            }
        }
        let (s, o) = DenseDescriptors::grid_sample_mapping([96, 72], [96, 72], [w, h], false);
        DenseDescriptors::from_chw(m.view(), [96, 72], s, o)
    }

    #[test]
    fn finds_the_shifted_place_and_checks_the_cycle() {
        let a = map(0);
        let b = map(2); // content moved right by two cells (16 px)
        let p = a.cell_pixel(4, 5);
        let m = semantic_matches(&a, &b, &[p, [-50.0, 3.0]]);
        let first = m[0].expect("inside");
        let want = b.cell_pixel(6, 5);
        assert!(
            (first.b[0] - want[0]).abs() < 2.0 && (first.b[1] - want[1]).abs() < 2.0,
            "{first:?}"
        );
        assert!(first.mutual && first.similarity > 0.99);
        assert!(m[1].is_none());
    }
}
