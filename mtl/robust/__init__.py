"""Group-robust training: how a head's per-example losses become its loss, each method selectable by name.

`options.robust` names a method registered in `METHODS`, with its options (`{"type": "group_dro",
"step_size": 0.01}`); `create` makes it for a network's heads
and their numbers of groups (`mtl.groups`). A method is one small `RobustMethod` subclass in its
own module (or a user's file), registered with `@METHODS.register("name")`:
- none:      the weighted mean of the labelled examples (what training always did).
- balanced:  every group weighs the same in expectation, from running group counts.
- group_dro: Group DRO (Sagawa et al. 2020), the worst groups' losses weigh the most.
The loss weighting (`mtl.weighting`) then combines the heads' losses as before.
"""

from mtl.config import ApproachConfig
from mtl.registry import Registry
from mtl.robust.base import RobustMethod

METHODS: Registry[type[RobustMethod]] = Registry("group-robust method", "options.robust")


def names() -> list[str]:
    return METHODS.names()


def create(options: ApproachConfig, heads, num_groups: dict[str, int]) -> RobustMethod:
    """The method `options.robust` names, given its options, for these heads with `{head: number of groups}`."""
    return METHODS.get(options.robust.type)(options.robust, heads, num_groups)


# Importing the built-in methods registers them, `none` first: they import METHODS from above.
from mtl.robust import none  # noqa: E402,F401,I001
from mtl.robust import balanced, group_dro  # noqa: E402,F401

__all__ = ["METHODS", "RobustMethod", "create", "names"]
