"""Every approach trains (one epoch on the sample) into a run directory that evaluates the same way."""

import json

import numpy as np
import pytest

from mtl import approaches
from mtl.config import load_config, merge
from mtl.errors import UserError
from mtl.evaluate import evaluate_run
from mtl.experiment import train_and_evaluate
from mtl.tasks import EMOTION, FOUR, GENDER

# Every test trains at least one approach end to end, or uses the trained separate run.
pytestmark = pytest.mark.slow

# Test set -> (tasks it is scored on, images): the sample's sizes and the test's joint folder.
EXPECTED_SCORES = {
    "gender_test": ({GENDER}, 120),
    "utkface_test": ({GENDER}, 120),  # the second gender test source of the default config
    "emotion_test": ({EMOTION}, 160),
    "happy_house": ({EMOTION}, 40),
    "joint_test": ({GENDER, EMOTION, FOUR}, 16),
}
# Happy House is scored twice: on whole photos and on the faces found in them.
EXPECTED_SCORES["happy_house_detected"] = EXPECTED_SCORES["happy_house"]
AGREEMENT = "not_accuracy_agreement_with_own_pseudo_labels"


def assert_scored_on_every_test_set(metrics):
    assert set(metrics["test_sets"]) == set(EXPECTED_SCORES)
    for test_set, (tasks, images) in EXPECTED_SCORES.items():
        scores = {key: value for key, value in metrics["test_sets"][test_set].items() if key != "face_found_rate"}
        assert set(scores) == tasks, test_set
        for task, task_scores in scores.items():
            assert 0 <= task_scores["accuracy"] <= 1
            assert task_scores["images"] == images
            assert sum(map(sum, task_scores["confusion_matrix"])) == images
    headline = metrics["headline"]
    assert headline["gender_accuracy"] == metrics["test_sets"]["gender_test"][GENDER]["accuracy"]
    assert headline["happy_house_accuracy"] == metrics["test_sets"]["happy_house"][EMOTION]["accuracy"]
    assert headline["joint_four_class_accuracy"] == metrics["test_sets"]["joint_test"][FOUR]["accuracy"]
    assert metrics["parameters"] > 0 and metrics["inference_ms_per_image"] > 0


def assert_run_directory(run_dir, config, *files):
    for name in ("config.json", "model.keras", *files):
        assert (run_dir / name).is_file(), name
    assert load_config(run_dir / "config.json").to_dict() == config.to_dict()


@pytest.fixture
def run_config(tiny_config, joint_folder, trained_run):
    """Factory of tiny configs that score on the joint folder and use the trained separate run as teachers."""

    def make(approach, teachers=True, **options):
        if teachers:
            options["teachers"] = str(trained_run[0])
        return tiny_config(approach=approach, data={"batch_size": 32, "joint_test": str(joint_folder)}, options=options)

    return make


def test_separate_trains_a_gender_and_an_emotion_model(trained_run, joint_folder):
    run_dir, _ = trained_run
    config = load_config(run_dir / "config.json")
    assert config.approach.type == "separate" and config.train.epochs == 1
    for name in ("model.keras", "gender_model.keras", "emotion_model.keras", "metrics.json"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "logs" / "gender").is_dir() and (run_dir / "logs" / "emotion").is_dir()
    training = json.loads((run_dir / "gender_training.json").read_text())
    assert training["monitor"] == "val_gender_accuracy" and training["best_epoch"] == 1

    evaluation = evaluate_run(run_dir, merge(config, {"data": {"joint_test": str(joint_folder)}}).data)

    metrics = evaluation.metrics
    assert_scored_on_every_test_set(metrics)
    assert AGREEMENT not in metrics  # no pseudo-labels, nothing to agree with
    assert set(evaluation.samples) == set(EXPECTED_SCORES)
    assert evaluation.samples["gender_test"].images.dtype == np.uint8
    for test_set, (tasks, images) in EXPECTED_SCORES.items():
        for task in tasks:
            right = evaluation.correct[f"{test_set}/{task}"]
            assert len(right) == images and right.mean() == pytest.approx(metrics["test_sets"][test_set][task]["accuracy"])


@pytest.mark.parametrize("pseudo_labels", ["hard", "soft", "threshold"])
def test_crosslabel_trains_a_four_class_model_on_the_teachers_labels(tmp_path, run_config, pseudo_labels):
    threshold = {"type": "threshold", "confidence": 0.51}
    config = run_config("crosslabel", pseudo_labels=threshold if pseudo_labels == "threshold" else pseudo_labels)

    metrics = train_and_evaluate(config, tmp_path / "run").metrics

    run_dir = tmp_path / "run"
    assert_run_directory(run_dir, config, "four_class_model.keras", "metrics.json", "crosslabeled/summary.json")
    assert not (run_dir / "teachers").exists()  # the given teachers were used, not retrained
    assert_scored_on_every_test_set(metrics)
    # The notebook's "accuracy" (agreement with its own pseudo-labels) is reported apart.
    agreement = metrics[AGREEMENT]
    assert agreement["images"] == 1280 and 0 <= agreement["agreement"] <= 1
    assert AGREEMENT not in metrics["headline"]
    assert json.loads((run_dir / "metrics.json").read_text())[AGREEMENT] == agreement


def test_crosslabel_refuses_to_train_without_pseudo_labels(tmp_path, run_config):
    with pytest.raises(UserError, match="needs pseudo-labels"):
        train_and_evaluate(run_config("crosslabel", pseudo_labels="none"), tmp_path / "run")


@pytest.mark.parametrize(
    "pseudo_labels,loss_weighting,teachers",
    [
        ("none", "fixed", False),
        ("none", "uncertainty", False),
        ("hard", "fixed", True),
        ("hard", "uncertainty", False),  # trains its own teachers first
    ],
)
def test_multitask_trains_one_backbone_with_two_heads(tmp_path, run_config, pseudo_labels, loss_weighting, teachers):
    config = run_config("multitask", teachers=teachers, pseudo_labels=pseudo_labels, loss_weighting=loss_weighting)

    metrics = train_and_evaluate(config, tmp_path / "run").metrics

    run_dir = tmp_path / "run"
    assert_run_directory(run_dir, config, "multitask_model.keras", "multitask_training.json", "metrics.json")
    summary = json.loads((run_dir / "multitask_training.json").read_text())
    assert summary["monitor"] == "val_mean_accuracy"
    assert set(summary["history"]) >= {"gender_loss", "emotion_loss", "val_gender_accuracy", "val_emotion_accuracy"}
    assert_scored_on_every_test_set(metrics)
    if pseudo_labels == "none":
        assert not (run_dir / "crosslabeled").exists() and AGREEMENT not in metrics
    else:
        assert (run_dir / "crosslabeled" / "summary.json").is_file()
    assert (run_dir / "teachers" / "model.keras").is_file() == (pseudo_labels != "none" and not teachers)


def test_crosslabel_s_four_class_epochs_are_its_own_option_and_a_search_trial_s_epochs_set_it():
    from mtl.config import config_from_dict

    crosslabel = approaches.get("crosslabel")
    own = config_from_dict({"approach": {"type": "crosslabel", "four_class_epochs": 3}, "train": {"epochs": 5}})
    assert crosslabel.epochs(own, "four_class") == 3
    assert crosslabel.epochs(config_from_dict({"approach": "crosslabel", "train": {"epochs": 5}}), "four_class") == 5
    trained = crosslabel.with_stage_epochs(own, 2)
    assert trained.approach.four_class_epochs == 2 and trained.train.epochs == 5  # the teachers keep theirs
