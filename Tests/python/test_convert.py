"""`deformrt convert`: mmcv / mmdeploy deformable convolutions rewritten as ONNX DeformConv.

The converted file must pass onnx's checker and run in onnxruntime (which has no mmcv operators)
with the results DeformRT gives for the original file (tolerance 1e-4 absolute, float32 sums of a
few hundred terms). An opset-11 model is moved to opset 19, so the nodes whose form changed on the
way (Split and Squeeze attributes, ReduceMean axes, Softmax's 2-D coercion, Dropout's ratio) are
in the model and checked through the same comparison.
"""
import os
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import deformrt

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
CLI = os.path.join(ROOT, "build", "bin", "deformrt")


def _mmcv_model(opset, domain="mmdeploy", rng=None):
    rng = rng or np.random.default_rng(0)
    c, k = 6, 3
    inits = {
        "ow": (rng.standard_normal((27, c, 3, 3)) * 0.1).astype(np.float32),
        "ob": (rng.standard_normal(27) * 0.5).astype(np.float32),
        "w1": (rng.standard_normal((8, c, 3, 3)) * 0.2).astype(np.float32),
        "b1": rng.standard_normal(8).astype(np.float32),
        "ow2": (rng.standard_normal((2 * 2 * 9, 8, 3, 3)) * 0.1).astype(np.float32),
        "w2": (rng.standard_normal((8, 4, 3, 3)) * 0.2).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "ow", "ob"], ["om"], pads=[1, 1, 1, 1]),
        helper.make_node("Split", ["om"], ["o1", "o2", "m"], axis=1, split=[9, 9, 9]),
        helper.make_node("Concat", ["o1", "o2"], ["offset"], axis=1),
        helper.make_node("Sigmoid", ["m"], ["mask"]),
        helper.make_node("MMCVModulatedDeformConv2d", ["x", "offset", "mask", "w1", "b1"], ["d1"], domain=domain,
                         name="dcn_v2", stride=[1, 1], padding=[1, 1], dilation=[1, 1], groups=1, deform_groups=1),
        helper.make_node("Relu", ["d1"], ["r1"]),
        helper.make_node("Dropout", ["r1"], ["r1d"], ratio=0.3),
        helper.make_node("Conv", ["r1d", "ow2"], ["offset2"], pads=[2, 2, 2, 2], strides=[2, 2], dilations=[2, 2]),
        helper.make_node("MMCVDeformConv2d", ["r1d", "offset2", "w2"], ["d2"], domain=domain, name="dcn_v1",
                         stride=[2, 2], padding=[2, 2], dilation=[2, 2], groups=2, deform_groups=2),
        helper.make_node("ReduceMean", ["d2"], ["pooled"], axes=[2, 3], keepdims=1),
        helper.make_node("Squeeze", ["pooled"], ["flat"], axes=[2, 3]),
        helper.make_node("Softmax", ["d2"], ["probs"], axis=1),
    ]
    if opset >= 13:  # Split's sizes and the axes became inputs
        nodes[1] = helper.make_node("Split", ["om", "split"], ["o1", "o2", "m"], axis=1)
        inits["split"] = np.array([9, 9, 9], np.int64)
        nodes[10] = helper.make_node("Squeeze", ["pooled", "sq_axes"], ["flat"])
        inits["sq_axes"] = np.array([2, 3], np.int64)
        nodes[6] = helper.make_node("Dropout", ["r1"], ["r1d"])
    if opset >= 18:
        nodes[9] = helper.make_node("ReduceMean", ["d2", "rm_axes"], ["pooled"], keepdims=1)
        inits["rm_axes"] = np.array([2, 3], np.int64)
    graph = helper.make_graph(nodes, "mmdeploy_like", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, c, 13, 11])],
                              [helper.make_tensor_value_info("flat", TensorProto.FLOAT, [2, 8]),
                               helper.make_tensor_value_info("probs", TensorProto.FLOAT, [2, 8, 7, 6])],
                              [numpy_helper.from_array(v, n) for n, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(domain, 1)])
    model.ir_version = 8
    return model


def _convert(tmp_path, model, name="model"):
    source, target = tmp_path / f"{name}.onnx", tmp_path / f"{name}.std.onnx"
    source.write_bytes(model.SerializeToString())
    result = subprocess.run([CLI, "convert", str(source), str(target)], capture_output=True, text=True, timeout=120)
    return source, target, result


@pytest.mark.parametrize("opset,domain", [(11, "mmdeploy"), (13, "mmcv"), (19, "mmdeploy")])
def test_converted_model_runs_in_onnxruntime_with_the_same_results(tmp_path, opset, domain):
    rng = np.random.default_rng(opset)
    source, target, result = _convert(tmp_path, _mmcv_model(opset, domain, rng))
    assert result.returncode == 0, result.stderr
    assert "2 deformable convolution(s) rewritten" in result.stdout
    assert ("opset %d -> 19" % opset in result.stdout) == (opset < 19)
    converted = onnx.load(str(target))
    onnx.checker.check_model(converted, full_check=True)
    ops = {(n.domain, n.op_type) for n in converted.graph.node}
    assert ("", "DeformConv") in ops and not any(d in ("mmcv", "mmdeploy") for d, _ in ops)
    assert {o.domain: o.version for o in converted.opset_import}[""] == 19

    x = rng.standard_normal((2, 6, 13, 11)).astype(np.float32)
    with deformrt.InferenceSession(str(source)) as session:
        ours = session.run(None, {"x": x})
    theirs = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)
    with deformrt.InferenceSession(str(target)) as session:
        again = session.run(None, {"x": x})
    for a, b in zip(ours, again):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_convert_refuses_what_it_cannot_rewrite(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 5, 5])
    inits = [numpy_helper.from_array(np.zeros((2, 2, 3, 3), np.float32), "w"),
             numpy_helper.from_array(np.zeros((1, 18, 5, 5), np.float32), "off")]

    openvino = helper.make_model(helper.make_graph(
        [helper.make_node("DeformableConv2D", ["x", "off", "w"], ["y"], domain="org.openvinotoolkit", pads=[1, 1, 1, 1])],
        "ov", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("org.openvinotoolkit", 1)])
    _, target, result = _convert(tmp_path, openvino, "openvino")
    assert result.returncode != 0 and "DeformableConv2D" in result.stderr and "border" in result.stderr
    assert not target.exists()

    old = _mmcv_model(11)
    old.opset_import[0].version = 10
    _, _, result = _convert(tmp_path, old, "old")
    assert result.returncode != 0 and "opset is 10" in result.stderr

    upsample = helper.make_model(helper.make_graph(
        [helper.make_node("MMCVDeformConv2d", ["x", "off", "w"], ["d"], domain="mmcv", padding=[1, 1]),
         helper.make_node("Upsample", ["d", "scales"], ["y"], mode="nearest")],
        "up", [x], [y], inits + [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]),
        opset_imports=[helper.make_opsetid("", 11), helper.make_opsetid("mmcv", 1)])
    _, _, result = _convert(tmp_path, upsample, "upsample")
    assert result.returncode != 0 and "Upsample" in result.stderr
