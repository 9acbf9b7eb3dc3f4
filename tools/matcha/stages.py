"""The exported stages and the whole pipeline as one PyTorch module (the reference for parity tests).

Split (one ONNX engine each; intermediate tensors stay on the device between them with IO binding):
  dift    image[1,3,H,W], prompt_embeds[1,77,Dt], noise[2E,4,H/8,W/8], posterior_noise[2E,4,H/8,W/8]
          -> feat_c[1,Cc,H/16,W/16], feat_f[1,Cf,H/8,W/8]
  dinov2  image[1,3,H,W] -> dino[1,Cd,ceil14(H)/14,ceil14(W)/14]              (not in MATCHA-Light)
  fusion  feat_c, feat_f[, dino] -> descriptors (F_m)[1,D,H/8,W/8], f_s[1,768,H/8,W/8], f_g[1,256,H/8,W/8]
  sample  descriptors[1,D,H/8,W/8], keypoints[1,N,2] (x, y pixels of the H x W input) -> [1,N,D] (N dynamic)
The UNet is by far the largest and slowest engine; splitting DINOv2 out lets a runtime overlap them.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .config import MatchaConfig
from .dift import Dift
from .dinov2 import DinoV2, padded_size
from .fusion import FusionNet
from .merge import merge, sample_descriptors


def check_size(h: int, w: int) -> None:
    """Engine input sides must be positive multiples of 32 (the official geometric pipeline rounds up)."""
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise ValueError(f"input size {h}x{w}: both sides must be positive multiples of 32")


def round_up_32(x: int) -> int:
    """Official ImageProcessor rule: sides not divisible by 32 are rounded UP to the next multiple."""
    return (x + 31) // 32 * 32


class FusionStage(nn.Module):
    """Fusion network + merge into F_m."""

    def __init__(self, fusion: FusionNet, mode: str):
        super().__init__()
        self.fusion = fusion
        self.mode = mode

    def forward(self, feat_c: torch.Tensor, feat_f: torch.Tensor, dino: torch.Tensor | None = None):
        f_s, f_g = self.fusion(feat_c, feat_f)
        return merge(self.mode, f_s, f_g, dino), f_s, f_g


class SampleStage(nn.Module):
    """grid_sample of F_m at keypoints (official ``sample_descriptor``), L2-normalised."""

    def __init__(self, height: int, width: int):
        super().__init__()
        self.h, self.w = height, width

    def forward(self, fmap: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
        return sample_descriptors(fmap, keypoints, self.w, self.h)


class MatchaPipeline(nn.Module):
    """All stages chained (reference forward for one image of a fixed size)."""

    def __init__(self, cfg: MatchaConfig, dift: Dift, dino: DinoV2 | None, fusion: FusionNet):
        super().__init__()
        self.cfg = cfg
        self.dift = dift
        self.dino = dino
        self.fusion_stage = FusionStage(fusion, cfg.mode)

    def forward(self, image, prompt_embeds, noise, posterior_noise) -> dict[str, torch.Tensor]:
        feat_c, feat_f = self.dift(image, prompt_embeds, noise, posterior_noise)
        out = {"feat_c": feat_c, "feat_f": feat_f}
        dino = None
        if self.dino is not None:
            dino = self.dino(image)
            out["dino"] = dino
        fmap, f_s, f_g = self.fusion_stage(feat_c, feat_f, dino)
        out.update(descriptors=fmap, f_s=f_s, f_g=f_g)
        return out


def stage_shapes(cfg: MatchaConfig, h: int, w: int) -> dict[str, dict[str, list]]:
    """Input/output names and shapes of every stage for an H x W engine set ('N' = dynamic keypoints)."""
    e = cfg.dift.ensemble_size
    f = cfg.fusion
    lh, lw = h // 8, w // 8
    dh, dw = padded_size(h, w, cfg.dino.patch_size)
    dh, dw = dh // cfg.dino.patch_size, dw // cfg.dino.patch_size
    ctx_dim = cfg.dift.unet["cross_attention_dim"]
    d = cfg.descriptor_dim()
    s: dict[str, dict[str, list]] = {
        "dift": {
            "inputs": [["image", [1, 3, h, w]], ["prompt_embeds", [1, cfg.dift.text_len, ctx_dim]],
                       ["noise", [2 * e, 4, lh, lw]], ["posterior_noise", [2 * e, 4, lh, lw]]],
            "outputs": [["feat_c", [1, f.ft_dim_c, h // 16, w // 16]], ["feat_f", [1, f.ft_dim_f, lh, lw]]],
        },
        "fusion": {
            "inputs": [["feat_c", [1, f.ft_dim_c, h // 16, w // 16]], ["feat_f", [1, f.ft_dim_f, lh, lw]]],
            "outputs": [["descriptors", [1, d, lh, lw]], ["f_s", [1, f.out_dim_c, lh, lw]],
                        ["f_g", [1, f.out_dim_f, lh, lw]]],
        },
        "sample": {
            "inputs": [["descriptors", [1, d, lh, lw]], ["keypoints", [1, "N", 2]]],
            "outputs": [["keypoint_descriptors", [1, "N", d]]],
        },
    }
    if cfg.uses_dino:
        s["dinov2"] = {"inputs": [["image", [1, 3, h, w]]], "outputs": [["dino", [1, cfg.dino.embed_dim, dh, dw]]]}
        s["fusion"]["inputs"].append(["dino", [1, cfg.dino.embed_dim, dh, dw]])
    return s
