//! Extraction with the large-image downscale: images whose longest side exceeds `engine.max_image_side` are
//! resized for the network and their keypoints mapped back to the original pixels.

use super::PipelineError;
use crate::features::{FeatureError, FeatureExtractor, Features, GrayFrame};
use crate::image::RgbImage;

/// Extraction with the large-image downscale of [`Pipeline::extract`] (shared by the stream worker); keeps
/// the original-size grayscale image when `keep_gray`.
pub(super) fn extract_with(
    extractor: &mut dyn FeatureExtractor,
    max_image_side: u32,
    keep_gray: bool,
    image: &RgbImage,
) -> Result<Features, PipelineError> {
    let mut f = extract_resized(extractor, max_image_side, image)?;
    if keep_gray {
        f.gray = Some(GrayFrame::from_rgb(image));
    }
    Ok(f)
}

pub(super) fn extract_resized(
    extractor: &mut dyn FeatureExtractor,
    max_image_side: u32,
    image: &RgbImage,
) -> Result<Features, PipelineError> {
    let (w, h) = image.dimensions();
    let min = extractor.min_image_side();
    if w < min || h < min {
        return Err(FeatureError::BadImage {
            extractor: extractor.name(),
            reason: format!("{w}×{h} is smaller than the network stride ({min} px per side)"),
        }
        .into());
    }
    let longest = w.max(h);
    if max_image_side == 0 || longest <= max_image_side {
        return Ok(extractor.extract(image)?);
    }
    let s = max_image_side as f64 / longest as f64;
    let (sw, sh) = (
        ((w as f64 * s).round() as u32).max(min),
        ((h as f64 * s).round() as u32).max(min),
    );
    let small = ::image::imageops::resize(image, sw, sh, ::image::imageops::FilterType::Triangle);
    let mut f = extractor.extract(&small)?;
    // Pixel-centre-at-integer convention: x = (x' + 0.5)·(w/w') − 0.5.
    let (fx, fy) = (w as f32 / sw as f32, h as f32 / sh as f32);
    for k in &mut f.keypoints {
        k[0] = (k[0] + 0.5) * fx - 0.5;
        k[1] = (k[1] + 0.5) * fy - 0.5;
    }
    f.image_size = [w, h];
    Ok(f)
}
