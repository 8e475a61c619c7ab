"""What a finished search reports: a table of the best trials and the best one as an experiment config."""

from pathlib import Path

import keras_tuner as kt

from mtl.approaches.base import Approach
from mtl.config import ExperimentConfig
from mtl.errors import UserError
from mtl.runs import write_json
from mtl.tuning.space import config_for, declare_space, possible_values

BEST_CONFIG_FILE = "best_config.json"
TENSORBOARD_DIR = "tensorboard"  # inside the search directory: one run per trial


def trial_epochs(trial, settings) -> int:
    return int(trial.hyperparameters.values.get("tuner/epochs", settings.max_epochs))


def best_config(trial, approach: Approach, settings, base: ExperimentConfig) -> ExperimentConfig:
    """The trial's config, its stages trained for the trial's epochs."""
    config = config_for(trial.hyperparameters.copy(), approach, settings.space, base)
    return approach.with_stage_epochs(config, trial_epochs(trial, settings))


def _format(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def best_trials_table(trials, approach: Approach, settings) -> str:
    """A Markdown table of `trials`: id, objective, epochs and each searched hyperparameter."""
    space = kt.HyperParameters()
    declare_space(space, approach, settings.space)
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


def report(oracle, approach: Approach, settings, base: ExperimentConfig, directory: Path, count: int = 5) -> dict:
    """Print the best trials and write the best one's config; returns a summary of the search."""
    trials = list(oracle.trials.values())
    best = oracle.get_best_trials(count)
    statuses = sorted({trial.status for trial in trials})
    counts = ", ".join(f"{sum(trial.status == status for trial in trials)} {status.lower()}" for status in statuses)
    print(f"\nSearch in {directory}: {len(trials)} trials ({counts}); best by {settings.objective}:\n", flush=True)
    if not best:
        raise UserError(
            f"No trial of the search in '{directory}' completed; see the trial.json files under {directory / 'trials'}."
        )
    print(best_trials_table(best, approach, settings))
    path = directory / BEST_CONFIG_FILE
    write_json(path, best_config(best[0], approach, settings, base).to_dict())
    print(f"\nBest hyperparameters written to {path}; train them with: mtl train {base.approach.type} --config {path}")
    print(f"TensorBoard (HParams tab lists every trial): tensorboard --logdir {directory / TENSORBOARD_DIR}")
    return {
        "best_trial": best[0].trial_id,
        "best_score": best[0].score,
        "best_config": str(path),
        "trials": {trial.trial_id: trial.status for trial in trials},
    }


