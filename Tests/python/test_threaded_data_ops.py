"""Elementwise ops with broadcasting and the strided copies (Transpose, Slice, Expand) split their
work over the session's threads once there is enough of it (over 64K elements here): on 1, 2 and
3 threads they must give numpy's result exactly (each output element is one IEEE operation or a
copy, so any difference is a wrong offset at a split point). Shapes are odd so that the splits
fall inside rows and broadcast dims."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import deformrt


def model(node, inputs, output_shape, initializers=()):
    graph = helper.make_graph([node], "threads", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)],
                              initializer=list(initializers))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(m)
    return m.SerializeToString()


def value(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("op,fn", [("Add", np.add), ("Sub", np.subtract), ("Mul", np.multiply), ("Div", np.divide)])
@pytest.mark.parametrize("b_shape", [(3, 37, 41, 29), (1, 37, 1, 1), (3, 1, 41, 29), (29,)])
def test_binary_broadcast(threads, op, fn, b_shape):
    rng = np.random.default_rng(len(b_shape) * 7 + threads)
    a = rng.standard_normal((3, 37, 41, 29)).astype(np.float32)
    b = (rng.random(b_shape).astype(np.float32) + 0.5)
    data = model(helper.make_node(op, ["a", "b"], ["y"]), [value("a", a.shape), value("b", b.shape)], a.shape)
    (got,) = deformrt.InferenceSession(data, threads=threads).run(None, {"a": a, "b": b})
    np.testing.assert_array_equal(got, fn(a, b))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_transpose_slice_expand(threads):
    rng = np.random.default_rng(threads)
    x = rng.standard_normal((5, 33, 47, 19)).astype(np.float32)
    session = deformrt.InferenceSession(
        model(helper.make_node("Transpose", ["x"], ["y"], perm=[0, 3, 1, 2]), [value("x", x.shape)], [5, 19, 33, 47]),
        threads=threads)
    np.testing.assert_array_equal(session.run(None, {"x": x})[0], x.transpose(0, 3, 1, 2))

    params = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
              [("starts", [1, 2, 30]), ("ends", [5, 31, 2]), ("axes", [0, 1, 2]), ("steps", [1, 2, -3])]]
    sliced = x[1:5, 2:31:2, 30:2:-3]
    session = deformrt.InferenceSession(
        model(helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"]), [value("x", x.shape)],
              list(sliced.shape), params), threads=threads)
    np.testing.assert_array_equal(session.run(None, {"x": x})[0], sliced)

    small = rng.standard_normal((1, 33, 1, 19)).astype(np.float32)
    shape = numpy_helper.from_array(np.array([6, 33, 47, 19], np.int64), "shape")
    session = deformrt.InferenceSession(
        model(helper.make_node("Expand", ["x", "shape"], ["y"]), [value("x", small.shape)], [6, 33, 47, 19], [shape]),
        threads=threads)
    np.testing.assert_array_equal(session.run(None, {"x": small})[0], np.broadcast_to(small, (6, 33, 47, 19)))


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("axis", [1, 3, -1])
def test_concat(threads, axis):
    rng = np.random.default_rng([threads, axis % 4])
    shapes = [[3, 37, 41, 29], [3, 37, 41, 29]]
    shapes[1][axis] = 5
    parts = [rng.standard_normal(shape).astype(np.float32) for shape in shapes]
    want = np.concatenate(parts, axis=axis)
    node = helper.make_node("Concat", ["p0", "p1"], ["y"], axis=axis)
    data = model(node, [value("p0", shapes[0]), value("p1", shapes[1])], list(want.shape))
    (got,) = deformrt.InferenceSession(data, threads=threads).run(None, {"p0": parts[0], "p1": parts[1]})
    np.testing.assert_array_equal(got, want)


TRANSPOSE_CASES = [
    # shape, perm: batched plane transposes (tiled path) and near misses (strided path)
    ((1, 37, 41, 80), (0, 3, 1, 2)),      # channels-last -> NCHW, the layout pass's edge
    ((2, 80, 19, 23), (0, 2, 3, 1)),      # NCHW -> channels-last, batch 2
    ((3, 17, 33), (0, 2, 1)),             # batch of 17 x 33 matrices (no multiple of 16)
    ((70, 1, 45), (2, 1, 0)),             # a size-1 axis in the middle
    ((5, 16, 16), (2, 1, 0)),             # three axes reversed: not a plane transpose
    ((4, 6, 15, 40), (0, 3, 1, 2)),       # rows under 16: the strided path
    ((2, 3, 18, 20, 17), (0, 1, 4, 2, 3)),  # two batch axes
]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("shape,perm", TRANSPOSE_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_transpose_moves_bits_unchanged(threads, shape, perm, dtype):
    """Transpose of float (with -0.0, NaN payloads, denormals) and int32 (INT32_MIN is -0.0's
    bit pattern) data gives numpy's transpose bit for bit, in the tiled and strided paths."""
    rng = np.random.default_rng(sum(shape) + threads)
    bits = rng.integers(-2**31, 2**31, size=int(np.prod(shape)), dtype=np.int64).astype(np.int32)
    bits[:8] = [-2**31, 0, 1, 0x7FC00001, -1, 0x7F800001, 0x00000001, -0x7F800001]
    bits[rng.permutation(bits.size)[:bits.size // 20]] = -2**31  # -0.0 everywhere, edges included
    x = bits.view(np.float32).reshape(shape) if dtype == np.float32 else bits.reshape(shape)
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.INT32
    out_shape = [shape[p] for p in perm]
    graph = helper.make_graph([helper.make_node("Transpose", ["x"], ["y"], perm=list(perm))], "t",
                              [helper.make_tensor_value_info("x", elem, shape)],
                              [helper.make_tensor_value_info("y", elem, out_shape)])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    (got,) = deformrt.InferenceSession(data, threads=threads).run(None, {"x": x})
    np.testing.assert_array_equal(got.view(np.int32), np.ascontiguousarray(x.transpose(perm)).view(np.int32))


def _cast_oracle(x, to):
    """Cast's documented semantics: float -> int truncates toward zero and saturates, NaN -> 0;
    float -> bool is x != 0 (NaN -> true); the rest as numpy."""
    if np.issubdtype(x.dtype, np.floating) and np.issubdtype(to, np.integer):
        wide = np.nan_to_num(np.trunc(x.astype(np.float64)), nan=0.0)
        as64 = np.where(wide >= 2.0**63, np.iinfo(np.int64).max,
                        np.where(wide <= -2.0**63, np.iinfo(np.int64).min,
                                 np.clip(wide, -2.0**63, 2.0**63 - 1024).astype(np.int64)))
        return as64.astype(to)  # int32: the low 32 bits of the saturated int64, as ONNX leaves it open
    if to == np.bool_:
        return x != 0
    return x.astype(to)


CAST_PAIRS = [(np.bool_, np.float32), (np.uint8, np.float32), (np.int32, np.float32), (np.int64, np.float32),
              (np.float32, np.int64), (np.float32, np.int32), (np.float32, np.bool_), (np.int64, np.int32),
              (np.int32, np.int64), (np.float32, np.float64), (np.float64, np.float32), (np.float32, np.float16),
              (np.float16, np.float32), (np.float32, np.float32)]


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("source,target", CAST_PAIRS, ids=lambda t: np.dtype(t).name)
def test_cast_fast_paths(threads, source, target):
    """The typed, threaded Cast loops (100,003 elements: split over threads mid-block) against
    Cast's semantics, with the values that differ between conversions: NaN, +-inf, -0.0, halves,
    values past the integer ranges and float16's."""
    rng = np.random.default_rng(hash((np.dtype(source).name, np.dtype(target).name, threads)) % 2**32)
    n = 100_003
    if np.issubdtype(source, np.floating):
        with np.errstate(over="ignore"):  # float16 overflows to inf on purpose
            x = (rng.standard_normal(n) * rng.choice([1, 1e3, 1e6, 3e9, 1e19, 7e4], n)).astype(source)
            x[:10] = np.array([np.nan, np.inf, -np.inf, -0.0, 0.5, -0.5, 2.5, 65520, -1e30, 1e-45]).astype(source)
    elif source == np.bool_:
        x = rng.random(n) < 0.5
    else:
        info = np.iinfo(source)
        x = rng.integers(info.min, info.max, n, dtype=source, endpoint=True)
    elem = {np.bool_: TensorProto.BOOL, np.uint8: TensorProto.UINT8, np.int32: TensorProto.INT32,
            np.int64: TensorProto.INT64, np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE,
            np.float16: TensorProto.FLOAT16}
    graph = helper.make_graph([helper.make_node("Cast", ["x"], ["y"], to=elem[target])], "cast",
                              [helper.make_tensor_value_info("x", elem[source], [n])],
                              [helper.make_tensor_value_info("y", elem[target], [n])])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]).SerializeToString()
    with np.errstate(all="ignore"):
        want = _cast_oracle(x, target)
    (got,) = deformrt.InferenceSession(data, threads=threads).run(None, {"x": x})
    assert got.dtype == np.dtype(target)
    np.testing.assert_array_equal(got, want)
