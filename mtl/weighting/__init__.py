"""How the losses of several heads combine into one update, each method selectable by name.

`options.loss_weighting` names a method registered here, with its options (`{"type": "dwa",
"temperature": 2.0}`); `create` makes it for a network's heads. A method is one small `Weighting`
subclass in its own module (or in a user's file), made selectable with `@register("name")`, its
options declared as its `Options` (a `PluginOptions` subclass); the Trainer never branches on the name.
"""

from mtl.config import ApproachConfig
from mtl.registry import Registry
from mtl.weighting.base import Weighting, split_variables

WEIGHTINGS: Registry[type[Weighting]] = Registry("loss weighting", "options.loss_weighting")

# Class decorator: makes a `Weighting` subclass, built as `cls(its options, heads)`, selectable as `name`.
register = WEIGHTINGS.register


def names() -> list[str]:
    return WEIGHTINGS.names()


def create(options: ApproachConfig, heads) -> Weighting:
    """The weighting that `options.loss_weighting` names, given its options, for a network with these heads."""
    return WEIGHTINGS.get(options.loss_weighting.type)(options.loss_weighting, heads)


# Importing the built-in methods registers them; they import `register` from above.
from mtl.weighting import dwa, fixed, gradnorm, mgda, pcgrad, uncertainty  # noqa: E402,F401

__all__ = ["WEIGHTINGS", "Weighting", "create", "names", "register", "split_variables"]
