//! Pinhole camera (being written by the geometry work).

/// Radial-tangential distortion.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Distortion;
/// Pinhole camera.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PinholeCamera;
/// Camera errors.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CameraError {}
