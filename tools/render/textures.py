"""Texture images for the ray caster: real photos and material scans from local files, and plain paint.

Sources are Debian's ``opencv-doc`` example photos (``/usr/share/doc/opencv-doc/examples/data``, or
``$MATCHA_OPENCV_DATA``) and the images bundled in the scikit-image wheel (names ``"skimage:<name>"``). Every
texture is an RGB float32 array in [0, 1] (reflectance, i.e. albedo; no gamma is undone: the photos are treated
as if their 8-bit values were linear reflectances, which keeps the legacy ``rendered`` set's colours).

This module does not filter or map textures onto surfaces (``scene.Rect`` does the prefiltering to the texel
density a surface needs); it only loads, tints and synthesises them. ``plain`` makes the low-texture material of
painted walls: one albedo with a very faint, smooth variation, as real paint under even light shows almost no
texture at all (that is the point: feature detectors should find next to nothing there).
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import cv2
import numpy as np

OPENCV_DATA = Path(os.environ.get("MATCHA_OPENCV_DATA", "/usr/share/doc/opencv-doc/examples/data"))


@functools.lru_cache(maxsize=None)
def load(name: str) -> np.ndarray:
    """RGB float32 texture in [0, 1] from opencv-doc (file name) or scikit-image (``"skimage:<name>"``).
    Cached and read-only: callers must copy before modifying."""
    if name.startswith("skimage:"):
        from skimage import data

        img = getattr(data, name.split(":", 1)[1])()
        if img.ndim == 2:
            img = np.stack([img] * 3, -1)
        img = img[..., :3]
    else:
        bgr = cv2.imread(str(OPENCV_DATA / name), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SystemExit(f"missing texture {OPENCV_DATA / name}: install Debian's opencv-doc")
        img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    out = img.astype(np.float32) / 255.0
    out.flags.writeable = False
    return out


def aspect(name: str) -> float:
    """Width / height of a texture image."""
    h, w = load(name).shape[:2]
    return w / h


def material(name: str, tint=(1.0, 1.0, 1.0), contrast: float = 1.0) -> np.ndarray:
    """A material scan (e.g. a grey brick or gravel photo) recoloured: the grey level's deviation from its mean is
    scaled by ``contrast`` around the mean, then multiplied by ``tint`` (RGB albedo of the material)."""
    grey = load(name).mean(axis=2, keepdims=True)
    m = float(grey.mean())
    g = np.clip(m + contrast * (grey - m), 0, 1) / max(m, 1e-6)
    return np.clip(g * np.asarray(tint, np.float32), 0, 1).astype(np.float32)


def mosaic(images: list, rng: np.random.Generator, n: int, turns: bool, flips: bool) -> np.ndarray:
    """An n x n mosaic of randomly chosen ``images`` (all resized to the first one's size), each cell randomly
    mirrored (``flips``) and turned by quarter turns (``turns``, square cells only). Tiling one scan repeats it
    exactly every tile, and matchers then find whole families of consistent wrong matches one tile over (a
    synthetic artefact, real carpets and walls do not repeat to the pixel); the mosaic's period is n tiles and
    neighbouring cells differ."""
    h, w = images[0].shape[:2]
    rows = []
    for _ in range(n):
        row = []
        for _ in range(n):
            img = images[rng.integers(len(images))]
            img = img if img.shape[:2] == (h, w) else cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
            if flips:
                img = img[::-1] if rng.random() < 0.5 else img
                img = img[:, ::-1] if rng.random() < 0.5 else img
            if turns and h == w:
                img = np.rot90(img, int(rng.integers(4)))
            row.append(img)
        rows.append(np.concatenate(row, axis=1))
    return np.ascontiguousarray(np.concatenate(rows, axis=0))


def plain(albedo, rng: np.random.Generator, amplitude: float = 0.01, size: int = 128) -> np.ndarray:
    """Painted surface: uniform ``albedo`` (RGB) times 1 + a smooth random variation of relative ``amplitude``
    (Gaussian-blurred white noise, correlation length ~size/8 texels), so the paint is not mathematically flat."""
    from scipy.ndimage import gaussian_filter

    noise = gaussian_filter(rng.normal(size=(size, size)), size / 16, mode="wrap").astype(np.float32)
    noise *= amplitude / max(float(noise.std()), 1e-9)
    return np.clip((1 + noise)[..., None] * np.asarray(albedo, np.float32), 0, 1).astype(np.float32)
