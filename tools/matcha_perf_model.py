#!/usr/bin/env python3
"""Cost model of MATCHA per stage: FLOPs, parameters, activation memory, and the Jetson AGX Orin budget.

Counts come from the REAL full-size configurations (tools/matcha), run on PyTorch's ``meta`` device (shapes
only, no weights allocated, no arithmetic) under ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs =
2 x multiply-accumulates of matmuls/convolutions/attention; element-wise ops are not counted). Activation
memory is measured by a dispatch mode that tracks every live tensor the ops create (freed when Python drops
it), i.e. the peak of eager fp32 execution under ``no_grad``, excluding weights. The attention matrices are
materialised in that count (unfused attention); fused kernels (TensorRT MHA, flash attention) do not store
them, so the "peak w/o attn matrices" column is the relevant one on the GPU.

    python tools/matcha_perf_model.py [--sizes 512x512,480x640] [--ensembles 1,8] [--json out.json]
    python tools/matcha_perf_model.py --measure cuda [--dtypes fp32,fp16] [--reps 10]

``--measure DEVICE`` also runs every stage of the full-size PyTorch reference on DEVICE (random weights, built
directly on the device; eager PyTorch, ``no_grad``, batch = 2 x ensemble for the UNet as exported), and prints
the median latency per stage (CUDA events, after warm-up runs) beside the FLOP count, with the arithmetic rate
it implies. Random weights give the real shapes and therefore the real arithmetic; fp16 values may overflow
(irrelevant to the time). This is the PyTorch reference, not the ONNX/TensorRT engines.

Orin figures assumed (NVIDIA Jetson AGX Orin Series Technical Brief v1.2, AGX Orin 64 GB, MAXN): GPU 2048
CUDA cores + 64 third-generation tensor cores at 1.3 GHz; 5.3 FP32 TFLOPS (CUDA cores); 170 sparse INT8
TOPS on the GPU -> 85 dense INT8 TOPS -> 42.5 dense FP16 tensor TFLOPS (Ampere FP16 = half the INT8 rate);
204.8 GB/s LPDDR5. Real networks reach a fraction of peak: we assume 40% of FP16 tensor peak (convs/GEMMs
through TensorRT) -> 17 TFLOPS usable; the model is compute-bound at these sizes (weights 2.6 GB fp16 read once
per stage call = 13 ms at full bandwidth, included separately).
"""
from __future__ import annotations

import argparse
import json
import sys
import weakref
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from matcha.config import full_config  # noqa: E402
from matcha.dift import Dift, build_unet, build_vae  # noqa: E402
from matcha.dinov2 import DinoV2  # noqa: E402
from matcha.fusion import FusionNet  # noqa: E402
from matcha.stages import FusionStage, SampleStage  # noqa: E402

ORIN = {
    "fp32_tflops": 5.3,
    "fp16_tensor_dense_tflops": 42.5,
    "int8_dense_tops": 85.0,
    "mem_bw_gbs": 204.8,
    "assumed_efficiency": 0.40,
    "source": "NVIDIA Jetson AGX Orin Series Technical Brief v1.2 (AGX Orin 64GB, MAXN)",
}


class LiveMemory(TorchDispatchMode):
    """Peak bytes of live tensors created by ops (weights and inputs excluded), and the same peak ignoring
    attention score/probability matrices: [B*heads, N, N] or [B, heads<=32, N, N] with N >= min_attn (conv
    feature maps [B, C>32, H, H] are not matched)."""

    def __init__(self, min_attn: int = 256):
        super().__init__()
        self.live = 0
        self.peak = 0
        self.live_noattn = 0
        self.peak_noattn = 0
        self.min_attn = min_attn
        self.seen: set[int] = set()

    def _is_attn(self, t: torch.Tensor) -> bool:
        if t.dim() not in (3, 4) or t.shape[-1] != t.shape[-2] or t.shape[-1] < self.min_attn:
            return False
        return t.dim() == 3 or t.shape[1] <= 32

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in self.seen:
                nbytes = t.numel() * t.element_size()
                attn = self._is_attn(t)
                self.live += nbytes
                self.peak = max(self.peak, self.live)
                if not attn:
                    self.live_noattn += nbytes
                    self.peak_noattn = max(self.peak_noattn, self.live_noattn)
                weakref.finalize(t, self._free, nbytes, attn)
        return out

    def _free(self, nbytes: int, attn: bool) -> None:
        self.live -= nbytes
        if not attn:
            self.live_noattn -= nbytes


def measure(module: torch.nn.Module, args: tuple) -> dict:
    fc = FlopCounterMode(display=False)
    mem = LiveMemory()
    with torch.no_grad(), fc, mem:
        out = module(*args)
    del out
    params = sum(p.numel() for p in module.parameters())
    return {"gflops": fc.get_total_flops() / 1e9, "params_m": params / 1e6,
            "act_peak_mb": mem.peak / 2**20, "act_peak_noattn_mb": mem.peak_noattn / 2**20}


class _VaeEncode(torch.nn.Module):
    def __init__(self, d: Dift):
        super().__init__()
        self.d = d

    def forward(self, x):
        return self.d.encode_moments(x)


class _Unet(torch.nn.Module):
    def __init__(self, d: Dift):
        super().__init__()
        self.d = d

    def forward(self, x, ctx):
        return self.d.unet_features(x, ctx)


def stage_table(h: int, w: int, e: int) -> list[dict]:
    cfg = full_config(ensemble_size=e)
    rows = []
    with torch.device("meta"):
        unet, vae = build_unet(cfg.dift.unet), build_vae(cfg.dift.vae)
        vae.decoder = None
        dift = Dift(cfg.dift, unet, vae)
        dino = DinoV2(cfg.dino)
        fusion = FusionNet(cfg.fusion)
        img = torch.zeros(1, 3, h, w)
        lat = torch.zeros(2 * e, 4, h // 8, w // 8)
        ctx = torch.zeros(2 * e, 77, 1024)
        r = measure(_VaeEncode(dift), (img,))
        r["params_m"] = sum(p.numel() for p in vae.encoder.parameters()) / 1e6
        rows.append({"stage": "VAE encoder (once)", **r})
        r = measure(_Unet(dift), (lat, ctx))
        r["params_m"] = sum(p.numel() for p in unet.parameters()) / 1e6
        rows.append({"stage": f"UNet both passes (batch {2 * e})", **r})
        rows.append({"stage": "DINOv2 ViT-L/14", **measure(dino, (img,))})
        fs = FusionStage(fusion, cfg.mode)
        feat_c = torch.zeros(1, 1280, h // 16, w // 16)
        feat_f = torch.zeros(1, 640, h // 8, w // 8)
        dmap = torch.zeros(1, 1024, -(-h // 14), -(-w // 14))
        r = measure(fs, (feat_c, feat_f, dmap))
        inf_params = sum(p.numel() for n, p in fusion.named_parameters()
                         if n.startswith(("patch_embed", "dec_", "fusion_")))
        r["params_m"] = inf_params / 1e6  # training-only heads excluded
        rows.append({"stage": "fusion + merge", **r})
        fmap = torch.zeros(1, 1024, h // 8, w // 8)
        rows.append({"stage": "sample 4096 kpts", **measure(SampleStage(h, w), (fmap, torch.zeros(1, 4096, 2)))})
    return rows


def _stage_calls(h: int, w: int, e: int, parts: dict, device: str, dtype: torch.dtype) -> list[tuple]:
    """(name, module, args) of each stage with inputs of the real shapes, on ``device`` in ``dtype``."""
    cfg = full_config(ensemble_size=e)
    dift = Dift(cfg.dift, parts["unet"], parts["vae"]).to(device=device, dtype=dtype)
    z = lambda *shape: torch.randn(*shape, device=device, dtype=dtype)  # noqa: E731
    fs = FusionStage(parts["fusion"], cfg.mode)
    kpts = torch.rand(1, 4096, 2, device=device, dtype=dtype) * torch.tensor([w - 1, h - 1], device=device,
                                                                             dtype=dtype)
    return [
        ("VAE encoder (once)", _VaeEncode(dift), (z(1, 3, h, w),)),
        (f"UNet both passes (batch {2 * e})", _Unet(dift), (z(2 * e, 4, h // 8, w // 8), z(2 * e, 77, 1024))),
        ("DINOv2 ViT-L/14", parts["dino"], (z(1, 3, h, w),)),
        ("fusion + merge", fs, (z(1, 1280, h // 16, w // 16), z(1, 640, h // 8, w // 8),
                                z(1, 1024, -(-h // 14), -(-w // 14)))),
        ("sample 4096 kpts", SampleStage(h, w), (z(1, 1024, h // 8, w // 8), kpts)),
    ]


def build_parts(device: str, dtype: torch.dtype) -> dict:
    """The full-size networks with random weights, allocated and initialised on ``device``."""
    cfg = full_config()
    with torch.device(device):
        unet, vae = build_unet(cfg.dift.unet), build_vae(cfg.dift.vae)
        vae.decoder = None
        parts = {"unet": unet, "vae": vae, "dino": DinoV2(cfg.dino), "fusion": FusionNet(cfg.fusion)}
    for m in parts.values():
        m.to(dtype=dtype).eval()
    return parts


def _time_stage(module, args: tuple, device: str, warmup: int, reps: int, times: list[float]) -> None:
    """Appends the time (ms) of each of ``reps`` runs after ``warmup`` runs (CUDA events on a GPU)."""
    import time

    with torch.no_grad():
        for i in range(warmup + reps):
            if device.startswith("cuda"):
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                module(*args)
                b.record()
                torch.cuda.synchronize()
                ms = a.elapsed_time(b)
            else:
                t0 = time.perf_counter()
                module(*args)
                ms = (time.perf_counter() - t0) * 1e3
            if i >= warmup:
                times.append(ms)


def measure_latency(sizes: list[tuple[int, int]], ensembles: list[int], device: str, dtypes: list[str],
                    reps: int, warmup: int = 3) -> list[dict]:
    """Median latency (ms) of each stage per size, ensemble and dtype on ``device``."""
    out = []
    for dname in dtypes:
        dtype = {"fp32": torch.float32, "fp16": torch.float16}[dname]
        parts = build_parts(device, dtype)
        for h, w in sizes:
            for e in ensembles:
                try:
                    calls = _stage_calls(h, w, e, parts, device, dtype)
                except RuntimeError as err:  # e.g. out of memory: report, go on with the next configuration
                    print(f"[measure] {h}x{w} e={e} {dname}: could not set up: {err}", flush=True)
                    continue
                for name, module, args in calls:
                    times = []
                    try:
                        _time_stage(module, args, device, warmup, reps, times)
                    except RuntimeError as err:
                        print(f"[measure] {h}x{w} e={e} {dname} {name}: failed: {err}", flush=True)
                        continue
                    times.sort()
                    out.append({"h": h, "w": w, "ensemble": e, "dtype": dname, "stage": name,
                                "ms": times[len(times) // 2]})
                    print(f"[measure] {h}x{w} e={e} {dname} {name}: {times[len(times) // 2]:.2f} ms", flush=True)
        del parts
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return out


def orin_ms(gflops: float) -> float:
    """Compute-bound time on Orin at the assumed efficiency of the fp16 tensor peak."""
    return gflops / (ORIN["fp16_tensor_dense_tflops"] * ORIN["assumed_efficiency"] * 1e3) * 1e3


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="512x512,480x640", help="HxW list")
    p.add_argument("--ensembles", default="1,8")
    p.add_argument("--json", help="write the table here")
    p.add_argument("--measure", metavar="DEVICE", help="also time each stage of the PyTorch reference on DEVICE "
                   "(e.g. cuda)")
    p.add_argument("--dtypes", default="fp32,fp16", help="with --measure")
    p.add_argument("--reps", type=int, default=10, help="with --measure: timed runs per stage (median)")
    a = p.parse_args(argv)
    allrows = []
    sizes = [tuple(int(v) for v in s.split("x")) for s in a.sizes.split(",")]
    ensembles = [int(v) for v in a.ensembles.split(",")]
    measured = {}
    if a.measure:
        dev = a.measure
        if dev.startswith("cuda"):
            print(f"[measure] {torch.cuda.get_device_name()} , torch {torch.__version__}, "
                  f"TF32 matmul {torch.backends.cuda.matmul.allow_tf32}, cuDNN TF32 {torch.backends.cudnn.allow_tf32}")
        dtypes = a.dtypes.split(",")
        for r in measure_latency(sizes, ensembles, dev, dtypes, a.reps):
            measured[(r["h"], r["w"], r["ensemble"], r["stage"], r["dtype"])] = r
    for s in a.sizes.split(","):
        h, w = (int(v) for v in s.split("x"))
        for e in (int(v) for v in a.ensembles.split(",")):
            rows = stage_table(h, w, e)
            tot = sum(r["gflops"] for r in rows)
            print(f"\n## {h}x{w}, ensemble {e}")
            extra = ""
            if measured:
                extra = "".join(f" {a.measure} {d} ms (TFLOP/s) |" for d in a.dtypes.split(","))
            print("| stage | GFLOPs | params (M) | act. peak fp32 (MB) | w/o attn matrices (MB) | Orin fp16 ms |" + extra)
            print("|---|---:|---:|---:|---:|---:|" + "---:|" * (extra.count("|")))
            totals = {}
            for r in rows:
                cells = ""
                for d in (a.dtypes.split(",") if measured else []):
                    m = measured.get((h, w, e, r["stage"], d))
                    if m is None:
                        cells += " |"
                        continue
                    totals[d] = totals.get(d, 0.0) + m["ms"]
                    r[f"{a.measure}_{d}_ms"] = m["ms"]
                    cells += f" {m['ms']:.2f} ({r['gflops'] / m['ms']:.1f}) |"
                print(f"| {r['stage']} | {r['gflops']:.1f} | {r['params_m']:.1f} | {r['act_peak_mb']:.0f} | "
                      f"{r['act_peak_noattn_mb']:.0f} | {orin_ms(r['gflops']):.1f} |" + cells)
                allrows.append({"h": h, "w": w, "ensemble": e, **r, "orin_ms": orin_ms(r["gflops"])})
            if totals:
                print("| measured sum |" + " |" * 5 + "".join(f" {totals[d]:.1f} |" for d in a.dtypes.split(",")
                                                           if d in totals))
            wt_ms = 2.6e9 / (ORIN["mem_bw_gbs"] * 1e9) * 1e3
            print(f"| **total** | **{tot:.0f}** | | | | **{orin_ms(tot) + wt_ms:.0f}** (incl. {wt_ms:.0f} ms weight reads) |")
    usable = ORIN["fp16_tensor_dense_tflops"] * ORIN["assumed_efficiency"]
    print(f"\n10 Hz budget on AGX Orin: 100 ms x {usable:.0f} TFLOPS usable = {usable * 100:.0f} GFLOPs per frame "
          f"(fp16, {ORIN['assumed_efficiency']:.0%} of the {ORIN['fp16_tensor_dense_tflops']} TFLOPS dense tensor peak; "
          f"{ORIN['source']}). At FP32 on CUDA cores: {ORIN['fp32_tflops'] * ORIN['assumed_efficiency'] * 100:.0f} GFLOPs.")
    if a.json:
        Path(a.json).write_text(json.dumps({"orin": ORIN, "rows": allrows,
                                            "measured": list(measured.values())}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
