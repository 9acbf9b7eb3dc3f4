//! IO binding of the runtime ([`Engine::run_bound`]) against the plain host path ([`Engine::run`]) on the CPU
//! provider: bit-identical results on a two-engine chain written here as tiny ONNX graphs, and on the tiny
//! MATCHA fixtures (`$MATCHA_CACHE/matcha-fixtures/tiny-*`, see tests/integration/parity_matcha.rs); misuse errors; and
//! the provider report when a GPU provider is requested on a machine (or build) without one.
//!
//! Needs libonnxruntime (scripts/setup.sh) like every engine test; nothing here needs a GPU.

use crate::common;

use std::path::PathBuf;

use matcha::features::matcha::MatchaEngines;
use matcha::features::preprocess::{resize_bilinear, rgb_tensor};
use matcha::runtime::{
    BoundInput, Device, Engine, Placement, Provider, RuntimeConfig, RuntimeError,
};
use ndarray::{Array1, Array2, ArrayD, IxDyn};
use ndarray_npy::read_npy;

// ---- a minimal ONNX (protobuf) writer: just the fields these graphs use ----

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            buf.push(byte);
            return;
        }
        buf.push(byte | 0x80);
    }
}

fn int_field(buf: &mut Vec<u8>, field: u64, v: u64) {
    varint(buf, field << 3);
    varint(buf, v);
}

fn bytes_field(buf: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(buf, (field << 3) | 2);
    varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

const FLOAT: u64 = 1;

/// `ValueInfoProto` of a float tensor; `None` dimensions are dynamic (`dim_param` "N").
fn value_info(name: &str, dims: &[Option<u64>]) -> Vec<u8> {
    let mut shape = Vec::new();
    for d in dims {
        let mut dim = Vec::new();
        match d {
            Some(v) => int_field(&mut dim, 1, *v),
            None => bytes_field(&mut dim, 2, b"N"),
        }
        bytes_field(&mut shape, 1, &dim);
    }
    let mut tensor = Vec::new();
    int_field(&mut tensor, 1, FLOAT);
    bytes_field(&mut tensor, 2, &shape);
    let mut ty = Vec::new();
    bytes_field(&mut ty, 1, &tensor);
    let mut vi = Vec::new();
    bytes_field(&mut vi, 1, name.as_bytes());
    bytes_field(&mut vi, 2, &ty);
    vi
}

fn initializer(name: &str, dims: &[u64], values: &[f32]) -> Vec<u8> {
    let mut t = Vec::new();
    for d in dims {
        int_field(&mut t, 1, *d);
    }
    int_field(&mut t, 2, FLOAT);
    bytes_field(&mut t, 8, name.as_bytes());
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    bytes_field(&mut t, 9, &raw);
    t
}

fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> Vec<u8> {
    let mut n = Vec::new();
    for i in inputs {
        bytes_field(&mut n, 1, i.as_bytes());
    }
    for o in outputs {
        bytes_field(&mut n, 2, o.as_bytes());
    }
    bytes_field(&mut n, 3, format!("{op}_{}", outputs[0]).as_bytes());
    bytes_field(&mut n, 4, op.as_bytes());
    n
}

fn model(nodes: &[Vec<u8>], inits: &[Vec<u8>], inputs: &[Vec<u8>], outputs: &[Vec<u8>]) -> Vec<u8> {
    let mut g = Vec::new();
    for n in nodes {
        bytes_field(&mut g, 1, n);
    }
    bytes_field(&mut g, 2, b"g");
    for i in inits {
        bytes_field(&mut g, 5, i);
    }
    for i in inputs {
        bytes_field(&mut g, 11, i);
    }
    for o in outputs {
        bytes_field(&mut g, 12, o);
    }
    let mut m = Vec::new();
    int_field(&mut m, 1, 8); // IR version 8
    bytes_field(&mut m, 2, b"matcha-test");
    bytes_field(&mut m, 7, &g);
    let mut opset = Vec::new();
    int_field(&mut opset, 2, 13);
    bytes_field(&mut m, 8, &opset);
    m
}

const W: [f32; 12] = [
    0.5, -1.0, 0.25, 1.5, 0.75, -0.5, -0.25, 2.0, 1.0, 0.125, -1.5, 0.3,
];
const B: [f32; 3] = [0.1, -0.2, 0.3];

/// Stage A: `y = relu((x + c) · W + b)`, `z = y * y`; x is `N × 4`, c a `4` constant.
fn stage_a() -> Vec<u8> {
    model(
        &[
            node("Add", &["x", "c"], &["xc"]),
            node("MatMul", &["xc", "W"], &["xw"]),
            node("Add", &["xw", "b"], &["pre"]),
            node("Relu", &["pre"], &["y"]),
            node("Mul", &["y", "y"], &["z"]),
        ],
        &[initializer("W", &[4, 3], &W), initializer("b", &[3], &B)],
        &[
            value_info("x", &[None, Some(4)]),
            value_info("c", &[Some(4)]),
        ],
        &[
            value_info("y", &[None, Some(3)]),
            value_info("z", &[None, Some(3)]),
        ],
    )
}

/// Stage B: `s = sigmoid(y - z)`.
fn stage_b() -> Vec<u8> {
    model(
        &[
            node("Sub", &["y", "z"], &["d"]),
            node("Sigmoid", &["d"], &["s"]),
        ],
        &[],
        &[
            value_info("y", &[None, Some(3)]),
            value_info("z", &[None, Some(3)]),
        ],
        &[value_info("s", &[None, Some(3)])],
    )
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn graphs(tag: &str) -> (TempDir, PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("matcha-binding-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (dir.join("stage_a.onnx"), dir.join("stage_b.onnx"));
    std::fs::write(&a, stage_a()).unwrap();
    std::fs::write(&b, stage_b()).unwrap();
    (TempDir(dir), a, b)
}

fn input(n: usize, offset: f32) -> Array2<f32> {
    Array2::from_shape_fn((n, 4), |(i, j)| {
        ((i * 4 + j) as f32 * 0.37 + offset).sin() * 2.0
    })
}

fn constant() -> Array1<f32> {
    Array1::from(vec![0.2f32, -0.1, 0.05, 0.4])
}

/// The graphs' function in plain Rust (f64), to show the engines compute something.
fn expected(x: &Array2<f32>, c: &Array1<f32>) -> Array2<f32> {
    Array2::from_shape_fn((x.nrows(), 3), |(i, k)| {
        let mut acc = B[k] as f64;
        for j in 0..4 {
            acc += (x[[i, j]] as f64 + c[j] as f64) * W[j * 3 + k] as f64;
        }
        let y = acc.max(0.0);
        (1.0 / (1.0 + (-(y - y * y)).exp())) as f32
    })
}

fn bits(a: &ArrayD<f32>) -> Vec<u32> {
    a.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn bound_chain_is_bit_identical_to_host_runs() {
    let (_tmp, pa, pb) = graphs("chain");
    let rt = common::cpu_runtime();
    let mut a = Engine::load(&pa, &rt).unwrap();
    let mut b = Engine::load(&pb, &rt).unwrap();
    assert_eq!(a.device(), Device::Cpu);
    let c = constant().into_dyn();
    a.bind_constant("c", c.view()).unwrap();
    assert_eq!(a.constants(), ["c".to_string()]);

    let mut held = Vec::new();
    for (n, offset) in [(5usize, 0.0f32), (9, 1.3), (5, -0.7)] {
        let x = input(n, offset).into_dyn();
        // host path
        let yz = a
            .run(&[("x", x.view()), ("c", c.view())], &["y", "z"])
            .unwrap();
        let s_host = b
            .run(&[("y", yz[0].view()), ("z", yz[1].view())], &["s"])
            .unwrap()
            .pop()
            .unwrap();
        // bound path: y and z stay on the engines' device, only s comes back
        let o = a
            .run_bound(
                &[("x", BoundInput::Host(x.view()))],
                &[("y", Placement::Device), ("z", Placement::Device)],
            )
            .unwrap();
        assert_eq!(o[0].shape(), &[n, 3]);
        assert!(
            o[0].on_host(),
            "CPU provider keeps device tensors in host memory"
        );
        let s = b
            .run_bound(
                &[
                    ("y", BoundInput::Tensor(&o[0])),
                    ("z", BoundInput::Tensor(&o[1])),
                ],
                &[("s", Placement::Host)],
            )
            .unwrap()
            .pop()
            .unwrap();
        let s_bound = s.to_host().unwrap();
        assert_eq!(s_bound.shape(), &[n, 3]);
        assert_eq!(
            bits(&s_bound),
            bits(&s_host),
            "bound chain differs from run()"
        );
        assert_eq!(bits(&o[0].to_host().unwrap()), bits(&yz[0]));
        assert_eq!(bits(&o[1].to_host().unwrap()), bits(&yz[1]));
        let want = expected(&input(n, offset), &constant()).into_dyn();
        let err = s_bound
            .iter()
            .zip(want.iter())
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 1e-6, "engine output off the formula by {err}");
        held.push((s, s_host));
    }
    // results handed out earlier are not overwritten by later runs of the same binding
    for (s, s_host) in &held {
        assert_eq!(bits(&s.to_host().unwrap()), bits(s_host));
    }

    // a new constant replaces the old one
    let c2 = (constant() * 3.0).into_dyn();
    a.bind_constant("c", c2.view()).unwrap();
    let x = input(4, 0.2).into_dyn();
    let y_new = a
        .run_bound(
            &[("x", BoundInput::Host(x.view()))],
            &[("y", Placement::Host)],
        )
        .unwrap()
        .pop()
        .unwrap()
        .to_host()
        .unwrap();
    let y_ref = a
        .run(&[("x", x.view()), ("c", c2.view())], &["y"])
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(bits(&y_new), bits(&y_ref));
}

#[test]
fn binding_misuse_is_an_error() {
    let (_tmp, pa, _) = graphs("misuse");
    let rt = common::cpu_runtime();
    let mut a = Engine::load(&pa, &rt).unwrap();
    let x = input(3, 0.0).into_dyn();
    let c = constant().into_dyn();
    // c neither given nor bound
    let e = a
        .run_bound(
            &[("x", BoundInput::Host(x.view()))],
            &[("y", Placement::Host)],
        )
        .unwrap_err();
    assert!(matches!(e, RuntimeError::Binding { .. }), "{e}");
    assert!(e.to_string().contains("\"c\""), "{e}");
    // given per run: fine
    let y = a
        .run_bound(
            &[
                ("x", BoundInput::Host(x.view())),
                ("c", BoundInput::Host(c.view())),
            ],
            &[("y", Placement::Device)],
        )
        .unwrap();
    assert_eq!(y[0].shape(), &[3, 3]);
    // bound as a constant, then given again per run
    a.bind_constant("c", c.view()).unwrap();
    let e = a
        .run_bound(
            &[
                ("x", BoundInput::Host(x.view())),
                ("c", BoundInput::Host(c.view())),
            ],
            &[("y", Placement::Host)],
        )
        .unwrap_err();
    assert!(e.to_string().contains("constant"), "{e}");
    // unknown names, wrong shapes, no outputs
    let e = a
        .run_bound(
            &[("x", BoundInput::Host(x.view()))],
            &[("nope", Placement::Host)],
        )
        .unwrap_err();
    assert!(
        matches!(e, RuntimeError::UnknownName { kind: "output", .. }),
        "{e}"
    );
    let e = a.bind_constant("nope", c.view()).unwrap_err();
    assert!(
        matches!(e, RuntimeError::UnknownName { kind: "input", .. }),
        "{e}"
    );
    let bad = ArrayD::<f32>::zeros(IxDyn(&[3, 5]));
    let e = a
        .run_bound(
            &[("x", BoundInput::Host(bad.view()))],
            &[("y", Placement::Host)],
        )
        .unwrap_err();
    assert!(matches!(e, RuntimeError::InputShape { .. }), "{e}");
    let e = a.bind_constant("c", bad.view()).unwrap_err();
    assert!(matches!(e, RuntimeError::InputShape { .. }), "{e}");
    let e = a
        .run_bound(&[("x", BoundInput::Host(x.view()))], &[])
        .unwrap_err();
    assert!(matches!(e, RuntimeError::Binding { .. }), "{e}");
}

#[test]
fn requested_gpu_providers_that_did_not_take_are_reported() {
    let (_tmp, pa, _) = graphs("providers");
    let rt = RuntimeConfig {
        providers: vec![Provider::Tensorrt, Provider::Cuda, Provider::Cpu],
        ..common::cpu_runtime()
    };
    let a = Engine::load(&pa, &rt).unwrap();
    // this machine has no GPU (and the test library is the CPU-only onnxruntime): whatever the cargo
    // features, TensorRT and CUDA cannot be active, and each says why
    assert_eq!(a.active_providers(), vec![Provider::Cpu]);
    assert_eq!(a.device(), Device::Cpu);
    let report = a.provider_report();
    assert_eq!(report.len(), 3);
    for (s, p) in report.iter().zip([Provider::Tensorrt, Provider::Cuda]) {
        assert_eq!(s.provider, p);
        assert!(!s.active);
        assert!(!s.reason.is_empty());
        if cfg!(not(feature = "cuda")) && p == Provider::Cuda {
            assert!(s.reason.contains("`cuda` cargo feature"), "{}", s.reason);
        }
    }
    assert!(report[2].active && report[2].reason.is_empty());
    let summary = a.provider_summary();
    eprintln!("{summary}");
    assert!(summary.starts_with("running on CPU ("), "{summary}");
    assert!(summary.contains("TensorRT requested but"), "{summary}");
    assert!(summary.contains("CUDA requested but"), "{summary}");
    // CPU only: nothing to report
    let cpu = Engine::load(&pa, &common::cpu_runtime()).unwrap();
    assert_eq!(cpu.provider_summary(), "running on CPU");
    // no provider at all is a configuration error
    let none = RuntimeConfig {
        providers: vec![],
        ..common::cpu_runtime()
    };
    assert!(matches!(
        Engine::load(&pa, &none).unwrap_err(),
        RuntimeError::Config(_)
    ));
}

// ---- MATCHA: the bound chain of MatchaEngines vs the stages run one by one on the host ----

fn matcha_chain_is_bit_identical(mode: &str) {
    let dir = common::matcha_fixture(mode);
    let rt = common::cpu_runtime();
    let noise: ArrayD<f32> = read_npy(dir.join("ref/noise.npy")).unwrap();
    let posterior: ArrayD<f32> = read_npy(dir.join("ref/posterior_noise.npy")).unwrap();
    let prompt: ArrayD<f32> = read_npy(dir.join("ref/prompt_embeds.npy")).unwrap();
    let mut eng = MatchaEngines::load(&dir, &rt, 0, false).unwrap();
    eng.set_noise(noise.clone(), posterior.clone()).unwrap();
    let image = common::matcha_reference_image(&dir);
    let bound = eng.descriptor_map(&image).unwrap();

    let (h, w) = eng.manifest().input_size();
    let x = resize_bilinear(&rgb_tensor(&image, 1.0 / 255.0), h, w).into_dyn();
    let mut dift = Engine::load(&dir.join("dift.onnx"), &rt).unwrap();
    let o = dift
        .run(
            &[
                ("image", x.view()),
                ("prompt_embeds", prompt.view()),
                ("noise", noise.view()),
                ("posterior_noise", posterior.view()),
            ],
            &["feat_c", "feat_f"],
        )
        .unwrap();
    let mut inputs = vec![("feat_c", o[0].view()), ("feat_f", o[1].view())];
    let dino = if dir.join("dinov2.onnx").exists() {
        let mut d = Engine::load(&dir.join("dinov2.onnx"), &rt).unwrap();
        Some(
            d.run(&[("image", x.view())], &["dino"])
                .unwrap()
                .pop()
                .unwrap(),
        )
    } else {
        None
    };
    if let Some(d) = dino.as_ref() {
        inputs.push(("dino", d.view()));
    }
    let mut fusion = Engine::load(&dir.join("fusion.onnx"), &rt).unwrap();
    let host = fusion
        .run(&inputs, &["descriptors"])
        .unwrap()
        .pop()
        .unwrap();
    let host = host.index_axis_move(ndarray::Axis(0), 0).into_dyn();
    assert_eq!(bound.shape(), host.shape());
    assert_eq!(
        bits(&bound.into_dyn()),
        bits(&host),
        "{mode}: bound MATCHA chain differs from the host runs"
    );
    // and a second image through the same bindings still agrees (constants stay bound)
    let flipped = image::imageops::flip_horizontal(&image);
    let again = eng.descriptor_map(&flipped).unwrap();
    let first = eng.descriptor_map(&image).unwrap();
    assert_ne!(bits(&again.into_dyn()), bits(&host));
    assert_eq!(bits(&first.into_dyn()), bits(&host));
}

#[test]
fn matcha_bound_chain_geometric() {
    matcha_chain_is_bit_identical("geometric");
}

#[test]
fn matcha_bound_chain_light() {
    matcha_chain_is_bit_identical("light");
}
