"""Batch inference with DeformRT on a Ray cluster: Ray Data reads a folder of inputs, a pool of
actors (each holding one DeformRT session) runs the model on them, and the results are written
to disk, one .npy per input, plus a summary CSV.

    python3 examples/ray/batch_inference.py --model examples/models/tiny_dcn.onnx \\
        --inputs INPUT_DIR --output OUT_DIR [--actors 2] [--threads-per-actor 1] [--batch-size 8]

Inputs: every .npy in INPUT_DIR holds one model input ([1, C, H, W] or [C, H, W]); with Pillow
installed, .png/.jpg pictures are read too (RGB scaled to [0, 1], resized to the model's input).
Each input gives OUT_DIR/<name>.npy (the model's first output) and a row of OUT_DIR/summary.csv.

The cluster: without --address (or RAY_ADDRESS), Ray starts a local one on this machine. For
several machines, start Ray on each (`ray start --head` on one, `ray start --address=HEAD:6379`
on the others) and run this script on any of them with RAY_ADDRESS=HEAD:6379 (or --address).
The model, the input folder and the output folder must then be at the same path on every node
(a shared filesystem), and every node needs the deformrt package.

Sizing: a session splits each run over its threads, so --actors x --threads-per-actor should not
exceed the cores Ray may use. Small models scale better with more actors of one thread each;
large inputs (512x512 and up) with fewer actors of 2-4 threads, which also holds fewer copies of
the weights in memory.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np


def list_inputs(folder: Path) -> List[str]:
    suffixes = {".npy", ".png", ".jpg", ".jpeg"}
    files = sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in suffixes)
    if not files:
        raise SystemExit(f"{folder}: no .npy, .png or .jpg inputs")
    return files


def load_input(path: str, shape) -> np.ndarray:
    """One model input [1, C, H, W] float32 from a .npy array or a picture."""
    if path.endswith(".npy"):
        array = np.load(path).astype(np.float32)
        return array if array.ndim == 4 else array[None]
    from PIL import Image  # pictures need Pillow

    picture = Image.open(path).convert("RGB")
    height, width = shape[2], shape[3]
    if isinstance(height, int) and isinstance(width, int):
        picture = picture.resize((width, height), Image.BILINEAR)
    return (np.asarray(picture, np.float32).transpose(2, 0, 1) / 255.0)[None]


class DeformRTPredictor:
    """One Ray actor: one DeformRT session, reused for every batch the actor receives."""

    def __init__(self, model: str, threads: int, output: str):
        import deformrt

        self.session = deformrt.InferenceSession(model, threads=threads)
        self.input = self.session.get_inputs()[0]
        self.output = Path(output)

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        names, top_class, top_score = [], [], []
        for path in batch["path"]:
            x = load_input(str(path), self.input.shape)
            result = self.session.run(None, {self.input.name: x})[0]
            name = Path(str(path)).stem
            np.save(self.output / f"{name}.npy", result)
            flat = result.reshape(-1)
            names.append(name)
            top_class.append(int(np.argmax(flat)))
            top_score.append(float(flat.max()))
        return {"name": np.array(names), "top_class": np.array(top_class), "top_score": np.array(top_score)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--inputs", required=True, help="folder of .npy arrays or pictures")
    parser.add_argument("--output", required=True, help="folder for the results (created)")
    parser.add_argument("--actors", type=int, default=2, help="DeformRT sessions running at once (default 2)")
    parser.add_argument("--threads-per-actor", type=int, default=1, help="threads of each session (default 1)")
    parser.add_argument("--batch-size", type=int, default=8, help="inputs handed to an actor at a time (default 8)")
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                        help="Ray cluster to join (default: RAY_ADDRESS, else a new local cluster)")
    args = parser.parse_args(argv)
    if args.actors < 1 or args.threads_per_actor < 1 or args.batch_size < 1:
        raise SystemExit("--actors, --threads-per-actor and --batch-size must be at least 1")

    import ray

    files = list_inputs(Path(args.inputs))
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    model = str(Path(args.model).resolve())
    # Workers inherit where the binding and the library are, so an uninstalled checkout works too.
    env = {k: os.environ[k] for k in ("DEFORMRT_LIBRARY", "PYTHONPATH") if k in os.environ}
    ray.init(address=args.address, runtime_env={"env_vars": env} if env else None,
             include_dashboard=False, log_to_driver=False)
    try:
        dataset = ray.data.from_items([{"path": f} for f in files])
        results = dataset.map_batches(
            DeformRTPredictor,
            fn_constructor_kwargs={"model": model, "threads": args.threads_per_actor, "output": str(output.resolve())},
            batch_size=args.batch_size,
            batch_format="numpy",
            concurrency=args.actors,
            num_cpus=args.threads_per_actor,
        )
        rows = sorted(results.take_all(), key=lambda row: str(row["name"]))
    finally:
        ray.shutdown()
    with open(output / "summary.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "top_class", "top_score"])
        for row in rows:
            writer.writerow([row["name"], int(row["top_class"]), f"{float(row['top_score']):.6f}"])
    print(f"{len(rows)} inputs -> {output} ({args.actors} actors x {args.threads_per_actor} threads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
