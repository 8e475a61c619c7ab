"""Reading the training sets from TFDS records (`mtl prepare`, `data.prepared`) against reading the
image folders: the first epoch, later epochs and peak memory.

The datasets are prepared once, timed, into `--prepared-dir` (a temporary folder by default).
Then each contender runs in a process of its own, so that its peak RSS is its own, and reads both
training sets through `ExperimentData.images`, as training does, for `--epochs` epochs:
the folders or the records, with `data.cache` memory (the default: the first epoch fills the
cache, later ones read it) or none (every epoch reads the source again). A last contender feeds
the multitask approach's training batches (shuffle buffer, mixing, augmentation) from the
records with `data.cache=none` and records RSS after every epoch: a dataset larger than memory
trains with memory that stays flat. Preparing reads every file first, so every contender reads
files from the page cache. Writes JSON and Markdown under experiments/results/benchmarks/:

    python experiments/benchmarks/prepared.py --data-dir ../shared/data

Smoke test (results not for committing): `--sample --epochs 2 --out /tmp/prepared.json`.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

from common import RESULTS, finished, machine_lines, rss_mib, started  # noqa: E402

RESULT_LINE = "RESULT "  # how a contender's process hands its measurements back
CONTENDERS = {
    "folders, cache in memory (the default)": {"prepared": False, "cache": "memory"},
    "folders, cache none (decoded every epoch)": {"prepared": False, "cache": "none"},
    "prepared records, cache in memory": {"prepared": True, "cache": "memory"},
    "prepared records, cache none (read every epoch)": {"prepared": True, "cache": "none"},
}
TRAINING_FED = "prepared records, cache none, feeding the multitask training batches"


def experiment_config(args, prepared: bool, cache: str):
    from mtl.config import config_from_dict

    data = {"data_dir": args.data_dir, "cache": cache, "batch_size": args.batch_size,
            "prepared": str(args.prepared_dir) if prepared else None}
    return config_from_dict({"approach": "multitask", "data": data, "model": {"backbone": "lenet"},
                             "options": {"pseudo_labels": "none"}})


def prepare(args) -> dict:
    """Prepare every dataset the config names: seconds, and the counts `mtl prepare` prints."""
    from mtl.data import pipeline, prepared

    config = experiment_config(args, True, "memory")
    start = time.perf_counter()
    builders = prepared.prepare(config.data, pipeline.data_root(config.data), args.prepared_dir, config.train.seed)
    seconds = time.perf_counter() - start
    found = {name: prepared.counts(builder) for name, builder in builders.items()}
    images = sum(count for dataset in found.values() for count in dataset["kept"].values())
    size = sum(path.stat().st_size for path in Path(args.prepared_dir).rglob("*") if path.is_file())
    return {"seconds": round(seconds, 1), "images": images, "images_per_second": round(images / seconds),
            "size_mib": round(size / 2**20), "datasets": found, **rss_mib()}


def read_epochs(args, prepared: bool, cache: str) -> dict:
    """Load the experiment's data, then read both training sets `args.epochs` times: seconds and RSS per epoch."""
    from mtl.data.pipeline import ExperimentData

    config = experiment_config(args, prepared, cache)
    start = time.perf_counter()
    data = ExperimentData.load(config.data, config.train.seed)
    load_seconds = time.perf_counter() - start
    epochs = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        images = sum(1 for source in (data.gender_train, data.emotion_train) for _ in data.images(source))
        epochs.append({"images": images, "seconds": round(time.perf_counter() - start, 2), **rss_mib()})
    return {"load_seconds": round(load_seconds, 2), "epochs": epochs}


def training_fed(args) -> dict:
    """The multitask training batches from the records with no cache, an epoch of steps at a time: RSS per epoch."""
    from mtl import approaches
    from mtl.data.pipeline import ExperimentData

    config = experiment_config(args, True, "none")
    data = ExperimentData.load(config.data, config.train.seed)
    approach = approaches.get(config.approach.type)
    batches, steps = approach.training_batches(config, approach.stages(config)[0].name, data, None)
    iterator = iter(batches)
    epochs = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        for _ in range(steps):
            next(iterator)
        epochs.append({"images": steps * args.batch_size, "seconds": round(time.perf_counter() - start, 2), **rss_mib()})
    return {"load_seconds": None, "epochs": epochs}


def run_contender(name: str, args) -> dict:
    """`name` measured in a new process of this script; its result line parsed."""
    command = [sys.executable, __file__, "--contender", name, "--prepared-dir", str(args.prepared_dir),
               "--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
    command += ["--data-dir", args.data_dir] if args.data_dir else ["--sample"]
    print(f"{name} ...", flush=True)
    finished = subprocess.run(command, check=True, capture_output=True, text=True)
    line = next(line for line in reversed(finished.stdout.splitlines()) if line.startswith(RESULT_LINE))
    return json.loads(line.removeprefix(RESULT_LINE))


def measure(args) -> dict:
    if args.contender == "prepare":
        return prepare(args)
    if args.contender == TRAINING_FED:
        return training_fed(args)
    return read_epochs(args, **CONTENDERS[args.contender])


def summary(name: str, measured: dict) -> dict:
    """A contender's row: first epoch (load included), later epochs' median rate, RSS after each epoch, peak RSS."""
    first, later = measured["epochs"][0], measured["epochs"][1:]
    first_seconds = first["seconds"] + (measured["load_seconds"] or 0)
    return {
        "contender": name,
        "load_seconds": measured["load_seconds"],
        "first_epoch_seconds": round(first_seconds, 2),
        "first_epoch_images_per_second": round(first["images"] / first_seconds),
        "later_epochs_images_per_second": (
            round(statistics.median(epoch["images"] / epoch["seconds"] for epoch in later)) if later else None
        ),
        "rss_mib_after_each_epoch": [epoch["rss_mib"] for epoch in measured["epochs"]],
        "peak_rss_mib": measured["epochs"][-1]["peak_rss_mib"],
        "epochs": measured["epochs"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data", help="datasets folder (default: ../shared/data)")
    parser.add_argument("--sample", action="store_true", help="read the bundled sample instead (a smoke test)")
    parser.add_argument(
        "--prepared-dir", type=Path, help="where the prepared datasets go (default: a temporary folder, removed)"
    )
    parser.add_argument("--epochs", type=int, default=3, help="epochs each contender reads (the first and later ones)")
    parser.add_argument("--batch-size", type=int, default=64, help="of the training batches the last contender feeds")
    parser.add_argument("--out", type=Path, default=RESULTS / "prepared.json")
    parser.add_argument("--contender", help=argparse.SUPPRESS)  # set when the script runs itself for one contender
    args = parser.parse_args()
    args.data_dir = None if args.sample else args.data_dir

    if args.contender:
        print(RESULT_LINE + json.dumps(measure(args)), flush=True)
        return
    temporary = args.prepared_dir is None
    args.prepared_dir = args.prepared_dir or Path(tempfile.mkdtemp(prefix="prepared-benchmark-"))
    head = started(args.data_dir)
    try:
        preparation = run_contender("prepare", args)
        rows = [summary(name, run_contender(name, args)) for name in [*CONTENDERS, TRAINING_FED]]
    finally:
        if temporary:
            shutil.rmtree(args.prepared_dir, ignore_errors=True)
    result = {
        **head,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "preparation": preparation,
        "rows": rows,
    }
    finished(result, args.out, markdown)


def markdown(result: dict) -> str:
    preparation = result["preparation"]
    lines = [
        *machine_lines(result),
        "",
        f"Preparing every dataset once ({preparation['images']} images of the training folders): "
        f"{preparation['seconds']} s, {preparation['images_per_second']} images/s, {preparation['size_mib']} MiB of "
        f"records, peak RSS {preparation['peak_rss_mib']} MiB.",
        "",
        f"Each contender in its own process, reading both training sets {result['epochs']} times; the first epoch "
        "includes loading the data (listing and checking the folders, or opening the records). "
        f"The last contender feeds training batches of {result['batch_size']} (rate of batches made, not of training).",
        "",
        "| contender | first epoch, s | first epoch, images/s | later epochs, images/s | RSS after each epoch, MiB | peak RSS, MiB |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        later = row["later_epochs_images_per_second"]
        lines.append(
            f"| {row['contender']} | {row['first_epoch_seconds']} | {row['first_epoch_images_per_second']} | "
            f"{later if later is not None else '-'} | {', '.join(map(str, row['rss_mib_after_each_epoch']))} | "
            f"{row['peak_rss_mib']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
