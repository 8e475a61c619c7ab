"""How does training's memory grow with the data? Peak RSS of a real `mtl train` run on a quarter,
half and all of gender/Training, with the decoded images cached in memory and not cached.

Each run is `mtl train multitask` (LeNet, masked labels, one epoch, `--no-evaluate`, otherwise the
default config) in a subprocess of its own, whose peak resident memory is the `ru_maxrss` that
`os.wait4` reports for that process alone. The data folder of a run is a temporary one: its
gender/Training holds symbolic links to a seeded, stratified share of each class's files, and
everything else links to the real folders, so nothing is copied. Writes JSON and Markdown under
experiments/results/benchmarks/:

    python experiments/benchmarks/memory.py --data-dir ../shared/data
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np

from common import RESULTS, REPOSITORY, finished, machine_lines, started

GENDER_TRAIN = Path("gender") / "Training"
CACHES = ("memory", "none")


def linked_data_folder(data_dir: Path, fraction: float, folder: Path, seed: int = 0) -> int:
    """Fill `folder` with a data folder whose gender/Training links to `fraction` of each class's
    files (seeded), and whose other entries link to the real ones; returns the images linked."""
    for entry in data_dir.iterdir():
        if entry.name != GENDER_TRAIN.parts[0]:
            (folder / entry.name).symlink_to(entry.resolve())
    for entry in (data_dir / GENDER_TRAIN.parts[0]).iterdir():
        if entry.name != GENDER_TRAIN.name:
            (folder / GENDER_TRAIN.parts[0]).mkdir(exist_ok=True)
            (folder / GENDER_TRAIN.parts[0] / entry.name).symlink_to(entry.resolve())
    linked = 0
    rng = np.random.default_rng(seed)
    for class_folder in sorted(path for path in (data_dir / GENDER_TRAIN).iterdir() if path.is_dir()):
        files = sorted(path for path in class_folder.iterdir() if path.is_file())
        chosen = [files[index] for index in sorted(rng.permutation(len(files))[: round(fraction * len(files))])]
        (folder / GENDER_TRAIN / class_folder.name).mkdir(parents=True)
        for path in chosen:
            (folder / GENDER_TRAIN / class_folder.name / path.name).symlink_to(path.resolve())
        linked += len(chosen)
    return linked


def peak_rss_of_training(data_dir: Path, cache: str, epochs: int, folder: Path) -> dict:
    """Peak RSS (MiB) and wall seconds of one `mtl train` process on `data_dir`."""
    command = [
        sys.executable, "-m", "mtl", "train", "multitask", "--data-dir", str(data_dir), "--backbone", "lenet",
        "--epochs", str(epochs), "--no-evaluate", "--runs-dir", str(folder / "runs"), "--name", cache,
        "--set", f"data.cache={cache}", "--set", "options.pseudo_labels=none",
    ]
    log = folder / f"train-{cache}.log"
    start = time.perf_counter()
    with open(log, "w") as output:
        # Run from the repository, so `-m mtl` measures this checkout's code.
        process = subprocess.Popen(command, cwd=REPOSITORY, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"mtl train failed ({' '.join(command)}):\n{log.read_text()[-3000:]}")
    return {"peak_rss_mib": round(usage.ru_maxrss / 1024), "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="datasets folder (default: the bundled sample)")
    parser.add_argument("--fractions", default="0.25,0.5,1", help="comma-separated shares of gender/Training")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "memory.json")
    args = parser.parse_args()

    data_dir = Path(args.data_dir).resolve() if args.data_dir else Path(str(resources.files("mtl") / "sample_data"))
    head = started(args.data_dir)
    rows = []
    for fraction in map(float, args.fractions.split(",")):
        for cache in CACHES:
            with tempfile.TemporaryDirectory() as temporary:
                folder = Path(temporary)
                (folder / "data").mkdir()
                images = linked_data_folder(data_dir, fraction, folder / "data")
                measured = peak_rss_of_training(folder / "data", cache, args.epochs, folder)
            rows.append({"fraction": fraction, "gender_training_images": images, "cache": cache, **measured})
            print(rows[-1], flush=True)

    result = {
        **head,
        "run": f"mtl train multitask --backbone lenet --epochs {args.epochs} --no-evaluate "
               "--set options.pseudo_labels=none --set data.cache=CACHE",
        "rows": rows,
    }
    finished(result, args.out, markdown)


def markdown(result: dict) -> str:
    lines = [
        *machine_lines(result),
        f"Each row one process: `{result['run']}` on a share of gender/Training ({result['data_dir']}), "
        "all of fer2013/train.",
        "",
        "| fraction of gender/Training | gender training images | data.cache | peak RSS, MiB | seconds |",
        "|---|---|---|---|---|",
        *(
            f"| {row['fraction']:.0%} | {row['gender_training_images']} | {row['cache']} | {row['peak_rss_mib']} | {row['seconds']} |"
            for row in result["rows"]
        ),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
