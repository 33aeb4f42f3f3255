"""Deformable-convolution test cases: the vectors in Tests/vectors/dcn/*.npz, each wrapped in a one-node
ONNX model in the spelling the vector names. Needs numpy and onnx only.

    from dcn_cases import iter_cases
    for name, model_bytes, feeds, expected in iter_cases():
        got = session_for(model_bytes).run(None, feeds)[0]

Spellings (the node's inputs in order; attributes):
    onnx            ai.onnx DeformConv, opset 19 or 22: X, W, offset[, B][, mask] ("" for a missing B);
                    dilations, group, offset_group, pads, strides, and kernel_shape only in some cases
                    (torch.onnx.export(..., dynamo=True) leaves it out).
    mmcv_modulated  domain mmcv (sometimes mmdeploy) MMCVModulatedDeformConv2d: input, offset, mask,
                    weight[, bias]; stride, padding (2 values, or 4 as top, left, bottom, right), dilation,
                    groups, deform_groups (sometimes spelled deformable_groups), and in some cases the
                    extra attributes bias and im2col_step, which a runtime must ignore.
    mmcv            same domains, MMCVDeformConv2d: input, offset, weight; same attributes.
    openvino        domain org.openvinotoolkit DeformableConv2D: X, offset, W[, mask]; strides, pads,
                    dilations, group, deformable_groups, kernel_shape. OpenVINO's border rule, not the
                    zero-corner one: see tools/gen_dcn_vectors.py.
Weights (and bias) are initializers in some cases and graph inputs (then present in feeds) in others.

Expected outputs are float64 references rounded to float32 (OpenVINO cases: OpenVINO's float32 output),
so a float32 runtime should match to about 1e-4 (absolute, |y| stays below ~10). Cases whose name
contains "nan" or "inf" have non-finite offsets: such a sample reads 0, and the output is finite.

Run as a script (system python3) to check the models: onnx spellings against onnxruntime, openvino
spellings against OpenVINO's ONNX frontend, mmcv spellings through an equivalent ai.onnx DeformConv in
onnxruntime (onnxruntime also reads 0 for non-finite offsets, so it runs those cases too).
"""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

VECTOR_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "vectors", "dcn")
SPELLINGS = ("onnx", "mmcv_modulated", "mmcv", "openvino")
IR_VERSION = 10  # opset 22 needs IR 10; onnxruntime 1.31 and OpenVINO read it


def load_vectors(spellings=SPELLINGS) -> list[tuple[str, dict]]:
    """(case name, npz contents) for every vector of the given spellings, sorted by name."""
    out = []
    for file in sorted(os.listdir(VECTOR_DIR)):
        if not file.endswith(".npz"):
            continue
        with np.load(os.path.join(VECTOR_DIR, file)) as npz:
            vector = {key: npz[key] for key in npz.files}
        if str(vector["spelling"]) in spellings:
            out.append((file[:-4], vector))
    return out


def _ints(a) -> list[int]:
    return [int(v) for v in np.atleast_1d(a)]


def build_model(vector: dict, variant: int) -> tuple[bytes, dict]:
    """The one-node model for a vector and its feeds. `variant` picks among the equivalent forms
    (weights as initializers or inputs, opset, optional attributes) so the cases cover them all."""
    spelling = str(vector["spelling"])
    kh, kw = vector["w"].shape[2:]
    strides, pads, dilations = _ints(vector["strides"]), _ints(vector["pads"]), _ints(vector["dilations"])
    group, offset_group = int(vector["group"]), int(vector["offset_group"])
    has_mask, has_bias = "mask" in vector, "b" in vector
    domain, version = "", 19
    # node input slot -> (graph name, npz key); None marks an omitted optional input
    if spelling == "onnx":
        op_type = "DeformConv"
        version = 22 if variant % 3 == 1 else 19
        names = ["X", "W", "offset", "B", "mask"]
        slots = [("X", "x"), ("W", "w"), ("offset", "offset"),
                 ("B", "b") if has_bias else None, ("mask", "mask") if has_mask else None]
        attrs = dict(dilations=dilations, group=group, offset_group=offset_group, pads=pads,
                     strides=strides)
        if variant % 4 < 2:
            attrs["kernel_shape"] = [kh, kw]
    elif spelling in ("mmcv_modulated", "mmcv"):
        domain = "mmdeploy" if variant % 3 == 2 else "mmcv"
        version = 1
        if spelling == "mmcv_modulated":
            op_type = "MMCVModulatedDeformConv2d"
            slots = [("input", "x"), ("offset", "offset"), ("mask", "mask"), ("weight", "w"),
                     ("bias", "b") if has_bias else None]
        else:
            op_type = "MMCVDeformConv2d"
            slots = [("input", "x"), ("offset", "offset"), ("weight", "w")]
        symmetric = pads[:2] == pads[2:]
        padding = pads if variant % 3 == 1 or not symmetric else pads[:2]
        groups_name = "deformable_groups" if variant % 5 == 3 else "deform_groups"
        attrs = {"stride": strides, "padding": padding, "dilation": dilations, "groups": group,
                 groups_name: offset_group}
        if variant % 4 >= 2:  # what mmcv's exporter also writes; meaningless to a runtime
            attrs.update(bias=1, im2col_step=32)
    elif spelling == "openvino":
        domain, version = "org.openvinotoolkit", 1
        op_type = "DeformableConv2D"
        slots = [("X", "x"), ("offset", "offset"), ("W", "w"), ("mask", "mask") if has_mask else None]
        attrs = dict(strides=strides, pads=pads, dilations=dilations, group=group,
                     deformable_groups=offset_group, kernel_shape=[kh, kw])
    else:
        raise ValueError(f"unknown spelling {spelling!r}")

    while slots and slots[-1] is None:
        slots.pop()
    weights_are_initializers = variant % 2 == 0
    graph_inputs, initializers, feeds = [], [], {}
    for slot in slots:
        if slot is None:
            continue
        name, key = slot
        array = vector[key]
        if key in ("w", "b") and weights_are_initializers:
            initializers.append(numpy_helper.from_array(array, name))
        else:
            graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(array.shape)))
            feeds[name] = array
    output_name = "Y" if spelling in ("onnx", "openvino") else "output"
    node = helper.make_node(op_type, ["" if s is None else s[0] for s in slots], [output_name],
                            domain=domain, name=f"dcn_{spelling}", **attrs)
    graph = helper.make_graph(
        [node], "dcn", graph_inputs,
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, list(vector["y"].shape))],
        initializer=initializers)
    opsets = [helper.make_opsetid("", 22 if version == 22 else 19)]
    if domain:
        opsets.append(helper.make_opsetid(domain, version))
    model = helper.make_model(graph, opset_imports=opsets, ir_version=IR_VERSION,
                              producer_name="deformrt-tests")
    return model.SerializeToString(), feeds


def iter_cases(spellings=SPELLINGS) -> Iterator[tuple[str, bytes, dict, np.ndarray]]:
    """Yields (name, model_bytes, feeds, expected) for every vector, e.g. "onnx_group2"."""
    counters = dict.fromkeys(SPELLINGS, 0)
    for name, vector in load_vectors(spellings):
        spelling = str(vector["spelling"])
        model_bytes, feeds = build_model(vector, counters[spelling])
        counters[spelling] += 1
        yield name, model_bytes, feeds, vector["y"]


# ---------------------------------------------------------------------------------------------------
# Self-check against independent runtimes (not needed by the tests)
# ---------------------------------------------------------------------------------------------------

def _as_ai_onnx(model_bytes: bytes) -> bytes:
    """An mmcv-spelled model rewritten as ai.onnx DeformConv, to run it in onnxruntime."""
    model = onnx.load_from_string(model_bytes)
    node = model.graph.node[0]
    a = {attr.name: helper.get_attribute_value(attr) for attr in node.attribute}
    padding = list(a["padding"])
    pads = padding * 2 if len(padding) == 2 else padding
    inputs = list(node.input)
    if node.op_type == "MMCVModulatedDeformConv2d":
        x, offset, mask, weight = inputs[:4]
        bias = inputs[4] if len(inputs) > 4 else ""
        new_inputs = [x, weight, offset, bias, mask]
    else:
        x, offset, weight = inputs
        new_inputs = [x, weight, offset]
    offset_group = a.get("deform_groups", a.get("deformable_groups", 1))
    new = helper.make_node("DeformConv", new_inputs, list(node.output), strides=list(a["stride"]),
                           pads=pads, dilations=list(a["dilation"]), group=a["groups"],
                           offset_group=offset_group)
    del model.graph.node[:]
    model.graph.node.append(new)
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("", 19))
    return model.SerializeToString()


def _check() -> None:
    import tempfile

    import onnxruntime as ort
    import openvino as ov

    core = ov.Core()
    worst: dict[str, float] = {}
    counts: dict[str, int] = {}
    skipped = []
    for name, model_bytes, feeds, expected in iter_cases():
        spelling = next(s for s in ("mmcv_modulated", "mmcv", "onnx", "openvino") if name.startswith(s + "_"))
        counts[spelling] = counts.get(spelling, 0) + 1
        assert np.isfinite(expected).all(), name
        offsets_finite = np.isfinite(feeds["offset"]).all()
        if spelling == "openvino":
            if not offsets_finite:  # OpenVINO returns NaN or crashes on these
                skipped.append(name)
                continue
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "m.onnx")
                with open(path, "wb") as f:
                    f.write(model_bytes)
                compiled = core.compile_model(core.read_model(path), "CPU",
                                              {"INFERENCE_PRECISION_HINT": "f32"})
                got = compiled(feeds)[0]
        else:
            if spelling != "onnx":
                model_bytes = _as_ai_onnx(model_bytes)
            # onnxruntime 1.31 reads 0 for non-finite positions too, so those cases run here as well
            session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
            got = session.run(None, feeds)[0]
        err = float(np.max(np.abs(got - expected)))
        assert got.shape == expected.shape and err <= 1e-4, f"{name}: error {err:g}"
        worst[spelling] = max(worst.get(spelling, 0.0), err)
    print("cases:", counts)
    print("max |runtime - expected| per spelling:", worst)
    print("not run (OpenVINO cannot take non-finite offsets):", skipped)


if __name__ == "__main__":
    _check()
