"""Exports multi-scale deformable attention with torch.onnx.export the ways users do, and saves each
model with its inputs and torch's own output, for Tests/python/test_msda_decomposition.py:

    Tests/vectors/msda_exports/<name>.onnx   the exported model (weights inside, fixed seed)
    Tests/vectors/msda_exports/<name>.npz    inputs (keys = graph input names) and torch's output
                                             ("output")

Models:
  <function>_<exporter>_<config>   the PyTorch fallback alone, as torch.onnx.export writes it:
      function mmcv: mmcv's `multi_scale_deformable_attn_pytorch`
          (open-mmlab/mmcv, mmcv/ops/multi_scale_deform_attn.py, commit 049b472f35), transcribed
          below line for line;
      function hf: Hugging Face transformers' version, since late 2024 the forward of the class
          `MultiScaleDeformableAttention` (huggingface/transformers,
          src/transformers/models/deformable_detr/modeling_deformable_detr.py, commit 004edfe2dc;
          before that the function `multi_scale_deformable_attention` in the same file), which
          takes the level sizes as a Python list (`value_spatial_shapes_list`) and splits value
          by it; transcribed below. The two compute the same thing with the same torch calls.
      exporter dynamo: torch.onnx.export(..., dynamo=True), the default exporter of the torch used
          here (2.13; opset 20: GridSample mode "linear", every reshape shape a constant);
      exporter legacy: torch.onnx.export(..., dynamo=False), the TorchScript exporter, still in
          torch 2.13, which the Deformable DETR / mmdeploy exports users publish were made with
          (mmdeploy's tool drives it; opset 17 here: flatten() becomes a Reshape whose shape is
          computed by Shape -> Slice -> Concat, the other reshapes are constants).
  encoder_<way>                     a Deformable-DETR-style encoder layer (d_model 32, 4 heads, 3
      levels 7x9, 4x5, 2x3, 3 points, batch 2): value projection, sampling-offset and
      attention-weight Linear + Softmax over levels * points, reference points, the attention,
      output projection, residual + LayerNorm, FFN + residual + LayerNorm (Deformable DETR's
      DeformableTransformerEncoderLayer), exported
        custom_op: the attention as mmdeploy writes it (an autograd.Function whose symbolic is
            mmdeploy's ms_deform_attn_default: mmdeploy::MMCVMultiScaleDeformableAttention with
            value, spatial_shapes, level_start_index, sampling_locations, attention_weights and
            im2col_step), through the legacy exporter;
        custom_op_dynamo: the same op from a torch.library custom op and an onnxscript translation
            (custom_translation_table), through the dynamo exporter;
        decomposed: mmcv's function (dynamo exporter); decomposed_legacy: the legacy exporter.

Shapes are static (the level sizes are Python ints, as in transformers; mmcv's models iterate a
spatial_shapes tensor, which the exporters fold to the same constants when it is fixed).

Run with /work/venv-torch/bin/python (torch + onnxscript); the tests only read the committed files.
"""
from __future__ import annotations

import math
import os
import sys
import warnings
from typing import List, Sequence, Tuple

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Tests", "vectors", "msda_exports")


# ---- the two framework functions, transcribed -------------------------------------------------

def mmcv_multi_scale_deformable_attn_pytorch(value, value_spatial_shapes, sampling_locations, attention_weights):
    """mmcv/ops/multi_scale_deform_attn.py: multi_scale_deformable_attn_pytorch."""
    bs, _, num_heads, embed_dims = value.shape
    _, num_queries, num_heads, num_levels, num_points, _ = sampling_locations.shape
    value_list = value.split([H_ * W_ for H_, W_ in value_spatial_shapes], dim=1)
    sampling_grids = 2 * sampling_locations - 1
    sampling_value_list = []
    for level, (H_, W_) in enumerate(value_spatial_shapes):
        # bs, H_*W_, num_heads, embed_dims -> bs, H_*W_, num_heads*embed_dims ->
        # bs, num_heads*embed_dims, H_*W_ -> bs*num_heads, embed_dims, H_, W_
        value_l_ = value_list[level].flatten(2).transpose(1, 2).reshape(bs * num_heads, embed_dims, H_, W_)
        # bs, num_queries, num_heads, num_points, 2 -> bs, num_heads, num_queries, num_points, 2 ->
        # bs*num_heads, num_queries, num_points, 2
        sampling_grid_l_ = sampling_grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        # bs*num_heads, embed_dims, num_queries, num_points
        sampling_value_l_ = F.grid_sample(value_l_, sampling_grid_l_, mode='bilinear', padding_mode='zeros',
                                          align_corners=False)
        sampling_value_list.append(sampling_value_l_)
    # (bs, num_queries, num_heads, num_levels, num_points) -> (bs, num_heads, num_queries, num_levels, num_points)
    # -> (bs, num_heads, 1, num_queries, num_levels*num_points)
    attention_weights = attention_weights.transpose(1, 2).reshape(bs * num_heads, 1, num_queries,
                                                                  num_levels * num_points)
    output = (torch.stack(sampling_value_list, dim=-2).flatten(-2) *
              attention_weights).sum(-1).view(bs, num_heads * embed_dims, num_queries)
    return output.transpose(1, 2).contiguous()


class HFMultiScaleDeformableAttention(nn.Module):
    """transformers/models/deformable_detr/modeling_deformable_detr.py: MultiScaleDeformableAttention
    (the hub-kernel-replaceable module; its forward is the PyTorch fallback)."""

    def forward(self, value, value_spatial_shapes, value_spatial_shapes_list, level_start_index, sampling_locations,
                attention_weights, im2col_step: int):
        batch_size, _, num_heads, hidden_dim = value.shape
        _, num_queries, num_heads, num_levels, num_points, _ = sampling_locations.shape
        value_list = value.split([height * width for height, width in value_spatial_shapes_list], dim=1)
        sampling_grids = 2 * sampling_locations - 1
        sampling_value_list = []
        for level_id, (height, width) in enumerate(value_spatial_shapes_list):
            value_l_ = (value_list[level_id].flatten(2).transpose(1, 2)
                        .reshape(batch_size * num_heads, hidden_dim, height, width))
            sampling_grid_l_ = sampling_grids[:, :, :, level_id].transpose(1, 2).flatten(0, 1)
            sampling_value_l_ = nn.functional.grid_sample(value_l_, sampling_grid_l_, mode="bilinear",
                                                          padding_mode="zeros", align_corners=False)
            sampling_value_list.append(sampling_value_l_)
        attention_weights = attention_weights.transpose(1, 2).reshape(
            batch_size * num_heads, 1, num_queries, num_levels * num_points)
        output = ((torch.stack(sampling_value_list, dim=-2).flatten(-2) * attention_weights)
                  .sum(-1).view(batch_size, num_heads * hidden_dim, num_queries))
        return output.transpose(1, 2).contiguous()


# ---- the attention alone ----------------------------------------------------------------------

class AloneMMCV(nn.Module):
    def __init__(self, shapes):
        super().__init__()
        self.shapes = [tuple(s) for s in shapes]

    def forward(self, value, sampling_locations, attention_weights):
        return mmcv_multi_scale_deformable_attn_pytorch(value, self.shapes, sampling_locations, attention_weights)


class AloneHF(nn.Module):
    def __init__(self, shapes):
        super().__init__()
        self.shapes = [tuple(s) for s in shapes]
        self.register_buffer("spatial_shapes", torch.tensor(shapes, dtype=torch.int64))
        areas = [h * w for h, w in shapes]
        self.register_buffer("level_start_index", torch.tensor([0] + list(np.cumsum(areas)[:-1]), dtype=torch.int64))
        self.attn = HFMultiScaleDeformableAttention()

    def forward(self, value, sampling_locations, attention_weights):
        return self.attn(value, self.spatial_shapes, self.shapes, self.level_start_index, sampling_locations,
                         attention_weights, 64)


ALONE_CONFIGS = {
    # name: (bs, level shapes, heads, head_dim, queries, points)
    "a": (2, [(5, 7), (3, 5), (1, 3)], 2, 4, 6, 2),
    "b": (2, [(7, 9), (4, 5), (3, 3), (1, 2)], 3, 5, 11, 4),
}


def alone_inputs(bs, shapes, heads, dim, queries, points, seed):
    g = torch.Generator().manual_seed(seed)
    keys = sum(h * w for h, w in shapes)
    levels = len(shapes)
    value = torch.randn(bs, keys, heads, dim, generator=g)
    # Locations a little past [0, 1] on every side, so the zero padding is exercised.
    loc = torch.rand(bs, queries, heads, levels, points, 2, generator=g) * 1.3 - 0.15
    weights = torch.softmax(torch.randn(bs, queries, heads, levels * points, generator=g), -1)
    return value, loc, weights.reshape(bs, queries, heads, levels, points)


# ---- the encoder layer ------------------------------------------------------------------------

class MSDAFunction(torch.autograd.Function):
    """mmcv's MultiScaleDeformableAttnFunction as mmdeploy exports it: forward computes with the
    PyTorch fallback, symbolic is mmdeploy's ms_deform_attn_default
    (open-mmlab/mmdeploy, mmdeploy/mmcv/ops/multi_scale_deform_attn.py)."""

    @staticmethod
    def forward(ctx, value, spatial_shapes, level_start_index, sampling_locations, attention_weights, im2col_step):
        shapes = [tuple(int(v) for v in s) for s in spatial_shapes.tolist()]
        return mmcv_multi_scale_deformable_attn_pytorch(value, shapes, sampling_locations, attention_weights)

    @staticmethod
    def symbolic(g, value, spatial_shapes, level_start_index, sampling_locations, attention_weights, im2col_step=64):
        return g.op("mmdeploy::MMCVMultiScaleDeformableAttention", value, spatial_shapes, level_start_index,
                    sampling_locations, attention_weights, im2col_step_i=im2col_step)


@torch.library.custom_op("deformrt_tools::msda", mutates_args=())
def msda_custom_op(value: torch.Tensor, spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
                   sampling_locations: torch.Tensor, attention_weights: torch.Tensor) -> torch.Tensor:
    shapes = [tuple(int(v) for v in s) for s in spatial_shapes.tolist()]
    return mmcv_multi_scale_deformable_attn_pytorch(value, shapes, sampling_locations, attention_weights)


@msda_custom_op.register_fake
def _(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    bs, _, heads, dim = value.shape
    return value.new_empty(bs, sampling_locations.shape[1], heads * dim)


def msda_onnx_translation():
    """The onnxscript function the dynamo exporter writes for deformrt_tools::msda."""
    import onnxscript

    from onnx.defs import OpSchema

    # The op has no schema anywhere; onnxscript needs one to know its inputs and single output.
    schema = OpSchema(
        "MMCVMultiScaleDeformableAttention", "mmdeploy", 1,
        inputs=[OpSchema.FormalParameter(n, "T" if n in ("value", "sampling_locations", "attention_weights") else "I")
                for n in ("value", "spatial_shapes", "level_start_index", "sampling_locations", "attention_weights")],
        outputs=[OpSchema.FormalParameter("output", "T")],
        type_constraints=[("T", ["tensor(float)"], ""), ("I", ["tensor(int64)"], "")],
        attributes=[OpSchema.Attribute("im2col_step", OpSchema.AttrType.INT, "")])
    op = onnxscript.values.Op(onnxscript.values.Opset("mmdeploy", 1), "MMCVMultiScaleDeformableAttention", schema)

    def msda(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
        return op(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, im2col_step=64)

    return msda


class MSDeformAttn(nn.Module):
    """Deformable DETR's MSDeformAttn (mmcv's MultiScaleDeformableAttention with batch_first):
    sampling offsets and attention weights from the query, value projection, output projection."""

    def __init__(self, d_model, heads, levels, points, way):
        super().__init__()
        self.heads, self.levels, self.points, self.way = heads, levels, points, way
        self.sampling_offsets = nn.Linear(d_model, heads * levels * points * 2)
        self.attention_weights = nn.Linear(d_model, heads * levels * points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        # mmcv's init_weights (a ring of offsets per head, growing with the point), plus a small
        # random weight so each query moves its points.
        nn.init.normal_(self.sampling_offsets.weight, std=0.05)
        thetas = torch.arange(heads, dtype=torch.float32) * (2.0 * math.pi / heads)
        grid_init = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid_init = (grid_init / grid_init.abs().max(-1, keepdim=True)[0]).view(heads, 1, 1, 2).repeat(1, levels, points, 1)
        for i in range(points):
            grid_init[:, :, i, :] *= i + 1
        self.sampling_offsets.bias.data = grid_init.view(-1)
        nn.init.normal_(self.attention_weights.weight, std=0.2)

    def forward(self, query, reference_points, value, spatial_shapes, shapes_list, level_start_index):
        bs, num_query, _ = query.shape
        _, num_value, _ = value.shape
        value = self.value_proj(value).view(bs, num_value, self.heads, -1)
        offsets = self.sampling_offsets(query).view(bs, num_query, self.heads, self.levels, self.points, 2)
        weights = self.attention_weights(query).view(bs, num_query, self.heads, self.levels * self.points)
        weights = weights.softmax(-1).view(bs, num_query, self.heads, self.levels, self.points)
        normalizer = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1)
        locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        if self.way == "custom_op":
            out = MSDAFunction.apply(value, spatial_shapes, level_start_index, locations, weights, 64)
        elif self.way == "custom_op_dynamo":
            out = msda_custom_op(value, spatial_shapes, level_start_index, locations, weights)
        else:
            out = mmcv_multi_scale_deformable_attn_pytorch(value, shapes_list, locations, weights)
        return self.output_proj(out)


class EncoderLayer(nn.Module):
    """Deformable DETR's DeformableTransformerEncoderLayer (dropout off, ReLU FFN)."""

    def __init__(self, shapes, d_model=32, heads=4, points=3, ffn=64, way="decomposed"):
        super().__init__()
        self.shapes = [tuple(s) for s in shapes]
        self.self_attn = MSDeformAttn(d_model, heads, len(shapes), points, way)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, ffn)
        self.linear2 = nn.Linear(ffn, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.register_buffer("spatial_shapes", torch.tensor(shapes, dtype=torch.int64))
        areas = [h * w for h, w in shapes]
        self.register_buffer("level_start_index", torch.tensor([0] + list(np.cumsum(areas)[:-1]), dtype=torch.int64))
        # The encoder's reference points (DeformableTransformerEncoder.get_reference_points with
        # valid ratios 1): each position's own centre, the same on every level.
        ref = torch.cat([torch.stack(torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w,
                                                    indexing="ij")[::-1], -1).reshape(-1, 2) for h, w in shapes])
        self.register_buffer("reference_points", ref[None, :, None, :].repeat(1, 1, len(shapes), 1))

    def forward(self, src, pos):
        bs = src.shape[0]
        reference = self.reference_points.expand(bs, -1, -1, -1)
        src2 = self.self_attn(src + pos, reference, src, self.spatial_shapes, self.shapes, self.level_start_index)
        src = self.norm1(src + src2)
        src2 = self.linear2(F.relu(self.linear1(src)))
        return self.norm2(src + src2)


ENCODER_SHAPES = [(7, 9), (4, 5), (2, 3)]


# ---- export -----------------------------------------------------------------------------------

def export(module: nn.Module, args: Tuple[torch.Tensor, ...], names: Sequence[str], path: str, dynamo: bool,
           **extra) -> None:
    kwargs = dict(input_names=list(names), output_names=["output"])
    if dynamo:
        torch.onnx.export(module, args, path, dynamo=True, external_data=False, **kwargs, **extra)
    else:
        torch.onnx.export(module, args, path, dynamo=False, opset_version=17, **kwargs, **extra)
    model = onnx.load(path)
    onnx.checker.check_model(model)


def save(name: str, module: nn.Module, args, names, dynamo: bool, **extra) -> None:
    module.eval()
    with torch.no_grad():
        want = module(*args)
    path = os.path.join(OUT, name + ".onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export(module, args, names, path, dynamo, **extra)
    np.savez_compressed(os.path.join(OUT, name + ".npz"), output=want.numpy(),
                        **{n: a.numpy() for n, a in zip(names, args)})
    ops = [n.op_type for n in onnx.load(path).graph.node]
    print(f"{name}: {os.path.getsize(path)} bytes, {len(ops)} nodes, "
          f"GridSample x{ops.count('GridSample')}", file=sys.stderr)


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    names = ("value", "sampling_locations", "attention_weights")
    for config, (bs, shapes, heads, dim, queries, points) in ALONE_CONFIGS.items():
        args = alone_inputs(bs, shapes, heads, dim, queries, points, seed=ord(config))
        for function, module in (("mmcv", AloneMMCV(shapes)), ("hf", AloneHF(shapes))):
            for exporter in ("dynamo", "legacy"):
                save(f"{function}_{exporter}_{config}", module, args, names, exporter == "dynamo")

    keys = sum(h * w for h, w in ENCODER_SHAPES)
    g = torch.Generator().manual_seed(7)
    src = torch.randn(2, keys, 32, generator=g)
    pos = torch.randn(2, keys, 32, generator=g) * 0.1
    for way, dynamo in (("custom_op", False), ("custom_op_dynamo", True), ("decomposed", True),
                        ("decomposed_legacy", False)):
        torch.manual_seed(3)  # the same weights in every export
        layer = EncoderLayer(ENCODER_SHAPES, way=way.replace("_legacy", ""))
        extra = {}
        if way == "custom_op":
            extra["custom_opsets"] = {"mmdeploy": 1}
        if way == "custom_op_dynamo":
            extra["custom_translation_table"] = {torch.ops.deformrt_tools.msda.default: msda_onnx_translation()}
        save(f"encoder_{way}", layer, (src, pos), ("src", "pos"), dynamo, **extra)


if __name__ == "__main__":
    main()
