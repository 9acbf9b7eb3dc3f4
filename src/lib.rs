//! # matcha
//!
//! One learned descriptor for matching anything, for robots: keypoint correspondences and relative pose
//! estimates from camera images, after *MATCHA: Towards Matching Anything* (CVPR 2025).
//!
//! The crate follows the data flow of one frame:
//! [`image`] (decode, camera model scaling) → [`features`] (keypoints + descriptors from ONNX engines run by
//! [`runtime`]) → [`matching`] (mutual nearest neighbour, LightGlue) → [`geometry`] (5-point LO-RANSAC relative
//! pose) → [`pipeline`] (wires the above for a pair or a stream). The core knows nothing of ROS; the ROS 2 node
//! lives behind the `ros` feature. See `ARCHITECTURE.md` for the layer table.
#![deny(missing_docs)]

pub mod config;
#[cfg(feature = "cli")]
pub mod eval;
pub mod features;
pub mod geometry;
pub mod image;
pub mod map;
pub mod matching;
pub mod node;
pub mod pipeline;
pub mod runtime;
pub mod track;
pub mod util;
pub mod viz;
pub mod vo;
