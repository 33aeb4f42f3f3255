"""Shared pieces of the benchmark scripts: timing, one process per system, per-system runners,
the plain Conv models, and the Markdown tables.

A bench script runs as a driver (parses options, starts one worker process per system, layer and
thread count, prints the tables) and as a worker (`--worker SYSTEM`: builds one system's session,
times it, prints one JSON line). Each system gets a fresh process so no runtime's thread pool or
allocator state touches another's timings.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LIBRARY = REPO_ROOT / ".build" / "release" / "libdeformrt.so"
DEFAULT_TORCH_PYTHON = Path("/opt/torchenv/bin/python")

DEFAULT_RUNS = 15
DEFAULT_WARMUP = 3
QUICK_RUNS = 2
QUICK_WARMUP = 1

# Marks the worker's result among whatever else a runtime prints to stdout.
RESULT_PREFIX = "BENCH-RESULT "


# ----------------------------------------------------------------------------- layers and data

@dataclasses.dataclass(frozen=True)
class Layer:
    """One convolution layer, batch 1, square kernel, fp32, NCHW."""
    name: str
    in_channels: int
    out_channels: int
    height: int
    width: int
    kernel: int = 3
    pad: int = 1
    dilation: int = 1
    stride: int = 1
    mask: bool = False
    offset_group: int = 1
    seed: int = 0

    @property
    def output_height(self) -> int:
        return (self.height + 2 * self.pad - self.dilation * (self.kernel - 1) - 1) // self.stride + 1

    @property
    def output_width(self) -> int:
        return (self.width + 2 * self.pad - self.dilation * (self.kernel - 1) - 1) // self.stride + 1

    @property
    def flop(self) -> int:
        """2*Cin*Cout*kH*kW*Hout*Wout: the multiply-adds of the convolution, sampling not counted."""
        return (2 * self.in_channels * self.out_channels * self.kernel * self.kernel
                * self.output_height * self.output_width)

    def describe(self) -> str:
        text = f"{self.name} {self.in_channels}->{self.out_channels} @{self.height}x{self.width}"
        extras = []
        if self.mask:
            extras.append("mask")
        if self.offset_group != 1:
            extras.append(f"og {self.offset_group}")
        if self.dilation != 1:
            extras.append(f"dil {self.dilation}")
        return text + (f" ({', '.join(extras)})" if extras else "")


def conv_tensors(layer: Layer, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """Input, weight and bias; seeded with layer.seed they are the same in every process and
    interpreter (numpy's PCG64 streams are stable across versions)."""
    fan_in = layer.in_channels * layer.kernel * layer.kernel
    return {
        "x": rng.standard_normal((1, layer.in_channels, layer.height, layer.width), dtype=np.float32),
        # Scaled so outputs stay O(1) and an absolute tolerance means something.
        "weight": (rng.standard_normal((layer.out_channels, layer.in_channels, layer.kernel, layer.kernel),
                                       dtype=np.float32) / np.float32(np.sqrt(fan_in))),
        "bias": rng.standard_normal(layer.out_channels, dtype=np.float32) * np.float32(0.1),
    }


def onnx_conv_model(layer: Layer, tensors: Mapping[str, np.ndarray]) -> bytes:
    """A one-node ai.onnx Conv model: input x, weight and bias as initializers, output y."""
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node(
        "Conv", ["x", "weight", "bias"], ["y"],
        kernel_shape=[layer.kernel, layer.kernel], pads=[layer.pad] * 4,
        dilations=[layer.dilation] * 2, strides=[layer.stride] * 2, group=1)
    graph = helper.make_graph(
        [node], "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(tensors["x"].shape))],
        [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, layer.out_channels, layer.output_height, layer.output_width])],
        [numpy_helper.from_array(tensors["weight"], "weight"), numpy_helper.from_array(tensors["bias"], "bias")])
    return finish_onnx_model(graph)


def finish_onnx_model(graph) -> bytes:
    """Opset 19 with IR version 9, which onnxruntime reads (onnx's newest IR may be ahead of it)."""
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def openvino_conv_model(layer: Layer, tensors: Mapping[str, np.ndarray]):
    import openvino as ov
    from openvino import opset8

    x = opset8.parameter(list(tensors["x"].shape), np.float32, name="x")
    conv = opset8.convolution(
        x, opset8.constant(tensors["weight"]), [layer.stride] * 2, [layer.pad] * 2, [layer.pad] * 2,
        [layer.dilation] * 2)
    y = opset8.add(conv, opset8.constant(tensors["bias"].reshape(1, -1, 1, 1)))
    return ov.Model([y], [x], "conv")


# ----------------------------------------------------------------------------- runners

Runner = Callable[[], object]


def deformrt_runner(model: bytes, feeds: Mapping[str, np.ndarray], threads: int) -> Runner:
    import deformrt

    session = deformrt.InferenceSession(model, threads=threads)
    return lambda: session.run(None, feeds)


def onnxruntime_runner(model: bytes, feeds: Mapping[str, np.ndarray], threads: int) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, feeds)


def openvino_runner(model, feeds: Mapping[str, np.ndarray], threads: int) -> Runner:
    import openvino as ov

    compiled = ov.Core().compile_model(model, "CPU", {
        "INFERENCE_NUM_THREADS": str(threads),
        "INFERENCE_PRECISION_HINT": "f32",
        "NUM_STREAMS": "1",
        "PERFORMANCE_HINT": "LATENCY",
    })
    request = compiled.create_infer_request()
    # Inputs are shared (no copy), outputs copied out: every system hands back a fresh array.
    return lambda: request.infer(feeds, share_inputs=True)


def deformrt_environment(env: Dict[str, str]) -> None:
    """Lets the worker import the in-tree binding and load the release library."""
    binding = str(REPO_ROOT / "bindings" / "python" / "src")
    env["PYTHONPATH"] = binding + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("DEFORMRT_LIBRARY", str(DEFAULT_LIBRARY))


# ----------------------------------------------------------------------------- timing

def measure(run: Runner, warmup: int, runs: int) -> List[float]:
    """Times `runs` calls after `warmup` untimed ones; milliseconds."""
    for _ in range(warmup):
        run()
    times = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(runs):
            start = time.perf_counter()
            run()
            times.append((time.perf_counter() - start) * 1e3)
    finally:
        if gc_was_enabled:
            gc.enable()
    return times


def summarize(times: Sequence[float]) -> Dict[str, object]:
    p25, median, p75 = np.percentile(times, [25, 50, 75])
    return {"median_ms": float(median), "min_ms": float(min(times)), "p25_ms": float(p25),
            "p75_ms": float(p75), "times_ms": list(times)}


def max_abs_difference(ours: np.ndarray, theirs: np.ndarray) -> float:
    if ours.shape != theirs.shape:
        raise ValueError(f"output shapes differ: {ours.shape} vs {theirs.shape}")
    return float(np.max(np.abs(ours.astype(np.float64) - theirs.astype(np.float64))))


def emit(result: Mapping[str, object]) -> None:
    print(RESULT_PREFIX + json.dumps(result), flush=True)


# prepare(system, layer name, threads) -> (run, ONNX model run, feeds); the model is what --check
# runs in onnxruntime to compare outputs.
Prepare = Callable[[str, str, int], Tuple[Runner, Optional[bytes], Mapping[str, np.ndarray]]]


def work(args: argparse.Namespace, prepare: Prepare) -> None:
    """The worker side: times args.worker on each of args.layers and prints the result."""
    threads = int(args.threads)
    result: Dict[str, object] = {"system": args.worker, "threads": threads, "layers": {}}
    checked = []
    for name in parse_list(args.layers):
        run, model, feeds = prepare(args.worker, name, threads)
        result["layers"][name] = measure(run, args.warmup, args.runs)
        if args.check:
            checked.append((name, model, feeds, run()[0]))
        del run
    # onnxruntime is loaded only after every timing, so its threads never share the process with ours.
    if checked:
        result["max_abs_diff"] = {
            name: max_abs_difference(ours, onnxruntime_runner(model, feeds, threads)()[0])
            for name, model, feeds, ours in checked}
    emit(result)


# ----------------------------------------------------------------------------- processes

class WorkerFailed(RuntimeError):
    pass


def run_worker(python: str, script: Path, arguments: Sequence[str], threads: int,
               deformrt: bool = False, timeout: float = 1800) -> Dict[str, object]:
    """Runs `python script --worker ...` with N threads everywhere and returns its JSON result."""
    env = dict(os.environ)
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[variable] = str(threads)
    # numpy's own OpenBLAS (the worker only makes inputs with it) would start a thread that
    # busy-waits for ~0.1 s after import and takes a core from the system being measured.
    env["OPENBLAS_NUM_THREADS"] = "1"
    if deformrt:
        deformrt_environment(env)
    command = [python, str(script), *arguments, "--threads", str(threads)]
    try:
        completed = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                                   timeout=timeout)
    except subprocess.TimeoutExpired:
        raise WorkerFailed(f"{' '.join(command)}: no result after {timeout:.0f} s") from None
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            if completed.returncode == 0:
                return json.loads(line[len(RESULT_PREFIX):])
            break
    detail = (completed.stderr.strip() or completed.stdout.strip()).splitlines()[-4:]
    raise WorkerFailed(f"{' '.join(command)} exited with status {completed.returncode}:\n    "
                       + "\n    ".join(detail))


def importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def torch_python(option: Optional[str], modules: Sequence[str] = ("torch", "torchvision")) -> Optional[str]:
    """The interpreter that has `modules`: --torch-python, else /opt/torchenv, else this one if
    it has them; None skips the torch column."""
    if option is not None:
        return option or None
    if DEFAULT_TORCH_PYTHON.exists():
        return str(DEFAULT_TORCH_PYTHON)
    if all(importable(module) for module in modules):
        return sys.executable
    return None


def parse_list(text: str) -> List[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_threads(text: str) -> List[int]:
    threads = [int(item) for item in parse_list(text)]
    if not threads or any(count < 1 for count in threads):
        raise ValueError(f"--threads wants positive integers, got {text!r}")
    return threads


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


# ----------------------------------------------------------------------------- the driver

@dataclasses.dataclass
class System:
    key: str                        # the --worker name
    label: str                      # the table heading
    python: Optional[str]           # the interpreter that runs its worker
    peer: bool                      # counts as a competitor (DeformRT's own Conv does not)
    deformrt: bool = False          # needs the in-tree binding and library
    skipped: Optional[str] = None   # why it is not run


def add_arguments(parser: argparse.ArgumentParser, layer_names: Sequence[str], systems: Sequence[str]) -> None:
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated (default 1,2)")
    parser.add_argument("--layers", default=",".join(layer_names),
                        help=f"layers to run, comma-separated (default {','.join(layer_names)})")
    parser.add_argument("--systems", default=",".join(systems),
                        help=f"systems to run, comma-separated (default {','.join(systems)})")
    parser.add_argument("--runs", type=int, help=f"timed runs per measurement (default {DEFAULT_RUNS})")
    parser.add_argument("--warmup", type=int, help=f"untimed runs first (default {DEFAULT_WARMUP})")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the whole sweep this many times and pool the runs (default 1), "
                             "which spreads each system's runs over time on a noisy machine")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke test: {QUICK_RUNS} runs after {QUICK_WARMUP} warm-up, "
                             "one process per system and thread count")
    parser.add_argument("--json", metavar="PATH", help="also write every measurement to PATH")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--check", action="store_true", help=argparse.SUPPRESS)


def resolve_counts(args: argparse.Namespace) -> None:
    if args.runs is None:
        args.runs = QUICK_RUNS if args.quick else DEFAULT_RUNS
    if args.warmup is None:
        args.warmup = QUICK_WARMUP if args.quick else DEFAULT_WARMUP
    if args.runs < 1 or args.warmup < 0 or args.rounds < 1:
        raise SystemExit("--runs and --rounds must be >= 1, --warmup >= 0")


def select(names: str, known: Sequence[str], what: str) -> List[str]:
    chosen = parse_list(names)
    unknown = [name for name in chosen if name not in known]
    if unknown or not chosen:
        raise SystemExit(f"unknown {what} {', '.join(unknown) or '(none given)'}; choose from {', '.join(known)}")
    return chosen


def python_system(key: str, label: str, module: str) -> System:
    """A peer run by this interpreter, skipped when `module` is not installed."""
    return System(key, label, sys.executable, peer=True,
                  skipped=None if importable(module) else f"{module} is not installed")


def drive(args: argparse.Namespace, script: str, all_layers: Mapping[str, Layer], systems: Sequence[System],
          title: str, own_conv: Optional[str] = None, tolerance: float = 1e-3) -> int:
    """The driver side: runs the chosen systems on the chosen layers, prints the report, returns
    the exit status."""
    layers = [all_layers[name] for name in select(args.layers, list(all_layers), "layer")]
    chosen = select(args.systems, [system.key for system in systems], "system")
    if "deformrt" not in chosen:
        raise SystemExit("--systems must include deformrt")
    systems = [system for system in systems if system.key in chosen]
    if own_conv not in chosen:
        own_conv = None
    thread_counts = parse_threads(args.threads)
    progress(f"load average at the start {load_average()}")
    collected = collect(Path(script), systems, layers, thread_counts, args,
                        checked_system="deformrt" if importable("onnxruntime") else None)
    return report(collected, systems, layers, thread_counts, args, title, own_conv, tolerance)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclasses.dataclass
class Collected:
    timings: Dict[tuple, Dict[str, object]]   # (system key, layer name, threads) -> measure()
    differences: Dict[tuple, float]           # (layer name, threads) -> max |DeformRT - onnxruntime|
    failures: List[str]


def collect(script: Path, systems: Sequence[System], layers: Sequence, thread_counts: Sequence[int],
            args: argparse.Namespace, checked_system: Optional[str],
            runs: Callable[[str, object], bool] = lambda system, layer: True) -> Collected:
    """Runs every worker. One process per (system, layer, threads), systems interleaved layer by layer,
    and the whole sweep --rounds times with the runs pooled, so that load from elsewhere on the
    machine hits all systems alike. --quick runs all layers in one process per (system, threads) to
    save start-up time (torch alone takes seconds to import). `runs(system key, layer)` says which
    systems run a layer (default: all); `layers` are anything with a `name`."""
    times: Dict[tuple, List[float]] = {}
    collected = Collected({}, {}, [])
    groups = [list(layers)] if args.quick else [[layer] for layer in layers]
    for round_index in range(args.rounds):
        if args.rounds > 1:
            progress(f"round {round_index + 1} of {args.rounds}")
        for threads in thread_counts:
            for group in groups:
                for system in systems:
                    names = ",".join(layer.name for layer in group if runs(system.key, layer))
                    if system.skipped or not names:
                        continue
                    arguments = ["--worker", system.key, "--layers", names,
                                 "--runs", str(args.runs), "--warmup", str(args.warmup)]
                    if system.key == checked_system:
                        arguments.append("--check")
                    try:
                        result = run_worker(system.python, script, arguments, threads, deformrt=system.deformrt)
                    except WorkerFailed as failure:
                        collected.failures.append(f"{system.label}, layers {names}, threads {threads}: {failure}")
                        progress(f"  {system.label:<14} {names} t={threads}: FAILED")
                        continue
                    for name, layer_times in result["layers"].items():
                        times.setdefault((system.key, name, threads), []).extend(layer_times)
                        progress(f"  {system.label:<14} {name} t={threads}: "
                                 f"{float(np.median(layer_times)):8.2f} ms median")
                    for name, difference in result.get("max_abs_diff", {}).items():
                        previous = collected.differences.get((name, threads), 0.0)
                        worse = math.isnan(difference) or difference > previous  # NaN is the worst
                        collected.differences[(name, threads)] = difference if worse else previous
    collected.timings = {key: summarize(values) for key, values in times.items()}
    return collected


def print_skips_and_failures(collected: Collected, systems: Sequence[System]) -> int:
    """Lists the systems not run and the workers that failed; 1 if any failed, else 0."""
    for system in systems:
        if system.skipped:
            print(f"- {system.label} skipped: {system.skipped}")
    for failure in collected.failures:
        print(f"- FAILED {failure}")
    return 1 if collected.failures else 0


def write_json(path: str, collected: Collected, args: argparse.Namespace, kind: str,
               described: Mapping[str, Mapping[str, object]]) -> None:
    """Every measurement of a sweep: `kind` names what was measured ("layer", "case", ...) and
    `described` maps each of their names to its fields (written under `kind` + "s")."""
    document = {
        "runs": args.runs, "warmup": args.warmup, "rounds": args.rounds,
        f"{kind}s": described,
        "timings": [{"system": system, kind: item, "threads": threads, **timing}
                    for (system, item, threads), timing in collected.timings.items()],
        "max_abs_diff": [{kind: item, "threads": threads, "value": value}
                         for (item, threads), value in collected.differences.items()],
        "failures": collected.failures,
    }
    Path(path).write_text(json.dumps(document, indent=1))


# ----------------------------------------------------------------------------- tables

def gflops(flop: int, milliseconds: float) -> float:
    return flop / (milliseconds * 1e-3) / 1e9


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def results_table(collected: Collected, systems: Sequence[System], layers: Sequence[Layer],
                  thread_counts: Sequence[int], own_conv: Optional[str] = None) -> str:
    """Median ms and GFLOP/s per system, DeformRT's speed over the fastest peer's, and (with
    own_conv) DeformRT's time over its own plain Conv's."""
    shown = [system for system in systems if not system.skipped]
    timed = [system for system in shown if system.key != own_conv]
    headers = ["layer", "threads"] + [f"{system.label} ms" for system in shown] \
        + [f"{system.label} GFLOP/s" for system in timed] + ["DeformRT speedup vs fastest peer"]
    if own_conv:
        headers.append("deform / own Conv time")
    rows = []
    for layer in layers:
        for threads in thread_counts:
            def median(key: str) -> Optional[float]:
                timing = collected.timings.get((key, layer.name, threads))
                return None if timing is None else timing["median_ms"]
            row = [layer.describe(), str(threads)]
            row += [format_ms(median(system.key)) for system in shown]
            row += ["—" if median(system.key) is None else f"{gflops(layer.flop, median(system.key)):.1f}"
                    for system in timed]
            ours = median("deformrt")
            peers = [median(system.key) for system in timed if system.peer and median(system.key) is not None]
            if ours is None or not peers:
                row.append("—")
            else:
                fastest = min(peers)
                row.append(f"{fastest / ours:.2f}x")
            if own_conv:
                conv = median(own_conv)
                row.append("—" if ours is None or conv is None else f"{ours / conv:.2f}")
            rows.append(row)
    return markdown_table(headers, rows)


def spread_table(collected: Collected, systems: Sequence[System], layers: Sequence[Layer],
                 thread_counts: Sequence[int]) -> str:
    shown = [system for system in systems if not system.skipped]
    headers = ["layer", "threads"] + [f"{system.label} min / p25–p75 ms" for system in shown]
    rows = [[layer.name, str(threads)] + [format_spread(collected.timings.get((system.key, layer.name, threads)))
                                           for system in shown]
            for layer in layers for threads in thread_counts]
    return markdown_table(headers, rows)


def report(collected: Collected, systems: Sequence[System], layers: Sequence[Layer],
           thread_counts: Sequence[int], args: argparse.Namespace, title: str,
           own_conv: Optional[str] = None, tolerance: float = 1e-3) -> int:
    """Prints the tables and notes; returns the exit status (1 on a failed worker or a mismatch)."""
    print(f"## {title}")
    pooled = f" x {args.rounds} rounds" if args.rounds > 1 else ""
    print(f"batch 1, fp32; median of {args.runs} runs{pooled} after {args.warmup} warm-up, each system in its own "
          f"process; GFLOP/s = 2*Cin*Cout*kH*kW*Hout*Wout / median time; load average at the end {load_average()}")
    print()
    print(results_table(collected, systems, layers, thread_counts, own_conv))
    print()
    print(spread_table(collected, systems, layers, thread_counts))
    print()
    status = 0
    for (layer, threads), difference in sorted(collected.differences.items()):
        verdict = "ok" if difference <= tolerance else f"MISMATCH (tolerance {tolerance:g})"
        print(f"- {layer}, threads {threads}: max |DeformRT - onnxruntime| = {difference:.3g} {verdict}")
        if not difference <= tolerance:
            status = 1
    status |= print_skips_and_failures(collected, systems)
    if args.json:
        write_json(args.json, collected, args, "layer",
                   {layer.name: dataclasses.asdict(layer) | {"flop": layer.flop} for layer in layers})
    if status:
        progress("FAILED: a worker failed or DeformRT's output differs from onnxruntime's (see above)")
    return status


def format_ms(value: Optional[float]) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}" if value < 100 else f"{value:.1f}"


def format_spread(result: Optional[Mapping[str, float]]) -> str:
    if result is None:
        return "—"
    return f"{format_ms(result['min_ms'])} / {format_ms(result['p25_ms'])}–{format_ms(result['p75_ms'])}"
