#!/usr/bin/env python3
"""Independent references for matcha's geometry layer (PoseLib and OpenCV).

Sub-commands:

  bench SETS.json OUT.json
      Reads the synthetic sets written by the Rust benchmark (`matcha::geometry::bench::write_sets_json`),
      times PoseLib `estimate_relative_pose` (defaults, and success_prob 0.999 / min_iterations 100),
      OpenCV `findEssentialMat(USAC_MAGSAC) + recoverPose` and pycolmap's
      `estimate_calibrated_two_view_geometry` (its configuration decides E or H; PANORAMIC gives a rotation
      only) on exactly the same correspondences, interleaved instance by instance, and writes one row per
      method {method, median_us, p90_us, median_err_deg, ...} plus the per-call poses.

  pnp SETS.json OUT.json
      Reads the absolute-pose sets written by `matcha bench pnp` (src/bin/matcha/bench/pnp.rs: cameras, world
      points, pixels, threshold, confidence, max_iterations) and times, interleaved instance by instance on
      exactly the same correspondences: PoseLib `estimate_absolute_pose` with its defaults (max_reproj_error
      12 px) and with max_reproj_error = the threshold, and OpenCV `solvePnPRansac` (SOLVEPNP_P3P, and
      SOLVEPNP_SQPNP: EPnP samples, SQPnP refit on the inliers) at the same threshold, confidence and
      iteration cap, followed by `solvePnPRefineLM` on its inliers. Writes per method the call times (us) and
      the poses ({R, t} of x_cam = R X + t, or null); the Rust side scores them. One untimed warm-up call each.

  pnp-reference OUT_DIR
      Writes tests/data/geometry/pnp_poselib.json for tests/integration/geometry_reference.rs: absolute-pose problems generated
      here with numpy (seeded; independent of the Rust generator), coordinates rounded, PoseLib's pose at a 2 px
      threshold and its errors over seeds 0-4, and the ground truth.

  real DUMP.json OUT.json [SEED]
      Runs PoseLib (defaults) on the matched keypoints of real image pairs dumped by the Rust helper test
      `dump_real_matches` (tests/integration/geometry_reference.rs) and writes the estimates in the evaluation's result
      format ({method, pairs: [{id, R, t, num_matches, num_inliers}]}), so ours and PoseLib's can be compared on
      exactly the same points.

  real-fixture OUT.json DUMP.json:ID[,ID...] [DUMP.json:ID...]
      Writes the real-pair regression fixture read by tests/integration/geometry_reference.rs (committed as
      tests/data/geometry/real_pairs.json): the named pairs of the dumps with pixels rounded to 1/1000 px, scores
      to 1e-4, and PoseLib's inlier count and pose error on exactly those rounded points (seeds 0-4).

  reference OUT_DIR
      Writes the small reference files the Rust tests read (committed under tests/data/geometry/):
        pose_poselib.json   correspondences (generated here with numpy, seeded) + PoseLib's pose + ground truth
        undistort_opencv.json   pixels + cv2.undistortPoints for a plumb_bob camera

Run with the project venv (`${MATCHA_CACHE:-$HOME/.cache/matcha}/venv/bin/python`); versions pinned in
tools/requirements.txt (poselib==2.0.5, opencv-python-headless, numpy).
"""

import json
import sys
import time

import cv2
import numpy as np
import poselib


def rot_err_deg(r_est, r_gt):
    c = (np.trace(r_est.T @ r_gt) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def trans_err_deg(t_est, t_gt):
    n = np.linalg.norm(t_est) * np.linalg.norm(t_gt)
    if n == 0 or not np.isfinite(n):
        return 90.0
    a = float(np.degrees(np.arccos(np.clip(np.dot(t_est, t_gt) / n, -1.0, 1.0))))
    return min(a, 180.0 - a)


def pose_err(r, t, r_gt, t_gt):
    """max(rotation, translation-direction error); a pure rotation (t_gt = 0) is scored on the rotation, a
    rotation without translation (t None) on a pair that has one counts 90 deg (as matcha's metrics do)."""
    e_r = rot_err_deg(r, r_gt)
    if np.linalg.norm(t_gt) == 0:
        return e_r
    return max(e_r, 90.0 if t is None else trans_err_deg(t, t_gt))


def camera_dict(cam, width=640, height=480):
    return {"model": "PINHOLE", "width": width, "height": height,
            "params": [cam["fx"], cam["fy"], cam["cx"], cam["cy"]]}


def run_poselib(pa, pb, cam, thr, fast=False):
    ransac = {"max_epipolar_error": thr}
    if fast:
        ransac.update({"success_prob": 0.999, "min_iterations": 100})
    pose, info = poselib.estimate_relative_pose(pa, pb, camera_dict(cam), camera_dict(cam), ransac, {})
    return np.asarray(pose.R), np.asarray(pose.t), info


def run_colmap(pa, pb, cam, thr):
    """COLMAP's calibrated two-view geometry (E, F and H with its configuration; `eval_baselines.py`'s options
    at threshold `thr`): (R, t), (R, None) for a panoramic pair, or None."""
    from eval_baselines import estimate_colmap, THRESHOLD_PX

    assert thr == THRESHOLD_PX, "eval_baselines.estimate_colmap uses its own threshold"
    c = {"fx": cam["fx"], "fy": cam["fy"], "cx": cam["cx"], "cy": cam["cy"], "dist": []}
    pose, _, _ = estimate_colmap(pa, pb, c, c, (480, 640), (480, 640))
    return pose


def run_opencv(pa, pb, cam, thr):
    k = np.array([[cam["fx"], 0, cam["cx"]], [0, cam["fy"], cam["cy"]], [0, 0, 1.0]])
    e, mask = cv2.findEssentialMat(pa, pb, k, method=cv2.USAC_MAGSAC, prob=0.999, threshold=thr)
    if e is None or e.shape != (3, 3):
        return None
    _, r, t, _ = cv2.recoverPose(e, pa, pb, k, mask=mask)
    return r, t.ravel()


def bench(sets_path, out_path):
    cv2.setNumThreads(1)
    data = json.load(open(sets_path))
    thr = data["threshold_px"]
    reps = data["repetitions"]
    methods = {
        "PoseLib (defaults)": lambda pa, pb, cam: run_poselib(pa, pb, cam, thr)[:2],
        "PoseLib (p=0.999, min_it=100)": lambda pa, pb, cam: run_poselib(pa, pb, cam, thr, fast=True)[:2],
        "OpenCV USAC_MAGSAC+recoverPose": lambda pa, pb, cam: run_opencv(pa, pb, cam, thr),
        "COLMAP two-view geometry (pycolmap)": lambda pa, pb, cam: run_colmap(pa, pb, cam, thr),
    }
    times = {m: [] for m in methods}
    errs = {m: [] for m in methods}
    fails = {m: 0 for m in methods}
    poses = {m: [] for m in methods}
    for inst in data["instances"]:
        pa = np.ascontiguousarray(inst["points_a"], dtype=np.float64)
        pb = np.ascontiguousarray(inst["points_b"], dtype=np.float64)
        cam = inst["camera"]
        r_gt = np.array(inst["r_gt"])
        t_gt = np.array(inst["t_gt"])
        for _ in range(reps):
            for name, f in methods.items():
                t0 = time.perf_counter()
                out = f(pa, pb, cam)
                times[name].append((time.perf_counter() - t0) * 1e6)
                if out is None:
                    fails[name] += 1
                    errs[name].append(float("inf"))
                    poses[name].append(None)
                else:
                    r, t = out
                    t = None if t is None else np.asarray(t)
                    errs[name].append(pose_err(np.asarray(r), t, r_gt, t_gt))
                    poses[name].append({"R": np.asarray(r).tolist(), "t": None if t is None else t.tolist()})
    rows = []
    for name in methods:
        ts = np.sort(times[name])
        es = np.sort(errs[name])
        rows.append({
            "method": name,
            "median_us": float(ts[int(round((len(ts) - 1) * 0.5))]),
            "p90_us": float(ts[int(round((len(ts) - 1) * 0.9))]),
            "median_err_deg": float(es[int(round((len(es) - 1) * 0.5))]),
            "failures": fails[name],
            "calls": len(ts),
        })
    samples = [{"method": name, "times_us": times[name],
                "errs_deg": [e if np.isfinite(e) else 1e300 for e in errs[name]]} for name in methods]
    json.dump({"rows": rows, "samples": samples, "poses": poses,
               "versions": {"poselib": poselib.__version__, "opencv": cv2.__version__, "numpy": np.__version__}},
              open(out_path, "w"))


def undistort_to_pinhole(pts, c):
    """Pixels of the ideal pinhole camera with the same K (as tools/eval_baselines.py does for PoseLib)."""
    dist = np.asarray(c.get("dist") or [], np.float64)
    if len(pts) == 0 or not np.any(dist != 0):
        return pts
    k = np.array([[c["fx"], 0, c["cx"]], [0, c["fy"], c["cy"]], [0, 0, 1.0]])
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
    return cv2.undistortPoints(pts.reshape(-1, 1, 2), k, dist, None, None, k, crit).reshape(-1, 2)


def real(dump_path, out_path, seed=0):
    data = json.load(open(dump_path))
    pairs = []
    for p in data["pairs"]:
        pa = np.ascontiguousarray(p["points_a"], dtype=np.float64)
        pb = np.ascontiguousarray(p["points_b"], dtype=np.float64)
        est = {"id": p["id"], "R": None, "t": None, "num_matches": len(pa), "num_inliers": 0}
        if len(pa) >= 5:
            pose, info = poselib.estimate_relative_pose(
                undistort_to_pinhole(pa, p["camera_a"]), undistort_to_pinhole(pb, p["camera_b"]),
                camera_dict(p["camera_a"]), camera_dict(p["camera_b"]), {"max_epipolar_error": 1.0, "seed": seed}, {})
            est.update({"R": np.asarray(pose.R).tolist(), "t": np.asarray(pose.t).tolist(),
                        "num_inliers": int(info["num_inliers"])})
        pairs.append(est)
    json.dump({"method": "PoseLib (defaults) on the dumped matches", "poselib": poselib.__version__,
               "pairs": pairs}, open(out_path, "w"))


def real_fixture(out_path, specs):
    pairs = []
    for spec in specs:
        dump_path, ids = spec.split(":")
        data = {p["id"]: p for p in json.load(open(dump_path))["pairs"]}
        for pid in ids.split(","):
            p = data[pid]
            pa = np.round(np.asarray(p["points_a"], np.float64), 3)
            pb = np.round(np.asarray(p["points_b"], np.float64), 3)
            r_gt, t_gt = np.asarray(p["R"]), np.asarray(p["t"])
            runs = []
            for seed in range(5):
                pose, info = poselib.estimate_relative_pose(
                    undistort_to_pinhole(pa, p["camera_a"]), undistort_to_pinhole(pb, p["camera_b"]),
                    camera_dict(p["camera_a"]), camera_dict(p["camera_b"]),
                    {"max_epipolar_error": 1.0, "seed": seed}, {})
                runs.append({"inliers": int(info["num_inliers"]),
                             "err_deg": pose_err(np.asarray(pose.R), np.asarray(pose.t), r_gt, t_gt)})
            pairs.append({"id": pid, "camera_a": p["camera_a"], "camera_b": p["camera_b"], "R": p["R"], "t": p["t"],
                          "points_a": pa.tolist(), "points_b": pb.tolist(),
                          "score": np.round(np.asarray(p["score"], np.float64), 4).tolist(), "poselib": runs})
    json.dump({"generator": "tools/pose_reference.py real-fixture", "poselib": poselib.__version__,
               "threshold_px": 1.0, "pairs": pairs}, open(out_path, "w"), separators=(",", ":"))


def synthetic(rng, n, outlier_ratio, noise, f=525.0, w=640, h=480):
    """One synthetic relative-pose problem (numpy RNG; independent of the Rust generator)."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.radians(rng.uniform(5, 20))
    r = cv2.Rodrigues(axis * angle)[0]
    t = rng.normal(size=3)
    t /= np.linalg.norm(t)
    k = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])
    n_in = n - int(round(n * outlier_ratio))
    pa, pb = [], []
    while len(pa) < n_in:
        u = np.array([rng.uniform(0, w - 1), rng.uniform(0, h - 1)])
        z = rng.uniform(2, 10)
        xa = np.linalg.solve(k, np.array([u[0], u[1], 1.0])) * z
        xb = r @ xa + t
        if xb[2] <= 0:
            continue
        v = (k @ (xb / xb[2]))[:2]
        if not (0 <= v[0] <= w - 1 and 0 <= v[1] <= h - 1):
            continue
        pa.append(u + noise * rng.normal(size=2))
        pb.append(v + noise * rng.normal(size=2))
    for _ in range(n - n_in):
        pa.append(np.array([rng.uniform(0, w - 1), rng.uniform(0, h - 1)]))
        pb.append(np.array([rng.uniform(0, w - 1), rng.uniform(0, h - 1)]))
    perm = rng.permutation(n)
    return np.array(pa)[perm], np.array(pb)[perm], r, t


def reference(out_dir):
    import os
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(20251)
    cam = {"fx": 525.0, "fy": 525.0, "cx": 320.0, "cy": 240.0}
    cases = []
    for i, (n, out, noise) in enumerate([(400, 0.3, 0.5), (400, 0.5, 0.5), (600, 0.6, 1.0), (300, 0.2, 0.3),
                                          (500, 0.5, 0.5), (800, 0.7, 0.5)]):
        pa, pb, r, t = synthetic(rng, n, out, noise)
        pr, pt, info = run_poselib(pa, pb, cam, 1.0)
        # PoseLib's error over seeds 0-7 too: one run lands anywhere in the flat optimum of the MSAC cost.
        seed_errs = []
        for seed in range(8):
            pose, _ = poselib.estimate_relative_pose(pa, pb, camera_dict(cam), camera_dict(cam),
                                                     {"max_epipolar_error": 1.0, "seed": seed}, {})
            seed_errs.append(pose_err(np.asarray(pose.R), np.asarray(pose.t), r, t))
        cases.append({
            "poselib_err_seeds": seed_errs,
            "camera": cam, "threshold_px": 1.0, "noise_px": noise,
            "points_a": np.round(pa, 6).tolist(), "points_b": np.round(pb, 6).tolist(),
            "r_gt": r.tolist(), "t_gt": t.tolist(),
            "r_poselib": pr.tolist(), "t_poselib": pt.tolist(), "inliers_poselib": int(info["num_inliers"]),
        })
    json.dump({"generator": "tools/pose_reference.py reference", "poselib": poselib.__version__,
               "cases": cases}, open(os.path.join(out_dir, "pose_poselib.json"), "w"))

    # Undistortion reference: cv2.undistortPoints (iterative, run to convergence) on a plumb_bob camera.
    k = np.array([[520.0, 0, 318.2], [0, 515.0, 243.9], [0, 0, 1.0]])
    d = np.array([-0.28, 0.07, 0.0012, -0.0009, -0.01])
    px = np.array([[u, v] for u in np.linspace(20, 620, 13) for v in np.linspace(20, 460, 9)], dtype=np.float64)
    und = cv2.undistortPoints(px.reshape(-1, 1, 2), k, d, R=None, P=None,
                              criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-15)).reshape(-1, 2)
    json.dump({"generator": "tools/pose_reference.py reference", "opencv": cv2.__version__,
               "k": [k[0, 0], k[1, 1], k[0, 2], k[1, 2]], "d": d.tolist(),
               "pixels": px.tolist(), "normalized": und.tolist()},
              open(os.path.join(out_dir, "undistort_opencv.json"), "w"))


def camera_matrix(cam):
    return np.array([[cam["fx"], 0, cam["cx"]], [0, cam["fy"], cam["cy"]], [0, 0, 1.0]])


def run_poselib_absolute(world, pixels, cam, thr=None, seed=0):
    """PoseLib's robust absolute pose: (R, t, num_inliers); `thr` None keeps its defaults (12 px)."""
    ransac = {"seed": seed}
    if thr is not None:
        ransac["max_reproj_error"] = thr
    c = camera_dict(cam, int(cam.get("width", 640)), int(cam.get("height", 480)))
    pose, info = poselib.estimate_absolute_pose(pixels, world, c, ransac, {})
    return np.asarray(pose.R), np.asarray(pose.t), int(info["num_inliers"])


def run_opencv_pnp(world, pixels, cam, thr, conf, max_it, flag):
    """solvePnPRansac (flag) + solvePnPRefineLM on its inliers: (R, t) or None."""
    k = camera_matrix(cam)
    ok, rvec, tvec, inl = cv2.solvePnPRansac(world, pixels, k, None, iterationsCount=max_it,
                                             reprojectionError=thr, confidence=conf, flags=flag)
    if not ok or inl is None or len(inl) < 4:
        return None
    inl = inl.ravel()
    rvec, tvec = cv2.solvePnPRefineLM(world[inl], pixels[inl], k, None, rvec, tvec)
    return cv2.Rodrigues(rvec)[0], tvec.ravel()


def pnp_bench(sets_path, out_path):
    cv2.setNumThreads(1)
    data = json.load(open(sets_path))
    thr, conf, max_it = data["threshold_px"], data["confidence"], int(data["max_iterations"])
    thr_name = f"{thr:g} px"
    methods = {
        "PoseLib (defaults: 12 px)": lambda w, p, c: run_poselib_absolute(w, p, c)[:2],
        f"PoseLib ({thr_name})": lambda w, p, c: run_poselib_absolute(w, p, c, thr)[:2],
        "OpenCV P3P + RefineLM": lambda w, p, c: run_opencv_pnp(w, p, c, thr, conf, max_it, cv2.SOLVEPNP_P3P),
        "OpenCV SQPNP + RefineLM": lambda w, p, c: run_opencv_pnp(w, p, c, thr, conf, max_it, cv2.SOLVEPNP_SQPNP),
    }
    problems = [(np.ascontiguousarray(inst["world"], dtype=np.float64),
                 np.ascontiguousarray(inst["pixels"], dtype=np.float64), inst["camera"])
                for inst in data["instances"]]
    times = {m: [] for m in methods}
    poses = {m: [] for m in methods}
    for f in methods.values():
        f(*problems[0])
    for w, p, c in problems:
        for name, f in methods.items():
            t0 = time.perf_counter()
            out = f(w, p, c)
            times[name].append((time.perf_counter() - t0) * 1e6)
            poses[name].append(None if out is None else {"R": np.asarray(out[0]).tolist(),
                                                         "t": np.asarray(out[1]).ravel().tolist()})
    json.dump({"samples": [{"method": m, "times_us": times[m], "poses": poses[m]} for m in methods],
               "versions": {"poselib": poselib.__version__, "opencv": cv2.__version__, "numpy": np.__version__}},
              open(out_path, "w"))


def pnp_synthetic(rng, n, outlier_ratio, noise, layout, depth, f=500.0, w=640, h=480):
    """One absolute-pose problem (numpy RNG): world points, pixels, R, t (x_cam = R X + t), median inlier depth.
    layout: "wide" (whole image), "narrow" (120x90 px window at the centre), "plane" (one plane, normal tilted
    0-60 deg, 3 m away). Outliers: the pixel replaced by a random one in the same region."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    r = cv2.Rodrigues(axis * rng.uniform(0, np.pi))[0]
    c = rng.uniform(-5, 5, size=3)
    t = -r @ c
    k = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1.0]])
    if layout == "narrow":
        box = (k[0, 2] - 60, k[0, 2] + 60, k[1, 2] - 45, k[1, 2] + 45)
    else:
        box = (0, w - 1, 0, h - 1)
    tilt, az = rng.uniform(0, np.radians(60)), rng.uniform(0, 2 * np.pi)
    normal = np.array([np.sin(tilt) * np.cos(az), np.sin(tilt) * np.sin(az), np.cos(tilt)])
    n_out = int(round(n * outlier_ratio))
    world, pix, depths = [], [], []
    while len(world) < n:
        u = np.array([rng.uniform(box[0], box[1]), rng.uniform(box[2], box[3])])
        ray = np.linalg.solve(k, np.array([u[0], u[1], 1.0]))
        z = 3.0 / (normal @ ray) if layout == "plane" else rng.uniform(*depth)
        if not depth[0] <= z <= depth[1]:
            continue
        world.append(r.T @ (ray * z - t))
        if len(world) <= n_out:
            pix.append(np.array([rng.uniform(box[0], box[1]), rng.uniform(box[2], box[3])]))
        else:
            pix.append(u + noise * rng.normal(size=2))
            depths.append(z)
    perm = rng.permutation(n)
    return np.array(world)[perm], np.array(pix)[perm], r, t, float(np.median(depths)), k


def pnp_reference(out_dir):
    import os
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(20261202)
    thr = 2.0
    cases = []
    for name, n, out, noise, layout, depth in [
            ("general", 300, 0.3, 0.7, "wide", (1, 8)), ("heavy outliers", 300, 0.7, 0.7, "wide", (1, 8)),
            ("few points", 30, 0.2, 1.0, "wide", (1, 8)), ("far/narrow", 200, 0.3, 0.7, "narrow", (10, 40)),
            ("planar", 200, 0.3, 0.7, "plane", (1, 8)), ("general, 1 px", 200, 0.5, 1.0, "wide", (1, 8))]:
        world, pix, r, t, med_depth, k = pnp_synthetic(rng, n, out, noise, layout, depth)
        world, pix = np.round(world, 5), np.round(pix, 4)
        cam = {"fx": k[0, 0], "fy": k[1, 1], "cx": k[0, 2], "cy": k[1, 2], "width": 640, "height": 480}
        c_gt = -r.T @ t
        runs = []
        for seed in range(5):
            pr, pt, inl = run_poselib_absolute(world, pix, cam, thr, seed)
            runs.append({"rot_deg": rot_err_deg(pr, r), "centre_m": float(np.linalg.norm(-pr.T @ pt - c_gt)),
                         "inliers": inl})
            if seed == 0:
                r_pl, t_pl = pr, pt
        cases.append({"name": name, "camera": cam, "threshold_px": thr, "noise_px": noise,
                      "median_depth": med_depth, "world": world.tolist(), "pixels": pix.tolist(),
                      "r_gt": r.tolist(), "t_gt": t.tolist(), "r_poselib": r_pl.tolist(), "t_poselib": t_pl.tolist(),
                      "poselib_seeds": runs})
    json.dump({"generator": "tools/pose_reference.py pnp-reference", "poselib": poselib.__version__,
               "cases": cases}, open(os.path.join(out_dir, "pnp_poselib.json"), "w"), separators=(",", ":"))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "bench":
        bench(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "pnp":
        pnp_bench(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "pnp-reference":
        pnp_reference(sys.argv[2])
    elif len(sys.argv) in (4, 5) and sys.argv[1] == "real":
        real(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) == 5 else 0)
    elif len(sys.argv) >= 4 and sys.argv[1] == "real-fixture":
        real_fixture(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) == 3 and sys.argv[1] == "reference":
        reference(sys.argv[2])
    else:
        print(__doc__)
        sys.exit(2)
