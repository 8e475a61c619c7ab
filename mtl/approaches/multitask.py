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

from mtl import labels
from mtl.approaches import common
from mtl.config import ExperimentConfig
from mtl.crosslabel import cross_label, read_merged
from mtl.data.pipeline import ExperimentData
from mtl.errors import UserError
from mtl.losses import loss_combiner
from mtl.models.build import build_network, inference_model
from mtl.runs import MODEL_FILE
from mtl.tasks import CLASSES, EMOTION, GENDER, TASKS

MERGED_DIR = "crosslabeled"


def mixed_examples(gender: tf.data.Dataset, emotion: tf.data.Dataset, config: ExperimentConfig, sizes) -> tf.data.Dataset:
    """Endless stream drawing from the two datasets with the configured emotion proportion."""
    proportion = config.data.emotion_proportion
    if proportion is None:
        proportion = sizes[EMOTION] / (sizes[GENDER] + sizes[EMOTION])
    if not 0 < proportion < 1:
        raise UserError(f"emotion_proportion must be between 0 and 1, got {proportion}.")
    seed = config.train.seed
    return tf.data.Dataset.sample_from_datasets(
        [common.shuffled_forever(gender, seed), common.shuffled_forever(emotion, seed + 1)],
        weights=[1 - proportion, proportion],
        seed=seed,
    )


def train(config: ExperimentConfig, run_dir: Path, data: ExperimentData) -> keras.Model:
    labels.check(config.options)
    run_dir = Path(run_dir)
    sizes = {GENDER: len(data.gender_train), EMOTION: len(data.emotion_train)}
    if config.options.pseudo_labels == "none":
        gender, emotion = data.images(data.gender_train), data.images(data.emotion_train)
    else:
        teacher = common.load_teacher(config, run_dir, data)
        cross_label(teacher, data, run_dir / MERGED_DIR)
        gender = read_merged(run_dir / MERGED_DIR, source=GENDER).cache()
        emotion = read_merged(run_dir / MERGED_DIR, source=EMOTION).cache()

    network = build_network(config.model, config.data, {task: len(CLASSES[task]) for task in TASKS}, name="multitask_model")
    train_batches = common.batches_with_targets(
        mixed_examples(gender, emotion, config, sizes),
        config,
        lambda batch_labels, predictions=None: labels.task_targets(batch_labels, predictions, config.options),
    )
    print(f"Training the two-head model on {sum(sizes.values())} images per epoch.", flush=True)
    summary = common.fit_network(
        network,
        train_batches,
        data.validation(),
        config,
        config.train.epochs,
        common.steps_for(sum(sizes.values()), config),
        run_dir / "logs" / "multitask",
        combiner=loss_combiner(config.options, TASKS),
    )
    common.write_summary(run_dir / "multitask_training.json", summary)
    network.save(run_dir / "multitask_model.keras")
    model = inference_model([network], config.data)
    model.save(run_dir / MODEL_FILE)
    return model
