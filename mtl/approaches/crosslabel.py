"""The notebook's method: teachers cross-label both datasets; a four-class model learns the merge.

Options (ApproachConfig): pseudo_labels "hard" (the notebook), "soft" (the teacher's
probabilities) or "threshold" (hard, leaving out images below confidence_threshold).
"""

import json
from pathlib import Path

import keras
import tensorflow as tf

from mtl import labels, training
from mtl.approaches import common
from mtl.config import ExperimentConfig
from mtl.crosslabel import MERGED_DIR, SUMMARY_FILE, cross_label, read_merged
from mtl.data.pipeline import ExperimentData
from mtl.errors import UserError
from mtl.models.build import build_network
from mtl.tasks import CLASSES, FOUR


def check(config: ExperimentConfig) -> None:
    labels.check(config.options)
    if config.options.pseudo_labels == "none":
        raise UserError("The crosslabel approach needs pseudo-labels: set pseudo_labels to hard, soft or threshold.")


def train(config: ExperimentConfig, run_dir: Path, data: ExperimentData) -> keras.Model:
    check(config)
    run_dir = Path(run_dir)
    teacher = common.load_teacher(config, run_dir, data)
    summary = cross_label(teacher, data, run_dir / MERGED_DIR)
    print(f"Cross-labelled {summary['examples']} images into {run_dir / MERGED_DIR}.", flush=True)

    four_class_network = network(config)
    train_batches, steps = training_batches(config, data, run_dir / MERGED_DIR)
    epochs = config.train.four_class_epochs or config.train.epochs
    print(f"Training the four-class model on {summary['examples']} cross-labelled images.", flush=True)
    fit_summary = common.fit_network(
        four_class_network,
        train_batches,
        data.validation(),
        config,
        epochs,
        steps,
        run_dir / "logs" / "four_class",
    )
    training.write_json(run_dir / "four_class_training.json", fit_summary)
    return common.save_network_and_inference_model(four_class_network, config, run_dir)


def network(config: ExperimentConfig) -> keras.Model:
    """The four-class network: any backbone, one softmax head over the four combinations."""
    return build_network(config.model, config.data, {FOUR: len(CLASSES[FOUR])}, name="four_class_model")


def combiner(config: ExperimentConfig) -> None:
    return None  # one head, one loss


def training_batches(config: ExperimentConfig, data: ExperimentData, merged_dir: Path) -> tuple[tf.data.Dataset, int]:
    """Batches of the cross-labelled shards in `merged_dir` with four-class targets, and the steps of one epoch."""
    check(config)
    examples = json.loads((Path(merged_dir) / SUMMARY_FILE).read_text())["examples"]
    shuffled = common.shuffled_forever(read_merged(merged_dir).cache(), config.train.seed)
    batches = common.batches_with_targets(
        shuffled,
        config,
        lambda batch_labels, predictions: labels.four_class_targets(batch_labels, predictions, config.options),
    )
    return batches, common.steps_for(examples, config)
