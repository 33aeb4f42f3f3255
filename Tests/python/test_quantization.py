"""Quantized operators against onnxruntime (bit-exact) and onnx.reference, int8 models made by
onnxruntime.quantization.quantize_static (QDQ and QOperator formats), and hostile quantized nodes.

Exactness: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, MatMulInteger, ConvInteger,
QLinearMatMul and QLinearConv are compared with onnxruntime with no tolerance (both divide by the
scale, round half to even and saturate; integer sums are exact; requantization multiplies the
float32 sum by x_scale * w_scale / y_scale computed in float32, as onnxruntime's MLAS does).
"""
from __future__ import annotations

import importlib.util
import pathlib
import zlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import deformrt

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
NP = {TensorProto.INT8: np.int8, TensorProto.UINT8: np.uint8, TensorProto.INT32: np.int32, TensorProto.FLOAT: np.float32,
      TensorProto.FLOAT16: np.float16, TensorProto.INT16: np.int16, TensorProto.UINT16: np.uint16,
      TensorProto.INT64: np.int64}
ELEM = {np.dtype(v): k for k, v in NP.items()}


def rng_for(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def model_bytes(op, inputs, attrs=None, opset=13, initializers=(), n_outputs=1, domain=""):
    """One node; `inputs` is a list of (name, array or None); arrays named in `initializers` become initializers."""
    names = [n if a is not None else "" for n, a in inputs]
    while names and names[-1] == "":
        names.pop()
    outputs = ["y", "y_scale", "y_zero_point"][:n_outputs]
    node = helper.make_node(op, names, outputs, domain=domain, **(attrs or {}))
    graph_inputs, inits = [], []
    for n, a in inputs:
        if a is None:
            continue
        if n in initializers:
            inits.append(numpy_helper.from_array(np.asarray(a), n))
        else:
            graph_inputs.append(helper.make_tensor_value_info(n, ELEM[np.asarray(a).dtype], np.asarray(a).shape))
    graph = helper.make_graph([node], "q", graph_inputs, [helper.make_empty_tensor_value_info(o) for o in outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9 if opset < 21 else 10
    return model.SerializeToString()


def feeds_of(inputs, initializers=()):
    return {n: np.asarray(a) for n, a in inputs if a is not None and n not in initializers}


def run_both(op, inputs, attrs=None, opset=13, initializers=(), n_outputs=1, threads=2):
    blob = model_bytes(op, inputs, attrs, opset, initializers, n_outputs)
    feeds = feeds_of(inputs, initializers)
    with deformrt.InferenceSession(blob, threads=threads) as session:
        got = session.run(None, feeds)
    want = ort.InferenceSession(blob, providers=["CPUExecutionProvider"]).run(None, feeds)
    return got, want, blob, feeds


def assert_same(got, want):
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        w = np.asarray(w)
        assert g.dtype == w.dtype and g.shape == w.shape, (i, g.dtype, w.dtype, g.shape, w.shape)
        np.testing.assert_array_equal(g, w, err_msg=f"output {i}")


def assert_reference(got, blob, feeds):
    """Also equal to onnx.reference, where it implements the node's opset (its DequantizeLinear
    starts at 19)."""
    try:
        want = ReferenceEvaluator(onnx.load_from_string(blob)).run(None, feeds)
    except RuntimeError as error:
        assert "No implementation" in str(error)
        return
    assert_same(got, want)


def awkward_floats(rng, shape, scale):
    """Values on exact rounding ties (k + 0.5) * scale, beyond the saturation range, and random ones."""
    x = rng.standard_normal(shape).astype(np.float32) * 80 * scale
    flat = x.reshape(-1)
    ties = (rng.integers(-300, 300, flat.size // 3) + 0.5) * scale
    flat[: ties.size] = ties.astype(np.float32)
    rng.shuffle(flat)
    return x


# ---- QuantizeLinear / DequantizeLinear -------------------------------------------------------

@pytest.mark.parametrize("opset", [10, 13, 19, 21])
@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16])
def test_quantize_per_tensor(opset, dtype):
    if np.dtype(dtype).itemsize == 2 and opset < 21:
        pytest.skip("16-bit quantized types arrive in opset 21")
    rng = rng_for("qpt", opset, dtype)
    scale = np.float32(0.037)
    x = awkward_floats(rng, (3, 5, 7, 9), scale)
    zp = np.array({np.int8: -3, np.uint8: 131, np.int16: -300, np.uint16: 40000}[dtype], dtype)
    if np.dtype(dtype).itemsize == 2:
        x = x * 300   # reach the 16-bit saturation too
    inputs = [("x", x), ("s", scale), ("z", zp)]
    for inits in [(), ("s", "z")]:
        got, want, blob, feeds = run_both("QuantizeLinear", inputs, opset=opset, initializers=inits)
        assert_same(got, want)
        assert_reference(got, blob, feeds)


def test_quantize_special_values_and_default_zero_point():
    """NaN goes to the lowest value, +-Inf saturate, a missing zero point means uint8 0 (onnxruntime)."""
    x = np.array([np.nan, np.inf, -np.inf, 0.5, 1.5, 2.5, -0.5, -1.5, 1e30, -1e30, 3.49, 254.5, 255.5] * 3, np.float32)
    for zp in (None, np.array(7, np.uint8), np.array(-7, np.int8)):
        got, want, _, _ = run_both("QuantizeLinear", [("x", x), ("s", np.float32(1.0)), ("z", zp)])
        assert_same(got, want)


@pytest.mark.parametrize("scale", [0.0, np.nan, np.inf, 1e-30])
def test_quantize_degenerate_scale(scale):
    """A scale of 0, NaN, Inf or tiny gives onnxruntime's saturated / lowest values, never a crash."""
    x = np.array([0.0, 1.0, -1.0, np.nan, 2.5, -3.5] * 5, np.float32)
    for dtype in (np.int8, np.uint8):
        got, want, _, _ = run_both("QuantizeLinear", [("x", x), ("s", np.float32(scale)), ("z", np.array(3, dtype))])
        assert_same(got, want)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16])
@pytest.mark.parametrize("opset", [13, 21])
def test_quantize_dequantize_per_axis(axis, dtype, opset):
    if np.dtype(dtype).itemsize == 2 and opset < 21:
        pytest.skip("16-bit quantized types arrive in opset 21")
    rng = rng_for("qpa", axis, dtype, opset)
    shape = (3, 5, 7, 4)
    c = shape[axis]
    scales = (rng.random(c) * 0.1 + 0.01).astype(np.float32)
    info = np.iinfo(dtype)
    zps = rng.integers(info.min // 2, info.max // 2, c).astype(dtype)
    x = rng.standard_normal(shape).astype(np.float32) * 6
    got, want, blob, feeds = run_both("QuantizeLinear", [("x", x), ("s", scales), ("z", zps)], dict(axis=axis), opset, ("s", "z"))
    assert_same(got, want)
    assert_reference(got, blob, feeds)
    q = got[0]
    got, want, blob, feeds = run_both("DequantizeLinear", [("x", q), ("s", scales), ("z", zps)], dict(axis=axis), opset, ("s", "z"))
    assert_same(got, want)
    assert_reference(got, blob, feeds)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32, np.int16, np.uint16])
@pytest.mark.parametrize("opset", [10, 13, 19, 21])
def test_dequantize_per_tensor(dtype, opset):
    if np.dtype(dtype).itemsize == 2 and opset < 21:
        pytest.skip("16-bit quantized types arrive in opset 21")
    rng = rng_for("dq", dtype, opset)
    info = np.iinfo(dtype)
    low, high = (info.min, info.max) if dtype != np.int32 else (-2**30, 2**30)
    x = rng.integers(low, high, (2, 3, 5, 7), endpoint=True).astype(dtype)
    zp = np.array(0 if dtype == np.int32 else rng.integers(low, high), dtype)
    got, want, blob, feeds = run_both("DequantizeLinear", [("x", x), ("s", np.float32(0.0173)), ("z", zp)], opset=opset)
    assert_same(got, want)
    assert_reference(got, blob, feeds)
    got, want, _, _ = run_both("DequantizeLinear", [("x", x), ("s", np.float32(0.5))], opset=opset)
    assert_same(got, want)


def test_quantize_output_dtype_opset_21():
    x = np.linspace(-3, 3, 31, dtype=np.float32)
    blob = model_bytes("QuantizeLinear", [("x", x), ("s", np.float32(0.02))], dict(output_dtype=TensorProto.INT8), opset=21,
                       initializers=("s",))
    with deformrt.InferenceSession(blob) as session:
        (got,) = session.run(None, {"x": x})
    assert got.dtype == np.int8
    assert_same([got], ReferenceEvaluator(onnx.load_from_string(blob)).run(None, {"x": x}))


# ---- DynamicQuantizeLinear ----------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["normal", "positive", "negative", "zeros", "tiny", "one"])
def test_dynamic_quantize(kind):
    rng = rng_for("dyn", kind)
    x = {
        "normal": rng.standard_normal((3, 7, 11)) * 3,
        "positive": rng.random((5, 13)) * 7 + 1,
        "negative": -rng.random((2, 3, 17)) * 5 - 0.25,
        "zeros": np.zeros((4, 9)),
        "tiny": rng.standard_normal(37) * 1e-30,
        "one": np.array([2.5]),
    }[kind].astype(np.float32)
    got, want, blob, feeds = run_both("DynamicQuantizeLinear", [("x", x)], opset=11, n_outputs=3)
    assert_same(got, want)


# ---- MatMulInteger / QLinearMatMul --------------------------------------------------------------

MATMUL_SHAPES = [((5, 7), (7, 3)), ((2, 3, 5, 17), (17, 33)), ((3, 1, 4, 9), (2, 9, 65)), ((9,), (9, 4)), ((4, 9), (9,))]


@pytest.mark.parametrize("shapes", MATMUL_SHAPES)
@pytest.mark.parametrize("types", [(np.uint8, np.uint8), (np.uint8, np.int8), (np.int8, np.int8), (np.int8, np.uint8)])
def test_matmul_integer(shapes, types):
    rng = rng_for("mmi", shapes, types)
    (sa, sb), (ta, tb) = shapes, types
    a = rng.integers(np.iinfo(ta).min, np.iinfo(ta).max, sa, endpoint=True).astype(ta)
    b = rng.integers(np.iinfo(tb).min, np.iinfo(tb).max, sb, endpoint=True).astype(tb)
    n = sb[-1] if len(sb) > 1 else 1
    azp = np.array(rng.integers(np.iinfo(ta).min, np.iinfo(ta).max), ta)
    for bzp in [np.array(rng.integers(np.iinfo(tb).min, np.iinfo(tb).max), tb),
                rng.integers(np.iinfo(tb).min, np.iinfo(tb).max, n).astype(tb) if len(sb) > 1 else None]:
        inputs = [("A", a), ("B", b), ("a_zero_point", azp), ("b_zero_point", bzp)]
        blob = model_bytes("MatMulInteger", inputs, opset=10)
        feeds = feeds_of(inputs)
        with deformrt.InferenceSession(blob, threads=2) as session:
            got = session.run(None, feeds)
        want = ReferenceEvaluator(onnx.load_from_string(blob)).run(None, feeds)
        assert_same(got, want)
        try:
            ort_out = ort.InferenceSession(blob, providers=["CPUExecutionProvider"]).run(None, feeds)
        except Exception as error:   # no kernel for int8 x uint8; no per-column zero point with a batched B
            assert any(t in str(error) for t in ("NOT_IMPLEMENTED", "Could not find an implementation", "B zero point is not valid"))
        else:
            assert_same(got, ort_out)
    # No zero points at all.
    got, want, _, _ = run_both("MatMulInteger", [("A", a), ("B", b)], opset=10) if ta == np.uint8 else (None, None, 0, 0)
    if got is not None:
        assert_same(got, want)


@pytest.mark.parametrize("shapes", MATMUL_SHAPES[:4])
@pytest.mark.parametrize("types", [(np.uint8, np.uint8, np.uint8), (np.uint8, np.int8, np.uint8), (np.int8, np.int8, np.int8)])
@pytest.mark.parametrize("per_column", [False, True])
def test_qlinear_matmul(shapes, types, per_column):
    rng = rng_for("qlmm", shapes, types, per_column)
    (sa, sb), (ta, tb, ty) = shapes, types
    a = rng.integers(np.iinfo(ta).min, np.iinfo(ta).max, sa, endpoint=True).astype(ta)
    b = rng.integers(np.iinfo(tb).min, np.iinfo(tb).max, sb, endpoint=True).astype(tb)
    n = sb[-1]
    b_scale = (rng.random(n if per_column else ()) * 0.02 + 0.001).astype(np.float32)
    b_zp = (rng.integers(-5, 5, n if per_column else ()) + (128 if tb == np.uint8 else 0)).astype(tb)
    inputs = [("a", a), ("a_scale", np.float32(0.0123)), ("a_zero_point", np.array(7 if ta == np.uint8 else -7, ta)),
              ("b", b), ("b_scale", b_scale), ("b_zero_point", b_zp),
              ("y_scale", np.float32(0.731)), ("y_zero_point", np.array(120 if ty == np.uint8 else 3, ty))]
    blob = model_bytes("QLinearMatMul", inputs, opset=10, initializers=("b", "b_scale", "b_zero_point"))
    feeds = feeds_of(inputs, ("b", "b_scale", "b_zero_point"))
    with deformrt.InferenceSession(blob, threads=2) as session:
        got = session.run(None, feeds)
    try:
        want = ort.InferenceSession(blob, providers=["CPUExecutionProvider"]).run(None, feeds)
    except Exception as error:
        # onnxruntime refuses a per-column b_scale with a batched B: check against onnxruntime's
        # formula in NumPy (exact int32 sums, float32 multiplier a_scale * b_scale / y_scale).
        assert "QLinearMatMul" in str(error)
        acc = np.matmul(a.astype(np.int64) - int(inputs[2][1]), b.astype(np.int64) - b_zp.astype(np.int64))
        multiplier = (np.float32(0.0123) * b_scale) / np.float32(0.731)
        y_zero = int(inputs[7][1])
        q = np.rint(acc.astype(np.float32) * multiplier) + y_zero
        want = [np.clip(q, np.iinfo(ty).min, np.iinfo(ty).max).astype(ty)]
    assert_same(got, want)


# ---- ConvInteger / QLinearConv -----------------------------------------------------------------

CONV_CASES = [
    # (x shape, w shape, attrs)
    ((2, 3, 9, 11), (5, 3, 3, 3), dict(pads=[1, 1, 1, 1])),
    ((1, 4, 10, 7), (6, 2, 3, 2), dict(group=2, strides=[2, 1], pads=[0, 1, 2, 0])),
    ((2, 8, 7, 7), (8, 1, 3, 3), dict(group=8, dilations=[2, 2], pads=[2, 2, 2, 2])),
    ((1, 17, 5, 6), (33, 17, 1, 1), dict()),
    ((2, 3, 13), (4, 3, 3), dict(strides=[2], pads=[1, 1])),
    ((1, 2, 8, 9), (3, 2, 3, 3), dict(auto_pad="SAME_UPPER", strides=[2, 2])),
]


def conv_in_float64(x, w, x_zero, w_zero, attrs):
    """The exact integer convolution, as onnx.reference's float64 Conv of the shifted operands
    (every sum is an integer far below 2^53)."""
    shifted_x = x.astype(np.float64) - float(x_zero)
    shifted_w = w.astype(np.float64) - np.asarray(w_zero, np.float64).reshape(-1, *([1] * (w.ndim - 1)))
    node = helper.make_node("Conv", ["x", "w"], ["y"], **attrs)
    graph = helper.make_graph([node], "c", [helper.make_tensor_value_info(n, TensorProto.DOUBLE, None) for n in "xw"],
                              [helper.make_empty_tensor_value_info("y")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    (y,) = ReferenceEvaluator(model).run(None, {"x": shifted_x, "w": shifted_w})
    return y.astype(np.int32)


@pytest.mark.parametrize("case", range(len(CONV_CASES)))
@pytest.mark.parametrize("types", [(np.uint8, np.uint8), (np.uint8, np.int8), (np.int8, np.int8)])
def test_conv_integer(case, types):
    """Per-tensor zero points against onnxruntime (where it has a kernel) and onnx.reference;
    per-channel w zero points (onnxruntime refuses them, onnx.reference mis-broadcasts them)
    against the exact float64 convolution of the shifted operands."""
    xs, wsh, attrs = CONV_CASES[case]
    tx, tw = types
    rng = rng_for("ci", case, types)
    x = rng.integers(np.iinfo(tx).min, np.iinfo(tx).max, xs, endpoint=True).astype(tx)
    w = rng.integers(np.iinfo(tw).min, np.iinfo(tw).max, wsh, endpoint=True).astype(tw)
    x_zero = np.array(rng.integers(0, 100), tx)
    for w_zero in (np.array(rng.integers(0, 20), tw), rng.integers(0, 20, wsh[0]).astype(tw)):
        inputs = [("x", x), ("w", w), ("x_zero_point", x_zero), ("w_zero_point", w_zero)]
        blob = model_bytes("ConvInteger", inputs, attrs, opset=10, initializers=("w", "w_zero_point"))
        feeds = feeds_of(inputs, ("w", "w_zero_point"))
        with deformrt.InferenceSession(blob, threads=2) as session:
            got = session.run(None, feeds)
        assert_same(got, [conv_in_float64(x, w, x_zero, w_zero, attrs)])
        if w_zero.ndim:
            continue
        assert_reference(got, blob, feeds)
        try:
            want = ort.InferenceSession(blob, providers=["CPUExecutionProvider"]).run(None, feeds)
        except Exception as error:   # onnxruntime's ConvInteger takes uint8 x only
            assert "NOT_IMPLEMENTED" in str(error) or "implementation" in str(error)
        else:
            assert_same(got, want)


@pytest.mark.parametrize("case", range(len(CONV_CASES)))
@pytest.mark.parametrize("types", [(np.uint8, np.int8, np.uint8), (np.uint8, np.uint8, np.uint8), (np.int8, np.int8, np.int8)])
@pytest.mark.parametrize("per_channel", [False, True])
def test_qlinear_conv(case, types, per_channel):
    xs, wsh, attrs = CONV_CASES[case]
    tx, tw, ty = types
    rng = rng_for("qlc", case, types, per_channel)
    m = wsh[0]
    x = rng.integers(np.iinfo(tx).min, np.iinfo(tx).max, xs, endpoint=True).astype(tx)
    w = rng.integers(np.iinfo(tw).min, np.iinfo(tw).max, wsh, endpoint=True).astype(tw)
    w_scale = (rng.random(m if per_channel else ()) * 0.01 + 0.002).astype(np.float32)
    w_zp = np.zeros(m if per_channel else (), tw) + (128 if tw == np.uint8 else 0)
    w_zp = w_zp.astype(tw)
    bias = rng.integers(-5000, 5000, m).astype(np.int32)
    inputs = [("x", x), ("x_scale", np.float32(0.031)), ("x_zero_point", np.array(11 if tx == np.uint8 else -11, tx)),
              ("w", w), ("w_scale", w_scale), ("w_zero_point", w_zp),
              ("y_scale", np.float32(0.47)), ("y_zero_point", np.array(127 if ty == np.uint8 else 1, ty)), ("B", bias)]
    inits = ("w", "w_scale", "w_zero_point", "B")
    blob = model_bytes("QLinearConv", inputs, attrs, opset=10, initializers=inits)
    feeds = feeds_of(inputs, inits)
    for threads in (1, 2):
        with deformrt.InferenceSession(blob, threads=threads) as session:
            got = session.run(None, feeds)
        try:
            want = ort.InferenceSession(blob, providers=["CPUExecutionProvider"]).run(None, feeds)
        except Exception as error:
            pytest.skip(f"onnxruntime refuses this case: {str(error)[:120]}")
        assert_same(got, want)
    # Without the bias as well.
    blob = model_bytes("QLinearConv", inputs[:-1], attrs, opset=10, initializers=inits)
    with deformrt.InferenceSession(blob) as session:
        got = session.run(None, feeds)
    assert_same(got, ort.InferenceSession(blob, providers=["CPUExecutionProvider"]).run(None, feeds))


# ---- models from onnxruntime.quantization.quantize_static ------------------------------------

def _generator():
    spec = importlib.util.spec_from_file_location("make_quantized_models", REPO_ROOT / "tools" / "make_quantized_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("quant_format", ["QOperator", "QDQ"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_quantize_static_models(quant_format, per_channel):
    """The int8 model onnxruntime.quantization writes, DeformRT against onnxruntime running it.

    QOperator: every op is integer arithmetic with defined rounding, so the logits are bit-exact.
    QDQ: DeformRT runs DequantizeLinear -> float op -> QuantizeLinear as the graph says;
    onnxruntime with optimisations off does the same (its float sums may round differently and a
    value on a rounding boundary can flip by one step), and onnxruntime with optimisations on
    fuses the pattern into integer kernels. Tolerance: within 2 quantization steps of the final
    MatMul's input scale times the weight norm, stated as 2% of the logits' range, and the
    predicted classes must agree."""
    gen = _generator()
    model = gen.quantize(gen.float_model(), quant_format, per_channel).SerializeToString()
    rng = np.random.default_rng(5)
    image = rng.standard_normal((3, *gen.INPUT_SHAPE[1:])).astype(np.float32)
    with deformrt.InferenceSession(model, threads=2) as session:
        (got,) = session.run(None, {"image": image})
    for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        (want,) = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"]).run(None, {"image": image})
        err = np.abs(got - want).max()
        print(f"{quant_format} per_channel={per_channel} ort level {int(level)}: max |err| {err:.3g}, logits range {np.ptp(want):.3g}")
        if quant_format == "QOperator":
            np.testing.assert_array_equal(got, want)
        else:
            assert err <= 0.02 * np.ptp(want)
            assert np.array_equal(got.argmax(1), want.argmax(1))


@pytest.mark.parametrize("weight_type", ["QInt8", "QUInt8"])
def test_quantize_dynamic_model(weight_type):
    """quantize_dynamic's DynamicQuantizeLinear + MatMulInteger + Cast + Mul graph: identical to
    onnxruntime running the same nodes (optimisations off); onnxruntime's default level fuses
    them into com.microsoft MatMulIntegerToFloat, which multiplies the scales in another order:
    within 1e-5 relative there."""
    gen = _generator()
    model = gen.quantize_dynamic(gen.mlp_model(), weight_type).SerializeToString()
    x = np.random.default_rng(9).standard_normal((5, 33)).astype(np.float32)
    with deformrt.InferenceSession(model, threads=2) as session:
        (got,) = session.run(None, {"x": x})
    for level, rtol in ((ort.GraphOptimizationLevel.ORT_DISABLE_ALL, 0), (ort.GraphOptimizationLevel.ORT_ENABLE_ALL, 1e-5)):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        (want,) = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"]).run(None, {"x": x})
        print(f"quantize_dynamic {weight_type} ort level {int(level)}: max |err| {np.abs(got - want).max():.3g}")
        np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-6 * np.abs(want).max() if rtol else 0)


# ---- hostile quantized nodes ------------------------------------------------------------------

def refused(op, inputs, attrs=None, opset=13, match=None, initializers=()):
    blob = model_bytes(op, inputs, attrs, opset, initializers)
    with pytest.raises(deformrt.DeformRTError, match=match) as info:
        with deformrt.InferenceSession(blob) as session:
            session.run(None, feeds_of(inputs, initializers))
    assert op in str(info.value)


def test_zero_point_of_wrong_type():
    x = np.zeros((2, 3), np.float32)
    refused("QuantizeLinear", [("x", x), ("s", np.float32(1)), ("z", np.array(0, np.int32))], match="int32; only int8, uint8, int16, uint16 are")
    refused("DequantizeLinear", [("x", np.zeros(3, np.int8)), ("s", np.float32(1)), ("z", np.array(0, np.uint8))],
            match="x_zero_point is uint8 but x is int8")
    a = np.zeros((2, 3), np.uint8)
    refused("MatMulInteger", [("A", a), ("B", np.zeros((3, 2), np.uint8)), ("a_zero_point", np.array(0, np.int8))], opset=10,
            match="a_zero_point is int8 but A is uint8")
    refused("QLinearConv", [("x", np.zeros((1, 1, 3, 3), np.uint8)), ("xs", np.float32(1)), ("xz", np.array(0, np.int8)),
                            ("w", np.zeros((1, 1, 1, 1), np.int8)), ("ws", np.float32(1)), ("wz", np.array(0, np.int8)),
                            ("ys", np.float32(1)), ("yz", np.array(0, np.uint8))], opset=10,
            match="x_zero_point is int8 but x is uint8")


def test_zero_point_or_scale_of_wrong_shape():
    x = np.zeros((2, 3, 4), np.float32)
    refused("QuantizeLinear", [("x", x), ("s", np.ones(3, np.float32)), ("z", np.zeros(4, np.uint8))], dict(axis=1),
            match=r"y_zero_point shape \[4\] must be a scalar or \[3\]")
    refused("QuantizeLinear", [("x", x), ("s", np.ones(5, np.float32))], dict(axis=1), match=r"y_scale shape \[5\] must be a scalar or \[3\]")
    refused("QuantizeLinear", [("x", x), ("s", np.ones(3, np.float32))], opset=10, match="per-axis quantization needs opset 13")
    refused("QuantizeLinear", [("x", x), ("s", np.ones(3, np.float32))], dict(axis=3), match="axis 3 is out of range")
    refused("QuantizeLinear", [("x", x), ("s", np.ones((3, 1), np.float32))], dict(axis=1), match=r"must be a scalar or \[3\]")
    refused("QLinearConv", [("x", np.zeros((1, 2, 3, 3), np.uint8)), ("xs", np.float32(1)), ("xz", np.array(0, np.uint8)),
                            ("w", np.zeros((4, 2, 1, 1), np.int8)), ("ws", np.ones(3, np.float32)), ("wz", np.zeros(3, np.int8)),
                            ("ys", np.float32(1)), ("yz", np.array(0, np.uint8))], opset=10, match=r"w_scale shape \[3\] must be a scalar or \[4\]")
    refused("QLinearConv", [("x", np.zeros((1, 2, 3, 3), np.uint8)), ("xs", np.float32(1)), ("xz", np.array(0, np.uint8)),
                            ("w", np.zeros((4, 2, 1, 1), np.int8)), ("ws", np.float32(1)), ("wz", np.array(0, np.int8)),
                            ("ys", np.float32(1)), ("yz", np.array(0, np.uint8)), ("B", np.zeros(4, np.float32))], opset=10,
            match="QLinearConv's bias must be int32")


def test_refused_attributes_and_types():
    x = np.zeros((4, 6), np.float32)
    refused("QuantizeLinear", [("x", x), ("s", np.ones((4, 3), np.float32))], dict(axis=1, block_size=2), opset=21,
            match="block_size 2 .* not supported")
    refused("QuantizeLinear", [("x", x), ("s", np.float32(1))], dict(output_dtype=TensorProto.FLOAT8E4M3FN), opset=21,
            match="output_dtype 17 is not supported")
    refused("QuantizeLinear", [("x", x), ("s", np.float32(1)), ("z", np.array(0, np.int8))], dict(output_dtype=TensorProto.UINT8),
            opset=21, match="output_dtype uint8 disagrees")
    refused("QuantizeLinear", [("x", x), ("s", np.float16(1))], match="only float scales")
    refused("DequantizeLinear", [("x", np.zeros(3, np.int64)), ("s", np.float32(1))], opset=21,
            match="int64; only int8, uint8, int16, uint16, int32 are supported")
    refused("QLinearMatMul", [("a", np.zeros((2, 2), np.int16)), ("as", np.float32(1)), ("az", np.array(0, np.int16)),
                              ("b", np.zeros((2, 2), np.int8)), ("bs", np.float32(1)), ("bz", np.array(0, np.int8)),
                              ("ys", np.float32(1)), ("yz", np.array(0, np.int8))], opset=21,
            match="int16; only int8, uint8 are supported")


def test_conv_integer_bad_geometry():
    refused("ConvInteger", [("x", np.zeros((1, 3, 4, 4), np.uint8)), ("w", np.zeros((2, 2, 3, 3), np.uint8))], opset=10,
            match="group 1 does not fit")
    refused("ConvInteger", [("x", np.zeros((1, 2, 2, 2), np.uint8)), ("w", np.zeros((2, 2, 3, 3), np.uint8))], opset=10,
            match="the kernel does not fit")
    refused("MatMulInteger", [("A", np.zeros((2, 3), np.uint8)), ("B", np.zeros((4, 2), np.uint8))], opset=10,
            match="inner dimensions differ")


def test_mutated_fuzz_seeds_never_crash():
    """Structured mutations of the recurrent and quantized fuzz seeds (tools/make_fuzz_corpus.py):
    attributes set to hostile values (negative, huge, NaN, unknown names), initializer values set
    to NaN / Inf / extreme integers (sequence_lens beyond the sequence, odd zero points),
    initializer dims off by one, inputs dropped or added. Each load + run either works or raises
    DeformRTError; a crash would take pytest down with it."""
    import random
    rng = random.Random(20261207)
    outcomes = {"ran": 0, "refused": 0}
    seeds = [onnx.load(REPO_ROOT / "fuzz" / "corpus" / f"{n}.onnx") for n in ("lstm_bidirectional", "gru_rnn_layout1", "quantized_ops")]
    for _ in range(240):
        m = onnx.ModelProto()
        m.CopyFrom(rng.choice(seeds))
        node = rng.choice(m.graph.node)
        kind = rng.randrange(5)
        if kind == 0 and node.attribute:
            a = rng.choice(node.attribute)
            if a.type == onnx.AttributeProto.INT:
                a.i = rng.choice([-1, 0, 2, 3, 2**31, -2**40])
            elif a.type == onnx.AttributeProto.FLOAT:
                a.f = rng.choice([0.0, -1.0, float("nan"), float("inf")])
            elif a.type == onnx.AttributeProto.STRING:
                a.s = rng.choice([b"", b"reverse", b"bidirectional", b"sideways"])
            elif a.type == onnx.AttributeProto.STRINGS and a.strings:
                a.strings[rng.randrange(len(a.strings))] = rng.choice([b"Relu", b"Foo", b"affine"])
            elif a.type == onnx.AttributeProto.FLOATS:
                del a.floats[:]
        elif kind in (1, 2) and m.graph.initializer:
            t = rng.choice(m.graph.initializer)
            arr = numpy_helper.to_array(t).copy()
            if kind == 1 and arr.size:
                if arr.dtype.kind == "f":
                    arr.flat[rng.randrange(arr.size)] = rng.choice([np.nan, np.inf, 0.0, -1e30])
                else:
                    info = np.iinfo(arr.dtype)
                    arr.flat[rng.randrange(arr.size)] = rng.choice([info.min, info.max, 0, 1])
            elif arr.ndim:
                shape = list(arr.shape)
                axis = rng.randrange(len(shape))
                shape[axis] = max(0, shape[axis] + rng.choice([-1, 1]))
                arr = np.resize(arr, shape) if np.prod(shape) else np.zeros(shape, arr.dtype)
            t.CopyFrom(numpy_helper.from_array(arr, t.name))
        elif kind == 3 and len(node.input) > 1:
            node.input[rng.randrange(1, len(node.input))] = ""
        elif kind == 4:
            node.input.append(rng.choice(["x", ""]))
        try:
            with deformrt.InferenceSession(m.SerializeToString(), threads=2) as session:
                feeds = {}
                for i in session.get_inputs():
                    shape = [d if isinstance(d, int) else 2 for d in i.shape]
                    feeds[i.name] = (np.full(shape, rng.choice([0, 2, 5, -1]), np.int32) if "int32" in str(i.type)
                                     else np.random.default_rng(0).random(shape).astype(np.float32))
                session.run(None, feeds)
            outcomes["ran"] += 1
        except deformrt.DeformRTError:
            outcomes["refused"] += 1
    print(outcomes)
    assert outcomes["ran"] > 20 and outcomes["refused"] > 20


# ---- onnx's own node conformance cases for the recurrent and quantized operators ---------------

CONFORMANCE_OPS = {"RNN", "GRU", "LSTM", "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
                   "MatMulInteger", "QLinearMatMul", "ConvInteger", "QLinearConv"}
# Refused on purpose, each with the reason (the *_expanded cases are function bodies of other ops).
CONFORMANCE_REFUSED = {
    r"blocked": "block_size (blocked quantization)",
    r"e4m3fn|e5m2|float4e2m1|u?int4$|u?int2$": "float8 / float4 / int4 / int2 data",
    r"float16$": "float16 scales",
}


def conformance_cases():
    import importlib
    import re
    import warnings
    import onnx.backend.test.case.node as node_cases
    # Importing a case module runs its exports into node_cases._NodeTestCases (only these ten:
    # collecting all 1884 cases takes 14 s).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module in ("rnn", "gru", "lstm", "quantizelinear", "dequantizelinear", "dynamicquantizelinear",
                       "matmulinteger", "qlinearmatmul", "convinteger", "qlinearconv"):
            importlib.import_module(f"onnx.backend.test.case.node.{module}")
    chosen, seen = [], set()
    for case in node_cases._NodeTestCases:
        nodes = case.model.graph.node
        if len(nodes) == 1 and nodes[0].op_type in CONFORMANCE_OPS and case.name not in seen:
            seen.add(case.name)
            refusal = next((why for pattern, why in CONFORMANCE_REFUSED.items() if re.search(pattern, case.name)), None)
            chosen.append(pytest.param(case, refusal, id=case.name))
    return chosen


@pytest.mark.parametrize("case,refusal", conformance_cases())
def test_onnx_backend_node_case(case, refusal):
    """onnx's conformance cases for RNN, GRU, LSTM and the quantized operators, expected outputs
    from onnx's generators; floats within the suite's tolerance, integers exact. Refused cases
    must be refused as UNSUPPORTED (see CONFORMANCE_REFUSED)."""
    for inputs, outputs in case.data_sets:
        names = [i.name for i in case.model.graph.input]
        feeds = dict(zip(names, inputs))
        data = case.model.SerializeToString()
        if refusal:
            with pytest.raises(deformrt.DeformRTError, match="UNSUPPORTED"):
                with deformrt.InferenceSession(data) as session:
                    session.run(None, feeds)
            continue
        with deformrt.InferenceSession(data) as session:
            got = session.run(None, feeds)
        assert len(got) == len(outputs)
        for g, w in zip(got, outputs):
            w = np.asarray(w)
            assert g.dtype == w.dtype and g.shape == w.shape
            if g.dtype.kind == "f":
                np.testing.assert_allclose(g, w, rtol=case.rtol, atol=case.atol)
            else:
                np.testing.assert_array_equal(g, w)
