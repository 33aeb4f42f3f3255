#!/usr/bin/env python3
"""A CRNN-style text recogniser built with onnx.helper, the way CRNN / PP-OCR recognisers export:
a small convolution stack over a grey text line, the feature map's height pooled away, the width
turned into the time axis (Reshape + Transpose), a bidirectional LSTM, a per-step classifier
(MatMul + Add) and Softmax over the characters.

    python3 tools/make_crnn_model.py out.onnx [--seed 0] [--classes 37] [--hidden 48]

Tests/python/test_recurrent.py imports `build_crnn` and compares DeformRT with onnxruntime on it.
Weights are random (seeded): the test checks the arithmetic, not recognition accuracy.
"""
from __future__ import annotations

import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build_crnn(seed: int = 0, classes: int = 37, hidden: int = 48, channels=(16, 32, 48),
               image_height: int = 32, layout: int = 0, opset: int = 17) -> onnx.ModelProto:
    """Input `image` [N, 1, 32, W] (W dynamic), output `probs` [T, N, classes] (T = W / 4)."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def conv_block(x, cin, cout, idx, pool):
        w = const(f"conv{idx}.w", (rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2.0 / (cin * 9))).astype(np.float32))
        b = const(f"conv{idx}.b", (rng.standard_normal(cout) * 0.1).astype(np.float32))
        nodes.append(helper.make_node("Conv", [x, w, b], [f"conv{idx}"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]))
        scale = const(f"bn{idx}.scale", (1 + 0.1 * rng.standard_normal(cout)).astype(np.float32))
        bias = const(f"bn{idx}.bias", (0.1 * rng.standard_normal(cout)).astype(np.float32))
        mean = const(f"bn{idx}.mean", (0.1 * rng.standard_normal(cout)).astype(np.float32))
        var = const(f"bn{idx}.var", (1 + 0.1 * rng.random(cout)).astype(np.float32))
        nodes.append(helper.make_node("BatchNormalization", [f"conv{idx}", scale, bias, mean, var], [f"bn{idx}"]))
        nodes.append(helper.make_node("Relu", [f"bn{idx}"], [f"relu{idx}"]))
        if pool is None:
            return f"relu{idx}"
        nodes.append(helper.make_node("MaxPool", [f"relu{idx}"], [f"pool{idx}"], kernel_shape=list(pool), strides=list(pool)))
        return f"pool{idx}"

    c1, c2, c3 = channels
    x = conv_block("image", 1, c1, 1, (2, 2))          # H/2, W/2
    x = conv_block(x, c1, c2, 2, (2, 2))               # H/4, W/4
    x = conv_block(x, c2, c3, 3, (image_height // 4, 1))  # height pooled to 1
    # [N, C, 1, T] -> [N, C, T] -> [T, N, C] (layout 0) or [N, T, C] (layout 1)
    nodes.append(helper.make_node("Squeeze", [x, const("axes2", np.array([2], np.int64))], ["seq_nct"]))
    nodes.append(helper.make_node("Transpose", ["seq_nct"], ["seq"], perm=[2, 0, 1] if layout == 0 else [0, 2, 1]))
    scale = 1 / np.sqrt(hidden)
    w = const("lstm.W", (rng.uniform(-scale, scale, (2, 4 * hidden, c3))).astype(np.float32))
    r = const("lstm.R", (rng.uniform(-scale, scale, (2, 4 * hidden, hidden))).astype(np.float32))
    b = const("lstm.B", (rng.uniform(-scale, scale, (2, 8 * hidden))).astype(np.float32))
    nodes.append(helper.make_node("LSTM", ["seq", w, r, b], ["lstm_y"], hidden_size=hidden,
                                  direction="bidirectional", layout=layout))
    # Y [T, 2, N, H] -> [T, N, 2, H] -> [T, N, 2H]  (layout 1: [N, T, 2, H] -> [N, T, 2H] -> [T, N, 2H])
    if layout == 0:
        nodes.append(helper.make_node("Transpose", ["lstm_y"], ["lstm_t"], perm=[0, 2, 1, 3]))
        nodes.append(helper.make_node("Reshape", ["lstm_t", const("shape3", np.array([0, 0, -1], np.int64))], ["features"]))
    else:
        nodes.append(helper.make_node("Reshape", ["lstm_y", const("shape3", np.array([0, 0, -1], np.int64))], ["features_ntc"]))
        nodes.append(helper.make_node("Transpose", ["features_ntc"], ["features"], perm=[1, 0, 2]))
    fc_w = const("fc.w", (rng.standard_normal((2 * hidden, classes)) / np.sqrt(2 * hidden)).astype(np.float32))
    fc_b = const("fc.b", (0.1 * rng.standard_normal(classes)).astype(np.float32))
    nodes.append(helper.make_node("MatMul", ["features", fc_w], ["logits_nb"]))
    nodes.append(helper.make_node("Add", ["logits_nb", fc_b], ["logits"]))
    nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=-1))

    graph = helper.make_graph(
        nodes, "crnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, image_height, "W"])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["T", "N", classes])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classes", type=int, default=37)
    parser.add_argument("--hidden", type=int, default=48)
    parser.add_argument("--layout", type=int, default=0, choices=[0, 1])
    args = parser.parse_args()
    onnx.save(build_crnn(args.seed, args.classes, args.hidden, layout=args.layout), args.output)


if __name__ == "__main__":
    main()
