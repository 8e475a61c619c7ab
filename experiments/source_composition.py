"""How a source's classes spread over its groups: for each value of each attribute it carries, the
faces of each class and the first class's share.

A head learns what its training data confounds. The smile is one confound ("smiling means female";
cross-labelling prints it for every training source, `mtl.pseudo_labels.confound_lines`); a
source's own attributes can hold others: if most of its older faces are men, "old means male" is a
shortcut too. Labels only, no model:

    python experiments/source_composition.py utkface:utkface/train --data-dir ../shared/data \\
        --out experiments/results/generalisation/utkface_train_composition.md

SOURCE is a source spec as configs write it (`KIND:PATH`, relative to --data-dir).
"""

import argparse
import sys
from pathlib import Path

from mtl.data.sources import read_source
from mtl.errors import UserError
from mtl.tasks import CLASSES, GENDER, TASKS


def composition(source, task: str) -> dict[str, list[dict]]:
    """{attribute: [{value, faces, CLASS: faces of each class}, ...]} over the faces that carry the attribute."""
    classes = CLASSES[task]
    labels = source.labels[task]
    tables = {}
    for attribute, values in source.groups.items():
        rows = []
        for value in sorted(set(values) - {""}, key=_natural):
            here = labels[values == value]
            rows.append({"value": value, "faces": int(len(here))} | {name: int((here == i).sum()) for i, name in enumerate(classes)})
        tables[attribute] = rows
    return tables


def _natural(value: str):
    """'3-9' before '10-19': age bands sort by their first number, names alphabetically."""
    number = value.split("-")[0].rstrip("+")
    return (0, int(number), value) if number.isdigit() else (1, 0, value)


def markdown(spec: str, task: str, tables: dict[str, list[dict]]) -> str:
    first = CLASSES[task][0]
    lines = [f"# `{spec}`: {task} classes per group", ""]
    if not tables:
        lines.append("The source carries no attributes (only kinds such as `utkface` do).")
    for attribute, rows in tables.items():
        header = ["faces", *CLASSES[task], f"{first} share"]
        lines += [f"## {attribute}", "", f"| {attribute} | " + " | ".join(header) + " |", "|" + " --- |" * (len(header) + 1)]
        for row in rows:
            share = f"{100 * row[first] / row['faces']:.1f}%" if row["faces"] else "-"
            counts = [str(row[name]) for name in CLASSES[task]]
            lines.append(f"| {row['value']} | {row['faces']} | " + " | ".join(counts) + f" | {share} |")
        total = {name: sum(row[name] for row in rows) for name in ["faces", *CLASSES[task]]}
        counts = [str(total[name]) for name in CLASSES[task]]
        lines += [f"| all | {total['faces']} | " + " | ".join(counts) + f" | {100 * total[first] / total['faces']:.1f}% |", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a source spec, e.g. utkface:utkface/train")
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--task", choices=TASKS, default=GENDER, help="whose classes to count (default: gender)")
    parser.add_argument("--out", type=Path, help="also write the tables to this Markdown file")
    args = parser.parse_args(argv)
    try:
        source = read_source(args.source, args.data_dir, args.task)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    text = markdown(args.source, args.task, composition(source, args.task))
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
