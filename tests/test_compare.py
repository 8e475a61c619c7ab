"""`mtl compare`: several approaches on the same data and seed, as tables and as TensorBoard runs."""

import csv
import json

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.plugins.hparams import plugin_data_pb2

from conftest import run_cli
from tensorboard_server import read_experiment_from_server, read_hparams_from_server, tensorboard_server
from mtl.compare import METRICS, SHARED_HPARAMS

# Every test reads one comparison that trains three approaches end to end.
pytestmark = pytest.mark.slow

VARIANTS = ("separate", "crosslabel_hard", "multitask_masked")
APPROACHES = {"separate": "separate", "crosslabel_hard": "crosslabel", "multitask_masked": "multitask"}
ACCURACIES = ("gender_accuracy", "emotion_accuracy", "happy_house_accuracy")


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    """Three of the default variants, one epoch each on the sample; yields (root, stdout)."""
    runs = tmp_path_factory.mktemp("compare")
    code, out, err = run_cli(
        "compare", "--variants", "crosslabel_hard,multitask_masked", "--epochs", "1",
        "--set", "data.batch_size=32", "--set", "train.seed=3", "--runs-dir", runs, "--name", "cmp",
    )
    assert code == 0, err
    return runs / "cmp", out


def events(folder):
    """Every summary value in the event files directly inside `folder`, as (tag, value)."""
    found = []
    for event_file in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            found += [(value.tag, value) for value in event.summary.value]
    return found


def read_csv(root):
    with open(root / "results.csv", newline="") as file:
        return list(csv.DictReader(file))


def test_results_csv_has_one_row_per_variant_with_accuracies(comparison):
    root, _ = comparison
    rows = read_csv(root)

    assert [row["variant"] for row in rows] == list(VARIANTS)
    for row in rows:
        assert row["approach"] == APPROACHES[row["variant"]]
        assert row["epochs"] == "1" and row["seed"] == "3" and row["backbone"] == "lenet"
        for key in ACCURACIES:
            assert 0 <= float(row[key]) <= 1
        assert row["joint_four_class_accuracy"] == ""  # no joint folder given
        assert int(row["parameters"]) > 0
        metrics = json.loads((root / row["variant"] / "metrics.json").read_text())
        assert float(row["gender_accuracy"]) == pytest.approx(metrics["headline"]["gender_accuracy"])
    assert rows[1]["pseudo_labels"] == "hard" and rows[2]["pseudo_labels"] == "none"
    assert rows[0]["pseudo_labels"] == rows[0]["loss_weighting"] == "n/a"


def test_results_md_is_the_same_table(comparison):
    root, out = comparison
    table = (root / "results.md").read_text()
    lines = table.strip().splitlines()

    assert lines[0].startswith("| variant | approach |")
    assert len(lines) == 2 + len(VARIANTS)
    for line, row in zip(lines[2:], read_csv(root)):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[0] == row["variant"]
        assert float(cells[lines[0].strip("|").split("|").index(" gender_accuracy ")]) == pytest.approx(
            float(row["gender_accuracy"]), abs=1e-4
        )
    assert table in out  # also printed


def test_later_variants_use_the_separate_run_as_teachers(comparison):
    root, _ = comparison
    config = json.loads((root / "crosslabel_hard" / "config.json").read_text())

    assert config["options"]["teachers"] == str(root / "separate")
    assert not (root / "crosslabel_hard" / "teachers").exists()
    assert json.loads((root / "comparison.json").read_text()).keys() == set(VARIANTS)


def test_each_variant_logs_an_hparams_session_and_its_metrics(comparison):
    root, _ = comparison
    assert any(value.metadata.plugin_data.plugin_name == "hparams" for _, value in events(root))  # the columns

    for variant in VARIANTS:
        logged = events(root / variant)
        sessions = [
            plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content).session_start_info
            for _, value in logged
            if value.metadata.plugin_data.plugin_name == "hparams"
        ]
        [session] = [session for session in sessions if session.hparams]
        assert session.hparams["approach"].string_value == APPROACHES[variant]
        assert session.hparams["backbone"].string_value == "lenet"
        assert session.group_name == str((root / variant).resolve())  # one dashboard row per variant
        scalars = {tag: float(tf.make_ndarray(value.tensor)) for tag, value in logged if tag in METRICS}
        assert set(ACCURACIES) <= set(scalars)
        assert all(0 <= scalars[key] <= 1 for key in ACCURACIES)


def test_each_variant_logs_confusion_matrices_and_test_faces(comparison):
    root, _ = comparison
    for variant in VARIANTS:
        images = {tag: value for tag, value in events(root / variant / "evaluation")}
        assert set(images) == {"confusion_matrices", "test_faces"}
        for value in images.values():
            assert value.metadata.plugin_data.plugin_name == "images"
            width, height, *pngs = value.tensor.string_val
            assert int(width) > 0 and int(height) > 0
            assert len(pngs) == 3  # one per test set: gender, FER2013, Happy House
        assert (root / variant / "evaluation" / "confusion_happy_house_emotion.png").is_file()


def test_tensorboard_shows_every_variant_with_its_approach_and_accuracy(comparison, tmp_path):
    root, _ = comparison
    expected = {row["variant"]: row for row in read_csv(root)}

    with tensorboard_server(root, tmp_path) as url:
        rows = read_hparams_from_server(url)
        experiment = read_experiment_from_server(url)

    assert sorted(row["run"] for row in rows) == sorted(VARIANTS)
    for row in rows:
        variant = expected[row["run"]]
        assert row["hparams"]["approach"] == APPROACHES[row["run"]]
        assert row["hparams"]["epochs"] == 1
        assert row["metrics"]["gender_accuracy"] == pytest.approx(float(np.float32(variant["gender_accuracy"])), abs=1e-4)
    assert set(experiment["hparams"]) == {*SHARED_HPARAMS, "pseudo_labels", "loss_weighting"}
    assert experiment["metrics"] == METRICS
