"""NumPy transcriptions of the published deformable RoI pooling kernels.

Used by tools/gen_roi_vectors.py to make test vectors; never needed at run time. Each function
follows one published kernel line by line, in float32 wherever the kernel computes in `float`
(np.float32 scalars; Python floats where the kernel promotes to double), so that the vectors carry
the reference's rounding and not a re-derivation's. Channels are vectorised (the kernels run one
thread per output element; the per-element arithmetic is the same).

deform_roi_pool
    transcribes open-mmlab/mmcv
      mmcv/ops/csrc/common/cuda/deform_roi_pool_cuda_kernel.cuh  (deform_roi_pool_forward_cuda_kernel)
      mmcv/ops/csrc/common/cuda/common_cuda_helper.hpp            (bilinear_interpolate)
      mmcv/ops/deform_roi_pool.py  (ModulatedDeformRoIPoolPack.forward: the pooled output times mask)
    = ONNX mmcv::MMCVDeformRoIPool, and MMCVModulatedDeformRoIPool when a mask is given.

deformable_psroi_pool
    transcribes msracver/Deformable-ConvNets
      rfcn/operator_cxx/deformable_psroi_pooling.cu  (DeformablePSROIPoolForwardKernel, bilinear_interp)
      rfcn/operator_cxx/deformable_psroi_pooling-inl.h  (part_size 0 means pooled_size;
                                                         num_classes = trans.shape[1] / 2)
    = MXNet DeformablePSROIPooling (the DCN authors' R-FCN operator).

Where the kernels have undefined behaviour (batch index outside the batch, non-finite values
reaching an int cast) these functions raise ValueError instead of guessing: the generator keeps
such cases out of the vectors, and DeformRT's documented results for them are tested in Swift.
"""

from __future__ import annotations

import math

import numpy as np

f32 = np.float32


def _c_round(v) -> float:
    """C round(): halves away from zero (numpy's round is half-to-even)."""
    v = float(v)
    return math.copysign(math.floor(abs(v) + 0.5), v)


def _batch_index(v, batch: int) -> int:
    if not math.isfinite(float(v)):
        raise ValueError("non-finite batch index")
    b = int(float(v))  # C float -> int conversion truncates toward zero
    if not 0 <= b < batch:
        raise ValueError(f"batch index {b} outside [0, {batch})")
    return b


def _mmcv_bilinear(plane: np.ndarray, height: int, width: int, y, x):
    """bilinear_interpolate (common_cuda_helper.hpp) for all channels: plane is [C, H, W]."""
    y = f32(y)
    x = f32(x)
    if math.isnan(float(y)) or math.isnan(float(x)):
        # The CUDA code would pass NaN on to an int cast (undefined); keep such cases out.
        raise ValueError("NaN sample position")
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return np.zeros(plane.shape[0], dtype=f32)
    if y <= 0:
        y = f32(0)
    if x <= 0:
        x = f32(0)
    y_low = int(y)
    x_low = int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = f32(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = f32(x_low)
    else:
        x_high = x_low + 1
    ly = f32(y - f32(y_low))
    lx = f32(x - f32(x_low))
    hy = f32(f32(1.0) - ly)
    hx = f32(f32(1.0) - lx)
    v1 = plane[:, y_low, x_low]
    v2 = plane[:, y_low, x_high]
    v3 = plane[:, y_high, x_low]
    v4 = plane[:, y_high, x_high]
    w1, w2, w3, w4 = f32(hy * hx), f32(hy * lx), f32(ly * hx), f32(ly * lx)
    return ((w1 * v1 + w2 * v2) + w3 * v3) + w4 * v4


def deform_roi_pool(
    data: np.ndarray,
    rois: np.ndarray,
    offset: np.ndarray | None,
    mask: np.ndarray | None,
    pooled_height: int,
    pooled_width: int,
    spatial_scale: float,
    sampling_ratio: int,
    gamma: float,
) -> np.ndarray:
    """mmcv deform_roi_pool forward (and the modulated variant when mask is given).

    data [N, C, H, W] float32; rois [R, 5] (batch, x1, y1, x2, y2) in image coordinates;
    offset [R, 2, ph, pw] normalised (x then y) or None; mask [R, 1, ph, pw] or None.
    Returns [R, C, ph, pw] float32.
    """
    data = np.ascontiguousarray(data, dtype=f32)
    rois = np.asarray(rois, dtype=f32)
    n_batch, channels, height, width = data.shape
    out = np.zeros((rois.shape[0], channels, pooled_height, pooled_width), dtype=f32)
    scale = f32(spatial_scale)
    gamma = f32(gamma)
    for n in range(rois.shape[0]):
        r = rois[n]
        batch = _batch_index(r[0], n_batch)
        # "Do not using rounding; this implementation detail is critical"
        roi_start_w = f32(float(f32(r[1] * scale)) - 0.5)
        roi_start_h = f32(float(f32(r[2] * scale)) - 0.5)
        roi_end_w = f32(float(f32(r[3] * scale)) - 0.5)
        roi_end_h = f32(float(f32(r[4] * scale)) - 0.5)
        roi_width = f32(roi_end_w - roi_start_w)
        roi_height = f32(roi_end_h - roi_start_h)
        bin_size_h = f32(roi_height / f32(pooled_height))
        bin_size_w = f32(roi_width / f32(pooled_width))
        plane = data[batch]
        grid_h = sampling_ratio if sampling_ratio > 0 else int(math.ceil(float(f32(roi_height / f32(pooled_height)))))
        grid_w = sampling_ratio if sampling_ratio > 0 else int(math.ceil(float(f32(roi_width / f32(pooled_width)))))
        count = f32(max(grid_h * grid_w, 1))
        for ph in range(pooled_height):
            for pw in range(pooled_width):
                start_w = roi_start_w
                start_h = roi_start_h
                if offset is not None:
                    offset_roi_w = f32(f32(gamma * roi_width) * f32(offset[n, 0, ph, pw]))
                    offset_roi_h = f32(f32(gamma * roi_height) * f32(offset[n, 1, ph, pw]))
                    start_w = f32(start_w + offset_roi_w)
                    start_h = f32(start_h + offset_roi_h)
                acc = np.zeros(channels, dtype=f32)
                for iy in range(grid_h):
                    y = f32(f32(start_h + f32(f32(ph) * bin_size_h))
                            + f32(f32(f32(f32(iy) + f32(0.5)) * bin_size_h) / f32(grid_h)))
                    for ix in range(grid_w):
                        x = f32(f32(start_w + f32(f32(pw) * bin_size_w))
                                + f32(f32(f32(f32(ix) + f32(0.5)) * bin_size_w) / f32(grid_w)))
                        acc = acc + _mmcv_bilinear(plane, height, width, y, x)
                pooled = acc / count
                if mask is not None:
                    pooled = pooled * f32(mask[n, 0, ph, pw])
                out[n, :, ph, pw] = pooled
    return out


def deformable_psroi_pool(
    data: np.ndarray,
    rois: np.ndarray,
    trans: np.ndarray | None,
    no_trans: bool,
    spatial_scale: float,
    output_dim: int,
    group_size: int,
    pooled_size: int,
    part_size: int,
    sample_per_part: int,
    trans_std: float,
) -> np.ndarray:
    """MXNet DeformablePSROIPooling forward (Deformable-ConvNets, rfcn/operator_cxx).

    data [N, output_dim * group_size^2 (or more), H, W]; rois [R, 5] (batch, x1, y1, x2, y2);
    trans [R, 2 * num_classes, part_size, part_size] or None with no_trans.
    Returns [R, output_dim, pooled_size, pooled_size] float32.
    """
    data = np.ascontiguousarray(data, dtype=f32)
    rois = np.asarray(rois, dtype=f32)
    n_batch, channels, height, width = data.shape
    if part_size == 0:
        part_size = pooled_size
    pooled_height = pooled_width = pooled_size
    num_classes = 1 if no_trans else trans.shape[1] // 2
    channels_each_class = output_dim if no_trans else output_dim // num_classes
    scale = f32(spatial_scale)
    trans_std = f32(trans_std)
    out = np.zeros((rois.shape[0], output_dim, pooled_size, pooled_size), dtype=f32)
    for n in range(rois.shape[0]):
        r = rois[n]
        batch = _batch_index(r[0], n_batch)
        # static_cast<DType>(round(x1)) * spatial_scale is a float product; "- 0.5" is a double.
        roi_start_w = f32(float(f32(f32(_c_round(r[1])) * scale)) - 0.5)
        roi_start_h = f32(float(f32(f32(_c_round(r[2])) * scale)) - 0.5)
        # (round(x2) + 1.) is a double, so this whole expression is evaluated in double.
        roi_end_w = f32((_c_round(r[3]) + 1.0) * float(scale) - 0.5)
        roi_end_h = f32((_c_round(r[4]) + 1.0) * float(scale) - 0.5)
        roi_width = f32(max(float(f32(roi_end_w - roi_start_w)), 0.1))
        roi_height = f32(max(float(f32(roi_end_h - roi_start_h)), 0.1))
        bin_size_h = f32(roi_height / f32(pooled_height))
        bin_size_w = f32(roi_width / f32(pooled_width))
        sub_bin_size_h = f32(bin_size_h / f32(sample_per_part))
        sub_bin_size_w = f32(bin_size_w / f32(sample_per_part))
        plane = data[batch]
        for ctop in range(output_dim):
            class_id = ctop // channels_each_class
            for ph in range(pooled_height):
                for pw in range(pooled_width):
                    part_h = int(math.floor(float(f32(f32(f32(ph) / f32(pooled_height)) * f32(part_size)))))
                    part_w = int(math.floor(float(f32(f32(f32(pw) / f32(pooled_width)) * f32(part_size)))))
                    if no_trans:
                        trans_x = trans_y = f32(0)
                    else:
                        trans_x = f32(f32(trans[n, class_id * 2, part_h, part_w]) * trans_std)
                        trans_y = f32(f32(trans[n, class_id * 2 + 1, part_h, part_w]) * trans_std)
                    wstart = f32(f32(f32(pw) * bin_size_w) + roi_start_w)
                    wstart = f32(wstart + f32(trans_x * roi_width))
                    hstart = f32(f32(f32(ph) * bin_size_h) + roi_start_h)
                    hstart = f32(hstart + f32(trans_y * roi_height))
                    gw = int(math.floor(float(f32(f32(f32(pw) * f32(group_size)) / f32(pooled_width)))))
                    gh = int(math.floor(float(f32(f32(f32(ph) * f32(group_size)) / f32(pooled_height)))))
                    gw = min(max(gw, 0), group_size - 1)
                    gh = min(max(gh, 0), group_size - 1)
                    c = (ctop * group_size + gh) * group_size + gw
                    total = f32(0)
                    count = 0
                    for ih in range(sample_per_part):
                        for iw in range(sample_per_part):
                            w = f32(wstart + f32(f32(iw) * sub_bin_size_w))
                            h = f32(hstart + f32(f32(ih) * sub_bin_size_h))
                            if math.isnan(float(w)) or math.isnan(float(h)):
                                raise ValueError("NaN sample position")
                            if w < -0.5 or w > width - 0.5 or h < -0.5 or h > height - 0.5:
                                continue
                            w = f32(min(max(float(w), 0.0), width - 1.0))
                            h = f32(min(max(float(h), 0.0), height - 1.0))
                            x1, x2 = int(math.floor(w)), int(math.ceil(w))
                            y1, y2 = int(math.floor(h)), int(math.ceil(h))
                            dist_x = f32(w - f32(x1))
                            dist_y = f32(h - f32(y1))
                            one = f32(1)
                            v11 = plane[c, y1, x1]
                            v12 = plane[c, y2, x1]
                            v21 = plane[c, y1, x2]
                            v22 = plane[c, y2, x2]
                            val = f32(
                                f32(f32(f32(f32(one - dist_x) * f32(one - dist_y)) * v11)
                                    + f32(f32(f32(one - dist_x) * dist_y) * v12))
                                + f32(f32(dist_x * f32(one - dist_y)) * v21)
                            )
                            val = f32(val + f32(f32(dist_x * dist_y) * v22))
                            total = f32(total + val)
                            count += 1
                    out[n, ctop, ph, pw] = f32(0) if count == 0 else f32(total / f32(count))
    return out
