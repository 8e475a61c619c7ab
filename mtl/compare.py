"""Train and evaluate several approaches on the same data, seed and budget, side by side.

All runs go under one root, which is also the TensorBoard log directory:
- `<root>/<variant>/`: each run (config, models, training logs, metrics.json), plus the
  HParams session of that variant, so the HParams dashboard lists one row per variant;
- `<root>/<variant>/evaluation/`: confusion matrices as JSON and PNG;
- `<root>/results.md` and `results.csv`: the same numbers as a table.
A comparison config is `{"base": <experiment config>, "variants": {name: <overrides>}}`.
"""

import csv
import json
import time
from pathlib import Path

import numpy as np

from mtl import approaches
from mtl.config import ExperimentConfig, config_from_dict, merge
from mtl.dashboard.figures import confusion_matrix_image, face_grid_image, write_images
from mtl.dashboard.hparams import write_hparams, write_hparams_config
from mtl.errors import UserError
from mtl.experiment import TEACHERS_DIR, train_and_evaluate, validate
from mtl.tasks import CLASSES, EMOTION, FOUR, GENDER

# The variants every comparison runs unless its config names others. Variants that need teachers
# use the run of the first variant whose approach provides them (trained first), so the
# cross-labels come from the same baseline models.
DEFAULT_VARIANTS = {
    "separate": {"approach": "separate"},
    "crosslabel_hard": {"approach": "crosslabel", "options": {"pseudo_labels": "hard"}},
    "crosslabel_soft": {"approach": "crosslabel", "options": {"pseudo_labels": "soft"}},
    "multitask_masked": {"approach": "multitask", "options": {"pseudo_labels": "none"}},
    "multitask_pseudo": {"approach": "multitask", "options": {"pseudo_labels": "soft"}},
}

METRICS = {
    "gender_accuracy": "gender accuracy (gender test)",
    "emotion_accuracy": "emotion accuracy (FER2013 test)",
    "happy_house_accuracy": "emotion accuracy (Happy House)",
    "joint_four_class_accuracy": "four-class accuracy (joint set)",
    "parameters": "parameters",
    "inference_ms_per_image": "inference ms/image",
    "training_seconds": "training seconds",
}
SHARED_HPARAMS = ("approach", "backbone", "color", "epochs", "seed")


def variant_configs(spec: dict) -> dict[str, ExperimentConfig]:
    """The config of each variant: the base config with the variant's overrides."""
    unknown = set(spec) - {"base", "variants"}
    if unknown:
        raise UserError(f"Unknown comparison config key '{sorted(unknown)[0]}'; expected 'base' and 'variants'.")
    base = config_from_dict(spec.get("base", {}))
    variants = spec.get("variants") or DEFAULT_VARIANTS
    return {name: merge(base, overrides) for name, overrides in variants.items()}


def hparams_columns(configs: dict[str, ExperimentConfig]) -> list[str]:
    """The shared HParams columns, then every field the variants' approaches add."""
    added = [name for config in configs.values() for name in approaches.get(config.approach).hparams(config)]
    return [*SHARED_HPARAMS, *dict.fromkeys(added)]


def hparams_of(config: ExperimentConfig, columns: list[str]) -> dict:
    values = {
        "approach": config.approach,
        "backbone": config.model.backbone,
        "color": config.data.color,
        "epochs": config.train.epochs,
        "seed": config.train.seed,
        **approaches.get(config.approach).hparams(config),
    }
    return {column: values.get(column, "n/a") for column in columns}


def row_of(name: str, config: ExperimentConfig, metrics: dict, columns: list[str]) -> dict:
    row = {"variant": name, **hparams_of(config, columns)}
    for key in METRICS:
        value = metrics["headline"].get(key) if key in metrics["headline"] else metrics.get(key)
        row[key] = value
    return row


def teacher_variant(configs: dict[str, ExperimentConfig], names: list[str]) -> str | None:
    """The first variant whose approach provides teachers, if any of `names` needs them and has none given."""
    needing = [
        name for name in names if approaches.get(configs[name].approach).needs_teachers(configs[name])
        and not configs[name].options.teachers
    ]
    providers = [name for name, config in configs.items() if approaches.get(config.approach).provides_teachers]
    return providers[0] if needing and providers else None


def teachers_first(configs: dict[str, ExperimentConfig]) -> dict[str, ExperimentConfig]:
    """The variants in their order, except that those whose approach provides teachers come first."""
    providers = [name for name, config in configs.items() if approaches.get(config.approach).provides_teachers]
    return {name: configs[name] for name in [*providers[:1], *configs] if name in configs}


def compare(spec: dict, root: Path, only: list[str] | None = None) -> list[dict]:
    """Run every variant into `root` and return one result row per variant."""
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise UserError(f"Comparison folder '{root}' already exists and is not empty; choose another --name.")
    configs = variant_configs(spec)
    if only:
        missing = [name for name in only if name not in configs]
        if missing:
            raise UserError(f"Unknown variant '{missing[0]}'; this comparison has: {', '.join(configs)}.")
        configs = {name: configs[name] for name in configs if name in only or name == teacher_variant(configs, only)}
    for config in configs.values():
        validate(config)
    configs = teachers_first(configs)
    columns = hparams_columns(configs)
    root.mkdir(parents=True, exist_ok=True)
    (root / "comparison.json").write_text(
        json.dumps({name: config.to_dict() for name, config in configs.items()}, indent=2) + "\n"
    )
    write_hparams_config(
        root, {name: [] for name in columns}, {key: display for key, display in METRICS.items()}
    )
    rows = []
    teacher_run = None
    for name, config in configs.items():
        approach = approaches.get(config.approach)
        if approach.needs_teachers(config) and teacher_run is not None and not config.options.teachers:
            config = merge(config, {"options": {"teachers": str(teacher_run)}})
        print(f"\n=== {name}: {config.approach} ===", flush=True)
        started = time.perf_counter()
        metrics = train_and_evaluate(config, root / name)
        if teacher_run is None and approach.provides_teachers:
            teacher_run = root / name
        elif teacher_run is None and approach.needs_teachers(config) and not config.options.teachers:
            teacher_run = root / name / TEACHERS_DIR  # trained inside this run: the next variants reuse them
        # training_seconds includes cross-labelling, excludes evaluation and teachers trained elsewhere.
        log_to_tensorboard(root / name, config, metrics, columns)
        rows.append(row_of(name, config, metrics, columns))
        print(f"{name} took {time.perf_counter() - started:.0f} s", flush=True)
    write_tables(rows, root)
    return rows


def log_to_tensorboard(run_dir: Path, config: ExperimentConfig, metrics: dict) -> None:
    """The run's HParams row, its confusion matrices, and a grid of test faces with predictions."""
    values = {key: value for key, value in row_of("", config, metrics).items() if key in METRICS and value is not None}
    write_hparams(run_dir, hparams_of(config), values)
    matrices, grids = [], []
    for test_set, scores in metrics["test_sets"].items():
        for task, task_scores in scores.items():
            matrices.append(
                confusion_matrix_image(
                    np.array(task_scores["confusion_matrix"]), task_scores["classes"], f"{test_set}: {task}"
                )
            )
        images, probabilities, labels = metrics["_samples"][test_set]
        count = min(len(images), 32)
        task = GENDER if (labels[GENDER][:count] >= 0).all() else EMOTION
        if (labels[GENDER][:count] >= 0).all() and (labels[EMOTION][:count] >= 0).all():
            task = FOUR
        predicted = [CLASSES[task][i] for i in probabilities[task][:count].argmax(axis=1)]
        if task == FOUR:
            true = [CLASSES[FOUR][e * 2 + g] for e, g in zip(labels[EMOTION][:count], labels[GENDER][:count])]
        else:
            true = [CLASSES[task][i] for i in labels[task][:count]]
        grids.append(face_grid_image(images[:count], predicted, true))
    write_images(run_dir / "evaluation", "confusion_matrices", matrices)
    write_images(run_dir / "evaluation", "test_faces", grids)


def _format(column: str, value) -> str:
    if value is None:
        return "-"
    if column.endswith("accuracy"):
        return f"{value:.4f}"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def write_tables(rows: list[dict], root: Path) -> str:
    """results.csv and results.md under root; returns the Markdown table."""
    columns = list(rows[0])
    with open(root / "results.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_format(c, row[c]) for c in columns) + " |" for row in rows]
    table = "\n".join(lines) + "\n"
    (root / "results.md").write_text(table)
    return table
