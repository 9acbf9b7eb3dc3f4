"""Demo player for matcha_node: publishes a real image sequence with known intrinsics at a fixed rate and prints
the published relative poses against ground truth (run inside scripts/lib/ros_netns.sh; see scripts/demo.sh ros).

The sequence is the room textured with real photographs of tests/ros/scene.py (exact ground-truth camera poses,
640x480, fx = fy = 500). Frames are rendered once and cached in $MATCHA_CACHE/ros-frames (keyed by the hash of
scene.py, the photos and the frame count). With --node, the player starts matcha_node itself (odometry mode with
node.odometry_correspondences, namespace --ns) and stops it at the end; without, it plays to a node that is already running in --ns.

For every frame the node answers, it prints the keyframe it was matched against, the inliers, and the rotation
and translation-direction errors of the published geometry_msgs/PoseWithCovarianceStamped (relative_pose: pose
of the newer camera in the keyframe's optical frame) against ground truth, then a summary line. Exit status 0
when at least --min-answered of the frames after the first got a pose and every pose is within --rot-tol /
--dir-tol degrees; 1 otherwise.

    python3 tests/ros/pair_player.py --node target/release/matcha_node --params config/matcha.yaml --engines DIR
"""

import argparse
import os
import sys
import time

import numpy as np
import rclpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scene  # noqa: E402
from e2e_test import NodeProc, Peer, camera_info, image_msg, ns_of, pose_errors, publish_until  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--node", help="matcha_node binary to start (omit to play to a running node)")
    ap.add_argument("--params", default=os.path.join(os.path.dirname(__file__), "..", "..", "config", "matcha.yaml"))
    ap.add_argument("--engines", default=os.path.join(
        os.environ.get("MATCHA_CACHE", os.path.expanduser("~/.cache/matcha")), "engines"))
    ap.add_argument("--ns", default="/demo", help="namespace of the node (topics <ns>/image, <ns>/camera_info)")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--rate", type=float, default=4.0, help="publishing rate, Hz")
    ap.add_argument("--rot-tol", type=float, default=2.0, help="rotation error tolerance, degrees")
    ap.add_argument("--dir-tol", type=float, default=8.0, help="translation direction error tolerance, degrees")
    ap.add_argument("--min-answered", type=float, default=0.5, help="fraction of frames that must get a pose")
    ap.add_argument("--log", default="/tmp/matcha-demo/node.log")
    a = ap.parse_args()

    poses = scene.trajectory(a.frames)
    frames = scene.cached_render(poses, "demo")
    rclpy.init()
    node = None
    if a.node:
        os.makedirs(os.path.dirname(a.log), exist_ok=True)
        node = NodeProc(a.node, a.ns, ["--params-file", a.params, "-p", f"runtime.engines_dir:={a.engines}",
                                       "-p", "node.mode:=odometry", "-p", "node.odometry_correspondences:=true"],
                            a.log)
    peer = Peer(a.ns)
    img_t, info_t = f"{a.ns}/image", f"{a.ns}/camera_info"
    pi, pc = peer.pub(Image, img_t), peer.pub(CameraInfo, info_t)
    ok = False
    try:
        if not peer.wait_matched([img_t, info_t], timeout=30, node=node):
            print(f"FAIL: no matcha_node subscribed to {img_t} within 30 s")
            if node:
                print(node.log_tail())
            return 1
        t0 = 1_700_000_000_000_000_000
        period = 1.0 / a.rate
        stamps = [t0 + int(i * period * 1e9) for i in range(len(frames))]
        # the first frame is repeated until the node has it (first best-effort samples after discovery may be lost)
        if not publish_until(pc, pi, camera_info(stamps[0]), image_msg(frames[0], stamps[0]),
                             lambda t: peer.wait_for(peer.odom, lambda m: ns_of(m.header.stamp) == stamps[0], t)):
            print("FAIL: the node did not take the first frame\n" + (node.log_tail() if node else ""))
            return 1
        print(f"playing {len(frames)} frames 640x480 at {a.rate:g} Hz on {img_t} (fx=fy={scene.FX:g})", flush=True)
        start = time.monotonic()
        for i, (f, s) in list(enumerate(zip(frames, stamps)))[1:]:
            delay = start + (i - 1) * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pc.publish(camera_info(s))
            pi.publish(image_msg(f, s))
        # the last frames' answers: wait until the node has answered the last frame (or 10 s)
        peer.wait_for(peer.corr, lambda m: ns_of(m.header.stamp) == stamps[-1], timeout=10)
        time.sleep(0.3)
        with peer.lock:
            corr = {ns_of(m.header.stamp): m for m in peer.corr}
            rel = {ns_of(m.header.stamp): m for m in peer.poses}
            odom = {ns_of(m.header.stamp): m for m in peer.odom}
        print(f"{'frame':>5} {'keyframe':>8} {'kf id':>5} {'matches':>7} {'inliers':>7} {'rot err':>8} "
              f"{'dir err':>8} {'parallax':>8}  t (unit, keyframe optical frame)   t ground truth (unit)")
        rot_errs, dir_errs = [], []
        for i, s in enumerate(stamps):
            c = corr.get(s)
            if i == 0:
                print(f"{0:>5} {'-':>8} {'-':>5}  first frame: keyframe"
                      + (" (odometry initialised)" if s in odom else ""))
                continue
            if c is None:
                print(f"{i:>5}  dropped (latest frame wins) or no answer")
                continue
            ref_s = ns_of(c.reference_stamp)
            ref = stamps.index(ref_s) if ref_s in stamps else None
            p = rel.get(s)
            if ref is None or not c.pose_valid or p is None:
                print(f"{i:>5} {str(ref):>8} {c.keyframe_id:>5} {len(c.scores):>7} {c.num_inliers:>7}  no pose: "
                      f"{c.pose_status}")
                continue
            gt_R, gt_p = scene.relative(poses[ref], poses[i])
            er, et, t = pose_errors(p.pose.pose, gt_R, gt_p)
            rot_errs.append(er)
            dir_errs.append(et)
            g = gt_p / np.linalg.norm(gt_p)
            print(f"{i:>5} {ref:>8} {c.keyframe_id:>5} {len(c.scores):>7} {c.num_inliers:>7} {er:>7.2f}° "
                  f"{et:>7.2f}° {c.median_parallax_deg:>7.2f}°  [{t[0]:+.3f} {t[1]:+.3f} {t[2]:+.3f}]"
                  f"          [{g[0]:+.3f} {g[1]:+.3f} {g[2]:+.3f}]", flush=True)
        n = len(frames) - 1
        answered = len(rot_errs)
        within = sum(1 for er, et in zip(rot_errs, dir_errs) if er < a.rot_tol and et < a.dir_tol)
        ok = answered >= a.min_answered * n and within == answered
        if rot_errs:
            print(f"summary: {answered}/{n} frames with a pose ({n - answered} dropped or without pose); rotation "
                  f"error median {np.median(rot_errs):.2f}° max {max(rot_errs):.2f}°; translation direction error "
                  f"median {np.median(dir_errs):.2f}° max {max(dir_errs):.2f}°; {within}/{answered} within "
                  f"{a.rot_tol:g}° / {a.dir_tol:g}° -> {'PASS' if ok else 'FAIL'}")
        else:
            print(f"summary: 0/{n} frames with a pose -> FAIL")
            if node:
                print(node.log_tail())
    finally:
        rc = node.stop() if node else 0
        peer.close()
        rclpy.shutdown()
    if rc != 0:
        print(f"FAIL: matcha_node exited with status {rc} (log: {a.log})")
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
