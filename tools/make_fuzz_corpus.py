#!/usr/bin/env python3
"""Writes the fuzzer's seed corpus, fuzz/corpus/*.onnx: small valid models (numpy + onnx only).

    python3 tools/make_fuzz_corpus.py

Each seed exercises a different part of the importer and planner (every supported operator, each
DeformConv spelling, typed-field and raw initializers, dynamic dims, Constant nodes, int64 shape
arithmetic), with tiny weights so that mutating them is cheap. Fixed seed: the files are
reproducible and committed; the fuzzer's mutations go to a scratch folder, never here.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(REPO, "fuzz", "corpus")
FLOAT = TensorProto.FLOAT
INT64 = TensorProto.INT64


def value(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def model(nodes, inputs, outputs, initializers=(), opset=19, extra_opsets=()):
    graph = helper.make_graph(nodes, "seed", inputs, outputs, list(initializers))
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    m = helper.make_model(graph, opset_imports=opsets, producer_name="deformrt-fuzz-seed")
    m.ir_version = 9
    return m


def seeds(rng):
    def w(*shape, scale=0.5):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def init(name, array):
        return numpy_helper.from_array(np.asarray(array), name)

    def typed(name, array):
        # Typed repeated fields instead of raw_data, the other initializer encoding.
        a = np.asarray(array)
        return helper.make_tensor(name, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape, a.flatten().tolist())

    out = {}
    x = value("x", FLOAT, [1, 2, 5, 5])
    y = value("y", FLOAT, None)

    out["conv"] = model(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], strides=[1, 1])],
        [x], [y], [init("w", w(3, 2, 3, 3)), init("b", w(3))])
    out["conv_group_dilation_autopad"] = model(
        [helper.make_node("Conv", ["x", "w"], ["y"], group=2, dilations=[2, 1], auto_pad="SAME_UPPER", strides=[2, 2])],
        [x], [y], [typed("w", w(4, 1, 2, 3))])
    out["conv_1d_dynamic"] = model(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 0])],
        [value("x", FLOAT, ["n", 2, "length"])], [y], [init("w", w(2, 2, 2))])

    dcn_inputs = [value("x", FLOAT, [1, 2, 4, 4]), value("offset", FLOAT, [1, 18, 4, 4]),
                  value("mask", FLOAT, [1, 9, 4, 4])]
    out["deformconv_mask"] = model(
        [helper.make_node("DeformConv", ["x", "w", "offset", "b", "mask"], ["y"], pads=[1, 1, 1, 1])],
        dcn_inputs, [y], [init("w", w(2, 2, 3, 3)), init("b", w(2))])
    out["deformconv_groups_dynamic"] = model(
        [helper.make_node("DeformConv", ["x", "w", "offset"], ["y"], group=2, offset_group=2, kernel_shape=[2, 2])],
        [value("x", FLOAT, ["n", 4, "h", "w"]), value("offset", FLOAT, ["n", 16, "oh", "ow"])],
        [y], [init("w", w(2, 2, 2, 2))])
    # Offsets and mask computed from the input, as exported detectors do.
    out["deformconv_split_offsets"] = model(
        [helper.make_node("Conv", ["x", "ow", "ob"], ["om"], pads=[1, 1, 1, 1]),
         helper.make_node("Split", ["om", "split"], ["offset", "mlogit"], axis=1),
         helper.make_node("Sigmoid", ["mlogit"], ["mask"]),
         helper.make_node("DeformConv", ["x", "w", "offset", "", "mask"], ["y"], pads=[1, 1, 1, 1])],
        [x], [y], [init("ow", w(27, 2, 3, 3, scale=0.1)), init("ob", w(27)), init("split", np.array([18, 9], np.int64)),
                   init("w", w(2, 2, 3, 3))])
    out["mmcv_modulated"] = model(
        [helper.make_node("MMCVModulatedDeformConv2d", ["x", "offset", "mask", "w", "b"], ["y"], domain="mmcv",
                          stride=[1, 1], padding=[1, 1], dilation=[1, 1], groups=1, deform_groups=1)],
        dcn_inputs, [y], [init("w", w(2, 2, 3, 3)), init("b", w(2))], extra_opsets=[("mmcv", 1)])
    out["mmcv_plain"] = model(
        [helper.make_node("MMCVDeformConv2d", ["x", "offset", "w"], ["y"], domain="mmdeploy",
                          stride=[1, 1], padding=[1, 1], dilation=[1, 1], groups=1, deform_groups=1)],
        dcn_inputs[:2], [y], [init("w", w(2, 2, 3, 3))], extra_opsets=[("mmdeploy", 1)])
    out["openvino_deformable"] = model(
        [helper.make_node("DeformableConv2D", ["x", "offset", "w", "mask"], ["y"], domain="org.openvinotoolkit",
                          pads=[1, 1, 1, 1], strides=[1, 1], dilations=[1, 1], group=1, deformable_groups=1,
                          bilinear_interpolation_pad=0)],
        dcn_inputs, [y], [init("w", w(2, 2, 3, 3))], extra_opsets=[("org.openvinotoolkit", 1)])

    out["pool_bn_act"] = model(
        [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["bn"]),
         helper.make_node("LeakyRelu", ["bn"], ["lr"], alpha=0.1),
         helper.make_node("MaxPool", ["lr"], ["mp"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
         helper.make_node("AveragePool", ["mp"], ["ap"], kernel_shape=[2, 2], pads=[1, 1, 0, 0], count_include_pad=1),
         helper.make_node("GlobalAveragePool", ["ap"], ["y"])],
        [x], [y], [init("s", w(2)), init("b", w(2)), init("m", w(2)), init("v", np.abs(w(2)) + 0.1)])
    out["classifier_head"] = model(
        [helper.make_node("Flatten", ["x"], ["f"], axis=1),
         helper.make_node("Gemm", ["f", "fw", "fb"], ["g"], transB=1, alpha=0.5),
         helper.make_node("Relu", ["g"], ["r"]),
         helper.make_node("MatMul", ["r", "mw"], ["mm"]),
         helper.make_node("Softmax", ["mm"], ["y"], axis=-1)],
        [value("x", FLOAT, ["batch", 2, 2, 2])], [y], [init("fw", w(4, 8)), init("fb", w(4)), init("mw", w(4, 3))])
    out["shape_arithmetic"] = model(
        [helper.make_node("Shape", ["x"], ["s"]),
         helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
         helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
         helper.make_node("Mul", ["n1", "minus_one"], ["neg"]),
         helper.make_node("Concat", ["n1", "minus_one"], ["target"], axis=0),
         helper.make_node("Reshape", ["x", "target"], ["flat"]),
         helper.make_node("Cast", ["neg"], ["negf"], to=FLOAT),
         helper.make_node("Add", ["flat", "negf"], ["y"])],
        [value("x", FLOAT, ["n", 3, 2])], [y],
        [init("zero", np.array(0, np.int64)), init("axes0", np.array([0], np.int64)),
         init("minus_one", np.array([-1], np.int64))])
    out["slice_transpose_squeeze"] = model(
        [helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["s"]),
         helper.make_node("Transpose", ["s"], ["t"], perm=[0, 2, 3, 1]),
         helper.make_node("Squeeze", ["t", "sq"], ["q"]),
         helper.make_node("Identity", ["q"], ["y"])],
        [x], [y], [init("starts", np.array([0, 4], np.int64)), init("ends", np.array([1, -100], np.int64)),
                   init("axes", np.array([1, 3], np.int64)), init("steps", np.array([1, -2], np.int64)),
                   init("sq", np.array([0], np.int64))])
    out["constants_and_types"] = model(
        [helper.make_node("Constant", [], ["c"], value=helper.make_tensor("c", INT64, [2], [3, -4])),
         helper.make_node("Constant", [], ["cf"], value_floats=[1.5, -2.0]),
         helper.make_node("Cast", ["c"], ["c32"], to=TensorProto.INT32),
         helper.make_node("Div", ["c32", "d32"], ["q32"]),
         helper.make_node("Cast", ["q32"], ["qf"], to=FLOAT),
         helper.make_node("Sub", ["cf", "qf"], ["z"]),
         helper.make_node("Mul", ["x", "z"], ["y"])],
        [value("x", FLOAT, [3, 2])], [y], [typed("d32", np.array([2, 0], np.int32))])
    out["double_and_half"] = model(
        [helper.make_node("Cast", ["x"], ["xd"], to=TensorProto.DOUBLE),
         helper.make_node("Add", ["xd", "bd"], ["sd"]),
         helper.make_node("Cast", ["sd"], ["xh"], to=TensorProto.FLOAT16),
         helper.make_node("Mul", ["xh", "bh"], ["y"])],
        [value("x", FLOAT, [2, 3])], [y], [init("bd", np.array([1.0, 2.0, 3.0])),
                                           typed("bh", np.array([0.5, 1.0, 2.0], np.float16))])
    out["split_concat_multi_output"] = model(
        [helper.make_node("Split", ["x"], ["a", "b"], axis=2, num_outputs=2),
         helper.make_node("Concat", ["b", "a"], ["y"], axis=2),
         helper.make_node("Identity", ["a"], ["z"])],
        [x], [y, value("z", FLOAT, None)], opset=18)
    # Operators added after the spine: shape generators, padding and resizing, reductions,
    # normalisation, comparisons and the RoI pooling family.
    out["generators_and_shape_ops"] = model(
        [helper.make_node("ConstantOfShape", ["tiled_shape"], ["c"], value=helper.make_tensor("v", FLOAT, [1], [0.5])),
         helper.make_node("Range", ["start", "limit", "delta"], ["r"]),
         helper.make_node("Cast", ["r"], ["rf"], to=FLOAT),
         helper.make_node("Expand", ["rf", "shape"], ["e"]),
         helper.make_node("Tile", ["e", "repeats"], ["t"]),
         helper.make_node("Add", ["t", "c"], ["s"]),
         helper.make_node("Size", ["s"], ["n"]),
         helper.make_node("Cast", ["n"], ["nf"], to=FLOAT),
         helper.make_node("Mul", ["x", "nf"], ["y"])],
        [value("x", FLOAT, [2, 6])], [y],
        [init("shape", np.array([2, 3], np.int64)), init("tiled_shape", np.array([2, 6], np.int64)),
         init("start", np.array(0, np.int64)),
         init("limit", np.array(3, np.int64)), init("delta", np.array(1, np.int64)),
         init("repeats", np.array([1, 2], np.int64))])
    out["pad_resize"] = model(
        [helper.make_node("Pad", ["x", "pads"], ["p"], mode="reflect"),
         helper.make_node("Resize", ["p", "", "scales"], ["r"], mode="linear"),
         helper.make_node("Pad", ["r", "pads", "cv"], ["q"], mode="constant"),
         helper.make_node("Resize", ["q", "", "", "sizes"], ["y"], mode="nearest", nearest_mode="floor")],
        [value("x", FLOAT, [1, 1, 3, 3])], [y],
        [init("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)), init("scales", np.array([1, 1, 1.5, 2], np.float32)),
         init("cv", np.array(0.25, np.float32)), init("sizes", np.array([1, 1, 4, 5], np.int64))])
    out["reductions_and_norms"] = model(
        [helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=1),
         helper.make_node("ReduceMax", ["x"], ["mx"], keepdims=0),
         helper.make_node("InstanceNormalization", ["x", "s", "b"], ["i"], epsilon=1e-3),
         helper.make_node("LayerNormalization", ["i", "ls", "lb"], ["l"], axis=-1),
         helper.make_node("Sub", ["l", "m"], ["d"]),
         helper.make_node("ArgMax", ["d"], ["am"], axis=1, keepdims=1),
         helper.make_node("ReduceSum", ["d", "axes"], ["y"], keepdims=0)],
        [value("x", FLOAT, [1, 2, 3, 4])], [y, value("mx", FLOAT, None), value("am", INT64, None)],
        [init("axes", np.array([1], np.int64)), init("s", w(2)), init("b", w(2)), init("ls", w(4)), init("lb", w(4))])
    out["activations_and_logic"] = model(
        [helper.make_node("HardSwish", ["x"], ["a"]), helper.make_node("Mish", ["a"], ["b"]),
         helper.make_node("Gelu", ["b"], ["c"], approximate="tanh"), helper.make_node("Elu", ["c"], ["d"], alpha=0.5),
         helper.make_node("Selu", ["d"], ["e"]), helper.make_node("HardSigmoid", ["e"], ["f"]),
         helper.make_node("PRelu", ["f", "slope"], ["g"]), helper.make_node("Clip", ["g", "lo", "hi"], ["h"]),
         helper.make_node("Pow", ["h", "two"], ["k"]), helper.make_node("Greater", ["k", "x"], ["gt"]),
         helper.make_node("Not", ["gt"], ["ng"]), helper.make_node("Where", ["ng", "k", "x"], ["wh"]),
         helper.make_node("Max", ["wh", "x", "k"], ["mx"]), helper.make_node("Min", ["mx", "h"], ["y"])],
        [value("x", FLOAT, [2, 3])], [y],
        [init("slope", w(3)), init("lo", np.array(-1.0, np.float32)), init("hi", np.array(2.0, np.float32)),
         init("two", np.array(2.0, np.float32))], opset=20)
    rois = np.array([[0, 0.5, 0.5, 3.5, 3.5], [0, 1, 0, 4, 2]], np.float32)
    feature = value("x", FLOAT, [1, 4, 5, 5])
    out["roi_align_maxroipool"] = model(
        [helper.make_node("RoiAlign", ["x", "boxes", "batch"], ["a"], output_height=2, output_width=2, sampling_ratio=2,
                          spatial_scale=0.5, mode="avg"),
         helper.make_node("MaxRoiPool", ["x", "rois"], ["y"], pooled_shape=[2, 2], spatial_scale=1.0)],
        [feature], [y, value("a", FLOAT, None)],
        [init("boxes", rois[:, 1:]), init("batch", np.zeros(2, np.int64)), init("rois", rois)])
    out["deform_roi_pool"] = model(
        [helper.make_node("DeformRoIPool", ["x", "rois", "offset", "mask"], ["y"], domain="ai.deformrt",
                          output_size=[2, 2], spatial_scale=1.0, sampling_ratio=2, gamma=0.1)],
        [feature, value("offset", FLOAT, [2, 2, 2, 2]), value("mask", FLOAT, [2, 1, 2, 2])], [y], [init("rois", rois)],
        extra_opsets=[("ai.deformrt", 1)])
    out["deformable_psroi_pool"] = model(
        [helper.make_node("DeformablePSROIPooling", ["x", "rois", "trans"], ["y"], domain="ai.deformrt",
                          output_dim=1, group_size=2, spatial_scale=1.0, pooled_size=2, part_size=2,
                          sample_per_part=2, trans_std=0.1)],
        [feature, value("trans", FLOAT, [2, 2, 2, 2])], [y], [init("rois", rois)], extra_opsets=[("ai.deformrt", 1)])
    # Deformable attention family (issue 10): GridSample in three modes, DCNv3, multi-scale
    # deformable attention with constant levels (mutations reach the level checks).
    grid = value("grid", FLOAT, [1, 3, 4, 2])
    out["grid_sample"] = model(
        [helper.make_node("GridSample", ["x", "grid"], ["g1"], mode="linear", padding_mode="zeros"),
         helper.make_node("GridSample", ["x", "grid"], ["g2"], mode="nearest", padding_mode="reflection",
                          align_corners=1),
         helper.make_node("GridSample", ["x", "grid"], ["y"], mode="cubic", padding_mode="border")],
        [feature, grid], [y, value("g1", FLOAT, None), value("g2", FLOAT, None)], opset=20)
    out["grid_sample_5d"] = model(
        [helper.make_node("GridSample", ["v", "grid3"], ["g1"], mode="linear", padding_mode="zeros"),
         helper.make_node("GridSample", ["v", "grid3"], ["y"], mode="nearest", padding_mode="reflection",
                          align_corners=1)],
        [value("v", FLOAT, [1, 2, 3, 4, 5]), value("grid3", FLOAT, [1, 2, 3, 4, 3])],
        [y, value("g1", FLOAT, None)], opset=20)
    out["dcnv3"] = model(
        [helper.make_node("TRTDCNv3", ["x", "offset", "mask"], ["y"], domain="mmdeploy", kernel_h=3, kernel_w=3,
                          stride_h=1, stride_w=1, pad_h=1, pad_w=1, dilation_h=1, dilation_w=1, group=2,
                          group_channels=2, offset_scale=1.0, im2col_step=64, remove_center=0)],
        [value("x", FLOAT, [1, 4, 5, 4]), value("offset", FLOAT, [1, 4, 5, 36]), value("mask", FLOAT, [1, 4, 5, 18])],
        [y], extra_opsets=[("mmdeploy", 1)])
    out["multi_scale_deformable_attention"] = model(
        [helper.make_node("MMCVMultiScaleDeformableAttention",
                          ["value", "shapes", "starts", "locations", "weights"], ["y"], domain="mmdeploy",
                          im2col_step=64)],
        [value("value", FLOAT, [1, 25, 2, 3]), value("locations", FLOAT, [1, 4, 2, 2, 2, 2]),
         value("weights", FLOAT, [1, 4, 2, 2, 2])], [y],
        [init("shapes", np.array([[4, 5], [1, 5]], np.int64)), init("starts", np.array([0, 20], np.int64))],
        extra_opsets=[("mmdeploy", 1)])
    # The grid_sample decomposition of multi-scale deformable attention, as torch.onnx.export
    # writes it: mutations reach the decomposition pass's checks (near misses must stay unfused).
    import sys
    sys.path.insert(0, os.path.join(REPO, "tools"))
    import deformable_decompositions
    decomposed = onnx.load_from_string(deformable_decompositions.msda_models(1, [(3, 3), (1, 2)], 2, 2, 3, 2)[1])
    decomposed.producer_name = "deformrt-fuzz-seed"
    out["msda_decomposition"] = decomposed
    # Metadata and symbolic dims (the metadata accessors, a repeated key, empty and long values).
    meta = model([helper.make_node("Relu", ["x"], ["y"])], [value("x", FLOAT, ["batch", 3, None])],
                 [value("y", FLOAT, ["batch", 3, None])])
    meta.doc_string, meta.domain, meta.model_version = "doc", "ai.example", 5
    meta.graph.doc_string = "graph doc"
    for key, text in [("k", "1"), ("", "empty key"), ("k", "2"), ("long", "v" * 300)]:
        entry = meta.metadata_props.add()
        entry.key, entry.value = key, text
    out["metadata_symbolic_dims"] = meta
    # Recurrent layers: sequence_lens, states, peepholes, activations with alpha / beta, layout 1.
    INT32, UINT8, INT8 = TensorProto.INT32, TensorProto.UINT8, TensorProto.INT8
    out["lstm_bidirectional"] = model(
        [helper.make_node("LSTM", ["x", "W", "R", "B", "lens", "h0", "c0", "P"], ["y", "yh", "yc"], hidden_size=3,
                          direction="bidirectional", clip=5.0,
                          activations=["Sigmoid", "Tanh", "Tanh", "HardSigmoid", "LeakyRelu", "ScaledTanh"],
                          activation_alpha=[0.2, 0.1, 1.0], activation_beta=[0.5, 1.0])],
        [value("x", FLOAT, [4, 2, 2]), value("lens", INT32, [2])],
        [y, value("yh", FLOAT, None), value("yc", FLOAT, None)],
        [init("W", w(2, 12, 2)), init("R", w(2, 12, 3)), init("B", w(2, 24)), init("h0", w(2, 2, 3)),
         init("c0", w(2, 2, 3)), init("P", w(2, 9))], opset=14)
    out["gru_rnn_layout1"] = model(
        [helper.make_node("GRU", ["x", "Wg", "Rg", "Bg"], ["g", "gh"], hidden_size=3, linear_before_reset=1, layout=1),
         helper.make_node("RNN", ["x", "Wr", "Rr", "", "", "gh"], ["y"], hidden_size=3, layout=1, activations=["Relu"])],
        [value("x", FLOAT, [2, 3, 2])], [y, value("g", FLOAT, None)],
        [init("Wg", w(1, 9, 2)), init("Rg", w(1, 9, 3)), init("Bg", w(1, 18)), init("Wr", w(1, 3, 2)), init("Rr", w(1, 3, 3))],
        opset=14)
    # Quantized operators as onnxruntime.quantization writes them.
    q8 = lambda shape: rng.integers(-128, 128, shape).astype(np.int8)
    out["quantized_ops"] = model(
        [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
         helper.make_node("QLinearConv", ["xq", "xs", "xz", "cw", "cws", "cwz", "ys", "yz", "cb"], ["cq"], pads=[1, 1, 1, 1]),
         helper.make_node("ConvInteger", ["xq", "cw", "xz", "cwz"], ["ci"], strides=[2, 2]),
         helper.make_node("DequantizeLinear", ["cq", "ys", "yz"], ["cd"]),
         helper.make_node("DynamicQuantizeLinear", ["cd"], ["dq", "dqs", "dqz"]),
         helper.make_node("Flatten", ["cq"], ["flat"]),
         helper.make_node("QLinearMatMul", ["flat", "ys", "yz", "mw", "mws", "mwz", "ys", "yz"], ["mq"]),
         helper.make_node("MatMulInteger", ["flat", "mw", "yz", "mwz"], ["mi"]),
         helper.make_node("DequantizeLinear", ["mq", "ys", "yz"], ["y"]),
         helper.make_node("DequantizeLinear", ["cw", "cws", "cwz"], ["wd"], axis=0)],
        [value("x", FLOAT, [1, 2, 3, 3])],
        [y, value("ci", INT32, None), value("dq", UINT8, None), value("mi", INT32, None), value("wd", FLOAT, None)],
        [init("xs", np.array(0.05, np.float32)), init("xz", np.array(128, np.uint8)), init("cw", q8((2, 2, 3, 3))),
         init("cws", np.array([0.01, 0.02], np.float32)), init("cwz", np.zeros(2, np.int8)), init("ys", np.array(0.1, np.float32)),
         init("yz", np.array(120, np.uint8)), init("cb", np.array([100, -100], np.int32)), init("mw", q8((18, 4))),
         init("mws", np.array(0.02, np.float32)), init("mwz", np.array(0, np.int8))], opset=13)
    # Issue 9: learned upsampling, pixel rearrangement, normalisation and pooling (drawn last, so
    # the seeds above keep their bytes).
    out["conv_transpose_bn_relu"] = model(
        [helper.make_node("ConvTranspose", ["x", "w", "b"], ["t"], strides=[2, 2], pads=[1, 1, 1, 1],
                          output_padding=[1, 1], group=2),
         helper.make_node("BatchNormalization", ["t", "s", "bb", "m", "v"], ["u"]),
         helper.make_node("Relu", ["u"], ["y"])],
        [x], [y], [init("w", w(2, 2, 3, 3)), init("b", w(4)), init("s", w(4)), init("bb", w(4)), init("m", w(4)),
                   init("v", np.abs(w(4)) + 0.5)])
    out["conv_transpose_1d_output_shape"] = model(
        [helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[3], dilations=[2], output_shape=[14],
                          auto_pad="SAME_LOWER")],
        [value("x", FLOAT, ["N", 3, 5])], [y], [init("w", w(3, 2, 2))])
    out["depth_space"] = model(
        [helper.make_node("DepthToSpace", ["x"], ["d"], blocksize=2, mode="CRD"),
         helper.make_node("SpaceToDepth", ["d"], ["s"], blocksize=2),
         helper.make_node("DepthToSpace", ["s"], ["y"], blocksize=2)],
        [value("x", FLOAT, [1, 4, 3, 3])], [y])
    out["norms_and_pools"] = model(
        [helper.make_node("GroupNormalization", ["x", "gs", "gb"], ["g"], num_groups=2),
         helper.make_node("LpNormalization", ["g"], ["l"], axis=1, p=1),
         helper.make_node("LRN", ["l"], ["r"], size=3),
         helper.make_node("MeanVarianceNormalization", ["r"], ["m"]),
         helper.make_node("LpPool", ["m"], ["p"], kernel_shape=[2, 2], p=3, pads=[1, 0, 0, 1]),
         helper.make_node("GlobalMaxPool", ["p"], ["y"])],
        [value("x", FLOAT, [1, 4, 3, 3])], [y], [init("gs", w(4)), init("gb", w(4))], opset=21)
    # Issue 9's elementwise, reduction and index operators (gathers and scatters read indices
    # from the model: the fuzzer's mutations push them out of range).
    out["math_extra"] = model(
        [helper.make_node("Round", ["x"], ["r"]), helper.make_node("Sign", ["r"], ["sg"]),
         helper.make_node("Sin", ["x"], ["sn"]), helper.make_node("Cos", ["sn"], ["cs"]),
         helper.make_node("Celu", ["cs"], ["ce"], alpha=0.5), helper.make_node("Softsign", ["ce"], ["ss"]),
         helper.make_node("ThresholdedRelu", ["ss"], ["tr"], alpha=0.1),
         helper.make_node("Shrink", ["tr"], ["sh"], lambd=0.2, bias=0.1),
         helper.make_node("Mod", ["x", "three"], ["md"], fmod=1),
         helper.make_node("IsNaN", ["md"], ["isn"]), helper.make_node("IsInf", ["md"], ["isi"], detect_negative=0),
         helper.make_node("LogSoftmax", ["sh"], ["ls"], axis=1), helper.make_node("Hardmax", ["ls"], ["hm"], axis=0),
         helper.make_node("CastLike", ["isn", "x"], ["nf"]),
         helper.make_node("Sum", ["hm", "nf", "sg"], ["su"]), helper.make_node("Mean", ["su", "md"], ["y"])],
        [value("x", FLOAT, [2, 3])], [y, value("isi", TensorProto.BOOL, None)],
        [init("three", np.array(3.0, np.float32))], opset=20)
    out["reductions_extra"] = model(
        [helper.make_node("ReduceL1", ["x", "axes"], ["l1"], keepdims=1),
         helper.make_node("ReduceL2", ["x"], ["l2"], keepdims=0),
         helper.make_node("ReduceLogSumExp", ["x", "axes"], ["lse"]),
         helper.make_node("ReduceSumSquare", ["x", "axes"], ["ssq"], noop_with_empty_axes=1),
         helper.make_node("ReduceProd", ["x", "axes"], ["pr"]),
         helper.make_node("Add", ["l1", "lse"], ["a"]), helper.make_node("Add", ["a", "pr"], ["b"]),
         helper.make_node("ReduceLogSum", ["ssq", "axes"], ["ls"]),
         helper.make_node("Add", ["b", "ls"], ["y"])],
        [value("x", FLOAT, [2, 3, 4])], [y, value("l2", FLOAT, None)], [init("axes", np.array([1], np.int64))], opset=18)
    out["gathers_scatters"] = model(
        [helper.make_node("GatherElements", ["x", "gi"], ["ge"], axis=1),
         helper.make_node("GatherND", ["x", "ndi"], ["gn"], batch_dims=1),
         helper.make_node("ScatterElements", ["x", "si", "su"], ["se"], axis=2, reduction="add"),
         helper.make_node("ScatterND", ["se", "ndi2", "nu"], ["sn"], reduction="max"),
         helper.make_node("CumSum", ["sn", "axis"], ["cs"], exclusive=1, reverse=1),
         helper.make_node("Trilu", ["cs", "k"], ["tr"], upper=0),
         helper.make_node("OneHot", ["oi", "depth", "ov"], ["oh"], axis=-1),
         helper.make_node("ReduceSum", ["oh", "ax1"], ["ohs"], keepdims=0),
         helper.make_node("Add", ["tr", "ohs"], ["y"])],
        [value("x", FLOAT, [2, 3, 4])], [y, value("ge", FLOAT, None), value("gn", FLOAT, None)],
        [init("gi", np.array([[[0, 2, 1, -1], [1, 0, 2, 2]], [[2, 2, 0, 1], [-3, 1, 1, 0]]], np.int64)),
         init("ndi", np.array([[[1], [-1]], [[0], [2]]], np.int64)),
         init("si", np.array([[[0, 3], [1, -1], [2, 2]], [[3, 0], [0, 0], [1, 2]]], np.int64)), init("su", w(2, 3, 2)),
         init("ndi2", np.array([[0, 1], [1, -1]], np.int64)), init("nu", w(2, 4)),
         init("axis", np.array(2, np.int64)), init("k", np.array(1, np.int64)),
         init("oi", np.array([[0, 5, -1, 2], [1, 1, 9, 0], [3, -4, 2, 2]], np.int64)), init("depth", np.array(4, np.int64)),
         init("ov", np.array([0.0, 1.0], np.float32)), init("ax1", np.array([1], np.int64))], opset=18)
    out["einsum"] = model(
        [helper.make_node("Einsum", ["x", "w"], ["a"], equation="bij,jk->bik"),
         helper.make_node("Einsum", ["a"], ["t"], equation="bik->kbi"),
         helper.make_node("Einsum", ["t", "t"], ["g"], equation="kbi,kbj->kij"),
         helper.make_node("Einsum", ["g"], ["y"], equation="...ii->...i")],
        [value("x", FLOAT, [2, 3, 4])], [y], [init("w", w(4, 5))], opset=12)
    # Shapes decided at run time, detection post-processing and control flow (barriers and
    # continuations in ExecutionPlan; SelectionOps; ControlFlowOps).
    out["runtime_shapes"] = model(
        [helper.make_node("ReduceMax", ["x"], ["m"], keepdims=0),
         helper.make_node("Cast", ["m"], ["mi"], to=INT64),
         helper.make_node("Range", ["zero", "mi", "one"], ["r"]),
         helper.make_node("Greater", ["x", "half"], ["mask"]),
         helper.make_node("NonZero", ["mask"], ["nz"]),
         helper.make_node("Shape", ["nz"], ["nzs"]),
         helper.make_node("Slice", ["nzs", "one1", "two1"], ["count"]),
         helper.make_node("Reshape", ["x", "target"], ["flat"]),
         helper.make_node("TopK", ["flat", "k"], ["v", "i"]),
         helper.make_node("Concat", ["count", "one1"], ["tile"], axis=0),
         helper.make_node("Tile", ["v", "tile"], ["y"])],
        [value("x", FLOAT, [1, 2, 5, 5])], [y, value("r", INT64, None), value("i", INT64, None)],
        [init("zero", np.array(0, np.int64)), init("one", np.array(1, np.int64)), init("half", np.array(0.5, np.float32)),
         init("target", np.array([1, -1], np.int64)), init("k", np.array([3], np.int64)),
         init("one1", np.array([1], np.int64)), init("two1", np.array([2], np.int64))])
    out["nms_compress"] = model(
        [helper.make_node("NonMaxSuppression", ["boxes", "scores", "max", "iou", "thr"], ["sel"], center_point_box=1),
         helper.make_node("Gather", ["sel", "two"], ["box"], axis=1),
         helper.make_node("Greater", ["box", "zero"], ["keep"]),
         helper.make_node("Compress", ["box", "keep"], ["y"], axis=0)],
        [value("boxes", FLOAT, [1, 6, 4]), value("scores", FLOAT, [1, 2, 6])], [value("y", INT64, None)],
        [init("max", np.array([3], np.int64)), init("iou", np.array([0.5], np.float32)),
         init("thr", np.array([0.1], np.float32)), init("two", np.array(2, np.int64)), init("zero", np.array(0, np.int64))])
    then_graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["t"])], "then", [], [value("t", FLOAT, None)])
    else_graph = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [], [value("e", FLOAT, None)])
    body = helper.make_graph(
        [helper.make_node("Add", ["acc_in", "x"], ["acc_out"]), helper.make_node("Identity", ["c"], ["c_out"]),
         helper.make_node("Cast", ["i"], ["scan"], to=FLOAT)],
        "body", [value("i", INT64, []), value("c", TensorProto.BOOL, []), value("acc_in", FLOAT, None)],
        [value("c_out", TensorProto.BOOL, []), value("acc_out", FLOAT, None), value("scan", FLOAT, [])])
    out["if_loop"] = model(
        [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
         helper.make_node("Greater", ["s", "fzero"], ["cond"]),
         helper.make_node("If", ["cond"], ["b"], then_branch=then_graph, else_branch=else_graph),
         helper.make_node("Loop", ["trips", "true", "b"], ["y", "scans"], body=body)],
        [value("x", FLOAT, [1, 2, 3])], [y, value("scans", FLOAT, None)],
        [init("fzero", np.array(0, np.float32)), init("trips", np.array(3, np.int64)),
         init("true", np.array(True))])
    # DCNv3 as torch.onnx.export writes dcnv3_core_pytorch: the DCNv3Decomposition pass's pattern
    # (mutated constants, sizes and attributes reach its checks).
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import deformable_decompositions
    out["dcnv3_decomposition"] = onnx.load_from_string(deformable_decompositions.dcnv3_models(1, 4, 5, 2, 2)[1])
    # The same as the TorchScript exporter writes it (sampling base from Shape nodes): the
    # StaticShapeFolding pass folds it from the declared input shapes, then the pass above fuses it.
    out["dcnv3_decomposition_torchscript"] = onnx.load(
        os.path.join(REPO, "Tests", "vectors", "dcnv3_export", "core_g2_k3_legacy.onnx"))
    # Shape arithmetic on a static input (StaticShapeFolding): Shape with start / end, Size, Gather, Range,
    # ConstantOfShape, a Reshape with 0 and -1 sizes.
    out["static_shape_chain"] = model(
        [helper.make_node("Shape", ["x"], ["hw"], start=2, end=4),
         helper.make_node("Size", ["x"], ["count"]),
         helper.make_node("Gather", ["hw", "izero"], ["h"], axis=0),
         helper.make_node("Gather", ["hw", "one"], ["w"], axis=0),
         helper.make_node("Mul", ["h", "w"], ["area_0"]),
         helper.make_node("Unsqueeze", ["area_0", "zero"], ["area"]),
         helper.make_node("Concat", ["zero", "minus_one", "area"], ["sizes"], axis=0),
         helper.make_node("Reshape", ["x", "sizes"], ["flat"]),
         helper.make_node("Range", ["izero", "count", "one"], ["ramp"]),
         helper.make_node("Cast", ["ramp"], ["ramp_f"], to=FLOAT),
         helper.make_node("Reshape", ["ramp_f", "flat_shape"], ["ramp_flat"]),
         helper.make_node("ConstantOfShape", ["hw"], ["ones"], value=numpy_helper.from_array(np.ones(1, np.float32))),
         helper.make_node("Add", ["flat", "ramp_flat"], ["sum"]),
         helper.make_node("ReduceSum", ["ones", "none"], ["total"], keepdims=0),
         helper.make_node("Mul", ["sum", "total"], ["y"])],
        [value("x", FLOAT, [2, 3, 4, 5])], [value("y", FLOAT, None)],
        [init("zero", np.array([0], np.int64)), init("minus_one", np.array([-1], np.int64)),
         init("izero", np.array(0, np.int64)), init("one", np.array(1, np.int64)),
         init("flat_shape", np.array([2, 3, 20], np.int64)), init("none", np.array([], np.int64))])
    # A Linear layer on a rank-3 input (MatMul + bias Add: fused into FusedMatMul) and a product of
    # two run-time operands (B packed per run).
    out["linear_bias_runtime_product"] = model(
        [helper.make_node("MatMul", ["x", "lw"], ["mm"]),
         helper.make_node("Add", ["mm", "lb"], ["lin"]),
         helper.make_node("Transpose", ["lin"], ["lt"], perm=[0, 2, 1]),
         helper.make_node("MatMul", ["lin", "lt"], ["y"])],
        [value("x", FLOAT, ["batch", 7, 3])], [y], [init("lw", w(3, 17)), init("lb", w(17))])
    # An FPN step: a convolution's map resized to another's size (Shape, Slice, Concat), added:
    # the layout pass makes it ChannelsLastResize / ChannelsLastShape.
    out["fpn_resize_to_shape"] = model(
        [helper.make_node("Conv", ["x", "fw"], ["big"], pads=[1, 1, 1, 1]),
         helper.make_node("Conv", ["x", "fw"], ["small"], pads=[1, 1, 1, 1], strides=[2, 2]),
         helper.make_node("Shape", ["big"], ["hw"], start=2),
         helper.make_node("Shape", ["small"], ["ss"], end=2),
         helper.make_node("Concat", ["ss", "hw"], ["target"], axis=0),
         helper.make_node("Resize", ["small", "", "", "target"], ["up"], mode="linear"),
         helper.make_node("Add", ["big", "up"], ["y"])],
        [value("x", FLOAT, [1, 3, 9, 11])], [y], [init("fw", w(8, 3, 3, 3))], opset=18)
    return out


def main():
    os.makedirs(CORPUS, exist_ok=True)
    rng = np.random.default_rng(20261121)
    for name, m in seeds(rng).items():
        data = m.SerializeToString()
        with open(os.path.join(CORPUS, f"{name}.onnx"), "wb") as f:
            f.write(data)
        print(f"{name}.onnx: {len(data)} bytes")


if __name__ == "__main__":
    main()
