"""experiments/group_report.py: the per-group table of a comparison's finished runs."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "group_report.py"
spec = importlib.util.spec_from_file_location("group_report", SCRIPT)
group_report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(group_report)


def run_metrics(women_sad: float) -> dict:
    cells = {"female|sad": {"accuracy": women_sad, "images": 40}, "female|happy": {"accuracy": 0.9, "images": 40}}
    ages = {"female|60+": {"accuracy": 0.5, "images": 30}, "male|0-2": {"accuracy": 0.1, "images": 30}}
    gender = {"accuracy": 0.8, "per_class": {"female": {"recall": 0.7}}, "groups": {"emotion": cells, "age_band": ages}}
    headline = {"gender_accuracy": 0.95, "validation_gender_accuracy": 0.9, "validation_emotion_accuracy": 0.8}
    return {"headline": headline, "test_sets": {"utkface_test": {"gender": gender}}}


def test_finished_seeds_are_averaged_and_children_are_not_adult_groups(tmp_path):
    for seed, sad in enumerate((0.6, 0.8)):
        run = tmp_path / "multitask" / f"seed-{seed}"
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps(run_metrics(sad)))
    text, rows = group_report.report(tmp_path)
    row = rows[0]
    assert row["seeds"] == 2 and row["utkface_sad_women"] == "70.0 ± 14.1"
    assert row["utkface_worst_adult"] == "50.0 ± 0.0"  # boys under 3 are not an adult group
    assert row["happy_sad_gap"] == "20.0 ± 14.1" and "| multitask | 2 |" in text


def test_a_folder_without_finished_runs_says_so(tmp_path):
    with pytest.raises(SystemExit, match="no finished run"):
        group_report.report(tmp_path)


def test_single_runs_given_by_their_metrics_file_are_rows_of_their_own(tmp_path):
    for name, sad in (("before", 0.6), ("after", 0.8)):
        metrics = run_metrics(sad)
        if name == "before":  # written by `mtl evaluate` alone: no validation accuracies
            del metrics["headline"]["validation_gender_accuracy"]
        (tmp_path / f"{name}.json").write_text(json.dumps(metrics))
    assert group_report.main(["--metrics", f"before={tmp_path / 'before.json'}",
                              "--metrics", f"after={tmp_path / 'after.json'}", "--out", str(tmp_path)]) == 0
    rows = (tmp_path / "group_report.csv").read_text().splitlines()
    assert rows[1].startswith("before,1,95.0,") and rows[1].endswith(",-,-")
    assert rows[2].startswith("after,1,95.0,") and ",85.0," in rows[2]  # the validation mean of 90% and 80%
    assert group_report.main(["--metrics", "nothing"]) == 2


def test_a_difference_row_pairs_the_two_variants_seed_by_seed(tmp_path):
    for variant, sads in (("trained", (0.6, 0.8)), ("refitted", (0.7, 0.95))):
        for seed, sad in enumerate(sads):
            run = tmp_path / variant / f"seed-{seed}"
            run.mkdir(parents=True)
            (run / "metrics.json").write_text(json.dumps(run_metrics(sad)))
    _, rows = group_report.report(tmp_path, differences=[("trained", "refitted")])
    difference = rows[-1]
    assert difference["variant"] == "refitted - trained" and difference["seeds"] == 2
    assert difference["utkface_sad_women"] == "+12.5 ± 3.5"  # +10 and +15 points: far less spread than either variant's
    with pytest.raises(SystemExit, match="'other', which has no finished run"):
        group_report.report(tmp_path, differences=[("trained", "other")])
