#!/usr/bin/env python3
"""GridSample, DCNv3 and multi-scale deformable attention (issue 10), batch 1, fp32: DeformRT vs
onnxruntime, each system in its own process, 1 and 2 threads.

    python3 bench/deformable_attention.py                 # every case, 1 and 2 threads
    python3 bench/deformable_attention.py --layers dcnv3-stage1 --threads 2 --runs 30
    python3 bench/deformable_attention.py --quick         # smoke test

Cases:
  gridsample-sparse  GridSample bilinear, zeros, align_corners 0 on X [1, 256, 100, 134] with a grid
                     [1, 300, 16, 2] (300 queries x 4 x 4 points, U(-1, 1)). Target: >= 2x onnxruntime.
  gridsample-dense   the same on X [1, 64, 128, 128] with a dense grid [1, 128, 128, 2]. Target: >= 2x.
  dcnv3-stage1       InternImage-T stage 1 DCNv3: 56 x 56, 64 channels, 4 groups of 16, 3 x 3, pad 1.
  dcnv3-stage3       stage 3: 14 x 14, 320 channels, 20 groups of 16.
                     Target: the fused op >= 5x onnxruntime running the decomposed export.
  msda-encoder       Deformable DETR encoder: 8 heads x 32, levels 100x134, 50x67, 25x34, 13x17,
                     4 points, queries = all 17,821 positions, each sampling around its own position
                     (offsets ~ N(0, 2) pixels per level, as the module's Linear makes them).
  msda-decoder       the same with 300 queries around uniform reference points.
                     Target: the fused op >= 5x onnxruntime (decomposed).
Systems:
  deformrt           the fused op (mmdeploy::TRTDCNv3, mmdeploy::MMCVMultiScaleDeformableAttention),
                     or GridSample for the GridSample cases
  deformrt-decomposed  DeformRT running the grid_sample decomposition (target: within 1.2x of the
                     fused op). DCNv3: the graph torch.onnx.export(dynamo=True) writes (checked
                     node by node in Tests/python/test_dcnv3_decomposition.py), which the
                     DCNv3Decomposition pass runs on the fused kernel. MSDA: the graph pass
                     MultiScaleDeformableAttentionDecomposition rewrites it to the fused op (the
                     graph is node for node torch's dynamo export, tested in
                     Tests/python/test_msda_decomposition.py).
  onnxruntime        the decomposition (onnxruntime has neither op), or GridSample
  torch              the framework functions themselves under torch.inference_mode():
                     InternImage's dcnv3_core_pytorch (tools/export_dcnv3_models.py), mmcv's
                     multi_scale_deformable_attn_pytorch (tools/export_msda_torch.py),
                     F.grid_sample; run by --torch-python (an interpreter with torch, numpy and
                     onnx; '' leaves the column out). Target: DCNv3 fused >= 5x torch.

The decompositions are tools/deformable_decompositions.py (dcnv3_core_pytorch and mmcv's
multi_scale_deformable_attn_pytorch written as torch.onnx.export writes them). The DeformRT worker
checks its output after timing against onnxruntime on the decomposition and the script fails above
1e-4. Inputs are seeded and identical in every process.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

import _common
from _common import System

sys.path.insert(0, str(_common.REPO_ROOT / "tools"))
import deformable_decompositions as decompositions  # noqa: E402

SYSTEMS = ["deformrt", "deformrt-decomposed", "onnxruntime", "torch"]
TOLERANCE = 1e-4
DETR_LEVELS = [(100, 134), (50, 67), (25, 34), (13, 17)]


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    description: str
    kind: str                     # gridsample | dcnv3 | msda
    shape: Tuple[int, ...]        # gridsample: X then grid dims; dcnv3: (h, w, group, gc); msda: (queries,)
    target: float                 # required speedup of DeformRT's fused op over onnxruntime
    seed: int = 0


CASES = {case.name: case for case in [
    Case("gridsample-sparse", "GridSample [1,256,100,134], grid [1,300,16,2]", "gridsample",
         (256, 100, 134, 300, 16), 2.0, seed=501),
    Case("gridsample-dense", "GridSample [1,64,128,128], grid [1,128,128,2]", "gridsample",
         (64, 128, 128, 128, 128), 2.0, seed=502),
    Case("dcnv3-stage1", "DCNv3 56x56, 64 ch, 4 groups, 3x3", "dcnv3", (56, 56, 4, 16), 5.0, seed=503),
    Case("dcnv3-stage3", "DCNv3 14x14, 320 ch, 20 groups, 3x3", "dcnv3", (14, 14, 20, 16), 5.0, seed=504),
    Case("msda-encoder", "MSDA 8x32, 4 levels, 4 points, 17821 queries", "msda", (17821,), 5.0, seed=505),
    Case("msda-decoder", "MSDA 8x32, 4 levels, 4 points, 300 queries", "msda", (300,), 5.0, seed=506),
]}


def grid_sample_model(case: Case) -> Tuple[bytes, Dict[str, np.ndarray]]:
    from onnx import TensorProto, helper

    c, h, w, gh, gw = case.shape
    rng = np.random.default_rng(case.seed)
    feeds = {"X": rng.standard_normal((1, c, h, w), dtype=np.float32),
             "grid": rng.uniform(-1, 1, (1, gh, gw, 2)).astype(np.float32)}
    node = helper.make_node("GridSample", ["X", "grid"], ["y"], mode="bilinear", padding_mode="zeros",
                            align_corners=0)
    graph = helper.make_graph([node], case.name,
                              [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v.shape)) for k, v in feeds.items()],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, gh, gw])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)], ir_version=9)
    return model.SerializeToString(), feeds


def models(case: Case) -> Tuple[bytes, bytes, Dict[str, np.ndarray]]:
    """(DeformRT's model, the decomposed model, feeds)."""
    if case.kind == "gridsample":
        model, feeds = grid_sample_model(case)
        return model, model, feeds
    if case.kind == "dcnv3":
        h, w, group, gc = case.shape
        fused, decomposed, shapes = decompositions.dcnv3_models(1, h, w, group, gc)
    else:
        fused, decomposed, shapes = decompositions.msda_models(1, DETR_LEVELS, 8, 32, case.shape[0], 4)
        return fused, decomposed, decompositions.random_feeds(shapes, case.seed, levels=DETR_LEVELS)
    return fused, decomposed, decompositions.random_feeds(shapes, case.seed)


def torch_runner(case: Case, feeds: Dict[str, np.ndarray], threads: int) -> _common.Runner:
    """The PyTorch function the decomposition was exported from, on the same inputs."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != 1:  # settable once per process, before any parallel work
        torch.set_num_interop_threads(1)
    tensors = {name: torch.from_numpy(array) for name, array in feeds.items()}
    if case.kind == "gridsample":
        def call():
            return F.grid_sample(tensors["X"], tensors["grid"], mode="bilinear", padding_mode="zeros",
                                 align_corners=False)
    elif case.kind == "dcnv3":
        from export_dcnv3_models import dcnv3_core_torch
        group, gc = case.shape[2], case.shape[3]

        def call():
            return dcnv3_core_torch(tensors["input"], tensors["offset"], tensors["mask"], 3, 3, 1, 1, 1, 1, 1, 1,
                                    group, gc, 1.0, 0)
    else:
        from export_msda_torch import mmcv_multi_scale_deformable_attn_pytorch

        def call():
            return mmcv_multi_scale_deformable_attn_pytorch(tensors["value"], DETR_LEVELS,
                                                            tensors["sampling_locations"],
                                                            tensors["attention_weights"])

    def run():
        with torch.inference_mode():
            return [call().numpy()]
    return run


def runner(system: str, case: Case, threads: int) -> _common.Runner:
    fused, decomposed, feeds = models(case)
    if system == "torch":
        return torch_runner(case, feeds, threads)
    if system == "deformrt":
        return _common.deformrt_runner(fused, feeds, threads)
    if system == "deformrt-decomposed":
        return _common.deformrt_runner(decomposed, feeds, threads)
    if system == "onnxruntime":
        return _common.onnxruntime_runner(decomposed, feeds, threads)
    raise SystemExit(f"unknown worker {system}")


def runs_case(system: str, case: Case) -> bool:
    return not (system == "deformrt-decomposed" and case.kind == "gridsample")


# ----------------------------------------------------------------------------- worker

def work(args: argparse.Namespace) -> None:
    threads = int(args.threads)
    result: Dict[str, object] = {"system": args.worker, "threads": threads, "layers": {}}
    checked = []
    for name in _common.parse_list(args.layers):
        run = runner(args.worker, CASES[name], threads)
        result["layers"][name] = _common.measure(run, args.warmup, args.runs)
        if args.check:
            checked.append((name, np.asarray(run()[0])))
        del run
    # onnxruntime is loaded only after every timing, so its threads never share the process with ours.
    result["max_abs_diff"] = {
        name: _common.max_abs_difference(ours, np.asarray(runner("onnxruntime", CASES[name], threads)()[0]))
        for name, ours in checked}
    _common.emit(result)


# ----------------------------------------------------------------------------- driver

def collect(systems: Sequence[System], cases: Sequence, thread_counts: Sequence[int],
            args: argparse.Namespace) -> _common.Collected:
    """One process per (system, case, threads), systems interleaved, the whole sweep --rounds times
    with the runs pooled (`_common.collect`); only the systems that run a case are started for it."""
    return _common.collect(Path(__file__), systems, cases, thread_counts, args, "deformrt",
                           runs=runs_case)


def report(collected: _common.Collected, systems: Sequence[System], cases: Sequence[Case],
           thread_counts: Sequence[int], args: argparse.Namespace) -> int:
    shown = [system for system in systems if not system.skipped]

    def median(key: str, case: str, threads: int) -> Optional[float]:
        timing = collected.timings.get((key, case, threads))
        return None if timing is None else timing["median_ms"]

    print("## Deformable attention (bench/deformable_attention.py)")
    pooled = f" x {args.rounds} rounds" if args.rounds > 1 else ""
    print(f"batch 1, fp32; median of {args.runs} runs{pooled} after {args.warmup} warm-up, each system in its own "
          f"process; load average at the end {_common.load_average()}")
    print()
    headers = ["case", "threads"] + [f"{system.label} ms" for system in shown] \
        + ["fused vs onnxruntime (target)", "fused vs torch", "decomposed / fused", "max abs diff"]
    rows: List[List[str]] = []
    for case in cases:
        for threads in thread_counts:
            ours = median("deformrt", case.name, threads)
            peer = median("onnxruntime", case.name, threads)
            decomposed = median("deformrt-decomposed", case.name, threads)
            framework = median("torch", case.name, threads)
            difference = collected.differences.get((case.name, threads))
            rows.append([case.description, str(threads)]
                        + [_common.format_ms(median(system.key, case.name, threads)) for system in shown]
                        + ["—" if not ours or not peer else f"{peer / ours:.2f}x ({case.target:g}x)",
                           "—" if not ours or not framework else f"{framework / ours:.2f}x",
                           "—" if not ours or not decomposed else f"{decomposed / ours:.2f}x",
                           "—" if difference is None else f"{difference:.2g}"])
    print(_common.markdown_table(headers, rows))
    print()
    spread_headers = ["case", "threads"] + [f"{system.label} min / p25–p75 ms" for system in shown]
    print(_common.markdown_table(spread_headers, [
        [case.name, str(threads)] + [_common.format_spread(collected.timings.get((system.key, case.name, threads)))
                                     for system in shown]
        for case in cases for threads in thread_counts]))
    print()
    status = 0
    for (case, threads), difference in sorted(collected.differences.items()):
        if not difference <= TOLERANCE:
            print(f"- {case}, threads {threads}: max |DeformRT - onnxruntime| = {difference:.3g} "
                  f"MISMATCH (tolerance {TOLERANCE:g})")
            status = 1
    status |= _common.print_skips_and_failures(collected, systems)
    if args.json:
        _common.write_json(args.json, collected, args, "case", {case.name: dataclasses.asdict(case) for case in cases})
    if status:
        _common.progress("FAILED: a worker failed or DeformRT's output differs from onnxruntime (see above)")
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_arguments(parser, list(CASES), SYSTEMS)
    parser.add_argument("--torch-python", metavar="PYTHON",
                        help=f"interpreter with torch (default {_common.DEFAULT_TORCH_PYTHON} if it exists, else "
                             "this one if it has torch; '' leaves torch out)")
    args = parser.parse_args()
    _common.resolve_counts(args)
    if args.worker:
        work(args)
        return 0
    cases = [CASES[name] for name in _common.select(args.layers, list(CASES), "case")]
    chosen = _common.select(args.systems, SYSTEMS, "system")
    if "deformrt" not in chosen:
        raise SystemExit("--systems must include deformrt")
    torch_python = _common.torch_python(args.torch_python, ("torch",))
    systems = [system for system in [
        System("deformrt", "DeformRT", sys.executable, peer=False, deformrt=True),
        System("deformrt-decomposed", "DeformRT decomposed", sys.executable, peer=False, deformrt=True),
        _common.python_system("onnxruntime", "onnxruntime", "onnxruntime"),
        System("torch", "torch", torch_python, peer=True,
               skipped=None if torch_python else "no interpreter with torch (--torch-python)"),
    ] if system.key in chosen]
    thread_counts = _common.parse_threads(args.threads)
    _common.progress(f"load average at the start {_common.load_average()}")
    collected = collect(systems, cases, thread_counts, args)
    return report(collected, systems, cases, thread_counts, args)


if __name__ == "__main__":
    sys.exit(main())
