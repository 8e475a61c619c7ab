"""Fixed weights: total loss = sum of each head's loss times the weight configured for its task."""

from dataclasses import dataclass

from mtl.config import PluginOptions, number
from mtl.tasks import EMOTION, GENDER
from mtl.weighting.base import Weighting, register


@register("fixed")
class FixedWeights(Weighting):
    """Each task's head weighs its configured weight; any other head (the four-class one) weighs 1."""

    @dataclass(frozen=True)
    class Options(PluginOptions):
        gender_weight: float = number(1.0, at_least=0)
        emotion_weight: float = number(1.0, at_least=0)

    # Only the ratio of the two weights matters: the gender weight stays where the config puts it.
    search_defaults = {"emotion_weight": {"min": 0.5, "max": 2.0, "sampling": "log"}}

    def __init__(self, options: Options, heads, **kwargs):
        super().__init__(options, heads, **kwargs)
        self.task_weights = {GENDER: options.gender_weight, EMOTION: options.emotion_weight}

    def total_loss(self, losses: dict, present: dict):
        return sum(self.task_weights.get(head, 1.0) * loss for head, loss in losses.items())
