"""The DCNv3Decomposition pass: InternImage's dcnv3_core_pytorch, exported by torch.onnx.export as
a grid_sample decomposition, runs as one fused DCNv3 node.

Models and expected outputs are torch's own (tools/export_dcnv3_models.py, committed under
Tests/vectors/dcnv3_export). The graph a session runs is read from its profile (which op types
ran). Tolerances: fused vs torch rtol 1e-4, atol 2e-5 (inputs N(0, 1), masks summing to 1 per
group, offsets N(0, 2) pixels: outputs O(1); the fused kernel computes each sampling position in
pixels, the graph in [-1, 1] grid units, a few float32 ulps apart). Fused vs the same model with
optimisation disabled (through DeformRT's GridSample): the same tolerance. Near misses (a grid
constant, GridSample's align_corners / padding_mode / mode, the Pad mode, the offset scale
changed) must not fire and must still match onnxruntime on the changed graph."""
from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import deformrt
from deformrt import GraphOptimizationLevel, SessionOptions

ROOT = pathlib.Path(__file__).resolve().parents[2]
VECTORS = ROOT / "Tests" / "vectors" / "dcnv3_export"
sys.path.insert(0, str(ROOT / "tools"))
import deformable_decompositions as decompositions  # noqa: E402

RTOL, ATOL = 1e-4, 2e-5
CORE_CASES = ["core_g2_k3", "core_g3_stride2_dilation2_scale", "core_pad0_stride2", "core_pad_h1_pad_w0",
              "core_remove_center"]


def load(name):
    vectors = np.load(VECTORS / f"{name}.npz")
    feeds = {k: vectors[k] for k in vectors.files if k not in ("output_0", "attributes")}
    attributes = json.loads(str(vectors["attributes"])) if "attributes" in vectors.files else None
    return (VECTORS / f"{name}.onnx").read_bytes(), feeds, vectors["output_0"], attributes


def run(model: bytes, feeds, level=GraphOptimizationLevel.ORT_ENABLE_ALL, prefix=None):
    """(output, [(op type, fused node names)] of the nodes that ran, or None without a prefix)."""
    options = SessionOptions()
    options.graph_optimization_level = level
    if prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(prefix)
    with deformrt.InferenceSession(model, options, threads=2) as session:
        (output,) = session.run(None, feeds)
        ran = None
        if prefix is not None:
            with open(session.end_profiling()) as file:
                ran = [(e["args"]["op_name"], e["args"]["fused_nodes"]) for e in json.load(file) if e["cat"] == "Node"]
    return output, ran


def op_types(ran):
    """Op types without their domain (the profile writes "ai.deformrt::DCNv3")."""
    return [op.split("::")[-1] for op, _ in ran]


def computing(ran):
    """The op types that ran, sorted, without Reshape (a view of its input when the plan can make
    one, and then not in the profile)."""
    return sorted(op for op in op_types(ran) if op != "Reshape")


@pytest.mark.parametrize("name", CORE_CASES)
def test_fires_on_torch_exports_and_keeps_outputs(tmp_path, name):
    model, feeds, expected, attributes = load(name)
    graph = onnx.load_from_string(model).graph
    assert [n.op_type for n in graph.node].count("GridSample") == 1
    got, ran = run(model, feeds, prefix=tmp_path / "fused")
    plain, ran_plain = run(model, feeds, GraphOptimizationLevel.ORT_DISABLE_ALL, prefix=tmp_path / "plain")
    # Before: the decomposition node by node; after: one DCNv3 plus the Expand and Reshape that
    # give offset and mask its shapes, nothing else.
    assert computing(ran_plain) == sorted(n.op_type for n in graph.node if n.op_type != "Reshape")
    assert computing(ran) == ["DCNv3", "Expand"], ran
    fused_names = next(names for op, names in ran if op.endswith("::DCNv3"))
    assert {n.name for n in graph.node} == set(fused_names)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got, plain, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(plain, expected, rtol=RTOL, atol=ATOL)


def test_fused_attributes_follow_the_graph_padding(tmp_path):
    """dcnv3_core_pytorch(pad_h=1, pad_w=0) pads H by 0 and W by 1 (F.pad's order); the fused node
    does what the graph does: equal to the custom op with pad_h=0, pad_w=1."""
    model, feeds, expected, attributes = load("core_pad_h1_pad_w0")
    assert (attributes["pad_h"], attributes["pad_w"]) == (1, 0)
    node = helper.make_node("DCNv3", ["input", "offset", "mask"], ["y"], domain="ai.deformrt", kernel_h=3, kernel_w=3,
                            pad_h=0, pad_w=1, group=attributes["group"], group_channels=attributes["group_channels"])
    custom = helper.make_model(helper.make_graph(
        [node], "swapped", [helper.make_tensor_value_info(k, onnx.TensorProto.FLOAT, v.shape) for k, v in feeds.items()],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)]),
        opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("ai.deformrt", 1)])
    want, _ = run(custom.SerializeToString(), feeds)
    got, ran = run(model, feeds, prefix=tmp_path / "p")
    assert "DCNv3" in op_types(ran)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def test_torchscript_export_fuses_with_static_shapes(tmp_path):
    """The TorchScript exporter computes the sampling base from Shape nodes at run time. With the
    declared input shapes static, StaticShapeFolding turns those into constants, ConstantFolding
    folds the base, and the pass fuses the rest as it does the dynamo export."""
    model, feeds, expected, _ = load("core_g2_k3_legacy")
    graph = onnx.load_from_string(model).graph
    assert "Shape" in [n.op_type for n in graph.node] and [n.op_type for n in graph.node].count("GridSample") == 1
    got, ran = run(model, feeds, prefix=tmp_path / "legacy")
    assert computing(ran) == ["DCNv3", "Expand"], ran
    plain, ran_plain = run(model, feeds, GraphOptimizationLevel.ORT_DISABLE_ALL, prefix=tmp_path / "plain")
    assert "GridSample" in op_types(ran_plain)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got, plain, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(plain, expected, rtol=RTOL, atol=ATOL)


def _symbolic_dims(model, axes_by_input):
    """Input dims made symbolic (named per axis, shared across inputs as the exporter's dynamic_axes
    would), and the export's intermediate shapes dropped."""
    del model.graph.value_info[:]
    for input in model.graph.input:
        for axis in axes_by_input.get(input.name, ()):
            dim = input.type.tensor_type.shape.dim[axis]
            dim.ClearField("dim_value")
            dim.dim_param = ["batch", "height", "width"][axis]


@pytest.mark.parametrize("axes", [(0,), (0, 1, 2)])
def test_torchscript_export_with_symbolic_dims_runs_unfused(tmp_path, axes):
    """Symbolic batch (or batch, H, W): the base depends on the fed shapes, nothing is folded from
    the declared ones and the graph runs through GridSample, correct for the shapes fed (torch's
    output; a batch of 1 against onnxruntime)."""
    ort = pytest.importorskip("onnxruntime")
    model_bytes, feeds, expected, _ = load("core_g2_k3_legacy")
    model = onnx.load_from_string(model_bytes)
    _symbolic_dims(model, {name: axes for name in ("input", "offset", "mask")})
    changed = model.SerializeToString()
    got, ran = run(changed, feeds, prefix=tmp_path / "symbolic")
    assert "GridSample" in op_types(ran) and "DCNv3" not in op_types(ran), ran
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    one = {k: v[:1] for k, v in feeds.items()}
    (want,) = ort.InferenceSession(changed, providers=["CPUExecutionProvider"]).run(None, one)
    got_one, _ = run(changed, one)
    np.testing.assert_allclose(got_one, want, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got_one, expected[:1], rtol=RTOL, atol=ATOL)


def _constant_node(model, output):
    return next(n for n in model.graph.node if n.op_type == "Constant" and n.output[0] == output)


def _change_constant(output, change):
    """Applies `change` to a copy of the value of the Constant node writing `output`."""
    def edit(model):
        tensor = _constant_node(model, output).attribute[0].t
        values = numpy_helper.to_array(tensor).copy()
        change(values)
        tensor.CopyFrom(numpy_helper.from_array(values))
    return edit


# The TorchScript export's base chain changed (the linspace start, one kernel-grid entry, the
# dilation factor) or its GridSample: the folded base is not a DCNv3 grid any more.
LEGACY_NEAR_MISSES = {
    "linspace start": _change_constant("/Constant_23_output_0", lambda v: v.__iadd__(0.25)),
    "kernel grid entry": _change_constant("/Constant_44_output_0", lambda v: v.__setitem__((0, 1), -0.5)),
    "dilation": _change_constant("/Constant_51_output_0", lambda v: v.__imul__(2)),
    "align_corners 1": lambda m: _set_attribute(_node(m, "GridSample"), "align_corners", 1),
}


@pytest.mark.parametrize("change", list(LEGACY_NEAR_MISSES))
def test_torchscript_near_misses_run_unfused_and_correct(tmp_path, change):
    check_near_miss(tmp_path, "core_g2_k3_legacy", LEGACY_NEAR_MISSES[change])


def _poked(tensor, fill):
    """`tensor` with the element a third of the way in set to `fill` (integer tensors:
    int(min(fill, 2**40))); None when it is empty or is integer and `fill` is not finite."""
    values = numpy_helper.to_array(tensor).copy()
    if values.size == 0:
        return None
    if values.dtype.kind == "f":
        values.reshape(-1)[values.size // 3] = fill
    elif np.isfinite(fill):
        values.reshape(-1)[values.size // 3] = int(min(fill, 2 ** 40))
    else:
        return None
    return numpy_helper.from_array(values, tensor.name)


def _check_like_onnxruntime(ort, model, feeds, label):
    """DeformRT raises DeformRTError on `model`, or gives onnxruntime's result (same shape, finite
    values compared) wherever onnxruntime runs it."""
    changed = model.SerializeToString()
    try:
        got, _ = run(changed, feeds)
    except deformrt.DeformRTError:
        return
    try:
        (want,) = ort.InferenceSession(changed, providers=["CPUExecutionProvider"]).run(None, feeds)
    except Exception:
        return  # DeformRT runs what onnxruntime refuses (e.g. Pad's negative amounts); no crash is the test
    assert got.shape == want.shape, label
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=RTOL, atol=ATOL, err_msg=label)


@pytest.mark.parametrize("fill", [np.nan, 0.0, -1.0, 1e30])
def test_torchscript_hostile_constants_never_crash(fill):
    """Every Constant node of the TorchScript export in turn with one element set to NaN, 0, -1 or
    1e30 (integers: 0, -1, 2**40): what reaches the shape folding and the fused pass (sizes, Range
    bounds, pads, the base): DeformRTError or onnxruntime's result (finite values compared)."""
    ort = pytest.importorskip("onnxruntime")
    model_bytes, feeds, _, _ = load("core_g2_k3_legacy")
    base = onnx.load_from_string(model_bytes)
    del base.graph.value_info[:]
    constants = [i for i, n in enumerate(base.graph.node) if n.op_type == "Constant"]
    for index in constants:
        model = onnx.ModelProto()
        model.CopyFrom(base)
        tensor = model.graph.node[index].attribute[0].t
        poked = _poked(tensor, fill)
        if poked is None:
            continue
        tensor.CopyFrom(poked)
        _check_like_onnxruntime(ort, model, feeds, model.graph.node[index].output[0])


def test_internimage_stage_both_ways(tmp_path):
    """The stage (stem, DCNv3 block with LayerNorm, Linear projections, GELU MLP) exported with
    the core as mmdeploy::TRTDCNv3 (dynamo and TorchScript exporters) and as the decomposition:
    all give torch's output (atol 1e-4: outputs up to 3.3 after two residual blocks); the
    decomposition runs on the fused kernel."""
    decomposed, feeds, expected, _ = load("stage_decomposed")
    custom, feeds_custom, expected_custom, _ = load("stage_custom_op")
    np.testing.assert_array_equal(expected, expected_custom)
    assert "TRTDCNv3" in [n.op_type for n in onnx.load_from_string(custom).graph.node]
    got, ran = run(decomposed, feeds, prefix=tmp_path / "decomposed")
    assert "GridSample" not in op_types(ran) and op_types(ran).count("DCNv3") == 1, op_types(ran)
    got_custom, _ = run(custom, feeds_custom)
    # The TorchScript exporter's custom op (InternImage's DCNv3Function.symbolic, as mmdeploy writes it).
    legacy, feeds_legacy, expected_legacy, _ = load("stage_custom_op_legacy")
    np.testing.assert_array_equal(expected, expected_legacy)
    got_legacy, _ = run(legacy, feeds_legacy)
    plain, _ = run(decomposed, feeds, GraphOptimizationLevel.ORT_DISABLE_ALL)
    for output in (got, got_custom, got_legacy, plain):
        np.testing.assert_allclose(output, expected, rtol=RTOL, atol=1e-4)
    np.testing.assert_allclose(got, got_custom, rtol=RTOL, atol=ATOL)


# ---- near misses: the pass must not fire, the graph must still run correctly ---------------------

def _initializer(model, predicate):
    return next(t for t in model.graph.initializer if predicate(t))


def _node(model, op_type):
    return next(n for n in model.graph.node if n.op_type == op_type)


def _set_attribute(node, name, value):
    for attribute in list(node.attribute):
        if attribute.name == name:
            node.attribute.remove(attribute)
    node.attribute.append(helper.make_attribute(name, value))


def perturb_base(model):
    base = _initializer(model, lambda t: len(t.dims) == 4 and t.dims[0] == 2 and t.data_type == onnx.TensorProto.FLOAT)
    values = numpy_helper.to_array(base).copy()
    values[0, 1, 2, 3] += 0.01
    base.CopyFrom(numpy_helper.from_array(values, base.name))


def perturb_norm(model):
    norm = _initializer(model, lambda t: list(t.dims) == [1, 1, 1, 36])
    values = numpy_helper.to_array(norm).copy()
    values[0, 0, 0, 5] *= 1.5
    norm.CopyFrom(numpy_helper.from_array(values, norm.name))


NEAR_MISSES = {
    "grid constant": perturb_base,
    "offset normaliser": perturb_norm,
    "align_corners 1": lambda m: _set_attribute(_node(m, "GridSample"), "align_corners", 1),
    "padding border": lambda m: _set_attribute(_node(m, "GridSample"), "padding_mode", "border"),
    "padding reflection": lambda m: _set_attribute(_node(m, "GridSample"), "padding_mode", "reflection"),
    "mode nearest": lambda m: _set_attribute(_node(m, "GridSample"), "mode", "nearest"),
    "Pad reflect": lambda m: _set_attribute(_node(m, "Pad"), "mode", "reflect"),
    "Pad edge": lambda m: _set_attribute(_node(m, "Pad"), "mode", "edge"),
    "mask transposed otherwise": lambda m: _set_attribute(
        [n for n in m.graph.node if n.op_type == "Transpose"][2], "perm", [0, 1, 2, 3]),
}


def check_near_miss(tmp_path, export, change):
    """The committed `export` changed by `change` (in place on its ModelProto) is not fused and
    runs through GridSample to onnxruntime's result."""
    ort = pytest.importorskip("onnxruntime")
    model_bytes, feeds, _, _ = load(export)
    model = onnx.load_from_string(model_bytes)
    change(model)
    changed = model.SerializeToString()
    (want,) = ort.InferenceSession(changed, providers=["CPUExecutionProvider"]).run(None, feeds)
    got, ran = run(changed, feeds, prefix=tmp_path / "miss")
    assert "GridSample" in op_types(ran) and "DCNv3" not in op_types(ran), ran
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("change", list(NEAR_MISSES))
def test_near_misses_run_unfused_and_correct(tmp_path, change):
    check_near_miss(tmp_path, "core_g2_k3", NEAR_MISSES[change])


# ---- the bench's hand-written graphs are the export's ---------------------------------------------

def _structure(model: onnx.ModelProto):
    """Op types, attributes and constant inputs in node order, names dropped."""
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        inputs = [("constant", constants[i]) if i in constants else ("value", None) for i in node.input]
        nodes.append((node.op_type, attributes, inputs))
    return nodes


@pytest.mark.parametrize("name", ["core_g2_k3", "core_g3_stride2_dilation2_scale", "core_pad0_stride2"])
def test_hand_written_decomposition_matches_the_torch_export(tmp_path, name):
    exported_bytes, feeds, expected, a = load(name)
    n, h, w, c = feeds["input"].shape
    assert a["kernel_h"] == a["kernel_w"] and a["pad_h"] == a["pad_w"] and a["stride_h"] == a["stride_w"]
    _, written_bytes, shapes = decompositions.dcnv3_models(
        n, h, w, a["group"], a["group_channels"], a["kernel_h"], a["stride_h"], a["pad_h"], a["dilation_h"],
        a["offset_scale"])
    exported, written = onnx.load_from_string(exported_bytes), onnx.load_from_string(written_bytes)
    assert exported.opset_import[0].version == written.opset_import[0].version
    ours, theirs = _structure(written), _structure(exported)
    assert [node[0] for node in ours] == [node[0] for node in theirs]
    for (op, our_attributes, our_inputs), (_, their_attributes, their_inputs) in zip(ours, theirs):
        assert our_attributes == their_attributes, op
        assert [kind for kind, _ in our_inputs] == [kind for kind, _ in their_inputs], op
        for (kind, ours_value), (_, theirs_value) in zip(our_inputs, their_inputs):
            if kind == "constant":
                assert ours_value.dtype == theirs_value.dtype and ours_value.shape == theirs_value.shape, op
                np.testing.assert_allclose(ours_value, theirs_value, rtol=1e-6, atol=1e-7, err_msg=op)
    got, ran = run(written_bytes, feeds, prefix=tmp_path / "written")
    assert "DCNv3" in op_types(ran) and "GridSample" not in op_types(ran)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def test_bench_sized_decomposition_fires(tmp_path):
    """The bench's dcnv3-stage3 graph (14 x 14, 20 groups of 16) runs on the fused kernel and
    equals the fused model."""
    fused, decomposed, shapes = decompositions.dcnv3_models(1, 14, 14, 20, 16)
    feeds = decompositions.random_feeds(shapes, seed=504)
    got, ran = run(decomposed, feeds, prefix=tmp_path / "bench")
    assert computing(ran) == ["DCNv3", "Expand"]
    want, _ = run(fused, feeds)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def _symbolic_input(model, name):
    """`name` with symbolic dims, and the export's intermediate shapes dropped (they name fixed sizes)."""
    del model.graph.value_info[:]
    for input in model.graph.input:
        if input.name == name:
            for axis, dim in enumerate(input.type.tensor_type.shape.dim):
                dim.ClearField("dim_value")
                dim.dim_param = f"{name}_{axis}"


def test_offset_broadcast_over_the_batch_is_kept(tmp_path):
    """The graph adds offset to a [2, Ho, Wo, G*P*2] base with broadcasting: one offset map for
    both images runs (onnxruntime), and the fused node reads it the same way (Expand)."""
    ort = pytest.importorskip("onnxruntime")
    model_bytes, feeds, _, _ = load("core_g2_k3")
    model = onnx.load_from_string(model_bytes)
    _symbolic_input(model, "offset")
    changed = model.SerializeToString()
    feeds = dict(feeds, offset=feeds["offset"][:1])
    (want,) = ort.InferenceSession(changed, providers=["CPUExecutionProvider"]).run(None, feeds)
    got, ran = run(changed, feeds, prefix=tmp_path / "broadcast")
    assert "DCNv3" in op_types(ran)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name,shape", [("offset", (2, 6, 7, 35)), ("offset", (2, 7, 6, 36)), ("mask", (2, 6, 7, 17)),
                                        ("input", (2, 6, 7, 9))])
def test_wrong_shapes_are_errors_with_and_without_the_pass(name, shape):
    """Sizes the decomposition cannot take: an error naming a node either way, never a crash."""
    model_bytes, feeds, _, _ = load("core_g2_k3")
    model = onnx.load_from_string(model_bytes)
    _symbolic_input(model, name)
    changed = model.SerializeToString()
    feeds = dict(feeds, **{name: np.zeros(shape, np.float32)})
    for level in (GraphOptimizationLevel.ORT_ENABLE_ALL, GraphOptimizationLevel.ORT_DISABLE_ALL):
        with pytest.raises(deformrt.DeformRTError, match="node"):
            run(changed, feeds, level)


@pytest.mark.parametrize("fill", [np.nan, np.inf, 0.0, -1.0, 1e30])
def test_hostile_constants_never_crash(fill):
    """Every initializer of the export in turn with one element set to NaN, Inf, 0, -1 or 1e30
    (grid, normaliser, pads, reshape sizes, axes): DeformRT raises DeformRTError or gives what
    the graph computes (onnxruntime's result where onnxruntime runs it, finite values compared)."""
    ort = pytest.importorskip("onnxruntime")
    model_bytes, feeds, _, _ = load("core_g2_k3")
    base = onnx.load_from_string(model_bytes)
    del base.graph.value_info[:]
    for index in range(len(base.graph.initializer)):
        model = onnx.ModelProto()
        model.CopyFrom(base)
        tensor = model.graph.initializer[index]
        poked = _poked(tensor, fill)
        if poked is None:
            continue
        tensor.CopyFrom(poked)
        _check_like_onnxruntime(ort, model, feeds, tensor.name)
