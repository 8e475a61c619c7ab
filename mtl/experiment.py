"""One experiment end to end: a new run directory, training, evaluation, metrics on disk."""

import time
from pathlib import Path

from mtl import approaches, labels
from mtl.approaches import common
from mtl.config import ExperimentConfig
from mtl.data.pipeline import ExperimentData
from mtl.errors import UserError
from mtl.evaluate import evaluate_run, write_metrics
from mtl.losses import loss_combiner
from mtl.models.backbones import BACKBONES
from mtl.runs import METRICS_FILE, create_run
from mtl.training import make_optimizer


def validate(config: ExperimentConfig) -> None:
    """Reject an unknown option now, before any folder is made or any model trained."""
    approaches.get(config.approach)
    if config.model.backbone not in BACKBONES:
        raise UserError(f"Unknown backbone '{config.model.backbone}'; expected one of: {', '.join(BACKBONES)}.")
    if config.data.color not in ("rgb", "gray"):
        raise UserError(f"Unknown colour mode '{config.data.color}'; expected 'rgb' or 'gray'.")
    labels.check(config.options)
    loss_combiner(config.options, ())
    make_optimizer(config.train, steps_per_epoch=1, epochs=1)
    if config.approach == "crosslabel":
        approaches.crosslabel.check(config)


def train_and_evaluate(config: ExperimentConfig, run_dir: Path, evaluate: bool = True) -> dict:
    """Train `config.approach` into a new `run_dir`, then score it on the test sets.

    Returns the metrics (with `training_seconds` added); writes config.json, model.keras,
    TensorBoard logs and metrics.json into the run directory.
    """
    validate(config)
    approach = approaches.get(config.approach)
    data = ExperimentData.load(config.data, config.train.seed)  # validates the data before a run is made
    run_dir = create_run(run_dir, config)
    common.seed_everything(config.train.seed)
    start = time.perf_counter()
    approach.train(config, run_dir, data)
    training_seconds = time.perf_counter() - start
    if not evaluate:
        return {"run": str(run_dir), "training_seconds": training_seconds}
    metrics = evaluate_run(run_dir, artifacts_dir=run_dir / "evaluation")
    metrics["training_seconds"] = round(training_seconds, 1)
    write_metrics(metrics, run_dir / METRICS_FILE)
    return metrics
