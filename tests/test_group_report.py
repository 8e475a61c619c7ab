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


def write_run(root: Path, variant: str, seed: int, mean_parts: tuple[float, float], worst: float, gender_train: list) -> None:
    run = root / variant / f"seed-{seed}"
    run.mkdir(parents=True)
    metrics = run_metrics(0.7)
    metrics["headline"].update(validation_gender_accuracy=mean_parts[0], validation_emotion_accuracy=mean_parts[1],
                               validation_worst_group_accuracy=worst)
    (run / "metrics.json").write_text(json.dumps(metrics))
    data = {"gender_train": gender_train, "emotion_train": ["fer2013/train"], "validation_fraction": 0.2}
    (run / "config.json").write_text(json.dumps({"data": data}))


def test_the_validation_splits_choose_among_variants_scored_on_the_same_faces(tmp_path):
    both = ["gender/Training", "utkface:utkface/train"]
    for seed, shift in enumerate((0.0, 0.02)):
        write_run(tmp_path, "plain", seed, (0.90 + shift, 0.86), 0.70 + shift, both)
        write_run(tmp_path, "robust", seed, (0.88 + shift, 0.86), 0.80 + shift, both)
        write_run(tmp_path, "weaker", seed, (0.87, 0.85), 0.69, both)  # behind `plain` on both
        write_run(tmp_path, "one_source", seed, (0.99, 0.99), 0.99, ["gender/Training"])  # easier validation faces
    write_run(tmp_path, "late", 0, (0.99, 0.99), 0.99, both)  # one seed: its mean is not comparable yet
    refit = tmp_path / "plain_refit" / "seed-0"  # `mtl refit`'s metrics have no validation accuracies
    refit.mkdir(parents=True)
    refitted = run_metrics(0.8)
    del refitted["headline"]["validation_gender_accuracy"], refitted["headline"]["validation_emotion_accuracy"]
    (refit / "metrics.json").write_text(json.dumps(refitted))

    text, _ = group_report.report(tmp_path)
    chosen = text.split("## Chosen on the validation splits")[1]
    two_sources, one_source = chosen.split("Validation faces: ")[1:]  # in the order of their first variant: `late`
    assert one_source.startswith("gender from gender/Training, emotion from fer2013/train") and "Both choose `one_source`" in one_source
    assert two_sources.startswith("gender from gender/Training + utkface/train,")
    assert "Among 3 variants with 2 finished seeds (left out, fewer seeds: `late`)" in two_sources
    assert "validation mean (both tasks): `plain` (88.5 ± 0.7), ahead of `robust` by +1.0 ± 0.0 points per seed; a finding" in two_sources
    assert "validation worst group: `robust` (81.0 ± 1.4), ahead of `plain` by +10.0 ± 0.0" in two_sources
    assert "The two disagree: no variant leads on both. Behind no other variant on both: `plain`, `robust`." in two_sources
    assert ("Head to head, `robust` less `plain` per seed: validation mean (both tasks) -1.0 ± 0.0 points (a finding: "
            "the difference exceeds its spread across seeds); validation worst group +10.0 ± 0.0 points (a finding") in two_sources
    assert "plain_refit" not in chosen

