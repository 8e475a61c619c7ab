"""What does each approach's accuracy cost? Test accuracy against CPU-minutes of training, from a
finished `mtl compare` folder.

Reads `<root>/<variant>/seed-<k>/metrics.json` (and the run's `config.json`); runs without metrics
(unfinished) are left out and the seeds counted. CPU-minutes are `training_seconds` times the
cores the run had: `provenance.cpu_count` of its metrics, else this machine's `os.cpu_count()`
(each row says which). A run's `training_seconds` leave out teachers trained in another run
(crosslabel and pseudo-labelled multitask use the separate run of the same seed), so the table
gives the cost with those teachers added too, and the plot uses it. Mean ± standard deviation
over seeds. Writes JSON, Markdown and a PNG plot under experiments/results/benchmarks/:

    python experiments/benchmarks/accuracy_per_cost.py runs/compare_full_3seeds
"""

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from common import RESULTS, relative  # noqa: E402

ACCURACIES = {"gender_accuracy": "gender accuracy (gender test)", "emotion_accuracy": "emotion accuracy (FER2013 test)"}
METRICS_FILE, CONFIG_FILE, COMPARISON_FILE = "metrics.json", "config.json", "comparison.json"


def cpu_minutes(metrics: dict) -> tuple[float, str]:
    """CPU-minutes of a run's training, and where its core count came from."""
    cores = (metrics.get("provenance") or {}).get("cpu_count")
    source = "provenance"
    if not cores:
        cores, source = os.cpu_count(), "this machine"
    return metrics["training_seconds"] * cores / 60, source


def teacher_minutes(root: Path, run_dir: Path) -> float:
    """CPU-minutes of the teachers' run a run used, when it is another run of this comparison (else 0)."""
    teachers = json.loads((run_dir / CONFIG_FILE).read_text())["options"].get("teachers")
    if not teachers:
        return 0.0
    # The path is as the comparison wrote it, relative to where it ran: its last two parts name the run here.
    teacher_run = root.joinpath(*Path(teachers).parts[-2:])
    if not (teacher_run / METRICS_FILE).is_file():
        return 0.0
    return cpu_minutes(json.loads((teacher_run / METRICS_FILE).read_text()))[0]


def mean_and_std(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else None}


def variant_folders(root: Path) -> list[Path]:
    """The variants' folders, in the comparison's order when its `comparison.json` is there."""
    folders = sorted(path for path in root.iterdir() if path.is_dir())
    described = root / COMPARISON_FILE
    if described.is_file():
        order = list(json.loads(described.read_text())["variants"])
        folders.sort(key=lambda folder: order.index(folder.name) if folder.name in order else len(order))
    return folders


def variant_rows(root: Path) -> list[dict]:
    """Per variant with finished runs: approach, seeds, CPU-minutes with and without teachers, accuracies."""
    rows = []
    for variant in variant_folders(root):
        runs = sorted(path for path in variant.glob("seed-*") if (path / METRICS_FILE).is_file())
        if not runs:
            continue
        metrics = [json.loads((run / METRICS_FILE).read_text()) for run in runs]
        minutes = [cpu_minutes(run_metrics) for run_metrics in metrics]
        rows.append({
            "variant": variant.name,
            "approach": metrics[0]["approach"],
            "seeds": [run.name for run in runs],
            "cores_from": sorted({source for _, source in minutes}),
            "cpu_minutes": mean_and_std([own for own, _ in minutes]),
            "cpu_minutes_with_teachers": mean_and_std([own + teacher_minutes(root, run) for (own, _), run in zip(minutes, runs)]),
            **{key: mean_and_std([run_metrics["headline"][key] for run_metrics in metrics]) for key in ACCURACIES},
        })
    if not rows:
        sys.exit(f"Comparison folder '{root}' holds no finished run (<variant>/seed-<k>/{METRICS_FILE}); expected a finished `mtl compare` root.")
    return rows


def shown(value: dict, scale: float = 1.0) -> str:
    text = f"{value['mean'] * scale:.1f}"
    return text if value["std"] is None else f"{text} ± {value['std'] * scale:.1f}"


def markdown(result: dict) -> str:
    lines = [
        f"From `{result['root']}`; command: `{result['command']}`.",
        "CPU-minutes: training seconds x cores (" + ", ".join(sorted({s for row in result["rows"] for s in row["cores_from"]}))
        + "); accuracies in %; mean ± standard deviation over seeds.",
        "",
        "| variant | approach | seeds | CPU-minutes | CPU-minutes with teachers | " + " | ".join(ACCURACIES.values()) + " |",
        "|---|---|---|---|---|" + "---|" * len(ACCURACIES),
    ]
    for row in result["rows"]:
        accuracies = " | ".join(shown(row[key], 100) for key in ACCURACIES)
        lines.append(
            f"| {row['variant']} | {row['approach']} | {len(row['seeds'])} | {shown(row['cpu_minutes'])} "
            f"| {shown(row['cpu_minutes_with_teachers'])} | {accuracies} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    """One panel per accuracy: each variant at its CPU-minutes with teachers, error bars one std over seeds."""
    figure, axes = plt.subplots(1, len(ACCURACIES), figsize=(5 * len(ACCURACIES), 4), squeeze=False)
    for axis, (key, title) in zip(axes[0], ACCURACIES.items()):
        for row in rows:
            cost, accuracy = row["cpu_minutes_with_teachers"], row[key]
            axis.errorbar(cost["mean"], accuracy["mean"] * 100, xerr=cost["std"] or 0, yerr=(accuracy["std"] or 0) * 100,
                          fmt="o", capsize=3, label=row["variant"])
        axis.set_xlabel("CPU-minutes of training (teachers included)")
        axis.set_ylabel("accuracy, %")
        axis.set_title(title)
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="a finished `mtl compare` folder (runs/NAME)")
    parser.add_argument("--out", type=Path, default=RESULTS / "accuracy_per_cost.json")
    args = parser.parse_args()
    if not args.root.is_dir():
        sys.exit(f"Comparison folder '{args.root}' does not exist; expected the root of an `mtl compare` run.")

    rows = variant_rows(args.root)
    result = {"command": " ".join(["python", *map(relative, sys.argv)]), "root": relative(str(args.root)), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    plot(rows, args.out.with_suffix(".png"))
    print(markdown(result))


if __name__ == "__main__":
    main()
