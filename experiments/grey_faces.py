"""Gender on grey faces, per group: the gender test sets turned grey, scored for each model given.

The worst out-of-domain set of the generalisation issue is grey celebrity photographs, where the
bundled model of November 2026 called 61% of the sad-looking women men. That set is kept outside
this repository on purpose; the nearest thing here is the gender test sets in grey (luminance
repeated over three channels, as FER2013's faces and `data.augment.grayscale_probability` make
them). Groups are those `mtl evaluate` uses: the reference labeller's happy/sad answer on the colour
face (so both columns are the same people) and UTKFace's age band and ethnicity, each x gender.

    python experiments/grey_faces.py before=OLD_RUN after=NEW_RUN --data-dir ../shared/data \\
        --out experiments/results/pretrained/grey_faces.md

A RUN is a run directory (or `mtl/pretrained`). Accuracies in %, against true labels.
"""

import argparse
import json
import sys
from pathlib import Path

import tensorflow as tf

from mtl.config import load_config, merge
from mtl.data.pipeline import test_sets
from mtl.evaluate import predict_dataset, score_test_set, test_set_groups
from mtl.models.build import Grayscale, load_inference_model
from mtl.runs import CONFIG_FILE, MODEL_FILE
from mtl.tasks import GENDER

TO_GREY = Grayscale()  # the model's own colour removal (data.color=gray), on the image before it


def grey(image, labels):
    return tf.cast(tf.round(TO_GREY(tf.cast(image, tf.float32))), tf.uint8), labels


def cell(scores: dict, family: str, name: str) -> float | None:
    found = scores.get("groups", {}).get(family, {}).get(name)
    return found["accuracy"] if found else None


def rows_of(scores: dict) -> dict[str, float | None]:
    happy, sad = cell(scores, "emotion", "female|happy"), cell(scores, "emotion", "female|sad")
    return {
        "all": scores["accuracy"],
        "women": scores["per_class"]["female"]["recall"],
        "men": scores["per_class"]["male"]["recall"],
        "happy-looking women": happy,
        "sad-looking women": sad,
        "happy-looking men": cell(scores, "emotion", "male|happy"),
        "sad-looking men": cell(scores, "emotion", "male|sad"),
        "women 60+": cell(scores, "age_band", "female|60+"),
        "worst group (>= 20 faces)": scores.get("worst_group_accuracy"),
    }


def score_grey(run_dir: Path, data_dir: str) -> dict[str, dict]:
    config = merge(load_config(run_dir / CONFIG_FILE), {"data": {"data_dir": data_dir}})
    model = load_inference_model(run_dir / MODEL_FILE, config.data.image_size)
    scored = {}
    for name, source in test_sets(config.data).items():
        if getattr(source, "photographs", False) or not (source.labels[GENDER] >= 0).any():
            continue
        examples = source.dataset(config.data.image_size).map(grey)
        probabilities, labels, _ = predict_dataset(model, examples, 256)
        scored[name] = rows_of(score_test_set(probabilities, labels, test_set_groups(source))[GENDER])
    return scored


def table(results: dict[str, dict[str, dict]]) -> str:
    names = list(results)
    lines = ["| test set, in grey | group | " + " | ".join(names) + " |", "| --- | --- |" + " --- |" * len(names)]
    first = results[names[0]]
    for test_set, rows in first.items():
        for row in rows:
            values = [results[name][test_set][row] for name in names]
            shown = ["-" if value is None else f"{100 * value:.1f}" for value in values]
            lines.append(f"| {test_set} | {row} | " + " | ".join(shown) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR")
    parser.add_argument("--data-dir", required=True, help="the full data, e.g. ../shared/data")
    parser.add_argument("--out", help="write the table here (Markdown) and the numbers beside it (.json)")
    args = parser.parse_args(argv)
    runs = dict(item.split("=", 1) for item in args.runs)
    results = {name: score_grey(Path(run_dir), args.data_dir) for name, run_dir in runs.items()}
    text = table(results)
    print(text)
    if args.out:
        out = Path(args.out)
        out.write_text(f"# Gender on the gender test sets turned grey\n\n`python experiments/grey_faces.py "
                       f"{' '.join(args.runs)} --data-dir {args.data_dir}`; accuracies in %.\n\n{text}")
        out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
