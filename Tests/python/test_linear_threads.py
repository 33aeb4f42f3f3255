"""MatMul, Gemm and Einsum products on the packed kernels (a constant B packed once per plan, a
run-time B packed per run) and the recurrent layers with packed weights: against float64 NumPy,
onnx.reference or onnxruntime at sizes that are not multiples of the kernels' 6-row groups,
16-column strips or 64-column blocks, on 1, 2 and 3 threads.

Tolerances: products rtol 1e-4 / atol 1e-5 (float32 sums of up to ~700 products, compared with
float64 sums); recurrent layers rtol 1e-4 / atol 3e-5 as in test_recurrent.py. The products'
tiling does not depend on the thread count, so 1, 2 and 3 threads must give bit-identical
outputs, and two processes must too.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import deformrt

RTOL, ATOL = 1e-4, 1e-5


def model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "linear", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
                              [numpy_helper.from_array(v, n) for n, v in initializers])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def run_all_threads(blob, feeds):
    """Outputs on 1, 2 and 3 threads; they must be bit-identical."""
    results = []
    for threads in (1, 2, 3):
        with deformrt.InferenceSession(blob, threads=threads) as session:
            results.append(session.run(None, feeds))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert a.tobytes() == b.tobytes(), "outputs differ between thread counts"
    return results[0]


MATMUL_CONSTANT_B = [((1, 7), (7, 5)), ((1, 33), (33, 130)), ((5, 17), (17, 16)), ((7, 65), (65, 129)),
                     ((2, 13, 40), (40, 47)), ((3, 100, 24), (24, 64)), ((2, 9, 19), (2, 19, 33)),
                     ((4, 11), (11,)), ((6, 700), (700, 20))]


@pytest.mark.parametrize("a_shape,b_shape", MATMUL_CONSTANT_B, ids=[f"{a}x{b}" for a, b in MATMUL_CONSTANT_B])
def test_matmul_constant_weight(a_shape, b_shape):
    """B an initializer (a Linear layer): packed once; batch dims of A stacked into M."""
    rng = np.random.default_rng(abs(hash((a_shape, b_shape))) % 2**32)
    a = rng.standard_normal(a_shape).astype(np.float32)
    b = (rng.standard_normal(b_shape) / np.sqrt(b_shape[-2] if len(b_shape) > 1 else b_shape[0])).astype(np.float32)
    blob = model([helper.make_node("MatMul", ["a", "b"], ["y"])], [("a", a_shape)], ["y"], [("b", b)]).SerializeToString()
    (got,) = run_all_threads(blob, {"a": a})
    np.testing.assert_allclose(got, np.matmul(a.astype(np.float64), b.astype(np.float64)), rtol=RTOL, atol=ATOL)


MATMUL_RUNTIME_B = [((6, 16), (16, 16)), ((2, 4, 10, 16), (2, 4, 16, 20)), ((37, 9), (9, 70)), ((1, 3, 50, 8), (3, 8, 50))]


@pytest.mark.parametrize("a_shape,b_shape", MATMUL_RUNTIME_B, ids=[f"{a}x{b}" for a, b in MATMUL_RUNTIME_B])
def test_matmul_runtime_operands(a_shape, b_shape):
    """Both operands computed at run time (attention's Q K^T and weights x V): B packed per run."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal(a_shape).astype(np.float32)
    b = rng.standard_normal(b_shape).astype(np.float32)
    blob = model([helper.make_node("MatMul", ["a", "b"], ["y"])], [("a", a_shape), ("b", b_shape)], ["y"]).SerializeToString()
    (got,) = run_all_threads(blob, {"a": a, "b": b})
    np.testing.assert_allclose(got, np.matmul(a.astype(np.float64), b.astype(np.float64)), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("c_shape", [None, (), (1,), "N", "M1", "MN"], ids=str)
@pytest.mark.parametrize("constant_b", [True, False])
def test_gemm_packed(trans_a, trans_b, c_shape, constant_b):
    """alpha, beta, transA, transB and every broadcast of C in the kernels' epilogue, against onnx.reference."""
    rng = np.random.default_rng(9)
    m, k, n = 13, 70, 33
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    names, inputs, inits, feeds = ["a", "b"], [("a", a.shape)], [], {"a": a}
    if constant_b:
        inits.append(("b", b))
    else:
        inputs.append(("b", b.shape))
        feeds["b"] = b
    if c_shape is not None:
        shape = {(): (), (1,): (1,), "N": (n,), "M1": (m, 1), "MN": (m, n)}[c_shape]
        inits.append(("c", rng.standard_normal(shape).astype(np.float32)))
        names.append("c")
    node = helper.make_node("Gemm", names, ["y"], transA=trans_a, transB=trans_b, alpha=0.75, beta=-1.5)
    m_ = model([node], inputs, ["y"], inits, opset=13)
    (got,) = run_all_threads(m_.SerializeToString(), feeds)
    (want,) = ReferenceEvaluator(m_).run(None, feeds)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-4)


@pytest.mark.parametrize("equation,shapes", [("bij,bjk->bik", [(3, 20, 9), (3, 9, 40)]),
                                             ("bhqd,bhkd->bhqk", [(2, 3, 12, 16), (2, 3, 17, 16)]),
                                             ("ij,jk->ik", [(30, 50), (50, 70)]),
                                             ("bji,bjk->bik", [(2, 9, 20), (2, 9, 18)])])
def test_einsum_products(equation, shapes):
    """Einsum's GEMM-shaped equations (batched, B and A read transposed) against NumPy."""
    rng = np.random.default_rng(11)
    a, b = (rng.standard_normal(s).astype(np.float32) for s in shapes)
    blob = model([helper.make_node("Einsum", ["a", "b"], ["y"], equation=equation)],
                 [("a", a.shape), ("b", b.shape)], ["y"], opset=12).SerializeToString()
    (got,) = run_all_threads(blob, {"a": a, "b": b})
    np.testing.assert_allclose(got, np.einsum(equation, a.astype(np.float64), b.astype(np.float64)), rtol=RTOL, atol=ATOL)


def mlp_model(seed=0, tokens=70, width=40, hidden=100):
    """A transformer block's MLP: MatMul + Add + Gelu (as Erf) + MatMul + Add."""
    rng = np.random.default_rng(seed)
    inits = [("w1", (rng.standard_normal((width, hidden)) / np.sqrt(width)).astype(np.float32)),
             ("b1", (0.1 * rng.standard_normal(hidden)).astype(np.float32)),
             ("w2", (rng.standard_normal((hidden, width)) / np.sqrt(hidden)).astype(np.float32)),
             ("b2", (0.1 * rng.standard_normal(width)).astype(np.float32)),
             ("half", np.array(0.5, np.float32)), ("one", np.array(1.0, np.float32)),
             ("rsqrt2", np.array(1 / np.sqrt(2), np.float32))]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"]), helper.make_node("Add", ["h0", "b1"], ["h1"]),
             helper.make_node("Mul", ["h1", "rsqrt2"], ["h2"]), helper.make_node("Erf", ["h2"], ["h3"]),
             helper.make_node("Add", ["h3", "one"], ["h4"]), helper.make_node("Mul", ["h1", "h4"], ["h5"]),
             helper.make_node("Mul", ["h5", "half"], ["h6"]), helper.make_node("MatMul", ["h6", "w2"], ["h7"]),
             helper.make_node("Add", ["h7", "b2"], ["y"])]
    return model(nodes, [("x", [1, tokens, width])], ["y"], inits)


def test_mlp_against_onnxruntime_and_across_processes(tmp_path):
    """The MLP at 1-3 threads against onnxruntime; a second process gives the same bytes."""
    m = mlp_model()
    blob = m.SerializeToString()
    x = np.random.default_rng(1).standard_normal((1, 70, 40)).astype(np.float32)
    (got,) = run_all_threads(blob, {"x": x})
    (want,) = ort.InferenceSession(blob, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-4)
    path = tmp_path / "mlp.onnx"
    path.write_bytes(blob)
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(f"""
        import numpy as np, deformrt
        with deformrt.InferenceSession({str(path)!r}, threads=2) as s:
            (y,) = s.run(None, {{"x": np.load({str(tmp_path / 'x.npy')!r})}})
        np.save({str(tmp_path / 'y.npy')!r}, y)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, env=dict(os.environ))
    assert np.load(tmp_path / "y.npy").tobytes() == got.tobytes()


# ---- recurrent layers with packed weights ---------------------------------------------------------

def recurrent_model(op, direction, T, B, I, H, seed, initializers, layout=0, activations=None):
    rng = np.random.default_rng(seed)
    nd = 2 if direction == "bidirectional" else 1
    g = {"RNN": 1, "GRU": 3, "LSTM": 4}[op]
    weights = {"W": (0.4 * rng.standard_normal((nd, g * H, I))).astype(np.float32),
               "R": (0.4 * rng.standard_normal((nd, g * H, H))).astype(np.float32),
               "B": (0.3 * rng.standard_normal((nd, 2 * g * H))).astype(np.float32)}
    x = rng.standard_normal((B, T, I) if layout else (T, B, I)).astype(np.float32)
    attrs = dict(hidden_size=H, direction=direction)
    if layout:
        attrs["layout"] = 1
    if activations:
        attrs["activations"] = activations * nd
    if op == "GRU":
        attrs["linear_before_reset"] = seed % 2
    outputs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    node = helper.make_node(op, ["X", "W", "R", "B"], outputs, **attrs)
    inputs = [("X", x.shape)] + [(n, v.shape) for n, v in weights.items() if not initializers]
    inits = [(n, v) for n, v in weights.items()] if initializers else []
    feeds = {"X": x} if initializers else {"X": x, **weights}
    return model([node], inputs, outputs, inits, opset=14), feeds


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("initializers", [True, False], ids=["constant", "runtime"])
def test_recurrent_packed_weights(op, direction, initializers):
    """Hidden sizes off the 16-column strips (17) and a batch off the 6-row groups (7); weights
    packed at plan time (initializers) or per run (inputs); against onnxruntime, 1-3 threads identical."""
    m, feeds = recurrent_model(op, direction, T=9, B=7, I=5, H=17, seed=len(op) + len(direction), initializers=initializers)
    blob = m.SerializeToString()
    got = run_all_threads(blob, feeds)
    want = ort.InferenceSession(blob, providers=["CPUExecutionProvider"]).run(None, feeds)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=3e-5)


def test_lstm_fused_gates_and_general_path_agree_with_onnxruntime():
    """The default activations take the fused SIMD16 gate pass; Relu as the last function takes
    the general path. Both against onnxruntime."""
    for activations in (None, ["Sigmoid", "Tanh", "Relu"]):
        m, feeds = recurrent_model("LSTM", "bidirectional", T=6, B=2, I=33, H=40, seed=3, initializers=True,
                                   activations=activations)
        blob = m.SerializeToString()
        got = run_all_threads(blob, feeds)
        want = ort.InferenceSession(blob, providers=["CPUExecutionProvider"]).run(None, feeds)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=3e-5)


# ---- MatMulBiasFusion: MatMul + Add(bias [N]) as one FusedMatMul ----------------------------------

def linear_model(k, n, bias_shape, extra_reader=False, seed=0):
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"], name="linear"),
             helper.make_node("Add", ["mm", "b"], ["y"], name="bias")]
    outputs = ["y"]
    if extra_reader:
        nodes.append(helper.make_node("Relu", ["mm"], ["r"], name="reads_mm"))
        outputs.append("r")
    inits = [("w", (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)),
             ("b", rng.standard_normal(bias_shape).astype(np.float32))]
    return model(nodes, [("x", ["N", "T", k])], outputs, inits).SerializeToString()


def run_profiled(blob, feeds, level, prefix, threads=2):
    import json
    options = deformrt.SessionOptions()
    options.graph_optimization_level = level
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = str(prefix)
    with deformrt.InferenceSession(blob, options) as session:
        outputs = session.run(None, feeds)
        with open(session.end_profiling()) as file:
            events = [e for e in json.load(file) if e["cat"] == "Node"]
    return outputs, events


@pytest.mark.parametrize("k,n", [(19, 33), (19, 5), (64, 128)])
def test_matmul_bias_add_fused(tmp_path, k, n):
    """The Add is taken into the product's epilogue (N = 5: the OpenBLAS path adds it after);
    against onnxruntime and the unoptimised graph (rtol 1e-5, atol 1e-5)."""
    blob = linear_model(k, n, (n,))
    x = np.random.default_rng(3).standard_normal((2, 7, k)).astype(np.float32)
    (want,) = ort.InferenceSession(blob, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    Level = deformrt.GraphOptimizationLevel
    (got,), events = run_profiled(blob, {"x": x}, Level.ORT_ENABLE_ALL, tmp_path / "fused")
    (plain,), plain_events = run_profiled(blob, {"x": x}, Level.ORT_DISABLE_ALL, tmp_path / "plain")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, plain, rtol=1e-5, atol=1e-5)
    assert [e["name"] for e in events] == ["linear"]
    assert events[0]["args"]["fused_nodes"] == ["linear", "bias"]
    assert [e["name"] for e in plain_events] == ["linear", "bias"]


@pytest.mark.parametrize("bias_shape,extra_reader", [((1, 33), False), ((33,), True), ((7, 33), False)])
def test_matmul_bias_add_not_fused(tmp_path, bias_shape, extra_reader):
    """A bias that is not [N], or a MatMul output with another reader, keeps its Add."""
    blob = linear_model(19, 33, bias_shape, extra_reader=extra_reader)
    x = np.random.default_rng(4).standard_normal((2, 7, 19)).astype(np.float32)
    want = ort.InferenceSession(blob, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got, events = run_profiled(blob, {"x": x}, deformrt.GraphOptimizationLevel.ORT_ENABLE_ALL, tmp_path / "kept")
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    assert "bias" in {e["name"] for e in events}
