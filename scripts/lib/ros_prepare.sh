# shellcheck shell=bash
# Sourced by the ROS 2 stages (scripts/lib/ros_tests.sh, scripts/demo.sh, scripts/bench.sh): the wheel venv and
# matcha_msgs (scripts/lib/ros_setup.sh, cached), the environment (env.sh, ros_env.sh), the release build of
# matcha_node (cached by cargo), and $engines, the exported models the node needs. Leaves the shell in the
# repository root.
ros_scripts="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ros_scripts/../.."
"$ros_scripts/ros_setup.sh"
# shellcheck disable=SC1091
[ -f "$ros_scripts/env.sh" ] && . "$ros_scripts/env.sh"
# shellcheck disable=SC1091
. "$ros_scripts/ros_env.sh"
cargo build --release --features ros --bin matcha_node -j 2
engines="${MATCHA_ENGINES:-$MATCHA_CACHE/engines}"
if [ ! -f "$engines/xfeat.onnx" ]; then
  echo "$(basename "$0"): no $engines/xfeat.onnx: run scripts/setup.sh first" >&2
  exit 1
fi
