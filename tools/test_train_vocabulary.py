"""Checks of ``tools/train_vocabulary.py`` (fast: 2 photos, k = 4, 2000 descriptors):

- k-means alone: separated synthetic clusters are found exactly, Lloyd converges, the same seed gives the same
  centres;
- the whole pipeline (XFeat on 2 photos): k x 64 float32 C-order centres of unit norm, deterministic, the written
  .npy loads back bit-identical and the .json's sha256 is that file's; the PCA projection's shape and orthonormal
  rows; the committed vocabulary and projection (when present) have the promised shape, norms and hashes;
- VLAD as src/map/place.rs defines it.

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
    return TV.train(IMAGES, "xfeat", k=4, seed=7, max_descriptors=2000, log=None, pca_dim=8)


def test_pipeline_shape_normalisation_determinism(tiny, tmp_path):
    centres, meta, projection = tiny
    assert centres.shape == (4, 64) and centres.dtype == np.float32 and centres.flags["C_CONTIGUOUS"]
    assert np.allclose(np.linalg.norm(centres, axis=1), 1.0, atol=1e-6)
    assert meta["descriptors_used"] == min(2000, meta["descriptors_extracted"]) and meta["converged"]
    assert [r["image"] for r in meta["training_images"]] == IMAGES and sum(meta["cluster_sizes"]) == 2000
    again, _, _ = TV.train(IMAGES, "xfeat", k=4, seed=7, max_descriptors=2000, log=None)
    assert np.array_equal(centres, again)
    # the PCA: row 0 the mean VLAD, then 8 orthonormal directions in the 4 x 64 VLAD space
    assert projection.shape == (9, 256) and projection.dtype == np.float32
    assert np.allclose(projection[1:] @ projection[1:].T, np.eye(8), atol=1e-4)
    assert meta["pca"]["samples"] > 8 and 0 < meta["pca"]["explained_variance"] <= 1
    npy, js = TV.write(centres, meta, tmp_path, projection)
    assert np.array_equal(np.load(tmp_path / "xfeat-vlad4-pca8.npy"), projection)
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
    p = TV.REPO / "assets" / "place" / doc["pca"]["file"]
    assert doc["pca"]["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
    proj = np.load(p)
    assert proj.shape == (doc["pca"]["dim"] + 1, 64 * 64)
    assert np.allclose(proj[1:] @ proj[1:].T, np.eye(doc["pca"]["dim"]), atol=1e-4)


def test_vlad_matches_the_rust_definition():
    # two descriptors in cell 0 on both sides of its centre, one in cell 1: blocks normalised, then the vector
    c = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    d = TV.l2n(np.array([[0.9, 0.1], [0.9, 0.3], [0.2, 0.9]]))
    v = TV.vlad(c, d)
    r0 = (d[0] - c[0]) + (d[1] - c[0])
    r1 = d[2] - c[1]
    want = np.concatenate([r0 / np.linalg.norm(r0), r1 / np.linalg.norm(r1)]) / np.sqrt(2)
    assert np.allclose(v, want)
