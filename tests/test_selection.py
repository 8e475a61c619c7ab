"""mtl.selection: which variant the validation splits choose, and when a lead is a finding."""

from mtl.selection import Scored, choice_section, scored_run, validation_splits

SPLITS = "gender from gender/Training, emotion from fer2013/train, 0.2 of each held out"


def runs(variant: str, means: tuple, worst_groups: tuple, splits: str = SPLITS) -> list[Scored]:
    return [Scored(variant, str(seed), splits, mean, worst) for seed, (mean, worst) in enumerate(zip(means, worst_groups))]


def test_a_lead_within_the_spread_across_seeds_is_not_a_finding():
    # `first` leads by 10 points, then trails by 6: ahead on average, but not beyond the spread.
    text = choice_section(runs("first", (0.90, 0.80), (0.5, 0.5)) + runs("second", (0.80, 0.86), (0.4, 0.4)))
    assert ("validation mean (both tasks): `first` (85.0 ± 7.1), ahead of `second` by +2.0 ± 11.3 points per seed; "
            "within the spread across seeds: not a finding") in text
    assert "validation worst group: `first` (50.0 ± 0.0), ahead of `second` by +10.0 ± 0.0 points per seed; a finding" in text
    assert "- Both choose `first`." in text


def test_one_seed_in_common_is_never_a_finding_and_one_variant_is_the_only_one():
    one_seed = choice_section(runs("first", (0.9,), (0.8,)) + runs("second", (0.8,), (0.7,)))
    assert "ahead of `second` by +10.0 points; fewer than two seeds in common: not a finding" in one_seed and "Among 2 variants with 1 finished seed:" in one_seed
    alone = choice_section(runs("only", (0.9, 0.8), (0.7, 0.6)))
    assert "`only` (85.0 ± 7.1), the only variant that has it" in alone


def test_runs_without_worst_groups_are_ranked_by_their_mean_alone():
    text = choice_section(runs("first", (0.9, 0.9), (None, None)) + runs("second", (0.8, 0.8), (None, None)))
    assert "validation mean (both tasks): `first`" in text
    assert "worst group" not in text.split("never a test set")[1] and "choose" not in text.split("never a test set")[1]


def test_runs_without_validation_scores_leave_no_section():
    refit = scored_run("refit", "0", None, {"gender_accuracy": 0.9})  # `mtl refit` writes no validation accuracies
    assert refit.mean is None and refit.worst_group is None and refit.splits == "not recorded"
    assert choice_section([refit]) == ""


def test_sources_are_named_as_the_config_names_them_and_a_dict_by_its_fields():
    data = {"gender_train": ["gender/Training", {"type": "utkface", "path": "utkface/train", "min_age": 40}],
            "emotion_train": ["fer2013/train"], "validation_fraction": 0.2}
    assert validation_splits(data) == ("gender from gender/Training + min_age 40, path utkface/train, type utkface, "
                                       "emotion from fer2013/train, 0.2 of each held out")
    scored = scored_run("v", "42", data, {"validation_gender_accuracy": 0.9, "validation_emotion_accuracy": 0.7,
                                           "validation_worst_group_accuracy": 0.6})
    assert scored.mean == 0.8 and scored.worst_group == 0.6 and scored.splits == validation_splits(data)


def test_where_the_rules_disagree_the_two_leaders_meet_head_to_head():
    # `steady` leads the mean in every seed; `robust` leads the worst group on average, by one seed's luck.
    text = choice_section(runs("steady", (0.90, 0.91, 0.92), (0.70, 0.72, 0.71))
                          + runs("robust", (0.88, 0.89, 0.90), (0.60, 0.70, 0.95)))
    assert "- The two disagree" in text
    assert ("Head to head, `robust` less `steady` per seed: validation mean (both tasks) -2.0 ± 0.0 points (a finding: "
            "the difference exceeds its spread across seeds); validation worst group +4.0 ± 17.8 points "
            "(within the spread across seeds: not a finding).") in text


def test_one_seed_head_to_head_is_not_called_per_seed():
    text = choice_section(runs("steady", (0.90,), (0.70,)) + runs("robust", (0.88,), (0.80,)))
    assert ("Head to head, `robust` less `steady`: validation mean (both tasks) -2.0 points (fewer than two seeds "
            "in common: not a finding); validation worst group +10.0 points (fewer than two seeds in common: "
            "not a finding).") in text
