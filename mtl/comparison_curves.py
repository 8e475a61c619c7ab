"""Accuracy against budget: every variant's validation accuracy at the points of its budget.

Each run records, per task, its validation accuracy at each validation point and what it had
spent there (`metrics.json`, `budget.curves`). Here the seeds of a variant are put side by side,
point by point, and written as `curves.csv`, a Markdown table (appended to `results.md`'s text
in TensorBoard) and `accuracy_vs_budget.png`: one panel per task, accuracy (mean ± standard
deviation over the seeds) against the task's faces seen, teachers' included, so that every
approach reads at equal data seen.
"""

import json
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mtl.comparison_tables import write_csv
from mtl.runs import METRICS_FILE, atomic_path
from mtl.tasks import TASKS

CURVES_CSV = "curves.csv"
CURVES_PNG = "accuracy_vs_budget.png"


def curve_rows(root: Path, variants: list[str], seeds: int) -> list[dict]:
    """Per variant, task and validation point: faces seen and accuracy, mean and std over the seeds that have it."""
    rows = []
    for variant in variants:
        runs = []
        for seed in range(seeds):
            metrics_file = Path(root) / variant / f"seed-{seed}" / METRICS_FILE
            if metrics_file.is_file():
                runs.append(json.loads(metrics_file.read_text()).get("budget", {}).get("curves", {}))
        for task in TASKS:
            per_seed = [run[task] for run in runs if run.get(task)]
            if not per_seed:
                continue
            for index in range(min(len(points) for points in per_seed)):
                points = [seed_points[index] for seed_points in per_seed]
                accuracy = np.array([point["val_accuracy"] for point in points])
                rows.append({
                    "variant": variant,
                    "task": task,
                    "point": index + 1,
                    "faces_seen": points[0]["faces_with_teachers"],
                    "steps": points[0]["steps"],
                    "multiply_adds": points[0]["flops"],
                    "seeds": len(points),
                    "val_accuracy_mean": float(accuracy.mean()),
                    "val_accuracy_std": float(accuracy.std(ddof=1)) if len(points) > 1 else None,
                })
    return rows


def at_fractions(rows: list[dict]) -> list[dict]:
    """Of each variant's and task's points, those at about 1/8, 1/4, 1/2 and all of its budget (the CSV keeps every one)."""
    kept = []
    for key in dict.fromkeys((row["variant"], row["task"]) for row in rows):
        points = [row for row in rows if (row["variant"], row["task"]) == key]
        wanted = {max(1, round(len(points) * fraction)) for fraction in (1 / 8, 1 / 4, 1 / 2, 1)}
        kept += [row for row in points if row["point"] in wanted]
    return kept


def curves_markdown(rows: list[dict]) -> str:
    lines = ["| variant | task | faces seen | steps | validation accuracy |", "|---|---|---|---|---|"]
    for row in at_fractions(rows):
        accuracy = f"{row['val_accuracy_mean'] * 100:.2f}"
        if row["val_accuracy_std"] is not None:
            accuracy += f" ± {row['val_accuracy_std'] * 100:.2f}"
        lines.append(f"| {row['variant']} | {row['task']} | {row['faces_seen']:,} | {row['steps']:,} | {accuracy} |")
    return "\n".join(lines) + "\n"


def plot_curves(rows: list[dict], path: Path) -> None:
    tasks = [task for task in TASKS if any(row["task"] == task for row in rows)]
    figure = Figure(figsize=(6 * len(tasks), 4.5), dpi=100)
    FigureCanvasAgg(figure)
    for index, task in enumerate(tasks):
        axes = figure.add_subplot(1, len(tasks), index + 1)
        for variant in dict.fromkeys(row["variant"] for row in rows if row["task"] == task):
            points = [row for row in rows if row["task"] == task and row["variant"] == variant]
            faces = np.array([row["faces_seen"] for row in points])
            mean = np.array([row["val_accuracy_mean"] for row in points]) * 100
            std = np.array([row["val_accuracy_std"] or 0.0 for row in points]) * 100
            (line,) = axes.plot(faces, mean, marker="o", markersize=3, label=variant)
            axes.fill_between(faces, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        axes.set_xscale("log")
        axes.set_xlabel(f"{task} faces seen in training (teachers' included)")
        axes.set_ylabel(f"{task} validation accuracy (%)")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")


def write_curves(root: Path, variants: list[str], seeds: int) -> str:
    """curves.csv and accuracy_vs_budget.png under `root`; returns the table in Markdown ("" without curves)."""
    rows = curve_rows(root, variants, seeds)
    if not rows:
        return ""
    write_csv(Path(root) / CURVES_CSV, rows)
    plot_curves(rows, Path(root) / CURVES_PNG)
    return (
        "\n## Validation accuracy against budget\n\nAt about 1/8, 1/4, 1/2 and all of each run's budget "
        f"(every point: {CURVES_CSV}, {CURVES_PNG}).\n\n" + curves_markdown(rows)
    )
