"""The StaticShapeFolding pass: with static declared input shapes, Shape / Size outputs become
constants and Reshape sizes explicit, so ConstantFolding folds the shape arithmetic the
TorchScript exporter writes. Outputs are compared with the graph run unoptimised and with
onnxruntime (exact for this integer-valued shape arithmetic: rtol 1e-6, atol 1e-6); symbolic
dims, data-dependent shapes and unknown operators leave what depends on them as it is, and the
graph stays correct for every fed shape. The optimised graph's node counts are in the Swift test
GraphPassTests.testStaticShapeFoldingReplacesShapesOfStaticInputs."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import deformrt
from deformrt import GraphOptimizationLevel, SessionOptions

FLOAT, INT64 = TensorProto.FLOAT, TensorProto.INT64


def shape_chain_model(x_shape, extra_nodes=(), extra_inputs=(), extra_outputs=()):
    """x -> Reshape(x, [0, -1, H*W]) + Range(Size(x)) -> Mul(ReduceSum(ConstantOfShape(Shape(x)[2:4]))),
    as the TorchScript exporter spells shape arithmetic (Shape with start / end, Gather, Unsqueeze,
    Concat, Cast, Range)."""
    nodes = [
        helper.make_node("Shape", ["x"], ["hw"], start=2, end=4),
        helper.make_node("Shape", ["x"], ["full"]),
        helper.make_node("Gather", ["full", "index_one"], ["channels"], axis=0),
        helper.make_node("Unsqueeze", ["channels", "axis_zero"], ["channels_1"]),
        helper.make_node("Gather", ["hw", "izero"], ["h"], axis=0),
        helper.make_node("Gather", ["hw", "one"], ["w"], axis=0),
        helper.make_node("Mul", ["h", "w"], ["area_0"]),
        helper.make_node("Unsqueeze", ["area_0", "axis_zero"], ["area"]),
        helper.make_node("Concat", ["zero", "channels_1", "area"], ["sizes"], axis=0),
        helper.make_node("Reshape", ["x", "sizes"], ["flat"]),
        helper.make_node("Size", ["x"], ["count"]),
        helper.make_node("Range", ["izero", "count", "one"], ["ramp"]),
        helper.make_node("Cast", ["ramp"], ["ramp_f"], to=FLOAT),
        helper.make_node("Shape", ["flat"], ["flat_shape"]),
        helper.make_node("Reshape", ["ramp_f", "flat_shape"], ["ramp_flat"]),
        helper.make_node("ConstantOfShape", ["hw"], ["ones"], value=numpy_helper.from_array(np.ones(1, np.float32))),
        helper.make_node("ReduceSum", ["ones"], ["total"], keepdims=0),
        helper.make_node("Add", ["flat", "ramp_flat"], ["sum"]),
        helper.make_node("Mul", ["sum", "total"], ["y"]),
        *extra_nodes,
    ]
    initializers = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
                    [("zero", [0]), ("index_one", 1), ("axis_zero", [0]), ("izero", 0), ("one", 1)]]
    graph = helper.make_graph(nodes, "shape_chain", [helper.make_tensor_value_info("x", FLOAT, x_shape), *extra_inputs],
                              [helper.make_tensor_value_info("y", FLOAT, None), *extra_outputs], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model.SerializeToString()


def run(model: bytes, feeds, level):
    options = SessionOptions()
    options.graph_optimization_level = level
    with deformrt.InferenceSession(model, options, threads=2) as session:
        return session.run(None, feeds)


def check_against_references(model: bytes, feeds):
    ort = pytest.importorskip("onnxruntime")
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)
    for level in (GraphOptimizationLevel.ORT_ENABLE_BASIC, GraphOptimizationLevel.ORT_ENABLE_ALL,
                  GraphOptimizationLevel.ORT_DISABLE_ALL):
        got = run(model, feeds, level)
        for g, w in zip(got, want):
            assert g.shape == w.shape and g.dtype == w.dtype
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


def test_static_shapes_fold_and_keep_outputs():
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5)).astype(np.float32)
    check_against_references(shape_chain_model([2, 3, 4, 5]), {"x": x})


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 7, 2, 9), (3, 1, 1, 1)])
def test_symbolic_dims_are_not_folded(shape):
    """Symbolic dims: every fed shape gets its own shapes (nothing taken from the declared ones)."""
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    check_against_references(shape_chain_model(["n", "c", "h", 5 if shape[3] == 5 else "w"]), {"x": x})


def test_data_dependent_shapes_stop_the_folding():
    """Shape of NonZero's output depends on the data: it stays, and is right for each feed."""
    extra = [helper.make_node("NonZero", ["x"], ["where"]), helper.make_node("Shape", ["where"], ["where_shape"])]
    model = shape_chain_model([2, 3, 4, 5], extra, extra_outputs=[helper.make_tensor_value_info("where_shape", INT64, None)])
    rng = np.random.default_rng(3)
    for density in (0.2, 0.7):
        x = np.where(rng.random((2, 3, 4, 5)) < density, 1.0, 0.0).astype(np.float32)
        check_against_references(model, {"x": x})


def test_a_shape_read_as_a_graph_output():
    """A Shape output that is also a graph output is folded and still returned."""
    model = shape_chain_model([2, 3, 4, 5], extra_outputs=[helper.make_tensor_value_info("hw", INT64, None),
                                                           helper.make_tensor_value_info("count", INT64, None)])
    x = np.ones((2, 3, 4, 5), np.float32)
    check_against_references(model, {"x": x})
    _, hw, count = run(model, {"x": x}, GraphOptimizationLevel.ORT_ENABLE_ALL)
    assert hw.tolist() == [4, 5] and count.tolist() == 120


def test_wrong_fed_shape_is_refused_not_folded_wrong():
    """A feed that disagrees with the static declaration is an error at every level (the folded
    shapes are only ever used with the declared ones)."""
    model = shape_chain_model([2, 3, 4, 5])
    for level in (GraphOptimizationLevel.ORT_ENABLE_ALL, GraphOptimizationLevel.ORT_DISABLE_ALL):
        with pytest.raises(deformrt.DeformRTError, match="dimension"):
            run(model, {"x": np.ones((2, 3, 4, 6), np.float32)}, level)
