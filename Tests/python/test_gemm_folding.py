"""GemmAffineFolding: a BatchNormalization after a Gemm (BatchNorm1d after Linear) is folded into
the Gemm's weights and bias. Outputs against onnxruntime and the unoptimised session (rtol 1e-5,
atol 1e-5: the fold reassociates (A B) s into A (B s)); the profile shows the BatchNormalization
gone and named in the Gemm's fused_nodes. A BN whose input has another reader stays."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from deformrt import GraphOptimizationLevel
from profiled import run_profiled

ort = pytest.importorskip("onnxruntime")


def gemm_bn_model(trans_b: int, c_shape, alpha: float, beta: float, extra_reader: bool = False) -> bytes:
    rng = np.random.default_rng(trans_b * 10 + len(c_shape or ()))
    k, n = 19, 13
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    inits = [numpy_helper.from_array(b, "B")]
    inputs = ["a", "B"]
    if c_shape is not None:
        inits.append(numpy_helper.from_array(rng.standard_normal(c_shape).astype(np.float32), "C"))
        inputs.append("C")
    for name, values in [("gamma", rng.random(n) + 0.5), ("beta", rng.standard_normal(n)),
                         ("mean", rng.standard_normal(n)), ("var", rng.random(n) + 0.5)]:
        inits.append(numpy_helper.from_array(values.astype(np.float32), name))
    nodes = [helper.make_node("Gemm", inputs, ["g"], name="linear", transB=trans_b, alpha=alpha, beta=beta),
             helper.make_node("BatchNormalization", ["g", "gamma", "beta", "mean", "var"], ["y"], name="bn", epsilon=1e-3)]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["M", n])]
    if extra_reader:
        nodes.append(helper.make_node("Relu", ["g"], ["r"], name="reads_g"))
        outputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, ["M", n]))
    graph = helper.make_graph(nodes, "gemm_bn", [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["M", k])],
                              outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def run(model, a, level, prefix):
    return run_profiled(model, {"a": a}, prefix, level)


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("c_shape", [None, (13,), (1, 13), (1,)])
def test_batch_normalization_after_gemm_is_folded(tmp_path, trans_b, c_shape):
    model = gemm_bn_model(trans_b, c_shape, alpha=0.5, beta=2.0)
    a = np.random.default_rng(1).standard_normal((7, 19)).astype(np.float32)
    (want,) = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"a": a})
    (got,), events = run(model, a, GraphOptimizationLevel.ORT_ENABLE_ALL, tmp_path / "folded")
    (plain,), plain_events = run(model, a, GraphOptimizationLevel.ORT_DISABLE_ALL, tmp_path / "plain")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, plain, rtol=1e-5, atol=1e-5)
    assert [e["name"] for e in events] == ["linear"]
    assert events[0]["args"]["fused_nodes"] == ["linear", "bn"]
    assert [e["name"] for e in plain_events] == ["linear", "bn"]


def test_not_folded_when_the_gemm_output_has_another_reader(tmp_path):
    model = gemm_bn_model(1, (13,), alpha=1.0, beta=1.0, extra_reader=True)
    a = np.random.default_rng(2).standard_normal((3, 19)).astype(np.float32)
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"a": a})
    got, events = run(model, a, GraphOptimizationLevel.ORT_ENABLE_ALL, tmp_path / "kept")
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    assert "bn" in {e["name"] for e in events}
