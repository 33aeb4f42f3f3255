"""deformrt-visualize: the composed sampling points and the deformable RoI bins it draws.

The sampling locations are checked two independent ways: against DeformRT's own DeformConv (a
one-hot kernel over a linear ramp returns the bilinear sample at the sampling location, which for a
ramp a*y + b*x is the location itself), and, through three stacked layers, against nested loops over
the DCNv1 composition with constant offsets. Coordinates are compared to 1e-4 pixels.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

visualize = pytest.importorskip("deformrt.visualize")
PIL = pytest.importorskip("PIL")

BINDING = os.path.join(os.path.dirname(__file__), "..", "..", "bindings", "python", "src")


def _model(nodes, inputs, outputs, initializers, opset=19):
    graph = helper.make_graph(nodes, "visualize", inputs, outputs,
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("ai.deformrt", 1)])
    model.ir_version = 9
    return model


def _deform_block(prefix, source, cin, cout, stride, pad, dilation, offsets, modulated, rng):
    """Offset conv with zero weights: its bias is the constant offset field (and mask logits)."""
    taps = 9
    channels = taps * (3 if modulated else 2)
    bias = np.concatenate([offsets.reshape(-1), np.zeros(taps if modulated else 0)]).astype(np.float32)
    inits = {
        f"{prefix}.ow": np.zeros((channels, cin, 3, 3), np.float32),
        f"{prefix}.ob": bias,
        f"{prefix}.w": (rng.standard_normal((cout, cin, 3, 3)) * 0.2).astype(np.float32),
    }
    conv_args = dict(strides=[stride] * 2, pads=[pad] * 4, dilations=[dilation] * 2)
    nodes = [helper.make_node("Conv", [source, f"{prefix}.ow", f"{prefix}.ob"], [f"{prefix}.om"], name=f"{prefix}.offset_conv", **conv_args)]
    if modulated:
        inits[f"{prefix}.split"] = np.array([2 * taps, taps], np.int64)
        nodes += [helper.make_node("Split", [f"{prefix}.om", f"{prefix}.split"], [f"{prefix}.offset", f"{prefix}.logit"], axis=1),
                  helper.make_node("Sigmoid", [f"{prefix}.logit"], [f"{prefix}.mask"])]
        dcn_inputs = [source, f"{prefix}.w", f"{prefix}.offset", "", f"{prefix}.mask"]
        offset_name = f"{prefix}.offset"
    else:
        dcn_inputs = [source, f"{prefix}.w", f"{prefix}.om"]
        offset_name = f"{prefix}.om"
    nodes.append(helper.make_node("DeformConv", dcn_inputs, [f"{prefix}.out"], name=prefix, kernel_shape=[3, 3], **conv_args))
    nodes.append(helper.make_node("Relu", [f"{prefix}.out"], [f"{prefix}.relu"]))
    return nodes, inits, f"{prefix}.relu", offset_name


def test_sampling_locations_match_deform_conv_kernel():
    """A one-hot 3x3 kernel over ramps reads back each tap's sampling location, offsets varying in space."""
    rng = np.random.default_rng(3)
    h, w = 23, 19
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    x = np.stack([yy, xx])[None]  # channel 0 = y, channel 1 = x
    offset_w = (rng.standard_normal((18, 2, 3, 3)) * 0.01).astype(np.float32)
    offset_b = (rng.standard_normal(18) * 0.8).astype(np.float32)
    weight = np.zeros((18, 2, 3, 3), np.float32)  # output 2k reads channel y at tap k, 2k+1 channel x
    for k in range(9):
        weight[2 * k, 0, k // 3, k % 3] = 1
        weight[2 * k + 1, 1, k // 3, k % 3] = 1
    model = _model(
        [helper.make_node("Conv", ["x", "ow", "ob"], ["offset"], pads=[2, 2, 2, 2], dilations=[2, 2]),
         helper.make_node("DeformConv", ["x", "w", "offset"], ["y"], name="dcn", kernel_shape=[3, 3], pads=[2, 2, 2, 2], dilations=[2, 2])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, h, w])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        {"ow": offset_w, "ob": offset_b, "w": weight})
    (layer,) = visualize.deformable_layers(model)
    assert (layer.kernel, layer.pad, layer.dilation, layer.offset) == ((3, 3), (2, 2), (2, 2), "offset")
    tensors = visualize.run_with_outputs(model, {"x": x}, ["offset", "y"])
    y = tensors["y"][0]
    checked = 0
    for uy in range(4, h - 4):
        for ux in range(4, w - 4):
            sy, sx, weights = visualize._sampling_locations(layer, tensors["offset"][0].astype(np.float64), None,
                                                            np.array([uy], np.float64), np.array([ux], np.float64), 0)
            if not (np.all((sy >= 0) & (sy <= h - 1)) and np.all((sx >= 0) & (sx <= w - 1))):
                continue  # a corner outside reads 0, so the ramp is not recovered there
            np.testing.assert_allclose(sy, y[0::2, uy, ux], atol=1e-4)
            np.testing.assert_allclose(sx, y[1::2, uy, ux], atol=1e-4)
            assert np.all(weights == 1)
            checked += 1
    assert checked > 50


def test_three_levels_compose_as_nested_loops():
    rng = np.random.default_rng(5)
    h, w = 40, 36
    specs = [  # stride, pad, dilation, modulated
        (1, 1, 1, False),
        (2, 2, 2, True),
        (1, 1, 1, False),
    ]
    offsets = [rng.uniform(-1.5, 1.5, (9, 2)).astype(np.float32) for _ in specs]
    nodes, inits, source, cin = [], {}, "x", 3
    for index, ((stride, pad, dilation, modulated), off) in enumerate(zip(specs, offsets)):
        block, block_inits, source, _ = _deform_block(f"l{index}", source, cin, 4, stride, pad, dilation, off, modulated, rng)
        nodes += block
        inits.update(block_inits)
        cin = 4
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, h, w])],
                   [helper.make_tensor_value_info(source, TensorProto.FLOAT, None)], inits)
    layers = visualize.deformable_layers(model)
    assert [layer.stride[0] for layer in layers] == [1, 2, 1]
    x = rng.standard_normal((1, 3, h, w)).astype(np.float32)
    names = [n for layer in layers for n in (layer.input, layer.offset, layer.mask) if n and n != "x"]
    tensors = visualize.run_with_outputs(model, {"x": x}, names)
    tensors["x"] = x
    point = (17.0, 13.0)
    levels, unit = visualize.compose_sampling_points(layers, tensors, (h, w), point)
    assert [level[0].size for level in levels] == [9, 81, 729]

    # Independent: maps are 40x36 (layers 0 and 1 input), 20x18 (layer 1 output, layer 2 in/out).
    sizes_in = [(h, w), (h, w), (h // 2, w // 2)]
    sizes_out = [(h, w), (h // 2, w // 2), (h // 2, w // 2)]

    def sample(index, oy, ox):
        stride, pad, dilation, _ = specs[index]
        return [(oy * stride - pad + (k // 3) * dilation + offsets[index][k, 0],
                 ox * stride - pad + (k % 3) * dilation + offsets[index][k, 1]) for k in range(9)]

    def to_image(v, size, full):
        return (v + 0.5) * full / size - 0.5

    def to_map(v, size, full):
        return (v + 0.5) * size / full - 0.5

    uy = round(to_map(point[0], sizes_out[2][0], h))
    ux = round(to_map(point[1], sizes_out[2][1], w))
    assert unit == pytest.approx((to_image(uy, sizes_out[2][0], h), to_image(ux, sizes_out[2][1], w)))
    expected = [[], [], []]
    for sy2, sx2 in sample(2, uy, ux):
        iy2, ix2 = to_image(sy2, sizes_in[2][0], h), to_image(sx2, sizes_in[2][1], w)
        expected[0].append((iy2, ix2))
        for sy1, sx1 in sample(1, to_map(iy2, sizes_out[1][0], h), to_map(ix2, sizes_out[1][1], w)):
            iy1, ix1 = to_image(sy1, sizes_in[1][0], h), to_image(sx1, sizes_in[1][1], w)
            expected[1].append((iy1, ix1))
            for sy0, sx0 in sample(0, to_map(iy1, sizes_out[0][0], h), to_map(ix1, sizes_out[0][1], w)):
                expected[2].append((to_image(sy0, sizes_in[0][0], h), to_image(sx0, sizes_in[0][1], w)))
    for level, want in zip(levels, expected):
        np.testing.assert_allclose(np.stack([level[0], level[1]], 1), np.array(want), atol=1e-4)
    # The modulated middle layer's mask (sigmoid(0) = 0.5) weights every path through it.
    np.testing.assert_allclose(levels[0][2], 1.0)
    np.testing.assert_allclose(levels[1][2], 0.5, atol=1e-6)
    np.testing.assert_allclose(levels[2][2], 0.5, atol=1e-6)


def _roi_model(offset_bias, pooled=(3, 3), scale=0.5, gamma=0.1):
    ph, pw = pooled
    c = 4
    nodes = [
        helper.make_node("Conv", ["x", "cw"], ["features"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("DeformRoIPool", ["features", "rois"], ["plain"], domain="ai.deformrt",
                         output_size=[ph, pw], spatial_scale=scale, sampling_ratio=2),
        helper.make_node("Flatten", ["plain"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fw", "fb"], ["fc"], transB=1),
        helper.make_node("Reshape", ["fc", "shape"], ["offset"]),
        helper.make_node("DeformRoIPool", ["features", "rois", "offset"], ["pooled"], name="deform_pool",
                         domain="ai.deformrt", output_size=[ph, pw], spatial_scale=scale, sampling_ratio=2, gamma=gamma),
    ]
    inits = {"cw": np.full((c, 3, 3, 3), 0.1, np.float32),
             "fw": np.zeros((2 * ph * pw, c * ph * pw), np.float32), "fb": offset_bias.astype(np.float32),
             "shape": np.array([-1, 2, ph, pw], np.int64)}
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 40]),
                          helper.make_tensor_value_info("rois", TensorProto.FLOAT, [None, 5])],
                  [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, None)], inits)


def test_roi_bins_follow_the_predicted_offsets():
    rng = np.random.default_rng(7)
    bias = rng.uniform(-1, 1, 18)
    model = _roi_model(bias)
    (pool,) = visualize.deformable_roi_pools(model)
    assert (pool.name, pool.pooled, pool.spatial_scale, pool.gamma) == ("deform_pool", (3, 3), 0.5, pytest.approx(0.1))
    rois = np.array([[0, 4, 6, 30, 22], [0, 10, 2, 18, 28]], np.float32)
    x = rng.standard_normal((1, 3, 32, 40)).astype(np.float32)
    offset = visualize.run_with_outputs(model, {"x": x, "rois": rois}, ["offset"])["offset"]
    np.testing.assert_allclose(offset, np.broadcast_to(bias.reshape(1, 2, 3, 3), (2, 2, 3, 3)), atol=1e-6)
    bins = visualize.roi_bins(pool, rois, offset)
    for r, (_, x1, y1, x2, y2) in enumerate(rois.astype(np.float64)):
        rw, rh = (x2 - x1) * 0.5, (y2 - y1) * 0.5
        for i in range(3):
            for j in range(3):
                fx = x1 * 0.5 - 0.5 + j * rw / 3 + 0.1 * rw * bias[i * 3 + j]
                fy = y1 * 0.5 - 0.5 + i * rh / 3 + 0.1 * rh * bias[9 + i * 3 + j]
                want = [(fx + 0.5) / 0.5, (fy + 0.5) / 0.5, (fx + rw / 3 + 0.5) / 0.5, (fy + rh / 3 + 0.5) / 0.5]
                np.testing.assert_allclose(bins[r, i, j], want, atol=1e-4)


def _cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(BINDING) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "deformrt.visualize", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_command_line_draws_points_bins_and_analysis(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(11)
    repo = os.path.join(os.path.dirname(__file__), "..", "..")
    example = os.path.join(repo, "examples", "models", "tiny_dcn.onnx")
    picture = tmp_path / "picture.png"
    Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)).save(picture)

    result = _cli(example, "--image", str(picture), "--point", "16,16", "-o", str(tmp_path / "points.png"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "9 sampling points through 1 deformable layer" in result.stdout
    assert Image.open(tmp_path / "points.png").size == (512, 512)  # 32x32 input drawn 16x larger

    roi_model = tmp_path / "roi.onnx"
    roi_model.write_bytes(_roi_model(rng.uniform(-1, 1, 18)).SerializeToString())
    np.save(tmp_path / "x.npy", rng.standard_normal((1, 3, 32, 40)).astype(np.float32))
    result = _cli(str(roi_model), "--input", "x.npy", "--roi", "4,6,30,22", "--roi", "10,2,18,28",
                  "-o", "bins.png", "--scale", "4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "bins.png").size == (160, 128)

    result = _cli("analyze", example, "--input", os.path.join(repo, "examples", "models", "tiny_dcn_input.npy"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "eff. dilation" in result.stdout and "dcn" in result.stdout


def test_command_line_errors_are_clear(tmp_path):
    plain = _model([helper.make_node("Relu", ["x"], ["y"])], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], {})
    (tmp_path / "plain.onnx").write_bytes(plain.SerializeToString())
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 8, 8), np.float32))
    result = _cli("plain.onnx", "--input", "x.npy", "--point", "1,1", cwd=tmp_path)
    assert result.returncode != 0 and "no deformable convolution" in result.stderr
    result = _cli("plain.onnx", "--input", "x.npy", "--point", "1", cwd=tmp_path)
    assert result.returncode != 0 and "--point: expected 2 numbers" in result.stderr
    result = _cli("plain.onnx", "--input", "x.npy", "--roi", "1,2,3,4", cwd=tmp_path)
    assert result.returncode != 0 and "no deformable RoI pooling node" in result.stderr


CLI = os.path.join(os.path.dirname(__file__), "..", "..", "build", "bin", "deformrt")


def test_deformrt_analyze_effective_dilation(tmp_path):
    """`deformrt analyze` (Swift) against the Python tool and against a known answer: with constant
    offsets that only shift every tap equally, adjacent taps stay `dilation` apart."""
    rng = np.random.default_rng(13)
    shift = np.tile(np.array([0.7, -1.3], np.float32), (9, 1))  # every tap moves by (0.7, -1.3)
    nodes, inits, out, _ = _deform_block("shifted", "x", 3, 4, 1, 2, 2, shift, False, rng)
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 10])],
                   [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], inits)
    (tmp_path / "m.onnx").write_bytes(model.SerializeToString())
    np.save(tmp_path / "x.npy", rng.standard_normal((1, 3, 12, 10)).astype(np.float32))
    result = subprocess.run([CLI, "analyze", str(tmp_path / "m.onnx"), "--input", f"x={tmp_path / 'x.npy'}"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    fields = result.stdout.splitlines()[1].split()
    assert fields[0] == "shifted" and float(fields[3]) == pytest.approx(2.0, abs=1e-3)
    assert float(fields[4]) == pytest.approx(1.0, abs=1e-3)  # mean of |0.7| and |-1.3|

    repo = os.path.join(os.path.dirname(__file__), "..", "..")
    example = os.path.join(repo, "examples", "models", "tiny_dcn.onnx")
    image = os.path.join(repo, "examples", "models", "tiny_dcn_input.npy")
    swift = subprocess.run([CLI, "analyze", example, "--input", f"image={image}"], capture_output=True, text=True, timeout=120)
    python = _cli("analyze", example, "--input", image, cwd=tmp_path)
    assert swift.returncode == 0 and python.returncode == 0, swift.stderr + python.stderr
    swift_row, python_row = swift.stdout.splitlines()[1].split(), python.stdout.splitlines()[1].split()
    assert [float(v) for v in swift_row[3:7]] == pytest.approx([float(v) for v in python_row[3:7]], abs=2e-3)

    missing = subprocess.run([CLI, "analyze", example], capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "not fed" in missing.stderr
