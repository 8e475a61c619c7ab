"""mtl.comparison_tables: the Markdown table of a comparison says what its numbers are."""

from mtl.comparison_tables import write_tables


def table_of(seeds: int, tmp_path) -> str:
    accuracy = {"gender_accuracy_mean": 0.8, "gender_accuracy_std": 0.01 if seeds > 1 else None}
    rows = [{"variant": name, "approach": name, "seeds": seeds, **accuracy} for name in ("separate", "multitask")]
    return write_tables(rows, per_seed=[], root=tmp_path)


def test_a_table_of_several_seeds_says_its_cells_are_mean_and_standard_deviation(tmp_path):
    table = table_of(3, tmp_path)

    assert "80.00 ± 1.00" in table
    assert "mean ± standard deviation over seeds" in table and "single runs" not in table


def test_a_table_of_one_seed_says_its_cells_are_single_runs_and_shows_no_spread(tmp_path):
    table = table_of(1, tmp_path)

    assert "±" not in table
    assert "single runs (one seed)" in table and "standard deviation" not in table
    assert (tmp_path / "results.md").read_text() == table
