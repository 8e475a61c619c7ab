"""The interface every loss weighting implements, its registry, and which parts of a network the heads share.

A weighting is a Keras layer, so what it learns (uncertainty's log-variances, GradNorm's weights)
or tracks (DWA's loss history) trains, saves and restores with the Trainer that holds it. It sees
only what it needs: the heads' losses and, if it asks, each head's gradient of what the heads
share, either of every shared (backbone) variable or of the shared representation, the
backbone's output (LibMTL's `rep_grad`: one backward pass per head that stops at the backbone's
output, much cheaper than one through every shared weight).
"""

import keras

from mtl.config import ApproachConfig, PluginOptions
from mtl.errors import UserError
from mtl.registry import Registry

# What the per-head gradients a weighting reads are taken of (`Weighting.gradients_of`).
SHARED_VARIABLES = "shared_variables"
REPRESENTATION = "representation"


class Weighting(keras.layers.Layer):
    """Plain sum of the heads' losses; subclasses change `total_loss`, `combine_gradients` or `weight_gradients`."""

    # True: the Trainer takes each head's gradient (of `gradients_of`) and trains the shared part on
    # `combine_gradients`; each head's own layer gets its own loss's gradient, and `total_loss` is
    # then only what gets logged as the loss and what the weighting's own variables see by default.
    needs_gradients = False
    # True: the Trainer takes each head's gradient for `weight_gradients` even though the network
    # trains on `total_loss` (GradNorm: the weights follow the heads' gradient norms).
    reads_task_gradients = False
    # SHARED_VARIABLES: one gradient per shared variable; REPRESENTATION: one gradient, of the backbone's output.
    gradients_of = SHARED_VARIABLES

    # Its options (a `PluginOptions` subclass), given to `__init__`; this one has none.
    Options = PluginOptions
    # Option -> the values a search tries by default (`mtl.searchable.Hyperparameter` specs).
    search_defaults: dict = {}

    def __init__(self, options: PluginOptions, heads, **kwargs):
        super().__init__(**kwargs)
        self.heads = list(heads)

    @property
    def takes_task_gradients(self) -> bool:
        return self.needs_gradients or self.reads_task_gradients

    def total_loss(self, losses: dict, present: dict):
        """The loss to minimise, from `{head: mean loss}` and `{head: 1.0 if the batch had its labels}`.

        Called once per training step; a head without labels in the batch already has loss 0.
        """
        return sum(losses.values())

    def combine_gradients(self, losses: dict, present: dict, task_gradients: dict) -> list:
        """The shared part's gradient (one per shared variable, or `[gradient of the representation]`),
        from `{head: [gradient of its loss, as many as that]}`."""
        raise NotImplementedError(f"{type(self).__name__} sets needs_gradients but does not combine gradients.")

    def weight_gradients(self, losses: dict, present: dict, task_gradients: dict | None, total_loss_gradients: list) -> list:
        """The gradient of each of the weighting's own trainable variables: by default the total loss's.

        A method whose variables minimise an objective of their own (GradNorm's) returns its
        gradient here, from the losses and, if it reads them, the heads' gradients (else None).
        """
        return total_loss_gradients

    def end_step(self) -> None:
        """Called after every optimizer step, for methods that constrain their variables (GradNorm's sum)."""

    def end_epoch(self) -> None:
        """Called after every training epoch, for methods that follow the losses over epochs."""


WEIGHTINGS: Registry[type[Weighting]] = Registry("loss weighting", "options.loss_weighting")

# Class decorator: makes a `Weighting` subclass, built as `cls(its options, heads)`, selectable as `name`.
register = WEIGHTINGS.register


def names() -> list[str]:
    return WEIGHTINGS.names()


def create(options: ApproachConfig, heads) -> Weighting:
    """The weighting that `options.loss_weighting` names, given its options, for a network with these heads."""
    return WEIGHTINGS.get(options.loss_weighting.type)(options.loss_weighting, heads)


def split_variables(network: keras.Model, heads) -> tuple[list, dict[str, list]]:
    """The network's shared trainable variables and each head's own (those of the layer named like it)."""
    own = {head: list(network.get_layer(head).trainable_variables) for head in heads}
    owned = {id(variable) for variables in own.values() for variable in variables}
    shared = [variable for variable in network.trainable_variables if id(variable) not in owned]
    return shared, own


def shared_representation(network: keras.Model, heads) -> tuple[keras.Model, dict[str, keras.layers.Layer]]:
    """(the backbone as a model from the network's input to the representation every head reads, each head's layer).

    The backbone shares its layers with the network, so training either trains both. A network whose
    heads are not each one layer on one shared tensor has no such representation: a UserError.
    """
    layers = {head: network.get_layer(head) for head in heads}
    inputs = {id(layer.input) for layer in layers.values()}
    if len(inputs) != 1 or any(network.output[head] is not layer.output for head, layer in layers.items()):
        raise UserError(
            f"Network '{network.name}' has no shared representation (its heads are not each one layer on one "
            "backbone output); choose a loss weighting that takes gradients of the shared variables."
        )
    return keras.Model(network.inputs, next(iter(layers.values())).input, name=f"{network.name}_backbone"), layers
