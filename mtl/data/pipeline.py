"""tf.data pipelines: the datasets of an experiment, split, cached, shuffled, augmented, batched.

Every element is `(image, labels)`: a uint8 [size, size, 3] image (float32 once batched for
training) and `{"gender": int32, "emotion": int32}` with -1 where the dataset has no label.
The test sets are only ever read for the final evaluation, never for training or selection.
"""

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import keras
import tensorflow as tf

from mtl.config import AugmentConfig, DataConfig
from mtl.data import sources
from mtl.errors import UserError
from mtl.tasks import EMOTION, GENDER

AUTOTUNE = tf.data.AUTOTUNE


def sample_data_dir() -> Path:
    """The small real-image sample shipped inside the package (same layout as the full data)."""
    return Path(str(resources.files("mtl") / "sample_data"))


def data_root(config: DataConfig) -> Path:
    root = Path(config.data_dir) if config.data_dir else sample_data_dir()
    if not root.is_dir():
        raise UserError(f"Data folder '{root}' does not exist; pass --data-dir pointing at the datasets.")
    return root


@dataclass
class ExperimentData:
    """The sources of one experiment, split once with the run's seed."""

    gender_train: sources.ImageSource
    gender_validation: sources.ImageSource
    emotion_train: sources.ImageSource
    emotion_validation: sources.ImageSource
    config: DataConfig
    # Each source is decoded once per process: the teachers, cross-labelling, the student and
    # every trial of a search read the same in-memory cache.
    _decoded: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def load(cls, config: DataConfig, seed: int) -> "ExperimentData":
        root = data_root(config)
        gender = sources.task_folder(root / config.gender_train, GENDER)
        emotion = sources.task_folder(root / config.emotion_train, EMOTION)
        gender_train, gender_validation = sources.stratified_split(gender, config.validation_fraction, seed)
        emotion_train, emotion_validation = sources.stratified_split(emotion, config.validation_fraction, seed)
        return cls(gender_train, gender_validation, emotion_train, emotion_validation, config)

    def images(self, source) -> tf.data.Dataset:
        """Decoded, resized, cached (uint8) examples of one source, in a fixed order."""
        if id(source) not in self._decoded:
            self._decoded[id(source)] = source.dataset(self.config.image_size).cache()
        return self._decoded[id(source)]

    def validation(self) -> tf.data.Dataset:
        """Both validation splits, batched: the data that selects models and tunes hyperparameters."""
        both = self.images(self.gender_validation).concatenate(self.images(self.emotion_validation))
        return evaluation_batches(both, self.config.batch_size)


def test_sets(config: DataConfig) -> dict[str, sources.ImageSource | sources.ArraySource]:
    """The held-out test sets named in the config, by name; the joint folder only when given."""
    root = data_root(config)
    tests = {
        "gender_test": sources.task_folder(root / config.gender_test, GENDER),
        "emotion_test": sources.task_folder(root / config.emotion_test, EMOTION),
        "happy_house": sources.happy_house(root / config.happy_house_test),
    }
    if config.joint_test:
        tests["joint_test"] = sources.joint_folder(Path(config.joint_test))
    return tests


def evaluation_batches(examples: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    return examples.map(_to_float).batch(batch_size).prefetch(AUTOTUNE)


def _to_float(image, labels):
    return tf.cast(image, tf.float32), labels


class Augmenter:
    """Random changes to a float batch in [0, 255]: geometry, photometry and colour-to-grey."""

    def __init__(self, config: AugmentConfig, seed: int):
        layers = []
        if config.flip:
            layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
        if config.rotation:
            layers.append(keras.layers.RandomRotation(config.rotation, fill_mode="nearest", seed=seed))
        if config.zoom and any(config.zoom):
            low, high = config.zoom
            layers.append(keras.layers.RandomZoom((low, high), fill_mode="nearest", seed=seed))
        if config.translation:
            layers.append(
                keras.layers.RandomTranslation(config.translation, config.translation, fill_mode="nearest", seed=seed)
            )
        if config.contrast:
            layers.append(keras.layers.RandomContrast(config.contrast, value_range=(0, 255), seed=seed))
        if config.brightness:
            layers.append(keras.layers.RandomBrightness(config.brightness, value_range=(0, 255), seed=seed))
        self.geometry = keras.Sequential(layers) if layers else None
        self.grayscale_probability = config.grayscale_probability

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        if self.geometry is not None:
            images = self.geometry(images, training=True)
        if self.grayscale_probability:
            grey = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(images))
            chosen = tf.random.uniform([tf.shape(images)[0], 1, 1, 1]) < self.grayscale_probability
            images = tf.where(chosen, grey, images)
        return tf.clip_by_value(images, 0.0, 255.0)
