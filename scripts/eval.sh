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
# Needs: the venv from scripts/setup.sh and Debian's opencv-doc (apt-get install opencv-doc).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
# shellcheck source=scripts/env.sh
. "$REPO/scripts/env.sh"

SETS="chessboard,motorcycle,rendered,rooms"
METHODS="sift,xfeat,colmap"
FORCE=0
RUN_MATCHA=1
while [ $# -gt 0 ]; do
  case "$1" in
    --sets) SETS="$2"; shift ;;
    --methods) METHODS="$2"; shift ;;
    --force) FORCE=1 ;;
    --no-matcha) RUN_MATCHA=0 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
  shift
done

PY="$MATCHA_VENV/bin/python"
if [ ! -x "$PY" ]; then
  echo "no Python venv at $MATCHA_VENV: run scripts/setup.sh first" >&2
  exit 1
fi
EVAL="$MATCHA_CACHE/eval"
RESULTS="$EVAL/results"
mkdir -p "$RESULTS"

force_flag=()
[ "$FORCE" = 1 ] && force_flag=(--force)
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
