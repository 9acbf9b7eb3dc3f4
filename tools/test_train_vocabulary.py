"""Checks of ``tools/train_vocabulary.py`` (fast: 2 photos, k = 4, 2000 descriptors):

- k-means alone: separated synthetic clusters are found exactly, Lloyd converges, the same seed gives the same
  centres;
- the whole pipeline (XFeat on 2 photos): k x 64 float32 C-order centres of unit norm, deterministic, the written
  .npy loads back bit-identical and the .json's sha256 is that file's; the committed vocabulary (when present)
  has the promised shape, norms and hash.

Run: ``$MATCHA_CACHE/venv/bin/python -m pytest tools/test_train_vocabulary.py -q``
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_vocabulary as TV  # noqa: E402

IMAGES = ["skimage:coins", "skimage:camera"]


def test_kmeans_finds_separated_clusters():
    rng = np.random.default_rng(1)
    true = TV.l2n(rng.normal(size=(5, 8)))
    X = np.concatenate([c + 0.01 * rng.normal(size=(200, 8)) for c in true])
    a = TV.kmeans(X, 5, np.random.default_rng(3))
    b = TV.kmeans(X, 5, np.random.default_rng(3))
    assert a["converged"] and np.array_equal(a["centres"], b["centres"])
    # every true centre has a found centre next to it, and each cluster holds its 200 points
    d = np.linalg.norm(true[:, None] - a["centres"][None], axis=2)
    assert d.min(axis=1).max() < 0.01
    assert sorted(np.bincount(a["labels"])) == [200] * 5


@pytest.fixture(scope="module")
def tiny():
    return TV.train(IMAGES, "xfeat", k=4, seed=7, max_descriptors=2000, log=None)


def test_pipeline_shape_normalisation_determinism(tiny, tmp_path):
    centres, meta = tiny
    assert centres.shape == (4, 64) and centres.dtype == np.float32 and centres.flags["C_CONTIGUOUS"]
    assert np.allclose(np.linalg.norm(centres, axis=1), 1.0, atol=1e-6)
    assert meta["descriptors_used"] == min(2000, meta["descriptors_extracted"]) and meta["converged"]
    assert [r["image"] for r in meta["training_images"]] == IMAGES and sum(meta["cluster_sizes"]) == 2000
    again, _ = TV.train(IMAGES, "xfeat", k=4, seed=7, max_descriptors=2000, log=None)
    assert np.array_equal(centres, again)
    npy, js = TV.write(centres, meta, tmp_path)
    assert npy.name == "xfeat-vlad4.npy"
    loaded = np.load(npy)
    assert loaded.dtype == np.float32 and np.array_equal(loaded, centres)
    doc = json.loads(js.read_text())
    assert doc["sha256"] == hashlib.sha256(npy.read_bytes()).hexdigest()
    assert doc["dim"] == 64 and doc["clusters"] == 4 and doc["tool"] == "tools/train_vocabulary.py"


def test_committed_vocabulary():
    npy = TV.REPO / "assets" / "place" / "xfeat-vlad64.npy"
    if not npy.exists():
        pytest.skip("assets/place/xfeat-vlad64.npy not generated")
    c = np.load(npy)
    doc = json.loads(npy.with_suffix(".json").read_text())
    assert c.shape == (64, 64) and c.dtype == np.float32
    assert np.allclose(np.linalg.norm(c, axis=1), 1.0, atol=1e-6)
    assert doc["sha256"] == hashlib.sha256(npy.read_bytes()).hexdigest()
    assert [r["image"] for r in doc["training_images"]] == list(TV.TRAINING_IMAGES)
    assert doc["descriptor"] == "xfeat" and doc["dim"] == 64 and doc["clusters"] == 64
