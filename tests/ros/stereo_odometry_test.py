"""End-to-end test of matcha_node's stereo_odometry mode against a real rclpy peer (run inside
scripts/lib/ros_netns.sh; see scripts/test.sh --ros-only).

The peer plays a rendered stereo sequence with exact ground truth (tools/vo_sequences.py, default vo_short:
10 s at 15 Hz, 640x480) at its camera rate: left and right sensor_msgs/Image with identical stamps and their
CameraInfos (rectified rig: baseline in the right P), and latches the camera's mounting on /tf_static
(base_link -> left optical frame, tf2_msgs/TFMessage; on the PyPI path the stand-in package with tf2's
identical definition). It checks:
  rate       an answer (nav_msgs/Odometry + matcha_msgs/OdometryStatus + TF) for every frame played;
  frames     Odometry header.frame_id = odom, child_frame_id = base_link; TF odom -> base_link equal to it;
             the mounting taken from /tf_static (diagnostics mounting_source);
  accuracy   the camera poses (odom->base . mounting) against ground truth after SE(3) alignment: ATE RMSE as
             a share of the path length and rotation RMSE (printed; bounds a little above what `matcha vo`
             reaches offline on the same frames, so a regression in the node's glue shows);
  still      the last frame repeated with new stamps (no motion): every frame answered, the pose moves less
             than 1 mm / 0.01 deg, zero twist, no new keyframes;
  loss       black frames: state lost with the covariance inflated (>= 9999), the pose held; the scene again:
             tracking recovered, the pose within 2 cm of where it was (odom continuous), loss and recovery
             counted;
  bursts     frames two at a time 5 ms apart, then a pause (a player faster than real time): none dropped;
  faults     a new CameraInfo mid-stream (tracking restarts, pose held, counted); an image whose size differs
             from its CameraInfo (refused, counted, the next frame answered);
  services   odometry/set_pose moves the next pose to the given one; a zero quaternion is refused;
             odometry/reset makes the next pose the identity and is counted.

Usage: python3 tests/ros/stereo_odometry_test.py --node target/release/matcha_node --params config/matcha.yaml
       --engines DIR [--sequence $MATCHA_CACHE/vo/vo_short]
"""

import os
import sys
import time

import numpy as np
import rclpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import node_test_args  # noqa: E402
from e2e_test import FAILURES, check  # noqa: E402
from vo_checks import blinded_camera, pose_services, still_camera  # noqa: E402
from vo_player import (NS, VoPeer, align_se3, camera_poses, latch_mounting, load_sequence, play_sequence,  # noqa: E402
                       diagnostics_line, pose_T, poses_of, rot_deg, start_node, summary, wait_ready)


def main():
    ap = node_test_args(sequence=True)
    ap.add_argument("--max-frames", type=int, default=150)
    ap.add_argument("--max-ate-percent", type=float, default=0.5)
    ap.add_argument("--max-rot-deg", type=float, default=0.5)
    a = ap.parse_args()
    os.makedirs(a.logs, exist_ok=True)
    seq, frames = load_sequence(a.sequence, a.max_frames)
    rate = seq["rate_hz"]
    rclpy.init()
    peer = VoPeer(NS)
    latch_mounting(peer)
    node = start_node(a, a.logs)
    try:
        run(a, peer, node, seq, frames, rate)
    finally:
        code = node.stop()
        check(code == 0, f"node exits cleanly on SIGINT (code {code})")
        peer.close()
        rclpy.shutdown()
    print(f"{len(FAILURES)} failure(s)" + ("" if not FAILURES else ":\n  " + "\n  ".join(FAILURES)))
    sys.exit(1 if FAILURES else 0)


def run(a, peer, node, seq, frames, rate):
    if not check(wait_ready(peer, node), "node subscribed, pipeline ready"):
        print(node.log_tail())
        return
    # ---------------------------------------------------------------- the sequence at its camera rate
    odom, status, wall, player = play_sequence(peer, node, seq, frames)
    n = len(frames)
    print(summary(seq, frames, odom, status, wall, 1.0))
    if not check(len(odom) == n, f"rate: {len(odom)} of {n} frames answered at {rate:.0f} Hz ({wall:.1f} s)"):
        # which frames, and what the node says about them (a timing miss or a drop for a reason)
        answered = {round(m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec, 6) for m in odom}
        missed = [k for k, (t, *_) in enumerate(frames) if round(t, 6) not in answered]
        print(f"rate: frames not answered: {missed[:20]}; {diagnostics_line(peer)}")
    with peer.lock:
        tfs = list(peer.tf)
    if not odom:
        print(node.log_tail())
        return
    check(all(m.header.frame_id == "odom" and m.child_frame_id == "base_link" for m in odom),
          "frames: Odometry odom -> base_link")
    tf_by_stamp = {}
    for m in tfs:
        for t in m.transforms:
            if t.header.frame_id == "odom" and t.child_frame_id == "base_link":
                tf_by_stamp[(t.header.stamp.sec, t.header.stamp.nanosec)] = t.transform
    same_tf = 0
    for m in odom:
        tr = tf_by_stamp.get((m.header.stamp.sec, m.header.stamp.nanosec))
        if tr is not None and abs(tr.translation.x - m.pose.pose.position.x) < 1e-9 and \
                abs(tr.rotation.w - m.pose.pose.orientation.w) < 1e-9:
            same_tf += 1
    check(same_tf == len(odom), f"frames: TF odom -> base_link with every pose ({same_tf} of {len(odom)})")
    cam = peer.last_camera_odom
    check(len(cam) == len(odom) and all(m.child_frame_id == "svo_left_optical" for m in cam),
          f"frames: odometry/camera ({len(cam)}) with child = the left optical frame")
    via_base = {round(t, 6): T for t, T in camera_poses(odom)}
    worst = max((float(np.abs(T - via_base.get(round(t, 6), np.full((4, 4), np.inf))).max()) for t, T in poses_of(cam)),
                default=float("inf"))
    check(worst < 1e-6, f"frames: odometry/camera = odom->base_link . mounting (max difference {worst:.1e})")
    src, _ = peer.diag_value("mounting_source", "matcha_node")
    check(src == "tf_static", f"frames: mounting from /tf_static (diagnostics mounting_source={src})")
    check(len(status) >= len(odom), f"status: {len(status)} OdometryStatus for {len(odom)} poses")
    # accuracy: camera = odom->base . base->camera against ground truth
    gt_by_ns = {int(round(t * 1e9)): g for t, _, _, g in frames}
    est, ref = [], []
    for t, cam in camera_poses(odom):
        g = gt_by_ns.get(int(round(t * 1e9)))
        if g is not None:
            est.append(cam)
            ref.append(g)
    if check(len(est) >= 0.9 * n, f"accuracy: {len(est)} poses matched to ground truth"):
        P = np.array([T[:3, 3] for T in est])
        G = np.array([T[:3, 3] for T in ref])
        R, t = align_se3(P, G)
        ate = float(np.sqrt(np.mean(np.sum((P @ R.T + t - G) ** 2, axis=1))))
        path = float(np.sum(np.linalg.norm(np.diff(G, axis=0), axis=1)))
        rots = [rot_deg(g[:3, :3].T @ R @ e[:3, :3]) for e, g in zip(est, ref)]
        rot_rmse = float(np.sqrt(np.mean(np.square(rots))))
        print(f"accuracy: ATE {ate * 100:.2f} cm over a {path:.2f} m path = {100 * ate / path:.3f}%, "
              f"rotation RMSE {rot_rmse:.3f} deg")
        check(100 * ate / path <= a.max_ate_percent, f"accuracy: ATE {100 * ate / path:.3f}% <= {a.max_ate_percent}%")
        check(rot_rmse <= a.max_rot_deg, f"accuracy: rotation RMSE {rot_rmse:.3f} <= {a.max_rot_deg} deg")
    # ---------------------------------------------------------------- still camera
    t_last, l_last, r_last, _ = frames[-1]
    dt = 1.0 / rate

    def drift(T0, T1, held):
        moved_mm = 1000 * float(np.linalg.norm(T1[:3, 3] - T0[:3, 3]))
        turned = rot_deg(T0[:3, :3].T @ T1[:3, :3])
        check(moved_mm < 1.0 and turned < 0.01,
              f"still: drift {moved_mm:.3f} mm, {turned:.4f} deg over {len(held)} frames")

    t_next, held, st = still_camera(peer, player, (l_last, r_last), t_last, rate, 60, drift)
    check(sum(s.still for s in st[-len(held):]) >= len(held) - 2, "still: frames flagged still")
    # ---------------------------------------------------------------- bursts (a triggered camera, a fast player)
    # pairs of frames 5 ms apart, then a pause: the node keeps up on average, so no frame may be dropped
    k0 = peer.count(peer.odom)
    bursts = 0
    for i in range(12):
        for j in range(2):
            player.play(t_next + dt * (2 * i + j + 1), l_last, r_last)
            time.sleep(0.005)
        bursts += 2
        time.sleep(2.5 / rate)
    got = peer.wait_count(peer.odom, k0 + bursts, 20.0) - k0
    check(got == bursts, f"bursts: {got} of {bursts} frames answered (2 frames 5 ms apart, then a pause)")
    t_next += dt * bursts
    # ---------------------------------------------------------------- tracking loss and recovery
    before = pose_T(peer.odom[-1].pose.pose)
    t_next, after_odom, st = blinded_camera(peer, player, (l_last, r_last), t_next, rate)
    if after_odom:
        T_end = pose_T(after_odom[-1].pose.pose)
        jump_cm = 100 * float(np.linalg.norm(T_end[:3, 3] - before[:3, 3]))
        check(jump_cm < 2.0, f"loss: pose after recovery {jump_cm:.2f} cm from before the loss (odom continuous)")
        check(st[-1].losses >= 1 and (st[-1].recoveries + st[-1].restarts) >= 1,
              f"loss: counted (losses {st[-1].losses}, recoveries {st[-1].recoveries}, restarts {st[-1].restarts})")
    # ---------------------------------------------------------------- faults mid-stream
    # a new calibration (the baseline 0.5% longer): tracking restarts with the pose held, counted
    before = pose_T(peer.odom[-1].pose.pose)
    restarts0 = st[-1].restarts if st else 0
    k0 = peer.count(peer.odom)
    player.baseline_scale = 1.005
    changed = [(t_next + dt * (i + 1), l_last, r_last) for i in range(10)]
    player.play_at_rate(changed, rate)
    got = peer.wait_count(peer.odom, k0 + len(changed), 20.0) - k0
    with peer.lock:
        after = list(peer.odom)[k0:]
        st = list(peer.status)
    check(got == len(changed), f"faults: new CameraInfo mid-stream: {got} of {len(changed)} frames answered")
    if after:
        jump_mm = 1000 * float(np.linalg.norm(pose_T(after[-1].pose.pose)[:3, 3] - before[:3, 3]))
        check(jump_mm < 5.0, f"faults: new CameraInfo: pose continues ({jump_mm:.2f} mm from before)")
    check(bool(st) and st[-1].restarts == restarts0 + 1,
          f"faults: new CameraInfo: restart counted ({restarts0} -> {st[-1].restarts if st else None})")
    # an image of another size than its CameraInfo: refused and counted, the next good frame answered
    t_next = changed[-1][0]
    k0 = peer.count(peer.odom)
    h, w = l_last.shape[:2]
    player.play(t_next + dt, np.ascontiguousarray(l_last[: h // 2, : w // 2]),
                np.ascontiguousarray(r_last[: h // 2, : w // 2]))
    player.play(t_next + 2 * dt, l_last, r_last)
    got = peer.wait_count(peer.odom, k0 + 1, 10.0) - k0
    mism, _ = peer.diag_value("errors.camera_info_size_mismatch", "matcha_node")
    check(got == 1 and mism is not None and int(mism) >= 1,
          f"faults: image size != CameraInfo: refused (errors.camera_info_size_mismatch={mism}), next frame answered")
    t_next += 2 * dt
    # ---------------------------------------------------------------- services
    pose_services(peer, player, (l_last, r_last), t_next, rate)
    check(node.alive(), "node still running")
    if FAILURES:
        print(node.log_tail())


if __name__ == "__main__":
    main()
