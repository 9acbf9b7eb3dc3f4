"""MATCHA descriptor engines (Python side): model definitions that load the official weights, ONNX export
helpers and parity fixtures.

Modules:
- ``config``  -- full-size and tiny (test) configurations of every network.
- ``dinov2``  -- DINOv2 ViT (official ``dinov2_vit*14_pretrain.pth`` key names) -> L2-normalised patch tokens.
- ``dift``    -- DIFT on Stable Diffusion 2.1 (diffusers UNet2DConditionModel / AutoencoderKL / DDIM schedule),
                 both passes (t=261/up_ft 1 and t=1/up_ft 2) batched in one UNet call, noise as an input.
- ``fusion``  -- MATCHA's attention fusion network (state_dict keys equal the official checkpoint's).
- ``merge``   -- merging F_s / F_g / DINOv2 into F_m (geometric, semantic, light) and keypoint sampling.
- ``stages``  -- the exported stage modules (dift, dinov2, fusion+merge, sample).
- ``weights`` -- loading local weight files (no download anywhere).

Everything here runs on CPU; nothing downloads. See ``tools/export_matcha.py`` for the command-line entry.
"""
