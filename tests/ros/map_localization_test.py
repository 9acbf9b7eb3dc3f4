"""End-to-end test of matcha_node's map modes (node.map.mode build / localize in stereo_odometry) against a real
rclpy peer (run inside scripts/lib/ros_netns.sh; see scripts/test.sh --ros-only --only map).

1. build     the node plays the rendered stereo sequence (vo_short) with node.map.mode:=build: every odometry
             keyframe goes to an SQLite map (map = this run's odom); after SIGINT the file holds the keyframes.
2. localize  a second node with node.map.mode:=localize plays the sequence again from a later frame, so its own
             odom starts elsewhere (at the base pose of that frame); it must publish TF map -> odom and
             localization/pose (geometry_msgs/PoseWithCovarianceStamped of base_link in map) with no prior:
             map -> odom equal to the first run's base pose at that frame (ground truth through the mounting),
             and the base pose in map equal to the ground truth, within 5 cm and 1 deg; /diagnostics counts the
             localizations.
3. relocalization  a monocular node (node.mode:=relocalization, left images alone, every 10th frame from a later
             one) against the same map: each frame's correspondences against a keyframe, and the base's pose in
             map on localization/pose by PnP against the map's landmarks, within 5 cm and 1 deg of the truth.
4. hint     /initialpose 20 m from anything mapped: the candidates are restricted to near it, so nothing is
             localized and the attempts are counted as refused (with max_prior_refusals raised so that the
             search does not fall back to the whole map within the short run).
5. readonly the map on a read-only file system (a tmpfs remounted read-only in the test's mount namespace, as a
             robot's read-only partition): localize still works; a relocalization mapping run relocalizes
             read-only and counts that it cannot add views; build there fails, is counted, and the odometry
             goes on answering every frame.

Usage: python3 tests/ros/map_localization_test.py --node target/release/matcha_node --params config/matcha.yaml
       --engines DIR [--sequence $MATCHA_CACHE/vo/vo_short]
"""

import os
import sqlite3
import sys
import time

import numpy as np
import rclpy
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import node_test_args  # noqa: E402
from e2e_test import FAILURES, NodeProc, check  # noqa: E402
from vo_player import (MOUNT, NS, Player, VoPeer, latch_mounting, load_sequence, play_sequence,  # noqa: E402
                       pose_T, quat_to_rot, iso, rot_deg, wait_ready)


def node_with_map(a, mode, path, tag, extra=()):
    return NodeProc(a.node, NS, ["--params-file", a.params, "-p", f"runtime.engines_dir:={a.engines}",
                                 "-p", "node.mode:=stereo_odometry", "-p", f"node.map.mode:={mode}",
                                 "-p", f"node.map.path:={path}", *extra], os.path.join(a.logs, f"map_{tag}.log"))


def read_only_map(a, peer, seq, frames, path):
    import shutil
    import subprocess
    import tempfile
    mnt = tempfile.mkdtemp(prefix="matcha-romap-")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt], capture_output=True, text=True)
    if not check(r.returncode == 0, f"readonly: a tmpfs mounted ({r.stderr.strip()})"):
        return
    try:
        ro_map = os.path.join(mnt, "map.db")
        shutil.copy(path, ro_map)
        r = subprocess.run(["mount", "-o", "remount,ro", mnt], capture_output=True, text=True)
        if not check(r.returncode == 0, f"readonly: remounted read-only ({r.stderr.strip()})"):
            return
        fixes = []
        rel = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        peer.node.create_subscription(PoseWithCovarianceStamped, f"{NS}/localization/pose", peer._rec(fixes), rel)
        node = node_with_map(a, "localize", ro_map, "ro_localize")
        try:
            if check(wait_ready(peer, node), "readonly: localize node subscribed, pipeline ready"):
                odom, _, _, _ = play_sequence(peer, node, seq, frames[a.start:])
                time.sleep(1.0)
                check(len(odom) >= len(frames[a.start:]) - 2 and len(fixes) > 0,
                      f"readonly: localized in a map on a read-only file system ({len(fixes)} fixes, "
                      f"{len(odom)} frames answered)")
        finally:
            check(node.stop() == 0, "readonly: localize node exits cleanly")
        # a relocalization mapping run on that map: it relocalizes read-only and says it cannot add views
        node = NodeProc(a.node, NS, ["--params-file", a.params, "-p", f"runtime.engines_dir:={a.engines}",
                                     "-p", "node.mode:=relocalization", "-p", f"node.map.path:={ro_map}",
                                     "-p", "node.relocalization.build_map:=true",
                                     "-p", "node.relocalization.new_keyframe_max_inliers:=1000000"],
                        os.path.join(a.logs, "map_ro_relocalization.log"))
        try:
            # its diagnostics are not OK (a node failure is counted), so readiness is that count
            failed, deadline = None, time.time() + 60
            ready = peer.wait_matched([f"{NS}/image"], node=node)
            while ready and failed is None and time.time() < deadline and node.alive():
                failed, _ = peer.diag_value("errors.map_write_failed", "matcha_node")
            if check(ready and failed is not None, "readonly: relocalization node subscribed, map opened read-only "
                                                   f"(errors.map_write_failed={failed})"):
                c0, n0 = peer.count(peer.corr), len(fixes)
                sub = frames[a.start::20]
                Player(peer, seq, monocular=True).play_at_rate([(t, l, r) for t, l, r, _ in sub], 1.0)
                deadline = time.time() + 20
                while time.time() < deadline and peer.count(peer.corr) < c0 + len(sub):
                    time.sleep(0.2)
                failed, _ = peer.diag_value("errors.map_write_failed", "matcha_node")
                check(peer.count(peer.corr) - c0 == len(sub) and len(fixes) > n0 and failed is not None
                      and int(failed) >= 1 and node.alive(),
                      f"readonly: a relocalization mapping run there answers {peer.count(peer.corr) - c0} of "
                      f"{len(sub)} frames, localizes {len(fixes) - n0} in map, and counts that it cannot add "
                      f"views (errors.map_write_failed={failed})")
        finally:
            check(node.stop() == 0, "readonly: relocalization node exits cleanly")
        node = node_with_map(a, "build", os.path.join(mnt, "new.db"), "ro_build")
        try:
            if check(wait_ready(peer, node), "readonly: build node subscribed, pipeline ready"):
                odom, _, _, _ = play_sequence(peer, node, seq, frames[:40])
                failed = {}
                deadline = time.time() + 5
                while not failed and time.time() < deadline:
                    _, st = peer.diag_value("processed", "matcha_node")
                    failed = {kv.key: kv.value for kv in (st.values if st else []) if kv.key.startswith("errors.map")
                              and not kv.key.endswith(".last")}
                check(len(odom) >= 38 and failed and node.alive(),
                      f"readonly: building there fails and is counted ({failed}), the odometry answers "
                      f"{len(odom)} of 40 frames")
        finally:
            check(node.stop() == 0, "readonly: build node exits cleanly")
    finally:
        subprocess.run(["umount", mnt], capture_output=True)


def base_errors(fixes, frames):
    """(position error m, rotation error deg) of each localization/pose fix (base_link in map, map = the build
    run's odom: the base at frame 0) against the ground truth at its stamp; fixes at unknown stamps left out."""
    G0 = frames[0][3]
    gt_by_ns = {int(round(t * 1e9)): g for t, _, _, g in frames}
    errs = []
    for m in fixes:
        g = gt_by_ns.get(m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec)
        if g is None:
            continue
        want_b = MOUNT @ np.linalg.inv(G0) @ g @ np.linalg.inv(MOUNT)
        P = pose_T(m.pose.pose)
        errs.append((float(np.linalg.norm(P[:3, 3] - want_b[:3, 3])), rot_deg(P[:3, :3].T @ want_b[:3, :3])))
    return errs


def monocular_relocalization(a, peer, seq, frames, path, poses):
    """Phase 3: the relocalization mode on the left images alone, against the stereo-built map."""
    node = NodeProc(a.node, NS, ["--params-file", a.params, "-p", f"runtime.engines_dir:={a.engines}",
                                 "-p", "node.mode:=relocalization", "-p", f"node.map.path:={path}"],
                    os.path.join(a.logs, "map_relocalization.log"))
    try:
        if not check(wait_ready(peer, node, monocular=True), "relocalization: node subscribed, pipeline ready"):
            print(node.log_tail())
            return
        n0, c0 = len(poses), peer.count(peer.corr)
        sub = frames[a.start::10]
        Player(peer, seq, monocular=True).play_at_rate([(t, l, r) for t, l, r, _ in sub], 1.0)
        deadline = time.time() + 20
        while time.time() < deadline and (peer.count(peer.corr) < c0 + len(sub) or len(poses) < n0 + len(sub)):
            time.sleep(0.2)
        with peer.lock:
            fixes = list(poses)[n0:]
        corr = peer.count(peer.corr) - c0
        errs = base_errors(fixes, frames)
        worst = max(errs, default=(np.inf, np.inf))
        check(corr == len(sub) and len(fixes) >= len(sub) - 1 and len(errs) == len(fixes)
              and all(m.header.frame_id == "map" for m in fixes) and worst[0] < 0.05 and worst[1] < 1.0,
              f"relocalization: {corr} of {len(sub)} frames answered against a keyframe, {len(fixes)} poses of "
              f"base_link in map from one camera, worst {worst[0] * 100:.1f} cm / {worst[1]:.2f} deg")
        tried, _ = peer.diag_value("map.localization_attempts", "matcha_node")
        done, _ = peer.diag_value("map.localizations", "matcha_node")
        check(tried is not None and int(tried) == len(sub) and done is not None and int(done) == len(fixes),
              f"relocalization: /diagnostics map.localization_attempts = {tried}, map.localizations = {done} "
              f"({len(fixes)} poses received)")
    finally:
        check(node.stop() == 0, "relocalization: node exits cleanly")


def tf_T(t):
    r, p = t.transform.rotation, t.transform.translation
    return iso(quat_to_rot(r.x, r.y, r.z, r.w), [p.x, p.y, p.z])


def main():
    ap = node_test_args(sequence=True)
    ap.add_argument("--start", type=int, default=70, help="first frame of the localizing run")
    a = ap.parse_args()
    os.makedirs(a.logs, exist_ok=True)
    path = os.path.join(a.logs, "map_test.db")
    for ext in ("", "-wal", "-shm"):
        if os.path.exists(path + ext):
            os.remove(path + ext)
    seq, frames = load_sequence(a.sequence, 150)
    rclpy.init()
    peer = VoPeer(NS)
    poses = []
    rel = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
    peer.node.create_subscription(PoseWithCovarianceStamped, f"{NS}/localization/pose", peer._rec(poses), rel)
    latch_mounting(peer)
    try:
        # ------------------------------------------------------------------------------------ build
        node = node_with_map(a, "build", path, "build")
        try:
            if check(wait_ready(peer, node), "build: node subscribed, pipeline ready"):
                odom, _, _, _ = play_sequence(peer, node, seq, frames)
                check(len(odom) >= len(frames) - 2, f"build: {len(odom)} of {len(frames)} frames answered")
        finally:
            check(node.stop() == 0, "build: node exits cleanly")
        n = 0
        if check(os.path.exists(path), f"build: map written ({path})"):
            with sqlite3.connect(path) as db:
                n = db.execute("SELECT count(*) FROM keyframes").fetchone()[0]
                lm = db.execute("SELECT count(*) FROM landmarks").fetchone()[0]
            check(n >= 4 and lm > 1000, f"build: {n} keyframes, {lm} landmarks")
        # ------------------------------------------------------------------------------------ localize
        node = node_with_map(a, "localize", path, "localize")
        try:
            if not check(wait_ready(peer, node), "localize: node subscribed, pipeline ready"):
                print(node.log_tail())
                return
            k0 = len(peer.tf)
            later = frames[a.start:]
            odom, _, _, _ = play_sequence(peer, node, seq, later)
            check(len(odom) >= len(later) - 2, f"localize: {len(odom)} of {len(later)} frames answered")
            time.sleep(1.0)
            with peer.lock:
                tfs = [t for m in list(peer.tf)[k0:] for t in m.transforms
                       if t.header.frame_id == "map" and t.child_frame_id == "odom"]
                fixes = list(poses)
            if not check(len(tfs) > 0 and len(fixes) > 0,
                         f"localize: TF map -> odom ({len(tfs)}) and localization/pose ({len(fixes)}) published"):
                print(node.log_tail())
                return
            # the second run's odom is the base at frame `start`; the map is the first run's odom (the base at
            # frame 0): map -> odom = base(0)^-1 base(start) = M G0^-1 G_start M^-1 with G world_from_camera
            G0, Gs = frames[0][3], frames[a.start][3]
            want = MOUNT @ np.linalg.inv(G0) @ Gs @ np.linalg.inv(MOUNT)
            T = tf_T(tfs[-1])
            dt = float(np.linalg.norm(T[:3, 3] - want[:3, 3]))
            dr = rot_deg(T[:3, :3].T @ want[:3, :3])
            check(dt < 0.05 and dr < 1.0, f"localize: map -> odom {dt * 100:.1f} cm / {dr:.2f} deg from the truth")
            check(all(m.header.frame_id == "map" for m in fixes), "localize: localization/pose in frame map")
            errs = base_errors(fixes, frames)
            worst = max(errs, default=(np.inf, np.inf))
            check(len(errs) == len(fixes) and worst[0] < 0.05 and worst[1] < 1.0,
                  f"localize: {len(errs)} fixes of base_link in map, worst {worst[0] * 100:.1f} cm / {worst[1]:.2f} deg")
            v, _ = peer.diag_value("map.localizations", "matcha_node")
            check(v is not None and int(v) == len(fixes),
                  f"localize: /diagnostics map.localizations = {v} (fixes received {len(fixes)})")
        finally:
            check(node.stop() == 0, "localize: node exits cleanly")
        # ------------------------------------------------------------------------------------ relocalization
        monocular_relocalization(a, peer, seq, frames, path, poses)
        # ------------------------------------------------------------------------------------ a wrong hint
        node = node_with_map(a, "localize", path, "hint", ["-p", "node.map.max_prior_refusals:=100"])
        try:
            if not check(wait_ready(peer, node), "hint: node subscribed, pipeline ready"):
                return
            hint = PoseWithCovarianceStamped()
            hint.header.frame_id = "map"
            hint.pose.pose.position.x = 20.0  # 20 m from anything mapped
            hint.pose.pose.orientation.w = 1.0
            hint.pose.covariance = [0.0] * 36
            hint.pose.covariance[0] = hint.pose.covariance[7] = 0.25
            pub = peer.node.create_publisher(PoseWithCovarianceStamped, "/initialpose", 5)
            deadline = time.time() + 5.0
            while pub.get_subscription_count() < 1 and time.time() < deadline:
                time.sleep(0.05)
            pub.publish(hint)
            time.sleep(0.5)
            n0 = len(poses)
            play_sequence(peer, node, seq, frames[a.start:])
            time.sleep(1.0)
            refused, _ = peer.diag_value("map.refused", "matcha_node")
            check(len(poses) == n0 and refused is not None and int(refused) >= 1,
                  f"hint: with /initialpose 20 m away no fix is published ({len(poses) - n0}) and the attempts are "
                  f"refused (map.refused={refused})")
        finally:
            check(node.stop() == 0, "hint: node exits cleanly")
        read_only_map(a, peer, seq, frames, path)
    finally:
        peer.close()
        rclpy.shutdown()
    print(f"{len(FAILURES)} failure(s)" + ("" if not FAILURES else ":\n  " + "\n  ".join(FAILURES)))
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
