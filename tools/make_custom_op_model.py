#!/usr/bin/env python3
"""Writes the model of the custom-operator example (numpy + onnx only):

    python3 tools/make_custom_op_model.py

examples/models/space_to_depth_custom.onnx:
    x [N,3,H,W] -> Conv 3->4 3x3 pad 1 -> com.example::SpaceToDepth2 -> Relu -> y [N,16,H/2,W/2]
com.example::SpaceToDepth2 is not an ONNX operator: examples/c/custom_op.c registers it through
the C API. It computes what ONNX SpaceToDepth(blocksize=2) does (DCR order: output channel
(dy * 2 + dx) * C + c holds input channel c at row 2h+dy, column 2w+dx), so the tests check the
example against onnxruntime running `reference_model()`, the same graph with SpaceToDepth.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(REPO, "examples", "models", "space_to_depth_custom.onnx")
SEED = 20261207


def build_model(custom: bool = True) -> onnx.ModelProto:
    rng = np.random.default_rng(SEED)
    weight = (rng.standard_normal((4, 3, 3, 3)) * 0.4).astype(np.float32)
    bias = (rng.standard_normal(4) * 0.1).astype(np.float32)
    if custom:
        middle = helper.make_node("SpaceToDepth2", ["features"], ["blocks"], domain="com.example", name="space_to_depth")
    else:
        middle = helper.make_node("SpaceToDepth", ["features"], ["blocks"], blocksize=2, name="space_to_depth")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["features"], pads=[1, 1, 1, 1], name="conv"),
         middle,
         helper.make_node("Relu", ["blocks"], ["y"], name="relu")],
        "space_to_depth_custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16, None, None])],
        [numpy_helper.from_array(weight, "conv.weight"), numpy_helper.from_array(bias, "conv.bias")])
    imports = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("com.example", 1)] if custom else [])
    model = helper.make_model(graph, opset_imports=imports, producer_name="deformrt tools/make_custom_op_model.py")
    model.ir_version = 8
    if not custom:
        onnx.checker.check_model(model)
    return model


def reference_model() -> onnx.ModelProto:
    """The same graph with ONNX SpaceToDepth in place of the custom operator."""
    return build_model(custom=False)


def example_input(n: int, h: int, w: int) -> np.ndarray:
    """The input examples/c/custom_op.c makes: x[i] = sin(0.37 i) over the flat index i."""
    return np.sin(0.37 * np.arange(n * 3 * h * w, dtype=np.float64)).astype(np.float32).reshape(n, 3, h, w)


if __name__ == "__main__":
    onnx.save(build_model(), MODEL)
    print(f"wrote {MODEL}")
