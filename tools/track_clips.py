#!/usr/bin/env python3
"""Point-tracking clips (TAP-Vid style, query-first protocol) with exact ground-truth tracks and occlusions,
ray-cast from the VO sequences' rooms (``tools/vo_sequences.py``) with boxes that move through the view.

Writes ``$MATCHA_CACHE/tracks/<clip>/`` (default ``~/.cache/matcha/tracks``); the layout is a contract the Rust
side reads:

    frames/000000.png  8-bit RGB PNG, 640 x 480, in frame order (pinhole fx = fy = 500, cx = 319.5, cy = 239.5,
                       no distortion: the VO rig's left camera)
    queries.json       [{"frame": k, "x": u, "y": v}, ...]: the input of ``matcha track --queries`` (pixels,
                       OpenCV convention: pixel centres at integer coordinates)
    groundtruth.json   {"clip", "generator", "width", "height", "camera": {fx, fy, cx, cy}, "tracks": [{"query": i,
                        "points": [[x, y, visible, 1.0], ...]}]}: one point per frame of the clip, ALL frames
                       (before the query frame too: the projection, never visible there); [-1.0, -1.0, false, 1.0]
                       where the point is behind the camera; visible is a JSON bool, the last value is always 1.0
                       (the place of a tracker's confidence)
    info.json          what is not part of the contract: source sequence, window, stride, the occluders' paths and
                       per-frame coverage, per query its kind (static / moving_box), surface, whether it is
                       occluded and then reappears, visible fraction; render times
    .stamp             the generator hash, written last (a clip without a matching stamp is re-rendered)

Clips: ``track_short`` (vo_short 3.5-9.7 s: the end of the curving walk, a 44 deg bend at up to 42 deg/s, a stop
and the 40 deg turn back in place), ``track_loop`` (vo_loop 29.3-35.6 s: the south-west bend of the loop, 43 deg of
steady turn while walking at 0.4 m/s), ``track_turns`` (vo_forward_turns 37.7-44.0 s: the end of a stop, a 75 deg
turn in place at up to 38 deg/s, the walk west). Each is 48 frames of the sequence's left camera at frame stride 2
(7.5 Hz: twice the image motion of the 15 Hz sequence; visible points move 7-19 px per frame in the median, up to
~70 px in the fastest turn frames and ~95 px on the moving boxes), rendered as ``vo_sequences.write_sequence``
renders (``render_view``: mip-mapped rays, boundary rays, hard shadows; the sequence's light at each frame's time
and its sensor, with the auto exposure's time constant applied at 7.5 Hz; noise seeds of our own).

Two boxes per clip MOVE through the view (``Occluder`` entries of ``CLIPS``: crate-like boxes of 0.4-0.6 m with
cardboard sides and photos of the rooms' set on front, back and top, carried at ~1 m above the floor or sliding on
it, 0.4-0.7 m/s, most spinning about the vertical at 20-40 deg/s; placed relative to the camera at one frame, then
a straight path in the room). Each frame's scene is the static room plus the boxes at their pose at that frame's
time, so they occlude the room (and each other), cast shadows and carry tracks of their own. Their paths are
checked (``check_occluders``, raises): never nearer than 0.3 m to the camera, never inside the furniture, a wall,
the floor or each other, never more than half the view.

Ground truth (float64, closed form): a query's 3D point is the ray-cast surface point of its pixel in its query
frame (for a moving box: its coordinates in the box frame, moved with the box). In every frame the point is
projected; visible = in front (z > NEAR), inside the image ([-0.5, w - 0.5) x [-0.5, h - 0.5)) and the ray
re-cast through the projected position hits it (depth equal to a relative 1e-6): exactly the covisibility test
of ``render.views.covisibility``, against that frame's scene (so the moving boxes occlude).

Queries (64 per clip, seeded): 32 on frame 0, 32 on random frames of the first half. A candidate pixel is drawn
uniformly (to 0.01 px) at >= 4 px from the image border and from every depth discontinuity (a 4-neighbour depth
jump > 2% of the depth, grown by a 5 px disk on the pixel grid, so a sub-pixel position keeps >= 4 px), on a
textured surface (not ``plain_of``: plain paint, the ceiling); it must be visible in >= 3 frames from its query
frame on. Query-first: a candidate that is visible in any frame before its query frame is REJECTED (not moved to
its first visible frame: the query pixel is then always a fresh draw with the border / edge / texture checks at
its own frame), so the queries on later frames are points that enter the view, that a moving box uncovers, or
that lie on a box coming into view. Strata (as far as candidates exist): 1/4 on the moving boxes (8 on later
frames, the rest on frame 0: a box that is not in view on frame 0 is queried where it comes in), per half
~half of the rest static points that are occluded in-image at a later frame and visible again after it
(``occluded_reappears``: re-acquisition cases), the rest any static point; queries on one frame >= 8 px apart,
at most 4 on one later frame (1500 candidates drawn on frame 0, 500 on each later one). queries.json is ordered by
query frame. ``--frames N`` takes the window's first N frames (a short clip for checks).

Not here: the tracker or its scoring (the Rust side; ``tools/track_baselines.py`` is the OpenCV LK baseline),
motion blur (none of these sequences has any, and none is added for the boxes), non-rigid or deformable
objects, transparency.

Idempotent: a clip is re-rendered only when its stamp differs from the generator hash (sha256 of this file,
``vo_sequences.generator_hash`` (which covers ``tools/render``) and the frame count); ``--force`` re-renders.

Usage: python tools/track_clips.py [--only NAME ...] [--out DIR] [--frames N] [--force]
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vo_sequences as V  # noqa: E402
from track_occluders import MovingBox, Occluder, box_axes, obb_overlap, point_box_distance  # noqa: E402
from render.scene import NEAR, Scene  # noqa: E402
from render.sensor import capture  # noqa: E402
from render.views import pixel_grid  # noqa: E402

SEED = 20272
N_FRAMES = 48
STRIDE = 2  # source frames per clip frame (15 Hz -> 7.5 Hz)
N_QUERIES = 64
BORDER_PX = 4
EDGE_PX = 4
EDGE_DILATE_PX = 5  # disk on the pixel grid that keeps sub-pixel positions >= EDGE_PX from an edge pixel
EDGE_REL = 0.02  # a 4-neighbour depth jump above this fraction of the depth is a discontinuity
DEPTH_REL = 1e-6  # visibility: re-cast depth equal to the projected depth to this relative tolerance
MIN_VISIBLE_FRAMES = 3
MIN_SPACING_PX = 8.0  # between queries on the same frame
MAX_PER_LATER_FRAME = 4  # queries per query frame after frame 0 (spreads them over the first half)
DRAWS_FRAME0 = 1500
DRAWS_LATER = 500
MIN_CAMERA_CLEARANCE = 0.3  # m from the camera centre to a moving box
MAX_COVER = 0.5  # share of the view one moving box may take
CARD_SEED = 7


@dataclass(frozen=True)
class ClipSpec:
    name: str
    sequence: str
    first: int  # source frame of clip frame 0
    occluders: tuple
    index: int
    description: str = ""


CLIPS = {c.name: c for c in (
    ClipSpec("track_short", "vo_short", 52, (
        Occluder("carried_crate", (0.5, 0.4, 0.45), ("skimage:astronaut", "fruits.jpg", "baboon.jpg"), ref=3,
                 depth=1.9, lateral=0.1, height=1.0, speed=0.7, heading_deg=180.0, yaw_deg=10.0, spin_deg_s=25.0,
                 stop=16),
        Occluder("wall_crate", (0.55, 0.5, 0.5), ("building.jpg", "skimage:coffee", "graf1.png"), ref=30,
                 depth=1.3, lateral=0.2, height=1.0, speed=0.45, heading_deg=180.0, yaw_deg=-20.0,
                 spin_deg_s=30.0, start=16)),
             index=0, description="vo_short 3.5-9.7 s: the end of the curving walk (a 44 deg bend, peak 42 deg/s), "
                                  "a stop and the 40 deg turn back in place"),
    ClipSpec("track_loop", "vo_loop", 440, (
        Occluder("carried_crate", (0.45, 0.4, 0.45), ("messi5.jpg", "skimage:chelsea", "leuvenA.jpg"), ref=14,
                 depth=1.5, lateral=0.0, height=0.95, speed=0.6, heading_deg=0.0, yaw_deg=-15.0, spin_deg_s=35.0,
                 stop=28),
        Occluder("sliding_box", (0.55, 0.6, 0.5), ("stuff.jpg", "HappyFish.jpg", "home.jpg"), ref=30,
                 depth=2.2, lateral=0.0, height=0.3, speed=0.4, heading_deg=20.0, yaw_deg=25.0, start=10)),
             index=1, description="vo_loop 29.3-35.6 s: the south-west bend of the loop (43 deg of steady turn, <= 9 "
                                  "deg/s, while walking at 0.4 m/s)"),
    ClipSpec("track_turns", "vo_forward_turns", 566, (
        Occluder("carried_crate", (0.5, 0.45, 0.4), ("aero1.jpg", "skimage:rocket", "butterfly.jpg"), ref=10,
                 depth=1.6, lateral=0.0, height=1.05, speed=0.5, heading_deg=200.0, yaw_deg=0.0, spin_deg_s=-40.0,
                 stop=20),
        Occluder("sliding_box", (0.55, 0.6, 0.5), ("graf3.png", "orange.jpg", "skimage:coffee"), ref=38,
                 depth=2.6, lateral=0.3, height=0.3, speed=0.4, heading_deg=150.0, yaw_deg=30.0, spin_deg_s=20.0,
                 start=24)),
             index=2, description="vo_forward_turns 37.7-44.0 s: the end of the second stop, the 75 deg turn in "
                                  "place (up to 38 deg/s at these frames), the walk west"),
)}


def generator_hash(n_frames: int = N_FRAMES) -> str:
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update((Path(__file__).resolve().parent / "track_occluders.py").read_bytes())
    h.update(V.generator_hash().encode())
    h.update(f"{n_frames}".encode())
    return h.hexdigest()[:16]


def default_out() -> Path:
    return V.default_out().parent / "tracks"  # the cache root of the VO sequences ($MATCHA_CACHE)


class Clip:
    """The frames of a clip: source frames, times, left cameras, the moving boxes and each frame's scene."""

    def __init__(self, spec: ClipSpec, n_frames: int = N_FRAMES):
        self.spec = spec
        self.seq = V.SEQUENCES[spec.sequence]()
        last = spec.first + STRIDE * (n_frames - 1)
        if last >= self.seq.n_frames:
            raise ValueError(f"{spec.name}: source frame {last} is past the end of {spec.sequence}")
        self.n = n_frames
        self.source = [spec.first + STRIDE * k for k in range(n_frames)]
        self.times = [k / V.RATE for k in self.source]
        self.cameras = [self.seq.cameras(t)[0] for t in self.times]
        self.K = V.rig_K()
        base = self.seq.scene
        n_rects = len(base.surfaces) - sum(len(b.faces) for b in base.boxes)
        self.static_surfaces, self.static_boxes = base.surfaces[:n_rects], list(base.boxes)
        self.n_static = len(base.surfaces)
        ref_time = lambda k: (spec.first + STRIDE * k) / V.RATE  # noqa: E731 (refs may lie past a short clip)
        self.boxes = [MovingBox(o, self.seq, ref_time, [SEED, CARD_SEED, spec.index, j])
                      for j, o in enumerate(spec.occluders)]

    def scene(self, k: int) -> Scene:
        """Frame k's scene: the static room (surface indices as in the sequence's scene) + the moving boxes' faces
        (indices from ``n_static`` on; ``face_box`` says whose)."""
        return Scene(self.static_surfaces, self.static_boxes + [b.box(self.times[k]) for b in self.boxes])

    def face_box(self, scene: Scene) -> np.ndarray:
        """Per surface index (and -1 for no hit, the last entry): the moving box it belongs to, or -1."""
        out = np.full(len(scene.surfaces) + 1, -1, np.int64)
        i = self.n_static
        for j, b in enumerate(scene.boxes[len(self.static_boxes):]):
            out[i:i + len(b.faces)] = j
            i += len(b.faces)
        return out

    def box_frame(self, j: int, k: int):
        """(centre, axes) of moving box j at frame k."""
        c, yaw = self.boxes[j].pose(self.times[k])
        return c, box_axes(yaw)


# ------------------------------------------------------------------------------------------------------------------
# occluder checks
# ------------------------------------------------------------------------------------------------------------------
def check_occluders(clip: Clip) -> list:
    """Per moving box: per-frame coverage of the view (grid step 8) and the nearest camera distance; raises when
    a box comes within MIN_CAMERA_CLEARANCE of the camera (sampled at 4x the clip rate), overlaps the furniture,
    a wall, the floor or another moving box, or takes more than MAX_COVER of the view."""
    W, D, H = clip.seq.room.size
    out = [{"coverage": [], "camera_distance_min_m": math.inf} for _ in clip.boxes]
    for k in range(clip.n):
        scene = clip.scene(k)
        hits = scene.cast(clip.cameras[k], pixel_grid(clip.cameras[k], 8))
        fb = clip.face_box(scene)[hits.surface]
        for j, b in enumerate(clip.boxes):
            cover = float(np.mean(fb == j))
            out[j]["coverage"].append(round(cover, 4))
            if cover > MAX_COVER:
                raise RuntimeError(f"{clip.spec.name}: {b.occ.name} takes {cover:.0%} of frame {k}")
            c, ax = clip.box_frame(j, k)
            corners = c + (np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
                           * b.half) @ ax
            if (corners[:, 0].min() < 0.02 or corners[:, 0].max() > W - 0.02 or corners[:, 2].min() < 0.02
                    or corners[:, 2].max() > D - 0.02 or corners[:, 1].max() > 1e-9 or corners[:, 1].min() < -H):
                raise RuntimeError(f"{clip.spec.name}: {b.occ.name} leaves the room at frame {k}")
            for s in clip.static_boxes:
                if obb_overlap(c, b.half, ax, s.centre, s.half, s.axes, 0.02):
                    raise RuntimeError(f"{clip.spec.name}: {b.occ.name} runs into furniture at frame {k} "
                                       f"(box at {np.round(s.centre, 2).tolist()})")
            for j2 in range(j):
                c2, ax2 = clip.box_frame(j2, k)
                if obb_overlap(c, b.half, ax, c2, clip.boxes[j2].half, ax2, 0.02):
                    raise RuntimeError(f"{clip.spec.name}: {b.occ.name} meets {clip.boxes[j2].occ.name}")
    for k4 in range(4 * (clip.n - 1) + 1):
        t = clip.times[0] + k4 * STRIDE / V.RATE / 4
        C = clip.seq.cameras(t)[0].C
        for j, b in enumerate(clip.boxes):
            c, yaw = b.pose(t)
            d = point_box_distance(C, c, b.half, box_axes(yaw))
            out[j]["camera_distance_min_m"] = min(out[j]["camera_distance_min_m"], round(d, 4))
            if d < MIN_CAMERA_CLEARANCE:
                raise RuntimeError(f"{clip.spec.name}: {b.occ.name} comes within {d:.2f} m of the camera")
    return out


# ------------------------------------------------------------------------------------------------------------------
# ground truth
# ------------------------------------------------------------------------------------------------------------------
@dataclass
class Points:
    """Surface points: ``box`` = -1 (static: ``P`` in the room) or the moving box j (``P`` in its frame)."""

    P: np.ndarray
    box: np.ndarray

    def world(self, clip: Clip, k: int) -> np.ndarray:
        X = self.P.copy()
        for j in range(len(clip.boxes)):
            m = self.box == j
            if m.any():
                c, ax = clip.box_frame(j, k)
                X[m] = c + self.P[m] @ ax
        return X


def points_at(clip: Clip, k: int, uv: np.ndarray, scene: Scene | None = None):
    """Ray-cast pixels uv (N x 2) of frame k -> (Points, surface index per pixel; -1: no hit)."""
    scene = scene or clip.scene(k)
    h = scene.cast(clip.cameras[k], uv)
    X = h.points()
    box = clip.face_box(scene)[h.surface]
    P = X.copy()
    for j in range(len(clip.boxes)):
        m = box == j
        if m.any():
            c, ax = clip.box_frame(j, k)
            P[m] = (X[m] - c) @ ax.T
    return Points(P, box), h.surface


def visibility(clip: Clip, scene: Scene, k: int, X: np.ndarray):
    """Frame k's projection of world points X (N x 3): (uv, z, inside (in front and in the image), visible)."""
    cam = clip.cameras[k]
    uv, z = cam.project(X)
    with np.errstate(invalid="ignore"):
        inside = ((z > NEAR) & (uv[:, 0] >= -0.5) & (uv[:, 0] < cam.width - 0.5) & (uv[:, 1] >= -0.5)
                  & (uv[:, 1] < cam.height - 0.5))
    vis = np.zeros(len(X), bool)
    if inside.any():
        h = scene.cast(cam, uv[inside])
        vis[inside] = np.abs(h.depth - z[inside]) <= DEPTH_REL * z[inside]
    return uv, z, inside, vis


def track(clip: Clip, pts: Points):
    """Ground truth of points over all frames: uv (N x n x 2), z (N x n), inside (N x n), visible (N x n)."""
    N = len(pts.P)
    uv, z = np.zeros((N, clip.n, 2)), np.zeros((N, clip.n))
    inside, vis = np.zeros((N, clip.n), bool), np.zeros((N, clip.n), bool)
    for k in range(clip.n):
        uv[:, k], z[:, k], inside[:, k], vis[:, k] = visibility(clip, clip.scene(k), k, pts.world(clip, k))
    return uv, z, inside, vis


def edge_mask(depth: np.ndarray, radius: int = EDGE_DILATE_PX) -> np.ndarray:
    """Pixels within ``radius`` of a depth discontinuity (4-neighbour jump > EDGE_REL of the nearer depth)."""
    e = np.zeros(depth.shape, bool)
    jv = np.abs(depth[1:] - depth[:-1]) > EDGE_REL * np.minimum(depth[1:], depth[:-1])
    jh = np.abs(depth[:, 1:] - depth[:, :-1]) > EDGE_REL * np.minimum(depth[:, 1:], depth[:, :-1])
    e[1:] |= jv
    e[:-1] |= jv
    e[:, 1:] |= jh
    e[:, :-1] |= jh
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(e.astype(np.uint8), kernel) > 0


def occluded_reappears(inside: np.ndarray, vis: np.ndarray, q: int) -> bool:
    """In the image but hidden at some frame after q, and visible again at a later frame."""
    occ = np.nonzero(inside[q + 1:] & ~vis[q + 1:])[0]
    return bool(len(occ) and vis[q + 1 + occ[0] + 1:].any())


def leaves_reappears(inside: np.ndarray, vis: np.ndarray, q: int) -> bool:
    """Out of the image (or behind the camera) at some frame after q, and visible again at a later frame."""
    out = np.nonzero(~inside[q + 1:])[0]
    return bool(len(out) and vis[q + 1 + out[0] + 1:].any())


@dataclass
class Candidates:
    frame: np.ndarray
    uv: np.ndarray
    pts: Points
    surface: np.ndarray


def draw_candidates(clip: Clip, k: int, depth: np.ndarray, surface: np.ndarray, count: int,
                    rng: np.random.Generator, scene: Scene) -> Candidates:
    """Up to ``count`` pixels of frame k (to 0.01 px) >= BORDER_PX from the border and EDGE_PX from a depth
    discontinuity, on a textured surface."""
    w, h = clip.cameras[k].width, clip.cameras[k].height
    uv = np.round(np.c_[rng.uniform(BORDER_PX, w - 1 - BORDER_PX, count),
                        rng.uniform(BORDER_PX, h - 1 - BORDER_PX, count)], 2)
    iu, iv = np.round(uv[:, 0]).astype(int), np.round(uv[:, 1]).astype(int)
    plain = scene.plain_of.copy()  # the moving boxes are printed: never plain
    plain[-1] = True  # no hit
    ok = ~edge_mask(depth)[iv, iu] & ~plain[surface[iv, iu]]
    uv = uv[ok]
    pts, surf = points_at(clip, k, uv, scene)
    ok = ~plain[surf]
    return Candidates(np.full(int(ok.sum()), k), uv[ok], Points(pts.P[ok], pts.box[ok]), surf[ok])


def select(cands: Candidates, gt, n_queries: int, n_frames: int, n_later: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of the chosen candidates (see the module docstring for the strata), ordered by query frame;
    ``n_later`` query frames after frame 0 share the second half (at most MAX_PER_LATER_FRAME each, more only when
    there are too few such frames)."""
    uv, z, inside, vis = gt
    N = len(cands.frame)
    first = np.array([np.argmax(v) if v.any() else n_frames for v in vis])
    n_vis = np.array([vis[i, cands.frame[i]:].sum() for i in range(N)])
    valid = (first == cands.frame) & (n_vis >= min(MIN_VISIBLE_FRAMES, n_frames))
    moving = cands.pts.box >= 0
    reappear = np.array([occluded_reappears(inside[i], vis[i], cands.frame[i]) for i in range(N)])
    chosen: list = []

    cap = max(MAX_PER_LATER_FRAME, math.ceil((n_queries - n_queries // 2) / max(1, n_later)))

    def take(pool: np.ndarray, count: int) -> None:
        taken = 0
        for i in rng.permutation(pool):
            if taken >= count:
                break
            same = [c for c in chosen if cands.frame[c] == cands.frame[i]]
            if i in chosen or any(np.hypot(*(uv[c, cands.frame[c]] - cands.uv[i])) < MIN_SPACING_PX for c in same):
                continue
            if cands.frame[i] > 0 and len(same) >= cap:
                continue
            chosen.append(int(i))
            taken += 1

    n_moving = int(round(n_queries / 4))
    n0 = n_queries // 2
    # the later frames first: a moving box that is not in view on frame 0 can only be queried there; frame 0 then
    # makes up what they lack (at most half of its queries)
    for later, count in ((True, n_queries - n0), (False, n0)):
        start = len(chosen)
        pool = valid & ((cands.frame > 0) if later else (cands.frame == 0))
        want = int(round(count / 4)) if later else min(n_moving - int(moving[chosen].sum()), count // 2)
        take(np.nonzero(pool & moving)[0], want)
        rest = count - (len(chosen) - start)
        take(np.nonzero(pool & ~moving & reappear)[0], int(round(rest / 2)))
        take(np.nonzero(pool & ~moving)[0], count - (len(chosen) - start))
        take(np.nonzero(pool)[0], count - (len(chosen) - start))
    if len(chosen) < n_queries:  # a half without enough candidates: fill from the other
        take(np.nonzero(valid)[0], n_queries - len(chosen))
    chosen = np.array(chosen)
    return chosen[np.argsort(cands.frame[chosen], kind="stable")]


# ------------------------------------------------------------------------------------------------------------------
# rendering and writing
# ------------------------------------------------------------------------------------------------------------------
def render_frames(clip: Clip, root: Path, keep: int, log=None):
    """Render every frame into root/frames; returns (depth, surface maps of the first ``keep`` frames, seconds per
    frame)."""
    (root / "frames").mkdir(parents=True, exist_ok=True)
    exposure, maps, times = None, [], []
    alpha = 1 - math.exp(-STRIDE / (V.RATE * V.AE_TAU))
    for k in range(clip.n):
        t0 = time.perf_counter()
        scene = clip.scene(k)
        rad, hits, _ = V.render_view(scene, clip.cameras[k], clip.seq.lights(clip.times[k]))
        for r in scene.surfaces[clip.n_static:]:  # the moving faces are new every frame: drop their mip pyramids
            V._MIPS.pop(id(r), None)
        if np.any(hits.surface < 0):
            raise RuntimeError(f"{clip.spec.name} frame {k}: rays that hit nothing")
        target = 0.85 / max(float(np.percentile(rad.mean(axis=2), 99)), 1e-6)
        exposure = target if exposure is None else math.exp(math.log(exposure) + alpha * math.log(target / exposure))
        sensor = dataclasses.replace(clip.seq.sensor, exposure=exposure)
        img = capture(rad, clip.K, sensor, np.random.default_rng([SEED, clip.spec.index, k]))
        cv2.imwrite(str(root / "frames" / f"{k:06d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        if k < keep:
            maps.append((hits.depth.astype(np.float32), hits.surface.astype(np.int32)))
        times.append(time.perf_counter() - t0)
        if log and (k % 12 == 0 or k == clip.n - 1):
            log(f"[track_clips] {clip.spec.name}: frame {k + 1}/{clip.n}, {np.mean(times):.2f} s/frame")
    return maps, float(np.mean(times))


def make_queries(clip: Clip, maps: list, n_queries: int = N_QUERIES):
    """Draw candidates on the query frames, track them all, choose ``n_queries``: (Candidates, gt, chosen)."""
    rng = np.random.default_rng([SEED, clip.spec.index])
    parts = []
    for k, (depth, surface) in enumerate(maps):
        scene = clip.scene(k)
        parts.append(draw_candidates(clip, k, depth, surface, DRAWS_FRAME0 if k == 0 else DRAWS_LATER, rng, scene))
    cands = Candidates(np.concatenate([c.frame for c in parts]), np.concatenate([c.uv for c in parts]),
                       Points(np.concatenate([c.pts.P for c in parts]), np.concatenate([c.pts.box for c in parts])),
                       np.concatenate([c.surface for c in parts]))
    gt = track(clip, cands.pts)
    chosen = select(cands, gt, n_queries, clip.n, len(maps) - 1, rng)
    for i in chosen:  # the query pixel is the ground truth at the query frame (float64 round trip)
        assert np.abs(gt[0][i, cands.frame[i]] - cands.uv[i]).max() < 1e-6 and gt[3][i, cands.frame[i]]
    return cands, gt, chosen


def gt_points(uv: np.ndarray, z: np.ndarray, vis: np.ndarray) -> list:
    return [[-1.0, -1.0, False, 1.0] if zz <= NEAR else [round(float(p[0]), 4), round(float(p[1]), 4), bool(v), 1.0]
            for p, zz, v in zip(uv, z, vis)]


def write_clip(spec: ClipSpec, root: Path, n_frames: int = N_FRAMES, n_queries: int = N_QUERIES, log=None,
               generator: str | None = None) -> dict:
    t_start = time.perf_counter()
    clip = Clip(spec, n_frames)
    occ_stats = check_occluders(clip)
    maps, spf = render_frames(clip, root, keep=max(1, clip.n // 2), log=log)
    t_render = time.perf_counter() - t_start
    cands, (uv, z, inside, vis), chosen = make_queries(clip, maps, n_queries)
    queries, tracks, qinfo = [], [], []
    scene0 = clip.scene(0)
    kinds = scene0.kind_of  # the same surface indices in every frame's scene
    for qi, i in enumerate(chosen):
        k = int(cands.frame[i])
        queries.append({"frame": k, "x": float(cands.uv[i, 0]), "y": float(cands.uv[i, 1])})
        pts = gt_points(uv[i], z[i], vis[i])
        pts[k][:2] = [float(cands.uv[i, 0]), float(cands.uv[i, 1])]
        tracks.append({"query": qi, "points": pts})
        box = int(cands.pts.box[i])
        qinfo.append({"query": qi, "frame": k, "kind": "moving_box" if box >= 0 else "static",
                      "box": clip.boxes[box].occ.name if box >= 0 else None,
                      "surface": str(kinds[cands.surface[i]]), "surface_index": int(cands.surface[i]),
                      "point": [round(float(v), 6) for v in cands.pts.P[i]],
                      "point_frame": "box" if box >= 0 else "room",
                      "occluded_reappears": occluded_reappears(inside[i], vis[i], k),
                      "leaves_reappears": leaves_reappears(inside[i], vis[i], k),
                      "visible_fraction": round(float(vis[i, k:].mean()), 4),
                      "last_visible": int(np.nonzero(vis[i])[0].max())})
    K = clip.K
    cam = {"fx": float(K[0, 0]), "fy": float(K[1, 1]), "cx": float(K[0, 2]), "cy": float(K[1, 2])}
    gen = generator or generator_hash(n_frames)
    (root / "queries.json").write_text(json.dumps(queries, indent=1) + "\n")
    gt_doc = {"clip": spec.name, "generator": gen, "width": V.WIDTH, "height": V.HEIGHT, "camera": cam,
              "tracks": tracks}
    (root / "groundtruth.json").write_text(json.dumps(gt_doc, separators=(",", ":")) + "\n")
    occ = []
    for j, b in enumerate(clip.boxes):
        poses = [b.pose(t) for t in clip.times]
        occ.append({**dataclasses.asdict(b.occ), "velocity_m_s": b.vel.round(6).tolist(),
                    "centre_per_frame": [c.round(4).tolist() for c, _ in poses],
                    "yaw_deg_per_frame": [round(math.degrees(y), 3) for _, y in poses], **occ_stats[j]})
    sel = (lambda key: int(sum(q[key] for q in qinfo)))
    summ = {"frames": clip.n, "queries": len(queries),
            "visible_fraction": round(float(np.mean([vis[i, cands.frame[i]:].mean() for i in chosen])), 4),
            "occluded_reappears": sel("occluded_reappears"), "leaves_reappears": sel("leaves_reappears"),
            "moving_box": int(sum(q["kind"] == "moving_box" for q in qinfo)),
            "on_frame0": int(sum(q["frame"] == 0 for q in qinfo)), "candidates": int(len(cands.frame))}
    info = {"clip": spec.name, "description": spec.description, "sequence": spec.sequence,
            "sequence_generator": V.generator_hash(), "room": clip.seq.room.name,
            "window": {"first_source_frame": clip.source[0], "last_source_frame": clip.source[-1], "stride": STRIDE,
                       "rate_hz": V.RATE / STRIDE, "stamps": [round(t, 6) for t in clip.times]},
            "occluders": occ, "queries": qinfo, "summary": summ, "seed": SEED,
            "render": {"seconds_per_frame_mean": spf, "seconds_render": t_render,
                       "seconds_total": time.perf_counter() - t_start},
            "settings": {"border_px": BORDER_PX, "edge_px": EDGE_PX, "edge_rel": EDGE_REL, "depth_rel": DEPTH_REL,
                         "min_visible_frames": MIN_VISIBLE_FRAMES, "min_spacing_px": MIN_SPACING_PX,
                         "min_camera_clearance_m": MIN_CAMERA_CLEARANCE, "max_cover": MAX_COVER}}
    (root / "info.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def build(name: str, out: Path, n_frames: int = N_FRAMES, force: bool = False, log=None) -> Path:
    root = out / name
    stamp = root / ".stamp"
    gen = generator_hash(n_frames)
    if not force and stamp.exists() and stamp.read_text().strip() == gen:
        return root
    if root.exists():
        shutil.rmtree(root)
    write_clip(CLIPS[name], root, n_frames, log=log, generator=gen)
    stamp.write_text(gen + "\n")
    return root


def summary(root: Path) -> str:
    info = json.loads((root / "info.json").read_text())
    s = info["summary"]
    cover = [max(o["coverage"]) for o in info["occluders"]]
    win = info["window"]
    return (f"{info['clip']}: {s['frames']} frames ({info['sequence']} source frames {win['first_source_frame']}"
            f"-{win['last_source_frame']} stride {win['stride']}), {s['queries']} queries "
            f"({s['on_frame0']} on frame 0), {s['visible_fraction']:.0%} visible from the query frame on, "
            f"{s['occluded_reappears']} occluded-then-reappear, {s['leaves_reappears']} leave-and-return, "
            f"{s['moving_box']} on moving boxes; occluders cover <= {', '.join(f'{c:.0%}' for c in cover)} of a "
            f"view; rendered at {info['render']['seconds_per_frame_mean']:.2f} s/frame, "
            f"{info['render']['seconds_total']:.0f} s in all")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", default=list(CLIPS), help="clip names (space- or comma-separated)")
    ap.add_argument("--out", type=Path, default=default_out())
    ap.add_argument("--frames", type=int, default=N_FRAMES, help="frames per clip (the window's first N)")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    names = [s for arg in args.only for s in arg.split(",") if s]
    for n in names:
        if n not in CLIPS:
            ap.error(f"unknown clip {n!r} (known: {', '.join(CLIPS)})")
    if args.frames < 2:
        ap.error("--frames must be >= 2")
    for n in names:
        root = build(n, args.out, args.frames, args.force, log=lambda s: print(s, file=sys.stderr, flush=True))
        print(summary(root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
