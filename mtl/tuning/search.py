"""Running a search: its settings and directory, resuming, chief and workers (`mtl tune APPROACH`).

A trial is a config: the base experiment config with the trial's hyperparameters set into its
fields (`mtl.tuning.space`), trained as `mtl train` trains it (`mtl.tuning.hypermodel`).
Trials are selected on the validation splits only (`ExperimentData.validation()`, true labels of
both tasks); the test sets are never read.

`--config` takes a plain experiment config (the base), or `{"base": <config>, "search": {...}}`
whose search may set tuner, objective, max_epochs, max_trials, factor (Hyperband) and space
(hyperparameter -> spec); `--hp NAME=SPEC` sets one spec from the command line.

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

import keras
import keras_tuner as kt

from mtl.approaches.base import Approach
from mtl.config import ExperimentConfig, read_json
from mtl.data.pipeline import ExperimentData
from mtl.errors import UserError
from mtl.experiment import TEACHERS_DIR, cross_labelled_images, validate
from mtl.pseudo_labels import MERGED_DIR
from mtl.runs import LOCK_FILE, run_directory, run_lock
from mtl.compat import forget_custom_gradients, set_tuner_worker_timeout
from mtl.tuning.hypermodel import ApproachHyperModel, SearchStopped
from mtl.tuning.options import DEFAULT_FACTOR, DEFAULT_MAX_TRIALS, OBJECTIVES, TUNERS, TuneRequest
from mtl.tuning.report import BEST_CONFIG_FILE, TENSORBOARD_DIR, report
from mtl.tuning.space import check_space, choice_configs, default_space, renamed

SETTINGS_FILE = "search_settings.json"
PROJECT = "trials"
# A worker waits this long for the chief to answer, instead of Keras Tuner's hour.
WORKER_TIMEOUT_SECONDS = 600


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


def _space_overrides(request: TuneRequest) -> dict:
    overrides = {}
    if request.backbone:
        overrides["backbone"] = request.backbone
    for item in request.hp:
        name, separator, text = item.partition("=")
        if not separator:
            raise UserError(f"--hp expects NAME=SPEC (for example batch_size=[32,64]), got '{item}'.")
        try:
            overrides[name] = json.loads(text)
        except json.JSONDecodeError:
            overrides[name] = text
    return overrides


def resolve_settings(request: TuneRequest, config: ExperimentConfig, search: dict) -> SearchSettings:
    """Command-line options over the search file over the defaults, checked."""

    def pick(option, key, default=None):
        value = getattr(request, option)
        return value if value is not None else search.get(key, default)

    tuner = pick("tuner", "tuner", "hyperband")
    if tuner not in TUNERS:
        raise UserError(f"Unknown tuner '{tuner}'; expected one of: {', '.join(TUNERS)}.")
    approach = validate(config)
    if config.train.budget.kind != "epochs":
        raise UserError(
            f"mtl tune sizes its trials in epochs (--max-epochs), so it refuses train.budget.kind={config.train.budget.kind}; "
            "compare the searched configs under a budget with mtl compare --budget."
        )
    objective = pick("objective", "objective", approach.default_objective)
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
        max_trials, factor = int(DEFAULT_MAX_TRIALS if max_trials is None else max_trials), None  # 0 is refused below
    if not isinstance(max_epochs, int) or max_epochs < 1 or (max_trials is not None and max_trials < 1):
        raise UserError("--max-epochs and --max-trials must be positive whole numbers.")

    given = {**(search.get("space") or {}), **_space_overrides(request)}
    space = {**default_space(approach, given, config), **given}
    check_space(approach, space, config)
    return SearchSettings(
        config.approach.type, tuner, objective, max_epochs, max_trials, factor, space, config.data.data_dir, config.to_dict()
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
    """Make the folder `directory` hold a search with `settings`: new, or one made with the same settings to resume."""
    path = directory / SETTINGS_FILE
    wanted = settings.to_json()
    if overwrite and worker:
        raise UserError("--overwrite is for a local search or the chief, never for a worker.")
    if path.is_file():
        found = json.loads(path.read_text())
        if found == wanted and not overwrite:
            return
        if not overwrite and renamed(found.get("space") or {}):
            raise UserError(
                f"Search directory '{directory}' holds a search from before its hyperparameters were renamed "
                f"({renamed(found['space'])}), which cannot be resumed; pass --overwrite to start afresh or choose another --directory."
            )
        if not overwrite:
            raise UserError(
                f"Search directory '{directory}' holds a search with other settings "
                f"({_first_difference(found, wanted)}); pass --overwrite to start afresh or choose another --directory."
            )
        for entry in _our_entries(directory):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    elif directory.is_dir() and any(entry.name != LOCK_FILE for entry in directory.iterdir()) and not worker:
        raise UserError(f"Folder '{directory}' is not empty and holds no {SETTINGS_FILE}; choose another --directory.")
    directory.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{SETTINGS_FILE}.{os.getpid()}")
    temporary.write_text(json.dumps(wanted, indent=2) + "\n")
    os.replace(temporary, path)  # workers sharing the directory never read half a file


@contextlib.contextmanager
def distributed_role(request: TuneRequest):
    """Keras Tuner's environment for --chief / --worker ID during the search; yields the tuner id or None.

    Without either option, KERASTUNER_* variables already set (Keras Tuner's own way) still apply.
    """
    names = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")
    saved = {name: os.environ.get(name) for name in names}
    chief, worker = request.chief, request.worker
    try:
        if chief or worker:
            if worker and "chief" in worker:
                raise UserError(f"Worker ID '{worker}' contains 'chief', which Keras Tuner reserves for the chief.")
            os.environ["KERASTUNER_TUNER_ID"] = "chief" if chief else worker
            os.environ["KERASTUNER_ORACLE_IP"] = request.oracle_ip or saved["KERASTUNER_ORACLE_IP"] or "127.0.0.1"
            os.environ["KERASTUNER_ORACLE_PORT"] = str(request.oracle_port or saved["KERASTUNER_ORACLE_PORT"] or 8000)
        elif request.oracle_ip or request.oracle_port:
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


def needs_teachers(approach: Approach, config: ExperimentConfig, settings: SearchSettings) -> bool:
    """Whether any trial of the search can need the cross-labelled images."""
    return any(approach.needs_teachers(choice) for choice in choice_configs(approach, settings.space, config))


def cross_labels_for_trials(config: ExperimentConfig, directory: Path, data: ExperimentData, worker: str | None) -> Path:
    """The training images labelled by the teachers, made once (per worker) and read by every trial.

    Teachers come from options.teachers, else are trained (base config) into the search directory.
    """
    if worker and not config.options.teachers:
        raise UserError(
            "A distributed search with pseudo-labels needs the same teachers on every worker: "
            "pass --set options.teachers=RUN_DIR (a separate run)."
        )
    return cross_labelled_images(config, directory, data, f"{MERGED_DIR}-{worker}" if worker else MERGED_DIR)


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


def run_tuning(request: TuneRequest, config: ExperimentConfig, search: dict | None = None) -> dict | None:
    """Run (or resume, or serve, or work for) a search; returns the best trial's summary, None on a worker."""
    settings = resolve_settings(request, config, search or {})
    approach = validate(config)
    directory = Path(request.directory) if request.directory else run_directory(
        request.runs_dir, request.name or f"tune-{config.approach.type}")
    with contextlib.ExitStack() as stack, distributed_role(request) as tuner_id:
        chief = tuner_id is not None and "chief" in tuner_id
        worker = tuner_id if tuner_id is not None and not chief else None
        data = ExperimentData.load(config.data, config.train.seed)  # checks the data first
        if directory.exists() and not directory.is_dir():
            raise UserError(f"'{directory}' is a file; --directory needs a folder.")
        # One search process per directory; workers share the chief's, which holds it for them.
        stack.enter_context(run_lock(directory, "Search directory") if worker is None else contextlib.nullcontext())
        claim_directory(directory, settings, request.overwrite, worker is not None)
        done = len(list((directory / PROJECT).glob("trial_*/trial.json")))
        print(f"{'Resuming' if done else 'Starting'} the {settings.tuner} search in {directory}.", flush=True)
        merged_dir = None
        if needs_teachers(approach, config, settings) and not chief:  # the chief only hands out trials
            merged_dir = cross_labels_for_trials(config, directory, data, worker)
            forget_custom_gradients()  # the teachers' training graphs, as after every trial
        if worker:
            set_tuner_worker_timeout(WORKER_TIMEOUT_SECONDS)
        hypermodel = ApproachHyperModel(approach, config, settings.space, data, merged_dir)
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
        return report(tuner.oracle, approach, settings, config, directory)  # best_config.json: still under the lock


