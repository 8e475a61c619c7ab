"""Uncertainty weighting (Kendall, Gal and Cipolla 2018): each head's weight is learned with the network."""

from keras import ops

from mtl.config import PluginOptions
from mtl.weighting.base import Weighting, register


@register("uncertainty")
class UncertaintyWeighting(Weighting):
    """loss_t * exp(-s_t) + s_t / 2 per head, with s_t = log sigma_t^2 trained by the optimizer.

    A head whose batch holds no labels adds nothing, not even its regulariser, so its
    log-variance is not pushed down by batches that cannot inform it.
    """

    def __init__(self, options: PluginOptions, heads, **kwargs):
        super().__init__(options, heads, **kwargs)
        self.log_variances = {
            head: self.add_weight(name=f"{head}_log_variance", shape=(), initializer="zeros") for head in self.heads
        }

    def total_loss(self, losses: dict, present: dict):
        total = 0.0
        for head, loss in losses.items():
            s = self.log_variances[head]
            total = total + present[head] * (ops.exp(-s) * loss + 0.5 * s)
        return total
