#!/usr/bin/env python3
"""Detection heads with data-dependent post-processing, built with onnx.helper the way
torch.onnx.export writes them (numpy + onnx only; tests import the builders).

    python3 tools/make_detection_heads.py out_dir/   # writes centernet_head.onnx, faster_rcnn_head.onnx

- centernet_head: a small conv head on a feature map (heatmap with Sigmoid, wh and offset maps),
  CenterNet's decoding: the 3x3 MaxPool "NMS" trick (keep = heatmap == maxpool(heatmap)),
  TopK over class x position, integer Div to class / y / x, the wh and offset values of the
  selected positions gathered per batch (Gather on the flattened [B*H*W, 2] maps with batch
  offsets: what GatherElements would do), boxes = centre +- wh / 2.
- faster_rcnn_head: proposals and per-class scores -> NonMaxSuppression (run-time thresholds) ->
  the selected boxes gathered -> RoiAlign on the feature map -> two fully connected layers and a
  Softmax classifier, as a Faster R-CNN second stage runs on the kept proposals.
Weights are seeded random; shapes are small so the tests stay fast.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F, I64 = TensorProto.FLOAT, TensorProto.INT64


def _init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def _model(nodes, inputs, outputs, inits, opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "head", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="deformrt-tools")
    model.ir_version = 8
    return model


def centernet_head(channels=8, classes=3, height=12, width=10, k=7, seed=0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)

    def w(*shape, scale=0.3):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    hw = height * width
    nodes = [
        helper.make_node("Conv", ["feat", "w1", "b1"], ["h1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h1"], ["h1r"]),
        helper.make_node("Conv", ["h1r", "w_hm", "b_hm"], ["hm_logits"]),
        helper.make_node("Sigmoid", ["hm_logits"], ["hm"]),
        helper.make_node("Conv", ["h1r", "w_wh", "b_wh"], ["wh"]),
        helper.make_node("Conv", ["h1r", "w_off", "b_off"], ["off"]),
        # The MaxPool NMS trick.
        helper.make_node("MaxPool", ["hm"], ["hmax"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Equal", ["hmax", "hm"], ["keep"]),
        helper.make_node("Cast", ["keep"], ["keepf"], to=F),
        helper.make_node("Mul", ["hm", "keepf"], ["peaks"]),
        # TopK over classes x positions, per batch.
        helper.make_node("Shape", ["peaks"], ["pshape"]),
        helper.make_node("Gather", ["pshape", "zero"], ["batch"], axis=0),
        helper.make_node("Concat", ["batch", "minus1"], ["flat_shape"], axis=0),
        helper.make_node("Reshape", ["peaks", "flat_shape"], ["flat"]),
        helper.make_node("TopK", ["flat", "k"], ["scores", "inds"], axis=1),
        helper.make_node("Div", ["inds", "hw"], ["classes"]),
        helper.make_node("Mul", ["classes", "hw"], ["class_base"]),
        helper.make_node("Sub", ["inds", "class_base"], ["pos"]),
        helper.make_node("Div", ["pos", "w_const"], ["ys"]),
        helper.make_node("Mul", ["ys", "w_const"], ["y_base"]),
        helper.make_node("Sub", ["pos", "y_base"], ["xs"]),
        # Gather wh / offset at the kept positions of each batch: [B*H*W, 2] rows at b*H*W + pos.
        helper.make_node("Range", ["zero_s", "batch_s", "one_s"], ["batch_ids"]),
        helper.make_node("Unsqueeze", ["batch_ids", "one"], ["batch_col"]),
        helper.make_node("Mul", ["batch_col", "hw"], ["batch_base"]),
        helper.make_node("Add", ["pos", "batch_base"], ["rows"]),
        helper.make_node("Transpose", ["wh"], ["wh_t"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["wh_t", "rows2"], ["wh_rows"]),
        helper.make_node("Gather", ["wh_rows", "rows"], ["wh_sel"], axis=0),
        helper.make_node("Transpose", ["off"], ["off_t"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["off_t", "rows2"], ["off_rows"]),
        helper.make_node("Gather", ["off_rows", "rows"], ["off_sel"], axis=0),
        # Boxes: centre (x + off_x, y + off_y) -+ wh / 2.
        helper.make_node("Cast", ["xs"], ["xf"], to=F),
        helper.make_node("Cast", ["ys"], ["yf"], to=F),
        helper.make_node("Unsqueeze", ["xf", "two_axis"], ["xc0"]),
        helper.make_node("Unsqueeze", ["yf", "two_axis"], ["yc0"]),
        helper.make_node("Concat", ["xc0", "yc0"], ["centre0"], axis=2),
        helper.make_node("Add", ["centre0", "off_sel"], ["centre"]),
        helper.make_node("Mul", ["wh_sel", "half"], ["half_wh"]),
        helper.make_node("Sub", ["centre", "half_wh"], ["top_left"]),
        helper.make_node("Add", ["centre", "half_wh"], ["bottom_right"]),
        helper.make_node("Concat", ["top_left", "bottom_right"], ["boxes"], axis=2),
    ]
    inits = [
        _init("w1", w(channels, channels, 3, 3)), _init("b1", w(channels)),
        _init("w_hm", w(classes, channels, 1, 1)), _init("b_hm", w(classes) - 1.0),
        _init("w_wh", w(2, channels, 1, 1)), _init("b_wh", w(2) + 2.0),
        _init("w_off", w(2, channels, 1, 1)), _init("b_off", w(2)),
        _init("zero", np.array([0], np.int64)), _init("minus1", np.array([-1], np.int64)),
        _init("k", np.array([k], np.int64)), _init("hw", np.array(hw, np.int64)),
        _init("w_const", np.array(width, np.int64)), _init("zero_s", np.array(0, np.int64)),
        _init("one_s", np.array(1, np.int64)), _init("one", np.array([1], np.int64)),
        _init("rows2", np.array([-1, 2], np.int64)), _init("two_axis", np.array([2], np.int64)),
        _init("half", np.array(0.5, np.float32)),
    ]
    nodes.insert(12, helper.make_node("Squeeze", ["batch", "zero"], ["batch_s"]))
    inputs = [helper.make_tensor_value_info("feat", F, ["batch", channels, height, width])]
    outputs = [helper.make_tensor_value_info(n, t, None)
               for n, t in (("scores", F), ("classes", I64), ("boxes", F), ("hm", F))]
    return _model(nodes, inputs, outputs, inits)


def faster_rcnn_head(channels=6, classes=4, pooled=5, hidden=16, seed=1) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)

    def w(*shape, scale=0.2):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    nodes = [
        helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_out", "iou", "score_thr"], ["selected"]),
        helper.make_node("Gather", ["selected", "zero"], ["batch_idx"], axis=1),
        helper.make_node("Gather", ["selected", "two"], ["box_idx"], axis=1),
        helper.make_node("Shape", ["boxes"], ["bshape"]),
        helper.make_node("Gather", ["bshape", "one"], ["n_boxes"], axis=0),
        helper.make_node("Mul", ["batch_idx", "n_boxes"], ["base"]),
        helper.make_node("Add", ["base", "box_idx"], ["flat_idx"]),
        helper.make_node("Reshape", ["boxes", "rows4"], ["flat_boxes"]),
        helper.make_node("Gather", ["flat_boxes", "flat_idx"], ["sel_boxes"], axis=0),
        # NMS takes (y1, x1, y2, x2); RoiAlign (x1, y1, x2, y2).
        helper.make_node("Gather", ["sel_boxes", "yx_to_xy"], ["rois"], axis=1),
        helper.make_node("RoiAlign", ["feat", "rois", "batch_idx"], ["pooled"], output_height=pooled,
                         output_width=pooled, sampling_ratio=2, spatial_scale=0.25, mode="avg"),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc1_w", "fc1_b"], ["fc1"], transB=1),
        helper.make_node("Relu", ["fc1"], ["fc1r"]),
        helper.make_node("Gemm", ["fc1r", "cls_w", "cls_b"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    inits = [
        _init("zero", np.array(0, np.int64)), _init("one", np.array(1, np.int64)),
        _init("two", np.array(2, np.int64)), _init("rows4", np.array([-1, 4], np.int64)),
        _init("yx_to_xy", np.array([1, 0, 3, 2], np.int64)),
        _init("fc1_w", w(hidden, channels * pooled * pooled)), _init("fc1_b", w(hidden)),
        _init("cls_w", w(classes + 1, hidden)), _init("cls_b", w(classes + 1)),
    ]
    inputs = [helper.make_tensor_value_info("feat", F, ["batch", channels, "h", "w"]),
              helper.make_tensor_value_info("boxes", F, ["batch", "n", 4]),
              helper.make_tensor_value_info("scores", F, ["batch", classes, "n"]),
              helper.make_tensor_value_info("max_out", I64, [1]),
              helper.make_tensor_value_info("iou", F, [1]),
              helper.make_tensor_value_info("score_thr", F, [1])]
    outputs = [helper.make_tensor_value_info("selected", I64, None), helper.make_tensor_value_info("probs", F, None),
               helper.make_tensor_value_info("rois", F, None)]
    return _model(nodes, inputs, outputs, inits)


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out, exist_ok=True)
    for name, model in (("centernet_head", centernet_head()), ("faster_rcnn_head", faster_rcnn_head())):
        onnx.save(model, os.path.join(out, f"{name}.onnx"))


if __name__ == "__main__":
    main()
