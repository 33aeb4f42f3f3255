"""The ResNet-50s of tools/make_resnet_models.py (plain, DCNv2 in c3-c5, DCNv1 in c5) at reduced size
(--width-divisor 16 --blocks small: one bottleneck per stage, under 1 MB, milliseconds per run):
DeformRT must match onnxruntime on odd and batched inputs, at 1 and 2 threads, with and without
graph optimisation, and one session must serve several input sizes (H, W and N are dynamic).

Tolerance: |DeformRT - onnxruntime| <= 1e-3 * |onnxruntime| + 1e-3 * max |logit|, i.e. rtol 1e-3 and
an atol scaled to the logits' magnitude (here 5-11), so the check means the same on every model.
Both runtimes compute in float32 through ~20 layers but order their sums differently (GEMM blocking,
BatchNormalization folded into the convolution weights, fused epilogues), which moves the logits by
2-5e-7 of their magnitude (measured, optimised or not); a wrong tap, offset channel or border rule
moves them by 1e-2 to 1."""
from __future__ import annotations

import importlib.util
import pathlib
from typing import Dict

import numpy as np
import onnx
import pytest

import deformrt

ort = pytest.importorskip("onnxruntime")

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
WIDTH_DIVISOR = 16
BLOCKS = "small"
RTOL = 1e-3
ATOL_PER_LOGIT = 1e-3   # times max |logit|
# (N, H, W): square, odd and non-square (stride-2 layers round odd sides up), and a batch of 2.
SHAPES = [(1, 64, 64), (1, 65, 47), (2, 64, 64), (2, 47, 65)]


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_resnet_models", REPO_ROOT / "tools" / "make_resnet_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generator = _load_generator()
MODELS = list(generator.MODELS)


@pytest.fixture(scope="module")
def model_paths(tmp_path_factory) -> Dict[str, str]:
    return generator.write_models(str(tmp_path_factory.mktemp("resnet_models")), MODELS,
                                  width_divisor=WIDTH_DIVISOR, blocks=BLOCKS)


@pytest.fixture(scope="module")
def reference_sessions(model_paths):
    return {name: ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            for name, path in model_paths.items()}


def image(shape, seed: int = 0) -> np.ndarray:
    n, h, w = shape
    return np.random.default_rng([seed, n, h, w]).standard_normal((n, 3, h, w), dtype=np.float32)


def assert_matches(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == np.float32 and got.shape == want.shape
    magnitude = float(np.max(np.abs(want)))
    assert magnitude > 0.1, f"logits too small ({magnitude:.3g}) for the check to mean anything"
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL_PER_LOGIT * magnitude)


def make_session(path: str, threads: int, optimization: str) -> deformrt.InferenceSession:
    options = deformrt.SessionOptions()
    if optimization == "disabled":
        options.graph_optimization_level = deformrt.GraphOptimizationLevel.ORT_DISABLE_ALL
    return deformrt.InferenceSession(path, options, threads=threads)


# ----------------------------------------------------------------------------- tests

def test_models_have_the_deformable_layers_described(model_paths):
    """What the other tests exercise: 3 modulated DeformConvs (c3-c5) in resnet50_dcnv2, 1 plain
    DCNv1 (c5) in resnet50_dcnv1, none in resnet50; dynamic N, H and W."""
    expected = {"resnet50": (0, 0), "resnet50_dcnv2": (3, 3), "resnet50_dcnv1": (1, 0)}
    for name, path in model_paths.items():
        graph = onnx.load(path).graph
        deform = [node for node in graph.node if node.op_type == "DeformConv"]
        with_mask = [node for node in deform if len(node.input) == 5 and node.input[4]]
        assert (len(deform), len(with_mask)) == expected[name], name
        dims = graph.input[0].type.tensor_type.shape.dim
        assert [dim.dim_param for dim in dims] == ["N", "", "H", "W"], name


@pytest.mark.parametrize("optimization", ["default", "disabled"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: "x".join(map(str, shape)))
@pytest.mark.parametrize("name", MODELS)
def test_matches_onnxruntime(model_paths, reference_sessions, name, shape, threads, optimization):
    x = image(shape)
    (want,) = reference_sessions[name].run(None, {"image": x})
    with make_session(model_paths[name], threads, optimization) as session:
        (got,) = session.run(None, {"image": x})
    assert want.shape == (shape[0], generator.CLASSES)
    assert_matches(got, want)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", MODELS)
def test_one_session_serves_several_sizes(model_paths, reference_sessions, name, threads):
    """H and W (and N) change between runs of one session, then return to the first size."""
    with deformrt.InferenceSession(model_paths[name], threads=threads) as session:
        first = None
        for shape in [(1, 64, 64), (1, 65, 47), (2, 48, 80), (1, 64, 64)]:
            x = image(shape)
            (got,) = session.run(None, {"image": x})
            (want,) = reference_sessions[name].run(None, {"image": x})
            assert_matches(got, want)
            if first is None:
                first = got
        # Back at the first size: the session must not carry anything over from the other sizes.
        np.testing.assert_array_equal(got, first)


def test_outputs_are_bit_identical_across_processes(model_paths):
    """The GEMM engine and every split are chosen from the shapes and the build, never from a
    timing probe, so the same model, input and thread count give the same bits in two fresh
    processes (issue 12, item 6)."""
    import os
    import subprocess
    import sys

    script = (
        "import sys, hashlib, numpy as np, deformrt\n"
        "s = deformrt.InferenceSession(sys.argv[1], threads=int(sys.argv[2]))\n"
        "x = np.random.default_rng(9).standard_normal((2, 3, 67, 45), dtype=np.float32)\n"
        "print(hashlib.sha256(s.run(None, {'image': x})[0].tobytes()).hexdigest())\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT / "bindings" / "python" / "src") + os.pathsep + env.get("PYTHONPATH", "")
    for threads in (1, 2):
        digests = {subprocess.run([sys.executable, "-c", script, model_paths["resnet50_dcnv2"], str(threads)],
                                  env=env, capture_output=True, text=True, check=True, timeout=120).stdout.strip()
                   for _ in range(2)}
        assert len(digests) == 1, digests
