"""What a deformable network learned, drawn as the DCN paper draws it (DCNv1, Fig. 5 and 6).

    deformrt-visualize MODEL --image cat.png --point 120,200 [--levels 3] [-o points.png]
    deformrt-visualize MODEL --image img.png --roi 40,60,200,220 [--roi ...] [-o bins.png]
    deformrt-visualize analyze MODEL [--image img.png | --input x.npy]

Sampling points: for one activation unit of the last deformable layer, its kernel's sampling
locations (with the learned offsets) are followed back through the K last deformable layers: each
location of layer k is a position in the output of layer k-1, whose own sampling locations there
(offsets interpolated bilinearly at that fractional position) form the next level, 9^K points for
3x3 kernels. Layers in between are taken as spatial identities up to their stride: positions move
between maps through image coordinates, pixel centres aligned.

RoI bins: for a deformable RoI pooling node whose RoIs are a graph input, the pooling bins of each
given RoI moved by the offsets the model predicts (mmcv semantics: gamma * offset * RoI size).

Needs the optional extra `deformrt[visualize]` (Pillow to read and draw images, onnx to read the
graph and to expose the offsets as outputs; the model then runs in DeformRT).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np


def _onnx():
    try:
        import onnx
        from onnx import helper
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise SystemExit("deformrt-visualize needs the onnx package: pip install 'deformrt[visualize]'") from error
    return onnx, helper


# (domain, op_type) -> (input index of X, weight, offset, mask or None)
_DEFORM_CONV_INPUTS = {
    ("", "DeformConv"): (0, 1, 2, 4),
    ("ai.onnx", "DeformConv"): (0, 1, 2, 4),
    ("mmcv", "MMCVModulatedDeformConv2d"): (0, 3, 1, 2),
    ("mmdeploy", "MMCVModulatedDeformConv2d"): (0, 3, 1, 2),
    ("mmcv", "MMCVDeformConv2d"): (0, 2, 1, None),
    ("mmdeploy", "MMCVDeformConv2d"): (0, 2, 1, None),
    ("org.openvinotoolkit", "DeformableConv2D"): (0, 2, 1, 3),
}
# (domain, op_type) -> (input index of features, rois, offset)
_DEFORM_ROI_POOL_INPUTS = {
    ("mmcv", "MMCVDeformRoIPool"): (0, 1, 2),
    ("mmdeploy", "MMCVDeformRoIPool"): (0, 1, 2),
    ("mmcv", "MMCVModulatedDeformRoIPool"): (0, 1, 2),
    ("mmdeploy", "MMCVModulatedDeformRoIPool"): (0, 1, 2),
    ("ai.deformrt", "DeformRoIPool"): (0, 1, 2),
}


@dataclass
class DeformableLayer:
    """One deformable convolution: where its tensors are and its sampling geometry."""
    name: str
    input: str
    offset: str
    mask: Optional[str]
    kernel: Tuple[int, int]
    stride: Tuple[int, int]
    pad: Tuple[int, int]  # top, left
    dilation: Tuple[int, int]
    offset_groups: int


@dataclass
class DeformableRoIPool:
    name: str
    rois: str
    offset: str
    pooled: Tuple[int, int]
    spatial_scale: float
    gamma: float


def _attributes(node) -> Dict[str, object]:
    _, helper = _onnx()
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _pair(value, default: Tuple[int, int]) -> Tuple[int, int]:
    if value is None:
        return default
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    values = [int(v) for v in value]
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def _initializer_shape(graph, name: str) -> Optional[List[int]]:
    for tensor in graph.initializer:
        if tensor.name == name:
            return list(tensor.dims)
    return None


def deformable_layers(model) -> List[DeformableLayer]:
    """The model's deformable convolutions in graph order (any spelling DeformRT reads)."""
    layers = []
    for node in model.graph.node:
        slots = _DEFORM_CONV_INPUTS.get((node.domain, node.op_type))
        if slots is None:
            continue
        x_index, w_index, offset_index, mask_index = slots
        inputs = list(node.input)
        attrs = _attributes(node)
        kernel = attrs.get("kernel_shape")
        if kernel is None:
            shape = _initializer_shape(model.graph, inputs[w_index]) if w_index < len(inputs) else None
            if shape is None or len(shape) != 4:
                raise ValueError(f"node {node.name or node.output[0]}: kernel size unknown (no kernel_shape and the weight is not an initializer)")
            kernel = shape[2:]
        if node.domain in ("mmcv", "mmdeploy"):
            stride, dilation = _pair(attrs.get("stride"), (1, 1)), _pair(attrs.get("dilation"), (1, 1))
            padding = [int(p) for p in np.atleast_1d(attrs.get("padding", 0))]
            pad = (padding[0], padding[0]) if len(padding) == 1 else (padding[0], padding[1])
            groups = int(attrs.get("deform_groups", attrs.get("deformable_groups", 1)))
        else:
            stride, dilation = _pair(attrs.get("strides"), (1, 1)), _pair(attrs.get("dilations"), (1, 1))
            pads = [int(p) for p in attrs.get("pads", [0, 0, 0, 0])]
            pad = (pads[0], pads[1])
            groups = int(attrs.get("offset_group", attrs.get("deformable_groups", 1)))
        mask = inputs[mask_index] if mask_index is not None and mask_index < len(inputs) and inputs[mask_index] else None
        layers.append(DeformableLayer(node.name or node.output[0], inputs[x_index], inputs[offset_index], mask,
                                      _pair(kernel, (3, 3)), stride, pad, dilation, groups))
    return layers


def deformable_roi_pools(model) -> List[DeformableRoIPool]:
    pools = []
    for node in model.graph.node:
        slots = _DEFORM_ROI_POOL_INPUTS.get((node.domain, node.op_type))
        if slots is None:
            continue
        _, rois_index, offset_index = slots
        inputs = list(node.input)
        if offset_index >= len(inputs) or not inputs[offset_index]:
            continue  # no offsets: nothing deformable to draw
        attrs = _attributes(node)
        if "output_size" in attrs:
            pooled = _pair(attrs["output_size"], (7, 7))
        else:
            pooled = (int(attrs.get("pooled_height", 7)), int(attrs.get("pooled_width", 7)))
        pools.append(DeformableRoIPool(node.name or node.output[0], inputs[rois_index], inputs[offset_index], pooled,
                                       float(attrs.get("spatial_scale", 1.0)), float(attrs.get("gamma", 0.1))))
    return pools


def run_with_outputs(model, feeds: Dict[str, np.ndarray], names: Sequence[str], threads: int = 1) -> Dict[str, np.ndarray]:
    """Runs the model in DeformRT with the named intermediate values added as graph outputs."""
    onnx, helper = _onnx()
    import deformrt

    edited = onnx.ModelProto()
    edited.CopyFrom(model)
    existing = {o.name for o in edited.graph.output}
    for name in dict.fromkeys(names):
        if name not in existing:
            edited.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = deformrt.SessionOptions()
    options.intra_op_num_threads = threads
    with deformrt.InferenceSession(edited.SerializeToString(), options) as session:
        wanted = list(dict.fromkeys(names))
        return dict(zip(wanted, session.run(wanted, feeds)))


def _to_image(position: float, map_size: int, image_size: int) -> float:
    return (position + 0.5) * image_size / map_size - 0.5


def _to_map(position: np.ndarray, map_size: int, image_size: int) -> np.ndarray:
    return (position + 0.5) * map_size / image_size - 0.5


def _bilinear(field: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """field [C, H, W] read at fractional (y, x), clamped to the map: [n, C]."""
    _, h, w = field.shape
    y = np.clip(y, 0, h - 1)
    x = np.clip(x, 0, w - 1)
    y0 = np.minimum(np.floor(y).astype(np.int64), h - 1)
    x0 = np.minimum(np.floor(x).astype(np.int64), w - 1)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    ly, lx = (y - y0)[:, None], (x - x0)[:, None]
    f = lambda yy, xx: field[:, yy, xx].T  # noqa: E731
    return (f(y0, x0) * (1 - ly) * (1 - lx) + f(y0, x1) * (1 - ly) * lx
            + f(y1, x0) * ly * (1 - lx) + f(y1, x1) * ly * lx)


def _sampling_locations(layer: DeformableLayer, offset: np.ndarray, mask: Optional[np.ndarray],
                        oy: np.ndarray, ox: np.ndarray, group: int):
    """Sampling locations (in the layer's input map) of the units at output positions (oy, ox):
    arrays [n * kh * kw] of y, x and the modulation (1 without a mask)."""
    kh, kw = layer.kernel
    taps = kh * kw
    off = _bilinear(offset, oy, ox)  # [n, 2 * groups * taps]
    ky, kx = np.meshgrid(np.arange(kh), np.arange(kw), indexing="ij")
    ky, kx = ky.reshape(-1), kx.reshape(-1)
    base_y = oy[:, None] * layer.stride[0] - layer.pad[0] + ky[None, :] * layer.dilation[0]
    base_x = ox[:, None] * layer.stride[1] - layer.pad[1] + kx[None, :] * layer.dilation[1]
    first = group * taps * 2
    dy = off[:, first:first + 2 * taps:2]
    dx = off[:, first + 1:first + 2 * taps:2]
    weight = np.ones_like(dy)
    if mask is not None:
        weight = _bilinear(mask, oy, ox)[:, group * taps:(group + 1) * taps]
    return (base_y + dy).reshape(-1), (base_x + dx).reshape(-1), weight.reshape(-1)


def compose_sampling_points(layers: Sequence[DeformableLayer], tensors: Dict[str, np.ndarray],
                            image_size: Tuple[int, int], point: Tuple[float, float],
                            batch: int = 0, offset_group: int = 0):
    """The sampling locations of the unit nearest `point` (image y, x) of the last layer, followed
    back through `layers` (earliest first). Returns one (y, x, weight) triple of arrays per level,
    in image coordinates, the last layer's own 9 points first; the weight multiplies the masks
    along the path. Also returns the unit's own position in image coordinates."""
    height, width = image_size
    last = layers[-1]
    out_h, out_w = tensors[last.offset].shape[2:]
    uy = int(np.clip(np.rint(_to_map(np.float64(point[0]), out_h, height)), 0, out_h - 1))
    ux = int(np.clip(np.rint(_to_map(np.float64(point[1]), out_w, width)), 0, out_w - 1))
    unit = (_to_image(uy, out_h, height), _to_image(ux, out_w, width))
    oy, ox = np.array([uy], np.float64), np.array([ux], np.float64)
    weights = np.ones(1)
    levels = []
    for index in range(len(layers) - 1, -1, -1):
        layer = layers[index]
        if offset_group >= layer.offset_groups:
            raise ValueError(f"layer {layer.name} has {layer.offset_groups} offset group(s); --offset-group {offset_group} is out of range")
        offset = tensors[layer.offset][batch].astype(np.float64)
        mask = tensors[layer.mask][batch].astype(np.float64) if layer.mask else None
        in_h, in_w = tensors[layer.input].shape[2:]
        sy, sx, w = _sampling_locations(layer, offset, mask, oy, ox, offset_group)
        weights = np.repeat(weights, layer.kernel[0] * layer.kernel[1]) * w
        iy = (sy + 0.5) * height / in_h - 0.5
        ix = (sx + 0.5) * width / in_w - 0.5
        levels.append((iy, ix, weights))
        if index > 0:
            below = layers[index - 1]
            bh, bw = tensors[below.offset].shape[2:]
            oy, ox = _to_map(iy, bh, height), _to_map(ix, bw, width)
    return levels, unit


def roi_bins(pool: DeformableRoIPool, rois: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Each RoI's pooling bins moved by its offsets (mmcv's DeformRoIPool), in image coordinates:
    [R, ph, pw, 4] as (x1, y1, x2, y2)."""
    scale = pool.spatial_scale
    ph, pw = pool.pooled
    boxes = rois[:, 1:5].astype(np.float64) if rois.shape[1] == 5 else rois[:, :4].astype(np.float64)
    start_x, start_y = boxes[:, 0] * scale - 0.5, boxes[:, 1] * scale - 0.5
    roi_w, roi_h = (boxes[:, 2] - boxes[:, 0]) * scale, (boxes[:, 3] - boxes[:, 1]) * scale
    bin_w, bin_h = roi_w / pw, roi_h / ph
    j, i = np.meshgrid(np.arange(pw), np.arange(ph))
    x1 = start_x[:, None, None] + j[None] * bin_w[:, None, None] + pool.gamma * roi_w[:, None, None] * offset[:, 0]
    y1 = start_y[:, None, None] + i[None] * bin_h[:, None, None] + pool.gamma * roi_h[:, None, None] * offset[:, 1]
    x2, y2 = x1 + bin_w[:, None, None], y1 + bin_h[:, None, None]
    return np.stack([(x1 + 0.5) / scale, (y1 + 0.5) / scale, (x2 + 0.5) / scale, (y2 + 0.5) / scale], axis=-1)


def effective_dilation(layer: DeformableLayer, offset: np.ndarray, group: int = 0) -> float:
    """DCNv1 Table 2: the mean distance between adjacent sampling locations of the filter, over
    every output position (in the layer's input-map pixels)."""
    _, h, w = offset.shape
    oy, ox = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    sy, sx, _ = _sampling_locations(layer, offset.astype(np.float64), None, oy.reshape(-1), ox.reshape(-1), group)
    kh, kw = layer.kernel
    sy, sx = sy.reshape(-1, kh, kw), sx.reshape(-1, kh, kw)
    distances = []
    if kw > 1:
        distances.append(np.hypot(np.diff(sy, axis=2), np.diff(sx, axis=2)).reshape(-1))
    if kh > 1:
        distances.append(np.hypot(np.diff(sy, axis=1), np.diff(sx, axis=1)).reshape(-1))
    return float(np.concatenate(distances).mean()) if distances else 0.0


# ---------------------------------------------------------------------------------------------
# Images and the command line


def _pillow():
    try:
        from PIL import Image, ImageDraw
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise SystemExit("deformrt-visualize needs Pillow: pip install 'deformrt[visualize]'") from error
    return Image, ImageDraw


def _input_spec(model):
    """(name, [N, C, H, W] with None for symbolic dims) of the first graph input that is not an initializer."""
    initializers = {t.name for t in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
        return value.name, dims
    raise ValueError("the model has no graph input")


def load_picture(path: str, size: Optional[Tuple[int, int]]) -> np.ndarray:
    """An RGB picture as uint8 [H, W, 3], resized to `size` (H, W) when given. `.npy` files hold a
    model input [1, 3, H, W] or [3, H, W] (values in [0, 1] or [0, 255])."""
    if path.endswith(".npy"):
        array = np.load(path)
        if array.ndim == 4:
            array = array[0]
        if array.ndim != 3 or array.shape[0] not in (1, 3):
            raise ValueError(f"{path}: expected [1, C, H, W] or [C, H, W] with 1 or 3 channels, got {array.shape}")
        array = np.repeat(array, 3, axis=0) if array.shape[0] == 1 else array
        low, high = float(array.min()), float(array.max())
        array = (array - low) / (high - low) * 255 if high > low else np.zeros_like(array)
        return array.transpose(1, 2, 0).astype(np.uint8)
    Image, _ = _pillow()
    picture = Image.open(path).convert("RGB")
    if size is not None and (picture.height, picture.width) != tuple(size):
        picture = picture.resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(picture)


def model_input(picture: np.ndarray, channels: int, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    x = picture.astype(np.float32).transpose(2, 0, 1) / 255.0
    if channels == 1:
        x = x.mean(axis=0, keepdims=True)
    x = (x - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]
    return x[None].astype(np.float32)


def draw_points(picture: np.ndarray, levels, unit, path: str, scale: float, all_levels: bool) -> None:
    Image, ImageDraw = _pillow()
    height, width = picture.shape[:2]
    # A dimmed grey background, so the coloured points stand out as in the paper's figures.
    grey = Image.fromarray(picture).convert("L").point(lambda v: 40 + v * 0.6)
    canvas = grey.resize((round(width * scale), round(height * scale)), Image.NEAREST).convert("RGBA")
    overlay = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    shown = levels if all_levels else levels[-1:]
    colours = [(255, 220, 0), (0, 160, 255), (255, 40, 40)]
    radius = 3.0
    for depth, (ys, xs, weights) in enumerate(shown):
        colour = colours[(len(levels) - len(shown) + depth) % 3] if all_levels else colours[2]
        peak = float(weights.max()) if weights.size and weights.max() > 0 else 1.0
        for y, x, w in zip(ys, xs, weights):
            alpha = int(90 + 165 * max(0.0, min(1.0, w / peak)))
            cy, cx = (y + 0.5) * scale, (x + 0.5) * scale
            draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=colour + (alpha,))
    cy, cx = (unit[0] + 0.5) * scale, (unit[1] + 0.5) * scale
    draw.ellipse([cx - 2.5 * radius, cy - 2.5 * radius, cx + 2.5 * radius, cy + 2.5 * radius], fill=(0, 220, 0, 255))
    Image.alpha_composite(canvas, overlay).convert("RGB").save(path)


def draw_bins(picture: np.ndarray, rois: np.ndarray, bins: np.ndarray, path: str, scale: float) -> None:
    Image, ImageDraw = _pillow()
    height, width = picture.shape[:2]
    canvas = Image.fromarray(picture).resize((round(width * scale), round(height * scale)), Image.NEAREST)
    draw = ImageDraw.Draw(canvas)
    for roi, roi_bins_ in zip(rois, bins):
        box = roi[1:5] if roi.shape[0] == 5 else roi[:4]
        draw.rectangle([c * scale for c in box], outline=(255, 220, 0), width=2)
        for x1, y1, x2, y2 in roi_bins_.reshape(-1, 4):
            draw.rectangle([x1 * scale, y1 * scale, max(x1, x2) * scale, max(y1, y2) * scale], outline=(255, 40, 40), width=1)
    canvas.save(path)


def _floats(text: str, count: Optional[int], what: str) -> List[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise SystemExit(f"{what}: expected comma-separated numbers, got {text!r}")
    if count is not None and len(values) != count:
        raise SystemExit(f"{what}: expected {count} numbers, got {len(values)}")
    return values


def _prepare(args):
    onnx, _ = _onnx()
    model = onnx.load(args.model)
    name, dims = _input_spec(model)
    if len(dims) != 4:
        raise SystemExit(f"input {name} has rank {len(dims)}; the tool needs an image input [N, C, H, W]")
    size = (dims[2], dims[3]) if dims[2] and dims[3] else None
    if args.input:
        x = np.load(args.input).astype(np.float32)
        picture = load_picture(args.image, x.shape[2:]) if args.image else load_picture(args.input, None)
    elif args.image:
        picture = load_picture(args.image, size)
        channels = dims[1] or 3
        mean = _floats(args.mean, None, "--mean") if args.mean else [0.0] * channels
        std = _floats(args.std, None, "--std") if args.std else [1.0] * channels
        x = model_input(picture, channels, mean, std)
    else:
        raise SystemExit("give --image (a picture, resized to the model's input) and/or --input (the exact input tensor, .npy)")
    return model, name, x, picture


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deformrt-visualize", description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--image", help="picture (PNG, JPEG) drawn on, and the model input unless --input is given")
    parser.add_argument("--input", help="the model input as .npy [1, C, H, W] (default: made from --image)")
    parser.add_argument("--mean", help="per-channel mean subtracted from the [0, 1] picture, e.g. 0.485,0.456,0.406")
    parser.add_argument("--std", help="per-channel divisor after the mean, e.g. 0.229,0.224,0.225")
    parser.add_argument("--point", help="y,x in input pixels: the activation unit whose sampling points are drawn")
    parser.add_argument("--levels", type=int, default=3, help="how many of the last deformable layers to compose (default 3)")
    parser.add_argument("--offset-group", type=int, default=0)
    parser.add_argument("--all-levels", action="store_true", help="draw every level, not only the deepest")
    parser.add_argument("--roi", action="append", help="x1,y1,x2,y2 in input pixels (repeatable): draw a deformable RoI pooling node's bins")
    parser.add_argument("--node", help="which deformable RoI pooling node (default: the first with offsets)")
    parser.add_argument("--scale", type=float, default=0, help="drawing scale (default: longer side at least 512 pixels)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("-o", "--output", default="deformrt-visualize.png")
    return parser


def _analyze(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="deformrt-visualize analyze",
                                     description="Each deformable layer's effective dilation (DCNv1 Table 2) and offset statistics")
    parser.add_argument("model")
    parser.add_argument("--image")
    parser.add_argument("--input")
    parser.add_argument("--mean")
    parser.add_argument("--std")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    model, name, x, _ = _prepare(args)
    layers = deformable_layers(model)
    if not layers:
        raise SystemExit("the model has no deformable convolution")
    names = [n for layer in layers for n in (layer.offset, layer.mask) if n]
    tensors = run_with_outputs(model, {name: x}, names, args.threads)
    print(f"{'layer':<32} {'kernel':>6} {'dil':>4} {'eff. dilation':>13} {'|offset| mean':>13} {'max':>8} {'mask mean':>9}")
    for layer in layers:
        offset = tensors[layer.offset][0]
        dilation = float(np.mean([effective_dilation(layer, offset, g) for g in range(layer.offset_groups)]))
        magnitude = np.abs(offset)
        mask = f"{float(tensors[layer.mask].mean()):9.3f}" if layer.mask else f"{'-':>9}"
        print(f"{layer.name[:32]:<32} {layer.kernel[0]}x{layer.kernel[1]:<4} {layer.dilation[0]:>4} {dilation:13.3f} "
              f"{float(magnitude.mean()):13.3f} {float(magnitude.max()):8.2f} {mask}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["analyze"]:
        return _analyze(argv[1:])
    args = _parser().parse_args(argv)
    model, name, x, picture = _prepare(args)
    height, width = x.shape[2:]
    scale = args.scale or max(1.0, 512.0 / max(height, width))
    if args.roi:
        pools = [p for p in deformable_roi_pools(model) if args.node in (None, p.name)]
        if not pools:
            raise SystemExit("no deformable RoI pooling node with offsets" + (f" named {args.node}" if args.node else ""))
        pool = pools[0]
        graph_inputs = {v.name for v in model.graph.input}
        if pool.rois not in graph_inputs:
            raise SystemExit(f"node {pool.name}: its RoIs ({pool.rois}) are computed inside the model; --roi needs them as a graph input")
        rois = np.array([[0.0] + _floats(r, 4, "--roi") for r in args.roi], np.float32)
        tensors = run_with_outputs(model, {name: x, pool.rois: rois}, [pool.offset], args.threads)
        bins = roi_bins(pool, rois, tensors[pool.offset])
        draw_bins(picture, rois, bins, args.output, scale)
        print(f"{args.output}: {len(rois)} RoI(s), {pool.pooled[0]}x{pool.pooled[1]} bins of {pool.name}")
        return 0
    if not args.point:
        raise SystemExit("give --point y,x (sampling points) or --roi x1,y1,x2,y2 (RoI bins)")
    point = _floats(args.point, 2, "--point")
    layers = deformable_layers(model)
    if not layers:
        raise SystemExit("the model has no deformable convolution")
    if args.levels < 1:
        raise SystemExit("--levels must be at least 1")
    chosen = layers[-args.levels:]
    names = [n for layer in chosen for n in (layer.input, layer.offset, layer.mask) if n and n != name]
    tensors = run_with_outputs(model, {name: x}, names, args.threads)
    tensors[name] = x
    levels, unit = compose_sampling_points(chosen, tensors, (height, width), (point[0], point[1]),
                                           offset_group=args.offset_group)
    draw_points(picture, levels, unit, args.output, scale, args.all_levels)
    print(f"{args.output}: {levels[-1][0].size} sampling points through {len(chosen)} deformable layer(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
