"""onnx's own node conformance cases (onnx.backend.test.case.node, generated in memory) for
ConvTranspose, DepthToSpace, SpaceToDepth, GroupNormalization, LpNormalization, LRN,
MeanVarianceNormalization, GlobalMaxPool and LpPool, including their *_expanded function forms
(those run on the operators the expansion uses). Expected outputs are the suite's; tolerance the
suite's (rtol 1e-3, atol 1e-7 unless a case says otherwise). Refused cases must be refused as
UNSUPPORTED, each with its reason below; the counts are printed."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import deformrt

OPS = {"ConvTranspose", "DepthToSpace", "SpaceToDepth", "GroupNormalization", "LpNormalization", "LRN",
       "MeanVarianceNormalization", "GlobalMaxPool", "LpPool"}
REFUSED = {
    r"^test_convtranspose_3d$": "3-D ConvTranspose",
    r"^test_lppool_3d": "3-D LpPool",
}


def cases():
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        collected = collect_testcases(None)
    chosen = []
    for case in collected:
        if any(node.op_type in OPS for node in case.model.graph.node):
            refusal = next((why for pattern, why in REFUSED.items() if re.search(pattern, case.name)), None)
            chosen.append(pytest.param(case, refusal, id=case.name))
    return chosen


CASES = cases()
COUNTS = {"passed": 0, "refused": 0}


@pytest.mark.parametrize("case,refusal", CASES)
def test_onnx_node_case(case, refusal):
    names = [i.name for i in case.model.graph.input]
    data = case.model.SerializeToString()
    for inputs, outputs in case.data_sets:
        feeds = dict(zip(names, inputs))
        if refusal:
            with pytest.raises(deformrt.DeformRTError, match="UNSUPPORTED"):
                with deformrt.InferenceSession(data, threads=2) as session:
                    session.run(None, feeds)
            continue
        with deformrt.InferenceSession(data, threads=2) as session:
            got = session.run(None, feeds)
        assert len(got) == len(outputs)
        for g, w in zip(got, outputs):
            w = np.asarray(w)
            assert g.dtype == w.dtype and g.shape == w.shape, (g.dtype, g.shape, w.dtype, w.shape)
            np.testing.assert_allclose(g, w, rtol=case.rtol, atol=case.atol)
    COUNTS["refused" if refusal else "passed"] += 1


def test_counts_are_printed():
    """Runs last in this file: prints passed / refused / total of the cases above."""
    print(f"\nonnx node cases for {sorted(OPS)}: passed {COUNTS['passed']}, refused {COUNTS['refused']}, "
          f"total {len(CASES)}")
    assert len(CASES) >= 38  # onnx 1.23
    # Every case ran when the whole file did (0 when this test is run alone).
    assert COUNTS["passed"] + COUNTS["refused"] in (0, len(CASES))
