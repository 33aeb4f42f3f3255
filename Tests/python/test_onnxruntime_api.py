"""The onnxruntime-compatible Python API: one unmodified onnxruntime-style script
(examples/python/onnxruntime_style.py) runs on onnxruntime and on DeformRT and writes the same
things; then each part on its own against onnxruntime: NodeArg shapes with symbolic dims, model
metadata, providers, options, RunOptions.terminate from another thread, extra (intermediate)
outputs at every optimisation level, type hints and the version.

Tolerances: outputs of float32 convolution chains agree with onnxruntime within rtol 1e-4,
atol 1e-5 (summation order differs); everything else is compared exactly.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import deformrt
from deformrt import Status

ort = pytest.importorskip("onnxruntime")

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(ROOT, "examples", "python", "onnxruntime_style.py")
RTOL, ATOL = 1e-4, 1e-5


def _conv_chain_model(depth: int = 24, channels: int = 16, metadata: bool = True) -> bytes:
    """N x 3 x 32 x 32 -> Conv/Relu chain -> GlobalAveragePool ('features') -> Gemm -> Softmax
    ('probabilities'). Long enough at batch 64 that a run can be stopped while it runs."""
    rng = np.random.default_rng(11)
    inits = [numpy_helper.from_array((rng.standard_normal((channels, 3, 3, 3)) * 0.3).astype(np.float32), "w0"),
             numpy_helper.from_array((rng.standard_normal(channels) * 0.1).astype(np.float32), "b0")]
    nodes = [helper.make_node("Conv", ["image", "w0", "b0"], ["c0"], pads=[1, 1, 1, 1], name="conv0"),
             helper.make_node("Relu", ["c0"], ["r0"], name="relu0")]
    previous = "r0"
    for i in range(1, depth):
        inits.append(numpy_helper.from_array(
            (rng.standard_normal((channels, channels, 3, 3)) * (1.0 / np.sqrt(channels * 9))).astype(np.float32), f"w{i}"))
        inits.append(numpy_helper.from_array((rng.standard_normal(channels) * 0.05).astype(np.float32), f"b{i}"))
        nodes.append(helper.make_node("Conv", [previous, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1], name=f"conv{i}"))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"))
        previous = f"r{i}"
    inits.append(numpy_helper.from_array(rng.standard_normal((channels, 10)).astype(np.float32), "fc_w"))
    inits.append(numpy_helper.from_array(rng.standard_normal(10).astype(np.float32), "fc_b"))
    nodes += [helper.make_node("GlobalAveragePool", [previous], ["features"], name="gap"),
              helper.make_node("Flatten", ["features"], ["flat"], name="flatten"),
              helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc"),
              helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1, name="softmax")]
    graph = helper.make_graph(
        nodes, "conv_chain",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 32, 32])],
        # (onnxruntime fills in declared-unknown output dims from its shape inference; DeformRT reports
        # what the file declares, so the script's model declares them.)
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", channels, 1, 1]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        inits, doc_string="a chain of 3x3 convolutions")
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="deformrt-tests",
                              producer_version="1.2", domain="ai.deformrt.tests", model_version=7,
                              doc_string="test model for the onnxruntime-compatible API")
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, {"author": "tests", "labels": "a,b,c", "empty": ""})
    return model.SerializeToString()


@pytest.fixture(scope="module")
def chain_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ort_api")
    path = folder / "chain.onnx"
    path.write_bytes(_conv_chain_model())
    image = np.random.default_rng(3).standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.save(folder / "image.npy", image)
    return str(path), str(folder / "image.npy"), folder


def _run_script(module: str, model: str, image: str, result: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "bindings", "python", "src"),
                                                       os.environ.get("PYTHONPATH", "")]))
    completed = subprocess.run([sys.executable, SCRIPT, module, model, image, result], capture_output=True,
                               text=True, timeout=300, env=env)
    assert completed.returncode == 0, f"{module}:\n{completed.stdout}\n{completed.stderr}"
    with np.load(result) as data:
        return {key: data[key] for key in data.files}


def test_the_same_onnxruntime_script_runs_on_both(chain_model):
    model, image, folder = chain_model
    expected = _run_script("onnxruntime", model, image, str(folder / "ort.npz"))
    actual = _run_script("deformrt", model, image, str(folder / "drt.npz"))
    assert sorted(actual) == sorted(expected)
    described = json.loads(str(actual.pop("describe")))
    assert described == json.loads(str(expected.pop("describe")))
    # What both say, spelled out (so that a change in both cannot pass unnoticed).
    assert described["inputs"] == [["image", "tensor(float)", ["N", 3, 32, 32]]]
    assert described["outputs"] == [["features", "tensor(float)", ["N", 16, 1, 1]],
                                    ["probabilities", "tensor(float)", ["N", 10]]]
    assert described["meta"]["custom_metadata_map"] == {"author": "tests", "labels": "a,b,c", "empty": ""}
    assert described["meta"]["version"] == 7 and described["meta"]["graph_name"] == "conv_chain"
    assert described["terminated_before"] == described["terminated_during"] == "raised"
    assert described["terminated_quickly"]
    for key, value in expected.items():
        np.testing.assert_allclose(actual[key], value, rtol=RTOL, atol=ATOL, err_msg=key)


def test_model_without_metadata_reports_what_onnxruntime_does():
    model = onnx.load_from_string(_conv_chain_model(depth=1, metadata=False))
    model.ClearField("producer_name")
    model.ClearField("producer_version")
    model.ClearField("domain")
    model.ClearField("doc_string")
    model.ClearField("model_version")
    model.graph.ClearField("doc_string")
    data = model.SerializeToString()
    fields = ("producer_name", "graph_name", "domain", "description", "version", "custom_metadata_map")
    ours = deformrt.InferenceSession(data).get_modelmeta()
    theirs = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).get_modelmeta()
    assert {f: getattr(ours, f) for f in fields} == {f: getattr(theirs, f) for f in fields}
    assert ours.version == 2**63 - 1  # onnxruntime's "no version"
    assert ours.custom_metadata_map == {} and ours.producer_name == ""


def test_metadata_strings_are_unicode_and_graph_description_is_read():
    model = onnx.load_from_string(_conv_chain_model(depth=1))
    helper.set_model_props(model, {"ключ": "значение ✓", "k": "v" * 5000})
    session = deformrt.InferenceSession(model.SerializeToString())
    meta = session.get_modelmeta()
    assert meta.custom_metadata_map == {"ключ": "значение ✓", "k": "v" * 5000}
    assert meta.graph_description == "a chain of 3x3 convolutions"
    assert meta.producer_version == "1.2" and meta.domain == "ai.deformrt.tests"


def test_repeated_metadata_key_keeps_its_last_value_like_onnxruntime():
    model = onnx.load_from_string(_conv_chain_model(depth=1))
    entry = model.metadata_props.add()
    entry.key, entry.value = "author", "someone else"
    data = model.SerializeToString()
    theirs = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    ours = deformrt.InferenceSession(data).get_modelmeta().custom_metadata_map
    assert ours == theirs == {"author": "someone else", "labels": "a,b,c", "empty": ""}
    assert list(ours) == ["author", "labels", "empty"]  # the first place, the last value


def test_node_arg_shapes_match_onnxruntime_for_named_unnamed_and_fixed_dims(onnx_case):
    data = onnx_case.model(
        [helper.make_node("Add", ["a", "b"], ["c"])],
        [onnx_case.value("a", np.float32, ["batch", None, 4]), onnx_case.value("b", np.float32, [1, "seq", 4])],
        [onnx_case.value("c", np.float32, ["batch", "seq", 4])])
    ours = deformrt.InferenceSession(data)
    theirs = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    for mine, other in [(ours.get_inputs(), theirs.get_inputs()), (ours.get_outputs(), theirs.get_outputs())]:
        assert [(n.name, n.type, n.shape) for n in mine] == [(n.name, n.type, n.shape) for n in other]
    assert ours.get_overridable_initializers() == []


def test_providers_checked(chain_model):
    model = chain_model[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for providers in (["CPUExecutionProvider"], ["DeformRTExecutionProvider"],
                          [("CPUExecutionProvider", {"arena_extend_strategy": "kSameAsRequested"})]):
            assert deformrt.InferenceSession(model, providers=providers).get_providers()
    with pytest.warns(UserWarning, match="CUDAExecutionProvider"):
        deformrt.InferenceSession(model, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(ValueError, match="unknown execution provider 'CPUExecutionProvidr'"):
        deformrt.InferenceSession(model, providers=["CPUExecutionProvidr"])
    with pytest.raises(ValueError, match="same length"):
        deformrt.InferenceSession(model, providers=["CPUExecutionProvider"], provider_options=[{}, {}])
    with pytest.raises(TypeError):
        deformrt.InferenceSession(model, providers="CPUExecutionProvider")
    with pytest.raises(TypeError):
        deformrt.InferenceSession(model, providers=[("CPUExecutionProvider", "not a dict")])
    assert deformrt.get_available_providers() == ["DeformRTExecutionProvider", "CPUExecutionProvider"]
    assert deformrt.get_device() == "CPU"
    session = deformrt.InferenceSession(model)
    assert session.get_provider_options() == {"DeformRTExecutionProvider": {}, "CPUExecutionProvider": {}}


@pytest.mark.parametrize("level", [-1, 5, 2.0, True, None])
def test_bad_log_severity_level_is_refused(chain_model, level):
    options = deformrt.SessionOptions()
    options.log_severity_level = level
    with pytest.raises(deformrt.DeformRTError, match="log_severity_level"):
        deformrt.InferenceSession(chain_model[0], options)


def test_session_options_accepts_onnxruntime_settings(chain_model):
    options = deformrt.SessionOptions()
    options.execution_mode = deformrt.ExecutionMode.ORT_SEQUENTIAL
    options.enable_mem_pattern = False
    options.enable_cpu_mem_arena = False
    options.log_severity_level = 0
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    session = deformrt.InferenceSession(chain_model[0], sess_options=options)
    assert session.get_session_options() is options
    with pytest.raises(deformrt.DeformRTError):
        options.get_session_config_entry("no.such.entry")


def test_run_options_terminate_from_another_thread_stops_the_run(chain_model):
    session = deformrt.InferenceSession(chain_model[0], threads=2)
    image = np.load(chain_model[1])
    batch = np.repeat(image, 64, axis=0)
    started = time.perf_counter()
    full = session.run(None, {"image": batch})
    full_time = time.perf_counter() - started
    options = deformrt.RunOptions()
    stopper = threading.Timer(full_time / 10, lambda: setattr(options, "terminate", True))
    stopper.start()
    started = time.perf_counter()
    with pytest.raises(deformrt.DeformRTError) as error:
        session.run(None, {"image": batch}, options)
    cancelled_time = time.perf_counter() - started
    stopper.join()
    assert error.value.status == Status.CANCELLED and "terminate" in error.value.message
    assert cancelled_time < full_time * 0.7, (cancelled_time, full_time)
    # Still set: the next run stops at once. Cleared: it runs and agrees with the first.
    assert options.terminate
    with pytest.raises(deformrt.DeformRTError):
        session.run(None, {"image": image}, options)
    options.terminate = False
    again = session.run(None, {"image": batch}, options)
    for a, b in zip(full, again):
        np.testing.assert_array_equal(a, b)


def test_one_run_options_serves_several_sessions_and_threads(chain_model):
    sessions = [deformrt.InferenceSession(chain_model[0], threads=1) for _ in range(3)]
    options = deformrt.RunOptions()
    image = np.repeat(np.load(chain_model[1]), 32, axis=0)
    outcomes = []

    def work(session):
        try:
            session.run(None, {"image": image}, options)
            outcomes.append("ran")
        except deformrt.DeformRTError as error:
            outcomes.append(error.status)

    threads = [threading.Thread(target=work, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    time.sleep(0.02)
    options.terminate = True
    for t in threads:
        t.join()
    assert len(outcomes) == 3 and set(outcomes) <= {"ran", Status.CANCELLED}
    assert Status.CANCELLED in outcomes


def test_run_options_accepts_onnxruntime_settings(chain_model):
    options = deformrt.RunOptions()
    options.log_severity_level = 0
    options.logid = "request-7"
    options.run_tag = "tag"
    options.only_execute_path_to_fetches = True
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    assert options.get_run_config_entry("memory.enable_memory_arena_shrinkage") == "cpu:0"
    with pytest.raises(deformrt.DeformRTError):
        options.get_run_config_entry("no.such.entry")
    session = deformrt.InferenceSession(chain_model[0])
    image = np.load(chain_model[1])
    (probabilities,) = session.run(["probabilities"], {"image": image}, options)
    np.testing.assert_array_equal(probabilities, session.run(["probabilities"], {"image": image})[0])


def test_run_options_type_is_checked(chain_model):
    session = deformrt.InferenceSession(chain_model[0])
    with pytest.raises(TypeError, match="RunOptions"):
        session.run(None, {"image": np.load(chain_model[1])}, object())


@pytest.mark.parametrize("level", list(deformrt.GraphOptimizationLevel))
def test_extra_outputs_match_onnxruntime_at_every_level(level, onnx_case):
    """Values the passes would fuse away (a convolution before its BatchNormalization, Relu and
    residual Add; a channels-last intermediate) come out as onnxruntime computes them."""
    rng = np.random.default_rng(5)
    c = 16
    inits = {
        "w1": (rng.standard_normal((c, 5, 3, 3)) * 0.2).astype(np.float32),
        "w2": (rng.standard_normal((c, c, 3, 3)) * 0.1).astype(np.float32),
        "scale": rng.uniform(0.5, 1.5, c).astype(np.float32), "bias": rng.standard_normal(c).astype(np.float32),
        "mean": rng.standard_normal(c).astype(np.float32), "var": rng.uniform(0.5, 2.0, c).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["conv1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["conv1", "scale", "bias", "mean", "var"], ["bn1"]),
        helper.make_node("Relu", ["bn1"], ["relu1"]),
        helper.make_node("Conv", ["relu1", "w2"], ["conv2"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["conv2", "relu1"], ["sum"]),
        helper.make_node("Relu", ["sum"], ["y"]),
    ]
    data = onnx_case.model(nodes, [onnx_case.value("x", np.float32, ["N", 5, 9, 7])], ["y"], inits)
    extras = ["conv1", "bn1", "conv2", "sum"]
    options = deformrt.SessionOptions()
    options.graph_optimization_level = level
    options.extra_outputs = extras
    session = deformrt.InferenceSession(data, options)
    x = rng.standard_normal((3, 5, 9, 7)).astype(np.float32)
    ours = session.run(["y", *extras], {"x": x})
    model = onnx.load_from_string(data)
    for name in extras:
        model.graph.output.append(helper.make_empty_tensor_value_info(name))
    theirs = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y", *extras], {"x": x})
    for name, a, b in zip(["y", *extras], ours, theirs):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=name)
    # None still means the model's own outputs.
    (y,) = session.run(None, {"x": x})
    np.testing.assert_array_equal(y, ours[0])


def test_asking_for_an_intermediate_value_without_extra_outputs_says_how(chain_model):
    session = deformrt.InferenceSession(chain_model[0])
    with pytest.raises(deformrt.DeformRTError, match="extra outputs") as error:
        session.run(["r3"], {"image": np.load(chain_model[1])})
    assert "'r3' is an intermediate value" in error.value.message
    with pytest.raises(deformrt.DeformRTError, match="unknown output name 'nothing'"):
        session.run(["nothing"], {"image": np.load(chain_model[1])})


def test_extra_output_names_are_checked(chain_model):
    for names, message in [(["no_such_value"], "no_such_value"), (["probabilities"], "already an output"),
                           (["c1", "c1"], "added already")]:
        options = deformrt.SessionOptions()
        options.extra_outputs = names
        with pytest.raises(deformrt.DeformRTError, match=message) as error:
            deformrt.InferenceSession(chain_model[0], options)
        assert error.value.status == Status.INVALID_ARGUMENT
    # An input and an initializer are values too.
    options = deformrt.SessionOptions()
    options.extra_outputs = ["image", "b0"]
    session = deformrt.InferenceSession(chain_model[0], options)
    image = np.load(chain_model[1])
    got_image, got_bias = session.run(["image", "b0"], {"image": image})
    np.testing.assert_array_equal(got_image, image)
    assert got_bias.shape == (16,)


def test_type_hints_and_version_ship():
    package = os.path.dirname(deformrt.__file__)
    assert os.path.isfile(os.path.join(package, "py.typed"))
    with open(os.path.join(ROOT, "bindings", "python", "pyproject.toml")) as f:
        assert '"py.typed"' in f.read()
    assert deformrt.__version__ == deformrt._capi.drt_version().decode()
    import inspect
    hints = inspect.signature(deformrt.InferenceSession.run).parameters
    assert hints["run_options"].annotation is not inspect.Parameter.empty
