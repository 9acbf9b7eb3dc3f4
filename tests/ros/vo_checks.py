"""Checks the two odometry tests (stereo and monocular, ``tests/ros/*_odometry_test.py``) make alike, each a phase
played on the running node after its sequence: the camera held still, the camera blinded and back, and the
``set_pose`` / ``reset`` services. Each phase starts after the stamp ``t_next`` and returns the last stamp it
played, so the phases chain; ``images`` is the (left, right) pair played (``right`` unused by the monocular
node)."""

import numpy as np
from geometry_msgs.msg import Pose
from matcha_msgs.srv import SetPose
from std_srvs.srv import Trigger

from e2e_test import check
from vo_player import pose_T


def twist_max(odometry):
    """The largest |twist component| of these Odometry messages."""
    return max((abs(v) for m in odometry for v in (m.twist.twist.linear.x, m.twist.twist.linear.y,
                                                      m.twist.twist.linear.z, m.twist.twist.angular.x,
                                                      m.twist.twist.angular.y, m.twist.twist.angular.z)),
               default=0.0)


def still_camera(peer, player, images, t_next, rate, n, drift):
    """``images`` (left, right) ``n`` more times: every frame answered, zero twist, no new
    keyframe; ``drift(T0, T1, held)`` checks the pose held over the run (in the test's own units)."""
    left, right = images
    dt = 1.0 / rate
    k0 = peer.count(peer.odom)
    with peer.lock:
        kf0 = peer.status[-1].keyframes if peer.status else 0
    still = [(t_next + dt * (i + 1), left, right) for i in range(n)]
    player.play_at_rate(still, rate)
    got = peer.wait_count(peer.odom, k0 + n, 20.0) - k0
    check(got == n, f"still: {got} of {n} frames answered")
    with peer.lock:
        held = list(peer.odom)[k0:]
        st = list(peer.status)
    if len(held) >= 2:
        T0, T1 = pose_T(held[0].pose.pose), pose_T(held[-1].pose.pose)
        drift(T0, T1, held)
        tw = twist_max(held[1:])
        check(tw == 0.0, f"still: zero twist (max |component| {tw:.2e})")
        check(st[-1].keyframes == kf0, f"still: no new keyframes ({kf0} -> {st[-1].keyframes})")
    return still[-1][0], held, st


def blinded_camera(peer, player, images, t_next, rate):
    """8 black frames, then 15 of ``images`` (left, right) again: every frame answered, the black ones with the lost covariance,
    the state 'lost' reported and counted, tracking again at the end. Returns (last stamp, the Odometry after
    the black frames began, the statuses)."""
    left, right = images
    dt = 1.0 / rate
    k0 = peer.count(peer.odom)
    black = np.zeros_like(left)
    lost = [(t_next + dt * (i + 1), black, black) for i in range(8)]
    back = [(lost[-1][0] + dt * (i + 1), left, right) for i in range(15)]
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
    return back[-1][0], after, st


def pose_services(peer, player, images, t_next, rate):
    """``set_pose`` moves the next pose there, a zero quaternion is refused, ``reset`` makes the next pose the
    identity and is counted in the diagnostics. Returns the last stamp played."""
    left, right = images
    dt = 1.0 / rate
    req = SetPose.Request()
    req.pose = Pose()
    req.pose.position.x, req.pose.position.y = 1.0, -2.0
    req.pose.orientation.w = 1.0
    resp = peer.call(peer.set_pose, req)
    check(resp is not None and resp.success, f"services: set_pose accepted ({resp and resp.message})")
    k0 = peer.count(peer.odom)
    player.play(t_next + dt, left, right)
    if peer.wait_count(peer.odom, k0 + 1, 10.0) > k0:
        p = peer.odom[k0].pose.pose.position
        check(abs(p.x - 1.0) < 0.01 and abs(p.y + 2.0) < 0.01, f"services: pose after set_pose ({p.x:.3f}, {p.y:.3f})")
    bad = SetPose.Request()
    bad.pose = Pose()
    bad.pose.orientation.w = 0.0
    resp = peer.call(peer.set_pose, bad)
    check(resp is not None and not resp.success, f"services: zero quaternion refused ({resp and resp.message})")
    resp = peer.call(peer.reset, Trigger.Request())
    check(resp is not None and resp.success, f"services: reset accepted ({resp and resp.message})")
    k0 = peer.count(peer.odom)
    player.play(t_next + 2 * dt, left, right)
    if peer.wait_count(peer.odom, k0 + 1, 10.0) > k0:
        T = pose_T(peer.odom[k0].pose.pose)
        check(np.allclose(T, np.eye(4), atol=1e-9), "services: the pose after reset is the identity")
    resets, _ = peer.diag_value("resets", "matcha_node")
    check(resets == "1", f"services: reset counted (diagnostics resets={resets})")
    return t_next + 2 * dt


