//! One pair: matching, the optional photometric refinement of the matches, and the relative pose from the
//! detector's keypoints in a and the refined positions in b (the unrefined matches weighted by their
//! measured precision, [`crate::geometry::relative_pose::unrefined_weight`]).

use std::time::Instant;

use super::{PairResult, PipelineError};
use crate::features::Features;
use crate::geometry::relative_pose::unrefined_weight;
use crate::geometry::{
    estimate_relative_pose, pose_outcome, refine_relative_pose_weighted, PinholeCamera, PoseError,
    PoseInputError, RansacOptions, RelativePose,
};
use crate::matching::refine::{refine_selected_matches, RefineOptions, Refinement};
use crate::matching::{Matcher, Matches};

/// Matching, optional refinement and the pose for one pair (shared by [`Pipeline::match_pair`] and the
/// stream). Refinement runs on the calling thread (a few milliseconds per pair): on the matcher's worker
/// threads it made the node's memory swing through a long run for little latency gained (docs/ros.md).
pub(super) fn match_refine_pose(
    matcher: &mut dyn Matcher,
    refine: &RefineOptions,
    ransac: &RansacOptions,
    (a, camera_a): (&Features, &PinholeCamera),
    (b, camera_b): (&Features, &PinholeCamera),
) -> Result<PairResult, PipelineError> {
    let t0 = Instant::now();
    let matches = matcher.match_features(a, b)?;
    let t1 = Instant::now();
    let ms = |x: Instant, y: Instant| (y - x).as_secs_f64() * 1e3;
    let (Some(ga), Some(gb), true) = (&a.gray, &b.gray, refine.enabled) else {
        let pose = pose_outcome(estimate_pose_from_matches(
            a, camera_a, b, camera_b, &matches, ransac,
        ))?;
        let t2 = Instant::now();
        return Ok(PairResult {
            matches,
            pose,
            refinement: None,
            match_ms: ms(t0, t1),
            refine_ms: 0.0,
            pose_ms: ms(t1, t2),
        });
    };
    // With refinement: a pose from the detector's keypoints picks the matches worth refining (its inliers;
    // all of them when it fails), then the pose is re-estimated from the refined positions.
    let first = pose_outcome(estimate_pose_from_matches(
        a, camera_a, b, camera_b, &matches, ransac,
    ))?;
    let t2 = Instant::now();
    let select = match &first {
        Ok(p) => spread_selection(&p.inliers, refine.max_matches),
        Err(_) => spread_selection(&vec![true; matches.matches.len()], refine.max_matches),
    };
    let refinement = refine_selected_matches(
        &ga.0,
        &a.keypoints,
        &gb.0,
        &b.keypoints,
        &matches.matches,
        Some(&select),
        refine,
    );
    log::debug!("match refinement: {:?}", refinement.stats);
    let t3 = Instant::now();
    let pose = match &first {
        // the refined re-estimate, else the first pose
        Ok(p) => {
            reestimate_refined(a, camera_a, b, camera_b, &matches, &refinement, p, ransac).or(first)
        }
        Err(_) => pose_outcome(estimate_pose_refined(
            a,
            camera_a,
            b,
            camera_b,
            &matches,
            Some(&refinement),
            ransac,
        ))?,
    };
    let t4 = Instant::now();
    Ok(PairResult {
        matches,
        pose,
        refinement: Some(refinement),
        match_ms: ms(t0, t1),
        refine_ms: ms(t2, t3),
        pose_ms: ms(t1, t2) + ms(t3, t4),
    })
}

/// At most `max` (0 = all) of the `true` entries of `mask`, evenly spread over them (deterministic).
fn spread_selection(mask: &[bool], max: usize) -> Vec<bool> {
    let total = mask.iter().filter(|&&m| m).count();
    if max == 0 || total <= max {
        return mask.to_vec();
    }
    let mut out = vec![false; mask.len()];
    let mut seen = 0usize;
    for (o, &m) in out.iter_mut().zip(mask) {
        if m {
            // keep the k-th of `total` when it starts a new 1/max-th of the list
            *o = (seen * max) / total != ((seen + 1) * max) / total;
            seen += 1;
        }
    }
    out
}

/// Runs the robust estimator on matched keypoints (match scores give the PROSAC order).
pub fn estimate_pose_from_matches(
    a: &Features,
    camera_a: &PinholeCamera,
    b: &Features,
    camera_b: &PinholeCamera,
    matches: &Matches,
    options: &RansacOptions,
) -> Result<RelativePose, PoseError> {
    estimate_pose_refined(a, camera_a, b, camera_b, matches, None, options)
}

/// Matched positions (a: detector; b: refined where `refinement` has one), match scores, and which b
/// positions are refined.
struct PairPoints {
    a: Vec<[f64; 2]>,
    b: Vec<[f64; 2]>,
    priority: Vec<f32>,
    refined: Vec<bool>,
}

fn pair_points(
    a: &Features,
    b: &Features,
    matches: &Matches,
    refinement: Option<&Refinement>,
) -> Result<PairPoints, PoseInputError> {
    let refined = refinement.map_or(&[][..], |r| r.points_b.as_slice());
    let n = matches.matches.len();
    let mut out = PairPoints {
        a: Vec::with_capacity(n),
        b: Vec::with_capacity(n),
        priority: Vec::with_capacity(n),
        refined: Vec::with_capacity(n),
    };
    for (i, m) in matches.matches.iter().enumerate() {
        let (Some(ka), Some(kb)) = (a.keypoints.get(m.a as usize), b.keypoints.get(m.b as usize))
        else {
            return Err(PoseInputError::MatchOutOfRange(format!(
                "match ({}, {}) indexes past the keypoints ({}, {})",
                m.a,
                m.b,
                a.len(),
                b.len()
            )));
        };
        let r = refined.get(i).copied().flatten();
        out.refined.push(r.is_some());
        let kb = r.unwrap_or(*kb);
        out.a.push([ka[0] as f64, ka[1] as f64]);
        out.b.push([kb[0] as f64, kb[1] as f64]);
        out.priority.push(m.score);
    }
    Ok(out)
}

/// [`estimate_pose_from_matches`] with the refined positions in b of `refinement` (per match; its `None`
/// entries and matches past its length use the detector's keypoint).
///
/// With a refinement the two kinds of match differ in precision (refined matches several times more precise
/// on the rendered set, against the true pose: CHANGELOG, match refinement). LO-RANSAC estimates the pose
/// with equal weights; [`reestimate_refined`] then weights the unrefined matches by the measured ratio.
pub fn estimate_pose_refined(
    a: &Features,
    camera_a: &PinholeCamera,
    b: &Features,
    camera_b: &PinholeCamera,
    matches: &Matches,
    refinement: Option<&Refinement>,
    options: &RansacOptions,
) -> Result<RelativePose, PoseError> {
    let pts = pair_points(a, b, matches, refinement)?;
    let first = estimate_relative_pose(
        &pts.a,
        &pts.b,
        camera_a,
        camera_b,
        Some(&pts.priority),
        options,
    );
    match (&first, refinement) {
        (Ok(p), Some(_)) => weighted_from(&pts, camera_a, camera_b, p, options).map_or(first, Ok),
        _ => first,
    }
}

/// The pose from the refined positions of `refinement`, starting from `initial` (e.g. the pose from the
/// detector's keypoints) without new sampling ([`refine_relative_pose_weighted`]): first with equal
/// weights, then with each unrefined match weighted by [`unrefined_weight`] (relative inverse variance, see
/// [`crate::geometry::estimate_relative_pose_weighted`]); equal weights stay when either kind has fewer than
/// [`MIN_GROUP_INLIERS`] inliers.
#[allow(clippy::too_many_arguments)]
pub fn reestimate_refined(
    a: &Features,
    camera_a: &PinholeCamera,
    b: &Features,
    camera_b: &PinholeCamera,
    matches: &Matches,
    refinement: &Refinement,
    initial: &RelativePose,
    options: &RansacOptions,
) -> Result<RelativePose, PoseError> {
    let pts = pair_points(a, b, matches, Some(refinement))?;
    let equal =
        refine_relative_pose_weighted(&pts.a, &pts.b, camera_a, camera_b, None, initial, options)?;
    Ok(weighted_from(&pts, camera_a, camera_b, &equal, options).unwrap_or(equal))
}

/// The weighted re-estimate from an equal-weight `pose` of the same points (`None`: no weight applies, or
/// no pose).
fn weighted_from(
    pts: &PairPoints,
    camera_a: &PinholeCamera,
    camera_b: &PinholeCamera,
    pose: &RelativePose,
    options: &RansacOptions,
) -> Option<RelativePose> {
    let w = unrefined_weight(pose, &pts.a, &pts.b, &pts.refined, camera_a, camera_b)?;
    log::debug!("pose: unrefined matches weighted {w:.3}");
    let weights: Vec<f64> = pts
        .refined
        .iter()
        .map(|&r| if r { 1.0 } else { w })
        .collect();
    refine_relative_pose_weighted(
        &pts.a,
        &pts.b,
        camera_a,
        camera_b,
        Some(&weights),
        pose,
        options,
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_selection_keeps_at_most_max_evenly() {
        let mask: Vec<bool> = (0..1000).map(|i| i % 2 == 0).collect(); // 500 set
        assert_eq!(spread_selection(&mask, 0), mask);
        assert_eq!(spread_selection(&mask, 500), mask);
        let s = spread_selection(&mask, 100);
        assert_eq!(s.iter().filter(|&&x| x).count(), 100);
        assert!(
            s.iter().zip(&mask).all(|(&s, &m)| !s || m),
            "subset of the mask"
        );
        // even: each tenth of the list holds 10 of them
        for part in s.chunks(100) {
            assert_eq!(part.iter().filter(|&&x| x).count(), 10);
        }
        assert!(spread_selection(&[], 5).is_empty());
    }
}
