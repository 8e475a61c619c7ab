"""No group robustness: a head's loss is the weighted mean over its labelled examples, as always."""

from mtl.losses import weighted_mean
from mtl.robust.base import METHODS, RobustMethod


@METHODS.register("none")
class WeightedMean(RobustMethod):
    """sum(w * loss) / sum(w): every labelled example weighs its label weight, whatever its group."""

    needs_groups = False

    def task_loss(self, head, per_example_losses, weights, groups):
        return weighted_mean(per_example_losses, weights)
