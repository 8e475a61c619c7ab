"""Where `mtl predict PHOTO` spends its time, through each runtime, and how fast it goes on a folder.

Each round starts a new Python process per runtime (`mtl.predict.load(runtime=...)`): LiteRT,
which answers with the bundled model's TFLite export and loads no TensorFlow, and Keras, which
starts TensorFlow first (`mtl.quiet.start_tensorflow`). The process times, in order: importing the
command line, starting TensorFlow (Keras only), importing the predictor, loading the bundled
model, making the face detector, the first prediction of the photo and a second one. The parent
also times the whole command (`python -m mtl.cli predict --runtime R PHOTO`), lists the slowest
imports of `python -X importtime` for each, and times `mtl predict --runtime R FOLDER` on a folder
of real photographs (the first --folder-images of UTKFace's test set, 200x200 each, with face
detection), and the photos per second of a predictor that has started.
Medians over the rounds; writes JSON and Markdown under experiments/results/benchmarks/:

    python experiments/benchmarks/predict_startup.py --rounds 3 --data-dir ../shared/data
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

from common import REPOSITORY, RESULTS, finished, machine_lines, started

PHOTO = "experiments/example/photo.jpg"
RUNTIMES = ("litert", "keras")

CHILD = """
import json, time
marks = [("start", time.perf_counter())]
def mark(name): marks.append((name, time.perf_counter()))
import mtl.cli; mark("import mtl.cli (parser)")
if RUNTIME == "keras":
    from mtl.quiet import start_tensorflow; start_tensorflow(); mark("start TensorFlow (import, devices)")
import mtl.predict as predict; mark("import the predictor")
predictor = predict.load(runtime=RUNTIME); mark("load the bundled model")
predict.faces.detector("yuface"); mark("make the face detector")
predictor.predict(PHOTO); mark("first prediction of the photo")
predictor.predict(PHOTO); mark("second prediction")
print(json.dumps([(name, round(b - a, 3)) for (_, a), (name, b) in zip(marks, marks[1:])]))
"""


def environment() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPOSITORY)}


def phases(runtime: str) -> list:
    child = CHILD.replace("PHOTO", repr(PHOTO)).replace("RUNTIME", repr(runtime))
    result = subprocess.run([sys.executable, "-c", child], cwd=REPOSITORY, env=environment(),
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def whole_command(runtime: str, *paths: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mtl.cli", "predict", "--runtime", runtime, *paths], cwd=REPOSITORY,
                   env=environment(), capture_output=True, check=True)
    return time.perf_counter() - start


def slowest_imports(runtime: str, count: int = 8) -> list:
    """(module, cumulative seconds) of the slowest top-level imports of the predictor, from -X importtime."""
    start = "import mtl.quiet as q; q.start_tensorflow(); " if runtime == "keras" else ""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", f"{start}import mtl.predict as p; "
                             f"p.load(runtime={runtime!r})"], cwd=REPOSITORY, env=environment(),
                            capture_output=True, text=True)
    rows = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line or "cumulative" in line:
            continue
        _, cumulative, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
        if not name.startswith(" ") and "." not in name:  # top-level packages only
            rows.append((name, int(cumulative) / 1e6))
    return [(name, round(seconds, 2)) for name, seconds in sorted(rows, key=lambda row: -row[1])[:count]]


FOLDER_RATE = """
import json, sys, time
import mtl.predict as predict
predictor = predict.load(runtime=RUNTIME)
predictor.predict(PHOTO)  # the first call's set-up is start-up, not rate
start = time.perf_counter()
results = predictor.predict(FOLDER)
seconds = time.perf_counter() - start
print(json.dumps({"photos_per_second": round(len(results) / seconds, 1),
                  "faces": sum(len(result.faces) for result in results)}))
"""


def folder_rate(runtime: str, folder: Path) -> dict:
    child = FOLDER_RATE.replace("PHOTO", repr(PHOTO)).replace("FOLDER", repr(str(folder))).replace("RUNTIME", repr(runtime))
    result = subprocess.run([sys.executable, "-c", child], cwd=REPOSITORY, env=environment(),
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def photo_folder(data_dir: Path, count: int, into: Path) -> Path:
    """A folder of the first `count` photographs of UTKFace's test set (both classes, alternating)."""
    test = data_dir / "utkface" / "test"
    classes = [sorted((test / name).iterdir())[: (count + 1) // 2] for name in ("female", "male")]
    for path in [path for pair in zip(*classes) for path in pair][:count]:
        shutil.copy(path, into / path.name)
    return into


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
    folder = result["folder"]
    lines = ["# Where `mtl predict PHOTO` spends its time", "", *machine_lines(result), "",
             "| runtime | whole command, one photo (median) | min | a folder of "
             f"{folder['images']} photos | photos per second after start-up |", "| --- | --- | --- | --- | --- |"]
    for runtime in RUNTIMES:
        whole, rate = result["whole_command_seconds"][runtime], folder[runtime]
        lines.append(f"| {runtime} | {whole['median']:.2f} s | {whole['min']:.2f} s | {rate['seconds']:.2f} s | "
                     f"{rate['photos_per_second']:.1f} |")
    found = ", ".join(f"{runtime} {folder[runtime]['faces']}" for runtime in RUNTIMES)
    lines += ["", f"Folder: {folder['what']}. Photos per second: `Predictor.predict(FOLDER)` in a process that has "
              f"loaded the model and answered one photo (faces found: {found}).", ""]
    for runtime in RUNTIMES:
        lines += [f"## {runtime}: each phase in a fresh process", "", "| phase | seconds (median) |", "| --- | --- |"]
        lines += [f"| {name} | {seconds:.2f} |" for name, seconds in result["phases"][runtime].items()]
        lines += ["", "Slowest top-level imports (`-X importtime`, cumulative):", "", "| package | seconds |",
                  "| --- | --- |"]
        lines += [f"| {name} | {seconds:.2f} |" for name, seconds in result["slowest_imports"][runtime]]
        lines.append("")
    lines += ["The Keras model's first calls (bundled model, fresh process):", "", "| call | seconds |", "| --- | --- |"]
    lines += [f"| {name} | {seconds:.3f} |" for name, seconds in result["model_calls"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-dir", default="../shared/data", help="where utkface/test is, for the folder")
    parser.add_argument("--folder-images", type=int, default=200)
    parser.add_argument("--out", default=str(RESULTS / "predict_startup.json"))
    args = parser.parse_args()
    result = started(args.data_dir, rounds=args.rounds, photo=PHOTO)
    result["phases"], result["whole_command_seconds"], result["slowest_imports"] = {}, {}, {}
    for runtime in RUNTIMES:
        rounds = [dict(phases(runtime)) for _ in range(args.rounds)]
        result["phases"][runtime] = {name: round(statistics.median(r[name] for r in rounds), 3) for name in rounds[0]}
        times = [whole_command(runtime, PHOTO) for _ in range(args.rounds)]
        result["whole_command_seconds"][runtime] = {"median": round(statistics.median(times), 2),
                                                    "min": round(min(times), 2)}
        result["slowest_imports"][runtime] = slowest_imports(runtime)
    with tempfile.TemporaryDirectory() as scratch:
        folder = photo_folder(Path(args.data_dir).resolve(), args.folder_images, Path(scratch))
        result["folder"] = {"images": args.folder_images,
                            "what": f"the first {args.folder_images} photos of utkface/test, women and men alternating"}
        for runtime in RUNTIMES:
            result["folder"][runtime] = {"seconds": round(whole_command(runtime, str(folder)), 2),
                                         **folder_rate(runtime, folder)}
    result["model_calls"] = model_calls()
    finished(result, Path(args.out), markdown)


if __name__ == "__main__":
    main()
