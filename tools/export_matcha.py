#!/usr/bin/env python3
"""Export MATCHA's descriptor engines (ONNX, one per stage) and a manifest.json the Rust side validates.

Real weights (local files only; nothing is downloaded):
  python tools/export_matcha.py --sd21 DIR --dinov2 dinov2_vitl14_pretrain.pth --matcha matcha_pretrained.pth \
      --height 480 --width 640 [--mode geometric|semantic|light] [--ensemble 8] [--fp16] [--out DIR]
Random weights (tests, CI fixtures, sizing):
  python tools/export_matcha.py --random-init --config tiny --height 96 --width 160 --fixtures
  python tools/export_matcha.py --random-init --config full --height 512 --width 512 --out /tmp/x

Sizes: the engine input is H x W with both sides multiples of 32 (the official geometric pipeline rounds the
image UP to the next multiple of 32; given sides are rounded the same way and the manifest records the
result). DINOv2 needs multiples of 14: inside its graph the image is resized up (bilinear, align_corners=True,
as the official wrapper), e.g. 512 -> 518. The caller resizes its image to H x W (bilinear), RGB in [0,1],
NO mean/std, NCHW float32.

Outputs in --out (default $MATCHA_CACHE/engines/matcha-<config>-<mode>-<H>x<W>-e<E>-<prec>-<key>, or
$MATCHA_CACHE/matcha-fixtures/<config>-<mode> with --fixtures):
  dift.onnx (+ dift.onnx.data when > 2 GB), dinov2.onnx (not for light), fusion.onnx, sample.onnx,
  null_prompt_embeds.f32 (raw little-endian float32, C order, shape in the manifest), manifest.json.  --fixtures also writes ref/*.npy (every stage's PyTorch output
  on a fixed image/noise/keypoints) and prints ONNX Runtime vs PyTorch differences per stage.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from matcha.config import MatchaConfig, make_config  # noqa: E402
from matcha.dinov2 import padded_size  # noqa: E402
from matcha.stages import FusionStage, MatchaPipeline, SampleStage, check_size, round_up_32, stage_shapes  # noqa: E402
from matcha.weights import build_models, sha256_file  # noqa: E402

MANIFEST_FORMAT = 1
OPSET = 18
PROMPT_FILE = "null_prompt_embeds.f32"
STAGE_FILES = {"dift": "dift.onnx", "dinov2": "dinov2.onnx", "fusion": "fusion.onnx", "sample": "sample.onnx"}


def cache_dir() -> Path:
    """$MATCHA_CACHE or ~/.cache/matcha."""
    return Path(os.environ.get("MATCHA_CACHE", str(Path.home() / ".cache" / "matcha")))


class _Half(torch.nn.Module):
    """fp16 weights and compute with fp32 inputs/outputs (IO stays float32 for the runtime)."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner.half()

    def forward(self, *args):
        out = self.inner(*[a.half() if torch.is_tensor(a) and a.is_floating_point() else a for a in args])
        if isinstance(out, tuple):
            return tuple(o.float() for o in out)
        return out.float()


def _export(module: torch.nn.Module, args: tuple, path: Path, in_names, out_names, dynamic=None, dynamo=False):
    """torch.onnx.export into a scratch directory, then re-save as ``path`` (+ one ``path.data`` file when
    the graph exceeds protobuf's 2 GB; the exporter itself writes one file per tensor)."""
    import shutil

    import onnx

    tmp = path.parent / f".tmp-{path.stem}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kw = dict(input_names=in_names, output_names=out_names, opset_version=OPSET, dynamo=dynamo)
            if dynamic:
                kw["dynamic_axes"] = dynamic
            if dynamo:
                kw["external_data"] = True
            torch.onnx.export(module, args, str(tmp / path.name), **kw)
        model = onnx.load(str(tmp / path.name), load_external_data=True)
        data = path.with_name(path.name + ".data")
        for p in (path, data):
            if p.exists():
                p.unlink()
        big = sum(t.ByteSize() for t in model.graph.initializer) > 1_800_000_000
        if big:
            onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data.name, size_threshold=1024)
            return [path, data]
        onnx.save_model(model, str(path))
        return [path]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def example_inputs(cfg: MatchaConfig, h: int, w: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Deterministic inputs: a smooth synthetic RGB image (quantised to 8 bit, as a decoded photo would be),
    prompt embedding, standard-normal noise, and keypoints (corners, centre, off-grid points)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    img = torch.stack([
        0.5 + 0.4 * torch.sin(6.0 * xx + 2.0 * yy),
        0.5 + 0.4 * torch.cos(5.0 * yy - 3.0 * xx * yy),
        (xx * 0.7 + yy * 0.3),
    ])[None]
    img = (img + 0.05 * torch.rand(img.shape, generator=g)).clamp(0, 1)
    img = torch.round(img * 255.0) / 255.0
    e = cfg.dift.ensemble_size
    lat = (2 * e, 4, h // 8, w // 8)
    kp = torch.tensor([[0.0, 0.0], [w - 1.0, h - 1.0], [w - 1.0, 0.0], [0.0, h - 1.0], [(w - 1) / 2, (h - 1) / 2],
                       [3.3, 7.9], [w / 3 + 0.25, h / 5 + 0.75], [w - 2.5, h / 2 - 0.1]])
    rnd = torch.rand(24, 2, generator=g) * torch.tensor([w - 1.0, h - 1.0])
    return {
        "image": img.float(),
        "prompt_embeds": torch.randn(1, cfg.dift.text_len, cfg.dift.unet["cross_attention_dim"], generator=g),
        "noise": torch.randn(lat, generator=g),
        "posterior_noise": torch.randn(lat, generator=g),
        "keypoints": torch.cat([kp, rnd])[None].float(),
    }


def weights_info(args) -> dict:
    """sha256 of every weight file used (or the random seed)."""
    if args.random_init:
        return {"random_init": {"seed": args.seed}}
    info = {"matcha": {"file": os.path.basename(args.matcha), "sha256": sha256_file(args.matcha)}}
    if args.mode != "light":
        info["dinov2"] = {"file": os.path.basename(args.dinov2), "sha256": sha256_file(args.dinov2)}
    sd = {}
    for sub in ("unet", "vae"):
        d = Path(args.sd21) / sub
        for p in sorted(d.iterdir()):
            if p.suffix in (".safetensors", ".bin", ".json"):
                sd[f"{sub}/{p.name}"] = sha256_file(str(p))
    info["sd21"] = sd
    return info


def cache_key(cfg: MatchaConfig, args, h: int, w: int, winfo: dict) -> str:
    import hashlib

    src = Path(__file__).resolve().parent / "matcha"
    code = hashlib.sha256()
    for p in sorted(src.glob("*.py")) + [Path(__file__).resolve()]:
        code.update(p.read_bytes())
    blob = json.dumps({"cfg": cfg.to_dict(), "h": h, "w": w, "fp16": args.fp16, "weights": winfo,
                       "code": code.hexdigest(), "opset": OPSET, "torch": torch.__version__}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def export_all(cfg: MatchaConfig, args, h: int, w: int, out: Path, winfo: dict, key: str) -> dict:
    """Build the models, export every stage, write manifest.json. Returns the manifest."""
    t0 = time.time()
    dift, dino, fusion = build_models(cfg, random_init=args.random_init, seed=args.seed, dinov2=args.dinov2,
                                      sd_dir=args.sd21, matcha=args.matcha)
    if args.random_init or args.prompt_embeds:
        if args.prompt_embeds:
            pe = torch.from_numpy(np.load(args.prompt_embeds)).float()
        else:
            pe = torch.randn(1, cfg.dift.text_len, cfg.dift.unet["cross_attention_dim"],
                             generator=torch.Generator().manual_seed(args.seed + 7))
    else:
        from matcha.dift import text_embedding

        pe = text_embedding(args.sd21, "")
    want = (1, cfg.dift.text_len, cfg.dift.unet["cross_attention_dim"])
    if tuple(pe.shape) != want:
        raise SystemExit(f"prompt embedding has shape {tuple(pe.shape)}, expected {want}")
    out.mkdir(parents=True, exist_ok=True)
    pe.numpy().astype("<f4").tofile(out / PROMPT_FILE)
    t_build = time.time() - t0

    ex = example_inputs(cfg, h, w, args.seed)
    shapes = stage_shapes(cfg, h, w)
    wrap = _Half if args.fp16 else (lambda m: m)
    timings = {"build_s": round(t_build, 2)}
    files: dict[str, list[Path]] = {}
    with torch.no_grad():
        t = time.time()
        dargs = (ex["image"], pe, ex["noise"], ex["posterior_noise"])
        files["dift"] = _export(wrap(dift), dargs, out / STAGE_FILES["dift"],
                                ["image", "prompt_embeds", "noise", "posterior_noise"], ["feat_c", "feat_f"],
                                dynamo=args.dynamo)
        timings["dift_s"] = round(time.time() - t, 2)
        s = shapes["fusion"]["inputs"]  # only shapes are needed to trace the next stages
        fin = [torch.zeros(s[0][1]), torch.zeros(s[1][1])]
        if dino is not None:
            t = time.time()
            gh, gw = padded_size(h, w, cfg.dino.patch_size)
            dino.freeze_pos_embed(gh // cfg.dino.patch_size, gw // cfg.dino.patch_size)
            files["dinov2"] = _export(wrap(dino), (ex["image"],), out / STAGE_FILES["dinov2"], ["image"], ["dino"],
                                      dynamo=args.dynamo)
            timings["dinov2_s"] = round(time.time() - t, 2)
            fin.append(torch.zeros(shapes["dinov2"]["outputs"][0][1]))
        t = time.time()
        fstage = FusionStage(fusion, cfg.mode).eval()
        files["fusion"] = _export(wrap(fstage), tuple(fin), out / STAGE_FILES["fusion"],
                                  [n for n, _ in shapes["fusion"]["inputs"]], ["descriptors", "f_s", "f_g"],
                                  dynamo=args.dynamo)
        timings["fusion_s"] = round(time.time() - t, 2)
        fmap = torch.zeros(shapes["sample"]["inputs"][0][1])
        files["sample"] = _export(SampleStage(h, w), (fmap, ex["keypoints"]), out / STAGE_FILES["sample"],
                                  ["descriptors", "keypoints"], ["keypoint_descriptors"],
                                  dynamic={"keypoints": {1: "N"}, "keypoint_descriptors": {1: "N"}})

    stages = {}
    for name, fl in files.items():
        stages[name] = {
            "file": fl[0].name,
            "sha256": sha256_file(str(fl[0])),
            "external_data": [{"file": p.name, "sha256": sha256_file(str(p))} for p in fl[1:]],
            "inputs": [{"name": n, "shape": s, "dtype": "float32"} for n, s in shapes[name]["inputs"]],
            "outputs": [{"name": n, "shape": s, "dtype": "float32"} for n, s in shapes[name]["outputs"]],
        }
    e = cfg.dift.ensemble_size
    manifest = {
        "format": MANIFEST_FORMAT,
        "model": "matcha",
        "config": cfg.name,
        "mode": cfg.mode,
        "cache_key": key,
        "descriptor_dim": cfg.descriptor_dim(),
        "descriptor_stride": 8,
        "input": {"height": h, "width": w},
        "precision": "fp16" if args.fp16 else "fp32",
        "preprocessing": {
            "color": "RGB", "layout": "NCHW", "dtype": "float32", "range": [0.0, 1.0], "mean": None, "std": None,
            "resize": "bilinear (align_corners=False) to input.height x input.width; official rule: sides rounded "
                      "UP to a multiple of 32",
        },
        "dift": {
            "timesteps": [cfg.dift.t_c, cfg.dift.t_f],
            "up_ft_index": [cfg.dift.up_ft_index_c, cfg.dift.up_ft_index_f],
            "ensemble_size": e,
            "noise": f"noise and posterior_noise: i.i.d. standard normal [{2 * e},4,H/8,W/8]; rows 0..{e - 1} feed "
                     f"the t={cfg.dift.t_c} pass, rows {e}..{2 * e - 1} the t={cfg.dift.t_f} pass",
            "prompt_embeds": {"file": PROMPT_FILE, "sha256": sha256_file(str(out / PROMPT_FILE)), "dtype": "float32le",
                              "shape": list(want), "prompt": ""},
        },
        "keypoint_sampling": "grid_sample bilinear, align_corners=True, zeros padding: feature x = "
                             "x_px * (W/8 - 1) / (W - 1) (same for y), then L2-normalise (official sample_descriptor)",
        "stages": stages,
        "weights": winfo,
        "network": cfg.to_dict(),
        "export": {"tool": "tools/export_matcha.py", "torch": torch.__version__, "opset": OPSET,
                   "exporter": "dynamo" if args.dynamo else "torchscript", "timings": timings},
    }
    with open(out / "manifest.json", "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def ort_session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(os.environ.get("MATCHA_ORT_THREADS", "1"))
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def fixtures(cfg: MatchaConfig, args, out: Path, manifest: dict) -> dict:
    """PyTorch reference outputs of every stage + ORT-vs-PyTorch max abs diffs (per stage, and chained)."""
    h, w = manifest["input"]["height"], manifest["input"]["width"]
    dift, dino, fusion = build_models(cfg, random_init=args.random_init, seed=args.seed, dinov2=args.dinov2,
                                      sd_dir=args.sd21, matcha=args.matcha)
    ex = example_inputs(cfg, h, w, args.seed)
    shape = manifest["dift"]["prompt_embeds"]["shape"]
    ex["prompt_embeds"] = torch.from_numpy(np.fromfile(out / PROMPT_FILE, dtype="<f4").reshape(shape).copy())
    pipe = MatchaPipeline(cfg, dift, dino, fusion).eval()
    with torch.no_grad():
        ref = pipe(ex["image"], ex["prompt_embeds"], ex["noise"], ex["posterior_noise"])
        ref["keypoint_descriptors"] = SampleStage(h, w)(ref["descriptors"], ex["keypoints"])
    refdir = out / "ref"
    refdir.mkdir(exist_ok=True)
    arrays = {k: v.numpy().astype(np.float32) for k, v in {**ex, **ref}.items()}
    for k, v in arrays.items():
        np.save(refdir / f"{k}.npy", v)
    # the 8-bit image the float image came from (Rust tests can start from pixels)
    rgb8 = np.round(arrays["image"][0].transpose(1, 2, 0) * 255.0).astype(np.uint8)
    np.save(refdir / "image_u8.npy", rgb8)

    diffs: dict[str, dict[str, float]] = {}

    def run(stage: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sess = ort_session(out / manifest["stages"][stage]["file"])
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, feeds)))

    n_kp = int(arrays["keypoints"].shape[1])
    shape_errors: list[str] = []

    def cmp(stage: str, got: dict[str, np.ndarray], tag: str):
        for o in manifest["stages"][stage]["outputs"]:
            want = [n_kp if d == "N" else d for d in o["shape"]]
            if list(got[o["name"]].shape) != want:
                shape_errors.append(f"{stage}.{o['name']}: {list(got[o['name']].shape)} != manifest {want}")
        for k, v in got.items():
            r = arrays[k]
            diffs.setdefault(f"{stage}{tag}", {})[k] = float(np.max(np.abs(v - r)))

    a = arrays
    t = time.time()
    o_dift = run("dift", {k: a[k] for k in ("image", "prompt_embeds", "noise", "posterior_noise")})
    cmp("dift", o_dift, "")
    o_dino = None
    if "dinov2" in manifest["stages"]:
        o_dino = run("dinov2", {"image": a["image"]})
        cmp("dinov2", o_dino, "")
    ffeeds = {"feat_c": a["feat_c"], "feat_f": a["feat_f"]}
    if o_dino is not None:
        ffeeds["dino"] = a["dino"]
    cmp("fusion", run("fusion", ffeeds), "")
    cmp("sample", run("sample", {"descriptors": a["descriptors"], "keypoints": a["keypoints"]}), "")
    # chained: ORT outputs feed the next ORT stage (what the Rust pipeline does)
    chain = {"feat_c": o_dift["feat_c"], "feat_f": o_dift["feat_f"]}
    if o_dino is not None:
        chain["dino"] = o_dino["dino"]
    o_f = run("fusion", chain)
    cmp("fusion", o_f, "_chained")
    cmp("sample", run("sample", {"descriptors": o_f["descriptors"], "keypoints": a["keypoints"]}), "_chained")
    ort_s = time.time() - t
    if shape_errors:
        raise SystemExit("ONNX output shapes differ from the manifest: " + "; ".join(shape_errors))
    report = {"max_abs_diff": diffs, "ort_seconds": round(ort_s, 2), "shapes_match_manifest": True,
              "ref_max_abs": {k: float(np.max(np.abs(v))) for k, v in arrays.items()}}
    with open(out / "parity.json", "w") as f:
        json.dump(report, f, indent=1)
    print("ONNX Runtime vs PyTorch, max |diff| per stage output:")
    for st, d in diffs.items():
        print(f"  {st:16s} " + "  ".join(f"{k}={v:.2e}" for k, v in d.items()))
    return report


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="full", choices=["full", "tiny"])
    p.add_argument("--mode", default="geometric", choices=["geometric", "semantic", "light"])
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--ensemble", type=int, default=None, help="DIFT ensemble size (official 8; tiny default 2)")
    p.add_argument("--fp16", action="store_true", help="fp16 weights/compute inside, fp32 IO (GPU use)")
    p.add_argument("--random-init", action="store_true", help="random weights (no files needed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sd21", help="local diffusers SD 2.1 directory (unet/, vae/, tokenizer/, text_encoder/)")
    p.add_argument("--dinov2", help="dinov2_vitl14_pretrain.pth")
    p.add_argument("--matcha", help="matcha_pretrained.pth")
    p.add_argument("--prompt-embeds", help=".npy [1,77,1024] to use instead of encoding the null prompt")
    p.add_argument("--out", help="output directory (default: keyed directory under $MATCHA_CACHE/engines)")
    p.add_argument("--fixtures", action="store_true", help="also write ref/*.npy and check ORT vs PyTorch")
    p.add_argument("--dynamo", action="store_true", help="use the torch.export-based ONNX exporter")
    p.add_argument("--force", action="store_true", help="re-export even if the keyed output exists")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(int(os.environ.get("MATCHA_TORCH_THREADS", str(min(2, os.cpu_count() or 1)))))
    cfg = make_config(args.config, args.mode, args.ensemble)
    h, w = round_up_32(args.height), round_up_32(args.width)
    check_size(h, w)
    if (h, w) != (args.height, args.width):
        print(f"note: {args.height}x{args.width} rounded up to {h}x{w} (multiple of 32, as the official code)")
    winfo = weights_info(args)
    key = cache_key(cfg, args, h, w, winfo)
    prec = "fp16" if args.fp16 else "fp32"
    if args.out:
        out = Path(args.out)
    elif args.fixtures:
        out = cache_dir() / "matcha-fixtures" / f"{cfg.name}-{cfg.mode}"
    else:
        out = cache_dir() / "engines" / f"matcha-{cfg.name}-{cfg.mode}-{h}x{w}-e{cfg.dift.ensemble_size}-{prec}-{key}"
    mpath = out / "manifest.json"
    if mpath.exists() and not args.force and json.loads(mpath.read_text()).get("cache_key") == key \
            and (not args.fixtures or (out / "parity.json").exists()):
        print(f"up to date: {out}")
        return 0
    t = time.time()
    manifest = export_all(cfg, args, h, w, out, winfo, key)
    print(f"exported {cfg.name}/{cfg.mode} {h}x{w} E={cfg.dift.ensemble_size} {prec} to {out} "
          f"in {time.time() - t:.1f} s: {manifest['export']['timings']}")
    if args.fixtures:
        fixtures(cfg, args, out, manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
