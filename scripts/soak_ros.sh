#!/usr/bin/env bash
# Soak of matcha_node in stereo_odometry mode (PyPI-wheel path, loopback-only network namespace): a rendered
# stereo sequence (vo_loop, 640x480) played back and forth at 30 Hz for an hour, a row per 5 minutes with pairs
# sent and answered, latency p50 / p99, RSS, drops and errors, then RSS last third vs first third. See
# tests/ros/soak.py.
#
#   scripts/soak_ros.sh [--duration 3600] [--window 300] [--rate 30] [--sequence DIR] [--json FILE]
#
# Renders vo_loop once when it is missing (tools/vo_sequences.py, ~7 min). Run it on an otherwise idle machine.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/ros_prepare.sh
. "$here/ros_prepare.sh"
if [ ! -f "$MATCHA_CACHE/vo/vo_loop/sequence.json" ]; then
    "$MATCHA_VENV/bin/python" tools/vo_sequences.py --only vo_loop --out "$MATCHA_CACHE/vo"
fi
"$here/ros_netns.sh" python3 tests/ros/soak.py --node target/release/matcha_node \
    --params config/matcha.yaml --engines "$engines" --sequence "$MATCHA_CACHE/vo/vo_loop" "$@"
