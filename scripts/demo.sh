#!/usr/bin/env bash
# The main job on the bundled data (the last step of scripts/setup.sh; run it again any time after setup):
#
#   cli   `matcha match` on the Middlebury Motorcycle stereo pair (picture out/motorcycle_matches.png),
#         `matcha eval` on four sets with ground-truth poses (tables and recall curves in out/eval/), `matcha vo` on
#         the rendered stereo sequence vo_short scored with evo (out/vo/vo_short.png)
#   ros   the ROS 2 node in a loopback-only network namespace (scripts/lib/ros_netns.sh; PyPI wheels, no ROS
#         install): stereo_odometry on vo_short played at its camera rate by tests/ros/vo_player.py, scored with
#         evo (out/vo/vo_short_node.png); then odometry mode on a real-photo sequence (tests/ros/pair_player.py),
#         each relative pose against ground truth
#
#   scripts/demo.sh [all|cli|ros|ros-vo|ros-pairs] [player options for ros-pairs, e.g. --frames 24 --rate 2]
#                                                                                              (default: all)
#
# Needs scripts/setup.sh --no-main done (venv, engines, test photos); renders the eval sets and vo_short when
# missing (a few minutes once, cached in $MATCHA_CACHE). Exit status 0 when every part meets its tolerances.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
what="all"
case "${1:-}" in all|cli|ros|ros-vo|ros-pairs) what="$1"; shift ;; -h|--help) sed -n '2,17p' "$0"; exit 0 ;; esac
# shellcheck source=scripts/lib/env.sh
. "$REPO/scripts/lib/env.sh"
PY="$MATCHA_VENV/bin/python"
SEQ="$MATCHA_CACHE/vo/vo_short"
info() { printf '    %s\n' "$*"; }

if [ ! -f "$SEQ/sequence.json" ]; then
  "$PY" tools/vo_sequences.py --only vo_short --out "$MATCHA_CACHE/vo"
fi

if [ "$what" = all ] || [ "$what" = cli ]; then
  "$PY" tools/eval_sets.py --out "$MATCHA_CACHE/eval"
  cargo build --release -j 2 --bin matcha
  mkdir -p out/vo
  E="$MATCHA_CACHE/eval"
  # Middlebury Motorcycle (scikit-image), rectified stereo: ground truth R = I, t along -x.
  ./target/release/matcha match "$E/motorcycle/images/im0.png" "$E/motorcycle/images/im1.png" \
      --intrinsics 994.97775,994.97775,310.818,254.50175 --intrinsics-b 994.97775,994.97775,341.90375,254.50175 \
      --out out/motorcycle_matches.png
  ./target/release/matcha eval --method xfeat+mnn --out out/eval \
      --manifest "$E/chessboard/manifest.json" --manifest "$E/motorcycle/manifest.json" \
      --manifest "$E/rendered/manifest.json" --manifest "$E/rooms/manifest.json"
  info "match picture: out/motorcycle_matches.png; accuracy tables and recall curves: out/eval/"
  # metric stereo visual odometry on the bundled rendered sequence, scored against its ground truth (evo)
  ./target/release/matcha vo "$SEQ" --out out/vo/vo_short.tum --states out/vo/vo_short.jsonl
  "$PY" tools/eval_vo.py --sequence "$SEQ" --trajectory out/vo/vo_short.tum --align se3 --plot out/vo/vo_short.png
  info "trajectory picture (top view against ground truth, error over time): out/vo/vo_short.png"
  info "baselines side by side (SIFT + PoseLib, XFeat-Python + PoseLib, COLMAP): scripts/eval.sh"
fi

if [ "$what" != cli ]; then
  # shellcheck source=scripts/lib/ros_prepare.sh
  . "$REPO/scripts/lib/ros_prepare.sh"
  NETNS="$REPO/scripts/lib/ros_netns.sh"
  if [ "$what" != ros-pairs ]; then
    mkdir -p out/vo
    "$NETNS" python3 tests/ros/vo_player.py --node target/release/matcha_node \
        --params config/matcha.yaml --engines "$engines" --sequence "$SEQ" --tum out/vo/vo_short_node.tum
    "$PY" tools/eval_vo.py --sequence "$SEQ" --trajectory out/vo/vo_short_node.tum \
        --align se3 --plot out/vo/vo_short_node.png
    info "trajectory picture (top view against ground truth, error over time): out/vo/vo_short_node.png"
  fi
  if [ "$what" != ros-vo ]; then
    "$NETNS" python3 tests/ros/pair_player.py --node target/release/matcha_node \
        --params config/matcha.yaml --engines "$engines" "$@"
  fi
fi
