"""Independent checks of the ground truth of the eval sets written by ``tools/eval_sets.py``.

Each set is built (idempotently) under ``$MATCHA_CACHE/eval`` (or ``MATCHA_EVAL_DIR``) and its manifest's R, t are
checked against correspondences that do not come from the pose itself:

- rendered: surface points hit by the ray caster in view a are projected into view b, the caster must hit the same
  surface point there (visibility), the pairs must satisfy the GT epipolar constraint (< 0.1 px), and the PNGs
  must show the same colours at those positions (after undoing view b's gain/gamma).
- chessboard: corners detected afresh in both images of every pair satisfy the GT essential matrix (Sampson error
  < 1 px after undistortion), and all stereo pairs give the same rig extrinsics.
- motorcycle: the Middlebury disparity map's correspondences satisfy the GT epipolar geometry, triangulate in
  front of both cameras, and agree photometrically.

Run: ``$MATCHA_CACHE/venv/bin/python -m pytest tools/test_eval_sets.py -q``
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval_sets as E  # noqa: E402
from render.rooms import rendered_scene  # noqa: E402
from render.scene import Camera, Scene  # noqa: E402

OUT = Path(os.environ["MATCHA_EVAL_DIR"]) if os.environ.get("MATCHA_EVAL_DIR") else E.default_out()


def need_opencv_doc():
    if not (E.OPENCV_DATA / "left01.jpg").exists():
        pytest.skip("Debian opencv-doc not installed (apt-get install opencv-doc)")


@pytest.fixture(scope="module")
def manifests():
    need_opencv_doc()
    return {n: (E.load_manifest(E.build(n, OUT)), OUT / n) for n in E.SETS}


def essential(pair) -> np.ndarray:
    return E.skew(np.asarray(pair["t"], float)) @ np.asarray(pair["R"], float)


def fundamental(pair) -> np.ndarray:
    Ka, Kb = E.K_of(pair["camera_a"]), E.K_of(pair["camera_b"])
    return np.linalg.inv(Kb).T @ essential(pair) @ np.linalg.inv(Ka)


def sampson_px(F: np.ndarray, xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
    """Sampson distance of pixel correspondences (N x 2 each) to F, in pixels."""
    ha = np.c_[xa, np.ones(len(xa))]
    hb = np.c_[xb, np.ones(len(xb))]
    Fa = ha @ F.T   # F x_a
    Fb = hb @ F     # F^T x_b
    num = np.sum(hb * Fa, axis=1) ** 2
    den = Fa[:, 0] ** 2 + Fa[:, 1] ** 2 + Fb[:, 0] ** 2 + Fb[:, 1] ** 2
    return np.sqrt(num / den)


def surface_points(scene: Scene, hits) -> np.ndarray:
    """World points o + s u + t v of the hit surfaces, from the surface coordinates (not the ray depth)."""
    P = np.full(hits.depth.shape + (3,), np.nan)
    for i in np.unique(hits.surface[hits.surface >= 0]):
        m = hits.surface == i
        P[m] = scene.surfaces[i].point(hits.s[m], hits.t[m])
    return P


def bilinear(img: np.ndarray, xy: np.ndarray) -> np.ndarray:
    x, y = xy[:, 0], xy[:, 1]
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    im = img.reshape(img.shape[0], img.shape[1], -1).astype(np.float64)
    x1, y1 = np.minimum(x0 + 1, im.shape[1] - 1), np.minimum(y0 + 1, im.shape[0] - 1)
    return ((1 - fy) * ((1 - fx) * im[y0, x0] + fx * im[y0, x1])
            + fy * ((1 - fx) * im[y1, x0] + fx * im[y1, x1]))


# ------------------------------------------------------------------------------------------------------------------
# common
# ------------------------------------------------------------------------------------------------------------------
def test_manifests_well_formed(manifests):
    for name, (m, root) in manifests.items():
        assert m["name"] == name
        assert len(m["pairs"]) >= 2
        ids = [p["id"] for p in m["pairs"]]
        assert len(set(ids)) == len(ids)
        for p in m["pairs"]:
            R = np.asarray(p["R"], float)
            assert np.allclose(R @ R.T, np.eye(3), atol=1e-9) and np.linalg.det(R) > 0.999
            assert abs(np.linalg.norm(p["t"]) - 1) < 1e-9
            for k in ("image_a", "image_b"):
                assert (root / p[k]).exists(), p[k]
            for c in ("camera_a", "camera_b"):
                assert set(p[c]) >= {"fx", "fy", "cx", "cy", "dist"} and len(p[c]["dist"]) == 5


def test_rebuild_is_idempotent(manifests):
    for name, (_, root) in manifests.items():
        before = (root / "manifest.json").stat().st_mtime_ns
        E.build(name, OUT)
        assert (root / "manifest.json").stat().st_mtime_ns == before


# ------------------------------------------------------------------------------------------------------------------
# rendered
# ------------------------------------------------------------------------------------------------------------------
def test_rendered_ground_truth(manifests):
    m, root = manifests["rendered"]
    scene = Scene(rendered_scene())
    spec = {s[0]: s for s in E.rendered_pairs_spec()}
    K = E.RENDER_K
    rng = np.random.default_rng(0)
    n_checked = 0
    for pair in m["pairs"]:
        pid, Ra, Ca, Rb, Cb, _, _, gain, gamma = spec[pair["id"]]
        cam_a, cam_b = Camera(K, E.RENDER_W, E.RENDER_H, Ra, Ca), Camera(K, E.RENDER_W, E.RENDER_H, Rb, Cb)
        # 1. surface points seen at random pixel centres of view a
        uv_a = np.c_[rng.integers(2, E.RENDER_W - 2, 1500), rng.integers(2, E.RENDER_H - 2, 1500)].astype(float)
        ha = scene.cast(cam_a, uv_a)
        lam_a, hit = ha.depth, ha.surface >= 0
        P = surface_points(scene, ha)[hit]
        uv_a = uv_a[hit]
        # the ray-cast depth agrees with the surface point
        Xa = (P - Ca) @ Ra.T
        assert np.allclose(Xa[:, 2], lam_a[hit], rtol=1e-9, atol=1e-9)
        # 2. project into b and ray-cast there: the same surface point must be hit where it is visible
        Xb = (P - Cb) @ Rb.T
        front = Xb[:, 2] > 0.1
        proj = Xb[front] @ K.T
        uv_b = proj[:, :2] / proj[:, 2:]
        inside = (uv_b[:, 0] > 1) & (uv_b[:, 0] < E.RENDER_W - 2) & (uv_b[:, 1] > 1) & (uv_b[:, 1] < E.RENDER_H - 2)
        uv_b, Pf, uva = uv_b[inside], P[front][inside], uv_a[front][inside]
        Pb = surface_points(scene, scene.cast(cam_b, uv_b))
        visible = np.linalg.norm(Pb - Pf, axis=1) < 1e-6
        assert visible.mean() > 0.3, f"{pid}: only {visible.mean():.2f} of the points are co-visible"
        xa, xb = uva[visible], uv_b[visible]
        # 3. the manifest's R, t: epipolar constraint on the rendered pixel positions
        err = sampson_px(fundamental(pair), xa, xb)
        assert err.max() < 0.1, f"{pid}: Sampson error up to {err.max():.3g} px"
        # and the direct transfer x_b = R x_a + t holds with the true scale
        R, t = np.asarray(pair["R"]), np.asarray(pair["t"])
        t_true = Rb @ (Ca - Cb)
        assert np.allclose(R, Rb @ Ra.T, atol=1e-12)
        assert np.allclose(t, t_true / np.linalg.norm(t_true), atol=1e-12)
        # 4. the PNGs show the same surface at those positions (undo gain/gamma of b; noise sigma 2)
        ia = cv2.cvtColor(cv2.imread(str(root / pair["image_a"])), cv2.COLOR_BGR2RGB).astype(float) / 255
        ib = cv2.cvtColor(cv2.imread(str(root / pair["image_b"])), cv2.COLOR_BGR2RGB).astype(float) / 255
        ib_lin = np.power(np.clip(ib / gain, 0, 1), 1 / gamma)
        ca, cb = bilinear(ia, xa), bilinear(ib_lin, xb)
        diff = np.median(np.abs(ca - cb))
        shuffled = np.median(np.abs(ca - cb[rng.permutation(len(cb))]))
        assert diff < 0.04 and diff < 0.3 * shuffled, f"{pid}: photometric {diff:.3f} vs shuffled {shuffled:.3f}"
        n_checked += 1
    assert n_checked == len(m["pairs"]) >= 20


# ------------------------------------------------------------------------------------------------------------------
# chessboard
# ------------------------------------------------------------------------------------------------------------------
def test_chessboard_corners_satisfy_gt(manifests):
    m, root = manifests["chessboard"]
    assert len(m["pairs"]) >= 20
    for pair in m["pairs"]:
        pts = []
        for img_key, cam_key in (("image_a", "camera_a"), ("image_b", "camera_b")):
            gray = cv2.imread(str(root / pair[img_key]), cv2.IMREAD_GRAYSCALE)
            c = E.detect_board(gray)
            assert c is not None, f"{pair['id']}: board not found in {pair[img_key]}"
            cam = pair[cam_key]
            K = E.K_of(cam)
            crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
            und = cv2.undistortPoints(c.reshape(-1, 1, 2), K, np.asarray(cam["dist"]), None, None, K, crit)
            pts.append(und.reshape(-1, 2))
        F = fundamental(pair)
        # the 9x6 board is symmetric under a 180 deg turn: the corner order of b may be reversed relative to a
        errs = [sampson_px(F, pts[0], pts[1]), sampson_px(F, pts[0], pts[1][::-1])]
        best = min(errs, key=lambda e: np.sqrt(np.mean(e ** 2)))
        worst = max(errs, key=lambda e: np.sqrt(np.mean(e ** 2)))
        rms = np.sqrt(np.mean(best ** 2))
        assert rms < 1.0, f"{pair['id']}: Sampson RMS {rms:.3f} px"
        # the other order must be clearly wrong, otherwise the check would not discriminate
        assert np.sqrt(np.mean(worst ** 2)) > 3 * max(rms, 0.1), pair["id"]


def test_chessboard_stereo_rig_is_rigid(manifests):
    m, _ = manifests["chessboard"]
    st = [p for p in m["pairs"] if p["kind"] == "stereo"]
    assert len(st) >= 8
    R0, t0 = np.asarray(st[0]["R"]), np.asarray(st[0]["t"])
    for p in st[1:]:
        assert E.rot_angle_deg(np.asarray(p["R"]) @ R0.T) < 1.0, p["id"]
        assert np.degrees(np.arccos(np.clip(np.dot(p["t"], t0), -1, 1))) < 3.0, p["id"]
    # the right camera sits on the left camera's +x axis: x_b = x_a + t with t pointing to -x
    assert all(p["t"][0] < -0.9 for p in st)


def test_chessboard_temporal_rotations(manifests):
    m, _ = manifests["chessboard"]
    tp = [p for p in m["pairs"] if p["kind"] == "temporal"]
    assert len(tp) >= 10
    for p in tp:
        assert 5.0 <= E.rot_angle_deg(np.asarray(p["R"])) <= 45.0


# ------------------------------------------------------------------------------------------------------------------
# motorcycle
# ------------------------------------------------------------------------------------------------------------------
def test_motorcycle_disparity_satisfies_gt(manifests):
    m, root = manifests["motorcycle"]
    disp = np.load(root / "disp0.npy")
    ys, xs = np.nonzero(np.isfinite(disp))
    sel = np.random.default_rng(0).choice(len(ys), 20000, replace=False)
    ys, xs = ys[sel], xs[sel]
    d = disp[ys, xs].astype(np.float64)
    x0 = np.c_[xs, ys].astype(np.float64)
    x1 = np.c_[xs - d, ys].astype(np.float64)
    pairs = {p["id"]: p for p in m["pairs"]}
    for pid, (xa, xb) in {"im0-im1": (x0, x1), "im1-im0": (x1, x0)}.items():
        pair = pairs[pid]
        err = sampson_px(fundamental(pair), xa, xb)
        assert np.percentile(err, 99) < 1.0, f"{pid}: Sampson p99 {np.percentile(err, 99):.3f} px"
        # cheirality: every GT correspondence triangulates in front of both cameras with this R, t
        Ka, Kb = E.K_of(pair["camera_a"]), E.K_of(pair["camera_b"])
        Pa = Ka @ np.c_[np.eye(3), np.zeros(3)]
        Pb = Kb @ np.c_[np.asarray(pair["R"]), np.asarray(pair["t"])]
        X = cv2.triangulatePoints(Pa, Pb, xa.T, xb.T)
        X = (X[:3] / X[3]).T
        za = X[:, 2]
        zb = (X @ np.asarray(pair["R"]).T + np.asarray(pair["t"]))[:, 2]
        assert (za > 0).mean() > 0.999 and (zb > 0).mean() > 0.999, pid
    # the depth implied by the calibration is the Middlebury one (metres, with the true baseline)
    c = E.MIDDLEBURY_MOTORCYCLE
    ka = pairs["im0-im1"]["camera_a"]
    kb = pairs["im0-im1"]["camera_b"]
    z = ka["fx"] * c["baseline_mm"] / 1000 / (d + (kb["cx"] - ka["cx"]))
    assert 1.0 < np.median(z) < 5.0
    # photometric: left(x) ~ right(x - d), and clearly better than the opposite sign
    left = cv2.imread(str(root / "images/im0.png"), cv2.IMREAD_GRAYSCALE).astype(float)
    right = cv2.imread(str(root / "images/im1.png"), cv2.IMREAD_GRAYSCALE).astype(float)
    ok = (x1[:, 0] > 0) & (x1[:, 0] < right.shape[1] - 2)
    good = np.median(np.abs(left[ys[ok], xs[ok]] - bilinear(right, x1[ok])[:, 0]))
    xw = np.c_[xs + d, ys].astype(float)
    ok2 = (xw[:, 0] > 0) & (xw[:, 0] < right.shape[1] - 2)
    bad = np.median(np.abs(left[ys[ok2], xs[ok2]] - bilinear(right, xw[ok2])[:, 0]))
    assert good < 6 and good < 0.3 * bad, (good, bad)
