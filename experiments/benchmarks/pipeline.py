"""Does the input pipeline keep up with training? The tf.data pipeline alone, and the two-head
LeNet's training step fed by it against the same step on one batch held in memory.

Every contender runs in the same process on the same data, after a warm-up, several times; the
table gives medians and the ratio to the step from memory (target: >= 90%). Contenders:
the augmenter before the fix (checked out from git), the fused augmenter through the approaches'
batching (what `mtl train` runs), the fused augmenter with numbered batches
(`pipeline.training_batches`), the same resampled with `ImageProjectiveTransformV3` instead of
the XLA-compiled gathers, per-example augmentation, a private tf.data thread pool, and no
augmentation at all. The first pass over the files (decode, resize, cache) is also timed with the
notebook's loader, a Python loop of image reads and resizes into a list. Writes JSON and Markdown
under experiments/results/benchmarks/:

    python experiments/benchmarks/pipeline.py --data-dir ../shared/data --limit 4000
"""

import argparse
import importlib.util
import os
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mtl import approaches, labels, training  # noqa: E402
from mtl.approaches import batches  # noqa: E402
from mtl.config import TrainConfig, config_from_dict  # noqa: E402
from mtl.data import pipeline  # noqa: E402

from common import (  # noqa: E402
    REPOSITORY, finished, first_pass, load_data, machine_lines, median_and_spread, ratio, rss_mib, started,
    step_rates,
)

# The last commit whose Augmenter chained Keras random layers that all shared one seed.
OLD_AUGMENTER_COMMIT = "7f514b1^"
MEMORY = "one batch held in memory"


def old_augmenter_class():
    """`Augmenter` of mtl/data/pipeline.py as it was before the fused transform, imported from git."""
    source = subprocess.run(
        ["git", "show", f"{OLD_AUGMENTER_COMMIT}:mtl/data/pipeline.py"],
        cwd=REPOSITORY, check=True, capture_output=True, text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "old_pipeline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_pipeline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Augmenter


@tf.function
def projective_augment(images, parameters):
    """The fused augmentation resampled by TensorFlow's image-transform kernel (XLA cannot compile it)."""
    size = tf.cast(tf.shape(images)[1], tf.float32)
    transforms = pipeline.affine_transforms(parameters, size, size)
    resampled = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="NEAREST",
    )
    return pipeline.recolour(resampled, parameters)


def projective_augmenter(config, seed: int):
    """An augmenter like `pipeline.Augmenter` (same draws per batch) that resamples with `projective_augment`."""

    def augmenter(images, batch_index):
        batch_seed = tf.stack([tf.constant(seed, tf.int64), tf.cast(batch_index, tf.int64)])
        return projective_augment(images, pipeline.draw_augmentation(config, tf.shape(images)[0], batch_seed))

    return augmenter


def notebook_first_pass(data, image_size: int) -> dict:
    """The notebook's loader on the same files: a Python loop reading and resizing each image into a
    list (cv2, as the notebook, when installed; else Pillow). Images/s and the memory the list holds."""
    try:
        import cv2

        reader = "cv2.imread + cv2.resize"

        def read(path):
            return cv2.resize(cv2.imread(str(path)), (image_size, image_size))
    except ImportError:
        from PIL import Image

        reader = "Pillow open + convert + resize (cv2 not installed)"

        def read(path):
            with Image.open(path) as image:
                return np.asarray(image.convert("RGB").resize((image_size, image_size), Image.BILINEAR))

    before = rss_mib()["rss_mib"]
    start = time.perf_counter()
    images = [read(path) for source in (data.gender_train, data.emotion_train) for path in source.paths]
    seconds = time.perf_counter() - start
    held = rss_mib()
    return {
        "reader": reader, "images": len(images), "seconds": round(seconds, 2),
        "images_per_second": round(len(images) / seconds), "rss_added_mib": held["rss_mib"] - before, **held,
    }


def pipeline_alone(dataset, batch_size: int, batches_per_repeat: int, repeats: int) -> list[float]:
    iterator = iter(dataset)
    for _ in range(5):  # warm-up: tracing, XLA compilation, shuffle buffer
        next(iterator)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(batches_per_repeat):
            next(iterator)
        rates.append(batches_per_repeat * batch_size / (time.perf_counter() - start))
    return rates


def contenders(config, data, approach, stage) -> dict[str, tf.data.Dataset]:
    """The training batches each contender feeds the step with, on the same data and seeds."""
    gender, emotion = data.images(data.gender_train), data.images(data.emotion_train)
    seed, batch_size, augment = config.train.seed, config.data.batch_size, config.data.augment

    def mixed():
        return batches.mixed_examples(gender, emotion, config.data.emotion_proportion, seed)

    def to_targets(batch_labels, predictions=None):
        return labels.task_targets(batch_labels, predictions, config.options)

    def numbered(augmenter):
        return pipeline.training_batches(mixed(), batch_size, augmenter, to_targets)

    def old_batching(augment_batch):
        def finish(images, batch_labels):
            targets, weights = to_targets(batch_labels)
            return augment_batch(tf.cast(images, tf.float32)), targets, weights

        return mixed().batch(batch_size).map(finish, num_parallel_calls=pipeline.AUTOTUNE).prefetch(pipeline.AUTOTUNE)

    def per_example():
        augmenter = pipeline.Augmenter(augment, seed)

        def augment_one(index, example):
            image, example_labels = example
            return augmenter(tf.cast(image, tf.float32)[None], batch_index=index)[0], example_labels

        def finish(images, batch_labels):
            return (images, *to_targets(batch_labels))

        examples = tf.data.Dataset.zip(tf.data.Dataset.counter(), mixed())
        augmented = examples.map(augment_one, num_parallel_calls=pipeline.AUTOTUNE)
        return augmented.batch(batch_size).map(finish).prefetch(pipeline.AUTOTUNE)

    def one_thread(dataset):
        # Leave the cores to the training step: one tf.data thread, no parallelism inside its ops.
        options = tf.data.Options()
        options.threading.private_threadpool_size = 1
        options.threading.max_intra_op_parallelism = 1
        return dataset.with_options(options)

    real_path, _ = approach.training_batches(config, stage.name, data, None)
    new = pipeline.Augmenter(augment, seed)
    return {
        "old augmenter (3 Keras resamplings, one shared seed)": old_batching(old_augmenter_class()(augment, seed)),
        "fused augmenter, approaches' batching (mtl train today)": real_path,
        "fused augmenter, pipeline.training_batches": numbered(new),
        "fused, ImageProjectiveTransformV3 instead of XLA gathers": numbered(projective_augmenter(augment, seed)),
        "fused, augmented per example before batching": per_example(),
        "fused, training_batches, tf.data on one thread": one_thread(numbered(new)),
        "no augmentation": numbered(None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="datasets folder (default: the bundled sample)")
    parser.add_argument("--limit", type=int, default=None, help="use at most this many training images")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="training steps per timed repetition")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPOSITORY / "experiments/results/benchmarks/pipeline.json")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    config = config_from_dict(
        {"approach": "multitask", "data": {"data_dir": args.data_dir, "batch_size": args.batch_size},
         "model": {"backbone": "lenet"}, "options": {"pseudo_labels": "none"}}
    )
    head = started(args.data_dir)
    data = load_data(config, args.limit)
    decode = first_pass(data)
    print(f"first pass: {decode}", flush=True)
    # After tf.data's first pass, so the notebook's loader reads files the page cache holds already.
    notebook = notebook_first_pass(data, config.data.image_size)
    print(f"notebook loader, first pass: {notebook}", flush=True)
    approach = approaches.get("multitask")
    stage = approach.stages(config)[0]
    stage.trainer.compile(optimizer=training.make_optimizer(TrainConfig(), args.steps, args.steps * args.repeats))
    feeds = contenders(config, data, approach, stage)
    in_memory = next(iter(feeds["no augmentation"]))
    memory = tf.data.Dataset.from_tensors(in_memory).repeat()

    alone = {name: pipeline_alone(dataset, args.batch_size, args.steps, args.repeats) for name, dataset in feeds.items()}
    fed = step_rates(stage.trainer, {MEMORY: memory, **feeds}, args.batch_size, args.steps, args.repeats)
    rows = [
        {
            "contender": name,
            "pipeline_alone": median_and_spread(alone[name]),
            "training_fed": median_and_spread(fed[name]["wall"]),
            "fed_over_memory": ratio(fed[name]["wall"], fed[MEMORY]["wall"]),
            "training_fed_per_cpu_second": median_and_spread(fed[name]["cpu"]),
            "fed_over_memory_per_cpu_second": ratio(fed[name]["cpu"], fed[MEMORY]["cpu"]),
        }
        for name in feeds
    ]

    result = {
        **head,
        "tensorflow": tf.__version__,
        "training_images": decode["images"],
        "batch_size": args.batch_size,
        "steps_per_repeat": args.steps,
        "repeats": args.repeats,
        "first_pass_decode_and_cache": decode,
        "first_pass_notebook_loader": notebook,
        "training_from_memory": median_and_spread(fed[MEMORY]["wall"]),
        "training_from_memory_per_cpu_second": median_and_spread(fed[MEMORY]["cpu"]),
        "rows": rows,
        "memory_at_end": rss_mib(),
    }
    finished(result, args.out, markdown)


def markdown(result: dict) -> str:
    decode, notebook = result["first_pass_decode_and_cache"], result["first_pass_notebook_loader"]
    lines = [
        *machine_lines(result, f" TensorFlow {result['tensorflow']}."),
        "",
        f"Two-head LeNet, batch {result['batch_size']}, default augmentation, {result['training_images']} training "
        f"images; medians of {result['repeats']} repetitions of {result['steps_per_repeat']} batches (min-max), "
        "contenders taking turns in each repetition.",
        "",
        f"- first pass, decode + resize + cache: {decode['images_per_second']} images/s",
        f"- first pass, the notebook's loader ({notebook['reader']}, a Python loop into a list): "
        f"{notebook['images_per_second']} images/s, the list holding {notebook['rss_added_mib']} MiB",
        f"- training step on one batch held in memory: {result['training_from_memory']['median']} images/s, "
        f"{result['training_from_memory_per_cpu_second']['median']} images per CPU-second",
        f"- peak RSS: {result['memory_at_end']['peak_rss_mib']} MiB",
        "",
        "| contender | pipeline alone, cached, images/s | training fed by it, images/s | fed / memory "
        "| fed, images per CPU-second | fed / memory, per CPU-second |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        alone, fed, cpu = row["pipeline_alone"], row["training_fed"], row["training_fed_per_cpu_second"]
        lines.append(
            f"| {row['contender']} | {alone['median']} ({alone['min']}-{alone['max']}) | "
            f"{fed['median']} ({fed['min']}-{fed['max']}) | {row['fed_over_memory']:.0%} | "
            f"{cpu['median']} ({cpu['min']}-{cpu['max']}) | {row['fed_over_memory_per_cpu_second']:.0%} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
