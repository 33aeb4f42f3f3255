#!/usr/bin/env python3
"""Plain 3x3 convolution (pad 1), batch 1, fp32: DeformRT vs onnxruntime vs OpenVINO.

    python3 bench/conv.py                       # all layers, 1 and 2 threads
    python3 bench/conv.py --threads 2 --layers b --runs 30
    python3 bench/conv.py --quick               # smoke test

Each system runs in its own process with the same thread count; see bench/README.md.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import _common
from _common import Layer, System

LAYERS = {layer.name: layer for layer in [
    Layer("a", 64, 64, 128, 128, seed=101),
    Layer("b", 256, 256, 64, 64, seed=102),
    Layer("c", 512, 512, 32, 32, seed=103),
]}
SYSTEMS = ["deformrt", "onnxruntime", "openvino"]


def prepare(system: str, name: str, threads: int):
    layer = LAYERS[name]
    tensors = _common.conv_tensors(layer, np.random.default_rng(layer.seed))
    feeds = {"x": tensors["x"]}
    if system == "deformrt":
        model = _common.onnx_conv_model(layer, tensors)
        return _common.deformrt_runner(model, feeds, threads), model, feeds
    if system == "onnxruntime":
        model = _common.onnx_conv_model(layer, tensors)
        return _common.onnxruntime_runner(model, feeds, threads), model, feeds
    if system == "openvino":
        return _common.openvino_runner(_common.openvino_conv_model(layer, tensors), feeds, threads), None, feeds
    raise SystemExit(f"unknown worker {system}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_arguments(parser, list(LAYERS), SYSTEMS)
    args = parser.parse_args()
    _common.resolve_counts(args)
    if args.worker:
        _common.work(args, prepare)
        return 0

    systems = [
        System("deformrt", "DeformRT", sys.executable, peer=False, deformrt=True),
        _common.python_system("onnxruntime", "onnxruntime", "onnxruntime"),
        _common.python_system("openvino", "OpenVINO", "openvino"),
    ]
    return _common.drive(args, __file__, LAYERS, systems, title="Plain 3x3 Conv, pad 1 (bench/conv.py)")


if __name__ == "__main__":
    sys.exit(main())
