"""Exports small real PyTorch models with deformable convolutions to ONNX the way users do
(torch.onnx.export(..., dynamo=True)), and saves each with an input and torch's own output:

    Tests/vectors/exported/<name>.onnx        the exported model (weights inside, fixed seed)
    Tests/vectors/exported/<name>.npz         inputs (keys = graph input names) and expected
                                              outputs (keys "output_<i>", in graph output order)

Run with an interpreter that has torch, torchvision and onnxscript (e.g. /opt/torchenv/bin/python).
The test command only reads the committed files; it never needs torch.
"""
import os

import numpy as np
import torch
import torchvision
from torch import nn

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Tests", "vectors", "exported")


class DeformBlock(nn.Module):
    """A DCNv2 block as detectors use it: a plain conv predicts offsets and mask, then the
    deformable conv, batch norm and ReLU. `modulated` False gives DCNv1 (no mask)."""

    def __init__(self, cin, cout, kernel=3, stride=1, dilation=1, groups=1, offset_groups=1, modulated=True, bias=False):
        super().__init__()
        pad = dilation * (kernel - 1) // 2
        self.modulated = modulated
        self.offset_groups = offset_groups
        taps = kernel * kernel
        self.offset_conv = nn.Conv2d(cin, offset_groups * taps * (3 if modulated else 2), kernel, stride, pad, dilation)
        nn.init.normal_(self.offset_conv.weight, std=0.3)
        self.dcn = torchvision.ops.DeformConv2d(cin, cout, kernel, stride, pad, dilation, groups, bias=bias)
        self.bn = nn.BatchNorm2d(cout)
        self.stride, self.pad, self.dilation = stride, pad, dilation

    def forward(self, x):
        out = self.offset_conv(x)
        if self.modulated:
            o1, o2, m = torch.chunk(out, 3, dim=1)
            offset = torch.cat((o1, o2), dim=1)
            mask = torch.sigmoid(m)
        else:
            offset, mask = out, None
        y = self.dcn(x, offset, mask)
        return torch.relu(self.bn(y))


class TinyDetectorBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        self.block1 = DeformBlock(16, 32, stride=1)
        self.block2 = DeformBlock(32, 32, stride=2, offset_groups=2)
        self.block3 = DeformBlock(32, 64, dilation=2, modulated=False, bias=True)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 5))

    def forward(self, x):
        f1 = self.block1(self.stem(x))
        f2 = self.block2(f1)
        f3 = self.block3(f2)
        return self.head(f3), f2


def export(name, model, example, dynamic_batch=False):
    model.eval()
    with torch.no_grad():
        for m in model.modules():  # non-trivial running statistics so BatchNorm matters
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        outputs = model(example)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    path = os.path.join(OUT, name + ".onnx")
    kwargs = {}
    if dynamic_batch:
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1, max=8)},)
    torch.onnx.export(model, (example,), path, dynamo=True, external_data=False, **kwargs)
    import onnx
    graph = onnx.load(path).graph
    arrays = {graph.input[0].name: example.numpy()}
    for i, out in enumerate(outputs):
        arrays[f"output_{i}"] = out.numpy()
    np.savez_compressed(os.path.join(OUT, name + ".npz"), **arrays)
    ops = sorted({f"{n.domain or 'ai.onnx'}::{n.op_type}" for n in graph.node})
    print(f"{name}: {os.path.getsize(path)} bytes, ops {ops}")


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    export("dcnv2_block", DeformBlock(8, 16), torch.randn(1, 8, 20, 24))
    torch.manual_seed(1)
    export("dcnv1_block_grouped", DeformBlock(8, 8, groups=2, offset_groups=2, modulated=False, bias=True),
           torch.randn(2, 8, 13, 11))
    torch.manual_seed(2)
    export("tiny_backbone", TinyDetectorBackbone(), torch.randn(2, 3, 64, 48), dynamic_batch=True)


if __name__ == "__main__":
    main()
