"""Training augmentation: independent per-image draws, reproducible seeds, and each change doing what it says.

Images are drawn by the tests (a bright square on a dark face-sized frame), so every expected
output can be worked out by hand.
"""

import itertools
import math

import numpy as np
import pytest
import tensorflow as tf

from mtl.config import AugmentConfig
from mtl.data.pipeline import Augmenter, augment, draw_augmentation, lower_resolution, training_batches

SIZE = 64
NONE = AugmentConfig(
    flip=False, rotation=0, zoom=(0, 0), translation=0, contrast=0, brightness=0, grayscale_probability=0
)


def only(**changes) -> AugmentConfig:
    """No augmentation except `changes`."""
    return AugmentConfig(**{**NONE.__dict__, **changes})


def square_images(count: int, top=16, left=8, side=16) -> tf.Tensor:
    """Dark colour frames with a bright square, off-centre so that flips and zooms move it."""
    rng = np.random.default_rng(0)
    images = np.broadcast_to(rng.uniform(20, 60, (count, 1, 1, 3)), (count, SIZE, SIZE, 3)).copy()
    images[:, top : top + side, left : left + side] = (230, 180, 120)
    return tf.constant(images, tf.float32)


def bright(images) -> np.ndarray:
    return np.asarray(images)[..., 0] > 150


def centroid(mask: np.ndarray) -> np.ndarray:
    rows, columns = np.nonzero(mask)
    return np.array([rows.mean(), columns.mean()])


def draws(config: AugmentConfig, count=600, seed=(3, 4)) -> dict[str, np.ndarray]:
    parameters = draw_augmentation(config, count, tf.constant(seed, tf.int64))
    return {name: value.numpy().astype(np.float64) for name, value in parameters.items()}


def test_every_pair_of_parameters_is_uncorrelated_over_a_batch():
    parameters = draws(AugmentConfig(low_resolution=0.5))
    parameters["angle_is_negative"] = (parameters["angle"] < 0).astype(np.float64)

    for first, second in itertools.combinations(sorted(parameters), 2):
        if {first, second} == {"angle", "angle_is_negative"}:
            continue
        correlation = np.corrcoef(parameters[first], parameters[second])[0, 1]
        assert abs(correlation) < 0.2, f"{first} and {second} correlate: {correlation:.2f}"


def test_each_parameter_stays_in_its_configured_range_and_varies_between_images():
    config = AugmentConfig(rotation=0.05, zoom=(-0.1, 0.5), translation=0.1, contrast=0.2, brightness=0.2,
                           low_resolution=0.3)
    parameters = draws(config)

    assert np.abs(parameters["angle"]).max() <= 0.05 * 2 * math.pi
    assert 0.9 <= parameters["zoom"].min() and parameters["zoom"].max() <= 1.5
    assert np.abs(parameters["shift_x"]).max() <= 0.1 and np.abs(parameters["shift_y"]).max() <= 0.1
    assert 0.8 <= parameters["contrast"].min() and parameters["contrast"].max() <= 1.2
    assert np.abs(parameters["brightness"]).max() <= 0.2 * 255
    assert 0.4 < parameters["flip"].mean() < 0.6 and 0.4 < parameters["grey"].mean() < 0.6
    assert all(np.std(values) > 0 for values in parameters.values())


def test_the_same_seed_and_batch_give_the_same_images_and_another_seed_or_batch_does_not():
    images = square_images(8)

    first = Augmenter(AugmentConfig(), seed=1)(images, batch_index=5).numpy()

    assert np.array_equal(Augmenter(AugmentConfig(), seed=1)(images, batch_index=5).numpy(), first)
    assert not np.allclose(Augmenter(AugmentConfig(), seed=2)(images, batch_index=5).numpy(), first)
    assert not np.allclose(Augmenter(AugmentConfig(), seed=1)(images, batch_index=6).numpy(), first)


def test_calls_without_a_batch_index_differ_each_time_and_repeat_for_the_same_seed():
    images = square_images(8)
    one, same = Augmenter(AugmentConfig(), seed=1), Augmenter(AugmentConfig(), seed=1)

    first, second = one(images).numpy(), one(images).numpy()

    assert not np.allclose(first, second)
    assert np.array_equal(same(images).numpy(), first)


def test_zero_strengths_leave_images_unchanged():
    images = square_images(4)

    assert np.allclose(Augmenter(NONE, seed=1)(images).numpy(), images.numpy(), atol=1e-3)


def test_flip_mirrors_the_chosen_images_and_leaves_the_others():
    images = square_images(32)
    parameters = draw_augmentation(only(flip=True), 32, tf.constant([1, 1], tf.int64))

    flipped = augment(images, parameters).numpy()

    chosen = parameters["flip"].numpy()
    assert 0 < chosen.sum() < 32
    assert np.allclose(flipped[chosen], images.numpy()[chosen][:, :, ::-1], atol=1e-3)
    assert np.allclose(flipped[~chosen], images.numpy()[~chosen], atol=1e-3)


def test_zooming_out_shrinks_the_face_towards_the_centre_and_zooming_in_grows_it():
    images = square_images(1)
    centre = np.array([(SIZE - 1) / 2, (SIZE - 1) / 2])
    before = bright(images)[0]

    out = bright(Augmenter(only(zoom=(0.5, 0.5)), seed=1)(images))[0]
    within = bright(Augmenter(only(zoom=(-0.1, -0.1)), seed=1)(images))[0]

    assert out.sum() == pytest.approx(before.sum() / 1.5**2, rel=0.15)
    assert within.sum() == pytest.approx(before.sum() / 0.9**2, rel=0.15)
    assert np.allclose(centroid(out) - centre, (centroid(before) - centre) / 1.5, atol=1.0)


def test_shift_moves_the_face_by_the_drawn_fraction_of_the_size():
    images = square_images(1)
    parameters = draw_augmentation(only(translation=0.1), 1, tf.constant([5, 6], tf.int64))

    moved = centroid(bright(augment(images, parameters))[0]) - centroid(bright(images)[0])

    expected = [parameters["shift_y"].numpy()[0] * SIZE, parameters["shift_x"].numpy()[0] * SIZE]
    assert np.allclose(moved, expected, atol=1.0)


def test_strong_photometric_changes_stay_within_the_pixel_range():
    images = square_images(64)

    changed = Augmenter(only(contrast=0.9, brightness=0.9), seed=1)(images).numpy()

    assert changed.min() == 0 and changed.max() == 255
    assert not np.allclose(changed, images.numpy())


def test_greying_turns_exactly_the_chosen_images_grey():
    images = square_images(32)
    parameters = draw_augmentation(only(grayscale_probability=0.5), 32, tf.constant([7, 7], tf.int64))

    result = augment(images, parameters).numpy()

    spread = result.max(axis=-1) - result.min(axis=-1)
    grey = np.all(spread < 1e-3, axis=(1, 2))
    assert np.array_equal(grey, parameters["grey"].numpy())
    assert 0 < grey.sum() < 32


def test_training_batches_are_augmented_reproducibly_with_their_targets():
    images = tf.cast(square_images(32), tf.uint8)
    examples = tf.data.Dataset.from_tensor_slices((images, {"gender": tf.zeros(32, tf.int32)}))

    def first_batches(augmenter):
        batches = training_batches(examples, 16, augmenter, lambda labels, predictions: (labels, predictions))
        return [(batch_images.numpy(), targets["gender"].numpy()) for batch_images, targets, _ in batches]

    augmented = first_batches(Augmenter(AugmentConfig(), seed=3))

    assert [batch.shape for batch, _ in augmented] == [(16, SIZE, SIZE, 3)] * 2
    assert not np.allclose(augmented[0][0], images.numpy()[:16])
    again = first_batches(Augmenter(AugmentConfig(), seed=3))
    assert all(np.array_equal(first, second) for (first, _), (second, _) in zip(again, augmented))
    assert np.array_equal(first_batches(None)[0][0], images.numpy()[:16].astype(np.float32))


def test_low_resolution_blurs_exactly_the_chosen_images_and_keeps_their_size():
    config = AugmentConfig(flip=False, rotation=0, zoom=(0, 0), translation=0, contrast=0, brightness=0,
                           grayscale_probability=0, low_resolution=0.5)
    images = tf.constant(np.random.default_rng(0).uniform(0, 255, (32, SIZE, SIZE, 3)), tf.float32)
    parameters = draw_augmentation(config, 32, tf.constant((5, 6), tf.int64))

    lowered = lower_resolution(augment(images, parameters), parameters).numpy()

    assert lowered.shape == images.shape
    changed = np.abs(lowered - images.numpy()).max(axis=(1, 2, 3)) > 1
    np.testing.assert_array_equal(changed, parameters["low_resolution"].numpy())
    assert 0 < changed.sum() < 32
