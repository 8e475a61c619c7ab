"""Budgets (`mtl.budget`): what each stage trains under epochs, examples, steps, flops and seconds,
and, on the sample, that two approaches under `--budget examples` see the same faces per task."""

import json

import pytest

from conftest import run_cli
from mtl import budget
from mtl.config import BudgetConfig
from mtl.errors import UserError

BATCH = 32
# The sample's shapes: a separate model per task, and one two-head network drawing from both.
SEPARATE = [
    budget.Demand("gender", 2, 10, {"gender": BATCH}, 3e6 * BATCH),
    budget.Demand("emotion", 2, 5, {"emotion": BATCH}, 3e6 * BATCH),
]


def two_heads(emotion_share: float, multiply_adds: float = 3e6) -> list[budget.Demand]:
    shares = {"gender": (1 - emotion_share) * BATCH, "emotion": emotion_share * BATCH}
    return [budget.Demand("multitask", 2, 15, shares, multiply_adds * BATCH)]


def test_the_epochs_budget_is_every_stage_s_own_epochs_as_before():
    plans = [budget.plan(BudgetConfig(), SEPARATE, demand) for demand in SEPARATE]
    assert [(plan.evaluations, plan.steps_per_evaluation) for plan in plans] == [(2, 10), (2, 5)]


def test_the_reference_is_what_train_epochs_epochs_cost_in_every_unit():
    assert budget.reference(SEPARATE) == {
        "gender_faces": 2 * 10 * BATCH, "emotion_faces": 2 * 5 * BATCH, "steps": 30, "flops": 30 * 3e6 * BATCH,
    }


def test_examples_give_the_two_head_model_the_faces_of_the_separate_models_at_its_natural_share():
    reference = budget.reference(SEPARATE)
    config = BudgetConfig(kind="examples", points=5, gender_faces=reference["gender_faces"], emotion_faces=reference["emotion_faces"])
    [demand] = two_heads(emotion_share=1 / 3)  # the sample's 10 : 5 steps
    plan = budget.plan(config, [demand], demand)
    spent = budget.spent(demand, plan.steps)
    assert plan.evaluations == 5
    assert spent["gender_faces"] == pytest.approx(reference["gender_faces"], rel=0.05)
    assert spent["emotion_faces"] == pytest.approx(reference["emotion_faces"], rel=0.05)


def test_examples_refuse_a_mixing_share_that_would_give_one_task_more_faces_and_say_which_share_fits():
    reference = budget.reference(SEPARATE)
    config = BudgetConfig(kind="examples", gender_faces=reference["gender_faces"], emotion_faces=reference["emotion_faces"])
    [demand] = two_heads(emotion_share=0.5)
    with pytest.raises(UserError, match=r"set data.emotion_proportion=0\.3333"):
        budget.plan(config, [demand], demand)


def test_steps_split_between_stages_as_their_epochs_do():
    config = BudgetConfig(kind="steps", steps=300, points=3)
    plans = [budget.plan(config, SEPARATE, demand) for demand in SEPARATE]
    assert [plan.steps for plan in plans] == [201, 99]  # 200 and 100, rounded up to three equal parts


def test_flops_give_a_network_twice_as_costly_half_the_steps():
    config = BudgetConfig(kind="flops", flops=budget.reference(two_heads(1 / 3))["flops"], points=1)
    [cheap] = two_heads(1 / 3)
    [costly] = two_heads(1 / 3, multiply_adds=6e6)
    assert budget.plan(config, [cheap], cheap).steps == 30
    assert budget.plan(config, [costly], costly).steps == 15


def test_seconds_turn_into_steps_by_the_measured_step_time_and_need_an_amount():
    [demand] = two_heads(1 / 3)
    assert budget.plan(BudgetConfig(kind="seconds", seconds=60, points=1), [demand], demand, seconds_per_step=0.5).steps == 120
    with pytest.raises(UserError, match="train.budget.seconds"):
        budget.plan(BudgetConfig(kind="seconds"), [demand], demand, seconds_per_step=0.5)


def test_a_run_counts_its_teachers_training_in_its_cost():
    stage = {"budget": {"spent": {"gender_faces": 10, "emotion_faces": 5, "steps": 3, "flops": 9.0},
                        "points": [{"gender_faces": 10, "emotion_faces": 5, "steps": 3, "flops": 9.0, "seconds": 1.0}]},
             "history": {"val_gender_accuracy": [0.7]}}
    teachers = {"gender_faces": 100, "emotion_faces": 50, "steps": 30, "flops": 90.0}
    record = budget.run_record("examples", [stage], teachers)
    assert record["spent_with_teachers"]["gender_faces"] == 110
    assert record["curves"]["gender"][0]["faces_with_teachers"] == 110
    assert budget.headline(record)["training_multiply_adds_with_teachers"] == 99.0


@pytest.mark.slow
def test_two_approaches_under_budget_examples_see_the_same_faces_per_task(tmp_path):
    """On the sample: separate and the two-head model at its natural share, one comparison under --budget examples."""
    comparison = {
        "base": {"data": {"batch_size": 32, "emotion_proportion": None}, "model": {"backbone": "lenet"},
                 "train": {"epochs": 1, "seed": 7, "budget": {"points": 2}}},
        "variants": {"separate": {"approach": "separate"},
                     "multitask": {"approach": "multitask", "options": {"pseudo_labels": "none"}}},
    }
    config_file = tmp_path / "comparison.json"
    config_file.write_text(json.dumps(comparison))
    code, out, err = run_cli(
        "compare", "--config", config_file, "--budget", "examples", "--runs-dir", tmp_path, "--name", "equal"
    )
    assert code == 0, err
    root = tmp_path / "equal"
    metrics = {name: json.loads((root / name / "seed-0" / "metrics.json").read_text()) for name in ("separate", "multitask")}
    for task in ("gender", "emotion"):
        seen = [metrics[name][f"{task}_faces_seen"] for name in metrics]
        assert seen[0] > 0 and seen[1] == pytest.approx(seen[0], rel=0.05), (task, seen)
    # Two validation points each, so the curves have two points per task and variant, and a picture.
    assert len(metrics["multitask"]["budget"]["curves"]["emotion"]) == 2
    assert (root / "accuracy_vs_budget.png").stat().st_size > 0
    assert "faces seen" in (root / "results.md").read_text()
