#!/usr/bin/env python3
"""Writes a small DBNet-style text detector (numpy + onnx.helper only, no torch), the way
torch.onnx.export and paddle2onnx write PP-OCR's and MhLiao's DBNet:

    python3 tools/make_dbnet_model.py --out build/models/dbnet_small.onnx [--width 16] [--seed 0]

Layout (opset 17, float32; input "image" [N, 3, H, W] with N, H, W dynamic, H and W multiples of
32; output "maps" [N, 1, H, W] probabilities):
    backbone  stem Conv 3x3 s2 -> BN -> Relu, then four stages (Conv 3x3 s2 -> BN -> Relu ->
              Conv 3x3 -> BN -> residual Add -> Relu) giving C2..C5 at 1/4 .. 1/32 (the first
              stage also pools: MaxPool 3x3 s2 p1, as ResNet's stem).
    neck      DBFPN: 1x1 Conv (no bias) of each of C2..C5 to `inner` channels; top-down
              in4 + Resize(in5, x2 nearest), in3 + Resize(.., x2), in2 + Resize(.., x2); a 3x3 Conv
              (inner -> inner/4) on each level, upsampled x8 / x4 / x2 (nearest, scales input, as
              paddle2onnx writes it; one level bilinear with sizes, as torch's F.interpolate
              writes it), Concat on channels.
    head      DBHead binarize branch: Conv 3x3 (no bias) -> BN -> Relu -> ConvTranspose 2x2 s2 ->
              BN -> Relu -> ConvTranspose 2x2 s2 -> Sigmoid.
Weights are He-initialised with fixed seeds (the last ConvTranspose scaled by 0.15);
BatchNormalization statistics random but sane, so the logits are O(1) (std ~2) and the sigmoid
output is not saturated.
"""
from __future__ import annotations

import argparse
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class Builder:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []
        self.count = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}_{self.count}"

    def const(self, prefix: str, value: np.ndarray) -> str:
        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list, prefix: str | None = None, **attrs) -> str:
        out = self.name(prefix or op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, bias: bool = False) -> str:
        w = (self.rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype(np.float32)
        inputs = [x, self.const("w", w)]
        if bias:
            inputs.append(self.const("b", (self.rng.standard_normal(cout) * 0.1).astype(np.float32)))
        p = k // 2
        return self.node("Conv", inputs, "conv", kernel_shape=[k, k], strides=[stride, stride], pads=[p, p, p, p])

    def bn(self, x: str, c: int, gamma_scale: float = 1.0) -> str:
        r = self.rng
        params = [(r.uniform(0.5, 1.5, c) * gamma_scale), r.normal(0, 0.1, c), r.normal(0, 0.1, c), r.uniform(0.5, 1.5, c)]
        return self.node("BatchNormalization", [x] + [self.const("bn", p.astype(np.float32)) for p in params], "bn",
                         epsilon=1e-5)

    def conv_bn_relu(self, x: str, cin: int, cout: int, k: int, stride: int = 1) -> str:
        return self.node("Relu", [self.bn(self.conv(x, cin, cout, k, stride), cout)])

    def deconv(self, x: str, cin: int, cout: int, bias: bool, gain: float = 1.0) -> str:
        w = (self.rng.standard_normal((cin, cout, 2, 2)) * gain * np.sqrt(2.0 / cin)).astype(np.float32)
        inputs = [x, self.const("w", w)]
        if bias:
            inputs.append(self.const("b", (self.rng.standard_normal(cout) * 0.1).astype(np.float32)))
        return self.node("ConvTranspose", inputs, "deconv", kernel_shape=[2, 2], strides=[2, 2])

    def upsample_scales(self, x: str, factor: int) -> str:
        scales = self.const("scales", np.array([1, 1, factor, factor], np.float32))
        return self.node("Resize", [x, "", scales], "up", mode="nearest", coordinate_transformation_mode="asymmetric",
                         nearest_mode="floor")

    def upsample_sizes_like(self, x: str, like: str) -> str:
        # torch's F.interpolate(x, size=like.shape[2:], mode="bilinear"): Shape -> Slice -> Concat.
        shape_x, shape_like = self.node("Shape", [x]), self.node("Shape", [like])
        start, end, mid = self.const("i", np.array([0], np.int64)), self.const("i", np.array([2], np.int64)), \
            self.const("i", np.array([4], np.int64))
        nc = self.node("Slice", [shape_x, start, end])
        hw = self.node("Slice", [shape_like, end, mid])
        sizes = self.node("Concat", [nc, hw], axis=0)
        return self.node("Resize", [x, "", "", sizes], "up", mode="linear", coordinate_transformation_mode="half_pixel")


def build(seed: int = 0, width: int = 16, inner: int = 32) -> onnx.ModelProto:
    b = Builder(seed)
    x = b.conv_bn_relu("image", 3, width, 3, stride=2)                       # 1/2
    x = b.node("MaxPool", [x], "pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])  # 1/4
    features, cin = [], width
    for stage, (cout, stride) in enumerate([(width, 1), (2 * width, 2), (4 * width, 2), (8 * width, 2)]):
        y = b.conv_bn_relu(x, cin, cout, 3, stride)
        y = b.bn(b.conv(y, cout, cout, 3), cout, gamma_scale=0.5)
        shortcut = x if (cin == cout and stride == 1) else b.bn(b.conv(x, cin, cout, 1, stride), cout)
        x = b.node("Relu", [b.node("Add", [y, shortcut])])
        features.append((x, cout))
        cin = cout
    (c2, n2), (c3, n3), (c4, n4), (c5, n5) = features
    in2, in3, in4, in5 = (b.conv(c, n, inner, 1) for c, n in [(c2, n2), (c3, n3), (c4, n4), (c5, n5)])
    out4 = b.node("Add", [in4, b.upsample_scales(in5, 2)])
    out3 = b.node("Add", [in3, b.upsample_scales(out4, 2)])
    out2 = b.node("Add", [in2, b.upsample_sizes_like(out3, in2)])
    q = inner // 4
    p5 = b.upsample_scales(b.conv(in5, inner, q, 3), 8)
    p4 = b.upsample_scales(b.conv(out4, inner, q, 3), 4)
    p3 = b.upsample_scales(b.conv(out3, inner, q, 3), 2)
    p2 = b.conv(out2, inner, q, 3)
    fuse = b.node("Concat", [p5, p4, p3, p2], "fuse", axis=1)
    h = b.conv_bn_relu(fuse, inner, q, 3)
    h = b.node("Relu", [b.bn(b.deconv(h, q, q, bias=True), q)])
    # A small last layer keeps the logits O(1): the probabilities spread over (0, 1), not saturated.
    h = b.deconv(h, q, 1, bias=True, gain=0.15)
    b.nodes.append(helper.make_node("Sigmoid", [h], ["maps"], name="sigmoid"))
    graph = helper.make_graph(
        b.nodes, "dbnet_small", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("maps", TensorProto.FLOAT, ["N", 1, "H", "W"])], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="make_dbnet_model")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("build/models/dbnet_small.onnx"))
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--inner", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(build(args.seed, args.width, args.inner), args.out)
    print(args.out)


if __name__ == "__main__":
    main()
