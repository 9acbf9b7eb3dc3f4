#!/usr/bin/env bash
# Benchmark of matcha_node on this machine (PyPI-wheel path, loopback-only network namespace): a 30 Hz 640x480
# publisher, the default CPU configuration (config/matcha.yaml: odometry, XFeat + MNN), image-in -> pose-out
# latency (median, p99, from the image stamp to receipt of relative_pose), sustained output rate, drops (node
# /diagnostics counters), node RSS every 10 s over the run (first/last/max, slope); a table against the goals
# (no RSS growth; p99 latency below one frame period at the achieved rate). See tests/ros/bench.py.
#
#   scripts/bench_ros.sh [--duration 600] [--rate 30] [--warmup 10]
#
# Builds are cached (scripts/setup_ros.sh stamps, cargo). Run it on an otherwise idle machine: timings on a
# shared machine are noisy.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/ros_prepare.sh
. "$here/ros_prepare.sh"
"$here/ros_netns.sh" python3 tests/ros/bench.py --node target/release/matcha_node \
    --params config/matcha.yaml --engines "$engines" "$@"
