//! The sums of the refinement's inner loops: dot products and fused multi-sums over a patch, eight lanes per
//! sum in f32, combined in f64. The summation order is fixed, so results are deterministic whatever the CPU;
//! [`affine_sums`] is compiled for the wider vector units too and chosen at run time (`multiversion`).
//!
//! What it does not do: sample images or know what the sums mean (the callers, [`super::translation`] and
//! [`super::affine`], form the Gauss–Newton steps from them). Why this formulation: plain fixed-width lane
//! arrays vectorise on every target without `unsafe` or intrinsics.

/// `[Σ a·b_0, …, Σ a·b_{K-1}]` in one pass with eight lanes per sum (vectorises; fixed order:
/// deterministic), combined in f64. Slices are cut to the shortest.
pub(super) fn dots<const K: usize>(a: &[f32], b: [&[f32]; K]) -> [f64; K] {
    let n = b.iter().fold(a.len(), |n, x| n.min(x.len()));
    let full = n - n % 8;
    let mut acc = [[0.0f32; 8]; K];
    for (c, ca) in a[..full].chunks_exact(8).enumerate() {
        for (acc, bk) in acc.iter_mut().zip(&b) {
            let cb = &bk[c * 8..c * 8 + 8];
            for l in 0..8 {
                acc[l] += ca[l] * cb[l];
            }
        }
    }
    let mut out = [0.0f64; K];
    for ((o, acc), bk) in out.iter_mut().zip(&acc).zip(&b) {
        *o = acc.iter().map(|&v| v as f64).sum::<f64>()
            + (full..n).map(|k| (a[k] * bk[k]) as f64).sum::<f64>();
    }
    out
}

/// `[Σ s, Σ s², Σ s·t, Σ s·gx, Σ s·gy]` in one pass with eight lanes per sum (vectorises; fixed order:
/// deterministic), combined in f64.
pub(super) fn sums5(s: &[f32], t: &[f32], gx: &[f32], gy: &[f32]) -> [f64; 5] {
    let mut acc = [[0.0f32; 8]; 5];
    let mut out = [0.0f64; 5];
    let n = s.len().min(t.len()).min(gx.len()).min(gy.len());
    let full = n - n % 8;
    for (((cs, ct), cx), cy) in s[..full]
        .chunks_exact(8)
        .zip(t[..full].chunks_exact(8))
        .zip(gx[..full].chunks_exact(8))
        .zip(gy[..full].chunks_exact(8))
    {
        for k in 0..8 {
            acc[0][k] += cs[k];
            acc[1][k] += cs[k] * cs[k];
            acc[2][k] += cs[k] * ct[k];
            acc[3][k] += cs[k] * cx[k];
            acc[4][k] += cs[k] * cy[k];
        }
    }
    for k in full..n {
        out[0] += s[k] as f64;
        out[1] += (s[k] * s[k]) as f64;
        out[2] += (s[k] * t[k]) as f64;
        out[3] += (s[k] * gx[k]) as f64;
        out[4] += (s[k] * gy[k]) as f64;
    }
    for (o, a) in out.iter_mut().zip(&acc) {
        *o += a.iter().map(|&v| v as f64).sum::<f64>();
    }
    out
}

/// `[Σ s, Σ s², Σ s·t, Σ s·sd_0, …, Σ s·sd_5]` (`sd`: six planes of `s.len()` values) in one pass with eight
/// lanes per sum (fixed order: deterministic), combined in f64. Compiled for the wider vector units too and
/// chosen at run time: nine sums of eight lanes fill the registers of AVX2/AVX-512 exactly.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
pub(super) fn affine_sums(s: &[f32], t: &[f32], sd: &[f32]) -> [f64; 9] {
    let n = s.len().min(t.len()).min(sd.len() / 6);
    let planes: [&[f32]; 6] = std::array::from_fn(|c| &sd[c * n..(c + 1) * n]);
    let full = n - n % 8;
    let mut acc = [[0.0f32; 8]; 9];
    for base in (0..full).step_by(8) {
        let cs: &[f32; 8] = s[base..base + 8].try_into().expect("8 lanes");
        let ct: &[f32; 8] = t[base..base + 8].try_into().expect("8 lanes");
        for k in 0..8 {
            acc[0][k] += cs[k];
            acc[1][k] += cs[k] * cs[k];
            acc[2][k] += cs[k] * ct[k];
        }
        for (a, p) in acc[3..].iter_mut().zip(&planes) {
            let cp: &[f32; 8] = p[base..base + 8].try_into().expect("8 lanes");
            for k in 0..8 {
                a[k] += cs[k] * cp[k];
            }
        }
    }
    let mut out = [0.0f64; 9];
    for k in full..n {
        let v = s[k] as f64;
        out[0] += v;
        out[1] += v * v;
        out[2] += v * t[k] as f64;
        for (o, p) in out[3..].iter_mut().zip(&planes) {
            *o += v * p[k] as f64;
        }
    }
    for (o, a) in out.iter_mut().zip(&acc) {
        *o += a.iter().map(|&v| v as f64).sum::<f64>();
    }
    out
}

/// Dot product with eight independent accumulators (vectorises; the order is fixed: deterministic).
pub(super) fn dot8(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}
