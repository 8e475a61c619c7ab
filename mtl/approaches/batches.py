"""Training batches the approaches share: shuffled endless streams, mixed datasets, targets attached."""

import math

import tensorflow as tf

from mtl.config import ExperimentConfig
from mtl.data.pipeline import AUTOTUNE, Augmenter

SHUFFLE_BUFFER = 30_000


def batches_with_targets(examples: tf.data.Dataset, config: ExperimentConfig, to_targets) -> tf.data.Dataset:
    """Batched, augmented float images with `to_targets(labels, predictions) -> (targets, weights)`.

    `examples` yields (image, labels) or (image, labels, predictions), already shuffled and repeated.
    A batch's augmentation depends only on the seed and the batch's position in the stream, so the
    stream is the same however the parallel maps are scheduled, and a resumed fit can skip to where it was.
    """
    augmenter = Augmenter(config.data.augment, config.train.seed) if config.data.augment else None
    smoothing = config.train.label_smoothing

    def finish(batch_index, batch):
        images, labels, *predictions = batch
        images = tf.cast(images, tf.float32)
        if augmenter is not None:
            images = augmenter(images, batch_index)
        targets, weights = to_targets(labels, predictions[0] if predictions else None)
        if smoothing:
            targets = {head: target * (1 - smoothing) + smoothing / target.shape[-1] for head, target in targets.items()}
        return images, targets, weights

    batched = examples.batch(config.data.batch_size).enumerate()
    return batched.map(finish, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def shuffled_forever(examples: tf.data.Dataset, seed: int) -> tf.data.Dataset:
    return examples.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True).repeat()


def mixed_examples(
    gender: tf.data.Dataset, emotion: tf.data.Dataset, emotion_proportion: float, seed: int
) -> tf.data.Dataset:
    """Endless stream drawing from the two datasets, a share `emotion_proportion` from the emotion one."""
    return tf.data.Dataset.sample_from_datasets(
        [shuffled_forever(gender, seed), shuffled_forever(emotion, seed + 1)],
        weights=[1 - emotion_proportion, emotion_proportion],
        seed=seed,
    )


def steps_for(examples: int, config: ExperimentConfig) -> int:
    return max(1, math.ceil(examples / config.data.batch_size))
