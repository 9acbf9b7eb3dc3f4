#!/usr/bin/env python3
"""Point-tracking baselines on a frames folder and a query list (the inputs of ``matcha track``), writing the Rust
tracker's output format, so that one scorer reads both.

Inputs: ``--frames DIR`` (``000000.png``, ``000001.png``... in frame order: any names, sorted) and ``--queries
Q.json`` (``[{"frame": k, "x": u, "y": v}, ...]``, pixels with centres at integer coordinates), e.g. a clip of
``tools/track_clips.py``. Output (``--out``): ``{"method", "seconds_per_frame", "tracks": [{"query": i, "points":
[null | [x, y, visible, confidence], ...]}]}``, one entry per frame: null before the query frame, the query
itself (visible, confidence 1) at it.

``lk`` (the only method): OpenCV's pyramidal Lucas-Kanade (``cv2.calcOpticalFlowPyrLK``) frame to frame on
grayscale images, window 21 x 21, 3 pyramid levels above the image (maxLevel 3), 30 iterations or a step below
0.01 px; every live point continues from its last estimate (the usual KLT chain of a robotics front end; no
re-detection, no template from the query frame). Each step is checked forward-backward: the new position is
tracked back to the previous frame and the distance to where it started is ``fb``. visible = LK's status ok, fb
< 1.0 px and the new position inside the image ([-0.5, w - 0.5) x [-0.5, h - 0.5)); confidence = 1 / (1 + fb)
(0 when the status is not ok). A point whose status is not ok keeps its last position (and is tried again from
there in the next frame); a point that is not visible still moves with its LK estimate (it may come back).

Why this baseline: it is what a robotics engineer puts in front of a VO or object-tracking pipeline and it is
strong on small frame-to-frame motion; it has no notion of occlusion beyond the forward-backward check and it
drifts on long chains, which is what a learned tracker must beat.

Not here: the ground truth (``track_clips.py``), scoring (the Rust side).

Usage: python tools/track_baselines.py --frames DIR --queries Q.json --out OUT.json [--method lk]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

LK_PARAMS = dict(winSize=(21, 21), maxLevel=3,
                 criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 0.01))
FB_MAX_PX = 1.0
METHODS = ("lk",)


def read_frames(frames_dir: Path) -> list:
    """Grayscale uint8 images of the PNG/JPEG files in the folder, sorted by name."""
    paths = sorted(p for p in Path(frames_dir).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not paths:
        raise SystemExit(f"no frames in {frames_dir}")
    out = []
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise SystemExit(f"cannot read {p}")
        out.append(img)
    return out


def read_queries(path: Path) -> list:
    qs = json.loads(Path(path).read_text())
    if not isinstance(qs, list):
        raise SystemExit(f"{path}: expected a JSON list of {{frame, x, y}}")
    return [(int(q["frame"]), float(q["x"]), float(q["y"])) for q in qs]


def inside(p: np.ndarray, w: int, h: int) -> np.ndarray:
    return (p[:, 0] >= -0.5) & (p[:, 0] < w - 0.5) & (p[:, 1] >= -0.5) & (p[:, 1] < h - 0.5)


def track_lk(frames: list, queries: list):
    """Per query a list of per-frame entries (None before the query frame); seconds spent in LK per frame step."""
    n, h, w = len(frames), frames[0].shape[0], frames[0].shape[1]
    Q = len(queries)
    qf = np.array([q[0] for q in queries], np.int64)
    if Q and (qf.min() < 0 or qf.max() >= n):
        raise SystemExit(f"a query frame is outside 0..{n - 1}")
    pos = np.array([[q[1], q[2]] for q in queries], np.float32).reshape(-1, 2)
    out = [[None] * n for _ in range(Q)]
    for i, (k, x, y) in enumerate(queries):
        out[i][k] = [x, y, True, 1.0]
    t_lk = 0.0
    for k in range(n - 1):
        live = np.nonzero(qf <= k)[0]
        if not len(live):
            continue
        t0 = time.perf_counter()
        p0 = pos[live].reshape(-1, 1, 2).astype(np.float32)
        p1, st, _ = cv2.calcOpticalFlowPyrLK(frames[k], frames[k + 1], p0, None, **LK_PARAMS)
        pb, stb, _ = cv2.calcOpticalFlowPyrLK(frames[k + 1], frames[k], p1, None, **LK_PARAMS)
        t_lk += time.perf_counter() - t0
        p1, pb = p1.reshape(-1, 2), pb.reshape(-1, 2)
        ok = st.ravel() == 1
        fb = np.linalg.norm(pb - p0.reshape(-1, 2), axis=1)
        fb_ok = ok & (stb.ravel() == 1) & np.isfinite(fb)
        new = np.where(ok[:, None] & np.isfinite(p1), p1, pos[live])
        vis = fb_ok & (fb < FB_MAX_PX) & inside(new, w, h)
        conf = np.where(fb_ok, 1.0 / (1.0 + np.where(fb_ok, fb, 0.0)), 0.0)
        pos[live] = new
        for j, i in enumerate(live):
            out[i][k + 1] = [float(new[j, 0]), float(new[j, 1]), bool(vis[j]), float(conf[j])]
    return out, t_lk / max(1, n - 1)


def run(frames_dir: Path, queries_path: Path, method: str = "lk") -> dict:
    frames = read_frames(frames_dir)
    queries = read_queries(queries_path)
    t0 = time.perf_counter()
    if method != "lk":
        raise SystemExit(f"unknown method {method!r} (known: {', '.join(METHODS)})")
    tracks, lk_spf = track_lk(frames, queries)
    spf = (time.perf_counter() - t0) / len(frames)
    return {"method": method, "params": {"win_size": 21, "max_level": 3, "iterations": 30, "epsilon": 0.01,
                                         "fb_max_px": FB_MAX_PX},
            "frames": len(frames), "seconds_per_frame": spf, "seconds_per_frame_lk": lk_spf,
            "tracks": [{"query": i, "points": p} for i, p in enumerate(tracks)]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=Path, required=True)
    ap.add_argument("--queries", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--method", default="lk", choices=METHODS)
    args = ap.parse_args(argv)
    doc = run(args.frames, args.queries, args.method)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    n_vis = sum(p[2] for t in doc["tracks"] for p in t["points"] if p is not None)
    n_all = sum(p is not None for t in doc["tracks"] for p in t["points"])
    print(f"{args.method}: {len(doc['tracks'])} queries x {doc['frames']} frames, {n_vis}/{n_all} points visible; "
          f"{doc['seconds_per_frame'] * 1e3:.2f} ms/frame ({doc['seconds_per_frame_lk'] * 1e3:.2f} ms/frame in LK, "
          f"reading and writing excluded) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
