"""Real models exported from PyTorch with torch.onnx.export(dynamo=True) (tools/export_torch_models.py):
DeformRT must reproduce torch's own outputs. Tolerance 1e-4 absolute + 1e-3 relative (float32
through several layers)."""
import os

import numpy as np
import pytest

import deformrt

DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vectors", "exported")
MODELS = sorted(f[:-5] for f in os.listdir(DIR) if f.endswith(".onnx"))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", MODELS)
def test_matches_torch(name, threads):
    data = np.load(os.path.join(DIR, name + ".npz"))
    session = deformrt.InferenceSession(os.path.join(DIR, name + ".onnx"), threads=threads)
    feeds = {i.name: data[i.name] for i in session.get_inputs()}
    outputs = session.run(None, feeds)
    expected = [data[f"output_{i}"] for i in range(len(outputs))]
    for got, want in zip(outputs, expected):
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)


def test_dynamic_batch_replans():
    data = np.load(os.path.join(DIR, "tiny_backbone.npz"))
    session = deformrt.InferenceSession(os.path.join(DIR, "tiny_backbone.onnx"))
    name = session.get_inputs()[0].name
    x = data[name]
    full = session.run(None, {name: x})[0]
    single = session.run(None, {name: x[1:2]})[0]
    np.testing.assert_allclose(single, full[1:2], atol=1e-5, rtol=1e-5)
