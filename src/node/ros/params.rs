//! ROS parameters → configuration: the node's parameters (`--params-file`, `-p`, flat dotted names) become
//! the same [`MatchaConfig`] and [`NodeConfig`] that the YAML file gives, so a parameter and a YAML key are
//! the same thing; unknown keys and out-of-range values stop the start-up with the key's name.

use r2r::ParameterValue;

use super::NodeError;
use crate::config::MatchaConfig;
use crate::node::config::NodeConfig;

fn param_to_json(v: &ParameterValue) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        ParameterValue::NotSet => J::Null,
        ParameterValue::Bool(b) => J::from(*b),
        ParameterValue::Integer(i) => J::from(*i),
        ParameterValue::Double(d) => J::from(*d),
        ParameterValue::String(s) => J::from(s.clone()),
        ParameterValue::BoolArray(a) => J::from(a.clone()),
        ParameterValue::ByteArray(a) => J::from(a.clone()),
        ParameterValue::IntegerArray(a) => J::from(a.clone()),
        ParameterValue::DoubleArray(a) => J::from(a.clone()),
        ParameterValue::StringArray(a) => J::from(a.clone()),
    }
}

/// Builds the configuration from the node's parameters (`--params-file` and `-p`, flat dotted names).
/// Parameters outside the config sections (`use_sim_time`: [`use_sim_time`], `qos_overrides.*`, ...) are
/// ignored here.
pub fn config_from_params(
    params: &[(String, ParameterValue)],
) -> Result<(MatchaConfig, NodeConfig), NodeError> {
    const SECTIONS: [&str; 8] = [
        "engine", "matcher", "pose", "vo", "runtime", "map", "track", "node",
    ];
    let flat: Vec<(&str, serde_json::Value)> = params
        .iter()
        .filter(|(k, _)| SECTIONS.contains(&k.split('.').next().unwrap_or("")))
        .map(|(k, v)| (k.as_str(), param_to_json(v)))
        .collect();
    let tree = crate::node::config::params_to_tree(flat)
        .map_err(|e| NodeError::Parameters(e.to_string()))?;
    let mut cfg: MatchaConfig = serde_json::from_value(tree)
        .map_err(|e| NodeError::Parameters(format!("invalid parameters: {e}")))?;
    // `ros2 launch` starts the node in the user's directory: a relative engines directory is found the
    // way the CLI finds it (working directory, $MATCHA_CACHE, the installed package's share)
    cfg.runtime.engines_dir = crate::util::paths::resolve_engines_dir(&cfg.runtime.engines_dir);
    cfg.validate()
        .map_err(|e| NodeError::Parameters(e.to_string()))?;
    let node =
        NodeConfig::from_value(&cfg.node).map_err(|e| NodeError::Parameters(e.to_string()))?;
    Ok((cfg, node))
}

/// The standard `use_sim_time` parameter (default false): the node's ROS clock then follows `/clock`.
pub fn use_sim_time(params: &[(String, ParameterValue)]) -> Result<bool, NodeError> {
    match params.iter().find(|(k, _)| k == "use_sim_time") {
        None | Some((_, ParameterValue::NotSet)) => Ok(false),
        Some((_, ParameterValue::Bool(b))) => Ok(*b),
        Some((_, v)) => Err(NodeError::Parameters(format!(
            "use_sim_time must be true or false, not {v:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::config::Mode;

    #[test]
    fn use_sim_time_is_a_bool_or_absent() {
        let p = |v: ParameterValue| vec![("use_sim_time".to_string(), v)];
        assert!(!use_sim_time(&[]).unwrap());
        assert!(use_sim_time(&p(ParameterValue::Bool(true))).unwrap());
        assert!(!use_sim_time(&p(ParameterValue::Bool(false))).unwrap());
        let e = use_sim_time(&p(ParameterValue::Integer(1))).unwrap_err();
        assert!(e.to_string().contains("use_sim_time"), "{e}");
    }

    #[test]
    fn parameters_map_onto_the_config_and_bad_values_are_rejected() {
        let p = |k: &str, v: ParameterValue| (k.to_string(), v);
        let (cfg, node) = config_from_params(&[
            p("use_sim_time", ParameterValue::Bool(false)),
            p("node.mode", ParameterValue::String("stereo".into())),
            p("node.stereo.sync_tolerance_s", ParameterValue::Double(0.01)),
            p("pose.threshold_px", ParameterValue::Integer(2)),
            p("map.place", ParameterValue::String("bow".into())),
            p("track.min_zncc", ParameterValue::Double(0.6)),
        ])
        .unwrap();
        // every section of config/matcha.yaml reaches the node (map and track were once dropped)
        assert_eq!(cfg.map.place, crate::map::Aggregation::Bow);
        assert_eq!(cfg.track.min_zncc, 0.6);
        let e =
            config_from_params(&[p("track.min_zncc", ParameterValue::Double(3.0))]).unwrap_err();
        assert!(e.to_string().contains("track.min_zncc"), "{e}");
        assert_eq!(node.mode, Mode::Stereo);
        assert_eq!(node.stereo.sync_tolerance_s, 0.01);
        assert_eq!(cfg.pose.threshold_px, 2.0);
        let e = config_from_params(&[p("node.mode", ParameterValue::String("sideways".into()))])
            .unwrap_err();
        assert!(e.to_string().contains("sideways"), "{e}");
        let e = config_from_params(&[p("pose.threshold_px", ParameterValue::Double(-1.0))])
            .unwrap_err();
        assert!(e.to_string().contains("pose.threshold_px"), "{e}");
        let e = config_from_params(&[p(
            "engine.max_keypoints",
            ParameterValue::String("many".into()),
        )])
        .unwrap_err();
        assert!(e.to_string().contains("many"), "{e}");
    }
}
