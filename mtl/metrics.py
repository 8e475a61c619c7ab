"""The numbers a run is judged by, declared once: evaluation's headline, `compare`'s tables and
paired tests, and the HParams columns all read the table below.

Each metric says what it is measured on (a test set and task, the validation splits, or the run
itself), how a table shows it, and whether higher is better. The headline of a run's
`metrics.json` is built from the test-set metrics here, in the order declared; `compare` shows the
ones it compares grouped by task (test sets first, then validation, then the run's cost).
"""

from dataclasses import dataclass

from mtl.tasks import EMOTION, FOUR, GENDER, TASKS


def task_test(task: str) -> str:
    """The name of a task's first test source (`gender_test`); its others are named by their path."""
    return f"{task}_test"


# The test sets every run is scored on, named here for `mtl.data.pipeline.test_sets` and evaluation;
# the photographs are also scored on the faces found in them, under the name with DETECTED added.
GENDER_TEST, EMOTION_TEST, HAPPY_HOUSE, JOINT_TEST = task_test(GENDER), task_test(EMOTION), "happy_house", "joint_test"
DETECTED = "_detected"

# What a metric is, and so where its value comes from.
ACCURACY = "accuracy"  # a task's accuracy on one test set
FACE_FOUND_RATE = "face_found_rate"  # of a test set of photographs, the share where a face was found
WORST_GROUP = "worst_group_accuracy"  # a task's worst group (of enough faces) over all its test sets
CONFOUND_GAP = "confound_gap"  # a task's largest gap between the other task's groups, over its test sets
VALIDATION = "validation"  # a task's validation accuracy at the chosen epoch (written by training)
RUN = "run"  # a number about the run itself (size, speed, training time)


@dataclass(frozen=True)
class Metric:
    name: str  # its key in the headline (or, for RUN, in the metrics) and its column
    text: str  # how tables and TensorBoard's HParams tab show it
    measure: str  # one of the kinds above
    task: str | None = None
    test_set: str | None = None
    higher_is_better: bool = True
    compared: bool = True  # a column of `compare`'s tables and HParams rows

    @property
    def paired(self) -> bool:
        """Whether two runs can be tested against each other on it image by image (an accuracy on one test set)."""
        return self.measure == ACCURACY and self.test_set is not None


def accuracy_name(test_set: str, task: str) -> str:
    """The name of a task's accuracy on a further test source of that task (`utkface_test_gender_accuracy`)."""
    return f"{test_set}_{task}_accuracy"


def is_further_source(test_set: str, task: str) -> bool:
    """Whether a test set is one of a task's further sources, named by their path (`utkface_test`),
    whose accuracy the headline names by rule rather than by declaration."""
    return test_set not in (task_test(task), JOINT_TEST) and not test_set.startswith(HAPPY_HOUSE)


# In headline order: the declared test sets, then the further sources, then the groups; then what
# training and the run add.
METRICS = (
    Metric("gender_accuracy", "gender accuracy (gender test)", ACCURACY, GENDER, GENDER_TEST),
    Metric("emotion_accuracy", "emotion accuracy (FER2013 test)", ACCURACY, EMOTION, EMOTION_TEST),
    Metric("happy_house_accuracy", "emotion accuracy (Happy House)", ACCURACY, EMOTION, HAPPY_HOUSE),
    Metric("happy_house_detected_accuracy", "emotion accuracy (Happy House, detected faces)", ACCURACY, EMOTION,
           HAPPY_HOUSE + DETECTED),
    Metric("happy_house_face_found_rate", "faces found (Happy House photographs)", FACE_FOUND_RATE, EMOTION,
           HAPPY_HOUSE + DETECTED, compared=False),
    Metric("joint_four_class_accuracy", "four-class accuracy (joint set)", ACCURACY, FOUR, JOINT_TEST),
    Metric("joint_gender_accuracy", "gender accuracy (joint set)", ACCURACY, GENDER, JOINT_TEST, compared=False),
    Metric("joint_emotion_accuracy", "emotion accuracy (joint set)", ACCURACY, EMOTION, JOINT_TEST, compared=False),
    # A further source of the default config; any other gets its headline accuracy by the same rule.
    Metric(accuracy_name("utkface_test", GENDER), "gender accuracy (UTKFace test)", ACCURACY, GENDER, "utkface_test"),
    Metric("gender_worst_group_accuracy", "gender accuracy of the worst group (all gender tests)", WORST_GROUP, GENDER),
    Metric("gender_confound_gap", "gender: largest happy/sad gap within a gender", CONFOUND_GAP, GENDER,
           higher_is_better=False),
    Metric("emotion_worst_group_accuracy", "emotion accuracy of the worst group (FER2013 test)", WORST_GROUP, EMOTION),
    Metric("emotion_confound_gap", "emotion: largest female/male gap within an emotion", CONFOUND_GAP, EMOTION,
           higher_is_better=False),
    Metric("validation_gender_accuracy", "gender accuracy (validation split)", VALIDATION, GENDER),
    Metric("validation_emotion_accuracy", "emotion accuracy (validation split)", VALIDATION, EMOTION),
    Metric("validation_worst_group_accuracy", "worst group's accuracy (validation splits: class x source)", VALIDATION),
    Metric("parameters", "parameters", RUN, higher_is_better=False),
    Metric("inference_ms_per_image", "inference ms/image", RUN, higher_is_better=False),
    Metric("training_seconds", "training seconds", RUN, higher_is_better=False),
    # What training spent (mtl.budget): the units a comparison can hold equal.
    Metric("gender_faces_seen", "gender faces seen in training", RUN, higher_is_better=False),
    Metric("emotion_faces_seen", "emotion faces seen in training", RUN, higher_is_better=False),
    Metric("training_steps", "training steps", RUN, higher_is_better=False),
    Metric("training_multiply_adds", "training multiply-adds", RUN, higher_is_better=False),
    Metric("training_multiply_adds_with_teachers", "training multiply-adds, teachers included", RUN,
           higher_is_better=False),
)
BY_NAME = {metric.name: metric for metric in METRICS}
TEST_SET_MEASURES = (ACCURACY, FACE_FOUND_RATE, WORST_GROUP, CONFOUND_GAP)
_SECTIONS = (TEST_SET_MEASURES, (VALIDATION,), (RUN,))
_TASK_ORDER = (*TASKS, FOUR)


def _column_order(metric: Metric) -> tuple[int, int]:
    section = next(index for index, measures in enumerate(_SECTIONS) if metric.measure in measures)
    return section, _TASK_ORDER.index(metric.task) if section == 0 else 0


# What `compare` shows: test-set metrics by task, then validation, then the run's cost (a stable sort).
COMPARED = tuple(sorted((metric for metric in METRICS if metric.compared), key=_column_order))


def headline(test_sets: dict) -> dict:
    """The headline of a run's scores `{test set: {task: scores, ...}}`: every test-set metric it has
    (None where a test set or group is missing), in the declared order."""

    def value(test_set, task, key):
        scores = test_sets.get(test_set, {})
        return scores.get(key) if task is None else scores.get(task, {}).get(key)

    declared = [m for m in METRICS if m.measure in (ACCURACY, FACE_FOUND_RATE) and not is_further_source(m.test_set, m.task)]
    found = {m.name: value(m.test_set, None if m.measure == FACE_FOUND_RATE else m.task, m.measure) for m in declared}
    for name, scores in test_sets.items():
        for task in TASKS:
            if task in scores and is_further_source(name, task):
                found[accuracy_name(name, task)] = scores[task][ACCURACY]
    # A task's worst group and confound gap over all its test sets: the people it serves worst.
    for metric in (m for m in METRICS if m.measure in (WORST_GROUP, CONFOUND_GAP)):
        scored = [scores[metric.task][metric.measure] for scores in test_sets.values()
                  if "groups" in scores.get(metric.task, {}) and scores[metric.task][metric.measure] is not None]
        found[metric.name] = (min if metric.measure == WORST_GROUP else max)(scored) if scored else None
    return found
