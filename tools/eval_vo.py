#!/usr/bin/env python3
"""Score a visual-odometry trajectory (TUM file) against a sequence's ground truth (``tools/vo_sequences.py``),
with ``evo`` (pinned in tools/requirements.txt).

Estimated poses are matched to ground-truth frames by stamp (nearest, within ``--max-diff`` s, default 0.02: a
third of a 15 Hz frame). Then, on the matched poses:

- ``align``: ``se3`` (rotation + translation, Umeyama on the positions: a metric stereo VO) or ``sim3`` (+ scale:
  monocular methods such as COLMAP, whose scale is arbitrary); the Sim(3) scale is reported in both cases
  (``sim3_scale``; ~1 for a metric method, its distance from 1 is the scale error).
- ATE: RMSE of the position error after the alignment, in metres and in % of the ground-truth path length.
- rotation RMSE (deg) of the orientation error after the same alignment.
- RPE over 1 m segments of the ground-truth path (pairs from the reference, evo's ``delta_unit=m``, 10%
  tolerance), after scaling the estimate by the Sim(3) scale when ``align=sim3``: translation RMSE in % of the
  segment length and rotation RMSE in deg/m. Stops and turns in place add no path length, so they count only
  through the segments that span them.
- drift at the end: the estimate anchored at the first matched pose (evo's ``align_origin``; scaled first when
  ``align=sim3``), the position (m) and rotation (deg) error of the last matched pose.
- also ``rot_rmse_origin_deg`` / ``ate_origin_m``: rotation and position RMSE with the estimate anchored at its
  first matched pose (scaled for sim3) instead of fitted: a short, nearly straight path leaves the fitted rotation
  about the walking direction poorly determined, and these then say more about a VO that starts at identity.
- coverage: matched poses / ground-truth frames (a method that drops frames, or runs on every n-th, has < 1).

Usage: python tools/eval_vo.py --sequence DIR --trajectory FILE.tum [--align se3|sim3] [--json] [--plot out.png]
Library: ``evaluate(sequence_dir, trajectory, align)`` -> dict (used by ``tools/vo_baselines.py``),
``write_tum`` / ``read_tum``.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from pathlib import Path

import numpy as np

RPE_DELTA_M = 1.0
MAX_DIFF_S = 0.02


def _evo():
    import logging

    logging.getLogger("evo").setLevel(logging.WARNING)
    from evo.core import metrics, sync, trajectory
    from evo.core.units import Unit
    from evo.tools import file_interface

    return metrics, sync, trajectory, Unit, file_interface


def write_tum(path: Path, stamps, poses) -> None:
    """Write camera-to-world poses (4 x 4, or (R, t) pairs) as TUM lines 'stamp tx ty tz qx qy qz qw'."""
    from scipy.spatial.transform import Rotation

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for s, T in zip(stamps, poses):
            R, t = (T[:3, :3], T[:3, 3]) if isinstance(T, np.ndarray) else T
            q = Rotation.from_matrix(np.asarray(R, np.float64)).as_quat()
            if q[3] < 0:
                q = -q
            f.write(f"{float(s):.6f} " + " ".join(f"{v:.9f}" for v in (*np.asarray(t, np.float64), *q)) + "\n")


def read_tum(path: Path):
    """TUM file -> evo PoseTrajectory3D."""
    return _evo()[4].read_tum_trajectory_file(str(path))


def _rot_deg(R: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0))))


def evaluate(sequence_dir: Path, trajectory, align: str = "se3", max_diff: float = MAX_DIFF_S,
             return_trajectories: bool = False) -> dict:
    """Metrics of ``trajectory`` (a TUM path or an evo PoseTrajectory3D) against ``sequence_dir``'s ground truth
    (see the module docstring). With ``return_trajectories``: (metrics, (gt, aligned estimate)) of the matched
    poses."""
    metrics, sync, traj_mod, Unit, _ = _evo()
    if align not in ("se3", "sim3"):
        raise ValueError(f"align must be se3 or sim3, not {align!r}")
    sequence_dir = Path(sequence_dir)
    seq = json.loads((sequence_dir / "sequence.json").read_text())
    gt = read_tum(sequence_dir / "groundtruth.txt")
    est = read_tum(trajectory) if isinstance(trajectory, (str, Path)) else copy.deepcopy(trajectory)
    n_gt = gt.num_poses
    path_length = float(seq.get("path_length_m") or gt.path_length)
    out = {"sequence": seq["name"], "align": align, "gt_frames": n_gt, "path_length_m": path_length,
           "estimated_poses": est.num_poses}
    try:
        ref, est = sync.associate_trajectories(gt, est, max_diff=max_diff)
    except Exception:  # evo raises when nothing matches
        ref, est = None, None
    matched = 0 if ref is None else ref.num_poses
    out["matched_poses"] = matched
    out["coverage"] = matched / n_gt if n_gt else 0.0
    nan = float("nan")
    keys = ("ate_rmse_m", "ate_pct", "rot_rmse_deg", "rpe_trans_pct", "rpe_rot_deg_per_m", "drift_end_m",
            "drift_end_deg", "sim3_scale", "rot_rmse_origin_deg", "ate_origin_m")
    if matched < 3:
        out.update({k: nan for k in keys})
        return (out, (ref, est)) if return_trajectories else out
    # Sim(3) scale, reported for every alignment
    probe = copy.deepcopy(est)
    _, _, scale = probe.align(ref, correct_scale=True)
    out["sim3_scale"] = float(scale)
    aligned = copy.deepcopy(est)
    aligned.align(ref, correct_scale=(align == "sim3"))
    ape_t = metrics.APE(metrics.PoseRelation.translation_part)
    ape_t.process_data((ref, aligned))
    ape_r = metrics.APE(metrics.PoseRelation.rotation_angle_deg)
    ape_r.process_data((ref, aligned))
    out["ate_rmse_m"] = float(ape_t.get_statistic(metrics.StatisticsType.rmse))
    out["ate_pct"] = 100 * out["ate_rmse_m"] / path_length if path_length > 0 else nan
    out["rot_rmse_deg"] = float(ape_r.get_statistic(metrics.StatisticsType.rmse))
    scaled = copy.deepcopy(est)
    if align == "sim3":
        scaled.scale(scale)
    try:
        rpe_t = metrics.RPE(metrics.PoseRelation.translation_part, RPE_DELTA_M, Unit.meters, 0.1,
                            all_pairs=True, pairs_from_reference=True)
        rpe_t.process_data((ref, scaled))
        rpe_r = metrics.RPE(metrics.PoseRelation.rotation_angle_deg, RPE_DELTA_M, Unit.meters, 0.1,
                            all_pairs=True, pairs_from_reference=True)
        rpe_r.process_data((ref, scaled))
        out["rpe_trans_pct"] = 100 * float(rpe_t.get_statistic(metrics.StatisticsType.rmse)) / RPE_DELTA_M
        out["rpe_rot_deg_per_m"] = float(rpe_r.get_statistic(metrics.StatisticsType.rmse)) / RPE_DELTA_M
        out["rpe_segments"] = int(len(rpe_t.error))
    except Exception as e:  # a path shorter than 1 m has no segments
        out["rpe_trans_pct"] = out["rpe_rot_deg_per_m"] = nan
        out["rpe_segments"] = 0
        out["rpe_note"] = str(e).splitlines()[0][:200]
    anchored = copy.deepcopy(scaled)
    anchored.align_origin(ref)
    E = np.linalg.inv(ref.poses_se3[-1]) @ anchored.poses_se3[-1]
    out["drift_end_m"] = float(np.linalg.norm(anchored.positions_xyz[-1] - ref.positions_xyz[-1]))
    out["drift_end_deg"] = _rot_deg(E[:3, :3])
    # the same errors with the estimate anchored at its first pose instead of fitted (a short, nearly straight
    # path leaves the fitted rotation about the walking direction poorly determined)
    rot = [_rot_deg((np.linalg.inv(a) @ b)[:3, :3]) for a, b in zip(ref.poses_se3, anchored.poses_se3)]
    out["rot_rmse_origin_deg"] = float(np.sqrt(np.mean(np.square(rot))))
    out["ate_origin_m"] = float(np.sqrt(np.mean(np.sum((anchored.positions_xyz - ref.positions_xyz) ** 2, 1))))
    return (out, (ref, aligned)) if return_trajectories else out


def plot(sequence_dir: Path, trajectory, align: str, out_png: Path, title: str | None = None) -> None:
    """Top view (x-z of the first camera's frame: x right, z forward) of ground truth and aligned estimate, and the
    position error over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m, (ref, est) = evaluate(sequence_dir, trajectory, align, return_trajectories=True)
    gt = read_tum(Path(sequence_dir) / "groundtruth.txt")
    fig, ax = plt.subplots(1, 2, figsize=(12, 5.2))
    ax[0].plot(gt.positions_xyz[:, 0], gt.positions_xyz[:, 2], "k-", lw=1.5, label="ground truth")
    if ref is not None and ref.num_poses:
        ax[0].plot(est.positions_xyz[:, 0], est.positions_xyz[:, 2], "r-", lw=1, label=f"estimate ({align} aligned)")
        err = np.linalg.norm(est.positions_xyz - ref.positions_xyz, axis=1)
        ax[1].plot(ref.timestamps - gt.timestamps[0], err, "r-", lw=1)
    ax[0].plot(gt.positions_xyz[0, 0], gt.positions_xyz[0, 2], "ko", ms=5)
    ax[0].set_aspect("equal", adjustable="datalim")
    ax[0].set_xlabel("x (m, right of the first camera)")
    ax[0].set_ylabel("z (m, ahead of the first camera)")
    ax[0].legend(loc="best", fontsize=8)
    ax[0].grid(alpha=0.3)
    ax[1].set_xlabel("time (s)")
    ax[1].set_ylabel("position error after alignment (m)")
    ax[1].grid(alpha=0.3)
    fig.suptitle(title or f"{m['sequence']}: ATE {m['ate_rmse_m']:.3f} m ({m['ate_pct']:.2f}% of "
                 f"{m['path_length_m']:.1f} m), rot {m['rot_rmse_deg']:.2f} deg, coverage {m['coverage']:.2f}")
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def format_metrics(m: dict) -> str:
    return (f"{m['sequence']} ({m['align']}): ATE {m['ate_rmse_m']:.4f} m = {m['ate_pct']:.3f}% of "
            f"{m['path_length_m']:.2f} m; rotation RMSE {m['rot_rmse_deg']:.3f} deg; RPE(1 m) "
            f"{m['rpe_trans_pct']:.3f}% {m['rpe_rot_deg_per_m']:.4f} deg/m; drift at the end "
            f"{m['drift_end_m']:.4f} m {m['drift_end_deg']:.3f} deg; coverage {m['coverage']:.3f} "
            f"({m['matched_poses']}/{m['gt_frames']}); Sim(3) scale {m['sim3_scale']:.4f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sequence", type=Path, required=True, help="sequence folder (with sequence.json)")
    ap.add_argument("--trajectory", type=Path, required=True, help="estimated trajectory, TUM format")
    ap.add_argument("--align", choices=("se3", "sim3"), default="se3")
    ap.add_argument("--max-diff", type=float, default=MAX_DIFF_S, help="stamp matching tolerance (s)")
    ap.add_argument("--json", action="store_true", help="print the metrics as JSON")
    ap.add_argument("--plot", type=Path, help="write a top-view / error-over-time picture")
    args = ap.parse_args(argv)
    m = evaluate(args.sequence, args.trajectory, args.align, args.max_diff)
    print(json.dumps(m, indent=1) if args.json else format_metrics(m))
    if args.plot:
        plot(args.sequence, args.trajectory, args.align, args.plot)
    return 0 if not math.isnan(m["ate_rmse_m"]) else 1


if __name__ == "__main__":
    sys.exit(main())
