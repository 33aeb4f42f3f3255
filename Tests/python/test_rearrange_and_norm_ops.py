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


# --- GroupNormalization ---------------------------------------------------------------------

@pytest.mark.parametrize("opset", [18, 21])
@pytest.mark.parametrize("shape,groups", [((2, 6, 5, 7), 3), ((3, 8, 9), 8), ((2, 12, 3, 4, 5), 1), ((2, 4), 2),
                                          ((2, 32, 17, 19), 8)])
def test_group_normalization(opset, shape, groups):
    rng = np.random.default_rng(opset + groups)
    n = shape[1] if opset >= 21 else groups
    inits = {"scale": rng.standard_normal(n).astype(np.float32), "bias": rng.standard_normal(n).astype(np.float32)}
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    check(model("GroupNormalization", shape, dict(num_groups=groups, epsilon=1e-3), opset, inits), x, 1e-4, 1e-5)


@pytest.mark.parametrize("opset,count", [(18, 6), (21, 3)])
def test_group_normalization_scale_shape_of_the_other_opset_is_refused(opset, count):
    inits = {"scale": np.ones(count, np.float32), "bias": np.zeros(count, np.float32)}
    data = model("GroupNormalization", (2, 6, 4, 4), dict(num_groups=3), opset, inits, name="gn")
    with pytest.raises(deformrt.DeformRTError, match="gn.*scale must have shape"):
        drt(data, np.ones((2, 6, 4, 4), np.float32), 1)


# --- LpNormalization, LRN, MeanVarianceNormalization ----------------------------------------

@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("shape,axis", [((2, 5, 3, 7), 1), ((3, 17), -1), ((2, 3, 4), 0), ((2, 9, 33), 2)])
def test_lp_normalization(p, shape, axis):
    x = np.random.default_rng(p).standard_normal(shape).astype(np.float32)
    x.reshape(-1)[:3] = 0  # a zero column somewhere when the axis is short: 0 out (both references)
    oracles = ("reference", "onnxruntime") if p == 2 else ("onnxruntime",)
    check(model("LpNormalization", shape, dict(p=p, axis=axis), 17), x, 1e-5, 1e-6, oracles=oracles)


def test_lp_normalization_zero_norm_gives_zero():
    x = np.zeros((2, 3, 4), np.float32)
    x[1, :, 2] = [3, 4, 0]
    got = check(model("LpNormalization", x.shape, dict(p=2, axis=1), 17), x, 1e-6, 0)
    assert np.all(got[0] == 0) and np.allclose(got[1, :, 2], [0.6, 0.8, 0])


def lrn_spec(x: np.ndarray, size: int, alpha: float, beta: float, bias: float) -> np.ndarray:
    """The ONNX LRN formula in float64: square_sum[n, c] = sum of x[n, i]^2 for i in
    [max(0, c - floor((size - 1) / 2)), min(C - 1, c + ceil((size - 1) / 2))]."""
    x64 = x.astype(np.float64)
    square_sum = np.zeros_like(x64)
    channels = x.shape[1]
    for c in range(channels):
        lo, hi = max(0, c - (size - 1) // 2), min(channels - 1, c + size // 2)
        square_sum[:, c] = (x64[:, lo:hi + 1] ** 2).sum(axis=1)
    return (x64 / (bias + alpha / size * square_sum) ** beta).astype(np.float32)


@pytest.mark.parametrize("size", [1, 3, 5])
@pytest.mark.parametrize("shape", [(2, 7, 5, 3), (3, 16, 9), (2, 70, 23, 19)])
def test_lrn_odd_sizes(size, shape):
    x = np.random.default_rng(size).standard_normal(shape).astype(np.float32)
    data = model("LRN", shape, dict(size=size, alpha=0.01, beta=0.6, bias=2.0), 13)
    spec = lrn_spec(x, size, 0.01, 0.6, 2.0)
    if len(shape) == 4:
        got = check(data, x, 1e-5, 1e-6, oracles=("onnxruntime",))
        np.testing.assert_allclose(spec, onnxruntime(data, x), rtol=1e-5, atol=1e-6)
    else:
        got = drt(data, x, 2)
    np.testing.assert_allclose(got, spec, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size", [2, 4, 6])
def test_lrn_even_size_follows_the_spec(size):
    x = np.random.default_rng(size).standard_normal((2, 9, 4, 3)).astype(np.float32)
    data = model("LRN", x.shape, dict(size=size, alpha=0.02, beta=0.75, bias=1.0), 13)
    for threads in (1, 2):
        np.testing.assert_allclose(drt(data, x, threads), lrn_spec(x, size, 0.02, 0.75, 1.0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("axes", [None, [0, 2, 3], [1], [2, 3], [0, 1, 2, 3], [-1]])
def test_mean_variance_normalization(axes):
    rng = np.random.default_rng(len(axes or []))
    x = (rng.standard_normal((3, 5, 7, 9)) * 2 + 0.5).astype(np.float32)
    attrs = {} if axes is None else dict(axes=axes)
    check(model("MeanVarianceNormalization", x.shape, attrs, 13), x, 1e-4, 1e-4)


def test_mean_variance_normalization_of_other_ranks():
    x = np.random.default_rng(2).standard_normal((2, 3, 5, 4, 3)).astype(np.float32)
    check(model("MeanVarianceNormalization", x.shape, dict(axes=[0, 2, 4]), 13), x, 1e-4, 1e-4)


# --- GlobalMaxPool, LpPool ------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (3, 4, 33), (2, 2, 3, 4, 5), (2, 5, 1, 1)])
def test_global_max_pool(shape):
    x = np.random.default_rng(len(shape)).standard_normal(shape).astype(np.float32)
    oracles = ("reference", "onnxruntime") if len(shape) == 4 else ("onnxruntime",)
    check(model("GlobalMaxPool", shape, {}, 17), x, 0, 0, oracles=oracles)


def test_global_max_pool_nan_and_inf():
    x = np.random.default_rng(3).standard_normal((2, 3, 6, 7)).astype(np.float32)
    x[0, 1, 5, 6] = np.nan
    x[1, 2, 0, 0] = np.inf
    x[1, 0] = -np.inf
    got = check(model("GlobalMaxPool", x.shape, {}, 17), x, 0, 0, oracles=("reference",))
    assert np.isnan(got[0, 1, 0, 0]) and got[1, 2, 0, 0] == np.inf and got[1, 0, 0, 0] == -np.inf


@pytest.mark.parametrize("opset", [11, 18])
@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("attrs", [
    dict(kernel_shape=[2, 3], strides=[2, 1], pads=[1, 1, 0, 1]),
    dict(kernel_shape=[3, 3], auto_pad="SAME_UPPER"),
    dict(kernel_shape=[3, 2], auto_pad="SAME_LOWER", strides=[2, 2]),
    dict(kernel_shape=[2, 2], dilations=[2, 1], ceil_mode=1, strides=[2, 2]),
    dict(kernel_shape=[3], strides=[2], pads=[1, 0]),
])
def test_lp_pool(opset, p, attrs):
    if opset < 18 and ("dilations" in attrs or "ceil_mode" in attrs):
        pytest.skip("dilations and ceil_mode are opset 18")
    rank = len(attrs["kernel_shape"])
    shape = (2, 3, 7, 9) if rank == 2 else (3, 2, 11)
    x = np.random.default_rng(p).standard_normal(shape).astype(np.float32)
    oracles = ("onnxruntime",) if attrs.get("ceil_mode") else ("reference", "onnxruntime")
    check(model("LpPool", shape, dict(p=p, **attrs), opset), x, 1e-5, 1e-5, oracles=oracles)


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
    ("GroupNormalization", (2, 6, 3), dict(num_groups=4), "groups4", 18, "does not divide"),
    ("GroupNormalization", (2, 6, 3), dict(num_groups=0), "groups4", 18, "num_groups must be >= 1"),
    ("GroupNormalization", (2, 6, 3), dict(num_groups=3, stash_type=0), "groups3", 21, "UNSUPPORTED.*stash_type"),
    ("LpNormalization", (2, 3), dict(p=3), None, 17, "p must be 1 or 2"),
    ("LpNormalization", (2, 3), dict(axis=2), None, 17, "out of range"),
    ("LRN", (2, 3, 4), dict(size=0), None, 13, "size must be"),
    ("LRN", (2, 3), dict(size=3), None, 13, "rank >= 3"),
    ("MeanVarianceNormalization", (2, 3, 4), dict(), None, 13, "out of range"),
    ("MeanVarianceNormalization", (2, 3, 4), dict(axes=[1, 1]), None, 13, "repeated axes"),
    ("GlobalMaxPool", (2, 3), dict(), None, 17, "rank >= 3"),
    ("LpPool", (1, 2, 5, 5), dict(kernel_shape=[3, 3], p=0), None, 18, "p must be"),
    ("LpPool", (1, 2, 5, 5), dict(kernel_shape=[9, 9]), None, 18, "does not fit"),
    ("LpPool", (1, 2, 5, 5), dict(), None, 18, "kernel_shape"),
])
def test_hostile_attributes_name_the_node(op, shape, attrs, inits, opset, match):
    named = {"groups4": {"s": np.ones(4, np.float32), "b": np.ones(4, np.float32)},
             "groups3": {"s": np.ones(6, np.float32), "b": np.ones(6, np.float32)}}.get(inits or "", {})
    data = model(op, shape, attrs, opset, named, name="hostile")
    with pytest.raises(deformrt.DeformRTError, match=match) as error:
        drt(data, np.ones(shape, np.float32), 2)
    assert "hostile" in str(error.value)
