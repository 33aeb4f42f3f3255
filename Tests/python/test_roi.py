"""The RoI pooling family through ONNX models, end to end (issue 4).

- Every vector in Tests/vectors/roi/*.npz (made by tools/gen_roi_vectors.py from torchvision,
  onnx.reference and NumPy transcriptions of the mmcv and MXNet kernels; key layout there) is
  wrapped in a one-node model in each spelling that expresses it and run at 1 and 2 threads:
    roi_align_*              ai.onnx RoiAlign 16 and 22 (attribute explicit), 10 (output_half_pixel
                             vectors, no attribute), 16 without the attribute (half_pixel vectors)
    max_roi_pool_*           ai.onnx MaxRoiPool 16 and 22
    deform_roi_pool_*        mmcv and mmdeploy MMCVDeformRoIPool (float sampling_ratio, as mmcv
                             exports it) or MMCVModulatedDeformRoIPool (vectors with a mask), and
                             ai.deformrt DeformRoIPool (output_size, int sampling_ratio)
    deformable_psroi_pool_*  ai.deformrt DeformablePSROIPooling, and org.openvinotoolkit
                             DeformablePSROIPooling when group_size == pooled_size
- Random RoiAlign (opsets 10 and 16, avg and max) and MaxRoiPool configurations against onnxruntime.
- Zero (or absent, or empty) offsets: deformable RoI pooling equals RoiAlign half_pixel avg.
- Errors: wrong offset/mask/trans shapes, rois of the wrong rank, bad attributes, an out-of-range
  RoiAlign batch index (a run-time error naming the RoI); defined results (zeros) for float batch
  columns outside the batch and non-finite RoIs.

Tolerance: |got - want| <= 1e-5 + 1e-5 |want| (float32 sums of a few bilinear samples, |y| < ~5;
the kernels compute in the references' order, most cases match exactly).
"""

from __future__ import annotations

import glob
import os
import re
import zlib

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import deformrt

ATOL = 1e-5
RTOL = 1e-5
HERE = os.path.dirname(os.path.abspath(__file__))
VECTOR_DIR = os.path.join(HERE, "..", "vectors", "roi")
FLOAT, INT64 = TensorProto.FLOAT, TensorProto.INT64
NODE = "roi_node"

# Vectors hold RoIs far outside the map and huge offsets on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def rng_for(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def make_model(op: str, inputs, attrs: dict, domain: str = "", opset: int = 16,
               initializers=(), shapes: dict | None = None) -> bytes:
    """One-node model. `inputs` are (name, element type) pairs, "" for an omitted optional input;
    graph inputs have no declared shape unless `shapes` gives one (then the session plans at
    creation)."""
    names = [name for name, _ in inputs]
    node = helper.make_node(op, names, ["Y"], name=NODE, domain=domain, **attrs)
    init_names = {t.name for t in initializers}
    graph_inputs = [helper.make_tensor_value_info(name, elem, (shapes or {}).get(name))
                    for name, elem in inputs if name and name not in init_names]
    graph = helper.make_graph([node], "roi", graph_inputs, [helper.make_tensor_value_info("Y", FLOAT, None)],
                              list(initializers))
    opsets = [helper.make_opsetid("", opset)]
    if domain:
        opsets.append(helper.make_opsetid(domain, 1))
    return helper.make_model(graph, opset_imports=opsets, ir_version=10).SerializeToString()


def run(model: bytes, feeds: dict, threads: int = 2) -> np.ndarray:
    with deformrt.InferenceSession(model, threads=threads) as session:
        return session.run(None, feeds)[0]


def run_ort(model: bytes, feeds: dict) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def assert_close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == np.float32
    assert got.shape == want.shape, f"shape {got.shape}, expected {want.shape}"
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)


def error_of(model: bytes, feeds: dict) -> deformrt.DeformRTError:
    """The error creating or running the model raises (shape errors come at creation when the
    inputs have static shapes, at the first run otherwise)."""
    with pytest.raises(deformrt.DeformRTError) as caught:
        run(model, feeds)
    return caught.value


# ----------------------------------------------------------------------------- vector models

def roi_align_models(v: dict):
    """(label, model, feeds) for a roi_align_* vector."""
    ctm = str(v["coordinate_transformation_mode"])
    attrs = dict(mode=str(v["mode"]), output_height=int(v["output_height"]), output_width=int(v["output_width"]),
                 sampling_ratio=int(v["sampling_ratio"]), spatial_scale=float(v["spatial_scale"]))
    inputs = [("X", FLOAT), ("rois", FLOAT), ("batch_indices", INT64)]
    feeds = {"X": v["X"], "rois": v["rois"], "batch_indices": v["batch_indices"]}
    for opset in (16, 22):
        yield f"RoiAlign-{opset}", make_model("RoiAlign", inputs, {**attrs, "coordinate_transformation_mode": ctm},
                                              opset=opset), feeds
    if ctm == "output_half_pixel":
        yield "RoiAlign-10", make_model("RoiAlign", inputs, attrs, opset=10), feeds
    else:
        yield "RoiAlign-16 default mode", make_model("RoiAlign", inputs, attrs, opset=16), feeds


def max_roi_pool_models(v: dict):
    attrs = dict(pooled_shape=[int(s) for s in v["pooled_shape"]], spatial_scale=float(v["spatial_scale"]))
    for opset in (16, 22):
        yield f"MaxRoiPool-{opset}", make_model("MaxRoiPool", [("X", FLOAT), ("rois", FLOAT)], attrs,
                                                opset=opset), {"X": v["X"], "rois": v["rois"]}


def deform_roi_pool_models(v: dict):
    ph, pw = int(v["pooled_height"]), int(v["pooled_width"])
    common = dict(spatial_scale=float(v["spatial_scale"]), gamma=float(v["gamma"]))
    # mmcv's exporter: pooled_height_i, pooled_width_i, spatial_scale_f, sampling_ratio_f, gamma_f.
    mmcv_attrs = dict(pooled_height=ph, pooled_width=pw, sampling_ratio=float(v["sampling_ratio"]), **common)
    ours_attrs = dict(output_size=[ph, pw], sampling_ratio=int(v["sampling_ratio"]), **common)
    feeds = {"input": v["input"], "rois": v["rois"]}
    if "mask" in v:
        feeds.update(offset=v["offset"], mask=v["mask"])
        inputs = [("input", FLOAT), ("rois", FLOAT), ("offset", FLOAT), ("mask", FLOAT)]
        for domain in ("mmcv", "mmdeploy"):
            yield f"{domain}::MMCVModulatedDeformRoIPool", make_model(
                "MMCVModulatedDeformRoIPool", inputs, mmcv_attrs, domain=domain), feeds
        yield "ai.deformrt::DeformRoIPool", make_model("DeformRoIPool", inputs, ours_attrs, domain="ai.deformrt"), feeds
        return
    if "offset" in v:
        feeds["offset"] = v["offset"]
        inputs = [("input", FLOAT), ("rois", FLOAT), ("offset", FLOAT)]
    else:
        inputs = [("input", FLOAT), ("rois", FLOAT)]
        # mmcv's DeformRoIPool without offsets exports its `input.new_zeros(0)` as an empty constant.
        empty = numpy_helper.from_array(np.zeros(0, np.float32), "offset")
        yield "mmcv::MMCVDeformRoIPool empty offset", make_model(
            "MMCVDeformRoIPool", inputs + [("offset", FLOAT)], mmcv_attrs, domain="mmcv",
            initializers=[empty]), feeds
    for domain in ("mmcv", "mmdeploy"):
        yield f"{domain}::MMCVDeformRoIPool", make_model("MMCVDeformRoIPool", inputs, mmcv_attrs, domain=domain), feeds
    yield "ai.deformrt::DeformRoIPool", make_model("DeformRoIPool", inputs, ours_attrs, domain="ai.deformrt"), feeds


def psroi_models(v: dict):
    no_trans = int(v["no_trans"])
    feeds = {"data": v["data"], "rois": v["rois"]}
    inputs = [("data", FLOAT), ("rois", FLOAT)]
    if not no_trans:
        feeds["trans"] = v["trans"]
        inputs.append(("trans", FLOAT))
    attrs = {k: int(v[k]) for k in ("output_dim", "group_size", "pooled_size", "part_size", "sample_per_part",
                                     "no_trans")}
    attrs.update(spatial_scale=float(v["spatial_scale"]), trans_std=float(v["trans_std"]))
    yield "ai.deformrt::DeformablePSROIPooling", make_model(
        "DeformablePSROIPooling", inputs, attrs, domain="ai.deformrt"), feeds
    if int(v["group_size"]) == int(v["pooled_size"]):
        ov_attrs = dict(output_dim=attrs["output_dim"], group_size=attrs["group_size"],
                        spatial_scale=attrs["spatial_scale"], mode="bilinear_deformable",
                        spatial_bins_x=attrs["sample_per_part"], spatial_bins_y=attrs["sample_per_part"],
                        trans_std=attrs["trans_std"], part_size=attrs["part_size"])
        yield "org.openvinotoolkit::DeformablePSROIPooling", make_model(
            "DeformablePSROIPooling", [(n, t) if n != "trans" else ("offsets", t) for n, t in inputs], ov_attrs,
            domain="org.openvinotoolkit"), {("offsets" if k == "trans" else k): a for k, a in feeds.items()}


BUILDERS = {"roi_align_": (roi_align_models, "Y"), "max_roi_pool_": (max_roi_pool_models, "Y"),
            "deform_roi_pool_": (deform_roi_pool_models, "output"),
            "deformable_psroi_pool_": (psroi_models, "output")}


def vector_cases():
    cases = []
    for path in sorted(glob.glob(os.path.join(VECTOR_DIR, "*.npz"))):
        name = os.path.basename(path)[:-4]
        with np.load(path) as npz:
            v = {k: npz[k] for k in npz.files}
        prefix = next(p for p in BUILDERS if name.startswith(p))
        build, output_key = BUILDERS[prefix]
        for label, model, feeds in build(v):
            cases.append(pytest.param(model, feeds, v[output_key], id=f"{name}-{label}"))
    return cases


VECTOR_CASES = vector_cases()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("model,feeds,expected", VECTOR_CASES)
def test_vectors(model, feeds, expected, threads):
    assert_close(run(model, feeds, threads), expected)


def test_every_vector_and_spelling_is_covered():
    files = glob.glob(os.path.join(VECTOR_DIR, "*.npz"))
    assert len(files) >= 38
    ids = " ".join(case.id for case in VECTOR_CASES)
    for spelling in ("RoiAlign-10", "RoiAlign-16", "RoiAlign-22", "MaxRoiPool-22", "mmcv::MMCVDeformRoIPool",
                     "mmdeploy::MMCVDeformRoIPool", "mmcv::MMCVModulatedDeformRoIPool", "ai.deformrt::DeformRoIPool",
                     "ai.deformrt::DeformablePSROIPooling", "org.openvinotoolkit::DeformablePSROIPooling"):
        assert spelling in ids, spelling
    for file in files:
        assert os.path.basename(file)[:-4] in ids


# ----------------------------------------------------------------------------- random vs onnxruntime

def random_boxes(rng, count: int, height: float, width: float) -> np.ndarray:
    """(x1, y1, x2, y2) in image coordinates, x2 >= x1 and y2 >= y1, some spilling off the image
    (onnxruntime rejects RoIs inverted in one axis with half_pixel and adaptive sampling)."""
    x1 = rng.uniform(-0.2 * width, width, count)
    y1 = rng.uniform(-0.2 * height, height, count)
    x2 = x1 + rng.uniform(0, 0.8 * width, count)
    y2 = y1 + rng.uniform(0, 0.8 * height, count)
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)


ROI_ALIGN_RANDOM = [(seed, opset, mode) for seed in range(8) for opset, mode in
                    [(16, "avg"), (16, "max"), (10, "avg"), (10, "max")]]


@pytest.mark.parametrize("seed,opset,mode", ROI_ALIGN_RANDOM)
def test_roi_align_random_vs_onnxruntime(seed, opset, mode):
    rng = rng_for("roi_align", seed, opset, mode)
    n = int(rng.integers(1, 4))
    c = int(rng.choice([1, 3, 7, 16, 17]))
    h, w = int(rng.integers(1, 21)), int(rng.integers(1, 21))
    scale = float(rng.choice([1.0, 0.5, 0.25, 0.0625]))
    r = int(rng.integers(1, 40))
    attrs = dict(mode=mode, output_height=int(rng.integers(1, 6)), output_width=int(rng.integers(1, 6)),
                 sampling_ratio=int(rng.integers(0, 4)), spatial_scale=scale)
    if opset >= 16:
        attrs["coordinate_transformation_mode"] = str(rng.choice(["half_pixel", "output_half_pixel"]))
    model = make_model("RoiAlign", [("X", FLOAT), ("rois", FLOAT), ("batch_indices", INT64)], attrs, opset=opset)
    feeds = {"X": rng.standard_normal((n, c, h, w)).astype(np.float32),
             "rois": random_boxes(rng, r, h / scale, w / scale),
             "batch_indices": rng.integers(0, n, r).astype(np.int64)}
    want = run_ort(model, feeds)
    for threads in (1, 2):
        assert_close(run(model, feeds, threads), want)


@pytest.mark.parametrize("seed", range(8))
def test_max_roi_pool_random_vs_onnxruntime(seed):
    rng = rng_for("max_roi_pool", seed)
    n, c = int(rng.integers(1, 4)), int(rng.choice([1, 3, 7, 16, 17]))
    h, w = int(rng.integers(1, 21)), int(rng.integers(1, 21))
    scale = float(rng.choice([1.0, 0.5, 0.25]))
    r = int(rng.integers(1, 40))
    boxes = random_boxes(rng, r, h / scale, w / scale)
    rois = np.concatenate([rng.integers(0, n, (r, 1)).astype(np.float32), boxes], axis=1)
    model = make_model("MaxRoiPool", [("X", FLOAT), ("rois", FLOAT)],
                       dict(pooled_shape=[int(rng.integers(1, 6)), int(rng.integers(1, 6))], spatial_scale=scale))
    feeds = {"X": rng.standard_normal((n, c, h, w)).astype(np.float32), "rois": rois}
    want = run_ort(model, feeds)
    for threads in (1, 2):
        assert_close(run(model, feeds, threads), want)


def test_roi_align_default_mode_depends_on_opset():
    """No coordinate_transformation_mode: half_pixel from opset 16, output_half_pixel in opset 10
    (onnxruntime agrees; onnx.reference applies half_pixel to opset 10 too)."""
    rng = rng_for("default mode")
    feeds = {"X": rng.standard_normal((1, 2, 9, 9)).astype(np.float32),
             "rois": random_boxes(rng, 6, 9, 9), "batch_indices": np.zeros(6, np.int64)}
    inputs = [("X", FLOAT), ("rois", FLOAT), ("batch_indices", INT64)]
    outputs = {}
    for opset in (10, 16):
        model = make_model("RoiAlign", inputs, dict(output_height=2, output_width=2), opset=opset)
        outputs[opset] = run(model, feeds)
        assert_close(outputs[opset], run_ort(model, feeds))
    assert not np.allclose(outputs[10], outputs[16])


def test_zero_rois():
    x = np.ones((1, 3, 5, 5), np.float32)
    model = make_model("RoiAlign", [("X", FLOAT), ("rois", FLOAT), ("batch_indices", INT64)],
                       dict(output_height=2, output_width=3))
    got = run(model, {"X": x, "rois": np.zeros((0, 4), np.float32), "batch_indices": np.zeros(0, np.int64)})
    assert got.shape == (0, 3, 2, 3)
    model = make_model("MMCVDeformRoIPool", [("input", FLOAT), ("rois", FLOAT)], dict(output_size=[7, 7]),
                       domain="mmcv")
    assert run(model, {"input": x, "rois": np.zeros((0, 5), np.float32)}).shape == (0, 3, 7, 7)


@pytest.mark.skipif(not __import__("importlib").util.find_spec("openvino"), reason="openvino is not installed")
def test_openvino_spelling_vs_openvino():
    """org.openvinotoolkit DeformablePSROIPooling against OpenVINO's own opset1 operator (R-FCN-like,
    two offset classes)."""
    import openvino as ov
    import openvino.opset1 as ops

    rng = rng_for("openvino psroi")
    od, g, part, bins = 6, 3, 3, 2
    data = rng.standard_normal((2, od * g * g, 14, 17)).astype(np.float32)
    boxes = random_boxes(rng, 20, 28, 34)
    rois = np.concatenate([rng.integers(0, 2, (20, 1)).astype(np.float32), boxes], axis=1)
    offsets = rng.uniform(-1, 1, (20, 4, part, part)).astype(np.float32)
    attrs = dict(output_dim=od, group_size=g, spatial_scale=0.5, spatial_bins_x=bins, spatial_bins_y=bins,
                 trans_std=0.1, part_size=part)
    model = make_model("DeformablePSROIPooling", [("data", FLOAT), ("rois", FLOAT), ("offsets", FLOAT)],
                       attrs, domain="org.openvinotoolkit")
    params = [ov.op.Parameter(ov.Type.f32, ov.Shape(list(a.shape))) for a in (data, rois, offsets)]
    node = ops.deformable_psroi_pooling(params[0], params[1], mode="bilinear_deformable", offsets=params[2], **attrs)
    compiled = ov.Core().compile_model(ov.Model([node], params), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    want = compiled([data, rois, offsets])[0]
    for threads in (1, 2):
        assert_close(run(model, {"data": data, "rois": rois, "offsets": offsets}, threads), want)


# ----------------------------------------------------------------------------- zero offsets == RoiAlign

@pytest.mark.parametrize("seed", range(4))
def test_zero_offset_deform_roi_pool_equals_roi_align_half_pixel(seed):
    """DCNv1 deformable RoI pooling with zero offsets is RoiAlign half_pixel avg (users report
    mismatches between implementations here): every spelling, offsets zero, absent or empty, and
    the modulated form with a mask of ones."""
    rng = rng_for("zero offset", seed)
    n, c, h, w = 2, int(rng.choice([3, 16, 17])), int(rng.integers(4, 20)), int(rng.integers(4, 20))
    ph, pw, sr, scale = int(rng.integers(1, 8)), int(rng.integers(1, 8)), int(rng.integers(0, 3)), 0.25
    r = 30
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    boxes = random_boxes(rng, r, h / scale, w / scale)
    index = rng.integers(0, n, r)
    rois5 = np.concatenate([index[:, None].astype(np.float32), boxes], axis=1)
    align = make_model("RoiAlign", [("X", FLOAT), ("rois", FLOAT), ("batch_indices", INT64)],
                       dict(mode="avg", coordinate_transformation_mode="half_pixel", output_height=ph,
                            output_width=pw, sampling_ratio=sr, spatial_scale=scale))
    want = run(align, {"X": x, "rois": boxes, "batch_indices": index.astype(np.int64)})
    assert_close(want, run_ort(align, {"X": x, "rois": boxes, "batch_indices": index.astype(np.int64)}))

    zeros = np.zeros((r, 2, ph, pw), np.float32)
    ones = np.ones((r, 1, ph, pw), np.float32)
    attrs = dict(pooled_height=ph, pooled_width=pw, spatial_scale=scale, sampling_ratio=float(sr), gamma=0.1)
    two = [("input", FLOAT), ("rois", FLOAT)]
    base = {"input": x, "rois": rois5}
    variants = [
        ("MMCVDeformRoIPool", "mmcv", two + [("offset", FLOAT)], {**base, "offset": zeros}),
        ("MMCVDeformRoIPool", "mmcv", two, base),
        ("MMCVModulatedDeformRoIPool", "mmcv", two + [("offset", FLOAT), ("mask", FLOAT)],
         {**base, "offset": zeros, "mask": ones}),
        ("DeformRoIPool", "ai.deformrt", two + [("offset", FLOAT)], {**base, "offset": zeros}),
        ("DeformRoIPool", "ai.deformrt", two + [("", FLOAT), ("mask", FLOAT)], {**base, "mask": ones}),
    ]
    for op, domain, inputs, feeds in variants:
        got = run(make_model(op, inputs, attrs, domain=domain), feeds)
        np.testing.assert_array_equal(got, want, err_msg=f"{domain}::{op} {[n for n, _ in inputs]}")


def test_modulated_mask_scales_each_bin():
    rng = rng_for("mask scales")
    x = rng.standard_normal((1, 5, 9, 11)).astype(np.float32)
    rois = np.array([[0, 1, 2, 15, 14], [0, -3, 4, 8, 20]], np.float32)
    offset = rng.uniform(-1, 1, (2, 2, 3, 3)).astype(np.float32)
    mask = rng.uniform(0, 1, (2, 1, 3, 3)).astype(np.float32)
    attrs = dict(output_size=[3, 3], spatial_scale=0.5)
    plain = run(make_model("DeformRoIPool", [("input", FLOAT), ("rois", FLOAT), ("offset", FLOAT)], attrs,
                           domain="ai.deformrt"), {"input": x, "rois": rois, "offset": offset})
    modulated = run(make_model("DeformRoIPool", [("input", FLOAT), ("rois", FLOAT), ("offset", FLOAT), ("mask", FLOAT)],
                               attrs, domain="ai.deformrt"), {"input": x, "rois": rois, "offset": offset, "mask": mask})
    np.testing.assert_allclose(modulated, plain * mask, rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------- errors and defined results

X4 = np.zeros((2, 3, 8, 8), np.float32)
ROIS5 = np.array([[0, 1, 1, 6, 6], [1, 0, 2, 7, 5]], np.float32)
DEFORM_INPUTS = [("input", FLOAT), ("rois", FLOAT), ("offset", FLOAT), ("mask", FLOAT)]


@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static"])
@pytest.mark.parametrize("op,domain,offset_shape,mask_shape,message", [
    ("MMCVDeformRoIPool", "mmcv", (2, 2, 3, 4), None, r"offset shape \[2, 2, 3, 4\] must be \[2, 2, 3, 3\]"),
    ("MMCVDeformRoIPool", "mmcv", (3, 2, 3, 3), None, r"offset shape \[3, 2, 3, 3\] must be \[2, 2, 3, 3\]"),
    ("MMCVDeformRoIPool", "mmcv", (2, 1, 3, 3), None, "offset shape"),
    ("MMCVModulatedDeformRoIPool", "mmcv", (2, 2, 3, 3), (2, 2, 3, 3), r"mask shape \[2, 2, 3, 3\] must be \[2, 1, 3, 3\]"),
    ("MMCVModulatedDeformRoIPool", "mmcv", (2, 2, 3, 3), (2, 3, 3), "mask shape"),
    ("MMCVModulatedDeformRoIPool", "mmdeploy", (2, 2, 3, 3), (0,), "mask shape"),
    ("DeformRoIPool", "ai.deformrt", (2, 2, 3, 3), (1, 1, 3, 3), "mask shape"),
    ("DeformRoIPool", "ai.deformrt", (2, 2, 9), None, "offset shape"),
])
def test_wrong_offset_or_mask_shape(op, domain, offset_shape, mask_shape, message, static):
    inputs = DEFORM_INPUTS[:3] + (DEFORM_INPUTS[3:] if mask_shape else [])
    feeds = {"input": X4, "rois": ROIS5, "offset": np.zeros(offset_shape, np.float32)}
    if mask_shape:
        feeds["mask"] = np.zeros(mask_shape, np.float32)
    shapes = {k: list(a.shape) for k, a in feeds.items()} if static else None
    error = error_of(make_model(op, inputs, dict(output_size=[3, 3]), domain=domain, shapes=shapes), feeds)
    assert error.status == deformrt.Status.INVALID_MODEL
    assert NODE in str(error) and op in str(error)
    assert re.search(message, str(error)), str(error)


def test_wrong_trans_shape():
    data = np.zeros((1, 4 * 9, 6, 6), np.float32)
    rois = ROIS5[:1]
    inputs = [("data", FLOAT), ("rois", FLOAT), ("trans", FLOAT)]
    attrs = dict(output_dim=4, group_size=3, spatial_scale=1.0, trans_std=0.1)
    for shape, message in [((1, 2, 2, 2), "trans shape"), ((1, 3, 3, 3), "trans shape"), ((2, 2, 3, 3), "trans shape"),
                           ((1, 6, 3, 3), "not a multiple of the 3 offset classes")]:
        error = error_of(make_model("DeformablePSROIPooling", inputs, attrs, domain="ai.deformrt"),
                         {"data": data, "rois": rois, "trans": np.zeros(shape, np.float32)})
        assert NODE in str(error) and message in str(error), str(error)
    error = error_of(make_model("DeformablePSROIPooling", inputs[:2], {**attrs, "no_trans": 0}, domain="ai.deformrt"),
                     {"data": data, "rois": rois})
    assert "no_trans = 0 needs the trans input" in str(error)
    error = error_of(make_model("DeformablePSROIPooling", inputs[:2], {**attrs, "output_dim": 5}, domain="ai.deformrt"),
                     {"data": data, "rois": rois})
    assert "data has 36 channels" in str(error)


ROIS_RANK_CASES = [
    ("RoiAlign", "", [("X", FLOAT), ("rois", FLOAT), ("batch_indices", INT64)], dict(output_height=2),
     lambda r: {"X": X4, "rois": r, "batch_indices": np.zeros(2, np.int64)}, 4),
    ("MaxRoiPool", "", [("X", FLOAT), ("rois", FLOAT)], dict(pooled_shape=[2, 2]),
     lambda r: {"X": X4, "rois": r}, 5),
    ("MMCVDeformRoIPool", "mmcv", [("input", FLOAT), ("rois", FLOAT)], dict(output_size=[2, 2]),
     lambda r: {"input": X4, "rois": r}, 5),
    ("DeformablePSROIPooling", "ai.deformrt", [("data", FLOAT), ("rois", FLOAT)],
     dict(output_dim=3, group_size=1, spatial_scale=1.0), lambda r: {"data": X4, "rois": r}, 5),
    ("DeformablePSROIPooling", "org.openvinotoolkit", [("data", FLOAT), ("rois", FLOAT)],
     dict(output_dim=3, spatial_scale=1.0), lambda r: {"data": X4, "rois": r}, 5),
]


@pytest.mark.parametrize("op,domain,inputs,attrs,feeds_for,columns", ROIS_RANK_CASES,
                         ids=[f"{c[1] or 'ai.onnx'}::{c[0]}" for c in ROIS_RANK_CASES])
def test_rois_of_wrong_rank_or_width(op, domain, inputs, attrs, feeds_for, columns):
    model = make_model(op, inputs, attrs, domain=domain)
    for rois in (np.zeros((2, columns, 1), np.float32), np.zeros(columns, np.float32),
                 np.zeros((2, columns + 1), np.float32)):
        error = error_of(model, feeds_for(rois))
        assert f"rois must have shape [num_rois, {columns}]" in str(error), str(error)
        assert NODE in str(error)
    error = error_of(model, {**feeds_for(np.zeros((2, columns), np.float32)),
                             inputs[0][0]: np.zeros((2, 3, 8), np.float32)})
    assert "must have rank 4" in str(error)


@pytest.mark.parametrize("bad", [2, -1, 1 << 40])
def test_roi_align_batch_index_out_of_range_is_a_run_time_error(bad):
    """onnxruntime errors too; DeformRT names the node and the RoI."""
    model = make_model("RoiAlign", [("X", FLOAT), ("rois", FLOAT), ("batch_indices", INT64)], dict(output_height=2))
    index = np.array([0, 1, bad, 0], np.int64)
    with deformrt.InferenceSession(model, threads=2) as session:
        with pytest.raises(deformrt.DeformRTError) as caught:
            session.run(None, {"X": X4, "rois": np.ones((4, 4), np.float32), "batch_indices": index})
        assert caught.value.status == deformrt.Status.INVALID_ARGUMENT
        assert f"{NODE} (RoiAlign): RoI 2 has batch index {bad}, outside the batch of 2" in str(caught.value)
        # The session stays usable.
        index[2] = 1
        assert session.run(None, {"X": X4, "rois": np.ones((4, 4), np.float32), "batch_indices": index})[0].shape == \
            (4, 3, 2, 1)


def test_roi_align_batch_indices_type_and_length():
    model = make_model("RoiAlign", [("X", FLOAT), ("rois", FLOAT), ("batch_indices", TensorProto.INT32)], {})
    error = error_of(model, {"X": X4, "rois": np.ones((2, 4), np.float32), "batch_indices": np.zeros(2, np.int32)})
    assert "batch_indices must be int64" in str(error)
    model = make_model("RoiAlign", [("X", FLOAT), ("rois", FLOAT), ("batch_indices", INT64)], {})
    error = error_of(model, {"X": X4, "rois": np.ones((2, 4), np.float32), "batch_indices": np.zeros(3, np.int64)})
    assert "batch_indices shape [3] must be [2]" in str(error)


def test_float_batch_column_outside_the_batch_gives_zeros():
    """MaxRoiPool, mmcv and MXNet read the batch index from a float column and do not check it;
    DeformRT defines that RoI's output as zeros (kernels: RoISampling.swift)."""
    x = rng_for("zeros").standard_normal((2, 4, 6, 6)).astype(np.float32) + 3
    rois = np.array([[0, 0, 0, 8, 8], [2, 0, 0, 8, 8], [-1, 0, 0, 8, 8], [np.nan, 0, 0, 8, 8], [1, 0, 0, 8, 8]],
                    np.float32)
    models = [
        (make_model("MaxRoiPool", [("X", FLOAT), ("rois", FLOAT)], dict(pooled_shape=[2, 2])), {"X": x, "rois": rois}),
        (make_model("MMCVDeformRoIPool", [("input", FLOAT), ("rois", FLOAT)], dict(output_size=[2, 2]), domain="mmcv"),
         {"input": x, "rois": rois}),
        (make_model("DeformablePSROIPooling", [("data", FLOAT), ("rois", FLOAT)],
                    dict(output_dim=1, group_size=2, spatial_scale=1.0), domain="ai.deformrt"), {"data": x, "rois": rois}),
    ]
    for model, feeds in models:
        got = run(model, feeds)
        assert np.all(got[1:4] == 0)
        assert np.all(got[[0, 4]] != 0)


def test_non_finite_and_huge_rois_give_defined_results():
    rng = rng_for("hostile rois")
    x = rng.standard_normal((1, 3, 7, 9)).astype(np.float32)
    boxes = np.array([[np.nan, 0, 4, 4], [0, np.inf, 4, 4], [-np.inf, -np.inf, np.inf, np.inf], [1e30, 1e30, 3e38, 3e38],
                      [-3e38, -3e38, 3e38, 3e38], [9, 8, 2, 1], [2, 2, 5, 5]], np.float32)
    rois5 = np.concatenate([np.zeros((len(boxes), 1), np.float32), boxes], axis=1)
    offset = np.full((len(boxes), 2, 2, 2), np.nan, np.float32)
    cases = [
        make_model("RoiAlign", [("X", FLOAT), ("rois", FLOAT), ("batch_indices", INT64)],
                   dict(output_height=2, output_width=2, sampling_ratio=2)),
        make_model("MaxRoiPool", [("X", FLOAT), ("rois", FLOAT)], dict(pooled_shape=[2, 2])),
        make_model("DeformRoIPool", [("input", FLOAT), ("rois", FLOAT), ("offset", FLOAT)],
                   dict(output_size=[2, 2], sampling_ratio=2), domain="ai.deformrt"),
        make_model("DeformablePSROIPooling", [("data", FLOAT), ("rois", FLOAT)],
                   dict(output_dim=3, group_size=1, pooled_size=2, spatial_scale=1.0, sample_per_part=2),
                   domain="ai.deformrt"),
    ]
    feeds = [{"X": x, "rois": boxes, "batch_indices": np.zeros(len(boxes), np.int64)}, {"X": x, "rois": rois5},
             {"input": x, "rois": rois5, "offset": offset}, {"data": x, "rois": rois5}]
    for model, feed in zip(cases, feeds):
        got = run(model, feed)
        assert np.isfinite(got).all()
        assert np.all(got[:2] == 0)  # a non-finite corner: zeros


@pytest.mark.parametrize("op,domain,inputs,attrs,message", [
    ("RoiAlign", "", 3, dict(mode="mean"), "mode must be 'avg' or 'max'"),
    ("RoiAlign", "", 3, dict(coordinate_transformation_mode="asymmetric"), "coordinate_transformation_mode"),
    ("RoiAlign", "", 3, dict(sampling_ratio=-1), "sampling_ratio must be in 0...1024"),
    ("RoiAlign", "", 3, dict(output_height=0), "output_height must be in 1..."),
    ("RoiAlign", "", 3, dict(spatial_scale=float("inf")), "spatial_scale must be finite"),
    ("MaxRoiPool", "", 2, {}, "missing attribute pooled_shape"),
    ("MaxRoiPool", "", 2, dict(pooled_shape=[2]), "pooled_shape must have 2 values"),
    ("MMCVDeformRoIPool", "mmcv", 2, dict(spatial_scale=1.0), "missing attribute output_size"),
    ("MMCVDeformRoIPool", "mmcv", 2, dict(output_size=[2, 2], pooled_height=3), "disagrees"),
    ("MMCVDeformRoIPool", "mmcv", 2, dict(output_size=[2, 2], sampling_ratio=float("nan")), "sampling_ratio must be finite"),
    ("MMCVDeformRoIPool", "mmcv", 2, dict(output_size=[2, 2], sampling_ratio=5000.0), "sampling_ratio must be at most"),
    ("DeformablePSROIPooling", "ai.deformrt", 2, dict(group_size=1, spatial_scale=1.0), "missing attribute output_dim"),
    ("DeformablePSROIPooling", "ai.deformrt", 2, dict(output_dim=1, group_size=1, spatial_scale=1.0,
                                                       sample_per_part=0), "sample_per_part must be in 1..."),
    ("DeformablePSROIPooling", "org.openvinotoolkit", 2, dict(output_dim=1, spatial_scale=1.0, mode="bilinear"),
     "mode must be 'bilinear_deformable'"),
    ("DeformablePSROIPooling", "org.openvinotoolkit", 2, dict(output_dim=1, spatial_scale=1.0, spatial_bins_x=2,
                                                               spatial_bins_y=3), "must equal spatial_bins_y"),
])
def test_bad_attributes(op, domain, inputs, attrs, message):
    names = {"RoiAlign": [("X", FLOAT), ("rois", FLOAT), ("batch_indices", INT64)],
             "MaxRoiPool": [("X", FLOAT), ("rois", FLOAT)]}.get(op, [("input", FLOAT), ("rois", FLOAT)])
    with pytest.raises(deformrt.DeformRTError) as caught:
        deformrt.InferenceSession(make_model(op, names[:inputs], attrs, domain=domain))
    assert message in str(caught.value) and NODE in str(caught.value), str(caught.value)


def test_mask_needs_the_modulated_op():
    feeds = {"input": X4, "rois": ROIS5, "offset": np.zeros((2, 2, 2, 2), np.float32),
             "mask": np.ones((2, 1, 2, 2), np.float32)}
    error = error_of(make_model("MMCVDeformRoIPool", DEFORM_INPUTS, dict(output_size=[2, 2]), domain="mmcv"), feeds)
    assert "takes at most 3 inputs" in str(error) and "MMCVModulatedDeformRoIPool" in str(error)
    error = error_of(make_model("MMCVModulatedDeformRoIPool", DEFORM_INPUTS[:3], dict(output_size=[2, 2]), domain="mmcv"),
                     {k: feeds[k] for k in ("input", "rois", "offset")})
    assert "missing required input 3 (mask)" in str(error)


def test_readme_documents_the_deformrt_domain():
    readme = open(os.path.join(HERE, "..", "..", "README.md")).read()
    section = readme[readme.index("RoI pooling operators"):]
    for name in ("ai.deformrt", "DeformablePSROIPooling", "DeformRoIPool", "sample_per_part", "no_trans",
                 "MMCVModulatedDeformRoIPool", "org.openvinotoolkit"):
        assert name in section, name
