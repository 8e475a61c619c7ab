"""How the losses of several heads combine into one update, each method selectable by name.

`options.loss_weighting` names a method registered here; `create` makes it for a network's
heads. A method is one small `Weighting` subclass in its own module (or in a user's file),
made selectable with `@register("name")`; the Trainer never branches on the name.
"""

from mtl.config import ApproachConfig
from mtl.errors import UserError
from mtl.weighting.base import Weighting, split_variables

_METHODS: dict[str, type[Weighting]] = {}


def register(name: str):
    """Class decorator: makes a `Weighting` subclass, built as `cls(options, heads)`, selectable as `name`."""

    def add(cls: type[Weighting]) -> type[Weighting]:
        _METHODS[name] = cls
        return cls

    return add


def names() -> list[str]:
    return sorted(_METHODS)


def create(options: ApproachConfig, heads) -> Weighting:
    """The weighting that `options.loss_weighting` names, for a network with these heads."""
    if options.loss_weighting not in _METHODS:
        raise UserError(f"Unknown loss_weighting '{options.loss_weighting}'; expected one of: {', '.join(names())}.")
    return _METHODS[options.loss_weighting](options, heads)


# Importing the built-in methods registers them; they import `register` from above.
from mtl.weighting import dwa, fixed, pcgrad, uncertainty  # noqa: E402,F401

__all__ = ["Weighting", "create", "names", "register", "split_variables"]
