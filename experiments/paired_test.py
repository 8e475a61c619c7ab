"""Two models on the same test images: accuracy of each and the exact McNemar test, per test set and task.

Reads the per-image correctness that `mtl evaluate` and `mtl train` write (`evaluation/correct.npz`)
and prints a Markdown table, written with --out too:

    python experiments/paired_test.py before=OLD/evaluation/correct.npz after=NEW/evaluation/correct.npz
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from experiments.group_report import named_files  # noqa: E402
from mtl.comparison_stats import mcnemar_p  # noqa: E402


def table(named: dict[str, Path]) -> str:
    (name_a, path_a), (name_b, path_b) = named.items()
    a, b = np.load(path_a), np.load(path_b)
    lines = [f"| test set / task | images | {name_a} | {name_b} | only {name_a} right | only {name_b} right | McNemar p |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for key in [key for key in a.files if key in b.files]:
        right_a, right_b = a[key].astype(bool), b[key].astype(bool)
        if right_a.shape != right_b.shape:
            raise SystemExit(f"paired_test: '{key}' has {right_a.size} images in one file and {right_b.size} in the other.")
        lines.append(f"| {key} | {right_a.size} | {right_a.mean():.2%} | {right_b.mean():.2%} | "
                     f"{int(np.sum(right_a & ~right_b))} | {int(np.sum(~right_a & right_b))} | {mcnemar_p(right_a, right_b):.2g} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs=2, metavar="NAME=CORRECT_NPZ")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    named = named_files(args.models, "paired_test", "correct.npz")
    if named is None:
        return 2
    text = table(named)
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
