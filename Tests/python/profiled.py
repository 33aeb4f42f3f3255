"""One run of a model with the profiler on, for the tests that check what the graph passes made
of it: the outputs and the trace's "Node" events (one per node run: name, op type, shapes, the
model nodes a fused node stands for)."""
from __future__ import annotations

import json

import deformrt
from deformrt import GraphOptimizationLevel, SessionOptions


def run_profiled(model, feeds: dict, prefix, level=GraphOptimizationLevel.ORT_ENABLE_ALL, threads=None):
    """(outputs, node events); `prefix` is the trace file's prefix, `threads` None: the default."""
    options = SessionOptions()
    options.graph_optimization_level = level
    options.enable_profiling = True
    options.profile_file_prefix = str(prefix)
    with deformrt.InferenceSession(model, options, **({} if threads is None else {"threads": threads})) as session:
        outputs = session.run(None, feeds)
        with open(session.end_profiling()) as file:
            events = [event for event in json.load(file) if event["cat"] == "Node"]
    return outputs, events
