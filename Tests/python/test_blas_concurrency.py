"""A Gemm split over two workers calls OpenBLAS from both at once. Debian's serial OpenBLAS (which
the shipped library links) is not safe for that: before its calls were serialised, about 1 run in
1,500 of this model at 2 threads gave wrong values over most of the output. 200 fresh sessions x 15
runs make a repeat of that bug show with high probability; each run must match float64 NumPy
within rtol 1e-4 / atol 1e-4 (float32 sums of 65 products)."""
import numpy as np
from onnx import TensorProto, helper, numpy_helper

import deformrt


def test_threaded_gemm_gives_the_same_result_every_run():
    rng = np.random.default_rng(0)
    m, k, n = 33, 65, 131  # M*N*K > 2**18: split over the threads
    a = rng.standard_normal((k, m)).astype(np.float32)
    b = rng.standard_normal((n, k)).astype(np.float32)
    c = rng.standard_normal(n).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Gemm", ["a", "b", "c"], ["y"], transA=1, transB=1)], "gemm",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [k, m])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
                              [numpy_helper.from_array(b, "b"), numpy_helper.from_array(c, "c")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    serialized = model.SerializeToString()
    expected = a.T.astype(np.float64) @ b.T.astype(np.float64) + c
    wrong = []
    for index in range(200):
        with deformrt.InferenceSession(serialized, threads=2) as session:
            for run in range(15):
                (y,) = session.run(None, {"a": a})
                if not np.allclose(y, expected, rtol=1e-4, atol=1e-4):
                    wrong.append((index, run, float(np.abs(y - expected).max())))
    assert not wrong, f"{len(wrong)} of 3000 runs wrong: {wrong[:5]}"
