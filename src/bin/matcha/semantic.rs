//! `matcha match --mode semantic`: semantic correspondences between two images with the MATCHA semantic
//! configuration (dense F_m of both images; each point of A to its most similar place in B, cycle-checked).
//! No pose: instances of one category share no geometry. Needs the real MATCHA weights to mean anything;
//! with the random-initialised engines of the tests it proves the plumbing only.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use matcha::config::MatchaConfig;
use matcha::features::FeatureExtractor;
use matcha::matching::semantic::{as_pair, semantic_matches};

/// Reads `[[x, y], ...]`.
fn read_points(path: &Path) -> Result<Vec<[f32; 2]>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read points {}", path.display()))?;
    let points: Vec<[f32; 2]> = serde_json::from_str(&text)
        .with_context(|| format!("{}: expected a JSON list of [x, y]", path.display()))?;
    if points.is_empty() || points.iter().flatten().any(|v| !v.is_finite()) {
        bail!(
            "{}: no points, or a point that is not finite",
            path.display()
        );
    }
    Ok(points)
}

pub fn run(
    cfg: &MatchaConfig,
    image_a: &Path,
    image_b: &Path,
    points: Option<&Path>,
    json: bool,
    out: Option<&Path>,
) -> Result<()> {
    let img_a = crate::load_image(image_a)?;
    let img_b = crate::load_image(image_b)?;
    let points = points.map(read_points).transpose()?;
    let mut extractor = matcha::pipeline::build_semantic_extractor(cfg)?;
    let t0 = Instant::now();
    let points_a = match points {
        Some(p) => p,
        None => {
            extractor
                .extract(&img_a)
                .with_context(|| format!("keypoints of {}", image_a.display()))?
                .keypoints
        }
    };
    let dense_a = extractor
        .dense_descriptors(&img_a)
        .with_context(|| format!("descriptors of {}", image_a.display()))?;
    let dense_b = extractor
        .dense_descriptors(&img_b)
        .with_context(|| format!("descriptors of {}", image_b.display()))?;
    let found = semantic_matches(&dense_a, &dense_b, &points_a);
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let kept: Vec<_> = found.iter().flatten().copied().collect();
    let mutual = kept.iter().filter(|m| m.mutual).count();
    if let Some(path) = out {
        let (fa, fb, matches) = as_pair(
            &kept,
            [img_a.width(), img_a.height()],
            [img_b.width(), img_b.height()],
        );
        let flags: Vec<bool> = kept.iter().map(|m| m.mutual).collect();
        let pic = matcha::viz::draw_matches(&img_a, &fa, &img_b, &fb, &matches, Some(&flags), 150);
        pic.save(path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if json {
        let list: Vec<serde_json::Value> = found
            .iter()
            .map(|m| match m {
                Some(m) => serde_json::to_value(m).unwrap_or(serde_json::Value::Null),
                None => serde_json::Value::Null,
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "mode": "semantic",
                "descriptor": extractor.name(),
                "configuration": extractor.mode(),
                "points": points_a.len(),
                "mutual": mutual,
                "matches": list,
                "time_ms": ms,
            })
        );
    } else {
        println!(
            "semantic ({}): {} points of A, {} matched, {} cycle-consistent, {:.0} ms",
            extractor.mode(),
            points_a.len(),
            kept.len(),
            mutual,
            ms
        );
    }
    Ok(())
}
