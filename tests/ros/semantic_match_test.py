"""End-to-end test of the `match` service's mode field against a real rclpy peer (run inside
scripts/lib/ros_netns.sh; see scripts/test.sh --ros-only).

  semantic   a node configured with MATCHA (`engine.extractor: matcha`) and the random-initialised tiny
             engines exported with `tools/export_matcha.py --mode semantic` answers `mode: "semantic"`: one
             correspondence per keypoint of image a, the cycle-consistent ones marked as inliers, no pose, the
             matcher named semantic-argmax. The plumbing only: the numbers mean nothing without the real weights;
  refused    an unknown mode is refused with the modes there are; a node with the default XFeat configuration
             refuses `semantic` with the setting to change, and still answers `geometric` with a pose.

Usage: python3 tests/ros/semantic_match_test.py --node target/release/matcha_node [--params config/matcha.yaml]
       [--engines DIR] [--semantic-engines $MATCHA_CACHE/matcha-fixtures/tiny-semantic]
"""

import os
import sys
import time

import rclpy
from matcha_msgs.srv import Match

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import CACHE, node_test_args  # noqa: E402
import scene  # noqa: E402
from e2e_test import FAILURES, NodeProc, Peer, camera_info, check, image_msg  # noqa: E402


def request(frames, mode):
    t0 = 1_700_005_000_000_000_000
    req = Match.Request()
    req.image_a = image_msg(frames[0], t0, "cam_a")
    req.image_b = image_msg(frames[2], t0 + 1, "cam_b")
    req.camera_info_a = camera_info(t0, "cam_a")
    req.camera_info_b = camera_info(t0, "cam_b")
    req.mode = mode
    return req


def call(cli, req, timeout=120.0):
    fut = cli.call_async(req)
    t_end = time.time() + timeout
    while not fut.done() and time.time() < t_end:
        time.sleep(0.05)
    return fut.result() if fut.done() else None


def serve(a, ns, extra, log):
    node = NodeProc(a.node, ns, a.common + ["-p", "node.mode:=stereo"] + extra, os.path.join(a.logs, log))
    peer = Peer(ns)
    cli = peer.node.create_client(Match, f"{ns}/match")
    return node, peer, cli


def main():
    ap = node_test_args()
    ap.add_argument("--semantic-engines", default=os.path.join(CACHE, "matcha-fixtures", "tiny-semantic"))
    a = ap.parse_args()
    os.makedirs(a.logs, exist_ok=True)
    a.common = ["--params-file", a.params, "-p", f"runtime.engines_dir:={a.engines}"]
    frames = list(scene.cached_render(scene.trajectory(6), "e2e"))
    rclpy.init()
    # MATCHA with the semantic engines
    node, peer, cli = serve(a, "/sem", ["-p", "engine.extractor:=matcha",
                                        "-p", f"engine.matcha.engines_dir:={a.semantic_engines}"], "node_semantic.log")
    try:
        if check(cli.wait_for_service(timeout_sec=30), "semantic: match service available"):
            res = call(cli, request(frames, "semantic"))
            ok = res is not None and res.success
            if check(ok, f"semantic: answered ({res.message if res else 'timeout'})"):
                c = res.correspondences
                n = len(c.scores)
                check(n > 0 and len(c.points_a) == 2 * n and len(c.points_b) == 2 * n and len(c.inliers) == n,
                      f"semantic: {n} correspondences for {c.num_keypoints_a} keypoints of image a, arrays consistent")
                check(c.num_inliers == sum(c.inliers) and not c.pose_valid and "semantic" in c.pose_status,
                      f"semantic: {c.num_inliers} cycle-consistent marked as inliers, no pose ({c.pose_status[:60]})")
                check(c.matcher == "semantic-argmax" and c.reference_frame_id == "cam_a",
                      f"semantic: matcher {c.matcher}, descriptor {c.descriptor}, reference {c.reference_frame_id}")
            res = call(cli, request(frames, "sideways"))
            check(res is not None and not res.success and "semantic" in res.message,
                  f"refused: an unknown mode ({res.message if res else 'timeout'})")
        check(node.alive(), "semantic: node running")
    finally:
        node.stop()
        peer.close()
    # the default XFeat configuration: semantic refused with the setting, geometric answered
    node, peer, cli = serve(a, "/geo", [], "node_semantic_refused.log")
    try:
        if check(cli.wait_for_service(timeout_sec=30), "refused: match service available"):
            res = call(cli, request(frames, "semantic"))
            check(res is not None and not res.success and "engine.extractor" in res.message,
                  f"refused: semantic mode without MATCHA names the setting ({res.message[:120] if res else 'timeout'})")
            res = call(cli, request(frames, "geometric"))
            check(res is not None and res.success and res.correspondences.pose_valid,
                  f"refused: geometric mode still answers with a pose ({res.message if res else 'timeout'})")
    finally:
        node.stop()
        peer.close()
    rclpy.shutdown()
    print(f"{len(FAILURES)} failure(s)" + ("" if not FAILURES else ":\n  " + "\n  ".join(FAILURES)))
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
