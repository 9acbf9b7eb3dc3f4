"""Statistics of rendered views and view pairs, from exact ray casts: covisibility (overlap), parallax, and how much
of a view one plane or one kind of surface takes.

Covisibility of a pixel of view a in view b: cast its ray in a (the surface point X), project X into b, and cast b's
ray through that exact (sub-pixel) position; X is visible in b when it lies in b's image, in front of b, and b's
ray hits it (same depth to a relative 1e-6), i.e. a depth test against b's depth at the projected point itself,
with no depth-map resolution or interpolation involved. The parallax of X is the angle between the rays C_a -> X
and C_b -> X.

Not here: choosing views (the set builders do that), image-based statistics (texture, contrast).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scene import NEAR, Camera, Scene


def pixel_grid(camera: Camera, step: int) -> np.ndarray:
    """Pixel centres on a grid of stride ``step`` (N x 2, float64), centred in the image."""
    vs, us = np.mgrid[step // 2:camera.height:step, step // 2:camera.width:step]
    return np.c_[us.ravel(), vs.ravel()].astype(np.float64)


@dataclass
class Covisibility:
    """Surface points of view a's pixels ``uv_a`` (those that hit something), their positions ``uv_b`` in view b
    and whether b sees them (``visible``)."""

    points: np.ndarray
    uv_a: np.ndarray
    uv_b: np.ndarray
    visible: np.ndarray

    @property
    def overlap(self) -> float:
        """Fraction of a's points that b sees."""
        return float(self.visible.mean()) if len(self.visible) else 0.0


def covisibility(scene: Scene, cam_a: Camera, cam_b: Camera, uv_a: np.ndarray) -> Covisibility:
    ha = scene.cast(cam_a, uv_a)
    hit = ha.surface >= 0
    P, uv_a = ha.points()[hit], uv_a[hit]
    uv_b, z = cam_b.project(P)
    inside = ((z > NEAR) & (uv_b[:, 0] >= -0.5) & (uv_b[:, 0] < cam_b.width - 0.5)
              & (uv_b[:, 1] >= -0.5) & (uv_b[:, 1] < cam_b.height - 0.5))
    visible = np.zeros(len(P), bool)
    hb = scene.cast(cam_b, uv_b[inside])
    visible[inside] = np.abs(hb.depth - z[inside]) <= 1e-6 * z[inside]
    return Covisibility(P, uv_a, uv_b, visible)


def parallax_deg(points: np.ndarray, Ca: np.ndarray, Cb: np.ndarray) -> np.ndarray:
    """Angle (deg) between the rays from the two camera centres to each point (N x 3)."""
    ra, rb = points - Ca, points - Cb
    c = np.einsum("ij,ij->i", ra, rb) / (np.linalg.norm(ra, axis=1) * np.linalg.norm(rb, axis=1))
    return np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))


def fractions(scene: Scene, surface: np.ndarray) -> dict:
    """Shares of a surface-index map (any shape; -1 = nothing): ``dominant_plane`` (largest single plane),
    ``dominant_plane_id``, ``planes`` (share per plane id), ``plain`` (untextured surfaces), ``plain_wall``
    (untextured wall paint), ``furniture``, ``by_kind``."""
    s = np.asarray(surface).ravel()
    n = max(len(s), 1)
    planes = np.bincount(scene.plane_of[s] + 1)[1:] / n  # plane_of[-1] = -1: no hit
    kinds = scene.kind_of[s]
    plain = scene.plain_of[s]
    plain_wall = float(np.mean((kinds == "wall") & plain))
    by_kind = {k: float(np.mean(kinds == k)) for k in np.unique(kinds) if k}
    pid = int(np.argmax(planes)) if len(planes) else -1
    return {"dominant_plane": float(planes.max()) if len(planes) else 0.0, "dominant_plane_id": pid,
            "planes": planes, "plain": float(np.mean(plain)), "plain_wall": plain_wall,
            "furniture": by_kind.get("furniture", 0.0),
            "by_kind": by_kind}
