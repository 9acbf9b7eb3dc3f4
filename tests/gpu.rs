//! Checks that need an NVIDIA GPU and the GPU build of ONNX Runtime (`onnxruntime-gpu`, see docs/gpu.md): the
//! CUDA execution provider really takes the engines, XFeat and the MATCHA chain give the CPU's results within
//! stated tolerances, and the MATCHA intermediates stay in device memory between engines (IO binding).
//!
//! They are `#[ignore]`d because the project's machines and CI have no GPU: `cargo test` lists them as ignored
//! (never silently passed). On a GPU machine:
//! `cargo test --release --features cuda --test gpu -- --ignored --nocapture` with `ORT_DYLIB_PATH` pointing
//! at the GPU library and the CUDA 13 / cuDNN 9 libraries on `LD_LIBRARY_PATH`.
//! This file does not benchmark (see `matcha bench stream` with `runtime.providers: [cuda, cpu]`).

mod common;

use std::time::Instant;

use matcha::features::keypoints::SpreadOptions;
use matcha::features::matcha::MatchaEngines;
use matcha::features::preprocess::{resize_bilinear, rgb_tensor};
use matcha::features::xfeat::{Precision, XFeat, XFeatOptions};
use matcha::features::FeatureExtractor;
use matcha::runtime::{BoundInput, Device, Engine, Placement, Provider, RuntimeConfig};
use ndarray::{ArrayD, ArrayViewD};
use ndarray_npy::read_npy;

fn cuda_runtime() -> RuntimeConfig {
    RuntimeConfig {
        providers: vec![Provider::Cuda, Provider::Cpu],
        threads: 4,
        ..common::cpu_runtime()
    }
}

fn max_abs_diff(a: &ArrayViewD<'_, f32>, b: &ArrayViewD<'_, f32>) -> (f32, f32) {
    assert_eq!(a.shape(), b.shape());
    let mut d = 0f32;
    let mut m = 0f32;
    for (x, y) in a.iter().zip(b.iter()) {
        assert!(x.is_finite() && y.is_finite());
        d = d.max((x - y).abs());
        m = m.max(y.abs());
    }
    (d, m)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
#[ignore = "needs an NVIDIA GPU and onnxruntime-gpu (docs/gpu.md)"]
fn xfeat_on_cuda_agrees_with_cpu() {
    let image = common::photo("graf1.png");
    let options = XFeatOptions {
        max_keypoints: 2048,
        detection_threshold: 0.05,
        subpixel: true,
        precision: Precision::Fp32,
        spread: SpreadOptions::OFF,
    };
    let gpu_rt = cuda_runtime();
    let engine = Engine::load(&gpu_rt.engines_dir.join("xfeat.onnx"), &gpu_rt).unwrap();
    eprintln!("xfeat engine: {}", engine.provider_summary());
    assert!(
        engine.active_providers().contains(&Provider::Cuda),
        "CUDA did not take: {}",
        engine.provider_summary()
    );
    assert!(matches!(engine.device(), Device::Cuda { .. }));
    drop(engine);

    let mut gpu = XFeat::new(&gpu_rt, options.clone()).unwrap();
    assert!(
        !gpu.is_int8(),
        "precision fp32 must load the float32 engine"
    );
    let mut cpu = XFeat::new(&common::cpu_runtime(), options).unwrap();
    let fc = cpu.extract(&image).unwrap();
    let fg = gpu.extract(&image).unwrap();
    // keypoints: the same detections, positions within 0.05 px (TF32/cuDNN arithmetic differs from the CPU's)
    let mut near = 0usize;
    let mut cos = Vec::new();
    for (i, kc) in fc.keypoints.iter().enumerate() {
        let best = fg
            .keypoints
            .iter()
            .enumerate()
            .map(|(j, kg)| (j, (kc[0] - kg[0]).hypot(kc[1] - kg[1])))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((j, d)) = best {
            if d < 0.05 {
                near += 1;
                let dot: f32 = fc
                    .descriptors
                    .row(i)
                    .iter()
                    .zip(fg.descriptors.row(j).iter())
                    .map(|(a, b)| a * b)
                    .sum();
                cos.push(dot as f64);
            }
        }
    }
    let frac = near as f64 / fc.len().max(1) as f64;
    let cos_med = median(cos.clone());
    let cos_min = cos.iter().copied().fold(1.0, f64::min);
    eprintln!(
        "xfeat cuda vs cpu: {} / {} keypoints within 0.05 px ({:.1}%), descriptor cosine median {cos_med:.6} min {cos_min:.6}",
        near,
        fc.len(),
        100.0 * frac
    );
    assert!(frac >= 0.97, "only {:.1}% of keypoints agree", 100.0 * frac);
    assert!(cos_med > 0.9999 && cos_min > 0.99);

    // engine time at 640×480 on the GPU (informative; the benchmark is `matcha bench stream`)
    let small = image::imageops::resize(&image, 640, 480, image::imageops::FilterType::Triangle);
    let mut t = Vec::new();
    for i in 0..60 {
        let s = Instant::now();
        gpu.extract(&small).unwrap();
        if i >= 10 {
            t.push(s.elapsed().as_secs_f64() * 1e3);
        }
    }
    eprintln!(
        "xfeat full extraction 640x480 on cuda: median {:.2} ms",
        median(t)
    );
}

/// The MATCHA chain on CUDA: intermediates stay on the device, F_m agrees with the CPU chain.
fn matcha_chain_on_cuda(mode: &str) {
    let dir = common::matcha_fixture(mode);
    let noise: ArrayD<f32> = read_npy(dir.join("ref/noise.npy")).unwrap();
    let posterior: ArrayD<f32> = read_npy(dir.join("ref/posterior_noise.npy")).unwrap();
    let image = common::matcha_reference_image(&dir);

    let mut gpu = MatchaEngines::load(&dir, &cuda_runtime(), 0, true).unwrap();
    let summary = gpu.provider_summary();
    eprintln!("{mode}: {summary}");
    assert!(!summary.contains("running on CPU"), "{summary}");
    gpu.set_noise(noise.clone(), posterior.clone()).unwrap();
    let fm_gpu = gpu.descriptor_map(&image).unwrap();
    let mut cpu = MatchaEngines::load(&dir, &common::cpu_runtime(), 0, false).unwrap();
    cpu.set_noise(noise.clone(), posterior.clone()).unwrap();
    let fm_cpu = cpu.descriptor_map(&image).unwrap();
    let (d, m) = max_abs_diff(&fm_gpu.view().into_dyn(), &fm_cpu.view().into_dyn());
    eprintln!("{mode}: F_m cuda vs cpu max |diff| {d:.2e} (max |F_m| {m:.2e})");
    assert!(d <= 2e-2 * m.max(1e-6), "{mode}: F_m differs by {d}");

    // one stage by hand: DIFT's outputs placed on the device really are in device memory, and they come
    // back equal to a host run
    let (h, w) = gpu.manifest().input_size();
    let x = resize_bilinear(&rgb_tensor(&image, 1.0 / 255.0), h, w).into_dyn();
    let prompt: ArrayD<f32> = read_npy(dir.join("ref/prompt_embeds.npy")).unwrap();
    let mut dift = Engine::load(&dir.join("dift.onnx"), &cuda_runtime()).unwrap();
    assert!(matches!(dift.device(), Device::Cuda { .. }));
    let inputs = [
        ("image", BoundInput::Host(x.view())),
        ("prompt_embeds", BoundInput::Host(prompt.view())),
        ("noise", BoundInput::Host(noise.view())),
        ("posterior_noise", BoundInput::Host(posterior.view())),
    ];
    let out = dift
        .run_bound(&inputs, &[("feat_c", Placement::Device)])
        .unwrap();
    assert!(
        !out[0].on_host(),
        "feat_c placed on the device is in host memory"
    );
    let on_device = out[0].to_host().unwrap();
    let host = dift
        .run_bound(&inputs, &[("feat_c", Placement::Host)])
        .unwrap();
    assert!(host[0].on_host());
    let (d, _) = max_abs_diff(&on_device.view(), &host[0].to_host().unwrap().view());
    assert_eq!(d, 0.0, "device→host copy changed feat_c");
}

#[test]
#[ignore = "needs an NVIDIA GPU and onnxruntime-gpu (docs/gpu.md)"]
fn matcha_geometric_chain_on_cuda() {
    matcha_chain_on_cuda("geometric");
}

#[test]
#[ignore = "needs an NVIDIA GPU and onnxruntime-gpu (docs/gpu.md)"]
fn matcha_light_chain_on_cuda() {
    matcha_chain_on_cuda("light");
}
