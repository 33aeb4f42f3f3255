"""The multi-scale deformable attention decomposition pass
(Sources/DeformRTCore/Passes/MultiScaleDeformableAttentionDecomposition.swift): the grid_sample
decomposition of mmcv's / Hugging Face transformers' multi_scale_deformable_attn_pytorch, as
torch.onnx.export writes it, runs as one fused MultiScaleDeformableAttention node.

Models: the committed torch exports in Tests/vectors/msda_exports (tools/export_msda_torch.py: the
two functions alone through the dynamo and the TorchScript exporter, and a Deformable-DETR-style
encoder layer exported with the custom op and decomposed), each with torch's own output.

What runs is read from the session's profile (node names and op types). Outputs are compared with
torch's output, with onnxruntime running the same graph, and with the same session with graph
optimisation off (the decomposition through DeformRT's GridSample).
Tolerances: the attention alone rtol 1e-5, atol 1e-5 (the fused kernel computes sample positions
from the locations directly, GridSample from 2 x - 1: float32 rounding of the positions, measured
<= 3e-7); the encoder layer rtol 1e-4, atol 1e-4 (LayerNorm and four matmuls after the attention,
measured <= 7.2e-7 against torch). A wrong level, head or weight changes outputs by O(1).
"""
from __future__ import annotations

import copy
import glob
import json
import os
import sys

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import deformrt
from deformrt import DeformRTError, GraphOptimizationLevel, SessionOptions

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EXPORTS = os.path.join(ROOT, "Tests", "vectors", "msda_exports")
sys.path.insert(0, os.path.join(ROOT, "tools"))
import deformable_decompositions as decompositions  # noqa: E402
from deformable_attention_reference import msda_reference  # noqa: E402

ALONE = dict(rtol=1e-5, atol=1e-5)
LAYER = dict(rtol=1e-4, atol=1e-4)
FUSED_OP = "ai.deformrt::MultiScaleDeformableAttention"
ALONE_EXPORTS = sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(EXPORTS, "*_?.onnx")))


def load(name):
    model = onnx.load(os.path.join(EXPORTS, name + ".onnx"))
    vectors = np.load(os.path.join(EXPORTS, name + ".npz"))
    feeds = {i.name: vectors[i.name] for i in model.graph.input}
    return model, feeds, vectors["output"]


def run(model, feeds, level=GraphOptimizationLevel.ORT_ENABLE_ALL, prefix=None, threads=2):
    """(outputs, [(node name, op type, fused node names)] of one profiled run, or None)."""
    data = model if isinstance(model, bytes) else model.SerializeToString()
    options = SessionOptions()
    options.graph_optimization_level = level
    if prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(prefix)
    with deformrt.InferenceSession(data, options, threads=threads) as session:
        outputs = session.run(None, feeds)
        ran = None
        if prefix is not None:
            with open(session.end_profiling()) as file:
                ran = [(e["name"], e["args"]["op_name"], e["args"]["fused_nodes"])
                       for e in json.load(file) if e["cat"] == "Node"]
    return outputs, ran


def ort_outputs(model, feeds):
    ort = pytest.importorskip("onnxruntime")
    data = model if isinstance(model, bytes) else model.SerializeToString()
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)


def op_types(ran):
    return [op for _, op, _ in ran]


# ---- the torch exports -------------------------------------------------------------------------

def test_every_export_is_committed():
    assert len(ALONE_EXPORTS) == 8, ALONE_EXPORTS  # {mmcv, hf} x {dynamo, legacy} x 2 configurations
    for name in ALONE_EXPORTS + ["encoder_custom_op", "encoder_custom_op_dynamo", "encoder_decomposed",
                                 "encoder_decomposed_legacy"]:
        assert os.path.getsize(os.path.join(EXPORTS, name + ".onnx")) < 200_000


@pytest.mark.parametrize("name", ALONE_EXPORTS)
def test_pass_fires_on_the_torch_export(tmp_path, name):
    model, feeds, want = load(name)
    levels = sum(n.op_type == "GridSample" for n in model.graph.node)
    (plain,), plain_ran = run(model, feeds, GraphOptimizationLevel.ORT_ENABLE_BASIC, tmp_path / "basic")
    (got,), ran = run(model, feeds, prefix=tmp_path / "all")
    # Before: the decomposition runs node by node (the TorchScript export's Shape arithmetic is
    # folded when planning); after: one fused node, holding every node it replaced.
    assert op_types(plain_ran).count("GridSample") == levels >= 3
    assert op_types(ran) == [FUSED_OP], ran
    fused = set(ran[0][2])
    assert {n.name for n in model.graph.node if n.op_type in ("GridSample", "Split", "ReduceSum", "Gather")} <= fused
    np.testing.assert_allclose(got, want, **ALONE)
    np.testing.assert_allclose(got, plain, **ALONE)
    np.testing.assert_allclose(plain, want, **ALONE)
    np.testing.assert_allclose(got, ort_outputs(model, feeds)[0], **ALONE)


def test_mmcv_and_hugging_face_exports_are_the_same_graph():
    """The two functions make the same nodes (so one pattern serves both)."""
    for exporter in ("dynamo", "legacy"):
        for config in ("a", "b"):
            mmcv = [n.op_type for n in load(f"mmcv_{exporter}_{config}")[0].graph.node]
            hf = [n.op_type for n in load(f"hf_{exporter}_{config}")[0].graph.node]
            assert mmcv == hf


@pytest.mark.parametrize("name", ["encoder_decomposed", "encoder_decomposed_legacy"])
def test_encoder_layer_decomposed(tmp_path, name):
    model, feeds, want = load(name)
    (got,), ran = run(model, feeds, prefix=tmp_path / "all")
    (plain,), plain_ran = run(model, feeds, GraphOptimizationLevel.ORT_DISABLE_ALL, tmp_path / "off")
    assert op_types(ran).count(FUSED_OP) == 1, ran
    decomposition = {"GridSample", "Gather", "Split", "Unsqueeze", "Concat", "ReduceSum", "Sub", "Shape", "Slice"}
    assert not decomposition & set(op_types(ran)), ran
    assert op_types(plain_ran).count("GridSample") == 3
    # The layer's own nodes (projections, softmax, norms, FFN) still run; the decomposition's are gone.
    assert len(ran) <= len(plain_ran) - 15
    np.testing.assert_allclose(got, want, **LAYER)
    np.testing.assert_allclose(plain, want, **LAYER)
    np.testing.assert_allclose(got, plain, **LAYER)


@pytest.mark.parametrize("name", ["encoder_custom_op", "encoder_custom_op_dynamo"])
def test_encoder_layer_custom_op(tmp_path, name):
    model, feeds, want = load(name)
    assert any(n.domain == "mmdeploy" and n.op_type == "MMCVMultiScaleDeformableAttention" for n in model.graph.node)
    (got,), ran = run(model, feeds, prefix=tmp_path / "all")
    assert op_types(ran).count("mmdeploy::MMCVMultiScaleDeformableAttention") == 1
    np.testing.assert_allclose(got, want, **LAYER)


def test_encoder_layer_both_ways_agree():
    custom, feeds, _ = load("encoder_custom_op")
    decomposed, _, _ = load("encoder_decomposed")
    (a,), _ = run(custom, feeds)
    (b,), _ = run(decomposed, feeds)
    np.testing.assert_allclose(a, b, **LAYER)


def test_threads_agree_exactly():
    model, feeds, _ = load("mmcv_dynamo_b")
    (one,), _ = run(model, feeds, threads=1)
    (three,), _ = run(model, feeds, threads=3)
    np.testing.assert_array_equal(one, three)


# ---- the bench's graph -------------------------------------------------------------------------

def signature(model):
    """The nodes as (op type, attributes that decide the result), in order; GridSample's mode
    spelt as opset 16 spells it (opset 20's "linear" is the same interpolation)."""
    out = []
    for n in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute if a.name not in ("allowzero",)}
        if n.op_type == "GridSample":
            attrs["mode"] = b"bilinear" if attrs.get("mode", b"linear") in (b"linear", b"bilinear") else attrs["mode"]
        if n.op_type == "ReduceSum":
            attrs.pop("noop_with_empty_axes", None)
        out.append((n.op_type, sorted(attrs.items())))
    return out


def test_bench_decomposition_matches_the_torch_export(tmp_path):
    """tools/deformable_decompositions.py's MSDA graph (bench/deformable_attention.py's
    "decomposed" column) is node for node the dynamo export of mmcv's function, constants
    included, so the bench measures what the pass does to an export."""
    exported, feeds, want = load("mmcv_dynamo_a")
    _, decomposed, shapes = decompositions.msda_models(2, [(5, 7), (3, 5), (1, 3)], 2, 4, 6, 2)
    ours = onnx.load_from_string(decomposed)
    assert signature(ours) == signature(exported)

    def constants(model):
        values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        return [[values[i].tolist() for i in n.input if i in values] for n in model.graph.node]
    assert constants(ours) == constants(exported)
    (got,), ran = run(decomposed, feeds, prefix=tmp_path / "bench")
    assert op_types(ran) == [FUSED_OP]
    np.testing.assert_allclose(got, want, **ALONE)


@pytest.mark.parametrize("bs,shapes,heads,dim,queries,points", [
    (1, [(10, 13), (5, 7), (3, 4), (2, 2)], 8, 32, 37, 4),
    (2, [(6, 5), (3, 3)], 3, 5, 11, 3),
    (1, [(9, 4)], 1, 1, 1, 1),
])
def test_bench_graphs_fused_against_reference(tmp_path, bs, shapes, heads, dim, queries, points):
    fused, decomposed, input_shapes = decompositions.msda_models(bs, shapes, heads, dim, queries, points)
    feeds = decompositions.random_feeds(input_shapes, seed=queries, levels=shapes)
    (got,), ran = run(decomposed, feeds, prefix=tmp_path / "p")
    assert op_types(ran) == [FUSED_OP]
    starts = np.concatenate([[0], np.cumsum([h * w for h, w in shapes])[:-1]])
    want = msda_reference(feeds["value"], np.array(shapes), starts, feeds["sampling_locations"],
                          feeds["attention_weights"])
    np.testing.assert_allclose(got, want, **ALONE)
    np.testing.assert_array_equal(got, run(fused, feeds)[0][0])


# ---- variants the pass also takes --------------------------------------------------------------

def node_named(model, name):
    return next(n for n in model.graph.node if n.name == name)


def with_slices(model):
    """value cut per level by Slice (mmdeploy's rewrite of the function) instead of one Split; the
    last level to INT64_MAX."""
    m = copy.deepcopy(model)
    split = next(n for n in m.graph.node if n.op_type == "Split")
    sizes = numpy_helper.to_array(next(i for i in m.graph.initializer if i.name == split.input[1])).tolist()
    position = list(m.graph.node).index(split)
    m.graph.node.remove(split)
    start = 0
    for level, (out, size) in enumerate(zip(split.output, sizes)):
        end = start + size if level < len(sizes) - 1 else np.iinfo(np.int64).max
        for suffix, v in (("s", start), ("e", end), ("a", 1)):
            m.graph.initializer.append(numpy_helper.from_array(np.array([v], np.int64), f"slice{level}{suffix}"))
        m.graph.node.insert(position + level, helper.make_node(
            "Slice", [split.input[0], f"slice{level}s", f"slice{level}e", f"slice{level}a"], [out], name=f"slice{level}"))
        start += size
    return m


def test_slices_instead_of_split(tmp_path):
    model, feeds, want = load("mmcv_dynamo_b")
    m = with_slices(model)
    (got,), ran = run(m, feeds, prefix=tmp_path / "s")
    assert op_types(ran) == [FUSED_OP]
    np.testing.assert_allclose(got, want, **ALONE)


def test_value_with_heads_and_dim_flattened(tmp_path):
    """value fed as [bs, keys, heads * dim]: the decomposition's flatten makes it the same graph;
    the fused node reads it as [bs, keys, heads, dim]."""
    model, feeds, want = load("mmcv_dynamo_a")
    m = copy.deepcopy(model)
    v = feeds["value"]
    m.graph.input[0].CopyFrom(helper.make_tensor_value_info("value", onnx.TensorProto.FLOAT,
                                                            [v.shape[0], v.shape[1], v.shape[2] * v.shape[3]]))
    flat = dict(feeds, value=v.reshape(v.shape[0], v.shape[1], -1))
    (got,), ran = run(m, flat, prefix=tmp_path / "f")
    assert op_types(ran) == [FUSED_OP]
    np.testing.assert_allclose(got, want, **ALONE)


def test_shared_grid_keeps_its_other_reader(tmp_path):
    """2 * x - 1 read by a graph output too: fused, and the output still computed."""
    model, feeds, want = load("mmcv_dynamo_a")
    m = copy.deepcopy(model)
    sub = next(n for n in m.graph.node if n.op_type == "Sub")
    m.graph.output.append(helper.make_tensor_value_info(sub.output[0], onnx.TensorProto.FLOAT, None))
    (got, grid), ran = run(m, feeds, prefix=tmp_path / "g")
    assert sorted(op_types(ran)) == sorted([FUSED_OP, "Mul", "Sub"])
    np.testing.assert_allclose(got, want, **ALONE)
    np.testing.assert_allclose(grid, 2 * feeds["sampling_locations"] - 1, rtol=0, atol=0)


# ---- near misses: not fused, and still right ---------------------------------------------------

def set_attribute(node, name, value):
    for a in list(node.attribute):
        if a.name == name:
            node.attribute.remove(a)
    node.attribute.append(helper.make_attribute(name, value))


def perturb_grid_sample(attribute, value, which="all"):
    def edit(m):
        samplers = [n for n in m.graph.node if n.op_type == "GridSample"]
        for n in samplers if which == "all" else samplers[1:2]:
            set_attribute(n, attribute, value)
    return edit


def set_constant(finder, value):
    def edit(m):
        node = finder(m)
        name = f"perturbed_{node.name}"
        m.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        node.input[1] = name
    return edit


def swap_inputs(op, slot):
    """Swaps input `slot` of the first two `op` nodes (e.g. level 0 and 1's Gather index)."""
    def edit(m):
        a, b = [n for n in m.graph.node if n.op_type == op][:2]
        a.input[slot], b.input[slot] = b.input[slot], a.input[slot]
    return edit


def second_output(op, which=0):
    """An intermediate the pattern makes (the `which`-th `op` node's output) is also a graph output."""
    def edit(m):
        node = [n for n in m.graph.node if n.op_type == op][which]
        m.graph.output.append(helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None))
    return edit


NEAR_MISSES = {
    "align_corners_1": perturb_grid_sample("align_corners", 1),
    "one_level_align_corners_1": perturb_grid_sample("align_corners", 1, which="one"),
    "padding_border": perturb_grid_sample("padding_mode", "border"),
    "padding_reflection_one_level": perturb_grid_sample("padding_mode", "reflection", which="one"),
    "mode_nearest": perturb_grid_sample("mode", "nearest"),
    "mode_cubic": perturb_grid_sample("mode", "cubic"),
    "times_2_5": set_constant(lambda m: next(n for n in m.graph.node if n.op_type == "Mul"), np.float32(2.5)),
    "minus_0_5": set_constant(lambda m: next(n for n in m.graph.node if n.op_type == "Sub"), np.float32(0.5)),
    "levels_gathered_out_of_order": swap_inputs("Gather", 1),
    "levels_stacked_out_of_order": lambda m: next(n for n in m.graph.node if n.op_type == "Concat").input.reverse(),
    "sum_over_queries": set_constant(lambda m: next(n for n in m.graph.node if n.op_type == "ReduceSum"),
                                     np.array([2], np.int64)),
    "sampled_values_read_outside": second_output("GridSample"),
    "weighted_samples_read_outside": second_output("Mul", which=-1),
    "image_read_outside": second_output("Reshape", which=1),
    "output_transpose_other_perm": lambda m: set_attribute(m.graph.node[-1], "perm", [1, 0, 2]),
}


@pytest.mark.parametrize("case", sorted(NEAR_MISSES))
def test_near_misses_run_unfused_and_right(tmp_path, case):
    # Configuration a has queries == levels * points (6), so summing over the queries still runs.
    model, feeds, _ = load("mmcv_dynamo_a")
    m = copy.deepcopy(model)
    NEAR_MISSES[case](m)
    want = ort_outputs(m, feeds)
    got, ran = run(m, feeds, prefix=tmp_path / "n")
    assert FUSED_OP not in op_types(ran), ran
    assert "GridSample" in op_types(ran)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_near_miss_legacy_export_with_other_flatten(tmp_path):
    """The TorchScript export's computed flatten shape taken from other dims (Shape[1:3] + [-1]
    instead of Shape[0:2] + [-1]: [keys, heads, bs * dim]) still runs but means something else:
    not fused, and the result is onnxruntime's."""
    model, feeds, _ = load("mmcv_legacy_a")
    m = copy.deepcopy(model)
    producer = {o: n for n in m.graph.node for o in n.output}
    reshape = next(n for n in m.graph.node if n.op_type == "Reshape")
    concat = producer[reshape.input[1]]
    slice_node = producer[concat.input[0]]
    assert slice_node.op_type == "Slice" and producer[slice_node.input[0]].op_type == "Shape"
    producer[slice_node.input[1]].attribute[0].t.CopyFrom(numpy_helper.from_array(np.array([1], np.int64)))
    producer[slice_node.input[2]].attribute[0].t.CopyFrom(numpy_helper.from_array(np.array([3], np.int64)))
    want = ort_outputs(m, feeds)
    got, ran = run(m, feeds, prefix=tmp_path / "l")
    assert FUSED_OP not in op_types(ran) and "GridSample" in op_types(ran)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)


def test_split_sizes_that_disagree_with_the_levels_are_refused_both_ways():
    """Split sizes that are not the images' H * W: the decomposition cannot run; the pass must not
    turn it into a graph that does (the same error class with and without optimisation)."""
    model, feeds, _ = load("mmcv_dynamo_a")
    m = copy.deepcopy(model)
    split = next(n for n in m.graph.node if n.op_type == "Split")
    set_constant(lambda _: split, np.array([30, 20, 3], np.int64))(m)
    for level in (GraphOptimizationLevel.ORT_DISABLE_ALL, GraphOptimizationLevel.ORT_ENABLE_ALL):
        with pytest.raises(DeformRTError):
            run(m, feeds, level)


def test_other_factorisation_of_locations_is_refused_by_name():
    """sampling_locations fed as [1, q, bs * heads, L, P, 2]: the decomposition's reshapes still
    run (same element counts) but mean something else; the fused node refuses it, naming itself,
    and the decomposition runs with optimisation at basic."""
    model, feeds, _ = load("mmcv_dynamo_a")
    m = copy.deepcopy(model)
    loc, w = feeds["sampling_locations"], feeds["attention_weights"]
    bs, q, heads, levels, points, _ = loc.shape
    odd = {"value": feeds["value"],
           "sampling_locations": loc.transpose(1, 0, 2, 3, 4, 5).reshape(1, q, bs * heads, levels, points, 2).copy(),
           "attention_weights": w.transpose(1, 0, 2, 3, 4).reshape(1, q, bs * heads, levels, points).copy()}
    for i, name in ((1, "sampling_locations"), (2, "attention_weights")):
        m.graph.input[i].CopyFrom(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, list(odd[name].shape)))
    with pytest.raises(DeformRTError) as caught:
        run(m, odd)
    message = str(caught.value)
    assert "sampling_locations shape" in message and "graph optimisation level basic" in message
    (plain,), _ = run(m, odd, GraphOptimizationLevel.ORT_ENABLE_BASIC)
    np.testing.assert_allclose(plain, ort_outputs(m, odd)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reshape_index,shape", [
    (1, [1 << 40, 4, 5, 7]),          # level 0's image: heads x dim x H x W overflows
    (1, [4, 4, 1 << 31, 1 << 31]),    # H x W beyond any key count
    (-1, [1 << 62, 1 << 62, 6]),      # the output reshape
    (-3, [1 << 62, 1, 6, 6]),         # the weights reshape
    (-3, [4, 1, 6, 0]),               # zero points
])
def test_hostile_reshape_constants_are_refused_without_a_crash(reshape_index, shape):
    """Huge or zero sizes in the decomposition's reshapes: the pass must neither trap on overflow
    nor fuse; the graph is refused as it would be unoptimised."""
    model, feeds, _ = load("mmcv_dynamo_a")
    m = copy.deepcopy(model)
    reshape = [n for n in m.graph.node if n.op_type == "Reshape"][reshape_index]
    set_constant(lambda _: reshape, np.array(shape, np.int64))(m)
    for level in (GraphOptimizationLevel.ORT_DISABLE_ALL, GraphOptimizationLevel.ORT_ENABLE_ALL):
        with pytest.raises(DeformRTError):
            run(m, feeds, level)
