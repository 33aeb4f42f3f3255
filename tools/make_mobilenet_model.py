#!/usr/bin/env python3
"""MobileNetV2 (Sandler et al. 2018) and MobileNetV3-Large (Howard et al. 2019), width 1.0, built
with onnx.helper the way torch.onnx.export writes torchvision's models in eval mode before any
fusion: Conv, BatchNormalization (unfused), GlobalAveragePool, Flatten, Gemm, and
- MobileNetV2: ReLU6 as Clip(0, 6); inverted residual blocks (1x1 expansion, depthwise 3x3, 1x1
  projection, residual Add when the stride is 1 and the widths match);
- MobileNetV3-Large: HardSwish and Relu; 3x3 and 5x5 depthwise convolutions; squeeze-and-excite
  (GlobalAveragePool, 1x1 Conv + Relu, 1x1 Conv, HardSigmoid(1/6, 0.5), Mul); a classifier of
  Gemm, HardSwish, Gemm.

    python3 tools/make_mobilenet_model.py out.onnx [--variant v2|v3_large] [--seed 0] [--classes 1000]

bench/models.py (`--models mobilenet_v2,mobilenet_v3_large`, group `mobile`) builds them for the
whole-network table. Weights are random (seeded, He-scaled, batch statistics near identity so
activations stay O(1)): the models measure the arithmetic, not accuracy.
"""
from __future__ import annotations

import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# (expansion t, output channels c, repeats n, first stride s), the paper's Table 2.
INVERTED_RESIDUALS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                      (6, 160, 3, 2), (6, 320, 1, 1))


class _Builder:
    """Initializers and nodes of one model, with its seeded weights."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.inits, self.nodes = [], []

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op, inputs, output, name=None, **attributes):
        self.nodes.append(helper.make_node(op, inputs, [output], name=name or output, **attributes))
        return output

    def conv_bn(self, x, name, cin, cout, kernel, stride=1, group=1):
        """Conv (no bias) and BatchNormalization, as torchvision's Conv2dNormActivation."""
        fan_in = cin // group * kernel * kernel
        w = self.const(f"{name}.weight", (self.rng.standard_normal((cout, cin // group, kernel, kernel))
                                          * np.sqrt(2.0 / fan_in)).astype(np.float32))
        self.node("Conv", [x, w], f"{name}.conv", group=group, kernel_shape=[kernel, kernel],
                  strides=[stride, stride], pads=[kernel // 2] * 4)
        bn = [self.const(f"{name}.bn.{field}", value.astype(np.float32)) for field, value in (
            ("scale", 1 + 0.1 * self.rng.standard_normal(cout)), ("bias", 0.1 * self.rng.standard_normal(cout)),
            ("mean", 0.1 * self.rng.standard_normal(cout)), ("var", 1 + 0.1 * self.rng.random(cout)))]
        return self.node("BatchNormalization", [f"{name}.conv"] + bn, f"{name}.bn")

    def conv_bias(self, x, name, cin, cout):
        """A 1x1 Conv with a bias (squeeze-and-excite's two)."""
        w = self.const(f"{name}.weight", (self.rng.standard_normal((cout, cin, 1, 1))
                                          * np.sqrt(2.0 / cin)).astype(np.float32))
        b = self.const(f"{name}.bias", (0.1 * self.rng.standard_normal(cout)).astype(np.float32))
        return self.node("Conv", [x, w, b], name, kernel_shape=[1, 1])

    def linear(self, x, name, cin, cout):
        w = self.const(f"{name}.weight", (self.rng.standard_normal((cout, cin)) / np.sqrt(cin)).astype(np.float32))
        b = self.const(f"{name}.bias", (0.01 * self.rng.standard_normal(cout)).astype(np.float32))
        return self.node("Gemm", [x, w, b], name, transB=1)

    def model(self, graph_name, classes, opset):
        graph = helper.make_graph(self.nodes, graph_name,
                                  [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "height", "width"])],
                                  [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="deformrt-tools")
        onnx.checker.check_model(model)
        return model


def build_mobilenet_v2(seed: int = 0, classes: int = 1000, opset: int = 17) -> onnx.ModelProto:
    """Input `image` [N, 3, H, W] (H and W dynamic), output `logits` [N, classes]."""
    b = _Builder(seed)
    b.const("relu6.min", np.array(0, np.float32))
    b.const("relu6.max", np.array(6, np.float32))

    def conv_bn(x, name, cin, cout, kernel, stride=1, group=1, relu6=True):
        y = b.conv_bn(x, name, cin, cout, kernel, stride, group)
        return b.node("Clip", [y, "relu6.min", "relu6.max"], f"{name}.relu6") if relu6 else y

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
                y = b.node("Add", [x, y], f"{name}.add")
            x, cin, index = y, c, index + 1
    x = conv_bn(x, f"features.{index}", cin, 1280, 1)
    b.node("GlobalAveragePool", [x], "pool")
    b.node("Flatten", ["pool"], "flat", name="flatten", axis=1)
    b.linear("flat", "classifier", 1280, classes)
    b.nodes[-1].output[0] = "logits"
    return b.model("mobilenet_v2", classes, opset)


# (kernel, expanded channels, output channels, squeeze-and-excite, activation, stride): the
# paper's Table 1 (MobileNetV3-Large), as torchvision's _mobilenet_v3_conf.
V3_LARGE = ((3, 16, 16, False, "RE", 1), (3, 64, 24, False, "RE", 2), (3, 72, 24, False, "RE", 1),
            (5, 72, 40, True, "RE", 2), (5, 120, 40, True, "RE", 1), (5, 120, 40, True, "RE", 1),
            (3, 240, 80, False, "HS", 2), (3, 200, 80, False, "HS", 1), (3, 184, 80, False, "HS", 1),
            (3, 184, 80, False, "HS", 1), (3, 480, 112, True, "HS", 1), (3, 672, 112, True, "HS", 1),
            (5, 672, 160, True, "HS", 2), (5, 960, 160, True, "HS", 1), (5, 960, 160, True, "HS", 1))


def _divisible_by_8(value: float) -> int:
    """torchvision's _make_divisible(value, 8): nearest multiple of 8, never 10% below value."""
    rounded = max(8, int(value + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * value else rounded


def build_mobilenet_v3_large(seed: int = 0, classes: int = 1000, opset: int = 17) -> onnx.ModelProto:
    """Input `image` [N, 3, H, W] (H and W dynamic), output `logits` [N, classes]."""
    b = _Builder(seed)

    def activation(x, kind):
        return b.node("Relu", [x], f"{x}.relu") if kind == "RE" else b.node("HardSwish", [x], f"{x}.hardswish")

    x = activation(b.conv_bn("image", "features.0", 3, 16, 3, stride=2), "HS")
    cin = 16
    for index, (kernel, hidden, c, excite, kind, stride) in enumerate(V3_LARGE, start=1):
        name = f"features.{index}"
        y = x if hidden == cin else activation(b.conv_bn(x, f"{name}.expand", cin, hidden, 1), kind)
        y = activation(b.conv_bn(y, f"{name}.depthwise", hidden, hidden, kernel, stride, group=hidden), kind)
        if excite:
            squeeze = _divisible_by_8(hidden // 4)
            s = b.node("GlobalAveragePool", [y], f"{name}.se.pool")
            s = b.node("Relu", [b.conv_bias(s, f"{name}.se.fc1", hidden, squeeze)], f"{name}.se.relu")
            s = b.node("HardSigmoid", [b.conv_bias(s, f"{name}.se.fc2", squeeze, hidden)], f"{name}.se.gate",
                       alpha=1.0 / 6, beta=0.5)
            y = b.node("Mul", [y, s], f"{name}.se.scale")
        y = b.conv_bn(y, f"{name}.project", hidden, c, 1)
        if stride == 1 and cin == c:
            y = b.node("Add", [x, y], f"{name}.add")
        x, cin = y, c
    x = activation(b.conv_bn(x, "features.16", cin, 960, 1), "HS")
    b.node("GlobalAveragePool", [x], "pool")
    b.node("Flatten", ["pool"], "flat", name="flatten", axis=1)
    x = activation(b.linear("flat", "classifier.0", 960, 1280), "HS")
    b.linear(x, "classifier.3", 1280, classes)
    b.nodes[-1].output[0] = "logits"
    return b.model("mobilenet_v3_large", classes, opset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--variant", choices=("v2", "v3_large"), default="v2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classes", type=int, default=1000)
    args = parser.parse_args()
    build = build_mobilenet_v2 if args.variant == "v2" else build_mobilenet_v3_large
    onnx.save(build(args.seed, args.classes), args.out)


if __name__ == "__main__":
    main()
