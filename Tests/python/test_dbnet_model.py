"""The DBNet-style text detector of tools/make_dbnet_model.py (backbone, DBFPN neck with nearest
and bilinear Resize, Concat, head Conv-BN-Relu -> ConvTranspose-BN-Relu -> ConvTranspose ->
Sigmoid) end to end against onnxruntime: batch 1 and 2, non-square sizes, 1 and 2 threads, with
the graph optimisations and without them, and one session serving several sizes.

Tolerance: atol 1e-4 on the probabilities (rtol 0). Both runtimes compute in float32 but order
their sums differently (GEMMs, BatchNormalization folded into the convolution and ConvTranspose
weights), which moves the logits (std ~2) by ~1e-6 of their magnitude; a wrong tap, padding or
upsampling moves probabilities by 1e-2 or more."""
from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest

import deformrt
from deformrt import GraphOptimizationLevel, SessionOptions
from profiled import run_profiled

ort = pytest.importorskip("onnxruntime")

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
ATOL = 1e-4
SHAPES = [(1, 3, 64, 96), (2, 3, 96, 64), (1, 3, 128, 160)]


def _model() -> bytes:
    spec = importlib.util.spec_from_file_location("make_dbnet_model", REPO_ROOT / "tools" / "make_dbnet_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build(seed=0).SerializeToString()


@pytest.fixture(scope="module")
def model() -> bytes:
    return _model()


@pytest.fixture(scope="module")
def expected(model):
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    images = [np.random.default_rng(i).standard_normal(s).astype(np.float32) for i, s in enumerate(SHAPES)]
    return [(x, session.run(None, {"image": x})[0]) for x in images]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("level", [GraphOptimizationLevel.ORT_ENABLE_ALL, GraphOptimizationLevel.ORT_DISABLE_ALL])
def test_dbnet_matches_onnxruntime(model, expected, threads, level):
    options = SessionOptions()
    options.graph_optimization_level = level
    with deformrt.InferenceSession(model, options, threads=threads) as session:
        for x, want in expected:
            (got,) = session.run(None, {"image": x})
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
            # Not a saturated map: the comparison means something.
            assert 0.2 < float(((want > 0.01) & (want < 0.99)).mean())


def test_head_is_fused(model, tmp_path):
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    _, events = run_profiled(model, {"image": x}, tmp_path / "dbnet", threads=2)
    transposed = [e for e in events if "ConvTranspose" in e["args"]["op_name"]]
    assert len(transposed) == 2
    fused = sorted(len(e["args"]["fused_nodes"]) for e in transposed)
    # The first ConvTranspose took its BatchNormalization and Relu; the second its Sigmoid.
    assert fused == [2, 3]
    assert not any(e["args"]["op_name"] in ("BatchNormalization", "Sigmoid") for e in events)
