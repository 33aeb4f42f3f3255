"""Resize after a convolution runs on channels-last data (the layout pass's ai.deformrt
ChannelsLastResize), and Shape of a channels-last value reports the NCHW shape (ChannelsLastShape),
so an FPN's upsampling to another map's size (Resize with sizes from Shape, Slice and Concat, as
torch.onnx.export writes F.interpolate(size=...)) keeps the maps channels-last. Against the NCHW
kernels of the unoptimised session, which must agree exactly (the same products and sums per
element), and against onnxruntime (rtol 1e-5, atol 1e-5: the convolutions around it)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import deformrt
from deformrt import GraphOptimizationLevel, SessionOptions
from profiled import run_profiled

ort = pytest.importorskip("onnxruntime")


def fpn_model(mode: str, coordinates: str, by: str, channels: int) -> bytes:
    """Two convolutions of x (the second at half resolution); the small map resized to the large
    one's size (`by`: constant scales, constant sizes, or sizes from the large map's Shape), added,
    convolved again; the Shape output (with start/end) is a graph output too."""
    rng = np.random.default_rng(channels)
    inits = {
        # Small integers (and integer images) keep both 3x3 convolutions exact in any summation
        # order, and the 1x1 one picks one channel each: the layouts' convolution engines may sum
        # in different orders (OpenBLAS on the baseline tier), so this isolates the Resize.
        "w1": rng.integers(-2, 3, (channels, 3, 3, 3)).astype(np.float32),
        "w2": rng.integers(-2, 3, (channels, 3, 3, 3)).astype(np.float32),
        "w3": np.eye(5, channels, dtype=np.float32)[:, :, None, None],
        "scales": np.array([1, 1, 2, 2], np.float32),
        "sizes": np.array([2, channels, 14, 18], np.int64),
        "i0": np.array([0], np.int64), "i2": np.array([2], np.int64), "i4": np.array([4], np.int64),
    }
    nodes = [helper.make_node("Conv", ["x", "w1"], ["big"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["x", "w2"], ["small"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Shape", ["big"], ["hw"], start=2)]
    attrs = dict(mode=mode, coordinate_transformation_mode=coordinates)
    if mode == "nearest":
        attrs["nearest_mode"] = "floor" if coordinates == "asymmetric" else "round_prefer_floor"
    if by == "scales":
        nodes.append(helper.make_node("Resize", ["small", "", "scales"], ["up"], **attrs))
    elif by == "sizes":
        nodes.append(helper.make_node("Resize", ["small", "", "", "sizes"], ["up"], **attrs))
    else:
        nodes += [helper.make_node("Shape", ["small"], ["small_shape"]),
                  helper.make_node("Slice", ["small_shape", "i0", "i2"], ["nc"]),
                  helper.make_node("Concat", ["nc", "hw"], ["target"], axis=0),
                  helper.make_node("Resize", ["small", "", "", "target"], ["up"], **attrs)]
    nodes += [helper.make_node("Add", ["big", "up"], ["sum"]),
              helper.make_node("Conv", ["sum", "w3"], ["y"])]
    graph = helper.make_graph(nodes, "fpn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 14, 18])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("hw", TensorProto.INT64, None)],
                              initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()


def session(model: bytes, level) -> deformrt.InferenceSession:
    options = SessionOptions()
    options.graph_optimization_level = level
    return deformrt.InferenceSession(model, options, threads=2)


@pytest.mark.parametrize("channels", [16, 21])
@pytest.mark.parametrize("by", ["scales", "sizes", "shape"])
@pytest.mark.parametrize("mode,coordinates", [("linear", "half_pixel"), ("linear", "align_corners"),
                                              ("nearest", "asymmetric"), ("nearest", "half_pixel")])
def test_resize_stays_channels_last(channels, by, mode, coordinates):
    model = fpn_model(mode, coordinates, by, channels)
    x = np.random.default_rng(5).integers(-4, 5, (2, 3, 14, 18)).astype(np.float32)
    fast = session(model, GraphOptimizationLevel.ORT_ENABLE_ALL)
    plain = session(model, GraphOptimizationLevel.ORT_DISABLE_ALL)
    got = fast.run(None, {"x": x})
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got[1], want[1])
    exact = plain.run(None, {"x": x})
    np.testing.assert_array_equal(got[0], exact[0])
    np.testing.assert_array_equal(got[1], exact[1])


def test_the_pass_rewrites_resize_and_shape(tmp_path):
    """The nodes that run (the profiler's trace): ChannelsLastResize on [N, H, W, C] data and no
    Transpose (the last Conv writes y in NCHW itself). The Shape nodes (ChannelsLastShape) are
    computed when the plan is made; their NCHW result is the `hw` output the test above checks."""
    model = fpn_model("linear", "half_pixel", "shape", 16)
    _, events = run_profiled(model, {"x": np.zeros((2, 3, 14, 18), np.float32)}, tmp_path / "fpn")
    nodes = [event["args"] for event in events]
    ops = [node["op_name"] for node in nodes]
    assert ops.count("ai.deformrt::ChannelsLastResize") == 1 and "Transpose" not in ops, ops
    resize = nodes[ops.index("ai.deformrt::ChannelsLastResize")]
    assert resize["input_type_shape"][0] == [2, 7, 9, 16] and resize["output_type_shape"][0] == [2, 14, 18, 16]
