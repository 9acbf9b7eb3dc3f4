//! Relative-pose accuracy evaluation on image pairs with ground truth: data-set manifests, running a
//! pipeline over them, scoring any method's poses the same way (pose error = max of rotation and
//! translation-direction angle, failures infinite, AUC@5/10/20°; pure-rotation pairs scored on the
//! rotation, a rotation without translation on a pair with one counts 90°), gross-failure rates (over 10°
//! and over 20°, per pair category), the two-view configurations each method reported, tables and the
//! recall-curve plot.
//!
//! Baselines computed elsewhere (OpenCV SIFT + PoseLib, XFeat-Python + PoseLib, written by
//! `tools/eval_baselines.py`) are read as result files and scored by the same code as ours, so the numbers are
//! comparable by construction. The data sets themselves are built by `tools/eval_sets.py`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use nalgebra::{Matrix3, Vector3};
use plotters::prelude::*;

use crate::geometry::metrics::{pose_auc, pose_error_max_deg};
use crate::geometry::{Distortion, NoPose, PinholeCamera};
use crate::image::RgbImage;
use crate::pipeline::{Frame, Pipeline, PipelineError};

/// AUC thresholds, degrees.
pub const AUC_THRESHOLDS: [f64; 3] = [5.0, 10.0, 20.0];

/// Errors of the evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// File problem.
    #[error("{path}: {reason}")]
    File {
        /// File.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Pipeline failure (engine, image).
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

/// Intrinsics of one image in a manifest.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct CameraSpec {
    /// Focal length x, pixels.
    pub fx: f64,
    /// Focal length y, pixels.
    pub fy: f64,
    /// Principal point x, pixels (pixel centres at integers).
    pub cx: f64,
    /// Principal point y, pixels.
    pub cy: f64,
    /// plumb_bob `[k1, k2, p1, p2, k3]` (any prefix; empty = none).
    #[serde(default)]
    pub dist: Vec<f64>,
}

impl CameraSpec {
    /// The camera model.
    pub fn camera(&self) -> Result<PinholeCamera, String> {
        let cam =
            PinholeCamera::new(self.fx, self.fy, self.cx, self.cy).map_err(|e| e.to_string())?;
        if self.dist.iter().all(|&d| d == 0.0) {
            return Ok(cam);
        }
        let d = Distortion::from_slice(&self.dist).map_err(|e| e.to_string())?;
        cam.with_distortion(d).map_err(|e| e.to_string())
    }
}

/// One pair with ground truth `x_b = R·x_a + t`.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct PairSpec {
    /// Unique id within the set.
    pub id: String,
    /// Image a, relative to the manifest's folder.
    pub image_a: PathBuf,
    /// Image b.
    pub image_b: PathBuf,
    /// Intrinsics of a.
    pub camera_a: CameraSpec,
    /// Intrinsics of b.
    pub camera_b: CameraSpec,
    /// Ground-truth rotation (rows).
    #[serde(rename = "R")]
    pub r: [[f64; 3]; 3],
    /// Ground-truth translation (any scale; zero for a pure rotation).
    pub t: [f64; 3],
    /// Kind of view pair (e.g. `wall`, `floor`, `pure_rotation`), when the set names one.
    #[serde(default)]
    pub category: Option<String>,
}

/// A data set.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct Manifest {
    /// Set name.
    pub name: String,
    /// What it is.
    #[serde(default)]
    pub description: String,
    /// The pairs.
    pub pairs: Vec<PairSpec>,
    /// Folder of the manifest (image paths are relative to it).
    #[serde(skip)]
    pub root: PathBuf,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::File {
        path: path.into(),
        reason: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| EvalError::File {
        path: path.into(),
        reason: e.to_string(),
    })
}

impl Manifest {
    /// Reads a `manifest.json`.
    pub fn load(path: &Path) -> Result<Self, EvalError> {
        let mut m: Manifest = read_json(path)?;
        m.root = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(m)
    }
}

/// One method's estimate for one pair (`None` pose = failure).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct PairEstimate {
    /// Pair id.
    pub id: String,
    /// Estimated rotation, or null.
    #[serde(rename = "R")]
    pub r: Option<[[f64; 3]; 3]>,
    /// Estimated translation, or null.
    pub t: Option<[f64; 3]>,
    /// Putative matches.
    #[serde(default)]
    pub num_matches: usize,
    /// Inliers of the pose.
    #[serde(default)]
    pub num_inliers: usize,
    /// Stage times, milliseconds.
    #[serde(default)]
    pub time_ms: HashMap<String, f64>,
    /// Two-view configuration the method reported (`general`, `planar`, `panoramic`,
    /// `planar_ambiguous`, or a baseline's own names), when it reports one.
    #[serde(default)]
    pub configuration: Option<String>,
}

/// All estimates of one method on one set.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct MethodResults {
    /// Method name.
    pub method: String,
    /// Per-pair estimates.
    pub pairs: Vec<PairEstimate>,
}

impl MethodResults {
    /// Reads a result file of `tools/eval_baselines.py`.
    pub fn load(path: &Path) -> Result<Self, EvalError> {
        read_json(path)
    }
}

/// Scores of one method on one set.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MethodScore {
    /// Method name.
    pub method: String,
    /// AUC at [`AUC_THRESHOLDS`], percent.
    pub auc: Vec<f64>,
    /// Per-pair pose errors (degrees, infinity = failure), in manifest order.
    pub errors: Vec<f64>,
    /// Pairs with a pose.
    pub successes: usize,
    /// Pairs off by more than 10° (failures included).
    pub over_10: usize,
    /// Pairs off by more than 20° (failures included).
    pub over_20: usize,
    /// Pairs off by more than 20° per category (sets without categories: none).
    pub over_20_by_category: BTreeMap<String, usize>,
    /// Per configuration the method reported: how many pairs, and how many of those are off by more
    /// than 20° (so a configuration label can be judged, e.g. how often `planar_ambiguous` guesses wrong).
    pub configurations: BTreeMap<String, ConfigurationCount>,
    /// Median inliers.
    pub median_inliers: f64,
    /// Median total time per pair, ms (0 if unknown).
    pub median_time_ms: f64,
}

/// Pairs reported in one configuration, and how many of them are off by more than 20°.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConfigurationCount {
    /// Pairs reported in the configuration.
    pub pairs: usize,
    /// Of those, pairs off by more than 20°.
    pub over_20: usize,
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        crate::util::stats::median(v)
    }
}

/// Scores `results` against the ground truth of `manifest` (pairs missing from `results` are failures).
pub fn score(manifest: &Manifest, results: &MethodResults) -> MethodScore {
    let by_id: HashMap<&str, &PairEstimate> =
        results.pairs.iter().map(|p| (p.id.as_str(), p)).collect();
    let mut errors = Vec::with_capacity(manifest.pairs.len());
    let mut inliers = Vec::new();
    let mut times = Vec::new();
    let mut over_20_by_category = BTreeMap::new();
    let mut configurations = BTreeMap::new();
    for pair in &manifest.pairs {
        let r_gt = Matrix3::from_fn(|i, j| pair.r[i][j]);
        let t_gt = Vector3::from(pair.t);
        let est = by_id.get(pair.id.as_str());
        let err = match est.and_then(|e| e.r.map(|r| (r, e.t))) {
            Some((r, t)) => pose_error_max_deg(
                &Matrix3::from_fn(|i, j| r[i][j]),
                t.map(Vector3::from).as_ref(),
                &r_gt,
                &t_gt,
            ),
            None => f64::INFINITY,
        };
        errors.push(err);
        if let Some(c) = &pair.category {
            *over_20_by_category.entry(c.clone()).or_insert(0) += usize::from(err > 20.0);
        }
        if let Some(c) = est.and_then(|e| e.configuration.clone()) {
            let n: &mut ConfigurationCount = configurations.entry(c).or_default();
            n.pairs += 1;
            n.over_20 += usize::from(err > 20.0);
        }
        if let Some(e) = est {
            inliers.push(e.num_inliers as f64);
            let total: f64 = e.time_ms.values().sum();
            if total > 0.0 {
                times.push(total);
            }
        }
    }
    MethodScore {
        method: results.method.clone(),
        auc: pose_auc(&errors, &AUC_THRESHOLDS)
            .iter()
            .map(|a| 100.0 * a)
            .collect(),
        successes: errors.iter().filter(|e| e.is_finite()).count(),
        over_10: errors.iter().filter(|&&e| e > 10.0).count(),
        over_20: errors.iter().filter(|&&e| e > 20.0).count(),
        over_20_by_category,
        configurations,
        errors,
        median_inliers: median(&inliers),
        median_time_ms: median(&times),
    }
}

/// Runs `pipeline` on every pair of `manifest` as `matcha match` does ([`Pipeline::match_images`], with
/// its denser second try on an ambiguous pair; the first try's features of an image are computed once and
/// reused).
pub fn run_pipeline(
    manifest: &Manifest,
    pipeline: &mut Pipeline,
    method: &str,
) -> Result<MethodResults, EvalError> {
    type Extracted = (Rc<RgbImage>, crate::features::Features, f64);
    let mut cache: HashMap<PathBuf, Extracted> = HashMap::new();
    let mut pairs = Vec::new();
    for pair in &manifest.pairs {
        let mut extract = |rel: &Path| -> Result<Extracted, EvalError> {
            let path = manifest.root.join(rel);
            if let Some(hit) = cache.get(&path) {
                return Ok(hit.clone());
            }
            let image = crate::image::load(&path).map_err(|e| EvalError::File {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            let t0 = std::time::Instant::now();
            let f = pipeline.extract(&image)?;
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            let hit = (Rc::new(image), f, ms);
            cache.insert(path, hit.clone());
            Ok(hit)
        };
        let (img_a, fa, ta) = extract(&pair.image_a)?;
        let (img_b, fb, tb) = extract(&pair.image_b)?;
        let bad_cam = |e: String| EvalError::File {
            path: manifest.root.join("manifest.json"),
            reason: format!("pair {}: {e}", pair.id),
        };
        let cam_a = pair.camera_a.camera().map_err(bad_cam)?;
        let cam_b = pair.camera_b.camera().map_err(bad_cam)?;
        let both = pipeline.match_images(
            Frame::new(&img_a, &fa, &cam_a),
            Frame::new(&img_b, &fb, &cam_b),
        )?;
        let extract_ms = ta + tb + both.retried.as_ref().map_or(0.0, |r| r.2);
        let res = both.pair;
        // an ambiguity is scored on its best guess, as `matcha match` reports it; its label keeps it apart
        let reported = crate::geometry::reported_pose(&res.pose);
        let configuration = match &res.pose {
            Err(NoPose::PlanarAmbiguity { .. }) => Some("planar_ambiguous".to_string()),
            _ => reported.map(|p| p.configuration.name().to_string()),
        };
        let r = reported.map(|p| [0, 1, 2].map(|i| [0, 1, 2].map(|j| p.rotation[(i, j)])));
        let t = reported.and_then(|p| p.translation.map(|t| [t.x, t.y, t.z]));
        let inl = reported.map_or(0, |p| p.num_inliers);
        pairs.push(PairEstimate {
            id: pair.id.clone(),
            r,
            t,
            num_matches: res.matches.matches.len(),
            num_inliers: inl,
            time_ms: HashMap::from([
                ("extract".to_string(), extract_ms),
                ("match".to_string(), res.match_ms),
                ("refine".to_string(), res.refine_ms),
                ("pose".to_string(), res.pose_ms),
            ]),
            configuration,
        });
    }
    Ok(MethodResults {
        method: method.to_string(),
        pairs,
    })
}

/// Markdown table of the scores of several methods on one set, then (when the set has categories) the
/// pairs off by more than 20° per category, and the configurations each method reported.
pub fn table(set: &str, pairs: usize, scores: &[MethodScore]) -> String {
    let pct = |k: usize| 100.0 * k as f64 / pairs.max(1) as f64;
    let mut s = format!(
        "### {set} ({pairs} pairs)\n\n| method | AUC@5° | AUC@10° | AUC@20° | > 10° | > 20° | poses | median inliers | median ms/pair |\n|---|---|---|---|---|---|---|---|---|\n"
    );
    for m in scores {
        s += &format!(
            "| {} | {:.1} | {:.1} | {:.1} | {} ({:.1}%) | {} ({:.1}%) | {}/{} | {:.0} | {:.1} |\n",
            m.method,
            m.auc[0],
            m.auc[1],
            m.auc[2],
            m.over_10,
            pct(m.over_10),
            m.over_20,
            pct(m.over_20),
            m.successes,
            pairs,
            m.median_inliers,
            m.median_time_ms
        );
    }
    let categories: Vec<&String> = scores
        .iter()
        .flat_map(|m| m.over_20_by_category.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if !categories.is_empty() {
        s += "\nPairs off by > 20° per category:\n\n| method |";
        for c in &categories {
            s += &format!(" {c} |");
        }
        s += "\n|---|";
        s += &"---|".repeat(categories.len());
        s += "\n";
        for m in scores {
            s += &format!("| {} |", m.method);
            for c in &categories {
                s += &format!(" {} |", m.over_20_by_category.get(*c).copied().unwrap_or(0));
            }
            s += "\n";
        }
    }
    if scores.iter().any(|m| !m.configurations.is_empty()) {
        s += "\nConfigurations reported:\n\n";
        for m in scores.iter().filter(|m| !m.configurations.is_empty()) {
            let list: Vec<String> = m
                .configurations
                .iter()
                .map(|(k, v)| format!("{k} {} ({} off by > 20°)", v.pairs, v.over_20))
                .collect();
            s += &format!("- {}: {}\n", m.method, list.join(", "));
        }
    }
    s
}

/// Writes an SVG plot of the cumulative pose-error curves (recall vs error up to 20°) of each method; the
/// area under each curve up to τ, divided by τ, is the AUC@τ.
pub fn plot_recall_curves(
    path: &Path,
    title: &str,
    scores: &[MethodScore],
) -> Result<(), EvalError> {
    let err = |e: String| EvalError::File {
        path: path.into(),
        reason: e,
    };
    let root = SVGBackend::new(path, (720, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..20.0, 0.0..1.0)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("pose error (deg)")
        .y_desc("recall")
        .draw()
        .map_err(|e| err(e.to_string()))?;
    for (k, m) in scores.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let mut e: Vec<f64> = m.errors.iter().copied().filter(|x| x.is_finite()).collect();
        e.sort_by(f64::total_cmp);
        let n = m.errors.len().max(1) as f64;
        let mut pts = vec![(0.0, 0.0)];
        for (i, x) in e.iter().enumerate().filter(|(_, x)| **x <= 20.0) {
            pts.push((*x, i as f64 / n));
            pts.push((*x, (i + 1) as f64 / n));
        }
        let last = pts.last().map(|p| p.1).unwrap_or(0.0);
        pts.push((20.0, last));
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| err(e.to_string()))?
            .label(format!(
                "{} ({:.1}/{:.1}/{:.1})",
                m.method, m.auc[0], m.auc[1], m.auc[2]
            ))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        let cam = CameraSpec {
            fx: 500.0,
            fy: 500.0,
            cx: 320.0,
            cy: 240.0,
            dist: vec![],
        };
        let pair = |id: &str, t: [f64; 3]| PairSpec {
            id: id.into(),
            image_a: "a.png".into(),
            image_b: "b.png".into(),
            camera_a: cam.clone(),
            camera_b: cam.clone(),
            r: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            t,
            category: Some(
                if t == [0.0; 3] {
                    "pure_rotation"
                } else {
                    "general"
                }
                .into(),
            ),
        };
        Manifest {
            name: "toy".into(),
            description: String::new(),
            pairs: vec![pair("p0", [1.0, 0.0, 0.0]), pair("p1", [0.0, 1.0, 0.0])],
            root: PathBuf::new(),
        }
    }

    #[test]
    fn scores_exact_flipped_and_missing_estimates() {
        let m = manifest();
        // p0 exact but with flipped translation sign (folded → 0°); p1 missing → failure.
        let res = MethodResults {
            method: "x".into(),
            pairs: vec![PairEstimate {
                id: "p0".into(),
                r: Some(m.pairs[0].r),
                t: Some([-2.0, 0.0, 0.0]),
                num_matches: 10,
                num_inliers: 8,
                time_ms: HashMap::new(),
                configuration: Some("general".into()),
            }],
        };
        let s = score(&m, &res);
        assert_eq!(s.successes, 1);
        assert_eq!(s.errors[0], 0.0);
        assert!(s.errors[1].is_infinite());
        // Half the pairs perfect → AUC 50% at every threshold.
        for a in &s.auc {
            assert!((a - 50.0).abs() < 1e-9, "{a}");
        }
        let t = table("toy", 2, std::slice::from_ref(&s));
        assert!(
            t.contains("| x | 50.0 | 50.0 | 50.0 | 1 (50.0%) | 1 (50.0%) | 1/2 |"),
            "{t}"
        );
        assert_eq!(s.over_20_by_category.get("general"), Some(&1));
        assert_eq!(
            s.configurations.get("general"),
            Some(&ConfigurationCount {
                pairs: 1,
                over_20: 0
            })
        );
        assert!(t.contains("- x: general 1 (0 off by > 20°)"), "{t}");
        let dir = std::env::temp_dir().join(format!("matcha-eval-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        plot_recall_curves(&dir.join("c.svg"), "toy", &[s]).unwrap();
        assert!(std::fs::read_to_string(dir.join("c.svg"))
            .unwrap()
            .contains("<svg"));
    }

    #[test]
    fn pure_rotations_score_the_rotation_and_a_missing_translation_is_90_degrees() {
        let mut m = manifest();
        m.pairs[1].t = [0.0; 3]; // p1 is a pure rotation
        let rot = nalgebra::Rotation3::from_euler_angles(0.0, 0.0, 2f64.to_radians()).into_inner();
        let r2 = [0, 1, 2].map(|i| [0, 1, 2].map(|j| rot[(i, j)]));
        let est = |id: &str, t: Option<[f64; 3]>| PairEstimate {
            id: id.into(),
            r: Some(r2),
            t,
            num_matches: 10,
            num_inliers: 8,
            time_ms: HashMap::new(),
            configuration: None,
        };
        let res = MethodResults {
            method: "x".into(),
            // p0 has a translation: a rotation-only answer is 90° off; p1: rotation error only (2°), any t
            pairs: vec![est("p0", None), est("p1", Some([0.0, 0.0, 1.0]))],
        };
        let s = score(&m, &res);
        assert_eq!(s.errors[0], 90.0);
        assert!((s.errors[1] - 2.0).abs() < 1e-9, "{}", s.errors[1]);
        assert_eq!(s.over_10, 1);
    }
}
