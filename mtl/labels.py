"""Where training targets come from: true labels, or pseudo-labels for the missing task.

A label source turns `(labels, predictions)` of one example into, per task, a target
probability vector and a weight (0 drops the example from that task's loss):
- "none": true labels only; the missing task is masked out.
- "hard": the teacher's most likely class (the notebook's cross-labelling).
- "soft": the teacher's probabilities.
- "threshold": the teacher's most likely class, only where its confidence reaches the threshold.
"""

import tensorflow as tf

from mtl.config import ApproachConfig
from mtl.tasks import CLASSES, EMOTION, FOUR, GENDER, TASKS

def task_targets(labels: dict, predictions: dict | None, options: ApproachConfig):
    """({task: target probabilities}, {task: weight}) for gender and emotion."""
    targets, weights = {}, {}
    for task in TASKS:
        classes = len(CLASSES[task])
        known = labels[task] >= 0
        truth = tf.one_hot(tf.maximum(labels[task], 0), classes)
        if options.pseudo_labels == "none" or predictions is None:
            pseudo, pseudo_weight = truth, tf.zeros_like(truth[..., 0])
        else:
            probs = predictions[task]
            hard = tf.one_hot(tf.argmax(probs, axis=-1), classes)
            pseudo = probs if options.pseudo_labels == "soft" else hard
            if options.pseudo_labels == "threshold":
                pseudo_weight = tf.cast(tf.reduce_max(probs, axis=-1) >= options.confidence_threshold, tf.float32)
            else:
                pseudo_weight = tf.ones_like(truth[..., 0])
        targets[task] = tf.where(known[..., None], truth, pseudo)
        weights[task] = tf.where(known, 1.0, pseudo_weight)
    return targets, weights


def four_class_targets(labels: dict, predictions: dict, options: ApproachConfig):
    """({"four": outer product of the two task targets}, {"four": product of their weights})."""
    targets, weights = task_targets(labels, predictions, options)
    joint = targets[EMOTION][..., :, None] * targets[GENDER][..., None, :]
    shape = tf.concat([tf.shape(joint)[:-2], [len(CLASSES[FOUR])]], axis=0)
    return {FOUR: tf.reshape(joint, shape)}, {FOUR: weights[EMOTION] * weights[GENDER]}
