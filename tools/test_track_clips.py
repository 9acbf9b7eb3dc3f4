"""Checks of the point-tracking clips (``tools/track_clips.py``) and the OpenCV LK baseline
(``tools/track_baselines.py``); one tiny render (track_short's first 6 frames), the rest from the geometry alone:

- the contract: frames (8-bit RGB PNG 640 x 480), queries.json, groundtruth.json (one point per frame, bools,
  [-1, -1, false, 1] only behind the camera), the stamp (a second build is skipped);
- query-first: the query pixel is the ground truth at its frame and visible there, never visible before it; it
  keeps 4 px from the border and lies on a textured surface;
- visibility is ``render.views.covisibility`` on the static room; a point on a moving box follows the box (the ray
  re-cast through its ground-truth pixel hits the same box coordinates in every visible frame, while the world
  point moves); a background point behind the passing box is hidden exactly while the box covers it;
- LK: null before the query frame, the query at it, one entry per frame; a pure sub-pixel image translation of a
  smooth texture is tracked to < 0.1 px.

Run: ``$MATCHA_CACHE/venv/bin/python -m pytest tools/test_track_clips.py -q``
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import track_baselines as B  # noqa: E402
import track_clips as T  # noqa: E402
from render.scene import Scene  # noqa: E402
from render.views import covisibility, pixel_grid  # noqa: E402

SMALL = 6


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("tracks")
    root = T.build("track_short", out, n_frames=SMALL)
    return out, root


@pytest.fixture(scope="module")
def clip():
    return T.Clip(T.CLIPS["track_short"])


def box_pixel(clip: T.Clip, j: int, k: int, step: int = 8) -> np.ndarray:
    """A pixel of frame k on moving box j, far from the box's outline (the grid pixel with the most box pixels
    around it)."""
    scene = clip.scene(k)
    cam = clip.cameras[k]
    uv = pixel_grid(cam, step)
    fb = clip.face_box(scene)[scene.cast(cam, uv).surface]
    on = uv[fb == j]
    assert len(on) > 20, f"box {j} is hardly visible in frame {k}"
    d = np.linalg.norm(on[:, None] - on[None], axis=2)
    return on[np.argmax((d < 5 * step).sum(1))][None]


# ------------------------------------------------------------------------------------------------------------------
def test_contract(built):
    out, root = built
    frames = sorted((root / "frames").glob("*.png"))
    assert [p.name for p in frames] == [f"{k:06d}.png" for k in range(SMALL)]
    img = cv2.imread(str(frames[0]), cv2.IMREAD_UNCHANGED)
    assert img.shape == (480, 640, 3) and img.dtype == np.uint8
    queries = json.loads((root / "queries.json").read_text())
    assert isinstance(queries, list) and len(queries) == T.N_QUERIES
    assert all(set(q) == {"frame", "x", "y"} and isinstance(q["frame"], int) for q in queries)
    assert [q["frame"] for q in queries] == sorted(q["frame"] for q in queries)
    gt = json.loads((root / "groundtruth.json").read_text())
    assert gt["clip"] == "track_short" and (gt["width"], gt["height"]) == (640, 480)
    assert gt["camera"] == {"fx": 500.0, "fy": 500.0, "cx": 319.5, "cy": 239.5}
    assert gt["generator"] == T.generator_hash(SMALL) == (root / ".stamp").read_text().strip()
    assert [t["query"] for t in gt["tracks"]] == list(range(len(queries)))
    for t in gt["tracks"]:
        assert len(t["points"]) == SMALL
        for x, y, v, c in t["points"]:
            assert isinstance(v, bool) and c == 1.0
            assert np.isfinite([x, y]).all()
    info = json.loads((root / "info.json").read_text())
    assert len(info["queries"]) == len(queries) and info["window"]["stride"] == T.STRIDE
    mtime = (root / "queries.json").stat().st_mtime_ns
    T.build("track_short", out, n_frames=SMALL)  # stamp matches: nothing is rendered again
    assert (root / "queries.json").stat().st_mtime_ns == mtime


def test_query_first(built):
    _, root = built
    queries = json.loads((root / "queries.json").read_text())
    tracks = json.loads((root / "groundtruth.json").read_text())["tracks"]
    info = json.loads((root / "info.json").read_text())["queries"]
    assert sum(q["frame"] == 0 for q in queries) >= T.N_QUERIES // 2
    assert any(q["frame"] > 0 for q in queries)
    for q, t, inf in zip(queries, tracks, info):
        k = q["frame"]
        assert t["points"][k][:3] == [q["x"], q["y"], True]
        assert not any(p[2] for p in t["points"][:k])
        assert T.BORDER_PX <= q["x"] <= 639 - T.BORDER_PX and T.BORDER_PX <= q["y"] <= 479 - T.BORDER_PX
        assert inf["surface"] not in ("ceiling", "") and inf["visible_fraction"] > 0
        assert sum(p[2] for p in t["points"][k:]) >= T.MIN_VISIBLE_FRAMES


def test_visibility_is_covisibility(clip):
    """With the moving boxes left out, a grid of frame 0's pixels is visible in frame 6 exactly where
    ``render.views.covisibility`` says so, at the same positions."""
    still = T.Clip(dataclasses.replace(clip.spec, occluders=()))
    uv = pixel_grid(still.cameras[0], 24)
    pts, surf = T.points_at(still, 0, uv)
    assert (surf >= 0).all() and (pts.box == -1).all()
    uv_gt, _, _, vis = T.track(still, pts)
    cv = covisibility(still.scene(6), still.cameras[0], still.cameras[6], uv)
    assert np.array_equal(vis[:, 6], cv.visible) and 0.2 < cv.overlap < 1.0
    np.testing.assert_allclose(uv_gt[:, 6], cv.uv_b, atol=1e-9)
    assert vis[:, 0].all()


def test_point_on_moving_box_follows_it(clip):
    j, k = 0, 10  # the carried crate, crossing the view
    pts, surf = T.points_at(clip, k, box_pixel(clip, j, k))
    assert pts.box[0] == j and clip.scene(k).kind_of[surf[0]] == "occluder"
    uv, z, inside, vis = T.track(clip, pts)
    frames = np.nonzero(vis[0])[0]
    assert len(frames) >= 5 and k in frames
    for f in frames:  # the ray through the ground-truth pixel hits the same point of the box
        back, _ = T.points_at(clip, int(f), uv[0, f][None])
        assert back.box[0] == j
        np.testing.assert_allclose(back.P[0], pts.P[0], atol=1e-6)
    X = np.array([pts.world(clip, int(f))[0] for f in frames])
    assert np.linalg.norm(X[-1] - X[0]) > 0.2  # the point moved in the room
    static_uv = np.array([clip.cameras[f].project(X[frames.tolist().index(k)][None])[0][0] for f in frames])
    assert np.abs(static_uv - uv[0, frames]).max() > 5  # and is not where a static point would be


def test_background_hidden_behind_passing_box(clip):
    j, k = 0, 10
    px = box_pixel(clip, j, k)
    static = Scene(clip.static_surfaces, clip.static_boxes)
    h = static.cast(clip.cameras[k], px)
    pts = T.Points(h.points(), np.array([-1]))
    uv, z, inside, vis = T.track(clip, pts)
    assert inside[0, k] and not vis[0, k]
    assert vis[0].any()  # seen while the box is elsewhere
    hidden = 0
    for f in range(clip.n):
        if not inside[0, f]:
            continue
        scene = clip.scene(f)
        hit = scene.cast(clip.cameras[f], uv[0, f][None])
        by_box = clip.face_box(scene)[hit.surface[0]] >= 0 and hit.depth[0] < z[0, f] * (1 - 1e-6)
        alone = static.cast(clip.cameras[f], uv[0, f][None])  # the room without the moving boxes
        seen_alone = abs(alone.depth[0] - z[0, f]) <= 1e-6 * z[0, f]
        assert vis[0, f] == (seen_alone and not by_box), f"frame {f}"
        hidden += bool(by_box)
    assert hidden >= 2


def test_reappear_flags():
    inside = np.array([1, 1, 1, 1, 0, 1], bool)
    vis = np.array([1, 1, 0, 1, 0, 1], bool)
    assert T.occluded_reappears(inside, vis, 0) and T.leaves_reappears(inside, vis, 0)
    assert not T.occluded_reappears(inside, vis, 3) and T.leaves_reappears(inside, vis, 3)
    assert not T.leaves_reappears(inside, vis, 4)


# ------------------------------------------------------------------------------------------------------------------
def smooth_texture(w: int, h: int, shift, seed: int = 3) -> np.ndarray:
    """A band-limited texture (sum of sinusoids, wavelengths 10-40 px) translated by ``shift`` exactly."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    x, y = xs - shift[0], ys - shift[1]
    img = np.full((h, w), 128.0)
    for _ in range(40):
        lam, a, ph = rng.uniform(10, 40), rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)
        img += 12 * np.sin(2 * np.pi / lam * (np.cos(a) * x + np.sin(a) * y) + ph)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def test_lk_translation(tmp_path):
    n, step = 6, np.array([2.7, -1.6])
    for k in range(n):
        img = smooth_texture(320, 240, k * step)
        cv2.imwrite(str(tmp_path / f"{k:06d}.png"), cv2.merge([img] * 3))
    queries = [{"frame": 0, "x": 100.0, "y": 120.0}, {"frame": 0, "x": 200.25, "y": 80.5},
               {"frame": 2, "x": 150.4, "y": 150.6}, {"frame": 5, "x": 60.0, "y": 60.0}]
    (tmp_path / "q.json").write_text(json.dumps(queries))
    out = tmp_path / "lk.json"
    assert B.main(["--frames", str(tmp_path), "--queries", str(tmp_path / "q.json"), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [t["query"] for t in doc["tracks"]] == list(range(len(queries)))
    for q, t in zip(queries, doc["tracks"]):
        pts = t["points"]
        assert len(pts) == n and all(p is None for p in pts[:q["frame"]])
        assert pts[q["frame"]] == [q["x"], q["y"], True, 1.0]
        for k in range(q["frame"] + 1, n):
            x, y, v, c = pts[k]
            want = np.array([q["x"], q["y"]]) + (k - q["frame"]) * step
            assert np.hypot(x - want[0], y - want[1]) < 0.1, (q, k, x, y)
            assert v is True and 0.5 < c <= 1.0


def test_lk_marks_lost_points(tmp_path):
    """A point whose content vanishes (the next frame is another texture) is not visible there."""
    cv2.imwrite(str(tmp_path / "000000.png"), smooth_texture(160, 120, (0, 0), seed=1))
    cv2.imwrite(str(tmp_path / "000001.png"), smooth_texture(160, 120, (0, 0), seed=2))
    (tmp_path / "q.json").write_text(json.dumps([{"frame": 0, "x": 80.0, "y": 60.0}]))
    doc = B.run(tmp_path, tmp_path / "q.json")
    assert len(doc["tracks"][0]["points"]) == 2 and doc["tracks"][0]["points"][1][2] is False
