# shellcheck shell=bash
# Source this file (`. scripts/lib/ros_env.sh`) to use the ROS 2 Kilted wheels installed by `scripts/lib/ros_setup.sh`
# (the PyPI-wheel path; with a normal ROS 2 install, source /opt/ros/<distro>/setup.bash instead).
#
# It sets what rclpy, colcon, r2r's build and the `matcha_node` binary need:
#   AMENT_PREFIX_PATH / CMAKE_PREFIX_PATH  the venv prefix (an ament prefix) and the matcha_msgs install
#   LD_LIBRARY_PATH                        venv/lib, every site-packages/ros_*.libs, libpython's dir, matcha_msgs
#   PYTHONPATH                             matcha_msgs' Python bindings (for rclpy peers)
#   ROS_DISTRO=jazzy                       r2r 0.9 rejects "kilted"; Jazzy's code paths match Kilted's headers
#   IDL_PACKAGE_FILTER                     limits r2r's generated bindings to the messages the node uses
#   LIBRARY_PATH                           the librmw_implementation.so symlink dir (linker search path)
#   MATCHA_ROS_LINK_DIR, MATCHA_ROS_LIBPYTHON, MATCHA_ROS_LIBPYTHON_DIR   read by build.rs (feature `ros`):
#       the librmw_implementation.so symlink dir and the libpython that the wheels' librcl needs.
# It does not install anything; run scripts/lib/ros_setup.sh first (it prints an error if that was not done).

MATCHA_CACHE="${MATCHA_CACHE:-$HOME/.cache/matcha}"
MATCHA_ROS_VENV="${MATCHA_ROS_VENV:-$MATCHA_CACHE/ros-venv}"
if [ ! -f "$MATCHA_ROS_VENV/.matcha-stamp" ]; then
    echo "ros_env.sh: no ROS 2 venv at $MATCHA_ROS_VENV: run scripts/lib/ros_setup.sh first" >&2
    return 1 2>/dev/null || exit 1
fi
export MATCHA_CACHE MATCHA_ROS_VENV
# shellcheck disable=SC1091
. "$MATCHA_ROS_VENV/.matcha-env"   # written by ros_setup.sh: MATCHA_ROS_PYVER, MATCHA_ROS_LIBPYTHON_DIR, MATCHA_ROS_MSGS

_matcha_prepend() { # var value
    local cur="${!1:-}"
    case ":$cur:" in *":$2:"*) ;; *) export "$1=$2${cur:+:$cur}" ;; esac
}
_matcha_site="$MATCHA_ROS_VENV/lib/python$MATCHA_ROS_PYVER/site-packages"
for _d in "$_matcha_site"/ros_*.libs; do [ -d "$_d" ] && _matcha_prepend LD_LIBRARY_PATH "$_d"; done
_matcha_prepend LD_LIBRARY_PATH "$MATCHA_ROS_LIBPYTHON_DIR"
_matcha_prepend LD_LIBRARY_PATH "$MATCHA_ROS_VENV/lib"
_matcha_prepend AMENT_PREFIX_PATH "$MATCHA_ROS_VENV"
_matcha_prepend CMAKE_PREFIX_PATH "$MATCHA_ROS_VENV"
if [ -n "${MATCHA_ROS_MSGS:-}" ] && [ -d "$MATCHA_ROS_MSGS" ]; then
    _matcha_prepend AMENT_PREFIX_PATH "$MATCHA_ROS_MSGS"
    _matcha_prepend CMAKE_PREFIX_PATH "$MATCHA_ROS_MSGS"
    _matcha_prepend LD_LIBRARY_PATH "$MATCHA_ROS_MSGS/lib"
    _matcha_prepend PYTHONPATH "$MATCHA_ROS_MSGS/lib/python$MATCHA_ROS_PYVER/site-packages"
fi
export ROS_DISTRO=jazzy
export ROS_VERSION=2
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
export IDL_PACKAGE_FILTER="std_msgs;geometry_msgs;sensor_msgs;nav_msgs;diagnostic_msgs;std_srvs;tf2_msgs;rosgraph_msgs;matcha_msgs"
export MATCHA_ROS_LINK_DIR="$MATCHA_ROS_VENV/matcha-link"
# r2r's own build script links -lrmw_implementation too, before our build.rs can add a search path. The C
# linker driver reads LIBRARY_PATH; unlike RUSTFLAGS it does not change cargo's fingerprints (no rebuilds of
# the shared target dir when switching between ROS and non-ROS builds).
_matcha_prepend LIBRARY_PATH "$MATCHA_ROS_LIBPYTHON_DIR"
_matcha_prepend LIBRARY_PATH "$MATCHA_ROS_LINK_DIR"
export MATCHA_ROS_LIBPYTHON="python$MATCHA_ROS_PYVER"
export MATCHA_ROS_LIBPYTHON_DIR
export PATH="$MATCHA_ROS_VENV/bin:$PATH"
export HOME="${HOME:-/tmp}"
unset _d _matcha_site
unset -f _matcha_prepend
