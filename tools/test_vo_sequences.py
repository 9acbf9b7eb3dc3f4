"""Checks of the stereo VO sequences (``tools/vo_sequences.py``), their scoring (``tools/eval_vo.py``) and the
OpenCV stereo baseline (``tools/vo_baselines.py``), on tiny renders (no full sequence is rendered here).

- the walker path: C2 pieces (value, velocity, acceleration continuous at the keys), stops exactly still, every
  full sequence's path clear of the room's surfaces with the promised frame counts and segment kinds;
- ground truth: surface points ray-cast in the left view of frame 0, moved by groundtruth.txt and
  right_from_left of sequence.json and projected, land where a fresh ray cast of the right view and of the next
  left frame hits the same points, and the PNGs agree photometrically there (not one pixel off); the TUM file
  round-trips (evo's reader gives back the poses), its first line is the identity;
- eval: the ground truth scores 0, a rigidly moved copy scores 0 after SE(3) alignment, a scaled copy scores 0
  after Sim(3) with the right scale, known perturbations give the expected ATE / drift / coverage;
- the OpenCV stereo baseline runs on a 3-frame 160 x 120 sequence and stays near the ground truth.

Run: ``$MATCHA_CACHE/venv/bin/python -m pytest tools/test_vo_sequences.py -q``
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval_vo  # noqa: E402
import vo_baselines  # noqa: E402
import vo_sequences as V  # noqa: E402
from render.trajectory import CameraPath, Plan  # noqa: E402


def read_gt(path: Path):
    rows = np.loadtxt(path, comments="#")
    from scipy.spatial.transform import Rotation

    out = []
    for r in rows:
        T = np.eye(4)
        T[:3, :3] = Rotation.from_quat(r[4:8]).as_matrix()
        T[:3, 3] = r[1:4]
        out.append(T)
    return rows[:, 0], out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """vo_short's first 3 frames at 160 x 120 (and its spec)."""
    root = tmp_path_factory.mktemp("vo") / "vo_short"
    spec = V.seq_short()
    V.write_sequence(spec, root, scale=0.25, max_frames=3, check=False, log=None)
    return spec, root


# ------------------------------------------------------------------------------------------------------------------
def test_path_is_c2_and_stops_exactly():
    h = math.radians(45 + 80)  # the walk after the turn goes where the turn faces
    p = Plan(1.0, 1.0, 0.0).walk([(1.0, 3.0), (2.0, 4.0)], 0.5).stop(2.0).turn(80, 3.6).walk(
        [(2.0 + 2 * math.sin(h), 4.0 + 2 * math.cos(h))], 0.5)
    path = CameraPath(p.keys)
    eps = 1e-7
    for j in range(3):
        for k in p.keys[1:-1]:
            a = path._channel(j, k.t - eps)
            b = path._channel(j, k.t + eps)
            for va, vb in zip(a, b):
                assert abs(float(va) - float(vb)) < 1e-4
    (_, t0, t1) = [s for s in p.segments if s[0] == "stop"][0]
    ts = np.linspace(t0, t1, 40)
    poses = [path.pose(float(t)) for t in ts]
    for R, C in poses:
        assert np.array_equal(R, poses[0][0]) and np.array_equal(C, poses[0][1])
    (_, t0, t1) = [s for s in p.segments if s[0] == "turn_in_place"][0]
    Cs = np.array([path.pose(float(t))[1] for t in np.linspace(t0, t1, 40)])
    assert np.ptp(Cs, axis=0).max() == 0.0
    rate = np.degrees(np.abs(path.yaw_rate(np.linspace(t0, t1, 400)))).max()
    assert abs(rate - 1.875 * 80 / 3.6) < 0.5  # minimum-jerk peak rate


def test_full_sequences_paths():
    kinds = {"vo_short": {"forward"}, "vo_loop": {"loop"}, "vo_forward_turns": {"forward", "turn_in_place", "stop"},
             "vo_hard": {"fast_turn", "light_change", "low_texture", "stop"}, "vo_store_loop": {"loop"},
             "vo_office_loop": {"loop"}}
    loops = ("vo_loop", "vo_store_loop", "vo_office_loop")
    for name, make in V.SEQUENCES.items():
        spec = make()
        st = V.check_path(spec)  # raises when a camera comes within 0.4 m of a surface
        assert st["min_clearance_m"] >= V.MIN_CLEARANCE
        assert spec.n_frames >= (140 if name == "vo_short" else 450 if name in loops[1:] else 600), name
        assert kinds[name] <= {s["kind"] for s in spec.segments()}, name
        R0, C0 = spec.path.pose(0.0)
        Rn, Cn = spec.path.pose(spec.path.duration)
        if name in loops:
            assert np.linalg.norm(Cn - C0) < 1e-9 and 11 <= spec.path.length <= 16
            assert np.allclose(Rn, R0, atol=1e-9)  # the loop closes in position and orientation
        if name == "vo_forward_turns":
            stops = [s for s in spec.segments() if s["kind"] == "stop"]
            assert len(stops) == 2 and all(s["last"] - s["first"] + 1 >= 3 * V.RATE for s in stops)
            assert st["max_yaw_rate_deg_s"] <= 45
        if name == "vo_hard":
            assert st["max_yaw_rate_deg_s"] >= 90


def test_sequence_files(tiny):
    spec, root = tiny
    seq = json.loads((root / "sequence.json").read_text())
    for k in ("name", "description", "rate_hz", "width", "height", "left", "right", "right_from_left", "frames",
              "segments", "path_length_m", "generator"):
        assert k in seq
    assert seq["width"] == 160 and seq["height"] == 120 and len(seq["frames"]) == 3
    assert seq["left"] == {"fx": 125.0, "fy": 125.0, "cx": 79.5, "cy": 59.5} == seq["right"]
    assert np.array_equal(seq["right_from_left"]["R"], np.eye(3)) and seq["right_from_left"]["t"] == [-0.12, 0, 0]
    import cv2

    for fr in seq["frames"]:
        for side in ("left", "right"):
            img = cv2.imread(str(root / fr[side]), cv2.IMREAD_UNCHANGED)
            assert img.shape[:2] == (120, 160) and img.dtype == np.uint8
    # the rig: the right camera is the left one moved 0.12 m along its own x axis
    left, right = spec.cameras(0.3)
    assert np.allclose(right.R, left.R)
    x_r = right.to_camera(left.to_camera(np.zeros((1, 3))) * 0 + left.C[None])  # the left centre in the right frame
    assert np.allclose(x_r, [[-0.12, 0, 0]], atol=1e-12)
    stamps, poses = read_gt(root / "groundtruth.txt")
    assert np.allclose(poses[0], np.eye(4), atol=1e-12)
    assert np.allclose(stamps, [f["stamp"] for f in seq["frames"]])


def test_tum_round_trip(tiny, tmp_path):
    spec, root = tiny
    poses = V.gt_poses(spec)
    stamps = spec.stamps()
    eval_vo.write_tum(tmp_path / "gt.tum", stamps, poses)
    traj = eval_vo.read_tum(tmp_path / "gt.tum")
    assert traj.num_poses == len(poses)
    for (R, t), T in zip(poses, traj.poses_se3):
        assert np.allclose(T[:3, :3], R, atol=1e-8) and np.allclose(T[:3, 3], t, atol=1e-8)
    _, from_file = read_gt(root / "groundtruth.txt")
    for (R, t), T in zip(poses, from_file):
        assert np.allclose(T[:3, :3], R, atol=1e-8) and np.allclose(T[:3, 3], t, atol=1e-8)


def _bilinear(img: np.ndarray, uv: np.ndarray) -> np.ndarray:
    import cv2

    m = uv.astype(np.float32).reshape(-1, 1, 2)
    return cv2.remap(img.astype(np.float32), m[..., 0], m[..., 1], cv2.INTER_LINEAR).reshape(len(uv), -1)


def test_ground_truth_projects_where_the_caster_hits(tiny):
    """Points of left frame 0, moved with the files' poses only, are hit by fresh ray casts of the right view and
    of left frame 1 at the projected positions; the images agree there."""
    import cv2

    spec, root = tiny
    seq = json.loads((root / "sequence.json").read_text())
    K = vo_baselines.K_of(seq["left"])
    R_rl, t_rl = np.array(seq["right_from_left"]["R"]), np.array(seq["right_from_left"]["t"])
    _, T = read_gt(root / "groundtruth.txt")
    scene = spec.scene
    t0, t1 = seq["frames"][0]["stamp"], seq["frames"][2]["stamp"]
    L0, R0 = spec.cameras(t0, 0.25)
    L1, _ = spec.cameras(t1, 0.25)
    vs, us = np.mgrid[4:120:6, 4:160:6]
    uv0 = np.c_[us.ravel(), vs.ravel()].astype(np.float64)
    hits = scene.cast(L0, uv0)
    X = hits.points()
    x0 = L0.to_camera(X)  # left frame 0 coordinates
    targets = {"right": (x0 @ R_rl.T + t_rl, R0, seq["frames"][0]["right"]),
               "next_left": ((np.c_[x0, np.ones(len(x0))] @ (np.linalg.inv(T[2]) @ T[0]).T)[:, :3], L1,
                             seq["frames"][2]["left"])}
    img0 = cv2.imread(str(root / seq["frames"][0]["left"]), cv2.IMREAD_GRAYSCALE)
    for name, (xc, cam, img_path) in targets.items():
        z = xc[:, 2]
        uv = (xc[:, :2] / z[:, None]) @ np.diag([K[0, 0], K[1, 1]]) + K[:2, 2]
        inside = (z > 0) & (uv[:, 0] > 1) & (uv[:, 0] < 158) & (uv[:, 1] > 1) & (uv[:, 1] < 118)
        h = scene.cast(cam, uv[inside])
        seen = np.abs(h.depth - z[inside]) <= 1e-6 * z[inside]
        assert seen.mean() > 0.8, name  # the rest is occluded in the other view
        assert np.allclose(h.points()[seen], X[inside][seen], atol=1e-6)
        # photometric agreement at the true positions, and less one pixel off
        img = cv2.imread(str(root / img_path), cv2.IMREAD_GRAYSCALE)
        a = _bilinear(img0, uv0[inside][seen]).ravel()
        b = _bilinear(img, uv[inside][seen]).ravel()
        c_true = np.corrcoef(a, b)[0, 1]
        mad_true = np.mean(np.abs(a - b))
        mad_off = np.mean(np.abs(a - _bilinear(img, uv[inside][seen] + [1.5, 0.0]).ravel()))
        assert c_true > 0.9 and mad_true < 0.7 * mad_off, (name, c_true, mad_true, mad_off)


# ------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gt_dir(tmp_path_factory):
    """Ground truth of the full vo_loop path (no images: the eval reads sequence.json and groundtruth.txt)."""
    d = tmp_path_factory.mktemp("gt") / "vo_loop"
    d.mkdir()
    spec = V.seq_loop()
    eval_vo.write_tum(d / "groundtruth.txt", spec.stamps(), V.gt_poses(spec))
    (d / "sequence.json").write_text(json.dumps({"name": "vo_loop", "path_length_m": spec.path.length}))
    return d, spec


def _write(path, stamps, poses):
    eval_vo.write_tum(path, stamps, poses)
    return path


def test_eval_ground_truth_is_zero(gt_dir, tmp_path):
    d, spec = gt_dir
    for align in ("se3", "sim3"):
        m = eval_vo.evaluate(d, d / "groundtruth.txt", align)
        assert m["ate_rmse_m"] < 1e-6 and m["rot_rmse_deg"] < 1e-4 and m["rpe_trans_pct"] < 1e-4
        assert m["drift_end_m"] < 1e-6 and m["coverage"] == 1.0 and abs(m["sim3_scale"] - 1) < 1e-6
        assert m["rpe_segments"] > 100 and m["rot_rmse_origin_deg"] < 1e-4 and m["ate_origin_m"] < 1e-6


def test_eval_alignment_and_known_errors(gt_dir, tmp_path):
    d, spec = gt_dir
    stamps, poses = spec.stamps(), V.gt_poses(spec)
    a = math.radians(20)
    Rm = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    tm = np.array([1.0, -0.3, 2.0])
    moved = [(Rm @ R, Rm @ t + tm) for R, t in poses]
    m = eval_vo.evaluate(d, _write(tmp_path / "moved.tum", stamps, moved), "se3")
    assert m["ate_rmse_m"] < 1e-6 and m["rot_rmse_deg"] < 1e-4 and m["drift_end_m"] < 1e-6
    assert m["rot_rmse_origin_deg"] < 1e-4 and m["ate_origin_m"] < 1e-6
    scaled = [(Rm @ R, 2.5 * (Rm @ t) + tm) for R, t in poses]
    m = eval_vo.evaluate(d, _write(tmp_path / "scaled.tum", stamps, scaled), "sim3")
    assert m["ate_rmse_m"] < 1e-6 and abs(m["sim3_scale"] - 1 / 2.5) < 1e-6 and m["rpe_trans_pct"] < 1e-4
    assert eval_vo.evaluate(d, tmp_path / "scaled.tum", "se3")["ate_rmse_m"] > 0.5
    # alternating +-2 cm along y on every other frame: ATE 2 cm; half the frames: coverage 0.5
    wobble = [(R, t + [0, 0.02 * (-1) ** k, 0]) for k, (R, t) in enumerate(poses)]
    m = eval_vo.evaluate(d, _write(tmp_path / "wobble.tum", stamps, wobble), "se3")
    assert abs(m["ate_rmse_m"] - 0.02) < 1e-3 and abs(m["ate_pct"] - 2 / spec.path.length) < 0.01
    m = eval_vo.evaluate(d, _write(tmp_path / "half.tum", stamps[::2], poses[::2]), "se3")
    assert abs(m["coverage"] - math.ceil(len(poses) / 2) / len(poses)) < 1e-9 and m["ate_rmse_m"] < 1e-6
    # a trajectory that drifts linearly to 0.5 m along x at the end (anchored at the start): drift 0.5 m
    n = len(poses)
    drift = [(R, t + [0.5 * k / (n - 1), 0, 0]) for k, (R, t) in enumerate(poses)]
    m = eval_vo.evaluate(d, _write(tmp_path / "drift.tum", stamps, drift), "se3")
    assert abs(m["drift_end_m"] - 0.5) < 1e-6 and m["ate_rmse_m"] < 0.5


def test_eval_cli_and_plot(gt_dir, tmp_path):
    d, _ = gt_dir
    out = tmp_path / "p.png"
    assert eval_vo.main(["--sequence", str(d), "--trajectory", str(d / "groundtruth.txt"), "--json",
                         "--plot", str(out)]) == 0
    assert out.stat().st_size > 10000


# ------------------------------------------------------------------------------------------------------------------
def test_opencv_stereo_baseline_runs(tiny):
    spec, root = tiny
    rec = vo_baselines.run(root, "opencv_stereo", log=None)  # default: <root>/../results/vo_short/opencv_stereo.tum
    out = root.parent / "results" / "vo_short" / "opencv_stereo.tum"
    assert rec["frames_used"] == 3 and rec["failures"] == 0 and out.exists() and out.with_suffix(".json").exists()
    traj = eval_vo.read_tum(out)
    _, gt = read_gt(root / "groundtruth.txt")
    assert traj.num_poses == 3
    for T, G in zip(traj.poses_se3, gt):
        assert np.linalg.norm(T[:3, 3] - G[:3, 3]) < 0.02
    table = vo_baselines.report(root.parent)
    assert any(line.startswith("vo_short") and "opencv_stereo" in line for line in table.splitlines())
