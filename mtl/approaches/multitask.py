"""One shared backbone, a gender head and an emotion head, trained on both datasets at once.

Each batch mixes the two datasets in a set proportion (`data.emotion_proportion`), so the
smaller emotion set is not drowned. A head's loss covers only the examples that have its
label (pseudo_labels "none"), or also teacher labels for the rest (any other label source of
`mtl.labels`, from the same cross-labelling as the crosslabel approach). How the head losses
combine is a loss weighting (`mtl.weighting`); how each head's per-example losses become its
loss, a group-robust method (`options.robust`, `mtl.robust`), which needs the teachers for the
groups (`mtl.groups`).
"""

from pathlib import Path

import tensorflow as tf

from mtl import labels, weighting
from mtl.approaches import batches
from mtl.approaches.base import Approach, Stage, group_function, register, robust_method, uses_groups
from mtl.config import ExperimentConfig
from mtl.data.pipeline import ExperimentData
from mtl.models.build import build_network
from mtl.tasks import CLASSES, EMOTION, GENDER, TASKS
from mtl.searchable import Hyperparameter

MULTITASK = "multitask"


def emotion_share(config: ExperimentConfig, sizes: dict[str, int]) -> float:
    """The configured share of emotion faces in a batch, or else their share of the training images."""
    if config.data.emotion_proportion is not None:
        return config.data.emotion_proportion
    return sizes[EMOTION] / (sizes[GENDER] + sizes[EMOTION])


@register
class MultiTask(Approach):
    name = "multitask"
    hyperparameters = {
        # Registries' names, read when a search starts: a plug-in's label source or weighting is a choice
        # too; each brings the options it searches ("threshold"'s confidence, "fixed"'s emotion weight).
        "pseudo_labels": Hyperparameter(labels.names, "options.pseudo_labels.type", categorical=True),
        "loss_weighting": Hyperparameter(weighting.names, "options.loss_weighting.type", categorical=True),
        "emotion_proportion": Hyperparameter({"min": 0.3, "max": 0.7, "step": 0.1}, "data.emotion_proportion"),
    }

    def needs_teachers(self, config: ExperimentConfig) -> bool:
        return labels.needs_teachers(config.options) or uses_groups(config)

    def hparams(self, config: ExperimentConfig) -> dict:
        return {
            "pseudo_labels": config.options.pseudo_labels.type,
            "loss_weighting": config.options.loss_weighting.type,
            "robust": config.options.robust.type,
        }

    def stages(self, config: ExperimentConfig) -> list[Stage]:
        heads = {task: len(CLASSES[task]) for task in TASKS}
        network = build_network(config.model, config.data, heads, name="multitask_model")
        return [Stage(MULTITASK, network, weighting.create(config.options, TASKS), robust_method(config, TASKS))]

    def task_shares(self, config: ExperimentConfig, stage: str, data: ExperimentData) -> dict[str, float]:
        share = emotion_share(config, {GENDER: len(data.gender_train), EMOTION: len(data.emotion_train)})
        return {GENDER: 1 - share, EMOTION: share}

    def training_batches(
        self, config: ExperimentConfig, stage: str, data: ExperimentData, merged_dir: Path | None
    ) -> tuple[tf.data.Dataset, int]:
        """Mixed batches of both datasets with two-task targets.

        With pseudo-labels or groups the images come from the cross-labelled shards in `merged_dir`,
        otherwise straight from the datasets.
        """
        sizes = {GENDER: len(data.gender_train), EMOTION: len(data.emotion_train)}
        seed = config.train.seed
        if merged_dir is None:
            gender = data.training_examples(data.gender_train, seed)
            emotion = data.training_examples(data.emotion_train, seed + 1)
        else:
            gender, emotion = (
                batches.cross_labelled_examples(merged_dir, task, data, seed + offset) for offset, task in enumerate(TASKS)
            )
        mixed = batches.mixed_streams(gender, emotion, emotion_share(config, sizes), seed)
        two_task_batches = batches.batches_with_targets(
            mixed,
            config,
            lambda batch_labels, predictions=None: labels.task_targets(batch_labels, predictions, config.options),
            group_function(config, TASKS),
        )
        return two_task_batches, batches.steps_for(sum(sizes.values()), config)
