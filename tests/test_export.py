"""`mtl export`: the SavedModel and TFLite exports answer exactly as the Keras model does, on uint8 crops of any size,
RGB or grey, and describe themselves well enough to be served from the README's snippets, without mtl."""

import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import SAMPLE, run_cli
from mtl import export
from mtl.errors import DiskFull
from mtl.data.images import resize
from mtl.faces import CROP_MARGIN
from mtl.models.build import load_inference_model
from mtl.tasks import CLASSES
from photos import FEMALE_FACE, MALE_FACE, save_untrained_run, scaled_face

README = Path(__file__).resolve().parents[1] / "README.md"

ANSWERS = ("gender", "emotion", "four")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return save_untrained_run(tmp_path_factory.mktemp("run") / "untrained")


@pytest.fixture(scope="module")
def crops():
    """Two batches of real faces at sizes the model was not built for: 150 px high and 48x48 grey FER2013."""
    tall = np.stack([np.asarray(scaled_face(face).resize((112, 150))) for face in (FEMALE_FACE, MALE_FACE)])
    fer = sorted((SAMPLE / "fer2013" / "test" / "sad").iterdir())[:3]
    small = np.stack([np.asarray(scaled_face(face, 48).resize((48, 48))) for face in fer])
    return [tall, small]


def keras_answers(run_dir, images):
    """What mtl's own pipeline answers: resize as every reader does, then the Keras model."""
    model = load_inference_model(run_dir / "model.keras")
    resized = np.stack([resize(tf.constant(image), 64).numpy() for image in images]).astype(np.float32)
    return {task: np.asarray(values) for task, values in model.predict_on_batch(resized).items()}


def grey(images):
    """The crops as one-channel grey [N, H, W, 1], and the same grey as RGB [N, H, W, 3] for the Keras model."""
    luma = np.stack([np.asarray(Image.fromarray(image).convert("L")) for image in images])[..., np.newaxis]
    return luma, np.repeat(luma, 3, axis=-1)


@pytest.fixture(scope="module")
def savedmodel(run_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("savedmodel") / "served"
    code, out, err = run_cli("export", run_dir, "--format", "savedmodel", "--output", output)
    assert code == 0, err
    return output


@pytest.fixture(scope="module")
def tflite(run_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("tflite") / "model.tflite"
    code, out, err = run_cli("export", run_dir, "--format", "tflite", "--output", output)
    assert code == 0, err
    return output


def test_the_savedmodel_answers_as_the_keras_model_does_on_rgb_and_grey_crops(run_dir, crops, savedmodel):
    served = tf.saved_model.load(str(savedmodel))
    for images in crops:
        for given, as_rgb in [(images, images), grey(images)]:
            answers = served.serve(tf.constant(given))
            for task, expected in keras_answers(run_dir, as_rgb).items():
                np.testing.assert_allclose(answers[task].numpy(), expected, atol=1e-4)


def test_the_tflite_file_answers_as_the_keras_model_does_on_rgb_and_grey_crops(run_dir, crops, tflite):
    interpreter = tf.lite.Interpreter(model_path=str(tflite))
    serve = interpreter.get_signature_runner(export.SIGNATURE)
    for images in crops:
        for given, as_rgb in [(images, images), grey(images)]:
            answers = serve(images=given)
            for task, expected in keras_answers(run_dir, as_rgb).items():
                np.testing.assert_allclose(answers[task], expected, atol=1e-3)


def test_each_export_holds_its_class_names_input_and_framing_rule(run_dir, savedmodel, tflite):
    expected = export.contract(load_inference_model(run_dir / "model.keras"), run_dir / "model.keras")
    assert expected["exported_from"]["file"] == "model.keras"  # with its SHA-256: mtl.lite tells a stale export by it
    assert {task: output["classes"] for task, output in expected["outputs"].items()} == {
        task: list(CLASSES[task]) for task in ("gender", "emotion", "four")
    }
    assert expected["framing"]["crop_margin"] == CROP_MARGIN

    served = tf.saved_model.load(str(savedmodel))
    assert json.loads(served.describe()["contract"].numpy()) == expected
    assert json.loads((savedmodel / "assets" / export.CONTRACT_FILE).read_text()) == expected

    from tensorflow.lite.tools import flatbuffer_utils

    flatbuffer = flatbuffer_utils.read_model(str(tflite))
    [entry] = [entry for entry in flatbuffer.metadata if entry.name == export.METADATA_NAME.encode()]
    assert json.loads(bytes(flatbuffer.buffers[entry.buffer].data)) == expected
    assert json.loads(Path(f"{tflite}.json").read_text()) == expected
    interpreter = tf.lite.Interpreter(model_path=str(tflite))
    assert sorted(detail["name"] for detail in interpreter.get_output_details()) == ["emotion", "four", "gender"]
    assert [detail["name"] for detail in interpreter.get_input_details()] == ["images"]


def readme_snippet(loads: str) -> str:
    """The README's Python snippet that calls `loads`: it must run with TensorFlow alone."""
    [snippet] = [block for block in re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if loads in block]
    assert "mtl" not in re.sub(r'"[^"]*"', "", snippet).replace("mtl_contract", "")  # no import of mtl
    return snippet


@pytest.mark.parametrize("loads", ["tf.saved_model.load(", "tf.lite.Interpreter("])
def test_the_readme_snippets_serve_an_export_with_tensorflow_alone(loads, savedmodel, tflite, tmp_path):
    (tmp_path / "served").symlink_to(savedmodel, target_is_directory=True)
    (tmp_path / "model.tflite").symlink_to(tflite)
    (tmp_path / "model.tflite.json").symlink_to(f"{tflite}.json")
    scaled_face(FEMALE_FACE).save(tmp_path / "face.jpg")

    # A fresh interpreter in an empty folder: nothing of mtl is imported or importable from the working directory.
    done = subprocess.run([sys.executable, "-c", readme_snippet(loads)], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["gender", "emotion", "four"]
    assert all(line.split()[1] in CLASSES[line.split()[0]] for line in lines)


def test_export_refuses_an_existing_output_one_under_a_file_a_dangling_link_and_a_missing_model(run_dir, tmp_path, monkeypatch):
    (tmp_path / "taken").mkdir()
    code, _, err = run_cli("export", run_dir, "--output", tmp_path / "taken")
    assert code == 2 and str(tmp_path / "taken") in err and "already exists" in err

    (tmp_path / "a_file").write_text("")
    code, _, err = run_cli("export", run_dir, "--output", tmp_path / "a_file" / "model")
    assert code == 2 and f"'{tmp_path / 'a_file'}' is a file" in err and len(err.strip().splitlines()) == 1

    (tmp_path / "dangling").symlink_to(tmp_path / "elsewhere" / "model.tflite")
    code, _, err = run_cli("export", run_dir, "--format", "tflite", "--output", tmp_path / "dangling")
    assert code == 2 and "symbolic link" in err and not (tmp_path / "elsewhere").exists()

    (tmp_path / "model.tflite.json").write_text("{}")  # where the TFLite file's description would go
    code, _, err = run_cli("export", run_dir, "--format", "tflite", "--output", tmp_path / "model.tflite")
    assert code == 2 and "already exists" in err and not (tmp_path / "model.tflite").exists()

    monkeypatch.setattr(export, "bundled_model_path", lambda: tmp_path / "nothing" / "model.keras")
    code, _, err = run_cli("export", "--output", tmp_path / "new")
    assert code == 2 and "no bundled model" in err and len(err.strip().splitlines()) == 1


def test_an_export_that_fails_halfway_leaves_nothing_at_its_name_and_the_retry_succeeds(run_dir, tmp_path, monkeypatch):
    def disk_fills(write):
        """`write`, which does its part and then meets a full disk: where a kill or a full disk stops an export."""
        def written_halfway(*args, **kwargs):
            write(*args, **kwargs)
            raise OSError(errno.ENOSPC, "No space left on device")
        return written_halfway

    write_bytes = Path.write_bytes
    faults = {  # the SavedModel written but for the last file, the TFLite file half written, when the disk fills
        "savedmodel": (export, "write_savedmodel", disk_fills(export.write_savedmodel)),
        "tflite": (Path, "write_bytes", disk_fills(lambda path, data: write_bytes(path, data[: len(data) // 2]))),
    }
    for format, output, before in [("savedmodel", tmp_path / "served", []),
                                   ("tflite", tmp_path / "model.tflite", ["served"])]:
        with monkeypatch.context() as patched:
            patched.setattr(*faults[format])
            with pytest.raises(DiskFull, match=rf"^The disk holding '{output}' is full"):
                export.export_command(str(run_dir), format, output)
        assert os.listdir(tmp_path) == before  # nothing of the failed export, not even a temporary file

        export.export_command(str(run_dir), format, output)  # the same command again: nothing blocks it
    assert tf.saved_model.load(str(tmp_path / "served")).serve is not None
    assert tf.lite.Interpreter(model_path=str(tmp_path / "model.tflite")).get_signature_list()
    assert sorted(os.listdir(tmp_path)) == ["model.tflite", "model.tflite.json", "served"]


@pytest.mark.parametrize("shape", [(150, 112), (48, 48), (7, 300), (64, 64)])
def test_the_tflite_resize_gives_the_pixels_of_mtls_resize(shape):
    images = np.random.default_rng(0).integers(0, 256, (2, *shape, 3), dtype=np.uint8)
    expected = np.stack([resize(tf.constant(image), 64).numpy() for image in images]).astype(int)
    got = export.matrix_resize(tf.constant(images), 64).numpy().astype(int)
    assert np.abs(got - expected).max() <= 1  # a tie at .5 may round the other way
    assert (got == expected).mean() > 0.99
