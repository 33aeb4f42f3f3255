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
