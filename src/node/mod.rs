//! The ROS 2 node's logic: configuration (`node:` section), pairing policies (odometry keyframes, stereo
//! sync), the stereo odometry's map session, health counters, and — behind the `ros` feature — the r2r node itself.
//!
//! The pure parts ([`config`], [`admission`], [`heap`], [`keyframes`], [`sync`], [`map_session`],
//! [`point_tracking`], [`schedule`], [`stats`], [`stereo_rig`], [`visual_odometry`], [`tf_tree`]) build and are
//! unit-tested without ROS; `convert` and `ros` need r2r and a ROS 2 environment at build time (see
//! `scripts/lib/ros_setup.sh`).
//! The node is a thin shell over [`crate::pipeline`]: it knows nothing of model internals.

pub mod admission;
pub mod config;
pub mod heap;
pub mod keyframes;
pub mod map_session;
pub mod point_tracking;
pub mod schedule;
pub mod stats;
pub mod stereo_rig;
pub mod sync;
pub mod tf_tree;
pub mod visual_odometry;

#[cfg(feature = "ros")]
pub mod convert;
#[cfg(feature = "ros")]
pub mod ros;
