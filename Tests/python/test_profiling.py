"""The profiler (issue 12, item 1): per-node events in a Chrome-trace file, through the Python API
(SessionOptions.enable_profiling / end_profiling, as onnxruntime), and `deformrt bench`.

The models are built here; the trace's node names, op types and shapes are compared with the
graph itself (and the graph after the passes), and the outputs with onnxruntime (rtol 1e-4,
atol 1e-5: the profiled and unprofiled runs sum in the same order, so they must be identical)."""
from __future__ import annotations

import json
import os
import re
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import deformrt
from deformrt import DeformRTError, GraphOptimizationLevel, SessionOptions, Status

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CLI = os.path.join(ROOT, ".build", "release", "deformrt-cli")
EXAMPLE_MODEL = os.path.join(ROOT, "examples", "models", "tiny_dcn.onnx")


def conv_bn_relu_model(dynamic: bool = False) -> bytes:
    """conv -> bn -> relu -> global pool: the passes fold bn and fuse relu into the conv."""
    rng = np.random.default_rng(3)
    weights = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b"),
        numpy_helper.from_array((rng.random(8) + 0.5).astype(np.float32), "scale"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "shift"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "mean"),
        numpy_helper.from_array((rng.random(8) + 0.5).astype(np.float32), "var"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "scale", "shift", "mean", "var"], ["n"], name="bn"),
        helper.make_node("Relu", ["n"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["y"], name="pool"),
    ]
    shape = ["N", 3, "H", "W"] if dynamic else [2, 3, 13, 11]
    out_shape = ["N", 8, 1, 1] if dynamic else [2, 8, 1, 1]
    graph = helper.make_graph(nodes, "profiled", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], initializer=weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def profiled_session(model: bytes, prefix, level=GraphOptimizationLevel.ORT_ENABLE_ALL) -> deformrt.InferenceSession:
    options = SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(prefix)
    options.graph_optimization_level = level
    return deformrt.InferenceSession(model, options, threads=2)


def load_trace(path: str):
    with open(path) as file:
        events = json.load(file)
    assert isinstance(events, list) and events
    for event in events:
        assert event["ph"] == "X" and event["dur"] >= 0 and event["ts"] >= 0 and event["cat"] in ("Node", "Session")
    return [e for e in events if e["cat"] == "Node"], [e for e in events if e["cat"] == "Session"]


def test_trace_has_one_event_per_node_run_with_names_shapes_and_fused_nodes(tmp_path):
    model = conv_bn_relu_model()
    x = np.random.default_rng(0).standard_normal((2, 3, 13, 11), dtype=np.float32)
    with profiled_session(model, tmp_path / "run") as session:
        for _ in range(3):
            (got,) = session.run(None, {"x": x})
        path = session.end_profiling()
    assert os.path.dirname(path) == str(tmp_path)
    assert re.fullmatch(r"run_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d\.json", os.path.basename(path)), path
    nodes, runs = load_trace(path)
    assert len(runs) == 3 and all(run["name"] == "model_run" for run in runs)
    # The passes fold bn into the conv and fuse relu into its epilogue: two nodes run.
    assert len(nodes) == 6
    conv = [e for e in nodes if e["name"] == "conv"]
    assert len(conv) == 3
    args = conv[0]["args"]
    assert args["fused_nodes"] == ["conv", "bn", "relu"]
    assert "Conv" in args["op_name"]
    assert args["input_type_shape"][0] == [2, 3, 13, 11]
    # 2 FLOPs per multiply-add: N * Cout * H * W * Cin * 3 * 3.
    assert args["flops"] == 2 * 2 * 8 * 13 * 11 * 3 * 3 * 3
    # Events of one run nest inside its model_run event.
    first_run = runs[0]
    inside = [e for e in nodes if first_run["ts"] <= e["ts"] <= first_run["ts"] + first_run["dur"]]
    assert len(inside) == 2

    ort = pytest.importorskip("onnxruntime")
    (want,) = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_disabled_optimisation_profiles_every_model_node(tmp_path):
    model = conv_bn_relu_model()
    with profiled_session(model, tmp_path / "plain", GraphOptimizationLevel.ORT_DISABLE_ALL) as session:
        session.run(None, {"x": np.zeros((2, 3, 13, 11), np.float32)})
        nodes, _ = load_trace(session.end_profiling())
    assert [e["name"] for e in nodes] == ["conv", "bn", "relu", "pool"]
    assert [e["args"]["op_name"] for e in nodes] == ["Conv", "BatchNormalization", "Relu", "GlobalAveragePool"]
    assert nodes[2]["args"]["fused_nodes"] == ["relu"]


def test_profiled_and_unprofiled_outputs_are_identical(tmp_path):
    model = conv_bn_relu_model(dynamic=True)
    x = np.random.default_rng(1).standard_normal((1, 3, 21, 17), dtype=np.float32)
    with profiled_session(model, tmp_path / "p") as profiled, deformrt.InferenceSession(model, threads=2) as plain:
        np.testing.assert_array_equal(profiled.run(None, {"x": x})[0], plain.run(None, {"x": x})[0])


def test_end_profiling_stops_recording_and_a_session_without_profiling_returns_empty(tmp_path):
    model = conv_bn_relu_model()
    x = np.zeros((2, 3, 13, 11), np.float32)
    with profiled_session(model, tmp_path / "once") as session:
        session.run(None, {"x": x})
        assert session.end_profiling()
        session.run(None, {"x": x})
        assert session.end_profiling() == ""
    assert len(list(tmp_path.iterdir())) == 1
    with deformrt.InferenceSession(model) as session:
        session.run(None, {"x": x})
        assert session.end_profiling() == ""


def test_unwritable_profile_is_a_clear_error(tmp_path):
    with profiled_session(conv_bn_relu_model(), tmp_path / "missing-folder" / "p") as session:
        session.run(None, {"x": np.zeros((2, 3, 13, 11), np.float32)})
        with pytest.raises(DeformRTError) as info:
            session.end_profiling()
        assert info.value.status == Status.INVALID_ARGUMENT and "missing-folder" in info.value.message


def test_profile_prefix_must_not_be_empty():
    options = SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = ""
    with pytest.raises(DeformRTError) as info:
        deformrt.InferenceSession(conv_bn_relu_model(), options)
    assert info.value.status == Status.INVALID_ARGUMENT and "file_prefix" in info.value.message


def test_session_options_and_providers_like_onnxruntime():
    options = SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    session = deformrt.InferenceSession(conv_bn_relu_model(), sess_options=options, providers=["CPUExecutionProvider"])
    assert "CPUExecutionProvider" in session.get_providers()
    assert deformrt.get_available_providers() == session.get_providers()
    with pytest.warns(UserWarning, match="CUDAExecutionProvider"):
        deformrt.InferenceSession(conv_bn_relu_model(), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    options.graph_optimization_level = 5
    with pytest.raises(DeformRTError) as info:
        deformrt.InferenceSession(conv_bn_relu_model(), options)
    assert info.value.status == Status.INVALID_ARGUMENT
    with pytest.raises(TypeError):
        deformrt.InferenceSession(conv_bn_relu_model(), sess_options={"threads": 1})


# ----------------------------------------------------------------------------- deformrt bench

def run_cli(*args, check=True):
    result = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_bench_prints_latency(tmp_path):
    text = run_cli("bench", EXAMPLE_MODEL, "--runs", "5", "--warmup", "1", "--threads", "2").stdout
    match = re.search(r"latency ms: min ([\d.]+), median ([\d.]+), p90 ([\d.]+)", text)
    assert match, text
    low, median, p90 = map(float, match.groups())
    assert 0 < low <= median <= p90
    assert "session creation:" in text and "profile" not in text


def test_bench_profile_tables_and_trace(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(conv_bn_relu_model(dynamic=True))
    prefix = tmp_path / "trace"
    text = run_cli("bench", str(path), "--shape", "x=1x3x40x30", "--runs", "4", "--warmup", "0", "--profile",
                   "--trace-file-prefix", str(prefix)).stdout
    assert "inputs: x=1x3x40x30" in text
    per_op, per_node = text.split("per op type:")[1].split("per node")
    assert "GlobalAveragePool" in per_op and "conv [fused: conv, bn, relu]" in per_node
    # Each node ran on the 4 timed runs only, and a FLOP rate is shown for the convolution.
    conv_line = next(line for line in per_node.splitlines() if line.strip().startswith("conv "))
    assert re.search(r"\s4\s+[\d.]+\s+[\d.]+%\s+[\d.]+$", conv_line), conv_line
    trace = re.search(r"trace \(chrome://tracing, Perfetto\): (\S+)", text).group(1)
    nodes, runs = load_trace(trace)
    assert len(runs) == 5  # the first run, then 4 timed ones (no warm-up)


def test_bench_errors_are_clear(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(conv_bn_relu_model(dynamic=True))
    result = run_cli("bench", str(path), check=False)
    assert result.returncode != 0 and "--shape x=" in result.stderr
    result = run_cli("bench", str(path), "--shape", "x=1x3xax4", check=False)
    assert result.returncode != 0 and "non-negative integers" in result.stderr
    result = run_cli("bench", str(path), "--shape", "x=1x4x8x8", check=False)
    assert result.returncode != 0 and "declares" in result.stderr
    result = run_cli("bench", str(path), "--shape", "y=1x3x8x8", check=False)
    assert result.returncode != 0 and "not an input" in result.stderr
    result = run_cli("bench", EXAMPLE_MODEL, "--runs", "0", check=False)
    assert result.returncode != 0 and "--runs" in result.stderr


# ----------------------------------------------------------------------------- views

def views_model() -> bytes:
    """a = Conv(x); v = Unsqueeze(Flatten(Reshape(a))) (views of a); b, c = two more convolutions
    that run after the views are made; out = Reshape(v) + c: the views' memory (a's) must stay
    untouched until out is computed. `flat` = Reshape of the graph input and `shaped` =
    Reshape(c) as a graph output stay copies."""
    rng = np.random.default_rng(5)
    w = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), f"w{i}") for i in range(3)]
    w[2] = numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), "w2")
    shapes = [numpy_helper.from_array(np.array(s, np.int64), n) for n, s in
              [("s_flat", [0, -1]), ("s_back", [2, 4, 9, 7]), ("axes", [1]), ("s_in", [2, -1])]]
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["a", "s_flat"], ["a_flat"], name="view_reshape"),
        helper.make_node("Unsqueeze", ["a_flat", "axes"], ["a_3d"], name="view_unsqueeze"),
        helper.make_node("Flatten", ["a_3d"], ["a_2d"], name="view_flatten", axis=1),
        helper.make_node("Conv", ["x", "w1"], ["b"], name="conv_b", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["b", "w2"], ["c"], name="conv_c", pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["a_2d", "s_back"], ["a_back"], name="view_back"),
        helper.make_node("Add", ["a_back", "c"], ["out"], name="add"),
        helper.make_node("Reshape", ["x", "s_in"], ["flat"], name="copy_of_input"),
        helper.make_node("Reshape", ["c", "s_flat"], ["shaped"], name="copy_to_output"),
    ]
    graph = helper.make_graph(nodes, "views", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 9, 7])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, 4, 9, 7]),
                               helper.make_tensor_value_info("flat", TensorProto.FLOAT, [2, 189]),
                               helper.make_tensor_value_info("shaped", TensorProto.FLOAT, [2, 252])],
                              initializer=w + shapes)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.mark.parametrize("level", [GraphOptimizationLevel.ORT_DISABLE_ALL, GraphOptimizationLevel.ORT_ENABLE_ALL])
def test_reshapes_of_intermediates_are_views(tmp_path, level):
    """Reshape / Flatten / Unsqueeze of an intermediate run as views (no node runs for them);
    of a graph input or into a graph output they copy. Outputs equal onnxruntime's (rtol 1e-4,
    atol 1e-5: convolutions summed in another order)."""
    ort = pytest.importorskip("onnxruntime")
    model = views_model()
    x = np.random.default_rng(2).standard_normal((2, 3, 9, 7), dtype=np.float32)
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    with profiled_session(model, tmp_path / "views", level) as session:
        for _ in range(2):
            got = session.run(None, {"x": x})
            for g, w in zip(got, want):
                np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
        nodes, _ = load_trace(session.end_profiling())
    ran = {e["name"] for e in nodes}
    assert not ran & {"view_reshape", "view_unsqueeze", "view_flatten", "view_back"}, ran
    assert {"copy_of_input", "copy_to_output"} <= ran, ran
