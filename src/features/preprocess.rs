//! Image → tensor conversions shared by the extractors: planar `f32` tensors, PyTorch-exact bilinear resizing
//! (`F.interpolate(mode="bilinear", align_corners=False)`, no antialiasing), zero padding to a multiple and
//! ALIKED's centred edge-replicating padding.
//!
//! Exactness matters here: the parity tests compare our keypoints with the Python reference pipelines,
//! and a resize that differs by a fraction of a grey level moves maxima of the detection heatmap.

use std::borrow::Cow;

use ndarray::Array4;

use crate::image::RgbImage;

/// `1 × 3 × H × W` tensor of the RGB channels, each value multiplied by `scale` (e.g. `1/255`).
pub fn rgb_tensor(image: &RgbImage, scale: f32) -> Array4<f32> {
    let (w, h) = image.dimensions();
    let plane = w as usize * h as usize;
    let mut data = vec![0f32; 3 * plane];
    let (r, rest) = data.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (i, px) in image.as_raw().chunks_exact(3).enumerate() {
        r[i] = px[0] as f32 * scale;
        g[i] = px[1] as f32 * scale;
        b[i] = px[2] as f32 * scale;
    }
    Array4::from_shape_vec((1, 3, h as usize, w as usize), data)
        .unwrap_or_else(|_| Array4::zeros((1, 3, 0, 0)))
}

/// One axis of PyTorch's bilinear, `align_corners=False` resampling: for each output index, the two source
/// indices and the weight of the second.
fn axis_taps(in_len: usize, out_len: usize) -> Vec<(usize, usize, f32)> {
    let scale = in_len as f32 / out_len as f32;
    (0..out_len)
        .map(|o| {
            let src = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(in_len - 1);
            let i1 = (i0 + 1).min(in_len - 1);
            (i0, i1, src - i0 as f32)
        })
        .collect()
}

/// Resizes a `1 × C × H × W` tensor to `out_h × out_w` exactly like PyTorch's
/// `F.interpolate(x, (out_h, out_w), mode="bilinear", align_corners=False)`.
pub fn resize_bilinear(x: &Array4<f32>, out_h: usize, out_w: usize) -> Array4<f32> {
    let (n, c, h, w) = x.dim();
    if (h, w) == (out_h, out_w) {
        return x.clone();
    }
    let ty = axis_taps(h, out_h);
    let tx = axis_taps(w, out_w);
    let mut out = Array4::<f32>::zeros((n, c, out_h, out_w));
    for b in 0..n {
        for ch in 0..c {
            for (oy, &(y0, y1, ly)) in ty.iter().enumerate() {
                for (ox, &(x0, x1, lx)) in tx.iter().enumerate() {
                    let top = (1.0 - lx) * x[[b, ch, y0, x0]] + lx * x[[b, ch, y0, x1]];
                    let bot = (1.0 - lx) * x[[b, ch, y1, x0]] + lx * x[[b, ch, y1, x1]];
                    out[[b, ch, oy, ox]] = (1.0 - ly) * top + ly * bot;
                }
            }
        }
    }
    out
}

/// Width and height of a `w × h` image resized so its long side is `side`, rounded as kornia's
/// `resize(side="long")` does (the other side is `int(side / aspect)`, at least 1).
pub fn long_side_size(w: u32, h: u32, side: u32) -> (usize, usize) {
    let (rw, rh) = if w >= h {
        (side as f64, (side as f64 * h as f64 / w as f64).floor())
    } else {
        ((side as f64 * w as f64 / h as f64).floor(), side as f64)
    };
    ((rw as usize).max(1), (rh as usize).max(1))
}

/// Pads a `1 × C × H × W` tensor with zeros at the bottom/right so both sides are multiples of `multiple`
/// (borrowed as it is when they already are).
pub fn pad_to_multiple(x: &Array4<f32>, multiple: usize) -> Cow<'_, Array4<f32>> {
    let (n, c, h, w) = x.dim();
    let ph = h.div_ceil(multiple) * multiple;
    let pw = w.div_ceil(multiple) * multiple;
    if (ph, pw) == (h, w) {
        return Cow::Borrowed(x);
    }
    let mut out = Array4::<f32>::zeros((n, c, ph, pw));
    out.slice_mut(ndarray::s![.., .., ..h, ..w]).assign(x);
    Cow::Owned(out)
}

/// Pads a `1 × C × H × W` tensor by repeating its edge pixels so both sides are multiples of `multiple`,
/// half of the padding on each side (the larger half at the bottom/right), as ALIKED's `InputPadder` does.
/// Returns the padded tensor (borrowed as it is when no padding is needed) and the `[top, left]` padding,
/// where the original starts.
pub fn pad_replicate_centered(
    x: &Array4<f32>,
    multiple: usize,
) -> (Cow<'_, Array4<f32>>, [usize; 2]) {
    let (n, c, h, w) = x.dim();
    let (ph, pw) = (
        h.div_ceil(multiple) * multiple,
        w.div_ceil(multiple) * multiple,
    );
    if (ph, pw) == (h, w) || h == 0 || w == 0 {
        return (Cow::Borrowed(x), [0, 0]);
    }
    let (top, left) = ((ph - h) / 2, (pw - w) / 2);
    let out = Array4::from_shape_fn((n, c, ph, pw), |(b, ch, y, xx)| {
        let sy = y.saturating_sub(top).min(h - 1);
        let sx = xx.saturating_sub(left).min(w - 1);
        x[[b, ch, sy, sx]]
    });
    (Cow::Owned(out), [top, left])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bilinear_matches_pytorch_values() {
        // torch: F.interpolate(torch.arange(4.).view(1,1,1,4), (1,2), mode="bilinear", align_corners=False)
        // → [[0.5, 2.5]]; upsampling 2 → 4 gives [0, 0.25, 0.75, 1].
        let x = Array4::from_shape_vec((1, 1, 1, 4), vec![0.0, 1.0, 2.0, 3.0]).unwrap();
        let y = resize_bilinear(&x, 1, 2);
        assert_eq!(y.iter().copied().collect::<Vec<_>>(), vec![0.5, 2.5]);
        let x = Array4::from_shape_vec((1, 1, 1, 2), vec![0.0, 1.0]).unwrap();
        let y = resize_bilinear(&x, 1, 4);
        assert_eq!(
            y.iter().copied().collect::<Vec<_>>(),
            vec![0.0, 0.25, 0.75, 1.0]
        );
    }

    #[test]
    fn the_long_side_resize_rounds_the_short_side_down() {
        assert_eq!(long_side_size(640, 480, 1024), (1024, 768));
        assert_eq!(long_side_size(480, 641, 1024), (766, 1024));
        assert_eq!(long_side_size(1000, 3, 10), (10, 1));
    }

    #[test]
    fn pads_with_zeros() {
        let x = Array4::<f32>::ones((1, 1, 3, 5));
        let y = pad_to_multiple(&x, 4);
        assert_eq!(y.dim(), (1, 1, 4, 8));
        assert_eq!(y.sum(), 15.0);
    }

    #[test]
    fn replicate_padding_is_centred_and_repeats_the_edges() {
        // torch: F.pad(torch.arange(3.).view(1,1,1,3), [2, 3, 3, 4], mode="replicate") rows → [0,0,0,1,2,2,2,2]
        let x = Array4::from_shape_vec((1, 1, 1, 3), vec![0.0, 1.0, 2.0]).unwrap();
        let (y, [top, left]) = pad_replicate_centered(&x, 8);
        assert_eq!((top, left), (3, 2));
        assert_eq!(y.dim(), (1, 1, 8, 8));
        let row: Vec<f32> = y.slice(ndarray::s![0, 0, 0, ..]).to_vec();
        assert_eq!(row, vec![0.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0]);
        assert_eq!(y.slice(ndarray::s![0, 0, 7, ..]).to_vec(), row);
    }
}
