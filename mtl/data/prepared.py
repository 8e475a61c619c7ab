"""Datasets prepared once with TensorFlow Datasets: decoded, checked and resized into record files.

One builder, the one that is measured to help (a first pass over the training images 2.3x faster
than decoding the folders, experiments/results/benchmarks/prepared.md): a single-task image folder
(`TaskFolder`: train and validation splits from `sources.stratified_split`), read by training
through `data.prepared`; test sets are read from their sources, so none is prepared. (Builders for the Happy House file, a joint
folder and the cross-labelled set were removed: no command read what they wrote.) The readers of
`sources` list the files, leave out the ones that are not images or do not decode (counted in the
dataset's metadata) and give the labels, -1 where a task is missing. Images are stored as
`data.image_size` uint8 pixels, so reading decodes nothing.

A prepared dataset lives under `<prepared>/<builder>/<config>/<version>`; the config name holds
everything the records depend on (image size, validation share and seed, the source folder), so
a changed setting prepares a new dataset and never reads a stale one. Reading interleaves the
record files in an order drawn from a seed and, given a `tf.distribute.InputContext`, reads only
this worker's files.
"""

import contextlib
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from mtl.config import DataConfig
from mtl.data import sources
from mtl.data.images import decode_and_resize
from mtl.errors import UserError
from mtl.tasks import CLASSES, EMOTION, GENDER, TASKS

# 2.0.0 dropped the test split: a dataset prepared at 1.0.0 is prepared again, not read beside it.
VERSION = tfds.core.Version("2.0.0")
TRAIN, VALIDATION = "train", "validation"
# A task folder's splits are written in up to 16 record files of at least 20 images, so that they
# can be interleaved and every worker of a distributed run reads files of its own, even on the
# sample. (TFDS's own choice makes one file per 64 MiB, `DownloadConfig.min_shard_size` being
# ignored in 4.9.10: one file for the whole emotion training set.)
MAX_RECORD_FILES = 16
MIN_IMAGES_PER_FILE = 20
INTERLEAVED_FILES = 16  # record files read at once


def _image_feature(image_size: int) -> tfds.features.Tensor:
    # Raw bytes, not PNG: reading is a copy, not a decode.
    return tfds.features.Tensor(
        shape=(image_size, image_size, 3), dtype=np.uint8, encoding=tfds.features.Encoding.BYTES,
        doc=f"RGB face resized to {image_size}x{image_size}",
    )


def _label_features() -> dict:
    return {
        task: tfds.features.Scalar(np.int64, doc=f"{task}: {', '.join(CLASSES[task])} by index; -1 not labelled")
        for task in TASKS
    }


def _image_features(image_size: int) -> tfds.features.FeaturesDict:
    file_name = tfds.features.Text(doc="the file (or HDF5 row) it was read from, relative to the source")
    return tfds.features.FeaturesDict({"image": _image_feature(image_size), **_label_features(), "file_name": file_name})


def _config(name: str, description: str, *sources_read) -> tfds.core.BuilderConfig:
    """A config named by the settings and (a short hash of) what the records come from: the source paths
    and every file in them by name, size and modification time, so a changed folder is prepared again."""
    where = hashlib.sha256("\n".join(_fingerprint(Path(path)) for path in sources_read).encode()).hexdigest()[:8]
    read_from = ", ".join(map(str, sources_read))
    return tfds.core.BuilderConfig(name=f"{name}-{where}", description=f"{description} Read from: {read_from}.")


def _fingerprint(path: Path) -> str:
    """The resolved path, then one line (relative name, size, modification time) per file below it."""
    path = path.resolve()
    lines = [str(path)]
    files = [path] if path.is_file() else sorted(file for file in path.rglob("*") if file.is_file())
    for file in files:
        status = file.stat()
        lines.append(f"{file.relative_to(path) if file != path else ''}\t{status.st_size}\t{status.st_mtime_ns}")
    return "\n".join(lines)


def _listed(root: Path, classes, what: str) -> list[tuple[list[str], int]]:
    """(image files, files skipped as not images) of each class folder, as `sources` lists them."""
    return [sources.list_images(folder) for folder in sources.class_folders(root, classes, what).values()]


def _left_out(root: Path, source: sources.ImageSource, classes, what: str) -> dict[str, int]:
    """How many files of a class folder were left out: not images, or images that do not decode."""
    listed = _listed(root, classes, what)
    images = sum(len(files) for files, _ in listed)
    return {"not_images": sum(skipped for _, skipped in listed), "undecodable": images - len(source)}


def _folder_examples(source: sources.ImageSource, root: Path, image_size: int):
    """(key, example) of every image of `source`, keyed by its path relative to `root`."""
    names = [os.path.relpath(path, root) for path in source.paths]
    indices = tf.data.Dataset.from_tensor_slices((source.paths, np.arange(len(source))))

    def load(path, index):
        return decode_and_resize(tf.io.read_file(path), image_size), index

    # A file that changed since the check is dropped, as training from the folder would drop it.
    images = indices.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).ignore_errors()
    for image, index in images.as_numpy_iterator():
        labels = {task: source.labels[task][index] for task in TASKS}
        yield names[index], {"image": image, **labels, "file_name": names[index]}


class _Prepared(tfds.core.GeneratorBasedBuilder):
    """What the four builders share: their version, image size and a metadata dict of left-out counts."""

    VERSION = VERSION
    RELEASE_NOTES = {
        "1.0.0": "Images as raw uint8 pixels at data.image_size; -1 for a missing label.",
        "2.0.0": "No test split: nothing read it, the test sets are read from their sources.",
    }

    def __init__(self, *, image_size: int, description: str, config: tfds.core.BuilderConfig, **kwargs):
        self.image_size = image_size
        self._description = description
        super().__init__(config=config, **kwargs)

    def _features(self) -> tfds.features.FeaturesDict:
        return _image_features(self.image_size)

    def record_files(self) -> int | None:
        """How many record files each split is written in; None: TFDS's choice (one per 64 MiB)."""
        return None

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self, description=self._description, features=self._features(), metadata=tfds.core.MetadataDict()
        )


class TaskFolder(_Prepared):
    """A single-task image folder (one sub-folder per class): its stratified train and validation
    splits, as `sources.stratified_split` draws them with the seed."""

    def __init__(self, *, task: str, train_dir, image_size: int, validation_fraction: float, seed: int, **kwargs):
        self.task, self.train_dir = task, Path(train_dir)
        self.validation_fraction, self.seed = validation_fraction, seed
        name = f"{task}-{image_size}px-validation{validation_fraction:g}-seed{seed}"
        description = (
            f"{task.capitalize()} faces, {image_size}x{image_size} RGB; validation: a stratified "
            f"{validation_fraction:g} of the training folder drawn with seed {seed}; the other task's label is -1."
        )
        config = _config(name, description, self.train_dir)
        super().__init__(image_size=image_size, description=description, config=config, **kwargs)

    def record_files(self) -> int:
        # From the smaller split's (validation's) share of the listed images: files that do not decode
        # are rare enough never to leave a file with no image.
        what = f"{self.task.capitalize()} dataset"
        listed = sum(len(files) for files, _ in _listed(self.train_dir, CLASSES[self.task], what))
        smallest = int(listed * self.validation_fraction)
        return max(1, min(MAX_RECORD_FILES, smallest // MIN_IMAGES_PER_FILE))

    def _split_generators(self, dl_manager):
        labelled = sources.task_folder(self.train_dir, self.task)
        train, validation = sources.stratified_split(labelled, self.validation_fraction, self.seed)
        what = f"{self.task.capitalize()} dataset"
        # Of the train and validation splits together: both are drawn from the one folder.
        self.info.metadata["left_out"] = {TRAIN: _left_out(self.train_dir, labelled, CLASSES[self.task], what)}
        return {
            TRAIN: self._generate_examples(train, self.train_dir),
            VALIDATION: self._generate_examples(validation, self.train_dir),
        }

    def _generate_examples(self, source, root):
        return _folder_examples(source, root, self.image_size)


# ---------------------------------------------------------------------- preparing ---


@contextlib.contextmanager
def _quietly():
    """TFDS's warnings (on custom configs, deprecated fields) and progress bars: nothing a user acts on."""
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    tfds.disable_progress_bar()
    try:
        yield
    finally:
        absl.setLevel(level)


def _ready(builder_class, **arguments) -> _Prepared:
    """A builder with its records written, once: a dataset prepared before is only opened."""
    with _quietly():
        builder = builder_class(**arguments)
        if builder.is_prepared():
            _check_records(builder)
            return builder
        folder = Path(builder.data_dir_root)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=folder).close()
        except OSError:
            raise UserError(
                f"data.prepared '{folder}' is not a folder that can be written; "
                "expected a writable folder for the prepared datasets."
            ) from None
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(num_shards=builder.record_files()))
    return builder


# TFRecord frames each record with its length (8 bytes) and two checksums (4 bytes each).
_RECORD_FRAME_BYTES = 16


def _check_records(builder: _Prepared) -> None:
    """Refuse, before any run starts, record files whose sizes are not those written (truncated, or gone)."""
    for split in builder.info.splits.values():
        paths = [Path(path) for path in split.filepaths]
        expected = split.num_bytes + _RECORD_FRAME_BYTES * split.num_examples
        found = sum(path.stat().st_size for path in paths if path.is_file())
        if found != expected:
            raise UserError(
                f"The prepared dataset '{builder.data_dir}' is damaged: its {split.name} records hold {found} bytes, "
                f"{expected} were written; delete that folder and it is prepared again."
            )


def only_folder(specs, field: str) -> str:
    """The one class-folder path a prepared task dataset is built from, or a UserError."""
    kinds = [sources.parse_source(spec) for spec in specs]
    if len(kinds) != 1 or not sources.KINDS.get(kinds[0][0]).preparable:
        raise UserError(
            f"data.prepared reads one class-folder source per task, but {field} is {list(specs)}; "
            "leave data.prepared unset to read several sources from their folders."
        )
    return kinds[0][1]


def task_builders(config: DataConfig, root: Path, prepared_dir: Path, seed: int) -> dict[str, TaskFolder]:
    """The gender and emotion folders of `config` under `root`, prepared under `prepared_dir`."""
    folders = {
        GENDER: only_folder(config.gender_train, "data.gender_train"),
        EMOTION: only_folder(config.emotion_train, "data.emotion_train"),
    }
    return {
        task: _ready(
            TaskFolder, task=task, train_dir=root / train, image_size=config.image_size,
            validation_fraction=config.validation_fraction, seed=seed, data_dir=prepared_dir,
        )
        for task, train in folders.items()
    }


def prepare(config: DataConfig, root: Path, prepared_dir: Path, seed: int) -> dict[str, TaskFolder]:
    """The two task folders `config` names under `root`, prepared under `prepared_dir` (validation drawn with `seed`)."""
    return task_builders(config, root, prepared_dir, seed)


def counts(builder: _Prepared) -> dict:
    """Images kept per split and files left out, as the dataset's metadata recorded them."""
    return {
        "kept": {name: split.num_examples for name, split in builder.info.splits.items()},
        "left_out": dict(builder.info.metadata["left_out"]),
    }


def report(name: str, builder: _Prepared) -> str:
    """One line for `mtl prepare`: images kept per split, files left out, and where the records are."""
    found = counts(builder)
    kept = ", ".join(f"{split} {count}" for split, count in found["kept"].items())
    not_images, undecodable = (sum(split[kind] for split in found["left_out"].values()) for kind in ("not_images", "undecodable"))
    return (
        f"{name}: kept {kept}; left out {not_images} files that are not images and {undecodable} that do not decode; "
        f"in {builder.data_dir}"
    )


# ----------------------------------------------------------------------- reading ---


def read(
    builder: _Prepared, split: str, seed: int, input_context: tf.distribute.InputContext | None = None
) -> tf.data.Dataset:
    """The records of one split, files interleaved in an order drawn from `seed`; under tf.distribute,
    with `input_context`, only this worker's share of the files.

    No automatic caching: whether decoded images stay in memory is `data.cache`'s choice.
    """
    read_config = tfds.ReadConfig(
        shuffle_seed=seed, interleave_cycle_length=INTERLEAVED_FILES, input_context=input_context, try_autocache=False
    )
    with _quietly():
        return builder.as_dataset(split=split, shuffle_files=True, read_config=read_config)


def _image_and_labels(example):
    labels = {task: tf.cast(example[task], tf.int32) for task in TASKS}
    labels[sources.SOURCE] = tf.zeros([], tf.int32)  # a prepared task folder is its task's only source
    return example["image"], labels


@dataclass
class PreparedSplit:
    """One split of a prepared task folder, read as `ExperimentData` reads a source: its length, a
    name, the files it reads, and its (uint8 image, labels) examples."""

    builder: TaskFolder
    split: str
    seed: int

    @property
    def source_names(self) -> list[str]:
        """A prepared task folder is its task's only source (`data.prepared` refuses several)."""
        return [self.name]

    @property
    def name(self) -> str:
        return f"{self.builder.data_dir}[{self.split}]"

    @property
    def paths(self) -> np.ndarray:
        """The record files: what a `data.cache` folder's file name is keyed on."""
        return np.array([str(path) for path in self.builder.info.splits[self.split].filepaths])

    def __len__(self) -> int:
        return self.builder.info.splits[self.split].num_examples

    def dataset(self, image_size: int) -> tf.data.Dataset:
        """(uint8 image, labels), the image already `image_size` (the builder was chosen by it)."""
        examples = read(self.builder, self.split, self.seed)
        return examples.map(_image_and_labels, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def training_splits(config: DataConfig, root: Path, seed: int) -> tuple[PreparedSplit, ...]:
    """(gender train, gender validation, emotion train, emotion validation) from `config.prepared`,
    prepared there first if they are not yet."""
    builders = task_builders(config, root, Path(config.prepared), seed)
    return tuple(PreparedSplit(builders[task], split, seed) for task in (GENDER, EMOTION) for split in (TRAIN, VALIDATION))
