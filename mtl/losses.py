"""The loss of one head on batches where only some examples carry its label.

How the heads' losses then combine into one update is a loss weighting (`mtl.weighting`); how a
head's per-example losses become its loss is a group-robust method (`mtl.robust`), by default
`weighted_mean`.
"""

import keras
from keras import ops


def per_example_cross_entropy(targets, probabilities):
    """Each example's cross-entropy between its target probabilities and the head's answer."""
    return keras.losses.categorical_crossentropy(targets, probabilities)


def weighted_mean(per_example, weights):
    """sum(weights * per_example) / sum(weights); 0 where every weight is 0."""
    return ops.sum(per_example * weights) / ops.maximum(ops.sum(weights), 1e-8)


def masked_cross_entropy(targets, probabilities, weights):
    """Weighted mean cross-entropy over the examples that have a label (weight > 0); 0 if none do.

    Examples with weight 0 contribute nothing, so a head gets no gradient from a batch
    that holds no label for its task.
    """
    return weighted_mean(per_example_cross_entropy(targets, probabilities), weights)
