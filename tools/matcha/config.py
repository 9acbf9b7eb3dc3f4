"""Configurations of the MATCHA networks: ``full`` (the released model: DINOv2 ViT-L/14, SD 2.1, fusion
D=512 k=8) and ``tiny`` (same code paths, small widths, for CI fixtures and fast tests).

Every number of the full configuration comes from the official code (nv-dvl/matcha @ 4277633:
``matcha/model/matcha.py`` defaults, ``third_party/dinov2`` ``vit_large(img_size=518, patch_size=14,
init_values=1.0, block_chunks=0)``, ``third_party/dift/dift_sd.py``) and from the published SD 2.1
``unet/config.json``, ``vae/config.json`` and ``scheduler/scheduler_config.json``.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

# ---------------------------------------------------------------------------------------------------------
# Stable Diffusion 2.1 (stabilityai/stable-diffusion-2-1, 768-v). Only the keys that change the module
# structure or the forward pass are listed; diffusers fills the rest with its defaults.
SD21_UNET: dict[str, Any] = {
    "act_fn": "silu",
    "attention_head_dim": [5, 10, 20, 20],
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 1024,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "sample_size": 96,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "upcast_attention": True,
    "use_linear_projection": True,
}
SD21_VAE: dict[str, Any] = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 768,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "scaling_factor": 0.18215,
}
SD21_SCHEDULER: dict[str, Any] = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "trained_betas": None,
}
SD21_TEXT_LEN = 77  # CLIP tokenizer max length: the null prompt embedding is [1, 77, cross_attention_dim]

TINY_UNET: dict[str, Any] = dict(
    SD21_UNET,
    attention_head_dim=[2, 2, 4, 4],
    block_out_channels=[16, 32, 64, 64],
    cross_attention_dim=32,
    layers_per_block=1,
    norm_num_groups=8,
    sample_size=16,
)
TINY_VAE: dict[str, Any] = dict(
    SD21_VAE,
    block_out_channels=[8, 8, 16, 16],
    layers_per_block=1,
    norm_num_groups=4,
    sample_size=64,
)


@dataclass
class DinoConfig:
    """DINOv2 ViT. Defaults: ViT-L/14 without registers, trained at 518x518 (37x37 patch grid)."""

    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    patch_size: int = 14
    img_size: int = 518
    init_values: float | None = 1.0  # LayerScale present (ls1.gamma / ls2.gamma)


DINO_PRESETS = {
    "vits14": DinoConfig(embed_dim=384, depth=12, num_heads=6),
    "vitb14": DinoConfig(embed_dim=768, depth=12, num_heads=12),
    "vitl14": DinoConfig(),
    "vitg14": DinoConfig(embed_dim=1536, depth=40, num_heads=24),
}


@dataclass
class FusionConfig:
    """AttentionFusionNet hyper-parameters (defaults = the released model)."""

    ft_dim_c: int = 1280  # DIFT semantic map channels (UNet up block 1)
    ft_dim_f: int = 640  # DIFT geometric map channels (UNet up block 2)
    out_dim_c: int = 768  # F_s
    out_dim_f: int = 256  # F_g
    hidden_dim: int = 512
    patch_size_c: int = 2
    patch_size_f: int = 2
    dec_depth: int = 8
    dec_num_heads: int = 8
    mlp_ratio: float = 4.0
    head_channels: int = 1024  # width of the conv heads (hard-coded 1024 in the official code)
    ln_eps: float = 1e-6


@dataclass
class DiftConfig:
    """DIFT settings (official: t=261 / up_ft_index=1 for F_h, t=1 / up_ft_index=2 for F_l, 8 draws)."""

    t_c: int = 261
    up_ft_index_c: int = 1
    t_f: int = 1
    up_ft_index_f: int = 2
    ensemble_size: int = 8
    unet: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(SD21_UNET))
    vae: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(SD21_VAE))
    scheduler: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(SD21_SCHEDULER))
    text_len: int = SD21_TEXT_LEN


@dataclass
class MatchaConfig:
    """Everything that defines one MATCHA descriptor engine set."""

    name: str = "full"
    mode: str = "geometric"  # geometric (F_m 1024) | semantic (1280) | light (no DINOv2, 512)
    dino: DinoConfig = field(default_factory=DinoConfig)
    dift: DiftConfig = field(default_factory=DiftConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (for manifest.json)."""
        return asdict(self)

    @property
    def uses_dino(self) -> bool:
        """MATCHA-Light has no DINOv2 branch."""
        return self.mode != "light"

    def descriptor_dim(self) -> int:
        """Channels of F_m for this mode (see ``merge.merged_dim``)."""
        from .merge import merged_dim

        return merged_dim(self.mode, self.fusion.out_dim_f, self.fusion.out_dim_c, self.dino.embed_dim)


MODES = ("geometric", "semantic", "light")


def full_config(mode: str = "geometric", ensemble_size: int = 8, dino: str = "vitl14") -> MatchaConfig:
    """The released MATCHA configuration."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    cfg = MatchaConfig(name="full", mode=mode, dino=copy.deepcopy(DINO_PRESETS[dino]))
    cfg.dift.ensemble_size = ensemble_size
    return cfg


def tiny_config(mode: str = "geometric", ensemble_size: int = 2) -> MatchaConfig:
    """Same structure, tiny widths: random-initialised CI fixtures. Channel ratios mirror the full model
    (F_s = 3 x F_g so the merge keeps every 3rd channel; DINOv2 width = 4 x F_g so it keeps every 2nd)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    unet = copy.deepcopy(TINY_UNET)
    rev = list(reversed(unet["block_out_channels"]))
    return MatchaConfig(
        name="tiny",
        mode=mode,
        dino=DinoConfig(embed_dim=64, depth=2, num_heads=2, img_size=70),
        dift=DiftConfig(ensemble_size=ensemble_size, unet=unet, vae=copy.deepcopy(TINY_VAE)),
        fusion=FusionConfig(
            ft_dim_c=rev[1],
            ft_dim_f=rev[2],
            out_dim_c=48,
            out_dim_f=16,
            hidden_dim=32,
            dec_depth=2,
            dec_num_heads=2,
            head_channels=32,
        ),
    )


def make_config(name: str, mode: str = "geometric", ensemble_size: int | None = None) -> MatchaConfig:
    """``full`` or ``tiny`` by name."""
    if name == "full":
        return full_config(mode, 8 if ensemble_size is None else ensemble_size)
    if name == "tiny":
        return tiny_config(mode, 2 if ensemble_size is None else ensemble_size)
    raise ValueError(f"unknown config {name!r} (full | tiny)")
