"""Typical onnxruntime inference code, run unchanged on onnxruntime or on DeformRT.

The only DeformRT-specific line is the choice of module: `import onnxruntime as ort` becomes
`import deformrt as ort`. The test (Tests/python/test_onnxruntime_api.py) runs this file once per
module and compares what it writes.

    usage: python3 onnxruntime_style.py MODULE MODEL.onnx INPUT.npy RESULT.npz
      MODULE: onnxruntime or deformrt. RESULT.npz receives every output and a JSON description of
      the session (inputs, outputs, metadata, what happened to the cancelled runs).

The model's first input is fed INPUT.npy; a second run asks for the last output only with
RunOptions; a third is terminated before it starts, a fourth from another thread while it runs.
"""

import importlib
import json
import sys
import threading
import time

import numpy as np


def main(argv):
    ort = importlib.import_module(argv[1])
    model_path, input_path, result_path = argv[2], argv[3], argv[4]

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # Code written for a GPU usually lists CUDA first and falls back to the CPU.
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    providers = [p for p in providers if p in ort.get_available_providers()]
    session = ort.InferenceSession(model_path, sess_options=options, providers=providers)

    with open(model_path, "rb") as f:
        from_bytes = ort.InferenceSession(f.read(), providers=["CPUExecutionProvider"])

    describe = {
        "providers_ok": "CPUExecutionProvider" in ort.get_available_providers(),
        "inputs": [[i.name, i.type, i.shape] for i in session.get_inputs()],
        "outputs": [[o.name, o.type, o.shape] for o in session.get_outputs()],
        "overridable": [i.name for i in session.get_overridable_initializers()],
    }
    meta = session.get_modelmeta()
    describe["meta"] = {
        "producer_name": meta.producer_name,
        "graph_name": meta.graph_name,
        "domain": meta.domain,
        "description": meta.description,
        "version": meta.version,
        "custom_metadata_map": meta.custom_metadata_map,
    }

    image = np.load(input_path)
    input_name = session.get_inputs()[0].name
    output_names = [o.name for o in session.get_outputs()]
    results = {}
    for name, value in zip(output_names, session.run(None, {input_name: image})):
        results["all_" + name] = value
    for name, value in zip(output_names, from_bytes.run(output_names, {input_name: image})):
        results["bytes_" + name] = value

    run_options = ort.RunOptions()
    run_options.log_severity_level = 3
    (last,) = session.run([output_names[-1]], {input_name: image}, run_options)
    results["selected"] = last

    # Terminated before it starts.
    run_options.terminate = True
    try:
        session.run(None, {input_name: image}, run_options)
        describe["terminated_before"] = "ran"
    except Exception:  # onnxruntime raises its Fail, DeformRT a DeformRTError (a RuntimeError)
        describe["terminated_before"] = "raised"
    run_options.terminate = False

    # Terminated from another thread while it runs (a long batch).
    long_batch = np.repeat(image, 256, axis=0)  # ~0.5 s: the stop at 0.05 s always lands inside it
    stopper = threading.Timer(0.05, lambda: setattr(run_options, "terminate", True))
    started = time.perf_counter()
    stopper.start()
    try:
        session.run(None, {input_name: long_batch}, run_options)
        describe["terminated_during"] = "ran"
    except Exception:
        describe["terminated_during"] = "raised"
    describe["terminated_quickly"] = time.perf_counter() - started < 5.0
    stopper.join()
    run_options.terminate = False

    # The session still works afterwards.
    for name, value in zip(output_names, session.run(None, {input_name: image}, run_options)):
        results["after_" + name] = value

    results["describe"] = np.array(json.dumps(describe, sort_keys=True))
    np.savez(result_path, **results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
