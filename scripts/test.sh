#!/usr/bin/env bash
# The one command that runs every test of matcha (README "Quick start"; .ci/run calls exactly this).
#
#   1. scripts/setup.sh --no-main: system packages, pinned venv, onnxruntime library, exported models,
#      Python reference outputs (all cached under $MATCHA_CACHE, redone only when their inputs change)
#   2. test fixtures: tiny random-weight MATCHA engines + PyTorch stage outputs, the evaluation sets, the vo_short
#      stereo sequence (cached)
#   3. cargo fmt --check, cargo clippy -D warnings (default features, and cuda+tensorrt: must compile here)
#   4. cargo test (unit, integration and parity tests; doc tests)
#   5. pytest tools/ (exporters, MATCHA model definitions incl. the full-size export, eval sets and baselines)
#   6. scripts/lib/ros_tests.sh: the ROS 2 node against a real rclpy peer in a loopback-only network namespace
#
#   scripts/test.sh                      every stage
#   scripts/test.sh --ros-only [--only startup,stereo,...]   the ROS 2 stage alone (options: scripts/lib/ros_tests.sh)
#
# Every stage runs even if an earlier one failed; the exit code is non-zero if any failed, and the last line
# sums the test counts of all runners. Nothing is skipped silently: a missing prerequisite fails the test
# that needs it with a message naming the fix.
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
case "${1:-}" in
  --ros-only) shift; exec scripts/lib/ros_tests.sh "$@" ;;
  -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
  "") ;;
  *) echo "unknown option: $1 (scripts/test.sh --help)" >&2; exit 2 ;;
esac
LOG="$(mktemp -t matcha-test.XXXXXX)"
failed=()

stage() {
  local name="$1"
  shift
  printf '\n==> [test] %s\n' "$name"
  if ! "$@" 2>&1 | tee -a "$LOG"; then
    failed+=("$name")
    printf '==> [test] FAILED: %s\n' "$name"
  fi
}

stage "setup (cached)" scripts/setup.sh --no-main
# shellcheck source=scripts/lib/env.sh
. scripts/lib/env.sh
PY="$MATCHA_VENV/bin/python"

fixtures() {
  for mode in geometric semantic light; do
    "$PY" tools/export_matcha.py --random-init --config tiny --mode "$mode" --height 96 --width 160 --fixtures
  done
  "$PY" tools/eval_sets.py --out "$MATCHA_CACHE/eval"
  # the stereo sequence tests/integration/vo.rs runs `matcha vo` on (rendered once, cached)
  "$PY" tools/vo_sequences.py --only vo_short --out "$MATCHA_CACHE/vo"
  # its revisit queries (other viewpoint, other light), for tests/integration/map.rs (cached)
  "$PY" tools/revisit_queries.py --only vo_short --out "$MATCHA_CACHE/revisit"
  # 16 frames of a point-tracking clip with exact ground truth, for tests/integration/track.rs (cached)
  "$PY" tools/track_clips.py --only track_short --frames 16 --out "$MATCHA_CACHE/tracks-ci"
}
stage "test fixtures (cached)" fixtures
stage "cargo fmt --check" cargo fmt --all -- --check
stage "cargo clippy" cargo clippy -j 2 --all-targets -- -D warnings
stage "cargo clippy (cuda, tensorrt)" cargo clippy -j 2 --all-targets --features cuda,tensorrt -- -D warnings
lib_alone() {
  # the library without the `cli` feature: none of the binaries' dependencies, and it builds
  if cargo tree -e normal --no-default-features --prefix none | grep -E '^(clap|anyhow|env_logger|plotters) '; then
    echo "the library alone depends on a binary-only crate (above)" >&2
    return 1
  fi
  cargo clippy -j 2 --lib --no-default-features -- -D warnings
}
stage "library alone (no cli feature)" lib_alone
stage "cargo test" cargo test -j 2 --all-targets
stage "cargo test --doc" cargo test -j 2 --doc
stage "pytest tools/" "$PY" -m pytest -q -rs tools
stage "ROS 2 node" scripts/lib/ros_tests.sh

passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$LOG" | awk '{s += $4} END {print s + 0}')
cfail=$(grep -Eo '[0-9]+ failed;' "$LOG" | awk '{s += $1} END {print s + 0}')
py_passed=$(grep -Eo '^[=]* ?[0-9]+ passed' "$LOG" | grep -Eo '[0-9]+' | awk '{s += $1} END {print s + 0}')
py_failed=$(grep -Eo '[0-9]+ failed, ' "$LOG" | grep -Eo '[0-9]+' | awk '{s += $1} END {print s + 0}')
# ignored Rust tests are listed by name with their reason (GPU-only checks, developer helpers): never silent
ignored_list=$(grep -E '^test .* \.\.\. ignored' "$LOG" | sort -u || true)
ignored=$(printf '%s' "$ignored_list" | grep -c . || true)
rm -f "$LOG"
if [ "$ignored" -gt 0 ]; then
  echo
  echo "[test] $ignored ignored test(s), not run here (each says why):"
  printf '%s\n' "$ignored_list" | sed 's/^/  /'
fi
echo
if [ "${#failed[@]}" -gt 0 ]; then
  printf '[test] failed stages: %s\n' "${failed[*]}"
  total_failed=$((cfail + py_failed))
  [ "$total_failed" -gt 0 ] || total_failed=${#failed[@]}
  echo "tests: $((passed + py_passed)) passed, $total_failed failed, $ignored ignored"
  exit 1
fi
echo "tests: $((passed + py_passed)) passed, 0 failed, $ignored ignored"
