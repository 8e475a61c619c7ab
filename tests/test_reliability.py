"""Every bad input has a defined outcome: processed, left out with a count, or refused in one sentence.

Each test is one row of the reliability table (issue 11): broken and odd image files, decompression
bombs, odd class folders, odd HDF5 files, run names that would escape --runs-dir, files that a
kill at any moment must leave whole, and figures that `evaluate --overwrite` must not leave stale. The fuzz tests feed random and odd-but-valid files
through both decode paths: `read_image` (what `mtl predict` uses) and the tf.data decode of folders.
"""

import io
import json
import logging
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import SAMPLE, copy_sample_images, run_cli, write_image
from mtl.config import DataConfig
from mtl.data import pipeline, sources
from mtl import faces
from mtl.data.images import MAX_FILE_BYTES, MAX_PIXELS, decode_and_resize, looks_like_image, read_image
from mtl.data.pipeline import ExperimentData
from mtl.errors import UserError
from mtl.runs import (
    EVALUATION_DIR, MAX_NAME_LENGTH, METRICS_FILE, MODEL_FILE, atomic_path, evaluation_dir, replaced_folder,
    run_directory, write_json,
)
from mtl.tasks import EMOTION, GENDER

SIZE = 32
ROOT = Path(__file__).resolve().parents[1]


def elements(dataset):
    return list(dataset.as_numpy_iterator())


def one_file_source(path) -> sources.ImageSource:
    return sources.ImageSource("one", np.array([str(path)]), {GENDER: np.array([0]), EMOTION: np.array([-1])})


def garbled(path):
    """Keep the first 400 bytes (the JPEG header), replace the body by noise: it still looks like a JPEG."""
    whole = path.read_bytes()
    noise = np.random.default_rng(len(whole)).integers(0, 256, len(whole) - 400, dtype=np.uint8).tobytes()
    path.write_bytes(whole[:400] + noise)


def left_out_warnings(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if "left out" in record.getMessage()]


# ---------------------------------------------------------------- undecodable files ---------


def test_corrupt_images_are_left_out_and_counted_per_source(tmp_path, caplog):
    root = tmp_path / "gender"
    females = copy_sample_images(SAMPLE / "gender" / "Training" / "female", root / "female", 5)
    copy_sample_images(SAMPLE / "gender" / "Training" / "male", root / "male", 4)
    garbled(females[0])
    garbled(females[1])
    females[2].write_bytes(females[2].read_bytes()[:300])

    with caplog.at_level(logging.WARNING, logger="mtl.data.sources"):
        source = sources.task_folder(root, GENDER)

    assert len(source) == 6 and np.bincount(source.labels[GENDER]).tolist() == [2, 4]
    assert len(elements(source.dataset(SIZE))) == len(source)  # the printed count is what is used
    [warning] = left_out_warnings(caplog)
    assert f"Gender dataset: left out 3 image files in '{root}'" in warning and "(female: 3)" in warning


def test_a_class_whose_images_all_fail_to_decode_is_refused_before_a_run_exists(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    sad = data / "fer2013" / "train" / "sad"
    for face in sad.iterdir():
        face.write_bytes(face.read_bytes()[:100])

    with pytest.raises(UserError) as error:
        ExperimentData.load(DataConfig(data_dir=str(data)), seed=0)
    code, _, err = run_cli("train", "separate", "--data-dir", data, "--runs-dir", tmp_path / "runs", "--name", "x")

    assert f"Class folder '{sad}' holds no decodable images" in str(error.value)
    assert code == 2 and str(sad) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs" / "x").exists()


def test_test_set_readers_leave_undecodable_images_out(tmp_path, joint_folder, caplog):
    data, joint = tmp_path / "data", tmp_path / "joint"
    shutil.copytree(SAMPLE, data)
    shutil.copytree(joint_folder, joint)
    happy = sorted((data / "fer2013" / "test" / "happy").iterdir())
    happy[0].write_bytes(happy[0].read_bytes()[:100])
    (joint / "sad_male" / "odd_3.bmp").write_bytes(b"BM" + bytes(40))

    with caplog.at_level(logging.WARNING, logger="mtl.data.sources"):
        tests = pipeline.test_sets(DataConfig(data_dir=str(data), joint_test=str(joint)))

    assert len(tests["emotion_test"]) == len(happy) + len(list((data / "fer2013" / "test" / "sad").iterdir())) - 1
    assert len(tests["joint_test"]) == 15
    warnings = left_out_warnings(caplog)
    assert any("Emotion dataset: left out 1 image file in" in w and "(happy: 1)" in w for w in warnings)
    assert any("Joint dataset: left out 1 image file in" in w and "(sad_male: 1)" in w for w in warnings)


# ---------------------------------------------------------------- formats and folders -------


@pytest.mark.parametrize("suffix", ["webp", "tif", "tiff"])
def test_webp_and_tiff_in_a_data_folder_are_used_like_predict_uses_them(tmp_path, suffix):
    root = tmp_path / "gender"
    copy_sample_images(SAMPLE / "gender" / "Training" / "female", root / "female", 1)
    copy_sample_images(SAMPLE / "gender" / "Training" / "male", root / "male", 1)
    path = write_image(root / "male" / f"face.{suffix}", "RGB", size=(30, 20))

    source = sources.task_folder(root, GENDER)
    by_path = {path_: image for path_, (image, _) in zip(source.paths, elements(source.dataset(SIZE)))}

    assert str(path) in by_path and len(source) == 3
    assert np.array_equal(by_path[str(path)], read_image(path, SIZE))


def test_class_folders_differing_only_in_case_are_refused_naming_both(tmp_path):
    copy_sample_images(SAMPLE / "gender" / "Training" / "female", tmp_path / "Female", 2)
    copy_sample_images(SAMPLE / "gender" / "Training" / "female", tmp_path / "female", 2)
    copy_sample_images(SAMPLE / "gender" / "Training" / "male", tmp_path / "male", 2)

    with pytest.raises(UserError) as error:
        sources.task_folder(tmp_path, GENDER)

    assert "'Female'" in str(error.value) and "'female'" in str(error.value) and str(tmp_path) in str(error.value)


# ---------------------------------------------------------------- decompression bombs -------


def png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header (IHDR, with a valid checksum) claims width x height."""
    picture = io.BytesIO()
    Image.new("L", (1, 1)).save(picture, format="PNG")
    data = bytearray(picture.getvalue())
    header = b"IHDR" + struct.pack(">II", width, height) + bytes(data[24:29])
    data[12:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(header))
    return bytes(data)


def bmp_claiming(width: int, height: int) -> bytes:
    """A 1x1 BMP (decoded by Pillow) whose header claims width x height."""
    picture = io.BytesIO()
    Image.new("RGB", (1, 1)).save(picture, format="BMP")
    data = bytearray(picture.getvalue())
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def jpeg_claiming(width: int, height: int) -> bytes:
    """An 8x8 JPEG whose start-of-frame header claims width x height."""
    picture = io.BytesIO()
    Image.new("L", (8, 8)).save(picture, format="JPEG")
    data = bytearray(picture.getvalue())
    frame = data.index(b"\xff\xc0")
    data[frame + 5 : frame + 9] = struct.pack(">HH", height, width)
    return bytes(data)


BOMBS = {"png": png_claiming(9000, 5000), "bmp": bmp_claiming(9000, 5000), "jpg": jpeg_claiming(9000, 5000)}


@pytest.mark.parametrize("suffix", sorted(BOMBS))
def test_an_image_claiming_more_than_the_pixel_limit_is_refused_by_predict(tmp_path, suffix):
    path = tmp_path / f"bomb.{suffix}"
    path.write_bytes(BOMBS[suffix])

    for reader in (lambda p: read_image(p, SIZE), faces.read_photo):  # the crop path and the detection path
        with pytest.raises(UserError, match=f"larger than the limit of {MAX_PIXELS} pixels"):
            reader(path)
    assert elements(one_file_source(path).dataset(SIZE)) == []


def test_an_image_over_the_pixel_limit_is_refused_with_annotate_and_nothing_is_written(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(BOMBS["png"])

    code, out, err = run_cli("predict", path, "--annotate", tmp_path / "annotated")

    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"larger than the limit of {MAX_PIXELS} pixels" in err and out == ""
    assert not (tmp_path / "annotated").exists()


def test_an_image_file_over_the_size_limit_is_refused_without_being_read(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(png_claiming(10, 10))
    os.truncate(path, MAX_FILE_BYTES + 1)  # sparse: no disk used, and nothing read if the limit holds
    assert path.stat().st_size == MAX_FILE_BYTES + 1

    assert not looks_like_image(path)
    for reader in (lambda p: read_image(p, SIZE), faces.read_photo):
        with pytest.raises(UserError, match=rf"^Image '{path}' is {MAX_FILE_BYTES + 1} bytes, over the limit of "):
            reader(path)


def test_images_over_the_pixel_limit_in_a_folder_are_left_out_and_counted(tmp_path, caplog):
    root = tmp_path / "emotion"
    copy_sample_images(SAMPLE / "fer2013" / "train" / "happy", root / "happy", 2)
    copy_sample_images(SAMPLE / "fer2013" / "train" / "sad", root / "sad", 2)
    for suffix, data in BOMBS.items():
        (root / "sad" / f"bomb.{suffix}").write_bytes(data)
    # A real one too: 48 megapixels of black, a 50 kB file that TensorFlow would happily decode.
    Image.new("L", (8000, 6000)).save(root / "happy" / "black.png")

    with caplog.at_level(logging.WARNING, logger="mtl.data.sources"):
        source = sources.task_folder(root, EMOTION)

    assert len(source) == 4
    [warning] = left_out_warnings(caplog)
    assert "left out 4 image files" in warning and f"4 of them over the limit of {MAX_PIXELS} pixels" in warning


# ---------------------------------------------------------------- Happy House HDF5 ----------


def happy_house_file(path, images, labels, prefix="test_set"):
    with h5py.File(path, "w") as file:
        file[f"{prefix}_x"] = images
        file[f"{prefix}_y"] = labels
    return path


def house_images(source) -> np.ndarray:
    return np.stack([image for image, _ in elements(source.dataset(8))])


def house_emotions(source) -> list[int]:
    return [int(labels[EMOTION]) for _, labels in elements(source.dataset(8))]


def test_happy_house_floats_in_0_1_are_scaled_to_0_255_and_floats_in_0_255_kept(tmp_path):
    grey = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3)).astype(np.uint8)
    as_uint8 = sources.happy_house(happy_house_file(tmp_path / "a.h5", grey, [1, 0, 1]))
    unit = sources.happy_house(happy_house_file(tmp_path / "b.h5", grey.astype(np.float32) / 255, [1, 0, 1]))
    wide = sources.happy_house(happy_house_file(tmp_path / "c.h5", grey.astype(np.float64), [1, 0, 1]))

    assert np.array_equal(house_images(unit), house_images(as_uint8))  # not black
    assert np.array_equal(house_images(wide), house_images(as_uint8))
    assert house_images(unit).max() > 200


@pytest.mark.parametrize(
    "labels",
    [[b"happy", b"not happy", b"happy"], ["Happy", "not_happy", "happy"], np.array([1.0, 0.0, 1.0])],
    ids=["bytes", "text", "floats"],
)
def test_happy_house_text_or_float_labels_mean_happy_and_not_happy(tmp_path, labels):
    source = sources.happy_house(happy_house_file(tmp_path / "h.h5", np.zeros((3, 8, 8, 3), np.uint8), labels))

    assert house_emotions(source) == [0, 1, 0]  # happy, sad, happy


@pytest.mark.parametrize(
    "images,labels,expected",
    [
        (np.zeros((0, 8, 8, 3), np.uint8), np.zeros(0), "holds no images"),
        (np.zeros((3, 8, 8, 3), np.uint8), np.zeros(2), "but 2 labels"),
        (np.zeros((2, 8, 8, 3), np.uint8), [b"happy", b"angry"], "the label 'angry'"),
        (np.zeros((2, 8, 8, 3), np.uint8), [1, 2], "the label 2"),
        (np.full((2, 8, 8, 3), 300.0), [1, 0], "values from 300.0 to 300.0"),
        (np.full((2, 8, 8, 3), np.nan), [1, 0], "NaN"),
        (np.zeros((2, 8, 8, 2), np.uint8), [1, 0], "has shape"),
    ],
    ids=["no rows", "mismatched lengths", "unknown word", "label 2", "over 255", "nan", "two channels"],
)
def test_odd_happy_house_files_are_refused_in_one_sentence(tmp_path, images, labels, expected):
    path = happy_house_file(tmp_path / "h.h5", images, labels)

    with pytest.raises(UserError, match=expected) as error:
        sources.happy_house(path)
    assert str(path) in str(error.value)


def test_happy_house_group_where_an_array_should_be_is_refused(tmp_path):
    path = tmp_path / "h.h5"
    with h5py.File(path, "w") as file:
        file.create_group("test_set_x")
        file["test_set_y"] = [1, 0]

    with pytest.raises(UserError, match="'test_set_x' is a group, expected an array"):
        sources.happy_house(path)


# ---------------------------------------------------------------- run directories -----------


def tree(folder) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


@pytest.mark.parametrize("name", ["../x", "a/b", "ABSOLUTE", "x" * 300, "..", ".hidden"])
@pytest.mark.parametrize("command", ["train", "compare"])
def test_run_names_that_are_not_one_plain_folder_name_are_refused_and_nothing_is_written(tmp_path, command, name):
    work = tmp_path / "work"
    work.mkdir()
    name = str(tmp_path / "elsewhere") if name == "ABSOLUTE" else name
    arguments = ["separate"] if command == "train" else ["--variants", "separate"]

    code, _, err = run_cli(command, *arguments, "--epochs", "1", "--runs-dir", work / "runs", "--name", name)

    assert code == 2 and len(err.strip().splitlines()) == 1 and "is not a plain folder name" in err
    assert tree(tmp_path) == {"work"}


@pytest.mark.parametrize("where", ["runs_file", "runs_file/deeper"])
def test_a_runs_dir_that_is_or_lies_in_a_file_is_refused_in_one_sentence(tmp_path, where):
    (tmp_path / "runs_file").write_text("a file, not a folder")

    code, _, err = run_cli("train", "separate", "--epochs", "1", "--runs-dir", tmp_path / where, "--name", "x")

    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"'{tmp_path / 'runs_file'}' is a file, not a folder" in err
    assert (tmp_path / "runs_file").read_text() == "a file, not a folder"


def test_plain_run_names_are_accepted_inside_runs_dir(tmp_path):
    for name in ["20260101-120000-separate-lenet", "lr=0.01,batch@64+aug", "a" * MAX_NAME_LENGTH]:
        assert run_directory(tmp_path / "runs", name) == tmp_path / "runs" / name
    assert not (tmp_path / "runs").exists()  # checking makes nothing


# ---------------------------------------------------------------- atomic artifacts ----------


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("old")

    with pytest.raises(RuntimeError), atomic_path(path) as temporary:
        temporary.write_text("half of the new")
        raise RuntimeError("killed")

    assert path.read_text() == "old" and tree(tmp_path) == {"metrics.json"}


def test_a_process_killed_while_writing_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"accuracy": 0.5})
    writer = (
        "import os, signal, sys\n"
        "from mtl.runs import atomic_path\n"
        "with atomic_path(sys.argv[1]) as temporary:\n"
        "    temporary.write_text('{\"accuracy\": 0.')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )

    finished = subprocess.run([sys.executable, "-c", writer, str(path)], env={**os.environ, "PYTHONPATH": str(ROOT)})

    assert finished.returncode == -signal.SIGKILL
    assert json.loads(path.read_text()) == {"accuracy": 0.5}
    # What the kill left is a hidden temporary, which no reader of the folder picks up.
    assert all(name == "metrics.json" or name.startswith(".metrics.json.") for name in tree(tmp_path))


def test_json_artifacts_are_strict_with_nan_and_infinity_as_null(tmp_path):
    path = tmp_path / "four_class_training.json"

    write_json(path, {"best_value": -math.inf, "history": {"loss": [1.5, math.nan, math.inf]}, "epochs": 2})

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    saved = json.loads(path.read_text(), parse_constant=refuse)
    assert saved == {"best_value": None, "history": {"loss": [1.5, None, None]}, "epochs": 2}


def test_a_model_saved_through_a_temporary_name_loads(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with atomic_path(tmp_path / MODEL_FILE) as temporary:
        model.save(temporary)

    assert tree(tmp_path) == {MODEL_FILE}
    assert keras.models.load_model(tmp_path / MODEL_FILE).count_params() == model.count_params()


# ---------------------------------------------------------------- evaluate --overwrite ------


def test_a_replaced_folder_keeps_nothing_of_the_old_one_and_survives_a_failure(tmp_path):
    folder = tmp_path / EVALUATION_DIR
    folder.mkdir()
    (folder / "confusion_old_set_gender.png").write_bytes(b"stale")

    with pytest.raises(RuntimeError), replaced_folder(folder) as new:
        (new / "confusion_gender_test_gender.png").write_bytes(b"half")
        raise RuntimeError("evaluation failed")
    assert tree(tmp_path) == {EVALUATION_DIR, f"{EVALUATION_DIR}/confusion_old_set_gender.png"}

    with replaced_folder(folder) as new:
        (new / "confusion_gender_test_gender.png").write_bytes(b"fresh")
    assert tree(tmp_path) == {EVALUATION_DIR, f"{EVALUATION_DIR}/confusion_gender_test_gender.png"}


def test_the_run_metrics_and_its_figures_are_where_train_writes_them(tmp_path):
    assert evaluation_dir(tmp_path / METRICS_FILE) == tmp_path / EVALUATION_DIR
    assert evaluation_dir(tmp_path / "joint.json") == tmp_path / "joint_evaluation"


@pytest.mark.slow
def test_evaluate_overwrite_replaces_the_figures_of_the_run(tmp_path, trained_run):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run[0], run_dir)
    stale = run_dir / EVALUATION_DIR / "confusion_removed_set_gender.png"
    stale.write_bytes(b"from an earlier evaluation")
    before = {path.name: path.stat().st_mtime_ns for path in (run_dir / EVALUATION_DIR).iterdir()}

    code, _, err = run_cli("evaluate", run_dir, "--overwrite")

    assert code == 0, err
    figures = {path.name: path.stat().st_mtime_ns for path in (run_dir / EVALUATION_DIR).iterdir()}
    assert stale.name not in figures and "confusion_gender_test_gender.png" in figures
    assert all(figures[name] > before[name] for name in figures if name in before)
    assert not (run_dir / "metrics_evaluation").exists()


# ---------------------------------------------------------------- fuzzing -------------------

SIGNATURES = [b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"II*\x00", b"RIFF\x00\x00\x00\x00WEBP"]
MODES = ["L", "LA", "RGB", "RGBA", "P", "I;16", "1"]
FORMATS = ["PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"]
FUZZ = settings(
    max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# The graph op that every folder's tf.data map runs, traced once: a tf.data pipeline per example
# would cost half a second each. The tests above run the pipeline itself on broken files.
folder_decode = tf.function(
    lambda encoded: decode_and_resize(encoded, SIZE), input_signature=[tf.TensorSpec([], tf.string)]
)


def decoded_both_ways(tmp_path, data: bytes):
    """(read_image's image, the folder decode's image), None where refused: never anything else."""
    path = tmp_path / "fuzz.img"
    path.write_bytes(data)
    try:
        from_file = read_image(path, SIZE)
    except UserError as error:
        assert len(str(error).splitlines()) == 1
        from_file = None
    try:
        from_folder = folder_decode(tf.constant(data)).numpy()
    except tf.errors.InvalidArgumentError:  # what tf.data's ignore_errors drops
        from_folder = None
    for image in (from_file, from_folder):
        assert image is None or (image.dtype == np.uint8 and image.shape == (SIZE, SIZE, 3))
    return from_file, from_folder


@FUZZ
@given(head=st.sampled_from(SIGNATURES), body=st.binary(max_size=600))
def test_random_bytes_decode_to_an_image_or_are_refused(tmp_path, head, body):
    decoded_both_ways(tmp_path, head + body)


@st.composite
def odd_images(draw) -> bytes:
    """A valid file: any of the modes and formats Pillow can save together, 1x1 to 300x300 pixels."""
    mode, file_format = draw(st.sampled_from(MODES)), draw(st.sampled_from(FORMATS))
    width, height = draw(st.integers(1, 300)), draw(st.integers(1, 300))
    pixels = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).integers(0, 256, (height, width, 4), np.uint8)
    if mode == "I;16":
        picture = Image.fromarray(pixels[..., 0].astype(np.uint16) * 257)  # the full 16-bit range
    else:
        picture = Image.fromarray(pixels).convert(mode)
    encoded = io.BytesIO()
    try:
        picture.save(encoded, format=file_format)
    except (OSError, ValueError, KeyError):  # a combination the format cannot store (JPEG with alpha, ...)
        assume(False)
    return encoded.getvalue()


@FUZZ
@given(data=odd_images())
def test_odd_but_valid_images_decode_the_same_way_for_predict_and_for_folders(tmp_path, data):
    from_file, from_folder = decoded_both_ways(tmp_path, data)

    assert from_file is not None and from_folder is not None
    assert np.array_equal(from_file, from_folder)


@FUZZ
@given(data=odd_images(), cut=st.floats(0, 1), flips=st.lists(st.integers(0, 10**6), max_size=8))
def test_damaged_images_decode_to_an_image_or_are_refused(tmp_path, data, cut, flips):
    damaged = bytearray(data[: max(1, int(len(data) * cut))])
    for position in flips:
        damaged[position % len(damaged)] ^= 0xFF
    decoded_both_ways(tmp_path, bytes(damaged))


# ------------------------------------------- bounded memory and one decode (issue 20) ----------------


def test_a_fifo_or_a_device_is_refused_in_one_sentence_without_being_read(tmp_path):
    from mtl import faces
    from mtl.data.images import looks_like_image

    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    for path in (fifo, Path("/dev/zero")):
        assert not looks_like_image(path)
        for reader in (lambda p: read_image(p, SIZE), faces.read_photo):
            with pytest.raises(UserError, match=rf"Image '{path}' is not a regular file"):
                reader(path)


def test_a_keras_file_whose_json_would_inflate_past_the_limit_is_refused_without_inflating(tmp_path):
    from mtl.models.build import load_inference_model

    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", "{}")
    # The central directory claims 1 GiB for config.json, as a 4 MB file of zeros deflated would.
    data = bytearray(path.read_bytes())
    entry = data.rindex(b"PK\x01\x02")
    data[entry + 24 : entry + 28] = struct.pack("<I", 2**30)
    path.write_bytes(bytes(data))

    with pytest.raises(UserError, match=rf"Model file '{path}' would inflate to 1073741824 bytes"):
        load_inference_model(path)


def test_a_keras_file_holding_a_layer_not_a_model_is_refused_by_predict_evaluate_and_export(tmp_path):
    import keras
    from keras.src.saving import saving_lib  # keras.saving.save_model takes models only; a foreign tool need not

    from mtl.config import ExperimentConfig

    run = tmp_path / "run"
    run.mkdir()
    layer = keras.layers.Dense(3)
    layer.build((None, 4))
    saving_lib.save_model(layer, run / MODEL_FILE)
    (run / "config.json").write_text(json.dumps(ExperimentConfig().to_dict()))
    photo = write_image(tmp_path / "face.png", size=(64, 64))

    for command in (["predict", run, photo, "--no-detect", "--runtime", "keras"],
                    ["evaluate", run, "--output", tmp_path / "metrics.json"],
                    ["export", run, "--output", tmp_path / "exported"]):
        code, _, err = run_cli(*command)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert f"Model file '{run / MODEL_FILE}' holds a Dense layer, not a model" in err
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "exported").exists()


def test_a_happy_house_file_declaring_huge_images_is_refused_before_reading(tmp_path):
    path = tmp_path / "bomb.h5"
    with h5py.File(path, "w") as file:
        file.create_dataset("test_set_x", shape=(2, 40000, 40000, 3), dtype="uint8", chunks=(1, 64, 64, 3))
        file["test_set_y"] = np.array([0, 1])
    assert path.stat().st_size < 100_000

    with pytest.raises(UserError, match=r"has shape \(2, 40000, 40000, 3\); expected at most \d+ images of at most"):
        sources.happy_house(path)


def odd_image(path: Path, kind: str) -> Path:
    rng = np.random.default_rng(3)
    if kind == "16-bit grey png":
        Image.fromarray(rng.integers(0, 65536, (30, 40), dtype=np.uint16)).save(path)
    elif kind == "palette png":
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).convert("P").save(path)
    elif kind == "cmyk jpeg":
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).convert("CMYK").save(path)
    else:  # a portrait taken sideways: stored 40 wide and 30 high, to be turned upright (EXIF orientation 6)
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(path, exif=exif)
    return path


@pytest.mark.parametrize("kind", ["16-bit grey png", "palette png", "cmyk jpeg", "exif orientation 6 jpeg"])
def test_every_reader_gives_the_same_pixels_for_odd_formats(tmp_path, kind):
    from mtl import faces
    from mtl.data.images import resize

    path = odd_image(tmp_path / ("image.png" if "png" in kind else "image.jpg"), kind)

    folder = elements(one_file_source(path).dataset(SIZE))[0][0]  # how training reads a data folder
    no_detect = read_image(path, SIZE)  # mtl predict --no-detect
    photo = faces.read_photo(path)  # mtl predict, before detection
    detected = resize(tf.constant(photo), SIZE).numpy()

    np.testing.assert_array_equal(no_detect, folder)
    np.testing.assert_array_equal(detected, folder)
    if kind.startswith("exif"):
        assert photo.shape[:2] == (40, 30)  # upright
    if kind.startswith("16-bit"):
        assert photo.std() > 10  # the grey levels, not a white page
