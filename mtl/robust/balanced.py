"""Group-balanced reweighting: every group weighs the same in expectation, however rare it is.

An example of group g weighs w / n_g, with w its label weight and n_g the label weights of group g
seen so far, this batch included (a running count kept as a layer weight). After t steps of
batches of B, n_g is about t * B * p_g and a batch holds about B * p_g of the group, so each group
gets about 1/t of the weight, the same for all. The loss is the self-normalised mean
sum(w / n_g * loss) / sum(w / n_g), on the scale of the plain mean, so learning rates carry over,
and no single rare example can weigh more than its group's share.

Why running counts rather than exact training-set counts: they count what the head actually
trains on (batches mixed at `data.emotion_proportion`, pseudo-label weights and thresholds),
need no extra pass over the data, and resume with the Trainer; counting this batch in n_g keeps
every weight finite from the first step, which is then the mean over the present groups.
"""

from keras import ops

from mtl.config import PluginOptions
from mtl.losses import weighted_mean
from mtl.robust.base import METHODS, RobustMethod, group_sums


@METHODS.register("balanced")
class GroupBalanced(RobustMethod):
    """Weighted mean with each example's weight divided by its group's running count."""

    def __init__(self, options: PluginOptions, heads, num_groups: dict[str, int], **kwargs):
        super().__init__(options, heads, num_groups, **kwargs)
        # "mean" lets replicas update it in step (each adds its share); exact on one replica.
        self.group_counts = {
            head: self.add_weight(
                name=f"{head}_group_counts", shape=(self.num_groups[head],), initializer="zeros",
                trainable=False, aggregation="mean",
            )
            for head in self.heads
        }

    def task_loss(self, head, per_example_losses, weights, groups):
        counts = self.group_counts[head] + group_sums(weights, groups, self.num_groups[head])
        self.group_counts[head].assign(counts)
        # An example without a label (weight 0) may sit in a group never seen: 0 / 0 is 0 here.
        balanced_weights = ops.divide_no_nan(weights, ops.take(counts, groups))
        return weighted_mean(per_example_losses, balanced_weights)
