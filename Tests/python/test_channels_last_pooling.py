"""MaxPool after a convolution runs on channels-last data (ai.deformrt ChannelsLastMaxPool: 64
channels per pass over the window, then 16, then one at a time). Against the NCHW kernel of the
unoptimised session, which must agree exactly (max is exact; NaN in a window gives NaN), and
against onnxruntime where there are no NaNs (rtol 1e-5, atol 1e-5: the convolution before it)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import deformrt
from deformrt import GraphOptimizationLevel, SessionOptions

ort = pytest.importorskip("onnxruntime")


def conv_pool_model(channels: int, pool: dict) -> bytes:
    rng = np.random.default_rng(channels)
    w = numpy_helper.from_array(rng.standard_normal((channels, 3, 1, 1)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("MaxPool", ["c"], ["y"], name="pool", **pool)]
    graph = helper.make_graph(nodes, "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 17, 14])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


def session(model: bytes, level) -> deformrt.InferenceSession:
    options = SessionOptions()
    options.graph_optimization_level = level
    return deformrt.InferenceSession(model, options, threads=2)


@pytest.mark.parametrize("channels", [19, 64, 80, 144])
@pytest.mark.parametrize("pool", [
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[2, 3], strides=[1, 2], dilations=[2, 1], ceil_mode=1),
    dict(kernel_shape=[3, 3], pads=[2, 0, 1, 2]),
])
def test_channels_last_max_pool(channels, pool):
    model = conv_pool_model(channels, pool)
    x = np.random.default_rng(3).standard_normal((2, 3, 17, 14)).astype(np.float32)
    fast, plain = session(model, GraphOptimizationLevel.ORT_ENABLE_ALL), session(model, GraphOptimizationLevel.ORT_DISABLE_ALL)
    (want,) = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    (got,) = fast.run(None, {"x": x})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got, plain.run(None, {"x": x})[0])
    # NaN pixels (every channel of them, through the 1x1 convolution) propagate to their windows.
    x[0, 1, 4, 5] = np.nan
    x[1, 0, 16, 13] = np.nan
    (got,) = fast.run(None, {"x": x})
    (expected,) = plain.run(None, {"x": x})
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    assert np.isnan(got).any()
    np.testing.assert_array_equal(got[~np.isnan(got)], expected[~np.isnan(expected)])
