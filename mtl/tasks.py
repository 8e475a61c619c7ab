"""The two tasks, their classes, and the four combined classes, with the two ways between their probabilities.

Labels are small integers; -1 marks a task whose label is missing for an example
(a gender-only face has no emotion label and vice versa).
"""

MISSING = -1

GENDER = "gender"
EMOTION = "emotion"
FOUR = "four"
TASKS = (GENDER, EMOTION)

CLASSES = {
    GENDER: ("female", "male"),
    EMOTION: ("happy", "sad"),
}

# Emotion-major order, matching the jointly labelled folder layout `{happy_female,...}/`.
FOUR_CLASSES = tuple(f"{e}_{g}" for e in CLASSES[EMOTION] for g in CLASSES[GENDER])
CLASSES[FOUR] = FOUR_CLASSES


def four_class_index(emotion: int, gender: int) -> int:
    """Index into FOUR_CLASSES of an (emotion, gender) pair."""
    return emotion * len(CLASSES[GENDER]) + gender


def split_four_class(index: int) -> tuple[int, int]:
    """(emotion, gender) of a four-class index."""
    return divmod(index, len(CLASSES[GENDER]))


def four_from_tasks(emotion, gender):
    """Four-class probabilities [..., 4], in FOUR_CLASSES order, as the outer product of emotion and
    gender probabilities [..., 2]; NumPy arrays and TensorFlow tensors alike (a tensor comes back)."""
    from keras import ops  # here, not above: `mtl predict` through LiteRT imports this module without TensorFlow

    joint = emotion[..., :, None] * gender[..., None, :]  # [..., emotion, gender]: emotion-major when flattened
    return ops.reshape(joint, (*ops.shape(joint)[:-2], len(FOUR_CLASSES)))


def task_from_four(four, task: str):
    """One task's probabilities [..., 2] from four-class probabilities [..., 4], summing over the other task;
    NumPy arrays and TensorFlow tensors alike (a tensor comes back)."""
    from keras import ops

    grid = ops.reshape(four, (*ops.shape(four)[:-1], len(CLASSES[EMOTION]), len(CLASSES[GENDER])))
    return ops.sum(grid, axis=-1 if task == EMOTION else -2)
