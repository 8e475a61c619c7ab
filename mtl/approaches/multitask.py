"""One shared backbone, a gender head and an emotion head, trained on both datasets at once.

Each batch mixes the two datasets in a set proportion (`data.emotion_proportion`), so the
smaller emotion set is not drowned. A head's loss covers only the examples that have its
label (pseudo_labels "none"), or also teacher labels for the rest (any other label source of
`mtl.labels`, from the same cross-labelling as the crosslabel approach). How the head losses
combine is a loss weighting (`mtl.weighting`).
"""

from pathlib import Path

import tensorflow as tf

from mtl import labels, weighting
from mtl.approaches import batches
from mtl.approaches.base import Approach, Stage, register
from mtl.config import ExperimentConfig
from mtl.data.pipeline import ExperimentData, mixed_sources
from mtl.data.sources import SOURCE
from mtl.models.build import build_network
from mtl.pseudo_labels import read_merged
from mtl.tasks import CLASSES, EMOTION, GENDER, TASKS
from mtl.searchable import CONFIDENCE_THRESHOLD, Hyperparameter

MULTITASK = "multitask"


def emotion_share(config: ExperimentConfig, sizes: dict[str, int]) -> float:
    """The configured share of emotion faces in a batch, or else their share of the training images."""
    if config.data.emotion_proportion is not None:
        return config.data.emotion_proportion
    return sizes[EMOTION] / (sizes[GENDER] + sizes[EMOTION])


def cross_labelled_examples(merged_dir: Path, task: str, data: ExperimentData, seed: int) -> tf.data.Dataset:
    """The endless stream of one task's cross-labelled training images, its sources mixed as the data's are."""
    train = data.gender_train if task == GENDER else data.emotion_train
    parts = [read_merged(merged_dir, source=task, source_id=index).cache() for index in range(data.num_sources(task))]
    sizes = [int((train.labels[SOURCE] == index).sum()) for index in range(len(parts))]
    return mixed_sources(parts, sizes, data.config.source_mixing, seed)


@register
class MultiTask(Approach):
    name = "multitask"
    hyperparameters = {
        # Registries' names, read when a search starts: a plug-in's label source or weighting is a choice too.
        "pseudo_labels": Hyperparameter(labels.names, "options.pseudo_labels", categorical=True),
        "confidence_threshold": CONFIDENCE_THRESHOLD,
        "loss_weighting": Hyperparameter(weighting.names, "options.loss_weighting", categorical=True),
        # Only the ratio of the two fixed weights matters; the gender weight stays at the base value.
        "emotion_loss_weight": Hyperparameter(
            {"min": 0.5, "max": 2.0, "sampling": "log"}, "options.emotion_loss_weight", when=("loss_weighting", ("fixed",))
        ),
        "emotion_proportion": Hyperparameter({"min": 0.3, "max": 0.7, "step": 0.1}, "data.emotion_proportion"),
    }

    def needs_teachers(self, config: ExperimentConfig) -> bool:
        return labels.needs_teachers(config.options)

    def hparams(self, config: ExperimentConfig) -> dict:
        return {"pseudo_labels": config.options.pseudo_labels, "loss_weighting": config.options.loss_weighting}

    def stages(self, config: ExperimentConfig) -> list[Stage]:
        heads = {task: len(CLASSES[task]) for task in TASKS}
        network = build_network(config.model, config.data, heads, name="multitask_model")
        return [Stage(MULTITASK, network, weighting.create(config.options, TASKS))]

    def training_batches(
        self, config: ExperimentConfig, stage: str, data: ExperimentData, merged_dir: Path | None
    ) -> tuple[tf.data.Dataset, int]:
        """Mixed batches of both datasets with two-task targets.

        With pseudo-labels the images come from the cross-labelled shards in `merged_dir`,
        otherwise straight from the datasets.
        """
        sizes = {GENDER: len(data.gender_train), EMOTION: len(data.emotion_train)}
        seed = config.train.seed
        if merged_dir is None:
            gender = data.training_examples(data.gender_train, seed)
            emotion = data.training_examples(data.emotion_train, seed + 1)
        else:
            gender, emotion = (
                cross_labelled_examples(merged_dir, task, data, seed + offset) for offset, task in enumerate(TASKS)
            )
        mixed = batches.mixed_streams(gender, emotion, emotion_share(config, sizes), seed)
        two_task_batches = batches.batches_with_targets(
            mixed,
            config,
            lambda batch_labels, predictions=None: labels.task_targets(batch_labels, predictions, config.options),
        )
        return two_task_batches, batches.steps_for(sum(sizes.values()), config)
