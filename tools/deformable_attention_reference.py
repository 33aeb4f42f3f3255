"""NumPy transcriptions of the two framework functions DeformRT's DCNv3 and multi-scale deformable
attention kernels are tested against (used by Tests/python/test_deformable_attention.py and by
tools/gen_deformable_attention_vectors.py). Float64 throughout; numpy only.

dcnv3_reference: InternImage's `dcnv3_core_pytorch`
    (OpenGVLab/InternImage, classification/ops_dcnv3/functions/dcnv3_func.py), step by step:
    pad, reference points, dilation grid, sampling locations normalised by the padded size,
    grid_sample (bilinear, zeros, align_corners False), times the mask, summed over the points.
    Where it disagrees with InternImage's CUDA kernel (src/cuda/dcnv3_im2col_cuda.cuh,
    src/cuda/dcnv3_cuda.cu), this follows the kernel, as the TensorRT plugin that runs
    `mmdeploy::TRTDCNv3` does:
      - the PyTorch function pads W by pad_h and H by pad_w (F.pad's list runs from the last
        dim); the kernel pads H by pad_h and W by pad_w. Here: H by pad_h, W by pad_w.
      - the output size is the kernel's (H + 2 pad_h - (dilation_h (kernel_h - 1) + 1)) // stride_h + 1;
        the function reads it from offset's shape (they agree when the shapes are consistent).
      - remove_center drops point (i = kernel_w // 2, j = kernel_h // 2) for any kernel, as the
        kernel does; the function refuses kernels that are not square and odd.
    Point k of a group is (i, j) = divmod(k, kernel_h) with i along x (width) and j along y:
    the function's meshgrid over (x, y) flattened, the kernel's `for i < kernel_w: for j < kernel_h`.
    Offsets are (x, y) pairs per point: offset[..., (g * P + k) * 2 + 0] moves along x.
    Points outside contribute nothing even when their mask is not finite (the kernel skips them;
    the function would give 0 * mask).

msda_reference: mmcv's `multi_scale_deformable_attn_pytorch`
    (open-mmlab/mmcv, mmcv/ops/multi_scale_deform_attn.py): per level, value reshaped to
    [bs * heads, dim, H, W], grid 2 * location - 1 sampled with grid_sample (bilinear, zeros,
    align_corners False), times the attention weights, summed over levels and points. The level's
    keys start at level_start_index[l], as mmcv's CUDA kernel reads them
    (mmcv/ops/csrc/common/cuda/ms_deform_attn_cuda_kernel.cuh); the PyTorch function ignores that
    input and splits value by H * W in order, which is the same when the index is consistent.
    Points outside contribute nothing even with a non-finite weight (the CUDA kernel skips them).
"""
from __future__ import annotations

import numpy as np


def bilinear_zeros(image: np.ndarray, x: np.ndarray, y: np.ndarray):
    """Bilinear samples of image [B, C, H, W] at pixel positions x, y [B, Ho, Wo]: each corner
    outside reads 0. Returns [B, C, Ho, Wo] and a [B, Ho, Wo] mask of the positions that touch the
    image (-1 < x < W, -1 < y < H); non-finite positions read 0."""
    b, c, h, w = image.shape
    touches = np.isfinite(x) & np.isfinite(y) & (x > -1) & (x < w) & (y > -1) & (y < h)
    x = np.where(touches, x, 0.0)
    y = np.where(touches, y, 0.0)
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    lx, ly = x - x0, y - y0
    out = np.zeros((b, c) + x.shape[1:3])
    batch = np.arange(b)[:, None, None]
    for dy, wy in ((0, 1 - ly), (1, ly)):
        for dx, wx in ((0, 1 - lx), (1, lx)):
            iy, ix = y0 + dy, x0 + dx
            valid = touches & (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
            values = image[batch, :, np.clip(iy, 0, h - 1), np.clip(ix, 0, w - 1)]  # [B, Ho, Wo, C]
            weight = np.where(valid, wy * wx, 0.0)
            out += np.moveaxis(np.where(valid[..., None], values, 0.0) * weight[..., None], -1, 1)
    return out, touches


def grid_sample_bilinear_zeros(image: np.ndarray, grid: np.ndarray):
    """torch.nn.functional.grid_sample(mode='bilinear', padding_mode='zeros', align_corners=False):
    image [B, C, H, W], grid [B, Ho, Wo, 2] as (x, y) in [-1, 1]; see bilinear_zeros."""
    h, w = image.shape[2:]
    return bilinear_zeros(image, ((grid[..., 0] + 1) * w - 1) / 2, ((grid[..., 1] + 1) * h - 1) / 2)


def dcnv3_output_size(h, w, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w):
    """The CUDA kernel's output size (dcnv3_cuda.cu)."""
    ho = (h + 2 * pad_h - (dilation_h * (kernel_h - 1) + 1)) // stride_h + 1
    wo = (w + 2 * pad_w - (dilation_w * (kernel_w - 1) + 1)) // stride_w + 1
    return ho, wo


def dcnv3_points(kernel_h, kernel_w, remove_center):
    """(i, j) of each point in offset order: i along x (width), j along y (height)."""
    points = [(i, j) for i in range(kernel_w) for j in range(kernel_h)]
    if remove_center:
        points.remove((kernel_w // 2, kernel_h // 2))
    return points


def dcnv3_reference(input, offset, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                    dilation_h, dilation_w, group, group_channels, offset_scale, remove_center=0):
    """input [N, H, W, G*Gc], offset [N, Ho, Wo, G*P*2], mask [N, Ho, Wo, G*P] -> [N, Ho, Wo, G*Gc]."""
    x = np.asarray(input, np.float64)
    n, h, w, c = x.shape
    assert c == group * group_channels
    ho, wo = dcnv3_output_size(h, w, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w)
    points = dcnv3_points(kernel_h, kernel_w, remove_center)
    p = len(points)
    assert offset.shape == (n, ho, wo, group * p * 2), (offset.shape, (n, ho, wo, group * p * 2))
    assert mask.shape == (n, ho, wo, group * p)
    # Pad H by pad_h and W by pad_w (the kernel's rule, see the module comment). The padding is
    # zeros, so sampling the padded image equals sampling the input at positions shifted by the
    # pads; that is done below, so that "outside" means outside the input, as in the kernel.
    hp, wp = h + 2 * pad_h, w + 2 * pad_w
    # Reference points: the centre of each output pixel's window top-left tap, normalised.
    half_h, half_w = (dilation_h * (kernel_h - 1)) // 2, (dilation_w * (kernel_w - 1)) // 2
    ref_y = (half_h + 0.5 + np.arange(ho) * stride_h) / hp
    ref_x = (half_w + 0.5 + np.arange(wo) * stride_w) / wp
    # Dilation grid, normalised, one entry per point.
    grid_x = np.array([(-half_w + i * dilation_w) / wp for i, _ in points])
    grid_y = np.array([(-half_h + j * dilation_h) / hp for _, j in points])
    off = np.asarray(offset, np.float64).reshape(n, ho, wo, group, p, 2)
    loc_x = ref_x[None, None, :, None, None] + grid_x * offset_scale + off[..., 0] * offset_scale / wp
    loc_y = ref_y[None, :, None, None, None] + grid_y * offset_scale + off[..., 1] * offset_scale / hp
    grids = np.stack([2 * loc_x - 1, 2 * loc_y - 1], -1)  # [N, Ho, Wo, G, P, 2]
    # [N, H, W, G*Gc] -> [N*G, Gc, H, W]; grid -> [N*G, Ho*Wo, P, 2]
    image = x.reshape(n, h * w, group * group_channels).transpose(0, 2, 1).reshape(n * group, group_channels, h, w)
    grid = grids.reshape(n, ho * wo, group, p, 2).transpose(0, 2, 1, 3, 4).reshape(n * group, ho * wo, p, 2)
    # grid_sample's pixel positions in the padded image (align_corners False), minus the pads.
    px = ((grid[..., 0] + 1) * wp - 1) / 2 - pad_w
    py = ((grid[..., 1] + 1) * hp - 1) / 2 - pad_h
    sampled, touches = bilinear_zeros(image, px, py)  # [N*G, Gc, Ho*Wo, P]
    m = np.asarray(mask, np.float64).reshape(n, ho * wo, group, p).transpose(0, 2, 1, 3).reshape(n * group, 1, ho * wo, p)
    m = np.where(touches[:, None], m, 0.0)
    out = (sampled * m).sum(-1).reshape(n, group * group_channels, ho * wo)
    return out.transpose(0, 2, 1).reshape(n, ho, wo, group * group_channels)


def msda_reference(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    """value [bs, keys, heads, dim], spatial_shapes [L, 2] (h, w), level_start_index [L],
    sampling_locations [bs, q, heads, L, P, 2] (x, y in [0, 1]), attention_weights [bs, q, heads, L, P]
    -> [bs, q, heads * dim]."""
    v = np.asarray(value, np.float64)
    bs, keys, heads, dim = v.shape
    _, nq, _, levels, points, _ = sampling_locations.shape
    grids = 2 * np.asarray(sampling_locations, np.float64) - 1
    weights = np.asarray(attention_weights, np.float64)
    sampled_levels = []
    for level in range(levels):
        h, w = (int(s) for s in spatial_shapes[level])
        start = int(level_start_index[level])
        assert 0 <= start and start + h * w <= keys
        image = v[:, start:start + h * w].reshape(bs, h * w, heads * dim).transpose(0, 2, 1).reshape(bs * heads, dim, h, w)
        grid = grids[:, :, :, level].transpose(0, 2, 1, 3, 4).reshape(bs * heads, nq, points, 2)
        sampled, touches = grid_sample_bilinear_zeros(image, grid)  # [bs*heads, dim, q, P]
        level_weights = weights[:, :, :, level].transpose(0, 2, 1, 3).reshape(bs * heads, 1, nq, points)
        sampled_levels.append(sampled * np.where(touches[:, None], level_weights, 0.0))
    out = np.stack(sampled_levels, -2).reshape(bs * heads, dim, nq, levels * points).sum(-1)
    return out.reshape(bs, heads * dim, nq).transpose(0, 2, 1)
