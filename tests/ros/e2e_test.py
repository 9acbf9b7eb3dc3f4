"""End-to-end tests of matcha_node against a real rclpy peer (run inside scripts/lib/ros_netns.sh; see
scripts/test.sh --ros-only).

The peer renders a short sequence of a room textured with real photographs (tests/ros/scene.py) with exact
ground-truth camera poses, publishes it with its CameraInfo, and checks what the node publishes:
  odometry   Correspondences + relative pose of every frame against its keyframe vs ground truth, odometry;
             bad input (no CameraInfo yet, unsupported encoding, step/size mismatch, zero size, oversized, NaN
             CameraInfo, stamps going backwards): counted in /diagnostics, the node keeps running and processes
             the next good frame; `--ros-args -p` overrides and `-r` remaps (topic and max_image_pixels);
  stereo     two topics (compressed transport) synchronised by stamp, metric baseline from P, unpaired frames
             dropped, and the `match` service on an explicit pair;
  start-up   invalid parameter values are rejected with a message naming the parameter;
  pipeline   a pipeline that cannot be created (no models) is reported in diagnostics, the node keeps running,
             and once the engine files are restored it comes up on a retry and answers frames;
  badmap     a corrupted map (relocalization mode): refused, counted as a node failure, left untouched, node
             running;
  diskfull   mapping onto a full disk (small tmpfs): adding a view fails, is counted, the map stays whole, the node
             keeps answering;
  killmap    SIGKILL at a random moment of a mapping run: the map is whole and holds every view committed before;
             a restart extends it and SIGTERM loses none of the new views;
  keyframes  odometry with the default keyframe policy over a denser sequence: the correspondences' keyframe
             switches, and nav_msgs/Odometry (the monocular VO) matches ground truth up to one scale for the run
             (orientation, and position after that scale);
  relocalization  a map of views built from the sequence, the node restarted with it: queries near mapped
             keyframes retrieve the right keyframe, pose within tolerance of ground truth.

Usage: python3 tests/ros/e2e_test.py --node target/release/matcha_node [--params config/matcha.yaml]
"""

import argparse
import io
import os
import subprocess
import tempfile
import sys
import threading
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from matcha_msgs.msg import Correspondences
from matcha_msgs.srv import Match
from nav_msgs.msg import Odometry
from PIL import Image as PILImage
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scene  # noqa: E402

ROT_TOL_DEG = 2.0
DIR_TOL_DEG = 6.0
FRAME_TIMEOUT = 30.0
FAILURES = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILURES.append(what)
    return cond


def stamp(t_ns):
    from builtin_interfaces.msg import Time
    return Time(sec=int(t_ns // 1_000_000_000), nanosec=int(t_ns % 1_000_000_000))


def ns_of(t):
    return t.sec * 1_000_000_000 + t.nanosec


def image_msg(rgb, t_ns, frame="camera_optical", encoding="rgb8"):
    m = Image()
    m.header.stamp = stamp(t_ns)
    m.header.frame_id = frame
    m.height, m.width = rgb.shape[:2]
    m.encoding = encoding
    m.step = m.width * 3
    m.data = rgb.tobytes()
    return m


def compressed_msg(rgb, t_ns, frame):
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="PNG")
    m = CompressedImage()
    m.header.stamp = stamp(t_ns)
    m.header.frame_id = frame
    m.format = "rgb8; png compressed"
    m.data = buf.getvalue()
    return m


def camera_info(t_ns, frame="camera_optical", baseline=None):
    m = CameraInfo()
    m.header.stamp = stamp(t_ns)
    m.header.frame_id = frame
    m.width, m.height = scene.W, scene.H
    m.distortion_model = "plumb_bob"
    m.d = [0.0] * 5
    m.k = [float(v) for v in scene.K.flatten()]
    m.r = [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]
    tx = -scene.FX * baseline if baseline else 0.0
    m.p = [scene.FX, 0, scene.CX, tx, 0, scene.FY, scene.CY, 0, 0, 0, 1.0, 0]
    return m


class Peer:
    """An rclpy node spun on a background thread, recording what the matcha node publishes."""

    def __init__(self, ns):
        self.node = rclpy.create_node("matcha_test_peer_" + ns.strip("/").replace("/", "_"))
        self.ns = ns
        self.lock = threading.Condition()
        self.corr, self.poses, self.odom, self.diag = [], [], [], []
        rel = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        self.pubs = {}
        self.node.create_subscription(Correspondences, f"{ns}/correspondences", self._rec(self.corr), rel)
        self.node.create_subscription(PoseWithCovarianceStamped, f"{ns}/relative_pose", self._rec(self.poses), rel)
        self.node.create_subscription(Odometry, f"{ns}/odometry", self._rec(self.odom), rel)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._rec(self.diag), rel)
        self.exe = SingleThreadedExecutor()
        self.exe.add_node(self.node)
        self.stop = False
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self):
        while not self.stop:
            self.exe.spin_once(timeout_sec=0.05)

    def _rec(self, lst):
        def cb(m):
            with self.lock:
                lst.append(m)
                self.lock.notify_all()
        return cb

    def pub(self, typ, topic):
        if topic not in self.pubs:
            qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
            self.pubs[topic] = self.node.create_publisher(typ, topic, qos)
        return self.pubs[topic]

    def wait_matched(self, topics, timeout=20.0, node=None):
        """Waits until the node subscribes to each of our publishers (discovery, not a fixed sleep)."""
        t0 = time.time()
        while time.time() - t0 < timeout and (node is None or node.alive()):
            if all(self.pubs[t].get_subscription_count() > 0 for t in topics) and \
                    self.node.count_publishers(f"{self.ns}/correspondences") > 0:
                return True
            time.sleep(0.1)
        return False

    def call(self, client, req, timeout=20.0):
        """Calls a service; its response, or None when it is not there or does not answer in time."""
        if not client.wait_for_service(timeout_sec=timeout):
            return None
        fut = client.call_async(req)
        done = threading.Event()
        fut.add_done_callback(lambda _: done.set())
        return fut.result() if done.wait(timeout) else None

    def wait_for(self, lst, pred, timeout=FRAME_TIMEOUT):
        t0 = time.time()
        with self.lock:
            while True:
                for m in lst:
                    if pred(m):
                        return m
                left = timeout - (time.time() - t0)
                if left <= 0:
                    return None
                self.lock.wait(left)

    def diag_value(self, key, node_name, timeout=5.0):
        """Latest value of a diagnostics key of the given node (waits for a fresh message)."""
        n0 = len(self.diag)
        deadline = time.time() + timeout
        with self.lock:
            while len(self.diag) <= n0 + 1 and time.time() < deadline:
                self.lock.wait(0.2)
            for m in reversed(self.diag):
                for st in m.status:
                    if node_name in st.name:
                        vals = {kv.key: kv.value for kv in st.values}
                        return vals.get(key), st
        return None, None

    def close(self):
        self.stop = True
        self.thread.join()
        self.node.destroy_node()


class NodeProc:
    def __init__(self, binary, ns, args, log, cwd=None):
        self.log = open(log, "w")
        cmd = [binary, "--ros-args", "-r", f"__ns:={ns}"] + args
        print("start:", " ".join(cmd), f"(in {cwd})" if cwd else "", flush=True)
        self.p = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=cwd)

    def log_tail(self):
        self.log.flush()
        with open(self.log.name) as f:
            return "node log:\n" + "".join(f.readlines()[-20:])

    def alive(self):
        return self.p.poll() is None

    def stop(self):
        if self.alive():
            self.p.send_signal(2)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()
        return self.p.returncode


def pose_errors(msg_pose, gt_R, gt_p):
    q = msg_pose.orientation
    R = scene.quat_to_rot(q.x, q.y, q.z, q.w)
    t = np.array([msg_pose.position.x, msg_pose.position.y, msg_pose.position.z])
    return scene.rotation_error_deg(R, gt_R), scene.direction_error_deg(t, gt_p), t


def test_odometry(a, textures, poses, frames):
    ns = "/odo"
    node = NodeProc(a.node, ns, a.common + [
        "-r", "image:=cam/image_raw", "-r", "camera_info:=cam/camera_info",
        "-p", "node.mode:=odometry", "-p", "node.odometry_correspondences:=true", "-p", "node.max_image_pixels:=1000000",
        "-p", "node.diagnostics_period_s:=0.2", "-p", "node.keyframe.max_parallax_deg:=50.0",
        "-p", "node.keyframe.min_inliers:=30", "-p", "node.camera_info_wait_s:=0.3"],
        os.path.join(a.logs, "node_odometry.log"))
    peer = Peer(ns)
    img_t, info_t = f"{ns}/cam/image_raw", f"{ns}/cam/camera_info"
    pi, pc = peer.pub(Image, img_t), peer.pub(CameraInfo, info_t)
    try:
        if not check(peer.wait_matched([img_t, info_t], node=node), "odometry: node subscribed to the remapped topics (-r)"):
            print(node.log_tail())
            return
        t0 = 1_700_000_000_000_000_000
        dt = 100_000_000
        stamps = [t0 + i * dt for i in range(len(frames))]
        # no CameraInfo yet: frame skipped, counted
        # (the first sample right after discovery may be lost on a best-effort reader: retry a few times)
        v = None
        for k in range(10):
            pi.publish(image_msg(frames[0], t0 - dt * (20 - k)))
            v, _ = peer.diag_value("errors.no_camera_info", ns + "/matcha_node", timeout=1)
            if v is not None:
                break
        check(v is not None and int(v) >= 1,
              f"odometry: image without CameraInfo refused after camera_info_wait_s (errors.no_camera_info={v})")
        errs = []
        for i, (f, s) in enumerate(zip(frames, stamps)):
            if i == 0:
                # the first image 0.1 s before its CameraInfo (within camera_info_wait_s): it waits, not lost
                pi.publish(image_msg(f, s))
                time.sleep(0.1)
                pc.publish(camera_info(s))
            else:
                pc.publish(camera_info(s))
                pi.publish(image_msg(f, s))
            c = peer.wait_for(peer.corr, lambda m, s=s: ns_of(m.header.stamp) == s, timeout=FRAME_TIMEOUT) if i else None
            if i == 0:
                o = peer.wait_for(peer.odom, lambda m, s=s: ns_of(m.header.stamp) == s)
                check(o is not None, "odometry: first frame (sent 0.1 s before its CameraInfo) initialises odometry")
                continue
            if not check(c is not None, f"odometry: correspondences for frame {i}"):
                continue
            ref = stamps.index(ns_of(c.reference_stamp)) if ns_of(c.reference_stamp) in stamps else None
            check(ref is not None and ref < i, f"odometry: frame {i} reference is an earlier frame ({ref})")
            m = len(c.scores)
            check(len(c.points_a) == 2 * m and len(c.points_b) == 2 * m and len(c.inliers) == m,
                  f"odometry: frame {i} array lengths consistent ({m} matches)")
            if not check(c.pose_valid, f"odometry: frame {i} has a pose ({c.pose_status})"):
                continue
            gt_R, gt_p = scene.relative(poses[ref], poses[i])
            er, et, t = pose_errors(c.relative_pose.pose, gt_R, gt_p)
            errs.append((i, ref, er, et, c.num_inliers, m))
            check(er < ROT_TOL_DEG and et < DIR_TOL_DEG,
                  f"odometry: frame {i} vs {ref}: rotation error {er:.2f} deg, translation direction error "
                  f"{et:.2f} deg, {c.num_inliers}/{m} inliers, |t|={np.linalg.norm(t):.3f}")
            p = peer.wait_for(peer.poses, lambda mm, s=s: ns_of(mm.header.stamp) == s, timeout=2)
            check(p is not None and p.header.frame_id == "camera_optical",
                  f"odometry: relative_pose for frame {i} in the reference optical frame")
            # inliers are geometrically consistent: reprojected GT epipolar error small
            pa = np.array(c.points_a).reshape(-1, 2)[np.array(c.inliers)]
            pb = np.array(c.points_b).reshape(-1, 2)[np.array(c.inliers)]
            E = np.cross(np.eye(3), -gt_R.T @ gt_p) @ gt_R.T  # x_b = R^T x_a - R^T p
            Ki = np.linalg.inv(scene.K)
            xa = (Ki @ np.c_[pa, np.ones(len(pa))].T).T
            xb = (Ki @ np.c_[pb, np.ones(len(pb))].T).T
            l = (E @ xa.T).T
            d = np.abs(np.sum(xb * l, 1)) / np.linalg.norm(l[:, :2], axis=1) * scene.FX
            check(np.median(d) < 1.5, f"odometry: frame {i} inliers' median GT epipolar distance {np.median(d):.2f} px")
        o = peer.wait_for(peer.odom, lambda m: ns_of(m.header.stamp) == stamps[-1], timeout=5)
        check(o is not None and o.header.frame_id == "odom" and o.child_frame_id == "base_link",
              "odometry: nav_msgs/Odometry of the base (frame odom -> base_link)")

        # bad inputs: each is counted, and the next good frame is processed
        good = frames[-1]
        s = stamps[-1]
        cases = []
        bad = image_msg(good, 0)
        bad.encoding = "yuv422"
        cases.append(("bad_encoding", bad))
        bad = image_msg(good, 0)
        bad.step = 100
        cases.append(("size_mismatch", bad))
        bad = image_msg(good, 0)
        bad.data = bad.data[: len(bad.data) // 2]
        cases.append(("size_mismatch", bad))
        bad = Image()
        bad.encoding = "rgb8"
        cases.append(("zero_size", bad))
        huge = np.zeros((800, 1280), np.uint8)
        bad = Image(height=800, width=1280, encoding="mono8", step=1280, data=huge.tobytes())
        cases.append(("huge_image", bad))
        cases.append(("bad_camera_info", None))
        cases.append(("stamp_backwards", "back"))
        for cause, msg in cases:
            s += dt
            if msg is None:
                info = camera_info(s)
                info.k[0] = float("nan")
                pc.publish(info)
                time.sleep(0.3)
                pi.publish(image_msg(good, s))
                time.sleep(0.5)
                pc.publish(camera_info(s))
                time.sleep(0.3)
            elif msg == "back":
                # a stamp 5 s in the past: counted, keyframe reset (this frame becomes the keyframe)
                pi.publish(image_msg(frames[-2], s - 50 * dt))
                time.sleep(1.0)
            else:
                msg.header.stamp = stamp(s)
                msg.header.frame_id = "camera_optical"
                pi.publish(msg)
                time.sleep(0.5)
            v, _ = peer.diag_value(f"errors.{cause}", ns + "/matcha_node", timeout=10)
            check(v is not None and int(v) >= 1, f"bad input {cause}: counted in diagnostics ({v})")
            s += dt
            pi.publish(image_msg(frames[-2] if cause != "stamp_backwards" else good, s))
            ok = peer.wait_for(peer.corr, lambda m, t=s: ns_of(m.header.stamp) == t, timeout=FRAME_TIMEOUT)
            check(ok is not None and node.alive(), f"bad input {cause}: node alive and next good frame processed")
        v, st = peer.diag_value("processed", ns + "/matcha_node")
        check(st is not None and int(v) >= len(frames), f"diagnostics: processed={v}, level={st.level if st else None!r}")
        if errs:
            print("odometry errors (frame, ref, rot deg, dir deg, inliers, matches):")
            for e in errs:
                print("   ", e[0], e[1], f"{e[2]:.3f}", f"{e[3]:.3f}", e[4], e[5])
    finally:
        rc = node.stop()
        peer.close()
    check(rc == 0, f"odometry: node exits cleanly on SIGINT (rc={rc})")


def test_stereo_and_service(a, textures, poses):
    ns = "/st"
    baseline = 0.12
    node = NodeProc(a.node, ns, a.common + [
        "-p", "node.mode:=stereo", "-p", "node.transport:=compressed", "-p", "node.stereo.sync_tolerance_s:=0.005",
        "-p", "node.diagnostics_period_s:=0.2"], os.path.join(a.logs, "node_stereo.log"))
    peer = Peer(ns)
    topics = {"l": f"{ns}/image/compressed", "r": f"{ns}/right/image/compressed"}
    pl, pr = peer.pub(CompressedImage, topics["l"]), peer.pub(CompressedImage, topics["r"])
    cl, cr = peer.pub(CameraInfo, f"{ns}/camera_info"), peer.pub(CameraInfo, f"{ns}/right/camera_info")
    try:
        if not check(peer.wait_matched([topics["l"], topics["r"], f"{ns}/camera_info", f"{ns}/right/camera_info"],
                                       node=node), "stereo: node subscribed to both compressed topics and CameraInfos"):
            print(node.log_tail())
            return
        t0 = 1_700_000_100_000_000_000
        cl.publish(camera_info(t0, "left_optical"))
        cr.publish(camera_info(t0, "right_optical", baseline))
        time.sleep(0.5)
        for i in (0, 3):
            R, c = poses[i]
            left = scene.render(textures, R, c)
            right = scene.render(textures, R, c + R @ np.array([baseline, 0, 0]))
            s = t0 + (i + 1) * 100_000_000
            # CameraInfo with every frame, as camera drivers do (a single early message may be lost)
            cl.publish(camera_info(s, "left_optical"))
            cr.publish(camera_info(s, "right_optical", baseline))
            time.sleep(0.2)
            pl.publish(compressed_msg(left, s, "left_optical"))
            pr.publish(compressed_msg(right, s + 1_000_000, "right_optical"))  # 1 ms apart: a pair
            m = peer.wait_for(peer.corr, lambda mm, s=s: ns_of(mm.header.stamp) == s + 1_000_000)
            if not check(m is not None, f"stereo: pair {i} (1 ms apart) matched"):
                continue
            check(ns_of(m.reference_stamp) == s and m.reference_frame_id == "left_optical"
                  and m.header.frame_id == "right_optical", "stereo: header = right image, reference = left image")
            if check(m.pose_valid and m.metric_scale, f"stereo: pair {i} metric pose ({m.pose_status})"):
                er, et, t = pose_errors(m.relative_pose.pose, np.eye(3), np.array([baseline, 0, 0]))
                check(er < ROT_TOL_DEG and et < DIR_TOL_DEG and abs(np.linalg.norm(t) - baseline) < 1e-6,
                      f"stereo: pair {i} rotation error {er:.2f} deg, direction error {et:.2f} deg, "
                      f"|t|={np.linalg.norm(t):.4f} m (baseline {baseline})")
        # unpaired: 50 ms apart -> no output, counted as dropped
        s = t0 + 900_000_000
        R, c = poses[1]
        img = scene.render(textures, R, c)
        pl.publish(compressed_msg(img, s, "left_optical"))
        pr.publish(compressed_msg(img, s + 50_000_000, "right_optical"))
        m = peer.wait_for(peer.corr, lambda mm: ns_of(mm.header.stamp) in (s, s + 50_000_000), timeout=3)
        check(m is None, "stereo: images 50 ms apart are not paired (tolerance 5 ms)")
        # corrupt compressed data: counted, node keeps running
        bad = compressed_msg(img, s + 100_000_000, "left_optical")
        bad.data = b"\x89PNG garbage"
        pl.publish(bad)
        pr.publish(compressed_msg(img, s + 101_000_000, "right_optical"))
        v, _ = peer.diag_value("errors.bad_compressed", ns + "/matcha_node", timeout=10)
        check(v is not None and int(v) >= 1, f"stereo: corrupt compressed image counted ({v})")

        # match service on an explicit pair
        cli = peer.node.create_client(Match, f"{ns}/match")
        check(cli.wait_for_service(timeout_sec=20), "service: match available")
        req = Match.Request()
        req.image_a = image_msg(scene.render(textures, *poses[0]), t0, "cam_a")
        req.image_b = image_msg(scene.render(textures, *poses[2]), t0 + 1, "cam_b")
        req.camera_info_a = camera_info(t0, "cam_a")
        req.camera_info_b = camera_info(t0, "cam_b")
        fut = cli.call_async(req)
        t_end = time.time() + FRAME_TIMEOUT
        while not fut.done() and time.time() < t_end:
            time.sleep(0.05)
        res = fut.result() if fut.done() else None
        if check(res is not None and res.success, f"service: success ({res.message if res else 'timeout'})"):
            cc = res.correspondences
            gt_R, gt_p = scene.relative(poses[0], poses[2])
            er, et, _ = pose_errors(cc.relative_pose.pose, gt_R, gt_p)
            check(cc.pose_valid and er < ROT_TOL_DEG and et < DIR_TOL_DEG and cc.reference_frame_id == "cam_a",
                  f"service: pose rotation error {er:.2f} deg, direction error {et:.2f} deg, {cc.num_inliers} inliers")
        req.image_a.encoding = "bgr10"
        fut = cli.call_async(req)
        t_end = time.time() + FRAME_TIMEOUT
        while not fut.done() and time.time() < t_end:
            time.sleep(0.05)
        res = fut.result() if fut.done() else None
        check(res is not None and not res.success and "bad_encoding" in res.message,
              f"service: bad request answered with a reason ({res.message if res else 'timeout'})")
    finally:
        rc = node.stop()
        peer.close()
    check(rc == 0, f"stereo: node exits cleanly (rc={rc})")


def test_startup_rejects_invalid(a):
    for arg, key in [("node.mode:=sideways", "sideways"), ("pose.threshold_px:=-2.0", "pose.threshold_px"),
                     ("node.stereo.sync_tolerance_s:=5.0", "stereo.sync_tolerance_s"),
                     ("node.topics.image:='bad topic'", "topics.image"),
                     ("node.decimation:=17", "decimation")]:
        p = subprocess.run([a.node, "--ros-args"] + a.common + ["-p", arg], capture_output=True, text=True, timeout=30)
        check(p.returncode == 1 and key in p.stderr,
              f"start-up: -p {arg} rejected naming '{key}' (rc={p.returncode}: {p.stderr.strip()[:200]})")


def wait_diag(peer, ns, key, timeout):
    """The node's latest value of a diagnostics key (and its status) once it appears, else (None, None)."""
    deadline = time.time() + timeout
    v, st = None, None
    while time.time() < deadline and v is None:
        v, st = peer.diag_value(key, ns + "/matcha_node", timeout=2)
    return v, st


def mapping_args(map_path):
    """A relocalization mapping run on `map_path` where every frame becomes a view."""
    return ["-p", "node.mode:=relocalization", "-p", f"node.map.path:={map_path}",
            "-p", "node.relocalization.build_map:=true",
            "-p", "node.relocalization.new_keyframe_max_inliers:=1000000",
            "-p", "node.diagnostics_period_s:=0.2"]


def test_pipeline_failure(a, frames):
    """Engines missing at start-up: reported (level ERROR), the node keeps running and retries; once the engine
    files appear (restored), the next retry creates the pipeline and frames are answered."""
    ns = "/nomodel"
    engines = tempfile.mkdtemp(prefix="matcha-noengines-")
    node = NodeProc(a.node, ns, a.common + ["-p", f"runtime.engines_dir:={engines}",
                                            "-p", "node.diagnostics_period_s:=0.2",
                                            "-p", "node.pipeline_retry_s:=1.0"],
                    os.path.join(a.logs, "node_nomodel.log"))
    peer = Peer(ns)
    img_t, info_t = f"{ns}/image", f"{ns}/camera_info"
    pi, pc = peer.pub(Image, img_t), peer.pub(CameraInfo, info_t)
    try:
        v, st = wait_diag(peer, ns, "errors.pipeline_unavailable", 20)
        check(v is not None and st is not None and st.level == b"\x02" and node.alive(),
              f"pipeline failure: reported in diagnostics (level ERROR), node keeps running ({st.message if st else None})")
        # the engine files are restored: the pipeline comes up on the next retry and frames are answered
        for name in os.listdir(a.engines):
            os.symlink(os.path.join(a.engines, name), os.path.join(engines, name))
        if not check(peer.wait_matched([img_t, info_t], node=node), "pipeline failure: node subscribed"):
            return
        t_ns = 1_700_000_600_000_000_000
        answered = False
        deadline = time.time() + 40
        while time.time() < deadline and not answered:
            t_ns += 100_000_000
            answered = publish_until(pc, pi, camera_info(t_ns), image_msg(frames[0], t_ns),
                                     lambda t, s=t_ns: peer.wait_for(peer.odom, lambda m: ns_of(m.header.stamp) == s, t),
                                     tries=1)
        check(answered and node.alive(),
              "pipeline failure: engines restored while running, the pipeline is created on a retry and a frame is answered")
        _, st = peer.diag_value("processed", ns + "/matcha_node", timeout=3)
        check(st is not None and st.level != b"\x02", f"pipeline failure: diagnostics no longer ERROR ({st.message if st else None})")
    finally:
        node.stop()
        peer.close()


def test_corrupted_map(a, frames):
    """A map whose file is damaged (an SQLite header, then garbage): refused with a message, counted as the node's
    own failure, the file left as it was; the node keeps running and answers nothing it cannot."""
    ns = "/badmap"
    path = os.path.join(tempfile.mkdtemp(prefix="matcha-badmap-"), "map.db")
    original = b"SQLite format 3\x00" + bytes(range(256)) * 16 + b" garbage"
    with open(path, "wb") as f:
        f.write(original)
    node = NodeProc(a.node, ns, a.common + ["-p", "node.mode:=relocalization",
                                            "-p", f"node.map.path:={path}",
                                            "-p", "node.diagnostics_period_s:=0.2"],
                    os.path.join(a.logs, "node_badmap.log"))
    peer = Peer(ns)
    img_t, info_t = f"{ns}/image", f"{ns}/camera_info"
    pi, pc = peer.pub(Image, img_t), peer.pub(CameraInfo, info_t)
    try:
        v, _ = wait_diag(peer, ns, "errors.map_unusable", 30)
        check(v is not None and node.alive(), f"corrupted map: refused and counted (errors.map_unusable={v})")
        failures, _ = peer.diag_value("node_failures", ns + "/matcha_node", timeout=3)
        check(failures is not None and int(failures) >= 1, f"corrupted map: counted as a node failure ({failures})")
        if peer.wait_matched([img_t, info_t], node=node):
            t_ns = 1_700_000_700_000_000_000
            pc.publish(camera_info(t_ns))
            time.sleep(0.2)
            pi.publish(image_msg(frames[0], t_ns))
            time.sleep(2.0)
        with open(path, "rb") as f:
            check(f.read() == original, "corrupted map: the file is left as it was (not overwritten)")
        check(node.alive(), "corrupted map: node still running after a frame")
    finally:
        node.stop()
        peer.close()


def test_disk_full(a, frames):
    """Mapping onto a full disk (a 256 KiB tmpfs, mounted in the test's own mount namespace: room for an empty
    map, not for a view of ~0.5 MiB): adding each view fails, is counted as a node failure
    (errors.map_write_failed), the map stays a whole, consistent database, and the node keeps answering."""
    ns = "/diskfull"
    mnt = tempfile.mkdtemp(prefix="matcha-full-")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", mnt], capture_output=True, text=True)
    if not check(r.returncode == 0, f"disk full: a 256 KiB tmpfs mounted ({r.stderr.strip()})"):
        return
    map_path = os.path.join(mnt, "map.db")
    node = NodeProc(a.node, ns, a.common + mapping_args(map_path), os.path.join(a.logs, "node_diskfull.log"))
    peer = Peer(ns)
    img_t, info_t = f"{ns}/image", f"{ns}/camera_info"
    pi, pc = peer.pub(Image, img_t), peer.pub(CameraInfo, info_t)
    try:
        if not check(peer.wait_matched([img_t, info_t], node=node), "disk full: node subscribed"):
            return
        t0 = 1_700_000_800_000_000_000
        # every frame becomes a view (the frames repeat with new stamps)
        stamps = [t0 + i * 100_000_000 for i in range(11)]
        check(publish_until(pc, pi, camera_info(stamps[0]), image_msg(frames[0], stamps[0]),
                            lambda t: wait_processed(peer, ns, 1, t)), "disk full: first frame processed")
        for i, st in enumerate(stamps[1:], start=1):
            pc.publish(camera_info(st))
            pi.publish(image_msg(frames[i % len(frames)], st))
            wait_processed(peer, ns, i + 1)
        v, _ = wait_diag(peer, ns, "errors.map_write_failed", 10)
        check(v is not None and int(v) >= 1, f"disk full: the failed write is counted (errors.map_write_failed={v})")
        check(map_whole(map_path) == 0, f"disk full: the map is whole and holds no partial view "
                                         f"({map_whole(map_path)} views)")
        processed, _ = peer.diag_value("processed", ns + "/matcha_node", timeout=2)
        check(node.alive() and processed is not None and int(processed) >= len(stamps),
              f"disk full: node still running and mapping (processed={processed})")
    finally:
        node.stop()
        peer.close()
        subprocess.run(["umount", mnt], capture_output=True)


def map_whole(path):
    """The number of keyframes of the map at `path` when SQLite's integrity check passes on it, else None."""
    import sqlite3
    try:
        with sqlite3.connect(path) as db:
            if db.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                return None
            return db.execute("SELECT count(*) FROM keyframes").fetchone()[0]
    except sqlite3.Error:
        return None


def test_kill_while_mapping(a, frames):
    """SIGKILL at a random moment of a mapping run (each view committed on its own), then a restart on the same
    map: the database is whole and holds every view committed before the kill (all but perhaps the one being
    written); the restarted node extends it, and SIGTERM loses none of the new views."""
    import random
    ns = "/killmap"
    root = tempfile.mkdtemp(prefix="matcha-killmap-")
    map_path = os.path.join(root, "map.db")
    img_t, info_t = f"{ns}/image", f"{ns}/camera_info"

    def mapping(log, n_frames, stop):
        node = NodeProc(a.node, ns, a.common + mapping_args(map_path), os.path.join(a.logs, log))
        peer = Peer(ns)
        pi, pc = peer.pub(Image, img_t), peer.pub(CameraInfo, info_t)
        try:
            if not peer.wait_matched([img_t, info_t], node=node):
                return None
            t0 = 1_700_000_900_000_000_000 + 10_000_000_000 * len(log)
            stamps = [t0 + i * 100_000_000 for i in range(n_frames)]
            publish_until(pc, pi, camera_info(stamps[0]), image_msg(frames[0], stamps[0]),
                          lambda t: wait_processed(peer, ns, 1, t))
            for i, st in enumerate(stamps[1:], start=1):
                pc.publish(camera_info(st))
                pi.publish(image_msg(frames[i % len(frames)], st))
                wait_processed(peer, ns, i + 1)
                if stop == "kill" and i == n_frames - 1:
                    time.sleep(random.uniform(0.0, 0.3))  # the 20th view may be being written
                    node.p.kill()
            if stop == "term":
                node.p.terminate()
            node.p.wait(20)
            return node.p.returncode
        finally:
            node.stop()
            peer.close()

    mapping("node_killmap_1.log", 20, "kill")
    n = map_whole(map_path)
    check(n in (19, 20), f"kill while mapping: the map is whole after SIGKILL and holds the views committed "
                         f"before it ({n}: 19 or 20)")
    mapping("node_killmap_2.log", 3, "term")
    m = map_whole(map_path)
    check(m is not None and n is not None and m == n + 3,
          f"kill while mapping: restarted on that map, which keeps the 3 new views after SIGTERM ({n} -> {m})")


def test_foreign_directory(a, frames):
    """Started elsewhere with the shipped config (relative `runtime.engines_dir: engines`), as `ros2 launch`
    does: the node finds the engines in $MATCHA_CACHE and answers a frame."""
    ns = "/elsewhere"
    binary, params = os.path.abspath(a.node), os.path.abspath(a.params)
    node = NodeProc(binary, ns, ["--params-file", params, "-p", "node.mode:=odometry"],
                    os.path.join(a.logs, "node_elsewhere.log"), cwd=tempfile.mkdtemp(prefix="matcha-cwd-"))
    peer = Peer(ns)
    img_t, info_t = f"{ns}/image", f"{ns}/camera_info"
    pi, pc = peer.pub(Image, img_t), peer.pub(CameraInfo, info_t)
    try:
        if not check(peer.wait_matched([img_t, info_t], node=node), "foreign directory: node subscribed"):
            print(node.log_tail())
            return
        t0 = 1_700_000_300_000_000_000
        ok = publish_until(pc, pi, camera_info(t0), image_msg(frames[0], t0),
                           lambda t: peer.wait_for(peer.odom, lambda m: ns_of(m.header.stamp) == t0, t))
        if not check(ok, "foreign directory: engines found from another working directory, first frame answered"):
            print(node.log_tail())
    finally:
        node.stop()
        peer.close()


def publish_until(pc, pi, info, img, answered, tries=10):
    """Publishes CameraInfo then the image until `answered(timeout)` is true: the first best-effort samples
    right after discovery may be lost (then the node skips the image for want of a CameraInfo)."""
    for _ in range(tries):
        pc.publish(info)
        time.sleep(0.2)
        pi.publish(img)
        if answered(3.0):
            return True
    return False


def odometry_consistency(stamps, poses, odom):
    """Checks the monocular VO's nav_msgs/Odometry against ground truth up to the run's one scale: the odometry
    frame is the first frame's optical frame; a frame the VO tracks (covariance below the lost variance) must
    have the ground-truth orientation from frame 0 and, after one scale fitted over the run, the ground-truth
    position. Returns ([(frame, rot err deg, position err m after the scale)], the scale, frames waiting)."""
    R0, c0 = poses[0]
    tracked, waiting = [], 0
    for i, s in enumerate(stamps):
        o = odom.get(s)
        if o is None:
            continue
        if o.pose.covariance[0] >= 9999.0:
            waiting += 1
            continue
        q = o.pose.pose.orientation
        R = scene.quat_to_rot(q.x, q.y, q.z, q.w)
        p = np.array([o.pose.pose.position.x, o.pose.pose.position.y, o.pose.pose.position.z])
        tracked.append((i, R, p, R0.T @ (poses[i][1] - c0)))
    if not tracked:
        return [], float("nan"), waiting
    P = np.array([t[2] for t in tracked])
    G = np.array([t[3] for t in tracked])
    scale = float((P * G).sum() / max((P * P).sum(), 1e-12))
    rows = [(i, scene.rotation_error_deg(R, R0.T @ poses[i][0]), float(np.linalg.norm(scale * p - g)))
            for i, R, p, g in tracked]
    return rows, scale, waiting


def test_keyframes(a):
    """Odometry over a denser sequence with the default keyframe policy (parallax 3 deg, 100 inliers): the
    correspondences' keyframe switches several times, and the monocular VO's odometry stays consistent with
    ground truth up to one scale for the run."""
    ns = "/kf"
    poses = scene.trajectory(16)
    frames = scene.cached_render(poses, "demo")
    # the base at the camera (identity mounting): the base's odometry is the camera's from its first frame
    node = NodeProc(a.node, ns, a.common + ["-p", "node.mode:=odometry", "-p", "node.odometry_correspondences:=true",
                                            "-p", "node.camera_mounting.rpy:=[0.0, 0.0, 0.0]",
                                            "-p", "node.diagnostics_period_s:=0.2"],
                    os.path.join(a.logs, "node_keyframes.log"))
    peer = Peer(ns)
    img_t, info_t = f"{ns}/image", f"{ns}/camera_info"
    pi, pc = peer.pub(Image, img_t), peer.pub(CameraInfo, info_t)
    try:
        if not check(peer.wait_matched([img_t, info_t], node=node), "keyframes: node subscribed"):
            print(node.log_tail())
            return
        t0 = 1_700_000_200_000_000_000
        stamps = [t0 + i * 100_000_000 for i in range(len(frames))]
        check(publish_until(pc, pi, camera_info(stamps[0]), image_msg(frames[0], stamps[0]),
                            lambda t: peer.wait_for(peer.odom, lambda m: ns_of(m.header.stamp) == stamps[0], t)),
              "keyframes: answer for frame 0")
        for i, (f, s) in list(enumerate(zip(frames, stamps)))[1:]:
            pc.publish(camera_info(s))
            pi.publish(image_msg(f, s))
            got = peer.wait_for(peer.corr, lambda m, s=s: ns_of(m.header.stamp) == s)
            check(got is not None, f"keyframes: answer for frame {i}")
        peer.wait_for(peer.odom, lambda m: ns_of(m.header.stamp) == stamps[-1], timeout=5)
        with peer.lock:
            corr = {ns_of(m.header.stamp): m for m in peer.corr}
            odom = {ns_of(m.header.stamp): m for m in peer.odom}
        refs = sorted({stamps.index(ns_of(c.reference_stamp)) for c in corr.values()
                       if ns_of(c.reference_stamp) in stamps})
        ids = sorted({c.keyframe_id for c in corr.values()})
        check(len(refs) >= 3 and len(ids) == len(refs),
              f"keyframes: the keyframe switched {len(refs) - 1} times (keyframes at frames {refs}, ids {ids})")
        rows, scale, waiting = odometry_consistency(stamps, poses, odom)
        path = sum(float(np.linalg.norm(poses[i + 1][1] - poses[i][1])) for i in range(len(poses) - 1))
        check(len(rows) + waiting == len(frames), f"keyframes: odometry for every frame ({len(rows) + waiting}/{len(frames)})")
        check(len(rows) >= len(frames) - 4,
              f"keyframes: the monocular VO initialised after {waiting} frame(s) and tracked {len(rows)}")
        print(f"odometry vs ground truth after one scale ({scale:.4f} m per unit; frame, rotation err deg, position err m):")
        for i, er, ep in rows:
            print(f"    {i:2d} {er:.3f} {ep:.4f}")
        check(all(er < ROT_TOL_DEG for _, er, _ in rows),
              f"keyframes: odometry orientation within {ROT_TOL_DEG} deg of ground truth "
              f"(max {max((r[1] for r in rows), default=float('nan')):.3f})")
        worst = max((r[2] for r in rows), default=float("nan"))
        check(worst < 0.03 * path,
              f"keyframes: odometry position within 3% of the {path:.2f} m path after one scale for the run "
              f"(worst {worst:.4f} m; unit steps chained or a drifting scale are off by decimetres)")
    finally:
        rc = node.stop()
        peer.close()
    check(rc == 0, f"keyframes: node exits cleanly (rc={rc})")


def test_decimation(a, frames):
    """A fixed decimation of 3 on a 10 Hz stream (the node keeps up, so without it every frame would be
    processed): every third frame is answered, the others are counted in skipped_decimation, and the node
    answers evenly spaced frames."""
    ns = "/decim"
    k, n, period_ns = 3, 36, 100_000_000
    node = NodeProc(a.node, ns, a.common + ["-p", "node.mode:=odometry", "-p", f"node.decimation:={k}",
                                            "-p", "node.diagnostics_period_s:=0.2"],
                    os.path.join(a.logs, "node_decimation.log"))
    peer = Peer(ns)
    img_t, info_t = f"{ns}/image", f"{ns}/camera_info"
    pi, pc = peer.pub(Image, img_t), peer.pub(CameraInfo, info_t)
    seq = list(frames) + list(frames[-2:0:-1])  # back and forth: a smooth, endless camera path
    try:
        if not check(peer.wait_matched([img_t, info_t], node=node), "decimation: node subscribed"):
            print(node.log_tail())
            return
        t0 = 1_700_000_300_000_000_000
        check(publish_until(pc, pi, camera_info(t0), image_msg(seq[0], t0),
                            lambda t: peer.wait_for(peer.odom, lambda m: ns_of(m.header.stamp) == t0, t)),
              "decimation: answer for the first frame")
        time.sleep(0.5)
        with peer.lock:
            base = len(peer.odom)
        start = time.time()
        stamps = []
        for i in range(n):
            s = t0 + 10 * period_ns + i * period_ns
            stamps.append(s)
            pc.publish(camera_info(s))
            pi.publish(image_msg(seq[i % len(seq)], s))
            time.sleep(max(0.0, start + (i + 1) * period_ns * 1e-9 - time.time()))
        time.sleep(1.0)
        with peer.lock:
            answered = sorted(stamps.index(ns_of(m.header.stamp)) for m in peer.odom[base:]
                              if ns_of(m.header.stamp) in stamps)
        gaps = [b - a for a, b in zip(answered, answered[1:])]
        check(n // k - 2 <= len(answered) <= n // k + 1,
              f"decimation: {len(answered)} of {n} frames answered at k = {k} (expected about {n // k}; frames {answered})")
        check(gaps and sum(g == k for g in gaps) >= 0.8 * len(gaps) and min(gaps) >= k - 1,
              f"decimation: answers every {k} frames (gaps {gaps})")
        v, _ = peer.diag_value("skipped_decimation", ns + "/matcha_node")
        check(v is not None and int(v) >= n - n // k - 3,
              f"decimation: skipped_decimation = {v} in diagnostics (>= {n - n // k - 3})")
    finally:
        rc = node.stop()
        peer.close()
    check(rc == 0, f"decimation: node exits cleanly (rc={rc})")


def wait_processed(peer, ns, n, timeout=FRAME_TIMEOUT):
    """Waits until the node's diagnostics report at least n processed frames."""
    t_end = time.time() + timeout
    while time.time() < t_end:
        v, _ = peer.diag_value("processed", ns + "/matcha_node", timeout=1)
        if v is not None and int(v) >= n:
            return True
    return False


def test_relocalization(a, textures, poses, frames):
    """Builds a map of views from the sequence, restarts the node with that map and checks that frames near mapped
    keyframes retrieve the right keyframe and a pose close to ground truth."""
    import sqlite3
    ns = "/reloc"
    map_path = os.path.join(a.logs, "reloc_map.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(map_path + suffix):
            os.remove(map_path + suffix)
    common = a.common + ["-p", "node.mode:=relocalization", "-p", f"node.map.path:={map_path}",
                         "-p", "node.diagnostics_period_s:=0.2"]
    t0 = 1_700_000_300_000_000_000
    stamps = [t0 + i * 100_000_000 for i in range(len(frames))]
    img_t, info_t = f"{ns}/image", f"{ns}/camera_info"
    # 1. mapping run: every frame becomes a keyframe (threshold above any inlier count)
    node = NodeProc(a.node, ns, common + ["-p", "node.relocalization.build_map:=true",
                                          "-p", "node.relocalization.new_keyframe_max_inliers:=1000000"],
                    os.path.join(a.logs, "node_reloc_map.log"))
    peer = Peer(ns)
    pi, pc = peer.pub(Image, img_t), peer.pub(CameraInfo, info_t)
    try:
        if not check(peer.wait_matched([img_t, info_t], node=node), "relocalization: mapping node subscribed"):
            print(node.log_tail())
            return
        check(publish_until(pc, pi, camera_info(stamps[0]), image_msg(frames[0], stamps[0]),
                            lambda t: wait_processed(peer, ns, 1, t)), "relocalization: mapping frame 0 processed")
        for i, (f, s) in list(enumerate(zip(frames, stamps)))[1:]:
            pc.publish(camera_info(s))
            pi.publish(image_msg(f, s))
            check(wait_processed(peer, ns, i + 1), f"relocalization: mapping frame {i} processed")
        written, _ = peer.diag_value("map.keyframes_written", ns + "/matcha_node", timeout=3)
        check(written is not None and int(written) == len(frames),
              f"relocalization: /diagnostics map.keyframes_written = {written} (views of {len(frames)} frames)")
    finally:
        rc = node.stop()
        peer.close()
    check(rc == 0, f"relocalization: mapping node exits cleanly (rc={rc})")
    try:
        with sqlite3.connect(map_path) as db:
            meta = dict(db.execute("SELECT key, value FROM meta"))
            rows = db.execute("SELECT id, stamp_ns, pose IS NULL FROM keyframes ORDER BY id").fetchall()
    except sqlite3.Error as e:
        check(False, f"relocalization: map written ({e})")
        return
    kf_stamps = [r[1] for r in rows]
    check(meta.get("descriptor") == "xfeat" and kf_stamps == stamps and all(r[2] for r in rows),
          f"relocalization: map of {len(kf_stamps)} views ({meta.get('descriptor')}, "
          f"{meta.get('descriptor_dim')}-D, place {meta.get('place')})")
    ids = {r[1]: r[0] for r in rows}

    # 2. relocalization run with the saved map: queries near mapped keyframes, off the mapped trajectory
    node = NodeProc(a.node, ns, common, os.path.join(a.logs, "node_reloc.log"))
    peer = Peer(ns)
    pi, pc = peer.pub(Image, img_t), peer.pub(CameraInfo, info_t)
    try:
        if not check(peer.wait_matched([img_t, info_t], node=node), "relocalization: node with the map subscribed"):
            print(node.log_tail())
            return
        q0 = t0 + 10_000_000_000
        pc.publish(camera_info(q0))
        time.sleep(0.5)
        # offsets mostly across the path (mapped keyframes are ~0.27 m apart along it): each query is clearly
        # nearest to one keyframe, which must be the one retrieved
        queries = [(len(frames) - 3, np.array([0.02, -0.10, 0.03]), (0.01, 0.03, -0.01)),
                   (1, np.array([-0.02, 0.08, -0.03]), (-0.02, -0.03, 0.01))]
        for j, (k, dc, (rx, ry, rz)) in enumerate(queries):
            Rk, ck = poses[k]
            q = (Rk @ scene.rot(rx, ry, rz), ck + Rk @ dc)
            s = q0 + (j + 1) * 100_000_000
            publish_until(pc, pi, camera_info(s), image_msg(scene.render(textures, *q), s),
                          lambda t, s=s: peer.wait_for(peer.corr, lambda mm: ns_of(mm.header.stamp) == s, t), tries=3)
            c = peer.wait_for(peer.corr, lambda mm, s=s: ns_of(mm.header.stamp) == s, timeout=1)
            if not check(c is not None, f"relocalization: query {j} (near keyframe of frame {k}) answered"):
                print(node.log_tail())
                continue
            want = ids[stamps[k]]
            check(c.keyframe_id == want and ns_of(c.reference_stamp) == stamps[k]
                  and c.reference_frame_id == f"matcha_keyframe_{want}",
                  f"relocalization: query {j} retrieved keyframe {c.keyframe_id} "
                  f"({c.reference_frame_id}), expected {want} (frame {k}); {c.num_inliers} inliers")
            if not check(c.pose_valid, f"relocalization: query {j} has a pose ({c.pose_status})"):
                continue
            ref = stamps.index(ns_of(c.reference_stamp)) if ns_of(c.reference_stamp) in stamps else k
            gt_R, gt_p = scene.relative(poses[ref], q)
            p = peer.wait_for(peer.poses, lambda mm, s=s: ns_of(mm.header.stamp) == s, timeout=2)
            if check(p is not None and p.header.frame_id == c.reference_frame_id,
                     f"relocalization: query {j} relative_pose published in the keyframe's frame"):
                er, et, _ = pose_errors(p.pose.pose, gt_R, gt_p)
                check(er < ROT_TOL_DEG and et < DIR_TOL_DEG,
                      f"relocalization: query {j} pose vs ground truth: rotation error {er:.2f} deg, translation "
                      f"direction error {et:.2f} deg (tolerances {ROT_TOL_DEG}, {DIR_TOL_DEG})")
    finally:
        rc = node.stop()
        peer.close()
    check(rc == 0, f"relocalization: node exits cleanly (rc={rc})")


def run_selected(tests, only):
    """Runs the tests (name -> function) named in the comma list `only` (all when empty), then shuts rclpy down,
    prints the failures and exits 1 when there are any."""
    for name, fn in tests.items():
        if only and name not in only.split(","):
            continue
        print(f"== {name}", flush=True)
        fn()
    rclpy.shutdown()
    print(f"{len(FAILURES)} failure(s)" + ("" if not FAILURES else ":\n  " + "\n  ".join(FAILURES)))
    sys.exit(1 if FAILURES else 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--node", required=True)
    ap.add_argument("--params", default=os.path.join(os.path.dirname(__file__), "..", "..", "config", "matcha.yaml"))
    ap.add_argument("--engines", default=os.path.join(os.environ.get("MATCHA_CACHE", os.path.expanduser("~/.cache/matcha")), "engines"))
    ap.add_argument("--logs", default="/tmp/matcha-ros-test")
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    os.makedirs(a.logs, exist_ok=True)
    a.common = ["--params-file", a.params, "-p", f"runtime.engines_dir:={a.engines}"]
    rclpy.init()
    textures = scene.load_textures()
    poses = scene.trajectory(a.frames)
    frames = list(scene.cached_render(poses, "e2e"))
    tests = {
        "startup": lambda: test_startup_rejects_invalid(a),
        "odometry": lambda: test_odometry(a, textures, poses, frames),
        "stereo": lambda: test_stereo_and_service(a, textures, poses),
        "pipeline": lambda: test_pipeline_failure(a, frames),
        "badmap": lambda: test_corrupted_map(a, frames),
        "diskfull": lambda: test_disk_full(a, frames),
        "killmap": lambda: test_kill_while_mapping(a, frames),
        "elsewhere": lambda: test_foreign_directory(a, frames),
        "keyframes": lambda: test_keyframes(a),
        "decimation": lambda: test_decimation(a, frames),
        "relocalization": lambda: test_relocalization(a, textures, poses, frames),
    }
    run_selected(tests, a.only)


if __name__ == "__main__":
    main()
