"""onnx's node conformance suite through `deformrt.backend`.

`onnx.backend.test.loader.load_node_model_tests()` makes onnx's node cases in memory (each a model
and its input / expected-output data sets, with onnx's rtol / atol). Every case is run in process
through deformrt.backend (prepare + run) and compared with onnx's own runner comparison
(`Runner.assert_similar_outputs`: same count, shape, dtype, then assert_allclose with the case's
rtol / atol).

Which operators DeformRT supports is decided by the library itself, never by a list here: a case
whose session creation fails with "unsupported operators: ..." counts as unsupported-operator.
Every other case must pass, except those matched by REFUSED below (mirrored in README.md,
"onnx conformance"), which must be refused with an error (a refused case that passes is reported
too, so the list stays true).

A case whose shape-like input (Reshape's shape, Tile's repeats, ...) is a graph input is first run
as it is; if the library refuses it because that input depends on run-time data, it is run again
with those inputs turned into initializers, and counted as "passed with constant shape inputs".
"""

from __future__ import annotations

import re
import time
import warnings

import numpy as np
import onnx
import pytest

# conftest puts the worktree's binding and library first.
import deformrt  # noqa: F401
from deformrt import DeformRTError
import deformrt.backend as backend

# Cases DeformRT refuses on purpose (regular expression on the case name -> reason). They must
# raise DeformRTError. Mirrored in README.md ("onnx conformance").
REFUSED: dict[str, str] = {
    # Element types DeformRT has no tensors for (the importer refuses the value's type).
    r"bfloat16|BFLOAT16|_bf16": "bfloat16 tensors",
    r"FLOAT8|e4m3|e5m2|E8M0|e8m0": "float8 tensors",
    r"INT4|UINT4|_u?int4|INT2|UINT2|_u?int2|FLOAT4|float4": "4-bit and 2-bit tensors",
    r"string": "string tensors",
    r"^test_(sequence_|split_to_sequence_|identity_(opt|sequence)$|if_(opt|seq)$|loop1[36]_seq|optional_)":
        "sequence and optional values",
    # Element types an operator does not take.
    r"^test_pow_types_int": "Pow with an integer base",
    r"^test_maxpool_2d_uint8$": "MaxPool on uint8",
    r"^test_reduce_(max|min)_(bool_inputs|empty_set_bool)$": "ReduceMax / ReduceMin on bool",
    r"^test_range_float16_.*(?<!_expanded)$": "Range in float16",
    # Attribute values and modes.
    r"^test_(max|average)pool_3d_": "3-D pooling (1-D and 2-D only)",
    r"^test_convtranspose_3d$": "3-D ConvTranspose (1-D and 2-D only)",
    r"^test_lppool_3d_": "3-D LpPool (1-D and 2-D only)",
    r"^test_maxpool_with_argmax_": "MaxPool's Indices output",
    r"^test_(batchnorm_.*_training_mode|training_dropout)": "training mode",
    r"^test_wrap_pad$": "Pad mode wrap",
    r"^test_resize_.*cubic": "Resize mode cubic",
    r"^test_resize_.*antialias": "Resize antialias",
    r"^test_resize_.*not_(larger|smaller)$": "Resize keep_aspect_ratio_policy other than stretch",
    r"^test_resize_tf_crop_and_resize": "Resize coordinate_transformation_mode tf_crop_and_resize",
    # Inputs that must be known when the plan is made, even as initializers.
    # float16 / double where an operator runs float only.
    r"^test_causal_conv_with_state(_silu)?_fp16_expanded$": "Conv on float16",
    r"^test_(flexattention_(double|fp16)_expanded(_ver26)?|attention_.*(fp16|float16).*_expanded|"
    r"attention_24_qk_matmul_output_mode3_softmax_precision_expanded|attention_local_window_gqa_rank4_mask_expanded)$":
        "MatMul, ReduceMax, Softmax on float16 or double (inside the expanded Attention cases)",
    # Quantized operators (QuantizationOps).
    r"^test_(de)?quantizelinear_blocked": "blocked quantization (QuantizeLinear / DequantizeLinear block_size)",
    r"^test_qlinearmatmul_.*_float16$": "QLinearMatMul with float16 scales",
    r"^test_ai_onnx_ml_label_encoder_tensor_mapping$": "string tensors",
}

# Cases whose expected output DeformRT does not follow, and the oracle used instead (with why).
# onnxruntime is run on the same model and data.
ORT_ORACLE: dict[str, str] = {
    "test_resize_downsample_scales_linear_align_corners":
        "align_corners with a fractional scale x length: onnxruntime and PyTorch divide by the integer "
        "output length - 1, onnx's reference by the fraction",
}

RUNTIME_DATA = "depends on run-time data"
# Session-creation errors that mean an operator of the case does not run at all: the registry's
# list, and the importer's refusal of subgraph attributes (If, Loop, Scan and their kin).
UNSUPPORTED_OPERATOR_MESSAGES = ("unsupported operators:", "bodies are not supported")


def _load_cases():
    from onnx.backend.test.loader import load_node_model_tests
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # onnx's generators warn about log(0) and such
        return load_node_model_tests()


def _normalize(value):
    from onnx.backend.test.runner import _normalize_tensor
    return _normalize_tensor(value)


def _constant_inputs(model: onnx.ModelProto, inputs, first: int):
    """The model with graph inputs from position `first` on made initializers holding their values."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    kept = []
    declared = list(model.graph.input)
    for index, info in enumerate(declared):
        if index < len(inputs) and index >= first and isinstance(inputs[index], (np.ndarray, np.generic)):
            model.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(inputs[index]), info.name))
        elif index < len(inputs):
            kept.append((info, inputs[index]))
        else:
            kept.append((info, None))
    del model.graph.input[:]
    model.graph.input.extend(info for info, _ in kept)
    return model, [value for _, value in kept if value is not None]


def _ort_outputs(model: onnx.ModelProto, inputs):
    import onnxruntime as ort
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, inputs)))


def _run_case(case, model: onnx.ModelProto, data_sets):
    """Runs every data set of `case` on `model`; raises on a mismatch."""
    from onnx.backend.test.runner import Runner
    rep = backend.prepare(model, threads=2)
    try:
        for inputs, want in data_sets:
            got = list(rep.run(inputs))
            if case.name in ORT_ORACLE:
                want = _ort_outputs(model, inputs)
            Runner.assert_similar_outputs(want, got, rtol=case.rtol, atol=case.atol, model_dir=case.name)
    finally:
        rep.session.close()


def _outcome(case) -> tuple[str, str]:
    """("passed" | "passed-constant" | "unsupported-op" | "error" | "failed", detail): "error" is
    a DeformRTError (a refusal), "failed" a wrong result or any other exception."""
    data_sets = [([_normalize(v) for v in inputs], [_normalize(v) for v in outputs])
                 for inputs, outputs in case.data_sets]
    try:
        _run_case(case, case.model, data_sets)
        return "passed", ""
    except DeformRTError as error:
        if any(text in error.message for text in UNSUPPORTED_OPERATOR_MESSAGES):
            return "unsupported-op", error.message
        if RUNTIME_DATA not in error.message:
            return "error", str(error)
        first_error = str(error)
    except Exception as error:  # a mismatch or a binding error
        return "failed", f"{type(error).__name__}: {error}"
    # A shape-like input given at run time: try again with inputs 1... as initializers, then
    # with every input (ConstantOfShape's and Range's first input is the shape-like one).
    for first in (1, 0):
        try:
            constant_sets = []
            model = case.model
            for inputs, outputs in data_sets:
                model, kept = _constant_inputs(case.model, inputs, first)
                constant_sets.append((kept, outputs))
            _run_case(case, model, constant_sets)
            return "passed-constant", ""
        except DeformRTError as error:
            if first == 1 and RUNTIME_DATA in error.message:
                continue
            return "error", f"{first_error}; with constant inputs: {error}"
        except Exception as error:
            return "failed", f"{first_error}; with constant inputs: {type(error).__name__}: {error}"
    raise AssertionError("unreachable")


def test_onnx_node_conformance(capsys):
    started = time.perf_counter()
    cases = _load_cases()
    assert len(cases) > 1000, "onnx generated too few node cases"
    patterns = [(re.compile(p), why) for p, why in REFUSED.items()]
    counts = {"passed": 0, "passed-constant": 0, "refused": 0, "unsupported-op": 0}
    problems = []
    used_patterns = set()
    for case in sorted(cases, key=lambda c: c.name):
        refusal = next(((p.pattern, why) for p, why in patterns if p.search(case.name)), None)
        outcome, detail = _outcome(case)
        if outcome == "unsupported-op":
            counts["unsupported-op"] += 1
            if refusal:
                used_patterns.add(refusal[0])
            continue
        if refusal:
            used_patterns.add(refusal[0])
            if outcome == "error":
                counts["refused"] += 1
            elif outcome == "failed":
                problems.append(f"{case.name}: refused ({refusal[1]}) but gave a wrong result instead of "
                                f"an error: {detail[:300]}")
            else:
                problems.append(f"{case.name}: passes now; remove it from REFUSED ({refusal[0]!r})")
            continue
        if outcome in ("error", "failed"):
            problems.append(f"{case.name}: {detail[:400]}")
        else:
            counts[outcome] += 1
    stale = sorted(set(REFUSED) - used_patterns)
    total = len(cases)
    elapsed = time.perf_counter() - started
    summary = (f"onnx node conformance: {counts['passed'] + counts['passed-constant']} passed "
               f"({counts['passed-constant']} with shape inputs as constants), {counts['refused']} refused, "
               f"{counts['unsupported-op']} unsupported-operator, {len(problems)} failed, {total} total "
               f"({elapsed:.0f} s)")
    with capsys.disabled():
        print("\n" + summary)
    assert not stale, f"REFUSED patterns that match no case: {stale}"
    assert not problems, summary + "\n" + "\n".join(problems)


def test_backend_interface(onnx_case):
    """The Backend methods themselves: run_model on positional and named inputs, run_node with and
    without opset_version, supports_device, and an unsupported device refused."""
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5
    node = onnx.helper.make_node("Relu", ["x"], ["y"])
    (y,) = backend.run_node(node, [x])
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    (y,) = backend.run_node(node, {"x": x}, opset_version=13)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    add = onnx.helper.make_node("Add", ["a", "b"], ["c"])
    (c,) = backend.run_node(add, [x, np.float32(1.5)], outputs_info=[(np.float32, (2, 3))])
    np.testing.assert_array_equal(c, x + 1.5)
    model = onnx_case.model([add], [onnx_case.value("a", np.float32, (2, 3)), onnx_case.value("b", np.float32, (3,))],
                            [onnx_case.value("c", np.float32, (2, 3))])
    b = np.array([1, 2, 3], np.float32)
    out = backend.run_model(onnx.load_from_string(model), [x, b])
    np.testing.assert_array_equal(out[0], x + b)
    np.testing.assert_array_equal(out.c, x + b)
    rep = backend.prepare(model)
    np.testing.assert_array_equal(rep.run({"a": x, "b": b})[0], x + b)
    rep.session.close()
    assert backend.supports_device("CPU") and backend.supports_device("cpu:0")
    assert not backend.supports_device("CUDA")
    with pytest.raises(RuntimeError, match="CPU only"):
        backend.prepare(model, "CUDA")
    with pytest.raises(DeformRTError, match="unsupported operators: \\(ai.onnx, Frobnicate"):
        backend.run_node(onnx.helper.make_node("Frobnicate", ["x"], ["y"]), [x])
