"""DCNv3 (mmdeploy::TRTDCNv3, ai.deformrt::DCNv3) and multi-scale deformable attention
(mmdeploy::MMCVMultiScaleDeformableAttention, ai.deformrt::MultiScaleDeformableAttention) against
the NumPy transcriptions in tools/deformable_attention_reference.py (InternImage's
dcnv3_core_pytorch with its CUDA kernel's padding rule; mmcv's multi_scale_deformable_attn_pytorch
reading levels at level_start_index as mmcv's CUDA kernel), on random cases and on the committed
vectors in Tests/vectors/deformable_attention (tools/gen_deformable_attention_vectors.py).

Tolerance: |got - want| <= 1e-5 + 1e-5 |want| (measured: at most 1.2e-6). The kernels compute
sample positions in float32 as the CUDA kernels do, the transcriptions in float64 through
normalised coordinates.
"""
from __future__ import annotations

import glob
import os
import sys

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import deformrt

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from deformable_attention_reference import dcnv3_output_size, dcnv3_reference, msda_reference  # noqa: E402

VECTORS = os.path.join(ROOT, "Tests", "vectors", "deformable_attention")
RTOL = ATOL = 1e-5
DCNV3_SPELLINGS = [("mmdeploy", "TRTDCNv3"), ("ai.deformrt", "DCNv3")]
MSDA_SPELLINGS = [("mmdeploy", "MMCVMultiScaleDeformableAttention"), ("ai.deformrt", "MultiScaleDeformableAttention")]
DCNV3_ATTRS = ("kernel_h", "kernel_w", "stride_h", "stride_w", "pad_h", "pad_w", "dilation_h", "dilation_w",
               "group", "group_channels", "offset_scale", "remove_center")


def make_model(domain, op, inputs, attrs, initializers=(), name="node0"):
    node = helper.make_node(op, [i.name for i in inputs] + [t.name for t in initializers], ["y"], domain=domain,
                            name=name, **attrs)
    graph = helper.make_graph([node], "g", list(inputs), [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              list(initializers))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)])
    m.ir_version = 9
    return m.SerializeToString()


def value_info(name, array):
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(array.dtype), list(array.shape))


def run(model, feeds, threads=2):
    with deformrt.InferenceSession(model, threads=threads) as s:
        return s.run(None, feeds)[0]


# ---- DCNv3 -----------------------------------------------------------------------------------

def dcnv3_case(rng, n, h, w, group, gc, kh, kw, stride=(1, 1), pad=(1, 1), dilation=(1, 1), scale=1.0,
               remove_center=0, spread=2.0):
    attrs = dict(kernel_h=kh, kernel_w=kw, stride_h=stride[0], stride_w=stride[1], pad_h=pad[0], pad_w=pad[1],
                 dilation_h=dilation[0], dilation_w=dilation[1], group=group, group_channels=gc,
                 offset_scale=float(scale), remove_center=remove_center, im2col_step=64)
    ho, wo = dcnv3_output_size(h, w, kh, kw, stride[0], stride[1], pad[0], pad[1], dilation[0], dilation[1])
    p = kh * kw - remove_center
    x = rng.standard_normal((n, h, w, group * gc)).astype(np.float32)
    offset = (rng.standard_normal((n, ho, wo, group * p * 2)) * spread).astype(np.float32)
    logits = rng.standard_normal((n, ho, wo, group, p))
    mask = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).reshape(n, ho, wo, group * p).astype(np.float32)
    return x, offset, mask, attrs


def dcnv3_run(domain, op, x, offset, mask, attrs, threads=2):
    inputs = [value_info("input", x), value_info("offset", offset), value_info("mask", mask)]
    return run(make_model(domain, op, inputs, attrs), {"input": x, "offset": offset, "mask": mask}, threads)


def dcnv3_want(x, offset, mask, attrs):
    a = dict(attrs)
    a.pop("im2col_step", None)
    return dcnv3_reference(x, offset, mask, **a)


DCNV3_CASES = [
    # n, h, w, group, gc, kh, kw, extra
    (2, 7, 9, 2, 3, 3, 3, {}),
    (1, 11, 6, 4, 16, 3, 3, {}),
    (2, 5, 5, 1, 17, 3, 3, {"remove_center": 1}),
    (2, 9, 8, 3, 5, 5, 5, {"pad": (2, 2), "remove_center": 1, "scale": 0.5}),
    (3, 8, 7, 2, 4, 3, 3, {"stride": (2, 2), "pad": (1, 1)}),
    (2, 10, 9, 2, 8, 3, 3, {"dilation": (2, 2), "pad": (2, 2)}),
    (2, 9, 10, 2, 4, 3, 3, {"pad": (2, 0), "dilation": (1, 2)}),  # pad_h != pad_w: the CUDA rule
    (1, 6, 9, 5, 1, 1, 3, {"pad": (0, 1), "stride": (1, 2)}),
    (2, 7, 6, 2, 33, 3, 5, {"pad": (1, 2), "scale": 2.0}),
    (1, 12, 13, 20, 16, 3, 3, {"spread": 6.0}),
    (2, 4, 4, 1, 2, 3, 3, {"pad": (0, 0)}),
    # group channels summed in registers (16 to 64), groups straddling the 16-point plans
    (2, 6, 7, 3, 32, 3, 3, {}),
    (1, 5, 5, 5, 48, 3, 3, {"stride": (2, 2)}),
    (1, 5, 6, 2, 64, 3, 3, {"remove_center": 1}),
]


@pytest.mark.parametrize("spelling", DCNV3_SPELLINGS)
@pytest.mark.parametrize("case", range(len(DCNV3_CASES)))
def test_dcnv3_against_transcription(spelling, case):
    n, h, w, group, gc, kh, kw, extra = DCNV3_CASES[case]
    rng = np.random.default_rng(100 + case)
    x, offset, mask, attrs = dcnv3_case(rng, n, h, w, group, gc, kh, kw, **extra)
    got = dcnv3_run(*spelling, x, offset, mask, attrs)
    np.testing.assert_allclose(got, dcnv3_want(x, offset, mask, attrs), rtol=RTOL, atol=ATOL)


def test_dcnv3_threads_agree_exactly():
    rng = np.random.default_rng(5)
    x, offset, mask, attrs = dcnv3_case(rng, 2, 13, 11, 4, 16, 3, 3)
    one = dcnv3_run("mmdeploy", "TRTDCNv3", x, offset, mask, attrs, threads=1)
    np.testing.assert_array_equal(dcnv3_run("mmdeploy", "TRTDCNv3", x, offset, mask, attrs, threads=3), one)


def test_dcnv3_zero_offsets_centre_mask_is_identity():
    """A hand-checkable case: zero offsets and all mask weight on the centre point copy the input."""
    rng = np.random.default_rng(6)
    x, offset, mask, attrs = dcnv3_case(rng, 2, 5, 7, 2, 3, 3, 3)
    offset[:] = 0
    mask[:] = 0
    mask[..., 4] = 1
    mask[..., 9 + 4] = 1
    np.testing.assert_array_equal(dcnv3_run("ai.deformrt", "DCNv3", x, offset, mask, attrs), x)


def test_dcnv3_non_finite_offsets_and_masks():
    """NaN / Inf offsets read 0; a NaN mask on a point outside the input adds nothing (the CUDA
    kernel skips the point), inside it poisons the pixel (as the kernel)."""
    rng = np.random.default_rng(7)
    x, offset, mask, attrs = dcnv3_case(rng, 2, 6, 7, 2, 4, 3, 3)
    offset[0, 1, 2, 0] = np.nan
    offset[0, 2, 3, 5] = np.inf
    offset[1, 0, 0, 7] = -np.inf
    offset[1, 3, 3, 0:2] = 1e30  # point 0 of group 0 far outside...
    mask[1, 3, 3, 0] = np.nan    # ...with a NaN mask: skipped
    got = dcnv3_run("mmdeploy", "TRTDCNv3", x, offset, mask, attrs)
    want = dcnv3_want(x, offset, mask, attrs)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(VECTORS, "dcnv3_*.npz"))))
def test_dcnv3_vectors(path):
    v = np.load(path)
    attrs = {k: (float(v[k]) if k == "offset_scale" else int(v[k])) for k in DCNV3_ATTRS}
    got = dcnv3_run("mmdeploy", "TRTDCNv3", v["input"], v["offset"], v["mask"], attrs)
    np.testing.assert_allclose(got, v["output"], rtol=RTOL, atol=ATOL)


def test_dcnv3_vectors_exist():
    assert len(glob.glob(os.path.join(VECTORS, "dcnv3_*.npz"))) >= 5


# ---- multi-scale deformable attention -------------------------------------------------------

def msda_case(rng, bs, shapes, heads, dim, queries, points, low=-0.15, high=1.15, index_dtype=np.int64):
    shapes = np.array(shapes, index_dtype).reshape(-1, 2)
    areas = shapes[:, 0].astype(np.int64) * shapes[:, 1]
    starts = np.concatenate([[0], np.cumsum(areas)[:-1]]).astype(index_dtype)
    keys = int(areas.sum())
    levels = len(shapes)
    value = rng.standard_normal((bs, keys, heads, dim)).astype(np.float32)
    loc = rng.uniform(low, high, (bs, queries, heads, levels, points, 2)).astype(np.float32)
    logits = rng.standard_normal((bs, queries, heads, levels * points))
    weights = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).reshape(
        bs, queries, heads, levels, points).astype(np.float32)
    return value, shapes, starts, loc, weights


def msda_run(domain, op, value, shapes, starts, loc, weights, constant_levels=True, threads=2, name="node0"):
    feeds = {"value": value, "sampling_locations": loc, "attention_weights": weights}
    if constant_levels:
        inputs = [value_info("value", value)]
        inits = [numpy_helper.from_array(shapes, "spatial_shapes"), numpy_helper.from_array(starts, "level_start_index")]
        # Initializers go after the graph inputs in make_model; keep the op's input order.
        node = helper.make_node(op, ["value", "spatial_shapes", "level_start_index", "sampling_locations",
                                     "attention_weights"], ["y"], domain=domain, name=name, im2col_step=64)
        graph = helper.make_graph([node], "g", inputs + [value_info("sampling_locations", loc),
                                                         value_info("attention_weights", weights)],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    else:
        feeds.update(spatial_shapes=shapes, level_start_index=starts)
        node = helper.make_node(op, ["value", "spatial_shapes", "level_start_index", "sampling_locations",
                                     "attention_weights"], ["y"], domain=domain, name=name)
        graph = helper.make_graph([node], "g", [value_info("value", value), value_info("spatial_shapes", shapes),
                                                value_info("level_start_index", starts),
                                                value_info("sampling_locations", loc),
                                                value_info("attention_weights", weights)],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)])
    m.ir_version = 9
    return run(m.SerializeToString(), feeds, threads)


MSDA_CASES = [
    # bs, shapes, heads, dim, queries, points
    (2, [(5, 7), (3, 4), (2, 2), (1, 1)], 2, 8, 7, 4),
    (1, [(9, 6)], 1, 3, 5, 1),
    (2, [(6, 5), (3, 3)], 3, 17, 4, 3),
    (3, [(4, 9), (2, 5), (1, 3)], 8, 32, 6, 4),
    (2, [(7, 7), (4, 4), (2, 2), (1, 1)], 4, 1, 9, 5),
    (1, [(13, 17), (7, 9), (4, 5), (2, 3)], 8, 16, 11, 4),
    # head_dim summed in registers (48, 64), more than 16 points per row
    (2, [(5, 5), (2, 3), (1, 2)], 3, 48, 4, 7),
    (1, [(6, 7), (3, 4)], 2, 64, 5, 3),
]


@pytest.mark.parametrize("spelling", MSDA_SPELLINGS)
@pytest.mark.parametrize("case", range(len(MSDA_CASES)))
def test_msda_against_transcription(spelling, case):
    bs, shapes, heads, dim, queries, points = MSDA_CASES[case]
    rng = np.random.default_rng(200 + case)
    value, shapes, starts, loc, weights = msda_case(rng, bs, shapes, heads, dim, queries, points)
    got = msda_run(*spelling, value, shapes, starts, loc, weights)
    np.testing.assert_allclose(got, msda_reference(value, shapes, starts, loc, weights), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("index_dtype", [np.int64, np.int32])
def test_msda_levels_fed_at_run_time(index_dtype):
    rng = np.random.default_rng(9)
    value, shapes, starts, loc, weights = msda_case(rng, 2, [(6, 5), (3, 3), (2, 1)], 2, 4, 5, 2,
                                                    index_dtype=index_dtype)
    got = msda_run("mmdeploy", "MMCVMultiScaleDeformableAttention", value, shapes, starts, loc, weights,
                   constant_levels=False)
    np.testing.assert_allclose(got, msda_reference(value, shapes, starts, loc, weights), rtol=RTOL, atol=ATOL)


def test_msda_threads_agree_exactly():
    rng = np.random.default_rng(10)
    value, shapes, starts, loc, weights = msda_case(rng, 2, [(8, 9), (4, 5), (2, 3)], 4, 16, 33, 4)
    one = msda_run("ai.deformrt", "MultiScaleDeformableAttention", value, shapes, starts, loc, weights, threads=1)
    three = msda_run("ai.deformrt", "MultiScaleDeformableAttention", value, shapes, starts, loc, weights, threads=3)
    np.testing.assert_array_equal(three, one)


def test_msda_non_finite_locations_and_weights():
    """NaN / Inf locations read 0; a NaN weight on a point outside its level adds nothing."""
    rng = np.random.default_rng(11)
    value, shapes, starts, loc, weights = msda_case(rng, 2, [(5, 6), (3, 2)], 2, 5, 4, 3)
    loc[0, 0, 0, 0, 0, 0] = np.nan
    loc[0, 1, 1, 1, 2, 1] = np.inf
    loc[1, 2, 0, 0, 1, :] = -np.inf
    loc[1, 3, 1, 1, 0, :] = 5.0       # outside...
    weights[1, 3, 1, 1, 0] = np.nan   # ...so its NaN weight is skipped
    got = msda_run("mmdeploy", "MMCVMultiScaleDeformableAttention", value, shapes, starts, loc, weights)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, msda_reference(value, shapes, starts, loc, weights), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(VECTORS, "msda_*.npz"))))
def test_msda_vectors(path):
    v = np.load(path)
    got = msda_run("mmdeploy", "MMCVMultiScaleDeformableAttention", v["value"], v["spatial_shapes"],
                   v["level_start_index"], v["sampling_locations"], v["attention_weights"])
    np.testing.assert_allclose(got, v["output"], rtol=RTOL, atol=ATOL)


def test_msda_vectors_exist():
    assert len(glob.glob(os.path.join(VECTORS, "msda_*.npz"))) >= 3


# ---- against onnxruntime running the grid_sample decompositions --------------------------------

sys.path.insert(0, os.path.join(ROOT, "tools"))
import deformable_decompositions as decompositions  # noqa: E402


def ort_run(model, feeds):
    import onnxruntime as ort
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)[0]


@pytest.mark.parametrize("n,h,w,group,gc,kernel,stride,pad,dilation,scale", [
    (2, 9, 11, 4, 16, 3, 1, 1, 1, 1.0),
    (1, 8, 7, 3, 5, 3, 2, 1, 1, 0.5),
    (2, 10, 9, 2, 7, 3, 1, 2, 2, 1.0),
])
def test_dcnv3_against_onnxruntime_decomposition(n, h, w, group, gc, kernel, stride, pad, dilation, scale):
    """An independent reference: onnxruntime's GridSample in dcnv3_core_pytorch's graph. DeformRT
    runs the same decomposed graph too (on the fused kernel: the DCNv3Decomposition pass; node by
    node in test_dcnv3_decomposition.py)."""
    fused, decomposed, shapes = decompositions.dcnv3_models(n, h, w, group, gc, kernel, stride, pad, dilation, scale)
    feeds = decompositions.random_feeds(shapes, seed=h * w)
    want = ort_run(decomposed, feeds)
    np.testing.assert_allclose(run(fused, feeds), want, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(run(decomposed, feeds), want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("bs,shapes,heads,dim,queries,points", [
    (2, [(10, 13), (5, 7), (3, 4), (2, 2)], 8, 32, 37, 4),
    (1, [(6, 5), (3, 3)], 2, 5, 11, 3),
])
def test_msda_against_onnxruntime_decomposition(bs, shapes, heads, dim, queries, points):
    fused, decomposed, input_shapes = decompositions.msda_models(bs, shapes, heads, dim, queries, points)
    feeds = decompositions.random_feeds(input_shapes, seed=queries)
    want = ort_run(decomposed, feeds)
    np.testing.assert_allclose(run(fused, feeds), want, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(run(decomposed, feeds), want, rtol=RTOL, atol=ATOL)
