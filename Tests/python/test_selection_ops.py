"""TopK, NonZero, Compress and NonMaxSuppression against onnxruntime and onnx.reference.

All tolerances are exact (rtol=0, atol=0): these operators select and copy elements, and
NonMaxSuppression's IoU is computed with onnxruntime's float operations in its order.

Which oracle, and why:
- TopK: onnx.reference on values without ties; onnxruntime where ties or NaN decide the order
  (onnxruntime puts the lower index first among equal values, and NaN above every number; the
  reference sorts negated values, which flips the order of ties when largest = 1).
- NonZero, Compress: both.
- NonMaxSuppression: onnxruntime (its CPU kernel defines the output order); the reference too
  where it agrees (no NaN).
"""

from __future__ import annotations

import zlib

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import deformrt

EXACT = dict(rtol=0, atol=0)


def rng_for(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def ort_run(model: bytes, feeds) -> list:
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, dict(feeds))


def model_of(onnx_case, nodes, inputs, outputs, initializers=None, opset=17):
    declared = [onnx_case.value(k, *v) for k, v in inputs.items()]
    return onnx_case.model(nodes, declared, list(outputs), initializers or {}, opset=opset, check=False)


def check_both(onnx_case, model, feeds, use_reference=True, threads=2):
    got = onnx_case.run(model, feeds, threads)
    onnx_case.compare(got, ort_run(model, feeds), **EXACT)
    if use_reference:
        onnx_case.compare(got, onnx_case.reference(model, feeds), **EXACT)
    return got


# ---------------------------------------------------------------------------------------------
# TopK

TOPK_SHAPES = [((2, 7, 5), 1), ((3, 17), -1), ((2, 3, 129), 2), ((5,), 0), ((2, 1, 9, 3), -2), ((3, 1000), 1)]


@pytest.mark.parametrize("largest", [1, 0])
@pytest.mark.parametrize("shape,axis", TOPK_SHAPES)
def test_topk_random(onnx_case, shape, axis, largest):
    """Distinct random values; several k per session (k is an input), 1 and 3 threads."""
    rng = rng_for("topk", shape, axis, largest)
    dim = shape[axis]
    x = rng.permutation(int(np.prod(shape))).astype(np.float32).reshape(shape) * 0.37 - 11
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=axis, largest=largest)
    model = model_of(onnx_case, [node], {"x": (np.float32, shape), "k": (np.int64, [1])}, ["v", "i"])
    for threads in (1, 3):
        for k in sorted({0, 1, dim // 2, dim, min(dim, 3)}):
            check_both(onnx_case, model, {"x": x, "k": np.array([k], np.int64)}, threads=threads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
@pytest.mark.parametrize("largest", [1, 0])
def test_topk_ties_and_nan_as_onnxruntime(onnx_case, dtype, largest):
    """Many equal values (lower index first) and, for floats, NaN (above every number)."""
    rng = rng_for("topk-ties", dtype, largest)
    x = rng.integers(-3, 4, size=(3, 4, 11)).astype(dtype)
    if np.issubdtype(dtype, np.floating):
        x.ravel()[rng.permutation(x.size)[:20]] = np.nan
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=2, largest=largest)
    model = model_of(onnx_case, [node], {"x": (dtype, x.shape), "k": (np.int64, [1])}, ["v", "i"])
    for k in (1, 5, 11):
        check_both(onnx_case, model, {"x": x, "k": np.array([k], np.int64)}, use_reference=False)


@pytest.mark.parametrize("largest", [1, 0])
@pytest.mark.parametrize("data", ["ties_and_nan", "rising", "falling"])
def test_topk_long_lines_split_over_threads(onnx_case, data, largest):
    """Lines of 40,000-50,000 (CenterNet takes the top 100 of 80 x 128 x 128 scores): fewer lines than
    threads, so each thread keeps the k best of a segment and the line's are taken from those.
    Many ties (lower index first) and NaN, and sorted data (every element displaces the worst
    kept one, or none does); exact against onnxruntime at 1, 2 and 3 threads."""
    rng = rng_for("topk-long", data, largest)
    for shape in [(1, 40000), (2, 1, 50000)]:
        size = int(np.prod(shape))
        if data == "ties_and_nan":
            x = rng.integers(-50, 50, size=size).astype(np.float32)
            x[rng.permutation(size)[:37]] = np.nan
        else:
            x = np.linspace(-3, 3, size, dtype=np.float32)
            x = x if data == "rising" else x[::-1].copy()
        x = x.reshape(shape)
        node = helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=-1, largest=largest)
        model = model_of(onnx_case, [node], {"x": (np.float32, shape), "k": (np.int64, [1])}, ["v", "i"])
        for threads in (1, 2, 3):
            for k in (1, 100, 3000):
                check_both(onnx_case, model, {"x": x, "k": np.array([k], np.int64)}, threads=threads,
                           use_reference=False)


def test_topk_opset1_attribute_and_sorted0(onnx_case):
    rng = rng_for("topk-1")
    x = rng.standard_normal((2, 9)).astype(np.float32)
    model = model_of(onnx_case, [helper.make_node("TopK", ["x"], ["v", "i"], k=4)], {"x": (np.float32, x.shape)},
                     ["v", "i"], opset=1)
    check_both(onnx_case, model, {"x": x}, use_reference=False)
    # sorted = 0 leaves the order to the runtime; DeformRT returns it sorted: same set as onnxruntime.
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], sorted=0)
    model = model_of(onnx_case, [node], {"x": (np.float32, x.shape)}, ["v", "i"], {"k": np.array([5], np.int64)})
    got = onnx_case.run(model, {"x": x})
    want = ort_run(model, {"x": x})
    np.testing.assert_array_equal(np.sort(got[1], axis=1), np.sort(want[1], axis=1))
    np.testing.assert_array_equal(got[0], np.take_along_axis(x, got[1], axis=1))
    assert (np.diff(got[0], axis=1) <= 0).all()


@pytest.mark.parametrize("k", [10, -1, 1 << 62])
def test_topk_bad_k_is_an_error_naming_the_node(onnx_case, k):
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], name="topk_node")
    model = model_of(onnx_case, [node], {"x": (np.float32, [2, 9]), "k": (np.int64, [1])}, ["v", "i"])
    with pytest.raises(deformrt.DeformRTError, match="topk_node.*out of range"):
        onnx_case.run(model, {"x": np.zeros((2, 9), np.float32), "k": np.array([k], np.int64)})


# ---------------------------------------------------------------------------------------------
# NonZero

@pytest.mark.parametrize("dtype,shape", [(np.float32, (2, 3, 5)), (np.bool_, (3, 7)), (np.int64, (17,)),
                                         (np.int32, (2, 1, 4, 3)), (np.uint8, (5, 5)), (np.float64, (4, 3))])
def test_nonzero(onnx_case, dtype, shape):
    rng = rng_for("nonzero", dtype, shape)
    x = (rng.integers(0, 3, size=shape) * rng.integers(-2, 3, size=shape)).astype(dtype)
    if np.issubdtype(dtype, np.floating):
        flat = x.ravel()
        flat[:3] = [-0.0, np.nan, np.inf]
    model = model_of(onnx_case, [helper.make_node("NonZero", ["x"], ["y"])], {"x": (dtype, shape)}, ["y"])
    with deformrt.InferenceSession(model, threads=2) as session:
        for feed in (x, np.zeros(shape, dtype), np.ones(shape, dtype), x):
            got = session.run(None, {"x": feed})
            if dtype != np.float64:  # onnxruntime has no double NonZero kernel
                onnx_case.compare(got, ort_run(model, {"x": feed}), **EXACT)
            onnx_case.compare(got, onnx_case.reference(model, {"x": feed}), **EXACT)


def test_nonzero_scalar_as_onnxruntime(onnx_case):
    """A scalar is taken as shape [1] (onnxruntime; numpy refuses 0-d nonzero)."""
    model = model_of(onnx_case, [helper.make_node("NonZero", ["x"], ["y"])], {"x": (np.float32, [])}, ["y"])
    for v in (3.0, 0.0):
        feeds = {"x": np.array(v, np.float32)}
        onnx_case.compare(onnx_case.run(model, feeds), ort_run(model, feeds), **EXACT)


def test_nonzero_of_a_constant_is_folded(onnx_case):
    nodes = [helper.make_node("NonZero", ["c"], ["nz"]), helper.make_node("Add", ["nz", "x"], ["y"])]
    model = model_of(onnx_case, nodes, {"x": (np.int64, [1, 1])}, ["y"], {"c": np.array([[0, 1, 1], [2, 0, 3]], np.int64)})
    check_both(onnx_case, model, {"x": np.array([[5]], np.int64)})


# ---------------------------------------------------------------------------------------------
# Compress

@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_compress(onnx_case, axis):
    rng = rng_for("compress", axis)
    x = rng.standard_normal((3, 5, 4)).astype(np.float32)
    attrs = {} if axis is None else {"axis": axis}
    n = x.size if axis is None else x.shape[axis]
    model = model_of(onnx_case, [helper.make_node("Compress", ["x", "c"], ["y"], **attrs)],
                     {"x": (np.float32, x.shape), "c": (np.bool_, [None])}, ["y"])
    with deformrt.InferenceSession(model, threads=2) as session:
        for c in (rng.integers(0, 2, n).astype(bool), np.zeros(n, bool), np.ones(n - 1, bool),
                  rng.integers(0, 2, max(1, n // 2)).astype(bool)):
            got = session.run(None, {"x": x, "c": c})
            onnx_case.compare(got, ort_run(model, {"x": x, "c": c}), **EXACT)
            onnx_case.compare(got, onnx_case.reference(model, {"x": x, "c": c}), **EXACT)


def test_compress_condition_longer_than_the_axis_as_onnxruntime(onnx_case):
    """Entries past the axis are ignored, as onnxruntime does (onnx.reference raises on a true one)."""
    model = model_of(onnx_case, [helper.make_node("Compress", ["x", "c"], ["y"], axis=0)],
                     {"x": (np.float32, [3, 2]), "c": (np.bool_, [5])}, ["y"])
    feeds = {"x": np.arange(6, dtype=np.float32).reshape(3, 2), "c": np.array([1, 0, 1, 1, 1], bool)}
    onnx_case.compare(onnx_case.run(model, feeds), ort_run(model, feeds), **EXACT)


# ---------------------------------------------------------------------------------------------
# NonMaxSuppression

def nms_model(onnx_case, center, inputs=("max", "iou", "score"), name="nms"):
    names = ["boxes", "scores"] + [n if n in inputs else "" for n in ("max", "iou", "score")]
    while names[-1] == "":
        names.pop()
    node = helper.make_node("NonMaxSuppression", names, ["sel"], center_point_box=center, name=name)
    declared = {"boxes": (np.float32, [None, None, None]), "scores": (np.float32, [None, None, None])}
    declared.update({n: t for n, t in (("max", (np.int64, [1])), ("iou", (np.float32, [1])), ("score", (np.float32, [1])))
                     if n in inputs})
    return model_of(onnx_case, [node], declared, ["sel"])


def random_boxes(rng, batches, count, center):
    if center:
        xy = rng.uniform(0, 10, (batches, count, 2))
        wh = rng.uniform(0.5, 4, (batches, count, 2))
        return np.concatenate([xy, wh], axis=2).astype(np.float32)
    a = rng.uniform(0, 10, (batches, count, 2))
    b = a + rng.uniform(-4, 4, (batches, count, 2))  # either corner first
    return np.concatenate([a, b], axis=2)[:, :, [0, 1, 2, 3]].astype(np.float32)


@pytest.mark.parametrize("center", [0, 1])
@pytest.mark.parametrize("batches,classes,count", [(1, 1, 6), (2, 3, 37), (3, 2, 200)])
def test_nms_random(onnx_case, center, batches, classes, count):
    rng = rng_for("nms", center, batches, classes, count)
    boxes = random_boxes(rng, batches, count, center)
    scores = rng.uniform(0, 1, (batches, classes, count)).astype(np.float32)
    model = nms_model(onnx_case, center)
    with deformrt.InferenceSession(model, threads=2) as session:
        for max_out, iou, score in ((5, 0.5, 0.3), (100, 0.3, 0.0), (3, 0.0, 0.9), (0, 0.5, 0.1), (-2, 0.5, 0.1),
                                    (1000, 1.0, 0.5), (5, 0.5, 0.3)):
            feeds = {"boxes": boxes, "scores": scores, "max": np.array([max_out], np.int64),
                     "iou": np.array([iou], np.float32), "score": np.array([score], np.float32)}
            got = session.run(None, feeds)
            onnx_case.compare(got, ort_run(model, feeds), **EXACT)
            if max_out >= 0:
                onnx_case.compare(got, onnx_case.reference(model, feeds), **EXACT)


@pytest.mark.parametrize("inputs", [(), ("max",), ("max", "iou")])
def test_nms_optional_inputs(onnx_case, inputs):
    """Absent max_output_boxes_per_class selects nothing; absent thresholds are 0 / none.
    onnxruntime only: onnx.reference fails on omitted optional inputs (None has no size)."""
    rng = rng_for("nms-opt", inputs)
    boxes = random_boxes(rng, 2, 25, 0)
    scores = rng.uniform(-1, 1, (2, 2, 25)).astype(np.float32)
    model = nms_model(onnx_case, 0, inputs)
    feeds = {"boxes": boxes, "scores": scores}
    if "max" in inputs:
        feeds["max"] = np.array([7], np.int64)
    if "iou" in inputs:
        feeds["iou"] = np.array([0.4], np.float32)
    got = check_both(onnx_case, model, feeds, use_reference=False)
    assert (got[0].shape[0] > 0) == ("max" in inputs)


def test_nms_nan_boxes_and_scores(onnx_case):
    """NaN coordinates: such a box neither suppresses nor is suppressed (onnxruntime's IoU tests
    all fail on NaN); compared with onnxruntime. NaN scores with a score threshold are dropped
    by both; without one, DeformRT never selects them (onnxruntime's order is then undefined)."""
    rng = rng_for("nms-nan")
    boxes = random_boxes(rng, 2, 30, 0)
    boxes[0, 3, 1] = np.nan
    boxes[1, 7, :] = np.nan
    boxes[0, 9, 2] = np.inf
    scores = rng.uniform(0, 1, (2, 2, 30)).astype(np.float32)
    model = nms_model(onnx_case, 0)
    feeds = {"boxes": boxes, "scores": scores, "max": np.array([30], np.int64),
             "iou": np.array([0.3], np.float32), "score": np.array([0.1], np.float32)}
    onnx_case.compare(onnx_case.run(model, feeds), ort_run(model, feeds), **EXACT)
    scores[1, 0, [2, 5]] = np.nan
    onnx_case.compare(onnx_case.run(model, feeds), ort_run(model, feeds), **EXACT)
    model = nms_model(onnx_case, 0, ("max", "iou"))
    del feeds["score"]
    got = onnx_case.run(model, feeds)[0]
    assert not any(b == 1 and c == 0 and i in (2, 5) for b, c, i in got)
    clean = scores.copy()
    clean[np.isnan(clean)] = -np.inf  # lowest: after every finite score, like a dropped box
    want = ort_run(model, {**feeds, "scores": clean})[0]
    want = np.array([r for r in want if not (r[0] == 1 and r[1] == 0 and r[2] in (2, 5))]).reshape(-1, 3)
    np.testing.assert_array_equal(got, want)


def test_nms_bad_inputs_are_errors_naming_the_node(onnx_case):
    model = nms_model(onnx_case, 0, name="nms_node")
    good = {"boxes": np.zeros((1, 3, 4), np.float32), "scores": np.zeros((1, 1, 3), np.float32),
            "max": np.array([2], np.int64), "iou": np.array([0.5], np.float32), "score": np.array([0.1], np.float32)}
    for change, match in (({"iou": np.array([1.5], np.float32)}, "iou_threshold"),
                          ({"iou": np.array([np.nan], np.float32)}, "iou_threshold"),
                          ({"scores": np.zeros((1, 1, 4), np.float32)}, "boxes must be"),
                          ({"boxes": np.zeros((2, 3, 4), np.float32)}, "boxes must be"),
                          ({"boxes": np.zeros((1, 3, 5), np.float32)}, "boxes must be")):
        with pytest.raises(deformrt.DeformRTError, match=f"nms_node.*{match}"):
            onnx_case.run(model, {**good, **change})
    # center_point_box 2 is refused when the session is made.
    node = helper.make_node("NonMaxSuppression", ["boxes", "scores"], ["sel"], center_point_box=2)
    bad = model_of(onnx_case, [node], {"boxes": (np.float32, [1, 3, 4]), "scores": (np.float32, [1, 1, 3])}, ["sel"])
    with pytest.raises(deformrt.DeformRTError, match="center_point_box 2"):
        onnx_case.run(bad, {"boxes": good["boxes"], "scores": good["scores"]})
