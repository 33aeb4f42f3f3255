"""ConvTranspose (opsets 1-22; 1-D and 2-D) against onnxruntime, the oracle for every case, and
against onnx.reference where it is right. onnx.reference 1.23 is wrong for group > 1 (it slices W
by output channels, W is [C, M/group, k...]) and, with output_shape and no pads, pads nothing
where the ONNX spec (and onnxruntime) derive the pads from output_shape; those cases are checked
against onnxruntime only.

Tolerance rtol 1e-4, atol 1e-4: the sums are the same products in another order (OpenBLAS GEMM,
then the scatter-add), on values of order 1 summed over at most a few hundred terms.

Also here: the graph passes on ConvTranspose (BatchNormalization folded into its weights, Add /
activation in its epilogue: node counts from the profile, outputs against onnxruntime and the
unoptimised session), the channels-last layout pass around it (Conv -> ConvTranspose -> Conv),
and hostile attributes (a clear error naming the node)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import deformrt
from deformrt import GraphOptimizationLevel, SessionOptions
from profiled import run_profiled

ort = pytest.importorskip("onnxruntime")

RTOL = ATOL = 1e-4


def ct_model(x_shape, w: np.ndarray, b: np.ndarray | None, attrs: dict, opset: int = 17,
             weight_input: bool = False, name: str = "up") -> bytes:
    inits = [] if weight_input else [numpy_helper.from_array(w, "w")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))]
    if weight_input:
        inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, list(w.shape)))
    names = ["x", "w"]
    if b is not None:
        inits.append(numpy_helper.from_array(b, "b"))
        names.append("b")
    node = helper.make_node("ConvTranspose", names, ["y"], name=name, **attrs)
    graph = helper.make_graph([node], "ct", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString()


def ort_run(model: bytes, feeds: dict, level=None) -> list:
    options = ort.SessionOptions()
    if level is not None:
        options.graph_optimization_level = level
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"]).run(None, feeds)


def drt_run(model: bytes, feeds: dict, threads: int = 2, level=GraphOptimizationLevel.ORT_ENABLE_ALL) -> list:
    options = SessionOptions()
    options.graph_optimization_level = level
    with deformrt.InferenceSession(model, options, threads=threads) as session:
        return session.run(None, feeds)


def random_case(seed: int):
    """Shapes and attributes drawn over every attribute; returns (x, w, b, attrs, reference_ok)."""
    rng = np.random.default_rng(seed)
    rank = int(rng.integers(1, 3))
    group = int(rng.choice([1, 1, 2, 3]))
    cg, mg = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    batch = int(rng.integers(2, 4))
    size = [int(rng.integers(1, 10)) for _ in range(rank)]
    kernel = [int(rng.integers(1, 5)) for _ in range(rank)]
    strides = [int(rng.integers(1, 4)) for _ in range(rank)]
    dilations = [int(rng.integers(1, 3)) for _ in range(rank)]
    attrs: dict = dict(strides=strides, dilations=dilations)
    if group > 1:
        attrs["group"] = group
    if rng.random() < 0.5:
        attrs["kernel_shape"] = kernel
    mode = rng.choice(["pads", "pads", "output_shape", "SAME_UPPER", "SAME_LOWER", "VALID"])
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    if mode == "output_shape":
        # Below the stride (onnxruntime's consistency rule needs it with output_shape).
        padding = [int(rng.integers(0, s)) for s in strides]
        attrs["output_shape"] = [int(rng.integers(1, (n - 1) * s + sp + s)) for n, s, sp in zip(size, strides, span)]
    else:
        padding = [int(rng.integers(0, max(s, d))) for s, d in zip(strides, dilations)]
    if any(padding) or rng.random() < 0.3:
        attrs["output_padding"] = padding
    if mode == "pads":
        full = [(n - 1) * s + p + sp for n, s, p, sp in zip(size, strides, padding, span)]
        begin = [int(rng.integers(0, f)) for f in full]
        end = [int(rng.integers(0, f - bg)) for f, bg in zip(full, begin)]
        attrs["pads"] = begin + end
    elif mode != "output_shape":
        attrs["auto_pad"] = str(mode)
    x = rng.standard_normal([batch, cg * group] + size).astype(np.float32)
    w = rng.standard_normal([cg * group, mg] + kernel).astype(np.float32)
    b = rng.standard_normal(mg * group).astype(np.float32) if rng.random() < 0.6 else None
    reference_ok = group == 1 and mode in ("pads", "VALID")
    return x, w, b, attrs, reference_ok


def scatter_oracle(x, w, b, attrs) -> np.ndarray:
    """The spec's definition, tap by tap in float64: input pixel i and tap t add x * w to output
    position i * stride - pad_begin + t * dilation. Sizes and pads for explicit pads, VALID and
    SAME (the cases where onnxruntime refuses an output_padding that is not below the stride,
    although the spec and torch allow any value below max(stride, dilation))."""
    group = attrs.get("group", 1)
    spatial, kernel = x.shape[2:], w.shape[2:]
    rank = len(spatial)
    s = attrs.get("strides", [1] * rank)
    d = attrs.get("dilations", [1] * rank)
    op = attrs.get("output_padding", [0] * rank)
    pads = attrs.get("pads", [0] * 2 * rank) if attrs.get("auto_pad", "NOTSET") == "NOTSET" else [0] * 2 * rank
    full = [(n - 1) * si + p + (k - 1) * di + 1 for n, si, p, k, di in zip(spatial, s, op, kernel, d)]
    if attrs.get("auto_pad") in ("SAME_UPPER", "SAME_LOWER"):
        total = [max(0, f - n * si) for f, n, si in zip(full, spatial, s)]
        begin = [t // 2 if attrs["auto_pad"] == "SAME_UPPER" else t - t // 2 for t in total]
        out = [f - t for f, t in zip(full, total)]
    else:
        begin = pads[:rank]
        out = [f - pb - pe for f, pb, pe in zip(full, pads[:rank], pads[rank:])]
    cg, mg = x.shape[1] // group, w.shape[1]
    y = np.zeros((x.shape[0], mg * group, *out))
    for g in range(group):
        xg, wg = x[:, g * cg:(g + 1) * cg].astype(np.float64), w[g * cg:(g + 1) * cg].astype(np.float64)
        for tap in np.ndindex(*kernel):
            contribution = np.einsum("nc...,cm->nm...", xg, wg[(slice(None), slice(None)) + tap])
            positions = [np.arange(n) * si - bi + ti * di for n, si, bi, ti, di in zip(spatial, s, begin, tap, d)]
            inside = [(p >= 0) & (p < o) for p, o in zip(positions, out)]
            source = np.ix_(*[np.nonzero(v)[0] for v in inside])
            target = np.ix_(*[p[v] for p, v in zip(positions, inside)])
            y[(slice(None), slice(g * mg, (g + 1) * mg)) + target] += contribution[(slice(None), slice(None)) + source]
    if b is not None:
        y += b.reshape((1, -1) + (1,) * rank)
    return y.astype(np.float32)


@pytest.mark.parametrize("seed", range(48))
def test_random_attributes_against_onnxruntime(seed):
    x, w, b, attrs, reference_ok = random_case(seed)
    model = ct_model(x.shape, w, b, attrs)
    try:
        (want,) = ort_run(model, {"x": x})
    except ort.capi.onnxruntime_pybind11_state.InvalidArgument as error:
        # onnxruntime wants output_padding < stride; the spec allows up to max(stride, dilation).
        assert "output_padding" in str(error)
        assert any(p >= s for p, s in zip(attrs["output_padding"], attrs["strides"]))
        want = scatter_oracle(x, w, b, attrs)
    for threads in (1, 2):
        (got,) = drt_run(model, {"x": x}, threads=threads)
        assert got.shape == want.shape, (attrs, got.shape, want.shape)
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=str(attrs))
    if reference_ok:
        (ref,) = ReferenceEvaluator(onnx.load_from_string(model)).run(None, {"x": x})
        np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL, err_msg=str(attrs))


@pytest.mark.parametrize("opset", [1, 11, 22])
def test_opsets_and_weight_computed_at_run_time(opset):
    rng = np.random.default_rng(opset)
    x = rng.standard_normal((2, 4, 5, 7)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    attrs = dict(strides=[2, 3], pads=[1, 0, 0, 1], group=2, output_padding=[1, 2])
    model = ct_model(x.shape, w, b, attrs, opset=opset, weight_input=True)
    (want,) = ort_run(model, {"x": x, "w": w})
    np.testing.assert_allclose(drt_run(model, {"x": x, "w": w})[0], want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("case", [
    # torch.onnx.export of nn.ConvTranspose2d(c, m, 3, stride=2, padding=1, output_padding=1).
    dict(kernel=(3, 3), attrs=dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1], dilations=[1, 1], group=1,
                                   kernel_shape=[3, 3])),
    # DBNet's head: ConvTranspose2d(c, m, 2, stride=2).
    dict(kernel=(2, 2), attrs=dict(strides=[2, 2], pads=[0, 0, 0, 0], dilations=[1, 1], group=1, kernel_shape=[2, 2])),
    # nn.ConvTranspose1d(c, m, 4, stride=2, padding=1) (a vocoder-style upsampler).
    dict(kernel=(4,), attrs=dict(strides=[2], pads=[1, 1], dilations=[1], group=1, kernel_shape=[4])),
])
@pytest.mark.parametrize("channels", [(3, 5), (16, 64), (67, 33)])
def test_exported_layer_shapes(case, channels):
    c, m = channels
    rng = np.random.default_rng(c * m)
    spatial = [37] if len(case["kernel"]) == 1 else [13, 21]
    x = rng.standard_normal([2, c] + spatial).astype(np.float32)
    w = (rng.standard_normal((c, m) + case["kernel"]) / np.sqrt(c)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    model = ct_model(x.shape, w, b, case["attrs"])
    (want,) = ort_run(model, {"x": x})
    (ref,) = ReferenceEvaluator(onnx.load_from_string(model)).run(None, {"x": x})
    for threads in (1, 2, 3):
        (got,) = drt_run(model, {"x": x}, threads=threads)
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("kernel,attrs", [
    (3, dict(strides=[1, 1], pads=[1, 1, 1, 1])),
    (4, dict(strides=[2, 2], pads=[1, 1, 1, 1])),
    (2, dict(strides=[2, 2])),
    (3, dict(strides=[3, 2], dilations=[1, 2], pads=[0, 2, 1, 0], output_padding=[2, 1])),
])
def test_planes_larger_than_one_column_tile_with_fused_epilogue(tmp_path, kernel, attrs):
    """Planes of 1665 input pixels: the kernel's column tiles (~512 KB) end mid-row, output rows
    get the bias and the fused BN + Relu per tile, and stride-2 rows take the SIMD scatter;
    at 1-3 threads (row bands for the k2 s2 case)."""
    rng = np.random.default_rng(kernel)
    c, m = 32, 40
    inits = [numpy_helper.from_array((rng.standard_normal((c, m, kernel, kernel)) / 8).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(m).astype(np.float32), "b")] + bn_inits("bn", m, rng)
    nodes = [helper.make_node("ConvTranspose", ["x", "w", "b"], ["t"], name="up", **attrs), bn_node("bn", "t", "u"),
             helper.make_node("Relu", ["u"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 45, 37])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    x = rng.standard_normal((1, c, 45, 37)).astype(np.float32)
    (want,) = ort_run(model, {"x": x})
    for threads in (1, 2, 3):
        (got,), events = profiled(model, {"x": x}, tmp_path, threads=threads)
        assert [e["name"] for e in events] == ["up"]
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("cin,cout", [(1, 1), (3, 7), (15, 16), (17, 3), (16, 65), (63, 17), (129, 5)])
@pytest.mark.parametrize("kernel,stride", [(1, 1), (2, 2), (3, 2), (5, 3)])
def test_awkward_channel_counts_hit_every_micro_kernel_edge(cin, cout, kernel, stride):
    """Output-channel x tap rows not a multiple of the micro-kernel's 6, pixel tiles not a
    multiple of its 64 columns, K from 1 to 129: the packed GEMM's padding and the OpenBLAS
    path (the weight fed at run time) against the float64 scatter oracle, at 1 and 2 threads."""
    rng = np.random.default_rng(cin * 100 + cout + kernel)
    x = rng.standard_normal((2, cin, 11, 13)).astype(np.float32)
    w = (rng.standard_normal((cin, cout, kernel, kernel)) / np.sqrt(cin)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    attrs = dict(strides=[stride, stride], pads=[kernel // 2, 0, 0, kernel // 2])
    want = scatter_oracle(x, w, b, attrs)
    for weight_input in (False, True):
        model = ct_model(x.shape, w, b, attrs, weight_input=weight_input)
        feeds = {"x": x, "w": w} if weight_input else {"x": x}
        for threads in (1, 2):
            np.testing.assert_allclose(drt_run(model, feeds, threads=threads)[0], want, rtol=RTOL, atol=ATOL)


def test_dynamic_batch_and_size_replan():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up", strides=[2, 2], pads=[1, 1, 0, 0])
    graph = helper.make_graph([node], "ct", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6, "H", "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    with deformrt.InferenceSession(model, threads=2) as session:
        for shape in [(1, 6, 5, 5), (3, 6, 2, 9), (1, 6, 5, 5), (2, 6, 1, 1)]:
            x = rng.standard_normal(shape).astype(np.float32)
            np.testing.assert_allclose(session.run(None, {"x": x})[0], ort_run(model, {"x": x})[0], rtol=RTOL, atol=ATOL)


def test_empty_batch_and_zero_input_channels():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((4, 2, 2, 2)).astype(np.float32)
    model = ct_model(["N", 4, 3, 3], w, None, dict(strides=[2, 2]))
    (got,) = drt_run(model, {"x": np.zeros((0, 4, 3, 3), np.float32)})
    assert got.shape == (0, 2, 6, 6)
    # No input channels: the output is the bias alone.
    b = np.array([1.5, -2.0], np.float32)
    model = ct_model([2, 0, 3, 3], np.zeros((0, 2, 2, 2), np.float32), b, dict(strides=[2, 2]))
    (got,) = drt_run(model, {"x": np.zeros((2, 0, 3, 3), np.float32)})
    np.testing.assert_array_equal(got, np.broadcast_to(b.reshape(1, 2, 1, 1), (2, 2, 6, 6)))


# ---------------------------------------------------------------------------------------------
# Graph passes.

def profiled(model: bytes, feeds: dict, tmp_path, level=GraphOptimizationLevel.ORT_ENABLE_ALL, threads=2):
    return run_profiled(model, feeds, tmp_path / f"p{int(level)}_{threads}", level, threads)


def bn_inits(prefix: str, channels: int, rng) -> list:
    return [numpy_helper.from_array(v.astype(np.float32), f"{prefix}_{n}") for n, v in [
        ("gamma", rng.random(channels) + 0.5), ("beta", rng.standard_normal(channels)),
        ("mean", rng.standard_normal(channels)), ("var", rng.random(channels) + 0.5)]]


def bn_node(prefix: str, x: str, y: str):
    return helper.make_node("BatchNormalization", [x] + [f"{prefix}_{n}" for n in ("gamma", "beta", "mean", "var")], [y],
                            name=prefix, epsilon=1e-5)


@pytest.mark.parametrize("group,bias", [(1, True), (1, False), (3, True), (2, False)])
def test_batch_norm_and_relu_fold_into_the_conv_transpose(tmp_path, group, bias):
    rng = np.random.default_rng(group * 2 + bias)
    c, mg = 3 * group, 5
    m = mg * group
    inits = [numpy_helper.from_array(rng.standard_normal((c, mg, 3, 3)).astype(np.float32), "w")] + bn_inits("bn", m, rng)
    inputs = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(m).astype(np.float32), "b"))
        inputs.append("b")
    nodes = [helper.make_node("ConvTranspose", inputs, ["t"], name="up", strides=[2, 2], pads=[1, 1, 1, 1],
                              output_padding=[1, 1], group=group),
             bn_node("bn", "t", "u"), helper.make_node("Relu", ["u"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, "ct_bn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, c, 7, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    x = rng.standard_normal((2, c, 7, 5)).astype(np.float32)
    (want,) = ort_run(model, {"x": x})
    (got,), events = profiled(model, {"x": x}, tmp_path)
    (plain,), plain_events = profiled(model, {"x": x}, tmp_path, GraphOptimizationLevel.ORT_DISABLE_ALL)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got, plain, rtol=RTOL, atol=ATOL)
    assert [e["name"] for e in events] == ["up"]
    assert events[0]["args"]["fused_nodes"] == ["up", "bn", "relu"]
    assert "ConvTranspose" in events[0]["args"]["op_name"]
    assert [e["name"] for e in plain_events] == ["up", "bn", "relu"]


def test_residual_add_and_sigmoid_fuse_and_a_second_reader_stops_the_fold(tmp_path):
    rng = np.random.default_rng(11)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 6, 2, 2)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), "b")] + bn_inits("bn", 6, rng)
    nodes = [helper.make_node("ConvTranspose", ["x", "w", "b"], ["t"], name="up", strides=[2, 2]),
             helper.make_node("Add", ["t", "r"], ["s"], name="add"),
             helper.make_node("Sigmoid", ["s"], ["y"], name="sigmoid"),
             # A second ConvTranspose whose output is also a graph output: nothing folds into it.
             helper.make_node("ConvTranspose", ["x", "w", "b"], ["t2"], name="up2", strides=[2, 2]),
             bn_node("bn", "t2", "y2")]
    graph = helper.make_graph(
        nodes, "ct_add", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4, 5, 6]),
                          helper.make_tensor_value_info("r", TensorProto.FLOAT, [3, 6, 10, 12])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "y2", "t2")], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    feeds = {"x": rng.standard_normal((3, 4, 5, 6)).astype(np.float32),
             "r": rng.standard_normal((3, 6, 10, 12)).astype(np.float32)}
    want = ort_run(model, feeds)
    got, events = profiled(model, feeds, tmp_path)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)
    fused = {e["name"]: e["args"].get("fused_nodes") for e in events}
    assert fused["up"] == ["up", "add", "sigmoid"]
    assert "bn" in fused and fused["up2"] in (None, ["up2"])


def test_conv_then_conv_transpose_then_conv_keeps_layouts_consistent(tmp_path):
    """The layout pass knows no channels-last ConvTranspose: the convolution before it must write
    NCHW (or a Transpose must convert), and the one after reads NCHW. Checked against onnxruntime
    at every level and thread count, and the ConvTranspose must run on NCHW shapes."""
    rng = np.random.default_rng(5)
    inits = [numpy_helper.from_array((rng.standard_normal(s) / 4).astype(np.float32), n) for n, s in [
        ("w1", (24, 3, 3, 3)), ("w2", (24, 16, 2, 2)), ("w3", (32, 16, 3, 3)), ("w4", (32, 24, 1, 1))]]
    inits += bn_inits("bn", 16, rng)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["a1"], name="relu1"),
             helper.make_node("ConvTranspose", ["a1", "w2"], ["b"], name="up", strides=[2, 2]),
             bn_node("bn", "b", "b1"),
             helper.make_node("Relu", ["b1"], ["b2"], name="relu2"),
             helper.make_node("Conv", ["b2", "w3"], ["c"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("MaxPool", ["c"], ["y"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             # conv1's output also feeds a channels-last-capable branch.
             helper.make_node("Conv", ["a1", "w4"], ["z"], name="conv3")]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 9, 11])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "z")], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
    want = ort_run(model, {"x": x})
    for level in (GraphOptimizationLevel.ORT_DISABLE_ALL, GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  GraphOptimizationLevel.ORT_ENABLE_ALL):
        for threads in (1, 2):
            got, events = profiled(model, {"x": x}, tmp_path, level, threads)
            for g, w in zip(got, want):
                np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)
            up = [e for e in events if e["name"] == "up"][0]["args"]
            assert up["input_type_shape"][0] == [2, 24, 9, 11]
            assert up["output_type_shape"][0] == [2, 16, 18, 22]


# ---------------------------------------------------------------------------------------------
# Hostile attributes and shapes: a clear error naming the node, never a crash.

@pytest.mark.parametrize("x_shape,w_shape,attrs,match", [
    ((1, 4, 5, 5), (4, 2, 3, 3), dict(strides=[2, 2], output_padding=[2, 0]), "output_padding"),
    ((1, 4, 5, 5), (4, 2, 3, 3), dict(output_padding=[1, 1]), "output_padding"),
    ((1, 4, 5, 5), (4, 2, 3, 3), dict(dilations=[2, 2], output_padding=[2, 1]), "output_padding"),
    ((1, 4, 5, 5), (4, 2, 3, 3), dict(strides=[2, 2], output_shape=[40, 40]), "output_shape .* inconsistent"),
    ((1, 4, 5, 5), (4, 2, 3, 3), dict(output_shape=[1 << 40, 1 << 40]), "output_shape .* inconsistent"),
    ((1, 4, 5, 5), (4, 2, 3, 3), dict(output_shape=[7]), "output_shape"),
    ((1, 4, 5, 5), (4, 2, 3, 3), dict(output_shape=[1, 2, 7, 7]), "output_shape"),
    ((1, 4, 5, 5), (4, 2, 3, 3), dict(group=3), "group 3 does not divide"),
    ((1, 4, 5, 5), (4, 2, 3, 3), dict(group=0), "group must be >= 1"),
    ((1, 4, 5, 5), (6, 2, 3, 3), dict(), "input's 4 channels"),
    ((1, 4, 5, 5), (4, 2, 3, 3), dict(pads=[1, 1]), "pads"),
    ((1, 4, 5, 5), (4, 2, 3, 3), dict(pads=[-1, 0, 0, 0]), "pads must be >= 0"),
    ((1, 4, 5, 5), (4, 2, 3, 3), dict(pads=[5, 5, 5, 5]), "leave no output"),
    ((1, 4, 5, 5), (4, 2, 3, 3), dict(strides=[0, 1]), "strides must be >= 1"),
    ((1, 4, 5, 5), (4, 2, 3, 3), dict(strides=[1 << 30, 1]), "exceeds the limit"),
    ((1, 4, 5, 5), (4, 2, 3, 3), dict(dilations=[1 << 19, 1 << 19], strides=[1 << 19, 1 << 19],
                                      output_padding=[1 << 18, 0]), "too many elements"),
    ((1, 4, 5, 5), (4, 2, 3, 3), dict(kernel_shape=[2, 2]), "kernel_shape"),
    ((1, 4, 5, 5), (4, 2, 3, 3), dict(auto_pad="SAME"), "auto_pad"),
    ((1, 4, 5, 5), (4, 2, 3), dict(), "weight shape"),
    ((1, 4, 3, 3, 3), (4, 2, 1, 1, 1), dict(), "UNSUPPORTED.*1-D and 2-D"),
    ((1, 4), (4, 2), dict(), "1-D and 2-D"),
])
def test_hostile_attributes_name_the_node(x_shape, w_shape, attrs, match):
    w = np.ones(w_shape, np.float32)
    model = ct_model(x_shape, w, None, attrs, name="hostile_up")
    with pytest.raises(deformrt.DeformRTError, match=match) as error:
        drt_run(model, {"x": np.ones(x_shape, np.float32)})
    assert "hostile_up" in str(error.value)


def test_hostile_bias_and_weight_fed_at_run_time():
    w = np.ones((4, 2, 3, 3), np.float32)
    model = ct_model((1, 4, 5, 5), w, np.ones(3, np.float32), dict(), name="bad_bias")
    with pytest.raises(deformrt.DeformRTError, match="bad_bias.*bias shape"):
        drt_run(model, {"x": np.ones((1, 4, 5, 5), np.float32)})
    # A weight input with a dynamic shape: a wrong one at run time is an error, the session survives.
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="dyn_w", strides=[2, 2])
    graph = helper.make_graph([node], "ct", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 5]),
                                             helper.make_tensor_value_info("w", TensorProto.FLOAT, ["C", "M", "k", "k"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    x = np.ones((1, 4, 5, 5), np.float32)
    with deformrt.InferenceSession(model, threads=2) as session:
        with pytest.raises(deformrt.DeformRTError, match="dyn_w"):
            session.run(None, {"x": x, "w": np.ones((3, 2, 3, 3), np.float32)})
        good = np.random.default_rng(1).standard_normal((4, 2, 3, 3)).astype(np.float32)
        np.testing.assert_allclose(session.run(None, {"x": x, "w": good})[0], ort_run(model, {"x": x, "w": good})[0],
                                   rtol=RTOL, atol=ATOL)


def test_nan_and_inf_propagate_like_onnxruntime():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    x[0, 1, 2, 3] = np.nan
    x[1, 0, 0, 0] = np.inf
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    model = ct_model(x.shape, w, None, dict(strides=[2, 2], pads=[1, 1, 1, 1]))
    (want,) = ort_run(model, {"x": x})
    (got,) = drt_run(model, {"x": x})
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=RTOL, atol=ATOL)
