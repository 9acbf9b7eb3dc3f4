"""Moving boxes for the point-tracking clips (``tools/track_clips.py``): where an occluder is (placed relative to
the camera at a reference frame, then moving in a straight line and spinning), its textured box for the ray caster
at a time, and the oriented-box geometry that checks a path keeps clear of the room and the camera."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from render.rooms import CARDBOARD
from render.scene import Box


@dataclass(frozen=True)
class Occluder:
    """A moving box, placed relative to the camera at clip frame ``ref``: centre ``depth`` m ahead (horizontally)
    and ``lateral`` m to the right of the camera, ``height`` m above the floor (the centre; a box sliding on the
    floor has height = size[1] / 2); it moves in a straight line at ``speed`` m/s in the direction ``heading_deg``
    (0: the camera's right at ``ref``, 90: away from it), turned ``yaw_deg`` from the camera's heading at ``ref``
    (0: its -z face, the front photo, faces the camera) and spinning at ``spin_deg_s`` about the vertical, from
    clip frame ``start`` to ``stop`` (None: to the end); before and after it stands still in its pose there (the
    paths then stay inside the room)."""

    name: str
    size: tuple  # (x, y, z) m
    photos: tuple  # front (-z), back (+z), top (-y)
    ref: int
    depth: float
    lateral: float
    height: float
    speed: float
    heading_deg: float
    yaw_deg: float = 0.0
    spin_deg_s: float = 0.0
    start: int = 0
    stop: int | None = None


def box_axes(yaw: float) -> np.ndarray:
    """Rows: the box's x, y, z axes in the world (as ``render.scene.Box``)."""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]])


class MovingBox:
    """An ``Occluder`` of a clip in room coordinates: a straight path c(t) = c_ref + vel (t - t_ref), yaw(t).
    ``seq``: the VO sequence (its camera path), ``frame_time``: clip frame -> time, ``card_seed``: the seed of the
    cardboard texture of its plain faces."""

    def __init__(self, occ: Occluder, seq, frame_time, card_seed: list):
        self.occ = occ
        t_ref = frame_time(occ.ref)
        _, C = seq.path.pose(t_ref)
        yaw_cam = float(seq.path.yaw(t_ref))
        fwd = np.array([math.sin(yaw_cam), 0.0, math.cos(yaw_cam)])
        right = np.array([math.cos(yaw_cam), 0.0, -math.sin(yaw_cam)])
        self.t_ref = t_ref
        self.t_start = frame_time(occ.start)
        self.t_stop = math.inf if occ.stop is None else frame_time(occ.stop)
        self.c_ref = np.array([C[0], -occ.height, C[2]]) + occ.depth * fwd + occ.lateral * right
        h = math.radians(occ.heading_deg)
        self.vel = occ.speed * (math.cos(h) * right + math.sin(h) * fwd)
        self.yaw_ref = yaw_cam + math.radians(occ.yaw_deg)
        self.spin = math.radians(occ.spin_deg_s)
        card = CARDBOARD.image(np.random.default_rng(card_seed))
        front, back, top = occ.photos
        self.textures = {"+x": card, "-x": card, "+z": back, "-z": front, "-y": top}
        if occ.height > occ.size[1] / 2 + 1e-9:  # carried: its bottom can be seen
            self.textures["+y"] = card
        self.half = np.asarray(occ.size, np.float64) / 2

    def pose(self, t: float):
        """(centre, yaw) at time t."""
        dt = min(max(t, self.t_start), self.t_stop) - self.t_ref
        return self.c_ref + self.vel * dt, self.yaw_ref + self.spin * dt

    def box(self, t: float) -> Box:
        c, yaw = self.pose(t)
        return Box(c, self.occ.size, yaw, self.textures, texels_per_m=400, kind="occluder")


def obb_overlap(ca, ha, Ra, cb, hb, Rb, margin: float = 0.0) -> bool:
    """Separating-axis test of two oriented boxes (centre, half extents, rows = axes), each grown by margin / 2."""
    d = cb - ca
    for L in list(Ra) + list(Rb) + [np.cross(a, b) for a in Ra for b in Rb]:
        n = np.linalg.norm(L)
        if n < 1e-9:
            continue
        L = L / n
        if abs(d @ L) > np.sum(ha * np.abs(Ra @ L)) + np.sum(hb * np.abs(Rb @ L)) + margin:
            return False
    return True


def point_box_distance(X: np.ndarray, c: np.ndarray, half: np.ndarray, axes: np.ndarray) -> float:
    q = np.abs(axes @ (X - c)) - half
    out = np.linalg.norm(np.maximum(q, 0))
    return float(out if out > 0 else q.max())
