#!/usr/bin/env python3
"""Stereo visual-odometry sequences with exact ground truth, ray-cast from real photos (``tools/render``), for
``matcha vo`` and ``tools/vo_baselines.py``.

Writes ``$MATCHA_CACHE/vo/<name>/`` (default ``~/.cache/matcha/vo``); the layout is a contract the Rust side reads:

    left/000000.png, right/000000.png   8-bit RGB PNG, 640 x 480
    groundtruth.txt   TUM "stamp tx ty tz qx qy qz qw", one line per frame (no comment lines): the LEFT camera
                      optical frame (x right, y down, z forward) in the world, camera-to-world; world = the first
                      left camera (first line identity)
    sequence.json     {"name", "description", "rate_hz", "width", "height", "left": {fx, fy, cx, cy}, "right": ...,
                       "right_from_left": {"R", "t"} (x_right = R x_left + t, metres), "frames": [{"index",
                       "stamp", "left", "right"}], "segments": [{"kind", "first", "last"}], "path_length_m",
                       "generator"}
    info.json         what is not part of the contract: room, lights, sensor, render settings, checks, timings
    .stamp            the generator hash, written last (a sequence without it is incomplete and is re-rendered)

Rig: two identical pinhole cameras (fx = fy = 500, cx = 319.5, cy = 239.5, no distortion), the right one 0.12 m
along the left camera's x axis with the same orientation (R = I, t = (-0.12, 0, 0)), both exposed at the same
instant (global shutter, frame stamps k / 15 s). The walker's path (``render.trajectory``: C2 quintic pieces, eye
height ~1.5 m with a small bob, pitch ~8 deg down) is checked against the room: both camera centres stay >= 0.4 m
from every surface (sampled at 60 Hz), every pixel hits a surface, and consecutive left frames (and left/right)
overlap (exact ray-cast covisibility, ``render.views``).

Sequences (segments in ``sequence.json``):

``vo_short``         10 s in a furnished studio: a gentle forward walk that curves and turns (the bundled default).
``vo_loop``          a closed ~15.5 m loop (ellipse round an island of crates) through a hall with posters and boxes
                     at ~0.4 m/s; the light drifts slowly (moves 0.6 m on a circle, intensity +-15%).
``vo_forward_turns`` forward walks in a long store room, turns in place of 70-90 deg (peak rate <= 45 deg/s), two
                     stops of 3.5 s with the camera exactly still.
``vo_hard``          an office: fast turns (peak 110-170 deg/s) with motion blur (10 ms exposure, the blur kernel
                     from the true image motion), a light that dims to 35% and moves 1.2 m, a stretch facing plain
                     painted walls (>= 60% of the view), a stop.

Images: linear radiance, one ray per pixel centre with trilinear mip-mapped texture lookup (the texel footprint
from the neighbouring pixels' surface coordinates, as a GPU does) and 4 extra rays (offsets +-0.25 px) on the
pixels at surface boundaries (~5-10% of the image), point lights with hard shadows, then ``render.sensor`` (the
rooms set's camera model): cos^4 vignetting, Poisson-Gaussian noise (independent draws left and right), white
balance, gamma; one exposure for both cameras from a smoothed auto-exposure (time constant 0.7 s) of the left
image. Why not ``frame.render`` with ss = 2: 4 rays per pixel cost ~1 s a frame (~70 min for the four sequences on
one core) and still alias the textures that are minified by 2-4x on walls 2-5 m away; mip-mapping removes that
and the boundary rays the jagged edges, at ~0.4 s a frame. The ground truth is untouched by all of this: poses are
exact (float64 closed form), blur kernels are centred on the frame's pose.

Idempotent: a sequence is re-rendered only when its stamp differs from the generator hash (sha256 of this file and
``tools/render/*.py``); ``--force`` re-renders.

Usage: python tools/vo_sequences.py [--only NAME[,NAME]] [--out DIR] [--force] [--list]
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import itertools
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from render import shading  # noqa: E402
from render.rooms import (CARPET, CONCRETE, GREY_BRICK, NOTICE_BOARD, OFF_WHITE, PAINTED_BRICK, PAVERS,  # noqa: E402
                          PHOTOS, RED_BRICK, WHITE_CEILING, WOOD, Material, Room, Wall, _furniture_box, _posters,
                          _walls)
from render.scene import Box, Camera, Hits, Rect, Scene  # noqa: E402
from render.sensor import Sensor, blur_kernel, capture  # noqa: E402
from render.shading import Lighting, PointLight  # noqa: E402
from render.trajectory import CameraPath, Plan  # noqa: E402
from render.views import covisibility, fractions, pixel_grid  # noqa: E402

RENDER_PACKAGE = Path(__file__).resolve().parent / "render"
WIDTH, HEIGHT = 640, 480
FOCAL = 500.0
BASELINE = 0.12  # m, right camera at +x of the left one
RATE = 15.0  # Hz
SEED = 20270
MIN_CLEARANCE = 0.4  # m from every surface, both cameras
MIN_OVERLAP = 0.5  # consecutive left frames, and left/right
EDGE_OFFSETS = ((-0.25, -0.25), (0.25, -0.25), (-0.25, 0.25), (0.25, 0.25))
AE_TAU = 0.7  # s, auto-exposure time constant
BLUR_MIN_PX = 0.5  # motion blur below this length is not applied
BLUR_SEGMENT_PX = 3.0  # frames blurred by at least this much form "blur" segments


def generator_hash() -> str:
    """sha256 over this script and the renderer's sources: a change to either re-renders the sequences."""
    h = hashlib.sha256(Path(__file__).read_bytes())
    for f in sorted(RENDER_PACKAGE.glob("*.py")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def default_out() -> Path:
    cache = os.environ.get("MATCHA_CACHE") or str(Path.home() / ".cache" / "matcha")
    return Path(cache) / "vo"


def rig_K(scale: float = 1.0) -> np.ndarray:
    K = np.array([[FOCAL, 0, (WIDTH - 1) / 2], [0, FOCAL, (HEIGHT - 1) / 2], [0, 0, 1]])
    if scale != 1.0:
        K = Camera(K, WIDTH, HEIGHT, np.eye(3), np.zeros(3)).scaled(scale).K
    return K


# ------------------------------------------------------------------------------------------------------------------
# rooms: the furnished-room recipe of render.rooms with furniture at chosen places (the paths go round it)
# ------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RoomSpec:
    """``walls`` in the order south (z = 0), east (x = W), north (z = D), west (x = 0); ``furniture``: (kind, wall
    name, metres along the wall) or (kind, "free", x, z, yaw_deg)."""

    name: str
    size: tuple
    walls: tuple
    floor: Material
    posters: tuple
    poster_width: tuple
    furniture: tuple
    seed: int


def _piece(kind: str, place: tuple, walls: dict, photos, rng) -> list:
    boxes, (w, d) = _furniture_box(kind, photos, rng)
    if place[0] == "free":
        x, z, yaw = place[1], place[2], math.radians(place[3])
    else:
        wall = walls[place[0]]
        p = wall.origin + place[1] * wall.along + (d / 2 + 0.01) * wall.normal
        x, z = p[0], p[2]
        yaw = math.atan2(-wall.normal[0], -wall.normal[2])
    c, s_ = math.cos(yaw), math.sin(yaw)
    return [Box((x + c * cx + s_ * cz, cy, z - s_ * cx + c * cz), size, yaw, tex, texels_per_m=400)
            for (cx, cy, cz), size, tex in boxes]


@functools.lru_cache(maxsize=None)
def build_vo_room(spec: RoomSpec) -> Room:
    """The room of ``spec`` (as ``render.rooms.build_room`` builds a recipe, with placed furniture)."""
    rng = np.random.default_rng([SEED, spec.seed])
    W, D, H = spec.size
    floor = Rect([0, 0, 0], [W, 0, 0], [0, 0, D], spec.floor.image(rng), rep=(W / spec.floor.period,
                 D / spec.floor.period), texels_per_m=400, plane=0, kind="floor", plain=spec.floor.plain)
    ceiling = Rect([0, -H, 0], [W, 0, 0], [0, 0, D], WHITE_CEILING.image(rng), rep=(W / 2, D / 2), texels_per_m=64,
                   plane=1, kind="ceiling", plain=True)
    surfaces, walls = [floor, ceiling], {}
    for k, ((name, o, along, normal, length), mat) in enumerate(zip(_walls(spec.size), spec.walls)):
        wall = Wall(name, o, along, normal, length, plane=2 + k, plain=mat.plain)
        walls[name] = wall
        surfaces.append(Rect(o, length * along, [0, H, 0], mat.image(rng), rep=(length / mat.period, H / mat.period),
                             texels_per_m=64 if mat.plain else 450, plane=wall.plane, kind="wall", plain=mat.plain))
    photos = itertools.cycle([str(p) for p in rng.permutation(PHOTOS)])
    for wall, count in zip(walls.values(), spec.posters):
        surfaces += _posters(wall, H, count, spec.poster_width, photos, rng)
    boxes = []
    for kind, *place in spec.furniture:
        boxes += _piece(kind, tuple(place), walls, photos, rng)
    return Room(spec.name, spec.size, Scene(surfaces, boxes), walls, floor_plane=0)


def clearance(room: Room, X: np.ndarray) -> float:
    """Distance (m) from the point X to the nearest wall, floor, ceiling or box of the room (negative: inside)."""
    W, D, H = room.size
    x, y, z = X
    d = min(x, W - x, z, D - z, -y, H + y)
    for b in room.scene.boxes:
        q = np.abs((X - b.centre) @ b.axes.T) - b.half
        out = np.linalg.norm(np.maximum(q, 0))
        d = min(d, out if out > 0 else float(q.max()))
    return float(d)


STUDIO = RoomSpec("studio", (5.0, 6.0, 2.8), (OFF_WHITE, RED_BRICK, NOTICE_BOARD, RED_BRICK), CARPET,
                  (2, 2, 2, 1), (0.5, 1.0),
                  (("table", "free", 3.2, 3.9, 15.0), ("cabinet", "north", 1.0), ("crate", "east", 4.6),
                   ("crate", "free", 1.1, 4.9, 30.0), ("cabinet", "west", 1.2)), seed=1)
HALL = RoomSpec("hall", (7.0, 9.0, 3.0), (PAINTED_BRICK, OFF_WHITE, GREY_BRICK, OFF_WHITE), WOOD, (2, 4, 2, 4),
                (0.7, 1.3),
                (("crate", "free", 3.2, 4.1, 20.0), ("crate", "free", 3.9, 4.7, 65.0), ("crate", "free", 3.3, 5.1, 5.0),
                 ("table", "free", 3.6, 3.7, 90.0), ("crate", "free", 3.7, 5.6, 40.0), ("cabinet", "north", 3.5),
                 ("crate", "south", 5.6), ("cabinet", "west", 8.0), ("crate", "east", 4.5)), seed=2)
STORE = RoomSpec("store", (6.0, 8.5, 3.0), (RED_BRICK, PAINTED_BRICK, OFF_WHITE, NOTICE_BOARD), PAVERS, (2, 3, 2, 2),
                 (0.6, 1.2),
                 (("crate", "free", 3.0, 4.0, 10.0), ("crate", "free", 2.8, 5.0, 50.0), ("table", "free", 3.1, 2.6, 0.0),
                  ("cabinet", "east", 1.2), ("crate", "east", 7.0), ("cabinet", "north", 1.5), ("crate", "west", 6.8),
                  ("crate", "south", 3.0)), seed=3)
OFFICE = RoomSpec("office", (6.0, 7.0, 2.7), (OFF_WHITE, OFF_WHITE, RED_BRICK, NOTICE_BOARD), CONCRETE, (0, 0, 2, 2),
                  (0.6, 1.1),
                  (("table", "free", 2.2, 5.2, 0.0), ("cabinet", "west", 2.0), ("crate", "north", 3.6),
                   ("crate", "free", 1.2, 1.5, 25.0), ("cabinet", "north", 0.9)), seed=4)


# ------------------------------------------------------------------------------------------------------------------
# sequences
# ------------------------------------------------------------------------------------------------------------------
@dataclass
class SequenceSpec:
    name: str
    description: str
    room: RoomSpec
    plan: Plan
    lights: object  # t -> Lighting
    exposure_s: float | None = None  # motion blur from the true image motion over this exposure; None: sharp
    extra_segments: list = field(default_factory=list)  # (kind, t0, t1) beyond the plan's
    sensor: Sensor = Sensor(vignetting=0.3, full_well=5000.0, read_noise=4.0, white_balance=(1.04, 1.0, 0.95))
    index: int = 0
    closed: bool = False  # a loop: whole strides, so the last pose is the first

    @functools.cached_property
    def path(self) -> CameraPath:
        return CameraPath(self.plan.keys, whole_strides=self.closed)

    @property
    def n_frames(self) -> int:
        return int(math.floor(self.path.duration * RATE + 1e-9)) + 1

    def stamps(self) -> np.ndarray:
        return np.arange(self.n_frames) / RATE

    @property
    def scene(self) -> Scene:
        return build_vo_room(self.room).scene

    def cameras(self, t: float, scale: float = 1.0):
        """(left, right) cameras of the rig at time t, in room coordinates."""
        R_wc, C = self.path.pose(t)
        K = rig_K(scale)
        w, h = int(round(WIDTH * scale)), int(round(HEIGHT * scale))
        left = Camera(K, w, h, R_wc.T, C)
        right = Camera(K, w, h, R_wc.T, C + R_wc @ np.array([BASELINE, 0.0, 0.0]))
        return left, right

    def segments(self) -> list:
        out = []
        for kind, t0, t1 in self.plan.segments + self.extra_segments:
            first, last = int(math.ceil(t0 * RATE - 1e-9)), int(math.floor(t1 * RATE + 1e-9))
            last = min(last, self.n_frames - 1)
            if last >= first:
                out.append({"kind": kind, "first": first, "last": last})
        return sorted(out, key=lambda s: (s["first"], s["kind"]))


def _one_light(position, intensity=1.0, colour=(1.0, 0.95, 0.88), ambient=0.012):
    return Lighting((PointLight(tuple(map(float, position)), float(intensity), colour),), (ambient,) * 3)


def _smooth(u: float) -> float:
    """Minimum-jerk ramp 0 -> 1 on u in [0, 1]."""
    u = min(max(u, 0.0), 1.0)
    return u * u * u * (10 - 15 * u + 6 * u * u)


def seq_short() -> SequenceSpec:
    p = Plan(1.3, 0.8, 10.0)
    p.walk([(1.5, 1.8), (2.1, 2.6), (3.0, 2.8)], 0.5)
    p.turn(-40, 2.4)
    return SequenceSpec("vo_short", "10 s in a furnished studio (5 x 6 m): a gentle forward walk that curves to the "
                        "right and a slow turn back, one ceiling light", STUDIO, p,
                        lambda t: _one_light((2.5, -2.3, 3.0), 1.6), index=0)


def seq_loop() -> SequenceSpec:
    cx, cz, a, b = 3.5, 4.5, 2.15, 2.8
    n = 24
    start = -math.pi / 2  # south point of the ellipse, walking counter-clockwise seen from above (+x then +z)
    pts = [(cx + a * math.cos(start + 2 * math.pi * k / n), cz + b * math.sin(start + 2 * math.pi * k / n))
           for k in range(1, n + 1)]
    p = Plan(pts[-1][0], pts[-1][1], 90.0 - 12.0)
    p.walk(pts, 0.4, look_deg=[-12.0] * n, kind="loop", end_yaw_deg=90.0 - 12.0)
    dur = p.t

    def lights(t):
        u = t / dur
        pos = (3.5 + 0.6 * math.cos(2 * math.pi * u), -2.5, 4.5 + 0.6 * math.sin(2 * math.pi * u))
        return _one_light(pos, 2.2 * (1 + 0.15 * math.sin(2 * math.pi * u * 1.5)), ambient=0.01)

    return SequenceSpec("vo_loop", "a closed loop of ~15.5 m (ellipse 4.3 x 5.6 m round an island of crates and a "
                        "table) through a 7 x 9 m hall with brick walls, posters and boxes, at ~0.4 m/s, looking "
                        "12 deg into the loop; the light drifts slowly (0.6 m circle, intensity +-15%); ends where "
                        "it started", HALL, p, lights, index=1, closed=True)


def seq_forward_turns() -> SequenceSpec:
    p = Plan(1.4, 1.2, 0.0)
    p.walk([(1.5, 5.6)], 0.55)
    p.stop(3.5)
    p.turn(90, 3.8)
    p.walk([(4.4, 5.6)], 0.55)
    p.turn(90, 3.8)
    p.walk([(4.5, 2.2)], 0.55)
    p.stop(3.5)
    p.turn(75, 3.2)
    p.walk([(2.6, 1.7)], 0.5)
    return SequenceSpec("vo_forward_turns", "forward walks in a 6 x 8.5 m store room (brick, posters, crates) at "
                        "0.55 m/s, turns in place of 75-90 deg (peak rate 44 deg/s), two stops of 3.5 s with the "
                        "camera exactly still", STORE, p, lambda t: _one_light((3.0, -2.4, 4.2), 2.0), index=2)


def seq_hard() -> SequenceSpec:
    p = Plan(1.8, 2.6, 0.0)
    p.walk([(1.8, 4.2)], 0.55)
    p.turn(100, 1.3, kind="fast_turn")
    p.walk([(3.4, 4.0), (4.4, 3.2)], 0.55)
    p.turn(95, 1.05, kind="fast_turn")  # now facing the plain south wall
    t_low = p.t
    p.walk([(4.6, 2.0)], 0.35, kind="forward")
    p.turn(-60, 2.2, kind="turn_in_place")  # to the plain south-east corner
    p.stop(0.8, kind=None)
    p.label("low_texture", t_low)
    p.turn(-150, 1.65, kind="fast_turn")
    t_light = p.t
    p.walk([(4.0, 3.4), (3.2, 4.4)], 0.55)
    p.stop(2.5)
    p.turn(120, 1.25, kind="fast_turn")
    p.walk([(4.4, 5.2)], 0.5)
    p.turn(-130, 1.4, kind="fast_turn")
    p.walk([(3.0, 3.4)], 0.55)
    light_t0, light_t1 = t_light + 1.0, t_light + 2.5

    def lights(t):
        u = _smooth((t - light_t0) / (light_t1 - light_t0))
        moving = (3.0 + 1.2 * u, -2.2, 3.6 - 0.2 * u)
        return Lighting((PointLight(moving, 1.5 * (1 - 0.65 * u), (1.0, 0.95, 0.88)),
                         PointLight((1.5, -2.3, 5.5), 0.5, (0.9, 0.95, 1.0))), (0.01,) * 3)

    return SequenceSpec("vo_hard", "a 6 x 7 m office with two plain painted walls: fast turns (peak 110-175 deg/s) "
                        "with motion blur (10 ms exposure), a light that dims to 35% and moves 1.2 m while walking, "
                        "a stretch facing the plain walls, a stop", OFFICE, p, lights, exposure_s=0.010,
                        extra_segments=[("light_change", light_t0, light_t1)], index=3)


def _ellipse_loop(name: str, room: RoomSpec, cx: float, cz: float, a: float, b: float, look_deg: float,
                  speed: float, index: int) -> SequenceSpec:
    """A closed loop round (cx, cz) (ellipse half-axes a along x, b along z), looking ``look_deg`` into it, one
    light under the middle of the ceiling."""
    n = 24
    start = -math.pi / 2
    pts = [(cx + a * math.cos(start + 2 * math.pi * k / n), cz + b * math.sin(start + 2 * math.pi * k / n))
           for k in range(1, n + 1)]
    p = Plan(pts[-1][0], pts[-1][1], 90.0 - look_deg)
    p.walk(pts, speed, look_deg=[-look_deg] * n, kind="loop", end_yaw_deg=90.0 - look_deg)
    W, D, H = room.size
    desc = (f"a closed loop ({2 * a:g} x {2 * b:g} m ellipse) round the middle of a {W:g} x {D:g} m {room.name} at "
            f"{speed} m/s, looking {look_deg:g} deg into the loop, one light under the ceiling; added 2026-12-08 "
            "as rooms the other sequences do not loop in")
    return SequenceSpec(name, desc, room, p, lambda t: _one_light((W / 2, -H + 0.4, D / 2), 2.0), index=index,
                        closed=True)


def seq_store_loop() -> SequenceSpec:
    # index: the sensor noise's seed (11 and 12: the renders measured in docs/vo.md)
    return _ellipse_loop("vo_store_loop", STORE, 3.0, 4.1, 1.9, 2.6, 15.0, 0.45, index=11)


def seq_office_loop() -> SequenceSpec:
    return _ellipse_loop("vo_office_loop", OFFICE, 3.2, 3.6, 1.7, 2.0, 10.0, 0.4, index=12)


SEQUENCES = {"vo_short": seq_short, "vo_loop": seq_loop, "vo_forward_turns": seq_forward_turns, "vo_hard": seq_hard,
             "vo_store_loop": seq_store_loop, "vo_office_loop": seq_office_loop}


# ------------------------------------------------------------------------------------------------------------------
# rendering
# ------------------------------------------------------------------------------------------------------------------
_MIPS: dict = {}


def mip_levels(rect: Rect) -> list:
    """The texture pyramid of a surface (level 0 = its prefiltered texture; each next level halves by area means)."""
    key = id(rect)
    if key not in _MIPS or _MIPS[key][0] is not rect:
        levels = [rect.img.astype(np.float32)]
        while min(levels[-1].shape[:2]) > 2 and len(levels) < 12:
            h, w = levels[-1].shape[:2]
            levels.append(cv2.resize(levels[-1], (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA))
        _MIPS[key] = (rect, levels)
    return _MIPS[key][1]


def _bilinear(img: np.ndarray, rep, s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``Rect.sample`` on another image of the same surface (a mip level): wrap-around bilinear lookup."""
    th, tw = img.shape[:2]
    x = (s * rep[0]) * tw - 0.5
    y = (t * rep[1]) * th - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0i, y0i = x0.astype(np.int64), y0.astype(np.int64)
    x1i, y1i = (x0i + 1) % tw, (y0i + 1) % th
    x0i, y0i = x0i % tw, y0i % th
    im = img.reshape(-1, img.shape[2])
    r0, r1 = y0i * tw, y1i * tw
    return ((1 - fy) * ((1 - fx) * im[r0 + x0i] + fx * im[r0 + x1i])
            + fy * ((1 - fx) * im[r1 + x0i] + fx * im[r1 + x1i]))


def texel_lod(scene: Scene, hits: Hits) -> np.ndarray:
    """Mip level per pixel of a grid cast: log2 of the larger texel step to the neighbouring pixel (rows or
    columns; forward difference, backward at the far side of a surface boundary), >= 0."""
    surf = hits.surface
    su = np.array([r.rep[0] * r.img.shape[1] for r in scene.surfaces] + [0.0])[surf]
    sv = np.array([r.rep[1] * r.img.shape[0] for r in scene.surfaces] + [0.0])[surf]
    X, Y = hits.s * su, hits.t * sv
    rho = []
    for axis in (0, 1):
        dX, dY = np.diff(X, axis=axis), np.diff(Y, axis=axis)
        same = np.diff(surf, axis=axis) == 0
        g = np.where(same, np.hypot(dX, dY), np.nan)
        pad = [(0, 0), (0, 0)]
        pad[axis] = (0, 1)
        fwd = np.pad(g, pad, constant_values=np.nan)
        pad[axis] = (1, 0)
        bwd = np.pad(g, pad, constant_values=np.nan)
        rho.append(np.where(np.isnan(fwd), np.nan_to_num(bwd, nan=1.0), fwd))
    return np.log2(np.maximum(np.maximum(rho[0], rho[1]), 1.0)).astype(np.float32)


def albedo_mip(scene: Scene, hits: Hits, lod: np.ndarray) -> np.ndarray:
    """Texture colour at each hit, trilinear between the two mip levels around ``lod`` (same shape as the hits)."""
    col = np.zeros((hits.depth.size, 3), np.float32)
    surf = hits.surface.ravel()
    order = np.argsort(surf, kind="stable")
    ids, starts = np.unique(surf[order], return_index=True)
    ends = np.r_[starts[1:], len(order)]
    s, t, lv = hits.s.ravel(), hits.t.ravel(), lod.ravel()
    for i, a, b in zip(ids, starts, ends):
        if i < 0:
            continue
        m = order[a:b]
        r = scene.surfaces[i]
        levels = mip_levels(r)
        L = np.clip(lv[m], 0, len(levels) - 1)
        l0 = np.floor(L).astype(np.int64)
        f = (L - l0).astype(np.float32)[:, None]
        out = np.zeros((len(m), 3), np.float32)
        for lvl in np.unique(l0):
            sel = l0 == lvl
            c0 = _bilinear(levels[lvl], r.rep, s[m][sel], t[m][sel])
            c1 = _bilinear(levels[min(lvl + 1, len(levels) - 1)], r.rep, s[m][sel], t[m][sel])
            out[sel] = (1 - f[sel]) * c0 + f[sel] * c1
        col[m] = out
    return col.reshape(hits.depth.shape + (3,))


def render_view(scene: Scene, camera: Camera, lighting: Lighting):
    """Linear radiance (H x W x 3 float32) of one view and the pixel-centre hits: one mip-mapped ray per pixel,
    four more on surface-boundary pixels; hard shadows per ray."""
    hits = scene.cast_grid(camera)
    lod = texel_lod(scene, hits)
    vis = [shading.visible(scene, hits, light) for light in lighting.lights]
    col = albedo_mip(scene, hits, lod) * shading.irradiance(scene, hits, lighting, vis)
    s = hits.surface
    edge = np.zeros(s.shape, bool)
    dv, du = s[1:] != s[:-1], s[:, 1:] != s[:, :-1]
    edge[1:] |= dv
    edge[:-1] |= dv
    edge[:, 1:] |= du
    edge[:, :-1] |= du
    vs, us = np.nonzero(edge)
    if len(vs):
        acc = np.zeros((len(vs), 3), np.float32)
        for ox, oy in EDGE_OFFSETS:
            h = scene.cast(camera, np.c_[us + ox, vs + oy])
            v = [shading.visible(scene, h, light) for light in lighting.lights]
            acc += albedo_mip(scene, h, lod[vs, us]) * shading.irradiance(scene, h, lighting, v)
        col[vs, us] = acc / len(EDGE_OFFSETS)
    return col.astype(np.float32), hits, float(edge.mean())


def image_motion(spec: SequenceSpec, t: float, dt: float, scale: float = 1.0):
    """Median image displacement (px, at ``scale``) of the left view's surface points between t - dt/2 and
    t + dt/2: (length, angle_deg) of the linear motion blur over an exposure dt."""
    left, _ = spec.cameras(t, scale)
    coarse = max(1, int(round(16 * scale)))
    uv = pixel_grid(left, coarse)
    h = spec.scene.cast(left, uv)
    P = h.points()[h.surface >= 0]
    a, _ = spec.cameras(t - dt / 2, scale)
    b, _ = spec.cameras(t + dt / 2, scale)
    d = b.project(P)[0] - a.project(P)[0]
    m = np.median(d, axis=0)
    return float(np.hypot(*m)), float(math.degrees(math.atan2(m[1], m[0])))


def check_path(spec: SequenceSpec) -> dict:
    """Clearance of both camera centres (60 Hz samples) and speed / turn rates; raises when the path is unsafe."""
    room = build_vo_room(spec.room)
    ts = np.arange(0, spec.path.duration + 1e-9, 1 / 60)
    worst = np.inf
    for t in ts:
        left, right = spec.cameras(float(t))
        worst = min(worst, clearance(room, left.C), clearance(room, right.C))
    if worst < MIN_CLEARANCE:
        raise RuntimeError(f"{spec.name}: the camera comes within {worst:.3f} m of a surface (< {MIN_CLEARANCE})")
    speed = np.hypot(*spec.path.floor_velocity(ts))
    return {"min_clearance_m": float(worst), "max_speed_m_s": float(speed.max()),
            "max_yaw_rate_deg_s": float(np.degrees(np.abs(spec.path.yaw_rate(ts))).max()),
            "duration_s": float(spec.path.duration)}


def tum_line(stamp: float, R: np.ndarray, t: np.ndarray) -> str:
    from scipy.spatial.transform import Rotation

    q = Rotation.from_matrix(R).as_quat()  # x y z w
    if q[3] < 0:
        q = -q
    return f"{stamp:.6f} " + " ".join(f"{v:.9f}" for v in (*t, *q))


def gt_poses(spec: SequenceSpec) -> list:
    """T_world_cam of the left camera per frame, world = the first left camera: (R, t) with X_w = R X_cam + t."""
    R0, C0 = spec.path.pose(0.0)
    out = []
    for t in spec.stamps():
        R, C = spec.path.pose(float(t))
        out.append((R0.T @ R, R0.T @ (C - C0)))
    return out


def write_sequence(spec: SequenceSpec, root: Path, scale: float = 1.0, max_frames: int | None = None,
                   check: bool = True, log=print) -> dict:
    """Render ``spec`` into ``root`` (which must be empty or absent); returns the info dict."""
    (root / "left").mkdir(parents=True, exist_ok=True)
    (root / "right").mkdir(parents=True, exist_ok=True)
    scene = spec.scene
    path_stats = check_path(spec) if check else {}
    stamps = spec.stamps()
    n = len(stamps) if max_frames is None else min(max_frames, len(stamps))
    K = rig_K(scale)
    w, h = int(round(WIDTH * scale)), int(round(HEIGHT * scale))
    poses = gt_poses(spec)[:n]
    frames, times, overlaps, lr_overlaps, blur_px, plain, depth_med = [], [], [], [], [], [], []
    exposure = None
    prev_left = None
    t_start = time.perf_counter()
    for k in range(n):
        t0 = time.perf_counter()
        t = float(stamps[k])
        left, right = spec.cameras(t, scale)
        lighting = spec.lights(t)
        rad_l, hits_l, _ = render_view(scene, left, lighting)
        rad_r, hits_r, _ = render_view(scene, right, lighting)
        if np.any(hits_l.surface < 0) or np.any(hits_r.surface < 0):
            raise RuntimeError(f"{spec.name} frame {k}: rays that hit nothing (the camera left the room)")
        target = 0.85 / max(float(np.percentile(rad_l.mean(axis=2), 99)), 1e-6)
        alpha = 1 - math.exp(-1 / (RATE * AE_TAU))
        exposure = target if exposure is None else math.exp(math.log(exposure) + alpha * math.log(target / exposure))
        blur = None
        if spec.exposure_s:
            length, angle = image_motion(spec, t, spec.exposure_s, scale)
            blur_px.append(length)
            if length >= BLUR_MIN_PX * scale:
                blur = ("motion", length, angle)
        sensor = dataclasses.replace(spec.sensor, exposure=exposure, blur=blur)
        for side, rad in ((0, rad_l), (1, rad_r)):
            img = capture(rad, K, sensor, np.random.default_rng([SEED, spec.index, k, side]))
            d = "left" if side == 0 else "right"
            cv2.imwrite(str(root / d / f"{k:06d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        frames.append({"index": k, "stamp": round(t, 6), "left": f"left/{k:06d}.png", "right": f"right/{k:06d}.png"})
        if check:
            step = max(2, int(round(16 * scale)))
            if prev_left is not None:
                overlaps.append(covisibility(scene, prev_left, left, pixel_grid(prev_left, step)).overlap)
            lr_overlaps.append(covisibility(scene, left, right, pixel_grid(left, step)).overlap)
            plain.append(fractions(scene, hits_l.surface)["plain_wall"])
            depth_med.append(float(np.median(hits_l.depth)))
        prev_left = left
        times.append(time.perf_counter() - t0)
        if log and (k % 50 == 0 or k == n - 1):
            log(f"[vo_sequences] {spec.name}: frame {k + 1}/{n}, {np.mean(times):.2f} s/frame")
    with open(root / "groundtruth.txt", "w") as f:
        for fr, (R, t) in zip(frames, poses):
            f.write(tum_line(fr["stamp"], R, t) + "\n")
    cam = {"fx": float(K[0, 0]), "fy": float(K[1, 1]), "cx": float(K[0, 2]), "cy": float(K[1, 2])}
    segments = [s for s in spec.segments() if s["first"] < n]
    for s in segments:
        s["last"] = min(s["last"], n - 1)
    if spec.exposure_s:
        segments += runs(np.array(blur_px) >= BLUR_SEGMENT_PX * scale, "blur")
        segments.sort(key=lambda s: (s["first"], s["kind"]))
    length = float(spec.path.arc_length(stamps[n - 1]))
    seq = {"name": spec.name, "description": spec.description, "rate_hz": RATE, "width": w, "height": h,
           "left": cam, "right": dict(cam),
           "right_from_left": {"R": np.eye(3).tolist(), "t": [-BASELINE, 0.0, 0.0]},
           "frames": frames, "segments": segments, "path_length_m": round(length, 6), "generator": generator_hash()}
    (root / "sequence.json").write_text(json.dumps(seq, indent=1) + "\n")
    seg_stats = {}
    if check:
        for s in segments:
            sl = slice(s["first"], s["last"] + 1)
            seg_stats.setdefault(s["kind"], []).append(
                {"first": s["first"], "last": s["last"], "plain_wall_median": float(np.median(plain[sl])),
                 **({"blur_px_max": float(max(blur_px[sl]))} if blur_px else {})})
    info = {"room": {"name": spec.room.name, "size_m": list(spec.room.size), "posters": list(spec.room.posters),
                     "furniture": [list(f) for f in spec.room.furniture]},
            "scale": scale, "frames": n, "path": path_stats,
            "sensor": spec.sensor.to_dict(), "exposure_s": spec.exposure_s, "auto_exposure_tau_s": AE_TAU,
            "render": {"rays": "1 per pixel (mip-mapped trilinear textures) + 4 on surface boundaries",
                       "seconds_per_frame_mean": float(np.mean(times)), "seconds_total": time.perf_counter() - t_start},
            "checks": {"min_overlap_consecutive": float(min(overlaps)) if overlaps else None,
                       "min_overlap_left_right": float(min(lr_overlaps)) if lr_overlaps else None,
                       "median_depth_m_range": [min(depth_med), max(depth_med)] if depth_med else None,
                       "blur_px_max": float(max(blur_px)) if blur_px else 0.0, "segments": seg_stats}}
    (root / "info.json").write_text(json.dumps(info, indent=1, default=str) + "\n")
    if check and overlaps and min(overlaps) < MIN_OVERLAP:
        raise RuntimeError(f"{spec.name}: consecutive frames overlap by only {min(overlaps):.2f}")
    if check and lr_overlaps and min(lr_overlaps) < MIN_OVERLAP:
        raise RuntimeError(f"{spec.name}: left and right overlap by only {min(lr_overlaps):.2f}")
    return info


def runs(mask: np.ndarray, kind: str) -> list:
    """Segments (first, last) of the True runs of a per-frame mask."""
    out, start = [], None
    for i, m in enumerate(list(mask) + [False]):
        if m and start is None:
            start = i
        if not m and start is not None:
            out.append({"kind": kind, "first": start, "last": i - 1})
            start = None
    return out


def build(name: str, out: Path, force: bool = False) -> Path:
    root = out / name
    stamp = root / ".stamp"
    if not force and stamp.exists() and stamp.read_text().strip() == generator_hash():
        return root
    if root.exists():
        shutil.rmtree(root)
    t0 = time.perf_counter()
    info = write_sequence(SEQUENCES[name](), root, log=lambda s: print(s, file=sys.stderr, flush=True))
    stamp.write_text(generator_hash() + "\n")
    print(f"[vo_sequences] rendered {name}: {info['frames']} frames in {time.perf_counter() - t0:.0f} s "
          f"({info['render']['seconds_per_frame_mean']:.2f} s/frame) -> {root}", file=sys.stderr)
    return root


def summary(root: Path) -> str:
    seq = json.loads((root / "sequence.json").read_text())
    info = json.loads((root / "info.json").read_text())
    kinds = {}
    for s in seq["segments"]:
        kinds[s["kind"]] = kinds.get(s["kind"], 0) + 1
    c = info["checks"]
    return (f"{seq['name']}: {len(seq['frames'])} frames ({len(seq['frames']) / seq['rate_hz']:.1f} s), path "
            f"{seq['path_length_m']:.2f} m, segments {kinds}; clearance >= {info['path']['min_clearance_m']:.2f} m, "
            f"overlap consecutive >= {c['min_overlap_consecutive']:.2f}, left/right >= {c['min_overlap_left_right']:.2f}"
            f", max yaw rate {info['path']['max_yaw_rate_deg_s']:.0f} deg/s, max blur {c['blur_px_max']:.1f} px; "
            f"rendered at {info['render']['seconds_per_frame_mean']:.2f} s/frame")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(SEQUENCES), help="comma-separated sequence names")
    ap.add_argument("--out", type=Path, default=default_out())
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--list", action="store_true", help="list the sequences (and whether they are rendered)")
    args = ap.parse_args(argv)
    names = [s for s in args.only.split(",") if s]
    for n in names:
        if n not in SEQUENCES:
            ap.error(f"unknown sequence {n!r} (known: {', '.join(SEQUENCES)})")
    if args.list:
        for n in SEQUENCES:
            spec = SEQUENCES[n]()
            root = args.out / n
            ok = (root / ".stamp").exists() and (root / ".stamp").read_text().strip() == generator_hash()
            print(f"{n}: {spec.n_frames} frames, {spec.path.length:.2f} m, "
                  f"{'rendered' if ok else 'not rendered'} ({root}) - {spec.description}")
        return 0
    for n in names:
        root = build(n, args.out, args.force)
        print(summary(root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
