"""Math, comparison, resize/pad, data and normalisation operators against onnx.reference.

Each test builds a one-node (or small) model with onnx.helper, feeds seeded random inputs of odd
shapes with batch > 1 (and NaN, +-Inf, +-0 where the operator has something to say about them),
and compares deformrt's outputs (dtype, shape, values) with onnx.reference.ReferenceEvaluator.
Where the reference is wrong or lacks a case, onnxruntime is the oracle and the test says why.
Tolerances, stated per test:
  EXACT (rtol=0, atol=0)    data movement, comparisons, integer arithmetic, and float functions
                            that are the same IEEE operations in the same order as the reference
                            (Neg, Abs, Floor, Ceil, Sqrt, Reciprocal, HardSigmoid, HardSwish,
                            Clip, PRelu, Min, Max, nearest Resize, Pad, Range).
  TRANSCENDENTAL rtol=1e-6, atol=1e-7   Exp, Log, Tanh, Erf: SIMD polynomials within a few ulp
                            of libm (measured worst case 4.2e-7 relative, Erf near 3.3).
  COMPOSITE rtol=1e-5, atol=2e-6        Softplus, Mish, Elu, Selu, Gelu: several rounded steps;
                            Gelu's 1 + erf(x) cancels for x < -4 (absolute error ~1e-6 there).
  POW rtol=1e-6, atol=0     powf / pow against numpy's power.
  LINEAR rtol=1e-5, atol=1e-6           linear Resize: float weights against the reference's
                            float64 arithmetic.
  NORM rtol=1e-4, atol=1e-5 Instance/LayerNormalization: sums in another order.
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
POW = dict(rtol=1e-6, atol=0)
LINEAR = dict(rtol=1e-5, atol=1e-6)
NORM = dict(rtol=1e-4, atol=1e-5)

# Inputs hold NaN, Inf and huge values on purpose; numpy inside onnx.reference warns.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 100.0, -100.0, 88.5, -88.5, 1e-30, -1e-30,
                     1e-40, 7e6, -5e6, 0.5, -0.5, 2.5, -2.5], np.float32)


def rng_for(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def randn(rng, shape, dtype=np.float32) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def with_specials(x: np.ndarray) -> np.ndarray:
    flat = x.ravel().copy()
    n = min(len(SPECIALS), flat.size)
    flat[:n] = SPECIALS[:n]
    return flat.reshape(x.shape)


def ort_run(model: bytes, feeds) -> list:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"]).run(None, dict(feeds))


def refused(onnx_case, model: bytes, feeds, match: str) -> None:
    """Session creation or the run fails with a DeformRTError whose text matches `match`."""
    with pytest.raises(deformrt.DeformRTError, match=match):
        onnx_case.run(model, feeds)


def one_node(onnx_case, op, inputs, initializers=None, opset=17, outputs=("y",), check=True, **attrs):
    """A model of one node; `inputs` maps graph-input names to (dtype, shape), initializers are
    constants, "" an omitted optional input."""
    initializers = initializers or {}
    names = list(inputs) if isinstance(inputs, dict) else inputs
    node = helper.make_node(op, names, list(outputs), **attrs)
    declared = [onnx_case.value(k, *v) for k, v in (inputs.items() if isinstance(inputs, dict) else [])
                if k and v is not None and k not in initializers]
    return onnx_case.model([node], declared, list(outputs), initializers, opset=opset, check=check)


# ---------------------------------------------------------------------------------------------
# Unary float functions

UNARY = [
    # op, attributes, opset, tolerance
    ("Tanh", {}, 13, TRANSCENDENTAL),
    ("Exp", {}, 13, TRANSCENDENTAL),
    ("Log", {}, 13, TRANSCENDENTAL),
    ("Erf", {}, 13, TRANSCENDENTAL),
    ("Sqrt", {}, 13, EXACT),
    ("Neg", {}, 13, EXACT),
    ("Abs", {}, 13, EXACT),
    ("Floor", {}, 13, EXACT),
    ("Ceil", {}, 13, EXACT),
    ("Reciprocal", {}, 13, EXACT),
    ("HardSigmoid", {}, 6, EXACT),
    ("HardSigmoid", dict(alpha=0.31, beta=0.4), 6, EXACT),
    ("HardSwish", {}, 14, EXACT),
    ("Softplus", {}, 1, COMPOSITE),
    ("Mish", {}, 18, COMPOSITE),
    ("Elu", {}, 6, COMPOSITE),
    ("Elu", dict(alpha=0.7), 6, COMPOSITE),
    ("Selu", {}, 6, COMPOSITE),
    ("Selu", dict(alpha=1.5, gamma=0.9), 6, COMPOSITE),
    ("Gelu", {}, 20, COMPOSITE),
    ("Gelu", dict(approximate="tanh"), 20, COMPOSITE),
]
UNARY_IDS = [f"{op}{'_' + '_'.join(f'{k}{v}' for k, v in a.items()) if a else ''}" for op, a, _, _ in UNARY]


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (3, 17), (1,), (7,), (15,), (16,), (17,), (127,), (2, 33, 2), (2, 1, 129)])
@pytest.mark.parametrize("op,attrs,opset,tolerance", UNARY, ids=UNARY_IDS)
def test_unary(onnx_case, op, attrs, opset, tolerance, shape):
    """Random inputs (|x| up to ~16) with NaN, +-Inf, +-0, +-100, +-88.5 (exp's overflow edge),
    tiny and subnormal values, halves (rounding ties) and large whole numbers; the sizes exercise
    the 16-lane body and every tail length. Tolerance per operator (see the module docstring)."""
    rng = rng_for("unary", op, attrs, shape)
    x = with_specials(randn(rng, shape) * 4)
    model = one_node(onnx_case, op, {"x": (np.float32, shape)}, opset=opset, **attrs)
    onnx_case.check(model, {"x": x}, **tolerance)


DENSE = [
    ("Exp", {}, 13, np.linspace(-105, 90, 100_003)),
    ("Log", {}, 13, np.concatenate([np.exp(np.linspace(-103, 88, 100_003)), [1e-45, 3e-42, 1e-39, 1.0, 2.0]])),
    ("Tanh", {}, 13, np.linspace(-12, 12, 100_003)),
    ("Erf", {}, 13, np.linspace(-6, 6, 100_003)),
    ("Softplus", {}, 1, np.linspace(-110, 110, 100_003)),
    ("Mish", {}, 18, np.linspace(-110, 110, 100_003)),
    ("Elu", {}, 6, np.linspace(-20, 2, 100_003)),
    ("Gelu", {}, 20, np.linspace(-12, 12, 100_003)),
    ("Gelu", dict(approximate="tanh"), 20, np.linspace(-12, 12, 100_003)),
]


@pytest.mark.parametrize("op,attrs,opset,grid", DENSE, ids=[f"{d[0]}{'_tanh' if d[1] else ''}" for d in DENSE])
def test_unary_dense_grid(onnx_case, op, attrs, opset, grid):
    """100k points across each function's whole interesting range (exp into overflow and the
    subnormals, log down to the smallest subnormal): the accuracy claim of the tolerance, not
    just a sample. Tolerances as in test_unary."""
    tolerance = TRANSCENDENTAL if op in ("Exp", "Log", "Tanh", "Erf") else COMPOSITE
    x = grid.astype(np.float32).reshape(1, -1)
    model = one_node(onnx_case, op, {"x": (np.float32, x.shape)}, opset=opset, **attrs)
    onnx_case.check(model, {"x": x}, **tolerance)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float64], ids=["int64", "int32", "double"])
@pytest.mark.parametrize("op", ["Neg", "Abs"])
def test_neg_abs_other_types(onnx_case, op, dtype):
    """Integers wrap (-INT_MIN is INT_MIN, as numpy); EXACT."""
    rng = rng_for("negabs", op, dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        x = rng.integers(-1000, 1000, (2, 3, 7)).astype(dtype)
        x.flat[:3] = [info.min, info.max, 0]
    else:
        x = with_specials(randn(rng, (2, 3, 7), dtype))
    model = one_node(onnx_case, op, {"x": (dtype, x.shape)}, opset=13)
    onnx_case.check(model, {"x": x}, **EXACT)


def test_unary_large_threaded(onnx_case):
    """2 x 16 x 67 x 61 (130k elements, several 8192-element blocks over 2 threads) through
    Exp and Mish; tolerances TRANSCENDENTAL / COMPOSITE."""
    rng = rng_for("unary_large")
    x = randn(rng, (2, 16, 67, 61)) * 3
    for op, opset, tolerance in (("Exp", 13, TRANSCENDENTAL), ("Mish", 18, COMPOSITE)):
        model = one_node(onnx_case, op, {"x": (np.float32, x.shape)}, opset=opset)
        onnx_case.check(model, {"x": x}, **tolerance)


def test_unary_refusals(onnx_case):
    """Unsupported element types and Gelu's unknown approximation are refused by name."""
    model = one_node(onnx_case, "Exp", {"x": (np.int64, (3,))}, opset=13, check=False)
    refused(onnx_case, model, {"x": np.zeros(3, np.int64)}, "int64")
    model = one_node(onnx_case, "Gelu", {"x": (np.float32, (3,))}, opset=20, approximate="erf", check=False)
    refused(onnx_case, model, {"x": np.zeros(3, np.float32)}, "approximate 'erf'")


# ---------------------------------------------------------------------------------------------
# Clip

CLIPS = [
    # name, opset, attrs, min, max
    ("attr_both", 6, dict(min=-0.5, max=1.25), None, None),
    ("attr_min", 6, dict(min=0.0), None, None),
    ("attr_max", 6, dict(max=6.0), None, None),
    ("attr_none", 6, {}, None, None),
    ("input_both", 11, {}, -0.5, 1.25),
    ("input_min", 11, {}, 0.0, None),
    ("input_max", 13, {}, None, 6.0),
    ("input_none", 13, {}, None, None),
    ("min_above_max", 13, {}, 2.0, -1.0),
]


@pytest.mark.parametrize("name,opset,attrs,low,high", CLIPS, ids=[c[0] for c in CLIPS])
def test_clip(onnx_case, name, opset, attrs, low, high):
    """Bounds as attributes (opset 6) and optional inputs (11, 13; '' skips min); NaN stays NaN;
    min > max gives max everywhere (numpy's clip); EXACT.

    A missing bound is numeric_limits lowest() / max() (spec), so +-Inf inputs become +-FLT_MAX.
    onnx.reference does that for opset 6 but leaves the bound open from opset 11 on; there
    onnxruntime (which follows the spec) is the oracle."""
    rng = rng_for("clip", name)
    shape = (2, 3, 5, 7)
    x = with_specials(randn(rng, shape) * 3)
    inputs = {"x": (np.float32, shape)}
    initializers = {}
    if opset >= 11 and (low is not None or high is not None):
        inputs["min" if low is not None else ""] = (np.float32, ())
        if low is not None:
            initializers["min"] = np.array(low, np.float32)
        if high is not None:
            inputs["max"] = (np.float32, ())
            initializers["max"] = np.array(high, np.float32)
    model = one_node(onnx_case, "Clip", inputs, initializers, opset=opset, **attrs)
    if opset >= 11 and (low is None or high is None):
        onnx_case.compare(onnx_case.run(model, {"x": x}), ort_run(model, {"x": x}), **EXACT)
    else:
        onnx_case.check(model, {"x": x}, **EXACT)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float32], ids=["int64", "int32", "float"])
def test_clip_bounds_fed_at_run_time(onnx_case, dtype):
    """min and max as graph inputs (not constants), integer types at opset 13; EXACT."""
    rng = rng_for("clip_runtime", dtype)
    x = (randn(rng, (3, 4, 9)) * 50).astype(dtype)
    model = one_node(onnx_case, "Clip", {"x": (dtype, x.shape), "lo": (dtype, ()), "hi": (dtype, ())}, opset=13)
    onnx_case.check(model, {"x": x, "lo": np.array(-20, dtype), "hi": np.array(31, dtype)}, **EXACT)


# ---------------------------------------------------------------------------------------------
# PRelu, Pow, Min, Max

PRELU_SLOPES = [(3, 1, 1), (1,), (), (2, 3, 5, 7), (7,), (1, 3, 1, 1), (5, 1)]


@pytest.mark.parametrize("slope_shape", PRELU_SLOPES, ids=[str(s) for s in PRELU_SLOPES])
def test_prelu(onnx_case, slope_shape):
    """x (2, 3, 5, 7) with the slope broadcast from many shapes (per channel as PyTorch exports
    it, scalar, full, along W, along H); EXACT."""
    rng = rng_for("prelu", slope_shape)
    x = with_specials(randn(rng, (2, 3, 5, 7)))
    model = one_node(onnx_case, "PRelu", {"x": (np.float32, x.shape), "slope": (np.float32, slope_shape)},
                     {"slope": randn(rng, slope_shape)}, opset=16)
    onnx_case.check(model, {"x": x}, **EXACT)


def test_prelu_slope_that_does_not_broadcast_is_refused(onnx_case):
    model = one_node(onnx_case, "PRelu", {"x": (np.float32, (2, 3, 5, 7)), "slope": (np.float32, (3,))},
                     {"slope": np.ones(3, np.float32)}, opset=16, check=False)
    refused(onnx_case, model, {"x": np.zeros((2, 3, 5, 7), np.float32)}, "broadcast")


POWS = [
    ((2, 3, 5, 7), (2, 3, 5, 7), np.float32),
    ((2, 3, 5, 7), (), np.float32),
    ((2, 3, 5, 7), (5, 1), np.float32),
    ((3, 17), (), np.int64),
    ((3, 17), (17,), np.int32),
    ((3, 17), (3, 1), np.float64),
]


@pytest.mark.parametrize("x_shape,e_shape,e_dtype", POWS, ids=[f"{a}^{b}-{np.dtype(t).name}" for a, b, t in POWS])
def test_pow(onnx_case, x_shape, e_shape, e_dtype):
    """Float base (with NaN, Inf, +-0 and negatives), exponents float (random in [-3, 3] or
    whole), int32, int64 and double (numpy computes those in double; so does deformrt);
    tolerance POW (rtol=1e-6)."""
    rng = rng_for("pow", x_shape, e_shape, e_dtype)
    x = with_specials(randn(rng, x_shape) * 2)
    if np.issubdtype(e_dtype, np.integer):
        e = rng.integers(-3, 4, e_shape).astype(e_dtype)
    else:
        e = (rng.uniform(-3, 3, e_shape) * (rng.random(e_shape) < 0.5) + rng.integers(-2, 3, e_shape)).astype(e_dtype)
    model = one_node(onnx_case, "Pow", {"x": (np.float32, x_shape), "e": (e_dtype, e_shape)}, opset=15)
    onnx_case.check(model, {"x": x, "e": e}, **POW)


def test_pow_square_fast_path(onnx_case):
    """A constant exponent of 2 (variance in LayerNorm written out) is x * x; EXACT."""
    x = with_specials(randn(rng_for("pow2"), (2, 5, 33)) * 3)
    model = one_node(onnx_case, "Pow", {"x": (np.float32, x.shape), "e": (np.float32, ())},
                     {"e": np.array(2.0, np.float32)}, opset=15)
    onnx_case.check(model, {"x": x}, **EXACT)


MINMAX = [
    [(2, 3, 5, 7)],
    [(2, 3, 5, 7), (2, 3, 5, 7)],
    [(2, 3, 5, 7), (7,)],
    [(3, 1, 1), (2, 3, 5, 7)],
    [(2, 1, 17), (1, 4, 1), (17,)],
    [(), (3, 33), (3, 1)],
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32], ids=["float", "double", "int64", "int32"])
@pytest.mark.parametrize("shapes", MINMAX, ids=["x".join(str(s) for s in shapes) for shapes in MINMAX])
@pytest.mark.parametrize("op", ["Min", "Max"])
def test_min_max(onnx_case, op, shapes, dtype):
    """One to three inputs, broadcast together; NaN wins (numpy's minimum / maximum); EXACT."""
    rng = rng_for("minmax", op, shapes, dtype)
    feeds = {}
    for i, shape in enumerate(shapes):
        v = randn(rng, shape) * 10
        if dtype in (np.float32, np.float64) and v.size > 2:
            v.flat[i] = np.nan
        feeds[f"x{i}"] = v.astype(dtype)
    model = one_node(onnx_case, op, {k: (dtype, v.shape) for k, v in feeds.items()}, opset=13)
    onnx_case.check(model, feeds, **EXACT)


# ---------------------------------------------------------------------------------------------
# Comparison and logic

COMPARE_SHAPES = [((2, 3, 5, 7), (2, 3, 5, 7)), ((2, 3, 5, 7), (7,)), ((3, 1, 1), (2, 3, 5, 7)), ((), (4, 17)),
                  ((2, 1, 9), (1, 4, 1))]


@pytest.mark.parametrize("a_shape,b_shape", COMPARE_SHAPES, ids=[f"{a}x{b}" for a, b in COMPARE_SHAPES])
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.int32, np.float64], ids=["float", "int64", "int32", "double"])
@pytest.mark.parametrize("op", ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"])
def test_comparison(onnx_case, op, dtype, a_shape, b_shape):
    """Bool output with broadcasting; values drawn from a few integers so ties are common, NaN
    compares false; EXACT."""
    rng = rng_for("compare", op, dtype, a_shape, b_shape)
    a = rng.integers(-3, 4, a_shape).astype(dtype)
    b = rng.integers(-3, 4, b_shape).astype(dtype)
    if np.issubdtype(dtype, np.floating) and a.size > 1:
        a.flat[0] = np.nan
    model = one_node(onnx_case, op, {"a": (dtype, a_shape), "b": (dtype, b_shape)}, opset=16)
    onnx_case.check(model, {"a": a, "b": b}, **EXACT)


@pytest.mark.parametrize("op", ["Equal", "And", "Or", "Xor"])
def test_bool_binary(onnx_case, op):
    """Equal, And, Or, Xor on bool tensors with broadcasting; EXACT."""
    rng = rng_for("bool", op)
    a = rng.random((2, 3, 1, 7)) < 0.5
    b = rng.random((3, 5, 1)) < 0.5
    model = one_node(onnx_case, op, {"a": (np.bool_, a.shape), "b": (np.bool_, b.shape)}, opset=13)
    onnx_case.check(model, {"a": a, "b": b}, **EXACT)


def test_not(onnx_case):
    x = rng_for("not").random((2, 3, 17)) < 0.5
    onnx_case.check(one_node(onnx_case, "Not", {"x": (np.bool_, x.shape)}, opset=13), {"x": x}, **EXACT)


def test_logic_needs_bool(onnx_case):
    model = one_node(onnx_case, "And", {"a": (np.float32, (3,)), "b": (np.float32, (3,))}, opset=13, check=False)
    refused(onnx_case, model, {"a": np.zeros(3, np.float32), "b": np.zeros(3, np.float32)}, "bool")


WHERES = [((2, 3, 5, 7), (2, 3, 5, 7), (2, 3, 5, 7)), ((2, 1, 5, 1), (3, 1, 7), ()), ((7,), (2, 3, 5, 7), (5, 1)),
          ((), (4, 9), (9,)), ((2, 3, 1), (1,), (1, 1, 33))]


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.uint8, np.bool_, np.float16], ids=["float", "int64", "uint8", "bool", "f16"])
@pytest.mark.parametrize("c_shape,x_shape,y_shape", WHERES, ids=[f"{c}-{x}-{y}" for c, x, y in WHERES])
def test_where(onnx_case, c_shape, x_shape, y_shape, dtype):
    """Condition, X and Y broadcast three ways; any element type; EXACT."""
    rng = rng_for("where", c_shape, x_shape, y_shape, np.dtype(dtype).name)
    c = rng.random(c_shape) < 0.5
    x = (randn(rng, x_shape) * 50).astype(dtype)
    y = (randn(rng, y_shape) * 50).astype(dtype)
    model = one_node(onnx_case, "Where", {"c": (np.bool_, c_shape), "a": (dtype, x_shape), "b": (dtype, y_shape)}, opset=16)
    onnx_case.check(model, {"c": c, "a": x, "b": y}, **EXACT)


# ---------------------------------------------------------------------------------------------
# Pad

PADS = [
    # name, x shape, pads (begin..., end...), axes (opset 18) or None
    ("nchw_hw", (2, 3, 7, 9), [0, 0, 1, 2, 0, 0, 3, 1], None),
    ("nchw_asym_w", (2, 3, 5, 6), [0, 0, 0, 1, 0, 0, 0, 0], None),
    ("all_axes", (2, 3, 4, 5), [1, 1, 2, 1, 1, 0, 1, 3], None),
    ("rank2", (5, 7), [2, 0, 1, 3], None),
    ("rank1", (9,), [3, 4], None),
    ("zero", (2, 3, 4, 5), [0] * 8, None),
    ("axes_hw", (2, 3, 7, 9), [1, 2, 3, 1], [2, 3]),
    ("axes_negative", (2, 3, 7, 9), [2, 1, 0, 4], [-1, -2]),
]


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.uint8], ids=["float", "int64", "uint8"])
@pytest.mark.parametrize("mode", ["constant", "edge", "reflect"])
@pytest.mark.parametrize("name,shape,pads,axes", PADS, ids=[p[0] for p in PADS])
def test_pad(onnx_case, name, shape, pads, axes, mode, dtype):
    """Pads as an input (opset 11, 18 with axes), constant_value 1.5 (float) or 7; EXACT."""
    rng = rng_for("pad", name, mode, np.dtype(dtype).name)
    x = (randn(rng, shape) * 20).astype(dtype)
    value = np.array(1.5 if dtype == np.float32 else 7, dtype)
    inputs = {"x": (dtype, shape), "pads": (np.int64, (len(pads),)), "value": (dtype, ())}
    initializers = {"pads": np.array(pads, np.int64), "value": value}
    if axes is not None:
        inputs["axes"] = (np.int64, (len(axes),))
        initializers["axes"] = np.array(axes, np.int64)
    model = one_node(onnx_case, "Pad", inputs, initializers, opset=18 if axes else 11, mode=mode)
    onnx_case.check(model, {"x": x}, **EXACT)


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect"])
def test_pad_opset2_attributes(onnx_case, mode):
    """Pad-2: pads and value as attributes; EXACT."""
    x = randn(rng_for("pad2", mode), (2, 3, 5, 6))
    model = one_node(onnx_case, "Pad", {"x": (np.float32, x.shape)}, opset=2, mode=mode,
                     pads=[0, 0, 2, 1, 0, 0, 1, 3], value=-2.5)
    onnx_case.check(model, {"x": x}, **EXACT)


def test_pad_negative_crops_in_constant_mode(onnx_case):
    """Negative pads remove rows and columns. numpy.pad (so onnx.reference) rejects negative
    widths; onnxruntime is the oracle; EXACT."""
    x = randn(rng_for("pad_neg"), (2, 3, 7, 9))
    model = one_node(onnx_case, "Pad", {"x": (np.float32, x.shape), "pads": (np.int64, (8,))},
                     {"pads": np.array([0, 0, -2, 1, 0, -1, 3, -4], np.int64)}, opset=13)
    onnx_case.compare(onnx_case.run(model, {"x": x}), ort_run(model, {"x": x}), **EXACT)


def test_pad_empty_axis(onnx_case):
    """An empty axis padded with constants; EXACT."""
    x = np.zeros((2, 0, 3), np.float32)
    model = one_node(onnx_case, "Pad", {"x": (np.float32, x.shape), "pads": (np.int64, (6,))},
                     {"pads": np.array([0, 2, 1, 0, 1, 0], np.int64)}, opset=13)
    onnx_case.check(model, {"x": x}, **EXACT)


PAD_REFUSALS = [
    ("reflect_too_wide", "reflect", [0, 0, 0, 9, 0, 0, 0, 0], "smaller than axis"),
    ("negative_edge", "edge", [0, 0, -1, 0, 0, 0, 0, 0], "only supported in constant"),
    ("huge", "constant", [0, 0, 2**62, 0, 0, 0, 2**62, 0], "out of range"),
    ("large", "constant", [0, 0, 2**39, 0, 0, 0, 2**39, 0], "too many elements"),
    ("int64_max", "constant", [0, 0, 2**63 - 1, 0, 0, 0, 1, 0], "out of range"),
    ("int64_min", "constant", [0, 0, -(2**63), 0, 0, 0, 0, 0], "out of range"),
    ("min_plus_max", "constant", [0, 0, -(2**63), 0, 0, 0, 2**63 - 1, 0], "out of range"),
    ("crop_past_the_end", "constant", [0, 0, -9, 0, 0, 0, 0, 0], "do not fit"),
    ("wrong_count", "constant", [1, 1, 1], "2 entries per padded axis"),
]


@pytest.mark.parametrize("name,mode,pads,match", PAD_REFUSALS, ids=[p[0] for p in PAD_REFUSALS])
def test_pad_refusals(onnx_case, name, mode, pads, match):
    """Hostile and unsupported pads give an error naming the problem, never a crash."""
    model = one_node(onnx_case, "Pad", {"x": (np.float32, (2, 3, 7, 9)), "pads": (np.int64, (len(pads),))},
                     {"pads": np.array(pads, np.int64)}, opset=13, mode=mode, check=False)
    refused(onnx_case, model, {"x": np.zeros((2, 3, 7, 9), np.float32)}, match)


def test_pad_other_refusals(onnx_case):
    """Mode wrap is refused by name (pads from run-time data: Tests/python/test_runtime_shapes.py)."""
    model = one_node(onnx_case, "Pad", {"x": (np.float32, (2, 3)), "pads": (np.int64, (4,))},
                     {"pads": np.array([1, 1, 1, 1], np.int64)}, opset=19, mode="wrap", check=False)
    refused(onnx_case, model, {"x": np.zeros((2, 3), np.float32)}, "mode 'wrap'")


# ---------------------------------------------------------------------------------------------
# Resize / Upsample

COORDINATES = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"]
NEAREST_MODES = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]
RESIZE_GEOMETRY = [
    # name, x shape, scales (None) or sizes
    ("up2", (2, 3, 7, 9), [1, 1, 2, 2], None),
    ("up3x1.5", (2, 3, 5, 6), [1, 1, 3, 1.5], None),
    ("down0.5", (2, 3, 9, 11), [1, 1, 0.5, 0.5], None),
    ("sizes_up", (2, 3, 5, 7), None, [2, 3, 13, 17]),
    ("sizes_down", (2, 3, 13, 11), None, [2, 3, 6, 4]),
    ("sizes_mixed", (2, 3, 6, 9), None, [2, 3, 11, 5]),
    ("sizes_to_one", (2, 3, 6, 9), None, [2, 3, 1, 1]),
]


def resize_model(onnx_case, shape, scales, sizes, opset, dtype=np.float32, **attrs):
    inputs = {"x": (dtype, shape), "roi": (np.float32, (0,))}
    initializers = {"roi": np.zeros(0, np.float32)}
    if scales is not None:
        inputs["scales"] = (np.float32, (len(scales),))
        initializers["scales"] = np.array(scales, np.float32)
    else:
        inputs["scales"] = (np.float32, (0,))
        initializers["scales"] = np.zeros(0, np.float32)
        inputs["sizes"] = (np.int64, (len(sizes),))
        initializers["sizes"] = np.array(sizes, np.int64)
    return one_node(onnx_case, "Resize", inputs, initializers, opset=opset, **attrs)


def spec_resize(x, out_shape, scales, coordinates, mode, nearest_mode="round_prefer_floor"):
    """Resize as the ONNX spec writes it, in float64, one axis at a time (the oracle for
    test_resize_nearest / test_resize_linear).

    onnx.reference is not used there: its vectorised 1-D pass finds the neighbour window from
    x_original + pad, which rounds 3.0000000000000004 + 1 to 4.0 and then takes the window one
    to the left, so a coordinate one ulp above a whole number (17/7 upsampling, for one) reads the
    wrong pixel (its nearest output even goes 2, 3, 2, 3). Coordinates here, as in deformrt, are
    the spec's formulas evaluated in double; the output length in align_corners and
    pytorch_half_pixel is the integer one (the spec's, onnxruntime's)."""
    y = x.astype(np.float64)
    for axis, (n_in, n_out, scale) in enumerate(zip(x.shape, out_shape, scales)):
        if n_in == n_out and scale == 1:
            continue
        o = np.arange(n_out, dtype=np.float64)
        if coordinates == "half_pixel":
            c = (o + 0.5) / scale - 0.5
        elif coordinates == "pytorch_half_pixel":
            c = (o + 0.5) / scale - 0.5 if n_out > 1 else np.zeros(n_out)
        elif coordinates == "align_corners":
            c = o * (n_in - 1) / (n_out - 1) if n_out > 1 else np.zeros(n_out)
        elif coordinates == "asymmetric":
            c = o / scale
        else:  # half_pixel_symmetric
            c = n_in / 2 * (1 - n_out / (scale * n_in)) + (o + 0.5) / scale - 0.5
        f = np.floor(c)
        r = c - f
        if mode == "nearest":
            index = {"round_prefer_floor": np.where(r > 0.5, f + 1, f), "round_prefer_ceil": np.where(r >= 0.5, f + 1, f),
                     "floor": f, "ceil": np.where(r > 0, f + 1, f)}[nearest_mode]
            y = np.take(y, np.clip(index, 0, n_in - 1).astype(np.intp), axis=axis)
        else:
            lower = np.clip(f, 0, n_in - 1).astype(np.intp)
            upper = np.clip(f + 1, 0, n_in - 1).astype(np.intp)
            shape = [1] * y.ndim
            shape[axis] = n_out
            y = np.take(y, lower, axis=axis) * (1 - r).reshape(shape) + np.take(y, upper, axis=axis) * r.reshape(shape)
    return y.astype(x.dtype)


def resize_geometry(shape, scales, sizes):
    """Output shape and per-axis scales as the spec defines them (floor(scale * size), or
    sizes with scale = size_out / size_in)."""
    if scales is not None:
        scales = [float(np.float32(v)) for v in scales]
        return [int(np.floor(v * n)) for v, n in zip(scales, shape)], scales
    return list(sizes), [o / i for o, i in zip(sizes, shape)]


@pytest.mark.parametrize("nearest_mode", NEAREST_MODES)
@pytest.mark.parametrize("coordinates", COORDINATES)
@pytest.mark.parametrize("name,shape,scales,sizes", RESIZE_GEOMETRY, ids=[g[0] for g in RESIZE_GEOMETRY])
def test_resize_nearest(onnx_case, name, shape, scales, sizes, coordinates, nearest_mode):
    """Every nearest_mode with every coordinate mode, up, down and mixed, from scales or sizes
    (opset 13, batch 2, odd sizes), against spec_resize (see there why not onnx.reference);
    EXACT."""
    x = randn(rng_for("resize_nearest", name), shape)
    model = resize_model(onnx_case, shape, scales, sizes, 13, mode="nearest",
                         coordinate_transformation_mode=coordinates, nearest_mode=nearest_mode)
    out_shape, axis_scales = resize_geometry(shape, scales, sizes)
    want = spec_resize(x, out_shape, axis_scales, coordinates, "nearest", nearest_mode)
    onnx_case.compare(onnx_case.run(model, {"x": x}), [want], **EXACT)


@pytest.mark.parametrize("coordinates", COORDINATES + ["half_pixel_symmetric"])
@pytest.mark.parametrize("name,shape,scales,sizes", RESIZE_GEOMETRY, ids=[g[0] for g in RESIZE_GEOMETRY])
def test_resize_linear(onnx_case, name, shape, scales, sizes, coordinates):
    """Bilinear NCHW, every coordinate mode (half_pixel_symmetric at opset 19, the others 13),
    up, down and mixed, against spec_resize; tolerance LINEAR (rtol=1e-5, atol=1e-6)."""
    x = randn(rng_for("resize_linear", name), shape)
    opset = 19 if coordinates == "half_pixel_symmetric" else 13
    model = resize_model(onnx_case, shape, scales, sizes, opset, mode="linear", coordinate_transformation_mode=coordinates)
    out_shape, axis_scales = resize_geometry(shape, scales, sizes)
    want = spec_resize(x, out_shape, axis_scales, coordinates, "linear")
    onnx_case.compare(onnx_case.run(model, {"x": x}), [want], **LINEAR)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("coordinates", ["half_pixel", "asymmetric"])
def test_resize_exact_coordinates_against_reference(onnx_case, mode, coordinates):
    """Where no coordinate lands near a whole number (scales 2 and 0.5), onnx.reference itself
    is the oracle too; EXACT / LINEAR."""
    shape = (2, 3, 7, 10)
    x = randn(rng_for("resize_ref", mode, coordinates), shape)
    for scales in ([1, 1, 2, 2], [1, 1, 0.5, 0.5], [1, 1, 4, 0.5]):
        model = resize_model(onnx_case, shape, scales, None, 13, mode=mode, coordinate_transformation_mode=coordinates)
        onnx_case.check(model, {"x": x}, **(EXACT if mode == "nearest" else LINEAR))


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("coordinates", ["align_corners", "pytorch_half_pixel"])
def test_resize_length_conventions_against_onnxruntime(onnx_case, mode, coordinates):
    """Output length 1 with pytorch_half_pixel (spec and onnxruntime: coordinate 0) and
    align_corners with a scale whose product is fractional (spec and onnxruntime divide by the
    output length - 1; onnx.reference by scale * size - 1): onnxruntime is the oracle;
    tolerance LINEAR."""
    shape = (2, 3, 5, 6)
    x = randn(rng_for("resize_ort", mode, coordinates), shape)
    for scales, sizes in (([1, 1, 3, 1.5], None), (None, [2, 3, 1, 1]), (None, [2, 3, 1, 4])):
        model = resize_model(onnx_case, shape, scales, sizes, 13, mode=mode, coordinate_transformation_mode=coordinates)
        onnx_case.compare(onnx_case.run(model, {"x": x}), ort_run(model, {"x": x}), **LINEAR)


@pytest.mark.parametrize("shape,sizes", [((2, 9), [5, 20]), ((3, 2, 11), [3, 2, 4]), ((17,), [40])],
                         ids=["rank2", "rank3_w_only", "rank1"])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize_other_ranks(onnx_case, mode, shape, sizes):
    """Linear on 2-D maps, 3-D (only W changes) and 1-D rows; nearest likewise; EXACT for
    nearest, LINEAR for linear."""
    x = randn(rng_for("resize_rank", shape, mode), shape)
    model = resize_model(onnx_case, shape, None, sizes, 13, mode=mode)
    onnx_case.check(model, {"x": x}, **(EXACT if mode == "nearest" else LINEAR))


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.float16], ids=["int64", "uint8", "f16"])
def test_resize_nearest_other_types(onnx_case, dtype):
    """Nearest moves elements of any type (masks, index maps); 5-D; EXACT."""
    shape = (2, 3, 4, 5, 3)
    x = (randn(rng_for("resize_types", np.dtype(dtype).name), shape) * 50).astype(dtype)
    model = resize_model(onnx_case, shape, [1, 1, 2, 0.5, 3], None, 13, dtype=dtype, mode="nearest",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    onnx_case.check(model, {"x": x}, **EXACT)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize_axes_opset18(onnx_case, mode):
    """axes (opset 18): scales and sizes for the listed axes only, negative axes allowed.
    onnx.reference fails on axes ("axes don't match array"), so onnxruntime is the oracle;
    EXACT / LINEAR."""
    shape = (2, 3, 7, 9)
    x = randn(rng_for("resize_axes", mode), shape)
    for names, initializers, axes in ((["x", "", "scales"], {"scales": np.array([2.0, 1.5], np.float32)}, [2, 3]),
                                      (["x", "", "", "sizes"], {"sizes": np.array([4, 13], np.int64)}, [-2, -1])):
        node = helper.make_node("Resize", names, ["y"], mode=mode, axes=axes)
        model = onnx_case.model([node], [onnx_case.value("x", np.float32, shape)], ["y"], initializers, opset=18)
        onnx_case.compare(onnx_case.run(model, {"x": x}), ort_run(model, {"x": x}), **(EXACT if mode == "nearest" else LINEAR))


def test_resize_threaded_large(onnx_case):
    """2 x 16 x 40 x 52 -> x2 linear and nearest on 2 threads (row caches per worker);
    LINEAR / EXACT."""
    shape = (2, 16, 40, 52)
    x = randn(rng_for("resize_large"), shape)
    for mode, tolerance in (("linear", LINEAR), ("nearest", EXACT)):
        model = resize_model(onnx_case, shape, [1, 1, 2, 2], None, 13, mode=mode)
        onnx_case.check(model, {"x": x}, **tolerance)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("scales", [[1, 1, 2, 2], [1, 1, 0.5, 0.6], [1, 1, 1.7, 2.3]], ids=["up2", "down", "fractional"])
def test_resize_opset10_against_onnxruntime(onnx_case, mode, scales):
    """Resize-10 (X, scales): asymmetric coordinates; nearest rounds down when enlarging and up
    when shrinking (onnxruntime's rule; the opset-10 spec says nothing and onnx.reference has no
    opset-10 semantics), so onnxruntime is the oracle; EXACT / LINEAR."""
    shape = (2, 3, 7, 9)
    x = randn(rng_for("resize10", mode, scales), shape)
    model = one_node(onnx_case, "Resize", {"x": (np.float32, shape), "scales": (np.float32, (4,))},
                     {"scales": np.array(scales, np.float32)}, opset=10, mode=mode)
    onnx_case.compare(onnx_case.run(model, {"x": x}), ort_run(model, {"x": x}), **(EXACT if mode == "nearest" else LINEAR))


@pytest.mark.parametrize("scales", [[1, 1, 2, 2], [1, 1, 3, 1], [1, 1, 2.5, 1.5]], ids=["2x", "3x1", "fractional"])
@pytest.mark.parametrize("mode,opset", [("nearest", 9), ("linear", 9), ("nearest", 7), ("linear", 7)])
def test_upsample(onnx_case, mode, opset, scales):
    """Upsample-7 (scales attribute) and -9 (scales input). onnx.reference implements only
    nearest with whole scales, so onnxruntime is the oracle throughout; EXACT / LINEAR."""
    shape = (2, 3, 5, 7)
    x = randn(rng_for("upsample", mode, opset, scales), shape)
    if opset == 7:
        model = one_node(onnx_case, "Upsample", {"x": (np.float32, shape)}, opset=7, mode=mode,
                         scales=[float(v) for v in scales])
    else:
        model = one_node(onnx_case, "Upsample", {"x": (np.float32, shape), "s": (np.float32, (4,))},
                         {"s": np.array(scales, np.float32)}, opset=9, mode=mode)
    onnx_case.compare(onnx_case.run(model, {"x": x}), ort_run(model, {"x": x}), **(EXACT if mode == "nearest" else LINEAR))


def test_resize_tf_half_pixel_for_nn(onnx_case):
    """tf_half_pixel_for_nn (opset 11-12, nearest): onnx.reference lacks it; onnxruntime is the
    oracle; EXACT."""
    shape = (2, 3, 5, 7)
    x = randn(rng_for("resize_tf_nn"), shape)
    # No coordinate within float rounding of a tie (onnxruntime computes them in float).
    for scales in ([1, 1, 2, 2], [1, 1, 0.7, 1.7]):
        model = resize_model(onnx_case, shape, scales, None, 11, mode="nearest",
                             coordinate_transformation_mode="tf_half_pixel_for_nn")
        onnx_case.compare(onnx_case.run(model, {"x": x}), ort_run(model, {"x": x}), **EXACT)


RESIZE_REFUSALS = [
    # name, attributes, scales, sizes, match
    ("cubic", dict(mode="cubic"), [1, 1, 2, 2], None, "mode 'cubic'"),
    ("tf_crop_and_resize", dict(coordinate_transformation_mode="tf_crop_and_resize"), [1, 1, 2, 2], None, "tf_crop_and_resize"),
    ("antialias", dict(mode="linear", antialias=1), [1, 1, 0.5, 0.5], None, "antialias 1"),
    ("keep_aspect", dict(keep_aspect_ratio_policy="not_larger"), None, [2, 3, 8, 8], "not_larger"),
    ("exclude_outside", dict(mode="linear", exclude_outside=1), [1, 1, 2, 2], None, "exclude_outside 1"),
    ("bad_nearest_mode", dict(nearest_mode="round_half_even"), [1, 1, 2, 2], None, "round_half_even"),
    ("linear_channels", dict(mode="linear"), [1, 2, 2, 2], None, "linear resize of axis 1"),
    ("nan_scale", {}, [1, 1, float("nan"), 2], None, "finite and positive"),
    ("zero_scale", {}, [1, 1, 0, 2], None, "finite and positive"),
    ("negative_scale", {}, [1, 1, -2, 2], None, "finite and positive"),
    ("inf_scale", {}, [1, 1, float("inf"), 2], None, "finite and positive"),
    ("huge_scale", {}, [1, 1, 3e38, 3e38], None, "too large"),
    ("negative_size", {}, None, [2, 3, -4, 5], "negative"),
    ("huge_size", {}, None, [2, 3, 2**62, 2**62], "too many|INVALID_MODEL|memory"),
    ("scales_wrong_length", {}, [2, 2], None, "entries for 4 axes"),
]


@pytest.mark.parametrize("name,attrs,scales,sizes,match", RESIZE_REFUSALS, ids=[r[0] for r in RESIZE_REFUSALS])
def test_resize_refusals(onnx_case, name, attrs, scales, sizes, match):
    """Unsupported attribute values are refused naming the value; hostile scales and sizes give
    an error, never a crash or a trap in a float-to-int conversion."""
    shape = (2, 3, 5, 7)
    inputs = {"x": (np.float32, shape), "roi": (np.float32, (0,))}
    initializers = {"roi": np.zeros(0, np.float32)}
    inputs["scales"] = (np.float32, (len(scales) if scales else 0,))
    initializers["scales"] = np.array(scales or [], np.float32)
    if sizes is not None:
        inputs["sizes"] = (np.int64, (len(sizes),))
        initializers["sizes"] = np.array(sizes, np.int64)
    model = one_node(onnx_case, "Resize", inputs, initializers, opset=18, check=False, **attrs)
    refused(onnx_case, model, {"x": np.zeros(shape, np.float32)}, match)


def test_upsample_below_one_is_refused(onnx_case):
    model = one_node(onnx_case, "Upsample", {"x": (np.float32, (1, 1, 4, 4))}, opset=7, scales=[1, 1, 0.5, 1.0], check=False)
    refused(onnx_case, model, {"x": np.zeros((1, 1, 4, 4), np.float32)}, ">= 1")


# ---------------------------------------------------------------------------------------------
# ConstantOfShape, Expand, Range, Tile, Size, Dropout

@pytest.mark.parametrize("shape", [[2, 3, 5], [], [4, 0, 3], [1]], ids=["2x3x5", "scalar", "empty", "one"])
@pytest.mark.parametrize("value", [None, np.array([2.5], np.float32), np.array([-7], np.int64), np.array([True])],
                         ids=["default", "float", "int64", "bool"])
def test_constant_of_shape(onnx_case, value, shape):
    """Shape from an initializer; value default float 0, or any one-element tensor; EXACT."""
    attrs = {} if value is None else dict(value=onnx.numpy_helper.from_array(value, "v"))
    model = one_node(onnx_case, "ConstantOfShape", {"s": (np.int64, (len(shape),))},
                     {"s": np.array(shape, np.int64)}, opset=13, **attrs)
    onnx_case.check(model, {}, **EXACT)


def test_constant_of_shape_from_shape_subgraph(onnx_case):
    """ConstantOfShape(Shape(x)) added to x: a large constant computed at run time; EXACT."""
    shape = (2, 3, 41, 37)
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("ConstantOfShape", ["s"], ["c"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.25])),
             helper.make_node("Add", ["x", "c"], ["y"])]
    model = onnx_case.model(nodes, [onnx_case.value("x", np.float32, shape)], ["y"], opset=13)
    onnx_case.check(model, {"x": randn(rng_for("cos_subgraph"), shape)}, **EXACT)


@pytest.mark.parametrize("shape,match", [([3, -1], "negative"), ([2**40, 2**40], "too many"), ([2**62, 0, 2**62], "too many")],
                         ids=["negative", "huge", "huge_but_empty"])
def test_constant_of_shape_refusals(onnx_case, shape, match):
    model = one_node(onnx_case, "ConstantOfShape", {"s": (np.int64, (len(shape),))}, {"s": np.array(shape, np.int64)},
                     opset=13, check=False)
    refused(onnx_case, model, {}, match)


@pytest.mark.parametrize("target,match", [([2, -3], "negative"), ([2**40, 2**40, 1, 1], "too many"), ([5, 3], "broadcast")],
                         ids=["negative", "huge", "incompatible"])
def test_expand_refusals(onnx_case, target, match):
    model = one_node(onnx_case, "Expand", {"x": (np.float32, (2, 3)), "shape": (np.int64, (len(target),))},
                     {"shape": np.array(target, np.int64)}, opset=13, check=False)
    refused(onnx_case, model, {"x": np.zeros((2, 3), np.float32)}, match)


EXPANDS = [((3, 1), [2, 3, 5]), ((2, 3, 5), [3, 1]), ((1,), [4, 7]), ((), [2, 3]), ((2, 1, 5), [2, 4, 5]),
           ((3, 1, 7), [2, 1, 1, 1]), ((4, 1), [4, 0])]


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.bool_], ids=["float", "int64", "bool"])
@pytest.mark.parametrize("shape,target", EXPANDS, ids=[f"{s}->{t}" for s, t in EXPANDS])
def test_expand(onnx_case, shape, target, dtype):
    """Broadcast both ways (a target dim of 1 keeps the input's); EXACT."""
    x = (randn(rng_for("expand", shape, target), shape) * 10).astype(dtype)
    model = one_node(onnx_case, "Expand", {"x": (dtype, shape), "shape": (np.int64, (len(target),))},
                     {"shape": np.array(target, np.int64)}, opset=13)
    onnx_case.check(model, {"x": x}, **EXACT)


RANGES = [(0, 10, 1, np.int64), (10, -3, -3, np.int64), (5, 5, 1, np.int32), (-7, 20, 4, np.int32),
          (0.5, 3.7, 0.3, np.float32), (1.0, -2.0, -0.25, np.float32), (0.0, 1.0, 0.1, np.float64),
          (3, 1, 1, np.int64), (0, 7, 2, np.int16)]


@pytest.mark.parametrize("start,limit,delta,dtype", RANGES, ids=[f"{a}:{b}:{c}-{np.dtype(t).name}" for a, b, c, t in RANGES])
def test_range(onnx_case, start, limit, delta, dtype):
    """Integer and float ranges, negative steps, empty ranges; floats in double rounded once
    (as numpy.arange); EXACT."""
    model = one_node(onnx_case, "Range", {"a": (dtype, ()), "b": (dtype, ()), "c": (dtype, ())},
                     {"a": np.array(start, dtype), "b": np.array(limit, dtype), "c": np.array(delta, dtype)}, opset=11)
    onnx_case.check(model, {}, **EXACT)


def test_range_from_shape_feeds_a_gather(onnx_case):
    """Gather(x, Range(Shape(x)[1] - 1, -1, -1), axis=1) reverses axis 1: an index vector folded
    while planning and used at run time; EXACT."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "one"], ["n"], axis=0),
             helper.make_node("Sub", ["n", "one"], ["last"]),
             helper.make_node("Range", ["last", "minus_one", "minus_one"], ["idx"]),
             helper.make_node("Gather", ["x", "idx"], ["y"], axis=1)]
    initializers = {"one": np.array(1, np.int64), "minus_one": np.array(-1, np.int64)}
    model = onnx_case.model(nodes, [onnx_case.value("x", np.float32, (2, 7, 3))], ["y"], initializers, opset=13)
    onnx_case.check(model, {"x": randn(rng_for("range_gather"), (2, 7, 3))}, **EXACT)


RANGE_REFUSALS = [
    ("zero_delta", (0, 10, 0, np.int64), "delta 0"),
    ("zero_delta_float", (0.0, 1.0, 0.0, np.float32), "non-zero delta"),
    ("nan", (0.0, float("nan"), 1.0, np.float32), "finite"),
    ("inf", (0.0, float("inf"), 1.0, np.float32), "finite"),
    ("huge_int", (-(2**63), 2**63 - 1, 1, np.int64), "too many"),
    ("huge_float", (0.0, 1e30, 1e-10, np.float64), "too many"),
    ("span_overflows_double", (1.7e308, -1.7e308, -1.0, np.float64), "too many"),
    ("span_overflows_negative", (-1.7e308, 1.7e308, -1.0, np.float64), None),
]


@pytest.mark.parametrize("name,args,match", RANGE_REFUSALS, ids=[r[0] for r in RANGE_REFUSALS])
def test_range_refusals(onnx_case, name, args, match):
    """Hostile scalars give an error (or, for a span that overflows the wrong way, an empty
    range), never a crash or a trap converting a non-finite count."""
    start, limit, delta, dtype = args
    model = one_node(onnx_case, "Range", {"a": (dtype, ()), "b": (dtype, ()), "c": (dtype, ())},
                     {"a": np.array(start, dtype), "b": np.array(limit, dtype), "c": np.array(delta, dtype)},
                     opset=11, check=False)
    if match is None:
        assert onnx_case.run(model, {})[0].shape == (0,)
    else:
        refused(onnx_case, model, {}, match)


TILES = [((2, 3, 5), [1, 2, 3]), ((2, 3, 5), [2, 1, 1]), ((7,), [3]), ((2, 1, 4), [1, 5, 1]), ((2, 3), [0, 2]),
         ((3, 2, 1, 2), [2, 1, 3, 1])]


@pytest.mark.parametrize("dtype", [np.float32, np.int64], ids=["float", "int64"])
@pytest.mark.parametrize("shape,repeats", TILES, ids=[f"{s}x{r}" for s, r in TILES])
def test_tile(onnx_case, shape, repeats, dtype):
    x = (randn(rng_for("tile", shape, repeats), shape) * 10).astype(dtype)
    model = one_node(onnx_case, "Tile", {"x": (dtype, shape), "r": (np.int64, (len(repeats),))},
                     {"r": np.array(repeats, np.int64)}, opset=13)
    onnx_case.check(model, {"x": x}, **EXACT)


@pytest.mark.parametrize("repeats,match", [([1, -1], "negative"), ([2], "one entry per input axis"),
                                           ([2**62, 2**62], "overflow|too many")], ids=["negative", "short", "huge"])
def test_tile_refusals(onnx_case, repeats, match):
    model = one_node(onnx_case, "Tile", {"x": (np.float32, (2, 3)), "r": (np.int64, (len(repeats),))},
                     {"r": np.array(repeats, np.int64)}, opset=13, check=False)
    refused(onnx_case, model, {"x": np.zeros((2, 3), np.float32)}, match)


def test_size(onnx_case):
    """Size is known when planning and also feeds a run-time Add; EXACT."""
    nodes = [helper.make_node("Size", ["x"], ["n"]), helper.make_node("Cast", ["n"], ["nf"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["x", "nf"], ["y"])]
    model = onnx_case.model(nodes, [onnx_case.value("x", np.float32, (2, 3, 7))], ["n", "y"], opset=13)
    onnx_case.check(model, {"x": randn(rng_for("size"), (2, 3, 7))}, **EXACT)


@pytest.mark.parametrize("opset,extra,outputs", [(7, {}, 1), (10, {}, 2), (13, {"ratio": 0.3}, 1),
                                                 (13, {"ratio": 0.3, "training": False}, 2)],
                         ids=["opset7", "opset10_mask", "opset13_ratio", "opset13_training_false_mask"])
def test_dropout(onnx_case, opset, extra, outputs):
    """Inference Dropout: the input unchanged, the mask all true; EXACT."""
    x = randn(rng_for("dropout", opset), (2, 3, 9))
    inputs, initializers = {"x": (np.float32, x.shape)}, {}
    if "ratio" in extra:
        inputs["ratio"] = (np.float32, ())
        initializers["ratio"] = np.array(extra["ratio"], np.float32)
    if "training" in extra:
        inputs["training"] = (np.bool_, ())
        initializers["training"] = np.array(extra["training"])
    names = ["y", "mask"][:outputs]
    model = one_node(onnx_case, "Dropout", inputs, initializers, opset=opset, outputs=names)
    onnx_case.check(model, {"x": x}, **EXACT)


def test_dropout_training_mode_is_refused(onnx_case):
    model = one_node(onnx_case, "Dropout", {"x": (np.float32, (2, 3)), "r": (np.float32, ()), "t": (np.bool_, ())},
                     {"r": np.array(0.5, np.float32), "t": np.array(True)}, opset=13, check=False)
    refused(onnx_case, model, {"x": np.zeros((2, 3), np.float32)}, "training_mode true")


# ---------------------------------------------------------------------------------------------
# ArgMax / ArgMin

@pytest.mark.parametrize("select_last", [0, 1])
@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("axis", [0, 1, -1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.int32], ids=["float", "int64", "int32"])
@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
def test_arg_extremum(onnx_case, op, dtype, axis, keepdims, select_last):
    """Values from a few integers so ties are common (first or last index by select_last_index),
    NaN in float inputs (numpy: NaN is the extreme); EXACT."""
    rng = rng_for("arg", op, dtype, axis, keepdims, select_last)
    x = rng.integers(-3, 4, (3, 5, 7)).astype(dtype)
    if dtype == np.float32:
        x[1, 2, 3] = np.nan
        x[2, :, 1] = np.nan
    model = one_node(onnx_case, op, {"x": (dtype, x.shape)}, opset=13, axis=axis, keepdims=keepdims,
                     select_last_index=select_last)
    onnx_case.check(model, {"x": x}, **EXACT)


def test_arg_extremum_of_empty_axis_is_refused(onnx_case):
    model = one_node(onnx_case, "ArgMax", {"x": (np.float32, (2, 0, 3))}, opset=13, axis=1, check=False)
    refused(onnx_case, model, {"x": np.zeros((2, 0, 3), np.float32)}, "empty axis")


# ---------------------------------------------------------------------------------------------
# InstanceNormalization / LayerNormalization

@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (3, 4, 17), (2, 5, 3, 4, 3), (2, 2, 67, 61), (2, 3, 1)])
@pytest.mark.parametrize("epsilon", [None, 1e-3])
def test_instance_normalization(onnx_case, shape, epsilon):
    """Per (n, c) plane over the spatial dims; inputs offset by 5 so the mean matters; NORM."""
    rng = rng_for("instnorm", shape, epsilon)
    c = shape[1]
    attrs = {} if epsilon is None else dict(epsilon=epsilon)
    model = one_node(onnx_case, "InstanceNormalization", {"x": (np.float32, shape), "s": (np.float32, (c,)), "b": (np.float32, (c,))},
                     {"s": randn(rng, (c,)), "b": randn(rng, (c,))}, opset=6, **attrs)
    onnx_case.check(model, {"x": randn(rng, shape) * 3 + 5}, **NORM)


LAYER_NORMS = [
    # x shape, axis, scale shape, bias, outputs
    ((2, 5, 33), -1, (33,), True, 1),
    ((2, 5, 33), -1, (33,), False, 3),
    ((2, 7, 4, 6), -2, (4, 6), True, 3),
    ((2, 7, 4, 6), 1, (7, 4, 6), True, 2),
    ((3, 17), 0, (3, 17), True, 3),
    ((2, 7, 4, 6), -2, (1, 6), True, 1),
    ((2, 3, 129), -1, (1, 1, 129), True, 1),
]


@pytest.mark.parametrize("shape,axis,scale_shape,bias,outputs", LAYER_NORMS,
                         ids=[f"{s}-ax{a}-{sc}-{'b' if b else 'nob'}-{o}out" for s, a, sc, b, o in LAYER_NORMS])
def test_layer_normalization(onnx_case, shape, axis, scale_shape, bias, outputs):
    """Opset 17: rows X.shape[axis:], Scale / B broadcast to them; Mean and InvStdDev outputs;
    NORM."""
    rng = rng_for("layernorm", shape, axis, scale_shape)
    inputs = {"x": (np.float32, shape), "s": (np.float32, scale_shape)}
    initializers = {"s": randn(rng, scale_shape)}
    if bias:
        inputs["b"] = (np.float32, scale_shape)
        initializers["b"] = randn(rng, scale_shape)
    model = one_node(onnx_case, "LayerNormalization", inputs, initializers, opset=17,
                     outputs=["y", "mean", "inv_std"][:outputs], axis=axis)
    onnx_case.check(model, {"x": randn(rng, shape) * 2 + 3}, **NORM)


def test_layer_normalization_refusals(onnx_case):
    model = one_node(onnx_case, "LayerNormalization", {"x": (np.float32, (2, 3)), "s": (np.float32, (3,))},
                     {"s": np.ones(3, np.float32)}, opset=17, stash_type=11, check=False)
    refused(onnx_case, model, {"x": np.zeros((2, 3), np.float32)}, "stash_type 11")
    model = one_node(onnx_case, "LayerNormalization", {"x": (np.float32, (2, 3)), "s": (np.float32, (4,))},
                     {"s": np.ones(4, np.float32)}, opset=17, check=False)
    refused(onnx_case, model, {"x": np.zeros((2, 3), np.float32)}, "broadcast")


# ---------------------------------------------------------------------------------------------
# onnx's own node test cases (the backend conformance suite), generated in process

OFFICIAL_OPS = {"Tanh", "Exp", "Log", "Sqrt", "Neg", "Abs", "Erf", "Floor", "Ceil", "Reciprocal", "HardSigmoid",
                "HardSwish", "Softplus", "Elu", "Selu", "Gelu", "Mish", "PRelu", "Not", "Clip", "Pow", "Min", "Max",
                "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Where", "Pad",
                "Resize", "Upsample", "ConstantOfShape", "Expand", "Range", "Tile", "Dropout",
                "InstanceNormalization", "LayerNormalization", "Size", "ArgMax", "ArgMin"}
# Graph inputs from this position on hold shapes, pads or scales: fed as initializers, since
# DeformRT needs them when planning (run-time values are refused, tested above).
OFFICIAL_CONSTANT_FROM = {"Pad": 1, "Resize": 1, "Upsample": 1, "ConstantOfShape": 0, "Expand": 1, "Range": 0,
                          "Tile": 1, "Dropout": 1}
# Cases DeformRT refuses on purpose, each with the reason.
OFFICIAL_REFUSED = {
    r"^test_range_b?float16_": "Range in (b)float16",
    r"^test_equal_string": "strings",
    r"^test_pow_types_int": "integer bases",
    r"^test_wrap_pad$": "Pad mode wrap",
    r"cubic": "Resize mode cubic",
    r"antialias": "Resize antialias",
    r"not_(larger|smaller)$": "keep_aspect_ratio_policy",
    r"tf_crop_and_resize": "tf_crop_and_resize",
    r"^test_training_dropout": "Dropout in training mode",
}
# Where the suite and onnxruntime disagree, DeformRT follows onnxruntime (and PyTorch):
# align_corners with a fractional scale * length divides by the integer output length - 1.
OFFICIAL_ORT_ORACLE = {"test_resize_downsample_scales_linear_align_corners"}


def official_cases():
    import re
    import warnings
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    chosen = []
    for case in cases:
        nodes = case.model.graph.node
        if len(nodes) == 1 and nodes[0].op_type in OFFICIAL_OPS:
            refusal = next((why for pattern, why in OFFICIAL_REFUSED.items() if re.search(pattern, case.name)), None)
            chosen.append(pytest.param(case, refusal, id=case.name))
    return chosen


def constant_inputs(model: onnx.ModelProto, inputs, first: int):
    """The model with graph inputs from `first` on turned into initializers holding their values."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    declared = list(model.graph.input)
    kept = []
    for index, (info, value) in enumerate(zip(declared, inputs)):
        if index >= first:
            model.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(value), info.name))
        else:
            kept.append((info, value))
    del model.graph.input[:]
    model.graph.input.extend(info for info, _ in kept)
    return model, [value for _, value in kept]


@pytest.mark.parametrize("case,refusal", official_cases())
def test_onnx_backend_node_case(onnx_case, case, refusal):
    """onnx's conformance cases for every operator of this file, expected outputs from onnx's
    own generators, tolerance the suite's (rtol=1e-3, atol=1e-7 unless the case says otherwise).
    Refused cases must be refused as UNSUPPORTED; see OFFICIAL_REFUSED for why."""
    op = case.model.graph.node[0].op_type
    for inputs, outputs in case.data_sets:
        model, feeds = case.model, list(inputs)
        if op in OFFICIAL_CONSTANT_FROM:
            model, feeds = constant_inputs(model, feeds, OFFICIAL_CONSTANT_FROM[op])
        names = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
        feeds = dict(zip(names, feeds))
        data = model.SerializeToString()
        if refusal:
            with pytest.raises(deformrt.DeformRTError, match="UNSUPPORTED"):
                onnx_case.run(data, feeds)
            continue
        want = ort_run(data, feeds) if case.name in OFFICIAL_ORT_ORACLE else outputs
        onnx_case.compare(onnx_case.run(data, feeds), [np.asarray(w) for w in want], rtol=case.rtol, atol=case.atol)
