"""The tables of a comparison: results.csv (per variant: means, deviations, p-values),
results_per_seed.csv (every run) and results.md (what `mtl compare` prints)."""

import csv
from pathlib import Path

from mtl.comparison_stats import COMPARED_NAMES
from mtl.provenance import provenance
from mtl.runs import atomic_path


COUNTS = ("parameters", "gender_faces_seen", "emotion_faces_seen", "training_steps")


def _mean_and_std(row: dict, key: str) -> str:
    mean, std = row.get(f"{key}_mean"), row.get(f"{key}_std")
    if mean is None:
        return "-"
    if key.endswith("accuracy"):
        mean, std = mean * 100, (std * 100 if std is not None else None)
    if "multiply_adds" in key:  # 1e14 and more: three figures say it
        return f"{mean:.3g}" if not std else f"{mean:.3g} ± {std:.2g}"
    if key in COUNTS:
        return f"{mean:,.0f}" if not std else f"{mean:,.0f} ± {std:,.0f}"
    text = f"{mean:.2f}"
    return text if not std else f"{text} ± {std:.2f}"


def write_csv(path: Path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(column for row in rows for column in row))
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def write_tables(rows: list[dict], per_seed: list[dict], root: Path, appendix: str = "") -> str:
    """results.csv (means, deviations, p-values), results_per_seed.csv and results.md under root, with `appendix`
    (more Markdown) at its end; returns the Markdown."""
    write_csv(root / "results.csv", rows)
    write_csv(root / "results_per_seed.csv", per_seed)
    shown = [key for key in COMPARED_NAMES if any(row.get(f"{key}_mean") is not None for row in rows)]
    tests = [column for column in dict.fromkeys(c for row in rows for c in row) if "_p_vs_" in column]
    header = ["variant", "approach", "seeds", *shown, *tests]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["variant"], row["approach"], str(row["seeds"])]
        cells += [_mean_and_std(row, key) for key in shown] + [f"{row[column]:.4f}" if column in row else "-" for column in tests]
        lines.append("| " + " | ".join(cells) + " |")
    made = provenance()
    # Every variant of a comparison has the same number of seeds; at one seed no cell has a ± to explain.
    several_seeds = any(row["seeds"] > 1 for row in rows)
    lines += [
        "",
        f"Accuracies in %, {'mean ± standard deviation over seeds' if several_seeds else 'single runs (one seed)'}; "
        f"p: exact McNemar test against the baseline on the same test images{' (seed-0 runs)' if several_seeds else ''}.",
        f"Made by commit {made['commit']}{' (uncommitted changes)' if made['dirty'] else ''}, Python {made['python']}, "
        f"TensorFlow {made['tensorflow']}, Keras {made['keras']}, Keras Tuner {made['keras-tuner']}, "
        f"{made['cpu']} ({made['cpu_count']} cores){', GPU ' + ', '.join(made['gpus']) if made['gpus'] else ''}.",
    ]
    table = "\n".join(lines) + "\n" + appendix
    with atomic_path(root / "results.md") as temporary:
        temporary.write_text(table)
    return table
