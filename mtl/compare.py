"""Train and evaluate several approaches on the same data, seeds and budget, side by side.

All runs go under one root, which is also the TensorBoard log directory:
- `<root>/<variant>/seed-<k>/`: each run (config, models, training logs, metrics.json), plus
  its HParams row; with two seeds or more `<root>/<variant>/mean/` holds the row of the
  variant's mean over the seeds (`mtl.dashboard.comparison` says how TensorBoard shows them);
- `<root>/<variant>/seed-<k>/evaluation/`: confusion matrices and per-image correctness;
- `<root>/results.md` and `results.csv`: per variant, mean and standard deviation over the
  seeds of every metric, and the p-value of an exact McNemar test against the baseline variant
  (the first one) on the same test images, from the seed-0 runs; `results_per_seed.csv`: every run.
  results.md ends with the variant that the validation splits choose (`mtl.selection`).
This module runs the variants and logs each run to TensorBoard; `mtl.comparison_stats` makes the
statistics and `mtl.comparison_tables` the tables.
A comparison config is `{"base": <experiment config>, "variants": {name: <overrides>}, "seeds": N,
"baseline": <variant>}`. Running the same command again resumes: finished runs are kept.

A variant `{"refit": {"of": <variant>, "heads": [...], "attributes": [...]}}` trains nothing: each
seed's run of `of` is refitted by `mtl.refit` (its heads fitted again on its validation faces, every
group weighing the same) into the variant's own run, so a comparison shows a recipe with and
without the refit on the same trained networks.

Under a budget other than epochs (`train.budget.kind`, `mtl compare --budget`), every variant
gets the amount that `train.epochs` epochs of the baseline cost (`equal_budgets`), and
`mtl.comparison_curves` writes each variant's accuracy against the faces it had seen.
"""

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mtl import approaches, pseudo_labels
from mtl.comparison_curves import write_curves
from mtl.comparison_stats import summarise
from mtl.comparison_tables import write_tables
from mtl.config import ExperimentConfig, config_from_dict, load_config, merge
from mtl.dashboard.comparison import write_comparison
from mtl.dashboard.figures import GRID_FACES, confusion_matrix_image, face_grid_image, write_images
from mtl.data.sources import source_name
from mtl.errors import UserError
from mtl.evaluate import Evaluation, read_correct
from mtl.experiment import TEACHERS_DIR, reference_budget, train_and_evaluate, validate
from mtl.metrics import COMPARED
from mtl.refit import refit_run
from mtl.runs import CONFIG_FILE, METRICS_FILE, evaluation_dir, write_json
from mtl.selection import choice_section, scored_run
from mtl.tasks import CLASSES, EMOTION, FOUR, GENDER, TASKS, four_class_index

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

# The columns of the tables and HParams rows: name -> text.
METRICS = {metric.name: metric.text for metric in COMPARED}
SHARED_HPARAMS = ("approach", "backbone", "color", "budget", "epochs", "seed", "gender_sources")
# The amounts (BudgetConfig fields) each budget kind holds equal; epochs and seconds are set by the config itself.
BUDGET_AMOUNTS = {"examples": tuple(f"{task}_faces" for task in TASKS), "steps": ("steps",), "flops": ("flops",)}
COMPARISON_FILE = "comparison.json"


@dataclass(frozen=True)
class Refit:
    """A variant made of another variant's trained runs, one per seed, with `heads` refitted (`mtl refit`)."""

    of: str
    heads: tuple[str, ...] = (GENDER, EMOTION)
    attributes: tuple[str, ...] = ()
    teachers: str | None = None  # whose answers for the other task group the faces; None: the run's own model

    @property
    def label(self) -> str:  # its HParams column
        return "+".join(self.heads)


def variant_configs(spec: dict) -> dict[str, ExperimentConfig]:
    """The config of each variant that trains: the base config with the variant's overrides."""
    unknown = set(spec) - {"base", "variants", "seeds", "baseline"}
    if unknown:
        raise UserError(
            f"Unknown comparison config key '{sorted(unknown)[0]}'; expected 'base', 'variants', 'seeds' and 'baseline'."
        )
    base = config_from_dict(spec.get("base", {}))
    variants = spec.get("variants") or DEFAULT_VARIANTS
    return {name: merge(base, overrides) for name, overrides in variants.items() if "refit" not in overrides}


def refit_variants(spec: dict, trained: list[str]) -> dict[str, Refit]:
    """The variants that refit another one's runs
    (`{"refit": {"of": ..., "heads": [...], "attributes": [...], "teachers": ...}}`)."""
    found = {}
    for name, overrides in (spec.get("variants") or {}).items():
        if "refit" not in overrides:
            continue
        if set(overrides) != {"refit"} or not isinstance(overrides["refit"], dict):
            raise UserError(f"Variant '{name}' refits another variant's runs and takes only "
                            '"refit": {"of": <variant>, "heads": [...], "attributes": [...], "teachers": <run>}.')
        fields = overrides["refit"]
        unknown = sorted(set(fields) - {"of", "heads", "attributes", "teachers"})
        if unknown:
            raise UserError(f"Variant '{name}': unknown refit key '{unknown[0]}'; "
                            "expected 'of', 'heads', 'attributes' and 'teachers'.")
        if fields.get("of") not in trained:
            raise UserError(f"Variant '{name}' refits '{fields.get('of')}', which is not a variant that trains; "
                            f"this comparison trains: {', '.join(trained)}.")
        heads = fields.get("heads", [GENDER, EMOTION])
        attributes = fields.get("attributes", [])
        if not isinstance(heads, list) or not heads or any(head not in TASKS for head in heads):
            raise UserError(f"Variant '{name}': refit heads must be a list of {' and/or '.join(TASKS)}; got {heads!r}.")
        if not isinstance(attributes, list) or not all(isinstance(attribute, str) for attribute in attributes):
            raise UserError(f"Variant '{name}': refit attributes must be a list of names; got {attributes!r}.")
        teachers = fields.get("teachers")
        if teachers is not None:
            if not isinstance(teachers, str):
                raise UserError(f"Variant '{name}': refit teachers must be a run directory; got {teachers!r}.")
            pseudo_labels.require_teacher(teachers)  # refused before any run is made
        found[name] = Refit(fields["of"], tuple(heads), tuple(attributes), teachers)
    return found


def hparams_columns(configs: dict[str, ExperimentConfig]) -> list[str]:
    """The shared HParams columns, then every field the variants' approaches add."""
    added = [name for config in configs.values() for name in approaches.get(config.approach.type).hparams(config)]
    return [*SHARED_HPARAMS, *dict.fromkeys(added)]


def hparams_of(config: ExperimentConfig, columns: list[str]) -> dict:
    values = {
        "approach": config.approach.type,
        "backbone": config.model.backbone.type,
        "color": config.data.color,
        "budget": config.train.budget.kind,
        "epochs": config.train.epochs,
        "seed": str(config.train.seed),  # a string, so the mean's row can say "mean"
        "gender_sources": "+".join(source_name(spec) for spec in config.data.gender_train),
        "refit": "none",  # a column only where the comparison has refit variants
        **approaches.get(config.approach.type).hparams(config),
    }
    return {column: values.get(column, "n/a") for column in columns}


def row_of(name: str, config: ExperimentConfig, metrics: dict, columns: list[str]) -> dict:
    row = {"variant": name, **hparams_of(config, columns)}
    for key in METRICS:
        value = metrics["headline"].get(key) if key in metrics["headline"] else metrics.get(key)
        row[key] = value
    return row


def equal_budgets(configs: dict[str, ExperimentConfig], baseline: str) -> dict[str, ExperimentConfig]:
    """Each variant whose budget kind holds an amount equal, with the amount that `train.epochs` epochs
    of the baseline cost (unless the variant sets it): the same faces per task, steps or multiply-adds."""
    wanted = {name for name, config in configs.items() if config.train.budget.kind in BUDGET_AMOUNTS}
    if not wanted:
        return configs
    reference = reference_budget(configs[baseline])
    filled = dict(configs)
    for name in wanted:
        own = configs[name].train.budget
        amounts = {key: reference[key] for key in BUDGET_AMOUNTS[own.kind] if getattr(own, key) is None}
        filled[name] = merge(configs[name], {"train": {"budget": amounts}})
    return filled


def lacks_teachers(config: ExperimentConfig) -> bool:
    """Whether the variant needs teachers and its config names none."""
    return approaches.get(config.approach.type).needs_teachers(config) and not config.options.teachers


def first_teacher_provider(configs: dict[str, ExperimentConfig]) -> str | None:
    """The first variant whose approach provides teachers (whose runs cross-label for the others), if any."""
    return next((name for name, config in configs.items() if approaches.get(config.approach.type).provides_teachers), None)


def teacher_variant(configs: dict[str, ExperimentConfig], names: list[str]) -> str | None:
    """The first variant that provides teachers, if any of `names` lacks them."""
    return first_teacher_provider(configs) if any(lacks_teachers(configs[name]) for name in names) else None


def teachers_first(configs: dict[str, ExperimentConfig]) -> dict[str, ExperimentConfig]:
    """The variants in their order, except that the first one providing teachers comes first."""
    order = dict.fromkeys([first_teacher_provider(configs), *configs])
    return {name: configs[name] for name in order if name is not None}


def seed_count(spec: dict, seeds: int | None) -> int:
    count = seeds if seeds is not None else spec.get("seeds", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise UserError(f"The number of seeds must be a whole number >= 1, got {count!r}.")
    return count


def claim_root(root: Path, described: dict) -> bool:
    """Make `root` hold this comparison: a new folder, or one holding the same comparison (True: resume)."""
    saved = root / COMPARISON_FILE
    described = json.loads(json.dumps(described))  # as it reads back: tuples are lists
    if saved.is_file():
        if as_read_today(json.loads(saved.read_text())) != described:
            raise UserError(f"Comparison folder '{root}' holds another comparison; choose another --name.")
        return True
    if root.exists() and any(root.iterdir()):
        raise UserError(f"Comparison folder '{root}' already exists and is not empty; choose another --name.")
    root.mkdir(parents=True, exist_ok=True)
    write_json(saved, described)
    return False


def as_read_today(described: dict) -> dict:
    """A saved comparison with each variant's config and each refit read by today's code, so that a
    field added since (with its default) does not make the same comparison look like another."""
    variants = {name: config_from_dict(config).to_dict() for name, config in described.get("variants", {}).items()}
    today = {**described, "variants": variants}
    if "refits" in described:
        today["refits"] = {name: asdict(Refit(**refit)) for name, refit in described["refits"].items()}
    return json.loads(json.dumps(today))


def compare(spec: dict, root: Path, only: list[str] | None = None, seeds: int | None = None) -> list[dict]:
    """Run every variant with every seed into `root`; returns one result row per variant (means over seeds)."""
    root = Path(root)
    configs = variant_configs(spec)
    refits = refit_variants(spec, list(configs))
    seeds = seed_count(spec, seeds)
    baseline = spec.get("baseline") or next(iter(configs))
    if baseline not in configs:
        raise UserError(f"Baseline variant '{baseline}' is not one of the variants this comparison trains: "
                        f"{', '.join(configs)}.")
    configs = equal_budgets(configs, baseline)
    if only:
        missing = [name for name in only if name not in configs and name not in refits]
        if missing:
            raise UserError(f"Unknown variant '{missing[0]}'; this comparison has: {', '.join([*configs, *refits])}.")
        refits = {name: refit for name, refit in refits.items() if name in only}
        trained = [name for name in only if name in configs] + [refit.of for refit in refits.values()]
        keep = {*trained, teacher_variant(configs, trained)}
        configs = {name: configs[name] for name in configs if name in keep}
    for config in configs.values():
        validate(config)
    configs = teachers_first(configs)
    baseline = baseline if baseline in configs else next(iter(configs))
    columns = hparams_columns(configs) + (["refit"] if refits else [])  # which heads a refit variant refitted
    described = {"seeds": seeds, "baseline": baseline, "variants": {name: config.to_dict() for name, config in configs.items()}}
    if refits:
        described["refits"] = {name: asdict(refit) for name, refit in refits.items()}
    if claim_root(root, described):
        print(f"Resuming the comparison in {root}: finished runs are kept.", flush=True)
    runs = {name: [] for name in [*configs, *refits]}  # variant -> per seed (row, per-image correctness)
    places = iter(f"run {index} of {seeds * len(runs)}" for index in range(1, seeds * len(runs) + 1))
    for seed_index in range(seeds):
        teacher_run = None
        for name, config in configs.items():
            config = merge(config, {"train": {"seed": config.train.seed + seed_index}})
            if teacher_run is not None and lacks_teachers(config):
                config = merge(config, {"options": {"teachers": str(teacher_run)}})
            run_dir = root / name / f"seed-{seed_index}"
            runs[name].append(run_variant(name, seed_index, config, run_dir, columns, next(places)))
            write_comparison(root, [row for variant in runs for row, _ in runs[variant]], [], columns, METRICS)
            if teacher_run is None and approaches.get(config.approach.type).provides_teachers:
                teacher_run = run_dir
            elif teacher_run is None and lacks_teachers(config):
                teacher_run = run_dir / TEACHERS_DIR  # trained inside this run: the next variants reuse them
        for name, refit in refits.items():
            runs[name].append(refit_variant(name, seed_index, refit, root, columns, next(places)))
            write_comparison(root, [row for variant in runs for row, _ in runs[variant]], [], columns, METRICS)
    rows = summarise(runs, baseline, columns)
    per_seed = [row for name in runs for row, _ in runs[name]]
    chosen = choice_section([scored_run(name, row["seed"], configs[name].to_dict()["data"] if name in configs else None, row)
                             for name in runs for row, _ in runs[name]])
    curves = write_curves(root, list(runs), seeds)
    write_comparison(root, per_seed, rows, columns, METRICS, write_tables(rows, per_seed, root, appendix=chosen + curves))
    return rows


def run_variant(name: str, seed_index: int, config: ExperimentConfig, run_dir: Path, columns: list[str], place: str):
    """(result row, per-image correctness) of one variant and seed: trained now, or read back if finished.

    `place` ("run 3 of 30") says how far the comparison is, in its log.
    """
    label = f"{name}/seed-{seed_index}"
    if (run_dir / METRICS_FILE).is_file():
        print(f"\n=== {label}: finished earlier, kept ({place}) ===", flush=True)
        metrics = json.loads((run_dir / METRICS_FILE).read_text())
        correct = read_correct(evaluation_dir(run_dir / METRICS_FILE))
    else:
        print(f"\n=== {label}: {config.approach.type} ({place}) ===", flush=True)
        started = time.perf_counter()
        # training_seconds includes cross-labelling, excludes evaluation and teachers trained elsewhere.
        evaluation = train_and_evaluate(config, run_dir)
        log_to_tensorboard(run_dir, evaluation)
        print(f"{label} took {time.perf_counter() - started:.0f} s", flush=True)
        metrics, correct = evaluation.metrics, evaluation.correct
    return row_of(label, config, metrics, columns), correct


def refit_variant(name: str, seed_index: int, refit: Refit, root: Path, columns: list[str], place: str):
    """(result row, per-image correctness) of a refit of `refit.of`'s run of this seed: made now, or read back.

    Its cost (`mtl.refit.cost`) is its trained run's and the refit's seconds; the validation faces the
    refit fitted are in its `refit.json`.
    """
    label = f"{name}/seed-{seed_index}"
    trained_dir, run_dir = root / refit.of / f"seed-{seed_index}", root / name / f"seed-{seed_index}"
    config = load_config(trained_dir / CONFIG_FILE)
    if (run_dir / METRICS_FILE).is_file():
        print(f"\n=== {label}: finished earlier, kept ({place}) ===", flush=True)
        metrics = json.loads((run_dir / METRICS_FILE).read_text())
        correct = read_correct(evaluation_dir(run_dir / METRICS_FILE))
    else:
        heads = " and ".join(refit.heads)
        print(f"\n=== {label}: {refit.of}/seed-{seed_index} with its {heads} heads refitted ({place}) ===", flush=True)
        started = time.perf_counter()
        evaluation = refit_run(trained_dir, run_dir, config, list(refit.heads), list(refit.attributes),
                               replace_unfinished=True, teachers=refit.teachers)
        log_to_tensorboard(run_dir, evaluation)
        print(f"{label} took {time.perf_counter() - started:.0f} s", flush=True)
        metrics, correct = evaluation.metrics, evaluation.correct
    row = row_of(label, config, metrics, columns)
    return row | {"refit": refit.label}, correct


def log_to_tensorboard(run_dir: Path, evaluation: Evaluation) -> None:
    """The run's confusion matrices and a grid of test faces with predictions (its HParams row: write_comparison)."""
    metrics = evaluation.metrics
    matrices, grids = [], []
    for test_set, scores in metrics["test_sets"].items():
        for task, task_scores in ((task, scores[task]) for task in (GENDER, EMOTION, FOUR) if task in scores):
            matrices.append(
                confusion_matrix_image(
                    np.array(task_scores["confusion_matrix"]), task_scores["classes"], f"{test_set}: {task}"
                )
            )
        sample = evaluation.samples[test_set]
        images, probabilities, labels = sample.images, sample.probabilities, sample.labels
        count = min(len(images), GRID_FACES)
        task = GENDER if (labels[GENDER][:count] >= 0).all() else EMOTION
        if (labels[GENDER][:count] >= 0).all() and (labels[EMOTION][:count] >= 0).all():
            task = FOUR
        predicted = [CLASSES[task][i] for i in probabilities[task][:count].argmax(axis=1)]
        if task == FOUR:
            true = [CLASSES[FOUR][four_class_index(e, g)] for e, g in zip(labels[EMOTION][:count], labels[GENDER][:count])]
        else:
            true = [CLASSES[task][i] for i in labels[task][:count]]
        grids.append(face_grid_image(images[:count], predicted, true))
    write_images(run_dir / "evaluation", "confusion_matrices", matrices)
    write_images(run_dir / "evaluation", "test_faces", grids)
