//! `matcha map` end to end on the rendered sequence `vo_short` and its revisit queries
//! (`tools/revisit_queries.py`: the map's places from other viewpoints and under another light, with exact
//! poses, and views of places the map never saw): a map built from the stereo odometry localizes the
//! mapped queries against the ground truth and refuses the unmapped ones; a map is refused by a run with
//! another descriptor; and a map build killed with SIGKILL at any moment leaves a database that opens,
//! passes SQLite's integrity check and holds only whole keyframes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common;

use matcha::map::MapStore;

fn build(seq: &Path, map: &Path) {
    let o = common::run_matcha(&[
        "map",
        "build",
        seq.to_str().unwrap(),
        "--out",
        map.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("matcha-map-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn revisit_queries_localize_in_a_map_of_the_stereo_run() {
    let seq = common::need("vo/vo_short");
    let revisit = common::need("revisit/vo_short");
    let dir = temp("loc");
    let map = dir.join("map.db");
    build(&seq, &map);
    let store = MapStore::open(&map, None).unwrap();
    store.integrity_check().unwrap();
    assert!(store.keyframe_count().unwrap() >= 4);
    drop(store);

    let queries: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(revisit.join("queries.json")).unwrap())
            .unwrap();
    let c = &queries["camera"];
    let intr = format!("{},{},{},{}", c["fx"], c["fy"], c["cx"], c["cy"]);
    let (mut mapped, mut correct, mut wrong, mut unmapped, mut unmapped_accepted) = (0, 0, 0, 0, 0);
    // every query (60, ~30 s): with every third one (18 mapped) a single refusal decided the 90% bound
    // (16 of 18 on an AVX-512 machine, 51 of 54 over all)
    for q in queries["queries"].as_array().unwrap() {
        let img = revisit.join(q["image"].as_str().unwrap());
        let o = common::run_matcha(&[
            "map",
            "localize",
            map.to_str().unwrap(),
            img.to_str().unwrap(),
            "--intrinsics",
            &intr,
            "--json",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let is_mapped = q["mapped"].as_bool().unwrap();
        let gt: Vec<f64> = q["pose"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        if !is_mapped {
            unmapped += 1;
            unmapped_accepted += r["localized"].as_bool().unwrap() as usize;
            continue;
        }
        mapped += 1;
        if let Some(t) = r["map_from_camera"]["t"].as_array() {
            let e = ((t[0].as_f64().unwrap() - gt[0]).powi(2)
                + (t[1].as_f64().unwrap() - gt[1]).powi(2)
                + (t[2].as_f64().unwrap() - gt[2]).powi(2))
            .sqrt();
            let q_est: Vec<f64> = r["map_from_camera"]["q_xyzw"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let dot =
                (q_est[0] * gt[3] + q_est[1] * gt[4] + q_est[2] * gt[5] + q_est[3] * gt[6]).abs();
            let angle = 2.0 * dot.min(1.0).acos().to_degrees();
            if e <= 0.25 && angle <= 2.0 {
                correct += 1;
            } else {
                wrong += 1;
                eprintln!("{}: {e:.3} m / {angle:.2} deg", q["image"]);
            }
        }
    }
    eprintln!("mapped {mapped}: correct {correct}, wrong {wrong}; unmapped {unmapped}: accepted {unmapped_accepted}");
    assert!(mapped >= 10 && unmapped >= 1);
    assert_eq!(wrong, 0, "wrong localizations");
    assert_eq!(unmapped_accepted, 0, "an unmapped view was localized");
    assert!(
        correct as f64 >= 0.9 * mapped as f64,
        "{correct} of {mapped}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_map_of_another_descriptor_or_a_broken_file_is_refused_with_a_message() {
    let seq = common::need("vo/vo_short");
    let revisit = common::need("revisit/vo_short");
    let dir = temp("refuse");
    let map = dir.join("map.db");
    let o = common::run_matcha(&[
        "map",
        "build",
        seq.to_str().unwrap(),
        "--out",
        map.to_str().unwrap(),
        "--frames",
        "40",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let img = revisit.join("images/000000.png");
    let o = common::run_matcha(&[
        "--extractor",
        "disk",
        "map",
        "localize",
        map.to_str().unwrap(),
        img.to_str().unwrap(),
        "--intrinsics",
        "500,500,319.5,239.5",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("'xfeat'") && err.contains("'disk'"), "{err}");
    let junk = dir.join("junk.db");
    std::fs::write(&junk, b"not a map").unwrap();
    let o = common::run_matcha(&[
        "map",
        "localize",
        junk.to_str().unwrap(),
        img.to_str().unwrap(),
        "--intrinsics",
        "500,500,319.5,239.5",
    ]);
    assert!(!o.status.success());
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_map_build_killed_at_any_moment_leaves_whole_keyframes() {
    let seq = common::need("vo/vo_short");
    let dir = temp("kill");
    let bin = env!("CARGO_BIN_EXE_matcha");
    let mut checked_nonempty = 0;
    // kill at several moments of the run (the map's writes start after the first keyframe)
    for (i, after_ms) in [700u64, 1100, 1500, 1900, 2400].into_iter().enumerate() {
        let map = dir.join(format!("map{i}.db"));
        let mut child = Command::new(bin)
            .args(["--engines", common::engines_dir().to_str().unwrap()])
            .args([
                "map",
                "build",
                seq.to_str().unwrap(),
                "--out",
                map.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(after_ms) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        if !map.exists() {
            continue;
        }
        let store = MapStore::open(&map, None).unwrap();
        store.integrity_check().unwrap();
        let n = store.keyframe_count().unwrap();
        for (id, _) in store.poses().unwrap() {
            let kf = store.keyframe(id).unwrap().unwrap();
            // a keyframe's landmarks were committed with it
            let lm = store.landmarks(&kf.landmark_ids).unwrap();
            assert!(
                lm.iter().all(|l| l.is_some()),
                "keyframe {id} lacks landmarks"
            );
        }
        checked_nonempty += (n > 0) as usize;
    }
    assert!(
        checked_nonempty >= 2,
        "the kills came too early to test anything"
    );
    let _ = std::fs::remove_dir_all(dir);
}
