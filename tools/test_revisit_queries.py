"""Checks of the revisit query sets (``tools/revisit_queries.py``) on tiny renders (160 x 120, 2 queries):

- the contract: queries.json fields and types, 8-bit RGB PNGs of the stated size, the camera of the map's left
  camera at that scale, unit quaternions with w >= 0, the stamp (a second build is skipped);
- ground truth: a query placed exactly at map frame k's pose has exactly groundtruth.txt's line k (written by
  ``vo_sequences.write_sequence``), covisible fraction 1, nearest_map_frame k, offsets 0;
- another light: >= 1.5 m from every position of the map's light, intensity 0.4-1.6x; sampling is deterministic;
- unmapped queries: one in the map's room that no map frame sees (< 0.1), one in another room with at most 10% of
  its view on photos of the map's room; neither counts as mapped.

Run: ``$MATCHA_CACHE/venv/bin/python -m pytest tools/test_revisit_queries.py -q``
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import revisit_queries as Q  # noqa: E402
import vo_sequences as V  # noqa: E402

SCALE = 0.25


@pytest.fixture(scope="module")
def spec():
    return V.seq_short()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("revisit")
    root = Q.build("vo_short", out, n=2, scale=SCALE)
    return out, root


def test_contract(built):
    out, root = built
    doc = json.loads((root / "queries.json").read_text())
    assert doc["map_sequence"] == "vo_short"
    assert doc["map_generator"] == V.generator_hash()
    assert (doc["width"], doc["height"]) == (160, 120)
    K = V.rig_K(SCALE)
    assert doc["camera"] == {"fx": K[0, 0], "fy": K[1, 1], "cx": K[0, 2], "cy": K[1, 2]}
    assert doc["generator"] == Q.generator_hash(2, SCALE) == (root / ".stamp").read_text().strip()
    assert len(doc["queries"]) == 2
    n_frames = V.seq_short().n_frames
    for i, q in enumerate(doc["queries"]):
        assert set(q) >= {"index", "image", "pose", "condition", "mapped", "covisible_fraction", "nearest_map_frame",
                          "offset_m", "offset_deg"}
        assert q["index"] == i and q["image"] == f"images/{i:06d}.png"
        assert q["condition"] in ("other_light", "other_viewpoint", "both", "unmapped")
        assert len(q["pose"]) == 7 and abs(np.linalg.norm(q["pose"][3:]) - 1) < 1e-9 and q["pose"][6] >= 0
        assert 0.0 <= q["covisible_fraction"] <= 1.0 and 0 <= q["nearest_map_frame"] < n_frames
        assert q["mapped"] == (q["covisible_fraction"] >= Q.MAPPED_MIN and q["room"] == "studio")
        assert q["offset_m"] >= 0 and q["offset_deg"] >= 0
        img = cv2.imread(str(root / q["image"]), cv2.IMREAD_UNCHANGED)
        assert img.dtype == np.uint8 and img.shape == (120, 160, 3)
        assert img.std() > 5  # not blank
    info = json.loads((root / "info.json").read_text())
    assert len(info["queries"]) == 2
    # up to date: a second build renders nothing
    mtime = (root / "queries.json").stat().st_mtime_ns
    assert Q.build("vo_short", out, n=2, scale=SCALE) == root
    assert (root / "queries.json").stat().st_mtime_ns == mtime


def test_query_at_map_frame_has_its_groundtruth(spec, tmp_path):
    V.write_sequence(spec, tmp_path / "map", scale=SCALE, max_frames=3, check=False, log=None)
    gt = (tmp_path / "map" / "groundtruth.txt").read_text().splitlines()
    k = 2
    q = Q.at_frame(spec, k)
    Q.write_set(spec, tmp_path / "set", [q], scale=SCALE, log=None)
    row = json.loads((tmp_path / "set" / "queries.json").read_text())["queries"][0]
    expected = [float(v) for v in gt[k].split()[1:]]
    assert np.allclose(row["pose"], expected, rtol=0, atol=2e-9)  # groundtruth.txt has 9 decimals
    assert V.tum_line(0.0, *V.gt_poses(spec)[k]).split()[1:] == [f"{v:.9f}" for v in row["pose"]]
    assert row["covisible_fraction"] == 1.0 and row["mapped"]
    assert row["nearest_map_frame"] == k and row["offset_m"] == 0.0 and row["offset_deg"] < 1e-4


def test_other_light_and_determinism(spec):
    rng = np.random.default_rng(5)
    avoid = Q.map_light_positions(spec)
    base = spec.lights(1.0).lights[0]
    for _ in range(5):
        lighting, sensor, bias, d = Q.other_light(spec, 1.0, rng)
        (lt,) = lighting.lights
        assert np.linalg.norm(avoid - np.array(lt.position), axis=1).min() >= Q.LIGHT_MIN_DIST
        assert 0.4 <= lt.intensity / base.intensity <= 1.6 and 0.7 <= bias <= 1.4
        assert max(lt.colour) == 1.0 and sensor.white_balance != spec.sensor.white_balance
    run = Q.MapRun(spec, SCALE)
    a, b = Q.mapped_query(run, 3, 60, "both"), Q.mapped_query(run, 3, 60, "both")
    assert np.array_equal(a.R, b.R) and np.array_equal(a.C, b.C) and a.lighting == b.lighting
    assert Q.V.clearance(V.build_vo_room(spec.room), a.C) >= Q.MIN_CLEARANCE
    assert Q.conditions(60, 1).count("unmapped") == 6
    assert [Q.conditions(60, 1).count(c) for c in Q.CONDITIONS] == [18, 18, 18]


def test_unmapped_queries(spec):
    run = Q.MapRun(spec, SCALE)
    own = Q.unmapped_query(run, 0, 0)  # the studio has corners vo_short never sees
    assert own.spec.room == spec.room
    order = run.by_distance(own.R, own.C)
    assert Q.covisible(run, Q.camera_at(own.R, own.C, SCALE), order)[0] < Q.UNMAPPED_MAX
    ev = Q.evaluate(run, own)
    assert not ev["mapped"] and ev["covisible_fraction"] < Q.UNMAPPED_MAX
    other = Q.unmapped_query(run, 1, 1)  # odd: another room (the hall for vo_short)
    assert other.spec.room.name == "hall" and other.shared_photo <= Q.SHARED_PHOTO_MAX
    ev = Q.evaluate(run, other)
    assert not ev["mapped"] and ev["covisible_fraction"] == 0.0
