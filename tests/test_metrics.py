"""The one table of metrics: the headline a run's scores give, and the columns compare shows."""

from mtl import compare
from mtl.comparison_stats import PAIRED
from mtl.metrics import BY_NAME, METRICS, headline


def scores(accuracy, worst=None, gap=None, groups=True):
    task_scores = {"accuracy": accuracy, "worst_group_accuracy": worst, "confound_gap": gap}
    return {**task_scores, "groups": {}} if groups else task_scores


TEST_SETS = {
    "gender_test": {"gender": scores(0.9, worst=0.7, gap=0.10)},
    "utkface_test": {"gender": scores(0.8, worst=0.6, gap=0.25)},
    "emotion_test": {"emotion": scores(0.75, worst=0.5, gap=None)},
    "happy_house": {"emotion": scores(0.6, groups=False)},
    "happy_house_detected": {"emotion": scores(0.55, groups=False), "face_found_rate": 0.95},
}


def test_the_headline_names_every_test_set_metric_in_the_declared_order():
    found = headline(TEST_SETS)

    assert list(found) == [
        "gender_accuracy", "emotion_accuracy", "happy_house_accuracy", "happy_house_detected_accuracy",
        "happy_house_face_found_rate", "joint_four_class_accuracy", "joint_gender_accuracy", "joint_emotion_accuracy",
        "utkface_test_gender_accuracy", "gender_worst_group_accuracy", "gender_confound_gap",
        "emotion_worst_group_accuracy", "emotion_confound_gap",
    ]
    assert found["utkface_test_gender_accuracy"] == 0.8 and found["happy_house_face_found_rate"] == 0.95
    assert found["joint_four_class_accuracy"] is None  # no joint set given
    # The worst group over all of a task's test sets, the largest confound gap; None where no set has one.
    assert found["gender_worst_group_accuracy"] == 0.6 and found["gender_confound_gap"] == 0.25
    assert found["emotion_worst_group_accuracy"] == 0.5 and found["emotion_confound_gap"] is None


def test_a_further_test_source_gets_its_headline_accuracy_by_its_name():
    found = headline({**TEST_SETS, "ckplus_test": {"emotion": scores(0.7, groups=False)}})

    assert found["ckplus_test_emotion_accuracy"] == 0.7


def test_compare_shows_the_compared_metrics_grouped_by_task_and_tests_the_accuracies_of_one_test_set():
    assert list(compare.METRICS) == [
        "gender_accuracy", "utkface_test_gender_accuracy", "gender_worst_group_accuracy", "gender_confound_gap",
        "emotion_accuracy", "happy_house_accuracy", "happy_house_detected_accuracy", "emotion_worst_group_accuracy",
        "emotion_confound_gap", "joint_four_class_accuracy", "validation_gender_accuracy",
        "validation_emotion_accuracy", "validation_worst_group_accuracy", "parameters", "inference_ms_per_image", "training_seconds",
        "gender_faces_seen", "emotion_faces_seen", "training_steps", "training_multiply_adds",
        "training_multiply_adds_with_teachers",
    ]
    assert {metric.name: (metric.test_set, metric.task) for metric in PAIRED} == {
        "gender_accuracy": ("gender_test", "gender"), "utkface_test_gender_accuracy": ("utkface_test", "gender"),
        "emotion_accuracy": ("emotion_test", "emotion"), "happy_house_accuracy": ("happy_house", "emotion"),
        "happy_house_detected_accuracy": ("happy_house_detected", "emotion"),
        "joint_four_class_accuracy": ("joint_test", "four"),
    }
    assert compare.METRICS["gender_accuracy"] == BY_NAME["gender_accuracy"].text


def test_gaps_and_costs_are_better_lower_and_accuracies_higher():
    lower = {metric.name for metric in METRICS if not metric.higher_is_better}

    costs = {"parameters", "inference_ms_per_image", "training_seconds", "gender_faces_seen", "emotion_faces_seen",
             "training_steps", "training_multiply_adds", "training_multiply_adds_with_teachers"}
    assert lower == {"gender_confound_gap", "emotion_confound_gap", *costs}
    assert len(BY_NAME) == len(METRICS)  # one name, one metric
