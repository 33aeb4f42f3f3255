"""If and Loop with subgraphs that read outer-scope values, as torch.onnx.export and mmdeploy write
them in post-processing (built here with onnx.helper), against onnxruntime and onnx.reference.

Tolerances: exact (rtol=0, atol=0) everywhere: the bodies add, multiply, select and copy floats in
the same order as the references.
"""

from __future__ import annotations

import zlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import deformrt

EXACT = dict(rtol=0, atol=0)
F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def rng_for(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def make_model(nodes, inputs, outputs, initializers=(), opset=17) -> bytes:
    graph = helper.make_graph(nodes, "main", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString()


def vi(name, elem, shape=None):
    return helper.make_tensor_value_info(name, elem, shape)


def check(onnx_case, model: bytes, feed_list, use_reference=True, tolerance=EXACT):
    with deformrt.InferenceSession(model, threads=2) as session:
        for feeds in feed_list:
            got = session.run(None, dict(feeds))
            want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, dict(feeds))
            onnx_case.compare(got, want, **tolerance)
            if use_reference:
                onnx_case.compare(got, onnx_case.reference(model, feeds), **tolerance)


def if_model(then_outputs=1, else_outputs=1):
    """cond = sum(x) > 0; then: (x + bias)[: k] for a k from data (outer-scope x, bias, k);
    else: x * 2 with a different shape. Both read values of the main graph by name."""
    then_nodes = [helper.make_node("Add", ["x", "bias"], ["t0"]),
                  helper.make_node("Slice", ["t0", "zero", "k", "zero"], ["then_out"])]
    then_outs = [vi("then_out", F)] + [vi(f"t_extra{i}", F) for i in range(then_outputs - 1)]
    then_nodes += [helper.make_node("Identity", ["x"], [f"t_extra{i}"]) for i in range(then_outputs - 1)]
    then_graph = helper.make_graph(then_nodes, "then", [], then_outs)
    else_nodes = [helper.make_node("Mul", ["x", "two"], ["else_out"])]
    else_outs = [vi("else_out", F)] + [vi(f"e_extra{i}", F) for i in range(else_outputs - 1)]
    else_nodes += [helper.make_node("Identity", ["x"], [f"e_extra{i}"]) for i in range(else_outputs - 1)]
    else_graph = helper.make_graph(else_nodes, "else", [], else_outs)
    nodes = [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
             helper.make_node("Greater", ["s", "fzero"], ["cond"]),
             helper.make_node("If", ["cond"], [f"y{i}" for i in range(then_outputs)], name="the_if",
                              then_branch=then_graph, else_branch=else_graph),
             helper.make_node("Relu", ["y0"], ["z"])]
    inits = [helper.make_tensor("bias", F, [4], [0.5, -1, 2, 0.25]), helper.make_tensor("two", F, [], [2.0]),
             helper.make_tensor("zero", I64, [1], [0]), helper.make_tensor("fzero", F, [], [0.0])]
    return make_model(nodes, [vi("x", F, [3, 4]), vi("k", I64, [1])], [vi("z", F), vi("s", F)], inits)


def test_if_with_outer_scope_values_and_branch_shapes(onnx_case):
    rng = rng_for("if")
    feeds = []
    for sign, k in ((1, 2), (-1, 1), (1, 3), (1, 2), (-1, 2)):
        x = (np.abs(rng.standard_normal((3, 4))) * sign).astype(np.float32)
        feeds.append({"x": x, "k": np.array([k], np.int64)})
    # The condition's ReduceSum (output s) may add in another order: rtol 1e-6 on it.
    check(onnx_case, if_model(), feeds, tolerance=dict(rtol=1e-6, atol=0))


def test_if_with_constant_condition_is_folded_away(onnx_case):
    then_graph = helper.make_graph([helper.make_node("Neg", ["x"], ["o"])], "t", [], [vi("o", F)])
    else_graph = helper.make_graph([helper.make_node("Abs", ["x"], ["o2"])], "e", [], [vi("o2", F)])
    nodes = [helper.make_node("If", ["c"], ["y"], then_branch=then_graph, else_branch=else_graph)]
    for flag in (True, False):
        model = make_model(nodes, [vi("x", F, [2, 5])], [vi("y", F)], [helper.make_tensor("c", B, [], [flag])])
        check(onnx_case, model, [{"x": rng_for("ifc", flag).standard_normal((2, 5)).astype(np.float32)}])


def test_nested_if_reads_values_two_scopes_out(onnx_case):
    inner_then = helper.make_graph([helper.make_node("Add", ["x", "w"], ["a"])], "it", [], [vi("a", F)])
    inner_else = helper.make_graph([helper.make_node("Sub", ["x", "w"], ["b"])], "ie", [], [vi("b", F)])
    outer_then = helper.make_graph(
        [helper.make_node("If", ["c2"], ["r"], then_branch=inner_then, else_branch=inner_else)], "ot", [], [vi("r", F)])
    outer_else = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["m"])], "oe", [], [vi("m", F)])
    nodes = [helper.make_node("If", ["c1"], ["y"], then_branch=outer_then, else_branch=outer_else)]
    model = make_model(nodes, [vi("x", F, [2, 3]), vi("w", F, [3]), vi("c1", B, []), vi("c2", B, [])], [vi("y", F)])
    rng = rng_for("nested")
    feeds = [{"x": rng.standard_normal((2, 3)).astype(np.float32), "w": rng.standard_normal(3).astype(np.float32),
              "c1": np.array(a), "c2": np.array(b)} for a, b in ((True, True), (True, False), (False, True))]
    check(onnx_case, model, feeds)


def loop_model():
    """torch.onnx.export's shape of a for loop over a run-time count: M from the data's first dim,
    cond a constant true; the body adds an outer-scope row to the carried sum, counts, and emits
    the running sum (scan output)."""
    body = helper.make_graph(
        [helper.make_node("Gather", ["x", "i"], ["row"], axis=0),
         helper.make_node("Add", ["acc_in", "row"], ["acc_out"]),
         helper.make_node("Mul", ["acc_out", "scale"], ["scan"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [vi("i", I64, []), vi("cond_in", B, []), vi("acc_in", F, [None])],
        [vi("cond_out", B, []), vi("acc_out", F, [None]), vi("scan", F, [None])])
    nodes = [helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
             helper.make_node("Loop", ["n", "true", "acc0"], ["acc", "scans"], body=body, name="the_loop")]
    inits = [helper.make_tensor("zero", I64, [1], [0]), helper.make_tensor("true", B, [], [True]),
             helper.make_tensor("scale", F, [], [0.5])]
    return make_model(nodes, [vi("x", F, ["n", 5]), vi("acc0", F, [5])], [vi("acc", F), vi("scans", F)], inits)


def test_loop_for_over_a_runtime_count_with_scan_outputs(onnx_case):
    rng = rng_for("loop")
    feeds = [{"x": rng.standard_normal((n, 5)).astype(np.float32), "acc0": rng.standard_normal(5).astype(np.float32)}
             for n in (3, 1, 7, 3)]
    check(onnx_case, loop_model(), feeds)


def test_loop_zero_iterations(onnx_case):
    """M = 0: the carried values come out unchanged and the scan output is empty."""
    feeds = {"x": np.zeros((0, 5), np.float32), "acc0": np.arange(5, dtype=np.float32)}
    got = onnx_case.run(loop_model(), feeds)
    np.testing.assert_array_equal(got[0], feeds["acc0"])
    # [0] + the body's declared scan shape when fully known; here it is [None], so (0,).
    # (onnxruntime infers [5] from the carried value and gives (0, 5).)
    assert got[1].shape == (0,) and got[1].dtype == np.float32
    feeds = {"m": np.array(0, np.int64), "c0": np.array(True), "v0": np.ones(3, np.float32), "limit": np.array(1, np.float32)}
    check(onnx_case, while_model(True), [feeds], use_reference=False)


def while_model(with_trip_count=True):
    """A while loop: double the carried value until its sum exceeds the outer-scope limit; the
    body's condition output decides, M bounds it."""
    body = helper.make_graph(
        [helper.make_node("Mul", ["v_in", "two"], ["v_out"]),
         helper.make_node("ReduceSum", ["v_out"], ["s"], keepdims=0),
         helper.make_node("Less", ["s", "limit"], ["cond_out"]),
         helper.make_node("Cast", ["i"], ["i_f"], to=F),
         helper.make_node("Add", ["i_f", "s"], ["trace"])],
        "body", [vi("i", I64, []), vi("c", B, []), vi("v_in", F, [None])],
        [vi("cond_out", B, []), vi("v_out", F, [None]), vi("trace", F, [])])
    nodes = [helper.make_node("Loop", ["m" if with_trip_count else "", "c0", "v0"], ["v", "traces"], body=body)]
    inputs = [vi("c0", B, []), vi("v0", F, [3]), vi("limit", F, [])]
    if with_trip_count:
        inputs.insert(0, vi("m", I64, []))
    inits = [helper.make_tensor("two", F, [], [2.0])]
    return make_model(nodes, inputs, [vi("v", F), vi("traces", F)], inits)


@pytest.mark.parametrize("with_trip_count", [True, False])
def test_loop_while_condition_from_the_body(onnx_case, with_trip_count):
    """onnxruntime only: it stacks the scalar scan output into [iterations]; onnx.reference makes
    it [iterations, 1] (the spec says the values are stacked, as onnxruntime does)."""
    feeds = []
    for m, limit, c0 in ((10, 100.0, True), (3, 1e6, True), (10, 5.0, False), (10, 0.5, True)):
        f = {"c0": np.array(c0), "v0": np.array([0.25, 1.0, 0.5], np.float32), "limit": np.array(limit, np.float32)}
        if with_trip_count:
            f["m"] = np.array(m, np.int64)
        elif limit > 1e5:
            continue
        feeds.append(f)
    check(onnx_case, while_model(with_trip_count), feeds, use_reference=False)


def test_loop_body_with_data_dependent_shapes(onnx_case):
    """mmdeploy-style per-batch post-processing: a Loop over the batch whose body keeps the
    scores above a threshold (NonZero + Gather) and takes the top 2 (TopK); the carried value is
    a running count."""
    body = helper.make_graph(
        [helper.make_node("Gather", ["scores", "b"], ["row"], axis=0),
         helper.make_node("Greater", ["row", "thr"], ["mask"]),
         helper.make_node("NonZero", ["mask"], ["nz"]),
         helper.make_node("Squeeze", ["nz", "zero"], ["keep"]),
         helper.make_node("Gather", ["row", "keep"], ["kept"], axis=0),
         helper.make_node("TopK", ["row", "two"], ["top", "top_i"]),
         helper.make_node("Shape", ["keep"], ["n_keep"]),
         helper.make_node("Add", ["count_in", "n_keep"], ["count_out"]),
         helper.make_node("Identity", ["c"], ["c_out"])],
        "body", [vi("b", I64, []), vi("c", B, []), vi("count_in", I64, [1])],
        [vi("c_out", B, []), vi("count_out", I64, [1]), vi("top_i", I64, [2])])
    nodes = [helper.make_node("Shape", ["scores"], ["shape"]),
             helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
             helper.make_node("Squeeze", ["n"], ["n_scalar"]),
             helper.make_node("Loop", ["n_scalar", "", "count0"], ["count", "tops"], body=body)]
    inits = [helper.make_tensor("zero", I64, [1], [0]), helper.make_tensor("two", I64, [1], [2]),
             helper.make_tensor("thr", F, [], [0.3]), helper.make_tensor("count0", I64, [1], [0])]
    model = make_model(nodes, [vi("scores", F, ["b", 9])], [vi("count", I64), vi("tops", I64)], inits)
    rng = rng_for("loop-dynamic")
    # onnxruntime only: onnx.reference's Loop fails on this body (numpy concatenate of nothing).
    check(onnx_case, model, [{"scores": rng.uniform(0, 1, (n, 9)).astype(np.float32)} for n in (2, 5, 2)],
          use_reference=False)


# ---------------------------------------------------------------------------------------------
# Hostile


def test_loop_that_never_ends_hits_the_iteration_limit(onnx_case, monkeypatch):
    monkeypatch.setenv("DEFORMRT_LOOP_ITERATION_LIMIT", "1000")
    body = helper.make_graph([helper.make_node("Identity", ["c"], ["c_out"])], "body",
                             [vi("i", I64, []), vi("c", B, [])], [vi("c_out", B, [])])
    nodes = [helper.make_node("Loop", ["", "c0"], [], body=body, name="forever"),
             helper.make_node("Loop", ["", "c0", "x"], ["y"], name="forever2",
                              body=helper.make_graph([helper.make_node("Identity", ["c"], ["c_out"]),
                                                      helper.make_node("Identity", ["v"], ["v_out"])], "b2",
                                                     [vi("i", I64, []), vi("c", B, []), vi("v", F, [None])],
                                                     [vi("c_out", B, []), vi("v_out", F, [None])]))]
    model = make_model(nodes, [vi("c0", B, []), vi("x", F, [2])], [vi("y", F)])
    with pytest.raises(deformrt.DeformRTError, match="forever2.*1000 iterations.*DEFORMRT_LOOP_ITERATION_LIMIT"):
        onnx_case.run(model, {"c0": np.array(True), "x": np.zeros(2, np.float32)})
    # A false condition ends it at once.
    got = onnx_case.run(model, {"c0": np.array(False), "x": np.ones(2, np.float32)})
    np.testing.assert_array_equal(got[0], np.ones(2, np.float32))


def test_if_branches_disagreeing_in_output_count_is_a_clear_error(onnx_case):
    with pytest.raises(deformrt.DeformRTError, match="the_if.*then_branch has 2 outputs and else_branch 1"):
        onnx_case.run(if_model(then_outputs=2, else_outputs=1), {"x": np.ones((3, 4), np.float32),
                                                                  "k": np.array([1], np.int64)})


def test_if_condition_that_is_not_one_bool(onnx_case):
    then_graph = helper.make_graph([helper.make_node("Neg", ["x"], ["o"])], "t", [], [vi("o", F)])
    else_graph = helper.make_graph([helper.make_node("Abs", ["x"], ["o2"])], "e", [], [vi("o2", F)])
    nodes = [helper.make_node("If", ["c"], ["y"], then_branch=then_graph, else_branch=else_graph, name="bad_if")]
    model = make_model(nodes, [vi("x", F, [2]), vi("c", B, [None])], [vi("y", F)])
    with pytest.raises(deformrt.DeformRTError, match="bad_if.*cond must be one bool"):
        onnx_case.run(model, {"x": np.ones(2, np.float32), "c": np.array([True, False])})


def test_subgraph_errors_name_the_node_and_the_subgraph(onnx_case):
    then_graph = helper.make_graph([helper.make_node("NoSuchOp", ["x"], ["o"])], "t", [], [vi("o", F)])
    else_graph = helper.make_graph([helper.make_node("Abs", ["x"], ["o2"])], "e", [], [vi("o2", F)])
    nodes = [helper.make_node("If", ["c"], ["y"], then_branch=then_graph, else_branch=else_graph, name="outer_if")]
    model = make_model(nodes, [vi("x", F, [2]), vi("c", B, [])], [vi("y", F)])
    with pytest.raises(deformrt.DeformRTError, match="outer_if.*then_branch.*NoSuchOp"):
        onnx_case.run(model, {"x": np.ones(2, np.float32), "c": np.array(True)})
    # A name no scope defines: an error naming the If that reads it.
    else_graph = helper.make_graph([helper.make_node("Abs", ["nowhere"], ["o2"])], "e", [], [vi("o2", F)])
    nodes = [helper.make_node("If", ["c"], ["y"], then_branch=else_graph, else_branch=else_graph, name="outer_if")]
    model = make_model(nodes, [vi("x", F, [2]), vi("c", B, [])], [vi("y", F)])
    with pytest.raises(deformrt.DeformRTError, match="outer_if.*nowhere"):
        onnx_case.run(model, {"x": np.ones(2, np.float32), "c": np.array(True)})


def nested_ifs(depth: int) -> bytes:
    graph = helper.make_graph([helper.make_node("Neg", ["x"], ["o0"])], "leaf", [], [vi("o0", F)])
    for level in range(1, depth + 1):
        leaf = helper.make_graph([helper.make_node("Abs", ["x"], [f"a{level}"])], "leaf", [], [vi(f"a{level}", F)])
        node = helper.make_node("If", ["c"], [f"o{level}"], then_branch=graph, else_branch=leaf)
        graph = helper.make_graph([node], f"level{level}", [], [vi(f"o{level}", F)])
    main = helper.make_graph(list(graph.node), "main", [vi("x", F, [2]), vi("c", B, [])], [vi(f"o{depth}", F)])
    model = helper.make_model(main, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.mark.parametrize("depth", [18, 300])
def test_deep_nesting_is_a_clean_error(onnx_case, depth):
    """18 levels: DeformRT's limit (16); 300: over the protobuf decoder's depth limit first. The
    300-deep file is written by hand (python's protobuf refuses to serialise it)."""
    if depth == 18:
        data = nested_ifs(depth)
    else:
        data = nested_bytes(depth)
    with pytest.raises(deformrt.DeformRTError, match="nested more than 16 levels|protobuf decoding failed"):
        with deformrt.InferenceSession(data, threads=1):
            pass


def nested_bytes(depth: int) -> bytes:
    """A model whose main graph nests `depth` If nodes, serialised field by field (each level is
    NodeProto.attribute -> AttributeProto.g -> GraphProto.node)."""
    def field(number, payload):
        key = (number << 3) | 2
        out = bytearray([key])
        n = len(payload)
        while True:
            b = n & 0x7F
            n >>= 7
            out.append(b | (0x80 if n else 0))
            if not n:
                break
        return bytes(out) + payload
    leaf = helper.make_graph([helper.make_node("Neg", ["x"], ["o"])], "leaf", [], [vi("o", F)]).SerializeToString()
    graph = leaf
    for _ in range(depth):
        attribute = field(1, b"then_branch") + bytes([0x20, 5]) + field(6, graph)  # name, type GRAPH, g
        node = field(1, b"c") + field(2, b"o") + field(4, b"If") + field(5, attribute)
        graph = field(1, node) + field(2, b"g")
    opset = helper.make_opsetid("", 17).SerializeToString()
    return bytes([0x08, 8]) + field(7, graph) + field(8, opset)


def test_moderate_nesting_runs(onnx_case):
    feeds = {"x": np.array([1.0, -2.0], np.float32), "c": np.array(True)}
    check(onnx_case, nested_ifs(6), [feeds], use_reference=True)
