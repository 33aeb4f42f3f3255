"""The C API contract, from C (Tests/c/*.c, compiled here against the shipped library) and from
ctypes: NULL / freed / foreign handles, _free(NULL), status strings, buffer sizes, free order,
threads, and valgrind memcheck on the C example. (Exported symbols, ldd and the header compiling
as C99 and C++ are checked in test_abi.py.)
"""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

import deformrt
from deformrt import Status, _capi

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LIB = os.environ.get("DEFORMRT_LIBRARY", os.path.join(ROOT, ".build", "release", "libdeformrt.so"))
MODEL = os.path.join(ROOT, "examples", "models", "tiny_dcn.onnx")
C_EXAMPLE = os.path.join(ROOT, "build", "bin", "c-example")


def _compile(source: str, output: str, library_dir: str) -> str:
    compiler = os.environ.get("CC", "cc")
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} not installed")
    subprocess.run([compiler, "-std=c99", "-D_POSIX_C_SOURCE=200809L", "-O1", "-g", "-Wall", "-Wextra", "-Werror",
                    "-pthread", "-I", os.path.join(ROOT, "include"), os.path.join(ROOT, "Tests", "c", source),
                    "-L", library_dir, "-ldeformrt", f"-Wl,-rpath,{library_dir}", "-o", output], check=True)
    return output


@pytest.fixture(scope="module")
def c_programs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("capi")
    library_dir = os.path.dirname(LIB)
    return {name: _compile(f"{name}.c", str(folder / name), library_dir)
            for name in ("capi_contract", "concurrency", "steady_state")}


def _run(command, timeout=300, env=None):
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def test_c_contract_program(c_programs):
    out = _run([c_programs["capi_contract"], MODEL]).stdout
    assert re.search(r"^\d+ checks, 0 failed$", out, re.M), out


def test_c_concurrency_program(c_programs):
    # 8 sessions on 8 threads vs serial (bitwise), one session on 2 threads, model freed while
    # sessions run, thread-local error messages.
    assert "all concurrency checks passed" in _run([c_programs["concurrency"], MODEL]).stdout


def _tool(script):
    import importlib.util
    spec = importlib.util.spec_from_file_location(script, os.path.join(ROOT, "tools", f"{script}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _allocations_per_run(program, model, input_name, shape, threads, *mode):
    out = _run([program, model, input_name, shape, str(threads), *mode]).stdout
    least, most = map(int, re.search(r"allocations per run: (\d+) (\d+)", out).groups())
    return least, most


def test_steady_state_runs_allocate_only_their_outputs(c_programs, tmp_path):
    """After warm-up, a run on one thread makes one heap allocation: the drt_tensor handle of the
    output it returns. No name look-up, array, dictionary, geometry or plan is made per run (output
    buffers come from the plan's pool). On two threads each parallel step adds one small object: the
    box Swift wraps around a closure handed to a worker thread (withoutActuallyEscaping)."""
    assert _allocations_per_run(c_programs["steady_state"], MODEL, "image", "1x3x32x32", 1) == (1, 1)
    least, most = _allocations_per_run(c_programs["steady_state"], MODEL, "image", "1x3x32x32", 2)
    assert least == most, "the count must not change from run to run"
    # A deeper network (convolutions, DCNv2 with Slice and Sigmoid, pooling, Gemm): still one.
    path = _tool("make_resnet_models").write_models(str(tmp_path), ["resnet50_dcnv2"], width_divisor=16,
                                                    blocks="small")["resnet50_dcnv2"]
    assert _allocations_per_run(c_programs["steady_state"], path, "image", "1x3x40x36", 1) == (1, 1)


def _resample_model(path):
    """Resize (linear NCHW and channels-last, nearest from sizes), Pad (reflect, and constant
    from the value input) and broadcast Mul / Add on run-time values (an SE gate, a per-row
    bias): operators whose index tables and broadcast walks are made once per plan."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def init(name, array):
        return numpy_helper.from_array(np.asarray(array), name)

    nodes = [
        helper.make_node("Conv", ["image", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Resize", ["r1", "", "scales"], ["u1"], mode="linear"),
        helper.make_node("Conv", ["u1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c2"], ["pooled"]),
        helper.make_node("Sigmoid", ["pooled"], ["gate"]),
        helper.make_node("Mul", ["c2", "gate"], ["scaled"]),
        helper.make_node("Resize", ["scaled", "", "", "sizes"], ["u2"], mode="nearest"),
        helper.make_node("Pad", ["u2", "pads"], ["p1"], mode="reflect"),
        helper.make_node("Pad", ["p1", "pads", "fill"], ["p2"], mode="constant"),
        helper.make_node("ReduceMean", ["p2", "last"], ["rowmean"], keepdims=1),
        helper.make_node("Add", ["p2", "rowmean"], ["shifted"]),
        helper.make_node("Resize", ["shifted", "", "scales"], ["y"], mode="linear",
                         coordinate_transformation_mode="align_corners"),
    ]
    inits = [init("w1", rng.standard_normal((8, 8, 3, 3)).astype(np.float32)),
             init("w2", rng.standard_normal((8, 8, 3, 3)).astype(np.float32)),
             init("scales", np.array([1, 1, 2, 2], np.float32)), init("sizes", np.array([1, 8, 40, 36], np.int64)),
             init("pads", np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)), init("fill", np.array(0.5, np.float32)),
             init("last", np.array([3], np.int64))]
    graph = helper.make_graph(nodes, "resample", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 8, 10, 9])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return path


def test_steady_state_resize_pad_and_broadcasts_allocate_only_their_outputs(c_programs, tmp_path):
    """Resize, Pad, ReduceMean, broadcasting Add / Mul, Transpose, TopK, Gather, Range, LSTM and
    LayerNormalization once made
    index tables, geometry, strides or packing plans per run (87 allocations per run of the model
    here, 91 of a DBNet, 70 of a CenterNet head); a run now allocates only its output handles."""
    import onnxruntime as ort

    model = _resample_model(str(tmp_path / "resample.onnx"))
    x = np.random.default_rng(1).standard_normal((1, 8, 10, 9)).astype(np.float32)
    (want,) = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"image": x})
    for threads in (1, 2):
        with deformrt.InferenceSession(model, threads=threads) as session:
            for _ in range(2):  # the second run reuses the plan's tables
                (got,) = session.run(None, {"image": x})
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert _allocations_per_run(c_programs["steady_state"], model, "image", "1x8x10x9", 1) == (1, 1)
    least, most = _allocations_per_run(c_programs["steady_state"], model, "image", "1x8x10x9", 2)
    assert least == most, "the count must not change from run to run"
    import onnx
    networks = [("dbnet", _tool("make_dbnet_model").build(0, width=8, inner=16), "image", "1x3x64x64", 1),
                ("crnn", _tool("make_crnn_model").build_crnn(), "image", "1x1x32x64", 1),
                ("centernet", _tool("make_detection_heads").centernet_head(), "feat", "1x8x12x10", 4)]
    for name, proto, input_name, shape, outputs in networks:
        path = str(tmp_path / f"{name}.onnx")
        onnx.save(proto, path)
        assert _allocations_per_run(c_programs["steady_state"], path, input_name, shape, 1) == (outputs, outputs), name
    # An InternImage stage (DCNv3 with LayerNormalization on channels-last maps): 21 before.
    stage = os.path.join(ROOT, "Tests", "vectors", "dcnv3_export", "stage_decomposed.onnx")
    assert _allocations_per_run(c_programs["steady_state"], stage, "image", "2x3x24x32", 1) == (1, 1)


def test_steady_state_runs_into_caller_tensors_allocate_nothing(c_programs):
    """drt_session_run_with_options with run options (the cancellation check) and caller tensors
    for every output: the one allocation per run left is gone."""
    assert _allocations_per_run(c_programs["steady_state"], MODEL, "image", "1x3x32x32", 1, "caller") == (0, 0)


def test_status_string_for_every_code_and_unknown_ones():
    names = [_capi.drt_status_string(code).decode() for code in Status]
    assert names[0] == "ok" and len(set(names)) == len(names) and "unknown status" not in names
    for code in (len(Status), 99, -1, 2**31 - 1):
        assert _capi.drt_status_string(code) == b"unknown status"


def test_free_null_is_a_no_op():
    _capi.drt_model_free(None)
    _capi.drt_session_free(None)
    _capi.drt_session_options_free(None)
    _capi.drt_tensor_free(None)


@pytest.mark.parametrize("call", [
    lambda: _capi.drt_model_input_count(None, ctypes.byref(ctypes.c_size_t())),
    lambda: _capi.drt_model_output_name(None, 0, ctypes.byref(ctypes.c_char_p())),
    lambda: _capi.drt_session_create(None, None, ctypes.byref(ctypes.POINTER(_capi.drt_session)())),
    lambda: _capi.drt_session_run(None, None, None, 0, None, 0, None),
    lambda: _capi.drt_session_options_set_threads(None, 1),
    lambda: _capi.drt_tensor_byte_size(None, ctypes.byref(ctypes.c_size_t())),
    lambda: _capi.drt_model_load_memory(None, 5, ctypes.byref(ctypes.POINTER(_capi.drt_model)())),
    lambda: _capi.drt_model_load_file(None, ctypes.byref(ctypes.POINTER(_capi.drt_model)())),
])
def test_null_handles_from_python(call):
    assert call() == Status.INVALID_ARGUMENT
    assert b"NULL" in _capi.drt_last_error_message()


def test_freed_handle_is_refused():
    with open(MODEL, "rb") as f:
        data = f.read()
    model = ctypes.POINTER(_capi.drt_model)()
    assert _capi.drt_model_load_memory(data, len(data), ctypes.byref(model)) == Status.OK
    _capi.drt_model_free(model)
    count = ctypes.c_size_t(12345)
    assert _capi.drt_model_input_count(model, ctypes.byref(count)) == Status.INVALID_ARGUMENT
    assert b"not a live handle" in _capi.drt_last_error_message()
    assert count.value == 12345  # out parameters untouched on failure


def test_buffer_too_small_reports_the_size():
    model = ctypes.POINTER(_capi.drt_model)()
    assert _capi.drt_model_load_file(MODEL.encode(), ctypes.byref(model)) == Status.OK
    try:
        rank = ctypes.c_size_t()
        assert _capi.drt_model_input_shape(model, 0, None, 0, ctypes.byref(rank)) == Status.BUFFER_TOO_SMALL
        assert rank.value == 4
        dims = (ctypes.c_int64 * 4)()
        assert _capi.drt_model_input_shape(model, 0, dims, 4, ctypes.byref(rank)) == Status.OK
        assert list(dims) == [1, 3, 32, 32]
    finally:
        _capi.drt_model_free(model)


def _valgrind(command, library_dir):
    env = dict(os.environ, LD_LIBRARY_PATH=library_dir)
    result = subprocess.run(["valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite,indirect",
                             "--error-exitcode=99", *command], capture_output=True, text=True, timeout=600, env=env)
    log = result.stderr
    assert result.returncode == 0, f"valgrind exited {result.returncode}:\n{log[-4000:]}"
    for kind in ("definitely lost", "indirectly lost"):
        match = re.search(rf"{kind}: ([\d,]+) bytes", log)
        assert match is None or match.group(1) == "0", f"{kind}: {match.group(1)} bytes\n{log[-4000:]}"
    assert re.search(r"ERROR SUMMARY: 0 errors", log), log[-4000:]
    return result


_DEBUG_LIB = os.environ.get("DEFORMRT_DEBUG_LIBRARY")
needs_valgrind = pytest.mark.skipif(
    not _DEBUG_LIB or shutil.which("valgrind") is None,
    reason="run by `make test-valgrind` (needs valgrind and the debug library: valgrind cannot decode AVX-512)")


@needs_valgrind
def test_valgrind_c_example_leaks_nothing():
    result = _valgrind([C_EXAMPLE, MODEL, os.path.join(ROOT, "examples", "models", "tiny_dcn_input.npy")],
                       os.path.dirname(_DEBUG_LIB))
    assert result.stdout.count("class ") == 3


@needs_valgrind
def test_valgrind_contract_program_leaks_nothing(tmp_path):
    program = _compile("capi_contract.c", str(tmp_path / "capi_contract"), os.path.dirname(_DEBUG_LIB))
    _valgrind([program, MODEL], os.path.dirname(_DEBUG_LIB))
