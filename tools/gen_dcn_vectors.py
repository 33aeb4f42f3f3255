#!/opt/torchenv/bin/python
"""Reference vectors for deformable convolution, written to Tests/vectors/dcn/*.npz.

Run from the repository root with the torch venv (torch is needed only here, never by the tests):

    /opt/torchenv/bin/python tools/gen_dcn_vectors.py

The OpenVINO-spelled cases are computed by tools/gen_openvino_dcn_vectors.py, which this script runs
under the system python3 (OpenVINO lives there, not in the torch venv).

Key layout of every .npz (NCHW, ONNX DeformConv conventions):
    x            float32 [N, C, H, W]
    w            float32 [Cout, C/group, kH, kW]
    offset       float32 [N, offset_group*2*kH*kW, Hout, Wout]; channel g*2*kH*kW + 2*(i*kW+j) is dy of
                 tap (i, j) in offset group g, the next channel is dx
    mask         float32 [N, offset_group*kH*kW, Hout, Wout]   (only when the case has a mask)
    b            float32 [Cout]                                 (only when the case has a bias)
    y            float32 [N, Cout, Hout, Wout]                  expected output
    strides      int64 [2]  (h, w)
    pads         int64 [4]  (top, left, bottom, right)
    dilations    int64 [2]  (h, w)
    group        int64 0-d
    offset_group int64 0-d
    spelling     0-d unicode: "onnx" | "mmcv_modulated" | "mmcv" | "openvino"
    reference    0-d unicode: who computed y (see below)

How y is computed ("reference"):
    "torchvision-f64"  torchvision.ops.deform_conv2d on the float32 inputs promoted to float64, the result
                       rounded to float32. Asymmetric pads: torchvision pads symmetrically only, so the
                       input is zero-padded explicitly by (top, left, bottom, right) and the op runs with
                       padding 0. This is exact for the zero-corner border rule, because a corner that
                       falls in the added band reads 0 either way.
    "numpy-f64"        cases with NaN/Inf offsets (torchvision reads out of bounds on NaN): the NumPy
                       re-implementation of the ONNX spec below, in float64, where a non-finite sample
                       position reads 0. The script checks that this re-implementation matches torchvision
                       on every finite case, and that torchvision, given the same case with the non-finite
                       offsets replaced by +-1e9 (a sample that also reads 0), agrees too.
    "openvino-cpu-f32" spelling "openvino": OpenVINO opset8 deformable_convolution with
                       bilinear_interpolation_pad=False (what its ONNX frontend builds for
                       org.openvinotoolkit DeformableConv2D), compiled on CPU with INFERENCE_PRECISION_HINT
                       f32; float32 arithmetic throughout. Checked against the NumPy re-implementation of
                       that border rule (border="openvino" below).
    "numpy-f64-openvino-border"  openvino cases with NaN/Inf offsets: OpenVINO returns NaN or crashes on
                       those, so y is the NumPy re-implementation of OpenVINO's rule, non-finite reading 0.

Border rules (sample position (py, px) on an H x W map):
    zero (ONNX, torchvision, onnxruntime, mmcv): bilinear over the four corners floor/floor+1, every corner
        outside the map reads 0. So py in (-1, 0) gets part of row 0, py <= -1 or py >= H gets nothing.
    openvino (bilinear_interpolation_pad=False, measured on OpenVINO 2026.4 CPU): the sample reads 0
        unless 0 <= py < H and 0 <= px < W; inside, the upper corner is clamped to the last row/column,
        so py in (H-1, H) reads row H-1 in full, and py in (-1, 0) reads nothing.

Every case uses a fixed seed derived from its name, so reruns write identical files.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO, "tests", "vectors", "dcn")
OPENVINO_HELPER = os.path.join(REPO, "tools", "gen_openvino_dcn_vectors.py")
FAR = 1e9  # stands in for a non-finite offset when asking torchvision / OpenVINO


# ---------------------------------------------------------------------------------------------------
# NumPy re-implementation of DeformConv (float64), both border rules
# ---------------------------------------------------------------------------------------------------

def output_size(size: int, k: int, stride: int, pad_begin: int, pad_end: int, dilation: int) -> int:
    return (size + pad_begin + pad_end - ((k - 1) * dilation + 1)) // stride + 1


def _bilinear(img: np.ndarray, py: np.ndarray, px: np.ndarray, border: str) -> np.ndarray:
    """Samples img [N, Cg, H, W] at positions py, px [N, Ho, Wo]; returns [N, Cg, Ho, Wo]."""
    n, _, h, w = img.shape
    finite = np.isfinite(py) & np.isfinite(px)
    if border == "zero":
        inside = finite & (py > -1) & (py < h) & (px > -1) & (px < w)
    elif border == "openvino":
        inside = finite & (py >= 0) & (py < h) & (px >= 0) & (px < w)
    else:
        raise ValueError(border)
    py = np.where(inside, py, 0.0)
    px = np.where(inside, px, 0.0)
    y0 = np.floor(py)
    x0 = np.floor(px)
    ly = py - y0
    lx = px - x0
    y0 = y0.astype(np.int64)
    x0 = x0.astype(np.int64)
    if border == "zero":
        y1, x1 = y0 + 1, x0 + 1
    else:
        y1 = np.minimum(np.ceil(py).astype(np.int64), h - 1)
        x1 = np.minimum(np.ceil(px).astype(np.int64), w - 1)
    out = np.zeros((n, img.shape[1]) + py.shape[1:], dtype=np.float64)
    batch = np.arange(n)[:, None, None]
    for yy, xx, weight in ((y0, x0, (1 - ly) * (1 - lx)), (y0, x1, (1 - ly) * lx),
                           (y1, x0, ly * (1 - lx)), (y1, x1, ly * lx)):
        valid = inside & (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        # Advanced indices split by a slice put the broadcast dims first: [N, Ho, Wo, Cg].
        values = img[batch, :, np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]
        out += np.moveaxis(values, -1, 1) * np.where(valid, weight, 0.0)[:, None]
    return out


def deform_conv_numpy(x, w, offset, mask, b, strides, pads, dilations, group, offset_group,
                      border="zero") -> np.ndarray:
    x = x.astype(np.float64)
    w = w.astype(np.float64)
    offset = offset.astype(np.float64)
    n, c, h, wd = x.shape
    cout, c_per_group, kh, kw = w.shape
    sh, sw = strides
    pt, pl, pb, pr = pads
    dh, dw = dilations
    oh = output_size(h, kh, sh, pt, pb, dh)
    ow = output_size(wd, kw, sw, pl, pr, dw)
    assert offset.shape == (n, offset_group * 2 * kh * kw, oh, ow), offset.shape
    assert c == c_per_group * group and cout % group == 0 and c % offset_group == 0
    c_per_offset_group = c // offset_group
    base_y = (np.arange(oh) * sh - pt)[None, :, None].astype(np.float64)
    base_x = (np.arange(ow) * sw - pl)[None, None, :].astype(np.float64)
    columns = np.zeros((n, c, kh, kw, oh, ow), dtype=np.float64)
    for g in range(offset_group):
        channels = slice(g * c_per_offset_group, (g + 1) * c_per_offset_group)
        for i in range(kh):
            for j in range(kw):
                tap = i * kw + j
                dy = offset[:, g * 2 * kh * kw + 2 * tap]
                dx = offset[:, g * 2 * kh * kw + 2 * tap + 1]
                with np.errstate(invalid="ignore", over="ignore"):
                    sampled = _bilinear(x[:, channels], base_y + i * dh + dy, base_x + j * dw + dx, border)
                if mask is not None:
                    sampled *= mask[:, g * kh * kw + tap].astype(np.float64)[:, None]
                columns[:, channels, i, j] = sampled
    cout_per_group = cout // group
    y = np.zeros((n, cout, oh, ow), dtype=np.float64)
    for g in range(group):
        y[:, g * cout_per_group:(g + 1) * cout_per_group] = np.einsum(
            "nckhyx,ockh->noyx", columns[:, g * c_per_group:(g + 1) * c_per_group],
            w[g * cout_per_group:(g + 1) * cout_per_group])
    if b is not None:
        y += b.astype(np.float64)[None, :, None, None]
    return y


# ---------------------------------------------------------------------------------------------------
# torchvision
# ---------------------------------------------------------------------------------------------------

def deform_conv_torchvision(x, w, offset, mask, b, strides, pads, dilations) -> np.ndarray:
    import torch
    import torch.nn.functional as F
    import torchvision

    t = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a)).to(torch.float64)
    pt, pl, pb, pr = pads
    xt = t(x)
    if (pt, pl) == (pb, pr):
        padding = (pt, pl)
    else:
        xt = F.pad(xt, (pl, pr, pt, pb))  # explicit zero band; see the module docstring
        padding = (0, 0)
    with torch.no_grad():
        y = torchvision.ops.deform_conv2d(xt, t(offset), t(w), bias=t(b), stride=tuple(strides),
                                          padding=padding, dilation=tuple(dilations), mask=t(mask))
    return y.numpy()


def conv_torch(x, w, b, strides, pads, dilations, group) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    pt, pl, pb, pr = pads
    xt = F.pad(torch.from_numpy(x).double(), (pl, pr, pt, pb))
    bt = None if b is None else torch.from_numpy(b).double()
    return F.conv2d(xt, torch.from_numpy(w).double(), bt, stride=tuple(strides),
                    dilation=tuple(dilations), groups=group).numpy()


# ---------------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------------

@dataclass
class Case:
    name: str
    spelling: str = "onnx"
    n: int = 1
    c: int = 4
    h: int = 7
    w: int = 7
    cout: int = 4
    k: tuple = (3, 3)
    strides: tuple = (1, 1)
    pads: tuple = (1, 1, 1, 1)
    dilations: tuple = (1, 1)
    group: int = 1
    offset_group: int = 1
    mask: bool = True
    bias: bool = True
    offsets: str = "random"   # see make_offsets
    mask_range: tuple = (0.0, 1.0)


def onnx_cases() -> list[Case]:
    C = Case
    return [
        C("basic_3x3_mask_bias"),
        C("basic_3x3_no_mask_no_bias", mask=False, bias=False),
        C("mask_no_bias", bias=False),
        C("bias_no_mask", mask=False),
        C("no_pad", pads=(0, 0, 0, 0), h=8, w=6),
        C("group2", c=4, cout=6, group=2),
        C("group3_no_mask", c=6, cout=3, group=3, mask=False),
        C("depthwise", c=5, cout=5, group=5),
        C("depthwise_multiplier2", c=3, cout=6, group=3, offset_group=3),
        C("offset_group2", c=4, cout=3, offset_group=2),
        C("offset_group4_no_mask", c=8, cout=4, offset_group=4, mask=False),
        C("group2_offset_group4", c=8, cout=4, group=2, offset_group=4),
        C("group4_offset_group2", c=8, cout=8, group=4, offset_group=2),
        C("stride2", h=9, w=9, strides=(2, 2)),
        C("stride2x1", h=8, w=7, strides=(2, 1)),
        C("stride3_uneven", h=10, w=11, strides=(3, 3)),
        C("dilation2", h=9, w=9, dilations=(2, 2), pads=(2, 2, 2, 2)),
        C("dilation1x3", h=7, w=11, dilations=(1, 3), pads=(1, 3, 1, 3)),
        C("dilation2_stride2", h=11, w=10, dilations=(2, 2), strides=(2, 2), pads=(1, 1, 1, 1)),
        C("asym_pads_0120", pads=(0, 1, 2, 0)),
        C("asym_pads_2011_stride2", h=8, w=9, pads=(2, 0, 1, 1), strides=(2, 2)),
        C("asym_pads_3003", h=5, w=6, pads=(3, 0, 0, 3)),
        C("asym_pads_border", h=6, w=5, pads=(0, 2, 1, 0), offsets="border"),
        C("kernel_1x1", k=(1, 1), pads=(0, 0, 0, 0), c=6, cout=5),
        C("kernel_1x1_stride2", k=(1, 1), pads=(0, 0, 0, 0), strides=(2, 2), h=7, w=8),
        C("kernel_5x5", k=(5, 5), pads=(2, 2, 2, 2), h=8, w=8),
        C("kernel_5x5_no_pad", k=(5, 5), pads=(0, 0, 0, 0), h=9, w=7, mask=False),
        C("kernel_1x3", k=(1, 3), pads=(0, 1, 0, 1)),
        C("kernel_3x1", k=(3, 1), pads=(1, 0, 1, 0)),
        C("kernel_2x3", k=(2, 3), pads=(0, 1, 1, 1), h=6, w=8),
        C("kernel_3x2_offset_group2", k=(3, 2), pads=(1, 0, 1, 1), offset_group=2),
        C("batch3", n=3, c=3, cout=4, h=6, w=5),
        C("batch2_group2_offset_group2", n=2, c=4, cout=4, group=2, offset_group=2, strides=(2, 2), h=9, w=8),
        C("input_1x1", h=1, w=1),
        C("input_1x1_kernel1", h=1, w=1, k=(1, 1), pads=(0, 0, 0, 0)),
        C("input_1x7", h=1, w=7),
        C("input_6x1", h=6, w=1),
        C("input_2x2", h=2, w=2, c=3, cout=2),
        C("odd_5x11", h=5, w=11, c=3, cout=5),
        C("odd_13x3", h=13, w=3, c=3, cout=2, strides=(2, 1)),
        C("channels_17", c=17, cout=5, h=5, w=5),
        C("channels_16_out_3", c=16, cout=3, h=4, w=6, offset_group=2),
        C("zero_offsets", offsets="zero", mask=False),
        C("zero_offsets_with_mask", offsets="zero"),
        C("zero_offsets_no_mask_group2_stride2", offsets="zero", mask=False, c=4, cout=6, group=2,
          strides=(2, 2), h=9, w=8),
        C("zero_offsets_dilation2_asym", offsets="zero", mask=False, dilations=(2, 2), pads=(1, 2, 2, 1),
          h=8, w=8),
        C("integer_offsets", offsets="integer"),
        C("integer_offsets_offset_group2", offsets="integer", c=4, offset_group=2, mask=False),
        C("half_offsets", offsets="half"),
        C("far_outside", offsets="far"),
        C("far_outside_no_mask", offsets="far", mask=False, strides=(2, 2), h=9, w=9),
        C("border_band", offsets="border"),
        C("border_band_no_mask", offsets="border", mask=False, h=5, w=6),
        C("border_band_1x1_input", offsets="border", h=1, w=1),
        C("border_band_offset_group2", offsets="border", offset_group=2, c=4, k=(2, 3), pads=(1, 1, 0, 1)),
        C("large_offsets", offsets="large"),
        C("mask_wide_range", mask_range=(-1.0, 2.0)),
        C("nan_offsets", offsets="nan"),
        C("nan_x_only", offsets="nan_x"),
        C("inf_offsets", offsets="inf"),
        C("nonfinite_mixed_no_mask", offsets="nonfinite", mask=False, offset_group=2, c=4),
    ]


def mmcv_cases() -> list[Case]:
    C = Case
    modulated = [
        C("basic", spelling="mmcv_modulated"),
        C("no_bias", spelling="mmcv_modulated", bias=False),
        C("group2_deform_groups2", spelling="mmcv_modulated", c=4, cout=4, group=2, offset_group=2),
        C("deform_groups4_stride2", spelling="mmcv_modulated", c=8, cout=3, offset_group=4,
          strides=(2, 2), h=9, w=8),
        C("dilation2", spelling="mmcv_modulated", dilations=(2, 2), pads=(2, 2, 2, 2), h=8, w=9),
        C("pads_2x1", spelling="mmcv_modulated", pads=(2, 1, 2, 1), h=6, w=7),
        C("border_band", spelling="mmcv_modulated", offsets="border"),
        C("batch2_kernel_1x3", spelling="mmcv_modulated", n=2, k=(1, 3), pads=(0, 1, 0, 1)),
        C("nan_offsets", spelling="mmcv_modulated", offsets="nonfinite"),
    ]
    plain = [
        C("basic", spelling="mmcv", mask=False, bias=False),
        C("group2", spelling="mmcv", mask=False, bias=False, c=4, cout=6, group=2),
        C("deform_groups2_stride2", spelling="mmcv", mask=False, bias=False, offset_group=2,
          strides=(2, 2), h=9, w=9),
        C("pads_1x2_dilation2", spelling="mmcv", mask=False, bias=False, pads=(1, 2, 1, 2),
          dilations=(1, 2), h=7, w=9),
        C("kernel_5x5", spelling="mmcv", mask=False, bias=False, k=(5, 5), pads=(2, 2, 2, 2)),
        C("border_band", spelling="mmcv", mask=False, bias=False, offsets="border", h=5, w=5),
        C("inf_offsets", spelling="mmcv", mask=False, bias=False, offsets="inf"),
    ]
    return modulated + plain


def openvino_cases() -> list[Case]:
    def C(name, **kw):
        kw.setdefault("bias", False)  # DeformableConv2D has no bias input
        return Case(name, spelling="openvino", **kw)
    return [
        C("basic_mask"),
        C("no_mask", mask=False),
        C("group2", c=4, cout=6, group=2),
        C("deformable_groups2", c=4, cout=3, offset_group=2),
        C("group2_deformable_groups4_no_mask", c=8, cout=4, group=2, offset_group=4, mask=False),
        C("stride2", h=9, w=8, strides=(2, 2)),
        C("dilation2", h=9, w=9, dilations=(2, 2), pads=(2, 2, 2, 2)),
        C("asym_pads", h=6, w=7, pads=(0, 1, 2, 0)),
        C("asym_pads_stride2_border", h=8, w=7, pads=(2, 0, 1, 1), strides=(2, 2), offsets="border"),
        C("kernel_2x3", k=(2, 3), pads=(0, 1, 1, 1), h=6, w=8),
        C("kernel_1x1", k=(1, 1), pads=(0, 0, 0, 0), offsets="border"),
        C("batch2", n=2, c=3, cout=4, h=5, w=6),
        C("input_1x5", h=1, w=5),
        C("zero_offsets", offsets="zero"),
        C("integer_offsets", offsets="integer"),
        C("half_offsets", offsets="half"),
        C("border_band", offsets="border"),
        C("border_band_no_mask", offsets="border", mask=False, h=5, w=6),
        C("far_outside", offsets="far"),
        C("nan_offsets", offsets="nonfinite"),
    ]


def make_offsets(case: Case, rng: np.random.Generator, shape, oh: int, ow: int) -> np.ndarray:
    """Offsets [N, og*2*kH*kW, Ho, Wo] of the kind case.offsets names."""
    kind = case.offsets
    if kind == "zero":
        return np.zeros(shape, np.float32)
    if kind == "integer":
        return rng.integers(-3, 4, size=shape).astype(np.float32)
    if kind == "half":  # every sample exactly between two pixels
        return (rng.integers(-6, 7, size=shape) + 0.5).astype(np.float32)
    if kind == "large":
        return rng.uniform(-6, 6, size=shape).astype(np.float32)
    if kind == "border":
        return _border_offsets(case, rng, shape, oh, ow)
    off = rng.uniform(-2, 2, size=shape).astype(np.float32)
    if kind == "random":
        return off
    if kind == "far":
        far_values = np.array([1e4, -1e4, 1e7, -1e7, 3e38, -3e38, case.h + case.w + 50.0, -40.0],
                              np.float32)
        chosen = rng.random(shape) < 0.35
        off[chosen] = rng.choice(far_values, size=int(chosen.sum()))
        return off
    dy_channel = (np.arange(shape[1]) % 2 == 0)[None, :, None, None]
    specials = {"nan": [np.nan], "nan_x": [np.nan], "inf": [np.inf, -np.inf],
                "nonfinite": [np.nan, np.inf, -np.inf]}[kind]
    chosen = rng.random(shape) < 0.25
    if kind == "nan_x":
        chosen &= ~dy_channel
    off[chosen] = rng.choice(np.array(specials, np.float32), size=int(chosen.sum()))
    return off


def _border_offsets(case: Case, rng, shape, oh: int, ow: int) -> np.ndarray:
    """Offsets that put samples on the border band (-1, 0], [H-1, H] and its edges, in steps of 1/8.

    Multiples of 1/8 are exact in float32, so every runtime sees exactly these positions.
    """
    kh, kw = case.k
    sh, sw = case.strides
    pt, pl = case.pads[0], case.pads[1]
    dh, dw = case.dilations

    def targets(size, count):
        band = np.array([-1.0, -0.875, -0.5, -0.125, 0.0, size - 1.0, size - 0.875, size - 0.5,
                         size - 0.125, float(size), -1.125, size + 0.125])
        inner = rng.integers(0, max(1, 8 * (size - 1)) + 1, size=count) / 8.0
        pick = rng.choice(band, size=count)
        return np.where(rng.random(count) < 0.7, pick, inner)

    n, channels = shape[0], shape[1]
    off = np.empty(shape, np.float64)
    for ch in range(channels):
        tap = (ch % (2 * kh * kw)) // 2
        i, j = divmod(tap, kw)
        if ch % 2 == 0:
            base = (np.arange(oh) * sh - pt + i * dh)[None, :, None]
            off[:, ch] = targets(case.h, n * oh * ow).reshape(n, oh, ow) - base
        else:
            base = (np.arange(ow) * sw - pl + j * dw)[None, None, :]
            off[:, ch] = targets(case.w, n * oh * ow).reshape(n, oh, ow) - base
    return off.astype(np.float32)


def build_inputs(case: Case) -> dict:
    rng = np.random.default_rng(zlib.crc32(f"{case.spelling}/{case.name}".encode()))
    kh, kw = case.k
    oh = output_size(case.h, kh, case.strides[0], case.pads[0], case.pads[2], case.dilations[0])
    ow = output_size(case.w, kw, case.strides[1], case.pads[1], case.pads[3], case.dilations[1])
    assert oh > 0 and ow > 0, case.name
    data = {
        "x": rng.standard_normal((case.n, case.c, case.h, case.w)).astype(np.float32),
        "w": (rng.standard_normal((case.cout, case.c // case.group, kh, kw)) * 0.5).astype(np.float32),
    }
    data["offset"] = make_offsets(case, rng, (case.n, case.offset_group * 2 * kh * kw, oh, ow), oh, ow)
    if case.mask:
        data["mask"] = rng.uniform(*case.mask_range, size=(case.n, case.offset_group * kh * kw, oh, ow)
                                   ).astype(np.float32)
    if case.bias:
        data["b"] = rng.standard_normal(case.cout).astype(np.float32)
    return data


def attributes(case: Case) -> dict:
    return {
        "strides": np.array(case.strides, np.int64),
        "pads": np.array(case.pads, np.int64),
        "dilations": np.array(case.dilations, np.int64),
        "group": np.array(case.group, np.int64),
        "offset_group": np.array(case.offset_group, np.int64),
        "spelling": np.array(case.spelling),
    }


def finite_stand_in(offset: np.ndarray) -> np.ndarray:
    """The same offsets with NaN/Inf replaced by +-FAR: a sample that reads 0 under both border rules."""
    out = offset.copy()
    out[np.isnan(out)] = FAR
    out[np.isposinf(out)] = FAR
    out[np.isneginf(out)] = -FAR
    return out


def args_of(case: Case, data: dict, offset=None) -> tuple:
    return (data["x"], data["w"], data["offset"] if offset is None else offset, data.get("mask"),
            data.get("b"), case.strides, case.pads, case.dilations)


def max_rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / (1.0 + np.abs(b)))) if a.size else 0.0


def system_python() -> str:
    """The python3 that has OpenVINO: $SYSTEM_PYTHON, else the first python3 on PATH outside this venv."""
    if "SYSTEM_PYTHON" in os.environ:
        return os.environ["SYSTEM_PYTHON"]
    venv_bin = os.path.dirname(os.path.abspath(sys.executable))
    path = os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep)
                           if d and os.path.abspath(d) != venv_bin)
    found = shutil.which("python3", path=path)
    if found is None:
        sys.exit("no system python3 found; set SYSTEM_PYTHON to a python3 that has openvino")
    return found


def run_openvino(items: list[tuple[Case, dict]]) -> dict[str, np.ndarray]:
    """Runs OpenVINO (system python3) on every case; non-finite offsets are given as +-FAR."""
    with tempfile.TemporaryDirectory() as tmp:
        in_dir, out_dir = os.path.join(tmp, "in"), os.path.join(tmp, "out")
        os.makedirs(in_dir)
        os.makedirs(out_dir)
        for case, data in items:
            feed = dict(data, offset=finite_stand_in(data["offset"]), **attributes(case))
            np.savez(os.path.join(in_dir, case.name + ".npz"), **feed)
        subprocess.run([system_python(), OPENVINO_HELPER, in_dir, out_dir], check=True)
        return {case.name: np.load(os.path.join(out_dir, case.name + ".npy")) for case, _ in items}


def main() -> None:
    os.makedirs(OUT_DIR, exist_ok=True)
    for stale in os.listdir(OUT_DIR):
        if stale.endswith(".npz"):
            os.remove(os.path.join(OUT_DIR, stale))

    results: list[tuple[Case, dict, np.ndarray, str]] = []
    for case in onnx_cases() + mmcv_cases():
        data = build_inputs(case)
        a = (case.group, case.offset_group)
        numpy_y = deform_conv_numpy(*args_of(case, data), *a)
        finite = bool(np.isfinite(data["offset"]).all())
        tv_y = deform_conv_torchvision(*args_of(case, data, finite_stand_in(data["offset"])))
        err = max_rel_err(numpy_y, tv_y)
        assert err < 1e-9, f"{case.name}: NumPy and torchvision disagree ({err:g})"
        if case.offsets == "zero" and not case.mask:  # a mask scales taps, so only then y == Conv
            conv_y = conv_torch(data["x"], data["w"], data.get("b"), case.strides, case.pads,
                                case.dilations, case.group)
            assert max_rel_err(tv_y, conv_y) < 1e-9, f"{case.name}: zero offsets differ from Conv"
        y, ref = (tv_y, "torchvision-f64") if finite else (numpy_y, "numpy-f64")
        results.append((case, data, y, ref))

    ov_items = [(case, build_inputs(case)) for case in openvino_cases()]
    ov_out = run_openvino(ov_items)
    border_report = []
    for case, data in ov_items:
        a = (case.group, case.offset_group)
        ov_rule = deform_conv_numpy(*args_of(case, data), *a, border="openvino")
        zero_rule = deform_conv_numpy(*args_of(case, data), *a, border="zero")
        err = max_rel_err(ov_out[case.name], ov_rule)
        assert err < 2e-5, f"{case.name}: OpenVINO and the NumPy OpenVINO rule disagree ({err:g})"
        finite = bool(np.isfinite(data["offset"]).all())
        y, ref = ((ov_out[case.name], "openvino-cpu-f32") if finite
                  else (ov_rule, "numpy-f64-openvino-border"))
        border_report.append((case.name, float(np.max(np.abs(ov_rule - zero_rule)))))
        results.append((case, data, y, ref))

    total = 0
    counts: dict[str, int] = {}
    for case, data, y, ref in results:
        path = os.path.join(OUT_DIR, f"{case.spelling}_{case.name}.npz")
        np.savez_compressed(path, **data, y=y.astype(np.float32), **attributes(case),
                            reference=np.array(ref))
        total += os.path.getsize(path)
        counts[case.spelling] = counts.get(case.spelling, 0) + 1
    print("cases per spelling:", counts, f"total {sum(counts.values())} files, {total / 1024:.1f} KiB")
    print("openvino border rule vs zero-corner rule, max |difference| per case:")
    for name, diff in border_report:
        print(f"  {name:40s} {diff:.4g}")


if __name__ == "__main__":
    main()
