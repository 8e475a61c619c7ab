"""Group-robust training: how a head's per-example losses become its loss, each method selectable by name.

`options.robust` names a method registered in `METHODS` (`mtl.robust.base`), with its options
(`{"type": "group_dro", "step_size": 0.01}`); `create` makes it for a network's heads
and their numbers of groups (`mtl.groups`). A method is one small `RobustMethod` subclass in its
own module (or a user's file), registered with `@METHODS.register("name")` from `mtl.robust.base`:
- none:      the weighted mean of the labelled examples (what training always did).
- balanced:  every group weighs the same in expectation, from running group counts.
- group_dro: Group DRO (Sagawa et al. 2020), the worst groups' losses weigh the most.
The loss weighting (`mtl.weighting`) then combines the heads' losses as before. Importing this
package registers the built-ins.
"""

# Imported in this order to register the built-ins, `none` first.
from mtl.robust import none  # noqa: F401, I001
from mtl.robust import balanced, group_dro  # noqa: F401
from mtl.robust.base import METHODS, RobustMethod, create, names

__all__ = ["METHODS", "RobustMethod", "create", "names"]
