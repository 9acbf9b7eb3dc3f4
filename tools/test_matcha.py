"""Tests of the MATCHA Python side (tools/matcha, tools/export_matcha.py). Run:
    $MATCHA_CACHE/venv/bin/python -m pytest tools/test_matcha.py -q
Everything uses random weights; the tiny export+ORT parity test takes ~30 s on 2 cores.
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from matcha.config import DinoConfig, FusionConfig, full_config, tiny_config  # noqa: E402
from matcha.dift import Dift, build_unet, build_vae, reference_dift  # noqa: E402
from matcha.dinov2 import DinoV2, padded_size  # noqa: E402
from matcha.fusion import FusionNet, JointBlock  # noqa: E402
from matcha.merge import concat_feature, merge, merged_dim, sample_descriptors  # noqa: E402
from matcha.stages import round_up_32, stage_shapes  # noqa: E402
from matcha.weights import fusion_state_dict, random_fusion  # noqa: E402

torch.set_num_threads(1)


def _shape_str(t: torch.Tensor) -> str:
    return "x".join(map(str, t.shape)) or "()"


def test_fusion_state_dict_equals_official_key_list():
    expected = [tuple(line.split()) for line in (HERE / "matcha" / "expected_fusion_state_dict.txt").read_text()
                .splitlines() if line and not line.startswith("#")]
    with torch.device("meta"):
        m = FusionNet(FusionConfig())
    got = [(k, _shape_str(v)) for k, v in m.state_dict().items()]
    assert got == expected
    n = sum(p.numel() for p in m.parameters())
    assert 110e6 < n < 115e6  # paper/notes: ~111 M


def test_fusion_loads_checkpoint_with_prefixes_strictly():
    cfg = tiny_config()
    src = random_fusion(cfg, seed=3)
    raw = {f"module.{k}": v for k, v in src.state_dict().items()}
    raw["module.dift.model.unet.conv_in.weight"] = torch.zeros(1)  # a full-Matcha checkpoint's extra keys
    raw["dinov2.model.cls_token"] = torch.zeros(1)
    dst = FusionNet(cfg.fusion)
    dst.load_state_dict(fusion_state_dict(raw), strict=True)
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), k
    bad = fusion_state_dict(raw)
    bad.pop("dec_norm_c.weight")
    with pytest.raises(RuntimeError):
        FusionNet(cfg.fusion).load_state_dict(bad, strict=True)


def _dino_official_keys(depth: int) -> list[str]:
    keys = ["cls_token", "pos_embed", "mask_token", "patch_embed.proj.weight", "patch_embed.proj.bias"]
    for i in range(depth):
        for n in ("norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
                  "attn.proj.bias", "ls1.gamma", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
                  "mlp.fc2.weight", "mlp.fc2.bias", "ls2.gamma"):
            keys.append(f"blocks.{i}.{n}")
    return keys + ["norm.weight", "norm.bias"]


def test_dinov2_vitl14_keys_and_shapes():
    with torch.device("meta"):
        m = DinoV2(DinoConfig())
    sd = m.state_dict()
    assert sorted(sd) == sorted(_dino_official_keys(24))
    assert tuple(sd["pos_embed"].shape) == (1, 1370, 1024)
    assert tuple(sd["patch_embed.proj.weight"].shape) == (1024, 3, 14, 14)
    assert tuple(sd["blocks.0.mlp.fc1.weight"].shape) == (4096, 1024)
    assert 300e6 < sum(p.numel() for p in m.parameters()) < 310e6


def test_dinov2_pos_embed_interpolation_matches_official_formula():
    cfg = DinoConfig(embed_dim=8, depth=1, num_heads=2, img_size=518)
    m = DinoV2(cfg).random_init(1)
    assert m.interpolate_pos_encoding(37, 37) is m.pos_embed  # trained grid: untouched
    gh, gw = 35, 46  # 490 x 644 input
    pe = m.interpolate_pos_encoding(gh, gw)
    patch = m.pos_embed[:, 1:].reshape(1, 37, 37, 8).permute(0, 3, 1, 2)
    ref = F.interpolate(patch, scale_factor=((gh + 0.1) / 37, (gw + 0.1) / 37), mode="bicubic")
    assert ref.shape[-2:] == (gh, gw)
    assert torch.allclose(pe[:, 1:], ref.permute(0, 2, 3, 1).reshape(1, -1, 8))
    assert torch.equal(pe[:, :1], m.pos_embed[:, :1])
    # frozen (export) path == dynamic path
    img = torch.rand(1, 3, 480, 640)
    a = m(img)
    m.freeze_pos_embed(*(s // 14 for s in padded_size(480, 640)))
    assert torch.allclose(m(img), a, atol=1e-6)
    assert a.shape == (1, 8, 35, 46)
    assert torch.allclose(a.norm(dim=1), torch.ones(1, 35, 46), atol=1e-5)


def test_padded_and_rounded_sizes():
    assert padded_size(512, 512) == (518, 518)
    assert padded_size(518, 14) == (518, 14)
    assert padded_size(480, 640) == (490, 644)
    assert round_up_32(480) == 480 and round_up_32(481) == 512 and round_up_32(500) == 512


@pytest.mark.parametrize("hw", [(64, 64), (96, 160)])
def test_dift_batched_partial_unet_equals_official_pass_by_pass(hw):
    torch.manual_seed(0)
    cfg = tiny_config(ensemble_size=3)
    unet, vae = build_unet(cfg.dift.unet).eval(), build_vae(cfg.dift.vae).eval()
    d = Dift(cfg.dift, unet, vae).eval()
    h, w = hw
    e = cfg.dift.ensemble_size
    img = torch.rand(1, 3, h, w)
    pe = torch.randn(1, 77, cfg.dift.unet["cross_attention_dim"])
    n, pn = torch.randn(2 * e, 4, h // 8, w // 8), torch.randn(2 * e, 4, h // 8, w // 8)
    with torch.no_grad():
        fc, ff = d(img, pe, n, pn)
        rc, rf = reference_dift(unet, vae, cfg.dift, img, pe, n, pn)
    assert fc.shape == (1, cfg.fusion.ft_dim_c, h // 16, w // 16)
    assert ff.shape == (1, cfg.fusion.ft_dim_f, h // 8, w // 8)
    assert torch.allclose(fc, rc, atol=1e-5) and torch.allclose(ff, rf, atol=1e-5)
    # the noise matters (i.e. it really is an input) and the passes use their own rows
    with torch.no_grad():
        fc2, ff2 = d(img, pe, torch.cat([n[:e], -n[e:]]), pn)
    assert torch.equal(fc2, fc) and not torch.allclose(ff2, ff)


def test_ddim_coefficients_sd21():
    from matcha.dift import alphas_cumprod

    ac = alphas_cumprod(full_config().dift.scheduler)
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float32) ** 2
    assert torch.allclose(ac, torch.cumprod(1 - betas, 0))
    d = Dift(tiny_config(ensemble_size=2).dift, build_unet(tiny_config().dift.unet), build_vae(tiny_config().dift.vae))
    assert torch.allclose(d.sqrt_a.flatten(), torch.stack([ac[261], ac[261], ac[1], ac[1]]) ** 0.5)


def _joint_block_functional(blk: JointBlock, x, y, heads):
    """Independent statement of the official DecoderBlockJointP forward with torch's SDPA."""

    def mha_self(attn, t):
        q, k, v = F.linear(t, attn.qkv.weight, attn.qkv.bias).chunk(3, -1)
        sp = lambda z: z.unflatten(-1, (heads, -1)).transpose(1, 2)  # noqa: E731
        o = F.scaled_dot_product_attention(sp(q), sp(k), sp(v)).transpose(1, 2).flatten(2)
        return attn.proj(o)

    def mha_cross(attn, qin, mem):
        sp = lambda z: z.unflatten(-1, (heads, -1)).transpose(1, 2)  # noqa: E731
        o = F.scaled_dot_product_attention(sp(attn.projq(qin)), sp(attn.projk(mem)), sp(attn.projv(mem)))
        return attn.proj(o.transpose(1, 2).flatten(2))

    xn, yn = blk.normx1(x), blk.normy1(y)
    x_ = x + mha_self(blk.attnx, xn)
    y_ = y + mha_self(blk.attny, yn)
    x_ = x_ + mha_cross(blk.cross_attnx, blk.normx2(x_), yn)
    y_ = y_ + mha_cross(blk.cross_attny, blk.normy2(y_), xn)
    x_ = x_ + blk.mlpx.fc2(F.gelu(blk.mlpx.fc1(blk.normx3(x_))))
    y_ = y_ + blk.mlpy.fc2(F.gelu(blk.mlpy.fc1(blk.normy3(y_))))
    return x_, y_


def test_joint_block_matches_functional_statement():
    torch.manual_seed(0)
    blk = JointBlock(32, 4, 4.0, 1e-6).eval()
    for p in blk.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x, y = torch.randn(2, 10, 32), torch.randn(2, 10, 32)
    with torch.no_grad():
        a = blk(x, y)
        b = _joint_block_functional(blk, x, y, 4)
    assert torch.allclose(a[0], b[0], atol=1e-5) and torch.allclose(a[1], b[1], atol=1e-5)


def test_merge_dimensions_and_channel_order():
    assert merged_dim("geometric", 256, 768, 1024) == 1024
    assert merged_dim("semantic", 256, 768, 1024) == 1280
    assert merged_dim("light", 256, 768, 1024) == 512
    assert full_config("geometric").descriptor_dim() == 1024
    assert full_config("semantic").descriptor_dim() == 1280
    assert full_config("light").descriptor_dim() == 512
    torch.manual_seed(0)
    f_g = F.normalize(torch.randn(1, 256, 8, 8), dim=1)
    f_s = F.normalize(torch.randn(1, 768, 8, 8), dim=1)
    dino = F.normalize(torch.randn(1, 1024, 5, 5), dim=1)
    for mode, dim in (("geometric", 1024), ("semantic", 1280), ("light", 512)):
        fm = merge(mode, f_s, f_g, dino)
        assert fm.shape == (1, dim, 8, 8)
        assert torch.allclose(fm.norm(dim=1), torch.ones(1, 8, 8), atol=1e-5)
    # geometric: [F_g | F_s[::3]] normalised, then [that | up(DINO)[::2]] normalised
    fm = merge("geometric", f_s, f_g, dino)
    inner = torch.cat([f_g, f_s[:, ::3]], 1)
    inner = inner / inner.norm(dim=1, keepdim=True)
    up = F.interpolate(dino, size=(8, 8), mode="bilinear", align_corners=False)
    up = up / up.norm(dim=1, keepdim=True)
    ref = torch.cat([inner, up[:, ::2]], 1)
    ref = ref / ref.norm(dim=1, keepdim=True)
    assert torch.allclose(fm, ref, atol=1e-6)
    assert torch.equal(concat_feature(feat_c=f_s, feat_f=f_g), merge("light", f_s, f_g, None))


def test_sample_descriptors_is_align_corners_bilinear():
    torch.manual_seed(0)
    fmap = torch.randn(1, 6, 12, 20)
    h, w = 96, 160
    kp = torch.tensor([[[0.0, 0.0], [159.0, 95.0], [37.3, 51.9], [100.5, 3.25]]])
    got = sample_descriptors(fmap, kp, w, h)[0]
    for i, (x, y) in enumerate(kp[0].tolist()):
        fx, fy = x * (20 - 1) / (w - 1), y * (12 - 1) / (h - 1)
        x0, y0 = math.floor(fx), math.floor(fy)
        x1, y1 = min(x0 + 1, 19), min(y0 + 1, 11)
        ax, ay = fx - x0, fy - y0
        v = ((1 - ax) * (1 - ay) * fmap[0, :, y0, x0] + ax * (1 - ay) * fmap[0, :, y0, x1]
             + (1 - ax) * ay * fmap[0, :, y1, x0] + ax * ay * fmap[0, :, y1, x1])
        assert torch.allclose(got[i], v / v.norm(), atol=1e-5)


def test_stage_shapes_full_geometric_512():
    s = stage_shapes(full_config(), 512, 512)
    assert s["dift"]["outputs"] == [["feat_c", [1, 1280, 32, 32]], ["feat_f", [1, 640, 64, 64]]]
    assert s["dift"]["inputs"][2] == ["noise", [16, 4, 64, 64]]
    assert s["dinov2"]["outputs"] == [["dino", [1, 1024, 37, 37]]]
    assert s["fusion"]["outputs"][0] == ["descriptors", [1, 1024, 64, 64]]
    assert "dinov2" not in stage_shapes(full_config("light"), 480, 640)


@pytest.mark.parametrize("mode", ["geometric", "light"])
def test_tiny_export_onnxruntime_parity(tmp_path, mode):
    import export_matcha

    out = tmp_path / mode
    rc = export_matcha.main(["--random-init", "--config", "tiny", "--mode", mode, "--height", "96",
                             "--width", "160", "--out", str(out), "--fixtures"])
    assert rc == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["descriptor_dim"] == {"geometric": 64, "light": 32}[mode]
    assert man["preprocessing"]["mean"] is None and man["preprocessing"]["range"] == [0.0, 1.0]
    assert man["dift"]["timesteps"] == [261, 1] and man["dift"]["up_ft_index"] == [1, 2]
    for st in man["stages"].values():
        from matcha.weights import sha256_file

        assert sha256_file(str(out / st["file"])) == st["sha256"]
    assert ("dinov2" in man["stages"]) == (mode != "light")
    par = json.loads((out / "parity.json").read_text())
    for stage, d in par["max_abs_diff"].items():
        for k, v in d.items():
            assert v < 1e-4, (stage, k, v)
    ref = np.load(out / "ref" / "keypoint_descriptors.npy")
    assert ref.shape == (1, 32, man["descriptor_dim"])
    assert np.allclose(np.linalg.norm(ref, axis=-1), 1.0, atol=1e-5)
    # a second run with the same inputs is a cache hit (no re-export)
    mtime = (out / "dift.onnx").stat().st_mtime
    assert export_matcha.main(["--random-init", "--config", "tiny", "--mode", mode, "--height", "96",
                               "--width", "160", "--out", str(out), "--fixtures"]) == 0
    assert (out / "dift.onnx").stat().st_mtime == mtime


@pytest.mark.skipif(os.environ.get("MATCHA_SKIP_FULL") == "1", reason="MATCHA_SKIP_FULL=1")
def test_full_size_graphs_export_with_shapes_and_parity(tmp_path):
    """The FULL configuration (SD 2.1 UNet/VAE, DINOv2 ViT-L/14, 8-block fusion), random weights, exported at
    256x256 with ensemble 1 (tracing cost scales with pixels x ensemble; the graphs are the same), run in
    ONNX Runtime and compared with PyTorch. ~6 min, ~10 GB RAM, ~5 GB in /tmp on 2 cores. Skip with
    MATCHA_SKIP_FULL=1. The 512x512 / ensemble-8 export takes ~11 min here (tools/export_matcha.py)."""
    import export_matcha

    out = tmp_path / "full"
    assert export_matcha.main(["--random-init", "--config", "full", "--height", "256", "--width", "256",
                               "--ensemble", "1", "--out", str(out), "--fixtures"]) == 0
    man = json.loads((out / "manifest.json").read_text())
    outs = {o["name"]: o["shape"] for st in man["stages"].values() for o in st["outputs"]}
    assert outs["feat_c"] == [1, 1280, 16, 16] and outs["feat_f"] == [1, 640, 32, 32]
    assert outs["dino"] == [1, 1024, 19, 19]
    assert outs["descriptors"] == [1, 1024, 32, 32] and outs["f_s"] == [1, 768, 32, 32]
    assert man["stages"]["dift"]["external_data"][0]["file"] == "dift.onnx.data"
    par = json.loads((out / "parity.json").read_text())
    assert par["shapes_match_manifest"]
    for stage, d in par["max_abs_diff"].items():
        for k, v in d.items():
            assert v < 1e-4, (stage, k, v)


def test_export_from_local_weight_files(tmp_path):
    """The real-weights path (diffusers directory, DINOv2 .pth, MATCHA .pth with a DDP prefix), exercised
    with tiny random weights saved in the official formats."""
    import export_matcha
    from diffusers import DDIMScheduler

    cfg = tiny_config()
    torch.manual_seed(5)
    sd = tmp_path / "sd21"
    build_unet(cfg.dift.unet).save_pretrained(sd / "unet")
    build_vae(cfg.dift.vae).save_pretrained(sd / "vae")
    DDIMScheduler(**cfg.dift.scheduler).save_pretrained(sd / "scheduler")
    dino = DinoV2(cfg.dino).random_init(5)
    torch.save(dino.state_dict(), tmp_path / "dinov2.pth")
    fusion = random_fusion(cfg, 5)
    torch.save({f"module.{k}": v for k, v in fusion.state_dict().items()}, tmp_path / "matcha.pth")
    np.save(tmp_path / "prompt.npy", np.random.default_rng(0).standard_normal((1, 77, 32)).astype(np.float32))
    out = tmp_path / "out"
    args = ["--config", "tiny", "--height", "64", "--width", "96", "--sd21", str(sd), "--dinov2",
            str(tmp_path / "dinov2.pth"), "--matcha", str(tmp_path / "matcha.pth"), "--prompt-embeds",
            str(tmp_path / "prompt.npy"), "--out", str(out), "--fixtures"]
    assert export_matcha.main(args) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert set(man["weights"]) == {"matcha", "dinov2", "sd21"}
    assert any(k.startswith("unet/") for k in man["weights"]["sd21"])
    par = json.loads((out / "parity.json").read_text())
    assert all(v < 1e-4 for d in par["max_abs_diff"].values() for v in d.values())
    # the exported fusion really carries the file's weights: F_g from the engine equals our module's
    ref = {k: np.load(out / "ref" / f"{k}.npy") for k in ("feat_c", "feat_f", "f_g")}
    with torch.no_grad():
        _, f_g = fusion(torch.from_numpy(ref["feat_c"]), torch.from_numpy(ref["feat_f"]))
    assert np.abs(f_g.numpy() - ref["f_g"]).max() < 1e-5
    # a SD directory whose config is not the expected one is refused
    bad = dict(cfg.dift.unet, cross_attention_dim=48)
    build_unet(bad).save_pretrained(tmp_path / "bad" / "unet")
    build_vae(cfg.dift.vae).save_pretrained(tmp_path / "bad" / "vae")
    from matcha.weights import load_sd21

    with pytest.raises(ValueError, match="cross_attention_dim"):
        load_sd21(cfg, str(tmp_path / "bad"))
