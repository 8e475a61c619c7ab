"""The interface every group-robust method implements, its registry, and per-group sums of a batch.

A method is a Keras layer, so what it tracks (group counts, Group DRO's weights over groups)
saves and restores with the Trainer that holds it, as loss weightings do (`mtl.weighting`). It
sees one head at a time: the per-example losses, the per-example label weights (0 where the
example has neither a label nor a pseudo-label for the head) and the group ids (`mtl.groups`).
"""

import keras
import tensorflow as tf

from mtl.config import ApproachConfig, PluginOptions
from mtl.registry import Registry


class RobustMethod(keras.layers.Layer):
    """Turns a head's per-example losses into its loss; subclasses define `task_loss`."""

    # False: the method never reads groups, and batches need not carry them.
    needs_groups = True
    # Its options (a `PluginOptions` subclass), given to `__init__`; this one has none.
    Options = PluginOptions
    # Option -> the values a search tries by default (`mtl.searchable.Hyperparameter` specs).
    search_defaults: dict = {}

    def __init__(self, options: PluginOptions, heads, num_groups: dict[str, int], **kwargs):
        super().__init__(**kwargs)
        self.heads = list(heads)
        self.num_groups = dict(num_groups)
        missing = [head for head in self.heads if self.needs_groups and head not in self.num_groups]
        if missing:
            raise ValueError(f"{type(self).__name__} needs the number of groups of head '{missing[0]}'.")

    def task_loss(self, head: str, per_example_losses, weights, groups):
        """The scalar loss of `head` on this batch; called once per head and training step."""
        raise NotImplementedError(f"{type(self).__name__} does not define task_loss.")


METHODS: Registry[type[RobustMethod]] = Registry("group-robust method", "options.robust")


def names() -> list[str]:
    return METHODS.names()


def create(options: ApproachConfig, heads, num_groups: dict[str, int]) -> RobustMethod:
    """The method `options.robust` names, given its options, for these heads with `{head: number of groups}`."""
    return METHODS.get(options.robust.type)(options.robust, heads, num_groups)


def group_sums(values, groups, num_groups: int):
    """The sum of `values` over each group's examples, [num_groups]; 0 for a group not in the batch."""
    return tf.math.unsorted_segment_sum(values, tf.cast(groups, tf.int32), num_groups)
