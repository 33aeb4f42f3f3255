"""Exports InternImage's DCNv3 from PyTorch to ONNX the ways users do, with inputs and torch's own
outputs, for the DCNv3 decomposition pass (Sources/DeformRTCore/Passes/DCNv3Decomposition.swift)
and its tests (Tests/python/test_dcnv3_decomposition.py):

    Tests/vectors/dcnv3_export/<name>.onnx   the exported model (weights inside, fixed seed)
    Tests/vectors/dcnv3_export/<name>.npz    inputs (keys = graph input names) and torch's
                                             output ("output_0"); the core cases also keep their
                                             DCNv3 attributes ("attributes", as a dict)

core_*    `dcnv3_core_pytorch` alone, the decomposition users export instead of the custom op.
stage_*   a small InternImage-style stage (stem, one DCNv3 block, GELU MLP; image [2, 3, 24, 32],
          16 channels in 2 groups on a 12 x 16 map), with the core as the custom op
          `mmdeploy::TRTDCNv3` (dynamo: a torch.library op translated by onnxscript; TorchScript:
          InternImage's DCNv3Function.symbolic, `*_legacy`) or as the decomposition.

`dcnv3_core_torch` transcribes InternImage's `dcnv3_core_pytorch` and its helpers
`_get_reference_points` and `_generate_dilation_grids` (OpenGVLab/InternImage,
classification/ops_dcnv3/functions/dcnv3_func.py, read at commit 202b6d8f); `DCNv3Block` follows
its module `DCNv3` (classification/ops_dcnv3/modules/dcnv3.py): input_proj, depthwise conv +
LayerNorm + GELU making x1, offset and mask Linear layers on x1, softmax over each group's points,
the core, output_proj. InternImage itself is not installed: the CUDA extension is not needed.

Exporters: torch.onnx.export(dynamo=True), this torch's default, writes the constant sampling
grid as one initializer and every reshape with constant sizes (the pass recognises that form).
The TorchScript exporter (dynamo=False), which InternImage's own export scripts and mmdeploy use
and so most existing user exports come from, computes the grid at run time from Shape nodes of
the padded input; one such export of the core is kept (`core_*_legacy`) to show it runs
correctly, unfused.

Run with /work/venv-torch/bin/python (torch + onnxscript). The tests only read the committed files.
"""
from __future__ import annotations

import json
import os
import warnings

import numpy as np
import onnx
import onnxscript
import torch
import torch.nn.functional as F
from torch import nn

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Tests", "vectors", "dcnv3_export")


def dcnv3_core_torch(input, offset, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                     dilation_h, dilation_w, group, group_channels, offset_scale, remove_center):
    """InternImage's dcnv3_core_pytorch, step for step (including its padding: F.pad's list runs
    from the last dim, so W is padded by pad_h and H by pad_w)."""
    input = F.pad(input, [0, 0, pad_h, pad_h, pad_w, pad_w])
    n, h_in, w_in, _ = input.shape
    _, h_out, w_out, _ = offset.shape
    # _get_reference_points (its own output size, from the padded input)
    ref_h_out = (h_in - (dilation_h * (kernel_h - 1) + 1)) // stride_h + 1
    ref_w_out = (w_in - (dilation_w * (kernel_w - 1) + 1)) // stride_w + 1
    half_h, half_w = (dilation_h * (kernel_h - 1)) // 2, (dilation_w * (kernel_w - 1)) // 2
    ref_y, ref_x = torch.meshgrid(
        torch.linspace(half_h + 0.5, half_h + 0.5 + (ref_h_out - 1) * stride_h, ref_h_out, dtype=torch.float32),
        torch.linspace(half_w + 0.5, half_w + 0.5 + (ref_w_out - 1) * stride_w, ref_w_out, dtype=torch.float32),
        indexing="ij")
    ref = torch.stack((ref_x.reshape(-1)[None] / w_in, ref_y.reshape(-1)[None] / h_in), -1)
    ref = ref.reshape(1, ref_h_out, ref_w_out, 1, 2)
    # _generate_dilation_grids
    x, y = torch.meshgrid(
        torch.linspace(-half_w, -half_w + (kernel_w - 1) * dilation_w, kernel_w, dtype=torch.float32),
        torch.linspace(-half_h, -half_h + (kernel_h - 1) * dilation_h, kernel_h, dtype=torch.float32),
        indexing="ij")
    grid = torch.stack([x / w_in, y / h_in], -1).reshape(-1, 1, 2).repeat(1, group, 1).permute(1, 0, 2)
    grid = grid.reshape(1, 1, 1, group * kernel_h * kernel_w, 2)
    spatial_norm = torch.tensor([w_in, h_in]).reshape(1, 1, 1, 2).repeat(1, 1, 1, group * (kernel_h * kernel_w - remove_center))
    locations = (ref + grid * offset_scale).repeat(n, 1, 1, 1, 1)
    if remove_center:  # remove_center_sampling_locations: each group's centre point
        centre = (kernel_w * kernel_h - 1) // 2
        keep = [i for i in range(locations.shape[-2]) if i != centre and (i - centre) % (centre * 2 + 1) != 0]
        locations = locations[:, :, :, keep, :]
    locations = locations.flatten(3, 4)
    locations = locations + offset * offset_scale / spatial_norm
    points = kernel_h * kernel_w - remove_center
    grids = 2 * locations - 1
    image = input.view(n, h_in * w_in, group * group_channels).transpose(1, 2).reshape(n * group, group_channels, h_in, w_in)
    grid_ = grids.view(n, h_out * w_out, group, points, 2).transpose(1, 2).flatten(0, 1)
    sampled = F.grid_sample(image, grid_, mode="bilinear", padding_mode="zeros", align_corners=False)
    mask = mask.view(n, h_out * w_out, group, points).transpose(1, 2).reshape(n * group, 1, h_out * w_out, points)
    output = (sampled * mask).sum(-1).view(n, group * group_channels, h_out * w_out)
    return output.transpose(1, 2).reshape(n, h_out, w_out, -1).contiguous()


# --- the custom op, for both exporters -----------------------------------------------------------

ATTRIBUTE_ORDER = ("kernel_h", "kernel_w", "stride_h", "stride_w", "pad_h", "pad_w", "dilation_h", "dilation_w",
                   "group", "group_channels", "offset_scale", "im2col_step", "remove_center")


@torch.library.custom_op("deformrt_tools::dcnv3", mutates_args=())
def dcnv3_op(input: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, kernel_h: int, kernel_w: int,
             stride_h: int, stride_w: int, pad_h: int, pad_w: int, dilation_h: int, dilation_w: int, group: int,
             group_channels: int, offset_scale: float, im2col_step: int, remove_center: int) -> torch.Tensor:
    # Runs the PyTorch function (the CUDA kernel is not available); the test cases keep
    # pad_h == pad_w, where the two agree.
    return dcnv3_core_torch(input, offset, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                            dilation_h, dilation_w, group, group_channels, offset_scale, remove_center)


@dcnv3_op.register_fake
def _(input, offset, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, group,
      group_channels, offset_scale, im2col_step, remove_center):
    return input.new_empty(offset.shape[:3] + (group * group_channels,))


def _register_trt_dcnv3_schema():
    """onnxscript builds only ops with a schema: declare mmdeploy::TRTDCNv3 (inputs, attributes)."""
    if onnx.defs.has("TRTDCNv3", "mmdeploy"):
        return
    S = onnx.defs.OpSchema
    attributes = [S.Attribute(k, S.AttrType.FLOAT if k == "offset_scale" else S.AttrType.INT, "", required=False)
                  for k in ATTRIBUTE_ORDER]
    onnx.defs.register_schema(S(
        "TRTDCNv3", "mmdeploy", 1, inputs=[S.FormalParameter(k, "T") for k in ("input", "offset", "mask")],
        outputs=[S.FormalParameter("output", "T")], type_constraints=[("T", ["tensor(float)"], "")],
        attributes=attributes))


_register_trt_dcnv3_schema()
MMDEPLOY = onnxscript.values.Opset("mmdeploy", 1)
TRT_DCNV3 = MMDEPLOY.TRTDCNv3


def trt_dcnv3_translation(input, offset, mask, kernel_h: int, kernel_w: int, stride_h: int, stride_w: int,
                          pad_h: int, pad_w: int, dilation_h: int, dilation_w: int, group: int, group_channels: int,
                          offset_scale: float, im2col_step: int, remove_center: int):
    """The node InternImage's DCNv3Function.symbolic writes, for the dynamo exporter."""
    return TRT_DCNV3(input, offset, mask, kernel_h=kernel_h, kernel_w=kernel_w, stride_h=stride_h,
                             stride_w=stride_w, pad_h=pad_h, pad_w=pad_w, dilation_h=dilation_h,
                             dilation_w=dilation_w, group=group, group_channels=group_channels,
                             offset_scale=float(offset_scale), im2col_step=im2col_step, remove_center=remove_center)


class DCNv3Function(torch.autograd.Function):
    """The custom op for the TorchScript exporter, with InternImage's symbolic."""

    @staticmethod
    def forward(ctx, input, offset, mask, *attributes):
        if torch.jit.is_tracing():
            # While exporting, only the output's shape matters (the symbolic replaces the body);
            # tracing the function's body here trips the exporter's peephole pass in torch 2.13
            # ("Argument passed to at() was not in the map").
            return input.new_zeros(offset.shape[:3] + (input.shape[3],))
        return dcnv3_core_torch(input, offset, mask, *attributes[:11], attributes[12])

    @staticmethod
    def symbolic(g, input, offset, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h,
                 dilation_w, group, group_channels, offset_scale, im2col_step, remove_center):
        return g.op("mmdeploy::TRTDCNv3", input, offset, mask, kernel_h_i=int(kernel_h), kernel_w_i=int(kernel_w),
                    stride_h_i=int(stride_h), stride_w_i=int(stride_w), pad_h_i=int(pad_h), pad_w_i=int(pad_w),
                    dilation_h_i=int(dilation_h), dilation_w_i=int(dilation_w), group_i=int(group),
                    group_channels_i=int(group_channels), offset_scale_f=float(offset_scale),
                    im2col_step_i=int(im2col_step), remove_center_i=int(remove_center))


class Core(nn.Module):
    def __init__(self, attributes, how="decomposed"):
        super().__init__()
        self.attributes, self.how = attributes, how

    def forward(self, input, offset, mask):
        a = self.attributes
        values = [a[k] for k in ATTRIBUTE_ORDER]
        if self.how == "decomposed":
            return dcnv3_core_torch(input, offset, mask, *values[:11], values[12])
        if self.how == "custom_op":
            return dcnv3_op(input, offset, mask, *values)
        return DCNv3Function.apply(input, offset, mask, *values)


# --- a small InternImage-style stage -------------------------------------------------------------

class DCNv3Block(nn.Module):
    """InternImage's DCNv3 module (stride 1: the module makes offsets at the input's resolution)."""

    def __init__(self, channels, group, kernel=3, pad=1, dilation=1, offset_scale=1.0, how="decomposed"):
        super().__init__()
        self.channels, self.group, self.group_channels = channels, group, channels // group
        self.kernel, self.pad, self.dilation, self.offset_scale, self.how = kernel, pad, dilation, offset_scale, how
        self.dw_conv = nn.Conv2d(channels, channels, kernel, 1, (kernel - 1) // 2, groups=channels)
        self.dw_norm = nn.LayerNorm(channels, eps=1e-6)
        self.offset = nn.Linear(channels, group * kernel * kernel * 2)
        self.mask = nn.Linear(channels, group * kernel * kernel)
        self.input_proj = nn.Linear(channels, channels)
        self.output_proj = nn.Linear(channels, channels)
        # InternImage zero-initialises offset and mask; random weights make the test see them.
        nn.init.normal_(self.offset.weight, std=0.5)
        nn.init.normal_(self.mask.weight, std=0.5)

    def forward(self, input):
        n, h, w, _ = input.shape
        x = self.input_proj(input)
        x1 = F.gelu(self.dw_norm(self.dw_conv(input.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)))
        offset = self.offset(x1)
        mask = F.softmax(self.mask(x1).reshape(n, h, w, self.group, -1), -1).reshape(n, h, w, -1)
        attributes = dict(kernel_h=self.kernel, kernel_w=self.kernel, stride_h=1, stride_w=1, pad_h=self.pad,
                          pad_w=self.pad, dilation_h=self.dilation, dilation_w=self.dilation, group=self.group,
                          group_channels=self.group_channels, offset_scale=self.offset_scale, im2col_step=256,
                          remove_center=0)
        x = Core(attributes, self.how)(x, offset, mask)
        return self.output_proj(x)


class Stage(nn.Module):
    """Stem (3x3 stride-2 conv, LayerNorm channels-last), then one InternImage layer:
    x + dcn(norm1(x)), x + mlp(norm2(x)) with a GELU MLP; channels-last output."""

    def __init__(self, channels=16, group=2, how="decomposed"):
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, 2, 1)
        self.stem_norm = nn.LayerNorm(channels, eps=1e-6)
        self.norm1 = nn.LayerNorm(channels, eps=1e-6)
        self.dcn = DCNv3Block(channels, group, how=how)
        self.norm2 = nn.LayerNorm(channels, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(channels, 4 * channels), nn.GELU(), nn.Linear(4 * channels, channels))

    def forward(self, image):
        x = self.stem_norm(self.stem(image).permute(0, 2, 3, 1))
        x = x + self.dcn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


# --- export ---------------------------------------------------------------------------------------

CORE_CASES = {
    # name: (N, H, W, attributes)
    "core_g2_k3": (2, 6, 7, dict(kernel_h=3, kernel_w=3, stride_h=1, stride_w=1, pad_h=1, pad_w=1, dilation_h=1,
                                 dilation_w=1, group=2, group_channels=4, offset_scale=1.0)),
    "core_g3_stride2_dilation2_scale": (1, 9, 8, dict(kernel_h=3, kernel_w=3, stride_h=2, stride_w=2, pad_h=2,
                                                      pad_w=2, dilation_h=2, dilation_w=2, group=3,
                                                      group_channels=5, offset_scale=0.5)),
    "core_pad0_stride2": (1, 7, 6, dict(kernel_h=3, kernel_w=3, stride_h=2, stride_w=2, pad_h=0, pad_w=0,
                                        dilation_h=1, dilation_w=1, group=1, group_channels=3, offset_scale=2.0)),
    # The function pads W by pad_h and H by pad_w: here H by 0, W by 1.
    "core_pad_h1_pad_w0": (1, 5, 6, dict(kernel_h=3, kernel_w=3, stride_h=1, stride_w=1, pad_h=1, pad_w=0,
                                         dilation_h=1, dilation_w=1, group=2, group_channels=2, offset_scale=1.0)),
    "core_remove_center": (1, 5, 5, dict(kernel_h=3, kernel_w=3, stride_h=1, stride_w=1, pad_h=1, pad_w=1,
                                         dilation_h=1, dilation_w=1, group=2, group_channels=3, offset_scale=1.0,
                                         remove_center=1)),
}


def core_inputs(n, h, w, a, generator):
    a = {"im2col_step": 256, "remove_center": 0, **a}
    # The function's output size (its padding), which the offsets must have.
    hp, wp = h + 2 * a["pad_w"], w + 2 * a["pad_h"]
    ho = (hp - (a["dilation_h"] * (a["kernel_h"] - 1) + 1)) // a["stride_h"] + 1
    wo = (wp - (a["dilation_w"] * (a["kernel_w"] - 1) + 1)) // a["stride_w"] + 1
    points = a["kernel_h"] * a["kernel_w"] - a["remove_center"]
    group, c = a["group"], a["group"] * a["group_channels"]
    feeds = (torch.randn(n, h, w, c, generator=generator),
             torch.randn(n, ho, wo, group * points * 2, generator=generator) * 2,
             torch.softmax(torch.randn(n, ho, wo, group, points, generator=generator), -1).reshape(n, ho, wo, -1))
    return a, feeds


def export(model, args, names, name, dynamo, **extra):
    path = os.path.join(OUT, name + ".onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(model, args, path, dynamo=True, input_names=names, output_names=["output"],
                              external_data=False, **extra)
        else:
            torch.onnx.export(model, args, path, dynamo=False, opset_version=17, input_names=names,
                              output_names=["output"], **extra)
    onnx.checker.check_model(onnx.load(path))
    with torch.no_grad():
        expected = model(*args)
    return path, expected


def save(name, names, args, expected, **meta):
    arrays = {k: v.numpy() for k, v in zip(names, args)}
    arrays["output_0"] = expected.numpy()
    for key, value in meta.items():
        arrays[key] = np.array(json.dumps(value))
    np.savez_compressed(os.path.join(OUT, name + ".npz"), **arrays)


def main():
    os.makedirs(OUT, exist_ok=True)
    generator = torch.Generator().manual_seed(10)
    names = ["input", "offset", "mask"]
    for name, (n, h, w, attributes) in CORE_CASES.items():
        a, args = core_inputs(n, h, w, attributes, generator)
        _, expected = export(Core(a), args, names, name, dynamo=True)
        save(name, names, args, expected, attributes=a)
    # The TorchScript exporter's form of the first case.
    n, h, w, attributes = CORE_CASES["core_g2_k3"]
    a, args = core_inputs(n, h, w, attributes, generator)
    _, expected = export(Core(a), args, names, "core_g2_k3_legacy", dynamo=False)
    save("core_g2_k3_legacy", names, args, expected, attributes=a)

    torch.manual_seed(11)
    image = (torch.randn(2, 3, 24, 32, generator=generator),)
    decomposed = Stage(how="decomposed").eval()
    custom = Stage(how="custom_op").eval()
    custom.load_state_dict(decomposed.state_dict())
    legacy_custom = Stage(how="autograd_function").eval()
    legacy_custom.load_state_dict(decomposed.state_dict())
    _, expected = export(decomposed, image, ["image"], "stage_decomposed", dynamo=True)
    save("stage_decomposed", ["image"], image, expected)
    _, expected_custom = export(custom, image, ["image"], "stage_custom_op", dynamo=True,
                                custom_translation_table={torch.ops.deformrt_tools.dcnv3.default: trt_dcnv3_translation})
    assert torch.equal(expected, expected_custom)
    save("stage_custom_op", ["image"], image, expected)
    # The TorchScript exporter with InternImage's symbolic: how mmdeploy and InternImage's
    # scripts write mmdeploy::TRTDCNv3.
    _, expected_legacy = export(legacy_custom, image, ["image"], "stage_custom_op_legacy", dynamo=False)
    assert torch.equal(expected, expected_legacy)
    save("stage_custom_op_legacy", ["image"], image, expected)
    for file in sorted(os.listdir(OUT)):
        print(f"{os.path.getsize(os.path.join(OUT, file)):8d}  {file}")


if __name__ == "__main__":
    main()
