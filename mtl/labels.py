"""Where training targets come from: true labels, or a label source's pseudo-labels for the missing task.

A label source (`options.pseudo_labels`) is a small class registered by name in `LABEL_SOURCES`.
For the examples that lack a task's true label it turns the teacher's probabilities into a target
probability vector and a weight (0 drops the example from that task's loss), and it says whether
it needs teachers at all:
- "none": true labels only; the missing task is masked out.
- "hard": the teacher's most likely class (the notebook's cross-labelling).
- "soft": the teacher's probabilities.
- "threshold": the teacher's most likely class, only where its confidence reaches the option
  `confidence` (`{"type": "threshold", "confidence": 0.9}`).
A source's options are its `Options` (a `PluginOptions` subclass), given to `missing`.
"""

from dataclasses import dataclass

import tensorflow as tf

from mtl.config import ApproachConfig, PluginOptions, number
from mtl.registry import Registry
from mtl.tasks import CLASSES, EMOTION, FOUR, GENDER, TASKS, four_from_tasks


class LabelSource:
    """Targets for the examples that lack a task's true label; subclasses are registered with `@register`."""

    needs_teachers = True  # False: the teachers' cross-labelling is never made for it
    Options = PluginOptions  # its options; this one has none
    search_defaults: dict = {}  # option -> the values a search tries by default (`mtl.searchable.Hyperparameter` specs)

    def missing(self, placeholder, probabilities, options: PluginOptions):
        """(target probabilities, weight) per example from the teacher's `probabilities` of one task.

        `placeholder` is the one-hot tensor the true labels would give (class 0 where missing),
        for its shape; `probabilities` is None when the source needs no teachers; `options` are
        the source's own (`config.options.pseudo_labels`).
        """
        raise NotImplementedError


LABEL_SOURCES: Registry[type[LabelSource]] = Registry("label source", "options.pseudo_labels")
register = LABEL_SOURCES.register


def names() -> list[str]:
    """The label sources a config may name (`options.pseudo_labels`)."""
    return LABEL_SOURCES.names()


def teacher_sources() -> list[str]:
    """The label sources that learn from the teachers' pseudo-labels."""
    return [name for name, source in LABEL_SOURCES.items() if source.needs_teachers]


def needs_teachers(options: ApproachConfig) -> bool:
    return LABEL_SOURCES.get(options.pseudo_labels.type).needs_teachers


@register("none")
class TrueLabelsOnly(LabelSource):
    needs_teachers = False

    def missing(self, placeholder, probabilities, options):
        return placeholder, tf.zeros_like(placeholder[..., 0])


@register("hard")
class HardLabels(LabelSource):
    def missing(self, placeholder, probabilities, options):
        return tf.one_hot(tf.argmax(probabilities, axis=-1), placeholder.shape[-1]), tf.ones_like(placeholder[..., 0])


@register("soft")
class SoftLabels(LabelSource):
    def missing(self, placeholder, probabilities, options):
        return probabilities, tf.ones_like(placeholder[..., 0])


@register("threshold")
class ConfidentHardLabels(LabelSource):
    @dataclass(frozen=True)
    class Options(PluginOptions):
        confidence: float = number(0.9, above=0, at_most=1)  # the teacher's probability a pseudo-label needs

    search_defaults = {"confidence": {"min": 0.6, "max": 0.95, "step": 0.05}}

    def missing(self, placeholder, probabilities, options):
        hard, _ = HardLabels().missing(placeholder, probabilities, options)
        confident = tf.reduce_max(probabilities, axis=-1) >= options.confidence
        return hard, tf.cast(confident, tf.float32)


def task_targets(labels: dict, predictions: dict | None, options: ApproachConfig):
    """({task: target probabilities}, {task: weight}) for gender and emotion.

    Without predictions (no teachers), a missing label is masked whatever the source.
    """
    source = TrueLabelsOnly() if predictions is None else LABEL_SOURCES.get(options.pseudo_labels.type)()
    targets, weights = {}, {}
    for task in TASKS:
        known = labels[task] >= 0
        truth = tf.one_hot(tf.maximum(labels[task], 0), len(CLASSES[task]))
        probabilities = predictions[task] if source.needs_teachers else None
        pseudo, pseudo_weight = source.missing(truth, probabilities, options.pseudo_labels)
        targets[task] = tf.where(known[..., None], truth, pseudo)
        weights[task] = tf.where(known, 1.0, pseudo_weight)
    return targets, weights


def four_class_targets(labels: dict, predictions: dict, options: ApproachConfig):
    """({"four": outer product of the two task targets}, {"four": product of their weights})."""
    targets, weights = task_targets(labels, predictions, options)
    return {FOUR: four_from_tasks(targets[EMOTION], targets[GENDER])}, {FOUR: weights[EMOTION] * weights[GENDER]}
