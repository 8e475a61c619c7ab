"""Face detection in photographs, the one crop rule that frames a found face like a training crop, and
the evaluation of photographs on their detected faces."""

import numpy as np
import pytest

from mtl import faces
from mtl.config import DataConfig, ExperimentConfig
from mtl.data.sources import happy_house
from mtl.errors import UserError
from mtl.evaluate import evaluate_run
from mtl.runs import write_json
from conftest import SAMPLE
from photos import MALE_FACE, compose_photo, overlap, save_untrained_run, write_background


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "two_faces.png"
    return path, compose_photo(path)


def test_the_default_detector_finds_both_pasted_faces_at_their_places(photo):
    path, pasted = photo
    boxes = faces.detector()(faces.read_photo(path))

    assert len(boxes) == 2
    for box, place in zip(boxes, pasted):  # boxes come left to right
        assert overlap((box.x, box.y, box.w, box.h), place) > 0.7
        assert 0.5 <= box.score <= 1


def test_a_detected_face_is_framed_like_the_crop_that_was_pasted(photo):
    """The crop rule's square sits on the pasted crop's centre with a side close to the crop's height."""
    path, pasted = photo
    picture = faces.read_photo(path)
    for box, (x, y, w, h) in zip(faces.detector()(picture), pasted):
        side = max(box.w, box.h) * faces.CROP_MARGIN
        assert 0.8 * h <= side <= 1.1 * h
        assert abs(box.x + box.w / 2 - (x + w / 2)) < 0.1 * h and abs(box.y + box.h / 2 - (y + h / 2)) < 0.1 * h
        assert faces.crop_face(picture, box, 64).shape == (64, 64, 3)


def test_a_photo_without_a_face_has_no_boxes(tmp_path):
    picture = faces.read_photo(write_background(tmp_path / "noise.png"))
    assert faces.detector()(picture) == []


def test_the_crop_rule_is_a_square_around_the_box_centre_that_repeats_the_edge_outside_the_photo():
    picture = np.zeros((100, 200, 3), np.uint8)
    picture[:, :, 0] = np.arange(200)[None, :]  # red = column
    picture[:, :, 1] = np.arange(100)[:, None]  # green = row
    box = faces.Box(x=80, y=30, w=40, h=50, score=0.9)

    inside = faces.crop_square(picture, box, margin=1.0)
    assert inside.shape == (50, 50, 3)
    assert inside[0, 0, 0] == 75 and inside[0, 0, 1] == 30  # centre (100, 55), side 50

    corner = faces.crop_square(picture, faces.Box(x=-10, y=-10, w=40, h=40, score=0.9), margin=1.5)
    assert corner.shape == (60, 60, 3)
    assert corner[0, 0, 0] == 0 and corner[0, 0, 1] == 0  # outside: the nearest edge pixel


@pytest.mark.slow
def test_happy_house_photos_are_scored_on_one_detected_face_each():
    source = happy_house(SAMPLE / "happy_house" / "test_happy.h5")
    examples, found_rate = faces.detected_faces(source, 64)

    crops = [image.numpy() for image, _ in examples]
    assert len(crops) == len(source) and crops[0].shape == (64, 64, 3)
    assert 0.9 <= found_rate <= 1
    labels = np.array([label["emotion"].numpy() for _, label in examples])
    assert (labels == source.labels["emotion"]).all()


def test_an_unknown_detector_is_one_sentence():
    with pytest.raises(UserError, match="Unknown face detector 'haar'; expected one of: yuface"):
        faces.detector("haar")


def test_a_new_detector_is_one_registered_function(tmp_path):
    @faces.register_detector("whole_image")
    def whole_image():
        return lambda image: [faces.Box(0, 0, image.shape[1], image.shape[0], 1.0)]

    try:
        picture = faces.read_photo(MALE_FACE)
        assert faces.detector("whole_image")(picture) == [faces.Box(0, 0, picture.shape[1], picture.shape[0], 1.0)]
    finally:
        faces.DETECTORS.remove("whole_image")
        faces.detector.cache_clear()


@pytest.mark.slow
def test_mtcnn_finds_both_pasted_faces_too(photo):
    pytest.importorskip("mtcnn")
    path, pasted = photo
    boxes = faces.detector("mtcnn")(faces.read_photo(path))
    assert len(boxes) == 2
    for box, place in zip(boxes, pasted):
        assert overlap((box.x, box.y, box.w, box.h), place) > 0.6


@pytest.mark.slow
def test_evaluation_scores_happy_house_on_detected_faces_beside_the_whole_photos(tmp_path, joint_folder):
    run_dir = save_untrained_run(tmp_path / "run")
    write_json(run_dir / "config.json", ExperimentConfig().to_dict())
    metrics = evaluate_run(run_dir, DataConfig(joint_test=str(joint_folder)), detect=True).metrics

    sets = metrics["test_sets"]
    assert sets["happy_house_detected"]["emotion"]["images"] == sets["happy_house"]["emotion"]["images"]
    assert 0.9 <= sets["happy_house_detected"]["face_found_rate"] <= 1
    assert metrics["headline"]["happy_house_face_found_rate"] == sets["happy_house_detected"]["face_found_rate"]
    assert 0 <= metrics["headline"]["happy_house_detected_accuracy"] <= 1
    assert "face_found_rate" in sets["joint_test_detected"] and "gender_test_detected" not in sets
