#!/usr/bin/env bash
# Runs a command in a private network namespace with only loopback (plus a multicast route for DDS
# discovery) and a private tmpfs on /dev/shm (Fast DDS shared-memory transport isolated from the host), so
# that DDS traffic of tests never leaves this process tree. Needs root (or unprivileged user namespaces).
#   scripts/lib/ros_netns.sh <command> [args...]
# Sets FASTDDS_BUILTIN_TRANSPORTS='DEFAULT?sockets_size=4194304' for every participant: with the stock
# socket buffers, ~1 MB images lose UDP fragments inside such a namespace.
set -euo pipefail
if [ "$#" -eq 0 ]; then echo "usage: $0 <command> [args...]" >&2; exit 2; fi
if [ "${MATCHA_IN_NETNS:-}" = 1 ]; then exec "$@"; fi
export MATCHA_IN_NETNS=1
export FASTDDS_BUILTIN_TRANSPORTS="${FASTDDS_BUILTIN_TRANSPORTS:-DEFAULT?sockets_size=4194304}"
userns=()
[ "$(id -u)" = 0 ] || userns=(--user --map-root-user)
exec unshare "${userns[@]}" --net --mount bash -c '
    set -e
    ip link set lo up
    ip link set lo multicast on
    ip route add 224.0.0.0/4 dev lo
    mount -t tmpfs -o size=512m tmpfs /dev/shm
    exec "$@"' _ "$@"
