#!/usr/bin/env python3
"""Writes the bundled example model and its input (fixed random weights; numpy + onnx only):

    python3 tools/make_example_model.py

examples/models/tiny_dcn.onnx, a tiny classifier with one modulated deformable convolution:
    image [1,3,32,32] -> Conv 3->8 3x3 pad 1 -> Relu -> Conv 8->27 3x3 pad 1 -> Split [18 offset, 9 mask]
    -> Sigmoid(mask) -> DeformConv 8->16 3x3 pad 1 (ai.onnx opset 19) -> Relu -> GlobalAveragePool
    -> Flatten -> Gemm 16->10 -> Softmax -> probabilities [1,10]
examples/models/tiny_dcn_input.npy, a fixed random image for it.

If onnxruntime is installed, the script runs the model with it and prints the top-3 classes.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_DIR = os.path.join(REPO, "examples", "models")
SEED = 20240519


def he(rng: np.random.Generator, shape, gain: float = 1.0) -> np.ndarray:
    fan_in = int(np.prod(shape[1:]))
    return (rng.standard_normal(shape) * gain * np.sqrt(2.0 / fan_in)).astype(np.float32)


def build_model(rng: np.random.Generator) -> onnx.ModelProto:
    params = {
        "stem.weight": he(rng, (8, 3, 3, 3)),
        "stem.bias": (rng.standard_normal(8) * 0.1).astype(np.float32),
        # Offsets of about +-1 pixel and masks spread around 0.5: the deformation visibly matters.
        "offset_mask.weight": he(rng, (27, 8, 3, 3), gain=1.5),
        "offset_mask.bias": (rng.standard_normal(27) * 0.2).astype(np.float32),
        "offset_mask.split": np.array([18, 9], np.int64),
        "dcn.weight": he(rng, (16, 8, 3, 3)),
        "dcn.bias": (rng.standard_normal(16) * 0.1).astype(np.float32),
        "fc.weight": he(rng, (10, 16), gain=4.0),
        "fc.bias": (rng.standard_normal(10) * 0.1).astype(np.float32),
    }
    conv = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1], dilations=[1, 1], group=1)
    nodes = [
        helper.make_node("Conv", ["image", "stem.weight", "stem.bias"], ["stem"], name="stem", **conv),
        helper.make_node("Relu", ["stem"], ["stem.relu"], name="stem.relu"),
        helper.make_node("Conv", ["stem.relu", "offset_mask.weight", "offset_mask.bias"], ["offset_mask"],
                         name="offset_mask", **conv),
        helper.make_node("Split", ["offset_mask", "offset_mask.split"], ["offset", "mask_logits"],
                         name="offset_mask.split", axis=1),
        helper.make_node("Sigmoid", ["mask_logits"], ["mask"], name="mask"),
        # Attributes as torch.onnx.export(..., dynamo=True) writes them for torchvision's deform_conv2d.
        helper.make_node("DeformConv", ["stem.relu", "dcn.weight", "offset", "dcn.bias", "mask"], ["dcn"],
                         name="dcn", dilations=[1, 1], group=1, offset_group=1, pads=[1, 1, 1, 1],
                         strides=[1, 1]),
        helper.make_node("Relu", ["dcn"], ["dcn.relu"], name="dcn.relu"),
        helper.make_node("GlobalAveragePool", ["dcn.relu"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["features"], name="flatten", axis=1),
        helper.make_node("Gemm", ["features", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny_dcn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 10])],
        initializer=[numpy_helper.from_array(value, name) for name, value in params.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9,
                              producer_name="deformrt tools/make_example_model.py")
    onnx.checker.check_model(model, full_check=True)
    return model


def main() -> None:
    rng = np.random.default_rng(SEED)
    model = build_model(rng)
    image = rng.random((1, 3, 32, 32), dtype=np.float32)
    os.makedirs(MODEL_DIR, exist_ok=True)
    model_path = os.path.join(MODEL_DIR, "tiny_dcn.onnx")
    input_path = os.path.join(MODEL_DIR, "tiny_dcn_input.npy")
    onnx.save(model, model_path)
    np.save(input_path, image)
    print(f"wrote {os.path.relpath(model_path, REPO)} ({os.path.getsize(model_path)} bytes) and "
          f"{os.path.relpath(input_path, REPO)}")

    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime not installed: model not run")
        return
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    probabilities = session.run(["probabilities"], {"image": image})[0][0]
    assert probabilities.shape == (10,) and abs(float(probabilities.sum()) - 1.0) < 1e-5
    print("onnxruntime top-3:")
    for cls in np.argsort(-probabilities, kind="stable")[:3]:
        print(f"  class {cls}: {probabilities[cls]:.6f}")


if __name__ == "__main__":
    main()
