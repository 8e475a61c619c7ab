"""The loss of one head on batches where only some examples carry its label.

How the heads' losses then combine into one update is a loss weighting (`mtl.weighting`).
"""

import keras
from keras import ops


def masked_cross_entropy(targets, probabilities, weights):
    """Weighted mean cross-entropy over the examples that have a label (weight > 0); 0 if none do.

    Examples with weight 0 contribute nothing, so a head gets no gradient from a batch
    that holds no label for its task.
    """
    per_example = keras.losses.categorical_crossentropy(targets, probabilities)
    return ops.sum(per_example * weights) / ops.maximum(ops.sum(weights), 1e-8)
