#!/usr/bin/env bash
# ROS 2 tests of matcha_node (PyPI-wheel path; no ROS install needed); the last stage of scripts/test.sh, alone
# with `scripts/test.sh --ros-only [--only ...]`:
#   1. scripts/lib/ros_setup.sh (venv + matcha_msgs, cached) and a release build of matcha_node (feature ros)
#   2. the node's unit tests that need r2r (parameter mapping)   [pure node logic is in `cargo test --lib`]
#   3. tests/ros/launch_test.py (launch file with stand-in launch/launch_ros modules)
#   4. tests/ros/e2e_test.py inside a loopback-only network namespace (scripts/lib/ros_netns.sh): real rclpy peer,
#      rendered real-photo sequence with ground truth, bad inputs, stereo, match service, --ros-args, keyframe
#      switching with chained odometry vs ground truth, relocalization against a saved and reloaded map;
#   5. tests/ros/stereo_odometry_test.py in its own namespace: the stereo_odometry mode on the rendered sequence
#      vo_short played at its camera rate (every frame answered, ATE and rotation against ground truth, TF and
#      /tf_static, still camera, tracking loss and recovery, reset and set_pose services);
#   6. tests/ros/monocular_odometry_test.py: the default `odometry` mode (monocular VO) on vo_short's left images
#      at the camera rate (every frame answered with the network only at keyframes, Sim(3) accuracy, TF, the
#      mounting's rotation, still camera, tracking loss, reset and set_pose);
#   7. tests/ros/point_tracking_test.py: the `track` service and `point_tracks` topic on the 16-frame tracking clip
#      (refusals, ids, the same tracks as `matcha track` offline, accuracy against ground truth, clear);
#   8. tests/ros/faults_test.py: faults while running (engine file corrupted then restored, a restarted
#      publisher, use_sim_time with the clock jumping back, 10 debug-image subscribers, 3x overload for 60 s);
#   9. tests/ros/semantic_match_test.py: the `match` service's semantic mode on the tiny random-initialised MATCHA
#      semantic engines (plumbing), and its refusals;
#  10. tests/ros/map_localization_test.py: node.map.mode build (a map from the stereo odometry's keyframes), then
#      localize from a later frame (TF map -> odom and localization/pose against ground truth), and the
#      relocalization mode on the left images alone against the same map (localization/pose).
# Needs the exported models ($MATCHA_CACHE/engines, scripts/setup.sh) and onnxruntime (scripts/lib/env.sh).
#   scripts/lib/ros_tests.sh [--only startup,odometry,stereo,pipeline,badmap,diskfull,killmap,elsewhere,keyframes,decimation,relocalization,stereo_odometry,monocular,point_tracking,faults,semantic,map]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib/ros_prepare.sh
. "$here/ros_prepare.sh"
cargo test --release --features ros --lib -j 2 node:: -- --quiet
python3 tests/ros/launch_test.py
"$here/ros_netns.sh" python3 tests/ros/e2e_test.py --node target/release/matcha_node \
    --params config/matcha.yaml --engines "$engines" "$@"
only=""
prev=""
for arg in "$@"; do
    if [ "$prev" = "--only" ]; then only="$arg"; fi
    case "$arg" in --only=*) only="${arg#--only=}" ;; esac
    prev="$arg"
done
if [ -z "$only" ] || [[ ",$only," == *",stereo_odometry,"* ]]; then
    if [ ! -f "$MATCHA_CACHE/vo/vo_short/sequence.json" ]; then
        "$MATCHA_VENV/bin/python" tools/vo_sequences.py --only vo_short --out "$MATCHA_CACHE/vo"
    fi
    "$here/ros_netns.sh" python3 tests/ros/stereo_odometry_test.py --node target/release/matcha_node \
        --params config/matcha.yaml --engines "$engines" --sequence "$MATCHA_CACHE/vo/vo_short"
fi
if [ -z "$only" ] || [[ ",$only," == *",monocular,"* ]]; then
    "$here/ros_netns.sh" python3 tests/ros/monocular_odometry_test.py --node target/release/matcha_node \
        --params config/matcha.yaml --engines "$engines" --sequence "$MATCHA_CACHE/vo/vo_short"
fi
if [ -z "$only" ] || [[ ",$only," == *",point_tracking,"* ]]; then
    if [ ! -f "$MATCHA_CACHE/tracks-ci/track_short/groundtruth.json" ]; then
        "$MATCHA_VENV/bin/python" tools/track_clips.py --only track_short --frames 16 --out "$MATCHA_CACHE/tracks-ci"
    fi
    cargo build -j 2 --bin matcha
    "$here/ros_netns.sh" python3 tests/ros/point_tracking_test.py --node target/release/matcha_node \
        --cli target/debug/matcha --params config/matcha.yaml --engines "$engines" \
        --clip "$MATCHA_CACHE/tracks-ci/track_short"
fi
if [ -z "$only" ] || [[ ",$only," == *",faults,"* ]]; then
    "$here/ros_netns.sh" python3 tests/ros/faults_test.py --node target/release/matcha_node \
        --params config/matcha.yaml --engines "$engines"
fi
if [ -z "$only" ] || [[ ",$only," == *",semantic,"* ]]; then
    "$here/ros_netns.sh" python3 tests/ros/semantic_match_test.py --node target/release/matcha_node \
        --params config/matcha.yaml --engines "$engines" \
        --semantic-engines "$MATCHA_CACHE/matcha-fixtures/tiny-semantic"
fi
if [ -z "$only" ] || [[ ",$only," == *",map,"* ]]; then
    "$here/ros_netns.sh" python3 tests/ros/map_localization_test.py --node target/release/matcha_node \
        --params config/matcha.yaml --engines "$engines" --sequence "$MATCHA_CACHE/vo/vo_short"
fi
