//! `matcha vo --monocular` end to end on the rendered sequence `vo_short` (left images only): the
//! initialisation waits for parallax without inventing poses (and mostly without features), then the trajectory follows the ground truth up
//! to one scale for the whole run (both start at the first left camera frame, so only the scale is fitted).

use crate::common;

use matcha::vo::trajectory::parse_tum;

#[test]
fn monocular_vo_follows_the_ground_truth_up_to_one_scale() {
    let seq = common::need("vo/vo_short");
    let dir = std::env::temp_dir().join(format!("matcha-vo-mono-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (tum, states) = (dir.join("t.tum"), dir.join("s.jsonl"));
    let o = common::run_matcha(&[
        "vo",
        seq.to_str().unwrap(),
        "--monocular",
        "--out",
        tum.to_str().unwrap(),
        "--states",
        states.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&states)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let frames = lines.len();
    let waiting = lines
        .iter()
        .take_while(|l| l["state"] == "initializing")
        .count();
    assert!(
        waiting > 0 && waiting < frames / 2,
        "{waiting} frames initializing"
    );
    assert!(
        lines[waiting..].iter().all(|l| l["state"] == "tracking"),
        "no loss after the initialisation"
    );
    // the first frame is the reference (features); many initializing frames need none: the reference's
    // keypoints are followed photometrically until they may show enough parallax (on this walk, which
    // faces a wall, about half of them; none before the followed initialisation)
    let waiting_by_flow = lines[..waiting]
        .iter()
        .filter(|l| l["by_flow"] == true)
        .count();
    assert!(lines[0]["by_flow"] == false);
    assert!(
        waiting_by_flow * 3 >= waiting,
        "{waiting_by_flow} of {waiting} initializing frames without features"
    );
    // the initializing frames have no pose in the trajectory
    let est = parse_tum(&std::fs::read_to_string(&tum).unwrap()).unwrap();
    assert_eq!(est.len(), frames - waiting);
    let gt = parse_tum(&std::fs::read_to_string(seq.join("groundtruth.txt")).unwrap()).unwrap();
    let truth: Vec<_> = est
        .iter()
        .map(|(t, _)| {
            gt.iter()
                .find(|(tg, _)| (tg - t).abs() < 1e-4)
                .expect("a ground-truth pose per stamp")
                .1
        })
        .collect();
    // the run's one scale (least squares over the positions; both worlds are the first camera's frame)
    let (mut pg, mut pp) = (0.0, 0.0);
    for ((_, p), g) in est.iter().zip(&truth) {
        pg += p.translation.vector.dot(&g.translation.vector);
        pp += p.translation.vector.norm_squared();
    }
    let scale = pg / pp;
    assert!(scale.is_finite() && scale > 0.0);
    let walked: f64 = gt
        .windows(2)
        .map(|w| (w[1].1.translation.vector - w[0].1.translation.vector).norm())
        .sum();
    let mut worst = (0.0f64, 0.0f64);
    for ((_, p), g) in est.iter().zip(&truth) {
        let dp = (p.translation.vector * scale - g.translation.vector).norm();
        let dr = p.rotation.angle_to(&g.rotation).to_degrees();
        worst = (worst.0.max(dp), worst.1.max(dr));
    }
    // a scale that drifts by 10% over the run, or unit-length steps chained, is off by decimetres
    assert!(
        worst.0 < 0.01 * walked && worst.1 < 1.0,
        "worst error {:.4} m, {:.3}° over {walked:.2} m (scale {scale:.3} m per unit)",
        worst.0,
        worst.1
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
