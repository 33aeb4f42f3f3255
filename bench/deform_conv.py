#!/usr/bin/env python3
"""Deformable convolution layers a-e of issue 3, batch 1, fp32, offsets U(-5, 5), masks U(0, 1):
DeformRT vs onnxruntime (ai.onnx DeformConv 19) vs OpenVINO (opset8 DeformableConvolution,
bilinear_interpolation_pad=True) vs torchvision, plus DeformRT's own plain Conv of the same shape
computed by the direct sums the deformable kernel shares (DEFORMRT_WINOGRAD=0: the "deform / own
Conv" column is the cost of sampling; bench/conv.py times the plain layers with Winograd).

    python3 bench/deform_conv.py                     # all layers, 1 and 2 threads
    python3 bench/deform_conv.py --threads 2 --layers a,d --runs 30
    python3 bench/deform_conv.py --quick             # smoke test
    python3 bench/deform_conv.py --torch-python ''   # without torchvision

Each system runs in its own process with the same thread count; see bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, Mapping

import numpy as np

import _common
from _common import Layer, System

LAYERS = {layer.name: layer for layer in [
    Layer("a", 64, 64, 128, 128, mask=True, seed=201),
    Layer("b", 256, 256, 64, 64, mask=True, seed=202),
    Layer("c", 512, 512, 32, 32, seed=203),
    Layer("d", 256, 256, 64, 64, mask=True, offset_group=4, seed=204),
    Layer("e", 512, 512, 32, 32, pad=2, dilation=2, seed=205),
]}
SYSTEMS = ["deformrt", "deformrt-conv", "onnxruntime", "openvino", "torchvision"]
OFFSET_RANGE = 5.0
TOLERANCE = 1e-3


def deform_tensors(layer: Layer) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(layer.seed)
    tensors = _common.conv_tensors(layer, rng)
    taps = layer.kernel * layer.kernel
    spatial = (layer.output_height, layer.output_width)
    tensors["offset"] = rng.uniform(-OFFSET_RANGE, OFFSET_RANGE,
                                    (1, layer.offset_group * 2 * taps, *spatial)).astype(np.float32)
    if layer.mask:
        tensors["mask"] = rng.uniform(0.0, 1.0, (1, layer.offset_group * taps, *spatial)).astype(np.float32)
    return tensors


def feeds_of(tensors: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    return {name: tensors[name] for name in ("x", "offset", "mask") if name in tensors}


def onnx_deform_model(layer: Layer, tensors: Mapping[str, np.ndarray]) -> bytes:
    """One ai.onnx DeformConv (opset 19): x, offset[, mask] inputs; weight and bias initializers."""
    from onnx import TensorProto, helper, numpy_helper

    inputs = ["x", "weight", "offset", "bias"] + (["mask"] if layer.mask else [])
    node = helper.make_node(
        "DeformConv", inputs, ["y"],
        kernel_shape=[layer.kernel, layer.kernel], pads=[layer.pad] * 4, dilations=[layer.dilation] * 2,
        strides=[layer.stride] * 2, group=1, offset_group=layer.offset_group)
    graph = helper.make_graph(
        [node], "deform_conv",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(array.shape))
         for name, array in feeds_of(tensors).items()],
        [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, layer.out_channels, layer.output_height, layer.output_width])],
        [numpy_helper.from_array(tensors["weight"], "weight"), numpy_helper.from_array(tensors["bias"], "bias")])
    return _common.finish_onnx_model(graph)


def openvino_deform_model(layer: Layer, tensors: Mapping[str, np.ndarray]):
    """Built directly: OpenVINO's ONNX reader has no DeformConv. bilinear_interpolation_pad=True is
    the border rule of ONNX and torchvision."""
    import openvino as ov
    from openvino import opset8

    parameters = {name: opset8.parameter(list(array.shape), np.float32, name=name)
                  for name, array in feeds_of(tensors).items()}
    deform = opset8.deformable_convolution(
        parameters["x"], parameters["offset"], opset8.constant(tensors["weight"]),
        strides=[layer.stride] * 2, pads_begin=[layer.pad] * 2, pads_end=[layer.pad] * 2,
        dilations=[layer.dilation] * 2, mask=parameters.get("mask"), group=1,
        deformable_group=layer.offset_group, bilinear_interpolation_pad=True)
    y = opset8.add(deform, opset8.constant(tensors["bias"].reshape(1, -1, 1, 1)))
    return ov.Model([y], list(parameters.values()), "deform_conv")


def torchvision_runner(layer: Layer, tensors: Mapping[str, np.ndarray], threads: int) -> _common.Runner:
    import torch
    import torchvision

    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != 1:  # settable once per process, before any parallel work
        torch.set_num_interop_threads(1)
    x, weight, bias, offset = (torch.from_numpy(tensors[name]) for name in ("x", "weight", "bias", "offset"))
    mask = torch.from_numpy(tensors["mask"]) if layer.mask else None

    def run():
        with torch.inference_mode():
            return torchvision.ops.deform_conv2d(
                x, offset, weight, bias, stride=layer.stride, padding=layer.pad, dilation=layer.dilation,
                mask=mask)
    return run


def prepare(system: str, name: str, threads: int):
    layer = LAYERS[name]
    tensors = deform_tensors(layer)
    feeds = feeds_of(tensors)
    if system == "deformrt":
        model = onnx_deform_model(layer, tensors)
        return _common.deformrt_runner(model, feeds, threads), model, feeds
    if system == "deformrt-conv":
        # Read when the first convolution is planned, in this worker process only.
        os.environ["DEFORMRT_WINOGRAD"] = "0"
        conv_feeds = {"x": tensors["x"]}
        model = _common.onnx_conv_model(layer, tensors)
        return _common.deformrt_runner(model, conv_feeds, threads), model, conv_feeds
    if system == "onnxruntime":
        model = onnx_deform_model(layer, tensors)
        return _common.onnxruntime_runner(model, feeds, threads), model, feeds
    if system == "openvino":
        return _common.openvino_runner(openvino_deform_model(layer, tensors), feeds, threads), None, feeds
    if system == "torchvision":
        return torchvision_runner(layer, tensors, threads), None, feeds
    raise SystemExit(f"unknown worker {system}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_arguments(parser, list(LAYERS), SYSTEMS)
    parser.add_argument("--torch-python", metavar="PYTHON",
                        help=f"interpreter with torch and torchvision (default {_common.DEFAULT_TORCH_PYTHON} "
                             "if it exists, else this one if it has them; '' skips torchvision)")
    args = parser.parse_args()
    _common.resolve_counts(args)
    if args.worker:
        _common.work(args, prepare)
        return 0

    torch_python = _common.torch_python(args.torch_python)
    systems = [
        System("deformrt", "DeformRT", sys.executable, peer=False, deformrt=True),
        System("deformrt-conv", "DeformRT Conv", sys.executable, peer=False, deformrt=True),
        _common.python_system("onnxruntime", "onnxruntime", "onnxruntime"),
        _common.python_system("openvino", "OpenVINO", "openvino"),
        System("torchvision", "torchvision", torch_python, peer=True,
               skipped=None if torch_python else "no interpreter with torch and torchvision (--torch-python)"),
    ]
    return _common.drive(args, __file__, LAYERS, systems,
                         title="Deformable 3x3 conv, offsets U(-5, 5) (bench/deform_conv.py)",
                         own_conv="deformrt-conv", tolerance=TOLERANCE)


if __name__ == "__main__":
    sys.exit(main())
