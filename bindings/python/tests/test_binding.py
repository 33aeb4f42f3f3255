"""Behaviour of the deformrt Python binding against the real libdeformrt.so.

Models are built here with onnx.helper and checked against onnx.reference.ReferenceEvaluator.
Tolerances: Relu, Add and Identity are single IEEE operations per element, so results must be
bit-identical (exact); Conv sums in a different order than the reference, so rtol=1e-4, atol=1e-5.
"""

from __future__ import annotations

import gc
import os
import pathlib
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import deformrt
from deformrt import DeformRTError, ElementType, InferenceSession, Status, _capi, _lib

CONV_RTOL = 1e-4
CONV_ATOL = 1e-5

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
HEADER = REPO_ROOT / "include" / "deformrt.h"


def make_model(nodes, inputs, outputs, initializers=(), extra_opsets=(), check=True):
    graph = helper.make_graph(nodes, "test", inputs, outputs, initializer=list(initializers))
    opsets = [helper.make_opsetid("", 17)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    model = helper.make_model(graph, opset_imports=opsets)
    if check:
        onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="module")
def relu_add():
    """relu = Relu(x); sum = Relu(x) + y, with y broadcast over N, H and W."""
    return make_model(
        [helper.make_node("Relu", ["x"], ["relu"]), helper.make_node("Add", ["relu", "y"], ["sum"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 5]),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 1, 1])],
        [helper.make_tensor_value_info("relu", TensorProto.FLOAT, ["N", 3, 4, 5]),
         helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["N", 3, 4, 5])])


@pytest.fixture(scope="module")
def relu_add_bytes(relu_add):
    return relu_add.SerializeToString()


@pytest.fixture(scope="module")
def conv():
    """y = Relu(Conv(x, W, B)), 3x3, pads 1, stride 2, on odd spatial sizes."""
    rng = np.random.default_rng(7)
    weight = rng.standard_normal((16, 3, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(16).astype(np.float32)
    return make_model(
        [helper.make_node("Conv", ["x", "W", "B"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                          strides=[2, 2]),
         helper.make_node("Relu", ["c"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 9, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16, 5, 4])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B")])


def relu_add_feed(batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((batch, 3, 4, 5)).astype(np.float32),
            "y": rng.standard_normal((1, 3, 1, 1)).astype(np.float32)}


def conv_input(batch=2, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, 3, 9, 7)).astype(np.float32)


def reference(model, feed, output_names=None):
    return ReferenceEvaluator(model).run(output_names, feed)


# ---- library and version ------------------------------------------------------------------

def test_version_matches_header_constants():
    expected = f"{_capi.DRT_VERSION_MAJOR}.{_capi.DRT_VERSION_MINOR}.{_capi.DRT_VERSION_PATCH}"
    assert deformrt.get_version() == expected
    assert deformrt.__version__ == expected


@pytest.mark.skipif(not HEADER.is_file(), reason="needs the repository's include/deformrt.h")
def test_capi_mirrors_every_header_function_and_enum():
    text = re.sub(r"/\*.*?\*/", "", HEADER.read_text(), flags=re.S)
    declarations = re.findall(r"^[\w\s\*]*?\b(drt_\w+)\s*\(([^)]*)\)\s*;", text, flags=re.M)
    assert len(declarations) > 20
    for name, parameters in declarations:
        binding = getattr(_capi, name)
        count = 0 if parameters.strip() in ("", "void") else parameters.count(",") + 1
        assert len(binding.argtypes) == count, name
    enums = (("DRT_ERROR_|DRT_OK", Status), ("DRT_TYPE_", ElementType), ("DRT_GRAPH_OPTIMIZATION_", _capi.GraphOptimization))
    for prefix, enum in enums:
        for constant, value in re.findall(rf"\b((?:{prefix})\w*)\s*=\s*(\d+)", text):
            member = re.sub(r"^DRT_(ERROR_|TYPE_|GRAPH_OPTIMIZATION_)?", "", constant)
            assert enum[member] == int(value), constant


def test_library_override_must_exist(tmp_path):
    missing = tmp_path / "libnothing.so"
    with pytest.raises(_lib.LibraryNotFoundError, match="DEFORMRT_LIBRARY"):
        _lib.locate({"DEFORMRT_LIBRARY": str(missing)})


def test_library_override_that_is_not_a_library(tmp_path):
    fake = tmp_path / "libdeformrt.so"
    fake.write_text("not a shared object")
    with pytest.raises(_lib.LibraryNotFoundError, match="cannot load"):
        _lib.load({"DEFORMRT_LIBRARY": str(fake)})


def test_library_override_is_used(monkeypatch):
    path = os.environ.get("DEFORMRT_LIBRARY")
    if not path:
        pytest.skip("DEFORMRT_LIBRARY is not set")
    assert _lib.locate() == path
    assert _capi.library._name == path


# ---- metadata -----------------------------------------------------------------------------

def test_metadata_names_types_and_shapes(relu_add_bytes):
    session = InferenceSession(relu_add_bytes)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    assert [(n.name, n.type, n.shape) for n in inputs] == [
        ("x", "tensor(float)", ["N", 3, 4, 5]), ("y", "tensor(float)", [1, 3, 1, 1])]
    assert [(n.name, n.type, n.shape) for n in outputs] == [
        ("relu", "tensor(float)", ["N", 3, 4, 5]), ("sum", "tensor(float)", ["N", 3, 4, 5])]
    assert "name='x'" in repr(inputs[0])


def test_metadata_missing_dims_missing_shape_and_int64():
    model = make_model(
        [helper.make_node("Identity", ["a"], ["a_out"]), helper.make_node("Identity", ["b"], ["b_out"])],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 3, None, 5]),
         helper.make_tensor_value_info("b", TensorProto.INT64, None)],
        [helper.make_tensor_value_info("a_out", TensorProto.FLOAT, ["batch", 3, None, 5]),
         helper.make_tensor_value_info("b_out", TensorProto.INT64, None)],
        check=False)  # the checker wants a shape on every input; ONNX itself does not
    session = InferenceSession(model.SerializeToString())
    assert [(n.name, n.type, n.shape) for n in session.get_inputs()] == [
        ("a", "tensor(float)", ["batch", 3, None, 5]), ("b", "tensor(int64)", [])]
    assert [(n.name, n.type) for n in session.get_outputs()] == [
        ("a_out", "tensor(float)"), ("b_out", "tensor(int64)")]


# ---- running ------------------------------------------------------------------------------

def test_run_all_outputs_matches_reference(relu_add, relu_add_bytes):
    feed = relu_add_feed()
    outputs = InferenceSession(relu_add_bytes).run(None, feed)
    expected = reference(relu_add, feed)
    assert len(outputs) == 2
    for got, want in zip(outputs, expected):
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_run_named_outputs_in_requested_order(relu_add, relu_add_bytes):
    feed = relu_add_feed()
    session = InferenceSession(relu_add_bytes)
    relu, total = reference(relu_add, feed)
    (only_sum,) = session.run(["sum"], feed)
    np.testing.assert_array_equal(only_sum, total)
    got_sum, got_relu = session.run(["sum", "relu"], feed)
    np.testing.assert_array_equal(got_sum, total)
    np.testing.assert_array_equal(got_relu, relu)


def test_empty_output_list_means_all_outputs(relu_add, relu_add_bytes):
    feed = relu_add_feed()
    outputs = InferenceSession(relu_add_bytes).run([], feed)
    assert len(outputs) == 2
    for got, want in zip(outputs, reference(relu_add, feed)):
        np.testing.assert_array_equal(got, want)


def test_same_output_twice(relu_add, relu_add_bytes):
    feed = relu_add_feed()
    first, second = InferenceSession(relu_add_bytes).run(["sum", "sum"], feed)
    np.testing.assert_array_equal(first, reference(relu_add, feed)[1])
    np.testing.assert_array_equal(second, first)


def test_zero_batch(relu_add_bytes):
    feed = relu_add_feed(batch=0)
    relu, total = InferenceSession(relu_add_bytes).run(None, feed)
    assert relu.shape == total.shape == (0, 3, 4, 5)


def test_conv_matches_reference(conv):
    session = InferenceSession(conv.SerializeToString())
    for batch in (1, 3):
        x = conv_input(batch, seed=batch)
        (got,) = session.run(None, {"x": x})
        (want,) = reference(conv, {"x": x})
        assert got.shape == (batch, 16, 5, 4)
        np.testing.assert_allclose(got, want, rtol=CONV_RTOL, atol=CONV_ATOL)


def test_new_batch_sizes_replan(relu_add, relu_add_bytes):
    session = InferenceSession(relu_add_bytes)
    for batch in (1, 4, 2, 1):
        feed = relu_add_feed(batch, seed=batch)
        for got, want in zip(session.run(None, feed), reference(relu_add, feed)):
            np.testing.assert_array_equal(got, want)


def test_int64_tensors_round_trip():
    model = make_model(
        [helper.make_node("Identity", ["ids"], ["same"])],
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N"])],
        [helper.make_tensor_value_info("same", TensorProto.INT64, ["N"])])
    ids = np.array([-(2**62), -1, 0, 1, 2**62], dtype=np.int64)
    (got,) = InferenceSession(model.SerializeToString()).run(None, {"ids": ids})
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, ids)


def test_outputs_are_independent_arrays(relu_add_bytes):
    """Outputs own the library's memory (no copy) yet stay independent of later runs and of the
    session's lifetime."""
    session = InferenceSession(relu_add_bytes)
    feed = relu_add_feed()
    first = session.run(["relu"], feed)[0]
    kept = first.copy()
    assert first.flags.writeable and first.flags.c_contiguous
    first[...] = 123.0
    second = session.run(["relu"], feed)[0]
    np.testing.assert_array_equal(second, kept)
    third = session.run(["relu"], feed)[0]  # buffers are reused only once released
    np.testing.assert_array_equal(third, kept)
    assert len({first.ctypes.data, second.ctypes.data, third.ctypes.data}) == 3
    session.close()
    np.testing.assert_array_equal(first, np.full_like(kept, 123.0))
    np.testing.assert_array_equal(second, kept)


def test_inputs_are_not_modified(relu_add_bytes):
    feed = relu_add_feed()
    before = {name: value.copy() for name, value in feed.items()}
    InferenceSession(relu_add_bytes).run(None, feed)
    for name in feed:
        np.testing.assert_array_equal(feed[name], before[name])


# ---- zero copy ----------------------------------------------------------------------------

@pytest.fixture
def borrowed_pointers(monkeypatch):
    """Records the data pointer of every tensor the binding hands to the library."""
    pointers = []
    original = _capi.drt_tensor_create_borrowed

    def spy(element_type, shape, rank, data, data_size, out_tensor):
        pointers.append(data)
        return original(element_type, shape, rank, data, data_size, out_tensor)

    monkeypatch.setattr(_capi, "drt_tensor_create_borrowed", spy)
    return pointers


def test_contiguous_input_of_declared_type_is_borrowed_not_copied(relu_add, relu_add_bytes,
                                                                  borrowed_pointers):
    feed = relu_add_feed()
    outputs = InferenceSession(relu_add_bytes).run(None, feed)
    assert borrowed_pointers == [feed["x"].ctypes.data, feed["y"].ctypes.data]
    for got, want in zip(outputs, reference(relu_add, feed)):
        np.testing.assert_array_equal(got, want)


def test_non_contiguous_or_other_dtype_input_is_converted(relu_add, relu_add_bytes,
                                                          borrowed_pointers):
    wide = np.random.default_rng(3).standard_normal((2, 3, 4, 10)).astype(np.float32)
    x = wide[:, :, :, ::2]  # strided view
    y = np.array([0.5, -1.0, 2.0], dtype=np.float16).reshape(1, 3, 1, 1)  # safe cast to float32
    assert not x.flags.c_contiguous
    outputs = InferenceSession(relu_add_bytes).run(None, {"x": x, "y": y})
    assert borrowed_pointers[0] != x.ctypes.data and borrowed_pointers[1] != y.ctypes.data
    expected = reference(relu_add, {"x": np.ascontiguousarray(x), "y": y.astype(np.float32)})
    for got, want in zip(outputs, expected):
        np.testing.assert_array_equal(got, want)


def test_big_endian_and_list_inputs_are_converted(relu_add, relu_add_bytes):
    feed = relu_add_feed()
    x_big_endian = feed["x"].astype(">f4")
    y_list = feed["y"].tolist()
    outputs = InferenceSession(relu_add_bytes).run(None, {"x": x_big_endian, "y": y_list})
    for got, want in zip(outputs, reference(relu_add, feed)):
        np.testing.assert_array_equal(got, want)


# ---- bad inputs to run --------------------------------------------------------------------

def expect_error(status, function, *args, **kwargs) -> DeformRTError:
    with pytest.raises(DeformRTError) as info:
        function(*args, **kwargs)
    assert info.value.status == status, str(info.value)
    assert info.value.message
    return info.value


def test_wrong_input_name(relu_add_bytes):
    feed = relu_add_feed()
    feed["not_an_input"] = feed.pop("y")
    error = expect_error(Status.INVALID_ARGUMENT, InferenceSession(relu_add_bytes).run, None, feed)
    assert "not_an_input" in error.message


def test_missing_input(relu_add_bytes):
    feed = relu_add_feed()
    del feed["y"]
    error = expect_error(Status.INVALID_ARGUMENT, InferenceSession(relu_add_bytes).run, None, feed)
    assert "'y'" in error.message or '"y"' in error.message or " y" in error.message


def test_input_fed_twice_or_extra_is_refused(relu_add_bytes):
    feed = relu_add_feed()
    feed["extra"] = feed["y"]
    expect_error(Status.INVALID_ARGUMENT, InferenceSession(relu_add_bytes).run, None, feed)


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.int64])
def test_wrong_dtype_that_cannot_be_cast_safely(relu_add_bytes, dtype):
    feed = relu_add_feed()
    feed["x"] = feed["x"].astype(dtype)
    error = expect_error(Status.INVALID_ARGUMENT, InferenceSession(relu_add_bytes).run, None, feed)
    assert "'x'" in error.message and "expected tensor(float)" in error.message


@pytest.mark.parametrize("shape", [(2, 3, 4, 6), (2, 4, 4, 5), (3, 4, 5), (2, 3, 4, 5, 1), ()])
def test_wrong_shape_or_rank(relu_add_bytes, shape):
    feed = relu_add_feed()
    feed["x"] = np.zeros(shape, dtype=np.float32)
    expect_error(Status.INVALID_ARGUMENT, InferenceSession(relu_add_bytes).run, None, feed)


def test_unknown_output_name(relu_add_bytes):
    error = expect_error(Status.INVALID_ARGUMENT, InferenceSession(relu_add_bytes).run,
                         ["sum", "no_such_output"], relu_add_feed())
    assert "no_such_output" in error.message


def test_names_with_nul_and_wrong_argument_types(relu_add_bytes):
    session = InferenceSession(relu_add_bytes)
    feed = relu_add_feed()
    expect_error(Status.INVALID_ARGUMENT, session.run, ["su\0m"], feed)
    expect_error(Status.INVALID_ARGUMENT, session.run, None, {"x\0": feed["x"], "y": feed["y"]})
    with pytest.raises(TypeError):
        session.run("sum", feed)
    with pytest.raises(TypeError):
        session.run(None, [feed["x"], feed["y"]])
    with pytest.raises(TypeError):
        session.run(None, {1: feed["x"]})


def test_session_still_works_after_errors(relu_add, relu_add_bytes):
    session = InferenceSession(relu_add_bytes)
    feed = relu_add_feed()
    expect_error(Status.INVALID_ARGUMENT, session.run, ["nope"], feed)
    expect_error(Status.INVALID_ARGUMENT, session.run, None, {"x": feed["x"]})
    for got, want in zip(session.run(None, feed), reference(relu_add, feed)):
        np.testing.assert_array_equal(got, want)


# ---- loading ------------------------------------------------------------------------------

def test_bytes_bytearray_memoryview_str_and_pathlike_load_the_same_model(relu_add, relu_add_bytes,
                                                                        tmp_path):
    path = tmp_path / "relu_add.onnx"
    path.write_bytes(relu_add_bytes)
    feed = relu_add_feed()
    expected = reference(relu_add, feed)
    for source in (relu_add_bytes, bytearray(relu_add_bytes), memoryview(relu_add_bytes),
                   str(path), path):
        with InferenceSession(source) as session:
            assert [n.name for n in session.get_inputs()] == ["x", "y"]
            for got, want in zip(session.run(None, feed), expected):
                np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("garbage", [b"this is not an ONNX model", b"\xff" * 100,
                                     bytes(np.random.default_rng(1).integers(0, 256, 4096, np.uint8))],
                         ids=["text", "0xff", "random"])
def test_garbage_bytes(garbage):
    expect_error(Status.INVALID_MODEL, InferenceSession, garbage)


def test_empty_bytes_are_a_bad_size():
    expect_error(Status.INVALID_ARGUMENT, InferenceSession, b"")


def test_missing_file(tmp_path):
    error = expect_error(Status.IO, InferenceSession, tmp_path / "no_such_model.onnx")
    assert "no_such_model.onnx" in error.message


def test_directory_instead_of_file(tmp_path):
    expect_error(Status.IO, InferenceSession, tmp_path)


def test_truncated_file(conv, tmp_path):
    data = conv.SerializeToString()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) // 2])  # cuts through the weight initializer
    expect_error(Status.INVALID_MODEL, InferenceSession, path)


def test_path_with_nul_and_wrong_type(tmp_path):
    expect_error(Status.INVALID_ARGUMENT, InferenceSession, str(tmp_path / "a\0b.onnx"))
    with pytest.raises(TypeError):
        InferenceSession(42)


def test_unsupported_op_is_named():
    model = make_model(
        [helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        extra_opsets=[("com.example", 1)], check=False)
    error = expect_error(Status.UNSUPPORTED, InferenceSession, model.SerializeToString())
    assert "Frobnicate" in error.message


# ---- lifetime -----------------------------------------------------------------------------

def test_context_manager_and_close_twice(relu_add_bytes):
    with InferenceSession(relu_add_bytes) as session:
        session.run(None, relu_add_feed())
    expect_error(Status.INVALID_ARGUMENT, session.run, None, relu_add_feed())
    session.close()
    session.close()
    assert [n.name for n in session.get_inputs()] == ["x", "y"]


def test_sessions_freed_by_garbage_collection(relu_add_bytes):
    for _ in range(50):
        session = InferenceSession(relu_add_bytes)
        session.run(None, relu_add_feed())
        del session
    gc.collect()


def test_concurrent_runs_on_one_session(conv):
    session = InferenceSession(conv.SerializeToString(), threads=2)
    inputs = [conv_input(2, seed=seed) for seed in range(8)]
    expected = [session.run(None, {"x": x})[0] for x in inputs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda x: session.run(None, {"x": x})[0], inputs))
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)


# ---- options ------------------------------------------------------------------------------

@pytest.mark.parametrize("threads", [None, 0, 1, 2, 256])
def test_threads_argument(conv, threads):
    x = conv_input(2)
    (got,) = InferenceSession(conv.SerializeToString(), threads=threads).run(None, {"x": x})
    (want,) = reference(conv, {"x": x})
    np.testing.assert_allclose(got, want, rtol=CONV_RTOL, atol=CONV_ATOL)


@pytest.mark.parametrize("threads", [-1, 257, 2**40])
def test_threads_out_of_range(relu_add_bytes, threads):
    expect_error(Status.INVALID_ARGUMENT, InferenceSession, relu_add_bytes, threads=threads)


def test_threads_of_wrong_type(relu_add_bytes):
    with pytest.raises(TypeError):
        InferenceSession(relu_add_bytes, threads="2")
    with pytest.raises(TypeError):
        InferenceSession(relu_add_bytes, threads=1.5)


def test_memory_limit(conv):
    x = conv_input(2)
    (got,) = InferenceSession(conv.SerializeToString(), memory_limit=1 << 30).run(None, {"x": x})
    np.testing.assert_allclose(got, reference(conv, {"x": x})[0], rtol=CONV_RTOL, atol=CONV_ATOL)
    with pytest.raises(DeformRTError) as info:
        InferenceSession(conv.SerializeToString(), memory_limit=1).run(None, {"x": x})
    assert info.value.status == Status.OUT_OF_MEMORY
    expect_error(Status.INVALID_ARGUMENT, InferenceSession, conv.SerializeToString(), memory_limit=-1)


# ---- errors -------------------------------------------------------------------------------

def test_error_carries_status_and_the_library_message(relu_add_bytes):
    session = InferenceSession(relu_add_bytes)
    with pytest.raises(DeformRTError) as info:
        session.run(["no_such_output"], relu_add_feed())
    error = info.value
    assert isinstance(error, RuntimeError)
    assert error.status is Status.INVALID_ARGUMENT
    assert error.message == _capi.drt_last_error_message().decode("utf-8")
    assert error.args == (Status.INVALID_ARGUMENT, error.message)
    assert "INVALID_ARGUMENT" in str(error) and error.message in str(error)


def test_status_strings_are_static_text():
    for status in Status:
        assert _capi.drt_status_string(status)
    assert _capi.drt_status_string(9999) == b"unknown status"
