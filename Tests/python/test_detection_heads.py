"""CenterNet-style and Faster R-CNN-style heads (tools/make_detection_heads.py) end to end against
onnxruntime: data-dependent post-processing (TopK over run-time scores, NonMaxSuppression with
run-time thresholds, RoiAlign on the kept boxes) behind convolutions and Gemms.

Tolerances: the selected indices (TopK positions, classes, NMS selections) must be identical; the
float outputs within rtol=1e-4, atol=1e-5 (convolution and Gemm sums in another order; RoiAlign
bilinear weights). Inputs are seeded random with batch > 1 and odd sizes; one session serves
several batch sizes and thresholds in turn (re-planning what follows each data-dependent node).
"""

from __future__ import annotations

import importlib.util
import pathlib
import zlib

import numpy as np
import onnxruntime as ort
import pytest

import deformrt

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
FLOAT = dict(rtol=1e-4, atol=1e-5)


def _tools():
    spec = importlib.util.spec_from_file_location("make_detection_heads", REPO_ROOT / "tools" / "make_detection_heads.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


heads = _tools()


def rng_for(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def test_centernet_decoding_matches_onnxruntime():
    model = heads.centernet_head().SerializeToString()
    reference = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    with deformrt.InferenceSession(model, threads=2) as session:
        for batch in (2, 3, 1, 2):
            feat = rng_for("centernet", batch).standard_normal((batch, 8, 12, 10)).astype(np.float32)
            got = session.run(None, {"feat": feat})
            want = reference.run(None, {"feat": feat})
            np.testing.assert_allclose(got[3], want[3], **FLOAT)      # heatmap
            np.testing.assert_allclose(got[0], want[0], **FLOAT)      # top scores
            np.testing.assert_array_equal(got[1], want[1])            # classes
            np.testing.assert_allclose(got[2], want[2], **FLOAT)      # boxes


def random_proposals(rng, batch, count, classes):
    corner = rng.uniform(0, 40, (batch, count, 2))
    size = rng.uniform(4, 20, (batch, count, 2))
    boxes = np.concatenate([corner, corner + size], axis=2).astype(np.float32)  # (y1, x1, y2, x2)
    scores = rng.uniform(0, 1, (batch, classes, count)).astype(np.float32)
    return boxes, scores


@pytest.mark.parametrize("batch,count", [(2, 30), (3, 17)])
def test_faster_rcnn_head_matches_onnxruntime(batch, count):
    model = heads.faster_rcnn_head().SerializeToString()
    reference = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    rng = rng_for("frcnn", batch, count)
    feat = rng.standard_normal((batch, 6, 15, 13)).astype(np.float32)
    boxes, scores = random_proposals(rng, batch, count, 4)
    with deformrt.InferenceSession(model, threads=2) as session:
        for max_out, iou, thr in ((5, 0.5, 0.2), (20, 0.3, 0.0), (5, 0.5, 0.2), (2, 0.7, 0.95), (3, 0.5, 1.5)):
            feeds = {"feat": feat, "boxes": boxes, "scores": scores, "max_out": np.array([max_out], np.int64),
                     "iou": np.array([iou], np.float32), "score_thr": np.array([thr], np.float32)}
            got = session.run(None, feeds)
            want = reference.run(None, feeds)
            np.testing.assert_array_equal(got[0], want[0])   # selected (batch, class, box)
            np.testing.assert_allclose(got[2], want[2], **FLOAT)
            np.testing.assert_allclose(got[1], want[1], **FLOAT)
            assert got[1].shape == want[1].shape
