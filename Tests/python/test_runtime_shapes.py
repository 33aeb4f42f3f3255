"""Shapes known only at run time (ExecutionPlan's barriers and continuations).

Reshape / Expand / Tile / Slice / Range / Resize / Pad / ConstantOfShape / Squeeze / Unsqueeze /
Split / ReduceSum / TopK whose shape-like input is computed from data (a graph input, or
arithmetic on data) cannot be planned up front: the plan stops before such a node, and the rest
of the graph is planned once the values are known, cached by them. NonZero-like operators
(output shapes decided by their data) split the plan the same way.

Each test feeds one session several different shape values in turn (and back again, so that the
cached plans are reused) and compares every run with onnx.reference and onnxruntime. All
tolerances are exact (rtol=0, atol=0): these operators move data, except linear Resize
(rtol=1e-5, atol=1e-6 against the reference's float64 arithmetic, as in test_more_ops.py).
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


def rng_for(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def ort_run(model: bytes, feeds) -> list:
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, dict(feeds))


def model_of(onnx_case, nodes, inputs, outputs, initializers=None, opset=18):
    declared = [onnx_case.value(k, *v) for k, v in inputs.items()]
    return onnx_case.model(nodes, declared, list(outputs), initializers or {}, opset=opset, check=False)


def run_all(onnx_case, model: bytes, feed_list, tolerance=EXACT, use_ort=True, threads=2, use_reference=True):
    """One session runs every feed (in order); each result is compared with onnx.reference (when
    `use_reference`) and onnxruntime (when `use_ort`)."""
    with deformrt.InferenceSession(model, threads=threads) as session:
        for feeds in feed_list:
            got = session.run(None, dict(feeds))
            if use_reference:
                onnx_case.compare(got, onnx_case.reference(model, feeds), **tolerance)
            if use_ort:
                onnx_case.compare(got, ort_run(model, feeds), **tolerance)


def test_reshape_shape_from_a_graph_input(onnx_case):
    """Reshape's shape is data: -1, 0 (copy) and plain dims; shapes repeat, so cached plans are
    reused; the Reshape's output feeds more nodes (Relu, Add with another input)."""
    rng = rng_for("reshape")
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]),
             helper.make_node("Relu", ["r"], ["y"]),
             helper.make_node("Add", ["y", "y"], ["z"])]
    model = model_of(onnx_case, nodes, {"x": (np.float32, [2, 3, 5]), "shape": (np.int64, [None])}, ["y", "z"])
    x = rng.standard_normal((2, 3, 5)).astype(np.float32)
    shapes = [[5, 6], [3, -1], [0, 15], [30], [5, 6], [2, 3, 5], [3, -1], [30]]
    run_all(onnx_case, model, [{"x": x, "shape": np.array(s, np.int64)} for s in shapes])


def test_reshape_shape_computed_from_data(onnx_case):
    """The target shape is arithmetic on data (a rounded ReduceMax cast to int64 and
    concatenated): not foldable when the plan is made. A graph output computed before the barrier
    (m) and a graph input that is also read after it (x) both come out right."""
    nodes = [helper.make_node("ReduceMax", ["n"], ["m"], keepdims=1),
             helper.make_node("Cast", ["m"], ["mi"], to=TensorProto.INT64),
             helper.make_node("Concat", ["mi", "minus1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["y"]),
             helper.make_node("Mul", ["y", "y"], ["z"])]
    model = model_of(onnx_case, nodes, {"x": (np.float32, [4, 6]), "n": (np.float32, [3])}, ["y", "z", "m"],
                     {"minus1": np.array([-1], np.int64)})
    x = rng_for("reshape-data").standard_normal((4, 6)).astype(np.float32)
    feeds = [{"x": x, "n": np.array(v, np.float32)} for v in ([1, 2, 3], [0, 8, 2], [2, 1, 1], [1, 3, 2], [0, 0, 6])]
    run_all(onnx_case, model, feeds)


def test_expand_tile_constant_of_shape_from_data(onnx_case):
    rng = rng_for("expand")
    nodes = [helper.make_node("Expand", ["x", "shape"], ["e"]),
             helper.make_node("Tile", ["x", "repeats"], ["t"]),
             helper.make_node("ConstantOfShape", ["shape"], ["c"],
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [2.5]))]
    model = model_of(onnx_case, nodes, {"x": (np.float32, [3, 1]), "shape": (np.int64, [2]),
                                        "repeats": (np.int64, [2])}, ["e", "t", "c"])
    x = rng.standard_normal((3, 1)).astype(np.float32)
    cases = [([3, 4], [1, 2]), ([1, 5], [3, 1]), ([3, 1], [2, 3]), ([3, 4], [1, 2]), ([3, 0], [0, 2])]
    run_all(onnx_case, model, [{"x": x, "shape": np.array(s, np.int64), "repeats": np.array(r, np.int64)}
                               for s, r in cases])


def test_slice_bounds_from_data(onnx_case):
    """starts, ends, axes and steps all fed: negative steps, clamped ends, empty results."""
    rng = rng_for("slice")
    node = helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"])
    model = model_of(onnx_case, [node], {"x": (np.float32, [3, 7, 5]), "starts": (np.int64, [2]),
                                         "ends": (np.int64, [2]), "axes": (np.int64, [2]),
                                         "steps": (np.int64, [2])}, ["y"])
    x = rng.standard_normal((3, 7, 5)).astype(np.float32)
    cases = [([0, 1], [3, 6], [0, 1], [1, 2]), ([-1, 4], [-100, 0], [1, 2], [-2, -1]),
             ([1, 0], [2, 100], [2, 0], [1, 1]), ([5, 5], [1, 1], [1, 2], [1, 1]),
             ([0, 1], [3, 6], [0, 1], [1, 2])]
    run_all(onnx_case, model, [{"x": x, **{k: np.array(v, np.int64) for k, v in zip(["starts", "ends", "axes", "steps"], c)}}
                               for c in cases])


@pytest.mark.parametrize("dtype", [np.int64, np.float32])
def test_range_from_data(onnx_case, dtype):
    node = helper.make_node("Range", ["start", "limit", "delta"], ["y"])
    model = model_of(onnx_case, [node], {"start": (dtype, []), "limit": (dtype, []), "delta": (dtype, [])}, ["y"])
    cases = [(0, 10, 3), (5, -3, -2), (1, 1, 1), (-4, 7, 2), (0, 10, 3)]
    if dtype == np.float32:
        cases += [(0.5, 3.25, 0.25), (2.0, -1.0, -0.75)]
    run_all(onnx_case, model, [{"start": np.array(a, dtype), "limit": np.array(b, dtype), "delta": np.array(c, dtype)}
                               for a, b, c in cases])


def test_resize_sizes_and_scales_from_data(onnx_case):
    """Resize with sizes fed (nearest) and with scales fed (linear)."""
    rng = rng_for("resize")
    x = rng.standard_normal((2, 3, 5, 7)).astype(np.float32)
    nearest = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="nearest")
    model = model_of(onnx_case, [nearest], {"x": (np.float32, [2, 3, 5, 7]), "sizes": (np.int64, [4])}, ["y"])
    run_all(onnx_case, model, [{"x": x, "sizes": np.array(s, np.int64)}
                               for s in ([2, 3, 10, 14], [2, 3, 3, 4], [2, 3, 11, 9], [2, 3, 10, 14])])
    linear = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear")
    model = model_of(onnx_case, [linear], {"x": (np.float32, [2, 3, 5, 7]), "scales": (np.float32, [4])}, ["y"])
    run_all(onnx_case, model, [{"x": x, "scales": np.array(s, np.float32)}
                               for s in ([1, 1, 2, 2], [1, 1, 0.6, 1.5], [1, 1, 2, 2])],
            tolerance=dict(rtol=1e-5, atol=1e-6))


def test_pad_from_data(onnx_case):
    """onnxruntime is the oracle: onnx.reference (numpy.pad) refuses the negative (cropping) pads."""
    rng = rng_for("pad")
    node = helper.make_node("Pad", ["x", "pads", "value"], ["y"], mode="constant")
    model = model_of(onnx_case, [node], {"x": (np.float32, [2, 3, 4]), "pads": (np.int64, [6]),
                                         "value": (np.float32, [])}, ["y"])
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    cases = [[0, 1, 2, 0, 1, 0], [1, 0, -1, 0, 2, 1], [0, 0, 0, 0, 0, 0], [0, 1, 2, 0, 1, 0]]
    run_all(onnx_case, model, [{"x": x, "pads": np.array(p, np.int64), "value": np.array(1.5, np.float32)} for p in cases],
            use_reference=False)


def test_squeeze_unsqueeze_split_reduce_axes_from_data(onnx_case):
    rng = rng_for("axes")
    nodes = [helper.make_node("Unsqueeze", ["x", "uaxes"], ["u"]),
             helper.make_node("ReduceSum", ["x", "raxes"], ["r"], keepdims=0),
             helper.make_node("Split", ["x", "split"], ["s0", "s1"], axis=1)]
    model = model_of(onnx_case, nodes, {"x": (np.float32, [2, 5, 3]), "uaxes": (np.int64, [1]),
                                        "raxes": (np.int64, [1]), "split": (np.int64, [2])},
                     ["u", "r", "s0", "s1"])
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    cases = [(0, 1, [2, 3]), (-1, 2, [5, 0]), (2, 0, [1, 4]), (0, 1, [2, 3])]
    # Sums of five floats: onnx.reference (numpy) may add in another order; tiny tolerance.
    run_all(onnx_case, model, [{"x": x, "uaxes": np.array([u], np.int64), "raxes": np.array([r], np.int64),
                                "split": np.array(s, np.int64)} for u, r, s in cases],
            tolerance=dict(rtol=1e-6, atol=1e-6))


def test_nonzero_then_gather_and_reshape(onnx_case):
    """NonZero (output shape decided by the data) followed by ops planned with its shape:
    Transpose, Gather of the selected values through the indices, and Shape arithmetic on it."""
    rng = rng_for("nonzero-chain")
    nodes = [helper.make_node("Greater", ["x", "zero"], ["mask"]),
             helper.make_node("NonZero", ["mask"], ["nz"]),
             helper.make_node("Transpose", ["nz"], ["idx"], perm=[1, 0]),
             helper.make_node("Flatten", ["x"], ["flat"], axis=0),
             helper.make_node("Shape", ["idx"], ["s"]),
             helper.make_node("Mul", ["nz", "two"], ["nz2"])]
    model = model_of(onnx_case, nodes, {"x": (np.float32, [3, 4])}, ["idx", "nz2", "s", "flat"],
                     {"zero": np.array(0, np.float32), "two": np.array(2, np.int64)})
    feeds = [{"x": rng.standard_normal((3, 4)).astype(np.float32)} for _ in range(4)]
    feeds.append({"x": -np.ones((3, 4), np.float32)})
    feeds.append({"x": np.ones((3, 4), np.float32)})
    feeds.append(feeds[0])
    run_all(onnx_case, model, feeds)


def test_two_barriers_in_a_row(onnx_case):
    """NonZero, then a Reshape whose shape comes from data after it, then TopK with k from data:
    three plans chained, each cached by what its barrier decided."""
    rng = rng_for("chain")
    nodes = [helper.make_node("NonZero", ["x"], ["nz"]),
             helper.make_node("Cast", ["nz"], ["nzf"], to=TensorProto.FLOAT),
             helper.make_node("Reshape", ["nzf", "shape"], ["r"]),
             helper.make_node("TopK", ["r", "k"], ["v", "i"], axis=-1)]
    model = model_of(onnx_case, nodes, {"x": (np.float32, [6]), "shape": (np.int64, [2]), "k": (np.int64, [1])},
                     ["v", "i", "nz"])
    feeds = []
    for shape, k, nonzero in [([1, -1], 2, 4), ([-1, 1], 1, 3), ([2, -1], 1, 4), ([1, -1], 2, 4), ([1, -1], 0, 6)]:
        x = np.zeros(6, np.float32)
        x[rng.permutation(6)[:nonzero]] = rng.standard_normal(nonzero).astype(np.float32) + 3
        feeds.append({"x": x, "shape": np.array(shape, np.int64), "k": np.array([k], np.int64)})
    run_all(onnx_case, model, feeds)


def test_bad_runtime_shape_is_a_clear_error_and_the_session_recovers(onnx_case):
    node = helper.make_node("Reshape", ["x", "shape"], ["y"], name="the_reshape")
    model = model_of(onnx_case, [node], {"x": (np.float32, [2, 3]), "shape": (np.int64, [2])}, ["y"])
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    with deformrt.InferenceSession(model, threads=1) as session:
        with pytest.raises(deformrt.DeformRTError, match="the_reshape.*cannot reshape"):
            session.run(None, {"x": x, "shape": np.array([4, 2], np.int64)})
        with pytest.raises(deformrt.DeformRTError, match="the_reshape.*negative|the_reshape.*invalid dim"):
            session.run(None, {"x": x, "shape": np.array([-7, 2], np.int64)})
        got = session.run(None, {"x": x, "shape": np.array([3, 2], np.int64)})[0]
        np.testing.assert_array_equal(got, x.reshape(3, 2))


def test_huge_runtime_shape_is_refused(onnx_case):
    """A shape from data asking for 2^62 elements: an error naming the node; 2^40 float elements:
    over the session's memory limit, refused before allocating."""
    node = helper.make_node("ConstantOfShape", ["shape"], ["y"], name="huge")
    model = model_of(onnx_case, [node], {"shape": (np.int64, [2])}, ["y"])
    with deformrt.InferenceSession(model, threads=1) as session:
        with pytest.raises(deformrt.DeformRTError, match="huge"):
            session.run(None, {"shape": np.array([1 << 31, 1 << 31], np.int64)})
        with pytest.raises(deformrt.DeformRTError, match="memory limit"):
            session.run(None, {"shape": np.array([1 << 20, 1 << 20], np.int64)})
        got = session.run(None, {"shape": np.array([2, 3], np.int64)})[0]
        np.testing.assert_array_equal(got, np.zeros((2, 3), np.float32))


def test_many_distinct_shapes_stay_correct(onnx_case):
    """More distinct shape values than the continuation cache keeps (16): it starts over and
    every result stays right."""
    node = helper.make_node("Range", ["start", "limit", "delta"], ["y"])
    model = model_of(onnx_case, [node], {"start": (np.int64, []), "limit": (np.int64, []), "delta": (np.int64, [])}, ["y"])
    with deformrt.InferenceSession(model, threads=1) as session:
        for n in list(range(40)) + list(range(5)):
            got = session.run(None, {"start": np.array(0, np.int64), "limit": np.array(n, np.int64),
                                     "delta": np.array(1, np.int64)})[0]
            np.testing.assert_array_equal(got, np.arange(n, dtype=np.int64))


def test_onehot_depth_from_data(onnx_case):
    node = helper.make_node("OneHot", ["indices", "depth", "values"], ["y"], axis=1)
    model = model_of(onnx_case, [node], {"indices": (np.int64, [2, 3]), "depth": (np.int64, [])}, ["y"],
                     {"values": np.array([0.5, 2.0], np.float32)}, opset=11)
    indices = np.array([[0, 2, -1], [1, 4, 3]], np.int64)
    run_all(onnx_case, model, [{"indices": indices, "depth": np.array(d, np.int64)} for d in (5, 3, 7, 5)])
