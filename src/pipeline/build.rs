//! The extractor and the matcher that the configuration names (`engine.extractor`, `matcher.matcher`),
//! each with its options and engines.

use super::PipelineError;
use crate::config::{ExtractorKind, MatchaConfig, MatcherKind};
use crate::features::aliked::{Aliked, AlikedOptions};
use crate::features::disk::{Disk, DiskOptions};
use crate::features::matcha::Matcha;
use crate::features::xfeat::{XFeat, XFeatOptions};
use crate::features::FeatureExtractor;
use crate::matching::lightglue::LightGlue;
use crate::matching::mnn::MutualNearestNeighbor;
use crate::matching::Matcher;

fn disk_options(e: &crate::config::ExtractorConfig) -> DiskOptions {
    DiskOptions {
        max_keypoints: e.max_keypoints,
        detection_threshold: e.detection_threshold.unwrap_or(0.0),
        nms_window: 5,
        resize_long_side: None,
        spread: e.spread,
    }
}

/// Builds the extractor named by the configuration.
pub fn build_extractor(config: &MatchaConfig) -> Result<Box<dyn FeatureExtractor>, PipelineError> {
    let e = &config.engine;
    Ok(match e.extractor {
        ExtractorKind::Xfeat => Box::new(XFeat::new(
            &config.runtime,
            XFeatOptions {
                max_keypoints: e.max_keypoints,
                detection_threshold: e.detection_threshold.unwrap_or(0.05),
                subpixel: e.subpixel,
                precision: e.precision,
                spread: e.spread,
            },
        )?),
        ExtractorKind::Disk => Box::new(Disk::new(&config.runtime, disk_options(e))?),
        ExtractorKind::Aliked => Box::new(Aliked::new(
            &config.runtime,
            AlikedOptions {
                max_keypoints: e.max_keypoints,
                detection_threshold: e.detection_threshold,
                resize_long_side: None,
                spread: e.spread,
            },
        )?),
        ExtractorKind::Matcha => {
            Box::new(Matcha::new(&config.runtime, &e.matcha, disk_options(e))?)
        }
    })
}

/// Builds the matcher named by the configuration.
pub fn build_matcher(config: &MatchaConfig) -> Result<Box<dyn Matcher>, PipelineError> {
    match config.matcher.matcher {
        MatcherKind::Mnn => Ok(Box::new(MutualNearestNeighbor::new(
            config.matcher.mnn.clone(),
            config.runtime.threads.max(1),
        ))),
        MatcherKind::Lightglue => {
            if config.engine.extractor == ExtractorKind::Matcha {
                return Err(PipelineError::Unsupported(
                    "matcher 'lightglue' has no engine for MATCHA descriptors; use matcher 'mnn'"
                        .into(),
                ));
            }
            Ok(Box::new(LightGlue::new(
                &config.runtime,
                config.engine.extractor.name(),
                config.matcher.lightglue_threshold,
            )?))
        }
    }
}

/// The MATCHA extractor of the semantic configuration (`matcha match --mode semantic`): `engine.extractor`
/// must be `matcha` and `engine.matcha.engines_dir` must hold engines exported with `--mode semantic`
/// (`tools/export_matcha.py`); anything else is refused with what to change.
pub fn build_semantic_extractor(config: &MatchaConfig) -> Result<Matcha, PipelineError> {
    if config.engine.extractor != ExtractorKind::Matcha {
        return Err(PipelineError::Unsupported(format!(
            "semantic matching runs the MATCHA semantic configuration, not '{}': set engine.extractor: matcha \
             (or --extractor matcha) and engine.matcha.engines_dir to engines exported with \
             tools/export_matcha.py --mode semantic",
            config.engine.extractor.name()
        )));
    }
    let m = Matcha::new(
        &config.runtime,
        &config.engine.matcha,
        disk_options(&config.engine),
    )?;
    let mode = m.mode();
    if mode != "semantic" {
        return Err(PipelineError::Unsupported(format!(
            "the MATCHA engines in engine.matcha.engines_dir ({}) are the '{mode}' configuration; semantic \
             matching needs engines exported with tools/export_matcha.py --mode semantic",
            config.engine.matcha.engines_dir.display()
        )));
    }
    Ok(m)
}
