#!/usr/bin/env bash
# Relative-pose accuracy evaluation on sets with real ground truth.
#
#   1. builds the eval sets (tools/eval_sets.py: chessboard, motorcycle, rendered, rooms) under
#      $MATCHA_CACHE/eval/<set>/ (idempotent: rebuilt only when tools/eval_sets.py or tools/render/ changes; rooms
#      takes a few minutes)
#   2. runs the Python baselines (tools/eval_baselines.py: SIFT+PoseLib, XFeat+PoseLib, SIFT+COLMAP) on each set into
#      $MATCHA_CACHE/eval/results/<set>-<method>.json (skipped when newer than the manifest and the script)
#   3. runs `matcha eval` on all sets with those baselines; tables and plots go to $MATCHA_CACHE/eval/report/
#
# Options: --sets a,b   (default chessboard,motorcycle,rendered,rooms)   --methods sift,xfeat,colmap
#          --force (recompute all)
#          --no-matcha  (stop after the baselines)
#          --vo  instead of the above: the visual-odometry evaluation (stereo, and monocular --monocular). Renders the six sequences
#                (tools/vo_sequences.py: vo_short, vo_loop, vo_forward_turns, vo_hard; ~40 min once, cached under
#                $MATCHA_CACHE/vo/<name>/), runs the baselines (tools/vo_baselines.py: opencv_stereo, colmap; up to
#                ~10 min each per sequence, skipped when newer than the sequence and the script) into
#                $MATCHA_CACHE/vo/results/<name>/<method>.{tum,json}, runs `matcha vo` on each (results/<name>/matcha.*),
#                then prints the table of all three (--report)
#          --vo --node  also the ROS 2 node (PyPI-wheel ROS, loopback netns) on every sequence, played by
#                tests/ros/vo_player.py at the camera rate (15 Hz) and at twice it (30 Hz): stereo_odometry
#                (results/<name>/matcha_node_<hz>hz.*, SE(3)) and the monocular odometry mode
#                (matcha_node_mono_<hz>hz.*, Sim(3)), in the same table, with frames answered and latency
#          --vo --no-baselines  skip the anchors (keep their earlier results)
# Needs: the venv from scripts/setup.sh and Debian's opencv-doc (apt-get install opencv-doc).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
# shellcheck source=scripts/lib/env.sh
. "$REPO/scripts/lib/env.sh"

SETS="chessboard,motorcycle,rendered,rooms"
METHODS="sift,xfeat,colmap"
FORCE=0
RUN_MATCHA=1
RUN_VO=0
RUN_NODE=0
RUN_BASELINES=1
while [ $# -gt 0 ]; do
  case "$1" in
    --sets) SETS="$2"; shift ;;
    --methods) METHODS="$2"; shift ;;
    --force) FORCE=1 ;;
    --no-matcha) RUN_MATCHA=0 ;;
    --vo) RUN_VO=1 ;;
    --node) RUN_NODE=1 ;;
    --no-baselines) RUN_BASELINES=0 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
  shift
done

PY="$MATCHA_VENV/bin/python"
if [ ! -x "$PY" ]; then
  echo "no Python venv at $MATCHA_VENV: run scripts/setup.sh first" >&2
  exit 1
fi
force_flag=()
[ "$FORCE" = 1 ] && force_flag=(--force)

if [ "$RUN_VO" = 1 ]; then
  VO="$MATCHA_CACHE/vo"
  "$PY" tools/vo_sequences.py --out "$VO" "${force_flag[@]}"
  for dir in "$VO"/vo_*/; do
    dir="${dir%/}"
    name="$(basename "$dir")"
    [ -f "$dir/.stamp" ] || continue
    for m in opencv_stereo colmap; do
      [ "$RUN_BASELINES" = 1 ] || continue
      out="$VO/results/$name/$m.json"
      if [ "$FORCE" = 0 ] && [ -f "$out" ] && [ "$out" -nt "$dir/.stamp" ] && [ "$out" -nt tools/vo_baselines.py ]; then
        echo "[eval] $out is up to date"
        continue
      fi
      "$PY" tools/vo_baselines.py --sequence "$dir" --method "$m"
    done
  done
  # ours: matcha vo (CPU default) on every sequence, stereo (SE(3)) and monocular (--monocular, Sim(3): one
  # unknown scale), scored the same way, in the report's result format
  cargo build --release -j 2 --bin matcha
  for dir in "$VO"/vo_*/; do
    dir="${dir%/}"
    name="$(basename "$dir")"
    [ -f "$dir/.stamp" ] || continue
    res="$VO/results/$name"
    mkdir -p "$res"
    for variant in "matcha se3" "matcha_mono sim3 --monocular"; do
      read -r method align flag <<< "$variant"
      start=$(date +%s.%N)
      ./target/release/matcha vo "$dir" ${flag:+"$flag"} --out "$res/$method.tum" --states "$res/${method}_states.jsonl"
      end=$(date +%s.%N)
      "$PY" tools/eval_vo.py --sequence "$dir" --trajectory "$res/$method.tum" --align "$align" --json > "$res/${method}_metrics.json"
      "$PY" - "$res" "$name" "$method" "$align" "$start" "$end" <<'PYEOF'
import json, sys
from pathlib import Path
res, name, method, align, t0, t1 = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]), float(sys.argv[6])
m = json.loads((res / f"{method}_metrics.json").read_text())
(res / f"{method}.json").write_text(json.dumps({
    "sequence": name, "method": method, "align": align, "runtime_s": t1 - t0,
    "trajectory": str(res / f"{method}.tum"), "frames_used": m["gt_frames"], "frames_posed": m["estimated_poses"],
    "metrics": m}, indent=1))
PYEOF
    done
  done
  if [ "$RUN_NODE" = 1 ]; then
    (
      # shellcheck source=scripts/lib/ros_prepare.sh
      . "$REPO/scripts/lib/ros_prepare.sh"
      for dir in "$VO"/vo_*/; do
        dir="${dir%/}"
        name="$(basename "$dir")"
        [ -f "$dir/.stamp" ] || continue
        res="$VO/results/$name"
        mkdir -p "$res"
        for run in "stereo_odometry se3 1" "stereo_odometry se3 2" "odometry sim3 1" "odometry sim3 2"; do
          read -r mode align speed <<<"$run"
          hz=$((15 * speed))
          if [ "$mode" = odometry ]; then m="matcha_node_mono_${hz}hz"; else m="matcha_node_${hz}hz"; fi
          start=$(date +%s.%N)
          "$REPO/scripts/lib/ros_netns.sh" python3 tests/ros/vo_player.py --node target/release/matcha_node \
              --params config/matcha.yaml --engines "$engines" --sequence "$dir" --speed "$speed" \
              --mode "$mode" --tum "$res/$m.tum" --json "$res/${m}_rate.json"
          end=$(date +%s.%N)
          "$PY" tools/eval_vo.py --sequence "$dir" --trajectory "$res/$m.tum" --align "$align" --json > "$res/${m}_metrics.json"
          "$PY" - "$res" "$name" "$m" "$start" "$end" "$align" <<'PYEOF'
import json, sys
from pathlib import Path
res, name, m, t0, t1, align = Path(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
metrics = json.loads((res / f"{m}_metrics.json").read_text())
rate = json.loads((res / f"{m}_rate.json").read_text())
(res / f"{m}.json").write_text(json.dumps({
    "sequence": name, "method": m, "align": align, "runtime_s": t1 - t0, "trajectory": str(res / f"{m}.tum"),
    "frames_used": metrics["gt_frames"], "frames_posed": metrics["estimated_poses"], "metrics": metrics,
    "node": rate}, indent=1))
PYEOF
        done
      done
    )
  fi
  "$PY" tools/vo_baselines.py --report --root "$VO"
  exit 0
fi

EVAL="$MATCHA_CACHE/eval"
RESULTS="$EVAL/results"
mkdir -p "$RESULTS"

"$PY" tools/eval_sets.py --sets "$SETS" --out "$EVAL" "${force_flag[@]}"

IFS=',' read -r -a set_list <<<"$SETS"
IFS=',' read -r -a method_list <<<"$METHODS"
for s in "${set_list[@]}"; do
  manifest="$EVAL/$s/manifest.json"
  for m in "${method_list[@]}"; do
    out="$RESULTS/$s-$m.json"
    if [ "$FORCE" = 0 ] && [ -f "$out" ] && [ "$out" -nt "$manifest" ] && [ "$out" -nt tools/eval_baselines.py ]; then
      echo "[eval] $out is up to date"
      continue
    fi
    "$PY" tools/eval_baselines.py --manifest "$manifest" --method "$m" --out "$out"
  done
done

if [ "$RUN_MATCHA" = 1 ]; then
  # one call for all sets: `matcha eval` assigns each baseline file to the set whose pair ids it carries
  args=()
  for s in "${set_list[@]}"; do
    args+=(--manifest "$EVAL/$s/manifest.json")
    for m in "${method_list[@]}"; do args+=(--baseline "$RESULTS/$s-$m.json"); done
  done
  mkdir -p "$EVAL/report"
  cargo run --release -j 2 -- eval "${args[@]}" --out "$EVAL/report"
fi
