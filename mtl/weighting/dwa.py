"""Dynamic Weight Average (Liu, Johns and Davison 2019, "End-to-end multi-task learning with attention").

A head whose loss fell more slowly over the last epoch weighs more in the next:
w_k(t) = K exp(r_k(t-1) / T) / sum_i exp(r_i(t-1) / T), with r_k(t-1) = L_k(t-1) / L_k(t-2),
L_k the head's mean training loss of an epoch and T the option `temperature` (`{"type": "dwa", "temperature": 2.0}`).
The first two epochs, which have no such history, weigh every head 1.
"""

from dataclasses import dataclass

import numpy as np
from keras import ops

from mtl.config import PluginOptions, number
from mtl.weighting.base import Weighting, register


@register("dwa")
class DynamicWeightAverage(Weighting):
    """Weights fixed within an epoch, recomputed from the two epochs before it at every epoch's end."""

    @dataclass(frozen=True)
    class Options(PluginOptions):
        temperature: float = number(2.0, above=0)  # higher evens out the heads' weights

    def __init__(self, options: Options, heads, **kwargs):
        super().__init__(options, heads, **kwargs)
        self.temperature = options.temperature
        count = len(self.heads)
        # Variables, so the loss history is saved and restored with the Trainer's weights.
        self.loss_weights = self.add_weight(name="loss_weights", shape=(count,), initializer="ones", trainable=False)
        self.epoch_loss_sum = self.add_weight(
            name="epoch_loss_sum", shape=(count,), initializer="zeros", trainable=False
        )
        self.epoch_labelled_steps = self.add_weight(
            name="epoch_labelled_steps", shape=(count,), initializer="zeros", trainable=False
        )
        # Mean losses of the last two epochs, older first.
        self.epoch_losses = self.add_weight(name="epoch_losses", shape=(2, count), initializer="zeros", trainable=False)
        self.epochs_seen = self.add_weight(name="epochs_seen", shape=(), initializer="zeros", trainable=False)

    def total_loss(self, losses: dict, present: dict):
        loss = ops.stack([losses[head] for head in self.heads])
        labelled = ops.stack([ops.convert_to_tensor(present[head], "float32") for head in self.heads])
        # An epoch's mean loss of a head counts only the batches that had its labels.
        self.epoch_loss_sum.assign_add(ops.stop_gradient(loss) * labelled)
        self.epoch_labelled_steps.assign_add(labelled)
        return ops.sum(self.loss_weights * loss)

    def end_epoch(self) -> None:
        steps = np.asarray(self.epoch_labelled_steps)
        mean = np.asarray(self.epoch_loss_sum) / np.maximum(steps, 1)
        earlier, latest = np.asarray(self.epoch_losses)[1], mean
        self.epoch_losses.assign(np.stack([earlier, latest]))
        self.epochs_seen.assign_add(1.0)
        self.epoch_loss_sum.assign(np.zeros_like(mean))
        self.epoch_labelled_steps.assign(np.zeros_like(steps))
        if float(self.epochs_seen) >= 2:
            # A head with no labelled batch in the earlier epoch has no rate of change: ratio 1.
            ratio = np.divide(latest, earlier, out=np.ones_like(latest), where=earlier > 0)
            scaled = np.exp(ratio / self.temperature)
            self.loss_weights.assign(len(self.heads) * scaled / scaled.sum())
