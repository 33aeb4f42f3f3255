"""Every example runs and the C, Python and Swift ones print the same top-3 lines; the CLI works."""
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, ".build", "release")
MODEL = os.path.join(ROOT, "examples", "models", "tiny_dcn.onnx")
IMAGE = os.path.join(ROOT, "examples", "models", "tiny_dcn_input.npy")
EXAMPLES = {
    "c": [os.path.join(ROOT, "build", "bin", "c-example")],
    "python": [sys.executable, os.path.join(ROOT, "examples", "python", "main.py")],
    "swift": [os.path.join(BIN, "swift-example")],
}


def _run(command, cwd=ROOT):
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def outputs():
    return {name: _run(command + [MODEL, IMAGE]) for name, command in EXAMPLES.items()}


def test_examples_print_three_classes(outputs):
    for name, text in outputs.items():
        lines = text.strip().splitlines()
        assert len(lines) == 3 and all(line.startswith("class ") for line in lines), (name, text)


def test_examples_agree(outputs):
    assert outputs["c"] == outputs["python"] == outputs["swift"]


def test_examples_match_onnxruntime(outputs):
    ort = pytest.importorskip("onnxruntime")
    probabilities = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"]).run(None, {"image": np.load(IMAGE)})[0][0]
    top = np.argsort(-probabilities, kind="stable")[:3]
    lines = outputs["python"].strip().splitlines()
    for line, index in zip(lines, top):
        cls, value = line.removeprefix("class ").split(": ")
        assert int(cls) == index
        assert abs(float(value) - probabilities[index]) < 1e-5


def test_examples_default_paths_work_from_repo_root():
    for name, command in EXAMPLES.items():
        assert _run(command).count("class ") == 3, name


def test_cli_info():
    text = _run([os.path.join(BIN, "deformrt-cli"), "info", MODEL])
    assert "image: tensor(float) [1, 3, 32, 32]" in text
    assert "DeformConv" in text and "parameters:" in text and "ai.onnx 19" in text


def test_cli_run_writes_npy(tmp_path):
    text = _run([os.path.join(BIN, "deformrt-cli"), "run", MODEL, "--input", f"image={IMAGE}", "--output-dir", str(tmp_path)])
    assert "probabilities" in text
    got = np.load(tmp_path / "probabilities.npy")
    assert got.shape == (1, 10) and abs(got.sum() - 1) < 1e-5


def test_cli_reports_errors_cleanly(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    result = subprocess.run([os.path.join(BIN, "deformrt-cli"), "info", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "error" in result.stderr.lower()
    result = subprocess.run([os.path.join(BIN, "deformrt-cli"), "run", MODEL, "--input", "nope=x.npy"], capture_output=True, text=True)
    assert result.returncode != 0
