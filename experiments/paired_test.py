"""Two models on the same test images: accuracy of each and the exact McNemar test, per test set and task.

Reads the per-image correctness that `mtl evaluate` and `mtl train` write (`evaluation/correct.npz`)
and prints a Markdown table, written with --out too:

    python experiments/paired_test.py before=OLD/evaluation/correct.npz after=NEW/evaluation/correct.npz

With `--groups CONFIG --data-dir D` it also compares them within every group that `mtl evaluate`
scores (the other task's class by the reference labeller, UTKFace's age band and ethnicity, each x
the true class), reading the test sets that CONFIG (a run's config.json) names from D: two models
equally right on average can still move errors from one group of people to another.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from experiments.group_report import named_files  # noqa: E402
from mtl.comparison_stats import mcnemar_p  # noqa: E402


def row(label: str, right_a: np.ndarray, right_b: np.ndarray) -> str:
    label = label.replace("|", "\\|")  # a group's "female|sad" inside a Markdown cell
    return (f"| {label} | {right_a.size} | {right_a.mean():.2%} | {right_b.mean():.2%} | "
            f"{int(np.sum(right_a & ~right_b))} | {int(np.sum(~right_a & right_b))} | {mcnemar_p(right_a, right_b):.2g} |")


def table(named: dict[str, Path], groups: dict[str, dict[str, np.ndarray]] | None = None) -> str:
    """One row per test set and task both files hold; with `groups` ({"<set>/<task>": {group: members}}),
    a row per group of each after its set's row."""
    (name_a, path_a), (name_b, path_b) = named.items()
    a, b = np.load(path_a), np.load(path_b)
    lines = [f"| test set / task | images | {name_a} | {name_b} | only {name_a} right | only {name_b} right | McNemar p |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for key in [key for key in a.files if key in b.files]:
        right_a, right_b = a[key].astype(bool), b[key].astype(bool)
        if right_a.shape != right_b.shape:
            raise SystemExit(f"paired_test: '{key}' has {right_a.size} images in one file and {right_b.size} in the other.")
        lines.append(row(key, right_a, right_b))
        for group, members in (groups or {}).get(key, {}).items():
            if members.shape != right_a.shape:
                raise SystemExit(f"paired_test: '{key}' has {right_a.size} images, but its test set now has {members.size}.")
            lines.append(row(f"{key}: {group}", right_a[members], right_b[members]))
    return "\n".join(lines) + "\n"


def test_set_groups(config_file: Path, data_dir: str) -> dict[str, dict[str, np.ndarray]]:
    """{"<set>/<task>": {"female|sad": bool mask over the set's labelled images}} for every test set of face crops
    that `config_file` names, grouped as `mtl evaluate` groups them."""
    from mtl.config import load_config, merge
    from mtl.data.pipeline import test_sets
    from mtl.evaluate import group_members, task_families
    from mtl.evaluate import test_set_groups as groups_of
    from mtl.tasks import TASKS

    config = merge(load_config(config_file), {"data": {"data_dir": data_dir}})
    masks = {}
    for name, source in test_sets(config.data).items():
        if source.photographs:
            continue  # scored whole and on detected faces, never per group
        groups = groups_of(source)
        for task in TASKS:
            true = source.labels[task][source.labels[task] >= 0]
            families = group_members(task, true, task_families(groups, source.labels, task))
            cells = {group: members for cells_of_family in families.values() for group, members in cells_of_family.items()}
            if cells:
                masks[f"{name}/{task}"] = cells
    return masks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs=2, metavar="NAME=CORRECT_NPZ")
    parser.add_argument("--out", type=Path, help="also write the table here")
    parser.add_argument("--groups", type=Path, metavar="CONFIG", help="a run's config.json: compare within its test sets' groups too")
    parser.add_argument("--data-dir", help="with --groups: the folder holding the test sets")
    args = parser.parse_args(argv)
    named = named_files(args.models, "paired_test", "correct.npz")
    if named is None:
        return 2
    if args.groups and not (args.groups.is_file() and args.data_dir):
        print(f"paired_test: --groups takes an existing config.json ('{args.groups}') and needs --data-dir.", file=sys.stderr)
        return 2
    text = table(named, test_set_groups(args.groups, args.data_dir) if args.groups else None)
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
