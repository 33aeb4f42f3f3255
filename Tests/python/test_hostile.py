"""Hostile model files and hostile feeds: each must give a DeformRTError with a clear message or a
defined result, never a crash, a hang or a file read outside the model's folder.

Models are built with onnx.helper (unchecked on purpose); malformed bytes are written directly.
A crash here takes pytest down with it, which fails the run as loudly as it should.
SECURITY.md lists these tests; keep the two in step.
"""
from __future__ import annotations

import ctypes
import os
import random
import struct

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import deformrt
from deformrt import Status, _capi

FLOAT = TensorProto.FLOAT
INT64 = TensorProto.INT64
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EXAMPLE = os.path.join(ROOT, "examples", "models", "tiny_dcn.onnx")


# ---- helpers ------------------------------------------------------------------------------

def value(name, elem=FLOAT, shape=None):
    return helper.make_tensor_value_info(name, elem, shape)


def model_proto(nodes, inputs, outputs, initializers=(), opset=19, domains=()):
    graph = helper.make_graph(list(nodes), "hostile", list(inputs), list(outputs), list(initializers))
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    m = helper.make_model(graph, opset_imports=opsets)
    m.ir_version = 9
    return m


def model_bytes(*args, **kwargs) -> bytes:
    return model_proto(*args, **kwargs).SerializeToString()


def init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def raw_tensor(name, data_type, dims, raw=b""):
    t = TensorProto(name=name, data_type=data_type, dims=list(dims))
    t.raw_data = raw
    return t


def refused(source, feeds=None, status=None, match=None, **session_options):
    """Loads `source` (bytes or path), makes a session and, with `feeds`, runs it; asserts that
    some step raises DeformRTError (with `status` and `match` in the message when given)."""
    with pytest.raises(deformrt.DeformRTError) as info:
        with deformrt.InferenceSession(source, threads=1, **session_options) as session:
            if feeds is not None:
                session.run(None, feeds)
    error = info.value
    assert error.status != Status.INTERNAL, error
    if status is not None:
        allowed = status if isinstance(status, (set, tuple, list)) else {status}
        assert error.status in allowed, error
    if match is not None:
        assert match in error.message, error
    assert error.message, "every error carries a message"
    return error


def run(source, feeds, **session_options):
    with deformrt.InferenceSession(source, threads=1, **session_options) as session:
        return session.run(None, feeds)


def survives(source, feeds=None):
    """Loads and (with feeds) runs `source`; any DeformRTError is fine, anything else is not."""
    try:
        with deformrt.InferenceSession(source, threads=1, memory_limit=64 << 20) as session:
            if feeds is not None:
                session.run(None, feeds)
        return "ok"
    except deformrt.DeformRTError as error:
        assert error.status != Status.INTERNAL, error
        assert error.message
        return error.status


def relu_model(**kwargs):
    return model_bytes([helper.make_node("Relu", ["x"], ["y"])], [value("x", FLOAT, [1, 4])],
                       [value("y", FLOAT, [1, 4])], **kwargs)


def conv_model(x_shape=(1, 2, 5, 5), w_shape=(3, 2, 3, 3), **attrs):
    w = np.ones(w_shape, np.float32)
    return model_bytes([helper.make_node("Conv", ["x", "w"], ["y"], **attrs)],
                       [value("x", FLOAT, list(x_shape))], [value("y")], [init("w", w)])


def deform_model(offset_shape=(1, 18, 4, 4), mask_shape=(1, 9, 4, 4), bias=True, **attrs):
    inputs = [value("x", FLOAT, [1, 2, 4, 4]), value("offset", FLOAT, list(offset_shape))]
    names = ["x", "w", "offset", "b" if bias else ""]
    if mask_shape is not None:
        inputs.append(value("mask", FLOAT, list(mask_shape)))
        names.append("mask")
    attrs.setdefault("pads", [1, 1, 1, 1])
    inits = [init("w", np.full((3, 2, 3, 3), 0.5, np.float32)), init("b", np.array([1.0, 2.0, 3.0], np.float32))]
    return model_bytes([helper.make_node("DeformConv", names, ["y"], **attrs)], inputs, [value("y")], inits)


def deform_feeds(offset_value=0.0, mask_value=1.0, mask=True):
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32),
             "offset": np.full((1, 18, 4, 4), offset_value, np.float32)}
    if mask:
        feeds["mask"] = np.full((1, 9, 4, 4), mask_value, np.float32)
    return feeds


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


# ---- malformed protobuf -------------------------------------------------------------------

def test_empty_bytes_are_refused():
    refused(b"", status=Status.INVALID_ARGUMENT)


@pytest.mark.parametrize("seed", range(5))
def test_random_garbage_is_refused(seed):
    data = np.random.default_rng(seed).integers(0, 256, 64 + 300 * seed, dtype=np.uint8).tobytes()
    refused(data, status={Status.INVALID_MODEL, Status.UNSUPPORTED})


def test_truncated_at_every_cut_point():
    data = model_bytes([helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])],
                       [value("x", FLOAT, [1, 1, 3, 3])], [value("y")],
                       [init("w", np.ones((1, 1, 3, 3), np.float32)), init("b", np.zeros(1, np.float32))])
    feeds = {"x": np.ones((1, 1, 3, 3), np.float32)}
    outcomes = [survives(data[:cut], feeds) for cut in range(len(data))]
    assert outcomes[0] == Status.INVALID_ARGUMENT  # zero bytes
    assert outcomes.count("ok") < len(data) // 2, "most cuts must be refused"


def test_truncated_example_model_file(tmp_path):
    data = open(EXAMPLE, "rb").read()
    for cut in list(range(1, 80)) + list(range(80, len(data), 331)):
        path = tmp_path / "cut.onnx"
        path.write_bytes(data[:cut])
        assert survives(str(path)) != "ok" or cut > len(data) // 2


def test_bit_flips():
    data = open(EXAMPLE, "rb").read()
    rng = random.Random(1234)
    feeds = {"image": np.zeros((1, 3, 32, 32), np.float32)}
    for _ in range(300):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
        survives(bytes(mutated), feeds)


def test_length_prefix_larger_than_the_data():
    # ModelProto.graph (field 7) claims 2^40 bytes; 3 follow.
    refused(varint(7 << 3 | 2) + varint(1 << 40) + b"abc", status=Status.INVALID_MODEL)


def test_invalid_wire_type_and_overlong_varint():
    refused(bytes([0x3F]) + b"\x00" * 8, status=Status.INVALID_MODEL)
    refused(bytes([0x08]) + b"\xff" * 11, status=Status.INVALID_MODEL)


def test_deeply_nested_subgraphs_do_not_overflow_the_stack():
    # graph -> node -> attribute g -> graph -> ... 5000 levels: refused by the decoder's depth limit.
    graph = field(1, field(4, b"Relu"))  # a GraphProto with one node
    for _ in range(5000):
        attribute = field(1, b"body") + field(6, graph)  # AttributeProto.name, .g
        graph = field(1, field(5, attribute))  # GraphProto.node -> NodeProto.attribute
    refused(field(7, graph), status=Status.INVALID_MODEL)


def test_model_without_graph():
    refused(onnx.ModelProto(ir_version=9).SerializeToString(), status=Status.INVALID_MODEL, match="no graph")


def test_text_file_and_directory_and_missing_file(tmp_path):
    text = tmp_path / "model.onnx"
    text.write_text("this is not a model\n")
    refused(str(text), status=Status.INVALID_MODEL)
    refused(str(tmp_path), status=Status.IO, match="directory")
    refused(str(tmp_path / "absent.onnx"), status=Status.IO)


def test_too_many_nodes_is_refused_without_building_them():
    node = field(1, field(4, b"Relu"))  # GraphProto.node = NodeProto{op_type}
    graph = node * 1_000_001
    refused(field(7, graph), status=Status.INVALID_MODEL, match="limit")


# ---- graph structure ----------------------------------------------------------------------

def test_cycle_is_named():
    data = model_bytes([helper.make_node("Relu", ["x", "b"], ["a"], name="first"),
                        helper.make_node("Add", ["a", "x"], ["b"], name="second")],
                       [value("x", FLOAT, [1])], [value("b")])
    refused(data, status=Status.INVALID_MODEL, match="cycle")


def test_node_reading_its_own_output():
    data = model_bytes([helper.make_node("Add", ["x", "y"], ["y"], name="loop")], [value("x", FLOAT, [1])], [value("y")])
    refused(data, status=Status.INVALID_MODEL, match="loop")


def test_dangling_input_is_named():
    data = model_bytes([helper.make_node("Add", ["x", "ghost"], ["y"], name="adder")], [value("x", FLOAT, [1])], [value("y")])
    refused(data, status=Status.INVALID_MODEL, match="ghost")


def test_output_nobody_produces():
    data = model_bytes([helper.make_node("Relu", ["x"], ["y"])], [value("x", FLOAT, [1])], [value("z")])
    refused(data, status=Status.INVALID_MODEL, match="'z'")


def test_value_produced_twice():
    data = model_bytes([helper.make_node("Relu", ["x"], ["y"], name="one"), helper.make_node("Relu", ["x"], ["y"], name="two")],
                       [value("x", FLOAT, [1])], [value("y")])
    refused(data, status=Status.INVALID_MODEL, match="produced twice")


def test_node_overwriting_a_graph_input_or_initializer():
    data = model_bytes([helper.make_node("Relu", ["y"], ["x"])], [value("x", FLOAT, [1])], [value("x")],
                       [init("y", np.ones(1, np.float32))])
    refused(data, status=Status.INVALID_MODEL, match="already a graph input")


def test_duplicate_names():
    refused(model_bytes([helper.make_node("Relu", ["x"], ["y"])], [value("x", FLOAT, [1]), value("x", FLOAT, [1])], [value("y")]),
            status=Status.INVALID_MODEL, match="duplicate graph input")
    refused(model_bytes([helper.make_node("Add", ["x", "c"], ["y"])], [value("x", FLOAT, [1])], [value("y")],
                        [init("c", np.ones(1, np.float32)), init("c", np.ones(1, np.float32))]),
            status=Status.INVALID_MODEL, match="duplicate initializer")


def test_node_without_outputs_is_skipped():
    # Found by the fuzzer (fuzz/regressions/conv_node_without_outputs*.onnx): the planner ran a
    # node whose outputs nobody declared and indexed past the empty output list.
    data = model_bytes([helper.make_node("Conv", ["x", "w"], []), helper.make_node("Relu", ["x"], ["y"])],
                       [value("x", FLOAT, [1, 1, 3, 3])], [value("y")], [init("w", np.ones((1, 1, 3, 3), np.float32))])
    (y,) = run(data, {"x": -np.ones((1, 1, 3, 3), np.float32)})
    assert (y == 0).all()


def test_fuzzer_regressions_replay():
    folder = os.path.join(ROOT, "fuzz", "regressions")
    names = sorted(n for n in os.listdir(folder) if n.endswith(".onnx"))
    assert names, "fuzz/regressions holds every input that ever crashed the fuzzer"
    for name in names:
        data = open(os.path.join(folder, name), "rb").read()
        survives(data)
        try:
            with deformrt.InferenceSession(data, threads=1, memory_limit=64 << 20) as session:
                feeds = {i.name: np.zeros([d if isinstance(d, int) and d else 2 for d in i.shape], np.float32)
                         for i in session.get_inputs()}
                survives(data, feeds)
        except deformrt.DeformRTError:
            pass


# ---- initializers -------------------------------------------------------------------------

def _add_initializer_model(tensor: TensorProto) -> bytes:
    return model_bytes([helper.make_node("Add", ["x", tensor.name], ["y"])], [value("x", FLOAT, [4])], [value("y")], [tensor])


def test_raw_data_shorter_than_dims():
    refused(_add_initializer_model(raw_tensor("c", FLOAT, [4], b"\0" * 12)), status=Status.INVALID_MODEL, match="raw_data holds 12 bytes")


def test_raw_data_longer_than_dims():
    refused(_add_initializer_model(raw_tensor("c", FLOAT, [4], b"\0" * 20)), status=Status.INVALID_MODEL, match="needs 16")


def test_typed_field_count_mismatch():
    tensor = TensorProto(name="c", data_type=FLOAT, dims=[4])
    tensor.float_data.extend([1.0, 2.0, 3.0])
    refused(_add_initializer_model(tensor), status=Status.INVALID_MODEL, match="float_data holds 3 values")
    tensor = TensorProto(name="c", data_type=TensorProto.INT8, dims=[2])
    tensor.int32_data.extend([1, 2, 3])
    refused(_add_initializer_model(tensor), status=Status.INVALID_MODEL, match="int32_data holds 3 values")


def test_dims_promising_terabytes_without_data_are_refused_before_allocating():
    # 2^40 floats = 4 TiB with no payload: refused by the count check, never allocated.
    refused(_add_initializer_model(TensorProto(name="c", data_type=FLOAT, dims=[1 << 20, 1 << 20])), status=Status.INVALID_MODEL)
    refused(_add_initializer_model(raw_tensor("c", FLOAT, [1 << 20, 1 << 20], b"\0" * 16)), status=Status.INVALID_MODEL)


def test_negative_dim_in_initializer():
    refused(_add_initializer_model(raw_tensor("c", FLOAT, [-4], b"\0" * 16)), status=Status.INVALID_MODEL, match="-4")


@pytest.mark.parametrize("dims", [[1 << 32, 1 << 32], [INT64_MAX, 2], [0, 1 << 40, 1 << 40], [1] * 17])
def test_overflowing_or_absurd_initializer_dims(dims):
    refused(_add_initializer_model(raw_tensor("c", FLOAT, dims, b"")), status=Status.INVALID_MODEL)


def test_string_and_unknown_element_types_are_refused():
    refused(_add_initializer_model(helper.make_tensor("c", TensorProto.STRING, [1], [b"a"])), status=Status.UNSUPPORTED, match="string")
    refused(_add_initializer_model(raw_tensor("c", TensorProto.COMPLEX64, [1], b"\0" * 8)), status=Status.UNSUPPORTED)
    refused(_add_initializer_model(raw_tensor("c", 9999, [1], b"\0" * 4)), status=Status.UNSUPPORTED)


def test_string_graph_input_cannot_be_fed():
    data = model_bytes([helper.make_node("Identity", ["s"], ["y"])], [value("s", TensorProto.STRING, [1])], [value("y")])
    error = survives(data, {"s": np.array(["a"], object)})
    assert error != "ok"


def test_integer_overflow_in_folded_constants_wraps():
    # Int64.max + 1 and Int64.min / -1 are folded while planning: they wrap instead of trapping.
    nodes = [helper.make_node("Add", ["big", "one"], ["sum"]),
             helper.make_node("Div", ["small", "minus_one"], ["quotient"]),
             helper.make_node("Div", ["one", "zero"], ["by_zero"]),
             helper.make_node("Mul", ["big", "big"], ["product"])]
    inits = [init("big", np.array([INT64_MAX], np.int64)), init("one", np.array([1], np.int64)),
             init("small", np.array([INT64_MIN], np.int64)), init("minus_one", np.array([-1], np.int64)),
             init("zero", np.array([0], np.int64))]
    data = model_bytes(nodes, [], [value(n) for n in ("sum", "quotient", "by_zero", "product")], inits)
    total, quotient, by_zero, product = run(data, {})
    assert total[0] == INT64_MIN and quotient[0] == INT64_MIN and by_zero[0] == 0 and product[0] == 1


# ---- declared shapes ----------------------------------------------------------------------

@pytest.mark.parametrize("shape", [[1 << 40, 1 << 40], [1 << 21, 1 << 21, 1 << 21], [0, 1 << 40, 4]])
def test_declared_input_shapes_that_overflow(shape):
    data = model_bytes([helper.make_node("Flatten", ["x"], ["y"], axis=1)], [value("x", FLOAT, shape)], [value("y")])
    refused(data, status={Status.INVALID_MODEL, Status.OUT_OF_MEMORY})


def test_declared_rank_over_the_limit():
    data = model_bytes([helper.make_node("Relu", ["x"], ["y"])], [value("x", FLOAT, [1] * 40)], [value("y")])
    refused(data, status=Status.INVALID_MODEL, match="rank 40")


def test_memory_limit_is_checked_before_allocating():
    data = model_bytes([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
                       [value("x", FLOAT, [1, 64, 256, 256])], [value("y")], [init("w", np.zeros((64, 64, 3, 3), np.float32))])
    refused(data, status=Status.OUT_OF_MEMORY, memory_limit=1 << 20)
    refused(model_bytes([helper.make_node("Relu", ["x"], ["y"])], [value("x", FLOAT, [1 << 17, 1 << 16])], [value("y")]),
            status=Status.OUT_OF_MEMORY)  # a 32 GiB output: over the default 16 GiB limit


# ---- operators ----------------------------------------------------------------------------

def test_unknown_ops_are_listed_together():
    data = model_bytes([helper.make_node("Frobnicate", ["x"], ["a"]), helper.make_node("Twiddle", ["a"], ["y"])],
                       [value("x", FLOAT, [1])], [value("y")])
    error = refused(data, status=Status.UNSUPPORTED)
    assert "Frobnicate" in error.message and "Twiddle" in error.message


def test_unknown_domain():
    data = model_bytes([helper.make_node("Relu", ["x"], ["y"], domain="com.evil")], [value("x", FLOAT, [1])], [value("y")],
                       domains=["com.evil"])
    refused(data, status=Status.UNSUPPORTED, match="com.evil")


def test_opset_too_old_for_the_op():
    data = model_bytes([helper.make_node("DeformConv", ["x", "w", "o"], ["y"])], [value("x", FLOAT, [1, 1, 3, 3])], [value("y")],
                       [init("w", np.ones((1, 1, 1, 1), np.float32)), init("o", np.zeros((1, 2, 3, 3), np.float32))], opset=11)
    refused(data, status=Status.UNSUPPORTED, match="DeformConv")


@pytest.mark.parametrize("attrs", [
    dict(pads=[1 << 62, 0, 1 << 62, 0]),
    dict(pads=[INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX]),
    dict(strides=[0, 1]),
    dict(strides=[INT64_MAX, 1]),
    dict(dilations=[INT64_MAX, 1]),
    dict(dilations=[-1, 1]),
    dict(pads=[-1, 0, 0, 0]),
    dict(group=INT64_MAX),
    dict(group=0),
    dict(kernel_shape=[5, 5]),
    dict(auto_pad="EVIL"),
])
def test_conv_hostile_attributes(attrs):
    refused(conv_model(**attrs), status={Status.INVALID_MODEL, Status.UNSUPPORTED})


def test_conv_kernel_larger_than_input():
    refused(conv_model(x_shape=(1, 2, 3, 3), w_shape=(1, 2, 4, 4), strides=[2, 2]), status=Status.INVALID_MODEL, match="does not fit")


def test_conv_with_empty_kernel_or_wrong_weight_rank():
    refused(conv_model(w_shape=(3, 2, 0, 3)), status=Status.INVALID_MODEL)
    refused(conv_model(w_shape=(3, 2, 3)), status={Status.INVALID_MODEL, Status.UNSUPPORTED})


def test_conv_1d_pads_are_begin_end(onnx_case):
    # Two pads on a 1-D conv once became top/bottom padding of the height-1 map and wrote rows
    # past the output (a heap overflow found by the fuzzer's seed run).
    x = np.random.default_rng(3).standard_normal((2, 2, 7)).astype(np.float32)
    w = np.random.default_rng(4).standard_normal((3, 2, 3)).astype(np.float32)
    data = onnx_case.model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[2, 0], strides=[2])],
                           [onnx_case.value("x", np.float32, [2, 2, 7])], ["y"], {"w": w})
    onnx_case.check(data, {"x": x}, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pads", [[], [1, 2, 3], [1, 1, 1, 1, 1]])
@pytest.mark.parametrize("rank", [3, 4])
def test_conv_pads_of_odd_length(pads, rank):
    node = helper.make_node("Conv", ["x", "w"], ["y"])
    node.attribute.append(helper.make_attribute("pads", pads, attr_type=onnx.AttributeProto.INTS))
    x_shape, w_shape = ([1, 1, 5], [1, 1, 3]) if rank == 3 else ([1, 1, 5, 5], [1, 1, 3, 3])
    data = model_bytes([node], [value("x", FLOAT, x_shape)], [value("y")], [init("w", np.ones(w_shape, np.float32))])
    refused(data, status={Status.INVALID_MODEL, Status.UNSUPPORTED})


@pytest.mark.parametrize("x_shape,w_shape", [((0, 2, 5, 5), (3, 2, 3, 3)), ((1, 2, 5, 5), (0, 2, 3, 3)),
                                             ((1, 0, 5, 5), (3, 0, 3, 3)), ((0, 2, 5, 5), (3, 2, 1, 1))])
def test_conv_and_deformconv_with_empty_batch_or_channels(x_shape, w_shape):
    # An empty batch or no output channels once divided by zero in the kernels' tiling (found by
    # the fuzzer: fuzz/regressions/conv_empty_batch_divides_by_zero.onnx); no input channels
    # leaves the bias.
    bias = np.arange(w_shape[0], dtype=np.float32)
    pads = [1, 1, 1, 1] if w_shape[2] == 3 else [0, 0, 0, 0]
    conv = model_bytes([helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=pads)], [value("x", FLOAT, list(x_shape))],
                       [value("y")], [init("w", np.ones(w_shape, np.float32)), init("b", bias)])
    out_shape = (x_shape[0], w_shape[0], 5, 5)
    offset_shape = [x_shape[0], 2 * w_shape[2] * w_shape[3], 5, 5]
    deform = model_bytes([helper.make_node("DeformConv", ["x", "w", "offset", "b"], ["y"], pads=pads)],
                         [value("x", FLOAT, list(x_shape)), value("offset", FLOAT, offset_shape)], [value("y")],
                         [init("w", np.ones(w_shape, np.float32)), init("b", bias)])
    for data, feeds in ((conv, {}), (deform, {"offset": np.zeros(offset_shape, np.float32)})):
        for threads in (1, 2):
            with deformrt.InferenceSession(data, threads=threads) as session:
                (y,) = session.run(None, {"x": np.ones(x_shape, np.float32), **feeds})
            np.testing.assert_array_equal(y, np.broadcast_to(bias[None, :, None, None], out_shape))


@pytest.mark.parametrize("node,shapes", [
    (helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2]), [[0, 2, 4, 4]]),
    (helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1), [[1, 0, 4, 4]]),
    (helper.make_node("GlobalAveragePool", ["x"], ["y"]), [[1, 2, 0, 4]]),
    (helper.make_node("Softmax", ["x"], ["y"], axis=1), [[2, 0, 3]]),
    (helper.make_node("MatMul", ["x", "z"], ["y"]), [[2, 3, 0], [0, 4]]),
    (helper.make_node("Gemm", ["x", "z"], ["y"], transA=1), [[5, 0], [5, 4]]),
    (helper.make_node("Transpose", ["x"], ["y"], perm=[2, 0, 1]), [[2, 0, 3]]),
    (helper.make_node("Concat", ["x", "x"], ["y"], axis=1), [[2, 0, 3]]),
    (helper.make_node("LayerNormalization", ["x", "s"], ["y"]), [[2, 0]]),
    (helper.make_node("ReduceMean", ["x"], ["y"], keepdims=1), [[2, 0]]),
    (helper.make_node("RoiAlign", ["x", "rois", "batch"], ["y"]), [[1, 2, 4, 4]]),
    (helper.make_node("Resize", ["x", "", "", "sizes"], ["y"]), [[1, 1, 3, 3]]),
])
def test_empty_tensors_through_operators(node, shapes):
    inputs = [value(name, FLOAT, shape) for name, shape in zip(["x", "z"], shapes)]
    inits = [init("s", np.zeros(0, np.float32)), init("rois", np.zeros((0, 4), np.float32)),
             init("batch", np.zeros(0, np.int64)), init("sizes", np.array([1, 1, 0, 2], np.int64))]
    data = model_bytes([node], inputs, [value("y")], [t for t in inits if t.name in node.input])
    feeds = {name: np.ones(shape, np.float32) for name, shape in zip(["x", "z"], shapes)}
    assert survives(data, feeds) == "ok"


def test_pool_1d_with_one_pad_value_is_refused():
    data = model_bytes([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2], pads=[1])],
                       [value("x", FLOAT, [1, 1, 6])], [value("y")])
    refused(data, status=Status.INVALID_MODEL, match="1-D pooling")


@pytest.mark.parametrize("kernel", [[0, 2], [-3, 2], [1 << 40, 2], [2, 2, 2, 2, 2]])
def test_pool_hostile_kernel_shape(kernel):
    data = model_bytes([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=kernel)], [value("x", FLOAT, [1, 1, 4, 4])], [value("y")])
    refused(data, status={Status.INVALID_MODEL, Status.UNSUPPORTED})


def test_deformconv_bad_offset_shape():
    refused(deform_model(offset_shape=(1, 17, 4, 4)), status=Status.INVALID_MODEL, match="offset shape")
    refused(deform_model(offset_shape=(1, 18, 3, 4)), status=Status.INVALID_MODEL, match="offset shape")


def test_deformconv_bad_mask_shape():
    refused(deform_model(mask_shape=(1, 18, 4, 4)), status=Status.INVALID_MODEL, match="mask shape")


def test_deformconv_bad_bias_and_groups():
    refused(deform_model(group=2), status=Status.INVALID_MODEL)
    refused(deform_model(offset_group=INT64_MAX), status=Status.INVALID_MODEL, match="offset group")
    refused(deform_model(offset_group=0), status=Status.INVALID_MODEL)


def test_deformconv_offset_group_overflow_with_zero_channels():
    # 0 input channels pass every divisibility test; offset_group * 2 * taps must not overflow.
    data = model_bytes([helper.make_node("DeformConv", ["x", "w", "offset"], ["y"], offset_group=1 << 61)],
                       [value("x", FLOAT, [1, 0, 4, 4]), value("offset", FLOAT, [1, 18, 2, 2])], [value("y")],
                       [init("w", np.zeros((1, 0, 3, 3), np.float32))])
    refused(data, status=Status.INVALID_MODEL)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e30, -1e30, 3.4e38])
def test_deformconv_non_finite_and_huge_offsets_read_zero(bad):
    # Every sample lands outside the input (or is NaN): the output is exactly the bias.
    (y,) = run(deform_model(), deform_feeds(offset_value=bad))
    expected = np.broadcast_to(np.array([1.0, 2.0, 3.0], np.float32)[None, :, None, None], (1, 3, 4, 4))
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_deformconv_non_finite_mask_gives_a_defined_result(bad):
    (y,) = run(deform_model(), deform_feeds(mask_value=bad))
    assert y.shape == (1, 3, 4, 4)
    (z,) = run(deform_model(), deform_feeds(mask_value=bad))
    np.testing.assert_array_equal(y, z)  # deterministic, whatever the values


def test_deformconv_mixed_nan_offsets_match_zero_samples():
    feeds = deform_feeds()
    rng = np.random.default_rng(5)
    offsets = rng.uniform(-3, 3, (1, 18, 4, 4)).astype(np.float32)
    poisoned = offsets.copy()
    poisoned[rng.random(poisoned.shape) < 0.3] = np.nan
    feeds["offset"] = poisoned
    (y,) = run(deform_model(), feeds)
    assert np.isfinite(y).all(), "NaN positions read 0, they do not poison the sum"


def test_slice_with_extreme_steps_and_bounds():
    # Clamping and counting must not overflow on any int64; Python's list slicing is the oracle.
    x = np.arange(10, dtype=np.float32)
    cases = [(INT64_MAX, INT64_MIN, INT64_MIN), (INT64_MIN, INT64_MAX, INT64_MAX), (0, 10, INT64_MAX),
             (9, INT64_MIN, -3), (-INT64_MAX, INT64_MAX, 1), (INT64_MAX, INT64_MIN, -4), (3, 3, 1), (5, 2, 1)]
    for start, end, step in cases:
        data = model_bytes([helper.make_node("Slice", ["x", "s", "e", "a", "t"], ["y"])], [value("x", FLOAT, [10])], [value("y")],
                           [init("s", np.array([start], np.int64)), init("e", np.array([end], np.int64)),
                            init("a", np.array([0], np.int64)), init("t", np.array([step], np.int64))])
        (y,) = run(data, {"x": x})
        np.testing.assert_array_equal(y, np.array(list(x)[start:end:step], np.float32), err_msg=f"{start}:{end}:{step}")
    data = model_bytes([helper.make_node("Slice", ["x", "s", "e", "a", "t"], ["y"])], [value("x", FLOAT, [10])], [value("y")],
                       [init("s", np.array([0], np.int64)), init("e", np.array([1], np.int64)),
                        init("a", np.array([0], np.int64)), init("t", np.array([0], np.int64))])
    refused(data, status=Status.INVALID_MODEL, match="step 0")


def test_split_with_hostile_sizes():
    for sizes in ([INT64_MAX, INT64_MAX], [INT64_MAX, -INT64_MAX + 3], [-1, 5]):
        data = model_bytes([helper.make_node("Split", ["x", "s"], ["a", "b"], axis=0)], [value("x", FLOAT, [4])],
                           [value("a"), value("b")], [init("s", np.array(sizes, np.int64))])
        refused(data, status=Status.INVALID_MODEL, match="split")
    data = model_bytes([helper.make_node("Split", ["x"], ["a", "b"], axis=0, num_outputs=INT64_MAX)], [value("x", FLOAT, [4])],
                       [value("a"), value("b")], opset=18)
    refused(data, status=Status.INVALID_MODEL, match="num_outputs")


def test_unsqueeze_with_a_million_axes_is_refused_quickly():
    axes = np.arange(1 << 20, dtype=np.int64)
    data = model_bytes([helper.make_node("Unsqueeze", ["x", "axes"], ["y"])], [value("x", FLOAT, [2])], [value("y")],
                       [init("axes", axes)])
    refused(data, status=Status.INVALID_MODEL, match="limit")


def test_reshape_to_overflowing_shape():
    for shape in ([1 << 40, 1 << 40], [-1, 0, INT64_MAX], [-1, -1], [-7]):
        data = model_bytes([helper.make_node("Reshape", ["x", "s"], ["y"])], [value("x", FLOAT, [4])], [value("y")],
                           [init("s", np.array(shape, np.int64))])
        refused(data, status=Status.INVALID_MODEL)


@pytest.mark.parametrize("node", [
    helper.make_node("Softmax", ["x"], ["y"], axis=0),
    helper.make_node("Concat", ["x", "x"], ["y"], axis=0),
    helper.make_node("Gather", ["x", "i"], ["y"], axis=0),
    helper.make_node("Split", ["x"], ["y"], axis=0),
    helper.make_node("Squeeze", ["x", "i"], ["y"]),
])
def test_axis_ops_on_a_scalar_are_refused(node):
    data = model_bytes([node], [value("x", FLOAT, [])], [value("y")], [init("i", np.array([0], np.int64))])
    refused(data, status=Status.INVALID_MODEL)


def test_transpose_with_bad_perm():
    for perm in ([0, 0], [0, 2], [INT64_MAX, 0], [0]):
        data = model_bytes([helper.make_node("Transpose", ["x"], ["y"], perm=perm)], [value("x", FLOAT, [2, 3])], [value("y")])
        refused(data, status=Status.INVALID_MODEL, match="perm")


def test_gather_index_out_of_range_at_run_time():
    data = model_bytes([helper.make_node("Gather", ["x", "i"], ["y"])], [value("x", FLOAT, [3]), value("i", INT64, [1])], [value("y")])
    for index in (3, -4, INT64_MAX, INT64_MIN):
        refused(data, {"x": np.ones(3, np.float32), "i": np.array([index], np.int64)}, status=Status.INVALID_ARGUMENT,
                match="out of range")


def test_attribute_of_the_wrong_type():
    attribute = helper.make_attribute("kernel_shape", [1.5, 2.5])
    node = helper.make_node("MaxPool", ["x"], ["y"])
    node.attribute.append(attribute)
    refused(model_bytes([node], [value("x", FLOAT, [1, 1, 4, 4])], [value("y")]), status=Status.INVALID_MODEL, match="kernel_shape")


def test_subgraph_and_sparse_initializers_are_unsupported():
    body = helper.make_graph([], "body", [], [])
    node = helper.make_node("If", ["c"], ["y"])
    node.attribute.append(helper.make_attribute("then_branch", [body, body]))  # a list of graphs
    refused(model_bytes([node], [value("c", TensorProto.BOOL, [])], [value("y")]), status=Status.UNSUPPORTED, match="list of subgraphs")
    # Branches with no outputs for a node with one: a clear error at session creation.
    node = helper.make_node("If", ["c"], ["y"], then_branch=body, else_branch=body)
    refused(model_bytes([node], [value("c", TensorProto.BOOL, [])], [value("y")]), status=Status.INVALID_MODEL, match="0 outputs")
    m = model_proto([helper.make_node("Relu", ["x"], ["y"])], [value("x", FLOAT, [1])], [value("y")])
    sparse = helper.make_sparse_tensor(helper.make_tensor("v", FLOAT, [1], [1.0]), helper.make_tensor("i", INT64, [1], [0]), [4])
    m.graph.sparse_initializer.append(sparse)
    refused(m.SerializeToString(), status=Status.UNSUPPORTED, match="sparse")


# ---- external data ------------------------------------------------------------------------

def _external_model(folder, location, offset=None, length=None, dims=(4,)):
    tensor = TensorProto(name="c", data_type=FLOAT, dims=list(dims), data_location=TensorProto.EXTERNAL)
    entries = {"location": location}
    if offset is not None:
        entries["offset"] = str(offset)
    if length is not None:
        entries["length"] = str(length)
    for key, val in entries.items():
        tensor.external_data.add(key=key, value=val)
    path = folder / "model.onnx"
    path.write_bytes(_add_initializer_model(tensor))
    return str(path)


def _secret(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(4, dtype=np.float32).tobytes())
    folder = tmp_path / "models"
    folder.mkdir()
    return secret, folder


def test_external_data_inside_the_folder_works(tmp_path):
    _, folder = _secret(tmp_path)
    (folder / "weights.bin").write_bytes(b"\0" * 8 + np.full(4, 2.0, np.float32).tobytes())
    (y,) = run(_external_model(folder, "weights.bin", offset=8, length=16), {"x": np.ones(4, np.float32)})
    np.testing.assert_array_equal(y, np.full(4, 3.0, np.float32))


def test_external_data_dotdot_is_refused(tmp_path):
    _, folder = _secret(tmp_path)
    for location in ("../secret.bin", "sub/../../secret.bin", "./../secret.bin", ".."):
        refused(_external_model(folder, location), status=Status.INVALID_MODEL, match="folder")


def test_external_data_absolute_path_is_refused(tmp_path):
    secret, folder = _secret(tmp_path)
    refused(_external_model(folder, str(secret)), status=Status.INVALID_MODEL, match="relative")
    refused(_external_model(folder, "/etc/passwd"), status=Status.INVALID_MODEL, match="relative")


def test_external_data_symlink_leaving_the_folder_is_refused(tmp_path):
    secret, folder = _secret(tmp_path)
    os.symlink(secret, folder / "link.bin")
    refused(_external_model(folder, "link.bin"), status=Status.INVALID_MODEL, match="outside")
    os.symlink(tmp_path, folder / "up")
    refused(_external_model(folder, "up/secret.bin"), status=Status.INVALID_MODEL, match="outside")


def test_external_data_symlink_inside_the_folder_is_followed(tmp_path):
    _, folder = _secret(tmp_path)
    (folder / "real.bin").write_bytes(np.full(4, 5.0, np.float32).tobytes())
    os.symlink("real.bin", folder / "alias.bin")
    (y,) = run(_external_model(folder, "alias.bin"), {"x": np.zeros(4, np.float32)})
    np.testing.assert_array_equal(y, np.full(4, 5.0, np.float32))


def test_external_data_range_outside_the_file_is_refused(tmp_path):
    _, folder = _secret(tmp_path)
    (folder / "w.bin").write_bytes(b"\0" * 16)
    refused(_external_model(folder, "w.bin", offset=4), status=Status.INVALID_MODEL, match="outside")
    refused(_external_model(folder, "w.bin", offset=INT64_MAX), status=Status.INVALID_MODEL)
    refused(_external_model(folder, "w.bin", offset=0, length=12), status=Status.INVALID_MODEL, match="length")
    refused(_external_model(folder, "w.bin", dims=(1 << 20, 1 << 20)), status=Status.INVALID_MODEL)
    for bad in ("-1", "12abc", "99999999999999999999999"):
        refused(_external_model(folder, "w.bin", offset=bad), status=Status.INVALID_MODEL, match="offset")


def test_external_data_that_is_not_a_regular_file_is_refused(tmp_path):
    _, folder = _secret(tmp_path)
    (folder / "dir").mkdir()
    os.mkfifo(folder / "fifo")  # reading it would block forever
    refused(_external_model(folder, "dir"), status=Status.INVALID_MODEL, match="regular file")
    refused(_external_model(folder, "fifo"), status=Status.INVALID_MODEL, match="regular file")
    refused(_external_model(folder, "missing.bin"), status=Status.IO)


def test_external_data_with_odd_characters_is_refused(tmp_path):
    _, folder = _secret(tmp_path)
    refused(_external_model(folder, "..\\secret.bin"), status=Status.INVALID_MODEL)
    refused(_external_model(folder, ""), status=Status.INVALID_MODEL, match="no location")


def test_external_data_from_memory_is_refused(tmp_path):
    _, folder = _secret(tmp_path)
    (folder / "w.bin").write_bytes(b"\0" * 16)
    data = open(_external_model(folder, "w.bin"), "rb").read()
    refused(data, status=Status.INVALID_MODEL, match="loaded from a file")


# ---- wrong feeds --------------------------------------------------------------------------

def _raw_session(data: bytes):
    model = ctypes.POINTER(_capi.drt_model)()
    assert _capi.drt_model_load_memory(data, len(data), ctypes.byref(model)) == Status.OK
    session = ctypes.POINTER(_capi.drt_session)()
    assert _capi.drt_session_create(model, None, ctypes.byref(session)) == Status.OK
    return model, session


def _raw_tensor(array: np.ndarray, element_type: int):
    shape = (ctypes.c_int64 * max(array.ndim, 1))(*array.shape)
    tensor = ctypes.POINTER(_capi.drt_tensor)()
    assert _capi.drt_tensor_create(element_type, shape, array.ndim, array.ctypes.data, array.nbytes, ctypes.byref(tensor)) == Status.OK
    return tensor


def _raw_run(session, names, tensors, output_count=1):
    name_array = (ctypes.c_char_p * max(len(names), 1))(*[n.encode() for n in names])
    tensor_array = (ctypes.POINTER(_capi.drt_tensor) * max(len(tensors), 1))(*tensors)
    outputs = (ctypes.POINTER(_capi.drt_tensor) * output_count)()
    status = _capi.drt_session_run(session, name_array, tensor_array, len(names), None, output_count, outputs)
    for out in outputs:
        _capi.drt_tensor_free(out)
    return status, _capi.drt_last_error_message().decode()


@pytest.fixture
def relu_session():
    model, session = _raw_session(relu_model())
    yield session
    _capi.drt_session_free(session)
    _capi.drt_model_free(model)


def test_feed_of_the_wrong_dtype(relu_session):
    tensor = _raw_tensor(np.ones((1, 4), np.int32), deformrt.ElementType.INT32)
    status, message = _raw_run(relu_session, ["x"], [tensor])
    _capi.drt_tensor_free(tensor)
    assert status == Status.INVALID_ARGUMENT and "tensor(float)" in message and "int32" in message


def test_feed_of_the_wrong_rank_and_shape():
    for array, needle in ((np.ones((4,), np.float32), "rank"), (np.ones((1, 5), np.float32), "dimension 1")):
        refused(relu_model(), {"x": array}, status=Status.INVALID_ARGUMENT, match=needle)


def test_missing_and_unknown_and_repeated_input_names(relu_session):
    refused(relu_model(), {}, status=Status.INVALID_ARGUMENT, match="not fed")
    refused(relu_model(), {"x": np.ones((1, 4), np.float32), "extra": np.ones(1, np.float32)},
            status=Status.INVALID_ARGUMENT, match="unknown input name 'extra'")
    tensor = _raw_tensor(np.ones((1, 4), np.float32), deformrt.ElementType.FLOAT)
    status, message = _raw_run(relu_session, ["x", "x"], [tensor, tensor])
    assert status == Status.INVALID_ARGUMENT and "more than once" in message
    _capi.drt_tensor_free(tensor)


def test_unknown_output_name():
    with deformrt.InferenceSession(relu_model(), threads=1) as session:
        with pytest.raises(deformrt.DeformRTError, match="unknown output name"):
            session.run(["nope"], {"x": np.ones((1, 4), np.float32)})


def test_null_data_and_lying_sizes_in_tensor_create():
    shape = (ctypes.c_int64 * 2)(1, 4)
    tensor = ctypes.POINTER(_capi.drt_tensor)()
    assert _capi.drt_tensor_create(1, shape, 2, None, 16, ctypes.byref(tensor)) == Status.INVALID_ARGUMENT
    assert "NULL" in _capi.drt_last_error_message().decode()
    buffer = (ctypes.c_float * 4)()
    assert _capi.drt_tensor_create(1, shape, 2, buffer, 12, ctypes.byref(tensor)) == Status.INVALID_ARGUMENT
    huge = (ctypes.c_int64 * 2)(1 << 40, 1 << 40)
    assert _capi.drt_tensor_create(1, huge, 2, buffer, 16, ctypes.byref(tensor)) == Status.INVALID_ARGUMENT
    negative = (ctypes.c_int64 * 1)(-1)
    assert _capi.drt_tensor_create(1, negative, 1, buffer, 16, ctypes.byref(tensor)) == Status.INVALID_ARGUMENT
    assert _capi.drt_tensor_create(8, shape, 2, buffer, 16, ctypes.byref(tensor)) == Status.INVALID_ARGUMENT  # string
    assert _capi.drt_tensor_create(1, shape, 1 << 40, buffer, 16, ctypes.byref(tensor)) == Status.INVALID_ARGUMENT
    assert not tensor


def test_dynamic_dims_replan_for_new_shapes_including_empty():
    data = model_bytes([helper.make_node("Relu", ["x"], ["y"])], [value("x", FLOAT, ["n", 3])], [value("y")])
    with deformrt.InferenceSession(data, threads=1) as session:
        for n in (1, 5, 0, 2):
            (y,) = session.run(None, {"x": -np.ones((n, 3), np.float32)})
            assert y.shape == (n, 3) and (y == 0).all()


def test_nan_inputs_flow_through_plain_ops():
    data = model_bytes([helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2, 2]), helper.make_node("Softmax", ["p"], ["y"])],
                       [value("x", FLOAT, [1, 1, 4, 4])], [value("y")])
    x = np.full((1, 1, 4, 4), np.nan, np.float32)
    x[0, 0, 0, 0] = np.inf
    (y,) = run(data, {"x": x})
    assert y.shape == (1, 1, 3, 3)


# ---- deformable attention family (GridSample, DCNv3, multi-scale deformable attention) -------

def grid_sample_model(x_shape, grid_shape, **attrs):
    return model_bytes([helper.make_node("GridSample", ["x", "grid"], ["y"], name="gs", **attrs)],
                       [value("x", FLOAT, list(x_shape)), value("grid", FLOAT, list(grid_shape))], [value("y")],
                       opset=20)


def dcnv3_model(x_shape=(1, 5, 4, 6), offset_shape=(1, 5, 4, 2 * 9 * 2), mask_shape=(1, 5, 4, 2 * 9), **overrides):
    attrs = dict(kernel_h=3, kernel_w=3, stride_h=1, stride_w=1, pad_h=1, pad_w=1, dilation_h=1, dilation_w=1,
                 group=2, group_channels=3, offset_scale=1.0, im2col_step=64, remove_center=0)
    attrs.update(overrides)
    attrs = {k: v for k, v in attrs.items() if v is not None}
    return model_bytes([helper.make_node("TRTDCNv3", ["x", "offset", "mask"], ["y"], name="dcn3", domain="mmdeploy",
                                         **attrs)],
                       [value("x", FLOAT, list(x_shape)), value("offset", FLOAT, list(offset_shape)),
                        value("mask", FLOAT, list(mask_shape))], [value("y")], domains=["mmdeploy"])


def dcnv3_feeds(x_shape=(1, 5, 4, 6), offset_shape=(1, 5, 4, 36), mask_shape=(1, 5, 4, 18)):
    return {"x": np.ones(x_shape, np.float32), "offset": np.zeros(offset_shape, np.float32),
            "mask": np.full(mask_shape, 1 / 9, np.float32)}


def msda_model(shapes, starts, keys=25, levels=2, loc_shape=None, weight_shape=None, feed_levels=False,
               index_type=INT64):
    loc_shape = loc_shape or (1, 4, 2, levels, 2, 2)
    weight_shape = weight_shape or loc_shape[:-1]
    inputs = [value("value", FLOAT, [1, keys, 2, 3]), value("loc", FLOAT, list(loc_shape)),
              value("w", FLOAT, list(weight_shape))]
    inits = []
    if feed_levels:
        inputs += [value("shapes", index_type, [len(shapes), 2]), value("starts", index_type, [len(starts)])]
    else:
        inits = [init("shapes", np.array(shapes, np.int64).reshape(-1, 2)), init("starts", np.array(starts, np.int64))]
    node = helper.make_node("MMCVMultiScaleDeformableAttention", ["value", "shapes", "starts", "loc", "w"], ["y"],
                            name="msda", domain="mmdeploy")
    return model_bytes([node], inputs, [value("y")], inits, domains=["mmdeploy"])


def msda_feeds(keys=25, loc_shape=(1, 4, 2, 2, 2, 2), loc_value=0.5):
    return {"value": np.ones((1, keys, 2, 3), np.float32), "loc": np.full(loc_shape, loc_value, np.float32),
            "w": np.full(loc_shape[:-1], 0.25, np.float32)}


@pytest.mark.parametrize("x_shape,grid_shape,match", [
    ((1, 2, 3, 4), (2, 2, 2, 2), "grid shape"),
    ((1, 2, 3, 4), (1, 2, 2, 3), "grid shape"),
    ((1, 2, 3, 4, 5, 6), (1, 2, 2, 2, 2, 4), "not supported"),
    ((1, 2, 0, 4), (1, 2, 2, 2), "empty"),
    ((1, 1, 1 << 23, 2), (1, 1, 1, 2), "too large"),
    ((1, 2, 3, 4, 5), (1, 2, 2, 2, 2), "grid shape"),
    ((1, 2, 0, 4, 5), (1, 2, 2, 2, 3), "empty"),
    ((1, 1, 1 << 12, 1 << 12, 1 << 7), (1, 1, 1, 1, 3), "too large"),
    ((1, 1, 1 << 23, 1, 1), (1, 1, 1, 1, 3), "too large"),
])
def test_grid_sample_bad_shapes_name_the_node(x_shape, grid_shape, match):
    error = refused(grid_sample_model(x_shape, grid_shape), match=match)
    assert "gs" in error.message


def test_grid_sample_huge_grid_is_refused_by_the_memory_limit():
    refused(grid_sample_model((1, 256, 4, 4), (1, 1 << 16, 1 << 16, 2)), memory_limit=1 << 30)


def test_grid_sample_5d_cubic_is_refused_by_name():
    error = refused(grid_sample_model((1, 2, 3, 4, 5), (1, 2, 2, 2, 3), mode="cubic"), match="cubic")
    assert "gs" in error.message and "4-D" in error.message


def test_grid_sample_5d_huge_grid_is_refused_by_the_memory_limit():
    refused(grid_sample_model((1, 64, 2, 4, 4), (1, 1 << 12, 1 << 12, 1 << 8, 3)), memory_limit=1 << 30)


def test_grid_sample_5d_hostile_grid_values_give_defined_results():
    grid = np.array([np.nan, np.inf, -np.inf, 3e38, -3e38, 1e-45, 0, 1, -1] * 4, np.float32).reshape(1, 2, 2, 3, 3)
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(1, 2, 3, 4, 5)
    for mode in ("linear", "nearest"):
        for padding in ("zeros", "border", "reflection"):
            (y,) = run(grid_sample_model(x.shape, grid.shape, mode=mode, padding_mode=padding), {"x": x, "grid": grid})
            assert np.isfinite(y).all() and y.shape == (1, 2, 2, 2, 3)


def test_grid_sample_hostile_grid_values_give_defined_results():
    grid = np.array([np.nan, np.inf, -np.inf, 3e38, -3e38, 1e-45, 0, 1] * 3, np.float32).reshape(1, 3, 4, 2)
    x = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    for mode in ("linear", "nearest", "cubic"):
        for padding in ("zeros", "border", "reflection"):
            (y,) = run(grid_sample_model(x.shape, grid.shape, mode=mode, padding_mode=padding), {"x": x, "grid": grid})
            assert np.isfinite(y).all() and y.shape == (1, 2, 3, 4)


@pytest.mark.parametrize("kwargs,match", [
    (dict(x_shape=(1, 5, 4, 7)), "group 2 * group_channels 3"),
    (dict(offset_shape=(1, 5, 4, 35)), "offset shape"),
    (dict(offset_shape=(1, 4, 4, 36)), "offset shape"),
    (dict(mask_shape=(1, 5, 4, 9)), "mask shape"),
    (dict(x_shape=(1, 5, 4)), "rank 4"),
    (dict(kernel_h=None), "missing attribute kernel_h"),
    (dict(group_channels=0), "group_channels"),
    (dict(pad_h=-1), "pad_h"),
    (dict(stride_w=1 << 40), "stride_w"),
    (dict(remove_center=2), "remove_center"),
    (dict(offset_scale=float("nan")), "offset_scale"),
    (dict(kernel_h=1, kernel_w=1, remove_center=1), "no sampling point"),
    (dict(kernel_h=9, pad_h=0), "smaller than the dilated kernel"),
])
def test_dcnv3_bad_models_name_the_node(kwargs, match):
    shapes = {k: kwargs.pop(k) for k in ("x_shape", "offset_shape", "mask_shape") if k in kwargs}
    error = refused(dcnv3_model(**shapes, **kwargs), match=match)
    assert "dcn3" in error.message


def test_dcnv3_wrong_fed_shapes_and_hostile_offsets():
    refused(dcnv3_model(x_shape=("n", 5, 4, 6)), dcnv3_feeds(x_shape=(1, 5, 4, 5)))
    feeds = dcnv3_feeds()
    feeds["offset"][0, 0, 0, :4] = [np.nan, np.inf, -np.inf, 3e38]
    feeds["offset"][0, 1, 1, :] = -3e38
    feeds["mask"][0, 2, 2, 0] = np.nan
    (y,) = run(dcnv3_model(), feeds)
    assert y.shape == (1, 5, 4, 6)
    assert np.isfinite(np.delete(y.reshape(20, 6), 2 * 4 + 2, axis=0)).all()


@pytest.mark.parametrize("shapes,starts,keys,match", [
    ([[4, 5], [1, 4]], [0, 20], 25, "cover 24 keys but value has 25"),
    ([[4, 5], [1, 6]], [0, 20], 25, "outside value's 25 keys"),
    ([[4, 5], [1, 5]], [0, 21], 25, "level_start_index[1] = 21 disagrees"),
    ([[4, 5], [1, 5]], [0, -5], 25, "disagrees"),
    ([[4, 5], [1, 5]], [0, 1 << 62], 25, "disagrees"),
    ([[-4, -5], [1, 5]], [0, 20], 25, "out of range"),
    ([[1 << 40, 1 << 40], [1, 5]], [0, 20], 25, "out of range"),
])
def test_msda_levels_disagreeing_with_value_are_named(shapes, starts, keys, match):
    error = refused(msda_model(shapes, starts, keys=keys), match=match)
    assert "msda" in error.message
    # The same levels fed at run time: the error names the node too.
    feeds = msda_feeds(keys)
    feeds["shapes"] = np.array(shapes, np.int64)
    feeds["starts"] = np.array(starts, np.int64)
    error = refused(msda_model(shapes, starts, keys=keys, feed_levels=True), feeds, match=match)
    assert "msda" in error.message


@pytest.mark.parametrize("kwargs,match", [
    (dict(loc_shape=(1, 4, 3, 2, 2, 2)), "sampling_locations shape"),
    (dict(loc_shape=(1, 4, 2, 2, 2, 3)), "sampling_locations shape"),
    (dict(loc_shape=(1, 4, 2, 3, 2, 2)), "spatial_shapes shape"),
    (dict(weight_shape=(1, 4, 2, 2, 3)), "attention_weights shape"),
])
def test_msda_wrong_shapes_are_named(kwargs, match):
    error = refused(msda_model([[4, 5], [1, 5]], [0, 20], **kwargs), match=match)
    assert "msda" in error.message


def test_msda_float_levels_are_refused():
    node = helper.make_node("MMCVMultiScaleDeformableAttention", ["value", "shapes", "starts", "loc", "w"], ["y"],
                            name="msda", domain="mmdeploy")
    data = model_bytes([node], [value("value", FLOAT, [1, 25, 2, 3]), value("loc", FLOAT, [1, 4, 2, 2, 2, 2]),
                                value("w", FLOAT, [1, 4, 2, 2, 2])], [value("y")],
                       [init("shapes", np.array([[4, 5], [1, 5]], np.float32)), init("starts", np.array([0, 20], np.int64))],
                       domains=["mmdeploy"])
    assert "msda" in refused(data, match="int64 or int32").message


def test_msda_hostile_locations_give_defined_results():
    feeds = msda_feeds()
    feeds["loc"].reshape(-1)[:6] = [np.nan, np.inf, -np.inf, 3e38, -3e38, 1e-45]
    (y,) = run(msda_model([[4, 5], [1, 5]], [0, 20]), feeds)
    assert y.shape == (1, 4, 6) and np.isfinite(y).all()


@pytest.mark.parametrize("expected,match", [
    ([1, 25, 1 << 62, 1 << 62], "value shape"),   # heads x dim overflows: refused, no trap
    ([1, 25, -2, -3], "expected_value_shape"),
    ([1, 25, 2], "expected_value_shape"),
    ([1, 24, 2, 3], "value shape"),
])
def test_msda_hostile_expected_shapes_are_named(expected, match):
    """expected_value_shape, which the decomposition pass writes, set by hand to nonsense."""
    node = helper.make_node("MultiScaleDeformableAttention", ["value", "shapes", "starts", "loc", "w"], ["y"],
                            name="msda", domain="ai.deformrt", expected_value_shape=expected)
    data = model_bytes([node], [value("value", FLOAT, [1, 25, 2, 3]), value("loc", FLOAT, [1, 4, 2, 2, 2, 2]),
                                value("w", FLOAT, [1, 4, 2, 2, 2])], [value("y")],
                       [init("shapes", np.array([[4, 5], [1, 5]], np.int64)), init("starts", np.array([0, 20], np.int64))],
                       domains=["ai.deformrt"])
    assert "msda" in refused(data, match=match).message


def test_msda_empty_level_reads_zero():
    """A level of 0 x 3 positions covers no keys: its points read 0, the others are unaffected."""
    feeds = msda_feeds(keys=20)
    (y,) = run(msda_model([[4, 5], [0, 3]], [0, 20], keys=20), feeds)
    assert y.shape == (1, 4, 6) and np.isfinite(y).all()
    np.testing.assert_allclose(y, 0.25 * 2, rtol=1e-6)  # two level-0 points of weight 0.25 on ones
# ---- gathers, scatters and the other index operators (issue 9) ------------------------------
# Indices come from the model or the feed: out of range is an INVALID_ARGUMENT naming the node,
# checked before anything is written; nothing is ever read or written out of bounds.

def _index_model(op, data_shape, index_shape, index_elem=INT64, extra=(), **attrs):
    inputs = [value("data", FLOAT, list(data_shape)), value("indices", index_elem, list(index_shape))]
    inputs += [value(name, elem, list(shape)) for name, elem, shape in extra]
    names = ["data", "indices"] + [name for name, _, _ in extra]
    return model_bytes([helper.make_node(op, names, ["y"], name="suspect", **attrs)], inputs, [value("y")], opset=18)


@pytest.mark.parametrize("bad", [3, -4, INT64_MAX, INT64_MIN, 1 << 40])
def test_gather_elements_index_out_of_range(bad):
    data = _index_model("GatherElements", (2, 3), (2, 2), axis=1)
    indices = np.array([[0, 1], [2, bad]], np.int64)
    refused(data, {"data": np.ones((2, 3), np.float32), "indices": indices}, Status.INVALID_ARGUMENT,
            match="suspect (GatherElements): index")


def test_gather_elements_int32_indices_out_of_range_and_bigger_than_data():
    data = _index_model("GatherElements", (2, 3), (2, 2), index_elem=TensorProto.INT32, axis=0)
    refused(data, {"data": np.ones((2, 3), np.float32), "indices": np.array([[0, 1], [2, 0]], np.int32)},
            Status.INVALID_ARGUMENT, match="index 2 is out of range")
    refused(_index_model("GatherElements", (2, 3), (2, 4), axis=0), None, Status.INVALID_MODEL, match="exceed")
    refused(_index_model("GatherElements", (2, 3), (2, 3, 1), axis=0), None, Status.INVALID_MODEL, match="same rank")


@pytest.mark.parametrize("bad", [5, -6, INT64_MIN])
def test_gather_nd_index_out_of_range(bad):
    data = _index_model("GatherND", (5, 4), (3, 2))
    indices = np.array([[0, 0], [4, 3], [bad, 0]], np.int64)
    refused(data, {"data": np.ones((5, 4), np.float32), "indices": indices}, Status.INVALID_ARGUMENT,
            match="suspect (GatherND): index")


def test_gather_nd_bad_tuples_and_batch_dims():
    refused(_index_model("GatherND", (5, 4), (3, 3)), None, Status.INVALID_MODEL, match="do not fit")
    refused(_index_model("GatherND", (5, 4), (3, 1), batch_dims=1), None, Status.INVALID_MODEL, match="must be equal")
    refused(_index_model("GatherND", (5, 4), (5, 1), batch_dims=2), None, Status.INVALID_MODEL, match="batch_dims")


@pytest.mark.parametrize("reduction", ["none", "add", "max"])
@pytest.mark.parametrize("bad", [4, -5, INT64_MAX])
def test_scatter_elements_index_out_of_range(reduction, bad):
    data = _index_model("ScatterElements", (4, 3), (2, 3), extra=[("updates", FLOAT, (2, 3))], axis=0,
                        reduction=reduction)
    indices = np.array([[0, 1, 2], [3, bad, 0]], np.int64)
    refused(data, {"data": np.ones((4, 3), np.float32), "indices": indices, "updates": np.ones((2, 3), np.float32)},
            Status.INVALID_ARGUMENT, match="suspect (ScatterElements): index")


def test_scatter_elements_bad_reduction_and_shapes():
    refused(_index_model("ScatterElements", (4, 3), (2, 3), extra=[("updates", FLOAT, (2, 3))], reduction="xor"),
            None, Status.UNSUPPORTED, match="reduction 'xor'")
    refused(_index_model("ScatterElements", (4, 3), (2, 3), extra=[("updates", FLOAT, (3, 2))]),
            None, Status.INVALID_MODEL, match="same shape")


@pytest.mark.parametrize("bad", [7, -8, INT64_MIN])
def test_scatter_nd_index_out_of_range(bad):
    data = _index_model("ScatterND", (7, 2), (2, 1), extra=[("updates", FLOAT, (2, 2))], reduction="mul")
    refused(data, {"data": np.ones((7, 2), np.float32), "indices": np.array([[6], [bad]], np.int64),
                   "updates": np.ones((2, 2), np.float32)}, Status.INVALID_ARGUMENT, match="suspect (ScatterND): index")
    refused(_index_model("ScatterND", (7, 2), (2, 1), extra=[("updates", FLOAT, (2, 3))]),
            None, Status.INVALID_MODEL, match="updates must have shape")


def test_cumsum_axis_out_of_range_at_run_time():
    data = model_bytes([helper.make_node("CumSum", ["x", "axis"], ["y"], name="suspect")],
                       [value("x", FLOAT, [2, 3]), value("axis", INT64, [])], [value("y")], opset=14)
    for bad in (2, -3, INT64_MAX, INT64_MIN):
        refused(data, {"x": np.ones((2, 3), np.float32), "axis": np.array(bad, np.int64)}, Status.INVALID_ARGUMENT,
                match="suspect (CumSum): axis")


def test_one_hot_hostile_depth_and_indices():
    def one_hot(depth, indices=(2, 3)):
        return model_bytes([helper.make_node("OneHot", ["i", "depth", "v"], ["y"], name="suspect")],
                           [value("i", FLOAT, list(indices))], [value("y")],
                           [init("depth", np.array(depth)), init("v", np.array([0.0, 1.0], np.float32))], opset=11)
    for depth in (0, -3, np.float32(np.nan), 1 << 50):
        refused(one_hot(depth), None, Status.INVALID_MODEL, match="depth")
    # NaN, +-Inf and huge indices give all-off rows (the spec's rule for indices out of range).
    (y,) = run(one_hot(np.int64(3)), {"i": np.array([[np.nan, np.inf, -np.inf], [1e30, -1.0, 2.0]], np.float32)})
    np.testing.assert_array_equal(y, [[[0, 0, 0]] * 3, [[0, 0, 0], [0, 0, 1], [0, 0, 1]]])


def test_trilu_huge_k_and_mod_by_zero():
    data = model_bytes([helper.make_node("Trilu", ["x", "k"], ["y"])], [value("x", FLOAT, [2, 3]), value("k", INT64, [])],
                       [value("y")], opset=14)
    x = np.arange(6, dtype=np.float32).reshape(2, 3) + 1
    for k in (INT64_MAX, INT64_MIN):
        (y,) = run(data, {"x": x, "k": np.array(k, np.int64)})
        np.testing.assert_array_equal(y, np.triu(x, -3 if k < 0 else 4))
    mod = model_bytes([helper.make_node("Mod", ["a", "b"], ["y"])], [value("a", INT64, [4]), value("b", INT64, [4])],
                      [value("y")], opset=13)
    (y,) = run(mod, {"a": np.array([5, INT64_MIN, -7, 3], np.int64), "b": np.array([0, -1, 0, 2], np.int64)})
    np.testing.assert_array_equal(y, [0, 0, 0, 1])  # x mod 0 is 0 (numpy's result), never a trap


def test_einsum_general_loop_work_is_capped():
    """A contraction that is not GEMM-shaped over large dims would loop for hours: refused when
    the plan is made, naming the equation (the same sizes as a matmul run, through the GEMM)."""
    huge = model_bytes([helper.make_node("Einsum", ["a", "b"], ["y"], equation="ij,kl->", name="suspect")],
                       [value("a", FLOAT, [40000, 40000]), value("b", FLOAT, [40000, 40000])], [value("y")], opset=12)
    refused(huge, None, Status.UNSUPPORTED, match="equation 'ij,kl->'")
    data = model_bytes([helper.make_node("Einsum", ["a", "b"], ["y"], equation="ij,jk->ik")],
                       [value("a", FLOAT, [300, 4000]), value("b", FLOAT, [4000, 200])], [value("y")], opset=12)
    a = np.ones((300, 4000), np.float32)
    (y,) = run(data, {"a": a, "b": np.full((4000, 200), 0.5, np.float32)})
    np.testing.assert_array_equal(y, np.full((300, 200), 2000, np.float32))


def test_psroi_pooling_refuses_a_sample_count_that_would_run_for_minutes():
    """sample_per_part near its limit over many RoIs: the plan refuses it by name (the fuzz smoke
    found such a model running for minutes; fuzz/regressions/psroi_pool_sample_count_runs_for_minutes)."""
    nodes = [helper.make_node("DeformablePSROIPooling", ["data", "rois"], ["y"], name="suspect", domain="ai.deformrt",
                              output_dim=2, group_size=2, spatial_scale=1.0, pooled_size=7, sample_per_part=1024)]
    model = model_bytes(nodes, [value("data", FLOAT, [1, 8, 16, 16]), value("rois", FLOAT, [64, 5])], [value("y")], opset=17)
    with pytest.raises(deformrt.DeformRTError, match=r"suspect.*samples per run exceeds the limit"):
        deformrt.InferenceSession(model).run(None, {"data": np.zeros((1, 8, 16, 16), np.float32),
                                                    "rois": np.zeros((64, 5), np.float32)})


def test_psroi_sample_limit_follows_the_environment(monkeypatch):
    """DEFORMRT_PSROI_SAMPLE_LIMIT lowers the cap (the fuzz smoke sets 4,000,000: a debug ASan
    build reads ~1 us a sample); a model under the default limit is refused above it, naming the
    variable (fuzz/regressions/psroi_pool_110x110_bins_44x44_samples_under_asan.onnx)."""
    nodes = [helper.make_node("DeformablePSROIPooling", ["data", "rois"], ["y"], name="suspect", domain="ai.deformrt",
                              output_dim=1, group_size=2, spatial_scale=1.0, pooled_size=110, sample_per_part=44)]
    model = model_bytes(nodes, [value("data", FLOAT, [1, 4, 5, 5]), value("rois", FLOAT, [2, 5])], [value("y")], opset=17)
    feeds = {"data": np.zeros((1, 4, 5, 5), np.float32), "rois": np.zeros((2, 5), np.float32)}
    monkeypatch.setenv("DEFORMRT_PSROI_SAMPLE_LIMIT", "4000000")
    with pytest.raises(deformrt.DeformRTError, match=r"suspect.*46851200 samples per run exceeds the limit of 4000000.*"
                                                      r"DEFORMRT_PSROI_SAMPLE_LIMIT"):
        deformrt.InferenceSession(model).run(None, feeds)
    monkeypatch.setenv("DEFORMRT_PSROI_SAMPLE_LIMIT", "50000000")
    (y,) = deformrt.InferenceSession(model).run(None, feeds)
    assert y.shape == (2, 1, 110, 110) and not y.any()


def test_fused_matmul_written_by_hand_with_a_bad_bias():
    """ai.deformrt FusedMatMul (MatMulBiasFusion's node) in a user's model: a bias that is not
    [N], or none, is refused when the plan is made, naming the node."""
    for bias_shape in ([4], [1, 5]):
        nodes = [helper.make_node("FusedMatMul", ["a", "w", "b"], ["y"], name="suspect", domain="ai.deformrt")]
        bad = model_bytes(nodes, [value("a", FLOAT, [3, 7])], [value("y")],
                          [init("w", np.ones((7, 5), np.float32)), init("b", np.ones(bias_shape, np.float32))], opset=17)
        error = refused(bad, {"a": np.ones((3, 7), np.float32)}, match="bias shape")
        assert "suspect" in error.message, error
    nodes = [helper.make_node("FusedMatMul", ["a", "w"], ["y"], name="suspect", domain="ai.deformrt")]
    missing = model_bytes(nodes, [value("a", FLOAT, [3, 7])], [value("y")], [init("w", np.ones((7, 5), np.float32))], opset=17)
    error = refused(missing, {"a": np.ones((3, 7), np.float32)}, match="(bias)")
    assert "suspect" in error.message, error


def test_channels_last_resize_and_shape_written_by_hand_on_the_wrong_rank():
    """ai.deformrt ChannelsLastResize / ChannelsLastShape (the layout pass's nodes) in a user's
    model on data that is not [N, H, W, C]: refused naming the node, no crash."""
    nodes = [helper.make_node("ChannelsLastResize", ["x", "", "scales"], ["y"], name="suspect", domain="ai.deformrt",
                              mode="linear")]
    bad = model_bytes(nodes, [value("x", FLOAT, [2, 5, 7])], [value("y")],
                      [init("scales", np.array([1, 2, 2], np.float32))], opset=17)
    error = refused(bad, {"x": np.ones((2, 5, 7), np.float32)}, match="rank 4")
    assert "suspect" in error.message, error
    nodes = [helper.make_node("ChannelsLastShape", ["x"], ["y"], name="suspect", domain="ai.deformrt")]
    bad = model_bytes(nodes, [value("x", FLOAT, [2, 5])], [value("y", TensorProto.INT64)], opset=17)
    error = refused(bad, {"x": np.ones((2, 5), np.float32)}, match="rank 4")
    assert "suspect" in error.message, error
    # Channels changed by a linear channels-last resize: refused as the NCHW Resize refuses it.
    nodes = [helper.make_node("ChannelsLastResize", ["x", "", "scales"], ["y"], name="suspect", domain="ai.deformrt",
                              mode="linear")]
    bad = model_bytes(nodes, [value("x", FLOAT, [1, 4, 4, 3])], [value("y")],
                      [init("scales", np.array([1, 2, 2, 2], np.float32))], opset=17)
    error = refused(bad, {"x": np.ones((1, 4, 4, 3), np.float32)}, match="linear resize of axis 1")
    assert "suspect" in error.message, error
