"""3x3 stride-1 convolutions, which the avx2 and avx512 tiers compute by Winograd's F(2x2, 3x3)
(WinogradConvPlan; the baseline tier's OpenBLAS engine keeps the direct sums): NCHW input from
the graph and NCHW output to it (padded channels-last rows inside), channels-last between,
residual blocks with BatchNormalization folded, Relu and a residual Add fused into the store, a
Sigmoid the store leaves to the epilogue's pass, 16 / 48 / 80 / 144 / 27 channels (column blocks
narrower than 64, a count that is not a multiple of 16), maps whose sides are odd (tiles cut by
the edges), 1 pixel, asymmetric pads, batch 2, 1-3 threads. Against onnxruntime and against the unoptimised session (NCHW direct
kernels): rtol 1e-4, atol 1e-5 x the largest output (the transforms' sums add a few ulps)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import deformrt
from deformrt import GraphOptimizationLevel, SessionOptions

ort = pytest.importorskip("onnxruntime")


def residual_blocks() -> bytes:
    rng = np.random.default_rng(23)
    inits, nodes = [], []

    def conv(x, cin, cout, act=None, pads=(1, 1, 1, 1), bn=True):
        name = f"conv{len(nodes)}"
        w = rng.standard_normal((cout, cin, 3, 3)) / np.sqrt(cin * 9)
        inits.append(numpy_helper.from_array(w.astype(np.float32), name + "_w"))
        nodes.append(helper.make_node("Conv", [x, name + "_w"], [name], name=name, pads=list(pads)))
        out = name
        if bn:
            for part, values in (("scale", 1 + 0.1 * rng.standard_normal(cout)), ("bias", 0.1 * rng.standard_normal(cout)),
                                 ("mean", 0.1 * rng.standard_normal(cout)), ("var", 1 + 0.1 * rng.random(cout))):
                inits.append(numpy_helper.from_array(values.astype(np.float32), f"{name}_{part}"))
            nodes.append(helper.make_node("BatchNormalization", [out] + [f"{name}_{p}" for p in ("scale", "bias", "mean", "var")],
                                          [name + "_bn"], name=name + "_bn"))
            out = name + "_bn"
        if act:
            nodes.append(helper.make_node(act, [out], [name + "_act"], name=name + "_act"))
            out = name + "_act"
        return out

    def block(x, channels):
        y = conv(x, channels, channels, act="Relu")
        y = conv(y, channels, channels)
        nodes.append(helper.make_node("Add", [x, y], [f"sum{len(nodes)}"], name=f"add{len(nodes)}"))
        out = nodes[-1].output[0]
        nodes.append(helper.make_node("Relu", [out], [out + "_relu"], name=out + "_relu"))
        return out + "_relu"

    x = conv("x", 16, 48, act="Relu")
    x = block(x, 48)
    x = conv(x, 48, 80, act="Sigmoid")
    x = block(x, 80)
    x = conv(x, 80, 144, pads=(2, 0, 1, 2), bn=False)
    x = conv(x, 144, 27, act="Relu")
    graph = helper.make_graph(nodes, "winograd", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16, "h", "w"])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


MODEL = residual_blocks()


@pytest.mark.parametrize("shape", [(1, 16, 28, 28), (2, 16, 13, 9), (1, 16, 1, 1), (1, 16, 7, 30)])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_winograd_blocks_match_onnxruntime(shape, threads):
    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
    want = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    for level in (GraphOptimizationLevel.ORT_ENABLE_ALL, GraphOptimizationLevel.ORT_DISABLE_ALL):
        options = SessionOptions()
        options.graph_optimization_level = level
        got = deformrt.InferenceSession(MODEL, options, threads=threads).run(None, {"x": x})[0]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
