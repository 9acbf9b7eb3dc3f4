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
- rooms (read from the cache that ``tools/eval_sets.py`` builds, a few minutes; the test fails, naming the command,
  when it is missing): the category quotas and promises (dominant plane, plain wall, furniture share, t = 0 of the
  pure rotations), and on a sample of pairs the saved depth of view a, lifted to 3-D, moved by the manifest's pose
  and projected into b, lands where a fresh ray cast of b hits the same surface at the same depth, and satisfies
  the essential matrix of the manifest (while a 1-degree-off pose does not), and on every pair the texture of the
  two PNGs correlates at the true correspondences and not at 1 degree off.
- the renderer on small images: bit-identical re-renders, bounding-box culling that changes no hit, exact depth
  maps, shadows, and the sensor model (Poisson-Gaussian noise statistics, vignetting, centred blur kernels).

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
from render import sensor, shading  # noqa: E402
from render.frame import render  # noqa: E402
from render.rooms import rendered_scene  # noqa: E402
from render.scene import Box, Camera, Rect, Scene, look_at, relative_pose  # noqa: E402

OUT = Path(os.environ["MATCHA_EVAL_DIR"]) if os.environ.get("MATCHA_EVAL_DIR") else E.default_out()


def need_opencv_doc():
    if not (E.OPENCV_DATA / "left01.jpg").exists():
        pytest.skip("Debian opencv-doc not installed (apt-get install opencv-doc)")


CHEAP_SETS = ("chessboard", "motorcycle", "rendered")  # built here when missing (seconds); rooms takes minutes


@pytest.fixture(scope="module")
def manifests():
    need_opencv_doc()
    return {n: (E.load_manifest(E.build(n, OUT)), OUT / n) for n in CHEAP_SETS}


@pytest.fixture(scope="module")
def rooms():
    """The cached rooms set; it must have been built by the current generator."""
    need_opencv_doc()
    path = OUT / "rooms" / "manifest.json"
    m = E.load_manifest(path) if path.exists() else {}
    if m.get("generator_hash") != E.generator_hash():
        pytest.fail(f"the rooms set at {path.parent} is missing or outdated: build it with "
                    f"python tools/eval_sets.py --sets rooms --out {OUT} (a few minutes; scripts/test.sh does it)")
    return m, path.parent


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
def test_manifests_well_formed(manifests, rooms):
    for name, (m, root) in {**manifests, "rooms": rooms}.items():
        assert m["name"] == name
        assert len(m["pairs"]) >= 2
        ids = [p["id"] for p in m["pairs"]]
        assert len(set(ids)) == len(ids)
        for p in m["pairs"]:
            R = np.asarray(p["R"], float)
            assert np.allclose(R @ R.T, np.eye(3), atol=1e-9) and np.linalg.det(R) > 0.999
            if p.get("pure_rotation"):
                assert p["t"] == [0.0, 0.0, 0.0]
            else:
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


# ------------------------------------------------------------------------------------------------------------------
# rooms
# ------------------------------------------------------------------------------------------------------------------
def test_rooms_categories_and_promises(rooms):
    m, _ = rooms
    pairs = m["pairs"]
    assert len(pairs) >= 120
    counts = {c: sum(p["category"] == c for p in pairs) for c in E.ROOMS_QUOTAS}
    assert counts == E.ROOMS_QUOTAS
    assert len({p["room"] for p in pairs}) >= 5
    for p in pairs:
        c = p["category"]
        assert p["kind"] == "rendered" and p["overlap"] >= 0.3, p["id"]
        lo, hi = E.ROTATION_RANGE.get(c, (2.0, 30.0))
        assert lo - 1e-9 <= p["rotation_deg"] <= hi + 1e-9, p["id"]
        if c in ("wall", "floor"):
            assert p["dominant_plane_fraction"] >= 0.7, p["id"]
        if c == "low_texture":
            assert p["plain_wall_fraction"] >= 0.5, p["id"]
        if c == "pure_rotation":
            assert p["pure_rotation"] and p["t"] == [0.0, 0.0, 0.0] and p["baseline_m"] == 0.0, p["id"]
        else:
            assert not p["pure_rotation"]
            b_lo, b_hi = E.BASELINE_RANGE.get(c, E.MOVED_BASELINE)
            assert b_lo - 1e-9 <= p["baseline_m"] <= b_hi + 1e-9, p["id"]
        if c == "small_baseline":
            assert 1.5 <= p["median_depth_m"] <= 6.0, p["id"]
        assert 0.3 - 1e-9 <= p["light_move_m"] <= 2.0 + 1e-9, p["id"]
    objects = [p for p in pairs if p["wall_objects"]]
    assert len(objects) == E.ROOMS_WALL_OBJECTS and all(0.05 <= p["furniture_fraction"] <= 0.2 for p in objects)
    # the photometric changes are there in about the asked-for proportions
    n = len(pairs)
    assert 0.15 * n <= sum(p["sensor"][1]["blur"] is not None for p in pairs) <= 0.35 * n
    assert 0.2 * 2 * n <= sum(s["jpeg_quality"] is not None for p in pairs for s in p["sensor"]) <= 0.4 * 2 * n


def lift(depth: np.ndarray, K: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Pixel centres uv (N x 2, integer) with the depth map's z -> points in the camera frame (N x 3)."""
    z = depth[uv[:, 1], uv[:, 0]].astype(np.float64)
    return np.c_[(uv - K[[0, 1], [2, 2]]) / K[[0, 1], [0, 1]] * z[:, None], z]


def transfer(pair, p: dict, depth: np.ndarray, uv: np.ndarray, R: np.ndarray):
    """View a's pixels uv lifted with the saved depth and moved by (R, the manifest's t at the true scale) into b:
    (hits of a at uv, the moved points' pixels in b, which of them lie in b's image, which of those b's ray cast
    hits at the same depth)."""
    K = E.K_of(p["camera_a"])
    Xb = lift(depth, K, uv) @ R.T + np.asarray(p["t"]) * p["baseline_m"]
    uv_b = Xb[:, :2] / Xb[:, 2:] * K[[0, 1], [0, 1]] + K[[0, 1], [2, 2]]
    inside = (Xb[:, 2] > 0) & np.all((uv_b > 0) & (uv_b < [E.ROOMS_W - 1, E.ROOMS_H - 1]), axis=1)
    hb = pair.scene.cast(pair.cam_b, uv_b[inside])
    same = np.abs(hb.depth - Xb[inside, 2]) < 1e-4 * Xb[inside, 2]  # float32 depth in the file
    return hb, uv_b, inside, same


def test_rooms_ground_truth_from_depth(rooms):
    m, root = rooms
    rng = np.random.default_rng(0)
    by_cat = {}
    for k, p in enumerate(m["pairs"]):
        by_cat.setdefault(p["category"], []).append(k)
    sample = [ks[i] for ks in by_cat.values() for i in (0, len(ks) // 2)]  # two pairs of every category
    for k in sample:
        p = m["pairs"][k]
        pair = E.RoomsPair(k)
        assert pair.id == p["id"]
        depth = np.load(root / p["depth_a"])
        assert depth.shape == (E.ROOMS_H, E.ROOMS_W) and depth.dtype == np.float32
        uv = np.c_[rng.integers(0, E.ROOMS_W, 800), rng.integers(0, E.ROOMS_H, 800)]
        # the saved depth is the ray caster's, at the pixel centres
        ha = pair.scene.cast(pair.cam_a, uv.astype(float))
        assert np.allclose(depth[uv[:, 1], uv[:, 0]], ha.depth, rtol=1e-6)
        # moved by the manifest's pose, a's points reappear in b on the same surface at the same depth ...
        R = np.asarray(p["R"])
        hb, uv_b, inside, same = transfer(pair, p, depth, uv, R)
        assert same.mean() > 0.25, f"{p['id']}: only {same.mean():.2f} of a's points reappear in b"
        assert np.all(hb.surface[same] == ha.surface[inside][same]), p["id"]
        # ... and do not with the rotation 1 degree off
        off = cv2.Rodrigues(np.array([0.0, np.radians(1.0), 0.0]))[0] @ R
        assert transfer(pair, p, depth, uv, off)[3].mean() < 0.05, p["id"]
        # the manifest's essential matrix (the infinite homography for t = 0) holds on these correspondences
        xa, xb = uv[inside][same].astype(float), uv_b[inside][same]
        K = E.K_of(p["camera_a"])
        if p["pure_rotation"]:
            proj = np.c_[xa, np.ones(len(xa))] @ (K @ R @ np.linalg.inv(K)).T
            assert np.abs(proj[:, :2] / proj[:, 2:] - xb).max() < 1e-3, p["id"]
        else:
            err = sampson_px(fundamental(p), xa, xb)
            assert np.percentile(err, 99) < 0.01, f"{p['id']}: Sampson error p99 {np.percentile(err, 99):.3g} px"


def high_pass(path: Path) -> np.ndarray:
    """Grey image minus its Gaussian blur (sigma 3 px): the texture without the light's smooth shading."""
    g = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    return g - cv2.GaussianBlur(g, (0, 0), 3.0)


def test_rooms_images_show_the_same_surfaces(rooms):
    """The PNGs agree with the geometry: at the true correspondences the texture (high-pass grey levels) of a and b
    correlates, despite the moving light, gain, noise, blur and JPEG; with the rotation 1 degree off it does not."""
    m, root = rooms
    rng = np.random.default_rng(1)
    off_by_1 = cv2.Rodrigues(np.array([0.0, np.radians(1.0), 0.0]))[0]
    for p in m["pairs"]:
        K = E.K_of(p["camera_a"])
        depth = np.load(root / p["depth_a"])
        ga, gb = high_pass(root / p["image_a"]), high_pass(root / p["image_b"])
        uv = np.c_[rng.integers(0, E.ROOMS_W, 4000), rng.integers(0, E.ROOMS_H, 4000)]
        r = []
        for R in (np.asarray(p["R"]), off_by_1 @ np.asarray(p["R"])):
            Xb = lift(depth, K, uv) @ R.T + np.asarray(p["t"]) * p["baseline_m"]
            uv_b = Xb[:, :2] / Xb[:, 2:] * K[[0, 1], [0, 1]] + K[[0, 1], [2, 2]]
            ok = (Xb[:, 2] > 0) & np.all((uv_b > 0) & (uv_b < [E.ROOMS_W - 1, E.ROOMS_H - 1]), axis=1)
            r.append(np.corrcoef(ga[uv[ok, 1], uv[ok, 0]], bilinear(gb, uv_b[ok])[:, 0])[0, 1])
        assert r[0] > 0.3 and r[0] > r[1] + 0.2, f"{p['id']}: texture correlation {r[0]:.2f} (1 deg off: {r[1]:.2f})"


# ------------------------------------------------------------------------------------------------------------------
# renderer
# ------------------------------------------------------------------------------------------------------------------
def small_pair(k: int = 0):
    """A rooms pair rendered at 160 x 120."""
    pair = E.RoomsPair(k)
    return pair, pair.render(scale=0.25)


def test_render_is_deterministic():
    _, out1 = small_pair(0)
    _, out2 = small_pair(0)
    for (i1, f1, s1), (i2, f2, s2) in zip(out1, out2):
        assert i1.shape == (120, 160, 3) and i1.tobytes() == i2.tobytes() and s1 == s2
        assert f1.depth.tobytes() == f2.depth.tobytes() and f1.colour.tobytes() == f2.colour.tobytes()
    _, other = small_pair(1)
    assert other[0][0].tobytes() != out1[0][0].tobytes()


def test_culled_grid_cast_equals_plain_cast():
    pair = E.RoomsPair(0)
    cam = pair.cam_a.scaled(0.25)
    grid = pair.scene.cast_grid(cam, 0.25, -0.25)
    vs, us = np.mgrid[0:cam.height, 0:cam.width]
    plain = pair.scene.cast(cam, np.c_[us.ravel() + 0.25, vs.ravel() - 0.25])
    assert np.array_equal(grid.surface.ravel(), plain.surface)
    assert np.array_equal(grid.depth.ravel(), plain.depth) and np.array_equal(grid.s.ravel(), plain.s)


def test_depth_map_is_exact():
    """Depth z along the optical axis: the pixel's ray at that depth lies on the surface it reports."""
    pair, ((_, frame, _), _) = small_pair(2)
    cam = pair.cam_a.scaled(0.25)
    vs, us = np.mgrid[0:cam.height, 0:cam.width]
    K = cam.K
    Xc = np.stack([(us - K[0, 2]) / K[0, 0] * frame.depth, (vs - K[1, 2]) / K[1, 1] * frame.depth, frame.depth], -1)
    X = Xc.reshape(-1, 3) @ cam.R + cam.C
    n = pair.scene.normals[frame.surface.ravel()]
    o = np.array([pair.scene.surfaces[i].o for i in frame.surface.ravel()])
    assert np.abs(np.einsum("ij,ij->i", X - o, n)).max() < 1e-9
    # the normal map faces the camera
    assert np.all(np.einsum("ij,ij->i", frame.normal.reshape(-1, 3), X - cam.C) < 0)


def test_shadow_of_a_box():
    grey = np.full((16, 16, 3), 0.5, np.float32)
    floor = Rect([-5, 0, -5], [10, 0, 0], [0, 0, 10], grey, kind="floor")
    box = Box([0, -0.5, 0], [1, 1, 1], 0.3, {f: grey for f in Box.FACES})
    scene = Scene([floor], [box])
    L = np.float32([-1.5, -2.5, 0.0])
    P = np.float32([[0.2, 0.0, 0.2], [3.0, 0.0, 3.0], [0.1, -1.0, 0.1]])  # under the box, far from it, on its top
    assert list(shading.occluded(scene.boxes, P, L)) == [True, False, False]
    C = np.array([0.0, -3.0, -4.0])
    cam = Camera(np.array([[100.0, 0, 79.5], [0, 100, 59.5], [0, 0, 1]]), 160, 120, look_at(C, np.zeros(3), 0), C)
    lighting = shading.Lighting((shading.PointLight(tuple(L)),))
    lit, unlit = render(scene, cam, lighting, shadows=True), render(scene, cam, lighting, shadows=False)
    inner_floor = cv2.erode((lit.surface == 0).astype(np.uint8), np.ones((3, 3))) > 0
    inner_box = cv2.erode((lit.surface > 0).astype(np.uint8), np.ones((3, 3))) > 0
    darker = np.all(lit.colour < unlit.colour - 1e-6, axis=2)
    assert darker[inner_floor].mean() > 0.02  # the shadow falls on the floor
    assert not darker[inner_box].any()  # the box's own lit faces are not shadowed by the box


def test_sensor_noise_vignetting_blur():
    rng = np.random.default_rng(0)
    K = np.array([[100.0, 0, 99.5], [0, 100, 99.5], [0, 0, 1]])
    flat = np.full((200, 200, 3), 0.2, np.float32)
    s = sensor.Sensor(exposure=1.0, full_well=1000.0, read_noise=5.0, gamma=1.0)
    out = sensor.capture(flat, K, s, rng).astype(float) / 255
    # Poisson-Gaussian: variance = signal / full_well + (read / full_well)^2 (+ 8-bit quantisation)
    want = 0.2 / 1000 + (5 / 1000) ** 2 + 1 / (12 * 255 ** 2)
    assert abs(out.mean() - 0.2) < 0.005 and abs(out.var() / want - 1) < 0.1
    v = sensor.vignetting_gain(K, 200, 200, 0.5)
    corner = 1 / (1 + 2 * (99.5 / 100) ** 2) ** 2
    assert v[100, 100] == pytest.approx(1 - 0.5 + 0.5 / (1 + 2 * (0.5 / 100) ** 2) ** 2, abs=1e-6)
    assert v[0, 0] == pytest.approx(0.5 + 0.5 * corner, abs=1e-6)
    for blur in (("defocus", 1.2), ("motion", 7.0, 30.0)):
        k = sensor.blur_kernel(blur)
        ys, xs = np.mgrid[0:k.shape[0], 0:k.shape[1]]
        c = (k.shape[0] - 1) / 2
        assert k.sum() == pytest.approx(1.0, abs=1e-6)
        assert abs((k * xs).sum() - c) < 0.05 and abs((k * ys).sum() - c) < 0.05, blur  # centred: no shift


def test_relative_pose_convention():
    Ra, Ca = look_at(np.zeros(3), np.array([0.0, 0, 1]), 0.0), np.zeros(3)
    Rb, Cb = Ra, np.array([0.5, 0, 0])  # b sits 0.5 m to the right of a
    R, t = relative_pose(Ra, Ca, Rb, Cb)
    assert np.allclose(R, np.eye(3)) and np.allclose(t, [-0.5, 0, 0])
