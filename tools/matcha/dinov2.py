"""DINOv2 ViT (default ViT-L/14 without registers) returning L2-normalised patch tokens as a map.

Parameter names equal those of Meta's ``dinov2_vit*14_pretrain.pth`` (``cls_token``, ``pos_embed``,
``mask_token``, ``patch_embed.proj``, ``blocks.{i}.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1,mlp.fc2,
ls2.gamma}``, ``norm``), so those files load with ``strict=True``.

Preprocessing as MATCHA's wrapper: the RGB image in [0,1] (NO ImageNet mean/std, as the official code) is
resized UP to the next multiple of 14 per side with bilinear ``align_corners=True`` (512 -> 518), the ViT
runs, the final-LayerNorm patch tokens are reshaped to [B, C, H/14, W/14] and L2-normalised over channels.
The 518x518-trained position embedding is bicubically interpolated to the token grid exactly as the official
``interpolate_pos_encoding`` (``scale_factor`` = (n+0.1)/sqrt(N), not ``size``). Input sizes are fixed per
exported engine, so the interpolated embedding is computed once in PyTorch at export time and stored in the
graph as a constant (ONNX then needs no bicubic resize).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import DinoConfig


class _Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        h = self.num_heads
        qkv = self.qkv(x).reshape(b, n, 3, h, c // h).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * (c // h) ** -0.5, qkv[1], qkv[2]
        w = torch.softmax(q @ k.transpose(-2, -1), dim=-1)
        return self.proj((w @ v).transpose(1, 2).reshape(b, n, c))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _LayerScale(nn.Module):
    def __init__(self, dim: int, init: float):
        super().__init__()
        self.gamma = nn.Parameter(init * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class _Block(nn.Module):
    def __init__(self, cfg: DinoConfig):
        super().__init__()
        d = cfg.embed_dim
        self.norm1 = nn.LayerNorm(d, eps=1e-6)
        self.attn = _Attention(d, cfg.num_heads)
        self.ls1 = _LayerScale(d, cfg.init_values) if cfg.init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.mlp = _Mlp(d, int(d * cfg.mlp_ratio))
        self.ls2 = _LayerScale(d, cfg.init_values) if cfg.init_values else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class _PatchEmbed(nn.Module):
    def __init__(self, cfg: DinoConfig):
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.embed_dim, cfg.patch_size, cfg.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def padded_size(h: int, w: int, multiple: int = 14) -> tuple[int, int]:
    """Next multiple of ``multiple`` at or above each side (official DINOv2 wrapper)."""
    # positive arithmetic only: traced sizes are exported as ONNX int Div, which truncates toward zero
    h, w = int(h), int(w)
    return ((h + multiple - 1) // multiple * multiple, (w + multiple - 1) // multiple * multiple)


class DinoV2(nn.Module):
    """The ViT backbone (``forward_tokens``) plus MATCHA's wrapper (``forward``)."""

    def __init__(self, cfg: DinoConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.embed_dim
        grid = cfg.img_size // cfg.patch_size
        self.patch_embed = _PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, d))
        self.mask_token = nn.Parameter(torch.zeros(1, d))  # unused at inference; in the checkpoint
        self.blocks = nn.ModuleList([_Block(cfg) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.fixed_grid: tuple[int, int] | None = None
        self.register_buffer("fixed_pos", torch.zeros(0), persistent=False)

    def random_init(self, seed: int = 0) -> "DinoV2":
        """Random weights with realistic scales (pos_embed ~ N(0, 0.02), LayerScale gammas 1.0)."""
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("gamma"):
                    p.fill_(1.0)
                elif p.ndim == 1 and "norm" in name and name.endswith("weight"):
                    p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
                else:
                    p.copy_(0.02 * torch.randn(p.shape, generator=g))
        return self

    def interpolate_pos_encoding(self, gh: int, gw: int) -> torch.Tensor:
        """Position embedding for a gh x gw token grid, as the official ``interpolate_pos_encoding``."""
        n = self.pos_embed.shape[1] - 1
        if gh * gw == n and gh == gw:
            return self.pos_embed
        pos = self.pos_embed.float()
        cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
        side = int(math.sqrt(n))
        d = pos.shape[-1]
        # official: (h0 + 0.1) / sqrt(N) as scale factors (avoids off-by-one from float rounding)
        patch_pos = F.interpolate(
            patch_pos.reshape(1, side, side, d).permute(0, 3, 1, 2),
            scale_factor=((gh + 0.1) / side, (gw + 0.1) / side),
            mode="bicubic",
        )
        if patch_pos.shape[-2:] != (gh, gw):
            raise RuntimeError(f"pos-embed interpolation gave {tuple(patch_pos.shape[-2:])}, want {(gh, gw)}")
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, gh * gw, d)
        return torch.cat([cls_pos, patch_pos], dim=1).to(self.pos_embed.dtype)

    def freeze_pos_embed(self, gh: int, gw: int) -> None:
        """Precompute the interpolated embedding for one grid (export: becomes a graph constant)."""
        with torch.no_grad():
            self.fixed_pos = self.interpolate_pos_encoding(gh, gw).detach().clone()
        self.fixed_grid = (gh, gw)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Image [B,3,H,W] (H, W multiples of the patch size) -> final-LayerNorm patch tokens [B, N, C]."""
        p = self.cfg.patch_size
        gh, gw = int(x.shape[-2]) // p, int(x.shape[-1]) // p
        t = self.patch_embed(x)
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1)
        if self.fixed_grid == (gh, gw):
            t = t + self.fixed_pos
        else:
            t = t + self.interpolate_pos_encoding(gh, gw)
        for blk in self.blocks:
            t = blk(t)
        return self.norm(t)[:, 1:]

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """RGB [B,3,H,W] in [0,1] -> L2-normalised token map [B, C, ceil14(H)/14, ceil14(W)/14]."""
        b, _, h, w = (int(s) for s in img.shape)
        nh, nw = padded_size(h, w, self.cfg.patch_size)
        if (nh, nw) != (h, w):
            img = F.interpolate(img, size=(nh, nw), mode="bilinear", align_corners=True)
        tok = self.forward_tokens(img)
        fmap = tok.transpose(1, 2).reshape(b, self.cfg.embed_dim, nh // self.cfg.patch_size, nw // self.cfg.patch_size)
        return F.normalize(fmap, dim=1)
