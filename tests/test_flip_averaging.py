"""experiments/flip_averaging.py: a run's own networks on its validation splits, with and without flip averaging."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "flip_averaging.py"


def flip_averaging():
    spec = importlib.util.spec_from_file_location("flip_averaging", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_without_the_flip_it_reproduces_the_validation_accuracy_training_selected_on(trained_run, tmp_path):
    run_dir, _ = trained_run
    root = tmp_path / "compare"
    shutil.copytree(run_dir, root / "separate" / "seed-0")
    out = tmp_path / "results"

    assert flip_averaging().main([str(root), "--out", str(out)]) == 0

    result = json.loads((out / "flip_averaging.json").read_text())
    headline = json.loads((run_dir / "metrics.json").read_text())["headline"]
    (row,) = result["runs"]
    assert row["run"] == "separate/seed-0"
    for task in ("gender", "emotion"):
        # The same networks on the same images as the epoch's validation: one image's worth of float noise at most.
        one_image = 100 / row[f"{task}_images"]
        assert row[f"{task}_plain"] == pytest.approx(100 * headline[f"validation_{task}_accuracy"], abs=one_image)
        assert 0 <= row[f"{task}_flip_averaged"] <= 100
        assert result["summary"][task]["runs"] == 1
    assert "| separate/seed-0 |" in (out / "flip_averaging.md").read_text()


def test_a_folder_without_finished_runs_is_refused(tmp_path, capsys):
    (tmp_path / "separate" / "seed-0").mkdir(parents=True)

    assert flip_averaging().main([str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "No finished runs" in capsys.readouterr().err
