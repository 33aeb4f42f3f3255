#!/usr/bin/env python3
"""Small int8 conv nets made the way users make them: a float model built with onnx.helper, then
`onnxruntime.quantization.quantize_static` with random calibration images, in QDQ format
(QuantizeLinear / DequantizeLinear around float ops) or QOperator format (QLinearConv,
QLinearMatMul, ...).

    python3 tools/make_quantized_models.py out_dir/

Tests/python/test_quantization.py imports `float_model` and `quantize` and compares DeformRT with
onnxruntime running the same quantized model.
"""
from __future__ import annotations

import os
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INPUT_SHAPE = (1, 3, 17, 19)   # odd sizes on purpose
CLASSES = 10


def float_model(seed: int = 0, opset: int = 13) -> onnx.ModelProto:
    """Conv(3->8) Relu, Conv(8->16, stride 2) Relu, depthwise Conv(16, group 16) Relu,
    Conv(16->12, 1x1), Flatten, MatMul -> 10 logits. Batch is dynamic."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array, np.float32), name))
        return name

    def conv(x, cin, cout, k, idx, relu=True, **attrs):
        group = attrs.get("group", 1)
        w = const(f"w{idx}", rng.standard_normal((cout, cin // group, k, k)) * np.sqrt(2.0 / (cin // group * k * k)))
        b = const(f"b{idx}", 0.1 * rng.standard_normal(cout))
        nodes.append(helper.make_node("Conv", [x, w, b], [f"conv{idx}"], kernel_shape=[k, k], **attrs))
        if not relu:
            return f"conv{idx}"
        nodes.append(helper.make_node("Relu", [f"conv{idx}"], [f"relu{idx}"]))
        return f"relu{idx}"

    x = conv("image", 3, 8, 3, 1, pads=[1, 1, 1, 1])
    x = conv(x, 8, 16, 3, 2, strides=[2, 2], pads=[1, 1, 1, 1])
    x = conv(x, 16, 16, 3, 3, group=16, pads=[1, 1, 1, 1])
    x = conv(x, 16, 12, 1, 4, relu=False)
    nodes.append(helper.make_node("Flatten", [x], ["flat"], axis=1))
    h, w = (INPUT_SHAPE[2] + 1) // 2, (INPUT_SHAPE[3] + 1) // 2
    fc = const("fc", rng.standard_normal((12 * h * w, CLASSES)) / np.sqrt(12 * h * w))
    nodes.append(helper.make_node("MatMul", ["flat", fc], ["logits"]))
    graph = helper.make_graph(
        nodes, "small_convnet",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", *INPUT_SHAPE[1:]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def calibration_images(seed: int = 1, count: int = 8, shape=INPUT_SHAPE):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(count)]


def quantize(model: onnx.ModelProto, quant_format: str, per_channel: bool = False,
             activation_type: str = "QUInt8", weight_type: str = "QInt8", input_shape=INPUT_SHAPE,
             calibration_count: int = 8, op_types=None) -> onnx.ModelProto:
    """quantize_static with MinMax calibration on `calibration_images()` of `input_shape`; quant_format
    'QDQ' or 'QOperator'; op_types: the operator types to quantize (None: all the quantizer knows)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.images = iter(calibration_images(count=calibration_count, shape=input_shape))

        def get_next(self):
            image = next(self.images, None)
            return None if image is None else {"image": image}

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "float.onnx"), os.path.join(tmp, "int8.onnx")
        onnx.save(model, src)
        quantize_static(src, dst, Reader(), quant_format=getattr(QuantFormat, quant_format), per_channel=per_channel,
                        activation_type=getattr(QuantType, activation_type), weight_type=getattr(QuantType, weight_type),
                        op_types_to_quantize=op_types)
        return onnx.load(dst)


def quantized_dbnet(side: int = 640, width: int = 32, inner: int = 64) -> onnx.ModelProto:
    """tools/make_dbnet_model.py's detector as a user deploys it in int8: onnxruntime's
    quant_pre_process (BatchNormalization folded into the convolutions), then quantize_static in
    QOperator format, per channel, convolutions and their Relus only (QLinearConv between QuantizeLinear /
    DequantizeLinear; ConvTranspose, Resize and the additions stay float), calibrated on two
    N(0, 1) images of side x side. bench/models.py runs it as `dbnet_int8`."""
    import importlib.util

    from onnxruntime.quantization.shape_inference import quant_pre_process

    spec = importlib.util.spec_from_file_location("make_dbnet_model", os.path.join(os.path.dirname(__file__), "make_dbnet_model.py"))
    dbnet = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dbnet)
    with tempfile.TemporaryDirectory() as tmp:
        src, folded = os.path.join(tmp, "float.onnx"), os.path.join(tmp, "folded.onnx")
        onnx.save(dbnet.build(0, width, inner), src)
        quant_pre_process(src, folded, skip_symbolic_shape=True)
        model = onnx.load(folded)
    return quantize(model, "QOperator", per_channel=True, input_shape=(1, 3, side, side), calibration_count=2,
                    op_types=["Conv", "Relu"])


def mlp_model(seed: int = 2, opset: int = 13) -> onnx.ModelProto:
    """MatMul(33 -> 65) Relu MatMul(65 -> 10), batch dynamic: what quantize_dynamic rewrites into
    DynamicQuantizeLinear + MatMulInteger + Cast + Mul."""
    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array((rng.standard_normal((33, 65)) / 6).astype(np.float32), "w1")
    w2 = numpy_helper.from_array((rng.standard_normal((65, 10)) / 8).astype(np.float32), "w2")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 33])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], [w1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def quantize_dynamic(model: onnx.ModelProto, weight_type: str = "QInt8") -> onnx.ModelProto:
    """onnxruntime.quantization.quantize_dynamic (weights quantized once, activations per run)."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "float.onnx"), os.path.join(tmp, "int8.onnx")
        onnx.save(model, src)
        ort_quantize_dynamic(src, dst, weight_type=getattr(QuantType, weight_type))
        return onnx.load(dst)


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out, exist_ok=True)
    model = float_model()
    onnx.save(model, os.path.join(out, "small_convnet.onnx"))
    for fmt in ("QDQ", "QOperator"):
        for per_channel in (False, True):
            name = f"small_convnet_int8_{fmt.lower()}{'_per_channel' if per_channel else ''}.onnx"
            onnx.save(quantize(model, fmt, per_channel), os.path.join(out, name))
            print(name)
    for weight_type in ("QInt8", "QUInt8"):
        name = f"mlp_dynamic_{weight_type.lower()}.onnx"
        onnx.save(quantize_dynamic(mlp_model(), weight_type), os.path.join(out, name))
        print(name)


if __name__ == "__main__":
    main()
