"""Does horizontal-flip averaging help? Each finished run's own networks, scored on its validation
splits with and without it.

Flip averaging (`model.flip_test_time_augmentation`) changes only the saved model, never training.
An ablation row that retrains with it on compares other networks, and its validation accuracy is
the one measured during training, without the flip; so this pairs each run with itself instead:
the same networks, the same validation images, answered once and averaged with their mirror image.

    python experiments/flip_averaging.py runs/compare_full_3seeds --out experiments/results/compare_full

Reads `<root>/<variant>/seed-<k>/`: `config.json` and the stage networks (`*.keras` other than
`model.keras`); the validation splits are those the run selected its epochs on (its `data` and
`train.seed`). Writes `flip_averaging.{json,md}`: per run, accuracy with and without, and per task
the mean ± std of the gain over runs with an exact McNemar test of every run's images pooled.
"""

import argparse
import statistics
import sys
from pathlib import Path

import keras
import numpy as np

from mtl.comparison_stats import mcnemar_p
from mtl.config import load_config, merge
from mtl.data.pipeline import ExperimentData
from mtl.evaluate import labelled, predict_dataset
from mtl.models.build import inference_model
from mtl.provenance import provenance
from mtl.runs import CONFIG_FILE, MODEL_FILE, write_json
from mtl.tasks import TASKS


def finished_runs(root: Path) -> list[Path]:
    return sorted(config.parent for config in root.glob(f"*/seed-*/{CONFIG_FILE}") if (config.parent / MODEL_FILE).is_file())


def correct_on_validation(run_dir: Path, data_dir: str | None) -> dict[str, dict[str, np.ndarray]]:
    """{"plain" | "flip_averaged": {task: per-image right or wrong}} on the run's validation splits."""
    config = load_config(run_dir / CONFIG_FILE)
    if data_dir:
        config = merge(config, {"data": {"data_dir": data_dir}})
    data = ExperimentData.load(config.data, config.train.seed)
    examples = data.images(data.gender_validation).concatenate(data.images(data.emotion_validation))
    networks = [keras.models.load_model(path) for path in sorted(run_dir.glob("*.keras")) if path.name != MODEL_FILE]
    correct = {}
    for name, flip in (("plain", False), ("flip_averaged", True)):
        model = inference_model(networks, config.data, flip_average=flip)
        probabilities, labels, _ = predict_dataset(model, examples, config.data.batch_size)
        answered = labelled(probabilities, labels)
        correct[name] = {task: answered[task][1].argmax(axis=1) == answered[task][0] for task in TASKS}
    return correct


def summary(rows: list[dict], pooled: dict) -> dict:
    by_task = {}
    for task in TASKS:
        gains = [row[f"{task}_flip_averaged"] - row[f"{task}_plain"] for row in rows]
        by_task[task] = {
            "mean_gain_points": statistics.mean(gains),
            "std_gain_points": statistics.stdev(gains) if len(gains) > 1 else None,
            "runs_improved": sum(gain > 0 for gain in gains),
            "runs": len(gains),
            "mcnemar_p_pooled": mcnemar_p(np.concatenate(pooled[task]["flip_averaged"]), np.concatenate(pooled[task]["plain"])),
        }
    return by_task


def markdown(result: dict) -> str:
    lines = ["| run | gender plain | gender flip-averaged | emotion plain | emotion flip-averaged |", "|---|---|---|---|---|"]
    for row in result["runs"]:
        lines.append(f"| {row['run']} | " + " | ".join(
            f"{row[f'{task}_{kind}']:.2f}" for task in TASKS for kind in ("plain", "flip_averaged")) + " |")
    lines += ["", "| task | gain (points), mean ± std over runs | runs improved | McNemar p (all runs' images pooled) |",
              "|---|---|---|---|"]
    for task, gain in result["summary"].items():
        spread = f" ± {gain['std_gain_points']:.2f}" if gain["std_gain_points"] is not None else ""
        lines.append(f"| {task} | {gain['mean_gain_points']:+.2f}{spread} | {gain['runs_improved']}/{gain['runs']} | "
                     f"{gain['mcnemar_p_pooled']:.2g} |")
    made_by = result["provenance"]
    lines += ["", "Validation accuracy in %, the same networks answering with and without flip averaging.",
              f"Made by commit {made_by['commit']}{' (dirty)' if made_by['dirty'] else ''}, TensorFlow "
              f"{made_by['tensorflow']}, {made_by['cpu']} ({made_by['cpu_count']} cores)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="a finished `mtl compare` folder (with the networks, under runs/)")
    parser.add_argument("--out", type=Path, required=True, help="folder for flip_averaging.{json,md}")
    parser.add_argument("--data-dir", help="datasets folder, if not where the runs' configs say")
    args = parser.parse_args(argv)
    runs = finished_runs(args.root)
    if not runs:
        print(f"No finished runs with networks under '{args.root}'; expected <variant>/seed-<k>/model.keras.", file=sys.stderr)
        return 2
    rows, pooled = [], {task: {"plain": [], "flip_averaged": []} for task in TASKS}
    for run_dir in runs:
        correct = correct_on_validation(run_dir, args.data_dir)
        row = {"run": run_dir.relative_to(args.root).as_posix()}
        for kind, by_task in correct.items():
            for task, right in by_task.items():
                row[f"{task}_{kind}"] = 100 * float(right.mean())
                row[f"{task}_images"] = len(right)
                pooled[task][kind].append(right)
        print(row, flush=True)
        rows.append(row)
    result = {"root": args.root.name, "runs": rows, "summary": summary(rows, pooled), "provenance": provenance()}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "flip_averaging.json", result)
    (args.out / "flip_averaging.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
