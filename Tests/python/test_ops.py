"""Every spine operator against onnx.reference.ReferenceEvaluator.

Each test builds a one-node (or small) model with onnx.helper, feeds it seeded random inputs of
odd shapes with batch > 1, and compares deformrt's outputs (dtype, shape, values) with the
reference. Tolerances, stated per test:
  EXACT (rtol=0, atol=0)  data movement, integer arithmetic, and float ops that are one IEEE
                          operation per element (Relu, Add, Mul, Div, ...): equal values
                          (numpy.testing.assert_array_equal, NaN matches NaN).
  GEMM  rtol=1e-4, atol=1e-5  Conv, Gemm, MatMul: sums run in another order (OpenBLAS).
  REDUCE rtol=1e-5, atol=1e-6 AveragePool, GlobalAveragePool, Softmax: a few roundings per element.
  Sigmoid rtol=1e-6, atol=1e-7; BatchNormalization rtol=1e-5, atol=1e-5 (folded to one
                          multiply-add, outputs up to ~30).
Where onnx.reference itself gets an operator wrong the test says so and builds the expectation
from reference operators that are right (test_softmax, test_pool).
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from onnx import TensorProto, helper

import deformrt

EXACT = dict(rtol=0, atol=0)
GEMM = dict(rtol=1e-4, atol=1e-5)
REDUCE = dict(rtol=1e-5, atol=1e-6)

# The inputs hold NaN, Inf, huge values and empty maps on purpose; numpy inside onnx.reference warns.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def rng_for(*key) -> np.random.Generator:
    """A generator seeded from the test's parameters, so each case has its own fixed inputs."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def randn(rng, shape, dtype=np.float32) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------------------------------------
# Conv

CONV_2D = [
    # name, (N, C, H, W), M, kernel, attributes, bias
    ("3x3_pad1_bias", (2, 3, 11, 9), 5, (3, 3), dict(pads=[1, 1, 1, 1]), True),
    ("stride2_asym_pads", (2, 3, 13, 10), 4, (3, 3), dict(strides=[2, 2], pads=[0, 1, 2, 1]), True),
    ("stride_hw_differ", (3, 2, 9, 12), 3, (5, 3), dict(strides=[1, 2], pads=[2, 0, 1, 1]), False),
    ("dilation2", (2, 3, 12, 11), 4, (3, 3), dict(dilations=[2, 2], pads=[2, 2, 2, 2]), True),
    ("dilation_hw_differ", (2, 2, 13, 9), 3, (3, 2), dict(dilations=[3, 1], strides=[2, 1]), True),
    ("group2", (2, 6, 9, 7), 4, (3, 3), dict(group=2, pads=[1, 1, 1, 1]), True),
    ("group3_stride", (3, 9, 11, 11), 6, (3, 3), dict(group=3, strides=[2, 2], pads=[1, 0, 1, 2]), False),
    ("depthwise", (2, 5, 10, 9), 5, (3, 3), dict(group=5, pads=[1, 1, 1, 1]), True),
    ("depthwise_multiplier2", (2, 3, 9, 8), 6, (3, 3), dict(group=3, pads=[1, 1, 1, 1], strides=[2, 2]), True),
    ("depthwise_dilated", (2, 7, 11, 13), 7, (3, 3), dict(group=7, dilations=[2, 2], pads=[2, 2, 2, 2]), False),
    ("pointwise_no_bias", (2, 17, 7, 5), 9, (1, 1), {}, False),
    ("kernel_equals_input", (2, 3, 5, 7), 4, (5, 7), {}, True),
    ("same_upper_even_kernel", (2, 3, 9, 10), 4, (4, 4), dict(auto_pad="SAME_UPPER", strides=[2, 2]), True),
    ("same_lower_even_kernel", (2, 3, 9, 10), 4, (4, 4), dict(auto_pad="SAME_LOWER", strides=[2, 2]), True),
    ("same_upper_odd_kernel", (2, 3, 11, 7), 3, (3, 3), dict(auto_pad="SAME_UPPER"), False),
    ("same_lower_stride3", (2, 3, 11, 13), 3, (2, 3), dict(auto_pad="SAME_LOWER", strides=[3, 3]), True),
    ("valid_stride2", (2, 3, 12, 11), 4, (3, 3), dict(auto_pad="VALID", strides=[2, 2]), True),
    ("many_channels", (2, 33, 9, 9), 17, (3, 3), dict(pads=[1, 1, 1, 1]), True),
]


@pytest.mark.parametrize("with_kernel_shape", [True, False], ids=["kernel_shape", "no_kernel_shape"])
@pytest.mark.parametrize("name,x_shape,m,kernel,attributes,bias", CONV_2D, ids=[c[0] for c in CONV_2D])
def test_conv_2d(onnx_case, name, x_shape, m, kernel, attributes, bias, with_kernel_shape):
    """Tolerance GEMM (rtol=1e-4, atol=1e-5): im2col + sgemm sums in another order."""
    rng = rng_for("conv2d", name)
    group = attributes.get("group", 1)
    w = randn(rng, (m, x_shape[1] // group, *kernel))
    attrs = dict(attributes)
    if with_kernel_shape:
        attrs["kernel_shape"] = list(kernel)
    inputs = ["x", "w"] + (["b"] if bias else [])
    initializers = {"w": w}
    if bias:
        initializers["b"] = randn(rng, (m,))
    node = helper.make_node("Conv", inputs, ["y"], **attrs)
    model = onnx_case.model([node], [onnx_case.value("x", np.float32, x_shape)], ["y"], initializers, opset=11)
    onnx_case.check(model, {"x": randn(rng, x_shape)}, **GEMM)


CONV_1D = [
    ("plain", (2, 4, 13), 3, 3, {}, True),
    ("pads_asym_stride2", (3, 4, 15), 5, 3, dict(pads=[1, 2], strides=[2]), True),
    ("dilation2", (2, 3, 17), 4, 3, dict(dilations=[2], pads=[2, 2]), False),
    ("group2", (2, 6, 11), 4, 3, dict(group=2, pads=[1, 1]), True),
    ("depthwise", (2, 5, 9), 5, 5, dict(group=5, pads=[2, 2]), True),
    ("same_upper", (2, 3, 10), 3, 4, dict(auto_pad="SAME_UPPER", strides=[3]), True),
    ("same_lower", (2, 3, 10), 3, 4, dict(auto_pad="SAME_LOWER", strides=[3]), True),
    ("valid", (2, 3, 12), 2, 3, dict(auto_pad="VALID", strides=[2]), False),
]


@pytest.mark.parametrize("with_kernel_shape", [True, False], ids=["kernel_shape", "no_kernel_shape"])
@pytest.mark.parametrize("name,x_shape,m,kernel,attributes,bias", CONV_1D, ids=[c[0] for c in CONV_1D])
def test_conv_1d(onnx_case, name, x_shape, m, kernel, attributes, bias, with_kernel_shape):
    """Tolerance GEMM (rtol=1e-4, atol=1e-5)."""
    rng = rng_for("conv1d", name)
    group = attributes.get("group", 1)
    attrs = dict(attributes)
    if with_kernel_shape:
        attrs["kernel_shape"] = [kernel]
    initializers = {"w": randn(rng, (m, x_shape[1] // group, kernel))}
    if bias:
        initializers["b"] = randn(rng, (m,))
    node = helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["y"], **attrs)
    model = onnx_case.model([node], [onnx_case.value("x", np.float32, x_shape)], ["y"], initializers, opset=11)
    onnx_case.check(model, {"x": randn(rng, x_shape)}, **GEMM)


@pytest.mark.parametrize("seed", range(16))
def test_conv_random_geometry(onnx_case, seed):
    """Shapes and attributes drawn from a fixed seed: batch 2-3, odd and even sizes, kernel 1-4
    per axis, stride 1-3, dilation 1-2, pads 0-2 per side, group a divisor of both channel counts
    (sometimes depthwise), 1-D for some seeds. Tolerance GEMM (rtol=1e-4, atol=1e-5)."""
    rng = rng_for("conv_random", seed)
    rank = 1 if seed % 4 == 3 else 2
    group = int(rng.choice([1, 1, 2, 3]))
    c = group * int(rng.integers(1, 5))
    m = group * int(rng.integers(1, 5))
    if seed % 5 == 0:
        group, c, m = 4, 4, 8  # depthwise with multiplier 2
    kernel = [int(k) for k in rng.integers(1, 5, rank)]
    strides = [int(v) for v in rng.integers(1, 4, rank)]
    dilations = [int(v) for v in rng.integers(1, 3, rank)]
    pads = [int(v) for v in rng.integers(0, 3, 2 * rank)]
    spatial = [int(v) for v in rng.integers(5, 16, rank)]
    spatial = [max(size, (k - 1) * d + 1) for size, k, d in zip(spatial, kernel, dilations)]
    x_shape = (int(rng.integers(2, 4)), c, *spatial)
    attrs = dict(group=group, strides=strides, dilations=dilations, pads=pads)
    if seed % 3 == 0:
        attrs["kernel_shape"] = kernel
    initializers = {"w": randn(rng, (m, c // group, *kernel))}
    if seed % 2 == 0:
        initializers["b"] = randn(rng, (m,))
    node = helper.make_node("Conv", ["x", "w"] + (["b"] if "b" in initializers else []), ["y"], **attrs)
    model = onnx_case.model([node], [onnx_case.value("x", np.float32, x_shape)], ["y"], initializers, opset=11)
    onnx_case.check(model, {"x": randn(rng, x_shape)}, **GEMM)


def test_conv_large_threaded(onnx_case):
    """Enough work to be split over both threads: 2x16x31x29 -> 24 channels; GEMM tolerance."""
    rng = rng_for("conv_large")
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])
    model = onnx_case.model([node], [onnx_case.value("x", np.float32, (2, 16, 31, 29))], ["y"],
                            {"w": randn(rng, (24, 16, 3, 3)), "b": randn(rng, (24,))}, opset=11)
    x = randn(rng, (2, 16, 31, 29))
    onnx_case.check(model, {"x": x}, **GEMM)
    onnx_case.check(model, {"x": x}, threads=1, **GEMM)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("op", ["Add", "Mul", "Sub", "Div"])
def test_binary_random_broadcast(onnx_case, op, seed):
    """Random rank-1..5 shape; the other operand drops leading dims and sets random dims to 1,
    then the operands may swap; EXACT."""
    rng = rng_for("binary_random", op, seed)
    rank = int(rng.integers(1, 6))
    out = [int(v) for v in rng.integers(1, 8, rank)]
    out[-1] = int(rng.choice([1, 3, 16, 17, 33]))
    other = [1 if rng.random() < 0.4 else d for d in out][int(rng.integers(0, rank + 1)):]
    a_shape, b_shape = (tuple(out), tuple(other)) if seed % 2 else (tuple(other), tuple(out))
    node = helper.make_node(op, ["a", "b"], ["y"])
    model = onnx_case.model([node], [onnx_case.value("a", np.float32, a_shape), onnx_case.value("b", np.float32, b_shape)],
                            ["y"], opset=14)
    onnx_case.check(model, {"a": randn(rng, a_shape), "b": randn(rng, b_shape)}, **EXACT)


@pytest.mark.parametrize("attrs", [dict(pads=[1, 1, 1, 1]), dict(pads=[2, 0, 2, 0], strides=[1, 1])],
                         ids=["4_pads", "4_pads_2_strides"])
def test_conv_1d_with_2d_attributes_is_refused(onnx_case, attrs):
    """A 1-D Conv whose attributes are sized for 2-D is an error, not a write past the output."""
    node = helper.make_node("Conv", ["x", "w"], ["y"], **attrs)
    model = onnx_case.model([node], [onnx_case.value("x", np.float32, (2, 3, 9))], ["y"],
                            {"w": np.ones((4, 3, 3), np.float32)}, opset=11, check=False)
    with pytest.raises(deformrt.DeformRTError):
        onnx_case.run(model, {"x": np.zeros((2, 3, 9), np.float32)})


def test_conv_weight_as_input(onnx_case):
    """Weights and bias fed at run time rather than stored; tolerance GEMM."""
    rng = rng_for("conv_weight_input")
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], group=2)
    model = onnx_case.model([node], [onnx_case.value("x", np.float32, (2, 4, 7, 9)),
                                     onnx_case.value("w", np.float32, (6, 2, 3, 3)),
                                     onnx_case.value("b", np.float32, (6,))], ["y"], opset=11)
    feeds = {"x": randn(rng, (2, 4, 7, 9)), "w": randn(rng, (6, 2, 3, 3)), "b": randn(rng, (6,))}
    onnx_case.check(model, feeds, **GEMM)


# ---------------------------------------------------------------------------------------------
# Unary activations


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (3, 17), (2, 1), (5, 33, 2)])
@pytest.mark.parametrize("op,attrs", [("Relu", {}), ("LeakyRelu", {}), ("LeakyRelu", dict(alpha=0.37)),
                                      ("Sigmoid", {})], ids=["Relu", "LeakyRelu_default", "LeakyRelu_alpha", "Sigmoid"])
def test_activation(onnx_case, op, attrs, shape):
    """Relu and LeakyRelu are one IEEE operation per element: EXACT. Sigmoid: rtol=1e-6,
    atol=1e-7 (expf against numpy's exp). Inputs include NaN, +-Inf, +-0 and |x| up to 100."""
    rng = rng_for("activation", op, attrs, shape)
    x = (randn(rng, shape) * 4).ravel()
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 100.0, -100.0, 88.5, -88.5, 1e-30], np.float32)
    x[: min(len(specials), x.size)] = specials[: x.size]
    x = x.reshape(shape)
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    model = onnx_case.model([node], [onnx_case.value("x", np.float32, shape)], ["y"], opset=13)
    tolerance = dict(rtol=1e-6, atol=1e-7) if op == "Sigmoid" else EXACT
    onnx_case.check(model, {"x": x}, **tolerance)


# ---------------------------------------------------------------------------------------------
# Add / Sub / Mul / Div

BROADCAST_SHAPES = [
    ((2, 3, 5, 7), (2, 3, 5, 7)),
    ((2, 3, 5, 7), (7,)),
    ((2, 3, 5, 7), (3, 1, 1)),
    ((3, 1, 1), (2, 3, 5, 7)),
    ((2, 1, 5, 1), (1, 3, 1, 7)),
    ((), (2, 3, 17)),
    ((2, 3, 17), ()),
    ((1,), (5, 37)),
    ((5, 1), (1, 37)),
    ((2, 3, 33), (2, 3, 1)),
    ((2, 3, 1), (2, 3, 33)),
    ((3, 1, 19), (3, 4, 19)),
    ((0, 3), (3,)),
]


@pytest.mark.parametrize("a_shape,b_shape", BROADCAST_SHAPES, ids=[f"{a}x{b}" for a, b in BROADCAST_SHAPES])
@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
def test_binary_float(onnx_case, op, a_shape, b_shape):
    """float32 with numpy broadcasting; one IEEE operation per element: EXACT."""
    rng = rng_for("binary_float", op, a_shape, b_shape)
    a, b = randn(rng, a_shape), randn(rng, b_shape)
    node = helper.make_node(op, ["a", "b"], ["y"])
    model = onnx_case.model([node], [onnx_case.value("a", np.float32, a_shape), onnx_case.value("b", np.float32, b_shape)],
                            ["y"], opset=14)
    onnx_case.check(model, {"a": a, "b": b}, **EXACT)


@pytest.mark.parametrize("a_shape,b_shape", [((2, 3, 5, 7), (2, 3, 5, 7)), ((2, 3, 5, 7), (5, 1)),
                                             ((), (3, 17)), ((2, 1, 9), (1, 4, 1))])
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float64], ids=["int64", "int32", "double"])
@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
def test_binary_other_types(onnx_case, op, dtype, a_shape, b_shape):
    """int64/int32 (Div truncates toward zero, as C and onnx.reference do) and double: EXACT.
    Divisors are never 0 (integer x/0 is undefined in ONNX)."""
    rng = rng_for("binary_typed", op, np.dtype(dtype).name, a_shape, b_shape)
    if np.issubdtype(dtype, np.integer):
        a = rng.integers(-1000, 1000, a_shape).astype(dtype)
        b = rng.integers(1, 30, b_shape).astype(dtype) * rng.choice(np.array([-1, 1], dtype), b_shape)
    else:
        a, b = randn(rng, a_shape, dtype), randn(rng, b_shape, dtype)
    node = helper.make_node(op, ["a", "b"], ["y"])
    model = onnx_case.model([node], [onnx_case.value("a", dtype, a_shape), onnx_case.value("b", dtype, b_shape)],
                            ["y"], opset=14)
    onnx_case.check(model, {"a": a, "b": b}, **EXACT)


def test_integer_div_truncates_toward_zero(onnx_case):
    """-7 / 2 is -3 (not numpy's floor -4); EXACT against the reference and the literal values."""
    a = np.array([[7, -7, 7, -7, 1, -1, 0, 9]] * 2, np.int64)
    b = np.array([2, 2, -2, -2, 3, 3, 5, -4], np.int64)
    for dtype in (np.int64, np.int32):
        node = helper.make_node("Div", ["a", "b"], ["y"])
        model = onnx_case.model([node], [onnx_case.value("a", dtype, a.shape), onnx_case.value("b", dtype, b.shape)],
                                ["y"], opset=14)
        got = onnx_case.check(model, {"a": a.astype(dtype), "b": b.astype(dtype)}, **EXACT)[0]
        np.testing.assert_array_equal(got[0], np.array([3, -3, -3, 3, 0, 0, 0, -2], dtype))


@pytest.mark.parametrize("dtype", [np.int64, np.int32], ids=["int64", "int32"])
@pytest.mark.parametrize("op", ["Add", "Sub", "Mul"])
def test_integer_overflow_wraps(onnx_case, op, dtype):
    """Integer overflow wraps around (two's complement) as in numpy and onnx.reference; EXACT."""
    info = np.iinfo(dtype)
    a = np.array([info.max, info.min, info.max // 2 + 7, -3, info.min], dtype)
    b = np.array([3, -5, 3, info.max, -1], dtype)
    node = helper.make_node(op, ["a", "b"], ["y"])
    model = onnx_case.model([node], [onnx_case.value("a", dtype, a.shape), onnx_case.value("b", dtype, b.shape)],
                            ["y"], opset=14)
    with np.errstate(over="ignore"):
        onnx_case.check(model, {"a": a, "b": b}, **EXACT)


# ---------------------------------------------------------------------------------------------
# BatchNormalization


@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (3, 4), (2, 3, 11), (2, 17, 5, 5)])
@pytest.mark.parametrize("epsilon", [None, 1e-3])
def test_batch_normalization(onnx_case, shape, epsilon):
    """Inference mode, folded to y = x * a + b per channel: rtol=1e-5, atol=1e-5 (outputs up to
    ~30, so a few ulp of rounding exceed 1e-6 absolute)."""
    rng = rng_for("bn", shape, epsilon)
    c = shape[1]
    initializers = {"scale": randn(rng, (c,)), "bias": randn(rng, (c,)), "mean": randn(rng, (c,)),
                    "var": (rng.random(c) + 0.1).astype(np.float32)}
    attrs = {} if epsilon is None else dict(epsilon=epsilon)
    node = helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y"], **attrs)
    model = onnx_case.model([node], [onnx_case.value("x", np.float32, shape)], ["y"], initializers, opset=15)
    onnx_case.check(model, {"x": randn(rng, shape) * 3}, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# MaxPool / AveragePool / GlobalAveragePool

POOL_CASES = [
    # name, x shape, attributes (kernel_shape always given)
    ("k2s2", (2, 3, 8, 9), dict(kernel_shape=[2, 2], strides=[2, 2])),
    ("k3s1_pads", (2, 3, 7, 9), dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])),
    ("k3s1_asym_pads", (2, 3, 7, 9), dict(kernel_shape=[3, 3], pads=[0, 2, 1, 0])),
    ("k2x4_s1_asym_pads", (3, 2, 8, 11), dict(kernel_shape=[2, 4], pads=[1, 3, 0, 1])),
    ("k3s2_asym_pads", (2, 3, 9, 8), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[0, 1, 2, 1])),
    ("k3x2_s2x1", (3, 2, 9, 7), dict(kernel_shape=[3, 2], strides=[2, 1])),
    ("ceil_k3s2", (2, 3, 8, 10), dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)),
    ("ceil_k2s2_pads", (2, 3, 9, 9), dict(kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)),
    ("ceil_k3s2_pads", (2, 3, 10, 9), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 1], ceil_mode=1)),
    ("dilation2", (2, 3, 11, 10), dict(kernel_shape=[3, 3], dilations=[2, 2])),
    ("dilation2_stride2_pads", (2, 3, 11, 12), dict(kernel_shape=[2, 3], dilations=[2, 2], strides=[2, 2],
                                                      pads=[1, 1, 1, 1])),
    ("same_upper_s2", (2, 3, 9, 8), dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")),
    ("same_lower_s2", (2, 3, 9, 8), dict(kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_LOWER")),
    ("same_upper_k4", (2, 3, 7, 9), dict(kernel_shape=[4, 4], auto_pad="SAME_UPPER")),
    ("same_lower_k4", (2, 3, 7, 9), dict(kernel_shape=[4, 4], auto_pad="SAME_LOWER")),
    ("valid_s2", (2, 3, 9, 8), dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="VALID")),
    ("1d_k3s2_pads", (2, 3, 13), dict(kernel_shape=[3], strides=[2], pads=[1, 2])),
    ("1d_ceil", (2, 3, 12), dict(kernel_shape=[3], strides=[2], ceil_mode=1)),
    ("1d_dilation", (2, 3, 15), dict(kernel_shape=[3], dilations=[3], pads=[1, 1])),
    ("1d_same_upper", (2, 3, 10), dict(kernel_shape=[4], strides=[3], auto_pad="SAME_UPPER")),
]


def same_pads(shape, attrs):
    """The explicit [begin..., end...] pads that auto_pad SAME_* stands for (ONNX spec): total
    (ceil(in/s) - 1) * s + (k - 1) * d + 1 - in, the odd one at the end for SAME_UPPER and at the
    beginning for SAME_LOWER."""
    spatial = shape[2:]
    strides = attrs.get("strides", [1] * len(spatial))
    dilations = attrs.get("dilations", [1] * len(spatial))
    begin, end = [], []
    for size, k, s, d in zip(spatial, attrs["kernel_shape"], strides, dilations):
        total = max(0, (-(-size // s) - 1) * s + (k - 1) * d + 1 - size)
        begin.append(total // 2 if attrs["auto_pad"] == "SAME_UPPER" else total - total // 2)
        end.append(total - begin[-1])
    return begin + end


@pytest.mark.parametrize("name,shape,attrs", POOL_CASES, ids=[c[0] for c in POOL_CASES])
@pytest.mark.parametrize("op,count_include_pad", [("MaxPool", None), ("AveragePool", 0), ("AveragePool", 1)],
                         ids=["max", "avg", "avg_count_pad"])
def test_pool(onnx_case, op, count_include_pad, name, shape, attrs):
    """MaxPool: EXACT. AveragePool: REDUCE (rtol=1e-5, atol=1e-6), the divisor counts input taps
    (count_include_pad=0) or taps inside the padded input (=1). Opset 19 (dilations for
    AveragePool).

    Two onnx.reference bugs are worked around by running the spec's definition through other
    reference operators:
    - MaxPool with strides and dilations all 1 reads pads as [top, bottom, left, right]
      (ONNX: [top, left, bottom, right]), and the strided MaxPool path sizes SAME_LOWER outputs
      floor(in/stride) (spec and onnxruntime: ceil). So MaxPool with SAME or asymmetric pads
      (no ceil_mode) is compared with reference MaxPool, unpadded, over the input padded with -inf.
    - AveragePool with SAME is compared with the same pool given the equivalent explicit pads."""
    rng = rng_for("pool", op, count_include_pad, name)
    attrs = dict(attrs)
    if count_include_pad is not None:
        attrs["count_include_pad"] = count_include_pad
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    model = onnx_case.model([node], [onnx_case.value("x", np.float32, shape)], ["y"], opset=19)
    x = randn(rng, shape)
    tolerance = EXACT if op == "MaxPool" else REDUCE
    rank = len(shape) - 2
    pads = same_pads(shape, attrs) if attrs.get("auto_pad", "").startswith("SAME") else attrs.get("pads", [0] * 2 * rank)
    plain = {k: v for k, v in attrs.items() if k not in ("auto_pad", "pads")}
    if op == "MaxPool" and not attrs.get("ceil_mode") and (pads[:rank] != pads[rank:] or "auto_pad" in attrs):
        padded = np.pad(x, [(0, 0), (0, 0)] + list(zip(pads[:rank], pads[rank:])), constant_values=-np.inf)
        reference = onnx_case.model([helper.make_node(op, ["x"], ["y"], **plain)],
                                    [onnx_case.value("x", np.float32, padded.shape)], ["y"], opset=19)
        want = onnx_case.reference(reference, {"x": padded})
    elif attrs.get("auto_pad", "").startswith("SAME"):
        reference = onnx_case.model([helper.make_node(op, ["x"], ["y"], pads=pads, **plain)],
                                    [onnx_case.value("x", np.float32, shape)], ["y"], opset=19)
        want = onnx_case.reference(reference, {"x": x})
    else:
        want = onnx_case.reference(model, {"x": x})
    onnx_case.compare(onnx_case.run(model, {"x": x}), want, **tolerance)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("shape,attrs", [
    ((2, 3, 9), dict(kernel_shape=[1, 3], pads=[2, 0, 2, 0])),
    ((2, 3, 9), dict(kernel_shape=[3], pads=[2, 0, 2, 0])),
    ((2, 3, 9, 9), dict(kernel_shape=[3])),
], ids=["2d_kernel_on_1d", "4_pads_on_1d", "1d_kernel_on_2d"])
def test_pool_attributes_of_the_wrong_rank_are_refused(onnx_case, op, shape, attrs):
    """Attributes sized for another spatial rank are an error at session creation, not a write
    past the output."""
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    model = onnx_case.model([node], [onnx_case.value("x", np.float32, shape)], ["y"], opset=19, check=False)
    with pytest.raises(deformrt.DeformRTError, match="INVALID_MODEL|kernel_shape|pads"):
        onnx_case.run(model, {"x": np.zeros(shape, np.float32)})


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (3, 17, 1, 1), (2, 4, 9), (2, 3, 4, 5, 3), (2, 5, 19, 23),
                                   (2, 3, 0, 5)])
def test_global_average_pool(onnx_case, shape):
    """Mean over all spatial dims: REDUCE (rtol=1e-5, atol=1e-6). An empty map averages to NaN
    (numpy's mean of nothing)."""
    rng = rng_for("gap", shape)
    node = helper.make_node("GlobalAveragePool", ["x"], ["y"])
    model = onnx_case.model([node], [onnx_case.value("x", np.float32, shape)], ["y"], opset=13)
    onnx_case.check(model, {"x": randn(rng, shape)}, **REDUCE)


# ---------------------------------------------------------------------------------------------
# Flatten / Reshape / Transpose / Concat / Identity / Squeeze / Unsqueeze


@pytest.mark.parametrize("axis", [None, 0, 1, 2, 3, 4, -1, -2, -4])
def test_flatten(onnx_case, axis):
    """Data movement: EXACT."""
    shape = (2, 3, 5, 7)
    x = randn(rng_for("flatten", axis), shape)
    node = helper.make_node("Flatten", ["x"], ["y"], **({} if axis is None else dict(axis=axis)))
    model = onnx_case.model([node], [onnx_case.value("x", np.float32, shape)], ["y"], opset=13)
    onnx_case.check(model, {"x": x}, **EXACT)


RESHAPES = [
    ((2, 3, 4), [0, -1], 0),
    ((2, 3, 4), [-1], 0),
    ((2, 3, 4), [4, 0, 2], 0),
    ((2, 3, 4), [0, 0, -1], 0),
    ((2, 3, 5), [5, -1, 3], 0),
    ((3, 5, 7), [1, 105, 1], 0),
    ((2, 3, 4), [2, 3, 2, 2], 1),
    ((0, 3, 4), [3, 4, 0], 1),
    ((0, 3, 4), [0, 12], 0),
    ((2, 3, 4), [0, 1, -1, 1], 0),
]


@pytest.mark.parametrize("x_shape,target,allowzero", RESHAPES, ids=[f"{s}->{t}-az{a}" for s, t, a in RESHAPES])
def test_reshape(onnx_case, x_shape, target, allowzero):
    """0 copies the input dim (unless allowzero), -1 is inferred; EXACT. Opset 14 (allowzero)."""
    x = randn(rng_for("reshape", x_shape, target), x_shape)
    node = helper.make_node("Reshape", ["x", "shape"], ["y"], allowzero=allowzero)
    model = onnx_case.model([node], [onnx_case.value("x", np.float32, x_shape)], ["y"],
                            {"shape": np.array(target, np.int64)}, opset=14)
    onnx_case.check(model, {"x": x}, **EXACT)


TRANSPOSES = [((5, 7), None), ((5, 7), [1, 0]), ((2, 3, 5), [0, 2, 1]), ((2, 3, 5), [2, 0, 1]),
              ((2, 3, 5, 7), [0, 2, 3, 1]), ((2, 3, 5, 7), [3, 1, 0, 2]), ((2, 3, 5, 7), None), ((2, 3, 1, 7), [2, 0, 3, 1])]


@pytest.mark.parametrize("shape,perm", TRANSPOSES, ids=[f"{s}-{p}" for s, p in TRANSPOSES])
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.uint8, np.float16], ids=["f32", "i64", "u8", "f16"])
def test_transpose(onnx_case, shape, perm, dtype):
    """Every element size (1, 2, 4, 8 bytes); EXACT."""
    x = (randn(rng_for("transpose", shape, perm), shape) * 50).astype(dtype)
    node = helper.make_node("Transpose", ["x"], ["y"], **({} if perm is None else dict(perm=perm)))
    model = onnx_case.model([node], [onnx_case.value("x", dtype, shape)], ["y"], opset=13)
    onnx_case.check(model, {"x": x}, **EXACT)


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2, -3])
@pytest.mark.parametrize("dtype", [np.float32, np.int64], ids=["f32", "i64"])
def test_concat(onnx_case, axis, dtype):
    """Three parts of different sizes along the axis (one of size 0 along it); EXACT."""
    rng = rng_for("concat", axis, np.dtype(dtype).name)
    base = [2, 3, 5]
    sizes = [3, 0, 2]
    shapes = []
    for size in sizes:
        s = list(base)
        s[axis] = size
        shapes.append(tuple(s))
    xs = [(randn(rng, s) * 100).astype(dtype) for s in shapes]
    node = helper.make_node("Concat", ["a", "b", "c"], ["y"], axis=axis)
    model = onnx_case.model([node], [onnx_case.value(n, dtype, s) for n, s in zip("abc", shapes)], ["y"], opset=13)
    onnx_case.check(model, dict(zip("abc", xs)), **EXACT)


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.bool_], ids=["f32", "i64", "bool"])
def test_identity(onnx_case, dtype):
    """EXACT."""
    x = randn(rng_for("identity", np.dtype(dtype).name), (2, 3, 5)) > 0 if dtype == np.bool_ else \
        (randn(rng_for("identity", np.dtype(dtype).name), (2, 3, 5)) * 100).astype(dtype)
    node = helper.make_node("Identity", ["x"], ["y"])
    model = onnx_case.model([node], [onnx_case.value("x", dtype, (2, 3, 5))], ["y"], opset=16)
    onnx_case.check(model, {"x": x}, **EXACT)


UNSQUEEZES = [((2, 3), [0]), ((2, 3), [-1]), ((2, 3), [1, 3]), ((2, 3), [-1, 0]), ((2, 3, 5), [2]), ((), [0])]


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("shape,axes", UNSQUEEZES, ids=[f"{s}-{a}" for s, a in UNSQUEEZES])
def test_unsqueeze(onnx_case, shape, axes, opset):
    """Axes as attribute (opset 11) or input (opset 13); EXACT."""
    x = randn(rng_for("unsqueeze", shape, axes), shape)
    if opset >= 13:
        node = helper.make_node("Unsqueeze", ["x", "axes"], ["y"])
        initializers = {"axes": np.array(axes, np.int64)}
    else:
        node = helper.make_node("Unsqueeze", ["x"], ["y"], axes=axes)
        initializers = {}
    model = onnx_case.model([node], [onnx_case.value("x", np.float32, shape)], ["y"], initializers, opset=opset)
    onnx_case.check(model, {"x": x}, **EXACT)


SQUEEZES = [((2, 1, 3), [1]), ((2, 1, 3, 1), [-1]), ((2, 1, 3, 1), [1, -1]), ((2, 1, 3, 1), None), ((1, 1), None),
            ((1, 5, 1), [0])]


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("shape,axes", SQUEEZES, ids=[f"{s}-{a}" for s, a in SQUEEZES])
def test_squeeze(onnx_case, shape, axes, opset):
    """Axes as attribute (opset 11) or input (opset 13), or absent (all size-1 dims); EXACT."""
    x = randn(rng_for("squeeze", shape, axes), shape)
    initializers = {}
    if axes is None:
        node = helper.make_node("Squeeze", ["x"], ["y"])
    elif opset >= 13:
        node = helper.make_node("Squeeze", ["x", "axes"], ["y"])
        initializers = {"axes": np.array(axes, np.int64)}
    else:
        node = helper.make_node("Squeeze", ["x"], ["y"], axes=axes)
    model = onnx_case.model([node], [onnx_case.value("x", np.float32, shape)], ["y"], initializers, opset=opset)
    onnx_case.check(model, {"x": x}, **EXACT)


# ---------------------------------------------------------------------------------------------
# Gemm / MatMul

GEMM_C_SHAPES = [None, (), (1,), "N", "1N", "M1", "MN"]


@pytest.mark.parametrize("c_kind", GEMM_C_SHAPES, ids=[str(c) for c in GEMM_C_SHAPES])
@pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_gemm(onnx_case, trans_a, trans_b, c_kind):
    """Y = alpha op(A) op(B) + beta C with C broadcast; GEMM (rtol=1e-4, atol=1e-5)."""
    rng = rng_for("gemm", trans_a, trans_b, c_kind)
    m, k, n = 5, 7, 3
    a = randn(rng, (k, m) if trans_a else (m, k))
    b = randn(rng, (n, k) if trans_b else (k, n))
    c_shape = {None: None, (): (), (1,): (1,), "N": (n,), "1N": (1, n), "M1": (m, 1), "MN": (m, n)}[c_kind]
    attrs = dict(transA=trans_a, transB=trans_b, alpha=0.75, beta=-1.5)
    inputs = [onnx_case.value("a", np.float32, a.shape), onnx_case.value("b", np.float32, b.shape)]
    feeds = {"a": a, "b": b}
    names = ["a", "b"]
    if c_shape is not None:
        inputs.append(onnx_case.value("c", np.float32, c_shape))
        feeds["c"] = randn(rng, c_shape)
        names.append("c")
    node = helper.make_node("Gemm", names, ["y"], **attrs)
    model = onnx_case.model([node], inputs, ["y"], opset=13)
    onnx_case.check(model, feeds, **GEMM)


@pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (1, 1), (0, 1)])
def test_gemm_large_threaded(onnx_case, trans_a, trans_b):
    """Big enough (M*N*K > 2**18) to be split over threads; default alpha/beta, C as an
    initializer of shape [N]; GEMM (rtol=1e-4, atol=1e-5)."""
    rng = rng_for("gemm_large", trans_a, trans_b)
    m, k, n = 33, 65, 131
    a = randn(rng, (k, m) if trans_a else (m, k))
    b = randn(rng, (n, k) if trans_b else (k, n))
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], transA=trans_a, transB=trans_b)
    model = onnx_case.model([node], [onnx_case.value("a", np.float32, a.shape)], ["y"],
                            {"b": b, "c": randn(rng, (n,))}, opset=13)
    onnx_case.check(model, {"a": a}, **GEMM)


def test_gemm_beta_zero_ignores_c(onnx_case):
    """alpha=2, beta=0 with C present; GEMM tolerance."""
    rng = rng_for("gemm_beta0")
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], alpha=2.0, beta=0.0)
    model = onnx_case.model([node], [onnx_case.value("a", np.float32, (3, 4))], ["y"],
                            {"b": randn(rng, (4, 5)), "c": randn(rng, (3, 5))}, opset=13)
    onnx_case.check(model, {"a": randn(rng, (3, 4))}, **GEMM)


MATMULS = [((7,), (7,)), ((7,), (7, 5)), ((3, 7), (7,)), ((3, 7), (7, 5)), ((2, 3, 7), (7, 5)),
           ((3, 7), (2, 7, 5)), ((2, 1, 3, 7), (4, 7, 5)), ((7,), (2, 7, 5)), ((2, 3, 7), (7,)),
           ((2, 3, 5, 7), (2, 3, 7, 1)), ((2, 40, 64), (64, 130)), ((3, 1, 9), (3, 9, 1))]


@pytest.mark.parametrize("a_shape,b_shape", MATMULS, ids=[f"{a}x{b}" for a, b in MATMULS])
def test_matmul(onnx_case, a_shape, b_shape):
    """numpy matmul semantics (1-D promotion, batch broadcast); GEMM (rtol=1e-4, atol=1e-5)."""
    rng = rng_for("matmul", a_shape, b_shape)
    node = helper.make_node("MatMul", ["a", "b"], ["y"])
    model = onnx_case.model([node], [onnx_case.value("a", np.float32, a_shape),
                                     onnx_case.value("b", np.float32, b_shape)], ["y"], opset=13)
    onnx_case.check(model, {"a": randn(rng, a_shape), "b": randn(rng, b_shape)}, **GEMM)


# ---------------------------------------------------------------------------------------------
# Softmax


@pytest.mark.parametrize("axis", [None, 0, 1, 2, -1, -2])
@pytest.mark.parametrize("opset", [11, 13])
def test_softmax(onnx_case, opset, axis):
    """Opset 13: over one axis (default -1). Opset 11 (legacy): over the input flattened to 2-D
    at `axis` (default 1). REDUCE (rtol=1e-5, atol=1e-6).

    onnx.reference has a single Softmax implementation with the opset-13 meaning, so for opset 11
    the expectation is the spec's own definition, run by onnx.reference in an opset-13 model:
    Flatten(axis) -> Softmax(axis=1) -> Reshape(original shape)."""
    shape = (2, 3, 5)
    rng = rng_for("softmax", opset, axis)
    x = randn(rng, shape) * 3
    attrs = {} if axis is None else dict(axis=axis)
    node = helper.make_node("Softmax", ["x"], ["y"], **attrs)
    model = onnx_case.model([node], [onnx_case.value("x", np.float32, shape)], ["y"], opset=opset)
    got = onnx_case.run(model, {"x": x})
    if opset >= 13:
        want = onnx_case.reference(model, {"x": x})
    else:
        flat_axis = 1 if axis is None else axis
        nodes = [helper.make_node("Flatten", ["x"], ["f"], axis=flat_axis),
                 helper.make_node("Softmax", ["f"], ["s"], axis=1),
                 helper.make_node("Reshape", ["s", "shape"], ["y"])]
        equivalent = onnx_case.model(nodes, [onnx_case.value("x", np.float32, shape)], ["y"],
                                     {"shape": np.array(shape, np.int64)}, opset=13)
        want = onnx_case.reference(equivalent, {"x": x})
    onnx_case.compare(got, want, **REDUCE)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("length", [1, 15, 16, 17, 300])
def test_softmax_contiguous_rows(onnx_case, op, length):
    """Rows along the last axis (the 16-lane path) of awkward lengths, with rows that hold NaN,
    -Inf everywhere, +Inf, and values of +-80 (e^80 overflows float: the maximum must come off
    first). Against x - max and log(sum(e^(x - max))) in float64; rtol 1e-5, atol 1e-6, NaN where
    the float64 formula gives NaN."""
    rng = rng_for("softmax rows", op, length)
    x = randn(rng, (7, length)) * 3
    x[1] *= 27
    x[2, length // 2] = np.nan
    x[3] = -np.inf
    x[4, length - 1] = np.inf
    x[5, 0] = -np.inf
    model = onnx_case.model([helper.make_node(op, ["x"], ["y"], axis=-1)],
                            [onnx_case.value("x", np.float32, x.shape)], ["y"], opset=13)
    got = onnx_case.run(model, {"x": x})[0]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        d = x.astype(np.float64)
        shifted = d - np.max(np.where(np.isnan(d), -np.inf, d), axis=-1, keepdims=True)
        total = np.sum(np.exp(shifted), axis=-1, keepdims=True)
        want = shifted - np.log(total) if op == "LogSoftmax" else np.exp(shifted) / total
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=True)


# ---------------------------------------------------------------------------------------------
# Constant / Shape / Gather / Cast / Split / Slice

CONSTANTS = [
    ("value", lambda: helper.make_tensor("v", TensorProto.FLOAT, [2, 3], np.arange(6, dtype=np.float32) - 2.5)),
    ("value_int64", lambda: helper.make_tensor("v", TensorProto.INT64, [3], [4, -5, 6])),
    ("value_float", lambda: 2.75),
    ("value_floats", lambda: [1.5, -2.0, 3.25]),
    ("value_int", lambda: -7),
    ("value_ints", lambda: [3, 1, -4, 1]),
]


@pytest.mark.parametrize("attr,make", CONSTANTS, ids=[c[0] for c in CONSTANTS])
def test_constant(onnx_case, attr, make):
    """Each value spelling, both as a graph output and added to a run-time input; EXACT."""
    name = "value" if attr.startswith("value_int64") else attr
    value = make()
    const = helper.make_node("Constant", [], ["k"], **{name: value})
    probe = onnx_case.reference(onnx_case.model([const], [], ["k"], opset=13), {})[0]
    x_shape = (2,) + probe.shape
    nodes = [const, helper.make_node("Add", ["x", "k"], ["y"])]
    model = onnx_case.model(nodes, [onnx_case.value("x", probe.dtype, x_shape)], ["k", "y"], opset=13)
    x = (randn(rng_for("constant", attr), x_shape) * 10).astype(probe.dtype)
    onnx_case.check(model, {"x": x}, **EXACT)


@pytest.mark.parametrize("start,end", [(None, None), (1, None), (-2, None), (0, -1), (1, 3), (-10, 10), (3, 1),
                                       (None, -3), (4, None)])
def test_shape(onnx_case, start, end):
    """Shape with start/end (opset 15), clamped; EXACT. Also fed into Cast + Add so the folded
    value is used by a run-time node."""
    shape = (2, 3, 5, 7)
    attrs = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
    nodes = [helper.make_node("Shape", ["x"], ["s"], **attrs),
             helper.make_node("Cast", ["s"], ["sf"], to=TensorProto.FLOAT),
             helper.make_node("Identity", ["s"], ["s2"])]
    model = onnx_case.model(nodes, [onnx_case.value("x", np.float32, shape)], ["s", "sf", "s2"], opset=15)
    onnx_case.check(model, {"x": randn(rng_for("shape"), shape)}, **EXACT)


GATHERS = [
    ((5, 4, 3), [[0, -1], [2, -5]], 0),
    ((5, 4, 3), [3, -4, 0], 1),
    ((5, 4, 3), [2, -1], -1),
    ((5, 4, 3), 2, 0),
    ((5, 4, 3), -1, 1),
    ((7,), [[6, 0, -7]], 0),
    ((5, 4, 3), [[]], 2),
]


@pytest.mark.parametrize("indices_dtype", [np.int64, np.int32], ids=["i64", "i32"])
@pytest.mark.parametrize("data_dtype", [np.float32, np.int64], ids=["f32", "i64"])
@pytest.mark.parametrize("shape,indices,axis", GATHERS, ids=[f"{s}-{i}-ax{a}" for s, i, a in GATHERS])
def test_gather(onnx_case, shape, indices, axis, data_dtype, indices_dtype):
    """Negative indices count from the end; scalar indices drop the axis; EXACT."""
    data = (randn(rng_for("gather", shape), shape) * 100).astype(data_dtype)
    node = helper.make_node("Gather", ["data", "idx"], ["y"], axis=axis)
    idx = np.array(indices, indices_dtype)
    model = onnx_case.model([node], [onnx_case.value("data", data_dtype, shape),
                                     onnx_case.value("idx", indices_dtype, idx.shape)], ["y"], opset=13)
    onnx_case.check(model, {"data": data, "idx": idx}, **EXACT)


def test_gather_index_out_of_range_is_an_error(onnx_case):
    node = helper.make_node("Gather", ["data", "idx"], ["y"], axis=0)
    model = onnx_case.model([node], [onnx_case.value("data", np.float32, (3, 2)),
                                     onnx_case.value("idx", np.int64, (2,))], ["y"], opset=13)
    with pytest.raises(deformrt.DeformRTError, match="out of range"):
        onnx_case.run(model, {"data": np.zeros((3, 2), np.float32), "idx": np.array([0, 3], np.int64)})


CASTS = [
    (np.float32, np.int64), (np.float32, np.int32), (np.float32, np.float64), (np.float32, np.bool_),
    (np.float32, np.uint8), (np.float32, np.float16), (np.int64, np.float32), (np.int32, np.float32),
    (np.float64, np.float32), (np.bool_, np.float32), (np.uint8, np.float32), (np.int64, np.int32),
    (np.int32, np.int64), (np.float16, np.float32), (np.int64, np.bool_), (np.bool_, np.int64),
    (np.int8, np.float32), (np.float32, np.int8),
]


@pytest.mark.parametrize("src,dst", CASTS, ids=[f"{np.dtype(s).name}->{np.dtype(d).name}" for s, d in CASTS])
def test_cast(onnx_case, src, dst):
    """Values representable in the target (fractions truncate toward zero), plus NaN/Inf where
    the target is floating point or bool; EXACT. Float -> integer of NaN, Inf or out-of-range
    values is undefined in ONNX and not compared."""
    rng = rng_for("cast", np.dtype(src).name, np.dtype(dst).name)
    shape = (2, 3, 7)
    if src == np.bool_:
        x = rng.random(shape) > 0.5
    elif np.issubdtype(src, np.integer):
        info = np.iinfo(src)
        lo, hi = max(info.min, -1000), min(info.max, 1000)
        if np.issubdtype(dst, np.integer):
            dinfo = np.iinfo(dst)
            lo, hi = max(lo, dinfo.min), min(hi, dinfo.max)
        x = rng.integers(lo, hi, shape).astype(src)
    else:
        x = (rng.standard_normal(shape) * 60)
        if dst == np.uint8:
            x = np.abs(x)
        if np.issubdtype(dst, np.integer):
            info = np.iinfo(dst)
            x = np.clip(x, info.min, info.max)
        x = x.astype(src).ravel()
        x[0], x[1] = -0.75, 0.75
        if not np.issubdtype(dst, np.integer):
            x[2:6] = [np.nan, np.inf, -np.inf, -0.0]
        x = x.reshape(shape)
    node = helper.make_node("Cast", ["x"], ["y"], to=helper.np_dtype_to_tensor_dtype(np.dtype(dst)))
    model = onnx_case.model([node], [onnx_case.value("x", src, shape)], ["y"], opset=13)
    onnx_case.check(model, {"x": x}, **EXACT)


@pytest.mark.parametrize("src", [np.int64, np.uint64], ids=["int64", "uint64"])
def test_cast_large_integers_to_float_round_once(onnx_case, src):
    """Integers beyond 2**53 round to the nearest float32 directly (rounding through double
    first can land on a tie and go the wrong way, e.g. 2**54 + 2**30 + 1); EXACT."""
    rng = rng_for("cast_large", np.dtype(src).name)
    tricky = [2**54 + 2**30 + 1, 2**62 + 2**38 + 1, 2**53 + 1, 2**63 - 1]
    if src == np.int64:
        tricky += [-(2**54 + 2**30 + 1), -(2**63)]
        x = rng.integers(-(2**63), 2**63 - 1, 40, dtype=np.int64)
    else:
        tricky += [2**64 - 1, 2**63 + 2**39 + 1]
        x = rng.integers(0, 2**64 - 1, 40, dtype=np.uint64)
    x[: len(tricky)] = np.array(tricky, dtype=src)
    x = x.reshape(2, 4, 5)
    for dst in (TensorProto.FLOAT, TensorProto.DOUBLE):
        node = helper.make_node("Cast", ["x"], ["y"], to=dst)
        model = onnx_case.model([node], [onnx_case.value("x", src, x.shape)], ["y"], opset=13)
        onnx_case.check(model, {"x": x}, **EXACT)


def test_cast_nan_to_int_does_not_crash(onnx_case):
    """NaN/Inf -> int is undefined in ONNX: only check a result of the right type and shape."""
    node = helper.make_node("Cast", ["x"], ["y"], to=TensorProto.INT32)
    model = onnx_case.model([node], [onnx_case.value("x", np.float32, (4,))], ["y"], opset=13)
    y = onnx_case.run(model, {"x": np.array([np.nan, np.inf, -np.inf, 1e20], np.float32)})[0]
    assert y.dtype == np.int32 and y.shape == (4,)


SPLITS = [
    # name, opset, shape, axis, split (None | list), as_input, outputs, num_outputs
    ("equal_axis0", 13, (6, 5), 0, None, False, 3, None),
    ("equal_axis_neg", 13, (2, 3, 8), -1, None, False, 4, None),
    ("attr_split", 11, (2, 7, 3), 1, [2, 4, 1], False, 3, None),
    ("attr_split_zero_part", 11, (2, 7, 3), 1, [3, 0, 4], False, 3, None),
    ("input_split", 13, (2, 3, 9), 2, [1, 5, 3], True, 3, None),
    ("input_split_neg_axis", 13, (5, 3, 4), -3, [4, 1], True, 2, None),
    ("num_outputs_even", 18, (2, 9, 3), 1, None, False, 3, 3),
    ("num_outputs_uneven", 18, (2, 7, 3), 1, None, False, 3, 3),
    ("num_outputs_uneven_last_axis", 18, (3, 2, 11), -1, None, False, 4, 4),
]


@pytest.mark.parametrize("name,opset,shape,axis,split,as_input,outputs,num_outputs", SPLITS, ids=[s[0] for s in SPLITS])
def test_split(onnx_case, name, opset, shape, axis, split, as_input, outputs, num_outputs):
    """Equal parts, split attribute (opset 11), split input (13), num_outputs (18, last part
    smaller); EXACT."""
    x = randn(rng_for("split", name), shape)
    out_names = [f"y{i}" for i in range(outputs)]
    attrs = dict(axis=axis)
    inputs = ["x"]
    initializers = {}
    if split is not None and as_input:
        inputs.append("split")
        initializers["split"] = np.array(split, np.int64)
    elif split is not None:
        attrs["split"] = split
    if num_outputs is not None:
        attrs["num_outputs"] = num_outputs
    node = helper.make_node("Split", inputs, out_names, **attrs)
    model = onnx_case.model([node], [onnx_case.value("x", np.float32, shape)], out_names, initializers, opset=opset)
    onnx_case.check(model, {"x": x}, **EXACT)


BIG = np.iinfo(np.int64).max
SLICES = [
    # starts, ends, axes, steps
    ([1], [4], [0], None),
    ([0, 1], [2, -1], None, None),
    ([-3], [BIG], [-1], None),
    ([-BIG], [2], [1], None),
    ([4], [0], [0], [-1]),
    ([-1], [-BIG], [0], [-1]),
    ([BIG], [-BIG], [2], [-2]),
    ([10], [1], [1], [-3]),
    ([0, 5, 0], [5, 0, 8], [0, 1, 2], [2, -2, 3]),
    ([2], [2], [0], None),
    ([-100], [100], [0], [1]),
    ([1, -2], [-1, -BIG], [-1, 0], [1, -1]),
]


@pytest.mark.parametrize("opset_type", ["i64_13", "i32_13"])
@pytest.mark.parametrize("starts,ends,axes,steps", SLICES, ids=[f"case{i}" for i in range(len(SLICES))])
def test_slice(onnx_case, starts, ends, axes, steps, opset_type):
    """Negative steps, negative indices, clamping of out-of-range starts/ends; EXACT."""
    shape = (5, 7, 8)
    dtype = np.int64 if opset_type.startswith("i64") else np.int32
    if dtype == np.int32:
        clip = lambda v: [int(np.clip(i, np.iinfo(np.int32).min, np.iinfo(np.int32).max)) for i in v]  # noqa: E731
        starts, ends = clip(starts), clip(ends)
    x = randn(rng_for("slice", tuple(starts), tuple(ends)), shape)
    inputs = ["x", "starts", "ends"]
    initializers = {"starts": np.array(starts, dtype), "ends": np.array(ends, dtype)}
    if axes is not None or steps is not None:
        inputs.append("axes")
        initializers["axes"] = np.array(axes if axes is not None else list(range(len(starts))), dtype)
    if steps is not None:
        inputs.append("steps")
        initializers["steps"] = np.array(steps, dtype)
    node = helper.make_node("Slice", inputs, ["y"])
    model = onnx_case.model([node], [onnx_case.value("x", np.float32, shape)], ["y"], initializers, opset=13)
    onnx_case.check(model, {"x": x}, **EXACT)


def test_slice_opset1_attributes(onnx_case):
    """Slice-1 with starts/ends/axes attributes; EXACT."""
    x = randn(rng_for("slice1"), (5, 7, 8))
    node = helper.make_node("Slice", ["x"], ["y"], starts=[1, -4], ends=[BIG, -1], axes=[0, 2])
    model = onnx_case.model([node], [onnx_case.value("x", np.float32, (5, 7, 8))], ["y"], opset=9)
    onnx_case.check(model, {"x": x}, **EXACT)


# ---------------------------------------------------------------------------------------------
# Shape subgraph feeding a Conv, dynamic batch, re-planned on one session


def test_shape_subgraph_replans_with_batch(onnx_case):
    """x [N, 192] -> Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [3, 8, 8])) -> Conv.
    One session runs batch 2, then 5, then 2 again; GEMM tolerance against onnx.reference."""
    rng = rng_for("shape_subgraph")
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
        helper.make_node("Concat", ["n1", "chw"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["image"]),
        helper.make_node("Conv", ["image", "w", "b"], ["y"], pads=[1, 1, 1, 1], strides=[2, 2]),
    ]
    initializers = {"zero": np.array(0, np.int64), "axes0": np.array([0], np.int64),
                    "chw": np.array([3, 8, 8], np.int64), "w": randn(rng, (4, 3, 3, 3)), "b": randn(rng, (4,))}
    model = onnx_case.model(nodes, [onnx_case.value("x", np.float32, ["N", 192])],
                            [onnx_case.value("y", np.float32, ["N", 4, 4, 4])], initializers, opset=13)
    with deformrt.InferenceSession(model, threads=2) as session:
        assert session.get_inputs()[0].shape == ["N", 192]
        for batch in (2, 5, 2):
            x = randn(rng, (batch, 192))
            got = session.run(None, {"x": x})
            onnx_case.compare(got, onnx_case.reference(model, {"x": x}), **GEMM)
            assert got[0].shape == (batch, 4, 4, 4)
