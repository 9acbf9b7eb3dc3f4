//! Mutual-nearest-neighbour matching throughput (criterion): 2048 × 2048 XFeat-sized descriptors (64-d, unit
//! length), one and two threads. The similarity GEMM is `matrixmultiply`'s; the row/column scans are ours.
//!
//! Also the photometric match refinement (`matching::refine`): 2048 matches on a 640×480 textured image
//! pair (b = a shifted by a sub-pixel amount with a gain/bias change, detector positions rounded), one thread,
//! translation and affine models; and the affine model with b also rotated by 6° and scaled by 1.04, 5% of
//! the matches wrong (a keyframe-to-frame baseline).
//!
//! `cargo bench --bench matching`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use matcha::matching::mnn::{mutual_nearest_neighbors_threaded, MnnOptions};
use ndarray::Array2;

fn random_unit(n: usize, d: usize, seed: u64) -> Array2<f32> {
    let mut st = seed;
    let mut x = Array2::from_shape_fn((n, d), |_| {
        st = st
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((st >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    });
    matcha::features::sampling::l2_normalize_rows(&mut x);
    x
}

fn mnn(c: &mut Criterion) {
    let mut group = c.benchmark_group("mnn_2048x2048x64");
    let (a, b) = (random_unit(2048, 64, 1), random_unit(2048, 64, 2));
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool");
        let pool = (threads > 1).then_some(&pool);
        group.bench_with_input(
            BenchmarkId::from_parameter(threads),
            &pool,
            |bench, pool| {
                bench.iter(|| {
                    mutual_nearest_neighbors_threaded(&a, &b, &MnnOptions::default(), *pool)
                })
            },
        );
    }
    group.finish();
}

/// 640×480 8-bit texture (seeded sum of sinusoids) shifted by `shift`, with gain and bias.
fn textured(shift: [f32; 2], gain: f32, bias: f32) -> image::GrayImage {
    textured_warped([1.0, 0.0, 0.0, 1.0], shift, gain, bias)
}

/// The texture moved by `x ↦ c + M·(x − c) + shift` (`c`: image centre, `m = [m00, m01, m10, m11]`).
fn textured_warped(m: [f32; 4], shift: [f32; 2], gain: f32, bias: f32) -> image::GrayImage {
    let det = m[0] * m[3] - m[1] * m[2];
    let inv = [m[3] / det, -m[1] / det, -m[2] / det, m[0] / det];
    let waves: Vec<[f32; 3]> = (0..24u32)
        .map(|i| {
            let h = |k: u32| {
                (i.wrapping_mul(2654435761u32)
                    .wrapping_add(k.wrapping_mul(40503))
                    % 1000) as f32
                    / 1000.0
            };
            [0.15 + 0.75 * h(1), std::f32::consts::TAU * h(2), 6.3 * h(3)]
        })
        .collect();
    image::GrayImage::from_fn(640, 480, |x, y| {
        let (u, v) = (x as f32 - 320.0 - shift[0], y as f32 - 240.0 - shift[1]);
        let (x, y) = (
            320.0 + inv[0] * u + inv[1] * v,
            240.0 + inv[2] * u + inv[3] * v,
        );
        let v: f32 = waves
            .iter()
            .map(|[f, a, p]| (f * (x * a.cos() + y * a.sin()) + p).sin())
            .sum();
        image::Luma([(gain * (128.0 + 8.0 * v) + bias).round().clamp(0.0, 255.0) as u8])
    })
}

fn refine(c: &mut Criterion) {
    use matcha::matching::refine::{refine_matches, RefineOptions, WarpModel};
    use matcha::matching::Match;
    let shift = [0.4f32, -0.7];
    let (a, b) = (textured([0.0, 0.0], 1.0, 0.0), textured(shift, 0.8, 20.0));
    // 64 × 32 grid of keypoints = 2048 matches
    let ka: Vec<[f32; 2]> = (0..2048)
        .map(|i| {
            [
                20.0 + (i % 64) as f32 * 9.4 + 0.3,
                20.0 + (i / 64) as f32 * 13.5 + 0.6,
            ]
        })
        .collect();
    let kb: Vec<[f32; 2]> = ka
        .iter()
        .map(|p| [(p[0] + shift[0]).round(), (p[1] + shift[1]).round()])
        .collect();
    let matches: Vec<Match> = (0..2048u32)
        .map(|i| Match {
            a: i,
            b: i,
            score: 1.0,
        })
        .collect();
    let mut group = c.benchmark_group("refine_2048_matches_640x480");
    let options = |model, radius| RefineOptions {
        enabled: true,
        model,
        patch_radius: radius,
        ..RefineOptions::default()
    };
    for (name, model, radius) in [
        ("translation_r5", WarpModel::Translation, 5),
        ("affine_r5", WarpModel::Affine, 5),
        ("affine_r7", WarpModel::Affine, 7),
    ] {
        let o = options(model, radius);
        let r = refine_matches(&a, &ka, &b, &kb, &matches, &o);
        eprintln!("{name}: {:?}", r.stats);
        group.bench_function(name, |bench| {
            bench.iter(|| refine_matches(&a, &ka, &b, &kb, &matches, &o))
        });
    }
    // A wider baseline, as between a keyframe and a later frame: b rotated by 6° and scaled by 1.04 about
    // the centre, plus the shift; every 20th match wrong (paired with a keypoint 9 rows away).
    let (angle, scale) = (6f32.to_radians(), 1.04f32);
    let m = [
        scale * angle.cos(),
        -scale * angle.sin(),
        scale * angle.sin(),
        scale * angle.cos(),
    ];
    let b = textured_warped(m, shift, 0.8, 20.0);
    let kb: Vec<[f32; 2]> = ka
        .iter()
        .map(|p| {
            let (u, v) = (p[0] - 320.0, p[1] - 240.0);
            [
                (320.0 + m[0] * u + m[1] * v + shift[0]).round(),
                (240.0 + m[2] * u + m[3] * v + shift[1]).round(),
            ]
        })
        .collect();
    let matches: Vec<Match> = (0..2048u32)
        .map(|i| Match {
            a: i,
            b: if i % 20 == 0 { (i + 9 * 64) % 2048 } else { i },
            score: 1.0,
        })
        .collect();
    let o = options(WarpModel::Affine, 7);
    let r = refine_matches(&a, &ka, &b, &kb, &matches, &o);
    eprintln!("affine_r7_rotated: {:?}", r.stats);
    group.bench_function("affine_r7_rotated", |bench| {
        bench.iter(|| refine_matches(&a, &ka, &b, &kb, &matches, &o))
    });
    group.finish();
}

criterion_group!(benches, mnn, refine);
criterion_main!(benches);
