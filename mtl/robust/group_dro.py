"""Group DRO (Sagawa, Koh, Hashimoto and Liang 2020, "Distributionally robust neural networks for
group shifts", arXiv 1911.08731), the online algorithm.

Per head, a distribution q over groups: each step, q_g <- q_g * exp(eta * loss_g), renormalised,
with loss_g the batch's mean loss of group g (a group absent from the batch has loss 0 and keeps
its q before the renormalisation, as in the authors' code), then the head's loss is
sum_g q_g * loss_g with q as a constant. The groups whose loss stays highest come to weigh the
most, so the model minimises its worst groups' loss rather than the average.

eta is the option `step_size` (`{"type": "group_dro", "step_size": 0.01}`): 0.01 by default, the authors' default `--robust_step_size`
(kohpangwei/group_DRO, run_expt.py) and the value of their experiments.
q is kept as log q, renormalised with logsumexp: the same distribution, but a group whose q falls
below float32's smallest number is not stuck at 0 for the rest of the run.
"""

import math
from dataclasses import dataclass

import keras
from keras import ops

from mtl.config import PluginOptions, number
from mtl.robust.base import METHODS, RobustMethod, group_sums


@METHODS.register("group_dro")
class GroupDRO(RobustMethod):
    """sum_g q_g * (mean loss of group g), with q updated by exponentiated gradient ascent each step."""

    @dataclass(frozen=True)
    class Options(PluginOptions):
        step_size: float = number(0.01, above=0)  # eta of the update of q

    def __init__(self, options: Options, heads, num_groups: dict[str, int], **kwargs):
        super().__init__(options, heads, num_groups, **kwargs)
        self.step_size = options.step_size
        # Uniform at the start: log q = -log G. "mean" lets replicas update it in step; exact on one replica.
        self.log_group_weights = {
            head: self.add_weight(
                name=f"{head}_log_group_weights", shape=(self.num_groups[head],),
                initializer=keras.initializers.Constant(-math.log(self.num_groups[head])),
                trainable=False, aggregation="mean",
            )
            for head in self.heads
        }

    def group_weights(self, head: str):
        """q of `head`, the current distribution over its groups."""
        return ops.softmax(self.log_group_weights[head])

    def task_loss(self, head, per_example_losses, weights, groups):
        count = self.num_groups[head]
        group_count = group_sums(weights, groups, count)
        group_loss = group_sums(per_example_losses * weights, groups, count) / ops.maximum(group_count, 1e-8)
        log_q = self.log_group_weights[head] + self.step_size * ops.stop_gradient(group_loss)
        log_q = log_q - ops.logsumexp(log_q)
        self.log_group_weights[head].assign(log_q)
        return ops.sum(ops.stop_gradient(ops.exp(log_q)) * group_loss)

