"""The Python API: `mtl.load()` gives a predictor whose `predict` takes paths, folders, PIL images and numpy
arrays, one or many, and returns plain results; the README's example runs as written."""

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mtl
from mtl.errors import UserError
from mtl.predict import Face, ImageResult
from photos import FEMALE_FACE, compose_photo, save_untrained_run

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "experiments" / "example" / "photo.jpg"


def readme_python_example() -> str:
    """The first ```python block of the README's "Use it from Python" section."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Use it from Python"):]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    return mtl.load(save_untrained_run(tmp_path_factory.mktemp("run") / "untrained"))


def test_the_readme_example_runs_on_the_example_photo_and_folder(monkeypatch):
    monkeypatch.chdir(REPO)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(readme_python_example(), {})
    lines = printed.getvalue().splitlines()
    probability = r"(0\.\d\d|1\.00)"  # printed to two places: a sure answer reads 1.00
    assert re.fullmatch(rf"female {probability}, happy {probability}, at x=70 y=68", lines[0]), lines
    assert re.fullmatch(rf"male {probability}, happy {probability}, at x=316 y=68", lines[1]), lines
    assert lines[2:] == ["experiments/example/photo.jpg ['happy_female', 'happy_male']"]


def test_one_image_gives_one_result_of_faces_with_boxes_and_answers(predictor, tmp_path):
    places = compose_photo(tmp_path / "two.png")
    result = predictor.predict(tmp_path / "two.png")

    assert isinstance(result, ImageResult) and result.source == str(tmp_path / "two.png") and result.error is None
    assert len(result.faces) == len(places) and all(isinstance(face, Face) for face in result.faces)
    for face in result.faces:
        assert face.gender.label in ("female", "male") and face.emotion.label in ("happy", "sad")
        assert sum(face.four.probabilities.values()) == pytest.approx(1, abs=1e-5)


def test_a_pil_image_and_its_numpy_array_get_the_answers_of_its_file(predictor, tmp_path):
    compose_photo(tmp_path / "two.png")
    from_file = predictor.predict(tmp_path / "two.png")
    with Image.open(tmp_path / "two.png") as picture:
        from_pil = predictor.predict(picture)
        from_array = predictor.predict(np.asarray(picture.convert("RGB")))
    for result in (from_pil, from_array):
        assert result.source == "image 1"
        assert [face.gender.probabilities["male"] for face in result.faces] == pytest.approx(
            [face.gender.probabilities["male"] for face in from_file.faces])


def test_many_images_give_a_list_in_order_and_a_bad_one_carries_its_sentence(predictor, tmp_path):
    compose_photo(tmp_path / "two.png")
    results = predictor.predict([tmp_path / "two.png", tmp_path / "gone.jpg", np.zeros((50, 60, 3), np.uint8)])

    assert [len(result.faces) for result in results] == [2, 0, 0]
    assert "does not exist" in results[1].error and results[2].error is None


def test_crops_are_taken_whole_without_detection(predictor):
    with Image.open(FEMALE_FACE) as face:
        crops = np.stack([np.asarray(face.convert("RGB").resize((64, 64)))] * 3)
    results = predictor.predict(crops, detect=False)
    assert [len(result.faces) for result in results] == [1, 1, 1] and results[0].faces[0].box is None


@pytest.mark.parametrize("image, fragment", [
    (np.zeros((10, 10, 3), np.float32), "float32 pixels; expected uint8"),
    (np.zeros((10, 10, 2), np.uint8), "has shape (10, 10, 2)"),
    ("gone.jpg", "does not exist"),
])
def test_one_unusable_image_is_one_sentence(predictor, image, fragment):
    with pytest.raises(UserError, match=re.escape(fragment)):
        predictor.predict(image)


def test_importing_mtl_loads_no_tensorflow():
    check = "import sys, mtl; assert not any(m.startswith(('tensorflow', 'keras')) for m in sys.modules)"
    subprocess.run([sys.executable, "-c", check], check=True, timeout=60,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
