"""Steps the approaches share: seeding, batching with targets, fitting, teachers."""

import logging
import math
import sys
from pathlib import Path

import keras
import tensorflow as tf

from mtl import training
from mtl.config import ExperimentConfig
from mtl.data.pipeline import AUTOTUNE, Augmenter, ExperimentData
from mtl.errors import UserError
from mtl.models.build import inference_model
from mtl.runs import MODEL_FILE

log = logging.getLogger(__name__)

SHUFFLE_BUFFER = 30_000


def seed_everything(seed: int) -> None:
    keras.utils.set_random_seed(seed)


def batches_with_targets(examples: tf.data.Dataset, config: ExperimentConfig, to_targets) -> tf.data.Dataset:
    """Batched, augmented float images with `to_targets(labels, predictions) -> (targets, weights)`.

    `examples` yields (image, labels) or (image, labels, predictions), already shuffled and repeated.
    """
    augmenter = Augmenter(config.data.augment, config.train.seed) if config.data.augment else None

    def finish(images, labels, predictions=None):
        images = tf.cast(images, tf.float32)
        if augmenter is not None:
            images = augmenter(images)
        targets, weights = to_targets(labels, predictions)
        return images, targets, weights

    return examples.batch(config.data.batch_size).map(finish, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def shuffled_forever(examples: tf.data.Dataset, seed: int) -> tf.data.Dataset:
    return examples.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True).repeat()


def mixed_examples(
    gender: tf.data.Dataset, emotion: tf.data.Dataset, emotion_proportion: float, seed: int
) -> tf.data.Dataset:
    """Endless stream drawing from the two datasets, a share `emotion_proportion` from the emotion one."""
    if not 0 < emotion_proportion < 1:
        raise UserError(f"emotion_proportion must be between 0 and 1, got {emotion_proportion}.")
    return tf.data.Dataset.sample_from_datasets(
        [shuffled_forever(gender, seed), shuffled_forever(emotion, seed + 1)],
        weights=[1 - emotion_proportion, emotion_proportion],
        seed=seed,
    )


def steps_for(examples: int, config: ExperimentConfig) -> int:
    return max(1, math.ceil(examples / config.data.batch_size))


def fit_network(
    network: keras.Model,
    train_batches: tf.data.Dataset,
    validation: tf.data.Dataset,
    config: ExperimentConfig,
    epochs: int,
    steps_per_epoch: int,
    log_dir: Path,
    combiner=None,
    extra_callbacks=(),
) -> dict:
    """Fit `network` (restoring its best validation epoch) and return the training summary."""
    trainer = training.Trainer(network, combiner)
    verbose = 1 if sys.stdout.isatty() else 2
    return training.fit(
        trainer,
        train_batches,
        validation,
        config.train,
        epochs,
        steps_per_epoch,
        log_dir,
        extra_callbacks=extra_callbacks,
        verbose=verbose,
    )


def load_teacher(config: ExperimentConfig, run_dir: Path, data: ExperimentData) -> keras.Model:
    """The separate approach's inference model: from `options.teachers` if given, else trained here."""
    from mtl.approaches import separate

    teachers = config.options.teachers
    if teachers:
        path = Path(teachers) / MODEL_FILE
        if not path.is_file():
            raise UserError(f"Teacher run '{teachers}' holds no {MODEL_FILE}; train the separate approach first.")
        log.info("Using the separate models of '%s' as teachers.", teachers)
        return keras.models.load_model(path)
    print("Training the teachers (the separate approach) first.", flush=True)
    return separate.train_models(config, Path(run_dir) / "teachers", data)


def save_network_and_inference_model(network: keras.Model, config: ExperimentConfig, run_dir: Path) -> keras.Model:
    """Save the trained network as `<its name>.keras` and the run's inference model as model.keras."""
    network.save(Path(run_dir) / f"{network.name}.keras")
    model = inference_model([network], config.data)
    model.save(Path(run_dir) / MODEL_FILE)
    return model
