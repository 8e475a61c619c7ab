"""How the losses of several heads combine into one update, each method selectable by name.

`options.loss_weighting` names a method registered in `WEIGHTINGS` (`mtl.weighting.base`), with its
options (`{"type": "dwa", "temperature": 2.0}`); `create` makes it for a network's heads. A method is
one small `Weighting` subclass in its own module (or in a user's file), made selectable with
`@register("name")` from `mtl.weighting.base`, its options declared as its `Options` (a
`PluginOptions` subclass); the Trainer never branches on the name. Importing this package registers
the built-ins.
"""

from mtl.weighting import dwa, fixed, gradnorm, mgda, pcgrad, uncertainty  # noqa: F401
from mtl.weighting.base import WEIGHTINGS, Weighting, create, names, register, split_variables

__all__ = ["WEIGHTINGS", "Weighting", "create", "names", "register", "split_variables"]
