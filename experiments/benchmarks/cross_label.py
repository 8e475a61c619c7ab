"""What cross-labelling costs: `pseudo_labels.cross_label` as the crosslabel and pseudo-labelled
multitask approaches run it, against the teachers' predictions alone on the same images.

The teachers are the separate approach's inference model with untrained weights (they cost the
same as trained ones). Both training sets are decoded and cached first, as they are when a run
cross-labels after training its teachers. Writes JSON and Markdown under experiments/results/benchmarks/:

    python experiments/benchmarks/cross_label.py --data-dir ../shared/data
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import tensorflow as tf  # noqa: E402

from mtl import approaches  # noqa: E402
from mtl.config import config_from_dict  # noqa: E402
from mtl.models.build import inference_model  # noqa: E402
from mtl.pseudo_labels import cross_label  # noqa: E402

from common import RESULTS, finished, first_pass, load_data, machine_lines, median_and_spread, started  # noqa: E402


def teachers_alone(teacher, data, batch_size: int) -> int:
    """Predict both training sets with the teachers, writing nothing; the number of images."""
    count = 0
    for source in (data.gender_train, data.emotion_train):
        for images, _ in data.images(source).batch(batch_size):
            teacher.predict_on_batch(tf.cast(images, tf.float32))
            count += len(images)
    return count


def markdown(result: dict) -> str:
    rows = result["rows"]
    return "\n".join([
        *machine_lines(result),
        "",
        f"{result['images']} training images, cached; images/s, median (min-max) of {result['repeats']} turns.",
        "",
        "| contender | images/s | share of the teachers alone |",
        "|---|---|---|",
        *(f"| {name} | {row['median']} ({row['min']}-{row['max']}) | {row['median'] / rows['teachers alone']['median']:.0%} |"
          for name, row in rows.items()),
    ]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="datasets folder (default: the bundled sample)")
    parser.add_argument("--limit", type=int, default=8000, help="training images in all (0: every one)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "cross_label.json")
    args = parser.parse_args()

    config = config_from_dict({"approach": "separate", "data": {"data_dir": args.data_dir} if args.data_dir else {}})
    result = started(args.data_dir, repeats=args.repeats)
    data = load_data(config, args.limit or None)
    result["images"] = first_pass(data)["images"]
    teacher = inference_model([stage.network for stage in approaches.get("separate").stages(config)], config.data)
    teachers_alone(teacher, data, 256)  # warm-up: tracing and first allocations

    rates = {"teachers alone": [], "cross_label (predict, encode, write)": []}
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):  # contenders take turns, so load changes hit them alike
            start = time.perf_counter()
            count = teachers_alone(teacher, data, 256)
            rates["teachers alone"].append(count / (time.perf_counter() - start))
            start = time.perf_counter()
            summary = cross_label(teacher, data, Path(folder) / f"merged-{repeat}")
            rates["cross_label (predict, encode, write)"].append(summary["examples"] / (time.perf_counter() - start))
    result["rows"] = {name: median_and_spread(values) for name, values in rates.items()}
    finished(result, args.out, markdown)


if __name__ == "__main__":
    main()
