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

Idempotent: a set is rebuilt only when its manifest is missing or was written by a different version of this
script (``generator_hash`` = sha256 of this file). ``--force`` rebuilds.

Usage: python tools/eval_sets.py [--sets chessboard,motorcycle,rendered] [--out DIR] [--force]
"""
from __future__ import annotations

import argparse
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
from render.rooms import rendered_scene
from render.scene import Camera, Scene, look_at, relative_pose
from render.sensor import gain_gamma_noise
from render.textures import OPENCV_DATA

RENDER_PACKAGE = Path(__file__).resolve().parent / "render"
SETS = ("chessboard", "motorcycle", "rendered")
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


BUILDERS = {"chessboard": build_chessboard, "motorcycle": build_motorcycle, "rendered": build_rendered}


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
