"""Graph-level behaviour: unsupported operators, malformed graphs, dynamic shapes and re-planning,
initializers in every TensorProto field, and initializers listed as graph inputs (IR < 4).

Numerical results are compared with onnx.reference.ReferenceEvaluator. Tolerances: EXACT
(equal values, NaN matches NaN) for data movement, casts and single IEEE operations; GEMM
(rtol=1e-4, atol=1e-5) where a Conv or Gemm sums in another order.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from onnx import TensorProto, helper

import deformrt
from deformrt import DeformRTError, Status

EXACT = dict(rtol=0, atol=0)
GEMM = dict(rtol=1e-4, atol=1e-5)


def rng_for(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def creation_error(model: bytes) -> DeformRTError:
    """The error session creation raises for `model`."""
    with pytest.raises(DeformRTError) as caught:
        deformrt.InferenceSession(model, threads=1)
    return caught.value


# ---------------------------------------------------------------------------------------------
# Unsupported operators


def test_unsupported_operators_are_listed_together(onnx_case):
    """Every unsupported (domain, op_type, opset) in one message, each once, at creation."""
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="ok_relu"),
        helper.make_node("Det", ["a"], ["b"], name="det_1"),
        helper.make_node("Frobnicate", ["b"], ["c"], domain="com.example", name="custom"),
        helper.make_node("MelWeightMatrix", ["c"], ["d"], name="mel"),
        helper.make_node("Det", ["d"], ["y"], name="det_2"),
    ]
    graph = helper.make_graph(nodes, "g", [onnx_case.value("x", np.float32, (2, 3))],
                              [onnx_case.value("y", np.float32, (2, 3))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 3)])
    error = creation_error(model.SerializeToString())
    assert error.status == Status.UNSUPPORTED
    message = error.message
    for entry in ("(ai.onnx, Det, opset 17)", "(com.example, Frobnicate, opset 3)", "(ai.onnx, MelWeightMatrix, opset 17)"):
        assert entry in message, message
    assert message.count("Det") == 1, message
    assert "Relu" not in message


def test_operator_below_its_first_supported_opset_is_unsupported(onnx_case):
    """Reshape-1..4 (shape as an attribute) is not supported: listed with its opset."""
    node = helper.make_node("Reshape", ["x"], ["y"], shape=[6])
    model = onnx_case.model([node], [onnx_case.value("x", np.float32, (2, 3))], ["y"], opset=4, check=False)
    error = creation_error(model)
    assert error.status == Status.UNSUPPORTED
    assert "(ai.onnx, Reshape, opset 4)" in error.message


def test_custom_domain_without_opset_import_is_reported_as_opset_1(onnx_case):
    node = helper.make_node("Mystery", ["x"], ["y"], domain="org.nowhere")
    model = onnx_case.model([node], [onnx_case.value("x", np.float32, (2, 3))], ["y"], check=False)
    assert "(org.nowhere, Mystery, opset 1)" in creation_error(model).message


# ---------------------------------------------------------------------------------------------
# Malformed graphs: each error names the offending node


def test_cycle_names_a_node_on_it(onnx_case):
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="entry"),
        helper.make_node("Add", ["a", "c"], ["b"], name="loop_add"),
        helper.make_node("Relu", ["b"], ["c"], name="loop_relu"),
        helper.make_node("Relu", ["c"], ["y"], name="exit"),
    ]
    model = onnx_case.model(nodes, [onnx_case.value("x", np.float32, (2, 3))],
                            [onnx_case.value("y", np.float32, (2, 3))], check=False)
    error = creation_error(model)
    assert error.status == Status.INVALID_MODEL
    assert "cycle" in error.message
    assert "loop_add" in error.message or "loop_relu" in error.message, error.message


def test_self_loop_of_an_unnamed_node_is_labelled_by_index(onnx_case):
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Add", ["a", "b"], ["b"])]
    model = onnx_case.model(nodes, [onnx_case.value("x", np.float32, (2, 3))],
                            [onnx_case.value("b", np.float32, (2, 3))], check=False)
    error = creation_error(model)
    assert "cycle" in error.message and "#1 Add" in error.message, error.message


def test_value_nobody_produces_names_the_reader(onnx_case):
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="first"),
             helper.make_node("Add", ["a", "ghost"], ["y"], name="reads_ghost")]
    model = onnx_case.model(nodes, [onnx_case.value("x", np.float32, (2, 3))],
                            [onnx_case.value("y", np.float32, (2, 3))], check=False)
    error = creation_error(model)
    assert error.status == Status.INVALID_MODEL
    assert "reads_ghost" in error.message and "ghost" in error.message, error.message


def test_graph_output_nobody_produces_is_named(onnx_case):
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="only")]
    model = onnx_case.model(nodes, [onnx_case.value("x", np.float32, (2, 3))],
                            [onnx_case.value("a", np.float32, (2, 3)), onnx_case.value("missing", np.float32, (2, 3))],
                            check=False)
    error = creation_error(model)
    assert error.status == Status.INVALID_MODEL and "missing" in error.message, error.message


def test_value_produced_twice_names_both_nodes(onnx_case):
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="writer_one"),
             helper.make_node("Sigmoid", ["x"], ["y"], name="writer_two")]
    model = onnx_case.model(nodes, [onnx_case.value("x", np.float32, (2, 3))],
                            [onnx_case.value("y", np.float32, (2, 3))], check=False)
    error = creation_error(model)
    assert error.status == Status.INVALID_MODEL
    assert "writer_one" in error.message and "writer_two" in error.message, error.message


@pytest.mark.parametrize("overwritten", ["x", "w"], ids=["graph_input", "initializer"])
def test_node_writing_an_input_or_initializer_is_named(onnx_case, overwritten):
    nodes = [helper.make_node("Add", ["x", "w"], ["y"], name="adder"),
             helper.make_node("Relu", ["y"], [overwritten], name="overwriter")]
    model = onnx_case.model(nodes, [onnx_case.value("x", np.float32, (2, 3))],
                            [onnx_case.value("y", np.float32, (2, 3))], {"w": np.ones((2, 3), np.float32)}, check=False)
    error = creation_error(model)
    assert error.status == Status.INVALID_MODEL and "overwriter" in error.message, error.message


def test_shape_error_at_creation_names_the_node(onnx_case):
    """With static input shapes the plan is made at creation, so a shape error surfaces there."""
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="bad_matmul")
    model = onnx_case.model([node], [onnx_case.value("x", np.float32, (2, 3))], ["y"],
                            {"w": np.ones((4, 5), np.float32)}, check=False)
    error = creation_error(model)
    assert error.status == Status.INVALID_MODEL and "bad_matmul" in error.message, error.message


# ---------------------------------------------------------------------------------------------
# Dynamic shapes and re-planning


def dynamic_cnn(onnx_case, input_shape) -> bytes:
    """Conv -> Relu -> MaxPool -> GlobalAveragePool -> Flatten -> Gemm, declared input shape
    `input_shape` (symbolic or missing dims allowed)."""
    rng = rng_for("dynamic_cnn")
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
        helper.make_node("GlobalAveragePool", ["p"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fc_b"], ["y"], transB=1),
    ]
    initializers = {"w": rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
                    "b": rng.standard_normal(8).astype(np.float32),
                    "fc": rng.standard_normal((5, 8)).astype(np.float32),
                    "fc_b": rng.standard_normal(5).astype(np.float32)}
    return onnx_case.model(nodes, [onnx_case.value("x", np.float32, input_shape)],
                           [onnx_case.value("y", np.float32, ["N", 5]), "c"], initializers, opset=13)


@pytest.mark.parametrize("declared", [["N", 3, "H", "W"], [None, 3, None, None], None],
                         ids=["symbolic", "unnamed_dims", "no_shape"])
def test_dynamic_shapes_replan_across_runs(onnx_case, declared):
    """One session, several input shapes (and back to an earlier one): each run matches the
    reference (GEMM tolerance) and results of earlier runs are not overwritten by later ones."""
    model = dynamic_cnn(onnx_case, declared)
    rng = rng_for("dynamic_runs", repr(declared))
    shapes = [(2, 3, 9, 11), (3, 3, 16, 7), (1, 3, 5, 5), (2, 3, 9, 11), (4, 3, 13, 13)]
    kept = []
    with deformrt.InferenceSession(model, threads=2) as session:
        for shape in shapes:
            x = rng.standard_normal(shape).astype(np.float32)
            got = session.run(None, {"x": x})
            want = onnx_case.reference(model, {"x": x})
            onnx_case.compare(got, want, **GEMM)
            kept.append((got, want))
        for got, want in kept:
            onnx_case.compare(got, want, **GEMM)


def test_declared_dims_are_enforced_and_dynamic_ones_are_not(onnx_case):
    model = dynamic_cnn(onnx_case, ["N", 3, "H", "W"])
    with deformrt.InferenceSession(model, threads=1) as session:
        assert session.get_inputs()[0].shape == ["N", 3, "H", "W"]  # symbolic dims by name, as onnxruntime
        with pytest.raises(DeformRTError) as caught:
            session.run(None, {"x": np.zeros((2, 4, 8, 8), np.float32)})
        assert caught.value.status == Status.INVALID_ARGUMENT and "dimension 1" in caught.value.message
        with pytest.raises(DeformRTError):
            session.run(None, {"x": np.zeros((2, 3, 8), np.float32)})
        # A failed run leaves the session usable.
        assert session.run(None, {"x": np.zeros((2, 3, 8, 8), np.float32)})[0].shape == (2, 5)


def test_shape_error_on_a_dynamic_run_names_the_node_and_keeps_the_session(onnx_case):
    """x [N, K] @ w [6, 4]: K != 6 fails when planning that run, naming the node."""
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="dyn_matmul")
    model = onnx_case.model([node], [onnx_case.value("x", np.float32, ["N", "K"])], ["y"],
                            {"w": np.ones((6, 4), np.float32)}, opset=13)
    with deformrt.InferenceSession(model, threads=1) as session:
        with pytest.raises(DeformRTError) as caught:
            session.run(None, {"x": np.ones((2, 5), np.float32)})
        assert "dyn_matmul" in caught.value.message
        x = rng_for("dyn_matmul").standard_normal((3, 6)).astype(np.float32)
        onnx_case.compare(session.run(None, {"x": x}), onnx_case.reference(model, {"x": x}), **GEMM)


# ---------------------------------------------------------------------------------------------
# Initializers in every TensorProto field


def typed_field_tensor(name: str, values: np.ndarray, raw: bool) -> TensorProto:
    """A TensorProto holding `values` in raw_data, or in the typed field ONNX assigns the type:
    float_data (float), int32_data (int8, uint8, int16, uint16, bool, float16 bits, int32),
    int64_data, double_data, uint64_data (uint32, uint64)."""
    elem = helper.np_dtype_to_tensor_dtype(values.dtype)
    if raw:
        return helper.make_tensor(name, elem, values.shape, values.tobytes(), raw=True)
    tensor = helper.make_tensor(name, elem, values.shape, values.ravel().tolist() if values.dtype != np.float16
                                else values.ravel(), raw=False)
    assert not tensor.HasField("raw_data")
    return tensor


FIELD_CASES = [
    (np.float32, "float_data"), (np.int8, "int32_data"), (np.uint8, "int32_data"), (np.int16, "int32_data"),
    (np.uint16, "int32_data"), (np.bool_, "int32_data"), (np.float16, "int32_data"), (np.int32, "int32_data"),
    (np.int64, "int64_data"), (np.float64, "double_data"), (np.uint32, "uint64_data"), (np.uint64, "uint64_data"),
]


def sample_values(dtype, shape, rng) -> np.ndarray:
    if dtype == np.bool_:
        return rng.random(shape) > 0.5
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        extremes = np.array([info.min, info.max, 0, 1], dtype)
        values = rng.integers(max(info.min, -5000), min(info.max, 5000), shape).astype(dtype).ravel()
        values[: len(extremes)] = extremes[: values.size]
        return values.reshape(shape)
    values = (rng.standard_normal(shape) * 100).astype(dtype).ravel()
    values[:3] = np.array([np.finfo(dtype).max, -np.finfo(dtype).tiny, -0.0], dtype)[: values.size]
    return values.reshape(shape)


@pytest.mark.parametrize("raw", [False, True], ids=["typed_field", "raw_data"])
@pytest.mark.parametrize("dtype,field", FIELD_CASES, ids=[f"{np.dtype(d).name}" for d, _ in FIELD_CASES])
def test_initializer_fields_through_cast(onnx_case, dtype, field, raw):
    """Each element type from its typed field and from raw_data, read back exactly through
    Cast(to=double) + Add(x) and through Identity; EXACT (double holds every source value)."""
    rng = rng_for("fields", np.dtype(dtype).name, raw)
    shape = (2, 3, 5)
    values = sample_values(dtype, shape, rng)
    tensor = typed_field_tensor("init", values, raw)
    if not raw:
        assert len(getattr(tensor, field)) == values.size
    nodes = [helper.make_node("Cast", ["init"], ["as_double"], to=TensorProto.DOUBLE),
             helper.make_node("Add", ["x", "as_double"], ["y"]),
             helper.make_node("Identity", ["init"], ["same"])]
    model = onnx_case.model(nodes, [onnx_case.value("x", np.float64, shape)], ["y", "same"], [tensor], opset=13)
    x = rng.standard_normal(shape)
    got = onnx_case.check(model, {"x": x}, **EXACT)
    np.testing.assert_array_equal(got[1], values)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float32, np.float64], ids=["i32", "i64", "f32", "f64"])
@pytest.mark.parametrize("raw", [False, True], ids=["typed_field", "raw_data"])
def test_initializer_fields_through_add(onnx_case, dtype, raw):
    """An initializer broadcast-added to a run-time input of its own type; EXACT."""
    rng = rng_for("fields_add", np.dtype(dtype).name, raw)
    init = np.clip(sample_values(dtype, (3, 1), rng), -10**6, 10**6).astype(dtype)
    node = helper.make_node("Add", ["x", "init"], ["y"])
    model = onnx_case.model([node], [onnx_case.value("x", dtype, (2, 3, 7))], ["y"],
                            [typed_field_tensor("init", init, raw)], opset=13)
    x = sample_values(dtype, (2, 3, 7), rng)
    x = np.clip(x, -10**6, 10**6).astype(dtype)
    onnx_case.check(model, {"x": x}, **EXACT)


@pytest.mark.parametrize("raw", [False, True], ids=["typed_field", "raw_data"])
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.float64, np.int32, np.uint8],
                         ids=["f32", "i64", "f64", "i32", "u8"])
def test_empty_and_scalar_initializers(onnx_case, dtype, raw):
    """A [0, 3] initializer concatenated to the input, and a scalar initializer added: EXACT."""
    rng = rng_for("empty", np.dtype(dtype).name, raw)
    empty = np.zeros((0, 3), dtype)
    scalar = np.array(7, dtype)
    nodes = [helper.make_node("Concat", ["x", "empty"], ["joined"], axis=0),
             helper.make_node("Cast", ["joined"], ["as_float"], to=TensorProto.FLOAT),
             helper.make_node("Cast", ["scalar"], ["scalar_float"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["as_float", "scalar_float"], ["y"])]
    model = onnx_case.model(nodes, [onnx_case.value("x", dtype, (2, 3))], ["y"],
                            [typed_field_tensor("empty", empty, raw), typed_field_tensor("scalar", scalar, raw)],
                            opset=13)
    x = (rng.integers(0, 100, (2, 3))).astype(dtype)
    onnx_case.check(model, {"x": x}, **EXACT)


def test_initializer_with_wrong_value_count_is_refused(onnx_case):
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2, 3], float_data=[1.0, 2.0, 3.0])
    node = helper.make_node("Add", ["x", "w"], ["y"])
    model = onnx_case.model([node], [onnx_case.value("x", np.float32, (2, 3))], ["y"], [tensor], check=False)
    with pytest.raises(DeformRTError) as caught:
        deformrt.InferenceSession(model)
    assert caught.value.status == Status.INVALID_MODEL and "'w'" in caught.value.message


# ---------------------------------------------------------------------------------------------
# Initializers listed as graph inputs (IR < 4), outputs that are inputs or initializers


def test_initializers_listed_as_graph_inputs(onnx_case):
    """IR 3 / opset 8 style: every weight is also a graph input. They are constants: only x is
    an input to feed. GEMM tolerance against the reference fed x alone."""
    rng = rng_for("ir3")
    weights = {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
               "b": rng.standard_normal(4).astype(np.float32),
               "fc": rng.standard_normal((4 * 4 * 5, 6)).astype(np.float32),
               "fc_b": rng.standard_normal(6).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "fc", "fc_b"], ["y"])]
    inputs = [onnx_case.value("x", np.float32, (2, 3, 7, 9))]
    inputs += [onnx_case.value(name, np.float32, value.shape) for name, value in weights.items()]
    model = onnx_case.model(nodes, inputs, [onnx_case.value("y", np.float32, (2, 6))], weights, opset=8, ir_version=3)
    with deformrt.InferenceSession(model, threads=2) as session:
        assert [i.name for i in session.get_inputs()] == ["x"]
    x = rng.standard_normal((2, 3, 7, 9)).astype(np.float32)
    onnx_case.check(model, {"x": x}, **GEMM)


def test_graph_outputs_that_are_inputs_initializers_or_constants(onnx_case):
    """Outputs need not be computed: a graph input, an initializer and a folded constant are
    returned as copies; EXACT."""
    rng = rng_for("passthrough_outputs")
    nodes = [helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Relu", ["x"], ["y"])]
    w = rng.standard_normal((2, 2)).astype(np.float32)
    model = onnx_case.model(nodes, [onnx_case.value("x", np.float32, ["N", 3])], ["x", "w", "shape", "y"], {"w": w},
                            opset=13)
    with deformrt.InferenceSession(model, threads=1) as session:
        for batch in (2, 4):
            x = rng.standard_normal((batch, 3)).astype(np.float32)
            got = session.run(None, {"x": x})
            onnx_case.compare(got, onnx_case.reference(model, {"x": x}), **EXACT)
            x[:] = 0  # the returned input is a copy
            assert np.any(got[0] != 0)
