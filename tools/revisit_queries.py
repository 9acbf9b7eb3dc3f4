#!/usr/bin/env python3
"""Revisit query sets for localization against a map built from a VO sequence (``tools/vo_sequences.py``): single
images of the same room from other viewpoints and under other light, with exact poses in the map's world frame.

Writes ``$MATCHA_CACHE/revisit/<map_sequence>/`` (default ``~/.cache/matcha/revisit``); the layout is a contract
the Rust side reads:

    images/000000.png  8-bit RGB PNG, 640 x 480, the intrinsics of the map sequence's left camera (fx = fy = 500,
                       cx = 319.5, cy = 239.5, no distortion)
    queries.json       {"map_sequence", "map_generator" (the ``generator`` of the map's sequence.json these poses
                        belong to), "description", "width", "height", "camera": {fx, fy, cx, cy}, "generator",
                        "queries": [{"index", "image" (relative path), "pose": [tx, ty, tz, qx, qy, qz, qw],
                        "condition", "mapped", "covisible_fraction", "nearest_map_frame", "offset_m",
                        "offset_deg", "room"}]}
    info.json          what is not part of the contract: per query the light, the sensor, the map time it was drawn
                       near, the attempts, the map frames used for the covisibility, render times
    .stamp             the generator hash, written last (a set without it is incomplete and is re-rendered)

``pose`` is camera-to-world of the query camera (optical frame: x right, y down, z forward; quaternion x y z w with
w >= 0) in the world of the map's groundtruth.txt (world = the map's first left camera), computed with the same
float64 arithmetic as ``vo_sequences.gt_poses``: a query placed exactly at a map frame's pose has exactly that
frame's groundtruth line.

Queries (``--queries``, default 60 per map; the conditions are dealt out in a fixed shuffled order):

``other_light``      ~30%: a time t of the map run, that frame's pose moved by <= 0.3 m (height +-0.1 m) and turned a
                     little (yaw +-8, pitch +-4, roll +-1.5 deg), under another light (below).
``other_viewpoint``  ~30%: the map's light at t, the pose moved 0.2-1.0 m on the floor (any direction), height +-0.2 m,
                     yaw +-25, pitch +-8, roll +-3 deg.
``both``             ~30%: the viewpoint change and another light.
``unmapped``         ~10%: views the map run never sees: alternately a random pose in the same room whose
                     covisibility with *every* map frame stays below 0.1 (when one is found in 40 draws), and a
                     random pose in another room (``room`` says which; vo_loop -> studio, vo_forward_turns ->
                     office, vo_short -> hall) lit as that room's own sequence, drawn until at most 10% of its
                     view is on photos that also hang in the map's room (the rooms share posters; info.json has
                     each such query's ``shared_photo_fraction``; wall and floor materials are shared regardless);
                     its pose is that room's camera put into the map's world as if the two rooms shared
                     coordinates (meaningless for scoring: such a query has no true place in the map).

"Another light" (another time of day): the one point light moved to a random place near the ceiling >= 1.5 m from
every position the map's light takes during the run, 0.4-1.6x the map's intensity, the colour of a black body at
2700-3500 K (warm) or 6500-9000 K (cool) instead of the map's ~5500 K, the ambient 0.5-2.5x and tinted; and another
sensor setting: white balance half-way corrected for the new colour (x +-8% jitter), exposure 0.7-1.4x the
auto-exposure, full well 0.5-1.2x and read noise 0.8-2x the map's (noisier), vignetting 0.15-0.45.

Rejected poses: closer than 0.35 m to any surface (``vo_sequences.clearance``), with a ray (grid step 16) that hits
nothing (the render's check, repeated on the full image), or with more than half of those rays on plain paint
(walls, ceiling: a blank view is no query). A mapped-condition pose is redrawn (another t and perturbation, at most
6 draws) while its covisible fraction is below 0.3; failing that, the draw with the highest fraction is kept.

covisible_fraction: the fraction of the query's pixels on a grid of step 16 that at least one of the 30 map frames
nearest in pose sees (exact ray-cast covisibility, ``render.views.covisibility``; pose distance = metres + degrees /
30; identical map poses, e.g. during a stop, count once, as their first frame). nearest_map_frame: the map frame of
those with the highest covisibility (ties: the nearest in pose); offset_m / offset_deg: centre distance and rotation
angle to it (not to the frame the query was drawn near, which may differ). mapped = covisible_fraction >= 0.3 and
the query is in the map's room.

Not here: building the map or localizing (the Rust side), place-recognition vocabularies (``train_vocabulary.py``),
moving objects or furniture between visits (the rooms are static: "other time" is light and sensor only).

Idempotent: a set is re-rendered only when its stamp differs from the generator hash (sha256 of this file,
``vo_sequences.py``, ``tools/render/*.py`` and the options); ``--force`` re-renders.

Usage: python tools/revisit_queries.py [--only NAME[,NAME]] [--queries N] [--out DIR] [--force]
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vo_sequences as V  # noqa: E402
from render.scene import Camera  # noqa: E402
from render.sensor import Sensor, capture  # noqa: E402
from render.shading import Lighting, PointLight  # noqa: E402
from render.trajectory import rot_x, rot_y, rot_z  # noqa: E402
from render.views import covisibility, fractions, pixel_grid  # noqa: E402

MAPS = ("vo_loop", "vo_forward_turns", "vo_short")
OTHER_ROOM = {"vo_loop": "vo_short", "vo_forward_turns": "vo_hard", "vo_short": "vo_loop"}  # its room and light
SEED = 20271
N_QUERIES = 60
UNMAPPED_SHARE = 0.1
MIN_CLEARANCE = 0.35  # m
GRID_STEP = 16  # px at full size
NEAREST_FRAMES = 30
DEG_PER_M = 30.0  # pose distance = metres + degrees / DEG_PER_M
MAPPED_MIN = 0.3
UNMAPPED_MAX = 0.1
MAPPED_TRIES = 6
UNMAPPED_TRIES = 40
OTHER_ROOM_TRIES = 300
SHARED_PHOTO_MAX = 0.1  # other-room queries: share of the view on photos that also hang in the map's room
LIGHT_MIN_DIST = 1.5  # m from every position of the map's light
MAX_PLAIN = 0.5  # share of plain paint (walls, ceiling) a query may see
CONDITIONS = ("other_light", "other_viewpoint", "both")
# (offset range m, height +-m, yaw, pitch, roll +-deg)
SMALL = ((0.0, 0.3), 0.1, 8.0, 4.0, 1.5)
LARGE = ((0.2, 1.0), 0.2, 25.0, 8.0, 3.0)


def generator_hash(n_queries: int = N_QUERIES, scale: float = 1.0) -> str:
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(V.generator_hash().encode())
    h.update(f"{n_queries} {scale}".encode())
    return h.hexdigest()[:16]


def default_out() -> Path:
    cache = os.environ.get("MATCHA_CACHE") or str(Path.home() / ".cache" / "matcha")
    return Path(cache) / "revisit"


@dataclass
class Query:
    """One query: camera-to-room rotation ``R`` and centre ``C`` in ``spec``'s room (``spec`` is the map sequence,
    or for an other-room query the sequence whose room and light it borrows), light, sensor, exposure bias."""

    index: int
    condition: str
    spec: V.SequenceSpec
    R: np.ndarray
    C: np.ndarray
    lighting: Lighting
    sensor: Sensor
    exposure_bias: float = 1.0
    t_map: float | None = None
    attempts: int = 1
    shared_photo: float | None = None  # other-room queries: share of the view on photos of the map's room


# ------------------------------------------------------------------------------------------------------------------
# the map run: frames, pose distances, covisibility
# ------------------------------------------------------------------------------------------------------------------
class MapRun:
    """The left cameras of a map sequence's frames (room coordinates), deduplicated: frames with exactly the pose of
    an earlier one (stops) are represented by the first."""

    def __init__(self, spec: V.SequenceSpec, scale: float = 1.0):
        self.spec, self.scale = spec, scale
        self.stamps = spec.stamps()
        poses = [spec.path.pose(float(t)) for t in self.stamps]
        self.R = np.array([p[0] for p in poses])
        self.C = np.array([p[1] for p in poses])
        key = np.round(np.concatenate([self.R.reshape(len(poses), -1), self.C], 1), 9)
        _, first = np.unique(key, axis=0, return_index=True)
        self.unique = np.sort(first)
        self.K = V.rig_K(scale)
        self.size = (int(round(V.WIDTH * scale)), int(round(V.HEIGHT * scale)))

    def camera(self, k: int) -> Camera:
        return Camera(self.K, *self.size, self.R[k].T, self.C[k])

    def offsets(self, R: np.ndarray, C: np.ndarray, frames: np.ndarray):
        """Centre distance (m) and rotation angle (deg) from the pose (R, C) to the given frames."""
        d = np.linalg.norm(self.C[frames] - C, axis=1)
        tr = np.einsum("ij,kij->k", R, self.R[frames])
        return d, np.degrees(np.arccos(np.clip((tr - 1) / 2, -1.0, 1.0)))

    def by_distance(self, R: np.ndarray, C: np.ndarray) -> np.ndarray:
        """The unique frames sorted by pose distance to (R, C)."""
        d, a = self.offsets(R, C, self.unique)
        return self.unique[np.argsort(d + a / DEG_PER_M, kind="stable")]


def grid_step(scale: float) -> int:
    return max(2, int(round(GRID_STEP * scale)))


def covisible(run: MapRun, cam: Camera, frames, stop_at: float | None = None):
    """(fraction of the grid pixels of ``cam`` that one of ``frames`` sees, per-frame overlaps); with ``stop_at``
    the scan ends as soon as the fraction reaches it."""
    uv = pixel_grid(cam, grid_step(run.scale))
    seen = None
    per = []
    for k in frames:
        cv = covisibility(run.spec.scene, cam, run.camera(int(k)), uv)
        seen = cv.visible.copy() if seen is None else seen | cv.visible
        per.append(cv.visible.sum() / len(uv))
        if stop_at is not None and seen.sum() / len(uv) >= stop_at:
            break
    return (float(seen.sum() / len(uv)) if seen is not None else 0.0), np.array(per)


def photo_share(scene, cam: Camera, photos: set, scale: float) -> float:
    """Share of a coarse grid of ``cam`` on surfaces textured with one of the named ``photos``."""
    surface = scene.cast(cam, pixel_grid(cam, grid_step(scale))).surface
    names = np.array([r.tex_name for r in scene.surfaces] + [""])
    return float(np.isin(names[surface], sorted(photos)).mean())


def room_photos(spec: V.SequenceSpec) -> set:
    """The named photos (posters, printed furniture faces) of a sequence's room."""
    return {r.tex_name for r in spec.scene.surfaces if r.tex_name != "<array>"}


def sees_only_room(scene, cam: Camera, scale: float) -> bool:
    """Every ray of a coarse grid hits a surface, and at most MAX_PLAIN of them plain paint (a blank wall is no
    query)."""
    surface = scene.cast(cam, pixel_grid(cam, grid_step(scale))).surface
    return bool(np.all(surface >= 0)) and fractions(scene, surface)["plain"] <= MAX_PLAIN


# ------------------------------------------------------------------------------------------------------------------
# light and sensor of another time of day
# ------------------------------------------------------------------------------------------------------------------
def kelvin_rgb(kelvin: float) -> np.ndarray:
    """Black-body colour at ``kelvin`` (Tanner Helland's fit of the CIE data, 1000-40000 K), max channel 1."""
    t = kelvin / 100.0
    r = 255.0 if t <= 66 else 329.698727446 * (t - 60) ** -0.1332047592
    g = 99.4708025861 * math.log(t) - 161.1195681661 if t <= 66 else 288.1221695283 * (t - 60) ** -0.0755148492
    b = 255.0 if t >= 66 else (0.0 if t <= 19 else 138.5177312231 * math.log(t - 10) - 305.0447927307)
    c = np.clip([r, g, b], 1.0, 255.0)
    return c / c.max()


def map_light_positions(spec: V.SequenceSpec) -> np.ndarray:
    ts = np.linspace(0.0, spec.path.duration, 61)
    return np.array([lt.position for t in ts for lt in spec.lights(float(t)).lights], np.float64)


def other_light(spec: V.SequenceSpec, t: float, rng: np.random.Generator):
    """(Lighting, Sensor, exposure bias, details) of another time of day for the map sequence at time t."""
    room = V.build_vo_room(spec.room)
    W, D, H = room.size
    base = spec.lights(t)
    ref = base.lights[0]
    avoid = map_light_positions(spec)
    for _ in range(500):
        p = np.array([rng.uniform(0.5, W - 0.5), -(H - rng.uniform(0.2, 0.8)), rng.uniform(0.5, D - 0.5)])
        if np.linalg.norm(avoid - p, axis=1).min() >= LIGHT_MIN_DIST and V.clearance(room, p) >= 0.2:
            break
    else:
        raise RuntimeError(f"{spec.name}: no light position {LIGHT_MIN_DIST} m from the map's light")
    warm = rng.random() < 0.5
    kelvin = rng.uniform(2700, 3500) if warm else rng.uniform(6500, 9000)
    colour = kelvin_rgb(kelvin)
    gain = rng.uniform(0.4, 1.6)
    amb = rng.uniform(0.5, 2.5)
    lighting = Lighting((PointLight(tuple(p.tolist()), float(ref.intensity * gain), tuple(colour.tolist())),),
                        tuple((np.asarray(base.ambient) * amb * (0.5 + 0.5 * colour)).tolist()))
    # a camera's auto white balance corrects about half of the colour change, plus its own error
    correction = np.sqrt(np.asarray(ref.colour) / colour)
    wb = np.asarray(spec.sensor.white_balance) * correction / correction[1]
    wb = wb * np.array([rng.uniform(0.92, 1.08), 1.0, rng.uniform(0.92, 1.08)])
    sensor = dataclasses.replace(spec.sensor, white_balance=tuple(wb.tolist()),
                                 full_well=float(spec.sensor.full_well * rng.uniform(0.5, 1.2)),
                                 read_noise=float(spec.sensor.read_noise * rng.uniform(0.8, 2.0)),
                                 vignetting=float(rng.uniform(0.15, 0.45)))
    details = {"kelvin": round(kelvin, 1), "warm": bool(warm), "intensity_ratio": gain, "ambient_ratio": amb,
               "light_distance_min_m": float(np.linalg.norm(avoid - p, axis=1).min())}
    return lighting, sensor, float(rng.uniform(0.7, 1.4)), details


# ------------------------------------------------------------------------------------------------------------------
# sampling
# ------------------------------------------------------------------------------------------------------------------
def perturbed(spec: V.SequenceSpec, t: float, ranges, rng: np.random.Generator):
    """The map's left camera at time t moved and turned by a draw from ``ranges`` (see SMALL / LARGE)."""
    (m0, m1), dh, yaw, pitch, roll = ranges
    R0, C0 = spec.path.pose(t)
    heading = float(spec.path.yaw(t))
    fwd = np.array([math.sin(heading), 0.0, math.cos(heading)])
    lat = np.array([math.cos(heading), 0.0, -math.sin(heading)])
    m, phi = rng.uniform(m0, m1), rng.uniform(0, 2 * math.pi)
    C = C0 + m * (math.cos(phi) * lat + math.sin(phi) * fwd) + np.array([0.0, rng.uniform(-dh, dh), 0.0])
    R = (rot_y(math.radians(rng.uniform(-yaw, yaw))) @ R0 @ rot_x(math.radians(rng.uniform(-pitch, pitch)))
         @ rot_z(math.radians(rng.uniform(-roll, roll))))
    return R, C


def random_pose(room, rng: np.random.Generator):
    """A walker's pose anywhere in the room: eye height 1.3-1.7 m, any heading, pitch 0-16 deg down, roll +-3."""
    W, D, _ = room.size
    C = np.array([rng.uniform(0.4, W - 0.4), -rng.uniform(1.3, 1.7), rng.uniform(0.4, D - 0.4)])
    R = (rot_y(rng.uniform(0, 2 * math.pi)) @ rot_x(-math.radians(rng.uniform(0.0, 16.0)))
         @ rot_z(math.radians(rng.uniform(-3, 3))))
    return R, C


def camera_at(R: np.ndarray, C: np.ndarray, scale: float) -> Camera:
    K = V.rig_K(scale)
    return Camera(K, int(round(V.WIDTH * scale)), int(round(V.HEIGHT * scale)), R.T, C)


def valid_pose(spec: V.SequenceSpec, R: np.ndarray, C: np.ndarray, scale: float) -> bool:
    room = V.build_vo_room(spec.room)
    return V.clearance(room, C) >= MIN_CLEARANCE and sees_only_room(spec.scene, camera_at(R, C, scale), scale)


def conditions(n: int, map_index: int) -> list:
    n_un = int(round(UNMAPPED_SHARE * n))
    out = ["unmapped"] * n_un + [CONDITIONS[k % 3] for k in range(n - n_un)]
    return [out[i] for i in np.random.default_rng([SEED, map_index]).permutation(n)]


def mapped_query(run: MapRun, i: int, n: int, condition: str) -> Query:
    spec = run.spec
    rng = np.random.default_rng([SEED, spec.index, i])
    ranges = SMALL if condition == "other_light" else LARGE
    best = None
    for attempt in range(1, MAPPED_TRIES + 1):
        t = (i + rng.uniform()) / n * spec.path.duration
        for _ in range(200):
            R, C = perturbed(spec, t, ranges, rng)
            if valid_pose(spec, R, C, run.scale):
                break
        else:
            continue
        frac, _ = covisible(run, camera_at(R, C, run.scale), run.by_distance(R, C)[:NEAREST_FRAMES])
        if best is None or frac > best[0]:
            best = (frac, R, C, t)
        if frac >= MAPPED_MIN:
            break
    if best is None:
        raise RuntimeError(f"{spec.name} query {i}: no valid pose near the path")
    _, R, C, t = best
    if condition == "other_viewpoint":
        lighting, sensor, bias = spec.lights(t), spec.sensor, 1.0
    else:
        lighting, sensor, bias, _ = other_light(spec, t, np.random.default_rng([SEED, spec.index, i, 7]))
    return Query(i, condition, spec, R, C, lighting, sensor, bias, t_map=t, attempts=attempt)


def unmapped_query(run: MapRun, i: int, k: int) -> Query:
    """The k-th unmapped query: k even tries the map's room first; otherwise (or when none is found) another room."""
    spec = run.spec
    rng = np.random.default_rng([SEED, spec.index, i, 3])
    room = V.build_vo_room(spec.room)
    if k % 2 == 0:
        for attempt in range(1, UNMAPPED_TRIES + 1):
            R, C = random_pose(room, rng)
            if not valid_pose(spec, R, C, run.scale):
                continue
            cam = camera_at(R, C, run.scale)
            order = run.by_distance(R, C)
            if covisible(run, cam, order[:NEAREST_FRAMES], stop_at=UNMAPPED_MAX)[0] >= UNMAPPED_MAX:
                continue
            if covisible(run, cam, order, stop_at=UNMAPPED_MAX)[0] < UNMAPPED_MAX:  # every map frame
                t = float(rng.uniform(0, spec.path.duration))
                return Query(i, "unmapped", spec, R, C, spec.lights(t), spec.sensor, 1.0, attempts=attempt)
    other = V.SEQUENCES[OTHER_ROOM[spec.name]]()
    oroom = V.build_vo_room(other.room)
    photos = room_photos(spec)
    best = None
    for attempt in range(1, OTHER_ROOM_TRIES + 1):
        R, C = random_pose(oroom, rng)
        if not valid_pose(other, R, C, run.scale):
            continue
        share = photo_share(other.scene, camera_at(R, C, run.scale), photos, run.scale)
        if best is None or share < best[0]:
            best = (share, R, C, attempt)
        if share <= SHARED_PHOTO_MAX:
            break
    if best is None:
        raise RuntimeError(f"{spec.name} query {i}: no valid pose in {other.room.name}")
    share, R, C, attempt = best
    t = float(rng.uniform(0, other.path.duration))
    return Query(i, "unmapped", other, R, C, other.lights(t), other.sensor, 1.0, attempts=attempt,
                 shared_photo=share)


def sample_queries(spec: V.SequenceSpec, n: int, scale: float = 1.0, run: MapRun | None = None) -> list:
    run = run or MapRun(spec, scale)
    out, n_un = [], 0
    for i, cond in enumerate(conditions(n, spec.index)):
        if cond == "unmapped":
            out.append(unmapped_query(run, i, n_un))
            n_un += 1
        else:
            out.append(mapped_query(run, i, n, cond))
    return out


def at_frame(spec: V.SequenceSpec, k: int, index: int = 0, condition: str = "other_viewpoint") -> Query:
    """A query exactly at map frame k's left camera, under the map's light (for checks)."""
    t = float(spec.stamps()[k])
    R, C = spec.path.pose(t)
    return Query(index, condition, spec, R, C, spec.lights(t), spec.sensor, 1.0, t_map=t)


# ------------------------------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------------------------------
def world_pose(map_spec: V.SequenceSpec, R: np.ndarray, C: np.ndarray) -> list:
    """[tx, ty, tz, qx, qy, qz, qw] of a camera-to-room pose in the map's world (its first left camera), with the
    arithmetic of ``vo_sequences.gt_poses`` and ``tum_line``."""
    from scipy.spatial.transform import Rotation

    R0, C0 = map_spec.path.pose(0.0)
    Rw, tw = R0.T @ R, R0.T @ (C - C0)
    q = Rotation.from_matrix(Rw).as_quat()
    if q[3] < 0:
        q = -q
    return [float(v) for v in (*tw, *q)]


def evaluate(run: MapRun, q: Query) -> dict:
    """covisible_fraction, mapped, nearest_map_frame, offsets (and the frames used) of a query."""
    order = run.by_distance(q.R, q.C)
    if q.spec.room != run.spec.room:  # another room: nothing of it is in the map
        k = int(order[0])
        frac, frames = 0.0, [k]
    else:
        frames = order[:NEAREST_FRAMES]
        frac, per = covisible(run, camera_at(q.R, q.C, run.scale), frames)
        k = int(frames[int(np.argmax(per))])  # ties: the nearest in pose (frames are sorted by distance)
    d, a = run.offsets(q.R, q.C, np.array([k]))
    return {"covisible_fraction": round(frac, 6), "mapped": bool(frac >= MAPPED_MIN and q.spec.room == run.spec.room),
            "nearest_map_frame": k, "offset_m": round(float(d[0]), 6), "offset_deg": round(float(a[0]), 4),
            "frames": [int(f) for f in frames]}


def render_query(q: Query, scale: float, map_index: int) -> tuple:
    cam = camera_at(q.R, q.C, scale)
    rad, hits, _ = V.render_view(q.spec.scene, cam, q.lighting)
    if np.any(hits.surface < 0):
        raise RuntimeError(f"query {q.index}: rays that hit nothing (the camera left the room)")
    exposure = q.exposure_bias * 0.85 / max(float(np.percentile(rad.mean(axis=2), 99)), 1e-6)
    sensor = dataclasses.replace(q.sensor, exposure=exposure)
    img = capture(rad, cam.K, sensor, np.random.default_rng([SEED, map_index, q.index, 1]))
    return img, sensor


def write_set(map_spec: V.SequenceSpec, root: Path, queries: list, scale: float = 1.0, log=print,
              generator: str | None = None, sample_seconds: float | None = None) -> dict:
    """Render ``queries`` into ``root`` and write queries.json and info.json; returns the summary dict."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    run = MapRun(map_spec, scale)
    K = run.K
    rows, infos, times = [], [], []
    for j, q in enumerate(queries):
        t0 = time.perf_counter()
        img, sensor = render_query(q, scale, map_spec.index)
        name = f"images/{q.index:06d}.png"
        cv2.imwrite(str(root / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        ev = evaluate(run, q)
        frames = ev.pop("frames")
        rows.append({"index": q.index, "image": name, "pose": world_pose(map_spec, q.R, q.C),
                     "condition": q.condition, **ev, "room": q.spec.room.name})
        lt = q.lighting.lights[0]
        infos.append({"index": q.index, "room": q.spec.room.name, "t_map": q.t_map, "attempts": q.attempts,
                      "shared_photo_fraction": q.shared_photo,
                      "camera_in_room": {"C": q.C.tolist(), "R_world_from_cam": q.R.tolist()},
                      "light": {"position": list(lt.position), "intensity": lt.intensity, "colour": list(lt.colour),
                                "ambient": list(q.lighting.ambient)},
                      "sensor": sensor.to_dict(), "exposure_bias": q.exposure_bias, "covisibility_frames": frames,
                      "seconds": time.perf_counter() - t0})
        times.append(time.perf_counter() - t0)
        if log and (j % 10 == 0 or j == len(queries) - 1):
            log(f"[revisit] {map_spec.name}: query {j + 1}/{len(queries)}, {np.mean(times):.2f} s/query")
    w, h = run.size
    doc = {"map_sequence": map_spec.name, "map_generator": V.generator_hash(),
           "description": f"revisit queries for {map_spec.name} ({map_spec.room.name} room): the map run's places "
                          "seen from other viewpoints and under another light; poses camera-to-world in the map "
                          "sequence's groundtruth.txt world",
           "width": w, "height": h,
           "camera": {"fx": float(K[0, 0]), "fy": float(K[1, 1]), "cx": float(K[0, 2]), "cy": float(K[1, 2])},
           "generator": generator or generator_hash(len(queries), scale), "queries": rows}
    (root / "queries.json").write_text(json.dumps(doc, indent=1) + "\n")
    summ = summarise(doc, times)
    summ["sample_seconds"] = sample_seconds
    info = {"scale": scale, "seed": SEED, "queries": infos, "summary": summ,
            "settings": {"min_clearance_m": MIN_CLEARANCE, "grid_step_px": grid_step(scale),
                         "nearest_frames": NEAREST_FRAMES, "deg_per_m": DEG_PER_M, "mapped_min": MAPPED_MIN,
                         "unmapped_max": UNMAPPED_MAX, "max_plain": MAX_PLAIN,
                         "shared_photo_max": SHARED_PHOTO_MAX, "light_min_distance_m": LIGHT_MIN_DIST,
                         "small": SMALL, "large": LARGE, "other_room": OTHER_ROOM[map_spec.name]}}
    (root / "info.json").write_text(json.dumps(info, indent=1, default=str) + "\n")
    return summ


def summarise(doc: dict, times=None) -> dict:
    qs = doc["queries"]
    by = {}
    for q in qs:
        c = by.setdefault(q["condition"], {"count": 0, "mapped": 0, "covisible": [], "offset_m": [], "offset_deg": []})
        c["count"] += 1
        c["mapped"] += q["mapped"]
        c["covisible"].append(q["covisible_fraction"])
        c["offset_m"].append(q["offset_m"])
        c["offset_deg"].append(q["offset_deg"])
    out = {k: {"count": v["count"], "mapped": v["mapped"], "covisible_median": float(np.median(v["covisible"])),
               "offset_m_median": float(np.median(v["offset_m"])),
               "offset_deg_median": float(np.median(v["offset_deg"]))} for k, v in sorted(by.items())}
    room = _map_room(doc)
    return {"queries": len(qs), "mapped": int(sum(q["mapped"] for q in qs)),
            "unmapped_other_room": int(sum(q["room"] != room for q in qs)),
            "by_condition": out,
            "seconds_per_query": float(np.mean(times)) if times else None}  # render + covisibility


def _map_room(doc: dict) -> str:
    return V.SEQUENCES[doc["map_sequence"]]().room.name


def build(name: str, out: Path, n: int = N_QUERIES, force: bool = False, scale: float = 1.0, log=None) -> Path:
    root = out / name
    stamp = root / ".stamp"
    gen = generator_hash(n, scale)
    if not force and stamp.exists() and stamp.read_text().strip() == gen:
        return root
    if root.exists():
        shutil.rmtree(root)
    t0 = time.perf_counter()
    spec = V.SEQUENCES[name]()
    run = MapRun(spec, scale)
    queries = sample_queries(spec, n, scale, run)
    t1 = time.perf_counter()
    summ = write_set(spec, root, queries, scale, log=log, generator=gen, sample_seconds=t1 - t0)
    stamp.write_text(gen + "\n")
    if log:
        log(f"[revisit] {name}: sampled {n} queries in {t1 - t0:.0f} s, rendered in {time.perf_counter() - t1:.0f} s "
            f"({summ['seconds_per_query']:.2f} s/query) -> {root}")
    return root


def summary(root: Path) -> str:
    doc = json.loads((root / "queries.json").read_text())
    info = json.loads((root / "info.json").read_text())
    s = summarise(doc)
    parts = [f"{k} {v['count']} ({v['mapped']} mapped, covis median {v['covisible_median']:.2f}, offset median "
             f"{v['offset_m_median']:.2f} m / {v['offset_deg_median']:.1f} deg)" for k, v in s["by_condition"].items()]
    spq, sample = info["summary"].get("seconds_per_query"), info["summary"].get("sample_seconds")
    shared = [q["shared_photo_fraction"] for q in info["queries"] if q.get("shared_photo_fraction") is not None]
    return (f"{doc['map_sequence']}: {s['queries']} queries, mapped {s['mapped']}/{s['queries']} "
            f"({s['mapped'] / max(1, s['queries']):.0%}); " + "; ".join(parts)
            + f"; unmapped in another room: {s['unmapped_other_room']}" + (
                f" (at most {max(shared):.0%} of a view on photos of the map's room)" if shared else "")
            + (f"; sampling {sample:.0f} s, render + covisibility {spq:.2f} s/query" if spq and sample else ""))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(MAPS), help="comma-separated map sequence names")
    ap.add_argument("--queries", type=int, default=N_QUERIES, help="queries per map sequence")
    ap.add_argument("--out", type=Path, default=default_out())
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    names = [s for s in args.only.split(",") if s]
    for n in names:
        if n not in MAPS:
            ap.error(f"unknown map sequence {n!r} (known: {', '.join(MAPS)})")
    for n in names:
        t0 = time.perf_counter()
        root = build(n, args.out, args.queries, args.force, log=lambda s: print(s, file=sys.stderr, flush=True))
        print(summary(root) + f" [{time.perf_counter() - t0:.0f} s this run]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
