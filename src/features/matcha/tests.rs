//! Tests of the MATCHA extractor that need no engines: manifest validation (also on generated text), the seeded
//! DIFT noise, the raw float32 reader.

use super::manifest::is_plain_file_name;
use super::*;

fn manifest_json(mode: &str, with_dino: bool) -> String {
    let dino = if with_dino {
        r#","dinov2":{"file":"dinov2.onnx","sha256":"x","inputs":[],"outputs":[]}"#
    } else {
        ""
    };
    format!(
        r#"{{"format":1,"model":"matcha","mode":"{mode}","descriptor_dim":64,"descriptor_stride":8,
        "input":{{"height":96,"width":160}},
        "dift":{{"ensemble_size":2,"prompt_embeds":{{"file":"p.f32","sha256":"x","shape":[1,77,32]}}}},
        "stages":{{"dift":{{"file":"dift.onnx","sha256":"x","inputs":[],"outputs":[]}},
        "fusion":{{"file":"fusion.onnx","sha256":"x","inputs":[],
          "outputs":[{{"name":"descriptors","shape":[1,64,12,20]}}]}}{dino}}}}}"#
    )
}

#[test]
fn manifest_validation() {
    let dir = Path::new("/nonexistent");
    let m = Manifest::parse(&manifest_json("geometric", true), dir).unwrap();
    assert_eq!(m.input_size(), (96, 160));
    assert_eq!(m.ensemble_size(), 2);
    assert!(Manifest::parse(&manifest_json("light", false), dir).is_ok());
    // mode / stage mismatch, unknown mode, wrong model, wrong size, wrong descriptor shape
    assert!(Manifest::parse(&manifest_json("geometric", false), dir).is_err());
    assert!(Manifest::parse(&manifest_json("light", true), dir).is_err());
    assert!(Manifest::parse(&manifest_json("fancy", true), dir).is_err());
    let j = manifest_json("geometric", true);
    assert!(Manifest::parse(&j.replace(r#""model":"matcha""#, r#""model":"xfeat""#), dir).is_err());
    assert!(Manifest::parse(&j.replace(r#""height":96"#, r#""height":100"#), dir).is_err());
    assert!(Manifest::parse(&j.replace("[1,64,12,20]", "[1,64,12,21]"), dir).is_err());
    assert!(Manifest::parse("{", dir).is_err());
}

#[test]
fn manifest_file_names_stay_in_the_engines_directory() {
    for bad in [
        "../dift.onnx",
        "/etc/passwd",
        "sub/dift.onnx",
        "..",
        ".",
        "",
    ] {
        let text = manifest_json("light", false).replacen("\"dift.onnx\"", &format!("{bad:?}"), 1);
        assert!(
            text.contains(&format!("{bad:?}")),
            "fixture names dift.onnx"
        );
        let e = Manifest::parse(&text, Path::new("/engines")).unwrap_err();
        assert!(e.to_string().contains("plain file name"), "{bad}: {e}");
    }
    assert!(is_plain_file_name("dift.onnx") && is_plain_file_name("dift.onnx.data"));
}

#[test]
fn noise_is_deterministic_standard_normal() {
    let a = standard_normal(7, 100_001);
    assert_eq!(a.len(), 100_001);
    assert_eq!(a, standard_normal(7, 100_001));
    assert_ne!(a[..10], standard_normal(8, 10)[..]);
    let n = a.len() as f64;
    let mean = a.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    assert!(mean.abs() < 0.01, "mean {mean}");
    assert!((var - 1.0).abs() < 0.02, "var {var}");
    assert!(a.iter().all(|v| v.is_finite()));
}

#[test]
fn raw_f32_reader_checks_length() {
    let dir = std::env::temp_dir().join(format!("matcha-f32-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("x.f32");
    let vals = [1.5f32, -2.0, 3.25];
    std::fs::write(
        &p,
        vals.iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    assert_eq!(read_f32_file(&p, 3).unwrap(), vals);
    assert!(read_f32_file(&p, 4).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

mod properties {
    use super::super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_manifest_text_parses_or_errors(text in prop_oneof![
            "\\PC{0,300}",
            "\\{\"format\": [0-9], \"model\": \"matcha\"[ ,a-z\":0-9\\[\\]{}]{0,120}\\}",
        ]) {
            let _ = Manifest::parse(&text, std::path::Path::new("/nonexistent"));
        }
    }
}
