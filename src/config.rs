//! Configuration: one serde struct tree with the defaults in one place, read from `config/matcha.yaml` by the
//! CLI, the node and the tests alike.
//!
//! The YAML file is in ROS 2 parameter-file format (`/**: {ros__parameters: {...}}`) so that the same file
//! feeds `ros2 launch`; [`MatchaConfig::from_yaml_str`] also accepts the bare tree. Unknown keys are errors
//! (a typo must not silently fall back to a default). The `node` section belongs to the ROS node and is kept
//! opaque here so the core stays free of ROS types.

use std::path::{Path, PathBuf};

use crate::geometry::RansacOptions;
use crate::matching::mnn::MnnOptions;
use crate::matching::refine::RefineOptions;
use crate::runtime::RuntimeConfig;

/// Errors reading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// YAML syntax or schema error.
    #[error("invalid config: {0}")]
    Parse(String),
    /// A value is out of range.
    #[error("invalid config value {key}: {reason}")]
    Invalid {
        /// Dotted key.
        key: String,
        /// What is allowed.
        reason: String,
    },
}

/// Which feature extractor runs. The one list of extractor names: the YAML, the CLI's `--extractor` and
/// `matcha eval --method` all read them from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum ExtractorKind {
    /// XFeat: fast, the CPU default.
    Xfeat,
    /// DISK: slower, more keypoints of higher quality (GPU recommended).
    Disk,
    /// ALIKED (aliked-n16): sub-pixel keypoints, deformable descriptors (GPU recommended).
    Aliked,
    /// MATCHA: DISK keypoints with the fused DINOv2 + DIFT descriptor (GPU required in practice).
    Matcha,
}

impl ExtractorKind {
    /// Every extractor, in the order the docs list them.
    pub const ALL: [ExtractorKind; 4] = [Self::Xfeat, Self::Disk, Self::Aliked, Self::Matcha];

    /// The name in the YAML and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Xfeat => "xfeat",
            Self::Disk => "disk",
            Self::Aliked => "aliked",
            Self::Matcha => "matcha",
        }
    }
}

impl std::str::FromStr for ExtractorKind {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        kind_from_name(&Self::ALL, Self::name, s, "engine.extractor", "extractor")
    }
}

/// The kind in `all` whose `name` is `s`, or an error at `key` listing the names.
fn kind_from_name<K: Copy, const N: usize>(
    all: &[K; N],
    name: fn(K) -> &'static str,
    s: &str,
    key: &str,
    what: &str,
) -> Result<K, ConfigError> {
    all.iter()
        .copied()
        .find(|&k| name(k) == s)
        .ok_or_else(|| ConfigError::Invalid {
            key: key.into(),
            reason: format!(
                "unknown {what} '{s}' (one of: {})",
                all.map(name).join(", ")
            ),
        })
}

/// Feature extraction settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExtractorConfig {
    /// The extractor.
    pub extractor: ExtractorKind,
    /// Keep at most this many keypoints per image.
    pub max_keypoints: usize,
    /// Keypoint budget of the second try on a pair whose pose is a planar ambiguity: both images are
    /// extracted again with this many keypoints and matched anew, since only points off the plane can
    /// decide between the plane's motions ([`crate::pipeline::Pipeline::match_images`]; `matcha match`,
    /// `matcha eval`, the node's `match` service). No second try when it is not above `max_keypoints`
    /// (0 = never). A camera stream (the node's camera modes, VO) does not retry: it keeps its latency and
    /// reports the ambiguity.
    pub ambiguity_max_keypoints: usize,
    /// Detection threshold; `None` = the extractor's reference default (XFeat 0.05, DISK 0.0, ALIKED none:
    /// the best `max_keypoints` maxima).
    pub detection_threshold: Option<f32>,
    /// Refine keypoints to sub-pixel positions (XFeat; DISK keeps integer positions like its reference;
    /// ALIKED's detector is sub-pixel by construction).
    pub subpixel: bool,
    /// Keypoints spread over the image: a share of `max_keypoints` as per-cell quotas on a grid
    /// (`share: 0` = the strongest responses only, as the reference extractors select).
    pub spread: crate::features::keypoints::SpreadOptions,
    /// Engine precision (XFeat: `auto` = INT8 on the CPU, float32 on a GPU; the other extractors have
    /// float32 engines only and accept `auto` or `fp32`).
    pub precision: crate::features::xfeat::Precision,
    /// Downscale images whose longer side exceeds this before extraction (keypoints are mapped back);
    /// 0 = never.
    pub max_image_side: u32,
    /// MATCHA extractor settings (used when `extractor: matcha`).
    pub matcha: crate::features::matcha::MatchaOptions,
}

impl ExtractorConfig {
    /// Name of the configured extractor (as in the YAML).
    pub fn extractor_name(&self) -> &'static str {
        self.extractor.name()
    }
}

impl Default for ExtractorConfig {
    fn default() -> Self {
        Self {
            extractor: ExtractorKind::Xfeat,
            max_keypoints: 2048,
            ambiguity_max_keypoints: 4096,
            detection_threshold: None,
            subpixel: true,
            spread: crate::features::keypoints::SpreadOptions::default(),
            precision: crate::features::xfeat::Precision::Auto,
            max_image_side: 1280,
            matcha: crate::features::matcha::MatchaOptions::default(),
        }
    }
}

/// Which matcher runs (the one list of matcher names, like [`ExtractorKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum MatcherKind {
    /// Mutual nearest neighbour on cosine similarity.
    Mnn,
    /// LightGlue / LighterGlue engine for the active extractor.
    Lightglue,
}

impl MatcherKind {
    /// Every matcher.
    pub const ALL: [MatcherKind; 2] = [Self::Mnn, Self::Lightglue];

    /// The name in the YAML and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mnn => "mnn",
            Self::Lightglue => "lightglue",
        }
    }
}

impl std::str::FromStr for MatcherKind {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        kind_from_name(&Self::ALL, Self::name, s, "matcher.matcher", "matcher")
    }
}

/// Matching settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatcherConfig {
    /// The matcher.
    pub matcher: MatcherKind,
    /// Options of the MNN matcher.
    pub mnn: MnnOptions,
    /// Minimum match probability of LightGlue matches.
    pub lightglue_threshold: f32,
    /// Photometric sub-pixel refinement of the matches before the pose (any matcher).
    pub refine: RefineOptions,
}

impl MatcherConfig {
    /// Name of the configured matcher (as in the YAML).
    pub fn matcher_name(&self) -> &'static str {
        match self.matcher {
            MatcherKind::Mnn => "mnn",
            MatcherKind::Lightglue => "lightglue",
        }
    }
}

impl Default for MatcherConfig {
    fn default() -> Self {
        Self {
            matcher: MatcherKind::Mnn,
            mnn: MnnOptions::default(),
            lightglue_threshold: 0.1,
            refine: RefineOptions::default(),
        }
    }
}

/// Everything the core pipeline needs, plus the node's opaque section.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatchaConfig {
    /// Feature extraction.
    pub engine: ExtractorConfig,
    /// Matching.
    pub matcher: MatcherConfig,
    /// Robust relative pose.
    pub pose: RansacOptions,
    /// Visual odometry (`matcha vo`, the node's odometry modes).
    pub vo: crate::vo::VoOptions,
    /// Engine runtime (providers, threads, engines directory).
    pub runtime: RuntimeConfig,
    /// The localization map: place descriptor, retrieval index, localization (`matcha map`, the node's
    /// map modes).
    pub map: crate::map::MapOptions,
    /// Point tracking (`matcha track`, the node's `track` service and `point_tracks` topic).
    pub track: crate::track::TrackOptions,
    /// ROS node settings (interpreted by the node only).
    pub node: serde_json::Value,
}

impl MatchaConfig {
    /// Parses YAML, either the bare tree or a ROS 2 parameter file (`<node or /**>: ros__parameters: ...`).
    pub fn from_yaml_str(text: &str) -> Result<Self, ConfigError> {
        let value: serde_json::Value =
            serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        let tree = unwrap_ros_parameters(value);
        let tree = if tree.is_null() {
            serde_json::json!({})
        } else {
            tree
        };
        let config: Self =
            serde_json::from_value(tree).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and validates a YAML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml_str(&text)
    }

    /// Checks value ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: &str| {
            Err(ConfigError::Invalid {
                key: key.into(),
                reason: reason.into(),
            })
        };
        if self.engine.max_keypoints == 0 {
            return bad("engine.max_keypoints", "must be > 0");
        }
        if self.engine.precision == crate::features::xfeat::Precision::Int8
            && self.engine.extractor != ExtractorKind::Xfeat
        {
            return bad(
                "engine.precision",
                "int8 exists for the xfeat extractor only (use auto or fp32)",
            );
        }
        if let Some(t) = self.engine.detection_threshold {
            if !t.is_finite() {
                return bad("engine.detection_threshold", "must be finite");
            }
        }
        if let Err(e) = self.vo.validate() {
            return bad("vo", &e.to_string());
        }
        if let Err(e) = self.map.validate() {
            return bad("map", &e);
        }
        if let Err((key, reason)) = self.track.check() {
            return bad(&format!("track.{key}"), reason);
        }
        let p = &self.pose;
        if !(p.threshold_px.is_finite() && p.threshold_px > 0.0) {
            return bad("pose.threshold_px", "must be a positive number of pixels");
        }
        if !(p.confidence > 0.0 && p.confidence < 1.0) {
            return bad("pose.confidence", "must be in (0, 1)");
        }
        if p.max_iterations == 0 || p.min_iterations > p.max_iterations {
            return bad(
                "pose.max_iterations",
                "must be > 0 and >= pose.min_iterations",
            );
        }
        if p.min_inliers < 5 {
            return bad("pose.min_inliers", "must be >= 5 (the minimal sample)");
        }
        let m = &self.matcher;
        if !(m.mnn.ratio > 0.0 && m.mnn.ratio <= 1.0) {
            return bad(
                "matcher.mnn.ratio",
                "must be in (0, 1] (1 disables the ratio test)",
            );
        }
        if !(0.0..=1.0).contains(&m.lightglue_threshold) {
            return bad("matcher.lightglue_threshold", "must be in [0, 1]");
        }
        if let Err((key, reason)) = m.refine.check() {
            return bad(&format!("matcher.refine.{key}"), reason);
        }
        if self.runtime.providers.is_empty() {
            return bad(
                "runtime.providers",
                "list at least one of tensorrt, cuda, cpu",
            );
        }
        Ok(())
    }
}

/// If `value` is `{<any>: {ros__parameters: X}}`, returns X; otherwise `value`.
fn unwrap_ros_parameters(value: serde_json::Value) -> serde_json::Value {
    if let serde_json::Value::Object(map) = &value {
        if map.len() == 1 {
            if let Some(serde_json::Value::Object(inner)) = map.values().next() {
                if let Some(params) = inner.get("ros__parameters") {
                    return params.clone();
                }
            }
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip_through_the_yaml_and_from_str() {
        for kind in ExtractorKind::ALL {
            let yaml = serde_yaml_ng::to_string(&kind).unwrap();
            assert_eq!(yaml.trim(), kind.name());
            assert_eq!(kind.name().parse::<ExtractorKind>().unwrap(), kind);
        }
        for kind in MatcherKind::ALL {
            assert_eq!(serde_yaml_ng::to_string(&kind).unwrap().trim(), kind.name());
            assert_eq!(kind.name().parse::<MatcherKind>().unwrap(), kind);
        }
        let err = "sift".parse::<ExtractorKind>().unwrap_err().to_string();
        assert!(err.contains("xfeat, disk, aliked, matcha"), "{err}");
    }

    #[test]
    fn bundled_config_parses_and_equals_defaults_for_core_sections() {
        let text = include_str!("../config/matcha.yaml");
        let cfg = MatchaConfig::from_yaml_str(text).expect("config/matcha.yaml must parse");
        let def = MatchaConfig::default();
        assert_eq!(cfg.engine.extractor, def.engine.extractor);
        assert_eq!(cfg.engine.max_keypoints, def.engine.max_keypoints);
        assert_eq!(cfg.pose, def.pose);
        assert_eq!(cfg.matcher, def.matcher);
    }

    #[test]
    fn bare_tree_and_errors() {
        let cfg =
            MatchaConfig::from_yaml_str("engine: {extractor: disk, max_keypoints: 100}").unwrap();
        assert_eq!(cfg.engine.extractor, ExtractorKind::Disk);
        assert_eq!(cfg.engine.max_keypoints, 100);
        assert!(MatchaConfig::from_yaml_str("").is_ok());
        let typo = MatchaConfig::from_yaml_str("engine: {extracter: disk}");
        assert!(matches!(typo, Err(ConfigError::Parse(m)) if m.contains("extracter")));
        let range = MatchaConfig::from_yaml_str("pose: {threshold_px: -1}");
        assert!(
            matches!(range, Err(ConfigError::Invalid { key, .. }) if key == "pose.threshold_px")
        );
    }

    #[test]
    fn precision_values() {
        use crate::features::xfeat::Precision;
        assert_eq!(MatchaConfig::default().engine.precision, Precision::Auto);
        let int8 = MatchaConfig::from_yaml_str("engine: {precision: int8}").unwrap();
        assert_eq!(int8.engine.precision, Precision::Int8);
        let fp32 =
            MatchaConfig::from_yaml_str("engine: {extractor: disk, precision: fp32}").unwrap();
        assert_eq!(fp32.engine.precision, Precision::Fp32);
        // DISK and MATCHA have float32 engines only
        let disk = MatchaConfig::from_yaml_str("engine: {extractor: disk, precision: int8}");
        assert!(matches!(disk, Err(ConfigError::Invalid { key, .. }) if key == "engine.precision"));
        let unknown = MatchaConfig::from_yaml_str("engine: {precision: fp16}");
        assert!(matches!(unknown, Err(ConfigError::Parse(m)) if m.contains("fp16")));
    }

    #[test]
    fn refine_section() {
        // on by default (the CPU default's accuracy relies on it); off by the key
        assert!(MatchaConfig::default().matcher.refine.enabled);
        let off = MatchaConfig::from_yaml_str("matcher: {refine: {enabled: false}}").unwrap();
        assert!(!off.matcher.refine.enabled);
        let on = MatchaConfig::from_yaml_str("matcher: {refine: {patch_radius: 3}}").unwrap();
        assert!(on.matcher.refine.enabled);
        assert_eq!(on.matcher.refine.patch_radius, 3);
        assert_eq!(
            on.matcher.refine.max_iterations,
            RefineOptions::default().max_iterations
        );
        let typo = MatchaConfig::from_yaml_str("matcher: {refine: {radius: 3}}");
        assert!(matches!(typo, Err(ConfigError::Parse(m)) if m.contains("radius")));
        let range = MatchaConfig::from_yaml_str("matcher: {refine: {max_shift_px: 0}}");
        assert!(
            matches!(range, Err(ConfigError::Invalid { key, .. }) if key == "matcher.refine.max_shift_px")
        );
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        const BUNDLED: &str = include_str!("../config/matcha.yaml");

        proptest! {
            #[test]
            fn any_text_parses_or_errors(text in "\\PC{0,400}") {
                let _ = MatchaConfig::from_yaml_str(&text);
            }

            #[test]
            fn the_bundled_file_with_a_line_changed_parses_or_errors(
                line in any::<prop::sample::Index>(),
                replacement in prop_oneof![
                    Just(String::new()),
                    "[ a-z_:0-9.\\-\\[\\]{}\"']{0,40}",
                    Just("      threads: -1".to_string()),
                    Just("      max_keypoints: 99999999999999999999".to_string()),
                    Just("      threshold_px: .nan".to_string()),
                ],
            ) {
                let mut lines: Vec<String> = BUNDLED.lines().map(str::to_string).collect();
                let k = line.index(lines.len());
                lines[k] = replacement;
                let _ = MatchaConfig::from_yaml_str(&lines.join("\n"));
            }
        }
    }
}
