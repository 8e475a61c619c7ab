"""The data layer: readers for the three layouts, image decoding, splits, and the tf.data pipeline."""

import logging
import shutil

import h5py
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import SAMPLE, copy_sample_images, needs_file_modes, write_image
from mtl.config import AugmentConfig, DataConfig
from mtl.data import sources
from mtl.data.images import read_image, resize
from mtl.data import pipeline
from mtl.data.pipeline import Augmenter, ExperimentData, data_root
from mtl.errors import UserError
from mtl.tasks import EMOTION, GENDER, MISSING


def elements(dataset):
    return list(dataset.as_numpy_iterator())


@pytest.fixture(scope="module")
def sample_data():
    """The sample's experiment data, split with seed 7 (nothing decoded yet)."""
    return ExperimentData.load(DataConfig(batch_size=16), seed=7)


def gender_folder(root, female=2, male=2):
    """A gender dataset folder of real sample faces: `female` and `male` files per class."""
    copy_sample_images(SAMPLE / "gender" / "Training" / "female", root / "female", female)
    copy_sample_images(SAMPLE / "gender" / "Training" / "male", root / "male", male)
    return root


# ---------------------------------------------------------------- labels and shapes ---------


def test_gender_faces_are_uint8_rgb_with_emotion_marked_missing(sample_data):
    image, labels = next(iter(sample_data.images(sample_data.gender_train)))

    assert image.dtype == tf.uint8 and image.shape == (64, 64, 3)
    assert set(labels) == {GENDER, EMOTION, "source"}  # the source: its index in the task's list of sources
    assert labels[GENDER].dtype == tf.int32 and labels[EMOTION].dtype == tf.int32
    assert int(labels[EMOTION]) == MISSING == -1
    assert int(labels[GENDER]) in (0, 1)


def test_emotion_faces_have_gender_marked_missing(sample_data):
    examples = elements(sample_data.images(sample_data.emotion_train))

    assert len(examples) == len(sample_data.emotion_train) == 960
    assert {int(labels[GENDER]) for _, labels in examples} == {MISSING}
    assert {int(labels[EMOTION]) for _, labels in examples} == {0, 1}
    # FER2013 is grayscale; it still comes out with three (equal) channels.
    image = examples[0][0]
    assert image.shape == (64, 64, 3)
    assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2])


def test_class_folders_map_female_0_male_1_happy_0_sad_1():
    gender = sources.task_folder(SAMPLE / "gender" / "Training", GENDER)
    emotion = sources.task_folder(SAMPLE / "fer2013" / "train", EMOTION)

    def labels_by_folder(source, task):
        return {(path.split("/")[-2], int(label)) for path, label in zip(source.paths, source.labels[task])}

    assert labels_by_folder(gender, GENDER) == {("female", 0), ("male", 1)}
    assert labels_by_folder(emotion, EMOTION) == {("happy", 0), ("sad", 1)}
    assert set(gender.labels[EMOTION]) == {MISSING} and set(emotion.labels[GENDER]) == {MISSING}
    assert len(gender) == 400 and len(emotion) == 1200


def test_class_folder_names_match_case_insensitively(tmp_path):
    copy_sample_images(SAMPLE / "fer2013" / "train" / "happy", tmp_path / "Happy", 2)
    copy_sample_images(SAMPLE / "fer2013" / "train" / "sad", tmp_path / "SAD", 3)

    source = sources.task_folder(tmp_path, EMOTION)

    assert sorted(source.labels[EMOTION].tolist()) == [0, 0, 1, 1, 1]


def test_joint_folder_gives_both_labels_from_the_folder_name(joint_folder):
    source = sources.joint_folder(joint_folder)
    expected = {"happy_female": (0, 0), "happy_male": (0, 1), "sad_female": (1, 0), "sad_male": (1, 1)}

    seen = {}
    for path, emotion, gender in zip(source.paths, source.labels[EMOTION], source.labels[GENDER]):
        seen.setdefault(path.split("/")[-2], set()).add((int(emotion), int(gender)))
    assert seen == {name: {labels} for name, labels in expected.items()}
    # Every file of the folder (JPEG, PNG and an odd-sized BMP) decodes to the model's input.
    examples = elements(source.dataset(64))
    assert len(examples) == len(source) == 16
    assert all(image.shape == (64, 64, 3) and image.dtype == np.uint8 for image, _ in examples)


def test_joint_test_set_is_used_only_when_configured(joint_folder):
    assert set(pipeline.test_sets(DataConfig())) == {"gender_test", "utkface_test", "emotion_test", "happy_house"}
    with_joint = pipeline.test_sets(DataConfig(joint_test=str(joint_folder)))
    assert set(with_joint) == {"gender_test", "utkface_test", "emotion_test", "happy_house", "joint_test"}
    assert len(with_joint["joint_test"]) == 16


# ---------------------------------------------------------------- any image file ------------

FORMATS = [
    (mode, suffix)
    for mode in ("L", "RGB", "RGBA", "P")
    for suffix in ("png", "jpg", "bmp", "gif")
    if not (suffix == "jpg" and mode in ("RGBA", "P"))  # JPEG has no alpha or palette
]


@pytest.mark.parametrize("mode,suffix", FORMATS, ids=[f"{m}-{s}" for m, s in FORMATS])
def test_any_mode_size_and_format_becomes_size_by_size_rgb(tmp_path, mode, suffix):
    path = write_image(tmp_path / f"face.{suffix}", mode, size=(13, 200))

    from_file = read_image(path, 64)  # the way `mtl predict` reads
    source = sources.ImageSource("one", np.array([str(path)]), {GENDER: np.array([0]), EMOTION: np.array([-1])})
    [(from_dataset, _)] = elements(source.dataset(64))  # the way training and evaluation read

    assert from_file.shape == from_dataset.shape == (64, 64, 3)
    assert from_file.dtype == from_dataset.dtype == np.uint8
    assert np.array_equal(from_file, from_dataset)
    # The pixels are the image's own, as Pillow sees them (JPEG decoders may differ slightly).
    with Image.open(path) as picture:
        expected = resize(tf.constant(np.asarray(picture.convert("RGB"))), 64).numpy()
    tolerance = 4 if suffix == "jpg" else 0
    # A palette BMP too: TensorFlow alone would read its colour indices as grey levels.
    assert np.abs(from_file.astype(int) - expected).max() <= tolerance


def test_grey_image_has_three_equal_channels(tmp_path):
    path = write_image(tmp_path / "grey.png", "L", size=(30, 20))

    image = read_image(path, 64)

    assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2])


def test_alpha_is_dropped_not_blended(tmp_path):
    colour = np.zeros((10, 10, 4), np.uint8)
    colour[...] = (200, 100, 50, 0)  # fully transparent, but the colour is still there
    Image.fromarray(colour, "RGBA").save(tmp_path / "clear.png")

    image = read_image(tmp_path / "clear.png", 16)

    assert (image == np.array([200, 100, 50], np.uint8)).all()


@pytest.mark.parametrize("size", [32, 48])
def test_image_size_config_is_honoured(size):
    data = ExperimentData.load(DataConfig(image_size=size), seed=7)

    gender_image, _ = next(iter(data.images(data.gender_train)))
    emotion_image, _ = next(iter(data.images(data.emotion_validation)))
    house_image, _ = next(iter(pipeline.test_sets(DataConfig(image_size=size))["happy_house"].dataset(size)))
    batch, _ = next(iter(data.validation()))

    assert gender_image.shape == emotion_image.shape == house_image.shape == (size, size, 3)
    assert batch.shape[1:] == (size, size, 3)


# ---------------------------------------------------------------- splits --------------------


def test_stratified_split_is_reproducible_and_keeps_class_shares():
    source = sources.task_folder(SAMPLE / "gender" / "Training", GENDER)

    train, validation = sources.stratified_split(source, 0.25, seed=3)
    again_train, again_validation = sources.stratified_split(source, 0.25, seed=3)
    other_train, other_validation = sources.stratified_split(source, 0.25, seed=4)

    assert list(validation.paths) == list(again_validation.paths)
    assert list(train.paths) == list(again_train.paths)
    assert list(validation.paths) != list(other_validation.paths)
    # A partition: nothing lost, nothing in both parts.
    assert sorted([*train.paths, *validation.paths]) == sorted(source.paths)
    assert not set(train.paths) & set(validation.paths)
    # 200 female and 200 male: a quarter of each goes to validation.
    assert len(validation) == 100
    assert np.bincount(validation.labels[GENDER]).tolist() == [50, 50]
    assert np.bincount(train.labels[GENDER]).tolist() == [150, 150]
    assert len(other_validation) == 100 and np.bincount(other_validation.labels[GENDER]).tolist() == [50, 50]


def test_experiment_data_splits_both_datasets_with_the_run_seed():
    one = ExperimentData.load(DataConfig(validation_fraction=0.2), seed=11)
    same = ExperimentData.load(DataConfig(validation_fraction=0.2), seed=11)
    other = ExperimentData.load(DataConfig(validation_fraction=0.2), seed=12)

    assert list(one.emotion_validation.paths) == list(same.emotion_validation.paths)
    assert list(one.gender_validation.paths) == list(same.gender_validation.paths)
    assert list(one.gender_validation.paths) != list(other.gender_validation.paths)
    assert (len(one.gender_train), len(one.gender_validation)) == (320, 80)
    assert np.bincount(one.emotion_validation.labels[EMOTION]).tolist() == [120, 120]


@pytest.mark.parametrize("fraction", [0, 1, 1.5])
def test_validation_fraction_outside_0_1_is_a_user_error(fraction):
    source = sources.task_folder(SAMPLE / "gender" / "Training", GENDER)
    with pytest.raises(UserError, match="validation_fraction"):
        sources.stratified_split(source, fraction, seed=0)


# ---------------------------------------------------------------- Happy House ---------------


def test_happy_house_label_1_is_happy_0_is_sad_and_gender_is_missing():
    path = SAMPLE / "happy_house" / "test_happy.h5"
    with h5py.File(path, "r") as file:
        raw_images, raw_labels = file["test_set_x"][:], file["test_set_y"][:]

    source = sources.happy_house(path)
    examples = elements(source.dataset(64))

    assert len(source) == len(examples) == 40
    assert [int(labels[EMOTION]) for _, labels in examples] == [0 if y == 1 else 1 for y in raw_labels]
    assert {int(labels[GENDER]) for _, labels in examples} == {MISSING}
    # At their own size (64x64 RGB) the photos come through untouched.
    assert np.array_equal(np.stack([image for image, _ in examples]), raw_images)


def test_happy_house_resized_like_every_other_image():
    path = SAMPLE / "happy_house" / "test_happy.h5"
    with h5py.File(path, "r") as file:
        raw_images = file["test_set_x"][:4]

    resized = np.stack([image for image, _ in elements(sources.happy_house(path).dataset(32).take(4))])

    assert np.array_equal(resized, resize(tf.constant(raw_images), 32).numpy())


def test_happy_house_reads_train_keys_and_grey_rows(tmp_path):
    path = tmp_path / "train_happy.h5"
    grey = np.random.default_rng(0).integers(0, 256, (5, 20, 30), dtype=np.uint8)
    with h5py.File(path, "w") as file:
        file["train_set_x"] = grey
        file["train_set_y"] = np.array([1, 0, 0, 1, 1])

    source = sources.happy_house(path)
    examples = elements(source.dataset(16))

    assert [int(labels[EMOTION]) for _, labels in examples] == [0, 1, 1, 0, 0]
    assert all(image.shape == (16, 16, 3) for image, _ in examples)


def test_hdf5_with_other_keys_is_a_user_error_naming_them(tmp_path):
    path = tmp_path / "faces.h5"
    with h5py.File(path, "w") as file:
        file["images"] = np.zeros((2, 8, 8, 3), np.uint8)
        file["labels"] = np.zeros(2)

    with pytest.raises(UserError) as error:
        sources.happy_house(path)

    message = str(error.value)
    assert str(path) in message and "'images'" in message and "'labels'" in message
    assert "test_set_x" in message


def test_hdf5_with_mismatched_rows_is_a_user_error(tmp_path):
    path = tmp_path / "faces.h5"
    with h5py.File(path, "w") as file:
        file["test_set_x"] = np.zeros((3, 8, 8, 3), np.uint8)
        file["test_set_y"] = np.zeros(2)
    with pytest.raises(UserError, match="has shape .3, 8, 8, 3. but 2 labels"):
        sources.happy_house(path)


def test_missing_or_non_hdf5_happy_house_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        sources.happy_house(tmp_path / "nothing.h5")
    (tmp_path / "text.h5").write_text("not HDF5")
    with pytest.raises(UserError, match="not a readable HDF5"):
        sources.happy_house(tmp_path / "text.h5")


# ---------------------------------------------------------------- bad files -----------------


def test_zero_byte_and_text_files_are_skipped_at_listing_with_a_warning(tmp_path, caplog):
    root = gender_folder(tmp_path / "gender")
    (root / "female" / "empty.jpg").write_bytes(b"")
    (root / "female" / "notes.txt").write_text("not a face")
    (root / "male" / "fake.png").write_text("text with an image suffix")
    (root / "male" / ".hidden.jpg").write_bytes(b"")  # hidden files are not even counted

    with caplog.at_level(logging.WARNING, logger="mtl.data.sources"):
        source = sources.task_folder(root, GENDER)

    assert len(source) == 4
    assert not any(name in path for path in source.paths for name in ("empty", "notes", "fake", "hidden"))
    assert any("skipped 3 files" in record.getMessage() for record in caplog.records)


def test_truncated_jpeg_or_broken_bmp_with_a_valid_header_is_left_out_at_load_and_counted(tmp_path, caplog):
    root = gender_folder(tmp_path / "gender")
    whole = sorted((SAMPLE / "gender" / "Training" / "female").iterdir())[-1].read_bytes()
    (root / "female" / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    (root / "male" / "broken.bmp").write_bytes(b"BM" + bytes(40))

    with caplog.at_level(logging.WARNING, logger="mtl.data.sources"):
        source = sources.task_folder(root, GENDER)

    # They look like a JPEG and a BMP, but do not decode: left out, so the count is of usable images.
    assert len(source) == len(elements(source.dataset(64))) == 4
    assert not {"truncated.jpg", "broken.bmp"} & {path.split("/")[-1] for path in source.paths}
    [warning] = [record.getMessage() for record in caplog.records if "left out" in record.getMessage()]
    assert "Gender dataset" in warning and str(root) in warning
    assert "left out 2 image files" in warning and "female: 1, male: 1" in warning


def test_a_file_broken_after_loading_is_dropped_while_iterating(tmp_path):
    root = gender_folder(tmp_path / "gender")
    source = sources.task_folder(root, GENDER)
    face = root / "male" / sorted(path.name for path in (root / "male").iterdir())[0]
    face.write_bytes(face.read_bytes()[:200])

    examples = elements(source.dataset(64))

    assert len(source) == 4 and len(examples) == 3
    assert sorted(int(labels[GENDER]) for _, labels in examples) == [0, 0, 1]


def test_experiment_leaves_truncated_images_out_of_both_splits(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(SAMPLE, root)
    males = sorted((root / "gender" / "Training" / "male").iterdir())
    for face in males[:10]:
        face.write_bytes(face.read_bytes()[:200])

    data = ExperimentData.load(DataConfig(data_dir=str(root), batch_size=32), seed=7)
    cut = {str(face) for face in males[:10]}

    assert not cut & {*data.gender_train.paths, *data.gender_validation.paths}
    assert len(data.gender_train) + len(data.gender_validation) == 400 - 10
    assert sum(1 for _ in data.images(data.gender_train)) == len(data.gender_train)
    validation = sum(len(images) for images, _ in data.validation())
    assert validation == len(data.gender_validation) + len(data.emotion_validation)


@pytest.mark.parametrize("what", ["missing", "file"])
def test_dataset_folder_missing_or_a_file_is_a_user_error_with_its_path(tmp_path, what):
    path = tmp_path / "gender"
    if what == "file":
        path.write_text("a file, not a folder")

    with pytest.raises(UserError) as error:
        sources.task_folder(path, GENDER)

    assert str(path) in str(error.value)
    assert ("does not exist" if what == "missing" else "is not a folder") in str(error.value)


def test_missing_class_sub_folder_is_a_user_error_naming_it(tmp_path):
    copy_sample_images(SAMPLE / "gender" / "Training" / "female", tmp_path / "female", 2)

    with pytest.raises(UserError) as error:
        sources.task_folder(tmp_path, GENDER)

    assert str(tmp_path) in str(error.value) and "'male'" in str(error.value)


@pytest.mark.parametrize("content", ["empty", "only text"])
def test_class_folder_without_images_is_a_user_error_with_its_path(tmp_path, content):
    root = gender_folder(tmp_path / "gender")
    shutil.rmtree(root / "male")
    (root / "male").mkdir()
    if content == "only text":
        (root / "male" / "readme.txt").write_text("no faces here")

    with pytest.raises(UserError) as error:
        sources.task_folder(root, GENDER)

    assert str(root / "male") in str(error.value)


@needs_file_modes
@pytest.mark.parametrize("where", ["class folder", "folder inside it"])
def test_a_class_folder_that_cannot_be_read_is_refused_as_unreadable_not_empty(tmp_path, where):
    root = gender_folder(tmp_path / "gender")
    unreadable = root / "male" if where == "class folder" else root / "male" / "more"
    copy_sample_images(SAMPLE / "gender" / "Training" / "male", root / "male" / "more", 1)
    unreadable.chmod(0)
    try:
        with pytest.raises(UserError, match=rf"^Folder '{unreadable}' cannot be read \(Permission denied\)"):
            sources.task_folder(root, GENDER)
    finally:
        unreadable.chmod(0o755)


def test_missing_data_dir_is_a_user_error_with_its_path(tmp_path):
    with pytest.raises(UserError) as error:
        data_root(DataConfig(data_dir=str(tmp_path / "nowhere")))
    assert str(tmp_path / "nowhere") in str(error.value)


def test_data_dir_without_the_expected_layout_names_the_missing_folder(tmp_path):
    (tmp_path / "fer2013").mkdir()
    with pytest.raises(UserError) as error:
        ExperimentData.load(DataConfig(data_dir=str(tmp_path)), seed=0)
    assert str(tmp_path / "gender" / "Training") in str(error.value)


@pytest.mark.parametrize("content", [b"", b"hello, not an image", b"\xff\xd8\xff\xe0 then nothing"])
def test_predicting_on_a_file_that_is_no_image_is_a_user_error(tmp_path, content):
    path = tmp_path / "face.jpg"
    path.write_bytes(content)
    with pytest.raises(UserError, match="not a readable image"):
        read_image(path, 64)
    with pytest.raises(UserError, match="does not exist"):
        read_image(tmp_path / "missing.jpg", 64)


# ---------------------------------------------------------------- augmentation --------------


def test_augmenter_changes_training_images_differently_each_time(sample_data):
    images = tf.cast(tf.stack([image for image, _ in sample_data.images(sample_data.gender_train).take(8)]), tf.float32)
    augment = Augmenter(AugmentConfig(), seed=1)

    first, second = augment(images).numpy(), augment(images).numpy()

    assert first.shape == images.shape and first.dtype == np.float32
    assert 0 <= first.min() and first.max() <= 255
    assert not np.allclose(first, images.numpy())
    assert not np.allclose(first, second)


def test_grayscale_augmentation_probability_one_makes_every_image_grey(sample_data):
    images = tf.cast(tf.stack([image for image, _ in sample_data.images(sample_data.gender_train).take(4)]), tf.float32)
    none = AugmentConfig(
        flip=False, rotation=0, zoom=(0, 0), translation=0, contrast=0, brightness=0, grayscale_probability=0
    )

    grey = Augmenter(AugmentConfig(**{**none.__dict__, "grayscale_probability": 1.0}), seed=1)(images).numpy()
    unchanged = Augmenter(none, seed=1)(images).numpy()

    assert np.allclose(grey[..., 0], grey[..., 1]) and np.allclose(grey[..., 1], grey[..., 2])
    assert np.array_equal(unchanged, images.numpy())


def test_training_batches_are_augmented_unless_augmentation_is_off(tiny_config, sample_data):
    from mtl import labels
    from mtl.approaches.batches import batches_with_targets

    examples = sample_data.images(sample_data.gender_train).take(16)
    decoded = np.stack([image for image, _ in elements(examples)]).astype(np.float32)

    def first_batch(config):
        to_targets = lambda batch_labels, _: labels.task_targets(batch_labels, None, config.options)  # noqa: E731
        images, targets, weights = next(iter(batches_with_targets(examples, config, to_targets)))
        assert targets[GENDER].shape == (16, 2) and weights[EMOTION].numpy().sum() == 0
        return images.numpy()

    assert not np.allclose(first_batch(tiny_config(data={"batch_size": 16})), decoded)
    assert np.array_equal(first_batch(tiny_config(data={"batch_size": 16, "augment": None})), decoded)


def test_evaluation_batches_are_not_augmented(sample_data):
    decoded = [image for image, _ in elements(sample_data.images(sample_data.gender_validation))]
    decoded += [image for image, _ in elements(sample_data.images(sample_data.emotion_validation))]

    batches = list(sample_data.validation())
    batched = np.concatenate([images.numpy() for images, _ in batches])

    assert batches[0][0].dtype == tf.float32 and batches[0][0].shape[0] == 16
    assert np.array_equal(batched, np.stack(decoded).astype(np.float32))
    # ... and a second pass gives the very same images.
    assert np.array_equal(np.concatenate([images.numpy() for images, _ in sample_data.validation()]), batched)
