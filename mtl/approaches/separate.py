"""The baseline: a gender model trained on gender faces, an emotion model on emotion faces.

At prediction time the four classes are the product of the two models' probabilities.
"""

from pathlib import Path

import keras

from mtl import labels
from mtl.approaches import common
from mtl.config import ExperimentConfig
from mtl.data.pipeline import ExperimentData, evaluation_batches
from mtl.models.build import build_network, inference_model
from mtl.runs import MODEL_FILE
from mtl.tasks import CLASSES, EMOTION, GENDER


def train_task_model(task: str, config: ExperimentConfig, data: ExperimentData, run_dir: Path) -> keras.Model:
    """One single-task network, trained on its own dataset's true labels, saved as `{task}_model.keras`."""
    train_source = data.gender_train if task == GENDER else data.emotion_train
    validation_source = data.gender_validation if task == GENDER else data.emotion_validation
    network = build_network(config.model, config.data, {task: len(CLASSES[task])}, name=f"{task}_model")
    examples = common.shuffled_forever(data.images(train_source), config.train.seed)
    train_batches = common.batches_with_targets(
        examples, config, lambda batch_labels, _: _only(task, *labels.task_targets(batch_labels, None, config.options))
    )
    print(f"Training the {task} model on {len(train_source)} images.", flush=True)
    summary = common.fit_network(
        network,
        train_batches,
        evaluation_batches(data.images(validation_source), config.data.batch_size),
        config,
        config.train.epochs,
        common.steps_for(len(train_source), config),
        run_dir / "logs" / task,
    )
    network.save(run_dir / f"{task}_model.keras")
    common.write_summary(run_dir / f"{task}_training.json", summary)
    return network


def _only(task, targets, weights):
    return {task: targets[task]}, {task: weights[task]}


def train_models(config: ExperimentConfig, run_dir: Path, data: ExperimentData) -> keras.Model:
    """Train both models into `run_dir` and save their combined inference model."""
    run_dir.mkdir(parents=True, exist_ok=True)
    gender = train_task_model(GENDER, config, data, run_dir)
    emotion = train_task_model(EMOTION, config, data, run_dir)
    model = inference_model([gender, emotion], config.data)
    model.save(run_dir / MODEL_FILE)
    return model


def train(config: ExperimentConfig, run_dir: Path, data: ExperimentData) -> keras.Model:
    return train_models(config, Path(run_dir), data)
