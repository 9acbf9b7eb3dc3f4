#!/usr/bin/env bash
# Main job of the ROS 2 node: runs matcha_node (odometry mode, XFeat on CPU) with a player that publishes a real
# image sequence with known intrinsics (a room textured with real photographs, exact ground-truth poses, 640x480)
# at a fixed rate, and prints each published relative pose against ground truth (rotation and translation
# direction error per frame, then a summary line). Everything runs in a loopback-only network namespace
# (scripts/ros_netns.sh); no ROS install is needed beyond the PyPI wheels that scripts/setup_ros.sh caches.
#
#   scripts/demo_ros.sh [player options, e.g. --frames 24 --rate 2]     (see tests/ros_player.py --help)
#
# Needs the exported models ($MATCHA_CACHE/engines: scripts/setup.sh) and the real photos (apt opencv-doc).
# Builds are cached (setup_ros.sh stamps, cargo); after them the demo ends by itself in well under a minute.
# Exit status 0 when enough frames got a pose and every pose is within tolerance of the ground truth.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/ros_prepare.sh
. "$here/ros_prepare.sh"
"$here/ros_netns.sh" python3 tests/ros_player.py --node target/release/matcha_node \
    --params config/matcha.yaml --engines "$engines" "$@"
