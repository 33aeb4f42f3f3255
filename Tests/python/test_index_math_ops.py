"""Issue 9's elementwise, reduction and index operators against onnx.reference (onnxruntime where
the reference is wrong, said per test).

Random shapes with batch > 1 and odd sizes, seeded; NaN / +-Inf / +-0 where the operator has
something to say about them. Tolerances:
  EXACT (rtol=0, atol=0)      data movement (gathers, scatters, OneHot, Trilu), comparisons,
                              integer arithmetic, Round, Sign, Softsign, ThresholdedRelu, Shrink,
                              Hardmax, Mod, IsNaN, IsInf, CastLike, Sum / Mean of two inputs
  TRANSCENDENTAL rtol=1e-6, atol=1e-7   Sin, Cos (libm's sinf / cosf against numpy's)
  COMPOSITE rtol=1e-5, atol=2e-6        Celu, Swish, LogSoftmax (SIMD exp / expm1 within a
                              few ulp, then a rounded step or two)
  REDUCE rtol=2e-5, atol=1e-5 the float reductions: DeformRT sums in order, numpy pairwise
  CUMSUM rtol=1e-5, atol=1e-5 float CumSum (both in order; float rounding of long prefixes)
"""

from __future__ import annotations

import zlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import deformrt

EXACT = dict(rtol=0, atol=0)
TRANSCENDENTAL = dict(rtol=1e-6, atol=1e-7)
COMPOSITE = dict(rtol=1e-5, atol=2e-6)
REDUCE = dict(rtol=2e-5, atol=1e-5)
CUMSUM = dict(rtol=1e-5, atol=1e-5)

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 0.5, -0.5, 1.5, 2.5, -2.5, 1e-30, 7e6,
                     -5e6, 1e8, 3.0, -3.0, 0.49999997, 100.0], np.float32)


def rng_for(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def with_specials(x: np.ndarray) -> np.ndarray:
    flat = x.ravel().copy()
    n = min(len(SPECIALS), flat.size)
    flat[:n] = SPECIALS[:n]
    return flat.reshape(x.shape)


def one_node(onnx_case, op, inputs, initializers=None, opset=18, outputs=("y",), check=True, **attrs):
    """A model of one node; `inputs` maps names to (dtype, shape); initializers are constants."""
    initializers = initializers or {}
    node = helper.make_node(op, list(inputs), list(outputs), **attrs)
    declared = [onnx_case.value(k, *v) for k, v in inputs.items() if k and v is not None and k not in initializers]
    return onnx_case.model([node], declared, list(outputs), initializers, opset=opset, check=check)


def ort_run(model: bytes, feeds) -> list:
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, dict(feeds))


def refused(onnx_case, model, feeds, match):
    with pytest.raises(deformrt.DeformRTError, match=match):
        onnx_case.run(model, feeds)


SHAPES = [(2, 3, 5, 7), (3, 17), (2, 1, 129), (5, 31)]

# ---------------------------------------------------------------------------------------------
# Elementwise

UNARY = [
    ("Round", {}, 11, EXACT),
    ("Sign", {}, 13, EXACT),
    ("Sin", {}, 7, TRANSCENDENTAL),
    ("Cos", {}, 7, TRANSCENDENTAL),
    ("Softsign", {}, 1, EXACT),
    ("Celu", {}, 12, COMPOSITE),
    ("Celu", dict(alpha=0.6), 12, COMPOSITE),
    ("ThresholdedRelu", {}, 10, EXACT),
    ("ThresholdedRelu", dict(alpha=0.3), 10, EXACT),
    ("Shrink", {}, 9, EXACT),
    ("Shrink", dict(lambd=1.2, bias=0.4), 9, EXACT),
    ("Swish", {}, 24, COMPOSITE),
    ("Swish", dict(alpha=1.7), 24, COMPOSITE),
]


@pytest.mark.parametrize("shape", SHAPES + [(1,), (15,), (17,)])
@pytest.mark.parametrize("op,attrs,opset,tolerance", UNARY, ids=[f"{u[0]}{u[1]}" for u in UNARY])
def test_unary(onnx_case, op, attrs, opset, tolerance, shape):
    """Random inputs (|x| up to ~12, so Sin / Cos stay where float32 argument reduction is exact
    in both libraries) with NaN, +-Inf, +-0, rounding ties and large whole numbers."""
    rng = rng_for("unary", op, attrs, shape)
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    if op not in ("Sin", "Cos"):
        x = with_specials(x)
    else:
        x = with_specials(x) if x.size > 3 else x
        x[np.isinf(x) | (np.abs(x) > 1e3)] = 1.25
    model = one_node(onnx_case, op, {"x": (np.float32, shape)}, opset=opset, check=opset < 24, **attrs)
    onnx_case.check(model, {"x": x}, **tolerance)


@pytest.mark.parametrize("dtype", [np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64])
def test_sign_other_types(onnx_case, dtype):
    rng = rng_for("sign", dtype)
    if np.issubdtype(dtype, np.floating):
        x = rng.standard_normal((3, 5)).astype(dtype)
        x[0, :3] = [0.0, np.nan, -0.0]
    else:
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, (3, 5), dtype=dtype, endpoint=True)
        x[0, 0] = 0
    model = one_node(onnx_case, "Sign", {"x": (dtype, (3, 5))}, opset=13)
    onnx_case.check(model, {"x": x}, **EXACT)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("op,attrs", [("IsNaN", {}), ("IsInf", {}), ("IsInf", dict(detect_negative=0)),
                                      ("IsInf", dict(detect_positive=0))])
def test_isnan_isinf(onnx_case, op, attrs, dtype):
    x = with_specials(rng_for(op, dtype).standard_normal((3, 7, 5)).astype(np.float32)).astype(dtype)
    model = one_node(onnx_case, op, {"x": (dtype, (3, 7, 5))}, opset=20, **attrs)
    onnx_case.check(model, {"x": x}, **EXACT)


MOD_TYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]


@pytest.mark.parametrize("fmod", [0, 1])
@pytest.mark.parametrize("dtype", MOD_TYPES)
@pytest.mark.parametrize("shapes", [((3, 5, 7), (3, 5, 7)), ((2, 9), (9,)), ((4, 1, 3), (1, 5, 1))])
def test_mod_integers(onnx_case, fmod, dtype, shapes):
    """Both sign conventions, broadcasting; divisors exclude 0 (x mod 0 is 0 by definition here,
    tested in test_hostile_index_ops)."""
    rng = rng_for("mod", fmod, dtype, shapes)
    info = np.iinfo(dtype)
    low = max(info.min, -1000)
    a = rng.integers(low, min(info.max, 1000), shapes[0], dtype=dtype, endpoint=True)
    b = rng.integers(low, min(info.max, 60), shapes[1], dtype=dtype, endpoint=True)
    b[b == 0] = 7
    model = one_node(onnx_case, "Mod", {"a": (dtype, shapes[0]), "b": (dtype, shapes[1])}, opset=13, fmod=fmod)
    onnx_case.check(model, {"a": a, "b": b}, **EXACT)


@pytest.mark.parametrize("fmod", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_mod_floats(onnx_case, dtype, fmod):
    """fmod 1 is C's fmod; fmod 0 on floats is numpy's mod (Mod-28 defines it, accepted at every
    opset). NaN, +-Inf, +-0 dividends; divisors with both signs."""
    rng = rng_for("fmod", dtype, fmod)
    a = (rng.standard_normal((3, 4, 9)) * 10).astype(dtype)
    b = (rng.standard_normal((4, 1)) * 3).astype(dtype)
    a.flat[:5] = [np.nan, np.inf, -0.0, 5.0, 0.0]
    model = one_node(onnx_case, "Mod", {"a": (dtype, (3, 4, 9)), "b": (dtype, (4, 1))}, opset=13, fmod=fmod,
                     check=fmod == 1)
    onnx_case.check(model, {"a": a, "b": b}, **EXACT)


@pytest.mark.parametrize("pair", [(np.float32, np.int64), (np.int32, np.float32), (np.float32, np.float16),
                                  (np.float64, np.uint8), (np.int64, np.bool_), (np.float32, np.int8)])
def test_castlike(onnx_case, pair):
    source, target = pair
    rng = rng_for("castlike", pair)
    x = (rng.standard_normal((2, 3, 5)) * 50).astype(source)
    like = np.zeros((1,), target)
    model = one_node(onnx_case, "CastLike", {"x": (source, (2, 3, 5)), "like": (target, (1,))}, opset=19)
    onnx_case.check(model, {"x": x, "like": like}, **EXACT)


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("axis", [0, 1, -1, 2])
@pytest.mark.parametrize("op,tolerance", [("LogSoftmax", COMPOSITE), ("Hardmax", EXACT)])
def test_logsoftmax_hardmax(onnx_case, op, tolerance, axis, opset):
    """opset 13: one axis (onnx.reference). opset 11 flattens the dims from axis on; onnx's
    reference ignores that, so onnxruntime is the oracle there."""
    shape = (3, 5, 7)
    rng = rng_for(op, axis, opset)
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    if op == "Hardmax":
        x[0, 0, :2] = x[0, 0, 2]  # ties: the first maximum wins
    model = one_node(onnx_case, op, {"x": (np.float32, shape)}, opset=opset, axis=axis)
    want = ort_run(model, {"x": x}) if opset < 13 else onnx_case.reference(model, {"x": x})
    onnx_case.compare(onnx_case.run(model, {"x": x}), want, **tolerance)


def test_logsoftmax_far_from_the_maximum(onnx_case):
    """x - max - log(sum): exact where onnx's reference (log of the softmax) underflows to -Inf;
    onnxruntime computes it the same way and is the oracle."""
    x = np.array([[0.0, -200.0, -1000.0, 10.0]], np.float32)
    model = one_node(onnx_case, "LogSoftmax", {"x": (np.float32, (1, 4))}, opset=13)
    onnx_case.compare(onnx_case.run(model, {"x": x}), ort_run(model, {"x": x}), **COMPOSITE)


@pytest.mark.parametrize("op", ["Sum", "Mean"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shapes", [[(3, 5, 7)], [(3, 5, 7), (3, 5, 7)], [(2, 1, 9), (4, 1), (9,)],
                                    [(5, 33), (1, 33), (5, 1), ()]])
def test_sum_mean(onnx_case, op, dtype, shapes):
    """Exact for one or two inputs (one rounding); several inputs add in onnx's order too. The
    reference's Mean adds in place into the first input, so it cannot broadcast it: numpy's
    (sum in order) / count is the oracle there."""
    rng = rng_for(op, dtype, shapes)
    feeds = {f"x{i}": rng.standard_normal(s).astype(dtype) for i, s in enumerate(shapes)}
    model = one_node(onnx_case, op, {k: (dtype, v.shape) for k, v in feeds.items()}, opset=13)
    tolerance = EXACT if len(shapes) <= 2 else dict(rtol=1e-6, atol=1e-7)
    if op == "Mean" and len(set(shapes)) > 1:
        total = feeds["x0"]
        for i in range(1, len(shapes)):
            total = total + feeds[f"x{i}"]
        onnx_case.compare(onnx_case.run(model, feeds), [(total / dtype(len(shapes))).astype(dtype)], **tolerance)
    else:
        onnx_case.check(model, feeds, **tolerance)


# ---------------------------------------------------------------------------------------------
# Reductions

REDUCTIONS = ["ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceProd", "ReduceSumSquare",
              "ReduceMax", "ReduceMin", "ReduceSum", "ReduceMean"]


@pytest.mark.parametrize("axes_as", ["attribute", "input"])
@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("axes", [None, (1,), (0, 2), (-1,), (1, 3)])
@pytest.mark.parametrize("op", REDUCTIONS)
def test_reductions(onnx_case, op, axes, keepdims, axes_as):
    """Axes as the attribute (opset 13) or the second input (opset 18), absent = all."""
    if op == "ReduceSum" and axes_as == "attribute":
        opset = 11
    else:
        opset = 13 if axes_as == "attribute" else 18
    shape = (3, 5, 4, 7)
    rng = rng_for(op, axes, keepdims, axes_as)
    x = rng.standard_normal(shape).astype(np.float32)
    if op in ("ReduceLogSum",):
        x = np.abs(x) + 0.1
    if op == "ReduceProd":
        x = (x * 0.3 + 1).astype(np.float32)
    inputs, initializers, attrs = {"x": (np.float32, shape)}, {}, dict(keepdims=keepdims)
    if axes is not None:
        if axes_as == "input":
            inputs["axes"] = (np.int64, (len(axes),))
            initializers["axes"] = np.array(axes, np.int64)
        else:
            attrs["axes"] = list(axes)
    model = one_node(onnx_case, op, inputs, initializers, opset=opset, **attrs)
    onnx_case.check(model, {"x": x}, **REDUCE)


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean", "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSum"])
def test_reductions_trailing_simd(onnx_case, op, threads):
    """Trailing axes sum contiguous blocks in SIMD16 lanes, split over threads: long blocks
    (odd lengths, every tail) against the reference's pairwise numpy sums (REDUCE)."""
    rng = rng_for("trailing", op, threads)
    for shape, axes in [((3, 5, 1031), [2]), ((2, 7, 33, 31), [2, 3]), ((4, 17), None), ((2, 3, 15), [-1])]:
        x = (np.abs(rng.standard_normal(shape)) + 0.1).astype(np.float32)
        inputs, initializers = {"x": (np.float32, shape)}, {}
        if axes is not None:
            inputs["axes"] = (np.int64, (len(axes),))
            initializers["axes"] = np.array(axes, np.int64)
        model = one_node(onnx_case, op, inputs, initializers, opset=18, keepdims=0)
        onnx_case.compare(onnx_case.run(model, {"x": x}, threads=threads), onnx_case.reference(model, {"x": x}), **REDUCE)


@pytest.mark.parametrize("op", REDUCTIONS)
def test_reductions_noop_and_empty(onnx_case, op):
    """noop_with_empty_axes = 1 with no axes: each element alone (the reference's np.sum over
    axis=()); an empty reduced axis: the identity (0, 1, -Inf for max and the log-sums, +Inf for
    min; NaN for the mean), as onnx.reference gives."""
    x = np.abs(np.random.default_rng(3).standard_normal((2, 3, 5)).astype(np.float32)) + 0.5
    model = one_node(onnx_case, op, {"x": (np.float32, (2, 3, 5))}, opset=18, noop_with_empty_axes=1)
    onnx_case.check(model, {"x": x}, **REDUCE)
    empty = np.zeros((2, 0, 3), np.float32)
    model = one_node(onnx_case, op, {"x": (np.float32, (2, 0, 3)), "axes": (np.int64, (1,))},
                     {"axes": np.array([1], np.int64)}, opset=18, keepdims=1)
    got = onnx_case.run(model, {"x": empty})[0]
    want = {"ReduceL1": 0, "ReduceL2": 0, "ReduceLogSum": -np.inf, "ReduceLogSumExp": -np.inf, "ReduceProd": 1,
            "ReduceSumSquare": 0, "ReduceMax": -np.inf, "ReduceMin": np.inf, "ReduceSum": 0, "ReduceMean": np.nan}[op]
    np.testing.assert_array_equal(got, np.full((2, 1, 3), want, np.float32))


def test_reduce_logsumexp_large_values(onnx_case):
    """Shifted by the maximum: no overflow at 100 (naive exp would give +Inf), -Inf lanes ignored."""
    x = np.array([[100.0, 99.0, -np.inf], [-np.inf, -np.inf, -np.inf], [1.0, np.inf, 3.0]], np.float32)
    model = one_node(onnx_case, "ReduceLogSumExp", {"x": (np.float32, (3, 3))}, opset=13, axes=[1], keepdims=0)
    got = onnx_case.run(model, {"x": x})[0]
    np.testing.assert_allclose(got, [100 + np.log1p(np.exp(-1.0)), -np.inf, np.inf], rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Gathers and scatters

@pytest.mark.parametrize("smaller", [False, True])
@pytest.mark.parametrize("index_dtype", [np.int64, np.int32])
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.float16, np.uint8])
def test_gather_elements(onnx_case, dtype, axis, index_dtype, smaller):
    """Negative indices; indices as large as data along the other axes (onnx.reference), or
    smaller (the reference refuses those, onnxruntime takes them and is the oracle). The
    reference also refuses a negative axis (it compares the dims with axis -1 unnormalised), so
    onnxruntime is the oracle there too."""
    rng = rng_for("gather_elements", dtype, axis, index_dtype, smaller)
    data = (rng.standard_normal((3, 7, 5)) * 10).astype(dtype)
    ishape = [2, 4, 3] if smaller else list(data.shape)
    a = axis % 3
    ishape[a] = 11
    indices = rng.integers(-data.shape[a], data.shape[a], ishape).astype(index_dtype)
    model = one_node(onnx_case, "GatherElements", {"data": (dtype, data.shape), "indices": (index_dtype, tuple(ishape))},
                     opset=13, axis=axis)
    feeds = {"data": data, "indices": indices}
    if smaller or axis < 0:
        onnx_case.compare(onnx_case.run(model, feeds), ort_run(model, feeds), **EXACT)
    else:
        onnx_case.check(model, feeds, **EXACT)


@pytest.mark.parametrize("batch_dims,dshape,ishape", [
    (0, (5, 7, 3), (4, 1)), (0, (5, 7, 3), (2, 3, 2)), (0, (5, 7, 3), (6, 3)),
    (1, (3, 7, 5), (3, 4, 1)), (1, (3, 7, 5), (3, 2, 2)), (2, (2, 3, 5, 4), (2, 3, 6, 1)),
])
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.bool_])
def test_gather_nd(onnx_case, batch_dims, dshape, ishape, dtype):
    rng = rng_for("gather_nd", batch_dims, dshape, ishape, dtype)
    data = (rng.standard_normal(dshape) * 10).astype(dtype)
    k = ishape[-1]
    bounds = np.array(dshape[batch_dims:batch_dims + k])
    indices = (rng.integers(0, 1 << 30, ishape) % bounds - (rng.integers(0, 2, ishape) * bounds)).astype(np.int64)
    model = one_node(onnx_case, "GatherND", {"data": (dtype, dshape), "indices": (np.int64, ishape)},
                     opset=13, batch_dims=batch_dims)
    onnx_case.check(model, {"data": data, "indices": indices}, **EXACT)


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
@pytest.mark.parametrize("axis", [0, 2, -2])
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.float64, np.int32])
def test_scatter_elements(onnx_case, reduction, axis, dtype):
    """Duplicate indices on purpose (reductions combine them in update order; with none the
    reference's last write wins, as here), negative indices."""
    rng = rng_for("scatter_elements", reduction, axis, dtype)
    data = (rng.standard_normal((4, 5, 6)) * 5).astype(dtype)
    ishape = [3, 4, 5]
    a = axis % 3
    ishape[a] = 7
    indices = rng.integers(-data.shape[a], data.shape[a], ishape).astype(np.int64)
    updates = (rng.standard_normal(ishape) * 5).astype(dtype)
    if reduction == "none":  # unique indices along the axis, so the order of writes cannot matter
        perm = np.argsort(rng.random((*ishape[:a], data.shape[a], *ishape[a + 1:])), axis=a)
        indices = np.take(perm, range(min(ishape[a], data.shape[a])), axis=a).astype(np.int64)
        ishape[a] = indices.shape[a]
        updates = (rng.standard_normal(ishape) * 5).astype(dtype)
    model = one_node(onnx_case, "ScatterElements",
                     {"data": (dtype, data.shape), "indices": (np.int64, tuple(ishape)), "updates": (dtype, tuple(ishape))},
                     opset=18, axis=axis, reduction=reduction)
    onnx_case.check(model, {"data": data, "indices": indices, "updates": updates},
                    **(EXACT if reduction != "mul" or dtype in (np.int32, np.int64) else dict(rtol=1e-6, atol=0)))


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
@pytest.mark.parametrize("dshape,ishape", [((5, 7, 3), (4, 1)), ((5, 7, 3), (2, 3, 2)), ((5, 7, 3), (6, 3)),
                                           ((9,), (5, 1))])
def test_scatter_nd(onnx_case, reduction, dshape, ishape):
    rng = rng_for("scatter_nd", reduction, dshape, ishape)
    data = rng.standard_normal(dshape).astype(np.float32)
    k = ishape[-1]
    bounds = np.array(dshape[:k])
    count = int(np.prod(ishape[:-1]))
    # Unique tuples for none (the order of duplicate writes is unspecified there).
    flat = rng.choice(int(np.prod(bounds)), size=count, replace=reduction != "none")
    indices = np.stack(np.unravel_index(flat, tuple(bounds)), axis=-1).reshape(ishape).astype(np.int64)
    indices[..., 0] -= (rng.integers(0, 2, ishape[:-1]) * bounds[0])  # some negative
    updates = rng.standard_normal(tuple(ishape[:-1]) + dshape[k:]).astype(np.float32)
    model = one_node(onnx_case, "ScatterND", {"data": (np.float32, dshape), "indices": (np.int64, ishape),
                                              "updates": (np.float32, updates.shape)}, opset=18, reduction=reduction)
    feeds = {"data": data, "indices": indices, "updates": updates}
    onnx_case.check(model, feeds, **(EXACT if reduction != "mul" else dict(rtol=1e-6, atol=0)))


# ---------------------------------------------------------------------------------------------
# CumSum, OneHot, Trilu

@pytest.mark.parametrize("exclusive,reverse", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
def test_cumsum(onnx_case, exclusive, reverse, axis, dtype):
    """The axis as a run-time input (it is read when running)."""
    rng = rng_for("cumsum", exclusive, reverse, axis, dtype)
    x = (rng.standard_normal((3, 17, 5)) * 10).astype(dtype)
    model = one_node(onnx_case, "CumSum", {"x": (dtype, x.shape), "axis": (np.int64, ())}, opset=14,
                     exclusive=exclusive, reverse=reverse)
    onnx_case.check(model, {"x": x, "axis": np.array(axis, np.int64)}, **CUMSUM)


@pytest.mark.parametrize("axis", [-1, 0, 1, 2])
@pytest.mark.parametrize("index_dtype,value_dtype", [(np.int64, np.float32), (np.int32, np.int64),
                                                      (np.float32, np.float32), (np.int64, np.int32)])
def test_one_hot(onnx_case, axis, index_dtype, value_dtype):
    """Negative indices count from the end; those outside [-depth, depth - 1] give all-off rows."""
    rng = rng_for("onehot", axis, index_dtype, value_dtype)
    depth = 11
    indices = rng.integers(-depth - 3, depth + 3, (3, 7)).astype(index_dtype)
    values = np.array([-2, 5], value_dtype)
    model = one_node(onnx_case, "OneHot", {"indices": (index_dtype, (3, 7)), "depth": (np.int64, ()),
                                           "values": (value_dtype, (2,))},
                     {"depth": np.array(depth, np.int64)}, opset=11, axis=axis)
    onnx_case.check(model, {"indices": indices, "values": values}, **EXACT)


@pytest.mark.parametrize("k", [None, 0, 1, -2, 4, -9, 100])
@pytest.mark.parametrize("upper", [0, 1])
@pytest.mark.parametrize("shape", [(2, 5, 7), (3, 7, 4), (6, 6)])
def test_trilu(onnx_case, k, upper, shape):
    x = rng_for("trilu", k, upper, shape).standard_normal(shape).astype(np.float32)
    inputs = {"x": (np.float32, shape)}
    feeds = {"x": x}
    if k is not None:
        inputs["k"] = (np.int64, ())
        feeds["k"] = np.array(k, np.int64)
    model = one_node(onnx_case, "Trilu", inputs, opset=14, upper=upper)
    onnx_case.check(model, feeds, **EXACT)


# ---------------------------------------------------------------------------------------------
# Einsum (GEMM path, strided-copy path, general loop); sums in another order than numpy's:
# EINSUM rtol=1e-5, atol=1e-5.

EINSUM = dict(rtol=1e-5, atol=1e-5)
EINSUM_CASES = [
    ("bij,bjk->bik", [(3, 5, 7), (3, 7, 9)]),            # batched matmul (GEMM)
    ("bhqd,bhkd->bhqk", [(2, 3, 5, 8), (2, 3, 7, 8)]),   # attention scores (GEMM, B permuted)
    ("bhqk,bhkd->bhqd", [(2, 3, 5, 7), (2, 3, 7, 6)]),
    ("bij,bkj->bik", [(3, 5, 7), (3, 9, 7)]),             # B read transposed by the GEMM
    ("bki,bkj->bij", [(3, 7, 5), (3, 7, 9)]),             # A read transposed
    ("ki,jk->ij", [(7, 5), (9, 7)]),                      # both transposed, one batch
    ("abc,cd->abd", [(2, 3, 5), (5, 7)]),
    ("ij,jk", [(5, 3), (3, 7)]),                          # implicit output "ik"
    ("bik,bkj->bji", [(3, 5, 4), (3, 4, 6)]),             # output permuted after the GEMM
    ("i,i", [(7,)]* 2),                                   # inner product
    ("i,j->ij", [(5,), (7,)]),                            # outer product (k empty)
    ("nchw->nhwc", [(2, 3, 5, 7)]),                       # one strided copy
    ("ba", [(3, 5)]),                                     # implicit: a transpose
    ("ij->i", [(5, 7)]), ("ij->j", [(5, 7)]), ("ij->", [(5, 7)]),
    ("ii->i", [(5, 5)]), ("ii", [(4, 4)]), ("bii->bi", [(3, 4, 4)]),  # diagonals
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 6)]),    # broadcast ellipsis (general loop)
    ("...ij->...ji", [(2, 3, 4, 5)]),
    ("ij,jk,kl->il", [(3, 4), (4, 5), (5, 2)]),           # three operands
    ("bn,anm,bm->ba", [(3, 4), (2, 4, 5), (3, 5)]),       # bilinear
    ("ij,ij->ij", [(3, 7), (3, 7)]),                      # elementwise product
    ("Bij,Bjk->Bik", [(2, 3, 4), (2, 4, 5)]),             # upper-case letters
]


@pytest.mark.parametrize("equation,shapes", EINSUM_CASES, ids=[c[0] for c in EINSUM_CASES])
def test_einsum(onnx_case, equation, shapes):
    rng = rng_for("einsum", equation, shapes)
    feeds = {f"x{i}": rng.standard_normal(s).astype(np.float32) for i, s in enumerate(shapes)}
    model = one_node(onnx_case, "Einsum", {k: (np.float32, v.shape) for k, v in feeds.items()}, opset=12,
                     equation=equation)
    onnx_case.check(model, feeds, **EINSUM)


def test_einsum_larger_gemm_threads(onnx_case):
    """A real-size attention product at 1 and 3 threads (the GEMM splits its work)."""
    rng = rng_for("einsum_large")
    feeds = {"q": rng.standard_normal((2, 4, 33, 64)).astype(np.float32),
             "k": rng.standard_normal((2, 4, 47, 64)).astype(np.float32)}
    model = one_node(onnx_case, "Einsum", {"q": (np.float32, (2, 4, 33, 64)), "k": (np.float32, (2, 4, 47, 64))},
                     opset=12, equation="bhqd,bhkd->bhqk")
    want = onnx_case.reference(model, feeds)
    for threads in (1, 3):
        onnx_case.compare(onnx_case.run(model, feeds, threads=threads), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("equation,shapes,match", [
    ("ij,jk->ik", [(3, 4), (5, 6)], "dimension"),
    ("ij->ik", [(3, 4)], "no operand"),
    ("ij,jk->ik", [(3, 4)], "operands"),
    ("ij->ii", [(3, 4)], "repeats"),
    ("i$j->i", [(3, 4)], "unexpected character"),
    ("ijk->i", [(3, 4)], "does not fit"),
    ("ij->...i", [(3, 4)], "ellipsis"),
])
def test_einsum_bad_equations(onnx_case, equation, shapes, match):
    """INVALID_MODEL naming the problem. The output is declared, so that onnx's shape inference
    (which never returns on "i$j->i") is not run."""
    feeds = {f"x{i}": np.ones(s, np.float32) for i, s in enumerate(shapes)}
    node = helper.make_node("Einsum", list(feeds), ["y"], equation=equation)
    model = onnx_case.model([node], [onnx_case.value(k, np.float32, v.shape) for k, v in feeds.items()],
                            [onnx_case.value("y", np.float32, None)], opset=12, check=False)
    refused(onnx_case, model, feeds, match)


# ---------------------------------------------------------------------------------------------
# double and float16 through the unary functions, the reductions and Einsum

UNARY_TYPED = [("Relu", {}, 14), ("Sigmoid", {}, 13), ("Tanh", {}, 13), ("Exp", {}, 13), ("Log", {}, 13),
               ("Sqrt", {}, 13), ("Erf", {}, 13), ("Floor", {}, 13), ("Ceil", {}, 13), ("Reciprocal", {}, 13),
               ("Softplus", {}, 1), ("Elu", dict(alpha=0.7), 6), ("Selu", {}, 6), ("HardSigmoid", {}, 6),
               ("HardSwish", {}, 14), ("Mish", {}, 18), ("Gelu", {}, 20), ("Gelu", dict(approximate="tanh"), 20),
               ("LeakyRelu", dict(alpha=0.2), 6), ("Round", {}, 11), ("Sign", {}, 13), ("Sin", {}, 7), ("Cos", {}, 7),
               ("Softsign", {}, 1), ("Celu", dict(alpha=0.6), 12), ("ThresholdedRelu", {}, 10),
               ("Shrink", dict(lambd=0.7, bias=0.2), 9), ("Neg", {}, 13), ("Abs", {}, 13)]


def _double_oracle(op, attrs, x):
    """Erf, Gelu and HardSwish in double: onnx's reference computes them with float32 precision
    (its erf, and HardSwish's alpha 1/6 as a float32), so these are math.erf and the formulas in
    double instead."""
    import math
    if op == "Erf":
        return np.vectorize(math.erf)(x)
    if op == "HardSwish":
        return x * np.clip(x / 6 + 0.5, 0, 1)
    if op == "Gelu" and attrs.get("approximate") == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    if op == "Gelu":
        return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    return None


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
@pytest.mark.parametrize("op,attrs,opset", UNARY_TYPED, ids=[f"{u[0]}{u[1]}" for u in UNARY_TYPED])
def test_unary_double_and_float16(onnx_case, op, attrs, opset, dtype):
    """double: libm's double functions against numpy's (rtol 1e-12, atol 1e-14; see
    _double_oracle for the three the reference computes in float32). float16: computed in float
    and rounded once, so the oracle is onnx.reference on the float32 values, rounded to float16
    (the reference's own float16 path rounds every step, ~0.3 relative off in Gelu's tail);
    within one float16 ulp (rtol 1e-3, atol 1e-4)."""
    rng = rng_for("typed", op, attrs, dtype)
    x = with_specials((rng.standard_normal((3, 5, 7)) * 3).astype(np.float32)).astype(dtype)
    model = one_node(onnx_case, op, {"x": (dtype, x.shape)}, opset=opset, **attrs)
    got = onnx_case.run(model, {"x": x})
    if dtype == np.float64:
        want = _double_oracle(op, attrs, x)
        want = onnx_case.reference(model, {"x": x}) if want is None else [want]
        onnx_case.compare(got, want, rtol=1e-12, atol=1e-14)
    else:
        model32 = one_node(onnx_case, op, {"x": (np.float32, x.shape)}, opset=opset, **attrs)
        want = onnx_case.reference(model32, {"x": x.astype(np.float32)})[0].astype(np.float16)
        onnx_case.compare(got, [want], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("op", REDUCTIONS)
def test_reductions_double(onnx_case, op):
    """double reductions, accumulated in double (rtol 1e-12)."""
    rng = rng_for("reduce_double", op)
    x = np.abs(rng.standard_normal((3, 5, 4, 7))) + 0.2
    model = one_node(onnx_case, op, {"x": (np.float64, x.shape), "axes": (np.int64, (2,))},
                     {"axes": np.array([1, 3], np.int64)}, opset=18, keepdims=0)
    onnx_case.check(model, {"x": x}, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("equation,shapes", [("bij,bjk->bik", [(3, 5, 7), (3, 7, 9)]), ("nchw->nhwc", [(2, 3, 5, 7)]),
                                             ("ii->i", [(5, 5)]), ("ij->", [(5, 7)])])
def test_einsum_double(onnx_case, equation, shapes):
    rng = rng_for("einsum_double", equation)
    feeds = {f"x{i}": rng.standard_normal(s) for i, s in enumerate(shapes)}
    model = one_node(onnx_case, "Einsum", {k: (np.float64, v.shape) for k, v in feeds.items()}, opset=12,
                     equation=equation)
    onnx_case.check(model, feeds, rtol=1e-12, atol=1e-13)
