"""What the benchmarks share: the machine they ran on, memory, medians and the timed training step.

Imported by the scripts beside it (`pipeline.py`, `training.py`, `memory.py`, ...), which run as
`python experiments/benchmarks/NAME.py`, so this folder is on their import path.
"""

import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[2]
RESULTS = REPOSITORY / "experiments" / "results" / "benchmarks"


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "unknown")
    return {"cpu": model, "cores": os.cpu_count(), "load_average": [round(value, 2) for value in os.getloadavg()]}


def started(data_dir: str | None, **fields) -> dict:
    """The head of a benchmark's result: its command, the machine (load now, at the start) and the data."""
    return {
        "command": " ".join(["python", *map(relative, sys.argv)]),
        "machine": machine(),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
        "data_dir": relative(data_dir) if data_dir else "bundled sample",
        **fields,
    }


def finished(result: dict, out: Path, markdown) -> None:
    """Write `result` as JSON to `out` and as Markdown beside it (the machine's load now, at the end), and print it."""
    result["machine"] = machine()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


def machine_lines(result: dict, extra: str = "") -> list[str]:
    """The first lines of a benchmark's Markdown: the machine, its load at start and end, the command."""
    info = result["machine"]
    return [
        f"Machine: {info['cpu']}, {info['cores']} cores; load average {result['load_average_at_start']} at start, "
        f"{info['load_average']} at end.{extra}",
        f"Command: `{result['command']}`",
    ]


def relative(argument: str) -> str:
    """A path argument relative to the repository, so committed results name no one's home folder."""
    return os.path.relpath(argument, REPOSITORY) if os.path.isabs(argument) else argument


def rss_mib() -> dict:
    status = Path("/proc/self/status").read_text().splitlines()
    current = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
    return {"rss_mib": round(current / 1024), "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def median_and_spread(rates: list[float]) -> dict:
    return {"median": round(statistics.median(rates)), "min": round(min(rates)), "max": round(max(rates))}


def ratio(rates: list[float], baseline: list[float]) -> float:
    return round(statistics.median(rates) / statistics.median(baseline), 3)


def limited(source, count: int, seed: int):
    """A seeded random subset of `count` images of a source (all of them when it holds fewer)."""
    if count >= len(source):
        return source
    chosen = np.sort(np.random.default_rng(seed).permutation(len(source))[:count])
    return source.subset(chosen, f"{source.name}[{count}]")


def load_data(config, limit: int | None):
    """The experiment's training and validation sources, the training sets cut to `limit` images in all."""
    from mtl.data import pipeline  # here, so the scripts that need no TensorFlow do not load it

    data = pipeline.ExperimentData.load(config.data, config.train.seed)
    if limit:
        total = len(data.gender_train) + len(data.emotion_train)
        data.gender_train = limited(data.gender_train, round(limit * len(data.gender_train) / total), 0)
        data.emotion_train = limited(data.emotion_train, round(limit * len(data.emotion_train) / total), 1)
    return data


def first_pass(data) -> dict:
    """Decode, resize and cache both training sets once: images/s of a run's first epoch of reading."""
    start = time.perf_counter()
    count = sum(1 for source in (data.gender_train, data.emotion_train) for _ in data.images(source))
    seconds = time.perf_counter() - start
    return {"images": count, "seconds": round(seconds, 2), "images_per_second": round(count / seconds), **rss_mib()}


def step_rates(trainer, feeds: dict, batch_size: int, steps: int, repeats: int) -> dict:
    """Per dataset, images per second of wall time and per CPU-second of this process (pipeline threads
    included) of the trainer's compiled training step (the function `fit` calls) fed by it.

    The CPU rate hardly moves with other processes' load on a shared machine. Contenders take turns within each repetition, so a change in the machine's load hits them alike.
    Each turn first takes a few untimed steps (a turn must not start on batches prefetched during
    another's) and ends with a pause that lets its prefetching finish before the next turn.
    """
    trainer.make_train_function()
    iterators = {name: iter(dataset) for name, dataset in feeds.items()}
    rates = {name: {"wall": [], "cpu": []} for name in feeds}
    for repeat in range(repeats + 1):  # the first round is the warm-up: tracing, compiling, filling buffers
        for name, iterator in iterators.items():
            for _ in range(3):
                trainer.train_function(iterator)
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(steps):
                trainer.train_function(iterator)
            if repeat:
                rates[name]["wall"].append(steps * batch_size / (time.perf_counter() - start))
                rates[name]["cpu"].append(steps * batch_size / (time.process_time() - start_cpu))
            time.sleep(0.3)
    return rates
