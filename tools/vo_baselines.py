#!/usr/bin/env python3
"""Baselines for the stereo visual-odometry sequences of ``tools/vo_sequences.py``, scored by ``tools/eval_vo.py``.

``opencv_stereo``
    A plain frame-to-frame stereo VO from OpenCV parts. Per frame: SIFT (2000 features) on the left and right
    images; left-right matches on the rectified rows (for each left feature the best and second-best right
    descriptor among the candidates with |dy| <= 1.5 px and disparity in [1, 160] px, Lowe ratio 0.8); 3-D points
    from the disparity (Z = fx b / d). Motion: the previous left frame's 3-D points matched to the current left
    features (SIFT, Lowe ratio 0.8), ``cv2.solvePnPRansac`` (AP3P, reprojection threshold 1.5 px, 500 iterations,
    confidence 0.999) then ``cv2.solvePnPRefineLM`` on the inliers, chained. When PnP fails (< 12 inliers, or no
    solution) the last pose is held and the failure counted. Scored with an SE(3) alignment (metric).
``colmap``
    pycolmap (4.2.1) incremental mapping of the left images: SIFT (2000 features, one thread), sequential
    matching (overlap 10, no quadratic overlap, no loop detection: that needs a vocabulary tree), one shared
    PINHOLE camera with the known intrinsics, held fixed in bundle adjustment (focal length, principal point), one
    thread, fewer and shorter bundle adjustments than the defaults (global BA after 40% model growth, <= 20 global
    / 15 local iterations), mapping capped at 420 s (``max_runtime_seconds``). Sequences longer than 220 frames use
    every n-th frame (n = ceil(frames / 220): 3 for vo_loop, 4 for vo_forward_turns and vo_hard; the coverage is
    <= 1/n by construction; ``frames_used`` and ``subsample`` say so), to finish in <= ~10 min on one (shared) core. The largest model's registered images give the TUM trajectory
    (camera-to-world); its scale is arbitrary: scored with a Sim(3) alignment.

Output: ``$MATCHA_CACHE/vo/results/<sequence>/<method>.tum`` and ``<method>.json`` (runtime, frames used and
posed, failures, the metrics of ``eval_vo.evaluate``), or ``--out FILE.tum`` (the JSON beside it).

Usage: python tools/vo_baselines.py --sequence DIR --method opencv_stereo|colmap [--out FILE.tum]
       python tools/vo_baselines.py --report [--rescore] [--root DIR]
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval_vo  # noqa: E402
from vo_sequences import default_out  # noqa: E402

METHODS = ("opencv_stereo", "colmap")
ALIGN = {"opencv_stereo": "se3", "colmap": "sim3"}
SIFT_FEATURES = 2000
RATIO = 0.8
MAX_DY = 1.5
DISPARITY = (1.0, 160.0)
PNP_THRESHOLD_PX = 1.5
PNP_MIN_INLIERS = 12
COLMAP_MAX_FRAMES = 220
COLMAP_MAX_MAPPING_S = 420


def load_sequence(seq_dir: Path) -> dict:
    return json.loads((Path(seq_dir) / "sequence.json").read_text())


def K_of(cam: dict) -> np.ndarray:
    return np.array([[cam["fx"], 0, cam["cx"]], [0, cam["fy"], cam["cy"]], [0, 0, 1.0]])


# ------------------------------------------------------------------------------------------------------------------
# opencv_stereo
# ------------------------------------------------------------------------------------------------------------------
def _gray(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise FileNotFoundError(path)
    return img


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float32), b.astype(np.float32)
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T, 0)


def stereo_points(kl, dl, kr, dr, K: np.ndarray, baseline: float):
    """Left-right matches on the rectified rows -> (indices of left features, their 3-D points in the left
    camera frame)."""
    if dl is None or dr is None or len(kl) == 0 or len(kr) < 2:
        return np.zeros(0, np.int64), np.zeros((0, 3))
    pl = np.array([k.pt for k in kl])
    pr = np.array([k.pt for k in kr])
    D = _sq_dists(dl, dr)
    dy = np.abs(pl[:, 1:2] - pr[None, :, 1])
    disp = pl[:, 0:1] - pr[None, :, 0]
    D[(dy > MAX_DY) | (disp < DISPARITY[0]) | (disp > DISPARITY[1])] = np.inf
    order = np.argsort(D, axis=1)[:, :2]
    rows = np.arange(len(pl))
    best, second = D[rows, order[:, 0]], D[rows, order[:, 1]]
    ok = np.isfinite(best) & (np.sqrt(best) < RATIO * np.sqrt(second))  # second = inf: a unique candidate
    idx = rows[ok]
    d = disp[idx, order[ok, 0]]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    Z = fx * baseline / d
    X = (pl[idx, 0] - cx) * Z / fx
    Y = (pl[idx, 1] - cy) * Z / fy
    return idx, np.c_[X, Y, Z]


def ratio_matches(da: np.ndarray, db: np.ndarray, matcher) -> np.ndarray:
    if da is None or db is None or len(da) < 1 or len(db) < 2:
        return np.zeros((0, 2), np.int64)
    out = [(m[0].queryIdx, m[0].trainIdx) for m in matcher.knnMatch(da, db, k=2)
           if len(m) == 2 and m[0].distance < RATIO * m[1].distance]
    return np.array(out, np.int64).reshape(-1, 2)


def opencv_stereo(seq_dir: Path, max_frames: int | None = None, log=None) -> dict:
    """Run the stereo VO on a sequence folder: {"stamps", "poses" (4 x 4 camera-to-world), "failures",
    "inliers", "frames_used"}."""
    seq_dir = Path(seq_dir)
    seq = load_sequence(seq_dir)
    K = K_of(seq["left"])
    t_rl = np.asarray(seq["right_from_left"]["t"], np.float64)
    baseline = float(-t_rl[0])
    cv2.setNumThreads(1)  # one core, like the other baseline (and bit-stable RANSAC)
    sift = cv2.SIFT_create(nfeatures=SIFT_FEATURES)
    bf = cv2.BFMatcher(cv2.NORM_L2)
    frames = seq["frames"][:max_frames] if max_frames else seq["frames"]
    T = np.eye(4)
    poses, stamps, inliers, failures = [], [], [], 0
    prev = None
    for i, fr in enumerate(frames):
        gl, gr = _gray(seq_dir / fr["left"]), _gray(seq_dir / fr["right"])
        kl, dl = sift.detectAndCompute(gl, None)
        kr, dr = sift.detectAndCompute(gr, None)
        sidx, P = stereo_points(kl, dl, kr, dr, K, baseline)
        if prev is not None:
            p_idx, p_P, p_desc = prev
            m = ratio_matches(p_desc, dl, bf)
            ok = False
            n_in = 0
            if len(m) >= 6:
                obj = p_P[m[:, 0]].astype(np.float64)
                img = np.array([kl[j].pt for j in m[:, 1]], np.float64)
                cv2.setRNGSeed(i)
                good, rvec, tvec, inl = cv2.solvePnPRansac(obj, img, K, None, iterationsCount=500,
                                                           reprojectionError=PNP_THRESHOLD_PX, confidence=0.999,
                                                           flags=cv2.SOLVEPNP_AP3P)
                if good and inl is not None and len(inl) >= PNP_MIN_INLIERS:
                    inl = inl.ravel()
                    rvec, tvec = cv2.solvePnPRefineLM(obj[inl], img[inl], K, None, rvec, tvec)
                    R, _ = cv2.Rodrigues(rvec)
                    T_cur_prev = np.eye(4)
                    T_cur_prev[:3, :3], T_cur_prev[:3, 3] = R, tvec.ravel()
                    T = T @ np.linalg.inv(T_cur_prev)
                    ok, n_in = True, len(inl)
            if not ok:
                failures += 1
            inliers.append(n_in)
        poses.append(T.copy())
        stamps.append(fr["stamp"])
        prev = (sidx, P, dl[sidx] if dl is not None and len(sidx) else None)
        if log and (i % 100 == 0 or i == len(frames) - 1):
            log(f"[vo_baselines] opencv_stereo {seq['name']}: frame {i + 1}/{len(frames)}, {len(sidx)} stereo "
                f"points, {inliers[-1] if inliers else 0} PnP inliers, {failures} failures")
    return {"stamps": stamps, "poses": poses, "failures": failures, "inliers": inliers, "frames_used": len(frames),
            "frames_posed": len(frames)}


# ------------------------------------------------------------------------------------------------------------------
# colmap
# ------------------------------------------------------------------------------------------------------------------
def colmap(seq_dir: Path, work: Path | None = None, max_frames: int = COLMAP_MAX_FRAMES, log=None) -> dict:
    """pycolmap incremental mapping of the left images (every n-th so that at most ``max_frames`` are used)."""
    import pycolmap

    seq_dir = Path(seq_dir)
    seq = load_sequence(seq_dir)
    step = max(1, math.ceil(len(seq["frames"]) / max_frames))
    frames = seq["frames"][::step]
    tmp = Path(tempfile.mkdtemp(prefix="vo_colmap_")) if work is None else Path(work)
    try:
        img_dir = tmp / "images"
        img_dir.mkdir(parents=True, exist_ok=True)
        for fr in frames:
            dst = img_dir / Path(fr["left"]).name
            if not dst.exists():
                dst.symlink_to((seq_dir / fr["left"]).resolve())
        db = tmp / "database.db"
        if db.exists():
            db.unlink()
        cam = seq["left"]
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = "PINHOLE"
        reader.camera_params = f"{cam['fx']},{cam['fy']},{cam['cx']},{cam['cy']}"
        extraction = pycolmap.FeatureExtractionOptions()
        extraction.num_threads = 1
        extraction.use_gpu = False
        extraction.sift.max_num_features = SIFT_FEATURES
        t0 = time.perf_counter()
        pycolmap.extract_features(db, img_dir, camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader,
                                  extraction_options=extraction, device=pycolmap.Device.cpu)
        t1 = time.perf_counter()
        matching = pycolmap.FeatureMatchingOptions()
        matching.num_threads = 1
        matching.use_gpu = False
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = 10
        pairing.quadratic_overlap = False
        pairing.loop_detection = False
        pycolmap.match_sequential(db, matching_options=matching, pairing_options=pairing, device=pycolmap.Device.cpu)
        t2 = time.perf_counter()
        opts = pycolmap.IncrementalPipelineOptions()
        opts.ba_refine_focal_length = False
        opts.ba_refine_principal_point = False
        opts.ba_refine_extra_params = False
        opts.num_threads = 1
        opts.random_seed = 0
        opts.max_runtime_seconds = COLMAP_MAX_MAPPING_S  # a cap: the mapper returns what it has registered by then
        # fewer, shorter bundle adjustments than COLMAP's defaults (global BA after 40% growth instead of 10%,
        # at most 20 global / 15 local iterations): one thread maps ~200 images in minutes
        opts.ba_global_frames_ratio = opts.ba_global_points_ratio = 1.4
        opts.ba_global_max_num_iterations = 20
        opts.ba_local_max_num_iterations = 15
        out = tmp / "sparse"
        out.mkdir(exist_ok=True)
        models = pycolmap.incremental_mapping(db, img_dir, out, options=opts)
        t3 = time.perf_counter()
        if log:
            log(f"[vo_baselines] colmap {seq['name']}: {len(frames)} images (every {step}), extraction {t1 - t0:.0f} s, "
                f"matching {t2 - t1:.0f} s, mapping {t3 - t2:.0f} s, {len(models)} model(s)")
        stamp_of = {Path(fr["left"]).name: fr["stamp"] for fr in frames}
        best = max(models.values(), key=lambda r: r.num_reg_images()) if models else None
        rows = []
        if best is not None:
            for img in best.images.values():
                has_pose = img.has_pose if hasattr(img, "has_pose") else img.registered
                if not has_pose:
                    continue
                cfw = img.cam_from_world() if callable(img.cam_from_world) else img.cam_from_world
                M = np.eye(4)
                M[:3] = cfw.matrix()
                rows.append((stamp_of[img.name], np.linalg.inv(M)))
        rows.sort(key=lambda r: r[0])
        return {"stamps": [r[0] for r in rows], "poses": [r[1] for r in rows], "frames_used": len(frames),
                "frames_posed": len(rows), "subsample": step, "models": len(models),
                "model_sizes": sorted((r.num_reg_images() for r in models.values()), reverse=True),
                "times_s": {"extraction": t1 - t0, "matching": t2 - t1, "mapping": t3 - t2}}
    finally:
        if work is None:
            shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------------------------------------------
def results_dir(root: Path | None = None) -> Path:
    return (root or default_out()) / "results"


def run(seq_dir: Path, method: str, out: Path | None = None, log=print) -> dict:
    seq_dir = Path(seq_dir)
    seq = load_sequence(seq_dir)
    out = Path(out) if out else results_dir(seq_dir.parent) / seq["name"] / f"{method}.tum"
    t0 = time.perf_counter()
    res = opencv_stereo(seq_dir, log=log) if method == "opencv_stereo" else colmap(seq_dir, log=log)
    runtime = time.perf_counter() - t0
    eval_vo.write_tum(out, res["stamps"], res["poses"])
    extra = {k: v for k, v in res.items() if k not in ("stamps", "poses", "inliers")}
    if "inliers" in res and res["inliers"]:
        extra["pnp_inliers_median"] = float(np.median(res["inliers"]))
    metrics = eval_vo.evaluate(seq_dir, out, ALIGN[method]) if res["stamps"] else None
    record = {"sequence": seq["name"], "method": method, "align": ALIGN[method], "runtime_s": runtime,
              "seconds_per_frame": runtime / max(res["frames_used"], 1), "generator": seq.get("generator"),
              "trajectory": str(out), **extra, "metrics": metrics}
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    if log:
        log(eval_vo.format_metrics(metrics) if metrics else f"{seq['name']} {method}: no poses")
    return record


def rescore(root: Path) -> None:
    for f in sorted(f for m in METHODS for f in results_dir(root).glob(f"*/{m}.json")):  # the anchors only
        rec = json.loads(f.read_text())
        seq_dir, tum = root / rec["sequence"], f.with_suffix(".tum")
        if (seq_dir / "sequence.json").exists() and tum.exists() and tum.stat().st_size:
            rec["metrics"] = eval_vo.evaluate(seq_dir, tum, rec["align"])
            f.write_text(json.dumps(rec, indent=1) + "\n")


def report(root: Path) -> str:
    """A table over every sequence under ``root`` with results in ``root/results`` (rot deg: after the alignment;
    rot0 deg: anchored at the first pose)."""
    rows = []
    for seq_json in sorted(root.glob("*/sequence.json")):
        name = seq_json.parent.name
        # matcha.json / matcha_mono.json: written by scripts/eval.sh --vo from `matcha vo` (stereo / --monocular);
        # matcha_node_*: by --vo --node
        for method in ("matcha", "matcha_node_15hz", "matcha_node_30hz", "matcha_mono", "matcha_node_mono_15hz",
                       "matcha_node_mono_30hz", *METHODS):
            f = results_dir(root) / name / f"{method}.json"
            if f.exists():
                rows.append(json.loads(f.read_text()))
    head = (f"{'sequence':<17} {'method':<14} {'align':<5} {'ATE %':>7} {'ATE m':>7} {'rot deg':>8} {'rot0 deg':>8} {'RPE %':>7} "
            f"{'RPE deg/m':>9} {'drift m':>8} {'cover':>6} {'used/posed':>11} {'fail':>5} {'time s':>7}")
    lines = [head, "-" * len(head)]
    nan = float("nan")
    for r in rows:
        m = r.get("metrics") or {}
        g = lambda k: m.get(k, nan) if m.get(k) is not None else nan  # noqa: E731
        lines.append(f"{r['sequence']:<17} {r['method']:<14} {r['align']:<5} {g('ate_pct'):7.2f} {g('ate_rmse_m'):7.3f} "
                     f"{g('rot_rmse_deg'):8.2f} {g('rot_rmse_origin_deg'):8.2f} {g('rpe_trans_pct'):7.2f} {g('rpe_rot_deg_per_m'):9.3f} "
                     f"{g('drift_end_m'):8.3f} {g('coverage'):6.2f} "
                     f"{str(r.get('frames_used')) + '/' + str(r.get('frames_posed')):>11} "
                     f"{r.get('failures', '-')!s:>5} {r['runtime_s']:7.0f}")
    if not rows:
        lines.append(f"(no results under {results_dir(root)})")
    node = [r for r in rows if r.get("node")]
    if node:
        lines += ["", "node (stereo_odometry; _mono_: odometry) at the camera rate: frames answered, latency "
                  "receipt -> publish (p99 settled: after the first second)"]
        for r in node:
            n = r["node"]
            lines.append(f"{r['sequence']:<17} {r['method']:<22} {n['answered']}/{n['frames']} answered at "
                         f"{n['input_rate_hz']:.0f} Hz; p50 {n['latency_p50_ms']:.1f} ms, p99 {n['latency_p99_ms']:.1f} ms, "
                         f"p99 settled {n['latency_p99_settled_ms']:.1f} ms, max {n['latency_max_ms']:.1f} ms; "
                         f"states {n['states']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sequence", type=Path, help="sequence folder (with sequence.json)")
    ap.add_argument("--method", choices=METHODS)
    ap.add_argument("--out", type=Path, help="trajectory file (.tum); the JSON record goes beside it")
    ap.add_argument("--report", action="store_true", help="print the table of all results")
    ap.add_argument("--root", type=Path, default=default_out(), help="sequences root for --report / --rescore")
    ap.add_argument("--rescore", action="store_true",
                    help="recompute the metrics of every result from its .tum file (after a change of eval_vo.py)")
    args = ap.parse_args(argv)
    if args.rescore:
        rescore(args.root)
    if args.report or args.rescore:
        print(report(args.root))
        return 0
    if not args.sequence or not args.method:
        ap.error("--sequence and --method are required (or --report)")
    run(args.sequence, args.method, args.out, log=lambda s: print(s, file=sys.stderr, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
