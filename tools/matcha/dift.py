"""DIFT (diffusion features) on Stable Diffusion 2.1, as MATCHA uses it.

Method (official ``third_party/dift/dift_sd.py``): the RGB image in [0,1] (no [-1,1] scaling -- the official
code feeds it as is, and MATCHA was trained on that) is VAE-encoded, a latent is drawn from the posterior
(``latent_dist.sample()``) and scaled by 0.18215, DDIM forward noise is added at timestep t
(x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps), and the UNet runs with the null-prompt text embedding as far as
up block ``up_ft_index``, whose output is the feature map. This is repeated for ``ensemble_size`` noise draws
and averaged. MATCHA uses two passes: F_h at t=261 / up block 1 (1280 ch, 1/16) and F_l at t=1 / up block 2
(640 ch, 1/8).

What we do differently, with identical per-sample math:
- the VAE encoder runs ONCE (the official code encodes the image once per ensemble copy and pass: 2E
  identical encodes); the posterior draw is still made per copy and pass, from ``posterior_noise``;
- both passes go through the UNet as ONE batch of 2E (per-sample timesteps) up to up block 1; only the
  t=1 half continues through up block 2; nothing past the requested block is computed;
- randomness is an INPUT (``noise`` and ``posterior_noise``, [2E,4,H/8,W/8]; rows 0..E-1 are the t=261 pass),
  so the caller (the Rust side) seeds it deterministically;
- the null-prompt embedding ([1,77,1024] for SD 2.1) is an input, computed once by ``text_embedding`` from
  the local SD 2.1 text encoder and stored beside the engine (semantic prompts can be swapped in).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

from .config import DiftConfig


def build_unet(cfg: dict[str, Any]) -> UNet2DConditionModel:
    """UNet2DConditionModel from a config dict (random weights)."""
    return UNet2DConditionModel(**cfg)


def build_vae(cfg: dict[str, Any]) -> AutoencoderKL:
    """AutoencoderKL from a config dict (random weights)."""
    return AutoencoderKL(**cfg)


def alphas_cumprod(scheduler_cfg: dict[str, Any]) -> torch.Tensor:
    """The DDIM schedule's cumulative alphas (float32, as diffusers computes them)."""
    return DDIMScheduler(**scheduler_cfg).alphas_cumprod.to(torch.float32)


class Dift(nn.Module):
    """Both DIFT passes. ``forward(image, prompt_embeds, noise, posterior_noise) -> (feat_c, feat_f)``.

    image [1,3,H,W] RGB in [0,1], H and W multiples of 32 (checked at trace time) -- the UNet itself copes
    with any multiple of 8 via ``upsample_size`` as diffusers does, but MATCHA's fusion needs 1/8 maps that
    split into 2x2 patches and a 1/16 map, i.e. multiples of 16; the official pipeline rounds up to 32.
    """

    def __init__(self, cfg: DiftConfig, unet: UNet2DConditionModel, vae: AutoencoderKL):
        super().__init__()
        self.cfg = cfg
        self.unet = unet
        self.vae_encoder = vae.encoder
        self.quant_conv = vae.quant_conv if getattr(vae.config, "use_quant_conv", True) else None
        self.scaling_factor = float(vae.config.scaling_factor)
        ac = alphas_cumprod(cfg.scheduler)
        e = cfg.ensemble_size
        ts = torch.tensor([cfg.t_c] * e + [cfg.t_f] * e, dtype=torch.long)
        self.register_buffer("timesteps", ts, persistent=False)
        # exactly diffusers' add_noise: alphas_cumprod[t] ** 0.5 and (1 - alphas_cumprod[t]) ** 0.5, float32
        self.register_buffer("sqrt_a", (ac[ts] ** 0.5).reshape(-1, 1, 1, 1), persistent=False)
        self.register_buffer("sqrt_1ma", ((1 - ac[ts]) ** 0.5).reshape(-1, 1, 1, 1), persistent=False)
        if not (cfg.up_ft_index_c < cfg.up_ft_index_f):
            raise ValueError("the coarse pass must stop at an earlier up block than the fine pass")

    def encode_moments(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """VAE posterior mean and std (diffusers' DiagonalGaussianDistribution, logvar clamped to [-30, 20])."""
        h = self.vae_encoder(image)
        if self.quant_conv is not None:
            h = self.quant_conv(h)
        mean, logvar = torch.chunk(h, 2, dim=1)
        logvar = torch.clamp(logvar, -30.0, 20.0)
        return mean, torch.exp(0.5 * logvar)

    def forward(
        self,
        image: torch.Tensor,
        prompt_embeds: torch.Tensor,
        noise: torch.Tensor,
        posterior_noise: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.cfg.ensemble_size
        mean, std = self.encode_moments(image)  # [1,4,h,w] once
        latents = (mean + std * posterior_noise) * self.scaling_factor  # [2E,4,h,w]
        x = self.sqrt_a * latents + self.sqrt_1ma * noise
        ctx = prompt_embeds.expand(2 * e, -1, -1)
        return self.unet_features(x, ctx)

    def unet_features(self, sample: torch.Tensor, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Partial UNet forward (diffusers' UNet2DConditionModel.forward, cut after the requested up blocks)."""
        unet = self.unet
        e = self.cfg.ensemble_size
        ic, i_f = self.cfg.up_ft_index_c, self.cfg.up_ft_index_f
        up_factor = 2**unet.num_upsamplers
        forward_upsample_size = any(int(s) % up_factor != 0 for s in sample.shape[-2:])
        upsample_size = None
        emb = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=self.timesteps), None)
        h = unet.conv_in(sample)
        res: tuple[torch.Tensor, ...] = (h,)
        for blk in unet.down_blocks:
            if getattr(blk, "has_cross_attention", False):
                h, r = blk(hidden_states=h, temb=emb, encoder_hidden_states=ctx)
            else:
                h, r = blk(hidden_states=h, temb=emb)
            res += r
        h = unet.mid_block(h, emb, encoder_hidden_states=ctx)
        feat_c = None
        for i, blk in enumerate(unet.up_blocks):
            if i > i_f:
                break
            if i == ic + 1:  # the coarse pass is done: continue with the fine half of the batch only
                h, emb, ctx = h[e:], emb[e:], ctx[e:]
                res = tuple(r[e:] for r in res)
            is_final = i == len(unet.up_blocks) - 1
            n = len(blk.resnets)
            rs, res = res[-n:], res[:-n]
            if not is_final and forward_upsample_size:
                upsample_size = res[-1].shape[2:]
            if getattr(blk, "has_cross_attention", False):
                h = blk(hidden_states=h, temb=emb, res_hidden_states_tuple=rs, encoder_hidden_states=ctx,
                        upsample_size=upsample_size)
            else:
                h = blk(hidden_states=h, temb=emb, res_hidden_states_tuple=rs, upsample_size=upsample_size)
            if i == ic:
                feat_c = h[:e].mean(0, keepdim=True)
        feat_f = h.mean(0, keepdim=True)
        assert feat_c is not None
        return feat_c, feat_f


def reference_dift(
    unet: UNet2DConditionModel,
    vae: AutoencoderKL,
    cfg: DiftConfig,
    image: torch.Tensor,
    prompt_embeds: torch.Tensor,
    noise: torch.Tensor,
    posterior_noise: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The official computation, pass by pass (for tests): image repeated E times, VAE-encoded per copy,
    ``DDIMScheduler.add_noise``, the FULL diffusers UNet forward with a hook on the requested up block."""
    sched = DDIMScheduler(**cfg.scheduler)
    e = cfg.ensemble_size
    outs = []
    for p, (t, idx) in enumerate([(cfg.t_c, cfg.up_ft_index_c), (cfg.t_f, cfg.up_ft_index_f)]):
        img = image.repeat(e, 1, 1, 1)
        dist = vae.encode(img).latent_dist
        lat = (dist.mean + dist.std * posterior_noise[p * e:(p + 1) * e]) * vae.config.scaling_factor
        tt = torch.tensor(t, dtype=torch.long)
        noisy = sched.add_noise(lat, noise[p * e:(p + 1) * e], tt)
        got: dict[str, torch.Tensor] = {}
        hook = unet.up_blocks[idx].register_forward_hook(lambda m, a, o: got.__setitem__("ft", o))
        try:
            unet(noisy, tt, encoder_hidden_states=prompt_embeds.repeat(e, 1, 1))
        finally:
            hook.remove()
        outs.append(got["ft"].mean(0, keepdim=True))
    return outs[0], outs[1]


def text_embedding(sd_dir: str, prompt: str = "") -> torch.Tensor:
    """Prompt embedding as diffusers' ``encode_prompt`` (no CFG, no clip-skip): CLIP tokenizer padded to
    ``max_length`` (77), text encoder's last hidden state. Reads ``<sd_dir>/tokenizer`` and
    ``<sd_dir>/text_encoder`` from local files only."""
    from transformers import CLIPTextModel, CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(sd_dir, subfolder="tokenizer", local_files_only=True)
    enc = CLIPTextModel.from_pretrained(sd_dir, subfolder="text_encoder", local_files_only=True).eval()
    ids = tok(prompt, padding="max_length", max_length=tok.model_max_length, truncation=True,
              return_tensors="pt").input_ids
    mask = None
    if getattr(enc.config, "use_attention_mask", False):
        mask = torch.ones_like(ids)
    with torch.no_grad():
        return enc(ids, attention_mask=mask)[0].float()
