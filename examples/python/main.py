"""Runs the bundled tiny deformable ConvNet through DeformRT's Python binding and prints the three
most probable classes, one per line as "class <index>: <probability>".

    usage: python3 examples/python/main.py [MODEL.onnx [INPUT.npy]]
"""

import sys
from pathlib import Path

import numpy as np

import deformrt

MODELS = Path(__file__).resolve().parents[1] / "models"
TOP_K = 3


def main(argv):
    model_path = argv[1] if len(argv) > 1 else MODELS / "tiny_dcn.onnx"
    input_path = argv[2] if len(argv) > 2 else MODELS / "tiny_dcn_input.npy"
    image = np.load(input_path)
    with deformrt.InferenceSession(model_path) as session:
        input_name = session.get_inputs()[0].name
        (probabilities,) = session.run(None, {input_name: image})
    values = probabilities.ravel()
    # Highest first; ties go to the lower index, as in the C and Swift examples.
    for index in sorted(range(values.size), key=lambda i: (-values[i], i))[:TOP_K]:
        print(f"class {index}: {float(values[index]):.6f}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (deformrt.DeformRTError, OSError, ValueError) as error:  # ValueError: not a .npy file
        print(error, file=sys.stderr)
        sys.exit(1)
