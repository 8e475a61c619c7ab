"""Several sources per task: kinds of source as plug-ins, UTKFace's groups, mixing, and per-group scores."""

from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from mtl.config import DataConfig, PluginOptions, config_from_dict, number
from mtl.data import pipeline, sources
from mtl.data.pipeline import ExperimentData, sample_data_dir, source_weights
from mtl.errors import UserError
from mtl.evaluate import MIN_GROUP_IMAGES, group_scores, score_test_set
from mtl.tasks import EMOTION, GENDER, MISSING

SAMPLE = sample_data_dir()


def write_faces(folder, count, shade, size=40):
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        Image.new("RGB", (size, size), (shade, index * 7 % 255, 90)).save(folder / f"face_{index}.png")


def test_a_kind_of_source_defined_in_a_test_is_read_by_name_from_a_config(tmp_path):
    write_faces(tmp_path / "listing" / "a", 4, 10)
    write_faces(tmp_path / "listing" / "b", 3, 200)
    (tmp_path / "faces.txt").write_text("".join(f"a/face_{i}.png female\n" for i in range(4)) + "b/face_0.png male\n")

    @sources.source_kind("listing_for_test", suffixes=(".txt",))
    def read_listing(path, task):
        lines = [line.split() for line in path.read_text().splitlines()]
        labels = {GENDER: np.array([["female", "male"].index(label) for _, label in lines], np.int32),
                  EMOTION: np.full(len(lines), MISSING, np.int32)}
        return sources.ImageSource(str(path), np.array([str(path.parent / "listing" / name) for name, _ in lines]), labels)

    config = DataConfig(data_dir=str(tmp_path), gender_train=("gender_folder", "listing_for_test:faces.txt"))
    write_faces(tmp_path / "gender_folder" / "female", 5, 30)
    write_faces(tmp_path / "gender_folder" / "male", 5, 60)
    merged = pipeline.training_source(config.gender_train, tmp_path, GENDER)

    assert merged.source_names[1].endswith("faces.txt") and len(merged) == 15
    assert merged.labels["source"].tolist() == [0] * 10 + [1] * 5
    assert merged.labels[GENDER][10:].tolist() == [0, 0, 0, 0, 1]
    assert sources.parse_source("faces.txt") == ("listing_for_test", "faces.txt")  # by its ending


def test_a_kind_of_source_with_an_option_takes_it_from_the_config_checked_with_its_default(tmp_path):
    write_faces(tmp_path / "faces" / "female", 6, 30)
    write_faces(tmp_path / "faces" / "male", 6, 60)

    @dataclass(frozen=True)
    class EveryNth(PluginOptions):
        step: int = number(2, at_least=1)

    @sources.source_kind("every_nth_for_test", options=EveryNth)
    def read_every_nth(path, task, options):
        whole = sources.task_folder(path, task)
        return whole.subset(np.arange(0, len(whole), options.step), f"{whole.name}[::{options.step}]")

    try:
        given = config_from_dict({"data": {"gender_train": [{"type": "every_nth_for_test", "path": "faces", "step": 3}]}})
        assert given.data.gender_train == ({"type": "every_nth_for_test", "path": "faces", "step": 3},)
        assert len(pipeline.training_source(given.data.gender_train, tmp_path, GENDER)) == 4
        by_default = config_from_dict({"data": {"gender_train": {"type": "every_nth_for_test", "path": "faces"}}})
        assert by_default.data.gender_train == ({"type": "every_nth_for_test", "path": "faces", "step": 2},)
        assert sources.source_name(by_default.data.gender_train[0]) == "faces"
        with pytest.raises(UserError) as refused:
            config_from_dict({"data": {"gender_train": [{"type": "every_nth_for_test", "path": "faces", "stride": 3}]}})
        assert str(refused.value) == (
            "Unknown config field 'data.gender_train[0].stride'; the kind of data source 'every_nth_for_test' "
            "has the options: step."
        )
    finally:
        sources.KINDS.remove("every_nth_for_test")


def write_utkface(folder):
    """Six faces named as UTKFace names them (AGE_GENDER_RACE_DATETIME); three aged 40 or more."""
    for gender, ages in {"female": (25, 64, 5), "male": (61, 70, 33)}.items():
        (folder / gender).mkdir(parents=True, exist_ok=True)
        for age in ages:
            Image.new("RGB", (40, 40), (age, 90, 90)).save(folder / gender / f"{age}_{int(gender == 'female')}_0_2017.jpg")


def test_utkface_split_by_age_is_two_sources_whose_older_faces_mix_and_group_apart(tmp_path):
    write_utkface(tmp_path / "utk")
    younger = {"type": "utkface", "path": "utk", "below_age": 40}
    older = {"type": "utkface", "path": "utk", "min_age": 40}
    config = config_from_dict({"data": {"data_dir": str(tmp_path), "gender_train": [younger, older]}}).data

    merged = pipeline.training_source(config.gender_train, tmp_path, GENDER)

    assert [sources.source_name(spec) for spec in config.gender_train] == ["utk_below_age_40", "utk_min_age_40"]
    assert merged.source_names == [f"{tmp_path / 'utk'}[ages 0-39]", f"{tmp_path / 'utk'}[ages 40+]"]
    ages = [sources.utkface_age(path) for path in merged.paths]
    assert sorted(ages) == [5, 25, 33, 61, 64, 70]
    assert all((age >= 40) == bool(source) for age, source in zip(ages, merged.labels["source"]))
    assert set(merged.groups["age_band"][merged.labels["source"] == 1]) == {"60+"}


@pytest.mark.parametrize("ages,refusal", [
    ({"min_age": 80}, "holds no faces of ages 80+"),
    ({"min_age": 40, "below_age": 40}, "below_age 40 must be above min_age 40"),
])
def test_an_age_range_without_faces_or_upside_down_is_one_sentence(tmp_path, ages, refusal):
    write_utkface(tmp_path / "utk")

    with pytest.raises(UserError, match=refusal):
        sources.read_source({"type": "utkface", "path": "utk", **ages}, tmp_path, GENDER)


def test_an_unknown_kind_is_one_sentence_with_the_closest_name():
    with pytest.raises(UserError, match="Data source 'utkfac:utkface/train'.*did you mean 'utkface'"):
        sources.parse_source("utkfac:utkface/train")


def test_utkface_names_give_age_band_and_ethnicity_and_the_sample_has_both_splits():
    assert sources.utkface_groups("x/1_0_0_2017.jpg") == {"age_band": "0-2", "ethnicity": "White"}
    assert sources.utkface_groups("x/64_1_1_2017.jpg") == {"age_band": "60+", "ethnicity": "Black"}
    assert sources.utkface_groups("x/not_a_utkface_name.jpg") == {}
    test = sources.read_source("utkface:utkface/test", SAMPLE, GENDER)
    assert len(test) == 120 and set(test.groups) == {"age_band", "ethnicity"}
    assert "" not in set(test.groups["age_band"]) and {"20-29", "60+"} <= set(test.groups["age_band"])


def test_a_string_is_one_source_and_an_empty_list_is_refused():
    assert config_from_dict({"data": {"gender_train": "gender/Training"}}).data.gender_train == ("gender/Training",)
    with pytest.raises(UserError, match="data.gender_train.*non-empty list"):
        config_from_dict({"data": {"gender_train": []}})


def test_sources_mix_in_proportion_to_size_equally_or_in_between():
    assert source_weights([300, 100], 1.0) == [0.75, 0.25]
    assert source_weights([300, 100], 0.0) == [0.5, 0.5]
    between = source_weights([300, 100], 0.5)
    assert 0.5 < between[0] < 0.75


def test_two_gender_sources_are_split_by_source_and_both_are_drawn_for_training():
    config = DataConfig(gender_train=("gender/Training", "utkface:utkface/train"), source_mixing=0.0)
    data = ExperimentData.load(config, seed=3)
    assert data.num_sources(GENDER) == 2 and data.num_sources(EMOTION) == 1
    for split in (data.gender_train, data.gender_validation):  # stratified by source too
        share = (split.labels["source"] == 1).mean()
        assert abs(share - 200 / 600) < 0.02
    drawn = [int(labels["source"]) for _, labels in data.training_examples(data.gender_train, seed=3).take(400)]
    assert 0.4 < np.mean(drawn) < 0.6  # equal shares, although utkface is a third of the faces


def test_per_group_scores_name_the_worst_group_and_the_confound_gap():
    true = np.array([0] * 40 + [1] * 40)  # 40 women, 40 men
    emotion = np.array((["happy"] * 20 + ["sad"] * 20) * 2)
    predicted = true.copy()
    predicted[20:35] = 1  # 15 of the 20 sad women called men
    scores = group_scores(GENDER, true, predicted, {EMOTION: emotion})
    assert scores["groups"][EMOTION]["female|sad"] == {"accuracy": 0.25, "images": 20}
    assert scores["worst_group"] == "emotion:female|sad" and scores["worst_group_accuracy"] == 0.25
    assert scores["confound_gap"] == 0.75


def test_a_group_below_the_minimum_is_listed_but_never_the_worst():
    true = np.array([0] * (MIN_GROUP_IMAGES + 3))
    predicted = true.copy()
    predicted[:3] = 1
    band = np.array(["60+"] * 3 + ["20-29"] * MIN_GROUP_IMAGES)
    scores = group_scores(GENDER, true, predicted, {"age_band": band})
    assert scores["groups"]["age_band"]["female|60+"]["accuracy"] == 0.0
    assert scores["worst_group"] == "age_band:female|20-29"


def test_a_jointly_labelled_folder_is_scored_per_true_group(tmp_path):
    for name in ("happy_female", "happy_male", "sad_female", "sad_male"):
        write_faces(tmp_path / name, MIN_GROUP_IMAGES, 100)
    joint = sources.joint_folder(tmp_path)
    from mtl.evaluate import test_set_groups

    groups = test_set_groups(joint)
    assert sorted(set(zip(groups[GENDER], groups[EMOTION]))) == [
        ("female", "happy"), ("female", "sad"), ("male", "happy"), ("male", "sad")
    ]
    labels = {task: joint.labels[task] for task in (GENDER, EMOTION)}
    always_female = np.tile([0.9, 0.1], (len(joint), 1))
    probabilities = {GENDER: always_female, EMOTION: always_female, "four": np.full((len(joint), 4), 0.25)}
    scores = score_test_set(probabilities, labels, groups)
    assert scores[GENDER]["worst_group_accuracy"] == 0.0 and scores[GENDER]["accuracy"] == 0.5
    assert scores[GENDER]["groups"][EMOTION]["female|sad"]["accuracy"] == 1.0


def test_validation_worst_group_is_the_lowest_accuracy_over_class_and_source():
    from mtl.training import WorstGroupAccuracy

    metric = WorstGroupAccuracy(2, name="gender_worst_group_accuracy")
    true_class = np.array([0, 0, 1, 1, 0, 0], np.int32)
    right = np.array([1, 1, 1, 0, 1, 0], np.float32)  # source 1's women: one of two right
    source = np.array([0, 0, 0, 0, 1, 1], np.int32)
    has_label = np.array([1, 1, 1, 1, 1, 1], np.float32)
    metric.update_state(true_class, right, source, has_label)
    assert float(metric.result()) == 0.5
    metric.update_state(true_class, right, None, np.zeros(6, np.float32))  # unlabelled faces change nothing
    assert float(metric.result()) == 0.5


def test_groups_by_the_other_task_come_from_the_fixed_reference_labeller_not_the_bundled_model(monkeypatch, tmp_path):
    from mtl import evaluate, runs
    from mtl.models.build import load_inference_model

    source = sources.task_folder(SAMPLE / "gender" / "Validation", GENDER)
    labeller = load_inference_model(runs.reference_labeller_path())
    probabilities, _, _ = evaluate.predict_dataset(labeller, source.dataset(64), 64)
    expected = np.array(["happy", "sad"])[probabilities[EMOTION].argmax(axis=1)]

    # Whatever the bundled model is (here there is none), the groups are the reference labeller's answers.
    monkeypatch.setattr(runs, "bundled_model_path", lambda: tmp_path / "none" / "model.keras")
    evaluate._REFERENCE_ANSWERS.clear()
    assert np.array_equal(evaluate.test_set_groups(source)[EMOTION], expected)
    assert set(expected) == {"happy", "sad"}
