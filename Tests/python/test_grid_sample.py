"""ONNX GridSample (opsets 16, 20, 22) against onnx.reference and onnxruntime.

Both references agree everywhere except bicubic with border padding, where onnx.reference clamps
the sample position into the image first and onnxruntime (like PyTorch) clamps each tap instead;
DeformRT follows onnxruntime there (test_cubic_border_follows_onnxruntime shows the two differ).
Nearest rounds half to even in both (np.rint, std::nearbyint). Non-finite grid values read 0.

Tolerances: rtol 1e-5 / atol 1e-5 for nearest and bilinear (different but exact-order-of-magnitude
float32 summation orders), atol 5e-5 for bicubic (16 products, coefficients up to 1.3).
"""
from __future__ import annotations

import itertools

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import deformrt

MODES_20 = {"bilinear": "linear", "nearest": "nearest", "bicubic": "cubic"}
PADDINGS = ["zeros", "border", "reflection"]


def grid_model(mode, padding, align, opset, x_shape, grid_shape, omit=()):
    attrs = {"mode": mode, "padding_mode": padding, "align_corners": align}
    for name in omit:
        attrs.pop(name)
    node = helper.make_node("GridSample", ["X", "grid"], ["Y"], **attrs)
    graph = helper.make_graph(
        [node], "gs",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(x_shape)),
         helper.make_tensor_value_info("grid", TensorProto.FLOAT, list(grid_shape))],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10 if opset >= 21 else 9
    return m.SerializeToString()


def deformrt_run(model, x, grid, threads=2):
    with deformrt.InferenceSession(model, threads=threads) as s:
        return s.run(None, {"X": x, "grid": grid})[0]


def onnxruntime_run(model, x, grid):
    s = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return s.run(None, {"X": x, "grid": grid})[0]


def reference_run(model, x, grid):
    return ReferenceEvaluator(onnx.load_from_string(model)).run(None, {"X": x, "grid": grid})[0]


def tolerance(mode):
    return dict(rtol=1e-5, atol=5e-5 if mode in ("cubic", "bicubic") else 1e-5)


def random_case(rng, n, c, h, w, ho, wo, spread=1.3):
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    grid = rng.uniform(-spread, spread, (n, ho, wo, 2)).astype(np.float32)
    return x, grid


@pytest.mark.parametrize("mode,padding,align", itertools.product(["linear", "nearest", "cubic"], PADDINGS, [0, 1]))
def test_against_onnx_reference_opset20(mode, padding, align):
    """Every mode x padding x align_corners on batch 2, odd sizes, a grid partly outside."""
    rng = np.random.default_rng(hash((mode, padding, align)) % 2**32)
    x, grid = random_case(rng, 2, 3, 5, 7, 4, 3)
    # Pixel centres and exact corners too (integer positions hit the last row / column).
    grid[0, 0, :, 0] = [-1, 1, 0]
    grid[0, 0, :, 1] = [1, -1, 1]
    model = grid_model(mode, padding, align, 20, x.shape, grid.shape)
    got = deformrt_run(model, x, grid)
    want = onnxruntime_run(model, x, grid)
    np.testing.assert_allclose(got, want, **tolerance(mode))
    if not (mode == "cubic" and padding == "border"):
        np.testing.assert_allclose(got, reference_run(model, x, grid), **tolerance(mode))


@pytest.mark.parametrize("opset", [16, 22])
@pytest.mark.parametrize("mode,padding,align", itertools.product(MODES_20, PADDINGS, [0, 1]))
def test_opset16_and_22_spellings_against_onnxruntime(opset, mode, padding, align):
    """Opset 16 spells the modes bilinear / bicubic, 20 and 22 linear / cubic."""
    rng = np.random.default_rng(7 + opset)
    x, grid = random_case(rng, 3, 17, 9, 6, 5, 7)
    name = mode if opset == 16 else MODES_20[mode]
    model = grid_model(name, padding, align, opset, x.shape, grid.shape)
    np.testing.assert_allclose(deformrt_run(model, x, grid), onnxruntime_run(model, x, grid), **tolerance(mode))


@pytest.mark.parametrize("channels", [1, 3, 7, 15, 16, 17, 33, 129])
@pytest.mark.parametrize("mode", ["linear", "nearest", "cubic"])
def test_channel_counts_and_threads_against_onnxruntime(channels, mode):
    """Awkward channel counts (the 16 / 8 / 4 / 1 tails of the gather), several tiles per image,
    1 and 3 threads give identical results."""
    rng = np.random.default_rng(channels)
    x, grid = random_case(rng, 2, channels, 11, 13, 19, 23, spread=1.1)
    model = grid_model(mode, "zeros", 0, 20, x.shape, grid.shape)
    want = onnxruntime_run(model, x, grid)
    one = deformrt_run(model, x, grid, threads=1)
    np.testing.assert_allclose(one, want, **tolerance(mode))
    np.testing.assert_array_equal(deformrt_run(model, x, grid, threads=3), one)


def test_defaults_by_opset():
    """No attributes: bilinear / linear, zeros, align_corners 0 in every opset."""
    rng = np.random.default_rng(3)
    x, grid = random_case(rng, 2, 2, 4, 5, 3, 3)
    for opset in (16, 20, 22):
        model = grid_model("linear", "zeros", 0, opset, x.shape, grid.shape,
                           omit=("mode", "padding_mode", "align_corners"))
        np.testing.assert_allclose(deformrt_run(model, x, grid), onnxruntime_run(model, x, grid), rtol=1e-5, atol=1e-5)


def test_nearest_rounds_half_to_even():
    """align_corners 1 on width 5 maps -0.75, -0.25, 0.25, 0.75 to 0.5, 1.5, 2.5, 3.5 exactly:
    half to even gives pixels 0, 2, 2, 4 (both references do so)."""
    x = np.arange(1, 6, dtype=np.float32).reshape(1, 1, 1, 5)
    grid = np.zeros((1, 1, 4, 2), np.float32)
    grid[0, 0, :, 0] = [-0.75, -0.25, 0.25, 0.75]
    for padding in PADDINGS:
        model = grid_model("nearest", padding, 1, 20, x.shape, grid.shape)
        got = deformrt_run(model, x, grid)
        np.testing.assert_array_equal(got.ravel(), [1, 3, 3, 5])
        np.testing.assert_array_equal(got, reference_run(model, x, grid))
        np.testing.assert_array_equal(got, onnxruntime_run(model, x, grid))


def test_cubic_border_follows_onnxruntime():
    """The one place the references differ: positions just outside the image."""
    rng = np.random.default_rng(11)
    x, grid = random_case(rng, 2, 3, 5, 6, 4, 4, spread=1.6)
    model = grid_model("cubic", "border", 0, 20, x.shape, grid.shape)
    got = deformrt_run(model, x, grid)
    np.testing.assert_allclose(got, onnxruntime_run(model, x, grid), rtol=1e-5, atol=5e-5)
    assert np.abs(got - reference_run(model, x, grid)).max() > 1e-3


@pytest.mark.parametrize("mode,padding", itertools.product(["linear", "nearest", "cubic"], PADDINGS))
def test_non_finite_grid_values_read_zero(mode, padding):
    """NaN and ±Inf in either coordinate give 0 (onnxruntime's output is arbitrary there); other
    pixels are unaffected and match onnxruntime."""
    rng = np.random.default_rng(5)
    x, grid = random_case(rng, 2, 5, 6, 7, 3, 4)
    bad = [(0, 0, 0, 0, np.nan), (0, 1, 2, 1, np.inf), (1, 2, 3, 0, -np.inf), (1, 0, 1, 1, np.nan)]
    clean = grid.copy()
    for n, i, j, k, v in bad:
        grid[n, i, j, k] = v
    model = grid_model(mode, padding, 0, 20, x.shape, grid.shape)
    got = deformrt_run(model, x, grid)
    want = onnxruntime_run(model, x, clean)
    for n, i, j, _, _ in bad:
        np.testing.assert_array_equal(got[n, :, i, j], 0)
        want[n, :, i, j] = 0
    np.testing.assert_allclose(got, want, **tolerance(mode))


@pytest.mark.parametrize("padding", PADDINGS)
def test_huge_grid_values(padding):
    """Far outside: zeros reads 0, border the edge pixel; reflection is defined (finite, an input
    value for nearest). Moderate values (1e3) match onnxruntime."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 2, 4, 5)).astype(np.float32)
    grid = np.array([[[[1e30, 0.0], [-1e30, 0.0], [0.0, 3e38], [1e3, -1e3], [-7e2, 3e2]]]], np.float32)
    for mode in ("linear", "nearest", "cubic"):
        model = grid_model(mode, padding, 0, 20, x.shape, grid.shape)
        got = deformrt_run(model, x, grid)
        assert np.isfinite(got).all()
        if padding == "zeros":
            np.testing.assert_array_equal(got, 0)
        elif padding == "border" and mode != "cubic":
            # Grid y 0 is row 1.5 (align_corners 0): linear averages rows 1 and 2, nearest takes 2.
            edge = x[0, :, 1:3, 4].mean(1) if mode == "linear" else x[0, :, 2, 4]
            np.testing.assert_allclose(got[0, :, 0, 0], edge, rtol=1e-6)
            np.testing.assert_allclose(got[0, :, 0, 1], x[0, :, 1:3, 0].mean(1) if mode == "linear" else x[0, :, 2, 0],
                                       rtol=1e-6)
        small = grid[:, :, 3:]
        want = onnxruntime_run(grid_model(mode, padding, 0, 20, x.shape, small.shape), x, small)
        np.testing.assert_allclose(got[:, :, :, 3:], want, rtol=1e-4, atol=1e-4)
        if mode == "nearest":
            assert np.isin(got, np.append(x.ravel(), 0)).all()


def test_dense_grid_larger_image():
    """A dense grid over a 64-channel image: several tiles per image, 2 threads."""
    rng = np.random.default_rng(13)
    x, grid = random_case(rng, 2, 64, 31, 37, 29, 33, spread=1.05)
    model = grid_model("linear", "zeros", 0, 20, x.shape, grid.shape)
    np.testing.assert_allclose(deformrt_run(model, x, grid), onnxruntime_run(model, x, grid), rtol=1e-5, atol=1e-5)


def test_empty_output_and_batch():
    x = np.zeros((2, 3, 4, 4), np.float32)
    grid = np.zeros((2, 0, 5, 2), np.float32)
    model = grid_model("linear", "zeros", 0, 20, x.shape, grid.shape)
    assert deformrt_run(model, x, grid).shape == (2, 3, 0, 5)
    x = np.zeros((0, 3, 4, 4), np.float32)
    grid = np.zeros((0, 2, 5, 2), np.float32)
    assert deformrt_run(grid_model("linear", "zeros", 0, 20, x.shape, grid.shape), x, grid).shape == (0, 3, 2, 5)


@pytest.mark.parametrize("attrs,match", [
    ({"mode": "area"}, "mode 'area'"),
    ({"padding_mode": "wrap"}, "padding_mode 'wrap'"),
    ({"align_corners": 2}, "align_corners"),
])
def test_unsupported_attributes_are_named(attrs, match):
    node = helper.make_node("GridSample", ["X", "grid"], ["Y"], name="gs0", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 1, 2, 2]),
                                            helper.make_tensor_value_info("grid", TensorProto.FLOAT, [1, 1, 1, 2])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    m.ir_version = 9
    with pytest.raises(deformrt.DeformRTError, match=match) as info:
        deformrt.InferenceSession(m.SerializeToString())
    assert "gs0" in str(info.value)


@pytest.mark.parametrize("x_shape,grid_shape,match", [
    ((1, 2, 3, 4), (2, 2, 2, 2), "grid shape"),
    ((1, 2, 3, 4), (1, 2, 2, 3), "grid shape"),
    ((1, 2, 3, 4), (1, 2, 2), "grid shape"),
    ((1, 2, 3, 4), (1, 2, 2, 2, 3), "grid shape"),
    ((1, 2, 0, 4), (1, 2, 2, 2), "empty"),
    ((2, 3), (2, 2), "rank 4"),
])
def test_bad_shapes_are_named(x_shape, grid_shape, match):
    model = grid_model("linear", "zeros", 0, 20, x_shape, grid_shape)
    with pytest.raises(deformrt.DeformRTError, match=match) as info:
        deformrt_run(model, np.zeros(x_shape, np.float32), np.zeros(grid_shape, np.float32))
    assert "GridSample" in str(info.value)


@pytest.mark.parametrize("mode,padding,align", itertools.product(["linear", "nearest", "cubic"], PADDINGS, [0, 1]))
def test_plane_and_channels_last_paths_against_onnxruntime(mode, padding, align):
    """A sparse grid (fewer samples than pixels: read from the NCHW planes) and a dense one
    (channels-last rows), batch 2, 5 channels, every mode and padding."""
    rng = np.random.default_rng(17)
    for x_size, grid_size in (((9, 11), (2, 3)), ((5, 6), (20, 21))):
        x, grid = random_case(rng, 2, 5, *x_size, *grid_size, spread=1.4)
        model = grid_model(mode, padding, align, 20, x.shape, grid.shape)
        np.testing.assert_allclose(deformrt_run(model, x, grid), onnxruntime_run(model, x, grid), **tolerance(mode))


# ---- 5-D (volumetric) GridSample: X [N, C, D, H, W], grid [N, Do, Ho, Wo, 3] -------------------
# onnx.reference and onnxruntime (1.17+) both run 5-D linear and nearest and agree with each other
# (onnxruntime refuses 5-D cubic, as the specification defines cubic for 4-D only), so each case is
# checked against both. Tolerance rtol 1e-5 / atol 1e-5: trilinear weights are products of three
# per-axis weights, summed in a different order from the references' nested 1-D interpolations.

def random_volume_case(rng, n, c, d, h, w, do, ho, wo, spread=1.3):
    x = rng.standard_normal((n, c, d, h, w)).astype(np.float32)
    grid = rng.uniform(-spread, spread, (n, do, ho, wo, 3)).astype(np.float32)
    return x, grid


@pytest.mark.parametrize("opset", [20, 22])
@pytest.mark.parametrize("mode,padding,align", itertools.product(["linear", "nearest"], PADDINGS, [0, 1]))
def test_volumetric_against_both_references(opset, mode, padding, align):
    """Batch 2, odd sizes, a grid partly outside, exact corners and voxel centres; a sparse grid
    (NCDHW planes) and a dense one (channels-last rows)."""
    rng = np.random.default_rng(hash((mode, padding, align, opset)) % 2**32)
    for x_size, grid_size in (((5, 7, 6), (3, 2, 4)), ((3, 4, 5), (5, 6, 7))):
        x, grid = random_volume_case(rng, 2, 3, *x_size, *grid_size)
        grid[0, 0, 0, :3] = [[-1, 1, -1], [1, -1, 1], [0, 0, 0]]
        model = grid_model(mode, padding, align, opset, x.shape, grid.shape)
        got = deformrt_run(model, x, grid)
        assert got.shape == (2, 3) + grid.shape[1:4]
        np.testing.assert_allclose(got, onnxruntime_run(model, x, grid), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got, reference_run(model, x, grid), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels", [1, 3, 7, 16, 17, 33])
@pytest.mark.parametrize("mode", ["linear", "nearest"])
def test_volumetric_channel_counts_and_threads(channels, mode):
    """The gather's 16 / 8 / 4 / 1 channel tails, several tiles per volume; 1 and 3 threads give
    identical results."""
    rng = np.random.default_rng(100 + channels)
    x, grid = random_volume_case(rng, 2, channels, 4, 5, 6, 6, 7, 9, spread=1.1)
    model = grid_model(mode, "zeros", 0, 20, x.shape, grid.shape)
    one = deformrt_run(model, x, grid, threads=1)
    np.testing.assert_allclose(one, onnxruntime_run(model, x, grid), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(deformrt_run(model, x, grid, threads=3), one)


def test_volumetric_depth_one_matches_4d():
    """A volume of depth 1 sampled at its one slice (z = 0 with align_corners 1) is the 4-D
    GridSample of that slice: the 5-D and 4-D paths share the per-axis rules."""
    rng = np.random.default_rng(21)
    x4, grid4 = random_case(rng, 2, 5, 6, 7, 4, 5)
    for mode in ("linear", "nearest"):
        for padding in PADDINGS:
            want = deformrt_run(grid_model(mode, padding, 1, 20, x4.shape, grid4.shape), x4, grid4)
            x5 = x4[:, :, None]
            grid5 = np.concatenate([grid4, np.zeros(grid4.shape[:3] + (1,), np.float32)], axis=3)[:, None]
            got = deformrt_run(grid_model(mode, padding, 1, 20, x5.shape, grid5.shape), x5, grid5)
            np.testing.assert_allclose(got[:, :, 0], want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode,padding", itertools.product(["linear", "nearest"], PADDINGS))
def test_volumetric_non_finite_and_huge_grid_values(mode, padding):
    """NaN / ±Inf in any coordinate read 0 (as in 4-D); huge values: zeros reads 0, border and
    reflection give finite values; moderate ones (1e3) match onnxruntime; other voxels unaffected."""
    rng = np.random.default_rng(23)
    x, grid = random_volume_case(rng, 2, 4, 3, 4, 5, 2, 3, 4)
    bad = [(0, 0, 0, 0, 0, np.nan), (0, 1, 2, 3, 2, np.inf), (1, 0, 1, 2, 1, -np.inf), (1, 1, 0, 0, 2, np.nan)]
    clean = grid.copy()
    for n, i, j, k, axis, v in bad:
        grid[n, i, j, k, axis] = v
    grid[1, 1, 2, 3] = [1e30, -3e38, 0.5]
    clean[1, 1, 2, 3] = [1e30, -3e38, 0.5]
    grid[0, 1, 1, 1] = clean[0, 1, 1, 1] = [1e3, -7e2, 3e2]
    model = grid_model(mode, padding, 0, 20, x.shape, grid.shape)
    got = deformrt_run(model, x, grid)
    assert np.isfinite(got).all()
    want = onnxruntime_run(model, x, clean)
    for n, i, j, k, _, _ in bad:
        np.testing.assert_array_equal(got[n, :, i, j, k], 0)
        want[n, :, i, j, k] = 0
    if padding == "zeros":
        np.testing.assert_array_equal(got[1, :, 1, 2, 3], 0)
    # onnxruntime converts 1e30 / -3e38 to integers on its way (arbitrary results): that voxel is
    # checked above (zeros) or only for being finite.
    want[1, :, 1, 2, 3] = got[1, :, 1, 2, 3]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    if mode == "nearest":
        assert np.isin(got, np.append(x.ravel(), 0)).all()


def test_volumetric_cubic_is_refused_by_name():
    x_shape, grid_shape = (1, 2, 3, 4, 5), (1, 2, 2, 2, 3)
    node = helper.make_node("GridSample", ["X", "grid"], ["Y"], name="gs3d", mode="cubic")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(x_shape)),
                                            helper.make_tensor_value_info("grid", TensorProto.FLOAT, list(grid_shape))],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    m.ir_version = 9
    with pytest.raises(deformrt.DeformRTError, match="cubic") as info:
        deformrt_run(m.SerializeToString(), np.zeros(x_shape, np.float32), np.zeros(grid_shape, np.float32))
    assert "gs3d" in str(info.value) and "4-D" in str(info.value)


@pytest.mark.parametrize("x_shape,grid_shape,match", [
    ((1, 2, 3, 4, 5), (1, 2, 2, 2, 2), "grid shape"),
    ((1, 2, 3, 4, 5), (2, 2, 2, 2, 3), "grid shape"),
    ((1, 2, 3, 4, 5), (1, 2, 2, 3), "grid shape"),
    ((1, 2, 0, 4, 5), (1, 2, 2, 2, 3), "empty"),
    ((1, 2, 3, 4, 5, 6), (1, 2, 2, 2, 2, 4), "4-D GridSample"),
])
def test_volumetric_bad_shapes_are_named(x_shape, grid_shape, match):
    model = grid_model("linear", "zeros", 0, 20, x_shape, grid_shape)
    with pytest.raises(deformrt.DeformRTError, match=match) as info:
        deformrt_run(model, np.zeros(x_shape, np.float32), np.zeros(grid_shape, np.float32))
    assert "GridSample" in str(info.value)


@pytest.mark.parametrize("channels", [8, 9, 16, 17, 35])
@pytest.mark.parametrize("mode", ["linear", "nearest", "cubic"])
def test_sparse_grid_channel_blocks_against_onnxruntime(channels, mode):
    """Sparse grids with 8 or more channels run on blocks of 8 channels (interleaved rows, 8 x 8
    transposes in and out): a partial last block, output tiles of 64 pixels and a partial one, a
    pixel count that is not a multiple of 8; 1 and 2 threads give identical results."""
    rng = np.random.default_rng(200 + channels)
    x, grid = random_case(rng, 2, channels, 29, 31, 9, 11, spread=1.2)
    model = grid_model(mode, "zeros" if mode != "nearest" else "border", 0, 20, x.shape, grid.shape)
    one = deformrt_run(model, x, grid, threads=1)
    np.testing.assert_allclose(one, onnxruntime_run(model, x, grid), **tolerance(mode))
    np.testing.assert_array_equal(deformrt_run(model, x, grid, threads=2), one)
    if mode != "cubic":
        x5, grid5 = random_volume_case(rng, 2, channels, 5, 6, 7, 2, 3, 5)
        model = grid_model(mode, "reflection", 1, 20, x5.shape, grid5.shape)
        np.testing.assert_allclose(deformrt_run(model, x5, grid5), onnxruntime_run(model, x5, grid5),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["linear", "nearest", "cubic"])
def test_large_planes_against_onnxruntime(mode):
    """Planes of 32K pixels or more are not interleaved into channel blocks: a sparse grid reads
    the NCHW planes one at a time, a dense one the channels-last copy (17 channels: a 16-wide
    gather and a tail)."""
    rng = np.random.default_rng(31)
    for grid_size in ((35, 70), (130, 260)):
        x, grid = random_case(rng, 2, 17, 128, 260, *grid_size, spread=1.1)
        model = grid_model(mode, "zeros", 0, 20, x.shape, grid.shape)
        np.testing.assert_allclose(deformrt_run(model, x, grid), onnxruntime_run(model, x, grid), **tolerance(mode))
