//! Conversions between ROS messages and the core's types (feature `ros`): images, camera calibration,
//! stamps, poses, the `Correspondences` message and the debug image.
//!
//! Every conversion of input data returns a [`BadInput`] with a short cause name (counted in diagnostics)
//! instead of panicking; nothing here trusts the sizes or numbers in a message.

use nalgebra::Isometry3;
use r2r::builtin_interfaces::msg::Time;
use r2r::geometry_msgs::msg::{Point, Pose, PoseWithCovariance, Quaternion};
use r2r::matcha_msgs::msg::Correspondences;
use r2r::sensor_msgs::msg::{CameraInfo, CompressedImage, Image};
use r2r::std_msgs::msg::Header;

use crate::features::Features;
use crate::geometry::{PinholeCamera, RelativePose};
use crate::image::RgbImage;
use crate::matching::Matches;
use crate::node::keyframes::published_pose;
use crate::pipeline::PairResult;

/// A rejected input: a short cause (for counting) and a message (for the log).
#[derive(Debug, Clone, PartialEq)]
pub struct BadInput {
    /// Short, stable cause name (`bad_encoding`, `size_mismatch`, ...).
    pub cause: &'static str,
    /// Human-readable detail.
    pub message: String,
}

impl BadInput {
    /// A bad input with a cause and message.
    pub fn new(cause: &'static str, message: impl Into<String>) -> Self {
        Self {
            cause,
            message: message.into(),
        }
    }
}

/// Nanoseconds of a ROS time.
pub fn time_ns(t: &Time) -> i64 {
    i64::from(t.sec) * 1_000_000_000 + i64::from(t.nanosec)
}

/// A raw or compressed image message.
#[derive(Debug, Clone)]
pub enum ImageMsg {
    /// `sensor_msgs/Image`.
    Raw(Image),
    /// `sensor_msgs/CompressedImage`.
    Compressed(CompressedImage),
}

impl ImageMsg {
    /// The message header.
    pub fn header(&self) -> &Header {
        match self {
            ImageMsg::Raw(m) => &m.header,
            ImageMsg::Compressed(m) => &m.header,
        }
    }
}

/// Decodes an image message to RGB, rejecting zero-size, oversized and inconsistent buffers.
pub fn decode_image(msg: &ImageMsg, max_pixels: u64) -> Result<RgbImage, BadInput> {
    match msg {
        ImageMsg::Raw(m) => {
            if m.width == 0 || m.height == 0 {
                return Err(BadInput::new(
                    "zero_size",
                    format!("image is {}x{}", m.width, m.height),
                ));
            }
            let pixels = u64::from(m.width) * u64::from(m.height);
            if pixels > max_pixels {
                return Err(BadInput::new(
                    "huge_image",
                    format!(
                        "image is {}x{} = {pixels} pixels, node.max_image_pixels is {max_pixels}",
                        m.width, m.height
                    ),
                ));
            }
            crate::image::from_raw(
                &m.encoding,
                m.width,
                m.height,
                m.step,
                m.is_bigendian != 0,
                &m.data,
            )
            .map_err(|e| {
                use crate::image::ImageError as E;
                let cause = match e {
                    E::UnsupportedEncoding(_) => "bad_encoding",
                    E::Layout(_) => "size_mismatch",
                    E::BadSize { .. } => "huge_image",
                    _ => "bad_image",
                };
                BadInput::new(cause, e.to_string())
            })
        }
        ImageMsg::Compressed(m) => {
            let img = crate::image::decode_compressed(&m.data).map_err(|e| {
                BadInput::new("bad_compressed", format!("format '{}': {e}", m.format))
            })?;
            let pixels = u64::from(img.width()) * u64::from(img.height());
            if pixels > max_pixels {
                return Err(BadInput::new(
                    "huge_image",
                    format!(
                        "decoded image has {pixels} pixels, node.max_image_pixels is {max_pixels}"
                    ),
                ));
            }
            Ok(img)
        }
    }
}

/// The pinhole camera of a CameraInfo, checked against the image size.
pub fn camera_from_info(
    info: &CameraInfo,
    width: u32,
    height: u32,
) -> Result<PinholeCamera, BadInput> {
    if info.k.len() != 9 {
        return Err(BadInput::new(
            "bad_camera_info",
            format!("K has {} values, need 9", info.k.len()),
        ));
    }
    if info.k.iter().chain(info.d.iter()).any(|v| !v.is_finite()) {
        return Err(BadInput::new(
            "bad_camera_info",
            "K or D contains NaN or infinity",
        ));
    }
    let model = info.distortion_model.as_str();
    let d: &[f64] = if info.d.iter().all(|&v| v == 0.0) {
        &[]
    } else {
        &info.d
    };
    if !d.is_empty() && model != "plumb_bob" && model != "rational_polynomial" {
        return Err(BadInput::new(
            "bad_camera_info",
            format!("distortion model '{model}' is not supported (plumb_bob only)"),
        ));
    }
    if model == "rational_polynomial" && d.len() > 5 && d[5..].iter().any(|&v| v != 0.0) {
        return Err(BadInput::new(
            "bad_camera_info",
            "rational_polynomial with k4..k6 != 0 is not supported",
        ));
    }
    let d = if d.len() > 5 { &d[..5] } else { d };
    if info.width != 0 && info.height != 0 && (info.width != width || info.height != height) {
        return Err(BadInput::new(
            "camera_info_size_mismatch",
            format!(
                "CameraInfo is for {}x{}, image is {width}x{height}",
                info.width, info.height
            ),
        ));
    }
    let mut k = [0.0; 9];
    k.copy_from_slice(&info.k);
    PinholeCamera::from_k(&k, d).map_err(|e| BadInput::new("bad_camera_info", e.to_string()))
}

/// Stereo baseline (metres) from the right camera's projection matrix `P = [fx' 0 cx' Tx; ...]`,
/// `Tx = −fx'·B`; `None` when P is missing or gives no positive baseline.
pub fn baseline_from_p(right: &CameraInfo) -> Option<f64> {
    if right.p.len() != 12 || !(right.p[0].is_finite() && right.p[0] > 0.0) {
        return None;
    }
    let b = -right.p[3] / right.p[0];
    (b.is_finite() && b > 0.0).then_some(b)
}

/// A ROS pose from an isometry.
pub fn pose_msg(iso: &Isometry3<f64>) -> Pose {
    let t = iso.translation.vector;
    let q = iso.rotation.quaternion();
    Pose {
        position: Point {
            x: t.x,
            y: t.y,
            z: t.z,
        },
        orientation: Quaternion {
            x: q.i,
            y: q.j,
            z: q.k,
            w: q.w,
        },
    }
}

/// What a pairing produced, ready to publish.
pub struct PairOutput<'a> {
    /// Header of image b (newer).
    pub header: Header,
    /// Stamp of image a.
    pub reference_stamp: Time,
    /// Frame of image a.
    pub reference_frame_id: String,
    /// Keyframe id of image a.
    pub keyframe_id: u64,
    /// Features of a and b.
    pub features: (&'a Features, &'a Features),
    /// The matches.
    pub matches: &'a Matches,
    /// The pose, or why none.
    pub pose: Result<&'a RelativePose, String>,
    /// Pose of b in a (translation scaled to metres when `metric`).
    pub pose_b_in_a: Option<Isometry3<f64>>,
    /// Covariance of `pose_b_in_a`, ROS order.
    pub covariance: [f64; 36],
    /// Translation is metric.
    pub metric: bool,
    /// Descriptor and matcher names.
    pub names: (&'a str, &'a str),
}

impl<'a> PairOutput<'a> {
    /// A matched pair's output: `header` is image b's; `reference` is image a's stamp, frame id and keyframe
    /// id; the pose is published as b in a ([`published_pose`]), in metres when `baseline_m` is given.
    pub fn of_pair(
        header: Header,
        reference: (Time, String, u64),
        features: (&'a Features, &'a Features),
        pair: &'a PairResult,
        names: (&'a str, &'a str),
        baseline_m: Option<f64>,
    ) -> Self {
        let (pose_b_in_a, covariance) = published_pose(&pair.pose, baseline_m);
        Self {
            header,
            reference_stamp: reference.0,
            reference_frame_id: reference.1,
            keyframe_id: reference.2,
            features,
            matches: &pair.matches,
            pose: pair.pose.as_ref().map_err(|e| e.to_string()),
            pose_b_in_a,
            covariance,
            metric: baseline_m.is_some(),
            names,
        }
    }
}

/// Builds the `Correspondences` message.
pub fn correspondences_msg(o: &PairOutput<'_>, processing_ms: f32) -> Correspondences {
    let (fa, fb) = o.features;
    let m = o.matches.matches.len();
    let mut points_a = Vec::with_capacity(2 * m);
    let mut points_b = Vec::with_capacity(2 * m);
    let mut scores = Vec::with_capacity(m);
    for mt in &o.matches.matches {
        let pa = fa
            .keypoints
            .get(mt.a as usize)
            .copied()
            .unwrap_or([f32::NAN; 2]);
        let pb = fb
            .keypoints
            .get(mt.b as usize)
            .copied()
            .unwrap_or([f32::NAN; 2]);
        points_a.extend_from_slice(&pa);
        points_b.extend_from_slice(&pb);
        scores.push(mt.score);
    }
    let mut msg = Correspondences {
        header: o.header.clone(),
        reference_stamp: o.reference_stamp.clone(),
        reference_frame_id: o.reference_frame_id.clone(),
        keyframe_id: o.keyframe_id,
        width_a: fa.image_size[0],
        height_a: fa.image_size[1],
        width_b: fb.image_size[0],
        height_b: fb.image_size[1],
        num_keypoints_a: fa.len() as u32,
        num_keypoints_b: fb.len() as u32,
        points_a,
        points_b,
        scores,
        inliers: vec![false; m],
        descriptor: o.names.0.to_string(),
        matcher: o.names.1.to_string(),
        metric_scale: o.metric,
        processing_time_ms: processing_ms,
        ..Default::default()
    };
    match (&o.pose, &o.pose_b_in_a) {
        (Ok(p), Some(iso)) => {
            if p.inliers.len() == m {
                msg.inliers = p.inliers.clone();
            }
            msg.pose_valid = true;
            msg.relative_pose = PoseWithCovariance {
                pose: pose_msg(iso),
                covariance: o.covariance.to_vec(),
            };
            msg.num_inliers = p.num_inliers as u32;
            msg.inlier_ratio = p.quality.inlier_ratio as f32;
            msg.rms_error_px = p.quality.rms_error_px as f32;
            msg.median_parallax_deg = p.quality.median_parallax_deg as f32;
        }
        (Err(why), _) => msg.pose_status = why.clone(),
        (Ok(_), None) => msg.pose_status = "internal: pose without transform".into(),
    }
    if msg.relative_pose.covariance.len() != 36 {
        msg.relative_pose.covariance = vec![0.0; 36];
        msg.relative_pose.pose.orientation.w = 1.0;
    }
    msg
}

/// Side-by-side debug image (a left, b right) with inliers drawn green and outliers red, as `rgb8`.
pub fn debug_image(a: &RgbImage, b: &RgbImage, c: &Correspondences) -> Image {
    use image::Rgb;
    let w = a.width() + b.width();
    let h = a.height().max(b.height());
    let mut canvas = RgbImage::new(w, h);
    image::imageops::replace(&mut canvas, a, 0, 0);
    image::imageops::replace(&mut canvas, b, i64::from(a.width()), 0);
    let off = a.width() as f32;
    for i in 0..c.scores.len() {
        let (Some(xa), Some(ya), Some(xb), Some(yb)) = (
            c.points_a.get(2 * i),
            c.points_a.get(2 * i + 1),
            c.points_b.get(2 * i),
            c.points_b.get(2 * i + 1),
        ) else {
            break;
        };
        let inlier = c.inliers.get(i).copied().unwrap_or(false);
        if !inlier && c.pose_valid && i % 4 != 0 {
            continue; // draw a quarter of the outliers to keep the picture readable
        }
        let color = if inlier {
            Rgb([0, 220, 0])
        } else {
            Rgb([230, 30, 30])
        };
        imageproc::drawing::draw_line_segment_mut(&mut canvas, (*xa, *ya), (*xb + off, *yb), color);
    }
    Image {
        header: c.header.clone(),
        height: h,
        width: w,
        encoding: "rgb8".into(),
        is_bigendian: 0,
        step: 3 * w,
        data: canvas.into_raw(),
    }
}

#[cfg(test)]
mod tests {
    //! Property tests of what the node parses from messages: any Image, CompressedImage or CameraInfo
    //! decodes or is refused with a counted cause, never a panic (run by `scripts/test.sh --ros-only`; longer by
    //! hand with `PROPTEST_CASES=100000`).
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            -2e3f64..2e3,
            Just(0.0),
            Just(f64::NAN),
            Just(f64::NEG_INFINITY),
            Just(1e300)
        ]
    }

    proptest! {
        #[test]
        fn any_image_message_decodes_or_is_refused(
            enc in prop::sample::select(vec!["mono8", "mono16", "rgb8", "bgr8", "rgba8", "bgra8", "16UC1", "x"]),
            width in prop_oneof![0u32..48, Just(u32::MAX)],
            height in prop_oneof![0u32..48, Just(u32::MAX)],
            step in prop_oneof![0u32..200, Just(u32::MAX)],
            big_endian in 0u8..3,
            data in prop::collection::vec(any::<u8>(), 0..3000),
            compressed in any::<bool>(),
        ) {
            let msg = if compressed {
                ImageMsg::Compressed(CompressedImage { header: Header::default(), format: enc.into(), data })
            } else {
                ImageMsg::Raw(Image {
                    header: Header::default(), height, width, encoding: enc.into(),
                    is_bigendian: big_endian, step, data,
                })
            };
            if let Ok(img) = decode_image(&msg, 4096 * 4096) {
                prop_assert!(img.width() > 0 && img.height() > 0);
            }
        }

        #[test]
        fn any_camera_info_is_a_camera_or_refused(
            k in prop::collection::vec(value(), 0..11),
            d in prop::collection::vec(value(), 0..10),
            model in prop::sample::select(vec!["plumb_bob", "rational_polynomial", "equidistant", ""]),
            size in (0u32..2000, 0u32..2000),
            image in (1u32..2000, 1u32..2000),
        ) {
            let info = CameraInfo {
                width: size.0, height: size.1, distortion_model: model.into(), d, k,
                ..Default::default()
            };
            if let Ok(cam) = camera_from_info(&info, image.0, image.1) {
                prop_assert!(cam.fx.is_finite() && cam.fx > 0.0 && cam.fy.is_finite() && cam.fy > 0.0);
            }
        }
    }
}
