"""experiments/benchmarks/accuracy_per_cost.py: accuracy against CPU-minutes, read from a compare folder."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "benchmarks" / "accuracy_per_cost.py"


def write_run(run_dir: Path, approach: str, seconds: float, gender: float, emotion: float, cores=2, teachers=None):
    run_dir.mkdir(parents=True)
    metrics = {
        "approach": approach,
        "training_seconds": seconds,
        "headline": {"gender_accuracy": gender, "emotion_accuracy": emotion},
        "provenance": {"cpu_count": cores},
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "config.json").write_text(json.dumps({"approach": approach, "options": {"teachers": teachers}}))


def test_cpu_minutes_are_seconds_times_cores_with_teachers_added_and_unfinished_runs_left_out(tmp_path):
    root = tmp_path / "compare"
    write_run(root / "separate" / "seed-0", "separate", 60, 0.90, 0.80)
    write_run(root / "separate" / "seed-1", "separate", 120, 0.92, 0.82)
    # The teachers' path as the comparison wrote it: relative to where it ran, not to here.
    write_run(root / "crosslabel_hard" / "seed-0", "crosslabel", 30, 0.91, 0.79, cores=4, teachers="runs/x/separate/seed-0")
    (root / "crosslabel_hard" / "seed-1").mkdir()  # unfinished: no metrics yet
    out = tmp_path / "results" / "accuracy_per_cost.json"

    subprocess.run([sys.executable, str(SCRIPT), str(root), "--out", str(out)], check=True, capture_output=True)

    rows = {row["variant"]: row for row in json.loads(out.read_text())["rows"]}
    assert rows["separate"]["cpu_minutes"]["mean"] == 3.0  # (60 + 120) s x 2 cores / 2 seeds
    assert rows["separate"]["gender_accuracy"]["mean"] == pytest.approx(0.91)
    assert rows["crosslabel_hard"]["seeds"] == ["seed-0"]
    assert rows["crosslabel_hard"]["cpu_minutes"]["mean"] == 2.0  # 30 s x 4 cores
    assert rows["crosslabel_hard"]["cpu_minutes_with_teachers"]["mean"] == 4.0  # + separate/seed-0's 2
    assert "| crosslabel_hard | crosslabel | 1 | 2.0 | 4.0 | 91.0 | 79.0 |" in out.with_suffix(".md").read_text()
    assert out.with_suffix(".png").stat().st_size > 0


def test_a_folder_without_finished_runs_is_refused_in_one_sentence(tmp_path):
    (tmp_path / "separate" / "seed-0").mkdir(parents=True)

    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "--out", str(tmp_path / "a.json")],
                          capture_output=True, text=True)

    assert done.returncode != 0
    assert "holds no finished run" in done.stderr and "Traceback" not in done.stderr
