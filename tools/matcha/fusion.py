"""MATCHA's attention fusion network (``AttentionFusionNet`` in the official code), written from scratch
with the SAME parameter names and shapes so that ``matcha_pretrained.pth`` loads with ``strict=True``.

Method (inference path only):
  F_h (DIFT t=261, 1/16) is bilinearly upsampled to F_l's 1/8 grid. Each map is patch-embedded with a
  2x2/stride-2 conv to D channels (tokens at 1/16). k decoder blocks run over both token streams jointly;
  each block, per stream: self-attention, then cross-attention to the OTHER stream (queries from the
  stream's post-self-attention state, keys/values from the other stream's *block-input* LayerNorm), then an
  MLP, all residual. No positional encoding (the released config uses pos_embed="cosine", which adds none).
  Heads: LayerNorm -> tokens back to a map -> pixel_shuffle(2) -> concat with the raw DIFT map ->
  [3x3 conv + BatchNorm(affine=False) + ReLU] x2 -> 1x1 conv -> L2 normalise: F_s (from F_h) and F_g (from F_l).

The keypoint/heatmap heads, the fine matcher and the correlation module are used only in training; they are
kept as parameters (so the checkpoint loads strictly) but are not part of ``forward``.
The dust3r/croco blocks the official code uses are CC BY-NC-SA; nothing is copied from them here.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import FusionConfig


class Mlp(nn.Module):
    """Two linear layers with GELU (exact erf form) in between: ``fc1``, ``fc2``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def _heads(x: torch.Tensor, n: int) -> torch.Tensor:
    b, t, c = x.shape
    return x.reshape(b, t, n, c // n).transpose(1, 2)  # B, n, T, c/n


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # softmax(q k^T / sqrt(d)) v, written out (ONNX-exportable with any opset, identical math in fp32)
    scale = q.shape[-1] ** -0.5
    w = torch.softmax((q @ k.transpose(-2, -1)) * scale, dim=-1)
    out = w @ v
    b, n, t, d = out.shape
    return out.transpose(1, 2).reshape(b, t, n * d)


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection and an output ``proj``."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        n = self.num_heads
        return self.proj(_attend(_heads(q, n), _heads(k, n), _heads(v, n)))


class CrossAttention(nn.Module):
    """Multi-head cross-attention with separate ``projq``/``projk``/``projv`` and an output ``proj``."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.projq = nn.Linear(dim, dim, bias=qkv_bias)
        self.projk = nn.Linear(dim, dim, bias=qkv_bias)
        self.projv = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        n = self.num_heads
        q = _heads(self.projq(query), n)
        k = _heads(self.projk(memory), n)
        v = _heads(self.projv(memory), n)
        return self.proj(_attend(q, k, v))


class JointBlock(nn.Module):
    """One two-stream decoder block. Parameter names follow the official ``DecoderBlockJointP``:
    stream x uses ``normx1 attnx normx2 cross_attnx normx3 mlpx``, stream y the ``...y`` twins."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, eps: float):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        for s in ("x", "y"):
            setattr(self, f"norm{s}1", nn.LayerNorm(dim, eps=eps))
            setattr(self, f"attn{s}", SelfAttention(dim, num_heads))
            setattr(self, f"cross_attn{s}", CrossAttention(dim, num_heads))
            setattr(self, f"norm{s}2", nn.LayerNorm(dim, eps=eps))
            setattr(self, f"norm{s}3", nn.LayerNorm(dim, eps=eps))
            setattr(self, f"mlp{s}", Mlp(dim, hidden))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xn = self.normx1(x)
        yn = self.normy1(y)
        x2 = x + self.attnx(xn)
        y2 = y + self.attny(yn)
        # each stream attends to the other stream's normalised block INPUT (official order of operations)
        x2 = x2 + self.cross_attnx(self.normx2(x2), yn)
        y2 = y2 + self.cross_attny(self.normy2(y2), xn)
        x2 = x2 + self.mlpx(self.normx3(x2))
        y2 = y2 + self.mlpy(self.normy3(y2))
        return x2, y2


class PatchEmbed(nn.Module):
    """Non-overlapping p x p conv (``proj``) -> tokens [B, H/p * W/p, D] (row-major)."""

    def __init__(self, in_ch: int, dim: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(in_ch, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class ConvBNReLU(nn.Module):
    """``layer = Sequential(Conv2d(no bias), BatchNorm2d(affine=False), ReLU)`` as the official BasicLayer."""

    def __init__(self, cin: int, cout: int, k: int = 3, padding: int = 1):
        super().__init__()
        self.layer = nn.Sequential(
            nn.Conv2d(cin, cout, k, padding=padding, bias=False),
            nn.BatchNorm2d(cout, affine=False),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class _Unused(nn.Module):
    """Holder for parameters used only in training (kept for strict checkpoint loading)."""


class FusionNet(nn.Module):
    """AttentionFusionNet (inference path). ``forward(feat_c, feat_f) -> (F_s, F_g)``, both L2-normalised
    over channels at F_l's resolution (1/8 of the image)."""

    def __init__(self, cfg: FusionConfig):
        super().__init__()
        self.cfg = cfg
        c, d = cfg, cfg.hidden_dim
        # --- training-only modules (names and shapes as the official model) -------------------------
        self.keypoint_encoder = ConvBNReLU(3, 16, 3, 1)
        self.keypoint_head = nn.Sequential(
            ConvBNReLU(16 * 64, 64, 1, 0),
            ConvBNReLU(64, 64, 1, 0),
            ConvBNReLU(64, 64, 1, 0),
            nn.Conv2d(64, 65, 1),
        )
        self.heatmap_head = nn.Sequential(
            ConvBNReLU(c.out_dim_f, 64, 3, 1),
            ConvBNReLU(64, 64, 1, 0),
            nn.Conv2d(64, 1, 1),
            nn.Sigmoid(),
        )
        # --- inference path ---------------------------------------------------------------------------
        self.patch_embed_c = PatchEmbed(c.ft_dim_c, d, c.patch_size_c)
        self.patch_embed_f = PatchEmbed(c.ft_dim_f, d, c.patch_size_f)
        self.dec_blocks = nn.ModuleList(
            [JointBlock(d, c.dec_num_heads, c.mlp_ratio, c.ln_eps) for _ in range(c.dec_depth)]
        )
        self.dec_norm_c = nn.LayerNorm(d, eps=c.ln_eps)
        self.dec_norm_f = nn.LayerNorm(d, eps=c.ln_eps)
        hc = c.head_channels
        self.fusion_c = nn.Sequential(
            ConvBNReLU(c.ft_dim_c + d // c.patch_size_c**2, hc),
            ConvBNReLU(hc, hc),
            nn.Conv2d(hc, c.out_dim_c, 1),
        )
        self.fusion_f = nn.Sequential(
            ConvBNReLU(c.ft_dim_f + d // c.patch_size_f**2, hc),
            ConvBNReLU(hc, hc),
            nn.Conv2d(hc, c.out_dim_f, 1),
        )
        # --- training-only ----------------------------------------------------------------------------
        layers: list[nn.Module] = []
        dims = [c.out_dim_f * 2, 512, 512, 512, 512]
        for i in range(4):
            layers += [nn.Linear(dims[i], 512), nn.BatchNorm1d(512, affine=False), nn.ReLU()]
        layers.append(nn.Linear(512, 64))
        self.fine_matcher = nn.Sequential(*layers)
        self.corr_model = _Unused()
        self.corr_model.x_normal = nn.Parameter(torch.linspace(-1, 1, 64), requires_grad=False)
        self.corr_model.y_normal = nn.Parameter(torch.linspace(-1, 1, 64), requires_grad=False)

    def _to_map(self, tokens: torch.Tensor, norm: nn.LayerNorm, h: int, w: int, p: int) -> torch.Tensor:
        b = tokens.shape[0]
        m = norm(tokens).transpose(1, 2).reshape(b, -1, h // p, w // p)
        return F.pixel_shuffle(m, p)

    def forward(self, feat_c: torch.Tensor, feat_f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.cfg
        h, w = feat_f.shape[-2:]
        feat_c = F.interpolate(feat_c, size=(h, w), mode="bilinear", align_corners=False)
        tc = self.patch_embed_c(feat_c)
        tf = self.patch_embed_f(feat_f)
        for blk in self.dec_blocks:
            tf, tc = blk(tf, tc)  # official order: x = geometric stream, y = semantic stream
        att_c = self._to_map(tc, self.dec_norm_c, h, w, c.patch_size_c)
        att_f = self._to_map(tf, self.dec_norm_f, h, w, c.patch_size_f)
        f_s = F.normalize(self.fusion_c(torch.cat([feat_c, att_c], dim=1)), dim=1)
        f_g = F.normalize(self.fusion_f(torch.cat([feat_f, att_f], dim=1)), dim=1)
        return f_s, f_g
