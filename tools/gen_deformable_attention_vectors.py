#!/usr/bin/env python3
"""Writes the DCNv3 and multi-scale deformable attention vectors in
Tests/vectors/deformable_attention/ from the NumPy transcriptions in
tools/deformable_attention_reference.py (numpy only; fixed seeds, so the files are reproducible):

    python3 tools/gen_deformable_attention_vectors.py

dcnv3_<case>.npz    mmdeploy::TRTDCNv3 / ai.deformrt::DCNv3
    input [N, H, W, group * group_channels], offset [N, Ho, Wo, group * P * 2],
    mask [N, Ho, Wo, group * P] float32; kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
    dilation_h, dilation_w, group, group_channels, remove_center int64, offset_scale float32;
    output [N, Ho, Wo, group * group_channels] float32 (computed in float64, stored as float32)
msda_<case>.npz     mmdeploy::MMCVMultiScaleDeformableAttention
    value [bs, keys, heads, dim] float32, spatial_shapes [L, 2] int64, level_start_index [L] int64,
    sampling_locations [bs, q, heads, L, P, 2] float32, attention_weights [bs, q, heads, L, P] float32;
    output [bs, q, heads * dim] float32

torch is not used: InternImage's and mmcv's PyTorch functions need their packages, and the
transcription is checked step by step against their source (cited in the reference module).
"""
from __future__ import annotations

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from deformable_attention_reference import dcnv3_output_size, dcnv3_reference, msda_reference  # noqa: E402

OUT = os.path.join(os.path.dirname(HERE), "Tests", "vectors", "deformable_attention")

DCNV3 = {
    # name: (n, h, w, group, group_channels, kernel_h, kernel_w, stride, pad, dilation, offset_scale, remove_center)
    "basic_3x3": (1, 6, 7, 2, 4, 3, 3, (1, 1), (1, 1), (1, 1), 1.0, 0),
    "batch2_remove_center": (2, 5, 6, 3, 3, 3, 3, (1, 1), (1, 1), (1, 1), 1.0, 1),
    "stride2_dilation2": (2, 9, 8, 2, 5, 3, 3, (2, 2), (2, 2), (2, 2), 1.0, 0),
    "pad_h_ne_pad_w": (1, 7, 8, 2, 3, 3, 3, (1, 1), (2, 0), (1, 1), 1.0, 0),
    "kernel_5x5_scale_half": (1, 8, 8, 1, 17, 5, 5, (1, 1), (2, 2), (1, 1), 0.5, 1),
    "kernel_1x3_far_offsets": (2, 4, 9, 4, 2, 1, 3, (1, 2), (0, 1), (1, 1), 3.0, 0),
}

MSDA = {
    # name: (bs, shapes, heads, dim, queries, points)
    "four_levels": (2, [(6, 8), (3, 4), (2, 2), (1, 1)], 2, 8, 5, 4),
    "one_level_one_point": (1, [(7, 5)], 1, 3, 6, 1),
    "three_levels_17_channels": (2, [(5, 6), (3, 3), (2, 1)], 3, 17, 4, 3),
}


def write(name, **arrays):
    path = os.path.join(OUT, name + ".npz")
    np.savez(path, **arrays)
    print(path)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20261207)
    for name, (n, h, w, group, gc, kh, kw, stride, pad, dilation, scale, remove) in DCNV3.items():
        ho, wo = dcnv3_output_size(h, w, kh, kw, *stride, *pad, *dilation)
        p = kh * kw - remove
        spread = 6.0 if "far" in name else 1.5
        x = rng.standard_normal((n, h, w, group * gc)).astype(np.float32)
        offset = (rng.standard_normal((n, ho, wo, group * p * 2)) * spread).astype(np.float32)
        logits = rng.standard_normal((n, ho, wo, group, p))
        mask = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).reshape(n, ho, wo, group * p).astype(np.float32)
        out = dcnv3_reference(x, offset, mask, kh, kw, stride[0], stride[1], pad[0], pad[1], dilation[0], dilation[1],
                              group, gc, scale, remove)
        ints = dict(kernel_h=kh, kernel_w=kw, stride_h=stride[0], stride_w=stride[1], pad_h=pad[0], pad_w=pad[1],
                    dilation_h=dilation[0], dilation_w=dilation[1], group=group, group_channels=gc,
                    remove_center=remove)
        write("dcnv3_" + name, input=x, offset=offset, mask=mask, output=out.astype(np.float32),
              offset_scale=np.float32(scale), **{k: np.int64(v) for k, v in ints.items()})
    for name, (bs, shapes, heads, dim, queries, points) in MSDA.items():
        shapes = np.array(shapes, np.int64)
        areas = shapes[:, 0] * shapes[:, 1]
        starts = np.concatenate([[0], np.cumsum(areas)[:-1]]).astype(np.int64)
        levels = len(shapes)
        value = rng.standard_normal((bs, int(areas.sum()), heads, dim)).astype(np.float32)
        loc = rng.uniform(-0.1, 1.1, (bs, queries, heads, levels, points, 2)).astype(np.float32)
        logits = rng.standard_normal((bs, queries, heads, levels * points))
        weights = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).reshape(
            bs, queries, heads, levels, points).astype(np.float32)
        out = msda_reference(value, shapes, starts, loc, weights)
        write("msda_" + name, value=value, spatial_shapes=shapes, level_start_index=starts, sampling_locations=loc,
              attention_weights=weights, output=out.astype(np.float32))


if __name__ == "__main__":
    main()
