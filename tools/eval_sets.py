#!/usr/bin/env python3
"""Relative-pose evaluation sets with real ground truth, for ``matcha eval`` and ``tools/eval_baselines.py``.

Writes, under ``$MATCHA_CACHE/eval/<set>/`` (default ``~/.cache/matcha/eval``), PNG images and a ``manifest.json``:

    {"name": ..., "description": ..., "generator_hash": ..., "pairs": [
      {"id": ..., "image_a": <path relative to the manifest>, "image_b": ...,
       "camera_a": {"fx","fy","cx","cy","dist":[k1,k2,p1,p2,k3], "width","height"}, "camera_b": {...},
       "R": 3x3, "t": [3]}], "quality": {...}}

Conventions: x_b = R x_a + t (a point in camera a's frame mapped to camera b's frame, OpenCV axes: x right, y down,
z forward); pixel centres at integer coordinates (OpenCV); ``t`` is of unit length (only its direction is scored).

Sets (all inputs are local: Debian's ``opencv-doc`` and the images bundled in the scikit-image wheel):

``chessboard``
    OpenCV's stereo calibration sample (left/right01..14, no 10). Ground truth from the board: 9x6 inner corners
    (``findChessboardCorners`` + ``cornerSubPix``), ``solvePnP`` (iterative, refined with Levenberg-Marquardt)
    -> board pose per image -> relative poses. The shipped ``intrinsics.yml`` fits the left images at 1.3-2.9 px
    RMS, so each camera is re-calibrated from the same views (``calibrateCamera``, k1 k2 p1 p2 k3; the manifest
    carries those intrinsics). Images with a PnP reprojection RMS > 0.5 px are dropped. Pairs: the 13 stereo pairs leftNN-rightNN (a rigid scene
    captured at one instant) and ~15 temporal pairs leftNN-leftMM whose relative rotation is 5-45 deg. In the
    temporal pairs the *camera is static and the board moves*, so only the board obeys the ground truth: everything
    outside the board (its outer corner grid grown by one square) is blacked out in those images.
``motorcycle``
    Middlebury 2014 "Motorcycle" as bundled by scikit-image (``data.stereo_motorcycle``): rectified, downscaled by 4
    with ``downscale_local_mean``. Middlebury calib.txt: cam0 f=3979.911, cx=1244.772, cy=1019.507; cam1
    cx=1369.115 (doffs=124.343); baseline 193.001 mm; 2964x2000. Downscaling by 4 with block means maps an original
    pixel centre x to (x - 1.5)/4, so f=994.978, cx0=310.818, cx1=341.904, cy=254.502 (skimage's docstring divides
    by 4 without the half-pixel shift: cx0=311.193, cy=254.877; the 0.375 px difference is below the matchers'
    noise). R = I, t = (-1, 0, 0) (the right camera sits at +x of the left one). Pairs: im0-im1 and the reversed
    im1-im0 (R = I, t = (+1, 0, 0)).
``rendered``
    A synthetic room ray-cast per pixel in numpy: textured rectangles (back wall, floor, ceiling, side walls, a
    box, cards) with real photos as textures, exact z-buffered intersection, bilinear texture lookup, 2x2
    supersampling, 640x480, K = (525, 525, 319.5, 239.5), no distortion. 24 view pairs with known poses (rotation
    5-30 deg, baseline 0.2-1 m, scene depth ~2-7 m); the second view gets a gain/gamma change and Gaussian noise
    (sigma 2 grey levels). Seeded, deterministic.
``rooms``
    The hard synthetic set: 122 pairs in 6 furnished rooms (3x4 to 8x12 m, 2.4-3.2 m high; ``render.rooms``) with
    plain painted walls, brick and notice-board walls, photos hung as posters, carpet/wood/concrete/paver floors,
    cabinets, crates, benches, beds and tables that occlude and cast hard shadows. Each view is lit by a point
    light (Lambertian, 1/r^2, ambient) that moves 0.3-2 m between a and b, then goes through a camera model
    (``render.sensor``): auto-exposure x gain 0.6-1.5 (b), white balance +-15%, cos^4 vignetting, Poisson-Gaussian
    noise, defocus or motion blur on ~25% of the b images, JPEG q60-90 on ~30% of the images. 640x480,
    K = (525, 525, 319.5, 239.5) (~10% of the pairs f = 420 or 700), no distortion. Categories with quotas
    (``category``): wall 30 (one textured wall / poster plane >= 70% of view a, 0.8-3 m away; 12 of them with 5-20%
    furniture in front), floor 20 (looking down 35-75 deg, floor >= 70%), general 25 (>= 3 planes, none above
    65%, median depth >= 1.2 m), small_baseline 15 (2-8 cm, median depth 1.5-6 m, rotation 2-20 deg),
    near_rotation 12 (0.3-1.5 cm, 5-30 deg), pure_rotation 8 (t = 0 exactly, ``"t": [0, 0, 0]``,
    ``"pure_rotation": true``: scored on rotation only), low_texture 12 (>= 50% plain wall); rotations 2-30 deg,
    baselines 0.1-1 m for the others. Every pair
    overlaps by >= 30% (view a's pixels seen by b, exact depth test); the manifest records per pair the overlap, the
    true median parallax, dominant-plane / plain-wall / furniture shares, median depth, rotation, baseline, light
    positions and all sensor settings, and view a's depth map is saved as ``depth/<id>_a.npy`` (float32, z along
    the optical axis, inf where nothing). Views are drawn by rejection sampling on 80x60 ray casts (category
    tests with margins, re-checked at full resolution); every pair has its own seeded generator, so one pair can
    be re-created alone (``RoomsPair(k)``). Builds in ~5 minutes on one core.

Idempotent: a set is rebuilt only when its manifest is missing or was written by a different version of this
script or of the renderer (``generator_hash`` = sha256 of this file and ``tools/render/*.py``). ``--force``
rebuilds.

Usage: python tools/eval_sets.py [--sets chessboard,motorcycle,rendered,rooms] [--out DIR] [--force]
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from render.frame import render
from render.rooms import RECIPES, Room, build_room, rendered_scene
from render.scene import Camera, Scene, look_at, relative_pose
from render.sensor import Sensor, capture, gain_gamma_noise
from render.shading import Lighting, PointLight
from render.views import covisibility, fractions, parallax_deg, pixel_grid
from render.textures import OPENCV_DATA

RENDER_PACKAGE = Path(__file__).resolve().parent / "render"
SETS = ("chessboard", "motorcycle", "rendered", "rooms")
BOARD = (9, 6)  # inner corners (columns, rows)
PNP_RMS_MAX = 0.5


def generator_hash() -> str:
    """sha256 over this script and the renderer's sources: a change to either rebuilds the sets."""
    h = hashlib.sha256(Path(__file__).read_bytes())
    for f in sorted(RENDER_PACKAGE.glob("*.py")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def default_out() -> Path:
    cache = os.environ.get("MATCHA_CACHE") or str(Path.home() / ".cache" / "matcha")
    return Path(cache) / "eval"


# ------------------------------------------------------------------------------------------------------------------
# small geometry helpers
# ------------------------------------------------------------------------------------------------------------------
def rot_angle_deg(R: np.ndarray) -> float:
    c = (np.trace(R) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def skew(t: np.ndarray) -> np.ndarray:
    return np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]], dtype=np.float64)


def camera_dict(K: np.ndarray, dist, width: int, height: int) -> dict:
    d = [float(x) for x in np.asarray(dist, dtype=np.float64).ravel()] if dist is not None else []
    d = (d + [0.0] * 5)[:5]
    return {"fx": float(K[0, 0]), "fy": float(K[1, 1]), "cx": float(K[0, 2]), "cy": float(K[1, 2]),
            "dist": d, "width": int(width), "height": int(height)}


def pair_entry(pid: str, img_a: str, img_b: str, cam_a: dict, cam_b: dict, R: np.ndarray, t: np.ndarray,
               **extra) -> dict:
    t = np.asarray(t, dtype=np.float64)
    n = float(np.linalg.norm(t))
    if n > 0:
        t = t / n
    e = {"id": pid, "image_a": img_a, "image_b": img_b, "camera_a": cam_a, "camera_b": cam_b,
         "R": [[float(v) for v in row] for row in np.asarray(R)], "t": [float(v) for v in t]}
    e.update(extra)
    return e


def write_manifest(root: Path, name: str, description: str, pairs: list, quality: dict) -> Path:
    m = {"name": name, "description": description, "generator_hash": generator_hash(),
         "convention": "x_b = R x_a + t (OpenCV camera axes); pixel centres at integer coordinates; t unit length",
         "quality": quality, "pairs": pairs}
    path = root / "manifest.json"
    tmp = root / "manifest.json.tmp"
    tmp.write_text(json.dumps(m, indent=1))
    tmp.replace(path)
    return path


def load_manifest(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def K_of(cam: dict) -> np.ndarray:
    return np.array([[cam["fx"], 0, cam["cx"]], [0, cam["fy"], cam["cy"]], [0, 0, 1]], dtype=np.float64)


# ------------------------------------------------------------------------------------------------------------------
# chessboard
# ------------------------------------------------------------------------------------------------------------------
def read_stereo_intrinsics(path: Path):
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    if not fs.isOpened():
        raise SystemExit(f"cannot read {path}: install Debian's opencv-doc (apt-get install opencv-doc)")
    out = {k: fs.getNode(k).mat() for k in ("M1", "D1", "M2", "D2")}
    fs.release()
    return out


def board_object_points(square: float = 1.0) -> np.ndarray:
    cols, rows = BOARD
    obj = np.zeros((rows * cols, 3), np.float64)
    obj[:, :2] = np.mgrid[0:cols, 0:rows].T.reshape(-1, 2) * square
    return obj


def detect_board(gray: np.ndarray):
    """Inner corners in OpenCV order (row-major over the 9x6 grid), subpixel; None when not found."""
    ok, corners = cv2.findChessboardCorners(gray, BOARD, flags=cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE)
    if not ok:
        return None
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 100, 1e-4)
    corners = cv2.cornerSubPix(gray, corners.astype(np.float32), (11, 11), (-1, -1), crit)
    return corners.reshape(-1, 2).astype(np.float64)


def reversed_corners(corners: np.ndarray) -> np.ndarray:
    """The same grid in OpenCV's other admissible order: a 9x6 board is symmetric under a 180 deg turn about its
    normal, so ``findChessboardCorners`` may start from either end; reversing the list is that turn."""
    return corners[::-1].copy()


def board_pose(corners: np.ndarray, K: np.ndarray, D: np.ndarray):
    obj = board_object_points()
    ok, rvec, tvec = cv2.solvePnP(obj, corners, K, D, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return None
    rvec, tvec = cv2.solvePnPRefineLM(obj, corners, K, D, rvec, tvec)
    proj, _ = cv2.projectPoints(obj, rvec, tvec, K, D)
    rms = float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - corners) ** 2, axis=1))))
    R, _ = cv2.Rodrigues(rvec)
    return R, tvec.reshape(3), rms


def relative(Ra, ta, Rb, tb):
    """Board->camera poses of a and b -> x_b = R x_a + t."""
    R = Rb @ Ra.T
    t = tb - R @ ta
    return R, t


def relative_unambiguous(pa, pb):
    """Relative pose of two views of the 180-deg-symmetric board: the two corner orders of view b give two
    hypotheses that differ by a 180 deg turn, and exactly one of them rotates by less than 90 deg. The board is
    never turned upside down between these views (they are at most 45 deg apart), so that one is the truth."""
    hyps = [relative(pa[0], pa[1], pb[0], pb[1]), relative(pa[0], pa[1], pb[3], pb[4])]
    return min(hyps, key=lambda h: rot_angle_deg(h[0]))


def board_mask(corners: np.ndarray, K: np.ndarray, D: np.ndarray, R: np.ndarray, t: np.ndarray, shape) -> np.ndarray:
    """The board region: the inner-corner grid grown by one square and a half on each side, projected."""
    cols, rows = BOARD
    m = 1.5
    quad = np.array([[-m, -m, 0], [cols - 1 + m, -m, 0], [cols - 1 + m, rows - 1 + m, 0], [-m, rows - 1 + m, 0]])
    # densify the edges so that lens distortion bends them as it should
    pts = []
    for i in range(4):
        p, q = quad[i], quad[(i + 1) % 4]
        for s in np.linspace(0, 1, 20, endpoint=False):
            pts.append(p + s * (q - p))
    rvec, _ = cv2.Rodrigues(R)
    proj, _ = cv2.projectPoints(np.array(pts), rvec, t, K, D)
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(proj.reshape(-1, 2)).astype(np.int32)], 255)
    return mask


def calibrate(corners: list, size) -> tuple:
    """Intrinsics (K, 5 distortion coefficients k1 k2 p1 p2 k3) from board views; returns (K, D, rms)."""
    obj = [board_object_points().astype(np.float32)] * len(corners)
    rms, K, D, _, _ = cv2.calibrateCamera(obj, [c.astype(np.float32) for c in corners], size, None, None)
    return K, D.ravel()[:5], float(rms)


def build_chessboard(root: Path) -> dict:
    """Ground truth from the board. The shipped ``intrinsics.yml`` (output of OpenCV's stereo_calib sample, with
    k1 = +0.30, k2 = -1.04 for the left camera) fits the left images badly (PnP RMS 1.3-2.9 px, all above the
    0.5 px cut), so each camera is re-calibrated here from the same board views (``calibrateCamera``, 5-parameter
    distortion), views with a PnP RMS > 0.5 px are dropped, the camera is calibrated again on the kept views, and
    the board poses are re-estimated with those intrinsics. Both fits are reported in ``quality``."""
    shipped = read_stereo_intrinsics(OPENCV_DATA / "intrinsics.yml")
    idx = [i for i in range(1, 15) if i != 10]
    images, corners, dropped = {}, {}, []
    for side in ("left", "right"):
        for i in idx:
            name = f"{side}{i:02d}"
            src = OPENCV_DATA / f"{name}.jpg"
            img = cv2.imread(str(src), cv2.IMREAD_GRAYSCALE)
            if img is None:
                raise SystemExit(f"missing {src}: install Debian's opencv-doc (apt-get install opencv-doc)")
            images[name] = img
            c = detect_board(img)
            if c is None:
                dropped.append((name, "board not found"))
                continue
            corners[name] = c
    size = (images["left01"].shape[1], images["left01"].shape[0])
    K, D, calib = {}, {}, {}
    shipped_rms, rms_all, poses = {}, {}, {}
    for side, (mk, dk) in (("left", ("M1", "D1")), ("right", ("M2", "D2"))):
        names = [n for n in corners if n.startswith(side)]
        for n in names:
            res = board_pose(corners[n], shipped[mk], shipped[dk].ravel())
            shipped_rms[n] = res[2] if res else float("inf")
        Ks, Ds, rms0 = calibrate([corners[n] for n in names], size)
        keep = [n for n in names if (board_pose(corners[n], Ks, Ds) or (0, 0, np.inf))[2] <= PNP_RMS_MAX]
        if len(keep) >= 3 and len(keep) < len(names):
            Ks, Ds, rms1 = calibrate([corners[n] for n in keep], size)
        else:
            rms1 = rms0
        K[side], D[side] = Ks, Ds
        calib[side] = {"K": Ks.tolist(), "dist": Ds.tolist(), "rms_all_views_px": rms0, "rms_kept_views_px": rms1,
                       "views_used": keep}
        for n in names:
            res = board_pose(corners[n], Ks, Ds)
            if res is None:
                dropped.append((n, "solvePnP failed"))
                continue
            R, t, rms = res
            rms_all[n] = rms
            if rms > PNP_RMS_MAX:
                dropped.append((n, f"PnP RMS {rms:.3f} px > {PNP_RMS_MAX}"))
                continue
            res_rev = board_pose(reversed_corners(corners[n]), Ks, Ds)
            if res_rev is None:
                dropped.append((n, "solvePnP failed (reversed order)"))
                continue
            poses[n] = (R, t, corners[n], res_rev[0], res_rev[1])
    h, w = images["left01"].shape
    cam = {s: camera_dict(K[s], D[s], w, h) for s in ("left", "right")}
    (root / "images").mkdir(parents=True, exist_ok=True)
    pairs = []
    stereo_R, stereo_t = [], []
    # stereo pairs: full images (rigid scene at one instant)
    for i in idx:
        a, b = f"left{i:02d}", f"right{i:02d}"
        if a not in poses or b not in poses:
            continue
        R, t = relative_unambiguous(poses[a], poses[b])
        stereo_R.append(R)
        stereo_t.append(t / np.linalg.norm(t))
        for n in (a, b):
            p = root / "images" / f"{n}.png"
            if not p.exists():
                cv2.imwrite(str(p), images[n])
        pairs.append(pair_entry(f"{a}-{b}", f"images/{a}.png", f"images/{b}.png", cam["left"], cam["right"], R, t,
                                kind="stereo", gt_rms_px=[rms_all[a], rms_all[b]],
                                baseline_board_squares=float(np.linalg.norm(t))))
    # temporal pairs of the left camera: board moves, camera static -> mask the background
    cand = []
    left = [f"left{i:02d}" for i in idx if f"left{i:02d}" in poses]
    for ia in range(len(left)):
        for ib in range(ia + 1, len(left)):
            a, b = left[ia], left[ib]
            R, t = relative_unambiguous(poses[a], poses[b])
            ang = rot_angle_deg(R)
            if 5.0 <= ang <= 45.0:
                cand.append((ang, a, b, R, t))
    cand.sort(key=lambda x: x[0])
    # choose ~15 spread over the rotation range, each image used a similar number of times
    take = []
    if cand:
        targets = np.linspace(cand[0][0], cand[-1][0], 15)
        used = set()
        for tg in targets:
            best = min((c for c in cand if (c[1], c[2]) not in used), key=lambda c: abs(c[0] - tg), default=None)
            if best is not None:
                used.add((best[1], best[2]))
                take.append(best)
    for ang, a, b, R, t in sorted(take, key=lambda x: (x[1], x[2])):
        for n in (a, b):
            p = root / "images" / f"{n}_board.png"
            if not p.exists():
                Rn, tn, c = poses[n][:3]
                m = board_mask(c, K["left"], D["left"], Rn, tn, images[n].shape)
                cv2.imwrite(str(p), np.where(m > 0, images[n], 0).astype(np.uint8))
        pairs.append(pair_entry(f"{a}-{b}", f"images/{a}_board.png", f"images/{b}_board.png", cam["left"],
                                cam["left"], R, t, kind="temporal", rotation_deg=ang,
                                gt_rms_px=[rms_all[a], rms_all[b]]))
    # GT quality: the rig is rigid, so all stereo pairs must give the same extrinsics
    spread_r, spread_t = [], []
    if stereo_R:
        Rm = stereo_R[0]
        # chordal L2 mean rotation
        M = sum(stereo_R)
        U, _, Vt = np.linalg.svd(M)
        Rm = U @ np.diag([1, 1, np.linalg.det(U @ Vt)]) @ Vt
        tm = np.mean(stereo_t, axis=0)
        tm /= np.linalg.norm(tm)
        spread_r = [rot_angle_deg(R @ Rm.T) for R in stereo_R]
        spread_t = [float(np.degrees(np.arccos(np.clip(t @ tm, -1, 1)))) for t in stereo_t]
    rms_kept = [rms_all[n] for n in poses]
    quality = {
        "calibration": calib,
        "pnp_rms_px_with_shipped_intrinsics_yml": {n: round(v, 4) for n, v in sorted(shipped_rms.items())},
        "pnp_rms_px": {n: round(v, 4) for n, v in sorted(rms_all.items())},
        "pnp_rms_px_max_kept": max(rms_kept) if rms_kept else None,
        "pnp_rms_px_median_kept": float(np.median(rms_kept)) if rms_kept else None,
        "dropped": [f"{n}: {why}" for n, why in dropped],
        "stereo_extrinsics_spread_deg": {"rotation_max": max(spread_r, default=None),
                                         "rotation_median": float(np.median(spread_r)) if spread_r else None,
                                         "translation_dir_max": max(spread_t, default=None),
                                         "translation_dir_median": float(np.median(spread_t)) if spread_t else None},
        "n_stereo": sum(p["kind"] == "stereo" for p in pairs),
        "n_temporal": sum(p["kind"] == "temporal" for p in pairs),
    }
    desc = ("OpenCV stereo calibration sample (opencv-doc left/right01..14), ground truth from the 9x6 chessboard "
            "(cornerSubPix; cameras re-calibrated from the board since the shipped intrinsics.yml fits at 1.3-2.9 px; "
            "solvePnP per image, views with RMS > 0.5 px dropped); stereo pairs leftNN-rightNN (full images) and temporal "
            "pairs leftNN-leftMM (5-45 deg; the board moved in front of a static camera, so the background is "
            "blacked out)")
    write_manifest(root, "chessboard", desc, pairs, quality)
    return quality


# ------------------------------------------------------------------------------------------------------------------
# motorcycle
# ------------------------------------------------------------------------------------------------------------------
MIDDLEBURY_MOTORCYCLE = {"f": 3979.911, "cx0": 1244.772, "cx1": 1369.115, "cy": 1019.507, "doffs": 124.343,
                         "baseline_mm": 193.001, "width": 2964, "height": 2000, "downscale": 4}


def motorcycle_cameras():
    c = MIDDLEBURY_MOTORCYCLE
    s = c["downscale"]
    # block-mean downscaling by s: original pixel centre x maps to (x - (s - 1) / 2) / s
    off = (s - 1) / 2.0
    K0 = np.array([[c["f"] / s, 0, (c["cx0"] - off) / s], [0, c["f"] / s, (c["cy"] - off) / s], [0, 0, 1]])
    K1 = np.array([[c["f"] / s, 0, (c["cx1"] - off) / s], [0, c["f"] / s, (c["cy"] - off) / s], [0, 0, 1]])
    return K0, K1


def build_motorcycle(root: Path) -> dict:
    from skimage import data

    left, right, disp = data.stereo_motorcycle()
    h, w = left.shape[:2]
    c = MIDDLEBURY_MOTORCYCLE
    if (w * c["downscale"], h * c["downscale"]) != (c["width"], c["height"]):
        raise SystemExit(f"unexpected motorcycle size {w}x{h}")
    (root / "images").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "images" / "im0.png"), cv2.cvtColor(left, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(root / "images" / "im1.png"), cv2.cvtColor(right, cv2.COLOR_RGB2BGR))
    np.save(root / "disp0.npy", disp.astype(np.float32))
    K0, K1 = motorcycle_cameras()
    cam0, cam1 = camera_dict(K0, None, w, h), camera_dict(K1, None, w, h)
    I = np.eye(3)
    pairs = [
        pair_entry("im0-im1", "images/im0.png", "images/im1.png", cam0, cam1, I, [-1.0, 0, 0], kind="stereo"),
        pair_entry("im1-im0", "images/im1.png", "images/im0.png", cam1, cam0, I, [1.0, 0, 0], kind="stereo"),
    ]
    valid = np.isfinite(disp)  # invalid pixels are inf in the bundled map (not NaN as the docstring says)
    dv = disp[valid]
    quality = {"calibration": {"fx": K0[0, 0], "cx0": K0[0, 2], "cx1": K1[0, 2], "cy": K0[1, 2],
                               "doffs_px": c["doffs"] / c["downscale"], "baseline_mm": c["baseline_mm"]},
               "gt_disparity_valid_fraction": float(valid.mean()),
               "depth_range_m": [float(c["f"] * c["baseline_mm"] / 1000 / (dv.max() * 4 + c["doffs"])),
                                 float(c["f"] * c["baseline_mm"] / 1000 / (dv.min() * 4 + c["doffs"]))]}
    desc = ("Middlebury 2014 Motorcycle (scikit-image data.stereo_motorcycle, rectified, downscaled x4); "
            "R = I, t along -x (im0->im1); calibration from Middlebury calib.txt scaled by 1/4 with the "
            "block-mean half-pixel shift; disparity ground truth in disp0.npy (x1 = x0 - d, checked photometrically; inf = unknown)")
    write_manifest(root, "motorcycle", desc, pairs, quality)
    return quality


# ------------------------------------------------------------------------------------------------------------------
# rendered
# ------------------------------------------------------------------------------------------------------------------
RENDER_W, RENDER_H = 640, 480
RENDER_K = np.array([[525.0, 0, 319.5], [0, 525.0, 239.5], [0, 0, 1]])
RENDER_SEED = 20260
N_RENDER_PAIRS = 24


def sample_views(rng: np.random.Generator, n: int):
    """Camera pairs: a looks from near the room's front at the scene, b is displaced 0.2-1 m and turned so that
    the relative rotation is 5-30 deg (rejection sampling, targets spread uniformly over the range)."""
    out = []
    goals = np.linspace(5.5, 29.5, n)
    rng.shuffle(goals)
    for goal in goals:
        for _ in range(10000):
            Ca = np.array([rng.uniform(-1.0, 1.0), rng.uniform(-0.4, 0.4), rng.uniform(-1.2, 0.3)])
            Ta = np.array([rng.uniform(-1.0, 1.0), rng.uniform(-0.3, 0.6), rng.uniform(3.0, 6.0)])
            Ra = look_at(Ca, Ta, rng.uniform(-0.1, 0.1))
            base = rng.uniform(0.2, 1.0)
            dirn = rng.normal(size=3)
            dirn /= np.linalg.norm(dirn)
            Cb = Ca + base * dirn
            Tb = Ta + rng.normal(size=3) * rng.uniform(0, 2.5)
            Rb = look_at(Cb, Tb, rng.uniform(-0.15, 0.15))
            R = Rb @ Ra.T
            ang = rot_angle_deg(R)
            if abs(ang - goal) < 1.0 and 5.0 <= ang <= 30.0 and Tb[2] > 2.0:
                out.append((Ra, Ca, Rb, Cb, base, ang))
                break
        else:
            raise RuntimeError("view sampling failed")
    return out


def rendered_pairs_spec():
    """Deterministic list of (id, Ra, Ca, Rb, Cb, baseline, angle, gain, gamma) for the rendered set."""
    rng = np.random.default_rng(RENDER_SEED)
    views = sample_views(rng, N_RENDER_PAIRS)
    spec = []
    for k, (Ra, Ca, Rb, Cb, base, ang) in enumerate(views):
        gain, gamma = float(rng.uniform(0.7, 1.3)), float(rng.uniform(0.8, 1.25))
        spec.append((f"view{k:02d}", Ra, Ca, Rb, Cb, base, ang, gain, gamma))
    return spec


def build_rendered(root: Path) -> dict:
    scene = Scene(rendered_scene())
    (root / "images").mkdir(parents=True, exist_ok=True)
    cam = camera_dict(RENDER_K, None, RENDER_W, RENDER_H)
    pairs, depths = [], []
    noise_rng = np.random.default_rng(RENDER_SEED + 1)
    for pid, Ra, Ca, Rb, Cb, base, ang, gain, gamma in rendered_pairs_spec():
        cam_a, cam_b = (Camera(RENDER_K, RENDER_W, RENDER_H, Rv, Cv) for Rv, Cv in ((Ra, Ca), (Rb, Cb)))
        ia = render(scene, cam_a, geometry=False).colour
        ib = render(scene, cam_b, geometry=False).colour
        a8 = np.clip(np.round(ia * 255), 0, 255).astype(np.uint8)
        b8 = gain_gamma_noise(ib, noise_rng, gain, gamma, 2.0)
        cv2.imwrite(str(root / "images" / f"{pid}_a.png"), cv2.cvtColor(a8, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "images" / f"{pid}_b.png"), cv2.cvtColor(b8, cv2.COLOR_RGB2BGR))
        # depth statistics of view a (sparse grid)
        vs, us = np.mgrid[0:RENDER_H:8, 0:RENDER_W:8]
        z = scene.cast(cam_a, np.c_[us.ravel(), vs.ravel()]).depth
        med = float(np.median(z))
        depths.append(med)
        R, t = relative_pose(Ra, Ca, Rb, Cb)
        pairs.append(pair_entry(pid, f"images/{pid}_a.png", f"images/{pid}_b.png", cam, cam, R, t, kind="rendered",
                                rotation_deg=ang, baseline_m=base, median_depth_m=med,
                                photometric={"gain": gain, "gamma": gamma, "noise_sigma": 2.0}))
    quality = {"exact": "ray-cast geometry (float64); GT exact up to rendering (2x2 supersampling, bilinear texture)",
               "rotation_deg_range": [min(p["rotation_deg"] for p in pairs), max(p["rotation_deg"] for p in pairs)],
               "baseline_m_range": [min(p["baseline_m"] for p in pairs), max(p["baseline_m"] for p in pairs)],
               "median_depth_m_range": [min(depths), max(depths)]}
    desc = ("Synthetic room ray-cast in numpy (textured planes: walls, floor, ceiling, box, cards; real photos from "
            "opencv-doc and scikit-image as textures), 640x480, K=(525,525,319.5,239.5), no distortion; view b "
            "with gain/gamma change and Gaussian noise sigma=2; seeded")
    write_manifest(root, "rendered", desc, pairs, quality)
    return quality


# ------------------------------------------------------------------------------------------------------------------
# rooms
# ------------------------------------------------------------------------------------------------------------------
ROOMS_SEED = 20262
ROOMS_W, ROOMS_H = 640, 480
ROOMS_F = 525.0
ROOMS_OTHER_F = (420.0, 700.0)  # a few pairs use another focal length (both views)
ROOMS_QUOTAS = {"wall": 30, "floor": 20, "general": 25, "small_baseline": 15, "near_rotation": 12,
                "pure_rotation": 8, "low_texture": 12}
ROOMS_WALL_OBJECTS = 12  # of the wall pairs: view a shows 5-20% furniture in front of the wall
ROTATION_RANGE = {"small_baseline": (2.0, 20.0), "near_rotation": (5.0, 30.0), "pure_rotation": (5.0, 30.0)}
BASELINE_RANGE = {"small_baseline": (0.02, 0.08), "near_rotation": (0.003, 0.015), "pure_rotation": (0.0, 0.0)}
MOVED_BASELINE = (0.1, 1.0)  # wall, floor, general, low_texture
MIN_OVERLAP = 0.3
COARSE = 1 / 8  # view checks while sampling run on an 80 x 60 image


class RoomsPair:
    """One pair of the rooms set, fully determined by its index: category, room, both cameras, both lights, the
    sensor settings of both images (``exposure`` there is the gain on top of each image's auto-exposure)."""

    def __init__(self, k: int):
        self.k = k
        self.category, self.wall_objects, self.room_index = rooms_layout()[k]
        self.id = f"{k:03d}-{self.category}"
        rng = np.random.default_rng([ROOMS_SEED, k, 0])
        self.room = build_room(self.room_index, ROOMS_SEED)
        f = ROOMS_F if rng.random() > 0.1 else float(rng.choice(ROOMS_OTHER_F))
        self.K = np.array([[f, 0, (ROOMS_W - 1) / 2], [0, f, (ROOMS_H - 1) / 2], [0, 0, 1]])
        self.cam_a, self.cam_b = sample_room_views(self, rng)
        self.lights, self.ambient = sample_room_lights(self.room, rng)
        self.sensors = sample_sensors(rng)

    @property
    def scene(self) -> Scene:
        return self.room.scene

    def render(self, scale: float = 1.0):
        """(image a, image b) as 8-bit RGB, the two frames (radiance and geometry), the sensors actually applied."""
        out = []
        for j, (cam, light, sensor) in enumerate(zip((self.cam_a, self.cam_b), self.lights, self.sensors)):
            cam = cam.scaled(scale) if scale != 1.0 else cam
            frame = render(self.scene, cam, Lighting((light,), self.ambient), shadows=True)
            lum = frame.colour.mean(axis=2)
            exposure = sensor.exposure * 0.85 / max(float(np.percentile(lum, 99)), 1e-6)  # auto-exposure x gain
            applied = dataclasses.replace(sensor, exposure=exposure)
            img = capture(frame.colour, cam.K, applied, np.random.default_rng([ROOMS_SEED, self.k, j + 1]))
            out.append((img, frame, applied))
        return out


@functools.lru_cache(maxsize=None)
def rooms_layout() -> tuple:
    """(category, wall_objects, room index) per pair: categories in a seeded shuffle, rooms in turn per category
    among the rooms that can show it (``_rooms_for``)."""
    cats = [c for c, n in ROOMS_QUOTAS.items() for _ in range(n)]
    order = np.random.default_rng(ROOMS_SEED).permutation(len(cats))
    seen = {c: 0 for c in ROOMS_QUOTAS}
    out = []
    for i in order:
        c = cats[i]
        j = seen[c]
        seen[c] += 1
        objects = c == "wall" and j < ROOMS_WALL_OBJECTS
        rooms = _rooms_for(c, objects)
        out.append((c, objects, rooms[j % len(rooms)]))
    return tuple(out)


def _rooms_for(category: str, objects: bool) -> list:
    """Indices of the rooms that can give the category's view a: wall views need a textured wall (with furniture
    in front of it for ``objects``) or posters large enough to fill a view (>= 0.9 m wide)."""
    if category != "wall":
        return list(range(len(RECIPES)))
    out = []
    for i in range(len(RECIPES)):
        room = build_room(i, ROOMS_SEED)
        if objects:
            ok = any(not w.plain and _furniture_before(room, w) for w in room.walls.values())
        else:
            ok = (any(not w.plain for w in room.walls.values())
                  or any(np.linalg.norm(r.u) >= 0.9 for r in room.scene.surfaces if r.kind == "poster"))
        if ok:
            out.append(i)
    return out


def _direction(yaw: float, pitch: float) -> np.ndarray:
    """World direction with heading ``yaw`` (from +z towards +x) and elevation ``pitch`` (positive: up; y is down)."""
    return np.array([math.sin(yaw) * math.cos(pitch), -math.sin(pitch), math.cos(yaw) * math.cos(pitch)])


def _axis_angle(axis: np.ndarray, deg: float) -> np.ndarray:
    R, _ = cv2.Rodrigues(np.asarray(axis, np.float64) / np.linalg.norm(axis) * math.radians(deg))
    return R


def _camera_rotation_axis(rng) -> np.ndarray:
    """Random rotation axis in a camera frame: mostly pan and tilt, some roll."""
    return rng.normal(size=3) * [1.0, 1.0, 0.3]


def _wall_view(room: Room, rng, plain: bool, objects: bool):
    """Camera centre and look direction facing a wall, 1-1.9 m above the floor. Textured walls: from 0.8-3 m,
    anywhere on the wall; plain walls with posters: at a poster, close enough for it to fill most of the view;
    ``objects``: over a piece of furniture in front of the wall; ``plain``: at a plain wall from 1-4 m."""
    if plain:
        walls = [w for w in room.walls.values() if w.plain]
    elif objects:
        walls = [w for w in room.walls.values() if not w.plain and _furniture_before(room, w)]
    else:
        walls = [w for w in room.walls.values()
                 if not w.plain or any(np.linalg.norm(r.u) >= 0.9 for r in _posters_on(room, w))]
    wall = walls[rng.integers(len(walls))]
    s, h = rng.uniform(0.3, wall.length - 0.3), rng.uniform(1.0, 1.9)
    dist, spread = (rng.uniform(1.0, 4.0), 50.0) if plain else (rng.uniform(0.8, 3.0), 40.0)
    if objects:
        X = _furniture_before(room, wall)[rng.integers(len(_furniture_before(room, wall)))]
        s = float((X - wall.origin) @ wall.along) + rng.normal(0, 0.3)
        h = float(np.clip(-X[1] + rng.uniform(0.2, 0.8), 1.0, 1.9))
        dist = rng.uniform(float((X - wall.origin) @ wall.normal) + 0.6, 3.0)
        spread = 25.0
    elif not plain and wall.plain:
        big = [r for r in _posters_on(room, wall) if np.linalg.norm(r.u) >= 0.9]
        poster = big[rng.integers(len(big))]
        X = poster.o + poster.u / 2 + poster.v / 2
        s = float((X - wall.origin) @ wall.along) + rng.normal(0, 0.1)
        h = float(np.clip(-X[1] + rng.normal(0, 0.1), 1.0, 1.9))
        dist = rng.uniform(0.8, max(0.85, 1.1 * float(np.linalg.norm(poster.u))))
        spread = 15.0
    C = wall.origin + s * wall.along + dist * wall.normal
    C[1] = -h
    yaw0 = math.atan2(-wall.normal[0], -wall.normal[2])
    d = _direction(yaw0 + math.radians(rng.uniform(-spread, spread)), math.radians(rng.uniform(-20, 20)))
    return C, d, wall


def _posters_on(room: Room, wall) -> list:
    return [r for r in room.scene.surfaces if r.kind == "poster" and r.plane == wall.plane]


def _furniture_before(room: Room, wall) -> list:
    """Top-face centres of the boxes taller than 0.3 m standing less than 2 m in front of the wall."""
    out = []
    for b in room.scene.boxes:
        if float((b.centre - wall.origin) @ wall.normal) < 2.0 and 2 * b.half[1] > 0.3:
            out.append(b.centre - [0, b.half[1], 0])
    return out


def _a_view(room: Room, category: str, objects: bool, rng):
    """A proposal for view a of the category: (centre, look direction, the wall aimed at or None)."""
    W, D, H = room.size
    if category == "wall":
        return _wall_view(room, rng, plain=False, objects=objects)
    if category == "low_texture":
        return _wall_view(room, rng, plain=True, objects=False)
    if category == "floor":
        C = np.array([rng.uniform(0.5, W - 0.5), -rng.uniform(1.0, 1.7), rng.uniform(0.5, D - 0.5)])
        return C, _direction(rng.uniform(0, 2 * math.pi), -math.radians(rng.uniform(35, 75))), None
    C = np.array([rng.uniform(0.4, W - 0.4), -rng.uniform(1.0, 1.9), rng.uniform(0.4, D - 0.4)])
    pick = rng.integers(3)
    if pick == 0 and room.scene.boxes:
        T = room.scene.boxes[rng.integers(len(room.scene.boxes))].centre
    elif pick == 1:
        T = np.array([W * rng.integers(2), -rng.uniform(0, H), D * rng.integers(2)])  # a corner of the room
    else:
        T = np.array([rng.uniform(0, W), -rng.uniform(0.3, H - 0.3), rng.uniform(0, D)])
    return C, T - C, None


def _a_ok(category: str, objects: bool, wall, f: dict, depth: np.ndarray, room: Room) -> bool:
    """Category test on the coarse statistics of view a (margins keep the full-resolution values in range). All
    but low_texture views are less than 45% plain surfaces and less than 30% ceiling."""
    if not np.all(np.isfinite(depth)) or depth.min() < 0.3:
        return False
    planes = f["planes"]
    if category == "low_texture":
        return 0.55 <= f["plain_wall"] <= 0.88
    if f["plain"] >= 0.45 or f["by_kind"].get("ceiling", 0.0) >= 0.3:
        return False
    if category == "wall":
        return planes[wall.plane] >= 0.75 and (0.06 <= f["furniture"] <= 0.18 if objects else True)
    if category == "floor":
        return planes[room.floor_plane] >= 0.75
    if category == "general":  # several planes, seen from a distance (no close-up of one piece of furniture)
        return f["dominant_plane"] < 0.65 and int(np.sum(planes >= 0.05)) >= 3 and float(np.median(depth)) >= 1.2
    if category == "small_baseline":
        return 1.6 <= float(np.median(depth)) <= 5.8
    return True


def _b_view(pair: RoomsPair, cam_a: Camera, goal: float, lo: float, hi: float, rng):
    """A proposal for view b: moved by the category's baseline and turned by about ``goal`` degrees (within
    [lo, hi]); None when the proposal missed."""
    cat = pair.category
    if cat in BASELINE_RANGE:
        base = rng.uniform(*BASELINE_RANGE[cat])
        R = _axis_angle(_camera_rotation_axis(rng), goal) @ cam_a.R
    else:
        base = rng.uniform(*MOVED_BASELINE)
    dirn = rng.normal(size=3) * [1.0, 0.4, 1.0]
    C = cam_a.C + base * dirn / np.linalg.norm(dirn)
    if cat not in BASELINE_RANGE:
        hit = pair.scene.cast(cam_a, np.array([[cam_a.K[0, 2], cam_a.K[1, 2]]]))
        F = hit.points()[0]  # b keeps a's fixation point roughly in view, then turns by up to the goal
        R0 = look_at(C, F, math.radians(rng.normal(0, 3)))
        R = _axis_angle(_camera_rotation_axis(rng), rng.uniform(0, goal)) @ R0
        ang = rot_angle_deg(R @ cam_a.R.T)
        if abs(ang - goal) > 1.5 or not lo <= ang <= hi:
            return None
    return Camera(cam_a.K, ROOMS_W, ROOMS_H, R, C)


def sample_room_views(pair: RoomsPair, rng):
    """Rejection sampling of (camera a, camera b) for the pair's category (see the module docstring): proposals
    for a until one passes the category test, then one b for it that meets the rotation goal, stands free and
    sees enough of a."""
    room = pair.room
    lo, hi = ROTATION_RANGE.get(pair.category, (2.0, 30.0))
    for _ in range(20000):
        C, d, wall = _a_view(room, pair.category, pair.wall_objects, rng)
        if not room.free(C) or abs(d[1]) / np.linalg.norm(d) > math.sin(math.radians(76)):
            continue
        cam_a = Camera(pair.K, ROOMS_W, ROOMS_H, look_at(C, C + d, math.radians(rng.uniform(-5, 5))), C)
        coarse = pair.scene.cast_grid(cam_a.scaled(COARSE))
        if not _a_ok(pair.category, pair.wall_objects, wall, fractions(pair.scene, coarse.surface), coarse.depth, room):
            continue
        goal = rng.uniform(lo, hi)
        for _ in range(300):
            cam_b = _b_view(pair, cam_a, goal, lo, hi, rng)
            if cam_b is None or not room.free(cam_b.C, 0.25):
                continue
            zb = pair.scene.cast_grid(cam_b.scaled(COARSE)).depth
            if np.all(np.isfinite(zb)) and zb.min() >= 0.3 and \
                    covisibility(pair.scene, cam_a, cam_b, pixel_grid(cam_a, 16)).overlap >= MIN_OVERLAP + 0.05:
                return cam_a, cam_b
            break
    raise RuntimeError(f"rooms pair {pair.k}: no views found")


def sample_room_lights(room: Room, rng):
    """One point light per view, the second 0.3-2 m from the first, 1.6 m above the floor up to 0.5 m below the
    ceiling; colour warm to cool; ambient 10-40% of the direct light at 2.5 m."""
    W, D, H = room.size
    colour = [(1.0, 0.9, 0.75), (1.0, 1.0, 1.0), (0.9, 0.95, 1.0)][rng.integers(3)]

    def place(near=None):
        for _ in range(10000):
            if near is None:
                L = np.array([rng.uniform(0.3, W - 0.3), -rng.uniform(1.6, H - 0.5), rng.uniform(0.3, D - 0.3)])
            else:
                step = rng.normal(size=3)
                L = near + rng.uniform(0.3, 2.0) * step / np.linalg.norm(step)
                if not (-H + 0.3 <= L[1] <= -1.0):
                    continue
            if room.free(L, 0.2):
                return L
        raise RuntimeError("no light position")

    La = place()
    Lb = place(La)
    ambient = tuple(float(rng.uniform(0.1, 0.4)) / 2.5 ** 2 * np.ones(3))
    return (PointLight(tuple(La), 1.0, colour), PointLight(tuple(Lb), 1.0, colour)), ambient


def sample_sensors(rng) -> tuple:
    """Sensor settings of images a and b: gain 1 (a) and 0.6-1.5 (b) on top of auto-exposure, white balance
    +-15% on red and blue, one vignetting strength (same lens), noise per image, blur on ~25% of b, JPEG on ~30%
    of the images."""
    vig = float(rng.uniform(0.1, 0.6))
    out = []
    for j in range(2):
        blur = None
        if j == 1 and rng.random() < 0.25:
            blur = (("defocus", float(rng.uniform(0.6, 1.5))) if rng.random() < 0.5 else
                    ("motion", float(rng.uniform(3, 9)), float(rng.uniform(0, 180))))
        jpeg = int(rng.integers(60, 91)) if rng.random() < 0.3 else None
        out.append(Sensor(exposure=1.0 if j == 0 else float(rng.uniform(0.6, 1.5)),
                          white_balance=(float(rng.uniform(0.85, 1.15)), 1.0, float(rng.uniform(0.85, 1.15))),
                          vignetting=vig, full_well=float(rng.uniform(1500, 8000)),
                          read_noise=float(rng.uniform(2, 8)), blur=blur, jpeg_quality=jpeg))
    return tuple(out)


def rooms_pair_stats(pair: RoomsPair, frame_a) -> dict:
    """Per-pair statistics of the manifest: overlap, parallax, plane and surface shares, depth, motion."""
    cov = covisibility(pair.scene, pair.cam_a, pair.cam_b, pixel_grid(pair.cam_a, 8))
    par = parallax_deg(cov.points[cov.visible], pair.cam_a.C, pair.cam_b.C)
    f = fractions(pair.scene, frame_a.surface)
    R, t = relative_pose(pair.cam_a.R, pair.cam_a.C, pair.cam_b.R, pair.cam_b.C)
    return {"overlap": cov.overlap, "parallax_deg_median": float(np.median(par)) if len(par) else 0.0,
            "dominant_plane_fraction": f["dominant_plane"], "plain_wall_fraction": f["plain_wall"],
            "furniture_fraction": f["furniture"], "median_depth_m": float(np.median(frame_a.depth)),
            "rotation_deg": rot_angle_deg(R), "baseline_m": float(np.linalg.norm(t))}


def check_rooms_pair(pair: RoomsPair, st: dict) -> None:
    """The category promises, on the full-resolution statistics (sampling used a coarse image with margins)."""
    c = pair.category
    ok = st["overlap"] >= MIN_OVERLAP
    if c in ("wall", "floor"):
        ok &= st["dominant_plane_fraction"] >= 0.7
    if c == "wall" and pair.wall_objects:
        ok &= 0.05 <= st["furniture_fraction"] <= 0.2
    if c == "low_texture":
        ok &= st["plain_wall_fraction"] >= 0.5
    if not ok:
        raise RuntimeError(f"rooms pair {pair.id} breaks its category's bounds: {st}")


def build_rooms(root: Path) -> dict:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "depth").mkdir(parents=True, exist_ok=True)
    pairs = []
    for k in range(sum(ROOMS_QUOTAS.values())):
        pair = RoomsPair(k)
        (img_a, frame_a, sa), (img_b, _, sb) = pair.render()
        for name, img in (("a", img_a), ("b", img_b)):
            cv2.imwrite(str(root / "images" / f"{pair.id}_{name}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        np.save(root / "depth" / f"{pair.id}_a.npy", frame_a.depth.astype(np.float32))
        st = rooms_pair_stats(pair, frame_a)
        check_rooms_pair(pair, st)
        R, t = relative_pose(pair.cam_a.R, pair.cam_a.C, pair.cam_b.R, pair.cam_b.C)
        cam = camera_dict(pair.K, None, ROOMS_W, ROOMS_H)
        extra = {"category": pair.category, "room": pair.room.name, "pure_rotation": pair.category == "pure_rotation",
                 "wall_objects": pair.wall_objects, **st,
                 "lights": [list(map(float, light.position)) for light in pair.lights],
                 "light_move_m": float(np.linalg.norm(np.subtract(*[lt.position for lt in pair.lights]))),
                 "ambient": list(pair.ambient), "sensor": [sa.to_dict(), sb.to_dict()],
                 "depth_a": f"depth/{pair.id}_a.npy"}
        pairs.append(pair_entry(pair.id, f"images/{pair.id}_a.png", f"images/{pair.id}_b.png", cam, cam, R,
                                np.zeros(3) if extra["pure_rotation"] else t, kind="rendered", **extra))
    quality = rooms_quality(pairs)
    desc = ("Synthetic furnished rooms ray-cast in numpy (6 rooms: plain painted and brick/text walls, photos as "
            "posters, tiled floors, boxes/cabinets/tables that occlude and cast hard shadows), Lambertian point "
            "light that moves between the views, auto-exposure x gain, white balance, vignetting, Poisson-Gaussian "
            "noise, blur and JPEG; 640x480 (K=(525,525,319.5,239.5), a few pairs f=420/700); categories wall, floor "
            "(one plane >= 70% of view a), general, small_baseline, near_rotation, pure_rotation (t = 0: rotation "
            "error only), low_texture (>= 50% plain wall); depth of view a in depth/<id>_a.npy; seeded")
    write_manifest(root, "rooms", desc, pairs, quality)
    return quality


def rooms_quality(pairs: list) -> dict:
    def rng_of(key, sel=None):
        v = [p[key] for p in pairs if sel is None or sel(p)]
        return [min(v), max(v)] if v else None

    moved = lambda p: not p["pure_rotation"]  # noqa: E731
    return {"exact": "ray-cast geometry (float64); GT exact up to rendering (2x2 supersampling, bilinear texture)",
            "categories": {c: sum(p["category"] == c for p in pairs) for c in ROOMS_QUOTAS},
            "wall_objects": sum(p["wall_objects"] for p in pairs),
            "rooms": sorted({p["room"] for p in pairs}),
            "focal_lengths": sorted({p["camera_a"]["fx"] for p in pairs}),
            "rotation_deg_range": rng_of("rotation_deg"), "baseline_m_range": rng_of("baseline_m", moved),
            "median_depth_m_range": rng_of("median_depth_m"), "overlap_range": rng_of("overlap"),
            "parallax_deg_median_range": rng_of("parallax_deg_median", moved),
            "dominant_plane_fraction_range": rng_of("dominant_plane_fraction"),
            "light_move_m_range": rng_of("light_move_m"),
            "blurred_b": sum(p["sensor"][1]["blur"] is not None for p in pairs),
            "jpeg_images": sum(s["jpeg_quality"] is not None for p in pairs for s in p["sensor"])}


BUILDERS = {"chessboard": build_chessboard, "motorcycle": build_motorcycle, "rendered": build_rendered,
            "rooms": build_rooms}


def summary(name: str, manifest: dict) -> str:
    q = manifest.get("quality", {})
    n = len(manifest["pairs"])
    if name == "chessboard":
        s = q.get("stereo_extrinsics_spread_deg", {})
        return (f"chessboard: {n} pairs ({q.get('n_stereo')} stereo, {q.get('n_temporal')} temporal); PnP RMS median "
                f"{q.get('pnp_rms_px_median_kept'):.3f} px, max {q.get('pnp_rms_px_max_kept'):.3f} px; dropped "
                f"{q.get('dropped')}; stereo extrinsics spread over pairs: rotation max {s.get('rotation_max'):.3f} "
                f"deg (median {s.get('rotation_median'):.3f}), t direction max {s.get('translation_dir_max'):.3f} deg "
                f"(median {s.get('translation_dir_median'):.3f})")
    if name == "motorcycle":
        c = q["calibration"]
        return (f"motorcycle: {n} pairs; f={c['fx']:.3f} cx0={c['cx0']:.3f} cx1={c['cx1']:.3f} cy={c['cy']:.3f} "
                f"baseline {c['baseline_mm']} mm; depth {q['depth_range_m'][0]:.2f}-{q['depth_range_m'][1]:.2f} m; "
                f"GT disparity on {100 * q['gt_disparity_valid_fraction']:.1f}% of pixels")
    if name == "rooms":
        cats = ", ".join(f"{c} {k}" for c, k in q["categories"].items())
        return (f"rooms: {n} pairs ({cats}); rotation {q['rotation_deg_range'][0]:.1f}-{q['rotation_deg_range'][1]:.1f}"
                f" deg, baseline {q['baseline_m_range'][0]:.3f}-{q['baseline_m_range'][1]:.2f} m (+ pure rotations), "
                f"median depth {q['median_depth_m_range'][0]:.2f}-{q['median_depth_m_range'][1]:.2f} m, overlap "
                f"{q['overlap_range'][0]:.2f}-{q['overlap_range'][1]:.2f}; GT exact (ray-cast)")
    return (f"rendered: {n} pairs; rotation {q['rotation_deg_range'][0]:.1f}-{q['rotation_deg_range'][1]:.1f} deg, "
            f"baseline {q['baseline_m_range'][0]:.2f}-{q['baseline_m_range'][1]:.2f} m, median depth "
            f"{q['median_depth_m_range'][0]:.2f}-{q['median_depth_m_range'][1]:.2f} m; GT exact (ray-cast)")


def build(name: str, out: Path, force: bool = False) -> Path:
    root = out / name
    mpath = root / "manifest.json"
    if not force and mpath.exists():
        try:
            if load_manifest(mpath).get("generator_hash") == generator_hash():
                return mpath
        except (json.JSONDecodeError, OSError):
            pass
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    t0 = time.perf_counter()
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # calibrateCamera's parallel reductions differ in the last bits between runs otherwise
    try:
        BUILDERS[name](root)
    finally:
        cv2.setNumThreads(threads)
    print(f"[eval_sets] built {name} in {time.perf_counter() - t0:.1f} s -> {mpath}", file=sys.stderr)
    return mpath


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--out", type=Path, default=default_out())
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    names = [s for s in args.sets.split(",") if s]
    for n in names:
        if n not in BUILDERS:
            ap.error(f"unknown set {n!r} (known: {', '.join(SETS)})")
    for n in names:
        path = build(n, args.out, args.force)
        print(summary(n, load_manifest(path)))
        print(f"  manifest: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
