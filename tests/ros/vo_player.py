"""Plays a rendered stereo sequence (tools/vo_sequences.py) to matcha_node in stereo_odometry mode (or, with
--mode odometry, its left images to the monocular odometry mode) at its camera rate (or --speed times it) and
writes the left camera's trajectory in TUM format (run inside scripts/lib/ros_netns.sh;
see scripts/demo.sh ros and tests/ros/stereo_odometry_test.py, which imports the pieces).

The player publishes left and right sensor_msgs/Image with identical stamps and their CameraInfos (a rectified
rig: the baseline in the right P), and latches the camera's mounting on /tf_static (base_link -> the left optical
frame; tf2_msgs/TFMessage). The node publishes nav_msgs/Odometry of base_link in odom; the camera pose written to
the TUM file is the node's odometry/camera (the left optical frame in odom), so the trajectory is comparable
with the ground truth (tools/eval_vo.py aligns it); stereo_odometry_test.py checks that it equals
odom->base_link . base_link->camera. It prints how many frames were answered, the tracking states, and the node's
receipt -> publication latency p50/p99 from matcha_msgs/OdometryStatus.

    python3 tests/ros/vo_player.py --node target/release/matcha_node --params config/matcha.yaml \
        --engines DIR --sequence $MATCHA_CACHE/vo/vo_short --tum out/vo/vo_short_node.tum [--speed 2]
"""

import argparse
import json
import math
import os
import sys
import threading
import time

import numpy as np
import rclpy
from geometry_msgs.msg import TransformStamped
from matcha_msgs.msg import OdometryStatus, PointTracks
from matcha_msgs.srv import SetPose, Track
from nav_msgs.msg import Odometry
from PIL import Image as PILImage
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage

from e2e_test import NodeProc, Peer, image_msg, stamp  # noqa: E402

NS = "/svo"
LEFT_FRAME = "svo_left_optical"
RIGHT_FRAME = "svo_right_optical"
# the camera 0.25 m ahead of and 0.4 m above the base, looking forward (optical frame: z forward, x right)
MOUNT_XYZ = (0.25, 0.0, 0.4)
MOUNT_Q = (-0.5, 0.5, -0.5, 0.5)  # (x, y, z, w) of rpy (-pi/2, 0, -pi/2)


def quat_to_rot(x, y, z, w):
    n = math.sqrt(x * x + y * y + z * z + w * w)
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def iso(R, t):
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


def pose_T(p):
    o, q = p.position, p.orientation
    return iso(quat_to_rot(q.x, q.y, q.z, q.w), [o.x, o.y, o.z])


def rot_deg(R):
    return math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(R) - 1) / 2))))


def align_se3(est, gt):
    """Rotation and translation minimising |R est + t - gt| (Umeyama without scale)."""
    me, mg = est.mean(0), gt.mean(0)
    U, _, Vt = np.linalg.svd((gt - mg).T @ (est - me))
    S = np.diag([1, 1, np.sign(np.linalg.det(U @ Vt))])
    R = U @ S @ Vt
    return R, mg - R @ me


class VoPeer(Peer):
    """The e2e peer plus the stereo odometry's outputs and services."""

    def __init__(self, ns):
        super().__init__(ns)
        rel = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        self.status, self.tf, self.camera_odom = [], [], []
        self.node.create_subscription(OdometryStatus, f"{ns}/odometry/status", self._rec(self.status), rel)
        self.node.create_subscription(Odometry, f"{ns}/odometry/camera", self._rec(self.camera_odom), rel)
        self.node.create_subscription(TFMessage, "/tf", self._rec(self.tf), rel)
        latched = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.tf_static = self.node.create_publisher(TFMessage, "/tf_static", latched)
        for typ, topic in ((Image, "image"), (Image, "right/image"), (CameraInfo, "camera_info"),
                           (CameraInfo, "right/camera_info")):
            self.pub(typ, f"{ns}/{topic}")
        self.reset = self.node.create_client(Trigger, f"{ns}/odometry/reset")
        self.set_pose = self.node.create_client(SetPose, f"{ns}/odometry/set_pose")

    def count(self, lst):
        with self.lock:
            return len(lst)

    def wait_count(self, lst, n, timeout):
        deadline = time.time() + timeout
        with self.lock:
            while len(lst) < n and time.time() < deadline:
                self.lock.wait(0.1)
            return len(lst)


def load_sequence(root, max_frames):
    with open(os.path.join(root, "sequence.json")) as f:
        seq = json.load(f)
    gt = {}
    with open(os.path.join(root, "groundtruth.txt")) as f:
        for line in f:
            v = [float(x) for x in line.split()]
            if len(v) == 8:
                gt[round(v[0], 6)] = iso(quat_to_rot(*v[4:8]), v[1:4])
    frames = []
    for fr in seq["frames"][:max_frames]:
        left = np.asarray(PILImage.open(os.path.join(root, fr["left"])).convert("RGB"))
        right = np.asarray(PILImage.open(os.path.join(root, fr["right"])).convert("RGB"))
        frames.append((fr["stamp"], left, right, gt.get(round(fr["stamp"], 6))))
    return seq, frames


def infos(seq, t_ns, baseline_scale=1.0):
    out = []
    tx = seq["right_from_left"]["t"][0] * baseline_scale  # metres, -baseline for a rectified rig
    for side, frame, txp in (("left", LEFT_FRAME, 0.0), ("right", RIGHT_FRAME, tx)):
        c = seq[side]
        m = CameraInfo()
        m.header.stamp = stamp(t_ns)
        m.header.frame_id = frame
        m.width, m.height = seq["width"], seq["height"]
        m.distortion_model = "plumb_bob"
        m.d = [0.0] * 5
        m.k = [c["fx"], 0.0, c["cx"], 0.0, c["fy"], c["cy"], 0.0, 0.0, 1.0]
        m.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        m.p = [c["fx"], 0.0, c["cx"], c["fx"] * txp, 0.0, c["fy"], c["cy"], 0.0, 0.0, 0.0, 1.0, 0.0]
        out.append(m)
    return out


class Player:
    def __init__(self, peer, seq, monocular=False):
        self.peer, self.seq, self.monocular = peer, seq, monocular
        self.pl = peer.pub(Image, f"{NS}/image")
        self.pr = peer.pub(Image, f"{NS}/right/image")
        self.il = peer.pub(CameraInfo, f"{NS}/camera_info")
        self.ir = peer.pub(CameraInfo, f"{NS}/right/camera_info")
        self.sent = 0
        self.baseline_scale = 1.0  # a calibration change mid-stream (tests)

    def play(self, t_s, left, right):
        t_ns = int(round(t_s * 1e9))
        li, ri = infos(self.seq, t_ns, self.baseline_scale)
        self.il.publish(li)
        self.pl.publish(image_msg(left, t_ns, LEFT_FRAME))
        if not self.monocular:
            self.ir.publish(ri)
            self.pr.publish(image_msg(right, t_ns, RIGHT_FRAME))
        self.sent += 1

    def play_at_rate(self, items, rate):
        """Plays (stamp, left, right) items at `rate` Hz; returns the seconds taken."""
        t0 = time.time()
        for k, (t_s, left, right) in enumerate(items):
            delay = t0 + k / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            self.play(t_s, left, right)
        return time.time() - t0


def latch_mounting(peer):
    t = TransformStamped()
    t.header.frame_id = "base_link"
    t.child_frame_id = LEFT_FRAME
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = MOUNT_XYZ
    r = t.transform.rotation
    r.x, r.y, r.z, r.w = MOUNT_Q
    peer.tf_static.publish(TFMessage(transforms=[t]))


MOUNT = iso(quat_to_rot(*MOUNT_Q), MOUNT_XYZ)


def camera_poses(odom):
    """(stamp s, 4x4 world_from_camera) of each base Odometry: odom->base . base->camera."""
    return [(m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec, pose_T(m.pose.pose) @ MOUNT) for m in odom]


def poses_of(odom):
    """(stamp s, 4x4 pose) of each Odometry as published."""
    return [(m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec, pose_T(m.pose.pose)) for m in odom]


def rot_to_quat(R):
    w = math.sqrt(max(0.0, 1 + R[0, 0] + R[1, 1] + R[2, 2])) / 2
    x = math.copysign(math.sqrt(max(0.0, 1 + R[0, 0] - R[1, 1] - R[2, 2])) / 2, R[2, 1] - R[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1 - R[0, 0] + R[1, 1] - R[2, 2])) / 2, R[0, 2] - R[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1 - R[0, 0] - R[1, 1] + R[2, 2])) / 2, R[1, 0] - R[0, 1])
    return x, y, z, w


def write_tum(path, poses):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        for t, T in poses:
            x, y, z, w = rot_to_quat(T[:3, :3])
            f.write(f"{t:.9f} {T[0, 3]:.9f} {T[1, 3]:.9f} {T[2, 3]:.9f} {x:.9f} {y:.9f} {z:.9f} {w:.9f}\n")


def start_node(a, logs, mode="stereo_odometry", extra=()):
    return NodeProc(a.node, NS, ["--params-file", a.params, "-p", f"runtime.engines_dir:={a.engines}",
                                 "-p", f"node.mode:={mode}", *extra], os.path.join(logs, f"{mode}.log"))


def follow_grid(peer, n, width, height, timeout=60.0):
    """On a thread: once the node has answered a frame, asks it to follow an n-point grid (the `track` service,
    zero stamp = its newest image) and records the PointTracks. Returns (the list they arrive in, the thread)."""
    tracks = []
    rel = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
    peer.node.create_subscription(PointTracks, f"{NS}/point_tracks", peer._rec(tracks), rel)
    client = peer.node.create_client(Track, f"{NS}/track")
    side = int(math.ceil(math.sqrt(n)))
    pts = [(width * (i % side + 0.5) / side, height * (i // side + 0.5) / side) for i in range(n)]

    def ask():
        if not client.wait_for_service(timeout_sec=timeout) or peer.wait_count(peer.odom, 1, timeout) < 1:
            print("vo_player: no track service or no answer to start on", file=sys.stderr)
            return
        req = Track.Request()
        req.points = [float(v) for p in pts for v in p]
        r = peer.call(client, req)
        print(f"vo_player: track service: {'%d points started' % len(r.ids) if r and r.success else r and r.message}")

    t = threading.Thread(target=ask, daemon=True)
    t.start()
    return tracks, t


def wait_ready(peer, node, timeout=60.0, monocular=False):
    """Until the node subscribes and its pipeline is up (diagnostics level OK)."""
    topics = [f"{NS}/image"] if monocular else [f"{NS}/image", f"{NS}/right/image"]
    if not peer.wait_matched(topics, node=node):
        return False
    deadline = time.time() + timeout
    while time.time() < deadline and node.alive():
        _, st = peer.diag_value("mode", "matcha_node")
        if st is not None and st.level in (0, b"\x00"):
            return True
    return False


def play_sequence(peer, node, seq, frames, speed=1.0, monocular=False):
    """Plays the frames at speed x the camera rate; returns (answered Odometry, statuses, wall seconds)."""
    player = Player(peer, seq, monocular)
    rate = seq["rate_hz"] * speed
    k0, s0, c0 = peer.count(peer.odom), peer.count(peer.status), peer.count(peer.camera_odom)
    wall = player.play_at_rate([(t, l, r) for t, l, r, _ in frames], rate)
    peer.wait_count(peer.odom, k0 + len(frames), 30.0)
    time.sleep(0.5)
    with peer.lock:
        peer.last_camera_odom = list(peer.camera_odom)[c0:]
        return list(peer.odom)[k0:], list(peer.status)[s0:], wall, player


def _pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")


def figures(seq, frames, odom, status, wall, speed):
    """The run's rate and latency figures (latency: receipt of the later image -> publication, from the
    node's OdometryStatus; 'settled': after the first second, when the first keyframe needed both images'
    features before anything could be tracked)."""
    rate = seq["rate_hz"] * speed
    lat = [s.latency_ms for s in status]
    settled = lat[int(math.ceil(rate)):]
    states = [s.state for s in status]
    return {"frames": len(frames), "answered": len(odom), "input_rate_hz": rate, "input_fps": len(frames) / wall,
            "latency_p50_ms": _pct(lat, 0.5), "latency_p99_ms": _pct(lat, 0.99),
            "latency_p99_settled_ms": _pct(settled, 0.99), "latency_max_ms": _pct(lat, 1.0),
            "states": {s: states.count(s) for s in sorted(set(states))},
            "by_flow": sum(s.by_flow for s in status), "keyframes": status[-1].keyframes if status else 0}


def summary(seq, frames, odom, status, wall, speed):
    f = figures(seq, frames, odom, status, wall, speed)
    return (f"{seq['name']}: {f['answered']} of {f['frames']} frames answered, played at {f['input_rate_hz']:.1f} Hz "
            f"({f['input_fps']:.1f} frames/s in); latency receipt->publish p50 {f['latency_p50_ms']:.1f} ms, "
            f"p99 {f['latency_p99_ms']:.1f} ms (after the first second {f['latency_p99_settled_ms']:.1f} ms), "
            f"max {f['latency_max_ms']:.1f} ms; states {f['states']}; {f['by_flow']} frames by landmark tracking "
            f"alone, {f['keyframes']} keyframes")


def diagnostics_line(peer):
    """The node's frame counters from /diagnostics (what was dropped or rejected, and why)."""
    keys = ("received", "processed", "dropped", "dropped_behind", "dropped_queue_full", "skipped_stale",
            "skipped_decimation", "inputs_rejected", "node_failures")
    _, st = peer.diag_value("mode", "matcha_node")
    if st is None:
        return "diagnostics: none received"
    vals = {kv.key: kv.value for kv in st.values}
    errors = {k: v for k, v in vals.items() if k.startswith("errors.") and not k.endswith(".last")}
    return "diagnostics: " + ", ".join(f"{k} {vals.get(k)}" for k in keys) + (f"; {errors}" if errors else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--node", required=True)
    ap.add_argument("--params", default=os.path.join(os.path.dirname(__file__), "..", "..", "config", "matcha.yaml"))
    cache = os.environ.get("MATCHA_CACHE", os.path.expanduser("~/.cache/matcha"))
    ap.add_argument("--engines", default=os.path.join(cache, "engines"))
    ap.add_argument("--sequence", default=os.path.join(cache, "vo", "vo_short"))
    ap.add_argument("--max-frames", type=int, default=100000)
    ap.add_argument("--speed", type=float, default=1.0, help="play at this multiple of the camera rate")
    ap.add_argument("--tum", required=True, help="write the camera trajectory here (TUM)")
    ap.add_argument("--json", help="write the rate and latency figures here")
    ap.add_argument("--logs", default="/tmp/matcha-ros-test")
    ap.add_argument("--track-points", type=int, default=0,
                    help="also follow this many points (a grid, node.point_tracking) from the first answer on")
    ap.add_argument("--mode", choices=("stereo_odometry", "odometry"), default="stereo_odometry",
                    help="odometry: the left images only, to the monocular mode (one unknown scale: --align sim3)")
    a = ap.parse_args()
    mono = a.mode == "odometry"
    os.makedirs(a.logs, exist_ok=True)
    seq, frames = load_sequence(a.sequence, a.max_frames)
    rclpy.init()
    peer = VoPeer(NS)
    latch_mounting(peer)
    extra = ["-p", "node.point_tracking.enabled:=true"] if a.track_points else []
    node = start_node(a, a.logs, a.mode, extra)
    ok = False
    try:
        if not wait_ready(peer, node, monocular=mono):
            print("vo_player: the node did not come up\n" + node.log_tail(), file=sys.stderr)
        else:
            tracks = None
            if a.track_points:
                tracks, asker = follow_grid(peer, a.track_points, seq["width"], seq["height"])
            odom, status, wall, _ = play_sequence(peer, node, seq, frames, a.speed, mono)
            if tracks is not None:
                asker.join(5.0)
                with peer.lock:
                    lat = sorted(m.latency_ms for m in tracks)
                    seen = [sum(m.visible) for m in tracks]
                if lat:
                    print(f"point tracks: {len(tracks)} PointTracks for {len(frames)} frames, {a.track_points} points, "
                          f"seen per frame median {int(np.median(seen))}; latency receipt -> PointTracks p50 "
                          f"{_pct(lat, 0.5):.1f} ms, p99 {_pct(lat, 0.99):.1f} ms")
            # a monocular frame still initializing holds the reference pose without knowing the motion: not a
            # trajectory point (as `matcha vo --monocular` writes it). Its state comes from the status topic:
            # the covariance cannot tell, since after a restart every pose carries the lost variance (its
            # place in odom is unknown relative to the earlier run)
            cam = peer.last_camera_odom
            initializing = {(s.header.stamp.sec, s.header.stamp.nanosec) for s in status if s.state == "initializing"}
            posed = [m for m in cam if (m.header.stamp.sec, m.header.stamp.nanosec) not in initializing] if mono else cam
            write_tum(a.tum, poses_of(posed))
            print(summary(seq, frames, odom, status, wall, a.speed))
            diag = diagnostics_line(peer)
            print(diag)
            if a.json:
                with open(a.json, "w") as f:
                    json.dump({**figures(seq, frames, odom, status, wall, a.speed), "diagnostics": diag}, f, indent=1)
            slow = sorted(((s.latency_ms, k) for k, s in enumerate(status)), reverse=True)[:6]
            print("slowest answers (ms, frame): " + ", ".join(f"{ms:.0f} @{k}" for ms, k in slow))
            print(f"trajectory: {a.tum}")
            ok = len(odom) > 0
    finally:
        node.stop()
        peer.close()
        rclpy.shutdown()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
