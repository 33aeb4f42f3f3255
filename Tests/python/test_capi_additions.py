"""The C calls added after the first release (Tests/c/capi_additions.c, compiled here against the
shipped library): model metadata and symbolic dim names, extra outputs, run options with
cancellation from another thread, outputs written into caller tensors, and bad input to each; also
under valgrind by `make test-valgrind` (no leak, no invalid access)."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from test_capi import MODEL, _DEBUG_LIB, _compile, _run, _valgrind, needs_valgrind

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LIB = os.environ.get("DEFORMRT_LIBRARY", os.path.join(ROOT, ".build", "release", "libdeformrt.so"))


def write_chain_model(path: str, depth: int = 12, channels: int = 16) -> str:
    """image [N,3,32,32] -> Conv/Relu x depth -> GlobalAveragePool ('features', [N,16,?,?]) ->
    Flatten -> Gemm -> Softmax ('probabilities', [N,10]), with the metadata capi_additions.c reads."""
    rng = np.random.default_rng(7)
    inits, nodes, previous = [], [], "image"
    for i in range(depth):
        fan_in = 3 if i == 0 else channels
        inits.append(numpy_helper.from_array(
            (rng.standard_normal((channels, fan_in, 3, 3)) / np.sqrt(fan_in * 9)).astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("Conv", [previous, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        previous = f"r{i}"
    inits += [numpy_helper.from_array(rng.standard_normal((channels, 10)).astype(np.float32), "fc_w"),
              numpy_helper.from_array(rng.standard_normal(10).astype(np.float32), "fc_b")]
    nodes += [helper.make_node("GlobalAveragePool", [previous], ["features"]),
              helper.make_node("Flatten", ["features"], ["flat"]),
              helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"]),
              helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)]
    graph = helper.make_graph(
        nodes, "conv_chain", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", channels, None, None]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        inits, doc_string="a chain")
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="deformrt-tests",
                              producer_version="1.2", domain="ai.deformrt.tests", model_version=7,
                              doc_string="test model")
    model.ir_version = 8
    helper.set_model_props(model, {"author": "tests", "empty": ""})
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return path


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    return write_chain_model(str(tmp_path_factory.mktemp("chain") / "chain.onnx"))


def test_c_additions_program(chain, tmp_path):
    program = _compile("capi_additions.c", str(tmp_path / "capi_additions"), os.path.dirname(LIB))
    out = _run([program, MODEL, chain]).stdout
    assert re.search(r"^\d+ checks, 0 failed$", out, re.M), out


@needs_valgrind
def test_valgrind_additions_program_leaks_nothing(tmp_path):
    # A shorter chain: valgrind runs it ~50x slower; cancellation is timed against its own full run.
    chain = write_chain_model(str(tmp_path / "chain.onnx"), depth=4)
    program = _compile("capi_additions.c", str(tmp_path / "capi_additions"), os.path.dirname(_DEBUG_LIB))
    result = _valgrind([program, MODEL, chain, "8"], os.path.dirname(_DEBUG_LIB))
    assert re.search(r"^\d+ checks, 0 failed$", result.stdout, re.M), result.stdout
