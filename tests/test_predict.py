"""`mtl predict` on photographs, folders and face crops: every face found, one line (or JSON object) each,
annotated copies, and one sentence for every input that cannot be used."""

import dataclasses
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SAMPLE, run_cli
from mtl import predict
from mtl.data.images import read_image
from mtl.models.build import load_inference_model
from mtl.tasks import CLASSES, EMOTION, FOUR, GENDER
from photos import FEMALE_FACE, MALE_FACE, compose_photo, overlap, save_untrained_run, write_background

FACE_LINE = re.compile(
    r"^(?P<image>.+) face (?P<number>\d)/(?P<count>\d) at x=(?P<x>\d+) y=(?P<y>\d+) w=(?P<w>\d+) h=(?P<h>\d+): "
    r"gender (female|male) \([01]\.\d\d\), emotion (happy|sad) \([01]\.\d\d\), four (happy|sad)_(female|male) \([01]\.\d\d\)$"
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return save_untrained_run(tmp_path_factory.mktemp("run") / "untrained")


@pytest.fixture(scope="module")
def album(tmp_path_factory):
    """A folder: a photo of two faces at the top, a photo without a face and a second photo one level down."""
    root = tmp_path_factory.mktemp("album")
    places = compose_photo(root / "two_faces.png")
    write_background(root / "nested" / "noise.jpg")
    compose_photo(root / "nested" / "again.jpg", seed=5)
    return root, places


@pytest.fixture(autouse=True)
def no_bundled_model(monkeypatch, tmp_path):
    """Tests see no bundled model unless they put one there."""
    monkeypatch.setattr(predict, "bundled_model_path", lambda: tmp_path / "pretrained" / "model.keras")


def test_every_face_of_a_photo_is_found_and_classified_at_its_place(run_dir, album):
    root, places = album
    code, out, err = run_cli("predict", run_dir, root / "two_faces.png")

    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 2
    for line, place in zip(lines, places):
        match = FACE_LINE.match(line)
        assert match, line
        assert match["image"] == str(root / "two_faces.png") and match["count"] == "2"
        assert overlap(tuple(int(match[k]) for k in "xywh"), place) > 0.7


def test_a_detected_face_is_classified_as_its_crop_is(run_dir, album, tmp_path):
    """The photo's faces get the answers of the same faces given as crops, within the crops' framing noise."""
    root, _ = album
    code, out, _ = run_cli("predict", run_dir, root / "two_faces.png", "--json")
    detected = [json.loads(line) for line in out.splitlines()]
    code, out, _ = run_cli("predict", run_dir, FEMALE_FACE, MALE_FACE, "--json", "--no-detect")
    crops = [json.loads(line) for line in out.splitlines()]

    for face, crop in zip(detected, crops):
        for task in (GENDER, EMOTION):
            for name in CLASSES[task]:
                assert face[task]["probabilities"][name] == pytest.approx(crop[task]["probabilities"][name], abs=0.1)


def test_json_lines_give_one_object_per_face_with_its_box_and_probabilities(run_dir, album):
    root, _ = album
    code, out, err = run_cli("predict", run_dir, root, "--json")

    assert code == 0, err
    objects = [json.loads(line) for line in out.strip().splitlines()]
    assert [(Path(o["image"]).name, o["face"]) for o in objects] == [
        ("again.jpg", 1), ("again.jpg", 2), ("noise.jpg", None), ("two_faces.png", 1), ("two_faces.png", 2)]
    for found in (o for o in objects if o["face"]):
        assert set(found["box"]) == {"x", "y", "w", "h", "score"} and found["faces"] == 2
        for task in (GENDER, EMOTION, FOUR):
            probabilities = found[task]["probabilities"]
            assert list(probabilities) == list(CLASSES[task])
            assert sum(probabilities.values()) == pytest.approx(1, abs=1e-5)
            assert found[task]["label"] == max(probabilities, key=probabilities.get)


def test_folders_are_read_recursively_and_a_photo_without_a_face_does_not_fail_them(run_dir, album):
    root, _ = album
    code, out, err = run_cli("predict", run_dir, root)

    assert code == 0, err
    assert f"{root / 'nested' / 'noise.jpg'}: no face found" in out.splitlines()
    assert sum(1 for line in out.splitlines() if FACE_LINE.match(line)) == 4
    # Only which model answered: no progress lines when stderr is not a terminal.
    assert err.splitlines() == [f"Answering with the run {run_dir}: no test accuracy recorded."]


def test_folders_show_progress_on_a_terminal(run_dir, album):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out, err = io.StringIO(), Terminal()
    predict.predict_command([str(run_dir), str(album[0])], out=out, err=err)
    assert err.getvalue().startswith(f"Answering with the run {run_dir}")
    assert err.getvalue().endswith("predicting: 3/3 images\n")


def test_annotated_copies_keep_the_folder_layout_and_show_the_boxes(run_dir, album, tmp_path):
    root, places = album
    code, out, err = run_cli("predict", run_dir, root, "--annotate", tmp_path / "drawn")

    assert code == 0, err
    written = sorted(p.relative_to(tmp_path / "drawn") for p in (tmp_path / "drawn").rglob("*") if p.is_file())
    assert [str(p) for p in written] == [f"{root.name}/nested/again.jpg", f"{root.name}/nested/noise.jpg",
                                         f"{root.name}/two_faces.png"]
    assert err.splitlines()[-1] == f"Annotated 3 images into {tmp_path / 'drawn'}"
    with Image.open(tmp_path / "drawn" / root.name / "two_faces.png") as drawn:
        pixels = np.asarray(drawn.convert("RGB"))
    x, y, w, h = places[0]
    assert pixels.shape == (320, 480, 3)
    assert (pixels[y + h // 2, x - 2:x + 3] == (0, 255, 0)).all(axis=1).any()  # the box's left edge


def test_no_detect_takes_each_image_as_one_face_crop(run_dir):
    faces = [FEMALE_FACE, SAMPLE / "fer2013" / "test" / "happy" / "PrivateTest_14365414.jpg"]
    code, out, err = run_cli("predict", run_dir, *faces, "--no-detect", "--json")

    assert code == 0, err
    objects = [json.loads(line) for line in out.splitlines()]
    model = load_inference_model(run_dir / "model.keras")
    expected = model.predict_on_batch(np.stack([read_image(f, 64) for f in faces]).astype(np.float32))
    for index, found in enumerate(objects):
        assert found["box"] is None and found["face"] == 1
        assert found[GENDER]["probabilities"]["male"] == pytest.approx(float(expected[GENDER][index][1]), abs=1e-5)


@pytest.mark.slow
def test_a_fresh_process_loads_the_saved_model_and_finds_the_faces(run_dir, album):
    """Loading needs mtl's own layers registered; in-process tests import them anyway, a new process does not."""
    result = subprocess.run([sys.executable, "-m", "mtl.cli", "predict", str(run_dir), str(album[0] / "two_faces.png")],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr
    assert len([line for line in result.stdout.splitlines() if FACE_LINE.match(line)]) == 2


def test_the_bundled_model_is_used_when_no_run_is_given(run_dir, album, monkeypatch):
    monkeypatch.setattr(predict, "bundled_model_path", lambda: run_dir / "model.keras")
    code, out, err = run_cli("predict", album[0] / "two_faces.png")
    assert code == 0, err
    assert len(out.splitlines()) == 2


# ---------------------------------------------------------------- what cannot be used


def assert_one_sentence(code, out, err, *fragments):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mtl: error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert str(fragment) in lines[0]
    assert out == ""


def test_without_a_run_or_a_bundled_model_it_says_so_in_one_sentence(album):
    code, out, err = run_cli("predict", album[0] / "two_faces.png")
    assert_one_sentence(code, out, err, album[0] / "two_faces.png", "no bundled model", "run directory")


@pytest.mark.parametrize("content", [b"not an image", b"", b"\xff\xd8\xff\xe0 truncated"], ids=["text", "empty", "corrupt"])
def test_an_input_that_is_no_image_alone_is_one_sentence(run_dir, tmp_path, content):
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(content)
    assert_one_sentence(*run_cli("predict", run_dir, bad), bad, "not a readable image")


def test_a_missing_path_or_an_empty_folder_alone_is_one_sentence(run_dir, tmp_path):
    assert_one_sentence(*run_cli("predict", run_dir, tmp_path / "gone.png"), tmp_path / "gone.png", "does not exist")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    assert_one_sentence(*run_cli("predict", run_dir, tmp_path / "empty"), tmp_path / "empty", "holds no images")


def test_a_run_directory_without_images_is_one_sentence(run_dir):
    assert_one_sentence(*run_cli("predict", run_dir), run_dir, "No images given")


def test_bad_inputs_among_good_ones_are_reported_and_skipped(run_dir, album, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    code, out, err = run_cli("predict", run_dir, album[0] / "two_faces.png", corrupt, tmp_path / "gone.jpg")

    assert code == 0, err
    assert len(out.splitlines()) == 2
    answered_by, *skipped = sorted(err.strip().splitlines())
    assert answered_by.startswith("Answering with the run")
    assert len(skipped) == 2 and all(line.startswith("mtl: skipped: ") for line in skipped)
    assert str(corrupt) in err and str(tmp_path / "gone.jpg") in err


def test_nothing_readable_among_several_inputs_is_one_sentence_after_the_reports(run_dir, tmp_path):
    for name in ("a.jpg", "b.png"):
        (tmp_path / name).write_bytes(b"text")
    code, out, err = run_cli("predict", run_dir, tmp_path / "a.jpg", tmp_path / "b.png")
    assert code == 2 and out == ""
    assert err.strip().splitlines()[-1].startswith("mtl: error: None of the 2 images could be read")


def test_a_broken_or_foreign_model_file_is_one_sentence(tmp_path, album):
    import keras

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.keras").write_bytes(b"PK\x03\x04 not really a zip")
    assert_one_sentence(*run_cli("predict", broken, album[0] / "two_faces.png"), broken / "model.keras", "cannot be loaded")

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    inputs = keras.Input((64, 64, 3))
    keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs))).save(foreign / "model.keras")
    assert_one_sentence(*run_cli("predict", foreign, album[0] / "two_faces.png"), foreign / "model.keras",
                        "expected the outputs gender, emotion, four")


def test_a_missing_run_directory_before_images_is_named(tmp_path, album):
    code, out, err = run_cli("predict", tmp_path / "no_run", album[0] / "two_faces.png")
    assert_one_sentence(code, out, err, tmp_path / "no_run", "does not exist")


# ---------------------------------------------------------------- which model answers


def fake_comparison(root: Path, run_dir: Path) -> Path:
    """A comparison root as `mtl compare` leaves it: VARIANT/seed-K run directories with their figures."""
    for variant in ("separate", "multitask_masked"):
        run = root / variant / "seed-0"
        (run / "evaluation").mkdir(parents=True)
        (run / "model.keras").write_bytes((run_dir / "model.keras").read_bytes())
        (run / "config.json").write_text("{}")
        compose_photo(run / "evaluation" / "confusion_gender_test_gender.png")  # an image: never to be read as a photo
    (root / "results.md").write_text("| variant |\n")
    return root


def test_a_comparison_root_given_first_is_refused_naming_its_runs(run_dir, album, tmp_path):
    root = fake_comparison(tmp_path / "quickstart", run_dir)
    assert_one_sentence(*run_cli("predict", root, album[0] / "two_faces.png"),
                        root, "holds runs", "multitask_masked/seed-0", "separate/seed-0")


def test_a_comparison_root_alone_is_refused_even_with_a_bundled_model(run_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(predict, "bundled_model_path", lambda: run_dir / "model.keras")
    root = fake_comparison(tmp_path / "quickstart", run_dir)
    assert_one_sentence(*run_cli("predict", root), root, "holds runs")


def test_a_run_directory_among_the_images_is_refused_not_read_as_photos(run_dir, album):
    assert_one_sentence(*run_cli("predict", run_dir, album[0] / "two_faces.png", run_dir), run_dir,
                        "is a run directory, not a folder of images")


def test_stderr_and_every_json_line_say_which_run_answered_with_its_accuracies(run_dir, album, tmp_path):
    evaluated = tmp_path / "evaluated"
    evaluated.mkdir()
    (evaluated / "model.keras").write_bytes((run_dir / "model.keras").read_bytes())
    (evaluated / "config.json").write_text(json.dumps({"approach": "multitask", "model": {"backbone": "lenet"}}))
    (evaluated / "metrics.json").write_text(json.dumps({"headline": {"gender_accuracy": 0.8123, "emotion_accuracy": 0.7}}))
    code, out, err = run_cli("predict", evaluated, album[0] / "two_faces.png", "--json")

    assert code == 0, err
    assert err.splitlines() == [
        f"Answering with the run {evaluated}: multitask, lenet; test accuracy gender 81.2%, emotion 70.0%."]
    assert [json.loads(line)["model"] for line in out.splitlines()] == [str(evaluated)] * 2
    assert [json.loads(line)["model_test_accuracy"] for line in out.splitlines()] == [
        {"gender": 0.8123, "emotion": 0.7}] * 2


def test_the_bundled_model_says_so_and_json_lines_name_it(run_dir, album, monkeypatch):
    monkeypatch.setattr(predict, "bundled_model_path", lambda: run_dir / "model.keras")
    code, out, err = run_cli("predict", album[0] / "two_faces.png", "--json")
    assert code == 0, err
    assert err.startswith(f"Answering with the bundled model ({run_dir})")
    assert {json.loads(line)["model"] for line in out.splitlines()} == {"bundled"}
    assert all(json.loads(line)["model_test_accuracy"] == {} for line in out.splitlines())  # untrained: no metrics file


def test_the_shipped_bundled_model_is_announced_with_its_test_accuracies():
    shipped = Path(predict.__file__).parent / "pretrained"
    headline = json.loads((shipped / "metrics.json").read_text())["headline"]
    assert headline["gender_accuracy"] > 0.9 and headline["emotion_accuracy"] > 0.8  # the full-data model, not a test's
    assert predict.refitted_heads(shipped) == ["gender"]  # by mtl refit: experiments/results/pretrained/refit.json
    assert predict.which_model(shipped, bundled=True) == (
        f"Answering with the bundled model ({shipped}): multitask, resnet; gender head refitted with groups weighed "
        f"alike (mtl refit); test accuracy gender {headline['gender_accuracy']:.1%}, emotion {headline['emotion_accuracy']:.1%}.")


# ---------------------------------------------------------------- annotated copies: where and what


def test_inputs_of_the_same_name_from_different_folders_get_distinct_copies(run_dir, album, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "photo.png").write_bytes((album[0] / "two_faces.png").read_bytes())
    code, _, err = run_cli("predict", run_dir, tmp_path / "a" / "photo.png", tmp_path / "b" / "photo.png",
                           "--annotate", tmp_path / "drawn")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == ["photo-2.png", "photo.png"]


def test_annotating_over_an_input_is_refused_before_any_work(run_dir, album, tmp_path):
    photo = tmp_path / "two_faces.png"
    photo.write_bytes((album[0] / "two_faces.png").read_bytes())
    before = photo.read_bytes()
    assert_one_sentence(*run_cli("predict", run_dir, photo, "--annotate", tmp_path), "would write over the input", photo)
    assert photo.read_bytes() == before


def test_a_symbolic_link_where_a_copy_would_go_is_refused_and_not_followed(run_dir, album, tmp_path):
    elsewhere = tmp_path / "elsewhere.png"
    elsewhere.write_bytes(b"keep me")
    (tmp_path / "drawn").mkdir()
    (tmp_path / "drawn" / "two_faces.png").symlink_to(elsewhere)
    assert_one_sentence(*run_cli("predict", run_dir, album[0] / "two_faces.png", "--annotate", tmp_path / "drawn"),
                        "symbolic link", tmp_path / "drawn" / "two_faces.png")
    assert elsewhere.read_bytes() == b"keep me"


def test_labels_of_faces_side_by_side_do_not_overlap_and_stay_in_the_photo():
    boxes = [(x, 100, x + 60, 180) for x in range(10, 400, 65)]  # a row of faces, narrower than their labels
    places = predict.layout_labels(boxes, [(150, 20)] * len(boxes), 480, 320)
    for index, (left, top, right, bottom) in enumerate(places):
        assert 0 <= left and 0 <= top and right <= 480 and bottom <= 320
        for other in places[index + 1:]:
            assert right <= other[0] or other[2] <= left or bottom <= other[1] or other[3] <= top


def test_labels_show_gender_and_emotion_and_grow_with_the_photo():
    def answer(label, probability):
        return predict.Answer(label, probability, {})

    face = predict.Face(None, answer("female", 0.97), answer("happy", 0.88), answer("happy_female", 0.85))
    assert predict.face_label(face) == "female 0.97, happy 0.88"

    def label_pixels(side):
        box = predict.faces.Box(side * 0.3, side * 0.4, side * 0.3, side * 0.3, 0.9)
        result = predict.ImageResult("photo", [dataclasses.replace(face, box=box)],
                                     photo=np.zeros((side, side, 3), np.uint8))
        pixels = np.asarray(predict.annotate(result))
        return int((pixels == (0, 255, 0)).all(axis=-1).sum())

    assert label_pixels(1200) > 8 * label_pixels(300)  # 16 times the area: the label and box grow with it
