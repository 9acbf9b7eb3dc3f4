//! Image input: decoding files and compressed buffers, converting raw camera buffers (the encodings of
//! `sensor_msgs/Image`) to 8-bit RGB, and checking sizes.
//!
//! Every image that enters the pipeline becomes an [`RgbImage`] (8-bit RGB). Grayscale, RGBA/BGRA and 16-bit
//! inputs are converted (16-bit is scaled by `1/257`, i.e. the full 16-bit range maps to the full 8-bit range;
//! alpha is dropped). Coordinates follow the OpenCV convention: the centre of the top-left pixel is (0, 0).
//!
//! This module does not resize for engines (each extractor knows its own input constraints) and knows nothing
//! of ONNX or ROS.

use std::path::Path;

pub use ::image::RgbImage;

/// Largest image side accepted (pixels). Larger inputs are almost always corrupt headers; rejecting them
/// early keeps a bad message from allocating gigabytes.
pub const MAX_IMAGE_SIDE: u32 = 16_384;

/// Errors of the image layer.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The file could not be read.
    #[error("cannot read image file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The bytes are not a decodable image.
    #[error("cannot decode image {what}: {reason}")]
    Decode {
        /// File name or "buffer".
        what: String,
        /// Decoder message.
        reason: String,
    },
    /// Zero or absurd dimensions.
    #[error("image {what} has unusable size {width}×{height} (need 1..={MAX_IMAGE_SIDE} pixels per side)")]
    BadSize {
        /// File name or "buffer".
        what: String,
        /// Width.
        width: u32,
        /// Height.
        height: u32,
    },
    /// Raw buffer encoding not supported.
    #[error(
        "unsupported image encoding '{0}' (supported: mono8, mono16, rgb8, bgr8, rgba8, bgra8)"
    )]
    UnsupportedEncoding(String),
    /// Raw buffer does not hold `height × step` bytes or `step` is smaller than a row.
    #[error("raw image layout mismatch: {0}")]
    Layout(String),
}

/// Pixel layouts of raw camera buffers (the `sensor_msgs/Image` encodings we accept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawEncoding {
    /// 8-bit gray.
    Mono8,
    /// 16-bit gray.
    Mono16,
    /// 8-bit RGB.
    Rgb8,
    /// 8-bit BGR.
    Bgr8,
    /// 8-bit RGBA.
    Rgba8,
    /// 8-bit BGRA.
    Bgra8,
}

impl RawEncoding {
    /// Parses a `sensor_msgs/Image` encoding string.
    pub fn parse(encoding: &str) -> Result<Self, ImageError> {
        Ok(match encoding {
            "mono8" | "8UC1" => Self::Mono8,
            "mono16" | "16UC1" => Self::Mono16,
            "rgb8" => Self::Rgb8,
            "bgr8" | "8UC3" => Self::Bgr8,
            "rgba8" => Self::Rgba8,
            "bgra8" | "8UC4" => Self::Bgra8,
            other => return Err(ImageError::UnsupportedEncoding(other.to_string())),
        })
    }

    /// Bytes per pixel.
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            Self::Mono8 => 1,
            Self::Mono16 => 2,
            Self::Rgb8 | Self::Bgr8 => 3,
            Self::Rgba8 | Self::Bgra8 => 4,
        }
    }
}

fn check_size(what: &str, width: u32, height: u32) -> Result<(), ImageError> {
    if width == 0 || height == 0 || width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE {
        return Err(ImageError::BadSize {
            what: what.to_string(),
            width,
            height,
        });
    }
    Ok(())
}

/// Converts a raw camera buffer (as in `sensor_msgs/Image`) to RGB. `step` is the row length in bytes (may
/// include padding); `is_bigendian` matters for 16-bit encodings only.
pub fn from_raw(
    encoding: &str,
    width: u32,
    height: u32,
    step: u32,
    is_bigendian: bool,
    data: &[u8],
) -> Result<RgbImage, ImageError> {
    let enc = RawEncoding::parse(encoding)?;
    check_size("buffer", width, height)?;
    let row_bytes = width as usize * enc.bytes_per_pixel();
    let step = step as usize;
    if step < row_bytes {
        return Err(ImageError::Layout(format!(
            "step {step} is smaller than one row of {width} {encoding} pixels ({row_bytes} bytes)"
        )));
    }
    let needed = step * (height as usize - 1) + row_bytes;
    if data.len() < needed {
        return Err(ImageError::Layout(format!(
            "{} bytes given, {width}×{height} {encoding} with step {step} needs {needed}",
            data.len()
        )));
    }
    let mut out = RgbImage::new(width, height);
    for (y, out_row) in out.rows_mut().enumerate() {
        let row = &data[y * step..y * step + row_bytes];
        for (x, px) in out_row.enumerate() {
            px.0 = match enc {
                RawEncoding::Mono8 => [row[x]; 3],
                RawEncoding::Mono16 => {
                    let b = [row[2 * x], row[2 * x + 1]];
                    let v = if is_bigendian {
                        u16::from_be_bytes(b)
                    } else {
                        u16::from_le_bytes(b)
                    };
                    [(v / 257) as u8; 3]
                }
                RawEncoding::Rgb8 => [row[3 * x], row[3 * x + 1], row[3 * x + 2]],
                RawEncoding::Bgr8 => [row[3 * x + 2], row[3 * x + 1], row[3 * x]],
                RawEncoding::Rgba8 => [row[4 * x], row[4 * x + 1], row[4 * x + 2]],
                RawEncoding::Bgra8 => [row[4 * x + 2], row[4 * x + 1], row[4 * x]],
            };
        }
    }
    Ok(out)
}

/// Decodes an encoded image (PNG, JPEG, TIFF, PNM, BMP) from memory, e.g. a `sensor_msgs/CompressedImage`.
pub fn decode_compressed(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    decode_bytes("buffer", bytes)
}

/// Loads an image file and converts it to 8-bit RGB.
pub fn load(path: &Path) -> Result<RgbImage, ImageError> {
    let what = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| ImageError::Io {
        path: what.clone(),
        source,
    })?;
    decode_bytes(&what, &bytes)
}

fn decode_bytes(what: &str, bytes: &[u8]) -> Result<RgbImage, ImageError> {
    let decode_err = |reason: String| ImageError::Decode {
        what: what.to_string(),
        reason,
    };
    if bytes.is_empty() {
        return Err(decode_err("no data (empty file or buffer)".into()));
    }
    let open = || {
        ::image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| decode_err(e.to_string()))
    };
    // the size from the header first, so that an oversized image is reported with its real size (the
    // decoder's limit error carries none)
    let (width, height) = open()?
        .into_dimensions()
        .map_err(|e| decode_err(e.to_string()))?;
    check_size(what, width, height)?;
    let mut reader = open()?;
    let mut limits = ::image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    reader.limits(limits);
    let decoded = reader.decode().map_err(|e| match e {
        ::image::ImageError::Limits(_) => ImageError::BadSize {
            what: what.to_string(),
            width,
            height,
        },
        other => decode_err(other.to_string()),
    })?;
    check_size(what, decoded.width(), decoded.height())?;
    // `to_rgb8` handles gray, gray+alpha, RGBA and 16-bit/float variants (16-bit scaled to 8-bit).
    Ok(decoded.to_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_encodings_with_padding() {
        // 2×2 image, step padded to 8 bytes.
        let bgr = [1u8, 2, 3, 4, 5, 6, 0, 0, 7, 8, 9, 10, 11, 12, 0, 0];
        let img = from_raw("bgr8", 2, 2, 8, false, &bgr).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [3, 2, 1]);
        assert_eq!(img.get_pixel(1, 1).0, [12, 11, 10]);
        let mono16_be = [0xFFu8, 0xFF, 0x01, 0x01];
        let img = from_raw("mono16", 2, 1, 4, true, &mono16_be).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [255; 3]);
        assert_eq!(img.get_pixel(1, 0).0, [1; 3]);
        let rgba = [10u8, 20, 30, 40];
        assert_eq!(
            from_raw("rgba8", 1, 1, 4, false, &rgba)
                .unwrap()
                .get_pixel(0, 0)
                .0,
            [10, 20, 30]
        );
        let bgra = [10u8, 20, 30, 40];
        assert_eq!(
            from_raw("bgra8", 1, 1, 4, false, &bgra)
                .unwrap()
                .get_pixel(0, 0)
                .0,
            [30, 20, 10]
        );
    }

    #[test]
    fn raw_errors_are_reported() {
        assert!(matches!(
            from_raw("yuv422", 2, 2, 4, false, &[0; 8]),
            Err(ImageError::UnsupportedEncoding(_))
        ));
        assert!(matches!(
            from_raw("rgb8", 2, 2, 5, false, &[0; 12]),
            Err(ImageError::Layout(_))
        ));
        assert!(matches!(
            from_raw("rgb8", 2, 2, 6, false, &[0; 11]),
            Err(ImageError::Layout(_))
        ));
        assert!(matches!(
            from_raw("rgb8", 0, 2, 6, false, &[]),
            Err(ImageError::BadSize { .. })
        ));
        assert!(matches!(
            from_raw("mono8", 100_000, 1, 100_000, false, &[]),
            Err(ImageError::BadSize { .. })
        ));
    }

    #[test]
    fn decode_errors_are_reported() {
        assert!(matches!(
            decode_compressed(&[]),
            Err(ImageError::Decode { .. })
        ));
        assert!(matches!(
            decode_compressed(b"not an image at all"),
            Err(ImageError::Decode { .. })
        ));
        let missing = load(Path::new("/nonexistent/x.png"));
        assert!(matches!(missing, Err(ImageError::Io { .. })));
    }

    #[test]
    fn decodes_gray16_png() {
        let mut buf = Vec::new();
        let img = ::image::ImageBuffer::<::image::Luma<u16>, Vec<u16>>::from_pixel(
            3,
            2,
            ::image::Luma([65535]),
        );
        img.write_to(
            &mut std::io::Cursor::new(&mut buf),
            ::image::ImageFormat::Png,
        )
        .unwrap();
        let rgb = decode_compressed(&buf).unwrap();
        assert_eq!(rgb.dimensions(), (3, 2));
        assert_eq!(rgb.get_pixel(2, 1).0, [255; 3]);
    }

    // Property tests: any buffer decodes or is refused with an error, never a panic; memory stays bounded
    // by the size limit (PROPTEST_CASES=100000 for a longer run by hand).
    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        fn png(w: u32, h: u32) -> Vec<u8> {
            let img =
                RgbImage::from_fn(w, h, |x, y| ::image::Rgb([x as u8, y as u8, (x ^ y) as u8]));
            let mut out = Vec::new();
            img.write_to(
                &mut std::io::Cursor::new(&mut out),
                ::image::ImageFormat::Png,
            )
            .unwrap();
            out
        }

        proptest! {
            #[test]
            fn raw_buffers_decode_or_error(
                enc in prop::sample::select(vec!["mono8", "mono16", "rgb8", "bgr8", "rgba8", "bgra8",
                                                 "yuv422", "", "RGB8", "8UC3", "bayer_rggb8"]),
                width in prop_oneof![0u32..40, Just(u32::MAX), Just(MAX_IMAGE_SIDE + 1)],
                height in prop_oneof![0u32..40, Just(u32::MAX)],
                step in prop_oneof![0u32..200, Just(u32::MAX)],
                big_endian in any::<bool>(),
                data in prop::collection::vec(any::<u8>(), 0..4000),
            ) {
                if let Ok(img) = from_raw(enc, width, height, step, big_endian, &data) {
                    prop_assert_eq!(img.dimensions(), (width, height));
                }
            }

            #[test]
            fn compressed_bytes_decode_or_error(data in prop::collection::vec(any::<u8>(), 0..2000)) {
                let _ = decode_compressed(&data);
            }

            #[test]
            fn corrupted_pngs_decode_or_error(
                w in 1u32..24, h in 1u32..24,
                flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
                cut in any::<prop::sample::Index>(),
            ) {
                let mut bytes = png(w, h);
                for (i, v) in &flips {
                    let k = i.index(bytes.len());
                    bytes[k] = *v;
                }
                let keep = cut.index(bytes.len() + 1);
                bytes.truncate(keep.max(1));
                if let Ok(img) = decode_compressed(&bytes) {
                    prop_assert!(img.width() <= MAX_IMAGE_SIDE && img.height() <= MAX_IMAGE_SIDE);
                }
            }
        }

        #[test]
        fn an_oversized_image_is_reported_with_its_size() {
            // a PPM header claiming 30000×4 (the pixels are never allocated)
            let mut bytes = b"P6\n30000 4\n255\n".to_vec();
            bytes.extend_from_slice(&[0u8; 64]);
            let e = decode_compressed(&bytes).unwrap_err().to_string();
            assert!(e.contains("30000×4"), "{e}");
        }
    }
}
