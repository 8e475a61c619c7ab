"""The approaches, by name. Each module has `train(config, run_dir, data) -> inference model`.

For the hyperparameter search (`mtl.tune`) each also has `network(config)` (the network a trial
fits: the one `train` fits, or for separate both networks side by side), `combiner(config)` (how
its head losses add up; None for a plain sum) and `training_batches(config, data, merged_dir)`
(its training batches and the steps of one epoch, from the code `train` uses).

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
