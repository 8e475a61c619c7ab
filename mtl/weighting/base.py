"""The interface every loss weighting implements, and which variables are shared between heads.

A weighting is a Keras layer, so what it learns (uncertainty's log-variances) or tracks (DWA's
loss history) trains, saves and restores with the Trainer that holds it. It sees only what it
needs: the heads' losses, and, if it declares `needs_gradients`, the gradients of each head's
loss with respect to the shared (backbone) variables.
"""

import keras

from mtl.config import ApproachConfig


class Weighting(keras.layers.Layer):
    """Plain sum of the heads' losses; subclasses change `total_loss` or `combine_gradients`."""

    # True: the Trainer computes each head's gradient of the shared variables and calls
    # `combine_gradients`; `total_loss` is then only what gets logged as the loss.
    needs_gradients = False

    def __init__(self, options: ApproachConfig, heads, **kwargs):
        super().__init__(**kwargs)
        self.heads = list(heads)

    def total_loss(self, losses: dict, present: dict):
        """The loss to minimise, from `{head: mean loss}` and `{head: 1.0 if the batch had its labels}`.

        Called once per training step; a head without labels in the batch already has loss 0.
        """
        return sum(losses.values())

    def combine_gradients(self, losses: dict, present: dict, task_gradients: dict) -> list:
        """One gradient per shared variable, from `{head: [gradient of its loss per shared variable]}`."""
        raise NotImplementedError(f"{type(self).__name__} sets needs_gradients but does not combine gradients.")

    def end_epoch(self) -> None:
        """Called after every training epoch, for methods that follow the losses over epochs."""


def split_variables(network: keras.Model, heads) -> tuple[list, dict[str, list]]:
    """The network's shared trainable variables and each head's own (those of the layer named like it)."""
    own = {head: list(network.get_layer(head).trainable_variables) for head in heads}
    owned = {id(variable) for variables in own.values() for variable in variables}
    shared = [variable for variable in network.trainable_variables if id(variable) not in owned]
    return shared, own
