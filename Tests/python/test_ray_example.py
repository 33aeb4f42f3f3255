"""examples/ray/batch_inference.py on a local Ray cluster with 2 actors gives exactly the outputs of
one process running the same session over the same inputs (bit-identical: same kernels, one
thread per session)."""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("ray")
import deformrt  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SCRIPT = os.path.join(ROOT, "examples", "ray", "batch_inference.py")
MODEL = os.path.join(ROOT, "examples", "models", "tiny_dcn.onnx")


def test_ray_batch_inference_matches_one_process(tmp_path):
    rng = np.random.default_rng(2)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for i in range(10):
        np.save(inputs / f"sample{i:02d}.npy", rng.random((1, 3, 32, 32), dtype=np.float32))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(ROOT, "bindings", "python", "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("RAY_ADDRESS", None)
    result = subprocess.run([sys.executable, SCRIPT, "--model", MODEL, "--inputs", str(inputs),
                             "--output", str(tmp_path / "out"), "--actors", "2", "--threads-per-actor", "1",
                             "--batch-size", "3"], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "10 inputs" in result.stdout

    with deformrt.InferenceSession(MODEL, threads=1) as session:
        with open(tmp_path / "out" / "summary.csv") as handle:
            rows = list(csv.DictReader(handle))
        assert [r["name"] for r in rows] == [f"sample{i:02d}" for i in range(10)]
        for row in rows:
            expected = session.run(None, {"image": np.load(inputs / f"{row['name']}.npy")})[0]
            got = np.load(tmp_path / "out" / f"{row['name']}.npy")
            np.testing.assert_array_equal(got, expected)
            assert int(row["top_class"]) == int(np.argmax(expected))


def test_ray_example_rejects_bad_options(tmp_path):
    (tmp_path / "empty").mkdir()
    result = subprocess.run([sys.executable, SCRIPT, "--model", MODEL, "--inputs", str(tmp_path / "empty"),
                             "--output", str(tmp_path / "out"), "--actors", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "must be at least 1" in result.stderr
    result = subprocess.run([sys.executable, SCRIPT, "--model", MODEL, "--inputs", str(tmp_path / "empty"),
                             "--output", str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "no .npy, .png or .jpg inputs" in result.stderr
