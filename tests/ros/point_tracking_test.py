"""End-to-end test of matcha_node's point tracking (the `track` service and the `point_tracks` topic) against a
real rclpy peer (run inside scripts/lib/ros_netns.sh; see scripts/test.sh --ros-only).

The peer plays a tracking clip with exact ground truth (tools/track_clips.py: the 16-frame CI clip
track_short, 640x480, with moving occluders) to the node in its default `odometry` mode with
node.point_tracking.enabled, one frame at a time. On the first frame it asks the node to follow the clip's
queries of that frame, then checks:
  service    ids returned in order; refused with a message (and nothing started): a stamp that is not the
             newest image's, an odd number of coordinates, a point outside the image;
  topic      one PointTracks per later frame, with the image's stamp, the ids, positions, visibility,
             confidence;
  same       the positions and visibility equal what `matcha track` gives for the same queries on the same
             frames offline (the glue adds nothing);
  accuracy   share of the ground-truth-visible points within 8 px (printed; a floor well below what the CLI
             reaches on this clip, so that a broken glue shows);
  clear      `clear` with no points stops the tracking: no PointTracks for the next frame.

Usage: python3 tests/ros/point_tracking_test.py --node target/release/matcha_node --cli target/debug/matcha
       --params config/matcha.yaml --engines DIR --clip $MATCHA_CACHE/tracks-ci/track_short
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import rclpy
from PIL import Image as PILImage
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import CACHE, node_test_args  # noqa: E402
from e2e_test import FAILURES, NodeProc, Peer, camera_info, check, image_msg, ns_of, publish_until, stamp  # noqa: E402
from matcha_msgs.msg import PointTracks  # noqa: E402
from matcha_msgs.srv import Track  # noqa: E402

NS = "/ptrack"


def track_request(t_ns, points, clear=False):
    r = Track.Request()
    r.stamp = stamp(t_ns)
    r.points = [float(v) for p in points for v in p]
    r.clear = clear
    return r


def main():
    ap = node_test_args()
    ap.add_argument("--cli", required=True, help="the matcha CLI (the offline reference)")
    ap.add_argument("--clip", default=os.path.join(CACHE, "tracks-ci", "track_short"))
    ap.add_argument("--min-within-8px", type=float, default=0.5)
    a = ap.parse_args()
    os.makedirs(a.logs, exist_ok=True)
    names = sorted(os.listdir(os.path.join(a.clip, "frames")))
    frames = [np.asarray(PILImage.open(os.path.join(a.clip, "frames", n)).convert("RGB")) for n in names]
    with open(os.path.join(a.clip, "queries.json")) as f:
        every = json.load(f)
    first = [i for i, q in enumerate(every) if q["frame"] == 0]
    queries = [every[i] for i in first]
    with open(os.path.join(a.clip, "groundtruth.json")) as f:
        gt = json.load(f)
    # the offline reference: the same queries on the same frames through `matcha track`
    out = os.path.join(tempfile.mkdtemp(prefix="matcha-ptrack-"), "tracks.json")
    qfile = out.replace("tracks.json", "queries.json")
    with open(qfile, "w") as f:
        json.dump(queries, f)
    subprocess.run([a.cli, "track", "--config", a.params, "--frames", os.path.join(a.clip, "frames"),
                    "--queries", qfile, "--out", out], check=True, stdout=subprocess.DEVNULL)
    with open(out) as f:
        offline = json.load(f)["tracks"]

    rclpy.init()
    node = NodeProc(a.node, NS, ["--params-file", a.params, "-p", f"runtime.engines_dir:={a.engines}",
                                 "-p", "node.point_tracking.enabled:=true"],
                    os.path.join(a.logs, "node_point_tracking.log"))
    peer = Peer(NS)
    tracks = []
    rel = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
    peer.node.create_subscription(PointTracks, f"{NS}/point_tracks", peer._rec(tracks), rel)
    client = peer.node.create_client(Track, f"{NS}/track")
    img_t, info_t = f"{NS}/image", f"{NS}/camera_info"
    pi, pc = peer.pub(Image, img_t), peer.pub(CameraInfo, info_t)
    try:
        run(a, peer, node, client, tracks, frames, queries, first, gt, offline, pi, pc)
    finally:
        code = node.stop()
        check(code == 0, f"point tracking: node exits cleanly on SIGINT (code {code})")
        peer.close()
        rclpy.shutdown()
    print(f"{len(FAILURES)} failure(s)" + ("" if not FAILURES else ":\n  " + "\n  ".join(FAILURES)))
    sys.exit(1 if FAILURES else 0)


def run(a, peer, node, client, tracks, frames, queries, first, gt, offline, pi, pc):
    if not check(peer.wait_matched([f"{NS}/image", f"{NS}/camera_info"], node=node), "point tracking: node subscribed"):
        print(node.log_tail())
        return
    t0 = 1_700_000_500_000_000_000
    dt = 200_000_000
    stamps = [t0 + k * dt for k in range(len(frames))]
    ok = publish_until(pc, pi, camera_info(stamps[0]), image_msg(frames[0], stamps[0]),
                       lambda t: peer.wait_for(peer.odom, lambda m: ns_of(m.header.stamp) == stamps[0], t))
    if not check(ok, "point tracking: frame 0 answered"):
        print(node.log_tail())
        return
    # ---------------------------------------------------------------- refusals first: nothing may start
    pts = [[q["x"], q["y"]] for q in queries]
    r = peer.call(client, track_request(stamps[0] - dt, pts))
    check(r is not None and not r.success and "newest" in r.message,
          f"service: a stamp other than the newest image's refused ({r and r.message})")
    bad = track_request(stamps[0], pts)
    bad.points = bad.points[:-1]
    r = peer.call(client, bad)
    check(r is not None and not r.success and "pairs" in r.message, f"service: odd length refused ({r and r.message})")
    r = peer.call(client, track_request(stamps[0], pts + [[5000.0, 10.0]]))
    check(r is not None and not r.success and "outside" in r.message,
          f"service: a point outside the image refuses the request ({r and r.message})")
    r = peer.call(client, track_request(stamps[0], pts))
    if not check(r is not None and r.success and list(r.ids) == list(range(len(pts))),
                 f"service: {len(pts)} points started, ids 0..{len(pts) - 1} ({r and (r.message, list(r.ids)[:5])})"):
        print(node.log_tail())
        return
    # ---------------------------------------------------------------- the clip, one frame at a time
    got = {}
    for k in range(1, len(frames)):
        pc.publish(camera_info(stamps[k]))
        pi.publish(image_msg(frames[k], stamps[k]))
        m = peer.wait_for(tracks, lambda m, s=stamps[k]: ns_of(m.header.stamp) == s, timeout=30)
        if m is not None:
            got[k] = m
    check(len(got) == len(frames) - 1, f"topic: PointTracks for {len(got)} of {len(frames) - 1} frames")
    if not got:
        print(node.log_tail())
        return
    m = got[max(got)]
    n = len(pts)
    check(list(m.ids) == list(range(n)) and len(m.points) == 2 * n and len(m.visible) == n and len(m.confidence) == n,
          f"topic: ids, {len(m.points)} coordinates, visibility and confidence for {n} points")
    lat = [g.latency_ms for g in got.values()]
    print(f"topic: latency receipt -> publish median {np.median(lat):.1f} ms, max {max(lat):.1f} ms")
    # ---------------------------------------------------------------- same as offline
    worst, agree, total = 0.0, 0, 0
    for k, g in got.items():
        p = np.array(g.points).reshape(-1, 2)
        for i in range(n):
            ref = offline[i]["points"][k]
            worst = max(worst, float(np.hypot(*(p[i] - np.array(ref[:2])))))
            agree += bool(g.visible[i]) == bool(ref[2])
            total += 1
    check(worst < 0.5 and agree >= 0.97 * total,
          f"same: node vs `matcha track` offline: max position difference {worst:.3f} px, visibility equal on "
          f"{agree} of {total}")
    # ---------------------------------------------------------------- accuracy against ground truth
    within, seen = 0, 0
    for k, g in got.items():
        p = np.array(g.points).reshape(-1, 2)
        for i, qi in enumerate(first):
            x, y, vis, _ = gt["tracks"][qi]["points"][k]
            if vis:
                seen += 1
                within += bool(g.visible[i]) and float(np.hypot(p[i][0] - x, p[i][1] - y)) < 8.0
    share = within / max(seen, 1)
    check(share >= a.min_within_8px,
          f"accuracy: {within} of {seen} ground-truth-visible points seen within 8 px ({100 * share:.1f}%)")
    # ---------------------------------------------------------------- clear: tracking stops
    r = peer.call(client, track_request(0, [], clear=True))
    check(r is not None and r.success, f"clear: accepted ({r and r.message})")
    s = stamps[-1] + dt
    pc.publish(camera_info(s))
    pi.publish(image_msg(frames[-1], s))
    o = peer.wait_for(peer.odom, lambda mm: ns_of(mm.header.stamp) == s, timeout=10)
    time.sleep(0.5)
    late = peer.wait_for(tracks, lambda mm: ns_of(mm.header.stamp) == s, timeout=0.5)
    check(o is not None and late is None, "clear: the next frame is answered with no PointTracks")
    check(node.alive(), "point tracking: node still running")
    if FAILURES:
        print(node.log_tail())


if __name__ == "__main__":
    main()
