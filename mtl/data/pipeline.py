"""tf.data pipelines: the datasets of an experiment, split, cached, shuffled, augmented, batched.

Every element is `(image, labels)`: a uint8 [size, size, 3] image (float32 once batched for
training) and `{"gender": int32, "emotion": int32}` with -1 where the dataset has no label.
The test sets are only ever read for the final evaluation, never for training or selection.
"""

import fcntl
import glob
import hashlib
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import tensorflow as tf

from mtl.config import AugmentConfig, DataConfig
from mtl.data import sources
from mtl.errors import UserError
from mtl.metrics import HAPPY_HOUSE, JOINT_TEST, task_test
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
    # With a cache, each source is decoded once per process: the teachers, cross-labelling, the student and
    # every trial of a search read the same in-memory cache.
    _decoded: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _parts: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def load(cls, config: DataConfig, seed: int) -> "ExperimentData":
        """Each task's training sources, merged and split into train and validation (stratified by class and source)."""
        root = data_root(config)
        cache_folder(config)
        if config.prepared:
            from mtl.data import prepared  # TensorFlow Datasets loads only for runs that read prepared records

            return cls(*prepared.training_splits(config, root, seed), config)
        gender = training_source(config.gender_train, root, GENDER)
        emotion = training_source(config.emotion_train, root, EMOTION)
        gender_train, gender_validation = sources.stratified_split(gender, config.validation_fraction, seed)
        emotion_train, emotion_validation = sources.stratified_split(emotion, config.validation_fraction, seed)
        return cls(gender_train, gender_validation, emotion_train, emotion_validation, config)

    def images(self, source) -> tf.data.Dataset:
        """Decoded, resized (uint8) examples of one source, in a fixed order, cached as `data.cache` says."""
        if id(source) not in self._decoded:
            self._decoded[id(source)] = cached(source.dataset(self.config.image_size), source, self.config)
        return self._decoded[id(source)]

    def num_sources(self, task: str) -> int:
        """How many training sources `task` has (an example's `labels["source"]` is below it)."""
        return len((self.gender_train if task == GENDER else self.emotion_train).source_names)

    def source_names(self, task: str) -> list[str]:
        """Short names of `task`'s training sources, in `labels["source"]` order: "gender_training",
        "utkface_train" (`sources.source_name`), no machine's path."""
        return [sources.source_name(spec) for spec in (self.config.gender_train if task == GENDER else self.config.emotion_train)]

    def training_examples(self, source: sources.ImageSource, seed: int) -> tf.data.Dataset:
        """An endless shuffled stream of a training split, its sources mixed as `data.source_mixing` says.

        One source is one shuffled stream, as before sources could be listed; several are drawn from
        with weights size ** source_mixing (1: in proportion to size, 0: equal shares).
        """
        if len(source.source_names) == 1:
            return shuffled_forever(self.images(source), seed)
        parts = self._parts.setdefault(id(source), split_by_source(source))
        return mixed_sources([self.images(part) for part in parts], [len(part) for part in parts], self.config.source_mixing, seed)

    def validation(self) -> tf.data.Dataset:
        """Both validation splits, batched: the data that selects models and tunes hyperparameters."""
        both = self.images(self.gender_validation).concatenate(self.images(self.emotion_validation))
        return evaluation_batches(both, self.config.batch_size)


SHUFFLE_BUFFER = 30_000


def shuffled_forever(examples: tf.data.Dataset, seed: int) -> tf.data.Dataset:
    return examples.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True).repeat()


def training_source(specs, root: Path, task: str) -> sources.ImageSource:
    """A task's training sources read and merged into one, each example labelled with its source's index."""
    parts = [sources.read_source(spec, root, task) for spec in specs]
    return sources.merged(parts, f"{task} training sources")


def split_by_source(source: sources.ImageSource) -> list[sources.ImageSource]:
    """One part per source of a merged source, in source order."""
    ids = source.labels[sources.SOURCE]
    return [
        source.subset(np.flatnonzero(ids == index), f"{source.name}[{name}]") for index, name in enumerate(source.source_names)
    ]


def source_weights(sizes: list[int], mixing: float) -> list[float]:
    """Sampling weights size ** mixing, normalised (Model Garden's proportional sampler with alpha = mixing)."""
    powered = [float(size) ** mixing for size in sizes]
    return [value / sum(powered) for value in powered]


def mixed_sources(parts: list[tf.data.Dataset], sizes: list[int], mixing: float, seed: int) -> tf.data.Dataset:
    """An endless stream drawing from each part (one per source) with weights size ** mixing."""
    if len(parts) == 1:
        return shuffled_forever(parts[0], seed)
    streams = [shuffled_forever(part, seed + index) for index, part in enumerate(parts)]
    return tf.data.Dataset.sample_from_datasets(streams, weights=source_weights(sizes, mixing), seed=seed)


def cached(examples: tf.data.Dataset, source, config: DataConfig) -> tf.data.Dataset:
    """`examples` cached in memory ("memory"), not at all ("none": decoded again every epoch), or in
    files under the folder `config.cache`, so a dataset larger than memory still trains."""
    if config.cache == "memory":
        return examples.cache()
    if config.cache == "none":
        return examples
    folder = cache_folder(config)
    # Named by the image size and the files, so a changed source or size never reads a stale cache.
    key = hashlib.sha256("\n".join([str(config.image_size), *source.paths]).encode()).hexdigest()[:16]
    prefix = folder / f"images-{key}"
    claim_file_cache(prefix)
    return examples.cache(str(prefix))


def cache_folder(config: DataConfig) -> Path | None:
    """The folder of a file cache, made if missing (None for "memory" and "none"), or a UserError when it
    cannot be made or written: `ExperimentData.load` asks first, so a refused cache leaves no run directory behind."""
    if config.cache in ("memory", "none"):
        return None
    folder = Path(config.cache)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        raise UserError(
            f"data.cache '{config.cache}' is not 'memory', 'none' or a folder that can be created."
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"data.cache '{config.cache}' is a folder this process cannot write; set another data.cache.")
    return folder


_CLAIMED: dict[Path, int] = {}  # cache prefix -> the descriptor whose lock this process holds while it lives


def claim_file_cache(prefix: Path) -> None:
    """Make sure this process may write the file cache `prefix`: what a dead writer left is removed.

    TensorFlow marks a cache in writing with a lockfile that a killed process leaves behind, and then
    refuses the cache for good. An advisory `flock`, which the system releases however the holder
    ends, tells a live writer (refused, naming it) from a dead one (its lockfile and partial shards removed).
    """
    if Path(f"{prefix}.index").exists() or prefix in _CLAIMED:
        return  # complete, or this process writes it already
    descriptor = os.open(prefix.with_name(f".{prefix.name}.writer"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(descriptor)
        raise UserError(f"data.cache '{prefix.parent}' is being written by process {holder}; "
                        "wait for it to finish, or set another data.cache.") from None
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    _CLAIMED[prefix] = descriptor
    for stale in prefix.parent.glob(f"{glob.escape(prefix.name)}_*"):  # TensorFlow's shards: PREFIX_0.lockfile, ...
        stale.unlink(missing_ok=True)


def test_set_names(config: DataConfig) -> dict[str, tuple[str, str]]:
    """name -> (task, source spec) of every test source: each task's first is `<task>_test`, the others
    are named by their path (`utkface:utkface/test` -> `utkface_test`)."""
    named = {}
    for task, specs in ((GENDER, config.gender_test), (EMOTION, config.emotion_test)):
        for index, spec in enumerate(specs):
            name = task_test(task) if index == 0 else sources.source_name(spec)
            if name in named or name in (HAPPY_HOUSE, JOINT_TEST):
                raise UserError(f"Test sources '{named.get(name, (None, name))[1]}' and '{spec}' have the same name '{name}'.")
            named[name] = (task, spec)
    return named


def test_sets(config: DataConfig) -> dict[str, sources.ImageSource | sources.ArraySource]:
    """The held-out test sets named in the config, by name; the joint folder only when given."""
    root = data_root(config)
    tests = {name: sources.read_source(spec, root, task) for name, (task, spec) in test_set_names(config).items()}
    tests[HAPPY_HOUSE] = sources.happy_house(root / config.happy_house_test)
    if config.joint_test:
        tests[JOINT_TEST] = sources.joint_folder(Path(config.joint_test))
    return tests


def evaluation_batches(examples: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    return examples.map(_to_float).batch(batch_size).prefetch(AUTOTUNE)


def _to_float(image, labels):
    return tf.cast(image, tf.float32), labels


def training_batches(examples: tf.data.Dataset, batch_size: int, augmenter, to_targets) -> tf.data.Dataset:
    """Batched float images, augmented per batch when `augmenter` is given, with `to_targets(labels, predictions)`.

    `examples` yields (image, labels) or (image, labels, predictions), already shuffled and repeated.
    A batch is the images followed by what `to_targets` returns: (targets, weights), or
    (targets, weights, groups) for group-robust training.
    Batch k is augmented with the seed (augmenter.seed, k), so a run's augmentation is reproducible
    whatever order the parallel map finishes in.
    """

    def finish(index, batch):
        images, labels, *predictions = batch
        images = tf.cast(images, tf.float32)
        if augmenter is not None:
            images = augmenter(images, batch_index=index)
        return (images, *to_targets(labels, predictions[0] if predictions else None))

    # Whole batches keep the ops vectorised: augmenting per example costs about twice the CPU
    # (experiments/benchmarks/pipeline.py).
    numbered = tf.data.Dataset.zip(tf.data.Dataset.counter(), examples.batch(batch_size))
    return numbered.map(finish, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


# One random stream per parameter, so no two parameters ever share their draws.
_STREAMS = ("flip", "angle", "zoom", "shift_x", "shift_y", "contrast", "brightness", "grey", "low_resolution", "resolution")
LOWEST_RESOLUTION = 16  # pixels: about the size of a face in a Happy House photo


def draw_augmentation(config: AugmentConfig, batch_size, seed) -> dict[str, tf.Tensor]:
    """The random parameters of one batch, one value per image, from the stateless seed `seed` (shape [2]).

    Parameters are independent of each other and between images; a zero strength draws the identity.
    """

    def uniform(name, low, high):
        stream = tf.random.experimental.stateless_fold_in(seed, _STREAMS.index(name))
        return tf.random.stateless_uniform([batch_size], stream, low, high)

    low_zoom, high_zoom = config.zoom or (0.0, 0.0)
    return {
        "flip": uniform("flip", 0.0, 1.0) < (0.5 if config.flip else 0.0),
        "angle": uniform("angle", -config.rotation, config.rotation) * 2 * math.pi,
        # Keras RandomZoom's meaning: the sampling grid is scaled by 1 + factor, so positive zooms out.
        "zoom": 1.0 + uniform("zoom", low_zoom, high_zoom),
        "shift_x": uniform("shift_x", -config.translation, config.translation),
        "shift_y": uniform("shift_y", -config.translation, config.translation),
        "contrast": 1.0 + uniform("contrast", -config.contrast, config.contrast),
        "brightness": uniform("brightness", -config.brightness, config.brightness) * 255.0,
        "grey": uniform("grey", 0.0, 1.0) < config.grayscale_probability,
        "low_resolution": uniform("low_resolution", 0.0, 1.0) < config.low_resolution,
        "resolution": uniform("resolution", 0.0, 1.0),  # of the batch's lower resolution, where the first image says
    }


def affine_transforms(parameters: dict[str, tf.Tensor], height: int, width: int) -> tf.Tensor:
    """[B, 8] projective transforms (output pixel -> input pixel): flip, rotation, zoom and shift about the centre.

    The input point of output point p is  centre + zoom * R(angle) * F * (p - centre - shift).
    """
    zoom, angle = parameters["zoom"], parameters["angle"]
    mirror = tf.where(parameters["flip"], -1.0, 1.0)
    a0, a1 = zoom * tf.cos(angle) * mirror, -zoom * tf.sin(angle)
    b0, b1 = zoom * tf.sin(angle) * mirror, zoom * tf.cos(angle)
    centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
    from_x = centre_x + parameters["shift_x"] * width
    from_y = centre_y + parameters["shift_y"] * height
    a2 = centre_x - a0 * from_x - a1 * from_y
    b2 = centre_y - b0 * from_x - b1 * from_y
    zeros = tf.zeros_like(zoom)
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


@tf.function(jit_compile=True, reduce_retracing=True)
def augment(images: tf.Tensor, parameters: dict[str, tf.Tensor]) -> tf.Tensor:
    """`images` (float [B, H, W, 3] in [0, 255]) resampled once through their affine transforms, then
    contrast, brightness and grey applied per image, clipped to [0, 255].

    Compiled with XLA: the bilinear gathers and the photometric ops fuse into one pass, several
    times faster on CPU than `ImageProjectiveTransformV3`, which XLA cannot compile.
    """
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    transforms = affine_transforms(parameters, tf.cast(height, tf.float32), tf.cast(width, tf.float32))
    return recolour(_bilinear(images, transforms), parameters)


def recolour(images: tf.Tensor, parameters: dict[str, tf.Tensor]) -> tf.Tensor:
    """Contrast about each image's mean, brightness and colour-to-grey per image, clipped to [0, 255]."""
    mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
    images = (images - mean) * parameters["contrast"][:, None, None, None] + mean
    images += parameters["brightness"][:, None, None, None]
    grey = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(images))
    images = tf.where(parameters["grey"][:, None, None, None], grey, images)
    return tf.clip_by_value(images, 0.0, 255.0)


def _bilinear(images: tf.Tensor, transforms: tf.Tensor) -> tf.Tensor:
    """Bilinear resampling at the transformed points; points outside take the nearest edge pixel."""
    batch, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    rows, columns = tf.meshgrid(tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32), indexing="ij")
    a = transforms[:, :, None, None]
    x = tf.clip_by_value(a[:, 0] * columns + a[:, 1] * rows + a[:, 2], 0.0, tf.cast(width - 1, tf.float32))
    y = tf.clip_by_value(a[:, 3] * columns + a[:, 4] * rows + a[:, 5], 0.0, tf.cast(height - 1, tf.float32))
    left, top = tf.floor(x), tf.floor(y)
    right_share, bottom_share = (x - left)[..., None], (y - top)[..., None]
    left, top = tf.cast(left, tf.int32), tf.cast(top, tf.int32)
    right, bottom = tf.minimum(left + 1, width - 1), tf.minimum(top + 1, height - 1)
    pixels = tf.reshape(images, [-1, tf.shape(images)[3]])
    first_pixel = (tf.range(batch) * height * width)[:, None, None]

    def at(row, column):
        return tf.gather(pixels, first_pixel + row * width + column)

    upper = at(top, left) * (1 - right_share) + at(top, right) * right_share
    lower = at(bottom, left) * (1 - right_share) + at(bottom, right) * right_share
    return upper * (1 - bottom_share) + lower * bottom_share


class Augmenter:
    """Random changes to a float batch in [0, 255]: one affine resampling (flip, rotation, zoom, shift),
    contrast, brightness and colour-to-grey, every parameter drawn independently per image."""

    def __init__(self, config: AugmentConfig, seed: int):
        self.config = config
        self.seed = seed
        # Draws for calls without a batch index (a direct call, or a map that numbers no batches).
        self._generator = tf.random.Generator.from_seed(seed)

    def __call__(self, images: tf.Tensor, batch_index=None) -> tf.Tensor:
        """`images` augmented; with `batch_index` the draws depend only on (seed, batch_index)."""
        if batch_index is None:
            seed = self._generator.make_seeds(1)[:, 0]
        else:
            seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(batch_index, tf.int64)])
        parameters = draw_augmentation(self.config, tf.shape(images)[0], seed)
        images = augment(images, parameters)
        return lower_resolution(images, parameters) if self.config.low_resolution else images


def lower_resolution(images: tf.Tensor, parameters: dict[str, tf.Tensor]) -> tf.Tensor:
    """The chosen images shrunk to one random size between LOWEST_RESOLUTION and their own, and enlarged back.

    One size per batch, since a resize takes one shape; which images it touches is drawn per image.
    """
    size = tf.shape(images)[1]
    lowest = tf.minimum(LOWEST_RESOLUTION, size)
    low = lowest + tf.cast(parameters["resolution"][0] * tf.cast(size - lowest, tf.float32), tf.int32)
    small = tf.image.resize(images, [low, low], antialias=True)
    blurred = tf.image.resize(small, [size, tf.shape(images)[2]])
    return tf.where(parameters["low_resolution"][:, None, None, None], blurred, images)
