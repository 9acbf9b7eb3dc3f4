#!/usr/bin/env bash
# Benchmarks that take minutes to an hour (not part of the test suite; run them on an otherwise idle machine:
# timings on a shared machine are noisy). The short CLI benchmarks are `matcha bench stream|pose|pnp|...`.
#
#   node  matcha_node (PyPI-wheel path, loopback-only network namespace) with a 30 Hz 640x480 publisher, the
#         default CPU configuration (config/matcha.yaml: odometry, XFeat + MNN): image-in -> pose-out latency
#         (median, p99, image stamp to receipt of relative_pose), sustained output rate, drops (node /diagnostics
#         counters), node RSS every 10 s (first/last/max, slope); a table against the goals (no RSS growth; p99
#         below one frame period at the achieved rate). tests/ros/bench.py
#           options: [--duration 600] [--rate 30] [--warmup 10]
#   soak  matcha_node in stereo_odometry mode on a rendered stereo sequence (vo_loop, 640x480) played back and
#         forth at 30 Hz for an hour, a row per 5 minutes (pairs sent and answered, latency p50 / p99, RSS, drops,
#         errors), then RSS last third vs first third. tests/ros/soak.py; renders vo_loop once when missing
#         (tools/vo_sequences.py, ~7 min)
#           options: [--duration 3600] [--window 300] [--rate 30] [--sequence DIR] [--json FILE]
#
#   scripts/bench.sh node|soak [options]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
what="${1:-}"
case "$what" in
  node|soak) shift ;;
  -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
  *) echo "usage: scripts/bench.sh node|soak [options]   (scripts/bench.sh --help)" >&2; exit 2 ;;
esac
# shellcheck source=scripts/lib/ros_prepare.sh
. "$REPO/scripts/lib/ros_prepare.sh"
NETNS="$REPO/scripts/lib/ros_netns.sh"
if [ "$what" = node ]; then
  "$NETNS" python3 tests/ros/bench.py --node target/release/matcha_node \
      --params config/matcha.yaml --engines "$engines" "$@"
else
  if [ ! -f "$MATCHA_CACHE/vo/vo_loop/sequence.json" ]; then
    "$MATCHA_VENV/bin/python" tools/vo_sequences.py --only vo_loop --out "$MATCHA_CACHE/vo"
  fi
  "$NETNS" python3 tests/ros/soak.py --node target/release/matcha_node \
      --params config/matcha.yaml --engines "$engines" --sequence "$MATCHA_CACHE/vo/vo_loop" "$@"
fi
