"""Rendering one view: supersampled colour plus the exact geometry (depth, surface, normal) at the pixel centres.

The colour is the mean of ss x ss sub-pixel ray casts (offsets -0.5 + (k + 0.5) / ss, summed in float32 in a
fixed order, so a frame is bit-reproducible); with ``lighting`` each sample is albedo * irradiance (linear
radiance), without it the plain albedo (the legacy ``rendered`` set). Shadow rays are traced for the pixel
centres and re-used by the sub-samples that see the same surface (``shading.visible``). The geometry comes from
one more cast through the pixel centres, so ``depth[v, u]`` is exactly the depth of the surface point that
projects to (u, v): ground truth for pose, flow, stereo or tracking, not an average over the pixel footprint.

Not here: the camera's sensor (``sensor.capture`` turns the radiance into an 8-bit image), file formats.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import shading
from .scene import Camera, Scene


@dataclass
class Frame:
    """``colour``: H x W x 3 float32 linear radiance (or albedo); ``depth``: H x W float64, z along the optical axis
    at the pixel centres, inf where no surface; ``surface``: H x W int64 index into ``Scene.surfaces`` (-1: none);
    ``normal``: H x W x 3 float32 world normals facing the camera (0: none). Geometry is None when not asked for."""

    colour: np.ndarray
    depth: np.ndarray | None = None
    surface: np.ndarray | None = None
    normal: np.ndarray | None = None


def render(scene: Scene, camera: Camera, lighting: shading.Lighting | None = None, ss: int = 2,
           shadows: bool = False, geometry: bool = True) -> Frame:
    """Colour (ss x ss supersampled; lit when ``lighting`` is given, with hard shadows when ``shadows``) and,
    when ``geometry``, depth, surface and normal at the pixel centres."""
    centre = scene.cast_grid(camera) if geometry or (lighting is not None and shadows) else None
    vis_centre = None
    if lighting is not None and shadows:
        vis_centre = [shading.visible(scene, centre, light) for light in lighting.lights]
    acc = np.zeros((camera.height, camera.width, 3), np.float32)
    offs = [(-0.5 + (k + 0.5) / ss) for k in range(ss)]
    for oy in offs:
        for ox in offs:
            hits = scene.cast_grid(camera, ox, oy)
            col = scene.albedo(hits)
            if lighting is not None:
                vis = None if vis_centre is None else [
                    shading.visible(scene, hits, light, (centre, v)) for light, v in zip(lighting.lights, vis_centre)]
                col *= shading.irradiance(scene, hits, lighting, vis)
            acc += col
    frame = Frame(acc / (ss * ss))
    if geometry:
        frame.depth, frame.surface, frame.normal = centre.depth, centre.surface, scene.facing_normals(centre)
    return frame
