"""Hyperparameter search with Keras Tuner: `mtl tune APPROACH`.

A trial is a config: the base experiment config with the trial's hyperparameters set into its
fields. `ApproachHyperModel.build(hp)` makes the network with the approach's own builders
(`approach.network`, `approach.combiner`, `training.Trainer`) and `fit` trains it on the
approach's own batches (`approach.training_batches`) with `training.make_optimizer`; the tuner
has no copy of any model. Trials are selected on the validation splits only
(`ExperimentData.validation()`, true labels of both tasks); the test sets are never read.
The separate approach is searched as its two networks side by side, nothing shared, each
learning from its own labels only (masked losses on mixed batches).

`--config` takes a plain experiment config (the base), or `{"base": <config>, "search": {...}}`
whose search may set tuner, objective, max_epochs, max_trials, factor (Hyperband) and space
(hyperparameter -> spec, see SPACES); `--hp NAME=SPEC` sets one spec from the command line.

A search lives in one directory (default `runs/tune-APPROACH`):

    search_settings.json   what the search is: approach, tuner, objective, budget, space, base config
    teachers/              the separate models that cross-label, when no --set options.teachers=RUN
    crosslabeled/          the cross-labelled training set, made once; every trial reads it
    trials/                Keras Tuner's project: the oracle's state, a folder per trial
    tensorboard/           one run per trial, each with its HParams session
    best_config.json       the best trial as an experiment config for `mtl train` and `mtl compare`

Running the same command again resumes the search: finished trials are kept, the trial that
was in flight is run again. Other settings in the same directory are refused unless --overwrite.

Distributed search uses Keras Tuner's chief/worker mode: `--chief` serves the oracle, each
`--worker ID` asks it for trials and trains them; they share the directory, or each machine
keeps one with the same settings. The chief writes the results when every worker has stopped.
"""

import contextlib
import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt

from mtl import approaches, training
from mtl.approaches import common
from mtl.config import AugmentConfig, ExperimentConfig, merge, read_json, set_dotted
from mtl.crosslabel import MERGED_DIR, SUMMARY_FILE, cross_label
from mtl.data.pipeline import ExperimentData
from mtl.errors import UserError
from mtl.runs import MODEL_FILE

SETTINGS_FILE = "search_settings.json"
BEST_CONFIG_FILE = "best_config.json"
PROJECT = "trials"
TENSORBOARD_DIR = "tensorboard"
TEACHERS_DIR = "teachers"

TUNERS = ("hyperband", "bayesian", "random")
# Every approach is validated on both tasks (crosslabel's four classes through their marginals,
# separate's two networks side by side), so all three can be selected on the same numbers.
OBJECTIVES = ("val_mean_accuracy", "val_gender_accuracy", "val_emotion_accuracy")
DEFAULT_OBJECTIVE = {"separate": "val_mean_accuracy", "crosslabel": "val_mean_accuracy", "multitask": "val_mean_accuracy"}
DEFAULT_MAX_TRIALS = 10
DEFAULT_FACTOR = 3
# A worker waits this long for the chief to answer, instead of Keras Tuner's hour.
WORKER_TIMEOUT_SECONDS = 600

# ---------------------------------------------------------------------- search spaces ---
# A space maps a hyperparameter to a spec: a list is a choice, {"min", "max"[, "step",
# "sampling"]} a range (integers if all bounds are), anything else a fixed value.

SHARED_SPACE = {
    "backbone": ["lenet", "resnet"],
    "width": [16, 32],
    "depth": [1, 2],
    "dropout": {"min": 0.0, "max": 0.5, "step": 0.1},
    "learning_rate": {"min": 1e-4, "max": 3e-3, "sampling": "log"},
    "schedule": ["constant", "cosine"],
    "batch_size": [32, 64, 128],
    "augment_strength": {"min": 0.0, "max": 1.5, "step": 0.5},
}
PSEUDO_LABEL_SPACE = {"confidence_threshold": {"min": 0.6, "max": 0.95, "step": 0.05}}
SPACES = {
    "separate": SHARED_SPACE,
    "crosslabel": {**SHARED_SPACE, "pseudo_labels": ["hard", "soft", "threshold"], **PSEUDO_LABEL_SPACE},
    "multitask": {
        **SHARED_SPACE,
        "pseudo_labels": ["none", "hard", "soft", "threshold"],
        **PSEUDO_LABEL_SPACE,
        "loss_weighting": ["fixed", "uncertainty"],
        # Only the ratio of the two fixed weights matters; the gender weight stays at the base value.
        "emotion_loss_weight": {"min": 0.5, "max": 2.0, "sampling": "log"},
        "emotion_proportion": {"min": 0.3, "max": 0.7, "step": 0.1},
    },
}
# The config field each hyperparameter sets (augment_strength scales the whole augmentation).
FIELDS = {
    "backbone": "model.backbone",
    "width": "model.width",
    "depth": "model.depth",
    "dropout": "model.dropout",
    "learning_rate": "train.learning_rate",
    "schedule": "train.schedule",
    "batch_size": "data.batch_size",
    "emotion_proportion": "data.emotion_proportion",
    "pseudo_labels": "options.pseudo_labels",
    "confidence_threshold": "options.confidence_threshold",
    "loss_weighting": "options.loss_weighting",
    "emotion_loss_weight": "options.emotion_loss_weight",
}
CATEGORICAL = ("backbone", "schedule", "pseudo_labels", "loss_weighting")
# Hyperparameters that mean something only for some values of another.
CONDITIONS = {
    "width": ("backbone", ("resnet", "dsresnet")),
    "depth": ("backbone", ("resnet", "dsresnet")),
    "confidence_threshold": ("pseudo_labels", ("threshold",)),
    "emotion_loss_weight": ("loss_weighting", ("fixed",)),
}


def possible_values(spec) -> list | None:
    """The values a choice or fixed spec can take; None for a range."""
    if isinstance(spec, list):
        return spec
    return None if isinstance(spec, dict) else [spec]


def _declare(hp: kt.HyperParameters, name: str, spec):
    if isinstance(spec, list):
        if not spec:
            raise UserError(f"Hyperparameter '{name}' has an empty list of choices.")
        return hp.Choice(name, spec)
    if isinstance(spec, dict):
        unknown = set(spec) - {"min", "max", "step", "sampling"}
        if unknown or not {"min", "max"} <= set(spec):
            raise UserError(f"Range of hyperparameter '{name}' needs 'min' and 'max' (and may have 'step', 'sampling').")
        bounds = [spec["min"], spec["max"]] + ([spec["step"]] if spec.get("step") is not None else [])
        kind = hp.Int if all(isinstance(bound, int) for bound in bounds) else hp.Float
        try:
            return kind(name, spec["min"], spec["max"], step=spec.get("step"), sampling=spec.get("sampling", "linear"))
        except (TypeError, ValueError) as error:
            raise UserError(f"Range of hyperparameter '{name}' is invalid ({error}).") from None
    return hp.Fixed(name, spec)


def declare_space(hp: kt.HyperParameters, space: dict) -> dict[str, Any]:
    """Register every hyperparameter of `space` in `hp`; returns their values (None when inactive)."""
    values = {}
    for name, spec in space.items():
        if name not in CONDITIONS:
            values[name] = _declare(hp, name, spec)
            continue
        parent, when = CONDITIONS[name]
        parent_values = possible_values(space[parent])
        allowed = [value for value in parent_values if value in when]
        if not allowed:
            values[name] = None  # can never be active: not part of this search
        elif len(parent_values) == 1:
            values[name] = _declare(hp, name, spec)  # the parent is fixed to a value that activates it
        else:
            with hp.conditional_scope(parent, allowed):
                values[name] = _declare(hp, name, spec)
    return values


def scaled_augmentation(base: AugmentConfig | None, strength: float) -> dict:
    """The base augmentation (the defaults if it has none) with every geometric and photometric change scaled.

    Strength 0 keeps only the colour-to-grey change, which is about the datasets, not strength.
    """
    reference = base or AugmentConfig()
    return {
        "flip": bool(reference.flip and strength > 0),
        "rotation": round(reference.rotation * strength, 6),
        "zoom": [round(value * strength, 6) for value in reference.zoom],
        "translation": round(reference.translation * strength, 6),
        "contrast": round(reference.contrast * strength, 6),
        "brightness": round(reference.brightness * strength, 6),
        "grayscale_probability": reference.grayscale_probability,
    }


def config_for(hp: kt.HyperParameters, space: dict, base: ExperimentConfig) -> ExperimentConfig:
    """The base config with the trial's hyperparameters set into its fields (declaring them in `hp`)."""
    overrides: dict = {}
    for name, value in declare_space(hp, space).items():
        if value is None:
            continue
        if name == "augment_strength":
            set_dotted(overrides, "data.augment", scaled_augmentation(base.data.augment, value))
        else:
            set_dotted(overrides, FIELDS[name], value)
    return merge(base, overrides)


# ------------------------------------------------------------------------- hypermodel ---


class SearchStopped(kt.errors.FatalError):
    """A user's mistake met inside a trial: it stops the search rather than failing every trial."""


@contextlib.contextmanager
def user_errors_stop_the_search():
    try:
        yield
    except UserError as error:
        raise SearchStopped(str(error)) from error


class ApproachHyperModel(kt.HyperModel):
    """Trials of one approach: `build` makes its Trainer, `fit` trains it on the approach's batches."""

    def __init__(self, base: ExperimentConfig, space: dict, objective: str, data: ExperimentData, merged_dir: Path | None):
        super().__init__(name=f"{base.approach}_search")
        self.approach = approaches.get(base.approach)
        self.base, self.space, self.objective = base, space, objective
        self.data, self.merged_dir = data, merged_dir

    def declare_hyperparameters(self, hp):
        # Registers the hyperparameters that only fit() reads, so the first trial samples them too.
        config_for(hp, self.space, self.base)

    def build(self, hp):
        with user_errors_stop_the_search():
            config = config_for(hp, self.space, self.base)
            common.seed_everything(config.train.seed)
            return training.Trainer(self.approach.network(config), self.approach.combiner(config))

    def fit(self, hp, model, validation_data=None, epochs=1, initial_epoch=0, callbacks=(), verbose=2, **kwargs):
        with user_errors_stop_the_search():
            config = config_for(hp, self.space, self.base)
            batches, steps = self.approach.training_batches(config, self.data, self.merged_dir)
            # A trial continued by Hyperband starts a fresh optimizer, so its schedule spans the epochs it runs.
            model.compile(optimizer=training.make_optimizer(config.train, steps, epochs - initial_epoch))
        callbacks = list(callbacks)
        if config.train.early_stopping_patience:
            patience = config.train.early_stopping_patience
            callbacks.append(keras.callbacks.EarlyStopping(self.objective, mode="max", patience=patience))
        try:
            return model.fit(
                batches,
                validation_data=validation_data,
                epochs=epochs,
                initial_epoch=initial_epoch,
                steps_per_epoch=steps,
                callbacks=callbacks,
                verbose=verbose,
            )
        finally:
            forget_custom_gradients()


def forget_custom_gradients() -> None:
    """Drop the gradient functions TensorFlow registered while tracing a trial's training step.

    A `tf.custom_gradient` inside a traced function (Keras's all-reduce of the gradients is one)
    registers its gradient under a new name in a process-wide registry that is never emptied, and
    each entry keeps the whole traced graph alive: tens of MB a trial, which Keras's
    `clear_session` does not free. Only tracing looks them up, and a finished trial is never traced again.
    """
    from tensorflow.python.framework import ops

    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    if isinstance(registry, dict):
        for name in [name for name in registry if name.startswith("CustomGradient-")]:
            del registry[name]


# ------------------------------------------------------------------------- settings ---


@dataclass
class SearchSettings:
    """What a search is; a search directory holds exactly one, in search_settings.json."""

    approach: str
    tuner: str
    objective: str
    max_epochs: int
    max_trials: int | None  # random and bayesian
    factor: int | None  # hyperband
    space: dict
    data_dir: str | None
    base_config: dict

    def to_json(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


SEARCH_KEYS = ("tuner", "objective", "max_epochs", "max_trials", "factor", "space")


def read_search_file(path: str | None) -> tuple[dict, dict]:
    """(base config values, search settings) of a `mtl tune --config` file.

    The file is a plain experiment config, or `{"base": <experiment config>, "search": {...}}`
    where search may set tuner, objective, max_epochs, max_trials, factor and space.
    """
    if not path:
        return {}, {}
    values = read_json(path)
    if not isinstance(values, dict) or not ({"base", "search"} & set(values)):
        return values, {}
    unknown = sorted(set(values) - {"base", "search"}, key=str)
    if unknown:
        raise UserError(f"Unknown key '{unknown[0]}' in search config '{path}'; expected 'base' and 'search'.")
    search = values.get("search") or {}
    unknown = sorted(set(search) - set(SEARCH_KEYS))
    if unknown:
        raise UserError(f"Unknown search setting '{unknown[0]}' in '{path}'; expected one of: {', '.join(SEARCH_KEYS)}.")
    return values.get("base") or {}, search


def _space_overrides(args) -> dict:
    overrides = {}
    if getattr(args, "backbone", None):
        overrides["backbone"] = args.backbone
    for item in getattr(args, "hp", None) or []:
        name, separator, text = item.partition("=")
        if not separator:
            raise UserError(f"--hp expects NAME=SPEC (for example batch_size=[32,64]), got '{item}'.")
        try:
            overrides[name] = json.loads(text)
        except json.JSONDecodeError:
            overrides[name] = text
    return overrides


def resolve_settings(args, config: ExperimentConfig, search: dict) -> SearchSettings:
    """Command-line options over the search file over the defaults, checked."""

    def pick(option, key, default=None):
        value = getattr(args, option, None)
        return value if value is not None else search.get(key, default)

    tuner = pick("tuner", "tuner", "hyperband")
    if tuner not in TUNERS:
        raise UserError(f"Unknown tuner '{tuner}'; expected one of: {', '.join(TUNERS)}.")
    objective = pick("objective", "objective", DEFAULT_OBJECTIVE[config.approach])
    if objective not in OBJECTIVES:
        raise UserError(f"Unknown objective '{objective}'; expected one of: {', '.join(OBJECTIVES)}.")
    max_epochs = pick("max_epochs", "max_epochs", config.train.epochs)
    max_trials = pick("max_trials", "max_trials")
    if tuner == "hyperband":
        if max_trials is not None:
            raise UserError(
                "--max-trials is for the random and bayesian tuners; Hyperband's trials follow from --max-epochs."
            )
        factor = int(search.get("factor", DEFAULT_FACTOR))
    else:
        max_trials, factor = int(max_trials or DEFAULT_MAX_TRIALS), None
    if not isinstance(max_epochs, int) or max_epochs < 1 or (max_trials is not None and max_trials < 1):
        raise UserError("--max-epochs and --max-trials must be positive whole numbers.")

    space = dict(SPACES[config.approach])
    changes = {**(search.get("space") or {}), **_space_overrides(args)}
    unknown = sorted(set(changes) - set(space))
    if unknown:
        raise UserError(
            f"Unknown hyperparameter '{unknown[0]}' for the {config.approach} approach; expected one of: {', '.join(space)}."
        )
    space.update(changes)
    for name in CATEGORICAL:
        if name in space and possible_values(space[name]) is None:
            raise UserError(f"Hyperparameter '{name}' takes a list of choices or one value, not a range.")
    declare_space(kt.HyperParameters(), space)  # a malformed spec fails here, before anything runs
    if config.approach == "crosslabel" and "none" in possible_values(space["pseudo_labels"]):
        raise UserError("The crosslabel approach needs pseudo-labels: search pseudo_labels among hard, soft and threshold.")
    return SearchSettings(
        config.approach, tuner, objective, max_epochs, max_trials, factor, space, config.data.data_dir, config.to_dict()
    )


def _first_difference(found, wanted, where: str = "") -> str:
    if isinstance(found, dict) and isinstance(wanted, dict):
        for key in sorted(set(found) | set(wanted)):
            if found.get(key) != wanted.get(key):
                return _first_difference(found.get(key), wanted.get(key), f"{where}.{key}" if where else key)
    return f"{where}: {json.dumps(found)} there, {json.dumps(wanted)} now"


def _our_entries(directory: Path) -> list[Path]:
    names = {SETTINGS_FILE, BEST_CONFIG_FILE, PROJECT, TENSORBOARD_DIR, TEACHERS_DIR}
    return [path for path in directory.iterdir() if path.name in names or path.name.startswith(MERGED_DIR)]


def claim_directory(directory: Path, settings: SearchSettings, overwrite: bool, worker: bool) -> None:
    """Make `directory` hold a search with `settings`: new, or one made with the same settings to resume."""
    path = directory / SETTINGS_FILE
    wanted = settings.to_json()
    if overwrite and worker:
        raise UserError("--overwrite is for a local search or the chief, never for a worker.")
    if path.is_file():
        found = json.loads(path.read_text())
        if found == wanted and not overwrite:
            return
        if not overwrite:
            raise UserError(
                f"Search directory '{directory}' holds a search with other settings "
                f"({_first_difference(found, wanted)}); pass --overwrite to start afresh or choose another --directory."
            )
        for entry in _our_entries(directory):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    elif directory.exists() and not directory.is_dir():
        raise UserError(f"'{directory}' is a file; --directory needs a folder.")
    elif directory.is_dir() and any(directory.iterdir()) and not worker:
        raise UserError(f"Folder '{directory}' is not empty and holds no {SETTINGS_FILE}; choose another --directory.")
    directory.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{SETTINGS_FILE}.{os.getpid()}")
    temporary.write_text(json.dumps(wanted, indent=2) + "\n")
    os.replace(temporary, path)  # workers sharing the directory never read half a file


# ----------------------------------------------------------------------- distribution ---


@contextlib.contextmanager
def distributed_role(args):
    """Keras Tuner's environment for --chief / --worker ID during the search; yields the tuner id or None.

    Without either option, KERASTUNER_* variables already set (Keras Tuner's own way) still apply.
    """
    names = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")
    saved = {name: os.environ.get(name) for name in names}
    chief, worker = getattr(args, "chief", False), getattr(args, "worker", None)
    try:
        if chief or worker:
            if worker and "chief" in worker:
                raise UserError(f"Worker ID '{worker}' contains 'chief', which Keras Tuner reserves for the chief.")
            os.environ["KERASTUNER_TUNER_ID"] = "chief" if chief else worker
            os.environ["KERASTUNER_ORACLE_IP"] = args.oracle_ip or saved["KERASTUNER_ORACLE_IP"] or "127.0.0.1"
            os.environ["KERASTUNER_ORACLE_PORT"] = str(args.oracle_port or saved["KERASTUNER_ORACLE_PORT"] or 8000)
        elif getattr(args, "oracle_ip", None) or getattr(args, "oracle_port", None):
            raise UserError("--oracle-ip and --oracle-port go with --chief or --worker ID.")
        if "KERASTUNER_ORACLE_IP" not in os.environ:
            yield None
            return
        if not os.environ.get("KERASTUNER_TUNER_ID") or not os.environ.get("KERASTUNER_ORACLE_PORT"):
            raise UserError("KERASTUNER_ORACLE_IP is set, so KERASTUNER_TUNER_ID and KERASTUNER_ORACLE_PORT must be too.")
        yield os.environ["KERASTUNER_TUNER_ID"]
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --------------------------------------------------------------------------- search ---


def needs_cross_labels(settings: SearchSettings) -> bool:
    if settings.approach == "crosslabel":
        return True
    if settings.approach == "multitask":
        return any(value != "none" for value in possible_values(settings.space["pseudo_labels"]))
    return False


def cross_labelled_images(config: ExperimentConfig, directory: Path, data: ExperimentData, worker: str | None) -> Path:
    """The training images labelled by the teachers, made once (per worker) and read by every trial.

    Teachers come from options.teachers, else are trained (base config) into the search directory.
    Anything an interrupted run left half-made is made again.
    """
    merged_dir = directory / (f"{MERGED_DIR}-{worker}" if worker else MERGED_DIR)
    if (merged_dir / SUMMARY_FILE).is_file():
        print(f"Reusing the cross-labelled images in {merged_dir}.", flush=True)
        return merged_dir
    shutil.rmtree(merged_dir, ignore_errors=True)
    if not config.options.teachers:
        if worker:
            raise UserError(
                "A distributed search with pseudo-labels needs the same teachers on every worker: "
                "pass --set options.teachers=RUN_DIR (a separate run)."
            )
        teachers = directory / TEACHERS_DIR
        if (teachers / MODEL_FILE).is_file():
            config = merge(config, {"options": {"teachers": str(teachers)}})
        else:
            shutil.rmtree(teachers, ignore_errors=True)
            common.seed_everything(config.train.seed)
    teacher = common.load_teacher(config, directory, data)
    summary = cross_label(teacher, data, merged_dir)
    forget_custom_gradients()  # the teachers' training graphs, as after every trial
    print(f"Cross-labelled {summary['examples']} images into {merged_dir}.", flush=True)
    return merged_dir


def make_tuner(settings: SearchSettings, hypermodel: ApproachHyperModel, directory: Path, seed: int) -> kt.Tuner:
    shared = {
        "hypermodel": hypermodel,
        # Named with its direction: Keras Tuner cannot infer it for metrics it does not know.
        "objective": kt.Objective(settings.objective, "max"),
        "directory": str(directory),
        "project_name": PROJECT,
        "overwrite": False,  # an existing project resumes; claim_directory decided it may
        "seed": seed,
    }
    if settings.tuner == "hyperband":
        return kt.Hyperband(max_epochs=settings.max_epochs, factor=settings.factor, **shared)
    if settings.tuner == "bayesian":
        return kt.BayesianOptimization(max_trials=settings.max_trials, **shared)
    return kt.RandomSearch(max_trials=settings.max_trials, **shared)


def run_tuning(args, config: ExperimentConfig, search: dict | None = None) -> dict | None:
    """Run (or resume, or serve, or work for) a search; returns the best trial's summary, None on a worker."""
    settings = resolve_settings(args, config, search or {})
    directory = Path(args.directory or Path(args.runs_dir) / (args.name or f"tune-{config.approach}"))
    with distributed_role(args) as tuner_id:
        chief = tuner_id is not None and "chief" in tuner_id
        worker = tuner_id if tuner_id is not None and not chief else None
        data = ExperimentData.load(config.data, config.train.seed)  # checks the data first
        claim_directory(directory, settings, args.overwrite, worker is not None)
        done = len(list((directory / PROJECT).glob("trial_*/trial.json")))
        print(f"{'Resuming' if done else 'Starting'} the {settings.tuner} search in {directory}.", flush=True)
        merged_dir = None
        if needs_cross_labels(settings) and not chief:  # the chief only hands out trials
            merged_dir = cross_labelled_images(config, directory, data, worker)
        if worker:
            from keras_tuner.src.distribute import oracle_client

            oracle_client.TIMEOUT = WORKER_TIMEOUT_SECONDS
        hypermodel = ApproachHyperModel(config, settings.space, settings.objective, data, merged_dir)
        try:
            tuner = make_tuner(settings, hypermodel, directory, config.train.seed)
            tuner.search(
                validation_data=data.validation(),
                epochs=settings.max_epochs,
                callbacks=[keras.callbacks.TensorBoard(log_dir=str(directory / TENSORBOARD_DIR))],
                verbose=1 if sys.stdout.isatty() else 2,
            )
        except SearchStopped as stopped:
            raise stopped.__cause__ from None
        except Exception as error:
            if worker and type(error).__module__.startswith("grpc"):
                reason = error.code() if hasattr(error, "code") else error
                raise UserError(
                    f"Worker '{worker}' got no answer from the chief at {os.environ['KERASTUNER_ORACLE_IP']}:"
                    f"{os.environ['KERASTUNER_ORACLE_PORT']} ({reason}); "
                    "start it with --chief and check --oracle-ip and --oracle-port."
                ) from None
            raise
        if worker:
            print(f"Worker '{worker}' has no trials left; the chief reports the results.", flush=True)
            return None
        if chief:
            tuner.save()  # the chief's oracle file would otherwise list the last trial as still running
    return report(tuner.oracle, settings, config, directory)


# --------------------------------------------------------------------------- results ---


def trial_epochs(trial, settings: SearchSettings) -> int:
    return int(trial.hyperparameters.values.get("tuner/epochs", settings.max_epochs))


def best_config(trial, settings: SearchSettings, base: ExperimentConfig) -> ExperimentConfig:
    """The trial's config, trained for the trial's epochs (crosslabel: its four-class model's)."""
    config = config_for(trial.hyperparameters.copy(), settings.space, base)
    field = "four_class_epochs" if base.approach == "crosslabel" else "epochs"
    return merge(config, {"train": {field: trial_epochs(trial, settings)}})


def _format(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def best_trials_table(trials, settings: SearchSettings) -> str:
    """A Markdown table of `trials`: id, objective, epochs and each searched hyperparameter."""
    space = kt.HyperParameters()
    declare_space(space, settings.space)
    declared = {hyperparameter.name for hyperparameter in space.space}
    searched = [
        name
        for name, spec in settings.space.items()
        if name in declared and (possible_values(spec) is None or len(possible_values(spec)) > 1)
    ]
    columns = ["trial", settings.objective, "epochs", *searched]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for trial in trials:
        hp = trial.hyperparameters
        values = [hp.values.get(name) if name in hp and hp.is_active(name) else None for name in searched]
        cells = [trial.trial_id, trial.score, trial_epochs(trial, settings), *values]
        lines.append("| " + " | ".join(_format(cell) for cell in cells) + " |")
    return "\n".join(lines)


def report(oracle, settings: SearchSettings, base: ExperimentConfig, directory: Path, count: int = 5) -> dict:
    """Print the best trials and write the best one's config; returns a summary of the search."""
    trials = list(oracle.trials.values())
    best = oracle.get_best_trials(count)
    statuses = sorted({trial.status for trial in trials})
    counts = ", ".join(f"{sum(trial.status == status for trial in trials)} {status.lower()}" for status in statuses)
    print(f"\nSearch in {directory}: {len(trials)} trials ({counts}); best by {settings.objective}:\n", flush=True)
    if not best:
        raise UserError(
            f"No trial of the search in '{directory}' completed; see the trial.json files under {directory / PROJECT}."
        )
    print(best_trials_table(best, settings))
    path = directory / BEST_CONFIG_FILE
    best_config(best[0], settings, base).save(path)
    print(f"\nBest hyperparameters written to {path}; train them with: mtl train {base.approach} --config {path}")
    print(f"TensorBoard (HParams tab lists every trial): tensorboard --logdir {directory / TENSORBOARD_DIR}")
    return {
        "best_trial": best[0].trial_id,
        "best_score": best[0].score,
        "best_config": str(path),
        "trials": {trial.trial_id: trial.status for trial in trials},
    }


def add_options(parser) -> None:
    """The options of `mtl tune` beyond the experiment's (--config, --set, --data-dir, ...)."""
    parser.add_argument("--tuner", choices=TUNERS, help="search algorithm (default: hyperband)")
    parser.add_argument("--objective", choices=OBJECTIVES, help="validation metric to maximise (default: val_mean_accuracy)")
    parser.add_argument("--max-epochs", type=int, help="epochs of a trial; Hyperband's longest (default: train.epochs)")
    parser.add_argument("--max-trials", type=int, help=f"trials of a random or bayesian search (default: {DEFAULT_MAX_TRIALS})")
    parser.add_argument(
        "--hp",
        action="append",
        metavar="NAME=SPEC",
        help='set one hyperparameter\'s range: backbone=lenet, batch_size=[64,128], dropout={"min":0,"max":0.3}',
    )
    parser.add_argument("--directory", help="search directory (default: RUNS_DIR/tune-APPROACH); run again to resume")
    parser.add_argument("--overwrite", action="store_true", help="start afresh where a search with other settings is")
    role = parser.add_mutually_exclusive_group()
    role.add_argument("--chief", action="store_true", help="distributed search: serve the trials to the workers")
    role.add_argument("--worker", metavar="ID", help="distributed search: run trials for the chief as worker ID")
    parser.add_argument("--oracle-ip", help="address of the chief (default: 127.0.0.1)")
    parser.add_argument("--oracle-port", type=int, help="port of the chief (default: 8000)")
