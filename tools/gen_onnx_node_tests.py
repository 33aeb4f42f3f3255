#!/usr/bin/env python3
"""onnx's own DeformConv node tests, saved as Tests/vectors/onnx_node/<test name>.npz.

    python3 tools/gen_onnx_node_tests.py

The onnx wheel ships the generator (onnx/backend/test/case/node/deformconv.py) but not its data.
onnx.backend.test.case.node.collect_testcases("DeformConv") runs every export* method of that file
through onnx's real `expect`, which builds the one-node model exactly as onnx's backend test data does.

Key layout of every .npz:
    model         uint8 [bytes]  the serialized ModelProto
    input_names   unicode [k]    graph inputs, in order
    output_names  unicode [m]    graph outputs, in order
    input_<i>     the value fed to input_names[i]
    output_<i>    the expected value of output_names[i]
    rtol, atol    float64 0-d    the tolerances onnx's backend test runner uses for the case

The script checks every case with onnxruntime before writing.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import onnxruntime as ort
from onnx.backend.test.case.node import collect_testcases

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO, "tests", "vectors", "onnx_node")


def main() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # other operators' generators warn about log(0) and such
        cases = collect_testcases("DeformConv")
    assert cases, "onnx has no DeformConv node tests"
    os.makedirs(OUT_DIR, exist_ok=True)
    for stale in os.listdir(OUT_DIR):
        if stale.endswith(".npz"):
            os.remove(os.path.join(OUT_DIR, stale))
    for case in cases:
        model_bytes = case.model.SerializeToString()
        input_names = [i.name for i in case.model.graph.input]
        output_names = [o.name for o in case.model.graph.output]
        session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
        for index, (inputs, outputs) in enumerate(case.data_sets):
            got = session.run(output_names, dict(zip(input_names, inputs)))
            for g, want in zip(got, outputs):
                np.testing.assert_allclose(g, want, rtol=case.rtol, atol=case.atol, err_msg=case.name)
            arrays = {f"input_{i}": np.asarray(a) for i, a in enumerate(inputs)}
            arrays.update({f"output_{i}": np.asarray(a) for i, a in enumerate(outputs)})
            suffix = "" if len(case.data_sets) == 1 else f"_{index}"
            path = os.path.join(OUT_DIR, case.name + suffix + ".npz")
            np.savez(path, model=np.frombuffer(model_bytes, np.uint8),
                     input_names=np.array(input_names), output_names=np.array(output_names),
                     rtol=np.array(case.rtol), atol=np.array(case.atol), **arrays)
            print(f"{os.path.relpath(path, REPO)}  ({os.path.getsize(path)} bytes, onnxruntime agrees)")


if __name__ == "__main__":
    main()
