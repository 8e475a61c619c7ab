"""GradNorm (Chen, Badrinarayanan, Lee and Rabinovich 2018, "GradNorm: gradient normalization for
adaptive loss balancing in deep multitask networks", arXiv 1711.02257).

The total loss is sum_i w_i L_i with learned task weights w_i, and the weights learn an objective
of their own: L_grad = sum_i |G_i - mean(G) r_i^alpha|, with G_i = ||grad w_i L_i|| the norm of a
head's weighted gradient and r_i = L~_i / mean(L~) its relative inverse training rate
(L~_i = L_i / L_i(0), the loss against its first). The target mean(G) r_i^alpha is a constant,
as in the paper, and the weights are renormalised to sum to the number of heads after every step.

G_i is taken at the shared representation, the backbone's output (LibMTL's `rep_grad`), not at
the last shared layer's weights: one backward pass per head that stops at the backbone. Since
G_i = w_i ||grad L_i|| for w_i > 0, the gradient of L_grad by w_i is sign(G_i - target_i) ||grad L_i||,
computed here in closed form instead of by a second backward pass. A head without labels in a
batch takes no part: no gradient for its weight, and it counts in neither mean.
alpha is the option `alpha` (`{"type": "gradnorm", "alpha": 1.5}`; 1.5 as in the paper's NYUv2 experiments).
"""

from dataclasses import dataclass

from keras import ops

from mtl.config import PluginOptions, number
from mtl.weighting.base import REPRESENTATION, Weighting, register


@register("gradnorm")
class GradNorm(Weighting):
    """Task weights learned so that the heads' gradient norms train at rates set by their losses."""

    reads_task_gradients = True
    gradients_of = REPRESENTATION

    @dataclass(frozen=True)
    class Options(PluginOptions):
        alpha: float = number(1.5, at_least=0)  # higher pulls harder on heads that train slowly

    def __init__(self, options: Options, heads, **kwargs):
        super().__init__(options, heads, **kwargs)
        self.alpha = options.alpha
        count = len(self.heads)
        self.loss_weights = self.add_weight(name="loss_weights", shape=(count,), initializer="ones")
        # Each head's loss in the first batch that had its labels (0: not seen yet), the L_i(0) of r_i.
        self.initial_losses = self.add_weight(
            name="initial_losses", shape=(count,), initializer="zeros", trainable=False
        )

    def _stacked(self, values: dict):
        return ops.stack([ops.convert_to_tensor(values[head], "float32") for head in self.heads])

    def total_loss(self, losses: dict, present: dict):
        loss, labelled = self._stacked(losses), self._stacked(present)
        first = ops.logical_and(ops.equal(self.initial_losses, 0.0), labelled > 0)
        self.initial_losses.assign(ops.where(first, ops.stop_gradient(loss), self.initial_losses))
        return ops.sum(self.loss_weights * loss)

    def weight_gradients(self, losses, present, task_gradients, total_loss_gradients):
        labelled = self._stacked(present)
        # ||grad of L_i at the representation||; a head without labels has a zero gradient.
        norms = ops.stack([ops.sqrt(ops.sum(ops.square(task_gradients[head][0]))) for head in self.heads])
        weighted = self.loss_weights * norms  # G_i
        count = ops.maximum(ops.sum(labelled), 1.0)
        rates = ops.stop_gradient(self._stacked(losses)) / ops.maximum(self.initial_losses, 1e-12) * labelled
        relative = rates / ops.maximum(ops.sum(rates) / count, 1e-12)  # r_i
        target = ops.sum(weighted * labelled) / count * ops.power(relative, self.alpha)
        return [ops.stop_gradient(ops.sign(weighted - target) * norms * labelled)]

    def end_step(self) -> None:
        # Positive weights summing to the number of heads, so a step cannot trade the total loss scale away.
        positive = ops.maximum(self.loss_weights, 1e-6)
        self.loss_weights.assign(len(self.heads) * positive / ops.sum(positive))
