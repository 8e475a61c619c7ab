"""experiments/teacher_confound.py: a run's teachers cross-label a config's training split and say how confounded they find it."""

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "teacher_confound.py"
spec = importlib.util.spec_from_file_location("teacher_confound", SCRIPT)
teacher_confound = importlib.util.module_from_spec(spec)
spec.loader.exec_module(teacher_confound)


def test_the_teachers_answers_on_every_training_face_are_counted_per_source(trained_run, tmp_path, capsys):
    run_dir, _ = trained_run
    out = tmp_path / "confound.json"

    code = teacher_confound.main(["--teachers", str(run_dir), "--config", str(run_dir / "config.json"), "--out", str(out)])

    assert code == 0
    written = json.loads(out.read_text())
    confound = written["confound"]
    assert list(confound) == ["gender_training", "fer2013_train"]
    faces = {name: sum(count for key, count in table.items() if key != "task") for name, table in confound.items()}
    assert faces == {"gender_training": 320, "fer2013_train": 960}  # the sample's training split, every face once
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-2:] == teacher_confound.pseudo_labels.confound_lines(confound)  # after the progress lines


def test_a_variant_the_comparison_does_not_train_is_one_sentence(trained_run, tmp_path, capsys):
    run_dir, _ = trained_run
    comparison = tmp_path / "comparison.json"
    comparison.write_text(json.dumps({"variants": {"separate": {"approach": "separate"}}}))

    code = teacher_confound.main(["--teachers", str(run_dir), "--config", str(comparison), "--variant", "multitask"])

    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"error: Comparison config '{comparison}' has no variant 'multitask' that trains; it has: separate."
    )
