"""Shared helpers for matcha's Python tools: cache paths, the real test photos, hashing.

Everything expensive lives under ``$MATCHA_CACHE`` (default ``~/.cache/matcha``), outside the repository:

- ``engines/``     exported ONNX graphs and ``manifest.json`` (tools/export_models.py)
- ``references/``  npz files written by the original Python pipelines (tools/reference_features.py)
- ``data/``        the real test photos as PNG (plus ground truth where the source has it)

The photos come from two pinned sources only: Debian's ``opencv-doc`` package
(``/usr/share/doc/opencv-doc/examples/data``) and scikit-image's bundled Middlebury motorcycle pair.
Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

OPENCV_DATA = Path(os.environ.get("MATCHA_OPENCV_DATA", "/usr/share/doc/opencv-doc/examples/data"))


def cache_dir() -> Path:
    """Root of matcha's cache (``$MATCHA_CACHE`` or ``~/.cache/matcha``)."""
    return Path(os.environ.get("MATCHA_CACHE", str(Path.home() / ".cache" / "matcha")))


def engines_dir() -> Path:
    return cache_dir() / "engines"


def references_dir() -> Path:
    return cache_dir() / "references"


def data_dir() -> Path:
    return cache_dir() / "data"


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


# name -> (source, file in OPENCV_DATA or skimage key). Pairs are (a, b) images of the same scene.
TEST_IMAGES = {
    "graf1": ("opencv", "graf1.png"),  # Oxford graffiti, 800x640, homography to graf3 in H1to3p.xml
    "graf3": ("opencv", "graf3.png"),
    "left01": ("opencv", "left01.jpg"),  # chessboard stereo rig, 640x480 grayscale
    "right01": ("opencv", "right01.jpg"),
    "motorcycle_left": ("skimage", "left"),  # Middlebury 2014 motorcycle, 741x500 RGB, rectified stereo
    "motorcycle_right": ("skimage", "right"),
}

TEST_PAIRS = [("graf1", "graf3"), ("left01", "right01"), ("motorcycle_left", "motorcycle_right")]


def _load_source(name: str) -> np.ndarray:
    """The photo as uint8 RGB (H, W, 3), read from its pinned source."""
    kind, key = TEST_IMAGES[name]
    if kind == "opencv":
        import cv2

        path = OPENCV_DATA / key
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: install Debian's opencv-doc (scripts/setup.sh does)")
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)  # grayscale JPEGs come back with 3 equal channels
        if img is None:
            raise IOError(f"could not decode {path}")
        return np.ascontiguousarray(img[..., ::-1])
    from skimage import data

    left, right, _disp = data.stereo_motorcycle()
    return np.ascontiguousarray({"left": left, "right": right}[key])


def available_images() -> list[str]:
    """Names of the test photos whose source is present on this machine."""
    out = []
    for name, (kind, key) in TEST_IMAGES.items():
        if kind == "opencv" and not (OPENCV_DATA / key).is_file():
            continue
        out.append(name)
    return out


def load_rgb(name: str) -> np.ndarray:
    """Test photo ``name`` as uint8 RGB (H, W, 3); also saves it as ``$MATCHA_CACHE/data/<name>.png``."""
    import cv2

    png = data_dir() / f"{name}.png"
    if png.is_file():
        img = cv2.imread(str(png), cv2.IMREAD_COLOR)
        if img is not None:
            return np.ascontiguousarray(img[..., ::-1])
    img = _load_source(name)
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_suffix(".tmp.png")
    cv2.imwrite(str(tmp), np.ascontiguousarray(img[..., ::-1]))
    tmp.replace(png)
    return img


def save_ground_truth() -> list[Path]:
    """Copy the ground truth that comes with the photos next to them in ``$MATCHA_CACHE/data``.

    - ``graf_H1to3.txt``: 3x3 homography mapping graf1 pixels to graf3 pixels (from opencv-doc H1to3p.xml)
    - ``motorcycle_disparity.npy``: float32 (H, W) left-image disparity in pixels (inf where unknown)
    - ``intrinsics.yml`` (M1, D1, M2, D2 of the chessboard stereo rig left*/right*.jpg), ``left_intrinsics.yml``
      and ``stereo_calib.xml`` (the list of its image pairs): copied as is from opencv-doc
    """
    out = []
    d = data_dir()
    d.mkdir(parents=True, exist_ok=True)
    xml = OPENCV_DATA / "H1to3p.xml"
    if xml.is_file():
        import cv2

        fs = cv2.FileStorage(str(xml), cv2.FILE_STORAGE_READ)
        H = fs.getNode("H13").mat()
        fs.release()
        if H is not None and H.shape == (3, 3):
            np.savetxt(d / "graf_H1to3.txt", H)
            out.append(d / "graf_H1to3.txt")
    for f in ("stereo_calib.xml", "intrinsics.yml", "left_intrinsics.yml"):
        if (OPENCV_DATA / f).is_file():
            shutil.copyfile(OPENCV_DATA / f, d / f)
            out.append(d / f)
    from skimage import data

    _l, _r, disp = data.stereo_motorcycle()
    np.save(d / "motorcycle_disparity.npy", disp.astype(np.float32))
    out.append(d / "motorcycle_disparity.npy")
    return out
