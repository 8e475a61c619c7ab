"""The approaches, by name. Each module has `train(config, run_dir) -> inference model`.

- separate:   a gender model and an emotion model; four classes by product of probabilities.
- crosslabel: the notebook's method; teachers cross-label, a four-class model learns the merge.
- multitask:  one backbone, two heads, trained on both datasets at once (masked or pseudo-labelled).
"""

from mtl.approaches import crosslabel, multitask, separate
from mtl.errors import UserError

APPROACHES = {"separate": separate, "crosslabel": crosslabel, "multitask": multitask}


def get(name: str):
    if name not in APPROACHES:
        raise UserError(f"Unknown approach '{name}'; expected one of: {', '.join(APPROACHES)}.")
    return APPROACHES[name]
