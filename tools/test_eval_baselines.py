"""Checks of ``tools/eval_baselines.py``: the metrics on hand-made cases (incl. the pure-rotation and
rotation-only rules), and the SIFT+PoseLib and SIFT+COLMAP baselines end to end on one pair of each eval set (the
pose must come out close to the ground truth, in the manifest's convention: COLMAP's cam2_from_cam1 is x_b = R x_a
+ t, so the motorcycle pair must give R = I, t = -x).

Run: ``$MATCHA_CACHE/venv/bin/python -m pytest tools/test_eval_baselines.py -q``
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval_baselines as B  # noqa: E402
import eval_sets as E  # noqa: E402
from test_eval_sets import OUT, need_opencv_doc  # noqa: E402


ROOMS_EASY_PAIR = "030-general"  # a general view of the rooms set that SIFT and COLMAP both solve to 0.1 deg


def rot_z(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def test_errors_fold_translation_sign():
    gt = {"R": np.eye(3).tolist(), "t": [1.0, 0, 0]}
    assert B.pose_error_deg({"R": np.eye(3).tolist(), "t": [-2.0, 0, 0]}, gt) == pytest.approx(0, abs=1e-6)
    assert B.pose_error_deg({"R": rot_z(3).tolist(), "t": [1.0, 0, 0]}, gt) == pytest.approx(3.0, abs=1e-6)
    t = [math.cos(math.radians(7)), math.sin(math.radians(7)), 0]
    assert B.pose_error_deg({"R": rot_z(3).tolist(), "t": t}, gt) == pytest.approx(7.0, abs=1e-6)
    assert B.pose_error_deg({"R": None, "t": None}, gt) == math.inf


def test_errors_pure_rotation_and_rotation_only():
    pure = {"R": rot_z(10).tolist(), "t": [0.0, 0.0, 0.0]}
    # ground truth t = 0: the rotation error alone, whatever t the estimate has (or none)
    assert B.pose_error_deg({"R": rot_z(12).tolist(), "t": [0, 1.0, 0]}, pure) == pytest.approx(2.0, abs=1e-6)
    assert B.pose_error_deg({"R": rot_z(10).tolist(), "t": None}, pure) == pytest.approx(0.0, abs=1e-6)
    assert B.pose_error_deg({"R": None, "t": None}, pure) == math.inf
    moved = {"R": rot_z(10).tolist(), "t": [1.0, 0, 0]}
    # a rotation without translation on a pair that moved: the translation counts as 90 deg off
    assert B.pose_error_deg({"R": rot_z(10).tolist(), "t": None}, moved) == pytest.approx(90.0)
    assert B.pose_error_deg({"R": rot_z(10).tolist(), "t": [0.0, 0, 0]}, moved) == pytest.approx(90.0)
    assert B.pose_error_deg({"R": rot_z(10).tolist(), "t": [1.0, 0, 0]}, moved) == pytest.approx(0.0, abs=1e-6)


def test_report_counts_gross_failures():
    gt = {"pairs": [{"id": str(i), "R": np.eye(3).tolist(), "t": [1.0, 0, 0], "category": c}
                    for i, c in enumerate(["wall", "wall", "floor", "floor"])], "name": "toy"}
    est = [rot_z(d).tolist() for d in (1, 15, 25)]
    res = {"method": "m", "pairs": [{"id": str(i), "R": R, "t": [1.0, 0, 0]} for i, R in enumerate(est)]
           + [{"id": "3", "R": None, "t": None}]}
    text = B.report(gt, res)
    assert "> 10 deg: 3 (75.0%), > 20 deg: 2 (50.0%), no pose: 1" in text.splitlines()[0]
    assert "category wall: 2 pairs" in text and "category floor: 2 pairs" in text


def test_auc_trapezoid():
    # one pair at 0 deg error, one failure: recall 0.5 from 0 on -> AUC 0.5 at every threshold
    assert B.pose_auc([0.0, math.inf]) == pytest.approx([0.5, 0.5, 0.5])
    # SuperGlue's pose_auc: the recall curve runs from (0, 0) to (err_1, 1/n), ... and is integrated up to the
    # threshold. One pair at 2 deg: AUC@5 = (0.5*2 + 3) / 5, AUC@10 = (1 + 8) / 10, AUC@20 = (1 + 18) / 20.
    assert B.pose_auc([2.0]) == pytest.approx([0.8, 0.9, 0.95])
    # an error exactly at the threshold does not count below it
    assert B.pose_auc([5.0]) == pytest.approx([0.0, 0.75, 0.875])
    assert B.pose_auc([]) == [0.0, 0.0, 0.0]


def test_undistort_is_identity_without_distortion():
    cam = {"fx": 500.0, "fy": 500.0, "cx": 320.0, "cy": 240.0, "dist": [0, 0, 0, 0, 0]}
    p = np.array([[10.0, 20.0], [300.5, 100.25]])
    assert np.array_equal(B.undistort(p, cam), p)
    cam["dist"] = [-0.2, 0.05, 0, 0, 0]
    K = B.K_of(cam)
    u = B.undistort(p, cam)
    # re-distorting the undistorted pixels gives the input back
    n = (u - [320, 240]) / 500
    back, _ = cv2.projectPoints(np.c_[n, np.ones(len(n))], np.zeros(3), np.zeros(3), K, np.asarray(cam["dist"]))
    assert np.allclose(back.reshape(-1, 2), p, atol=1e-3)


def one_pair_manifest(tmp_path, set_name: str, pair_id: str) -> Path:
    """A manifest with one pair of a cached set, its images referenced by absolute path."""
    mpath = OUT / set_name / "manifest.json" if set_name == "rooms" else E.build(set_name, OUT)
    if not mpath.exists():
        pytest.fail(f"{mpath} missing: build it with python tools/eval_sets.py --sets {set_name} --out {OUT}")
    m = json.loads(mpath.read_text())
    m["pairs"] = [p for p in m["pairs"] if p["id"] == pair_id]
    assert len(m["pairs"]) == 1, pair_id
    for p in m["pairs"]:
        for k in ("image_a", "image_b"):
            p[k] = str(mpath.parent / p[k])
    one = tmp_path / "manifest.json"
    one.write_text(json.dumps(m))
    return one


@pytest.mark.parametrize("method", ["sift", "colmap"])
@pytest.mark.parametrize("set_name,pair_id,max_err", [("rendered", "view00", 1.0), ("motorcycle", "im0-im1", 1.0),
                                                       ("chessboard", "left01-right01", 3.0),
                                                       ("rooms", ROOMS_EASY_PAIR, 2.0)])
def test_baseline_recovers_gt(tmp_path, method, set_name, pair_id, max_err):
    need_opencv_doc()
    one = one_pair_manifest(tmp_path, set_name, pair_id)
    gt = json.loads(one.read_text())["pairs"][0]
    res = B.run(one, method)
    (entry,) = res["pairs"]
    assert entry["R"] is not None, entry
    err = B.pose_error_deg(entry, gt)
    assert err < max_err, f"{method} on {set_name}/{pair_id}: pose error {err:.2f} deg"
    assert entry["num_inliers"] >= 15 and entry["num_matches"] >= entry["num_inliers"]
    assert ("configuration" in entry) == (method == "colmap")


def test_colmap_convention_on_the_stereo_rig(tmp_path):
    """Middlebury motorcycle im0 -> im1: the right camera sits at +x, so x_b = x_a + t with t along -x."""
    need_opencv_doc()
    (entry,) = B.run(one_pair_manifest(tmp_path, "motorcycle", "im0-im1"), "colmap")["pairs"]
    assert entry["configuration"] == "CALIBRATED"
    assert B.rotation_error_deg(np.asarray(entry["R"]), np.eye(3)) < 0.5
    assert entry["t"][0] < -0.999
