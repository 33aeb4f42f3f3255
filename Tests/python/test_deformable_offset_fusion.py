"""The DeformableOffsetFusion pass: a DCNv2 whose offsets and mask come from one sibling Conv
through two Slices (or a Split) and a Sigmoid reads them from that Conv's output directly.

Checked on the graph the session runs (the profile: no Slice, Split or Sigmoid node runs, and the
deformable convolution lists them as fused) and on the outputs, against onnxruntime and against
the same session with graph optimisation disabled. Tolerance rtol 1e-4, atol 1e-4: both sum the
same products in another order (offsets up to a few pixels, so bilinear weights are well
conditioned); a wrong channel or a missing sigmoid changes outputs by O(1)."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import deformrt
from deformrt import GraphOptimizationLevel, SessionOptions

ort = pytest.importorskip("onnxruntime")


def dcnv2_model(spelling: str, offset_group: int, extra_reader: bool = False, opset: int = 19) -> bytes:
    """x -> Conv(3x3, 3K channels) -> {Slice | Split} -> offsets, Sigmoid(logits) -> DeformConv -> Relu."""
    rng = np.random.default_rng(11)
    cin, cout, kh, kw = 4, 6, 3, 3
    k = offset_group * kh * kw
    inits = [
        numpy_helper.from_array((rng.standard_normal((3 * k, cin, 3, 3)) * 0.3).astype(np.float32), "w_off"),
        numpy_helper.from_array(rng.standard_normal(3 * k).astype(np.float32), "b_off"),
        numpy_helper.from_array(rng.standard_normal((cout, cin, kh, kw)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32), "b"),
    ]
    nodes = [helper.make_node("Conv", ["x", "w_off", "b_off"], ["p"], name="offset_conv", pads=[1, 1, 1, 1])]
    if spelling == "slice":
        inits += [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
                  [("s0", [0]), ("e0", [2 * k]), ("s1", [2 * k]), ("e1", [np.iinfo(np.int64).max]), ("ax", [1])]]
        nodes += [helper.make_node("Slice", ["p", "s0", "e0", "ax"], ["offset"], name="slice_offset"),
                  helper.make_node("Slice", ["p", "s1", "e1", "ax"], ["logits"], name="slice_mask")]
    else:
        inits.append(numpy_helper.from_array(np.array([2 * k, k], np.int64), "sizes"))
        nodes.append(helper.make_node("Split", ["p", "sizes"], ["offset", "logits"], name="split", axis=1))
    nodes += [
        helper.make_node("Sigmoid", ["logits"], ["mask"], name="mask_sigmoid"),
        helper.make_node("DeformConv", ["x", "w", "offset", "b", "mask"], ["d"], name="dcn", pads=[1, 1, 1, 1],
                         offset_group=offset_group),
        helper.make_node("Relu", ["d"], ["y"], name="relu"),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", cout, "H", "W"])]
    if extra_reader:
        nodes.append(helper.make_node("ReduceMean", ["p"], ["p_mean"], name="reads_p", keepdims=1))
        outputs.append(helper.make_tensor_value_info("p_mean", TensorProto.FLOAT, [1, 1, 1, 1]))
    graph = helper.make_graph(nodes, "dcnv2", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", cin, "H", "W"])],
                              outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def run(model: bytes, x: np.ndarray, level, prefix=None):
    options = SessionOptions()
    options.graph_optimization_level = level
    if prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(prefix)
    with deformrt.InferenceSession(model, options, threads=2) as session:
        outputs = session.run(None, {"x": x})
        events = None
        if prefix is not None:
            with open(session.end_profiling()) as file:
                events = [e for e in json.load(file) if e["cat"] == "Node"]
    return outputs, events


@pytest.mark.parametrize("spelling", ["slice", "split"])
@pytest.mark.parametrize("offset_group", [1, 2])
@pytest.mark.parametrize("shape", [(1, 4, 9, 11), (2, 4, 7, 6)])
def test_offsets_and_mask_are_read_from_the_offset_conv(tmp_path, spelling, offset_group, shape):
    model = dcnv2_model(spelling, offset_group)
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    (want,) = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    (got,), events = run(model, x, GraphOptimizationLevel.ORT_ENABLE_ALL, tmp_path / "fused")
    (plain,), _ = run(model, x, GraphOptimizationLevel.ORT_DISABLE_ALL)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got, plain, rtol=1e-4, atol=1e-4)
    ran = {e["name"] for e in events}
    assert not ran & {"slice_offset", "slice_mask", "split", "mask_sigmoid"}, ran
    dcn = next(e for e in events if e["name"] == "dcn")
    assert {"dcn", "mask_sigmoid", "relu"} <= set(dcn["args"]["fused_nodes"])
    assert dcn["args"]["input_type_shape"][2][1] == 3 * offset_group * 9  # reads P whole


def test_not_fused_when_the_offset_conv_output_has_another_reader(tmp_path):
    """P is overwritten by the fused operator, so a second reader keeps the slices."""
    model = dcnv2_model("slice", 1, extra_reader=True)
    x = np.random.default_rng(4).standard_normal((1, 4, 8, 8)).astype(np.float32)
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got, events = run(model, x, GraphOptimizationLevel.ORT_ENABLE_ALL, tmp_path / "kept")
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)
    assert {"slice_offset", "slice_mask", "mask_sigmoid"} <= {e["name"] for e in events}


def test_offsets_fixed_while_planning_are_not_changed_by_runs():
    """The offset conv reads ConstantOfShape(Shape(x)): P is folded while planning (a constant of
    the plan, not of the graph), so the fused operator must turn its logits into the mask in a
    copy; run twice, the outputs stay onnxruntime's."""
    base = onnx.load_from_string(dcnv2_model("slice", 1))
    graph = base.graph
    shape = helper.make_node("Shape", ["x"], ["x_shape"], name="shape")
    fill = helper.make_node("ConstantOfShape", ["x_shape"], ["x_const"], name="fill",
                            value=numpy_helper.from_array(np.array([0.25], np.float32)))
    graph.node.insert(0, fill)
    graph.node.insert(0, shape)
    graph.node[2].input[0] = "x_const"  # offset_conv reads the plan-time constant
    onnx.checker.check_model(base)
    model = base.SerializeToString()
    x = np.random.default_rng(6).standard_normal((1, 4, 7, 9)).astype(np.float32)
    (want,) = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    with deformrt.InferenceSession(model, threads=2) as session:
        for _ in range(3):
            (got,) = session.run(None, {"x": x})
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
