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

import os
import sys

import numpy as np
import rclpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import node_test_args  # noqa: E402
from e2e_test import FAILURES, check  # noqa: E402
from vo_checks import blinded_camera, pose_services, still_camera  # noqa: E402
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
    ap = node_test_args(sequence=True)
    ap.add_argument("--max-frames", type=int, default=150)
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

    def drift(T0, T1, held):
        # one unknown scale: the drift as a share of the path walked in the run's units
        if path_units > 0:
            moved = float(np.linalg.norm(T1[:3, 3] - T0[:3, 3])) / path_units
            turned = rot_deg(T0[:3, :3].T @ T1[:3, :3])
            check(moved < 1e-3 and turned < 0.01,
                  f"still: drift {100 * moved:.4f}% of the path, {turned:.4f} deg over {len(held)} frames")

    t_next, _, _ = still_camera(peer, player, (l_last, r_last), t_last, rate, 45, drift)
    # ---------------------------------------------------------------- tracking loss
    t_next, _, _ = blinded_camera(peer, player, (l_last, r_last), t_next, rate)
    # ---------------------------------------------------------------- services
    pose_services(peer, player, (l_last, r_last), t_next, rate)
    check(node.alive(), "monocular: node still running")
    if FAILURES:
        print(node.log_tail())


if __name__ == "__main__":
    main()
