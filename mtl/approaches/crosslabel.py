"""The notebook's method: teachers cross-label both datasets; a four-class model learns the merge.

Options (ApproachConfig): pseudo_labels "hard" (the notebook), "soft" (the teacher's
probabilities) or "threshold" (hard, leaving out images below confidence_threshold).
"""

from pathlib import Path

import keras

from mtl import labels
from mtl.approaches import common
from mtl.config import ExperimentConfig
from mtl.crosslabel import cross_label, read_merged
from mtl.data.pipeline import ExperimentData
from mtl.errors import UserError
from mtl.models.build import build_network, inference_model
from mtl.runs import MODEL_FILE
from mtl.tasks import CLASSES, FOUR

MERGED_DIR = "crosslabeled"


def train(config: ExperimentConfig, run_dir: Path, data: ExperimentData) -> keras.Model:
    labels.check(config.options)
    if config.options.pseudo_labels == "none":
        raise UserError("The crosslabel approach needs pseudo-labels: set pseudo_labels to hard, soft or threshold.")
    run_dir = Path(run_dir)
    teacher = common.load_teacher(config, run_dir, data)
    summary = cross_label(teacher, data, run_dir / MERGED_DIR)
    print(f"Cross-labelled {summary['examples']} images into {run_dir / MERGED_DIR}.", flush=True)

    network = build_network(config.model, config.data, {FOUR: len(CLASSES[FOUR])}, name="four_class_model")
    examples = common.shuffled_forever(read_merged(run_dir / MERGED_DIR).cache(), config.train.seed)
    train_batches = common.batches_with_targets(
        examples, config, lambda batch_labels, predictions: labels.four_class_targets(batch_labels, predictions, config.options)
    )
    epochs = config.train.four_class_epochs or config.train.epochs
    print(f"Training the four-class model on {summary['examples']} cross-labelled images.", flush=True)
    fit_summary = common.fit_network(
        network,
        train_batches,
        data.validation(),
        config,
        epochs,
        common.steps_for(summary["examples"], config),
        run_dir / "logs" / "four_class",
    )
    common.write_summary(run_dir / "four_class_training.json", fit_summary)
    network.save(run_dir / "four_class_model.keras")
    model = inference_model([network], config.data)
    model.save(run_dir / MODEL_FILE)
    return model
