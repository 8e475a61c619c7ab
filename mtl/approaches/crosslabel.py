"""The notebook's method: teachers cross-label both datasets; a four-class model learns the merge.

Its own option: `four_class_epochs`, the four-class model's epochs (`{"type": "crosslabel",
"four_class_epochs": 20}`; train.epochs by default). From ApproachConfig it reads pseudo_labels, any
label source that learns from teachers (`mtl.labels`): "hard" (the notebook), "soft" (the teacher's
probabilities), "threshold" (hard, leaving out images below its option `confidence`) or a plug-in's.
"""

from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from mtl import labels
from mtl.approaches import batches
from mtl.approaches.base import Approach, Stage, register, uses_groups
from mtl.config import MAX_EPOCHS, ExperimentConfig, PluginOptions, merge, number
from mtl.data.pipeline import ExperimentData
from mtl.errors import UserError
from mtl.models.build import build_network
from mtl.pseudo_labels import merged_examples, read_merged
from mtl.tasks import CLASSES, EMOTION, FOUR, GENDER
from mtl.searchable import Hyperparameter

FOUR_CLASS = "four_class"


@register
class CrossLabel(Approach):
    name = "crosslabel"

    @dataclass(frozen=True)
    class Options(PluginOptions):
        # Epochs of the four-class model; None: train.epochs.
        four_class_epochs: int | None = number(None, at_least=1, at_most=MAX_EPOCHS)

    hyperparameters = {
        # With each label source's own searched options ("threshold"'s confidence), mtl.tuning.space.
        "pseudo_labels": Hyperparameter(labels.teacher_sources, "options.pseudo_labels.type", categorical=True),
    }

    def check(self, config: ExperimentConfig) -> None:
        if not labels.needs_teachers(config.options):
            choices = ", ".join(labels.teacher_sources())
            raise UserError(f"The crosslabel approach needs pseudo-labels: set pseudo_labels to one of {choices}.")
        if uses_groups(config):
            # Its one four-class head has no task whose confounder the groups of mtl.groups name.
            raise UserError(
                "The crosslabel approach trains no group-robust method: "
                f"set options.robust=none, not '{config.options.robust.type}'."
            )

    def needs_teachers(self, config: ExperimentConfig) -> bool:
        return True

    def hparams(self, config: ExperimentConfig) -> dict:
        return {"pseudo_labels": config.options.pseudo_labels.type}

    def stages(self, config: ExperimentConfig) -> list[Stage]:
        """One network: any backbone, one softmax head over the four combinations."""
        return [Stage(FOUR_CLASS, build_network(config.model, config.data, {FOUR: len(CLASSES[FOUR])}, name="four_class_model"))]

    def task_shares(self, config: ExperimentConfig, stage: str, data: ExperimentData) -> dict[str, float]:
        """The merged set is shuffled whole: each dataset's share of it (before any confidence threshold)."""
        sizes = {GENDER: len(data.gender_train), EMOTION: len(data.emotion_train)}
        return {task: size / sum(sizes.values()) for task, size in sizes.items()}

    def training_batches(
        self, config: ExperimentConfig, stage: str, data: ExperimentData, merged_dir: Path | None
    ) -> tuple[tf.data.Dataset, int]:
        """Batches of the cross-labelled images with four-class targets."""
        shuffled = batches.shuffled_forever(read_merged(merged_dir).cache(), config.train.seed)
        four_class_batches = batches.batches_with_targets(
            shuffled,
            config,
            lambda batch_labels, predictions: labels.four_class_targets(batch_labels, predictions, config.options),
        )
        return four_class_batches, batches.steps_for(merged_examples(merged_dir), config)

    def epochs(self, config: ExperimentConfig, stage: str) -> int:
        return config.approach.four_class_epochs or config.train.epochs

    def with_stage_epochs(self, config: ExperimentConfig, epochs: int) -> ExperimentConfig:
        return merge(config, {"approach": {"four_class_epochs": epochs}})
