"""One shared backbone, a gender head and an emotion head, trained on both datasets at once.

Each batch mixes the two datasets in a set proportion (`data.emotion_proportion`), so the
smaller emotion set is not drowned. A head's loss covers only the examples that have its
label (pseudo_labels "none"), or also teacher labels for the rest ("hard", "soft",
"threshold", from the same cross-labelling as the crosslabel approach). The losses combine
by fixed weights or learned uncertainty weighting (`mtl.losses`).
"""

from pathlib import Path

import keras
import tensorflow as tf

from mtl import labels, training
from mtl.approaches import common
from mtl.config import ExperimentConfig
from mtl.crosslabel import MERGED_DIR, cross_label, read_merged
from mtl.data.pipeline import ExperimentData
from mtl.errors import UserError
from mtl.losses import loss_combiner
from mtl.models.build import build_network
from mtl.tasks import CLASSES, EMOTION, GENDER, TASKS


def mixed_examples(gender: tf.data.Dataset, emotion: tf.data.Dataset, config: ExperimentConfig, sizes) -> tf.data.Dataset:
    """Endless stream drawing from the two datasets with the configured emotion proportion."""
    proportion = config.data.emotion_proportion
    if proportion is None:
        proportion = sizes[EMOTION] / (sizes[GENDER] + sizes[EMOTION])
    return common.mixed_examples(gender, emotion, proportion, config.train.seed)


def train(config: ExperimentConfig, run_dir: Path, data: ExperimentData) -> keras.Model:
    labels.check(config.options)
    run_dir = Path(run_dir)
    merged_dir = None
    if config.options.pseudo_labels != "none":
        teacher = common.load_teacher(config, run_dir, data)
        merged_dir = run_dir / MERGED_DIR
        cross_label(teacher, data, merged_dir)

    two_head_network = network(config)
    train_batches, steps = training_batches(config, data, merged_dir)
    print(f"Training the two-head model on {len(data.gender_train) + len(data.emotion_train)} images per epoch.", flush=True)
    summary = common.fit_network(
        two_head_network,
        train_batches,
        data.validation(),
        config,
        config.train.epochs,
        steps,
        run_dir / "logs" / "multitask",
        combiner=combiner(config),
    )
    training.write_json(run_dir / "multitask_training.json", summary)
    return common.save_network_and_inference_model(two_head_network, config, run_dir)


def network(config: ExperimentConfig) -> keras.Model:
    """One backbone with a gender head and an emotion head."""
    return build_network(config.model, config.data, {task: len(CLASSES[task]) for task in TASKS}, name="multitask_model")


def combiner(config: ExperimentConfig) -> keras.layers.Layer:
    return loss_combiner(config.options, TASKS)


def training_batches(
    config: ExperimentConfig, data: ExperimentData, merged_dir: Path | None
) -> tuple[tf.data.Dataset, int]:
    """Mixed batches of both datasets with two-task targets, and the steps of one epoch.

    With pseudo-labels the images come from the cross-labelled shards in `merged_dir`,
    otherwise straight from the datasets.
    """
    labels.check(config.options)
    sizes = {GENDER: len(data.gender_train), EMOTION: len(data.emotion_train)}
    if config.options.pseudo_labels == "none":
        gender, emotion = data.images(data.gender_train), data.images(data.emotion_train)
    else:
        if merged_dir is None:
            raise UserError(f"pseudo_labels '{config.options.pseudo_labels}' needs cross-labelled images; none were made.")
        gender = read_merged(merged_dir, source=GENDER).cache()
        emotion = read_merged(merged_dir, source=EMOTION).cache()
    batches = common.batches_with_targets(
        mixed_examples(gender, emotion, config, sizes),
        config,
        lambda batch_labels, predictions=None: labels.task_targets(batch_labels, predictions, config.options),
    )
    return batches, common.steps_for(sum(sizes.values()), config)
