"""Data sources: each kind of source reads into examples (image, {task: label, "source": index}),
with -1 for a missing label.

The kinds are plug-ins in `KINDS` (see `read_source`), selected in a config as "KIND:PATH":
- `folder`: one sub-folder per class (`gender/Training/{female,male}`, `fer2013/train/{happy,sad}`),
- `utkface`: class folders whose file names carry UTKFace's labels (`AGE_GENDER_RACE_*.jpg`), so
  its faces can be scored per age band and ethnicity,
- `csv`: a CSV file with a `path` column and a column per task holding class names,
- `hdf5`: the Happy House HDF5 file (`test_set_x`/`test_set_y`, or `train_set_x`/`train_set_y`),
- `joint`: a jointly labelled folder `{happy_female,happy_male,sad_female,sad_male}/`.
Each source says its examples, their groups (attributes such as an age band, per example) and
whether its images are photographs (scored on detected faces too) or face crops.

A folder is read once at load time (one parallel decode pass): files that do not decode, or whose
header claims more than `images.MAX_PIXELS`, are left out and counted in a warning naming the
source, so every printed count is of images that will be used. Training decodes again, lazily,
inside tf.data (see `pipeline`).
"""

import logging
import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import tensorflow as tf
from sklearn.model_selection import train_test_split

from mtl.config import PluginOptions, number
from mtl.data.images import MAX_PIXELS, decode, decode_and_resize, list_images, over_pixel_limit, resize
from mtl.errors import UserError
from mtl.registry import Registry
from mtl.tasks import CLASSES, EMOTION, FOUR, GENDER, MISSING, TASKS, split_four_class

log = logging.getLogger(__name__)

FORMAT_NAMES = "JPEG, PNG, GIF, BMP, WebP or TIFF"


SOURCE = "source"  # the labels' key of an example's source: its index in its task's list of sources


@dataclass
class ImageSource:
    """A list of image files with a label per task (MISSING where the dataset has none).

    `labels[SOURCE]` is each file's index in `source_names` (the sources it was merged from);
    `groups` maps an attribute ("age_band", "ethnicity") to its value per file ("" where unknown).
    """

    name: str
    paths: np.ndarray  # str
    labels: dict[str, np.ndarray]  # task -> int32 per file, and SOURCE
    groups: dict[str, np.ndarray] = field(default_factory=dict)
    photographs: bool = False  # whole photographs (scored on detected faces too), not face crops
    source_names: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.labels.setdefault(SOURCE, np.zeros(len(self.paths), np.int32))
        if not self.source_names:
            self.source_names = [self.name]

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices, name: str) -> "ImageSource":
        return ImageSource(
            name, self.paths[indices], {t: v[indices] for t, v in self.labels.items()},
            {attribute: values[indices] for attribute, values in self.groups.items()}, self.photographs,
            list(self.source_names),
        )

    def stratify_key(self) -> np.ndarray:
        return (self.labels[SOURCE] * 3 + self.labels[GENDER] + 1) * 3 + self.labels[EMOTION] + 1

    def dataset(self, image_size: int) -> tf.data.Dataset:
        """(uint8 image, {task: int32 label}); undecodable files are skipped with a warning."""
        labels = {task: tf.constant(values, tf.int32) for task, values in self.labels.items()}
        files = tf.data.Dataset.from_tensor_slices((tf.constant(self.paths), labels))

        def load(path, label):
            return decode_and_resize(tf.io.read_file(path), image_size), label

        # Undecodable files were left out at load time; one changed since must not end an epoch,
        # so it is dropped (and logged by TF).
        return files.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).ignore_errors(
            log_warning=True
        )


@dataclass
class ArraySource:
    """Images held in an HDF5 file, read row by row; `scale` maps the stored values to 0-255."""

    name: str
    path: Path
    images_key: str
    labels: dict[str, np.ndarray]
    scale: float = 1.0
    groups: dict[str, np.ndarray] = field(default_factory=dict)
    photographs: bool = True  # Happy House holds whole photographs

    def __post_init__(self):
        self.labels.setdefault(SOURCE, np.zeros(len(self.labels[GENDER]), np.int32))

    def __len__(self) -> int:
        return len(self.labels[GENDER])

    def photos(self):
        """Each image at full resolution as uint8 RGB [H, W, 3], in order, read row by row:
        the stored values scaled to 0-255, grey repeated over three channels, alpha dropped."""
        with h5py.File(self.path, "r") as file:
            images = file[self.images_key]
            for index in range(len(self)):
                row = images[index]
                if row.dtype != np.uint8:  # checked at load time to lie in 0-255 once scaled
                    row = np.rint(row * self.scale).astype(np.uint8)
                row = row[..., None] if row.ndim == 2 else row
                yield np.repeat(row, 3, axis=-1) if row.shape[-1] == 1 else row[..., :3]

    def dataset(self, image_size: int) -> tf.data.Dataset:
        images = tf.data.Dataset.from_generator(
            self.photos, output_signature=tf.TensorSpec(shape=(None, None, 3), dtype=tf.uint8)
        )
        # The shared resize (rounded, not truncated), so these photos match the same image read from a file.
        images = images.map(lambda image: tf.ensure_shape(resize(image, image_size), (image_size, image_size, 3)))
        labels = tf.data.Dataset.from_tensor_slices({t: tf.constant(v, tf.int32) for t, v in self.labels.items()})
        return tf.data.Dataset.zip(images, labels)


def _require_folder(path: Path, what: str) -> None:
    if not path.exists():
        raise UserError(f"{what} folder '{path}' does not exist.")
    if not path.is_dir():
        raise UserError(f"{what} path '{path}' is not a folder.")


def class_folders(root: Path, classes, what: str) -> dict[str, Path]:
    """Map each expected class to its sub-folder (case-insensitive), or say which is missing."""
    _require_folder(root, what)
    present: dict[str, Path] = {}
    for child in sorted(root.iterdir()):
        if not child.is_dir():
            continue
        twin = present.setdefault(child.name.lower(), child)
        if twin != child and child.name.lower() in (name.lower() for name in classes):
            raise UserError(
                f"{what} folder '{root}' has both '{twin.name}' and '{child.name}'; keep one folder per class."
            )
    missing = [name for name in classes if name.lower() not in present]
    if missing:
        raise UserError(
            f"{what} folder '{root}' has no sub-folder '{missing[0]}'; expected one folder per class: "
            f"{', '.join(classes)}."
        )
    return {name: present[name.lower()] for name in classes}


def _decodable(paths: list[str]) -> np.ndarray:
    """A bool per file: does it decode, by the decoder training uses, within the pixel limit?

    One parallel tf.data pass that keeps only the index of each file that decoded.
    """
    files = tf.constant(paths)

    def decoded_index(index):
        return index, tf.shape(decode(tf.io.read_file(files[index])))[0]  # the shape makes the decode run

    passed = tf.data.Dataset.range(len(paths)).map(decoded_index, num_parallel_calls=tf.data.AUTOTUNE)
    ok = np.zeros(len(paths), bool)
    for indices, _ in passed.ignore_errors().batch(4096).as_numpy_iterator():
        ok[indices] = True
    return ok


def _folder_source(
    root: Path, class_labels: dict[str, dict[str, int]], what: str, groups_of=None, photographs: bool = False
) -> ImageSource:
    """The decodable images of the class folders of `root`; `groups_of(path)` gives a file's groups."""
    folders = class_folders(root, list(class_labels), what)
    listed = {class_name: list_images(folder) for class_name, folder in folders.items()}
    for class_name, (files, _) in listed.items():
        if not files:
            raise UserError(f"Class folder '{folders[class_name]}' holds no image files ({FORMAT_NAMES}).")
    skipped = sum(count for _, count in listed.values())
    if skipped:
        log.warning("%s: skipped %d files in '%s' that are not %s images.", what, skipped, root, FORMAT_NAMES)
    all_files = [path for files, _ in listed.values() for path in files]
    ok = dict(zip(all_files, _decodable(all_files)))
    paths: list[str] = []
    labels = {task: [] for task in TASKS}
    left_out: dict[str, list[str]] = {}
    for class_name, (files, _) in listed.items():
        decoded = [path for path in files if ok[path]]
        if not decoded:
            raise UserError(
                f"Class folder '{folders[class_name]}' holds no decodable images: "
                f"all {len(files)} image files fail to decode."
            )
        left_out[class_name] = [path for path in files if not ok[path]]
        paths += decoded
        for task in TASKS:
            labels[task] += [class_labels[class_name].get(task, MISSING)] * len(decoded)
    _report_left_out(what, root, left_out)
    groups = {}
    if groups_of is not None:
        found = [groups_of(path) for path in paths]
        attributes = dict.fromkeys(attribute for groups_of_file in found for attribute in groups_of_file)
        groups = {attribute: np.array([item.get(attribute, "") for item in found]) for attribute in attributes}
    return ImageSource(
        name=str(root),
        paths=np.array(paths),
        labels={task: np.array(values, np.int32) for task, values in labels.items()},
        groups=groups,
        photographs=photographs,
    )


def _report_left_out(what: str, root: Path, left_out: dict[str, list[str]]) -> None:
    """One warning per source: how many files were left out, of which class, and how many were too large."""
    files = [path for paths in left_out.values() for path in paths]
    if not files:
        return
    per_class = ", ".join(f"{name}: {len(paths)}" for name, paths in left_out.items() if paths)
    too_large = sum(over_pixel_limit(path) for path in files)
    over = f"; {too_large} of them over the limit of {MAX_PIXELS} pixels" if too_large else ""
    count = f"{len(files)} image file{'s' if len(files) > 1 else ''}"
    log.warning("%s: left out %s in '%s' that cannot be decoded (%s)%s.", what, count, root, per_class, over)


def task_folder(root, task: str, groups_of=None) -> ImageSource:
    """A single-task image folder: one sub-folder per class of `task` (e.g. female/, male/)."""
    class_labels = {name: {task: index} for index, name in enumerate(CLASSES[task])}
    return _folder_source(Path(root), class_labels, f"{task.capitalize()} dataset", groups_of)


def joint_folder(root) -> ImageSource:
    """A jointly labelled folder {happy_female,happy_male,sad_female,sad_male}/ with both labels."""
    class_labels = {}
    for index, name in enumerate(CLASSES[FOUR]):
        emotion, gender = split_four_class(index)
        class_labels[name] = {EMOTION: emotion, GENDER: gender}
    return _folder_source(Path(root), class_labels, "Joint dataset")


def happy_house(path) -> ArraySource:
    """The Happy House HDF5 test (or train) file: label 1 is happy, 0 is not happy (taken as sad).

    Images may be uint8 (or other integers) in 0-255, or floats in 0-1 (scaled to 0-255) or in
    0-255; labels may be 0/1 or the words "happy" and "not happy". Anything else is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Happy House file '{path}' does not exist.")
    try:
        with h5py.File(path, "r") as file:
            keys = set(file.keys())
            prefix = next((p for p in ("test_set", "train_set") if {f"{p}_x", f"{p}_y"} <= keys), None)
            if prefix is None:
                raise UserError(
                    f"HDF5 file '{path}' has keys {sorted(keys)}; expected 'test_set_x' and 'test_set_y' "
                    "(or 'train_set_x' and 'train_set_y')."
                )
            images_key = f"{prefix}_x"
            images = _hdf5_array(file, images_key, path)
            labels_array = _hdf5_array(file, f"{prefix}_y", path)
            # The shapes the file declares, checked before any value is read: a 2 kB file may declare terabytes.
            _check_image_shape(images.shape, math.prod(labels_array.shape), images_key, path)
            happy = _happy_labels(labels_array[()], f"{prefix}_y", path)
            scale = _pixel_scale(images, images_key, path)
    except OSError:
        raise UserError(f"'{path}' is not a readable HDF5 file.") from None
    emotion = np.where(happy, CLASSES[EMOTION].index("happy"), CLASSES[EMOTION].index("sad"))
    labels = {GENDER: np.full(len(happy), MISSING, np.int32), EMOTION: emotion.astype(np.int32)}
    return ArraySource(name=str(path), path=path, images_key=images_key, labels=labels, scale=scale)


MAX_HDF5_IMAGES = 10_000_000  # rows of a Happy House-style file; each row is read on its own
_CHUNK_BYTES = 64_000_000  # what the range check of the pixel values reads at once


def _hdf5_array(file: h5py.File, key: str, path: Path) -> h5py.Dataset:
    item = file[key]
    if not isinstance(item, h5py.Dataset):
        raise UserError(f"HDF5 file '{path}': '{key}' is a group, expected an array.")
    return item


def _check_image_shape(shape: tuple, labels: int, key: str, path: Path) -> None:
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] not in (1, 3, 4)) or 0 in shape[1:3]:
        raise UserError(f"HDF5 file '{path}': {key} has shape {shape}, expected (N, H, W, 3) or (N, H, W).")
    if shape[0] == 0:
        raise UserError(f"HDF5 file '{path}': {key} holds no images (shape {shape}).")
    if shape[1] * shape[2] > MAX_PIXELS or shape[0] > MAX_HDF5_IMAGES:
        raise UserError(
            f"HDF5 file '{path}': {key} has shape {shape}; expected at most {MAX_HDF5_IMAGES} images "
            f"of at most {MAX_PIXELS} pixels each."
        )
    if shape[0] != labels:
        raise UserError(
            f"HDF5 file '{path}': {key} has shape {shape} but {labels} labels; expected one label per image."
        )


def _pixel_scale(images: h5py.Dataset, key: str, path: Path) -> float:
    """255 for floats in 0-1, 1 for values in 0-255; a UserError for anything else (one chunked pass)."""
    if images.dtype == np.uint8:
        return 1.0
    if images.dtype.kind not in "iuf":
        raise UserError(f"HDF5 file '{path}': {key} holds {images.dtype} values; expected numbers in 0-255 or 0-1.")
    low, high = np.inf, -np.inf
    rows = max(1, _CHUNK_BYTES // (math.prod(images.shape[1:]) * images.dtype.itemsize))  # bounded memory
    for start in range(0, images.shape[0], rows):
        chunk = images[start : start + rows]
        if np.isnan(chunk).any():
            raise UserError(f"HDF5 file '{path}': {key} holds NaN values; expected numbers in 0-255 or 0-1.")
        low, high = min(low, chunk.min()), max(high, chunk.max())
    if low < 0 or high > 255:
        raise UserError(f"HDF5 file '{path}': {key} holds values from {low} to {high}; expected 0-255 or 0-1.")
    # Floats that never exceed 1 are taken as 0-1 (else they would all be black); an image that is
    # truly 0-255 and nearly black everywhere is the one case this reads wrong.
    return 255.0 if images.dtype.kind == "f" and high <= 1 else 1.0


_HAPPY_WORDS = {"happy": True, "1": True, "not happy": False, "unhappy": False, "sad": False, "0": False}


def _happy_labels(values, key: str, path: Path) -> np.ndarray:
    """True where the label says happy: 1 or "happy"; False for 0, "not happy", "unhappy" or "sad"."""
    values = np.asarray(values).reshape(-1)
    if values.dtype.kind in "SUO":
        texts = [value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value) for value in values]
        words = [" ".join(text.lower().replace("_", " ").split()) for text in texts]
        unknown = sorted(set(words) - set(_HAPPY_WORDS))
        if unknown:
            raise UserError(
                f"HDF5 file '{path}': {key} holds the label '{unknown[0]}'; expected 'happy' or 'not happy' (or 1 and 0)."
            )
        return np.array([_HAPPY_WORDS[word] for word in words], bool)
    if values.dtype.kind not in "biuf":
        raise UserError(
            f"HDF5 file '{path}': {key} holds {values.dtype} values; expected 1 (happy) and 0 (not happy)."
        )
    unknown = values[(values != 0) & (values != 1)]  # NaN too
    if unknown.size:
        raise UserError(
            f"HDF5 file '{path}': {key} holds the label {unknown[0]}; expected 1 (happy) and 0 (not happy)."
        )
    return values == 1


def stratified_split(source: ImageSource, fraction: float, seed: int) -> tuple[ImageSource, ImageSource]:
    """(train, validation): a seeded split that keeps each class's share in both parts."""
    if not 0 < fraction < 1:
        raise UserError(f"validation_fraction must be between 0 and 1, got {fraction}.")
    indices = np.arange(len(source))
    try:
        train, validation = train_test_split(
            indices, test_size=fraction, random_state=seed, stratify=source.stratify_key()
        )
    except ValueError as error:
        raise UserError(f"Cannot split '{source.name}' into train and validation: {error}") from None
    return (
        source.subset(np.sort(train), f"{source.name}[train]"),
        source.subset(np.sort(validation), f"{source.name}[validation]"),
    )


# ------------------------------------------------------------------------ kinds of source ---

KINDS: Registry = Registry("kind of data source")


@dataclass(frozen=True)
class SourceKind:
    """How one kind of source is read: `read(path, task)` gives its examples for a task.

    `suffixes` are the file endings a plain "PATH" of this kind has (a folder has none). A kind
    with options declares them as `Options` (a `PluginOptions` subclass); a config then gives the
    source as `{"type": KIND, "path": PATH, OPTION: value}`, and `read(path, task, options)` gets them.
    A `preparable` kind is a class folder that `data.prepared` can turn into records (mtl.data.prepared).
    """

    read: object  # (Path, task[, options]) -> ImageSource | ArraySource
    suffixes: tuple[str, ...] = ()
    Options: type = PluginOptions
    preparable: bool = False


def source_kind(name: str, suffixes: tuple[str, ...] = (), options: type = PluginOptions, preparable: bool = False):
    """Decorator: register a reader `(path, task) -> source` as the kind of source `name`; one that
    declares `options` is called `(path, task, options)`."""

    def add(read):
        KINDS.add(name, SourceKind(read, suffixes, options, preparable))
        return read

    return add


def read_source(spec, root: Path, task: str):
    """The source `spec` ("PATH", "KIND:PATH" or a mapping of type, path and options; relative to
    `root` unless absolute) for `task`."""
    kind, path = parse_source(spec)
    entry = KINDS.get(kind)
    if entry.Options is PluginOptions:
        return entry.read(Path(root) / path, task)
    own = {key: value for key, value in spec.items() if key not in ("type", "path")} if isinstance(spec, dict) else {}
    return entry.read(Path(root) / path, task, entry.Options(type=kind, **own))  # checked with the config


def parse_source(spec) -> tuple[str, str]:
    """(kind, path) of a source spec; a plain PATH is a folder, or the kind its file ending names."""
    if isinstance(spec, dict):  # {"type": KIND, "path": PATH, options}, checked with the config
        return spec["type"], spec["path"]
    kind, separator, path = spec.partition(":")
    if separator and kind in KINDS:
        return kind, path
    if separator and re.fullmatch(r"[a-z_0-9]+", kind):  # a kind's name, not a drive letter or a URL-like path
        raise UserError(f"Data source '{spec}': {KINDS.unknown(kind)}")
    suffix = Path(spec).suffix.lower()
    by_suffix = next((name for name, entry in KINDS.items() if suffix and suffix in entry.suffixes), "folder")
    return by_suffix, spec


def source_name(spec: str) -> str:
    """A short name for a source spec, for tables and metrics: 'utkface:utkface/test' -> 'utkface_test';
    options set away from their defaults are part of it: 'utkface_train_min_age_40'."""
    kind, path = parse_source(spec)
    stem = Path(path).with_suffix("").as_posix() if Path(path).suffix else path
    if isinstance(spec, dict):
        defaults = KINDS.get(kind).Options(type=kind)
        stem += "".join(f"_{key}_{value}" for key, value in spec.items()
                        if key not in ("type", "path") and getattr(defaults, key, None) != value)
    return re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_") or "source"


def merged(parts: list, name: str) -> ImageSource:
    """One source holding every part's examples, each labelled with its part's index (`labels[SOURCE]`)."""
    if len(parts) == 1:
        return parts[0]
    if not all(isinstance(part, ImageSource) for part in parts):
        raise UserError(f"{name}: only image sources can be listed together; an HDF5 file must be a task's only source.")
    attributes = list(dict.fromkeys(attribute for part in parts for attribute in part.groups))
    labels = {task: np.concatenate([part.labels[task] for part in parts]).astype(np.int32) for task in TASKS}
    labels[SOURCE] = np.concatenate([np.full(len(part), index, np.int32) for index, part in enumerate(parts)])
    groups = {
        attribute: np.concatenate([part.groups.get(attribute, np.full(len(part), "")) for part in parts]).astype(str)
        for attribute in attributes
    }
    return ImageSource(
        name, np.concatenate([part.paths for part in parts]), labels, groups,
        all(part.photographs for part in parts), [part.name for part in parts],
    )


@source_kind("folder", preparable=True)
def _read_folder(path: Path, task: str) -> ImageSource:
    return task_folder(path, task)


UTKFACE_ETHNICITIES = ("White", "Black", "Asian", "Indian", "Others")
AGE_BANDS = ((0, "0-2"), (3, "3-9"), (10, "10-19"), (20, "20-29"), (30, "30-39"), (40, "40-49"), (50, "50-59"), (60, "60+"))
_UTKFACE_NAME = re.compile(r"(\d+)_([01])_([0-4])_")


def age_band(age: int) -> str:
    return next(band for start, band in reversed(AGE_BANDS) if age >= start)


def utkface_groups(path: str) -> dict[str, str]:
    """Age band and ethnicity from a UTKFace file name `AGE_GENDER_RACE_DATETIME.jpg`; {} if it has none."""
    found = _UTKFACE_NAME.match(Path(path).name)
    if not found:
        return {}
    return {"age_band": age_band(int(found.group(1))), "ethnicity": UTKFACE_ETHNICITIES[int(found.group(3))]}


def utkface_age(path: str) -> int | None:
    """The age in a UTKFace file name `AGE_GENDER_RACE_DATETIME.jpg`; None if it has none."""
    found = _UTKFACE_NAME.match(Path(path).name)
    return int(found.group(1)) if found else None


@dataclass(frozen=True)
class UTKFaceOptions(PluginOptions):
    """Which ages to read: the faces aged `min_age` or more and, if given, below `below_age`.

    Two listings of one folder that split it by age make its older faces a source of their own, so
    that `data.source_mixing` can draw them more often and a group-robust method balances them as
    groups (its groups are class x the other task x source): UTKFace's older faces are mostly men.
    """

    min_age: int = number(0, at_least=0)
    below_age: int | None = number(None, above=0)


@source_kind("utkface", options=UTKFaceOptions)
def _read_utkface(path: Path, task: str, options: UTKFaceOptions) -> ImageSource:
    """UTKFace laid out as class folders, its file names giving each face's age band and ethnicity."""
    whole = task_folder(path, task, groups_of=utkface_groups)
    if options.min_age == 0 and options.below_age is None:
        return whole
    if options.below_age is not None and options.below_age <= options.min_age:
        raise UserError(f"UTKFace source '{path}': below_age {options.below_age} must be above min_age {options.min_age}.")
    ages = f"ages {options.min_age}-{options.below_age - 1}" if options.below_age is not None else f"ages {options.min_age}+"
    ages_of = [utkface_age(file) for file in whole.paths]
    kept = [i for i, age in enumerate(ages_of)
            if age is not None and age >= options.min_age and (options.below_age is None or age < options.below_age)]
    if not kept:
        raise UserError(f"UTKFace source '{path}' holds no faces of {ages} (its file names give each face's age).")
    return whole.subset(np.array(kept), f"{whole.name}[{ages}]")


@source_kind("csv", suffixes=(".csv",))
def _read_csv(path: Path, task: str) -> ImageSource:
    """A CSV file with a `path` column (relative to the file's folder) and a column per task of class names."""
    if not path.is_file():
        raise UserError(f"CSV source '{path}' does not exist.")
    with open(path, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    if not rows or "path" not in rows[0] or task not in rows[0]:
        raise UserError(f"CSV source '{path}' needs a header with the columns 'path' and '{task}' and at least one row.")
    paths, labels = [], {name: [] for name in TASKS}
    for line_number, row in enumerate(rows, start=2):
        for name in TASKS:
            value = (row.get(name) or "").strip().lower()
            if value and value not in CLASSES[name]:
                raise UserError(
                    f"CSV source '{path}', line {line_number}: {name} '{value}' is not one of {', '.join(CLASSES[name])}."
                )
            labels[name].append(CLASSES[name].index(value) if value else MISSING)
        paths.append(str(path.parent / row["path"]))
    known = np.array(labels[task]) >= 0
    if not known.any():
        raise UserError(f"CSV source '{path}' labels no image with {task}.")
    ok = _decodable(paths)
    if not ok.any():
        raise UserError(f"CSV source '{path}' lists no decodable image.")
    if (~ok).sum():
        log.warning("CSV source '%s': left out %d images that cannot be read or decoded.", path, int((~ok).sum()))
    keep = ok & known
    return ImageSource(str(path), np.array(paths)[keep], {name: np.array(values, np.int32)[keep] for name, values in labels.items()})


@source_kind("hdf5", suffixes=(".h5", ".hdf5"))
def _read_hdf5(path: Path, task: str) -> ArraySource:
    if task != EMOTION:
        raise UserError(f"HDF5 source '{path}' is a Happy House file, which labels emotion only, not {task}.")
    return happy_house(path)


@source_kind("joint")
def _read_joint(path: Path, task: str) -> ImageSource:
    return joint_folder(path)
