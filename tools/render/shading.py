"""Lighting: Lambertian surfaces lit by point lights (inverse-square falloff) plus a constant ambient term, with
optional hard shadows cast by the scene's boxes.

Irradiance at a hit point P with the normal n facing the viewer, for each light at L with intensity I and colour c:
E = ambient + sum_lights c * I * max(0, n.(L - P)) / |L - P|^3 * V(P, L), where V is 1 unless the segment P -> L
passes through a box (shadow ray, exact slab test in the box's frame). The rendered radiance is albedo * E (the
1/pi of a Lambertian BRDF is folded into I). Moving the light between two views changes the shading pattern, not
the geometry, which is exactly the photometric change a matcher has to survive.

Why only boxes cast shadows: the lights are inside convex rooms, so walls, floor, ceiling and the posters flush
on them cannot occlude a light; only the free-standing furniture (boxes) can, and a slab test per box is several
times cheaper than testing its faces. The shadow rays are culled per box by the box's bounding cone seen from the
light. Not modelled: inter-reflections (the ambient term stands in for them), specular highlights, soft shadows,
area lights.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scene import Hits, Scene

SHADOW_EPS = 1e-4  # fraction of the shadow segment ignored at both ends (the surface the point lies on)


@dataclass(frozen=True)
class PointLight:
    """An isotropic point light: ``intensity`` is the irradiance it gives 1 m away on a surface facing it."""

    position: tuple
    intensity: float = 1.0
    colour: tuple = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class Lighting:
    """Point lights plus a constant RGB ambient irradiance (stand-in for light bounced off the room)."""

    lights: tuple
    ambient: tuple = (0.0, 0.0, 0.0)


def irradiance(scene: Scene, hits: Hits, lighting: Lighting, visibility: list | None = None) -> np.ndarray:
    """RGB irradiance (float32, shape of the hits + (3,)) at the hit points; 0 where nothing is hit.
    ``visibility``: per light, a boolean array of the hits' shape (``visible``), None: no shadows."""
    hit = hits.surface >= 0
    P = np.where(hit[..., None], hits.points(), 0).astype(np.float32)
    n = scene.facing_normals(hits)
    E = np.broadcast_to(np.asarray(lighting.ambient, np.float32), P.shape).copy()
    for k, light in enumerate(lighting.lights):
        l = np.asarray(light.position, np.float32) - P
        r2 = np.einsum("...j,...j->...", l, l)
        direct = light.intensity * np.maximum(np.einsum("...j,...j->...", n, l), 0) / (r2 * np.sqrt(r2))
        if visibility is not None:
            direct *= visibility[k]
        E += direct[..., None] * np.asarray(light.colour, np.float32)
    return np.where(hit[..., None], E, 0).astype(np.float32)


def visible(scene: Scene, hits: Hits, light: PointLight, reuse: tuple | None = None) -> np.ndarray:
    """Whether ``light`` reaches each hit point (boolean, the hits' shape; also True where nothing is hit or the
    surface faces away). ``reuse`` = (hits0, visible0) of the same pixels (the pixel-centre cast): where hits0 saw
    the same surface its answer is taken as is, so a shadow edge inside a surface is resolved per pixel, not per
    sub-sample, at a quarter of the cost."""
    vis = np.ones(hits.depth.shape, bool)
    todo = hits.surface >= 0
    if reuse is not None:
        same = hits.surface == reuse[0].surface
        vis[same] = reuse[1][same]
        todo &= ~same
    idx = np.nonzero(todo)
    L = np.asarray(light.position, np.float32)
    P = np.stack([hits.origin[j] + hits.depth[idx] * hits.d[j][idx] for j in range(3)], -1).astype(np.float32)
    n = scene.facing_normals(hits, idx)
    lit = np.einsum("ij,ij->i", n, L - P) > 0
    vis[tuple(i[lit] for i in idx)] = ~occluded(scene.boxes, P[lit], L)
    return vis


def occluded(boxes: list, P: np.ndarray, L: np.ndarray) -> np.ndarray:
    """Whether the segment from each point (N x 3) to the light L passes through any box."""
    out = np.zeros(len(P), bool)
    w = P - L
    wn = np.sqrt(np.einsum("ij,ij->i", w, w))
    for box in boxes:
        wc = (box.centre - L).astype(np.float32)
        dist, rho = float(np.linalg.norm(wc)), float(np.linalg.norm(box.half))
        cand = ~out
        if dist > rho:  # bounding cone of the box from the light: only points behind it can be shadowed
            cos_a = np.sqrt(1 - (rho / dist) ** 2)
            cand &= (w @ (wc / dist) >= cos_a * wn) & (wn >= dist - rho)
        idx = np.nonzero(cand)[0]
        if len(idx):
            out[idx] = _slab(box, P[idx], L)
    return out


def _slab(box, P: np.ndarray, L: np.ndarray) -> np.ndarray:
    """Segment P -> L (parameter 0..1) against the box, in the box frame: the slab intervals must overlap inside
    (SHADOW_EPS, 1 - SHADOW_EPS)."""
    ax = box.axes.astype(np.float32)
    c = box.centre.astype(np.float32)
    p = (P - c) @ ax.T
    D = (L - c) @ ax.T - p
    h = box.half.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-h - p) / D
        t2 = (h - p) / D
    tmin = np.max(np.minimum(t1, t2), axis=1)
    tmax = np.min(np.maximum(t1, t2), axis=1)
    return (tmin < tmax) & (tmax > SHADOW_EPS) & (tmin < 1 - SHADOW_EPS)
