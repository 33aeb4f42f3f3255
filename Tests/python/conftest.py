"""Shared setup for Tests/python: finds the library and the binding, builds small ONNX models and
runs them through deformrt and onnx.reference.ReferenceEvaluator.

Tests get the helpers through the `onnx_case` fixture (a module-level import of conftest would
pick up whichever conftest pytest loaded last).
"""

from __future__ import annotations

import os
import pathlib
import sys
from typing import Mapping, Sequence

import numpy as np
import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
os.environ.setdefault("DEFORMRT_LIBRARY", str(REPO_ROOT / ".build" / "release" / "libdeformrt.so"))
_BINDING_SOURCE = str(REPO_ROOT / "bindings" / "python" / "src")
if _BINDING_SOURCE not in sys.path:
    sys.path.insert(0, _BINDING_SOURCE)

import onnx  # noqa: E402
from onnx import helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import deformrt  # noqa: E402


class OnnxCase:
    """Model building and comparison helpers; every method is static."""

    @staticmethod
    def value(name: str, dtype, shape) -> onnx.ValueInfoProto:
        """A graph input/output declaration; shape entries may be ints, strings (symbolic) or None."""
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        return helper.make_tensor_value_info(name, elem, shape)

    @staticmethod
    def model(nodes: Sequence[onnx.NodeProto], inputs: Sequence[onnx.ValueInfoProto],
              outputs: Sequence, initializers: Mapping[str, np.ndarray] | Sequence[onnx.TensorProto] = (),
              opset: int = 17, ir_version: int | None = None, check: bool = True) -> bytes:
        """Serialized model. `outputs` entries are ValueInfoProtos, or bare names whose type onnx's
        shape inference fills in (the checker only runs when it could)."""
        if isinstance(initializers, Mapping):
            initializers = [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()]
        outputs = [o if isinstance(o, onnx.ValueInfoProto) else helper.make_empty_tensor_value_info(o)
                   for o in outputs]
        graph = helper.make_graph(list(nodes), "case", list(inputs), outputs, list(initializers))
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = ir_version if ir_version is not None else min(model.ir_version, 10)
        untyped = [o for o in model.graph.output if not o.HasField("type")]
        if untyped:
            try:
                inferred = onnx.shape_inference.infer_shapes(model)
            except onnx.shape_inference.InferenceError:
                inferred, check = model, False
            known = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
                     if v.type.tensor_type.elem_type}
            for o in untyped:
                if o.name in known:
                    o.type.CopyFrom(known[o.name].type)
                    check = check and o.type.tensor_type.HasField("shape")
                else:
                    check = False
        if check:
            onnx.checker.check_model(model)
        return model.SerializeToString()

    @staticmethod
    def run(model: bytes, feeds: Mapping[str, np.ndarray], threads: int = 2) -> list:
        with deformrt.InferenceSession(model, threads=threads) as session:
            return session.run(None, dict(feeds))

    @staticmethod
    def reference(model: bytes, feeds: Mapping[str, np.ndarray]) -> list:
        return ReferenceEvaluator(onnx.load_from_string(model)).run(None, dict(feeds))

    @staticmethod
    def compare(got: Sequence[np.ndarray], want: Sequence[np.ndarray], rtol: float, atol: float) -> None:
        """Same count, dtypes and shapes; values within rtol/atol (NaNs must match NaNs)."""
        assert len(got) == len(want)
        for i, (g, w) in enumerate(zip(got, want)):
            w = np.asarray(w)
            assert g.dtype == w.dtype, f"output {i}: dtype {g.dtype}, expected {w.dtype}"
            assert g.shape == w.shape, f"output {i}: shape {g.shape}, expected {w.shape}"
            if rtol == 0 and atol == 0:
                np.testing.assert_array_equal(g, w, err_msg=f"output {i}")
            else:
                np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"output {i}")

    @classmethod
    def check(cls, model: bytes, feeds: Mapping[str, np.ndarray], rtol: float, atol: float,
              threads: int = 2) -> list:
        """Runs `model` in both runtimes and compares; returns deformrt's outputs."""
        got = cls.run(model, feeds, threads)
        cls.compare(got, cls.reference(model, feeds), rtol, atol)
        return got


@pytest.fixture
def onnx_case() -> type[OnnxCase]:
    return OnnxCase


def pytest_configure(config):
    # The one slow test (a SwiftPM package built from scratch); `-m "not slow"` skips it.
    config.addinivalue_line("markers", "slow: builds a package from scratch (minutes); -m 'not slow' skips it")
