"""Deformable convolution in every ONNX spelling against independent references:
torchvision-made vectors (Tests/vectors/dcn, see tools/gen_dcn_vectors.py), OpenVINO-made vectors for
its own border rule, onnx's own DeformConv node tests (Tests/vectors/onnx_node), and onnxruntime on
random configurations. Tolerance: 1e-4 absolute + 1e-4 relative (float32 accumulation; |y| < ~10)."""
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import deformrt
from dcn_cases import iter_cases

ATOL = 1e-4
RTOL = 1e-4
HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.path.join(HERE, "..", "vectors", "onnx_node")

CASES = list(iter_cases())


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name,model,feeds,expected", CASES, ids=[c[0] for c in CASES])
def test_vectors(name, model, feeds, expected, threads):
    got = deformrt.InferenceSession(model, threads=threads).run(None, feeds)[0]
    assert got.shape == expected.shape
    assert np.isfinite(got).all(), "non-finite offsets must read 0, never poison the output"
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=RTOL)


def test_every_spelling_is_covered():
    spellings = {c[0].split("_")[0] for c in CASES}
    assert {"onnx", "mmcv", "openvino"} <= spellings
    assert any(c[0].startswith("mmcv_modulated") for c in CASES)
    assert len(CASES) >= 90


@pytest.mark.parametrize("file", sorted(f for f in os.listdir(NODE_DIR) if f.endswith(".npz")))
def test_onnx_node_tests(file):
    with np.load(os.path.join(NODE_DIR, file)) as data:
        names = [str(n) for n in data["input_names"]]
        feeds = {n: data[f"input_{i}"] for i, n in enumerate(names)}
        expected = data["output_0"]
        rtol, atol = float(data["rtol"]), float(data["atol"])
        model = bytes(data["model"])
    got = deformrt.InferenceSession(model).run(None, feeds)[0]
    np.testing.assert_allclose(got, expected, rtol=max(rtol, 1e-5), atol=max(atol, 1e-5))


def _deform_model(x_shape, w_shape, offset_shape, mask_shape=None, bias=False, **attrs):
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape),
              helper.make_tensor_value_info("W", TensorProto.FLOAT, w_shape),
              helper.make_tensor_value_info("offset", TensorProto.FLOAT, offset_shape)]
    names = ["X", "W", "offset"]
    if bias or mask_shape:
        inputs.append(helper.make_tensor_value_info("B", TensorProto.FLOAT, [w_shape[0]]))
        names.append("B")
    if mask_shape:
        inputs.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, mask_shape))
        names.append("mask")
    node = helper.make_node("DeformConv", names, ["Y"], **attrs)
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)


def _random_case(seed):
    rng = np.random.default_rng(seed)
    group = int(rng.choice([1, 2]))
    offset_group = int(rng.choice([1, 2]))
    cin = group * offset_group * int(rng.integers(1, 4))
    cout = group * int(rng.integers(1, 5))
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    sh, sw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    dh, dw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    pads = [int(v) for v in rng.integers(0, 3, size=4)]
    n, h, w = int(rng.integers(1, 3)), int(rng.integers(kh * dh, 12)), int(rng.integers(kw * dw, 12))
    return _case_of(rng, n, cin, h, w, cout, group, offset_group, (kh, kw), (sh, sw), (dh, dw), pads,
                    offset_range=3.0, weight_scale=1.0)


def _case_of(rng, n, cin, h, w, cout, group, offset_group, kernel, strides, dilations, pads, offset_range,
             weight_scale):
    """The model and random feeds (X, W, offset U(-offset_range, offset_range), B, mask) of one configuration."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    oh = (h + pads[0] + pads[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (w + pads[1] + pads[3] - dw * (kw - 1) - 1) // sw + 1
    x = rng.standard_normal((n, cin, h, w)).astype(np.float32)
    wt = (rng.standard_normal((cout, cin // group, kh, kw)) * weight_scale).astype(np.float32)
    off = rng.uniform(-offset_range, offset_range, (n, offset_group * 2 * kh * kw, oh, ow)).astype(np.float32)
    mask = rng.uniform(0, 1, (n, offset_group * kh * kw, oh, ow)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    model = _deform_model(x.shape, wt.shape, off.shape, mask.shape, kernel_shape=[kh, kw], strides=[sh, sw],
                          dilations=[dh, dw], pads=pads, group=group, offset_group=offset_group)
    return model, {"X": x, "W": wt, "offset": off, "B": b, "mask": mask}


def _check_against_onnxruntime(case, threads):
    ort = pytest.importorskip("onnxruntime")
    model, feeds = case
    data = model.SerializeToString()
    expected = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    got = deformrt.InferenceSession(data, threads=threads).run(None, feeds)[0]
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("seed", range(30))
def test_random_configurations_match_onnxruntime(seed):
    _check_against_onnxruntime(_random_case(seed), threads=2)


def test_zero_offsets_equal_conv():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 6, 9, 11)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    model = _deform_model(x.shape, w.shape, [2, 18, 9, 11], pads=[1, 1, 1, 1], group=2)
    got = deformrt.InferenceSession(model.SerializeToString()).run(
        None, {"X": x, "W": w, "offset": np.zeros((2, 18, 9, 11), np.float32)})[0]
    conv = helper.make_model(helper.make_graph(
        [helper.make_node("Conv", ["X", "W"], ["Y"], pads=[1, 1, 1, 1], group=2)], "c",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, x.shape),
         helper.make_tensor_value_info("W", TensorProto.FLOAT, w.shape)],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)]), opset_imports=[helper.make_opsetid("", 19)])
    from onnx.reference import ReferenceEvaluator
    expected = ReferenceEvaluator(conv).run(None, {"X": x, "W": w})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("bad,message", [
    ("offset_channels", "offset shape"),
    ("mask_channels", "mask shape"),
    ("group", "group"),
    ("kernel_shape", "kernel_shape"),
    ("offset_group", "offset group"),
])
def test_bad_shapes_are_refused_at_session_creation(bad, message):
    x, w, off, mask = [1, 4, 8, 8], [4, 4, 3, 3], [1, 18, 8, 8], [1, 9, 8, 8]
    attrs = dict(pads=[1, 1, 1, 1])
    if bad == "offset_channels":
        off = [1, 16, 8, 8]
    elif bad == "mask_channels":
        mask = [1, 8, 8, 8]
    elif bad == "group":
        attrs["group"] = 3
    elif bad == "kernel_shape":
        attrs["kernel_shape"] = [5, 5]
    elif bad == "offset_group":
        attrs["offset_group"] = 3
        off = [1, 54, 8, 8]
        mask = [1, 27, 8, 8]
    model = _deform_model(x, w, off, mask, **attrs)
    model.graph.node[0].name = "my_dcn"
    with pytest.raises(deformrt.DeformRTError) as error:
        deformrt.InferenceSession(model.SerializeToString())
    assert message in str(error.value) and "my_dcn" in str(error.value)


def test_dynamic_shapes_checked_at_run_time():
    model = _deform_model(["N", 4, "H", "W"], [4, 4, 3, 3], ["N", 18, "H", "W"], pads=[1, 1, 1, 1])
    session = deformrt.InferenceSession(model.SerializeToString())
    rng = np.random.default_rng(0)
    feeds = {"X": rng.standard_normal((1, 4, 6, 6)).astype(np.float32),
             "W": rng.standard_normal((4, 4, 3, 3)).astype(np.float32),
             "offset": rng.standard_normal((1, 18, 6, 6)).astype(np.float32)}
    assert session.run(None, feeds)[0].shape == (1, 4, 6, 6)
    feeds["offset"] = rng.standard_normal((1, 18, 5, 6)).astype(np.float32)
    with pytest.raises(deformrt.DeformRTError, match="offset shape"):
        session.run(None, feeds)


@pytest.mark.parametrize("op", ["DeformConv", "Conv"])
def test_constant_weights_packed_once_and_replanned(op):
    """Weights that are initializers are packed for the GEMM when the session is planned; a new
    input size re-plans and keeps the packed copy (it depends on the channels and kernel only).
    Both against onnxruntime at 64 channels (the interleaved-sampling kernel) and at 12 (one plan
    at a time), sizes A, B, A, B."""
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(11)
    for cin, cout in [(64, 64), (12, 20)]:
        w = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32) * 0.1
        b = rng.standard_normal(cout).astype(np.float32)
        inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, cin, "H", "W"])]
        names = ["X", "W"]
        if op == "DeformConv":
            inputs.append(helper.make_tensor_value_info("offset", TensorProto.FLOAT, [1, 18, "H", "W"]))
            inputs.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 9, "H", "W"]))
            names += ["offset", "B", "mask"]
        else:
            names += ["B"]
        node = helper.make_node(op, names, ["Y"], pads=[1, 1, 1, 1])
        graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
                                  initializer=[onnx.numpy_helper.from_array(w, "W"), onnx.numpy_helper.from_array(b, "B")])
        data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9).SerializeToString()
        reference = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        session = deformrt.InferenceSession(data, threads=2)
        for h, wd in [(13, 11), (7, 20), (13, 11), (7, 20)]:
            feeds = {"X": rng.standard_normal((1, cin, h, wd)).astype(np.float32)}
            if op == "DeformConv":
                feeds["offset"] = rng.uniform(-4, 4, (1, 18, h, wd)).astype(np.float32)
                feeds["mask"] = rng.uniform(0, 1, (1, 9, h, wd)).astype(np.float32)
            expected = reference.run(None, feeds)[0]
            np.testing.assert_allclose(session.run(None, feeds)[0], expected, atol=ATOL, rtol=RTOL)


def _wide_case(seed):
    """Configurations whose whole K (channels per group x taps <= 640) fits one panel and that have
    >= 49 filters per group: the kernel gathers each 6-pixel group inside the GEMM of the one before."""
    rng = np.random.default_rng(1000 + seed)
    group = int(rng.choice([1, 1, 2]))
    offset_group = int(rng.choice([1, 2, 4]))
    kh, kw = [(3, 3), (1, 1), (5, 5), (3, 1), (2, 3)][seed % 5]
    cin_per_group = int(rng.integers(1, max(2, 640 // (kh * kw) // 4) + 1)) * 4
    cin = group * cin_per_group
    while cin % offset_group:
        offset_group //= 2
    cout = group * int(rng.integers(49, 140))
    sh, sw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    dh, dw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    pads = [int(v) for v in rng.integers(0, 3, size=4)]
    n, h, w = int(rng.integers(1, 3)), int(rng.integers(kh * dh, 19)), int(rng.integers(kw * dw, 23))
    return _case_of(rng, n, cin, h, w, cout, group, offset_group, (kh, kw), (sh, sw), (dh, dw), pads,
                    offset_range=6.0, weight_scale=1 / np.sqrt(cin_per_group * kh * kw))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("seed", range(10))
def test_wide_configurations_match_onnxruntime(seed, threads):
    _check_against_onnxruntime(_wide_case(seed), threads)
