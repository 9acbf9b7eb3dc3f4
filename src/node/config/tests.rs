//! Tests of the `node:` configuration: defaults, the bundled YAML, flat ROS parameters, range checks.

use super::*;
use serde_json::json;

#[test]
fn defaults_are_valid_and_null_means_defaults() {
    assert!(NodeConfig::default().validate().is_ok());
    assert_eq!(
        NodeConfig::from_value(&serde_json::Value::Null).unwrap(),
        NodeConfig::default()
    );
}

#[test]
fn bundled_yaml_node_section_equals_the_defaults() {
    let text = include_str!("../../../config/matcha.yaml");
    let cfg = crate::config::MatchaConfig::from_yaml_str(text).expect("config/matcha.yaml parses");
    assert_eq!(
        NodeConfig::from_value(&cfg.node).unwrap(),
        NodeConfig::default()
    );
}

#[test]
fn flat_params_become_a_tree() {
    let tree = params_to_tree([
        ("node.mode", json!("stereo")),
        ("node.keyframe.min_inliers", json!(42)),
        ("engine.extractor", json!("xfeat")),
        ("use_sim_time", json!(false)),
    ])
    .unwrap();
    assert_eq!(tree["node"]["keyframe"]["min_inliers"], json!(42));
    assert_eq!(tree["engine"]["extractor"], json!("xfeat"));
    let cfg = NodeConfig::from_value(&tree["node"]).unwrap();
    assert_eq!(cfg.mode, Mode::Stereo);
    assert_eq!(cfg.keyframe.min_inliers, 42);
    assert_eq!(
        cfg.keyframe.max_parallax_deg,
        KeyframePolicy::default().max_parallax_deg
    );
    let clash = params_to_tree([("a.b", json!(1)), ("a", json!(2))]);
    assert!(matches!(clash, Err(NodeConfigError::Conflict(k)) if k == "a"));
}

#[test]
fn stereo_odometry_mode_and_its_frames() {
    let cfg = NodeConfig::from_value(&json!({"mode": "stereo_odometry"})).unwrap();
    assert_eq!(cfg.mode, Mode::StereoOdometry);
    assert!(cfg.mode.stereo_input());
    assert_eq!(cfg.mode.name(), "stereo_odometry");
    for m in [
        Mode::Odometry,
        Mode::StereoOdometry,
        Mode::Stereo,
        Mode::Relocalization,
    ] {
        assert_eq!(serde_json::to_value(m).unwrap(), json!(m.name()));
    }
    let e = NodeConfig::from_value(&json!({"base_frame_id": "odom"})).unwrap_err();
    assert!(matches!(e, NodeConfigError::Invalid { ref key, .. } if key == "base_frame_id"));
    let e = NodeConfig::from_value(&json!({"base_frame_id": "/"})).unwrap_err();
    assert!(matches!(e, NodeConfigError::Invalid { ref key, .. } if key == "base_frame_id"));
    let e = NodeConfig::from_value(&json!({"camera_mounting": {"xyz": [0.0, 1.0]}})).unwrap_err();
    assert!(matches!(e, NodeConfigError::Parse(_)), "{e:?}");
    let m = NodeConfig::from_value(&json!({"camera_mounting": {"xyz": [0.1, 0.0, 0.2]}}))
        .unwrap()
        .camera_mounting;
    assert_eq!(m.rpy, Mounting::default().rpy);
}

#[test]
fn invalid_values_are_rejected_with_their_key() {
    // the retired JSON map's key names its successor
    let e = NodeConfig::from_value(&json!({"relocalization": {"map_path": "m.json"}})).unwrap_err();
    assert!(
        matches!(e, NodeConfigError::Invalid { ref key, ref reason } if key == "relocalization.map_path" && reason.contains("node.map.path")),
        "{e:?}"
    );
    let e = NodeConfig::from_value(&json!({"mode": "mono"})).unwrap_err();
    assert!(e.to_string().contains("mono"), "{e}");
    let e = NodeConfig::from_value(&json!({"keyframe": {"min_inlier": 3}})).unwrap_err();
    assert!(e.to_string().contains("min_inlier"), "{e}");
    let e = NodeConfig::from_value(&json!({"stereo": {"sync_tolerance_s": -0.1}})).unwrap_err();
    assert!(
        matches!(e, NodeConfigError::Invalid { ref key, .. } if key == "stereo.sync_tolerance_s")
    );
    let e = NodeConfig::from_value(&json!({"topics": {"image": "bad name"}})).unwrap_err();
    assert!(matches!(e, NodeConfigError::Invalid { ref key, .. } if key == "topics.image"));
    let e = NodeConfig::from_value(&json!({"qos": {"depth": 0}})).unwrap_err();
    assert!(matches!(e, NodeConfigError::Invalid { ref key, .. } if key == "qos.depth"));
    let e = NodeConfig::from_value(&json!({"max_rate_hz": -1.0})).unwrap_err();
    assert!(matches!(e, NodeConfigError::Invalid { ref key, .. } if key == "max_rate_hz"));
    let e = NodeConfig::from_value(&json!({"decimation": 17})).unwrap_err();
    assert!(matches!(e, NodeConfigError::Invalid { ref key, .. } if key == "decimation"));
    let e = NodeConfig::from_value(&json!({"mode": "stereo", "point_tracking": {"enabled": true}}))
        .unwrap_err();
    assert!(
        matches!(e, NodeConfigError::Invalid { ref key, .. } if key == "point_tracking.enabled")
    );
    let e = NodeConfig::from_value(&json!({"point_tracking": {"max_points": 0}})).unwrap_err();
    assert!(
        matches!(e, NodeConfigError::Invalid { ref key, .. } if key == "point_tracking.max_points")
    );
    let e = NodeConfig::from_value(&json!({"decimation": -1})).unwrap_err();
    assert!(matches!(e, NodeConfigError::Parse(_)), "{e:?}");
    assert_eq!(
        NodeConfig::from_value(&json!({"decimation": 2}))
            .unwrap()
            .decimation,
        2
    );
}

mod properties {
    use super::super::*;
    use proptest::prelude::*;

    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(|f| serde_json::json!(f)),
            "[a-z_/ ]{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map(
                    prop::sample::select(vec![
                        "mode",
                        "topics",
                        "image",
                        "qos",
                        "depth",
                        "stereo",
                        "camera_mounting",
                        "xyz",
                        "rpy",
                        "decimation",
                        "x"
                    ]),
                    inner,
                    0..4
                )
                .prop_map(|m| serde_json::Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                )),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_node_section_is_a_config_or_an_error(v in json()) {
            if let Ok(cfg) = NodeConfig::from_value(&v) {
                prop_assert!(cfg.validate().is_ok());
            }
        }

        #[test]
        fn any_flat_parameters_make_a_tree_or_an_error(
            names in prop::collection::vec("[a-z.]{0,16}", 0..8),
        ) {
            let _ = params_to_tree(names.iter().map(|n| (n.as_str(), serde_json::json!(1))));
        }
    }
}
