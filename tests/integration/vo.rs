//! `matcha vo` end to end on the rendered stereo sequence `vo_short` (exact ground truth; rendered by
//! `tools/vo_sequences.py`, which the test set-up runs): the metric trajectory against the ground truth
//! without any alignment (both start at the first left camera frame), the per-frame states, and bad input.

use crate::common;

use std::process::Output;

use matcha::vo::trajectory::parse_tum;

fn matcha(args: &[&str]) -> Output {
    common::run_matcha(args)
}

#[test]
fn stereo_vo_follows_the_ground_truth_metrically() {
    let seq = common::need("vo/vo_short");
    let dir = std::env::temp_dir().join(format!("matcha-vo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (tum, states) = (dir.join("t.tum"), dir.join("s.jsonl"));
    let o = matcha(&[
        "vo",
        seq.to_str().unwrap(),
        "--frames",
        "90",
        "--out",
        tum.to_str().unwrap(),
        "--states",
        states.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let est = parse_tum(&std::fs::read_to_string(&tum).unwrap()).unwrap();
    let gt = parse_tum(&std::fs::read_to_string(seq.join("groundtruth.txt")).unwrap()).unwrap();
    assert_eq!(est.len(), 90, "a pose for every frame");
    let mut worst = (0.0f64, 0.0f64);
    for ((ts, p), (tg, g)) in est.iter().zip(&gt) {
        assert!((ts - tg).abs() < 1e-4);
        let dp = (p.translation.vector - g.translation.vector).norm();
        let dr = p.rotation.angle_to(&g.rotation).to_degrees();
        worst = (worst.0.max(dp), worst.1.max(dr));
    }
    // about 1.7 m walked in 90 frames; metric scale from the 12 cm baseline
    let walked: f64 = gt[..90]
        .windows(2)
        .map(|w| (w[1].1.translation.vector - w[0].1.translation.vector).norm())
        .sum();
    assert!(walked > 1.0, "{walked}");
    assert!(
        worst.0 < 0.02 && worst.1 < 0.5,
        "worst error {:.4} m, {:.3}° over {walked:.2} m",
        worst.0,
        worst.1
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&states)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 90);
    assert!(lines.iter().all(|l| l["state"] == "tracking"));
    // a keyframe is made in its frame (the first) or asked for and inserted afterwards (deferred)
    let keyframes = lines
        .iter()
        .filter(|l| l["keyframe"] == true || l["keyframe_requested"] == true)
        .count();
    let by_flow = lines.iter().filter(|l| l["by_flow"] == true).count();
    assert!((2..30).contains(&keyframes), "{keyframes} keyframes");
    assert!(by_flow > 45, "{by_flow} of 90 frames by landmark tracking");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn deferred_keyframes_keep_the_trajectory() {
    // keyframes inserted 3 frames after they were asked for (what the node's keyframe thread does):
    // the same landmarks, a little later, so nearly the same trajectory as in-frame keyframes
    let seq = common::need("vo/vo_short");
    let dir = std::env::temp_dir().join(format!("matcha-vo-lag-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut poses = Vec::new();
    for lag in ["0", "3"] {
        let tum = dir.join(format!("t{lag}.tum"));
        let o = matcha(&[
            "vo",
            seq.to_str().unwrap(),
            "--frames",
            "90",
            "--out",
            tum.to_str().unwrap(),
            "--keyframe-lag",
            lag,
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        assert!(
            err.contains(&format!("(inserted {lag} frame(s) after the request)")),
            "{err}"
        );
        poses.push(parse_tum(&std::fs::read_to_string(&tum).unwrap()).unwrap());
    }
    assert_eq!(poses[0].len(), poses[1].len());
    let worst = poses[0]
        .iter()
        .zip(&poses[1])
        .map(|((_, a), (_, b))| (a.translation.vector - b.translation.vector).norm())
        .fold(0.0f64, f64::max);
    assert!(
        worst < 0.01,
        "lag 3 differs from lag 0 by up to {worst:.4} m"
    );
    // more than the allowed lag is refused with a message
    let o = matcha(&["vo", seq.to_str().unwrap(), "--keyframe-lag", "99"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("keyframe_max_lag_frames"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_or_broken_sequence_is_an_error_with_a_message() {
    let o = matcha(&["vo", "/nonexistent/sequence"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("sequence.json"));
    let dir = std::env::temp_dir().join(format!("matcha-vo-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("sequence.json"), "{\"name\": 1}").unwrap();
    let o = matcha(&[
        "vo",
        dir.to_str().unwrap(),
        "--out",
        dir.join("t.tum").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid sequence description"));
    std::fs::remove_dir_all(&dir).unwrap();
}
