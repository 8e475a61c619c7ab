"""`mtl predict` through LiteRT: the bundled model answers without loading TensorFlow, with the answers
its Keras model gives, and an export that was not made from the model beside it never answers."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import mtl
from conftest import SAMPLE, run_cli
from mtl import lite, predict
from mtl.data.images import decode, read_pixels
from mtl.errors import UserError
from mtl.runs import LITE_MODEL_FILE, MODEL_FILE
from photos import save_untrained_run

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "experiments" / "example" / "photo.jpg"
SHIPPED = Path(predict.__file__).parent / "pretrained"
# Sample images of every kind the bundled model meets: grey FER2013 crops, colour gender crops, UTKFace.
SAMPLE_IMAGES = sorted([*(SAMPLE / "fer2013" / "test").rglob("*.jpg")][:30] + [*(SAMPLE / "gender").rglob("*.jpg")][:30]
                       + [*(SAMPLE / "utkface").rglob("*.jpg")][:20])

pytestmark = pytest.mark.skipif(not lite.available(), reason="ai-edge-litert has no wheel for this platform")


def test_the_shipped_tflite_file_is_an_export_of_the_shipped_keras_model():
    assert lite.is_export_of(SHIPPED / LITE_MODEL_FILE, SHIPPED / MODEL_FILE), (
        "mtl/pretrained/model.tflite was not exported from mtl/pretrained/model.keras: run "
        "'mtl export --format tflite --output mtl/pretrained/model.tflite' (experiments/make_pretrained.sh does)")


def test_an_image_file_is_read_to_the_pixels_tensorflow_decodes_for_training():
    for path in [EXAMPLE, *SAMPLE_IMAGES]:
        assert np.array_equal(read_pixels(path), decode(tf.io.read_file(str(path))).numpy()), path


def test_litert_gives_the_answers_of_the_keras_model_on_photos_and_crops():
    through_lite, through_keras = mtl.load(runtime="litert"), mtl.load(runtime="keras")
    assert (through_lite.runtime, through_keras.runtime) == ("LiteRT", "Keras")
    for detect, images in ((True, [EXAMPLE]), (False, SAMPLE_IMAGES)):
        for ours, theirs in zip(through_lite.predict(images, detect=detect), through_keras.predict(images, detect=detect)):
            assert len(ours.faces) == len(theirs.faces) and ours.faces, ours.source
            for face, expected in zip(ours.faces, theirs.faces):
                assert face.box == expected.box
                for task in ("gender", "emotion", "four"):
                    assert face.answer(task).label == expected.answer(task).label, (ours.source, task)
                    for name, probability in face.answer(task).probabilities.items():
                        assert probability == pytest.approx(expected.answer(task).probabilities[name], abs=0.01)


@pytest.mark.slow
def test_a_photo_is_answered_in_a_fresh_process_without_tensorflow_and_without_noise():
    script = ("import sys, mtl; predictor = mtl.load(); result = predictor.predict(sys.argv[1]); "
              "print(predictor.runtime, len(result.faces), 'tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script, str(EXAMPLE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["LiteRT", "2", "False"]
    assert result.stderr == ""  # LiteRT's "Created TensorFlow Lite XNNPACK delegate" line is left out

    command = subprocess.run([sys.executable, "-m", "mtl.cli", "predict", str(EXAMPLE)], capture_output=True,
                             text=True, timeout=60, env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert command.returncode == 0, command.stderr
    assert command.stderr.splitlines() == [predict.which_model(SHIPPED, bundled=True, runtime="LiteRT")]
    assert command.stderr.rstrip().endswith(f"through LiteRT ({LITE_MODEL_FILE}).")


@pytest.fixture
def run_with_a_stale_export(tmp_path):
    """A run whose model.tflite (and its contract) is the bundled model's export, not its own model's."""
    run_dir = save_untrained_run(tmp_path / "run")
    shutil.copy(SHIPPED / LITE_MODEL_FILE, run_dir / LITE_MODEL_FILE)
    shutil.copy(lite.sidecar(SHIPPED / LITE_MODEL_FILE), lite.sidecar(run_dir / LITE_MODEL_FILE))
    return run_dir


def test_an_export_that_was_not_made_from_the_model_beside_it_never_answers(run_with_a_stale_export):
    assert mtl.load(run_with_a_stale_export).runtime == "Keras"
    with pytest.raises(UserError, match="was not exported from"):
        mtl.load(run_with_a_stale_export, runtime="litert")

    # Once the contract names the model beside it, the same file answers (here it is the bundled model's).
    contract_file = lite.sidecar(run_with_a_stale_export / LITE_MODEL_FILE)
    contract = json.loads(contract_file.read_text())
    contract["exported_from"]["sha256"] = lite.file_digest(run_with_a_stale_export / MODEL_FILE)
    contract_file.write_text(json.dumps(contract))
    assert mtl.load(run_with_a_stale_export).runtime == "LiteRT"


def test_asking_for_litert_where_it_cannot_answer_is_one_sentence(tmp_path):
    run_dir = save_untrained_run(tmp_path / "run")
    code, out, err = run_cli("predict", run_dir, EXAMPLE, "--runtime", "litert")
    assert code == 2 and out == "", err
    assert err.startswith("mtl: error: ") and len(err.strip().splitlines()) == 1, err
    assert f"has no {LITE_MODEL_FILE} for LiteRT; make it with 'mtl export {run_dir} --format tflite" in err
