//! `matcha_node`: the ROS 2 node (feature `ros`). Keypoint correspondences and relative pose from camera
//! topics; see the README section "ROS 2 node" and `launch/matcha.launch.py`.
//!
//! All configuration comes from ROS parameters (`--ros-args --params-file config/matcha.yaml -p name:=value`);
//! invalid values stop the node at start-up with a message naming the parameter (exit status 1).

use std::process::ExitCode;

use matcha::node::heap::CountingAllocator;

/// mimalloc instead of glibc malloc: with glibc the node's RSS kept stepping up for minutes (arenas of the
/// engine, matcher and executor threads filling one after another; docs/ros.md). Counted, so that
/// `/diagnostics` tells the bytes the node holds from the pages the allocator keeps (`matcha::node::heap`).
#[global_allocator]
static GLOBAL: CountingAllocator<mimalloc::MiMalloc> = CountingAllocator(mimalloc::MiMalloc);

fn main() -> ExitCode {
    match matcha::node::ros::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("matcha_node: {e}");
            ExitCode::FAILURE
        }
    }
}
