"""Datasets prepared with TFDS: the builders' counts and labels, the stable validation split,
seeded reading, per-worker files, and training from the prepared records."""

import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from conftest import SAMPLE, copy_sample_images, run_cli
from mtl.config import DataConfig
from mtl.data import prepared, sources
from mtl.data.images import decode_and_resize
from mtl.data.pipeline import ExperimentData
from mtl.errors import UserError
from mtl.tasks import EMOTION, GENDER, MISSING


@pytest.fixture(scope="module")
def sample_prepared(tmp_path_factory):
    """The bundled sample's datasets prepared once (validation drawn with seed 7)."""
    folder = tmp_path_factory.mktemp("prepared")
    return folder, prepared.prepare(DataConfig(), SAMPLE, folder, seed=7)


def file_names(builder, split, seed=0, input_context=None) -> list[str]:
    names = prepared.read(builder, split, seed, input_context).map(lambda example: example["file_name"])
    return [name.decode() for name in names.as_numpy_iterator()]


def labels_of(builder, split, task) -> np.ndarray:
    return np.array(list(prepared.read(builder, split, 0).map(lambda example: example[task]).as_numpy_iterator()))


def test_task_folders_keep_every_sample_image_and_mark_the_other_task_missing(sample_prepared):
    _, builders = sample_prepared
    assert prepared.counts(builders[GENDER])["kept"] == {"train": 320, "validation": 80}
    assert prepared.counts(builders[EMOTION])["kept"] == {"train": 960, "validation": 240}
    assert set(labels_of(builders[GENDER], "train", EMOTION)) == {MISSING}
    assert set(labels_of(builders[GENDER], "train", GENDER)) == {0, 1}
    assert set(labels_of(builders[EMOTION], "validation", GENDER)) == {MISSING}


def test_only_the_splits_training_reads_are_prepared_and_the_test_folders_are_not_needed(tmp_path):
    data = tmp_path / "data"
    small_gender_folders(data)  # no gender test folder
    builders = prepared.task_builders(DataConfig(data_dir=str(data)), data, tmp_path / "prepared", seed=0)
    assert {task: set(builder.info.splits) for task, builder in builders.items()} == {
        GENDER: {"train", "validation"}, EMOTION: {"train", "validation"}
    }


def test_images_are_stored_resized_as_uint8(sample_prepared):
    _, builders = sample_prepared
    image = next(iter(prepared.read(builders[EMOTION], "validation", 0)))["image"]
    assert image.dtype == tf.uint8 and image.shape == (64, 64, 3)


def test_the_validation_split_is_the_files_stratified_split_gives(sample_prepared):
    _, builders = sample_prepared
    root = SAMPLE / "fer2013" / "train"
    _, validation = sources.stratified_split(sources.task_folder(root, EMOTION), 0.2, 7)
    expected = sorted(os.path.relpath(path, root) for path in validation.paths)
    assert sorted(file_names(builders[EMOTION], "validation")) == expected


def test_a_prepared_dataset_is_reused_not_prepared_again(sample_prepared):
    folder, builders = sample_prepared
    again = prepared.prepare(DataConfig(), SAMPLE, folder, seed=7)
    assert again[GENDER].data_dir == builders[GENDER].data_dir
    assert prepared.counts(again[GENDER]) == prepared.counts(builders[GENDER])


def test_corrupt_and_non_image_files_are_counted_and_left_out(tmp_path):
    data = tmp_path / "data"
    small_gender_folders(data)
    whole = next((data / "gender" / "Training" / "female").iterdir()).read_bytes()
    (data / "gender" / "Training" / "female" / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    (data / "gender" / "Training" / "male" / "notes.txt").write_text("not a face")
    gender = prepared.task_builders(DataConfig(data_dir=str(data)), data, tmp_path / "prepared", seed=0)[GENDER]
    found = prepared.counts(gender)
    assert found["kept"] == {"train": 16, "validation": 4}
    assert found["left_out"]["train"] == {"not_images": 1, "undecodable": 1}
    kept = file_names(gender, "train") + file_names(gender, "validation")
    assert not {"female/truncated.jpg", "male/notes.txt"} & set(kept)


def test_two_reads_with_the_same_seed_give_the_same_order(sample_prepared):
    _, builders = sample_prepared
    first = file_names(builders[GENDER], "train", seed=3)
    assert file_names(builders[GENDER], "train", seed=3) == first
    assert file_names(builders[GENDER], "train", seed=4) != first
    assert sorted(first) == sorted(file_names(builders[GENDER], "train", seed=4))


def test_each_worker_reads_its_own_files_and_together_all(sample_prepared):
    _, builders = sample_prepared
    shares = [
        file_names(builders[GENDER], "train", input_context=tf.distribute.InputContext(2, worker, 1)) for worker in (0, 1)
    ]
    assert shares[0] and shares[1] and not set(shares[0]) & set(shares[1])
    assert len(shares[0]) + len(shares[1]) == 320


def test_experiment_data_reads_training_and_validation_from_the_prepared_records(sample_prepared):
    folder, _ = sample_prepared
    data = ExperimentData.load(DataConfig(prepared=str(folder)), seed=7)
    splits = (data.gender_train, data.gender_validation, data.emotion_train, data.emotion_validation)
    assert [len(split) for split in splits] == [320, 80, 960, 240]
    image, labels = next(iter(data.images(data.emotion_train)))
    assert image.shape == (64, 64, 3) and int(labels[GENDER]) == MISSING


def test_a_prepared_folder_that_cannot_be_written_is_one_sentence(tmp_path):
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    code, _, err = run_cli("prepare", blocked / "prepared")
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [err.strip()] and f"'{blocked / 'prepared'}'" in err


@pytest.mark.slow
def test_mtl_prepare_prints_counts_and_train_runs_from_the_prepared_records(tmp_path):
    code, out, err = run_cli("prepare", tmp_path / "prepared")
    assert code == 0, err
    assert "gender: kept train 320, validation 80;" in out
    reported = [line.split(":")[0] for line in out.splitlines() if ": kept " in line]
    assert reported == ["gender", "emotion"]  # what training can read, only
    code, out, err = run_cli(
        "train", "multitask", "--epochs", "1", "--backbone", "lenet", "--no-evaluate", "--runs-dir", tmp_path / "runs",
        "--name", "prepared", "--set", f"data.prepared={tmp_path / 'prepared'}", "--set", "options.pseudo_labels=none",
    )
    assert code == 0, err
    assert (tmp_path / "runs" / "prepared" / "model.keras").is_file()


def small_gender_folders(data):
    """The training folders only: 10 faces per gender class and 5 per emotion class, copied from the sample."""
    for name in ("female", "male"):
        copy_sample_images(SAMPLE / "gender" / "Training" / name, data / "gender" / "Training" / name, 10)
    for name in ("happy", "sad"):
        copy_sample_images(SAMPLE / "fer2013" / "train" / name, data / "fer2013" / "train" / name, 5)


def test_a_changed_folder_is_prepared_again_with_its_new_counts(tmp_path):
    data = tmp_path / "data"
    small_gender_folders(data)
    config = DataConfig(data_dir=str(data))
    before = prepared.counts(prepared.task_builders(config, data, tmp_path / "prepared", seed=0)[GENDER])
    deleted = sorted((data / "gender" / "Training" / "female").iterdir())[:4]
    for path in deleted:
        path.unlink()

    gender = prepared.task_builders(config, data, tmp_path / "prepared", seed=0)[GENDER]

    after = prepared.counts(gender)
    assert sum(after["kept"].values()) == sum(before["kept"].values()) - 4
    kept = file_names(gender, "train") + file_names(gender, "validation")
    assert not {f"female/{path.name}" for path in deleted} & set(kept)


def stored_images(builder) -> dict[str, np.ndarray]:
    """file name -> the pixels its record holds, over both splits."""
    return {example["file_name"].decode(): example["image"] for split in ("train", "validation")
            for example in prepared.read(builder, split, 0).as_numpy_iterator()}


def test_a_file_rewritten_under_its_name_or_a_file_added_is_prepared_again(tmp_path):
    data = tmp_path / "data"
    small_gender_folders(data)
    config = DataConfig(data_dir=str(data))
    female = data / "gender" / "Training" / "female"
    before = prepared.task_builders(config, data, tmp_path / "prepared", seed=0)[GENDER]
    rewritten = sorted(female.iterdir())[0]
    other_face = sorted((SAMPLE / "gender" / "Training" / "male").iterdir())[-1]
    assert other_face.stat().st_size != rewritten.stat().st_size
    rewritten.write_bytes(other_face.read_bytes())  # same name, new size and time
    copy_sample_images(SAMPLE / "gender" / "Training" / "female", tmp_path / "more", 11)
    added = female / "added.jpg"
    added.write_bytes(sorted((tmp_path / "more").iterdir())[-1].read_bytes())

    after = prepared.task_builders(config, data, tmp_path / "prepared", seed=0)[GENDER]

    assert after.data_dir != before.data_dir
    assert sum(prepared.counts(after)["kept"].values()) == sum(prepared.counts(before)["kept"].values()) + 1
    stored = stored_images(after)
    assert "female/added.jpg" in stored
    new_pixels = decode_and_resize(tf.io.read_file(str(rewritten)), config.image_size).numpy()
    assert np.array_equal(stored[f"female/{rewritten.name}"], new_pixels)
    assert not np.array_equal(stored_images(before)[f"female/{rewritten.name}"], new_pixels)


def test_a_truncated_record_file_is_one_sentence_before_any_run(tmp_path):
    data = tmp_path / "data"
    small_gender_folders(data)
    config = DataConfig(data_dir=str(data))
    gender = prepared.task_builders(config, data, tmp_path / "prepared", seed=0)[GENDER]
    record = next(Path(gender.data_dir).glob("*train.tfrecord*"))
    record.write_bytes(record.read_bytes()[:-100])

    with pytest.raises(UserError, match=r"The prepared dataset '.*' is damaged: its train records hold \d+ bytes"):
        prepared.task_builders(config, data, tmp_path / "prepared", seed=0)


def test_only_a_kind_of_source_marked_preparable_is_prepared_and_another_is_one_sentence():
    assert prepared.only_folder(["gender/Training"], "data.gender_train") == "gender/Training"
    assert [name for name, kind in sources.KINDS.items() if kind.preparable] == ["folder"]
    with pytest.raises(UserError, match=r"data.prepared reads one class-folder source per task, but data.gender_train is \['utkface:utk'\]"):
        prepared.only_folder(["utkface:utk"], "data.gender_train")
