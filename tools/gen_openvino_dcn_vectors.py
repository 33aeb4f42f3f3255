#!/usr/bin/env python3
"""OpenVINO's DeformableConv2D outputs for tools/gen_dcn_vectors.py, which runs this under the system
python3 (OpenVINO is installed there, not in the torch venv):

    python3 tools/gen_openvino_dcn_vectors.py IN_DIR OUT_DIR

For every IN_DIR/<name>.npz (keys as in Tests/vectors/dcn, offsets already finite) it writes
OUT_DIR/<name>.npy: opset8 deformable_convolution with bilinear_interpolation_pad=False — what
OpenVINO's ONNX frontend builds for org.openvinotoolkit DeformableConv2D — compiled on CPU with
INFERENCE_PRECISION_HINT f32.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import openvino as ov
import openvino.opset8 as ops


def openvino_deformable_conv(core: ov.Core, case) -> np.ndarray:
    x = ops.parameter(case["x"].shape, np.float32, name="x")
    offset = ops.parameter(case["offset"].shape, np.float32, name="offset")
    parameters, feeds = [x, offset], [case["x"], case["offset"]]
    mask = None
    if "mask" in case:
        mask = ops.parameter(case["mask"].shape, np.float32, name="mask")
        parameters.append(mask)
        feeds.append(case["mask"])
    pads = [int(p) for p in case["pads"]]
    node = ops.deformable_convolution(
        x, offset, ops.constant(case["w"]), [int(s) for s in case["strides"]], pads[:2], pads[2:],
        [int(d) for d in case["dilations"]], mask=mask, group=int(case["group"]),
        deformable_group=int(case["offset_group"]), bilinear_interpolation_pad=False)
    compiled = core.compile_model(ov.Model([node], parameters), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32"})
    return np.asarray(compiled(feeds)[0], dtype=np.float32)


def main(in_dir: str, out_dir: str) -> None:
    core = ov.Core()
    for file in sorted(os.listdir(in_dir)):
        if not file.endswith(".npz"):
            continue
        with np.load(os.path.join(in_dir, file)) as case:
            case = dict(case)
        assert np.isfinite(case["offset"]).all(), f"{file}: OpenVINO cannot take non-finite offsets"
        np.save(os.path.join(out_dir, file[:-4] + ".npy"), openvino_deformable_conv(core, case))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
