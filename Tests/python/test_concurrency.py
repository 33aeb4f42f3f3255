"""Sessions under threads, through the Python binding (ctypes releases the GIL, so library calls
really overlap): one model shared by 8 sessions on 8 threads matches serial runs bit for bit,
one session called from two threads gives right results, sessions and models close in any
order, and error messages stay with the thread that caused them.
The same properties are checked from C in Tests/c/concurrency.c and, under ThreadSanitizer, in
Tests/DeformRTCoreTests/HostileConcurrencyTests.swift (make test-tsan).
"""
from __future__ import annotations

import ctypes
import os
import threading

import numpy as np

import deformrt
from deformrt import Status, _capi

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODEL = os.path.join(ROOT, "examples", "models", "tiny_dcn.onnx")


def images(count):
    rng = np.random.default_rng(2026)
    return [rng.standard_normal((1, 3, 32, 32)).astype(np.float32) for _ in range(count)]


def on_threads(count, body):
    """Runs body(i) on `count` threads started together; returns exceptions raised."""
    barrier = threading.Barrier(count)
    errors = []

    def wrapper(i):
        barrier.wait()
        try:
            body(i)
        except BaseException as error:  # noqa: BLE001 - reported to the test
            errors.append((i, error))

    threads = [threading.Thread(target=wrapper, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return errors


def test_eight_sessions_on_eight_threads_match_serial_runs_bitwise():
    inputs = images(8)
    with deformrt.InferenceSession(MODEL, threads=2) as serial:
        expected = [serial.run(None, {"image": x})[0] for x in inputs]
    with open(MODEL, "rb") as f:
        data = f.read()
    sessions = [deformrt.InferenceSession(data, threads=2) for _ in range(8)]
    results = {}

    def body(i):
        for round_ in range(5):
            k = (i + round_) % 8
            results[(i, round_)] = (k, sessions[i].run(None, {"image": inputs[k]})[0])

    assert on_threads(8, body) == []
    for k, got in results.values():
        assert got.tobytes() == expected[k].tobytes()
    for s in sessions:
        s.close()


def test_one_session_from_two_threads():
    inputs = images(2)
    with deformrt.InferenceSession(MODEL, threads=2) as session:
        expected = [session.run(None, {"image": x})[0] for x in inputs]

        def body(i):
            for _ in range(10):
                assert session.run(None, {"image": inputs[i]})[0].tobytes() == expected[i].tobytes()

        assert on_threads(2, body) == []


def test_one_raw_session_from_two_threads_serialises_in_the_library():
    # Bypasses the binding's own lock: the library's session lock alone keeps the calls apart.
    with open(MODEL, "rb") as f:
        data = f.read()
    model = ctypes.POINTER(_capi.drt_model)()
    assert _capi.drt_model_load_memory(data, len(data), ctypes.byref(model)) == Status.OK
    session = ctypes.POINTER(_capi.drt_session)()
    assert _capi.drt_session_create(model, None, ctypes.byref(session)) == Status.OK
    _capi.drt_model_free(model)  # the session keeps it alive
    inputs = images(2)

    def run_raw(x):
        shape = (ctypes.c_int64 * 4)(*x.shape)
        tensor = ctypes.POINTER(_capi.drt_tensor)()
        assert _capi.drt_tensor_create_borrowed(1, shape, 4, x.ctypes.data, x.nbytes, ctypes.byref(tensor)) == Status.OK
        names = (ctypes.c_char_p * 1)(b"image")
        tensors = (ctypes.POINTER(_capi.drt_tensor) * 1)(tensor)
        outputs = (ctypes.POINTER(_capi.drt_tensor) * 1)()
        assert _capi.drt_session_run(session, names, tensors, 1, None, 1, outputs) == Status.OK
        data_pointer = ctypes.c_void_p()
        _capi.drt_tensor_data(outputs[0], ctypes.byref(data_pointer))
        result = bytes((ctypes.c_char * 40).from_address(data_pointer.value))
        _capi.drt_tensor_free(outputs[0])
        _capi.drt_tensor_free(tensor)
        return result

    expected = [run_raw(x) for x in inputs]

    def body(i):
        for _ in range(20):
            assert run_raw(inputs[i]) == expected[i]

    assert on_threads(2, body) == []
    _capi.drt_session_free(session)


def test_close_in_any_order_while_other_sessions_run():
    with open(MODEL, "rb") as f:
        data = f.read()
    x = images(1)[0]
    sessions = [deformrt.InferenceSession(data, threads=1) for _ in range(4)]

    def body(i):
        for _ in range(5):
            sessions[i].run(None, {"image": x})
        sessions[i].close()
        sessions[i].close()  # twice is fine

    assert on_threads(4, body) == []


def test_error_messages_are_per_thread():
    def body(i):
        path = f"/nonexistent/thread-{i}.onnx".encode()
        for _ in range(200):
            model = ctypes.POINTER(_capi.drt_model)()
            assert _capi.drt_model_load_file(path, ctypes.byref(model)) == Status.IO
            message = _capi.drt_last_error_message()
            assert path in message, (i, message)

    assert on_threads(4, body) == []
