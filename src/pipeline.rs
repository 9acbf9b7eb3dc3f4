//! The pipeline: one extractor, one matcher and the robust pose estimator wired together for an image pair
//! or a stream, with timings. The CLI, the ROS node, the benchmarks and the tests all go through here.
//!
//! Inputs are 8-bit RGB images and pinhole cameras in the pixels of those images; outputs are
//! [`Features`], [`Matches`] and a pose result. Images larger than `engine.max_image_side` are downscaled
//! for extraction and their keypoints mapped back, so callers never deal with engine sizes.
//!
//! With `matcher.refine.enabled`, extraction also keeps each frame's grayscale image in [`Features::gray`],
//! and for each pair a first pose from the detector's keypoints picks the matches to refine photometrically
//! (its inliers; [`crate::matching::refine`]); the pose is then re-estimated from that pose without new
//! sampling, from the detector's keypoints in a and the refined positions in b, with the unrefined matches
//! weighted by their measured precision ([`reestimate_refined`]). [`Features::keypoints`] and [`Matches`]
//! stay the detector's and matcher's; [`PairResult::refinement`] has the refined positions.
//! This module knows nothing of ROS or ONNX types.

use std::time::Instant;

use crate::config::{ExtractorKind, MatchaConfig, MatcherKind};
use crate::features::disk::{Disk, DiskOptions};
use crate::features::matcha::Matcha;
use crate::features::xfeat::{XFeat, XFeatOptions};
use crate::features::{FeatureError, FeatureExtractor, Features, GrayFrame};
use crate::geometry::essential::{essential_from_pose, sampson_sq, PixelWeights};
use crate::geometry::{
    estimate_relative_pose, refine_relative_pose_weighted, NoPose, PinholeCamera, RansacOptions,
    RelativePose,
};
use crate::image::RgbImage;
use crate::matching::lightglue::LightGlue;
use crate::matching::mnn::MutualNearestNeighbor;
use crate::matching::refine::{refine_selected_matches, RefineOptions, Refinement};
use crate::matching::{MatchError, Matcher, Matches};

/// Errors of the pipeline (all layers).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Configuration problem.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Extraction failed or the image was rejected.
    #[error(transparent)]
    Feature(#[from] FeatureError),
    /// Matching failed.
    #[error(transparent)]
    Match(#[from] MatchError),
    /// Something the configuration asks for is not available in this build.
    #[error("{0}")]
    Unsupported(String),
}

/// Result of matching two feature sets and estimating their relative pose.
#[derive(Debug, Clone)]
pub struct PairResult {
    /// Putative correspondences (before geometric verification).
    pub matches: Matches,
    /// The pose (with its inlier mask over `matches`), or why there is none.
    pub pose: Result<RelativePose, NoPose>,
    /// Sub-pixel positions in image b used for the pose, per match (`None` entries: detector's keypoint);
    /// `None` when refinement is off or a frame has no grayscale image (e.g. a map keyframe).
    pub refinement: Option<Refinement>,
    /// Matching time, milliseconds.
    pub match_ms: f64,
    /// Refinement time, milliseconds (0 when off).
    pub refine_ms: f64,
    /// Pose estimation time, milliseconds.
    pub pose_ms: f64,
}

impl PairResult {
    /// Position in image b of match `i` as used for the pose: refined, else the detector's keypoint.
    pub fn point_b(&self, i: usize, b: &Features) -> Option<[f32; 2]> {
        let m = self.matches.matches.get(i)?;
        self.refinement
            .as_ref()
            .and_then(|r| r.points_b.get(i).copied().flatten())
            .or_else(|| b.keypoints.get(m.b as usize).copied())
    }
}

/// Extractor + matcher + pose estimator.
pub struct Pipeline {
    extractor: Box<dyn FeatureExtractor>,
    matcher: Box<dyn Matcher>,
    ransac: RansacOptions,
    max_image_side: u32,
    refine: RefineOptions,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("extractor", &self.extractor.name())
            .field("matcher", &self.matcher.name())
            .field("ransac", &self.ransac)
            .field("refine", &self.refine)
            .finish()
    }
}

/// DISK settings from the configuration (DISK itself, and MATCHA's keypoint detector).
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
            let extractor = match config.engine.extractor {
                ExtractorKind::Xfeat => "xfeat",
                ExtractorKind::Disk | ExtractorKind::Matcha => "disk",
            };
            if config.engine.extractor == ExtractorKind::Matcha {
                return Err(PipelineError::Unsupported(
                    "matcher 'lightglue' has no engine for MATCHA descriptors; use matcher 'mnn'"
                        .into(),
                ));
            }
            Ok(Box::new(LightGlue::new(
                &config.runtime,
                extractor,
                config.matcher.lightglue_threshold,
            )?))
        }
    }
}

impl Pipeline {
    /// Builds the pipeline: loads the engines named by `config` (validated first).
    pub fn new(config: &MatchaConfig) -> Result<Self, PipelineError> {
        config.validate()?;
        Ok(Self {
            extractor: build_extractor(config)?,
            matcher: build_matcher(config)?,
            ransac: config.pose.clone(),
            max_image_side: config.engine.max_image_side,
            refine: config.matcher.refine.clone(),
        })
    }

    /// Builds a pipeline from parts (tests, benchmarks, custom engines); match refinement off
    /// (see [`Pipeline::with_refinement`]).
    pub fn from_parts(
        extractor: Box<dyn FeatureExtractor>,
        matcher: Box<dyn Matcher>,
        ransac: RansacOptions,
        max_image_side: u32,
    ) -> Self {
        Self {
            extractor,
            matcher,
            ransac,
            max_image_side,
            refine: RefineOptions::default(),
        }
    }

    /// Sets the match refinement (`enabled` decides whether frames keep their grayscale image).
    pub fn with_refinement(mut self, refine: RefineOptions) -> Self {
        self.refine = refine;
        self
    }

    /// The match refinement options.
    pub fn refine_options(&self) -> &RefineOptions {
        &self.refine
    }

    /// Name of the descriptor (published with correspondences).
    pub fn descriptor_name(&self) -> &str {
        self.extractor.name()
    }

    /// Name of the matcher.
    pub fn matcher_name(&self) -> &str {
        self.matcher.name()
    }

    /// The pose estimator options.
    pub fn ransac_options(&self) -> &RansacOptions {
        &self.ransac
    }

    /// Extracts features; keypoints are in the pixels of `image` whatever resizing happens inside.
    pub fn extract(&mut self, image: &RgbImage) -> Result<Features, PipelineError> {
        extract_with(
            self.extractor.as_mut(),
            self.max_image_side,
            self.refine.enabled,
            image,
        )
    }

    /// Matches `a` to `b` and estimates the pose of b relative to a (`x_b = R·x_a + t`).
    pub fn match_pair(
        &mut self,
        a: &Features,
        camera_a: &PinholeCamera,
        b: &Features,
        camera_b: &PinholeCamera,
    ) -> Result<PairResult, PipelineError> {
        match_refine_pose(
            self.matcher.as_mut(),
            &self.refine,
            &self.ransac,
            (a, camera_a),
            (b, camera_b),
        )
    }
}

/// Matching, optional refinement and the pose for one pair (shared by [`Pipeline::match_pair`] and the
/// stream). Refinement runs on the calling thread (a few milliseconds per pair): in parallel on the
/// matcher's worker threads the node's RSS swung between 154 and 183 MiB through a 10-minute run, for 3–4 ms
/// less latency at the median.
fn match_refine_pose(
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
        let pose = estimate_pose_from_matches(a, camera_a, b, camera_b, &matches, ransac);
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
    let first = estimate_pose_from_matches(a, camera_a, b, camera_b, &matches, ransac);
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
        Ok(p) => {
            reestimate_refined(a, camera_a, b, camera_b, &matches, &refinement, p, ransac).or(first)
        }
        Err(_) => estimate_pose_refined(
            a,
            camera_a,
            b,
            camera_b,
            &matches,
            Some(&refinement),
            ransac,
        ),
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

/// One frame's result in [`Pipeline::process_stream`].
#[derive(Debug)]
pub struct StreamStep {
    /// Index of the frame in the input sequence.
    pub index: usize,
    /// Features of this frame (or why extraction failed; the stream goes on).
    pub features: Result<Features, PipelineError>,
    /// Extraction time of this frame, milliseconds (on the extraction thread).
    pub extract_ms: f64,
    /// Match and pose against the previous successfully extracted frame (`None` for the first one).
    pub pair: Option<Result<PairResult, PipelineError>>,
}

impl Pipeline {
    /// Processes a camera stream in two overlapping stages: a worker thread extracts frame `k + 1` while the
    /// calling thread matches frame `k` to frame `k − 1` and estimates their pose. On two cores this nearly
    /// doubles the throughput of the sequential loop (the extractor and the matcher/pose solver each keep
    /// one core busy); latency per frame stays extract + match + pose. The hand-over channel holds one frame,
    /// so memory stays bounded. Each frame is extracted exactly once; `on_step` sees frames in order.
    pub fn process_stream<I, F>(&mut self, frames: I, camera: &PinholeCamera, mut on_step: F)
    where
        I: IntoIterator<Item = RgbImage> + Send,
        I::IntoIter: Send,
        F: FnMut(StreamStep),
    {
        let max_side = self.max_image_side;
        let keep_gray = self.refine.enabled;
        // the extraction thread keeps one core busy: the matcher gets the other one alone
        let matcher_threads = self.matcher.set_threads(1);
        let (tx, rx) =
            std::sync::mpsc::sync_channel::<(usize, Result<Features, PipelineError>, f64)>(1);
        let extractor = &mut self.extractor;
        let matcher = &mut self.matcher;
        let ransac = &self.ransac;
        let refine = &self.refine;
        std::thread::scope(|scope| {
            scope.spawn(move || {
                for (index, image) in frames.into_iter().enumerate() {
                    let t0 = Instant::now();
                    let f = extract_with(extractor.as_mut(), max_side, keep_gray, &image);
                    let ms = t0.elapsed().as_secs_f64() * 1e3;
                    if tx.send((index, f, ms)).is_err() {
                        break;
                    }
                }
            });
            let mut previous: Option<Features> = None;
            for (index, features, extract_ms) in rx {
                let pair = match (&previous, &features) {
                    (Some(prev), Ok(cur)) => Some(match_refine_pose(
                        matcher.as_mut(),
                        refine,
                        ransac,
                        (prev, camera),
                        (cur, camera),
                    )),
                    _ => None,
                };
                if let Ok(f) = &features {
                    previous = Some(f.clone());
                }
                on_step(StreamStep {
                    index,
                    features,
                    extract_ms,
                    pair,
                });
            }
        });
        self.matcher.set_threads(matcher_threads);
    }
}

/// Extraction with the large-image downscale of [`Pipeline::extract`] (shared by the stream worker); keeps
/// the original-size grayscale image when `keep_gray`.
fn extract_with(
    extractor: &mut dyn FeatureExtractor,
    max_image_side: u32,
    keep_gray: bool,
    image: &RgbImage,
) -> Result<Features, PipelineError> {
    let mut f = extract_resized(extractor, max_image_side, image)?;
    if keep_gray {
        f.gray = Some(GrayFrame::from_rgb(image));
    }
    Ok(f)
}

fn extract_resized(
    extractor: &mut dyn FeatureExtractor,
    max_image_side: u32,
    image: &RgbImage,
) -> Result<Features, PipelineError> {
    let (w, h) = image.dimensions();
    let min = extractor.min_image_side();
    if w < min || h < min {
        return Err(FeatureError::BadImage {
            extractor: extractor.name().to_string(),
            reason: format!("{w}×{h} is smaller than the network stride ({min} px per side)"),
        }
        .into());
    }
    let longest = w.max(h);
    if max_image_side == 0 || longest <= max_image_side {
        return Ok(extractor.extract(image)?);
    }
    let s = max_image_side as f64 / longest as f64;
    let (sw, sh) = (
        ((w as f64 * s).round() as u32).max(min),
        ((h as f64 * s).round() as u32).max(min),
    );
    let small = ::image::imageops::resize(image, sw, sh, ::image::imageops::FilterType::Triangle);
    let mut f = extractor.extract(&small)?;
    // Pixel-centre-at-integer convention: x = (x' + 0.5)·(w/w') − 0.5.
    let (fx, fy) = (w as f32 / sw as f32, h as f32 / sh as f32);
    for k in &mut f.keypoints {
        k[0] = (k[0] + 0.5) * fx - 0.5;
        k[1] = (k[1] + 0.5) * fy - 0.5;
    }
    f.image_size = [w, h];
    Ok(f)
}

/// Runs the robust estimator on matched keypoints (match scores give the PROSAC order).
pub fn estimate_pose_from_matches(
    a: &Features,
    camera_a: &PinholeCamera,
    b: &Features,
    camera_b: &PinholeCamera,
    matches: &Matches,
    options: &RansacOptions,
) -> Result<RelativePose, NoPose> {
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
) -> Result<PairPoints, NoPose> {
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
            return Err(NoPose::Degenerate(format!(
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
/// With a refinement the two kinds of match differ in precision (on the rendered set, against the true
/// pose: 0.10 px RMS Sampson error refined, 0.52 px left unrefined). LO-RANSAC estimates the pose with
/// equal weights; [`reestimate_refined`] then weights the unrefined matches by the measured ratio.
pub fn estimate_pose_refined(
    a: &Features,
    camera_a: &PinholeCamera,
    b: &Features,
    camera_b: &PinholeCamera,
    matches: &Matches,
    refinement: Option<&Refinement>,
    options: &RansacOptions,
) -> Result<RelativePose, NoPose> {
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
) -> Result<RelativePose, NoPose> {
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
