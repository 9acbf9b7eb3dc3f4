//! Parity of the LightGlue / LighterGlue matcher engines (run from Rust, filtered by our `filter_matches`)
//! with the Python reference (`matches_static`: the same static graph run by PyTorch and LightGlue's own
//! filter) on the reference features of real photo pairs.
//!
//! Stated tolerance: ≥ 99% of the reference matches found, ≤ 1% extra, score |Δ| ≤ 2e-3 on common matches
//! (ONNX vs PyTorch probabilities differ by up to 1.9e-4; pairs whose probability sits at the 0.1 threshold can
//! flip).

use crate::common;

use std::collections::HashMap;

use matcha::features::Features;
use matcha::matching::lightglue::LightGlue;
use matcha::matching::Matcher;
use ndarray::{Array1, Array2};
use ndarray_npy::NpzReader;

fn npz(name: &str) -> NpzReader<std::fs::File> {
    let path = common::need(&format!("references/{name}.npz"));
    NpzReader::new(std::fs::File::open(path).unwrap()).unwrap()
}

fn features(name: &str, size: [u32; 2]) -> Features {
    let mut z = npz(name);
    let k: Array2<f32> = z.by_name("keypoints").unwrap();
    Features {
        keypoints: k.rows().into_iter().map(|r| [r[0], r[1]]).collect(),
        scores: z
            .by_name::<ndarray::OwnedRepr<f32>, ndarray::Ix1>("scores")
            .unwrap()
            .to_vec(),
        descriptors: z.by_name("descriptors").unwrap(),
        image_size: size,
        gray: None,
    }
}

fn check(extractor: &str, a: &str, b: &str) {
    let engine = matcha::matching::lightglue::engine_file(extractor);
    let mut r = npz(&format!("{}_{a}_{b}", engine.trim_end_matches(".onnx")));
    let s0: Array1<i64> = r.by_name("size0").unwrap();
    let s1: Array1<i64> = r.by_name("size1").unwrap();
    let reference: Array2<i64> = r.by_name("matches_static").unwrap();
    let ref_scores: Array1<f32> = r.by_name("match_scores_static").unwrap();
    let fa = features(&format!("{extractor}_{a}"), [s0[0] as u32, s0[1] as u32]);
    let fb = features(&format!("{extractor}_{b}"), [s1[0] as u32, s1[1] as u32]);
    let mut lg =
        LightGlue::new(&common::cpu_runtime(), extractor, 0.1).expect("matcher engine loads");
    let ours = lg.match_features(&fa, &fb).unwrap().matches;
    let by_pair: HashMap<(u32, u32), f32> = ours.iter().map(|m| ((m.a, m.b), m.score)).collect();
    let mut common_n = 0;
    let mut max_diff = 0f32;
    for (row, s) in reference.rows().into_iter().zip(ref_scores.iter()) {
        if let Some(&ours_s) = by_pair.get(&(row[0] as u32, row[1] as u32)) {
            common_n += 1;
            max_diff = max_diff.max((ours_s - s).abs());
        }
    }
    let n_ref = reference.nrows();
    println!(
        "{extractor} lightglue {a}-{b}: ours {} / reference {n_ref}, common {common_n}, score max |Δ| {max_diff:.2e}",
        ours.len()
    );
    assert!(common_n as f64 >= 0.99 * n_ref as f64);
    assert!(ours.len() as f64 <= 1.01 * n_ref as f64);
    assert!(max_diff <= 2e-3);
}

#[test]
fn lighterglue_matches_python_on_real_pairs() {
    check("xfeat", "graf1", "graf3");
    check("xfeat", "left01", "right01");
}

#[test]
fn disk_lightglue_matches_python_on_graffiti() {
    check("disk", "graf1", "graf3");
}

#[test]
fn aliked_lightglue_matches_python_on_graffiti() {
    check("aliked", "graf1", "graf3");
}
