"""Per-group report of a comparison's finished runs: who each variant serves worst, train source x test source.

`mtl compare` writes its tables once every seed of every variant is done; this reads whatever runs
have finished (`<root>/<variant>/seed-<k>/metrics.json`), so a comparison that spans sessions can be
read as it goes. Per variant, mean ± std over its finished seeds (accuracies in %):
- gender on each gender test source (`gender/Validation`, `utkface/test`), and for its women;
- the groups the issue's targets name: women and men by the reference labeller's happy/sad, every
  adult UTKFace group (age band 20 and up x gender, ethnicity x gender) at its worst;
- the worst group and the confound gap of each task, and FER2013 and Happy House emotion.

    python experiments/group_report.py runs/generalisation --out experiments/results/generalisation
    python experiments/group_report.py --metrics before=OLD.json --metrics after=NEW.json   # single runs

`--difference A,B` adds a row `B - A`: per seed, B's value less A's, then mean ± std over the
seeds both have. Two variants that share each seed's backbone (a run and its `mtl refit`) differ
by less than their seeds spread, so the paired difference is the one to judge.

A comparison's report ends with the variant that its validation splits choose, by the mean of both
tasks and by the worst group, each with its per-seed lead over the runner-up and whether that lead
exceeds the spread across seeds.
"""

import argparse
import csv
import json
import sys
from pathlib import Path

from mtl import selection
from mtl.selection import choice_section, scored_run

ADULT_BANDS = ("20-29", "30-39", "40-49", "50-59", "60+")
SEED_DIR = "seed-"


def group(metrics: dict, test_set: str, task: str, family: str, name: str) -> float | None:
    cell = metrics["test_sets"].get(test_set, {}).get(task, {}).get("groups", {}).get(family, {}).get(name)
    return cell["accuracy"] if cell else None


def called(metrics: dict, test_set: str, gender: str) -> float | None:
    """The share of one gender's faces called that gender (its recall)."""
    scores = metrics["test_sets"].get(test_set, {}).get("gender")
    return scores["per_class"].get(gender, {}).get("recall") if scores else None


def women(metrics: dict, test_set: str) -> float | None:
    return called(metrics, test_set, "female")


def worst_adult(metrics: dict) -> float | None:
    groups = metrics["test_sets"].get("utkface_test", {}).get("gender", {}).get("groups", {})
    cells = [cell["accuracy"] for name, cell in groups.get("age_band", {}).items() if name.split("|")[1] in ADULT_BANDS]
    cells += [cell["accuracy"] for cell in groups.get("ethnicity", {}).values()]
    return min(cells) if cells else None


def happy_sad_gap(metrics: dict, test_set: str) -> float | None:
    """Within each gender, |accuracy of happy-looking - of sad-looking faces|, the larger of the two."""
    gaps = []
    for gender in ("female", "male"):
        happy, sad = (group(metrics, test_set, "gender", "emotion", f"{gender}|{emotion}") for emotion in ("happy", "sad"))
        if happy is not None and sad is not None:
            gaps.append(abs(happy - sad))
    return max(gaps) if gaps else None


def validation_mean(metrics: dict) -> float | None:
    """The mean of both tasks' validation accuracy; None for metrics written by `mtl evaluate` alone."""
    return selection.validation_mean(metrics["headline"])


# column -> (what it is, how to read it from one run's metrics.json)
COLUMNS = {
    "gender_validation": ("gender, gender/Validation", lambda m: m["headline"].get("gender_accuracy")),
    "utkface": ("gender, utkface/test", lambda m: m["headline"].get("utkface_test_gender_accuracy")),
    "utkface_women": ("women called women, utkface/test", lambda m: women(m, "utkface_test")),
    "utkface_men": ("men called men, utkface/test", lambda m: called(m, "utkface_test", "male")),
    "utkface_sad_women": ("sad-looking women, utkface/test", lambda m: group(m, "utkface_test", "gender", "emotion", "female|sad")),
    "utkface_women_60": ("women 60+, utkface/test", lambda m: group(m, "utkface_test", "gender", "age_band", "female|60+")),
    "utkface_worst_adult": ("worst adult group (age band >= 20 or ethnicity, x gender), utkface/test", worst_adult),
    "validation_women": ("women called women, gender/Validation", lambda m: women(m, "gender_test")),
    "validation_sad_women": ("sad-looking women, gender/Validation", lambda m: group(m, "gender_test", "gender", "emotion", "female|sad")),
    "happy_sad_gap": ("largest happy/sad gap within a gender, over both gender tests", lambda m: max(
        (gap for gap in (happy_sad_gap(m, "gender_test"), happy_sad_gap(m, "utkface_test")) if gap is not None), default=None)),
    "gender_worst_group": ("gender worst group (>= 20 faces)", lambda m: m["headline"].get("gender_worst_group_accuracy")),
    "emotion_fer": ("emotion, FER2013 test", lambda m: m["headline"].get("emotion_accuracy")),
    "emotion_sad_women": ("sad women called sad, FER2013 test", lambda m: group(m, "emotion_test", "emotion", "gender", "sad|female")),
    "happy_house_detected": ("emotion, Happy House detected faces", lambda m: m["headline"].get("happy_house_detected_accuracy")),
    "validation_mean": ("validation mean (what may choose)", lambda m: validation_mean(m)),
    "validation_worst_group": ("validation worst group (class x source)", lambda m: m["headline"].get("validation_worst_group_accuracy")),
}


def finished_runs(root: Path) -> dict[str, list[dict]]:
    """variant -> the metrics of its finished seeds (each with its "seed" folder name added), in the
    comparison's variant order where known."""
    described = json.loads((root / "comparison.json").read_text()) if (root / "comparison.json").is_file() else {}
    order = [*described.get("variants", {}), *described.get("refits", {})]  # refits: mtl compare's refit variants
    found: dict[str, list[dict]] = {}
    for path in sorted(root.glob(f"*/{SEED_DIR}*/metrics.json")):
        found.setdefault(path.parent.parent.name, []).append({**json.loads(path.read_text()), "seed": path.parent.name})
    return {name: found[name] for name in sorted(found, key=lambda name: (order.index(name) if name in order else len(order), name))}


def summary(values: list, signed: bool = False) -> str:
    """Fractions as percent, mean ± std (one value alone), "-" where there are none."""
    values = [value for value in values if value is not None]
    return selection.points(values, signed) if values else "-"


def paired_differences(runs: dict[str, list[dict]], first: str, second: str, read) -> list[float]:
    """`second - first` of one column, per seed both variants finished."""
    by_seed = {metrics["seed"]: metrics for metrics in runs[first]}
    pairs = [(by_seed[metrics["seed"]], metrics) for metrics in runs[second] if metrics["seed"] in by_seed]
    return [read(b) - read(a) for a, b in pairs if read(a) is not None and read(b) is not None]


def difference_row(runs: dict[str, list[dict]], first: str, second: str) -> dict:
    """`second - first` per seed both finished, as mean ± std in points."""
    if first not in runs or second not in runs:
        raise SystemExit(f"group_report: --difference names '{first if first not in runs else second}', which has no finished run.")
    seeds = {metrics["seed"] for metrics in runs[first]} & {metrics["seed"] for metrics in runs[second]}
    row = {"variant": f"{second} - {first}", "seeds": len(seeds)}
    for column, (_, read) in COLUMNS.items():
        row[column] = summary(paired_differences(runs, first, second, read), signed=True)
    return row


def scored(root: Path | None, runs: dict[str, list[dict]]) -> list:
    """Each finished run of the comparison under `root` as mtl.selection ranks it."""
    def data(variant: str, seed: str) -> dict | None:
        config_file = root / variant / seed / "config.json"
        return json.loads(config_file.read_text())["data"] if config_file.is_file() else None

    return [scored_run(name, m["seed"], data(name, m["seed"]), m["headline"]) for name, metrics in runs.items() for m in metrics]


def report(root: Path | None, named: dict[str, Path] | None = None, differences=()) -> tuple[str, list[dict]]:
    compared = finished_runs(root) if root else {}
    runs = {**compared}
    runs.update({name: [json.loads(path.read_text())] for name, path in (named or {}).items()})
    if not runs:
        raise SystemExit(f"group_report: no finished run (*/{SEED_DIR}*/metrics.json) under '{root}'.")
    title = f"`{root.name}`" if root else ", ".join(f"`{name}`" for name in runs)
    rows = []
    for name, metrics in runs.items():
        row = {"variant": name, "seeds": len(metrics)}
        for column, (_, read) in COLUMNS.items():
            row[column] = summary([read(m) for m in metrics])
        rows.append(row)
    rows += [difference_row(runs, first, second) for first, second in differences]
    lines = [
        f"# Per-group report of {title} ({sum(len(m) for m in runs.values())} finished runs)",
        "",
        "Accuracies in %, mean ± std over the finished seeds (one value: one seed). Groups by the other task",
        "come from the reference labeller (mtl/reference_labeller, the bundled model of November 2026); UTKFace's age band and ethnicity are its labels.",
        "",
        "| column | what it is |",
        "| --- | --- |",
        *[f"| {column} | {what} |" for column, (what, _) in COLUMNS.items()],
        "",
        "| variant | seeds | " + " | ".join(COLUMNS) + " |",
        "| --- | --- | " + " | ".join("---" for _ in COLUMNS) + " |",
        *[f"| {row['variant']} | {row['seeds']} | " + " | ".join(row[column] for column in COLUMNS) + " |" for row in rows],
        "",
    ]
    return "\n".join(lines) + choice_section(scored(root, compared)), rows


def named_files(entries: list[str], program: str, what: str) -> dict[str, Path] | None:
    """NAME=FILE arguments as {name: path}; None, after one sentence on stderr, when one is not that."""
    named = {}
    for entry in entries:
        name, _, path = entry.partition("=")
        if not name or not Path(path).is_file():
            print(f"{program}: '{entry}' is not NAME=FILE with an existing {what}.", file=sys.stderr)
            return None
        named[name] = Path(path)
    return named


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, nargs="?", help="a comparison folder made by mtl compare")
    parser.add_argument("--metrics", action="append", default=[], metavar="NAME=FILE",
                        help="a single run's metrics.json, as a row named NAME (repeatable)")
    parser.add_argument("--out", type=Path, help="write group_report.md and group_report.csv here")
    parser.add_argument("--difference", action="append", default=[], metavar="A,B",
                        help="add a row B - A: the per-seed difference of two variants of the comparison (repeatable)")
    args = parser.parse_args(argv)
    if args.root is not None and not args.root.is_dir():
        print(f"group_report: '{args.root}' is not a folder.", file=sys.stderr)
        return 2
    named = named_files(args.metrics, "group_report", "metrics file")
    if named is None:
        return 2
    if args.root is None and not named:
        print("group_report: give a comparison folder or --metrics NAME=FILE.", file=sys.stderr)
        return 2
    differences = [tuple(pair.split(",")) for pair in args.difference]
    if any(len(pair) != 2 for pair in differences):
        print("group_report: --difference takes two variant names, A,B.", file=sys.stderr)
        return 2
    text, rows = report(args.root, named, differences)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "group_report.md").write_text(text)
        with open(args.out / "group_report.csv", "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
