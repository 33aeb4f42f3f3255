"""MobileNet-style blocks (1x1 expansion, depthwise 3x3 / 5x5 with stride or dilation, 1x1
projection, residual Add; Relu6 as Clip, HardSwish, Relu) on widths that are not multiples of 16
(24, 40, 72, 120, 7). They run channels-last end to end: the depthwise convolutions on the
channels-last depthwise kernel, the 1x1 and 3x3 convolutions reading rows of 24 or 40 floats in
place; on small maps two threads split a 160-wide output's column blocks by their widths. Against onnxruntime (rtol 1e-4, atol 1e-5: sums of up to 144 products in another order)
and against the unoptimised session (NCHW kernels, same tolerance), for several input sizes and
batch 2; the profiler's trace shows that no Transpose runs."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import deformrt
from deformrt import GraphOptimizationLevel, SessionOptions
from profiled import run_profiled

ort = pytest.importorskip("onnxruntime")


def mobile_model() -> bytes:
    rng = np.random.default_rng(11)
    inits, nodes = [], []

    def conv(x, cin, cout, k, stride=1, group=1, act=None, dilation=1, pads=None):
        name = f"conv{len(nodes)}"
        w = rng.standard_normal((cout, cin // group, k, k)) / np.sqrt(cin // group * k * k)
        inits.append(numpy_helper.from_array(w.astype(np.float32), name + "_w"))
        inits.append(numpy_helper.from_array((rng.standard_normal(cout) * 0.1).astype(np.float32), name + "_b"))
        nodes.append(helper.make_node("Conv", [x, name + "_w", name + "_b"], [name], name=name, group=group,
                                      pads=pads or [dilation * (k // 2)] * 4, strides=[stride] * 2,
                                      dilations=[dilation] * 2))
        if act == "relu6":
            nodes.append(helper.make_node("Clip", [name, "zero", "six"], [name + "_a"], name=name + "_relu6"))
        elif act == "hardswish":
            nodes.append(helper.make_node("HardSwish", [name], [name + "_a"], name=name + "_hardswish"))
        elif act == "relu":
            nodes.append(helper.make_node("Relu", [name], [name + "_a"], name=name + "_relu"))
        return name + "_a" if act else name

    inits += [numpy_helper.from_array(np.array(0, np.float32), "zero"),
              numpy_helper.from_array(np.array(6, np.float32), "six")]
    x = conv("x", 16, 24, 3, stride=2, act="relu6")            # stem on NCHW input, 3x3 stride 2
    x = conv(x, 24, 24, 3, act="relu")                          # plain 3x3 on rows of 24 floats
    y = conv(x, 24, 72, 1, act="relu6")
    y = conv(y, 72, 72, 3, group=72, act="relu6")               # depthwise 3x3
    y = conv(y, 72, 24, 1)
    nodes.append(helper.make_node("Add", [x, y], ["residual"], name="residual"))
    x = conv("residual", 24, 40, 1, act="hardswish")
    x = conv(x, 40, 40, 5, stride=2, group=40, act="hardswish")  # depthwise 5x5 stride 2
    x = conv(x, 40, 120, 1, act="hardswish")
    x = conv(x, 120, 120, 3, group=120, act="relu", dilation=2)  # dilated depthwise
    x = conv(x, 120, 160, 1, act="relu")                        # 64 + 64 + 32 columns split over threads
    x = conv(x, 160, 120, 1)
    x = conv(x, 120, 120, 3, stride=2, group=120, pads=[0, 0, 1, 1])  # asymmetric pads
    x = conv(x, 120, 7, 1, stride=2)                            # 1x1 stride 2: rows of 120 floats
    x = conv(x, 7, 7, 3, group=7)                               # depthwise, channels-last in, NCHW out
    graph = helper.make_graph(nodes, "mobile", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16, "h", "w"])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


MODEL = mobile_model()


def session(level, threads=2) -> deformrt.InferenceSession:
    options = SessionOptions()
    options.graph_optimization_level = level
    return deformrt.InferenceSession(MODEL, options, threads=threads)


@pytest.mark.parametrize("shape", [(1, 16, 64, 64), (2, 16, 45, 37), (1, 16, 9, 12)])
@pytest.mark.parametrize("threads", [1, 2])
def test_mobile_blocks_match_onnxruntime(shape, threads):
    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
    want = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = session(GraphOptimizationLevel.ORT_ENABLE_ALL, threads).run(None, {"x": x})[0]
    plain = session(GraphOptimizationLevel.ORT_DISABLE_ALL, threads).run(None, {"x": x})[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(plain, want, rtol=1e-4, atol=1e-5)


def test_no_transpose_runs(tmp_path):
    _, events = run_profiled(MODEL, {"x": np.zeros((1, 16, 32, 32), np.float32)}, tmp_path / "mobile")
    ops = [event["args"]["op_name"] for event in events]
    assert "Transpose" not in ops and ops.count("ai.deformrt::FusedConv") == 14, ops


def mobilenet_v3_large() -> bytes:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "tools" / "make_mobilenet_model.py"
    spec = importlib.util.spec_from_file_location("make_mobilenet_model", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool.build_mobilenet_v3_large(seed=3, classes=100).SerializeToString()


V3 = mobilenet_v3_large()


@pytest.mark.parametrize("shape", [(1, 3, 64, 64), (1, 3, 57, 40)])
@pytest.mark.parametrize("threads", [1, 2])
def test_mobilenet_v3_large_matches_onnxruntime(shape, threads):
    """The whole network of tools/make_mobilenet_model.py: an RGB stem (3 planes into pixel rows),
    HardSwish, squeeze-and-excite (GlobalAveragePool, 1x1 convs, HardSigmoid, Mul on channels-last
    data), 5x5 depthwise. Tolerance: sums of up to 960 products in another order through ~60
    layers, so atol is 1e-4 of the largest logit."""
    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
    want = ort.InferenceSession(V3, providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    for level in (GraphOptimizationLevel.ORT_ENABLE_ALL, GraphOptimizationLevel.ORT_DISABLE_ALL):
        options = SessionOptions()
        options.graph_optimization_level = level
        got = deformrt.InferenceSession(V3, options, threads=threads).run(None, {"image": x})[0]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_mobilenet_v3_large_stays_channels_last(tmp_path):
    _, events = run_profiled(V3, {"image": np.zeros((1, 3, 64, 64), np.float32)}, tmp_path / "v3")
    ops = [event["args"]["op_name"] for event in events]
    # 62 convolutions, each with its BatchNormalization, HardSwish / Relu / HardSigmoid fused; the
    # one HardSwish left is the classifier's, after a Gemm.
    assert "Transpose" not in ops and ops.count("ai.deformrt::FusedConv") == 62, ops
    assert ops.count("HardSwish") == 1 and ops[ops.index("HardSwish") - 1] == "Gemm", ops


def depthwise_chain() -> bytes:
    """Depthwise convolutions between 1x1s (so they run channels-last): 3x3 and 5x5 at stride 1,
    at stride 2, and at stride 2 with dilation 2 (a window's columns a pixel step apart, as at
    stride 1), on rows long enough for runs of eight interior pixels; 40, 120 and 19 channels
    (blocks of 16, a tail of 8, a tail of 3)."""
    rng = np.random.default_rng(5)
    inits, nodes = [], []

    def conv(x, cin, cout, k, stride=1, group=1, dilation=1):
        name = f"conv{len(nodes)}"
        w = rng.standard_normal((cout, cin // group, k, k)) / np.sqrt(cin // group * k * k)
        inits.append(numpy_helper.from_array(w.astype(np.float32), name + "_w"))
        inits.append(numpy_helper.from_array((rng.standard_normal(cout) * 0.1).astype(np.float32), name + "_b"))
        nodes.append(helper.make_node("Conv", [x, name + "_w", name + "_b"], [name], name=name, group=group,
                                      pads=[dilation * (k // 2)] * 4, strides=[stride] * 2, dilations=[dilation] * 2))
        return name

    x = conv("x", 8, 40, 1)
    x = conv(x, 40, 40, 3, group=40)
    x = conv(x, 40, 40, 5, group=40)
    x = conv(x, 40, 40, 3, stride=2, group=40)
    x = conv(x, 40, 40, 5, stride=2, group=40)
    x = conv(x, 40, 120, 1)
    x = conv(x, 120, 120, 5, group=120)
    x = conv(x, 120, 120, 3, stride=2, dilation=2, group=120)
    x = conv(x, 120, 19, 1)
    x = conv(x, 19, 19, 5, group=19)
    x = conv(x, 19, 19, 3, group=19)
    x = conv(x, 19, 8, 1)
    graph = helper.make_graph(nodes, "depthwise", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, "h", "w"])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


DEPTHWISE = depthwise_chain()


@pytest.mark.parametrize("shape", [(1, 8, 13, 45), (1, 8, 7, 70), (1, 8, 20, 11), (1, 8, 9, 150)])
@pytest.mark.parametrize("threads", [1, 2])
def test_depthwise_runs_of_pixels_match_onnxruntime(shape, threads):
    """Against onnxruntime, rtol 1e-4 and atol 1e-5 (sums of up to 25 products per layer in
    another order, through ten layers)."""
    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
    want = ort.InferenceSession(DEPTHWISE, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = deformrt.InferenceSession(DEPTHWISE, threads=threads).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
