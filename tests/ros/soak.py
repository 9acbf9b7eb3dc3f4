"""Soak of matcha_node in stereo_odometry mode (run inside scripts/lib/ros_netns.sh; see scripts/bench.sh soak).

Plays a rendered stereo sequence (default vo_loop: 627 pairs, 640x480) back and forth, so that the motion is
continuous, at --rate Hz (30) for --duration seconds (3600), with increasing stamps, and reports per --window
seconds (300): pairs sent and answered, the node's latency p50 / p99 (OdometryStatus.latency_ms: receipt ->
publication), the node's RSS (VmRSS, mean of 10 s samples in the window), the bytes its Rust heap holds
(/diagnostics heap_live_mib: mean and floor of the same samples; a leak raises them, an allocator keeping freed
pages does not), frames dropped and inputs rejected /
node failures (from /diagnostics, the window's increase), the tracking states. At the end: RSS of the last third
against the first third (goal: within 2%), p99 per window (goal: constant), errors (goal: zero). Writes the rows
as JSON with --json.

    python3 tests/ros/soak.py --node target/release/matcha_node --params config/matcha.yaml --engines DIR \\
        [--sequence $MATCHA_CACHE/vo/vo_loop] [--duration 3600] [--window 300] [--rate 30] [--json out.json]
"""

import argparse
import json
import os
import sys
import time

import rclpy

from bench import diag_values, rss_kib
from vo_player import NS, Player, VoPeer, latch_mounting, load_sequence, start_node, wait_ready


def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")


def counters(peer):
    d = diag_values(peer, "matcha_node")
    get = lambda k: int(d.get(k, 0) or 0)  # noqa: E731
    return {"dropped": get("dropped"), "rejected": get("inputs_rejected"), "failures": get("node_failures"),
            "processed": get("processed")}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--node", required=True)
    ap.add_argument("--params", default=os.path.join(os.path.dirname(__file__), "..", "..", "config", "matcha.yaml"))
    cache = os.environ.get("MATCHA_CACHE", os.path.expanduser("~/.cache/matcha"))
    ap.add_argument("--engines", default=os.path.join(cache, "engines"))
    ap.add_argument("--sequence", default=os.path.join(cache, "vo", "vo_loop"))
    ap.add_argument("--duration", type=float, default=3600.0)
    ap.add_argument("--window", type=float, default=300.0)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--json")
    ap.add_argument("--logs", default="/tmp/matcha-ros-test")
    a = ap.parse_args()
    os.makedirs(a.logs, exist_ok=True)
    seq, frames = load_sequence(a.sequence, 100000)
    order = list(range(len(frames))) + list(range(len(frames) - 2, 0, -1))  # back and forth
    rclpy.init()
    peer = VoPeer(NS)
    latch_mounting(peer)
    node = start_node(a, a.logs)
    rows = []
    try:
        if not wait_ready(peer, node):
            print("soak: the node did not come up\n" + node.log_tail(), file=sys.stderr)
            sys.exit(1)
        player = Player(peer, seq)
        t_start = time.time()
        stamp0 = 1_800_000_000.0
        k = 0
        print(f"soak: {seq['name']} back and forth at {a.rate:.0f} Hz for {a.duration:.0f} s, windows of {a.window:.0f} s",
              flush=True)
        print(f"{'window':>8} {'sent':>6} {'answered':>8} {'p50 ms':>7} {'p99 ms':>7} {'RSS MiB':>8} {'heap MiB':>8} {'floor':>6} {'dropped':>7} "
              f"{'rejected':>8} {'failures':>8}  states", flush=True)
        for w in range(int(a.duration // a.window)):
            w_start = t_start + w * a.window
            o0, s0 = peer.count(peer.odom), peer.count(peer.status)
            c0 = counters(peer)
            rss, heap, next_rss, sent = [], [], w_start, 0
            while time.time() < w_start + a.window:
                due = t_start + k / a.rate
                delay = due - time.time()
                if delay > 0:
                    time.sleep(delay)
                i = order[k % len(order)]
                _, left, right, _ = frames[i]
                player.play(stamp0 + k / a.rate, left, right)
                k += 1
                sent += 1
                if time.time() >= next_rss:
                    r = rss_kib(node.p.pid)
                    if r is not None:
                        rss.append(r / 1024.0)
                    live = diag_values(peer, "matcha_node").get("heap_live_mib")
                    if live is not None:
                        heap.append(float(live))
                    next_rss += 10.0
                # keep the peer's lists bounded over an hour
                with peer.lock:
                    for lst in (peer.odom, peer.status, peer.tf, peer.camera_odom, peer.diag):
                        if len(lst) > 20000:
                            del lst[:10000]
                            if lst is peer.odom:
                                o0 = max(0, o0 - 10000)
                            if lst is peer.status:
                                s0 = max(0, s0 - 10000)
            time.sleep(0.3)
            with peer.lock:
                status = list(peer.status)[s0:]
                answered = len(peer.odom) - o0
            c1 = counters(peer)
            states = {}
            for s in status:
                states[s.state] = states.get(s.state, 0) + 1
            row = {"window": w, "end_s": round(time.time() - t_start), "sent": sent, "answered": answered,
                   "latency_p50_ms": pct([s.latency_ms for s in status], 0.5),
                   "latency_p99_ms": pct([s.latency_ms for s in status], 0.99),
                   "rss_mib": sum(rss) / len(rss) if rss else float("nan"),
                   "heap_live_mib": sum(heap) / len(heap) if heap else float("nan"),
                   "heap_floor_mib": min(heap) if heap else float("nan"),
                   "dropped": c1["dropped"] - c0["dropped"], "rejected": c1["rejected"] - c0["rejected"],
                   "failures": c1["failures"] - c0["failures"], "states": states}
            rows.append(row)
            print(f"{row['end_s']:>7}s {sent:>6} {answered:>8} {row['latency_p50_ms']:>7.1f} {row['latency_p99_ms']:>7.1f} "
                  f"{row['rss_mib']:>8.1f} {row['heap_live_mib']:>8.1f} {row['heap_floor_mib']:>6.1f} {row['dropped']:>7} {row['rejected']:>8} {row['failures']:>8}  {states}",
                  flush=True)
    finally:
        node.stop()
        peer.close()
        rclpy.shutdown()
    if rows:
        third = max(1, len(rows) // 3)
        first = sum(r["rss_mib"] for r in rows[:third]) / third
        middle_rows = rows[third:len(rows) - third] or rows
        middle = sum(r["rss_mib"] for r in middle_rows) / len(middle_rows)
        last = sum(r["rss_mib"] for r in rows[-third:]) / third
        heap_first = sum(r["heap_live_mib"] for r in rows[:third]) / third
        heap_last = sum(r["heap_live_mib"] for r in rows[-third:]) / third
        p99 = [r["latency_p99_ms"] for r in rows]
        errors = sum(r["rejected"] + r["failures"] for r in rows)
        print(f"summary: RSS last third vs first third {100 * (last - first) / first:+.2f}% (goal within 2%), "
              f"vs the middle third {100 * (last - middle) / middle:+.2f}%; heap live "
              f"{heap_first:.1f} -> {heap_last:.1f} MiB ({100 * (heap_last - heap_first) / heap_first:+.2f}%); "
              f"p99 per window {min(p99):.1f}..{max(p99):.1f} ms; answered {sum(r['answered'] for r in rows)} of "
              f"{sum(r['sent'] for r in rows)} sent; dropped {sum(r['dropped'] for r in rows)} images; "
              f"errors {errors} (goal 0)", flush=True)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
