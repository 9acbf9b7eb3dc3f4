"""Benchmark of matcha_node (run inside scripts/lib/ros_netns.sh; see scripts/bench.sh node).

Starts matcha_node with the given parameter file (default config: odometry, XFeat + MNN on CPU), publishes a
640x480 rgb8 sequence (the rendered real-photo room of tests/ros/scene.py, played back and forth so the motion
is continuous) with its CameraInfo at a fixed rate (30 Hz), and measures for --duration seconds:
  latency    image stamp (wall clock, set just before publishing) -> receipt of its nav_msgs/Odometry by this
             peer; median and p99 over the frames answered after the warm-up
  rate       Odometry messages received per second (sustained output rate), and the achieved input rate
  drops      from the node's /diagnostics counters (received, processed, dropped by latest-frame-wins), plus
             frames published but never received by the node (transport loss, best-effort QoS)
  RSS        VmRSS of the node sampled every --rss-period seconds: first / last / max, least-squares slope
Then prints a table side by side with the goals (no RSS growth; p99 latency below one frame period at the
achieved output rate). Exit status 0 when the run completed (goals missed are reported, not an error).

    python3 tests/ros/bench.py --node target/release/matcha_node --params config/matcha.yaml --engines DIR
"""

import argparse
import os
import sys
import threading
import time

import numpy as np
import rclpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scene  # noqa: E402
from e2e_test import NodeProc, Peer, camera_info, image_msg, stamp  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def diag_values(peer, node_name):
    with peer.lock:
        for m in reversed(peer.diag):
            for st in m.status:
                if node_name in st.name:
                    return {kv.key: kv.value for kv in st.values}
    return {}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--node", required=True)
    ap.add_argument("--params", default=os.path.join(os.path.dirname(__file__), "..", "..", "config", "matcha.yaml"))
    ap.add_argument("--engines", default=os.path.join(
        os.environ.get("MATCHA_CACHE", os.path.expanduser("~/.cache/matcha")), "engines"))
    ap.add_argument("--rate", type=float, default=30.0, help="input rate, Hz")
    ap.add_argument("--duration", type=float, default=600.0, help="measured seconds (after the warm-up)")
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds excluded from the statistics")
    ap.add_argument("--rss-period", type=float, default=10.0)
    ap.add_argument("--frames", type=int, default=40, help="distinct rendered frames (played back and forth)")
    ap.add_argument("--log", default="/tmp/matcha-bench/node.log")
    a = ap.parse_args()

    poses = scene.trajectory(a.frames)
    frames = scene.cached_render(poses, "bench")
    order = list(range(len(frames))) + list(range(len(frames) - 2, 0, -1))
    ns = "/bench"
    msgs = [image_msg(frames[i], 0) for i in order]
    rclpy.init()
    os.makedirs(os.path.dirname(a.log), exist_ok=True)
    node = NodeProc(a.node, ns, ["--params-file", a.params, "-p", f"runtime.engines_dir:={a.engines}"], a.log)
    peer = Peer(ns)
    recv = {}  # stamp ns -> receipt ns (odometry)

    def on_pose(m):
        recv[m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec] = time.time_ns()

    # a second subscription just for timing (Peer's own list would keep every message)
    from nav_msgs.msg import Odometry
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
    peer.node.create_subscription(Odometry, f"{ns}/odometry", on_pose, qos)
    img_t, info_t = f"{ns}/image", f"{ns}/camera_info"
    pi, pc = peer.pub(Image, img_t), peer.pub(CameraInfo, info_t)
    published = []  # stamp ns of every frame published
    rss = []  # (t s since start, KiB)
    stop = threading.Event()
    try:
        if not peer.wait_matched([img_t, info_t], timeout=30, node=node):
            print("FAIL: node did not subscribe\n" + node.log_tail())
            return 1
        info = camera_info(0)
        period = 1.0 / a.rate
        total = a.warmup + a.duration
        print(f"publishing {len(order)}-frame loop, 640x480 rgb8 at {a.rate:g} Hz for {total:.0f} s "
              f"({a.warmup:.0f} s warm-up); RSS every {a.rss_period:g} s", flush=True)

        def sample_rss(t0):
            k = 0
            while not stop.is_set():
                t = time.monotonic() - t0
                v = rss_kib(node.p.pid)
                if v is not None:
                    rss.append((t, v))
                    d = diag_values(peer, ns + "/matcha_node")
                    print(f"  t={t:5.0f} s  RSS {v / 1024:7.1f} MiB  received {d.get('received')} processed "
                          f"{d.get('processed')} dropped {d.get('dropped')} rate {d.get('rate_hz')} Hz  node latency "
                          f"p50/p99 {d.get('latency_median_ms')}/{d.get('latency_p99_ms')} ms", flush=True)
                with peer.lock:  # the peer's recorders are not needed here: keep its memory flat
                    for lst in (peer.corr, peer.poses, peer.odom):
                        lst.clear()
                    del peer.diag[:-5]
                k += 1
                stop.wait(max(0.0, t0 + k * a.rss_period - time.monotonic()))

        t0 = time.monotonic()
        sampler = threading.Thread(target=sample_rss, args=(t0,), daemon=True)
        sampler.start()
        i = 0
        while True:
            now = time.monotonic()
            if now - t0 >= total:
                break
            due = t0 + i * period
            if due > now:
                time.sleep(due - now)
            elif now - due > period:
                i = int((now - t0) / period)  # fell behind: skip slots instead of bursting
                continue
            s = time.time_ns()
            info.header.stamp = stamp(s)
            m = msgs[i % len(msgs)]
            m.header.stamp = stamp(s)
            pc.publish(info)
            pi.publish(m)
            published.append(s)
            i += 1
        time.sleep(2.0)
        stop.set()
        sampler.join()
        d = diag_values(peer, ns + "/matcha_node")
    finally:
        stop.set()
        rc = node.stop()
        peer.close()
        rclpy.shutdown()

    t_wall0 = published[0] + int(a.warmup * 1e9)
    t_wall1 = published[-1]
    meas = [s for s in published if s >= t_wall0]
    lat = np.array([(recv[s] - s) / 1e6 for s in meas if s in recv])
    span = (t_wall1 - t_wall0) / 1e9
    in_rate = len(meas) / span if span > 0 else 0.0
    out_rate = len(lat) / span if span > 0 else 0.0
    p50, p99 = (np.percentile(lat, 50), np.percentile(lat, 99)) if len(lat) else (float("nan"),) * 2
    frame_ms = 1000.0 / out_rate if out_rate > 0 else float("inf")
    r = np.array(rss, float)
    # start-up (model loading, first allocations) is excluded: RSS after the first minute (or half the run)
    settle = min(60.0, (a.warmup + a.duration) / 2)
    steady = r[r[:, 0] >= settle] if len(r) else r
    slope = np.polyfit(steady[:, 0] / 60.0, steady[:, 1] / 1024.0, 1)[0] if len(steady) >= 3 else float("nan")
    # "no growth": after that, RSS never exceeds what it had reached by then by more than 2 MiB
    early = r[r[:, 0] <= settle, 1].max() / 1024 if len(r) and (r[:, 0] <= settle).any() else float("nan")
    late_max = steady[:, 1].max() / 1024 if len(steady) else float("nan")
    # the same question without depending on when the start-up ends (the decimation factor settles within the
    # first half minute, and each factor has its own working set): the steady window's last third against its
    # first third
    thirds = None
    if len(steady) >= 6:
        t0s, t1s = steady[0, 0], steady[-1, 0]
        first = steady[steady[:, 0] <= t0s + (t1s - t0s) / 3, 1]
        last = steady[steady[:, 0] >= t1s - (t1s - t0s) / 3, 1]
        thirds = (first.max() / 1024, last.max() / 1024)
    received = int(d.get("received", 0) or 0)
    processed = int(d.get("processed", 0) or 0)
    dropped = int(d.get("dropped", 0) or 0)
    lost = len(published) - received
    print()
    print(f"matcha_node benchmark: {len(published)} frames published in {(published[-1] - published[0]) / 1e9:.0f} s, "
          f"measured window {span:.0f} s after {a.warmup:.0f} s warm-up; node rc={rc}")
    print(f"| {'metric':<44} | {'measured':>22} | {'goal':<34} | met |")
    print(f"|{'-' * 46}|{'-' * 24}|{'-' * 36}|-----|")

    def row(name, value, goal="", met=""):
        print(f"| {name:<44} | {value:>22} | {goal:<34} | {met:<3} |")

    row("input rate (published, Hz)", f"{in_rate:.2f}", f"{a.rate:g} Hz")
    row("output rate (odometry received, Hz)", f"{out_rate:.2f}")
    row("latency image stamp -> odometry, median", f"{p50:.1f} ms")
    row("latency p99", f"{p99:.1f} ms", f"< one output period ({frame_ms:.1f} ms)",
        "yes" if p99 < frame_ms else "NO")
    row("latency max", f"{lat.max():.1f} ms" if len(lat) else "-")
    row("node: received / processed / dropped", f"{received} / {processed} / {dropped}",
        "drops = latest frame wins")
    row("published but not received (transport)", f"{lost}", "0 (best effort QoS)", "yes" if lost == 0 else "NO")
    if len(r):
        row("RSS first / last / max (MiB)", f"{r[0, 1] / 1024:.1f} / {r[-1, 1] / 1024:.1f} / {r[:, 1].max() / 1024:.1f}")
        row(f"RSS slope (least squares, t >= {settle:.0f} s)", f"{slope:+.3f} MiB/min", "~0 (no growth)")
        row(f"RSS max after {settle:.0f} s vs max before", f"{late_max:.1f} vs {early:.1f} MiB",
            "<= +2 MiB (no growth)", "yes" if late_max <= early + 2.0 else "NO")
        if thirds:
            row("RSS max, last vs first third after that", f"{thirds[1]:.1f} vs {thirds[0]:.1f} MiB",
                "<= +2 MiB (no growth)", "yes" if thirds[1] <= thirds[0] + 2.0 else "NO")
    return 0 if rc == 0 and len(lat) else 1


if __name__ == "__main__":
    sys.exit(main())
