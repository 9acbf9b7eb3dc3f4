//! `matcha map eval`: place recognition and localization on revisit queries with exact ground truth.
//!
//! Place recognition: every map keyframe's image (read from the map's sequence by stamp) and every query
//! get a place vector from each aggregation (VLAD, bag of words, mean pooling) over the same local
//! features; recall@k is the share of queries with a correct keyframe among the first k, over the queries
//! that have one in the map at all. A keyframe is correct for a query when its pose is within
//! `POSITIVE_M` of the query's camera and its optical axis within `POSITIVE_DEG` (a fixed, documented rule:
//! the rendered ground truth has no place labels).
//!
//! Localization: [`matcha::map::Localizer`] as configured; a pose is correct within 0.25 m and 2° of the
//! ground truth (the goal), wrong when accepted and not correct (every accepted pose of an
//! unmapped query is wrong). Time to first localization counts opening the map (index build included) and
//! the first query's extraction and localization.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use nalgebra::Isometry3;

use matcha::config::MatchaConfig;
use matcha::features::Features;
use matcha::geometry::PinholeCamera;
use matcha::map::index::scan;
use matcha::map::{Aggregation, MapStore};
use matcha::pipeline::Pipeline;
use matcha::util::stats::percentile;
use matcha::vo::sequence::StereoSequence;

/// A keyframe within this distance ...
const POSITIVE_M: f64 = 1.5;
/// ... and optical-axis angle of a query is a correct retrieval.
const POSITIVE_DEG: f64 = 30.0;
/// A localization within this distance and rotation of the ground truth is correct.
const CORRECT_M: f64 = 0.25;
/// See [`CORRECT_M`].
const CORRECT_DEG: f64 = 2.0;

struct Query {
    image: String,
    pose: Isometry3<f64>,
    condition: String,
    mapped: bool,
}

fn read_queries(dir: &Path) -> Result<(PinholeCamera, Vec<Query>)> {
    let path = dir.join("queries.json");
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))?;
    let c = &v["camera"];
    let num = |x: &serde_json::Value| x.as_f64().unwrap_or(f64::NAN);
    let camera = PinholeCamera::new(num(&c["fx"]), num(&c["fy"]), num(&c["cx"]), num(&c["cy"]))
        .context("queries.json camera")?;
    let mut out = Vec::new();
    for q in v["queries"]
        .as_array()
        .context("queries.json has no 'queries' list")?
    {
        let pose: Vec<f64> = q["pose"]
            .as_array()
            .map(|a| a.iter().map(num).collect())
            .unwrap_or_default();
        out.push(Query {
            image: q["image"]
                .as_str()
                .context("a query without 'image'")?
                .into(),
            pose: crate::map::pose_from_tum(&pose).context("a query with a bad 'pose'")?,
            condition: q["condition"].as_str().unwrap_or("").into(),
            mapped: q["mapped"].as_bool().unwrap_or(false),
        });
    }
    Ok((camera, out))
}

fn angle_deg(a: &Isometry3<f64>, b: &Isometry3<f64>) -> f64 {
    a.rotation.angle_to(&b.rotation).to_degrees()
}

fn axis_angle_deg(a: &Isometry3<f64>, b: &Isometry3<f64>) -> f64 {
    let z = nalgebra::Vector3::z();
    (a.rotation * z).angle(&(b.rotation * z)).to_degrees()
}

pub fn run(
    cfg: &MatchaConfig,
    map: &Path,
    sequence: &Path,
    queries_dir: &Path,
    out: Option<&Path>,
) -> Result<()> {
    let (camera, queries) = read_queries(queries_dir)?;
    if queries.is_empty() {
        bail!(
            "{} lists no queries",
            queries_dir.join("queries.json").display()
        );
    }
    let seq = StereoSequence::open(sequence)?;
    let mut pipeline = Pipeline::new(cfg).context("building the feature pipeline")?;
    // the first query, as a robot would meet it: open the map, extract, localize
    let t_first = Instant::now();
    let first_img = matcha::image::load(&queries_dir.join(&queries[0].image))?;
    let first = pipeline.extract(&first_img)?;
    let t_open = Instant::now();
    let localizer = cfg
        .map
        .open_localizer(map, pipeline.descriptor_name(), first.descriptor_dim())
        .with_context(|| format!("opening the map {}", map.display()))?;
    let open_ms = t_open.elapsed().as_secs_f64() * 1e3;
    localizer.localize(&first, &camera, None)?;
    let first_ms = t_first.elapsed().as_secs_f64() * 1e3;

    let store: &MapStore = localizer.store();
    let poses = store.poses()?;
    let mut kf_features: Vec<Features> = Vec::new();
    for (id, _) in &poses {
        let kf = store.keyframe(*id)?.context("keyframe vanished")?;
        let t = kf.stamp_ns as f64 * 1e-9;
        let f = seq
            .frames
            .iter()
            .min_by(|a, b| (a.stamp - t).abs().total_cmp(&(b.stamp - t).abs()))
            .context("empty sequence")?;
        if (f.stamp - t).abs() > 1e-3 {
            bail!(
                "keyframe {id} at {t:.3} s has no frame in {}",
                sequence.display()
            );
        }
        kf_features.push(pipeline.extract(&matcha::image::load(&seq.root.join(&f.left))?)?);
    }
    let mut q_features = vec![first];
    let mut extract_ms = Vec::new();
    for q in &queries[1..] {
        let img = matcha::image::load(&queries_dir.join(&q.image))?;
        let t = Instant::now();
        q_features.push(pipeline.extract(&img)?);
        extract_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }

    // place recognition
    let positives: Vec<Vec<bool>> = queries
        .iter()
        .map(|q| {
            poses
                .iter()
                .map(|(_, p)| {
                    (p.translation.vector - q.pose.translation.vector).norm() <= POSITIVE_M
                        && axis_angle_deg(p, &q.pose) <= POSITIVE_DEG
                })
                .collect()
        })
        .collect();
    let with_positive: Vec<usize> = (0..queries.len())
        .filter(|&i| queries[i].mapped && positives[i].iter().any(|&p| p))
        .collect();
    let mut report = String::new();
    report += &format!(
        "# Map evaluation: {} on {}\n\n{} keyframes; {} queries ({} mapped, {} with a keyframe within {POSITIVE_M} m / {POSITIVE_DEG} deg)\n\n",
        map.display(),
        queries_dir.display(),
        poses.len(),
        queries.len(),
        queries.iter().filter(|q| q.mapped).count(),
        with_positive.len()
    );
    report += "## Place recognition (same local features, exact ranking)\n\n| place descriptor | dim | R@1 | R@5 |\n|---|---|---|---|\n";
    for agg in [Aggregation::Vlad, Aggregation::Bow, Aggregation::Mean] {
        let place =
            crate::map::with_place(&cfg.map, agg).place_descriptor(first_dim(&q_features))?;
        let dim = place.dim();
        let rows: Vec<f32> = kf_features
            .iter()
            .flat_map(|f| place.compute(&f.descriptors))
            .collect();
        let (mut r1, mut r5) = (0usize, 0usize);
        for &i in &with_positive {
            let top = scan(&rows, dim, &place.compute(&q_features[i].descriptors), 5);
            r1 += top.first().is_some_and(|t| positives[i][t.0]) as usize;
            r5 += top.iter().any(|t| positives[i][t.0]) as usize;
        }
        let n = with_positive.len().max(1) as f64;
        report += &format!(
            "| {} | {dim} | {:.1} | {:.1} |\n",
            place.id(),
            100.0 * r1 as f64 / n,
            100.0 * r5 as f64 / n
        );
    }

    // localization
    let mut rows = Vec::new();
    let mut loc_ms = Vec::new();
    for (q, f) in queries.iter().zip(&q_features) {
        let loc = localizer.localize(f, &camera, None)?;
        loc_ms.push(loc.total_ms);
        let err = loc.map_from_camera.map(|p| {
            (
                (p.translation.vector - q.pose.translation.vector).norm(),
                angle_deg(&p, &q.pose),
            )
        });
        let sigma =
            (loc.covariance[(0, 0)] + loc.covariance[(1, 1)] + loc.covariance[(2, 2)]).sqrt();
        rows.push((
            q,
            err,
            loc.refused.clone(),
            (loc.inliers, loc.plane_share, sigma),
        ));
    }
    report += "\n## Localization (retrieval -> matching -> PnP -> verification)\n\n| queries | n | correct (<= 0.25 m, 2 deg) | wrong (accepted, not correct) | refused | median error of accepted |\n|---|---|---|---|---|---|\n";
    let mut groups: Vec<(String, Vec<usize>)> = vec![
        (
            "mapped".into(),
            (0..rows.len()).filter(|&i| queries[i].mapped).collect(),
        ),
        (
            "unmapped".into(),
            (0..rows.len()).filter(|&i| !queries[i].mapped).collect(),
        ),
    ];
    let mut conditions: Vec<String> = queries.iter().map(|q| q.condition.clone()).collect();
    conditions.sort();
    conditions.dedup();
    for c in conditions {
        let idx = (0..rows.len())
            .filter(|&i| queries[i].mapped && queries[i].condition == c)
            .collect();
        groups.push((format!("mapped, {c}"), idx));
    }
    for (name, idx) in groups.iter().filter(|(_, idx)| !idx.is_empty()) {
        let (mut correct, mut wrong, mut refused) = (0, 0, 0);
        let mut errs = Vec::new();
        for &i in idx {
            match rows[i].1 {
                Some((m, d)) => {
                    errs.push(m);
                    if queries[i].mapped && m <= CORRECT_M && d <= CORRECT_DEG {
                        correct += 1;
                    } else {
                        wrong += 1;
                    }
                }
                None => refused += 1,
            }
        }
        let n = idx.len().max(1) as f64;
        report += &format!(
            "| {name} | {} | {correct} ({:.1}%) | {wrong} ({:.1}%) | {refused} | {} |\n",
            idx.len(),
            100.0 * correct as f64 / n,
            100.0 * wrong as f64 / n,
            if errs.is_empty() {
                "-".into()
            } else {
                format!("{:.3} m", percentile(&errs, 0.5))
            }
        );
    }
    report += &format!(
        "\nTime: open the map (index build) {open_ms:.0} ms; time to first localization (extract + open + localize) {first_ms:.0} ms; per query: extraction p50 {:.0} ms, localization p50 {:.0} ms / max {:.0} ms (goal: first localization <= 1 s on 2 cores)\n",
        percentile(&extract_ms, 0.5),
        percentile(&loc_ms, 0.5),
        percentile(&loc_ms, 1.0)
    );
    report += "\nPer query (condition, mapped, error m / deg or why refused, inliers):\n\n";
    for (q, err, refused, inl) in &rows {
        report += &format!(
            "- {} {} {}: {} ({} inliers, {:.0}% on one plane, position sigma {:.3} m)\n",
            q.image,
            q.condition,
            if q.mapped { "mapped" } else { "unmapped" },
            match err {
                Some((m, d)) => format!("{m:.3} m / {d:.2} deg"),
                None => format!("refused: {}", refused.as_deref().unwrap_or("")),
            },
            inl.0,
            inl.1 * 100.0,
            inl.2
        );
    }
    print!("{report}");
    if let Some(p) = out {
        if let Some(d) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(p, &report).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

fn first_dim(f: &[Features]) -> usize {
    f.first().map_or(0, |f| f.descriptor_dim())
}
