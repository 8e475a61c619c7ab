"""The baseline: a gender model trained on gender faces, an emotion model on emotion faces.

The two networks are fitted one after the other, each on its own dataset's true labels; at
prediction time the four classes are the product of their probabilities. A search trial fits
them the same way, so a searched config means the same thing when trained. With a group-robust
method (`options.robust`) each model's groups need the other task's class of its faces, so its
faces come from the teachers' cross-labelled shards; the teachers themselves train with none.
"""

from pathlib import Path

import tensorflow as tf

from mtl import labels
from mtl.approaches import batches
from mtl.approaches.base import Approach, Stage, group_function, register, robust_method, uses_groups
from mtl.config import ExperimentConfig
from mtl.data.pipeline import ExperimentData
from mtl.models.build import build_network
from mtl.tasks import CLASSES, GENDER, TASKS


@register
class Separate(Approach):
    name = "separate"
    provides_teachers = True

    def needs_teachers(self, config: ExperimentConfig) -> bool:
        return uses_groups(config)

    def hparams(self, config: ExperimentConfig) -> dict:
        return {"robust": config.options.robust.type}

    def stages(self, config: ExperimentConfig) -> list[Stage]:
        return [
            Stage(
                task,
                build_network(config.model, config.data, {task: len(CLASSES[task])}, name=f"{task}_model"),
                robust=robust_method(config, [task]),
            )
            for task in TASKS
        ]

    def task_shares(self, config: ExperimentConfig, stage: str, data: ExperimentData) -> dict[str, float]:
        return {stage: 1.0}

    def training_batches(
        self, config: ExperimentConfig, stage: str, data: ExperimentData, merged_dir: Path | None
    ) -> tuple[tf.data.Dataset, int]:
        """Batches of one task's own dataset, true labels only (and groups, from the cross-labelled shards)."""
        source = data.gender_train if stage == GENDER else data.emotion_train

        def targets(batch_labels, _):
            task_targets, task_weights = labels.task_targets(batch_labels, None, config.options)
            return {stage: task_targets[stage]}, {stage: task_weights[stage]}

        if uses_groups(config):
            examples = batches.cross_labelled_examples(merged_dir, stage, data, config.train.seed)
        else:
            examples = data.training_examples(source, config.train.seed)
        return (
            batches.batches_with_targets(examples, config, targets, group_function(config, [stage])),
            batches.steps_for(len(source), config),
        )
