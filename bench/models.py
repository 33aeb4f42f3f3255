#!/usr/bin/env python3
"""Whole networks, batch 1: DeformRT vs onnxruntime vs OpenVINO on the three ResNet-50s of
tools/make_resnet_models.py (plain, DCNv2 in c3-c5, DCNv1 in c5) at 224x224 and 512x512, on the
small nets exported from PyTorch in Tests/vectors/exported, on issue 9's networks (group
`issue9`: DBNet, CRNN, CenterNet and Faster R-CNN heads, an int8 DBNet) at realistic sizes, and on
a MobileNetV2 and a MobileNetV3-Large (group `mobile`, tools/make_mobilenet_model.py) at 224x224.

    python3 bench/models.py                                   # every model, 224 and 512, 1 and 2 threads
    python3 bench/models.py --models resnet50_dcnv2 --sizes 224 --runs 20
    python3 bench/models.py --models issue9                   # a group: resnets, exported, issue9, mobile
    python3 bench/models.py --quick                           # smoke test
    python3 bench/models.py --library /path/to/libdeformrt.so

Each system runs in its own process, one per model, input size and thread count; see bench/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

import _common
from _common import System

RESNETS = ("resnet50", "resnet50_dcnv2", "resnet50_dcnv1")
RESNET_SCRIPT = _common.REPO_ROOT / "tools" / "make_resnet_models.py"
RESNET_DIR = _common.REPO_ROOT / "build" / "models"
EXPORTED_DIR = _common.REPO_ROOT / "Tests" / "vectors" / "exported"
EXPORTED = tuple(sorted(path.stem for path in EXPORTED_DIR.glob("*.onnx")))
TOOLS_DIR = _common.REPO_ROOT / "tools"
# Issue 9's networks, built by the committed tools scripts at the sizes their users run them:
# name -> (tools script, what the input is).
ISSUE9 = {
    "dbnet": ("make_dbnet_model.py", "640x640 image, width 32, FPN 64"),
    "crnn": ("make_crnn_model.py", "32x320 text line"),
    "centernet": ("make_detection_heads.py", "64x128x128 features (a 512x512 image at stride 4), 80 classes, top 100"),
    "faster_rcnn": ("make_detection_heads.py", "64x128x128 features, 1000 proposals x 20 classes, NMS, RoiAlign 7x7"),
    "dbnet_int8": ("make_quantized_models.py", "dbnet quantize_static'ed (QOperator, per channel), 640x640"),
    # Not issue 9's, built the same way: depthwise convolutions and widths that are not multiples of 16.
    "mobilenet_v2": ("make_mobilenet_model.py", "224x224 image, width 1.0, 1000 classes, BatchNormalization unfused"),
    "mobilenet_v3_large": ("make_mobilenet_model.py", "224x224 image, HardSwish, squeeze-and-excite, 5x5 depthwise"),
}
MODELS = RESNETS + EXPORTED + tuple(ISSUE9)
# onnxruntime's default (level 99) graph optimisations rewrite the int8 DBNet's QDQ chains and round
# differently from its own unoptimised graph (max difference 0.04 on the probabilities at 640x640,
# where level 1 and no optimisation agree exactly): the correctness check runs onnxruntime at
# level 1 (basic) for these models. Timing always uses its default.
BASIC_REFERENCE = ("dbnet_int8",)
# int8 models: the float ops between the quantized ones (Resize's linear interpolation, additions)
# round in another order than onnxruntime's, by ~1 ulp, and a value that lands on a
# QuantizeLinear's rounding boundary then moves one int8 step (0.02 on DBNet's probabilities
# for 234 of its 409,600 output elements at seed 7). So these are checked by the share of output
# elements beyond the float tolerance, at most 0.1%, with the largest difference printed.
QUANTIZED = ("dbnet_int8",)
QUANTIZED_FRACTION = 1e-3
# Models OpenVINO cannot read, with its error: left out of its column, said in the footer.
OPENVINO_CANNOT = {
    "dbnet_int8": "OpenVINO 2026.4's ONNX reader refuses its first QLinearConv (per-channel scales on a "
                  "3-channel input: \"number of dequantization scale elements '32' must match the input shape "
                  "dimension '3'\")",
}
MOBILE = ("mobilenet_v2", "mobilenet_v3_large")
GROUPS = {"resnets": RESNETS, "exported": EXPORTED, "issue9": tuple(name for name in ISSUE9 if name not in MOBILE),
          "mobile": MOBILE}
SIZES = (224, 512)
QUICK_SIZES = (224,)
SYSTEMS = ["deformrt", "onnxruntime", "openvino"]

DEFAULT_RUNS = 10       # whole networks: fewer than the single-layer benches' 15, still >= 5
DEFAULT_WARMUP = 2
IMAGE_SEED = 7
# DeformRT vs onnxruntime: |difference| <= ATOL + RTOL * max |onnxruntime output|. The ResNets'
# logits reach ~10-50 after ~55 float32 layers whose sums both runtimes order differently.
ATOL = 1e-3
RTOL = 1e-3


# ----------------------------------------------------------------------------- cases

@dataclasses.dataclass(frozen=True)
class Case:
    """One model on one input: what a worker times."""
    name: str              # model@input, the key in results
    model: str             # the model's name (a --models entry)
    path: str              # the ONNX file DeformRT and onnxruntime run
    input: str             # the input shape(s) as shown in the tables
    feeds: str             # .npz with the inputs, written by the driver so every process sees the same
    openvino_path: str     # the ONNX file OpenVINO reads (DeformConv rewritten), or "" if not written


def ensure_resnet(name: str) -> Path:
    """build/models/<name>.onnx, written by tools/make_resnet_models.py when missing or older than
    the script (it also verifies the model in onnxruntime)."""
    path = RESNET_DIR / f"{name}.onnx"
    if not path.exists() or path.stat().st_mtime < RESNET_SCRIPT.stat().st_mtime:
        _common.progress(f"writing {path} with {RESNET_SCRIPT.relative_to(_common.REPO_ROOT)}")
        subprocess.run([sys.executable, str(RESNET_SCRIPT), "--models", name, "--out", str(RESNET_DIR)],
                       check=True, cwd=_common.REPO_ROOT, stdout=sys.stderr)
    return path


def tool_module(script: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(Path(script).stem, TOOLS_DIR / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def issue9_model(name: str):
    """The ModelProto of an issue 9 network, made by its tools script."""
    script = ISSUE9[name][0]
    tool = tool_module(script)
    if name == "dbnet":
        return tool.build(0, width=32, inner=64)
    if name == "crnn":
        return tool.build_crnn()
    if name == "centernet":
        return tool.centernet_head(channels=64, classes=80, height=128, width=128, k=100)
    if name == "faster_rcnn":
        return tool.faster_rcnn_head(channels=64, classes=20, pooled=7, hidden=256)
    if name == "dbnet_int8":
        return tool.quantized_dbnet(side=640, width=32, inner=64)
    if name == "mobilenet_v2":
        return tool.build_mobilenet_v2()
    if name == "mobilenet_v3_large":
        return tool.build_mobilenet_v3_large()
    raise KeyError(name)


def ensure_issue9(name: str) -> Path:
    """build/models/<name>.onnx, made when missing or older than its tools script (or this one)."""
    import onnx

    path = RESNET_DIR / f"{name}.onnx"
    sources = [TOOLS_DIR / ISSUE9[name][0], Path(__file__)] + ([TOOLS_DIR / "make_dbnet_model.py"] if name == "dbnet_int8" else [])
    if not path.exists() or path.stat().st_mtime < max(source.stat().st_mtime for source in sources):
        _common.progress(f"writing {path} with tools/{ISSUE9[name][0]}")
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(issue9_model(name), str(path))
    return path


def issue9_feeds(name: str) -> Dict[str, np.ndarray]:
    """Fixed-seed inputs: N(0, 1) images and features; for Faster R-CNN 1000 proposals inside a
    512x512 image (y1, x1, y2, x2), scores U(0, 1), at most 100 boxes per class, IoU 0.5, score 0.05."""
    rng = np.random.default_rng(IMAGE_SEED)
    if name in ("dbnet", "dbnet_int8"):
        return {"image": rng.standard_normal((1, 3, 640, 640), dtype=np.float32)}
    if name == "crnn":
        return {"image": rng.standard_normal((1, 1, 32, 320), dtype=np.float32)}
    if name in MOBILE:
        return {"image": rng.standard_normal((1, 3, 224, 224), dtype=np.float32)}
    if name == "centernet":
        # Scaled so that the heatmap logits are O(1): at N(0, 1) most sigmoids round to exactly 1.0
        # and TopK's choice among the ties is arbitrary.
        return {"feat": 0.05 * rng.standard_normal((1, 64, 128, 128), dtype=np.float32)}
    if name == "faster_rcnn":
        corner = rng.uniform(0, 448, (1, 1000, 2))
        size = rng.uniform(16, 160, (1, 1000, 2))
        boxes = np.concatenate([corner, np.minimum(corner + size, 512)], axis=2).astype(np.float32)
        return {"feat": rng.standard_normal((1, 64, 128, 128), dtype=np.float32), "boxes": boxes,
                "scores": rng.uniform(0, 1, (1, 20, 1000)).astype(np.float32),
                "max_out": np.array([100], np.int64), "iou": np.array([0.5], np.float32),
                "score_thr": np.array([0.05], np.float32)}
    raise KeyError(name)


def exported_feeds(name: str) -> Dict[str, np.ndarray]:
    """The inputs stored next to an exported model, cut to batch 1 where the batch is dynamic."""
    import onnx

    model = onnx.load(str(EXPORTED_DIR / f"{name}.onnx"), load_external_data=False)
    data = np.load(EXPORTED_DIR / f"{name}.npz")
    feeds = {}
    initializers = {tensor.name for tensor in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        array = data[value.name]
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value") and array.shape[0] > 1:
            array = array[:1]
        feeds[value.name] = np.ascontiguousarray(array)
    return feeds


def describe_feeds(feeds: Mapping[str, np.ndarray]) -> str:
    return ", ".join("x".join(str(dim) for dim in array.shape) for array in feeds.values())


def openvino_onnx_model(source: Path, target: Path) -> int:
    """Writes `source` to `target` with every ai.onnx DeformConv replaced by OpenVINO's ONNX
    extension op org.openvinotoolkit::DeformableConv2D(X, offset, W[, mask]) (OpenVINO's ONNX reader
    has no DeformConv), plus an Add for the bias when there is one. Returns how many were replaced.

    The frontend reads strides, pads, dilations, group and deformable_groups (plural: an attribute
    spelt deformable_group is silently ignored); it has no bilinear_interpolation_pad attribute, so
    openvino_session() sets that on the converted ops."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    nodes, replaced = [], 0
    for node in model.graph.node:
        if node.op_type != "DeformConv" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        replaced += 1
        attributes = {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}
        x, weight, offset, bias, mask = (list(node.input) + [""] * 5)[:5]
        spatial = 2
        output = f"{node.output[0]}.without_bias" if bias else node.output[0]
        nodes.append(helper.make_node(
            "DeformableConv2D", [x, offset, weight] + ([mask] if mask else []), [output],
            name=f"{node.name or node.output[0]}.openvino", domain="org.openvinotoolkit",
            strides=attributes.get("strides", [1] * spatial), pads=attributes.get("pads", [0] * 2 * spatial),
            dilations=attributes.get("dilations", [1] * spatial), group=attributes.get("group", 1),
            deformable_groups=attributes.get("offset_group", 1)))
        if bias:
            if bias in initializers:
                values = numpy_helper.to_array(initializers[bias]).reshape(1, -1, 1, 1)
                bias_4d = f"{bias}.nchw"
                if bias_4d not in initializers:
                    initializers[bias_4d] = numpy_helper.from_array(values, bias_4d)
                    model.graph.initializer.append(initializers[bias_4d])
            else:  # a computed bias: reshape it in the graph
                shape = f"{node.output[0]}.bias_shape"
                model.graph.initializer.append(numpy_helper.from_array(np.array([1, -1, 1, 1], np.int64), shape))
                bias_4d = f"{node.output[0]}.bias_nchw"
                nodes.append(helper.make_node("Reshape", [bias, shape], [bias_4d]))
            nodes.append(helper.make_node("Add", [output, bias_4d], [node.output[0]]))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.opset_import.append(helper.make_opsetid("org.openvinotoolkit", 1))
    onnx.save(model, str(target))
    return replaced


def count_deform_convs(path: Path) -> int:
    import onnx

    return sum(node.op_type == "DeformConv" for node in onnx.load(str(path), load_external_data=False).graph.node)


def make_cases(models: Sequence[str], sizes: Sequence[int], folder: Path, openvino: bool) -> List[Case]:
    """Writes each case's inputs (and OpenVINO's model) into `folder`."""
    cases = []
    rewritten: Dict[str, str] = {}
    for model in models:
        if model in RESNETS:
            path = ensure_resnet(model)
            inputs = [(f"{model}@{size}", {"image": np.random.default_rng(IMAGE_SEED + size).standard_normal(
                (1, 3, size, size), dtype=np.float32)}) for size in sizes]
        elif model in ISSUE9:
            path = ensure_issue9(model)
            inputs = [(model, issue9_feeds(model))]
        else:
            path = EXPORTED_DIR / f"{model}.onnx"
            inputs = [(model, exported_feeds(model))]
        if openvino and model not in rewritten:
            if count_deform_convs(path):
                target = folder / f"{model}.openvino.onnx"
                openvino_onnx_model(path, target)
                rewritten[model] = str(target)
            else:
                rewritten[model] = str(path)
        for name, feeds in inputs:
            feeds_path = folder / f"{name.replace('@', '_')}.npz"
            np.savez(feeds_path, **feeds)
            cases.append(Case(name, model, str(path), describe_feeds(feeds), str(feeds_path),
                              rewritten.get(model, "")))
    return cases


# ----------------------------------------------------------------------------- the worker

def openvino_session(path: str, feeds: Mapping[str, np.ndarray], threads: int) -> _common.Runner:
    """Reads the rewritten model, gives its deformable convolutions the ONNX border rule
    (bilinear_interpolation_pad, which the ONNX extension op cannot express), fixes the input
    shapes to the feeds' (the models' H and W are dynamic) and compiles it."""
    import openvino as ov

    model = ov.Core().read_model(path)
    for op in model.get_ordered_ops():
        if op.get_type_name() == "DeformableConvolution":
            op.set_attribute("bilinear_interpolation_pad", True)
    model.reshape({name: list(array.shape) for name, array in feeds.items()})
    return _common.openvino_runner(model, feeds, threads)


def peak_rss_mib() -> float:
    """This process's peak resident set, MiB. On Linux VmHWM from /proc/self/status: the high-water
    mark of this program's own address space. getrusage's ru_maxrss is not used there because
    Linux carries it over fork and exec, so a worker's would be at least the driver's peak (the
    driver holds the 100 MB models while it rewrites them for OpenVINO)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def output_list(system: str, outputs) -> List[np.ndarray]:
    if system == "openvino":  # an OVDict in the model's output order
        return [np.asarray(value) for value in outputs.values()]
    return [np.asarray(value) for value in outputs]


def work(args: argparse.Namespace) -> None:
    """Times one system on one case and prints its JSON line."""
    threads = int(args.threads)
    with np.load(args.feeds) as data:
        feeds = {name: np.ascontiguousarray(data[name]) for name in data.files}
    start = time.perf_counter()
    if args.worker == "deformrt":
        run = _common.deformrt_runner(args.model, feeds, threads)
    elif args.worker == "onnxruntime":
        run = _common.onnxruntime_runner(args.model, feeds, threads)
    elif args.worker == "openvino":
        run = openvino_session(args.model, feeds, threads)
    else:
        raise SystemExit(f"unknown worker {args.worker}")
    create_ms = (time.perf_counter() - start) * 1e3
    start = time.perf_counter()
    outputs = output_list(args.worker, run())
    first_ms = (time.perf_counter() - start) * 1e3
    times = _common.measure(run, args.warmup, args.runs)
    rss_mib = peak_rss_mib()  # before onnxruntime is loaded for the check below
    result: Dict[str, object] = {"system": args.worker, "threads": threads, "case": args.case, "times_ms": times,
                                 "create_ms": create_ms, "first_run_ms": first_ms, "peak_rss_mib": rss_mib,
                                 "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if args.reference:
        del run
        if args.reference_basic:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            reference = ort.InferenceSession(args.reference, options, providers=["CPUExecutionProvider"]).run(None, feeds)
        else:
            reference = _common.onnxruntime_runner(args.reference, feeds, threads)()
        if len(reference) != len(outputs):
            raise SystemExit(f"{args.worker} gave {len(outputs)} outputs, onnxruntime {len(reference)}")
        shapes = [(ours.shape, theirs.shape) for ours, theirs in zip(outputs, reference) if ours.shape != theirs.shape]
        # Outputs of different shapes (a detector keeping another number of boxes) count as infinitely far.
        result["max_abs_diff"] = float("inf") if shapes else max(
            _common.max_abs_difference(ours, theirs) for ours, theirs in zip(outputs, reference))
        result["reference_max_abs"] = max(float(np.max(np.abs(theirs))) for theirs in reference)
        if not shapes:
            limit = ATOL + RTOL * result["reference_max_abs"]
            beyond = sum(int(np.count_nonzero(~(np.abs(ours.astype(np.float64) - theirs) <= limit)))
                         for ours, theirs in zip(outputs, reference))
            result["fraction_beyond"] = beyond / max(1, sum(theirs.size for theirs in reference))
    _common.emit(result)


# ----------------------------------------------------------------------------- the driver

@dataclasses.dataclass
class Measured:
    times: Dict[tuple, List[float]] = dataclasses.field(default_factory=dict)        # (system, case, threads)
    resources: Dict[tuple, Dict[str, float]] = dataclasses.field(default_factory=dict)
    differences: Dict[tuple, Tuple[float, float]] = dataclasses.field(default_factory=dict)  # (system, case, threads)
    # The largest share of output elements beyond the float tolerance (QUANTIZED models' check).
    fractions: Dict[tuple, float] = dataclasses.field(default_factory=dict)
    failures: List[str] = dataclasses.field(default_factory=list)


def collect(systems: Sequence[System], cases: Sequence[Case], thread_counts: Sequence[int],
            args: argparse.Namespace, check: bool) -> Measured:
    """One process per (system, case, threads); the systems alternate case by case, and with
    --rounds the whole sweep repeats with the runs pooled (resources: the worst round's)."""
    measured = Measured()
    for round_index in range(args.rounds):
        if args.rounds > 1:
            _common.progress(f"round {round_index + 1} of {args.rounds}")
        for case in cases:
            for threads in thread_counts:
                for system in systems:
                    if system.skipped or (system.key == "openvino" and case.model in OPENVINO_CANNOT):
                        continue
                    model = case.openvino_path if system.key == "openvino" else case.path
                    arguments = ["--worker", system.key, "--case", case.name, "--model", model,
                                 "--feeds", case.feeds, "--runs", str(args.runs), "--warmup", str(args.warmup)]
                    if check and system.key in ("deformrt", "openvino"):
                        arguments += ["--reference", case.path]
                        if case.model in BASIC_REFERENCE:
                            arguments.append("--reference-basic")
                    try:
                        result = _common.run_worker(system.python, Path(__file__), arguments, threads,
                                                    deformrt=system.deformrt)
                    except _common.WorkerFailed as failure:
                        measured.failures.append(f"{system.label}, {case.name}, threads {threads}: {failure}")
                        _common.progress(f"  {system.label:<12} {case.name} t={threads}: FAILED")
                        continue
                    key = (system.key, case.name, threads)
                    measured.times.setdefault(key, []).extend(result["times_ms"])
                    previous = measured.resources.get(key, {})
                    measured.resources[key] = {
                        field: max(result[field], previous.get(field, 0.0))
                        for field in ("create_ms", "first_run_ms", "peak_rss_mib")}
                    if "max_abs_diff" in result:
                        worst = measured.differences.get(key, (0.0, 0.0))[0]
                        difference = result["max_abs_diff"]
                        if not difference <= worst:  # NaN is the worst
                            worst = difference
                        measured.differences[key] = (worst, result["reference_max_abs"])
                        measured.fractions[key] = max(measured.fractions.get(key, 0.0),
                                                      result.get("fraction_beyond", 1.0))
                    _common.progress(f"  {system.label:<12} {case.name} t={threads}: "
                                     f"{float(np.median(result['times_ms'])):8.2f} ms median, "
                                     f"session {result['create_ms']:.0f} ms, {result['peak_rss_mib']:.0f} MiB")
    return measured


def ratio(numerator: Optional[float], denominator: Optional[float]) -> str:
    return "—" if numerator is None or denominator is None else f"{numerator / denominator:.2f}"


def tables(measured: Measured, systems: Sequence[System], cases: Sequence[Case],
           thread_counts: Sequence[int]) -> List[str]:
    shown = [system for system in systems if not system.skipped]
    keys = [system.key for system in shown]
    medians = {key: float(np.median(values)) for key, values in measured.times.items()}

    def median(system: str, case: Case, threads: int) -> Optional[float]:
        return medians.get((system, case.name, threads))

    base_threads = min(thread_counts)
    headers = ["model", "input", "threads"] + [f"{system.label} ms" for system in shown]
    headers += [f"DeformRT/{system.label}" for system in shown if system.key != "deformrt"]
    headers.append("max abs diff DeformRT vs onnxruntime")
    if len(thread_counts) > 1:
        headers.append(f"DeformRT speed-up vs {base_threads} thread{'s' if base_threads > 1 else ''}")
    rows = []
    for case in cases:
        for threads in thread_counts:
            ours = median("deformrt", case, threads)
            row = [case.model, case.input, str(threads)]
            row += [_common.format_ms(median(key, case, threads)) for key in keys]
            row += [ratio(ours, median(key, case, threads)) for key in keys if key != "deformrt"]
            difference = measured.differences.get(("deformrt", case.name, threads))
            row.append("—" if difference is None else f"{difference[0]:.3g}")
            if len(thread_counts) > 1:
                speed_up = ratio(median("deformrt", case, base_threads), ours)
                row.append("" if threads == base_threads else speed_up + ("" if speed_up == "—" else "x"))
            rows.append(row)
    timing = _common.markdown_table(headers, rows)

    headers = ["model", "input", "threads"]
    for system in shown:
        headers += [f"{system.label} session ms", f"{system.label} first run ms", f"{system.label} peak RSS MiB"]
    rows = []
    for case in cases:
        for threads in thread_counts:
            row = [case.model, case.input, str(threads)]
            for key in keys:
                figures = measured.resources.get((key, case.name, threads))
                row += ["—"] * 3 if figures is None else [
                    f"{figures['create_ms']:.0f}", _common.format_ms(figures["first_run_ms"]),
                    f"{figures['peak_rss_mib']:.0f}"]
            rows.append(row)
    resources = _common.markdown_table(headers, rows)

    headers = ["model", "input", "threads"] + [f"{system.label} min / p25–p75 ms" for system in shown]
    rows = [[case.model, case.input, str(threads)]
            + [_common.format_spread(_common.summarize(measured.times[(key, case.name, threads)])
                                     if (key, case.name, threads) in measured.times else None)
               for key in keys]
            for case in cases for threads in thread_counts]
    spread = _common.markdown_table(headers, rows)
    return [timing, resources, spread]


def report(measured: Measured, systems: Sequence[System], cases: Sequence[Case], thread_counts: Sequence[int],
           args: argparse.Namespace, library: str) -> int:
    import deformrt

    print("## Whole networks (bench/models.py)")
    pooled = f" x {args.rounds} rounds" if args.rounds > 1 else ""
    print(f"batch 1, fp32 (dbnet_int8: int8 convolutions); median of {args.runs} runs{pooled} after a first run and {args.warmup} warm-up, "
          f"each system in its own process per model, input and thread count; DeformRT {deformrt.get_version()} "
          f"({library}); DeformRT/X = DeformRT's time / X's (below 1: DeformRT is faster); "
          f"load average at the end {_common.load_average()}")
    print()
    for table in tables(measured, systems, cases, thread_counts):
        print(table)
        print()
    status = 0
    labels = {system.key: system.label for system in systems}
    order = {case.name: index for index, case in enumerate(cases)}
    for (system, case, threads), (difference, magnitude) in sorted(
            measured.differences.items(), key=lambda item: (order[item[0][1]], item[0][2], item[0][0])):
        limit = ATOL + RTOL * magnitude
        ok = difference <= limit
        fraction = measured.fractions.get((system, case, threads), 1.0)
        model = case.split("@")[0]
        if model in QUANTIZED:
            ok = fraction <= QUANTIZED_FRACTION
            verdict = f"{100 * fraction:.3f}% of elements beyond {limit:.3g}: " + (
                "ok" if ok else f"MISMATCH (at most {100 * QUANTIZED_FRACTION:g}%)")
            status |= 0 if ok or system != "deformrt" else 1
        elif system == "deformrt":
            verdict = "ok" if ok else f"MISMATCH (tolerance {limit:.3g})"
            status |= 0 if ok else 1
        else:
            verdict = "for information" + ("" if ok else f", above DeformRT's tolerance {limit:.3g}")
        print(f"- {case}, threads {threads}: max |{labels[system]} - onnxruntime| = {difference:.3g} "
              f"(max |onnxruntime| {magnitude:.3g}) {verdict}")
    for case in cases:
        if case.model in OPENVINO_CANNOT and any(system.key == "openvino" and not system.skipped for system in systems):
            print(f"- OpenVINO does not run {case.model}: {OPENVINO_CANNOT[case.model]}")
    for case in cases:
        if case.model in BASIC_REFERENCE:
            print(f"- {case.model}: checked against onnxruntime with basic graph optimisations (its default level "
                  "rounds the int8 graph differently from its own unoptimised run)")
    status |= _common.print_skips_and_failures(
        _common.Collected({}, {}, measured.failures), systems)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "runs": args.runs, "warmup": args.warmup, "rounds": args.rounds, "library": library,
            "cases": [dataclasses.asdict(case) for case in cases],
            "timings": [{"system": system, "case": case, "threads": threads, **_common.summarize(values)}
                        for (system, case, threads), values in measured.times.items()],
            "resources": [{"system": system, "case": case, "threads": threads, **figures}
                          for (system, case, threads), figures in measured.resources.items()],
            "max_abs_diff": [{"system": system, "case": case, "threads": threads, "value": value,
                              "reference_max_abs": magnitude}
                             for (system, case, threads), (value, magnitude) in measured.differences.items()],
            "failures": measured.failures}, indent=1))
    if status:
        _common.progress("FAILED: a worker failed or DeformRT's output differs from onnxruntime's (see above)")
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"models or groups ({', '.join(GROUPS)}) to run, comma-separated (default: all: "
                             f"{','.join(MODELS)})")
    parser.add_argument("--sizes", help="ResNet input sides, comma-separated (default 224,512; --quick: 224)")
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated (default 1,2)")
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"systems to run, comma-separated (default {','.join(SYSTEMS)})")
    parser.add_argument("--runs", type=int, help=f"timed runs per measurement (default {DEFAULT_RUNS})")
    parser.add_argument("--warmup", type=int,
                        help=f"untimed runs after the first one (default {DEFAULT_WARMUP})")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the whole sweep this many times and pool the runs (default 1)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke test: {_common.QUICK_RUNS} runs after {_common.QUICK_WARMUP} warm-up, "
                             "224x224 only unless --sizes is given")
    parser.add_argument("--library", help=f"libdeformrt.so to load (default $DEFORMRT_LIBRARY, else "
                                          f"{_common.DEFAULT_LIBRARY})")
    parser.add_argument("--json", metavar="PATH", help="also write every measurement to PATH")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--feeds", help=argparse.SUPPRESS)
    parser.add_argument("--reference", help=argparse.SUPPRESS)
    parser.add_argument("--reference-basic", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runs is None:
        args.runs = _common.QUICK_RUNS if args.quick else DEFAULT_RUNS
    if args.warmup is None:
        args.warmup = _common.QUICK_WARMUP if args.quick else DEFAULT_WARMUP
    if args.runs < 1 or args.warmup < 0 or args.rounds < 1:
        raise SystemExit("--runs and --rounds must be >= 1, --warmup >= 0")
    if args.worker:
        work(args)
        return 0

    library = str(Path(args.library).resolve()) if args.library else os.environ.get(
        "DEFORMRT_LIBRARY", str(_common.DEFAULT_LIBRARY))
    if not Path(library).is_file():
        raise SystemExit(f"no DeformRT library at {library} (run `make build`, or pass --library)")
    os.environ["DEFORMRT_LIBRARY"] = library  # inherited by every worker
    models = _common.select(",".join(",".join(GROUPS.get(name, (name,))) for name in _common.parse_list(args.models)),
                            list(MODELS), "model")
    try:
        sizes = [int(size) for size in _common.parse_list(args.sizes or ",".join(
            map(str, QUICK_SIZES if args.quick else SIZES)))]
        thread_counts = _common.parse_threads(args.threads)
    except ValueError as error:
        raise SystemExit(str(error))
    if not sizes or any(size < 32 for size in sizes):
        raise SystemExit("--sizes wants input sides of at least 32")
    chosen = _common.select(args.systems, SYSTEMS, "system")
    if "deformrt" not in chosen:
        raise SystemExit("--systems must include deformrt")
    systems = [
        System("deformrt", "DeformRT", sys.executable, peer=False, deformrt=True),
        _common.python_system("onnxruntime", "onnxruntime", "onnxruntime"),
        _common.python_system("openvino", "OpenVINO", "openvino"),
    ]
    systems = [system for system in systems if system.key in chosen]
    # The driver imports the binding only to print the library's version.
    sys.path.insert(0, str(_common.REPO_ROOT / "bindings" / "python" / "src"))

    _common.progress(f"load average at the start {_common.load_average()}")
    with tempfile.TemporaryDirectory(prefix="deformrt-bench-models-") as folder:
        openvino = any(system.key == "openvino" and not system.skipped for system in systems)
        cases = make_cases(models, sizes, Path(folder), openvino)
        measured = collect(systems, cases, thread_counts, args, check=_common.importable("onnxruntime"))
    return report(measured, systems, cases, thread_counts, args, library)


if __name__ == "__main__":
    sys.exit(main())
