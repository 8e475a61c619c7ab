"""`mtl compare`: several approaches on the same data and seeds, as tables and as TensorBoard runs."""

import csv
import json
from dataclasses import asdict

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.plugins.hparams import plugin_data_pb2

from conftest import run_cli
from tensorboard_server import read_experiment_from_server, read_hparams_from_server, tensorboard_server
from mtl import compare, config
from mtl.compare import METRICS, SHARED_HPARAMS
from mtl.dashboard.comparison import METRIC_PREFIX, SUMMARY_RUN
from mtl.errors import UserError

# Every test reads one comparison that trains three approaches end to end with three seeds.
pytestmark = pytest.mark.slow

VARIANTS = ("separate", "crosslabel_hard", "multitask_masked")
APPROACHES = {"separate": "separate", "crosslabel_hard": "crosslabel", "multitask_masked": "multitask"}
ACCURACIES = ("gender_accuracy", "emotion_accuracy", "happy_house_accuracy")
SEEDS = 3
RUNS = [f"{variant}/seed-{k}" for k in range(SEEDS) for variant in VARIANTS]


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    """Three of the default variants, three seeds, one epoch each on the sample; yields (root, stdout)."""
    runs = tmp_path_factory.mktemp("compare")
    code, out, err = run_cli(
        "compare", "--variants", "crosslabel_hard,multitask_masked", "--epochs", "1", "--seeds", SEEDS,
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


def read_csv(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_every_run_of_every_seed_has_its_row_and_its_own_seed(comparison):
    root, _ = comparison
    rows = read_csv(root / "results_per_seed.csv")

    assert sorted(row["variant"] for row in rows) == sorted(RUNS)
    for row in rows:
        variant, seed = row["variant"].split("/seed-")
        assert row["approach"] == APPROACHES[variant] and row["seed"] == str(3 + int(seed))
        metrics = json.loads((root / row["variant"] / "metrics.json").read_text())
        assert float(row["gender_accuracy"]) == pytest.approx(metrics["headline"]["gender_accuracy"])
        assert metrics["provenance"]["python"] and "tensorflow" in metrics["provenance"]
        assert metrics["run"] == f"seed-{seed}"  # no path of this machine


def test_results_give_mean_spread_and_a_paired_test_against_the_baseline(comparison):
    root, _ = comparison
    rows = {row["variant"]: row for row in read_csv(root / "results.csv")}
    per_seed = read_csv(root / "results_per_seed.csv")

    assert list(rows) == list(VARIANTS)
    for variant, row in rows.items():
        assert row["seeds"] == str(SEEDS)
        values = [float(run["gender_accuracy"]) for run in per_seed if run["variant"].startswith(f"{variant}/")]
        assert float(row["gender_accuracy_mean"]) == pytest.approx(np.mean(values))
        assert float(row["gender_accuracy_std"]) == pytest.approx(np.std(values, ddof=1))
    assert "gender_accuracy_p_vs_separate" not in rows["separate"] or rows["separate"]["gender_accuracy_p_vs_separate"] == ""
    for variant in VARIANTS[1:]:
        for key in ACCURACIES:
            assert 0 <= float(rows[variant][f"{key}_p_vs_separate"]) <= 1
    assert rows["crosslabel_hard"]["pseudo_labels"] == "hard" and rows["multitask_masked"]["pseudo_labels"] == "none"
    assert rows["separate"]["pseudo_labels"] == rows["separate"]["loss_weighting"] == "n/a"


def test_results_md_shows_mean_and_spread_and_is_printed(comparison):
    root, out = comparison
    table = (root / "results.md").read_text()
    lines = table.strip().splitlines()

    assert lines[0].startswith("| variant | approach | seeds |")
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {row["variant"]: row for row in read_csv(root / "results.csv")}
    for line in lines[2:2 + len(VARIANTS)]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        mean = float(cells[header.index("gender_accuracy")].split(" ± ")[0])
        assert mean == pytest.approx(float(rows[cells[0]]["gender_accuracy_mean"]) * 100, abs=0.01)
    assert "McNemar" in table and "Made by commit" in table
    chosen = table.split("## Chosen on the validation splits")[1]  # every variant drew its validation faces alike
    assert chosen.count("Validation faces: gender from gender/Training") == 1 and f"Among 3 variants with {SEEDS} finished seeds:" in chosen
    assert "- validation mean (both tasks): `" in chosen and "- validation worst group: `" in chosen
    assert table in out  # also printed


def test_the_log_says_how_far_the_comparison_is_and_how_confounded_the_teachers_find_the_data(comparison):
    _, out = comparison
    headers = [line for line in out.splitlines() if line.startswith("=== ")]

    assert headers[0] == "=== separate/seed-0: separate (run 1 of 9) ==="
    assert headers[-1] == "=== multitask_masked/seed-2: multitask (run 9 of 9) ==="
    assert "gender_training: the teachers call happy" in out and "fer2013_train: the teachers call female" in out


def test_later_variants_use_the_same_seed_s_separate_run_as_teachers(comparison):
    root, _ = comparison
    for k in range(SEEDS):
        config = json.loads((root / "crosslabel_hard" / f"seed-{k}" / "config.json").read_text())
        assert config["options"]["teachers"] == str(root / "separate" / f"seed-{k}")
        assert config["train"]["seed"] == 3 + k
        assert not (root / "crosslabel_hard" / f"seed-{k}" / "teachers").exists()
    assert json.loads((root / "comparison.json").read_text())["variants"].keys() == set(VARIANTS)


def test_each_run_logs_an_hparams_session_named_by_variant_and_seed(comparison):
    root, _ = comparison
    assert not events(root)  # no run named "."
    assert any(value.metadata.plugin_data.plugin_name == "hparams" for _, value in events(root / SUMMARY_RUN))

    for run in [*RUNS, *(f"{variant}/mean" for variant in VARIANTS)]:
        logged = events(root / run)
        sessions = [
            plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content).session_start_info
            for _, value in logged
            if value.metadata.plugin_data.plugin_name == "hparams"
        ]
        [session] = [session for session in sessions if session.hparams]
        assert session.hparams["approach"].string_value == APPROACHES[run.split("/")[0]]
        assert session.hparams["variant"].string_value == run.split("/")[0]
        scalars = {
            tag.removeprefix(METRIC_PREFIX): float(tf.make_ndarray(value.tensor))
            for tag, value in logged
            if tag.startswith(METRIC_PREFIX)
        }
        assert set(ACCURACIES) <= set(scalars)
        assert all(0 <= scalars[key] <= 100 for key in ACCURACIES)  # percent, as in results.md


def test_each_run_logs_confusion_matrices_and_test_faces(comparison):
    root, _ = comparison
    for run in RUNS:
        test_sets = json.loads((root / run / "metrics.json").read_text())["test_sets"]
        assert "utkface_test" in test_sets
        images = {tag: value for tag, value in events(root / run / "evaluation")}
        assert set(images) == {"confusion_matrices", "test_faces"}
        for value in images.values():
            assert value.metadata.plugin_data.plugin_name == "images"
            width, height, *pngs = value.tensor.string_val
            assert int(width) > 0 and int(height) > 0
            assert len(pngs) == len(test_sets)  # one per test set: gender, UTKFace, FER2013, Happy House, detected faces
        assert (root / run / "evaluation" / "confusion_happy_house_emotion.png").is_file()


def test_tensorboard_shows_every_run_with_its_approach_and_accuracy(comparison, tmp_path):
    root, _ = comparison
    expected = {row["variant"]: row for row in read_csv(root / "results_per_seed.csv")}

    with tensorboard_server(root, tmp_path) as url:
        rows = read_hparams_from_server(url)
        experiment = read_experiment_from_server(url)

    assert sorted(row["run"] for row in rows) == sorted([*RUNS, *(f"{variant}/mean" for variant in VARIANTS)])
    for row in rows:
        assert row["hparams"]["approach"] == APPROACHES[row["run"].split("/")[0]]
        assert row["hparams"]["epochs"] == 1
        if row["run"] in expected:
            got = row["metrics"][METRIC_PREFIX + "gender_accuracy"]
            assert got == pytest.approx(float(expected[row["run"]]["gender_accuracy"]) * 100, abs=1e-3)
    assert set(experiment["hparams"]) == {"variant", *SHARED_HPARAMS, "robust", "pseudo_labels", "loss_weighting"}
    # Only what the runs measured: no joint set was given, so no four-class accuracy.
    measured = {key for key in METRICS if any(row[key] for row in expected.values())}
    assert "joint_four_class_accuracy" not in measured
    assert set(experiment["metrics"]) == {METRIC_PREFIX + key for key in measured}



def test_a_comparison_saved_before_a_config_field_was_added_is_the_same_comparison(tmp_path):
    variant = config.ExperimentConfig().to_dict()
    described = {"seeds": 1, "baseline": "separate", "variants": {"separate": variant}}
    # Saved before `options.robust` existed and before plug-ins carried their options.
    options = {"teachers": None, "pseudo_labels": "hard", "confidence_threshold": 0.9, "loss_weighting": "fixed",
               "gender_loss_weight": 1.0, "emotion_loss_weight": 1.0, "dwa_temperature": 2.0}
    model = {**variant["model"], "backbone": "lenet", "width": 32, "depth": 1}
    older = {"seeds": 1, "baseline": "separate", "variants": {"separate": {**variant, "model": model, "options": options}}}
    (tmp_path / "comparison.json").write_text(json.dumps(older))

    assert compare.claim_root(tmp_path, described)  # resumed, not refused

    other = {**described, "seeds": 2}
    with pytest.raises(UserError, match="holds another comparison"):
        compare.claim_root(tmp_path, other)


def test_a_comparison_saved_before_refits_took_teachers_is_the_same_comparison(tmp_path):
    described = {"seeds": 1, "baseline": "multitask",
                 "variants": {"multitask": config.ExperimentConfig().to_dict()},
                 "refits": {"multitask_refit": asdict(compare.Refit("multitask"))}}
    older = json.loads(json.dumps(described))
    del older["refits"]["multitask_refit"]["teachers"]  # as saved before refits took teachers
    (tmp_path / "comparison.json").write_text(json.dumps(older))

    assert compare.claim_root(tmp_path, described)  # resumed, not refused

    taught = {**described, "refits": {"multitask_refit": asdict(compare.Refit("multitask", teachers="elsewhere"))}}
    with pytest.raises(UserError, match="holds another comparison"):
        compare.claim_root(tmp_path, taught)
