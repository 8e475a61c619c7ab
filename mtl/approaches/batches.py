"""Training batches the approaches share: shuffled endless streams, mixed datasets, targets attached."""

import math

import tensorflow as tf

from pathlib import Path

from mtl.config import ExperimentConfig
from mtl.data.pipeline import Augmenter, ExperimentData, mixed_sources, shuffled_forever, training_batches
from mtl.data.sources import SOURCE
from mtl.pseudo_labels import read_merged
from mtl.tasks import GENDER


def batches_with_targets(
    examples: tf.data.Dataset, config: ExperimentConfig, to_targets, to_groups=None
) -> tf.data.Dataset:
    """Batched, augmented float images with `to_targets(labels, predictions) -> (targets, weights)`.

    `examples` yields (image, labels) or (image, labels, predictions), already shuffled and repeated.
    A batch's augmentation depends only on the seed and the batch's position in the stream, so a
    resumed fit can skip to where it was. With `train.label_smoothing`, that share of every
    target is spread evenly over its classes. With `to_groups(labels, predictions) -> {head: group ids}`
    (group-robust training, `mtl.groups`) a batch is (images, targets, weights, groups).
    """
    augmenter = Augmenter(config.data.augment, config.train.seed) if config.data.augment else None
    smoothing = config.train.label_smoothing

    def smoothed_targets(labels, predictions):
        targets, weights = to_targets(labels, predictions)
        targets = {head: target * (1 - smoothing) + smoothing / target.shape[-1] for head, target in targets.items()}
        return targets, weights

    head_targets = smoothed_targets if smoothing else to_targets
    if to_groups is None:
        return training_batches(examples, config.data.batch_size, augmenter, head_targets)

    def targets_and_groups(labels, predictions):
        return (*head_targets(labels, predictions), to_groups(labels, predictions))

    return training_batches(examples, config.data.batch_size, augmenter, targets_and_groups)


def mixed_examples(
    gender: tf.data.Dataset, emotion: tf.data.Dataset, emotion_proportion: float, seed: int
) -> tf.data.Dataset:
    """Endless stream drawing from the two datasets, a share `emotion_proportion` from the emotion one."""
    return mixed_streams(shuffled_forever(gender, seed), shuffled_forever(emotion, seed + 1), emotion_proportion, seed)


def mixed_streams(
    gender: tf.data.Dataset, emotion: tf.data.Dataset, emotion_proportion: float, seed: int
) -> tf.data.Dataset:
    """Endless stream drawing from two endless streams, a share `emotion_proportion` from the emotion one."""
    return tf.data.Dataset.sample_from_datasets([gender, emotion], weights=[1 - emotion_proportion, emotion_proportion], seed=seed)


def steps_for(examples: int, config: ExperimentConfig) -> int:
    return max(1, math.ceil(examples / config.data.batch_size))


def cross_labelled_examples(merged_dir: Path, task: str, data: ExperimentData, seed: int) -> tf.data.Dataset:
    """The endless stream of one task's cross-labelled training images, its sources mixed as the data's are."""
    train = data.gender_train if task == GENDER else data.emotion_train
    parts = [read_merged(merged_dir, source=task, source_id=index).cache() for index in range(data.num_sources(task))]
    sizes = [int((train.labels[SOURCE] == index).sum()) for index in range(len(parts))]
    return mixed_sources(parts, sizes, data.config.source_mixing, seed)
