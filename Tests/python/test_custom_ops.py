"""Custom operators registered from C: the example examples/c/custom_op.c (compiled here) supplies
com.example::SpaceToDepth2 for examples/models/space_to_depth_custom.onnx and must print what
onnxruntime computes for the same graph with ONNX SpaceToDepth (tools/make_custom_op_model.py);
then the contract from ctypes callbacks: opset ranges, reserved and built-in names, duplicate
registration, a callback that returns an error, a shape callback that gives a wrong shape or type,
read-only inputs, lifetime (the op freed before the session runs).

Tolerance: the printed values have 6 decimals; they agree with onnxruntime within 2e-6 (values) and
1e-4 relative (the sum of a few hundred values).
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import subprocess
from ctypes import POINTER, byref, c_void_p

import numpy as np
import onnx
import pytest
from onnx import helper

import deformrt
from deformrt import Status, _capi
from deformrt.session import _check

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LIB = os.environ.get("DEFORMRT_LIBRARY", os.path.join(ROOT, ".build", "release", "libdeformrt.so"))
MODEL = os.path.join(ROOT, "examples", "models", "space_to_depth_custom.onnx")

spec = importlib.util.spec_from_file_location("make_custom_op_model", os.path.join(ROOT, "tools", "make_custom_op_model.py"))
generator = importlib.util.module_from_spec(spec)
spec.loader.exec_module(generator)


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    compiler = os.environ.get("CC", "cc")
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} not installed")
    output = str(tmp_path_factory.mktemp("custom_op") / "custom-op-example")
    library_dir = os.path.dirname(LIB)
    subprocess.run([compiler, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-I", os.path.join(ROOT, "include"),
                    os.path.join(ROOT, "examples", "c", "custom_op.c"), "-L", library_dir, "-ldeformrt", "-lm",
                    f"-Wl,-rpath,{library_dir}", "-o", output], check=True)
    return output


def test_committed_model_is_the_generators():
    assert onnx.load(MODEL).SerializeToString() == generator.build_model().SerializeToString()


@pytest.mark.parametrize("n,h,w", [(2, 8, 6), (1, 2, 2), (3, 10, 14)])
def test_example_matches_onnxruntime_space_to_depth(example, n, h, w):
    ort = pytest.importorskip("onnxruntime")
    result = subprocess.run([example, MODEL, str(n), str(h), str(w)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    x = generator.example_input(n, h, w)
    (expected,) = ort.InferenceSession(generator.reference_model().SerializeToString(),
                                       providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert lines[0] == "shape " + " ".join(map(str, expected.shape))
    assert abs(float(lines[1].split()[1]) - float(expected.astype(np.float64).sum())) <= 1e-4 * max(1.0, abs(expected.sum()))
    np.testing.assert_allclose([float(v) for v in lines[2].split()[1:]], expected.ravel()[:8], atol=2e-6)


def test_example_default_paths_work_from_repo_root(example):
    result = subprocess.run([example], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0 and result.stdout.startswith("shape 2 16 4 3\n"), result.stderr


def test_example_odd_size_is_refused_by_the_shape_callback(example):
    result = subprocess.run([example, MODEL, "1", "7", "6"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "space_to_depth" in result.stderr and "com.example::SpaceToDepth2" in result.stderr
    assert "shape callback returned status 1" in result.stderr


# ---- the contract, from ctypes callbacks ------------------------------------------------------

class Op:
    """A custom operator made from Python callbacks (kept alive with it)."""

    def __init__(self, shape, compute, domain=b"com.example", op_type=b"SpaceToDepth2", since=1, until=1):
        self.shape = _capi.drt_custom_op_shape_fn(shape)
        self.compute = _capi.drt_custom_op_compute_fn(compute)
        self.handle = POINTER(_capi.drt_custom_op)()
        self.status = _capi.drt_custom_op_create(domain, op_type, since, until, self.shape, self.compute, None,
                                                 byref(self.handle))

    def free(self):
        _capi.drt_custom_op_free(self.handle)


def _good_shape(user, n_in, types, shapes, ranks, n_out, max_rank, out_types, out_shapes, out_ranks):
    dims = [shapes[0][i] for i in range(ranks[0])]
    out_types[0] = int(deformrt.ElementType.FLOAT)
    out_ranks[0] = 4
    for i, d in enumerate([dims[0], dims[1] * 4, dims[2] // 2, dims[3] // 2]):
        out_shapes[0][i] = d
    return Status.OK


def _good_compute(user, inputs, n_in, outputs, n_out):
    x = _tensor_array(inputs[0])
    data = c_void_p()
    status = _capi.drt_tensor_mutable_data(outputs[0], byref(data))
    if status != Status.OK:
        return status
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 3, 5, 1, 2, 4).reshape(n, c * 4, h // 2, w // 2)
    ctypes.memmove(data.value, np.ascontiguousarray(y).ctypes.data, y.nbytes)
    return Status.OK


def _tensor_array(tensor) -> np.ndarray:
    dims = (ctypes.c_int64 * 8)()
    rank = ctypes.c_size_t()
    _check(_capi.drt_tensor_shape(tensor, dims, 8, byref(rank)))
    data = c_void_p()
    _check(_capi.drt_tensor_data(tensor, byref(data)))
    shape = tuple(dims[: rank.value])
    count = int(np.prod(shape))
    return np.ctypeslib.as_array((ctypes.c_float * count).from_address(data.value)).reshape(shape).copy()


def _session(model_bytes: bytes, *ops: Op):
    """(status, message, session handle or None)."""
    model = POINTER(_capi.drt_model)()
    _check(_capi.drt_model_load_memory(model_bytes, len(model_bytes), byref(model)))
    options = POINTER(_capi.drt_session_options)()
    _check(_capi.drt_session_options_create(byref(options)))
    for op in ops:
        _check(_capi.drt_session_options_add_custom_op(options, op.handle))
    session = POINTER(_capi.drt_session)()
    status = _capi.drt_session_create(model, options, byref(session))
    message = _capi.drt_last_error_message().decode()
    _capi.drt_session_options_free(options)
    _capi.drt_model_free(model)
    return status, message, (session if status == Status.OK else None)


def _run(session, x: np.ndarray):
    """(status, message, output array or None)."""
    shape = (ctypes.c_int64 * 4)(*x.shape)
    tensor = POINTER(_capi.drt_tensor)()
    _check(_capi.drt_tensor_create(1, shape, 4, x.ctypes.data, x.nbytes, byref(tensor)))
    names = (ctypes.c_char_p * 1)(b"x")
    inputs = (POINTER(_capi.drt_tensor) * 1)(tensor)
    outputs = (POINTER(_capi.drt_tensor) * 1)()
    status = _capi.drt_session_run(session, names, inputs, 1, None, 1, outputs)
    message = _capi.drt_last_error_message().decode()
    _capi.drt_tensor_free(tensor)
    result = None
    if status == Status.OK:
        result = _tensor_array(outputs[0])
        _capi.drt_tensor_free(outputs[0])
    return status, message, result


def _model_bytes(opset: int = 1) -> bytes:
    model = generator.build_model()
    for entry in model.opset_import:
        if entry.domain == "com.example":
            entry.version = opset
    return model.SerializeToString()


def _reference(x: np.ndarray) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(generator.reference_model().SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_python_callbacks_match_onnxruntime_and_op_may_be_freed_first():
    op = Op(_good_shape, _good_compute)
    assert op.status == Status.OK
    status, message, session = _session(_model_bytes(), op)
    op.free()  # the options and the session keep the definition
    assert status == Status.OK, message
    try:
        x = np.random.default_rng(1).standard_normal((3, 3, 6, 10)).astype(np.float32)
        status, message, y = _run(session, x)
        assert status == Status.OK, message
        np.testing.assert_allclose(y, _reference(x), rtol=1e-5, atol=1e-6)
    finally:
        _capi.drt_session_free(session)


def test_opset_outside_the_range_is_unsupported():
    op = Op(_good_shape, _good_compute, since=2, until=5)
    status, message, _ = _session(_model_bytes(opset=1), op)
    assert status == Status.UNSUPPORTED and "SpaceToDepth2" in message
    status, message, session = _session(_model_bytes(opset=5), op)
    assert status == Status.OK, message
    _capi.drt_session_free(session)
    op.free()


@pytest.mark.parametrize("domain,op_type,since,until,text", [
    (b"", b"Mine", 1, 1, "reserved"), (b"ai.onnx", b"Mine", 1, 1, "reserved"), (b"ai.deformrt", b"Mine", 1, 1, "reserved"),
    (b"com.example", b"", 1, 1, "op_type is empty"), (b"com.example", b"X", 0, 1, "opset range"),
    (b"com.example", b"X", 3, 2, "opset range"), (None, b"X", 1, 1, "domain is NULL"),
])
def test_bad_definitions_are_refused(domain, op_type, since, until, text):
    op = Op(_good_shape, _good_compute, domain=domain, op_type=op_type, since=since, until=until)
    assert op.status == Status.INVALID_ARGUMENT
    assert text in _capi.drt_last_error_message().decode()


def test_null_callbacks_and_handles_are_refused():
    handle = POINTER(_capi.drt_custom_op)()
    shape = _capi.drt_custom_op_shape_fn(_good_shape)
    assert _capi.drt_custom_op_create(b"com.example", b"X", 1, 1, shape, _capi.drt_custom_op_compute_fn(), None,
                                      byref(handle)) == Status.INVALID_ARGUMENT
    assert b"compute is NULL" in _capi.drt_last_error_message()
    assert _capi.drt_session_options_add_custom_op(None, None) == Status.INVALID_ARGUMENT
    _capi.drt_custom_op_free(None)


def test_built_in_names_and_duplicates_are_refused_at_session_creation():
    builtin = Op(_good_shape, _good_compute, domain=b"mmcv", op_type=b"MMCVModulatedDeformConv2d")
    assert builtin.status == Status.OK
    status, message, _ = _session(_model_bytes(), Op(_good_shape, _good_compute), builtin)
    assert status == Status.INVALID_ARGUMENT and "built-in" in message
    first, second = Op(_good_shape, _good_compute, until=3), Op(_good_shape, _good_compute, since=3, until=4)
    status, message, _ = _session(_model_bytes(), first, second)
    assert status == Status.INVALID_ARGUMENT and "twice" in message


def _returning(status_code):
    def compute(user, inputs, n_in, outputs, n_out):
        return status_code
    return compute


@pytest.mark.parametrize("code,expected", [(Status.UNSUPPORTED, Status.UNSUPPORTED),
                                           (Status.OUT_OF_MEMORY, Status.OUT_OF_MEMORY),
                                           (42, Status.INVALID_ARGUMENT)])
def test_compute_returning_an_error_fails_the_run_naming_the_node(code, expected):
    op = Op(_good_shape, _returning(code))
    status, message, session = _session(_model_bytes(), op)
    assert status == Status.OK, message
    try:
        x = np.ones((1, 3, 4, 4), np.float32)
        status, message, y = _run(session, x)
        assert status == expected and y is None
        assert "space_to_depth" in message and "compute callback returned status" in message and str(int(code)) in message
        # The session still works with another run (the callback now fails the same way, no crash).
        assert _run(session, x)[0] == expected
    finally:
        _capi.drt_session_free(session)


def _shape_giving(types=None, rank=4, dims=(1, 12, 2, 2), status=Status.OK):
    def shape(user, n_in, in_types, in_shapes, in_ranks, n_out, max_rank, out_types, out_shapes, out_ranks):
        if types is not None:
            out_types[0] = types
        out_ranks[0] = rank
        for i, d in enumerate(dims[: min(rank, max_rank)]):
            out_shapes[0][i] = d
        return status
    return shape


@pytest.mark.parametrize("shape,code,text", [
    (_shape_giving(types=1, dims=(1, -12, 2, 2)), Status.INVALID_ARGUMENT, "dim 1 = -12"),
    (_shape_giving(types=1, rank=17), Status.INVALID_ARGUMENT, "max_rank"),
    (_shape_giving(types=None), Status.INVALID_ARGUMENT, "element type -1"),
    (_shape_giving(types=8), Status.INVALID_ARGUMENT, "string"),
    (_shape_giving(types=1, dims=(1 << 40, 1 << 40, 1, 1)), Status.INVALID_ARGUMENT, "too many elements"),
    (_shape_giving(types=1, status=Status.UNSUPPORTED), Status.UNSUPPORTED, "shape callback returned status 4"),
])
def test_wrong_shapes_from_the_shape_callback_are_refused(shape, code, text):
    op = Op(shape, _good_compute)
    status, message, session = _session(_model_bytes(), op)
    assert status == Status.OK, message  # N, H and W are dynamic: nothing is planned yet
    try:
        status, message, y = _run(session, np.ones((1, 3, 4, 4), np.float32))
        assert status == code and y is None, message
        assert text in message and "space_to_depth" in message, message
    finally:
        _capi.drt_session_free(session)


def test_a_shape_that_disagrees_with_the_next_node_is_an_error_not_a_crash():
    # 1 x 12 x 2 x 2 for a 1 x 3 x 4 x 4 input has the right element count but the compute writes
    # what the shape callback promised; 1 x 16 x 2 x 2 would be right. A too-small promise must not
    # make compute write out of bounds: the output tensor it gets has the promised size.
    seen = []

    def compute(user, inputs, n_in, outputs, n_out):
        size = ctypes.c_size_t()
        _capi.drt_tensor_byte_size(outputs[0], byref(size))
        seen.append(size.value)
        return Status.OK

    op = Op(_shape_giving(types=1, dims=(1, 12, 2, 2)), compute)
    status, message, session = _session(_model_bytes(), op)
    try:
        status, message, y = _run(session, np.ones((1, 3, 4, 4), np.float32))
        assert status == Status.OK and y.shape == (1, 12, 2, 2) and seen == [12 * 4 * 4]
    finally:
        _capi.drt_session_free(session)


def test_inputs_are_read_only():
    def compute(user, inputs, n_in, outputs, n_out):
        data = c_void_p()
        return _capi.drt_tensor_mutable_data(inputs[0], byref(data))

    op = Op(_good_shape, compute)
    status, message, session = _session(_model_bytes(), op)
    try:
        status, message, _ = _run(session, np.ones((1, 3, 4, 4), np.float32))
        assert status == Status.INVALID_ARGUMENT and "compute callback returned status 1" in message
    finally:
        _capi.drt_session_free(session)


def test_model_without_the_op_registered_says_which_op_is_missing():
    with pytest.raises(deformrt.DeformRTError) as error:
        deformrt.InferenceSession(MODEL)
    assert error.value.status == Status.UNSUPPORTED and "(com.example, SpaceToDepth2, opset 1)" in error.value.message


def test_valgrind_custom_op_example_leaks_nothing(tmp_path):
    from test_capi import _DEBUG_LIB, _valgrind
    if not _DEBUG_LIB or shutil.which("valgrind") is None:
        pytest.skip("run by `make test-valgrind` (needs valgrind and the debug library)")
    program = str(tmp_path / "custom-op-example")
    library_dir = os.path.dirname(_DEBUG_LIB)
    subprocess.run([os.environ.get("CC", "cc"), "-std=c99", "-O1", "-g", "-I", os.path.join(ROOT, "include"),
                    os.path.join(ROOT, "examples", "c", "custom_op.c"), "-L", library_dir, "-ldeformrt", "-lm",
                    f"-Wl,-rpath,{library_dir}", "-o", program], check=True)
    result = _valgrind([program, MODEL], library_dir)
    assert result.stdout.startswith("shape 2 16 4 3\n")
    # The refused run (odd size) frees everything too.
    env = dict(os.environ, LD_LIBRARY_PATH=library_dir)
    refused = subprocess.run(["valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite,indirect",
                              "--error-exitcode=99", program, MODEL, "1", "7", "6"], capture_output=True, text=True,
                             timeout=600, env=env)
    assert refused.returncode == 1, refused.stderr[-3000:]
