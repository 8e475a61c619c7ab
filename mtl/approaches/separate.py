"""The baseline: a gender model trained on gender faces, an emotion model on emotion faces.

At prediction time the four classes are the product of the two models' probabilities.

The hyperparameter search fits both models at once (`network`, `training_batches`): one Keras
model holding the two networks side by side, with no shared parameter, on mixed batches whose
losses are masked, so each network still learns only from its own dataset's labels.
"""

from pathlib import Path

import keras
import tensorflow as tf

from mtl import labels, training
from mtl.approaches import common
from mtl.config import ExperimentConfig
from mtl.data.pipeline import ExperimentData, evaluation_batches
from mtl.models.build import build_network, image_input, inference_model
from mtl.runs import MODEL_FILE
from mtl.tasks import CLASSES, EMOTION, GENDER, TASKS


def task_network(task: str, config: ExperimentConfig) -> keras.Model:
    return build_network(config.model, config.data, {task: len(CLASSES[task])}, name=f"{task}_model")


def task_batches(task: str, config: ExperimentConfig, data: ExperimentData) -> tuple[tf.data.Dataset, int]:
    """Training batches of one task's own dataset (true labels only) and the steps of one epoch."""
    train_source = data.gender_train if task == GENDER else data.emotion_train
    examples = common.shuffled_forever(data.images(train_source), config.train.seed)
    batches = common.batches_with_targets(
        examples, config, lambda batch_labels, _: _only(task, *labels.task_targets(batch_labels, None, config.options))
    )
    return batches, common.steps_for(len(train_source), config)


def train_task_model(task: str, config: ExperimentConfig, data: ExperimentData, run_dir: Path) -> keras.Model:
    """One single-task network, trained on its own dataset's true labels, saved as `{task}_model.keras`."""
    train_source = data.gender_train if task == GENDER else data.emotion_train
    validation_source = data.gender_validation if task == GENDER else data.emotion_validation
    network = task_network(task, config)
    train_batches, steps = task_batches(task, config, data)
    print(f"Training the {task} model on {len(train_source)} images.", flush=True)
    summary = common.fit_network(
        network,
        train_batches,
        evaluation_batches(data.images(validation_source), config.data.batch_size),
        config,
        config.train.epochs,
        steps,
        run_dir / "logs" / task,
    )
    network.save(run_dir / f"{task}_model.keras")
    training.write_json(run_dir / f"{task}_training.json", summary)
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


# ------------------------------------------------------------- for the hyperparameter search ---


def network(config: ExperimentConfig) -> keras.Model:
    """The gender and emotion networks side by side in one model: `{gender, emotion}` heads, nothing shared."""
    images = image_input(config.data)
    outputs = {task: task_network(task, config)(images)[task] for task in TASKS}
    return keras.Model(images, outputs, name="separate_models")


def combiner(config: ExperimentConfig) -> None:
    return None  # the plain sum: with no shared parameter, each network gets only its own loss's gradient


def training_batches(config: ExperimentConfig, data: ExperimentData, merged_dir=None) -> tuple[tf.data.Dataset, int]:
    """Mixed batches in the datasets' natural proportion, true labels only, missing task masked.

    An epoch visits about every training image of both datasets once, as an epoch of each
    model does in `train`; each network's batch is its dataset's share of `data.batch_size`.
    """
    sizes = {GENDER: len(data.gender_train), EMOTION: len(data.emotion_train)}
    examples = common.mixed_examples(
        data.images(data.gender_train),
        data.images(data.emotion_train),
        sizes[EMOTION] / (sizes[GENDER] + sizes[EMOTION]),
        config.train.seed,
    )
    batches = common.batches_with_targets(
        examples, config, lambda batch_labels, _: labels.task_targets(batch_labels, None, config.options)
    )
    return batches, common.steps_for(sum(sizes.values()), config)
