//! Mutual-nearest-neighbour matching throughput (criterion): 2048 × 2048 XFeat-sized descriptors (64-d, unit
//! length), one and two threads. The similarity GEMM is `matrixmultiply`'s; the row/column scans are ours.
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

criterion_group!(benches, mnn);
criterion_main!(benches);
