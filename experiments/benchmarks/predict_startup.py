"""Where `mtl predict PHOTO` spends its time: each phase of one prediction in a fresh process.

Each round starts a new Python process that times, in order: importing the command line,
starting TensorFlow (import and device listing, `mtl.quiet.start_tensorflow`), importing the
predictor (Keras and mtl's modules), loading the bundled model, making the face detector, the
first prediction of the photo and a second one. The parent also times the whole command
(`python -m mtl.cli predict PHOTO`), lists the slowest imports of `python -X importtime`, and
compares the model called eagerly (what predict does) with `predict_on_batch`, which traces a graph
for every new number of faces.
Medians over the rounds; writes JSON and Markdown under experiments/results/benchmarks/:

    python experiments/benchmarks/predict_startup.py --rounds 3
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import REPOSITORY, RESULTS, finished, machine_lines, started

PHOTO = "experiments/example/photo.jpg"

CHILD = """
import json, time
marks = [("start", time.perf_counter())]
def mark(name): marks.append((name, time.perf_counter()))
import mtl.cli; mark("import mtl.cli (parser)")
from mtl.quiet import start_tensorflow; start_tensorflow(); mark("start TensorFlow (import, devices)")
import mtl.predict as predict; mark("import the predictor (Keras, mtl modules)")
predictor = predict.load(); mark("load the bundled model")
predict.faces.detector("yuface"); mark("make the face detector")
predictor.predict(PHOTO); mark("first prediction of the photo")
predictor.predict(PHOTO); mark("second prediction")
print(json.dumps([(name, round(b - a, 3)) for (_, a), (name, b) in zip(marks, marks[1:])]))
"""


def environment() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPOSITORY)}


def phases() -> list:
    child = CHILD.replace("PHOTO", repr(PHOTO))
    result = subprocess.run([sys.executable, "-c", child], cwd=REPOSITORY, env=environment(),
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def whole_command() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mtl.cli", "predict", PHOTO], cwd=REPOSITORY, env=environment(),
                   capture_output=True, check=True)
    return time.perf_counter() - start


def slowest_imports(count: int = 8) -> list:
    """(module, cumulative seconds) of the slowest top-level imports of the predictor, from -X importtime."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "import mtl.quiet as q; q.start_tensorflow(); "
                             "import mtl.predict"], cwd=REPOSITORY, env=environment(), capture_output=True, text=True)
    rows = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line or "cumulative" in line:
            continue
        _, cumulative, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
        if not name.startswith(" ") and "." not in name:  # top-level packages only
            rows.append((name, int(cumulative) / 1e6))
    return [(name, round(seconds, 2)) for name, seconds in sorted(rows, key=lambda row: -row[1])[:count]]


MODEL_CALLS = """
import json, time, numpy as np
from mtl.quiet import start_tensorflow; start_tensorflow()
from mtl.models.build import load_inference_model
from mtl.predict import bundled_model_path
seconds = {}
for way in ("eager", "predict_on_batch"):
    model = load_inference_model(bundled_model_path())
    call = (lambda x: model(x, training=False)) if way == "eager" else model.predict_on_batch
    for faces in (2, 3):
        start = time.perf_counter()
        call(np.zeros((faces, 64, 64, 3), np.float32))
        seconds[f"{way}, first call with {faces} faces"] = round(time.perf_counter() - start, 3)
print(json.dumps(seconds))
"""


def model_calls() -> dict:
    result = subprocess.run([sys.executable, "-c", MODEL_CALLS], cwd=REPOSITORY, env=environment(),
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def markdown(result: dict) -> str:
    lines = ["# Where `mtl predict PHOTO` spends its time", "", *machine_lines(result), "",
             f"Whole command, median of {result['rounds']}: {result['whole_command_seconds']['median']:.2f} s "
             f"(min {result['whole_command_seconds']['min']:.2f}).", "",
             "| phase, in a fresh process | seconds (median) |", "| --- | --- |"]
    lines += [f"| {name} | {seconds:.2f} |" for name, seconds in result["phases"].items()]
    lines += ["", "Slowest top-level imports (`-X importtime`, cumulative):", "",
              "| package | seconds |", "| --- | --- |"]
    lines += [f"| {name} | {seconds:.2f} |" for name, seconds in result["slowest_imports"]]
    lines += ["", "The model's first calls (bundled model, fresh process):", "", "| call | seconds |", "| --- | --- |"]
    lines += [f"| {name} | {seconds:.3f} |" for name, seconds in result["model_calls"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS / "predict_startup.json"))
    args = parser.parse_args()
    result = started(None, rounds=args.rounds, photo=PHOTO)
    rounds = [dict(phases()) for _ in range(args.rounds)]
    result["phases"] = {name: round(statistics.median(r[name] for r in rounds), 3) for name in rounds[0]}
    times = [whole_command() for _ in range(args.rounds)]
    result["whole_command_seconds"] = {"median": round(statistics.median(times), 2), "min": round(min(times), 2)}
    result["slowest_imports"] = slowest_imports()
    result["model_calls"] = model_calls()
    finished(result, Path(args.out), markdown)


if __name__ == "__main__":
    main()
