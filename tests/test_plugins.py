"""A new approach is one class: defined here, registered, and run by `train`, `compare` and `tune` unchanged.

The approach below is not in the package. It fits a two-head network on mixed batches that
hold only true labels, with its own search hyperparameter and its own HParams field; the
commands find all of that through the approach interface.
"""

import json

import pytest

from conftest import run_cli
from mtl import labels
from mtl.approaches import batches
from mtl.approaches.base import APPROACHES, Approach, Stage, register
from mtl.models.build import build_network
from mtl.tasks import CLASSES, TASKS
from mtl.tuning.space import Hyperparameter

QUICK = ("--epochs", "1", "--set", "data.batch_size=32", "--backbone", "lenet")


class HalfAndHalf(Approach):
    """Two heads on one backbone; every batch half gender faces, half emotion faces; true labels only."""

    name = "half_and_half"
    hyperparameters = {"head_dropout": Hyperparameter([0.1, 0.2], "model.dropout")}

    def hparams(self, config):
        return {"head_dropout": config.model.dropout}

    def stages(self, config):
        network = build_network(config.model, config.data, {task: len(CLASSES[task]) for task in TASKS}, name="halves")
        return [Stage("halves", network)]

    def training_batches(self, config, stage, data, merged_dir):
        mixed = batches.mixed_examples(data.images(data.gender_train), data.images(data.emotion_train), 0.5, config.train.seed)
        with_targets = batches.batches_with_targets(
            mixed, config, lambda batch_labels, _: labels.task_targets(batch_labels, None, config.options)
        )
        return with_targets, batches.steps_for(len(data.gender_train) + len(data.emotion_train), config)


@pytest.fixture(autouse=True)
def half_and_half():
    register(HalfAndHalf)
    yield
    del APPROACHES[HalfAndHalf.name]


@pytest.mark.slow
def test_train_runs_an_approach_defined_outside_the_package(tmp_path):
    code, out, err = run_cli("train", "half_and_half", *QUICK, "--runs-dir", tmp_path, "--name", "run")

    assert code == 0, err
    run_dir = tmp_path / "run"
    for name in ("config.json", "model.keras", "halves.keras", "halves_training.json", "metrics.json"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "config.json").read_text())["approach"] == "half_and_half"


@pytest.mark.slow
def test_compare_gives_the_new_approach_a_row_with_its_own_hparams(tmp_path):
    spec = tmp_path / "comparison.json"
    spec.write_text(json.dumps({"variants": {"halves": {"approach": "half_and_half"}}}))

    code, out, err = run_cli("compare", "--config", spec, *QUICK, "--runs-dir", tmp_path, "--name", "cmp")

    assert code == 0, err
    rows = (tmp_path / "cmp" / "results.csv").read_text().splitlines()
    assert rows[0].split(",")[:3] == ["variant", "approach", "backbone"]
    assert "head_dropout" in rows[0].split(",")
    assert rows[1].startswith("halves,half_and_half,lenet")


@pytest.mark.slow
def test_a_one_trial_search_uses_the_approach_s_own_hyperparameter(tmp_path):
    code, out, err = run_cli(
        "tune", "half_and_half", "--directory", tmp_path / "search", "--tuner", "random", "--max-trials", "1",
        "--max-epochs", "1", *QUICK,
    )

    assert code == 0, err
    settings = json.loads((tmp_path / "search" / "search_settings.json").read_text())
    assert settings["space"]["head_dropout"] == [0.1, 0.2]
    best = json.loads((tmp_path / "search" / "best_config.json").read_text())
    assert best["approach"] == "half_and_half" and best["model"]["dropout"] in (0.1, 0.2)


def test_an_unknown_approach_is_one_sentence_listing_the_registered_ones(tmp_path):
    code, out, err = run_cli("train", "nonesuch", "--runs-dir", tmp_path)

    assert code == 2
    assert "half_and_half" in err and "separate" in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())
