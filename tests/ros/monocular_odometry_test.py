"""End-to-end test of matcha_node's monocular `odometry` mode (the default launch mode) against a real rclpy
peer (run inside scripts/lib/ros_netns.sh; see scripts/test.sh --ros-only).

The peer plays the left images of a rendered sequence with exact ground truth (tools/vo_sequences.py, default
vo_short: 10 s at 15 Hz, 640x480) at its camera rate with their CameraInfo, and latches the camera's mounting
on /tf_static (base_link -> left optical frame, with a lever arm). It checks:
  rate       an answer (nav_msgs/Odometry + OdometryStatus + TF) for every frame played, with the default
             configuration: the network runs only for the odometry's keyframes, and no correspondences are
             published (node.odometry_correspondences is off);
  frames     Odometry odom -> base_link, TF odom -> base_link equal to it; odometry/camera = odom->base_link .
             the mounting's rotation (a monocular run has no metric unit, so the lever arm is not applied);
  accuracy   the camera poses against ground truth after Sim(3) alignment (one unknown scale for the run):
             ATE as a share of the path and rotation RMSE (bounds a little above `matcha vo --monocular`);
  still      the last frame repeated: every frame answered, the pose moves less than 0.1% of the path, zero
             twist, no new keyframes;
  loss       black frames: state lost, covariance inflated; the scene again: tracking again, loss counted;
  services   odometry/set_pose moves the next pose to the given one; odometry/reset makes the next pose the
             identity and is counted.

Usage: python3 tests/ros/monocular_odometry_test.py --node target/release/matcha_node --params config/matcha.yaml
       --engines DIR [--sequence $MATCHA_CACHE/vo/vo_short]
"""

import argparse
import os
import sys

import numpy as np
import rclpy
from geometry_msgs.msg import Pose
from matcha_msgs.srv import SetPose
from std_srvs.srv import Trigger

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_test import FAILURES, check  # noqa: E402
from vo_player import (MOUNT, NS, VoPeer, latch_mounting, load_sequence, play_sequence, diagnostics_line,  # noqa: E402
                       pose_T, poses_of, rot_deg, start_node, summary, wait_ready)


def align_sim3(est, gt):
    """Umeyama: s, R, t minimising |s R est + t - gt|."""
    me, mg = est.mean(0), gt.mean(0)
    e, g = est - me, gt - mg
    U, D, Vt = np.linalg.svd(g.T @ e / len(est))
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1
    R = U @ S @ Vt
    s = float(np.trace(np.diag(D) @ S) / max(np.mean(np.sum(e * e, 1)), 1e-18))
    return s, R, mg - s * R @ me


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--node", required=True)
    ap.add_argument("--params", default=os.path.join(os.path.dirname(__file__), "..", "..", "config", "matcha.yaml"))
    cache = os.environ.get("MATCHA_CACHE", os.path.expanduser("~/.cache/matcha"))
    ap.add_argument("--engines", default=os.path.join(cache, "engines"))
    ap.add_argument("--sequence", default=os.path.join(cache, "vo", "vo_short"))
    ap.add_argument("--max-frames", type=int, default=150)
    ap.add_argument("--logs", default="/tmp/matcha-ros-test")
    ap.add_argument("--max-ate-percent", type=float, default=0.5)
    ap.add_argument("--max-rot-deg", type=float, default=1.0)
    a = ap.parse_args()
    os.makedirs(a.logs, exist_ok=True)
    seq, frames = load_sequence(a.sequence, a.max_frames)
    rclpy.init()
    peer = VoPeer(NS)
    latch_mounting(peer)
    node = start_node(a, a.logs, "odometry")
    try:
        run(a, peer, node, seq, frames, seq["rate_hz"])
    finally:
        code = node.stop()
        check(code == 0, f"monocular: node exits cleanly on SIGINT (code {code})")
        peer.close()
        rclpy.shutdown()
    print(f"{len(FAILURES)} failure(s)" + ("" if not FAILURES else ":\n  " + "\n  ".join(FAILURES)))
    sys.exit(1 if FAILURES else 0)


def run(a, peer, node, seq, frames, rate):
    if not check(wait_ready(peer, node, monocular=True), "monocular: node subscribed, pipeline ready"):
        print(node.log_tail())
        return
    # ---------------------------------------------------------------- the sequence at its camera rate
    odom, status, wall, player = play_sequence(peer, node, seq, frames, monocular=True)
    n = len(frames)
    print(summary(seq, frames, odom, status, wall, 1.0))
    if not check(len(odom) == n, f"rate: {len(odom)} of {n} frames answered at {rate:.0f} Hz ({wall:.1f} s)"):
        print(f"rate: {diagnostics_line(peer)}")
    if not odom:
        print(node.log_tail())
        return
    with peer.lock:
        corr = len(peer.corr)
        tfs = list(peer.tf)
    check(corr == 0, f"rate: no correspondences published by default ({corr})")
    by_flow = sum(s.by_flow for s in status)
    check(by_flow >= n // 2, f"rate: {by_flow} of {n} frames answered by landmark tracking alone")
    # ---------------------------------------------------------------- frames
    check(all(m.header.frame_id == "odom" and m.child_frame_id == "base_link" for m in odom),
          "frames: Odometry odom -> base_link")
    tf_by_stamp = {(t.header.stamp.sec, t.header.stamp.nanosec): t.transform for m in tfs for t in m.transforms
                   if t.header.frame_id == "odom" and t.child_frame_id == "base_link"}
    same_tf = sum(1 for m in odom
                  if (tr := tf_by_stamp.get((m.header.stamp.sec, m.header.stamp.nanosec))) is not None
                  and abs(tr.translation.x - m.pose.pose.position.x) < 1e-9
                  and abs(tr.rotation.w - m.pose.pose.orientation.w) < 1e-9)
    check(same_tf == len(odom), f"frames: TF odom -> base_link with every pose ({same_tf} of {len(odom)})")
    cam = peer.last_camera_odom
    rot_only = np.eye(4)
    rot_only[:3, :3] = MOUNT[:3, :3]
    via_base = {round(t, 6): pose_T(m.pose.pose) @ rot_only
                for t, m in ((m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec, m) for m in odom)}
    worst = max((float(np.abs(T - via_base.get(round(t, 6), np.full((4, 4), np.inf))).max())
                 for t, T in poses_of(cam)), default=float("inf"))
    check(len(cam) == len(odom) and worst < 1e-6,
          f"frames: odometry/camera ({len(cam)}) = odom->base_link . the mounting's rotation (max difference {worst:.1e})")
    check(len(status) >= len(odom), f"status: {len(status)} OdometryStatus for {len(odom)} poses")
    # ---------------------------------------------------------------- accuracy (Sim(3): one unknown scale)
    gt_by_ns = {int(round(t * 1e9)): g for t, _, _, g in frames}
    initializing = {(s.header.stamp.sec, s.header.stamp.nanosec) for s in status if s.state == "initializing"}
    est, ref = [], []
    for m, (t, T) in zip(cam, poses_of(cam)):
        g = gt_by_ns.get(int(round(t * 1e9)))
        if g is not None and (m.header.stamp.sec, m.header.stamp.nanosec) not in initializing:
            est.append(T)
            ref.append(g)
    path_units = 0.0
    if check(len(est) >= 0.7 * n, f"accuracy: {len(est)} of {n} frames posed (the rest initializing)"):
        P = np.array([T[:3, 3] for T in est])
        G = np.array([T[:3, 3] for T in ref])
        s, R, t = align_sim3(P, G)
        ate = float(np.sqrt(np.mean(np.sum((s * P @ R.T + t - G) ** 2, axis=1))))
        path = float(np.sum(np.linalg.norm(np.diff(G, axis=0), axis=1)))
        path_units = float(np.sum(np.linalg.norm(np.diff(P, axis=0), axis=1)))
        rots = [rot_deg(g[:3, :3].T @ R @ e[:3, :3]) for e, g in zip(est, ref)]
        rot_rmse = float(np.sqrt(np.mean(np.square(rots))))
        print(f"accuracy: ATE {ate * 100:.2f} cm over a {path:.2f} m path = {100 * ate / path:.3f}% after Sim(3) "
              f"(scale {s:.3f}), rotation RMSE {rot_rmse:.3f} deg")
        check(100 * ate / path <= a.max_ate_percent, f"accuracy: ATE {100 * ate / path:.3f}% <= {a.max_ate_percent}%")
        check(rot_rmse <= a.max_rot_deg, f"accuracy: rotation RMSE {rot_rmse:.3f} <= {a.max_rot_deg} deg")
    # ---------------------------------------------------------------- still camera
    t_last, l_last, r_last, _ = frames[-1]
    dt = 1.0 / rate
    k0 = peer.count(peer.odom)
    kf0 = status[-1].keyframes if status else 0
    still = [(t_last + dt * (i + 1), l_last, r_last) for i in range(45)]
    player.play_at_rate(still, rate)
    got = peer.wait_count(peer.odom, k0 + len(still), 20.0) - k0
    check(got == len(still), f"still: {got} of {len(still)} frames answered")
    with peer.lock:
        held = list(peer.odom)[k0:]
        st = list(peer.status)
    if len(held) >= 2 and path_units > 0:
        T0, T1 = pose_T(held[0].pose.pose), pose_T(held[-1].pose.pose)
        moved = float(np.linalg.norm(T1[:3, 3] - T0[:3, 3])) / path_units
        turned = rot_deg(T0[:3, :3].T @ T1[:3, :3])
        check(moved < 1e-3 and turned < 0.01,
              f"still: drift {100 * moved:.4f}% of the path, {turned:.4f} deg over {len(held)} frames")
        tw = [abs(v) for m in held[1:] for v in (m.twist.twist.linear.x, m.twist.twist.linear.y,
                                                 m.twist.twist.linear.z, m.twist.twist.angular.x,
                                                 m.twist.twist.angular.y, m.twist.twist.angular.z)]
        check(max(tw) == 0.0, f"still: zero twist (max |component| {max(tw):.2e})")
        check(st[-1].keyframes == kf0, f"still: no new keyframes ({kf0} -> {st[-1].keyframes})")
    # ---------------------------------------------------------------- tracking loss
    k0 = peer.count(peer.odom)
    black = np.zeros_like(l_last)
    t_next = still[-1][0]
    lost = [(t_next + dt * (i + 1), black, black) for i in range(8)]
    back = [(lost[-1][0] + dt * (i + 1), l_last, r_last) for i in range(15)]
    player.play_at_rate(lost + back, rate)
    got = peer.wait_count(peer.odom, k0 + len(lost) + len(back), 20.0) - k0
    with peer.lock:
        after = list(peer.odom)[k0:]
        st = list(peer.status)
    check(got == len(lost) + len(back), f"loss: {got} of {len(lost) + len(back)} frames answered")
    inflated = [m for m in after[:len(lost)] if m.pose.covariance[0] >= 9999.0]
    check(len(inflated) >= len(lost) - 1, f"loss: covariance inflated on {len(inflated)} of {len(lost)} black frames")
    check(any(s.state == "lost" for s in st), "loss: state 'lost' reported")
    check(bool(st) and st[-1].losses >= 1, f"loss: counted (losses {st[-1].losses if st else None})")
    check(bool(st) and st[-1].state in ("tracking", "recovered"),
          f"loss: tracking again on the scene (state {st[-1].state if st else None})")
    # ---------------------------------------------------------------- services
    t_next = back[-1][0]
    req = SetPose.Request()
    req.pose = Pose()
    req.pose.position.x, req.pose.position.y = 1.0, -2.0
    req.pose.orientation.w = 1.0
    resp = peer.call(peer.set_pose, req)
    check(resp is not None and resp.success, f"services: set_pose accepted ({resp and resp.message})")
    k0 = peer.count(peer.odom)
    player.play(t_next + dt, l_last, r_last)
    if peer.wait_count(peer.odom, k0 + 1, 10.0) > k0:
        p = peer.odom[k0].pose.pose.position
        check(abs(p.x - 1.0) < 0.01 and abs(p.y + 2.0) < 0.01, f"services: pose after set_pose ({p.x:.3f}, {p.y:.3f})")
    resp = peer.call(peer.reset, Trigger.Request())
    check(resp is not None and resp.success, f"services: reset accepted ({resp and resp.message})")
    k0 = peer.count(peer.odom)
    player.play(t_next + 2 * dt, l_last, r_last)
    if peer.wait_count(peer.odom, k0 + 1, 10.0) > k0:
        T = pose_T(peer.odom[k0].pose.pose)
        check(np.allclose(T, np.eye(4), atol=1e-9), "services: the pose after reset is the identity")
    resets, _ = peer.diag_value("resets", "matcha_node")
    check(resets == "1", f"services: reset counted (diagnostics resets={resets})")
    check(node.alive(), "monocular: node still running")
    if FAILURES:
        print(node.log_tail())


if __name__ == "__main__":
    main()
