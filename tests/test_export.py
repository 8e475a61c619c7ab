"""`mtl export`: the SavedModel and TFLite exports answer exactly as the Keras model does, on uint8 crops of any size."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import SAMPLE, run_cli
from mtl import export
from mtl.data.images import resize
from mtl.models.build import load_inference_model
from photos import FEMALE_FACE, MALE_FACE, save_untrained_run, scaled_face

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


def test_the_savedmodel_answers_as_the_keras_model_does(run_dir, crops, tmp_path):
    code, out, err = run_cli("export", run_dir, "--format", "savedmodel", "--output", tmp_path / "served")
    assert code == 0, err

    served = tf.saved_model.load(str(tmp_path / "served"))
    for images in crops:
        answers = served.serve(tf.constant(images))
        for task, expected in keras_answers(run_dir, images).items():
            np.testing.assert_allclose(answers[task].numpy(), expected, atol=1e-4)


def test_the_tflite_file_answers_as_the_keras_model_does(run_dir, crops, tmp_path):
    code, out, err = run_cli("export", run_dir, "--format", "tflite", "--output", tmp_path / "model.tflite")
    assert code == 0, err

    interpreter = tf.lite.Interpreter(model_path=str(tmp_path / "model.tflite"))
    serve = interpreter.get_signature_runner(export.SIGNATURE)
    for images in crops:
        answers = serve(images=images)
        for task, expected in keras_answers(run_dir, images).items():
            np.testing.assert_allclose(answers[task], expected, atol=1e-3)


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

    monkeypatch.setattr(export, "bundled_model_path", lambda: tmp_path / "nothing" / "model.keras")
    code, _, err = run_cli("export", "--output", tmp_path / "new")
    assert code == 2 and "no bundled model" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("shape", [(150, 112), (48, 48), (7, 300), (64, 64)])
def test_the_tflite_resize_gives_the_pixels_of_mtls_resize(shape):
    images = np.random.default_rng(0).integers(0, 256, (2, *shape, 3), dtype=np.uint8)
    expected = np.stack([resize(tf.constant(image), 64).numpy() for image in images]).astype(int)
    got = export.matrix_resize(tf.constant(images), 64).numpy().astype(int)
    assert np.abs(got - expected).max() <= 1  # a tie at .5 may round the other way
    assert (got == expected).mean() > 0.99
