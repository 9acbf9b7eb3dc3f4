//! The integration tests, one binary (one link step instead of nine): the `matcha` CLI end to end, parity of
//! the extractors, matchers and MATCHA chain with their Python references, the pose and PnP solvers against
//! PoseLib / OpenCV reference outputs, photometric refinement on real photos, ONNX Runtime binding, and the
//! stereo VO on a rendered sequence. Run one group with `cargo test --test integration parity_features::`.
//!
//! The GPU checks are their own binary (`tests/gpu.rs`, `#[ignore]`d without a GPU).

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod geometry_reference;
mod map;
mod parity_features;
mod parity_matcha;
mod parity_matchers;
mod pnp_reference;
mod refine_photos;
mod runtime_binding;
mod track;
mod vo;
mod vo_monocular;
