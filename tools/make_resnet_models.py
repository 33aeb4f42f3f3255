#!/usr/bin/env python3
"""Writes ResNet-50 ONNX models with fixed random weights (numpy + onnx.helper only, no torch):

    python3 tools/make_resnet_models.py                          # the three full-size models -> build/models/
    python3 tools/make_resnet_models.py --models resnet50_dcnv2 --out /tmp/models
    python3 tools/make_resnet_models.py --width-divisor 16 --blocks small   # fast test models

Models (opset 19, float32, IR 9; input "image" [N, 3, H, W] with N, H and W dynamic; output
"logits" [N, 1000]):

    resnet50        torchvision's ResNet-50 v1.5 layout: stem Conv 7x7 s2 -> BN -> Relu -> MaxPool 3x3 s2 p1,
                    bottlenecks [3, 4, 6, 3] (1x1 -> 3x3 -> 1x1, stride 2 on the 3x3 of each stage's first
                    block, 1x1 stride-s downsample Conv + BN on the shortcut), residual Add then Relu,
                    GlobalAveragePool -> Flatten -> Gemm 2048 -> 1000. Every Conv has no bias and is followed
                    by an unfused BatchNormalization, as torch.onnx.export writes a model in eval mode.
    resnet50_dcnv2  every 3x3 of layer2..layer4 (c3-c5) is a modulated DCNv2, spelled the way
                    torch.onnx.export(dynamo=True) writes torchvision's deform_conv2d: a sibling 3x3 Conv (with
                    bias, same stride and pads) on the same input gives 27 channels, Slice 0:18 -> offset,
                    Slice 18:27 -> Sigmoid -> mask, then DeformConv(X, W, offset, zeros B, mask) without a
                    kernel_shape attribute, then the BatchNormalization.
    resnet50_dcnv1  every 3x3 of layer4 (c5) is a DCNv1: a sibling 3x3 Conv gives the 18 offset channels
                    directly, DeformConv(X, W, offset) without mask or bias, with kernel_shape.

Weights: He-initialised Convs (std sqrt(2 / fan_in)); BatchNormalization gamma U(0.5, 1.5), beta
N(0, 0.1), mean N(0, 0.1), var U(0.5, 1.5), epsilon 1e-5, and the last BN gamma of each block scaled
by RESIDUAL_GAMMA so activations stay O(1) through the 16 residual blocks. Offset Convs: weights
N(0, (OFFSET_GAIN / sqrt(fan_in))^2) (std 0.004-0.009 at full width, up to 0.05 at --width-divisor 16)
and bias N(0, 1), so offsets are a pixel or a few (rms 1.5-4.5 px on a N(0, 1) image), like a trained
detector's, rather than growing with the layer's width.
Every model draws from its own fixed seed, so the plain parts of the three models differ.

--width-divisor D divides every channel count by D (never below 4; the 1000 classes stay) and
--blocks small uses one block per stage: with D = 16 a model is well under 1 MB and runs in
milliseconds at 64x64. Non-default sizes are written as <name>_w<D>[_small].onnx.

Each written model is checked with onnx.checker and (unless --no-verify) run in onnxruntime on a
N(0, 1) image: the logits must be finite with max |logit| between 0.1 and 100.

The .onnx files are build products (~100 MB each at full size); never commit them. The benchmark
bench/models.py calls this script when build/models/ lacks a model.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "build", "models")

MODELS = ("resnet50", "resnet50_dcnv2", "resnet50_dcnv1")
SEEDS = {"resnet50": 50_000, "resnet50_dcnv2": 50_002, "resnet50_dcnv1": 50_001}
# Stages layer1..layer4: (bottleneck width, blocks in the full model, stride of the first block).
STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))
EXPANSION = 4
STEM_CHANNELS = 64
CLASSES = 1000
MIN_CHANNELS = 4
# The stages whose 3x3 convolutions are deformable, and whether they are modulated (DCNv2).
DEFORMABLE_STAGES = {"resnet50": (), "resnet50_dcnv2": (2, 3, 4), "resnet50_dcnv1": (4,)}
MODULATED = {"resnet50": False, "resnet50_dcnv2": True, "resnet50_dcnv1": False}

RESIDUAL_GAMMA = 0.3       # scales the last BN gamma of each bottleneck
OFFSET_GAIN = 0.3          # offset/mask Conv weight std = OFFSET_GAIN / sqrt(fan_in); its bias is N(0, 1)
FC_GAIN = 1.0              # Gemm weight std = FC_GAIN / sqrt(in_features)
BN_EPSILON = 1e-5
OPSET = 19
IR_VERSION = 9             # what onnxruntime and OpenVINO read (onnx's newest IR may be ahead of them)

LOGIT_RANGE = (0.1, 100.0)  # max |logit| on a N(0, 1) image, checked by verify()


def file_name(name: str, width_divisor: int = 1, blocks: str = "full") -> str:
    """The file a model is written to: <name>.onnx at full size, else <name>_w<D>[_small].onnx."""
    suffix = (f"_w{width_divisor}" if width_divisor != 1 else "") + ("_small" if blocks == "small" else "")
    return f"{name}{suffix}.onnx"


class _Builder:
    """Accumulates nodes and initializers; names follow torchvision's state_dict keys."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.nodes: List[onnx.NodeProto] = []
        self.initializers: List[onnx.TensorProto] = []

    def constant(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op_type: str, inputs: Sequence[str], output: str, **attributes) -> str:
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], name=output, **attributes))
        return output

    def he(self, shape: Sequence[int]) -> np.ndarray:
        fan_in = int(np.prod(shape[1:]))
        return (self.rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    def conv(self, x: str, name: str, cin: int, cout: int, kernel: int, stride: int = 1) -> str:
        pad = kernel // 2
        weight = self.constant(f"{name}.weight", self.he((cout, cin, kernel, kernel)))
        return self.node("Conv", [x, weight], name, kernel_shape=[kernel, kernel], strides=[stride, stride],
                         pads=[pad] * 4, dilations=[1, 1], group=1)

    def batch_norm(self, x: str, name: str, channels: int, gamma_scale: float = 1.0) -> str:
        rng = self.rng
        gamma = rng.uniform(0.5, 1.5, channels) * gamma_scale
        beta = rng.normal(0.0, 0.1, channels)
        mean = rng.normal(0.0, 0.1, channels)
        var = rng.uniform(0.5, 1.5, channels)
        inputs = [x] + [self.constant(f"{name}.{field}", value.astype(np.float32)) for field, value in
                        (("weight", gamma), ("bias", beta), ("running_mean", mean), ("running_var", var))]
        return self.node("BatchNormalization", inputs, name, epsilon=BN_EPSILON, momentum=0.9)

    def relu(self, x: str, name: str) -> str:
        return self.node("Relu", [x], name)

    def deform_conv(self, x: str, name: str, cin: int, cout: int, stride: int, modulated: bool) -> str:
        """A 3x3 deformable conv (pad 1) with its sibling offset (and mask) Conv, torch.onnx.export style."""
        rng = self.rng
        taps = 9
        offset_channels = taps * (3 if modulated else 2)
        offset_weight = self.constant(
            f"{name}.conv_offset.weight",
            (rng.standard_normal((offset_channels, cin, 3, 3)) * (OFFSET_GAIN / np.sqrt(cin * taps)))
            .astype(np.float32))
        offset_bias = self.constant(f"{name}.conv_offset.bias",
                                    rng.standard_normal(offset_channels).astype(np.float32))
        conv = dict(strides=[stride, stride], pads=[1, 1, 1, 1], dilations=[1, 1], group=1)
        offset_out = self.node("Conv", [x, offset_weight, offset_bias], f"{name}.conv_offset",
                               kernel_shape=[3, 3], **conv)
        weight = self.constant(f"{name}.weight", self.he((cout, cin, 3, 3)))
        if not modulated:
            # DCNv1: the offset Conv's output is the offset; no bias, no mask; kernel_shape written.
            return self.node("DeformConv", [x, weight, offset_out], name, kernel_shape=[3, 3],
                             offset_group=1, **conv)
        axis = self.constant(f"{name}.slice_axes", np.array([1], np.int64))
        bounds = {value: self.constant(f"{name}.slice_{value}", np.array([value], np.int64))
                  for value in (0, 2 * taps, 3 * taps)}
        offset = self.node("Slice", [offset_out, bounds[0], bounds[2 * taps], axis], f"{name}.offset")
        mask_logits = self.node("Slice", [offset_out, bounds[2 * taps], bounds[3 * taps], axis],
                                f"{name}.mask_logits")
        mask = self.node("Sigmoid", [mask_logits], f"{name}.mask")
        # The zeros bias and no kernel_shape: how the dynamo exporter writes a bias-free deform_conv2d.
        bias = self.constant(f"{name}.bias", np.zeros(cout, np.float32))
        return self.node("DeformConv", [x, weight, offset, bias, mask], name, offset_group=1, **conv)


def _channels(count: int, width_divisor: int) -> int:
    return max(MIN_CHANNELS, count // width_divisor)


def build_model(name: str, width_divisor: int = 1, blocks: str = "full",
                seed: Optional[int] = None) -> onnx.ModelProto:
    """One model as an onnx.ModelProto (checked with onnx.checker)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    if width_divisor < 1:
        raise ValueError(f"width divisor must be >= 1, got {width_divisor}")
    if blocks not in ("full", "small"):
        raise ValueError(f"blocks must be 'full' or 'small', got {blocks!r}")
    b = _Builder(np.random.default_rng(SEEDS[name] if seed is None else seed))
    deformable, modulated = DEFORMABLE_STAGES[name], MODULATED[name]

    stem = _channels(STEM_CHANNELS, width_divisor)
    x = b.conv("image", "conv1", 3, stem, 7, stride=2)
    x = b.relu(b.batch_norm(x, "bn1", stem), "relu")
    x = b.node("MaxPool", [x], "maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])

    cin = stem
    for stage, (width, full_blocks, first_stride) in enumerate(STAGES, start=1):
        width_c = _channels(width, width_divisor)
        cout = _channels(width * EXPANSION, width_divisor)
        for index in range(full_blocks if blocks == "full" else 1):
            prefix = f"layer{stage}.{index}"
            stride = first_stride if index == 0 else 1
            y = b.relu(b.batch_norm(b.conv(x, f"{prefix}.conv1", cin, width_c, 1), f"{prefix}.bn1", width_c),
                       f"{prefix}.relu1")
            if stage in deformable:
                y = b.deform_conv(y, f"{prefix}.conv2", width_c, width_c, stride, modulated)
            else:
                y = b.conv(y, f"{prefix}.conv2", width_c, width_c, 3, stride=stride)
            y = b.relu(b.batch_norm(y, f"{prefix}.bn2", width_c), f"{prefix}.relu2")
            y = b.batch_norm(b.conv(y, f"{prefix}.conv3", width_c, cout, 1), f"{prefix}.bn3", cout,
                             gamma_scale=RESIDUAL_GAMMA)
            shortcut = x
            if index == 0:
                shortcut = b.batch_norm(b.conv(x, f"{prefix}.downsample.0", cin, cout, 1, stride=stride),
                                        f"{prefix}.downsample.1", cout)
            x = b.relu(b.node("Add", [y, shortcut], f"{prefix}.add"), f"{prefix}.relu3")
            cin = cout

    x = b.node("GlobalAveragePool", [x], "avgpool")
    x = b.node("Flatten", [x], "flatten", axis=1)
    fc_weight = b.constant("fc.weight", (b.rng.standard_normal((CLASSES, cin)) * FC_GAIN / np.sqrt(cin))
                           .astype(np.float32))
    fc_bias = b.constant("fc.bias", (b.rng.standard_normal(CLASSES) * 0.01).astype(np.float32))
    b.node("Gemm", [x, fc_weight, fc_bias], "logits", transB=1)

    graph = helper.make_graph(
        b.nodes, name,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])],
        b.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              producer_name="DeformRT tools/make_resnet_models.py")
    model.doc_string = (f"{name}, width divisor {width_divisor}, {blocks} blocks, fixed random weights "
                        f"(seed {SEEDS[name] if seed is None else seed}); not trained")
    onnx.checker.check_model(model)
    return model


def verify(path: str, shape: Sequence[int] = (1, 3, 224, 224), seed: int = 0) -> float:
    """Runs the model in onnxruntime on a N(0, 1) image; returns max |logit| after checking the
    logits are finite and within LOGIT_RANGE."""
    import onnxruntime as ort

    onnx.checker.check_model(path)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    image = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    (logits,) = session.run(None, {"image": image})
    if logits.shape != (shape[0], CLASSES):
        raise AssertionError(f"{path}: logits shape {logits.shape}, expected {(shape[0], CLASSES)}")
    if not np.all(np.isfinite(logits)):
        raise AssertionError(f"{path}: logits are not all finite")
    magnitude = float(np.max(np.abs(logits)))
    low, high = LOGIT_RANGE
    if not low <= magnitude <= high:
        raise AssertionError(f"{path}: max |logit| = {magnitude:.3g}, outside [{low}, {high}]")
    return magnitude


def write_models(out: str, names: Sequence[str] = MODELS, width_divisor: int = 1, blocks: str = "full",
                 verify_shape: Optional[Sequence[int]] = None) -> Dict[str, str]:
    """Writes the models to `out` (created if missing); returns {name: path}. With verify_shape,
    each is also run in onnxruntime on an image of that shape (see verify())."""
    os.makedirs(out, exist_ok=True)
    paths = {}
    for name in names:
        model = build_model(name, width_divisor, blocks)
        path = os.path.join(out, file_name(name, width_divisor, blocks))
        temporary = path + ".partial"
        onnx.save(model, temporary)
        os.replace(temporary, path)  # a concurrent reader never sees half a file
        if verify_shape is not None:
            verify(path, verify_shape)
        paths[name] = path
    return paths


def _describe(path: str) -> str:
    model = onnx.load(path)
    ops: Mapping[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    parameters = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    histogram = ", ".join(f"{op} {count}" for op, count in sorted(ops.items()))
    return f"{parameters / 1e6:.2f} M parameters, {os.path.getsize(path) / 2**20:.1f} MiB; {histogram}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"models to write, comma-separated (default {','.join(MODELS)})")
    parser.add_argument("--width-divisor", type=int, default=1, metavar="D",
                        help="divide every channel count by D, keeping at least 4 (default 1)")
    parser.add_argument("--blocks", choices=("full", "small"), default="full",
                        help="full: [3, 4, 6, 3] bottlenecks; small: one per stage")
    parser.add_argument("--verify-size", type=int, default=None, metavar="S",
                        help="side of the N(0, 1) image onnxruntime verifies each model on "
                             "(default 224 at full width, 64 otherwise)")
    parser.add_argument("--no-verify", action="store_true", help="skip the onnxruntime run")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in names if name not in MODELS]
    if unknown or not names:
        parser.error(f"unknown model {', '.join(unknown) or '(none given)'}; choose from {', '.join(MODELS)}")
    size = args.verify_size or (224 if args.width_divisor == 1 else 64)
    for name in names:
        path = write_models(args.out, [name], args.width_divisor, args.blocks)[name]
        verified = ""
        if not args.no_verify:
            verified = f"; onnxruntime at {size}x{size}: max |logit| {verify(path, (1, 3, size, size)):.3g}"
        print(f"{path}: {_describe(path)}{verified}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
