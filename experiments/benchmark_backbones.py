"""Parameters, multiply-adds and measured images/s of each backbone, training and inference.

Uses synthetic 64x64 batches, so it measures the model alone (no decoding). Writes a JSON
and a Markdown table to experiments/results/. Run on a quiet machine:

    python experiments/benchmark_backbones.py --out experiments/results/backbones.json
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from mtl.config import DataConfig, ModelConfig  # noqa: E402
from mtl.models.backbones import BACKBONES  # noqa: E402
from mtl.models.build import build_network  # noqa: E402
from mtl.models.cost import forward_multiply_adds  # noqa: E402
from mtl.training import Trainer  # noqa: E402


def images_per_second(step, batch, repeats: int) -> float:
    step(batch)  # warm-up: tracing
    start = time.perf_counter()
    for _ in range(repeats):
        step(batch)
    return repeats * len(batch[0]) / (time.perf_counter() - start)


def measure(backbone: str, batch_size: int, repeats: int) -> dict:
    keras.utils.set_random_seed(0)
    network = build_network(ModelConfig(backbone=backbone), DataConfig(), {"gender": 2, "emotion": 2}, "benchmark")
    trainer = Trainer(network)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    images = tf.random.uniform((batch_size, 64, 64, 3), 0, 255)
    targets = {task: tf.one_hot(tf.zeros(batch_size, tf.int32), 2) for task in ("gender", "emotion")}
    weights = {task: tf.ones(batch_size) for task in ("gender", "emotion")}
    train_step = tf.function(lambda batch: trainer.train_step(batch))
    infer = tf.function(lambda batch: network(batch[0], training=False))
    return {
        "backbone": backbone,
        "parameters": int(network.count_params()),
        "multiply_adds": forward_multiply_adds(network),
        "train_images_per_second": round(images_per_second(train_step, (images, targets, weights), repeats), 1),
        "inference_images_per_second": round(images_per_second(infer, (images,), repeats * 3), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("experiments/results/backbones.json"))
    args = parser.parse_args()
    rows = [measure(name, args.batch_size, args.repeats) for name in BACKBONES.names()]
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "tensorflow": tf.__version__,
        "batch_size": args.batch_size,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| backbone | parameters | multiply-adds | train images/s | inference images/s |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['backbone']} | {r['parameters']:,} | {r['multiply_adds'] / 1e6:.1f} M | "
        f"{r['train_images_per_second']} | {r['inference_images_per_second']} |"
        for r in rows
    ]
    table = "\n".join(lines) + "\n"
    args.out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
