#!/usr/bin/env bash
# Main job of the ROS 2 node, in a loopback-only network namespace (scripts/ros_netns.sh); no ROS install is needed
# beyond the PyPI wheels that scripts/setup_ros.sh caches.
#
#   vo     matcha_node in stereo_odometry mode on the bundled rendered stereo sequence vo_short (10 s, 15 Hz,
#          640x480, exact ground truth), played at its camera rate by tests/ros/vo_player.py: every frame's
#          nav_msgs/Odometry (base_link in odom) is turned into the camera trajectory out/vo/vo_short_node.tum,
#          scored with evo (tools/eval_vo.py: ATE, RPE, drift) and drawn (top view against ground truth, error
#          over time): out/vo/vo_short_node.png
#   pairs  matcha_node in odometry mode with a player that publishes a real-photo sequence (tests/ros/pair_player.py)
#          and prints each relative pose against ground truth
#
#   scripts/demo_ros.sh [vo|pairs|all] [player options for pairs, e.g. --frames 24 --rate 2]     (default: all)
#
# Needs the exported models ($MATCHA_CACHE/engines: scripts/setup.sh), the real photos (apt opencv-doc) and, for
# vo, the rendered sequence ($MATCHA_CACHE/vo/vo_short: rendered here when missing, a few minutes once).
# Exit status 0 when both demos meet their tolerances.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
what="all"
case "${1:-}" in vo|pairs|all) what="$1"; shift ;; esac
# shellcheck source=scripts/ros_prepare.sh
. "$here/ros_prepare.sh"
if [ "$what" != pairs ]; then
  seq="$MATCHA_CACHE/vo/vo_short"
  if [ ! -f "$seq/sequence.json" ]; then
    "$MATCHA_VENV/bin/python" tools/vo_sequences.py --only vo_short --out "$MATCHA_CACHE/vo"
  fi
  mkdir -p out/vo
  "$here/ros_netns.sh" python3 tests/ros/vo_player.py --node target/release/matcha_node \
      --params config/matcha.yaml --engines "$engines" --sequence "$seq" --tum out/vo/vo_short_node.tum
  "$MATCHA_VENV/bin/python" tools/eval_vo.py --sequence "$seq" --trajectory out/vo/vo_short_node.tum \
      --align se3 --plot out/vo/vo_short_node.png
  echo "trajectory picture (top view against ground truth, error over time): out/vo/vo_short_node.png"
fi
if [ "$what" != vo ]; then
  "$here/ros_netns.sh" python3 tests/ros/pair_player.py --node target/release/matcha_node \
      --params config/matcha.yaml --engines "$engines" "$@"
fi
