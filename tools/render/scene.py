"""Scene geometry and exact ray casting in numpy: textured planar parallelograms, oriented boxes, pinhole cameras.

World and camera axes are OpenCV's (x right, y down, z forward); a camera maps a world point X to
x_cam = R (X - C) (``R`` world->camera, ``C`` its centre) and to pixels with ``K`` (pixel centres at integer
coordinates). A pixel's ray is X(lam) = C + lam * d with d = R^T K^-1 (u, v, 1), so the ray parameter ``lam`` of a
hit *is* its depth along the optical axis; every quantity of the ground truth (depth, surface, the point on it) is
computed in float64 from that closed form, not from a mesh or a z-buffer resolution.

Why parallelograms: indoor scenes are boxes (walls, floors, furniture, posters), and a ray/parallelogram hit has a
closed form through the dual basis (s = q.du, t = q.dv), exact for any parallelogram and cheap to vectorise over
all pixels. ``Scene.cast_grid`` tests each surface only on the pixels inside its projected bounding box (the
near-clipped corners' projection), which changes no result (the same elementwise float64 arithmetic on fewer
pixels) but makes a room of ~60 surfaces cost little more than its visible area.

Not here: light and shading (``shading``), supersampling and the output frame (``frame``), sensor effects
(``sensor``), the rooms themselves (``rooms``). No lens distortion, no transparency, no curved surfaces.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from . import textures

NEAR = 1e-6  # hits closer than this along the optical axis are ignored (the camera is not inside a surface)


def look_at(C: np.ndarray, target: np.ndarray, roll: float) -> np.ndarray:
    """World->camera rotation R (x_cam = R (X - C)) looking from C at target, y down, with roll (rad)."""
    z = target - C
    z /= np.linalg.norm(z)
    up = np.array([0.0, 1.0, 0.0])  # y down in the world
    x = np.cross(up, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    cr, sr = math.cos(roll), math.sin(roll)
    Rr = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return Rr @ R


def relative_pose(Ra: np.ndarray, Ca: np.ndarray, Rb: np.ndarray, Cb: np.ndarray):
    """World->camera rotations and centres of views a and b -> (R, t) with x_b = R x_a + t (t metric)."""
    R = Rb @ Ra.T
    t = Rb @ (Ca - Cb)
    return R, t


@dataclass(frozen=True)
class Camera:
    """Pinhole camera: intrinsics ``K`` (3x3, no skew), image size, world->camera rotation ``R`` and centre ``C``."""

    K: np.ndarray
    width: int
    height: int
    R: np.ndarray
    C: np.ndarray

    @property
    def t(self) -> np.ndarray:
        """Translation of the world->camera map x_cam = R X + t."""
        return -self.R @ self.C

    def directions(self, u: np.ndarray, v: np.ndarray):
        """World ray directions R^T K^-1 (u, v, 1) of pixel coordinates u, v (any shape): three arrays dx, dy, dz
        (unit z in the camera frame, so the ray parameter is the depth)."""
        M = np.linalg.inv(self.K).T @ self.R
        return tuple(u * M[0, j] + v * M[1, j] + M[2, j] for j in range(3))

    def to_camera(self, X: np.ndarray) -> np.ndarray:
        """World points (N x 3) -> camera frame (N x 3)."""
        return (np.asarray(X, np.float64) - self.C) @ self.R.T

    def project(self, X: np.ndarray):
        """World points (N x 3) -> pixel coordinates (N x 2) and depth z (N); z <= 0 means behind the camera."""
        Xc = self.to_camera(X)
        z = Xc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = (Xc[:, :2] / z[:, None]) * [self.K[0, 0], self.K[1, 1]] + [self.K[0, 2], self.K[1, 2]]
        return uv, z

    def scaled(self, factor: float) -> "Camera":
        """The same camera with an image ``factor`` times the size (pixel centres kept: c' = f (c + 0.5) - 0.5)."""
        K = self.K.copy()
        K[0, 0] *= factor
        K[1, 1] *= factor
        K[0, 2] = factor * (K[0, 2] + 0.5) - 0.5
        K[1, 2] = factor * (K[1, 2] + 0.5) - 0.5
        return Camera(K, int(round(self.width * factor)), int(round(self.height * factor)), self.R, self.C)


class Rect:
    """A textured parallelogram: p(s, t) = o + s * u + t * v, s, t in [0, 1]; the texture repeats ``rep`` times.

    ``tex`` is a texture name (``textures.load``) or an RGB float32 image. ``plane`` groups coplanar surfaces (a
    poster on its wall) for the dominant-plane statistics; ``kind`` labels it (wall, floor, poster, furniture...);
    ``plain`` marks untextured paint."""

    def __init__(self, o, u, v, tex, rep=(1, 1), texels_per_m: float = 200.0, plane: int | None = None,
                 kind: str = "", plain: bool = False):
        self.o, self.u, self.v = (np.asarray(x, np.float64) for x in (o, u, v))
        self.n = np.cross(self.u, self.v)
        # dual basis: q = s u + t v  <=>  s = q . du, t = q . dv (exact for any parallelogram, not only rectangles)
        self.du = np.cross(self.v, self.n) / (self.u @ np.cross(self.v, self.n))
        self.dv = np.cross(self.n, self.u) / (self.v @ np.cross(self.n, self.u))
        self.unit_normal = self.n / np.linalg.norm(self.n)
        self.tex_name = tex if isinstance(tex, str) else "<array>"
        self.rep, self.plane, self.kind, self.plain = rep, plane, kind, plain
        img = textures.load(tex) if isinstance(tex, str) else tex
        # prefilter the texture to about the texel density the renderer needs (no aliasing from minification)
        lu, lv = np.linalg.norm(self.u) / rep[0], np.linalg.norm(self.v) / rep[1]
        tw, th = max(16, int(round(lu * texels_per_m))), max(16, int(round(lv * texels_per_m)))
        # keep the photo's aspect roughly by cropping rather than stretching
        ih, iw = img.shape[:2]
        want = tw / th
        if iw / ih > want:
            cw = int(ih * want)
            img = img[:, (iw - cw) // 2:(iw - cw) // 2 + cw]
        else:
            ch = int(iw / want)
            img = img[(ih - ch) // 2:(ih - ch) // 2 + ch]
        interp = cv2.INTER_AREA if img.shape[1] > tw else cv2.INTER_CUBIC
        self.img = np.clip(cv2.resize(img, (tw, th), interpolation=interp), 0, 1)

    @property
    def corners(self) -> np.ndarray:
        return np.array([self.o, self.o + self.u, self.o + self.u + self.v, self.o + self.v])

    def point(self, s: np.ndarray, t: np.ndarray) -> np.ndarray:
        """World points at surface coordinates s, t (N) -> N x 3."""
        return self.o + np.asarray(s)[:, None] * self.u + np.asarray(t)[:, None] * self.v

    def intersect(self, C: np.ndarray, dx: np.ndarray, dy: np.ndarray, dz: np.ndarray):
        """Rays C + lam * d -> (lam, s, t, valid): lam = n.(o - C) / n.d, s = (C - o).du + lam d.du (same for t);
        valid: a finite hit in front of the camera (lam > NEAR) inside the parallelogram."""
        n, du, dv = self.n, self.du, self.dv
        num = n @ (self.o - C)
        cu, cv_ = (C - self.o) @ du, (C - self.o) @ dv
        with np.errstate(divide="ignore", invalid="ignore"):
            lam = num / (dx * n[0] + dy * n[1] + dz * n[2])
            s = cu + lam * (dx * du[0] + dy * du[1] + dz * du[2])
            t = cv_ + lam * (dx * dv[0] + dy * dv[1] + dz * dv[2])
            ok = np.isfinite(lam) & (lam > NEAR) & (s >= 0) & (s <= 1) & (t >= 0) & (t <= 1)
        return lam, s, t, ok

    def sample(self, s: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Bilinear lookup with wrap-around (repeated texture); texel centres at integer coordinates."""
        th, tw = self.img.shape[:2]
        x = (s * self.rep[0]) * tw - 0.5
        y = (t * self.rep[1]) * th - 0.5
        x0, y0 = np.floor(x), np.floor(y)
        fx, fy = (x - x0)[:, None], (y - y0)[:, None]
        x0i, y0i = x0.astype(np.int64), y0.astype(np.int64)
        x1i, y1i = (x0i + 1) % tw, (y0i + 1) % th
        x0i, y0i = x0i % tw, y0i % th
        im = self.img.reshape(-1, self.img.shape[2])  # gathers by flat index: the same texels, faster
        r0, r1 = y0i * tw, y1i * tw
        return ((1 - fy) * ((1 - fx) * im[r0 + x0i] + fx * im[r0 + x1i])
                + fy * ((1 - fx) * im[r1 + x0i] + fx * im[r1 + x1i]))


class Box:
    """An oriented box (rotated by ``yaw`` about the vertical y axis) as up to six textured faces, which also casts
    shadows (``shading``). ``centre`` is the box centre, ``size`` its full extents (x, y, z) in its own frame;
    ``textures`` maps face names (``+x -x +y -y +z -z``; ``-y`` is the top since y points down) to texture
    arguments of ``Rect``; faces without a texture are left out (the bottom of a box standing on the floor)."""

    FACES = ("+x", "-x", "+y", "-y", "+z", "-z")

    def __init__(self, centre, size, yaw: float, textures: dict, texels_per_m: float = 300.0, kind: str = "furniture"):
        self.centre = np.asarray(centre, np.float64)
        self.half = np.asarray(size, np.float64) / 2
        self.yaw = float(yaw)
        c, s = math.cos(yaw), math.sin(yaw)
        self.axes = np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]])  # rows: the box's x, y, z axes in the world
        self.faces = [self._face(f, textures[f], texels_per_m, kind) for f in self.FACES if f in textures]

    def _face(self, name: str, tex, texels_per_m: float, kind: str) -> Rect:
        k = "xyz".index(name[1])
        sign = 1.0 if name[0] == "+" else -1.0
        i, j = (0, 2) if k == 1 else (2 - k, 1)  # sides: u horizontal, v down (photos stand upright)
        h, ax = self.half, self.axes
        centre = self.centre + sign * h[k] * ax[k]
        u, v = 2 * h[i] * ax[i], 2 * h[j] * ax[j]
        return Rect(centre - u / 2 - v / 2, u, v, tex, texels_per_m=texels_per_m, kind=kind)

    def contains(self, X: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Whether world points (N x 3) lie inside the box grown by ``margin``."""
        q = (np.atleast_2d(X) - self.centre) @ self.axes.T
        return np.all(np.abs(q) <= self.half + margin, axis=1)


@dataclass
class Hits:
    """Result of casting rays from ``origin`` along ``d`` (three arrays of the rays' shape): ``depth`` (the ray
    parameter = z along the optical axis; inf where nothing is hit), ``surface`` (index into ``Scene.surfaces``,
    -1: none) and the surface coordinates ``s``, ``t`` of the hit."""

    origin: np.ndarray
    d: tuple
    depth: np.ndarray
    surface: np.ndarray
    s: np.ndarray
    t: np.ndarray

    def points(self) -> np.ndarray:
        """World points of the hits (shape + (3,)); inf/nan where nothing is hit."""
        return np.stack([self.origin[j] + self.depth * self.d[j] for j in range(3)], -1)


class Scene:
    """Surfaces (``Rect``; boxes contribute their faces) and shadow casters (the boxes). Surfaces without a
    ``plane`` get a plane id of their own."""

    def __init__(self, surfaces: list, boxes: tuple = ()):
        self.boxes = list(boxes)
        self.surfaces = list(surfaces) + [f for b in self.boxes for f in b.faces]
        next_id = max([r.plane for r in self.surfaces if r.plane is not None], default=-1) + 1
        for r in self.surfaces:
            if r.plane is None:
                r.plane, next_id = next_id, next_id + 1
        self.plane_of = np.array([r.plane for r in self.surfaces] + [-1])  # index -1 (no hit) -> plane -1
        self.normals = np.array([r.unit_normal for r in self.surfaces] + [[0.0, 0.0, 0.0]])
        self.kind_of = np.array([r.kind for r in self.surfaces] + [""])
        self.plain_of = np.array([r.plain for r in self.surfaces] + [False])

    def _cast(self, origin, d, boxes=None) -> Hits:
        """Nearest valid hit over all surfaces (ties: the lower index); ``boxes`` optionally restricts each surface
        to a slice of the ray arrays (``None`` entry: skip the surface)."""
        shape = d[0].shape
        best = np.full(shape, np.inf)
        idx = np.full(shape, -1, np.int64)
        S, T = np.zeros(shape), np.zeros(shape)
        for i, r in enumerate(self.surfaces):
            sl = (...,) if boxes is None else boxes[i]
            if sl is None:
                continue
            lam, s, t, ok = r.intersect(origin, d[0][sl], d[1][sl], d[2][sl])
            ok &= lam < best[sl]
            best[sl] = np.where(ok, lam, best[sl])
            idx[sl] = np.where(ok, i, idx[sl])
            S[sl] = np.where(ok, s, S[sl])
            T[sl] = np.where(ok, t, T[sl])
        return Hits(origin, d, best, idx, S, T)

    def cast(self, camera: Camera, uv: np.ndarray) -> Hits:
        """Ray-cast pixel coordinates uv (N x 2) of ``camera``."""
        uv = np.asarray(uv, np.float64)
        return self._cast(camera.C, camera.directions(uv[:, 0], uv[:, 1]))

    def cast_grid(self, camera: Camera, ox: float = 0.0, oy: float = 0.0) -> Hits:
        """Ray-cast every pixel (u + ox, v + oy) of ``camera`` (arrays of shape height x width), each surface only
        on the pixels of its projected bounding box."""
        vs, us = np.mgrid[0:camera.height, 0:camera.width]
        d = camera.directions(us + ox, vs + oy)
        boxes = [self._pixel_box(r, camera) for r in self.surfaces]
        return self._cast(camera.C, d, boxes)

    @staticmethod
    def _pixel_box(r: Rect, camera: Camera, margin: int = 2):
        """Slice (rows, columns) of the pixels whose rays (offsets up to half a pixel) may hit ``r``: the bounding box
        of its corners clipped to z >= NEAR / 10 and projected, grown by ``margin`` pixels; None if behind."""
        Xc = camera.to_camera(r.corners)
        zn = NEAR / 10
        poly = []
        for a, b in zip(Xc, np.roll(Xc, -1, axis=0)):
            if a[2] >= zn:
                poly.append(a)
            if (a[2] >= zn) != (b[2] >= zn):
                poly.append(a + (zn - a[2]) / (b[2] - a[2]) * (b - a))
        if not poly:
            return None
        P = np.array(poly)
        K = camera.K
        u = K[0, 0] * P[:, 0] / P[:, 2] + K[0, 2]
        v = K[1, 1] * P[:, 1] / P[:, 2] + K[1, 2]
        lim = 4.0 * (camera.width + camera.height)
        u, v = np.clip(u, -lim, lim), np.clip(v, -lim, lim)
        c0, c1 = max(0, int(math.floor(u.min())) - margin), min(camera.width, int(math.ceil(u.max())) + margin + 1)
        r0, r1 = max(0, int(math.floor(v.min())) - margin), min(camera.height, int(math.ceil(v.max())) + margin + 1)
        if c0 >= c1 or r0 >= r1:
            return None
        return (slice(r0, r1), slice(c0, c1))

    def albedo(self, hits: Hits) -> np.ndarray:
        """Texture colour (float32 RGB, bilinear) at each hit; 0 where nothing is hit."""
        col = np.zeros((hits.depth.size, 3), np.float32)
        surf = hits.surface.ravel()
        order = np.argsort(surf, kind="stable")
        ids, starts = np.unique(surf[order], return_index=True)
        ends = np.r_[starts[1:], len(order)]
        s, t = hits.s.ravel(), hits.t.ravel()
        for i, a, b in zip(ids, starts, ends):
            if i >= 0:
                m = order[a:b]
                col[m] = self.surfaces[i].sample(s[m], t[m])
        return col.reshape(hits.depth.shape + (3,))

    def facing_normals(self, hits: Hits, idx=None) -> np.ndarray:
        """Unit world normals of the hit surfaces turned towards the ray origin (float32, shape + (3,); 0: no hit);
        with ``idx`` (an index into the hits' arrays) only for those hits."""
        sel = (...,) if idx is None else idx
        n = self.normals[hits.surface[sel]].astype(np.float32)
        dot = sum(n[..., j] * hits.d[j][sel] for j in range(3))
        return np.where((dot > 0)[..., None], -n, n).astype(np.float32)
