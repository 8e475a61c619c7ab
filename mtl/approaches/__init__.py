"""The approaches, registered by name (`mtl.approaches.base`): importing this package registers the built-ins.

- separate:   a gender model and an emotion model; four classes by product of probabilities.
- crosslabel: the notebook's method; teachers cross-label, a four-class model learns the merge.
- multitask:  one backbone, two heads, trained on both datasets at once (masked or pseudo-labelled).

A new approach is one module with a class decorated by `register`, imported here or by its user.
"""

# Imported in this order to register the built-ins, the baseline first.
from mtl.approaches import separate  # noqa: F401, I001
from mtl.approaches import crosslabel, multitask  # noqa: F401
from mtl.approaches.base import APPROACHES, Approach, Stage, get, names, register, teacher  # noqa: F401
