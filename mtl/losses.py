"""How the losses of several heads combine into one: fixed weights, or learned uncertainty weighting."""

import keras
from keras import ops

from mtl.config import ApproachConfig
from mtl.errors import UserError
from mtl.tasks import EMOTION, GENDER


def masked_cross_entropy(targets, probabilities, weights):
    """Weighted mean cross-entropy over the examples that have a label (weight > 0); 0 if none do.

    Examples with weight 0 contribute nothing, so a head gets no gradient from a batch
    that holds no label for its task.
    """
    per_example = keras.losses.categorical_crossentropy(targets, probabilities)
    return ops.sum(per_example * weights) / ops.maximum(ops.sum(weights), 1e-8)


class FixedWeights(keras.layers.Layer):
    """Total loss = sum of each head's loss times a fixed weight."""

    def __init__(self, weights: dict[str, float], **kwargs):
        super().__init__(**kwargs)
        self.task_weights = dict(weights)

    def call(self, losses: dict, present: dict):
        return sum(self.task_weights.get(head, 1.0) * loss for head, loss in losses.items())


class UncertaintyWeighting(keras.layers.Layer):
    """Kendall, Gal and Cipolla (2018): loss_t * exp(-s_t) + s_t / 2, with s_t = log sigma_t^2 learned.

    A head whose batch holds no labels adds nothing, not even its regulariser, so its
    log-variance is not pushed down by batches that cannot inform it.
    """

    def __init__(self, heads, **kwargs):
        super().__init__(**kwargs)
        self.heads = list(heads)
        self.log_variances = {
            head: self.add_weight(name=f"{head}_log_variance", shape=(), initializer="zeros") for head in self.heads
        }

    def call(self, losses: dict, present: dict):
        total = 0.0
        for head, loss in losses.items():
            s = self.log_variances[head]
            total = total + present[head] * (ops.exp(-s) * loss + 0.5 * s)
        return total


def loss_combiner(options: ApproachConfig, heads) -> keras.layers.Layer:
    if options.loss_weighting == "fixed":
        return FixedWeights({GENDER: options.gender_loss_weight, EMOTION: options.emotion_loss_weight})
    if options.loss_weighting == "uncertainty":
        return UncertaintyWeighting(heads)
    raise UserError(f"Unknown loss_weighting '{options.loss_weighting}'; expected 'fixed' or 'uncertainty'.")
