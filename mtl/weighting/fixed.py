"""Fixed weights: total loss = sum of each head's loss times the weight configured for its task."""

from mtl.config import ApproachConfig
from mtl.tasks import EMOTION, GENDER
from mtl.weighting import register
from mtl.weighting.base import Weighting


@register("fixed")
class FixedWeights(Weighting):
    """`options.gender_loss_weight` and `options.emotion_loss_weight`; any other head weighs 1."""

    def __init__(self, options: ApproachConfig, heads, **kwargs):
        super().__init__(options, heads, **kwargs)
        self.task_weights = {GENDER: options.gender_loss_weight, EMOTION: options.emotion_loss_weight}

    def total_loss(self, losses: dict, present: dict):
        return sum(self.task_weights.get(head, 1.0) * loss for head, loss in losses.items())
