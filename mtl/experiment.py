"""One experiment end to end: a new run directory, teachers if needed, training, evaluation, metrics."""

import time
from pathlib import Path

import keras

from mtl import approaches, pseudo_labels, training
from mtl.approaches.base import Approach
from mtl.config import ExperimentConfig, merge
from mtl.data.pipeline import ExperimentData
from mtl.evaluate import evaluate_run, write_metrics
from mtl.models.build import inference_model
from mtl.runs import METRICS_FILE, MODEL_FILE, create_run

TEACHERS_DIR = "teachers"  # inside a run or search directory, when no options.teachers is given


def seed_everything(seed: int) -> None:
    keras.utils.set_random_seed(seed)


def validate(config: ExperimentConfig) -> Approach:
    """The config's approach, once it has accepted the config: before any folder is made or model trained."""
    approach = approaches.get(config.approach)
    approach.check(config)
    return approach


def train_approach(approach: Approach, config: ExperimentConfig, run_dir: Path, data: ExperimentData) -> keras.Model:
    """Fit the approach's stages in order into `run_dir`; saves each network and the inference model."""
    run_dir = Path(run_dir)
    merged_dir = cross_labelled_images(config, run_dir, data) if approach.needs_teachers(config) else None
    stages = approach.stages(config)
    for stage in stages:
        summary = approach.fit_stage(
            config, stage, data, merged_dir, run_dir / "logs" / stage.name, approach.epochs(config, stage.name)
        )
        training.write_json(run_dir / f"{stage.name}_training.json", summary)
        stage.network.save(run_dir / f"{stage.network.name}.keras")
    model = inference_model([stage.network for stage in stages], config.data)
    model.save(run_dir / MODEL_FILE)
    return model


def teachers(config: ExperimentConfig, directory: Path, data: ExperimentData) -> Path:
    """A run of the separate models that cross-label: `options.teachers`, or one trained into `directory/teachers`.

    Teachers left finished by an earlier, interrupted run in `directory` are reused.
    """
    if config.options.teachers:
        return Path(config.options.teachers)
    run_dir = Path(directory) / TEACHERS_DIR
    if not (run_dir / MODEL_FILE).is_file():
        print("Training the teachers first.", flush=True)
        teacher_approach = approaches.teacher()
        teacher_config = merge(config, {"approach": teacher_approach.name})
        run_dir.mkdir(parents=True, exist_ok=True)
        train_approach(teacher_approach, teacher_config, run_dir, data)
    return run_dir


def cross_labelled_images(config: ExperimentConfig, directory: Path, data: ExperimentData, name: str = pseudo_labels.MERGED_DIR) -> Path:
    """Both training splits labelled by the teachers into `directory/name` (made once, then reused)."""
    merged_dir = Path(directory) / name
    if (merged_dir / pseudo_labels.SUMMARY_FILE).is_file():
        print(f"Reusing the cross-labelled images in {merged_dir}.", flush=True)
        return merged_dir
    teacher = pseudo_labels.load_teacher(teachers(config, directory, data))
    summary = pseudo_labels.cross_label(teacher, data, merged_dir)
    print(f"Cross-labelled {summary['examples']} images into {merged_dir}.", flush=True)
    return merged_dir


def train_and_evaluate(config: ExperimentConfig, run_dir: Path, evaluate: bool = True) -> dict:
    """Train `config.approach` into a new `run_dir`, then score it on the test sets.

    Returns the metrics (with `training_seconds` added); writes config.json, model.keras,
    TensorBoard logs and metrics.json into the run directory.
    """
    approach = validate(config)
    data = ExperimentData.load(config.data, config.train.seed)  # validates the data before a run is made
    run_dir = create_run(run_dir, config)
    seed_everything(config.train.seed)
    start = time.perf_counter()
    train_approach(approach, config, run_dir, data)
    training_seconds = time.perf_counter() - start
    if not evaluate:
        return {"run": str(run_dir), "training_seconds": training_seconds}
    metrics = evaluate_run(run_dir, artifacts_dir=run_dir / "evaluation")
    metrics["training_seconds"] = round(training_seconds, 1)
    write_metrics(metrics, run_dir / METRICS_FILE)
    return metrics
