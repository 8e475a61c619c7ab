"""experiments/paired_test.py: two models' per-image correctness, compared set by set with McNemar's test."""

import importlib.util
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "paired_test.py"
spec = importlib.util.spec_from_file_location("paired_test", SCRIPT)
paired_test = importlib.util.module_from_spec(spec)
spec.loader.exec_module(paired_test)


def test_each_shared_test_set_gets_both_accuracies_the_discordant_counts_and_a_p_value(tmp_path):
    right = np.ones(40, bool)
    worse = right.copy()
    worse[:12] = False  # 12 images only the first model gets right, none the other way: p = 2 / 2**12
    np.savez(tmp_path / "a.npz", **{"utkface_test/gender": right, "happy_house/emotion": right[:10]})
    np.savez(tmp_path / "b.npz", **{"utkface_test/gender": worse})

    assert paired_test.main([f"before={tmp_path / 'a.npz'}", f"after={tmp_path / 'b.npz'}", "--out", str(tmp_path / "t.md")]) == 0
    rows = (tmp_path / "t.md").read_text().splitlines()
    assert rows[2:] == ["| utkface_test/gender | 40 | 100.00% | 70.00% | 12 | 0 | 0.00049 |"]
    assert paired_test.main(["before=missing.npz", f"after={tmp_path / 'b.npz'}"]) == 2


def test_a_group_row_keeps_the_table_s_seven_columns(tmp_path):
    right, worse = np.ones(40, bool), np.ones(40, bool)
    worse[:4] = False
    np.savez(tmp_path / "a.npz", **{"utkface_test/gender": right})
    np.savez(tmp_path / "b.npz", **{"utkface_test/gender": worse})
    groups = {"utkface_test/gender": {"female|sad": np.arange(40) < 10}}

    rows = paired_test.table({"before": tmp_path / "a.npz", "after": tmp_path / "b.npz"}, groups).splitlines()
    assert rows[3] == "| utkface_test/gender: female\\|sad | 10 | 100.00% | 60.00% | 4 | 0 | 0.12 |"
    assert {len(line.replace("\\|", "").split("|")) for line in rows} == {9}  # 7 cells between 8 pipes
