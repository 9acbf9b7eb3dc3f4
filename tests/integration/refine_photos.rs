//! Photometric match refinement on a real photo pair with a known homography (Graffiti 1 → 3 of the Oxford
//! affine set: a planar wall seen from a 40° different viewpoint): XFeat INT8 + MNN matches through the
//! pipeline, refined positions in image b compared with the homography's projection of the keypoints in a.

use crate::common;

use matcha::config::MatchaConfig;
use matcha::geometry::PinholeCamera;
use matcha::matching::refine::WarpModel;
use matcha::pipeline::Pipeline;

fn homography() -> [[f64; 3]; 3] {
    let text = std::fs::read_to_string(common::need("data/graf_H1to3.txt")).unwrap();
    let v: Vec<f64> = text
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(v.len(), 9);
    [[v[0], v[1], v[2]], [v[3], v[4], v[5]], [v[6], v[7], v[8]]]
}

fn project(h: &[[f64; 3]; 3], p: [f32; 2]) -> [f64; 2] {
    let (x, y) = (p[0] as f64, p[1] as f64);
    let w = h[2][0] * x + h[2][1] * y + h[2][2];
    [
        (h[0][0] * x + h[0][1] * y + h[0][2]) / w,
        (h[1][0] * x + h[1][1] * y + h[1][2]) / w,
    ]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Over the matches within 3 px of the homography before refinement that the refinement moved: the median
/// homography error (px) before and after, their count, and the count of matches within 3 px.
fn errors(model: WarpModel, radius: u32, max_shift: f32) -> (f64, f64, usize, usize) {
    let mut cfg = MatchaConfig {
        runtime: common::cpu_runtime(),
        ..MatchaConfig::default()
    };
    cfg.matcher.refine.enabled = true;
    cfg.matcher.refine.model = model;
    cfg.matcher.refine.patch_radius = radius;
    cfg.matcher.refine.max_shift_px = max_shift;
    let mut p = Pipeline::new(&cfg).unwrap();
    let (ia, ib) = (common::photo("graf1.png"), common::photo("graf3.png"));
    let fa = p.extract(&ia).unwrap();
    let fb = p.extract(&ib).unwrap();
    assert!(fa.gray.is_some() && fb.gray.is_some());
    let cam = PinholeCamera::new(800.0, 800.0, 400.0, 300.0).unwrap();
    let res = p.match_pair(&fa, &cam, &fb, &cam).unwrap();
    let refinement = res.refinement.as_ref().expect("refinement ran");
    assert_eq!(refinement.points_b.len(), res.matches.matches.len());
    let h = homography();
    let (mut before, mut after, mut near) = (Vec::new(), Vec::new(), 0);
    for (i, m) in res.matches.matches.iter().enumerate() {
        let q = project(&h, fa.keypoints[m.a as usize]);
        let kb = fb.keypoints[m.b as usize];
        let e0 = (kb[0] as f64 - q[0]).hypot(kb[1] as f64 - q[1]);
        if e0 > 3.0 {
            continue; // an outlier, or a match no refinement is meant to reach
        }
        near += 1;
        if let Some(pb) = refinement.points_b[i] {
            assert_eq!(res.point_b(i, &fb), Some(pb));
            before.push(e0);
            after.push((pb[0] as f64 - q[0]).hypot(pb[1] as f64 - q[1]));
        }
    }
    assert!(near >= 100, "only {near} matches within 3 px");
    let n = before.len();
    assert!(
        n >= 20,
        "only {n} of {near} refined ({:?})",
        refinement.stats
    );
    (median(before), median(after), n, near)
}

#[test]
fn affine_refinement_moves_graffiti_matches_onto_the_homography() {
    // 40° of viewpoint change on a wall: most patches are strongly sheared, so only some converge; those must
    // land far closer to the homography than the detector's positions. (The translation model cannot follow
    // this shear: on this pair it moved its refined matches from a median 1.02 px to 1.43 px, which is why
    // the affine model exists; not asserted, it is not a property to keep.)
    let (b, a, refined, near) = errors(WarpModel::Affine, 7, 3.0);
    eprintln!("affine r=7: {refined} of {near} refined, median error {b:.3} → {a:.3} px");
    assert!(a < 0.5 * b && a < 0.5, "affine: median {b:.3} → {a:.3} px");
}
