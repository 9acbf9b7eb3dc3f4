"""Merging MATCHA's maps into the unified descriptor map F_m, and sampling F_m at keypoints.

``concat_feature(coarse, fine)`` (official name and semantics): if the maps differ in size, the coarse one is
bilinearly resized (``align_corners=False``) to the fine one's grid and re-normalised; then every k-th
channel of the coarse map is kept, k = C_coarse // C_fine (integer division), appended AFTER the fine map's
channels, and the concatenation is L2-normalised. Modes:

- geometric: concat(concat(F_g, F_s), DINOv2)  -> [F_g 256 | F_s[::3] 256 | DINO[::2] 512] = 1024
- semantic:  concat(concat(F_g, DINOv2), F_s)  -> [F_g 256 | DINO[::4] 256 | F_s 768]     = 1280
- light:     concat(F_g, F_s)                  -> [F_g 256 | F_s[::3] 256]                 = 512

Keypoint sampling as the official ``BaseFeature.sample_descriptor``: pixel coordinates of the (resized)
network input, normalised with c = ((W-1)/2, (H-1)/2), ``grid_sample(bilinear, align_corners=True,
padding zeros)``, then L2-normalised. Equivalently feature coordinates are x * (W_f - 1) / (W - 1).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def concat_feature(feat_c: torch.Tensor, feat_f: torch.Tensor) -> torch.Tensor:
    """[fine | coarse[:, ::C_c // C_f]] on the fine grid, L2-normalised."""
    if feat_c.shape[-2:] != feat_f.shape[-2:]:
        feat_c = F.interpolate(feat_c, size=feat_f.shape[-2:], mode="bilinear", align_corners=False)
        feat_c = F.normalize(feat_c, dim=1)
    stride = feat_c.shape[1] // feat_f.shape[1]
    return F.normalize(torch.cat([feat_f, feat_c[:, ::stride]], dim=1), dim=1)


def merge(mode: str, f_s: torch.Tensor, f_g: torch.Tensor, dino: torch.Tensor | None) -> torch.Tensor:
    """F_m for ``mode`` (geometric | semantic | light)."""
    if mode == "geometric":
        return concat_feature(feat_c=dino, feat_f=concat_feature(feat_c=f_s, feat_f=f_g))
    if mode == "semantic":
        return concat_feature(feat_c=f_s, feat_f=concat_feature(feat_c=dino, feat_f=f_g))
    if mode == "light":
        return concat_feature(feat_c=f_s, feat_f=f_g)
    raise ValueError(f"unknown mode {mode!r}")


def _kept(c_coarse: int, c_fine: int) -> int:
    stride = c_coarse // c_fine
    return -(-c_coarse // stride)  # len(range(0, c_coarse, stride))


def merged_dim(mode: str, dim_g: int, dim_s: int, dim_dino: int) -> int:
    """Channels of F_m (matches ``merge``)."""
    if mode == "geometric":
        inner = dim_g + _kept(dim_s, dim_g)
        return inner + _kept(dim_dino, inner)
    if mode == "semantic":
        inner = dim_g + _kept(dim_dino, dim_g)
        return inner + _kept(dim_s, inner)
    if mode == "light":
        return dim_g + _kept(dim_s, dim_g)
    raise ValueError(f"unknown mode {mode!r}")


def sample_descriptors(fmap: torch.Tensor, kpts: torch.Tensor, w: int, h: int) -> torch.Tensor:
    """F_m [1,C,Hf,Wf], keypoints [1,N,2] (x, y) in pixels of the w x h network input -> [1,N,C] L2-normalised."""
    c = torch.tensor([(w - 1) / 2.0, (h - 1) / 2.0], dtype=fmap.dtype, device=fmap.device)
    grid = ((kpts.to(fmap.dtype) - c) / c).unsqueeze(2)  # [1, N, 1, 2]
    desc = F.grid_sample(fmap, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return F.normalize(desc.squeeze(-1), dim=1).transpose(1, 2)
