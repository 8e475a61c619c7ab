"""Which group an example belongs to, for group-robust training (`mtl.robust`).

The two tasks are confounded in the training data (far more of the women smile), so a head can
learn the other task as a shortcut ("smiling means female") and fail on the rare combinations.
A head's group of an example names that combination: the example's class for the head's task,
its class for the other task (the true label where known, else the teacher's most likely class)
and where it comes from. Group index of task t:

    class_t * (C_other * slots_t) + class_other * slots_t + slot,    slots_t = S_t + 1

with S_t the number of sources of task t (`labels["source"]` indexes them; absent means 0).
Slot S_t, the extra one, holds the examples whose label for t is the teacher's: they come from
the other task's data, which is none of t's sources (with pseudo_labels "none" their weight is
0 and the slot stays empty). Groups always need the teachers' predictions, because every
example lacks one of the two labels.
"""

from collections.abc import Sequence

import tensorflow as tf

from mtl.tasks import CLASSES, EMOTION, GENDER, TASKS

SOURCE = "source"  # the labels' key: the example's source within its task's list of sources
CROSS_LABELLED = "cross-labelled"  # the name of the extra slot in `group_name`


def other_task(task: str) -> str:
    return EMOTION if task == GENDER else GENDER


def _sources(task: str, num_sources: dict[str, int] | int) -> int:
    return num_sources[task] if isinstance(num_sources, dict) else int(num_sources)


def num_groups(task: str, num_sources: dict[str, int] | int) -> int:
    """How many groups a head of `task` has, given each task's number of sources (or one for both)."""
    return len(CLASSES[task]) * len(CLASSES[other_task(task)]) * (_sources(task, num_sources) + 1)


def group_ids(labels: dict, predictions: dict, num_sources: dict[str, int] | int) -> dict:
    """{task: int32 group index} of every example, for both tasks (batched or single examples).

    `labels` holds int32 `gender`, `emotion` (-1 where missing) and optionally `source`;
    `predictions` the teachers' probabilities of both tasks.
    """
    if predictions is None:
        raise ValueError("Group ids need the teachers' predictions for the label each example lacks.")
    classes = {
        task: tf.where(labels[task] >= 0, labels[task], tf.argmax(predictions[task], axis=-1, output_type=tf.int32))
        for task in TASKS
    }
    source = tf.cast(labels.get(SOURCE, tf.zeros_like(labels[GENDER])), tf.int32)
    ids = {}
    for task in TASKS:
        other = other_task(task)
        sources = _sources(task, num_sources)
        own = labels[task] >= 0
        # A source index beyond what the groups were sized for would silently share a group.
        tf.debugging.assert_less(
            tf.where(own, source, 0), sources, message=f"an example's source index exceeds the {sources} of {task}"
        )
        slots = sources + 1
        slot = tf.where(own, source, sources)
        ids[task] = classes[task] * (len(CLASSES[other]) * slots) + classes[other] * slots + slot
    return ids


def group_name(task: str, index: int, source_names: Sequence[str]) -> str:
    """A readable name of a head's group, e.g. "female|happy|gender/Training" or "male|sad|cross-labelled"."""
    other = other_task(task)
    slots = len(source_names) + 1
    own_class, rest = divmod(int(index), len(CLASSES[other]) * slots)
    other_class, slot = divmod(rest, slots)
    where = source_names[slot] if slot < len(source_names) else CROSS_LABELLED
    return f"{CLASSES[task][own_class]}|{CLASSES[other][other_class]}|{where}"
