#!/usr/bin/env python3
"""RoI pooling heads of issue 4, batch 1, fp32: DeformRT vs onnxruntime and OpenVINO.

    python3 bench/roi_pool.py                      # all heads, 1 and 2 threads
    python3 bench/roi_pool.py --layers rfcn --threads 2 --runs 30
    python3 bench/roi_pool.py --quick              # smoke test

Heads (RoIs inside the image, 16 to ~316 pixels a side, seeded; see `rois_for`):
  roialign      Faster R-CNN: ai.onnx RoiAlign-16, 256 x 50 x 68 map (stride 16), 1000 RoIs, 7x7,
                sampling_ratio 2, half_pixel, avg. Peers: onnxruntime, OpenVINO (its ONNX reader).
  maxroipool    the same head with ai.onnx MaxRoiPool 7x7. Peers: onnxruntime, OpenVINO.
  deformroipool the same head with mmcv::MMCVDeformRoIPool (offsets U(-1, 1), gamma 0.1,
                sampling_ratio 2). No peer runs it; the notes compare it with the RoiAlign head.
  rfcn          R-FCN: deformable PS RoI pooling of 7x7x81 score maps (80 classes + background,
                3969 x 38 x 50), 300 RoIs, output_dim 81, group/pooled/part 7, 4x4 samples per bin,
                trans_std 0.1, class-agnostic offsets [300, 2, 7, 7]. DeformRT: ai.deformrt::
                DeformablePSROIPooling; peer: OpenVINO opset1 deformable_psroi_pooling.
  rfcn-classes  rfcn with one offset pair per class (trans [300, 162, 7, 7]).

Each system runs in its own process with the same thread count (bench/_common.py). The DeformRT
worker checks its output after timing against the head's reference system (onnxruntime for the
ONNX heads, OpenVINO for the R-FCN heads) and the script fails above 1e-4.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

import _common
from _common import System

SYSTEMS = ["deformrt", "onnxruntime", "openvino"]
TOLERANCE = 1e-4
STRIDE = 16


@dataclasses.dataclass(frozen=True)
class Head:
    name: str
    description: str
    op: str                       # roialign | maxroipool | deformroipool | psroi
    channels: int
    height: int
    width: int
    rois: int
    pooled: int = 7
    sampling: int = 2             # sampling_ratio, or sample_per_part for psroi
    output_dim: int = 0           # psroi only
    trans_classes: int = 1        # psroi only
    peers: Tuple[str, ...] = ()
    reference: Optional[str] = None   # the system whose output DeformRT's is checked against
    seed: int = 0


HEADS = {head.name: head for head in [
    Head("roialign", "Faster R-CNN RoiAlign 256x50x68, 1000 RoIs, 7x7, sr 2", "roialign", 256, 50, 68, 1000,
         peers=("onnxruntime", "openvino"), reference="onnxruntime", seed=401),
    Head("maxroipool", "Faster R-CNN MaxRoiPool 256x50x68, 1000 RoIs, 7x7", "maxroipool", 256, 50, 68, 1000,
         peers=("onnxruntime", "openvino"), reference="onnxruntime", seed=402),
    Head("deformroipool", "Faster R-CNN MMCVDeformRoIPool 256x50x68, 1000 RoIs, 7x7, sr 2", "deformroipool",
         256, 50, 68, 1000, seed=403),
    Head("rfcn", "R-FCN deformable PSROI 81x7x7 @38x50, 300 RoIs, 4x4 samples", "psroi", 81 * 49, 38, 50, 300,
         sampling=4, output_dim=81, peers=("openvino",), reference="openvino", seed=404),
    Head("rfcn-classes", "rfcn, per-class offsets (81 pairs)", "psroi", 81 * 49, 38, 50, 300,
         sampling=4, output_dim=81, trans_classes=81, peers=("openvino",), reference="openvino", seed=405),
]}


# ----------------------------------------------------------------------------- data and models

def rois_for(head: Head, rng: np.random.Generator) -> np.ndarray:
    """[R, 4] boxes (x1, y1, x2, y2) in the image the map was computed from (map size * 16): top-left
    corners uniform, sides 16 + U(0, 300) pixels (32 + U(0, 300) for R-FCN), clipped to the image."""
    image_w, image_h = head.width * STRIDE, head.height * STRIDE
    low = 32 if head.op == "psroi" else 16
    x1 = rng.uniform(0, image_w - 88, head.rois)
    y1 = rng.uniform(0, image_h - 100, head.rois)
    x2 = np.minimum(x1 + low + rng.uniform(0, 300, head.rois), image_w - 1)
    y2 = np.minimum(y1 + low + rng.uniform(0, 300, head.rois), image_h - 1)
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)


def tensors_for(head: Head) -> Dict[str, np.ndarray]:
    """The head's inputs, identical in every process (seeded PCG64)."""
    rng = np.random.default_rng(head.seed)
    x = rng.uniform(-1, 1, (1, head.channels, head.height, head.width)).astype(np.float32)
    boxes = rois_for(head, rng)
    rois5 = np.concatenate([np.zeros((head.rois, 1), np.float32), boxes], axis=1)
    if head.op == "roialign":
        return {"x": x, "rois": boxes, "batch_indices": np.zeros(head.rois, np.int64)}
    if head.op == "maxroipool":
        return {"x": x, "rois": rois5}
    if head.op == "deformroipool":
        return {"x": x, "rois": rois5,
                "offset": rng.uniform(-1, 1, (head.rois, 2, head.pooled, head.pooled)).astype(np.float32)}
    return {"x": x, "rois": rois5,
            "trans": rng.uniform(-1, 1, (head.rois, 2 * head.trans_classes, head.pooled, head.pooled))
            .astype(np.float32)}


def onnx_model(head: Head, tensors: Mapping[str, np.ndarray]) -> bytes:
    """The head as one ONNX node with static input shapes (opset 16, IR 9)."""
    import onnx
    from onnx import TensorProto, helper

    domain = ""
    if head.op == "roialign":
        op, attrs = "RoiAlign", dict(mode="avg", coordinate_transformation_mode="half_pixel",
                                     output_height=head.pooled, output_width=head.pooled,
                                     sampling_ratio=head.sampling, spatial_scale=1 / STRIDE)
    elif head.op == "maxroipool":
        op, attrs = "MaxRoiPool", dict(pooled_shape=[head.pooled, head.pooled], spatial_scale=1 / STRIDE)
    elif head.op == "deformroipool":
        domain, op = "mmcv", "MMCVDeformRoIPool"
        attrs = dict(pooled_height=head.pooled, pooled_width=head.pooled, spatial_scale=1 / STRIDE,
                     sampling_ratio=float(head.sampling), gamma=0.1)
    else:
        domain, op = "ai.deformrt", "DeformablePSROIPooling"
        attrs = dict(output_dim=head.output_dim, group_size=head.pooled, pooled_size=head.pooled,
                     part_size=head.pooled, sample_per_part=head.sampling, spatial_scale=1 / STRIDE,
                     trans_std=0.1, no_trans=0)
    node = helper.make_node(op, list(tensors), ["y"], domain=domain, **attrs)
    inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(array.dtype), list(array.shape))
              for name, array in tensors.items()]
    out_channels = head.output_dim if head.op == "psroi" else head.channels
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, [head.rois, out_channels, head.pooled, head.pooled])
    graph = helper.make_graph([node], head.name, inputs, [output])
    opsets = [helper.make_opsetid("", 16)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets, ir_version=9)
    if not domain:
        onnx.checker.check_model(model)
    return model.SerializeToString()


def openvino_model(head: Head, tensors: Mapping[str, np.ndarray]):
    """The ONNX heads through OpenVINO's ONNX reader; the R-FCN heads built directly with
    opset1.deformable_psroi_pooling (its ONNX reader has no such operator)."""
    import openvino as ov

    if head.op != "psroi":
        return ov.Core().read_model(onnx_model(head, tensors))
    import openvino.opset1 as ops

    parameters = {name: ops.parameter(list(array.shape), np.float32, name=name) for name, array in tensors.items()}
    node = ops.deformable_psroi_pooling(
        parameters["x"], parameters["rois"], output_dim=head.output_dim, spatial_scale=1 / STRIDE,
        group_size=head.pooled, mode="bilinear_deformable", spatial_bins_x=head.sampling,
        spatial_bins_y=head.sampling, trans_std=0.1, part_size=head.pooled, offsets=parameters["trans"])
    return ov.Model([node], list(parameters.values()), head.name)


def runner(system: str, head: Head, threads: int) -> _common.Runner:
    tensors = tensors_for(head)
    if system == "deformrt":
        return _common.deformrt_runner(onnx_model(head, tensors), tensors, threads)
    if system == "onnxruntime":
        return _common.onnxruntime_runner(onnx_model(head, tensors), tensors, threads)
    if system == "openvino":
        return _common.openvino_runner(openvino_model(head, tensors), tensors, threads)
    raise SystemExit(f"unknown worker {system}")


def first_output(result) -> np.ndarray:
    """The first output of a run: a list (DeformRT, onnxruntime) or OpenVINO's OVDict."""
    return np.asarray(result[0] if isinstance(result, list) else next(iter(result.values())))


# ----------------------------------------------------------------------------- worker

def work(args: argparse.Namespace) -> None:
    threads = int(args.threads)
    result: Dict[str, object] = {"system": args.worker, "threads": threads, "layers": {}}
    checked = []
    for name in _common.parse_list(args.layers):
        run = runner(args.worker, HEADS[name], threads)
        result["layers"][name] = _common.measure(run, args.warmup, args.runs)
        if args.check and HEADS[name].reference and _common.importable(HEADS[name].reference):
            checked.append((name, first_output(run())))
        del run
    # The reference runtime is loaded only after every timing, so its threads never share the
    # process with ours while timing.
    result["max_abs_diff"] = {
        name: _common.max_abs_difference(ours, first_output(runner(HEADS[name].reference, HEADS[name], threads)()))
        for name, ours in checked}
    _common.emit(result)


# ----------------------------------------------------------------------------- driver

def collect(systems: Sequence[System], heads: Sequence, thread_counts: Sequence[int],
            args: argparse.Namespace) -> _common.Collected:
    """One process per (system, head, threads), systems interleaved, the whole sweep --rounds times
    with the runs pooled (`_common.collect`); only the systems that run a head are started for it."""
    return _common.collect(Path(__file__), systems, heads, thread_counts, args, "deformrt",
                           runs=lambda key, head: key == "deformrt" or key in head.peers)


def report(collected: _common.Collected, systems: Sequence[System], heads: Sequence[Head],
           thread_counts: Sequence[int], args: argparse.Namespace) -> int:
    shown = [system for system in systems if not system.skipped]

    def median(key: str, head: str, threads: int) -> Optional[float]:
        timing = collected.timings.get((key, head, threads))
        return None if timing is None else timing["median_ms"]

    print("## RoI pooling heads (bench/roi_pool.py)")
    pooled = f" x {args.rounds} rounds" if args.rounds > 1 else ""
    print(f"batch 1, fp32; median of {args.runs} runs{pooled} after {args.warmup} warm-up, each system in its own "
          f"process; load average at the end {_common.load_average()}")
    print()
    headers = ["head", "threads"] + [f"{system.label} ms" for system in shown] \
        + ["DeformRT speedup vs fastest peer", "max abs diff vs reference"]
    rows: List[List[str]] = []
    for head in heads:
        for threads in thread_counts:
            ours = median("deformrt", head.name, threads)
            peers = [median(key, head.name, threads) for key in head.peers]
            peers = [value for value in peers if value is not None]
            difference = collected.differences.get((head.name, threads))
            rows.append([head.description, str(threads)]
                        + [_common.format_ms(median(system.key, head.name, threads)) for system in shown]
                        + ["—" if ours is None or not peers else f"{min(peers) / ours:.2f}x",
                           "—" if difference is None else f"{difference:.2g} ({head.reference})"])
    print(_common.markdown_table(headers, rows))
    print()
    spread_headers = ["head", "threads"] + [f"{system.label} min / p25–p75 ms" for system in shown]
    print(_common.markdown_table(spread_headers, [
        [head.name, str(threads)] + [_common.format_spread(collected.timings.get((system.key, head.name, threads)))
                                     for system in shown]
        for head in heads for threads in thread_counts]))
    print()
    status = 0
    names = {head.name for head in heads}
    if {"deformroipool", "roialign"} <= names:
        for threads in thread_counts:
            deform, align = median("deformrt", "deformroipool", threads), median("deformrt", "roialign", threads)
            peer = median("onnxruntime", "roialign", threads)
            if deform and align:
                text = f"- deformroipool, threads {threads}: {deform / align:.2f}x DeformRT's own RoiAlign time"
                if peer:
                    text += f"; {peer / deform:.2f}x faster than onnxruntime's plain RoiAlign on the same head"
                print(text)
    for (head, threads), difference in sorted(collected.differences.items()):
        if not difference <= TOLERANCE:
            print(f"- {head}, threads {threads}: max |DeformRT - {HEADS[head].reference}| = {difference:.3g} "
                  f"MISMATCH (tolerance {TOLERANCE:g})")
            status = 1
    status |= _common.print_skips_and_failures(collected, systems)
    if args.json:
        _common.write_json(args.json, collected, args, "head", {head.name: dataclasses.asdict(head) for head in heads})
    if status:
        _common.progress("FAILED: a worker failed or DeformRT's output differs from the reference (see above)")
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_arguments(parser, list(HEADS), SYSTEMS)
    args = parser.parse_args()
    _common.resolve_counts(args)
    if args.worker:
        work(args)
        return 0
    heads = [HEADS[name] for name in _common.select(args.layers, list(HEADS), "head")]
    chosen = _common.select(args.systems, SYSTEMS, "system")
    if "deformrt" not in chosen:
        raise SystemExit("--systems must include deformrt")
    systems = [system for system in [
        System("deformrt", "DeformRT", sys.executable, peer=False, deformrt=True),
        _common.python_system("onnxruntime", "onnxruntime", "onnxruntime"),
        _common.python_system("openvino", "OpenVINO", "openvino"),
    ] if system.key in chosen]
    thread_counts = _common.parse_threads(args.threads)
    _common.progress(f"load average at the start {_common.load_average()}")
    collected = collect(systems, heads, thread_counts, args)
    return report(collected, systems, heads, thread_counts, args)


if __name__ == "__main__":
    sys.exit(main())
