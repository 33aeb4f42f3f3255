"""Makes the RoI pooling test vectors in Tests/vectors/roi/ (small uncompressed .npz files).

Run with the torch venv; it then re-runs itself under the system python3 for the ONNX /
onnxruntime / OpenVINO part:

    /opt/torchenv/bin/python tools/gen_roi_vectors.py          # phase 1, then phase 2
    python3 tools/gen_roi_vectors.py --system                  # phase 2 alone

Phase 1 (torch venv): RoiAlign avg from torchvision.ops.roi_align (aligned=True is half_pixel,
aligned=False is output_half_pixel), MaxRoiPool from torchvision.ops.roi_pool, mmcv deformable RoI
pooling and MXNet deformable PS RoI pooling from the NumPy transcriptions in tools/roi_reference.py.
Phase 2 (system python3): RoiAlign max mode (and the RoIs torchvision rejects) from onnx.reference,
checked against onnxruntime; every torchvision RoiAlign / MaxRoiPool vector re-checked against
onnxruntime; every deformable PS RoI pooling vector with group_size == pooled_size checked against
OpenVINO's opset1 deformable_psroi_pooling (f32 precision). Each check prints its largest
difference and the script fails above 1e-5 (mixed |a - b| / (1 + |b|)).

Vector files (all arrays little-endian; scalars are 0-d arrays; strings are numpy '<U' arrays).
The file name prefix names the op; the input and attribute keys are the op's own names:

roi_align_<case>.npz          ONNX RoiAlign (opset 16 attributes; output_half_pixel is opset 10's rule)
    X [N, C, H, W] float32, rois [R, 4] float32 (x1, y1, x2, y2), batch_indices [R] int64
    mode str ('avg' | 'max'), coordinate_transformation_mode str ('half_pixel' |
    'output_half_pixel'), output_height int64, output_width int64, sampling_ratio int64,
    spatial_scale float32
    Y [R, C, output_height, output_width] float32
    source str: 'torchvision' or 'onnx.reference'

max_roi_pool_<case>.npz       ONNX MaxRoiPool
    X [N, C, H, W] float32, rois [R, 5] float32 (batch, x1, y1, x2, y2)
    pooled_shape [2] int64 (height, width), spatial_scale float32
    Y [R, C, pooled_h, pooled_w] float32

deform_roi_pool_<case>.npz    mmcv::MMCVDeformRoIPool, or mmcv::MMCVModulatedDeformRoIPool when
                              'mask' is present
    input [N, C, H, W] float32, rois [R, 5] float32 (batch, x1, y1, x2, y2)
    offset [R, 2, pooled_height, pooled_width] float32 (absent: the op's optional input omitted)
    mask [R, 1, pooled_height, pooled_width] float32 (only for the modulated op)
    pooled_height int64, pooled_width int64, spatial_scale float32, sampling_ratio int64,
    gamma float32
    output [R, C, pooled_height, pooled_width] float32

deformable_psroi_pool_<case>.npz   MXNet DeformablePSROIPooling (= OpenVINO DeformablePSROIPooling-1
                                   when group_size == pooled_size; spatial_bins_x/y = sample_per_part)
    data [N, output_dim * group_size^2, H, W] float32, rois [R, 5] float32
    trans [R, 2 * classes, part_size, part_size] float32 (absent when no_trans = 1)
    output_dim, group_size, pooled_size, part_size, sample_per_part, no_trans: int64
    spatial_scale, trans_std: float32
    output [R, output_dim, pooled_size, pooled_size] float32
    openvino_checked int64: 1 if phase 2 compared it with OpenVINO

Fixed seeds; re-running gives the same files.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "Tests", "vectors", "roi")
TOLERANCE = 1e-5
f32 = np.float32
i64 = np.int64


def save(name: str, **arrays) -> None:
    os.makedirs(OUT, exist_ok=True)
    np.savez(os.path.join(OUT, name + ".npz"), **arrays)


def load(name: str) -> dict:
    with np.load(os.path.join(OUT, name + ".npz")) as z:
        return {k: z[k] for k in z.files}


def mixed_error(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a - b) / (1 + np.abs(b)), initial=0.0))


def check(label: str, a: np.ndarray | None, b: np.ndarray) -> None:
    if a is None:
        print(f"  {label}: not compared")
        return
    err = mixed_error(a, b)
    print(f"  {label}: max mixed error {err:.2e}")
    if not err <= TOLERANCE:
        raise SystemExit(f"cross-check failed: {label}")


def random_rois(rng, count: int, batch: int, height: float, width: float, columns: int):
    """RoIs (image coordinates) mostly inside a height x width image, some spilling over."""
    x1 = rng.uniform(-0.1 * width, 0.9 * width, count)
    y1 = rng.uniform(-0.1 * height, 0.9 * height, count)
    x2 = x1 + rng.uniform(0.5, 0.6 * width, count)
    y2 = y1 + rng.uniform(0.5, 0.6 * height, count)
    boxes = np.stack([x1, y1, x2, y2], axis=1).astype(f32)
    index = rng.integers(0, batch, count)
    if columns == 4:
        return boxes, index.astype(i64)
    return np.concatenate([index[:, None].astype(f32), boxes], axis=1), None


def edge_boxes(height: float, width: float):
    """(x1, y1, x2, y2) in image coordinates: outside, tiny, zero-size, inverted, huge RoIs."""
    return np.array(
        [
            [-40, -30, -10, -5],  # fully outside, top-left
            [width + 5, height + 2, width + 40, height + 30],  # fully outside, bottom-right
            [-10, -8, 6, 5],  # partly outside
            [width - 4, height - 3, width + 20, height + 15],  # partly outside
            [3.3, 4.1, 3.4, 4.2],  # tiny
            [5, 5, 5, 5],  # zero size
            [2.5, 3.5, 2.5, 9.5],  # zero width
            [9, 8, 2, 1],  # inverted in both axes
            [-1000, -900, 3000, 2500],  # far larger than the map
            [0.5, 1.5, 2.5, 3.5],  # halves: rounding half away from zero matters
        ],
        dtype=f32,
    )


# ----------------------------------------------------------------------------- phase 1 (torch)


def phase1() -> None:
    import torch
    import torchvision

    sys.path.insert(0, HERE)
    import roi_reference

    torch.set_num_threads(1)

    def tv_align(X, rois5, out_hw, scale, sr, aligned):
        return torchvision.ops.roi_align(
            torch.from_numpy(X), torch.from_numpy(rois5), out_hw, scale, sr, aligned=aligned
        ).numpy()

    def roi_align_case(name, X, boxes, index, out_hw, scale, sr, mode_ctm):
        rois5 = np.concatenate([index[:, None].astype(f32), boxes], axis=1)
        Y = tv_align(X, rois5, out_hw, scale, sr, mode_ctm == "half_pixel")
        save(
            "roi_align_" + name, X=X, rois=boxes, batch_indices=index, mode=np.array("avg"),
            coordinate_transformation_mode=np.array(mode_ctm), output_height=i64(out_hw[0]),
            output_width=i64(out_hw[1]), sampling_ratio=i64(sr), spatial_scale=f32(scale), Y=Y,
            source=np.array("torchvision"),
        )

    print("RoiAlign (torchvision)")
    rng = np.random.default_rng(10)
    X = rng.standard_normal((2, 3, 10, 12)).astype(f32)
    boxes, index = random_rois(rng, 8, 2, 20, 24, 4)
    roi_align_case("basic_half_pixel", X, boxes, index, (3, 4), 0.5, 0, "half_pixel")
    roi_align_case("basic_output_half_pixel", X, boxes, index, (3, 4), 0.5, 0, "output_half_pixel")
    roi_align_case("sampling2_half_pixel", X, boxes, index, (2, 3), 0.5, 2, "half_pixel")
    roi_align_case("sampling3_output_half_pixel", X, boxes, index, (4, 2), 0.5, 3, "output_half_pixel")
    edges = edge_boxes(20, 24)
    # torchvision throws for a RoI inverted in one axis only with aligned=True (phase 2 has it).
    edge_index = (np.arange(len(edges)) % 2).astype(i64)
    roi_align_case("edges_half_pixel", X, edges, edge_index, (3, 3), 0.5, 0, "half_pixel")
    roi_align_case("edges_output_half_pixel", X, edges, edge_index, (3, 3), 0.5, 0, "output_half_pixel")
    roi_align_case("edges_sampling2_output_half_pixel", X, edges, edge_index, (3, 3), 0.5, 2, "output_half_pixel")
    rng = np.random.default_rng(11)
    X = rng.standard_normal((2, 2, 16, 16)).astype(f32)
    boxes, index = random_rois(rng, 1000, 2, 64, 64, 4)
    roi_align_case("many_rois", X, boxes, index, (2, 2), 0.25, 0, "half_pixel")

    print("MaxRoiPool (torchvision)")

    def max_roi_pool_case(name, X, rois5, pooled, scale):
        Y = torchvision.ops.roi_pool(torch.from_numpy(X), torch.from_numpy(rois5), pooled, scale).numpy()
        save("max_roi_pool_" + name, X=X, rois=rois5, pooled_shape=np.array(pooled, dtype=i64),
             spatial_scale=f32(scale), Y=Y)

    rng = np.random.default_rng(20)
    X = rng.standard_normal((2, 3, 10, 12)).astype(f32)
    rois5, _ = random_rois(rng, 8, 2, 20, 24, 5)
    max_roi_pool_case("basic", X, rois5, (3, 4), 0.5)
    edges = edge_boxes(10, 12)
    edge_rois = np.concatenate([(np.arange(len(edges)) % 2)[:, None].astype(f32), edges], axis=1)
    max_roi_pool_case("edges", X, edge_rois, (3, 3), 1.0)
    max_roi_pool_case("edges_scaled", X, edge_rois, (2, 5), 0.5)
    rng = np.random.default_rng(21)
    X = rng.standard_normal((2, 2, 16, 16)).astype(f32)
    rois5, _ = random_rois(rng, 1000, 2, 64, 64, 5)
    max_roi_pool_case("many_rois", X, rois5, (2, 2), 0.25)

    print("mmcv deformable RoI pooling (tools/roi_reference.py)")

    def deform_case(name, X, rois5, pooled, scale, sr, gamma, offset, mask=None):
        out = roi_reference.deform_roi_pool(X, rois5, offset, mask, pooled[0], pooled[1], scale, sr, gamma)
        extra = {}
        if offset is not None:
            extra["offset"] = offset
        if mask is not None:
            extra["mask"] = mask
        save("deform_roi_pool_" + name, input=X, rois=rois5, pooled_height=i64(pooled[0]),
             pooled_width=i64(pooled[1]), spatial_scale=f32(scale), sampling_ratio=i64(sr),
             gamma=f32(gamma), output=out, **extra)
        return out

    rng = np.random.default_rng(30)
    X = rng.standard_normal((2, 3, 10, 12)).astype(f32)
    rois5, _ = random_rois(rng, 8, 2, 20, 24, 5)
    offset = rng.uniform(-1, 1, (8, 2, 3, 4)).astype(f32)
    mask = rng.uniform(0, 1, (8, 1, 3, 4)).astype(f32)
    deform_case("basic", X, rois5, (3, 4), 0.5, 0, 0.1, offset)
    deform_case("modulated", X, rois5, (3, 4), 0.5, 0, 0.1, offset, mask)
    deform_case("sampling2_gamma03", X, rois5, (3, 4), 0.5, 2, 0.3, offset)
    zero = deform_case("zero_offset", X, rois5, (3, 4), 0.5, 0, 0.1, np.zeros_like(offset))
    deform_case("no_offset", X, rois5, (3, 4), 0.5, 0, 0.1, None)
    check("zero offsets vs torchvision roi_align aligned=True", zero, tv_align(X, rois5, (3, 4), 0.5, 0, True))
    huge = np.array([1e3, -1e4, 5e2, 1e6, -3e1, 0.0], dtype=f32)
    huge_offset = rng.choice(huge, size=(8, 2, 3, 4)).astype(f32)
    deform_case("huge_offset", X, rois5, (3, 4), 0.5, 0, 0.1, huge_offset, mask)
    edges = edge_boxes(20, 24)
    keep = [i for i, b in enumerate(edges) if not ((b[2] < b[0]) != (b[3] < b[1]))]
    edge_rois = np.concatenate([(np.arange(len(edges)) % 2)[:, None].astype(f32), edges], axis=1)[keep]
    edge_offset = rng.uniform(-1, 1, (len(keep), 2, 3, 3)).astype(f32)
    # Without the RoI far larger than the map: its adaptive grid (667 x 667 samples per bin) is too
    # slow for the Python transcription; edges_sampling2 keeps it.
    small = [i for i in range(len(keep)) if edge_rois[i, 3] - edge_rois[i, 1] < 1000]
    deform_case("edges", X, edge_rois[small], (3, 3), 0.5, 0, 0.1, edge_offset[small])
    deform_case("edges_sampling2", X, edge_rois, (3, 3), 0.5, 2, 0.1, edge_offset)
    rng = np.random.default_rng(31)
    X = rng.standard_normal((2, 2, 16, 16)).astype(f32)
    rois5, _ = random_rois(rng, 1000, 2, 64, 64, 5)
    deform_case("many_rois", X, rois5, (2, 2), 0.25, 2, 0.1,
                rng.uniform(-1, 1, (1000, 2, 2, 2)).astype(f32), rng.uniform(0, 1, (1000, 1, 2, 2)).astype(f32))

    print("MXNet deformable PS RoI pooling (tools/roi_reference.py)")

    def psroi_case(name, data, rois5, trans, output_dim, group_size, pooled_size, part_size, spp,
                   scale, trans_std):
        no_trans = trans is None
        out = roi_reference.deformable_psroi_pool(
            data, rois5, trans, no_trans, scale, output_dim, group_size, pooled_size, part_size, spp, trans_std)
        extra = {} if no_trans else {"trans": trans}
        save("deformable_psroi_pool_" + name, data=data, rois=rois5, output_dim=i64(output_dim),
             group_size=i64(group_size), pooled_size=i64(pooled_size), part_size=i64(part_size),
             sample_per_part=i64(spp), no_trans=i64(no_trans), spatial_scale=f32(scale),
             trans_std=f32(trans_std), output=out, openvino_checked=i64(0), **extra)

    rng = np.random.default_rng(40)
    data = rng.standard_normal((2, 4 * 9, 11, 13)).astype(f32)
    rois5, _ = random_rois(rng, 8, 2, 22, 26, 5)
    trans = rng.uniform(-1, 1, (8, 2, 3, 3)).astype(f32)
    psroi_case("basic", data, rois5, trans, 4, 3, 3, 3, 2, 0.5, 0.1)
    psroi_case("no_trans", data, rois5, None, 4, 3, 3, 3, 2, 0.5, 0.1)
    psroi_case("zero_trans", data, rois5, np.zeros_like(trans), 4, 3, 3, 3, 2, 0.5, 0.1)
    psroi_case("two_classes", data, rois5, rng.uniform(-1, 1, (8, 4, 3, 3)).astype(f32), 4, 3, 3, 3, 3, 0.5, 0.2)
    psroi_case("part2", data, rois5, rng.uniform(-1, 1, (8, 2, 2, 2)).astype(f32), 4, 3, 3, 2, 2, 0.5, 0.1)
    psroi_case("pooled5_group3", data, rois5, rng.uniform(-1, 1, (8, 2, 5, 5)).astype(f32), 4, 3, 5, 5, 1, 0.5, 0.1)
    huge = np.array([1e3, -1e4, 5e2, 1e6, -3e1, 0.0], dtype=f32)
    psroi_case("huge_trans", data, rois5, rng.choice(huge, size=(8, 2, 3, 3)).astype(f32), 4, 3, 3, 3, 2, 0.5, 0.1)
    edges = edge_boxes(22, 26)
    edge_rois = np.concatenate([(np.arange(len(edges)) % 2)[:, None].astype(f32), edges], axis=1)
    psroi_case("edges", data, edge_rois, rng.uniform(-1, 1, (len(edges), 2, 3, 3)).astype(f32), 4, 3, 3, 3, 2, 0.5, 0.1)
    psroi_case("edges_no_trans", data, edge_rois, None, 4, 3, 3, 3, 4, 1.0, 0.1)
    rng = np.random.default_rng(41)
    data = rng.standard_normal((2, 2 * 4, 16, 16)).astype(f32)
    rois5, _ = random_rois(rng, 1000, 2, 64, 64, 5)
    psroi_case("many_rois", data, rois5, rng.uniform(-1, 1, (1000, 2, 2, 2)).astype(f32), 2, 2, 2, 2, 1, 0.25, 0.1)

    print("phase 2 (system python3)")
    subprocess.run(["python3", os.path.abspath(__file__), "--system"], check=True)


# ----------------------------------------------------------------- phase 2 (onnx, ORT, OpenVINO)


def _roi_align_model(opset: int, **attrs):
    from onnx import TensorProto, helper

    node = helper.make_node("RoiAlign", ["X", "rois", "batch_indices"], ["Y"], **attrs)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("rois", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("batch_indices", TensorProto.INT64, None)],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def _ort(model, feeds):
    """onnxruntime's output, or None when it refuses (the error is printed)."""
    import onnxruntime as ort

    ort.set_default_logger_severity(4)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    try:
        return session.run(None, feeds)[0]
    except Exception as error:  # noqa: BLE001 - any refusal is reported, not fatal
        print("  onnxruntime refuses:", str(error).strip().splitlines()[-1][-90:])
        return None


def phase2() -> None:
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    def align_attrs(v):
        return dict(mode=str(v["mode"]), coordinate_transformation_mode=str(v["coordinate_transformation_mode"]),
                    output_height=int(v["output_height"]), output_width=int(v["output_width"]),
                    sampling_ratio=int(v["sampling_ratio"]), spatial_scale=float(v["spatial_scale"]))

    def feeds(v):
        return {"X": v["X"], "rois": v["rois"], "batch_indices": v["batch_indices"]}

    print("RoiAlign (onnx.reference, checked against onnxruntime)")
    rng = np.random.default_rng(12)
    X = rng.standard_normal((2, 3, 10, 12)).astype(f32)
    boxes, index = random_rois(rng, 8, 2, 20, 24, 4)
    edges = edge_boxes(20, 24)
    edges = np.concatenate([edges, np.array([[2, 9, 8, 3], [9, 2, 3, 8]], dtype=f32)])  # inverted in one axis
    edge_index = (np.arange(len(edges)) % 2).astype(i64)
    cases = [
        ("max_half_pixel", X, boxes, index, (3, 4), 0.5, 0, "max", "half_pixel"),
        ("max_output_half_pixel", X, boxes, index, (3, 4), 0.5, 0, "max", "output_half_pixel"),
        ("max_sampling2_half_pixel", X, boxes, index, (2, 3), 0.5, 2, "max", "half_pixel"),
        ("max_edges_half_pixel", X, edges, edge_index, (3, 3), 0.5, 0, "max", "half_pixel"),
        ("max_edges_output_half_pixel", X, edges, edge_index, (3, 3), 0.5, 0, "max", "output_half_pixel"),
        ("edges_one_axis_inverted_half_pixel", X, edges, edge_index, (3, 3), 0.5, 0, "avg", "half_pixel"),
        ("edges_one_axis_inverted_sampling2_half_pixel", X, edges, edge_index, (3, 3), 0.5, 2, "avg", "half_pixel"),
    ]
    for name, X_, boxes_, index_, out_hw, scale, sr, mode, ctm in cases:
        attrs = dict(mode=mode, coordinate_transformation_mode=ctm, output_height=out_hw[0],
                     output_width=out_hw[1], sampling_ratio=sr, spatial_scale=scale)
        model = _roi_align_model(16, **attrs)
        f = {"X": X_, "rois": boxes_, "batch_indices": index_}
        Y = ReferenceEvaluator(model).run(None, f)[0].astype(f32)
        check(f"roi_align_{name} onnx.reference vs onnxruntime", _ort(model, f), Y)
        save("roi_align_" + name, X=X_, rois=boxes_, batch_indices=index_, mode=np.array(mode),
             coordinate_transformation_mode=np.array(ctm), output_height=i64(out_hw[0]),
             output_width=i64(out_hw[1]), sampling_ratio=i64(sr), spatial_scale=f32(scale), Y=Y,
             source=np.array("onnx.reference"))

    print("torchvision vectors re-checked against onnxruntime")
    for file in sorted(os.listdir(OUT)):
        name = file[:-4]
        v = load(name)
        if name.startswith("roi_align_") and str(v["source"]) == "torchvision":
            check(f"{name} vs onnxruntime RoiAlign-16", _ort(_roi_align_model(16, **align_attrs(v)), feeds(v)), v["Y"])
            if str(v["coordinate_transformation_mode"]) == "output_half_pixel":
                a = align_attrs(v)
                del a["coordinate_transformation_mode"]
                check(f"{name} vs onnxruntime RoiAlign-10", _ort(_roi_align_model(10, **a), feeds(v)), v["Y"])
        elif name.startswith("max_roi_pool_"):
            node = helper.make_node("MaxRoiPool", ["X", "rois"], ["Y"], pooled_shape=[int(s) for s in v["pooled_shape"]],
                                    spatial_scale=float(v["spatial_scale"]))
            graph = helper.make_graph(
                [node], "g",
                [helper.make_tensor_value_info("X", TensorProto.FLOAT, None),
                 helper.make_tensor_value_info("rois", TensorProto.FLOAT, None)],
                [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
            check(f"{name} vs onnxruntime MaxRoiPool-1", _ort(model, {"X": v["X"], "rois": v["rois"]}), v["Y"])

    print("deformable PS RoI pooling vectors checked against OpenVINO")
    import openvino as ov
    import openvino.opset1 as ops

    core = ov.Core()
    for file in sorted(os.listdir(OUT)):
        name = file[:-4]
        if not name.startswith("deformable_psroi_pool_"):
            continue
        v = load(name)
        if int(v["group_size"]) != int(v["pooled_size"]):
            print(f"  {name}: group_size != pooled_size, OpenVINO cannot express it")
            continue
        if np.any(v["rois"][:, 0] < 0):
            continue  # OpenVINO's CPU plugin stops at the first negative batch index
        inputs = [v["data"], v["rois"]] + ([] if int(v["no_trans"]) else [v["trans"]])
        params = [ov.op.Parameter(ov.Type.f32, ov.Shape(list(a.shape))) for a in inputs]
        node = ops.deformable_psroi_pooling(
            params[0], params[1], output_dim=int(v["output_dim"]), spatial_scale=float(v["spatial_scale"]),
            group_size=int(v["group_size"]), mode="bilinear_deformable",
            spatial_bins_x=int(v["sample_per_part"]), spatial_bins_y=int(v["sample_per_part"]),
            trans_std=float(v["trans_std"]), part_size=int(v["part_size"]),
            offsets=None if int(v["no_trans"]) else params[2])
        compiled = core.compile_model(ov.Model([node], params), "CPU",
                                      {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1})
        check(f"{name} vs OpenVINO", compiled(inputs)[0], v["output"])
        v["openvino_checked"] = i64(1)
        save(name, **v)


if __name__ == "__main__":
    if "--system" in sys.argv:
        phase2()
    else:
        phase1()
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"{len(os.listdir(OUT))} files, {total / 1e6:.2f} MB in {OUT}")
