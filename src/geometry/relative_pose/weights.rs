//! The weight of a less precise group of correspondences relative to a more precise one (the pipeline's
//! unrefined matches against its photometrically refined ones), from their Sampson residuals under a pose:
//! the ratio of their median squared residuals, a relative inverse variance for
//! [`super::refine_relative_pose_weighted`].

use crate::geometry::essential::{essential_from_pose, sampson_sq, PixelWeights};
use crate::geometry::{PinholeCamera, RelativePose};

/// Fewest inliers of each kind (refined, unrefined) for [`unrefined_weight`] to estimate their variances.
pub const MIN_GROUP_INLIERS: usize = 20;

/// Weight of an unrefined match relative to a refined one: the ratio of the median squared Sampson
/// residuals (refined / unrefined) of `pose`'s inliers, clamped to [0.01, 1]. `None` when a group has
/// fewer than [`MIN_GROUP_INLIERS`] inliers or the ratio is not below 1 (then equal weights stay).
pub fn unrefined_weight(
    pose: &RelativePose,
    points_a: &[[f64; 2]],
    points_b: &[[f64; 2]],
    is_refined: &[bool],
    camera_a: &PinholeCamera,
    camera_b: &PinholeCamera,
) -> Option<f64> {
    // a panoramic pose has no epipolar geometry to measure the two kinds' residuals against
    let e = essential_from_pose(&pose.rotation, pose.translation.as_ref()?);
    let e: [f64; 9] = std::array::from_fn(|i| e[(i / 3, i % 3)]);
    let w = PixelWeights::new(camera_a.fx, camera_a.fy, camera_b.fx, camera_b.fy);
    let (mut refined, mut unrefined) = (Vec::new(), Vec::new());
    for (((pa, pb), &inlier), &r) in points_a
        .iter()
        .zip(points_b)
        .zip(&pose.inliers)
        .zip(is_refined)
    {
        if !inlier {
            continue;
        }
        let (Ok(na), Ok(nb)) = (camera_a.try_normalize(*pa), camera_b.try_normalize(*pb)) else {
            continue;
        };
        let s2 = sampson_sq(&e, &w, na[0], na[1], nb[0], nb[1]);
        if s2.is_finite() {
            if r { &mut refined } else { &mut unrefined }.push(s2);
        }
    }
    if refined.len() < MIN_GROUP_INLIERS || unrefined.len() < MIN_GROUP_INLIERS {
        return None;
    }
    let median = |v: &mut Vec<f64>| {
        let k = v.len() / 2;
        *v.select_nth_unstable_by(k, f64::total_cmp).1
    };
    let (mr, mu) = (median(&mut refined), median(&mut unrefined));
    let ratio = mr / mu;
    (ratio.is_finite() && ratio < 1.0).then(|| ratio.max(0.01))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::synthetic::{generate_sets, SyntheticConfig};
    use crate::geometry::{estimate_relative_pose, RansacOptions};
    use crate::util::rng::SplitMix64 as Rng;

    /// Correspondences in a and b, which of them are "refined", and the camera.
    type MixedPair = (Vec<[f64; 2]>, Vec<[f64; 2]>, Vec<bool>, PinholeCamera);

    /// A synthetic pair whose odd correspondences carry 0.8 px of extra noise in b (the "unrefined" ones).
    fn mixed_precision() -> MixedPair {
        let cfg = SyntheticConfig {
            instances: 1,
            num_points: 600,
            noise_px: 0.1,
            outlier_ratio: 0.3,
            ..Default::default()
        };
        let inst = generate_sets(&cfg).remove(0);
        let mut rng = Rng::new(3);
        let mut pb = inst.points_b.clone();
        let mut refined = vec![true; pb.len()];
        for (i, p) in pb.iter_mut().enumerate() {
            if i % 2 == 1 {
                p[0] += 0.8 * rng.normal();
                p[1] += 0.8 * rng.normal();
                refined[i] = false;
            }
        }
        (inst.points_a, pb, refined, inst.camera)
    }

    #[test]
    fn unrefined_weight_is_the_variance_ratio_of_the_two_groups() {
        let (pa, pb, refined, cam) = mixed_precision();
        let pose =
            estimate_relative_pose(&pa, &pb, &cam, &cam, None, &RansacOptions::default()).unwrap();
        let w = unrefined_weight(&pose, &pa, &pb, &refined, &cam, &cam).unwrap();
        // variance ratio of the b-side noise: (2·0.1²) / (2·0.1² + 0.8²) ≈ 0.03, inliers truncated at 1 px
        assert!((0.01..0.15).contains(&w), "weight {w}");
        // all refined, or all unrefined: no second group, no weight
        assert_eq!(
            unrefined_weight(&pose, &pa, &pb, &vec![true; pa.len()], &cam, &cam),
            None
        );
        assert_eq!(
            unrefined_weight(&pose, &pa, &pb, &vec![false; pa.len()], &cam, &cam),
            None
        );
        // fewer than MIN_GROUP_INLIERS unrefined inliers
        let few: Vec<bool> = (0..pa.len()).map(|i| i >= MIN_GROUP_INLIERS - 1).collect();
        let unrefined_inliers = (0..pa.len())
            .filter(|&i| !few[i] && pose.inliers[i])
            .count();
        assert!(unrefined_inliers < MIN_GROUP_INLIERS);
        assert_eq!(unrefined_weight(&pose, &pa, &pb, &few, &cam, &cam), None);
    }
}
