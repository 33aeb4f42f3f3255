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



# Runs in a child process, so that DEFORMRT_WINOGRAD is read fresh: model, input, output paths.
INF_PROBE = """
import sys
import numpy as np
import deformrt
x = np.load(sys.argv[2])
np.save(sys.argv[3], deformrt.InferenceSession(sys.argv[1]).run(None, {"x": x})[0])
print(deformrt.get_cpu_tier())
"""


@pytest.mark.parametrize("setting", [None, "0"])
def test_winograd_switch_and_infinite_inputs(tmp_path, setting):
    """DEFORMRT_WINOGRAD=0 keeps the direct sums: an infinite input then gives onnxruntime's ±inf
    in every output it reaches. With Winograd (the avx2 and avx512 tiers' default) the outputs
    of its tiles come out NaN instead, as README says; the finite outputs agree either way."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    w = np.random.default_rng(0).standard_normal((16, 16, 3, 3)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "inf",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    x = np.random.default_rng(1).standard_normal((1, 16, 6, 6)).astype(np.float32)
    x[0, 3, 2, 2] = np.inf
    (tmp_path / "m.onnx").write_bytes(model)
    np.save(tmp_path / "x.npy", x)

    env = dict(os.environ)
    env.pop("DEFORMRT_WINOGRAD", None)
    if setting is not None:
        env["DEFORMRT_WINOGRAD"] = setting
    binding = str(Path(__file__).resolve().parents[2] / "bindings" / "python" / "src")
    env["PYTHONPATH"] = binding + os.pathsep + env.get("PYTHONPATH", "")
    child = subprocess.run([sys.executable, "-c", INF_PROBE, str(tmp_path / "m.onnx"), str(tmp_path / "x.npy"),
                            str(tmp_path / "y.npy")], env=env, check=True, capture_output=True, text=True)
    tier = child.stdout.split()[-1]
    got = np.load(tmp_path / "y.npy")
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-4, atol=1e-4)
    assert not np.isfinite(got[~finite]).any()
    if setting is None and tier in ("avx2", "avx512"):
        assert np.isnan(got).sum() > 0
    else:
        np.testing.assert_array_equal(got[~finite], want[~finite])
