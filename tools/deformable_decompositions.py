"""ONNX graphs of the grid_sample decompositions of DCNv3 and multi-scale deformable attention, as
the frameworks' PyTorch fallbacks compute them and torch.onnx.export writes them (Pad, Reshape,
Transpose, Mul/Add/Sub, GridSample, Mul, ReduceSum; static shapes), and the fused one-node models
with the same inputs. Used by bench/deformable_attention.py (onnxruntime runs the decomposition: it
has no DCNv3 or MSDA operator) and by Tests/python/test_deformable_attention.py (DeformRT's fused
op against onnxruntime running the decomposition).

dcnv3_models: InternImage's dcnv3_core_pytorch (classification/ops_dcnv3/functions/dcnv3_func.py)
    node for node as torch.onnx.export(dynamo=True) writes it (equal pads, so its padding is the
    kernel's); the constant sampling base (reference points plus the dilation grid times
    offset_scale, normalised by the padded size) is an initializer, as the exporter folds it.
    DeformRT's DCNv3Decomposition pass runs it on the fused kernel.
msda_models: mmcv's multi_scale_deformable_attn_pytorch (mmcv/ops/multi_scale_deform_attn.py), value
    split into the levels, one GridSample per level, stacked and weighted, node for node as
    torch.onnx.export(dynamo=True) writes it (tools/export_msda_torch.py), so DeformRT's
    decomposition pass runs it on the fused kernel.
numpy + onnx only.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _model(nodes, inputs: Dict[str, np.ndarray], output_shape, initializers, name, domains=(), opset=OPSET) -> bytes:
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape))
         for k, v in inputs.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(output_shape))],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()])
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    return helper.make_model(graph, opset_imports=opsets, ir_version=9).SerializeToString()


def _ints(values: Sequence[int]) -> np.ndarray:
    return np.array(list(values), np.int64)


def dcnv3_models(n, h, w, group, group_channels, kernel=3, stride=1, pad=1, dilation=1, offset_scale=1.0,
                 domain="mmdeploy", op="TRTDCNv3") -> Tuple[bytes, bytes, Dict[str, Tuple[int, ...]]]:
    """(fused model, decomposed model, input shapes) for square kernels and equal pads."""
    c = group * group_channels
    p = kernel * kernel
    hp, wp = h + 2 * pad, w + 2 * pad
    half = (dilation * (kernel - 1)) // 2
    ho = (hp - (dilation * (kernel - 1) + 1)) // stride + 1
    wo = (wp - (dilation * (kernel - 1) + 1)) // stride + 1
    shapes = {"input": (n, h, w, c), "offset": (n, ho, wo, group * p * 2), "mask": (n, ho, wo, group * p)}
    feeds = {k: np.zeros(v, np.float32) for k, v in shapes.items()}
    attrs = dict(kernel_h=kernel, kernel_w=kernel, stride_h=stride, stride_w=stride, pad_h=pad, pad_w=pad,
                 dilation_h=dilation, dilation_w=dilation, group=group, group_channels=group_channels,
                 offset_scale=float(offset_scale), im2col_step=256, remove_center=0)
    fused = _model([helper.make_node(op, ["input", "offset", "mask"], ["y"], domain=domain, **attrs)], feeds,
                   (n, ho, wo, c), {}, "dcnv3", domains=[domain])

    # The graph torch.onnx.export(dynamo=True) writes for dcnv3_core_pytorch (opset 20; compared
    # node by node with the committed exports in Tests/python/test_dcnv3_decomposition.py): the
    # sampling base [N, Ho, Wo, G*P*2] (x, y interleaved; point k = i * kernel + j, i along x)
    # folded to one initializer, offset * offset_scale / norm, * 2 - 1, and Reshapes to the
    # shape their input has already dropped (G = 1; offset_scale 1 drops the Mul).
    ref_x = (half + 0.5 + np.arange(wo) * stride) / wp
    ref_y = (half + 0.5 + np.arange(ho) * stride) / hp
    taps = [(i, j) for i in range(kernel) for j in range(kernel)]
    grid_x = np.array([(-half + i * dilation) / wp for i, _ in taps])
    grid_y = np.array([(-half + j * dilation) / hp for _, j in taps])
    base = np.zeros((n, ho, wo, group, p, 2))
    base[..., 0] = ref_x[None, None, :, None, None] + grid_x * offset_scale
    base[..., 1] = ref_y[None, :, None, None, None] + grid_y * offset_scale
    inits = {
        "pads": _ints([0, pad, pad, 0, 0, pad, pad, 0]),
        "base": base.reshape(n, ho, wo, group * p * 2).astype(np.float32),
        "offset_scale": np.array(offset_scale, np.float32),
        "norm": np.tile(np.array([wp, hp], np.float32), group * p).reshape(1, 1, 1, -1),
        "two": np.array(2, np.float32), "one": np.array(1, np.float32),
        "image_flat": _ints([n, hp * wp, c]), "image_shape": _ints([n * group, group_channels, hp, wp]),
        "grid_split": _ints([n, ho * wo, group, p, 2]), "grid_shape": _ints([n * group, ho * wo, p, 2]),
        "mask_split": _ints([n, ho * wo, group, p]), "mask_shape": _ints([n * group, 1, ho * wo, p]),
        "last": _ints([-1]), "out_flat": _ints([n, c, ho * wo]), "out_shape": _ints([n, ho, wo, c]),
    }
    reshape = dict(allowzero=1)
    scaled = "offset"
    nodes = [helper.make_node("Pad", ["input", "pads"], ["padded"], mode="constant")]
    if offset_scale != 1:
        nodes.append(helper.make_node("Mul", ["offset", "offset_scale"], ["scaled"]))
        scaled = "scaled"
    nodes += [
        helper.make_node("Div", [scaled, "norm"], ["moved"]),
        helper.make_node("Add", ["base", "moved"], ["locations"]),
        helper.make_node("Mul", ["locations", "two"], ["twice"]),
        helper.make_node("Sub", ["twice", "one"], ["grids"]),
        helper.make_node("Reshape", ["padded", "image_flat"], ["i1"], **reshape),
        helper.make_node("Transpose", ["i1"], ["i2"], perm=[0, 2, 1]),
        helper.make_node("Reshape", ["i2", "image_shape"], ["image"], **reshape),
        helper.make_node("Reshape", ["grids", "grid_split"], ["g1"], **reshape),
        helper.make_node("Transpose", ["g1"], ["g2"], perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["g2", "grid_shape"], ["grid"], **reshape),
        helper.make_node("GridSample", ["image", "grid"], ["sampled"], mode="linear", padding_mode="zeros",
                         align_corners=0),
        helper.make_node("Reshape", ["mask", "mask_split"], ["m1"], **reshape),
        helper.make_node("Transpose", ["m1"], ["m2" if group > 1 else "m"], perm=[0, 2, 1, 3]),
    ]
    if group > 1:
        nodes.append(helper.make_node("Reshape", ["m2", "mask_shape"], ["m"], **reshape))
    nodes += [
        helper.make_node("Mul", ["sampled", "m"], ["weighted"]),
        helper.make_node("ReduceSum", ["weighted", "last"], ["summed"], keepdims=0, noop_with_empty_axes=0),
    ]
    if group > 1:
        nodes.append(helper.make_node("Reshape", ["summed", "out_flat"], ["o1"], **reshape))
    nodes += [
        helper.make_node("Transpose", ["o1" if group > 1 else "summed"], ["o2"], perm=[0, 2, 1]),
        helper.make_node("Reshape", ["o2", "out_shape"], ["y"], **reshape),
    ]
    used = {name for node in nodes for name in node.input}
    inits = {k: v for k, v in inits.items() if k in used}
    decomposed = _model(nodes, feeds, (n, ho, wo, c), inits, "dcnv3_decomposed", opset=20)
    return fused, decomposed, shapes


def msda_models(bs, spatial_shapes: Sequence[Tuple[int, int]], heads, dim, queries, points,
                domain="mmdeploy", op="MMCVMultiScaleDeformableAttention"
                ) -> Tuple[bytes, bytes, Dict[str, Tuple[int, ...]]]:
    """(fused model, decomposed model, input shapes); spatial_shapes and level_start_index are
    initializers of the fused model."""
    levels = len(spatial_shapes)
    areas = [h * w for h, w in spatial_shapes]
    starts = np.concatenate([[0], np.cumsum(areas)[:-1]]).astype(np.int64)
    keys = int(sum(areas))
    shapes = {"value": (bs, keys, heads, dim), "sampling_locations": (bs, queries, heads, levels, points, 2),
              "attention_weights": (bs, queries, heads, levels, points)}
    feeds = {k: np.zeros(v, np.float32) for k, v in shapes.items()}
    fused = _model([helper.make_node(op, ["value", "spatial_shapes", "level_start_index", "sampling_locations",
                                          "attention_weights"], ["y"], domain=domain, im2col_step=64)],
                   feeds, (bs, queries, heads * dim),
                   {"spatial_shapes": np.array(spatial_shapes, np.int64), "level_start_index": starts},
                   "msda", domains=[domain])

    # Node for node what torch.onnx.export(dynamo=True) writes for mmcv's function (Split, per
    # level Reshape / Transpose / Reshape and Gather / Transpose / Reshape, GridSample, Unsqueeze
    # + Concat for torch.stack, Mul, ReduceSum, Reshape, Transpose), so DeformRT's decomposition
    # pass sees the same graph as in an export (test_msda_decomposition.py compares the two).
    inits: Dict[str, np.ndarray] = {
        "two": np.array(2, np.float32), "one": np.array(1, np.float32), "split_sizes": _ints(areas),
        "grid_shape": _ints([bs * heads, queries, points, 2]),
        "stack_shape": _ints([bs * heads, dim, queries, levels * points]),
        "weight_shape": _ints([bs * heads, 1, queries, levels * points]), "last": _ints([-1]),
        "out_flat": _ints([bs, heads * dim, queries]), "stack_axis": _ints([-2]),
    }
    parts = [f"l{level}_v" for level in range(levels)]
    nodes = [helper.make_node("Split", ["value", "split_sizes"], parts, axis=1),
             helper.make_node("Mul", ["sampling_locations", "two"], ["twice"]),
             helper.make_node("Sub", ["twice", "one"], ["grids"])]
    stacked: List[str] = []
    for level, (h, w) in enumerate(spatial_shapes):
        s = f"l{level}_"
        inits[s + "flat_shape"] = _ints([bs, h * w, heads * dim])
        inits[s + "image_shape"] = _ints([bs * heads, dim, h, w])
        inits[s + "index"] = np.array(level, np.int64)
        nodes += [
            helper.make_node("Reshape", [s + "v", s + "flat_shape"], [s + "v1"]),
            helper.make_node("Transpose", [s + "v1"], [s + "v2"], perm=[0, 2, 1]),
            helper.make_node("Reshape", [s + "v2", s + "image_shape"], [s + "image"]),
            helper.make_node("Gather", ["grids", s + "index"], [s + "g"], axis=3),
            helper.make_node("Transpose", [s + "g"], [s + "g1"], perm=[0, 2, 1, 3, 4]),
            helper.make_node("Reshape", [s + "g1", "grid_shape"], [s + "grid"]),
            helper.make_node("GridSample", [s + "image", s + "grid"], [s + "sampled"], mode="bilinear",
                             padding_mode="zeros", align_corners=0),
        ]
    nodes += [
        helper.make_node("Transpose", ["attention_weights"], ["w1"], perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["w1", "weight_shape"], ["weights"]),
    ]
    for level in range(levels):
        nodes.append(helper.make_node("Unsqueeze", [f"l{level}_sampled", "stack_axis"], [f"l{level}_stacked"]))
        stacked.append(f"l{level}_stacked")
    nodes += [
        helper.make_node("Concat", stacked, ["all"], axis=-2),
        helper.make_node("Reshape", ["all", "stack_shape"], ["samples"]),
        helper.make_node("Mul", ["samples", "weights"], ["weighted"]),
        helper.make_node("ReduceSum", ["weighted", "last"], ["summed"], keepdims=0),
        helper.make_node("Reshape", ["summed", "out_flat"], ["o1"]),
        helper.make_node("Transpose", ["o1"], ["y"], perm=[0, 2, 1]),
    ]
    decomposed = _model(nodes, feeds, (bs, queries, heads * dim), inits, "msda_decomposed")
    return fused, decomposed, shapes


def random_feeds(shapes: Dict[str, Tuple[int, ...]], seed: int,
                 levels: Sequence[Tuple[int, int]] = ()) -> Dict[str, np.ndarray]:
    """Inputs in the ranges the modules produce: values N(0, 1); DCNv3 offsets ~ N(0, 2) pixels and
    masks U(0, 0.25); MSDA attention weights softmax-normalised over their levels and points, and
    sampling locations as Deformable DETR makes them (`levels` given): a reference point per query
    plus offsets ~ N(0, 2) pixels of each level. The reference point is the query's own position
    when there is one query per key (the encoder), uniform otherwise (the decoder). Without
    `levels`, locations are U(-0.05, 1.05)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, shape in shapes.items():
        if name in ("input", "value"):
            feeds[name] = rng.standard_normal(shape, dtype=np.float32)
        elif name == "offset":
            feeds[name] = (rng.standard_normal(shape) * 2).astype(np.float32)
        elif name == "sampling_locations":
            if not levels:
                feeds[name] = rng.uniform(-0.05, 1.05, shape).astype(np.float32)
                continue
            bs, queries, heads, n_levels, points, _ = shape
            if queries == sum(h * w for h, w in levels):
                reference = np.concatenate([
                    np.stack(np.meshgrid((np.arange(w) + 0.5) / w, (np.arange(h) + 0.5) / h), -1).reshape(-1, 2)
                    for h, w in levels])[None].repeat(bs, 0)
            else:
                reference = rng.uniform(0, 1, (bs, queries, 2))
            size = np.array([[w, h] for h, w in levels], np.float64)  # (x, y) normaliser per level
            offsets = rng.standard_normal(shape) * 2 / size[None, None, None, :, None, :]
            feeds[name] = (reference[:, :, None, None, None, :] + offsets).astype(np.float32)
        elif name == "mask":
            # Already-normalised modulation (the module's softmax over the points): ~1 / 9 each.
            feeds[name] = rng.uniform(0, 0.25, shape).astype(np.float32)
        else:
            logits = rng.standard_normal(shape[:3] + (shape[3] * shape[4],))
            e = np.exp(logits - logits.max(-1, keepdims=True))
            feeds[name] = (e / e.sum(-1, keepdims=True)).reshape(shape).astype(np.float32)
    return feeds
