#!/usr/bin/env python3
"""MobileNetV2 (Sandler et al. 2018, width 1.0) built with onnx.helper the way torch.onnx.export
writes torchvision's model in eval mode before any fusion: Conv, BatchNormalization (unfused),
ReLU6 as Clip(0, 6), inverted residual blocks (1x1 expansion, depthwise 3x3, 1x1 projection,
residual Add when the stride is 1 and the widths match), GlobalAveragePool, Flatten, Gemm.

    python3 tools/make_mobilenet_model.py out.onnx [--seed 0] [--classes 1000]

bench/models.py (`--models mobilenet_v2`) builds it for the whole-network table. Weights are
random (seeded, He-scaled, batch statistics near identity so activations stay O(1)): the model
measures the arithmetic, not accuracy.
"""
from __future__ import annotations

import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# (expansion t, output channels c, repeats n, first stride s), the paper's Table 2.
INVERTED_RESIDUALS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                      (6, 160, 3, 2), (6, 320, 1, 1))


def build_mobilenet_v2(seed: int = 0, classes: int = 1000, opset: int = 17) -> onnx.ModelProto:
    """Input `image` [N, 3, H, W] (H and W dynamic), output `logits` [N, classes]."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    const("relu6.min", np.array(0, np.float32))
    const("relu6.max", np.array(6, np.float32))

    def conv_bn(x, name, cin, cout, kernel, stride=1, group=1, relu6=True):
        fan_in = cin // group * kernel * kernel
        w = const(f"{name}.weight", (rng.standard_normal((cout, cin // group, kernel, kernel))
                                     * np.sqrt(2.0 / fan_in)).astype(np.float32))
        nodes.append(helper.make_node("Conv", [x, w], [f"{name}.conv"], name=f"{name}.conv", group=group,
                                      kernel_shape=[kernel, kernel], strides=[stride, stride],
                                      pads=[kernel // 2] * 4))
        bn = [const(f"{name}.bn.{field}", value.astype(np.float32)) for field, value in (
            ("scale", 1 + 0.1 * rng.standard_normal(cout)), ("bias", 0.1 * rng.standard_normal(cout)),
            ("mean", 0.1 * rng.standard_normal(cout)), ("var", 1 + 0.1 * rng.random(cout)))]
        nodes.append(helper.make_node("BatchNormalization", [f"{name}.conv"] + bn, [f"{name}.bn"], name=f"{name}.bn"))
        if not relu6:
            return f"{name}.bn"
        nodes.append(helper.make_node("Clip", [f"{name}.bn", "relu6.min", "relu6.max"], [f"{name}.relu6"],
                                      name=f"{name}.relu6"))
        return f"{name}.relu6"

    x = conv_bn("image", "features.0", 3, 32, 3, stride=2)
    cin, index = 32, 1
    for t, c, n, s in INVERTED_RESIDUALS:
        for repeat in range(n):
            stride = s if repeat == 0 else 1
            name, hidden = f"features.{index}", cin * t
            y = x if t == 1 else conv_bn(x, f"{name}.expand", cin, hidden, 1)
            y = conv_bn(y, f"{name}.depthwise", hidden, hidden, 3, stride=stride, group=hidden)
            y = conv_bn(y, f"{name}.project", hidden, c, 1, relu6=False)
            if stride == 1 and cin == c:
                nodes.append(helper.make_node("Add", [x, y], [f"{name}.add"], name=f"{name}.add"))
                y = f"{name}.add"
            x, cin, index = y, c, index + 1
    x = conv_bn(x, f"features.{index}", cin, 1280, 1)
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool"], name="pool"))
    nodes.append(helper.make_node("Flatten", ["pool"], ["flat"], name="flatten", axis=1))
    fc_w = const("classifier.weight", (rng.standard_normal((classes, 1280)) / np.sqrt(1280)).astype(np.float32))
    fc_b = const("classifier.bias", (0.01 * rng.standard_normal(classes)).astype(np.float32))
    nodes.append(helper.make_node("Gemm", ["flat", fc_w, fc_b], ["logits"], name="classifier", transB=1))
    graph = helper.make_graph(nodes, "mobilenet_v2",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "height", "width"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="deformrt-tools")
    onnx.checker.check_model(model)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classes", type=int, default=1000)
    args = parser.parse_args()
    onnx.save(build_mobilenet_v2(args.seed, args.classes), args.out)


if __name__ == "__main__":
    main()
